//! Full OAuth flows against real peers: the control plane's authorization server logs users
//! in through a GitHub-compatible server (GitHub's wire protocol, Enterprise layout) and
//! through the certified `oidc-provider`, then issues audience-bound JWTs. Every attack the
//! issue lists has its own case.

use std::time::Duration;

use portcullis_tests::browser::{
    Browsed, PKCE_CHALLENGE as CHALLENGE, PKCE_VERIFIER as VERIFIER, alice, browse, github_login,
    hidden, location, login_cookie, param,
};
use portcullis_tests::github::{Consent, GithubServer, GithubUser};
use portcullis_tests::oidc::{ALICE, CAROL, OidcProvider};
use portcullis_tests::{ControlPlane, RedisServer, http_client};
use serde_json::{Value, json};

const MCP: &str = "https://mcp.example.com/mcp";
const REDIRECT: &str = "http://127.0.0.1:53999/callback";

/// A control plane with GitHub login, a rule admitting org `acme` with scope `mcp`, two
/// protected hosts, a public client and a confidential one.
struct Fixture {
    cp: ControlPlane,
    github: GithubServer,
    public_id: String,
    confidential_id: String,
    confidential_secret: String,
}

async fn fixture_on(cp: ControlPlane) -> Fixture {
    let github = github_login(
        &cp,
        vec![
            alice().team("acme", "ops", "Ops", 601),
            GithubUser::new("mallory", 1002).primary_email("mallory@evil.example"),
        ],
    )
    .await;
    cp.cli_ok(&["proxy", "create", "mcp.example.com", "http://127.0.0.1:9"]);
    cp.cli_ok(&["proxy", "create", "other.example.com", "http://127.0.0.1:9"]);
    let public: Value = register(
        &cp,
        json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
               "grant_types": ["authorization_code", "refresh_token"], "client_name": "Public app"}),
    )
    .await;
    let confidential: Value = register(
        &cp,
        json!({"redirect_uris": [REDIRECT], "grant_types": ["authorization_code", "refresh_token"],
               "client_name": "Confidential app"}),
    )
    .await;
    Fixture {
        cp,
        github,
        public_id: public["client_id"].as_str().expect("id").to_owned(),
        confidential_id: confidential["client_id"].as_str().expect("id").to_owned(),
        confidential_secret: confidential["client_secret"]
            .as_str()
            .expect("secret")
            .to_owned(),
    }
}

async fn fixture() -> Fixture {
    fixture_on(ControlPlane::start().await).await
}

async fn register(cp: &ControlPlane, body: Value) -> Value {
    let resp = http_client()
        .post(format!("{}/register", cp.http))
        .json(&body)
        .send()
        .await
        .expect("register");
    assert_eq!(resp.status(), 201);
    resp.json().await.expect("json")
}

fn authorize_url(cp: &ControlPlane, client_id: &str, extra: &[(&str, &str)]) -> url::Url {
    let mut u = url::Url::parse(&format!("{}/authorize", cp.http)).expect("url");
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_challenge", CHALLENGE)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "xyz")
        .append_pair("scope", "mcp")
        .append_pair("resource", MCP)
        .extend_pairs(extra);
    u
}

/// Logs in through GitHub and returns the code.
async fn code_for(fx: &Fixture, client_id: &str) -> String {
    let Browsed { back, .. } = browse(&fx.cp, authorize_url(&fx.cp, client_id, &[]), true).await;
    assert_eq!(param(&back, "state").as_deref(), Some("xyz"));
    assert_eq!(param(&back, "iss").as_deref(), Some(fx.cp.http.as_str()));
    param(&back, "code").unwrap_or_else(|| panic!("no code in {back}"))
}

async fn token(
    cp: &ControlPlane,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (u16, Value) {
    let mut req = http_client()
        .post(format!("{}/token", cp.http))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form)
                .finish(),
        );
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let resp = req.send().await.expect("token");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    (resp.status().as_u16(), resp.json().await.expect("json"))
}

