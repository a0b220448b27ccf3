//! Reconciliation: the store's service records against the engine's labelled containers.
//!
//! Why: containers and records can drift apart behind Portcullis' back (`docker rm`, a
//! store restored from a backup, a control plane killed halfway through a recreate). A
//! record whose container is gone shows as `missing` in list/show (the live state says so);
//! a container of this installation that no record claims is an *orphan*; an allocation no
//! record lists is *stale*. `GET /api/v1/services/cleanup` reports them,
//! `POST /api/v1/services/cleanup` (admin) removes orphans and releases stale allocations.
//! Nothing here removes a container on its own: the periodic pass only reports (log lines).
//!
//! Scope: every container Portcullis makes carries [`LABEL_INSTALLATION`], a random id kept
//! in the store (collection `meta`), so control planes sharing one Redis share it and two
//! installations on one engine (or concurrent test runs) never treat each other's containers
//! as orphans. A managed container without that label (made before it existed) is never an
//! orphan.
//!
//! Invariants: every pass that reads the engine to decide, and every operation that makes a
//! container no record names yet (the port recreate in [`super::ports`]), holds the lease
//! [`ENGINE_LOCK`] (and fences its store writes with it), so control planes on one store
//! act on the engine one at a time and a half-finished recreate is never mistaken for an
//! orphan. A create needs no lock: its
//! record (with the container's name) is written before the container exists, and until it
//! carries the container id (at most [`CREATE_GRACE_SECS`]) it is not reported missing.
//!
//! Costs: one container list (filtered by label on the engine) and one read of each of the
//! two collections per pass; one engine call per removed orphan.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bollard::errors::Error as EngineError;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use serde::Serialize;
use utoipa::ToSchema;

use super::spec::{self, ContainerService, PortAllocation};
use super::{Docker, Result, visible};
use crate::auth::Caller;
use crate::error::ServiceError;
use crate::store::{Batch, Check, Collection, Write};

/// Label carrying the installation id (see the module docs).
pub const LABEL_INSTALLATION: &str = "portcullis.installation";
/// Key of the installation id in collection `meta`.
const INSTALLATION_KEY: &str = "docker:installation";
/// Name of the lease ([`crate::lease`]) held while acting on the engine. It is renewed in
/// the background while held, so a holder that dies frees it within the lease TTL.
pub(crate) const ENGINE_LOCK: &str = "docker-engine";
/// How long a caller waits for the lock before a 409 asks it to retry.
const LOCK_WAIT: Duration = Duration::from_secs(45);
/// Most containers one pass looks at (an engine with more is reported as truncated).
const MAX_CONTAINERS: usize = 10_000;

/// How long a record without a container id counts as a create in flight rather than a
/// missing container (a create takes seconds; a control plane killed halfway leaves one).
const CREATE_GRACE_SECS: i64 = 300;

/// Whether `s` is a create in flight: its record is written before its container exists
/// and gets the container id once the engine made it.
pub(crate) fn creating(s: &ContainerService) -> bool {
    s.container_id.is_empty() && crate::model::now() - s.created_at < CREATE_GRACE_SECS
}

/// A managed container of this installation that no service record claims.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Orphan {
    /// Engine container id.
    pub container_id: String,
    /// Engine container name (without the leading `/`).
    pub container_name: String,
    /// Its `portcullis.service` label.
    pub service: String,
    /// Its `portcullis.owner-token` label.
    pub owner_token_id: String,
    /// Image it runs.
    pub image: String,
    /// Engine state (`running`, `exited`, …).
    pub state: String,
}

/// What a reconciliation pass found (and, for a cleanup, did).
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ReconcileReport {
    /// This installation's id (the `portcullis.installation` label value).
    pub installation: String,
    /// Managed containers of this installation without a record.
    pub orphans: Vec<Orphan>,
    /// Services whose container is gone (their live status is `missing`).
    pub missing: Vec<String>,
    /// Allocations (`port/protocol`) that no service record lists.
    pub stale_allocations: Vec<String>,
    /// Containers removed by this cleanup (names).
    pub removed: Vec<String>,
    /// Allocations released by this cleanup.
    pub released: Vec<String>,
    /// Whether this was a dry run (nothing removed).
    pub dry_run: bool,
}

/// Runs `op` in its own task, so a caller that goes away (an HTTP client disconnecting
/// drops the handler's future) cannot stop a change to the engine halfway or leave the
/// lock held until it expires.
pub(crate) async fn detached<T: Send + 'static>(
    op: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    tokio::spawn(op)
        .await
        .map_err(|e| ServiceError::Unavailable(format!("the engine operation failed: {e}")))?
}

