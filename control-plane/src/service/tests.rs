//! Service-layer behaviour on a real embedded store: validation, ownership, references.

use super::*;
use crate::model::*;

async fn setup() -> (ControlPlane, Caller, Caller, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::new(Store::open_embedded(dir.path()).unwrap())
        .await
        .unwrap();
    let admin = cp
        .bootstrap_admin_token()
        .await
        .unwrap()
        .expect("first start creates a token");
    assert!(
        cp.bootstrap_admin_token().await.unwrap().is_none(),
        "only once"
    );
    let admin = cp.authenticate_api(&admin.secret).await.unwrap();
    let user = cp
        .create_token(
            &admin,
            TokenInput {
                name: "alice".into(),
                scope: Some(TokenScope::User),
            },
        )
        .await
        .unwrap();
    let user = cp.authenticate_api(&user.secret).await.unwrap();
    (cp, admin, user, dir)
}

fn proxy(host: &str) -> ProxyInput {
    ProxyInput {
        hostname: host.into(),
        target_url: "http://127.0.0.1:1".into(),
        ..Default::default()
    }
}

fn route(path: &str, host: Option<&str>) -> RouteInput {
    RouteInput {
        path_pattern: path.into(),
        target_kind: Some(TargetKind::Url),
        target_value: "http://127.0.0.1:2".into(),
        proxy_hostnames: host.map(|h| vec![h.to_owned()]),
        ..Default::default()
    }
}

#[tokio::test]
async fn ownership_is_enforced() {
    let (cp, admin, user, _d) = setup().await;
    cp.create_proxy(&admin, proxy("admin.example.com"))
        .await
        .unwrap();
    let mine = cp
        .create_proxy(&user, proxy("Alice.Example.com"))
        .await
        .unwrap();
    assert_eq!(mine.hostname, "alice.example.com");
    assert_eq!(mine.owner_token_id, user.token_id);

    let patch = ProxyPatch {
        enabled: Some(false),
        ..Default::default()
    };
    assert!(matches!(
        cp.update_proxy(&user, "admin.example.com", patch.clone())
            .await,
        Err(ServiceError::Forbidden(_))
    ));
    assert!(matches!(
        cp.delete_proxy(&user, "admin.example.com").await,
        Err(ServiceError::Forbidden(_))
    ));
    assert!(
        !cp.update_proxy(&admin, "alice.example.com", patch)
            .await
            .unwrap()
            .enabled
    );

    // Users cannot make global or public routes, nor scope a route to someone else's proxy.
    assert!(matches!(
        cp.create_route(&user, route("/x", None)).await,
        Err(ServiceError::Forbidden(_))
    ));
    assert!(matches!(
        cp.create_route(&user, route("/x", Some("admin.example.com")))
            .await,
        Err(ServiceError::Forbidden(_))
    ));
    let mut public = route("/p", Some("alice.example.com"));
    public.public = Some(true);
    assert!(matches!(
        cp.create_route(&user, public).await,
        Err(ServiceError::Forbidden(_))
    ));
    cp.create_route(&user, route("/x", Some("alice.example.com")))
        .await
        .unwrap();

    // Tokens: only admins create them, and users see only themselves.
    assert!(matches!(
        cp.create_token(
            &user,
            TokenInput {
                name: "x".into(),
                scope: None
            }
        )
        .await,
        Err(ServiceError::Forbidden(_))
    ));
    let seen = cp.list_tokens(&user).await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].id, user.token_id);
}

