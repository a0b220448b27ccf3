//! Certificate operations. Ordering runs in the background: names go to the issuer through
//! the order queue (`crate::acme::OrderQueue`, consumed by `crate::issuer`); the API returns
//! at once and the status is visible.

use super::{CAS_RETRIES, ControlPlane, Result, require_owner, require_writer};
use crate::acme::renewal::shown_status;
use crate::auth::Caller;
use crate::error::ServiceError;
use crate::model::{
    CertSource, CertStatus, CertificateInfo, CertificateInput, CertificateRecord, Proxy, now, pem,
    validate,
};
use crate::store::{Batch, Check, Collection, StoreError, Write};

const MAX_DOMAINS: usize = 100;

impl ControlPlane {
    /// Creates a certificate: self-signed at once, or ordered from ACME in the background.
    pub async fn create_certificate(
        &self,
        caller: &Caller,
        input: CertificateInput,
    ) -> Result<CertificateInfo> {
        require_writer(caller)?;
        let name = validate::ident("name", &input.name)?;
        let domains = certificate_domains(&input.domains)?;
        let proxies: Vec<Proxy> = self.list().await?;
        for d in &domains {
            let usable = proxies
                .iter()
                .any(|p| covers(&p.hostname, d) && caller.may_modify(&p.owner_token_id));
            if !usable {
                return Err(ServiceError::Unprocessable(format!(
                    "{d:?} is not served by a proxy this token may use; create the proxy first"
                )));
            }
        }
        let email = certificate_email(input.email.as_deref(), &self.acme().default_email)?;
        let self_signed = input.self_signed.unwrap_or(false);
        let now = now();
        let mut rec = CertificateRecord {
            name: name.clone(),
            domains,
            owner_token_id: caller.token_id.clone(),
            source: if self_signed {
                CertSource::SelfSigned
            } else {
                CertSource::Acme
            },
            acme_directory: String::new(),
            email,
            challenge: input.challenge.unwrap_or_default(),
            status: CertStatus::Pending,
            error: String::new(),
            issuer: String::new(),
            not_before: 0,
            not_after: 0,
            last_attempt_at: now,
            created_at: now,
            renewal_failures: 0,
            ari: Default::default(),
            cert_chain_pem: String::new(),
            private_key_sealed: String::new(),
        };
        if self_signed {
            let (chain, key) = pem::self_signed(&rec.domains).map_err(|e| {
                ServiceError::Unprocessable(format!("cannot make a certificate: {e}"))
            })?;
            let (issuer, nb, na) = pem::parse_validity(&chain);
            rec.private_key_sealed = self.master_key().seal(key.as_bytes());
            rec.cert_chain_pem = chain;
            rec.issuer = issuer;
            rec.not_before = nb;
            rec.not_after = na;
            rec.status = CertStatus::Valid;
        } else {
            rec.acme_directory = if input.staging.unwrap_or(false) {
                self.acme().staging_directory_url.clone()
            } else {
                self.acme().directory_url.clone()
            };
        }
        self.commit(
            Batch {
                checks: vec![Check::Absent(Collection::Certificates, name.clone())],
                writes: vec![Write::put(&rec)],
            },
            |_| ServiceError::already_exists(format!("certificate {name:?} already exists")),
        )
        .await?;
        if !self_signed {
            self.orders().push(name);
        }
        Ok(certificate_info(&rec))
    }

