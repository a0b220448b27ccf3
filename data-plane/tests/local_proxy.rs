//! The proxy against real local sockets: a hyper backend on 127.0.0.1:0, the data
//! plane's HTTP listener on 127.0.0.1:0, config injected straight into the store.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis_data_plane::config::Snapshot;
use portcullis_data_plane::request::PublicPorts;
use portcullis_data_plane::store::ConfigStore;
use portcullis_data_plane::upstream::ClientCache;
use portcullis_data_plane::{admin, server};
use portcullis_proto::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Body = BoxBody<Bytes, hyper::Error>;

fn text(s: impl Into<Bytes>) -> Response<Body> {
    Response::new(Full::new(s.into()).map_err(|n| match n {}).boxed())
}

async fn backend(mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    Ok(match req.uri().path() {
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            text("slow")
        }
        "/upload" => {
            let mut body = req.into_body();
            let mut n = 0usize;
            while let Some(Ok(frame)) = body.frame().await {
                n += frame.data_ref().map_or(0, Bytes::len);
            }
            text(n.to_string())
        }
        "/sse" => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, hyper::Error>>(1);
            tokio::spawn(async move {
                let _ = tx.send(Ok(Frame::data(Bytes::from("data: 1\n\n")))).await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
            let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
            let mut r = Response::new(BodyExt::boxed(body));
            r.headers_mut().insert(
                "content-type",
                "text/event-stream"
                    .parse()
                    .unwrap_or_else(|_| unreachable!()),
            );
            r
        }
        "/ws" => {
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on.await {
                    let (mut r, mut w) = tokio::io::split(TokioIo::new(up));
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
            let mut r = text(Bytes::new());
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut().insert(
                "connection",
                "upgrade".parse().unwrap_or_else(|_| unreachable!()),
            );
            r.headers_mut().insert(
                "upgrade",
                "websocket".parse().unwrap_or_else(|_| unreachable!()),
            );
            r
        }
        _ => {
            let mut lines = vec![format!("uri={}", req.uri())];
            for (k, v) in req.headers() {
                lines.push(format!("{k}={}", v.to_str().unwrap_or("?")));
            }
            let mut r = text(lines.join("\n"));
            r.headers_mut().insert(
                "connection",
                "x-hop".parse().unwrap_or_else(|_| unreachable!()),
            );
            r.headers_mut()
                .insert("x-hop", "1".parse().unwrap_or_else(|_| unreachable!()));
            r
        }
    })
}

async fn start_backend() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(backend))
                    .with_upgrades();
                let _ = conn.await;
            });
        }
    });
    Ok(addr)
}

fn proxy(host: &str, target: String) -> pb::ProxyTarget {
    pb::ProxyTarget {
        hostname: host.into(),
        target_url: target,
        enabled: true,
        enable_http: true,
        ..Default::default()
    }
}

/// Starts the proxy and admin listeners; returns (proxy, admin) addresses.
async fn start_proxy(backend: SocketAddr) -> Result<(SocketAddr, SocketAddr)> {
    let closed = TcpListener::bind("127.0.0.1:0").await?.local_addr()?; // dropped: refuses
    let mut app = proxy("app.test", format!("http://{backend}/base"));
    app.custom_request_headers = HashMap::from([("x-added".into(), "yes".into())]);
    app.custom_response_headers = HashMap::from([("x-resp".into(), "r".into())]);
    let mut slow = proxy("*.slow.test", format!("http://{backend}"));
    slow.read_timeout_ms = 300;
    let mut keep = proxy("keep.test", format!("http://{backend}"));
    keep.preserve_host_header = true;
    let route = pb::Route {
        id: "raw".into(),
        priority: 1,
        match_kind: pb::PathMatchKind::Prefix as i32,
        path_pattern: "/raw".into(),
        target_kind: pb::RouteTargetKind::Service as i32,
        target_value: "svc".into(),
        proxy_hostnames: vec!["app.test".into()],
        enabled: true,
        ..Default::default()
    };
    let snapshot = pb::ConfigSnapshot {
        version: 1,
        proxies: vec![
            app,
            slow,
            keep,
            proxy("dead.test", format!("http://{closed}")),
        ],
        routes: vec![route],
        services: vec![pb::ExternalService {
            name: "svc".into(),
            target_url: format!("http://{backend}"),
            ..Default::default()
        }],
        ..Default::default()
    };
    let clients = ClientCache::with_roots(rustls::RootCertStore::empty());
    let store = Arc::new(ConfigStore::default());
    let _ = store.publish(Arc::new(Snapshot::compile(&snapshot, &clients)?));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(server::serve_http(
        listener,
        store.clone(),
        PublicPorts::default(),
    ));
    let admin_listener = TcpListener::bind("127.0.0.1:0").await?;
    let admin_addr = admin_listener.local_addr()?;
    tokio::spawn(admin::serve_admin(admin_listener, store));
    Ok((addr, admin_addr))
}

