//! Certificate issuance: ACME orders (HTTP-01 and TLS-ALPN-01) and self-signed development
//! certificates. Runs in background tasks; results land in the store and reach data planes
//! through the next snapshot.
//!
//! The CA is asked to validate only after every connected data plane has ACKed the snapshot
//! version that carries the challenge answer.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use instant_acme::{
    Account, AccountBuilder, AccountCredentials, AuthorizationStatus, CertificateIdentifier,
    ChallengeType, ExternalAccountKey, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde::{Deserialize, Serialize};

use crate::auth;
use crate::error::ServiceError;
use crate::model::{AriState, CertStatus, CertificateRecord, ChallengeKind, ChallengeRecord, now};
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
    /// External Account Binding for CAs that only accept accounts tied to one the operator
    /// already holds; used when creating a new ACME account.
    pub eab: Option<Eab>,
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
            eab: None,
        }
    }
}

/// External Account Binding (RFC 8555 §7.3.4): the key id and HMAC key a CA hands out so
/// that new ACME accounts are tied to the operator's existing account with that CA (some
/// CAs, e.g. ZeroSSL or commercial ones, refuse accounts without it).
#[derive(Clone)]
pub struct Eab {
    /// Key id the CA gave.
    pub kid: String,
    /// The HMAC key, decoded. Secret: never printed (see the `Debug` impl).
    hmac_key: Vec<u8>,
}

impl fmt::Debug for Eab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Eab")
            .field("kid", &self.kid)
            .field("hmac_key", &"<redacted>")
            .finish()
    }
}

/// Why the External Account Binding settings were refused at start-up.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EabError {
    /// Only the HMAC key was given.
    #[error("--acme-eab-hmac-key is set but --acme-eab-kid is not; give both or neither")]
    MissingKid,
    /// Only the key id was given.
    #[error("--acme-eab-kid is set but --acme-eab-hmac-key is not; give both or neither")]
    MissingKey,
    /// The HMAC key is not base64url text (the form CAs hand it out in).
    #[error("--acme-eab-hmac-key is not base64url: {0}")]
    BadKey(String),
    /// The HMAC key decodes to nothing.
    #[error("--acme-eab-hmac-key is empty once decoded")]
    EmptyKey,
}

