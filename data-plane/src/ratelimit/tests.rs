use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use http::Response;
use http::header::RETRY_AFTER;

use super::*;
use crate::body;

const SEC: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;

fn spec(per_second: u32, burst: u32, key: KeyKind) -> RateSpec {
    RateSpec {
        per_second,
        burst,
        key,
    }
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

fn claims(sub: &'static str, client_id: &'static str) -> Caller<'static> {
    Caller::new(sub, client_id)
}

/// How many of `n` requests for `key` at the same instant are admitted.
fn admitted_at(limiter: &RateLimiter, key: u64, now: u64, n: u32) -> u32 {
    (0..n)
        .filter(|_| limiter.check_at(key, now).is_ok())
        .count() as u32
}

#[test]
fn a_fresh_key_gets_its_burst_at_once_then_waits_one_interval() {
    let limiter = RateLimiter::new(spec(10, 5, KeyKind::Ip));
    assert_eq!(admitted_at(&limiter, 1, SEC, 20), 5);
    // TAT is now 5 intervals ahead; the next slot opens one interval (100 ms) later.
    let wait = limiter.check_at(1, SEC).err();
    assert_eq!(wait, Some(Duration::from_millis(100)));
    assert!(limiter.check_at(1, SEC + 99 * MS).is_err());
    assert!(limiter.check_at(1, SEC + 100 * MS).is_ok());
    assert!(limiter.check_at(1, SEC + 100 * MS).is_err());
}

#[test]
fn a_quiet_key_refills_to_its_burst_and_no_further() {
    let limiter = RateLimiter::new(spec(10, 5, KeyKind::Ip));
    assert_eq!(admitted_at(&limiter, 1, 0, 5), 5);
    // 300 ms later: three intervals have passed, so three requests.
    assert_eq!(admitted_at(&limiter, 1, 300 * MS, 10), 3);
    // An hour of silence refills the burst, not an hour's worth of requests.
    assert_eq!(admitted_at(&limiter, 1, 3600 * SEC, 100), 5);
}

#[test]
fn sustained_overload_admits_burst_plus_rate_times_duration() {
    let limiter = RateLimiter::new(spec(50, 10, KeyKind::Ip));
    // One request every millisecond for three seconds: 20x the rate.
    let admitted = (0..3000u64)
        .filter(|t| limiter.check_at(7, t * MS).is_ok())
        .count();
    // 10 at once, then one per 20 ms over 3 s (the last slot at 2.98 s).
    assert_eq!(admitted, 10 + 149);
}

#[test]
fn a_burst_of_one_allows_exactly_the_rate() {
    let limiter = RateLimiter::new(spec(1, 1, KeyKind::Ip));
    assert!(limiter.check_at(1, 0).is_ok());
    assert_eq!(
        limiter.check_at(1, 250 * MS).err(),
        Some(Duration::from_millis(750))
    );
    assert!(limiter.check_at(1, SEC).is_ok());
}

#[test]
fn retry_after_rounds_up_to_whole_seconds() {
    assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
    assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
    assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
    assert_eq!(retry_after_secs(Duration::ZERO), 1);
    // One request per second, burst 1: the second one at once waits a full second.
    let limits = Limits::new(
        Some(Arc::new(RateLimiter::new(spec(1, 1, KeyKind::Ip)))),
        None,
    );
    let limits = limits.unwrap_or_else(|| panic!("limits"));
    assert_eq!(limits.check_peer(ip(1)), Ok(()));
    assert_eq!(
        limits.check_peer(ip(1)),
        Err(Limited::Rate {
            retry_after_secs: 1
        })
    );
    let response = Limited::Rate {
        retry_after_secs: 3,
    }
    .into_response();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        response
            .headers()
            .get(RETRY_AFTER)
            .map(HeaderValue::as_bytes),
        Some(&b"3"[..])
    );
    let full = Limited::Concurrency.into_response();
    assert_eq!(full.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        full.headers().get(RETRY_AFTER).map(HeaderValue::as_bytes),
        Some(&b"1"[..])
    );
}

