//! Request limits and the answers to clients that exceed them or send broken bodies, over
//! real sockets: a hyper backend that records what reached it, the data plane's HTTP
//! listener (HTTP/1.1 and h2c) on 127.0.0.1:0, config injected straight into the store.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis_data_plane::config::Snapshot;
use portcullis_data_plane::request::PublicPorts;
use portcullis_data_plane::server;
use portcullis_data_plane::store::ConfigStore;
use portcullis_data_plane::upstream::ClientCache;
use portcullis_proto::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What reached the backend.
#[derive(Default)]
struct Seen {
    /// Request heads.
    requests: AtomicUsize,
    /// Request bodies read to their end.
    complete_bodies: AtomicUsize,
}

/// A backend that reads every request body to its end and answers with its length.
async fn start_backend() -> Result<(SocketAddr, Arc<Seen>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let seen = Arc::new(Seen::default());
    let counters = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = counters.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    async move {
                        seen.requests.fetch_add(1, Ordering::SeqCst);
                        let body = req.into_body().collect().await;
                        let answer = match body {
                            Ok(body) => {
                                seen.complete_bodies.fetch_add(1, Ordering::SeqCst);
                                body.to_bytes().len().to_string()
                            }
                            Err(_) => "broken".to_owned(),
                        };
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(answer))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((addr, seen))
}

fn proxy(host: &str, backend: SocketAddr) -> pb::ProxyTarget {
    pb::ProxyTarget {
        hostname: host.into(),
        target_url: format!("http://{backend}"),
        enabled: true,
        enable_http: true,
        ..Default::default()
    }
}

/// Serves `proxies` on a fresh HTTP listener; returns its address.
async fn start_proxy(proxies: Vec<pb::ProxyTarget>) -> Result<SocketAddr> {
    let snapshot = pb::ConfigSnapshot {
        version: 1,
        proxies,
        ..Default::default()
    };
    let clients = ClientCache::with_roots(rustls::RootCertStore::empty());
    let store = Arc::new(ConfigStore::default());
    let _ = store.publish(Arc::new(Snapshot::compile(&snapshot, &clients)?));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(server::serve_http(listener, store, PublicPorts::default()));
    Ok(addr)
}

/// Writes `request` on a new connection and reads until the peer closes or 2 s pass;
/// returns what came back.
async fn raw(proxy: SocketAddr, request: &[u8]) -> Result<String> {
    let mut stream = TcpStream::connect(proxy).await?;
    stream.write_all(request).await?;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut answer)).await;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// `GET /` on `host` with one header `x-big` of `size` bytes, as HTTP/1.1.
fn big_head(host: &str, size: usize) -> Vec<u8> {
    let value = "a".repeat(size);
    format!("GET / HTTP/1.1\r\nHost: {host}\r\nx-big: {value}\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

#[tokio::test]
async fn a_request_head_over_64_kib_is_431_and_never_forwarded() -> Result<()> {
    let (backend, seen) = start_backend().await?;
    let proxy = start_proxy(vec![self::proxy("app.test", backend)]).await?;

    let answer = raw(proxy, &big_head("app.test", 60 * 1024)).await?;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1);

    let answer = raw(proxy, &big_head("app.test", 70 * 1024)).await?;
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        1,
        "the backend got it"
    );
    Ok(())
}

/// HTTP/2 has the same limit on the header list (hyper's own default is 16 KiB): the
/// peer is told in SETTINGS, and a larger list is answered 431 by the HTTP/2 layer.
#[tokio::test]
async fn http2_has_the_same_head_limit() -> Result<()> {
    let (backend, seen) = start_backend().await?;
    let proxy = start_proxy(vec![self::proxy("app.test", backend)]).await?;
    let stream = TcpStream::connect(proxy).await?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let get = |size: usize| {
        Request::get("http://app.test/")
            .header("x-big", "a".repeat(size))
            .body(Full::<Bytes>::default())
    };
    let response = sender.send_request(get(32 * 1024)?).await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1);
    let response = sender.send_request(get(100 * 1024)?).await?;
    assert_eq!(
        response.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        1,
        "the backend got it"
    );
    Ok(())
}

/// A broken chunked body is the client's fault: 400, not 502 "upstream request failed".
#[tokio::test]
async fn a_malformed_chunked_body_is_400() -> Result<()> {
    let (backend, seen) = start_backend().await?;
    let proxy = start_proxy(vec![self::proxy("app.test", backend)]).await?;
    let answer = raw(
        proxy,
        b"POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\nzz-not-a-size\r\n\r\n",
    )
    .await?;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(seen.complete_bodies.load(Ordering::SeqCst), 0);
    Ok(())
}

/// A client that falls silent mid-body for longer than the idle timeout is answered 408
/// (its fault), not 502.
#[tokio::test]
async fn a_stalled_request_body_is_408() -> Result<()> {
    let (backend, seen) = start_backend().await?;
    let quick = pb::ProxyTarget {
        idle_timeout_ms: 300,
        ..proxy("quick.test", backend)
    };
    let proxy = start_proxy(vec![quick]).await?;
    let mut stream = TcpStream::connect(proxy).await?;
    stream
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: quick.test\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n",
        )
        .await?;
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut answer)).await??;
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(seen.complete_bodies.load(Ordering::SeqCst), 0);
    Ok(())
}

