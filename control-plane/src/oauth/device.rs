//! The device authorization grant (RFC 8628), for input-constrained clients and the CLI's
//! `portcullis login`: the device shows a short user code, the user signs in on any browser
//! at `/device`, and the device polls `/token` until the login is approved.

use rand::Rng as _;
use serde::Serialize;

use super::authorize::{self, Failure, Next, validate_resources};
use super::clients::{self, Presented};
use super::device_state::INTERVAL_SECS;
use super::params::{DEVICE_GRANT, known_scopes};
use super::{
    DeviceRecord, DeviceStatus, ErrorCode, LoginTx, OAuthError, OAuthServer, put, random_token,
    sha256_hex,
};
use crate::model::now;
use crate::store::{Batch, Check, Collection, StoreError};

/// How long a user has to enter the code.
const DEVICE_TTL_SECS: i64 = 600;
/// User-code alphabet: no vowels (no words), no look-alikes (RFC 8628 §6.1).
const ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";

/// Reply of `POST /device_authorization` (RFC 8628 §3.2).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct DeviceAuthorization {
    /// Secret the device polls with.
    pub device_code: String,
    /// What the user types.
    pub user_code: String,
    /// Where the user goes.
    pub verification_uri: String,
    /// The same with the code filled in.
    pub verification_uri_complete: String,
    /// Seconds.
    pub expires_in: i64,
    /// Seconds between polls.
    pub interval: i64,
}

fn user_code() -> String {
    let mut rng = rand::rng();
    let mut s = String::with_capacity(9);
    for i in 0..8 {
        if i == 4 {
            s.push('-');
        }
        s.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
    }
    s
}

/// Uppercases and re-dashes what a user typed; `None` when it cannot be a user code.
pub fn normalize_user_code(raw: &str) -> Option<String> {
    let letters: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphabetic())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (letters.len() == 8 && letters.bytes().all(|b| ALPHABET.contains(&b)))
        .then(|| format!("{}-{}", &letters[..4], &letters[4..]))
}

/// `POST /device_authorization`.
pub async fn authorize_device(
    server: &OAuthServer,
    presented: &Presented,
    scope: Option<&str>,
    resources: &[String],
) -> Result<DeviceAuthorization, OAuthError> {
    let client = clients::authenticate(server, presented).await?;
    if !client.grant_types.iter().any(|g| g == DEVICE_GRANT) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client did not register the device_code grant",
        ));
    }
    let known = known_scopes(server).await?;
    let scopes: Vec<String> = scope
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(unknown) = scopes.iter().find(|s| !known.contains(s)) {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            format!("unknown scope {unknown:?}"),
        ));
    }
    let resources = validate_resources(server, resources).await?;
    let device_code = random_token();
    let key = sha256_hex(&device_code);
    let t = now();
    for _ in 0..5 {
        let code = user_code();
        let record = DeviceRecord {
            client_id: client.client_id.clone(),
            user_code: code.clone(),
            scopes: scopes.clone(),
            resources: resources.clone(),
            status: DeviceStatus::Pending,
            identity: None,
            granted_scopes: vec![],
            auth_time: 0,
            expires_at: t + DEVICE_TTL_SECS,
            last_poll: 0,
        };
        let stored = server
            .apply(Batch {
                checks: vec![Check::Absent(Collection::OAuthUserCodes, code.clone())],
                writes: vec![
                    put(Collection::OAuthDevices, &key, &record),
                    put(Collection::OAuthUserCodes, &code, &key),
                ],
            })
            .await;
        match stored {
            Ok(_) => {
                let uri = format!("{}/device", server.issuer());
                return Ok(DeviceAuthorization {
                    device_code,
                    verification_uri_complete: format!("{uri}?user_code={code}"),
                    verification_uri: uri,
                    user_code: code,
                    expires_in: DEVICE_TTL_SECS,
                    interval: INTERVAL_SECS,
                });
            }
            Err(StoreError::CheckFailed(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        "could not allocate a user code; retry",
    ))
}

async fn by_user_code(
    server: &OAuthServer,
    raw: &str,
) -> Result<(String, DeviceRecord), OAuthError> {
    let unknown = || OAuthError::invalid_request("that code is unknown or has expired");
    let code = normalize_user_code(raw).ok_or_else(unknown)?;
    let (key, _) = server
        .get::<String>(Collection::OAuthUserCodes, &code)
        .await?
        .ok_or_else(unknown)?;
    let (record, _) = server
        .get::<DeviceRecord>(Collection::OAuthDevices, &key)
        .await?
        .ok_or_else(unknown)?;
    if record.expires_at < now() || record.status != DeviceStatus::Pending {
        return Err(unknown());
    }
    Ok((key, record))
}

/// `POST /device` with a user code: starts the browser login for that device.
pub async fn start_login(
    server: &OAuthServer,
    raw_code: &str,
    idp: Option<&str>,
) -> Result<Next, Failure> {
    let (key, record) = by_user_code(server, raw_code).await?;
    let tx = LoginTx {
        id: random_token(),
        browser_sha256: String::new(),
        client_id: record.client_id,
        redirect_uri: String::new(),
        state: None,
        code_challenge: String::new(),
        scopes: record.scopes,
        resources: record.resources,
        idp: None,
        settings_host: None,
        device_key: Some(key),
        upstream_verifier: random_token(),
        upstream_nonce: random_token(),
        upstream_prompt: None,
        identity: None,
        granted_scopes: vec![],
        csrf_sha256: String::new(),
        auth_time: 0,
        expires_at: record.expires_at,
    };
    Ok(authorize::begin_login(server, tx, idp).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_typable() {
        let c = user_code();
        assert_eq!(c.len(), 9);
        assert_eq!(
            normalize_user_code(&c.to_lowercase().replace('-', " ")),
            Some(c)
        );
        assert_eq!(normalize_user_code("AEIO-UBCD"), None);
        assert_eq!(normalize_user_code("BCDF"), None);
    }
}
