//! Streams through the data plane: WebSocket, SSE as produced, large bodies with flat memory.

use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use portcullis_tests::{Backend, ControlPlane, DataPlane, WsEcho, http_client};
use tokio_tungstenite::tungstenite::Message;

async fn sync(cp: &ControlPlane, dp: &DataPlane) {
    let v = cp.version().await;
    cp.wait_applied(&dp.node_id, v).await;
}

#[tokio::test]
async fn websocket_is_relayed_both_ways() {
    let cp = ControlPlane::start().await;
    let dp = DataPlane::start(&cp, "dp-ws").await;
    let echo = WsEcho::start().await;
    cp.cli_ok(&["proxy", "create", "ws.example.com", &echo.url]);
    sync(&cp, &dp).await;

    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut req = format!("{}/socket", dp.http.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("host", "ws.example.com".parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade through proxy");
    assert_eq!(resp.status(), 101);
    for i in 0..20 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got.into_text().unwrap().as_str(), format!("hello {i}"));
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    let got = ws.next().await.unwrap().unwrap();
    assert_eq!(got.into_data().as_ref(), &[0u8, 1, 2, 255]);
}

#[tokio::test]
async fn sse_events_arrive_one_by_one_as_produced() {
    let cp = ControlPlane::start().await;
    let dp = DataPlane::start(&cp, "dp-sse").await;
    let a = Backend::start("a").await;
    cp.cli_ok(&["proxy", "create", "sse.example.com", &a.url]);
    sync(&cp, &dp).await;

    let r = http_client()
        .get(format!("{}/sse?n=4&interval_ms=400", dp.http))
        .header("host", "sse.example.com")
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert!(r.headers().get("content-encoding").is_none());
    let start = Instant::now();
    let mut stream = r.bytes_stream();
    let mut arrivals = Vec::new();
    let mut buf = String::new();
    while let Some(chunk) = stream.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            arrivals.push((event, start.elapsed()));
        }
    }
    assert_eq!(arrivals.len(), 4, "{arrivals:?}");
    for (i, (event, at)) in arrivals.iter().enumerate() {
        assert!(event.contains(&format!("data: {{\"i\":{i}}}")), "{event}");
        // Each event arrives close to when it was produced, not all at the end.
        let produced = Duration::from_millis(400 * i as u64);
        assert!(
            *at + Duration::from_millis(50) >= produced,
            "event {i} early? {at:?}"
        );
        assert!(
            *at < produced + Duration::from_millis(300),
            "event {i} buffered: {at:?}"
        );
    }
}

#[tokio::test]
async fn large_bodies_stream_with_flat_memory() {
    const SIZE: u64 = 1 << 30; // 1 GiB each way
    let cp = ControlPlane::start().await;
    let dp = DataPlane::start(&cp, "dp-large").await;
    let a = Backend::start("a").await;
    cp.cli_ok(&["proxy", "create", "big.example.com", &a.url]);
    sync(&cp, &dp).await;
    let before = dp.peak_rss_kib();

    // Download.
    let r = dp.get("big.example.com", &format!("/bytes/{SIZE}")).await;
    assert_eq!(r.status(), 200);
    let mut got: u64 = 0;
    let mut stream = r.bytes_stream();
    while let Some(chunk) = stream.next().await {
        got += chunk.unwrap().len() as u64;
    }
    assert_eq!(got, SIZE);

    // Upload, generated on the fly.
    let chunk = bytes::Bytes::from(vec![b'u'; 256 * 1024]);
    let n = SIZE / chunk.len() as u64;
    let body =
        futures_util::stream::iter((0..n).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let r = http_client()
        .post(format!("{}/upload", dp.http))
        .header("host", "big.example.com")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["received"], SIZE);

    let after = dp.peak_rss_kib();
    assert!(
        after < before + 64 * 1024,
        "data plane memory grew from {before} KiB to {after} KiB"
    );
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_the_upstream_request() {
    let cp = ControlPlane::start().await;
    let dp = DataPlane::start(&cp, "dp-cancel").await;
    let a = Backend::start("a").await;
    cp.cli_ok(&["proxy", "create", "cancel.example.com", &a.url]);
    sync(&cp, &dp).await;

    let r = dp
        .get("cancel.example.com", "/sse?n=1000&interval_ms=50")
        .await;
    let mut stream = r.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("data:"));
    assert_eq!(a.aborted_streams(), 0);
    drop(stream);
    portcullis_tests::eventually(
        Duration::from_secs(5),
        "upstream stream cancelled",
        || async { (a.aborted_streams() == 1).then_some(()) },
    )
    .await;
}
