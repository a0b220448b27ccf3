//! The OAuth 2.1 authorization server: upstream login through GitHub or OpenID Connect,
//! PKCE-bound codes, dynamic client registration and Client ID Metadata Documents,
//! audience-bound JWT access tokens, refresh rotation and revocation.
//!
//! Endpoints live at the root of the control plane's HTTP listener (`http.rs`) and reach the
//! internet through a proxy whose target is the control plane. The issuer is that public
//! origin. Protocol logic is here and in the submodules; the HTTP adapter only parses and
//! renders.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::model::now;
use crate::service::ControlPlane;
use crate::store::{Batch, Check, Collection, StoreError, Write, decode};

pub mod admin;
pub mod authorize;
pub mod clients;
pub mod clock;
pub mod console_client;
pub mod device;
pub mod device_state;
pub mod edge_session;
pub mod error;
pub mod forward_auth;
pub mod http;
pub mod idp;
pub mod keys;
pub mod metadata;
pub mod model;
pub mod params;
pub mod revocation;
pub mod scopes;
pub mod token;

pub use clock::{Clock, ManualClock};
pub use error::{ErrorCode, OAuthError};
pub use model::*;

/// Scopes the server always understands, beyond those named in login rules.
pub const BASE_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

/// Settings fixed at start-up.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    /// The public origin clients see (`https://auth.example.com`); `http` only on loopback.
    pub issuer: String,
    /// Access token lifetime.
    pub access_ttl: Duration,
    /// Refresh token lifetime (sliding: each refresh restarts it).
    pub refresh_ttl: Duration,
    /// Absolute cap on a refresh chain.
    pub refresh_absolute_ttl: Duration,
    /// Authorization code lifetime (at most 60 s).
    pub code_ttl: Duration,
    /// `ES256` (default) or `RS256` for new signing keys.
    pub signing_alg: SigningAlg,
    /// Rotate the signing key after this long.
    pub key_rotation: Duration,
    /// When set, `/register` needs `Authorization: Bearer <this>`.
    pub registration_token: Option<String>,
    /// Allow Client ID Metadata Document URLs that resolve to private/loopback addresses
    /// (tests and private deployments only).
    pub cimd_allow_private: bool,
    /// Trust these PEM roots in addition to the system ones when calling providers.
    pub upstream_ca: Option<std::path::PathBuf>,
    /// Where data planes reach this control plane's HTTP listener (`oauth setup` default).
    pub local_url: String,
}

impl Default for OAuthSettings {
    fn default() -> Self {
        Self {
            issuer: "http://127.0.0.1:9000".into(),
            access_ttl: Duration::from_secs(3600),
            refresh_ttl: Duration::from_secs(30 * 86400),
            refresh_absolute_ttl: Duration::from_secs(90 * 86400),
            code_ttl: Duration::from_secs(60),
            signing_alg: SigningAlg::Es256,
            key_rotation: Duration::from_secs(30 * 86400),
            registration_token: None,
            cimd_allow_private: false,
            upstream_ca: None,
            local_url: String::new(),
        }
    }
}

/// Algorithm for new signing keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlg {
    /// ECDSA P-256 with SHA-256: small tokens, fast verification; the default.
    Es256,
    /// RSA 2048 with SHA-256, for relying parties that only do RSA.
    Rs256,
}

impl SigningAlg {
    /// JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }
}

impl std::str::FromStr for SigningAlg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "ES256" => Ok(Self::Es256),
            "RS256" => Ok(Self::Rs256),
            other => Err(format!(
                "unsupported signing algorithm {other:?}; use ES256 or RS256"
            )),
        }
    }
}

/// Token counters since this control plane started.
#[derive(Debug, Default)]
pub struct Counters {
    /// Access tokens issued by a code exchange.
    pub issued: AtomicU64,
    /// Refresh grants served.
    pub refreshed: AtomicU64,
    /// Tokens or families revoked.
    pub revoked: AtomicU64,
    /// Upstream logins that failed at the callback (refused, invalid or expired).
    pub login_failures: AtomicU64,
}