    /// Makes sure a certificate covers `hostname`: reuses any valid or pending one, else
    /// self-signs `localhost` names and orders the rest from ACME, named after the host.
    /// Best effort: the proxy exists either way, and the outcome shows in `cert status`.
    pub(crate) async fn ensure_certificate(&self, caller: &Caller, hostname: &str) {
        if hostname.starts_with("*.") {
            tracing::info!(%hostname, "wildcard proxy: no automatic certificate without a DNS-01 solver");
            return;
        }
        let existing: Vec<CertificateRecord> = match self.list().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(%hostname, error = %e, "cannot look for a certificate");
                return;
            }
        };
        let covered = existing.iter().any(|c| {
            matches!(c.status, CertStatus::Valid | CertStatus::Pending)
                && c.domains.iter().any(|d| covers(d, hostname))
        });
        if covered {
            return;
        }
        let local = hostname == "localhost" || hostname.ends_with(".localhost");
        let input = CertificateInput {
            name: hostname.to_owned(),
            domains: vec![hostname.to_owned()],
            self_signed: Some(local),
            ..Default::default()
        };
        if let Err(e) = self.create_certificate(caller, input).await {
            tracing::warn!(%hostname, error = %e, "automatic certificate not created");
        }
    }

    /// Reads one certificate (never its key).
    pub async fn get_certificate(&self, _caller: &Caller, name: &str) -> Result<CertificateInfo> {
        Ok(certificate_info(&self.certificate_record(name).await?))
    }

    /// Lists certificates (never their keys).
    pub async fn list_certificates(&self, _caller: &Caller) -> Result<Vec<CertificateInfo>> {
        let all: Vec<CertificateRecord> = self.list().await?;
        Ok(all.iter().map(certificate_info).collect())
    }

    /// Orders a fresh certificate for the same names now; the current one keeps serving.
    pub async fn renew_certificate(&self, caller: &Caller, name: &str) -> Result<CertificateInfo> {
        require_writer(caller)?;
        let rec = self.certificate_record(name).await?;
        require_owner(caller, "certificate", name, &rec.owner_token_id)?;
        if rec.source != CertSource::Acme {
            return Err(ServiceError::Unprocessable(format!(
                "certificate {name:?} was not issued by ACME"
            )));
        }
        self.orders().push(name.to_owned());
        Ok(certificate_info(&rec))
    }

    /// Deletes a certificate the caller owns; refused while a proxy names it unless `force`.
    pub async fn delete_certificate(&self, caller: &Caller, name: &str, force: bool) -> Result<()> {
        require_writer(caller)?;
        let Some((rec, raw)) = self.get::<CertificateRecord>(name).await? else {
            return Err(ServiceError::not_found("certificate", name));
        };
        require_owner(caller, "certificate", name, &rec.owner_token_id)?;
        if !force {
            let users: Vec<String> = self
                .list::<Proxy>()
                .await?
                .into_iter()
                .filter(|p| p.certificate_name == name)
                .map(|p| p.hostname)
                .collect();
            if !users.is_empty() {
                return Err(ServiceError::still_referenced(format!(
                    "certificate {name:?} is attached to proxies {}; detach it or delete with force",
                    users.join(", ")
                )));
            }
        }
        self.commit(
            Batch {
                checks: vec![Check::Equals(
                    Collection::Certificates,
                    name.to_owned(),
                    raw,
                )],
                writes: vec![Write::Delete(Collection::Certificates, name.to_owned())],
            },
            |_| {
                ServiceError::concurrent(format!(
                    "certificate {name:?} changed while deleting; retry"
                ))
            },
        )
        .await?;
        Ok(())
    }

    /// The full record, key sealed. For the ACME worker and the snapshot.
    pub(crate) async fn certificate_record(&self, name: &str) -> Result<CertificateRecord> {
        self.get(name)
            .await?
            .map(|(c, _)| c)
            .ok_or_else(|| ServiceError::not_found("certificate", name))
    }

    /// Read-modify-write of a certificate record with optimistic retries.
    pub(crate) async fn update_certificate(
        &self,
        name: &str,
        f: impl Fn(&mut CertificateRecord),
    ) -> Result<()> {
        self.update_certificate_fenced(name, None, f).await
    }

    /// As [`Self::update_certificate`], refused (`Conflict`) once `fence` fails: the lease
    /// the caller works under was taken over (see [`crate::lease`]).
    pub(crate) async fn update_certificate_fenced(
        &self,
        name: &str,
        fence: Option<&Check>,
        f: impl Fn(&mut CertificateRecord),
    ) -> Result<()> {
        for _ in 0..CAS_RETRIES {
            let Some((mut rec, raw)) = self.get::<CertificateRecord>(name).await? else {
                return Err(ServiceError::not_found("certificate", name));
            };
            f(&mut rec);
            let mut checks = vec![Check::Equals(
                Collection::Certificates,
                name.to_owned(),
                raw,
            )];
            checks.extend(fence.cloned());
            let batch = Batch {
                checks,
                writes: vec![Write::put(&rec)],
            };
            match self.inner.store.apply(batch).await {
                Ok(rev) => {
                    self.observe_revision(rev);
                    return Ok(());
                }
                Err(StoreError::CheckFailed(0)) => continue,
                Err(StoreError::CheckFailed(_)) => {
                    return Err(ServiceError::concurrent(format!(
                        "certificate {name:?}: this control plane lost the order's lease to another"
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::concurrent(format!(
            "certificate {name:?} is changing concurrently"
        )))
    }
}

/// A certificate's names as the API and declarative documents take them: 1 to
/// [`MAX_DOMAINS`] valid hostnames, no wildcards (no DNS-01 solver), duplicates dropped.
pub(crate) fn certificate_domains(given: &[String]) -> Result<Vec<String>> {
    if given.is_empty() || given.len() > MAX_DOMAINS {
        return Err(ServiceError::invalid("domains", "give 1 to 100 names"));
    }
    let mut domains: Vec<String> = Vec::new();
    for d in given {
        let d = validate::hostname("domains", d)?;
        if d.starts_with("*.") {
            return Err(ServiceError::invalid(
                "domains",
                format!(
                    "{d:?}: wildcard names need a DNS-01 solver, which is not configured; list the names instead"
                ),
            ));
        }
        if !domains.contains(&d) {
            domains.push(d);
        }
    }
    Ok(domains)
}

/// A certificate's ACME contact: the one given if it looks like an address, else the
/// control plane's default.
pub(crate) fn certificate_email(given: Option<&str>, default: &str) -> Result<String> {
    match given {
        Some(m) if m.len() > 254 || !m.contains('@') || m.contains(char::is_whitespace) => {
            Err(ServiceError::invalid("email", "not an e-mail address"))
        }
        Some(m) => Ok(m.to_owned()),
        None => Ok(default.to_owned()),
    }
}

/// The API view of a certificate, with the status the renewal policy shows now.
pub(crate) fn certificate_info(rec: &CertificateRecord) -> CertificateInfo {
    CertificateInfo::new(rec, shown_status(rec, now()))
}

/// Whether proxy hostname `pattern` (maybe `*.`) serves `name`.
pub(crate) fn covers(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            name.len() > suffix.len() + 1
                && name.ends_with(suffix)
                && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
        }
        None => pattern == name,
    }
}
