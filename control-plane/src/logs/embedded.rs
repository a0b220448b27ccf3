//! The embedded request-log store: `<data-dir>/logs.redb`, apart from the config store so
//! log volume never bloats or slows config reads.
//!
//! Tables: `records` `(time, seq) -> prost bytes`; one index table per [`Field`] keyed
//! `(value, time, seq)`; `visitors` `(host, hour) -> HyperLogLog (JSON)`; `dropped`
//! `hour -> count`; `meta` (`seq`). A record and its index entries are written and
//! deleted in the same transaction. Ingest costs one write transaction per batch and one
//! B-tree insert per record and index (each record stored as the data plane encoded it,
//! index values borrowed from those bytes: [`super::wire`]); visitor sketches stay
//! decoded in memory between batches (as committed) and are written back only when a
//! batch changed them. An index value
//! that arrives in random order (client addresses) dirties about one page per record,
//! which is why the data plane's request ids are time-ordered.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use hyperloglog::HyperLogLog;
use prost::Message as _;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{
    Field, HLL_ERROR, Index, LogKey, LogStore, Record, ShipPosition, Shipped, StreamState, hour_of,
};
use crate::store::StoreError;

const RECORDS: TableDefinition<(i64, u64), &[u8]> = TableDefinition::new("records");
const VISITORS: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("visitors");
const DROPPED: TableDefinition<i64, u64> = TableDefinition::new("dropped");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Per data-plane stream: (end_seq, dropped_total, hour last written).
const STREAMS: TableDefinition<&str, (u64, u64, i64)> = TableDefinition::new("streams");
const SEQ: &str = "seq";

/// File name inside `--data-dir`.
pub(crate) const FILE_NAME: &str = "logs.redb";

fn index_table(f: Field) -> TableDefinition<'static, (&'static str, i64, u64), ()> {
    match f {
        Field::Ip => TableDefinition::new("idx_ip"),
        Field::Host => TableDefinition::new("idx_host"),
        Field::User => TableDefinition::new("idx_user"),
        Field::ClientId => TableDefinition::new("idx_client"),
        Field::Status => TableDefinition::new("idx_status"),
        Field::RequestId => TableDefinition::new("idx_request"),
    }
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Embedded(format!("logs: {e}"))
}

/// The sketch every host-hour starts from: fixed seed, so stored sketches merge.
fn template() -> &'static (HyperLogLog, serde_json::Value) {
    static T: OnceLock<(HyperLogLog, serde_json::Value)> = OnceLock::new();
    T.get_or_init(|| {
        let h = HyperLogLog::new_deterministic(HLL_ERROR, 0x706f_7274_6375_6c6c_6973_6c6f_6773);
        let v = serde_json::to_value(&h).unwrap_or_default();
        (h, v)
    })
}

/// Decodes a stored sketch; `None` unless it has the template's parameters (merging a
/// foreign one would panic inside the crate).
fn decode_hll(raw: &[u8]) -> Option<HyperLogLog> {
    let v: serde_json::Value = serde_json::from_slice(raw).ok()?;
    let t = &template().1;
    for k in ["p", "m", "sip", "alpha"] {
        if v.get(k) != t.get(k) {
            return None;
        }
    }
    if v.get("M")?.as_array()?.len() != t.get("M")?.as_array()?.len() {
        return None;
    }
    serde_json::from_value(v).ok()
}

/// A redb database of request logs; blocking work runs on the blocking pool.
#[derive(Clone)]
pub struct EmbeddedLogStore {
    db: Arc<Database>,
    /// The visitor sketches as last committed, by (host, hour): ingest merges into these
    /// instead of decoding the stored JSON on every batch. Only a committed write updates
    /// it; the retention's forgetting removes the same hours.
    sketches: Arc<Mutex<HashMap<(String, i64), Sketch>>>,
}

/// Host-hours whose sketch is kept decoded (all are kept in the table regardless).
const SKETCH_CACHE: usize = 4096;

/// A decoded visitor sketch and the JSON stored for it.
#[derive(Clone)]
struct Sketch {
    hll: HyperLogLog,
    raw: Vec<u8>,
}

impl Sketch {
    /// The stored sketch (its stored bytes are re-made on the next write), or an empty one.
    fn new(stored: Option<HyperLogLog>) -> Self {
        Self {
            hll: stored.unwrap_or_else(|| HyperLogLog::new_from_template(&template().0)),
            raw: Vec::new(),
        }
    }
}

impl EmbeddedLogStore {
    /// Opens or creates `data_dir/logs.redb` (file 0600).
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        crate::files::private_dir(data_dir)
            .map_err(|e| err(format!("cannot create {}: {e}", data_dir.display())))?;
        let path = data_dir.join(FILE_NAME);
        crate::files::ensure_private_file(&path)
            .map_err(|e| err(format!("cannot create {}: {e}", path.display())))?;
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => err(format!(
                "{} is in use by another process (is the control plane running?)",
                path.display()
            )),
            other => err(format!("cannot open {}: {other}", path.display())),
        })?;
        let txn = db.begin_write().map_err(err)?;
        txn.open_table(RECORDS).map_err(err)?;
        txn.open_table(VISITORS).map_err(err)?;
        txn.open_table(DROPPED).map_err(err)?;
        txn.open_table(META).map_err(err)?;
        txn.open_table(STREAMS).map_err(err)?;
        for f in Field::ALL {
            txn.open_table(index_table(f)).map_err(err)?;
        }
        txn.commit().map_err(err)?;
        Ok(Self {
            db: Arc::new(db),
            sketches: Arc::default(),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(err)?
    }
}

