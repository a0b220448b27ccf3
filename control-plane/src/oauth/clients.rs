//! OAuth clients: dynamic registration (RFC 7591) and management (RFC 7592), Client ID
//! Metadata Documents fetched behind an SSRF guard, and client authentication at the token
//! endpoint.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{
    ClientRecord, ErrorCode, OAuthError, OAuthServer, TokenEndpointAuth, put, random_token,
    sha256_hex,
};
use crate::auth::hashes_equal;
use crate::model::now;
use crate::store::{Batch, Check, Collection, StoreError, Write};

/// Grant types a client may register.
pub const GRANT_TYPES: &[&str] = &[
    "authorization_code",
    "refresh_token",
    "urn:ietf:params:oauth:grant-type:device_code",
];
/// The built-in public client of `portcullis login` (device grant only, no redirects).
pub const CLI_CLIENT_ID: &str = "portcullis-cli";
/// Largest metadata document we read.
const CIMD_MAX_BYTES: usize = 64 * 1024;
/// Longest we cache a metadata document, whatever its headers say.
const CIMD_MAX_CACHE: Duration = Duration::from_secs(24 * 3600);
/// Cache time when the document's response gives none.
const CIMD_DEFAULT_CACHE: Duration = Duration::from_secs(300);

/// Client metadata as sent to `/register` and returned from it (RFC 7591 §2).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClientMetadata {
    /// Exact redirect URIs.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// `client_secret_basic` (default), `client_secret_post` or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<String>,
    /// Default `["authorization_code"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_types: Option<Vec<String>>,
    /// Only `["code"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_types: Option<Vec<String>>,
    /// `web` (default) or `native`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_type: Option<String>,
    /// Shown to users on the consent page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// Client home page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    /// Space-separated scopes the client will ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// In a metadata document: must equal the document's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// What `/register` returns (RFC 7591 §3.2.1).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RegistrationResponse {
    /// The new client id.
    pub client_id: String,
    /// For confidential clients only; shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Unix seconds.
    pub client_id_issued_at: i64,
    /// 0: the secret does not expire.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<i64>,
    /// Bearer token for `/register/{client_id}` (RFC 7592); shown on create only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_access_token: Option<String>,
    /// Where to read, update or delete this registration.
    pub registration_client_uri: String,
    /// Registered redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Token endpoint auth method.
    pub token_endpoint_auth_method: String,
    /// Grant types.
    pub grant_types: Vec<String>,
    /// Always `["code"]`.
    pub response_types: Vec<String>,
    /// `web` or `native`.
    pub application_type: String,
    /// Client name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// Client home page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    /// Scopes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

fn invalid_metadata(d: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, d)
}

