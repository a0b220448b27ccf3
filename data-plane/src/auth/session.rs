//! `redirect` mode: browser login at the edge with a sealed session cookie.
//!
//! A browser without a valid session is sent (302) to the authorization server's
//! `/authorize` as the proxy's built-in client (`portcullis-edge:{host}`, public, PKCE
//! S256), asking for the proxy's canonical resource `https://{host}`. State, PKCE verifier
//! and the page to return to travel in a short-lived sealed login cookie, so the data
//! plane keeps no login state. The authorization server sends the browser back to the
//! reserved path [`CALLBACK`], where the state is compared in constant time, the code is
//! exchanged at the token endpoint (HTTP, like any OAuth client) and the access token is
//! sealed into the session cookie.
//!
//! Each later request opens the cookie and verifies the token exactly like `forward` mode
//! (signature, issuer, expiry, revocation, audience, scopes). The cookies never reach the
//! upstream. Requests that are not page loads get 401 instead of a redirect, so scripts
//! see an error rather than a login page.
//!
//! Reserved paths on a redirect-mode proxy (never forwarded): [`LOGIN`] (start a login,
//! `?rd=/path` to return to), [`CALLBACK`], [`LOGOUT`] (`?rd=/path`), anything else
//! under [`RESERVED_PREFIX`] is 404.
//!
//! Cookies are AES-256-GCM with a random nonce, the cookie name as associated data and a
//! per-proxy key from the snapshot: `base64url(nonce ‖ ciphertext ‖ tag)`.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, COOKIE, HeaderName, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt as _, Limited};
use subtle::ConstantTimeEq as _;

use super::allow::Allowlist;
use super::invalid;
use super::paths::PublicPaths;
use super::{Claims, IdentityHeaders, Origin, Verdict, Verifier};
use crate::answer::{Action, Page, Rejection, is_page_load};
use crate::body::{self, ForwardBody, ProxyBody};
use crate::spec::InvalidField;
use crate::spec::RouteAccess;
use crate::upstream::{ClientCache, DEFAULT_IDLE_TIMEOUT, HttpClient};

mod refusal;

use refusal::{Refusal, query_value, refuse, retry_href};

/// Paths under this prefix belong to Portcullis on a redirect-mode proxy.
pub(crate) const RESERVED_PREFIX: &str = "/.portcullis/";
/// Starts a login; `?rd=/path` names the page to come back to.
pub(crate) const LOGIN: &str = "/.portcullis/login";
/// The redirect URI registered for the proxy's built-in client.
pub(crate) const CALLBACK: &str = "/.portcullis/callback";
/// Ends the session; `?rd=/path` names the page to go to afterwards.
pub(crate) const LOGOUT: &str = "/.portcullis/logout";
/// The session cookie (the sealed access token).
pub(crate) const SESSION_COOKIE: &str = "__Host-portcullis-session";
/// The login-in-progress cookie (state, PKCE verifier, return path).
pub(crate) const LOGIN_COOKIE: &str = "__Host-portcullis-login";
/// Client ids of the authorization server's built-in per-proxy clients.
pub(crate) const CLIENT_PREFIX: &str = "portcullis-edge:";

/// How long a login may take from redirect to callback.
const LOGIN_TTL_SECS: u64 = 600;
/// Cookies this module owns; none of them is forwarded upstream.
const COOKIE_PREFIX: &str = "__Host-portcullis-";
/// Random state and PKCE verifier: 32 bytes, base64url = 43 characters.
const RANDOM_LEN: usize = 43;
/// Token endpoint call limits.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

/// Why a session key from the snapshot was refused.
#[derive(Debug, thiserror::Error)]
#[error("must be 32 bytes, got {0}")]
pub(crate) struct KeyError(usize);

/// Why the code exchange failed. Never carries token or code content.
#[derive(Debug, thiserror::Error)]
enum ExchangeError {
    #[error("token endpoint unreachable: {0}")]
    Http(String),
    #[error("token endpoint timed out")]
    Timeout,
    #[error("token endpoint answered {0}")]
    Status(StatusCode),
    #[error("token endpoint answer is not a token response")]
    Body,
    #[error("issued token refused: {0}")]
    Token(super::TokenError),
}

/// Seals and opens this proxy's cookies.
pub(crate) struct CookieKey(LessSafeKey);

