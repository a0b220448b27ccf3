//! Access-log records: one per request, encoded once and handed off without blocking the
//! request.
//!
//! **Path of a record.** A record is its [`Fixed`] fields (numbers, and strings from fixed
//! sets) and its free-form strings, already as `AccessLogRecord` protobuf fields
//! ([`Strings`]: the request's observation keeps them in that form from the start,
//! [`crate::request::Observation`]). When a request is over, the request path calls
//! [`record_strings`] with both; [`record`] takes [`Fields`] instead (the same fixed
//! fields, the strings as `&str`), encodes its strings into a per-thread [`Strings`] and
//! does the same. That writes the record straight into byte buffers owned by the worker
//! thread, in each selected sink's final form: an `AccessLogBatch.records` entry for the
//! control plane ([`proto`]: the fixed fields and one copy of the strings), a JSON line
//! for stdout ([`json`]: the strings read through their spans, as bytes). No lock, no
//! atomic, no allocation once the buffers have grown.
//! Every [`BATCH`] records (or [`CHUNK_BYTES`]), and every [`FLUSH_EVERY`] from the worker's
//! flusher, the buffers are swapped for empty ones and handed to the collector thread with
//! a non-blocking `try_send` on a bounded channel. The collector writes the JSON bytes to
//! stdout and queues the protobuf bytes for the control plane; the shipper sends the queue
//! in acknowledged batches ([`Shipper`]) as they are, appending only the batch's position.
//!
//! **Costs.** Per request: the encoding itself (JSON escaping copies runs of plain bytes
//! found eight at a time; the timestamp's date and time of day are formatted once per
//! second; protobuf needs no escaping, and the strings are one copy), one thread-local
//! borrow. Per batch: one channel send, one `write` to stdout, one queue push; a shipped
//! batch is sent as the queued bytes themselves (no copy: `stream::ship`). When logging is
//! off, [`enabled`] is one relaxed load and nothing is built.
//!
//! **Bounds.** The channel holds [`CHANNEL_BATCHES`] chunks and the ship queue
//! [`MAX_PENDING`] records; beyond either, records are dropped and counted (the count is
//! reported to the control plane with the next batch and logged at most once a minute).
//! Nothing here ever waits for the control plane or stdout on a worker thread.
//!
//! **Secrets.** A record has no field for headers; the request path fills `path` without
//! the query string and `query` only through [`redact_query`], so credentials cannot reach
//! a sink by construction.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};

mod json;
mod proto;
mod strings;

pub(crate) use self::strings::{Strings, Text};

/// Records per hand-off from a worker.
pub const BATCH: usize = 64;
/// Bytes per hand-off from a worker at most (long paths or user agents).
pub const CHUNK_BYTES: usize = 64 * 1024;
/// Longest a record waits in a worker's buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Chunks the worker → collector channel holds.
pub const CHANNEL_BATCHES: usize = 256;
/// Records queued for the control plane at most (while it is slow or unreachable).
pub const MAX_PENDING: usize = 50_000;
/// Longest a shipped batch waits for the next one to fill up (Envoy's gRPC access-log
/// service flushes every second too); a full batch goes at once.
pub const SHIP_EVERY: Duration = Duration::from_secs(1);
/// Records per shipped batch at most (whole chunks; at least one chunk). A batch is what is
/// queued when the previous one is acknowledged, so batches grow only while the control
/// plane is behind, which is when its per-batch costs (a transaction and its fsync, a
/// round trip) need spreading over more records (bench/README.md, ingest).
pub const SHIP_BATCH: usize = 5_000;

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
    /// Records dropped since start (channel or ship queue full); shipped as the batch's
    /// cumulative `dropped_total`, so a retried batch does not count them twice.
    pub dropped: AtomicU64,
    /// Records the control plane acknowledged.
    pub shipped: AtomicU64,
}

