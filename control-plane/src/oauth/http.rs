//! HTTP adapter for the OAuth server: the root-level protocol endpoints (the admin API under
//! `/api/v1/oauth/` is part of the REST gateway). Handlers parse, call the protocol modules
//! and render; nothing else.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;

use super::authorize::{self, AuthorizeRequest, Callback, Failure, LOGIN_COOKIE, Next};
use super::clients::{self, ClientMetadata, Presented};
use super::token::{self, TokenRequest};
use super::{ErrorCode, OAuthError, OAuthServer, keys, metadata};

type S = State<OAuthServer>;

/// Routes for the protocol endpoints.
pub fn router(server: OAuthServer) -> Router {
    Router::new()
        .route("/.well-known/oauth-authorization-server", get(metadata_doc))
        .route(
            "/.well-known/oauth-authorization-server/{*rest}",
            get(metadata_doc),
        )
        .route("/.well-known/openid-configuration", get(metadata_doc))
        .route(
            "/.well-known/openid-configuration/{*rest}",
            get(metadata_doc),
        )
        .route(crate::pages::CSS_PATH, get(crate::pages::stylesheet))
        .route("/jwks", get(jwks))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/authorize", get(authorize_start))
        .route("/authorize/continue", get(authorize_continue))
        .route("/callback/{idp}", get(callback))
        .route("/consent", post(consent))
        .route("/token", post(token_endpoint))
        .route("/register", post(register))
        .route(
            "/register/{client_id}",
            get(register_read)
                .put(register_update)
                .delete(register_delete),
        )
        .route("/revoke", post(revoke))
        .route("/device_authorization", post(device_authorization))
        .route("/device", get(device_page).post(device_submit))
        .route("/introspect", post(introspect))
        .route("/userinfo", get(userinfo).post(userinfo))
        .route("/verify", axum::routing::any(verify))
        .with_state(server)
}

// === rendering ===

/// The HTTP status of an error response: 401 for failed client or bearer authentication
/// (RFC 6749 §5.2, RFC 6750 §3.1), 500/503 for ours, 400 for the rest. No wildcard: a new
/// code has to be placed here.
fn status_of(e: &OAuthError) -> StatusCode {
    match e.code {
        ErrorCode::InvalidClient | ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::InvalidRequest
        | ErrorCode::InvalidGrant
        | ErrorCode::UnauthorizedClient
        | ErrorCode::UnsupportedGrantType
        | ErrorCode::UnsupportedResponseType
        | ErrorCode::InvalidScope
        | ErrorCode::AccessDenied
        | ErrorCode::InvalidTarget
        | ErrorCode::InvalidRedirectUri
        | ErrorCode::InvalidClientMetadata
        | ErrorCode::AuthorizationPending
        | ErrorCode::SlowDown
        | ErrorCode::ExpiredToken => StatusCode::BAD_REQUEST,
    }
}

fn no_store(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// RFC 6749 §5.2 JSON error.
fn json_error(e: &OAuthError) -> Response {
    let body = serde_json::json!({"error": e.code, "error_description": e.description});
    let mut resp = no_store((status_of(e), axum::Json(body)).into_response());
    if e.code == ErrorCode::InvalidToken {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
    } else if e.code == ErrorCode::InvalidClient {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"oauth\""),
        );
    }
    resp
}

fn json_ok<T: serde::Serialize>(status: StatusCode, v: &T) -> Response {
    no_store((status, axum::Json(v)).into_response())
}

use crate::pages::{escape, link_button};

fn html(status: StatusCode, title: &str, body: &str) -> Response {
    crate::pages::page(status, title, body)
}

/// A page for an error that cannot go back to the client: what happened in words, the
/// server's reason (escaped) and the way on.
fn error_page(e: &OAuthError) -> Response {
    // A browser page, not a client API: 401 would invite a Basic-auth prompt.
    let status = match status_of(e) {
        StatusCode::UNAUTHORIZED => StatusCode::BAD_REQUEST,
        s => s,
    };
    let (title, lead) = match e.code {
        ErrorCode::AccessDenied => (
            "Access denied",
            "You were not given access, so nothing was sent to the application.",
        ),
        ErrorCode::ServerError => (
            "Something went wrong",
            "The sign-in service failed while handling this request. Nothing was sent to the application.",
        ),
        ErrorCode::TemporarilyUnavailable => (
            "Sign-in is unavailable",
            "The sign-in service cannot take this request right now. Nothing was sent to the application.",
        ),
        _ => (
            "Sign-in cannot continue",
            "The request could not be completed and was not sent back to the application.",
        ),
    };
    html(
        status,
        title,
        &format!(
            "<p>{lead}</p><p class=\"detail\">Reason: {} (<code>{}</code>)</p>\
             <p>Go back to the application you came from and start the sign-in again.</p>",
            escape(&e.description),
            escape(e.code.as_str())
        ),
    )
}

