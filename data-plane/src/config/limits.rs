//! A proxy's abuse limits: the wire fields validated into a [`LimitSpec`], then linked to
//! limiters that outlive the snapshot.
//!
//! Limiter state must survive snapshot swaps, or every config change anywhere would hand
//! every client a fresh burst. So limiters live in a [`Memo`] keyed by the proxy's
//! hostname and its limit settings (the rate and the concurrency cap separately): a proxy
//! whose settings are unchanged gets the very same limiter back, one whose settings
//! changed gets a new one (its buckets start full; requests still in flight hold the old
//! concurrency count, so for their duration up to twice the cap may run). The memo drops
//! what the snapshot after next no longer uses, so a deleted proxy's state does not leak.
//! The memo is process-wide: one data plane per process.

use std::sync::{Arc, LazyLock};

use portcullis_proto::v1 as pb;

use crate::ratelimit::{ConcurrencyLimit, KeyKind, Limits, RateLimiter, RateSpec};
use crate::spec::memo::Memo;
use crate::spec::{InvalidField, Reason};

/// Rate limiters by `hostname` and settings (stateful, unlike the memo's other uses:
/// reusing one is the point).
static RATES: LazyLock<Memo<Arc<RateLimiter>>> = LazyLock::new(Memo::new);
/// Concurrency counters by `hostname` and cap.
static CONCURRENCY: LazyLock<Memo<Arc<ConcurrencyLimit>>> = LazyLock::new(Memo::new);

/// A proxy's validated limit settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LimitSpec {
    rate: Option<RateSpec>,
    /// 0 = no cap.
    max_concurrent: u32,
}

// === impl LimitSpec ===

impl LimitSpec {
    /// Reads the limit fields of `p`: `rate_limit_rps` 0 = no rate limit, `rate_limit_burst`
    /// 0 = one second's worth, `rate_limit_key` empty = `ip`; `max_concurrent_requests`
    /// 0 = no cap. An unknown key is an error naming the field.
    pub(crate) fn from_proto(p: &pb::ProxyTarget) -> Result<Self, InvalidField> {
        let key = match p.rate_limit_key.as_str() {
            "" | "ip" => KeyKind::Ip,
            "subject" => KeyKind::Subject,
            "client" => KeyKind::Client,
            other => {
                return Err(InvalidField::new(
                    "rate_limit_key",
                    Reason::Limit(format!("unsupported key {other:?}: ip, subject or client")),
                ));
            }
        };
        let rate = (p.rate_limit_rps > 0).then_some(RateSpec {
            per_second: p.rate_limit_rps,
            burst: if p.rate_limit_burst == 0 {
                p.rate_limit_rps
            } else {
                p.rate_limit_burst
            },
            key,
        });
        Ok(Self {
            rate,
            max_concurrent: p.max_concurrent_requests,
        })
    }

    /// The limits `hostname` enforces under these settings, reusing the limiters of the
    /// previous snapshot when the settings are unchanged; `None` without limits.
    pub(crate) fn link(&self, hostname: &str) -> Option<Limits> {
        let rate = self.rate.map(|spec| {
            let key = format!(
                "{hostname} {} {} {:?}",
                spec.per_second, spec.burst, spec.key
            );
            RATES
                .get_or_try(&key, |_| {
                    Ok::<_, std::convert::Infallible>(Arc::new(RateLimiter::new(spec)))
                })
                .unwrap_or_else(|never| match never {})
        });
        let concurrency = (self.max_concurrent > 0).then(|| {
            let key = format!("{hostname} {}", self.max_concurrent);
            let max = self.max_concurrent;
            CONCURRENCY
                .get_or_try(&key, |_| {
                    Ok::<_, std::convert::Infallible>(Arc::new(ConcurrencyLimit::new(max)))
                })
                .unwrap_or_else(|never| match never {})
        });
        Limits::new(rate, concurrency)
    }
}

