//! OpenTelemetry traces of the request path: one server span per request, exported over
//! OTLP (`--otlp-endpoint`).
//!
//! **Off by default, and then free**: without `--otlp-endpoint` nothing is installed,
//! [`start`] is one load of an unset [`OnceLock`] returning `None`, and the client's
//! `traceparent`/`tracestate` reach the upstream untouched (a transparent proxy).
//!
//! **On**: [`start`] continues the client's W3C trace context if its `traceparent` is
//! well formed (exactly one header, version `00` of 55 characters or a later version
//! that extends it, lower-case hex, non-zero ids; `ff` refused), else starts a new trace:
//! a malformed or forged header is never continued and its `tracestate` is dropped.
//! Sampling is parent-based: a sampled parent is sampled, an unsampled one is not, and a
//! new trace is sampled with `--trace-sample-ratio` (by trace id). Whether sampled or not,
//! the upstream request carries this span's `traceparent` (replacing the client's), so
//! the trace continues behind the proxy. The span ends when hyper is done with the
//! response body (its end, or the client going away), not when the head is sent.
//!
//! Cost when on, per request: one SDK span (its attributes in one `Vec`, a few small
//! strings), one `traceparent` header value, one boxed slot in the response body, and a
//! note in the request's extensions (trace id for the access log, [`trace_id_of`]; the
//! route for `http.route`, [`note_route`]). Spans
//! go to the SDK's batch processor through a bounded queue (2048 spans by default,
//! `OTEL_BSP_MAX_QUEUE_SIZE`) with a non-blocking send; exports run on the processor's own
//! thread. A full queue drops the span: the SDK counts drops, warns at the first and
//! logs the total at shutdown (it exposes no counter to read). Unsampled spans are never
//! queued.
//!
//! Client input is bounded: `url.path` and `server.address` are cut at
//! [`MAX_ATTRIBUTE_BYTES`]; the query string is never recorded (it may carry tokens).

use std::net::SocketAddr;
use std::str::FromStr as _;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::header::{HOST, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Version};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};

/// `traceparent` (W3C Trace Context).
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate` (W3C Trace Context).
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// Longest `url.path` or `server.address` recorded; longer values are cut.
pub const MAX_ATTRIBUTE_BYTES: usize = 1024;

/// The tracer of the request path; set once by [`install`].
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// How spans travel to the collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (usually port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies, POSTed to `<endpoint>/v1/traces` (usually port 4318).
    Http,
}

/// Where and how much to trace.
#[derive(Clone, Debug)]
pub struct TraceSettings {
    /// Collector URL, e.g. `http://127.0.0.1:4317`.
    pub endpoint: String,
    /// gRPC or HTTP/protobuf.
    pub protocol: OtlpProtocol,
    /// Share of new traces sampled, 0.0 to 1.0 (clients' sampled flags are followed).
    pub sample_ratio: f64,
    /// `service.name` of the resource.
    pub service_name: &'static str,
    /// `service.instance.id` of the resource (the node id).
    pub instance: String,
}

/// Keeps the exporter alive; dropping it flushes what is queued (bounded by the export
/// timeout) and stops the processor's thread.
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

/// Builds the OTLP exporter and the batch processor, and turns tracing on for the
/// request path. Call once, inside a Tokio runtime (the gRPC channel's tasks live there).
pub fn install(settings: &TraceSettings) -> anyhow::Result<Exporter> {
    let provider = provider(settings)?;
    let tracer = provider.tracer("portcullis-data-plane");
    TRACER
        .set(tracer)
        .map_err(|_| anyhow::anyhow!("tracing is already installed"))?;
    Ok(Exporter(provider))
}

/// The SDK provider for `settings`: OTLP exporter, bounded batch processor, parent-based
/// ratio sampler. Shared with tests.
pub fn provider(settings: &TraceSettings) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};
    let url = url::Url::parse(&settings.endpoint)
        .map_err(|e| anyhow::anyhow!("--otlp-endpoint {:?}: {e}", settings.endpoint))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        anyhow::bail!(
            "--otlp-endpoint {:?} must be an http:// or https:// URL with a host",
            settings.endpoint
        );
    }
    let timeout = Duration::from_secs(10);
    let exporter = match settings.protocol {
        OtlpProtocol::Grpc => SpanExporter::builder()
            .with_tonic()
            .with_endpoint(settings.endpoint.clone())
            .with_timeout(timeout)
            .build(),
        OtlpProtocol::Http => SpanExporter::builder()
            .with_http()
            .with_endpoint(http_traces_url(&settings.endpoint))
            .with_timeout(timeout)
            .build(),
    }
    .map_err(|e| anyhow::anyhow!("--otlp-endpoint {:?}: {e}", settings.endpoint))?;
    // Defaults (queue 2048, batches of 512, every 5 s), overridable with OTEL_BSP_*.
    let batch = BatchConfigBuilder::default().build();
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batch)
        .build();
    let resource = Resource::builder()
        .with_service_name(settings.service_name)
        .with_attribute(KeyValue::new(
            "service.instance.id",
            settings.instance.clone(),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sample_ratio,
        ))))
        .with_resource(resource)
        .build())
}

