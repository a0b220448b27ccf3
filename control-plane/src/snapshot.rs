//! Builds versioned config snapshots from the store and publishes the newest one to every
//! data-plane stream.
//!
//! One task owns publishing: it wakes when a local write commits and, on Redis, when any
//! control plane's write is announced on the revision channel (`Store::watch_revisions`),
//! so a write through one control plane reaches the data planes of every other within one
//! build. A slow poll of the store's revision remains as the safety net for an announcement
//! lost while the subscription reconnected.

use std::collections::HashSet;
use std::time::Duration;

use portcullis_proto::EncodedSnapshot;
use portcullis_proto::v1 as pb;
use tokio::sync::watch;

use crate::model::{
    CertStatus, CertificateRecord, ChallengeKind, ChallengeRecord, ExternalService, Proxy, Route,
    TargetKind,
};
use crate::oauth::{RevokedToken, SigningKeyRecord};
use crate::secrets::MasterKey;
use crate::store::{Consistent, RecordSet as _, Revisions, Store, StoreError};

/// The least time between the end of one build and the start of the next, so a burst of
/// writes (a script, a bulk import) becomes a few snapshots instead of one per write: at
/// 10,000 proxies a build costs ~100 ms and every data plane then compiles what it
/// receives. A write after a quiet spell is built at once (the leading edge): waiting
/// here would add to every single write's propagation (bench/README.md, finding 8).
const COALESCE: Duration = Duration::from_millis(5);

/// The newest snapshot, encoded once for every stream; `None` until the first is built.
pub type SnapshotRx = watch::Receiver<Option<EncodedSnapshot>>;

/// Reads proxies, routes and services at one revision and turns them into a snapshot.
///
/// Routes whose references vanished (a race between deleting a proxy and creating a route
/// that points at it) are left out rather than sent, so one dangling route cannot make
/// every data plane reject the whole snapshot.
pub async fn build(store: &Store, key: &MasterKey) -> Result<pb::ConfigSnapshot, StoreError> {
    let view = store
        .read_consistent(&SnapshotRecords::collections())
        .await?;
    from_view(view, key)
}

/// Everything a snapshot is made of, read at one revision.
type SnapshotRecords = (
    Vec<Proxy>,
    Vec<Route>,
    Vec<ExternalService>,
    Vec<CertificateRecord>,
    Vec<ChallengeRecord>,
    Vec<SigningKeyRecord>,
    Vec<RevokedToken>,
);

/// The snapshot of one consistent read. An answer of the wrong shape is an error, so the
/// publisher keeps the previous snapshot instead of sending one without proxies.
fn from_view(view: Consistent, key: &MasterKey) -> Result<pb::ConfigSnapshot, StoreError> {
    let revision = view.revision;
    let (proxies, routes, services, certs, challenges, signing_keys, revoked) =
        view.records::<SnapshotRecords>()?;

    let hosts: HashSet<&str> = proxies.iter().map(|p| p.hostname.as_str()).collect();
    let names: HashSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
    let routes: Vec<pb::Route> = routes
        .into_iter()
        .filter_map(|mut r| {
            let target_ok = match r.target_kind {
                TargetKind::Url => true,
                TargetKind::Service => names.contains(r.target_value.as_str()),
                TargetKind::Proxy => hosts.contains(r.target_value.as_str()),
            };
            let was_scoped = !r.proxy_hostnames.is_empty();
            r.proxy_hostnames.retain(|h| hosts.contains(h.as_str()));
            let scope_ok = !was_scoped || !r.proxy_hostnames.is_empty();
            if target_ok && scope_ok {
                Some(r.into())
            } else {
                tracing::warn!(route = %r.id, "route refers to a deleted proxy or service; left out of the snapshot");
                None
            }
        })
        .collect();

    let now = crate::model::now();
    let certificates = certs
        .into_iter()
        .filter(|c| c.status == CertStatus::Valid && (c.not_after == 0 || c.not_after > now))
        .filter_map(|c| match key.open(&c.private_key_sealed) {
            Ok(pem) => Some(pb::TlsCertificate {
                name: c.name,
                domains: c.domains,
                cert_chain_pem: c.cert_chain_pem,
                private_key_pem: String::from_utf8_lossy(&pem).into_owned(),
            }),
            Err(e) => {
                tracing::error!(certificate = %c.name, error = %e, "cannot unseal key; certificate left out");
                None
            }
        })
        .collect();
    let mut acme_http01 = Vec::new();
    let mut acme_tls_alpn01 = Vec::new();
    for ch in challenges {
        match ch.kind {
            ChallengeKind::Http01 => acme_http01.push(pb::AcmeHttp01Challenge {
                token: ch.token,
                key_authorization: ch.key_authorization,
            }),
            ChallengeKind::TlsAlpn01 => match key.open(&ch.private_key_sealed) {
                Ok(pem) => acme_tls_alpn01.push(pb::AcmeTlsAlpnChallenge {
                    domain: ch.domain,
                    cert_pem: ch.cert_pem,
                    private_key_pem: String::from_utf8_lossy(&pem).into_owned(),
                }),
                Err(e) => {
                    tracing::error!(domain = %ch.domain, error = %e, "cannot unseal challenge key")
                }
            },
        }
    }

    Ok(pb::ConfigSnapshot {
        version: revision,
        proxies: proxies
            .into_iter()
            .map(|p| crate::oauth::edge_session::with_session_key(p.into(), key))
            .collect(),
        routes,
        services: services.into_iter().map(Into::into).collect(),
        certificates,
        acme_http01,
        acme_tls_alpn01,
        // Public halves only: data planes verify, they never sign.
        jwks_json: if signing_keys.is_empty() {
            String::new()
        } else {
            crate::oauth::keys::jwks_from_records(&signing_keys).to_string()
        },
        revocations: revoked
            .into_iter()
            .filter(|r| r.expires_at > now)
            .map(|r| pb::Revocation {
                kind: r.wire_kind().to_owned(),
                issued_before: r.issued_before,
                value: r.jti,
                expires_at: r.expires_at,
            })
            .collect(),
        ..Default::default()
    })
}

