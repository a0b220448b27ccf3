//! The token endpoint (authorization code and refresh grants), access token minting (RFC
//! 9068), revocation (RFC 7009), introspection (RFC 7662) and userinfo.
//!
//! Refresh tokens are `{family}.{secret}`: the family record holds the hash of the one
//! currently valid, so presenting an older one is detectable reuse and revokes the family.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::clients::{self, Presented};
use super::params::{DEVICE_GRANT, canonical_resource, pkce_matches};
use super::revocation::{LEEWAY_SECS, revoke_family};
use super::{
    ClientRecord, CodeRecord, ErrorCode, Identity, OAuthError, OAuthServer, RevokedKind,
    RevokedToken, SigningKeyRecord, TokenFamily, device_state, keys, put, random_token, sha256_hex,
};
use crate::auth::hashes_equal;
use crate::store::{Batch, Check, Collection, StoreError, Write};

/// Form of `POST /token`.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct TokenRequest {
    /// `authorization_code` or `refresh_token`.
    pub grant_type: Option<String>,
    /// The code.
    pub code: Option<String>,
    /// Must equal the one used at `/authorize`.
    pub redirect_uri: Option<String>,
    /// PKCE verifier.
    pub code_verifier: Option<String>,
    /// Refresh token.
    pub refresh_token: Option<String>,
    /// Narrower scope (refresh).
    pub scope: Option<String>,
    /// Device grant (RFC 8628).
    pub device_code: Option<String>,
    /// Narrower audience; repeatable (the HTTP adapter collects repeats).
    #[serde(skip)]
    pub resources: Vec<String>,
}

/// Successful token response (RFC 6749 §5.1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The JWT.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: &'static str,
    /// Seconds.
    pub expires_in: u64,
    /// Present when the client may refresh.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Granted scopes.
    pub scope: String,
}

/// Claims of our access tokens (RFC 9068 plus identity).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Subject.
    pub sub: String,
    /// Audience(s): canonical resource URIs.
    pub aud: Vec<String>,
    /// The client.
    pub client_id: String,
    /// Space-separated scopes.
    pub scope: String,
    /// Expiry.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Token id.
    pub jti: String,
    /// Upstream login time.
    pub auth_time: i64,
    /// Identity provider.
    pub idp: String,
    /// Login name.
    pub login: String,
    /// E-mail.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub email: Option<String>,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    /// Orgs, teams or groups.
    #[serde(default)]
    pub groups: Vec<String>,
}

fn scope_list(s: &str) -> Vec<String> {
    s.split(' ')
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `POST /token`.
pub async fn token(
    server: &OAuthServer,
    presented: &Presented,
    req: TokenRequest,
) -> Result<TokenResponse, OAuthError> {
    let client = clients::authenticate(server, presented).await?;
    let grant = req.grant_type.clone().unwrap_or_default();
    if !client.grant_types.contains(&grant) {
        return Err(match grant.as_str() {
            "authorization_code" | "refresh_token" | DEVICE_GRANT => OAuthError::new(
                ErrorCode::UnauthorizedClient,
                format!("this client may not use the {grant} grant"),
            ),
            "" => OAuthError::invalid_request("grant_type is missing"),
            _ => OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                format!("grant_type {grant:?} is not supported"),
            ),
        });
    }
    match grant.as_str() {
        "authorization_code" => exchange_code(server, &client, req).await,
        "refresh_token" => refresh(server, &client, req).await,
        DEVICE_GRANT => device_grant(server, &client, req).await,
        _ => Err(OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            format!("grant_type {grant:?} is not supported"),
        )),
    }
}

