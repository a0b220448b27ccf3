//! The declarative document: its entry types, how a stored record becomes an entry
//! (export) and how an entry becomes the input of the service layer's own validation
//! (apply). Entries reject unknown fields; exported entries leave out every setting at its
//! default, so a document stays short and `export` → `apply` → `export` is a fixed point.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::{
    AuthMode, CertSource, ChallengeKind, DEFAULT_ROUTE_PRIORITY, ExternalService, MatchKind, Proxy,
    ProxyAuth, ProxyAuthInput, ProxyInput, ProxyResourceInput, Route, RouteInput, ServiceInput,
    TargetKind,
};
use crate::oauth::model::{IdpKind, IdpRecord, LoginRule, LoginRuleInput, ProxyOAuthSettings};
use crate::oauth::scopes::ScopeDescription;

/// `apiVersion` of the documents this version reads and writes.
pub const API_VERSION: &str = "portcullis/v1";
/// `kind` of a whole-installation document.
pub const KIND: &str = "Config";

/// A secret given in a document sent to the control plane. Never printed, never exported.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretValue(pub String);

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for SecretValue {
    /// Only ever serialised redacted: exports never carry secrets.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// `proxies[]`: a proxy and, under `auth`, its edge protection and resource settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyEntry {
    pub hostname: String,
    pub target_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_http: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_https: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preserve_host_header: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_request_headers: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_response_headers: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_timeout_ms: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_http_to_https: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hsts_max_age_secs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_rps: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_burst: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_requests: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_request_body_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_proxy_protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_allowlist: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_query: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthEntry>,
}

/// `proxies[].auth`: the edge-auth policy (`proxy auth enable`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthEntry {
    pub mode: AuthMode,
    pub auth_host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_scopes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_paths: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes_supported: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_documentation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_users: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_orgs: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_teams: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_email_domains: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_groups: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_token: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_headers: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceEntry>,
}

/// `proxies[].auth.resource`: the MCP/protected-resource settings (`proxy resource set`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_origins: Option<Vec<String>>,
}

/// `routes[]`; `id` is required so that a route has one identity across applies.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteEntry {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub match_kind: Option<MatchKind>,
    pub path_pattern: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    pub target_kind: TargetKind,
    pub target_value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_hostnames: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_scopes: Option<Vec<String>>,
}

/// `services[]`: named external upstreams.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    pub name: String,
    pub target_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `certificates[]`: a certificate's settings, never its key or chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateEntry {
    pub name: String,
    pub domains: Vec<String>,
    /// `acme` (default), `self-signed`, or `uploaded` (only for one already uploaded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<CertSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub challenge: Option<ChallengeKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staging: Option<bool>,
}

/// `oauth_providers[]`. The secret is never exported: files give `client_secret_env` or
/// `client_secret_file`, which the CLI (or `--bootstrap`) turns into `client_secret`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdpEntry {
    pub name: String,
    pub kind: IdpKind,
    pub client_id: String,
    #[serde(skip_serializing)]
    pub client_secret: Option<SecretValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
}

/// `login_rules[]`; `id` is required, as for routes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleEntry {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_domains: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
}

/// `scope_descriptions[]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeEntry {
    pub scope: String,
    pub description: String,
}

/// `proxy_oauth[]`: per-proxy OAuth settings; the GitHub app secret as for providers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyOAuthEntry {
    pub hostname: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idps: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub github_client_id: Option<String>,
    #[serde(skip_serializing)]
    pub github_client_secret: Option<SecretValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub github_client_secret_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub github_client_secret_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// A whole document as `export` writes it: members in this order, entries in their fields'
/// order, settings at their defaults left out.
#[derive(Debug, Clone, Serialize)]
pub struct Exported {
    /// [`API_VERSION`].
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    /// [`KIND`].
    pub kind: &'static str,
    /// Proxies by hostname.
    pub proxies: Vec<ProxyEntry>,
    /// Routes by id.
    pub routes: Vec<RouteEntry>,
    /// External services by name.
    pub services: Vec<ServiceEntry>,
    /// Certificates by name.
    pub certificates: Vec<CertificateEntry>,
    /// Identity providers by name.
    pub oauth_providers: Vec<IdpEntry>,
    /// Login rules by id.
    pub login_rules: Vec<RuleEntry>,
    /// Scope descriptions by scope.
    pub scope_descriptions: Vec<ScopeEntry>,
    /// Per-proxy OAuth settings by hostname.
    pub proxy_oauth: Vec<ProxyOAuthEntry>,
}

/// The sections of a document, in the order they are written and applied.
pub const SECTIONS: [&str; 8] = [
    "proxies",
    "routes",
    "services",
    "certificates",
    "oauth_providers",
    "login_rules",
    "scope_descriptions",
    "proxy_oauth",
];

/// Removes `null` members recursively: how "absent" is written.
pub fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// An entry as a JSON value without absent members (the exported form; also what two
/// states are compared by).
pub fn to_value<T: Serialize>(entry: &T) -> Value {
    let mut v = serde_json::to_value(entry).unwrap_or(Value::Null);
    strip_nulls(&mut v);
    v
}

