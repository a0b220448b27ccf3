//! The embedded request-log store: `<data-dir>/logs.redb`, apart from the config store so
//! log volume never bloats or slows config reads.
//!
//! Tables: `records` `(time, seq) -> prost bytes`; `ix_rows`: the index of closed blocks
//! (a block is 2^15 consecutive `seq`, [`BLOCK_BITS`]), one row per (block, field, bucket
//! of the value's hash) holding each value's record keys ([`rows`]);
//! `visitors` `(host, hour) -> HyperLogLog (JSON)`; `dropped` `hour -> count`; `meta`
//! (`seq`, [`INDEXED`], [`UNINDEXED_SINCE`]); `streams`.
//!
//! The open block's index entries live in memory ([`OpenBlock`]: each record's indexed
//! values), not in a table. When a batch's first record opens a new block, the closed
//! block's entries are grouped into rows (at most [`rows::BUCKETS`] per field) in that
//! batch's transaction and `indexed` moves past them. So rows plus memory index every
//! record exactly once; a search merges the in-memory matches with one row per block.
//! Crash safety: a batch's records, stream positions and `seq` commit in one transaction
//! as before; the in-memory entries are derived from the records (`seq >= indexed`,
//! found from `unindexed_since`) when the file is opened, so a crash loses none. Deleting
//! a record deletes its entries in the same transaction (rows rewritten) or right after
//! its commit (memory). Ingest costs one write transaction per batch, one B-tree insert
//! per record (stored as the data plane encoded it, index values borrowed from those
//! bytes: [`super::wire`]) and one small allocation for its values, plus a sort of the
//! block's entries and a few thousand row inserts once per block; visitor sketches stay
//! decoded in memory between batches (as committed) and are written back only when a
//! batch changed them. Why rows and not one key per entry: a redb insert costs about the
//! same wherever its key lands, and ~4 per record were most of the ingest cost
//! (`bench/README.md`).
//!
//! Layout changes: nothing is migrated. Files written before blocks hold their index
//! entries in `idx_*` `(value, time, seq)`; files of the release before rows in `ix_*`
//! `(block, value, time, seq)` as bytes ([`IndexKey`]), every record's entries there.
//! Both are read as more sources of a search and their entries deleted with their
//! records (retention empties them); nothing new is written there. Opening such a file
//! sets `indexed` past its last record.

use std::borrow::Cow;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use hyperloglog::HyperLogLog;
use prost::Message as _;
use redb::{
    Database, ReadOnlyTable, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};

use super::{
    Field, HLL_ERROR, Index, Indexed as _, LogKey, LogStore, Record, ShipPosition, Shipped,
    StreamState, hour_of,
};
use crate::store::StoreError;

mod open_block;
mod rows;

use open_block::OpenBlock;

const RECORDS: TableDefinition<(i64, u64), &[u8]> = TableDefinition::new("records");
const VISITORS: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("visitors");
const DROPPED: TableDefinition<i64, u64> = TableDefinition::new("dropped");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Per data-plane stream: (end_seq, dropped_total, hour last written).
const STREAMS: TableDefinition<&str, (u64, u64, i64)> = TableDefinition::new("streams");
/// Index rows of closed blocks, keyed (block, field, bucket): [`rows`].
const ROWS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("ix_rows");
const SEQ: &str = "seq";
/// `meta`: the first `seq` whose index entries are not in the `ix_*` tables but in memory
/// ([`OpenBlock`]); written when a block's entries are.
const INDEXED: &str = "indexed";
/// `meta`: a time at or before that of every record at or above [`INDEXED`] (times are
/// positive): where reopening starts reading records to rebuild their entries.
const UNINDEXED_SINCE: &str = "unindexed_since";

/// File name inside `--data-dir`.
pub(crate) const FILE_NAME: &str = "logs.redb";