async fn exchange_code(
    server: &OAuthServer,
    client: &ClientRecord,
    req: TokenRequest,
) -> Result<TokenResponse, OAuthError> {
    let code = req
        .code
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("code is missing"))?;
    let key = sha256_hex(code);
    let bad = |d: &str| OAuthError::new(ErrorCode::InvalidGrant, d.to_owned());
    let (mut record, raw) = server
        .get::<CodeRecord>(Collection::OAuthCodes, &key)
        .await?
        .ok_or_else(|| bad("the code is invalid or expired"))?;
    if let Some(family) = &record.used_by_family {
        tracing::warn!(client_id = %record.client_id, "authorization code replayed; revoking what it issued");
        revoke_family(server, family).await?;
        return Err(bad(
            "the code was already used; the tokens issued with it are revoked",
        ));
    }
    if record.expires_at < server.now() {
        return Err(bad("the code is invalid or expired"));
    }
    if record.client_id != client.client_id {
        return Err(bad("the code was issued to another client"));
    }
    match req.redirect_uri.as_deref() {
        Some(r) if r == record.redirect_uri => {}
        None if client.redirect_uris.len() == 1 => {}
        _ => return Err(bad("redirect_uri does not match the authorization request")),
    }
    let verifier = req.code_verifier.as_deref().ok_or_else(|| {
        OAuthError::invalid_request("code_verifier is missing (PKCE is required)")
    })?;
    if !pkce_matches(verifier, &record.code_challenge) {
        return Err(bad("code_verifier does not match the code_challenge"));
    }
    let resources = narrow_resources(&record.resources, &req.resources)?;
    let family_id = random_token()[..24].to_owned();
    record.used_by_family = Some(family_id.clone());
    let grant = Grant {
        identity: record.identity.clone(),
        scopes: record.scopes.clone(),
        resources: record.resources.clone(),
        auth_time: record.auth_time,
    };
    let consume = (
        Check::Equals(Collection::OAuthCodes, key.clone(), raw),
        put(Collection::OAuthCodes, &key, &record),
    );
    issue_family(
        server,
        client,
        &family_id,
        &grant,
        &resources,
        Some(consume),
    )
    .await
    .map_err(|e| match e {
        IssueError::Consumed => bad("the code was already used"),
        IssueError::OAuth(e) => e,
    })
}

/// What a login granted: the basis of a token family.
struct Grant {
    identity: Identity,
    scopes: Vec<String>,
    resources: Vec<String>,
    auth_time: i64,
}

enum IssueError {
    /// The code (or device record) was consumed concurrently.
    Consumed,
    OAuth(OAuthError),
}

impl From<OAuthError> for IssueError {
    fn from(e: OAuthError) -> Self {
        Self::OAuth(e)
    }
}

/// Mints the first access token of a new family (and its refresh token when the client may
/// refresh), storing the family atomically with `consume` (the check-and-write that marks
/// the code used).
async fn issue_family(
    server: &OAuthServer,
    client: &ClientRecord,
    family_id: &str,
    grant: &Grant,
    audiences: &[String],
    consume: Option<(Check, Write)>,
) -> Result<TokenResponse, IssueError> {
    let t = server.now();
    let settings = server.settings();
    let refresh_allowed = client.grant_types.iter().any(|g| g == "refresh_token");
    let refresh_secret = random_token();
    let access = mint(
        server,
        client,
        &grant.identity,
        &grant.scopes,
        audiences,
        grant.auth_time,
    )
    .await?;
    let family = TokenFamily {
        id: family_id.to_owned(),
        client_id: client.client_id.clone(),
        identity: grant.identity.clone(),
        scopes: grant.scopes.clone(),
        resources: grant.resources.clone(),
        auth_time: grant.auth_time,
        current_refresh_sha256: if refresh_allowed {
            sha256_hex(&refresh_secret)
        } else {
            String::new()
        },
        access_tokens: vec![(access.1.jti.clone(), access.1.exp)],
        absolute_expires_at: t + settings.refresh_absolute_ttl.as_secs() as i64,
        refresh_expires_at: if refresh_allowed {
            t + settings.refresh_ttl.as_secs() as i64
        } else {
            0
        },
        created_at: t,
    };
    let mut batch = Batch {
        checks: vec![Check::Absent(
            Collection::OAuthFamilies,
            family_id.to_owned(),
        )],
        writes: vec![put(Collection::OAuthFamilies, family_id, &family)],
    };
    if let Some((check, write)) = consume {
        batch.checks.push(check);
        batch.writes.push(write);
    }
    server.apply(batch).await.map_err(|e| match e {
        StoreError::CheckFailed(_) => IssueError::Consumed,
        e => IssueError::OAuth(e.into()),
    })?;
    server.count(&server.counters().issued);
    Ok(TokenResponse {
        access_token: access.0,
        token_type: "Bearer",
        expires_in: settings.access_ttl.as_secs(),
        refresh_token: refresh_allowed.then(|| format!("{family_id}.{refresh_secret}")),
        scope: access.1.scope,
    })
}

