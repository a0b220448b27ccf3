//! A GitHub-compatible OAuth server and REST API, for testing login via GitHub.
//!
//! github.com cannot be reached from the test machines, and a mock inside our own code would
//! only prove that our code agrees with itself. This server instead speaks GitHub's documented
//! wire protocol (OAuth web application flow and the REST endpoints a login needs), with
//! GitHub's error shapes, so a client that works against it works against GitHub.
//!
//! It runs in one of two layouts, chosen in [`GithubConfig::layout`]:
//! - [`Layout::Enterprise`] (default): like GitHub Enterprise Server, the web UI and OAuth
//!   endpoints are at `http://127.0.0.1:P` and the REST API at `http://127.0.0.1:P/api/v3`;
//! - [`Layout::DotCom`]: like github.com, the REST API is on its own origin (another port) at
//!   its root, as `api.github.com` is.
//!
//! Both prove that a client keeps the web base URL and the API base URL apart.
//!
//! What is modelled, from GitHub's documentation:
//! - `GET /login/oauth/authorize`: `client_id`, `redirect_uri` (GitHub's matching rules: same
//!   scheme, host or a subdomain of it, same port except for loopback callbacks, path within
//!   the callback's path), `scope` (space- or comma-separated), `state`, PKCE with `S256` only.
//!   Unknown `client_id` is a 404 page; a bad `redirect_uri` redirects to the registered
//!   callback with `error=redirect_uri_mismatch`; no signed-in user shows the sign-in page;
//!   a denial redirects with `error=access_denied`.
//! - `POST /login/oauth/access_token`: parameters from the query string or the body
//!   (form-encoded or JSON), client credentials in the body or HTTP Basic. Answers are
//!   form-encoded unless `Accept` asks for JSON or XML; errors are HTTP 200 with `error`,
//!   `error_description` and `error_uri`, as GitHub sends them. Codes are single-use, bound to
//!   their client and expire after ten minutes.
//! - API: `GET /user`, `/user/emails`, `/user/orgs`, `/user/teams`, `/users/{login}` with
//!   `Authorization: Bearer T` or `token T`, OAuth scope checks (`user:email` for emails,
//!   `read:org`/`user` for orgs, `read:org`/`repo`/`user` for teams), page-based pagination
//!   with `Link` headers, `X-OAuth-Scopes`, a mandatory `User-Agent` (403 without) and the
//!   `Accept` / `X-GitHub-Api-Version` checks.
//!
//! Where GitHub documents no exact wording (e.g. the PKCE verifier mismatch), the error code is
//! GitHub's and the description is ours; those places are marked in the code.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest as _;
use tokio::net::TcpListener;

/// How long an authorization code stays valid, as on GitHub.
pub const CODE_LIFETIME: Duration = Duration::from_secs(600);

/// The only API version GitHub's REST API has published; others get 400, as on GitHub.
pub const API_VERSIONS: &[&str] = &["2022-11-28"];

const DOCS: &str = "https://docs.github.com";

/// Where the REST API lives relative to the web UI.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// GitHub Enterprise Server: API under `/api/v3` of the web origin.
    #[default]
    Enterprise,
    /// github.com: API at the root of a separate origin (like `api.github.com`).
    DotCom,
}

/// What the signed-in user answers on the authorization page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consent {
    /// Authorizes the app: redirect with `code` and `state`.
    #[default]
    Approve,
    /// Cancels: redirect with `error=access_denied`, as GitHub does.
    Deny,
}

/// One of a user's email addresses, as `GET /user/emails` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GithubEmail {
    /// The address.
    pub email: String,
    /// The primary address (exactly one should be).
    pub primary: bool,
    /// Whether the user proved they own it; a login must not trust unverified ones.
    pub verified: bool,
    /// `"public"`, `"private"`, or absent (GitHub sends `null` for non-primary addresses).
    #[serde(default)]
    pub visibility: Option<String>,
}

/// An organization the user belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GithubOrg {
    /// Organization login, e.g. `acme`.
    pub login: String,
    /// Numeric id.
    pub id: u64,
}

/// A team the user belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GithubTeam {
    /// Login of the owning organization; must be one of the user's `orgs`.
    pub org: String,
    /// Team slug, e.g. `platform-eng`.
    pub slug: String,
    /// Display name, e.g. `Platform Eng`.
    pub name: String,
    /// Numeric id.
    pub id: u64,
}

/// A GitHub account the server knows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GithubUser {
    /// Login, e.g. `octocat`. GitHub logins are case-insensitive; so is the lookup here.
    pub login: String,
    /// Numeric id: the stable identifier a login should key on (logins can be renamed).
    pub id: u64,
    /// Display name; GitHub sends `null` when unset.
    #[serde(default)]
    pub name: Option<String>,
    /// Email addresses; the primary one with `visibility: "public"` is `/user`'s `email`.
    #[serde(default)]
    pub emails: Vec<GithubEmail>,
    /// Organization memberships.
    #[serde(default)]
    pub orgs: Vec<GithubOrg>,
    /// Team memberships.
    #[serde(default)]
    pub teams: Vec<GithubTeam>,
}

impl GithubUser {
    /// A user with no name, emails, orgs or teams.
    pub fn new(login: &str, id: u64) -> Self {
        Self {
            login: login.to_owned(),
            id,
            name: None,
            emails: vec![],
            orgs: vec![],
            teams: vec![],
        }
    }

    /// Sets the display name.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// Adds a verified, public, primary address (the usual case).
    pub fn primary_email(self, email: &str) -> Self {
        self.email(GithubEmail {
            email: email.to_owned(),
            primary: true,
            verified: true,
            visibility: Some("public".to_owned()),
        })
    }

    /// Adds any address (e.g. an unverified one).
    pub fn email(mut self, email: GithubEmail) -> Self {
        self.emails.push(email);
        self
    }

