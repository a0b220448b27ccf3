//! The browser's part of a login, shared by the end-to-end suites: GitHub login set up on
//! a control plane, and a client that follows `/authorize` → GitHub-compatible server →
//! `/callback` → consent by hand, so every hop is asserted rather than followed blindly.

use crate::ControlPlane;
use crate::github::{GithubConfig, GithubServer, GithubUser, OAuthApp};
use crate::http_client;

/// `alice` (id 1001), member of org `acme` (501): the user most suites log in as.
pub fn alice() -> GithubUser {
    GithubUser::new("alice", 1001)
        .name("Alice")
        .primary_email("alice@acme.example")
        .org("acme", 501)
}

/// Starts a GitHub-compatible server with `users` (the first one signed in), registers
/// the control plane's OAuth app there, adds it as identity provider `github` and a rule
/// granting members of org `acme` scope `mcp`.
pub async fn github_login(cp: &ControlPlane, users: Vec<GithubUser>) -> GithubServer {
    let current = users.first().map(|u| u.login.clone());
    let github = GithubServer::start(GithubConfig {
        users,
        apps: vec![OAuthApp::new(
            "gh-app",
            "gh-secret",
            &format!("{}/callback/github", cp.http),
        )],
        current_user: current,
        ..Default::default()
    })
    .await;
    cp.cli_ok(&[
        "oauth",
        "idp",
        "add",
        "github",
        "--kind",
        "github",
        "--client-id",
        "gh-app",
        "--client-secret",
        "gh-secret",
        "--base-url",
        &github.web_url,
        "--api-url",
        &github.api_url,
    ]);
    cp.cli_ok(&["oauth", "rule", "add", "--group", "acme", "--scope", "mcp"]);
    github
}

/// The absolute `Location` of a redirect; panics (a test failure) without one.
pub fn location(resp: &reqwest::Response) -> url::Url {
    let loc = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no Location on {}", resp.status()));
    url::Url::parse(loc).expect("absolute Location")
}

/// A query parameter of `u`.
pub fn param(u: &url::Url, key: &str) -> Option<String> {
    u.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// The value of hidden form field `name` on a consent page.
pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .map(|i| i + marker.len())
        .expect("hidden field");
    page[start..].split('"').next().expect("value").to_owned()
}

/// The authorization server's login cookie (`name=value`), if the response set it.
pub fn login_cookie(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("__Host-portcullis_login="))
        .map(|c| c.split(';').next().unwrap_or("").to_owned())
}

/// Where a login ended.
#[derive(Debug)]
pub struct Browsed {
    /// The URL the authorization server finally redirected to (the client's redirect
    /// URI, with `code` or `error`).
    pub back: url::Url,
    /// Whether a consent page was shown (and answered).
    pub consent_shown: bool,
    /// That page's HTML; empty when none was shown.
    pub consent_page: String,
}

/// Plays the signed-in user's browser from `authorize` to the client's redirect URI,
/// answering the consent page (allow when `approve`) if one appears. An `/authorize`
/// that answers the client at once (a redirect carrying `code` or `error`, or no login
/// cookie) ends there.
pub async fn browse(cp: &ControlPlane, authorize: url::Url, approve: bool) -> Browsed {
    let http = http_client();
    let resp = http.get(authorize).send().await.expect("authorize");
    assert_eq!(resp.status(), 303, "authorize: {:?}", resp.text().await);
    let next = location(&resp);
    let answered = param(&next, "code").is_some() || param(&next, "error").is_some();
    let Some(cookie) = login_cookie(&resp).filter(|_| !answered) else {
        return Browsed {
            back: next,
            consent_shown: false,
            consent_page: String::new(),
        };
    };
    // The identity provider (auto-approving the signed-in user) sends the browser back.
    let resp = http.get(next).send().await.expect("github authorize");
    assert!(resp.status().is_redirection(), "github: {}", resp.status());
    let next = location(&resp);
    assert!(
        next.as_str().starts_with(&format!("{}/callback/", cp.http)),
        "{next}"
    );
    let resp = http
        .get(next)
        .header("cookie", &cookie)
        .send()
        .await
        .expect("callback");
    if resp.status() == 303 {
        return Browsed {
            back: location(&resp),
            consent_shown: false,
            consent_page: String::new(),
        };
    }
    assert_eq!(resp.status(), 200, "callback should show consent");
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    let page = resp.text().await.expect("consent page");
    let form = format!(
        "tx={}&csrf={}&decision={}",
        hidden(&page, "tx"),
        hidden(&page, "csrf"),
        if approve { "allow" } else { "deny" }
    );
    let resp = http
        .post(format!("{}/consent", cp.http))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("consent");
    assert_eq!(resp.status(), 303);
    Browsed {
        back: location(&resp),
        consent_shown: true,
        consent_page: page,
    }
}

/// The PKCE pair of RFC 7636 Appendix B, for clients the tests drive by hand.
pub const PKCE_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
/// `BASE64URL(SHA256(PKCE_VERIFIER))`.
pub const PKCE_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// What a public MCP client does: `authorize` (PKCE S256, scope `mcp`, RFC 8707
/// `resource`) → GitHub → `/callback` → consent (approved), then the code at `token`.
/// Returns the access token; every hop is asserted.
pub async fn access_token(
    cp: &ControlPlane,
    authorize: &str,
    token: &str,
    client_id: &str,
    redirect_uri: &str,
    resource: &str,
) -> String {
    let mut authorize = url::Url::parse(authorize).expect("authorization endpoint URL");
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("code_challenge", PKCE_CHALLENGE)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "st")
        .append_pair("scope", "mcp")
        .append_pair("resource", resource);
    let back = browse(cp, authorize, true).await.back;
    let code = param(&back, "code").unwrap_or_else(|| panic!("no code in {back}"));
    let form = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code.as_str()),
            ("redirect_uri", redirect_uri),
            ("code_verifier", PKCE_VERIFIER),
        ])
        .finish();
    let resp = http_client()
        .post(token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("token");
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.expect("json");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}