/// The device grant: once the user approved, the device gets its tokens (once).
async fn device_grant(
    server: &OAuthServer,
    client: &ClientRecord,
    req: TokenRequest,
) -> Result<TokenResponse, OAuthError> {
    let code = req
        .device_code
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("device_code is missing"))?;
    let record = device_state::poll(server, client, code).await?;
    let identity = record
        .identity
        .ok_or_else(|| OAuthError::server("approved device without identity"))?;
    let resources = narrow_resources(&record.resources, &req.resources)?;
    let grant = Grant {
        identity,
        scopes: record.granted_scopes,
        resources: record.resources,
        auth_time: record.auth_time,
    };
    let family_id = random_token()[..24].to_owned();
    issue_family(server, client, &family_id, &grant, &resources, None)
        .await
        .map_err(|e| match e {
            IssueError::Consumed => OAuthError::new(ErrorCode::InvalidGrant, "already used"),
            IssueError::OAuth(e) => e,
        })
}

fn narrow_resources(granted: &[String], asked: &[String]) -> Result<Vec<String>, OAuthError> {
    if asked.is_empty() {
        return Ok(granted.to_vec());
    }
    let mut out = Vec::new();
    for r in asked {
        let (canon, _) = canonical_resource(r)?;
        if !granted.contains(&canon) {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                format!("resource {r:?} was not part of the authorization"),
            ));
        }
        out.push(canon);
    }
    Ok(out)
}

async fn refresh(
    server: &OAuthServer,
    client: &ClientRecord,
    req: TokenRequest,
) -> Result<TokenResponse, OAuthError> {
    let presented = req
        .refresh_token
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is missing"))?;
    let bad = |d: &str| OAuthError::new(ErrorCode::InvalidGrant, d.to_owned());
    let (family_id, secret) = presented
        .split_once('.')
        .ok_or_else(|| bad("the refresh token is invalid"))?;
    let (mut family, raw) = server
        .get::<TokenFamily>(Collection::OAuthFamilies, family_id)
        .await?
        .ok_or_else(|| bad("the refresh token is invalid or revoked"))?;
    if family.client_id != client.client_id {
        return Err(bad("the refresh token was issued to another client"));
    }
    if family.current_refresh_sha256.is_empty() {
        return Err(bad("the refresh token is invalid or revoked"));
    }
    if !hashes_equal(&family.current_refresh_sha256, &sha256_hex(secret)) {
        tracing::warn!(client_id = %client.client_id, "refresh token reused; revoking its family");
        revoke_family(server, family_id).await?;
        return Err(bad(
            "the refresh token was already used; all tokens of this login are revoked",
        ));
    }
    let t = server.now();
    if family.refresh_expires_at < t || family.absolute_expires_at < t {
        return Err(bad("the refresh token has expired"));
    }
    let scopes = match req.scope.as_deref() {
        None => family.scopes.clone(),
        Some(s) => {
            let asked = scope_list(s);
            if let Some(extra) = asked.iter().find(|s| !family.scopes.contains(s)) {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    format!("scope {extra:?} was not granted"),
                ));
            }
            asked
        }
    };
    let resources = narrow_resources(&family.resources, &req.resources)?;
    let (jwt, claims) = mint(
        server,
        client,
        &family.identity,
        &scopes,
        &resources,
        family.auth_time,
    )
    .await?;
    let next_secret = random_token();
    family.current_refresh_sha256 = sha256_hex(&next_secret);
    family.refresh_expires_at =
        (t + server.settings().refresh_ttl.as_secs() as i64).min(family.absolute_expires_at);
    family.access_tokens.retain(|(_, exp)| *exp > t);
    family.access_tokens.push((claims.jti.clone(), claims.exp));
    server
        .apply(Batch {
            checks: vec![Check::Equals(
                Collection::OAuthFamilies,
                family_id.to_owned(),
                raw,
            )],
            writes: vec![put(Collection::OAuthFamilies, family_id, &family)],
        })
        .await
        .map_err(|e| match e {
            StoreError::CheckFailed(_) => bad("the refresh token was used concurrently"),
            e => e.into(),
        })?;
    server.count(&server.counters().refreshed);
    Ok(TokenResponse {
        access_token: jwt,
        token_type: "Bearer",
        expires_in: server.settings().access_ttl.as_secs(),
        refresh_token: Some(format!("{family_id}.{next_secret}")),
        scope: claims.scope,
    })
}

