//! gRPC endpoint for the control plane: HTTP/2 keep-alives detect a vanished control
//! plane; `https://` URLs use rustls with the system roots or a private CA.

use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bad control-plane settings, reported at start-up.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The URL is not a valid URI.
    #[error("invalid control plane URL: {0}")]
    Url(#[source] tonic::transport::Error),
    /// Only `http://` and `https://` are supported.
    #[error("control plane URL must start with http:// or https://")]
    Scheme,
    /// TLS could not be configured (bad CA file, no system roots).
    #[error("control plane TLS setup failed: {0}")]
    Tls(#[source] tonic::transport::Error),
    /// No control-plane URL was given.
    #[error("give at least one control plane URL")]
    NoUrl,
    /// The token cannot be sent as a header value.
    #[error("enrolment token contains characters not allowed in a header")]
    Token,
}

pub(super) fn build(
    url: &str,
    ca_pem: Option<&[u8]>,
    identity: Option<(&[u8], &[u8])>,
) -> Result<Endpoint, EndpointError> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(EndpointError::Url)?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    let endpoint = endpoint
        .user_agent(concat!("portcullis-data-plane/", env!("CARGO_PKG_VERSION")))
        .map_err(EndpointError::Url)?;
    match endpoint.uri().scheme_str() {
        Some("https") => {
            let tls = match ca_pem {
                Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
                None => ClientTlsConfig::new().with_native_roots(),
            };
            let tls = match identity {
                Some((cert, key)) => tls.identity(Identity::from_pem(cert, key)),
                None => tls,
            };
            endpoint.tls_config(tls).map_err(EndpointError::Tls)
        }
        Some("http") => {
            if ca_pem.is_some() {
                tracing::warn!("--ca-cert is ignored for an http:// control plane");
            }
            if identity.is_some() {
                tracing::warn!("--client-cert is ignored for an http:// control plane");
            }
            Ok(endpoint)
        }
        _ => Err(EndpointError::Scheme),
    }
}
