//! Leases with fencing tokens, kept in the store, for work that must run on one control
//! plane at a time when several share Redis: ACME orders and renewals (one lease per
//! certificate), OAuth key rotation and sweeping, request-log retention, and Docker
//! reconciliation, cleanup and port changes (`docker-engine`, `docker::reconcile`).
//!
//! A lease `NAME` is two records in [`Collection::Meta`]:
//! - `lease:NAME` = `{holder, token, expires_at_ms}`, rewritten by every renewal and
//!   deleted on release;
//! - `fence:NAME` = the newest fencing token (decimal), which only ever grows: acquiring
//!   writes `token + 1` in the same batch, and release leaves it.
//!
//! Whoever holds a lease guards its writes with [`Lease::fence`] (`Check::Equals` on
//! `fence:NAME`) in the same batch, so once another control plane has taken the lease over
//! (the holder paused, partitioned or too slow to renew) the stale holder's writes fail
//! with `CheckFailed` and change nothing, whatever it believes.
//!
//! Timing: [`Held`] renews every `ttl / 3`; a control plane waiting for a lease tries every
//! `ttl / 3`; so when a holder dies its work moves within `ttl + ttl / 3` (13.3 s with the
//! default 10 s). Expiry compares each control plane's wall clock with the one that wrote
//! it, so clocks must agree to well under the TTL (NTP does). Costs: one read and one
//! batch per acquisition attempt, one batch per renewal per held lease.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

use crate::store::{Batch, Check, Collection, Store, StoreError, Write};

/// Default time a lease lives without renewal.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// The control planes' shared lease table, as seen by one process (its holder id).
#[derive(Clone)]
pub struct Leases {
    store: Store,
    holder: Arc<str>,
    ttl: Duration,
}

