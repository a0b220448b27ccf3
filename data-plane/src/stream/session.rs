//! One connection to the control plane, from `Hello` to the end of the stream.

use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use pb::data_plane_message::Kind;
use portcullis_proto::v1 as pb;
use portcullis_proto::v1::config_service_client::ConfigServiceClient;
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::ControlPlane;
use crate::apply::{Applier, Published};
use crate::config::{CompileError, Superseded};
use crate::report::Report;

/// Largest snapshot accepted (certificates make them grow).
const MAX_SNAPSHOT_BYTES: usize = 64 * 1024 * 1024;

/// How long after the last apply a compile may still be given up when a newer snapshot
/// arrives. Past it the compile in progress runs to its end, so under a steady stream of
/// writes a data plane still serves a version at most about this old plus one compile.
const GIVE_UP_WINDOW: Duration = Duration::from_secs(1);

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
    let endpoint = cp.endpoint();
    let channel = cp.connect().await.map_err(SessionEnd::Connect)?;
    let mut client =
        ConfigServiceClient::new(channel).max_decoding_message_size(MAX_SNAPSHOT_BYTES);

    let (tx, rx) = mpsc::channel(4);
    let hello = pb::Hello {
        node_id: cp.node_id.clone(),
        address: cp.address.clone(),
        software_version: env!("CARGO_PKG_VERSION").to_owned(),
        serving_version: applier.store().version().unwrap_or(0),
        http_public_port: cp.http_public_port.into(),
        https_public_port: cp.https_public_port.into(),
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
    tracing::info!(uri = %endpoint.uri(), "config stream open");

    // Receiving and applying run side by side: while a snapshot compiles, newer ones keep
    // arriving and replace each other in `latest`, so after a burst of writes only the
    // newest is compiled and ACKed (ACKs say "serving version N", not "saw every version").
    // The first to arrive also stops the compile in progress (see `GIVE_UP_WINDOW`).
    let latest = Latest::default();
    let to_cache = ToCache::default();
    let receive = async {
        let end = receive(&mut inbound, &latest, progressed).await;
        latest.close();
        end
    };
    let apply = async {
        apply_latest(applier, &latest, &tx, &to_cache).await;
        to_cache.close();
    };
    let (received, (), ()) = tokio::join!(receive, apply, cache_latest(applier, &to_cache));
    received
}

/// The newest applied snapshot not yet written to the cache, handed from the applier to
/// the cache writer. Writing (with two fsyncs) takes as long as the disk makes it, up to
/// hundreds of milliseconds on a busy one; the next snapshot is applied meanwhile, never
/// behind it (bench/README.md, finding 8). Only the newest is worth writing: one that
/// waits is replaced, and what it held is freed off the async workers.
#[derive(Default)]
struct ToCache {
    slot: Mutex<(Option<Published>, bool)>,
    wake: Notify,
}

impl ToCache {
    fn lock(&self) -> MutexGuard<'_, (Option<Published>, bool)> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn put(&self, applier: &Applier, published: Published) {
        let waiting = self.lock().0.replace(published);
        if let Some(waiting) = waiting {
            applier.discard(waiting);
        }
        self.wake.notify_one();
    }

    fn close(&self) {
        self.lock().1 = true;
        self.wake.notify_one();
    }

    async fn next(&self) -> Option<Published> {
        loop {
            {
                let mut slot = self.lock();
                if let Some(published) = slot.0.take() {
                    return Some(published);
                }
                if slot.1 {
                    return None;
                }
            }
            self.wake.notified().await;
        }
    }
}

/// Writes what [`ToCache`] holds until the applier is done and the slot drained, so the
/// cache ends holding the last snapshot applied.
async fn cache_latest(applier: &Applier, to_cache: &ToCache) {
    while let Some(published) = to_cache.next().await {
        applier.persist(published).await;
    }
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
    /// The flag of the snapshot handed out last, which may still be compiling (marking
    /// it once its compile has ended changes nothing).
    compiling: Option<Superseded>,
}

impl Latest {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces any snapshot still waiting (it is outdated now) and tells the compile in
    /// progress, if any, that it is outdated too.
    fn put(&self, snapshot: pb::ConfigSnapshot) {
        let mut slot = self.lock();
        slot.snapshot = Some(snapshot);
        if let Some(compiling) = &slot.compiling {
            compiling.mark();
        }
        drop(slot);
        self.wake.notify_one();
    }