impl Counters {
    fn drop_records(&self, n: usize) {
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// A record's fields that are not free-form text: numbers, and strings from fixed sets,
/// written to the JSON line unescaped (so they must need no escaping: the request path's
/// are this crate's constants and `http::Method`'s token). Zeros and empty strings are
/// absent fields.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fixed<'a> {
    /// When the request began, Unix nanoseconds.
    pub time_unix_nanos: i64,
    /// `http` or `https`.
    pub listener: &'a str,
    /// The client's port; 0 for an address from `X-Forwarded-For`.
    pub client_port: u32,
    /// The request method.
    pub method: &'a str,
    /// `HTTP/1.1`, `HTTP/2`, ….
    pub http_version: &'a str,
    /// Response status.
    pub status: u32,
    /// Request body bytes forwarded.
    pub request_body_bytes: u64,
    /// Response body bytes sent.
    pub response_body_bytes: u64,
    /// Whole request, microseconds.
    pub duration_micros: u64,
    /// To the upstream's response head, microseconds; 0 without one.
    pub upstream_ttfb_micros: u64,
    /// `none`, `admitted` or `refused`.
    pub auth: &'a str,
    /// The PROXY v2 header's SSL TLV's `PP2_CLIENT_*` bits.
    pub proxy_ssl_client: u32,
    /// Its verify result.
    pub proxy_ssl_verify: u32,
}

/// One request's record as [`record`] takes it: the `AccessLogRecord` fields but `node_id`
/// (the process's), borrowed. Empty strings and zeros are absent fields.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fields<'a> {
    /// Numbers and strings from fixed sets.
    pub fixed: Fixed<'a>,
    /// The client address every decision used (written to the JSON line unescaped: an
    /// address).
    pub client_ip: &'a str,
    /// Host as routed (lower case, no port), or as sent when no proxy matched.
    pub host: &'a str,
    /// Normalised path, without the query string.
    pub path: &'a str,
    /// Query string when the proxy opts in, credentials removed.
    pub query: &'a str,
    /// `host:port` of the upstream asked.
    pub upstream: &'a str,
    /// The proxy's hostname pattern.
    pub proxy: &'a str,
    /// Route id.
    pub route: &'a str,
    /// Why a request was refused.
    pub auth_reason: &'a str,
    /// `login` (else `sub`) of a verified token.
    pub user: &'a str,
    /// `client_id` of a verified token.
    pub client_id: &'a str,
    /// `X-Request-Id` (unescaped in the JSON line: a checked token).
    pub request_id: &'a str,
    /// W3C trace id, 32 hex digits (unescaped in the JSON line).
    pub trace_id: &'a str,
    /// `User-Agent`.
    pub user_agent: &'a str,
    /// `Mcp-Session-Id` of the request or its response.
    pub mcp_session_id: &'a str,
    /// The PROXY v2 header's authority TLV.
    pub proxy_authority: &'a str,
    /// Its unique id TLV, hex.
    pub proxy_unique_id: &'a str,
    /// Its ALPN TLV.
    pub proxy_alpn: &'a str,
    /// Its SSL TLV's version.
    pub proxy_ssl_version: &'a str,
}

impl Fields<'_> {
    /// Sets `strings` to this record's free-form fields (and nothing else).
    fn encode_strings(&self, strings: &mut Strings) {
        strings.clear();
        for (field, value) in self.texts() {
            strings.set(field, value);
        }
    }

    /// Each free-form field and its value, in field-number order.
    fn texts(&self) -> [(Text, &str); 18] {
        [
            (Text::ClientIp, self.client_ip),
            (Text::Host, self.host),
            (Text::Path, self.path),
            (Text::Query, self.query),
            (Text::Upstream, self.upstream),
            (Text::Proxy, self.proxy),
            (Text::Route, self.route),
            (Text::AuthReason, self.auth_reason),
            (Text::User, self.user),
            (Text::ClientId, self.client_id),
            (Text::RequestId, self.request_id),
            (Text::TraceId, self.trace_id),
            (Text::UserAgent, self.user_agent),
            (Text::McpSessionId, self.mcp_session_id),
            (Text::ProxyAuthority, self.proxy_authority),
            (Text::ProxyUniqueId, self.proxy_unique_id),
            (Text::ProxyAlpn, self.proxy_alpn),
            (Text::ProxySslVersion, self.proxy_ssl_version),
        ]
    }
}

