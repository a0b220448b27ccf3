//! Request logs: ingest from data planes, storage with indexes, search, stats and follow.
//!
//! Records live in their own store, never in the config store: an embedded redb file
//! (`<data-dir>/logs.redb`) or the same Redis under `{portcullis}:logs:` with its own
//! connection. Both backends implement [`LogStore`] and pass one test suite.
//!
//! Invariants:
//! - Every record has a unique key `(time_unix_nanos, seq)`; every index entry points at a
//!   stored record, and deleting a record deletes its index entries in the same
//!   transaction (embedded; its open block's entries, held in memory, right after that
//!   commit) or MULTI/EXEC block (Redis).
//! - Ingest never waits for a follower: followers read a bounded broadcast channel
//!   ([`FOLLOW_BUFFER`] records) and one that falls behind is told how many it missed and
//!   closed.
//! - Everything a caller can make the server do is bounded: at most [`MAX_FOLLOWERS`]
//!   followers; a batch holds at most [`MAX_BATCH`] records and a page at most
//!   [`MAX_LIMIT`]; one search examines at most [`SCAN_BUDGET`] records (a page may then be
//!   short while `next_cursor` is set) and one stats call at most [`STATS_BUDGET`] (then
//!   `truncated` is set).
//! - Follow spans control planes on one Redis: each stored batch is published there and
//!   every control plane's followers get it from that feed (`redis_backend`), whichever
//!   control plane the data plane shipped to. On the embedded store followers get the
//!   batches this process stores.
//! - A `user` caller sees records whose `proxy` is one it owns; its stats carry visitor
//!   counts only for hosts its own records show, and no drop count (drops are global).
//! - A stored record never holds a credential the data plane let through in its query
//!   string (`access_token`, `code`, `state`, … are removed) and every string is capped.
//!
//! Costs: ingest is one write transaction per batch (plus one visitor sketch per host and
//! hour; on the embedded store one B-tree insert per record, its index entries held in
//! memory until their block of 2^15 records closes and then written as a few thousand
//! rows; on Redis a fixed number of commands per batch, and host, status, user and client
//! id indexed by [`postings`] rows: a few dozen per batch instead of one per record). A
//! record is stored as the bytes the data plane sent when sanitizing changes nothing
//! ([`wire`]). Sustained ingest on the 2-core bench host (`bench/ingest.sh`, release
//! build): 3.4-3.9 µs of control-plane CPU per record on the embedded store, 3 µs plus
//! 10-11 µs of redis-server CPU on Redis. A search walks the most selective index the
//! filters name (request id, client id, user, IP, host, exact status, else time) newest
//! first and filters the rest in memory; stats walk the window the same way. Retention and
//! the size cap run at start and every minute and delete the oldest records in chunks of
//! [`PRUNE_CHUNK`]. Measured in a debug build (`costs` test): 10k-record batch ~1.3 s
//! embedded, ~0.65 s Redis; an indexed 100-record page ~1-2 ms; an unindexed search
//! (20k examined) 0.1-0.5 s; stats over 50k records 0.3-1.2 s.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use portcullis_proto::v1 as pb;
use tokio::sync::broadcast;

use crate::auth::Caller;
use crate::error::ServiceError;
use crate::service::ControlPlane;
use crate::store::StoreError;

mod embedded;
mod postings;
mod redis_backend;
mod wire;

pub use embedded::EmbeddedLogStore;
pub use redis_backend::RedisLogStore;
pub use wire::{Indexed, Shipped, node_id};

/// A stored record.
pub type Record = pb::AccessLogRecord;

/// Most records one ingest batch may carry.
pub const MAX_BATCH: usize = 10_000;
/// Default page size.
pub const DEFAULT_LIMIT: u32 = 100;
/// Largest page size; larger requests are refused, not clamped.
pub const MAX_LIMIT: u32 = 1000;
/// Most records one search call examines.
pub const SCAN_BUDGET: usize = 20_000;
/// Most records one stats call examines.
pub const STATS_BUDGET: usize = 200_000;
/// Records a follower may fall behind before it is closed.
pub const FOLLOW_BUFFER: usize = 4096;
/// Followers connected at once (each costs a filter check per ingested record).
pub const MAX_FOLLOWERS: usize = 64;
/// Records deleted per prune transaction.
pub const PRUNE_CHUNK: usize = 5_000;
/// Entries in each "top" list of stats.
pub const TOP_N: usize = 10;
/// Default window of search and stats when `since` is 0.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Relative error of the embedded store's unique-visitor sketches (Redis: 0.81 %).
pub const HLL_ERROR: f64 = 0.01;
/// Longest filter value accepted.
const MAX_FILTER_LEN: usize = 512;
const NANOS: i64 = 1_000_000_000;
const HOUR_NANOS: i64 = 3600 * NANOS;

