//! One bound over both idle lists (bare and hyper connections); end to end with both paths:
//! `tests/tests/h1_fast_path.rs`.

use std::time::Duration;

use tokio::net::TcpListener;

use super::*;
use crate::upstream::ClientCache;

/// A pool bounded to `max` connections to a listener that accepts and holds them.
async fn bounded(max: u32) -> (Arc<Pool>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    let client =
        ClientCache::with_roots(rustls::RootCertStore::empty()).get(Duration::from_secs(5));
    (client.pool_bounded(&Scheme::HTTP, &authority, max), held)
}

async fn new_conn(pool: &Pool) -> RawConn {
    match pool.lease_raw() {
        Ok(Lease::New(slot)) => pool.connect_raw(slot).await.expect("connects"),
        Ok(Lease::Idle(_)) => panic!("no idle connection yet"),
        Err(error) => panic!("{error}"),
    }
}

#[tokio::test]
async fn a_bare_connection_holds_its_slot_until_it_is_dropped() {
    let (pool, _held) = bounded(1).await;
    let conn = new_conn(&pool).await;
    assert!(matches!(pool.lease_raw(), Err(ClientError::Saturated)));
    assert!(matches!(
        pool.connect_raw(None).await,
        Err(ClientError::Saturated)
    ));
    // Given back: leased again from the idle list, not dialled.
    pool.put_raw(conn);
    let again = match pool.lease_raw() {
        Ok(Lease::Idle(conn)) => conn,
        _ => panic!("the idle connection is reused"),
    };
    assert!(again.reused);
    // A failed reused connection hands its slot to its replacement.
    let replaced = pool
        .connect_raw(again.into_slot())
        .await
        .expect("in the old slot");
    assert!(!replaced.reused);
    assert!(matches!(pool.lease_raw(), Err(ClientError::Saturated)));
    drop(replaced);
    assert!(matches!(pool.lease_raw(), Ok(Lease::New(Some(_)))));
}

#[tokio::test]
async fn at_the_bound_an_idle_bare_connection_gives_its_slot_to_hyper() {
    let (pool, _held) = bounded(1).await;
    assert!(pool.evict_raw().is_none());
    let conn = new_conn(&pool).await;
    pool.put_raw(conn);
    assert!(!pool.has_idle(), "no hyper connection is idle");
    let slot = pool.evict_raw().expect("the idle bare connection's slot");
    // The bare connection is gone and its slot is held by `slot` alone.
    assert!(matches!(pool.lease_raw(), Err(ClientError::Saturated)));
    drop(slot);
    assert!(matches!(pool.lease_raw(), Ok(Lease::New(Some(_)))));
}

#[tokio::test]
async fn without_a_bound_every_lease_may_dial() {
    let (pool, _held) = bounded(0).await;
    assert!(matches!(pool.lease_raw(), Ok(Lease::New(None))));
    let a = new_conn(&pool).await;
    let b = new_conn(&pool).await;
    drop((a, b));
}