/// Whether `host` names this machine (RFC 8252 loopback redirects).
pub fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// Checks one redirect URI: absolute, no fragment, https — or http on a loopback host
/// (any port, RFC 8252 §7.3) — or, for native apps, a private-use scheme with a dot.
pub fn validate_redirect_uri(raw: &str, native: bool) -> Result<(), OAuthError> {
    let bad = |why: &str| {
        OAuthError::new(
            ErrorCode::InvalidRedirectUri,
            format!("redirect_uris: {raw:?} {why}"),
        )
    };
    if raw.len() > 2000 {
        return Err(bad("is too long"));
    }
    let url = url::Url::parse(raw).map_err(|_| bad("is not an absolute URI"))?;
    if url.fragment().is_some() || raw.contains('#') {
        return Err(bad("must not contain a fragment"));
    }
    match url.scheme() {
        "https" => {
            if url.host().is_none() {
                return Err(bad("has no host"));
            }
        }
        "http" => {
            if !url.host().as_ref().is_some_and(is_loopback_host) {
                return Err(bad("uses http on a non-loopback host; use https"));
            }
        }
        scheme if native && scheme.contains('.') => {}
        _ => {
            return Err(bad(
                "must use https, loopback http, or (native apps) a private-use scheme",
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not contain credentials"));
    }
    Ok(())
}

fn optional_text(field: &str, v: &Option<String>, max: usize) -> Result<(), OAuthError> {
    if let Some(s) = v
        && (s.len() > max || s.chars().any(char::is_control))
    {
        return Err(invalid_metadata(format!(
            "{field}: at most {max} characters, no control characters"
        )));
    }
    Ok(())
}

/// Validates registration metadata and fills defaults.
pub fn validate_metadata(m: &ClientMetadata) -> Result<ValidMetadata, OAuthError> {
    let application_type = m.application_type.clone().unwrap_or_else(|| "web".into());
    if application_type != "web" && application_type != "native" {
        return Err(invalid_metadata(
            "application_type: must be \"web\" or \"native\"",
        ));
    }
    let auth = match m
        .token_endpoint_auth_method
        .as_deref()
        .unwrap_or("client_secret_basic")
    {
        "client_secret_basic" => TokenEndpointAuth::ClientSecretBasic,
        "client_secret_post" => TokenEndpointAuth::ClientSecretPost,
        "none" => TokenEndpointAuth::None,
        other => {
            return Err(invalid_metadata(format!(
                "token_endpoint_auth_method: {other:?} is not supported; use client_secret_basic, client_secret_post or none"
            )));
        }
    };
    let grant_types = m
        .grant_types
        .clone()
        .unwrap_or_else(|| vec!["authorization_code".into()]);
    if grant_types.is_empty() {
        return Err(invalid_metadata("grant_types: must not be empty"));
    }
    for g in &grant_types {
        if !GRANT_TYPES.contains(&g.as_str()) {
            return Err(invalid_metadata(format!(
                "grant_types: {g:?} is not supported (supported: {})",
                GRANT_TYPES.join(", ")
            )));
        }
    }
    if let Some(rt) = &m.response_types
        && rt.iter().any(|r| r != "code")
    {
        return Err(invalid_metadata(
            "response_types: only \"code\" is supported",
        ));
    }
    let needs_redirect = grant_types.iter().any(|g| g == "authorization_code");
    if needs_redirect && m.redirect_uris.is_empty() {
        return Err(OAuthError::new(
            ErrorCode::InvalidRedirectUri,
            "redirect_uris: at least one is required for the authorization_code grant",
        ));
    }
    if m.redirect_uris.len() > 20 {
        return Err(OAuthError::new(
            ErrorCode::InvalidRedirectUri,
            "redirect_uris: at most 20",
        ));
    }
    for uri in &m.redirect_uris {
        validate_redirect_uri(uri, application_type == "native")?;
    }
    optional_text("client_name", &m.client_name, 200)?;
    optional_text("scope", &m.scope, 1000)?;
    if let Some(uri) = &m.client_uri {
        match url::Url::parse(uri) {
            Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {}
            _ => return Err(invalid_metadata("client_uri: must be an http(s) URL")),
        }
    }
    Ok(ValidMetadata {
        application_type,
        auth,
        grant_types,
    })
}

/// Registration metadata after validation and defaults.
pub struct ValidMetadata {
    application_type: String,
    auth: TokenEndpointAuth,
    grant_types: Vec<String>,
}

fn response(server: &OAuthServer, r: &ClientRecord) -> RegistrationResponse {
    RegistrationResponse {
        client_id: r.client_id.clone(),
        client_secret: None,
        client_id_issued_at: r.created_at,
        client_secret_expires_at: (r.token_endpoint_auth_method != TokenEndpointAuth::None)
            .then_some(0),
        registration_access_token: None,
        registration_client_uri: format!("{}/register/{}", server.issuer(), r.client_id),
        redirect_uris: r.redirect_uris.clone(),
        token_endpoint_auth_method: r.token_endpoint_auth_method.as_str().into(),
        grant_types: r.grant_types.clone(),
        response_types: vec!["code".into()],
        application_type: r.application_type.clone(),
        client_name: r.client_name.clone(),
        client_uri: r.client_uri.clone(),
        scope: r.scope.clone(),
    }
}

/// `POST /register`.
pub async fn register(
    server: &OAuthServer,
    initial_token: Option<&str>,
    m: ClientMetadata,
) -> Result<RegistrationResponse, OAuthError> {
    if let Some(expected) = &server.settings().registration_token {
        let ok = initial_token.is_some_and(|t| hashes_equal(&sha256_hex(t), &sha256_hex(expected)));
        if !ok {
            return Err(OAuthError::new(
                ErrorCode::InvalidToken,
                "registration needs a valid initial access token",
            ));
        }
    }
    register_unchecked(server, m, false).await
}

/// Registers without the initial-access-token gate (admin API, or after the gate passed);
/// `admin_registered` vouches for the client's name on the consent page.
pub async fn register_unchecked(
    server: &OAuthServer,
    m: ClientMetadata,
    admin_registered: bool,
) -> Result<RegistrationResponse, OAuthError> {
    if m.client_id.is_some() {
        return Err(invalid_metadata(
            "client_id: assigned by the server, do not send one",
        ));
    }
    let v = validate_metadata(&m)?;
    let client_id = format!("pc_{}", &random_token()[..22]);
    let secret = (v.auth != TokenEndpointAuth::None).then(random_token);
    let reg_token = random_token();
    let record = ClientRecord {
        client_id: client_id.clone(),
        secret_sha256: secret.as_deref().map(sha256_hex).unwrap_or_default(),
        registration_token_sha256: sha256_hex(&reg_token),
        redirect_uris: m.redirect_uris,
        token_endpoint_auth_method: v.auth,
        grant_types: v.grant_types,
        application_type: v.application_type,
        client_name: m.client_name,
        client_uri: m.client_uri,
        scope: m.scope,
        created_at: now(),
        metadata_document: false,
        admin_registered,
    };
    server
        .apply(Batch {
            checks: vec![Check::Absent(Collection::OAuthClients, client_id.clone())],
            writes: vec![put(Collection::OAuthClients, &client_id, &record)],
        })
        .await?;
    let mut out = response(server, &record);
    out.client_secret = secret;
    out.registration_access_token = Some(reg_token);
    Ok(out)
}

/// Loads a registered client and checks its registration access token (RFC 7592).
async fn managed(
    server: &OAuthServer,
    client_id: &str,
    token: Option<&str>,
) -> Result<(ClientRecord, Vec<u8>), OAuthError> {
    let denied = || {
        OAuthError::new(
            ErrorCode::InvalidToken,
            "unknown client or bad registration access token",
        )
    };
    let token = token.ok_or_else(denied)?;
    let (record, raw) = server
        .get::<ClientRecord>(Collection::OAuthClients, client_id)
        .await?
        .ok_or_else(denied)?;
    if !hashes_equal(&record.registration_token_sha256, &sha256_hex(token)) {
        return Err(denied());
    }
    Ok((record, raw))
}

/// `GET /register/{client_id}`.
pub async fn read(
    server: &OAuthServer,
    client_id: &str,
    token: Option<&str>,
) -> Result<RegistrationResponse, OAuthError> {
    let (record, _) = managed(server, client_id, token).await?;
    Ok(response(server, &record))
}

/// `PUT /register/{client_id}`: replaces the metadata; the secret and id stay.
pub async fn update(
    server: &OAuthServer,
    client_id: &str,
    token: Option<&str>,
    m: ClientMetadata,
) -> Result<RegistrationResponse, OAuthError> {
    let (mut record, raw) = managed(server, client_id, token).await?;
    if m.client_id.as_deref().is_some_and(|id| id != client_id) {
        return Err(invalid_metadata(
            "client_id: must match the registration being updated",
        ));
    }
    let v = validate_metadata(&m)?;
    if (v.auth == TokenEndpointAuth::None)
        != (record.token_endpoint_auth_method == TokenEndpointAuth::None)
    {
        return Err(invalid_metadata(
            "token_endpoint_auth_method: cannot switch between public and confidential; register a new client",
        ));
    }
    record.redirect_uris = m.redirect_uris;
    record.token_endpoint_auth_method = v.auth;
    record.grant_types = v.grant_types;
    record.application_type = v.application_type;
    record.client_name = m.client_name;
    record.client_uri = m.client_uri;
    record.scope = m.scope;
    server
        .apply(Batch {
            checks: vec![Check::Equals(
                Collection::OAuthClients,
                client_id.into(),
                raw,
            )],
            writes: vec![put(Collection::OAuthClients, client_id, &record)],
        })
        .await
        .map_err(|e| match e {
            StoreError::CheckFailed(_) => {
                OAuthError::invalid_request("the client changed concurrently; retry")
            }
            e => e.into(),
        })?;
    Ok(response(server, &record))
}

/// `DELETE /register/{client_id}` (or admin delete): removes the client and every token
/// family it holds.
pub async fn delete(
    server: &OAuthServer,
    client_id: &str,
    token: Option<&str>,
) -> Result<(), OAuthError> {
    if token.is_some() {
        managed(server, client_id, token).await?;
    }
    super::revocation::revoke_all_of(server, super::RevokedKind::Client, client_id).await?;
    server
        .apply(Batch {
            checks: vec![],
            writes: vec![Write::Delete(Collection::OAuthClients, client_id.into())],
        })
        .await?;
    Ok(())
}

/// Finds a client by id: registered, or (for an https URL) its metadata document.
pub async fn resolve(server: &OAuthServer, client_id: &str) -> Result<ClientRecord, OAuthError> {
    if client_id == CLI_CLIENT_ID {
        return Ok(ClientRecord {
            client_id: CLI_CLIENT_ID.into(),
            secret_sha256: String::new(),
            registration_token_sha256: String::new(),
            redirect_uris: vec![],
            token_endpoint_auth_method: TokenEndpointAuth::None,
            grant_types: vec![super::params::DEVICE_GRANT.into(), "refresh_token".into()],
            application_type: "native".into(),
            client_name: Some("Portcullis CLI".into()),
            client_uri: None,
            scope: None,
            created_at: 0,
            metadata_document: false,
            admin_registered: true,
        });
    }
    if client_id.starts_with("https://") {
        return fetch_metadata_document(server, client_id).await;
    }
    if let Some(edge) = super::edge_session::resolve(server, client_id).await {
        return edge;
    }
    if let Some(console) = super::console_client::resolve(server, client_id) {
        return Ok(console);
    }
    server
        .get::<ClientRecord>(Collection::OAuthClients, client_id)
        .await?
        .map(|(r, _)| r)
        .ok_or_else(|| OAuthError::new(ErrorCode::InvalidClient, "unknown client_id"))
}

/// Credentials a client presented at the token, revocation or introspection endpoint.
#[derive(Debug, Default)]
pub struct Presented {
    /// From Basic auth or the form.
    pub client_id: Option<String>,
    /// From Basic auth or the form.
    pub client_secret: Option<String>,
    /// Whether they came in the Authorization header.
    pub via_basic: bool,
}

/// Authenticates the client per its registered method. Public clients present only their
/// id; confidential ones must present the right secret.
pub async fn authenticate(server: &OAuthServer, p: &Presented) -> Result<ClientRecord, OAuthError> {
    let bad = || OAuthError::new(ErrorCode::InvalidClient, "client authentication failed");
    let id = p.client_id.as_deref().ok_or_else(|| {
        OAuthError::new(
            ErrorCode::InvalidClient,
            "client_id missing (send it in the form or via HTTP Basic)",
        )
    })?;
    let client = resolve(server, id).await.map_err(|_| bad())?;
    match client.token_endpoint_auth_method {
        TokenEndpointAuth::None => {
            if p.client_secret.is_some() {
                return Err(OAuthError::new(
                    ErrorCode::InvalidClient,
                    "this is a public client; do not send a client_secret",
                ));
            }
        }
        _ => {
            let secret = p.client_secret.as_deref().ok_or_else(bad)?;
            if !hashes_equal(&client.secret_sha256, &sha256_hex(secret)) {
                return Err(bad());
            }
        }
    }
    Ok(client)
}

// === Client ID Metadata Documents ===

struct Cached {
    record: ClientRecord,
    until: Instant,
}

fn cimd_cache() -> &'static Mutex<HashMap<String, Cached>> {
    static CACHE: std::sync::OnceLock<Mutex<HashMap<String, Cached>>> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Whether an address is one a metadata fetch must not reach (SSRF guard).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || v4.octets()[0] == 0
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64) // CGNAT
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xfe00) == 0xfc00 // unique local
                || (v6.segments()[0] & 0xffc0) == 0xfe80 // link local
        }
    }
}

