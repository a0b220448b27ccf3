//! The storage interface and its two backends: an embedded file (redb) and Redis.
//!
//! The interface is deliberately small: atomic batches of checked writes, point reads,
//! collection listings, and a global revision that grows with every config change. Every
//! higher-level operation (ownership checks, references between resources, optimistic
//! updates) is built from these in the service layer, so both backends behave the same and
//! pass one test suite (`store/tests.rs`).

use std::path::Path;
use std::time::Instant;

use crate::metrics::{self, StoreOp};

mod embedded;
mod record;
mod redis_backend;
mod revisions;

pub use embedded::EmbeddedStore;
pub use record::{Record, RecordSet, decode, encode};
pub use redis_backend::RedisStore;
pub use revisions::Revisions;

/// A named group of records. Config collections bump the revision when written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Collection {
    /// Proxy targets by hostname.
    Proxies,
    /// Routes by id.
    Routes,
    /// External services by name.
    Services,
    /// API tokens by id.
    Tokens,
    /// Data plane status by node id.
    DataPlanes,
    /// Control-plane bookkeeping (bootstrap marker).
    Meta,
    /// Certificates by name (keys sealed).
    Certificates,
    /// Pending ACME challenge answers, served by data planes.
    AcmeChallenges,
    /// ACME account credentials (sealed) by directory and contact.
    AcmeAccounts,
    /// OAuth signing keys by kid (private halves sealed); public halves go to data planes.
    OAuthKeys,
    /// OAuth clients by client id.
    OAuthClients,
    /// Upstream identity providers by name (client secrets sealed).
    OAuthIdps,
    /// Login rules by id.
    OAuthRules,
    /// Logins in progress by transaction id.
    OAuthTx,
    /// Authorization codes by hash.
    OAuthCodes,
    /// Refresh token families by id.
    OAuthFamilies,
    /// Remembered consents by `sub` and client.
    OAuthConsents,
    /// Revoked access tokens by jti; data planes refuse them.
    OAuthRevocations,
    /// Per-proxy OAuth settings by hostname.
    OAuthProxySettings,
    /// Device authorizations by device-code hash.
    OAuthDevices,
    /// Device user codes → device-code hash.
    OAuthUserCodes,
    /// Docker services (containers Portcullis runs) by name.
    Containers,
    /// Host-port allocations by `port/protocol`.
    PortAllocations,
    /// Scope descriptions an admin set, by scope name.
    OAuthScopes,
}

impl Collection {
    /// Stable name used as a key prefix in both backends.
    pub fn name(self) -> &'static str {
        match self {
            Self::Proxies => "proxies",
            Self::Routes => "routes",
            Self::Services => "services",
            Self::Tokens => "tokens",
            Self::DataPlanes => "dataplanes",
            Self::Meta => "meta",
            Self::Certificates => "certificates",
            Self::AcmeChallenges => "acmechallenges",
            Self::AcmeAccounts => "acmeaccounts",
            Self::OAuthKeys => "oauthkeys",
            Self::OAuthClients => "oauthclients",
            Self::OAuthIdps => "oauthidps",
            Self::OAuthRules => "oauthrules",
            Self::OAuthTx => "oauthtx",
            Self::OAuthCodes => "oauthcodes",
            Self::OAuthFamilies => "oauthfamilies",
            Self::OAuthConsents => "oauthconsents",
            Self::OAuthRevocations => "oauthrevocations",
            Self::OAuthProxySettings => "oauthproxysettings",
            Self::OAuthDevices => "oauthdevices",
            Self::OAuthUserCodes => "oauthusercodes",
            Self::Containers => "containers",
            Self::PortAllocations => "portallocations",
            Self::OAuthScopes => "oauthscopes",
        }
    }

    /// Whether writes to this collection change what data planes serve.
    pub fn is_config(self) -> bool {
        matches!(
            self,
            Self::Proxies
                | Self::Routes
                | Self::Services
                | Self::Certificates
                | Self::AcmeChallenges
                | Self::OAuthKeys
                | Self::OAuthRevocations
        )
    }
}

/// A condition checked atomically before a batch's writes.
#[derive(Debug, Clone)]
pub enum Check {
    /// The key must not exist.
    Absent(Collection, String),
    /// The key must exist.
    Present(Collection, String),
    /// The key must hold exactly these bytes (optimistic concurrency).
    Equals(Collection, String, Vec<u8>),
}

/// One write in a batch.
#[derive(Debug, Clone)]
pub enum Write {
    /// Create or replace.
    Put(Collection, String, Vec<u8>),
    /// Remove if present.
    Delete(Collection, String),
}

