//! One suite, run against both backends. The Redis run starts a private `redis-server`.

use super::*;
use portcullis_test_support::RedisServer;
use prost::Message as _;

fn rec(i: u64, now: i64) -> Record {
    Record {
        time_unix_nanos: now - (i as i64) * NANOS / 10,
        node_id: "dp1".into(),
        listener: "http".into(),
        client_ip: format!("10.0.0.{}", i % 7),
        method: if i.is_multiple_of(5) { "POST" } else { "GET" }.into(),
        host: if i.is_multiple_of(2) {
            "a.test"
        } else {
            "b.test"
        }
        .into(),
        path: format!("/api/{}/x", i % 3),
        status: [200, 404, 500, 302][(i % 4) as usize],
        duration_micros: i * 10,
        proxy: if i.is_multiple_of(2) {
            "a.test"
        } else {
            "b.test"
        }
        .into(),
        user: if i.is_multiple_of(3) {
            format!("user{}", i % 2)
        } else {
            String::new()
        },
        client_id: if i % 4 == 1 {
            "cli".into()
        } else {
            String::new()
        },
        request_id: format!("req-{i}"),
        ..Default::default()
    }
}

fn q() -> pb::AccessLogQuery {
    pb::AccessLogQuery::default()
}

async fn all(logs: &AccessLogs, f: &Filter, limit: usize) -> Vec<Record> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = logs.search_filter(f, cursor, limit).await.unwrap();
        assert!(page.records.len() <= limit);
        out.extend(page.records);
        if page.next_cursor.is_empty() {
            return out;
        }
        cursor = Some(LogKey::from_cursor(&page.next_cursor).unwrap());
    }
}

fn expected_index_entries(records: &[Record]) -> u64 {
    records
        .iter()
        .map(|r| Field::ALL.iter().filter(|f| f.value(r).is_some()).count() as u64)
        .sum()
}

