//! API token secrets: generation, hashing, and the authenticated caller they yield.
//!
//! Secrets are 256 random bits; only their SHA-256 is stored. The token id is derived from
//! the hash so a lookup is one point read, and the full hash is then compared in constant
//! time.

use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::model::TokenScope;

/// Every API token secret starts with this, which tells it apart from an OAuth access token.
pub const SECRET_PREFIX: &str = "pcs_";

/// Who is calling, after their bearer token was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Id of the token used.
    pub token_id: String,
    /// Its scope.
    pub scope: TokenScope,
}

impl Caller {
    /// Admins may do everything.
    pub fn is_admin(&self) -> bool {
        self.scope == TokenScope::Admin
    }

    /// Whether this caller may change a resource created by `owner_token_id`.
    pub fn may_modify(&self, owner_token_id: &str) -> bool {
        self.is_admin() || self.token_id == owner_token_id
    }
}

/// A fresh bearer secret.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Hex SHA-256 of a secret, as stored.
pub fn hash_secret(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Token id for a stored hash: public, stable, and enough to find the record.
pub fn token_id(secret_sha256: &str) -> String {
    format!("tok_{}", &secret_sha256[..16])
}

/// Constant-time comparison of two hex hashes.
pub fn hashes_equal(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Pulls the secret out of an `Authorization: Bearer …` value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, rest) = header.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_unique_and_ids_derive_from_hashes() {
        let a = generate_secret();
        assert!(a.starts_with("pcs_") && a.len() > 40);
        assert_ne!(a, generate_secret());
        let h = hash_secret(&a);
        assert_eq!(h.len(), 64);
        assert!(token_id(&h).starts_with("tok_"));
        assert!(hashes_equal(&h, &hash_secret(&a)));
        assert!(!hashes_equal(&h, &hash_secret("x")));
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
    }
}
