use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{Method, Request};
use portcullis_proto::v1 as pb;

use super::https::hsts_header;
use super::*;
use crate::{answer, vhost};

fn clients() -> ClientCache {
    ClientCache::with_roots(rustls::RootCertStore::empty())
}

fn proxy(host: &str, target: &str) -> pb::ProxyTarget {
    pb::ProxyTarget {
        hostname: host.into(),
        target_url: target.into(),
        enabled: true,
        enable_http: true,
        ..Default::default()
    }
}

fn route(id: &str, prio: u32, kind: pb::PathMatchKind, pattern: &str) -> pb::Route {
    pb::Route {
        id: id.into(),
        priority: prio,
        match_kind: kind as i32,
        path_pattern: pattern.into(),
        target_kind: pb::RouteTargetKind::Url as i32,
        target_value: format!("http://{id}:80"),
        enabled: true,
        ..Default::default()
    }
}

fn snapshot(
    proxies: Vec<pb::ProxyTarget>,
    routes: Vec<pb::Route>,
    services: Vec<pb::ExternalService>,
) -> pb::ConfigSnapshot {
    pb::ConfigSnapshot {
        version: 7,
        proxies,
        routes,
        services,
        ..Default::default()
    }
}

fn compile(s: &pb::ConfigSnapshot) -> Snapshot {
    Snapshot::compile(s, &clients()).unwrap_or_else(|e| panic!("{e}"))
}

fn compile_err(s: &pb::ConfigSnapshot) -> CompileError {
    match Snapshot::compile(s, &clients()) {
        Ok(_) => panic!("snapshot should not compile"),
        Err(e) => e,
    }
}

fn origin(host: &str) -> crate::auth::Origin<'_> {
    crate::auth::Origin::new(false, host)
}

fn found<'a>(snap: &'a Snapshot, host: &str) -> &'a Arc<Proxy> {
    match snap.http_hosts().lookup(host) {
        Ok(Some(p)) => p,
        other => panic!("{host}: {other:?}"),
    }
}

/// (route id or "-", upstream target) for a request.
fn resolve(snap: &Snapshot, host: &str, method: Method, path: &str) -> (String, String) {
    let proxy = found(snap, host);
    let mut req = request(method, path);
    let admitted = vhost::admit(proxy, &origin(host), &mut req).unwrap_or_else(|r| panic!("{r:?}"));
    (
        admitted.route().map_or("-".into(), |r| r.id().to_owned()),
        admitted.upstream().target().to_string(),
    )
}

fn request(method: Method, path: &str) -> Request<()> {
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = path.parse().unwrap_or_else(|e| panic!("{path}: {e}"));
    req
}

#[test]
fn global_and_scoped_routes() {
    let mut scoped = route("scoped", 5, pb::PathMatchKind::Prefix, "/s");
    scoped.proxy_hostnames = vec!["A.example.com".into()];
    let global = route("global", 1, pb::PathMatchKind::Prefix, "/");
    let mut disabled = route("disabled", 99, pb::PathMatchKind::Prefix, "/");
    disabled.enabled = false;
    disabled.path_pattern = "(".into(); // never validated
    let snap = compile(&snapshot(
        vec![
            proxy("a.example.com", "http://a:1"),
            proxy("b.example.com", "http://b:2/base/"),
        ],
        vec![scoped, global, disabled],
        vec![],
    ));
    assert_eq!(snap.version(), 7);
    assert_eq!(
        resolve(&snap, "a.example.com", Method::GET, "/s/x"),
        ("scoped".into(), "http://scoped".into())
    );
    assert_eq!(
        resolve(&snap, "b.example.com", Method::GET, "/s/x"),
        ("global".into(), "http://global".into())
    );
    let order: Vec<_> = found(&snap, "a.example.com").route_order().collect();
    assert_eq!(order, ["scoped", "global"]);
    let order: Vec<_> = found(&snap, "b.example.com").route_order().collect();
    assert_eq!(order, ["global"]);
}

