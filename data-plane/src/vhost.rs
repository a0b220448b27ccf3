//! A compiled proxy (virtual host) as served, and phase 2 of every request: its admission.
//!
//! The only way to reach a proxy's route table is through [`admit`]: it looks the route
//! up (a pure lookup), decides with the proxy's policy plus what that route adds
//! ([`RouteAccess`](crate::spec::RouteAccess): extra scopes, or an admin's `public`
//! exemption), and releases the chosen upstream only inside an [`Admitted`] token. A
//! route without such settings is protected exactly like its proxy; a route that would
//! forward to a protected proxy's upstream (bypassing that proxy's policy) is refused
//! with 503.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderName;

use crate::metrics::ProxyMetrics;
use crate::peer::Cidrs;
use crate::policy::Policy;
use crate::ratelimit::Limits;
use crate::router::RouteTable;

mod admit;
mod https;
mod routed;

use self::admit::Gate;
pub use self::admit::{Admitted, admit};
pub(crate) use self::admit::{admit_head, intercept};
pub(crate) use self::https::HttpsSettings;
pub(crate) use self::routed::Routed;

/// A compiled proxy as served: its protection policy, its route table and its HTTPS
/// settings.
///
/// The route table is private: [`admit`] looks the route up itself (so it sees the
/// route's own requirements) and only hands the result out in an [`Admitted`] proof, so
/// a route can never bypass the proxy's protection.
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
    /// Request metrics of this hostname, resolved at compile time ([`crate::metrics`]).
    metrics: Arc<ProxyMetrics>,
    /// Client address ranges allowed; `None` (the common case) allows every client.
    ip_allowlist: Option<Cidrs>,
    /// Access-log records keep the query string (credential parameters removed).
    log_query: bool,
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
            metrics: ProxyMetrics::for_host(&hostname),
            hostname: hostname.into(),
            policy,
            routes,
            https,
            identity_headers,
            limits: None,
            ip_allowlist: None,
            log_query: false,
        }
    }

    /// Access-log records of this proxy keep the query string (without credential
    /// parameters; [`crate::access_log::redact_query`]).
    pub(crate) fn with_log_query(mut self, log_query: bool) -> Self {
        self.log_query = log_query;
        self
    }

    /// Whether access-log records keep the query string.
    pub(crate) fn log_query(&self) -> bool {
        self.log_query
    }

    /// Restricts the proxy to clients in `ranges` (`None`: every client).
    pub(crate) fn with_ip_allowlist(mut self, ranges: Option<Cidrs>) -> Self {
        self.ip_allowlist = ranges;
        self
    }

    /// Whether `client` (the address every decision uses: the PROXY header's source or
    /// the rightmost untrusted `X-Forwarded-For` entry behind a trusted forwarder) may
    /// reach this proxy.
    pub(crate) fn allows_client(&self, client: IpAddr) -> bool {
        self.ip_allowlist
            .as_ref()
            .is_none_or(|ranges| ranges.contains(client))
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

    /// This proxy's request metrics.
    pub fn metrics(&self) -> &ProxyMetrics {
        &self.metrics
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

    /// The route table, only for the admission (phase 2: only [`admit`] can make a
    /// [`Gate`]), which releases the selection inside an [`Admitted`] proof.
    pub(crate) fn routes(&self, _gate: &Gate) -> &RouteTable<Routed> {
        &self.routes
    }

    /// Route ids in match order (diagnostics and tests).
    #[cfg(test)]
    pub(crate) fn route_order(&self) -> impl Iterator<Item = &str> {
        self.routes.order()
    }
}
