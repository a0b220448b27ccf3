//! Typed compile errors. Each one names the offending object, the field and the reason so
//! that the NACK the control plane records is actionable without data-plane logs.

use crate::auth::VerifierError;
use crate::spec::InvalidField;
use crate::tls::TlsConfigError;

/// Why a snapshot was rejected. The data plane NACKs with its `Display` text and keeps
/// serving the previous snapshot.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// A proxy (virtual host) failed validation.
    #[error("proxy {hostname:?}: {source}")]
    Proxy {
        /// Hostname as sent by the control plane.
        hostname: String,
        /// Field and reason.
        #[source]
        source: InvalidField,
    },
    /// A route failed validation or refers to something missing.
    #[error("route {id:?}: {source}")]
    Route {
        /// Route id as sent by the control plane.
        id: String,
        /// Field and reason.
        #[source]
        source: InvalidField,
    },
    /// An external service failed validation.
    #[error("service {name:?}: {source}")]
    Service {
        /// Service name as sent by the control plane.
        name: String,
        /// Field and reason.
        #[source]
        source: InvalidField,
    },
    /// Two proxies normalise to the same hostname, so host lookup would be ambiguous.
    #[error("proxy hostname {0:?} appears more than once")]
    DuplicateHostname(String),
    /// Two services share a name, so SERVICE route targets would be ambiguous.
    #[error("service name {0:?} appears more than once")]
    DuplicateService(String),
    /// A certificate or an ACME challenge failed validation.
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
    /// The OAuth keys or revocations are unusable, so no token could be checked.
    #[error("edge auth: {0}")]
    Auth(#[from] VerifierError),
    /// Compilation did not finish (the worker task panicked or was cancelled).
    #[error("snapshot compilation aborted")]
    Aborted,
    /// A newer snapshot arrived while this one compiled, so it was given up: it would have
    /// been replaced at once. Not a fault of the snapshot; nothing is NACKed.
    #[error("snapshot compilation given up for a newer snapshot")]
    Superseded,
}
