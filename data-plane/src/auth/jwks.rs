//! The OAuth server's public keys, compiled once per snapshot into decoding keys by `kid`.
//!
//! Only ES256 (P-256) and RS256 keys are kept: those are the algorithms the control plane
//! signs with, and an allowlist taken from the key itself means a token can never choose
//! `none` or an HMAC algorithm keyed with public bytes. Keys of other types are skipped
//! (tokens naming them are refused as "unknown key"), so a newer control plane adding an
//! algorithm fails closed for those tokens instead of making every data plane NACK.

use std::collections::HashMap;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Why `jwks_json` could not be used. The snapshot is rejected (NACK).
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// Not a JSON object with a `keys` array.
    #[error("not a JWKS document: {0}")]
    Document(String),
    /// A supported key without a `kid`: tokens could not select it.
    #[error("key {index} has no kid")]
    MissingKid {
        /// Position in `keys`.
        index: usize,
    },
    /// Two keys share a `kid`, so selecting by `kid` would be ambiguous.
    #[error("kid {0:?} appears more than once")]
    DuplicateKid(String),
    /// A supported key whose parameters do not form a public key.
    #[error("key {kid:?} is unusable: {reason}")]
    BadKey {
        /// The key's id.
        kid: String,
        /// What is wrong.
        reason: String,
    },
}

/// One verification key and the only algorithm it accepts.
pub(crate) struct Key {
    pub(crate) alg: Algorithm,
    pub(crate) key: DecodingKey,
}

/// Decoding keys by `kid`.
#[derive(Default)]
pub(crate) struct KeySet {
    keys: HashMap<Box<str>, Key>,
}

// === impl KeySet ===

impl KeySet {
    /// Parses a JWKS document. Empty text means no keys (every token is refused).
    pub(crate) fn compile(json: &str) -> Result<Self, JwksError> {
        let mut out = Self::default();
        if json.trim().is_empty() {
            return Ok(out);
        }
        let doc: serde_json::Value =
            serde_json::from_str(json).map_err(|e| JwksError::Document(e.to_string()))?;
        let keys = doc
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| JwksError::Document("no \"keys\" array".into()))?;
        for (index, raw) in keys.iter().enumerate() {
            // A key we cannot even parse is one we do not support.
            let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else {
                tracing::debug!(index, "JWKS key skipped: unsupported shape");
                continue;
            };
            let Some(alg) = supported_alg(&jwk) else {
                tracing::debug!(index, "JWKS key skipped: unsupported algorithm");
                continue;
            };
            let kid = jwk
                .common
                .key_id
                .clone()
                .filter(|k| !k.is_empty())
                .ok_or(JwksError::MissingKid { index })?;
            let key = DecodingKey::from_jwk(&jwk).map_err(|e| JwksError::BadKey {
                kid: kid.clone(),
                reason: e.to_string(),
            })?;
            if out
                .keys
                .insert(kid.clone().into(), Key { alg, key })
                .is_some()
            {
                return Err(JwksError::DuplicateKid(kid));
            }
        }
        Ok(out)
    }

    /// The key with this `kid`.
    pub(crate) fn get(&self, kid: &str) -> Option<&Key> {
        self.keys.get(kid)
    }

    /// Number of usable keys (diagnostics).
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// ES256 for P-256 EC keys, RS256 for RSA keys; a declared `alg` must agree.
fn supported_alg(jwk: &Jwk) -> Option<Algorithm> {
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(by_type),
        Some(KeyAlgorithm::ES256) if by_type == Algorithm::ES256 => Some(by_type),
        Some(KeyAlgorithm::RS256) if by_type == Algorithm::RS256 => Some(by_type),
        Some(_) => None,
    }
}
