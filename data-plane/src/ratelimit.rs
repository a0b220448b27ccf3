//! Per-proxy abuse limits, enforced locally from snapshot config: a request rate per key
//! (GCRA, answered 429 with `Retry-After`) and a cap on concurrent requests (answered
//! 503 with `Retry-After: 1`).
//!
//! Scope: every limit is per data plane. All worker threads of one data plane share one
//! limiter per proxy; nothing is exchanged between data planes, so N data planes admit up
//! to N times the configured rate and concurrency.
//!
//! Keys ([`KeyKind`]): the client address (the TCP peer, the PROXY header's source from a
//! `--proxy-protocol-from` balancer, or a `--trusted-forwarders` peer's rightmost untrusted
//! `X-Forwarded-For` entry; never a client's own claim; IPv6
//! clients count per /64, since one host usually owns a whole /64), the verified token's
//! subject, or its OAuth client. Subject and client keys only exist once a token was
//! verified, so a request admitted without one (an open proxy, a public path or route,
//! `passthrough` without a token) is counted by address instead, in a separate key space.
//!
//! Costs: a proxy without limits pays one `Option` check. A rate-limited request takes one
//! seeded hash of its key, one `Instant::now()` and one short critical section on one of
//! [`SHARDS`] cache-padded mutexes (one or two lookups in a small table; no allocation
//! once the table has grown). A concurrency-limited request pays one CAS on a counter, an
//! `Arc` clone and one boxed body wrapper that gives the slot back when the response body
//! is dropped.
//!
//! Memory: at most [`MAX_KEYS`] keys per limiter, however many distinct clients send. Each
//! shard keeps two generations of keys; when the current one is full the older one is
//! dropped, so what is evicted is a key not seen for a whole generation. A key that keeps
//! sending keeps its entry; one evicted while still owing time restarts with a full burst,
//! which at worst gives an idle client one extra burst.
//!
//! Why not the `governor` crate: its keyed limiter (a `DashMap` of GCRA states) has no
//! cap on entries; memory only comes back through periodic `retain_recent` sweeps, so a
//! flood of distinct addresses grows it without bound between sweeps, and a sweep walks
//! every entry. The GCRA itself is a dozen lines; the two-generation table gives the
//! hard bound with O(1) eviction and no background task.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::body::{self, BoxError, ProxyBody};

/// Most keys one rate limiter tracks (see the module docs for what is evicted).
pub(crate) const MAX_KEYS: usize = 65_536;

/// Mutex shards per rate limiter: enough that worker threads rarely meet on one lock.
const SHARDS: usize = 64;

/// What a proxy's request rate is counted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// The client address (IPv6: its /64).
    Ip,
    /// The verified token's `sub`; the address without a verified token.
    Subject,
    /// The verified token's `client_id`; the address without a verified token.
    Client,
}

/// A proxy's rate limit as configured (validated from the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RateSpec {
    /// Sustained requests per second per key (> 0).
    pub per_second: u32,
    /// Requests a key may send at once after a quiet spell (> 0).
    pub burst: u32,
    /// What the rate is counted by.
    pub key: KeyKind,
}

/// The limits one proxy enforces; a proxy without any has none of these at all.
#[derive(Debug)]
pub struct Limits {
    rate: Option<Arc<RateLimiter>>,
    concurrency: Option<Arc<ConcurrencyLimit>>,
}

/// Who the token verified on admission names: the keys of subject- and client-keyed
/// rates. Borrowed from the claims, so this module needs nothing of [`crate::auth`].
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    subject: &'a str,
    client_id: &'a str,
}

/// A request refused by a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Limited {
    /// The key's rate is used up; it may send again after this many seconds (rounded up).
    #[error("rate limit exceeded (retry after {retry_after_secs} s)")]
    Rate {
        /// Whole seconds until the next request would be admitted, at least 1.
        retry_after_secs: u64,
    },
    /// The proxy already has its maximum of requests in flight.
    #[error("too many concurrent requests")]
    Concurrency,
}

/// Keyed GCRA: per key, the theoretical arrival time (TAT) of its next request, in
/// nanoseconds since `epoch`. A request at `now` is admitted when `TAT - now <= tolerance`
/// and then moves TAT on by one `interval`; a key never seen (or evicted) is fresh.
pub struct RateLimiter {
    spec: RateSpec,
    /// Nanoseconds between two requests at the sustained rate.
    interval: u64,
    /// How far TAT may run ahead of now: `(burst - 1) * interval`.
    tolerance: u64,
    epoch: Instant,
    /// Seeded per limiter, so clients cannot aim at one shard or collide keys on purpose.
    hasher: foldhash::fast::RandomState,
    shards: Box<[Shard]>,
    /// Keys per shard generation.
    generation: usize,
}