#[tokio::test]
async fn bad_input_changes_nothing() {
    let (cp, admin, _user, _d) = setup().await;
    let before = cp.store().revision().await.unwrap();
    let mut bad = proxy("ok.example.com");
    bad.target_url = "not a url".into();
    let err = cp.create_proxy(&admin, bad).await.unwrap_err();
    assert!(
        matches!(
            err,
            ServiceError::Invalid {
                field: "target_url",
                ..
            }
        ),
        "{err}"
    );
    let mut bad = route("(", Some("nope.example.com"));
    bad.match_kind = Some(MatchKind::Regex);
    assert!(matches!(
        cp.create_route(&admin, bad).await,
        Err(ServiceError::Invalid {
            field: "path_pattern",
            ..
        })
    ));
    assert!(matches!(
        cp.create_route(&admin, route("/a", Some("nope.example.com")))
            .await,
        Err(ServiceError::Unprocessable(_))
    ));
    assert_eq!(cp.store().revision().await.unwrap(), before);
    assert!(cp.list_proxies(&admin).await.unwrap().is_empty());

    cp.create_proxy(&admin, proxy("dup.example.com"))
        .await
        .unwrap();
    assert!(matches!(
        cp.create_proxy(&admin, proxy("DUP.example.com")).await,
        Err(ServiceError::Conflict(_))
    ));
}

#[tokio::test]
async fn references_block_deletes() {
    let (cp, admin, _user, _d) = setup().await;
    cp.create_proxy(&admin, proxy("a.example.com"))
        .await
        .unwrap();
    cp.register_service(
        &admin,
        ServiceInput {
            name: "api".into(),
            target_url: "http://10.0.0.1".into(),
            description: None,
        },
    )
    .await
    .unwrap();
    let mut r = route("/api", Some("a.example.com"));
    r.id = Some("api-route".into());
    r.target_kind = Some(TargetKind::Service);
    r.target_value = "api".into();
    cp.create_route(&admin, r).await.unwrap();
    assert!(matches!(
        cp.delete_service(&admin, "api").await,
        Err(ServiceError::Conflict(_))
    ));
    assert!(matches!(
        cp.delete_proxy(&admin, "a.example.com").await,
        Err(ServiceError::Conflict(_))
    ));
    cp.delete_route(&admin, "api-route").await.unwrap();
    cp.delete_service(&admin, "api").await.unwrap();
    cp.delete_proxy(&admin, "a.example.com").await.unwrap();
    assert!(matches!(
        cp.get_proxy(&admin, "a.example.com").await,
        Err(ServiceError::NotFound { .. })
    ));
}

#[tokio::test]
async fn tokens_authenticate_until_revoked() {
    let (cp, admin, _user, _d) = setup().await;
    let dp = cp
        .create_token(
            &admin,
            TokenInput {
                name: "dp".into(),
                scope: Some(TokenScope::Dataplane),
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        cp.authenticate_api(&dp.secret).await,
        Err(ServiceError::Forbidden(_))
    ));
    assert_eq!(
        cp.authenticate(&dp.secret).await.unwrap().scope,
        TokenScope::Dataplane
    );
    cp.delete_token(&admin, &dp.token.id).await.unwrap();
    assert!(matches!(
        cp.authenticate(&dp.secret).await,
        Err(ServiceError::Unauthenticated(_))
    ));
    assert!(matches!(
        cp.authenticate("pcs_forged").await,
        Err(ServiceError::Unauthenticated(_))
    ));
}

#[tokio::test]
async fn snapshot_has_every_resource_at_the_store_revision() {
    let (cp, admin, _user, _d) = setup().await;
    cp.create_proxy(&admin, proxy("a.example.com"))
        .await
        .unwrap();
    cp.create_route(&admin, route("/g", None)).await.unwrap();
    let snap = crate::snapshot::build(cp.store(), cp.master_key())
        .await
        .unwrap();
    assert_eq!(snap.version, cp.store().revision().await.unwrap());
    assert_eq!(snap.proxies.len(), 1);
    assert_eq!(snap.routes.len(), 1);
    assert!(snap.routes[0].proxy_hostnames.is_empty());
}