/// A lease this process acquired: its name and fencing token.
#[derive(Debug, Clone)]
pub struct Lease {
    name: String,
    token: u64,
    /// The record as last written by us; renewal and release compare against it.
    value: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
struct LeaseRecord {
    holder: String,
    token: u64,
    expires_at_ms: u64,
}

fn lease_key(name: &str) -> String {
    format!("lease:{name}")
}

fn fence_key(name: &str) -> String {
    format!("fence:{name}")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Expiry of a stored lease record; 0 (expired) when it does not decode.
fn expiry(value: &[u8]) -> u64 {
    serde_json::from_slice::<LeaseRecord>(value).map_or(0, |r| r.expires_at_ms)
}

impl Lease {
    /// The fencing token: grows with every acquisition of this name.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// The lease name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A check that holds only while no one has acquired this lease since us; put it in
    /// every batch the leased work writes.
    pub fn fence(&self) -> Check {
        fence_check(&self.name, self.token)
    }
}

fn fence_check(name: &str, token: u64) -> Check {
    Check::Equals(
        Collection::Meta,
        fence_key(name),
        token.to_string().into_bytes(),
    )
}

impl Leases {
    /// Leases on `store` with [`DEFAULT_TTL`] and a fresh random holder id.
    pub fn new(store: Store) -> Self {
        Self::with_ttl(store, DEFAULT_TTL)
    }

    /// Leases living `ttl` without renewal (at least 1 s).
    pub fn with_ttl(store: Store, ttl: Duration) -> Self {
        Self {
            store,
            holder: format!("{:016x}", rand::random::<u64>()).into(),
            ttl: ttl.max(Duration::from_secs(1)),
        }
    }

    /// How long a lease lives without renewal.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn record(&self, token: u64) -> Vec<u8> {
        let rec = LeaseRecord {
            holder: self.holder.to_string(),
            token,
            expires_at_ms: now_ms() + self.ttl.as_millis() as u64,
        };
        serde_json::to_vec(&rec).unwrap_or_default()
    }

    /// Takes lease `name` if no one holds it (or its holder let it expire). `None` when
    /// someone else holds it, or won the race for it.
    pub async fn try_acquire(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        let (lkey, fkey) = (lease_key(name), fence_key(name));
        let current = self.store.get(Collection::Meta, &lkey).await?;
        if current.as_deref().is_some_and(|v| expiry(v) > now_ms()) {
            return Ok(None);
        }
        let fence = self.store.get(Collection::Meta, &fkey).await?;
        let last: u64 = fence
            .as_deref()
            .and_then(|b| std::str::from_utf8(b).ok()?.parse().ok())
            .unwrap_or(0);
        let token = last + 1;
        let value = self.record(token);
        let same = |key: String, old: Option<Vec<u8>>| match old {
            Some(v) => Check::Equals(Collection::Meta, key, v),
            None => Check::Absent(Collection::Meta, key),
        };
        let batch = Batch {
            checks: vec![same(lkey.clone(), current), same(fkey.clone(), fence)],
            writes: vec![
                Write::Put(Collection::Meta, lkey, value.clone()),
                Write::Put(Collection::Meta, fkey, token.to_string().into_bytes()),
            ],
        };
        match self.store.apply(batch).await {
            Ok(_) => Ok(Some(Lease {
                name: name.to_owned(),
                token,
                value,
            })),
            Err(StoreError::CheckFailed(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Extends `lease` by the TTL from now. `Ok(false)`: it was lost (expired and taken, or
    /// released); its fence no longer holds.
    pub async fn renew(&self, lease: &mut Lease) -> Result<bool, StoreError> {
        let key = lease_key(&lease.name);
        let value = self.record(lease.token);
        let batch = Batch {
            checks: vec![Check::Equals(
                Collection::Meta,
                key.clone(),
                lease.value.clone(),
            )],
            writes: vec![Write::Put(Collection::Meta, key, value.clone())],
        };
        match self.store.apply(batch).await {
            Ok(_) => {
                lease.value = value;
                Ok(true)
            }
            Err(StoreError::CheckFailed(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives `lease` up (if still ours) so another control plane can take it at once. The
    /// fencing token stays, so the next holder's is higher.
    pub async fn release(&self, lease: Lease) -> Result<(), StoreError> {
        let key = lease_key(&lease.name);
        let batch = Batch {
            checks: vec![Check::Equals(Collection::Meta, key.clone(), lease.value)],
            writes: vec![Write::Delete(Collection::Meta, key)],
        };
        match self.store.apply(batch).await {
            Ok(_) | Err(StoreError::CheckFailed(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Whether someone holds lease `name` now (an unexpired record).
    pub async fn held(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .store
            .get(Collection::Meta, &lease_key(name))
            .await?
            .is_some_and(|v| expiry(&v) > now_ms()))
    }

    /// Names under `prefix` whose lease expired without release: their holder died (or
    /// lost the store) mid-work, which someone should take over.
    pub async fn expired(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let now = now_ms();
        let full = lease_key(prefix);
        Ok(self
            .store
            .list(Collection::Meta)
            .await?
            .into_iter()
            .filter(|(k, v)| k.starts_with(&full) && expiry(v) <= now)
            .filter_map(|(k, _)| k.strip_prefix("lease:").map(str::to_owned))
            .collect())
    }

    /// Acquires `name` if free and keeps renewing it in the background until released,
    /// dropped or lost.
    pub async fn hold(&self, name: &str) -> Result<Option<Held>, StoreError> {
        let Some(lease) = self.try_acquire(name).await? else {
            return Ok(None);
        };
        let (lost_tx, lost) = watch::channel(false);
        let (stop, stopped) = oneshot::channel();
        let fence = lease.fence();
        let token = lease.token;
        let task = tokio::spawn(renew_until_stopped(self.clone(), lease, lost_tx, stopped));
        Ok(Some(Held {
            fence,
            token,
            lost,
            stop: Some(stop),
            task: Some(task),
        }))
    }

    /// Runs `job` every `every` on whichever control plane holds lease `name`, forever:
    /// every control plane calls this, one runs the job, and when it dies another takes
    /// over within the TTL and a third of it. `job` gets the fence to put in its batches.
    pub fn spawn_singleton<F, Fut>(self, name: &'static str, every: Duration, mut job: F)
    where
        F: FnMut(Check) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        tokio::spawn(async move {
            let retry = self.ttl / 3;
            loop {
                let mut held = match self.hold(name).await {
                    Ok(Some(held)) => held,
                    Ok(None) => {
                        tokio::time::sleep(retry).await;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(lease = name, error = %e, "cannot acquire lease");
                        tokio::time::sleep(retry).await;
                        continue;
                    }
                };
                tracing::info!(lease = name, token = held.token(), "lease acquired");
                while !held.is_lost() {
                    job(held.fence()).await;
                    tokio::select! {
                        () = tokio::time::sleep(every) => {}
                        () = held.lost() => {}
                    }
                }
                tracing::warn!(
                    lease = name,
                    "lease lost; another control plane runs this now"
                );
            }
        });
    }
}

async fn renew_until_stopped(
    leases: Leases,
    mut lease: Lease,
    lost: watch::Sender<bool>,
    mut stopped: oneshot::Receiver<()>,
) {
    let every = leases.ttl / 3;
    let mut good_until = now_ms() + leases.ttl.as_millis() as u64;
    loop {
        tokio::select! {
            _ = &mut stopped => {
                if let Err(e) = leases.release(lease).await {
                    tracing::warn!(error = %e, "cannot release lease; it expires by itself");
                }
                return;
            }
            () = tokio::time::sleep(every) => {}
        }
        match leases.renew(&mut lease).await {
            Ok(true) => good_until = now_ms() + leases.ttl.as_millis() as u64,
            Ok(false) => {
                tracing::warn!(lease = %lease.name, "lease taken over by another control plane");
                lost.send_replace(true);
                return;
            }
            // The store is away: keep trying; past the expiry another may take it (then
            // the next renewal says so, and the fence already refuses our writes).
            Err(e) => {
                tracing::warn!(lease = %lease.name, error = %e, "cannot renew lease");
                if now_ms() > good_until {
                    lost.send_replace(true);
                    return;
                }
            }
        }
    }
}

/// A lease held and renewed in the background. Dropping it releases it.
pub struct Held {
    fence: Check,
    token: u64,
    lost: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Held {
    /// The fence to put in every batch written under this lease.
    pub fn fence(&self) -> Check {
        self.fence.clone()
    }

    /// The fencing token.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// Whether the lease was lost (taken over, or not renewable past its expiry).
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Resolves once the lease is lost.
    pub async fn lost(&mut self) {
        if self.lost.wait_for(|l| *l).await.is_err() {
            // The renewer ended without losing it (released): never resolves.
            std::future::pending::<()>().await;
        }
    }

    /// Releases the lease and waits until the store says so.
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // The renewer releases it in the background.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests;