impl Eab {
    /// Builds the binding from `--acme-eab-kid` and `--acme-eab-hmac-key` (base64url, with
    /// or without padding). Both or neither; blank values count as absent so an empty
    /// environment variable does not switch EAB on.
    pub fn from_flags(kid: Option<&str>, hmac_key: Option<&str>) -> Result<Option<Self>, EabError> {
        let kid = kid.map(str::trim).filter(|k| !k.is_empty());
        let key = hmac_key.map(str::trim).filter(|k| !k.is_empty());
        match (kid, key) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(EabError::MissingKid),
            (Some(_), None) => Err(EabError::MissingKey),
            (Some(kid), Some(key)) => {
                let text: String = key
                    .trim_end_matches('=')
                    .chars()
                    .map(|c| match c {
                        '+' => '-',
                        '/' => '_',
                        c => c,
                    })
                    .collect();
                let hmac_key = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(text.as_bytes())
                    .map_err(|e| EabError::BadKey(e.to_string()))?;
                if hmac_key.is_empty() {
                    return Err(EabError::EmptyKey);
                }
                Ok(Some(Self {
                    kid: kid.to_owned(),
                    hmac_key,
                }))
            }
        }
    }

    fn key(&self) -> ExternalAccountKey {
        ExternalAccountKey::new(self.kid.clone(), &self.hmac_key)
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

#[derive(Serialize, Deserialize)]
struct AccountRecord {
    directory: String,
    email: String,
    credentials_sealed: String,
}

/// Name of the lock held while certificate `name` is being ordered; shared through the
/// store so that control planes sharing it never order the same certificate twice at once.
pub fn order_lock(name: &str) -> String {
    format!("acme:{name}")
}

/// Orders `name` in the background; its record ends `valid` or `failed`. If another task or
/// control plane is ordering it already, does nothing.
pub fn spawn_issue(cp: ControlPlane, name: String) {
    tokio::spawn(async move {
        let Some(lock) = cp
            .try_lock(&order_lock(&name), Duration::from_secs(600))
            .await
        else {
            tracing::info!(certificate = %name, "another control plane is ordering this certificate");
            return;
        };
        if let Err(e) = issue(&cp, &name).await {
            let error = error_chain(&e);
            tracing::warn!(certificate = %name, %error, "certificate order failed");
            let _ = cp
                .update_certificate(&name, |c| {
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
        cp.unlock(lock).await;
    });
}

async fn issue(cp: &ControlPlane, name: &str) -> Result<(), AcmeError> {
    let rec = cp.certificate_record(name).await?;
    cp.update_certificate(name, |c| c.last_attempt_at = now())
        .await?;
    if rec.source == crate::model::CertSource::SelfSigned {
        let (chain, key) = self_signed(&rec.domains)?;
        return store_issued(cp, name, &chain, &key, AriState::default()).await;
    }
    // Account problems (e.g. a missing External Account Binding) are not a challenge
    // problem: fail once, with the CA's reason, instead of trying the other challenge.
    let mut account = account(cp, &rec.acme_directory, &rec.email).await?;
    let issued = match order(cp, &account.acme, &rec).await {
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
            order(cp, &account.acme, &rec).await
        }
        other => other,
    };
    let (chain, key) = issued?;
    let ari = next_ari_state(
        &AriState::default(),
        fetch_renewal_info(&account.acme, &chain).await,
        now(),
    );
    store_issued(cp, name, &chain, &key, ari).await
}

/// Stores a new certificate and key in `name`'s record, which becomes `valid`.
async fn store_issued(
    cp: &ControlPlane,
    name: &str,
    chain: &str,
    key: &str,
    ari: AriState,
) -> Result<(), AcmeError> {
    let (issuer, not_before, not_after) = parse_validity(chain);
    let sealed = cp.master_key().seal(key.as_bytes());
    cp.update_certificate(name, |c| {
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
    account: &Account,
    rec: &CertificateRecord,
) -> Result<(String, String), AcmeError> {
    let first = rec.challenge;
    let e1 = match attempt(cp, account, rec, first).await {
        Ok(issued) => return Ok(issued),
        Err(e) if e.account_gone() => return Err(e),
        Err(e) => error_chain(&e),
    };
    tracing::info!(certificate = %rec.name, error = %e1, "retrying with the other challenge type");
    let issued = attempt(cp, account, rec, first.other())
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

/// The ACME problem type a CA answers when it wants an External Account Binding.
const EXTERNAL_ACCOUNT_REQUIRED: &str = "urn:ietf:params:acme:error:externalAccountRequired";

/// The ACME problem type a CA answers to a request signed by an account it does not know,
/// e.g. once it was reset (Pebble keeps accounts in memory; a step-ca database replaced).
const ACCOUNT_DOES_NOT_EXIST: &str = "urn:ietf:params:acme:error:accountDoesNotExist";

/// The RFC 8555 problem type of a CA's refusal, if `e` is one.
fn problem_type(e: &instant_acme::Error) -> Option<&str> {
    match e {
        instant_acme::Error::Api(p) => p.r#type.as_deref(),
        _ => None,
    }
}

impl AcmeError {
    /// Whether the CA said it does not know the account the request was signed with.
    fn account_gone(&self) -> bool {
        matches!(self, Self::Acme(e) if problem_type(e) == Some(ACCOUNT_DOES_NOT_EXIST))
    }
}

/// Says which step failed and, when the CA wants EAB and none is configured, how to fix it.
fn account_error(directory: &str, e: instant_acme::Error, have_eab: bool) -> AcmeError {
    let wants_eab = problem_type(&e) == Some(EXTERNAL_ACCOUNT_REQUIRED);
    let hint = if wants_eab && !have_eab {
        "; this CA requires External Account Binding: set --acme-eab-kid and --acme-eab-hmac-key \
         (PORTCULLIS_ACME_EAB_KID, PORTCULLIS_ACME_EAB_HMAC_KEY)"
    } else {
        ""
    };
    AcmeError::Account(format!(
        "ACME account at {directory} could not be created: {}{hint}",
        error_chain(&e)
    ))
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

fn challenge_key(a: &ChallengeRecord) -> String {
    format!("{}:{}:{}", a.certificate, a.domain, a.token)
}

/// An ACME account and its record exactly as stored, so that replacing the record can check
/// that nobody replaced it first.
struct StoredAccount {
    acme: Account,
    record: Vec<u8>,
}

/// Store key of the account for (directory, contact).
fn account_key(directory: &str, email: &str) -> String {
    auth::hash_secret(&format!("{directory}\n{email}"))[..24].to_owned()
}

fn account_builder(cp: &ControlPlane) -> Result<AccountBuilder, instant_acme::Error> {
    match &cp.acme().ca_bundle {
        Some(path) => Account::builder_with_root(path),
        None => Account::builder(),
    }
}

/// One account per (directory, contact): the stored one, else one registered now.
async fn account(
    cp: &ControlPlane,
    directory: &str,
    email: &str,
) -> Result<StoredAccount, AcmeError> {
    let Some(raw) = cp
        .store()
        .get(Collection::AcmeAccounts, &account_key(directory, email))
        .await
        .map_err(ServiceError::from)?
    else {
        return register(cp, directory, email, None).await;
    };
    let rec: AccountRecord = serde_json::from_slice(&raw)
        .map_err(|e| AcmeError::Rejected(format!("stored ACME account is corrupt: {e}")))?;
    let plain = cp
        .master_key()
        .open(&rec.credentials_sealed)
        .map_err(|e| AcmeError::Rejected(e.to_string()))?;
    let creds: AccountCredentials = serde_json::from_slice(&plain)
        .map_err(|e| AcmeError::Rejected(format!("stored ACME account is corrupt: {e}")))?;
    let acme = account_builder(cp)?
        .from_credentials(creds)
        .await
        .map_err(|e| account_error(directory, e, cp.acme().eab.is_some()))?;
    Ok(StoredAccount { acme, record: raw })
}

/// Registers a new account at the CA and stores it in place of `replacing` (the record read
/// before; `None` when there was none) in one atomic write. If another control plane stored
/// one first, theirs stays and this one serves the current order only.
async fn register(
    cp: &ControlPlane,
    directory: &str,
    email: &str,
    replacing: Option<Vec<u8>>,
) -> Result<StoredAccount, AcmeError> {
    let contact = format!("mailto:{email}");
    let contacts: Vec<&str> = if email.is_empty() {
        vec![]
    } else {
        vec![contact.as_str()]
    };
    let eab = cp.acme().eab.as_ref().map(Eab::key);
    let (acme, creds) = account_builder(cp)?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory.to_owned(),
            eab.as_ref(),
        )
        .await
        .map_err(|e| account_error(directory, e, cp.acme().eab.is_some()))?;
    let creds_json = serde_json::to_vec(&creds).map_err(|e| AcmeError::Rejected(e.to_string()))?;
    let record = serde_json::to_vec(&AccountRecord {
        directory: directory.to_owned(),
        email: email.to_owned(),
        credentials_sealed: cp.master_key().seal(&creds_json),
    })
    .map_err(|e| AcmeError::Rejected(e.to_string()))?;
    let key = account_key(directory, email);
    let check = match replacing {
        None => Check::Absent(Collection::AcmeAccounts, key.clone()),
        Some(old) => Check::Equals(Collection::AcmeAccounts, key.clone(), old),
    };
    let _ = cp
        .store()
        .apply(Batch {
            checks: vec![check],
            writes: vec![Write::Put(Collection::AcmeAccounts, key, record.clone())],
        })
        .await;
    Ok(StoredAccount { acme, record })
}

/// Longest wait between retries of a failing order.
const MAX_BACKOFF_SECS: i64 = 6 * 3600;

/// Bounds on the CA's `Retry-After` for renewal info: often enough to react to a revocation
/// campaign, rarely enough not to hammer the CA (RFC 9773 §4.3.2 asks clients to clamp it).
const ARI_MIN_RECHECK_SECS: i64 = 60;
/// See [`ARI_MIN_RECHECK_SECS`].
const ARI_MAX_RECHECK_SECS: i64 = 24 * 3600;
/// How soon to ask again after a failed renewal-info request.
const ARI_ERROR_RECHECK_SECS: i64 = 3600;

/// The window in which `rec` should be renewed, as `(start, end)` Unix seconds: the CA's
/// suggestion (ACME Renewal Information) when it gave a usable one, else the span just
/// before one third of the lifetime is left (one twentieth of the lifetime wide).
pub fn renewal_window(rec: &CertificateRecord) -> (i64, i64) {
    let ari = &rec.ari;
    if ari.window_start > 0 && ari.window_end > ari.window_start {
        return (ari.window_start, ari.window_end);
    }
    let lifetime = (rec.not_after - rec.not_before).max(0);
    let end = rec.not_after - lifetime / 3;
    (end - lifetime / 20, end)
}

/// When `rec` should be renewed: a point inside [`renewal_window`] derived from its name, so
/// a fleet of certificates does not renew at once (RFC 9773 asks for a random point in the
/// window; a stable one keeps control planes sharing a store in agreement).
pub fn renewal_due(rec: &CertificateRecord) -> i64 {
    let (start, end) = renewal_window(rec);
    let span = (end - start).max(0) + 1;
    let hash = auth::hash_secret(&rec.name);
    let jitter = i64::from_str_radix(&hash[..8], 16).unwrap_or(0) % span;
    end - jitter
}

/// The status the API shows: a stored `valid` becomes `expiring` once the renewal is due
/// and no renewal has replaced the certificate yet (each success moves the window).
pub fn shown_status(rec: &CertificateRecord, now: i64) -> CertStatus {
    if rec.status == CertStatus::Valid && rec.not_after > 0 && now >= renewal_due(rec) {
        CertStatus::Expiring
    } else {
        rec.status
    }
}

/// What a renewal-info request to the CA came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AriAnswer {
    /// The CA's suggested window (Unix seconds) and when to ask again (seconds from now).
    Window {
        /// Window start.
        start: i64,
        /// Window end.
        end: i64,
        /// The CA's `Retry-After`, in seconds.
        retry_after: i64,
    },
    /// The directory advertises no `renewalInfo`: use one third of the lifetime.
    Unsupported,
    /// The request failed; keep what we knew and ask again later.
    Failed,
}

/// The ARI state after `answer`: a usable window replaces the old one; a CA without ARI
/// clears it (one third of the lifetime applies); a failure or a malformed window keeps the
/// previous window. The next check honours `Retry-After` within sane bounds.
pub fn next_ari_state(previous: &AriState, answer: AriAnswer, now: i64) -> AriState {
    match answer {
        AriAnswer::Window {
            start,
            end,
            retry_after,
        } if start > 0 && end > start => AriState {
            window_start: start,
            window_end: end,
            next_check: now + retry_after.clamp(ARI_MIN_RECHECK_SECS, ARI_MAX_RECHECK_SECS),
        },
        AriAnswer::Unsupported => AriState {
            window_start: 0,
            window_end: 0,
            next_check: now + ARI_MAX_RECHECK_SECS,
        },
        AriAnswer::Window { .. } | AriAnswer::Failed => AriState {
            next_check: now + ARI_ERROR_RECHECK_SECS,
            ..previous.clone()
        },
    }
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

/// Decides, for ACME and development certificates, whether to renew, retry or expire.
/// Uploaded ones are the user's to replace.
pub fn renew_action(rec: &CertificateRecord, now: i64) -> RenewAction {
    use crate::model::CertSource;
    if rec.source == CertSource::Uploaded || rec.status == CertStatus::Pending {
        return RenewAction::Wait;
    }
    // Development certificates made before they had a bounded lifetime (valid until 4096,
    // one subject for all) are replaced now.
    if rec.source == CertSource::SelfSigned
        && rec.status == CertStatus::Valid
        && rec.not_after - rec.not_before > DEV_CERT_LIFETIME_SECS
    {
        return RenewAction::Order;
    }
    if rec.status == CertStatus::Valid && rec.not_after > 0 && now >= rec.not_after {
        return RenewAction::Expire;
    }
    let backoff_over = rec.renewal_failures == 0
        || now - rec.last_attempt_at >= retry_backoff(rec.renewal_failures);
    let due = match rec.status {
        CertStatus::Valid | CertStatus::Expiring => now >= renewal_due(rec),
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
                if shown_status(&rec, now) == CertStatus::Expiring {
                    tracing::warn!(
                        certificate = %rec.name,
                        not_after = rec.not_after,
                        failures = rec.renewal_failures,
                        last_error = %rec.error,
                        "certificate is expiring: inside its renewal window and not renewed yet"
                    );
                }
                if rec.source == crate::model::CertSource::Acme
                    && rec.status == CertStatus::Valid
                    && rec.ari.next_check <= now
                    && now < rec.not_after
                {
                    spawn_ari_refresh(cp.clone(), rec.name.clone());
                }
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

/// Lifetime of a development certificate: like an ACME one, renewed by the renewer (no CA
/// involved) with a third of it left, and short of the 825 days macOS accepts for any
/// server certificate.
const DEV_CERT_LIFETIME_SECS: i64 = 90 * 86_400;

/// A self-signed certificate and key for development names. The subject names the first
/// host and the certificate carries key identifiers: a client trusting several of them
/// (each is its own issuer) finds the right one, where OpenSSL used to pick the first
/// certificate with the shared subject and fail its signature.
pub fn self_signed(domains: &[String]) -> Result<(String, String), rcgen::Error> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(domains.to_vec())?;
    let host = domains.first().map(String::as_str).unwrap_or("localhost");
    // RFC 5280 bounds a common name at 64 characters; the key identifiers still tell
    // certificates for longer names apart.
    let cn: String = host.chars().take(64).collect();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.distinguished_name.push(
        rcgen::DnType::OrganizationName,
        "Portcullis development certificate",
    );
    // An explicit non-CA gets the subject key identifier; the authority key identifier of a
    // self-signed certificate names its own key.
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    // A few minutes back, for clients whose clock is slightly behind.
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::minutes(5);
    params.not_after = params.not_before + time::Duration::seconds(DEV_CERT_LIFETIME_SECS);
    Ok((params.self_signed(&key)?.pem(), key.serialize_pem()))
}

/// Serial number of the first certificate in a PEM chain, lowercase hex without leading
/// zeros (the form `openssl x509 -serial` and CAs' logs use, lowercased); empty if none.
pub fn leaf_serial(chain_pem: &str) -> String {
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(chain_pem.as_bytes()) else {
        return String::new();
    };
    match pem.parse_x509() {
        Ok(cert) => {
            let hex: String = cert
                .raw_serial()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            match hex.trim_start_matches('0') {
                "" => "0".to_owned(),
                t => t.to_owned(),
            }
        }
        Err(_) => String::new(),
    }
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
            ari: AriState::default(),
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
    fn development_certificates_renew_like_acme_ones_and_uploads_never() {
        let day = 86_400;
        let mut r = rec(CertStatus::Valid, 0, 90 * day);
        r.source = CertSource::SelfSigned;
        assert_eq!(renew_action(&r, 30 * day), RenewAction::Wait);
        assert_eq!(renew_action(&r, 61 * day), RenewAction::Order);
        assert_eq!(renew_action(&r, 90 * day), RenewAction::Expire);
        // Those made before the lifetime was bounded (valid until 4096) are replaced now.
        let mut old = rec(CertStatus::Valid, 0, 66_000_000_000);
        old.source = CertSource::SelfSigned;
        assert_eq!(renew_action(&old, day), RenewAction::Order);
        r.source = CertSource::Uploaded;
        for t in [61 * day, 90 * day, i64::MAX] {
            assert_eq!(renew_action(&r, t), RenewAction::Wait);
        }
    }

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
        issue(&cp, "dev").await.unwrap();
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
        s.source = CertSource::Uploaded;
        assert_eq!(renew_action(&s, i64::MAX), RenewAction::Wait);
    }

    #[test]
    fn valid_certificates_show_expiring_once_renewal_is_due() {
        let day = 86_400;
        let r = rec(CertStatus::Valid, 0, 90 * day);
        let due = renewal_due(&r);
        assert_eq!(shown_status(&r, 10 * day), CertStatus::Valid);
        assert_eq!(shown_status(&r, due - 1), CertStatus::Valid);
        assert_eq!(shown_status(&r, due), CertStatus::Expiring);
        // Still expiring after not_after until the renewer marks it expired.
        assert_eq!(shown_status(&r, 91 * day), CertStatus::Expiring);
        // A renewal that succeeded moves the window: valid again.
        let renewed = rec(CertStatus::Valid, 61 * day, 151 * day);
        assert_eq!(shown_status(&renewed, 61 * day), CertStatus::Valid);
        // Other states are shown as stored; a record without validity is never expiring.
        for s in [CertStatus::Pending, CertStatus::Failed, CertStatus::Expired] {
            assert_eq!(shown_status(&rec(s, 0, 90 * day), 89 * day), s);
        }
        assert_eq!(
            shown_status(&rec(CertStatus::Valid, 0, 0), 89 * day),
            CertStatus::Valid
        );
        // The CA's window, when given, decides instead of the lifetime.
        let mut ari = rec(CertStatus::Valid, 0, 90 * day);
        ari.ari = AriState {
            window_start: 20 * day,
            window_end: 21 * day,
            next_check: 0,
        };
        assert_eq!(shown_status(&ari, 19 * day), CertStatus::Valid);
        assert_eq!(shown_status(&ari, 21 * day), CertStatus::Expiring);
    }

    #[test]
    fn renewal_window_prefers_a_usable_ari_window() {
        let day = 86_400;
        let mut r = rec(CertStatus::Valid, 0, 90 * day);
        // No ARI: the span before one third of the lifetime is left.
        assert_eq!(renewal_window(&r), (60 * day - 90 * day / 20, 60 * day));
        r.ari = AriState {
            window_start: 10 * day,
            window_end: 12 * day,
            next_check: 0,
        };
        assert_eq!(renewal_window(&r), (10 * day, 12 * day));
        let due = renewal_due(&r);
        assert!((10 * day..=12 * day).contains(&due), "{due}");
        assert_eq!(renew_action(&r, 9 * day), RenewAction::Wait);
        assert_eq!(renew_action(&r, 12 * day), RenewAction::Order);
        // An inverted or empty window is not usable.
        for (start, end) in [(12 * day, 10 * day), (5, 5), (0, 12 * day)] {
            r.ari.window_start = start;
            r.ari.window_end = end;
            assert_eq!(renewal_window(&r), (60 * day - 90 * day / 20, 60 * day));
        }
    }

    #[test]
    fn ari_answers_update_the_window_and_the_next_check() {
        let now = 1_000_000;
        let old = AriState {
            window_start: 10,
            window_end: 20,
            next_check: 5,
        };
        let got = next_ari_state(
            &old,
            AriAnswer::Window {
                start: 100,
                end: 200,
                retry_after: 6 * 3600,
            },
            now,
        );
        assert_eq!(
            got,
            AriState {
                window_start: 100,
                window_end: 200,
                next_check: now + 6 * 3600
            }
        );
        // Retry-After is clamped to [1 minute, 1 day].
        let w = |retry_after| AriAnswer::Window {
            start: 100,
            end: 200,
            retry_after,
        };
        assert_eq!(next_ari_state(&old, w(0), now).next_check, now + 60);
        assert_eq!(
            next_ari_state(&old, w(i64::MAX), now).next_check,
            now + 24 * 3600
        );
        // No ARI at this CA: one third of the lifetime applies; ask again in a day.
        assert_eq!(
            next_ari_state(&old, AriAnswer::Unsupported, now),
            AriState {
                window_start: 0,
                window_end: 0,
                next_check: now + 24 * 3600
            }
        );
        // A failure or a malformed window keeps what we knew; ask again in an hour.
        let bad = AriAnswer::Window {
            start: 200,
            end: 100,
            retry_after: 60,
        };
        for answer in [AriAnswer::Failed, bad] {
            let got = next_ari_state(&old, answer, now);
            assert_eq!((got.window_start, got.window_end), (10, 20));
            assert_eq!(got.next_check, now + 3600);
        }
    }

    #[test]
    fn eab_flags_need_both_parts_and_a_base64url_key() {
        assert!(Eab::from_flags(None, None).unwrap().is_none());
        assert!(Eab::from_flags(Some(" "), Some("")).unwrap().is_none());
        assert_eq!(
            Eab::from_flags(None, Some("a2V5")).unwrap_err(),
            EabError::MissingKid
        );
        assert_eq!(
            Eab::from_flags(Some("kid-1"), None).unwrap_err(),
            EabError::MissingKey
        );
        assert!(matches!(
            Eab::from_flags(Some("kid-1"), Some("not base64!")).unwrap_err(),
            EabError::BadKey(_)
        ));
        assert!(
            EabError::BadKey(String::new())
                .to_string()
                .contains("--acme-eab-hmac-key")
        );
        // Pebble's example key (base64url, no padding) and padded standard base64 both work.
        let eab = Eab::from_flags(
            Some("kid-1"),
            Some("zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(eab.kid, "kid-1");
        assert_eq!(eab.hmac_key.len(), 48);
        let padded = Eab::from_flags(Some("k"), Some("a2V5+/8="))
            .unwrap()
            .unwrap();
        assert_eq!(padded.hmac_key, b"key\xfb\xff");
        // The key never shows in debug output (settings are logged at start-up).
        assert!(!format!("{eab:?}").contains("zWNDZM6"));
        assert!(format!("{eab:?}").contains("redacted"));
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

    /// Subject, subject key identifier, authority key identifier and validity of a PEM
    /// certificate.
    fn identity(pem: &str) -> (String, Vec<u8>, Vec<u8>, i64, i64) {
        use x509_parser::extensions::ParsedExtension;
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let (mut ski, mut aki) = (Vec::new(), Vec::new());
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => ski = id.0.to_vec(),
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    aki = a
                        .key_identifier
                        .as_ref()
                        .map(|id| id.0.to_vec())
                        .unwrap_or_default()
                }
                _ => {}
            }
        }
        let validity = cert.validity();
        (
            cert.subject().to_string(),
            ski,
            aki,
            validity.not_before.timestamp(),
            validity.not_after.timestamp(),
        )
    }

    #[test]
    fn development_certificates_name_their_host_and_carry_key_identifiers() {
        let (a, _) = self_signed(&["a.localhost".to_owned()]).unwrap();
        let (b, _) = self_signed(&["b.localhost".to_owned()]).unwrap();
        let (subject_a, ski_a, aki_a, not_before, not_after) = identity(&a);
        let (subject_b, ski_b, aki_b, ..) = identity(&b);
        assert!(subject_a.contains("CN=a.localhost"), "{subject_a}");
        assert!(subject_b.contains("CN=b.localhost"), "{subject_b}");
        assert!(!ski_a.is_empty() && ski_a != ski_b);
        // Self-signed: each names its own key as the issuer's.
        assert_eq!((aki_a, aki_b), (ski_a, ski_b));
        // A bounded lifetime starting about now, which the renewer handles.
        let now = now();
        assert!(not_before <= now && not_before > now - 3600, "{not_before}");
        assert_eq!(not_after - not_before, DEV_CERT_LIFETIME_SECS);

        // OpenSSL trusting both verifies each (with one shared subject and no key
        // identifiers it picked the wrong one as the issuer).
        let dir = tempfile::tempdir().unwrap();
        let both = dir.path().join("both.pem");
        std::fs::write(&both, format!("{a}{b}")).unwrap();
        for (host, pem) in [("a.localhost", &a), ("b.localhost", &b)] {
            let file = dir.path().join(format!("{host}.pem"));
            std::fs::write(&file, pem).unwrap();
            let out = std::process::Command::new("openssl")
                .arg("verify")
                .arg("-CAfile")
                .arg(&both)
                .args(["-purpose", "sslserver", "-verify_hostname", host])
                .arg(&file)
                .output()
                .expect("openssl (Debian package openssl) runs");
            assert!(
                out.status.success(),
                "{host}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn serial_is_lowercase_hex_of_the_leaf() {
        let (chain, _) = self_signed(&["a.localhost".to_owned()]).unwrap();
        let serial = leaf_serial(&chain);
        assert!(!serial.is_empty() && !serial.starts_with('0'), "{serial}");
        assert!(
            serial
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(leaf_serial("not pem"), "");
    }
}
