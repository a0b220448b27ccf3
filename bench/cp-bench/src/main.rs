//! `cp-bench`: control-plane benchmarks for Portcullis, driven only through the public
//! REST API and the data planes' HTTP listeners (no internals), so it measures what an
//! operator sees.
//!
//! ```text
//! cp-bench latency --api URL --token T --target URL --dp URL [--dp URL ...]
//!                  [--writes 200] [--via listener|api] [--label NAME]
//!                  [--cp-log FILE ...] [--dp-log FILE ...]
//! cp-bench bulk    --api URL --token T --target URL --dp URL [--dp URL ...]
//!                  [--proxies 10000] [--routes-per-proxy 2] [--concurrency 32]
//!                  [--steady 10] [--cp-log FILE] [--dp-log FILE ...]
//! ```
//!
//! `latency`: one write at a time (`POST /api/v1/proxy/targets` with a new hostname), then
//! waits until it is visible. `--via listener` polls every data plane's HTTP listener with
//! `Host: <new hostname>` every 1 ms until it stops answering 404 (the host is served);
//! `--via api` polls `GET /api/v1/dataplanes` every 1 ms until every connected data plane's
//! `applied_version` reaches the version after the write (the ACK was recorded). With
//! several control planes on one Redis (`cp_ha` case), `--api` is the one written through
//! and the data planes may stream from another: the ACKs then travel data plane → its
//! control plane → Redis → the API polled. Given the processes' logs, each write is also
//! split by their timestamps: when each control plane published its snapshot ("publishing
//! config snapshot") and when the last data plane applied it ("applied config snapshot").
//!
//! `bulk`: creates N proxies and N×R routes with `--concurrency` writers, then times from
//! the last write's response until every data plane ACKed the final version; then does
//! `--steady` single writes at that size (listener polling) and, given the logs, splits each
//! into control-plane build and data-plane transfer+compile time by log timestamps.
//!
//! Prints one JSON object on stdout; progress goes to stderr.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

type Result<T> = std::result::Result<T, String>;

const POLL: Duration = Duration::from_millis(1);
const GIVE_UP: Duration = Duration::from_secs(120);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(out) => println!("{out}"),
        Err(e) => {
            eprintln!("cp-bench: {e}");
            std::process::exit(1);
        }
    }
}

async fn run(args: Vec<String>) -> Result<Value> {
    let (command, opts) = args.split_first().ok_or_else(usage)?;
    let opts = Opts::parse(opts)?;
    let api = Api {
        base: opts.one("api")?.trim_end_matches('/').to_owned(),
        token: opts.one("token")?.to_owned(),
        http: client()?,
    };
    let target = opts.one("target")?.to_owned();
    let dps = opts.all("dp");
    if dps.is_empty() {
        return Err("at least one --dp URL is needed".into());
    }
    match command.as_str() {
        "latency" => {
            let writes = opts.num("writes", 200)?;
            let via = opts.get("via").unwrap_or("listener").to_owned();
            let label = opts.get("label").unwrap_or("lat").to_owned();
            let logs = (opts.all("cp-log"), opts.all("dp-log"));
            latency(&api, &target, &dps, writes, &via, &label, logs).await
        }
        "bulk" => {
            let bulk = Bulk {
                proxies: opts.num("proxies", 10_000)?,
                routes_per_proxy: opts.num("routes-per-proxy", 2)?,
                concurrency: opts.num("concurrency", 32)?,
                steady: opts.num("steady", 10)?,
                cp_log: opts.get("cp-log").map(str::to_owned),
                dp_logs: opts.all("dp-log"),
            };
            bulk.run(&api, &target, &dps).await
        }
        _ => Err(usage()),
    }
}

fn usage() -> String {
    "usage: cp-bench latency|bulk --api URL --token T --target URL --dp URL ... (see source)".into()
}

fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())
}

// ===== latency =====