/// How a resource is named to a user: its host (and path), or "the Portcullis API" for
/// the control plane's own.
fn resource_label(issuer: &str, resource: &str) -> String {
    if resource == issuer {
        return "<strong>the Portcullis API</strong>".into();
    }
    let shown = url::Url::parse(resource)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| format!("{h}{}", u.path().trim_end_matches('/')))
        })
        .unwrap_or_else(|| resource.to_owned());
    format!("<strong>{}</strong>", escape(&shown))
}

fn consent_page(issuer: &str, p: &authorize::ConsentPage) -> Response {
    let scopes: String = if p.scopes.is_empty() {
        "<li>Sign in only<span class=\"desc\">Confirm who you are; nothing else</span></li>".into()
    } else {
        p.scopes
            .iter()
            .map(|(s, d)| match d {
                Some(d) => format!(
                    "<li>{}<span class=\"desc\"><code>{}</code></span></li>",
                    escape(d),
                    escape(s)
                ),
                None => format!(
                    "<li><code>{}</code><span class=\"desc\">No description</span></li>",
                    escape(s)
                ),
            })
            .collect()
    };
    let resources = p
        .resources
        .iter()
        .map(|r| resource_label(issuer, r))
        .collect::<Vec<_>>()
        .join(", ");
    let (badge, warning) = if p.verified {
        (String::new(), String::new())
    } else {
        (
            " <span class=\"badge warn\">unverified</span>".to_owned(),
            format!(
                "<p class=\"alert warn\">This application registered itself; its name has not been \
                 verified. Allow only if you started this sign-in yourself, from \
                 <strong>{}</strong>.</p>",
                escape(&p.redirect_host)
            ),
        )
    };
    html(
        StatusCode::OK,
        "Allow access?",
        &format!(
            "<p class=\"signed-in\">Signed in as <strong>{login}</strong> with {idp}.</p>\
             <p><strong>{name}</strong>{badge} wants to use {resources} on your behalf.</p>{warning}\
             <h2>It will be able to</h2><ul class=\"scopes\">{scopes}</ul>\
             <p class=\"detail\">Access is for {uris}. After you answer you are sent back to \
             <strong>{host}</strong>. Client id: <code>{id}</code>.</p>\
             <form method=\"post\" action=\"/consent\" class=\"actions\">\
             <input type=\"hidden\" name=\"tx\" value=\"{tx}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
             <button type=\"submit\" class=\"secondary\" name=\"decision\" value=\"deny\">Deny</button></form>",
            login = escape(&p.login),
            idp = escape(&p.idp),
            uris = p
                .resources
                .iter()
                .map(|r| format!("<code>{}</code>", escape(r)))
                .collect::<Vec<_>>()
                .join(", "),
            name = escape(&p.client_name),
            id = escape(&p.client_id),
            host = escape(&p.redirect_host),
            tx = escape(&p.tx),
            csrf = escape(&p.csrf),
        ),
    )
}

