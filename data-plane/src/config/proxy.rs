//! Proxies (virtual hosts): validation of the wire message and the compiled form.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use portcullis_proto::v1 as pb;

use super::error::{CompileError, InvalidField, Reason};
use super::headers::HeaderList;
use super::hostname::HostPattern;
use super::https::{HttpsSettings, HttpsSpec};
use super::limits::LimitSpec;
use super::target::Target;
use crate::policy::{Gate, Policy, PolicySpec, Routed};
use crate::ratelimit::Limits;
use crate::router::RouteTable;
use crate::upstream::{
    ClientCache, DEFAULT_CONNECT_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_READ_TIMEOUT,
    UpstreamSettings,
};

/// A validated proxy, before linking with routes.
#[derive(Debug)]
pub(crate) struct ProxySpec {
    pub(crate) pattern: HostPattern,
    pub(crate) target: Target,
    pub(crate) enabled: bool,
    pub(crate) enable_http: bool,
    pub(crate) preserve_host: bool,
    pub(crate) request_headers: HeaderList,
    pub(crate) response_headers: HeaderList,
    pub(crate) connect_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    /// `u64::MAX` when the proxy sets no limit (0 on the wire).
    pub(crate) max_request_body: u64,
    pub(crate) policy: PolicySpec,
    pub(crate) https: HttpsSpec,
    pub(crate) limits: LimitSpec,
}

/// A compiled proxy as served: its protection policy, its route table and its HTTPS
/// settings.
///
/// The route table is private: [`policy::admit`](crate::policy::admit) looks the route
/// up itself (so it sees the route's own requirements) and only hands the result out in
/// an [`Admitted`](crate::policy::Admitted) proof, so a route can never bypass the
/// proxy's protection.
#[derive(Debug)]
pub struct Proxy {
    hostname: Box<str>,
    policy: Policy,
    routes: RouteTable<Routed>,
    https: HttpsSettings,
    /// Identity header names configured on any proxy of the snapshot (outside the default
    /// families), stripped from this proxy's requests too.
    identity_headers: Arc<[HeaderName]>,
    /// Rate and concurrency limits; `None` (the common case) costs the request path one
    /// check.
    limits: Option<Limits>,
}

// === impl ProxySpec ===

impl TryFrom<&pb::ProxyTarget> for ProxySpec {
    type Error = CompileError;

    fn try_from(p: &pb::ProxyTarget) -> Result<Self, Self::Error> {
        let err = |field, reason| CompileError::Proxy {
            hostname: p.hostname.clone(),
            source: InvalidField::new(field, reason),
        };
        let pattern = HostPattern::parse(&p.hostname).map_err(|r| err("hostname", r))?;
        let target = Target::parse(&p.target_url).map_err(|r| err("target_url", r))?;
        let request_headers = HeaderList::parse(&p.custom_request_headers)
            .map_err(|r| err("custom_request_headers", r))?;
        let response_headers = HeaderList::parse(&p.custom_response_headers)
            .map_err(|r| err("custom_response_headers", r))?;
        let policy = PolicySpec::from_proto(p.auth.as_ref())
            .map_err(|(field, why)| err(field, Reason::Auth(why)))?;
        let limits = LimitSpec::from_proto(p).map_err(|(field, why)| err(field, why))?;
        Ok(Self {
            pattern,
            target,
            enabled: p.enabled,
            enable_http: p.enable_http,
            preserve_host: p.preserve_host_header,
            request_headers,
            response_headers,
            connect_timeout: millis_or(p.connect_timeout_ms, DEFAULT_CONNECT_TIMEOUT),
            read_timeout: millis_or(p.read_timeout_ms, DEFAULT_READ_TIMEOUT),
            idle_timeout: millis_or(p.idle_timeout_ms, DEFAULT_IDLE_TIMEOUT),
            max_request_body: match p.max_request_body_bytes {
                0 => u64::MAX,
                limit => limit,
            },
            policy,
            https: HttpsSpec::from_proto(p),
            limits,
        })
    }
}

impl ProxySpec {
    /// Whether the plain-HTTP listener knows this proxy: it is served there
    /// (`enable_http`), or it redirects to HTTPS. A redirect serves no content over plain
    /// HTTP, so it is honoured even with `enable_http` off.
    pub(crate) fn served_on_http(&self) -> bool {
        self.enabled && (self.enable_http || self.https.redirects())
    }

    /// Whether the HTTPS listener serves this proxy.
    pub(crate) fn served_on_https(&self) -> bool {
        self.enabled && self.https.enable_https
    }

    /// Settings shared by every upstream this proxy's requests use.
    pub(crate) fn settings(&self, clients: &ClientCache) -> Arc<UpstreamSettings> {
        Arc::new(UpstreamSettings {
            preserve_host: self.preserve_host,
            request_headers: self.request_headers.clone(),
            response_headers: self.response_headers.clone(),
            read_timeout: self.read_timeout,
            idle_timeout: self.idle_timeout,
            max_request_body: self.max_request_body,
            client: clients.get(self.connect_timeout),
        })
    }
}

fn millis_or(ms: u32, default: Duration) -> Duration {
    if ms == 0 {
        default
    } else {
        Duration::from_millis(u64::from(ms))
    }
}

// === impl Proxy ===

impl Proxy {
    pub(crate) fn new(
        hostname: String,
        policy: Policy,
        routes: RouteTable<Routed>,
        https: HttpsSettings,
        identity_headers: Arc<[HeaderName]>,
    ) -> Self {
        Self {
            hostname: hostname.into(),
            policy,
            routes,
            https,
            identity_headers,
            limits: None,
        }
    }

    /// Identity header names configured on any proxy of the snapshot, outside the default
    /// families: a client may not send them here either.
    pub(crate) fn configured_identity_headers(&self) -> &[HeaderName] {
        &self.identity_headers
    }

    /// Sets the proxy's limits (see [`crate::ratelimit`]).
    pub(crate) fn with_limits(mut self, limits: Option<Limits>) -> Self {
        self.limits = limits;
        self
    }

    /// Rate and concurrency limits, if any.
    pub fn limits(&self) -> Option<&Limits> {
        self.limits.as_ref()
    }

    /// The configured hostname (`*.example.com` for wildcards), for logs.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// HTTPS behaviour: certificate, redirect, HSTS.
    pub fn https(&self) -> &HttpsSettings {
        &self.https
    }

    /// The certificate this proxy names, for SNI selection.
    pub fn certificate(&self) -> Option<&Arc<rustls::sign::CertifiedKey>> {
        self.https.certificate()
    }

    /// The proxy-level policy (phase 2).
    pub(crate) fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The route table, only for the policy (phase 2: only it can make a [`Gate`]),
    /// which releases the selection inside an [`Admitted`](crate::policy::Admitted) proof.
    pub(crate) fn routes(&self, _gate: &Gate) -> &RouteTable<Routed> {
        &self.routes
    }

    /// Route ids in match order (diagnostics and tests).
    pub fn route_order(&self) -> impl Iterator<Item = &str> {
        self.routes.order()
    }
}
