//! TLS for the HTTPS listener ("automatic HTTPS", data-plane half).
//!
//! The control plane obtains certificates (ACME) and sends them, with pending ACME
//! challenges, in every snapshot. The data plane never reads certificate files:
//! - [`certs`](Certificates): PEM → validated `CertifiedKey`s, at snapshot compile time.
//! - [`acme`](AcmeChallenges): HTTP-01 answers and TLS-ALPN-01 challenge certificates.
//!
//! The HTTPS listener ([`crate::server`]) picks a certificate per handshake from the
//! served snapshot (its SNI resolver), so a new snapshot rotates certificates with no
//! restart.

use rustls::crypto::{CryptoProvider, aws_lc_rs};

mod acme;
mod certs;
mod der;
mod error;

pub(crate) use self::acme::http01_token;
pub use self::acme::{ACME_TLS_ALPN, AcmeChallenges};
pub use self::certs::{CertError, Certificates};
pub use self::error::TlsConfigError;

/// ALPN for HTTP/2.
pub(crate) const ALPN_H2: &[u8] = b"h2";
/// ALPN for HTTP/1.1.
pub(crate) const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The crypto provider for the listener and for loading snapshot keys: aws-lc-rs, the
/// only one built into this workspace.
pub(crate) fn provider() -> CryptoProvider {
    aws_lc_rs::default_provider()
}

#[cfg(test)]
mod tests;
