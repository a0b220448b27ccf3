//! Helpers shared by the crates' own tests and the end-to-end suite (`tests/`): a free
//! loopback port, polling until a condition holds, child processes killed on drop (with the
//! addresses they announce on stdout), a private `redis-server`, and Pebble as an ACME CA.
//!
//! Test-only (`publish = false`): panics instead of returning errors, so a broken fixture
//! fails the test that uses it with a message saying what did not start.

pub mod pebble;
mod procs;
mod redis;

pub use procs::{Proc, listening_addr};
pub use redis::RedisServer;

use std::time::{Duration, Instant};

/// A loopback port that was free a moment ago. Racy: another process may take it before
/// the caller binds it. Prefer binding port 0 and reading the bound address; use this only
/// where the port must be known before the process starts (e.g. Pebble validating a data
/// plane's HTTPS port, or `redis-server`, for which port 0 means "no TCP").
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// Polls `f` every 50 ms until it returns `Some`, panicking with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
