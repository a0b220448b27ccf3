//! Shipping access-log records to the control plane: `AccessLogIngest.Ship`, one unary
//! call per batch, over the config stream's endpoint with the same enrolment token.
//!
//! The batch goes as the bytes the workers encoded ([`crate::access_log`]), without a
//! copy: the request body ([`Frames`]) is the gRPC message prefix followed by the queued
//! chunks themselves (shared `Bytes`), so shipping neither decodes, clones, re-encodes nor
//! copies records (a codec would copy every batch into its buffer: ~0.2k instructions per
//! record, bench/README.md finding 9). The call is made on the channel as HTTP/2 (what
//! tonic's unary call does: `POST`, `application/grpc`, `te: trailers`, `grpc-timeout`);
//! its outcome is the `grpc-status` of the response's trailers (or of its headers, for a
//! trailers-only answer); the reply message is read and not needed.
//!
//! The channel is lazy (connected on first use, reconnected by tonic after a failure),
//! balanced over every control plane given (one that is down is skipped), and
//! every call has [`SHIP_TIMEOUT`], so a control plane that hangs cannot hold a batch
//! forever; [`access_log::Shipper`] keeps an unacknowledged batch and retries it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, TE};
use http::{HeaderValue, Request};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use tonic::Status;
use tower_service::Service as _;

use super::ControlPlane;
use crate::access_log::{Pipeline, Shipper};

/// Longest one `Ship` call may take.
pub const SHIP_TIMEOUT: Duration = Duration::from_secs(10);

const SHIP_PATH: &str = "/portcullis.v1.AccessLogIngest/Ship";

impl ControlPlane {
    /// Ships `pipeline`'s control-plane queue forever (spawn it on the process runtime).
    pub fn ship_access_logs(&self, pipeline: &Pipeline) -> impl Future<Output = ()> + use<> {
        let channel = match self.endpoints.as_slice() {
            [one] => one.connect_lazy(),
            several => tonic::transport::Channel::balance_list(several.iter().cloned()),
        };
        // The enrolment token, as tonic sends it (valid as a header value: it is one).
        let mut authorization = HeaderValue::from_bytes(self.authorization.as_encoded_bytes())
            .unwrap_or(HeaderValue::from_static(""));
        authorization.set_sensitive(true);
        let send = move |batch: Vec<Bytes>| {
            let mut channel = channel.clone();
            let authorization = authorization.clone();
            async move {
                let call = async {
                    let request = Request::post(SHIP_PATH)
                        .header(CONTENT_TYPE, "application/grpc")
                        .header(TE, "trailers")
                        .header("grpc-timeout", grpc_timeout(SHIP_TIMEOUT))
                        .header(AUTHORIZATION, authorization)
                        .body(tonic::body::Body::new(Frames::message(batch)?))
                        .map_err(|e| e.to_string())?;
                    std::future::poll_fn(|cx| channel.poll_ready(cx))
                        .await
                        .map_err(|e| format!("unavailable: {e}"))?;
                    let response = channel
                        .call(request)
                        .await
                        .map_err(|e| format!("unavailable: {e}"))?;
                    outcome(response).await
                };
                tokio::time::timeout(SHIP_TIMEOUT, call)
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {SHIP_TIMEOUT:?}")))
            }
        };
        Shipper::new(pipeline, send).run()
    }
}

/// The gRPC outcome of a unary call's response: `Ok` for status OK (after reading the
/// reply), else the status's code and message.
async fn outcome(response: http::Response<tonic::body::Body>) -> Result<(), String> {
    let failed = |status: Status| Err(format!("{}: {}", status.code(), status.message()));
    if !response.status().is_success() {
        return Err(format!("HTTP status {}", response.status()));
    }
    let (parts, body) = response.into_parts();
    // A trailers-only answer carries its status in the headers.
    if let Some(status) = Status::from_header_map(&parts.headers) {
        return match status.code() {
            tonic::Code::Ok => Ok(()),
            _ => failed(status),
        };
    }
    let collected = body
        .collect()
        .await
        .map_err(|e| format!("reading the ship reply: {e}"))?;
    match collected.trailers().and_then(Status::from_header_map) {
        Some(status) if status.code() == tonic::Code::Ok => Ok(()),
        Some(status) => failed(status),
        None => Err("no grpc-status in the ship reply".into()),
    }
}

/// `grpc-timeout` for `d`, in whole milliseconds (at most 8 digits).
fn grpc_timeout(d: Duration) -> HeaderValue {
    let millis = d.as_millis().min(99_999_999);
    HeaderValue::try_from(format!("{millis}m")).unwrap_or(HeaderValue::from_static("10S"))
}

/// A request body of `Bytes` frames sent as they are: one gRPC message (its 5-byte
/// prefix, then the encoded `AccessLogBatch` as the parts that concatenate to it).
#[derive(Debug)]
struct Frames {
    frames: VecDeque<Bytes>,
    left: u64,
}

impl Frames {
    /// The uncompressed gRPC message of `parts`; `Err` past gRPC's 4 GiB message bound.
    fn message(parts: Vec<Bytes>) -> Result<Self, String> {
        let len: usize = parts.iter().map(Bytes::len).sum();
        let len = u32::try_from(len).map_err(|_| format!("batch of {len} bytes too large"))?;
        let mut prefix = [0u8; 5];
        prefix[1..].copy_from_slice(&len.to_be_bytes());
        let mut frames = VecDeque::with_capacity(parts.len() + 1);
        frames.push_back(Bytes::copy_from_slice(&prefix));
        frames.extend(parts.into_iter().filter(|p| !p.is_empty()));
        Ok(Self {
            frames,
            left: u64::from(len) + 5,
        })
    }
}

impl Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = self.frames.pop_front();
        if let Some(frame) = &frame {
            self.left -= frame.len() as u64;
        }
        Poll::Ready(frame.map(|data| Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body is one gRPC message: the prefix with the length of the parts, then the
    /// parts as they are (the same `Bytes`, not copies).
    #[tokio::test]
    async fn the_body_is_the_parts_behind_a_grpc_prefix() {
        let parts = vec![
            Bytes::from_static(b"abc"),
            Bytes::new(),
            Bytes::from(vec![7u8; 300]),
        ];
        let shared = parts[2].as_ptr();
        let mut body = Frames::message(parts).expect("small");
        assert_eq!(body.size_hint().exact(), Some(5 + 303));
        let mut frames = Vec::new();
        while let Some(frame) = body.frame().await {
            frames.push(frame.expect("infallible").into_data().expect("data"));
        }
        assert_eq!(frames[0].as_ref(), &[0, 0, 0, 1, 47]);
        assert_eq!(frames[1].as_ref(), b"abc");
        assert_eq!(frames[2].as_ptr(), shared, "not copied");
        assert_eq!(frames.len(), 3);
        assert!(body.is_end_stream());
        assert_eq!(grpc_timeout(SHIP_TIMEOUT), "10000m");
    }
}