async fn suite(store: Arc<dyn LogStore>) {
    let logs = AccessLogs::new(
        store.clone(),
        LogSettings {
            retention: Duration::from_secs(3600),
            max_records: 1000,
        },
    );
    let now = now_nanos();
    let records: Vec<Record> = (0..300).map(|i| rec(i, now)).collect();
    let mut follower = logs
        .follow_filter(
            Filter::parse(
                &pb::AccessLogQuery {
                    client_ip: "10.0.0.3".into(),
                    ..q()
                },
                now,
                false,
            )
            .unwrap(),
        )
        .unwrap();
    for chunk in records.chunks(100) {
        let n = logs
            .ingest(
                "dp1",
                pb::AccessLogBatch {
                    records: chunk.to_vec(),
                    dropped: 0,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(n, 100);
    }
    assert_eq!(store.count().await.unwrap(), 300);
    assert_eq!(
        store.index_entries().await.unwrap(),
        expected_index_entries(&records)
    );
    // Follow: only matching records, in ingest order.
    let first = follower.next().await.unwrap();
    assert_eq!(first.client_ip, "10.0.0.3");
    assert_eq!(first.request_id, "req-3");

    // Every filter, through its index or in memory, against brute force; newest first,
    // paged through with cursors.
    let queries = [
        pb::AccessLogQuery {
            client_ip: "10.0.0.3".into(),
            ..q()
        },
        pb::AccessLogQuery {
            host: "A.test".into(),
            ..q()
        },
        pb::AccessLogQuery {
            user: "user1".into(),
            ..q()
        },
        pb::AccessLogQuery {
            client_id: "cli".into(),
            ..q()
        },
        pb::AccessLogQuery {
            status: "404".into(),
            ..q()
        },
        pb::AccessLogQuery {
            status: "5xx".into(),
            ..q()
        },
        pb::AccessLogQuery {
            status: "errors".into(),
            ..q()
        },
        pb::AccessLogQuery {
            method: "post".into(),
            ..q()
        },
        pb::AccessLogQuery {
            path_prefix: "/api/1".into(),
            ..q()
        },
        pb::AccessLogQuery {
            request_id: "req-42".into(),
            ..q()
        },
        pb::AccessLogQuery {
            min_duration_micros: 2500,
            ..q()
        },
        pb::AccessLogQuery {
            host: "b.test".into(),
            status: "3xx".into(),
            min_duration_micros: 100,
            ..q()
        },
        q(),
    ];
    for query in &queries {
        let f = Filter::parse(query, now_nanos(), true).unwrap();
        let mut want: Vec<&Record> = records.iter().filter(|r| f.matches(r)).collect();
        want.sort_by_key(|r| std::cmp::Reverse(r.time_unix_nanos));
        assert!(!want.is_empty(), "{query:?}");
        for limit in [7, 1000] {
            let got = all(&logs, &f, limit).await;
            let got_ids: Vec<&str> = got.iter().map(|r| r.request_id.as_str()).collect();
            let want_ids: Vec<&str> = want.iter().map(|r| r.request_id.as_str()).collect();
            assert_eq!(got_ids, want_ids, "{query:?} limit {limit}");
        }
    }
    // Semantics spot checks.
    let count = |query: pb::AccessLogQuery| {
        let f = Filter::parse(&query, now, true).unwrap();
        records.iter().filter(|r| f.matches(r)).count()
    };
    assert_eq!(
        count(pb::AccessLogQuery {
            status: "5xx".into(),
            ..q()
        }),
        75
    );
    assert_eq!(
        count(pb::AccessLogQuery {
            status: "errors".into(),
            ..q()
        }),
        150
    );
    assert_eq!(
        count(pb::AccessLogQuery {
            method: "POST".into(),
            ..q()
        }),
        60
    );
    assert_eq!(
        count(pb::AccessLogQuery {
            request_id: "req-42".into(),
            ..q()
        }),
        1
    );

    // Time bounds: `since`/`until` are Unix seconds, inclusive.
    let secs = now / NANOS;
    let f = Filter::parse(
        &pb::AccessLogQuery {
            since: secs - 5,
            until: secs - 2,
            ..q()
        },
        now,
        true,
    )
    .unwrap();
    let got = all(&logs, &f, 1000).await;
    assert!(!got.is_empty());
    assert!(
        got.iter()
            .all(|r| r.time_unix_nanos >= (secs - 5) * NANOS
                && r.time_unix_nanos < (secs - 1) * NANOS)
    );
    assert_eq!(got.len(), records.iter().filter(|r| f.matches(r)).count());

    // Stats.
    let f = Filter::parse(&q(), now_nanos(), true).unwrap();
    let stats = logs.stats_filter(&f).await.unwrap();
    assert_eq!(stats.total, 300);
    let classes: Vec<(String, u64)> = stats
        .by_status_class
        .iter()
        .map(|c| (c.key.clone(), c.count))
        .collect();
    assert_eq!(
        classes,
        vec![
            ("2xx".into(), 75),
            ("3xx".into(), 75),
            ("4xx".into(), 75),
            ("5xx".into(), 75)
        ]
    );
    assert_eq!(stats.top_hosts.len(), 2);
    assert_eq!(stats.top_hosts[0].count, 150);
    assert_eq!(stats.top_client_ips.len(), 7);
    assert_eq!(stats.p50_duration_micros, 1490);
    assert_eq!(stats.p99_duration_micros, 2960);
    assert!(!stats.truncated);
    // a.test saw the even i: i % 7 covers all 7 IPs.
    let uv: HashMap<String, u64> = stats
        .unique_visitors
        .iter()
        .map(|c| (c.key.clone(), c.count))
        .collect();
    assert_eq!(uv.get("a.test"), Some(&7), "{uv:?}");
    assert_eq!(uv.get("b.test"), Some(&7), "{uv:?}");
    assert_eq!(stats.dropped, 0);

    // Ingest bounds: an oversized batch is refused whole; an unstorable record is
    // dropped and counted with the batch's own drops; credentials leave the query.
    let big = pb::AccessLogBatch {
        records: vec![rec(0, now); MAX_BATCH + 1],
        dropped: 0,
        ..Default::default()
    };
    let e = logs.ingest("dp1", big).await.unwrap_err();
    assert!(
        matches!(
            e,
            ServiceError::Invalid {
                field: "records",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(store.count().await.unwrap(), 300);
    let mut bad = rec(1, now);
    bad.status = 1000;
    let mut odd = rec(2, now);
    odd.request_id = "with-query".into();
    odd.query = "a=1&access_token=secret&Code=x&b=2".into();
    odd.path = "p".repeat(10_000);
    odd.proxy = "A.Test".into();
    odd.time_unix_nanos = now + 2 * HOUR_NANOS;
    let n = logs
        .ingest(
            "dp1",
            pb::AccessLogBatch {
                records: vec![bad, odd],
                dropped: 4,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let stats = logs.stats_filter(&f).await.unwrap();
    assert_eq!(stats.dropped, 5);
    let f_odd = Filter::parse(
        &pb::AccessLogQuery {
            request_id: "with-query".into(),
            ..q()
        },
        now_nanos(),
        true,
    )
    .unwrap();
    let got = all(&logs, &f_odd, 10).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].query, "a=1&b=2");
    assert_eq!(got[0].path.len(), 4096);
    assert_eq!(got[0].proxy, "a.test");
    assert!(got[0].time_unix_nanos >= now);

    // Retention: records older than an hour go, with their index entries.
    let old: Vec<Record> = (0..50)
        .map(|i| {
            let mut r = rec(i, now - 2 * HOUR_NANOS);
            r.request_id = format!("old-{i}");
            r
        })
        .collect();
    logs.ingest(
        "dp1",
        pb::AccessLogBatch {
            records: old,
            dropped: 0,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(store.count().await.unwrap(), 351);
    let f_all = Filter::parse(&q(), now_nanos(), true).unwrap();
    assert_eq!(all(&logs, &f_all, 1000).await.len(), 351);
    assert_eq!(logs.prune().await.unwrap(), 50);
    assert_eq!(store.count().await.unwrap(), 301);
    let remaining = all(&logs, &f_all, 1000).await;
    assert_eq!(remaining.len(), 301);
    assert!(remaining.iter().all(|r| !r.request_id.starts_with("old-")));
    assert_eq!(
        store.index_entries().await.unwrap(),
        expected_index_entries(&remaining)
    );
    let f_old = Filter::parse(
        &pb::AccessLogQuery {
            request_id: "old-3".into(),
            ..q()
        },
        now_nanos(),
        true,
    )
    .unwrap();
    assert!(all(&logs, &f_old, 10).await.is_empty());

    // Size cap: the oldest go first.
    let capped = AccessLogs::new(
        store.clone(),
        LogSettings {
            retention: Duration::from_secs(3600),
            max_records: 100,
        },
    );
    assert_eq!(capped.prune().await.unwrap(), 201);
    assert_eq!(store.count().await.unwrap(), 100);
    let kept = all(&logs, &f_all, 1000).await;
    assert_eq!(kept.len(), 100);
    let mut newest: Vec<&Record> = remaining.iter().collect();
    newest.sort_by_key(|r| std::cmp::Reverse(r.time_unix_nanos));
    let want: Vec<&str> = newest[..100]
        .iter()
        .map(|r| r.request_id.as_str())
        .collect();
    let got: Vec<&str> = kept.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(got, want);
    assert_eq!(
        store.index_entries().await.unwrap(),
        expected_index_entries(&kept)
    );
}

#[test]
fn queries_are_validated_naming_the_field() {
    let bad = |query: pb::AccessLogQuery, field: &str| {
        let e = Filter::parse(&query, now_nanos(), true).unwrap_err();
        assert!(
            matches!(&e, ServiceError::Invalid { field: f, .. } if *f == field),
            "{e}"
        );
    };
    bad(
        pb::AccessLogQuery {
            status: "6xx".into(),
            ..q()
        },
        "status",
    );
    bad(
        pb::AccessLogQuery {
            status: "20".into(),
            ..q()
        },
        "status",
    );
    bad(
        pb::AccessLogQuery {
            status: "abc".into(),
            ..q()
        },
        "status",
    );
    bad(
        pb::AccessLogQuery {
            client_ip: "10.0.0".into(),
            ..q()
        },
        "client_ip",
    );
    bad(
        pb::AccessLogQuery {
            method: "GE T".into(),
            ..q()
        },
        "method",
    );
    bad(
        pb::AccessLogQuery {
            since: 10,
            until: 5,
            ..q()
        },
        "since",
    );
    bad(pb::AccessLogQuery { since: -1, ..q() }, "since");
    bad(
        pb::AccessLogQuery {
            host: "h".repeat(600),
            ..q()
        },
        "host",
    );
    assert!(matches!(
        LogKey::from_cursor("nope"),
        Err(ServiceError::Invalid {
            field: "cursor",
            ..
        })
    ));
    let k = LogKey {
        time: 123_456_789,
        seq: 42,
    };
    assert_eq!(LogKey::from_cursor(&k.to_cursor()).unwrap(), k);
    assert_eq!(
        Filter::parse(
            &pb::AccessLogQuery {
                client_ip: "::0001".into(),
                ..q()
            },
            0,
            true
        )
        .unwrap()
        .client_ip
        .as_deref(),
        Some("::1")
    );
}

#[test]
fn durations_and_times() {
    assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86400)));
    assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
    assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
    assert!(parse_duration("2w").is_err());
    assert!(parse_duration("h").is_err());
    assert!(parse_duration("").is_err());
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
    assert_eq!(
        rfc3339(1_700_000_000_123_456_789),
        "2023-11-14T22:13:20.123456Z"
    );
}

#[tokio::test]
async fn a_slow_follower_is_told_and_closed_never_blocks_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let logs = AccessLogs::new(
        Arc::new(EmbeddedLogStore::open(dir.path()).unwrap()),
        LogSettings::default(),
    );
    let mut slow = logs.follow_filter(Filter::default()).unwrap();
    let now = now_nanos();
    let batch: Vec<Record> = (0..FOLLOW_BUFFER as u64 + 10)
        .map(|i| rec(i, now))
        .collect();
    for c in batch.chunks(1000) {
        logs.ingest(
            "dp",
            pb::AccessLogBatch {
                records: c.to_vec(),
                dropped: 0,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    assert!(matches!(slow.next().await, Err(FollowEnd::Lagged(10))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_backend_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    suite(Arc::new(EmbeddedLogStore::open(dir.path()).unwrap())).await;
    // Records survive reopening; a second opener is refused while the first holds it.
    let store = EmbeddedLogStore::open(dir.path()).unwrap();
    assert!(EmbeddedLogStore::open(dir.path()).is_err());
    assert_eq!(store.count().await.unwrap(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_backend_passes_the_suite() {
    let server = RedisServer::start().await;
    suite(Arc::new(
        RedisLogStore::connect(&server.url, Duration::from_secs(3600))
            .await
            .unwrap(),
    ))
    .await;
}

/// Index keys of the previous Redis layout are deleted when a control plane connects;
/// everything else under the prefix stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_redis_removes_the_previous_index_layout() {
    let server = RedisServer::start().await;
    // More keys than one SCAN page holds.
    server.cli(&[
        "EVAL",
        "for i = 1, 1500 do redis.call('ZADD', '{portcullis}:logs:i:host:h' .. i, 1, 'm') end",
        "0",
    ]);
    server.cli(&["SET", "{portcullis}:logs:other", "kept"]);
    let _store = RedisLogStore::connect(&server.url, Duration::from_secs(3600))
        .await
        .unwrap();
    portcullis_test_support::eventually(Duration::from_secs(10), "old index keys gone", || {
        let left = server.cli(&[
            "EVAL",
            "return #redis.call('KEYS', ARGV[1])",
            "0",
            "{portcullis}:logs:i:*",
        ]);
        async move { (left == "0").then_some(()) }
    })
    .await;
    assert_eq!(server.cli(&["GET", "{portcullis}:logs:other"]), "kept");
}

/// A batch shipped again (stored, but its answer lost) is stored once, records and drops;
/// one that overlaps what was stored keeps only its new records; another stream (another
/// data-plane process) is counted apart.
async fn batches_are_stored_once(store: Arc<dyn LogStore>) {
    let logs = AccessLogs::new(store.clone(), LogSettings::default());
    let now = now_nanos();
    let batch = |stream: u8, first: u64, n: u64, dropped_total: u64| pb::AccessLogBatch {
        records: (first..first + n).map(|i| rec(i, now)).collect(),
        stream: vec![stream; 16],
        first_seq: first,
        dropped_total,
        ..Default::default()
    };
    let f = Filter::parse(&q(), now_nanos(), true).unwrap();
    assert_eq!(logs.ingest("dp1", batch(1, 0, 5, 2)).await.unwrap(), 5);
    // The same batch again: nothing new.
    assert_eq!(logs.ingest("dp1", batch(1, 0, 5, 2)).await.unwrap(), 0);
    // Retried with more records queued meanwhile: only 5..8 are new.
    assert_eq!(logs.ingest("dp1", batch(1, 0, 8, 3)).await.unwrap(), 3);
    // A restarted data plane is a new stream, numbered from 0 again.
    assert_eq!(logs.ingest("dp1", batch(2, 0, 4, 1)).await.unwrap(), 4);
    assert_eq!(store.count().await.unwrap(), 12);
    let stats = logs.stats_filter(&f).await.unwrap();
    assert_eq!((stats.total, stats.dropped), (12, 4));
    let ids: Vec<String> = all(&logs, &f, 100)
        .await
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), 8, "req-0..7 from two streams: {ids:?}");
    // A malformed stream id is refused whole.
    let mut bad = batch(3, 0, 1, 0);
    bad.stream = vec![1; 3];
    assert!(logs.ingest("dp1", bad).await.is_err());
    assert_eq!(store.count().await.unwrap(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_batches_are_stored_once_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    batches_are_stored_once(Arc::new(EmbeddedLogStore::open(dir.path()).unwrap())).await;
    let server = RedisServer::start().await;
    batches_are_stored_once(Arc::new(
        RedisLogStore::connect(&server.url, Duration::from_secs(3600))
            .await
            .unwrap(),
    ))
    .await;
}

/// Two control planes on one Redis: a batch ingested by either reaches the followers of
/// both, once each, in order, and only after it is stored; a large batch travels in
/// several feed messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_spans_control_planes_on_one_redis() {
    let server = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let open = || AccessLogs::open(dir.path(), Some(&server.url), LogSettings::default());
    let (a, b) = (open().await.unwrap(), open().await.unwrap());
    let everything = Filter {
        until: i64::MAX,
        ..Filter::default()
    };
    let mut on_a = a.follow_filter(everything.clone()).unwrap();
    let mut on_b = b.follow_filter(everything.clone()).unwrap();
    let now = now_nanos();
    let batch = |from: u64, n: u64| pb::AccessLogBatch {
        records: (from..from + n).map(|i| rec(i, now)).collect(),
        dropped: 0,
        ..Default::default()
    };
    async fn next(f: &mut Follower) -> Arc<Record> {
        tokio::time::timeout(Duration::from_secs(10), f.next())
            .await
            .expect("a followed record within 10 s")
            .expect("follower open")
    }
    // Shipped to A, then to B: each follower sees both, once, in order.
    a.ingest("dp1", batch(0, 2)).await.unwrap();
    b.ingest("dp2", batch(2, 1)).await.unwrap();
    for f in [&mut on_a, &mut on_b] {
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(next(f).await.request_id.clone());
        }
        assert_eq!(got, ["req-0", "req-1", "req-2"]);
    }
    // Followed means stored: B finds what A ingested.
    let page = b.search_filter(&everything, None, 10).await.unwrap();
    assert_eq!(page.records.len(), 3);
    // A batch larger than one feed message arrives whole.
    let mut big = batch(100, 2000);
    for r in &mut big.records {
        r.user_agent = "u".repeat(400);
    }
    let bytes: usize = big.records.iter().map(|r| r.encoded_len() + 4).sum();
    assert!(bytes > 2 * redis_backend::FEED_MESSAGE_BYTES, "{bytes}");
    a.ingest("dp1", big).await.unwrap();
    // Nothing twice: after the big batch, the next record each follower sees is the next
    // one ingested.
    b.ingest("dp2", batch(5000, 1)).await.unwrap();
    for f in [&mut on_a, &mut on_b] {
        for i in (100..2100u64).chain([5000]) {
            assert_eq!(next(f).await.request_id, format!("req-{i}"));
        }
    }
}

#[tokio::test]
async fn followers_are_bounded_and_a_dropped_one_frees_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let logs = AccessLogs::new(
        Arc::new(EmbeddedLogStore::open(dir.path()).unwrap()),
        LogSettings::default(),
    );
    let mut all: Vec<Follower> = (0..MAX_FOLLOWERS)
        .map(|_| logs.follow_filter(Filter::default()).unwrap())
        .collect();
    assert!(matches!(
        logs.follow_filter(Filter::default()),
        Err(FollowError::TooMany)
    ));
    all.pop();
    assert!(logs.follow_filter(Filter::default()).is_ok());
}

/// Rough costs (run with `--ignored --nocapture`; debug builds overstate them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing, not a check"]
async fn costs() {
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start().await;
    let stores: Vec<Arc<dyn LogStore>> = vec![
        Arc::new(EmbeddedLogStore::open(dir.path()).unwrap()),
        Arc::new(
            RedisLogStore::connect(&server.url, Duration::from_secs(3600))
                .await
                .unwrap(),
        ),
    ];
    for store in stores {
        let name = store.backend_name();
        let logs = AccessLogs::new(store, LogSettings::default());
        let now = now_nanos();
        let t = std::time::Instant::now();
        for b in 0..5u64 {
            let records = (0..MAX_BATCH as u64)
                .map(|i| rec(b * 10_000 + i, now))
                .collect();
            logs.ingest(
                "dp",
                pb::AccessLogBatch {
                    records,
                    dropped: 0,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        }
        eprintln!("{name}: ingest 50k in 5 batches: {:?}", t.elapsed());
        let f = Filter::parse(
            &pb::AccessLogQuery {
                method: "PUT".into(),
                ..q()
            },
            now_nanos(),
            true,
        )
        .unwrap();
        let t = std::time::Instant::now();
        logs.search_filter(&f, None, 100).await.unwrap();
        eprintln!(
            "{name}: unindexed search (budget {SCAN_BUDGET}): {:?}",
            t.elapsed()
        );
        let f = Filter::parse(
            &pb::AccessLogQuery {
                client_ip: "10.0.0.3".into(),
                ..q()
            },
            now_nanos(),
            true,
        )
        .unwrap();
        let t = std::time::Instant::now();
        logs.search_filter(&f, None, 100).await.unwrap();
        eprintln!("{name}: indexed search, 100 records: {:?}", t.elapsed());
        let f = Filter::parse(&q(), now_nanos(), true).unwrap();
        let t = std::time::Instant::now();
        logs.stats_filter(&f).await.unwrap();
        eprintln!("{name}: stats over 50k: {:?}", t.elapsed());
        let capped = AccessLogs::new(
            logs.store().clone(),
            LogSettings {
                retention: DEFAULT_WINDOW,
                max_records: 0,
            },
        );
        let t = std::time::Instant::now();
        capped.prune().await.unwrap();
        eprintln!("{name}: prune 50k: {:?}", t.elapsed());
    }
}

/// Every indexed query and the time walk, paged, against brute force over `want`.
async fn finds_exactly(logs: &AccessLogs, want: &[Record]) {
    let mut queries = vec![q()];
    for r in want.iter().take(25) {
        queries.push(pb::AccessLogQuery {
            client_ip: r.client_ip.clone(),
            ..q()
        });
        queries.push(pb::AccessLogQuery {
            request_id: r.request_id.clone(),
            ..q()
        });
    }
    for host in ["a.test", "b.test"] {
        queries.push(pb::AccessLogQuery {
            host: host.into(),
            ..q()
        });
    }
    for status in ["200", "404", "500", "302"] {
        queries.push(pb::AccessLogQuery {
            status: status.into(),
            ..q()
        });
    }
    queries.push(pb::AccessLogQuery {
        user: "user1".into(),
        ..q()
    });
    queries.push(pb::AccessLogQuery {
        client_id: "cli".into(),
        ..q()
    });
    for query in &queries {
        let f = Filter::parse(query, now_nanos(), true).unwrap();
        let mut expected: Vec<&Record> = want.iter().filter(|r| f.matches(r)).collect();
        expected.sort_by_key(|r| std::cmp::Reverse(r.time_unix_nanos));
        let expected: Vec<&str> = expected.iter().map(|r| r.request_id.as_str()).collect();
        for limit in [3, 1000] {
            let got = all(logs, &f, limit).await;
            let got: Vec<&str> = got.iter().map(|r| r.request_id.as_str()).collect();
            assert_eq!(got, expected, "{query:?} limit {limit}");
        }
    }
}

/// Two batches whose records share 100 ms buckets (on Redis: posting rows of both merged
/// in time order), then deletions that split them (by time, as retention does, and by the
/// size cap): what is left is found by every index exactly, and no index entry outlives
/// its record.
async fn rows_split_by_deletion(store: Arc<dyn LogStore>) {
    let logs = AccessLogs::new(store.clone(), LogSettings::default());
    // Ten minutes ago, at the start of a bucket: 3 buckets of 40 records each per batch,
    // the second batch's records interleaved in time with the first's.
    let t0 = (now_nanos() - 600 * NANOS) / postings::BUCKET_NANOS * postings::BUCKET_NANOS;
    let batch = |from: u64, offset: i64| -> Vec<Record> {
        (from..from + 120)
            .map(|i| {
                let mut r = rec(i, 0);
                r.time_unix_nanos = t0 + (i as i64 - from as i64) * 2_500_000 + offset;
                r
            })
            .collect()
    };
    let mut stored: Vec<Record> = batch(0, 0);
    stored.extend(batch(1000, 1_000_000));
    for chunk in stored.chunks(120) {
        logs.ingest(
            "dp1",
            pb::AccessLogBatch {
                records: chunk.to_vec(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    assert_eq!(store.count().await.unwrap(), 240);
    assert_eq!(
        store.index_entries().await.unwrap(),
        expected_index_entries(&stored)
    );
    finds_exactly(&logs, &stored).await;

    // The retention boundary in the middle of the second bucket: rows of both batches there
    // are split, the first bucket's go whole.
    let cutoff = t0 + postings::BUCKET_NANOS + postings::BUCKET_NANOS / 2;
    let deleted = store
        .delete_oldest(cutoff, u64::MAX, PRUNE_CHUNK)
        .await
        .unwrap();
    stored.retain(|r| r.time_unix_nanos >= cutoff);
    assert_eq!(deleted, 240 - stored.len() as u64);
    assert_eq!(store.count().await.unwrap(), stored.len() as u64);
    assert_eq!(
        store.index_entries().await.unwrap(),
        expected_index_entries(&stored)
    );
    finds_exactly(&logs, &stored).await;

    // The size cap, in chunks smaller than a row.
    let mut left = stored.len() as u64;
    while left > 25 {
        let n = store.delete_oldest(0, 25, 7).await.unwrap();
        assert_eq!(n, (left - 25).min(7));
        left -= n;
    }
    stored.sort_by_key(|r| std::cmp::Reverse(r.time_unix_nanos));
    stored.truncate(25);
    assert_eq!(store.count().await.unwrap(), 25);
    assert_eq!(
        store.index_entries().await.unwrap(),
        expected_index_entries(&stored)
    );
    finds_exactly(&logs, &stored).await;

    // A batch split across the retention boundary by `prune`: its old half goes.
    let now = now_nanos();
    let split: Vec<Record> = (0..40)
        .map(|i| {
            let mut r = rec(i, now);
            r.request_id = format!("split-{i}");
            if i % 2 == 0 {
                r.time_unix_nanos -= 30 * HOUR_NANOS;
            }
            r
        })
        .collect();
    logs.ingest(
        "dp1",
        pb::AccessLogBatch {
            records: split.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // Everything older than 24 h goes: the first batches (10 min old) stay.
    assert_eq!(logs.prune().await.unwrap(), 20);
    stored.extend(
        split
            .into_iter()
            .filter(|r| r.time_unix_nanos > now - HOUR_NANOS),
    );
    assert_eq!(store.count().await.unwrap(), 45);
    assert_eq!(
        store.index_entries().await.unwrap(),
        expected_index_entries(&stored)
    );
    finds_exactly(&logs, &stored).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_split_by_deletion_stay_exactly_indexed_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    rows_split_by_deletion(Arc::new(EmbeddedLogStore::open(dir.path()).unwrap())).await;
    let server = RedisServer::start().await;
    rows_split_by_deletion(Arc::new(
        RedisLogStore::connect(&server.url, Duration::from_secs(3600))
            .await
            .unwrap(),
    ))
    .await;
}

/// The suite again with index blocks of eight records: indexed searches, pages and
/// deletions span dozens of blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_backend_passes_the_suite_with_small_index_blocks() {
    let dir = tempfile::tempdir().unwrap();
    suite(Arc::new(
        EmbeddedLogStore::open_with_blocks(dir.path(), 3).unwrap(),
    ))
    .await;
}

/// The embedded store keeps its open block's index entries in memory only: reopening the
/// file (as after a crash) rebuilds them from the records, and with the closed blocks'
/// entries written to the tables meanwhile every record is indexed exactly once, before
/// and after, through deletions of records on both sides of that boundary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_open_block_entries_are_rebuilt_on_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_nanos();
    let mut stored: Vec<Record> = (0..45).map(|i| rec(i, now)).collect();
    let ingest = |logs: AccessLogs, records: Vec<Record>| async move {
        for chunk in records.chunks(10) {
            let batch = pb::AccessLogBatch {
                records: chunk.to_vec(),
                ..Default::default()
            };
            assert_eq!(logs.ingest("dp1", batch).await.unwrap(), chunk.len() as u64);
        }
    };
    // Blocks of 16 records: seqs 1..=31 are written to the tables, 32..=45 stay in memory.
    let open = || {
        let store: Arc<dyn LogStore> =
            Arc::new(EmbeddedLogStore::open_with_blocks(dir.path(), 4).unwrap());
        (
            AccessLogs::new(store.clone(), LogSettings::default()),
            store,
        )
    };
    {
        let (logs, store) = open();
        ingest(logs.clone(), stored.clone()).await;
        assert_eq!(
            store.index_entries().await.unwrap(),
            expected_index_entries(&stored)
        );
        finds_exactly(&logs, &stored).await;
    }
    let (logs, store) = open();
    assert_eq!(store.count().await.unwrap(), 45);
    assert_eq!(
        store.index_entries().await.unwrap(),
        expected_index_entries(&stored)
    );
    finds_exactly(&logs, &stored).await;
    // More records close the block that was open; the size cap then deletes records whose
    // entries are in the tables and in memory.
    let more: Vec<Record> = (45..70).map(|i| rec(i, now)).collect();
    ingest(logs.clone(), more.clone()).await;
    stored.extend(more);
    finds_exactly(&logs, &stored).await;
    assert_eq!(store.delete_oldest(0, 12, 1000).await.unwrap(), 58);
    // `rec` counts back in time: what goes is the highest numbers, seqs 13..=70, in the
    // tables (up to 63) and in memory.
    stored.sort_by_key(|r| std::cmp::Reverse(r.time_unix_nanos));
    stored.truncate(12);
    assert_eq!(
        store.index_entries().await.unwrap(),
        expected_index_entries(&stored)
    );
    finds_exactly(&logs, &stored).await;
    drop((logs, store));
    let (logs, store) = open();
    assert_eq!(
        store.index_entries().await.unwrap(),
        expected_index_entries(&stored)
    );
    finds_exactly(&logs, &stored).await;
}