/// Cache-line aligned, so that locking one shard does not slow its neighbours.
#[repr(align(64))]
struct Shard(Mutex<Generations>);

/// Key hash → TAT. Keys are already seeded hashes, used as they are.
type Table = HashMap<u64, u64, BuildHasherDefault<Prehashed>>;

struct Generations {
    current: Table,
    previous: Table,
}

/// Hasher for keys that are hashes already.
#[derive(Default)]
struct Prehashed(u64);

/// A cap on a proxy's requests in flight; the count is shared by every worker.
#[derive(Debug)]
pub struct ConcurrencyLimit {
    max: u32,
    in_flight: AtomicU32,
}

/// One slot of a [`ConcurrencyLimit`], given back when dropped.
#[derive(Debug)]
#[must_use = "the slot is given back as soon as the permit is dropped"]
pub struct Permit(Arc<ConcurrencyLimit>);

/// A response body that holds its request's concurrency slot until it is dropped (sent
/// completely, or the client went away).
struct PermitBody {
    inner: ProxyBody,
    _permit: Permit,
}

// === impl Limits ===

impl Limits {
    /// The limits for one proxy; `None` when neither is set (the request path then pays
    /// only the `Option` check).
    pub fn new(
        rate: Option<Arc<RateLimiter>>,
        concurrency: Option<Arc<ConcurrencyLimit>>,
    ) -> Option<Self> {
        (rate.is_some() || concurrency.is_some()).then_some(Self { rate, concurrency })
    }

    /// Before admission: counts the request against an address-keyed rate, so a flood is
    /// refused before any token is verified. Other keys wait for [`Self::admitted`].
    pub(crate) fn check_peer(&self, peer: IpAddr) -> Result<(), Limited> {
        match &self.rate {
            Some(rate) if rate.spec.key == KeyKind::Ip => rate.check(Key::Ip(peer)),
            _ => Ok(()),
        }
    }

    /// After admission: counts the request against a subject- or client-keyed rate (by
    /// address when no token was verified), then takes a concurrency slot, held by the
    /// returned permit.
    pub fn admitted(
        &self,
        peer: IpAddr,
        caller: Option<&Caller<'_>>,
    ) -> Result<Option<Permit>, Limited> {
        if let Some(rate) = &self.rate {
            let key = match (rate.spec.key, caller) {
                (KeyKind::Ip, _) => None,
                (KeyKind::Subject, Some(c)) if !c.subject.is_empty() => {
                    Some(Key::Subject(c.subject))
                }
                (KeyKind::Client, Some(c)) if !c.client_id.is_empty() => {
                    Some(Key::Client(c.client_id))
                }
                _ => Some(Key::Ip(peer)),
            };
            if let Some(key) = key {
                rate.check(key)?;
            }
        }
        match &self.concurrency {
            Some(limit) => limit.try_acquire().map(Some).ok_or(Limited::Concurrency),
            None => Ok(None),
        }
    }

    /// The rate limiter, if any (tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn rate(&self) -> Option<&Arc<RateLimiter>> {
        self.rate.as_ref()
    }

    /// The concurrency limit, if any (tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn concurrency(&self) -> Option<&Arc<ConcurrencyLimit>> {
        self.concurrency.as_ref()
    }
}

/// Makes `response`'s body hold `permit` until the body is dropped; the response is
/// unchanged (and nothing is allocated) without one.
pub(crate) fn hold(response: Response<ProxyBody>, permit: Option<Permit>) -> Response<ProxyBody> {
    match permit {
        None => response,
        Some(permit) => response.map(|inner| {
            PermitBody {
                inner,
                _permit: permit,
            }
            .boxed()
        }),
    }
}

// === impl Caller ===

impl<'a> Caller<'a> {
    /// The token's subject (`sub`) and OAuth client (`client_id`); empty when absent.
    pub fn new(subject: &'a str, client_id: &'a str) -> Self {
        Self { subject, client_id }
    }
}

// === impl Limited ===