    /// Adds an organization membership.
    pub fn org(mut self, login: &str, id: u64) -> Self {
        self.orgs.push(GithubOrg {
            login: login.to_owned(),
            id,
        });
        self
    }

    /// Adds a team membership in organization `org` (add the org too).
    pub fn team(mut self, org: &str, slug: &str, name: &str, id: u64) -> Self {
        self.teams.push(GithubTeam {
            org: org.to_owned(),
            slug: slug.to_owned(),
            name: name.to_owned(),
            id,
        });
        self
    }
}

/// A registered OAuth app (GitHub: Settings → Developer settings → OAuth Apps).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthApp {
    /// Client ID.
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
    /// "Authorization callback URL": `redirect_uri` must match it by GitHub's rules.
    pub callback_url: String,
}

impl OAuthApp {
    /// An app with these credentials and callback URL.
    pub fn new(client_id: &str, client_secret: &str, callback_url: &str) -> Self {
        Self {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            callback_url: callback_url.to_owned(),
        }
    }
}

/// Everything the server starts with; also the JSON config of `github-compatible-server`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    /// Web (and, for [`Layout::Enterprise`], API) listen address; default `127.0.0.1:0`.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// API listen address for [`Layout::DotCom`]; default `127.0.0.1:0`.
    #[serde(default)]
    pub api_listen: Option<SocketAddr>,
    /// Where the API lives.
    #[serde(default)]
    pub layout: Layout,
    /// Known accounts.
    #[serde(default)]
    pub users: Vec<GithubUser>,
    /// Registered OAuth apps.
    #[serde(default)]
    pub apps: Vec<OAuthApp>,
    /// The user signed in to the web UI; `None` shows GitHub's sign-in page on authorize.
    #[serde(default)]
    pub current_user: Option<String>,
    /// What the signed-in user answers on the authorize page.
    #[serde(default)]
    pub consent: Consent,
}

impl GithubConfig {
    /// Rejects configs GitHub could not have: duplicate ids, logins or client ids, teams of
    /// organizations the user is not in, unparsable callback URLs, an unknown current user.
    pub fn validate(&self) -> Result<(), String> {
        let mut logins = std::collections::HashSet::new();
        let mut ids = std::collections::HashSet::new();
        for u in &self.users {
            if u.login.is_empty() || u.login.contains(['/', ' ', '?', '#']) {
                return Err(format!("user login {:?} is not a valid login", u.login));
            }
            if !logins.insert(u.login.to_ascii_lowercase()) {
                return Err(format!("duplicate user login {:?}", u.login));
            }
            if !ids.insert(u.id) {
                return Err(format!("duplicate user id {}", u.id));
            }
            if u.emails.iter().filter(|e| e.primary).count() > 1 {
                return Err(format!(
                    "user {:?} has more than one primary email",
                    u.login
                ));
            }
            for t in &u.teams {
                if !u.orgs.iter().any(|o| o.login.eq_ignore_ascii_case(&t.org)) {
                    return Err(format!(
                        "user {:?}: team {:?} belongs to org {:?}, which is not among the user's orgs",
                        u.login, t.slug, t.org
                    ));
                }
            }
        }
        let mut clients = std::collections::HashSet::new();
        for a in &self.apps {
            if a.client_id.is_empty() || a.client_secret.is_empty() {
                return Err("an OAuth app has an empty client_id or client_secret".to_owned());
            }
            if !clients.insert(a.client_id.clone()) {
                return Err(format!("duplicate OAuth app client_id {:?}", a.client_id));
            }
            let url = url::Url::parse(&a.callback_url).map_err(|e| {
                format!(
                    "OAuth app {:?}: callback_url {:?}: {e}",
                    a.client_id, a.callback_url
                )
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(format!(
                    "OAuth app {:?}: callback_url {:?} must be an http(s) URL with a host",
                    a.client_id, a.callback_url
                ));
            }
        }
        if let Some(login) = &self.current_user
            && !logins.contains(&login.to_ascii_lowercase())
        {
            return Err(format!("current_user {login:?} is not among the users"));
        }
        Ok(())
    }
}

/// One request the server received, for asserting what a client sent.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path as received, e.g. `/api/v3/user` (Enterprise) or `/user` (DotCom API origin).
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// Headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// Body as text (lossy UTF-8).
    pub body: String,
}

impl RecordedRequest {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Parameter `name` from the query string or a form-encoded / JSON body (body wins).
    pub fn param(&self, name: &str) -> Option<String> {
        let ct = self.header("content-type");
        params_of(self.query.as_deref(), ct, self.body.as_bytes())
            .ok()?
            .remove(name)
    }
}

/// Mutable server state behind one lock: the test changes it while requests run.
struct Shared {
    web_url: String,
    api_url: String,
    users: Vec<GithubUser>,
    apps: Vec<OAuthApp>,
    current_user: Option<String>,
    consent: Consent,
    code_lifetime: Duration,
    codes: HashMap<String, Grant>,
    tokens: HashMap<String, TokenGrant>,
    requests: Vec<RecordedRequest>,
}

/// What an authorization code stands for.
struct Grant {
    client_id: String,
    user_id: u64,
    scopes: Vec<String>,
    /// The `redirect_uri` sent to authorize, which the token request must repeat if it sends one.
    redirect_uri: Option<String>,
    code_challenge: Option<String>,
    issued: Instant,
}

/// What an access token stands for.
#[derive(Clone)]
struct TokenGrant {
    user_id: u64,
    scopes: Vec<String>,
}

type AppState = Arc<Mutex<Shared>>;

