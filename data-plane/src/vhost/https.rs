//! A proxy's HTTPS behaviour as served, linked by the compiler
//! ([`crate::config`]) from the proxy's wire fields and the snapshot's certificates.

use std::sync::Arc;

use http::HeaderValue;
use rustls::sign::CertifiedKey;

/// A proxy's HTTPS behaviour as served.
#[derive(Clone, Debug, Default)]
pub struct HttpsSettings {
    /// From `certificate_name`; `None` lets SNI selection fall back to covering
    /// certificates and the default.
    certificate: Option<Arc<CertifiedKey>>,
    /// `Strict-Transport-Security` for HTTPS responses.
    hsts: Option<HeaderValue>,
    /// Answer plain-HTTP requests with a 308 to `https://`.
    redirect: bool,
}

// === impl HttpsSettings ===

impl HttpsSettings {
    pub(crate) fn new(
        certificate: Option<Arc<CertifiedKey>>,
        hsts: Option<HeaderValue>,
        redirect: bool,
    ) -> Self {
        Self {
            certificate,
            hsts,
            redirect,
        }
    }

    /// The certificate the proxy names, if any.
    pub fn certificate(&self) -> Option<&Arc<CertifiedKey>> {
        self.certificate.as_ref()
    }

    /// The `Strict-Transport-Security` value, if configured.
    pub fn hsts(&self) -> Option<&HeaderValue> {
        self.hsts.as_ref()
    }

    /// Whether plain-HTTP requests get a 308 to `https://`.
    pub(crate) fn redirects_to_https(&self) -> bool {
        self.redirect
    }
}
