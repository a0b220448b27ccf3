//! Idle HTTP/1.1 connections (plain and HTTPS) are parked (hyper and its buffers
//! dropped, the socket kept) and woken by their next request, against real sockets.
//! One test in its own binary: [`server::parked_connections`] counts process-wide.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use portcullis_data_plane::config::Snapshot;
use portcullis_data_plane::request::PublicPorts;
use portcullis_data_plane::server;
use portcullis_data_plane::store::ConfigStore;
use portcullis_data_plane::upstream::ClientCache;
use portcullis_proto::v1 as pb;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Answers with the path, after reading the whole request body; `/ws` upgrades and echoes.
async fn backend(mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/ws" {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let (mut r, mut w) = tokio::io::split(TokioIo::new(up));
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let mut r = Response::new(Full::default());
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut()
            .insert("connection", http::HeaderValue::from_static("upgrade"));
        r.headers_mut()
            .insert("upgrade", http::HeaderValue::from_static("websocket"));
        return Ok(r);
    }
    let path = req.uri().path().to_owned();
    let body = req.into_body().collect().await.map(|b| b.to_bytes().len());
    let text = format!("path={path} body={}", body.unwrap_or(0));
    Ok(Response::new(Full::new(Bytes::from(text))))
}

/// An upstream that answers as soon as it has a request head, then reads the rest of the
/// request body: the response is over before the body is.
async fn early_answering_upstream() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nearly";
                if s.write_all(answer).await.is_err() {
                    return;
                }
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// The proxy's plain and HTTPS addresses, and the certificate clients must trust.
/// `app.test` goes to [`backend`], `early.test` to [`early_answering_upstream`].
/// Whether HTTP/1.1 requests, plain and TLS, take the fast path (`parking_fast.rs` runs
/// this file again with it on).
#[allow(dead_code)]
const FAST_PATH: bool = false;

async fn start() -> Result<(SocketAddr, SocketAddr, CertificateDer<'static>)> {
    server::set_h1_fast_path(crate::FAST_PATH);
    let backend_listener = TcpListener::bind("127.0.0.1:0").await?;
    let backend_addr = backend_listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = backend_listener.accept().await {
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(backend))
                    .with_upgrades(),
            );
        }
    });
    let early_addr = early_answering_upstream().await?;
    let cert = rcgen::generate_simple_self_signed(vec!["app.test".to_owned()])?;
    let snapshot = pb::ConfigSnapshot {
        version: 1,
        proxies: vec![
            pb::ProxyTarget {
                hostname: "app.test".into(),
                target_url: format!("http://{backend_addr}"),
                enabled: true,
                enable_http: true,
                enable_https: true,
                certificate_name: "app".into(),
                ..Default::default()
            },
            pb::ProxyTarget {
                hostname: "early.test".into(),
                target_url: format!("http://{early_addr}"),
                enabled: true,
                enable_http: true,
                ..Default::default()
            },
        ],
        certificates: vec![pb::TlsCertificate {
            name: "app".into(),
            domains: vec!["app.test".into()],
            cert_chain_pem: cert.cert.pem(),
            private_key_pem: cert.signing_key.serialize_pem(),
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
    let tls_listener = TcpListener::bind("127.0.0.1:0").await?;
    let tls_addr = tls_listener.local_addr()?;
    let config = server::tls_config(store.clone())?;
    tokio::spawn(server::serve_https(tls_listener, store, config, 443));
    Ok((addr, tls_addr, cert.cert.der().clone()))
}

/// A TLS connection to `addr` for `app.test`, offering `alpn`.
async fn tls_connect(
    addr: SocketAddr,
    trusted: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone())?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("app.test")?;
    Ok(TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?)
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n\r\n")
}

/// Reads one response with a `content-length` body; returns head and body.
async fn response<S: AsyncRead + Unpin>(stream: &mut S) -> Result<(String, String)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            bail!("closed after {:?}", String::from_utf8_lossy(&buf));
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    Ok((head, String::from_utf8_lossy(&body).into_owned()))
}

