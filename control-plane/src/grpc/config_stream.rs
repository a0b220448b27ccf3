//! `ConfigService.StreamConfig`: one bidirectional stream per data plane.
//!
//! The data plane proves itself with a `dataplane` token, says Hello, and from then on gets
//! the newest snapshot whenever it changes, answering each with ACK or NACK.

use std::pin::Pin;
use std::time::Duration;

use futures_util::{Stream, StreamExt as _};
use portcullis_proto::EncodedSnapshot;
use portcullis_proto::v1 as pb;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument as _;

use super::bearer;
use crate::model::{TokenScope, validate};
use crate::service::ControlPlane;
use crate::service::ListenerPorts;
use crate::snapshot::SnapshotRx;

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves config streams to data planes.
pub struct ConfigStreamApi {
    cp: ControlPlane,
    snapshots: SnapshotRx,
    /// `--grpc-client-ca`: a stream needs a client certificate (verified against that CA
    /// by the TLS layer, where it is optional so the CLI still connects with a token only).
    require_client_cert: bool,
}

impl ConfigStreamApi {
    /// Refuse streams whose TLS connection presented no client certificate.
    pub(super) fn requiring_client_cert(mut self, require: bool) -> Self {
        self.require_client_cert = require;
        self
    }

    pub(super) fn new(cp: ControlPlane, snapshots: SnapshotRx) -> Self {
        Self {
            cp,
            snapshots,
            require_client_cert: false,
        }
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<EncodedSnapshot, Status>> + Send>>;

#[tonic::async_trait]
impl pb::encoded::config_service_server::ConfigService for ConfigStreamApi {
    type StreamConfigStream = SnapshotStream;

    async fn stream_config(
        &self,
        req: Request<Streaming<pb::DataPlaneMessage>>,
    ) -> Result<Response<SnapshotStream>, Status> {
        if self.require_client_cert && req.peer_certs().is_none_or(|certs| certs.is_empty()) {
            return Err(Status::unauthenticated(
                "this control plane requires a data-plane client certificate (--client-cert/--client-key)",
            ));
        }
        let caller = self.cp.authenticate(bearer(&req)?).await?;
        if caller.scope != TokenScope::Dataplane {
            return Err(Status::permission_denied(
                "the config stream needs a data-plane enrolment token",
            ));
        }
        let mut inbound = req.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.next()).await {
            Ok(Some(Ok(pb::DataPlaneMessage {
                kind: Some(pb::data_plane_message::Kind::Hello(h)),
            }))) => h,
            Ok(Some(Err(e))) => return Err(e),
            Err(_) => return Err(Status::deadline_exceeded("no Hello within 10 s")),
            _ => return Err(Status::invalid_argument("the first message must be Hello")),
        };
        let node_id = validate::ident("node_id", &hello.node_id).map_err(Status::from)?;
        let address: String = hello.address.chars().take(256).collect();
        let software: String = hello.software_version.chars().take(64).collect();
        let ports = ListenerPorts {
            http: port("http_public_port", hello.http_public_port)?,
            https: port("https_public_port", hello.https_public_port)?,
        };
        let stream_id = self
            .cp
            .dataplanes()
            .connected(&node_id, &address, &software, ports)
            .await?;
        tracing::info!(node = %node_id, %address, serving = hello.serving_version, "data plane connected");

        let (tx, rx) = mpsc::channel(4);
        let cp = self.cp.clone();
        let mut snapshots = self.snapshots.clone();
        tokio::spawn(async move {
            snapshots.mark_changed();
            loop {
                tokio::select! {
                    changed = snapshots.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        // A clone shares the bytes encoded once by the publisher.
                        let snap = snapshots.borrow_and_update().clone();
                        if let Some(snap) = snap
                            && tx.send(Ok(snap)).await.is_err()
                        {
                            break;
                        }
                    }
                    msg = inbound.next() => match msg {
                        Some(Ok(m)) => record(&cp, &node_id, m).await,
                        Some(Err(e)) => {
                            tracing::info!(node = %node_id, error = %e, "data plane stream broke");
                            break;
                        }
                        None => break,
                    },
                }
            }
            if let Err(e) = cp.dataplanes().disconnected(&node_id, stream_id).await {
                tracing::warn!(node = %node_id, error = %e, "cannot record disconnect");
            }
            tracing::info!(node = %node_id, "data plane disconnected");
        });
        let out = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(out)))
    }
}

/// A port from Hello: 0 (none) or a TCP port; anything larger is refused, never truncated
/// into a port the data plane does not serve.
fn port(field: &str, value: u32) -> Result<u16, Status> {
    u16::try_from(value)
        .map_err(|_| Status::invalid_argument(format!("{field}: {value} is not a TCP port")))
}

async fn record(cp: &ControlPlane, node_id: &str, msg: pb::DataPlaneMessage) {
    use pb::data_plane_message::Kind;
    let result = match msg.kind {
        Some(Kind::Ack(a)) => {
            // "This change reached data plane X at version N", as a span.
            let span = tracing::info_span!("snapshot.ack", dataplane.node_id = %node_id, snapshot.version = crate::telemetry::int(a.version));
            cp.dataplanes()
                .acked(node_id, a.version)
                .instrument(span)
                .await
        }
        Some(Kind::Nack(n)) => {
            let span = tracing::info_span!("snapshot.nack", dataplane.node_id = %node_id, snapshot.version = crate::telemetry::int(n.version), otel.status_code = "error");
            tracing::warn!(parent: &span, node = %node_id, version = n.version, error = %n.error, "data plane rejected snapshot");
            cp.dataplanes()
                .nacked(node_id, n.version, &n.error)
                .instrument(span)
                .await
        }
        Some(Kind::Hello(_)) | None => Ok(()),
    };
    if let Err(e) = result {
        tracing::warn!(node = %node_id, error = %e, "cannot record data plane status");
    }
}