async fn exchange(fx: &Fixture, code: &str) -> Value {
    let (status, body) = token(
        &fx.cp,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &fx.public_id),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn introspect(fx: &Fixture, tok: &str) -> Value {
    http_client()
        .post(format!("{}/introspect", fx.cp.http))
        .basic_auth(&fx.confidential_id, Some(&fx.confidential_secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={tok}"))
        .send()
        .await
        .expect("introspect")
        .json()
        .await
        .expect("json")
}

/// Decodes and verifies a JWT against the server's JWKS, as a resource server would.
async fn verify_jwt(cp: &ControlPlane, jwt: &str) -> (jsonwebtoken::Header, Value) {
    let jwks: jsonwebtoken::jwk::JwkSet = http_client()
        .get(format!("{}/jwks", cp.http))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks json");
    let header = jsonwebtoken::decode_header(jwt).expect("header");
    let kid = header.kid.clone().expect("kid");
    let jwk = jwks.find(&kid).expect("kid in JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).expect("key");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&[MCP]);
    v.set_issuer(&[cp.http.as_str()]);
    let data = jsonwebtoken::decode::<Value>(jwt, &key, &v).expect("valid JWT");
    (header, data.claims)
}

#[derive(Debug)]
struct HttpError(String);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HttpError {}

/// The `oauth2` crate's HTTP hook, over reqwest (no redirects followed, as it asks).
async fn oauth2_http(req: oauth2::HttpRequest) -> Result<oauth2::HttpResponse, HttpError> {
    let (parts, body) = req.into_parts();
    let resp = http_client()
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| HttpError(e.to_string()))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.map_err(|e| HttpError(e.to_string()))?;
    let mut out = http::Response::new(body.to_vec());
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

#[tokio::test]
async fn github_login_through_an_oauth2_client_yields_an_audience_bound_jwt() {
    use oauth2::{
        AuthUrl, AuthorizationCode, ClientId, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
        TokenResponse as _, TokenUrl,
    };
    let fx = fixture().await;
    // The `oauth2` crate plays the client: it builds the authorize URL and exchanges the code.
    let client = oauth2::basic::BasicClient::new(ClientId::new(fx.public_id.clone()))
        .set_auth_uri(AuthUrl::new(format!("{}/authorize", fx.cp.http)).expect("auth url"))
        .set_token_uri(TokenUrl::new(format!("{}/token", fx.cp.http)).expect("token url"))
        .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).expect("redirect"));
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf) = client
        .authorize_url(oauth2::CsrfToken::new_random)
        .add_scope(oauth2::Scope::new("mcp".into()))
        .add_extra_param("resource", MCP)
        .set_pkce_challenge(challenge)
        .url();
    let Browsed {
        back,
        consent_shown: consented,
        ..
    } = browse(&fx.cp, auth_url, true).await;
    assert!(consented, "first login asks for consent");
    assert_eq!(
        param(&back, "state").as_deref(),
        Some(csrf.secret().as_str())
    );
    assert_eq!(param(&back, "iss").as_deref(), Some(fx.cp.http.as_str()));
    let code = param(&back, "code").expect("code");
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.secret().clone()))
        .request_async(&oauth2_http)
        .await
        .expect("code exchange");
    let jwt = tokens.access_token().secret().clone();
    assert!(tokens.refresh_token().is_some());
    assert_eq!(tokens.expires_in(), Some(Duration::from_secs(3600)));

    let (header, claims) = verify_jwt(&fx.cp, &jwt).await;
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(claims["iss"], fx.cp.http.as_str());
    assert_eq!(claims["sub"], "github:1001");
    assert_eq!(claims["aud"], json!([MCP]));
    assert_eq!(claims["client_id"], fx.public_id.as_str());
    assert_eq!(claims["scope"], "mcp");
    assert_eq!(claims["login"], "alice");
    assert_eq!(claims["email"], "alice@acme.example");
    assert_eq!(claims["idp"], "github");
    assert_eq!(claims["groups"], json!(["acme", "acme/ops"]));
    for c in ["exp", "iat", "nbf", "jti", "auth_time"] {
        assert!(claims.get(c).is_some(), "claim {c} missing");
    }
    // Upstream: our server used GitHub's token endpoint with its secret and PKCE.
    let sent = fx.github.token_requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].param("client_secret").as_deref(), Some("gh-secret"));
    assert!(
        sent[0]
            .param("code_verifier")
            .is_some_and(|v| v.len() >= 43)
    );
    // Resource servers can introspect; userinfo names the user.
    let info = introspect(&fx, &jwt).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["sub"], "github:1001");
    let me: Value = http_client()
        .get(format!("{}/userinfo", fx.cp.http))
        .bearer_auth(&jwt)
        .send()
        .await
        .expect("userinfo")
        .json()
        .await
        .expect("json");
    assert_eq!(me["preferred_username"], "alice");

    // Consent is remembered per (user, client) and can be revoked.
    let consented = browse(&fx.cp, authorize_url(&fx.cp, &fx.public_id, &[]), true)
        .await
        .consent_shown;
    assert!(!consented, "remembered consent skips the page");
    fx.cp.cli_ok(&[
        "oauth",
        "consent",
        "revoke",
        "--sub",
        "github:1001",
        "--client-id",
        &fx.public_id,
    ]);
    let consented = browse(&fx.cp, authorize_url(&fx.cp, &fx.public_id, &[]), true)
        .await
        .consent_shown;
    assert!(consented, "revoked consent asks again");
    let metrics: Value =
        serde_json::from_str(&fx.cp.cli_ok(&["-o", "json", "oauth", "metrics"])).expect("json");
    assert_eq!(metrics["issued"], 1);
}

