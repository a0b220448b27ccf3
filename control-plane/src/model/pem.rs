//! PEM helpers for certificate records: development certificates, and the issuer, serial
//! and validity read from a chain. Pure functions over PEM text; no store, no CA.

/// Lifetime of a development certificate: like an ACME one, renewed by the renewer (no CA
/// involved) with a third of it left, and short of the 825 days macOS accepts for any
/// server certificate.
pub const DEV_CERT_LIFETIME_SECS: i64 = 90 * 86_400;

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
    use crate::model::now;

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
