//! Certificate issuance: ACME orders (HTTP-01 and TLS-ALPN-01) and self-signed development
//! certificates. Runs in background tasks; results land in the store and reach data planes
//! through the next snapshot.
//!
//! The CA is asked to validate only after every connected data plane has ACKed the snapshot
//! version that carries the challenge answer.

use std::path::PathBuf;
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use serde::{Deserialize, Serialize};

use crate::auth;
use crate::error::ServiceError;
use crate::model::{CertStatus, CertificateRecord, ChallengeKind, ChallengeRecord, now};
use crate::service::ControlPlane;
use crate::store::{Batch, Check, Collection, Write};

/// Let's Encrypt production.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt staging.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// Where and how to order certificates.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    /// Directory used unless a request asks for staging.
    pub directory_url: String,
    /// Directory for `staging: true`.
    pub staging_directory_url: String,
    /// Extra CA bundle (PEM) trusted for the directory's own TLS, e.g. Pebble's.
    pub ca_bundle: Option<PathBuf>,
    /// Account contact when a request names none.
    pub default_email: String,
    /// Longest wait for data planes to ACK a challenge before asking the CA anyway.
    pub ack_timeout: Duration,
    /// Longest wait for the CA to validate and issue.
    pub order_timeout: Duration,
}

impl Default for AcmeSettings {
    fn default() -> Self {
        Self {
            directory_url: LETS_ENCRYPT.into(),
            staging_directory_url: LETS_ENCRYPT_STAGING.into(),
            ca_bundle: None,
            default_email: String::new(),
            ack_timeout: Duration::from_secs(30),
            order_timeout: Duration::from_secs(120),
        }
    }
}