async fn latency(
    api: &Api,
    target: &str,
    dps: &[String],
    writes: usize,
    via: &str,
    label: &str,
    (cp_logs, dp_logs): (Vec<String>, Vec<String>),
) -> Result<Value> {
    let mut write_ms = Vec::with_capacity(writes);
    let mut first_ms = Vec::with_capacity(writes);
    let mut all_ms = Vec::with_capacity(writes);
    // (version, wall clock at the write's start) for the log breakdown.
    let mut stamps = Vec::new();
    for i in 0..writes {
        let host = format!("{label}-{i}.lat.bench.test");
        let wall = now_micros();
        let start = Instant::now();
        api.create_proxy(&host, target).await?;
        write_ms.push(ms(start.elapsed()));
        let (first, all) = match via {
            "listener" => wait_served(&api.http, dps, &host, start).await?,
            "api" => {
                let t = wait_acked(api, dps.len(), start).await?;
                (t, t)
            }
            other => return Err(format!("--via {other}: expected listener or api")),
        };
        first_ms.push(ms(first));
        all_ms.push(ms(all));
        if !cp_logs.is_empty() || !dp_logs.is_empty() {
            // Writes are sequential: the version current now is this write's.
            stamps.push((api.dataplanes().await?.current, wall));
        }
    }
    eprintln!(
        "cp-bench: {writes} writes via {via} with {} data plane(s): p50 {:.1} ms, p99 {:.1} ms",
        dps.len(),
        percentile(&all_ms, 50.0),
        percentile(&all_ms, 99.0)
    );
    Ok(json!({
        "kind": "latency",
        "via": via,
        "dataplanes": dps.len(),
        "writes": writes,
        "write_response_ms": summary(&write_ms),
        "first_dataplane_ms": summary(&first_ms),
        "all_dataplanes_ms": summary(&all_ms),
        "samples_all_ms": all_ms.iter().map(|v| (v * 10.0).round() / 10.0).collect::<Vec<_>>(),
        "log_breakdown": log_breakdown(&stamps, &cp_logs, &dp_logs),
    }))
}

/// For each control-plane log: write start → that control plane published the write's
/// version; for the data planes: write start → the last of them applied it. Versions a log
/// skipped (coalesced into a later one) count at the later one's time.
fn log_breakdown(stamps: &[(u64, i64)], cp_logs: &[String], dp_logs: &[String]) -> Value {
    if stamps.is_empty() {
        return Value::Null;
    }
    let read = |path: &str, marker: &str| -> Vec<(i64, u64)> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(marker))
            .filter_map(parse_log_line)
            .collect()
    };
    // First time a line reached `version` or beyond.
    let reached = |lines: &[(i64, u64)], version: u64| {
        lines
            .iter()
            .filter(|&&(_, v)| v >= version)
            .map(|&(t, _)| t)
            .min()
    };
    let since = |t: i64, wall: i64| (t - wall) as f64 / 1000.0;
    let mut out = serde_json::Map::new();
    for (i, path) in cp_logs.iter().enumerate() {
        let lines = read(path, "publishing config snapshot");
        let v: Vec<f64> = stamps
            .iter()
            .filter_map(|&(ver, wall)| reached(&lines, ver).map(|t| since(t, wall)))
            .collect();
        out.insert(format!("cp{}_published_ms", i + 1), summary(&v));
    }
    if !dp_logs.is_empty() {
        let dps: Vec<_> = dp_logs
            .iter()
            .map(|p| read(p, "applied config snapshot"))
            .collect();
        let v: Vec<f64> = stamps
            .iter()
            .filter_map(|&(ver, wall)| {
                let each: Option<Vec<i64>> = dps.iter().map(|l| reached(l, ver)).collect();
                each?.into_iter().max().map(|t| since(t, wall))
            })
            .collect();
        out.insert("last_dp_applied_ms".into(), summary(&v));
    }
    Value::Object(out)
}

/// Polls each data plane's listener for `host` until it is served; returns the time
/// (since `start`) for the first and for the last data plane.
async fn wait_served(
    http: &reqwest::Client,
    dps: &[String],
    host: &str,
    start: Instant,
) -> Result<(Duration, Duration)> {
    let mut tasks: tokio::task::JoinSet<Result<Duration>> = tokio::task::JoinSet::new();
    for dp in dps {
        let (http, url, host) = (http.clone(), format!("{dp}/"), host.to_owned());
        tasks.spawn(async move {
            loop {
                let served = http
                    .get(&url)
                    .header("host", &host)
                    .send()
                    .await
                    .map(|r| r.status() != reqwest::StatusCode::NOT_FOUND)
                    .unwrap_or(false);
                if served {
                    return Ok(start.elapsed());
                }
                if start.elapsed() > GIVE_UP {
                    return Err(format!("{url} never served {host}"));
                }
                tokio::time::sleep(POLL).await;
            }
        });
    }
    let mut times = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        times.push(joined.map_err(|e| e.to_string())??);
    }
    times.sort();
    match (times.first(), times.last()) {
        (Some(&first), Some(&last)) => Ok((first, last)),
        _ => Err("no data planes".into()),
    }
}

