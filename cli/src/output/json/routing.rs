//! Mirrors of the routing resources: proxies, routes and external services.

use std::collections::{BTreeMap, HashMap};

use portcullis_proto::v1 as pb;
use serde::Serialize;

use super::{match_kind_name, target_kind_name};

/// `ProxyTarget`.
#[derive(Debug, Serialize)]
pub(crate) struct ProxyJson {
    hostname: String,
    target_url: String,
    enabled: bool,
    enable_http: bool,
    enable_https: bool,
    preserve_host_header: bool,
    custom_request_headers: BTreeMap<String, String>,
    custom_response_headers: BTreeMap<String, String>,
    connect_timeout_ms: u32,
    read_timeout_ms: u32,
    owner_token_id: String,
    created_at: i64,
    updated_at: i64,
    auth: Option<ProxyAuthJson>,
    certificate_name: String,
    redirect_http_to_https: bool,
    hsts_max_age_secs: u32,
    idle_timeout_ms: u32,
    rate_limit_rps: u32,
    rate_limit_burst: u32,
    rate_limit_key: String,
    max_concurrent_requests: u32,
    max_request_body_bytes: u64,
    upstream_proxy_protocol: String,
    ip_allowlist: Vec<String>,
    log_query: bool,
}

impl From<&pb::ProxyTarget> for ProxyJson {
    fn from(p: &pb::ProxyTarget) -> Self {
        Self {
            hostname: p.hostname.clone(),
            target_url: p.target_url.clone(),
            enabled: p.enabled,
            enable_http: p.enable_http,
            enable_https: p.enable_https,
            preserve_host_header: p.preserve_host_header,
            custom_request_headers: sorted(&p.custom_request_headers),
            custom_response_headers: sorted(&p.custom_response_headers),
            connect_timeout_ms: p.connect_timeout_ms,
            read_timeout_ms: p.read_timeout_ms,
            owner_token_id: p.owner_token_id.clone(),
            created_at: p.created_at,
            updated_at: p.updated_at,
            auth: p.auth.as_ref().map(ProxyAuthJson::from),
            certificate_name: p.certificate_name.clone(),
            redirect_http_to_https: p.redirect_http_to_https,
            hsts_max_age_secs: p.hsts.as_ref().map_or(0, |h| h.max_age_secs),
            idle_timeout_ms: p.idle_timeout_ms,
            rate_limit_rps: p.rate_limit_rps,
            rate_limit_burst: p.rate_limit_burst,
            rate_limit_key: p.rate_limit_key.clone(),
            max_concurrent_requests: p.max_concurrent_requests,
            max_request_body_bytes: p.max_request_body_bytes,
            upstream_proxy_protocol: match p.upstream_proxy_protocol.as_str() {
                "" => "off".to_owned(),
                v => v.to_owned(),
            },
            ip_allowlist: p.ip_allowlist.clone(),
            log_query: p.log_query,
        }
    }
}

/// `ProxyAuthPolicy`; `null` in [`ProxyJson`] when the proxy is unprotected.
#[derive(Debug, Serialize)]
pub(crate) struct ProxyAuthJson {
    enabled: bool,
    mode: String,
    auth_host: String,
    required_scopes: Vec<String>,
    public_paths: Vec<String>,
    resource_metadata_json: String,
    scopes_supported: Vec<String>,
    resource_documentation: String,
    allowed_users: Vec<String>,
    allowed_orgs: Vec<String>,
    allowed_teams: Vec<String>,
    allowed_email_domains: Vec<String>,
    allowed_groups: Vec<String>,
    forward_token: bool,
    identity_headers: std::collections::BTreeMap<String, String>,
}

impl From<&pb::ProxyAuthPolicy> for ProxyAuthJson {
    fn from(a: &pb::ProxyAuthPolicy) -> Self {
        Self {
            enabled: a.enabled,
            mode: a.mode.clone(),
            auth_host: a.auth_host.clone(),
            required_scopes: a.required_scopes.clone(),
            public_paths: a.public_paths.clone(),
            resource_metadata_json: a.resource_metadata_json.clone(),
            scopes_supported: a.scopes_supported.clone(),
            resource_documentation: a.resource_documentation.clone(),
            allowed_users: a.allowed_users.clone(),
            allowed_orgs: a.allowed_orgs.clone(),
            allowed_teams: a.allowed_teams.clone(),
            allowed_email_domains: a.allowed_email_domains.clone(),
            allowed_groups: a.allowed_groups.clone(),
            forward_token: a.forward_token,
            identity_headers: a
                .identity_headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

/// `Route`.
#[derive(Debug, Serialize)]
pub(crate) struct RouteJson {
    id: String,
    priority: u32,
    match_kind: &'static str,
    path_pattern: String,
    methods: Vec<String>,
    target_kind: &'static str,
    target_value: String,
    proxy_hostnames: Vec<String>,
    enabled: bool,
    description: String,
    owner_token_id: String,
    created_at: i64,
    public: bool,
    required_scopes: Vec<String>,
}

impl From<&pb::Route> for RouteJson {
    fn from(r: &pb::Route) -> Self {
        Self {
            id: r.id.clone(),
            priority: r.priority,
            match_kind: match_kind_name(r.match_kind),
            path_pattern: r.path_pattern.clone(),
            methods: r.methods.clone(),
            target_kind: target_kind_name(r.target_kind),
            target_value: r.target_value.clone(),
            proxy_hostnames: r.proxy_hostnames.clone(),
            enabled: r.enabled,
            description: r.description.clone(),
            owner_token_id: r.owner_token_id.clone(),
            created_at: r.created_at,
            public: r.public,
            required_scopes: r.required_scopes.clone(),
        }
    }
}

/// `ExternalService`.
#[derive(Debug, Serialize)]
pub(crate) struct ServiceJson {
    name: String,
    target_url: String,
    description: String,
    owner_token_id: String,
    created_at: i64,
}

impl From<&pb::ExternalService> for ServiceJson {
    fn from(s: &pb::ExternalService) -> Self {
        Self {
            name: s.name.clone(),
            target_url: s.target_url.clone(),
            description: s.description.clone(),
            owner_token_id: s.owner_token_id.clone(),
            created_at: s.created_at,
        }
    }
}

/// prost maps are `HashMap`s; sort them so output is deterministic.
fn sorted(map: &HashMap<String, String>) -> BTreeMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}
