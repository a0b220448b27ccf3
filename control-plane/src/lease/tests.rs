//! One suite on both backends: the embedded store and a private `redis-server`.

use portcullis_test_support::{RedisServer, eventually};

use super::*;

const TTL: Duration = Duration::from_secs(1);

fn marker(v: &str) -> Write {
    Write::Put(Collection::Meta, "work".into(), v.as_bytes().to_vec())
}

async fn suite(store: Store) {
    let a = Leases::with_ttl(store.clone(), TTL);
    let b = Leases::with_ttl(store.clone(), TTL);

    // One holder at a time; the first token is 1.
    let mut first = a.try_acquire("job").await.unwrap().expect("free lease");
    assert_eq!(first.token(), 1);
    assert!(b.try_acquire("job").await.unwrap().is_none(), "held by a");
    assert!(b.held("job").await.unwrap());
    assert!(a.renew(&mut first).await.unwrap());

    // The holder's fenced write lands.
    store
        .apply(Batch {
            checks: vec![first.fence()],
            writes: vec![marker("a1")],
        })
        .await
        .unwrap();

    // Not renewed: it expires and b takes it over with a higher token.
    tokio::time::sleep(TTL + Duration::from_millis(200)).await;
    assert!(!b.held("job").await.unwrap());
    assert_eq!(b.expired("jo").await.unwrap(), vec!["job".to_owned()]);
    let second = b.try_acquire("job").await.unwrap().expect("expired lease");
    assert_eq!(second.token(), 2);
    assert!(b.expired("jo").await.unwrap().is_empty());

    // The stale holder can neither write nor renew; nothing it sent changed the store.
    let stale = store
        .apply(Batch {
            checks: vec![first.fence()],
            writes: vec![marker("a2")],
        })
        .await;
    assert!(
        matches!(stale, Err(StoreError::CheckFailed(0))),
        "{stale:?}"
    );
    assert_eq!(
        store
            .get(Collection::Meta, "work")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"a1"[..])
    );
    assert!(!a.renew(&mut first).await.unwrap());
    // A stale release does not free b's lease.
    a.release(first).await.unwrap();
    assert!(a.held("job").await.unwrap());

    // Released: free at once, and the token still grows.
    b.release(second).await.unwrap();
    assert!(!a.held("job").await.unwrap());
    assert!(
        a.expired("").await.unwrap().is_empty(),
        "released is not expired"
    );
    let third = a.try_acquire("job").await.unwrap().expect("released lease");
    assert_eq!(third.token(), 3);
    a.release(third).await.unwrap();

    // A held lease is renewed in the background past its TTL, and freed when dropped.
    let held = a.hold("renewed").await.unwrap().expect("free lease");
    tokio::time::sleep(TTL * 2).await;
    assert!(!held.is_lost());
    assert!(b.try_acquire("renewed").await.unwrap().is_none(), "renewed");
    drop(held);
    let taken = eventually(Duration::from_secs(5), "dropped lease released", || {
        let b = b.clone();
        async move { b.try_acquire("renewed").await.unwrap() }
    })
    .await;
    assert_eq!(taken.token(), 2);

    // A holder whose lease is taken over learns it at its next renewal.
    let mut held = a.hold("lost").await.unwrap().expect("free lease");
    let raw_fence = store.get(Collection::Meta, "fence:lost").await.unwrap();
    assert_eq!(raw_fence.as_deref(), Some(&b"1"[..]));
    // Someone rewrites the lease as if it had expired and been taken.
    store
        .apply(Batch {
            checks: vec![],
            writes: vec![
                Write::Put(Collection::Meta, "lease:lost".into(), b"{}".to_vec()),
                Write::Put(Collection::Meta, "fence:lost".into(), b"2".to_vec()),
            ],
        })
        .await
        .unwrap();
    tokio::time::timeout(TTL * 2, held.lost())
        .await
        .expect("loss noticed within a renewal");
    assert!(held.is_lost());
}

#[tokio::test]
async fn leases_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    suite(Store::open_embedded(dir.path()).unwrap()).await;
}

#[tokio::test]
async fn leases_on_redis() {
    let server = RedisServer::start().await;
    suite(Store::connect_redis(&server.url).await.unwrap()).await;
}

#[tokio::test]
async fn a_singleton_job_moves_when_its_holder_stops() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let server = RedisServer::start().await;
    let store = Store::connect_redis(&server.url).await.unwrap();
    let runs: [Arc<AtomicU64>; 2] = Default::default();
    let mut tasks = Vec::new();
    for r in &runs {
        let (store, r) = (store.clone(), r.clone());
        // Each "control plane" runs the job on its own runtime so one can be stopped.
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                Leases::with_ttl(store.clone(), TTL).spawn_singleton(
                    "single",
                    Duration::from_millis(50),
                    move |fence| {
                        let (store, r) = (store.clone(), r.clone());
                        async move {
                            if store
                                .apply(Batch {
                                    checks: vec![fence],
                                    writes: vec![marker("x")],
                                })
                                .await
                                .is_ok()
                            {
                                r.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    },
                );
                tokio::task::spawn_blocking(move || stop_rx.recv())
                    .await
                    .ok();
            });
            // Dropping the runtime kills its tasks without release, like kill -9.
        });
        tasks.push((stop_tx, thread));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let counts = runs.each_ref().map(|r| r.load(Ordering::SeqCst));
    let holder = usize::from(counts[0] == 0);
    assert!(counts[holder] > 0 && counts[1 - holder] == 0, "{counts:?}");
    let (stop, thread) = tasks.remove(holder);
    stop.send(()).unwrap();
    thread.join().unwrap();
    let stopped_at = std::time::Instant::now();
    let other = runs[1 - holder].clone();
    eventually(Duration::from_secs(5), "the other takes over", || {
        let other = other.clone();
        async move { (other.load(Ordering::SeqCst) > 0).then_some(()) }
    })
    .await;
    // TTL plus a third of it, plus scheduling slack.
    assert!(stopped_at.elapsed() < TTL + TTL / 3 + Duration::from_millis(700));
    let (stop, thread) = tasks.remove(0);
    stop.send(()).unwrap();
    thread.join().unwrap();
}