/// Validated redirect-mode settings of one proxy, before the verifier is attached.
#[derive(Clone)]
pub(crate) struct SessionSpec {
    key: Arc<CookieKey>,
    required_scopes: Box<[Box<str>]>,
    public_paths: PublicPaths,
    allow: Allowlist,
    /// Identity header names (a session never forwards a token: it has no bearer header).
    identity: Arc<IdentityHeaders>,
}

/// A redirect-mode proxy's compiled policy.
#[derive(Debug)]
pub(crate) struct SessionAuth {
    key: Arc<CookieKey>,
    verifier: Arc<Verifier>,
    required_scopes: Box<[Box<str>]>,
    public_paths: PublicPaths,
    /// The proxy's allowlist, exactly as in `forward` mode.
    allow: Allowlist,
    authorize_url: Box<str>,
    token_url: Box<str>,
    revoke_url: Box<str>,
    /// Identity header names, prebuilt.
    identity: Arc<IdentityHeaders>,
}

/// The decoded login cookie.
struct LoginState {
    issued_at: u64,
    state: String,
    verifier: String,
    return_to: String,
}

// === impl CookieKey ===

impl CookieKey {
    /// From the snapshot's 32 raw bytes.
    pub(crate) fn new(raw: &[u8]) -> Result<Self, KeyError> {
        UnboundKey::new(&AES_256_GCM, raw)
            .map(|k| Self(LessSafeKey::new(k)))
            .map_err(|_| KeyError(raw.len()))
    }

    /// Seals `plain` as the value of cookie `name`.
    pub(crate) fn seal(&self, name: &str, plain: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        // The system RNG failing is not recoverable; a repeated nonce must never be used.
        if SystemRandom::new().fill(&mut nonce).is_err() {
            panic!("system random number generator failed");
        }
        let mut sealed = plain.to_vec();
        // Sealing with a fresh nonce cannot fail for inputs of this size.
        if self
            .0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut sealed,
            )
            .is_err()
        {
            panic!("AES-GCM seal failed");
        }
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        B64.encode(out)
    }

    /// Opens a value of cookie `name`; `None` when it was not sealed with this key for
    /// this cookie, or was altered.
    pub(crate) fn open(&self, name: &str, value: &str) -> Option<Vec<u8>> {
        let mut raw = B64.decode(value).ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let nonce = Nonce::try_assume_unique_for_key(&raw[..NONCE_LEN]).ok()?;
        let plain = self
            .0
            .open_within(nonce, Aad::from(name.as_bytes()), &mut raw, NONCE_LEN..)
            .ok()?;
        let len = plain.len();
        raw.truncate(len);
        Some(raw)
    }
}

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieKey(..)")
    }
}

// === impl SessionSpec ===

impl SessionSpec {
    /// Identity header names.
    pub(crate) fn identity(&self) -> &IdentityHeaders {
        &self.identity
    }

    /// Validates the wire settings; errors name the wire field.
    pub(crate) fn from_proto(
        p: &portcullis_proto::v1::ProxyAuthPolicy,
    ) -> Result<Self, InvalidField> {
        let key = CookieKey::new(&p.session_key)
            .map_err(|e| invalid("auth.session_key", e.to_string()))?;
        let required_scopes =
            super::scopes(&p.required_scopes).map_err(|e| invalid("auth.required_scopes", e))?;
        let public_paths = PublicPaths::parse(&p.public_paths)
            .map_err(|e| invalid("auth.public_paths", e.to_string()))?;
        let identity = IdentityHeaders::from_proto(p.forward_token, &p.identity_headers)?;
        Ok(Self {
            key: Arc::new(key),
            required_scopes,
            public_paths,
            allow: Allowlist::from_proto(p)?,
            identity: Arc::new(identity),
        })
    }
}

impl std::fmt::Debug for SessionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSpec").finish_non_exhaustive()
    }
}

// === impl SessionAuth ===