impl Docker {
    /// This installation's id: read from the store, or made once (the first writer wins, so
    /// control planes sharing a store agree).
    pub(crate) async fn installation(&self) -> Result<String> {
        self.inner
            .installation
            .get_or_try_init(|| async {
                let store = self.inner.cp.store();
                if let Some(v) = store.get(Collection::Meta, INSTALLATION_KEY).await? {
                    return Ok(String::from_utf8_lossy(&v).into_owned());
                }
                let id = format!("{:016x}", rand::random::<u64>());
                let put = Batch {
                    checks: vec![Check::Absent(Collection::Meta, INSTALLATION_KEY.into())],
                    writes: vec![Write::Put(
                        Collection::Meta,
                        INSTALLATION_KEY.into(),
                        id.clone().into_bytes(),
                    )],
                };
                match store.apply(put).await {
                    Ok(_) => Ok(id),
                    Err(crate::store::StoreError::CheckFailed(_)) => store
                        .get(Collection::Meta, INSTALLATION_KEY)
                        .await?
                        .map(|v| String::from_utf8_lossy(&v).into_owned())
                        .ok_or_else(|| {
                            ServiceError::concurrent("the installation id is being written")
                        }),
                    Err(e) => Err(e.into()),
                }
            })
            .await
            .cloned()
    }