fn some_if<T>(keep: bool, v: T) -> Option<T> {
    keep.then_some(v)
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    some_if(!v.is_empty(), v)
}

fn non_zero<T: Default + PartialEq>(v: T) -> Option<T> {
    some_if(v != T::default(), v)
}

impl ProxyEntry {
    /// The entry of a stored proxy; settings at their defaults are left out.
    pub fn from_record(p: &Proxy) -> Self {
        Self {
            hostname: p.hostname.clone(),
            target_url: p.target_url.clone(),
            enabled: some_if(!p.enabled, false),
            enable_http: some_if(!p.enable_http, false),
            enable_https: some_if(p.enable_https, true),
            preserve_host_header: some_if(p.preserve_host_header, true),
            custom_request_headers: some_if(
                !p.custom_request_headers.is_empty(),
                p.custom_request_headers.clone(),
            ),
            custom_response_headers: some_if(
                !p.custom_response_headers.is_empty(),
                p.custom_response_headers.clone(),
            ),
            connect_timeout_ms: non_zero(p.connect_timeout_ms),
            read_timeout_ms: non_zero(p.read_timeout_ms),
            redirect_http_to_https: some_if(p.redirect_http_to_https, true),
            hsts_max_age_secs: non_zero(p.hsts_max_age_secs),
            certificate_name: non_zero(p.certificate_name.clone()),
            idle_timeout_ms: non_zero(p.idle_timeout_ms),
            rate_limit_rps: non_zero(p.rate_limit_rps),
            rate_limit_burst: non_zero(p.rate_limit_burst),
            rate_limit_key: some_if(
                p.rate_limit_key != Default::default(),
                p.rate_limit_key.as_str().to_owned(),
            ),
            max_concurrent_requests: non_zero(p.max_concurrent_requests),
            max_request_body_bytes: non_zero(p.max_request_body_bytes),
            upstream_proxy_protocol: some_if(
                p.upstream_proxy_protocol != Default::default(),
                p.upstream_proxy_protocol.as_str().to_owned(),
            ),
            ip_allowlist: non_empty(p.ip_allowlist.clone()),
            log_query: some_if(p.log_query, true),
            auth: p.auth.as_ref().map(AuthEntry::from_record),
        }
    }

    /// The service layer's input for the proxy itself (`auth` goes its own way).
    pub fn input(self) -> (ProxyInput, Option<AuthEntry>) {
        (
            ProxyInput {
                hostname: self.hostname,
                target_url: self.target_url,
                enabled: self.enabled,
                enable_http: self.enable_http,
                enable_https: self.enable_https,
                preserve_host_header: self.preserve_host_header,
                custom_request_headers: self.custom_request_headers,
                custom_response_headers: self.custom_response_headers,
                connect_timeout_ms: self.connect_timeout_ms,
                read_timeout_ms: self.read_timeout_ms,
                redirect_http_to_https: self.redirect_http_to_https,
                hsts_max_age_secs: self.hsts_max_age_secs,
                certificate_name: self.certificate_name,
                idle_timeout_ms: self.idle_timeout_ms,
                rate_limit_rps: self.rate_limit_rps,
                rate_limit_burst: self.rate_limit_burst,
                rate_limit_key: self.rate_limit_key,
                max_concurrent_requests: self.max_concurrent_requests,
                max_request_body_bytes: self.max_request_body_bytes,
                upstream_proxy_protocol: self.upstream_proxy_protocol,
                ip_allowlist: self.ip_allowlist,
                log_query: self.log_query,
            },
            self.auth,
        )
    }
}

impl AuthEntry {
    fn from_record(a: &ProxyAuth) -> Self {
        let resource = (!a.resource_endpoint.is_empty()
            || !a.resource_fields.is_empty()
            || !a.allowed_origins.is_empty())
        .then(|| ResourceEntry {
            endpoint: non_zero(a.resource_endpoint.clone()),
            fields: some_if(!a.resource_fields.is_empty(), a.resource_fields.clone()),
            allowed_origins: non_empty(a.allowed_origins.clone()),
        });
        Self {
            mode: a.mode,
            auth_host: a.auth_host.clone(),
            required_scopes: non_empty(a.required_scopes.clone()),
            public_paths: non_empty(a.public_paths.clone()),
            scopes_supported: non_empty(a.scopes_supported.clone()),
            resource_documentation: non_zero(a.resource_documentation.clone()),
            allowed_users: non_empty(a.allowed_users.clone()),
            allowed_orgs: non_empty(a.allowed_orgs.clone()),
            allowed_teams: non_empty(a.allowed_teams.clone()),
            allowed_email_domains: non_empty(a.allowed_email_domains.clone()),
            allowed_groups: non_empty(a.allowed_groups.clone()),
            forward_token: some_if(a.forward_token, true),
            identity_headers: some_if(!a.identity_headers.is_empty(), a.identity_headers.clone()),
            resource,
        }
    }

