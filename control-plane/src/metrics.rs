//! Prometheus metrics of the control plane: process-wide counters and histograms bumped
//! where things happen (API calls, store operations, ACME orders), and the text encoding
//! (Prometheus 0.0.4, by the `prometheus` crate's `TextEncoder`). A leaf: it imports nothing
//! of the crate. What is read from the store at scrape time (data planes, certificates,
//! OAuth counters) is gathered by [`crate::scrape`], which serves `/metrics`.
//!
//! Costs: an API call takes one short-held mutex on a map keyed by `(api, operation,
//! outcome)`; the operation is a route template or a served gRPC method, never a raw
//! path, so the map is bounded by the routes the server has (plus `unmatched`). A store
//! operation is three relaxed atomic adds. None of this is on a data plane's request path.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};

/// Upper bounds of the latency histograms, in microseconds (100 µs … 10 s).
const BOUNDS_MICROS: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 500_000, 2_500_000, 10_000_000,
];

/// A latency histogram: non-cumulative bucket counts (the last is `+Inf`), sum in µs.
#[derive(Debug, Default)]
pub struct Histo {
    buckets: [AtomicU64; BOUNDS_MICROS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histo {
    /// Records one observation: two relaxed atomic adds.
    pub fn observe(&self, elapsed: Duration) {
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

/// A store operation, timed by [`store_op`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum StoreOp {
    /// A point read.
    Get,
    /// A consistent read of collections (listings, revision).
    Read,
    /// An atomic batch of checked writes.
    Apply,
}

const STORE_OPS: [&str; 3] = ["get", "read", "apply"];
static STORE: LazyLock<[Histo; 3]> = LazyLock::new(Default::default);
static STORE_ERRORS: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

/// Records one store operation and whether it failed.
pub fn store_op(op: StoreOp, elapsed: Duration, failed: bool) {
    STORE[op as usize].observe(elapsed);
    if failed {
        STORE_ERRORS[op as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// `(api, operation, outcome)` of an API call.
type CallKey = (&'static str, String, String);

/// API calls by [`CallKey`].
static API_CALLS: LazyLock<Mutex<BTreeMap<CallKey, u64>>> = LazyLock::new(Mutex::default);

/// Counts one API call. `api` is `rest` or `grpc`; `operation` a route template or gRPC
/// method (bounded by the server's routes); `outcome` a status class or gRPC code name.
pub fn api_call(api: &'static str, operation: &str, outcome: &str) {
    let mut calls = API_CALLS.lock().unwrap_or_else(|e| e.into_inner());
    match calls.get_mut(&(api, operation.to_owned(), outcome.to_owned())) {
        Some(count) => *count += 1,
        None => {
            calls.insert((api, operation.to_owned(), outcome.to_owned()), 1);
        }
    }
}

/// ACME events counted by [`acme`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum AcmeEvent {
    /// A first order for a certificate started.
    Order,
    /// A renewal order started.
    Renewal,
    /// An order or renewal failed.
    Failure,
}

static ACME: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

/// Counts an ACME event.
pub fn acme(event: AcmeEvent) {
    ACME[event as usize].fetch_add(1, Ordering::Relaxed);
}

/// The families owned by this module, ready to encode with the scraped ones.
pub fn families() -> Vec<MetricFamily> {
    let calls: Vec<Metric> = API_CALLS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|((api, operation, outcome), count)| {
            counter(
                &[("api", api), ("operation", operation), ("outcome", outcome)],
                *count,
            )
        })
        .collect();
    let store: Vec<Metric> = STORE_OPS
        .iter()
        .zip(STORE.iter())
        .filter_map(|(op, h)| h.snapshot().map(|h| histogram(&[("op", op)], h)))
        .collect();
    vec![
        family(
            "portcullis_cp_api_calls_total",
            "API calls by api (rest, grpc), operation (route template or gRPC method) and outcome (status class or gRPC code, at the response head).",
            MetricType::COUNTER,
            calls,
        ),
        family(
            "portcullis_cp_store_operation_duration_seconds",
            "Store operation latency by operation (get, read, apply).",
            MetricType::HISTOGRAM,
            store,
        ),
        family(
            "portcullis_cp_store_errors_total",
            "Store operations that failed, by operation.",
            MetricType::COUNTER,
            STORE_OPS
                .iter()
                .zip(&STORE_ERRORS)
                .map(|(op, n)| counter(&[("op", op)], n.load(Ordering::Relaxed)))
                .collect(),
        ),
        family(
            "portcullis_cp_acme_orders_total",
            "ACME orders started by this control plane, by kind (order: first issuance, renewal).",
            MetricType::COUNTER,
            vec![
                counter(
                    &[("kind", "order")],
                    ACME[AcmeEvent::Order as usize].load(Ordering::Relaxed),
                ),
                counter(
                    &[("kind", "renewal")],
                    ACME[AcmeEvent::Renewal as usize].load(Ordering::Relaxed),
                ),
            ],
        ),
        family(
            "portcullis_cp_acme_failures_total",
            "Certificate orders and renewals that failed.",
            MetricType::COUNTER,
            vec![counter(
                &[],
                ACME[AcmeEvent::Failure as usize].load(Ordering::Relaxed),
            )],
        ),
    ]
}

/// The `Content-Type` of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Encodes `families` (those with no series left out) in the text format.
pub fn encode(families: Vec<MetricFamily>) -> String {
    let families: Vec<MetricFamily> = families
        .into_iter()
        .filter(|f| !f.get_metric().is_empty())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_of_api_calls_store_latency_and_acme() {
        api_call("rest", "/test/{hostname}", "2xx");
        api_call("rest", "/test/{hostname}", "2xx");
        api_call("grpc", "/test.v1.Test/List", "Unauthenticated");
        store_op(StoreOp::Apply, Duration::from_micros(300), false);
        store_op(StoreOp::Apply, Duration::from_secs(20), true);
        acme(AcmeEvent::Renewal);
        let text = encode(families());
        assert!(
            text.contains(
                "portcullis_cp_api_calls_total{api=\"rest\",operation=\"/test/{hostname}\",outcome=\"2xx\"} 2\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "portcullis_cp_api_calls_total{api=\"grpc\",operation=\"/test.v1.Test/List\",outcome=\"Unauthenticated\"} 1\n"
        ), "{text}");
        // Other tests of this process use the store and the issuer too: presence only.
        for series in [
            "portcullis_cp_store_operation_duration_seconds_bucket{op=\"apply\",le=\"0.0005\"} ",
            "portcullis_cp_store_operation_duration_seconds_count{op=\"apply\"} ",
            "portcullis_cp_store_errors_total{op=\"apply\"} ",
            "portcullis_cp_acme_orders_total{kind=\"renewal\"} ",
        ] {
            assert!(text.contains(series), "{series} in {text}");
        }
        assert!(!text.contains("portcullis_cp_store_errors_total{op=\"apply\"} 0\n"));
        assert!(text.contains("# TYPE portcullis_cp_api_calls_total counter\n"));
    }
}
