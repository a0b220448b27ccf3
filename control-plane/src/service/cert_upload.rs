//! Certificates users bring (upload), taking a key out (export), and moving a staging
//! certificate to production.

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::*;
use crate::acme;
use crate::model::validate;
use crate::model::{
    CertSource, CertStatus, CertificateExport, CertificateInfo, CertificateRecord,
    CertificateUpload,
};
use crate::store::Check;

impl ControlPlane {
    /// Stores a PEM certificate chain and key after checking that the key matches the leaf,
    /// the chain is in order (each certificate issued by the next) and nothing has expired.
    pub async fn upload_certificate(
        &self,
        caller: &Caller,
        input: CertificateUpload,
    ) -> Result<CertificateInfo> {
        require_writer(caller)?;
        let name = validate::ident("name", &input.name)?;
        let domains = check_pem(&input.cert_chain_pem, &input.private_key_pem)?;
        let (issuer, not_before, not_after) = acme::parse_validity(&input.cert_chain_pem);
        let now = now();
        let rec = CertificateRecord {
            name: name.clone(),
            domains,
            owner_token_id: caller.token_id.clone(),
            source: CertSource::Uploaded,
            acme_directory: String::new(),
            email: String::new(),
            challenge: Default::default(),
            status: CertStatus::Valid,
            error: String::new(),
            issuer,
            not_before,
            not_after,
            last_attempt_at: now,
            created_at: now,
            renewal_failures: 0,
            ari: Default::default(),
            cert_chain_pem: input.cert_chain_pem,
            private_key_sealed: self.master_key().seal(input.private_key_pem.as_bytes()),
        };
        self.commit(
            Batch {
                checks: vec![Check::Absent(Collection::Certificates, name.clone())],
                writes: vec![put(Collection::Certificates, &name, &rec)],
            },
            |_| ServiceError::Conflict(format!("certificate {name:?} already exists")),
        )
        .await?;
        Ok(CertificateInfo::from(&rec))
    }

    /// The chain and its private key in clear, for an admin who asked for the key
    /// explicitly (`include_private_key`); anyone else, or an implicit request, gets nothing.
    pub async fn export_certificate(
        &self,
        caller: &Caller,
        name: &str,
        include_private_key: bool,
    ) -> Result<CertificateExport> {
        require_admin(caller, "exporting a private key")?;
        if !include_private_key {
            return Err(ServiceError::invalid(
                "include_private_key",
                "set it to true to export the private key",
            ));
        }
        let rec = self.certificate_record(name).await?;
        if rec.private_key_sealed.is_empty() {
            return Err(ServiceError::Unprocessable(format!(
                "certificate {name:?} has no key yet (status {:?}); wait until it is issued",
                rec.status
            )));
        }
        let pem = self
            .master_key()
            .open(&rec.private_key_sealed)
            .map_err(|e| ServiceError::Unprocessable(e.to_string()))?;
        let private_key_pem = String::from_utf8(pem).map_err(|_| {
            ServiceError::Unprocessable(format!("the stored key of {name:?} is not PEM text"))
        })?;
        tracing::warn!(certificate = %name, token = %caller.token_id, "private key exported");
        Ok(CertificateExport {
            name: rec.name,
            cert_chain_pem: rec.cert_chain_pem,
            private_key_pem,
        })
    }

    /// Re-orders a staging certificate from the production directory.
    pub async fn convert_to_production(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<CertificateInfo> {
        require_writer(caller)?;
        let rec = self.certificate_record(name).await?;
        require_owner(caller, "certificate", name, &rec.owner_token_id)?;
        if rec.source != CertSource::Acme {
            return Err(ServiceError::Unprocessable(format!(
                "certificate {name:?} was not issued by ACME"
            )));
        }
        let production = self.acme().directory_url.clone();
        if rec.acme_directory == production {
            return Err(ServiceError::Conflict(format!(
                "certificate {name:?} is already from production"
            )));
        }
        // An order in flight would land a staging certificate after the switch.
        if self.lock_held(&acme::order_lock(name)).await? {
            return Err(ServiceError::Conflict(format!(
                "certificate {name:?} is being ordered right now; retry when it is valid or failed"
            )));
        }
        self.update_certificate(name, |c| {
            c.acme_directory = production.clone();
            c.renewal_failures = 0;
        })
        .await?;
        acme::spawn_issue(self.clone(), name.to_owned());
        Ok(CertificateInfo::from(&self.certificate_record(name).await?))
    }
}

/// Validates an uploaded chain and key; returns the DNS names the leaf covers.
fn check_pem(chain_pem: &str, key_pem: &str) -> Result<Vec<String>> {
    let bad = |reason: String| ServiceError::invalid("cert_chain_pem", reason);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(format!("not PEM certificates: {e}")))?;
    if chain.is_empty() {
        return Err(bad("no CERTIFICATE block".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
        ServiceError::invalid("private_key_pem", format!("not a PEM private key: {e}"))
    })?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let certified =
        rustls::sign::CertifiedKey::from_der(chain.clone(), key, &provider).map_err(|e| {
            ServiceError::invalid(
                "private_key_pem",
                format!("does not match the certificate: {e}"),
            )
        })?;
    certified.keys_match().map_err(|e| {
        ServiceError::invalid(
            "private_key_pem",
            format!("does not match the certificate: {e}"),
        )
    })?;

    let now = now();
    let mut parsed = Vec::with_capacity(chain.len());
    for (i, der) in chain.iter().enumerate() {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| bad(format!("certificate {i} does not parse: {e}")))?;
        if cert.validity().not_after.timestamp() <= now {
            return Err(bad(format!(
                "certificate {i} ({}) has expired",
                cert.subject()
            )));
        }
        if cert.validity().not_before.timestamp() > now {
            return Err(bad(format!(
                "certificate {i} ({}) is not valid yet",
                cert.subject()
            )));
        }
        parsed.push(cert);
    }
    for pair in parsed.windows(2) {
        if pair[0].issuer() != pair[1].subject() {
            return Err(bad(format!(
                "chain out of order: {} is not issued by the next certificate ({}); put the leaf first",
                pair[0].subject(),
                pair[1].subject()
            )));
        }
    }
    let mut names = Vec::new();
    if let Ok(Some(san)) = parsed[0].subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        return Err(bad(
            "the leaf certificate names no DNS names (subjectAltName)".into(),
        ));
    }
    Ok(names)
}
