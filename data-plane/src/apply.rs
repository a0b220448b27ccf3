//! Applying snapshots: compile off the async workers, publish atomically, persist.
//!
//! Shared by the control-plane stream and by start-up from the cache, so both take the
//! same path and a cached snapshot is held to the same validation as a live one.

use std::sync::Arc;
use std::time::Instant;

use portcullis_proto::v1 as pb;
use prost::Message;

use crate::cache::SnapshotCache;
use crate::config::{CompileError, Snapshot, Superseded};
use crate::metrics;
use crate::store::ConfigStore;
use crate::upstream::ClientCache;

/// Compiles, publishes and caches snapshots. Calls must not overlap (the stream applies
/// one snapshot at a time, and persists it before the next).
#[derive(Debug)]
pub struct Applier {
    store: Arc<ConfigStore>,
    clients: Arc<ClientCache>,
    cache: SnapshotCache,
}

/// A snapshot being served that still has to be persisted ([`Applier::persist`]).
#[derive(Debug)]
#[must_use = "hand it to Applier::persist so the snapshot is cached"]
pub struct Published {
    replaced: Option<Arc<Snapshot>>,
    wire: pb::ConfigSnapshot,
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
        let published = self.publish(snapshot, &Superseded::never()).await?;
        let version = published.wire.version;
        self.persist(published).await;
        Ok(version)
    }

    /// Compiles `snapshot` unless `superseded` stops it, and serves it. On error nothing
    /// changes and the previous snapshot keeps being served. The result must be handed to
    /// [`Applier::persist`]; in between, the data plane can already say it serves it.
    pub async fn publish(
        &self,
        snapshot: pb::ConfigSnapshot,
        superseded: &Superseded,
    ) -> Result<Published, CompileError> {
        let started = Instant::now();
        let compiled = self.compile(snapshot, superseded.clone()).await;
        if !matches!(compiled, Err(CompileError::Superseded)) {
            let version = compiled.as_ref().ok().map(|(c, _)| c.version());
            metrics::snapshot_applied(version, started.elapsed());
        }
        let (compiled, wire) = compiled?;
        let version = compiled.version();
        let replaced = self.store.publish(Arc::new(compiled));
        tracing::info!(
            version,
            proxies = wire.proxies.len(),
            routes = wire.routes.len(),
            "applied config snapshot"
        );
        Ok(Published { replaced, wire })
    }

    /// Frees what `published` holds without caching it (a newer one will be), off the
    /// async workers.
    pub(crate) fn discard(&self, published: Published) {
        tokio::task::spawn_blocking(move || drop(published));
    }

    /// Frees the snapshot `published` replaced and writes `published` to the cache, off
    /// the async workers: at 10,000 proxies each takes tens of milliseconds.
    pub(crate) async fn persist(&self, published: Published) {
        let Published { replaced, wire } = published;
        let cache = self.cache.clone();
        let written = tokio::task::spawn_blocking(move || {
            // Requests still running on the old snapshot keep it alive; otherwise it is
            // freed here.
            drop(replaced);
            cache.write(&wire.encode_to_vec())
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "cannot write snapshot cache"),
            Err(error) => tracing::warn!(%error, "snapshot cache writer failed"),
        }
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
                tracing::warn!(%error, "ignoring the snapshot cache; waiting for the control plane");
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
        let started = Instant::now();
        match self.compile(snapshot, Superseded::never()).await {
            Ok((compiled, _)) => {
                let version = compiled.version();
                metrics::snapshot_applied(Some(version), started.elapsed());
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
        superseded: Superseded,
    ) -> Result<(Snapshot, pb::ConfigSnapshot), CompileError> {
        let clients = self.clients.clone();
        let (compiled, snapshot) = tokio::task::spawn_blocking(move || {
            let compiled = Snapshot::compile_unless_superseded(&snapshot, &clients, &superseded);
            (compiled, snapshot)
        })
        .await
        .map_err(|_| CompileError::Aborted)?;
        Ok((compiled?, snapshot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applier(dir: &std::path::Path, token: &str) -> Applier {
        let clients = ClientCache::with_roots(rustls::RootCertStore::empty());
        Applier::new(
            Arc::default(),
            Arc::new(clients),
            SnapshotCache::new(dir, token),
        )
    }

    #[tokio::test]
    async fn a_cache_that_does_not_open_is_not_served() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let snapshot = pb::ConfigSnapshot {
            version: 7,
            proxies: vec![pb::ProxyTarget {
                hostname: "a.test".into(),
                target_url: "http://127.0.0.1:1".into(),
                enabled: true,
                enable_http: true,
                ..Default::default()
            }],
            ..Default::default()
        };
        let cache = SnapshotCache::new(dir.path(), "token");
        cache.write(&snapshot.encode_to_vec())?;
        assert_eq!(applier(dir.path(), "token").restore().await, Some(7));

        let other = applier(dir.path(), "another token");
        assert_eq!(other.restore().await, None);
        assert_eq!(other.store().version(), None);

        let mut sealed = std::fs::read(cache.path())?;
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        std::fs::write(cache.path(), sealed)?;
        let altered = applier(dir.path(), "token");
        assert_eq!(altered.restore().await, None);
        assert_eq!(altered.store().version(), None);
        Ok(())
    }
}