fn lock(state: &AppState) -> MutexGuard<'_, Shared> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running GitHub-compatible server; stops when dropped.
pub struct GithubServer {
    /// Web base URL, e.g. `http://127.0.0.1:P` (what GHES calls the hostname).
    pub web_url: String,
    /// REST API base URL without trailing slash: `http://127.0.0.1:P/api/v3` (Enterprise)
    /// or `http://127.0.0.1:Q` (DotCom).
    pub api_url: String,
    /// `{web_url}/login/oauth/authorize`.
    pub authorize_url: String,
    /// `{web_url}/login/oauth/access_token`.
    pub token_url: String,
    state: AppState,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for GithubServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl GithubServer {
    /// Starts a server for tests; panics with the reason if `config` is invalid.
    pub async fn start(config: GithubConfig) -> Self {
        match Self::try_start(config).await {
            Ok(s) => s,
            Err(e) => panic!("GitHub-compatible server: {e}"),
        }
    }

    /// Validates `config`, binds its listeners and starts serving.
    pub async fn try_start(config: GithubConfig) -> anyhow::Result<Self> {
        config.validate().map_err(anyhow::Error::msg)?;
        let listen = config
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let web = TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("bind {listen}: {e}"))?;
        let web_url = format!("http://{}", web.local_addr()?);
        let (api, api_url) = match config.layout {
            Layout::Enterprise => (None, format!("{web_url}/api/v3")),
            Layout::DotCom => {
                let addr = config
                    .api_listen
                    .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
                let l = TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("bind {addr}: {e}"))?;
                let url = format!("http://{}", l.local_addr()?);
                (Some(l), url)
            }
        };
        let state: AppState = Arc::new(Mutex::new(Shared {
            web_url: web_url.clone(),
            api_url: api_url.clone(),
            users: config.users,
            apps: config.apps,
            current_user: config.current_user,
            consent: config.consent,
            code_lifetime: CODE_LIFETIME,
            codes: HashMap::new(),
            tokens: HashMap::new(),
            requests: vec![],
        }));
        let oauth = Router::new()
            .route("/login/oauth/authorize", get(authorize))
            .route("/login/oauth/access_token", post(access_token))
            .fallback(web_not_found);
        let mut tasks = vec![];
        match api {
            None => {
                let app = oauth
                    .nest("/api/v3", api_router())
                    .layer(middleware::from_fn_with_state(state.clone(), record))
                    .with_state(state.clone());
                tasks.push(tokio::spawn(async move {
                    let _ = axum::serve(web, app).await;
                }));
            }
            Some(api) => {
                let web_app = oauth
                    .layer(middleware::from_fn_with_state(state.clone(), record))
                    .with_state(state.clone());
                let api_app = api_router()
                    .layer(middleware::from_fn_with_state(state.clone(), record))
                    .with_state(state.clone());
                tasks.push(tokio::spawn(async move {
                    let _ = axum::serve(web, web_app).await;
                }));
                tasks.push(tokio::spawn(async move {
                    let _ = axum::serve(api, api_app).await;
                }));
            }
        }
        Ok(Self {
            authorize_url: format!("{web_url}/login/oauth/authorize"),
            token_url: format!("{web_url}/login/oauth/access_token"),
            web_url,
            api_url,
            state,
            tasks,
        })
    }

    /// Signs `login` in to the web UI, so the next authorize request acts as them.
    pub fn set_user(&self, login: &str) {
        let mut s = lock(&self.state);
        let user = s
            .users
            .iter()
            .find(|u| u.login.eq_ignore_ascii_case(login))
            .unwrap_or_else(|| panic!("set_user: no GitHub user {login:?} configured"))
            .login
            .clone();
        s.current_user = Some(user);
    }

    /// Signs out: authorize then shows the sign-in page instead of redirecting.
    pub fn sign_out(&self) {
        lock(&self.state).current_user = None;
    }

    /// Sets what the signed-in user answers on the authorize page.
    pub fn set_consent(&self, consent: Consent) {
        lock(&self.state).consent = consent;
    }

    /// Shortens (or lengthens) how long new authorization codes stay valid, to test expiry.
    pub fn set_code_lifetime(&self, lifetime: Duration) {
        lock(&self.state).code_lifetime = lifetime;
    }

    /// Adds or replaces (by login) a user while running, e.g. to change their teams.
    pub fn upsert_user(&self, user: GithubUser) {
        let mut s = lock(&self.state);
        s.users
            .retain(|u| !u.login.eq_ignore_ascii_case(&user.login));
        s.users.push(user);
    }

    /// Issues an access token directly, as a personal access token (classic) would be.
    pub fn issue_token(&self, login: &str, scopes: &[&str]) -> String {
        let mut s = lock(&self.state);
        let user_id = s
            .users
            .iter()
            .find(|u| u.login.eq_ignore_ascii_case(login))
            .unwrap_or_else(|| panic!("issue_token: no GitHub user {login:?} configured"))
            .id;
        let token = new_token();
        s.tokens.insert(
            token.clone(),
            TokenGrant {
                user_id,
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            },
        );
        token
    }

    /// Revokes every access token, as when a user revokes the app's authorization.
    pub fn revoke_all_tokens(&self) {
        lock(&self.state).tokens.clear();
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state).requests.clone()
    }

    /// Requests to `POST /login/oauth/access_token`, oldest first.
    pub fn token_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == "/login/oauth/access_token")
            .collect()
    }

    /// Requests to the REST API (any path under the API base), oldest first.
    pub fn api_requests(&self) -> Vec<RecordedRequest> {
        let prefix = match url::Url::parse(&self.api_url) {
            Ok(u) if u.path() != "/" => u.path().to_owned(),
            _ => String::new(),
        };
        let separate_origin = !self.api_url.starts_with(&format!("{}/", self.web_url));
        self.requests()
            .into_iter()
            .filter(|r| {
                if separate_origin {
                    !r.path.starts_with("/login/")
                } else {
                    r.path.starts_with(&format!("{prefix}/"))
                }
            })
            .collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.state).requests.clear();
    }
}

fn api_router() -> Router<AppState> {
    Router::new()
        .route("/user", get(api_user))
        .route("/user/emails", get(api_emails))
        .route("/user/orgs", get(api_orgs))
        .route("/user/teams", get(api_teams))
        .route("/users/{login}", get(api_user_by_login))
        .fallback(api_not_found)
        .layer(middleware::from_fn(api_checks))
}

