//! What an MCP server behind a protected proxy relies on, end to end through a real data
//! plane to a real backend: the transport's request headers arrive, the server's statuses
//! come back unchanged, event streams are relayed event by event and may stay quiet longer
//! than the read timeout (but not than the idle timeout), and a client that goes away
//! cancels the upstream request.
//!
//! The proxy is protected in `passthrough` mode (admits without a token) so these run
//! through the policy phase without a login.

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use portcullis_tests::{Backend, ControlPlane, DataPlane, eventually, http_client};
use serde_json::Value;

const HOST: &str = "mcp.test";

async fn setup(node: &str, extra: &[&str]) -> (ControlPlane, DataPlane, Backend) {
    let cp = ControlPlane::start().await;
    let backend = Backend::start("mcp").await;
    let dp = DataPlane::start(&cp, node).await;
    let mut create = vec!["proxy", "create", HOST, backend.url.as_str()];
    create.extend_from_slice(extra);
    cp.cli_ok(&create);
    cp.cli_ok(&[
        "proxy",
        "auth",
        "enable",
        HOST,
        "--auth-host",
        "auth.test",
        "--mode",
        "passthrough",
    ]);
    let version = cp.version().await;
    cp.wait_applied(&dp.node_id, version).await;
    (cp, dp, backend)
}

fn request(dp: &DataPlane, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    http_client()
        .request(method, format!("{}{path}", dp.http))
        .header("host", HOST)
}

#[tokio::test]
async fn mcp_request_headers_reach_the_server_and_statuses_come_back_unchanged() {
    let (_cp, dp, _backend) = setup("dp-mcp-pass-1", &[]).await;
    let resp = request(&dp, reqwest::Method::POST, "/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("Mcp-Session-Id", "4b2c9e1a-session")
        .header("MCP-Protocol-Version", "2025-06-18")
        .header("Last-Event-ID", "17")
        .header("Mcp-Method", "tools/call")
        .header("Mcp-Name", "echo")
        .header("Mcp-Param-Foo", "bar")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 200);
    let seen: Value = resp.json().await.expect("echo");
    for (name, value) in [
        ("mcp-session-id", "4b2c9e1a-session"),
        ("mcp-protocol-version", "2025-06-18"),
        ("last-event-id", "17"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "echo"),
        ("mcp-param-foo", "bar"),
        ("accept", "application/json, text/event-stream"),
    ] {
        assert_eq!(seen["headers"][name], value, "{name}: {seen}");
    }
    assert_eq!(seen["method"], "POST");

    // 202 (notification accepted), 404 (unknown session), 405 (no GET stream): status,
    // body and the server's own headers are the server's.
    for code in [202u16, 404, 405] {
        let resp = request(&dp, reqwest::Method::GET, &format!("/status/{code}"))
            .header("mcp-session-id", "gone")
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status().as_u16(), code);
        assert_eq!(resp.headers()["x-backend-marker"], "mcp", "{code}");
        assert_eq!(resp.headers()["allow"], "GET, POST", "{code}");
        assert_eq!(
            resp.text().await.expect("body"),
            format!("{{\"status\":{code}}}")
        );
    }
}

#[tokio::test]
async fn event_streams_are_relayed_event_by_event_and_outlive_the_read_timeout() {
    // A read timeout far shorter than the stream's quiet gaps: it bounds the wait for
    // response headers only, never a stream that has started.
    let (_cp, dp, backend) = setup("dp-mcp-pass-2", &["--read-timeout-ms", "300"]).await;
    let resp = request(&dp, reqwest::Method::GET, "/sse?n=3&interval_ms=1200")
        .header("accept", "text/event-stream")
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .expect("stream");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert!(resp.headers().get("content-encoding").is_none());
    let start = Instant::now();
    let mut stream = resp.bytes_stream();
    let mut arrivals = Vec::new();
    let mut buf = String::new();
    while let Some(chunk) = stream.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            arrivals.push((event, start.elapsed()));
        }
    }
    assert_eq!(arrivals.len(), 3, "stream cut: {arrivals:?}");
    for (i, (event, at)) in arrivals.iter().enumerate() {
        assert!(event.contains(&format!("data: {{\"i\":{i}}}")), "{event}");
        let produced = Duration::from_millis(1200 * i as u64);
        assert!(
            *at + Duration::from_millis(100) >= produced,
            "event {i} early? {at:?}"
        );
        assert!(
            *at < produced + Duration::from_millis(500),
            "event {i} buffered: {at:?}"
        );
    }
    assert_eq!(backend.aborted_streams(), 0);
}

#[tokio::test]
async fn a_stream_silent_for_longer_than_the_idle_timeout_is_ended() {
    // One event, then 3 s of silence: with a 500 ms idle timeout the data plane ends the
    // exchange (with an error, so the client can tell it was cut) and drops the upstream
    // connection instead of keeping it for the pool.
    let (_cp, dp, backend) = setup("dp-mcp-pass-4", &["--idle-timeout-ms", "500"]).await;
    let resp = request(&dp, reqwest::Method::GET, "/sse?n=2&interval_ms=3000")
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("stream");
    assert_eq!(resp.status(), 200);
    let start = Instant::now();
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut cut = false;
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => buf.push_str(&String::from_utf8_lossy(&chunk)),
                Err(_) => {
                    cut = true;
                    break;
                }
            }
        }
    })
    .await;
    let ended = start.elapsed();
    assert!(read.is_ok(), "stream still open after 5 s: {buf:?}");
    assert!(
        buf.contains("data: {\"i\":0}"),
        "first event missing: {buf:?}"
    );
    assert!(!buf.contains("\"i\":1"), "second event arrived: {buf:?}");
    assert!(
        cut,
        "the stream must end with an error, not a clean end: {buf:?}"
    );
    assert!(
        ended >= Duration::from_millis(400) && ended < Duration::from_millis(2000),
        "ended after {ended:?}"
    );
    eventually(
        Duration::from_millis(2500),
        "upstream stream dropped",
        || async { (backend.aborted_streams() == 1).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_the_server_stream() {
    let (_cp, dp, backend) = setup("dp-mcp-pass-3", &[]).await;
    let resp = request(&dp, reqwest::Method::GET, "/sse?n=1000&interval_ms=50")
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("stream");
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.expect("first event").expect("chunk");
    assert!(String::from_utf8_lossy(&first).contains("data:"));
    assert_eq!(backend.aborted_streams(), 0);
    drop(stream);
    eventually(
        Duration::from_secs(5),
        "server stream cancelled",
        || async { (backend.aborted_streams() == 1).then_some(()) },
    )
    .await;
}