async fn mint(
    server: &OAuthServer,
    client: &ClientRecord,
    who: &Identity,
    scopes: &[String],
    resources: &[String],
    auth_time: i64,
) -> Result<(String, AccessClaims), OAuthError> {
    let key = keys::active(server).await?;
    let t = server.now();
    let claims = AccessClaims {
        iss: server.issuer().to_owned(),
        sub: who.sub.clone(),
        aud: if resources.is_empty() {
            vec![server.issuer().to_owned()]
        } else {
            resources.to_vec()
        },
        client_id: client.client_id.clone(),
        scope: scopes.join(" "),
        exp: t + server.settings().access_ttl.as_secs() as i64,
        iat: t,
        nbf: t,
        jti: random_token()[..22].to_owned(),
        auth_time,
        idp: who.idp.clone(),
        login: who.login.clone(),
        email: who.email.clone(),
        name: who.name.clone(),
        groups: who.groups.clone(),
    };
    let mut header = Header::new(key.alg);
    header.typ = Some("at+jwt".into());
    header.kid = Some(key.kid);
    let jwt = jsonwebtoken::encode(&header, &claims, &key.key).map_err(OAuthError::server)?;
    Ok((jwt, claims))
}

/// Verifies one of our access tokens: signature by a published key, `typ`, issuer, time.
/// Revocation is checked too. Returns the claims.
pub async fn verify_access_token(
    server: &OAuthServer,
    jwt: &str,
) -> Result<AccessClaims, OAuthError> {
    let bad = |d: &str| OAuthError::new(ErrorCode::InvalidToken, d.to_owned());
    let header = jsonwebtoken::decode_header(jwt).map_err(|_| bad("malformed token"))?;
    if header
        .typ
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
        != Some("at+jwt")
    {
        return Err(bad("not an access token (typ must be at+jwt)"));
    }
    let kid = header.kid.ok_or_else(|| bad("token has no kid"))?;
    let (record, _) = server
        .get::<SigningKeyRecord>(Collection::OAuthKeys, &kid)
        .await?
        .ok_or_else(|| bad("unknown signing key"))?;
    let alg = match record.alg.as_str() {
        "ES256" => Algorithm::ES256,
        "RS256" => Algorithm::RS256,
        _ => return Err(bad("unknown signing key")),
    };
    if header.alg != alg {
        return Err(bad("token algorithm does not match its key"));
    }
    let jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(record.public_jwk).map_err(OAuthError::server)?;
    let dkey = DecodingKey::from_jwk(&jwk).map_err(OAuthError::server)?;
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[server.issuer()]);
    validation.validate_aud = false;
    // Time is checked below by this server's clock (the library would read the system's).
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.set_required_spec_claims(&["exp", "iss", "sub", "nbf", "iat"]);
    let rejected = |e: jsonwebtoken::errors::Error| bad(&format!("token rejected: {e}"));
    let data = jsonwebtoken::decode::<AccessClaims>(jwt, &dkey, &validation).map_err(rejected)?;
    // The library's rule and wording: expired beyond the leeway, or not yet valid.
    let t = server.now();
    if data.claims.exp < t - LEEWAY_SECS {
        return Err(rejected(ErrorKind::ExpiredSignature.into()));
    }
    if data.claims.nbf > t + LEEWAY_SECS {
        return Err(rejected(ErrorKind::ImmatureSignature.into()));
    }
    if is_revoked(server, &data.claims).await? {
        return Err(bad("token revoked"));
    }
    Ok(data.claims)
}

