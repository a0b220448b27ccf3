//! Edge OAuth end to end: the CLI protects a proxy, the control plane ships the policy,
//! keys and revocations in snapshots, and a real data plane refuses, answers metadata and
//! forwards verified identity to a real backend. Tokens come from the control plane's own
//! authorization server after a login through the GitHub-compatible server.

use std::time::Duration;

use portcullis_tests::browser::{self, alice, github_login};
use portcullis_tests::github::GithubServer;
use portcullis_tests::{Backend, ControlPlane, DataPlane, eventually, http_client, raw_request};
use serde_json::{Value, json};

const REDIRECT: &str = "http://127.0.0.1:53998/callback";

/// Waits until `dp` serves the control plane's newest config.
async fn synced(cp: &ControlPlane, dp: &DataPlane) {
    let version = cp.version().await;
    cp.wait_applied(&dp.node_id, version).await;
}

/// GET through the data plane with extra headers.
async fn get(
    dp: &DataPlane,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = http_client()
        .get(format!("{}{path}", dp.http))
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request through data plane")
}

/// GETs `/tools` on `host` until the data plane answers 200: until it has applied the
/// snapshot with the proxy's protection (signing keys exist before any token: `oauth_keys.rs`).
async fn once_accepted(dp: &DataPlane, host: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    eventually(
        Duration::from_secs(20),
        "data plane accepts the token",
        || async move {
            let resp = get(dp, host, "/tools", headers).await;
            (resp.status() == 200).then_some(resp)
        },
    )
    .await
}