/// Retention settings, from `--log-retention` and `--log-max-records`.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// Records older than this are deleted.
    pub retention: Duration,
    /// At most this many records are kept; the oldest go first.
    pub max_records: u64,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            retention: DEFAULT_WINDOW,
            max_records: 1_000_000,
        }
    }
}

/// Where a shipped batch sits in its data plane's stream: data-plane processes number the
/// records they queue for the control plane, so a batch stored whose answer was lost (the
/// control plane died, a timeout) and then shipped again is stored only once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipPosition {
    /// The data-plane process's random stream id, hex.
    pub stream: String,
    /// The number of the batch's first record in that stream.
    pub first_seq: u64,
    /// Records that process has dropped since it started.
    pub dropped_total: u64,
}

/// What a stream's batches delivered so far (kept per stream by the backends, in the
/// transaction that stores the records).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamState {
    /// One past the highest record number stored.
    pub end_seq: u64,
    /// The highest `dropped_total` counted.
    pub dropped_total: u64,
}

impl StreamState {
    /// For a batch of `n` records at `pos`: how many of its first records were stored
    /// before, how many drops are new, and the state after it.
    pub fn advance(self, pos: &ShipPosition, n: u64) -> (u64, u64, StreamState) {
        let skip = self.end_seq.saturating_sub(pos.first_seq).min(n);
        let new_drops = pos.dropped_total.saturating_sub(self.dropped_total);
        let next = StreamState {
            end_seq: self.end_seq.max(pos.first_seq.saturating_add(n)),
            dropped_total: self.dropped_total.max(pos.dropped_total),
        };
        (skip, new_drops, next)
    }
}

/// Where a record sits: its time and a sequence number unique within the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogKey {
    /// `time_unix_nanos` of the record.
    pub time: i64,
    /// Unique per store.
    pub seq: u64,
}

impl LogKey {
    /// Above every key.
    pub const MAX: LogKey = LogKey {
        time: i64::MAX,
        seq: u64::MAX,
    };

    /// The opaque cursor form: base64url of the 16 big-endian bytes.
    pub fn to_cursor(self) -> String {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.time.to_be_bytes());
        b[8..].copy_from_slice(&self.seq.to_be_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    /// Parses a cursor made by [`Self::to_cursor`].
    pub fn from_cursor(s: &str) -> Result<Self, ServiceError> {
        let bad = || {
            ServiceError::invalid(
                "cursor",
                "not a cursor this server handed out (pass next_cursor unchanged)",
            )
        };
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| bad())?;
        let b: [u8; 16] = raw.try_into().map_err(|_| bad())?;
        let mut t = [0u8; 8];
        let mut q = [0u8; 8];
        t.copy_from_slice(&b[..8]);
        q.copy_from_slice(&b[8..]);
        let key = Self {
            time: i64::from_be_bytes(t),
            seq: u64::from_be_bytes(q),
        };
        if key.time < 0 {
            return Err(bad());
        }
        Ok(key)
    }
}

/// An indexed record field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// `client_ip`
    Ip,
    /// `host`
    Host,
    /// `user`
    User,
    /// `client_id`
    ClientId,
    /// `status` as decimal text
    Status,
    /// `request_id`
    RequestId,
}

impl Field {
    /// Every indexed field.
    pub const ALL: [Field; 6] = [
        Field::Ip,
        Field::Host,
        Field::User,
        Field::ClientId,
        Field::Status,
        Field::RequestId,
    ];

    /// Short name used in storage keys.
    pub fn name(self) -> &'static str {
        match self {
            Field::Ip => "ip",
            Field::Host => "host",
            Field::User => "user",
            Field::ClientId => "client",
            Field::Status => "status",
            Field::RequestId => "request",
        }
    }

    /// The value a record ([`Record`] or [`Shipped`]) is indexed under; `None` for empty
    /// fields (not indexed). Borrowed, never allocated.
    pub fn value<R: Indexed + ?Sized>(self, r: &R) -> Option<Cow<'_, str>> {
        wire::value(self, r)
    }
}

/// What a scan walks: every record by time, or one index value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Index {
    /// All records.
    Time,
    /// Records whose field has this value.
    Field(Field, String),
}