/// Polls `GET /api/v1/dataplanes` until `expected` connected data planes have applied the
/// version current after the write.
async fn wait_acked(api: &Api, expected: usize, start: Instant) -> Result<Duration> {
    let mut target_version = None;
    loop {
        let list = api.dataplanes().await?;
        let version = *target_version.get_or_insert(list.current);
        let done = list
            .items
            .iter()
            .filter(|d| d.connected && d.applied >= version)
            .count();
        if done >= expected {
            return Ok(start.elapsed());
        }
        if start.elapsed() > GIVE_UP {
            return Err(format!(
                "only {done}/{expected} data planes applied {version}"
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

// ===== bulk =====

struct Bulk {
    proxies: usize,
    routes_per_proxy: usize,
    concurrency: usize,
    steady: usize,
    cp_log: Option<String>,
    dp_logs: Vec<String>,
}

/// Hostname of bulk proxy `i`: every tenth is a wildcard (same mix as the data-plane
/// micro-benchmark in `data-plane/benches/routing.rs`).
fn bulk_hostname(i: usize) -> String {
    if i.is_multiple_of(10) {
        format!("*.w{i}.bulk.bench.test")
    } else {
        format!("p{i}.bulk.bench.test")
    }
}

/// Route `r` (0-based) of proxy `i`: a prefix route, then an exact route, or a regex one for
/// every fifth proxy.
fn bulk_route(i: usize, r: usize, target: &str) -> Value {
    let (kind, pattern) = match r {
        0 => ("prefix", "/api/".to_owned()),
        1 if i.is_multiple_of(5) => ("regex", r"^/v[0-9]+/items/[0-9]+$".to_owned()),
        1 => ("exact", "/health".to_owned()),
        n => ("prefix", format!("/extra-{n}/")),
    };
    json!({
        "id": format!("b{i}-{r}"),
        "match_kind": kind,
        "path_pattern": pattern,
        "target_kind": "url",
        "target_value": target,
        "proxy_hostnames": [bulk_hostname(i)],
    })
}

impl Bulk {
    async fn run(&self, api: &Api, target: &str, dps: &[String]) -> Result<Value> {
        let started = Instant::now();
        let proxies_s = self
            .parallel(
                api,
                self.proxies,
                |i| json!({ "hostname": bulk_hostname(i), "target_url": target }),
                "/api/v1/proxy/targets",
            )
            .await?;
        eprintln!(
            "cp-bench: created {} proxies in {proxies_s:.1} s",
            self.proxies
        );
        let routes = self.proxies * self.routes_per_proxy;
        let rpp = self.routes_per_proxy.max(1);
        let routes_s = self
            .parallel(
                api,
                routes,
                |n| bulk_route(n / rpp, n % rpp, target),
                "/api/v1/routes",
            )
            .await?;
        let last_write = Instant::now();
        let last_write_wall = now_micros();
        eprintln!("cp-bench: created {routes} routes in {routes_s:.1} s");

        let acked = wait_acked(api, dps.len(), last_write).await?;
        let final_version = api.dataplanes().await?.current;
        eprintln!(
            "cp-bench: last write -> {} data plane(s) ACKed v{final_version}: {:.0} ms",
            dps.len(),
            ms(acked)
        );
        // Let stragglers settle before the steady-state writes.
        tokio::time::sleep(Duration::from_millis(500)).await;

        let mut served_ms = Vec::new();
        let mut steady = Vec::new();
        for i in 0..self.steady {
            let host = format!("steady-{i}.bulk.bench.test");
            let wall = now_micros();
            let start = Instant::now();
            api.create_proxy(&host, target).await?;
            let (_, all) = wait_served(&api.http, dps, &host, start).await?;
            let version = api.dataplanes().await?.current;
            served_ms.push(ms(all));
            steady.push((version, wall, ms(all)));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!(
            "cp-bench: single write at size -> served by all: p50 {:.0} ms",
            percentile(&served_ms, 50.0)
        );

        let logs = Logs::read(self.cp_log.as_deref(), &self.dp_logs);
        let breakdown: Vec<Value> = steady
            .iter()
            .map(|&(version, wall, total)| {
                let published = logs.cp_published(version);
                let applied = logs.dp_applied(version);
                json!({
                    "version": version,
                    "served_ms": total,
                    "cp_build_ms": published.map(|p| (p - wall) as f64 / 1000.0),
                    "dp_apply_ms": match (published, applied.iter().max()) {
                        (Some(p), Some(&a)) => Some((a - p) as f64 / 1000.0),
                        _ => None,
                    },
                })
            })
            .collect();
        let cp_build: Vec<f64> = breakdown
            .iter()
            .filter_map(|b| b["cp_build_ms"].as_f64())
            .collect();
        let dp_apply: Vec<f64> = breakdown
            .iter()
            .filter_map(|b| b["dp_apply_ms"].as_f64())
            .collect();
        let final_published = logs.cp_published(final_version);
        let applied_after_last = logs.dp_applied_after(last_write_wall, final_version);

        Ok(json!({
            "kind": "bulk",
            "dataplanes": dps.len(),
            "proxies": self.proxies,
            "routes": routes,
            "concurrency": self.concurrency,
            "create_proxies_s": proxies_s,
            "create_routes_s": routes_s,
            "writes_per_s": (self.proxies + routes) as f64 / (proxies_s + routes_s),
            "final_version": final_version,
            "last_write_to_all_acked_ms": ms(acked),
            "last_write_to_cp_publish_ms": final_published.map(|p| (p - last_write_wall) as f64 / 1000.0),
            "snapshots_applied_per_dp_after_last_write": applied_after_last,
            "steady_served_ms": summary(&served_ms),
            "steady_cp_build_ms": summary(&cp_build),
            "steady_dp_apply_ms": summary(&dp_apply),
            "steady": breakdown,
            "total_s": started.elapsed().as_secs_f64(),
        }))
    }

    /// Sends `count` POSTs to `path` with `concurrency` writers; returns seconds taken.
    async fn parallel(
        &self,
        api: &Api,
        count: usize,
        body: impl Fn(usize) -> Value,
        path: &str,
    ) -> Result<f64> {
        let bodies: Arc<Vec<Value>> = Arc::new((0..count).map(body).collect());
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let mut workers: tokio::task::JoinSet<Result<()>> = tokio::task::JoinSet::new();
        for _ in 0..self.concurrency.max(1) {
            let (bodies, next) = (bodies.clone(), next.clone());
            let (http, url, token) = (
                api.http.clone(),
                format!("{}{path}", api.base),
                api.token.clone(),
            );
            workers.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else {
                        return Ok(());
                    };
                    post(&http, &url, &token, body).await?;
                    if (i + 1).is_multiple_of(2000) {
                        eprintln!("cp-bench:   {url}: {} / {}", i + 1, bodies.len());
                    }
                }
            });
        }
        while let Some(joined) = workers.join_next().await {
            joined.map_err(|e| e.to_string())??;
        }
        Ok(start.elapsed().as_secs_f64())
    }
}

// ===== REST client =====

struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

struct DataPlanes {
    current: u64,
    items: Vec<DataPlane>,
}

struct DataPlane {
    applied: u64,
    connected: bool,
}

impl Api {
    async fn create_proxy(&self, hostname: &str, target: &str) -> Result<()> {
        let url = format!("{}/api/v1/proxy/targets", self.base);
        let body = json!({ "hostname": hostname, "target_url": target });
        post(&self.http, &url, &self.token, &body).await
    }

    async fn dataplanes(&self) -> Result<DataPlanes> {
        let resp = self
            .http
            .get(format!("{}/api/v1/dataplanes", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("GET dataplanes: {e}"))?;
        let list: Value = resp
            .json()
            .await
            .map_err(|e| format!("dataplanes json: {e}"))?;
        let items = list["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|d| DataPlane {
                        applied: d["applied_version"].as_u64().unwrap_or(0),
                        connected: d["connected"].as_bool().unwrap_or(false),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(DataPlanes {
            current: list["current_version"].as_u64().unwrap_or(0),
            items,
        })
    }
}

async fn post(http: &reqwest::Client, url: &str, token: &str, body: &Value) -> Result<()> {
    let resp = http
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    if resp.status() != reqwest::StatusCode::CREATED {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        return Err(format!("POST {url} {body}: {status} {text}"));
    }
    Ok(())
}

// ===== logs =====

/// `(epoch µs, version)` of the control plane's "publishing config snapshot" lines and of
/// each data plane's "applied config snapshot" lines.
struct Logs {
    cp: Vec<(i64, u64)>,
    dps: Vec<Vec<(i64, u64)>>,
}

impl Logs {
    fn read(cp: Option<&str>, dps: &[String]) -> Self {
        let read = |path: &str, marker: &str| -> Vec<(i64, u64)> {
            std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(marker))
                .filter_map(parse_log_line)
                .collect()
        };
        Self {
            cp: cp
                .map(|p| read(p, "publishing config snapshot"))
                .unwrap_or_default(),
            dps: dps
                .iter()
                .map(|p| read(p, "applied config snapshot"))
                .collect(),
        }
    }

    fn cp_published(&self, version: u64) -> Option<i64> {
        self.cp.iter().find(|(_, v)| *v == version).map(|(t, _)| *t)
    }

    /// When each data plane applied `version` (those that logged it).
    fn dp_applied(&self, version: u64) -> Vec<i64> {
        self.dps
            .iter()
            .filter_map(|lines| lines.iter().find(|(_, v)| *v == version).map(|(t, _)| *t))
            .collect()
    }

    /// How many snapshots up to `last` each data plane applied from `wall` on.
    fn dp_applied_after(&self, wall: i64, last: u64) -> Vec<usize> {
        self.dps
            .iter()
            .map(|lines| {
                lines
                    .iter()
                    .filter(|&&(t, v)| t >= wall && v <= last)
                    .count()
            })
            .collect()
    }
}

/// Parses `2026-05-01T10:11:12.123456Z  INFO ...: message version=42 ...` (ANSI colour codes
/// tolerated) into `(epoch µs, version)`.
fn parse_log_line(line: &str) -> Option<(i64, u64)> {
    let clean = strip_ansi(line);
    let ts = clean.split_whitespace().next()?;
    let version = clean
        .split_whitespace()
        .find_map(|w| w.strip_prefix("version="))?
        .parse()
        .ok()?;
    Some((parse_rfc3339_micros(ts)?, version))
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SS[.frac]Z` → µs since the epoch (UTC only, as tracing prints it).
fn parse_rfc3339_micros(ts: &str) -> Option<i64> {
    let ts = ts.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, min, s) = (t.next()??, t.next()??, t.next()??);
    let micros: i64 = format!("{frac:0<6}").get(..6)?.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + min) * 60_000_000 + s * 1_000_000 + micros)
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

// ===== stats and options =====

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile.
fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(values: &[f64]) -> Value {
    if values.is_empty() {
        return Value::Null;
    }
    let round = |v: f64| (v * 100.0).round() / 100.0;
    json!({
        "n": values.len(),
        "p50": round(percentile(values, 50.0)),
        "p99": round(percentile(values, 99.0)),
        "max": round(percentile(values, 100.0)),
    })
}

struct Opts(Vec<(String, String)>);

impl Opts {
    fn parse(args: &[String]) -> Result<Self> {
        let mut out = Vec::new();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let name = flag
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {flag:?}"))?;
            let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            out.push((name.to_owned(), value.clone()));
        }
        Ok(Self(out))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn one(&self, name: &str) -> Result<&str> {
        self.get(name)
            .ok_or_else(|| format!("--{name} is required"))
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn num(&self, name: &str, default: usize) -> Result<usize> {
        self.get(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| format!("--{name} {v:?}: not a number"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tracing_lines() {
        let line = "\u{1b}[2m2026-05-01T10:11:12.123456Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m x: publishing config snapshot \u{1b}[3mversion\u{1b}[0m\u{1b}[2m=\u{1b}[0m42 proxies=1";
        let (t, v) = parse_log_line(line).expect("parses");
        assert_eq!(v, 42);
        assert_eq!(t, 1_777_630_272_123_456);
        assert_eq!(
            parse_rfc3339_micros("1970-01-01T00:00:01Z"),
            Some(1_000_000)
        );
    }

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
    }
}
