//! One connection to the control plane, from `Hello` to the end of the stream.

use std::fmt;

use pb::data_plane_message::Kind;
use portcullis_proto::v1 as pb;
use portcullis_proto::v1::config_service_client::ConfigServiceClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::ControlPlane;
use crate::apply::Applier;
use crate::report::Report;

/// Largest snapshot accepted (certificates make them grow).
const MAX_SNAPSHOT_BYTES: usize = 64 * 1024 * 1024;

/// Why a session ended.
pub(super) enum SessionEnd {
    /// TCP/TLS/HTTP2 connection could not be made.
    Connect(tonic::transport::Error),
    /// The control plane answered with a gRPC status (or the stream broke).
    Status(tonic::Status),
    /// The control plane closed the stream cleanly.
    Closed,
}

/// Runs one session. Sets `progressed` once a snapshot arrived, so the caller can reset
/// its backoff.
pub(super) async fn run(cp: &ControlPlane, applier: &Applier, progressed: &mut bool) -> SessionEnd {
    match session(cp, applier, progressed).await {
        Ok(()) => SessionEnd::Closed,
        Err(end) => end,
    }
}

async fn session(
    cp: &ControlPlane,
    applier: &Applier,
    progressed: &mut bool,
) -> Result<(), SessionEnd> {
    let channel = cp.endpoint.connect().await.map_err(SessionEnd::Connect)?;
    let mut client =
        ConfigServiceClient::new(channel).max_decoding_message_size(MAX_SNAPSHOT_BYTES);

    let (tx, rx) = mpsc::channel(4);
    let hello = pb::Hello {
        node_id: cp.node_id.clone(),
        address: cp.address.clone(),
        software_version: env!("CARGO_PKG_VERSION").to_owned(),
        serving_version: applier.store().version().unwrap_or(0),
    };
    send(&tx, Kind::Hello(hello)).await?;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    request
        .metadata_mut()
        .insert("authorization", cp.authorization.clone());

    let mut inbound = client
        .stream_config(request)
        .await
        .map_err(SessionEnd::Status)?
        .into_inner();
    tracing::info!(uri = %cp.endpoint.uri(), "config stream open");

    while let Some(snapshot) = inbound.message().await.map_err(SessionEnd::Status)? {
        *progressed = true;
        let version = snapshot.version;
        let reply = if applier.store().version() == Some(version) {
            Kind::Ack(pb::Ack { version })
        } else {
            match applier.apply(snapshot).await {
                Ok(_) => Kind::Ack(pb::Ack { version }),
                Err(error) => {
                    tracing::warn!(version, %error, "rejected config snapshot; keeping the previous one");
                    Kind::Nack(pb::Nack {
                        version,
                        error: error.to_string(),
                    })
                }
            }
        };
        send(&tx, reply).await?;
    }
    Ok(())
}

async fn send(tx: &mpsc::Sender<pb::DataPlaneMessage>, kind: Kind) -> Result<(), SessionEnd> {
    let message = pb::DataPlaneMessage { kind: Some(kind) };
    tx.send(message).await.map_err(|_| SessionEnd::Closed)
}

impl fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(error) => write!(f, "cannot connect: {}", Report(error)),
            Self::Status(status) => write!(f, "{:?}: {}", status.code(), status.message()),
            Self::Closed => f.write_str("closed by the control plane"),
        }
    }
}
