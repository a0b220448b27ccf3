//! Where and how certificates are ordered: the ACME directories, the CA trust bundle, the
//! account contact, the time limits and the External Account Binding, as given on the
//! command line. Plain data, read by the service layer and the issuer.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use instant_acme::ExternalAccountKey;

/// Let's Encrypt production.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt staging.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// Where and how to order certificates.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    /// Directory used unless a request asks for staging.
    pub directory_url: String,
    /// Directory for `staging: true`.
    pub staging_directory_url: String,
    /// Extra CA bundle (PEM) trusted for the directory's own TLS, e.g. Pebble's.
    pub ca_bundle: Option<PathBuf>,
    /// Account contact when a request names none.
    pub default_email: String,
    /// Longest wait for data planes to ACK a challenge before asking the CA anyway.
    pub ack_timeout: Duration,
    /// Longest wait for the CA to validate and issue.
    pub order_timeout: Duration,
    /// External Account Binding for CAs that only accept accounts tied to one the operator
    /// already holds; used when creating a new ACME account.
    pub eab: Option<Eab>,
}

impl Default for AcmeSettings {
    fn default() -> Self {
        Self {
            directory_url: LETS_ENCRYPT.into(),
            staging_directory_url: LETS_ENCRYPT_STAGING.into(),
            ca_bundle: None,
            default_email: String::new(),
            ack_timeout: Duration::from_secs(30),
            order_timeout: Duration::from_secs(120),
            eab: None,
        }
    }
}

/// External Account Binding (RFC 8555 §7.3.4): the key id and HMAC key a CA hands out so
/// that new ACME accounts are tied to the operator's existing account with that CA (some
/// CAs, e.g. ZeroSSL or commercial ones, refuse accounts without it).
#[derive(Clone)]
pub struct Eab {
    /// Key id the CA gave.
    pub kid: String,
    /// The HMAC key, decoded. Secret: never printed (see the `Debug` impl).
    hmac_key: Vec<u8>,
}

impl fmt::Debug for Eab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Eab")
            .field("kid", &self.kid)
            .field("hmac_key", &"<redacted>")
            .finish()
    }
}

/// Why the External Account Binding settings were refused at start-up.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EabError {
    /// Only the HMAC key was given.
    #[error("--acme-eab-hmac-key is set but --acme-eab-kid is not; give both or neither")]
    MissingKid,
    /// Only the key id was given.
    #[error("--acme-eab-kid is set but --acme-eab-hmac-key is not; give both or neither")]
    MissingKey,
    /// The HMAC key is not base64url text (the form CAs hand it out in).
    #[error("--acme-eab-hmac-key is not base64url: {0}")]
    BadKey(String),
    /// The HMAC key decodes to nothing.
    #[error("--acme-eab-hmac-key is empty once decoded")]
    EmptyKey,
}

impl Eab {
    /// Builds the binding from `--acme-eab-kid` and `--acme-eab-hmac-key` (base64url, with
    /// or without padding). Both or neither; blank values count as absent so an empty
    /// environment variable does not switch EAB on.
    pub fn from_flags(kid: Option<&str>, hmac_key: Option<&str>) -> Result<Option<Self>, EabError> {
        let kid = kid.map(str::trim).filter(|k| !k.is_empty());
        let key = hmac_key.map(str::trim).filter(|k| !k.is_empty());
        match (kid, key) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(EabError::MissingKid),
            (Some(_), None) => Err(EabError::MissingKey),
            (Some(kid), Some(key)) => {
                let text: String = key
                    .trim_end_matches('=')
                    .chars()
                    .map(|c| match c {
                        '+' => '-',
                        '/' => '_',
                        c => c,
                    })
                    .collect();
                let hmac_key = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(text.as_bytes())
                    .map_err(|e| EabError::BadKey(e.to_string()))?;
                if hmac_key.is_empty() {
                    return Err(EabError::EmptyKey);
                }
                Ok(Some(Self {
                    kid: kid.to_owned(),
                    hmac_key,
                }))
            }
        }
    }

    /// The binding in the form instant-acme signs new accounts with.
    pub(crate) fn key(&self) -> ExternalAccountKey {
        ExternalAccountKey::new(self.kid.clone(), &self.hmac_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eab_flags_need_both_parts_and_a_base64url_key() {
        assert!(Eab::from_flags(None, None).unwrap().is_none());
        assert!(Eab::from_flags(Some(" "), Some("")).unwrap().is_none());
        assert_eq!(
            Eab::from_flags(None, Some("a2V5")).unwrap_err(),
            EabError::MissingKid
        );
        assert_eq!(
            Eab::from_flags(Some("kid-1"), None).unwrap_err(),
            EabError::MissingKey
        );
        assert!(matches!(
            Eab::from_flags(Some("kid-1"), Some("not base64!")).unwrap_err(),
            EabError::BadKey(_)
        ));
        assert!(
            EabError::BadKey(String::new())
                .to_string()
                .contains("--acme-eab-hmac-key")
        );
        // Pebble's example key (base64url, no padding) and padded standard base64 both work.
        let eab = Eab::from_flags(
            Some("kid-1"),
            Some("zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(eab.kid, "kid-1");
        assert_eq!(eab.hmac_key.len(), 48);
        let padded = Eab::from_flags(Some("k"), Some("a2V5+/8="))
            .unwrap()
            .unwrap();
        assert_eq!(padded.hmac_key, b"key\xfb\xff");
        // The key never shows in debug output (settings are logged at start-up).
        assert!(!format!("{eab:?}").contains("zWNDZM6"));
        assert!(format!("{eab:?}").contains("redacted"));
    }
}