/// The storage a backend provides; all filtering, paging and stats are shared on top.
#[tonic::async_trait]
pub trait LogStore: Send + Sync + 'static {
    /// `embedded` or `redis`.
    fn backend_name(&self) -> &'static str;
    /// Stores checked records (`None`: one refused, counted as dropped) under fresh keys
    /// with their index entries and visitor sketches, and adds `dropped` to the current
    /// hour's count, in one transaction. With a `position`, the stream's state decides
    /// (in the same transaction) which leading records were stored before and are skipped
    /// and which drops are new ([`StreamState::advance`]). Returns the records skipped.
    async fn append(
        &self,
        records: Arc<[Option<Shipped>]>,
        dropped: u64,
        position: Option<&ShipPosition>,
    ) -> Result<usize, StoreError>;
    /// Up to `max` records of `index` with `since <= key.time` and `key < before`, newest
    /// first.
    async fn scan(
        &self,
        index: &Index,
        before: LogKey,
        since: i64,
        max: usize,
    ) -> Result<Vec<(LogKey, Record)>, StoreError>;
    /// Estimated distinct client IPs of `host` in the hours (Unix hour numbers) given.
    async fn unique_visitors(
        &self,
        host: &str,
        from_hour: i64,
        to_hour: i64,
    ) -> Result<u64, StoreError>;
    /// Records reported dropped in the hours given.
    async fn dropped(&self, from_hour: i64, to_hour: i64) -> Result<u64, StoreError>;
    /// Records stored.
    async fn count(&self) -> Result<u64, StoreError>;
    /// Deletes at most `max` of the oldest records: those older than `older_than`, then
    /// more while over `keep_at_most`. Returns how many went.
    async fn delete_oldest(
        &self,
        older_than: i64,
        keep_at_most: u64,
        max: usize,
    ) -> Result<u64, StoreError>;
    /// Forgets visitor sketches and dropped counts of hours before `hour`.
    async fn forget_hours_before(&self, hour: i64) -> Result<(), StoreError>;
    /// Index entries across all indexes (consistency checks in tests).
    async fn index_entries(&self) -> Result<u64, StoreError>;
}

/// A status filter: exact code or class (`5` for `5xx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// `404`
    Exact(u32),
    /// `5xx`
    Class(u32),
    /// `>= 400`: 4xx and 5xx (the `errors` view).
    Errors,
}

/// A validated [`pb::AccessLogQuery`], plus the proxies a `user` caller may see.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Inclusive lower bound, Unix nanos.
    pub since: i64,
    /// Exclusive upper bound, Unix nanos.
    pub until: i64,
    /// Exact host.
    pub host: Option<String>,
    /// Exact client IP (normalised).
    pub client_ip: Option<String>,
    /// Exact user.
    pub user: Option<String>,
    /// Exact OAuth client id.
    pub client_id: Option<String>,
    /// Status or class.
    pub status: Option<StatusFilter>,
    /// Upper-case method.
    pub method: Option<String>,
    /// Path prefix.
    pub path_prefix: Option<String>,
    /// Exact request id.
    pub request_id: Option<String>,
    /// Minimum duration.
    pub min_duration_micros: u64,
    /// `Some`: only records whose `proxy` is one of these (a `user` caller's own).
    pub proxies: Option<HashSet<String>>,
}

