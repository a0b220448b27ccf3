//! Proxies (virtual hosts): validation of the wire message. The compiled form is
//! [`crate::vhost::Proxy`].

use std::sync::Arc;
use std::time::Duration;

use portcullis_proto::v1 as pb;

use super::error::CompileError;
use super::https::HttpsSpec;
use super::limits::LimitSpec;
use crate::peer::Cidrs;
use crate::policy::PolicySpec;
use crate::spec::{HeaderList, HostPattern, InvalidField, Reason, Target};
use crate::upstream::{
    ClientCache, DEFAULT_CONNECT_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_READ_TIMEOUT, SendProxy,
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
    pub(crate) send_proxy: SendProxy,
    /// `None` when the proxy allows every client.
    pub(crate) ip_allowlist: Option<Cidrs>,
    /// Access-log records keep the query string (credential parameters removed).
    pub(crate) log_query: bool,
    pub(crate) policy: PolicySpec,
    pub(crate) https: HttpsSpec,
    pub(crate) limits: LimitSpec,
}

// === impl ProxySpec ===

impl TryFrom<&pb::ProxyTarget> for ProxySpec {
    type Error = CompileError;

    fn try_from(p: &pb::ProxyTarget) -> Result<Self, Self::Error> {
        let wrap = |source| CompileError::Proxy {
            hostname: p.hostname.clone(),
            source,
        };
        let err = |field, reason| wrap(InvalidField::new(field, reason));
        let pattern = HostPattern::parse(&p.hostname).map_err(|r| err("hostname", r))?;
        let target = Target::parse(&p.target_url).map_err(|r| err("target_url", r))?;
        let request_headers = HeaderList::parse(&p.custom_request_headers)
            .map_err(|r| err("custom_request_headers", r))?;
        let response_headers = HeaderList::parse(&p.custom_response_headers)
            .map_err(|r| err("custom_response_headers", r))?;
        let policy = PolicySpec::from_proto(p.auth.as_ref()).map_err(&wrap)?;
        let limits = LimitSpec::from_proto(p).map_err(&wrap)?;
        let send_proxy = match p.upstream_proxy_protocol.as_str() {
            "" | "off" => SendProxy::Off,
            "v1" => SendProxy::V1,
            "v2" => SendProxy::V2,
            other => {
                return Err(err(
                    "upstream_proxy_protocol",
                    Reason::Limit(format!("{other:?}: expected off, v1 or v2")),
                ));
            }
        };
        let ip_allowlist = match p.ip_allowlist.as_slice() {
            [] => None,
            ranges => Some(
                ranges
                    .join(",")
                    .parse::<Cidrs>()
                    .map_err(|why| err("ip_allowlist", Reason::Limit(why)))?,
            ),
        };
        Ok(Self {
            send_proxy,
            ip_allowlist,
            log_query: p.log_query,
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
            send_proxy: self.send_proxy,
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