fn redirect(url: &str, cookie: Option<&str>) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(url) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(c) = cookie {
        let v = format!("{LOGIN_COOKIE}={c}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=600");
        if let Ok(v) = HeaderValue::from_str(&v) {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    no_store(resp)
}

fn render_next(issuer: &str, next: Result<Next, Failure>) -> Response {
    match next {
        Ok(Next::Redirect { url, cookie }) => redirect(&url, cookie.as_deref()),
        Ok(Next::ChooseIdp {
            tx,
            idps,
            resources,
            cookie,
        }) => {
            let links: String = idps
                .iter()
                .map(|i| {
                    let href = format!(
                        "/authorize/continue?{}",
                        url::form_urlencoded::Serializer::new(String::new())
                            .append_pair("tx", &tx)
                            .append_pair("idp", i)
                            .finish()
                    );
                    format!(
                        "<li>{}</li>",
                        link_button(&href, &format!("Continue with {i}"), false)
                    )
                })
                .collect();
            let lead = if resources.is_empty() {
                "<p>Choose the account to sign in with.</p>".to_owned()
            } else {
                let labels: Vec<String> = resources
                    .iter()
                    .map(|r| resource_label(issuer, r))
                    .collect();
                format!(
                    "<p>To continue to {}, choose the account to sign in with.</p>",
                    labels.join(", ")
                )
            };
            let mut resp = html(
                StatusCode::OK,
                "Choose how to sign in",
                &format!("{lead}<ul class=\"choices\">{links}</ul>"),
            );
            let v = format!(
                "{LOGIN_COOKIE}={cookie}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=600"
            );
            if let Ok(v) = HeaderValue::from_str(&v) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Ok(Next::Consent(p)) => consent_page(issuer, &p),
        Ok(Next::Message { title, text }) => {
            html(StatusCode::OK, &title, &format!("<p>{}</p>", escape(&text)))
        }
        Err(Failure::Redirect(url)) => redirect(&url, None),
        Err(Failure::Page(e)) => error_page(&e),
    }
}

fn login_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == LOGIN_COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// Parses `application/x-www-form-urlencoded` pairs, keeping repeats.
fn pairs(raw: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw).into_owned().collect()
}

/// The single value of `key`; a repeated parameter is an error (RFC 6749 §3.1).
fn single(p: &[(String, String)], key: &str) -> Result<Option<String>, OAuthError> {
    let mut it = p.iter().filter(|(k, _)| k == key);
    let first = it.next().map(|(_, v)| v.clone());
    if it.next().is_some() {
        return Err(OAuthError::invalid_request(format!(
            "parameter {key} is repeated"
        )));
    }
    Ok(first)
}

fn many(p: &[(String, String)], key: &str) -> Vec<String> {
    p.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .collect()
}

fn require_form(headers: &HeaderMap) -> Result<(), OAuthError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.split(';').next().map(str::trim) == Some("application/x-www-form-urlencoded") {
        Ok(())
    } else {
        Err(OAuthError::invalid_request(
            "send the parameters as application/x-www-form-urlencoded",
        ))
    }
}

/// Client credentials from HTTP Basic (RFC 6749 §2.3.1: form-urlencoded id and secret) or the
/// form; using both is an error.
fn presented(headers: &HeaderMap, form: &[(String, String)]) -> Result<Presented, OAuthError> {
    let form_id = single(form, "client_id")?;
    let form_secret = single(form, "client_secret")?;
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, b64)| b64.trim().to_owned());
    match basic {
        Some(b64) => {
            if form_secret.is_some() {
                return Err(OAuthError::invalid_request(
                    "use one client authentication method, not two",
                ));
            }
            let bad =
                || OAuthError::new(ErrorCode::InvalidClient, "malformed HTTP Basic credentials");
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| bad())?;
            let text = String::from_utf8(raw).map_err(|_| bad())?;
            let (id, secret) = text.split_once(':').ok_or_else(bad)?;
            let decode = |s: &str| {
                url::form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            let id = decode(id);
            if form_id.as_deref().is_some_and(|f| f != id) {
                return Err(OAuthError::invalid_request(
                    "client_id in the form differs from HTTP Basic",
                ));
            }
            Ok(Presented {
                client_id: Some(id),
                client_secret: Some(decode(secret)),
                via_basic: true,
            })
        }
        None => Ok(Presented {
            client_id: form_id,
            client_secret: form_secret,
            via_basic: false,
        }),
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::bearer)
        .map(str::to_owned)
}

// === protocol handlers ===

async fn metadata_doc(State(s): S, headers: HeaderMap) -> Response {
    // Data planes set X-Forwarded-Host to the proxy the client used; its overrides apply.
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|v| v.to_str().ok());
    match metadata::document(&s, host).await {
        Ok(doc) => {
            let mut resp = axum::Json(doc).into_response();
            resp.headers_mut().insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            resp
        }
        Err(e) => json_error(&e),
    }
}

async fn jwks(State(s): S) -> Response {
    match keys::jwks(&s).await {
        Ok(doc) => {
            let mut resp = axum::Json(doc).into_response();
            resp.headers_mut().insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            );
            resp
        }
        Err(e) => json_error(&e),
    }
}

