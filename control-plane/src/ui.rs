//! The web console: static assets built into the binary, served at `/ui/`, and its
//! sign-in endpoints (`/ui/session`, `/ui/login`, `/ui/callback`).
//!
//! The assets are the sources under `control-plane/ui/` (plain ES modules and one CSS file,
//! no build step), embedded with `include_bytes!`, so the console works offline and the
//! Rust build needs no Node. They are revalidated on every load (`Cache-Control: no-cache`
//! with a strong `ETag` computed once), since their names carry no content hash.
//!
//! Every answer of this router carries a strict Content-Security-Policy (no inline script
//! or style, nothing from other origins, no framing) and `X-Frame-Options: DENY`.
//!
//! Two ways in. Single sign-on: `/ui/login` sends the browser through the built-in
//! authorization server as the public client `portcullis-console` (authorization code +
//! PKCE S256, `state` bound to the browser by a 10-minute HttpOnly cookie, verifier kept
//! here); `/ui/callback` exchanges the code in-process and keeps the access token as the
//! session's credential, so the session ends when that token expires (an hour by default)
//! or is revoked. Or pasting an API token (or an OAuth access token with the `admin`/`user`
//! scope) once; it is checked like a bearer token and kept in the process's memory, and the
//! browser holds only an opaque session id ([`crate::authenticator::ui_session`]). The REST
//! API then accepts that cookie, with the session's CSRF token on writes. Nothing here is
//! an API of its own: every page reads and writes through `/api/v1/`.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::authenticator::Authenticator;
use crate::authenticator::ui_session::CSRF_HEADER;
use crate::error::ServiceError;
use crate::oauth::OAuthServer;
use crate::oauth::console_client::{CALLBACK_PATH, CONSOLE_CLIENT_ID, redirect_uri};
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

/// What the console's handlers need.
#[derive(Clone)]
struct UiState {
    authn: Authenticator,
    oauth: OAuthServer,
}

impl axum::extract::FromRef<UiState> for Authenticator {
    fn from_ref(s: &UiState) -> Self {
        s.authn.clone()
    }
}

/// `/`, `/ui`, `/ui/`, `/ui/{asset}`, `/ui/session` and the OAuth sign-in (`/ui/login`,
/// `/ui/callback`), with the console's headers.
pub fn router(authn: Authenticator, oauth: OAuthServer) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(index))
        .route("/ui/{*path}", get(asset))
        .route("/ui/session", get(whoami).post(sign_in).delete(sign_out))
        .route("/ui/login", get(login))
        .route(CALLBACK_PATH, get(callback))
        .layer(axum::middleware::from_fn(headers))
        .with_state(UiState { authn, oauth })
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

/// `GET /ui/session`: the signed-in console session (200), nobody (204: no session cookie),
/// or a cookie that names no live session (401).
async fn whoami(State(authn): State<Authenticator>, req: Request) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    if !has_session_cookie(&parts, &authn) {
        // Nobody signed in is an answer, not a failed credential: the console asks this
        // before every sign-in, and a 401 there filled the request log's errors.
        return Ok((
            StatusCode::NO_CONTENT,
            [(header::CACHE_CONTROL, "no-store")],
        )
            .into_response());
    }
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

/// True when the request carries the console's session cookie at all (live or not).
fn has_session_cookie(parts: &axum::http::request::Parts, authn: &Authenticator) -> bool {
    let sessions = authn.sessions();
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| sessions.cookie_value(v).is_some())
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

