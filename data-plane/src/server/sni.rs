//! Certificate selection per handshake, from the snapshot being served.
//!
//! The resolver holds the [`ConfigStore`], not a certificate list: each handshake loads
//! the current snapshot once (an atomic load, no lock) and picks from tables built at
//! compile time. Publishing a snapshot therefore changes the certificate of every *new*
//! handshake at once, while established connections keep the one they negotiated.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::Snapshot;
use crate::router::NormalizedHost;
use crate::store::ConfigStore;
use crate::tls::ACME_TLS_ALPN;

/// A [`ResolvesServerCert`] that picks certificates by SNI from the current snapshot.
#[derive(Debug)]
pub(crate) struct SniResolver {
    store: Arc<ConfigStore>,
}

// === impl SniResolver ===

impl SniResolver {
    /// Resolves against whatever `store` serves at handshake time.
    pub(crate) fn new(store: Arc<ConfigStore>) -> Self {
        Self { store }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let snapshot = self.store.load()?;
        let acme = hello
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| p == ACME_TLS_ALPN));
        let sni = hello.server_name();
        let chosen = select(&snapshot, sni, acme).cloned();
        if chosen.is_none() {
            tracing::debug!(sni, acme, "no certificate for handshake");
        }
        chosen
    }
}

/// The certificate for a handshake with server name `sni` (`None`: the client sent no
/// SNI). `acme` is whether the client offered ALPN `acme-tls/1`.
///
/// Order:
/// 1. `acme`: the TLS-ALPN-01 challenge certificate for exactly this name, or nothing.
///    A validation handshake never gets a regular certificate and vice versa.
/// 2. The proxy that would serve this name on the HTTPS listener (exact, then most
///    specific wildcard), if it names a certificate.
/// 3. A certificate whose domains cover the name exactly, then by a one-label wildcard.
/// 4. The snapshot's default certificate.
/// 5. Nothing: the handshake fails with an alert, so no certificate reveals the names
///    it covers to a client that did not ask for one of them.
pub(crate) fn select<'s>(
    snapshot: &'s Snapshot,
    sni: Option<&str>,
    acme: bool,
) -> Option<&'s Arc<CertifiedKey>> {
    let name = sni.and_then(|raw| NormalizedHost::parse(raw).ok());
    if acme {
        return snapshot.acme().tls_alpn01(name?.as_str());
    }
    if let Some(name) = &name {
        let name = name.as_str();
        let proxy_cert = snapshot
            .https_hosts()
            .lookup_normalized(name)
            .and_then(|proxy| proxy.certificate());
        if let Some(cert) = proxy_cert.or_else(|| snapshot.certificates().covering(name)) {
            return Some(cert);
        }
    }
    snapshot.certificates().default_certificate()
}
