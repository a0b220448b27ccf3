//! Protected-resource settings end to end: `proxy resource set|show|clear` (CLI and REST)
//! configure the MCP endpoint, advertised scopes, documentation, custom metadata fields
//! and the browser Origin allowlist; a real data plane serves the metadata, names the
//! endpoint's metadata in its challenges, refuses foreign origins and answers CORS for
//! allowed ones, in front of a real backend.

use portcullis_tests::{Backend, ControlPlane, DataPlane, http_client};
use serde_json::{Value, json};

const APP: &str = "http://localhost:6274";

async fn synced(cp: &ControlPlane, dp: &DataPlane) {
    let version = cp.version().await;
    cp.wait_applied(&dp.node_id, version).await;
}

async fn send(
    dp: &DataPlane,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = http_client()
        .request(method, format!("{}{path}", dp.http))
        .header("host", "mcp.test");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request through data plane")
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn protect(cp: &ControlPlane) {
    cp.enable_forward_auth("mcp.test", "auth.test", Some("mcp"));
}

#[tokio::test]
async fn resource_settings_shape_metadata_challenges_and_browser_access() {
    let cp = ControlPlane::start().await;
    let backend = Backend::start("mcp").await;
    let dp = DataPlane::start(&cp, "dp-resource-1").await;
    cp.cli_ok(&["proxy", "create", "mcp.test", &backend.url]);

    // Resource settings need a protected proxy; the refusal says what to do.
    let out = cp.cli(
        &cp.admin_token,
        &["proxy", "resource", "set", "mcp.test", "--endpoint", "/mcp"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("proxy auth enable"), "{err}");
    protect(&cp);

    let shown = cp.cli_ok(&[
        "-o",
        "json",
        "proxy",
        "resource",
        "set",
        "mcp.test",
        "--endpoint",
        "/mcp/",
        "--scopes",
        "mcp,mcp:tools",
        "--documentation",
        "https://docs.example/mcp",
        "--field",
        "resource_name=\"Echo server\"",
        "--allow-origin",
        "HTTP://LOCALHOST:6274",
    ]);
    let shown: Value = serde_json::from_str(&shown).expect("json");
    let expected = json!({
        "hostname": "mcp.test",
        "protected": true,
        "endpoint": "/mcp",
        "scopes_supported": ["mcp", "mcp:tools"],
        "resource_documentation": "https://docs.example/mcp",
        "fields": {"resource_name": "Echo server"},
        "allowed_origins": [APP],
    });
    assert_eq!(shown, expected);

    // Bad input names the field and changes nothing.
    for (args, field) in [
        (vec!["--endpoint", "/a/../b"], "endpoint"),
        (vec!["--field", "authorization_servers=[]"], "fields"),
        (vec!["--allow-origin", "*"], "allowed_origins"),
        (
            vec!["--allow-origin", "https://app.example/path"],
            "allowed_origins",
        ),
        (vec!["--scopes", "a b"], "scopes_supported"),
    ] {
        let mut argv = vec!["proxy", "resource", "set", "mcp.test"];
        argv.extend(args.iter().copied());
        let out = cp.cli(&cp.admin_token, &argv);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(field), "{args:?}: {err}");
    }
    // Re-protecting (auth enable replaces the policy) keeps the resource settings.
    protect(&cp);
    let shown: Value =
        serde_json::from_str(&cp.cli_ok(&["-o", "json", "proxy", "resource", "show", "mcp.test"]))
            .expect("json");
    assert_eq!(shown, expected);
    // REST twin.
    let resp = http_client()
        .get(format!(
            "{}/api/v1/proxy/targets/mcp.test/resource",
            cp.http
        ))
        .bearer_auth(&cp.admin_token)
        .send()
        .await
        .expect("rest");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.expect("json"), expected);
    let resp = http_client()
        .put(format!(
            "{}/api/v1/proxy/targets/mcp.test/resource",
            cp.http
        ))
        .bearer_auth(&cp.admin_token)
        .json(&json!({"endpoint": "/mcp", "fields": {"resource": "http://evil"}}))
        .send()
        .await
        .expect("rest");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    assert!(body.to_string().contains("fields"), "{body}");
    let doc: Value = http_client()
        .get(format!("{}/openapi.json", cp.http))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    let ops = &doc["paths"]["/api/v1/proxy/targets/{hostname}/resource"];
    assert!(
        ops["get"].is_object() && ops["put"].is_object() && ops["delete"].is_object(),
        "{ops}"
    );
    synced(&cp, &dp).await;

    // Under the endpoint the challenge names the endpoint's metadata, elsewhere the
    // origin's.
    let endpoint_challenge = "Bearer resource_metadata=\"http://mcp.test/.well-known/oauth-protected-resource/mcp\", scope=\"mcp\"";
    for path in ["/mcp", "/mcp/x"] {
        let resp = send(&dp, reqwest::Method::POST, path, &[]).await;
        assert_eq!(resp.status(), 401, "{path}");
        assert_eq!(
            header(&resp, "www-authenticate"),
            endpoint_challenge,
            "{path}"
        );
    }
    for path in ["/", "/mcpx", "/other"] {
        let resp = send(&dp, reqwest::Method::GET, path, &[]).await;
        assert_eq!(resp.status(), 401, "{path}");
        assert_eq!(
            header(&resp, "www-authenticate"),
            "Bearer resource_metadata=\"http://mcp.test/.well-known/oauth-protected-resource\", scope=\"mcp\"",
            "{path}"
        );
    }
    let resp = send(
        &dp,
        reqwest::Method::GET,
        "/.well-known/oauth-protected-resource/mcp",
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let prm: Value = resp.json().await.expect("metadata");
    assert_eq!(
        prm,
        json!({
            "resource": "http://mcp.test/mcp",
            "authorization_servers": [cp.http],
            "scopes_supported": ["mcp", "mcp:tools"],
            "bearer_methods_supported": ["header"],
            "resource_documentation": "https://docs.example/mcp",
            "resource_name": "Echo server",
        })
    );

    // Origin allowlist: a foreign origin is refused before auth, with or without a token.
    for origin in ["http://evil.example", "null", "http://localhost:6275"] {
        let resp = send(&dp, reqwest::Method::POST, "/mcp", &[("origin", origin)]).await;
        assert_eq!(resp.status(), 403, "{origin}");
        assert_eq!(header(&resp, "access-control-allow-origin"), "", "{origin}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"], "forbidden", "{origin}");
    }
    // The public metadata stays readable from any origin.
    let resp = send(
        &dp,
        reqwest::Method::GET,
        "/.well-known/oauth-protected-resource/mcp",
        &[("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "access-control-allow-origin"), "*");
    // An allowed origin's preflight is answered at the edge, without a token.
    let resp = send(
        &dp,
        reqwest::Method::OPTIONS,
        "/mcp",
        &[
            ("origin", APP),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization,content-type,mcp-session-id,mcp-protocol-version",
            ),
        ],
    )
    .await;
    assert_eq!(resp.status(), 204);
    assert_eq!(header(&resp, "access-control-allow-origin"), APP);
    assert!(header(&resp, "access-control-allow-methods").contains("POST"));
    assert_eq!(
        header(&resp, "access-control-allow-headers"),
        "authorization,content-type,mcp-session-id,mcp-protocol-version"
    );
    // The 401 for an allowed origin is readable by the browser client, challenge included.
    let resp = send(&dp, reqwest::Method::POST, "/mcp", &[("origin", APP)]).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(header(&resp, "access-control-allow-origin"), APP);
    let exposed = header(&resp, "access-control-expose-headers").to_ascii_lowercase();
    for h in ["mcp-session-id", "www-authenticate", "mcp-protocol-version"] {
        assert!(exposed.contains(h), "{exposed}");
    }
    assert_eq!(header(&resp, "www-authenticate"), endpoint_challenge);
    // Nothing refused at the edge ever reached the backend.
    assert!(backend.received().is_empty(), "{:?}", backend.received());

    // Clearing the settings brings back the origin's challenge and drops the allowlist.
    cp.cli_ok(&["proxy", "resource", "clear", "mcp.test"]);
    let shown: Value =
        serde_json::from_str(&cp.cli_ok(&["-o", "json", "proxy", "resource", "show", "mcp.test"]))
            .expect("json");
    assert_eq!(shown["endpoint"], "");
    assert_eq!(shown["allowed_origins"], json!([]));
    synced(&cp, &dp).await;
    let resp = send(
        &dp,
        reqwest::Method::POST,
        "/mcp",
        &[("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(resp.status(), 401);
    assert!(
        header(&resp, "www-authenticate").starts_with(
            "Bearer resource_metadata=\"http://mcp.test/.well-known/oauth-protected-resource\""
        ),
        "{}",
        header(&resp, "www-authenticate")
    );
    assert_eq!(header(&resp, "access-control-allow-origin"), "");
}

#[tokio::test]
async fn allowed_origins_reach_the_backend_with_cors_on_open_routes() {
    let cp = ControlPlane::start().await;
    let backend = Backend::start("mcp").await;
    let dp = DataPlane::start(&cp, "dp-resource-2").await;
    cp.cli_ok(&["proxy", "create", "mcp.test", &backend.url]);
    cp.cli_ok(&[
        "proxy",
        "auth",
        "enable",
        "mcp.test",
        "--auth-host",
        "auth.test",
        "--mode",
        "forward",
        "--public-path",
        "/health",
    ]);
    cp.cli_ok(&[
        "proxy",
        "resource",
        "set",
        "mcp.test",
        "--allow-origin",
        APP,
    ]);
    // A public route to an upstream that is down: nothing listens on port 1.
    cp.cli_ok(&[
        "route",
        "create",
        "/down",
        "url",
        "http://127.0.0.1:1",
        "--proxy",
        "mcp.test",
        "--public",
    ]);
    synced(&cp, &dp).await;
    // The proxy's own failure answers are readable by the allowed origin too.
    let resp = send(&dp, reqwest::Method::GET, "/down", &[("origin", APP)]).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(header(&resp, "access-control-allow-origin"), APP);
    // A public path answered by the backend carries the CORS headers for the allowed
    // origin; the Origin header itself reaches the backend unchanged.
    let resp = send(&dp, reqwest::Method::GET, "/health", &[("origin", APP)]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "access-control-allow-origin"), APP);
    assert!(
        header(&resp, "access-control-expose-headers")
            .to_ascii_lowercase()
            .contains("mcp-session-id")
    );
    let seen: Value = resp.json().await.expect("echo");
    assert_eq!(seen["headers"]["origin"], APP, "{seen}");
    // Without Origin (not a browser) nothing changes.
    let resp = send(&dp, reqwest::Method::GET, "/health", &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "access-control-allow-origin"), "");
    // A foreign origin never reaches the backend, even on a public path.
    let resp = send(
        &dp,
        reqwest::Method::GET,
        "/health",
        &[("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(resp.status(), 403);
    assert_eq!(backend.received(), ["/health", "/health"]);
}

#[tokio::test]
async fn mcp_echo_setup_recipe_protects_an_mcp_endpoint() {
    let cp = ControlPlane::start().await;
    let server = Backend::start("mcp-server").await;
    let dp = DataPlane::start(&cp, "dp-resource-3").await;
    let bin_dir = portcullis_tests::procs::bin("portcullis")
        .parent()
        .expect("bin dir")
        .to_owned();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let run = || {
        let out = std::process::Command::new("just")
            .current_dir(&root)
            .env("PORTCULLIS_URL", &cp.grpc)
            .env("PORTCULLIS_TOKEN", &cp.admin_token)
            .env("PORTCULLIS_BIN", &bin_dir)
            .env("DP_HTTP", "18080")
            .args([
                "mcp-echo-setup",
                "echo.localhost",
                server.url.as_str(),
                "auth.localhost",
                "alice",
            ])
            .output()
            .expect("just must be installed (tests/run.sh installs it)");
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let printed = run();
    assert!(
        printed.contains("http://echo.localhost:18080/mcp"),
        "{printed}"
    );
    // Running it again changes nothing and does not fail.
    run();
    let rules: Value =
        serde_json::from_str(&cp.cli_ok(&["-o", "json", "oauth", "rule", "list"])).expect("json");
    let rules = rules["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(rules[0]["proxy_hostname"], "echo.localhost");
    assert_eq!(rules[0]["users"], json!(["alice"]));
    assert_eq!(rules[0]["scopes"], json!(["mcp"]));
    let auth_proxy: Value =
        serde_json::from_str(&cp.cli_ok(&["-o", "json", "proxy", "show", "auth.localhost"]))
            .expect("json");
    assert_eq!(auth_proxy["hostname"], "auth.localhost");
    synced(&cp, &dp).await;

    let resp = http_client()
        .post(format!("{}/mcp", dp.http))
        .header("host", "echo.localhost")
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .expect("mcp");
    assert_eq!(resp.status(), 401);
    assert_eq!(
        header(&resp, "www-authenticate"),
        "Bearer resource_metadata=\"http://echo.localhost/.well-known/oauth-protected-resource/mcp\", scope=\"mcp\""
    );
    let prm: Value = http_client()
        .get(format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            dp.http
        ))
        .header("host", "echo.localhost")
        .send()
        .await
        .expect("metadata")
        .json()
        .await
        .expect("json");
    assert_eq!(prm["resource"], "http://echo.localhost/mcp");
    assert_eq!(prm["authorization_servers"], json!([cp.http]));
    assert_eq!(prm["scopes_supported"], json!(["mcp"]));
    assert!(server.received().is_empty(), "{:?}", server.received());
}
