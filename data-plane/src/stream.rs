//! The control-plane client: one long-lived `ConfigService.StreamConfig` stream.
//!
//! The data plane says `Hello`, then ACKs or NACKs each snapshot it receives. When the
//! stream ends for any reason it reconnects forever with capped, jittered exponential
//! backoff, serving the last good snapshot meanwhile. Authentication failures are logged
//! as errors and retried at the cap: a token fixed on the control plane should heal the
//! data plane without a restart.
//!
//! Several control planes (sharing one Redis) may be given: the data plane streams from one
//! at a time, starting with the first, and when its stream ends or cannot be opened moves
//! to the next in the list (round robin), so the loss of a control plane costs one
//! reconnect (~100 ms plus the connect). Snapshots carry the store revision, the same on
//! every control plane; one older than the version being served is refused (NACKed and not
//! applied), so moving to a control plane that lags never takes the data plane back.
//! A URL whose name resolves to several addresses is treated alike, address by address
//! (see `resolve`).

use std::sync::Arc;
use std::time::Duration;

use tonic::Code;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Endpoint;

use self::session::SessionEnd;
use crate::apply::Applier;

mod backoff;
mod endpoint;
mod resolve;
mod session;
mod ship;

pub(crate) use self::backoff::Backoff;
pub(crate) use self::endpoint::EndpointError;
pub use self::ship::SHIP_TIMEOUT;

const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Everything needed to (re)open the config stream.
pub struct ControlPlane {
    /// One per control plane, in the order given; `current` indexes the one in use.
    endpoints: Vec<Endpoint>,
    current: std::sync::atomic::AtomicUsize,
    /// Where the addresses of a name start (bumped with `current`); see `resolve`.
    rotation: Arc<std::sync::atomic::AtomicUsize>,
    lookup: resolve::Lookup,
    authorization: MetadataValue<Ascii>,
    node_id: String,
    address: String,
    /// Announced in Hello: the ports the authorization server accepts `redirect`-mode
    /// callbacks on (0: not reported / no HTTPS listener).
    http_public_port: u16,
    https_public_port: u16,
    backoff: Backoff,
}

// === impl ControlPlane ===

impl ControlPlane {
    /// Validates the URLs, TLS settings and token up front so mistakes fail at start-up,
    /// not on every reconnect. `ca_pem` is a private CA for `https://` control planes.
    pub fn new(
        urls: &[impl AsRef<str>],
        ca_pem: Option<&[u8]>,
        token: &str,
        node_id: String,
        address: String,
    ) -> Result<Self, EndpointError> {
        Self::new_with_identity(urls, ca_pem, None, token, node_id, address)
    }

    /// [`Self::new`], also presenting a client certificate `(cert PEM, key PEM)` to
    /// `https://` control planes that require one (mutual TLS).
    pub fn new_with_identity(
        urls: &[impl AsRef<str>],
        ca_pem: Option<&[u8]>,
        identity: Option<(&[u8], &[u8])>,
        token: &str,
        node_id: String,
        address: String,
    ) -> Result<Self, EndpointError> {
        let endpoints = urls
            .iter()
            .map(|url| endpoint::build(url.as_ref().trim(), ca_pem, identity))
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err(EndpointError::NoUrl);
        }
        let mut authorization =
            MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| EndpointError::Token)?;
        authorization.set_sensitive(true);
        Ok(Self {
            endpoints,
            current: Default::default(),
            rotation: Arc::default(),
            lookup: resolve::Lookup::System,
            authorization,
            node_id,
            address,
            http_public_port: 0,
            https_public_port: 0,
            backoff: Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF),
        })
    }

    /// The ports clients reach this data plane's HTTP and HTTPS listeners on (0 for no
    /// HTTPS listener), announced in Hello so the control plane registers the built-in
    /// edge clients' redirect URIs on exactly these ports. Without it none are reported
    /// and the control plane assumes 80 and 443, as for data planes that predate it.
    pub fn with_public_ports(mut self, http: u16, https: u16) -> Self {
        self.http_public_port = http;
        self.https_public_port = https;
        self
    }

    /// Overrides the reconnect backoff (default 100 ms doubling to a 10 s cap); tests
    /// of the stream against an in-process config service use short ones.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = Backoff::new(initial, max);
        self
    }

    /// Runs the stream forever, applying snapshots through `applier`.
    pub async fn run(self, applier: Arc<Applier>) {
        let mut backoff = self.backoff.clone();
        loop {
            let mut progressed = false;
            let end = session::run(&self, &applier, &mut progressed).await;
            if progressed {
                backoff.reset();
            }
            let delay = match &end {
                SessionEnd::Status(status)
                    if matches!(
                        status.code(),
                        Code::Unauthenticated | Code::PermissionDenied
                    ) =>
                {
                    tracing::error!(
                        code = ?status.code(),
                        detail = status.message(),
                        "control plane rejected the enrolment token; check PORTCULLIS_ENROLMENT_TOKEN"
                    );
                    backoff.at_cap()
                }
                other => {
                    tracing::warn!(reason = %other, uri = %self.endpoint().uri(), "config stream ended; reconnecting");
                    backoff.next_delay()
                }
            };
            self.move_on();
            tokio::time::sleep(delay).await;
        }
    }
}

impl ControlPlane {
    /// The endpoint of the control plane in use.
    fn endpoint(&self) -> &Endpoint {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed);
        &self.endpoints[i % self.endpoints.len()]
    }

    /// Moves to the next control plane in the list (the same one when there is one), and
    /// to the next address of a name that has several.
    fn move_on(&self) {
        self.current
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.rotation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Connects to the control plane in use, trying each address its name resolves to.
    async fn connect(&self) -> Result<tonic::transport::Channel, tonic::transport::Error> {
        let endpoint = self.endpoint();
        let connector = resolve::Rotating::new(self.lookup.clone(), self.rotation.clone())
            .connector(endpoint::CONNECT_TIMEOUT);
        endpoint.connect_with_connector(connector).await
    }
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("uri", self.endpoint().uri())
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}
