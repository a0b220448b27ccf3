//! Shipping access-log records to the control plane: `AccessLogIngest.Ship`, one unary
//! call per batch, over the config stream's endpoint with the same enrolment token.
//!
//! The batch goes as the bytes the workers encoded ([`crate::access_log`]): a codec of
//! its own ([`Encoded`]) writes them as the request message (an `AccessLogBatch` on the
//! wire), so shipping neither decodes, clones nor re-encodes records; the reply is decoded
//! with prost as usual.
//!
//! The channel is lazy (connected on first use, reconnected by tonic after a failure),
//! balanced over every control plane given (one that is down is skipped), and
//! every call has [`SHIP_TIMEOUT`], so a control plane that hangs cannot hold a batch
//! forever; [`access_log::Shipper`] keeps an unacknowledged batch and retries it.

use std::time::Duration;

use bytes::{Buf as _, BufMut as _, Bytes};
use http::uri::PathAndQuery;
use portcullis_proto::v1::AccessLogShipReply;
use prost::Message as _;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{GrpcMethod, Status};

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
        let client = tonic::client::Grpc::new(channel);
        let authorization = self.authorization.clone();
        let send = move |batch: Vec<Bytes>| {
            let mut client = client.clone();
            let mut request = tonic::Request::new(batch);
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
            request.set_timeout(SHIP_TIMEOUT);
            request
                .extensions_mut()
                .insert(GrpcMethod::new("portcullis.v1.AccessLogIngest", "Ship"));
            async move {
                let call = async {
                    client
                        .ready()
                        .await
                        .map_err(|e| Status::unavailable(e.to_string()))?;
                    client
                        .unary(request, PathAndQuery::from_static(SHIP_PATH), Encoded)
                        .await
                };
                match tokio::time::timeout(SHIP_TIMEOUT, call).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(status)) => Err(format!("{}: {}", status.code(), status.message())),
                    Err(_) => Err(format!("no answer within {SHIP_TIMEOUT:?}")),
                }
            }
        };
        Shipper::new(pipeline, send).run()
    }
}

/// Sends an encoded `AccessLogBatch`, given as parts that concatenate to it, as it is (one
/// copy, into the request's buffer); decodes the `AccessLogShipReply`.
#[derive(Clone, Copy, Debug, Default)]
struct Encoded;

impl Codec for Encoded {
    type Encode = Vec<Bytes>;
    type Decode = AccessLogShipReply;
    type Encoder = Self;
    type Decoder = Self;

    fn encoder(&mut self) -> Self::Encoder {
        Self
    }

    fn decoder(&mut self) -> Self::Decoder {
        Self
    }
}

impl Encoder for Encoded {
    type Item = Vec<Bytes>;
    type Error = Status;

    fn encode(&mut self, item: Vec<Bytes>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.reserve(item.iter().map(Bytes::len).sum());
        for part in item {
            dst.put(part);
        }
        Ok(())
    }
}

impl Decoder for Encoded {
    type Item = AccessLogShipReply;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<AccessLogShipReply>, Status> {
        let reply = AccessLogShipReply::decode(&mut *src)
            .map_err(|e| Status::internal(format!("decoding the ship reply: {e}")))?;
        src.advance(src.remaining());
        Ok(Some(reply))
    }
}
