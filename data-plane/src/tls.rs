//! TLS for the HTTPS listener ("automatic HTTPS", data-plane half).
//!
//! The control plane obtains certificates (ACME) and sends them, with pending ACME
//! challenges, in every snapshot. The data plane never reads certificate files:
//! - [`certs`](Certificates): PEM → validated `CertifiedKey`s, at snapshot compile time.
//! - [`acme`](AcmeChallenges): HTTP-01 answers and TLS-ALPN-01 challenge certificates.
//! - [`resolver`](SniResolver): picks a certificate per handshake from the served
//!   snapshot, so a new snapshot rotates certificates with no restart.
//!
//! [`server_config`] is built once at start-up and never changes; everything that
//! changes lives in the snapshot.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::{CryptoProvider, aws_lc_rs};

use crate::store::ConfigStore;

mod acme;
mod certs;
mod der;
mod resolver;

pub use self::acme::{ACME_TLS_ALPN, AcmeChallenges, HTTP01_PREFIX, http01_token};
pub use self::certs::{CertError, Certificates};
pub use self::resolver::{SniResolver, select};

/// ALPN for HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN for HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The crypto provider for the listener and for loading snapshot keys: aws-lc-rs, the
/// only one built into this workspace.
pub fn provider() -> CryptoProvider {
    aws_lc_rs::default_provider()
}

/// The HTTPS listener's configuration: TLS 1.3 and 1.2, no client authentication,
/// certificates from [`SniResolver`] over `store`.
///
/// ALPN lists `acme-tls/1` first. rustls picks the first of *its* protocols that the
/// client offered, so a client offering `acme-tls/1` always negotiates it, which is
/// exactly when the resolver hands out a challenge certificate; the listener closes such
/// connections after the handshake. Browsers never offer it and get `h2` or `http/1.1`.
pub fn server_config(store: Arc<ConfigStore>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver::new(store)));
    config.alpn_protocols = vec![
        ACME_TLS_ALPN.to_vec(),
        ALPN_H2.to_vec(),
        ALPN_HTTP11.to_vec(),
    ];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests;
