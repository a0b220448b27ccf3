//! Support for end-to-end tests: start the real binaries, a private `redis-server`, and
//! real backends (HTTP, WebSocket, SSE) on loopback ports, and drive the CLI and REST API.
//!
//! Upstream identity providers for login tests: [`github::GithubServer`] (GitHub's OAuth and
//! REST wire protocol, in-process) and [`oidc::OidcProvider`] (the certified `oidc-provider`
//! npm package, run under Node).
//!
//! A real browser: [`chromium::visit`] (the system's headless Chromium, driven by the
//! `playwright-core` npm package pinned in `tests/browser`).
//!
//! MCP peers: [`mcp::EverythingServer`] (the reference MCP server) and [`mcp::run_client`]
//! (the official MCP SDK client), from the npm packages pinned in `tests/mcp`.
//!
//! Free ports, polling, child processes, Redis and Pebble come from the shared
//! `portcullis-test-support` crate (`tests/support`), which the crates' own tests use too.
//!
//! The binaries come from the workspace's `target/debug` (or `$CARGO_TARGET_DIR`); the test
//! command builds them first (`tests/run.sh`).

pub mod backend;
pub mod browser;
pub mod chromium;
pub mod docker;
pub mod github;
pub mod https_docs;
pub mod image;
pub mod mcp;
pub mod oidc;
pub mod procs;

pub use backend::Backend;
pub use portcullis_test_support::{RedisServer, eventually, free_port, pebble};
pub use procs::{ControlPlane, DataPlane, cli};

use std::time::Duration;

/// An HTTP client that never follows redirects and never uses a system proxy.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("reqwest client")
}
pub use backend::WsEcho;

/// A raw HTTP/1.1 exchange for requests no client library sends as written (dot segments,
/// `%2e`, backslashes: `reqwest` resolves or rejects those before sending). Sends
/// `METHOD target` to `base` (`http://host:port`) with `Host: host`, `Connection: close` and
/// `headers`, and returns the status and the whole response (head and body) as text.
pub async fn raw_request(
    base: &str,
    method: &str,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect for a raw request");
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .expect("write a raw request");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut response))
        .await
        .expect("raw response within 30 s")
        .expect("read a raw response");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, text)
}