fn max_age(headers: &reqwest::header::HeaderMap) -> Duration {
    let Some(cc) = headers
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
    else {
        return CIMD_DEFAULT_CACHE;
    };
    let mut age = CIMD_DEFAULT_CACHE;
    for d in cc.split(',').map(str::trim) {
        if d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("no-cache") {
            return Duration::ZERO;
        }
        if let Some(v) = d
            .strip_prefix("max-age=")
            .and_then(|v| v.parse::<u64>().ok())
        {
            age = Duration::from_secs(v);
        }
    }
    age.min(CIMD_MAX_CACHE)
}

/// Fetches and validates a Client ID Metadata Document.
pub async fn fetch_metadata_document(
    server: &OAuthServer,
    url_text: &str,
) -> Result<ClientRecord, OAuthError> {
    let bad = |why: String| {
        OAuthError::new(
            ErrorCode::InvalidClient,
            format!("client metadata document {url_text}: {why}"),
        )
    };
    if let Ok(cache) = cimd_cache().lock()
        && let Some(c) = cache.get(url_text).filter(|c| c.until > Instant::now())
    {
        return Ok(c.record.clone());
    }
    let url = url::Url::parse(url_text).map_err(|_| bad("not a URL".into()))?;
    if url.scheme() != "https"
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(bad(
            "must be an https URL without fragment or credentials".into()
        ));
    }
    if url.path() == "/" || url.path().is_empty() {
        return Err(bad("must have a path component".into()));
    }
    let host = url
        .host_str()
        .ok_or_else(|| bad("has no host".into()))?
        .to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let lookup_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((lookup_host.as_str(), port))
        .await
        .map_err(|e| bad(format!("cannot resolve host: {e}")))?
        .collect();
    let addr = *addrs
        .first()
        .ok_or_else(|| bad("host resolves to nothing".into()))?;
    if !server.settings().cimd_allow_private && addrs.iter().any(|a| is_private(a.ip())) {
        return Err(bad(format!(
            "host resolves to a private, loopback or link-local address ({}); refused",
            addr.ip()
        )));
    }
    // Pin the connection to the address we checked, so DNS cannot change between check and use.
    let builder = server
        .client_builder(Duration::from_secs(5), Duration::from_secs(3))
        .resolve(&lookup_host, addr);
    let client = builder.build().map_err(OAuthError::server)?;
    let mut resp = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| bad(format!("fetch failed: {e}")))?;
    if !resp.status().is_success() {
        return Err(bad(format!("fetch answered {}", resp.status())));
    }
    let ttl = max_age(resp.headers());
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| bad(format!("read failed: {e}")))?
    {
        if body.len() + chunk.len() > CIMD_MAX_BYTES {
            return Err(bad(format!("larger than {CIMD_MAX_BYTES} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    let m: ClientMetadata = serde_json::from_slice(&body)
        .map_err(|e| bad(format!("not valid client metadata JSON: {e}")))?;
    if m.client_id.as_deref() != Some(url_text) {
        return Err(bad(format!(
            "its client_id {:?} differs from the document URL",
            m.client_id.as_deref().unwrap_or("")
        )));
    }
    let v = validate_metadata(&m).map_err(|e| bad(e.description))?;
    if v.auth != TokenEndpointAuth::None {
        return Err(bad(
            "token_endpoint_auth_method: metadata-document clients must be public (\"none\")"
                .into(),
        ));
    }
    let record = ClientRecord {
        client_id: url_text.to_owned(),
        secret_sha256: String::new(),
        registration_token_sha256: String::new(),
        redirect_uris: m.redirect_uris,
        token_endpoint_auth_method: v.auth,
        grant_types: v.grant_types,
        application_type: v.application_type,
        client_name: m.client_name,
        client_uri: m.client_uri,
        scope: m.scope,
        created_at: now(),
        metadata_document: true,
        admin_registered: false,
    };
    if !ttl.is_zero()
        && let Ok(mut cache) = cimd_cache().lock()
    {
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(
            url_text.to_owned(),
            Cached {
                record: record.clone(),
                until: Instant::now() + ttl,
            },
        );
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_follow_rfc_8252() {
        assert!(validate_redirect_uri("https://app.example.com/cb", false).is_ok());
        assert!(validate_redirect_uri("http://127.0.0.1:53111/cb", false).is_ok());
        assert!(validate_redirect_uri("http://[::1]/cb", false).is_ok());
        assert!(validate_redirect_uri("http://localhost:3000/cb", false).is_ok());
        assert!(validate_redirect_uri("http://app.example.com/cb", false).is_err());
        assert!(validate_redirect_uri("https://app.example.com/cb#x", false).is_err());
        assert!(validate_redirect_uri("javascript:alert(1)", false).is_err());
        assert!(validate_redirect_uri("com.example.app:/cb", true).is_ok());
        assert!(validate_redirect_uri("com.example.app:/cb", false).is_err());
        assert!(validate_redirect_uri("https://user:pw@app.example.com/cb", false).is_err());
        assert!(validate_redirect_uri("/relative", false).is_err());
    }

    #[test]
    fn private_addresses_are_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "169.254.169.254",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "100.64.0.1",
            "0.0.0.0",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn metadata_defaults_and_refusals() {
        let m = ClientMetadata {
            redirect_uris: vec!["https://a.example/cb".into()],
            ..Default::default()
        };
        let v = validate_metadata(&m).unwrap();
        assert_eq!(v.auth, TokenEndpointAuth::ClientSecretBasic);
        assert_eq!(v.grant_types, vec!["authorization_code"]);
        let bad = ClientMetadata {
            token_endpoint_auth_method: Some("private_key_jwt".into()),
            ..m.clone()
        };
        assert_eq!(
            validate_metadata(&bad).err().unwrap().code,
            ErrorCode::InvalidClientMetadata
        );
        let none = ClientMetadata {
            redirect_uris: vec![],
            ..m
        };
        assert_eq!(
            validate_metadata(&none).err().unwrap().code,
            ErrorCode::InvalidRedirectUri
        );
    }
}