impl SessionAuth {
    /// Links the settings with the snapshot's verifier; `None` when the snapshot names no
    /// issuer (nowhere to log in: the proxy then fails closed).
    pub(crate) fn new(spec: &SessionSpec, verifier: Arc<Verifier>) -> Option<Self> {
        let issuer = verifier.issuer().trim_end_matches('/');
        if issuer.is_empty() {
            return None;
        }
        Some(Self {
            authorize_url: format!("{issuer}/authorize").into(),
            token_url: format!("{issuer}/token").into(),
            revoke_url: format!("{issuer}/revoke").into(),
            key: spec.key.clone(),
            required_scopes: spec.required_scopes.clone(),
            public_paths: spec.public_paths.clone(),
            allow: spec.allow.clone(),
            identity: spec.identity.clone(),
            verifier,
        })
    }

    /// Identity header names, for [`super::apply_identity`].
    pub(crate) fn identity(&self) -> &IdentityHeaders {
        &self.identity
    }

    /// Decides one request outside [`RESERVED_PREFIX`]: a valid session passes with its
    /// identity; otherwise page loads are sent to log in and anything else gets 401.
    pub(crate) fn check(
        &self,
        origin: &Origin<'_>,
        route: &RouteAccess,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<Verdict, Rejection> {
        if !origin.is_well_formed() {
            return Err(Rejection::bad_request("malformed Host header"));
        }
        let path = uri.path();
        if path.starts_with(RESERVED_PREFIX) {
            // Answered by `intercept`; never forwarded.
            return Err(Rejection::not_found());
        }
        if self.public_paths.matches(path) {
            return Ok(Verdict::Anonymous);
        }
        if let Some(value) = cookie(headers, SESSION_COOKIE) {
            match self.session_claims(origin, path, value) {
                // Logging in again would not change scopes or who the user is: refuse.
                Ok(claims) if !has_all(&route.required_scopes, &claims.scope) => {
                    if is_page_load(method, headers) {
                        let missing = route
                            .required_scopes
                            .iter()
                            .filter(|need| !claims.scope.split(' ').any(|g| g == &***need))
                            .map(|s| &**s)
                            .collect::<Vec<_>>()
                            .join(" ");
                        return Err(refused_session(origin, uri, &claims, Some(&missing)));
                    }
                    return Err(Rejection::session_lacks_scope());
                }
                Ok(claims) if !self.allow.permits(&claims) => {
                    tracing::debug!(sub = %claims.sub, "user not on the proxy's allowlist");
                    if is_page_load(method, headers) {
                        return Err(refused_session(origin, uri, &claims, None));
                    }
                    return Err(Rejection::not_allowed());
                }
                Ok(claims) => return Ok(Verdict::Authenticated(claims)),
                Err(error) => tracing::debug!(%error, "session cookie not accepted"),
            }
        }
        if is_page_load(method, headers) {
            let return_to = uri.path_and_query().map_or("/", |pq| pq.as_str());
            Err(self.start_login(origin, return_to, false))
        } else {
            Err(Rejection::login_required())
        }
    }

    /// Answers the reserved paths; `None` for every other path.
    pub(crate) async fn intercept<B>(
        &self,
        origin: &Origin<'_>,
        req: &Request<B>,
    ) -> Option<Response<ProxyBody>> {
        let path = req.uri().path();
        if !path.starts_with(RESERVED_PREFIX) {
            return None;
        }
        let answer = if !origin.is_well_formed() {
            Rejection::bad_request("malformed Host header")
        } else if path == LOGIN {
            // Decoded (the refusal pages' "try again" links encode it), then checked.
            // `prompt=select_account`: "sign in as someone else" (passed to the issuer).
            let rd = refusal::query_value(req.uri(), "rd", 2049);
            let switch = query_param(req.uri(), "prompt") == Some(refusal::SELECT_ACCOUNT);
            self.start_login(origin, safe_return(rd.as_deref()), switch)
        } else if path == CALLBACK {
            let page = is_page_load(req.method(), req.headers());
            self.callback(origin, req.uri(), req.headers(), page).await
        } else if path == LOGOUT {
            self.logout(req.headers()).await
        } else {
            Rejection::not_found()
        };
        Some(answer.into_response())
    }

    fn session_claims(
        &self,
        origin: &Origin<'_>,
        path: &str,
        value: &str,
    ) -> Result<Arc<Claims>, super::TokenError> {
        let token = self
            .key
            .open(SESSION_COOKIE, value)
            .ok_or(super::TokenError::Malformed)?;
        let token = std::str::from_utf8(&token).map_err(|_| super::TokenError::Malformed)?;
        self.verify(origin, path, token)
    }

    /// Everything `forward` mode checks: signature, issuer, time, revocation, audience and
    /// scopes (a session lacking a scope is as good as none).
    fn verify(
        &self,
        origin: &Origin<'_>,
        path: &str,
        token: &str,
    ) -> Result<Arc<Claims>, super::TokenError> {
        let claims = self.verifier.verify(token)?;
        if !claims
            .aud
            .iter()
            .any(|aud| super::paths::audience_matches(aud, origin, path))
        {
            return Err(super::TokenError::Audience);
        }
        let has_scopes = self
            .required_scopes
            .iter()
            .all(|need| claims.scope.split(' ').any(|g| g == &**need));
        if !has_scopes {
            // Only logged (debug); the browser is sent to log in again either way.
            return Err(super::TokenError::Audience);
        }
        Ok(claims)
    }

    /// 302 to `/authorize` with a fresh login cookie.
    fn start_login(&self, origin: &Origin<'_>, return_to: &str, select_account: bool) -> Rejection {
        let state = random();
        let verifier = random();
        let challenge = B64.encode(digest(&SHA256, verifier.as_bytes()));
        let host = bare_host(origin);
        let mut target = String::with_capacity(512);
        target.push_str(&self.authorize_url);
        target.push('?');
        let start = target.len();
        let mut query = url::form_urlencoded::Serializer::for_suffix(target, start);
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &format!("{CLIENT_PREFIX}{host}"))
            .append_pair("redirect_uri", &redirect_uri(origin))
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", &state)
            .append_pair("resource", &format!("https://{host}"));
        if !self.required_scopes.is_empty() {
            query.append_pair("scope", &self.required_scopes.join(" "));
        }
        if select_account {
            query.append_pair("prompt", refusal::SELECT_ACCOUNT);
        }
        let location = query.finish();
        let login = LoginState {
            issued_at: now(),
            state,
            verifier,
            return_to: return_to.to_owned(),
        };
        let sealed = self.key.seal(LOGIN_COOKIE, &login.encode());
        let cookie = set_cookie(LOGIN_COOKIE, &sealed, Some(LOGIN_TTL_SECS));
        match HeaderValue::try_from(location) {
            Ok(location) => Rejection::redirect(location, vec![cookie]),
            Err(_) => Rejection::bad_request("request cannot be turned into a login redirect"),
        }
    }

