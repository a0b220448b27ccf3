//! The certificate issuer: a background task that orders the certificates the service layer
//! queues (see [`crate::acme::OrderQueue`]) and, on a schedule, renews, retries or expires
//! every certificate as [`crate::acme::renewal`] decides. ACME orders (HTTP-01 and
//! TLS-ALPN-01) and self-signed development certificates. Results land in the store and
//! reach data planes through the next snapshot; failures land in the certificate's record
//! (`status`, `error`), which is where callers see them.
//!
//! The CA is asked to validate only after every connected data plane has ACKed the snapshot
//! version that carries the challenge answer.

use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, CertificateIdentifier, ChallengeType, Identifier, NewOrder,
    OrderStatus, RetryPolicy,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use tracing::Instrument as _;

use crate::acme::order_lock;
use crate::acme::renewal::{AriAnswer, RenewAction, next_ari_state, renew_action, shown_status};
use crate::error::ServiceError;
use crate::metrics::{self, AcmeEvent};
use crate::model::pem::{parse_validity, self_signed};
use crate::model::{
    AriState, CertSource, CertStatus, CertificateRecord, ChallengeKind, ChallengeRecord, now,
};
use crate::service::ControlPlane;
use crate::store::{Batch, Check, Collection, Record, StoreError, Write, decode};

mod account;

use account::{account, register};

