//! High availability, end to end: two control planes on one real Redis (AOF on), three data
//! planes each given both control planes, Pebble as the CA, a client loop through every
//! data plane the whole time.
//!
//! In order: write → ACK by every data plane through either control plane (measured and
//! printed); Redis killed for 10 s (API writes answer 503 with a clear message, proxies keep
//! serving), restarted from its AOF with nothing lost, and everything recovers without a
//! restart; the control plane holding the leases killed with SIGKILL in the middle of a
//! certificate order (the other takes the leases over within 15 s and completes the order,
//! data planes move and report the same version, and a write through the survivor reaches
//! all of them); and not one proxied request failed.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use portcullis_tests::pebble::Pebble;
use portcullis_tests::procs::Proc;
use portcullis_tests::{Backend, ControlPlane, DataPlane, eventually, free_port, http_client};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// `appendfsync` for the test's Redis: `always` (every acknowledged write is on disk, so
/// the kill -9 below loses nothing), or `PORTCULLIS_TEST_REDIS_FSYNC` (e.g. `everysec`,
/// Redis' default with AOF, to measure propagation without an fsync per store write).
fn fsync_policy() -> String {
    std::env::var("PORTCULLIS_TEST_REDIS_FSYNC").unwrap_or_else(|_| "always".into())
}

/// A `redis-server` with an append-only file, fsynced on every write by default,
/// restartable on the same port and directory.
struct DurableRedis {
    proc: Proc,
    port: u16,
    dir: tempfile::TempDir,
}

impl DurableRedis {
    async fn start() -> Self {
        let mut redis = Self {
            proc: Proc::none(),
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
        };
        redis.restart().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    async fn restart(&mut self) {
        self.proc = Proc::spawn(
            Command::new("redis-server")
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "yes", "--appendfsync"])
                .arg(fsync_policy())
                .arg("--dir")
                .arg(self.dir.path())
                .stdout(Stdio::null()),
        );
        let port = self.port;
        eventually(
            Duration::from_secs(10),
            "redis-server to load",
            || async move {
                let out = Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "PING"])
                    .output()
                    .ok()?;
                (String::from_utf8_lossy(&out.stdout).trim() == "PONG").then_some(())
            },
        )
        .await;
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The pid in the holder id (`HOST/PID/RANDOM`) of lease `name`, if held: the record is
    /// there and not expired (a record left by a holder that lost the store names a
    /// process that no longer holds anything).
    fn lease_holder_pid(&self, name: &str) -> Option<u32> {
        let raw = self.cli(&["HGET", "{portcullis}:meta", &format!("lease:{name}")]);
        let rec: Value = serde_json::from_str(&raw).ok()?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_millis() as u64;
        if rec["expires_at_ms"].as_u64()? <= now_ms {
            return None;
        }
        rec["holder"].as_str()?.split('/').nth(1)?.parse().ok()
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{sig} {pid}");
}

async fn create_proxy(cp: &ControlPlane, host: &str, target: &str) -> reqwest::Response {
    create_proxy_with(&http_client(), cp, host, target).await
}

/// [`create_proxy`] on a client kept across calls: a new client costs more (its TLS roots
/// are loaded) than the write it would time.
async fn create_proxy_with(
    client: &reqwest::Client,
    cp: &ControlPlane,
    host: &str,
    target: &str,
) -> reqwest::Response {
    client
        .post(format!("{}/api/v1/proxy/targets", cp.http))
        .bearer_auth(&cp.admin_token)
        .json(&json!({"hostname": host, "target_url": target, "enable_https": false}))
        .send()
        .await
        .expect("proxy create request")
}