    /// Runs `f` holding the lease [`ENGINE_LOCK`], waiting up to [`LOCK_WAIT`] for it (409
    /// when another control plane keeps it longer). `f` gets the lease's fence to put in
    /// the store batches it writes, so a holder that lost the lease changes nothing there.
    pub(crate) async fn locked<T>(&self, f: impl AsyncFnOnce(Check) -> Result<T>) -> Result<T> {
        let leases = self.inner.cp.leases();
        let deadline = tokio::time::Instant::now() + LOCK_WAIT;
        let held = loop {
            if let Some(h) = leases.hold(ENGINE_LOCK).await? {
                break h;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ServiceError::concurrent(
                    "another control plane is changing containers on the engine; retry",
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let out = f(held.fence()).await;
        held.release().await;
        out
    }

    /// One pass over the engine and the store; call with the lock held.
    async fn scan(&self) -> Result<ReconcileReport> {
        let installation = self.installation().await?;
        let engine = self.engine().await?;
        let mut filters = HashMap::new();
        filters.insert("label", vec![format!("{}=true", spec::LABEL_MANAGED)]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let containers = engine
            .list_containers(Some(opts))
            .await
            .map_err(|e| self.engine_error("listing containers", e))?;
        if containers.len() > MAX_CONTAINERS {
            tracing::warn!(
                count = containers.len(),
                "more managed containers than one reconciliation pass reads"
            );
        }
        // After the engine list, and both collections at one revision: a create writes its
        // record and allocations in one batch before its container exists, so neither it
        // nor its ports can look orphaned or stale here.
        let (_, (records, allocations)) = self
            .inner
            .cp
            .store()
            .read_records::<(Vec<ContainerService>, Vec<PortAllocation>)>()
            .await?;

        let names: HashSet<&str> = records.iter().map(|r| r.container_name.as_str()).collect();
        let ids: HashSet<&str> = records
            .iter()
            .map(|r| r.container_id.as_str())
            .filter(|i| !i.is_empty())
            .collect();
        let mut present: HashSet<String> = HashSet::new();
        let mut orphans = Vec::new();
        for c in containers.into_iter().take(MAX_CONTAINERS) {
            let id = c.id.unwrap_or_default();
            let name = c
                .names
                .unwrap_or_default()
                .into_iter()
                .next()
                .map(|n| n.trim_start_matches('/').to_owned())
                .unwrap_or_default();
            let labels = c.labels.unwrap_or_default();
            let claimed = names.contains(name.as_str()) || ids.contains(id.as_str());
            present.insert(name.clone());
            present.insert(id.clone());
            let ours = labels.get(LABEL_INSTALLATION) == Some(&installation);
            if ours && !claimed {
                orphans.push(Orphan {
                    container_id: id,
                    container_name: name,
                    service: labels.get(spec::LABEL_SERVICE).cloned().unwrap_or_default(),
                    owner_token_id: labels.get(spec::LABEL_OWNER).cloned().unwrap_or_default(),
                    image: c.image.unwrap_or_default(),
                    state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                });
            }
        }
        let missing = records
            .iter()
            .filter(|r| {
                !creating(r)
                    && !present.contains(&r.container_name)
                    && (r.container_id.is_empty() || !present.contains(&r.container_id))
            })
            .map(|r| r.name.clone())
            .collect();
        let listed: HashSet<(&str, &str)> = records
            .iter()
            .flat_map(|r| r.ports.iter().map(|p| (r.name.as_str(), p.name.as_str())))
            .collect();
        let stale_allocations = allocations
            .iter()
            .filter(|a| !listed.contains(&(a.service.as_str(), a.port_name.as_str())))
            .map(crate::store::Record::key)
            .collect();
        Ok(ReconcileReport {
            installation,
            orphans,
            missing,
            stale_allocations,
            ..Default::default()
        })
    }

    /// Orphans, missing services and stale allocations the caller may see (a `user` token:
    /// those labelled or recorded with its own token id).
    pub async fn reconcile_report(&self, caller: &Caller) -> Result<ReconcileReport> {
        let mut r = self.locked(async |_| self.scan().await).await?;
        if !caller.is_admin() {
            let (_, (records, allocations)) = self
                .inner
                .cp
                .store()
                .read_records::<(Vec<ContainerService>, Vec<PortAllocation>)>()
                .await?;
            r.orphans.retain(|o| visible(caller, &o.owner_token_id));
            r.missing.retain(|m| {
                records
                    .iter()
                    .any(|s| &s.name == m && visible(caller, &s.owner_token_id))
            });
            r.stale_allocations.retain(|k| {
                allocations.iter().any(|a| {
                    &crate::store::Record::key(a) == k && visible(caller, &a.owner_token_id)
                })
            });
        }
        Ok(r)
    }

    /// Removes every orphan and releases every stale allocation (admin only); with
    /// `dry_run` only reports what it would do. Runs to its end even if the caller goes away.
    pub async fn cleanup(&self, caller: &Caller, dry_run: bool) -> Result<ReconcileReport> {
        if !caller.is_admin() {
            return Err(ServiceError::Forbidden(
                "only an admin token may remove orphaned containers".into(),
            ));
        }
        let this = self.clone();
        detached(async move { this.cleanup_now(dry_run).await }).await
    }

    async fn cleanup_now(&self, dry_run: bool) -> Result<ReconcileReport> {
        self.locked(async |fence| {
            let mut r = self.scan().await?;
            r.dry_run = dry_run;
            if dry_run {
                return Ok(r);
            }
            let engine = self.engine().await?;
            for o in &r.orphans {
                let opts = RemoveContainerOptionsBuilder::default().force(true).build();
                match engine.remove_container(&o.container_id, Some(opts)).await {
                    Ok(())
                    | Err(EngineError::DockerResponseServerError {
                        status_code: 404, ..
                    }) => r.removed.push(o.container_name.clone()),
                    Err(e) => return Err(self.engine_error("removing an orphan", e)),
                }
            }
            // Released only if still unlisted: each delete checks the entry is unchanged.
            let store = self.inner.cp.store();
            for key in &r.stale_allocations {
                let Some(raw) = store.get(Collection::PortAllocations, key).await? else {
                    continue;
                };
                let batch = Batch {
                    checks: vec![
                        Check::Equals(Collection::PortAllocations, key.clone(), raw),
                        fence.clone(),
                    ],
                    writes: vec![Write::Delete(Collection::PortAllocations, key.clone())],
                };
                if store.apply(batch).await.is_ok() {
                    r.released.push(key.clone());
                }
            }
            if !r.removed.is_empty() || !r.released.is_empty() {
                tracing::info!(removed = ?r.removed, released = ?r.released, "cleanup removed orphaned containers and allocations");
            }
            Ok(r)
        })
        .await
    }

    /// Reconciles at start and then every `every`: logs each orphan, missing service and
    /// stale allocation once when it appears. A pass is skipped while another control plane
    /// holds the lock (it is doing the same), and when the engine is unreachable.
    pub fn spawn_reconcile(&self, every: Duration) {
        let this = self.clone();
        let every = every.max(Duration::from_secs(1));
        tokio::spawn(async move {
            let mut seen: HashSet<String> = HashSet::new();
            loop {
                if let Ok(Some(held)) = this.inner.cp.leases().hold(ENGINE_LOCK).await {
                    let pass = this.scan().await;
                    held.release().await;
                    match pass {
                        Ok(r) => {
                            let mut now = HashSet::new();
                            for o in &r.orphans {
                                let k = format!("orphan:{}", o.container_id);
                                if !seen.contains(&k) {
                                    tracing::warn!(container = %o.container_name, service = %o.service, "orphaned managed container (no service record); `portcullis service cleanup` removes it");
                                }
                                now.insert(k);
                            }
                            for m in &r.missing {
                                let k = format!("missing:{m}");
                                if !seen.contains(&k) {
                                    tracing::warn!(service = %m, "the service's container was removed behind Portcullis' back");
                                }
                                now.insert(k);
                            }
                            for a in &r.stale_allocations {
                                let k = format!("stale:{a}");
                                if !seen.contains(&k) {
                                    tracing::warn!(port = %a, "host-port allocation without a service record");
                                }
                                now.insert(k);
                            }
                            seen = now;
                        }
                        Err(e) => tracing::debug!(error = %e, "reconciliation skipped"),
                    }
                }
                tokio::time::sleep(every).await;
            }
        });
    }
}
