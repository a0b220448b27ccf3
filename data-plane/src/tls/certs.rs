//! Snapshot certificates: PEM → [`CertifiedKey`], validated before anything is published.
//!
//! Every certificate is checked when its snapshot is compiled: the chain parses, the key
//! loads with the aws-lc-rs provider, the key matches the leaf, and the leaf covers every
//! listed domain. A failure rejects the whole snapshot (NACK), so a bad renewal never
//! replaces a working certificate (validate first, then publish). Handshakes only clone
//! an `Arc` out of the tables built here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use portcullis_proto::v1 as pb;
use rustls::crypto::KeyProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::ParsedCertificate;
use rustls::sign::CertifiedKey;
use rustls::{Error as TlsError, InconsistentKeys};

use super::TlsConfigError;
use crate::router::HostTable;
use crate::spec::HostPattern;

/// Label substituted for `*` to check that a certificate covers a wildcard domain; a
/// certificate covering `*.example.com` is valid for it, and no real one lists it.
const WILDCARD_PROBE: &str = "portcullis-wildcard-probe";

/// Why a certificate (or an ACME challenge certificate) was rejected. Names the field so
/// the NACK text is actionable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// `name` is empty, so nothing could refer to the certificate.
    #[error("name must not be empty")]
    EmptyName,
    /// `cert_chain_pem` / `cert_pem` is not valid PEM.
    #[error("certificate PEM: {0}")]
    ChainPem(#[source] pem::Error),
    /// The certificate PEM holds no `CERTIFICATE` block.
    #[error("certificate PEM has no CERTIFICATE block")]
    NoCertificate,
    /// `private_key_pem` is not valid PEM or holds no PKCS#8, PKCS#1 or SEC1 key.
    #[error("private key PEM: {0}")]
    KeyPem(#[source] pem::Error),
    /// The key parsed but the provider cannot use it (unsupported algorithm or curve).
    #[error("unsupported private key: {0}")]
    Key(#[source] TlsError),
    /// The leaf certificate is not a valid X.509 certificate.
    #[error("end-entity certificate does not parse: {0}")]
    Leaf(#[source] TlsError),
    /// The private key belongs to a different certificate.
    #[error("private key does not match the end-entity certificate")]
    KeyMismatch,
    /// An entry of `domains` (or a challenge `domain`) is not a DNS name or IP address.
    #[error("invalid domain {0:?}")]
    InvalidDomain(String),
    /// The leaf's subject alternative names do not include a listed domain.
    #[error("certificate does not cover domain {0:?}")]
    NotCovered(String),
}

/// All certificates of one snapshot: by name, by covered domain, and the default.
#[derive(Debug, Default)]
pub struct Certificates {
    by_name: HashMap<Box<str>, Arc<CertifiedKey>>,
    /// Domains with certificate wildcard semantics; the first certificate listing a
    /// domain (in snapshot order) owns it.
    covering: HostTable<Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

// === impl Certificates ===

impl Certificates {
    /// Validates every certificate and resolves `default_name` (empty, or not in the
    /// snapshot: no default).
    pub(crate) fn compile(
        list: &[pb::TlsCertificate],
        default_name: &str,
        keys: &dyn KeyProvider,
    ) -> Result<Self, TlsConfigError> {
        let mut out = Self::default();
        for cert in list {
            let err = |source| TlsConfigError::Certificate {
                name: cert.name.clone(),
                source,
            };
            let name = cert.name.trim();
            if name.is_empty() {
                return Err(err(CertError::EmptyName));
            }
            let key =
                certified_key(&cert.cert_chain_pem, &cert.private_key_pem, keys).map_err(err)?;
            let domains = covered_domains(&key, &cert.domains).map_err(err)?;
            if out.by_name.insert(name.into(), key.clone()).is_some() {
                return Err(TlsConfigError::DuplicateCertificate(name.to_owned()));
            }
            for pattern in domains {
                // `false` means an earlier certificate already covers it: keep that one.
                out.covering.insert(&pattern, key.clone());
            }
        }
        if !default_name.is_empty() {
            out.default = out.by_name.get(default_name).cloned();
            if out.default.is_none() {
                // Like a proxy's `certificate_name`: the certificate may be pending or
                // lapsed. Without a default, unmatched handshakes fail, which leaks nothing.
                tracing::warn!(
                    certificate = default_name,
                    "default certificate is not in the snapshot; unmatched handshakes will fail"
                );
            }
        }
        Ok(out)
    }

    /// The certificate called `name` (compared exactly, after trimming whitespace).
    pub fn get(&self, name: &str) -> Option<&Arc<CertifiedKey>> {
        self.by_name.get(name)
    }

    /// A certificate whose domains cover the normalised `name`: an exact domain first,
    /// then a `*.parent` wildcard (one label only, as clients check it).
    pub fn covering(&self, name: &str) -> Option<&Arc<CertifiedKey>> {
        self.covering.lookup_single_label(name)
    }

    /// The certificate for handshakes nothing else matches, if configured.
    pub(crate) fn default_certificate(&self) -> Option<&Arc<CertifiedKey>> {
        self.default.as_ref()
    }

    /// Number of certificates.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether the snapshot has no certificates.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Parses a PEM chain (leaf first) and private key into a [`CertifiedKey`] whose key is
/// checked against the leaf, which must parse as clients (webpki) parse it. Keys may be
/// PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
pub(crate) fn certified_key(
    chain_pem: &str,
    key_pem: &str,
    keys: &dyn KeyProvider,
) -> Result<Arc<CertifiedKey>, CertError> {
    let certified = parse(chain_pem, key_pem, keys)?;
    match certified.keys_match() {
        // aws-lc-rs keys always expose their public key; `Unknown` cannot happen.
        Ok(()) | Err(TlsError::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(TlsError::InconsistentKeys(_)) => return Err(CertError::KeyMismatch),
        Err(other) => return Err(CertError::Leaf(other)),
    }
    Ok(Arc::new(certified))
}

/// Like [`certified_key`] for a TLS-ALPN-01 challenge certificate: its critical
/// `acmeIdentifier` extension makes webpki refuse it, so the key is matched against the
/// certificate's public key found by [`der`](super::der) instead.
pub(crate) fn challenge_key(
    cert_pem: &str,
    key_pem: &str,
    keys: &dyn KeyProvider,
) -> Result<Arc<CertifiedKey>, CertError> {
    let certified = parse(cert_pem, key_pem, keys)?;
    let leaf = certified.end_entity_cert().map_err(CertError::Leaf)?;
    let spki = super::der::subject_public_key_info(leaf).ok_or(CertError::Leaf(
        TlsError::InvalidCertificate(rustls::CertificateError::BadEncoding),
    ))?;
    match certified.key.public_key() {
        Some(key) if key.as_ref() == spki => Ok(Arc::new(certified)),
        _ => Err(CertError::KeyMismatch),
    }
}

fn parse(
    chain_pem: &str,
    key_pem: &str,
    keys: &dyn KeyProvider,
) -> Result<CertifiedKey, CertError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(CertError::ChainPem)?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(CertError::KeyPem)?;
    let key = keys.load_private_key(key).map_err(CertError::Key)?;
    Ok(CertifiedKey::new(chain, key))
}

/// Parses the listed domains and checks that `key`'s leaf certificate is valid for each.
/// Returns the DNS names and `*.suffix` patterns, lowercased; IP addresses are checked
/// against the certificate's IP SANs but left out, as SNI never carries one.
fn covered_domains(key: &CertifiedKey, list: &[String]) -> Result<Vec<HostPattern>, CertError> {
    let leaf = key.end_entity_cert().map_err(CertError::Leaf)?;
    let parsed = ParsedCertificate::try_from(leaf).map_err(CertError::Leaf)?;
    let mut out = Vec::with_capacity(list.len());
    for raw in list {
        let invalid = || CertError::InvalidDomain(raw.clone());
        let trimmed = raw.trim();
        let ip = trimmed
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(trimmed);
        if let Ok(ip) = ip.parse::<IpAddr>() {
            covers(&parsed, &ServerName::IpAddress(ip.into()), raw)?;
            continue;
        }
        let pattern = HostPattern::parse(raw).map_err(|_| invalid())?;
        let probe = match &pattern {
            HostPattern::Exact(name) => name.to_string(),
            HostPattern::Wildcard(suffix) => format!("{WILDCARD_PROBE}.{suffix}"),
        };
        let name = ServerName::try_from(probe.as_str()).map_err(|_| invalid())?;
        covers(&parsed, &name, raw)?;
        out.push(pattern);
    }
    Ok(out)
}

fn covers(cert: &ParsedCertificate<'_>, name: &ServerName<'_>, raw: &str) -> Result<(), CertError> {
    rustls::client::verify_server_name(cert, name)
        .map_err(|_| CertError::NotCovered(raw.to_owned()))
}