/// Why an issuance attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The CA or the ACME protocol said no; the message is the CA's.
    #[error("{0}")]
    Acme(#[from] instant_acme::Error),
    /// The CA rejected a challenge or the order.
    #[error("{0}")]
    Rejected(String),
    /// The ACME account could not be created or loaded; no order was placed.
    #[error("{0}")]
    Account(String),
    /// Key or CSR generation failed.
    #[error("key generation: {0}")]
    Keys(#[from] rcgen::Error),
    /// Reading or writing state failed.
    #[error("{0}")]
    Service(#[from] ServiceError),
}

/// Starts the issuer: orders every name the service layer queues, and checks every
/// certificate each `renew_every` (renews, retries or expires as needed). The queue's
/// receiver is taken once; a second call only adds another renewal schedule.
pub fn spawn(cp: ControlPlane, renew_every: Duration) {
    if let Some(mut names) = cp.orders().take_receiver() {
        let cp = cp.clone();
        tokio::spawn(async move {
            while let Some(name) = names.recv().await {
                spawn_issue(cp.clone(), name, Why::Asked);
            }
        });
    }
    spawn_adopter(cp.clone());
    spawn_renewer(cp, renew_every);
}

/// Takes over orders whose control plane died mid-order: every third of the lease TTL,
/// looks for order leases that expired unreleased and orders those certificates again
/// (under a fresh lease, if still needed). So an order moves within the TTL and a third.
fn spawn_adopter(cp: ControlPlane) {
    tokio::spawn(async move {
        let every = cp.leases().ttl() / 3;
        let prefix = order_lock("");
        loop {
            tokio::time::sleep(every).await;
            match cp.leases().expired(&prefix).await {
                Ok(names) => {
                    for lease in names {
                        let Some(name) = lease.strip_prefix(&prefix) else {
                            continue;
                        };
                        tracing::warn!(certificate = %name, "taking over an order whose control plane stopped");
                        spawn_issue(cp.clone(), name.to_owned(), Why::Due);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot look for abandoned orders"),
            }
        }
    });
}

/// Why an order starts; decides what is re-checked once its lease is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Why {
    /// Asked for through the API (create, convert to production): always ordered.
    Asked,
    /// The renewal schedule found it due, or found an order whose control plane died:
    /// ordered only if, read again under the lease, it still needs one (the record may
    /// have been finished meanwhile by the control plane that held the lease).
    Due,
}

/// Orders `name` in the background under its lease (see [`crate::lease`]); its record ends
/// `valid` or `failed`. If another task or control plane holds the lease, does nothing.
/// Every write of the order is fenced: a control plane that lost the lease (paused past
/// its TTL while another took over) cannot overwrite the other's result.
fn spawn_issue(cp: ControlPlane, name: String, why: Why) {
    tokio::spawn(async move {
        let lease = match cp.leases().hold(&order_lock(&name)).await {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                tracing::info!(certificate = %name, "another control plane is ordering this certificate");
                return;
            }
            Err(e) => {
                tracing::warn!(certificate = %name, error = %e, "cannot take the order's lease; retried on schedule");
                return;
            }
        };
        if why == Why::Due {
            match cp.certificate_record(&name).await {
                Ok(rec) if needs_order(&rec, now()) => {}
                _ => {
                    lease.release().await;
                    return;
                }
            }
        }
        let fence = lease.fence();
        // Exported as a span when tracing is on; a failed order marks it failed.
        let span = tracing::info_span!("acme.order", certificate.name = %name, otel.status_code = tracing::field::Empty);
        if let Err(e) = issue(&cp, &name, &fence).instrument(span.clone()).await {
            span.record("otel.status_code", "error");
            metrics::acme(AcmeEvent::Failure);
            let error = error_chain(&e);
            tracing::warn!(certificate = %name, %error, "certificate order failed");
            let _ = cp
                .update_certificate_fenced(&name, Some(&fence), |c| {
                    c.status = if c.cert_chain_pem.is_empty() {
                        CertStatus::Failed
                    } else {
                        c.status
                    };
                    c.error = error.clone();
                    c.renewal_failures = c.renewal_failures.saturating_add(1);
                })
                .await;
        }
        lease.release().await;
    });
}

/// Whether a certificate read under its lease still needs an order: pending (its order
/// never finished) or due by the renewal policy.
fn needs_order(rec: &CertificateRecord, now: i64) -> bool {
    rec.source != CertSource::Uploaded
        && (rec.status == CertStatus::Pending || renew_action(rec, now) == RenewAction::Order)
}

async fn issue(cp: &ControlPlane, name: &str, fence: &Check) -> Result<(), AcmeError> {
    let rec = cp.certificate_record(name).await?;
    cp.update_certificate_fenced(name, Some(fence), |c| c.last_attempt_at = now())
        .await?;
    if rec.source == CertSource::SelfSigned {
        let (chain, key) = self_signed(&rec.domains)?;
        return store_issued(cp, name, fence, &chain, &key, AriState::default()).await;
    }
    metrics::acme(if rec.cert_chain_pem.is_empty() {
        AcmeEvent::Order
    } else {
        AcmeEvent::Renewal
    });
    // Account problems (e.g. a missing External Account Binding) are not a challenge
    // problem: fail once, with the CA's reason, instead of trying the other challenge.
    let mut account = account(cp, &rec.acme_directory, &rec.email).await?;
    let issued = match order(cp, fence, &account.acme, &rec).await {
        // The CA forgot the account (a reset Pebble or step-ca): the stored one is useless
        // from now on, so register again and replace it rather than fail every order.
        Err(e) if e.account_gone() => {
            tracing::warn!(
                certificate = %name,
                directory = %rec.acme_directory,
                error = %error_chain(&e),
                "the CA no longer knows the ACME account; registering a new one"
            );
            account = register(cp, &rec.acme_directory, &rec.email, Some(account.record)).await?;
            order(cp, fence, &account.acme, &rec).await
        }
        other => other,
    };
    let (chain, key) = issued?;
    let ari = next_ari_state(
        &AriState::default(),
        fetch_renewal_info(&account.acme, &chain).await,
        now(),
    );
    store_issued(cp, name, fence, &chain, &key, ari).await
}

/// Stores a new certificate and key in `name`'s record, which becomes `valid`.
async fn store_issued(
    cp: &ControlPlane,
    name: &str,
    fence: &Check,
    chain: &str,
    key: &str,
    ari: AriState,
) -> Result<(), AcmeError> {
    let (issuer, not_before, not_after) = parse_validity(chain);
    let sealed = cp.master_key().seal(key.as_bytes());
    cp.update_certificate_fenced(name, Some(fence), |c| {
        c.cert_chain_pem = chain.to_owned();
        c.private_key_sealed = sealed.clone();
        c.status = CertStatus::Valid;
        c.error.clear();
        c.renewal_failures = 0;
        c.issuer = issuer.clone();
        c.not_before = not_before;
        c.not_after = not_after;
        c.ari = ari.clone();
    })
    .await?;
    tracing::info!(certificate = %name, "certificate issued");
    Ok(())
}

/// Orders with the certificate's challenge type, then with the other one if the first failed
/// for a reason the other type may not meet. An account the CA does not know fails both,
/// so it is returned at once.
async fn order(
    cp: &ControlPlane,
    fence: &Check,
    account: &Account,
    rec: &CertificateRecord,
) -> Result<(String, String), AcmeError> {
    let first = rec.challenge;
    let e1 = match attempt(cp, fence, account, rec, first).await {
        Ok(issued) => return Ok(issued),
        Err(e) if e.account_gone() => return Err(e),
        Err(e) => error_chain(&e),
    };
    tracing::info!(certificate = %rec.name, error = %e1, "retrying with the other challenge type");
    let issued = attempt(cp, fence, account, rec, first.other())
        .await
        .map_err(|e2| {
            let e2 = error_chain(&e2);
            AcmeError::Rejected(format!("{first:?}: {e1}; {:?}: {e2}", first.other()))
        })?;
    tracing::info!(certificate = %rec.name, challenge = ?first.other(), "issued with the fallback challenge type");
    Ok(issued)
}

async fn attempt(
    cp: &ControlPlane,
    fence: &Check,
    account: &Account,
    rec: &CertificateRecord,
    kind: ChallengeKind,
) -> Result<(String, String), AcmeError> {
    let ids: Vec<Identifier> = rec
        .domains
        .iter()
        .map(|d| Identifier::Dns(d.clone()))
        .collect();
    let mut order = account.new_order(&NewOrder::new(&ids)).await?;
    let ty = match kind {
        ChallengeKind::Http01 => ChallengeType::Http01,
        ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };

    // Pass 1: compute every answer and publish them in one snapshot.
    let mut answers = Vec::new();
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let mut authz = authz?;
        match authz.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            other => return Err(AcmeError::Rejected(format!("authorization is {other:?}"))),
        }
        let domain = authz.identifier().to_string();
        let ch = authz.challenge(ty.clone()).ok_or_else(|| {
            AcmeError::Rejected(format!("the CA offers no {kind:?} challenge for {domain}"))
        })?;
        let ka = ch.key_authorization();
        let mut answer = ChallengeRecord {
            certificate: rec.name.clone(),
            kind,
            domain: domain.clone(),
            token: ch.token.clone(),
            key_authorization: ka.as_str().to_owned(),
            cert_pem: String::new(),
            private_key_sealed: String::new(),
        };
        if kind == ChallengeKind::TlsAlpn01 {
            let key = rcgen::KeyPair::generate()?;
            let mut params = rcgen::CertificateParams::new(vec![domain])?;
            params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(
                ka.digest().as_ref(),
            )];
            answer.cert_pem = params.self_signed(&key)?.pem();
            answer.private_key_sealed = cp.master_key().seal(key.serialize_pem().as_bytes());
        }
        answers.push(answer);
    }
    let keys: Vec<String> = answers.iter().map(Record::key).collect();
    let result = async {
        let writes = answers.iter().map(Write::put).collect();
        let rev = cp
            .store()
            .apply(Batch {
                checks: vec![fence.clone()],
                writes,
            })
            .await
            .map_err(|e| match e {
                StoreError::CheckFailed(_) => AcmeError::Rejected(
                    "this control plane lost the order's lease to another".into(),
                ),
                e => ServiceError::from(e).into(),
            })?;
        cp.observe_revision(rev);
        cp.wait_for_data_planes(rev, cp.acme().ack_timeout).await?;

        // Pass 2: tell the CA to validate.
        let mut authzs = order.authorizations();
        while let Some(authz) = authzs.next().await {
            let mut authz = authz?;
            if authz.status != AuthorizationStatus::Pending {
                continue;
            }
            if let Some(mut ch) = authz.challenge(ty.clone()) {
                ch.set_ready().await?;
            }
        }
        let policy = RetryPolicy::new().timeout(cp.acme().order_timeout);
        let status = order.poll_ready(&policy).await?;
        if status != OrderStatus::Ready {
            return Err(AcmeError::Rejected(order_errors(&mut order).await));
        }
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(rec.domains.clone())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params.serialize_request(&key)?;
        order.finalize_csr(csr.der()).await?;
        let chain = order.poll_certificate(&policy).await?;
        Ok((chain, key.serialize_pem()))
    }
    .await;
    // Challenge answers are removed whatever happened.
    let deletes = keys
        .into_iter()
        .map(|k| Write::Delete(Collection::AcmeChallenges, k))
        .collect();
    if let Ok(rev) = cp
        .store()
        .apply(Batch {
            checks: vec![],
            writes: deletes,
        })
        .await
    {
        cp.observe_revision(rev);
    }
    result
}

