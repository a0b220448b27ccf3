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
//! `redirect` mode proxies log browsers in and keep a sealed session cookie
//! ([`crate::auth::SessionAuth`]); their reserved paths are answered by [`intercept`]
//! before admission. A protection this data plane cannot enforce (a mode it does not know,
//! or redirect mode without an issuer) fails closed with 503 rather than being served
//! unprotected.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::header::{HeaderName, LOCATION, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};
use portcullis_proto::v1 as pb;

use crate::auth::{
    self, AuthSpec, CorsGrant, MetadataError, Origin, OriginDecision, ProxyAuth, SessionAuth,
    SessionSpec, Verifier,
};
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
    /// Browser login and session cookie (`redirect` mode).
    Session(Arc<SessionAuth>),
}

/// A proxy's protection as validated from the wire, before the snapshot's verifier is
/// attached.
#[derive(Debug)]
pub(crate) enum PolicySpec {
    Open,
    Protected(AuthSpec),
    Unenforceable,
    Session(SessionSpec),
}

/// Proof that the proxy's policy admitted this request, carrying the route it chose.
#[derive(Debug)]
pub struct Admitted<'p> {
    proxy: &'p Proxy,
    selected: Selected<'p, Routed>,
    /// CORS headers owed to an allowed browser origin.
    cors: Option<CorsGrant>,
    /// The verified token's claims, for subject/client-keyed rate limits.
    claims: Option<Arc<auth::Claims>>,
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
    public_document: bool,
    body: Bytes,
    /// Boxed: rare, and keeps `Result<_, Rejection>` small.
    cors: Option<Box<CorsGrant>>,
    /// `Location` and `Set-Cookie` of login redirects; `None` otherwise (boxed to keep
    /// refusals small).
    headers: Option<Box<ExtraHeaders>>,
}

/// Headers a few answers add (`Location`, `Set-Cookie`, …).
#[derive(Debug)]
struct ExtraHeaders(Vec<(HeaderName, HeaderValue)>);

/// Checks `req` against `proxy`'s policy and the matching route's settings. Runs for
/// every request to the proxy, whatever route it takes. On admission to a protected
/// proxy, the bearer token (unless forwarded by opt-in) and client-sent identity headers are removed and verified
/// identity is set.
pub fn admit<'p, B>(
    proxy: &'p Proxy,
    origin: &Origin<'_>,
    req: &mut Request<B>,
) -> Result<Admitted<'p>, Rejection> {
    // Forged identity never reaches an upstream, whatever the proxy's protection.
    auth::strip_client_claims(req.headers_mut(), proxy.configured_identity_headers());
    let selected = proxy
        .routes(&Gate(()))
        .select(req.method(), req.uri().path());
    let route = selected.target.access();
    if route.blocked {
        return Err(Rejection::route_blocked());
    }
    let mut cors = None;
    let mut claims = None;
    match proxy.policy() {
        Policy::Open => {}
        Policy::Unenforceable => return Err(Rejection::unavailable()),
        Policy::Protected(auth) => {
            let (method, path) = (req.method(), req.uri().path());
            cors = match auth.origin_decision(method, path, req.headers()) {
                OriginDecision::None => None,
                OriginDecision::Allowed(grant) => Some(grant),
                OriginDecision::Preflight(grant) => return Err(Rejection::preflight(grant)),
                OriginDecision::Refused => return Err(Rejection::origin_refused()),
            };
            let verdict = match auth.check(origin, route, method, path, req.headers()) {
                Ok(verdict) => verdict,
                Err(mut rejection) => {
                    rejection.cors = cors.map(Box::new);
                    return Err(rejection);
                }
            };
            // An authenticated verdict here came from verifying the bearer header.
            auth::apply_identity(req.headers_mut(), &verdict, auth.identity(), true);
            claims = verdict.into_claims();
        }
        Policy::Session(session) => {
            // A public route needs no session; identity is still only ever ours.
            let verdict = if route.public {
                auth::Verdict::Anonymous
            } else {
                session.check(origin, route, req.method(), req.uri(), req.headers())?
            };
            // Identity comes from the session cookie, never from a bearer header: any
            // client `Authorization: Bearer` is unverified here and always removed.
            auth::apply_identity(req.headers_mut(), &verdict, session.identity(), false);
            claims = verdict.into_claims();
            auth::strip_session_cookies(req.headers_mut());
        }
    }
    Ok(Admitted {
        proxy,
        selected,
        cors,
        claims,
    })
}

/// Answers the reserved `/.portcullis/` paths of a `redirect` mode proxy (login, callback,
/// logout) before admission; `None` for every other request and proxy.
pub async fn intercept<B>(
    proxy: &Proxy,
    origin: &Origin<'_>,
    req: &Request<B>,
) -> Option<Response<ProxyBody>> {
    match proxy.policy() {
        // Boxed: the login/logout exchanges make a large future that would otherwise
        // sit in every connection's idle request slot; only redirect-mode proxies pay
        // the allocation.
        Policy::Session(session) => Box::pin(session.intercept(origin, req)).await,
        _ => None,
    }
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
            PolicySpec::Session(spec) => match SessionAuth::new(spec, verifier.clone()) {
                Some(session) => Self::Session(Arc::new(session)),
                None => Self::Unenforceable,
            },
        })
    }
}

