//! What the control plane knows of its data planes: live streams in memory, and the last
//! status of every data plane in the store so any control plane can report all of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{ControlPlane, Result};
use crate::auth::Caller;
use crate::model::{DataPlaneList, DataPlaneRecord, now};
use crate::store::{Batch, Store, Write};

/// The public ports a data plane announced in Hello: 0 for no HTTPS listener, both 0 for
/// a data plane too old to announce them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenerPorts {
    /// Port clients reach its plain-HTTP listener on.
    pub http: u16,
    /// Port clients reach its HTTPS listener on; 0: none.
    pub https: u16,
}

/// The ports browsers reach `redirect`-mode callbacks on, over every data plane with an
/// open stream: `(https, http)`, sorted and deduplicated. The built-in edge clients accept
/// exactly these as redirect URIs, so a port a data plane does not serve never receives
/// authorization codes. A data plane that announced no ports (older than the announcement)
/// counts as serving 80 and 443, the redirect URIs registered before ports were known.
pub fn edge_callback_ports(records: &[DataPlaneRecord]) -> (Vec<u16>, Vec<u16>) {
    let (mut https, mut http) = (Vec::new(), Vec::new());
    for rec in records.iter().filter(|r| r.connected) {
        match (rec.http_public_port, rec.https_public_port) {
            (0, 0) => {
                http.push(80);
                https.push(443);
            }
            (http_port, https_port) => {
                http.extend((http_port != 0).then_some(http_port));
                https.extend((https_port != 0).then_some(https_port));
            }
        }
    }
    for ports in [&mut https, &mut http] {
        ports.sort_unstable();
        ports.dedup();
    }
    (https, http)
}

/// Tracks data-plane streams. The mutex guards a small map touched only on stream events.
#[derive(Clone)]
pub struct DataPlaneRegistry {
    store: Store,
    live: Arc<Mutex<HashMap<String, u64>>>,
}

impl DataPlaneRegistry {
    pub(super) fn new(store: Store) -> Self {
        Self {
            store,
            live: Arc::default(),
        }
    }

    /// Data planes with an open stream to this control plane.
    pub fn connected_count(&self) -> u32 {
        self.live.lock().map(|m| m.len() as u32).unwrap_or(0)
    }

    /// Registers a new stream. Returns a stream id so a stale stream's end does not mark a
    /// reconnected data plane as gone. `ports` are the public ports it announced (see
    /// [`edge_callback_ports`]).
    pub async fn connected(
        &self,
        node_id: &str,
        address: &str,
        software_version: &str,
        ports: ListenerPorts,
    ) -> Result<u64> {
        let stream_id = rand::random::<u64>();
        if let Ok(mut m) = self.live.lock() {
            m.insert(node_id.to_owned(), stream_id);
        }
        let mut rec = self.load(node_id).await?;
        rec.address = address.to_owned();
        rec.software_version = software_version.to_owned();
        rec.http_public_port = ports.http;
        rec.https_public_port = ports.https;
        rec.connected = true;
        rec.last_seen = now();
        self.save(&rec).await?;
        Ok(stream_id)
    }

    /// Records an ACK.
    pub async fn acked(&self, node_id: &str, version: u64) -> Result<()> {
        let mut rec = self.load(node_id).await?;
        rec.applied_version = version;
        rec.last_nack_error.clear();
        rec.last_seen = now();
        self.save(&rec).await
    }

    /// Records a NACK and its error.
    pub async fn nacked(&self, node_id: &str, version: u64, error: &str) -> Result<()> {
        let mut rec = self.load(node_id).await?;
        rec.last_nack_version = version;
        rec.last_nack_error = error.chars().take(1024).collect();
        rec.last_seen = now();
        self.save(&rec).await
    }

    /// Marks the stream closed, unless the node has reconnected since.
    pub async fn disconnected(&self, node_id: &str, stream_id: u64) -> Result<()> {
        let current = self
            .live
            .lock()
            .map(|mut m| {
                if m.get(node_id) == Some(&stream_id) {
                    m.remove(node_id);
                    true
                } else {
                    false
                }
            })
            .unwrap_or(false);
        if current {
            let mut rec = self.load(node_id).await?;
            rec.connected = false;
            rec.last_seen = now();
            self.save(&rec).await?;
        }
        Ok(())
    }

    /// All known data planes and the newest config version.
    pub async fn list(&self) -> Result<DataPlaneList> {
        let (current_version, (items,)) =
            self.store.read_records::<(Vec<DataPlaneRecord>,)>().await?;
        Ok(DataPlaneList {
            current_version,
            items,
        })
    }

    async fn load(&self, node_id: &str) -> Result<DataPlaneRecord> {
        Ok(
            match self.store.get_record::<DataPlaneRecord>(node_id).await? {
                Some((rec, _)) => rec,
                None => DataPlaneRecord {
                    node_id: node_id.to_owned(),
                    address: String::new(),
                    applied_version: 0,
                    last_nack_error: String::new(),
                    last_nack_version: 0,
                    last_seen: 0,
                    connected: false,
                    software_version: String::new(),
                    http_public_port: 0,
                    https_public_port: 0,
                },
            },
        )
    }

    async fn save(&self, rec: &DataPlaneRecord) -> Result<()> {
        self.store
            .apply(Batch {
                checks: vec![],
                writes: vec![Write::put(rec)],
            })
            .await?;
        Ok(())
    }
}

impl ControlPlane {
    /// Lists data planes; any API token may read it.
    pub async fn list_dataplanes(&self, _caller: &Caller) -> Result<DataPlaneList> {
        self.inner.dataplanes.list().await
    }

    /// Waits until every connected data plane has applied `version` (ACKed it or a newer
    /// one), or `timeout` passes: then goes ahead without the laggards, logged. Used before
    /// acting on something data planes must already serve (ACME challenge answers, a new
    /// token signing key). Polls the store, so data planes of every control plane count.
    pub(crate) async fn wait_for_data_planes(&self, version: u64, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let list = self.dataplanes().list().await?;
            let behind: Vec<&str> = list
                .items
                .iter()
                .filter(|d| d.connected && d.applied_version < version)
                .map(|d| d.node_id.as_str())
                .collect();
            if behind.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    version,
                    ?behind,
                    "data planes did not ACK in time; going ahead without them"
                );
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
