//! Phase 2 of every request: the proxy-level policy.
//!
//! The only way to reach a proxy's route table is through [`admit`]: it looks the route
//! up (a pure lookup), decides with the proxy's policy plus what that route adds
//! ([`RouteAccess`]: extra scopes, or an admin's `public` exemption), and releases the
//! chosen upstream only inside an [`Admitted`] token. A route without such settings is
//! protected exactly like its proxy; a route that would forward to a protected proxy's
//! upstream (bypassing that proxy's policy) is refused with 503.
//!
//! Unprotected proxies admit everything unchanged. Protected proxies verify bearer tokens
//! locally (see [`crate::auth`]) and rewrite the request's identity headers on admission.
//! A protection this data plane cannot enforce (`redirect` mode, or a mode it does not
//! know) fails closed with 503 rather than being served unprotected.

use std::sync::Arc;

use bytes::Bytes;
use http::header::WWW_AUTHENTICATE;
use http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, StatusCode};
use portcullis_proto::v1 as pb;

use crate::auth::{self, AuthSpec, MetadataError, Origin, ProxyAuth, Verifier};
use crate::body::{self, ProxyBody};
use crate::config::Proxy;
use crate::router::{RouteMatcher, Selected};
use crate::upstream::Upstream;

mod access;

pub use self::access::{RouteAccess, Routed};

/// How a proxy is protected.
#[derive(Clone, Debug)]
pub enum Policy {
    /// No protection configured.
    Open,
    /// Bearer tokens verified at the edge (`forward` or `passthrough` mode).
    Protected(Arc<ProxyAuth>),
    /// Protection configured that this data plane cannot enforce: refuse every request.
    Unenforceable,
}

/// A proxy's protection as validated from the wire, before the snapshot's verifier is
/// attached.
#[derive(Debug)]
pub(crate) enum PolicySpec {
    Open,
    Protected(AuthSpec),
    Unenforceable,
}

/// Proof that the proxy's policy admitted this request, carrying the route it chose.
#[derive(Debug)]
pub struct Admitted<'p> {
    proxy: &'p Proxy,
    selected: Selected<'p, Routed>,
}

/// Permission to read a proxy's route table; only this module can create one.
#[derive(Debug)]
pub(crate) struct Gate(());

/// A request the policy answers itself instead of routing it: a refusal (400, 401, 403,
/// 503) or a document the policy owns (RFC 9728 metadata).
#[derive(Debug)]
pub struct Rejection {
    status: StatusCode,
    content_type: &'static str,
    challenge: Option<HeaderValue>,
    allow: Option<&'static str>,
    public_document: bool,
    body: Bytes,
}

/// Checks `req` against `proxy`'s policy and the matching route's settings. Runs for
/// every request to the proxy, whatever route it takes. On admission to a protected
/// proxy, the bearer token and client-sent identity headers are removed and verified
/// identity is set.
pub fn admit<'p, B>(
    proxy: &'p Proxy,
    origin: &Origin<'_>,
    req: &mut Request<B>,
) -> Result<Admitted<'p>, Rejection> {
    let selected = proxy
        .routes(&Gate(()))
        .select(req.method(), req.uri().path());
    let route = selected.target.access();
    if route.blocked {
        return Err(Rejection::route_blocked());
    }
    match proxy.policy() {
        Policy::Open => {}
        Policy::Unenforceable => return Err(Rejection::unavailable()),
        Policy::Protected(auth) => {
            let verdict =
                auth.check(origin, route, req.method(), req.uri().path(), req.headers())?;
            auth::apply_identity(req.headers_mut(), &verdict);
        }
    }
    Ok(Admitted { proxy, selected })
}

// === impl Policy ===

impl Policy {
    /// Attaches the snapshot's verifier to a validated spec.
    pub(crate) fn link(spec: &PolicySpec, verifier: &Arc<Verifier>) -> Result<Self, MetadataError> {
        Ok(match spec {
            PolicySpec::Open => Self::Open,
            PolicySpec::Unenforceable => Self::Unenforceable,
            PolicySpec::Protected(auth) => {
                Self::Protected(Arc::new(ProxyAuth::new(auth.clone(), verifier.clone())?))
            }
        })
    }
}