/// An authorization request of the public client for `scope` at `resource`.
fn authorize_for(fx: &Fixture, resource: &str, scope: &str) -> url::Url {
    let mut u = url::Url::parse(&format!("{}/authorize", fx.cp.http)).expect("url");
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &fx.public_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_challenge", CHALLENGE)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "xyz")
        .append_pair("scope", scope)
        .append_pair("resource", resource);
    u
}

#[tokio::test]
async fn consent_is_remembered_per_resource_and_covers_fewer_scopes() {
    let fx = fixture().await;
    // A resource whose path needs escaping in HTML (`'` and `&` stay as they are in URLs).
    let other = "https://other.example.com/it's&more";
    let other_html = "https://other.example.com/it&#x27;s&amp;more";

    let first = browse(&fx.cp, authorize_for(&fx, MCP, "mcp email"), true).await;
    assert!(first.consent_shown, "first login asks for consent");
    assert!(param(&first.back, "code").is_some(), "{}", first.back);

    // The same client at another resource: asked again, naming that resource (escaped).
    let second = browse(&fx.cp, authorize_for(&fx, other, "mcp"), true).await;
    assert!(
        second.consent_shown,
        "consent for {MCP} must not cover {other}"
    );
    assert!(
        first.consent_page.contains(&format!("<code>{MCP}</code>")),
        "the page names the resource: {}",
        first.consent_page
    );
    assert!(
        second
            .consent_page
            .contains(&format!("<code>{other_html}</code>")),
        "{}",
        second.consent_page
    );
    assert!(!second.consent_page.contains(other), "unescaped resource");
    assert!(
        !second.consent_page.contains(MCP),
        "{}",
        second.consent_page
    );
    assert!(param(&second.back, "code").is_some(), "{}", second.back);

    // Fewer scopes at a consented resource: no page, a code at once.
    let again = browse(&fx.cp, authorize_for(&fx, MCP, "mcp"), true).await;
    assert!(
        !again.consent_shown,
        "a subset of consented scopes is covered"
    );
    assert!(param(&again.back, "code").is_some(), "{}", again.back);
    // More scopes than consented there: asked again.
    let more = browse(&fx.cp, authorize_for(&fx, MCP, "mcp profile"), true).await;
    assert!(
        more.consent_shown,
        "a scope never allowed at {MCP} needs consent"
    );

    // The store holds one consent per resource; scopes add up per resource.
    let list: Value =
        serde_json::from_str(&fx.cp.cli_ok(&["-o", "json", "oauth", "consent", "list"]))
            .expect("json");
    let mut items: Vec<(String, Vec<String>)> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| {
            assert_eq!(c["sub"], "github:1001");
            assert_eq!(c["client_id"], fx.public_id.as_str());
            let mut scopes: Vec<String> = c["scopes"]
                .as_array()
                .expect("scopes")
                .iter()
                .map(|s| s.as_str().expect("scope").to_owned())
                .collect();
            scopes.sort();
            (c["resource"].as_str().expect("resource").to_owned(), scopes)
        })
        .collect();
    items.sort();
    assert_eq!(
        items,
        [
            (
                MCP.to_owned(),
                vec!["email".into(), "mcp".into(), "profile".into()]
            ),
            (other.to_owned(), vec!["mcp".to_owned()]),
        ]
    );
    // Revoking the client's consent forgets it at every resource.
    fx.cp.cli_ok(&[
        "oauth",
        "consent",
        "revoke",
        "--sub",
        "github:1001",
        "--client-id",
        &fx.public_id,
    ]);
    let list: Value =
        serde_json::from_str(&fx.cp.cli_ok(&["-o", "json", "oauth", "consent", "list"]))
            .expect("json");
    assert_eq!(list["items"], json!([]));
    assert!(
        browse(&fx.cp, authorize_for(&fx, other, "mcp"), true)
            .await
            .consent_shown
    );
}

#[tokio::test]
async fn wrong_verifier_other_client_and_redirect_mismatch_are_invalid_grant() {
    let fx = fixture().await;
    let code = code_for(&fx, &fx.public_id).await;
    let base = |verifier: &'static str, redirect: &'static str| {
        vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
        ]
    };
    let mut wrong = base("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXx", REDIRECT);
    wrong.push(("client_id", &fx.public_id));
    let (status, body) = token(&fx.cp, &wrong, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, body) = token(
        &fx.cp,
        &base(VERIFIER, REDIRECT),
        Some((&fx.confidential_id, &fx.confidential_secret)),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "other client: {body}"
    );
    let mut mismatch = base(VERIFIER, "http://127.0.0.1:53999/other");
    mismatch.push(("client_id", &fx.public_id));
    let (_, body) = token(&fx.cp, &mismatch, None).await;
    assert_eq!(body["error"], "invalid_grant");
    let mut missing = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
    ];
    missing.push(("client_id", &fx.public_id));
    let (_, body) = token(&fx.cp, &missing, None).await;
    assert_eq!(body["error"], "invalid_request", "missing verifier");
    // None of those consumed the code: the rightful exchange still works.
    exchange(&fx, &code).await;
}

