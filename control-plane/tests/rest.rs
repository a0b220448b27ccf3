//! The REST router in-process: requests go through `tower::ServiceExt::oneshot` into the
//! same `axum` router the binary serves, over the embedded store in a temporary directory.
//! No process, no socket: status codes, error bodies and ownership in milliseconds. The
//! end-to-end `tests/tests/api.rs` keeps what only a real process shows (CLI over gRPC,
//! Swagger UI assets, concurrency through real connections).

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use portcullis_control_plane::authenticator::Authenticator;
use portcullis_control_plane::oauth::{OAuthServer, OAuthSettings};
use portcullis_control_plane::{server, service::ControlPlane, store::Store};
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// A control plane on a fresh embedded store, its REST router and an admin token.
struct Fixture {
    _dir: tempfile::TempDir,
    cp: ControlPlane,
    app: Router,
    admin: String,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_embedded(dir.path()).expect("embedded store");
        let cp = ControlPlane::new(store).await.expect("control plane");
        let admin = cp
            .create_admin_token("admin")
            .await
            .expect("admin token")
            .secret;
        let oauth = OAuthServer::new(cp.clone(), OAuthSettings::default()).expect("oauth server");
        let authn = Authenticator::new(cp.clone(), oauth.clone());
        let app = server::http_app(cp.clone(), oauth, authn);
        Self {
            _dir: dir,
            cp,
            app,
            admin,
        }
    }

    /// Sends one request with `token` (none when empty) and a JSON body; returns the status
    /// and the body as JSON (a string when it is not JSON).
    async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if !token.is_empty() {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .expect("request");
        let resp = self.app.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Creates a user token; returns its secret and id.
    async fn user(&self, name: &str) -> (String, Value) {
        let (s, tok) = self
            .call(
                &self.admin,
                Method::POST,
                "/api/v1/tokens",
                Some(json!({"name": name, "scope": "user"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{tok}");
        let secret = tok["secret"].as_str().expect("secret").to_owned();
        (secret, tok["token"]["id"].clone())
    }

    async fn revision(&self) -> u64 {
        self.cp.store().revision().await.expect("revision")
    }
}

#[tokio::test]
async fn no_or_unknown_token_is_401_with_the_error_body() {
    let f = Fixture::new().await;
    for token in ["", "pcs_nope", "not-a-token"] {
        let (s, body) = f
            .call(token, Method::GET, "/api/v1/proxy/targets", None)
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{token:?} -> {body}");
        assert_eq!(body["error"], "unauthenticated", "{token:?} -> {body}");
        assert!(body["detail"].is_string(), "{body}");
    }
    // The challenge header comes with it.
    let resp = f
        .app
        .clone()
        .oneshot(
            Request::get("/api/v1/proxy/targets")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(
        resp.headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
    // `/health` needs no token.
    let (s, health) = f.call("", Method::GET, "/health", None).await;
    assert_eq!(s, StatusCode::OK, "{health}");
    assert_eq!(health["store_ok"], true);
    assert_eq!(health["store_backend"], "embedded");
}

#[tokio::test]
async fn create_read_update_and_conflict() {
    let f = Fixture::new().await;
    let p = json!({"hostname": "App.Example.com", "target_url": "http://127.0.0.1:9/", "custom_request_headers": {"X-A": "1"}});
    let (s, created) = f
        .call(
            &f.admin,
            Method::POST,
            "/api/v1/proxy/targets",
            Some(p.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["hostname"], "app.example.com");
    assert_eq!(created["target_url"], "http://127.0.0.1:9");
    assert_eq!(created["enabled"], true);
    let revision = f.revision().await;

    let (s, body) = f
        .call(&f.admin, Method::POST, "/api/v1/proxy/targets", Some(p))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].is_string(), "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("app.example.com"),
        "{body}"
    );
    assert_eq!(f.revision().await, revision, "a conflict wrote");

    let path = "/api/v1/proxy/targets/app.example.com";
    let (s, got) = f.call(&f.admin, Method::GET, path, None).await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(got["custom_request_headers"]["X-A"], "1");
    let (s, upd) = f
        .call(&f.admin, Method::PUT, path, Some(json!({"enabled": false})))
        .await;
    assert_eq!(s, StatusCode::OK, "{upd}");
    assert_eq!(upd["enabled"], false);
    assert_eq!(upd["target_url"], "http://127.0.0.1:9");
    let (s, body) = f
        .call(
            &f.admin,
            Method::GET,
            "/api/v1/proxy/targets/missing.example.com",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "not_found", "{body}");
}

#[tokio::test]
async fn references_are_422_and_an_in_use_service_is_409() {
    let f = Fixture::new().await;
    let (s, body) = f
        .call(
            &f.admin,
            Method::POST,
            "/api/v1/routes",
            Some(json!({"path_pattern": "/api", "target_kind": "service", "target_value": "api"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (s, body) = f
        .call(
            &f.admin,
            Method::POST,
            "/api/v1/services/external",
            Some(json!({"name": "api", "target_url": "http://127.0.0.1:8", "description": "d"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (s, route) = f
        .call(
            &f.admin,
            Method::POST,
            "/api/v1/routes",
            Some(json!({"id": "to-api", "path_pattern": "/api", "target_kind": "service", "target_value": "api", "priority": 80})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{route}");
    assert_eq!(route["priority"], 80);
    assert_eq!(route["match_kind"], "prefix");
    let service = "/api/v1/services/external/api";
    let (s, body) = f.call(&f.admin, Method::DELETE, service, None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "conflict", "{body}");
    let (s, _) = f
        .call(&f.admin, Method::DELETE, "/api/v1/routes/to-api", None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = f.call(&f.admin, Method::DELETE, service, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

/// Every refused input names its field in `detail`, and nothing is written.
#[tokio::test]
async fn invalid_input_is_400_naming_the_field_and_writes_nothing() {
    let f = Fixture::new().await;
    let (s, body) = f
        .call(
            &f.admin,
            Method::POST,
            "/api/v1/proxy/targets",
            Some(json!({"hostname": "app.example.com", "target_url": "http://127.0.0.1:9"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let revision = f.revision().await;
    let proxy = |extra: Value| {
        let mut p = json!({"hostname": "new.example.com", "target_url": "http://127.0.0.1:9"});
        if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
            p.extend(extra.clone());
        }
        p
    };
    let route = |extra: Value| {
        let mut r = json!({"path_pattern": "/x", "target_kind": "url", "target_value": "http://127.0.0.1:9"});
        if let (Some(r), Some(extra)) = (r.as_object_mut(), extra.as_object()) {
            r.extend(extra.clone());
        }
        r
    };
    let (post, put) = (Method::POST, Method::PUT);
    let (targets, app, routes) = (
        "/api/v1/proxy/targets",
        "/api/v1/proxy/targets/app.example.com",
        "/api/v1/routes",
    );
    let bad = StatusCode::BAD_REQUEST;
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    let cases = [
        (
            &post,
            targets,
            proxy(json!({"hostname": "bad_host"})),
            bad,
            "hostname",
        ),
        (
            &post,
            targets,
            proxy(json!({"hostname": " new.example.com"})),
            bad,
            "hostname",
        ),
        (
            &post,
            targets,
            proxy(json!({"hostname": "new.example.com."})),
            bad,
            "hostname",
        ),
        (
            &post,
            targets,
            proxy(json!({"target_url": "ftp://x"})),
            bad,
            "target_url",
        ),
        (
            &post,
            targets,
            proxy(json!({"target_url": "http:///x"})),
            bad,
            "target_url",
        ),
        (
            &post,
            targets,
            proxy(json!({"target_url": "http://127.0.0.1:9/a\r\nb"})),
            bad,
            "target_url",
        ),
        (
            &post,
            targets,
            proxy(json!({"custom_request_headers": {"Host": "y"}})),
            bad,
            "custom_request_headers",
        ),
        (
            &post,
            targets,
            proxy(json!({"custom_request_headers": {"X-A": "1\r\n"}})),
            bad,
            "custom_request_headers",
        ),
        (
            &post,
            targets,
            proxy(json!({"connect_timeout_ms": 99_999_999})),
            bad,
            "connect_timeout_ms",
        ),
        (
            &post,
            targets,
            proxy(json!({"surprise": 1})),
            bad,
            "surprise",
        ),
        (
            &post,
            targets,
            proxy(json!({"certificate_name": "nope"})),
            unprocessable,
            "certificate_name",
        ),
        (
            &put,
            app,
            json!({"certificate_name": "nope"}),
            unprocessable,
            "certificate_name",
        ),
        (
            &put,
            app,
            json!({"target_url": "http:///x"}),
            bad,
            "target_url",
        ),
        (
            &post,
            routes,
            route(json!({"path_pattern": "(", "match_kind": "regex"})),
            bad,
            "regex",
        ),
        (
            &post,
            routes,
            route(json!({"methods": ["GET\r\n"]})),
            bad,
            "methods",
        ),
        (
            &post,
            routes,
            route(json!({"methods": ["get"]})),
            bad,
            "methods",
        ),
        (
            &post,
            routes,
            route(json!({"target_value": "http:///x"})),
            bad,
            "target_value",
        ),
        (
            &post,
            "/api/v1/services/external",
            json!({"name": "svc", "target_url": "http://127.0.0.1:9/\n"}),
            bad,
            "target_url",
        ),
    ];
    for (method, path, input, status, field) in cases {
        let (s, body) = f
            .call(&f.admin, method.clone(), path, Some(input.clone()))
            .await;
        assert_eq!(s, status, "{method} {path} {input} -> {body}");
        assert!(
            body["error"].is_string(),
            "{method} {path} {input} -> {body}"
        );
        assert!(
            body["detail"].as_str().unwrap_or("").contains(field),
            "{method} {path} {input} -> {body}"
        );
    }
    assert_eq!(
        f.revision().await,
        revision,
        "a refused write changed the config"
    );
    let (_, got) = f.call(&f.admin, Method::GET, app, None).await;
    assert_eq!(got["target_url"], "http://127.0.0.1:9");
    assert_eq!(got["certificate_name"], "");
    let (_, list) = f.call(&f.admin, Method::GET, targets, None).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
}

/// A user token changes only what it owns (403 otherwise, and nothing is written);
/// admin-only operations are 403 for it.
#[tokio::test]
async fn a_user_token_changes_only_its_own_proxies() {
    let f = Fixture::new().await;
    let (s, _) = f
        .call(
            &f.admin,
            Method::POST,
            "/api/v1/proxy/targets",
            Some(json!({"hostname": "app.example.com", "target_url": "http://127.0.0.1:9"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (alice, alice_id) = f.user("alice").await;
    let (bob, _) = f.user("bob").await;
    let admins = "/api/v1/proxy/targets/app.example.com";
    let revision = f.revision().await;
    for (method, body) in [
        (Method::PUT, Some(json!({"enabled": false}))),
        (Method::DELETE, None),
    ] {
        let (s, resp) = f.call(&alice, method.clone(), admins, body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{method} -> {resp}");
        assert_eq!(resp["error"], "forbidden", "{resp}");
    }
    let (s, _) = f
        .call(
            &alice,
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        f.revision().await,
        revision,
        "a refused write changed the config"
    );

    let (s, mine) = f
        .call(
            &alice,
            Method::POST,
            "/api/v1/proxy/targets",
            Some(json!({"hostname": "alice.example.com", "target_url": "http://127.0.0.1:7"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{mine}");
    assert_eq!(mine["owner_token_id"], alice_id);
    let alices = "/api/v1/proxy/targets/alice.example.com";
    // Reading is not owner-restricted today: every token sees every proxy.
    let (s, seen) = f.call(&bob, Method::GET, alices, None).await;
    assert_eq!(s, StatusCode::OK, "{seen}");
    let (s, _) = f
        .call(&bob, Method::PUT, alices, Some(json!({"enabled": false})))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "bob changed alice's proxy");
    let (s, _) = f.call(&bob, Method::DELETE, alices, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "bob deleted alice's proxy");
    let (s, _) = f.call(&alice, Method::DELETE, alices, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // Token reads never include secrets or their hashes.
    let (s, tokens) = f.call(&f.admin, Method::GET, "/api/v1/tokens", None).await;
    assert_eq!(s, StatusCode::OK);
    let text = tokens.to_string();
    assert!(
        !text.contains(&alice)
            && !text.contains(&bob)
            && !text.contains("sha256")
            && !text.contains(&f.admin),
        "{text}"
    );
    assert_eq!(tokens.as_array().map(Vec::len), Some(3), "{tokens}");
}

/// A body over the REST API's limit (axum's 2 MB) is 413 in the API's error shape, not 400
/// as if it were malformed.
#[tokio::test]
async fn an_oversized_body_is_413() {
    let f = Fixture::new().await;
    let big = json!({
        "hostname": "big.example.com",
        "target_url": "http://127.0.0.1:9/",
        "custom_request_headers": {"x-big": "a".repeat(3 << 20)},
    });
    let (s, body) = f
        .call(&f.admin, Method::POST, "/api/v1/proxy/targets", Some(big))
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"], "payload_too_large");
}