/// Status and body of an unauthenticated GET of `path` on `cp`'s HTTP listener.
async fn probe(cp: &ControlPlane, path: &str) -> (u16, String) {
    let r = http_client()
        .get(format!("{}{path}", cp.http))
        .send()
        .await
        .expect("probe");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// Waits until every data plane serves `host` (the backend answers through it).
async fn served_everywhere(dps: &[&DataPlane], host: &str, within: Duration) {
    for dp in dps {
        eventually(
            within,
            &format!("{} to serve {host}", dp.node_id),
            || async { (dp.get(host, "/").await.status() == StatusCode::OK).then_some(()) },
        )
        .await;
    }
}

/// Through `cp`'s API: every one of `nodes` connected and having ACKed the current version.
async fn all_acked(cp: &ControlPlane, nodes: &[&str]) -> Option<u64> {
    let list = http_client()
        .get(format!("{}/api/v1/dataplanes", cp.http))
        .bearer_auth(&cp.admin_token)
        .send()
        .await
        .ok()?
        .json::<Value>()
        .await
        .ok()?;
    let current = list["current_version"].as_u64()?;
    let items = list["items"].as_array()?;
    nodes
        .iter()
        .all(|n| {
            items.iter().any(|d| {
                d["node_id"] == *n
                    && d["connected"] == true
                    && d["applied_version"].as_u64() == Some(current)
            })
        })
        .then_some(current)
}

/// The lowest version any of `nodes` has ACKed, as `cp` records it (0 if one is missing).
async fn applied_by_all(client: &reqwest::Client, cp: &ControlPlane, nodes: &[&str]) -> u64 {
    let list: Value = client
        .get(format!("{}/api/v1/dataplanes", cp.http))
        .bearer_auth(&cp.admin_token)
        .send()
        .await
        .expect("dataplanes")
        .json()
        .await
        .expect("dataplanes json");
    let items = list["items"].as_array().cloned().unwrap_or_default();
    nodes
        .iter()
        .map(|n| {
            items
                .iter()
                .find(|d| d["node_id"] == *n)
                .and_then(|d| d["applied_version"].as_u64())
                .unwrap_or(0)
        })
        .min()
        .unwrap_or(0)
}

/// Requests through every data plane until stopped; counts successes and failures.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(targets: Vec<String>, host: &'static str) -> Self {
        let (stop, ok, failed) = (Arc::default(), Arc::default(), Arc::default());
        let tasks = targets
            .into_iter()
            .map(|base| {
                let (stop, ok, failed): (Arc<AtomicBool>, Arc<AtomicU64>, Arc<AtomicU64>) =
                    (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
                tokio::spawn(async move {
                    let client = http_client();
                    while !stop.load(Ordering::SeqCst) {
                        let r = client
                            .get(format!("{base}/load"))
                            .header("host", host)
                            .send();
                        match r.await {
                            Ok(r) if r.status() == StatusCode::OK => {
                                ok.fetch_add(1, Ordering::SeqCst)
                            }
                            Ok(r) => {
                                eprintln!("load: {base} answered {}", r.status());
                                failed.fetch_add(1, Ordering::SeqCst)
                            }
                            Err(e) => {
                                eprintln!("load: {base}: {e}");
                                failed.fetch_add(1, Ordering::SeqCst)
                            }
                        };
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
            })
            .collect();
        Self {
            stop,
            ok,
            failed,
            tasks,
        }
    }

    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.expect("load task");
        }
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        )
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_control_planes_lose_redis_and_the_lease_holder_without_failing_a_request() {
    let started = Instant::now();
    let mut redis = DurableRedis::start().await;
    let (http01, tls01) = (free_port(), free_port());
    let pebble = Pebble::start(http01, tls01).await;
    let backend = Backend::start("ha").await;
    // Control planes sharing Redis share the master key. The poll (the safety net behind
    // pub/sub) is set far beyond the test's waits, so every cross-control-plane wake-up
    // seen here came through Redis notifications.
    let master_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let args = || {
        vec![
            "--master-key".to_owned(),
            master_key.to_owned(),
            "--poll-interval-ms".into(),
            "60000".into(),
            "--renew-check-secs".into(),
            "1".into(),
            "--acme-directory".into(),
            pebble.directory.clone(),
            "--acme-ca-cert".into(),
            pebble.tls_cert.display().to_string(),
            "--acme-email".into(),
            "ops@example.test".into(),
        ]
    };
    let url = redis.url();
    let mut a = ControlPlane::start_redis_args(Some(&url), args()).await;
    let mut b = ControlPlane::start_redis_args(Some(&url), args()).await;
    // dp1 and dp3 prefer a, dp2 prefers b; dp1 answers Pebble's HTTP-01 validations.
    let dp1 = DataPlane::start_on(&a, "dp1", http01, &["--control-plane", &b.grpc]).await;
    let dp2 = DataPlane::start_on(&b, "dp2", 0, &["--control-plane", &a.grpc]).await;
    let dp3 = DataPlane::start_on(&a, "dp3", 0, &["--control-plane", &b.grpc]).await;
    let dps = [&dp1, &dp2, &dp3];
    let nodes = ["dp1", "dp2", "dp3"];
    assert_eq!(
        create_proxy(&a, "load.test", &backend.url).await.status(),
        StatusCode::CREATED
    );
    served_everywhere(&dps, "load.test", Duration::from_secs(20)).await;

    // 1. Write → ACK by every data plane, alternating the control plane written through.
    // Polls every millisecond on one client (as bench/cp-bench's `--via api` does).
    let client = http_client();
    let (mut samples, mut answered) = (Vec::new(), Vec::new());
    for i in 0..100 {
        let via = if i % 2 == 0 { &a } else { &b };
        let target = via.version().await + 1;
        let t = Instant::now();
        let r = create_proxy_with(&client, via, &format!("w{i}.test"), &backend.url).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        answered.push(t.elapsed());
        while applied_by_all(&client, via, &nodes).await < target {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "write {i} not ACKed by all"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        samples.push(t.elapsed());
    }
    samples.sort();
    answered.sort();
    println!(
        "  of which the write's own answer: p50 {:.1} ms, p99 {:.1} ms",
        percentile(&answered, 0.5).as_secs_f64() * 1e3,
        percentile(&answered, 0.99).as_secs_f64() * 1e3,
    );
    let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
    println!(
        "write -> ACK by 3 data planes over 2 control planes (appendfsync {}): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} writes)",
        fsync_policy(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
        samples.len()
    );
    // Far below the 60 s poll: the notifications did it. (The 50 ms target is measured
    // with release binaries, `PORTCULLIS_TEST_PROFILE=release`, and recorded in
    // bench/README.md; not asserted: debug binaries on a machine shared with other test
    // runs take hundreds of milliseconds.)
    assert!(p99 < Duration::from_secs(3), "p99 {p99:?}");

    let load = Load::start(dps.iter().map(|d| d.http.clone()).collect(), "load.test");

    // 2. Redis killed for 10 s: writes answer 503 and say why; proxies keep serving.
    let proxies_before = redis.cli(&["HLEN", "{portcullis}:proxies"]);
    let revision_before = redis.cli(&["GET", "{portcullis}:revision"]);
    redis.proc.kill();
    let down_at = Instant::now();
    for cp in [&a, &b] {
        let t = Instant::now();
        let r = create_proxy(cp, "during-outage.test", &backend.url).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: Value = r.json().await.expect("error body");
        assert_eq!(body["error"], "unavailable", "{body}");
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("cannot be reached")),
            "{body}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "answered in {:?}",
            t.elapsed()
        );
    }
    for dp in dps {
        assert_eq!(dp.get("load.test", "/").await.status(), StatusCode::OK);
    }
    // Not ready (an orchestrator stops routing to it) but alive (it is not restarted).
    assert_eq!(
        probe(&a, "/readyz").await,
        (503, "store unreachable\n".into())
    );
    assert_eq!(probe(&b, "/healthz").await, (200, "ok\n".into()));
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(down_at.elapsed())).await;
    redis.restart().await;
    // Nothing lost: the append-only file had every acknowledged write.
    assert_eq!(redis.cli(&["HLEN", "{portcullis}:proxies"]), proxies_before);
    assert_eq!(
        redis.cli(&["GET", "{portcullis}:revision"]),
        revision_before
    );
    assert_eq!(
        redis.cli(&["HEXISTS", "{portcullis}:proxies", "during-outage.test"]),
        "0",
        "a refused write left nothing"
    );
    for cp in [&a, &b] {
        let ready = || async { (probe(cp, "/readyz").await.0 == 200).then_some(()) };
        eventually(Duration::from_secs(10), "ready again", ready).await;
    }
    // Recovered without restarts: writes land through either control plane, and reach every
    // data plane (those streaming from the other control plane through the resubscribed
    // notifications).
    for (i, cp) in [&a, &b].into_iter().enumerate() {
        let host = format!("after-outage-{i}.test");
        eventually(
            Duration::from_secs(20),
            "a write after the outage",
            || async {
                (create_proxy(cp, &host, &backend.url).await.status() == StatusCode::CREATED)
                    .then_some(())
            },
        )
        .await;
        served_everywhere(&dps, &host, Duration::from_secs(5)).await;
    }

    // 3. Kill the control plane holding the leases in the middle of a certificate order.
    let holder = eventually(
        Duration::from_secs(20),
        "a maintenance lease holder",
        || async { redis.lease_holder_pid("oauth-maintenance") },
    )
    .await;
    let (x, y) = if Some(holder) == a.pid() {
        (&mut a, &mut b)
    } else {
        assert_eq!(Some(holder), b.pid(), "the holder is one of ours");
        (&mut b, &mut a)
    };
    assert_eq!(
        create_proxy(x, "secure.example.test", &backend.url)
            .await
            .status(),
        StatusCode::CREATED
    );
    // dp2 paused: the order waits for every data plane to ACK its challenge answer, so the
    // holder is certainly mid-order (lease taken, answer published) when it is killed.
    let dp2_pid = dp2.pid().expect("dp2 running");
    signal(dp2_pid, "STOP");
    let r = http_client()
        .post(format!("{}/api/v1/certificates", x.http))
        .bearer_auth(&x.admin_token)
        .json(&json!({"name": "secure", "domains": ["secure.example.test"]}))
        .send()
        .await
        .expect("cert create");
    assert_eq!(
        r.status(),
        StatusCode::ACCEPTED,
        "{}",
        r.text().await.unwrap_or_default()
    );
    eventually(
        Duration::from_secs(10),
        "the order's challenge answer",
        || async {
            let n: u64 = redis
                .cli(&["HLEN", "{portcullis}:acmechallenges"])
                .parse()
                .ok()?;
            (n > 0 && redis.lease_holder_pid("acme:secure") == Some(holder)).then_some(())
        },
    )
    .await;
    x.kill();
    let killed_at = Instant::now();
    signal(dp2_pid, "CONT");
    let status: Value = http_client()
        .get(format!("{}/api/v1/certificates/secure", y.http))
        .bearer_auth(&y.admin_token)
        .send()
        .await
        .expect("cert show")
        .json()
        .await
        .expect("cert json");
    assert_eq!(status["status"], "pending", "killed mid-order: {status}");

    let survivor = y.pid().expect("survivor running");
    eventually(
        Duration::from_secs(20),
        "the survivor to hold the maintenance lease",
        || async { (redis.lease_holder_pid("oauth-maintenance") == Some(survivor)).then_some(()) },
    )
    .await;
    let moved = killed_at.elapsed();
    assert!(
        moved <= Duration::from_secs(15),
        "lease moved after {moved:?}"
    );
    let issued = eventually(Duration::from_secs(60), "the order to complete", || async {
        let v: Value = http_client()
            .get(format!("{}/api/v1/certificates/secure", y.http))
            .bearer_auth(&y.admin_token)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (v["status"] != "pending").then_some(v)
    })
    .await;
    assert_eq!(issued["status"], "valid", "{issued}");
    assert!(
        issued["issuer"]
            .as_str()
            .is_some_and(|i| i.contains("Pebble")),
        "{issued}"
    );
    println!(
        "leases moved {:.1} s after the kill; the order completed {:.1} s after it",
        moved.as_secs_f64(),
        killed_at.elapsed().as_secs_f64()
    );

    // Every data plane moved to the survivor and reports the same applied version.
    let version = eventually(
        Duration::from_secs(20),
        "all data planes on one version",
        || all_acked(y, &nodes),
    )
    .await;
    assert_eq!(version, y.version().await);
    // A write through the survivor reaches them all.
    assert_eq!(
        create_proxy(y, "after-kill.test", &backend.url)
            .await
            .status(),
        StatusCode::CREATED
    );
    served_everywhere(&dps, "after-kill.test", Duration::from_secs(5)).await;

    let (ok, failed) = load.finish().await;
    println!("proxied requests: {ok} ok, {failed} failed");
    assert_eq!(failed, 0, "no proxied request may fail");
    assert!(ok > 300, "the load ran ({ok})");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "{:?}",
        started.elapsed()
    );
}