#[tokio::test]
async fn a_replayed_code_revokes_what_it_issued() {
    let fx = fixture().await;
    let code = code_for(&fx, &fx.public_id).await;
    let first = exchange(&fx, &code).await;
    let jwt = first["access_token"].as_str().expect("jwt");
    assert_eq!(introspect(&fx, jwt).await["active"], true);
    let (status, body) = token(
        &fx.cp,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &fx.public_id),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(
        introspect(&fx, jwt).await["active"],
        false,
        "replay revoked the access token"
    );
    let refresh = first["refresh_token"].as_str().expect("refresh");
    let (_, body) = token(
        &fx.cp,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &fx.public_id),
            ("refresh_token", refresh),
        ],
        None,
    )
    .await;
    assert_eq!(
        body["error"], "invalid_grant",
        "replay revoked the refresh token"
    );
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let fx = fixture().await;
    let first = exchange(&fx, &code_for(&fx, &fx.public_id).await).await;
    let rt1 = first["refresh_token"].as_str().expect("rt").to_owned();
    let refresh = |rt: String, extra: Vec<(&'static str, &'static str)>| {
        let cp = &fx.cp;
        let id = fx.public_id.clone();
        async move {
            let mut form = vec![
                ("grant_type", "refresh_token"),
                ("client_id", id.as_str()),
                ("refresh_token", rt.as_str()),
            ];
            form.extend(extra);
            token(cp, &form, None).await
        }
    };
    // Narrowing is allowed, widening is not.
    let (status, body) = refresh(rt1.clone(), vec![("scope", "mcp admin")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    let (status, body) =
        refresh(rt1.clone(), vec![("resource", "https://other.example.com")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target"))
    );
    let (status, second) = refresh(rt1.clone(), vec![]).await;
    assert_eq!(status, 200, "{second}");
    let rt2 = second["refresh_token"].as_str().expect("rt2").to_owned();
    assert_ne!(rt1, rt2, "rotated");
    let (_, claims) = verify_jwt(&fx.cp, second["access_token"].as_str().expect("at")).await;
    assert_eq!(claims["aud"], json!([MCP]), "audience preserved");
    assert_eq!(claims["scope"], "mcp", "scope preserved");
    let sessions = fx.cp.cli_ok(&["-o", "json", "oauth", "session", "list"]);
    assert_eq!(
        serde_json::from_str::<Value>(&sessions).expect("json")["items"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // The old refresh token again: the whole family dies, including the newest tokens.
    let (status, body) = refresh(rt1, vec![]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (_, body) = refresh(rt2, vec![]).await;
    assert_eq!(
        body["error"], "invalid_grant",
        "newest refresh token revoked too"
    );
    assert_eq!(
        introspect(&fx, second["access_token"].as_str().expect("at")).await["active"],
        false
    );
    let sessions = fx.cp.cli_ok(&["-o", "json", "oauth", "session", "list"]);
    assert_eq!(
        serde_json::from_str::<Value>(&sessions).expect("json")["items"],
        json!([])
    );
}

#[tokio::test]
async fn revocation_endpoint_and_revoked_tokens_at_introspection() {
    let fx = fixture().await;
    let t = exchange(&fx, &code_for(&fx, &fx.public_id).await).await;
    let at = t["access_token"].as_str().expect("at");
    let rt = t["refresh_token"].as_str().expect("rt");
    let revoke = |tok: String| {
        http_client()
            .post(format!("{}/revoke", fx.cp.http))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("client_id={}&token={tok}", fx.public_id))
            .send()
    };
    assert_eq!(revoke(at.to_owned()).await.expect("revoke").status(), 200);
    assert_eq!(introspect(&fx, at).await, json!({"active": false}));
    // The snapshot carries the revocation to data planes.
    let snapshot_has = fx.cp.cli_ok(&["-o", "json", "oauth", "metrics"]);
    assert!(
        serde_json::from_str::<Value>(&snapshot_has).expect("json")["revoked"].as_u64() >= Some(1)
    );
    assert_eq!(revoke(rt.to_owned()).await.expect("revoke").status(), 200);
    let (_, body) = token(
        &fx.cp,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &fx.public_id),
            ("refresh_token", rt),
        ],
        None,
    )
    .await;
    assert_eq!(body["error"], "invalid_grant");
    // Unknown tokens: still 200 (RFC 7009 §2.2).
    assert_eq!(
        revoke("nonsense".into()).await.expect("revoke").status(),
        200
    );
}

#[tokio::test]
async fn tampered_tokens_and_tokens_for_other_resources_are_refused() {
    let fx = fixture().await;
    let t = exchange(&fx, &code_for(&fx, &fx.public_id).await).await;
    let at = t["access_token"].as_str().expect("at");
    // Flip a character of the signature.
    let mut tampered: Vec<char> = at.chars().collect();
    let i = tampered.len() - 5;
    tampered[i] = if tampered[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    assert_eq!(introspect(&fx, &tampered).await["active"], false);
    // ForwardAuth for resource B refuses a token for resource A, with the RFC 9728 challenge.
    let verify = |host: &'static str, tok: String| {
        http_client()
            .get(format!("{}/verify", fx.cp.http))
            .bearer_auth(tok)
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", host)
            .header("x-forwarded-uri", "/mcp")
            .send()
    };
    let ok = verify("mcp.example.com", at.to_owned())
        .await
        .expect("verify");
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["x-auth-request-user"], "alice");
    assert_eq!(ok.headers()["x-auth-request-email"], "alice@acme.example");
    let other = verify("other.example.com", at.to_owned())
        .await
        .expect("verify");
    assert_eq!(other.status(), 401);
    let challenge = other.headers()["www-authenticate"]
        .to_str()
        .expect("challenge");
    assert!(challenge.starts_with(r#"Bearer resource_metadata="https://other.example.com/.well-known/oauth-protected-resource""#), "{challenge}");
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    let bad = verify("mcp.example.com", tampered).await.expect("verify");
    assert_eq!(bad.status(), 401);
    let scoped = http_client()
        .get(format!("{}/verify?scope=admin", fx.cp.http))
        .bearer_auth(at)
        .header("x-forwarded-host", "mcp.example.com")
        .header("x-forwarded-uri", "/mcp")
        .send()
        .await
        .expect("verify");
    assert_eq!(scoped.status(), 403);
    assert!(
        scoped.headers()["www-authenticate"]
            .to_str()
            .expect("h")
            .contains("insufficient_scope")
    );
}

#[tokio::test]
async fn users_outside_the_rules_and_cancelled_logins_get_access_denied() {
    let fx = fixture().await;
    fx.github.set_user("mallory");
    let Browsed { back, .. } =
        browse(&fx.cp, authorize_url(&fx.cp, &fx.public_id, &[]), true).await;
    assert_eq!(
        param(&back, "error").as_deref(),
        Some("access_denied"),
        "{back}"
    );
    assert_eq!(param(&back, "state").as_deref(), Some("xyz"));
    assert_eq!(param(&back, "iss").as_deref(), Some(fx.cp.http.as_str()));
    assert!(param(&back, "code").is_none());

    fx.github.set_user("alice");
    fx.github.set_consent(Consent::Deny);
    let Browsed { back, .. } =
        browse(&fx.cp, authorize_url(&fx.cp, &fx.public_id, &[]), true).await;
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));

    // Declining our own consent page ends the same way.
    fx.github.set_consent(Consent::Approve);
    let Browsed {
        back,
        consent_shown: consented,
        ..
    } = browse(&fx.cp, authorize_url(&fx.cp, &fx.public_id, &[]), false).await;
    assert!(consented);
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));
}

