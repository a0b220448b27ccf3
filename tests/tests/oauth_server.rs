//! OAuth authorization server, without an upstream login: discovery, JWKS, dynamic client
//! registration (RFC 7591/7592), and every refusal `/authorize`, `/token`, `/revoke` and
//! `/introspect` must make before anyone logs in. Real control plane over real sockets.

use portcullis_tests::{ControlPlane, http_client};
use serde_json::{Value, json};

async fn register(cp: &ControlPlane, body: Value) -> reqwest::Response {
    http_client()
        .post(format!("{}/register", cp.http))
        .json(&body)
        .send()
        .await
        .expect("register")
}

async fn public_client(cp: &ControlPlane) -> (String, String) {
    let redirect = "http://127.0.0.1:53999/callback".to_owned();
    let resp = register(
        cp,
        json!({"redirect_uris": [redirect], "token_endpoint_auth_method": "none",
               "grant_types": ["authorization_code", "refresh_token"], "client_name": "Test app"}),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let v: Value = resp.json().await.expect("json");
    (
        v["client_id"].as_str().expect("client_id").to_owned(),
        redirect,
    )
}

fn location(resp: &reqwest::Response) -> url::Url {
    let loc = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("Location header");
    url::Url::parse(loc).expect("absolute Location")
}

fn query(u: &url::Url, key: &str) -> Option<String> {
    u.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

#[tokio::test]
async fn metadata_advertises_what_mcp_clients_need() {
    let cp = ControlPlane::start().await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server/mcp",
    ] {
        let resp = http_client()
            .get(format!("{}{path}", cp.http))
            .send()
            .await
            .expect("metadata");
        assert_eq!(resp.status(), 200, "{path}");
        let m: Value = resp.json().await.expect("json");
        assert_eq!(m["issuer"], cp.http.as_str(), "{path}");
        assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(m["response_types_supported"], json!(["code"]));
        assert_eq!(
            m["token_endpoint_auth_methods_supported"],
            json!(["client_secret_basic", "client_secret_post", "none"])
        );
        assert_eq!(m["client_id_metadata_document_supported"], true);
        assert_eq!(m["authorization_response_iss_parameter_supported"], true);
        for ep in [
            "authorization_endpoint",
            "token_endpoint",
            "registration_endpoint",
            "revocation_endpoint",
            "introspection_endpoint",
            "jwks_uri",
        ] {
            assert!(
                m[ep].as_str().is_some_and(|u| u.starts_with(&cp.http)),
                "{ep} missing in {m}"
            );
        }
    }
}

#[tokio::test]
async fn jwks_publishes_an_es256_public_key_only() {
    let cp = ControlPlane::start().await;
    for path in ["/jwks", "/.well-known/jwks.json"] {
        let v: Value = http_client()
            .get(format!("{}{path}", cp.http))
            .send()
            .await
            .expect("jwks")
            .json()
            .await
            .expect("json");
        let keys = v["keys"].as_array().expect("keys");
        assert_eq!(keys.len(), 1, "{v}");
        assert_eq!(keys[0]["kty"], "EC");
        assert_eq!(keys[0]["crv"], "P-256");
        assert_eq!(keys[0]["alg"], "ES256");
        assert!(keys[0]["kid"].as_str().is_some());
        assert!(keys[0].get("d").is_none(), "private part leaked: {v}");
    }
    // Rotation keeps the old key published next to the new one.
    let rotated: Value = http_client()
        .post(format!("{}/api/v1/oauth/keys/rotate", cp.http))
        .bearer_auth(&cp.admin_token)
        .send()
        .await
        .expect("rotate")
        .json()
        .await
        .expect("json");
    let v: Value = http_client()
        .get(format!("{}/jwks", cp.http))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    let kids: Vec<&str> = v["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(kids.len(), 2, "{v}");
    assert_eq!(
        kids[0],
        rotated["kid"].as_str().expect("kid"),
        "newest first"
    );
}

#[tokio::test]
async fn dynamic_registration_validates_and_manages_clients() {
    let cp = ControlPlane::start().await;
    let resp = register(
        &cp,
        json!({"redirect_uris": ["https://app.example.com/cb", "http://127.0.0.1:8765/cb"],
               "client_name": "Confidential", "grant_types": ["authorization_code", "refresh_token"]}),
    )
    .await;
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let reg: Value = resp.json().await.expect("json");
    assert!(reg["client_secret"].as_str().is_some_and(|s| s.len() >= 40));
    assert_eq!(reg["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(reg["client_name"], "Confidential");
    assert_eq!(reg["client_secret_expires_at"], 0);
    let reg_uri = reg["registration_client_uri"]
        .as_str()
        .expect("uri")
        .to_owned();
    let reg_token = reg["registration_access_token"]
        .as_str()
        .expect("rat")
        .to_owned();

    // RFC 7592: read needs the registration access token, and never shows the secret again.
    let unauth = http_client().get(&reg_uri).send().await.expect("read");
    assert_eq!(unauth.status(), 401);
    let read: Value = http_client()
        .get(&reg_uri)
        .bearer_auth(&reg_token)
        .send()
        .await
        .expect("read")
        .json()
        .await
        .expect("json");
    assert_eq!(read["client_id"], reg["client_id"]);
    assert!(read.get("client_secret").is_none());
    let updated = http_client()
        .put(&reg_uri)
        .bearer_auth(&reg_token)
        .json(
            &json!({"redirect_uris": ["https://app.example.com/other"], "client_name": "Renamed",
                      "grant_types": ["authorization_code"]}),
        )
        .send()
        .await
        .expect("update");
    assert_eq!(updated.status(), 200);
    let updated: Value = updated.json().await.expect("json");
    assert_eq!(
        updated["redirect_uris"],
        json!(["https://app.example.com/other"])
    );

    // Bad metadata: each refused with the RFC 7591 error code, nothing stored.
    let before: Value = http_client()
        .get(format!("{}/api/v1/oauth/clients", cp.http))
        .bearer_auth(&cp.admin_token)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    for (body, code) in [
        (
            json!({"redirect_uris": ["http://evil.example.com/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://a.example.com/cb#frag"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["javascript:alert(1)"]}),
            "invalid_redirect_uri",
        ),
        (json!({"redirect_uris": []}), "invalid_redirect_uri"),
        (
            json!({"redirect_uris": ["https://a.example.com/cb"], "token_endpoint_auth_method": "private_key_jwt"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://a.example.com/cb"], "grant_types": ["password"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://a.example.com/cb"], "application_type": "desktop"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://a.example.com/cb"], "response_types": ["token"]}),
            "invalid_client_metadata",
        ),
    ] {
        let resp = register(&cp, body.clone()).await;
        assert_eq!(resp.status(), 400, "{body}");
        let e: Value = resp.json().await.expect("json");
        assert_eq!(e["error"], code, "{body}: {e}");
        assert!(
            e["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
    }
    let after: Value = http_client()
        .get(format!("{}/api/v1/oauth/clients", cp.http))
        .bearer_auth(&cp.admin_token)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(before, after, "a refused registration stored something");

    let deleted = http_client()
        .delete(&reg_uri)
        .bearer_auth(&reg_token)
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), 204);
    let gone = http_client()
        .get(&reg_uri)
        .bearer_auth(&reg_token)
        .send()
        .await
        .expect("read");
    assert_eq!(gone.status(), 401);
}

#[tokio::test]
async fn registration_can_require_an_initial_access_token() {
    let cp = ControlPlane::start_args(vec![
        "--oauth-registration-token".into(),
        "initial-secret-token".into(),
    ])
    .await;
    let body = json!({"redirect_uris": ["https://a.example.com/cb"]});
    let resp = register(&cp, body.clone()).await;
    assert_eq!(resp.status(), 401);
    let ok = http_client()
        .post(format!("{}/register", cp.http))
        .bearer_auth("initial-secret-token")
        .json(&body)
        .send()
        .await
        .expect("register");
    assert_eq!(ok.status(), 201);
}

async fn authorize(cp: &ControlPlane, params: &[(&str, &str)]) -> reqwest::Response {
    let mut url = url::Url::parse(&format!("{}/authorize", cp.http)).expect("url");
    url.query_pairs_mut().extend_pairs(params);
    http_client().get(url).send().await.expect("authorize")
}

#[tokio::test]
async fn authorize_refuses_missing_or_plain_pkce_with_iss_and_state() {
    let cp = ControlPlane::start().await;
    let (client_id, redirect) = public_client(&cp).await;
    let base = [
        ("response_type", "code"),
        ("client_id", client_id.as_str()),
        ("redirect_uri", redirect.as_str()),
        ("state", "st-123"),
    ];
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "plain"),
        ],
        vec![("code_challenge", CHALLENGE)],
        vec![
            ("code_challenge", "short"),
            ("code_challenge_method", "S256"),
        ],
    ];
    for extra in cases {
        let mut params = base.to_vec();
        params.extend(extra.iter().copied());
        let resp = authorize(&cp, &params).await;
        assert_eq!(resp.status(), 303, "{extra:?}");
        let loc = location(&resp);
        assert!(loc.as_str().starts_with(&redirect), "{loc}");
        assert_eq!(
            query(&loc, "error").as_deref(),
            Some("invalid_request"),
            "{extra:?}"
        );
        assert_eq!(query(&loc, "state").as_deref(), Some("st-123"));
        assert_eq!(query(&loc, "iss").as_deref(), Some(cp.http.as_str()));
        assert!(query(&loc, "code").is_none());
    }
    // Wrong response_type is its own error.
    let mut params = base.to_vec();
    params.extend([
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]);
    params[0] = ("response_type", "token");
    let loc = location(&authorize(&cp, &params).await);
    assert_eq!(
        query(&loc, "error").as_deref(),
        Some("unsupported_response_type")
    );
}

#[tokio::test]
async fn authorize_never_redirects_to_an_unregistered_uri_and_escapes_errors() {
    let cp = ControlPlane::start().await;
    let (client_id, _) = public_client(&cp).await;
    let xss = "https://evil.example.com/<script>alert(1)</script>";
    for (cid, redirect) in [
        (client_id.as_str(), xss),
        (
            client_id.as_str(),
            "http://127.0.0.1:53999/callback/../evil",
        ),
        (
            "<img src=x onerror=alert(1)>",
            "http://127.0.0.1:53999/callback",
        ),
    ] {
        let resp = authorize(
            &cp,
            &[
                ("response_type", "code"),
                ("client_id", cid),
                ("redirect_uri", redirect),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
                ("state", "<b>x</b>"),
            ],
        )
        .await;
        assert_eq!(resp.status(), 400, "{cid} {redirect}");
        assert!(
            resp.headers().get("location").is_none(),
            "open redirect to {redirect}"
        );
        assert_eq!(resp.headers()["x-frame-options"], "DENY");
        assert!(
            resp.headers()["content-security-policy"]
                .to_str()
                .expect("csp")
                .contains("frame-ancestors 'none'")
        );
        let body = resp.text().await.expect("body");
        assert!(!body.contains("<script>"), "unescaped: {body}");
        assert!(!body.contains("<img"), "unescaped: {body}");
        assert!(!body.contains("<b>x</b>"), "unescaped: {body}");
    }
}

#[tokio::test]
async fn authorize_refuses_unknown_resources_with_invalid_target() {
    let cp = ControlPlane::start().await;
    let (client_id, redirect) = public_client(&cp).await;
    let resp = authorize(
        &cp,
        &[
            ("response_type", "code"),
            ("client_id", client_id.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("resource", "https://not-ours.example.com/mcp"),
        ],
    )
    .await;
    let loc = location(&resp);
    assert_eq!(query(&loc, "error").as_deref(), Some("invalid_target"));
    assert_eq!(query(&loc, "iss").as_deref(), Some(cp.http.as_str()));
}

#[tokio::test]
async fn metadata_document_client_ids_on_private_addresses_are_refused() {
    let cp = ControlPlane::start().await;
    for cid in [
        "https://127.0.0.1/client.json",
        "https://localhost:8443/oauth/client",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/client",
    ] {
        let resp = authorize(
            &cp,
            &[
                ("response_type", "code"),
                ("client_id", cid),
                ("redirect_uri", "http://127.0.0.1:5000/cb"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
            ],
        )
        .await;
        assert_eq!(resp.status(), 400, "{cid}");
        assert!(resp.headers().get("location").is_none());
        let body = resp.text().await.expect("body");
        assert!(
            body.contains("private, loopback or link-local"),
            "{cid}: {body}"
        );
    }
}

#[tokio::test]
async fn token_endpoint_errors_follow_rfc_6749() {
    let cp = ControlPlane::start().await;
    let (client_id, redirect) = public_client(&cp).await;
    let form = |pairs: &[(&str, &str)]| {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
    };
    let post = |body: String| {
        http_client()
            .post(format!("{}/token", cp.http))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    // Unknown code.
    let resp = post(form(&[
        ("grant_type", "authorization_code"),
        ("client_id", &client_id),
        ("code", "not-a-code"),
        ("redirect_uri", &redirect),
        (
            "code_verifier",
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        ),
    ]))
    .await
    .expect("token");
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let e: Value = resp.json().await.expect("json");
    assert_eq!(e["error"], "invalid_grant");
    // Unknown client.
    let resp = post(form(&[
        ("grant_type", "authorization_code"),
        ("client_id", "nope"),
        ("code", "x"),
    ]))
    .await
    .expect("token");
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.json::<Value>().await.expect("json")["error"],
        "invalid_client"
    );
    // Unsupported grant.
    let resp = post(form(&[
        ("grant_type", "password"),
        ("client_id", &client_id),
    ]))
    .await
    .expect("token");
    assert_eq!(
        resp.json::<Value>().await.expect("json")["error"],
        "unsupported_grant_type"
    );
    // Bogus refresh token.
    let resp = post(form(&[
        ("grant_type", "refresh_token"),
        ("client_id", &client_id),
        ("refresh_token", "abc.def"),
    ]))
    .await
    .expect("token");
    assert_eq!(
        resp.json::<Value>().await.expect("json")["error"],
        "invalid_grant"
    );
    // JSON body is not accepted.
    let resp = http_client()
        .post(format!("{}/token", cp.http))
        .json(&json!({"grant_type": "authorization_code"}))
        .send()
        .await
        .expect("token");
    assert_eq!(
        resp.json::<Value>().await.expect("json")["error"],
        "invalid_request"
    );
}

#[tokio::test]
async fn forged_tokens_are_inactive_at_introspection() {
    let cp = ControlPlane::start().await;
    let reg: Value = register(&cp, json!({"redirect_uris": ["https://rs.example.com/cb"]}))
        .await
        .json()
        .await
        .expect("json");
    let id = reg["client_id"].as_str().expect("id");
    let secret = reg["client_secret"].as_str().expect("secret");
    use base64::Engine as _;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let claims = json!({"iss": cp.http, "sub": "gh:1", "aud": ["https://x"], "exp": 4102444800i64,
                        "iat": 1, "nbf": 1, "jti": "j", "client_id": id, "scope": "", "auth_time": 1,
                        "idp": "gh", "login": "x", "groups": []});
    let none_token = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "at+jwt"})),
        b64(&claims)
    );
    let hs_token = format!(
        "{}.{}.c2lnbmF0dXJl",
        b64(&json!({"alg": "HS256", "typ": "at+jwt", "kid": "k"})),
        b64(&claims)
    );
    for token in [none_token.as_str(), hs_token.as_str(), "garbage"] {
        let resp = http_client()
            .post(format!("{}/introspect", cp.http))
            .basic_auth(id, Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
            .send()
            .await
            .expect("introspect");
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.json::<Value>().await.expect("json"),
            json!({"active": false}),
            "{token}"
        );
    }
    // Introspection needs client authentication.
    let resp = http_client()
        .post(format!("{}/introspect", cp.http))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=x")
        .send()
        .await
        .expect("introspect");
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn cli_administers_idps_rules_clients_and_setup() {
    let cp = ControlPlane::start().await;
    let out = cp.cli_ok(&[
        "oauth",
        "idp",
        "add",
        "corp",
        "--kind",
        "github",
        "--client-id",
        "Iv1.abc",
        "--client-secret",
        "very-secret-value",
        "--base-url",
        "https://ghe.example.com",
    ]);
    assert!(out.contains("corp"), "{out}");
    let list = cp.cli_ok(&["-o", "json", "oauth", "idp", "list"]);
    assert!(!list.contains("very-secret-value"), "secret leaked: {list}");
    let v: Value = serde_json::from_str(&list).expect("json");
    assert_eq!(
        v["items"][0]["api_url"], "https://ghe.example.com/api/v3",
        "GHES API default"
    );
    // The secret is sealed at rest too: the raw store never holds it in clear.
    let rest: Value = http_client()
        .get(format!("{}/api/v1/oauth/idps", cp.http))
        .bearer_auth(&cp.admin_token)
        .send()
        .await
        .expect("idps")
        .json()
        .await
        .expect("json");
    assert!(!rest.to_string().contains("very-secret-value"));

    // Refusals name the field and store nothing.
    let bad = cp.cli(
        &cp.admin_token,
        &[
            "oauth",
            "idp",
            "add",
            "x",
            "--kind",
            "oidc",
            "--client-id",
            "a",
            "--client-secret",
            "b",
        ],
    );
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("base_url"),
        "{bad:?}"
    );
    let bad = cp.cli(&cp.admin_token, &["oauth", "rule", "add", "--scope", "mcp"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("users"),
        "{bad:?}"
    );
    let rules = cp.cli_ok(&["-o", "json", "oauth", "rule", "list"]);
    assert_eq!(
        serde_json::from_str::<Value>(&rules).expect("json")["items"],
        json!([])
    );

    let rule: Value = serde_json::from_str(&cp.cli_ok(&[
        "-o", "json", "oauth", "rule", "add", "--group", "acme/ops", "--scope", "mcp",
    ]))
    .expect("json");
    assert!(rule["id"].as_str().is_some_and(|i| i.starts_with("rule_")));
    // Scopes named in rules are advertised.
    let m: Value = http_client()
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            cp.http
        ))
        .send()
        .await
        .expect("metadata")
        .json()
        .await
        .expect("json");
    assert!(
        m["scopes_supported"]
            .as_array()
            .expect("scopes")
            .contains(&json!("mcp"))
    );

    let client: Value = serde_json::from_str(&cp.cli_ok(&[
        "-o",
        "json",
        "oauth",
        "client",
        "register",
        "--redirect-uri",
        "https://app.example.com/cb",
        "--name",
        "App",
    ]))
    .expect("json");
    assert!(
        client["client_secret"]
            .as_str()
            .is_some_and(|s| s.len() > 30)
    );
    let clients = cp.cli_ok(&["-o", "json", "oauth", "client", "list"]);
    assert!(clients.contains(client["client_id"].as_str().expect("id")));
    assert!(!clients.contains(client["client_secret"].as_str().expect("secret")));

    let setup: Value =
        serde_json::from_str(&cp.cli_ok(&["-o", "json", "oauth", "setup", "auth.example.com"]))
            .expect("json");
    assert_eq!(setup["hostname"], "auth.example.com");
    assert_eq!(setup["target_url"], cp.http.as_str());
    assert!(
        setup["warning"]
            .as_str()
            .is_some_and(|w| w.contains("--oauth-issuer https://auth.example.com"))
    );
    let proxy: Value = http_client()
        .get(format!("{}/api/v1/proxy/targets/auth.example.com", cp.http))
        .bearer_auth(&cp.admin_token)
        .send()
        .await
        .expect("proxy")
        .json()
        .await
        .expect("json");
    assert_eq!(proxy["enable_https"], true);

    let metrics: Value =
        serde_json::from_str(&cp.cli_ok(&["-o", "json", "oauth", "metrics"])).expect("json");
    assert_eq!(metrics["clients"], 1);
    assert_eq!(metrics["issuer"], cp.http.as_str());
    let kid = cp.cli_ok(&["oauth", "rotate-keys"]);
    assert!(kid.starts_with("new signing key "), "{kid}");

    // Non-admin tokens cannot administer OAuth.
    let user: Value = http_client()
        .post(format!("{}/api/v1/tokens", cp.http))
        .bearer_auth(&cp.admin_token)
        .json(&json!({"name": "u", "scope": "user"}))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let user_secret = user["secret"].as_str().expect("secret");
    let denied = cp.cli(user_secret, &["oauth", "client", "list"]);
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("admin"),
        "{denied:?}"
    );
}