/// Records every request (buffering its body) before handling it.
async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, 1 << 20).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
    };
    let rec = RecordedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    };
    lock(&state).requests.push(rec);
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

// ---------------------------------------------------------------------------------------------
// OAuth web flow

/// Scopes GitHub's OAuth apps can request; others are dropped from the grant, as GitHub does.
const KNOWN_SCOPES: &[&str] = &[
    "repo",
    "repo:status",
    "repo_deployment",
    "public_repo",
    "repo:invite",
    "security_events",
    "admin:repo_hook",
    "write:repo_hook",
    "read:repo_hook",
    "admin:org",
    "write:org",
    "read:org",
    "admin:public_key",
    "write:public_key",
    "read:public_key",
    "admin:org_hook",
    "gist",
    "notifications",
    "user",
    "read:user",
    "user:email",
    "user:follow",
    "project",
    "read:project",
    "delete_repo",
    "write:packages",
    "read:packages",
    "delete:packages",
    "admin:gpg_key",
    "write:gpg_key",
    "read:gpg_key",
    "codespace",
    "workflow",
];

/// Whether `granted` covers `needed`, with GitHub's scope hierarchy (`user` ⊃ `user:email`…).
fn has_scope(granted: &[String], needed: &str) -> bool {
    let parents: &[&str] = match needed {
        "read:user" | "user:email" | "user:follow" => &["user"],
        "read:org" => &["write:org", "admin:org"],
        "write:org" => &["admin:org"],
        "repo:status" | "repo_deployment" | "public_repo" | "repo:invite" | "security_events" => {
            &["repo"]
        }
        _ => &[],
    };
    granted
        .iter()
        .any(|g| g == needed || parents.contains(&g.as_str()))
}

fn parse_scopes(raw: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for s in raw
        .unwrap_or("")
        .split([' ', ','])
        .filter(|s| !s.is_empty())
    {
        if KNOWN_SCOPES.contains(&s) && !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    }
    out
}

/// GitHub's rule: same scheme, the callback's host or a subdomain of it, the same port unless
/// the callback is a loopback URL, and a path equal to or below the callback's path.
fn redirect_allowed(callback: &str, redirect: &str) -> bool {
    let (Ok(cb), Ok(r)) = (url::Url::parse(callback), url::Url::parse(redirect)) else {
        return false;
    };
    let (Some(cb_host), Some(r_host)) = (cb.host_str(), r.host_str()) else {
        return false;
    };
    if cb.scheme() != r.scheme() || r.fragment().is_some() {
        return false;
    }
    let host_ok = r_host.eq_ignore_ascii_case(cb_host)
        || r_host
            .to_ascii_lowercase()
            .ends_with(&format!(".{}", cb_host.to_ascii_lowercase()));
    let loopback = matches!(cb_host, "127.0.0.1" | "localhost" | "[::1]");
    let port_ok = loopback && r_host.eq_ignore_ascii_case(cb_host)
        || r.port_or_known_default() == cb.port_or_known_default();
    let (cp, rp) = (cb.path(), r.path());
    let path_ok = rp == cp
        || rp.starts_with(cp) && (cp.ends_with('/') || rp.as_bytes().get(cp.len()) == Some(&b'/'));
    host_ok && port_ok && path_ok
}

fn redirect_with(base: &str, params: &[(&str, &str)]) -> Response {
    let mut url = match url::Url::parse(base) {
        Ok(u) => u,
        Err(_) => return (StatusCode::BAD_REQUEST, "invalid redirect URL").into_response(),
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, url.as_str())
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .body(Body::from(format!(
            "<html><body>You are being <a href=\"{}\">redirected</a>.</body></html>",
            html_escape(url.as_str())
        )))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html_page(status: StatusCode, title: &str, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!(
            "<!DOCTYPE html><html><head><title>{}</title></head><body>{}</body></html>",
            html_escape(title),
            body
        ),
    )
        .into_response()
}

async fn web_not_found() -> Response {
    not_found_page()
}

fn not_found_page() -> Response {
    html_page(
        StatusCode::NOT_FOUND,
        "Page not found · GitHub",
        "<h1>404</h1><p>This is not the web page you are looking for.</p>",
    )
}