    /// The authorization response: state check, code exchange, session cookie. Failures
    /// are pages for a browser (`page`), JSON otherwise; the login cookie is cleared.
    async fn callback(
        &self,
        origin: &Origin<'_>,
        uri: &Uri,
        headers: &HeaderMap,
        page: bool,
    ) -> Rejection {
        let clear_login = clear_cookie(LOGIN_COOKIE);
        let Some(login) = cookie(headers, LOGIN_COOKIE)
            .and_then(|v| self.key.open(LOGIN_COOKIE, v))
            .and_then(|plain| LoginState::decode(&plain))
            .filter(|l| now().saturating_sub(l.issued_at) <= LOGIN_TTL_SECS)
        else {
            return refuse(
                page,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "no login in progress in this browser, or it expired; reload the page to log in again",
                &Page {
                    title: "Sign-in expired",
                    lead: "No sign-in is in progress in this browser, or it took longer than \
                           10 minutes. Start again.",
                    who: None,
                    detail: None,
                    actions: &[Action {
                        href: LOGIN,
                        label: "Sign in again",
                        primary: true,
                    }],
                },
                clear_login,
            );
        };
        let again = retry_href(&login.return_to, false);
        let try_again = [Action {
            href: &again,
            label: "Try again",
            primary: true,
        }];
        let state = query_param(uri, "state").unwrap_or_default();
        if !bool::from(state.as_bytes().ct_eq(login.state.as_bytes())) {
            return refuse(
                page,
                StatusCode::FORBIDDEN,
                "invalid_request",
                "the login state does not match this browser's login",
                &Page {
                    title: "Sign-in could not be verified",
                    lead: "This answer from the sign-in service belongs to another sign-in \
                           (another tab, or an old link). Start again from here.",
                    who: None,
                    detail: None,
                    actions: &try_again,
                },
                clear_login,
            );
        }
        if let Some(error) = query_value(uri, "error", 64) {
            let description =
                query_value(uri, "error_description", refusal::MAX_SHOWN).unwrap_or_default();
            let refusal = Refusal::sort(&error, &description);
            let switch = retry_href(&login.return_to, true);
            let actions: &[Action<'_>] = match refusal {
                Refusal::Rules { .. } => &[
                    Action {
                        href: &switch,
                        label: "Sign in as someone else",
                        primary: true,
                    },
                    Action {
                        href: &again,
                        label: "Try again",
                        primary: false,
                    },
                ],
                _ => &try_again,
            };
            return refuse(
                page,
                StatusCode::FORBIDDEN,
                "access_denied",
                "the login was refused or cancelled",
                &refusal.page(&description, &error, actions),
                clear_login,
            );
        }
        let Some(code) = query_param(uri, "code").filter(|c| !c.is_empty()) else {
            return refuse(
                page,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the callback carries no code",
                &Page {
                    title: "Sign-in failed",
                    lead: "The sign-in service sent no result back. Start again.",
                    who: None,
                    detail: None,
                    actions: &try_again,
                },
                clear_login,
            );
        };
        let (token, ttl) = match self.exchange(origin, code, &login.verifier).await {
            Ok(issued) => issued,
            Err(error) => {
                tracing::warn!(%error, "login: code exchange failed");
                let detail = match error {
                    ExchangeError::Http(_) | ExchangeError::Timeout => {
                        "this proxy could not reach the sign-in service (token endpoint unreachable)"
                    }
                    ExchangeError::Status(_) => {
                        "the sign-in service refused the sign-in code (it may have been used already)"
                    }
                    ExchangeError::Body | ExchangeError::Token(_) => {
                        "the sign-in service answered with no usable token"
                    }
                };
                return refuse(
                    page,
                    StatusCode::BAD_GATEWAY,
                    "server_error",
                    "the login could not be completed; reload the page to try again",
                    &Page {
                        title: "Sign-in could not be completed",
                        lead: "You signed in, but this site could not finish the sign-in. \
                               Trying again usually helps; if it keeps happening, tell the \
                               site's administrator.",
                        who: None,
                        detail: Some(detail),
                        actions: &try_again,
                    },
                    clear_login,
                );
            }
        };
        let sealed = self.key.seal(SESSION_COOKIE, token.as_bytes());
        let session = set_cookie(SESSION_COOKIE, &sealed, Some(ttl));
        match HeaderValue::try_from(login.return_to) {
            Ok(location) => Rejection::redirect(location, vec![clear_login, session]),
            Err(_) => {
                Rejection::redirect(HeaderValue::from_static("/"), vec![clear_login, session])
            }
        }
    }

