//! Records the OAuth server keeps in the store, and the admin inputs that create them.
//!
//! Every short-lived record (login transactions, codes, refresh tokens) carries its own
//! `expires_at`: the store has no TTLs, so expiry is checked on every read and a sweeper
//! deletes what is past it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Who a user is, as their identity provider told us. Becomes the token's identity claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Identity {
    /// Name of the identity provider that vouched for the user.
    pub idp: String,
    /// Stable subject: `{idp}:{provider's immutable user id}`.
    pub sub: String,
    /// Login or preferred user name.
    pub login: String,
    /// Verified primary e-mail, if the provider gave one.
    pub email: Option<String>,
    /// Display name.
    pub name: Option<String>,
    /// GitHub organisations (`org`), teams (`org/team`) or OIDC groups.
    pub groups: Vec<String>,
}

/// Kind of upstream identity provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum IdpKind {
    /// github.com or GitHub Enterprise Server.
    Github,
    /// Any OpenID Connect provider, configured by discovery.
    Oidc,
}

/// A configured upstream identity provider. The client secret is sealed at rest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdpRecord {
    /// Short name, used in URLs (`/callback/{name}`) and in `sub`.
    pub name: String,
    /// Provider kind.
    pub kind: IdpKind,
    /// OAuth client id registered at the provider.
    pub client_id: String,
    /// Sealed client secret.
    pub client_secret_sealed: String,
    /// GitHub: web base URL (`https://github.com` or the GHES origin). OIDC: issuer URL.
    pub base_url: String,
    /// GitHub: API base URL (`https://api.github.com` or `https://HOST/api/v3`). Unused for OIDC.
    pub api_url: String,
    /// Scopes asked of the provider.
    pub scopes: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// Public view of an identity provider (no secret).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IdpView {
    /// Short name.
    pub name: String,
    /// Provider kind.
    pub kind: IdpKind,
    /// OAuth client id at the provider.
    pub client_id: String,
    /// Web base URL (GitHub) or issuer (OIDC).
    pub base_url: String,
    /// API base URL (GitHub).
    pub api_url: String,
    /// Scopes asked of the provider.
    pub scopes: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
}

impl From<&IdpRecord> for IdpView {
    fn from(r: &IdpRecord) -> Self {
        Self {
            name: r.name.clone(),
            kind: r.kind,
            client_id: r.client_id.clone(),
            base_url: r.base_url.clone(),
            api_url: r.api_url.clone(),
            scopes: r.scopes.clone(),
            created_at: r.created_at,
        }
    }
}

/// Body of `POST /api/v1/oauth/idps`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdpInput {
    /// Short name: letters, digits, `-`, `_`.
    pub name: String,
    /// Provider kind.
    pub kind: IdpKind,
    /// OAuth client id at the provider.
    pub client_id: String,
    /// OAuth client secret at the provider (stored sealed, never returned).
    pub client_secret: String,
    /// GitHub web base URL (default `https://github.com`); OIDC issuer URL (required).
    pub base_url: Option<String>,
    /// GitHub API base URL (default `https://api.github.com`, or `{base_url}/api/v3` for GHES).
    pub api_url: Option<String>,
    /// Scopes asked of the provider (GitHub default `read:user user:email read:org`; OIDC
    /// default `openid email profile`).
    pub scopes: Option<Vec<String>>,
}