/// Records per index block (2^15): every index entry's key starts with the block of its
/// record's `seq`, so one batch's entries land in its block's few hundred pages whatever
/// order their values come in (50,000 client addresses otherwise dirty about one page per
/// record), and a value's entries are read as one range per block, merged.
const BLOCK_BITS: u32 = 15;

/// An index entry: its block, its value's length and the value, its record's time (sign
/// bit flipped) and seq, all big-endian ([`entry_key`]): byte order is (block, value,
/// time, seq) order within a value, and redb compares two keys with one `memcmp` instead
/// of decoding tuples.
type IndexKey = &'static [u8];

/// The in-memory entries of the records above [`INDEXED`], one slot per [`Field::ALL`].
type Open = OpenBlock<{ Field::ALL.len() }>;

/// `f`'s position in [`Field::ALL`] (its slot in [`Open`]).
fn slot(f: Field) -> usize {
    match f {
        Field::Ip => 0,
        Field::Host => 1,
        Field::User => 2,
        Field::ClientId => 3,
        Field::Status => 4,
        Field::RequestId => 5,
    }
}

fn index_table(f: Field) -> TableDefinition<'static, IndexKey, ()> {
    match f {
        Field::Ip => TableDefinition::new("ix_ip"),
        Field::Host => TableDefinition::new("ix_host"),
        Field::User => TableDefinition::new("ix_user"),
        Field::ClientId => TableDefinition::new("ix_client"),
        Field::Status => TableDefinition::new("ix_status"),
        Field::RequestId => TableDefinition::new("ix_request"),
    }
}

/// The index layout before blocks, `(value, time, seq)`: entries of records stored before
/// the upgrade stay there and are read, and deleted with their records, as one more
/// block; nothing is added to it.
fn legacy_index_table(f: Field) -> TableDefinition<'static, (&'static str, i64, u64), ()> {
    match f {
        Field::Ip => TableDefinition::new("idx_ip"),
        Field::Host => TableDefinition::new("idx_host"),
        Field::User => TableDefinition::new("idx_user"),
        Field::ClientId => TableDefinition::new("idx_client"),
        Field::Status => TableDefinition::new("idx_status"),
        Field::RequestId => TableDefinition::new("idx_request"),
    }
}