#[tokio::test]
async fn per_proxy_settings_choose_providers_github_app_and_metadata() {
    let cp = ControlPlane::start().await;
    for (name, kind, base) in [
        ("gh", "github", "https://github.example.com"),
        ("corp", "oidc", "https://sso.example.com"),
    ] {
        cp.cli_ok(&[
            "oauth",
            "idp",
            "add",
            name,
            "--kind",
            kind,
            "--client-id",
            &format!("{name}-id"),
            "--client-secret",
            "s",
            "--base-url",
            base,
        ]);
    }
    cp.cli_ok(&["proxy", "create", "mcp.example.com", "http://127.0.0.1:9"]);
    let (client_id, redirect) = public_client(&cp).await;
    let start = |cp: &ControlPlane| {
        let params = [
            ("response_type", "code"),
            ("client_id", client_id.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("resource", "https://mcp.example.com/mcp"),
        ];
        let mut url = url::Url::parse(&format!("{}/authorize", cp.http)).expect("url");
        url.query_pairs_mut().extend_pairs(params);
        http_client().get(url).send()
    };
    // Two providers and no settings: the user chooses.
    let resp = start(&cp).await.expect("authorize");
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["set-cookie"]
            .to_str()
            .expect("cookie")
            .starts_with("__Host-portcullis_login=")
    );
    let page = resp.text().await.expect("body");
    assert!(page.contains("gh") && page.contains("corp"), "{page}");

    // The proxy allows only GitHub, with its own app: straight to GitHub with that client id.
    cp.cli_ok(&[
        "oauth",
        "proxy",
        "set",
        "mcp.example.com",
        "--idp",
        "gh",
        "--github-client-id",
        "proxy-app",
        "--github-client-secret",
        "proxy-secret",
    ]);
    let resp = start(&cp).await.expect("authorize");
    assert_eq!(resp.status(), 303);
    let loc = location(&resp);
    assert!(
        loc.as_str()
            .starts_with("https://github.example.com/login/oauth/authorize?"),
        "{loc}"
    );
    assert_eq!(query(&loc, "client_id").as_deref(), Some("proxy-app"));
    assert_eq!(
        query(&loc, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(
        query(&loc, "redirect_uri"),
        Some(format!("{}/callback/gh", cp.http))
    );
    let shown = cp.cli_ok(&["-o", "json", "oauth", "proxy", "show", "mcp.example.com"]);
    assert!(!shown.contains("proxy-secret"), "{shown}");

    // Metadata overrides apply to requests that came through that proxy only.
    cp.cli_ok(&[
        "oauth",
        "proxy",
        "set",
        "mcp.example.com",
        "--metadata-json",
        r#"{"scopes_supported":["mcp:tools"],"service_documentation":"https://docs.example.com"}"#,
    ]);
    let get_meta = |host: Option<&'static str>| {
        let mut req = http_client().get(format!(
            "{}/.well-known/oauth-authorization-server",
            cp.http
        ));
        if let Some(h) = host {
            req = req.header("x-forwarded-host", h);
        }
        req.send()
    };
    let m: Value = get_meta(Some("mcp.example.com"))
        .await
        .expect("meta")
        .json()
        .await
        .expect("json");
    assert_eq!(m["scopes_supported"], json!(["mcp:tools"]));
    assert_eq!(m["service_documentation"], "https://docs.example.com");
    assert_eq!(m["issuer"], cp.http.as_str());
    let plain: Value = get_meta(None)
        .await
        .expect("meta")
        .json()
        .await
        .expect("json");
    assert!(plain.get("service_documentation").is_none());

    // Endpoint fields cannot be redirected elsewhere, and unknown providers are refused.
    let bad = cp.cli(
        &cp.admin_token,
        &[
            "oauth",
            "proxy",
            "set",
            "mcp.example.com",
            "--metadata-json",
            r#"{"token_endpoint":"https://evil.example.com/t"}"#,
        ],
    );
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("token_endpoint"),
        "{bad:?}"
    );
    let bad = cp.cli(
        &cp.admin_token,
        &["oauth", "proxy", "set", "mcp.example.com", "--idp", "nope"],
    );
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("idps"),
        "{bad:?}"
    );
    let m: Value = get_meta(Some("mcp.example.com"))
        .await
        .expect("meta")
        .json()
        .await
        .expect("json");
    assert_eq!(
        m["token_endpoint"],
        format!("{}/token", cp.http),
        "refused write changed nothing"
    );

    cp.cli_ok(&["oauth", "proxy", "clear", "mcp.example.com"]);
    let resp = start(&cp).await.expect("authorize");
    assert_eq!(resp.status(), 200, "back to the chooser");
}