/// `max_request_body_bytes`: a declared larger body is answered 413 without contacting
/// the upstream; a chunked one is cut once it grows past the limit (413, the upstream
/// never gets a complete body); one within the limit passes.
#[tokio::test]
async fn request_bodies_over_the_proxy_limit_are_413() -> Result<()> {
    let (backend, seen) = start_backend().await?;
    let small = pb::ProxyTarget {
        max_request_body_bytes: 1024,
        ..proxy("small.test", backend)
    };
    let proxy = start_proxy(vec![small, self::proxy("open.test", backend)]).await?;
    let post = |host: &str, size: usize| {
        let mut request = format!(
            "POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: {size}\r\n\
             Connection: close\r\n\r\n"
        )
        .into_bytes();
        request.extend(std::iter::repeat_n(b'x', size));
        request
    };

    let answer = raw(proxy, &post("small.test", 4096)).await?;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        0,
        "the backend got it"
    );

    let answer = raw(proxy, &post("small.test", 1024)).await?;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n1024"), "{answer}");
    let answer = raw(proxy, &post("open.test", 4096)).await?;
    assert!(
        answer.ends_with("\r\n\r\n4096"),
        "no limit by default: {answer}"
    );
    let complete = seen.complete_bodies.load(Ordering::SeqCst);
    assert_eq!(complete, 2);

    // Chunked: 600 bytes pass, the next 600 cross the limit.
    let mut stream = TcpStream::connect(proxy).await?;
    stream
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: small.test\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .await?;
    let chunk = format!("258\r\n{}\r\n", "y".repeat(600));
    stream.write_all(chunk.as_bytes()).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.write_all(chunk.as_bytes()).await?;
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut answer)).await??;
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(seen.complete_bodies.load(Ordering::SeqCst), complete);
    Ok(())
}

/// Runs `curl` (blocking, off the runtime) and returns (exit code, stdout, stderr).
async fn curl(args: Vec<String>) -> Result<(i32, String, String)> {
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(&args)
            .output()
            .context("running curl (tests need it installed)")
    })
    .await??;
    Ok((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// A proxy that refuses requests without a bearer token (401), before reading the body.
fn protected(host: &str, backend: SocketAddr) -> pb::ProxyTarget {
    pb::ProxyTarget {
        auth: Some(pb::ProxyAuthPolicy {
            enabled: true,
            mode: "forward".into(),
            auth_host: "auth.test".into(),
            ..Default::default()
        }),
        ..proxy(host, backend)
    }
}

/// An answer sent before the request body was read (here edge auth's 401) ends the
/// HTTP/2 stream cleanly once a small body has arrived: no `RST_STREAM`, which curl 7.88
/// reports as an error ("stream was not closed cleanly", exit 92) for most such POSTs.
#[tokio::test]
async fn http2_early_answers_to_posts_end_the_stream_cleanly() -> Result<()> {
    let (backend, seen) = start_backend().await?;
    let proxy = start_proxy(vec![protected("locked.test", backend)]).await?;
    let body = tempfile::NamedTempFile::new()?;
    std::fs::write(body.path(), vec![b'x'; 40 * 1024])?;
    let port = proxy.port();
    for round in 0..5 {
        let (code, out, err) = curl(vec![
            "-sS".into(),
            "--http2-prior-knowledge".into(),
            "--resolve".into(),
            format!("locked.test:{port}:127.0.0.1"),
            "-o".into(),
            "/dev/null".into(),
            "-w".into(),
            "%{http_code} %{http_version}".into(),
            "--data-binary".into(),
            format!("@{}", body.path().display()),
            format!("http://locked.test:{port}/mcp"),
        ])
        .await?;
        assert_eq!(
            (code, out.as_str()),
            (0, "401 2"),
            "round {round}: curl said {err}"
        );
    }
    assert_eq!(seen.requests.load(Ordering::SeqCst), 0);
    Ok(())
}

/// An HTTP/1.1 request answered before its (small) body was read keeps its connection:
/// the body is drained, not left for hyper to close the connection over.
#[tokio::test]
async fn http1_early_answers_keep_the_connection() -> Result<()> {
    let (backend, _seen) = start_backend().await?;
    let proxy = start_proxy(vec![protected("locked.test", backend)]).await?;
    let mut stream = TcpStream::connect(proxy).await?;
    let body = "z".repeat(20 * 1024);
    let post = format!(
        "POST /x HTTP/1.1\r\nHost: locked.test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    for round in 0..2 {
        stream.write_all(post.as_bytes()).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        stream.write_all(body.as_bytes()).await?;
        let mut answer = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut answer)).await??;
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(
            answer.starts_with("HTTP/1.1 401"),
            "round {round}: {answer}"
        );
        assert!(
            !answer.contains("connection: close"),
            "round {round}: {answer}"
        );
    }
    Ok(())
}