fn challenge(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn forward_mode_refuses_without_a_token_and_serves_metadata() {
    let cp = ControlPlane::start().await;
    let backend = Backend::start("api").await;
    let dp = DataPlane::start(&cp, "dp-edge-1").await;
    cp.cli_ok(&["proxy", "create", "api.test", &backend.url]);
    let shown = cp.cli_ok(&[
        "-o",
        "json",
        "proxy",
        "auth",
        "enable",
        "api.test",
        "--auth-host",
        "auth.test",
        "--mode",
        "forward",
        "--scope",
        "mcp",
        "--public-path",
        "/health",
    ]);
    let shown: Value = serde_json::from_str(&shown).expect("json");
    assert_eq!(shown["mode"], "forward");
    assert_eq!(shown["required_scopes"], json!(["mcp"]));
    let shown: Value =
        serde_json::from_str(&cp.cli_ok(&["-o", "json", "proxy", "auth", "show", "api.test"]))
            .expect("json");
    assert_eq!(shown["enabled"], true);
    assert_eq!(shown["auth_host"], "auth.test");
    assert_eq!(shown["public_paths"], json!(["/health"]));
    // Bad input names the field and changes nothing.
    let out = cp.cli(
        &cp.admin_token,
        &[
            "proxy",
            "auth",
            "enable",
            "api.test",
            "--auth-host",
            "auth.test",
            "--mode",
            "forward",
            "--public-path",
            "/",
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("public_paths"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A route attached to the protected proxy is protected the same way.
    cp.cli_ok(&[
        "route",
        "create",
        "/routed",
        "url",
        &backend.url,
        "--proxy",
        "api.test",
    ]);
    synced(&cp, &dp).await;

    let expected = "Bearer resource_metadata=\"http://api.test/.well-known/oauth-protected-resource\", scope=\"mcp\"";
    for path in ["/", "/secret?x=1", "/routed/x", "/healthz"] {
        let resp = get(&dp, "api.test", path, &[("x-forwarded-user", "admin")]).await;
        assert_eq!(resp.status(), 401, "{path}");
        assert_eq!(challenge(&resp), expected, "{path}");
        let body: Value = resp.json().await.expect("json body");
        assert_eq!(body["error"], "invalid_token");
    }
    let resp = get(
        &dp,
        "api.test",
        "/",
        &[("authorization", "Bearer not.a.jwt")],
    )
    .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(
        challenge(&resp),
        format!("{expected}, error=\"invalid_token\", error_description=\"malformed token\"")
    );

    let resp = get(
        &dp,
        "api.test",
        "/.well-known/oauth-protected-resource",
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let doc: Value = resp.json().await.expect("metadata");
    assert_eq!(
        doc,
        json!({
            "resource": "http://api.test",
            "authorization_servers": [cp.http],
            "scopes_supported": ["mcp"],
            "bearer_methods_supported": ["header"],
        })
    );
    let doc: Value = get(
        &dp,
        "api.test",
        "/.well-known/oauth-protected-resource/mcp",
        &[],
    )
    .await
    .json()
    .await
    .expect("metadata");
    assert_eq!(doc["resource"], "http://api.test/mcp");

    // Public paths reach the backend, without forged identity or the client's token.
    let resp = get(
        &dp,
        "api.test",
        "/health",
        &[
            ("x-forwarded-user", "admin"),
            ("authorization", "Bearer junk"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let seen: Value = resp.json().await.expect("echo");
    assert!(seen["headers"].get("x-forwarded-user").is_none(), "{seen}");
    assert!(seen["headers"].get("authorization").is_none(), "{seen}");
    // Nothing else ever reached the backend.
    assert_eq!(backend.received(), ["/health"]);

    cp.cli_ok(&["proxy", "auth", "disable", "api.test"]);
    synced(&cp, &dp).await;
    assert_eq!(get(&dp, "api.test", "/secret", &[]).await.status(), 200);
    let shown = cp.cli_ok(&["proxy", "auth", "show", "api.test"]);
    assert!(shown.contains("not protected"), "{shown}");
}

#[tokio::test]
async fn passthrough_forwards_without_identity_and_strips_forged_headers() {
    let cp = ControlPlane::start().await;
    let backend = Backend::start("app").await;
    let dp = DataPlane::start(&cp, "dp-edge-2").await;
    cp.cli_ok(&["proxy", "create", "app.test", &backend.url]);
    cp.cli_ok(&[
        "proxy",
        "auth",
        "enable",
        "app.test",
        "--auth-host",
        "auth.test",
        "--mode",
        "passthrough",
    ]);
    synced(&cp, &dp).await;
    let resp = get(
        &dp,
        "app.test",
        "/page",
        &[
            ("x-forwarded-user", "admin"),
            ("x-forwarded-email", "root@evil.example"),
            ("x-forwarded-groups", "admins"),
            ("x-auth-request-user", "admin"),
            ("authorization", "Bearer forged.token.value"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let seen: Value = resp.json().await.expect("echo");
    for h in [
        "x-forwarded-user",
        "x-forwarded-email",
        "x-forwarded-groups",
        "x-forwarded-sub",
        "x-auth-request-user",
        "authorization",
    ] {
        assert!(
            seen["headers"].get(h).is_none(),
            "{h} reached the backend: {seen}"
        );
    }
    assert_eq!(backend.received(), ["/page"]);
}

// === Real tokens from the control plane ===

struct Login {
    cp: ControlPlane,
    _github: GithubServer,
    client_id: String,
}

async fn login_fixture() -> Login {
    let cp = ControlPlane::start().await;
    let github = github_login(&cp, vec![alice()]).await;
    let resp = http_client()
        .post(format!("{}/register", cp.http))
        .json(
            &json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
                      "grant_types": ["authorization_code"], "client_name": "Edge test"}),
        )
        .send()
        .await
        .expect("register");
    assert_eq!(resp.status(), 201);
    let client: Value = resp.json().await.expect("json");
    Login {
        cp,
        _github: github,
        client_id: client["client_id"].as_str().expect("client_id").to_owned(),
    }
}

/// `/authorize` → GitHub → `/callback` → consent → `/token`: an access token for
/// `resource`, exactly as an MCP client gets one.
async fn access_token(l: &Login, resource: &str) -> String {
    let (authorize, token) = (
        format!("{}/authorize", l.cp.http),
        format!("{}/token", l.cp.http),
    );
    browser::access_token(&l.cp, &authorize, &token, &l.client_id, REDIRECT, resource).await
}

#[tokio::test]
async fn control_plane_tokens_are_accepted_bound_to_their_resource_and_revocable() {
    let l = login_fixture().await;
    let cp = &l.cp;
    let backend = Backend::start("mcp").await;
    let dp = DataPlane::start(cp, "dp-edge-3").await;
    for host in ["mcp.example.com", "other.example.com"] {
        cp.cli_ok(&["proxy", "create", host, &backend.url]);
        cp.enable_forward_auth(host, "auth.example.com", Some("mcp"));
    }
    let token = access_token(&l, "https://mcp.example.com").await;
    let bearer = format!("Bearer {token}");
    // Wait for the snapshot with the proxy's protection.
    let resp = once_accepted(
        &dp,
        "mcp.example.com",
        &[
            ("authorization", &bearer),
            ("x-forwarded-user", "mallory"),
            ("x-auth-user", "mallory"),
        ],
    )
    .await;
    let seen: Value = resp.json().await.expect("echo");
    let headers = &seen["headers"];
    assert!(
        headers.get("authorization").is_none(),
        "token passed through: {seen}"
    );
    assert_eq!(headers["x-forwarded-user"], "alice");
    assert_eq!(headers["x-auth-user"], "alice");
    assert!(
        headers["x-auth-subject"]
            .as_str()
            .is_some_and(|s| s.starts_with("github:"))
    );
    assert!(
        headers["x-auth-client-id"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
    );
    assert!(headers.get("x-auth-scopes").is_some());
    assert_eq!(headers["x-forwarded-email"], "alice@acme.example");
    assert!(
        headers["x-forwarded-sub"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{seen}"
    );
    assert!(
        headers["x-forwarded-groups"]
            .as_str()
            .is_some_and(|g| g.split(',').any(|g| g == "acme")),
        "{seen}"
    );

    // The same token at another protected resource: wrong audience.
    let resp = get(
        &dp,
        "other.example.com",
        "/tools",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(resp.status(), 401);
    assert!(
        challenge(&resp).ends_with(
            "error=\"invalid_token\", error_description=\"token is not for this resource\""
        ),
        "{}",
        challenge(&resp)
    );
    assert_eq!(backend.received(), ["/tools"]);

    // Revoked at the authorization server: refused once the next snapshot arrives.
    let resp = http_client()
        .post(format!("{}/revoke", cp.http))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("client_id={}&token={token}", l.client_id))
        .send()
        .await
        .expect("revoke");
    assert_eq!(resp.status(), 200);
    let resp = eventually(
        Duration::from_secs(20),
        "data plane refuses the revoked token",
        || {
            let (dp, bearer) = (&dp, bearer.clone());
            async move {
                let resp = get(
                    dp,
                    "mcp.example.com",
                    "/tools",
                    &[("authorization", &bearer)],
                )
                .await;
                (resp.status() == 401).then_some(resp)
            }
        },
    )
    .await;
    assert!(
        challenge(&resp).ends_with("error_description=\"token revoked\""),
        "{}",
        challenge(&resp)
    );
    assert_eq!(backend.received(), ["/tools"]);
}

/// Polls `host` with `bearer` until the data plane refuses it as revoked; returns how long
/// that took from `since`.
async fn refused_as_revoked(dp: &DataPlane, bearer: &str, since: std::time::Instant) -> Duration {
    let deadline = since + Duration::from_secs(10);
    loop {
        let resp = get(
            dp,
            "mcp.example.com",
            "/tools",
            &[("authorization", bearer)],
        )
        .await;
        if resp.status() == 401 {
            assert!(
                challenge(&resp).ends_with("error_description=\"token revoked\""),
                "{}",
                challenge(&resp)
            );
            return since.elapsed();
        }
        assert_eq!(resp.status(), 200, "token neither accepted nor revoked");
        assert!(
            std::time::Instant::now() < deadline,
            "revocation never reached the data plane"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn revoking_a_user_or_a_client_reaches_data_planes_within_a_second() {
    let l = login_fixture().await;
    let cp = &l.cp;
    let backend = Backend::start("mcp").await;
    let dp = DataPlane::start(cp, "dp-edge-revoke").await;
    cp.cli_ok(&["proxy", "create", "mcp.example.com", &backend.url]);
    cp.enable_forward_auth("mcp.example.com", "auth.example.com", None);
    let bearer = format!(
        "Bearer {}",
        access_token(&l, "https://mcp.example.com").await
    );
    let resp = eventually(Duration::from_secs(20), "token accepted", || {
        let (dp, bearer) = (&dp, bearer.clone());
        async move {
            let resp = get(
                dp,
                "mcp.example.com",
                "/tools",
                &[("authorization", &bearer)],
            )
            .await;
            (resp.status() == 200).then_some(resp)
        }
    })
    .await;
    let seen: Value = resp.json().await.expect("echo");
    let sub = seen["headers"]["x-auth-subject"]
        .as_str()
        .expect("subject")
        .to_owned();

    // A user: every token issued so far, one snapshot entry, within a second.
    let start = std::time::Instant::now();
    cp.cli_ok(&["oauth", "session", "revoke-user", &sub]);
    let took = refused_as_revoked(&dp, &bearer, start).await;
    assert!(
        took < Duration::from_secs(1),
        "user revocation took {took:?}"
    );
    let sessions: Value =
        serde_json::from_str(&cp.cli_ok(&["oauth", "session", "list", "--output", "json"]))
            .expect("json");
    assert_eq!(sessions["items"], json!([]), "the user's sessions are gone");
    // The authorization server applies the same rule (userinfo, introspection, admin API).
    let userinfo_url = format!("{}/userinfo", cp.http);
    let userinfo = |bearer: String| {
        let url = userinfo_url.clone();
        async move {
            http_client()
                .get(url)
                .header("authorization", bearer)
                .send()
                .await
                .expect("userinfo")
                .status()
        }
    };
    assert_eq!(userinfo(bearer.clone()).await, 401);

    // Logging in again afterwards works once the clock has passed the cutoff's second:
    // `iat` has whole seconds, so a token minted in that same second cannot be told apart
    // from one minted just before the revocation and is revoked too (the unit test
    // `oauth::token::tests::revoking_a_user_cuts_off_tokens_issued_up_to_that_second_only`).
    // So wait for the next second to begin, not a fixed 1.1 s.
    let into_second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_millis());
    tokio::time::sleep(Duration::from_millis(u64::from(1000 - into_second) + 20)).await;
    let fresh = format!(
        "Bearer {}",
        access_token(&l, "https://mcp.example.com").await
    );
    let resp = get(
        &dp,
        "mcp.example.com",
        "/tools",
        &[("authorization", &fresh)],
    )
    .await;
    assert_eq!(
        resp.status(),
        200,
        "a login after the revocation is refused"
    );
    assert_eq!(userinfo(fresh.clone()).await, 200);

    // A client: deleting it revokes every token it was issued.
    let start = std::time::Instant::now();
    cp.cli_ok(&["oauth", "client", "delete", &l.client_id]);
    let took = refused_as_revoked(&dp, &fresh, start).await;
    assert!(
        took < Duration::from_secs(1),
        "client revocation took {took:?}"
    );
}

#[tokio::test]
async fn allowlists_public_routes_and_route_scopes_apply_at_the_edge() {
    let l = login_fixture().await;
    let cp = &l.cp;
    let backend = Backend::start("api").await;
    let status = Backend::start("status").await;
    let dp = DataPlane::start(cp, "dp-edge-4").await;
    let protect = |host: &str, allow: &[&str]| {
        cp.cli_ok(&["proxy", "create", host, &backend.url]);
        let mut extra = vec!["--scope", "mcp"];
        extra.extend_from_slice(allow);
        cp.enable_forward_auth_with(host, "auth.example.com", &extra);
    };
    // alice is in org acme, not in team acme/platform, and not bob.
    protect("team.example.com", &["--allow-org", "ACME"]);
    protect(
        "closed.example.com",
        &["--allow-user", "bob", "--allow-team", "acme/platform"],
    );
    cp.cli_ok(&[
        "route",
        "create",
        "/admin",
        "url",
        &backend.url,
        "--proxy",
        "team.example.com",
        "--scope",
        "admin",
        "--match",
        "exact",
    ]);
    cp.cli_ok(&[
        "route",
        "create",
        "/status",
        "url",
        &status.url,
        "--proxy",
        "closed.example.com",
        "--public",
        "--match",
        "exact",
    ]);
    // A route from an unprotected proxy into a protected one is refused.
    cp.cli_ok(&["proxy", "create", "open.example.com", &backend.url]);
    let out = cp.cli(
        &cp.admin_token,
        &[
            "route",
            "create",
            "/",
            "proxy",
            "team.example.com",
            "--proxy",
            "open.example.com",
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("target_value") && stderr.contains("protected"),
        "{stderr}"
    );

    let team = format!(
        "Bearer {}",
        access_token(&l, "https://team.example.com").await
    );
    let closed = format!(
        "Bearer {}",
        access_token(&l, "https://closed.example.com").await
    );
    once_accepted(&dp, "team.example.com", &[("authorization", &team)]).await;

    // On the allowlist, but the route needs a scope the token lacks.
    let resp = get(
        &dp,
        "team.example.com",
        "/admin",
        &[("authorization", &team)],
    )
    .await;
    assert_eq!(resp.status(), 403);
    assert!(
        challenge(&resp).contains("scope=\"mcp admin\", error=\"insufficient_scope\""),
        "{}",
        challenge(&resp)
    );
    // Valid token, user not on the allowlist.
    let resp = get(
        &dp,
        "closed.example.com",
        "/tools",
        &[("authorization", &closed)],
    )
    .await;
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().get("www-authenticate").is_none());
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "access_denied");
    // The admin's public route needs no token; its neighbours still do.
    let resp = get(
        &dp,
        "closed.example.com",
        "/status",
        &[("x-forwarded-user", "bob")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let seen: Value = resp.json().await.expect("echo");
    assert!(seen["headers"].get("x-forwarded-user").is_none(), "{seen}");
    let resp = get(&dp, "closed.example.com", "/status/x", &[]).await;
    assert_eq!(resp.status(), 401);

    assert_eq!(backend.received(), ["/tools"]);
    assert_eq!(status.received(), ["/status"]);
}

#[tokio::test]
async fn opted_in_token_and_renamed_identity_headers_reach_the_backend() {
    let l = login_fixture().await;
    let cp = &l.cp;
    let backend = Backend::start("fwd").await;
    let dp = DataPlane::start(cp, "dp-edge-fwd").await;
    let host = "fwd.example.com";
    cp.cli_ok(&["proxy", "create", host, &backend.url]);
    // A bad header name is refused naming the field, and nothing is stored.
    let out = cp.cli(
        &cp.admin_token,
        &[
            "proxy",
            "auth",
            "enable",
            host,
            "--auth-host",
            "auth.example.com",
            "--mode",
            "forward",
            "--identity-header",
            "user=Authorization",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted: {stderr}");
    assert!(stderr.contains("identity_headers.user"), "{stderr}");
    let shown = cp.cli_ok(&["proxy", "auth", "show", host]);
    assert!(!shown.contains("Authorization"), "{shown}");
    cp.enable_forward_auth_with(
        host,
        "auth.example.com",
        &[
            "--scope",
            "mcp",
            "--forward-token",
            "--identity-header",
            "user=X-Remote-User",
        ],
    );
    let token = access_token(&l, "https://fwd.example.com").await;
    let bearer = format!("Bearer {token}");
    let resp = once_accepted(
        &dp,
        host,
        &[
            ("authorization", &bearer),
            ("x-remote-user", "mallory"),
            ("x-auth-user", "mallory"),
        ],
    )
    .await;
    let seen: Value = resp.json().await.expect("echo");
    let headers = &seen["headers"];
    assert_eq!(headers["authorization"], bearer.as_str(), "{seen}");
    assert_eq!(headers["x-remote-user"], "alice", "{seen}");
    assert!(headers.get("x-auth-user").is_none(), "{seen}");
    assert_eq!(headers["x-forwarded-user"], "alice", "{seen}");
    // Without a token: refused, and the forged header never reaches the backend.
    let resp = get(&dp, host, "/tools", &[("x-remote-user", "mallory")]).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(backend.received(), ["/tools"]);
}

/// Issue #16 items 1 and 2: one normalised path decides routing, public routes and route
/// scopes, and is what the upstream receives; prefixes match whole segments. Every request
/// here is written by hand: client libraries resolve dot segments before sending.
#[tokio::test]
async fn paths_are_normalised_before_routing_public_routes_and_scopes() {
    let l = login_fixture().await;
    let cp = &l.cp;
    let files = Backend::start("files").await;
    let api = Backend::start("api").await;
    let dp = DataPlane::start(cp, "dp-edge-paths").await;
    let host = "files.example.com";
    cp.cli_ok(&["proxy", "create", host, &files.url]);
    cp.enable_forward_auth(host, "auth.example.com", Some("mcp"));
    cp.cli_ok(&[
        "route", "create", "/pub", "url", &files.url, "--proxy", host, "--public",
    ]);
    cp.cli_ok(&[
        "route", "create", "/admin", "url", &files.url, "--proxy", host, "--scope", "admin",
    ]);
    cp.cli_ok(&["route", "create", "/api", "url", &api.url, "--proxy", host]);
    let token = format!(
        "Bearer {}",
        access_token(&l, "https://files.example.com").await
    );
    once_accepted(&dp, host, &[("authorization", &token)]).await;
    let send = |target: &'static str, auth: bool| {
        let headers: Vec<(&str, &str)> = if auth {
            vec![("authorization", token.as_str())]
        } else {
            vec![]
        };
        let dp = &dp;
        async move { raw_request(&dp.http, "GET", target, host, &headers).await.0 }
    };

    // The public route covers its own segments only, after dot segments are resolved.
    assert_eq!(send("/pub/x", false).await, 200);
    for sneaky in [
        "/pub/../secret.txt",
        "/pub/%2e%2e/secret.txt",
        "/pub/%2E%2E/secret.txt",
        "/pub/./../secret.txt",
        "//pub/../secret.txt",
        "/pubsecret",
        "/pub.txt",
    ] {
        assert_eq!(send(sneaky, false).await, 401, "{sneaky} without a token");
    }
    // No normal form is safe for every upstream: refused before any decision.
    for ambiguous in [
        "/pub/..%2Fsecret.txt",
        "/pub/..%2fsecret.txt",
        "/pub/..%5Csecret.txt",
        "/pub/..;/secret.txt",
        "/pub/%00",
        "/pub/%zz",
    ] {
        assert_eq!(send(ambiguous, false).await, 400, "{ambiguous}");
    }
    // A route's extra scope applies however its path is spelled.
    for spelled in [
        "/admin",
        "/x/../admin",
        "/./admin",
        "/api/%2e%2e/admin",
        "/%61dmin",
        "//admin/",
    ] {
        assert_eq!(
            send(spelled, true).await,
            403,
            "{spelled} without scope admin"
        );
    }
    // `/api` is a segment prefix: `/apix` falls back to the proxy's own target.
    assert_eq!(send("/apix", true).await, 200);
    // The upstream receives the path that was decided on, query as sent.
    assert_eq!(send("/api/v1/./x/../y?q=%2e%2e", true).await, 200);

    assert_eq!(files.received(), ["/tools", "/pub/x", "/apix"]);
    assert_eq!(api.received(), ["/api/v1/y?q=%2e%2e"]);
}