#[tokio::test]
async fn a_login_cannot_be_finished_in_another_browser() {
    let fx = fixture().await;
    let resp = http_client()
        .get(authorize_url(&fx.cp, &fx.public_id, &[]))
        .send()
        .await
        .expect("authorize");
    let gh = location(&resp);
    let resp = http_client().get(gh).send().await.expect("github");
    let callback = location(&resp);
    // The attacker's browser (no login cookie) follows the callback link.
    let resp = http_client().get(callback).send().await.expect("callback");
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().get("location").is_none());
    assert!(resp.text().await.expect("body").contains("another browser"));
}

/// The flag sets the lifetime; that tokens then expire (after the 5 s leeway) is shown by
/// the control plane's unit tests with a manual clock (`oauth::token::tests`), not by
/// sleeping here.
#[tokio::test]
async fn the_access_token_lifetime_comes_from_the_flag() {
    let cp = ControlPlane::start_args(vec!["--oauth-access-ttl-secs".into(), "1".into()]).await;
    let fx = fixture_on(cp).await;
    let t = exchange(&fx, &code_for(&fx, &fx.public_id).await).await;
    let at = t["access_token"].as_str().expect("at");
    assert_eq!(t["expires_in"], 1);
    let v = introspect(&fx, at).await;
    assert_eq!(v["active"], true);
    assert_eq!(
        v["exp"]
            .as_i64()
            .map(|exp| exp - v["iat"].as_i64().unwrap_or(0)),
        Some(1),
        "{v}"
    );
}

