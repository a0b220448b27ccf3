//! ACME accounts: one per (directory, contact), registered on first use, stored sealed, and
//! replaced when the CA forgets it. Account failures are reported with the step that failed
//! and, when the CA wants External Account Binding and none is set, the flags that fix it.

use instant_acme::{Account, AccountBuilder, AccountCredentials, NewAccount};
use serde::{Deserialize, Serialize};

use super::{AcmeError, error_chain};
use crate::acme::Eab;
use crate::auth;
use crate::error::ServiceError;
use crate::service::ControlPlane;
use crate::store::{Batch, Check, Collection, Write};

#[derive(Serialize, Deserialize)]
struct AccountRecord {
    directory: String,
    email: String,
    credentials_sealed: String,
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
    pub(super) fn account_gone(&self) -> bool {
        matches!(self, Self::Acme(e) if problem_type(e) == Some(ACCOUNT_DOES_NOT_EXIST))
    }
}

/// Says which step failed and, when the CA wants EAB and none is configured, how to fix it.
pub(super) fn account_error(directory: &str, e: instant_acme::Error, have_eab: bool) -> AcmeError {
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

/// An ACME account and its record exactly as stored, so that replacing the record can check
/// that nobody replaced it first.
pub(super) struct StoredAccount {
    pub(super) acme: Account,
    pub(super) record: Vec<u8>,
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
pub(super) async fn account(
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
pub(super) async fn register(
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