// === impl PolicySpec ===

impl PolicySpec {
    /// Identity header names configured outside the default families, if protected.
    pub(crate) fn configured_identity_headers(&self) -> &[HeaderName] {
        match self {
            Self::Protected(auth) => auth.identity.configured(),
            Self::Session(session) => session.identity().configured(),
            Self::Open | Self::Unenforceable => &[],
        }
    }

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
            // Without a key (an older control plane) there is no safe session: fail closed.
            "redirect" if auth.session_key.is_empty() => return Ok(Self::Unenforceable),
            "redirect" => return SessionSpec::from_proto(auth).map(Self::Session),
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

    /// The claims of the token verified on admission; `None` when none was.
    pub fn claims(&self) -> Option<&auth::Claims> {
        self.claims.as_deref()
    }

    /// Adds the CORS headers owed to an allowed browser origin to the upstream's answer.
    pub fn expose(&self, response: &mut Response<ProxyBody>) {
        if let Some(cors) = &self.cors {
            cors.apply(response.headers_mut());
        }
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

    /// A valid session without a scope the route needs (redirect mode: logging in again
    /// would not add it, so no login redirect).
    pub(crate) fn session_lacks_scope() -> Self {
        Self::json_error(
            StatusCode::FORBIDDEN,
            None,
            "insufficient_scope",
            "the session lacks a scope this route requires",
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

    /// A browser origin outside the proxy's allowlist (DNS-rebinding protection).
    pub(crate) fn origin_refused() -> Self {
        Self::json_error(
            StatusCode::FORBIDDEN,
            None,
            "forbidden",
            "origin not allowed",
        )
    }

    /// The answer to an allowed origin's CORS preflight (204, no body).
    pub(crate) fn preflight(grant: CorsGrant) -> Self {
        Self {
            status: StatusCode::NO_CONTENT,
            content_type: "",
            challenge: None,
            public_document: false,
            body: Bytes::new(),
            cors: Some(Box::new(grant)),
            headers: None,
        }
    }

    /// A request without a session that is not a page load (redirect mode).
    pub(crate) fn login_required() -> Self {
        let mut r = Self::json_error(
            StatusCode::UNAUTHORIZED,
            None,
            "login_required",
            "no valid session; log in at /.portcullis/login",
        );
        r.headers = Some(Box::new(ExtraHeaders(vec![(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Cookie realm=\"portcullis\", login=\"/.portcullis/login\""),
        )])));
        r
    }

    /// A 302 (login, callback, logout) with its cookies; never cached.
    pub(crate) fn redirect(location: HeaderValue, cookies: Vec<(HeaderName, HeaderValue)>) -> Self {
        let mut r = Self::text(StatusCode::FOUND, "");
        let mut headers = cookies;
        headers.push((LOCATION, location));
        headers.push((CACHE_CONTROL, HeaderValue::from_static("no-store")));
        r.headers = Some(Box::new(ExtraHeaders(headers)));
        r
    }

    /// A plain-text answer with extra headers (cookies to clear), never cached.
    pub(crate) fn text_with(
        status: StatusCode,
        body: &'static str,
        headers: Vec<(HeaderName, HeaderValue)>,
    ) -> Self {
        let mut r = Self::text(status, body);
        let mut headers = headers;
        headers.push((CACHE_CONTROL, HeaderValue::from_static("no-store")));
        r.headers = Some(Box::new(ExtraHeaders(headers)));
        r
    }

    pub(crate) fn not_found() -> Self {
        Self::text(StatusCode::NOT_FOUND, "404 Not Found\n")
    }

    pub(crate) fn method_not_allowed(allow: &'static str) -> Self {
        let mut r = Self::text(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
        r.headers = Some(Box::new(ExtraHeaders(vec![(
            ALLOW,
            HeaderValue::from_static(allow),
        )])));
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
            public_document: true,
            body: Bytes::from(json),
            cors: None,
            headers: None,
        }
    }

    fn text(status: StatusCode, body: &'static str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            challenge: None,
            public_document: false,
            body: Bytes::from_static(body.as_bytes()),
            cors: None,
            headers: None,
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
            public_document: false,
            body: Bytes::from(body.to_string()),
            cors: None,
            headers: None,
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
        if !self.content_type.is_empty() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        }
        if let Some(challenge) = self.challenge {
            headers.insert(WWW_AUTHENTICATE, challenge);
        }
        if self.public_document {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        } else if has_challenge {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        if let Some(cors) = &self.cors {
            cors.apply(headers);
        }
        for (name, value) in self.headers.map(|h| h.0).unwrap_or_default() {
            headers.append(name, value);
        }
        response
    }
}