/// What the publisher reads from, stamps on every snapshot and wakes on.
pub struct Source {
    /// The store snapshots are read from.
    pub store: Store,
    /// Unseals certificate and challenge keys for data planes.
    pub key: MasterKey,
    /// The OAuth issuer data planes trust.
    pub oauth_issuer: String,
    /// Local writes report here, and so does the store's watch of others' writes.
    pub revisions: Revisions,
}

/// Starts the publisher task and returns the receiver every stream clones.
pub fn spawn_publisher(source: Source, poll: Duration) -> SnapshotRx {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let Source {
            store,
            key,
            oauth_issuer,
            revisions,
        } = source;
        let mut newer = revisions.subscribe();
        store.watch_revisions(&revisions);
        let mut ticker = tokio::time::interval(poll);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut published: Option<u64> = None;
        let mut stale = true;
        let mut built_at = tokio::time::Instant::now();
        loop {
            if stale {
                stale = false;
                match build(&store, &key).await.map(|mut snap| {
                    snap.oauth_issuer = oauth_issuer.clone();
                    snap
                }) {
                    Ok(snap) if published.is_none_or(|v| snap.version > v) => {
                        published = Some(snap.version);
                        // Exported as a span when tracing is on; data planes' ACKs are
                        // `snapshot.ack` spans with the same `snapshot.version`.
                        let _span = tracing::info_span!(
                            "snapshot.publish",
                            snapshot.version = crate::telemetry::int(snap.version),
                        )
                        .entered();
                        tracing::info!(
                            version = snap.version,
                            proxies = snap.proxies.len(),
                            routes = snap.routes.len(),
                            "publishing config snapshot"
                        );
                        tx.send_replace(Some(EncodedSnapshot::new(&snap)));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        stale = true;
                        tracing::error!(error = %e, "cannot build config snapshot; data planes keep the previous one")
                    }
                }
                built_at = tokio::time::Instant::now();
            }
            tokio::select! {
                changed = newer.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // Writes committed during the pause are read by the build below.
                    tokio::time::sleep_until(built_at + COALESCE).await;
                    newer.mark_unchanged();
                    stale = true;
                }
                _ = ticker.tick() => match store.revision().await {
                    // Wakes `newer` when another control plane wrote.
                    Ok(rev) => revisions.observe(rev),
                    Err(e) => tracing::warn!(error = %e, "store revision poll failed"),
                },
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_answer_of_the_wrong_shape_is_an_error_not_an_empty_snapshot() {
        let key = MasterKey::from_bytes(&[7; 32]).unwrap();
        // One collection short, or none at all: data planes would drop every proxy.
        for lists in [0, 6] {
            let view = Consistent {
                revision: 9,
                collections: vec![Vec::new(); lists],
            };
            assert!(
                matches!(
                    from_view(view, &key),
                    Err(StoreError::Shape { expected: 7, got }) if got == lists
                ),
                "{lists} collections"
            );
        }
        let view = Consistent {
            revision: 9,
            collections: vec![Vec::new(); 7],
        };
        assert_eq!(from_view(view, &key).unwrap().version, 9);
    }
}
