//! Prometheus metrics of the data plane, served as `/metrics` on the admin listener
//! ([`crate::admin`]) in the Prometheus text format (0.0.4), encoded by the `prometheus`
//! crate's `TextEncoder`.
//!
//! **Cost on the request path.** Every value lives in atomics owned by this module; the
//! exposition is built from them only when scraped. A finished request costs
//! [`ProxyMetrics::request_finished`]: one relaxed `fetch_add` on the request counter
//! picked by array index (method class × status class, both computed with a `match`),
//! and two per histogram (a bucket found by a linear scan of at most 13 integer
//! comparisons, then that bucket and the sum in microseconds). No string is hashed, no
//! lock is taken, nothing is allocated: the per-proxy [`ProxyMetrics`] handle is resolved
//! once when a snapshot is compiled and kept in the compiled proxy, and requests for no
//! served host go to one static handle labelled `unknown`. The counters of one proxy are
//! shared by the workers, so a proxy busy on several cores pays cache-line transfers on
//! these adds (tens of nanoseconds each), against a request path of tens of microseconds.
//!
//! **Cardinality.** The `proxy` label takes the configured hostnames (wildcards as
//! configured, `*.example.com`) plus `unknown`, so it is bounded by the configuration, not
//! by clients; `method` is one of eight values (`GET` … `OPTIONS`, `other`), `code` one of
//! `1xx` … `5xx`. Series that never counted anything are not exposed. A proxy removed
//! from the configuration keeps its series until no served snapshot holds it, then they
//! go (the next snapshot with that hostname starts from zero, which Prometheus reads as
//! a counter reset). A proxy named `unknown` shares the `unknown` series.
//!
//! Process-wide values (connections, TLS handshakes, token outcomes, snapshot applies)
//! are static atomics bumped where they happen; gauges owned elsewhere (parked
//! connections, access-log drops) are passed to [`render`] by the admin listener.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use http::Method;
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};

/// Upper bounds of the duration histograms, in microseconds (1 ms … 30 s).
const BOUNDS_MICROS: [u64; 13] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    10_000_000, 30_000_000,
];

/// Method label values, indexed by [`method_class`].
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
];

/// Status-class label values, indexed by status / 100 - 1.
const CODES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The label value of requests for no served host.
pub const UNKNOWN: &str = "unknown";

