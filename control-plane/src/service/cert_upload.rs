//! Certificates users bring (upload), taking a key out (export), and moving a staging
//! certificate to production.

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::certs::certificate_info;
use super::{ControlPlane, Result, require_admin, require_owner, require_writer};
use crate::acme::order_lock;
use crate::auth::Caller;
use crate::error::ServiceError;
use crate::model::pem::parse_validity;
use crate::model::{
    CertSource, CertStatus, CertificateExport, CertificateInfo, CertificateRecord,
    CertificateUpload, now, validate,
};
use crate::store::{Batch, Check, Collection, Write};

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
        let (issuer, not_before, not_after) = parse_validity(&input.cert_chain_pem);
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
                writes: vec![Write::put(&rec)],
            },
            |_| ServiceError::already_exists(format!("certificate {name:?} already exists")),
        )
        .await?;
        Ok(certificate_info(&rec))
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
            return Err(ServiceError::already_exists(format!(
                "certificate {name:?} is already from production"
            )));
        }
        // An order in flight would land a staging certificate after the switch.
        if self.leases().held(&order_lock(name)).await? {
            return Err(ServiceError::concurrent(format!(
                "certificate {name:?} is being ordered right now; retry when it is valid or failed"
            )));
        }
        self.update_certificate(name, |c| {
            c.acme_directory = production.clone();
            c.renewal_failures = 0;
        })
        .await?;
        self.orders().push(name.to_owned());
        Ok(certificate_info(&self.certificate_record(name).await?))
    }
}

/// Validates an uploaded chain and key; returns the DNS names the leaf covers. Each refusal
/// names the field at fault: the chain is decoded and its order checked on its own, so a
/// broken or CA-first chain is not blamed on the key it is compared with.
fn check_pem(chain_pem: &str, key_pem: &str) -> Result<Vec<String>> {
    let bad_chain = |reason: String| ServiceError::invalid("cert_chain_pem", reason);
    let bad_key = |reason: String| ServiceError::invalid("private_key_pem", reason);
    let ders: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad_chain(format!("not PEM certificates: {e}")))?;
    if ders.is_empty() {
        return Err(bad_chain("no CERTIFICATE block".into()));
    }
    let total = ders.len();
    let mut chain = Vec::with_capacity(total);
    for (i, der) in ders.iter().enumerate() {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| {
            bad_chain(format!(
                "certificate {} of {total} is not an X.509 certificate: {e}",
                i + 1
            ))
        })?;
        chain.push(cert);
    }
    let describe = |i: usize| format!("certificate {} of {total} ({})", i + 1, chain[i].subject());

    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| bad_key(format!("not a PEM private key: {e}")))?;
    let key = rustls::crypto::aws_lc_rs::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| bad_key(format!("not a usable private key: {e}")))?;
    // The key tells which certificate is the leaf. A key that cannot name its public half
    // leaves the order to the issuer check below (rustls accepts such keys too).
    if let Some(spki) = key.public_key() {
        match chain
            .iter()
            .position(|c| c.public_key().raw == spki.as_ref())
        {
            Some(0) => {}
            Some(i) => {
                return Err(bad_chain(format!(
                    "the leaf must come first: the private key belongs to {}, not to the first one ({})",
                    describe(i),
                    chain[0].subject()
                )));
            }
            None => {
                return Err(bad_key(format!(
                    "does not match the first certificate of cert_chain_pem ({}), which must be the leaf",
                    chain[0].subject()
                )));
            }
        }
    }

    let now = now();
    for (i, cert) in chain.iter().enumerate() {
        if cert.validity().not_after.timestamp() <= now {
            return Err(bad_chain(format!("{} has expired", describe(i))));
        }
        if cert.validity().not_before.timestamp() > now {
            return Err(bad_chain(format!("{} is not valid yet", describe(i))));
        }
    }
    for (i, pair) in chain.windows(2).enumerate() {
        if pair[0].issuer() != pair[1].subject() {
            return Err(bad_chain(format!(
                "chain out of order: {} is not issued by the next one, {}; give the leaf first, then each issuer",
                describe(i),
                describe(i + 1)
            )));
        }
    }
    let mut names = Vec::new();
    if let Ok(Some(san)) = chain[0].subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        return Err(bad_chain(format!(
            "the leaf ({}) names no DNS names (subjectAltName)",
            chain[0].subject()
        )));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    /// A CA and a leaf for `up.example.com` it signed, with the leaf's key.
    struct Pki {
        ca: String,
        leaf: String,
        key: String,
    }

    fn pki() -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Upload CA");
        let ca = ca_params.self_signed(&ca_key).unwrap().pem();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["up.example.com".to_owned()])
            .unwrap()
            .signed_by(&key, &Issuer::new(ca_params, &ca_key))
            .unwrap()
            .pem();
        Pki {
            ca,
            leaf,
            key: key.serialize_pem(),
        }
    }

    /// The field and reason of a refusal.
    fn refused(result: Result<Vec<String>>) -> (&'static str, String) {
        match result {
            Err(ServiceError::Invalid { field, reason }) => (field, reason),
            other => panic!("expected a refusal naming a field, got {other:?}"),
        }
    }

    /// A CERTIFICATE block whose base64 is fine but whose content is not DER.
    const NOT_A_CERTIFICATE: &str =
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";

    #[test]
    fn a_chain_leaf_first_is_accepted_with_the_leafs_names() {
        let p = pki();
        let names = check_pem(&format!("{}{}", p.leaf, p.ca), &p.key).unwrap();
        assert_eq!(names, ["up.example.com"]);
    }

    #[test]
    fn a_certificate_that_does_not_decode_is_blamed_on_the_chain() {
        let p = pki();
        let (field, reason) = refused(check_pem(NOT_A_CERTIFICATE, &p.key));
        assert_eq!(field, "cert_chain_pem", "{reason}");
        assert!(reason.contains("certificate 1 "), "{reason}");
        assert!(reason.contains("not an X.509 certificate"), "{reason}");
        // The same for a broken intermediate after a good leaf.
        let (field, reason) = refused(check_pem(&format!("{}{NOT_A_CERTIFICATE}", p.leaf), &p.key));
        assert_eq!(field, "cert_chain_pem", "{reason}");
        assert!(reason.contains("certificate 2 "), "{reason}");
    }

    #[test]
    fn a_chain_given_ca_first_asks_for_the_leaf_first() {
        let p = pki();
        let (field, reason) = refused(check_pem(&format!("{}{}", p.ca, p.leaf), &p.key));
        assert_eq!(field, "cert_chain_pem", "{reason}");
        assert!(reason.contains("leaf must come first"), "{reason}");
        assert!(reason.contains("certificate 2 "), "{reason}");
    }

    #[test]
    fn text_without_a_certificate_names_the_chain() {
        let p = pki();
        for chain in ["not pem", p.key.as_str()] {
            let (field, reason) = refused(check_pem(chain, &p.key));
            assert_eq!(field, "cert_chain_pem", "{reason}");
            assert!(reason.contains("no CERTIFICATE block"), "{reason}");
        }
    }

    #[test]
    fn a_key_that_fits_no_certificate_is_blamed_on_the_key() {
        let (p, other) = (pki(), pki());
        let (field, reason) = refused(check_pem(&format!("{}{}", p.leaf, p.ca), &other.key));
        assert_eq!(field, "private_key_pem", "{reason}");
        assert!(reason.contains("does not match"), "{reason}");
        let (field, _) = refused(check_pem(&p.leaf, "not a key"));
        assert_eq!(field, "private_key_pem");
    }
}