    /// No more snapshots will come; the applier stops once the slot is empty.
    fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }

    /// The next snapshot to apply, with the flag a newer one marks, which may stop its
    /// compile until `deadline`; `None` once closed and drained.
    async fn next(&self, deadline: Instant) -> Option<(pb::ConfigSnapshot, Superseded)> {
        loop {
            {
                let mut slot = self.lock();
                if let Some(snapshot) = slot.snapshot.take() {
                    let superseded = Superseded::until(deadline);
                    slot.compiling = Some(superseded.clone());
                    return Some((snapshot, superseded));
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

/// Applies what [`Latest`] holds until it closes, answering each with ACK or NACK; a
/// compile given up for a newer snapshot gets no answer (the newer one does).
async fn apply_latest(
    applier: &Applier,
    latest: &Latest,
    tx: &mpsc::Sender<pb::DataPlaneMessage>,
    to_cache: &ToCache,
) {
    let mut applied_at = Instant::now();
    while let Some((snapshot, superseded)) = latest.next(applied_at + GIVE_UP_WINDOW).await {
        let version = snapshot.version;
        let ack = Kind::Ack(pb::Ack { version });
        let serving = applier.store().version();
        let (reply, published) = if serving == Some(version) {
            (Some(ack), None)
        } else if let Some(serving) = serving.filter(|&s| s > version) {
            // A control plane behind the others (or a store restored from an older copy):
            // applying it would take routes back in time.
            tracing::warn!(
                version,
                serving,
                "refused a config snapshot older than the one served"
            );
            let nack = pb::Nack {
                version,
                error: format!(
                    "version {version} is older than version {serving}, which this data plane serves; not applied (the versions only grow)"
                ),
            };
            (Some(Kind::Nack(nack)), None)
        } else {
            match applier.publish(snapshot, &superseded).await {
                Ok(published) => {
                    applied_at = Instant::now();
                    (Some(ack), Some(published))
                }
                Err(CompileError::Superseded) => {
                    tracing::debug!(
                        version,
                        "gave up compiling config snapshot; a newer one arrived"
                    );
                    (None, None)
                }
                Err(error) => {
                    tracing::warn!(version, %error, "rejected config snapshot; keeping the previous one");
                    let nack = pb::Nack {
                        version,
                        error: error.to_string(),
                    };
                    (Some(Kind::Nack(nack)), None)
                }
            }
        };
        // The ACK says "serving version N": true once published, before it is cached.
        let sent = match reply {
            Some(reply) => send(tx, reply).await,
            None => Ok(()),
        };
        if let Some(published) = published {
            to_cache.put(applier, published);
        }
        if sent.is_err() {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use prost::Message;

    use super::*;
    use crate::config::Snapshot;
    use crate::upstream::ClientCache;

    fn clients() -> ClientCache {
        ClientCache::with_roots(rustls::RootCertStore::empty())
    }

    fn snapshot(version: u64) -> pb::ConfigSnapshot {
        pb::ConfigSnapshot {
            version,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_newer_snapshot_replaces_the_waiting_one_and_marks_the_compiling_one() {
        let latest = Latest::default();
        let deadline = Instant::now() + Duration::from_secs(60);
        latest.put(snapshot(1));
        let (first, compiling) = latest.next(deadline).await.expect("snapshot 1");
        assert_eq!(first.version, 1);

        latest.put(snapshot(2));
        latest.put(snapshot(3));
        let s = pb::ConfigSnapshot::default();
        let clients = clients();
        let given_up = Snapshot::compile_unless_superseded(&s, &clients, &compiling);
        assert!(
            matches!(given_up, Err(CompileError::Superseded)),
            "1 is outdated"
        );

        let (next, fresh) = latest.next(deadline).await.expect("snapshot 3");
        assert_eq!(next.version, 3, "2 was replaced while it waited");
        assert!(
            Snapshot::compile_unless_superseded(&s, &clients, &fresh).is_ok(),
            "nothing newer has arrived for 3"
        );

        latest.close();
        assert!(latest.next(deadline).await.is_none());
    }

    /// Applying never waits for the cache: while one write is pending, a newer applied
    /// snapshot replaces it, and the writer gets only the newest.
    #[tokio::test]
    async fn only_the_newest_applied_snapshot_waits_for_the_cache() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let cache = crate::cache::SnapshotCache::new(dir.path(), "token");
        cache.ensure_dir()?;
        let applier = Applier::new(Arc::default(), Arc::new(clients()), cache.clone());
        let to_cache = ToCache::default();
        for version in [1, 2, 3] {
            let published = applier
                .publish(large(version), &Superseded::until(Instant::now()))
                .await?;
            to_cache.put(&applier, published);
        }
        assert_eq!(
            applier.store().version(),
            Some(3),
            "applied without waiting"
        );
        assert_eq!(cache.read()?, None, "nothing written yet");
        to_cache.close();
        cache_latest(&applier, &to_cache).await;
        let cached = cache
            .read()?
            .map(|b| pb::ConfigSnapshot::decode(b.as_slice()));
        assert_eq!(cached.and_then(Result::ok).map(|s| s.version), Some(3));
        assert!(
            to_cache.next().await.is_none(),
            "1 and 2 were replaced, not queued"
        );
        Ok(())
    }

    /// 5,000 proxies: a compile long enough to be caught half-way.
    fn large(version: u64) -> pb::ConfigSnapshot {
        pb::ConfigSnapshot {
            version,
            proxies: (0..5_000)
                .map(|i| pb::ProxyTarget {
                    hostname: format!("p{i}.test"),
                    target_url: format!("http://10.0.0.1:{}", 1_000 + i),
                    enabled: true,
                    enable_http: true,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_compile_given_up_for_a_newer_snapshot_gets_no_answer_and_the_newer_one_is_acked()
    -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let cache = crate::cache::SnapshotCache::new(dir.path(), "token");
        let applier = Applier::new(Arc::default(), Arc::new(clients()), cache.clone());
        let latest = Latest::default();
        let (tx, mut rx) = mpsc::channel(8);
        latest.put(large(1));
        let newer_arrives = async {
            while latest.lock().compiling.is_none() {
                tokio::task::yield_now().await;
            }
            latest.put(large(2));
            latest.close();
        };
        let to_cache = ToCache::default();
        let apply = async {
            apply_latest(&applier, &latest, &tx, &to_cache).await;
            to_cache.close();
        };
        tokio::join!(apply, newer_arrives, cache_latest(&applier, &to_cache));
        drop(tx);

        let mut replies = Vec::new();
        while let Some(message) = rx.recv().await {
            replies.push(message.kind);
        }
        assert_eq!(replies, [Some(Kind::Ack(pb::Ack { version: 2 }))]);
        assert_eq!(applier.store().version(), Some(2));
        let cached = cache
            .read()?
            .map(|b| pb::ConfigSnapshot::decode(b.as_slice()));
        assert_eq!(cached.and_then(Result::ok).map(|s| s.version), Some(2));
        Ok(())
    }
}
