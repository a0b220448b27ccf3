//! Per-proxy HTTPS settings, resolved at compile time into [`HttpsSettings`]: the
//! certificate a proxy names, whether its plain-HTTP requests are redirected, and its
//! ready-made HSTS header.

use crate::spec::HostPattern;
use crate::tls::Certificates;
use crate::vhost::HttpsSettings;
use http::HeaderValue;
use portcullis_proto::v1 as pb;

/// The wire fields [`HttpsSettings`] are made of, validated but not yet linked.
#[derive(Debug)]
pub(crate) struct HttpsSpec {
    pub(crate) enable_https: bool,
    /// Empty: no named certificate.
    pub(crate) certificate_name: String,
    pub(crate) redirect_http_to_https: bool,
    pub(crate) hsts: Option<HeaderValue>,
}

// === impl HttpsSpec ===

impl HttpsSpec {
    pub(crate) fn from_proto(p: &pb::ProxyTarget) -> Self {
        Self {
            enable_https: p.enable_https,
            certificate_name: p.certificate_name.trim().to_owned(),
            redirect_http_to_https: p.redirect_http_to_https,
            hsts: hsts_header(p.hsts.as_ref()),
        }
    }

    /// Whether plain HTTP answers with a redirect. Only when the proxy is actually served
    /// over HTTPS: a redirect to a listener that 404s the host would strand clients.
    pub(crate) fn redirects(&self) -> bool {
        self.redirect_http_to_https && self.enable_https
    }

    /// Resolves `certificate_name`. A name missing from the snapshot is not an error: the
    /// control plane only sends certificates that are issued and unexpired, so a proxy
    /// may name one that is still pending or has lapsed. SNI selection then falls back to
    /// covering certificates and the default, and a warning is logged.
    pub(crate) fn link(&self, hostname: &HostPattern, certs: &Certificates) -> HttpsSettings {
        let certificate = match self.certificate_name.as_str() {
            "" => None,
            name => {
                let found = certs.get(name).cloned();
                if found.is_none() && self.enable_https {
                    tracing::warn!(
                        proxy = %hostname,
                        certificate = name,
                        "proxy names a certificate the snapshot does not carry; \
                         falling back to covering certificates"
                    );
                }
                found
            }
        };
        HttpsSettings::new(certificate, self.hsts.clone(), self.redirects())
    }
}

/// `Strict-Transport-Security` value for `policy` (RFC 6797 §6.1), e.g.
/// `max-age=31536000; includeSubDomains; preload`. `None` when absent or `max_age_secs`
/// is 0, as the wire contract says; the header is never sent with `max-age=0`.
pub(crate) fn hsts_header(policy: Option<&pb::HstsPolicy>) -> Option<HeaderValue> {
    let policy = policy.filter(|p| p.max_age_secs > 0)?;
    let mut value = format!("max-age={}", policy.max_age_secs);
    if policy.include_subdomains {
        value.push_str("; includeSubDomains");
    }
    if policy.preload {
        value.push_str("; preload");
    }
    // Digits, letters, '=', ';' and spaces: always a valid header value.
    HeaderValue::try_from(value).ok()
}