/// Waits (up to 2 s) until `want` connections are parked.
async fn parked(want: usize) -> Result<()> {
    for _ in 0..200 {
        if server::parked_connections() == want {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!(
        "{} parked connections, expected {want}",
        server::parked_connections()
    )
}

#[tokio::test]
async fn idle_connections_park_and_wake_with_their_next_request() -> Result<()> {
    let (proxy, tls_proxy, cert) = start().await?;
    assert_eq!(server::parked_connections(), 0);

    // Keep-alive: parked between requests, served again when the next one arrives.
    let mut a = TcpStream::connect(proxy).await?;
    a.write_all(get("/one").as_bytes()).await?;
    let (head, body) = response(&mut a).await?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "path=/one body=0");
    parked(1).await?;
    a.write_all(get("/two").as_bytes()).await?;
    assert_eq!(response(&mut a).await?.1, "path=/two body=0");
    parked(1).await?;

    // The start of a pipelined request survives parking and is completed after it.
    let mut b = TcpStream::connect(proxy).await?;
    let next = get("/three");
    let (start, rest) = next.split_at(10);
    b.write_all(format!("{}{start}", get("/pipelined")).as_bytes())
        .await?;
    assert_eq!(response(&mut b).await?.1, "path=/pipelined body=0");
    parked(2).await?;
    b.write_all(rest.as_bytes()).await?;
    assert_eq!(response(&mut b).await?.1, "path=/three body=0");
    parked(2).await?;

    // A request body (read to its end by the upstream) does not keep it from parking.
    let post = "POST /up HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhello";
    b.write_all(post.as_bytes()).await?;
    assert_eq!(response(&mut b).await?.1, "path=/up body=5");
    parked(2).await?;

    // A request body left unread (the proxy answers without forwarding it) is drained
    // in the background (small, and within a second): the connection is not parked
    // meanwhile, body bytes are never taken for the next request, and the request after
    // the body is served on the same connection.
    let mut c = TcpStream::connect(proxy).await?;
    c.write_all(b"POST /x HTTP/1.1\r\nHost: nowhere.test\r\nContent-Length: 10\r\n\r\nhel")
        .await?;
    let (head, _) = response(&mut c).await?;
    assert!(!head.starts_with("HTTP/1.1 2"), "{head}");
    // Past PARK_AFTER (50 ms), well inside the proxy's 1 s drain window: a loaded host
    // once took the rest of the second between this sleep and the write below.
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(server::parked_connections(), 2, "parked with a body unread");
    c.write_all(format!("lo12345{}", get("/after")).as_bytes())
        .await?;
    let (head, body) = response(&mut c).await?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "path=/after body=0", "body bytes parsed as a request");
    parked(3).await?;
    drop(c);
    parked(2).await?;

    // An upgraded connection is never parked.
    let mut ws = TcpStream::connect(proxy).await?;
    ws.write_all(
        b"GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await?;
    let (head, _) = response(&mut ws).await?;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server::parked_connections(), 2);
    ws.write_all(b"ping").await?;
    let mut echo = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(2), ws.read_exact(&mut echo)).await??;
    assert_eq!(&echo, b"ping");

    // A parked connection the client closes is gone.
    drop(a);
    parked(1).await?;
    drop(b);
    parked(0).await?;

    // HTTPS: parked the same way, with ALPN http/1.1 and with no ALPN (detected).
    for alpn in [&[&b"http/1.1"[..]][..], &[]] {
        let mut t = tls_connect(tls_proxy, &cert, alpn).await?;
        for path in ["/tls-one", "/tls-two"] {
            t.write_all(get(path).as_bytes()).await?;
            assert_eq!(response(&mut t).await?.1, format!("path={path} body=0"));
            parked(1).await?;
        }
        drop(t);
        parked(0).await?;
    }

    // A response over before its request body (the upstream answered early): the body
    // ends in the task that forwards it, which must wake the connection's driver, or the
    // connection would be neither parked nor ever timed out.
    let mut e = TcpStream::connect(proxy).await?;
    e.write_all(
        b"POST /early HTTP/1.1\r\nHost: early.test\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\n12345\r\n",
    )
    .await?;
    assert_eq!(response(&mut e).await?.1, "early");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server::parked_connections(), 0, "its request body is open");
    e.write_all(b"5\r\n67890\r\n0\r\n\r\n").await?;
    parked(1).await?;
    drop(e);
    parked(0).await?;

    // The 30 s for a request head run from the end of the last response, across
    // parking: a head started after 20 s parked is cut off 10 s later, not 30.
    let mut d = TcpStream::connect(proxy).await?;
    d.write_all(get("/last").as_bytes()).await?;
    response(&mut d).await?;
    let idle_from = tokio::time::Instant::now();
    parked(1).await?;
    // (The parked count is not looked at from here on.)
    let trickled = tokio::spawn(trickled_head(proxy));
    tokio::time::sleep(Duration::from_secs(20)).await;
    d.write_all(b"GET /never-finished HTTP/1.1\r\nHost: app.te")
        .await?;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(25), d.read_to_end(&mut rest)).await;
    let closed_after = idle_from.elapsed();
    assert!(
        matches!(read, Ok(Ok(0))),
        "not closed with nothing sent: {read:?} {rest:?}"
    );
    assert!(
        (Duration::from_secs(29)..Duration::from_secs(32)).contains(&closed_after),
        "closed {closed_after:?} after the last response"
    );
    trickled.await?
}

/// A head sent a byte every 20 ms from right after a response keeps its connection busy
/// (hyper keeps reading), so it is not parked, and hyper itself has no head timer: it is
/// cut off 30 s after that response all the same, with nothing sent.
async fn trickled_head(proxy: SocketAddr) -> Result<()> {
    let mut s = TcpStream::connect(proxy).await?;
    s.write_all(get("/first").as_bytes()).await?;
    response(&mut s).await?;
    let from = tokio::time::Instant::now();
    let (mut r, mut w) = s.into_split();
    let head = b"GET /trickled HTTP/1.1\r\nHost: app.test\r\nX-Slow: ";
    tokio::spawn(async move {
        for byte in head.iter().chain(std::iter::repeat(&b'a')) {
            if w.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(40), r.read_to_end(&mut rest)).await;
    let closed_after = from.elapsed();
    let closed = match &read {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Err(_elapsed) => false,
    };
    assert!(
        closed && rest.is_empty(),
        "not closed silently: {read:?} {rest:?}"
    );
    assert!(
        (Duration::from_secs(29)..Duration::from_secs(32)).contains(&closed_after),
        "closed {closed_after:?} after the last response"
    );
    Ok(())
}