/// Why an issuance attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The CA or the ACME protocol said no; the message is the CA's.
    #[error("{0}")]
    Acme(#[from] instant_acme::Error),
    /// The CA rejected a challenge or the order.
    #[error("{0}")]
    Rejected(String),
    /// Key or CSR generation failed.
    #[error("key generation: {0}")]
    Keys(#[from] rcgen::Error),
    /// Reading or writing state failed.
    #[error("{0}")]
    Service(#[from] ServiceError),
}

#[derive(Serialize, Deserialize)]
struct AccountRecord {
    directory: String,
    email: String,
    credentials_sealed: String,
}

/// Orders `name` in the background; its record ends `valid` or `failed`.
pub fn spawn_issue(cp: ControlPlane, name: String) {
    tokio::spawn(async move {
        let Some(lock) = cp
            .try_lock(&format!("acme:{name}"), Duration::from_secs(600))
            .await
        else {
            tracing::info!(certificate = %name, "another control plane is ordering this certificate");
            return;
        };
        if let Err(e) = issue(&cp, &name).await {
            tracing::warn!(certificate = %name, error = %e, "certificate order failed");
            let _ = cp
                .update_certificate(&name, |c| {
                    c.status = if c.cert_chain_pem.is_empty() {
                        CertStatus::Failed
                    } else {
                        c.status
                    };
                    c.error = e.to_string();
                })
                .await;
        }
        cp.unlock(lock).await;
    });
}

async fn issue(cp: &ControlPlane, name: &str) -> Result<(), AcmeError> {
    let rec = cp.certificate_record(name).await?;
    cp.update_certificate(name, |c| c.last_attempt_at = now())
        .await?;
    let first = rec.challenge;
    let (chain, key) = match attempt(cp, &rec, first).await {
        Ok(v) => v,
        Err(e1) => {
            tracing::info!(certificate = %name, error = %e1, "retrying with the other challenge type");
            attempt(cp, &rec, first.other()).await.map_err(|e2| {
                AcmeError::Rejected(format!("{first:?}: {e1}; {:?}: {e2}", first.other()))
            })?
        }
    };
    let (issuer, not_before, not_after) = parse_validity(&chain);
    let sealed = cp.master_key().seal(key.as_bytes());
    cp.update_certificate(name, |c| {
        c.cert_chain_pem = chain.clone();
        c.private_key_sealed = sealed.clone();
        c.status = CertStatus::Valid;
        c.error.clear();
        c.renewal_failures = 0;
        c.issuer = issuer.clone();
        c.not_before = not_before;
        c.not_after = not_after;
    })
    .await?;
    tracing::info!(certificate = %name, "certificate issued");
    Ok(())
}

async fn attempt(
    cp: &ControlPlane,
    rec: &CertificateRecord,
    kind: ChallengeKind,
) -> Result<(String, String), AcmeError> {
    let account = account(cp, &rec.acme_directory, &rec.email).await?;
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
    let keys: Vec<String> = answers.iter().map(challenge_key).collect();
    let result = async {
        let writes = answers
            .iter()
            .map(|a| crate::service::put_record(Collection::AcmeChallenges, &challenge_key(a), a))
            .collect();
        let rev = cp
            .store()
            .apply(Batch {
                checks: vec![],
                writes,
            })
            .await
            .map_err(ServiceError::from)?;
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

fn challenge_key(a: &ChallengeRecord) -> String {
    format!("{}:{}:{}", a.certificate, a.domain, a.token)
}

/// One account per (directory, contact), created once and reused.
async fn account(cp: &ControlPlane, directory: &str, email: &str) -> Result<Account, AcmeError> {
    let key = auth::hash_secret(&format!("{directory}\n{email}"))[..24].to_owned();
    let builder = || match &cp.acme().ca_bundle {
        Some(path) => Account::builder_with_root(path),
        None => Account::builder(),
    };
    if let Some(raw) = cp
        .store()
        .get(Collection::AcmeAccounts, &key)
        .await
        .map_err(ServiceError::from)?
    {
        let rec: AccountRecord = serde_json::from_slice(&raw)
            .map_err(|e| AcmeError::Rejected(format!("stored ACME account is corrupt: {e}")))?;
        let plain = cp
            .master_key()
            .open(&rec.credentials_sealed)
            .map_err(|e| AcmeError::Rejected(e.to_string()))?;
        let creds: AccountCredentials = serde_json::from_slice(&plain)
            .map_err(|e| AcmeError::Rejected(format!("stored ACME account is corrupt: {e}")))?;
        return Ok(builder()?.from_credentials(creds).await?);
    }
    let contact = format!("mailto:{email}");
    let contacts: Vec<&str> = if email.is_empty() {
        vec![]
    } else {
        vec![contact.as_str()]
    };
    let (account, creds) = builder()?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory.to_owned(),
            None,
        )
        .await?;
    let creds_json = serde_json::to_vec(&creds).map_err(|e| AcmeError::Rejected(e.to_string()))?;
    let rec = AccountRecord {
        directory: directory.to_owned(),
        email: email.to_owned(),
        credentials_sealed: cp.master_key().seal(&creds_json),
    };
    // First writer wins; a concurrent creator's account is simply unused.
    let _ = cp
        .store()
        .apply(Batch {
            checks: vec![Check::Absent(Collection::AcmeAccounts, key.clone())],
            writes: vec![crate::service::put_record(
                Collection::AcmeAccounts,
                &key,
                &rec,
            )],
        })
        .await;
    Ok(account)
}

/// Longest wait between retries of a failing order.
const MAX_BACKOFF_SECS: i64 = 6 * 3600;

/// When `rec` should be renewed: with one third of its lifetime left, minus a jitter derived
/// from its name so a fleet of certificates does not renew at once.
pub fn renewal_due(rec: &CertificateRecord) -> i64 {
    let lifetime = (rec.not_after - rec.not_before).max(0);
    let jitter_span = lifetime / 20 + 1;
    let hash = auth::hash_secret(&rec.name);
    let jitter = i64::from_str_radix(&hash[..8], 16).unwrap_or(0) % jitter_span;
    rec.not_after - lifetime / 3 - jitter
}

/// Capped exponential backoff after `failures` failed attempts.
pub fn retry_backoff(failures: u32) -> i64 {
    (60i64 << failures.min(12)).min(MAX_BACKOFF_SECS)
}

/// What the renewer should do with one certificate now.
#[derive(Debug, PartialEq, Eq)]
pub enum RenewAction {
    /// Nothing yet.
    Wait,
    /// Past `not_after`: mark it expired (and order again).
    Expire,
    /// Order a new certificate.
    Order,
}

/// Decides, for ACME certificates, whether to renew, retry or expire.
pub fn renew_action(rec: &CertificateRecord, now: i64) -> RenewAction {
    use crate::model::CertSource;
    if rec.source != CertSource::Acme || rec.status == CertStatus::Pending {
        return RenewAction::Wait;
    }
    if rec.status == CertStatus::Valid && rec.not_after > 0 && now >= rec.not_after {
        return RenewAction::Expire;
    }
    let backoff_over = rec.renewal_failures == 0
        || now - rec.last_attempt_at >= retry_backoff(rec.renewal_failures);
    let due = match rec.status {
        CertStatus::Valid => now >= renewal_due(rec),
        CertStatus::Failed | CertStatus::Expired => true,
        CertStatus::Pending => false,
    };
    if due && backoff_over {
        RenewAction::Order
    } else {
        RenewAction::Wait
    }
}

/// Checks every certificate each `interval` and renews, retries or expires as needed.
pub fn spawn_renewer(cp: ControlPlane, interval: Duration) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        loop {
            ticker.tick().await;
            let records: Vec<CertificateRecord> =
                match cp.store().list(Collection::Certificates).await {
                    Ok(raw) => raw
                        .iter()
                        .filter_map(|(_, v)| serde_json::from_slice(v).ok())
                        .collect(),
                    Err(e) => {
                        tracing::warn!(error = %e, "renewal check cannot read certificates");
                        continue;
                    }
                };
            let now = now();
            for rec in records {
                match renew_action(&rec, now) {
                    RenewAction::Wait => {}
                    RenewAction::Expire => {
                        tracing::warn!(certificate = %rec.name, "certificate expired");
                        let _ = cp
                            .update_certificate(&rec.name, |c| c.status = CertStatus::Expired)
                            .await;
                        spawn_issue(cp.clone(), rec.name);
                    }
                    RenewAction::Order => {
                        tracing::info!(certificate = %rec.name, failures = rec.renewal_failures, "renewing certificate");
                        spawn_issue(cp.clone(), rec.name);
                    }
                }
            }
        }
    });
}

