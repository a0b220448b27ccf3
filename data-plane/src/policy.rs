//! Phase 2 of every request: the proxy-level policy.
//!
//! The only way to reach a proxy's route table is through [`admit`], which returns an
//! [`Admitted`] token on success. Routed requests therefore cannot skip the proxy's
//! protection: routing (phase 3) is a method of the token, not of the proxy.
//!
//! Today the policy is a placeholder that admits everything for unprotected proxies. A
//! proxy the control plane marks as protected (`auth.enabled`) fails closed with 503
//! until this data plane implements edge auth, rather than being served unprotected.

use http::{Method, Request, StatusCode};
use portcullis_proto::v1 as pb;

use crate::config::Proxy;
use crate::router::Selected;
use crate::upstream::Upstream;

/// How a proxy is protected.
#[derive(Clone, Debug)]
pub enum Policy {
    /// No protection configured.
    Open,
    /// Protection configured that this data plane cannot enforce: refuse every request.
    Unenforceable,
}

/// Proof that the proxy's policy admitted this request; the gateway to routing.
#[derive(Debug)]
pub struct Admitted<'p> {
    proxy: &'p Proxy,
}

/// A request the policy refused, with the status to answer.
#[derive(Debug)]
pub struct Rejection {
    status: StatusCode,
    message: &'static str,
}

/// Checks `req` against `proxy`'s policy. Runs for every request to the proxy, whatever
/// route it would take.
pub fn admit<'p, B>(proxy: &'p Proxy, _req: &Request<B>) -> Result<Admitted<'p>, Rejection> {
    match proxy.policy() {
        Policy::Open => Ok(Admitted { proxy }),
        Policy::Unenforceable => Err(Rejection {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "503 Service Unavailable: authentication is not available\n",
        }),
    }
}

// === impl Policy ===

impl Policy {
    pub(crate) fn from_proto(auth: Option<&pb::ProxyAuthPolicy>) -> Self {
        match auth {
            Some(auth) if auth.enabled => Self::Unenforceable,
            _ => Self::Open,
        }
    }
}

// === impl Admitted ===

impl<'p> Admitted<'p> {
    /// Phase 3: the first matching route's upstream, else the proxy's own target.
    pub fn select(&self, method: &Method, path: &str) -> Selected<'p, Upstream> {
        self.proxy.routes(self).select(method, path)
    }

    /// The admitted proxy.
    pub fn proxy(&self) -> &'p Proxy {
        self.proxy
    }
}

// === impl Rejection ===

impl Rejection {
    /// Status to answer with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Short plain-text body.
    pub fn message(&self) -> &'static str {
        self.message
    }
}