/// Encodes `fields` into this thread's buffers; hands them off when full. Never blocks; a
/// record that cannot be handed off is dropped and counted.
pub fn record(fields: &Fields<'_>) {
    if RECORDER.get().is_none() {
        return;
    }
    SCRATCH.with_borrow_mut(|strings| {
        fields.encode_strings(strings);
        record_strings(&fields.fixed, strings);
    });
}

/// Encodes the record `fixed` and `strings` into this thread's buffers, in the form of each
/// sink that is on; hands them off when full (as [`record`]).
pub(crate) fn record_strings(fixed: &Fixed<'_>, strings: &Strings) {
    let Some(recorder) = RECORDER.get() else {
        return;
    };
    let node_id = NODE_ID.get().unwrap_or(&UNNAMED);
    BUFFER.with_borrow_mut(|buf| {
        if recorder.sinks.stdout {
            json::write_line(&mut buf.json, node_id.json, fixed, strings);
        }
        if recorder.sinks.control_plane {
            proto::write_record(&mut buf.proto, node_id.proto, fixed, strings);
        }
        buf.records += 1;
        if buf.records >= BATCH || buf.json.len().max(buf.proto.len()) >= CHUNK_BYTES {
            hand_off(recorder, buf);
        }
    });
}

/// One worker's records, encoded for the sinks that are on.
#[derive(Debug, Default)]
struct Chunk {
    /// JSON lines (stdout sink).
    json: Vec<u8>,
    /// `AccessLogBatch.records` entries (control-plane sink).
    proto: Vec<u8>,
    records: usize,
}

impl Chunk {
    fn with_capacity(sinks: Sinks) -> Self {
        let room = |on: bool| {
            if on {
                Vec::with_capacity(BATCH * 512)
            } else {
                Vec::new()
            }
        };
        Self {
            json: room(sinks.stdout),
            proto: room(sinks.control_plane),
            records: 0,
        }
    }
}

struct Recorder {
    tx: mpsc::Sender<Chunk>,
    counters: Arc<Counters>,
    sinks: Sinks,
}

static RECORDER: OnceLock<Recorder> = OnceLock::new();
static ENABLED: AtomicBool = AtomicBool::new(false);
/// This data plane's `--node-id`, written into every record.
static NODE_ID: OnceLock<NodeId> = OnceLock::new();
/// The node id of a process that set none.
const UNNAMED: NodeId = NodeId {
    json: b",\"node_id\":\"\"",
    proto: b"",
};

/// The node id as each sink writes it, encoded (and escaped) once per process rather than
/// once per record. Set once and kept for the life of the process (hence `'static`).
#[derive(Debug)]
struct NodeId {
    /// `,"node_id":"…"`.
    json: &'static [u8],
    /// `AccessLogRecord.node_id` (field 2), or nothing when the id is empty.
    proto: &'static [u8],
}

thread_local! {
    /// This worker's records not yet handed off.
    static BUFFER: RefCell<Chunk> = const {
        RefCell::new(Chunk {
            json: Vec::new(),
            proto: Vec::new(),
            records: 0,
        })
    };
    /// [`record`]'s strings, encoded (reused).
    static SCRATCH: RefCell<Strings> = RefCell::new(Strings::with_capacity(512));
}

/// Whether records are wanted: the request path skips building one otherwise.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Hands this thread's buffered records to the collector (the flusher's tick, shutdown).
pub fn flush_this_thread() {
    let Some(recorder) = RECORDER.get() else {
        return;
    };
    BUFFER.with_borrow_mut(|buf| {
        if buf.records > 0 {
            hand_off(recorder, buf);
        }
    });
}