/// A self-signed certificate and key for development names.
pub fn self_signed(domains: &[String]) -> Result<(String, String), rcgen::Error> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(domains.to_vec())?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "Portcullis development certificate",
    );
    Ok((params.self_signed(&key)?.pem(), key.serialize_pem()))
}

/// Issuer and validity of the first certificate in a PEM chain.
pub fn parse_validity(chain_pem: &str) -> (String, i64, i64) {
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(chain_pem.as_bytes()) else {
        return (String::new(), 0, 0);
    };
    match pem.parse_x509() {
        Ok(cert) => (
            cert.issuer().to_string(),
            cert.validity().not_before.timestamp(),
            cert.validity().not_after.timestamp(),
        ),
        Err(_) => (String::new(), 0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CertSource;

    fn rec(status: CertStatus, not_before: i64, not_after: i64) -> CertificateRecord {
        CertificateRecord {
            name: "c".into(),
            domains: vec!["a.example.com".into()],
            owner_token_id: String::new(),
            source: CertSource::Acme,
            acme_directory: String::new(),
            email: String::new(),
            challenge: ChallengeKind::Http01,
            status,
            error: String::new(),
            issuer: String::new(),
            not_before,
            not_after,
            last_attempt_at: 0,
            created_at: 0,
            renewal_failures: 0,
            cert_chain_pem: String::new(),
            private_key_sealed: String::new(),
        }
    }

    #[test]
    fn renews_with_a_third_of_the_lifetime_left() {
        let day = 86_400;
        let r = rec(CertStatus::Valid, 0, 90 * day);
        let due = renewal_due(&r);
        assert!(due <= 60 * day && due > 60 * day - 5 * day, "{due}");
        assert_eq!(renew_action(&r, 30 * day), RenewAction::Wait);
        assert_eq!(renew_action(&r, 61 * day), RenewAction::Order);
        assert_eq!(renew_action(&r, 90 * day), RenewAction::Expire);
    }

    #[test]
    fn failures_back_off_exponentially_up_to_a_cap() {
        assert_eq!(retry_backoff(0), 60);
        assert_eq!(retry_backoff(3), 480);
        assert_eq!(retry_backoff(30), MAX_BACKOFF_SECS);
        let mut r = rec(CertStatus::Failed, 0, 0);
        r.renewal_failures = 2;
        r.last_attempt_at = 1000;
        assert_eq!(renew_action(&r, 1000 + 100), RenewAction::Wait);
        assert_eq!(renew_action(&r, 1000 + 240), RenewAction::Order);
        let mut s = rec(CertStatus::Valid, 0, 0);
        s.source = CertSource::SelfSigned;
        assert_eq!(renew_action(&s, i64::MAX), RenewAction::Wait);
    }
}