#[tokio::test]
async fn openapi_documents_the_oauth_admin_api() {
    let cp = ControlPlane::start().await;
    let doc: Value = http_client()
        .get(format!("{}/openapi.json", cp.http))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    for path in [
        "/api/v1/oauth/idps",
        "/api/v1/oauth/rules",
        "/api/v1/oauth/scopes",
        "/api/v1/oauth/scopes/{scope}",
        "/api/v1/oauth/clients",
        "/api/v1/oauth/sessions",
        "/api/v1/oauth/proxies/{hostname}",
        "/api/v1/proxy/targets",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    for schema in ["ScopeView", "ScopeDescriptionInput"] {
        assert!(
            doc["components"]["schemas"].get(schema).is_some(),
            "{schema} missing"
        );
    }
}

#[tokio::test]
async fn rs256_is_selectable_for_new_keys() {
    let cp = ControlPlane::start_args(vec!["--oauth-signing-alg".into(), "RS256".into()]).await;
    let v: Value = http_client()
        .get(format!("{}/jwks", cp.http))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    assert_eq!(v["keys"][0]["kty"], "RSA");
    assert_eq!(v["keys"][0]["alg"], "RS256");
    assert!(
        v["keys"][0].get("d").is_none() && v["keys"][0].get("p").is_none(),
        "private part leaked: {v}"
    );
}

/// The REST twins of `oauth client register` and `oauth setup`: an admin registers past the
/// initial-access-token gate (secret in the 201 only), a bad redirect is named and adds
/// nothing, no token is a 401; setup creates the HTTPS proxy once and names a duplicate.
#[tokio::test]
async fn admins_register_clients_and_publish_the_endpoints_over_rest() {
    let cp = ControlPlane::start_args(vec![
        "--oauth-registration-token".into(),
        "initial-secret-token".into(),
    ])
    .await;
    let http = http_client();
    let post = |path: &str, body: Value| {
        http.post(format!("{}{path}", cp.http))
            .bearer_auth(&cp.admin_token)
            .json(&body)
            .send()
    };
    let clients = || async {
        http.get(format!("{}/api/v1/oauth/clients", cp.http))
            .bearer_auth(&cp.admin_token)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };

    let bad = post(
        "/api/v1/oauth/clients",
        json!({"client_name": "ci", "redirect_uris": ["not a url"]}),
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["field"], "redirect_uris", "{body}");
    assert_eq!(clients().await, json!([]), "the refusal added nothing");
    let anon = http_client()
        .post(format!("{}/api/v1/oauth/clients", cp.http))
        .json(&json!({"redirect_uris": ["https://ci.example.test/cb"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);

    let ok = post(
        "/api/v1/oauth/clients",
        json!({"client_name": "ci", "redirect_uris": ["https://ci.example.test/cb"]}),
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), 201);
    let c: Value = ok.json().await.unwrap();
    assert!(
        c["client_secret"].as_str().is_some_and(|s| s.len() >= 20),
        "{c}"
    );
    let listed = clients().await;
    assert_eq!(listed[0]["client_id"], c["client_id"], "{listed}");
    assert_eq!(listed[0]["admin_registered"], true, "{listed}");
    assert!(
        !listed
            .to_string()
            .contains(c["client_secret"].as_str().unwrap()),
        "the list never shows the secret: {listed}"
    );

    let setup = post(
        "/api/v1/oauth/setup",
        json!({"hostname": "auth.localhost", "target_url": "http://127.0.0.1:9"}),
    )
    .await
    .unwrap();
    assert_eq!(setup.status(), 201);
    let r: Value = setup.json().await.unwrap();
    assert_eq!(r["proxy"]["hostname"], "auth.localhost", "{r}");
    assert_eq!(r["proxy"]["enable_https"], true, "{r}");
    assert!(
        r["warning"]
            .as_str()
            .is_some_and(|w| w.contains("--oauth-issuer https://auth.localhost")),
        "{r}"
    );
    let again = post("/api/v1/oauth/setup", json!({"hostname": "auth.localhost"}))
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
}
