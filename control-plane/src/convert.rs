//! Conversions between domain types and the gRPC wire types, in one place.

use portcullis_proto::v1 as pb;

use crate::error::ServiceError;
use crate::model::{
    AuthMode, CertificateInfo, CertificateInput, ChallengeKind, DataPlaneRecord, ExternalService,
    MatchKind, Proxy, ProxyAuth, ProxyAuthInput, ProxyAuthView, ProxyInput, ProxyPatch,
    ProxyResourceInput, ProxyResourceView, Route, RouteInput, ServiceInput, TargetKind, TokenInfo,
    TokenInput, TokenScope,
};

impl From<Proxy> for pb::ProxyTarget {
    fn from(p: Proxy) -> Self {
        Self {
            hostname: p.hostname,
            target_url: p.target_url,
            enabled: p.enabled,
            enable_http: p.enable_http,
            enable_https: p.enable_https,
            preserve_host_header: p.preserve_host_header,
            custom_request_headers: p.custom_request_headers.into_iter().collect(),
            custom_response_headers: p.custom_response_headers.into_iter().collect(),
            connect_timeout_ms: p.connect_timeout_ms,
            read_timeout_ms: p.read_timeout_ms,
            owner_token_id: p.owner_token_id,
            created_at: p.created_at,
            updated_at: p.updated_at,
            auth: p.auth.map(Into::into),
            certificate_name: p.certificate_name,
            redirect_http_to_https: p.redirect_http_to_https,
            idle_timeout_ms: p.idle_timeout_ms,
            rate_limit_rps: p.rate_limit_rps,
            rate_limit_burst: p.rate_limit_burst,
            rate_limit_key: p.rate_limit_key.as_str().into(),
            max_concurrent_requests: p.max_concurrent_requests,
            max_request_body_bytes: p.max_request_body_bytes,
            upstream_proxy_protocol: p.upstream_proxy_protocol.as_str().into(),
            ip_allowlist: p.ip_allowlist,
            log_query: p.log_query,
            hsts: (p.hsts_max_age_secs > 0).then_some(pb::HstsPolicy {
                max_age_secs: p.hsts_max_age_secs,
                include_subdomains: false,
                preload: false,
            }),
        }
    }
}

fn auth_mode_name(m: AuthMode) -> &'static str {
    match m {
        AuthMode::Forward => "forward",
        AuthMode::Redirect => "redirect",
        AuthMode::Passthrough => "passthrough",
    }
}

/// The snapshot and admin form of a proxy's protection.
impl From<ProxyAuth> for pb::ProxyAuthPolicy {
    fn from(a: ProxyAuth) -> Self {
        Self {
            enabled: true,
            mode: auth_mode_name(a.mode).into(),
            auth_host: a.auth_host,
            required_scopes: a.required_scopes,
            public_paths: a.public_paths,
            resource_metadata_json: if a.resource_fields.is_empty() {
                String::new()
            } else {
                serde_json::Value::Object(a.resource_fields).to_string()
            },
            scopes_supported: a.scopes_supported,
            resource_documentation: a.resource_documentation,
            resource_endpoint: a.resource_endpoint,
            allowed_origins: a.allowed_origins,
            // Filled for snapshots only (`oauth::edge_session::with_session_key`).
            session_key: Vec::new(),
            allowed_users: a.allowed_users,
            allowed_orgs: a.allowed_orgs,
            allowed_teams: a.allowed_teams,
            allowed_email_domains: a.allowed_email_domains,
            allowed_groups: a.allowed_groups,
            forward_token: a.forward_token,
            identity_headers: a.identity_headers.into_iter().collect(),
        }
    }
}

/// `enabled: false` and empty fields for an unprotected proxy.
impl From<ProxyAuthView> for pb::ProxyAuthPolicy {
    fn from(v: ProxyAuthView) -> Self {
        v.auth.map(Into::into).unwrap_or_default()
    }
}

impl TryFrom<pb::ProxyAuthInput> for ProxyAuthInput {
    type Error = ServiceError;

