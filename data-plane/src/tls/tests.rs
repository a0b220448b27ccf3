//! Certificate compilation and SNI selection, with certificates made by rcgen at test
//! time. `testdata/` holds two openssl-made, test-only key pairs (100-year validity) in
//! the formats rcgen cannot write: SEC1 (`EC PRIVATE KEY`, preceded by `EC PARAMETERS`)
//! and PKCS#1 (`RSA PRIVATE KEY`).

use std::sync::Arc;

use portcullis_proto::v1 as pb;
use rcgen::{CertificateParams, KeyPair};
use rustls::pki_types::pem::PemObject;

use super::*;
use crate::config::{CompileError, Snapshot};
use crate::server::sni::select;
use crate::server::tls_config;
use crate::spec::Reason;
use crate::store::ConfigStore;
use crate::upstream::ClientCache;

/// Self-signed certificate for `names` and its PKCS#8 key, both PEM.
fn self_signed(names: &[&str]) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let cert = CertificateParams::new(names)
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

fn cert(name: &str, sans: &[&str], domains: &[&str]) -> pb::TlsCertificate {
    let (cert_chain_pem, private_key_pem) = self_signed(sans);
    pb::TlsCertificate {
        name: name.into(),
        domains: domains.iter().map(|d| (*d).to_owned()).collect(),
        cert_chain_pem,
        private_key_pem,
    }
}

fn https_proxy(host: &str, certificate_name: &str) -> pb::ProxyTarget {
    pb::ProxyTarget {
        hostname: host.into(),
        target_url: "http://backend:80".into(),
        enabled: true,
        enable_https: true,
        certificate_name: certificate_name.into(),
        ..Default::default()
    }
}

fn try_compile(s: &pb::ConfigSnapshot) -> Result<Snapshot, CompileError> {
    Snapshot::compile(s, &ClientCache::with_roots(rustls::RootCertStore::empty()))
}

fn compile(s: &pb::ConfigSnapshot) -> Snapshot {
    try_compile(s).unwrap_or_else(|e| panic!("{e}"))
}

/// The TLS error a snapshot fails to compile with, as the compiler wraps it.
fn compile_err(s: &pb::ConfigSnapshot) -> TlsConfigError {
    match try_compile(s) {
        Ok(_) => panic!("snapshot should not compile"),
        Err(CompileError::Tls(e)) => e,
        Err(other) => panic!("not a TLS error: {other}"),
    }
}

/// The name of the certificate `select` picks, by pointer identity.
fn chosen(snap: &Snapshot, sni: Option<&str>, acme: bool) -> Option<String> {
    let picked = select(snap, sni, acme)?;
    let names = ["proxy", "exact", "wild", "default", "deep"];
    let name = names.iter().find(|n| {
        snap.certificates()
            .get(n)
            .is_some_and(|c| Arc::ptr_eq(c, picked))
    });
    Some(name.map_or("challenge", |n| n).to_owned())
}

fn selection_snapshot(default: &str) -> pb::ConfigSnapshot {
    let mut off = https_proxy("off.example.com", "proxy");
    off.enable_https = false;
    pb::ConfigSnapshot {
        version: 1,
        proxies: vec![
            https_proxy("app.example.com", "proxy"),
            https_proxy("*.apps.example.com", "proxy"),
            https_proxy("exact.example.com", ""),
            off,
        ],
        certificates: vec![
            cert("proxy", &["app.example.com", "*.apps.example.com"], &[]),
            cert("exact", &["exact.example.com"], &["exact.example.com"]),
            cert(
                "wild",
                &["*.example.com"],
                &["*.example.com", "exact.example.com", "off.example.com"],
            ),
            cert("deep", &["*.b.example.com"], &["*.B.Example.com."]),
            cert("default", &["default.test"], &["default.test"]),
        ],
        default_certificate_name: default.into(),
        acme_tls_alpn01: vec![{
            let (cert_pem, private_key_pem) = self_signed(&["app.example.com"]);
            pb::AcmeTlsAlpnChallenge {
                domain: "App.Example.com".into(),
                cert_pem,
                private_key_pem,
            }
        }],
        ..Default::default()
    }
}