fn text(field: &'static str, v: &str) -> Result<Option<String>, ServiceError> {
    if v.is_empty() {
        return Ok(None);
    }
    if v.len() > MAX_FILTER_LEN {
        return Err(ServiceError::invalid(
            field,
            format!("at most {MAX_FILTER_LEN} bytes"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(ServiceError::invalid(field, "control characters"));
    }
    Ok(Some(v.to_owned()))
}

/// Parses `404`, `5xx` (any case) or `errors`.
pub fn parse_status(v: &str) -> Result<Option<StatusFilter>, ServiceError> {
    let bad = || {
        ServiceError::invalid(
            "status",
            format!("{v:?} is neither a status code (100-999) nor a class like 5xx"),
        )
    };
    if v.is_empty() {
        return Ok(None);
    }
    if v.eq_ignore_ascii_case("errors") {
        return Ok(Some(StatusFilter::Errors));
    }
    let b = v.as_bytes();
    if b.len() == 3 && b[1..].eq_ignore_ascii_case(b"xx") {
        return match b[0] {
            c @ b'1'..=b'5' => Ok(Some(StatusFilter::Class(u32::from(c - b'0')))),
            _ => Err(bad()),
        };
    }
    match v.parse::<u32>() {
        Ok(n) if (100..=999).contains(&n) && v.len() == 3 => Ok(Some(StatusFilter::Exact(n))),
        _ => Err(bad()),
    }
}

impl Filter {
    /// Validates a query; `now` is Unix nanos. Search and stats default `since` to 24 h ago.
    pub fn parse(
        q: &pb::AccessLogQuery,
        now: i64,
        default_window: bool,
    ) -> Result<Self, ServiceError> {
        if q.since < 0 {
            return Err(ServiceError::invalid("since", "negative"));
        }
        if q.until < 0 {
            return Err(ServiceError::invalid("until", "negative"));
        }
        if q.since != 0 && q.until != 0 && q.since > q.until {
            return Err(ServiceError::invalid("since", "after until"));
        }
        let since = if q.since == 0 {
            if default_window {
                now.saturating_sub(DEFAULT_WINDOW.as_nanos() as i64).max(0)
            } else {
                0
            }
        } else {
            q.since.saturating_mul(NANOS)
        };
        let until = if q.until == 0 {
            i64::MAX
        } else {
            q.until.saturating_add(1).saturating_mul(NANOS)
        };
        let client_ip = match text("client_ip", &q.client_ip)? {
            Some(ip) => Some(
                ip.parse::<IpAddr>()
                    .map_err(|_| {
                        ServiceError::invalid("client_ip", format!("{ip:?} is not an IP address"))
                    })?
                    .to_string(),
            ),
            None => None,
        };
        let method = match text("method", &q.method)? {
            Some(m) if m.len() <= 16 && m.bytes().all(|b| b.is_ascii_alphabetic()) => {
                Some(m.to_ascii_uppercase())
            }
            Some(m) => {
                return Err(ServiceError::invalid(
                    "method",
                    format!("{m:?} is not an HTTP method"),
                ));
            }
            None => None,
        };
        Ok(Self {
            since,
            until,
            host: text("host", &q.host)?.map(|h| h.to_ascii_lowercase()),
            client_ip,
            user: text("user", &q.user)?,
            client_id: text("client_id", &q.client_id)?,
            status: parse_status(&q.status)?,
            method,
            path_prefix: text("path_prefix", &q.path_prefix)?,
            request_id: text("request_id", &q.request_id)?,
            min_duration_micros: q.min_duration_micros,
            proxies: None,
        })
    }

    /// Whether a record passes every filter.
    pub fn matches(&self, r: &Record) -> bool {
        let eq = |f: &Option<String>, v: &str| f.as_deref().is_none_or(|f| f == v);
        r.time_unix_nanos >= self.since
            && r.time_unix_nanos < self.until
            && eq(&self.host, &r.host)
            && eq(&self.client_ip, &r.client_ip)
            && eq(&self.user, &r.user)
            && eq(&self.client_id, &r.client_id)
            && eq(&self.method, &r.method)
            && eq(&self.request_id, &r.request_id)
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| r.path.starts_with(p))
            && r.duration_micros >= self.min_duration_micros
            && match self.status {
                None => true,
                Some(StatusFilter::Exact(s)) => r.status == s,
                Some(StatusFilter::Class(c)) => r.status / 100 == c,
                Some(StatusFilter::Errors) => r.status >= 400,
            }
            && self.proxies.as_ref().is_none_or(|p| p.contains(&r.proxy))
    }

    /// The most selective index the filters name.
    pub fn index(&self) -> Index {
        let pick = [
            (Field::RequestId, &self.request_id),
            (Field::ClientId, &self.client_id),
            (Field::User, &self.user),
            (Field::Ip, &self.client_ip),
            (Field::Host, &self.host),
        ];
        for (f, v) in pick {
            if let Some(v) = v {
                return Index::Field(f, v.clone());
            }
        }
        match self.status {
            Some(StatusFilter::Exact(s)) => Index::Field(Field::Status, s.to_string()),
            _ => Index::Time,
        }
    }
}

/// Refuses a batch of more than [`MAX_BATCH`] records.
fn check_batch_size(n: usize) -> Result<(), ServiceError> {
    if n > MAX_BATCH {
        return Err(ServiceError::invalid(
            "records",
            format!("{n} records in one batch; at most {MAX_BATCH}"),
        ));
    }
    Ok(())
}

/// Unix nanos now.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

/// The Unix hour of a time in nanos.
pub fn hour_of(nanos: i64) -> i64 {
    nanos.div_euclid(HOUR_NANOS)
}

/// Parses a humane duration: `90m`, `24h`, `1h30m`, `7d`, `250ms`, `30s`; a bare number is
/// seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("{s:?} is not a duration like 90m, 24h or 1h30m"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{s:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86400)),
            _ => {
                return Err(format!(
                    "{s:?}: unknown unit {unit:?} (use ms, s, m, h or d)"
                ));
            }
        };
        total = total.saturating_add(d);
    }
    Ok(total)
}