fn names(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn auth_input(mode: AuthMode) -> ProxyAuthInput {
    ProxyAuthInput {
        mode,
        auth_host: "Auth.Example.com".into(),
        required_scopes: Some(vec!["mcp:read".into(), "mcp:read".into()]),
        public_paths: None,
        scopes_supported: None,
        resource_documentation: None,
        allowed_users: None,
        allowed_orgs: None,
        allowed_teams: None,
        allowed_email_domains: None,
        allowed_groups: None,
        forward_token: None,
        identity_headers: None,
    }
}

#[tokio::test]
async fn proxy_auth_is_stored_validated_and_owned() {
    let (cp, admin, user, _d) = setup().await;
    cp.create_proxy(&admin, proxy("api.example.com"))
        .await
        .unwrap();
    let before = cp.store().revision().await.unwrap();

    // Someone else's proxy: refused, nothing written.
    let err = cp
        .set_proxy_auth(&user, "api.example.com", auth_input(AuthMode::Forward))
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::Forbidden(_)), "{err}");
    // Each bad field is named; nothing is written.
    let bad = [
        (
            ProxyAuthInput {
                auth_host: "*.example.com".into(),
                ..auth_input(AuthMode::Forward)
            },
            "auth_host",
        ),
        (
            ProxyAuthInput {
                public_paths: Some(vec!["/health/../admin".into()]),
                ..auth_input(AuthMode::Forward)
            },
            "public_paths",
        ),
        (
            ProxyAuthInput {
                public_paths: Some(vec!["/".into()]),
                ..auth_input(AuthMode::Forward)
            },
            "public_paths",
        ),
        (
            ProxyAuthInput {
                required_scopes: Some(vec!["a\"b".into()]),
                ..auth_input(AuthMode::Forward)
            },
            "required_scopes",
        ),
        (
            ProxyAuthInput {
                resource_documentation: Some("javascript:alert(1)".into()),
                ..auth_input(AuthMode::Forward)
            },
            "resource_documentation",
        ),
        (
            ProxyAuthInput {
                allowed_teams: Some(vec!["acme".into()]),
                ..auth_input(AuthMode::Forward)
            },
            "allowed_teams",
        ),
        (
            ProxyAuthInput {
                allowed_users: Some(vec!["a,b".into()]),
                ..auth_input(AuthMode::Forward)
            },
            "allowed_users",
        ),
        (
            ProxyAuthInput {
                allowed_email_domains: Some(vec!["alice@example.com".into()]),
                ..auth_input(AuthMode::Forward)
            },
            "allowed_email_domains",
        ),
        (
            ProxyAuthInput {
                identity_headers: Some(names(&[("user", "Authorization")])),
                ..auth_input(AuthMode::Forward)
            },
            "identity_headers.user",
        ),
        (
            ProxyAuthInput {
                identity_headers: Some(names(&[("email", "bad name")])),
                ..auth_input(AuthMode::Forward)
            },
            "identity_headers.email",
        ),
        (
            ProxyAuthInput {
                identity_headers: Some(names(&[("groups", "Transfer-Encoding")])),
                ..auth_input(AuthMode::Forward)
            },
            "identity_headers.groups",
        ),
        (
            ProxyAuthInput {
                identity_headers: Some(names(&[("subject", "X-Auth-User")])),
                ..auth_input(AuthMode::Forward)
            },
            "identity_headers.subject",
        ),
        (
            ProxyAuthInput {
                identity_headers: Some(names(&[("nickname", "X-Nick")])),
                ..auth_input(AuthMode::Forward)
            },
            "identity_headers",
        ),
        // Refused, not trimmed.
        (
            ProxyAuthInput {
                allowed_users: Some(vec![" alice ".into()]),
                ..auth_input(AuthMode::Forward)
            },
            "allowed_users",
        ),
        (
            ProxyAuthInput {
                allowed_email_domains: Some(vec!["@example.com".into()]),
                ..auth_input(AuthMode::Forward)
            },
            "allowed_email_domains",
        ),
        (
            ProxyAuthInput {
                identity_headers: Some(names(&[("user", " X-Remote-User ")])),
                ..auth_input(AuthMode::Forward)
            },
            "identity_headers.user",
        ),
    ];
    for (input, field) in bad {
        match cp.set_proxy_auth(&admin, "api.example.com", input).await {
            Err(ServiceError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    assert_eq!(cp.store().revision().await.unwrap(), before);
    assert!(
        !cp.get_proxy_auth(&admin, "api.example.com")
            .await
            .unwrap()
            .enabled
    );

    let view = cp
        .set_proxy_auth(
            &admin,
            "API.example.com",
            ProxyAuthInput {
                public_paths: Some(vec!["/health".into()]),
                allowed_users: Some(vec!["Alice".into(), "alice".into()]),
                allowed_teams: Some(vec!["Acme/Platform".into()]),
                allowed_email_domains: Some(vec!["Acme.Example".into()]),
                allowed_groups: Some(vec!["Admins".into()]),
                forward_token: Some(true),
                identity_headers: Some(names(&[("user", "X-Remote-User")])),
                ..auth_input(AuthMode::Forward)
            },
        )
        .await
        .unwrap();
    assert!(view.enabled);
    let auth = view.auth.unwrap();
    assert_eq!(auth.auth_host, "auth.example.com");
    assert_eq!(auth.required_scopes, ["mcp:read"]);
    assert_eq!(auth.public_paths, ["/health"]);

    // The snapshot carries it to data planes.
    let snap = crate::snapshot::build(cp.store(), cp.master_key())
        .await
        .unwrap();
    let wire = snap.proxies[0].auth.clone().unwrap();
    assert!(wire.enabled);
    assert_eq!(wire.mode, "forward");
    assert_eq!(wire.required_scopes, ["mcp:read"]);
    assert_eq!(wire.public_paths, ["/health"]);
    assert_eq!(wire.allowed_users, ["alice"]);
    assert_eq!(wire.allowed_teams, ["acme/platform"]);
    assert_eq!(wire.allowed_email_domains, ["acme.example"]);
    assert_eq!(
        wire.allowed_groups,
        ["Admins"],
        "OIDC groups keep their case"
    );
    assert!(wire.allowed_orgs.is_empty());
    assert!(wire.forward_token);
    assert_eq!(
        wire.identity_headers.get("user").map(String::as_str),
        Some("x-remote-user")
    );

    cp.clear_proxy_auth(&admin, "api.example.com")
        .await
        .unwrap();
    let snap = crate::snapshot::build(cp.store(), cp.master_key())
        .await
        .unwrap();
    assert!(snap.proxies[0].auth.is_none());
    assert!(matches!(
        cp.get_proxy_auth(&admin, "nope.example.com").await,
        Err(ServiceError::NotFound { .. })
    ));
}

#[tokio::test]
async fn route_scopes_public_flag_and_protected_proxy_targets() {
    let (cp, admin, user, _d) = setup().await;
    cp.create_proxy(&user, proxy("alice.example.com"))
        .await
        .unwrap();
    cp.create_proxy(&user, proxy("vault.example.com"))
        .await
        .unwrap();
    cp.set_proxy_auth(&user, "vault.example.com", auth_input(AuthMode::Forward))
        .await
        .unwrap();
    let before = cp.store().revision().await.unwrap();

    // Only an admin marks a route public; a user's attempt changes nothing.
    let mut public = route("/status", Some("vault.example.com"));
    public.public = Some(true);
    assert!(matches!(
        cp.create_route(&user, public.clone()).await,
        Err(ServiceError::Forbidden(_))
    ));
    // Bad scopes are named.
    let mut bad = route("/x", Some("alice.example.com"));
    bad.required_scopes = Some(vec!["two words".into()]);
    match cp.create_route(&user, bad).await {
        Err(ServiceError::Invalid { field, .. }) => assert_eq!(field, "required_scopes"),
        other => panic!("{other:?}"),
    }
    // A route on an unprotected proxy may not lead to a protected proxy's upstream.
    let mut bypass = route("/", Some("alice.example.com"));
    bypass.target_kind = Some(TargetKind::Proxy);
    bypass.target_value = "vault.example.com".into();
    match cp.create_route(&user, bypass).await {
        Err(ServiceError::Invalid { field, reason }) => {
            assert_eq!(field, "target_value");
            assert!(reason.contains("protected"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(cp.store().revision().await.unwrap(), before);

    let created = cp.create_route(&admin, public).await.unwrap();
    assert!(created.public);
    let mut scoped = route("/admin", Some("vault.example.com"));
    scoped.required_scopes = Some(vec!["admin".into(), "admin".into()]);
    let scoped = cp.create_route(&user, scoped).await.unwrap();
    assert_eq!(scoped.required_scopes, ["admin"]);
    let snap = crate::snapshot::build(cp.store(), cp.master_key())
        .await
        .unwrap();
    let wire = |id: &str| {
        snap.routes
            .iter()
            .find(|r| r.id == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not in snapshot"))
    };
    assert!(wire(&created.id).public);
    assert_eq!(wire(&scoped.id).required_scopes, ["admin"]);
}

#[tokio::test]
async fn snapshots_carry_public_keys_and_revocations_only() {
    let (cp, _admin, _user, _d) = setup().await;
    let server =
        crate::oauth::OAuthServer::new(cp.clone(), crate::oauth::OAuthSettings::default()).unwrap();
    crate::oauth::keys::ensure(&server).await.unwrap();
    let key = crate::oauth::keys::active(&server).await.unwrap();
    cp.store()
        .apply(crate::store::Batch {
            checks: vec![],
            writes: vec![put(
                Collection::OAuthRevocations,
                "jti-1",
                &crate::oauth::RevokedToken::token("jti-1", now() + 60),
            )],
        })
        .await
        .unwrap();
    let snap = crate::snapshot::build(cp.store(), cp.master_key())
        .await
        .unwrap();
    let jwks: serde_json::Value = serde_json::from_str(&snap.jwks_json).unwrap();
    assert_eq!(jwks["keys"][0]["kid"], key.kid.as_str());
    for private in ["d", "p", "q", "dp", "dq", "qi"] {
        assert!(jwks["keys"][0].get(private).is_none(), "{private} leaked");
    }
    assert_eq!(snap.revocations.len(), 1);
    assert_eq!(snap.revocations[0].value, "jti-1");
    // A user revocation is one entry with its cutoff, not one per token.
    crate::oauth::revocation::revoke_all_of(
        &server,
        crate::oauth::RevokedKind::Subject,
        "github:7",
    )
    .await
    .unwrap();
    let snap = crate::snapshot::build(cp.store(), cp.master_key())
        .await
        .unwrap();
    let user = snap
        .revocations
        .iter()
        .find(|r| r.kind == "sub")
        .unwrap_or_else(|| panic!("{:?}", snap.revocations));
    assert_eq!(user.value, "github:7");
    assert!((now() - user.issued_before).abs() <= 1, "{user:?}");
    assert!(user.expires_at > user.issued_before, "{user:?}");
}

#[tokio::test]
async fn sweep_drops_expired_device_authorizations_and_their_user_codes() {
    use crate::oauth::{DeviceRecord, DeviceStatus};
    let (cp, _admin, _user, _d) = setup().await;
    let server =
        crate::oauth::OAuthServer::new(cp.clone(), crate::oauth::OAuthSettings::default()).unwrap();
    let device = |code: &str, expires_at: i64| DeviceRecord {
        client_id: "c".into(),
        user_code: code.into(),
        scopes: vec![],
        resources: vec![],
        status: DeviceStatus::Pending,
        identity: None,
        granted_scopes: vec![],
        auth_time: 0,
        expires_at,
        last_poll: 0,
    };
    cp.store()
        .apply(crate::store::Batch {
            checks: vec![],
            writes: vec![
                put(
                    Collection::OAuthDevices,
                    "old",
                    &device("BBBB-BBBB", now() - 1),
                ),
                put(Collection::OAuthUserCodes, "BBBB-BBBB", &"old"),
                put(
                    Collection::OAuthDevices,
                    "live",
                    &device("CCCC-CCCC", now() + 600),
                ),
                put(Collection::OAuthUserCodes, "CCCC-CCCC", &"live"),
            ],
        })
        .await
        .unwrap();
    server.sweep().await.unwrap();
    let keys = |c| {
        let store = cp.store().clone();
        async move {
            store
                .list(c)
                .await
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(keys(Collection::OAuthDevices).await, vec!["live"]);
    assert_eq!(keys(Collection::OAuthUserCodes).await, vec!["CCCC-CCCC"]);
}

#[tokio::test]
async fn idle_timeout_is_validated_and_stored() {
    let (cp, admin, _user, _d) = setup().await;
    for bad_value in [1, 99, 86_400_001, u32::MAX] {
        let before = cp.store().revision().await.unwrap();
        let mut bad = proxy("idle.example.com");
        bad.idle_timeout_ms = Some(bad_value);
        let err = cp.create_proxy(&admin, bad).await.unwrap_err();
        assert!(
            matches!(
                err,
                ServiceError::Invalid {
                    field: "idle_timeout_ms",
                    ..
                }
            ),
            "{bad_value}: {err}"
        );
        assert_eq!(cp.store().revision().await.unwrap(), before);
    }
    assert!(cp.list_proxies(&admin).await.unwrap().is_empty());

    let mut good = proxy("idle.example.com");
    good.idle_timeout_ms = Some(500);
    assert_eq!(
        cp.create_proxy(&admin, good).await.unwrap().idle_timeout_ms,
        500
    );
    let bad = ProxyPatch {
        idle_timeout_ms: Some(50),
        ..Default::default()
    };
    let err = cp
        .update_proxy(&admin, "idle.example.com", bad)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ServiceError::Invalid {
                field: "idle_timeout_ms",
                ..
            }
        ),
        "{err}"
    );
    let kept = cp.get_proxy(&admin, "idle.example.com").await.unwrap();
    assert_eq!(kept.idle_timeout_ms, 500);
    assert_eq!(
        portcullis_proto::v1::ProxyTarget::from(kept).idle_timeout_ms,
        500
    );
    let reset = ProxyPatch {
        idle_timeout_ms: Some(0),
        ..Default::default()
    };
    let updated = cp
        .update_proxy(&admin, "idle.example.com", reset)
        .await
        .unwrap();
    assert_eq!(updated.idle_timeout_ms, 0);
}

#[tokio::test]
async fn request_body_limit_is_validated_and_stored() {
    let (cp, admin, _user, _d) = setup().await;
    let invalid = |err: &ServiceError| {
        matches!(
            err,
            ServiceError::Invalid {
                field: "max_request_body_bytes",
                ..
            }
        )
    };
    for bad_value in [1, 1023] {
        let mut bad = proxy("body.example.com");
        bad.max_request_body_bytes = Some(bad_value);
        let err = cp.create_proxy(&admin, bad).await.unwrap_err();
        assert!(invalid(&err), "{bad_value}: {err}");
    }
    assert!(cp.list_proxies(&admin).await.unwrap().is_empty());

    let created = cp
        .create_proxy(&admin, proxy("body.example.com"))
        .await
        .unwrap();
    assert_eq!(created.max_request_body_bytes, 0, "no limit by default");
    let set = ProxyPatch {
        max_request_body_bytes: Some(10 << 20),
        ..Default::default()
    };
    cp.update_proxy(&admin, "body.example.com", set)
        .await
        .unwrap();
    let bad = ProxyPatch {
        max_request_body_bytes: Some(100),
        ..Default::default()
    };
    let err = cp
        .update_proxy(&admin, "body.example.com", bad)
        .await
        .unwrap_err();
    assert!(invalid(&err), "{err}");
    let kept = cp.get_proxy(&admin, "body.example.com").await.unwrap();
    assert_eq!(kept.max_request_body_bytes, 10 << 20);
    assert_eq!(
        portcullis_proto::v1::ProxyTarget::from(kept).max_request_body_bytes,
        10 << 20
    );
}