async fn get(
    proxy: SocketAddr,
    host: &str,
    path: &str,
) -> Result<(StatusCode, http::HeaderMap, String)> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::get(format!("http://{proxy}{path}"))
        .header("host", host)
        .header("x-forwarded-for", "6.6.6.6")
        .header("forwarded", "for=6.6.6.6")
        .header("connection", "x-drop")
        .header("x-drop", "1")
        .body(Full::default())?;
    let resp = client.request(req).await?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok((
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

#[tokio::test]
async fn proxies_rewrites_and_maps_errors() -> Result<()> {
    let backend = start_backend().await?;
    let (proxy, admin) = start_proxy(backend).await?;

    let (status, headers, body) = get(proxy, "App.Test:1234", "/x?y=1").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("uri=/base/x?y=1"), "{body}");
    assert!(body.contains(&format!("host={backend}")), "{body}");
    assert!(body.contains("x-forwarded-for=127.0.0.1\n"), "{body}");
    assert!(body.contains("x-real-ip=127.0.0.1"), "{body}");
    assert!(body.contains("x-forwarded-host=App.Test:1234"), "{body}");
    assert!(body.contains("x-forwarded-proto=http"), "{body}");
    assert!(body.contains("x-added=yes"), "{body}");
    assert!(
        !body.contains("forwarded=for") && !body.contains("x-drop"),
        "{body}"
    );
    assert_eq!(headers.get("x-resp").map(|v| v.as_bytes()), Some(&b"r"[..]));
    assert!(headers.get("x-hop").is_none());

    let (_, _, body) = get(proxy, "app.test", "/raw/1").await?;
    assert!(body.contains("uri=/raw/1"), "routed to the service: {body}");
    let (_, _, body) = get(proxy, "keep.test", "/").await?;
    assert!(body.contains("host=keep.test"), "{body}");

    let (status, _, body) = get(proxy, "nope.test", "/").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("nope.test"), "{body}");
    let (status, _, body) = get(proxy, "dead.test", "/").await?;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let (status, _, _) = get(proxy, "a.slow.test", "/slow").await?;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);

    let (status, _, body) = get(admin, "x", "/readyz").await?;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "ready version=1\n")
    );
    Ok(())
}

/// POSTs `chunks` to `/upload` on `host`, one every `gap`, as a streamed body; returns the
/// status and the backend's answer (the number of bytes it received).
async fn upload(
    proxy: SocketAddr,
    host: &str,
    chunks: Vec<Bytes>,
    gap: Duration,
) -> Result<(StatusCode, Bytes)> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
    tokio::spawn(async move {
        for chunk in chunks {
            if !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            if tx.send(Ok(Frame::data(chunk))).await.is_err() {
                return;
            }
        }
    });
    let client = Client::builder(TokioExecutor::new())
        .build_http::<StreamBody<tokio_stream::wrappers::ReceiverStream<Result<Frame<Bytes>, Infallible>>>>();
    let req = Request::post(format!("http://{proxy}/upload"))
        .header("host", host)
        .body(StreamBody::new(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))?;
    let response = client.request(req).await?;
    let status = response.status();
    Ok((status, response.into_body().collect().await?.to_bytes()))
}