#[tokio::test]
async fn oauth_state_lives_in_redis_too() {
    let redis = RedisServer::start().await;
    let fx = fixture_on(ControlPlane::start_with(Some(&redis.url)).await).await;
    let t = exchange(&fx, &code_for(&fx, &fx.public_id).await).await;
    let at = t["access_token"].as_str().expect("at");
    assert_eq!(introspect(&fx, at).await["active"], true);
    let keys = redis.cli(&["--scan", "--pattern", "*oauthfamilies*"]);
    assert!(
        !keys.trim().is_empty(),
        "families stored in Redis: {keys:?}"
    );
    let keys = redis.cli(&["--scan", "--pattern", "*oauthkeys*"]);
    assert!(!keys.trim().is_empty());
}

#[tokio::test]
async fn oidc_login_maps_claims_and_refuses_unverified_email() {
    let cp = ControlPlane::start().await;
    let callback = format!("{}/callback/corp", cp.http);
    let op = OidcProvider::start("portcullis", "op-secret", &[&callback], Some("alice")).await;
    op.add_to(&cp, "corp", &["email", "profile", "groups"]);
    cp.cli_ok(&[
        "oauth",
        "rule",
        "add",
        "--email-domain",
        "example.com",
        "--scope",
        "mcp",
    ]);
    cp.cli_ok(&["proxy", "create", "mcp.example.com", "http://127.0.0.1:9"]);
    let client = register(
        &cp,
        json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
               "grant_types": ["authorization_code"]}),
    )
    .await;
    let client_id = client["client_id"].as_str().expect("id");

    let login = |who: &'static str| {
        let cp = &cp;
        let op = &op;
        let callback = &callback;
        async move {
            op.set_current_user(Some(who)).await;
            let resp = http_client()
                .get(authorize_url(cp, client_id, &[]))
                .send()
                .await
                .expect("authorize");
            assert_eq!(resp.status(), 303);
            let cookie = login_cookie(&resp).expect("cookie");
            let upstream = location(&resp);
            assert!(upstream.as_str().starts_with(&op.issuer), "{upstream}");
            // The certified provider runs its own interaction; we follow it like a browser.
            let back = op.login(upstream.as_str()).await;
            assert!(back.as_str().starts_with(callback.as_str()), "{back}");
            let resp = http_client()
                .get(back)
                .header("cookie", &cookie)
                .send()
                .await
                .expect("callback");
            (
                resp.status(),
                cookie,
                resp.headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                resp.text().await.unwrap_or_default(),
            )
        }
    };
    let (status, cookie, _, page) = login(ALICE.username).await;
    assert_eq!(status, 200, "{page}");
    let resp = http_client()
        .post(format!("{}/consent", cp.http))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "tx={}&csrf={}&decision=allow",
            hidden(&page, "tx"),
            hidden(&page, "csrf")
        ))
        .send()
        .await
        .expect("consent");
    let back = location(&resp);
    let code = param(&back, "code").expect("code");
    let (status, t) = token(
        &cp,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200, "{t}");
    let (_, claims) = verify_jwt(&cp, t["access_token"].as_str().expect("at")).await;
    assert_eq!(claims["sub"], format!("corp:{}", ALICE.sub));
    assert_eq!(claims["email"], ALICE.email);
    assert_eq!(claims["login"], ALICE.username);
    assert_eq!(claims["idp"], "corp");
    assert_eq!(claims["groups"], json!(ALICE.groups));
    assert!(
        t.get("refresh_token").is_none(),
        "client did not register refresh_token"
    );

    // Carol's address is unverified: an e-mail-domain rule must not admit her.
    let (status, _, loc, _) = login(CAROL.username).await;
    assert_eq!(status, 303);
    let back = url::Url::parse(&loc.expect("location")).expect("url");
    assert_eq!(
        param(&back, "error").as_deref(),
        Some("access_denied"),
        "{back}"
    );
}

