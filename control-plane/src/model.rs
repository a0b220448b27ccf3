//! Domain types the control plane stores and serves, and the inputs that create them.
//!
//! These are the JSON shapes of the REST API and of the stored records. Inputs reject
//! unknown fields, and every input is checked by [`validate`] before anything is written.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub mod certs;
pub mod pem;
mod records;
pub mod validate;

pub use certs::*;

/// Default for [`Route::priority`] when a caller gives none.
pub const DEFAULT_ROUTE_PRIORITY: u32 = 50;
/// Highest allowed route priority.
pub const MAX_ROUTE_PRIORITY: u32 = 999;

/// A virtual host: traffic for `hostname` goes to `target_url` unless a route matches first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Proxy {
    /// Exact host name or a `*.` wildcard, lowercase.
    pub hostname: String,
    /// Absolute http(s) URL of the upstream.
    pub target_url: String,
    /// A disabled proxy is not served by any data plane.
    pub enabled: bool,
    /// Serve this proxy on the plain HTTP listener.
    pub enable_http: bool,
    /// Serve this proxy on the HTTPS listener (certificates come with the TLS capability).
    pub enable_https: bool,
    /// Forward the client's Host header instead of the target's authority.
    pub preserve_host_header: bool,
    /// Headers set on every request to the upstream (overwriting client values).
    pub custom_request_headers: BTreeMap<String, String>,
    /// Headers set on every response to the client.
    pub custom_response_headers: BTreeMap<String, String>,
    /// Upstream connect timeout; 0 means the data plane default (10 s).
    pub connect_timeout_ms: u32,
    /// Time allowed for the upstream's response headers; 0 means the default (60 s).
    pub read_timeout_ms: u32,
    /// Answer plain HTTP with a 308 to https:// (ACME challenges excepted).
    #[serde(default)]
    pub redirect_http_to_https: bool,
    /// `Strict-Transport-Security: max-age=N` on HTTPS responses; 0 = none.
    #[serde(default)]
    pub hsts_max_age_secs: u32,
    /// Certificate to serve for this host; empty = any valid one covering the name.
    #[serde(default)]
    pub certificate_name: String,
    /// Longest silence between two body frames of a streamed response (or request) before
    /// the data plane ends the exchange, so quiet SSE/MCP streams stay open but dead ones
    /// do not; 0 means the default (10 min).
    #[serde(default)]
    pub idle_timeout_ms: u32,
    /// Requests per second per key each data plane admits (on its own: N data planes admit
    /// N times this); more get 429 with `Retry-After`. 0 = no rate limit.
    #[serde(default)]
    pub rate_limit_rps: u32,
    /// Requests a key may send at once after a quiet spell; 0 = `rate_limit_rps`.
    #[serde(default)]
    pub rate_limit_burst: u32,
    /// What the rate is counted by.
    #[serde(default)]
    pub rate_limit_key: RateLimitKey,
    /// Requests in flight at once on each data plane (until the response body ends); more
    /// get 503 with `Retry-After: 1`. 0 = no cap.
    #[serde(default)]
    pub max_concurrent_requests: u32,
    /// Largest request body the data plane forwards, in bytes (413 above it); 0 means no
    /// limit, the default: bodies are streamed, so size costs the proxy no memory, and
    /// a default would break uploads nobody chose to limit.
    #[serde(default)]
    pub max_request_body_bytes: u64,
    /// PROXY protocol header sent first on every upstream connection, with the client's
    /// address; such connections carry one request each, never pooled.
    #[serde(default)]
    pub upstream_proxy_protocol: UpstreamProxyProtocol,
    /// Client address ranges allowed to reach the proxy; empty = every client.
    #[serde(default)]
    pub ip_allowlist: Vec<String>,
    /// Record the query string in access-log records, without any parameter that can
    /// carry a credential (`access_token`, `code`, `state`, …); false = the path only.
    #[serde(default)]
    pub log_query: bool,
    /// Edge OAuth protection; `None` = unprotected. Set through `/auth`, never through
    /// proxy create/update, so protection is always an explicit act.
    #[serde(default)]
    pub auth: Option<ProxyAuth>,
    /// Id of the token that created this proxy; only it or an admin may change it.
    pub owner_token_id: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// The PROXY protocol version a proxy sends to its upstreams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProxyProtocol {
    /// None (the default).
    #[default]
    Off,
    /// Text header.
    V1,
    /// Binary header.
    V2,
}