/// Query parameters whose values are credentials: removed from a recorded query string.
const SECRET_PARAMS: [&str; 10] = [
    "access_token",
    "refresh_token",
    "id_token",
    "token",
    "code",
    "state",
    "client_secret",
    "password",
    "api_key",
    "apikey",
];

/// Whether a query-string parameter (`name=value`) carries a credential.
fn is_secret_param(kv: &str) -> bool {
    let name = kv.split('=').next().unwrap_or_default();
    SECRET_PARAMS.iter().any(|s| name.eq_ignore_ascii_case(s))
}

fn cap(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// Makes a shipped record safe to store: caps every string, removes credential
/// parameters from the query, stamps a missing (or over an hour ahead) time with `now`. `Err` names the field of
/// a record that cannot be stored at all.
pub fn sanitize(mut r: Record, now: i64) -> Result<Record, String> {
    if r.status > 999 {
        return Err(format!("status: {} is not an HTTP status", r.status));
    }
    if r.client_port > 65535 {
        return Err(format!("client_port: {} is not a TCP port", r.client_port));
    }
    // A time far in the future would escape retention: such a record counts as received now.
    if r.time_unix_nanos <= 0 || r.time_unix_nanos > now.saturating_add(HOUR_NANOS) {
        r.time_unix_nanos = now;
    }
    if !r.query.is_empty() {
        r.query = r
            .query
            .split('&')
            .filter(|kv| !is_secret_param(kv))
            .collect::<Vec<_>>()
            .join("&");
    }
    r.host.make_ascii_lowercase();
    // Ownership compares it with stored (lower-case) proxy hostnames.
    r.proxy.make_ascii_lowercase();
    for (s, max) in [
        (&mut r.path, 4096),
        (&mut r.query, 2048),
        (&mut r.user_agent, 512),
        (&mut r.node_id, 128),
        (&mut r.listener, 16),
        (&mut r.client_ip, 64),
        (&mut r.method, 16),
        (&mut r.host, 256),
        (&mut r.http_version, 16),
        (&mut r.upstream, 256),
        (&mut r.proxy, 256),
        (&mut r.route, 128),
        (&mut r.auth, 16),
        (&mut r.auth_reason, 128),
        (&mut r.user, 256),
        (&mut r.client_id, 256),
        (&mut r.request_id, 128),
        (&mut r.trace_id, 64),
        (&mut r.mcp_session_id, 256),
        (&mut r.proxy_authority, 256),
        (&mut r.proxy_unique_id, 256),
        (&mut r.proxy_alpn, 64),
        (&mut r.proxy_ssl_version, 32),
    ] {
        cap(s, max);
    }
    Ok(r)
}

/// Why a follower stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowEnd {
    /// It fell this many records behind and was closed.
    Lagged(u64),
    /// The server is shutting down.
    Closed,
}

/// Why a follower was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The query or the caller was refused.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// [`MAX_FOLLOWERS`] are connected already.
    #[error("{MAX_FOLLOWERS} log followers are connected already; try again later")]
    TooMany,
}

/// One subscriber of new records, filtered. Dropping it frees its follower slot.
pub struct Follower {
    rx: broadcast::Receiver<Arc<Record>>,
    filter: Filter,
    _slot: FollowerSlot,
}

struct FollowerSlot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for FollowerSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Follower {
    /// The next matching record.
    pub async fn next(&mut self) -> Result<Arc<Record>, FollowEnd> {
        loop {
            match self.rx.recv().await {
                Ok(r) if self.filter.matches(&r) => return Ok(r),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => return Err(FollowEnd::Lagged(n)),
                Err(broadcast::error::RecvError::Closed) => return Err(FollowEnd::Closed),
            }
        }
    }
}

/// The request-log service: ingest, search, stats, follow, pruning. Cheap to clone.
#[derive(Clone)]
pub struct AccessLogs {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn LogStore>,
    tx: broadcast::Sender<Arc<Record>>,
    /// Ingest hands records to followers itself (false: the Redis feed does).
    local_fanout: bool,
    followers: Arc<std::sync::atomic::AtomicUsize>,
    settings: LogSettings,
}

impl AccessLogs {
    /// Wraps a backend; followers get what this process ingests.
    pub fn new(store: Arc<dyn LogStore>, settings: LogSettings) -> Self {
        Self::with_fanout(store, settings, true)
    }

    fn with_fanout(store: Arc<dyn LogStore>, settings: LogSettings, local_fanout: bool) -> Self {
        let (tx, _) = broadcast::channel(FOLLOW_BUFFER);
        Self {
            inner: Arc::new(Inner {
                store,
                tx,
                local_fanout,
                followers: Arc::default(),
                settings,
            }),
        }
    }