/// `GET /login/oauth/authorize`: the user-facing authorization step.
async fn authorize(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let q: HashMap<String, String> =
        url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let mut s = lock(&state);
    // GitHub answers an unknown or missing client_id with its 404 page.
    let Some(app) = q
        .get("client_id")
        .and_then(|id| s.apps.iter().find(|a| &a.client_id == id))
        .cloned()
    else {
        return not_found_page();
    };
    let state_param = q.get("state").map(String::as_str);
    let with_state = |mut params: Vec<(&'static str, String)>| {
        if let Some(st) = state_param {
            params.push(("state", st.to_owned()));
        }
        params
    };
    let redirect_uri = q.get("redirect_uri").filter(|r| !r.is_empty()).cloned();
    if let Some(r) = &redirect_uri
        && !redirect_allowed(&app.callback_url, r)
    {
        let params = with_state(vec![
            ("error", "redirect_uri_mismatch".to_owned()),
            (
                "error_description",
                "The redirect_uri MUST match the registered callback URL for this application."
                    .to_owned(),
            ),
            (
                "error_uri",
                format!(
                    "{DOCS}/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/#redirect-uri-mismatch"
                ),
            ),
        ]);
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        return redirect_with(&app.callback_url, &pairs);
    }
    let target = redirect_uri.clone().unwrap_or(app.callback_url.clone());
    let target_redirect = |params: Vec<(&'static str, String)>| {
        let params = with_state(params);
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        redirect_with(&target, &pairs)
    };

    // PKCE: GitHub accepts only S256 with a 43-character challenge. (Wording is ours.)
    let challenge = q.get("code_challenge").filter(|c| !c.is_empty()).cloned();
    let method = q.get("code_challenge_method").map(String::as_str);
    if let Some(c) = &challenge {
        if method != Some("S256") {
            return target_redirect(vec![
                ("error", "invalid_request".to_owned()),
                (
                    "error_description",
                    "code_challenge_method must be S256; the plain method is not supported."
                        .to_owned(),
                ),
            ]);
        }
        if c.len() != 43
            || !c
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return target_redirect(vec![
                ("error", "invalid_request".to_owned()),
                (
                    "error_description",
                    "code_challenge must be 43 characters of base64url (a SHA-256 hash)."
                        .to_owned(),
                ),
            ]);
        }
    } else if method.is_some() {
        return target_redirect(vec![
            ("error", "invalid_request".to_owned()),
            (
                "error_description",
                "code_challenge_method was sent without code_challenge.".to_owned(),
            ),
        ]);
    }

    let Some(login) = s.current_user.clone() else {
        drop(s);
        return html_page(
            StatusCode::OK,
            "Sign in to GitHub · GitHub",
            "<form action=\"/session\" method=\"post\"><label>Username or email address \
             <input name=\"login\"></label><label>Password <input type=\"password\" \
             name=\"password\"></label><input type=\"submit\" value=\"Sign in\"></form>",
        );
    };
    if s.consent == Consent::Deny {
        return target_redirect(vec![
            ("error", "access_denied".to_owned()),
            (
                "error_description",
                "The user has denied your application access.".to_owned(),
            ),
            (
                "error_uri",
                format!(
                    "{DOCS}/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/#access-denied"
                ),
            ),
        ]);
    }
    let Some(user_id) = s
        .users
        .iter()
        .find(|u| u.login.eq_ignore_ascii_case(&login))
        .map(|u| u.id)
    else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "signed-in user vanished").into_response();
    };
    let code = hex(&rand::rng().random::<[u8; 10]>());
    s.codes.insert(
        code.clone(),
        Grant {
            client_id: app.client_id.clone(),
            user_id,
            scopes: parse_scopes(q.get("scope").map(String::as_str)),
            redirect_uri,
            code_challenge: challenge,
            issued: Instant::now(),
        },
    );
    target_redirect(vec![("code", code)])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A token in GitHub's OAuth-app format: `gho_` and 36 base62 characters.
fn new_token() -> String {
    let tail: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(36)
        .map(char::from)
        .collect();
    format!("gho_{tail}")
}

/// Parameters from the query and a form-encoded or JSON body (body values win).
fn params_of(
    query: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<HashMap<String, String>, String> {
    let mut out: HashMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    if ct.starts_with("application/json") {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| format!("Problems parsing JSON: {e}"))?;
        let Value::Object(map) = v else {
            return Err("Problems parsing JSON: expected an object".to_owned());
        };
        for (k, v) in map {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            out.insert(k, v);
        }
    } else if !body.is_empty() {
        out.extend(url::form_urlencoded::parse(body).into_owned());
    }
    Ok(out)
}

#[derive(Clone, Copy)]
enum Format {
    Form,
    Json,
    Xml,
}

fn token_format(headers: &HeaderMap) -> Format {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if accept.contains("application/json") || accept.contains("+json") {
        Format::Json
    } else if accept.contains("application/xml") {
        Format::Xml
    } else {
        Format::Form
    }
}

/// Encodes a flat map as GitHub's token endpoint does for the asked format.
fn token_reply(format: Format, fields: &[(&str, String)]) -> Response {
    let (ct, body) = match format {
        Format::Json => {
            let map: serde_json::Map<String, Value> = fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
                .collect();
            (
                "application/json; charset=utf-8",
                Value::Object(map).to_string(),
            )
        }
        Format::Xml => {
            let inner: String = fields
                .iter()
                .map(|(k, v)| format!("<{k}>{}</{k}>", html_escape(v)))
                .collect();
            (
                "application/xml; charset=utf-8",
                format!("<OAuth>{inner}</OAuth>"),
            )
        }
        Format::Form => {
            let mut ser = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in fields {
                ser.append_pair(k, v);
            }
            (
                "application/x-www-form-urlencoded; charset=utf-8",
                ser.finish(),
            )
        }
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, ct)], body).into_response()
}

/// GitHub's token errors: HTTP 200 with `error`, `error_description`, `error_uri`.
fn token_error(format: Format, error: &str, description: &str, anchor: &str) -> Response {
    token_reply(
        format,
        &[
            ("error", error.to_owned()),
            ("error_description", description.to_owned()),
            (
                "error_uri",
                format!(
                    "{DOCS}/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#{anchor}"
                ),
            ),
        ],
    )
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    let dec = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((dec(id), dec(secret)))
}

