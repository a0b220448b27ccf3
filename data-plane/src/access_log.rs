//! Access-log records: one per request, handed off without blocking the request.
//!
//! **Path of a record.** The request path builds one [`AccessLogRecord`] when the response
//! ends and calls [`record`]. That pushes it onto a buffer owned by the worker thread (no
//! lock, no atomic); every [`BATCH`] records, and every [`FLUSH_EVERY`] from the worker's
//! flusher, the buffer is swapped for an empty one and the full one is handed to the
//! collector with a non-blocking `try_send` on a bounded channel. The collector writes JSON
//! lines to stdout and queues records for the control plane; the shipper sends the queue
//! in acknowledged batches ([`Shipper`]).
//!
//! **Costs.** Per request: building the record's free-form strings (the fixed-vocabulary
//! fields travel as static strings in an [`Entry`]) and one `Vec::push`; per batch
//! one channel send. When logging is off, [`enabled`] is one relaxed load and no record is
//! built.
//!
//! **Bounds.** The channel holds [`CHANNEL_BATCHES`] batches and the ship queue
//! [`MAX_PENDING`] records; beyond either, records are dropped and counted (the count is
//! reported to the control plane with the next batch and logged at most once a minute).
//! Nothing here ever waits for the control plane or stdout on a worker thread.
//!
//! **Secrets.** A record has no field for headers; the request path fills `path` without
//! the query string and `query` only through [`redact_query`], so credentials cannot reach
//! a sink by construction.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use portcullis_proto::v1::{AccessLogBatch, AccessLogRecord};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, mpsc};

/// Records per hand-off from a worker.
pub const BATCH: usize = 64;
/// Longest a record waits in a worker's buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Batches the worker → collector channel holds.
pub const CHANNEL_BATCHES: usize = 256;
/// Records queued for the control plane at most (while it is slow or unreachable).
pub const MAX_PENDING: usize = 50_000;
/// Records per shipped batch at most.
pub const SHIP_BATCH: usize = 1_000;

/// Where records go. `--access-log off|stdout|control-plane`, combinable with commas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sinks {
    /// JSON lines on the process's stdout.
    pub stdout: bool,
    /// Shipped to the control plane over the authenticated channel.
    pub control_plane: bool,
}

impl Sinks {
    /// Parses `off`, `stdout`, `control-plane` or a comma-separated combination.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut sinks = Self::default();
        let mut off = false;
        for part in s.split(',') {
            match part {
                "off" => off = true,
                "stdout" => sinks.stdout = true,
                "control-plane" => sinks.control_plane = true,
                other => {
                    return Err(format!(
                        "unknown access-log sink {other:?}: expected off, stdout or control-plane"
                    ));
                }
            }
        }
        if off && sinks != Self::default() {
            return Err("access-log sink `off` cannot be combined with another sink".into());
        }
        Ok(sinks)
    }

    /// True when no sink is selected.
    pub fn is_off(&self) -> bool {
        !self.stdout && !self.control_plane
    }
}

/// Counters shared by the recorder, collector and shipper (read by metrics and tests).
#[derive(Debug, Default)]
pub struct Counters {
    /// Records dropped since start (channel or ship queue full).
    pub dropped: AtomicU64,
    /// Records the control plane acknowledged.
    pub shipped: AtomicU64,
    /// Dropped but not yet reported to the control plane.
    unreported: AtomicU64,
}

impl Counters {
    fn drop_records(&self, n: usize) {
        let n = n as u64;
        self.dropped.fetch_add(n, Ordering::Relaxed);
        self.unreported.fetch_add(n, Ordering::Relaxed);
    }
}

/// One request's record as the request path hands it off: the record's free-form strings,
/// and its fixed-vocabulary fields as static strings and the [`http::Method`] (no
/// allocation for a standard method). The collector writes the JSON line from these
/// directly and fills them (and `node_id`) into the record only for the control-plane
/// sink, so the request path allocates nothing for them.
#[derive(Debug, Default)]
pub struct Entry {
    /// The record; its `listener`, `method`, `http_version`, `auth` and `node_id` are
    /// left empty (the fields below hold them).
    pub record: AccessLogRecord,
    /// `http` or `https`.
    pub listener: &'static str,
    /// The request method.
    pub method: http::Method,
    /// `HTTP/1.1`, `HTTP/2`, ….
    pub http_version: &'static str,
    /// `none`, `admitted` or `refused`.
    pub auth: &'static str,
}

