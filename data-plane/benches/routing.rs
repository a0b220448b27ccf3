//! Request-path lookup cost at 10,000 proxies and 20,000 routes, and the cost of compiling a
//! snapshot of that size.
//!
//! The configuration has the same shape as the one `bench/cp-bench` creates through the REST
//! API: proxy `i` is `p{i}.bulk.bench.test`, except every tenth, which is the wildcard
//! `*.w{i}.bulk.bench.test`; each proxy has two scoped routes, a `/api/` prefix and either an
//! exact `/health` or, for every fifth proxy, the regex `^/v[0-9]+/items/[0-9]+$`.
//!
//! Run: `cargo bench -p portcullis-data-plane --bench routing`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{Method, Request};
use portcullis_data_plane::config::Snapshot;
use portcullis_data_plane::upstream::ClientCache;
use portcullis_data_plane::vhost;
use portcullis_proto::v1 as pb;

const PROXIES: usize = 10_000;
const TARGET: &str = "http://127.0.0.1:18001";
const REGEX: &str = r"^/v[0-9]+/items/[0-9]+$";

fn hostname(i: usize) -> String {
    if i.is_multiple_of(10) {
        format!("*.w{i}.bulk.bench.test")
    } else {
        format!("p{i}.bulk.bench.test")
    }
}

fn route(i: usize, r: usize) -> pb::Route {
    let (kind, pattern) = match r {
        0 => (pb::PathMatchKind::Prefix, "/api/"),
        _ if i.is_multiple_of(5) => (pb::PathMatchKind::Regex, REGEX),
        _ => (pb::PathMatchKind::Exact, "/health"),
    };
    pb::Route {
        id: format!("b{i}-{r}"),
        priority: 50,
        match_kind: kind as i32,
        path_pattern: pattern.to_owned(),
        target_kind: pb::RouteTargetKind::Url as i32,
        target_value: TARGET.to_owned(),
        proxy_hostnames: vec![hostname(i)],
        enabled: true,
        ..Default::default()
    }
}

fn snapshot() -> pb::ConfigSnapshot {
    pb::ConfigSnapshot {
        version: 1,
        proxies: (0..PROXIES)
            .map(|i| pb::ProxyTarget {
                hostname: hostname(i),
                target_url: TARGET.to_owned(),
                enabled: true,
                enable_http: true,
                ..Default::default()
            })
            .collect(),
        routes: (0..PROXIES)
            .flat_map(|i| [route(i, 0), route(i, 1)])
            .collect(),
        ..Default::default()
    }
}

/// Host lookup, policy, route selection: phases 1–3 of the request path.
fn resolve(snapshot: &Snapshot, host: &str, req: &mut Request<()>) -> bool {
    let Ok(Some(proxy)) = snapshot.http_hosts().lookup(host) else {
        return false;
    };
    let origin = portcullis_data_plane::auth::Origin::new(false, host);
    let Ok(admitted) = vhost::admit(proxy, &origin, req) else {
        return false;
    };
    black_box(admitted.upstream());
    admitted.route().is_some()
}

fn request(host: &str, path: &str) -> Request<()> {
    Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(http::header::HOST, host)
        .body(())
        .expect("valid request")
}

fn lookup(c: &mut Criterion) {
    let clients = ClientCache::new();
    let compiled = Snapshot::compile(&snapshot(), &clients).expect("snapshot compiles");
    // (name, Host, path, whether a route (not the fallback) must match)
    let cases = [
        (
            "exact_host_prefix_route",
            "p4321.bulk.bench.test:8080",
            "/api/users",
            Some(true),
        ),
        (
            "exact_host_fallback",
            "p4321.bulk.bench.test",
            "/",
            Some(false),
        ),
        (
            "wildcard_host",
            "a.b.w4320.bulk.bench.test",
            "/api/users",
            Some(true),
        ),
        (
            "regex_route",
            "p4325.bulk.bench.test",
            "/v2/items/12345",
            Some(true),
        ),
        (
            "regex_proxy_prefix_route",
            "p4325.bulk.bench.test",
            "/api/users",
            Some(true),
        ),
        ("unknown_host", "nope.example.org", "/", None),
    ];
    let mut group = c.benchmark_group("lookup_10k_proxies_20k_routes");
    for (name, host, path, expect) in cases {
        let mut req = request(host, path);
        let found = snapshot_resolves(&compiled, host, &mut req);
        assert_eq!(found, expect, "{name}: unexpected lookup result");
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| resolve(&compiled, black_box(host), black_box(&mut req)));
        });
    }
    group.finish();
}

/// `None` when the host is unknown, else whether a route matched.
fn snapshot_resolves(snapshot: &Snapshot, host: &str, req: &mut Request<()>) -> Option<bool> {
    snapshot.http_hosts().lookup(host).ok()??;
    Some(resolve(snapshot, host, req))
}

/// Compiling the same snapshot again: the steady state after a one-object write, where
/// target URLs and regexes come from the memo of the previous compile (a first compile
/// parses every URL and costs several times more).
fn compile(c: &mut Criterion) {
    let clients = ClientCache::new();
    let wire = snapshot();
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    group.bench_function("10k_proxies_20k_routes", |b| {
        b.iter(|| Snapshot::compile(black_box(&wire), &clients).expect("snapshot compiles"));
    });
    group.finish();
}

criterion_group!(benches, lookup, compile);
criterion_main!(benches);