impl UpstreamProxyProtocol {
    /// The wire and JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::V1 => "v1",
            Self::V2 => "v2",
        }
    }
}

/// What a proxy's request rate is counted by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitKey {
    /// The client address (the TCP peer; IPv6 per /64).
    #[default]
    Ip,
    /// The verified token's subject. Requests without a verified token (unprotected
    /// proxies, public paths, `passthrough` without a token) count by address.
    Subject,
    /// The verified token's OAuth client; by address without one, as for `subject`.
    Client,
}

impl RateLimitKey {
    /// The wire and JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ip => "ip",
            Self::Subject => "subject",
            Self::Client => "client",
        }
    }
}

/// How a protected proxy treats requests without a valid token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// APIs and MCP servers: a missing or bad bearer token gets 401, missing scopes 403.
    Forward,
    /// Browser apps: login redirect and a sealed session cookie (see
    /// `oauth::edge_session`). Data planes that cannot do this refuse every request (503)
    /// rather than serve the app unprotected.
    Redirect,
    /// Never refuses; identity headers are set only when a valid token came.
    Passthrough,
}

/// Edge protection of one proxy, enforced by every data plane with the OAuth server's
/// public keys from the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProxyAuth {
    /// What happens without a valid token.
    pub mode: AuthMode,
    /// Host that serves login for this proxy.
    pub auth_host: String,
    /// Scopes every token must carry.
    pub required_scopes: Vec<String>,
    /// Path prefixes served without a token (segment boundaries: `/health` covers
    /// `/health/db`, not `/healthz`).
    pub public_paths: Vec<String>,
    /// `scopes_supported` in the protected-resource metadata; empty = the required scopes.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// `resource_documentation` in the protected-resource metadata; empty = none.
    #[serde(default)]
    pub resource_documentation: String,
    /// The MCP endpoint path (`/mcp`); empty = none. Set through `/resource`.
    #[serde(default)]
    pub resource_endpoint: String,
    /// Extra protected-resource metadata fields. Set through `/resource`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub resource_fields: serde_json::Map<String, serde_json::Value>,
    /// Browser origins allowed to call the proxy; empty = no Origin check, no CORS. Set
    /// through `/resource`.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Allowlist: login names (lower-case). All allowlists empty = every valid token.
    #[serde(default)]
    pub allowed_users: Vec<String>,
    /// Allowlist: GitHub organisations (lower-case).
    #[serde(default)]
    pub allowed_orgs: Vec<String>,
    /// Allowlist: GitHub teams as `org/team` (lower-case).
    #[serde(default)]
    pub allowed_teams: Vec<String>,
    /// Allowlist: domains of the verified e-mail address (lower-case).
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
    /// Allowlist: OIDC groups (exact).
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// Forward the client's verified `Authorization: Bearer` header to the upstream
    /// (token passthrough is opt-in: some upstreams need the token, most must not see it).
    #[serde(default)]
    pub forward_token: bool,
    /// Identity header names replacing the `X-Auth-*` defaults, keyed by `user`, `email`,
    /// `subject`, `scopes`, `client-id`, `groups` (lower-case names); upstreams with
    /// their own conventions need not be changed.
    #[serde(default)]
    pub identity_headers: BTreeMap<String, String>,
}

/// Body of `PUT /api/v1/proxy/targets/{hostname}/auth`: replaces the whole policy.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyAuthInput {
    /// `forward`, `redirect` or `passthrough`.
    pub mode: AuthMode,
    /// Host that serves login for this proxy (not a wildcard).
    pub auth_host: String,
    /// Default none.
    pub required_scopes: Option<Vec<String>>,
    /// Default none.
    pub public_paths: Option<Vec<String>>,
    /// Default none (the required scopes are advertised).
    pub scopes_supported: Option<Vec<String>>,
    /// Default none.
    pub resource_documentation: Option<String>,
    /// Default none. Login names allowed (case-insensitive).
    pub allowed_users: Option<Vec<String>>,
    /// Default none. GitHub organisations allowed (case-insensitive).
    pub allowed_orgs: Option<Vec<String>>,
    /// Default none. GitHub teams allowed, as `org/team` (case-insensitive).
    pub allowed_teams: Option<Vec<String>>,
    /// Default none. E-mail domains allowed (case-insensitive, exact domain).
    pub allowed_email_domains: Option<Vec<String>>,
    /// Default none. OIDC groups allowed (exact).
    pub allowed_groups: Option<Vec<String>>,
    /// Default false. Forward the verified `Authorization: Bearer` header to the upstream.
    pub forward_token: Option<bool>,
    /// Default none. Header names replacing `X-Auth-*`, keyed by `user`, `email`,
    /// `subject`, `scopes`, `client-id`, `groups`.
    pub identity_headers: Option<BTreeMap<String, String>>,
}

