//! Admission: the proxy's policy applied to one request, with the route it chose.
//!
//! Route selection is a pure lookup, so [`admit`] performs it before deciding and hands
//! the chosen entry out only with the admission.

use std::sync::Arc;

use http::{Request, Response};

use super::{Proxy, Routed};
use crate::answer::{CorsGrant, Rejection};
use crate::auth::{self, HeaderView, IdentityHeaders, Origin, OriginDecision};
use crate::body::ProxyBody;
use crate::policy::Policy;
use crate::router::{RouteMatcher, Selected};
use crate::upstream::Upstream;

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
                Err(rejection) => return Err(rejection.with_cors(cors)),
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

/// [`admit`] for a request whose head was not parsed into a `Request` (the HTTP/1.1 fast
/// path, `crate::request::h1`), reading its header fields as slices ([`HeaderView`]): the
/// same route lookup and `blocked` check, and for a protected proxy the same bearer
/// verification with the snapshot's keys ([`auth::ProxyAuth::admits`]). It admits only
/// what [`admit`] would admit without answering anything itself; `None` for everything
/// else — every refusal, a session (`redirect` mode) or unenforceable proxy, and a request
/// to a protected proxy that carries `Origin` (its CORS decision and grant are [`admit`]'s)
/// — and the caller then hands the request to the full path, which runs [`admit`].
///
/// The caller writes the upstream head as [`admit`] leaves a `Request`: without the
/// headers [`auth::is_client_claim`] names; for a protected proxy
/// ([`Admitted::identity_headers`]) also without `Authorization` when one is a bearer
/// credential and the token is not kept ([`auth::keeps_token`], the token verified), and
/// with the fields [`auth::write_identity_fields`] writes for [`Admitted::claims`]. It
/// counts a verified token (`metrics::token_checked`, `Valid`) once it serves the
/// request.
pub(crate) fn admit_head<'p, H: HeaderView + ?Sized>(
    proxy: &'p Proxy,
    origin: &Origin<'_>,
    method: &http::Method,
    path: &str,
    headers: &H,
) -> Option<Admitted<'p>> {
    let selected = proxy.routes(&Gate(())).select(method, path);
    let route = selected.target.access();
    if route.blocked {
        return None;
    }
    let claims = match proxy.policy() {
        Policy::Open => None,
        Policy::Protected(auth) => {
            if headers.contains(&http::header::ORIGIN) {
                return None;
            }
            auth.admits(origin, route, path, headers)?.into_claims()
        }
        Policy::Unenforceable | Policy::Session(_) => return None,
    };
    Some(Admitted {
        proxy,
        selected,
        cors: None,
        claims,
    })
}

/// Answers the reserved `/.portcullis/` paths of a `redirect` mode proxy (login, callback,
/// logout) before admission; `None` for every other request and proxy.
pub(crate) async fn intercept<B>(
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

    /// The identity settings of the admitting proxy when it is protected by bearer
    /// tokens (the upstream gets identity fields and no bearer credential); `None` for an
    /// open proxy. For a writer of the upstream head other than [`admit`] (see
    /// [`admit_head`]).
    pub(crate) fn identity_headers(&self) -> Option<&'p IdentityHeaders> {
        match self.proxy.policy() {
            Policy::Protected(auth) => Some(auth.identity()),
            _ => None,
        }
    }

    /// Adds the CORS headers owed to an allowed browser origin to the upstream's answer.
    pub fn expose(&self, response: &mut Response<ProxyBody>) {
        if let Some(cors) = &self.cors {
            cors.apply(response.headers_mut());
        }
    }
}