    /// The inputs of `proxy auth enable` and `proxy resource set`.
    pub fn inputs(self) -> (ProxyAuthInput, ProxyResourceInput) {
        let r = self.resource.unwrap_or(ResourceEntry {
            endpoint: None,
            fields: None,
            allowed_origins: None,
        });
        (
            ProxyAuthInput {
                mode: self.mode,
                auth_host: self.auth_host,
                required_scopes: self.required_scopes,
                public_paths: self.public_paths,
                scopes_supported: self.scopes_supported.clone(),
                resource_documentation: self.resource_documentation.clone(),
                allowed_users: self.allowed_users,
                allowed_orgs: self.allowed_orgs,
                allowed_teams: self.allowed_teams,
                allowed_email_domains: self.allowed_email_domains,
                allowed_groups: self.allowed_groups,
                forward_token: self.forward_token,
                identity_headers: self.identity_headers,
            },
            ProxyResourceInput {
                endpoint: r.endpoint,
                scopes_supported: self.scopes_supported,
                resource_documentation: self.resource_documentation,
                fields: r.fields,
                allowed_origins: r.allowed_origins,
            },
        )
    }
}

impl RouteEntry {
    /// The entry of a stored route.
    pub fn from_record(r: &Route) -> Self {
        Self {
            id: r.id.clone(),
            priority: some_if(r.priority != DEFAULT_ROUTE_PRIORITY, r.priority),
            match_kind: non_zero(r.match_kind),
            path_pattern: r.path_pattern.clone(),
            methods: non_empty(r.methods.clone()),
            target_kind: r.target_kind,
            target_value: r.target_value.clone(),
            proxy_hostnames: non_empty(r.proxy_hostnames.clone()),
            enabled: some_if(!r.enabled, false),
            description: non_zero(r.description.clone()),
            public: some_if(r.public, true),
            required_scopes: non_empty(r.required_scopes.clone()),
        }
    }

    /// The id and the service layer's input.
    pub fn input(self) -> (String, RouteInput) {
        (
            self.id.clone(),
            RouteInput {
                id: Some(self.id),
                priority: self.priority,
                match_kind: self.match_kind,
                path_pattern: self.path_pattern,
                methods: self.methods,
                target_kind: Some(self.target_kind),
                target_value: self.target_value,
                proxy_hostnames: self.proxy_hostnames,
                enabled: self.enabled,
                description: self.description,
                public: self.public,
                required_scopes: self.required_scopes,
            },
        )
    }
}

impl ServiceEntry {
    /// The entry of a stored service.
    pub fn from_record(s: &ExternalService) -> Self {
        Self {
            name: s.name.clone(),
            target_url: s.target_url.clone(),
            description: non_zero(s.description.clone()),
        }
    }

    /// The service layer's input.
    pub fn input(self) -> ServiceInput {
        ServiceInput {
            name: self.name,
            target_url: self.target_url,
            description: self.description,
        }
    }
}

impl IdpEntry {
    /// The entry of a stored provider, without its secret.
    pub fn from_record(r: &IdpRecord) -> Self {
        Self {
            name: r.name.clone(),
            kind: r.kind,
            client_id: r.client_id.clone(),
            client_secret: None,
            client_secret_env: None,
            client_secret_file: None,
            base_url: non_zero(r.base_url.clone()),
            api_url: non_zero(r.api_url.clone()),
            scopes: Some(r.scopes.clone()),
        }
    }
}

impl RuleEntry {
    /// The entry of a stored rule.
    pub fn from_record(r: &LoginRule) -> Self {
        Self {
            id: r.id.clone(),
            proxy_hostname: r.proxy_hostname.clone(),
            idp: r.idp.clone(),
            users: non_empty(r.users.clone()),
            groups: non_empty(r.groups.clone()),
            email_domains: non_empty(r.email_domains.clone()),
            scopes: non_empty(r.scopes.clone()),
        }
    }

    /// The id and the service layer's input.
    pub fn input(self) -> (String, LoginRuleInput) {
        (
            self.id,
            LoginRuleInput {
                proxy_hostname: self.proxy_hostname,
                idp: self.idp,
                users: self.users.unwrap_or_default(),
                groups: self.groups.unwrap_or_default(),
                email_domains: self.email_domains.unwrap_or_default(),
                scopes: self.scopes.unwrap_or_default(),
            },
        )
    }
}

impl ScopeEntry {
    /// The entry of a stored description.
    pub fn from_record(s: &ScopeDescription) -> Self {
        Self {
            scope: s.scope.clone(),
            description: s.description.clone(),
        }
    }
}

impl ProxyOAuthEntry {
    /// The entry of stored per-proxy settings, without the secret.
    pub fn from_record(s: &ProxyOAuthSettings) -> Self {
        Self {
            hostname: s.hostname.clone(),
            idps: non_empty(s.idps.clone()),
            github_client_id: s.github_client_id.clone(),
            github_client_secret: None,
            github_client_secret_env: None,
            github_client_secret_file: None,
            metadata: some_if(!s.metadata.is_empty(), s.metadata.clone()),
        }
    }
}
