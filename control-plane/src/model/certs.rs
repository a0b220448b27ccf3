//! Certificates: what is stored, what the API shows, and what callers send.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Lifecycle of a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CertStatus {
    /// Being ordered.
    Pending,
    /// Issued and in date; served by data planes.
    Valid,
    /// The CA refused or validation failed; `error` says why.
    Failed,
    /// Past `not_after`.
    Expired,
    /// Issued and still served, but inside its renewal window and not renewed yet (shown by
    /// the API so an operator sees a renewal that keeps failing before the certificate
    /// expires). Computed when shown, never stored: the record stays `valid`.
    Expiring,
}

/// ACME challenge type used to prove control of the names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub enum ChallengeKind {
    /// `/.well-known/acme-challenge/{token}` on port 80.
    #[default]
    #[serde(rename = "http-01")]
    Http01,
    /// A special certificate for ALPN `acme-tls/1` on port 443.
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

impl ChallengeKind {
    /// The other challenge type, tried when this one fails.
    pub fn other(self) -> Self {
        match self {
            Self::Http01 => Self::TlsAlpn01,
            Self::TlsAlpn01 => Self::Http01,
        }
    }
}

/// Where a certificate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CertSource {
    /// Ordered from an ACME CA.
    Acme,
    /// Made locally for development names; trusted by nobody.
    SelfSigned,
    /// Brought by the user; never renewed here.
    Uploaded,
}

/// A stored certificate. The private key is sealed with the master key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertificateRecord {
    /// Name used by the API and by proxies that attach it.
    pub name: String,
    /// DNS names it covers (SANs).
    pub domains: Vec<String>,
    /// Token that created it.
    pub owner_token_id: String,
    /// ACME or self-signed.
    pub source: CertSource,
    /// ACME directory URL, empty for self-signed.
    pub acme_directory: String,
    /// ACME account contact.
    pub email: String,
    /// Preferred challenge type.
    pub challenge: ChallengeKind,
    /// Lifecycle state.
    pub status: CertStatus,
    /// Why the last attempt failed, as the CA said it.
    pub error: String,
    /// Issuer distinguished name once issued.
    pub issuer: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// Unix seconds of the last issuance or renewal attempt.
    pub last_attempt_at: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Failed attempts since the last success; drives the retry backoff.
    #[serde(default)]
    pub renewal_failures: u32,
    /// The CA's suggested renewal window (ACME Renewal Information), when it offers one.
    #[serde(default)]
    pub ari: AriState,
    /// PEM chain, leaf first; public.
    pub cert_chain_pem: String,
    /// Sealed PEM private key; never leaves the control plane but in the config stream.
    pub private_key_sealed: String,
}

/// What the CA said about when to renew (RFC 9773), so renewal follows the CA's schedule
/// (e.g. early after a mass revocation) instead of a fixed fraction of the lifetime.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AriState {
    /// Start of the suggested window, Unix seconds; 0 when the CA gave none.
    pub window_start: i64,
    /// End of the suggested window, Unix seconds; 0 when the CA gave none.
    pub window_end: i64,
    /// When to ask the CA again, Unix seconds (its `Retry-After`, within bounds).
    pub next_check: i64,
}

/// What the API shows of a certificate: everything but the key.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CertificateInfo {
    /// Name.
    pub name: String,
    /// Names covered.
    pub domains: Vec<String>,
    /// Creator's token id.
    pub owner_token_id: String,
    /// ACME or self-signed.
    pub source: CertSource,
    /// ACME directory.
    pub acme_directory: String,
    /// ACME contact.
    pub email: String,
    /// Preferred challenge.
    pub challenge: ChallengeKind,
    /// State; `expiring` once the renewal is due and has not succeeded yet.
    pub status: CertStatus,
    /// Last error.
    pub error: String,
    /// Issuer.
    pub issuer: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// Unix seconds.
    pub last_attempt_at: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Serial number of the leaf, lowercase hex; tells one issuance from the next.
    pub serial: String,
    /// Public PEM chain.
    pub cert_chain_pem: String,
}

impl CertificateInfo {
    /// The API view of `c`, showing `status` (the renewal policy decides whether a stored
    /// `valid` shows as `expiring`; see `acme::renewal::shown_status`).
    pub fn new(c: &CertificateRecord, status: CertStatus) -> Self {
        Self {
            name: c.name.clone(),
            domains: c.domains.clone(),
            owner_token_id: c.owner_token_id.clone(),
            source: c.source,
            acme_directory: c.acme_directory.clone(),
            email: c.email.clone(),
            challenge: c.challenge,
            status,
            error: c.error.clone(),
            issuer: c.issuer.clone(),
            not_before: c.not_before,
            not_after: c.not_after,
            last_attempt_at: c.last_attempt_at,
            created_at: c.created_at,
            serial: super::pem::leaf_serial(&c.cert_chain_pem),
            cert_chain_pem: c.cert_chain_pem.clone(),
        }
    }
}

/// Body of `POST /api/v1/certificates` (one domain) and `…/multi-domain`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateInput {
    /// Certificate name.
    pub name: String,
    /// Names to cover; each must be a proxy the caller may use.
    pub domains: Vec<String>,
    /// ACME account contact; default the control plane's `--acme-email`.
    pub email: Option<String>,
    /// Default http-01.
    pub challenge: Option<ChallengeKind>,
    /// Use the staging directory instead of production.
    pub staging: Option<bool>,
    /// Make a self-signed development certificate instead of ordering one.
    pub self_signed: Option<bool>,
}

/// A pending ACME challenge answer, stored so every data plane serves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChallengeRecord {
    /// Certificate being ordered.
    pub certificate: String,
    /// Challenge type.
    pub kind: ChallengeKind,
    /// Domain it proves.
    pub domain: String,
    /// HTTP-01 token (the path segment).
    pub token: String,
    /// HTTP-01 body.
    pub key_authorization: String,
    /// TLS-ALPN-01 certificate PEM.
    pub cert_pem: String,
    /// TLS-ALPN-01 sealed key PEM.
    pub private_key_sealed: String,
}

/// A certificate with its private key in clear: what an admin gets from an explicit export.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CertificateExport {
    /// Certificate name.
    pub name: String,
    /// PEM chain, leaf first.
    pub cert_chain_pem: String,
    /// PEM private key of the leaf.
    pub private_key_pem: String,
}

/// Body of `POST /api/v1/certificates/upload`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateUpload {
    /// Certificate name.
    pub name: String,
    /// PEM chain, leaf first.
    pub cert_chain_pem: String,
    /// PEM private key of the leaf.
    pub private_key_pem: String,
}