/// Writes applied all together or not at all.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Conditions; if any fails nothing is written.
    pub checks: Vec<Check>,
    /// Writes, applied in order.
    pub writes: Vec<Write>,
}

impl Batch {
    /// Whether the batch touches config and so must bump the revision.
    fn bumps_revision(&self) -> bool {
        self.writes.iter().any(|w| match w {
            Write::Put(c, ..) | Write::Delete(c, _) => c.is_config(),
        })
    }
}

/// Storage failures. `CheckFailed` is the only one callers branch on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Check number `0` of the batch did not hold; nothing was written.
    #[error("check {0} of the batch failed")]
    CheckFailed(usize),
    /// The embedded database failed.
    #[error("embedded store: {0}")]
    Embedded(String),
    /// Redis failed or is unreachable.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The store holds a record that does not decode.
    #[error("corrupt record {collection}/{key}: {reason}")]
    Corrupt {
        /// Collection name.
        collection: &'static str,
        /// Key.
        key: String,
        /// Decoder message.
        reason: String,
    },
    /// A multi-collection read came back with the wrong number of collections.
    #[error("the store answered {got} collections where {expected} were read")]
    Shape {
        /// Collections requested.
        expected: usize,
        /// Collections in the answer.
        got: usize,
    },
}

/// All records of several collections read at one revision.
#[derive(Debug, Default)]
pub struct Consistent {
    /// The revision the reads saw.
    pub revision: u64,
    /// One list of `(key, value)` per requested collection, in request order.
    pub collections: Vec<Vec<(String, Vec<u8>)>>,
}

/// The store the control plane uses; one of two backends behind one interface.
#[derive(Clone)]
pub enum Store {
    /// A single redb file under `--data-dir`.
    Embedded(EmbeddedStore),
    /// A shared Redis server.
    Redis(RedisStore),
}

impl Store {
    /// Opens (creating if needed) the embedded store in `data_dir`.
    pub fn open_embedded(data_dir: &Path) -> Result<Self, StoreError> {
        EmbeddedStore::open(data_dir).map(Self::Embedded)
    }

    /// Connects to Redis at `url` (`redis://` or `rediss://`).
    pub async fn connect_redis(url: &str) -> Result<Self, StoreError> {
        RedisStore::connect(url).await.map(Self::Redis)
    }

    /// "embedded" or "redis", for health output.
    pub fn backend_name(&self) -> &'static str {
        match self {
            Self::Embedded(_) => "embedded",
            Self::Redis(_) => "redis",
        }
    }

    /// Reads one record.
    pub async fn get(&self, c: Collection, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let started = Instant::now();
        let got = match self {
            Self::Embedded(s) => s.get(c, key).await,
            Self::Redis(s) => s.get(c, key).await,
        };
        metrics::store_op(StoreOp::Get, started.elapsed(), got.is_err());
        got
    }

    /// Lists one collection, sorted by key.
    pub async fn list(&self, c: Collection) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self
            .read_consistent(&[c])
            .await?
            .collections
            .pop()
            .unwrap_or_default())
    }

    /// Reads several collections and the revision in one atomic view.
    pub async fn read_consistent(&self, cs: &[Collection]) -> Result<Consistent, StoreError> {
        let started = Instant::now();
        let read = match self {
            Self::Embedded(s) => s.read_consistent(cs).await,
            Self::Redis(s) => s.read_consistent(cs).await,
        };
        metrics::store_op(StoreOp::Read, started.elapsed(), read.is_err());
        let mut out = read?;
        for list in &mut out.collections {
            list.sort_by(|a, b| a.0.cmp(&b.0));
        }
        Ok(out)
    }

    /// Applies a batch atomically; returns the revision after it.
    pub async fn apply(&self, batch: Batch) -> Result<u64, StoreError> {
        let started = Instant::now();
        let applied = match self {
            Self::Embedded(s) => s.apply(batch).await,
            Self::Redis(s) => s.apply(batch).await,
        };
        metrics::store_op(StoreOp::Apply, started.elapsed(), applied.is_err());
        applied
    }

    /// Reports every revision another process writes to `revisions` as it happens (Redis
    /// pub/sub). The embedded store has one process, whose writes report themselves.
    pub fn watch_revisions(&self, revisions: &Revisions) {
        if let Self::Redis(s) = self {
            s.watch_revisions(revisions.clone());
        }
    }

    /// The current config revision (0 for an empty store).
    pub async fn revision(&self) -> Result<u64, StoreError> {
        Ok(self.read_consistent(&[]).await?.revision)
    }
}

#[cfg(test)]
pub(crate) mod tests;
