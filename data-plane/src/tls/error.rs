//! Why the snapshot's certificates or ACME challenges were refused. The compiler wraps
//! these in [`CompileError`](crate::config::CompileError); the NACK text names the object
//! and the field.

use super::CertError;
use crate::spec::InvalidField;

/// A certificate or ACME challenge of the snapshot that failed validation.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A certificate failed validation (PEM, key, key match or domain coverage).
    #[error("certificate {name:?}: {source}")]
    Certificate {
        /// Certificate name as sent by the control plane.
        name: String,
        /// What is wrong with it.
        #[source]
        source: CertError,
    },
    /// Two certificates share a name, so `certificate_name` references would be ambiguous.
    #[error("certificate name {0:?} appears more than once")]
    DuplicateCertificate(String),
    /// An ACME HTTP-01 challenge failed validation.
    #[error("ACME HTTP-01 challenge {token:?}: {source}")]
    AcmeHttp01 {
        /// Token as sent by the control plane.
        token: String,
        /// Field and reason.
        #[source]
        source: InvalidField,
    },
    /// An ACME TLS-ALPN-01 challenge failed validation.
    #[error("ACME TLS-ALPN-01 challenge for {domain:?}: {source}")]
    AcmeTlsAlpn01 {
        /// Domain as sent by the control plane.
        domain: String,
        /// What is wrong with the challenge certificate or domain.
        #[source]
        source: CertError,
    },
}
