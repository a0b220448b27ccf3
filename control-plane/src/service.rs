//! The service layer: every API operation, implemented once. gRPC and REST are thin
//! adapters over [`ControlPlane`].
//!
//! Each write validates its whole input first, then commits one atomic store batch whose
//! checks guard against concurrent writers, so an error never leaves a half-written state.

use std::sync::Arc;

use tokio::sync::watch;

use crate::acme::{AcmeSettings, OrderQueue};
use crate::auth::{self, Caller};
use crate::error::ServiceError;
use crate::lease::Leases;
use crate::model::{Health, TokenRecord, TokenScope, now};
use crate::secrets::MasterKey;
use crate::store::{Batch, Collection, Record, Revisions, Store, StoreError, Write};

mod cert_upload;
pub(crate) mod certs;
mod dataplanes;
mod proxies;
mod proxy_auth;
mod proxy_resource;
mod routes;
mod services;
mod tokens;

pub(crate) use certs::covers;
pub use dataplanes::{DataPlaneRegistry, ListenerPorts, edge_callback_ports};
pub(crate) use proxies::build_proxy;
pub(crate) use proxy_auth::validate_auth;
pub(crate) use proxy_resource::apply_resource;
pub(crate) use routes::{build_route, refuse_protected_target};
pub(crate) use services::build_service;

type Result<T> = std::result::Result<T, ServiceError>;

/// How often an optimistic update is retried when another writer got there first.
const CAS_RETRIES: usize = 8;
/// `last_used_at` is refreshed at most this often, so reads do not turn into writes.
const LAST_USED_GRANULARITY_SECS: i64 = 60;

/// The control plane's state and operations. Cheap to clone.
#[derive(Clone)]
pub struct ControlPlane {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// Leases for work that runs on one control plane at a time.
    leases: Leases,
    revision: Revisions,
    dataplanes: DataPlaneRegistry,
    /// Certificate names for the issuer task to order.
    orders: OrderQueue,
    master_key: MasterKey,
    acme: AcmeSettings,
    oauth_issuer: String,
    /// Optional peers' last known health, for `/health` (written by their own tasks).
    peers: std::sync::RwLock<std::collections::BTreeMap<&'static str, crate::model::PeerHealth>>,
}

/// Settings that are not state: secrets and external services.
#[derive(Debug, Clone)]
pub struct Options {
    /// Seals private keys at rest.
    pub master_key: MasterKey,
    /// Where and how to order certificates.
    pub acme: AcmeSettings,
    /// The OAuth issuer data planes trust (sent in every snapshot).
    pub oauth_issuer: String,
    /// How long a lease (ACME orders, maintenance jobs) lives without renewal.
    pub lease_ttl: std::time::Duration,
}

impl Default for Options {
    /// A throwaway random master key and Let's Encrypt: for tools and tests that never read
    /// stored secrets.
    fn default() -> Self {
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        Self {
            master_key: MasterKey::from_bytes(&bytes).unwrap_or_else(|_| unreachable!("32 bytes")),
            acme: AcmeSettings::default(),
            oauth_issuer: String::new(),
            lease_ttl: crate::lease::DEFAULT_TTL,
        }
    }
}

impl ControlPlane {
    /// Wraps a store with default options; `revision` starts at the store's revision.
    pub async fn new(store: Store) -> Result<Self> {
        Self::with_options(store, Options::default()).await
    }

    /// Wraps a store; `revision` starts at the store's current revision.
    pub async fn with_options(store: Store, options: Options) -> Result<Self> {
        let rev = store.revision().await?;
        Ok(Self {
            inner: Arc::new(Inner {
                dataplanes: DataPlaneRegistry::new(store.clone()),
                leases: Leases::with_ttl(store.clone(), options.lease_ttl),
                orders: OrderQueue::new(),
                store,
                revision: Revisions::new(rev),
                master_key: options.master_key,
                acme: options.acme,
                oauth_issuer: options.oauth_issuer,
                peers: Default::default(),
            }),
        })
    }

    /// The key that seals private keys at rest.
    pub fn master_key(&self) -> &MasterKey {
        &self.inner.master_key
    }

    /// ACME settings.
    pub fn acme(&self) -> &AcmeSettings {
        &self.inner.acme
    }

    /// Certificate names to order: the service layer pushes, the issuer task receives.
    pub fn orders(&self) -> &OrderQueue {
        &self.inner.orders
    }

    /// The OAuth issuer, for snapshots.
    pub fn oauth_issuer(&self) -> &str {
        &self.inner.oauth_issuer
    }

    /// The store, for the snapshot publisher.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Leases shared with every control plane on the store (see [`crate::lease`]).
    pub fn leases(&self) -> &Leases {
        &self.inner.leases
    }