async fn authorize_start(State(s): S, RawQuery(q): RawQuery) -> Response {
    let p = pairs(q.unwrap_or_default().as_bytes());
    let req = (|| -> Result<AuthorizeRequest, OAuthError> {
        Ok(AuthorizeRequest {
            response_type: single(&p, "response_type")?,
            client_id: single(&p, "client_id")?,
            redirect_uri: single(&p, "redirect_uri")?,
            state: single(&p, "state")?,
            code_challenge: single(&p, "code_challenge")?,
            code_challenge_method: single(&p, "code_challenge_method")?,
            scope: single(&p, "scope")?,
            resources: many(&p, "resource"),
            idp: single(&p, "idp")?,
            prompt: single(&p, "prompt")?,
        })
    })();
    match req {
        Ok(req) => render_next(s.issuer(), authorize::start(&s, req).await),
        Err(e) => error_page(&e),
    }
}

#[derive(serde::Deserialize)]
struct ContinueQuery {
    tx: String,
    idp: String,
}

async fn authorize_continue(
    State(s): S,
    headers: HeaderMap,
    Query(q): Query<ContinueQuery>,
) -> Response {
    render_next(
        s.issuer(),
        authorize::choose(&s, &q.tx, &q.idp, login_cookie(&headers).as_deref()).await,
    )
}

async fn callback(
    State(s): S,
    Path(idp): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let p = pairs(q.unwrap_or_default().as_bytes());
    let first = |k: &str| p.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let cb = Callback {
        code: first("code"),
        state: first("state"),
        error: first("error"),
    };
    let next = authorize::callback(&s, &idp, cb, login_cookie(&headers).as_deref()).await;
    if next.is_err() {
        s.count(&s.counters().login_failures);
    }
    render_next(s.issuer(), next)
}

async fn consent(State(s): S, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = require_form(&headers) {
        return error_page(&e);
    }
    let p = pairs(&body);
    let get = |k: &str| {
        p.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let approve = get("decision") == "allow";
    render_next(
        s.issuer(),
        authorize::consent(
            &s,
            &get("tx"),
            &get("csrf"),
            approve,
            login_cookie(&headers).as_deref(),
        )
        .await,
    )
}

async fn token_endpoint(State(s): S, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        require_form(&headers)?;
        let p = pairs(&body);
        let who = presented(&headers, &p)?;
        let req = TokenRequest {
            grant_type: single(&p, "grant_type")?,
            code: single(&p, "code")?,
            redirect_uri: single(&p, "redirect_uri")?,
            code_verifier: single(&p, "code_verifier")?,
            refresh_token: single(&p, "refresh_token")?,
            device_code: single(&p, "device_code")?,
            scope: single(&p, "scope")?,
            resources: many(&p, "resource"),
        };
        token::token(&s, &who, req).await
    }
    .await;
    match result {
        Ok(t) => json_ok(StatusCode::OK, &t),
        Err(e) => json_error(&e),
    }
}

async fn register(State(s): S, headers: HeaderMap, body: Bytes) -> Response {
    let m: ClientMetadata = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            return json_error(&OAuthError::new(
                ErrorCode::InvalidClientMetadata,
                format!("body is not client metadata JSON: {e}"),
            ));
        }
    };
    match clients::register(&s, bearer(&headers).as_deref(), m).await {
        Ok(r) => json_ok(StatusCode::CREATED, &r),
        Err(e) => json_error(&e),
    }
}

async fn register_read(State(s): S, Path(id): Path<String>, headers: HeaderMap) -> Response {
    match clients::read(&s, &id, bearer(&headers).as_deref()).await {
        Ok(r) => json_ok(StatusCode::OK, &r),
        Err(e) => json_error(&e),
    }
}

async fn register_update(
    State(s): S,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let m: ClientMetadata = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            return json_error(&OAuthError::new(
                ErrorCode::InvalidClientMetadata,
                format!("body is not client metadata JSON: {e}"),
            ));
        }
    };
    match clients::update(&s, &id, bearer(&headers).as_deref(), m).await {
        Ok(r) => json_ok(StatusCode::OK, &r),
        Err(e) => json_error(&e),
    }
}

async fn register_delete(State(s): S, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let Some(token) = bearer(&headers) else {
        return json_error(&OAuthError::new(
            ErrorCode::InvalidToken,
            "send the registration access token",
        ));
    };
    match clients::delete(&s, &id, Some(&token)).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => json_error(&e),
    }
}

