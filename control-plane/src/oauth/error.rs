//! OAuth protocol errors: RFC 6749 §5.2 / §4.1.2.1 codes and those of the extensions we
//! implement (RFC 7591, 8628, 8707, 6750). A closed set, so every place that renders one
//! (the HTTP status, the `WWW-Authenticate` challenge) decides for each code.

use crate::store::StoreError;

/// The error codes this server sends (`error` in JSON bodies and redirects).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// `invalid_request`, RFC 6749 §5.2: a parameter is missing, repeated or malformed.
    InvalidRequest,
    /// `invalid_client`, RFC 6749 §5.2: client authentication failed.
    InvalidClient,
    /// `invalid_grant`, RFC 6749 §5.2: the code, refresh token or device code is invalid, expired, revoked or another client's.
    InvalidGrant,
    /// `unauthorized_client`, RFC 6749 §5.2: this client may not use this grant or response type.
    UnauthorizedClient,
    /// `unsupported_grant_type`, RFC 6749 §5.2: the grant type is unknown.
    UnsupportedGrantType,
    /// `unsupported_response_type`, RFC 6749 §4.1.2.1: the response type is not `code`.
    UnsupportedResponseType,
    /// `invalid_scope`, RFC 6749 §5.2: a scope is unknown or was not granted.
    InvalidScope,
    /// `access_denied`, RFC 6749 §4.1.2.1: the user or a login rule said no.
    AccessDenied,
    /// `server_error`, RFC 6749 §4.1.2.1: our fault (the cause is logged, never sent).
    ServerError,
    /// `temporarily_unavailable`, RFC 6749 §4.1.2.1: try again later.
    TemporarilyUnavailable,
    /// `invalid_target`, RFC 8707 §2: a resource indicator is malformed or not ours.
    InvalidTarget,
    /// `invalid_redirect_uri`, RFC 7591 §3.2.2: a redirect URI in client metadata is unacceptable.
    InvalidRedirectUri,
    /// `invalid_client_metadata`, RFC 7591 §3.2.2: other client metadata is unacceptable.
    InvalidClientMetadata,
    /// `authorization_pending`, RFC 8628 §3.5: the user has not finished yet.
    AuthorizationPending,
    /// `slow_down`, RFC 8628 §3.5: the device polls too often.
    SlowDown,
    /// `expired_token`, RFC 8628 §3.5: the device code expired.
    ExpiredToken,
    /// `invalid_token`, RFC 6750 §3.1: the bearer token is missing, malformed, expired or revoked.
    InvalidToken,
}

impl ErrorCode {
    /// The code as sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::AccessDenied => "access_denied",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::InvalidTarget => "invalid_target",
            Self::InvalidRedirectUri => "invalid_redirect_uri",
            Self::InvalidClientMetadata => "invalid_client_metadata",
            Self::AuthorizationPending => "authorization_pending",
            Self::SlowDown => "slow_down",
            Self::ExpiredToken => "expired_token",
            Self::InvalidToken => "invalid_token",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// An OAuth protocol error (RFC 6749 §5.2 / §4.1.2.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    /// The error code, e.g. `invalid_grant`.
    pub code: ErrorCode,
    /// Human-readable reason (never contains secrets).
    pub description: String,
}

impl OAuthError {
    /// Builds an error.
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }

    /// `invalid_request`.
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, d)
    }

    /// `server_error`, logging the cause.
    pub fn server(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "oauth server error");
        Self::new(ErrorCode::ServerError, "internal error; try again")
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        Self::server(e)
    }
}
