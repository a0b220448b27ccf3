//! One accepted connection's HTTP: HTTP/1.1, or h2c (prior knowledge) told apart by the
//! first bytes, on plain TCP or TLS; and HTTP/1.1 connections that hold no HTTP buffers
//! while idle. One file per job:
//! - [`detect`]: which protocol the first bytes speak.
//! - [`service`]: hyper serving: HTTP/2, and the request path as hyper's service, with
//!   request and response bodies that report to the connection's activity.
//! - [`activity`]: what tells the driver that hyper has nothing left to do, and the
//!   socket wrapper that records reads and writes.
//! - [`park`]: the HTTP/1.1 parking state machine (idle connections hold no hyper
//!   buffers).
//! - [`fast`]: the HTTP/1.1 fast path's connection loop (`--h1-fast-path`), which hands
//!   every request it does not take to hyper.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

use self::detect::{Preface, read_preface};
use super::{Connection, HEADER_READ_TIMEOUT};

mod activity;
mod detect;
mod fast;
mod park;
mod service;

/// How long an HTTP/1.1 connection stays with hyper once idle before it is parked.
/// Parking and waking cost a hyper connection's set-up and teardown (~3.5 µs of CPU,
/// ~10 % of the requests per second if done between every two requests of a busy
/// connection); after this long without a request that is noise, and a connection
/// idle this long is likely to stay idle much longer.
const PARK_AFTER: Duration = Duration::from_millis(50);

pub use self::fast::set_h1_fast_path;
pub use self::park::parked_connections;

/// A connection's byte stream, which parking must be able to wait on without reading.
pub(super) trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Resolves once the peer has sent something (or closed).
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_;
}

impl Transport for TcpStream {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        TcpStream::readable(self)
    }
}

impl Transport for Box<TlsStream<TcpStream>> {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        self.get_ref().0.readable()
    }
}

/// What may be spoken on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Protocols {
    /// HTTP/1.1, or HTTP/2 if the connection starts with its preface (plain HTTP, and TLS
    /// without ALPN).
    Detect,
    /// HTTP/1.1 only (TLS with ALPN `http/1.1`).
    Http1,
    /// HTTP/2 only (TLS with ALPN `h2`).
    Http2,
}

/// Serves one accepted connection until it closes.
pub(super) async fn serve<T: Transport>(
    mut stream: T,
    conn: Arc<Connection>,
    protocols: Protocols,
) {
    let deadline = Instant::now() + HEADER_READ_TIMEOUT;
    let preface = match protocols {
        Protocols::Http1 => Preface::H1(Bytes::new()),
        Protocols::Http2 => Preface::H2(Bytes::new()),
        Protocols::Detect => {
            match tokio::time::timeout_at(deadline, read_preface(&mut stream)).await {
                Ok(Ok(preface)) => preface,
                Ok(Err(error)) => {
                    tracing::debug!(peer = %conn.info.peer(), %error, "connection closed before a request");
                    return;
                }
                Err(_elapsed) => return,
            }
        }
    };
    let result = match preface {
        // Boxed, as hyper's HTTP/1 connection below: the task is as large as the largest
        // state of this future, and a parked connection should not carry room for either.
        Preface::H2(first) => Box::pin(service::serve_h2(stream, first, conn.clone())).await,
        Preface::H1(first) => park::serve_h1(stream, first, deadline, conn.clone()).await,
    };
    if let Err(error) = result {
        tracing::debug!(peer = %conn.info.peer(), %error, "connection closed with error");
    }
}