/// Snapshot of [`Counters`] for the admin API.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Metrics {
    /// Access tokens issued by a code exchange.
    pub issued: u64,
    /// Refresh grants served.
    pub refreshed: u64,
    /// Tokens or families revoked.
    pub revoked: u64,
    /// Registered clients.
    pub clients: usize,
    /// Live refresh families (sessions).
    pub sessions: usize,
}

/// The authorization server. Cheap to clone.
#[derive(Clone)]
pub struct OAuthServer {
    inner: Arc<Inner>,
}

struct Inner {
    cp: ControlPlane,
    settings: OAuthSettings,
    http: reqwest::Client,
    /// Extra roots for calls to providers and metadata documents (read once at start).
    upstream_roots: Vec<reqwest::Certificate>,
    counters: Counters,
    discovery: idp::DiscoveryCache,
    clock: Clock,
}

/// An outbound HTTP client that never follows redirects and trusts `roots` too.
fn client_builder(
    roots: &[reqwest::Certificate],
    timeout: Duration,
    connect: Duration,
) -> reqwest::ClientBuilder {
    roots.iter().fold(
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(connect)
            .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION"))),
        |b, cert| b.add_root_certificate(cert.clone()),
    )
}

impl OAuthServer {
    /// Builds the server over the control plane's store and master key.
    pub fn new(cp: ControlPlane, settings: OAuthSettings) -> anyhow::Result<Self> {
        Self::with_clock(cp, settings, Clock::System)
    }

    /// [`Self::new`] with the clock the token code reads (tests pass a [`ManualClock`]).
    pub fn with_clock(
        cp: ControlPlane,
        settings: OAuthSettings,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        let mut upstream_roots = Vec::new();
        if let Some(path) = &settings.upstream_ca {
            let pem = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            upstream_roots = reqwest::Certificate::from_pem_bundle(&pem)?;
        }
        let http = client_builder(
            &upstream_roots,
            Duration::from_secs(15),
            Duration::from_secs(5),
        )
        .build()?;
        Ok(Self {
            inner: Arc::new(Inner {
                cp,
                settings,
                http,
                upstream_roots,
                counters: Counters::default(),
                discovery: idp::DiscoveryCache::default(),
                clock,
            }),
        })
    }

    /// Unix seconds by this server's clock: what tokens are minted, expired and revoked by.
    pub fn now(&self) -> i64 {
        self.inner.clock.now()
    }

    /// Start-up settings.
    pub fn settings(&self) -> &OAuthSettings {
        &self.inner.settings
    }

    /// The issuer identifier, exactly as advertised.
    pub fn issuer(&self) -> &str {
        &self.inner.settings.issuer
    }