/// A duration histogram: non-cumulative bucket counts (the last one is `+Inf`) and the
/// sum in microseconds. The count is the sum of the buckets.
#[derive(Debug, Default)]
struct Histo {
    buckets: [AtomicU64; BOUNDS_MICROS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histo {
    fn observe(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_MICROS
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(BOUNDS_MICROS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The Prometheus form, or `None` if nothing was observed.
    fn snapshot(&self) -> Option<Histogram> {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(BOUNDS_MICROS.len());
        for (i, &bound) in BOUNDS_MICROS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let mut bucket = Bucket::default();
            bucket.set_upper_bound(bound as f64 / 1e6);
            bucket.set_cumulative_count(cumulative);
            buckets.push(bucket);
        }
        cumulative += self.buckets[BOUNDS_MICROS.len()].load(Ordering::Relaxed);
        if cumulative == 0 {
            return None;
        }
        let mut histogram = Histogram::default();
        histogram.set_sample_count(cumulative);
        histogram.set_sample_sum(self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
        histogram.set_bucket(buckets);
        Some(histogram)
    }
}

/// The request metrics of one proxy hostname, resolved when a snapshot is compiled
/// ([`ProxyMetrics::for_host`]) and kept in the compiled proxy.
#[derive(Debug)]
pub struct ProxyMetrics {
    host: Box<str>,
    requests: [[AtomicU64; CODES.len()]; METHODS.len()],
    duration: Histo,
    upstream: Histo,
}

/// Every proxy's metrics by hostname; locked only when a snapshot is compiled and when
/// scraped, never by a request.
static PROXIES: LazyLock<Mutex<HashMap<Box<str>, Arc<ProxyMetrics>>>> =
    LazyLock::new(Mutex::default);

/// Requests for no served host (and those refused before the host was known).
static UNKNOWN_PROXY: LazyLock<Arc<ProxyMetrics>> =
    LazyLock::new(|| Arc::new(ProxyMetrics::new(UNKNOWN)));

impl ProxyMetrics {
    fn new(host: &str) -> Self {
        Self {
            host: host.into(),
            requests: Default::default(),
            duration: Histo::default(),
            upstream: Histo::default(),
        }
    }

    /// The handle of `host` (a configured hostname): the same one for every snapshot that
    /// serves it, so counters survive reconfiguration. Takes a lock: compile time only.
    pub fn for_host(host: &str) -> Arc<Self> {
        if host == UNKNOWN {
            return UNKNOWN_PROXY.clone();
        }
        let mut proxies = PROXIES.lock().unwrap_or_else(|e| e.into_inner());
        proxies
            .entry(host.into())
            .or_insert_with(|| Arc::new(Self::new(host)))
            .clone()
    }

    /// The handle of requests for no served host.
    pub fn unknown() -> &'static Arc<Self> {
        &UNKNOWN_PROXY
    }

    /// Counts one request answered with `status` after `elapsed` (measured to the
    /// response head). A few relaxed atomic adds; see the module docs.
    pub fn request_finished(&self, method: MethodClass, status: u16, elapsed: Duration) {
        let code = usize::from(status / 100).clamp(1, CODES.len()) - 1;
        self.requests[method.0 as usize][code].fetch_add(1, Ordering::Relaxed);
        self.duration.observe(elapsed);
    }

    /// Records the upstream's time to response head (connect included).
    pub fn upstream_answered(&self, elapsed: Duration) {
        self.upstream.observe(elapsed);
    }
}

/// A request method reduced to one of the eight label values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MethodClass(u8);

/// The class of `method`: a comparison of the standard methods, no hashing.
pub fn method_class(method: &Method) -> MethodClass {
    MethodClass(match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        _ => 7,
    })
}

/// Why a bearer token was not accepted, or that it was (label `outcome`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum TokenOutcome {
    /// Verified, for this resource, with the scopes and on the allowlist.
    Valid,
    /// No `Authorization` header.
    Missing,
    /// An `Authorization` header that cannot carry a bearer token.
    Unusable,
    /// Not a well-formed JWT.
    Malformed,
    /// Not an access token, wrong algorithm, or no/unknown key id.
    Unsupported,
    /// Signature does not verify.
    Signature,
    /// Expired or not yet valid.
    Expired,
    /// Wrong issuer or audience.
    Audience,
    /// Revoked.
    Revoked,
    /// A required scope is missing.
    Scope,
    /// The user is not on the proxy's allowlist.
    NotAllowed,
}

const TOKEN_OUTCOMES: [&str; 11] = [
    "valid",
    "missing",
    "unusable",
    "malformed",
    "unsupported",
    "signature",
    "expired",
    "audience",
    "revoked",
    "scope",
    "not_allowed",
];

static TOKENS: [AtomicU64; TOKEN_OUTCOMES.len()] = [const { AtomicU64::new(0) }; 11];

/// Counts one token decision.
pub fn token_checked(outcome: TokenOutcome) {
    TOKENS[outcome as usize].fetch_add(1, Ordering::Relaxed);
}

/// Token decisions counted so far with `outcome` (tests).
#[cfg(test)]
pub(crate) fn token_count(outcome: TokenOutcome) -> u64 {
    TOKENS[outcome as usize].load(Ordering::Relaxed)
}

/// An upstream failure counted by [`upstream_failed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum UpstreamFailure {
    /// TCP/TLS connect failed.
    ConnectError,
    /// TCP connect timed out.
    ConnectTimeout,
    /// No response head within the read timeout.
    ResponseTimeout,
    /// The exchange failed after connecting.
    Exchange,
    /// The origin's connection bound was reached.
    Saturated,
}

const UPSTREAM_FAILURES: [&str; 5] = [
    "connect_error",
    "connect_timeout",
    "response_timeout",
    "exchange",
    "saturated",
];

static UPSTREAM: [AtomicU64; UPSTREAM_FAILURES.len()] = [const { AtomicU64::new(0) }; 5];

/// Counts one upstream failure.
pub fn upstream_failed(failure: UpstreamFailure) {
    UPSTREAM[failure as usize].fetch_add(1, Ordering::Relaxed);
}

static OPEN_CONNECTIONS: AtomicI64 = AtomicI64::new(0);
static TLS_HANDSHAKES: AtomicU64 = AtomicU64::new(0);
static TLS_FAILURES: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
static APPLIED_VERSION: AtomicU64 = AtomicU64::new(0);
static APPLIES: AtomicU64 = AtomicU64::new(0);
static APPLY_FAILURES: AtomicU64 = AtomicU64::new(0);
static APPLY_DURATION: LazyLock<Histo> = LazyLock::new(Histo::default);

