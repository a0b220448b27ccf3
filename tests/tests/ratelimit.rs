//! Abuse limits through a real data plane fed by a real control plane: a per-proxy rate
//! limit holds under sustained concurrent load (429 with `Retry-After`) without touching
//! another proxy, and a concurrency cap lets exactly N requests reach a slow backend.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis_tests::browser::{self, alice, github_login};
use portcullis_tests::{Backend, ControlPlane, DataPlane, eventually, http_client};
use reqwest::StatusCode;
use serde_json::json;
use tokio::net::TcpListener;

async fn sync(cp: &ControlPlane, dp: &DataPlane) {
    let v = cp.version().await;
    cp.wait_applied(&dp.node_id, v).await;
}

/// Tallies of one load run.
#[derive(Debug, Default)]
struct Tally {
    ok: AtomicU64,
    limited: AtomicU64,
    other: AtomicU64,
    /// 429s without a `Retry-After` of whole seconds >= 1.
    bad_retry_after: AtomicU64,
}

/// One concurrent keep-alive loop of GET `host` until `until` per client.
async fn load(
    dp: &DataPlane,
    host: &str,
    clients: Vec<reqwest::Client>,
    until: Instant,
) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let (tally, url, host) = (tally.clone(), format!("{}/", dp.http), host.to_owned());
            tokio::spawn(async move {
                while Instant::now() < until {
                    let Ok(r) = client.get(&url).header("host", &host).send().await else {
                        tally.other.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let counter = match r.status() {
                        StatusCode::OK => &tally.ok,
                        StatusCode::TOO_MANY_REQUESTS => {
                            let secs = r
                                .headers()
                                .get("retry-after")
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.parse::<u64>().ok());
                            if !matches!(secs, Some(1..)) {
                                tally.bad_retry_after.fetch_add(1, Ordering::Relaxed);
                            }
                            &tally.limited
                        }
                        _ => &tally.other,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    let _ = r.bytes().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("load task");
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rate_limit_holds_under_load_and_leaves_other_proxies_alone() {
    let cp = ControlPlane::start().await;
    let dp = DataPlane::start(&cp, "dp-ratelimit").await;
    let backend = Backend::start("rl").await;

    cp.cli_ok(&[
        "proxy",
        "create",
        "limited.test",
        &backend.url,
        "--rate-limit",
        "25",
        "--rate-burst",
        "25",
    ]);
    // The neighbour, made through REST, has the same limit and the same client address
    // (the key), but its own state: paced below the limit, it is never refused.
    let created = http_client()
        .post(format!("{}/api/v1/proxy/targets", cp.http))
        .bearer_auth(&cp.admin_token)
        .json(&json!({
            "hostname": "neighbour.test",
            "target_url": backend.url,
            "rate_limit_rps": 25,
            "rate_limit_burst": 25,
            "rate_limit_key": "ip",
        }))
        .send()
        .await
        .expect("REST create");
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: serde_json::Value = created.json().await.expect("json");
    assert_eq!(created["rate_limit_rps"], 25);
    assert_eq!(created["rate_limit_burst"], 25);
    assert_eq!(created["rate_limit_key"], "ip");
    assert_eq!(created["max_concurrent_requests"], 0);
    sync(&cp, &dp).await;
    // The CLI shows the limit as stored.
    let shown = cp.cli_ok(&["proxy", "show", "limited.test"]);
    assert!(shown.contains("25/s burst 25 per ip"), "{shown}");

    // Clients are made before the clock starts: building one takes a while in a debug
    // build, and the load must be on from the first moment of the measured span.
    let clients: Vec<_> = (0..16).map(|_| http_client()).collect();
    let client = http_client();
    let probe = http_client();
    let started = Instant::now();
    let until = started + Duration::from_secs(3);
    let neighbour = {
        let url = format!("{}/", dp.http);
        tokio::spawn(async move {
            let (mut ok, mut other) = (0u64, 0u64);
            while Instant::now() < until {
                match client
                    .get(&url)
                    .header("host", "neighbour.test")
                    .send()
                    .await
                {
                    Ok(r) if r.status() == StatusCode::OK => ok += 1,
                    _ => other += 1,
                }
                // At most 10 a second: well below the limit, whatever the latency.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (ok, other)
        })
    };
    let tally = load(&dp, "limited.test", clients, until).await;
    let elapsed = started.elapsed().as_secs_f64();
    let (neighbour_ok, neighbour_other) = neighbour.await.expect("neighbour");

    let ok = tally.ok.load(Ordering::Relaxed);
    let limited = tally.limited.load(Ordering::Relaxed);
    // Burst + rate x duration. A burst of a second's worth also keeps the count exact
    // when a starved machine leaves gaps in the load (credit builds up to the burst).
    let expected = 25.0 + 25.0 * elapsed;
    eprintln!(
        "limited.test: {ok} admitted, {limited} refused in {elapsed:.2} s (expected {expected:.0}); neighbour: {neighbour_ok} ok"
    );
    assert!(
        limited > 5 * ok,
        "the load must be well above the limit: {ok} admitted, {limited} refused"
    );
    assert!(
        (ok as f64 - expected).abs() <= 0.1 * expected,
        "admitted {ok}, expected {expected:.0} ± 10 %"
    );
    assert_eq!(tally.other.load(Ordering::Relaxed), 0, "{tally:?}");
    assert_eq!(
        tally.bad_retry_after.load(Ordering::Relaxed),
        0,
        "{tally:?}"
    );
    assert!(neighbour_ok > 3, "neighbour barely ran: {neighbour_ok}");
    assert_eq!(neighbour_other, 0, "the neighbour must be unaffected");

    // A 429 names when to come back, and waiting that long is enough: 60 requests at
    // once use up whatever refilled since the load, so some of them are refused. (No
    // "one more" probe after them: at 25/s a token refills every 40 ms, which a loaded
    // machine can take between two requests.)
    let get = |client: reqwest::Client| {
        let url = format!("{}/", dp.http);
        async move {
            client
                .get(url)
                .header("host", "limited.test")
                .send()
                .await
                .expect("request through data plane")
        }
    };
    let drained = futures_util::future::join_all((0..60).map(|_| get(probe.clone()))).await;
    let r = drained
        .iter()
        .find(|r| r.status() == StatusCode::TOO_MANY_REQUESTS)
        .expect("a burst of 60 at once is refused in part");
    let secs: u64 = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in whole seconds");
    assert_eq!(secs, 1);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    assert_eq!(get(probe.clone()).await.status(), StatusCode::OK);

    // Turning the limit off takes effect with the next snapshot.
    cp.cli_ok(&["proxy", "update", "limited.test", "--rate-limit", "0"]);
    sync(&cp, &dp).await;
    let unlimited = futures_util::future::join_all((0..100).map(|_| get(probe.clone()))).await;
    assert!(unlimited.iter().all(|r| r.status() == StatusCode::OK));
}

/// A backend that holds `/slow` for three seconds and streams `/stream` (first chunk at once,
/// the last one after 800 ms), counting requests in its handler and the peak at once.
struct SlowBackend {
    url: String,
    in_flight: Arc<AtomicU64>,
    peak: Arc<AtomicU64>,
    reached: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SlowBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Body = BoxBody<Bytes, Infallible>;

impl SlowBackend {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let in_flight = Arc::new(AtomicU64::new(0));
        let peak = Arc::new(AtomicU64::new(0));
        let reached = Arc::new(AtomicU64::new(0));
        let counters = (in_flight.clone(), peak.clone(), reached.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let counters = counters.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (in_flight, peak, reached) = counters.clone();
                        async move {
                            reached.fetch_add(1, Ordering::SeqCst);
                            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            let body: Body = if req.uri().path() == "/stream" {
                                in_flight.fetch_sub(1, Ordering::SeqCst);
                                let chunks = futures_util::stream::unfold(0u8, |i| async move {
                                    match i {
                                        0 => Some((Ok(Frame::data(Bytes::from("a"))), 1)),
                                        1 => {
                                            tokio::time::sleep(Duration::from_millis(800)).await;
                                            Some((Ok(Frame::data(Bytes::from("b"))), 2))
                                        }
                                        _ => None,
                                    }
                                });
                                BodyExt::boxed(StreamBody::new(chunks))
                            } else {
                                tokio::time::sleep(Duration::from_secs(3)).await;
                                in_flight.fetch_sub(1, Ordering::SeqCst);
                                Full::new(Bytes::from("done")).boxed()
                            };
                            Ok::<_, Infallible>(Response::new(body))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Self {
            url: format!("http://{addr}"),
            in_flight,
            peak,
            reached,
            task,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_concurrency_cap_lets_exactly_n_requests_reach_the_backend() {
    let cp = ControlPlane::start().await;
    let dp = DataPlane::start(&cp, "dp-concurrency").await;
    let backend = SlowBackend::start().await;
    cp.cli_ok(&[
        "proxy",
        "create",
        "capped.test",
        &backend.url,
        "--max-concurrent-requests",
        "4",
    ]);
    sync(&cp, &dp).await;

    // N + k at once (the backend holds each admitted one for 3 s, so all ten overlap
    // even on a slow machine): N reach the backend, k are refused with 503.
    let requests: Vec<_> = (0..10)
        .map(|_| {
            let url = format!("{}/slow", dp.http);
            tokio::spawn(async move {
                let r = http_client()
                    .get(url)
                    .header("host", "capped.test")
                    .send()
                    .await
                    .expect("request");
                let retry_after = r.headers().get("retry-after").cloned();
                (r.status(), retry_after)
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for r in requests {
        statuses.push(r.await.expect("task"));
    }
    let ok = statuses.iter().filter(|s| s.0 == StatusCode::OK).count();
    let refused: Vec<_> = statuses
        .iter()
        .filter(|s| s.0 == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert_eq!(ok, 4, "{statuses:?}");
    assert_eq!(refused.len(), 6, "{statuses:?}");
    for (_, retry_after) in &refused {
        assert_eq!(retry_after.as_ref().map(|v| v.as_bytes()), Some(&b"1"[..]));
    }
    assert_eq!(backend.peak.load(Ordering::SeqCst), 4);
    assert_eq!(backend.reached.load(Ordering::SeqCst), 4);
    assert_eq!(backend.in_flight.load(Ordering::SeqCst), 0);

    // A cap of one (a new setting: a new counter).
    cp.cli_ok(&[
        "proxy",
        "update",
        "capped.test",
        "--max-concurrent-requests",
        "1",
    ]);
    sync(&cp, &dp).await;
    // A streamed response holds its slot until its body ends, not just its head.
    let client = http_client();
    let streaming = client
        .get(format!("{}/stream", dp.http))
        .header("host", "capped.test")
        .send()
        .await
        .expect("stream");
    assert_eq!(streaming.status(), StatusCode::OK);
    let second = dp.get("capped.test", "/stream").await;
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = streaming.bytes().await.expect("stream body");
    assert_eq!(&body[..], b"ab");
    // The slot is given back once the body is done (the proxy drops it right after).
    let mut last = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..20 {
        last = dp.get("capped.test", "/stream").await.status();
        if last == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last, StatusCode::OK);
}

/// A client registered with the control plane's authorization server, as in `edge_auth`.
async fn register_client(cp: &ControlPlane, redirect: &str) -> String {
    let resp = http_client()
        .post(format!("{}/register", cp.http))
        .json(
            &json!({"redirect_uris": [redirect], "token_endpoint_auth_method": "none",
                      "grant_types": ["authorization_code"], "client_name": "Rate test"}),
        )
        .send()
        .await
        .expect("register");
    assert_eq!(resp.status(), 201);
    let client: serde_json::Value = resp.json().await.expect("json");
    client["client_id"].as_str().expect("client_id").to_owned()
}

#[tokio::test]
async fn a_subject_keyed_limit_counts_the_user_and_anonymous_requests_by_address() {
    const REDIRECT: &str = "http://127.0.0.1:53997/callback";
    let cp = ControlPlane::start().await;
    let _github = github_login(&cp, vec![alice()]).await;
    let client_id = register_client(&cp, REDIRECT).await;
    let backend = Backend::start("subject").await;
    let dp = DataPlane::start(&cp, "dp-subject").await;
    let host = "users.test";
    cp.cli_ok(&[
        "proxy",
        "create",
        host,
        &backend.url,
        "--rate-limit",
        "1",
        "--rate-burst",
        "3",
        "--rate-limit-key",
        "subject",
    ]);
    cp.cli_ok(&[
        "proxy",
        "auth",
        "enable",
        host,
        "--auth-host",
        "auth.test",
        "--mode",
        "forward",
        "--scope",
        "mcp",
        "--public-path",
        "/health",
    ]);
    let (authorize, token) = (
        format!("{}/authorize", cp.http),
        format!("{}/token", cp.http),
    );
    let token = browser::access_token(
        &cp,
        &authorize,
        &token,
        &client_id,
        REDIRECT,
        &format!("https://{host}"),
    )
    .await;
    let bearer = format!("Bearer {token}");
    let client = http_client();
    let get = |path: &str, bearer: Option<&str>| {
        let mut req = client
            .get(format!("{}{path}", dp.http))
            .header("host", host);
        if let Some(b) = bearer {
            req = req.header("authorization", b);
        }
        async move { req.send().await.expect("request").status() }
    };
    // The token's signing key reaches the data plane with a later snapshot.
    eventually(Duration::from_secs(20), "the token is accepted", || async {
        (get("/tools", Some(&bearer)).await == StatusCode::OK).then_some(())
    })
    .await;

    // Anonymous requests on the public path use up the address's burst of 3 ...
    let mut anonymous = Vec::new();
    for _ in 0..6 {
        anonymous.push(get("/health", None).await);
    }
    assert!(
        anonymous.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{anonymous:?}"
    );
    // ... requests refused by edge auth get their 401 (rate limits come after it) ...
    for _ in 0..5 {
        assert_eq!(get("/tools", None).await, StatusCode::UNAUTHORIZED);
    }
    // ... and alice, from the same address, has her own bucket (one request of it went
    // on the check above, at most one refilled since).
    let mut alices = Vec::new();
    for _ in 0..6 {
        alices.push(get("/tools", Some(&bearer)).await);
    }
    let ok = alices.iter().filter(|s| **s == StatusCode::OK).count();
    assert!((2..=4).contains(&ok), "{alices:?}");
    assert_eq!(
        alices.last(),
        Some(&StatusCode::TOO_MANY_REQUESTS),
        "{alices:?}"
    );
}
