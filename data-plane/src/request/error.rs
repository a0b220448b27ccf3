//! The one rescue point of the request path: every failure becomes a status and a short
//! generic body here. Details go to the log, never to the client.

use std::error::Error as _;
use std::io;

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};

use crate::answer::Rejection;
use crate::body::{self, ClientFault, Progress, ProxyBody};
use crate::metrics::UpstreamFailure;
use crate::path::PathError;
use crate::ratelimit::Limited;
use crate::upstream::ClientError;

/// Longest host echoed back in a 404 body.
const MAX_ECHOED_HOST: usize = 64;

/// Why a request could not be proxied.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// No snapshot applied yet (no cache, control plane not reached).
    #[error("no configuration loaded yet")]
    NotReady,
    /// `CONNECT` tunnels are not offered by a reverse proxy.
    #[error("CONNECT is not supported")]
    ConnectMethod,
    /// The client address is outside the proxy's IP allowlist (carries the answer: a page
    /// for a browser, JSON otherwise).
    #[error("client address not in the proxy's IP allowlist")]
    ClientNotAllowed(Rejection),
    /// Neither a Host header nor a URI authority.
    #[error("request has no Host")]
    MissingHost,
    /// More than one Host header (RFC 9112 §3.2).
    #[error("request has more than one Host header")]
    DuplicateHost,
    /// Host is not a usable hostname.
    #[error("malformed Host")]
    InvalidHost,
    /// Host header and URI authority disagree.
    #[error("Host does not match the request target")]
    HostMismatch,
    /// The request path has no unambiguous normal form ([`crate::path`]).
    #[error("refused request path: {0}")]
    InvalidPath(#[from] PathError),
    /// The request already passed through this data plane (its `Via` names us) or
    /// through too many proxies: forwarding it would loop.
    #[error("forwarding loop detected")]
    LoopDetected,
    /// No served proxy for this host (carries the host, already capped).
    #[error("no proxy for host {0:?}")]
    UnknownHost(String),
    /// The proxy's policy refused the request.
    #[error("refused by proxy policy: {}", .0.status())]
    Rejected(Rejection),
    /// A rate or concurrency limit of the proxy refused the request.
    #[error(transparent)]
    Limited(Limited),
    /// Target path could not be built from the request path.
    #[error("cannot build upstream URI")]
    UpstreamUri(#[source] http::Error),
    /// TCP/TLS connection to the upstream failed.
    #[error("upstream connection failed")]
    Connect(#[source] ClientError),
    /// The upstream did not accept a connection within the connect timeout.
    #[error("upstream connect timed out")]
    ConnectTimeout,
    /// The upstream did not send response headers within the read timeout.
    #[error("upstream did not respond in time")]
    ResponseTimeout,
    /// The exchange with the upstream failed after connecting.
    #[error("upstream request failed")]
    Upstream(#[source] ClientError),
    /// The upstream origin has as many open connections as allowed, none idle.
    #[error("upstream connection bound reached")]
    UpstreamSaturated,
    /// The upstream answered 101 to a request that did not ask to upgrade.
    #[error("upstream switched protocols unexpectedly")]
    UnexpectedUpgrade,
    /// The request body is larger than the proxy's `max_request_body_bytes` (carried),
    /// declared so or as sent. The client's fault.
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(u64),
    /// The client's request body broke off or was malformed (bad chunked framing, the
    /// client closed or reset it), which ended the exchange. The client's fault.
    #[error("the client's request body failed")]
    ClientBody(#[source] ClientError),
    /// The client fell silent mid-body for longer than the idle timeout. The client's
    /// fault.
    #[error("the client's request body stalled")]
    ClientBodyTimeout,
}

// === impl ProxyError ===

impl ProxyError {
    pub(crate) fn unknown_host(name: &str) -> Self {
        let capped = name.get(..MAX_ECHOED_HOST).unwrap_or(name);
        Self::UnknownHost(capped.to_owned())
    }

    /// Sorts a failed exchange: the client's fault if its request body failed (as
    /// recorded in `body`; `limit` is the proxy's body limit), else the upstream's
    /// ([`ProxyError::from_client`]). Error path only: one atomic load.
    pub(crate) fn from_exchange(error: ClientError, body: Option<&Progress>, limit: u64) -> Self {
        match body.map_or(ClientFault::None, Progress::fault) {
            ClientFault::None => Self::from_client(error),
            ClientFault::TooLarge => Self::BodyTooLarge(limit),
            ClientFault::Idle => Self::ClientBodyTimeout,
            ClientFault::Broken => Self::ClientBody(error),
        }
    }

    /// Whether the client caused this (a 4xx): logged as its fault, not the upstream's.
    pub(crate) fn is_client_fault(&self) -> bool {
        self.status().is_client_error()
    }

    /// Sorts a client error into connect failure, connect timeout or other.
    pub(crate) fn from_client(error: ClientError) -> Self {
        if matches!(error, ClientError::Saturated) {
            return Self::UpstreamSaturated;
        }
        if !error.is_connect() {
            return Self::Upstream(error);
        }
        let mut source = error.source();
        while let Some(cause) = source {
            if cause
                .downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::TimedOut)
            {
                return Self::ConnectTimeout;
            }
            source = cause.source();
        }
        Self::Connect(error)
    }

    /// The upstream failure this is, for [`crate::metrics::upstream_failed`].
    pub(crate) fn upstream_failure(&self) -> Option<UpstreamFailure> {
        Some(match self {
            Self::Connect(_) => UpstreamFailure::ConnectError,
            Self::ConnectTimeout => UpstreamFailure::ConnectTimeout,
            Self::ResponseTimeout => UpstreamFailure::ResponseTimeout,
            Self::Upstream(_) | Self::UnexpectedUpgrade => UpstreamFailure::Exchange,
            Self::UpstreamSaturated => UpstreamFailure::Saturated,
            _ => return None,
        })
    }

    /// The status sent to the client.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::NotReady | Self::UpstreamSaturated => StatusCode::SERVICE_UNAVAILABLE,
            Self::ConnectMethod => StatusCode::METHOD_NOT_ALLOWED,
            Self::ClientNotAllowed(_) => StatusCode::FORBIDDEN,
            Self::MissingHost | Self::DuplicateHost | Self::InvalidHost | Self::HostMismatch => {
                StatusCode::BAD_REQUEST
            }
            Self::UpstreamUri(_) | Self::InvalidPath(_) => StatusCode::BAD_REQUEST,
            Self::LoopDetected => StatusCode::LOOP_DETECTED,
            Self::UnknownHost(_) => StatusCode::NOT_FOUND,
            Self::Rejected(rejection) => rejection.status(),
            Self::Limited(limited) => limited.status(),
            Self::Connect(_) | Self::Upstream(_) | Self::UnexpectedUpgrade => {
                StatusCode::BAD_GATEWAY
            }
            Self::ConnectTimeout | Self::ResponseTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::ClientBody(_) => StatusCode::BAD_REQUEST,
            Self::ClientBodyTimeout => StatusCode::REQUEST_TIMEOUT,
        }
    }

    fn public_message(&self) -> String {
        let text = match self {
            Self::NotReady => "503 Service Unavailable: no configuration loaded yet",
            Self::UpstreamSaturated => {
                "503 Service Unavailable: upstream is at its connection limit"
            }
            Self::ConnectMethod => "405 Method Not Allowed: CONNECT is not supported",
            Self::ClientNotAllowed(_) => "403 Forbidden: your address may not reach this site",
            Self::MissingHost => "400 Bad Request: missing Host header",
            Self::DuplicateHost => "400 Bad Request: more than one Host header",
            Self::InvalidHost => "400 Bad Request: malformed Host header",
            Self::HostMismatch => "400 Bad Request: Host does not match the request target",
            Self::UpstreamUri(_) => "400 Bad Request: invalid request target",
            Self::InvalidPath(e) => return format!("400 Bad Request: {e}\n"),
            Self::LoopDetected => "508 Loop Detected: the request came back to this proxy",
            Self::UnknownHost(host) => return format!("404 Not Found: no proxy for host {host}\n"),
            Self::Rejected(_) => "403 Forbidden",
            Self::Limited(_) => "429 Too Many Requests",
            Self::Connect(_) => "502 Bad Gateway: upstream connection failed",
            Self::Upstream(_) => "502 Bad Gateway: upstream request failed",
            Self::UnexpectedUpgrade => "502 Bad Gateway: invalid upstream response",
            Self::ConnectTimeout => "504 Gateway Timeout: upstream connection timed out",
            Self::ResponseTimeout => "504 Gateway Timeout: upstream did not respond in time",
            Self::BodyTooLarge(_) => "413 Payload Too Large: request body too large",
            Self::ClientBody(_) => "400 Bad Request: malformed or incomplete request body",
            Self::ClientBodyTimeout => "408 Request Timeout: request body stalled",
        };
        format!("{text}\n")
    }

    /// Short `text/plain` response for this error; policy answers keep their own
    /// headers and body.
    pub(crate) fn into_response(self) -> Response<ProxyBody> {
        if let Self::Rejected(rejection) | Self::ClientNotAllowed(rejection) = self {
            return rejection.into_response();
        }
        if let Self::Limited(limited) = self {
            return limited.into_response();
        }
        let status = self.status();
        if status.is_server_error() {
            tracing::debug!(error = %self, "request failed");
        }
        let mut response = Response::new(body::full(self.public_message()));
        *response.status_mut() = status;
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}