/// `POST /login/oauth/access_token`: exchanges a code for a token.
async fn access_token(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let format = token_format(&headers);
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let params = match params_of(query.as_deref(), ct, &body) {
        Ok(p) => p,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
                json!({"message": e, "documentation_url": format!("{DOCS}/rest")}).to_string(),
            )
                .into_response();
        }
    };
    let (client_id, client_secret) = match basic_credentials(&headers) {
        Some(c) => c,
        None => (
            params.get("client_id").cloned().unwrap_or_default(),
            params.get("client_secret").cloned().unwrap_or_default(),
        ),
    };
    let mut s = lock(&state);
    let app_ok = s
        .apps
        .iter()
        .find(|a| a.client_id == client_id)
        .is_some_and(|a| {
            !client_secret.is_empty()
                && constant_time_eq(a.client_secret.as_bytes(), client_secret.as_bytes())
        });
    if !app_ok {
        return token_error(
            format,
            "incorrect_client_credentials",
            "The client_id and/or client_secret passed are incorrect.",
            "incorrect-client-credentials",
        );
    }
    if let Some(gt) = params.get("grant_type")
        && gt != "authorization_code"
    {
        // GitHub only refreshes tokens of GitHub Apps with expiring tokens, not OAuth apps.
        return token_error(
            format,
            "unsupported_grant_type",
            &format!("The grant type {gt:?} is not supported for this application."),
            "unsupported-grant-type",
        );
    }
    let bad_code = |format| {
        token_error(
            format,
            "bad_verification_code",
            "The code passed is incorrect or expired.",
            "bad-verification-code",
        )
    };
    let code = params.get("code").cloned().unwrap_or_default();
    let lifetime = s.code_lifetime;
    // A code is spent by any exchange attempt by its own client; others' codes stay intact.
    let grant = match s.codes.get(&code) {
        Some(g) if g.client_id == client_id => s.codes.remove(&code),
        _ => None,
    };
    let Some(grant) = grant else {
        return bad_code(format);
    };
    if grant.issued.elapsed() > lifetime {
        return bad_code(format);
    }
    if let Some(r) = params.get("redirect_uri").filter(|r| !r.is_empty()) {
        let callback = s
            .apps
            .iter()
            .find(|a| a.client_id == client_id)
            .map(|a| a.callback_url.clone())
            .unwrap_or_default();
        let ok = match &grant.redirect_uri {
            Some(sent) => sent == r,
            None => redirect_allowed(&callback, r),
        };
        if !ok {
            return token_error(
                format,
                "redirect_uri_mismatch",
                "The redirect_uri MUST match the registered callback URL for this application.",
                "redirect-uri-mismatch2",
            );
        }
    }
    let verifier = params.get("code_verifier").filter(|v| !v.is_empty());
    // PKCE outcomes are not documented by GitHub word for word; the codes are GitHub's.
    match (&grant.code_challenge, verifier) {
        (Some(challenge), Some(v)) => {
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(v.as_bytes()));
            if &computed != challenge {
                return token_error(
                    format,
                    "bad_verification_code",
                    "The code_verifier does not match the code_challenge.",
                    "bad-verification-code",
                );
            }
        }
        (Some(_), None) => {
            return token_error(
                format,
                "bad_verification_code",
                "The code was issued with a code_challenge; code_verifier is required.",
                "bad-verification-code",
            );
        }
        (None, Some(_)) => {
            return token_error(
                format,
                "bad_verification_code",
                "A code_verifier was sent for a code issued without code_challenge.",
                "bad-verification-code",
            );
        }
        (None, None) => {}
    }
    let token = new_token();
    s.tokens.insert(
        token.clone(),
        TokenGrant {
            user_id: grant.user_id,
            scopes: grant.scopes.clone(),
        },
    );
    token_reply(
        format,
        &[
            ("access_token", token),
            ("scope", grant.scopes.join(",")),
            ("token_type", "bearer".to_owned()),
        ],
    )
}

/// Compares secrets without an early exit, as a real server must.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ---------------------------------------------------------------------------------------------
// REST API

fn api_json(status: StatusCode, body: Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(
        "x-github-media-type",
        HeaderValue::from_static("github.v3; format=json"),
    );
    h.insert(
        "x-github-api-version-selected",
        HeaderValue::from_static("2022-11-28"),
    );
    resp
}

fn api_error(status: StatusCode, message: &str, doc: &str) -> Response {
    api_json(
        status,
        json!({
            "message": message,
            "documentation_url": format!("{DOCS}/{doc}"),
            "status": status.as_u16().to_string(),
        }),
    )
}

/// Checks every API request must pass before authentication, in GitHub's order.
async fn api_checks(req: Request, next: Next) -> Response {
    let headers = req.headers();
    if headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim().is_empty())
    {
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "Request forbidden by administrative rules. Please make sure your request has a \
             User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). \
             Check https://developer.github.com for other possible causes.\n",
        )
            .into_response();
    }
    if let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) {
        let acceptable = accept.split(',').any(|range| {
            let mt = range
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            mt.is_empty()
                || mt == "*/*"
                || mt == "application/*"
                || mt == "application/json"
                || mt.starts_with("application/vnd.github")
        });
        if !acceptable {
            return api_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!(
                    "Unsupported 'Accept' header: {accept:?}. Must accept 'application/json'."
                ),
                "rest/overview/media-types",
            );
        }
    }
    if let Some(v) = headers.get("x-github-api-version") {
        let v = v.to_str().unwrap_or("");
        if !API_VERSIONS.contains(&v) {
            return api_error(
                StatusCode::BAD_REQUEST,
                &format!("API version {v} is not supported."),
                "rest/about-the-rest-api/api-versions",
            );
        }
    }
    next.run(req).await
}

async fn api_not_found() -> Response {
    api_error(StatusCode::NOT_FOUND, "Not Found", "rest")
}

/// The token's grant, or GitHub's 401 (no credentials vs. bad credentials).
fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    doc: &str,
) -> Result<TokenGrant, Box<Response>> {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(Box::new(api_error(
            StatusCode::UNAUTHORIZED,
            "Requires authentication",
            doc,
        )));
    };
    let token = value.split_once(' ').and_then(|(scheme, t)| {
        (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
            .then(|| t.trim())
    });
    let bad = || {
        Box::new(api_error(
            StatusCode::UNAUTHORIZED,
            "Bad credentials",
            "rest",
        ))
    };
    let token = token.ok_or_else(bad)?;
    lock(state).tokens.get(token).cloned().ok_or_else(bad)
}

fn with_scopes(mut resp: Response, grant: &TokenGrant, accepted: &str) -> Response {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&grant.scopes.join(", ")) {
        h.insert("x-oauth-scopes", v);
    }
    if let Ok(v) = HeaderValue::from_str(accepted) {
        h.insert("x-accepted-oauth-scopes", v);
    }
    resp
}

fn user_by_id(s: &Shared, id: u64) -> Option<GithubUser> {
    s.users.iter().find(|u| u.id == id).cloned()
}

