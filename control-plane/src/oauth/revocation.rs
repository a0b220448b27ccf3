//! Revoking what was issued: one refresh family with its access tokens, or everything a
//! user or client holds (one entry the data planes apply to tokens issued up to then).

use super::{OAuthError, OAuthServer, RevokedKind, RevokedToken, TokenFamily, put};
use crate::store::{Batch, Collection, Write};

/// Clock skew tolerated on `exp`/`nbf`, here and (the same value) in data planes.
pub(crate) const LEEWAY_SECS: i64 = 5;

/// Revokes every token issued so far to a user (`RevokedKind::Subject`) or a client, and
/// their refresh families: one revocation entry reaches the data planes, and logins after
/// this second are unaffected.
pub async fn revoke_all_of(
    server: &OAuthServer,
    kind: RevokedKind,
    value: &str,
) -> Result<(), OAuthError> {
    let families: Vec<TokenFamily> = server.list(Collection::OAuthFamilies).await?;
    let mut writes: Vec<Write> = families
        .iter()
        .filter(|f| match kind {
            RevokedKind::Subject => f.identity.sub == value,
            RevokedKind::Client => f.client_id == value,
        })
        .map(|f| Write::Delete(Collection::OAuthFamilies, f.id.clone()))
        .collect();
    let entry = RevokedToken::all_of(
        kind,
        value,
        server.now(),
        server.settings().access_ttl.as_secs() as i64 + LEEWAY_SECS,
    );
    writes.push(put(Collection::OAuthRevocations, &entry.key(), &entry));
    server
        .apply(Batch {
            checks: vec![],
            writes,
        })
        .await?;
    server.count(&server.counters().revoked);
    Ok(())
}

/// Revokes a refresh family and every access token it issued.
pub async fn revoke_family(server: &OAuthServer, family_id: &str) -> Result<(), OAuthError> {
    let Some((family, _)) = server
        .get::<TokenFamily>(Collection::OAuthFamilies, family_id)
        .await?
    else {
        return Ok(());
    };
    let t = server.now();
    let mut writes = vec![Write::Delete(
        Collection::OAuthFamilies,
        family_id.to_owned(),
    )];
    for (jti, exp) in family.access_tokens.iter().filter(|(_, exp)| *exp > t) {
        writes.push(put(
            Collection::OAuthRevocations,
            jti,
            &RevokedToken::token(jti, *exp),
        ));
    }
    server
        .apply(Batch {
            checks: vec![],
            writes,
        })
        .await?;
    server.count(&server.counters().revoked);
    Ok(())
}