#[test]
fn keys_are_counted_separately() {
    let limiter = RateLimiter::new(spec(1, 2, KeyKind::Ip));
    let at = |key| admitted_at(&limiter, limiter.hash(key), 0, 10);
    assert_eq!(at(Key::Ip(ip(1))), 2);
    assert_eq!(at(Key::Ip(ip(2))), 2);
    assert_eq!(at(Key::Ip(ip(1))), 0);
    // The same text as subject, client and (below) address is three different keys.
    assert_eq!(at(Key::Subject("alice")), 2);
    assert_eq!(at(Key::Client("alice")), 2);
    assert_eq!(at(Key::Subject("bob")), 2);
    assert_eq!(at(Key::Subject("alice")), 0);
}

#[test]
fn ipv6_clients_count_per_64_and_mapped_ipv4_is_ipv4() {
    let limiter = RateLimiter::new(spec(1, 1, KeyKind::Ip));
    let a: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap_or(Ipv6Addr::LOCALHOST);
    let same_64: Ipv6Addr = "2001:db8:1:2:ffff::9"
        .parse()
        .unwrap_or(Ipv6Addr::LOCALHOST);
    let other_64: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap_or(Ipv6Addr::LOCALHOST);
    let h = |ip: IpAddr| limiter.hash(Key::Ip(ip));
    assert_eq!(h(a.into()), h(same_64.into()));
    assert_ne!(h(a.into()), h(other_64.into()));
    let v4 = Ipv4Addr::new(198, 51, 100, 7);
    assert_eq!(h(v4.into()), h(v4.to_ipv6_mapped().into()));
}

#[test]
fn tracked_keys_stay_bounded_under_a_flood_of_new_addresses() {
    let limiter = RateLimiter::with_capacity(spec(1, 3, KeyKind::Ip), 1024);
    let abuser = limiter.hash(Key::Ip(ip(9)));
    assert_eq!(admitted_at(&limiter, abuser, 0, 10), 3);
    for i in 0..200_000u32 {
        let spoofed = IpAddr::V6(Ipv6Addr::from(u128::from(i) << 64));
        let key = limiter.hash(Key::Ip(spoofed));
        assert!(limiter.check_at(key, u64::from(i)).is_ok());
        // The abuser keeps sending during the flood, so it keeps its (empty) bucket.
        if i % 64 == 0 {
            assert!(limiter.check_at(abuser, u64::from(i)).is_err(), "at {i}");
        }
        if i % 10_000 == 0 {
            assert!(limiter.tracked_keys() <= 1024, "at {i}");
        }
    }
    assert!(limiter.tracked_keys() <= 1024, "{}", limiter.tracked_keys());
    assert!(limiter.tracked_keys() >= 512, "{}", limiter.tracked_keys());
}

#[test]
fn the_default_capacity_is_max_keys() {
    let limiter = RateLimiter::new(spec(1, 1, KeyKind::Ip));
    for i in 0..(3 * MAX_KEYS as u64) {
        let _ = limiter.check_at(limiter.hasher.hash_one(i), 0);
    }
    let tracked = limiter.tracked_keys();
    assert!(tracked <= MAX_KEYS, "{tracked}");
}

#[test]
fn worker_threads_share_one_bucket_per_key() {
    let limiter = Arc::new(RateLimiter::new(spec(1, 100, KeyKind::Ip)));
    let key = limiter.hash(Key::Ip(ip(1)));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let limiter = limiter.clone();
            std::thread::spawn(move || admitted_at(&limiter, key, 0, 1000))
        })
        .collect();
    let total: u32 = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    assert_eq!(total, 100);
}