impl Entry {
    /// The complete record, named by `node_id`.
    pub fn into_record(self, node_id: &str) -> AccessLogRecord {
        let mut r = self.record;
        node_id.clone_into(&mut r.node_id);
        self.listener.clone_into(&mut r.listener);
        self.method.as_str().clone_into(&mut r.method);
        self.http_version.clone_into(&mut r.http_version);
        self.auth.clone_into(&mut r.auth);
        r
    }
}

struct Recorder {
    tx: mpsc::Sender<Vec<Entry>>,
    counters: Arc<Counters>,
}

static RECORDER: OnceLock<Recorder> = OnceLock::new();
static ENABLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// This worker's records not yet handed off.
    static BUFFER: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
}

/// Whether records are wanted: the request path skips building one otherwise.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Queues `record` on this thread's buffer; hands the buffer off when it is full. Never
/// blocks; a record that cannot be handed off is dropped and counted.
pub fn record(record: Entry) {
    let Some(recorder) = RECORDER.get() else {
        return;
    };
    BUFFER.with_borrow_mut(|buf| {
        if buf.capacity() == 0 {
            buf.reserve_exact(BATCH);
        }
        buf.push(record);
        if buf.len() >= BATCH {
            hand_off(recorder, buf);
        }
    });
}

/// Hands this thread's buffered records to the collector (the flusher's tick, shutdown).
pub fn flush_this_thread() {
    let Some(recorder) = RECORDER.get() else {
        return;
    };
    BUFFER.with_borrow_mut(|buf| {
        if !buf.is_empty() {
            hand_off(recorder, buf);
        }
    });
}

fn hand_off(recorder: &Recorder, buf: &mut Vec<Entry>) {
    let batch = std::mem::replace(buf, Vec::with_capacity(BATCH));
    if let Err(e) = recorder.tx.try_send(batch) {
        let batch = match e {
            mpsc::error::TrySendError::Full(b) | mpsc::error::TrySendError::Closed(b) => b,
        };
        recorder.counters.drop_records(batch.len());
    }
}

/// Flushes this worker's buffer every [`FLUSH_EVERY`]; spawn once on each worker runtime
/// (a record must not wait for traffic to leave an idle worker).
pub async fn flush_periodically() {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        flush_this_thread();
    }
}

/// The records waiting for the control plane, bounded by [`MAX_PENDING`].
#[derive(Debug, Default)]
pub struct ShipQueue {
    records: Mutex<VecDeque<AccessLogRecord>>,
    ready: Notify,
}

impl ShipQueue {
    /// Queues `batch`, dropping (and counting) what does not fit.
    fn push(&self, batch: Vec<AccessLogRecord>, counters: &Counters) {
        let mut q = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let room = MAX_PENDING.saturating_sub(q.len());
        let len = batch.len();
        q.extend(batch.into_iter().take(room));
        drop(q);
        if len > room {
            counters.drop_records(len - room);
        }
        self.ready.notify_one();
    }

    /// Up to [`SHIP_BATCH`] records from the front, copied: they stay queued until
    /// [`ShipQueue::acknowledge`].
    fn peek(&self) -> Vec<AccessLogRecord> {
        let q = self.records.lock().unwrap_or_else(|e| e.into_inner());
        q.iter().take(SHIP_BATCH).cloned().collect()
    }

    fn acknowledge(&self, n: usize) {
        let mut q = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let n = n.min(q.len());
        q.drain(..n);
    }

