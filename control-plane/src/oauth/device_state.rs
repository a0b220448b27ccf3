//! A device authorization's life after `/device_authorization`: approved or denied when the
//! browser login it started ends (called by `authorize`), then polled for by the token
//! endpoint (called by `token`). Imports neither, so both can use it.

use super::{
    ClientRecord, DeviceRecord, DeviceStatus, ErrorCode, LoginTx, OAuthError, OAuthServer, put,
    sha256_hex,
};
use crate::model::now;
use crate::store::{Batch, Check, Collection, StoreError, Write};

/// Minimum seconds between polls.
pub const INTERVAL_SECS: i64 = 5;

/// Marks the device approved with the login's identity and scopes.
pub(crate) async fn approve(
    server: &OAuthServer,
    key: &str,
    tx: &LoginTx,
) -> Result<(), OAuthError> {
    let (mut record, raw) = server
        .get::<DeviceRecord>(Collection::OAuthDevices, key)
        .await?
        .ok_or_else(|| OAuthError::invalid_request("the device authorization expired"))?;
    if record.status != DeviceStatus::Pending {
        return Err(OAuthError::invalid_request(
            "this device was already handled",
        ));
    }
    record.status = DeviceStatus::Approved;
    record.identity = tx.identity.clone();
    record.granted_scopes = tx.granted_scopes.clone();
    record.auth_time = tx.auth_time;
    server
        .apply(Batch {
            checks: vec![Check::Equals(Collection::OAuthDevices, key.to_owned(), raw)],
            writes: vec![
                put(Collection::OAuthDevices, key, &record),
                Write::Delete(Collection::OAuthUserCodes, record.user_code.clone()),
            ],
        })
        .await
        .map_err(|e| match e {
            StoreError::CheckFailed(_) => {
                OAuthError::invalid_request("this device was already handled")
            }
            e => e.into(),
        })?;
    Ok(())
}

/// Marks the device denied.
pub(crate) async fn deny(server: &OAuthServer, key: &str) -> Result<(), OAuthError> {
    if let Some((mut record, _)) = server
        .get::<DeviceRecord>(Collection::OAuthDevices, key)
        .await?
    {
        record.status = DeviceStatus::Denied;
        server
            .apply(Batch {
                checks: vec![],
                writes: vec![
                    put(Collection::OAuthDevices, key, &record),
                    Write::Delete(Collection::OAuthUserCodes, record.user_code.clone()),
                ],
            })
            .await?;
    }
    Ok(())
}

/// The token endpoint's device grant: pending, slow down, denied, expired, or the login.
pub(crate) async fn poll(
    server: &OAuthServer,
    client: &ClientRecord,
    device_code: &str,
) -> Result<DeviceRecord, OAuthError> {
    let key = sha256_hex(device_code);
    let (mut record, raw) = server
        .get::<DeviceRecord>(Collection::OAuthDevices, &key)
        .await?
        .ok_or_else(|| OAuthError::new(ErrorCode::InvalidGrant, "unknown device_code"))?;
    if record.client_id != client.client_id {
        return Err(OAuthError::new(
            ErrorCode::InvalidGrant,
            "the device_code belongs to another client",
        ));
    }
    let t = now();
    if record.expires_at < t {
        return Err(OAuthError::new(
            ErrorCode::ExpiredToken,
            "the device code expired; start again",
        ));
    }
    match record.status {
        DeviceStatus::Denied => Err(OAuthError::new(
            ErrorCode::AccessDenied,
            "the login was refused",
        )),
        DeviceStatus::Pending => {
            let too_fast = t - record.last_poll < INTERVAL_SECS;
            record.last_poll = t;
            let _ = server
                .apply(Batch {
                    checks: vec![Check::Equals(Collection::OAuthDevices, key.clone(), raw)],
                    writes: vec![put(Collection::OAuthDevices, &key, &record)],
                })
                .await;
            Err(if too_fast {
                OAuthError::new(
                    ErrorCode::SlowDown,
                    format!("poll at most every {INTERVAL_SECS} s"),
                )
            } else {
                OAuthError::new(
                    ErrorCode::AuthorizationPending,
                    "the user has not finished signing in",
                )
            })
        }
        DeviceStatus::Approved => {
            // One use: the record goes as the tokens are issued.
            server
                .apply(Batch {
                    checks: vec![Check::Equals(Collection::OAuthDevices, key.clone(), raw)],
                    writes: vec![Write::Delete(Collection::OAuthDevices, key)],
                })
                .await
                .map_err(|e| match e {
                    StoreError::CheckFailed(_) => {
                        OAuthError::new(ErrorCode::InvalidGrant, "the device_code was already used")
                    }
                    e => e.into(),
                })?;
            Ok(record)
        }
    }
}