/// OTLP/HTTP's traces URL: the endpoint as given if it already names `/v1/traces`, else
/// with it appended (as `OTEL_EXPORTER_OTLP_ENDPOINT` is read).
fn http_traces_url(endpoint: &str) -> String {
    if endpoint.trim_end_matches('/').ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{}/v1/traces", endpoint.trim_end_matches('/'))
    }
}

/// Whether spans are being made.
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// The server span of one request, from its head to the end of its response body.
pub struct RequestSpan {
    span: opentelemetry_sdk::trace::Span,
    /// The client's trace context was continued.
    continued: bool,
    /// The span's name before the route is known: the method.
    method: &'static str,
    /// Filled by [`note_route`] once the route is known; `None` when not recording.
    route: Option<RouteSlot>,
}

/// The selected route's (id, pattern), set once by [`note_route`].
type RouteSlot = Arc<OnceLock<(Box<str>, Box<str>)>>;

/// What [`start`] leaves in the request's extensions (only while tracing): the trace id,
/// for the access log, and where the request path notes the route it selected
/// ([`note_route`]; `None` for unsampled spans, which record nothing).
#[derive(Clone)]
struct Note {
    trace_id: [u8; 16],
    route: Option<RouteSlot>,
}

/// The trace id of `req`'s span (sampled or not), if [`start`] made one: for the
/// access-log record. One extensions lookup; `None` while tracing is off.
pub fn trace_id_of<B>(req: &Request<B>) -> Option<[u8; 16]> {
    req.extensions().get::<Note>().map(|note| note.trace_id)
}

/// Records the selected route (`id`, path pattern) for the request's span: `http.route`
/// (the pattern) and `portcullis.route.id`. Does nothing unless [`start`] made a span
/// for `req` (one extensions lookup).
pub fn note_route<B>(req: &Request<B>, route: Option<(&str, &str)>) {
    let note = req
        .extensions()
        .get::<Note>()
        .and_then(|n| n.route.as_ref());
    if let (Some(note), Some((id, pattern))) = (note, route) {
        let _ = note.set((id.into(), cut(pattern).into()));
    }
}

/// Starts the server span of `req` if tracing is on (see the module docs), and rewrites
/// the request's trace headers for the upstream: `traceparent` becomes this span's, and
/// `tracestate` is kept only when the client's context was continued. `secure` is the
/// listener's scheme; `peer` the TCP peer.
pub fn start<B>(req: &mut Request<B>, peer: SocketAddr, secure: bool) -> Option<RequestSpan> {
    let tracer = TRACER.get()?;
    let mut span = RequestSpan::new(tracer, req, peer, secure);
    if span.span.is_recording() {
        span.route = Some(Arc::default());
    }
    req.extensions_mut().insert(Note {
        trace_id: span.trace_id(),
        route: span.route.clone(),
    });
    let headers = req.headers_mut();
    if !span.continued {
        headers.remove(TRACESTATE);
    }
    headers.insert(TRACEPARENT, span.upstream_traceparent());
    Some(span)
}

// === impl RequestSpan ===

impl RequestSpan {
    fn new<B>(tracer: &SdkTracer, req: &Request<B>, peer: SocketAddr, secure: bool) -> Self {
        let remote = remote_parent(req.headers());
        let continued = remote.is_some();
        let parent = match remote {
            Some(context) => Context::new().with_remote_span_context(context),
            None => Context::new(),
        };
        let (name, method) = method_name(req.method());
        let mut attributes = Vec::with_capacity(9);
        attributes.push(KeyValue::new("http.request.method", method));
        if method == "_OTHER" {
            attributes.push(KeyValue::new(
                "http.request.method_original",
                cut(req.method().as_str()).to_owned(),
            ));
        }
        attributes.push(KeyValue::new("url.path", cut(req.uri().path()).to_owned()));
        attributes.push(KeyValue::new(
            "url.scheme",
            if secure { "https" } else { "http" },
        ));
        if let Some(host) = server_address(req) {
            attributes.push(KeyValue::new("server.address", host.to_owned()));
        }
        attributes.push(KeyValue::new(
            "network.protocol.version",
            protocol_version(req.version()),
        ));
        attributes.push(KeyValue::new(
            "client.address",
            peer.ip().to_canonical().to_string(),
        ));
        attributes.push(KeyValue::new("client.port", i64::from(peer.port())));
        let builder = tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes);
        Self {
            span: tracer.build_with_context(builder, &parent),
            continued,
            method: name,
            route: None,
        }
    }

    /// The trace this request belongs to (the client's when continued).
    pub fn trace_id(&self) -> [u8; 16] {
        self.span.span_context().trace_id().to_bytes()
    }

    /// [`Self::trace_id`] as 32 lower-case hex digits, as in `traceparent`.
    pub fn trace_id_hex(&self) -> String {
        self.span.span_context().trace_id().to_string()
    }

    /// Whether the span is recorded and exported.
    pub fn is_sampled(&self) -> bool {
        self.span.span_context().is_sampled()
    }

    /// Whether the client's trace context was continued.
    pub fn continued(&self) -> bool {
        self.continued
    }

    /// `traceparent` for the upstream request: this span as the parent.
    pub fn upstream_traceparent(&self) -> HeaderValue {
        let context = self.span.span_context();
        let value = format!(
            "00-{}-{}-{:02x}",
            context.trace_id(),
            context.span_id(),
            context.trace_flags().to_u8()
        );
        HeaderValue::try_from(value).unwrap_or(HeaderValue::from_static(""))
    }

    /// Records the response status (5xx marks the span as failed, as the HTTP semantic
    /// conventions say for server spans; 4xx is the client's).
    pub fn respond(&mut self, status: StatusCode) {
        if !self.span.is_recording() {
            return;
        }
        self.span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status.as_u16()),
        ));
        if let Some((id, pattern)) = self.route.as_ref().and_then(|r| r.get()) {
            // `{method} {http.route}`, as the HTTP semantic conventions name server spans.
            self.span.update_name(format!("{} {pattern}", self.method));
            self.span
                .set_attribute(KeyValue::new("http.route", pattern.to_string()));
            self.span
                .set_attribute(KeyValue::new("portcullis.route.id", id.to_string()));
        }
        if status.is_server_error() {
            self.span.set_status(Status::error(""));
        }
    }

    /// Ends the span now (dropping it does the same).
    pub fn end(mut self) {
        self.span.end();
    }
}