/// Ends a successful compile: limiters it did not use go at the next one.
pub(crate) fn rotate() {
    RATES.rotate();
    CONCURRENCY.rotate();
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use portcullis_proto::v1 as pb;

    use crate::config::{CompileError, Snapshot};
    use crate::ratelimit::{ConcurrencyLimit, KeyKind, RateLimiter, RateSpec};
    use crate::upstream::ClientCache;

    fn proxy(host: &str, rps: u32, burst: u32, key: &str, max: u32) -> pb::ProxyTarget {
        pb::ProxyTarget {
            hostname: host.into(),
            target_url: "http://127.0.0.1:9".into(),
            enabled: true,
            enable_http: true,
            rate_limit_rps: rps,
            rate_limit_burst: burst,
            rate_limit_key: key.into(),
            max_concurrent_requests: max,
            ..Default::default()
        }
    }

    fn compile(proxies: Vec<pb::ProxyTarget>) -> Result<Snapshot, CompileError> {
        let wire = pb::ConfigSnapshot {
            version: 1,
            proxies,
            ..Default::default()
        };
        Snapshot::compile(
            &wire,
            &ClientCache::with_roots(rustls::RootCertStore::empty()),
        )
    }

    fn limits_of(s: &Snapshot, host: &str) -> Option<(Option<RateSpec>, Option<u32>)> {
        let p = s.http_hosts().lookup_normalized(host)?;
        let l = p.limits()?;
        Some((l.rate().map(|r| r.spec()), l.concurrency().map(|c| c.max())))
    }

    #[test]
    fn limit_fields_compile_with_their_defaults() -> Result<(), CompileError> {
        let s = compile(vec![
            proxy("open.limits.test", 0, 0, "", 0),
            proxy("rate.limits.test", 50, 0, "", 0),
            proxy("all.limits.test", 5, 20, "subject", 8),
        ])?;
        assert_eq!(limits_of(&s, "open.limits.test"), None);
        let rate = |per_second, burst, key| RateSpec {
            per_second,
            burst,
            key,
        };
        assert_eq!(
            limits_of(&s, "rate.limits.test"),
            Some((Some(rate(50, 50, KeyKind::Ip)), None))
        );
        assert_eq!(
            limits_of(&s, "all.limits.test"),
            Some((Some(rate(5, 20, KeyKind::Subject)), Some(8)))
        );
        Ok(())
    }

    #[test]
    fn an_unknown_key_is_refused_naming_the_field() {
        let err = compile(vec![proxy("bad.limits.test", 5, 0, "cookie", 0)]).err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("bad.limits.test"), "{text}");
        assert!(text.contains("rate_limit_key"), "{text}");
        assert!(text.contains("cookie"), "{text}");
    }

    #[test]
    fn limiters_survive_a_new_snapshot_unless_their_settings_change() -> Result<(), CompileError> {
        type Both = Option<(Arc<RateLimiter>, Arc<ConcurrencyLimit>)>;
        let limiter = |s: &Snapshot, host: &str| -> Both {
            let l = s.http_hosts().lookup_normalized(host)?.limits()?;
            Some((l.rate()?.clone(), l.concurrency()?.clone()))
        };
        let same = |a: &Both, b: &Both| match (a, b) {
            (Some((r1, c1)), Some((r2, c2))) => (Arc::ptr_eq(r1, r2), Arc::ptr_eq(c1, c2)),
            _ => panic!("limits missing"),
        };
        let host = "keep.limits.test";
        // The memo is process-wide and every compile rotates it, so other tests compiling
        // snapshots on other threads between two of ours can make it forget; interference
        // only ever turns a reuse into a miss. The sequence is run until one attempt sees
        // no interference: broken reuse fails every attempt.
        let mut seen = Vec::new();
        for _ in 0..50 {
            let first = compile(vec![proxy(host, 10, 5, "ip", 4)])?;
            let a = limiter(&first, host);
            // Another proxy appears: this one's state is kept.
            let second = compile(vec![
                proxy(host, 10, 5, "ip", 4),
                proxy("other.limits.test", 1, 0, "", 0),
            ])?;
            let kept = same(&a, &limiter(&second, host));
            // The rate changes: a new rate limiter, the same concurrency count.
            let third = compile(vec![proxy(host, 20, 5, "ip", 4)])?;
            let rate_changed = same(&a, &limiter(&third, host));
            // The cap changes: a new counter.
            let fourth = compile(vec![proxy(host, 20, 5, "ip", 6)])?;
            let cap_changed = same(&limiter(&third, host), &limiter(&fourth, host));
            let attempt = (kept, rate_changed, cap_changed);
            if attempt == ((true, true), (false, true), (true, false)) {
                return Ok(());
            }
            seen.push(attempt);
        }
        panic!("limiters were never reused as expected: {seen:?}");
    }
}
