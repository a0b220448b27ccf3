//! Real upstream servers for the tests, on loopback ports.
//!
//! `Backend` answers every request with JSON describing what it received, so tests assert on
//! what actually reached the upstream, and records the path of every request it was sent
//! ([`Backend::received`]), so tests can also assert on what never reached it. Special paths: `/sleep/{ms}`, `/bytes/{n}` (streams n
//! bytes), `/upload` (counts the body), `/sse?n=N&interval_ms=M` (event stream),
//! `/status/{code}` (that status, with a body and an `x-backend-marker` header).
//! `WsEcho` is a WebSocket echo server.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, Infallible>;

/// An HTTP/1.1 + h2c backend that reports what it received.
pub struct Backend {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// Its address.
    pub addr: SocketAddr,
    aborted: Arc<AtomicU64>,
    received: Received,
    task: tokio::task::JoinHandle<()>,
}

/// Paths (with query) of every request a [`Backend`] was sent, in arrival order.
type Received = Arc<std::sync::Mutex<Vec<String>>>;

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    /// Event streams dropped before their last event: the proxy cancelled them.
    pub fn aborted_streams(&self) -> u64 {
        self.aborted.load(Ordering::SeqCst)
    }

    /// Path and query of every request received so far, in arrival order.
    pub fn received(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Starts a backend that names itself `name` in every answer.
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let addr = listener.local_addr().expect("addr");
        let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
        let aborted = Arc::new(AtomicU64::new(0));
        let counter = aborted.clone();
        let received = Received::default();
        let log = received.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let counter = counter.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
                        log.lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(path.to_owned());
                        handle(name, counter.clone(), req)
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Self {
            url: format!("http://{addr}"),
            addr,
            aborted,
            received,
            task,
        }
    }
}

/// Counts a stream as aborted if it is dropped before it finished.
struct AbortGuard {
    done: std::sync::atomic::AtomicBool,
    counter: Arc<AtomicU64>,
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if !self.done.load(Ordering::SeqCst) {
            self.counter.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn full(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()).boxed())
        .unwrap_or_default()
}

fn query(req: &Request<Incoming>, key: &str, default: u64) -> u64 {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(default)
}

async fn handle(
    name: &'static str,
    aborted: Arc<AtomicU64>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    if let Some(ms) = path.strip_prefix("/sleep/").and_then(|s| s.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(n) = path
        .strip_prefix("/bytes/")
        .and_then(|s| s.parse::<u64>().ok())
    {
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let stream = futures_util::stream::unfold(n, move |left| {
            let chunk = chunk.clone();
            async move {
                (left > 0).then(|| {
                    let take = left.min(chunk.len() as u64);
                    (
                        Ok::<_, Infallible>(Frame::data(chunk.slice(..take as usize))),
                        left - take,
                    )
                })
            }
        });
        let resp = Response::builder()
            .header("content-type", "application/octet-stream")
            .header("content-length", n)
            .body(BodyExt::boxed(StreamBody::new(stream)))
            .unwrap_or_default();
        return Ok(resp);
    }
    if let Some(code) = path
        .strip_prefix("/status/")
        .and_then(|s| s.parse::<u16>().ok())
    {
        // An answer with this status, its own header and body, and `Allow` for 405:
        // what a proxy must pass back unchanged.
        let resp = Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .header("x-backend-marker", name)
            .header("allow", "GET, POST")
            .body(Full::new(Bytes::from(format!("{{\"status\":{code}}}"))).boxed())
            .unwrap_or_default();
        return Ok(resp);
    }
    if path == "/set-cookie" {
        // A session cookie set by the upstream (`?value=`): what a proxy passes back and
        // must never record.
        let value = req
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("value=")))
            .unwrap_or("none")
            .to_owned();
        let resp = Response::builder()
            .header("set-cookie", format!("session={value}; Path=/; HttpOnly"))
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from_static(b"cookie set")).boxed())
            .unwrap_or_default();
        return Ok(resp);
    }
    if path == "/upload" {
        let mut body = req.into_body();
        let mut received: u64 = 0;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => received += f.data_ref().map_or(0, |d| d.len() as u64),
                Err(_) => return Ok(full(400, "text/plain", "broken upload")),
            }
        }
        return Ok(full(
            200,
            "application/json",
            serde_json::json!({ "received": received }).to_string(),
        ));
    }
    if path == "/sse" {
        let n = query(&req, "n", 3);
        let interval = Duration::from_millis(query(&req, "interval_ms", 300));
        let guard = AbortGuard {
            done: false.into(),
            counter: aborted,
        };
        let stream = futures_util::stream::unfold((0u64, guard), move |(i, guard)| async move {
            if i >= n {
                guard.done.store(true, Ordering::SeqCst);
                return None;
            }
            if i > 0 {
                tokio::time::sleep(interval).await;
            }
            let ev = format!("id: {i}\nevent: tick\ndata: {{\"i\":{i}}}\n\n");
            Some((
                Ok::<_, Infallible>(Frame::data(Bytes::from(ev))),
                (i + 1, guard),
            ))
        });
        let resp = Response::builder()
            .header("content-type", "text/event-stream")
            .header("cache-control", "no-cache")
            .body(BodyExt::boxed(StreamBody::new(stream)))
            .unwrap_or_default();
        return Ok(resp);
    }
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into(),
            )
        })
        .collect();
    let body = serde_json::json!({
        "backend": name,
        "method": req.method().as_str(),
        "path": req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "version": format!("{:?}", req.version()),
        "headers": headers,
    });
    Ok(full(200, "application/json", body.to_string()))
}

/// A WebSocket echo server.
pub struct WsEcho {
    /// `http://127.0.0.1:PORT` (a proxy target URL).
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WsEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WsEcho {
    /// Starts it.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind ws");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                        return;
                    };
                    while let Some(Ok(msg)) = ws.next().await {
                        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self {
            url: format!("http://{addr}"),
            task,
        }
    }
}