#[tonic::async_trait]
impl LogStore for EmbeddedLogStore {
    fn backend_name(&self) -> &'static str {
        "embedded"
    }

    async fn append(
        &self,
        records: Arc<[Option<Shipped>]>,
        dropped: u64,
        position: Option<&ShipPosition>,
    ) -> Result<usize, StoreError> {
        let position = position.cloned();
        let sketches = self.sketches.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(err)?;
            let mut cache = sketches.lock().unwrap_or_else(|e| e.into_inner());
            let mut skip = 0;
            let mut dropped = dropped;
            let mut written: Vec<((String, i64), Sketch)> = Vec::new();
            {
                if let Some(pos) = &position {
                    let mut streams = txn.open_table(STREAMS).map_err(err)?;
                    let state = streams
                        .get(pos.stream.as_str())
                        .map_err(err)?
                        .map(|v| {
                            let (end_seq, dropped_total, _) = v.value();
                            StreamState {
                                end_seq,
                                dropped_total,
                            }
                        })
                        .unwrap_or_default();
                    let (s, new_drops, next) = state.advance(pos, records.len() as u64);
                    skip = s as usize;
                    dropped += new_drops;
                    let hour = hour_of(super::now_nanos());
                    streams
                        .insert(
                            pos.stream.as_str(),
                            (next.end_seq, next.dropped_total, hour),
                        )
                        .map_err(err)?;
                }
                let mut table = txn.open_table(RECORDS).map_err(err)?;
                let mut meta = txn.open_table(META).map_err(err)?;
                let mut seq = meta.get(SEQ).map_err(err)?.map(|v| v.value()).unwrap_or(0);
                // Client addresses per host-hour, borrowed from the records.
                let mut visits: HashMap<(&str, i64), Vec<&str>> = HashMap::new();
                let mut idx: Vec<_> = Field::ALL
                    .iter()
                    .map(|f| txn.open_table(index_table(*f)))
                    .collect::<Result<_, _>>()
                    .map_err(err)?;
                for r in &records[skip..] {
                    let Some(r) = r else {
                        dropped += 1;
                        continue;
                    };
                    seq += 1;
                    let key = (r.time(), seq);
                    table.insert(key, r.bytes()).map_err(err)?;
                    for (f, t) in Field::ALL.iter().zip(idx.iter_mut()) {
                        if let Some(v) = f.value(r) {
                            t.insert((v.as_ref(), key.0, key.1), ()).map_err(err)?;
                        }
                    }
                    let (host, ip) = (r.host(), r.client_ip());
                    if !host.is_empty() && !ip.is_empty() {
                        visits
                            .entry((host, hour_of(r.time())))
                            .or_default()
                            .push(ip);
                    }
                }
                meta.insert(SEQ, seq).map_err(err)?;
                let mut visitors = txn.open_table(VISITORS).map_err(err)?;
                for ((host, hour), ips) in visits {
                    let key = (host.to_owned(), hour);
                    let mut sketch = match cache.get(&key) {
                        Some(s) => s.clone(),
                        None => {
                            let stored = visitors
                                .get((host, hour))
                                .map_err(err)?
                                .and_then(|v| decode_hll(v.value()));
                            Sketch::new(stored)
                        }
                    };
                    for ip in ips {
                        sketch.hll.insert(&ip);
                    }
                    // A busy host's sketch soon stops changing: written only when it did.
                    let raw = serde_json::to_vec(&sketch.hll).map_err(err)?;
                    if raw != sketch.raw {
                        visitors.insert((host, hour), raw.as_slice()).map_err(err)?;
                        sketch.raw = raw;
                    }
                    written.push((key, sketch));
                }
                if dropped > 0 {
                    let hour = hour_of(super::now_nanos());
                    let mut d = txn.open_table(DROPPED).map_err(err)?;
                    let cur = d.get(hour).map_err(err)?.map(|v| v.value()).unwrap_or(0);
                    d.insert(hour, cur.saturating_add(dropped)).map_err(err)?;
                }
            }
            txn.commit().map_err(err)?;
            // Only what is committed is remembered.
            if cache.len() + written.len() > SKETCH_CACHE {
                cache.clear();
            }
            cache.extend(written);
            Ok(skip)
        })
        .await
    }

    async fn scan(
        &self,
        index: &Index,
        before: LogKey,
        since: i64,
        max: usize,
    ) -> Result<Vec<(LogKey, Record)>, StoreError> {
        if (since, 0) >= (before.time, before.seq) || max == 0 {
            return Ok(Vec::new());
        }
        let index = index.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(err)?;
            let table = txn.open_table(RECORDS).map_err(err)?;
            let mut out = Vec::new();
            let decode = |k: (i64, u64), raw: &[u8]| -> Result<(LogKey, Record), StoreError> {
                let r = Record::decode(raw).map_err(|e| StoreError::Corrupt {
                    collection: "logs",
                    key: format!("{}/{}", k.0, k.1),
                    reason: e.to_string(),
                })?;
                Ok((
                    LogKey {
                        time: k.0,
                        seq: k.1,
                    },
                    r,
                ))
            };
            match index {
                Index::Time => {
                    for entry in table
                        .range((since, 0u64)..(before.time, before.seq))
                        .map_err(err)?
                        .rev()
                        .take(max)
                    {
                        let (k, v) = entry.map_err(err)?;
                        out.push(decode(k.value(), v.value())?);
                    }
                }
                Index::Field(f, value) => {
                    let idx = txn.open_table(index_table(f)).map_err(err)?;
                    let lo = (value.as_str(), since, 0u64);
                    let hi = (value.as_str(), before.time, before.seq);
                    for entry in idx.range(lo..hi).map_err(err)?.rev().take(max) {
                        let (k, _) = entry.map_err(err)?;
                        let (_, t, s) = k.value();
                        if let Some(v) = table.get((t, s)).map_err(err)? {
                            out.push(decode((t, s), v.value())?);
                        }
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn unique_visitors(
        &self,
        host: &str,
        from_hour: i64,
        to_hour: i64,
    ) -> Result<u64, StoreError> {
        let host = host.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(err)?;
            let t = txn.open_table(VISITORS).map_err(err)?;
            let mut acc = HyperLogLog::new_from_template(&template().0);
            if from_hour > to_hour {
                return Ok(0);
            }
            for entry in t
                .range((host.as_str(), from_hour)..=(host.as_str(), to_hour))
                .map_err(err)?
            {
                let (_, v) = entry.map_err(err)?;
                if let Some(h) = decode_hll(v.value()) {
                    acc.merge(&h);
                }
            }
            Ok(acc.len().round() as u64)
        })
        .await
    }

    async fn dropped(&self, from_hour: i64, to_hour: i64) -> Result<u64, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(err)?;
            let t = txn.open_table(DROPPED).map_err(err)?;
            if from_hour > to_hour {
                return Ok(0);
            }
            let mut n = 0u64;
            for entry in t.range(from_hour..=to_hour).map_err(err)? {
                n = n.saturating_add(entry.map_err(err)?.1.value());
            }
            Ok(n)
        })
        .await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(err)?;
            txn.open_table(RECORDS).map_err(err)?.len().map_err(err)
        })
        .await
    }

    async fn delete_oldest(
        &self,
        older_than: i64,
        keep_at_most: u64,
        max: usize,
    ) -> Result<u64, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(err)?;
            let deleted;
            {
                let mut table = txn.open_table(RECORDS).map_err(err)?;
                let count = table.len().map_err(err)?;
                let over = count.saturating_sub(keep_at_most);
                let mut victims = Vec::new();
                for entry in table.iter().map_err(err)?.take(max) {
                    let (k, v) = entry.map_err(err)?;
                    let key = k.value();
                    if key.0 >= older_than && victims.len() as u64 >= over {
                        break;
                    }
                    victims.push((key, Record::decode(v.value()).ok()));
                }
                let mut idx: Vec<_> = Field::ALL
                    .iter()
                    .map(|f| txn.open_table(index_table(*f)))
                    .collect::<Result<_, _>>()
                    .map_err(err)?;
                for (key, record) in &victims {
                    if let Some(r) = record {
                        for (f, t) in Field::ALL.iter().zip(idx.iter_mut()) {
                            if let Some(v) = f.value(r) {
                                t.remove((v.as_ref(), key.0, key.1)).map_err(err)?;
                            }
                        }
                    }
                    table.remove(*key).map_err(err)?;
                }
                deleted = victims.len() as u64;
            }
            txn.commit().map_err(err)?;
            Ok(deleted)
        })
        .await
    }

    async fn forget_hours_before(&self, hour: i64) -> Result<(), StoreError> {
        let sketches = self.sketches.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(err)?;
            {
                let mut d = txn.open_table(DROPPED).map_err(err)?;
                d.retain_in(..hour, |_, _| false).map_err(err)?;
                let mut v = txn.open_table(VISITORS).map_err(err)?;
                v.retain(|(_, h), _| h >= hour).map_err(err)?;
                sketches
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|(_, h), _| *h >= hour);
                // A stream silent for the whole retention belongs to a process long gone.
                let mut streams = txn.open_table(STREAMS).map_err(err)?;
                streams.retain(|_, (_, _, h)| h >= hour).map_err(err)?;
            }
            txn.commit().map_err(err)?;
            Ok(())
        })
        .await
    }

    async fn index_entries(&self) -> Result<u64, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(err)?;
            let mut n = 0;
            for f in Field::ALL {
                n += txn
                    .open_table(index_table(f))
                    .map_err(err)?
                    .len()
                    .map_err(err)?;
            }
            Ok(n)
        })
        .await
    }
}