#[test]
fn sni_selection_order() {
    let snap = compile(&selection_snapshot("default"));
    let pick = |sni| chosen(&snap, sni, false);
    // (a) The serving proxy's named certificate, exact host then wildcard proxy.
    assert_eq!(pick(Some("app.example.com")).as_deref(), Some("proxy"));
    assert_eq!(pick(Some("APP.example.com.")).as_deref(), Some("proxy"));
    assert_eq!(pick(Some("x.y.apps.example.com")).as_deref(), Some("proxy"));
    // (b) Proxy without a name, or no proxy: covering certificates, exact domains
    // first; the first certificate (in snapshot order) listing a domain owns it...
    assert_eq!(pick(Some("exact.example.com")).as_deref(), Some("exact"));
    // ...a host whose proxy is HTTPS-off is matched like any unknown name...
    assert_eq!(pick(Some("off.example.com")).as_deref(), Some("wild"));
    // ...then wildcards, for one label only; the most specific parent wins.
    assert_eq!(pick(Some("other.example.com")).as_deref(), Some("wild"));
    assert_eq!(pick(Some("x.b.example.com")).as_deref(), Some("deep"));
    // (c) Nothing covers these (two labels under `*.example.com`, the bare parent, an
    // unknown name, no SNI): the default.
    assert_eq!(pick(Some("a.c.example.com")).as_deref(), Some("default"));
    assert_eq!(pick(Some("example.com")).as_deref(), Some("default"));
    assert_eq!(pick(Some("unknown.test")).as_deref(), Some("default"));
    assert_eq!(pick(None).as_deref(), Some("default"));
}

#[test]
fn without_a_default_unknown_names_get_nothing() {
    let snap = compile(&selection_snapshot(""));
    assert_eq!(chosen(&snap, Some("unknown.test"), false), None);
    assert_eq!(chosen(&snap, None, false), None);
    assert_eq!(
        chosen(&snap, Some("exact.example.com"), false).as_deref(),
        Some("exact")
    );
}

#[test]
fn acme_tls_alpn_gets_only_challenge_certificates() {
    let snap = compile(&selection_snapshot("default"));
    assert_eq!(
        chosen(&snap, Some("app.example.com"), true).as_deref(),
        Some("challenge")
    );
    // No challenge for the name: nothing, not the regular or default certificate.
    assert_eq!(chosen(&snap, Some("exact.example.com"), true), None);
    assert_eq!(chosen(&snap, None, true), None);
}

fn with_cert(c: pb::TlsCertificate) -> pb::ConfigSnapshot {
    pb::ConfigSnapshot {
        certificates: vec![c],
        ..Default::default()
    }
}

fn cert_error(c: pb::TlsCertificate) -> CertError {
    match compile_err(&with_cert(c)) {
        TlsConfigError::Certificate { name, source } => {
            assert_eq!(name, "c");
            source
        }
        other => panic!("{other}"),
    }
}

#[test]
fn bad_pem_is_a_typed_compile_error() {
    let good = cert("c", &["a.test"], &["a.test"]);
    let mut c = good.clone();
    c.cert_chain_pem = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n".into();
    assert!(matches!(cert_error(c), CertError::ChainPem(_)));
    let mut c = good.clone();
    c.cert_chain_pem = c.private_key_pem.clone();
    assert!(matches!(cert_error(c), CertError::NoCertificate));
    let mut c = good.clone();
    // Valid base64, not a certificate.
    c.cert_chain_pem = "-----BEGIN CERTIFICATE-----\nAAECAw==\n-----END CERTIFICATE-----\n".into();
    assert!(matches!(cert_error(c), CertError::Leaf(_)));
    let mut c = good.clone();
    c.private_key_pem = good.cert_chain_pem.clone();
    assert!(matches!(cert_error(c), CertError::KeyPem(_)));
    let mut c = good;
    c.name = " ".into();
    assert!(matches!(
        compile_err(&with_cert(c)),
        TlsConfigError::Certificate {
            source: CertError::EmptyName,
            ..
        }
    ));
}

#[test]
fn mismatched_key_is_rejected() {
    let mut c = cert("c", &["a.test"], &["a.test"]);
    c.private_key_pem = self_signed(&["a.test"]).1;
    let error = cert_error(c);
    assert!(matches!(error, CertError::KeyMismatch), "{error}");
    let text = compile_err(&with_cert(cert_with_key_of_other())).to_string();
    assert!(
        text.starts_with("certificate \"c\": private key does not match"),
        "{text}"
    );
}