    /// Clears the session (revoking its token at the authorization server, best effort)
    /// and sends the browser to a same-origin page.
    async fn logout(&self, headers: &HeaderMap) -> Rejection {
        let token = cookie(headers, SESSION_COOKIE)
            .and_then(|v| self.key.open(SESSION_COOKIE, v))
            .and_then(|t| String::from_utf8(t).ok());
        if let Some(token) = token {
            let client_id = self
                .verifier
                .verify(&token)
                .map(|c| c.client_id.clone())
                .unwrap_or_default();
            if !client_id.is_empty() {
                let form = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("token", &token)
                    .append_pair("token_type_hint", "access_token")
                    .append_pair("client_id", &client_id)
                    .finish();
                match post_form(&self.revoke_url, form).await {
                    Ok((status, _)) if status.is_success() => {}
                    Ok((status, _)) => tracing::warn!(%status, "logout: revocation refused"),
                    Err(error) => tracing::warn!(%error, "logout: revocation failed"),
                }
            }
        }
        Rejection::redirect(
            HeaderValue::from_static("/"),
            vec![clear_cookie(SESSION_COOKIE), clear_cookie(LOGIN_COOKIE)],
        )
    }

    /// Redeems `code` at the token endpoint and checks the token like any request would.
    async fn exchange(
        &self,
        origin: &Origin<'_>,
        code: &str,
        verifier: &str,
    ) -> Result<(String, u64), ExchangeError> {
        let host = bare_host(origin);
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", &redirect_uri(origin))
            .append_pair("client_id", &format!("{CLIENT_PREFIX}{host}"))
            .append_pair("code_verifier", verifier)
            .append_pair("resource", &format!("https://{host}"))
            .finish();
        let (status, body) = post_form(&self.token_url, form).await?;
        if status != StatusCode::OK {
            return Err(ExchangeError::Status(status));
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            access_token: String,
            expires_in: Option<u64>,
        }
        let answer: TokenResponse =
            serde_json::from_slice(&body).map_err(|_| ExchangeError::Body)?;
        match self.verify(origin, "/", &answer.access_token) {
            // A signing key created for this very token may not have reached this data
            // plane's snapshot yet; every request verifies the token again anyway.
            Ok(_) | Err(super::TokenError::UnknownKey) => {}
            Err(error) => return Err(ExchangeError::Token(error)),
        }
        Ok((answer.access_token, answer.expires_in.unwrap_or(3600)))
    }
}

