//! Signing keys: created on first use, rotated on schedule or on demand, and published as a
//! JWKS until no token they signed can still be valid.
//!
//! Private halves are PKCS#8 PEM sealed with the master key. Data planes only ever see the
//! public JWKS, which travels in the config snapshot.

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};

use super::{OAuthError, OAuthServer, SigningAlg, SigningKeyRecord, put};
use crate::model::now;
use crate::store::{Batch, Check, Collection, Write};

/// A key ready to sign.
pub struct ActiveKey {
    /// `kid` header value.
    pub kid: String,
    /// JOSE algorithm.
    pub alg: Algorithm,
    /// The private key.
    pub key: EncodingKey,
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn jose_alg(name: &str) -> Result<Algorithm, OAuthError> {
    match name {
        "ES256" => Ok(Algorithm::ES256),
        "RS256" => Ok(Algorithm::RS256),
        other => Err(OAuthError::server(format!(
            "stored key has unknown alg {other}"
        ))),
    }
}

fn encoding_key(alg: Algorithm, pem: &str) -> Result<EncodingKey, OAuthError> {
    match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
        _ => EncodingKey::from_ec_pem(pem.as_bytes()),
    }
    .map_err(OAuthError::server)
}

/// Generates a key record (not yet stored).
pub fn generate(server: &OAuthServer, alg: SigningAlg) -> Result<SigningKeyRecord, OAuthError> {
    let der = match alg {
        SigningAlg::Es256 => {
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| OAuthError::server("EC key generation failed"))?
                .as_ref()
                .to_vec()
        }
        SigningAlg::Rs256 => {
            let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| OAuthError::server("RSA key generation failed"))?;
            let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> = kp
                .as_der()
                .map_err(|_| OAuthError::server("RSA key encoding failed"))?;
            der.as_ref().to_vec()
        }
    };
    let private_pem = pem("PRIVATE KEY", &der);
    let jose = jose_alg(alg.as_str())?;
    let key = encoding_key(jose, &private_pem)?;
    let mut jwk =
        jsonwebtoken::jwk::Jwk::from_encoding_key(&key, jose).map_err(OAuthError::server)?;
    let kid = {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(&der);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..12])
    };
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
    Ok(SigningKeyRecord {
        kid,
        alg: alg.as_str().to_owned(),
        private_sealed: server.cp().master_key().seal(private_pem.as_bytes()),
        public_jwk: serde_json::to_value(&jwk).map_err(OAuthError::server)?,
        created_at: now(),
        retired_at: None,
    })
}

/// The key that signs new tokens, creating the first one if there is none.
pub async fn active(server: &OAuthServer) -> Result<ActiveKey, OAuthError> {
    let records: Vec<SigningKeyRecord> = server.list(Collection::OAuthKeys).await?;
    let current = records
        .into_iter()
        .filter(|k| k.retired_at.is_none())
        .max_by_key(|k| k.created_at);
    let record = match current {
        Some(k) => k,
        None => {
            let fresh = generate(server, server.settings().signing_alg)?;
            server
                .apply(Batch {
                    checks: vec![Check::Absent(Collection::OAuthKeys, fresh.kid.clone())],
                    writes: vec![put(Collection::OAuthKeys, &fresh.kid, &fresh)],
                })
                .await?;
            tracing::info!(kid = %fresh.kid, alg = %fresh.alg, "created OAuth signing key");
            fresh
        }
    };
    let pem = server
        .cp()
        .master_key()
        .open(&record.private_sealed)
        .map_err(OAuthError::server)?;
    let pem = String::from_utf8(pem).map_err(OAuthError::server)?;
    let alg = jose_alg(&record.alg)?;
    Ok(ActiveKey {
        kid: record.kid,
        alg,
        key: encoding_key(alg, &pem)?,
    })
}

/// Retires the current key and creates a new one. Returns the new `kid`.
pub async fn rotate(server: &OAuthServer) -> Result<String, OAuthError> {
    let records: Vec<SigningKeyRecord> = server.list(Collection::OAuthKeys).await?;
    let fresh = generate(server, server.settings().signing_alg)?;
    let t = now();
    let mut writes = vec![put(Collection::OAuthKeys, &fresh.kid, &fresh)];
    for mut old in records.into_iter().filter(|k| k.retired_at.is_none()) {
        old.retired_at = Some(t);
        writes.push(put(Collection::OAuthKeys, &old.kid.clone(), &old));
    }
    server
        .apply(Batch {
            checks: vec![Check::Absent(Collection::OAuthKeys, fresh.kid.clone())],
            writes,
        })
        .await?;
    tracing::info!(kid = %fresh.kid, "rotated OAuth signing key");
    Ok(fresh.kid)
}

/// Rotates when the current key is older than the configured period, and drops retired
/// keys once every token they signed has expired.
pub async fn rotate_if_due(server: &OAuthServer) -> Result<(), OAuthError> {
    let records: Vec<SigningKeyRecord> = server.list(Collection::OAuthKeys).await?;
    let t = now();
    let period = server.settings().key_rotation.as_secs() as i64;
    let access = server.settings().access_ttl.as_secs() as i64;
    let stale: Vec<Write> = records
        .iter()
        .filter(|k| k.retired_at.is_some_and(|r| r + access + 60 < t))
        .map(|k| Write::Delete(Collection::OAuthKeys, k.kid.clone()))
        .collect();
    if !stale.is_empty() {
        server
            .apply(Batch {
                checks: vec![],
                writes: stale,
            })
            .await?;
    }
    let due = records
        .iter()
        .filter(|k| k.retired_at.is_none())
        .max_by_key(|k| k.created_at)
        .is_some_and(|k| k.created_at + period <= t);
    if due {
        rotate(server).await?;
    }
    Ok(())
}

/// The public JWKS document from stored key records: current and retired-but-live keys.
pub fn jwks_from_records(records: &[SigningKeyRecord]) -> serde_json::Value {
    let mut keys: Vec<&SigningKeyRecord> = records.iter().collect();
    // The signing key first, then retired ones newest first.
    keys.sort_by_key(|k| std::cmp::Reverse((k.retired_at.is_none(), k.created_at)));
    serde_json::json!({ "keys": keys.iter().map(|k| &k.public_jwk).collect::<Vec<_>>() })
}

/// The public JWKS document.
pub async fn jwks(server: &OAuthServer) -> Result<serde_json::Value, OAuthError> {
    let records: Vec<SigningKeyRecord> = server.list(Collection::OAuthKeys).await?;
    Ok(jwks_from_records(&records))
}