/// Body of `PUT /api/v1/proxy/targets/{hostname}/resource`: replaces the proxy's
/// protected-resource settings (the proxy must be protected already).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyResourceInput {
    /// MCP endpoint path such as `/mcp`: its canonical resource is `https://host/mcp`,
    /// served at `/.well-known/oauth-protected-resource/mcp`. Default none.
    pub endpoint: Option<String>,
    /// `scopes_supported` of the metadata. Default: the required scopes.
    pub scopes_supported: Option<Vec<String>>,
    /// `resource_documentation` of the metadata (absolute http(s) URL). Default none.
    pub resource_documentation: Option<String>,
    /// Extra metadata fields. `resource`, `authorization_servers`,
    /// `bearer_methods_supported`, `scopes_supported` and `resource_documentation` are
    /// refused here. Default none.
    #[schema(value_type = Option<Object>)]
    pub fields: Option<serde_json::Map<String, serde_json::Value>>,
    /// Browser origins (`scheme://host[:port]`) allowed to call the proxy: requests with
    /// another `Origin` get 403, listed ones get CORS headers. Default none (no check).
    pub allowed_origins: Option<Vec<String>>,
}

/// Answer of the `/resource` endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ProxyResourceView {
    /// The proxy.
    pub hostname: String,
    /// False when the proxy is unprotected (then every other field is empty).
    pub protected: bool,
    /// MCP endpoint path; empty = none.
    pub endpoint: String,
    /// `scopes_supported` of the metadata; empty = the required scopes.
    pub scopes_supported: Vec<String>,
    /// `resource_documentation` of the metadata; empty = none.
    pub resource_documentation: String,
    /// Extra metadata fields.
    #[schema(value_type = Object)]
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// Browser origins allowed; empty = no Origin check, no CORS.
    pub allowed_origins: Vec<String>,
}

/// Answer of the `/auth` endpoints: whether the proxy is protected and how.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ProxyAuthView {
    /// The proxy.
    pub hostname: String,
    /// False when the proxy is unprotected (then every other field is empty).
    pub enabled: bool,
    /// The policy, when enabled.
    pub auth: Option<ProxyAuth>,
}

/// Body of `POST /api/v1/proxy/targets`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyInput {
    /// Host name the proxy answers for.
    pub hostname: String,
    /// Upstream URL.
    pub target_url: String,
    /// Default true.
    pub enabled: Option<bool>,
    /// Default true.
    pub enable_http: Option<bool>,
    /// Default false until the TLS capability lands.
    pub enable_https: Option<bool>,
    /// Default false.
    pub preserve_host_header: Option<bool>,
    /// Default none.
    pub custom_request_headers: Option<BTreeMap<String, String>>,
    /// Default none.
    pub custom_response_headers: Option<BTreeMap<String, String>>,
    /// Default 0 (data plane default).
    pub connect_timeout_ms: Option<u32>,
    /// Default 0 (data plane default).
    pub read_timeout_ms: Option<u32>,
    /// Default false.
    pub redirect_http_to_https: Option<bool>,
    /// Default 0 (no HSTS).
    pub hsts_max_age_secs: Option<u32>,
    /// Default none.
    pub certificate_name: Option<String>,
    /// Default 0 (data plane default, 10 min).
    pub idle_timeout_ms: Option<u32>,
    /// Default 0 (no rate limit).
    pub rate_limit_rps: Option<u32>,
    /// Default 0 (= `rate_limit_rps`); needs `rate_limit_rps`.
    pub rate_limit_burst: Option<u32>,
    /// `ip` (default), `subject` or `client`; needs `rate_limit_rps`.
    pub rate_limit_key: Option<String>,
    /// Default 0 (no cap).
    pub max_concurrent_requests: Option<u32>,
    /// Default 0 (no limit).
    pub max_request_body_bytes: Option<u64>,
    /// `off` (default), `v1` or `v2`.
    pub upstream_proxy_protocol: Option<String>,
    /// Client address ranges allowed (`10.0.0.0/8`, `2001:db8::/32`, an address); default:
    /// every client.
    pub ip_allowlist: Option<Vec<String>>,
    /// Default false: access-log records hold the path without the query string.
    pub log_query: Option<bool>,
}