fn cert_with_key_of_other() -> pb::TlsCertificate {
    let mut c = cert("c", &["a.test"], &[]);
    c.private_key_pem = self_signed(&["b.test"]).1;
    c
}

#[test]
fn listed_domains_must_be_covered() {
    let error = cert_error(cert("c", &["a.test"], &["b.test"]));
    assert!(
        matches!(&error, CertError::NotCovered(d) if d == "b.test"),
        "{error}"
    );
    // `*.a.test` in the certificate does not cover `x.y.a.test` or `a.test`.
    let error = cert_error(cert("c", &["*.a.test"], &["*.a.test", "a.test"]));
    assert!(
        matches!(&error, CertError::NotCovered(d) if d == "a.test"),
        "{error}"
    );
    let error = cert_error(cert("c", &["a.test"], &["not a name"]));
    assert!(matches!(error, CertError::InvalidDomain(_)), "{error}");
    // IP addresses are checked against IP SANs and never match SNI.
    compile(&with_cert(cert("c", &["127.0.0.1"], &["127.0.0.1"])));
}

#[test]
fn sec1_and_pkcs1_keys_are_accepted() {
    let fixture = |name: &str, domain: &str, cert: &str, key: &str| pb::TlsCertificate {
        name: name.into(),
        domains: vec![domain.into()],
        cert_chain_pem: cert.into(),
        private_key_pem: key.into(),
    };
    let snap = compile(&pb::ConfigSnapshot {
        certificates: vec![
            fixture(
                "sec1",
                "sec1.test",
                include_str!("testdata/sec1-cert.pem"),
                include_str!("testdata/sec1-key.pem"),
            ),
            fixture(
                "pkcs1",
                "pkcs1.test",
                include_str!("testdata/pkcs1-cert.pem"),
                include_str!("testdata/pkcs1-key.pem"),
            ),
        ],
        ..Default::default()
    });
    let covering = |n| snap.certificates().covering(n).map(|c| c.cert.len());
    assert_eq!(covering("sec1.test"), Some(1));
    assert_eq!(covering("pkcs1.test"), Some(1));
    assert_eq!(snap.certificates().len(), 2);
}

#[test]
fn dangling_certificate_references_fall_back() {
    // The control plane leaves out pending and expired certificates, so names may dangle.
    let mut s = selection_snapshot("missing");
    s.proxies.push(https_proxy("new.example.com", "nope"));
    s.proxies.push(https_proxy("lone.test", "nope"));
    let snap = compile(&s);
    assert!(snap.certificates().default_certificate().is_none());
    assert_eq!(
        chosen(&snap, Some("new.example.com"), false).as_deref(),
        Some("wild")
    );
    assert_eq!(chosen(&snap, Some("lone.test"), false), None);
    // Two certificates with one name are ambiguous: refused.
    let mut s = selection_snapshot("");
    s.certificates.push(cert("exact", &["z.test"], &[]));
    assert!(matches!(
        compile_err(&s),
        TlsConfigError::DuplicateCertificate(n) if n == "exact"
    ));
}