// === impl LoginState ===

impl LoginState {
    /// `issued_at (8 bytes BE) ‖ state ‖ verifier ‖ return path`.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 2 * RANDOM_LEN + self.return_to.len());
        out.extend_from_slice(&self.issued_at.to_be_bytes());
        out.extend_from_slice(self.state.as_bytes());
        out.extend_from_slice(self.verifier.as_bytes());
        out.extend_from_slice(self.return_to.as_bytes());
        out
    }

    fn decode(raw: &[u8]) -> Option<Self> {
        let (issued_at, rest) = raw.split_first_chunk::<8>()?;
        if rest.len() < 2 * RANDOM_LEN {
            return None;
        }
        let (state, rest) = rest.split_at(RANDOM_LEN);
        let (verifier, return_to) = rest.split_at(RANDOM_LEN);
        Some(Self {
            issued_at: u64::from_be_bytes(*issued_at),
            state: String::from_utf8(state.to_vec()).ok()?,
            verifier: String::from_utf8(verifier.to_vec()).ok()?,
            return_to: safe_return(std::str::from_utf8(return_to).ok()).to_owned(),
        })
    }
}

// === helpers ===

/// The value of cookie `name` (first occurrence) across all `Cookie` headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// Removes this module's cookies from the request so the upstream never sees them.
/// Allocates only when one is present.
pub(crate) fn strip_cookies(headers: &mut HeaderMap) {
    let ours = headers.get_all(COOKIE).iter().any(|v| {
        v.as_bytes()
            .windows(COOKIE_PREFIX.len())
            .any(|w| w == COOKIE_PREFIX.as_bytes())
    });
    if !ours {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| {
            let text = v.to_str().ok()?;
            let rest: Vec<&str> = text
                .split(';')
                .map(str::trim)
                .filter(|pair| !pair.is_empty() && !pair.starts_with(COOKIE_PREFIX))
                .collect();
            (!rest.is_empty())
                .then(|| HeaderValue::try_from(rest.join("; ")).ok())
                .flatten()
        })
        .collect();
    headers.remove(COOKIE);
    for v in kept {
        headers.append(COOKIE, v);
    }
}

/// The page for a browser whose valid session is refused here (a scope the route needs,
/// (`missing_scopes`) or the proxy's allowlist): who is signed in, why, and the ways on:
/// another account (back to this page), or sign out.
fn refused_session(
    origin: &Origin<'_>,
    uri: &Uri,
    claims: &Claims,
    missing_scopes: Option<&str>,
) -> Rejection {
    let who = match (claims.login.as_str(), claims.email.as_str()) {
        ("", "") => claims.sub.clone(),
        ("", email) => email.to_owned(),
        (login, "") => login.to_owned(),
        (login, email) => format!("{login} ({email})"),
    };
    let host = bare_host(origin);
    let (lead, detail) = match missing_scopes {
        Some(missing) => (
            format!(
                "Your account may use {host}, but not this part of it. Ask the site's \
                 administrator for access, or sign in with another account."
            ),
            format!("this page requires the scope {missing}, which your sign-in was not given"),
        ),
        None => (
            format!(
                "Your account is not on the list of people allowed to use {host}. Ask the \
                 site's administrator for access, or sign in with another account."
            ),
            format!("{who} is not on the allowlist of {host}"),
        ),
    };
    Rejection::page(
        StatusCode::FORBIDDEN,
        &Page {
            title: "Access denied",
            lead: &lead,
            who: Some(&who),
            detail: Some(&detail),
            actions: &[
                Action {
                    href: &retry_href(
                        safe_return(uri.path_and_query().map(|pq| pq.as_str())),
                        true,
                    ),
                    label: "Sign in as someone else",
                    primary: true,
                },
                Action {
                    href: LOGOUT,
                    label: "Sign out",
                    primary: false,
                },
            ],
        },
        vec![],
    )
}

