//! The process's own logs (`--log-format text|json`) and OpenTelemetry traces
//! (`--otlp-endpoint`).
//!
//! Spans come from `tracing` spans of this crate (target `portcullis_control_plane…`,
//! level info or above) through `tracing-opentelemetry`; spans of dependencies (hyper,
//! h2, tonic) are never exported. What is traced:
//! - every REST and OAuth HTTP call ([`http_span`]: method, route template, status), and
//!   every gRPC call ([`grpc_span`]: `rpc.service`, `rpc.method`, and
//!   `rpc.grpc.status_code` from [`record_grpc_status`]), continuing a caller's W3C
//!   `traceparent` (parent-based sampling);
//! - `snapshot.publish` with `snapshot.version` for each snapshot published to data
//!   planes, and `snapshot.ack` / `snapshot.nack` with `dataplane.node_id` and
//!   `snapshot.version` when a data plane applies or rejects one, so "this change reached
//!   data plane X at version N" is a query on those attributes;
//! - `acme.order` with `certificate.name` for each certificate order.
//!
//! Without `--otlp-endpoint` no span layer is installed: [`enabled`] is false and the
//! HTTP middleware passes requests straight through; the `tracing` spans that remain
//! cost what a disabled span costs. With it, export runs on the SDK's batch processor
//! thread from a bounded queue (2048 spans, `OTEL_BSP_MAX_QUEUE_SIZE`); a full queue drops
//! spans (the SDK warns and counts them) and never blocks a call. The query string is never
//! recorded (OAuth endpoints carry codes and state there).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// Set once a span exporter is installed.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Format of the process's own log lines (stderr).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`).
    Json,
}

/// How spans travel to the collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (usually port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies, POSTed to `<endpoint>/v1/traces` (usually 4318).
    Http,
}

/// Where and how much to trace.
#[derive(Clone, Debug)]
pub struct TraceSettings {
    /// Collector URL, e.g. `http://127.0.0.1:4317`.
    pub endpoint: String,
    /// gRPC or HTTP/protobuf.
    pub protocol: OtlpProtocol,
    /// Share of new traces sampled, 0.0 to 1.0.
    pub sample_ratio: f64,
}

/// Keeps the exporter alive; dropping it flushes what is queued.
#[must_use = "dropping it stops the exporter"]
pub struct Exporter(SdkTracerProvider);

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Err(error) = self.0.shutdown() {
            tracing::warn!(%error, "flushing spans at shutdown failed");
        }
    }
}

/// Parses `--trace-sample-ratio`: a number from 0.0 to 1.0.
pub fn parse_sample_ratio(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "{s:?} is not a sample ratio: give a number from 0.0 (no new trace sampled) to 1.0 (all)"
        )),
    }
}

/// Installs the global `tracing` subscriber: logs on stderr in `format` (filter from
/// `PORTCULLIS_LOG`, else the seed's `LOG_LEVEL`, default `info`; a bad one is an error) and,
/// with `traces`, the span exporter. Call once, inside a Tokio runtime.
pub fn init(format: LogFormat, traces: Option<&TraceSettings>) -> anyhow::Result<Option<Exporter>> {
    let directive =
        crate::seed_env::log_filter(|k| std::env::var(k).ok()).map_err(anyhow::Error::msg)?;
    let filter = EnvFilter::try_new(&directive)
        .map_err(|e| anyhow::anyhow!("PORTCULLIS_LOG={directive:?}: {e}"))?;
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    }
    .with_filter(filter);
    let Some(settings) = traces else {
        tracing_subscriber::registry().with(logs).try_init()?;
        return Ok(None);
    };
    let provider = provider(settings)?;
    let spans = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("portcullis-control-plane"))
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            meta.is_span()
                && *meta.level() <= tracing::Level::INFO
                && meta.target().starts_with("portcullis_control_plane")
        }));
    tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init()?;
    ENABLED.store(true, Ordering::Relaxed);
    Ok(Some(Exporter(provider)))
}