#[tokio::test]
async fn portcullis_login_uses_the_device_grant_and_the_token_drives_the_api() {
    let fx = fixture().await;
    fx.cp.cli_ok(&[
        "oauth", "rule", "add", "--user", "alice", "--scope", "admin",
    ]);
    let mut child = tokio::process::Command::new(portcullis_tests::procs::bin("portcullis"))
        .args(["login", "--issuer", &fx.cp.http])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("portcullis login");
    use tokio::io::AsyncBufReadExt as _;
    let mut err = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut code = None;
    while let Some(line) = err.next_line().await.expect("read") {
        if let Some(c) = line.strip_prefix("and enter the code ") {
            code = Some(c.trim().to_owned());
            break;
        }
    }
    let code = code.expect("user code printed");
    // The user opens the verification page and types the code.
    let http = http_client();
    let page = http
        .get(format!("{}/device", fx.cp.http))
        .send()
        .await
        .expect("device page");
    assert_eq!(page.status(), 200);
    let resp = http
        .post(format!("{}/device", fx.cp.http))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("user_code={}", code.to_lowercase()))
        .send()
        .await
        .expect("device submit");
    assert_eq!(resp.status(), 303);
    let cookie = login_cookie(&resp).expect("cookie");
    let gh = location(&resp);
    let back = location(&http.get(gh).send().await.expect("github"));
    let resp = http
        .get(back)
        .header("cookie", &cookie)
        .send()
        .await
        .expect("callback");
    let page = resp.text().await.expect("consent");
    assert!(page.contains("Portcullis CLI"), "{page}");
    let resp = http
        .post(format!("{}/consent", fx.cp.http))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "tx={}&csrf={}&decision=allow",
            hidden(&page, "tx"),
            hidden(&page, "csrf")
        ))
        .send()
        .await
        .expect("consent");
    assert_eq!(resp.status(), 200);
    assert!(
        resp.text()
            .await
            .expect("body")
            .contains("Device connected")
    );
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("login finishes")
        .expect("output");
    assert!(out.status.success());
    let jwt = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(jwt.split('.').count(), 3, "{jwt}");
    // The OAuth token works as an admin credential for the API (gRPC via the CLI).
    let listed = fx.cp.cli(&jwt, &["proxy", "list"]);
    assert!(listed.status.success(), "{listed:?}");
    assert!(String::from_utf8_lossy(&listed.stdout).contains("mcp.example.com"));
    // A token for another audience is not an API credential.
    let mcp = exchange(&fx, &code_for(&fx, &fx.public_id).await).await;
    let denied = fx.cp.cli(
        mcp["access_token"].as_str().expect("at"),
        &["proxy", "list"],
    );
    assert!(!denied.status.success());
}

#[tokio::test]
async fn client_id_metadata_documents_are_fetched_validated_and_cached() {
    use portcullis_tests::https_docs::{Doc, HttpsDocs};
    let docs = HttpsDocs::start().await;
    let cp = ControlPlane::start_args(vec![
        "--oauth-cimd-allow-private".into(),
        "--oauth-upstream-ca".into(),
        docs.ca_pem.to_string_lossy().into_owned(),
    ])
    .await;
    let fx = fixture_on(cp).await;
    let good = format!("{}/oauth/client.json", docs.origin);
    docs.put(
        "/oauth/client.json",
        Doc {
            body: json!({"client_id": good, "client_name": "Metadata App", "redirect_uris": [REDIRECT],
                         "token_endpoint_auth_method": "none", "grant_types": ["authorization_code"]})
            .to_string(),
            cache_control: Some("max-age=300".into()),
        },
    );
    let liar = format!("{}/oauth/liar.json", docs.origin);
    docs.put(
        "/oauth/liar.json",
        Doc {
            body: json!({"client_id": "https://trusted.example.com/client.json", "client_name": "Liar",
                         "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"})
            .to_string(),
            cache_control: None,
        },
    );

    // The document's own client_id must equal its URL.
    let resp = http_client()
        .get(authorize_url(&fx.cp, &liar, &[]))
        .send()
        .await
        .expect("authorize");
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().get("location").is_none());
    let body = resp.text().await.expect("body");
    assert!(body.contains("differs from the document URL"), "{body}");

    // A redirect URI the document does not list is refused without redirecting.
    let mut u = authorize_url(&fx.cp, &good, &[]);
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let evil = k == "redirect_uri";
            (
                k.into_owned(),
                if evil {
                    "http://127.0.0.1:1/evil".into()
                } else {
                    v.into_owned()
                },
            )
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    let resp = http_client().get(u).send().await.expect("authorize");
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().get("location").is_none());

    // The real thing: consent names the document's client, the token names the URL.
    let Browsed {
        back,
        consent_shown: consented,
        ..
    } = browse(&fx.cp, authorize_url(&fx.cp, &good, &[]), true).await;
    assert!(consented);
    let code = param(&back, "code").expect("code");
    let (status, t) = token(
        &fx.cp,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &good),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200, "{t}");
    let (_, claims) = verify_jwt(&fx.cp, t["access_token"].as_str().expect("at")).await;
    assert_eq!(claims["client_id"], good.as_str());
    // Fetched once, then served from cache per its max-age (the bad redirect attempt included).
    assert_eq!(docs.hits("/oauth/client.json"), 1);
}