/// `GET /ui/login`: sends the browser to the authorization server as the console's
/// built-in public client (PKCE S256), binding the login's `state` to this browser with a
/// short-lived cookie. No scope is asked for: the token carries what the login rules grant.
async fn login(State(s): State<UiState>) -> Response {
    let sessions = s.authn.sessions();
    let (state, challenge) = sessions.begin_login();
    let mut to = format!("{}/authorize?", s.oauth.issuer());
    to.push_str(
        &url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("response_type", "code"),
                ("client_id", CONSOLE_CLIENT_ID),
                ("redirect_uri", redirect_uri(&s.oauth).as_str()),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
                ("state", state.as_str()),
            ])
            .finish(),
    );
    (
        [(header::SET_COOKIE, sessions.set_login_cookie(&state))],
        Redirect::to(&to),
    )
        .into_response()
}

/// The authorization response at `/ui/callback`.
#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    iss: Option<String>,
}

/// Why an OAuth sign-in failed, as the sign-in page's `signin_error` (a code, never a
/// secret; the page words it).
#[derive(Clone, Copy)]
enum LoginFailure {
    /// The user cancelled, or the login rules refused them.
    Denied,
    /// The authorization server answered with another error.
    Refused,
    /// No matching login in progress (expired, another browser, replayed).
    Stale,
    /// The code did not yield a token.
    Token,
    /// Logged in, but granted neither `admin` nor `user`.
    Scope,
}

impl LoginFailure {
    fn code(self) -> &'static str {
        match self {
            Self::Denied => "access_denied",
            Self::Refused => "login_failed",
            Self::Stale => "login_expired",
            Self::Token => "token_refused",
            Self::Scope => "no_console_scope",
        }
    }
}

async fn callback(
    State(s): State<UiState>,
    req_headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<CallbackQuery>,
) -> Response {
    let sessions = s.authn.sessions();
    let clear_login = (header::SET_COOKIE, sessions.set_login_cookie(""));
    match finish_login(&s, &req_headers, q).await {
        Ok(id) => {
            let mut resp = (
                AppendHeaders([clear_login, (header::SET_COOKIE, sessions.set_cookie(&id))]),
                Redirect::to("/ui/"),
            )
                .into_response();
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(why) => (
            [clear_login],
            Redirect::to(&format!("/ui/?signin_error={}", why.code())),
        )
            .into_response(),
    }
}

/// Checks the response against the login this browser began, exchanges the code and
/// starts a session for the access token; returns the session id.
async fn finish_login(
    s: &UiState,
    req_headers: &HeaderMap,
    q: CallbackQuery,
) -> Result<String, LoginFailure> {
    use subtle::ConstantTimeEq as _;
    let sessions = s.authn.sessions();
    let bound = req_headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| sessions.login_cookie_value(v));
    let state = q.state.as_deref().unwrap_or_default();
    let same = bound.is_some_and(|b| bool::from(b.as_bytes().ct_eq(state.as_bytes())));
    if !same || state.is_empty() {
        return Err(LoginFailure::Stale);
    }
    let verifier = sessions.finish_login(state).ok_or(LoginFailure::Stale)?;
    if let Some(error) = q.error {
        return Err(if error == "access_denied" {
            LoginFailure::Denied
        } else {
            LoginFailure::Refused
        });
    }
    // RFC 9207: the response names the issuer it came from.
    if q.iss.as_deref().is_some_and(|iss| iss != s.oauth.issuer()) {
        return Err(LoginFailure::Refused);
    }
    let code = q.code.ok_or(LoginFailure::Refused)?;
    let presented = crate::oauth::clients::Presented {
        client_id: Some(CONSOLE_CLIENT_ID.into()),
        ..Default::default()
    };
    let request = crate::oauth::token::TokenRequest {
        grant_type: Some("authorization_code".into()),
        code: Some(code),
        redirect_uri: Some(redirect_uri(&s.oauth)),
        code_verifier: Some(verifier),
        ..Default::default()
    };
    let token = crate::oauth::token::token(&s.oauth, &presented, request)
        .await
        .map_err(|_| LoginFailure::Token)?;
    s.authn
        .api_caller(&token.access_token)
        .await
        .map_err(|_| LoginFailure::Scope)?;
    Ok(sessions.create(token.access_token).0)
}