/// Writes into `out` the index key of `value` for the record `(time, seq)` in `block`.
/// Values are capped far below 64 KiB (`sanitize`, filter lengths), so the length fits.
fn entry_key(out: &mut Vec<u8>, block: u64, value: &str, time: i64, seq: u64) {
    out.clear();
    out.extend_from_slice(&block.to_be_bytes());
    out.extend_from_slice(&(value.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(&((time as u64) ^ (1 << 63)).to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
}

/// The block of an index key.
fn key_block(k: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(k.get(..8)?.try_into().ok()?))
}

/// The record `(time, seq)` an index key points at.
fn key_record(k: &[u8]) -> Option<(i64, u64)> {
    let tail = k.len().checked_sub(16).and_then(|at| k.get(at..))?;
    let t = u64::from_be_bytes(tail[..8].try_into().ok()?) ^ (1 << 63);
    let s = u64::from_be_bytes(tail[8..].try_into().ok()?);
    Some((t as i64, s))
}

/// The keys of `value` (field `slot`) with `since <= time` and `key < before` in each
/// block's row, newest first: two look-ups per block present (at most ~30 at the default
/// one million records), one row read each.
fn row_keys(
    rows: &ReadOnlyTable<&'static [u8], &'static [u8]>,
    slot: usize,
    value: &str,
    since: i64,
    before: LogKey,
) -> Result<Vec<Vec<(i64, u64)>>, StoreError> {
    let bucket = rows::bucket(rows::hash(value));
    let mut out = Vec::new();
    let mut next = Some(0u64);
    while let Some(b) = next {
        let start = rows::row_key(b, 0, 0);
        let Some(first) = rows.range(start.as_slice()..).map_err(err)?.next() else {
            break;
        };
        let b = key_block(first.map_err(err)?.0.value())
            .ok_or_else(|| err("index row key without a block"))?;
        if let Some(row) = rows
            .get(rows::row_key(b, slot, bucket).as_slice())
            .map_err(err)?
        {
            let mut keys = rows::keys_of(row.value(), value)
                .ok_or_else(|| err(format!("torn index row in block {b}")))?;
            keys.retain(|&(t, s)| t >= since && (t, s) < (before.time, before.seq));
            keys.reverse();
            out.push(keys);
        }
        next = b.checked_add(1);
    }
    Ok(out)
}

/// Up to `max` keys of `value`'s entries with `since <= time` and `key < before`, newest
/// first: `known` (the in-memory entries' and the rows', already selected, each newest
/// first), one range per block present in `idx` (found by seeking past the previous one)
/// and the legacy table's, merged. Costs two seeks per block in `idx` (which nothing
/// is added to any more) on top of the entries read.
fn index_keys(
    idx: &ReadOnlyTable<IndexKey, ()>,
    legacy: &ReadOnlyTable<(&'static str, i64, u64), ()>,
    known: Vec<Vec<(i64, u64)>>,
    value: &str,
    since: i64,
    before: LogKey,
    max: usize,
) -> Result<Vec<(i64, u64)>, StoreError> {
    type Source<'t> = Box<dyn Iterator<Item = Result<(i64, u64), redb::StorageError>> + 't>;
    let mut sources: Vec<Source<'_>> = known
        .into_iter()
        .map(|keys| Box::new(keys.into_iter().map(Ok)) as Source<'_>)
        .collect();
    let (mut lo, mut hi) = (Vec::new(), Vec::new());
    let mut next = Some(0u64);
    while let Some(b) = next {
        let start = b.to_be_bytes();
        let Some(first) = idx.range(start.as_slice()..).map_err(err)?.next() else {
            break;
        };
        let b = key_block(first.map_err(err)?.0.value())
            .ok_or_else(|| err("index key without a block"))?;
        entry_key(&mut lo, b, value, since, 0);
        entry_key(&mut hi, b, value, before.time, before.seq);
        let range = idx.range(lo.as_slice()..hi.as_slice()).map_err(err)?;
        sources.push(Box::new(range.rev().map(|e| {
            e.and_then(|(k, _)| {
                key_record(k.value())
                    .ok_or_else(|| redb::StorageError::Corrupted("short index key".into()))
            })
        })));
        next = b.checked_add(1);
    }
    if !legacy.is_empty().map_err(err)? {
        let range = legacy
            .range((value, since, 0u64)..(value, before.time, before.seq))
            .map_err(err)?;
        sources.push(Box::new(range.rev().map(|e| {
            e.map(|(k, _)| {
                let (_, t, s) = k.value();
                (t, s)
            })
        })));
    }
    let mut heads = BinaryHeap::with_capacity(sources.len());
    for (i, source) in sources.iter_mut().enumerate() {
        if let Some(k) = source.next() {
            heads.push((k.map_err(err)?, i));
        }
    }
    let mut out = Vec::new();
    while out.len() < max
        && let Some((k, i)) = heads.pop()
    {
        out.push(k);
        if let Some(k) = sources[i].next() {
            heads.push((k.map_err(err)?, i));
        }
    }
    Ok(out)
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Embedded(format!("logs: {e}"))
}

/// A lock whose holder panicked still guards consistent data (every update is a whole
/// insert or removal).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `(seq, indexed, unindexed_since)` in `meta`: the last `seq` given out, the first one
/// whose index entries are in memory, and a time at or before their records'.
fn watermarks(meta: &impl ReadableTable<&'static str, u64>) -> Result<(u64, u64, i64), StoreError> {
    let get = |k: &str| -> Result<Option<u64>, StoreError> {
        Ok(meta.get(k).map_err(err)?.map(|v| v.value()))
    };
    let seq = get(SEQ)?.unwrap_or(0);
    let indexed = get(INDEXED)?.unwrap_or(seq + 1);
    let since = get(UNINDEXED_SINCE)?.map_or(i64::MAX, |t| i64::try_from(t).unwrap_or(i64::MAX));
    Ok((seq, indexed, since))
}

/// Writes the in-memory entries of the records numbered `seqs` into index rows
/// ([`rows`]): per block, field and bucket one row (appended to if it exists). Costs a
/// sort of the entries by integers only (block, field, value hash, time, seq) and at
/// most [`rows::BUCKETS`] inserts per field and block, in key order.
fn flush(
    open: &Mutex<Open>,
    table: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    seqs: Range<u64>,
    bits: u32,
) -> Result<(), StoreError> {
    let Some(last) = seqs.end.checked_sub(1) else {
        return Ok(());
    };
    let mut built: Vec<([u8; 11], Vec<u8>)> = Vec::new();
    {
        let open = lock(open);
        // (block, field and bucket, hash, key, value): sorted by integers only, equal
        // values end up together within their row, their keys ascending.
        let mut entries: Vec<_> = open
            .entries(seqs.start..=last)
            .map(|(slot, v, k)| {
                let h = rows::hash(v);
                let row = (slot as u32) << 16 | u32::from(rows::bucket(h));
                (k.1 >> bits, row, h, k, v)
            })
            .collect();
        entries.sort_unstable_by_key(|e| (e.0, e.1, e.2, e.3));
        let mut keys = Vec::new();
        for row in entries.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
            let (block, slot_bucket, ..) = row[0];
            let mut bytes = Vec::new();
            for group in row.chunk_by(|a, b| a.2 == b.2 && a.4 == b.4) {
                keys.clear();
                keys.extend(group.iter().map(|e| e.3));
                rows::append(&mut bytes, group[0].4, &keys);
            }
            let (slot, bucket) = ((slot_bucket >> 16) as usize, slot_bucket as u16);
            built.push((rows::row_key(block, slot, bucket), bytes));
        }
    }
    for (key, mut row) in built {
        if let Some(old) = table.get(key.as_slice()).map_err(err)? {
            let mut joined = old.value().to_vec();
            joined.append(&mut row);
            row = joined;
        }
        table.insert(key.as_slice(), row.as_slice()).map_err(err)?;
    }
    Ok(())
}

/// The in-memory entries of a file's records above [`INDEXED`], read from the records
/// themselves (at most a block and a batch of them, found from [`UNINDEXED_SINCE`]).
fn load_open(db: &Database) -> Result<Open, StoreError> {
    let txn = db.begin_read().map_err(err)?;
    let (seq, indexed, since) = watermarks(&txn.open_table(META).map_err(err)?)?;
    let records = txn.open_table(RECORDS).map_err(err)?;
    let mut keys = Vec::new();
    if indexed <= seq {
        for entry in records.range((since, 0u64)..).map_err(err)? {
            let (t, s) = entry.map_err(err)?.0.value();
            if (indexed..=seq).contains(&s) {
                keys.push((s, t));
            }
        }
    }
    // Entries go in per value in `seq` order.
    keys.sort_unstable();
    let mut open = Open::new();
    for (s, t) in keys {
        let Some(raw) = records.get((t, s)).map_err(err)? else {
            continue;
        };
        // Stored records were checked on the way in; one that no longer decodes has no
        // entries (retention deletes it as such).
        let Ok(r) = Record::decode(raw.value()) else {
            continue;
        };
        open.add((t, s), Field::ALL.map(|f| r.field(f)));
    }
    Ok(open)
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
    /// Held by every write from its write transaction's start until the in-memory state
    /// (sketches, the open block) matches what it committed, so the next write starts
    /// from that.
    writer: Arc<Mutex<Writer>>,
    /// The index entries of the records above [`INDEXED`]. A reader takes this lock
    /// before its snapshot and keeps the entries in that snapshot's `indexed..=seq`; a
    /// write adds its entries before its commit (and removes them if it fails) and removes
    /// flushed or deleted ones after it, so a reader never misses or doubles one.
    open: Arc<Mutex<Open>>,
    /// Index entries are blocked by `seq >> block_bits` ([`BLOCK_BITS`]).
    block_bits: u32,
}

/// What writes keep in memory between them.
#[derive(Default)]
struct Writer {
    /// The visitor sketches as last committed, by (host, hour): ingest merges into these
    /// instead of decoding the stored JSON on every batch. Only a committed write updates
    /// it; the retention's forgetting removes the same hours.
    sketches: HashMap<(String, i64), Sketch>,
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
        Self::open_with_blocks(data_dir, BLOCK_BITS)
    }

    /// [`Self::open`] with index blocks of 2^`block_bits` records (tests use small ones).
    /// Entries are found in any block, so files written with another size read correctly.
    pub fn open_with_blocks(data_dir: &Path, block_bits: u32) -> Result<Self, StoreError> {
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
        txn.open_table(ROWS).map_err(err)?;
        for f in Field::ALL {
            txn.open_table(index_table(f)).map_err(err)?;
            txn.open_table(legacy_index_table(f)).map_err(err)?;
        }
        {
            // A new file, or one written before entries were kept in memory: all its
            // records' entries are in the tables.
            let mut meta = txn.open_table(META).map_err(err)?;
            if meta.get(INDEXED).map_err(err)?.is_none() {
                let (seq, _, _) = watermarks(&meta)?;
                meta.insert(INDEXED, seq + 1).map_err(err)?;
            }
        }
        txn.commit().map_err(err)?;
        let open = load_open(&db)?;
        Ok(Self {
            db: Arc::new(db),
            writer: Arc::default(),
            open: Arc::new(Mutex::new(open)),
            block_bits: block_bits.min(63),
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
        let (writer, open) = (self.writer.clone(), self.open.clone());
        let bits = self.block_bits;
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(err)?;
            let mut writer = lock(&writer);
            let mut skip = 0;
            let mut dropped = dropped;
            let mut written: Vec<((String, i64), Sketch)> = Vec::new();
            let first;
            let mut flushed = None;
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
                let (mut seq, indexed, mut since) = watermarks(&meta)?;
                first = seq;
                // The blocks before the one the next record opens are closed: their
                // entries go to the tables, in this transaction.
                let open_start = ((seq + 1) >> bits) << bits;
                if indexed < open_start {
                    let mut rows = txn.open_table(ROWS).map_err(err)?;
                    flush(&open, &mut rows, indexed..open_start, bits)?;
                    since = lock(&open).min_time(open_start..=seq).unwrap_or(i64::MAX);
                    meta.insert(INDEXED, open_start).map_err(err)?;
                    flushed = Some(open_start);
                }
                // Client addresses per host-hour, borrowed from the records.
                let mut visits: HashMap<(&str, i64), Vec<&str>> = HashMap::new();
                for r in &records[skip..] {
                    let Some(r) = r else {
                        dropped += 1;
                        continue;
                    };
                    seq += 1;
                    table.insert((r.time(), seq), r.bytes()).map_err(err)?;
                    since = since.min(r.time());
                    let (host, ip) = (r.host(), r.client_ip());
                    if !host.is_empty() && !ip.is_empty() {
                        visits
                            .entry((host, hour_of(r.time())))
                            .or_default()
                            .push(ip);
                    }
                }
                meta.insert(SEQ, seq).map_err(err)?;
                meta.insert(UNINDEXED_SINCE, since.max(0) as u64)
                    .map_err(err)?;
                let mut visitors = txn.open_table(VISITORS).map_err(err)?;
                for ((host, hour), ips) in visits {
                    let key = (host.to_owned(), hour);
                    let mut sketch = match writer.sketches.get(&key) {
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
            // The batch's index entries join the open block before the commit (a reader
            // keeps those its snapshot's `seq` covers), and leave it if the commit fails.
            {
                let mut open = lock(&open);
                for (seq, r) in (first + 1..).zip(records[skip..].iter().flatten()) {
                    open.add((r.time(), seq), Field::ALL.map(|f| r.field(f)));
                }
            }
            if let Err(e) = txn.commit() {
                lock(&open).forget_from(first + 1);
                return Err(err(e));
            }
            if let Some(end) = flushed {
                lock(&open).forget_before(end);
            }
            // Only what is committed is remembered.
            if writer.sketches.len() + written.len() > SKETCH_CACHE {
                writer.sketches.clear();
            }
            writer.sketches.extend(written);
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
        let open = self.open.clone();
        self.blocking(move |db| {
            // The snapshot and the in-memory entries agree while the lock is held.
            let (txn, open_keys) = {
                let open = lock(&open);
                let txn = db.begin_read().map_err(err)?;
                let keys = match &index {
                    Index::Time => Vec::new(),
                    Index::Field(f, value) => {
                        let (seq, indexed, _) = watermarks(&txn.open_table(META).map_err(err)?)?;
                        open.select(slot(*f), value, indexed..=seq, since, before, max)
                    }
                };
                (txn, keys)
            };
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
                    let legacy = txn.open_table(legacy_index_table(f)).map_err(err)?;
                    let rows = txn.open_table(ROWS).map_err(err)?;
                    let mut known = row_keys(&rows, slot(f), &value, since, before)?;
                    known.push(open_keys);
                    let keys = index_keys(&idx, &legacy, known, &value, since, before, max)?;
                    for (t, s) in keys {
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
        let bits = self.block_bits;
        let (writer, open) = (self.writer.clone(), self.open.clone());
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(err)?;
            let _writer = lock(&writer);
            let deleted;
            // Victims whose entries are in memory.
            let mut unindexed = HashSet::new();
            {
                let (_, indexed, _) = watermarks(&txn.open_table(META).map_err(err)?)?;
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
                    .map(|f| {
                        Ok((
                            txn.open_table(index_table(*f))?,
                            txn.open_table(legacy_index_table(*f))?,
                        ))
                    })
                    .collect::<Result<_, redb::TableError>>()
                    .map_err(err)?;
                // Entries below `indexed`, by the row that holds them if this version
                // wrote their block: one rewrite per row.
                let mut by_row: BTreeMap<[u8; 11], Vec<(usize, Cow<'_, str>, (i64, u64))>> =
                    BTreeMap::new();
                for (key, record) in &victims {
                    if key.1 >= indexed {
                        unindexed.insert(key.1);
                    } else if let Some(r) = record {
                        for (i, f) in Field::ALL.iter().enumerate() {
                            if let Some(v) = f.value(r) {
                                let bucket = rows::bucket(rows::hash(&v));
                                let row = rows::row_key(key.1 >> bits, i, bucket);
                                by_row.entry(row).or_default().push((i, v, *key));
                            }
                        }
                    }
                    table.remove(*key).map_err(err)?;
                }
                let mut rows_table = txn.open_table(ROWS).map_err(err)?;
                let mut entry = Vec::with_capacity(128);
                for (row_key, entries) in by_row {
                    let gone: HashSet<(&str, (i64, u64))> =
                        entries.iter().map(|(_, v, k)| (v.as_ref(), *k)).collect();
                    let mut removed = 0;
                    let left = match rows_table.get(row_key.as_slice()).map_err(err)? {
                        Some(row) => Some(
                            rows::without(row.value(), &gone)
                                .ok_or_else(|| err("torn index row"))?,
                        ),
                        None => None,
                    };
                    if let Some((left, n)) = left {
                        removed = n;
                        if left.is_empty() {
                            rows_table.remove(row_key.as_slice()).map_err(err)?;
                        } else {
                            rows_table
                                .insert(row_key.as_slice(), left.as_slice())
                                .map_err(err)?;
                        }
                    }
                    if removed == gone.len() {
                        continue;
                    }
                    // Written by a version before rows: the entries are in `ix_*` or
                    // `idx_*` (removing one that is not there changes nothing).
                    for (i, v, key) in &entries {
                        let (t, legacy) = &mut idx[*i];
                        entry_key(&mut entry, key.1 >> bits, v, key.0, key.1);
                        if t.remove(entry.as_slice()).map_err(err)?.is_none() {
                            legacy.remove((v.as_ref(), key.0, key.1)).map_err(err)?;
                        }
                    }
                }
                deleted = victims.len() as u64;
            }
            txn.commit().map_err(err)?;
            if !unindexed.is_empty() {
                lock(&open).forget_seqs(&unindexed);
            }
            Ok(deleted)
        })
        .await
    }

    async fn forget_hours_before(&self, hour: i64) -> Result<(), StoreError> {
        let writer = self.writer.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(err)?;
            {
                let mut d = txn.open_table(DROPPED).map_err(err)?;
                d.retain_in(..hour, |_, _| false).map_err(err)?;
                let mut v = txn.open_table(VISITORS).map_err(err)?;
                v.retain(|(_, h), _| h >= hour).map_err(err)?;
                lock(&writer).sketches.retain(|(_, h), _| *h >= hour);
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
        let open = self.open.clone();
        self.blocking(move |db| {
            let (txn, mut n) = {
                let open = lock(&open);
                let txn = db.begin_read().map_err(err)?;
                let (seq, indexed, _) = watermarks(&txn.open_table(META).map_err(err)?)?;
                (txn, open.count(indexed..=seq))
            };
            for f in Field::ALL {
                n += txn
                    .open_table(index_table(f))
                    .map_err(err)?
                    .len()
                    .map_err(err)?;
                n += txn
                    .open_table(legacy_index_table(f))
                    .map_err(err)?
                    .len()
                    .map_err(err)?;
            }
            for row in txn.open_table(ROWS).map_err(err)?.iter().map_err(err)? {
                let row = row.map_err(err)?.1;
                n += rows::count(row.value()).ok_or_else(|| err("torn index row"))?;
            }
            Ok(n)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use portcullis_proto::v1 as pb;

    use super::*;
    use crate::logs::{AccessLogs, Filter, LogSettings, now_nanos};

    fn rec(i: i64, now: i64) -> Record {
        Record {
            time_unix_nanos: now - 1000 + i,
            client_ip: "10.0.0.1".into(),
            host: "a.test".into(),
            status: 200,
            request_id: format!("r{i}"),
            ..Default::default()
        }
    }

    async fn ids(logs: &AccessLogs, q: pb::AccessLogQuery, limit: usize) -> Vec<String> {
        let f = Filter::parse(&q, now_nanos(), true).unwrap();
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = logs.search_filter(&f, cursor, limit).await.unwrap();
            out.extend(page.records.into_iter().map(|r| r.request_id));
            if page.next_cursor.is_empty() {
                return out;
            }
            cursor = Some(LogKey::from_cursor(&page.next_cursor).unwrap());
        }
    }

    /// A file whose index entries were written by an earlier release (`idx_*` before
    /// blocks, `ix_*` one entry per key after) opens; its records are found through every
    /// index together with new ones (in rows and in memory), newest first and paged, and
    /// retention deletes them with their entries wherever those are.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_indexed_by_an_earlier_release_is_searched_and_pruned() {
        for per_key in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let now = now_nanos();
            {
                let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
                let txn = db.begin_write().unwrap();
                {
                    let mut records = txn.open_table(RECORDS).unwrap();
                    let mut idx: Vec<_> = Field::ALL
                        .iter()
                        .map(|f| txn.open_table(legacy_index_table(*f)).unwrap())
                        .collect();
                    let mut ix: Vec<_> = Field::ALL
                        .iter()
                        .map(|f| txn.open_table(index_table(*f)).unwrap())
                        .collect();
                    let mut entry = Vec::new();
                    for i in 0..3 {
                        let r = rec(i, now);
                        let (t, seq) = (r.time_unix_nanos, i as u64 + 1);
                        let raw = r.encode_to_vec();
                        records.insert((t, seq), raw.as_slice()).unwrap();
                        for (j, f) in Field::ALL.iter().enumerate() {
                            if let Some(v) = f.value(&r) {
                                if per_key {
                                    entry_key(&mut entry, seq >> 1, &v, t, seq);
                                    ix[j].insert(entry.as_slice(), ()).unwrap();
                                } else {
                                    idx[j].insert((v.as_ref(), t, seq), ()).unwrap();
                                }
                            }
                        }
                    }
                    txn.open_table(META).unwrap().insert(SEQ, 3).unwrap();
                }
                txn.commit().unwrap();
            }
            // Blocks of two records, one record per batch: seqs 4 and 5 end in a row,
            // 6 stays in memory.
            let store = EmbeddedLogStore::open_with_blocks(dir.path(), 1).unwrap();
            let logs = AccessLogs::new(Arc::new(store.clone()), LogSettings::default());
            for i in 3..6 {
                let batch = pb::AccessLogBatch {
                    records: vec![rec(i, now)],
                    ..Default::default()
                };
                assert_eq!(logs.ingest("dp1", batch).await.unwrap(), 1);
            }
            // Client address, host, status and request id per record.
            assert_eq!(store.index_entries().await.unwrap(), 6 * 4);
            let all: Vec<String> = (0..6).rev().map(|i| format!("r{i}")).collect();
            let queries = [
                pb::AccessLogQuery {
                    client_ip: "10.0.0.1".into(),
                    ..Default::default()
                },
                pb::AccessLogQuery {
                    host: "a.test".into(),
                    ..Default::default()
                },
                pb::AccessLogQuery {
                    status: "200".into(),
                    ..Default::default()
                },
            ];
            for q in queries {
                assert_eq!(ids(&logs, q.clone(), 100).await, all, "{q:?}");
                assert_eq!(ids(&logs, q.clone(), 2).await, all, "{q:?} in pages of 2");
            }
            for i in [1, 4, 5] {
                let q = pb::AccessLogQuery {
                    request_id: format!("r{i}"),
                    ..Default::default()
                };
                assert_eq!(ids(&logs, q, 10).await, [format!("r{i}")]);
            }
            let ip = pb::AccessLogQuery {
                client_ip: "10.0.0.1".into(),
                ..Default::default()
            };
            // Retention: the three oldest go, with their entries in the old tables, then
            // one whose entries are in a row, then the rest.
            assert_eq!(store.delete_oldest(0, 3, 100).await.unwrap(), 3);
            assert_eq!(store.index_entries().await.unwrap(), 3 * 4);
            assert_eq!(ids(&logs, ip.clone(), 100).await, ["r5", "r4", "r3"]);
            assert_eq!(store.delete_oldest(0, 2, 100).await.unwrap(), 1);
            assert_eq!(store.index_entries().await.unwrap(), 2 * 4);
            assert_eq!(ids(&logs, ip.clone(), 100).await, ["r5", "r4"]);
            assert_eq!(store.delete_oldest(0, 0, 100).await.unwrap(), 2);
            assert_eq!(store.index_entries().await.unwrap(), 0);
            assert!(ids(&logs, ip, 100).await.is_empty());
            let txn = store.db.begin_read().unwrap();
            assert!(txn.open_table(ROWS).unwrap().is_empty().unwrap());
            for f in Field::ALL {
                let legacy = txn.open_table(legacy_index_table(f)).unwrap();
                assert!(legacy.is_empty().unwrap(), "{f:?}");
                assert!(txn.open_table(index_table(f)).unwrap().is_empty().unwrap());
            }
        }
    }
}
