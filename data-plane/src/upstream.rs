//! Upstreams: where a request goes and with which settings, plus the pooled HTTP clients
//! they share.
//!
//! Clients are cached by connect timeout in a [`ClientCache`] that outlives snapshots,
//! so keep-alive pools survive config swaps. The cache's mutex, and a client's map of
//! pools by origin, are only touched while compiling a snapshot, never per request: each
//! [`Upstream`] holds its origin's [`Pool`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::connect::HttpConnector;

use self::pool::Client;
pub(crate) use self::pool::ClientError;
pub use self::pool::limit_connections_per_origin;
pub(crate) use self::pool::{Lease, Pool, PooledBody, RawConn};
use crate::spec::{HeaderList, Target};

mod pool;
mod proxy_header;

pub(crate) use self::proxy_header::{ProxySource, SendProxy};

/// Used when a proxy's `connect_timeout_ms` is 0.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Used when a proxy's `read_timeout_ms` is 0.
pub(crate) const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Used when a proxy's `idle_timeout_ms` is 0: long enough for quiet SSE/MCP streams
/// (which usually send keep-alives well within it), short enough that dead streams do
/// not hold connections for hours.
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// The pooled client type: plain HTTP or HTTPS (rustls, system roots) per target scheme.
pub(crate) type HttpClient = Arc<Client>;

/// A resolved destination: target URL plus the settings of the proxy that owns it.
#[derive(Clone, Debug)]
pub struct Upstream {
    target: Target,
    settings: Arc<UpstreamSettings>,
    pool: Arc<Pool>,
}

/// Per-proxy forwarding settings, shared by all of the proxy's upstreams.
#[derive(Debug)]
pub struct UpstreamSettings {
    pub(crate) preserve_host: bool,
    pub(crate) request_headers: HeaderList,
    pub(crate) response_headers: HeaderList,
    pub(crate) read_timeout: Duration,
    /// Longest silence between body frames, either direction, after the head.
    pub(crate) idle_timeout: Duration,
    /// Largest request body forwarded, in bytes; `u64::MAX` (the default) for no limit,
    /// so the check is one comparison either way.
    pub(crate) max_request_body: u64,
    /// PROXY protocol towards the upstream: each request then has a connection of its own.
    pub(crate) send_proxy: SendProxy,
    pub(crate) client: HttpClient,
}

/// Long-lived pooled clients keyed by connect timeout.
pub struct ClientCache {
    tls: rustls::ClientConfig,
    clients: Mutex<HashMap<Duration, HttpClient>>,
}

// === impl Upstream ===

impl Upstream {
    pub(crate) fn new(target: Target, settings: Arc<UpstreamSettings>) -> Self {
        let pool = settings.client.pool(target.scheme(), target.authority());
        Self {
            target,
            settings,
            pool,
        }
    }

    /// Where requests go.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// How they are sent.
    pub(crate) fn settings(&self) -> &UpstreamSettings {
        &self.settings
    }

    /// Keep-alive connections to the target's origin.
    pub(crate) fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

// === impl ClientCache ===

impl ClientCache {
    /// Creates an empty cache. HTTPS upstreams are verified against the system trust
    /// store, loaded once here; a missing store only makes HTTPS upstreams fail (502).
    pub fn new() -> Self {
        Self::with_roots(load_native_roots())
    }

    /// Creates an empty cache that trusts `roots` for HTTPS upstreams.
    pub fn with_roots(roots: rustls::RootCertStore) -> Self {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = match rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
        {
            Ok(builder) => builder.with_root_certificates(roots).with_no_client_auth(),
            Err(error) => {
                // Only possible if the provider lacks every default protocol version.
                tracing::error!(%error, "rustls provider unusable; HTTPS upstreams will fail");
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            }
        };
        Self {
            tls,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The client for `connect_timeout`, creating it on first use. Compile time only.
    pub(crate) fn get(&self, connect_timeout: Duration) -> HttpClient {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        clients
            .entry(connect_timeout)
            .or_insert_with(|| self.build(connect_timeout))
            .clone()
    }

    /// Drops clients no longer used by the newest snapshot. Requests still running on an
    /// older snapshot keep their client (and pool) alive until they finish.
    pub(crate) fn retain(&self, in_use: &[Duration]) {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        clients.retain(|timeout, _| in_use.contains(timeout));
        for client in clients.values() {
            client.prune();
        }
    }

    fn build(&self, connect_timeout: Duration) -> HttpClient {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_keepalive(Some(TCP_KEEPALIVE));
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(self.tls.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let direct = proxy_header::Direct::new(connect_timeout, self.tls.clone());
        Arc::new(Client::new(connector, direct))
    }
}

impl Default for ClientCache {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ClientCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCache").finish_non_exhaustive()
    }
}

fn load_native_roots() -> rustls::RootCertStore {
    let loaded = rustls_native_certs::load_native_certs();
    for error in &loaded.errors {
        tracing::warn!(%error, "while loading system CA certificates");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
    tracing::debug!(added, ignored, "system CA certificates for HTTPS upstreams");
    if added == 0 {
        tracing::warn!("no system CA certificates found; HTTPS upstreams will fail");
    }
    roots
}