    fn try_from(a: pb::ProxyAuthInput) -> Result<Self, Self::Error> {
        let mode = match a.mode.as_str() {
            "forward" => AuthMode::Forward,
            "redirect" => AuthMode::Redirect,
            "passthrough" => AuthMode::Passthrough,
            other => {
                return Err(ServiceError::invalid(
                    "mode",
                    format!("{other:?}: use forward, redirect or passthrough"),
                ));
            }
        };
        Ok(Self {
            mode,
            auth_host: a.auth_host,
            required_scopes: Some(a.required_scopes),
            public_paths: Some(a.public_paths),
            scopes_supported: Some(a.scopes_supported),
            resource_documentation: Some(a.resource_documentation),
            allowed_users: Some(a.allowed_users),
            allowed_orgs: Some(a.allowed_orgs),
            allowed_teams: Some(a.allowed_teams),
            allowed_email_domains: Some(a.allowed_email_domains),
            allowed_groups: Some(a.allowed_groups),
            forward_token: Some(a.forward_token),
            identity_headers: Some(a.identity_headers.into_iter().collect()),
        })
    }
}

impl From<pb::ProxyInput> for ProxyInput {
    fn from(p: pb::ProxyInput) -> Self {
        Self {
            hostname: p.hostname,
            target_url: p.target_url,
            enabled: p.enabled,
            enable_http: p.enable_http,
            enable_https: p.enable_https,
            preserve_host_header: p.preserve_host_header,
            custom_request_headers: Some(p.custom_request_headers.into_iter().collect()),
            custom_response_headers: Some(p.custom_response_headers.into_iter().collect()),
            connect_timeout_ms: p.connect_timeout_ms,
            read_timeout_ms: p.read_timeout_ms,
            redirect_http_to_https: p.redirect_http_to_https,
            hsts_max_age_secs: p.hsts_max_age_secs,
            certificate_name: p.certificate_name,
            idle_timeout_ms: p.idle_timeout_ms,
            rate_limit_rps: p.rate_limit_rps,
            rate_limit_burst: p.rate_limit_burst,
            rate_limit_key: p.rate_limit_key,
            max_concurrent_requests: p.max_concurrent_requests,
            max_request_body_bytes: p.max_request_body_bytes,
            upstream_proxy_protocol: p.upstream_proxy_protocol,
            ip_allowlist: p.ip_allowlist.as_deref().map(ranges),
            log_query: p.log_query,
        }
    }
}

impl From<pb::ProxyPatch> for ProxyPatch {
    fn from(p: pb::ProxyPatch) -> Self {
        Self {
            target_url: p.target_url,
            enabled: p.enabled,
            enable_http: p.enable_http,
            enable_https: p.enable_https,
            preserve_host_header: p.preserve_host_header,
            custom_request_headers: p
                .custom_request_headers
                .map(|h| h.entries.into_iter().collect()),
            custom_response_headers: p
                .custom_response_headers
                .map(|h| h.entries.into_iter().collect()),
            connect_timeout_ms: p.connect_timeout_ms,
            read_timeout_ms: p.read_timeout_ms,
            redirect_http_to_https: p.redirect_http_to_https,
            hsts_max_age_secs: p.hsts_max_age_secs,
            certificate_name: p.certificate_name,
            idle_timeout_ms: p.idle_timeout_ms,
            rate_limit_rps: p.rate_limit_rps,
            rate_limit_burst: p.rate_limit_burst,
            rate_limit_key: p.rate_limit_key,
            max_concurrent_requests: p.max_concurrent_requests,
            max_request_body_bytes: p.max_request_body_bytes,
            upstream_proxy_protocol: p.upstream_proxy_protocol,
            ip_allowlist: p.ip_allowlist.as_deref().map(ranges),
            log_query: p.log_query,
        }
    }
}

fn match_kind_to_pb(k: MatchKind) -> pb::PathMatchKind {
    match k {
        MatchKind::Prefix => pb::PathMatchKind::Prefix,
        MatchKind::Exact => pb::PathMatchKind::Exact,
        MatchKind::Regex => pb::PathMatchKind::Regex,
    }
}