/// An open client connection, counted while it lives.
#[derive(Debug)]
pub struct OpenConnection(());

impl OpenConnection {
    /// Counts a newly accepted connection until the guard drops.
    pub fn open() -> Self {
        OPEN_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        Self(())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        OPEN_CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a TLS handshake: completed, failed (`timed_out` false) or timed out.
pub fn tls_handshake(result: Result<(), bool>) {
    match result {
        Ok(()) => TLS_HANDSHAKES.fetch_add(1, Ordering::Relaxed),
        Err(timed_out) => TLS_FAILURES[usize::from(timed_out)].fetch_add(1, Ordering::Relaxed),
    };
}

/// Records a snapshot compile+publish: its version if it was applied, and how long it
/// took either way.
pub fn snapshot_applied(version: Option<u64>, elapsed: Duration) {
    match version {
        Some(version) => {
            APPLIED_VERSION.store(version, Ordering::Relaxed);
            APPLIES.fetch_add(1, Ordering::Relaxed);
        }
        None => {
            APPLY_FAILURES.fetch_add(1, Ordering::Relaxed);
        }
    }
    APPLY_DURATION.observe(elapsed);
}

/// Values owned outside this module, read by the admin listener at scrape time.
#[derive(Clone, Copy, Debug, Default)]
pub struct External {
    /// HTTP/1.1 connections parked right now.
    pub parked_connections: u64,
    /// Connections refused by the per-client connection limit since start.
    pub refused_connections: u64,
    /// Connections closed for their PROXY protocol header (forged, missing, malformed,
    /// slow) since start.
    pub proxy_protocol_refused: u64,
    /// Access-log records dropped since start, if access logging is installed.
    pub access_log_dropped: Option<u64>,
}

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The exposition text: every series of the data plane. Allocates; scrape time only.
pub fn render(external: External) -> String {
    let mut families = Vec::new();
    let mut proxies: Vec<Arc<ProxyMetrics>> = {
        let mut map = PROXIES.lock().unwrap_or_else(|e| e.into_inner());
        // Proxies no served snapshot holds any more: expose them one last time, then
        // forget them.
        let gone: Vec<Box<str>> = map
            .iter()
            .filter(|(_, m)| Arc::strong_count(m) == 1)
            .map(|(host, _)| host.clone())
            .collect();
        let all = map.values().cloned().collect();
        for host in gone {
            map.remove(&host);
        }
        all
    };
    proxies.push(UNKNOWN_PROXY.clone());
    proxies.sort_by(|a, b| a.host.cmp(&b.host));

    let mut requests = Vec::new();
    let mut durations = Vec::new();
    let mut upstreams = Vec::new();
    for proxy in &proxies {
        for (m, row) in proxy.requests.iter().enumerate() {
            for (c, count) in row.iter().enumerate() {
                let count = count.load(Ordering::Relaxed);
                if count > 0 {
                    requests.push(counter(
                        &[
                            ("proxy", &proxy.host),
                            ("method", METHODS[m]),
                            ("code", CODES[c]),
                        ],
                        count,
                    ));
                }
            }
        }
        if let Some(h) = proxy.duration.snapshot() {
            durations.push(histogram(&[("proxy", &proxy.host)], h));
        }
        if let Some(h) = proxy.upstream.snapshot() {
            upstreams.push(histogram(&[("proxy", &proxy.host)], h));
        }
    }
    families.push(family(
        "portcullis_dp_requests_total",
        "Requests answered, by proxy hostname (unknown: no served host), method and status class.",
        MetricType::COUNTER,
        requests,
    ));
    families.push(family(
        "portcullis_dp_request_duration_seconds",
        "Time from the request head to the response head, by proxy hostname.",
        MetricType::HISTOGRAM,
        durations,
    ));
    families.push(family(
        "portcullis_dp_upstream_duration_seconds",
        "Time from sending to the upstream to its response head (connect included), by proxy hostname.",
        MetricType::HISTOGRAM,
        upstreams,
    ));
    families.push(family(
        "portcullis_dp_upstream_errors_total",
        "Upstream exchanges that failed, by kind.",
        MetricType::COUNTER,
        labelled_counters("kind", &UPSTREAM_FAILURES, &UPSTREAM),
    ));
    families.push(family(
        "portcullis_dp_token_verifications_total",
        "Bearer-token decisions on protected proxies, by outcome.",
        MetricType::COUNTER,
        labelled_counters("outcome", &TOKEN_OUTCOMES, &TOKENS),
    ));
    let open = OPEN_CONNECTIONS.load(Ordering::Relaxed).max(0) as f64;
    families.push(family(
        "portcullis_dp_open_connections",
        "Client connections open now (parked ones included).",
        MetricType::GAUGE,
        vec![gauge(&[], open)],
    ));
    families.push(family(
        "portcullis_dp_parked_connections",
        "Idle HTTP/1.1 connections parked now (holding no HTTP buffers).",
        MetricType::GAUGE,
        vec![gauge(&[], external.parked_connections as f64)],
    ));
    families.push(family(
        "portcullis_dp_refused_connections_total",
        "Connections refused by the per-client connection limit.",
        MetricType::COUNTER,
        vec![counter(&[], external.refused_connections)],
    ));
    families.push(family(
        "portcullis_dp_proxy_protocol_refused_total",
        "Connections closed for their PROXY protocol header: forged, missing, malformed or slow.",
        MetricType::COUNTER,
        vec![counter(&[], external.proxy_protocol_refused)],
    ));
    families.push(family(
        "portcullis_dp_tls_handshakes_total",
        "TLS handshakes completed on the HTTPS listener.",
        MetricType::COUNTER,
        vec![counter(&[], TLS_HANDSHAKES.load(Ordering::Relaxed))],
    ));
    families.push(family(
        "portcullis_dp_tls_handshake_failures_total",
        "TLS handshakes that failed, by reason.",
        MetricType::COUNTER,
        labelled_counters("reason", &["error", "timeout"], &TLS_FAILURES),
    ));
    families.push(family(
        "portcullis_dp_snapshot_version",
        "Version of the configuration snapshot applied last (0: none yet).",
        MetricType::GAUGE,
        vec![gauge(&[], APPLIED_VERSION.load(Ordering::Relaxed) as f64)],
    ));
    families.push(family(
        "portcullis_dp_snapshot_applies_total",
        "Configuration snapshots compiled and applied.",
        MetricType::COUNTER,
        vec![counter(&[], APPLIES.load(Ordering::Relaxed))],
    ));
    families.push(family(
        "portcullis_dp_snapshot_apply_failures_total",
        "Configuration snapshots refused (compile errors); the previous one stays.",
        MetricType::COUNTER,
        vec![counter(&[], APPLY_FAILURES.load(Ordering::Relaxed))],
    ));
    families.push(family(
        "portcullis_dp_snapshot_apply_duration_seconds",
        "Time to compile and publish a configuration snapshot.",
        MetricType::HISTOGRAM,
        APPLY_DURATION
            .snapshot()
            .map(|h| histogram(&[], h))
            .into_iter()
            .collect(),
    ));
    if let Some(dropped) = external.access_log_dropped {
        families.push(family(
            "portcullis_dp_access_log_dropped_total",
            "Access-log records dropped because a bounded buffer was full.",
            MetricType::COUNTER,
            vec![counter(&[], dropped)],
        ));
    }
    encode(&families)
}

/// Encodes `families` (those with no series left out) in the text format.
pub fn encode(families: &[MetricFamily]) -> String {
    let families: Vec<MetricFamily> = families
        .iter()
        .filter(|f| !f.get_metric().is_empty())
        .cloned()
        .collect();
    let mut out = String::new();
    if let Err(error) = prometheus::TextEncoder::new().encode_utf8(&families, &mut out) {
        tracing::warn!(%error, "encoding metrics failed");
    }
    out
}

/// A metric family.
pub fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name.to_owned());
    family.set_help(help.to_owned());
    family.set_field_type(kind);
    family.set_metric(metrics);
    family
}

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(name, value)| {
            let mut pair = LabelPair::default();
            pair.set_name((*name).to_owned());
            pair.set_value((*value).to_owned());
            pair
        })
        .collect()
}

