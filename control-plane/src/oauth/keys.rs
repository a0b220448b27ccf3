//! Signing keys: the first created when the control plane starts, rotated on schedule or on
//! demand, and published as a JWKS until no token they signed can still be valid.
//!
//! Private halves are PKCS#8 PEM sealed with the master key. Data planes only ever see the
//! public JWKS, which travels in the config snapshot, and refuse tokens whose `kid` it
//! lacks. So a key is published before it signs: a rotated key signs only once every
//! connected data plane has ACKed a snapshot carrying it (the mechanism ACME uses for its
//! challenge answers), or after [`PROPAGATION_WAIT`]; the previous key signs until then.

use std::time::Duration;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};

use super::{OAuthError, OAuthServer, SigningAlg, SigningKeyRecord, put};
use crate::model::now;
use crate::store::{Batch, Check, Collection, StoreError, Write};

/// Longest a rotated key waits for data planes to ACK the snapshot carrying it before it
/// signs anyway. A snapshot normally reaches every data plane within milliseconds; the
/// bound keeps `rotate-keys` prompt when one is stuck (it then refuses the new key's
/// tokens until it catches up, as it would any other config it lacks).
pub const PROPAGATION_WAIT: Duration = Duration::from_secs(10);

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

/// Generates a key record (not yet stored) that signs from its creation.
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
    let created_at = now();
    Ok(SigningKeyRecord {
        kid,
        alg: alg.as_str().to_owned(),
        private_sealed: server.cp().master_key().seal(private_pem.as_bytes()),
        public_jwk: serde_json::to_value(&jwk).map_err(OAuthError::server)?,
        created_at,
        signs_from: created_at,
        retired_at: None,
    })
}

/// The key signing at `t`: the one whose signing period covers `t` (the latest to start,
/// should a concurrent start-up have made two).
fn signing_at(records: &[SigningKeyRecord], t: i64) -> Option<&SigningKeyRecord> {
    records
        .iter()
        .filter(|k| k.signs_from <= t && k.retired_at.is_none_or(|r| t < r))
        .max_by_key(|k| (k.signs_from.max(k.created_at), k.created_at, &k.kid))
}

/// Creates a key that signs at once, unless one signs or is about to. Runs at start-up,
/// before either listener serves, so the first snapshot a data plane receives already
/// carries the key of the first token; and on every sweep, should the store have lost it.
pub async fn ensure(server: &OAuthServer) -> Result<(), OAuthError> {
    let records: Vec<SigningKeyRecord> = server.list(Collection::OAuthKeys).await?;
    if records.iter().any(|k| k.retired_at.is_none()) {
        return Ok(());
    }
    let fresh = generate(server, server.settings().signing_alg)?;
    server
        .apply(Batch {
            checks: vec![Check::Absent(Collection::OAuthKeys, fresh.kid.clone())],
            writes: vec![put(Collection::OAuthKeys, &fresh.kid, &fresh)],
        })
        .await?;
    tracing::info!(kid = %fresh.kid, alg = %fresh.alg, "created OAuth signing key");
    Ok(())
}

/// The key that signs new tokens now.
pub async fn active(server: &OAuthServer) -> Result<ActiveKey, OAuthError> {
    let records: Vec<SigningKeyRecord> = server.list(Collection::OAuthKeys).await?;
    let record = signing_at(&records, now())
        .ok_or_else(|| OAuthError::server("no OAuth signing key (the next sweep creates one)"))?;
    let pem = server
        .cp()
        .master_key()
        .open(&record.private_sealed)
        .map_err(OAuthError::server)?;
    let pem = String::from_utf8(pem).map_err(OAuthError::server)?;
    let alg = jose_alg(&record.alg)?;
    Ok(ActiveKey {
        kid: record.kid.clone(),
        alg,
        key: encoding_key(alg, &pem)?,
    })
}

/// Rotates: publishes a new key (the current one keeps signing), waits until every
/// connected data plane has ACKed a snapshot carrying it, at most [`PROPAGATION_WAIT`],
/// then lets it sign and retires the others. Returns the new `kid`, signing from then on.
///
/// Both moments are stored with the keys (`signs_from`, `retired_at`), never only kept in
/// memory: every control plane sharing the store signs with the same key, and a rotation
/// interrupted by a crash still completes at `PROPAGATION_WAIT`.
pub async fn rotate(server: &OAuthServer) -> Result<String, OAuthError> {
    rotate_fenced(server, None).await
}