#[test]
fn no_route_uses_the_proxy_target() {
    let snap = compile(&snapshot(
        vec![proxy("a.example.com", "http://a:1/base/")],
        vec![],
        vec![],
    ));
    assert_eq!(
        resolve(&snap, "a.example.com", Method::GET, "/x"),
        ("-".into(), "http://a:1/base".into())
    );
}

#[test]
fn disabled_and_http_off_proxies_are_not_served() {
    let mut off = proxy("off.example.com", "http://off:1");
    off.enabled = false;
    let mut https_only = proxy("tls.example.com", "http://tls:1");
    https_only.enable_http = false;
    let snap = compile(&snapshot(
        vec![off, https_only, proxy("on.example.com", "http://on:1")],
        vec![],
        vec![],
    ));
    assert!(matches!(
        snap.http_hosts().lookup("off.example.com"),
        Ok(None)
    ));
    assert!(matches!(
        snap.http_hosts().lookup("tls.example.com"),
        Ok(None)
    ));
    assert_eq!(snap.http_hosts().len(), 1);
}

#[test]
fn service_and_proxy_targets_link() {
    let mut to_service = route("svc", 2, pb::PathMatchKind::Exact, "/svc");
    to_service.target_kind = pb::RouteTargetKind::Service as i32;
    to_service.target_value = "billing".into();
    let mut to_proxy = route("prx", 1, pb::PathMatchKind::Regex, "^/p");
    to_proxy.target_kind = pb::RouteTargetKind::Proxy as i32;
    to_proxy.target_value = "Other.example.com".into();
    let mut other = proxy("other.example.com", "http://other:9/o");
    other.enabled = false; // still a valid PROXY target
    other.read_timeout_ms = 1234;
    let mut front = proxy("front.example.com", "http://front:1");
    front.read_timeout_ms = 50;
    other.idle_timeout_ms = 500;
    let snap = compile(&snapshot(
        vec![front, other],
        vec![to_service, to_proxy],
        vec![pb::ExternalService {
            name: "billing".into(),
            target_url: "https://billing.internal:8443/v1".into(),
            ..Default::default()
        }],
    ));
    assert_eq!(
        resolve(&snap, "front.example.com", Method::GET, "/svc"),
        ("svc".into(), "https://billing.internal:8443/v1".into())
    );
    assert_eq!(
        resolve(&snap, "front.example.com", Method::GET, "/p/x"),
        ("prx".into(), "http://other:9/o".into())
    );
    // SERVICE uses the matched proxy's settings, PROXY the target proxy's.
    let proxy = found(&snap, "front.example.com");
    let read_timeout = |path: &str| {
        let mut req = request(Method::GET, path);
        vhost::admit(proxy, &origin("front.example.com"), &mut req)
            .unwrap_or_else(|r| panic!("{r:?}"))
            .upstream()
            .settings()
            .read_timeout
    };
    assert_eq!(read_timeout("/svc"), Duration::from_millis(50));
    assert_eq!(read_timeout("/p"), Duration::from_millis(1234));
    assert_eq!(read_timeout("/"), Duration::from_millis(50));
    let idle_timeout = |path: &str| {
        let mut req = request(Method::GET, path);
        vhost::admit(proxy, &origin("front.example.com"), &mut req)
            .unwrap_or_else(|r| panic!("{r:?}"))
            .upstream()
            .settings()
            .idle_timeout
    };
    assert_eq!(idle_timeout("/"), crate::upstream::DEFAULT_IDLE_TIMEOUT);
    assert_eq!(idle_timeout("/p"), Duration::from_millis(500));
}