/// The CA's own words on why an order failed.
async fn order_errors(order: &mut instant_acme::Order) -> String {
    let mut msgs = Vec::new();
    if let Some(e) = &order.state().error {
        msgs.push(e.to_string());
    }
    let mut authzs = order.authorizations();
    while let Some(Ok(mut authz)) = authzs.next().await {
        if let Ok(state) = authz.refresh().await {
            for ch in &state.challenges {
                if let Some(e) = &ch.error {
                    msgs.push(format!("{}: {e}", state.identifier()));
                }
            }
        }
    }
    if msgs.is_empty() {
        "the order became invalid".into()
    } else {
        msgs.join("; ")
    }
}

/// `e` and every error under it, so that "client error (Connect)" says why: "…: tcp connect
/// error: Connection refused (os error 111)", or the TLS or DNS failure. Libraries differ
/// on whether a message already includes its source; a source whose text is already shown
/// is skipped.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

/// Asks the CA when to renew the leaf of `chain_pem` (RFC 9773). Only a directory that
/// advertises `renewalInfo` is asked; instant-acme reports the others as unsupported.
async fn fetch_renewal_info(account: &Account, chain_pem: &str) -> AriAnswer {
    let Some(Ok(leaf)) = CertificateDer::pem_slice_iter(chain_pem.as_bytes()).next() else {
        return AriAnswer::Failed;
    };
    let id = match CertificateIdentifier::try_from(&leaf) {
        Ok(id) => id,
        Err(e) => {
            tracing::info!(error = %e, "no renewal info: the certificate has no usable identifier");
            return AriAnswer::Unsupported;
        }
    };
    match account.renewal_info(&id).await {
        Ok((info, retry_after)) => AriAnswer::Window {
            start: info.suggested_window.start.unix_timestamp(),
            end: info.suggested_window.end.unix_timestamp(),
            retry_after: i64::try_from(retry_after.as_secs()).unwrap_or(i64::MAX),
        },
        Err(instant_acme::Error::Unsupported(_)) => AriAnswer::Unsupported,
        Err(e) => {
            tracing::info!(error = %error_chain(&e), "renewal info request failed");
            AriAnswer::Failed
        }
    }
}