fn target_kind_to_pb(k: TargetKind) -> pb::RouteTargetKind {
    match k {
        TargetKind::Url => pb::RouteTargetKind::Url,
        TargetKind::Service => pb::RouteTargetKind::Service,
        TargetKind::Proxy => pb::RouteTargetKind::Proxy,
    }
}

impl From<Route> for pb::Route {
    fn from(r: Route) -> Self {
        Self {
            id: r.id,
            priority: r.priority,
            match_kind: match_kind_to_pb(r.match_kind) as i32,
            path_pattern: r.path_pattern,
            methods: r.methods,
            target_kind: target_kind_to_pb(r.target_kind) as i32,
            target_value: r.target_value,
            proxy_hostnames: r.proxy_hostnames,
            enabled: r.enabled,
            description: r.description,
            owner_token_id: r.owner_token_id,
            created_at: r.created_at,
            public: r.public,
            required_scopes: r.required_scopes,
        }
    }
}

impl From<pb::RouteInput> for RouteInput {
    fn from(r: pb::RouteInput) -> Self {
        let match_kind = match pb::PathMatchKind::try_from(r.match_kind) {
            Ok(pb::PathMatchKind::Exact) => Some(MatchKind::Exact),
            Ok(pb::PathMatchKind::Regex) => Some(MatchKind::Regex),
            Ok(pb::PathMatchKind::Prefix) => Some(MatchKind::Prefix),
            _ => None,
        };
        let target_kind = match pb::RouteTargetKind::try_from(r.target_kind) {
            Ok(pb::RouteTargetKind::Url) => Some(TargetKind::Url),
            Ok(pb::RouteTargetKind::Service) => Some(TargetKind::Service),
            Ok(pb::RouteTargetKind::Proxy) => Some(TargetKind::Proxy),
            _ => None,
        };
        Self {
            id: Some(r.id).filter(|s| !s.is_empty()),
            priority: r.priority,
            match_kind,
            path_pattern: r.path_pattern,
            methods: Some(r.methods),
            target_kind,
            target_value: r.target_value,
            proxy_hostnames: Some(r.proxy_hostnames),
            enabled: r.enabled,
            description: Some(r.description),
            public: Some(r.public),
            required_scopes: Some(r.required_scopes),
        }
    }
}

impl From<ExternalService> for pb::ExternalService {
    fn from(s: ExternalService) -> Self {
        Self {
            name: s.name,
            target_url: s.target_url,
            description: s.description,
            owner_token_id: s.owner_token_id,
            created_at: s.created_at,
        }
    }
}

impl From<pb::ServiceInput> for ServiceInput {
    fn from(s: pb::ServiceInput) -> Self {
        Self {
            name: s.name,
            target_url: s.target_url,
            description: Some(s.description),
        }
    }
}

/// Wire scope to domain scope; `None` for unspecified.
pub fn scope_from_pb(v: i32) -> Option<TokenScope> {
    match pb::TokenScope::try_from(v) {
        Ok(pb::TokenScope::Admin) => Some(TokenScope::Admin),
        Ok(pb::TokenScope::User) => Some(TokenScope::User),
        Ok(pb::TokenScope::Dataplane) => Some(TokenScope::Dataplane),
        _ => None,
    }
}

fn scope_to_pb(s: TokenScope) -> pb::TokenScope {
    match s {
        TokenScope::Admin => pb::TokenScope::Admin,
        TokenScope::User => pb::TokenScope::User,
        TokenScope::Dataplane => pb::TokenScope::Dataplane,
    }
}

impl From<pb::TokenInput> for TokenInput {
    fn from(t: pb::TokenInput) -> Self {
        Self {
            name: t.name,
            scope: scope_from_pb(t.scope),
        }
    }
}

impl From<TokenInfo> for pb::ApiToken {
    fn from(t: TokenInfo) -> Self {
        Self {
            id: t.id,
            name: t.name,
            scope: scope_to_pb(t.scope) as i32,
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            created_by: t.created_by,
        }
    }
}