/// A same-origin path to return to; anything else (absolute or scheme-relative URLs,
/// backslashes, control characters) becomes `/`, so the login is no open redirect.
pub(crate) fn safe_return(raw: Option<&str>) -> &str {
    match raw {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.starts_with(RESERVED_PREFIX)
                && p.len() <= 2048
                && p.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'\\') =>
        {
            p
        }
        _ => "/",
    }
}

fn query_param<'u>(uri: &'u Uri, name: &str) -> Option<&'u str> {
    // Only values that need no decoding are used: codes, states and paths sent by us.
    uri.query()?
        .split('&')
        .find_map(|pair| pair.split_once('=').filter(|(k, _)| *k == name))
        .map(|(_, v)| v)
}

/// `{listener scheme}://{host}[:{listener's public port}]/.portcullis/callback`, the
/// default port left out.
///
/// The port is the data plane's own (reported to the control plane, which registers the
/// edge client's redirect URIs from it), never the one in the Host header: the client
/// chooses that, and the authorization server must not accept callbacks on ports no data
/// plane serves (another program there would receive the codes).
fn redirect_uri(origin: &Origin<'_>) -> String {
    let host = bare_host(origin);
    match origin.explicit_port() {
        Some(port) => format!("{}://{host}:{port}{CALLBACK}", origin.scheme()),
        None => format!("{}://{host}{CALLBACK}", origin.scheme()),
    }
}

/// The Host without port or trailing dot, lowercase.
fn bare_host(origin: &Origin<'_>) -> String {
    super::split_authority(origin.authority())
        .0
        .to_ascii_lowercase()
}

fn random() -> String {
    let mut bytes = [0u8; 32];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        panic!("system random number generator failed");
    }
    B64.encode(bytes)
}

