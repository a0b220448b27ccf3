//! ACME challenge answers from the snapshot. The control plane runs the ACME client and
//! publishes what each pending challenge needs; the data plane only answers.
//!
//! - HTTP-01 (RFC 8555 §8.3): `GET /.well-known/acme-challenge/{token}` on the plain-HTTP
//!   listener returns the key authorization, for any Host.
//! - TLS-ALPN-01 (RFC 8737): a handshake offering ALPN `acme-tls/1` gets the challenge
//!   certificate for its SNI, and the connection is closed after the handshake.
//!
//! Challenge certificates are parsed and checked at compile time like any other.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use portcullis_proto::v1 as pb;
use rustls::crypto::KeyProvider;
use rustls::sign::CertifiedKey;

use super::TlsConfigError;
use super::certs::{self, CertError};
use crate::spec::{HostPattern, InvalidField, Reason};

/// The ALPN protocol name of TLS-ALPN-01 (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Path prefix of HTTP-01 challenges (RFC 8555 §8.3).
pub(crate) const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// The pending challenges of one snapshot.
#[derive(Debug, Default)]
pub struct AcmeChallenges {
    /// Token → key authorization, ready to be sent as a body without copying.
    http01: HashMap<Box<str>, Bytes>,
    /// Lowercased domain → challenge certificate.
    tls_alpn01: HashMap<Box<str>, Arc<CertifiedKey>>,
}

// === impl AcmeChallenges ===

impl AcmeChallenges {
    /// Validates both challenge lists; for a repeated token or domain the first entry
    /// wins (two orders racing should not make every data plane refuse the snapshot).
    /// Tokens must be non-empty base64url, so they are one path segment. TLS-ALPN-01
    /// domains must be exact names (RFC 8737 §3 has no wildcards) and their certificates
    /// must parse and match their key. Their SAN is not checked: webpki cannot parse
    /// challenge certificates (see [`certs::challenge_key`]), and a wrong one only fails
    /// that one validation.
    pub(crate) fn compile(
        http01: &[pb::AcmeHttp01Challenge],
        tls_alpn01: &[pb::AcmeTlsAlpnChallenge],
        keys: &dyn KeyProvider,
    ) -> Result<Self, TlsConfigError> {
        let mut out = Self::default();
        for challenge in http01 {
            let err = |field, reason| TlsConfigError::AcmeHttp01 {
                token: challenge.token.clone(),
                source: InvalidField::new(field, reason),
            };
            let token = challenge.token.as_str();
            if token.is_empty() {
                return Err(err("token", Reason::Empty));
            }
            if !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(err("token", Reason::AcmeToken));
            }
            if challenge.key_authorization.is_empty() {
                return Err(err("key_authorization", Reason::Empty));
            }
            if out.http01.contains_key(token) {
                tracing::warn!(token, "duplicate ACME HTTP-01 token; keeping the first");
                continue;
            }
            let body = Bytes::from(challenge.key_authorization.clone());
            out.http01.insert(token.into(), body);
        }
        for challenge in tls_alpn01 {
            let err = |source| TlsConfigError::AcmeTlsAlpn01 {
                domain: challenge.domain.clone(),
                source,
            };
            let key = certs::challenge_key(&challenge.cert_pem, &challenge.private_key_pem, keys)
                .map_err(err)?;
            let name = match HostPattern::parse(&challenge.domain) {
                Ok(HostPattern::Exact(name)) => name,
                Ok(HostPattern::Wildcard(_)) | Err(_) => {
                    return Err(err(CertError::InvalidDomain(challenge.domain.clone())));
                }
            };
            if out.tls_alpn01.contains_key(&name) {
                tracing::warn!(domain = %name, "duplicate TLS-ALPN-01 domain; keeping the first");
                continue;
            }
            out.tls_alpn01.insert(name, key);
        }
        Ok(out)
    }

    /// The key authorization for an HTTP-01 `token`.
    pub(crate) fn http01(&self, token: &str) -> Option<&Bytes> {
        self.http01.get(token)
    }

    /// The TLS-ALPN-01 certificate for a normalised (lowercase) `domain`.
    pub(crate) fn tls_alpn01(&self, domain: &str) -> Option<&Arc<CertifiedKey>> {
        self.tls_alpn01.get(domain)
    }
}

/// The token of an HTTP-01 challenge path, or `None` if `path` is not one.
/// `/.well-known/acme-challenge/abc` → `Some("abc")`; an empty token is `Some("")`, which
/// matches no challenge and so answers 404.
pub(crate) fn http01_token(path: &str) -> Option<&str> {
    path.strip_prefix(HTTP01_PREFIX)
}