/// Body of `PUT /api/v1/proxy/targets/{hostname}`: absent fields keep their value.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyPatch {
    /// New upstream URL.
    pub target_url: Option<String>,
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// Serve on HTTP.
    pub enable_http: Option<bool>,
    /// Serve on HTTPS.
    pub enable_https: Option<bool>,
    /// Forward the client's Host.
    pub preserve_host_header: Option<bool>,
    /// Replaces the whole map.
    pub custom_request_headers: Option<BTreeMap<String, String>>,
    /// Replaces the whole map.
    pub custom_response_headers: Option<BTreeMap<String, String>>,
    /// New connect timeout.
    pub connect_timeout_ms: Option<u32>,
    /// New read timeout.
    pub read_timeout_ms: Option<u32>,
    /// Redirect HTTP to HTTPS.
    pub redirect_http_to_https: Option<bool>,
    /// HSTS max-age; 0 turns it off.
    pub hsts_max_age_secs: Option<u32>,
    /// Attach a certificate by name; empty detaches.
    pub certificate_name: Option<String>,
    /// New idle timeout between body frames; 0 = default.
    pub idle_timeout_ms: Option<u32>,
    /// New rate per key; 0 turns the rate limit off (and resets burst and key).
    pub rate_limit_rps: Option<u32>,
    /// New burst; 0 = `rate_limit_rps`.
    pub rate_limit_burst: Option<u32>,
    /// `ip`, `subject` or `client`.
    pub rate_limit_key: Option<String>,
    /// New cap on requests in flight; 0 = none.
    pub max_concurrent_requests: Option<u32>,
    /// New request body limit in bytes; 0 = no limit.
    pub max_request_body_bytes: Option<u64>,
    /// `off`, `v1` or `v2`.
    pub upstream_proxy_protocol: Option<String>,
    /// New client address ranges allowed; `[]` allows every client again.
    pub ip_allowlist: Option<Vec<String>>,
    /// Record the query string (credential parameters removed) in access-log records.
    pub log_query: Option<bool>,
}

/// How a route compares its pattern with the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MatchKind {
    /// The path starts with the pattern.
    #[default]
    Prefix,
    /// The path equals the pattern.
    Exact,
    /// The path matches the regular expression.
    Regex,
}

/// What a route forwards to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// An absolute URL.
    Url,
    /// A named external service.
    Service,
    /// Another proxy's target and settings, by hostname.
    Proxy,
}

/// A path rule. Global when `proxy_hostnames` is empty, else scoped to those proxies.
/// Routes never carry their own protection: they inherit the proxy's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Route {
    /// Stable identifier.
    pub id: String,
    /// 0–999, higher is tried first.
    pub priority: u32,
    /// Prefix, exact or regex.
    pub match_kind: MatchKind,
    /// The path pattern.
    pub path_pattern: String,
    /// Upper-case methods; empty matches any.
    pub methods: Vec<String>,
    /// Kind of `target_value`.
    pub target_kind: TargetKind,
    /// URL, service name or proxy hostname.
    pub target_value: String,
    /// Empty for a global route.
    pub proxy_hostnames: Vec<String>,
    /// Disabled routes are not sent to data planes.
    pub enabled: bool,
    /// Free text.
    pub description: String,
    /// Exempt from the proxy's protection; only an admin may set it.
    pub public: bool,
    /// Scopes a token needs for this route on a protected proxy, on top of the proxy's.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// Id of the creating token.
    pub owner_token_id: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// Body of `POST /api/v1/routes`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteInput {
    /// Generated when absent.
    pub id: Option<String>,
    /// Default 50.
    pub priority: Option<u32>,
    /// Default prefix.
    pub match_kind: Option<MatchKind>,
    /// Path pattern.
    pub path_pattern: String,
    /// Default any.
    pub methods: Option<Vec<String>>,
    /// What the route forwards to.
    pub target_kind: Option<TargetKind>,
    /// URL, service name or proxy hostname.
    pub target_value: String,
    /// Default global.
    pub proxy_hostnames: Option<Vec<String>>,
    /// Default true.
    pub enabled: Option<bool>,
    /// Free text.
    pub description: Option<String>,
    /// Default false; admin only.
    pub public: Option<bool>,
    /// Default none. Scopes a token needs for this route, on top of the proxy's required
    /// scopes (only where the proxy is protected).
    pub required_scopes: Option<Vec<String>>,
}

