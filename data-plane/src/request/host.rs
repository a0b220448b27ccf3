//! Which host a request is for: `Host`, or the URI authority (HTTP/2 `:authority`,
//! HTTP/1.1 absolute-form) when there is no Host header. If both are present they must
//! name the same host, so routing and later auth can never disagree about it.

use http::header::HOST;
use http::{HeaderValue, Request};

use super::error::ProxyError;
use crate::router::NormalizedHost;

/// The request's host: normalised for lookup, raw for `X-Forwarded-Host` and
/// `preserve_host_header`.
#[derive(Debug)]
pub(crate) struct RequestHost {
    name: NormalizedHost,
    raw: HeaderValue,
}

// === impl RequestHost ===

impl RequestHost {
    pub(crate) fn from_request<B>(req: &Request<B>) -> Result<Self, ProxyError> {
        let mut hosts = req.headers().get_all(HOST).iter();
        let header = hosts.next();
        if hosts.next().is_some() {
            return Err(ProxyError::DuplicateHost);
        }
        let authority = req.uri().authority();
        let raw = match (header, authority) {
            (Some(value), _) => value.clone(),
            (None, Some(authority)) => {
                HeaderValue::from_str(authority.as_str()).map_err(|_| ProxyError::InvalidHost)?
            }
            (None, None) => return Err(ProxyError::MissingHost),
        };
        let text = raw.to_str().map_err(|_| ProxyError::InvalidHost)?;
        let name = NormalizedHost::parse(text).map_err(|_| ProxyError::InvalidHost)?;
        if let (Some(_), Some(authority)) = (header, authority) {
            let other =
                NormalizedHost::parse(authority.as_str()).map_err(|_| ProxyError::InvalidHost)?;
            if other.as_str() != name.as_str() {
                return Err(ProxyError::HostMismatch);
            }
        }
        Ok(Self { name, raw })
    }

    /// Lowercased host without port.
    pub(crate) fn name(&self) -> &str {
        self.name.as_str()
    }

    /// The value the client sent.
    pub(crate) fn raw(&self) -> &HeaderValue {
        &self.raw
    }
}