/// Who may log in, and which scopes they get. A user matching no rule is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LoginRule {
    /// Rule id.
    pub id: String,
    /// Restrict the rule to logins for this proxy's resource; `None` = every proxy.
    pub proxy_hostname: Option<String>,
    /// Restrict to one identity provider by name; `None` = any.
    pub idp: Option<String>,
    /// Logins (case-insensitive). `*` matches everyone the provider vouches for.
    pub users: Vec<String>,
    /// GitHub organisations / OIDC groups (any one suffices).
    pub groups: Vec<String>,
    /// E-mail domains of the verified address.
    pub email_domains: Vec<String>,
    /// Scopes granted to matching users.
    pub scopes: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// Body of `POST /api/v1/oauth/rules`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRuleInput {
    /// Only for this proxy hostname.
    pub proxy_hostname: Option<String>,
    /// Only for this identity provider.
    pub idp: Option<String>,
    /// Logins, or `*`.
    #[serde(default)]
    pub users: Vec<String>,
    /// Organisations, `org/team` pairs, or OIDC groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// E-mail domains.
    #[serde(default)]
    pub email_domains: Vec<String>,
    /// Scopes granted.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// How a client proves who it is at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuth {
    /// HTTP Basic with the client secret.
    ClientSecretBasic,
    /// Secret in the form body.
    ClientSecretPost,
    /// Public client (PKCE only).
    None,
}

impl TokenEndpointAuth {
    /// The RFC 7591 name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::None => "none",
        }
    }
}

/// A registered OAuth client (RFC 7591), or one resolved from a metadata document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    /// Opaque id, or the https URL of its metadata document.
    pub client_id: String,
    /// SHA-256 (hex) of the client secret; empty for public clients.
    pub secret_sha256: String,
    /// SHA-256 (hex) of the registration access token (RFC 7592).
    pub registration_token_sha256: String,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Token endpoint authentication.
    pub token_endpoint_auth_method: TokenEndpointAuth,
    /// Grant types.
    pub grant_types: Vec<String>,
    /// `web` or `native`.
    pub application_type: String,
    /// Shown on the consent page.
    pub client_name: Option<String>,
    /// Client home page.
    pub client_uri: Option<String>,
    /// Scopes the client may ask for (space separated); empty = any.
    pub scope: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Whether this is a Client ID Metadata Document (fetched, not registered).
    pub metadata_document: bool,
    /// Registered by an admin (or built in), so its name is vouched for; `false` (also for
    /// records from before this field) marks a self-registered client as unverified.
    #[serde(default)]
    pub admin_registered: bool,
}

/// A login in progress: from `/authorize` until a code is issued (or refused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginTx {
    /// Random id, also the `state` sent upstream.
    pub id: String,
    /// SHA-256 of the browser-binding cookie value: only the browser that started the login
    /// may finish it.
    pub browser_sha256: String,
    /// The client.
    pub client_id: String,
    /// Its redirect URI (already validated).
    pub redirect_uri: String,
    /// Client's `state`, echoed back.
    pub state: Option<String>,
    /// PKCE S256 challenge from the client.
    pub code_challenge: String,
    /// Requested scopes.
    pub scopes: Vec<String>,
    /// Canonical resource URIs (audiences).
    pub resources: Vec<String>,
    /// Chosen identity provider.
    pub idp: Option<String>,
    /// Proxy whose OAuth settings (allowed providers, GitHub app) apply to this login.
    #[serde(default)]
    pub settings_host: Option<String>,
    /// Set when this login approves a device authorization instead of issuing a code.
    #[serde(default)]
    pub device_key: Option<String>,
    /// PKCE verifier we use towards the upstream provider.
    pub upstream_verifier: String,
    /// OIDC nonce towards the upstream provider.
    pub upstream_nonce: String,
    /// The client asked for another account (`prompt=select_account` or `login`): the
    /// `prompt` sent to the identity provider so the user can pick one rather than reuse its
    /// session; `select_account`, then `login` if the provider refuses that, then none.
    #[serde(default)]
    pub upstream_prompt: Option<String>,
    /// Set after upstream login succeeds.
    pub identity: Option<Identity>,
    /// Scopes the rules grant (set with `identity`).
    pub granted_scopes: Vec<String>,
    /// Consent form CSRF token (SHA-256 hex), set when the consent page is shown.
    pub csrf_sha256: String,
    /// Unix seconds of upstream authentication.
    pub auth_time: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