/// The client's trace context if `headers` carry exactly one well-formed `traceparent`
/// (see the module docs), with its `tracestate` when that parses.
fn remote_parent(headers: &HeaderMap) -> Option<SpanContext> {
    let mut values = headers.get_all(TRACEPARENT).iter();
    let (value, None) = (values.next()?, values.next()) else {
        return None;
    };
    let (trace_id, span_id, flags) = parse_traceparent(value.as_bytes())?;
    let state = tracestate(headers);
    Some(SpanContext::new(trace_id, span_id, flags, true, state))
}

/// Parses a W3C `traceparent` value strictly (lower-case hex only; version `ff`
/// refused; version `00` exactly 55 bytes; a later version may append `-…`).
pub fn parse_traceparent(value: &[u8]) -> Option<(TraceId, SpanId, TraceFlags)> {
    if value.len() < 55 || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let version = hex_u8(&value[0..2])?;
    match version {
        0xff => return None,
        0 if value.len() != 55 => return None,
        _ if value.len() > 55 && value[55] != b'-' => return None,
        _ => {}
    }
    let trace_id = u128::from_str_radix(lower_hex(&value[3..35])?, 16).ok()?;
    let span_id = u64::from_str_radix(lower_hex(&value[36..52])?, 16).ok()?;
    let flags = hex_u8(&value[53..55])?;
    if trace_id == 0 || span_id == 0 {
        return None;
    }
    Some((
        TraceId::from(trace_id),
        SpanId::from(span_id),
        // Only the sampled flag is defined; other bits are not passed on.
        TraceFlags::new(flags & TraceFlags::SAMPLED.to_u8()),
    ))
}

fn lower_hex(bytes: &[u8]) -> Option<&str> {
    bytes
        .iter()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        .then(|| std::str::from_utf8(bytes).ok())
        .flatten()
}

fn hex_u8(bytes: &[u8]) -> Option<u8> {
    u8::from_str_radix(lower_hex(bytes)?, 16).ok()
}

/// The client's `tracestate` (several headers are joined, as the spec allows); empty if
/// absent or malformed.
fn tracestate(headers: &HeaderMap) -> TraceState {
    let mut joined = String::new();
    for value in headers.get_all(TRACESTATE) {
        let Ok(text) = value.to_str() else {
            return TraceState::NONE;
        };
        if joined.len() + text.len() > 512 {
            // W3C: at most 32 members; a longer list is not worth parsing.
            return TraceState::NONE;
        }
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(text);
    }
    TraceState::from_str(&joined).unwrap_or(TraceState::NONE)
}

/// The span name and `http.request.method`: known methods by name, others `_OTHER`
/// (bounded cardinality, as the semantic conventions ask).
fn method_name(method: &Method) -> (&'static str, &'static str) {
    let known = match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => return ("HTTP", "_OTHER"),
    };
    (known, known)
}

fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// Host name from `:authority` or `Host`, port stripped (IPv6 brackets kept).
fn server_address<B>(req: &Request<B>) -> Option<&str> {
    let host = match req.uri().host() {
        Some(host) => host,
        None => {
            let value = req.headers().get(HOST)?.to_str().ok()?;
            match value.rfind(':') {
                Some(i) if !value[i..].contains(']') => &value[..i],
                _ => value,
            }
        }
    };
    (!host.is_empty()).then(|| cut(host))
}

/// `s` cut to [`MAX_ATTRIBUTE_BYTES`] at a character boundary.
fn cut(s: &str) -> &str {
    if s.len() <= MAX_ATTRIBUTE_BYTES {
        return s;
    }
    let mut end = MAX_ATTRIBUTE_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests;