/// nginx in front of a backend, delegating every request to `/verify` with `auth_request`.
struct Nginx {
    proc: portcullis_tests::procs::Proc,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.proc.kill();
    }
}

async fn nginx_forward_auth(cp: &ControlPlane, backend: &str) -> Nginx {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = portcullis_tests::free_port();
    let cp_addr = cp.http.trim_start_matches("http://");
    let backend_addr = backend.trim_start_matches("http://");
    let d = dir.path().display();
    let conf = format!(
        r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{}}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      auth_request /_portcullis_verify;
      auth_request_set $auth_user $upstream_http_x_auth_request_user;
      auth_request_set $auth_email $upstream_http_x_auth_request_email;
      proxy_set_header X-User $auth_user;
      proxy_set_header X-Email $auth_email;
      proxy_set_header Authorization "";
      proxy_pass http://{backend_addr};
    }}
    location = /_portcullis_verify {{
      internal;
      proxy_pass http://{cp_addr}/verify;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Forwarded-Proto https;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Forwarded-Uri $request_uri;
    }}
  }}
}}
"#
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).expect("write nginx.conf");
    let proc = portcullis_tests::procs::Proc::spawn(
        std::process::Command::new("nginx")
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    let url = format!("http://127.0.0.1:{port}");
    portcullis_tests::eventually(Duration::from_secs(10), "nginx to listen", || {
        let url = url.clone();
        async move { http_client().get(&url).send().await.ok().map(|_| ()) }
    })
    .await;
    Nginx {
        proc,
        url,
        _dir: dir,
    }
}

#[tokio::test]
async fn nginx_auth_request_delegates_to_verify() {
    let fx = fixture().await;
    let backend = portcullis_tests::Backend::start("app").await;
    let nginx = nginx_forward_auth(&fx.cp, &backend.url).await;
    let t = exchange(&fx, &code_for(&fx, &fx.public_id).await).await;
    let at = t["access_token"].as_str().expect("at");
    let get = |host: &'static str, token: Option<&str>| {
        let mut req = http_client()
            .get(format!("{}/mcp", nginx.url))
            .header("host", host)
            .header("x-user", "forged-by-client");
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let resp = get("mcp.example.com", Some(at))
        .await
        .expect("through nginx");
    assert_eq!(resp.status(), 200);
    let seen: Value = resp.json().await.expect("backend json");
    assert_eq!(
        seen["headers"]["x-user"], "alice",
        "identity from /verify, not the client"
    );
    assert_eq!(seen["headers"]["x-email"], "alice@acme.example");
    assert!(
        seen["headers"].get("authorization").is_none(),
        "token not passed upstream"
    );
    assert_eq!(
        get("mcp.example.com", None)
            .await
            .expect("no token")
            .status(),
        401
    );
    assert_eq!(
        get("other.example.com", Some(at))
            .await
            .expect("other host")
            .status(),
        401,
        "a token for mcp.example.com does not open other.example.com"
    );
}

#[tokio::test]
async fn confidential_clients_authenticate_with_basic_or_post_and_wrong_secrets_fail() {
    let fx = fixture().await;
    let post_client = register(
        &fx.cp,
        json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "client_secret_post",
               "grant_types": ["authorization_code"]}),
    )
    .await;
    let id = post_client["client_id"].as_str().expect("id").to_owned();
    let secret = post_client["client_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let code = code_for(&fx, &id).await;
    let form = |secret: &str| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("client_id", id.clone()),
            ("client_secret", secret.to_owned()),
            ("code", code.clone()),
            ("redirect_uri", REDIRECT.to_owned()),
            ("code_verifier", VERIFIER.to_owned()),
        ]
    };
    let wrong = form("not-the-secret");
    let wrong: Vec<(&str, &str)> = wrong.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, body) = token(&fx.cp, &wrong, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    // A public-style request without any secret is refused for a confidential client.
    let (status, body) = token(
        &fx.cp,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &id),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    let right = form(&secret);
    let right: Vec<(&str, &str)> = right.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, body) = token(&fx.cp, &right, None).await;
    assert_eq!(status, 200, "client_secret_post: {body}");
    // The confidential fixture client uses HTTP Basic; sending both methods at once is refused.
    let code = code_for(&fx, &fx.confidential_id).await;
    let (status, body) = token(
        &fx.cp,
        &[
            ("grant_type", "authorization_code"),
            ("client_secret", &fx.confidential_secret),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
        Some((&fx.confidential_id, &fx.confidential_secret)),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let (status, body) = token(
        &fx.cp,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
        Some((&fx.confidential_id, &fx.confidential_secret)),
    )
    .await;
    assert_eq!(status, 200, "client_secret_basic: {body}");
}