/// Refreshes the CA's renewal window for `name` in the background.
fn spawn_ari_refresh(cp: ControlPlane, name: String) {
    tokio::spawn(async move {
        let Ok(rec) = cp.certificate_record(&name).await else {
            return;
        };
        let answer = match account(&cp, &rec.acme_directory, &rec.email).await {
            Ok(account) => fetch_renewal_info(&account.acme, &rec.cert_chain_pem).await,
            Err(e) => {
                tracing::info!(certificate = %name, error = %error_chain(&e), "renewal info: no ACME account");
                AriAnswer::Failed
            }
        };
        let next = next_ari_state(&rec.ari, answer, now());
        // Only for the certificate we asked about; a renewal meanwhile brought its own.
        let _ = cp
            .update_certificate(&name, |c| {
                if c.cert_chain_pem == rec.cert_chain_pem {
                    c.ari = next.clone();
                }
            })
            .await;
    });
}

/// Checks every certificate each `interval` and renews, retries or expires as needed.
fn spawn_renewer(cp: ControlPlane, interval: Duration) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        loop {
            ticker.tick().await;
            let records: Vec<CertificateRecord> =
                match cp.store().list(Collection::Certificates).await {
                    // One corrupt record must not stop the renewal of the others.
                    Ok(raw) => raw
                        .iter()
                        .filter_map(|(k, v)| match decode(Collection::Certificates, k, v) {
                            Ok(rec) => Some(rec),
                            Err(e) => {
                                tracing::warn!(error = %e, "renewal check skips a certificate");
                                None
                            }
                        })
                        .collect(),
                    Err(e) => {
                        tracing::warn!(error = %e, "renewal check cannot read certificates");
                        continue;
                    }
                };
            let now = now();
            for rec in records {
                if shown_status(&rec, now) == CertStatus::Expiring {
                    tracing::warn!(
                        certificate = %rec.name,
                        not_after = rec.not_after,
                        failures = rec.renewal_failures,
                        last_error = %rec.error,
                        "certificate is expiring: inside its renewal window and not renewed yet"
                    );
                }
                if rec.source == CertSource::Acme
                    && rec.status == CertStatus::Valid
                    && rec.ari.next_check <= now
                    && now < rec.not_after
                {
                    spawn_ari_refresh(cp.clone(), rec.name.clone());
                }
                // Queued on a control plane that died before it took the order's lease
                // (a running order renews its lease, so this does nothing to it).
                let stale = 2 * cp.leases().ttl().as_secs() as i64;
                if rec.status == CertStatus::Pending
                    && rec.source != CertSource::Uploaded
                    && rec.last_attempt_at + stale < now
                {
                    spawn_issue(cp.clone(), rec.name, Why::Due);
                    continue;
                }
                match renew_action(&rec, now) {
                    RenewAction::Wait => {}
                    RenewAction::Expire => {
                        tracing::warn!(certificate = %rec.name, "certificate expired");
                        let _ = cp
                            .update_certificate(&rec.name, |c| c.status = CertStatus::Expired)
                            .await;
                        spawn_issue(cp.clone(), rec.name, Why::Due);
                    }
                    RenewAction::Order => {
                        tracing::info!(certificate = %rec.name, failures = rec.renewal_failures, "renewing certificate");
                        spawn_issue(cp.clone(), rec.name, Why::Due);
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::account::account_error;
    use super::*;
    use crate::model::pem::DEV_CERT_LIFETIME_SECS;

    #[tokio::test]
    async fn renewing_a_development_certificate_makes_a_new_one_without_a_ca() {
        use crate::model::{CertificateInput, ProxyInput};
        let dir = tempfile::tempdir().unwrap();
        let cp = ControlPlane::new(crate::store::Store::open_embedded(dir.path()).unwrap())
            .await
            .unwrap();
        let token = cp.bootstrap_admin_token().await.unwrap().unwrap();
        let admin = cp.authenticate_api(&token.secret).await.unwrap();
        let proxy = ProxyInput {
            hostname: "dev.localhost".into(),
            target_url: "http://127.0.0.1:1".into(),
            ..Default::default()
        };
        cp.create_proxy(&admin, proxy).await.unwrap();
        let input = CertificateInput {
            name: "dev".into(),
            domains: vec!["dev.localhost".into()],
            self_signed: Some(true),
            ..Default::default()
        };
        cp.create_certificate(&admin, input).await.unwrap();
        let before = cp.certificate_record("dev").await.unwrap();
        let lease = cp.leases().hold("test").await.unwrap().unwrap();
        issue(&cp, "dev", &lease.fence()).await.unwrap();
        let after = cp.certificate_record("dev").await.unwrap();
        assert_ne!(after.cert_chain_pem, before.cert_chain_pem);
        assert_ne!(after.private_key_sealed, before.private_key_sealed);
        assert_eq!(
            (after.status, after.error.as_str()),
            (CertStatus::Valid, "")
        );
        assert_eq!(after.acme_directory, "", "no CA was asked");
        assert_eq!(after.not_after - after.not_before, DEV_CERT_LIFETIME_SECS);
    }

    #[test]
    fn errors_show_every_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("client error (Connect)")]
        struct Client(#[source] Connect);
        #[derive(Debug, thiserror::Error)]
        #[error("tcp connect error")]
        struct Connect(#[source] std::io::Error);
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        // What instant-acme returns when the directory cannot be reached.
        let e = AcmeError::Acme(instant_acme::Error::Other(Box::new(Client(Connect(
            refused,
        )))));
        assert_eq!(
            error_chain(&e),
            "client error (Connect): tcp connect error: refused"
        );
        let e = account_error("https://ca.test/dir", instant_acme::Error::Str("x"), false);
        assert_eq!(
            error_chain(&e),
            "ACME account at https://ca.test/dir could not be created: missing data: x"
        );
    }
}