/// One counter series.
pub fn counter(pairs: &[(&str, &str)], value: u64) -> Metric {
    let mut c = Counter::default();
    c.set_value(value as f64);
    let mut metric = Metric::from_label(labels(pairs));
    metric.set_counter(c);
    metric
}

/// One gauge series.
pub fn gauge(pairs: &[(&str, &str)], value: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(value);
    let mut metric = Metric::from_label(labels(pairs));
    metric.set_gauge(g);
    metric
}

fn histogram(pairs: &[(&str, &str)], h: Histogram) -> Metric {
    let mut metric = Metric::from_label(labels(pairs));
    metric.set_histogram(h);
    metric
}

fn labelled_counters(label: &str, values: &[&str], counts: &[AtomicU64]) -> Vec<Metric> {
    values
        .iter()
        .zip(counts)
        .map(|(value, count)| counter(&[(label, value)], count.load(Ordering::Relaxed)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_of_requests_connections_and_external_values() {
        let proxy = ProxyMetrics::for_host("metrics-test.example");
        let again = ProxyMetrics::for_host("metrics-test.example");
        assert!(Arc::ptr_eq(&proxy, &again), "one handle per hostname");
        proxy.request_finished(method_class(&Method::GET), 200, Duration::from_millis(3));
        proxy.request_finished(method_class(&Method::GET), 204, Duration::from_millis(3));
        proxy.request_finished(
            method_class(&Method::from_bytes(b"PROPFIND").unwrap()),
            503,
            Duration::from_secs(60),
        );
        proxy.upstream_answered(Duration::from_micros(900));
        ProxyMetrics::unknown().request_finished(
            method_class(&Method::POST),
            404,
            Duration::from_micros(10),
        );
        let text = render(External::default());
        assert!(text.contains(
            "portcullis_dp_requests_total{proxy=\"metrics-test.example\",method=\"GET\",code=\"2xx\"} 2\n"
        ), "{text}");
        assert!(text.contains(
            "portcullis_dp_requests_total{proxy=\"metrics-test.example\",method=\"other\",code=\"5xx\"} 1\n"
        ), "{text}");
        assert!(
            text.contains(
                "portcullis_dp_requests_total{proxy=\"unknown\",method=\"POST\",code=\"4xx\"}"
            ),
            "{text}"
        );
        // 3 ms lands in the 5 ms bucket; 60 s only in +Inf.
        assert!(text.contains(
            "portcullis_dp_request_duration_seconds_bucket{proxy=\"metrics-test.example\",le=\"0.0025\"} 0\n"
        ), "{text}");
        assert!(text.contains(
            "portcullis_dp_request_duration_seconds_bucket{proxy=\"metrics-test.example\",le=\"0.005\"} 2\n"
        ), "{text}");
        assert!(text.contains(
            "portcullis_dp_request_duration_seconds_bucket{proxy=\"metrics-test.example\",le=\"30\"} 2\n"
        ), "{text}");
        assert!(
            text.contains(
                "portcullis_dp_request_duration_seconds_count{proxy=\"metrics-test.example\"} 3\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "portcullis_dp_request_duration_seconds_sum{proxy=\"metrics-test.example\"} 60.006\n"
        ), "{text}");
        assert!(text.contains(
            "portcullis_dp_upstream_duration_seconds_bucket{proxy=\"metrics-test.example\",le=\"0.001\"} 1\n"
        ), "{text}");
        assert!(text.contains("# TYPE portcullis_dp_requests_total counter\n"));
        assert!(text.contains("# TYPE portcullis_dp_open_connections gauge\n"));
        drop((proxy, again));
        // Held by no snapshot: exposed at most once more (another test's scrape may take
        // that one), then forgotten.
        let _last = render(External::default());
        assert!(!render(External::default()).contains("metrics-test.example"));

        // Values owned elsewhere; a series absent when its source is.
        let text = render(External {
            parked_connections: 7,
            refused_connections: 2,
            proxy_protocol_refused: 3,
            access_log_dropped: Some(5),
        });
        assert!(
            text.contains("portcullis_dp_parked_connections 7\n"),
            "{text}"
        );
        assert!(
            text.contains("portcullis_dp_refused_connections_total 2\n")
                && text.contains("portcullis_dp_proxy_protocol_refused_total 3\n"),
            "{text}"
        );
        assert!(
            text.contains("portcullis_dp_access_log_dropped_total 5\n"),
            "{text}"
        );
        let text = render(External::default());
        assert!(!text.contains("access_log_dropped"), "{text}");
        // Out-of-range statuses are clamped into 1xx..5xx, never out of bounds.
        let p = ProxyMetrics::for_host("clamp.example");
        p.request_finished(method_class(&Method::GET), 99, Duration::ZERO);
        p.request_finished(method_class(&Method::GET), 999, Duration::ZERO);
        let text = render(External::default());
        assert!(
            text.contains("proxy=\"clamp.example\",method=\"GET\",code=\"1xx\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("proxy=\"clamp.example\",method=\"GET\",code=\"5xx\"} 1"),
            "{text}"
        );
    }
}