    /// The control plane (store, master key).
    pub fn cp(&self) -> &ControlPlane {
        &self.inner.cp
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// OpenID provider metadata discovered recently.
    pub(crate) fn discovery(&self) -> &idp::DiscoveryCache {
        &self.inner.discovery
    }

    /// A client builder with this server's trust roots, for one-off clients (pinned DNS).
    pub(crate) fn client_builder(
        &self,
        timeout: Duration,
        connect: Duration,
    ) -> reqwest::ClientBuilder {
        client_builder(&self.inner.upstream_roots, timeout, connect)
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    pub(crate) fn count(&self, c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    // === store helpers ===

    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        c: Collection,
        key: &str,
    ) -> Result<Option<(T, Vec<u8>)>, StoreError> {
        match self.inner.cp.store().get(c, key).await? {
            Some(raw) => Ok(Some((decode(c, key, &raw)?, raw))),
            None => Ok(None),
        }
    }

    pub(crate) async fn list<T: DeserializeOwned>(
        &self,
        c: Collection,
    ) -> Result<Vec<T>, StoreError> {
        self.inner
            .cp
            .store()
            .list(c)
            .await?
            .iter()
            .map(|(k, v)| decode(c, k, v))
            .collect()
    }

    /// Applies a batch and wakes the snapshot publisher when it changed config.
    pub(crate) async fn apply(&self, batch: Batch) -> Result<u64, StoreError> {
        let rev = self.inner.cp.store().apply(batch).await?;
        self.inner.cp.observe_revision(rev);
        Ok(rev)
    }

    /// Deletes expired short-lived records and rotates the signing key when due.
    pub async fn sweep(&self) -> Result<(), OAuthError> {
        self.sweep_fenced(None).await
    }

    /// [`Self::sweep`] with every write guarded by `fence` (the maintenance lease).
    async fn sweep_fenced(&self, fence: Option<Check>) -> Result<(), OAuthError> {
        let t = now();
        let mut writes = Vec::new();
        self.expired(Collection::OAuthTx, &mut writes, |r: &LoginTx| {
            r.expires_at < t
        })
        .await?;
        // Used codes are kept a little longer than their life so replays are recognised.
        self.expired(Collection::OAuthCodes, &mut writes, |r: &CodeRecord| {
            r.expires_at + 600 < t
        })
        .await?;
        self.expired(Collection::OAuthFamilies, &mut writes, |r: &TokenFamily| {
            r.refresh_expires_at.min(r.absolute_expires_at) < t
                && r.access_tokens.iter().all(|(_, exp)| *exp < t)
        })
        .await?;
        self.expired(
            Collection::OAuthRevocations,
            &mut writes,
            |r: &RevokedToken| r.expires_at < t,
        )
        .await?;
        let mut devices = Vec::new();
        self.expired(
            Collection::OAuthDevices,
            &mut devices,
            |r: &DeviceRecord| r.expires_at < t,
        )
        .await?;
        if !devices.is_empty() {
            // Their user codes go with them.
            for (code, key) in self.cp().store().list(Collection::OAuthUserCodes).await? {
                let points_at_dead = serde_json::from_slice::<String>(&key).map_or(true, |k| {
                    devices
                        .iter()
                        .any(|w| matches!(w, Write::Delete(_, d) if *d == k))
                });
                if points_at_dead {
                    writes.push(Write::Delete(Collection::OAuthUserCodes, code));
                }
            }
            writes.extend(devices);
        }
        if !writes.is_empty() {
            self.apply(Batch {
                checks: fence.iter().cloned().collect(),
                writes,
            })
            .await?;
        }
        keys::rotate_if_due(self, fence.as_ref()).await?;
        Ok(())
    }

    /// Queues deletes for records of `c` that are `dead` (or no longer decode).
    async fn expired<T: DeserializeOwned>(
        &self,
        c: Collection,
        out: &mut Vec<Write>,
        dead: impl Fn(&T) -> bool,
    ) -> Result<(), StoreError> {
        for (k, v) in self.cp().store().list(c).await? {
            if serde_json::from_slice::<T>(&v).map_or(true, |r| dead(&r)) {
                out.push(Write::Delete(c, k));
            }
        }
        Ok(())
    }

    /// Runs [`Self::sweep`] every `every` until the process ends, on one control plane
    /// of those sharing the store at a time (lease `oauth-maintenance`, its fence on every
    /// write): key rotation must not race itself.
    pub fn spawn_sweeper(&self, every: Duration) {
        let this = self.clone();
        self.cp()
            .leases()
            .clone()
            .spawn_singleton("oauth-maintenance", every, move |fence| {
                let this = this.clone();
                async move {
                    if let Err(e) = this.sweep_fenced(Some(fence)).await {
                        tracing::warn!(error = %e, "oauth sweep failed");
                    }
                }
            });
    }
}

/// A JSON put.
pub(crate) fn put<T: Serialize>(c: Collection, key: &str, value: &T) -> Write {
    Write::json(c, key, value)
}

/// 256 random bits, URL-safe base64.
pub(crate) fn random_token() -> String {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Hex SHA-256, how every bearer-ish secret is stored.
pub(crate) fn sha256_hex(s: &str) -> String {
    crate::auth::hash_secret(s)
}