impl From<DataPlaneRecord> for pb::DataPlaneStatus {
    fn from(d: DataPlaneRecord) -> Self {
        Self {
            node_id: d.node_id,
            address: d.address,
            applied_version: d.applied_version,
            last_nack_error: d.last_nack_error,
            last_nack_version: d.last_nack_version,
            last_seen: d.last_seen,
            connected: d.connected,
            software_version: d.software_version,
            http_public_port: d.http_public_port.into(),
            https_public_port: d.https_public_port.into(),
        }
    }
}

fn text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl From<CertificateInfo> for pb::Certificate {
    fn from(c: CertificateInfo) -> Self {
        Self {
            source: text(&c.source),
            challenge: text(&c.challenge),
            status: text(&c.status),
            name: c.name,
            domains: c.domains,
            owner_token_id: c.owner_token_id,
            acme_directory: c.acme_directory,
            email: c.email,
            error: c.error,
            issuer: c.issuer,
            not_before: c.not_before,
            not_after: c.not_after,
            last_attempt_at: c.last_attempt_at,
            created_at: c.created_at,
            serial: c.serial,
            cert_chain_pem: c.cert_chain_pem,
        }
    }
}

impl From<pb::CertificateUpload> for crate::model::CertificateUpload {
    fn from(c: pb::CertificateUpload) -> Self {
        Self {
            name: c.name,
            cert_chain_pem: c.cert_chain_pem,
            private_key_pem: c.private_key_pem,
        }
    }
}

impl From<crate::model::CertificateExport> for pb::CertificateExport {
    fn from(c: crate::model::CertificateExport) -> Self {
        Self {
            name: c.name,
            cert_chain_pem: c.cert_chain_pem,
            private_key_pem: c.private_key_pem,
        }
    }
}

impl TryFrom<pb::CertificateInput> for CertificateInput {
    type Error = ServiceError;

    fn try_from(c: pb::CertificateInput) -> Result<Self, Self::Error> {
        let challenge = match c.challenge.as_str() {
            "" => None,
            "http-01" => Some(ChallengeKind::Http01),
            "tls-alpn-01" => Some(ChallengeKind::TlsAlpn01),
            other => {
                return Err(ServiceError::invalid(
                    "challenge",
                    format!("{other:?}: use http-01 or tls-alpn-01"),
                ));
            }
        };
        Ok(Self {
            name: c.name,
            domains: c.domains,
            email: c.email,
            challenge,
            staging: Some(c.staging),
            self_signed: Some(c.self_signed),
        })
    }
}

impl From<ProxyResourceView> for pb::ProxyResource {
    fn from(v: ProxyResourceView) -> Self {
        Self {
            hostname: v.hostname,
            protected: v.protected,
            endpoint: v.endpoint,
            scopes_supported: v.scopes_supported,
            resource_documentation: v.resource_documentation,
            fields_json: serde_json::Value::Object(v.fields).to_string(),
            allowed_origins: v.allowed_origins,
        }
    }
}

impl TryFrom<pb::ProxyResourceInput> for ProxyResourceInput {
    type Error = ServiceError;

    fn try_from(r: pb::ProxyResourceInput) -> Result<Self, Self::Error> {
        let fields = if r.fields_json.trim().is_empty() {
            None
        } else {
            match serde_json::from_str(&r.fields_json) {
                Ok(serde_json::Value::Object(map)) => Some(map),
                _ => {
                    return Err(ServiceError::invalid(
                        "fields_json",
                        "must be one JSON object",
                    ));
                }
            }
        };
        Ok(Self {
            endpoint: Some(r.endpoint),
            scopes_supported: Some(r.scopes_supported),
            resource_documentation: Some(r.resource_documentation),
            fields,
            allowed_origins: Some(r.allowed_origins),
        })
    }
}

/// The wire's comma-separated ranges as a list; `""` is the empty list.
fn ranges(list: &str) -> Vec<String> {
    list.split(',')
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect()
}