fn provider(settings: &TraceSettings) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};
    let endpoint = &settings.endpoint;
    let url = url::Url::parse(endpoint)
        .map_err(|e| anyhow::anyhow!("--otlp-endpoint {endpoint:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        anyhow::bail!(
            "--otlp-endpoint {endpoint:?} must be an http:// or https:// URL with a host"
        );
    }
    let timeout = Duration::from_secs(10);
    let exporter = match settings.protocol {
        OtlpProtocol::Grpc => SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .with_timeout(timeout)
            .build(),
        OtlpProtocol::Http => {
            let base = endpoint.trim_end_matches('/');
            let url = if base.ends_with("/v1/traces") {
                base.to_owned()
            } else {
                format!("{base}/v1/traces")
            };
            SpanExporter::builder()
                .with_http()
                .with_endpoint(url)
                .with_timeout(timeout)
                .build()
        }
    }
    .map_err(|e| anyhow::anyhow!("--otlp-endpoint {endpoint:?}: {e}"))?;
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(BatchConfigBuilder::default().build())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sample_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name("portcullis-control-plane")
                .build(),
        )
        .build())
}

/// A `u64` (a snapshot version) as a span attribute: OTLP integers are signed, and
/// `tracing-opentelemetry` turns a `u64` into a string.
pub fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Whether spans are exported.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// axum middleware (a route layer, so the route template is known): one server span
/// per REST or OAuth call, named `METHOD /route/{template}`.
pub async fn http_span(req: Request, next: Next) -> Response {
    if !enabled() {
        return next.run(req).await;
    }
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(String::new, |p| p.as_str().to_owned());
    let span = tracing::info_span!(
        "http",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = %route,
        url.path = %req.uri().path(),
        http.response.status_code = tracing::field::Empty,
    );
    let _ = span.set_parent(remote_context(req.headers()));
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    response
}

/// tonic `trace_fn`: one server span per gRPC call (`rpc.service`, `rpc.method`).
pub fn grpc_span(req: &http::Request<()>) -> tracing::Span {
    if !enabled() {
        return tracing::Span::none();
    }
    let path = req.uri().path();
    let (service, method) = path
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or((path, ""));
    let span = tracing::info_span!(
        "grpc",
        otel.name = path,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = tracing::field::Empty,
    );
    let _ = span.set_parent(remote_context(req.headers()));
    span
}

/// Records a gRPC call's status code on its server span: the current span while tonic
/// polls the call, so a tower layer inside the server calls this at the response head
/// (`crate::scrape`), where the code is a trailers-only error's `grpc-status` or `OK`
/// (a streaming call's later status is not seen). The codes the semantic conventions call
/// server errors also mark the span as an error.
pub fn record_grpc_status(code: tonic::Code) {
    if !enabled() {
        return;
    }
    let span = tracing::Span::current();
    span.record("rpc.grpc.status_code", i64::from(code as i32));
    if matches!(
        code,
        tonic::Code::Unknown
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unimplemented
            | tonic::Code::Internal
            | tonic::Code::Unavailable
            | tonic::Code::DataLoss
    ) {
        span.record("otel.status_code", "error");
    }
}

/// The caller's W3C trace context, if its `traceparent` is well formed (the SDK's
/// propagator checks it; a malformed one starts a new trace).
fn remote_context(headers: &http::HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let mut values = self.0.get_all(key).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => value.to_str().ok(),
            // Several traceparent headers: none is trusted.
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_ratio_is_a_share() {
        assert_eq!(parse_sample_ratio("0"), Ok(0.0));
        assert_eq!(parse_sample_ratio("1"), Ok(1.0));
        for bad in ["1.01", "-0.5", "NaN", "x"] {
            assert!(parse_sample_ratio(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_one_well_formed_traceparent_is_continued() {
        use opentelemetry::trace::TraceContextExt as _;
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut headers = http::HeaderMap::new();
        headers.append("traceparent", http::HeaderValue::from_static(good));
        let cx = remote_context(&headers);
        assert_eq!(
            cx.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        headers.append("traceparent", http::HeaderValue::from_static(good));
        assert!(!remote_context(&headers).span().span_context().is_valid());
        let mut bad = http::HeaderMap::new();
        bad.append(
            "traceparent",
            http::HeaderValue::from_static(
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            ),
        );
        assert!(!remote_context(&bad).span().span_context().is_valid());
    }
}