/// An authorization code, keyed by its hash. Kept after use (marked) so a replay can
/// revoke what the first use issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRecord {
    /// Client it was issued to.
    pub client_id: String,
    /// Redirect URI it was issued for.
    pub redirect_uri: String,
    /// PKCE challenge to check the verifier against.
    pub code_challenge: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Audiences.
    pub resources: Vec<String>,
    /// The user.
    pub identity: Identity,
    /// Unix seconds.
    pub auth_time: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// Token family created by the first exchange, once used.
    pub used_by_family: Option<String>,
}

/// One login's chain of refresh tokens and the access tokens they produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenFamily {
    /// Family id.
    pub id: String,
    /// Client.
    pub client_id: String,
    /// The user.
    pub identity: Identity,
    /// Scopes granted at login (refreshes may narrow, never widen).
    pub scopes: Vec<String>,
    /// Audiences granted at login.
    pub resources: Vec<String>,
    /// Unix seconds of the upstream login.
    pub auth_time: i64,
    /// Hash of the refresh token currently valid; older ones are reuse.
    pub current_refresh_sha256: String,
    /// Access tokens issued: `(jti, exp)`, to revoke them with the family.
    pub access_tokens: Vec<(String, i64)>,
    /// The refresh chain ends here, however often it is refreshed.
    pub absolute_expires_at: i64,
    /// The current refresh token expires here (sliding).
    pub refresh_expires_at: i64,
    /// Unix seconds.
    pub created_at: i64,
}

/// Remembered consent of a user for a client at one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConsentRecord {
    /// The user's `sub`.
    pub sub: String,
    /// The client.
    pub client_id: String,
    /// The resource (token audience) consented to; empty in consents remembered before
    /// consent was per resource, which cover nothing.
    #[serde(default)]
    pub resource: String,
    /// Scopes consented to at that resource.
    pub scopes: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// A revocation, kept until every token it covers would have expired anyway.
///
/// One access token (`kind` empty or `jti`), or every access token issued to a user
/// (`sub`) or a client (`client_id`) up to and including `issued_before`: one entry per
/// user or client instead of one per token, and later logins are not affected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedToken {
    /// Token id, subject or client id, as `kind` says.
    pub jti: String,
    /// When the last token covered expires; the entry can go then.
    pub expires_at: i64,
    /// `""` (token id), `sub` or `client_id`.
    #[serde(default)]
    pub kind: String,
    /// For `sub`/`client_id`: tokens with `iat` up to this (Unix seconds) are revoked.
    #[serde(default)]
    pub issued_before: i64,
}

impl RevokedToken {
    /// A revoked access token.
    pub fn token(jti: &str, expires_at: i64) -> Self {
        Self {
            jti: jti.to_owned(),
            expires_at,
            kind: String::new(),
            issued_before: 0,
        }
    }

    /// Every token of subject or client `value` issued at or before `now`.
    pub fn all_of(kind: RevokedKind, value: &str, now: i64, access_ttl_secs: i64) -> Self {
        Self {
            jti: value.to_owned(),
            expires_at: now + access_ttl_secs,
            kind: kind.as_str().to_owned(),
            issued_before: now,
        }
    }

    /// Store key: the `jti` itself, or `kind:value` so the kinds cannot collide.
    pub fn key(&self) -> String {
        if self.kind.is_empty() {
            self.jti.clone()
        } else {
            format!("{}:{}", self.kind, self.jti)
        }
    }

    /// The kind as data planes name it on the wire.
    pub fn wire_kind(&self) -> &str {
        if self.kind.is_empty() {
            "jti"
        } else {
            &self.kind
        }
    }
}

/// Whose tokens a bulk revocation covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokedKind {
    /// Every token issued to a user.
    Subject,
    /// Every token issued to a client.
    Client,
}

impl RevokedKind {
    /// Wire and store name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subject => "sub",
            Self::Client => "client_id",
        }
    }
}