// === impl PolicySpec ===

impl PolicySpec {
    /// Reads the wire policy. Modes this data plane does not enforce become
    /// [`PolicySpec::Unenforceable`] (fail closed for that proxy only); malformed values
    /// are errors naming the field.
    pub(crate) fn from_proto(
        auth: Option<&pb::ProxyAuthPolicy>,
    ) -> Result<Self, (&'static str, String)> {
        let Some(auth) = auth.filter(|a| a.enabled) else {
            return Ok(Self::Open);
        };
        let mode = match auth.mode.as_str() {
            "forward" => auth::Mode::Forward,
            "passthrough" => auth::Mode::Passthrough,
            _ => return Ok(Self::Unenforceable),
        };
        AuthSpec::from_proto(mode, auth).map(Self::Protected)
    }
}

// === impl Admitted ===

impl<'p> Admitted<'p> {
    /// Phase 3: the first matching route's upstream, else the proxy's own target.
    pub fn upstream(&self) -> &'p Upstream {
        self.selected.target.upstream()
    }

    /// The route that matched; `None` when the proxy's own target is used.
    pub fn route(&self) -> Option<&'p RouteMatcher> {
        self.selected.route
    }

    /// The admitted proxy.
    pub fn proxy(&self) -> &'p Proxy {
        self.proxy
    }
}

// === impl Rejection ===

impl Rejection {
    pub(crate) fn unavailable() -> Self {
        Self::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Unavailable: authentication is not available\n",
        )
    }

    /// The route forwards to a protected proxy's upstream without its policy.
    pub(crate) fn route_blocked() -> Self {
        Self::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Unavailable: this route targets a protected proxy\n",
        )
    }

    /// A valid token whose user is not on the proxy's allowlist.
    pub(crate) fn not_allowed() -> Self {
        Self::json_error(
            StatusCode::FORBIDDEN,
            None,
            "access_denied",
            "the user is not allowed to use this resource",
        )
    }

    pub(crate) fn bad_request(why: &'static str) -> Self {
        Self::json_error(StatusCode::BAD_REQUEST, None, "invalid_request", why)
    }

    pub(crate) fn not_found() -> Self {
        Self::text(StatusCode::NOT_FOUND, "404 Not Found\n")
    }

    pub(crate) fn method_not_allowed(allow: &'static str) -> Self {
        let mut r = Self::text(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
        r.allow = Some(allow);
        r
    }

    /// An OAuth error answer with its `WWW-Authenticate` challenge.
    pub(crate) fn auth(
        status: StatusCode,
        challenge: HeaderValue,
        error: &'static str,
        description: &'static str,
    ) -> Self {
        Self::json_error(status, Some(challenge), error, description)
    }

    /// The protected-resource metadata document (200, public, cacheable).
    pub(crate) fn metadata(json: String) -> Self {
        Self {
            status: StatusCode::OK,
            content_type: "application/json",
            challenge: None,
            allow: None,
            public_document: true,
            body: Bytes::from(json),
        }
    }

    fn text(status: StatusCode, body: &'static str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            challenge: None,
            allow: None,
            public_document: false,
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    fn json_error(
        status: StatusCode,
        challenge: Option<HeaderValue>,
        error: &'static str,
        description: &'static str,
    ) -> Self {
        let body = serde_json::json!({ "error": error, "error_description": description });
        Self {
            status,
            content_type: "application/json",
            challenge,
            allow: None,
            public_document: false,
            body: Bytes::from(body.to_string()),
        }
    }

    /// Status to answer with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `WWW-Authenticate` challenge, for refusals by edge auth.
    pub fn challenge(&self) -> Option<&HeaderValue> {
        self.challenge.as_ref()
    }

    /// The body sent.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The full response.
    pub fn into_response(self) -> Response<ProxyBody> {
        let has_challenge = self.challenge.is_some();
        let mut response = Response::new(body::full(self.body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        if let Some(challenge) = self.challenge {
            headers.insert(WWW_AUTHENTICATE, challenge);
        }
        if let Some(allow) = self.allow {
            headers.insert(ALLOW, HeaderValue::from_static(allow));
        }
        if self.public_document {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        } else if has_challenge {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        response
    }
}