#[test]
fn acme_challenges_are_validated() {
    let http01 = |token: &str| pb::AcmeHttp01Challenge {
        token: token.into(),
        key_authorization: format!("{token}.thumbprint"),
    };
    let snap = compile(&pb::ConfigSnapshot {
        acme_http01: vec![http01("tok-EN_1")],
        ..Default::default()
    });
    assert_eq!(
        snap.acme().http01("tok-EN_1").map(|b| &b[..]),
        Some(&b"tok-EN_1.thumbprint"[..])
    );
    assert_eq!(http01_token("/.well-known/acme-challenge/abc"), Some("abc"));
    assert_eq!(http01_token("/.well-known/acme-challenge"), None);

    let bad = |list: Vec<pb::AcmeHttp01Challenge>| {
        compile_err(&pb::ConfigSnapshot {
            acme_http01: list,
            ..Default::default()
        })
    };
    assert!(matches!(
        bad(vec![http01("a/b")]),
        TlsConfigError::AcmeHttp01 { source, .. } if matches!(source.reason(), Reason::AcmeToken)
    ));
    let mut second = http01("t");
    second.key_authorization = "t.other".into();
    let snap = compile(&pb::ConfigSnapshot {
        acme_http01: vec![http01("t"), second],
        ..Default::default()
    });
    let kept = snap.acme().http01("t").map(|b| b.to_vec());
    assert_eq!(kept.as_deref(), Some(&b"t.thumbprint"[..]));

    let (cert_pem, private_key_pem) = self_signed(&["*.a.test"]);
    let error = compile_err(&pb::ConfigSnapshot {
        acme_tls_alpn01: vec![pb::AcmeTlsAlpnChallenge {
            domain: "*.a.test".into(),
            cert_pem,
            private_key_pem,
        }],
        ..Default::default()
    });
    assert!(
        matches!(
            &error,
            TlsConfigError::AcmeTlsAlpn01 {
                source: CertError::InvalidDomain(_),
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn server_config_offers_acme_first() {
    let config = tls_config(Arc::new(ConfigStore::default())).unwrap();
    assert_eq!(config.alpn_protocols, [ACME_TLS_ALPN, ALPN_H2, ALPN_HTTP11]);
}

/// A TLS-ALPN-01 certificate as RFC 8737 §3 specifies it: self-signed, one SAN, and the
/// critical `acmeIdentifier` extension.
fn challenge(domain: &str) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![domain.to_owned()]).unwrap();
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(&[7; 32])];
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

#[test]
fn challenge_certificates_with_critical_acme_identifier_compile() {
    let ok = challenge_wire("acme.test");
    let snap = compile(&pb::ConfigSnapshot {
        acme_tls_alpn01: vec![ok.clone()],
        ..Default::default()
    });
    assert!(snap.acme().tls_alpn01("acme.test").is_some());
    // webpki refuses it as a regular certificate (unknown critical extension).
    let error = cert_error(pb::TlsCertificate {
        name: "c".into(),
        domains: vec![],
        cert_chain_pem: ok.cert_pem.clone(),
        private_key_pem: ok.private_key_pem.clone(),
    });
    assert!(matches!(error, CertError::Leaf(_)), "{error}");
    // A challenge key must still match its certificate.
    let mismatched = pb::AcmeTlsAlpnChallenge {
        private_key_pem: challenge("acme.test").1,
        ..ok.clone()
    };
    let error = compile_err(&pb::ConfigSnapshot {
        acme_tls_alpn01: vec![mismatched],
        ..Default::default()
    });
    assert!(
        matches!(
            &error,
            TlsConfigError::AcmeTlsAlpn01 {
                source: CertError::KeyMismatch,
                ..
            }
        ),
        "{error}"
    );
    // Two challenges for one name (two orders at once): the first wins.
    let second = pb::AcmeTlsAlpnChallenge {
        domain: "ACME.test".into(),
        ..challenge_wire("acme.test")
    };
    let snap = compile(&pb::ConfigSnapshot {
        acme_tls_alpn01: vec![ok.clone(), second],
        ..Default::default()
    });
    let kept = snap.acme().tls_alpn01("acme.test").map(|c| c.cert.clone());
    let first = rustls::pki_types::CertificateDer::pem_slice_iter(ok.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(kept, Some(first));
}

fn challenge_wire(domain: &str) -> pb::AcmeTlsAlpnChallenge {
    let (cert_pem, private_key_pem) = challenge(domain);
    pb::AcmeTlsAlpnChallenge {
        domain: domain.into(),
        cert_pem,
        private_key_pem,
    }
}

#[test]
fn der_walker_never_panics_on_garbage() {
    use super::der::subject_public_key_info as spki;
    assert_eq!(spki(&[]), None);
    assert_eq!(spki(&[0x30]), None);
    assert_eq!(spki(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    assert_eq!(spki(&[0x30, 0x02, 0x30, 0x00]), None);
    let (pem, _) = self_signed(&["a.test"]);
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    for cut in 0..der.len() {
        assert_eq!(spki(&der[..cut]), None);
    }
    assert!(spki(&der).is_some_and(|s| s.first() == Some(&0x30)));
}