    /// Records waiting.
    pub fn len(&self) -> usize {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the process keeps to drive the sinks: start the collector with
/// [`Pipeline::collect`] and, for the control-plane sink, a [`Shipper`] on `queue`.
#[derive(Debug)]
pub struct Pipeline {
    /// Shared counters.
    pub counters: Arc<Counters>,
    /// Records for the control plane (empty unless that sink is on).
    pub queue: Arc<ShipQueue>,
    rx: mpsc::Receiver<Vec<Entry>>,
    sinks: Sinks,
    /// Written into every record by the collector (not on the request path).
    node_id: String,
}

/// Records dropped since start by the process-wide recorder, `None` when none is
/// installed (read by `/metrics`).
pub fn dropped_records() -> Option<u64> {
    RECORDER
        .get()
        .map(|r| r.counters.dropped.load(Ordering::Relaxed))
}

/// Installs the process-wide recorder for `sinks`; `None` when logging is off. Only the
/// first call installs anything (one recorder per process).
pub fn install(sinks: Sinks) -> Option<Pipeline> {
    if sinks.is_off() {
        return None;
    }
    let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
    let counters = Arc::new(Counters::default());
    RECORDER
        .set(Recorder {
            tx,
            counters: counters.clone(),
        })
        .ok()?;
    ENABLED.store(true, Ordering::Relaxed);
    Some(Pipeline {
        counters,
        queue: Arc::new(ShipQueue::default()),
        rx,
        sinks,
        node_id: String::new(),
    })
}

impl Pipeline {
    /// Names this data plane in every record (`node_id`).
    pub fn with_node_id(mut self, node_id: &str) -> Self {
        node_id.clone_into(&mut self.node_id);
        self
    }

    /// Runs the collector until every sender is gone: JSON lines to stdout, records to the
    /// ship queue. Warns at most once a minute when records were dropped.
    pub async fn collect(mut self) {
        let mut stdout = tokio::io::BufWriter::new(tokio::io::stdout());
        let mut line = Vec::with_capacity(512);
        let mut warned_at = 0u64;
        let mut last_warn = tokio::time::Instant::now();
        while let Some(batch) = self.rx.recv().await {
            if self.sinks.stdout {
                line.clear();
                for e in &batch {
                    write_json_line(&mut line, &self.node_id, e);
                    if line.len() >= 16 * 1024 {
                        // A closed stdout must not stop the control-plane sink.
                        let _ = stdout.write_all(&line).await;
                        line.clear();
                    }
                }
                let _ = stdout.write_all(&line).await;
                let _ = stdout.flush().await;
            }
            if self.sinks.control_plane {
                let records = batch
                    .into_iter()
                    .map(|e| e.into_record(&self.node_id))
                    .collect();
                self.queue.push(records, &self.counters);
            }
            let dropped = self.counters.dropped.load(Ordering::Relaxed);
            if dropped > warned_at && last_warn.elapsed() >= Duration::from_secs(60) {
                tracing::warn!(
                    dropped_total = dropped,
                    "access-log records dropped: sinks slower than traffic"
                );
                warned_at = dropped;
                last_warn = tokio::time::Instant::now();
            }
        }
    }
}

/// Sends queued records to the control plane in acknowledged batches. A batch stays queued
/// until the control plane acknowledges it, so a control-plane restart loses only what the
/// queue's bound dropped (counted). Retries with capped backoff.
pub struct Shipper<S> {
    queue: Arc<ShipQueue>,
    counters: Arc<Counters>,
    send: S,
}

impl<S, F, E> Shipper<S>
where
    S: FnMut(AccessLogBatch) -> F,
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    /// A shipper draining `pipeline`'s queue through `send` (one call per batch; `Ok`
    /// means the control plane stored it).
    pub fn new(pipeline: &Pipeline, send: S) -> Self {
        Self {
            queue: pipeline.queue.clone(),
            counters: pipeline.counters.clone(),
            send,
        }
    }

    /// Ships forever.
    pub async fn run(mut self) {
        let mut delay = Duration::from_millis(100);
        loop {
            let records = self.queue.peek();
            if records.is_empty() {
                self.queue.ready.notified().await;
                continue;
            }
            let n = records.len();
            let dropped = self.counters.unreported.swap(0, Ordering::Relaxed);
            match (self.send)(AccessLogBatch { records, dropped }).await {
                Ok(()) => {
                    self.queue.acknowledge(n);
                    self.counters.shipped.fetch_add(n as u64, Ordering::Relaxed);
                    delay = Duration::from_millis(100);
                }
                Err(e) => {
                    self.counters
                        .unreported
                        .fetch_add(dropped, Ordering::Relaxed);
                    tracing::debug!(error = %e, queued = self.queue.len(), "shipping access-log records failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Keeps the query string only when the proxy opted in, and then without any parameter
/// that can carry a credential. Returns an empty string when nothing is kept.
pub fn redact_query(query: &str, keep: bool) -> String {
    if !keep || query.is_empty() {
        return String::new();
    }
    let mut out = String::with_capacity(query.len());
    for pair in query.split('&') {
        let name = pair.split('=').next().unwrap_or_default();
        if is_secret_parameter(name) {
            continue;
        }
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(pair);
    }
    out
}

/// Parameter names that carry credentials in OAuth, OIDC and common APIs (compared
/// without case; percent-encoded names are treated as secret, since they could hide one).
fn is_secret_parameter(name: &str) -> bool {
    const SECRET: &[&str] = &[
        "access_token",
        "refresh_token",
        "id_token",
        "code",
        "state",
        "code_verifier",
        "client_secret",
        "client_assertion",
        "password",
        "token",
        "api_key",
        "apikey",
        "key",
        "secret",
        "signature",
        "sig",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
    ];
    name.contains('%') || SECRET.iter().any(|s| name.eq_ignore_ascii_case(s))
}

/// Appends `r` as one JSON line (newline included) to `out`, written by hand: the field
/// names, order and escaping are those of serde_json on [`Json`] (empty optional fields
/// left out), which the tests check, at a fraction of its cost (no per-field dispatch, no
/// timestamp `String`).
fn write_json_line(out: &mut Vec<u8>, node_id: &str, e: &Entry) {
    let r = &e.record;
    out.extend_from_slice(b"{\"time\":\"");
    write_rfc3339_nanos(out, r.time_unix_nanos);
    out.push(b'"');
    str_field(out, b"node_id", node_id);
    str_field(out, b"listener", e.listener);
    str_field(out, b"client_ip", &r.client_ip);
    num_field(out, b"client_port", u64::from(r.client_port));
    str_field(out, b"method", e.method.as_str());
    str_field(out, b"host", &r.host);
    str_field(out, b"path", &r.path);
    opt_str_field(out, b"query", &r.query);
    str_field(out, b"http_version", e.http_version);
    num_field(out, b"status", u64::from(r.status));
    num_field(out, b"request_body_bytes", r.request_body_bytes);
    num_field(out, b"response_body_bytes", r.response_body_bytes);
    num_field(out, b"duration_us", r.duration_micros);
    num_field(out, b"upstream_ttfb_us", r.upstream_ttfb_micros);
    opt_str_field(out, b"upstream", &r.upstream);
    opt_str_field(out, b"proxy", &r.proxy);
    opt_str_field(out, b"route", &r.route);
    str_field(out, b"auth", e.auth);
    opt_str_field(out, b"auth_reason", &r.auth_reason);
    opt_str_field(out, b"user", &r.user);
    opt_str_field(out, b"client_id", &r.client_id);
    str_field(out, b"request_id", &r.request_id);
    opt_str_field(out, b"trace_id", &r.trace_id);
    opt_str_field(out, b"user_agent", &r.user_agent);
    opt_str_field(out, b"mcp_session_id", &r.mcp_session_id);
    opt_str_field(out, b"proxy_authority", &r.proxy_authority);
    opt_str_field(out, b"proxy_unique_id", &r.proxy_unique_id);
    opt_str_field(out, b"proxy_alpn", &r.proxy_alpn);
    opt_str_field(out, b"proxy_ssl_version", &r.proxy_ssl_version);
    if r.proxy_ssl_client != 0 || r.proxy_ssl_verify != 0 {
        num_field(out, b"proxy_ssl_client", u64::from(r.proxy_ssl_client));
        num_field(out, b"proxy_ssl_verify", u64::from(r.proxy_ssl_verify));
    }
    out.extend_from_slice(b"}\n");
}

fn field_name(out: &mut Vec<u8>, name: &[u8]) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name);
    out.extend_from_slice(b"\":");
}

fn str_field(out: &mut Vec<u8>, name: &[u8], value: &str) {
    field_name(out, name);
    escape_json(out, value);
}

fn opt_str_field(out: &mut Vec<u8>, name: &[u8], value: &str) {
    if !value.is_empty() {
        str_field(out, name, value);
    }
}

fn num_field(out: &mut Vec<u8>, name: &[u8], value: u64) {
    field_name(out, name);
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut v = value;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// `value` as a quoted JSON string, escaped as serde_json does: `"` and `\`, the short
/// forms `\b \t \n \f \r`, other control characters as `\u00xx`; everything else (UTF-8
/// included) copied in runs.
fn escape_json(out: &mut Vec<u8>, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = value.as_bytes();
    out.push(b'"');
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            b'\t' => b't',
            b'\n' => b'n',
            0x0c => b'f',
            b'\r' => b'r',
            0x00..=0x1f => b'u',
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        run = i + 1;
        if short == b'u' {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', short]);
        }
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// Appends `v` zero-padded to `width` digits (more when it is wider).
fn padded(out: &mut Vec<u8>, v: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let start = i.min(buf.len() - width);
    out.extend_from_slice(&buf[start..]);
}

/// `2026-12-07T03:38:00.123456789Z` from Unix nanoseconds (UTC, proleptic Gregorian).
fn write_rfc3339_nanos(out: &mut Vec<u8>, nanos: i64) {
    let secs = nanos.div_euclid(1_000_000_000);
    let sub = nanos.rem_euclid(1_000_000_000) as u64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u64;
    let (y, m, d) = civil_from_days(days);
    if y < 0 {
        out.push(b'-');
    }
    padded(out, y.unsigned_abs(), if y < 0 { 3 } else { 4 });
    out.push(b'-');
    padded(out, u64::from(m), 2);
    out.push(b'-');
    padded(out, u64::from(d), 2);
    out.push(b'T');
    padded(out, rem / 3600, 2);
    out.push(b':');
    padded(out, rem % 3600 / 60, 2);
    out.push(b':');
    padded(out, rem % 60, 2);
    out.push(b'.');
    padded(out, sub, 9);
    out.push(b'Z');
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde::Serialize;

    /// The reference for [`write_json_line`]: serde_json on these fields (names as the seed's
    /// and Traefik's logs use them).
    #[derive(Serialize)]
    struct Json<'a> {
        time: String,
        node_id: &'a str,
        listener: &'a str,
        client_ip: &'a str,
        client_port: u32,
        method: &'a str,
        host: &'a str,
        path: &'a str,
        #[serde(skip_serializing_if = "str::is_empty")]
        query: &'a str,
        http_version: &'a str,
        status: u32,
        request_body_bytes: u64,
        response_body_bytes: u64,
        duration_us: u64,
        upstream_ttfb_us: u64,
        #[serde(skip_serializing_if = "str::is_empty")]
        upstream: &'a str,
        #[serde(skip_serializing_if = "str::is_empty")]
        proxy: &'a str,
        #[serde(skip_serializing_if = "str::is_empty")]
        route: &'a str,
        auth: &'a str,
        #[serde(skip_serializing_if = "str::is_empty")]
        auth_reason: &'a str,
        #[serde(skip_serializing_if = "str::is_empty")]
        user: &'a str,
        #[serde(skip_serializing_if = "str::is_empty")]
        client_id: &'a str,
        request_id: &'a str,
        #[serde(skip_serializing_if = "str::is_empty")]
        trace_id: &'a str,
        #[serde(skip_serializing_if = "str::is_empty")]
        user_agent: &'a str,
        #[serde(skip_serializing_if = "str::is_empty")]
        mcp_session_id: &'a str,
        #[serde(skip_serializing_if = "str::is_empty")]
        proxy_authority: &'a str,
        #[serde(skip_serializing_if = "str::is_empty")]
        proxy_unique_id: &'a str,
        #[serde(skip_serializing_if = "str::is_empty")]
        proxy_alpn: &'a str,
        #[serde(skip_serializing_if = "str::is_empty")]
        proxy_ssl_version: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        proxy_ssl_client: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        proxy_ssl_verify: Option<u32>,
    }

    impl<'a> From<&'a AccessLogRecord> for Json<'a> {
        fn from(r: &'a AccessLogRecord) -> Self {
            Self {
                time: rfc3339_nanos_reference(r.time_unix_nanos),
                node_id: &r.node_id,
                listener: &r.listener,
                client_ip: &r.client_ip,
                client_port: r.client_port,
                method: &r.method,
                host: &r.host,
                path: &r.path,
                query: &r.query,
                http_version: &r.http_version,
                status: r.status,
                request_body_bytes: r.request_body_bytes,
                response_body_bytes: r.response_body_bytes,
                duration_us: r.duration_micros,
                upstream_ttfb_us: r.upstream_ttfb_micros,
                upstream: &r.upstream,
                proxy: &r.proxy,
                route: &r.route,
                auth: &r.auth,
                auth_reason: &r.auth_reason,
                user: &r.user,
                client_id: &r.client_id,
                request_id: &r.request_id,
                trace_id: &r.trace_id,
                user_agent: &r.user_agent,
                mcp_session_id: &r.mcp_session_id,
                proxy_authority: &r.proxy_authority,
                proxy_unique_id: &r.proxy_unique_id,
                proxy_alpn: &r.proxy_alpn,
                proxy_ssl_version: &r.proxy_ssl_version,
                proxy_ssl_client: (r.proxy_ssl_client != 0 || r.proxy_ssl_verify != 0)
                    .then_some(r.proxy_ssl_client),
                proxy_ssl_verify: (r.proxy_ssl_client != 0 || r.proxy_ssl_verify != 0)
                    .then_some(r.proxy_ssl_verify),
            }
        }
    }

    /// `2026-12-07T03:38:00.123456789Z` from Unix nanoseconds (UTC, proleptic Gregorian).
    fn rfc3339_nanos_reference(nanos: i64) -> String {
        let secs = nanos.div_euclid(1_000_000_000);
        let sub = nanos.rem_euclid(1_000_000_000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{sub:09}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }

    #[test]
    fn sinks_parse_and_refuse() {
        assert_eq!(Sinks::parse("off"), Ok(Sinks::default()));
        assert_eq!(
            Sinks::parse("stdout,control-plane"),
            Ok(Sinks {
                stdout: true,
                control_plane: true
            })
        );
        assert!(Sinks::parse("off,stdout").is_err());
        assert!(Sinks::parse("file").unwrap_err().contains("\"file\""));
        assert!(Sinks::parse("").is_err());
    }

    #[test]
    fn query_is_dropped_unless_kept_and_never_holds_credentials() {
        assert_eq!(redact_query("a=1&code=x", false), "");
        assert_eq!(
            redact_query(
                "a=1&code=x&STATE=y&access_token=t&b&Token=z&%63ode=w&page=2",
                true
            ),
            "a=1&b&page=2"
        );
    }

    fn rfc3339_nanos(nanos: i64) -> String {
        let mut out = Vec::new();
        write_rfc3339_nanos(&mut out, nanos);
        String::from_utf8(out).expect("ascii")
    }

    #[test]
    fn hand_written_lines_equal_serde_json_output() {
        let full = AccessLogRecord {
            time_unix_nanos: 1_796_614_680_123_456_789,
            client_ip: "2001:db8::1".into(),
            client_port: 65_535,
            host: "app.example.com".into(),
            path: "/a \"quoted\" \\ p\u{e9}th\u{1f600}\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}".into(),
            query: "page=2".into(),
            status: 200,
            request_body_bytes: u64::MAX,
            response_body_bytes: 0,
            duration_micros: 1234,
            upstream_ttfb_micros: 1000,
            upstream: "127.0.0.1:8080".into(),
            proxy: "app.example.com".into(),
            route: "r1".into(),
            auth_reason: "invalid_token".into(),
            user: "octo\u{2028}cat".into(),
            client_id: "cli".into(),
            request_id: "0123456789abcdef0123456789abcdef".into(),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            user_agent: "curl/8.0 \"x\"".into(),
            mcp_session_id: "s-1".into(),
            proxy_authority: "app.example.com".into(),
            proxy_unique_id: "00ff".into(),
            proxy_alpn: "h2".into(),
            proxy_ssl_version: "TLSv1.3".into(),
            proxy_ssl_client: 5,
            proxy_ssl_verify: 0,
            ..Default::default()
        };
        let empty = AccessLogRecord {
            time_unix_nanos: 951_782_400_000_000_000,
            ..Default::default()
        };
        let minimal = AccessLogRecord {
            request_id: "abc".into(),
            status: 404,
            ..Default::default()
        };
        let entries = [
            Entry {
                record: full,
                listener: "https",
                method: http::Method::GET,
                http_version: "HTTP/1.1",
                auth: "admitted",
            },
            Entry {
                record: empty,
                ..Default::default()
            },
            Entry {
                record: minimal,
                listener: "http",
                method: http::Method::from_bytes(b"PROPFIND").expect("method"),
                http_version: "HTTP/2",
                auth: "none",
            },
        ];
        for (e, node_id) in entries.into_iter().zip(["node-1", "", "n\"2"]) {
            let mut line = Vec::new();
            write_json_line(&mut line, node_id, &e);
            let r = e.into_record(node_id);
            let mut expected = serde_json::to_vec(&Json::from(&r)).expect("serialize");
            expected.push(b'\n');
            assert_eq!(
                String::from_utf8(line).expect("utf-8"),
                String::from_utf8(expected).expect("utf-8")
            );
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        for nanos in [
            0,
            1_796_614_680_123_456_789,
            951_782_400_000_000_000,
            i64::MAX,
            -1,
        ] {
            assert_eq!(rfc3339_nanos(nanos), rfc3339_nanos_reference(nanos));
        }
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339_nanos(1_796_614_680_123_456_789),
            "2026-12-07T03:38:00.123456789Z"
        );
        assert_eq!(
            rfc3339_nanos(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
    }

    #[test]
    fn ship_queue_is_bounded_and_counts_drops() {
        let counters = Counters::default();
        let q = ShipQueue::default();
        q.push(vec![AccessLogRecord::default(); MAX_PENDING - 1], &counters);
        q.push(vec![AccessLogRecord::default(); 3], &counters);
        assert_eq!(q.len(), MAX_PENDING);
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(q.peek().len(), SHIP_BATCH);
        q.acknowledge(SHIP_BATCH);
        assert_eq!(q.len(), MAX_PENDING - SHIP_BATCH);
    }

    #[tokio::test]
    async fn unacknowledged_batches_are_kept_and_retried() {
        let (tx, rx) = mpsc::channel(1);
        let pipeline = Pipeline {
            counters: Arc::new(Counters::default()),
            queue: Arc::new(ShipQueue::default()),
            rx,
            sinks: Sinks {
                stdout: false,
                control_plane: true,
            },
            node_id: String::new(),
        };
        drop(tx);
        pipeline.counters.drop_records(7);
        let record = |p: &str| AccessLogRecord {
            path: p.into(),
            ..Default::default()
        };
        pipeline
            .queue
            .push(vec![record("/a"), record("/b")], &Counters::default());
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = calls.clone();
        let shipper = Shipper::new(&pipeline, move |batch: AccessLogBatch| {
            let seen = seen.clone();
            async move {
                let mut seen = seen.lock().expect("lock");
                seen.push((batch.records.len(), batch.dropped));
                // The first call fails: the control plane is restarting.
                if seen.len() == 1 {
                    Err("unavailable")
                } else {
                    Ok(())
                }
            }
        });
        let task = tokio::spawn(shipper.run());
        for _ in 0..100 {
            if pipeline.queue.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        task.abort();
        assert!(pipeline.queue.is_empty());
        // Same records and the same drop count resent after the failure.
        assert_eq!(*calls.lock().expect("lock"), vec![(2, 7), (2, 7)]);
        assert_eq!(pipeline.counters.shipped.load(Ordering::Relaxed), 2);
    }
}
