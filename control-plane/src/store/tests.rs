//! One suite, run against both backends. The Redis run starts a private `redis-server`.

use portcullis_test_support::RedisServer;

use super::*;

async fn suite(store: Store) {
    use Collection::*;
    let put = |c, k: &str, v: &str| Write::Put(c, k.to_owned(), v.as_bytes().to_vec());

    // Empty store.
    assert_eq!(store.revision().await.unwrap(), 0);
    assert_eq!(store.get(Proxies, "a").await.unwrap(), None);

    // Config writes bump the revision; others do not.
    let r1 = store
        .apply(Batch {
            checks: vec![],
            writes: vec![put(Proxies, "a", "1")],
        })
        .await
        .unwrap();
    assert_eq!(r1, 1);
    let r2 = store
        .apply(Batch {
            checks: vec![],
            writes: vec![put(Tokens, "t", "x")],
        })
        .await
        .unwrap();
    assert_eq!(r2, 1);
    assert_eq!(
        store.get(Proxies, "a").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );

    // A failed check writes nothing, even writes listed before it.
    let err = store
        .apply(Batch {
            checks: vec![Check::Present(Routes, "nope".into())],
            writes: vec![put(Proxies, "b", "2"), put(Routes, "r", "3")],
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::CheckFailed(0)), "{err}");
    assert_eq!(store.get(Proxies, "b").await.unwrap(), None);
    assert_eq!(store.revision().await.unwrap(), 1);

    // Absent and Equals checks.
    let dup = store
        .apply(Batch {
            checks: vec![Check::Absent(Proxies, "a".into())],
            writes: vec![put(Proxies, "a", "9")],
        })
        .await;
    assert!(matches!(dup, Err(StoreError::CheckFailed(0))));
    let stale = store
        .apply(Batch {
            checks: vec![Check::Equals(Proxies, "a".into(), b"0".to_vec())],
            writes: vec![put(Proxies, "a", "2")],
        })
        .await;
    assert!(matches!(stale, Err(StoreError::CheckFailed(0))));
    store
        .apply(Batch {
            checks: vec![Check::Equals(Proxies, "a".into(), b"1".to_vec())],
            writes: vec![put(Proxies, "a", "2"), put(Services, "s", "4")],
        })
        .await
        .unwrap();

    // Consistent reads are sorted and keep collections apart (prefixes do not bleed).
    store
        .apply(Batch {
            checks: vec![],
            writes: vec![put(Proxies, "0", "z"), put(Routes, "r", "5")],
        })
        .await
        .unwrap();
    let view = store
        .read_consistent(&[Proxies, Routes, Services, DataPlanes])
        .await
        .unwrap();
    assert_eq!(view.revision, 3);
    let keys: Vec<Vec<&str>> = view
        .collections
        .iter()
        .map(|l| l.iter().map(|(k, _)| k.as_str()).collect())
        .collect();
    assert_eq!(keys, vec![vec!["0", "a"], vec!["r"], vec!["s"], vec![]]);

    // Deletes.
    store
        .apply(Batch {
            checks: vec![],
            writes: vec![Write::Delete(Proxies, "0".into())],
        })
        .await
        .unwrap();
    assert_eq!(store.list(Proxies).await.unwrap().len(), 1);

    // Concurrent writers: distinct keys all land, and compare-and-set never loses an update.
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.apply(Batch {
                checks: vec![],
                writes: vec![Write::Put(Routes, format!("c{i:03}"), vec![1])],
            })
            .await
            .unwrap();
            loop {
                let cur = s.get(Services, "counter").await.unwrap();
                let n: u64 = cur
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(b).parse().unwrap())
                    .unwrap_or(0);
                let check = match &cur {
                    Some(b) => Check::Equals(Services, "counter".into(), b.clone()),
                    None => Check::Absent(Services, "counter".into()),
                };
                let w = Write::Put(Services, "counter".into(), (n + 1).to_string().into_bytes());
                match s
                    .apply(Batch {
                        checks: vec![check],
                        writes: vec![w],
                    })
                    .await
                {
                    Ok(_) => break,
                    Err(StoreError::CheckFailed(_)) => continue,
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.list(Routes).await.unwrap().len(), 201);
    assert_eq!(
        store.get(Services, "counter").await.unwrap().as_deref(),
        Some(&b"200"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_backend_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    suite(Store::open_embedded(dir.path()).unwrap()).await;
    // Data survives reopening, and a second opener is refused while the first holds it.
    let store = Store::open_embedded(dir.path()).unwrap();
    assert!(Store::open_embedded(dir.path()).is_err());
    assert_eq!(store.revision().await.unwrap(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_backend_passes_the_suite() {
    let server = RedisServer::start().await;
    suite(Store::connect_redis(&server.url).await.unwrap()).await;
}

#[tokio::test]
async fn redis_unreachable_is_an_error_not_a_hang() {
    let started = std::time::Instant::now();
    assert!(Store::connect_redis("redis://127.0.0.1:1/0").await.is_err());
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[tokio::test]
async fn redis_announces_each_revision_to_every_watcher_at_once() {
    let server = RedisServer::start().await;
    let writer = Store::connect_redis(&server.url).await.unwrap();
    let watcher = Store::connect_redis(&server.url).await.unwrap();
    let write = |k: &str| Batch {
        checks: vec![],
        writes: vec![Write::Put(Collection::Proxies, k.to_owned(), vec![1])],
    };
    assert_eq!(writer.apply(write("a")).await.unwrap(), 1);
    let revisions = Revisions::new(0);
    let mut rx = revisions.subscribe();
    watcher.watch_revisions(&revisions);
    // Subscribed: it read the revision written before it subscribed.
    tokio::time::timeout(std::time::Duration::from_secs(5), rx.wait_for(|r| *r == 1))
        .await
        .expect("caught up at subscription")
        .unwrap();
    // Another process's write arrives without any poll, within milliseconds.
    for n in 2..=20u64 {
        let started = std::time::Instant::now();
        assert_eq!(writer.apply(write(&format!("k{n}"))).await.unwrap(), n);
        tokio::time::timeout(std::time::Duration::from_secs(1), rx.wait_for(|r| *r == n))
            .await
            .expect("announced")
            .unwrap();
        assert!(started.elapsed() < std::time::Duration::from_millis(200));
    }
    // A write that does not bump the revision announces nothing.
    writer
        .apply(Batch {
            checks: vec![],
            writes: vec![Write::Put(Collection::Tokens, "t".into(), vec![1])],
        })
        .await
        .unwrap();
    assert_eq!(
        server.cli(&["PUBSUB", "NUMSUB", "{portcullis}:revisions"]),
        "{portcullis}:revisions\n1"
    );
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!rx.has_changed().unwrap());
}