/// A named upstream that routes can target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExternalService {
    /// Name routes refer to.
    pub name: String,
    /// Absolute http(s) URL.
    pub target_url: String,
    /// Free text.
    pub description: String,
    /// Id of the creating token.
    pub owner_token_id: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// Body of `POST /api/v1/services/external`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceInput {
    /// Service name.
    pub name: String,
    /// Upstream URL.
    pub target_url: String,
    /// Free text.
    pub description: Option<String>,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenScope {
    /// Everything, including other owners' resources and tokens.
    Admin,
    /// Create resources and change the ones it owns.
    User,
    /// Only open the config stream as a data plane.
    Dataplane,
}

/// A stored API token. The secret is never stored: only its SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public identifier derived from the hash.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Permissions.
    pub scope: TokenScope,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, updated at most once a minute.
    pub last_used_at: i64,
    /// Id of the token that created it; empty for bootstrap tokens.
    pub created_by: String,
}

/// What the API shows of a token.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TokenInfo {
    /// Identifier.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Permissions.
    pub scope: TokenScope,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub last_used_at: i64,
    /// Creator's token id.
    pub created_by: String,
}

impl From<&TokenRecord> for TokenInfo {
    fn from(t: &TokenRecord) -> Self {
        Self {
            id: t.id.clone(),
            name: t.name.clone(),
            scope: t.scope,
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            created_by: t.created_by.clone(),
        }
    }
}

/// Body of `POST /api/v1/tokens`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenInput {
    /// Human name.
    pub name: String,
    /// Default user.
    pub scope: Option<TokenScope>,
}

/// A newly created token; the only time its secret is shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedToken {
    /// Metadata.
    pub token: TokenInfo,
    /// The bearer secret.
    pub secret: String,
}

/// What the control planes know of one data plane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DataPlaneRecord {
    /// Node id the data plane announced.
    pub node_id: String,
    /// Address it serves on, as it announced it.
    pub address: String,
    /// Last version it ACKed.
    pub applied_version: u64,
    /// Error of its last NACK, empty if none since the last ACK.
    pub last_nack_error: String,
    /// Version it last NACKed.
    pub last_nack_version: u64,
    /// Unix seconds.
    pub last_seen: i64,
    /// Whether its stream is open.
    pub connected: bool,
    /// Its software version.
    pub software_version: String,
    /// Port clients reach its plain-HTTP listener on, as it announced it (0: not
    /// reported, a data plane older than the field: 80 is assumed).
    #[serde(default)]
    pub http_public_port: u16,
    /// Port clients reach its HTTPS listener on (0: no HTTPS listener, or not reported).
    #[serde(default)]
    pub https_public_port: u16,
}

/// `GET /api/v1/dataplanes`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DataPlaneList {
    /// Newest config version.
    pub current_version: u64,
    /// All data planes ever seen.
    pub items: Vec<DataPlaneRecord>,
}

/// `GET /health` and `Status`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// "ok" or "degraded".
    pub status: &'static str,
    /// Software version.
    pub version: &'static str,
    /// Whether the store answered.
    pub store_ok: bool,
    /// "embedded" or "redis".
    pub store_backend: &'static str,
    /// Newest config version.
    pub config_version: u64,
    /// Data planes with an open stream to this control plane.
    pub connected_data_planes: u32,
    /// Optional peers (the Docker engine) as last seen; absent when none is configured.
    /// They do not make `status` degraded: the control plane works without them.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub peers: std::collections::BTreeMap<&'static str, PeerHealth>,
}

/// One optional peer in `/health`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PeerHealth {
    /// Whether it answered at the last check.
    pub reachable: bool,
    /// Where it is (e.g. `unix:///var/run/docker.sock`).
    pub address: String,
    /// Why not, when unreachable.
    pub error: Option<String>,
}

/// Current time in unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}
