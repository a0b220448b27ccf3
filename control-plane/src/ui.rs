//! The web console: static assets built into the binary, served at `/ui/`, and its
//! sign-in endpoints (`/ui/session`).
//!
//! The assets are the sources under `control-plane/ui/` (plain ES modules and one CSS file,
//! no build step), embedded with `include_bytes!`, so the console works offline and the
//! Rust build needs no Node. They are revalidated on every load (`Cache-Control: no-cache`
//! with a strong `ETag` computed once), since their names carry no content hash.
//!
//! Every answer of this router carries a strict Content-Security-Policy (no inline script
//! or style, nothing from other origins, no framing) and `X-Frame-Options: DENY`.
//!
//! Signing in pastes an API token (or an OAuth access token with the `admin`/`user` scope)
//! once; it is checked like a bearer token and kept in the process's memory, and the
//! browser holds only an opaque session id ([`crate::authenticator::ui_session`]). The REST
//! API then accepts that cookie, with the session's CSRF token on writes. Nothing here is
//! an API of its own: every page reads and writes through `/api/v1/`.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::authenticator::Authenticator;
use crate::authenticator::ui_session::CSRF_HEADER;
use crate::error::ServiceError;
use crate::rest::{ApiError, ApiJson, session_credential};

/// The policy of every console answer.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// (path under `/ui/`, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../ui/index.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../ui/style.css"),
    ),
    ("app.js", JS, include_bytes!("../ui/app.js")),
    ("api.js", JS, include_bytes!("../ui/api.js")),
    ("dom.js", JS, include_bytes!("../ui/dom.js")),
    (
        "pages/overview.js",
        JS,
        include_bytes!("../ui/pages/overview.js"),
    ),
    (
        "pages/proxies.js",
        JS,
        include_bytes!("../ui/pages/proxies.js"),
    ),
    (
        "pages/routes.js",
        JS,
        include_bytes!("../ui/pages/routes.js"),
    ),
    (
        "pages/certificates.js",
        JS,
        include_bytes!("../ui/pages/certificates.js"),
    ),
    (
        "pages/tokens.js",
        JS,
        include_bytes!("../ui/pages/tokens.js"),
    ),
    (
        "pages/services.js",
        JS,
        include_bytes!("../ui/pages/services.js"),
    ),
    ("pages/oauth.js", JS, include_bytes!("../ui/pages/oauth.js")),
    (
        "pages/docker.js",
        JS,
        include_bytes!("../ui/pages/docker.js"),
    ),
    ("pages/logs.js", JS, include_bytes!("../ui/pages/logs.js")),
];
const JS: &str = "text/javascript; charset=utf-8";

/// Strong ETags of [`ASSETS`], computed on first use.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|(_, _, body)| {
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(body);
            format!("\"{}\"", crate::auth::hex(&digest[..12]))
        })
        .collect()
});

/// `/`, `/ui`, `/ui/`, `/ui/{asset}` and `/ui/session`, with the console's headers.
pub fn router(authn: Authenticator) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(index))
        .route("/ui/{*path}", get(asset))
        .route("/ui/session", get(whoami).post(sign_in).delete(sign_out))
        .layer(axum::middleware::from_fn(headers))
        .with_state(authn)
}

async fn headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

async fn index(req_headers: HeaderMap) -> Response {
    serve(0, &req_headers)
}

async fn asset(Path(path): Path<String>, req_headers: HeaderMap) -> Response {
    match ASSETS.iter().position(|(p, _, _)| *p == path) {
        Some(i) => serve(i, &req_headers),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

fn serve(i: usize, req_headers: &HeaderMap) -> Response {
    let (_, content_type, body) = ASSETS[i];
    let etag = &ETAGS[i];
    let cache = [
        (header::CACHE_CONTROL, "no-cache"),
        (header::ETAG, etag.as_str()),
    ];
    let fresh = req_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if fresh {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (cache, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// `POST /ui/session`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    /// An API token, or an OAuth access token for the control plane.
    token: String,
}

/// Who the session is, and the CSRF token its writes carry.
#[derive(Serialize)]
struct SessionView {
    token_id: String,
    scope: crate::model::TokenScope,
    csrf: String,
    /// The header to send `csrf` in.
    csrf_header: &'static str,
}

async fn sign_in(State(authn): State<Authenticator>, ApiJson(body): ApiJson<SignIn>) -> Response {
    let token = body.token.trim().to_owned();
    let caller = match authn.api_caller(&token).await {
        Ok(c) => c,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let (id, csrf) = authn.sessions().create(token);
    let view = SessionView {
        token_id: caller.token_id,
        scope: caller.scope,
        csrf,
        csrf_header: CSRF_HEADER,
    };
    (
        [(header::SET_COOKIE, authn.sessions().set_cookie(&id))],
        axum::Json(view),
    )
        .into_response()
}

async fn whoami(State(authn): State<Authenticator>, req: Request) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let (secret, csrf) = session_credential(&parts, &authn)?;
    let caller = authn.api_caller(&secret).await?;
    let view = SessionView {
        token_id: caller.token_id,
        scope: caller.scope,
        csrf,
        csrf_header: CSRF_HEADER,
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(view)).into_response())
}

/// Signs out: needs the CSRF token like any write, so another site cannot sign users out.
async fn sign_out(State(authn): State<Authenticator>, req: Request) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    session_credential(&parts, &authn)?;
    let sessions = authn.sessions();
    let id = parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| sessions.cookie_value(v))
        .ok_or(ServiceError::Unauthenticated("no console session"))?;
    sessions.remove(id);
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, sessions.set_cookie(""))],
    )
        .into_response())
}