#[test]
fn subject_and_client_keys_fall_back_to_the_address_without_a_token() {
    let rate = |key| Arc::new(RateLimiter::new(spec(1, 1, key)));
    let by_subject =
        Limits::new(Some(rate(KeyKind::Subject)), None).unwrap_or_else(|| panic!("limits"));
    // Not counted before admission: the key is not known yet.
    for _ in 0..5 {
        assert_eq!(by_subject.check_peer(ip(1)), Ok(()));
    }
    let alice = claims("alice", "app-1");
    assert!(by_subject.admitted(ip(1), Some(&alice)).is_ok());
    // Alice is out of requests from any address; anonymous requests from her address
    // are a different key, and so is Bob.
    assert!(by_subject.admitted(ip(2), Some(&alice)).is_err());
    assert!(by_subject.admitted(ip(1), None).is_ok());
    assert!(by_subject.admitted(ip(1), None).is_err());
    assert!(
        by_subject
            .admitted(ip(1), Some(&claims("bob", "app-1")))
            .is_ok()
    );

    let by_client =
        Limits::new(Some(rate(KeyKind::Client)), None).unwrap_or_else(|| panic!("limits"));
    assert!(by_client.admitted(ip(1), Some(&alice)).is_ok());
    assert!(
        by_client
            .admitted(ip(1), Some(&claims("bob", "app-1")))
            .is_err()
    );
    assert!(
        by_client
            .admitted(ip(1), Some(&claims("bob", "app-2")))
            .is_ok()
    );
    // A token without a client id counts by address.
    assert!(by_client.admitted(ip(3), Some(&claims("bob", ""))).is_ok());
    assert!(by_client.admitted(ip(3), None).is_err());

    let by_ip = Limits::new(Some(rate(KeyKind::Ip)), None).unwrap_or_else(|| panic!("limits"));
    assert_eq!(by_ip.check_peer(ip(1)), Ok(()));
    // Counted once, before admission; admission does not count it again.
    assert!(by_ip.admitted(ip(1), Some(&alice)).is_ok());
    assert!(by_ip.check_peer(ip(1)).is_err());
}

#[test]
fn no_limits_is_none() {
    assert!(Limits::new(None, None).is_none());
}

#[test]
fn concurrency_slots_are_taken_and_given_back() {
    let limits = Limits::new(None, Some(Arc::new(ConcurrencyLimit::new(2))))
        .unwrap_or_else(|| panic!("limits"));
    let first = limits.admitted(ip(1), None);
    let second = limits.admitted(ip(2), None);
    assert!(matches!(first, Ok(Some(_))) && matches!(second, Ok(Some(_))));
    assert_eq!(
        limits.admitted(ip(3), None).err(),
        Some(Limited::Concurrency)
    );
    drop(first);
    let third = limits.admitted(ip(3), None);
    assert!(matches!(third, Ok(Some(_))));
    assert_eq!(limits.concurrency().map(|c| c.in_flight()), Some(2));
    drop((second, third));
    assert_eq!(limits.concurrency().map(|c| c.in_flight()), Some(0));
}

#[test]
fn concurrency_never_exceeds_the_limit_across_threads() {
    let limit = Arc::new(ConcurrencyLimit::new(3));
    let peak = Arc::new(AtomicU32::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (limit, peak) = (limit.clone(), peak.clone());
            std::thread::spawn(move || {
                let mut got = 0u32;
                for _ in 0..20_000 {
                    if let Some(permit) = limit.try_acquire() {
                        peak.fetch_max(limit.in_flight(), Ordering::Relaxed);
                        got += 1;
                        drop(permit);
                    }
                }
                got
            })
        })
        .collect();
    let got: u32 = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    assert!(got > 0);
    assert!(peak.load(Ordering::Relaxed) <= 3);
    assert_eq!(limit.in_flight(), 0);
}

#[tokio::test]
async fn a_response_body_holds_its_slot_until_dropped() {
    let limit = Arc::new(ConcurrencyLimit::new(1));
    let permit = limit.try_acquire();
    assert!(permit.is_some());
    let response = hold(Response::new(body::full("hello")), permit);
    assert_eq!(limit.in_flight(), 1);
    assert!(limit.try_acquire().is_none());
    let bytes = response
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    assert_eq!(&bytes[..], b"hello");
    assert_eq!(limit.in_flight(), 0);
    // Without a permit the response is passed through untouched.
    let plain = hold(Response::new(body::full("x")), None);
    assert_eq!(plain.status(), StatusCode::OK);
}