    /// Opens `<data_dir>/logs.redb`, or Redis at `redis_url` with its own connection; on
    /// Redis, followers are fed by every control plane's batches (subscribed before this
    /// returns).
    pub async fn open(
        data_dir: &std::path::Path,
        redis_url: Option<&str>,
        settings: LogSettings,
    ) -> Result<Self, StoreError> {
        match redis_url {
            Some(url) => {
                let store = RedisLogStore::connect(url, settings.retention).await?;
                let logs = Self::with_fanout(Arc::new(store), settings, false);
                redis_backend::subscribe_feed(url, logs.inner.tx.downgrade()).await?;
                Ok(logs)
            }
            None => Ok(Self::new(
                Arc::new(EmbeddedLogStore::open(data_dir)?),
                settings,
            )),
        }
    }

    /// The backend.
    pub fn store(&self) -> &Arc<dyn LogStore> {
        &self.inner.store
    }

    /// Stores one batch (as [`Self::ingest_shipped`]; each record encoded first).
    pub async fn ingest(&self, node: &str, batch: pb::AccessLogBatch) -> Result<u64, ServiceError> {
        check_batch_size(batch.records.len())?;
        let shipped = portcullis_proto::ShippedBatch {
            records: batch
                .records
                .iter()
                .map(|r| prost::Message::encode_to_vec(r).into())
                .collect(),
            dropped: batch.dropped,
            stream: batch.stream.into(),
            first_seq: batch.first_seq,
            dropped_total: batch.dropped_total,
        };
        self.ingest_shipped(node, shipped).await
    }