fn legacy_node_id(kind: &str, id: u64) -> String {
    let prefix = match kind {
        "Organization" => "012",
        _ => "04",
    };
    base64::engine::general_purpose::STANDARD.encode(format!("{prefix}:{kind}{id}"))
}

fn public_user_json(s: &Shared, u: &GithubUser) -> Value {
    let api = &s.api_url;
    let web = &s.web_url;
    let login = &u.login;
    let email = u
        .emails
        .iter()
        .find(|e| e.primary && e.visibility.as_deref() == Some("public"))
        .map(|e| e.email.clone());
    json!({
        "login": login,
        "id": u.id,
        "node_id": legacy_node_id("User", u.id),
        "avatar_url": format!("{web}/avatars/u/{}?v=4", u.id),
        "gravatar_id": "",
        "url": format!("{api}/users/{login}"),
        "html_url": format!("{web}/{login}"),
        "followers_url": format!("{api}/users/{login}/followers"),
        "following_url": format!("{api}/users/{login}/following{{/other_user}}"),
        "gists_url": format!("{api}/users/{login}/gists{{/gist_id}}"),
        "starred_url": format!("{api}/users/{login}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{api}/users/{login}/subscriptions"),
        "organizations_url": format!("{api}/users/{login}/orgs"),
        "repos_url": format!("{api}/users/{login}/repos"),
        "events_url": format!("{api}/users/{login}/events{{/privacy}}"),
        "received_events_url": format!("{api}/users/{login}/received_events"),
        "type": "User",
        "user_view_type": "public",
        "site_admin": false,
        "name": u.name,
        "company": null,
        "blog": "",
        "location": null,
        "email": email,
        "hireable": null,
        "bio": null,
        "twitter_username": null,
        "public_repos": 0,
        "public_gists": 0,
        "followers": 0,
        "following": 0,
        "created_at": "2020-01-01T00:00:00Z",
        "updated_at": "2020-01-01T00:00:00Z",
    })
}

fn org_json(s: &Shared, o: &GithubOrg) -> Value {
    let api = &s.api_url;
    let login = &o.login;
    json!({
        "login": login,
        "id": o.id,
        "node_id": legacy_node_id("Organization", o.id),
        "url": format!("{api}/orgs/{login}"),
        "repos_url": format!("{api}/orgs/{login}/repos"),
        "events_url": format!("{api}/orgs/{login}/events"),
        "hooks_url": format!("{api}/orgs/{login}/hooks"),
        "issues_url": format!("{api}/orgs/{login}/issues"),
        "members_url": format!("{api}/orgs/{login}/members{{/member}}"),
        "public_members_url": format!("{api}/orgs/{login}/public_members{{/member}}"),
        "avatar_url": format!("{}/avatars/u/{}?v=4", s.web_url, o.id),
        "description": null,
    })
}

