//! Applying snapshots: compile off the async workers, publish atomically, persist.
//!
//! Shared by the control-plane stream and by start-up from the cache, so both take the
//! same path and a cached snapshot is held to the same validation as a live one.

use std::sync::Arc;

use portcullis_proto::v1 as pb;
use prost::Message;

use crate::cache::SnapshotCache;
use crate::config::{CompileError, Snapshot};
use crate::store::ConfigStore;
use crate::upstream::ClientCache;

/// Compiles, publishes and caches snapshots. Calls must not overlap (the stream applies
/// one snapshot at a time).
#[derive(Debug)]
pub struct Applier {
    store: Arc<ConfigStore>,
    clients: Arc<ClientCache>,
    cache: SnapshotCache,
}

// === impl Applier ===

impl Applier {
    /// Publishes into `store`, builds clients from `clients`, persists to `cache`.
    pub fn new(store: Arc<ConfigStore>, clients: Arc<ClientCache>, cache: SnapshotCache) -> Self {
        Self {
            store,
            clients,
            cache,
        }
    }

    /// The store snapshots are published to.
    pub fn store(&self) -> &Arc<ConfigStore> {
        &self.store
    }

    /// Compiles and publishes `snapshot`, then writes it to the cache. On error nothing
    /// changes and the previous snapshot keeps being served.
    pub async fn apply(&self, snapshot: pb::ConfigSnapshot) -> Result<u64, CompileError> {
        let (compiled, snapshot) = self.compile(snapshot).await?;
        let version = compiled.version();
        let replaced = self.store.publish(Arc::new(compiled));
        tracing::info!(
            version,
            proxies = snapshot.proxies.len(),
            routes = snapshot.routes.len(),
            "applied config snapshot"
        );
        let cache = self.cache.clone();
        let written = tokio::task::spawn_blocking(move || {
            // Requests still running on the old snapshot keep it alive; otherwise it is
            // freed here, off the async workers, together with the wire copy.
            drop(replaced);
            cache.write(&snapshot.encode_to_vec())
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "cannot write snapshot cache"),
            Err(error) => tracing::warn!(%error, "snapshot cache writer failed"),
        }
        Ok(version)
    }

    /// Serves the cached snapshot, if there is one that still decodes and compiles.
    /// Returns its version.
    pub async fn restore(&self) -> Option<u64> {
        if let Err(error) = self.cache.ensure_dir() {
            tracing::warn!(%error, dir = ?self.cache.path(), "cannot create cache directory");
        }
        let cache = self.cache.clone();
        let bytes = match tokio::task::spawn_blocking(move || cache.read()).await {
            Ok(Ok(Some(bytes))) => bytes,
            Ok(Ok(None)) => return None,
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot read snapshot cache");
                return None;
            }
            Err(_) => return None,
        };
        let snapshot = match pb::ConfigSnapshot::decode(bytes.as_slice()) {
            Ok(snapshot) => snapshot,
            Err(error) => {
                tracing::warn!(%error, "snapshot cache is corrupt; ignoring it");
                return None;
            }
        };
        match self.compile(snapshot).await {
            Ok((compiled, _)) => {
                let version = compiled.version();
                // Nothing is served before the cache is restored: nothing to drop.
                let _ = self.store.publish(Arc::new(compiled));
                tracing::info!(version, "serving cached config snapshot");
                Some(version)
            }
            Err(error) => {
                tracing::warn!(%error, "cached snapshot no longer compiles; ignoring it");
                None
            }
        }
    }

    async fn compile(
        &self,
        snapshot: pb::ConfigSnapshot,
    ) -> Result<(Snapshot, pb::ConfigSnapshot), CompileError> {
        let clients = self.clients.clone();
        let (compiled, snapshot) = tokio::task::spawn_blocking(move || {
            let compiled = Snapshot::compile(&snapshot, &clients);
            (compiled, snapshot)
        })
        .await
        .map_err(|_| CompileError::Aborted)?;
        Ok((compiled?, snapshot))
    }
}