    /// Data plane bookkeeping, for the config stream.
    pub fn dataplanes(&self) -> &DataPlaneRegistry {
        &self.inner.dataplanes
    }

    /// Fires whenever a config write commits (or the poller sees another control plane's).
    pub fn subscribe_revision(&self) -> watch::Receiver<u64> {
        self.inner.revision.subscribe()
    }

    /// Records that the store reached `rev`; wakes the snapshot publisher if it is newer.
    pub fn observe_revision(&self, rev: u64) {
        self.inner.revision.observe(rev);
    }

    /// The revision watch itself, for the snapshot publisher.
    pub fn revisions(&self) -> &Revisions {
        &self.inner.revision
    }

    /// Checks a bearer secret and returns the caller it belongs to.
    pub async fn authenticate(&self, secret: &str) -> Result<Caller> {
        const BAD: ServiceError = ServiceError::Unauthenticated("invalid or revoked token");
        let hash = auth::hash_secret(secret);
        let id = auth::token_id(&hash);
        let Some((record, raw)) = self.get::<TokenRecord>(&id).await? else {
            return Err(BAD);
        };
        if !auth::hashes_equal(&record.secret_sha256, &hash) {
            return Err(BAD);
        }
        let now = now();
        if now - record.last_used_at >= LAST_USED_GRANULARITY_SECS {
            let mut updated = record.clone();
            updated.last_used_at = now;
            // Best effort: a concurrent update or revocation wins.
            let _ = self
                .inner
                .store
                .apply(Batch {
                    checks: vec![crate::store::Check::Equals(
                        Collection::Tokens,
                        id.clone(),
                        raw,
                    )],
                    writes: vec![Write::put(&updated)],
                })
                .await;
        }
        Ok(Caller {
            token_id: record.id,
            scope: record.scope,
        })
    }

    /// Authenticates an API caller by API token: any scope but `dataplane`. (OAuth access
    /// tokens are checked above this layer, by the adapters' authenticator.)
    pub async fn authenticate_api(&self, secret: &str) -> Result<Caller> {
        let caller = self.authenticate(secret).await?;
        if caller.scope == TokenScope::Dataplane {
            return Err(ServiceError::Forbidden(
                "a data-plane enrolment token cannot use the admin API".into(),
            ));
        }
        Ok(caller)
    }

    /// Records an optional peer's health for `/health` (e.g. the Docker engine).
    pub fn report_peer(&self, name: &'static str, health: crate::model::PeerHealth) {
        self.inner
            .peers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name, health);
    }

    /// Store reachability, version and connected data planes.
    pub async fn health(&self) -> Health {
        let revision = self.inner.store.revision().await;
        Health {
            status: if revision.is_ok() { "ok" } else { "degraded" },
            version: env!("CARGO_PKG_VERSION"),
            store_ok: revision.is_ok(),
            store_backend: self.inner.store.backend_name(),
            config_version: revision.unwrap_or(0),
            connected_data_planes: self.inner.dataplanes.connected_count(),
            peers: self
                .inner
                .peers
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        }
    }

    // === store helpers ===

    async fn get<T: Record>(&self, key: &str) -> Result<Option<(T, Vec<u8>)>> {
        Ok(self.inner.store.get_record(key).await?)
    }

    async fn list<T: Record>(&self) -> Result<Vec<T>> {
        Ok(self.inner.store.list_records().await?)
    }

    /// Applies a batch; a failed check becomes `on_conflict`, and a config write wakes the
    /// publisher.
    async fn commit(
        &self,
        batch: Batch,
        on_conflict: impl FnOnce(usize) -> ServiceError,
    ) -> Result<u64> {
        match self.inner.store.apply(batch).await {
            Ok(rev) => {
                self.observe_revision(rev);
                Ok(rev)
            }
            Err(StoreError::CheckFailed(i)) => Err(on_conflict(i)),
            Err(e) => Err(e.into()),
        }
    }
}

fn require_writer(caller: &Caller) -> Result<()> {
    match caller.scope {
        TokenScope::Admin | TokenScope::User => Ok(()),
        TokenScope::Dataplane => Err(ServiceError::Forbidden(
            "data-plane tokens cannot write".into(),
        )),
    }
}

fn require_admin(caller: &Caller, what: &str) -> Result<()> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(format!(
            "{what} needs an admin token"
        )))
    }
}

fn require_owner(caller: &Caller, kind: &str, name: &str, owner: &str) -> Result<()> {
    if caller.may_modify(owner) {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(format!(
            "{kind} {name:?} belongs to another token; only its owner or an admin may change it"
        )))
    }
}

#[cfg(test)]
mod tests;