impl Limited {
    /// The status sent: 429 for a key over its rate (the client should slow down), 503
    /// for a full proxy (the upstream's capacity, not this client's behaviour).
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Rate { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Concurrency => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A short `text/plain` answer with `Retry-After`.
    pub(crate) fn into_response(self) -> Response<ProxyBody> {
        let (text, retry_after) = match self {
            Self::Rate { retry_after_secs } => (
                "429 Too Many Requests: rate limit exceeded\n",
                HeaderValue::from(retry_after_secs),
            ),
            Self::Concurrency => (
                "503 Service Unavailable: too many concurrent requests\n",
                HeaderValue::from_static("1"),
            ),
        };
        let mut response = Response::new(body::full(Bytes::from_static(text.as_bytes())));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(RETRY_AFTER, retry_after);
        response
    }
}

// === impl RateLimiter ===

/// A rate key before hashing.
#[derive(Debug, Clone, Copy)]
enum Key<'a> {
    Ip(IpAddr),
    Subject(&'a str),
    Client(&'a str),
}

impl RateLimiter {
    /// A limiter tracking at most [`MAX_KEYS`] keys.
    pub fn new(spec: RateSpec) -> Self {
        Self::with_capacity(spec, MAX_KEYS)
    }

    /// A limiter tracking at most `max_keys` keys (rounded up to a multiple of
    /// `2 * SHARDS`).
    fn with_capacity(spec: RateSpec, max_keys: usize) -> Self {
        let per_second = u64::from(spec.per_second.max(1));
        let interval = (1_000_000_000 / per_second).max(1);
        let burst = u64::from(spec.burst.max(1));
        Self {
            spec,
            interval,
            tolerance: (burst - 1).saturating_mul(interval),
            epoch: Instant::now(),
            hasher: foldhash::fast::RandomState::default(),
            shards: (0..SHARDS)
                .map(|_| {
                    Shard(Mutex::new(Generations {
                        current: Table::default(),
                        previous: Table::default(),
                    }))
                })
                .collect(),
            generation: max_keys.div_ceil(2 * SHARDS).max(1),
        }
    }

    /// What this limiter enforces.
    #[cfg(test)]
    pub(crate) fn spec(&self) -> RateSpec {
        self.spec
    }

    /// Keys currently tracked (both generations); never above the capacity.
    #[cfg(test)]
    pub(crate) fn tracked_keys(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let g = s.0.lock().unwrap_or_else(PoisonError::into_inner);
                g.current.len() + g.previous.len()
            })
            .sum()
    }

    fn check(&self, key: Key<'_>) -> Result<(), Limited> {
        let now = Instant::now().saturating_duration_since(self.epoch);
        let now = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
        self.check_at(self.hash(key), now)
            .map_err(|wait| Limited::Rate {
                retry_after_secs: retry_after_secs(wait),
            })
    }

    fn hash(&self, key: Key<'_>) -> u64 {
        match key {
            Key::Ip(ip) => match ip.to_canonical() {
                IpAddr::V4(v4) => self.hasher.hash_one((0u8, u32::from(v4))),
                // The /64 network: the interface half is the host's to choose.
                IpAddr::V6(v6) => self.hasher.hash_one((1u8, u128::from(v6) >> 64)),
            },
            Key::Subject(sub) => self.hasher.hash_one((2u8, sub)),
            Key::Client(client) => self.hasher.hash_one((3u8, client)),
        }
    }

    /// GCRA for key hash `key` at `now` (nanoseconds since `epoch`); on refusal, the
    /// wait until it would be admitted.
    fn check_at(&self, key: u64, now: u64) -> Result<(), Duration> {
        // Middle bits pick the shard: the table uses the low bits for the bucket and the
        // top seven as tags, which must stay varied within a shard.
        let shard = (key >> 32) as usize % SHARDS;
        let Some(shard) = self.shards.get(shard) else {
            return Ok(());
        };
        let mut g = shard.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tat) = g.current.get_mut(&key) {
            return admit(tat, now, self.interval, self.tolerance);
        }
        let mut tat = g.previous.remove(&key).unwrap_or(0);
        let verdict = admit(&mut tat, now, self.interval, self.tolerance);
        if g.current.len() >= self.generation {
            // Drop the older generation and start a new one in its allocation.
            let Generations { current, previous } = &mut *g;
            std::mem::swap(current, previous);
            current.clear();
        }
        g.current.insert(key, tat);
        verdict
    }
}

/// `Retry-After` for a wait: whole seconds, rounded up (a client that waits that long is
/// admitted), at least 1.
fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// One GCRA step on `tat`.
fn admit(tat: &mut u64, now: u64, interval: u64, tolerance: u64) -> Result<(), Duration> {
    let start = (*tat).max(now);
    let ahead = start - now;
    if ahead > tolerance {
        return Err(Duration::from_nanos(ahead - tolerance));
    }
    *tat = start.saturating_add(interval);
    Ok(())
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

// === impl Prehashed ===

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; fold anything else in so it stays correct.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

// === impl ConcurrencyLimit ===

impl ConcurrencyLimit {
    /// At most `max` requests in flight (`max` > 0).
    pub fn new(max: u32) -> Self {
        Self {
            max: max.max(1),
            in_flight: AtomicU32::new(0),
        }
    }

    /// The configured maximum.
    pub fn max(&self) -> u32 {
        self.max
    }

    /// Requests holding a slot now.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// A slot, unless all are taken. A CAS loop rather than add-then-undo, so a request
    /// refused at the limit never makes another one see a false "full".
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()?;
        Some(Permit(self.clone()))
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

// === impl PermitBody ===

impl Body for PermitBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
