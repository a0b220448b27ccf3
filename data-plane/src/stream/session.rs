//! One connection to the control plane, from `Hello` to the end of the stream.

use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use pb::data_plane_message::Kind;
use portcullis_proto::v1 as pb;
use portcullis_proto::v1::config_service_client::ConfigServiceClient;
use tokio::sync::{Notify, mpsc};
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

    // Receiving and applying run side by side: while a snapshot compiles, newer ones keep
    // arriving and replace each other in `latest`, so after a burst of writes only the
    // newest is compiled and ACKed (ACKs say "serving version N", not "saw every version").
    let latest = Latest::default();
    let receive = async {
        let end = receive(&mut inbound, &latest, progressed).await;
        latest.close();
        end
    };
    let (received, ()) = tokio::join!(receive, apply_latest(applier, &latest, &tx));
    received
}

/// The newest snapshot not yet applied, handed from the receiver to the applier.
#[derive(Default)]
struct Latest {
    slot: Mutex<Slot>,
    wake: Notify,
}

#[derive(Default)]
struct Slot {
    snapshot: Option<pb::ConfigSnapshot>,
    closed: bool,
}

impl Latest {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces any snapshot still waiting (it is outdated now).
    fn put(&self, snapshot: pb::ConfigSnapshot) {
        self.lock().snapshot = Some(snapshot);
        self.wake.notify_one();
    }

    /// No more snapshots will come; the applier stops once the slot is empty.
    fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }

    /// The next snapshot to apply, `None` once closed and drained.
    async fn next(&self) -> Option<pb::ConfigSnapshot> {
        loop {
            {
                let mut slot = self.lock();
                if let Some(snapshot) = slot.snapshot.take() {
                    return Some(snapshot);
                }
                if slot.closed {
                    return None;
                }
            }
            self.wake.notified().await;
        }
    }
}

async fn receive(
    inbound: &mut tonic::Streaming<pb::ConfigSnapshot>,
    latest: &Latest,
    progressed: &mut bool,
) -> Result<(), SessionEnd> {
    while let Some(snapshot) = inbound.message().await.map_err(SessionEnd::Status)? {
        *progressed = true;
        latest.put(snapshot);
    }
    Ok(())
}

/// Applies what [`Latest`] holds until it closes, answering each with ACK or NACK.
async fn apply_latest(applier: &Applier, latest: &Latest, tx: &mpsc::Sender<pb::DataPlaneMessage>) {
    while let Some(snapshot) = latest.next().await {
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
        if send(tx, reply).await.is_err() {
            return;
        }
    }
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