async fn revoke(State(s): S, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        require_form(&headers)?;
        let p = pairs(&body);
        let who = presented(&headers, &p)?;
        let t =
            single(&p, "token")?.ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
        token::revoke(&s, &who, &t).await
    }
    .await;
    match result {
        Ok(()) => no_store(StatusCode::OK.into_response()),
        Err(e) => json_error(&e),
    }
}

async fn introspect(State(s): S, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        require_form(&headers)?;
        let p = pairs(&body);
        let who = presented(&headers, &p)?;
        let t =
            single(&p, "token")?.ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
        token::introspect(&s, &who, &t).await
    }
    .await;
    match result {
        Ok(v) => json_ok(StatusCode::OK, &v),
        Err(e) => json_error(&e),
    }
}

async fn userinfo(State(s): S, headers: HeaderMap) -> Response {
    let Some(t) = bearer(&headers) else {
        return json_error(&OAuthError::new(
            ErrorCode::InvalidToken,
            "send Authorization: Bearer <access token>",
        ));
    };
    match token::userinfo(&s, &t).await {
        Ok(v) => json_ok(StatusCode::OK, &v),
        Err(e) => json_error(&e),
    }
}

async fn device_authorization(State(s): S, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        require_form(&headers)?;
        let p = pairs(&body);
        let who = presented(&headers, &p)?;
        let scope = single(&p, "scope")?;
        super::device::authorize_device(&s, &who, scope.as_deref(), &many(&p, "resource")).await
    }
    .await;
    match result {
        Ok(d) => json_ok(StatusCode::OK, &d),
        Err(e) => json_error(&e),
    }
}

#[derive(serde::Deserialize)]
struct DeviceQuery {
    user_code: Option<String>,
}

/// The page where a user types (or confirms) the code shown by their device.
async fn device_page(Query(q): Query<DeviceQuery>) -> Response {
    let code = q.user_code.unwrap_or_default();
    html(
        StatusCode::OK,
        "Connect a device",
        &format!(
            "<p>Enter the code your device shows. Only continue if you started this yourself.</p>\
             <form method=\"post\" action=\"/device\">\
             <label for=\"user_code\">Code</label><input type=\"text\" id=\"user_code\" name=\"user_code\" value=\"{}\" \
             autocomplete=\"off\" autofocus><div class=\"actions\"><button type=\"submit\">Continue</button></div></form>",
            escape(&code)
        ),
    )
}

async fn device_submit(State(s): S, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = require_form(&headers) {
        return error_page(&e);
    }
    let p = pairs(&body);
    let get = |k: &str| p.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let code = get("user_code").unwrap_or_default();
    render_next(
        s.issuer(),
        super::device::start_login(&s, &code, get("idp").as_deref()).await,
    )
}

#[derive(serde::Deserialize)]
struct VerifyQuery {
    /// Space-separated scopes the site requires.
    scope: Option<String>,
}