    /// Stores one shipped batch and hands its records to followers. A batch over
    /// [`MAX_BATCH`] is refused whole; a record that cannot be stored is dropped, logged
    /// and counted with the batch's own `dropped`. Returns the records stored.
    pub async fn ingest_shipped(
        &self,
        node: &str,
        batch: portcullis_proto::ShippedBatch,
    ) -> Result<u64, ServiceError> {
        check_batch_size(batch.records.len())?;
        let position = match batch.stream.len() {
            0 => None,
            16 => Some(ShipPosition {
                stream: batch.stream.iter().map(|b| format!("{b:02x}")).collect(),
                first_seq: batch.first_seq,
                dropped_total: batch.dropped_total,
            }),
            n => {
                return Err(ServiceError::invalid(
                    "stream",
                    format!("{n} bytes; a stream id is 16"),
                ));
            }
        };
        // With a position, drops come cumulative in `dropped_total`.
        let dropped = if position.is_some() { 0 } else { batch.dropped };
        let now = now_nanos();
        let records: Arc<[Option<Shipped>]> = batch
            .records
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                Shipped::check(r, now)
                    .map_err(
                        |why| tracing::warn!(node, record = i, %why, "access-log record refused"),
                    )
                    .ok()
            })
            .collect();
        if records.is_empty() && dropped == 0 && position.is_none() {
            return Ok(0);
        }
        let skipped = self
            .inner
            .store
            .append(records.clone(), dropped, position.as_ref())
            .await?;
        if skipped > 0 {
            tracing::debug!(node, skipped, "access-log batch shipped again; stored once");
        }
        let stored = records[skipped..].iter().flatten();
        if self.inner.local_fanout && self.inner.tx.receiver_count() > 0 {
            for r in stored.clone() {
                if let Some(r) = r.decode() {
                    let _ = self.inner.tx.send(Arc::new(r));
                }
            }
        }
        Ok(stored.count() as u64)
    }

    /// The proxies a caller may see records of: `None` (all) for admins.
    async fn visible(
        &self,
        cp: &ControlPlane,
        caller: &Caller,
    ) -> Result<Option<HashSet<String>>, ServiceError> {
        if caller.is_admin() {
            return Ok(None);
        }
        Ok(Some(
            cp.list_proxies(caller)
                .await?
                .into_iter()
                .filter(|p| caller.may_modify(&p.owner_token_id))
                .map(|p| p.hostname)
                .collect(),
        ))
    }

    async fn filter(
        &self,
        cp: &ControlPlane,
        caller: &Caller,
        q: &pb::AccessLogQuery,
        default_window: bool,
    ) -> Result<Filter, ServiceError> {
        let mut f = Filter::parse(q, now_nanos(), default_window)?;
        f.proxies = self.visible(cp, caller).await?;
        Ok(f)
    }

    /// One page of matching records, newest first.
    pub async fn search(
        &self,
        cp: &ControlPlane,
        caller: &Caller,
        q: &pb::AccessLogQuery,
    ) -> Result<pb::AccessLogPage, ServiceError> {
        let limit = match q.limit {
            0 => DEFAULT_LIMIT,
            n if n > MAX_LIMIT => {
                return Err(ServiceError::invalid(
                    "limit",
                    format!("{n} is over the maximum page size {MAX_LIMIT}"),
                ));
            }
            n => n,
        } as usize;
        let after = if q.cursor.is_empty() {
            None
        } else {
            Some(LogKey::from_cursor(&q.cursor)?)
        };
        let f = self.filter(cp, caller, q, true).await?;
        self.search_filter(&f, after, limit).await
    }

    /// [`Self::search`] with a parsed filter.
    pub async fn search_filter(
        &self,
        f: &Filter,
        after: Option<LogKey>,
        limit: usize,
    ) -> Result<pb::AccessLogPage, ServiceError> {
        let index = f.index();
        let mut before = LogKey {
            time: f.until,
            seq: 0,
        };
        if let Some(c) = after {
            before = before.min(c);
        }
        let mut out = Vec::new();
        let mut examined = 0usize;
        let chunk = (limit + 1).clamp(64, 1000);
        loop {
            let got = self
                .inner
                .store
                .scan(&index, before, f.since, chunk)
                .await?;
            let exhausted = got.len() < chunk;
            for (key, r) in got {
                examined += 1;
                before = key;
                if f.matches(&r) {
                    if out.len() == limit {
                        // One more match exists: the page ends at the previous record.
                        let next = out
                            .last()
                            .map(|(k, _): &(LogKey, Record)| k.to_cursor())
                            .unwrap_or_default();
                        return Ok(page(out, next));
                    }
                    out.push((key, r));
                }
                if examined >= SCAN_BUDGET {
                    return Ok(page(out, key.to_cursor()));
                }
            }
            if exhausted {
                return Ok(page(out, String::new()));
            }
        }
    }

    /// Counts, tops, percentiles and unique visitors over the window.
    pub async fn stats(
        &self,
        cp: &ControlPlane,
        caller: &Caller,
        q: &pb::AccessLogQuery,
    ) -> Result<pb::AccessLogStats, ServiceError> {
        if q.limit != 0 || !q.cursor.is_empty() {
            return Err(ServiceError::invalid(
                if q.limit != 0 { "limit" } else { "cursor" },
                "stats take no page settings",
            ));
        }
        let f = self.filter(cp, caller, q, true).await?;
        self.stats_filter(&f).await
    }

    /// [`Self::stats`] with a parsed filter.
    pub async fn stats_filter(&self, f: &Filter) -> Result<pb::AccessLogStats, ServiceError> {
        let index = f.index();
        let mut before = LogKey {
            time: f.until,
            seq: 0,
        };
        let mut examined = 0usize;
        let mut truncated = false;
        let mut classes: HashMap<String, u64> = HashMap::new();
        let mut hosts: HashMap<String, u64> = HashMap::new();
        let mut paths: HashMap<String, u64> = HashMap::new();
        let mut ips: HashMap<String, u64> = HashMap::new();
        let mut users: HashMap<String, u64> = HashMap::new();
        let mut durations = Vec::new();
        'scan: loop {
            let got = self.inner.store.scan(&index, before, f.since, 1000).await?;
            let exhausted = got.len() < 1000;
            for (key, r) in got {
                before = key;
                examined += 1;
                if examined > STATS_BUDGET {
                    truncated = true;
                    break 'scan;
                }
                if !f.matches(&r) {
                    continue;
                }
                *classes.entry(format!("{}xx", r.status / 100)).or_default() += 1;
                *hosts.entry(r.host.clone()).or_default() += 1;
                *paths.entry(r.path.clone()).or_default() += 1;
                *ips.entry(r.client_ip.clone()).or_default() += 1;
                if !r.user.is_empty() {
                    *users.entry(r.user.clone()).or_default() += 1;
                }
                durations.push(r.duration_micros);
            }
            if exhausted {
                break;
            }
        }
        durations.sort_unstable();
        let pct = |p: usize| -> u64 {
            if durations.is_empty() {
                return 0;
            }
            let rank = (p * durations.len()).div_ceil(100).max(1);
            durations[rank - 1]
        };
        let mut by_status_class = top(classes, usize::MAX);
        by_status_class.sort_by(|a, b| a.key.cmp(&b.key));
        let top_hosts = top(hosts, TOP_N);
        // Sketches older than the retention are gone: do not ask for them.
        let now = now_nanos();
        let oldest = now.saturating_sub(self.inner.settings.retention.as_nanos() as i64);
        let from_hour = hour_of(f.since).max(hour_of(oldest) - 1);
        let to_hour = hour_of(f.until.min(now));
        // Sketches count every request to a host, so a restricted caller gets them only for
        // hosts its own records show (never for a host it merely names in a filter).
        let visitor_hosts: Vec<String> = match &f.host {
            Some(h) if f.proxies.is_none() || top_hosts.iter().any(|c| &c.key == h) => {
                vec![h.clone()]
            }
            Some(_) => Vec::new(),
            None => top_hosts.iter().map(|c| c.key.clone()).collect(),
        };
        let mut unique_visitors = Vec::new();
        for h in visitor_hosts {
            let n = self
                .inner
                .store
                .unique_visitors(&h, from_hour, to_hour)
                .await?;
            unique_visitors.push(pb::Count { key: h, count: n });
        }
        Ok(pb::AccessLogStats {
            total: durations.len() as u64,
            by_status_class,
            top_hosts,
            top_paths: top(paths, TOP_N),
            top_client_ips: top(ips, TOP_N),
            top_users: top(users, TOP_N),
            p50_duration_micros: pct(50),
            p95_duration_micros: pct(95),
            p99_duration_micros: pct(99),
            unique_visitors,
            // Drops are not per proxy: admins only.
            dropped: if f.proxies.is_none() {
                self.inner.store.dropped(from_hour, to_hour).await?
            } else {
                0
            },
            truncated,
        })
    }

    /// Subscribes to new records matching the query (its time bounds are ignored; page
    /// settings are refused). A `user` caller's proxies are looked up once, now.
    pub async fn follow(
        &self,
        cp: &ControlPlane,
        caller: &Caller,
        q: &pb::AccessLogQuery,
    ) -> Result<Follower, FollowError> {
        if q.limit != 0 || !q.cursor.is_empty() {
            return Err(ServiceError::invalid(
                if q.limit != 0 { "limit" } else { "cursor" },
                "follow takes no page settings",
            )
            .into());
        }
        let mut f = self.filter(cp, caller, q, false).await?;
        f.since = 0;
        f.until = i64::MAX;
        self.follow_filter(f)
    }

    /// [`Self::follow`] with a parsed filter.
    pub fn follow_filter(&self, filter: Filter) -> Result<Follower, FollowError> {
        use std::sync::atomic::Ordering;
        let n = &self.inner.followers;
        n.fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
            (c < MAX_FOLLOWERS).then_some(c + 1)
        })
        .map_err(|_| FollowError::TooMany)?;
        Ok(Follower {
            rx: self.inner.tx.subscribe(),
            filter,
            _slot: FollowerSlot(n.clone()),
        })
    }

    /// Applies retention and the size cap once; returns the records deleted.
    pub async fn prune(&self) -> Result<u64, StoreError> {
        let cutoff = now_nanos().saturating_sub(self.inner.settings.retention.as_nanos() as i64);
        let mut total = 0;
        loop {
            let n = self
                .inner
                .store
                .delete_oldest(cutoff, self.inner.settings.max_records, PRUNE_CHUNK)
                .await?;
            total += n;
            if n < PRUNE_CHUNK as u64 {
                break;
            }
            tokio::task::yield_now().await;
        }
        self.inner
            .store
            .forget_hours_before(hour_of(cutoff))
            .await?;
        Ok(total)
    }

    /// Prunes every `every`, forever, on one control plane of those sharing the store at a
    /// time (lease `log-retention`). Pruning is idempotent, so a stale holder pruning once
    /// more costs work, not data; the log store takes no fence.
    pub fn spawn_pruner(&self, leases: crate::lease::Leases, every: Duration) {
        let logs = self.clone();
        leases.spawn_singleton("log-retention", every, move |_fence| {
            let logs = logs.clone();
            async move {
                match logs.prune().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(deleted = n, "request logs pruned"),
                    Err(e) => tracing::warn!(error = %e, "cannot prune request logs"),
                }
            }
        });
    }
}

fn page(records: Vec<(LogKey, Record)>, next_cursor: String) -> pb::AccessLogPage {
    pb::AccessLogPage {
        records: records.into_iter().map(|(_, r)| r).collect(),
        next_cursor,
    }
}

fn top(counts: HashMap<String, u64>, n: usize) -> Vec<pb::Count> {
    let mut v: Vec<pb::Count> = counts
        .into_iter()
        .map(|(key, count)| pb::Count { key, count })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    v.truncate(n);
    v
}

/// RFC 3339 UTC with microseconds, for display.
pub fn rfc3339(nanos: i64) -> String {
    let secs = nanos.div_euclid(NANOS);
    let micros = nanos.rem_euclid(NANOS) / 1000;
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    // Civil from days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests;