/// A signing key; the private half sealed with the master key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyRecord {
    /// Key id (`kid`).
    pub kid: String,
    /// `ES256` or `RS256`.
    pub alg: String,
    /// Sealed PKCS#8 PEM.
    pub private_sealed: String,
    /// Public JWK (JSON object with `kid`, `alg`, `use`).
    pub public_jwk: serde_json::Value,
    /// Unix seconds.
    pub created_at: i64,
    /// When it starts signing (Unix seconds): a rotated key is published first and signs
    /// only once data planes have it (see `keys`). 0 (keys stored before rotation waited)
    /// = from creation.
    #[serde(default)]
    pub signs_from: i64,
    /// When it stops (or stopped) signing: the moment its successor starts. It stays
    /// published until no token it signed can still be valid.
    pub retired_at: Option<i64>,
}

/// Per-proxy OAuth settings: which identity providers its users may use, a GitHub OAuth
/// app of its own, and overrides of the authorization server metadata served for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyOAuthSettings {
    /// The proxy.
    pub hostname: String,
    /// Allowed identity providers by name; empty = all.
    pub idps: Vec<String>,
    /// GitHub OAuth app client id used instead of the provider's for this proxy's logins.
    pub github_client_id: Option<String>,
    /// Its secret, sealed.
    pub github_client_secret_sealed: Option<String>,
    /// Fields merged into the metadata document served for this host.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Unix seconds.
    pub updated_at: i64,
}

/// Public view of [`ProxyOAuthSettings`] (no secret).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProxyOAuthView {
    /// The proxy.
    pub hostname: String,
    /// Allowed identity providers; empty = all.
    pub idps: Vec<String>,
    /// GitHub app override client id, if any.
    pub github_client_id: Option<String>,
    /// Metadata overrides.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Unix seconds.
    pub updated_at: i64,
}

impl From<&ProxyOAuthSettings> for ProxyOAuthView {
    fn from(s: &ProxyOAuthSettings) -> Self {
        Self {
            hostname: s.hostname.clone(),
            idps: s.idps.clone(),
            github_client_id: s.github_client_id.clone(),
            metadata: s.metadata.clone(),
            updated_at: s.updated_at,
        }
    }
}

/// Body of `PUT /api/v1/oauth/proxies/{hostname}`: absent fields keep their value.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyOAuthInput {
    /// Allowed identity providers (replaces the list); `[]` = all.
    pub idps: Option<Vec<String>>,
    /// GitHub app override client id; `""` removes the override.
    pub github_client_id: Option<String>,
    /// GitHub app override secret (required with a client id).
    pub github_client_secret: Option<String>,
    /// Metadata overrides (replaces them all); `{}` clears.
    #[schema(value_type = Object)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// State of a device authorization (RFC 8628).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Waiting for the user.
    Pending,
    /// The user logged in and approved.
    Approved,
    /// The user (or the rules) refused.
    Denied,
}

/// A device authorization, keyed by the hash of its device code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// Client polling for it.
    pub client_id: String,
    /// What the user types, `XXXX-XXXX`.
    pub user_code: String,
    /// Requested scopes.
    pub scopes: Vec<String>,
    /// Audiences.
    pub resources: Vec<String>,
    /// Where it stands.
    pub status: DeviceStatus,
    /// Set on approval.
    pub identity: Option<Identity>,
    /// Set on approval.
    pub granted_scopes: Vec<String>,
    /// Unix seconds of the login.
    pub auth_time: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// Unix seconds of the last poll (for `slow_down`).
    pub last_poll: i64,
}

impl crate::store::Record for RevokedToken {
    const COLLECTION: crate::store::Collection = crate::store::Collection::OAuthRevocations;
    fn key(&self) -> String {
        RevokedToken::key(self)
    }
}

impl crate::store::Record for SigningKeyRecord {
    const COLLECTION: crate::store::Collection = crate::store::Collection::OAuthKeys;
    fn key(&self) -> String {
        self.kid.clone()
    }
}