/// Applies `?per_page` (default 30, max 100) and `?page`, adding GitHub's `Link` header.
fn paginate(s: &Shared, path: &str, query: Option<&str>, items: Vec<Value>) -> Response {
    let q: HashMap<String, String> = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let per_page = q
        .get("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = q
        .get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let mut resp = api_json(StatusCode::OK, Value::Array(slice));
    let link = |p: usize, rel: &str| {
        format!(
            "<{}{path}?per_page={per_page}&page={p}>; rel=\"{rel}\"",
            s.api_url
        )
    };
    let mut links = vec![];
    if page > 1 {
        links.push(link(page - 1, "prev"));
    }
    if page < last {
        links.push(link(page + 1, "next"));
        links.push(link(last, "last"));
    }
    if page > 1 {
        links.push(link(1, "first"));
    }
    if !links.is_empty()
        && let Ok(v) = HeaderValue::from_str(&links.join(", "))
    {
        resp.headers_mut().insert(header::LINK, v);
    }
    resp
}

/// `GET /user`: the authenticated user.
async fn api_user(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let grant = match authenticate(
        &state,
        &headers,
        "rest/users/users#get-the-authenticated-user",
    ) {
        Ok(g) => g,
        Err(r) => return *r,
    };
    let s = lock(&state);
    let Some(u) = user_by_id(&s, grant.user_id) else {
        return api_error(StatusCode::UNAUTHORIZED, "Bad credentials", "rest");
    };
    let mut body = public_user_json(&s, &u);
    body["user_view_type"] = json!("private");
    if has_scope(&grant.scopes, "user") {
        // Private profile fields only come with the `user` scope.
        body["private_gists"] = json!(0);
        body["total_private_repos"] = json!(0);
        body["owned_private_repos"] = json!(0);
        body["disk_usage"] = json!(0);
        body["collaborators"] = json!(0);
        body["two_factor_authentication"] = json!(true);
    }
    with_scopes(api_json(StatusCode::OK, body), &grant, "")
}

/// `GET /users/{login}`: any user's public profile.
async fn api_user_by_login(
    State(state): State<AppState>,
    Path(login): Path<String>,
    headers: HeaderMap,
) -> Response {
    let grant = match authenticate(&state, &headers, "rest/users/users#get-a-user") {
        Ok(g) => g,
        Err(r) => return *r,
    };
    let s = lock(&state);
    match s
        .users
        .iter()
        .find(|u| u.login.eq_ignore_ascii_case(&login))
    {
        Some(u) => with_scopes(
            api_json(StatusCode::OK, public_user_json(&s, u)),
            &grant,
            "",
        ),
        None => api_error(
            StatusCode::NOT_FOUND,
            "Not Found",
            "rest/users/users#get-a-user",
        ),
    }
}

/// `GET /user/emails`: needs `user:email` (or `user`); GitHub answers 404 without it.
async fn api_emails(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let doc = "rest/users/emails#list-email-addresses-for-the-authenticated-user";
    let grant = match authenticate(&state, &headers, doc) {
        Ok(g) => g,
        Err(r) => return *r,
    };
    if !has_scope(&grant.scopes, "user:email") {
        return with_scopes(
            api_error(StatusCode::NOT_FOUND, "Not Found", doc),
            &grant,
            "user, user:email",
        );
    }
    let s = lock(&state);
    let Some(u) = user_by_id(&s, grant.user_id) else {
        return api_error(StatusCode::UNAUTHORIZED, "Bad credentials", "rest");
    };
    let items = u
        .emails
        .iter()
        .map(|e| {
            json!({"email": e.email, "primary": e.primary, "verified": e.verified,
                   "visibility": e.visibility})
        })
        .collect();
    with_scopes(
        paginate(&s, "/user/emails", query.as_deref(), items),
        &grant,
        "user, user:email",
    )
}

/// `GET /user/orgs`: needs `read:org` or `user`; 403 without, as GitHub documents.
async fn api_orgs(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let doc = "rest/orgs/orgs#list-organizations-for-the-authenticated-user";
    let grant = match authenticate(&state, &headers, doc) {
        Ok(g) => g,
        Err(r) => return *r,
    };
    if !has_scope(&grant.scopes, "read:org") && !has_scope(&grant.scopes, "user") {
        return with_scopes(
            api_error(
                StatusCode::FORBIDDEN,
                "You need at least read:org scope or user scope to list your organizations.",
                doc,
            ),
            &grant,
            "read:org, user",
        );
    }
    let s = lock(&state);
    let Some(u) = user_by_id(&s, grant.user_id) else {
        return api_error(StatusCode::UNAUTHORIZED, "Bad credentials", "rest");
    };
    let items = u.orgs.iter().map(|o| org_json(&s, o)).collect();
    with_scopes(
        paginate(&s, "/user/orgs", query.as_deref(), items),
        &grant,
        "read:org, user",
    )
}

/// `GET /user/teams`: needs `read:org`, `repo` or `user`; 403 without (wording is ours).
async fn api_teams(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let doc = "rest/teams/teams#list-teams-for-the-authenticated-user";
    let grant = match authenticate(&state, &headers, doc) {
        Ok(g) => g,
        Err(r) => return *r,
    };
    if !["read:org", "repo", "user"]
        .iter()
        .any(|sc| has_scope(&grant.scopes, sc))
    {
        return with_scopes(
            api_error(
                StatusCode::FORBIDDEN,
                "Listing your teams needs the read:org, repo or user scope.",
                doc,
            ),
            &grant,
            "read:org, repo, user",
        );
    }
    let s = lock(&state);
    let Some(u) = user_by_id(&s, grant.user_id) else {
        return api_error(StatusCode::UNAUTHORIZED, "Bad credentials", "rest");
    };
    let api = s.api_url.clone();
    let items = u
        .teams
        .iter()
        .filter_map(|t| {
            let org = u
                .orgs
                .iter()
                .find(|o| o.login.eq_ignore_ascii_case(&t.org))?;
            let mut org_full = org_json(&s, org);
            org_full["name"] = json!(org.login);
            org_full["html_url"] = json!(format!("{}/{}", s.web_url, org.login));
            org_full["type"] = json!("Organization");
            org_full["created_at"] = json!("2020-01-01T00:00:00Z");
            org_full["updated_at"] = json!("2020-01-01T00:00:00Z");
            Some(json!({
                "id": t.id,
                "node_id": legacy_node_id("Team", t.id),
                "url": format!("{api}/teams/{}", t.id),
                "html_url": format!("{}/orgs/{}/teams/{}", s.web_url, org.login, t.slug),
                "name": t.name,
                "slug": t.slug,
                "description": null,
                "privacy": "closed",
                "notification_setting": "notifications_enabled",
                "permission": "pull",
                "members_url": format!("{api}/teams/{}/members{{/member}}", t.id),
                "repositories_url": format!("{api}/teams/{}/repos", t.id),
                "parent": null,
                "members_count": 1,
                "repos_count": 0,
                "created_at": "2020-01-01T00:00:00Z",
                "updated_at": "2020-01-01T00:00:00Z",
                "organization": org_full,
            }))
        })
        .collect();
    with_scopes(
        paginate(&s, "/user/teams", query.as_deref(), items),
        &grant,
        "read:org, repo, user",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_rules_follow_githubs_documentation() {
        let cb = "http://example.com/path";
        assert!(redirect_allowed(cb, "http://example.com/path"));
        assert!(redirect_allowed(cb, "http://example.com/path/subdir/other"));
        assert!(redirect_allowed(cb, "http://oauth.example.com/path"));
        assert!(redirect_allowed(
            cb,
            "http://oauth.example.com/path/subdir/other"
        ));
        assert!(!redirect_allowed(cb, "http://example.com/bar"));
        assert!(!redirect_allowed(cb, "http://example.com/"));
        assert!(!redirect_allowed(cb, "http://example.com/pathology"));
        assert!(!redirect_allowed(cb, "http://example.com:8080/path"));
        assert!(!redirect_allowed(cb, "http://oauth.example.com:8080/path"));
        assert!(!redirect_allowed(cb, "http://example.org"));
        assert!(!redirect_allowed(cb, "https://example.com/path"));
        assert!(!redirect_allowed(cb, "http://evilexample.com/path"));
        // Loopback callbacks accept any port.
        assert!(redirect_allowed(
            "http://127.0.0.1/path",
            "http://127.0.0.1:1234/path"
        ));
        assert!(!redirect_allowed(
            "http://127.0.0.1/path",
            "http://127.0.0.2:1234/path"
        ));
    }

    #[test]
    fn scopes_are_filtered_and_hierarchical() {
        let s = parse_scopes(Some("read:user user:email,read:org bogus read:org"));
        assert_eq!(s, vec!["read:user", "user:email", "read:org"]);
        assert!(has_scope(&["user".to_owned()], "user:email"));
        assert!(has_scope(&["admin:org".to_owned()], "read:org"));
        assert!(!has_scope(&["read:user".to_owned()], "user:email"));
    }
}