fn has_all(required: &[Box<str>], granted: &str) -> bool {
    required
        .iter()
        .all(|need| granted.split(' ').any(|g| g == &**need))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn set_cookie(name: &str, value: &str, max_age: Option<u64>) -> (HeaderName, HeaderValue) {
    let mut text = format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age {
        text.push_str(&format!("; Max-Age={age}"));
    }
    // Names are constants and values base64url: always a valid header value.
    let value = HeaderValue::try_from(text).unwrap_or(HeaderValue::from_static(""));
    (SET_COOKIE, value)
}

fn clear_cookie(name: &str) -> (HeaderName, HeaderValue) {
    set_cookie(name, "", Some(0))
}

/// POSTs a form to the authorization server, returning status and (bounded) body.
async fn post_form(url: &str, form: String) -> Result<(StatusCode, Bytes), ExchangeError> {
    static CLIENT: OnceLock<HttpClient> = OnceLock::new();
    let client = CLIENT.get_or_init(|| ClientCache::new().get(EXCHANGE_TIMEOUT));
    let (body, _) = ForwardBody::new(body::full(form), DEFAULT_IDLE_TIMEOUT);
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| ExchangeError::Http(e.to_string()))?;
    let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
        return Err(ExchangeError::Http(format!("{url} is not an absolute URL")));
    };
    // Keep-alive connections to the authorization server, like any upstream's.
    let pool = client.pool(scheme, authority);
    let req = Request::post(uri.clone())
        .header(http::header::HOST, authority.as_str())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(ACCEPT, "application/json")
        .header(CACHE_CONTROL, "no-store")
        .body(body)
        .map_err(|e| ExchangeError::Http(e.to_string()))?;
    let call = async {
        let resp = pool
            .send(req, None)
            .await
            .map_err(|e| ExchangeError::Http(e.to_string()))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_TOKEN_RESPONSE)
            .collect()
            .await
            .map_err(|_| ExchangeError::Body)?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, call)
        .await
        .map_err(|_| ExchangeError::Timeout)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CookieKey {
        CookieKey::new(&[9u8; 32]).unwrap()
    }

    #[test]
    fn cookies_round_trip_and_refuse_tampering_other_keys_and_other_names() {
        let k = key();
        let sealed = k.seal(SESSION_COOKIE, b"eyJ.token.sig");
        assert!(!sealed.contains("token"));
        assert_ne!(
            sealed,
            k.seal(SESSION_COOKIE, b"eyJ.token.sig"),
            "random nonce"
        );
        assert_eq!(k.open(SESSION_COOKIE, &sealed).unwrap(), b"eyJ.token.sig");
        // Another cookie name (login cookie swapped in) does not open.
        assert!(k.open(LOGIN_COOKIE, &sealed).is_none());
        // Another proxy's key does not open.
        let other = CookieKey::new(&[8u8; 32]).unwrap();
        assert!(other.open(SESSION_COOKIE, &sealed).is_none());
        // Any flipped byte is detected.
        let raw = B64.decode(&sealed).unwrap();
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 1;
            assert!(
                k.open(SESSION_COOKIE, &B64.encode(bad)).is_none(),
                "byte {i}"
            );
        }
        for junk in ["", "a", "!!!", &sealed[..10]] {
            assert!(k.open(SESSION_COOKIE, junk).is_none(), "{junk:?}");
        }
        assert!(CookieKey::new(&[1u8; 16]).is_err());
    }

    #[test]
    fn login_state_round_trips_and_sanitises_the_return_path() {
        let l = LoginState {
            issued_at: 1234,
            state: random(),
            verifier: random(),
            return_to: "/app?x=1".into(),
        };
        let back = LoginState::decode(&l.encode()).unwrap();
        assert_eq!(
            (
                back.issued_at,
                &back.state,
                &back.verifier,
                back.return_to.as_str()
            ),
            (1234, &l.state, &l.verifier, "/app?x=1")
        );
        let evil = LoginState {
            return_to: "//evil.example/".into(),
            ..back
        };
        assert_eq!(LoginState::decode(&evil.encode()).unwrap().return_to, "/");
        assert!(LoginState::decode(b"short").is_none());
    }

    #[test]
    fn only_same_origin_paths_are_return_targets() {
        for ok in ["/", "/a/b?c=d", "/%2F%2Fevil"] {
            assert_eq!(safe_return(Some(ok)), ok);
        }
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "evil",
            "/a b",
            "/.portcullis/logout",
            "",
        ] {
            assert_eq!(safe_return(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_return(None), "/");
    }

    #[test]
    fn our_cookies_are_stripped_and_others_kept() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_static("a=1; __Host-portcullis-session=xyz; b=2"),
        );
        h.append(
            COOKIE,
            HeaderValue::from_static("__Host-portcullis-login=q"),
        );
        h.append(COOKIE, HeaderValue::from_static("c=3"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        strip_cookies(&mut h);
        let left: Vec<&str> = h
            .get_all(COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(left, ["a=1; b=2", "c=3"]);
        let mut plain = HeaderMap::new();
        plain.insert(COOKIE, HeaderValue::from_static("a=1"));
        strip_cookies(&mut plain);
        assert_eq!(plain[COOKIE], "a=1");
    }

    #[test]
    fn the_callback_is_on_the_listeners_public_port_whatever_the_host_header_says() {
        let uri =
            |secure, host, port| redirect_uri(&Origin::new(secure, host).with_public_port(port));
        for host in [
            "App.Example",
            "app.example:9999",
            "app.example.:80",
            "app.example:x",
        ] {
            assert_eq!(
                uri(false, host, 8080),
                "http://app.example:8080/.portcullis/callback",
                "{host}"
            );
            assert_eq!(
                uri(true, host, 443),
                "https://app.example/.portcullis/callback",
                "{host}"
            );
        }
        assert_eq!(
            uri(false, "app.example:8080", 80),
            "http://app.example/.portcullis/callback"
        );
        assert_eq!(
            uri(true, "[::1]:1", 8443),
            "https://[::1]:8443/.portcullis/callback"
        );
        // Without a public port the scheme's default is assumed, never the Host's port.
        assert_eq!(
            redirect_uri(&Origin::new(true, "app.example:8443")),
            "https://app.example/.portcullis/callback"
        );
    }
}
