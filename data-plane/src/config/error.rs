//! Typed compile errors. Each one names the offending object, the field and the reason so
//! that the NACK the control plane records is actionable without data-plane logs.

use crate::auth::VerifierError;
use crate::tls::CertError;

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

/// One invalid field and why. Fields are private: only the compiler creates these.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    field: &'static str,
    reason: Reason,
}

/// The reason a field is invalid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Reason {
    /// The field is required.
    #[error("must not be empty")]
    Empty,
    /// Hostname syntax.
    #[error("invalid hostname {0:?}: {1}")]
    Hostname(String, &'static str),
    /// Target URL syntax or an unsupported URL feature.
    #[error("invalid URL {0:?}: {1}")]
    Url(String, String),
    /// Regex syntax or size.
    #[error("invalid regex: {0}")]
    Regex(#[from] regex::Error),
    /// Path patterns other than regexes are literal paths.
    #[error("{0:?} must start with '/' and contain no spaces, control characters, '?' or '#'")]
    Path(String),
    /// Enum value the data plane does not know (or UNSPECIFIED).
    #[error("unsupported value {0}")]
    Unsupported(i32),
    /// A SERVICE target naming no service in the snapshot.
    #[error("unknown service {0:?}")]
    UnknownService(String),
    /// A PROXY target naming no proxy in the snapshot.
    #[error("unknown proxy {0:?}")]
    UnknownProxy(String),
    /// Not a token per RFC 9110.
    #[error("{0:?} is not an HTTP method")]
    Method(String),
    /// Not a valid header field name.
    #[error("{0:?} is not a valid header name")]
    HeaderName(String),
    /// Header value with forbidden bytes.
    #[error("value of {0:?} has forbidden characters")]
    HeaderValue(String),
    /// Headers the proxy owns (framing, hop-by-hop, Host).
    #[error("{0:?} is managed by the proxy and cannot be set")]
    ReservedHeader(String),
    /// An edge-auth setting: scope syntax, public path, documentation URL or metadata JSON.
    #[error("{0}")]
    Auth(String),
    /// An ACME token that is not base64url (it must be one path segment).
    #[error("must be base64url (letters, digits, '-' and '_')")]
    AcmeToken,
    /// A rate or concurrency limit setting.
    #[error("{0}")]
    Limit(String),
}

// === impl InvalidField ===

impl InvalidField {
    pub(crate) fn new(field: &'static str, reason: Reason) -> Self {
        Self { field, reason }
    }

    /// The wire field that failed, e.g. `path_pattern`.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// Why it failed.
    pub fn reason(&self) -> &Reason {
        &self.reason
    }
}