/// Whether the token itself, or every token of its user or client up to its issue time,
/// is revoked: the same rule data planes apply to the snapshot's revocations.
async fn is_revoked(server: &OAuthServer, claims: &AccessClaims) -> Result<bool, OAuthError> {
    let c = Collection::OAuthRevocations;
    if server.get::<RevokedToken>(c, &claims.jti).await?.is_some() {
        return Ok(true);
    }
    for (kind, value) in [
        (RevokedKind::Subject, &claims.sub),
        (RevokedKind::Client, &claims.client_id),
    ] {
        let key = format!("{}:{value}", kind.as_str());
        if let Some((r, _)) = server.get::<RevokedToken>(c, &key).await?
            && claims.iat <= r.issued_before
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `POST /revoke` (RFC 7009): always succeeds for tokens that are unknown or not the caller's.
pub async fn revoke(
    server: &OAuthServer,
    presented: &Presented,
    token: &str,
) -> Result<(), OAuthError> {
    let client = clients::authenticate(server, presented).await?;
    if let Some((family_id, secret)) = token.split_once('.').filter(|(_, s)| !s.contains('.')) {
        if let Some((family, _)) = server
            .get::<TokenFamily>(Collection::OAuthFamilies, family_id)
            .await?
            && family.client_id == client.client_id
            && hashes_equal(&family.current_refresh_sha256, &sha256_hex(secret))
        {
            revoke_family(server, family_id).await?;
        }
        return Ok(());
    }
    if let Ok(claims) = verify_access_token(server, token).await
        && claims.client_id == client.client_id
    {
        server
            .apply(Batch {
                checks: vec![],
                writes: vec![put(
                    Collection::OAuthRevocations,
                    &claims.jti,
                    &RevokedToken::token(&claims.jti, claims.exp),
                )],
            })
            .await?;
        server.count(&server.counters().revoked);
    }
    Ok(())
}

/// `POST /introspect` (RFC 7662).
pub async fn introspect(
    server: &OAuthServer,
    presented: &Presented,
    token: &str,
) -> Result<serde_json::Value, OAuthError> {
    let client = clients::authenticate(server, presented).await?;
    if client.token_endpoint_auth_method == super::TokenEndpointAuth::None {
        return Err(OAuthError::new(
            ErrorCode::InvalidClient,
            "introspection needs a confidential client",
        ));
    }
    if let Some((family_id, secret)) = token.split_once('.').filter(|(_, s)| !s.contains('.')) {
        let t = server.now();
        if let Some((f, _)) = server
            .get::<TokenFamily>(Collection::OAuthFamilies, family_id)
            .await?
            && !f.current_refresh_sha256.is_empty()
            && hashes_equal(&f.current_refresh_sha256, &sha256_hex(secret))
            && f.refresh_expires_at >= t
        {
            return Ok(serde_json::json!({
                "active": true,
                "token_type": "refresh_token",
                "client_id": f.client_id,
                "sub": f.identity.sub,
                "scope": f.scopes.join(" "),
                "exp": f.refresh_expires_at,
                "iss": server.issuer(),
            }));
        }
        return Ok(serde_json::json!({"active": false}));
    }
    match verify_access_token(server, token).await {
        Ok(c) => {
            let mut v = serde_json::to_value(&c).map_err(OAuthError::server)?;
            if let Some(o) = v.as_object_mut() {
                o.insert("active".into(), true.into());
                o.insert("token_type".into(), "Bearer".into());
                o.insert("username".into(), c.login.clone().into());
            }
            Ok(v)
        }
        Err(_) => Ok(serde_json::json!({"active": false})),
    }
}

/// `GET /userinfo`: OpenID Connect claims of the token's user.
pub async fn userinfo(server: &OAuthServer, jwt: &str) -> Result<serde_json::Value, OAuthError> {
    let c = verify_access_token(server, jwt).await?;
    Ok(serde_json::json!({
        "sub": c.sub,
        "preferred_username": c.login,
        "name": c.name,
        "email": c.email,
        "groups": c.groups,
        "idp": c.idp,
    }))
}

#[cfg(test)]
mod tests;