fn hand_off(recorder: &Recorder, buf: &mut Chunk) {
    let chunk = std::mem::replace(buf, Chunk::with_capacity(recorder.sinks));
    if let Err(e) = recorder.tx.try_send(chunk) {
        let chunk = match e {
            mpsc::error::TrySendError::Full(c) | mpsc::error::TrySendError::Closed(c) => c,
        };
        recorder.counters.drop_records(chunk.records);
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

/// The records waiting for the control plane, as encoded chunks, bounded by
/// [`MAX_PENDING`] records.
///
/// Every record queued gets the next number of this process's stream (chunks carry the
/// number of their first record), so a batch's place is `(stream, first_seq)` and the
/// control plane can store a retried batch exactly once.
#[derive(Debug)]
pub struct ShipQueue {
    chunks: Mutex<Pending>,
    ready: Notify,
    /// Random per process: the control plane keeps one position per stream.
    stream: [u8; 16],
}

impl Default for ShipQueue {
    fn default() -> Self {
        Self {
            chunks: Mutex::default(),
            ready: Notify::new(),
            stream: rand::random(),
        }
    }
}

#[derive(Debug, Default)]
struct Pending {
    /// Encoded `records` entries, the number of the first and how many each holds.
    chunks: VecDeque<(Bytes, u64, usize)>,
    records: usize,
    /// The number the next queued record gets.
    next_seq: u64,
}

/// A batch on its way: the encoded `AccessLogBatch` but its position fields, and what it
/// takes off the queue once acknowledged.
#[derive(Debug)]
struct Outgoing {
    /// The chunks, as queued (shared, not copied).
    records: Vec<Bytes>,
    first_seq: u64,
    count: usize,
    chunks: usize,
}

impl ShipQueue {
    /// Queues a chunk of `count` encoded records, or drops (and counts) it when the queue
    /// would exceed its bound.
    fn push(&self, records: Bytes, count: usize, counters: &Counters) {
        let mut q = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
        if q.records + count > MAX_PENDING {
            drop(q);
            counters.drop_records(count);
            return;
        }
        q.records += count;
        let first = q.next_seq;
        q.next_seq += count as u64;
        q.chunks.push_back((records, first, count));
        drop(q);
        self.ready.notify_one();
    }

    /// Whole chunks from the front, up to [`SHIP_BATCH`] records (at least one chunk),
    /// shared, not copied: they stay queued until [`ShipQueue::acknowledge`].
    fn peek(&self) -> Option<Outgoing> {
        let q = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
        let (mut count, mut chunks) = (0, 0);
        for (_, _, n) in &q.chunks {
            if chunks > 0 && count + n > SHIP_BATCH {
                break;
            }
            count += n;
            chunks += 1;
        }
        if chunks == 0 {
            return None;
        }
        let records = q
            .chunks
            .iter()
            .take(chunks)
            .map(|(b, _, _)| b.clone())
            .collect();
        Some(Outgoing {
            records,
            first_seq: q.chunks[0].1,
            count,
            chunks,
        })
    }

    fn acknowledge(&self, chunks: usize) {
        let mut q = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
        let q = &mut *q;
        let n = chunks.min(q.chunks.len());
        let records: usize = q.chunks.drain(..n).map(|(_, _, count)| count).sum();
        q.records -= records;
    }

    /// Records waiting.
    pub fn len(&self) -> usize {
        self.chunks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .records
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
    rx: mpsc::Receiver<Chunk>,
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
            sinks,
        })
        .ok()?;
    ENABLED.store(true, Ordering::Relaxed);
    Some(Pipeline {
        counters,
        queue: Arc::new(ShipQueue::default()),
        rx,
    })
}

impl Pipeline {
    /// Names this data plane in every record (`node_id`; the first call wins).
    pub fn with_node_id(self, node_id: &str) -> Self {
        if NODE_ID.get().is_none() {
            let _ = NODE_ID.set(NodeId {
                json: Vec::leak(json::node_id_field(node_id)),
                proto: Vec::leak(proto::node_id_field(node_id)),
            });
        }
        self
    }

    /// Starts the collector on a thread of its own and returns: it writes the JSON chunks
    /// to stdout (a blocking write, which is why it has its own thread rather than a
    /// runtime's) and queues the protobuf chunks for the shipper, until every sender is
    /// gone. Warns at most once a minute when records were dropped.
    pub async fn collect(self) {
        let Self {
            counters,
            queue,
            mut rx,
        } = self;
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut stdout = std::io::stdout();
                let mut warned_at = 0u64;
                let mut last_warn = Instant::now();
                while let Some(chunk) = rx.blocking_recv() {
                    if !chunk.json.is_empty() {
                        // A closed stdout must not stop the control-plane sink.
                        let _ = stdout.write_all(&chunk.json).and_then(|()| stdout.flush());
                    }
                    if !chunk.proto.is_empty() {
                        // A queued chunk keeps its buffer for as long as the control plane
                        // is behind: only what its records need (the worker reserved for
                        // 64 long ones).
                        let mut proto = chunk.proto;
                        proto.shrink_to_fit();
                        queue.push(proto.into(), chunk.records, &counters);
                    }
                    let dropped = counters.dropped.load(Ordering::Relaxed);
                    if dropped > warned_at && last_warn.elapsed() >= Duration::from_secs(60) {
                        tracing::warn!(
                            dropped_total = dropped,
                            "access-log records dropped: sinks slower than traffic"
                        );
                        warned_at = dropped;
                        last_warn = Instant::now();
                    }
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the access-log collector; records are dropped");
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
    S: FnMut(Vec<Bytes>) -> F,
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    /// A shipper draining `pipeline`'s queue through `send` (one call per encoded
    /// `AccessLogBatch`, given as the parts that concatenate to it, so that it is copied
    /// once, into the request; `Ok` means the control plane stored it).
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
            let Some(batch) = self.queue.peek() else {
                self.queue.ready.notified().await;
                continue;
            };
            let dropped_total = self.counters.dropped.load(Ordering::Relaxed);
            let mut position = Vec::with_capacity(40);
            proto::write_position(
                &mut position,
                &self.queue.stream,
                batch.first_seq,
                dropped_total,
            );
            let mut parts = batch.records;
            parts.push(position.into());
            match (self.send)(parts).await {
                Ok(()) => {
                    self.queue.acknowledge(batch.chunks);
                    self.counters
                        .shipped
                        .fetch_add(batch.count as u64, Ordering::Relaxed);
                    delay = Duration::from_millis(100);
                    linger(&self.queue).await;
                }
                Err(e) => {
                    tracing::debug!(error = %e, queued = self.queue.len(), "shipping access-log records failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// After a shipped batch: waits up to [`SHIP_EVERY`] for a full one ([`SHIP_BATCH`]
/// records) before the next call, so a steady trickle goes in one call a second rather
/// than one per worker chunk (a call costs about what encoding 30 records does).
async fn linger(queue: &ShipQueue) {
    let deadline = tokio::time::Instant::now() + SHIP_EVERY;
    while queue.len() < SHIP_BATCH {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => return,
            () = queue.ready.notified() => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    use portcullis_proto::v1::{AccessLogBatch, AccessLogRecord};
    use prost::Message as _;
    use serde::Serialize;

    /// The view of a decoded record (node id aside).
    fn fields(r: &AccessLogRecord) -> Fields<'_> {
        Fields {
            fixed: Fixed {
                time_unix_nanos: r.time_unix_nanos,
                listener: &r.listener,
                client_port: r.client_port,
                method: &r.method,
                http_version: &r.http_version,
                status: r.status,
                request_body_bytes: r.request_body_bytes,
                response_body_bytes: r.response_body_bytes,
                duration_micros: r.duration_micros,
                upstream_ttfb_micros: r.upstream_ttfb_micros,
                auth: &r.auth,
                proxy_ssl_client: r.proxy_ssl_client,
                proxy_ssl_verify: r.proxy_ssl_verify,
            },
            client_ip: &r.client_ip,
            host: &r.host,
            path: &r.path,
            query: &r.query,
            upstream: &r.upstream,
            proxy: &r.proxy,
            route: &r.route,
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
        }
    }

    /// `f`'s strings, encoded as [`record`] encodes them.
    fn strings(f: &Fields<'_>) -> Strings {
        let mut s = Strings::with_capacity(0);
        f.encode_strings(&mut s);
        s
    }

    /// `r` as [`record`] writes it for the control plane.
    fn entry(out: &mut Vec<u8>, r: &AccessLogRecord) {
        let f = fields(r);
        let node_id = proto::node_id_field(&r.node_id);
        proto::write_record(out, &node_id, &f.fixed, &strings(&f));
    }

    /// `r` as [`record`] writes it for stdout.
    fn line(r: &AccessLogRecord) -> Vec<u8> {
        let f = fields(r);
        let mut out = Vec::new();
        let node_id = json::node_id_field(&r.node_id);
        json::write_line(&mut out, &node_id, &f.fixed, &strings(&f));
        out
    }

    /// The reference for the JSON line: serde_json on these fields (names as the seed's
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
            let ssl = r.proxy_ssl_client != 0 || r.proxy_ssl_verify != 0;
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
                proxy_ssl_client: ssl.then_some(r.proxy_ssl_client),
                proxy_ssl_verify: ssl.then_some(r.proxy_ssl_verify),
            }
        }
    }

    /// `2026-12-07T03:38:00.123456789Z` from Unix nanoseconds (UTC, proleptic Gregorian).
    fn rfc3339_nanos_reference(nanos: i64) -> String {
        let secs = nanos.div_euclid(1_000_000_000);
        let sub = nanos.rem_euclid(1_000_000_000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = json::civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{sub:09}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }

    /// Records with every field, none, and odd ones: quotes, backslashes, control
    /// characters, non-ASCII, long strings, extreme numbers.
    fn samples() -> Vec<AccessLogRecord> {
        let full = AccessLogRecord {
            time_unix_nanos: 1_796_614_680_123_456_789,
            node_id: "node-1".into(),
            listener: "https".into(),
            client_ip: "2001:db8::1".into(),
            client_port: 65_535,
            method: "GET".into(),
            host: "app.example.com".into(),
            path: "/a \"quoted\" \\ p\u{e9}th\u{1f600}\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}".into(),
            query: "page=2".into(),
            http_version: "HTTP/1.1".into(),
            status: 200,
            request_body_bytes: u64::MAX,
            response_body_bytes: 0,
            duration_micros: 1234,
            upstream_ttfb_micros: 1000,
            upstream: "127.0.0.1:8080".into(),
            proxy: "app.example.com".into(),
            route: "r1".into(),
            auth: "admitted".into(),
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
        };
        let empty = AccessLogRecord {
            time_unix_nanos: 951_782_400_000_000_000,
            ..Default::default()
        };
        let minimal = AccessLogRecord {
            node_id: "n\"2".into(),
            listener: "http".into(),
            method: "PROPFIND".into(),
            http_version: "HTTP/2".into(),
            auth: "none".into(),
            request_id: "abc".into(),
            status: 404,
            time_unix_nanos: -1,
            proxy_ssl_verify: 18,
            ..Default::default()
        };
        let long = AccessLogRecord {
            node_id: "n".into(),
            path: format!("/{}\"{}", "p".repeat(300), "q".repeat(20_000)),
            user_agent: "u\\".repeat(5000),
            ..Default::default()
        };
        vec![full, empty, minimal, long]
    }

    #[test]
    fn json_lines_equal_serde_json_output() {
        for r in samples() {
            let mut expected = serde_json::to_vec(&Json::from(&r)).expect("serialize");
            expected.push(b'\n');
            assert_eq!(
                String::from_utf8(line(&r)).expect("utf-8"),
                String::from_utf8(expected).expect("utf-8")
            );
        }
    }

    /// The entries decode to prost's batch, and are exactly as long as prost's encoding (the
    /// same fields, each once; only their order differs: fixed fields first).
    #[test]
    fn protobuf_entries_decode_to_prost_records() {
        let records = samples();
        let mut out = Vec::new();
        for r in &records {
            entry(&mut out, r);
        }
        proto::write_position(&mut out, &[7; 16], 42, 300);
        let batch = AccessLogBatch {
            records,
            dropped: 0,
            stream: vec![7; 16],
            first_seq: 42,
            dropped_total: 300,
        };
        assert_eq!(out.len(), batch.encode_to_vec().len());
        assert_eq!(
            AccessLogBatch::decode(out.as_slice()).expect("decode"),
            batch
        );
    }

    /// A record whose strings were set in another order, with stale values before the last
    /// (as the request path's observation sets them), decodes to the same record as prost's.
    #[test]
    fn replaced_strings_decode_to_their_last_value() {
        for r in samples() {
            let mut s = Strings::with_capacity(0);
            // Stale values first (each field's last occurrence is its value), then the
            // fields in descending order; path and user set even when empty.
            s.set(Text::Path, "/stale");
            s.set(Text::User, "stale");
            let f = fields(&r);
            for (field, value) in f.texts().into_iter().rev() {
                s.set(field, value);
            }
            let mut out = Vec::new();
            proto::write_record(&mut out, &proto::node_id_field(&r.node_id), &f.fixed, &s);
            assert_eq!(decode(&out).records, vec![r]);
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        for (nanos, text) in [
            (0, "1970-01-01T00:00:00.000000000Z"),
            (1_796_614_680_123_456_789, "2026-12-07T03:38:00.123456789Z"),
            (951_782_400_000_000_000, "2000-02-29T00:00:00.000000000Z"),
            (i64::MAX, ""),
            (-1, ""),
        ] {
            let r = AccessLogRecord {
                time_unix_nanos: nanos,
                ..Default::default()
            };
            let line = line(&r);
            let reference = rfc3339_nanos_reference(nanos);
            let expected = format!("{{\"time\":\"{reference}\"");
            assert!(
                String::from_utf8_lossy(&line).starts_with(&expected),
                "{nanos}"
            );
            if !text.is_empty() {
                assert_eq!(reference, text);
            }
        }
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

    /// `n` encoded records with paths `/0`, `/1`, ….
    fn chunk(n: usize) -> Bytes {
        let mut out = Vec::new();
        for i in 0..n {
            let path = format!("/{i}");
            let r = AccessLogRecord {
                path,
                ..Default::default()
            };
            entry(&mut out, &r);
        }
        out.into()
    }

    fn decode(bytes: &[u8]) -> AccessLogBatch {
        AccessLogBatch::decode(bytes).expect("an AccessLogBatch")
    }

    #[test]
    fn ship_queue_is_bounded_and_ships_whole_chunks() {
        let counters = Counters::default();
        let q = ShipQueue::default();
        for _ in 0..MAX_PENDING / BATCH {
            q.push(chunk(BATCH), BATCH, &counters);
        }
        let room = MAX_PENDING % BATCH;
        q.push(chunk(room + 1), room + 1, &counters);
        q.push(chunk(room), room, &counters);
        assert_eq!(q.len(), MAX_PENDING);
        assert_eq!(counters.dropped.load(Ordering::Relaxed), room as u64 + 1);
        let out = q.peek().expect("a batch");
        let whole = SHIP_BATCH / BATCH * BATCH;
        assert_eq!((out.count, out.chunks), (whole, SHIP_BATCH / BATCH));
        let batch = decode(&out.records.concat());
        assert_eq!(batch.records.len(), whole);
        assert_eq!(batch.records[BATCH].path, "/0");
        assert_eq!(batch.records[BATCH - 1].path, format!("/{}", BATCH - 1));
        q.acknowledge(out.chunks);
        assert_eq!(q.len(), MAX_PENDING - whole);
    }

    #[tokio::test]
    async fn unacknowledged_batches_are_kept_and_retried() {
        let (_tx, rx) = mpsc::channel(1);
        let pipeline = Pipeline {
            counters: Arc::new(Counters::default()),
            queue: Arc::new(ShipQueue::default()),
            rx,
        };
        pipeline.counters.drop_records(7);
        pipeline.queue.push(chunk(2), 2, &Counters::default());
        pipeline.queue.push(chunk(1), 1, &Counters::default());
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = calls.clone();
        let shipper = Shipper::new(&pipeline, move |parts: Vec<Bytes>| {
            let seen = seen.clone();
            async move {
                let batch = decode(&parts.concat());
                let mut seen = seen.lock().expect("lock");
                seen.push((
                    batch.records.len(),
                    batch.first_seq,
                    batch.dropped_total,
                    batch.stream.len(),
                ));
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
        // The same records at the same place in the stream, and the same cumulative drop
        // count, resent after the failure.
        assert_eq!(
            *calls.lock().expect("lock"),
            vec![(3, 0, 7, 16), (3, 0, 7, 16)]
        );
        assert_eq!(pipeline.counters.shipped.load(Ordering::Relaxed), 3);
    }
}