#[test]
fn missing_service_names_the_route() {
    let mut r = route("r-42", 1, pb::PathMatchKind::Prefix, "/");
    r.target_kind = pb::RouteTargetKind::Service as i32;
    r.target_value = "ghost".into();
    let err = compile_err(&snapshot(vec![], vec![r], vec![]));
    let text = err.to_string();
    assert!(text.contains("r-42") && text.contains("ghost"), "{text}");
    match err {
        CompileError::Route { id, source } => {
            assert_eq!(id, "r-42");
            assert_eq!(source.field(), "target_value");
            assert!(matches!(source.reason(), Reason::UnknownService(s) if s == "ghost"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_proxy_target_is_an_error() {
    let mut r = route("to-nowhere", 1, pb::PathMatchKind::Prefix, "/");
    r.target_kind = pb::RouteTargetKind::Proxy as i32;
    r.target_value = "nowhere.example.com".into();
    let err = compile_err(&snapshot(vec![], vec![r], vec![]));
    assert!(matches!(err, CompileError::Route { ref id, .. } if id == "to-nowhere"));
}

#[test]
fn bad_regex_names_the_route() {
    let r = route("bad-re", 1, pb::PathMatchKind::Regex, "([a-z");
    let err = compile_err(&snapshot(vec![], vec![r], vec![]));
    let text = err.to_string();
    assert!(
        text.contains("bad-re") && text.contains("path_pattern"),
        "{text}"
    );
    assert!(matches!(
        err,
        CompileError::Route { ref source, .. } if matches!(source.reason(), Reason::Regex(_))
    ));
}

#[test]
fn oversized_regex_is_rejected() {
    let r = route(
        "huge",
        1,
        pb::PathMatchKind::Regex,
        r"\w{1000}\w{1000}\w{1000}",
    );
    let err = compile_err(&snapshot(vec![], vec![r], vec![]));
    assert!(matches!(err, CompileError::Route { ref id, .. } if id == "huge"));
}

#[test]
fn other_route_errors() {
    let cases = [
        (
            route("p", 1, pb::PathMatchKind::Prefix, "api"),
            "path_pattern",
        ),
        (
            route("e", 1, pb::PathMatchKind::Exact, "/a b"),
            "path_pattern",
        ),
        (
            route("u", 1, pb::PathMatchKind::Unspecified, "/"),
            "match_kind",
        ),
        (
            pb::Route {
                methods: vec!["G E T".into()],
                ..route("m", 1, pb::PathMatchKind::Prefix, "/")
            },
            "methods",
        ),
        (
            pb::Route {
                target_value: "ftp://x".into(),
                ..route("t", 1, pb::PathMatchKind::Prefix, "/")
            },
            "target_value",
        ),
    ];
    for (r, field) in cases {
        let id = r.id.clone();
        match compile_err(&snapshot(vec![], vec![r], vec![])) {
            CompileError::Route { id: got, source } => {
                assert_eq!((got.as_str(), source.field()), (id.as_str(), field));
            }
            other => panic!("{id}: {other:?}"),
        }
    }
}

#[test]
fn proxy_errors() {
    let bad_header = pb::ProxyTarget {
        custom_request_headers: HashMap::from([("bad header".into(), "x".into())]),
        ..proxy("a.example.com", "http://a:1")
    };
    let reserved = pb::ProxyTarget {
        custom_response_headers: HashMap::from([("Transfer-Encoding".into(), "x".into())]),
        ..proxy("a.example.com", "http://a:1")
    };
    let bad_value = pb::ProxyTarget {
        custom_request_headers: HashMap::from([("x-a".into(), "line\nbreak".into())]),
        ..proxy("a.example.com", "http://a:1")
    };
    let cases = [
        (bad_header, "custom_request_headers"),
        (reserved, "custom_response_headers"),
        (bad_value, "custom_request_headers"),
        (proxy("a.example.com", "http://u:p@a:1"), "target_url"),
        (proxy("a.example.com", "http://a:1/?q=1"), "target_url"),
        (proxy("a.example.com", "/relative"), "target_url"),
        (proxy("bad_host", "http://a:1"), "hostname"),
    ];
    for (p, field) in cases {
        match compile_err(&snapshot(vec![p], vec![], vec![])) {
            CompileError::Proxy { source, .. } => assert_eq!(source.field(), field),
            other => panic!("{other:?}"),
        }
    }
    let dup = compile_err(&snapshot(
        vec![
            proxy("a.example.com", "http://a:1"),
            proxy("A.example.com.", "http://a:2"),
        ],
        vec![],
        vec![],
    ));
    assert!(matches!(dup, CompileError::DuplicateHostname(ref h) if h == "a.example.com"));
}

#[test]
fn target_uri_joining() {
    let join = |target: &str, pq: Option<&str>| {
        let t = Target::parse(target).unwrap_or_else(|e| panic!("{e}"));
        let pq = pq.map(|p| PathAndQuery::try_from(p).unwrap_or_else(|e| panic!("{e}")));
        t.uri_for(pq.as_ref())
            .unwrap_or_else(|e| panic!("{e}"))
            .to_string()
    };
    assert_eq!(
        join("http://b:8080/base", Some("/x?y")),
        "http://b:8080/base/x?y"
    );
    assert_eq!(
        join("http://b:8080/base/", Some("/x?y")),
        "http://b:8080/base/x?y"
    );
    assert_eq!(
        join("http://b:8080", Some("/x?y=1&z")),
        "http://b:8080/x?y=1&z"
    );
    assert_eq!(join("http://b:8080/", Some("/")), "http://b:8080/");
    assert_eq!(join("http://b/base", Some("/")), "http://b/base/");
    assert_eq!(join("http://b/base", None), "http://b/base");
    assert_eq!(join("https://b:443/a", Some("/x")), "https://b/a/x");
    assert_eq!(join("http://[::1]:9/", Some("/x")), "http://[::1]:9/x");
    let t = Target::parse("http://B.Example:8080/p").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.host_header(), "b.example:8080");
}

#[test]
fn unenforceable_auth_modes_fail_closed() {
    for mode in ["redirect", "", "sso-of-the-future"] {
        let p = pb::ProxyTarget {
            auth: Some(pb::ProxyAuthPolicy {
                enabled: true,
                mode: mode.into(),
                ..Default::default()
            }),
            ..proxy("a.example.com", "http://a:1")
        };
        let snap = compile(&snapshot(vec![p], vec![], vec![]));
        let proxy = found(&snap, "a.example.com");
        let mut req = Request::new(());
        let rejection = vhost::admit(proxy, &origin("a.example.com"), &mut req).err();
        assert_eq!(
            rejection.map(|r| r.status()),
            Some(http::StatusCode::SERVICE_UNAVAILABLE),
            "mode {mode:?}"
        );
    }
}

#[test]
fn disabled_auth_policy_leaves_the_proxy_open() {
    let p = pb::ProxyTarget {
        auth: Some(pb::ProxyAuthPolicy {
            enabled: false,
            mode: "forward".into(),
            ..Default::default()
        }),
        ..proxy("a.example.com", "http://a:1")
    };
    let snap = compile(&snapshot(vec![p], vec![], vec![]));
    let mut req = Request::new(());
    let proxy = found(&snap, "a.example.com");
    assert!(vhost::admit(proxy, &origin("a.example.com"), &mut req).is_ok());
}

#[test]
fn malformed_auth_settings_are_rejected_with_the_field() {
    let bad = |auth: pb::ProxyAuthPolicy| {
        let p = pb::ProxyTarget {
            auth: Some(pb::ProxyAuthPolicy {
                enabled: true,
                mode: "forward".into(),
                ..auth
            }),
            ..proxy("a.example.com", "http://a:1")
        };
        compile_err(&snapshot(vec![p], vec![], vec![])).to_string()
    };
    let e = bad(pb::ProxyAuthPolicy {
        public_paths: vec!["/health/../admin".into()],
        ..Default::default()
    });
    assert!(e.contains("auth.public_paths"), "{e}");
    let e = bad(pb::ProxyAuthPolicy {
        public_paths: vec!["/".into()],
        ..Default::default()
    });
    assert!(e.contains("every path public"), "{e}");
    let e = bad(pb::ProxyAuthPolicy {
        required_scopes: vec!["two words".into()],
        ..Default::default()
    });
    assert!(e.contains("auth.required_scopes"), "{e}");
    let e = bad(pb::ProxyAuthPolicy {
        resource_metadata_json: "[1]".into(),
        ..Default::default()
    });
    assert!(e.contains("auth.resource_metadata_json"), "{e}");
    let e = bad(pb::ProxyAuthPolicy {
        resource_documentation: "javascript:alert(1)".into(),
        ..Default::default()
    });
    assert!(e.contains("auth.resource_documentation"), "{e}");
    for endpoint in ["/", "mcp", "/a/../b", "/mcp/", "/a%2fb", "/a\"b"] {
        let e = bad(pb::ProxyAuthPolicy {
            resource_endpoint: endpoint.into(),
            ..Default::default()
        });
        assert!(e.contains("auth.resource_endpoint"), "{endpoint}: {e}");
    }
    let e = bad(pb::ProxyAuthPolicy {
        allowed_origins: vec!["*".into()],
        ..Default::default()
    });
    assert!(e.contains("auth.allowed_origins"), "{e}");
}

#[test]
fn unusable_keys_or_revocations_reject_the_snapshot() {
    let mut s = snapshot(vec![], vec![], vec![]);
    s.jwks_json = "{\"nokeys\": 1}".into();
    assert!(matches!(compile_err(&s), CompileError::Auth(_)));
    let mut s = snapshot(vec![], vec![], vec![]);
    s.revocations = vec![pb::Revocation {
        kind: "family".into(),
        value: "f".into(),
        ..Default::default()
    }];
    let e = compile_err(&s).to_string();
    assert!(e.contains("unsupported kind \"family\""), "{e}");
}

#[test]
fn hsts_header_formatting() {
    let hsts = |max_age_secs, include_subdomains, preload| {
        hsts_header(Some(&pb::HstsPolicy {
            max_age_secs,
            include_subdomains,
            preload,
        }))
        .map(|v| v.to_str().unwrap_or_default().to_owned())
    };
    assert_eq!(hsts(300, false, false).as_deref(), Some("max-age=300"));
    assert_eq!(
        hsts(31_536_000, true, true).as_deref(),
        Some("max-age=31536000; includeSubDomains; preload")
    );
    assert_eq!(
        hsts(60, false, true).as_deref(),
        Some("max-age=60; preload")
    );
    assert_eq!(hsts(0, true, true), None);
    assert_eq!(hsts_header(None), None);
}

#[test]
fn https_flags_pick_host_tables() {
    let mut both = proxy("both.test", "http://b:1");
    both.enable_https = true;
    both.hsts = Some(pb::HstsPolicy {
        max_age_secs: 10,
        ..Default::default()
    });
    let mut tls_only = proxy("tls.test", "http://t:1");
    tls_only.enable_http = false;
    tls_only.enable_https = true;
    // Redirecting puts an HTTP-off proxy on the HTTP table, only to redirect.
    let mut redirect = tls_only.clone();
    redirect.hostname = "redirect.test".into();
    redirect.redirect_http_to_https = true;
    // A redirect to a listener that does not serve the host is ignored.
    let mut no_https = proxy("plain.test", "http://p:1");
    no_https.redirect_http_to_https = true;
    let snap = compile(&snapshot(
        vec![both, tls_only, redirect, no_https],
        vec![],
        vec![],
    ));
    let on = |table: &HostTable<Arc<Proxy>>, host: &str| -> Option<bool> {
        match table.lookup(host) {
            Ok(Some(p)) => Some(p.https().redirects_to_https()),
            _ => None,
        }
    };
    assert_eq!(on(snap.http_hosts(), "both.test"), Some(false));
    assert_eq!(on(snap.https_hosts(), "both.test"), Some(false));
    assert_eq!(on(snap.http_hosts(), "tls.test"), None);
    assert_eq!(on(snap.https_hosts(), "tls.test"), Some(false));
    assert_eq!(on(snap.http_hosts(), "redirect.test"), Some(true));
    assert_eq!(on(snap.http_hosts(), "plain.test"), Some(false));
    assert_eq!(on(snap.https_hosts(), "plain.test"), None);
    let hsts = found(&snap, "both.test").https().hsts().cloned();
    assert_eq!(hsts, Some(http::HeaderValue::from_static("max-age=10")));
}

#[test]
fn redirect_mode_needs_a_key_and_an_issuer_and_sends_page_loads_to_log_in() {
    let redirect = |key: Vec<u8>| pb::ProxyTarget {
        auth: Some(pb::ProxyAuthPolicy {
            enabled: true,
            mode: "redirect".into(),
            session_key: key,
            ..Default::default()
        }),
        ..proxy("a.example.com", "http://a:1")
    };
    let e = compile_err(&snapshot(vec![redirect(vec![1; 16])], vec![], vec![])).to_string();
    assert!(e.contains("auth.session_key"), "{e}");
    let page = || {
        Request::get("/app")
            .header(http::header::ACCEPT, "text/html")
            .body(())
            .unwrap_or_default()
    };
    // No issuer: nowhere to log in, so fail closed.
    let snap = compile(&snapshot(vec![redirect(vec![1; 32])], vec![], vec![]));
    let refused = vhost::admit(
        found(&snap, "a.example.com"),
        &origin("a.example.com"),
        &mut page(),
    );
    assert_eq!(
        refused.err().map(|r| r.status()),
        Some(http::StatusCode::SERVICE_UNAVAILABLE)
    );
    let mut s = snapshot(vec![redirect(vec![1; 32])], vec![], vec![]);
    s.oauth_issuer = "https://auth.example.com".into();
    let snap = compile(&s);
    let proxy = found(&snap, "a.example.com");
    let answer = vhost::admit(proxy, &origin("a.example.com"), &mut page())
        .err()
        .map(answer::Rejection::into_response);
    let answer = answer.unwrap_or_else(|| panic!("page load admitted without a session"));
    assert_eq!(answer.status(), http::StatusCode::FOUND);
    let location = answer.headers()[http::header::LOCATION]
        .to_str()
        .unwrap_or_default();
    assert!(
        location.starts_with("https://auth.example.com/authorize?response_type=code&client_id=portcullis-edge%3Aa.example.com&"),
        "{location}"
    );
    // Not a page load: 401, no redirect.
    let mut api = Request::new(());
    let refused = vhost::admit(proxy, &origin("a.example.com"), &mut api).err();
    assert_eq!(
        refused.map(|r| r.status()),
        Some(http::StatusCode::UNAUTHORIZED)
    );
}

#[test]
fn a_marked_compile_is_given_up_only_before_its_deadline() {
    let s = snapshot(vec![proxy("a.test", "http://up:80")], vec![], vec![]);
    let later = std::time::Instant::now() + Duration::from_secs(60);

    let unmarked = Superseded::until(later);
    let compiled = Snapshot::compile_unless_superseded(&s, &clients(), &unmarked);
    assert!(compiled.is_ok(), "an unmarked compile runs to its end");

    let marked = Superseded::until(later);
    marked.mark();
    let given_up = Snapshot::compile_unless_superseded(&s, &clients(), &marked);
    assert!(matches!(given_up, Err(CompileError::Superseded)));

    let overdue = Superseded::until(std::time::Instant::now());
    overdue.mark();
    let compiled = Snapshot::compile_unless_superseded(&s, &clients(), &overdue);
    assert_eq!(
        compiled.map(|c| c.version()).ok(),
        Some(7),
        "past the deadline it finishes"
    );

    let never = Superseded::never();
    never.mark();
    assert!(Snapshot::compile_unless_superseded(&s, &clients(), &never).is_ok());
}
