//! Export/apply on a real embedded store: every setting survives the round trip, nested
//! errors name their path, and an apply without changes does not move the revision.

use serde_json::{Value, json};

use super::*;
use crate::model::{
    AuthMode, ProxyAuthInput, ProxyInput, ProxyResourceInput, RouteInput, TokenScope,
};
use crate::store::Store;

async fn plane() -> (ControlPlane, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::new(Store::open_embedded(dir.path()).unwrap())
        .await
        .unwrap();
    (cp, dir)
}

fn admin() -> Caller {
    Caller {
        token_id: "t-admin".into(),
        scope: TokenScope::Admin,
    }
}

fn json_of(e: &Exported) -> Value {
    serde_json::to_value(e).unwrap()
}

#[tokio::test]
async fn every_proxy_and_route_setting_survives_export_and_apply() {
    let (cp, _d) = plane().await;
    let a = admin();
    cp.create_proxy(
        &a,
        ProxyInput {
            hostname: "full.example.com".into(),
            target_url: "https://10.0.0.1:8443/base".into(),
            enabled: Some(false),
            enable_http: Some(false),
            enable_https: Some(false),
            preserve_host_header: Some(true),
            custom_request_headers: Some([("x-a".to_owned(), "1".to_owned())].into()),
            custom_response_headers: Some([("x-b".to_owned(), "2".to_owned())].into()),
            connect_timeout_ms: Some(1500),
            read_timeout_ms: Some(2500),
            redirect_http_to_https: Some(true),
            hsts_max_age_secs: Some(600),
            certificate_name: None,
            idle_timeout_ms: Some(60_000),
            rate_limit_rps: Some(5),
            rate_limit_burst: Some(9),
            rate_limit_key: Some("subject".into()),
            max_concurrent_requests: Some(7),
            max_request_body_bytes: Some(1 << 20),
            upstream_proxy_protocol: Some("v2".into()),
            ip_allowlist: Some(vec!["10.0.0.0/8".into()]),
            log_query: Some(true),
        },
    )
    .await
    .unwrap();
    cp.set_proxy_auth(
        &a,
        "full.example.com",
        ProxyAuthInput {
            mode: AuthMode::Redirect,
            auth_host: "auth.example.com".into(),
            required_scopes: Some(vec!["read".into()]),
            public_paths: Some(vec!["/health".into()]),
            scopes_supported: Some(vec!["read".into(), "write".into()]),
            resource_documentation: Some("https://docs.example.com".into()),
            allowed_users: Some(vec!["alice".into()]),
            allowed_orgs: Some(vec!["acme".into()]),
            allowed_teams: Some(vec!["acme/ops".into()]),
            allowed_email_domains: Some(vec!["example.com".into()]),
            allowed_groups: Some(vec!["Admins".into()]),
            forward_token: Some(true),
            identity_headers: Some([("user".to_owned(), "x-user".to_owned())].into()),
        },
    )
    .await
    .unwrap();
    cp.set_proxy_resource(
        &a,
        "full.example.com",
        ProxyResourceInput {
            endpoint: Some("/mcp".into()),
            scopes_supported: Some(vec!["read".into(), "write".into()]),
            resource_documentation: Some("https://docs.example.com".into()),
            fields: Some(serde_json::from_value(json!({"resource_name": "Full"})).unwrap()),
            allowed_origins: Some(vec!["https://app.example.com".into()]),
        },
    )
    .await
    .unwrap();
    cp.create_proxy(
        &a,
        ProxyInput {
            hostname: "plain.example.com".into(),
            target_url: "http://127.0.0.1:9".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    cp.create_route(
        &a,
        RouteInput {
            id: Some("r-full".into()),
            priority: Some(900),
            match_kind: Some(crate::model::MatchKind::Regex),
            path_pattern: "^/v[0-9]+/".into(),
            methods: Some(vec!["GET".into(), "POST".into()]),
            target_kind: Some(TargetKind::Proxy),
            target_value: "plain.example.com".into(),
            proxy_hostnames: Some(vec!["plain.example.com".into()]),
            enabled: Some(false),
            description: Some("all of it".into()),
            public: Some(true),
            required_scopes: Some(vec!["write".into()]),
        },
    )
    .await
    .unwrap();
    let doc = json_of(&export(&cp, &a).await.unwrap());
    let proxy = &doc["proxies"][0];
    for field in [
        "enabled",
        "enable_http",
        "preserve_host_header",
        "custom_request_headers",
        "custom_response_headers",
        "connect_timeout_ms",
        "read_timeout_ms",
        "redirect_http_to_https",
        "hsts_max_age_secs",
        "idle_timeout_ms",
        "rate_limit_rps",
        "rate_limit_burst",
        "rate_limit_key",
        "max_concurrent_requests",
        "max_request_body_bytes",
        "upstream_proxy_protocol",
        "ip_allowlist",
        "log_query",
        "auth",
    ] {
        assert!(proxy.get(field).is_some(), "{field} missing from {proxy}");
    }
    assert_eq!(
        doc["proxies"][1],
        json!({"hostname": "plain.example.com", "target_url": "http://127.0.0.1:9"}),
        "defaults are left out"
    );

    let (cp2, _d2) = plane().await;
    let report = apply(&cp2, &a, &doc, ApplyOptions::default())
        .await
        .unwrap();
    assert!(report.applied);
    assert_eq!(json_of(&export(&cp2, &a).await.unwrap()), doc);
    // The records themselves are the same, but for owners and times.
    let strip = |mut p: Proxy| {
        p.owner_token_id.clear();
        p.created_at = 0;
        p.updated_at = 0;
        p
    };
    let one = cp.get_proxy(&a, "full.example.com").await.unwrap();
    let two = cp2.get_proxy(&a, "full.example.com").await.unwrap();
    assert_eq!(strip(one), strip(two));
    let r1 = cp.get_route(&a, "r-full").await.unwrap();
    let mut r2 = cp2.get_route(&a, "r-full").await.unwrap();
    r2.owner_token_id = r1.owner_token_id.clone();
    r2.created_at = r1.created_at;
    assert_eq!(r1, r2);

    let revision = cp2.store().revision().await.unwrap();
    let again = apply(&cp2, &a, &doc, ApplyOptions::default())
        .await
        .unwrap();
    assert!(!again.applied);
    assert!(again.changes.iter().all(|c| c.action == Action::Unchanged));
    assert_eq!(cp2.store().revision().await.unwrap(), revision);
}

fn paths(e: ApplyError) -> Vec<String> {
    match e {
        ApplyError::Document(errors) => errors.into_iter().map(|e| e.path).collect(),
        ApplyError::Service(e) => panic!("not a document error: {e}"),
    }
}

#[tokio::test]
async fn errors_name_their_path_and_nothing_is_written() {
    let (cp, _d) = plane().await;
    let a = admin();
    let doc = json!({
        "apiVersion": "portcullis/v1",
        "kind": "Config",
        "proxies": [
            {"hostname": "ok.example.com", "target_url": "http://127.0.0.1:9"},
            {"hostname": "x.example.com", "target_url": "http://127.0.0.1:9",
             "auth": {"mode": "forward", "auth_host": "a.example.com", "resource": {"endpoint": "no-slash"}}},
            {"hostname": "y.example.com", "target_url": "http://127.0.0.1:9", "auth": {"mode": "sideways", "auth_host": "a"}},
            {"hostname": "OK.example.com", "target_url": "http://127.0.0.1:9"},
            {"hostname": "z.example.com", "target_url": "http://127.0.0.1:9", "certificate_name": "nope"}
        ],
        "services": "not a list",
        "extras": [],
        "scope_descriptions": [{"scope": "bad scope", "description": "x"}],
        "oauth_providers": [{"name": "new", "kind": "github", "client_id": "c"}],
        "proxy_oauth": [{"hostname": "ok.example.com", "idps": ["ghost"]}]
    });
    let before = cp.store().revision().await.unwrap();
    let mut got = paths(
        apply(&cp, &a, &doc, ApplyOptions::default())
            .await
            .unwrap_err(),
    );
    got.sort();
    assert_eq!(
        got,
        vec![
            "extras",
            "oauth_providers[0].client_secret",
            "proxies[1].auth.resource.endpoint",
            "proxies[2].auth.mode",
            "proxies[3].hostname",
            "proxies[4].certificate_name",
            "proxy_oauth[0].idps",
            "scope_descriptions[0].scope",
            "services",
        ]
    );
    assert_eq!(cp.store().revision().await.unwrap(), before);
    assert!(cp.list_proxies(&a).await.unwrap().is_empty());

    let wrong = json!({"apiVersion": "v2", "kind": "Config"});
    assert_eq!(
        paths(
            apply(&cp, &a, &wrong, ApplyOptions::default())
                .await
                .unwrap_err()
        ),
        vec!["apiVersion"]
    );
    let user = Caller {
        token_id: "t-user".into(),
        scope: TokenScope::User,
    };
    assert!(matches!(
        apply(&cp, &user, &json!({}), ApplyOptions::default()).await,
        Err(ApplyError::Service(ServiceError::Forbidden(_)))
    ));
}

#[tokio::test]
async fn certificates_are_settings_and_uploaded_ones_cannot_be_made() {
    let (cp, _d) = plane().await;
    let a = admin();
    let doc = |email: &str, source: Option<&str>| {
        let mut cert = json!({"name": "site", "domains": ["site.example.com"], "email": email, "staging": true});
        if let Some(s) = source {
            cert["source"] = json!(s);
            cert.as_object_mut().unwrap().remove("staging");
        }
        json!({"apiVersion": "portcullis/v1", "kind": "Config",
            "proxies": [{"hostname": "site.example.com", "target_url": "http://127.0.0.1:9"}],
            "certificates": [cert]})
    };
    let first = apply(
        &cp,
        &a,
        &doc("ops@example.com", None),
        ApplyOptions::default(),
    )
    .await
    .unwrap();
    assert!(first.applied);
    let exported = json_of(&export(&cp, &a).await.unwrap());
    assert_eq!(
        exported["certificates"],
        json!([{"name": "site", "domains": ["site.example.com"], "email": "ops@example.com", "staging": true}])
    );
    let stored = cp.get_certificate(&a, "site").await.unwrap();
    assert_eq!(stored.status, CertStatus::Pending);
    let again = apply(
        &cp,
        &a,
        &doc("ops@example.com", None),
        ApplyOptions::default(),
    )
    .await
    .unwrap();
    assert!(!again.applied);
    let changed = apply(
        &cp,
        &a,
        &doc("sec@example.com", None),
        ApplyOptions::default(),
    )
    .await
    .unwrap();
    let c = changed
        .changes
        .iter()
        .find(|c| c.kind == "certificate")
        .unwrap();
    assert_eq!(
        (c.action, c.fields.clone()),
        (Action::Update, vec!["email".to_owned()])
    );

    let (cp2, _d2) = plane().await;
    let err = apply(
        &cp2,
        &a,
        &doc("ops@example.com", Some("uploaded")),
        ApplyOptions::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(paths(err), vec!["certificates[0].source"]);
    assert!(cp2.list_certificates(&a).await.unwrap().is_empty());
}
