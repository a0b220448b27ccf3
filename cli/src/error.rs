//! The CLI's error type and its mapping to exit codes, kept in one place so scripts can
//! rely on the codes: 1 = the API refused, 2 = bad invocation, 3 = no control plane.

use std::fmt;

use tonic::{Code, Status};

/// Why a command failed.
#[derive(Debug)]
pub(crate) enum CliError {
    /// The invocation or local configuration is wrong (bad flag value, unreadable file).
    Usage(String),
    /// The control plane answered with an error status.
    Api {
        /// The status as received.
        status: Box<Status>,
        /// Extra advice for the user, e.g. how to supply a missing token.
        hint: Option<&'static str>,
    },
    /// No usable gRPC connection to the control plane.
    Unreachable {
        /// The URL that was tried, so the user sees which setting to fix.
        url: String,
        /// The transport error and its causes.
        detail: String,
    },
    /// Writing the result to stdout failed.
    Output(std::io::Error),
}

impl CliError {
    /// Process exit code for this error.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Self::Api { .. } | Self::Output(_) => 1,
            Self::Usage(_) => 2,
            Self::Unreachable { .. } => 3,
        }
    }

    /// Classifies a failed call: statuses produced locally by the transport (they carry
    /// a source error; statuses sent by the server never do) mean we did not get through.
    pub(crate) fn from_status(status: Status, url: &str, has_token: bool) -> Self {
        if let Some(source) = std::error::Error::source(&status) {
            return Self::Unreachable {
                url: url.to_owned(),
                detail: chain_from(status.message().to_owned(), Some(source)),
            };
        }
        let hint = (status.code() == Code::Unauthenticated && !has_token).then_some(
            "no token configured; pass --token, set PORTCULLIS_TOKEN or add `token` to the config file",
        );
        Self::Api {
            status: Box::new(status),
            hint,
        }
    }

    /// `true` when stdout was closed early (e.g. piped into `head`), which is not a failure.
    pub(crate) fn is_broken_pipe(&self) -> bool {
        matches!(self, Self::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(msg) => f.write_str(msg),
            Self::Api { status, hint } => {
                let words = code_words(status.code());
                if status.message().is_empty() {
                    f.write_str(words)?;
                } else {
                    write!(f, "{} ({words})", status.message())?;
                }
                if let Some(hint) = hint {
                    write!(f, "\nhint: {hint}")?;
                }
                Ok(())
            }
            Self::Unreachable { url, detail } => {
                write!(f, "cannot reach the control plane at {url}: {detail}")
            }
            Self::Output(e) => write!(f, "cannot write output: {e}"),
        }
    }
}

impl std::error::Error for CliError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Api { status, .. } => Some(status.as_ref()),
            Self::Output(e) => Some(e),
            Self::Usage(_) | Self::Unreachable { .. } => None,
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        Self::Output(e)
    }
}

/// A gRPC code as lowercase words, e.g. "not found", for messages people read.
pub(crate) fn code_words(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown error",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal error",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// Joins an error and its causes with ": ", skipping causes that repeat their parent,
/// because tonic's top-level transport errors alone ("transport error") say nothing useful.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    chain_from(err.to_string(), err.source())
}

fn chain_from(first: String, mut next: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut parts = vec![first];
    while let Some(e) = next {
        let text = e.to_string();
        match parts.last_mut() {
            Some(last) if last.contains(&text) => {}
            // The cause already repeats its parent's text: keep only the fuller one.
            Some(last) if text.contains(last.as_str()) => *last = text,
            _ => parts.push(text),
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn api_errors_show_message_and_code_words() {
        let err = CliError::from_status(Status::not_found("proxy \"a\" not found"), "u", true);
        assert_eq!(err.to_string(), "proxy \"a\" not found (not found)");
        assert_eq!(err.exit_code(), 1);
        let err = CliError::from_status(Status::permission_denied(""), "u", true);
        assert_eq!(err.to_string(), "permission denied");
    }

    #[test]
    fn unauthenticated_without_token_adds_a_hint() {
        let err = CliError::from_status(Status::unauthenticated("missing token"), "u", false);
        assert!(err.to_string().contains("hint: no token configured"));
        let err = CliError::from_status(Status::unauthenticated("bad token"), "u", true);
        assert!(!err.to_string().contains("hint"));
    }

    #[test]
    fn locally_generated_statuses_mean_unreachable() {
        let mut status = Status::unavailable("transport error");
        status.set_source(Arc::new(std::io::Error::other("connection refused")));
        let err = CliError::from_status(status, "http://127.0.0.1:9", true);
        assert_eq!(err.exit_code(), 3);
        let text = err.to_string();
        assert!(text.contains("http://127.0.0.1:9") && text.contains("connection refused"));
    }

    #[test]
    fn repeated_links_in_the_chain_are_shown_once() {
        for source in ["transport error", "transport error: connection error"] {
            let mut status = Status::unavailable("transport error");
            status.set_source(Arc::new(std::io::Error::other(source)));
            let err = CliError::from_status(status, "u", true);
            assert_eq!(
                err.to_string(),
                format!("cannot reach the control plane at u: {source}")
            );
        }
    }

    #[test]
    fn exit_codes() {
        assert_eq!(CliError::Usage(String::new()).exit_code(), 2);
        let closed = CliError::Output(std::io::ErrorKind::BrokenPipe.into());
        assert!(closed.is_broken_pipe());
    }
}
