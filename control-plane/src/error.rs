//! The one error type the service layer returns; both adapters map it to their status codes.

use crate::store::StoreError;

/// Why an operation failed, in terms a caller can act on.
///
/// REST maps these to 400/401/403/404/409/422/503 and gRPC to the matching codes in one
/// place each, so the mapping stays auditable.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A field failed validation; `field` names it so users can fix their request.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The offending field, e.g. `target_url`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The request is well formed but refers to something that does not exist or conflicts
    /// with its own other fields.
    #[error("{0}")]
    Unprocessable(String),
    /// No valid bearer token.
    #[error("authentication required: {0}")]
    Unauthenticated(&'static str),
    /// The token is valid but may not do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The named resource does not exist.
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// Resource kind, e.g. `proxy`.
        kind: &'static str,
        /// The name that was looked up.
        name: String,
    },
    /// The request conflicts with the stored state; [`Conflict`] says how.
    #[error("{0}")]
    Conflict(Conflict),
    /// The store failed; details are logged, not returned.
    #[error("the store (Redis or the embedded file) cannot be reached right now; retry shortly")]
    Store(#[from] StoreError),
    /// A peer the operation needs (the Docker engine) cannot be reached; the message says
    /// which and why.
    #[error("{0}")]
    Unavailable(String),
}

/// How a request conflicts with the stored state. Each kind asks the caller for something
/// different, so each has its own gRPC code and REST error code.
#[derive(Debug, thiserror::Error)]
pub enum Conflict {
    /// A resource with this name exists already (gRPC `ALREADY_EXISTS`).
    #[error("{0}")]
    AlreadyExists(String),
    /// Other resources still refer to it, or its state does not allow the change: the
    /// caller must change something else first (gRPC `FAILED_PRECONDITION`).
    #[error("{0}")]
    StillReferenced(String),
    /// Another writer changed it meanwhile, or an order is in flight: retrying later can
    /// succeed as is (gRPC `ABORTED`).
    #[error("{0}")]
    Concurrent(String),
}

impl ServiceError {
    /// Shorthand for "a resource with this name exists already".
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::Conflict(Conflict::AlreadyExists(message.into()))
    }

    /// Shorthand for "still referenced by other resources".
    pub fn still_referenced(message: impl Into<String>) -> Self {
        Self::Conflict(Conflict::StillReferenced(message.into()))
    }

    /// Shorthand for "changed concurrently; retry".
    pub fn concurrent(message: impl Into<String>) -> Self {
        Self::Conflict(Conflict::Concurrent(message.into()))
    }

    /// Shorthand for a validation failure on `field`.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }

    /// Shorthand for a missing resource.
    pub fn not_found(kind: &'static str, name: impl Into<String>) -> Self {
        Self::NotFound {
            kind,
            name: name.into(),
        }
    }

    /// Short machine-readable kind, used as the `error` field of REST responses.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid { .. } => "invalid_request",
            Self::Unprocessable(_) => "unprocessable",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound { .. } => "not_found",
            Self::Conflict(Conflict::AlreadyExists(_)) => "already_exists",
            Self::Conflict(Conflict::StillReferenced(_)) => "still_referenced",
            Self::Conflict(Conflict::Concurrent(_)) => "conflict",
            Self::Store(_) | Self::Unavailable(_) => "unavailable",
        }
    }
}
