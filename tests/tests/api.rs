//! The admin API over real sockets: REST and CLI against a running control plane.

use portcullis_tests::{ControlPlane, http_client};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn call(
    cp: &ControlPlane,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = http_client()
        .request(method, format!("{}{path}", cp.http))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn rest_crud_validation_and_ownership() {
    use reqwest::Method as M;
    let cp = ControlPlane::start().await;
    let admin = cp.admin_token.clone();

    let health: Value = http_client()
        .get(format!("{}/health", cp.http))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["store_ok"], true);
    assert_eq!(health["store_backend"], "embedded");

    // No token, bad token.
    let (s, body) = call(&cp, "", M::GET, "/api/v1/proxy/targets", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "unauthenticated");
    let (s, _) = call(&cp, "pcs_nope", M::GET, "/api/v1/proxy/targets", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Create, read, update.
    let p = json!({"hostname": "App.Example.com", "target_url": "http://127.0.0.1:9/", "custom_request_headers": {"X-A": "1"}});
    let (s, created) = call(
        &cp,
        &admin,
        M::POST,
        "/api/v1/proxy/targets",
        Some(p.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["hostname"], "app.example.com");
    assert_eq!(created["target_url"], "http://127.0.0.1:9");
    assert_eq!(created["enabled"], true);
    let (s, body) = call(&cp, &admin, M::POST, "/api/v1/proxy/targets", Some(p)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    let (s, got) = call(
        &cp,
        &admin,
        M::GET,
        "/api/v1/proxy/targets/app.example.com",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got["custom_request_headers"]["X-A"], "1");
    let (s, upd) = call(
        &cp,
        &admin,
        M::PUT,
        "/api/v1/proxy/targets/app.example.com",
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(upd["enabled"], false);
    assert_eq!(upd["target_url"], "http://127.0.0.1:9");
    let (s, _) = call(
        &cp,
        &admin,
        M::GET,
        "/api/v1/proxy/targets/missing.example.com",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Validation names the field; nothing is written.
    let version = cp.version().await;
    for (bad, field) in [
        (
            json!({"hostname": "bad_host", "target_url": "http://x"}),
            "hostname",
        ),
        (
            json!({"hostname": "ok.example.com", "target_url": "ftp://x"}),
            "target_url",
        ),
        (
            json!({"hostname": "ok.example.com", "target_url": "http://x", "custom_request_headers": {"Host": "y"}}),
            "custom_request_headers",
        ),
        (
            json!({"hostname": "ok.example.com", "target_url": "http://x", "connect_timeout_ms": 99999999}),
            "connect_timeout_ms",
        ),
        (
            json!({"hostname": "ok.example.com", "target_url": "http://x", "surprise": 1}),
            "surprise",
        ),
    ] {
        let (s, body) = call(
            &cp,
            &admin,
            M::POST,
            "/api/v1/proxy/targets",
            Some(bad.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad} -> {body}");
        assert!(
            body["detail"].as_str().unwrap_or("").contains(field),
            "{bad} -> {body}"
        );
        assert!(body["error"].is_string());
    }
    let (s, body) = call(&cp, &admin, M::POST, "/api/v1/routes", Some(json!({"path_pattern": "(", "match_kind": "regex", "target_kind": "url", "target_value": "http://x"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["detail"].as_str().unwrap_or("").contains("regex"),
        "{body}"
    );
    assert_eq!(
        cp.version().await,
        version,
        "rejected writes changed the config"
    );

    // References: routes need existing targets; in-use services cannot go.
    let (s, body) = call(
        &cp,
        &admin,
        M::POST,
        "/api/v1/routes",
        Some(json!({"path_pattern": "/api", "target_kind": "service", "target_value": "api"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (s, _) = call(
        &cp,
        &admin,
        M::POST,
        "/api/v1/services/external",
        Some(json!({"name": "api", "target_url": "http://127.0.0.1:8", "description": "d"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, route) = call(&cp, &admin, M::POST, "/api/v1/routes", Some(json!({"id": "to-api", "path_pattern": "/api", "target_kind": "service", "target_value": "api", "priority": 80}))).await;
    assert_eq!(s, StatusCode::CREATED, "{route}");
    assert_eq!(route["priority"], 80);
    assert_eq!(route["match_kind"], "prefix");
    let (s, _) = call(
        &cp,
        &admin,
        M::DELETE,
        "/api/v1/services/external/api",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = call(&cp, &admin, M::DELETE, "/api/v1/routes/to-api", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = call(
        &cp,
        &admin,
        M::DELETE,
        "/api/v1/services/external/api",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // Ownership: a user token changes only what it owns.
    let (s, tok) = call(
        &cp,
        &admin,
        M::POST,
        "/api/v1/tokens",
        Some(json!({"name": "alice", "scope": "user"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let alice = tok["secret"].as_str().unwrap().to_owned();
    let (s, _) = call(
        &cp,
        &alice,
        M::PUT,
        "/api/v1/proxy/targets/app.example.com",
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(
        &cp,
        &alice,
        M::DELETE,
        "/api/v1/proxy/targets/app.example.com",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(
        &cp,
        &alice,
        M::POST,
        "/api/v1/tokens",
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, mine) = call(
        &cp,
        &alice,
        M::POST,
        "/api/v1/proxy/targets",
        Some(json!({"hostname": "alice.example.com", "target_url": "http://127.0.0.1:7"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(mine["owner_token_id"], tok["token"]["id"]);
    let (s, _) = call(
        &cp,
        &alice,
        M::DELETE,
        "/api/v1/proxy/targets/alice.example.com",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // Token reads never include secrets or their hashes.
    let (s, tokens) = call(&cp, &admin, M::GET, "/api/v1/tokens", None).await;
    assert_eq!(s, StatusCode::OK);
    let text = tokens.to_string();
    assert!(
        !text.contains(&alice) && !text.contains("sha256") && !text.contains(&admin),
        "{text}"
    );
    assert_eq!(tokens.as_array().map(Vec::len), Some(2));
}

/// Input the URL parser or a trim would have repaired is refused with the field named,
/// over REST and gRPC, and nothing is written.
#[tokio::test]
async fn bad_input_is_refused_never_rewritten() {
    use reqwest::Method as M;
    let cp = ControlPlane::start().await;
    let admin = cp.admin_token.clone();
    let (s, body) = call(
        &cp,
        &admin,
        M::POST,
        "/api/v1/proxy/targets",
        Some(json!({"hostname": "app.example.com", "target_url": "http://127.0.0.1:9"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let version = cp.version().await;
    let proxy = |extra: Value| {
        let mut p = json!({"hostname": "new.example.com", "target_url": "http://127.0.0.1:9"});
        p.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        p
    };
    let route = |extra: Value| {
        let mut r = json!({"path_pattern": "/x", "target_kind": "url", "target_value": "http://127.0.0.1:9"});
        r.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        r
    };
    let cases = [
        (
            M::POST,
            "/api/v1/proxy/targets",
            proxy(json!({"target_url": "http:///x"})),
            StatusCode::BAD_REQUEST,
            "target_url",
        ),
        (
            M::POST,
            "/api/v1/proxy/targets",
            proxy(json!({"target_url": "http://127.0.0.1:9/a\r\nb"})),
            StatusCode::BAD_REQUEST,
            "target_url",
        ),
        (
            M::POST,
            "/api/v1/proxy/targets",
            proxy(json!({"hostname": " new.example.com"})),
            StatusCode::BAD_REQUEST,
            "hostname",
        ),
        (
            M::POST,
            "/api/v1/proxy/targets",
            proxy(json!({"hostname": "new.example.com."})),
            StatusCode::BAD_REQUEST,
            "hostname",
        ),
        (
            M::POST,
            "/api/v1/proxy/targets",
            proxy(json!({"custom_request_headers": {"X-A": "1\r\n"}})),
            StatusCode::BAD_REQUEST,
            "custom_request_headers",
        ),
        (
            M::POST,
            "/api/v1/proxy/targets",
            proxy(json!({"certificate_name": "nope"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "certificate_name",
        ),
        (
            M::PUT,
            "/api/v1/proxy/targets/app.example.com",
            json!({"certificate_name": "nope"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "certificate_name",
        ),
        (
            M::PUT,
            "/api/v1/proxy/targets/app.example.com",
            json!({"target_url": "http:///x"}),
            StatusCode::BAD_REQUEST,
            "target_url",
        ),
        (
            M::POST,
            "/api/v1/routes",
            route(json!({"methods": ["GET\r\n"]})),
            StatusCode::BAD_REQUEST,
            "methods",
        ),
        (
            M::POST,
            "/api/v1/routes",
            route(json!({"methods": ["get"]})),
            StatusCode::BAD_REQUEST,
            "methods",
        ),
        (
            M::POST,
            "/api/v1/routes",
            route(json!({"target_value": "http:///x"})),
            StatusCode::BAD_REQUEST,
            "target_value",
        ),
        (
            M::POST,
            "/api/v1/services/external",
            json!({"name": "svc", "target_url": "http://127.0.0.1:9/\n"}),
            StatusCode::BAD_REQUEST,
            "target_url",
        ),
    ];
    for (method, path, input, status, field) in cases {
        let (s, body) = call(&cp, &admin, method.clone(), path, Some(input.clone())).await;
        assert_eq!(s, status, "{method} {path} {input} -> {body}");
        assert!(
            body["detail"].as_str().unwrap_or("").contains(field),
            "{method} {path} {input} -> {body}"
        );
    }
    // gRPC (the CLI): InvalidArgument naming the field.
    let out = cp.cli(
        &admin,
        &["proxy", "create", "grpc.example.com", "http:///x"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid argument") && err.contains("target_url"),
        "{err}"
    );

    // Nothing was written.
    assert_eq!(
        cp.version().await,
        version,
        "rejected writes changed the config"
    );
    let (_, proxies) = call(&cp, &admin, M::GET, "/api/v1/proxy/targets", None).await;
    let hosts: Vec<&str> = proxies
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["hostname"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(hosts, ["app.example.com"], "{proxies}");
    let (_, got) = call(
        &cp,
        &admin,
        M::GET,
        "/api/v1/proxy/targets/app.example.com",
        None,
    )
    .await;
    assert_eq!(got["target_url"], "http://127.0.0.1:9");
    assert_eq!(got["certificate_name"], "");
    let (_, routes) = call(&cp, &admin, M::GET, "/api/v1/routes", None).await;
    assert_eq!(routes.as_array().map(Vec::len), Some(0), "{routes}");
    let (_, services) = call(&cp, &admin, M::GET, "/api/v1/services/external", None).await;
    assert_eq!(services.as_array().map(Vec::len), Some(0), "{services}");
}

#[tokio::test]
async fn openapi_and_offline_swagger_ui() {
    let cp = ControlPlane::start().await;
    let client = http_client();
    let doc: Value = client
        .get(format!("{}/openapi.json", cp.http))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["openapi"].as_str().unwrap_or("").starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    for path in [
        "/api/v1/proxy/targets",
        "/api/v1/proxy/targets/{hostname}",
        "/api/v1/routes",
        "/api/v1/services/external",
        "/api/v1/tokens",
        "/api/v1/dataplanes",
        "/health",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from OpenAPI"
        );
    }
    let page = client
        .get(format!("{}/docs/", cp.http))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    // The assets are served by us, not fetched from a CDN.
    let js = client
        .get(format!("{}/docs/swagger-ui-bundle.js", cp.http))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), StatusCode::OK);
    assert!(js.bytes().await.unwrap().len() > 100_000);
    assert!(
        !html.contains("https://"),
        "Swagger UI page references a remote asset"
    );
}

#[tokio::test]
async fn five_hundred_concurrent_writes_all_land() {
    let cp = ControlPlane::start().await;
    concurrent_writes(&cp).await;
}

/// 500 concurrent creates through the REST API; every one must be stored.
async fn concurrent_writes(cp: &ControlPlane) {
    let client = http_client();
    let mut tasks = Vec::new();
    for i in 0..500 {
        let req = client
            .post(format!("{}/api/v1/proxy/targets", cp.http))
            .bearer_auth(&cp.admin_token)
            .json(&json!({"hostname": format!("h{i}.example.com"), "target_url": "http://127.0.0.1:9"}));
        tasks.push(tokio::spawn(
            async move { req.send().await.map(|r| r.status()) },
        ));
    }
    for t in tasks {
        assert_eq!(
            t.await.expect("task").expect("request"),
            StatusCode::CREATED
        );
    }
    let (s, list) = call(
        cp,
        &cp.admin_token,
        reqwest::Method::GET,
        "/api/v1/proxy/targets",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list.as_array().map(Vec::len), Some(500));
}
