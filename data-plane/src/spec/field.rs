//! Why a wire field was refused: the field's name and a typed reason. Shared by every
//! part of the compiler (and the modules it calls), so a NACK names the field the same way
//! wherever the check lives.

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