/// ForwardAuth: 200 with identity headers, 401 with a `WWW-Authenticate` challenge naming
/// the site's protected resource metadata, or 403 for missing scopes.
async fn verify(State(s): S, headers: HeaderMap, Query(q): Query<VerifyQuery>) -> Response {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let site = match super::forward_auth::forwarded(
        h("x-forwarded-proto"),
        h("x-forwarded-host"),
        h("x-forwarded-uri"),
        h("x-original-url"),
    ) {
        Ok(site) => site,
        Err(e) => return json_error(&e),
    };
    let required: Vec<String> = q
        .scope
        .as_deref()
        .unwrap_or("")
        .split(' ')
        // Scope tokens are NQCHAR (RFC 6749 §3.3); anything else cannot be quoted safely.
        .filter(|x| {
            !x.is_empty()
                && x.bytes()
                    .all(|b| (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\')
        })
        .map(str::to_owned)
        .collect();
    let challenge = |extra: &str| {
        let v = format!(
            "Bearer resource_metadata=\"{}\"{extra}",
            site.resource_metadata_url()
        );
        HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("Bearer"))
    };
    use super::forward_auth::Refusal;
    match super::forward_auth::verify(&s, bearer(&headers).as_deref(), &site, &required).await {
        Ok(c) => {
            let mut resp = no_store(StatusCode::OK.into_response());
            let out = resp.headers_mut();
            let mut set = |name: &'static str, value: &str| {
                if let Ok(v) = HeaderValue::from_str(value) {
                    out.insert(name, v);
                }
            };
            set("x-auth-request-user", &c.login);
            set("x-auth-request-sub", &c.sub);
            set("x-auth-request-email", c.email.as_deref().unwrap_or(""));
            set("x-auth-request-groups", &c.groups.join(","));
            set("x-auth-request-scope", &c.scope);
            set("x-forwarded-user", &c.login);
            set("x-forwarded-email", c.email.as_deref().unwrap_or(""));
            resp
        }
        Err(Refusal::Unauthorized(e)) => {
            let extra = e
                .map(|e| {
                    format!(
                        ", error=\"invalid_token\", error_description=\"{}\"",
                        e.description.replace(['"', '\\'], "'")
                    )
                })
                .unwrap_or_default();
            let mut resp = no_store(StatusCode::UNAUTHORIZED.into_response());
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge(&extra));
            resp
        }
        Err(Refusal::InsufficientScope(scope)) => {
            let mut resp = no_store(StatusCode::FORBIDDEN.into_response());
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                challenge(&format!(
                    ", error=\"insufficient_scope\", scope=\"{scope}\""
                )),
            );
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code, its wire name and its status: the JSON error contract (RFC 6749 §5.2,
    /// RFC 6750 §3.1, RFC 7591 §3.2.2, RFC 8628 §3.5).
    const CODES: &[(ErrorCode, &str, u16)] = &[
        (ErrorCode::InvalidRequest, "invalid_request", 400),
        (ErrorCode::InvalidClient, "invalid_client", 401),
        (ErrorCode::InvalidGrant, "invalid_grant", 400),
        (ErrorCode::UnauthorizedClient, "unauthorized_client", 400),
        (
            ErrorCode::UnsupportedGrantType,
            "unsupported_grant_type",
            400,
        ),
        (
            ErrorCode::UnsupportedResponseType,
            "unsupported_response_type",
            400,
        ),
        (ErrorCode::InvalidScope, "invalid_scope", 400),
        (ErrorCode::AccessDenied, "access_denied", 400),
        (ErrorCode::ServerError, "server_error", 500),
        (
            ErrorCode::TemporarilyUnavailable,
            "temporarily_unavailable",
            503,
        ),
        (ErrorCode::InvalidTarget, "invalid_target", 400),
        (ErrorCode::InvalidRedirectUri, "invalid_redirect_uri", 400),
        (
            ErrorCode::InvalidClientMetadata,
            "invalid_client_metadata",
            400,
        ),
        (
            ErrorCode::AuthorizationPending,
            "authorization_pending",
            400,
        ),
        (ErrorCode::SlowDown, "slow_down", 400),
        (ErrorCode::ExpiredToken, "expired_token", 400),
        (ErrorCode::InvalidToken, "invalid_token", 401),
    ];

    #[tokio::test]
    async fn json_errors_keep_their_status_body_and_challenge() {
        for &(code, name, status) in CODES {
            let resp = json_error(&OAuthError::new(code, "why"));
            assert_eq!(resp.status().as_u16(), status, "{name}");
            let h = resp.headers();
            assert_eq!(h[header::CACHE_CONTROL], "no-store", "{name}");
            let challenge = h.get(header::WWW_AUTHENTICATE).map(|v| v.to_str().unwrap());
            let want = match name {
                "invalid_token" => Some("Bearer error=\"invalid_token\""),
                "invalid_client" => Some("Basic realm=\"oauth\""),
                _ => None,
            };
            assert_eq!(challenge, want, "{name}");
            let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
                .await
                .unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                body,
                serde_json::json!({"error": name, "error_description": "why"})
            );
        }
    }

    #[test]
    fn error_pages_never_answer_401() {
        for &(code, name, status) in CODES {
            let page = error_page(&OAuthError::new(code, "why"));
            let want = if status == 401 { 400 } else { status };
            assert_eq!(page.status().as_u16(), want, "{name}");
        }
    }

    #[test]
    fn repeated_single_parameters_are_refused() {
        let p = pairs(b"a=1&a=2&resource=x&resource=y");
        assert!(single(&p, "a").is_err());
        assert_eq!(many(&p, "resource"), vec!["x", "y"]);
    }
}