#[tokio::test]
async fn streams_bodies_both_ways() -> Result<()> {
    let backend = start_backend().await?;
    let (proxy, _) = start_proxy(backend).await?;

    // Upload: 32 MiB in 64 KiB chunks, streamed.
    let chunk = Bytes::from(vec![7u8; 64 * 1024]);
    let (status, body) = upload(proxy, "keep.test", vec![chunk; 512], Duration::ZERO).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], (32 * 1024 * 1024).to_string().as_bytes());

    // An empty upload (`Content-Length: 0`) reaches the upstream as an ended body.
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::post(format!("http://{proxy}/upload"))
        .header("host", "keep.test")
        .header("content-length", "0")
        .body(Full::default())?;
    let response = client.request(req).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"0"[..]));

    // SSE: the first event arrives while the upstream keeps the stream open.
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::get(format!("http://{proxy}/sse"))
        .header("host", "keep.test")
        .body(Full::default())?;
    let mut body = client.request(req).await?.into_body();
    let first = tokio::time::timeout(Duration::from_secs(2), body.frame())
        .await
        .context("first event not delivered promptly")?;
    match first {
        Some(Ok(frame)) => assert_eq!(frame.data_ref().map(|b| &b[..]), Some(&b"data: 1\n\n"[..])),
        other => bail!("unexpected {other:?}"),
    }
    Ok(())
}

/// The read timeout bounds the wait for the response head, but restarts while the
/// upstream keeps taking request body: an upload slower than the timeout still works.
#[tokio::test]
async fn a_slow_upload_outlives_the_read_timeout() -> Result<()> {
    let backend = start_backend().await?;
    let (proxy, _) = start_proxy(backend).await?;

    // a.slow.test has a 300 ms read timeout; the body takes ~1.2 s to arrive.
    let started = std::time::Instant::now();
    let chunks = vec![Bytes::from_static(b"0123456789"); 12];
    let (status, body) = upload(proxy, "a.slow.test", chunks, Duration::from_millis(100)).await?;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"120"[..]));
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "the body was meant to take longer than three read timeouts"
    );
    Ok(())
}

async fn raw_exchange(proxy: SocketAddr, request: &str) -> Result<(TcpStream, String)> {
    let mut stream = TcpStream::connect(proxy).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    Ok((stream, String::from_utf8_lossy(&head).into_owned()))
}

#[tokio::test]
async fn relays_websocket_upgrades_and_rejects_missing_host() -> Result<()> {
    let backend = start_backend().await?;
    let (proxy, _) = start_proxy(backend).await?;

    let (mut ws, head) = raw_exchange(
        proxy,
        "GET /ws HTTP/1.1\r\nHost: keep.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await?;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    ws.write_all(b"ping").await?;
    let mut echo = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(2), ws.read_exact(&mut echo)).await??;
    assert_eq!(&echo, b"ping");

    let (_, head) = raw_exchange(proxy, "GET / HTTP/1.1\r\n\r\n").await?;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    Ok(())
}

#[tokio::test]
async fn serves_h2c_with_authority() -> Result<()> {
    let backend = start_backend().await?;
    let (proxy, _) = start_proxy(backend).await?;
    let stream = TcpStream::connect(proxy).await?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::get("http://app.test/h2").body(Full::<Bytes>::default())?;
    let resp = sender.send_request(req).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await?.to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("uri=/base/h2") && body.contains("x-forwarded-host=app.test"),
        "{body}"
    );
    Ok(())
}

/// An upstream whose accept queue is full never completes the TCP handshake, so the
/// connect timeout (not the read timeout) fires and maps to 504.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn connect_timeout_is_504() -> Result<()> {
    use http_body_util::Empty;
    use portcullis_data_plane::request::{self, ConnInfo, Listener};

    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind("127.0.0.1:0".parse()?)?;
    let addr = socket.local_addr()?;
    let _listener = socket.listen(0)?;
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let attempt = tokio::time::timeout(Duration::from_millis(100), TcpStream::connect(addr));
        if let Ok(Ok(stream)) = attempt.await {
            fillers.push(stream);
        }
    }
    let mut target = proxy("ct.test", format!("http://{addr}"));
    target.connect_timeout_ms = 200;
    target.read_timeout_ms = 5_000;
    let snapshot = pb::ConfigSnapshot {
        version: 1,
        proxies: vec![target],
        ..Default::default()
    };
    let store = ConfigStore::default();
    let clients = ClientCache::with_roots(rustls::RootCertStore::empty());
    let _ = store.publish(Arc::new(Snapshot::compile(&snapshot, &clients)?));
    let conn = ConnInfo::new("127.0.0.1:1".parse()?, Listener::Http { https_port: 443 });
    let req = Request::get("/")
        .header("host", "ct.test")
        .body(Empty::<Bytes>::new().map_err(|never| match never {}))?;
    let response =
        tokio::time::timeout(Duration::from_secs(3), request::handle(&store, &conn, req))
            .await
            .context("connect timeout did not fire")?;
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    Ok(())
}