/// [`rotate`] with every write guarded by `fence` (the maintenance lease, see
/// [`crate::lease`]): a control plane that lost the lease rotates nothing.
async fn rotate_fenced(server: &OAuthServer, fence: Option<&Check>) -> Result<String, OAuthError> {
    let records: Vec<SigningKeyRecord> = server.list(Collection::OAuthKeys).await?;
    let mut fresh = generate(server, server.settings().signing_alg)?;
    let switch_at = fresh.created_at + PROPAGATION_WAIT.as_secs() as i64;
    fresh.signs_from = switch_at;
    let mut writes = vec![put(Collection::OAuthKeys, &fresh.kid, &fresh)];
    for mut old in records.into_iter().filter(|k| k.retired_at.is_none()) {
        old.retired_at = Some(switch_at);
        writes.push(put(Collection::OAuthKeys, &old.kid.clone(), &old));
    }
    let published = server
        .apply(Batch {
            checks: [Check::Absent(Collection::OAuthKeys, fresh.kid.clone())]
                .into_iter()
                .chain(fence.cloned())
                .collect(),
            writes,
        })
        .await?;
    tracing::info!(kid = %fresh.kid, "published a new OAuth signing key; it signs once data planes have it");
    if let Err(e) = server
        .cp()
        .wait_for_data_planes(published, PROPAGATION_WAIT)
        .await
    {
        // It still starts signing at `switch_at`.
        tracing::warn!(error = %e, kid = %fresh.kid, "cannot follow data-plane ACKs for the new signing key");
        return Ok(fresh.kid);
    }
    start_signing(server, &fresh, fence).await?;
    tracing::info!(kid = %fresh.kid, "rotated OAuth signing key");
    Ok(fresh.kid)
}

/// Lets `fresh` sign from now on instead of at its `signs_from`, and retires every other
/// key now at the latest. Changes nothing when it already signs, is gone, was itself
/// superseded by a later rotation (which retired it), or a key changed meanwhile: then the
/// stored times stand.
async fn start_signing(
    server: &OAuthServer,
    fresh: &SigningKeyRecord,
    fence: Option<&Check>,
) -> Result<(), OAuthError> {
    let t = now();
    if fresh.signs_from <= t {
        return Ok(());
    }
    let mut batch = Batch {
        checks: fence.cloned().into_iter().collect(),
        writes: vec![],
    };
    let mut current = false;
    for (key, raw) in server.cp().store().list(Collection::OAuthKeys).await? {
        let mut k: SigningKeyRecord = super::decode(Collection::OAuthKeys, &key, &raw)?;
        if k.kid == fresh.kid {
            current = k.retired_at.is_none();
            k.signs_from = t;
        } else if k.retired_at.is_none_or(|r| r > t) {
            k.retired_at = Some(t);
        } else {
            continue;
        }
        batch.writes.push(put(Collection::OAuthKeys, &key, &k));
        batch
            .checks
            .push(Check::Equals(Collection::OAuthKeys, key, raw));
    }
    if !current {
        return Ok(());
    }
    match server.apply(batch).await {
        Ok(_) | Err(StoreError::CheckFailed(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Rotates when the current key is older than the configured period, creates one if
/// none is left, and drops retired keys once every token they signed has expired.
pub async fn rotate_if_due(server: &OAuthServer, fence: Option<&Check>) -> Result<(), OAuthError> {
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
                checks: fence.cloned().into_iter().collect(),
                writes: stale,
            })
            .await?;
    }
    match records
        .iter()
        .filter(|k| k.retired_at.is_none())
        .max_by_key(|k| k.created_at)
    {
        None => ensure(server).await,
        Some(k) if k.created_at + period <= t => rotate_fenced(server, fence).await.map(drop),
        Some(_) => Ok(()),
    }
}

/// The public JWKS document from stored key records: current and retired-but-live keys.
pub fn jwks_from_records(records: &[SigningKeyRecord]) -> serde_json::Value {
    let mut keys: Vec<&SigningKeyRecord> = records.iter().collect();
    // Keys not retired (signing, or about to after a rotation) first, then retired ones;
    // newest first within each.
    keys.sort_by_key(|k| std::cmp::Reverse((k.retired_at.is_none(), k.created_at)));
    serde_json::json!({ "keys": keys.iter().map(|k| &k.public_jwk).collect::<Vec<_>>() })
}

/// The public JWKS document.
pub async fn jwks(server: &OAuthServer) -> Result<serde_json::Value, OAuthError> {
    let records: Vec<SigningKeyRecord> = server.list(Collection::OAuthKeys).await?;
    Ok(jwks_from_records(&records))
}

#[cfg(test)]
mod tests;
