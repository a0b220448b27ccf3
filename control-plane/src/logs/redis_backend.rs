//! The Redis request-log store, on the config store's Redis with its own connection.
//!
//! Keys (all under the `{portcullis}` hash tag, so a MULTI block never spans cluster
//! slots): `{portcullis}:logs:rec` hash `id -> prost bytes`; `{portcullis}:logs:t` sorted
//! set of ids scored by time in microseconds; `{portcullis}:logs:x:<field>` one sorted set
//! per indexed field, every score 0, members `<value length, 4 hex><value><id>` in
//! lexical order (a search walks one value's range newest first with `ZREVRANGEBYLEX`);
//! for host, status, user and client id ([`grouped`]) a member ending in `+` names a
//! posting row instead ([`super::postings`]): the keys of one batch's records with that
//! value in one 100 ms bucket, packed in `{portcullis}:logs:p:<field>` under the member,
//! the member's id being the row's first key;
//! `{portcullis}:logs:uv:<host>:<hour>`
//! HyperLogLog of client IPs (PFADD/PFCOUNT), expiring after the retention; `…:dropped`
//! hash `hour -> count`; `…:seq` counter. An id is `<time nanos, 19 digits>:<seq, 16 hex>`
//! so lexical order within one score is time order. A record and its index entries are
//! written and deleted in one MULTI/EXEC block.
//!
//! Cost of a stored batch: a fixed number of commands, whatever its size — one `HSET` of
//! every record, one `ZADD` of every time entry, one `ZADD` per indexed field, one `HSET`
//! of posting rows per grouped field, a `PFADD` and `EXPIRE` per host and hour, the feed's
//! `PUBLISH`. Sorted-set members per record: time, client address, request id (values that
//! seldom repeat within a batch), plus a few dozen rows per batch for hosts and statuses
//! (one member per record each before: the sorted sets' inserts were redis-server's main
//! cost, bench/README.md). Deleting records looks up the grouped rows of their
//! (value, bucket)s and rewrites them with a script ([`TRIM_ROW`]), so two control planes
//! pruning at once cannot put back keys the other removed.
//!
//! Layout changes: members written before posting rows are single-record members, which
//! this layout reads and deletes as its own. Index keys of the layout before one sorted set
//! per field (`{portcullis}:logs:i:*`) are deleted on connect.
//!
//! Follow across control planes: the block that stores a batch also `PUBLISH`es it on
//! `{portcullis}:logs:feed` (as `AccessLogBatch` bytes, at most [`FEED_MESSAGE_BYTES`] per
//! message), so a follower is never told of a record search cannot find yet. Every
//! control plane on the Redis subscribes once ([`subscribe_feed`]) and hands what arrives,
//! its own batches included, to its local followers. Cost: one more command in the
//! existing block and the records' bytes sent once more per subscribed control plane;
//! a control plane with no follower skips decoding. Pub/sub is fire-and-forget: what is
//! published while a subscriber is reconnecting does not reach its followers (search has
//! it). Redis bounds a slow subscriber itself (`client-output-buffer-limit pubsub`,
//! 32 MB by default; then it disconnects it and we reconnect); messages stay far below.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt as _};
use portcullis_proto::v1 as pb;
use prost::Message as _;
use redis::aio::ConnectionManager;
use tokio::sync::broadcast;

use super::postings::{self, BUCKET_NANOS, bucket};
use super::{Field, Index, LogKey, LogStore, Record, ShipPosition, Shipped, StreamState, hour_of};
use crate::store::StoreError;

const REC: &str = "{portcullis}:logs:rec";
const TIME: &str = "{portcullis}:logs:t";
const DROPPED: &str = "{portcullis}:logs:dropped";
const SEQ: &str = "{portcullis}:logs:seq";
/// The pub/sub channel every stored batch is published on.
const FEED: &str = "{portcullis}:logs:feed";
/// Per data-plane stream: a hash with `end` and `dropped` (see [`StreamState`]).
const STREAM_PREFIX: &str = "{portcullis}:logs:stream:";
/// Largest feed message built (a single record is far smaller: [`super::sanitize`] caps
/// every field).
pub(super) const FEED_MESSAGE_BYTES: usize = 256 * 1024;
/// Feed messages larger than this are not ours and are ignored.
const FEED_MESSAGE_MAX: usize = 4 * FEED_MESSAGE_BYTES;
/// Index keys of the layout before one sorted set per field (a sorted set per value).
/// Nothing reads or deletes them any more, so [`RedisLogStore::connect`] removes them.
const OLD_INDEX_PATTERN: &str = "{portcullis}:logs:i:*";

/// `AccessLogBatch` messages for the feed, built from records already encoded for the
/// store (field 1, length-delimited, as prost writes a repeated message field).
#[derive(Default)]
struct FeedMessages {
    done: Vec<Vec<u8>>,
    current: Vec<u8>,
}

impl FeedMessages {
    fn push(&mut self, record: &[u8]) {
        if !self.current.is_empty() && self.current.len() + record.len() + 16 > FEED_MESSAGE_BYTES {
            self.done.push(std::mem::take(&mut self.current));
        }
        prost::encoding::encode_key(
            1,
            prost::encoding::WireType::LengthDelimited,
            &mut self.current,
        );
        prost::encoding::encode_varint(record.len() as u64, &mut self.current);
        self.current.extend_from_slice(record);
    }

    fn finish(mut self) -> Vec<Vec<u8>> {
        if !self.current.is_empty() {
            self.done.push(self.current);
        }
        self.done
    }
}

/// Subscribes to the feed (within 5 s) and hands every record published by any control
/// plane on this Redis to `tx`, reconnecting (1 s, doubling to 30 s) when the subscription
/// is lost, until the `AccessLogs` owning `tx` is gone. Fails if the first subscription
/// does, so a serving control plane's followers see everything stored after it started.
pub(super) async fn subscribe_feed(
    url: &str,
    tx: broadcast::WeakSender<Arc<Record>>,
) -> Result<(), StoreError> {
    let client = redis::Client::open(url)?;
    let first = feed_stream(&client).await?;
    tokio::spawn(async move {
        let mut messages = Some(first);
        let mut backoff = Duration::from_secs(1);
        loop {
            if let Some(mut stream) = messages.take() {
                backoff = Duration::from_secs(1);
                while let Some(msg) = stream.next().await {
                    let Some(tx) = tx.upgrade() else { return };
                    forward(&tx, msg.get_payload_bytes());
                }
                tracing::warn!("request-log feed from Redis lost; reconnecting");
            }
            tokio::time::sleep(backoff).await;
            if tx.upgrade().is_none() {
                return;
            }
            match feed_stream(&client).await {
                Ok(stream) => {
                    tracing::info!("request-log feed from Redis restored");
                    messages = Some(stream);
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot subscribe to the request-log feed; retrying");
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    });
    Ok(())
}

async fn feed_stream(
    client: &redis::Client,
) -> Result<impl Stream<Item = redis::Msg> + Send + use<>, StoreError> {
    let subscribe = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(FEED).await?;
        Ok::<_, redis::RedisError>(pubsub.into_on_message())
    };
    match tokio::time::timeout(Duration::from_secs(5), subscribe).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(StoreError::from(redis::RedisError::from((
            redis::ErrorKind::Io,
            "subscribing to the request-log feed timed out",
        )))),
    }
}

/// Decodes one feed message into `tx`, unless nobody here follows.
fn forward(tx: &broadcast::Sender<Arc<Record>>, payload: &[u8]) {
    if tx.receiver_count() == 0 {
        return;
    }
    if payload.len() > FEED_MESSAGE_MAX {
        tracing::warn!(
            bytes = payload.len(),
            "oversized message on the request-log feed ignored"
        );
        return;
    }
    match pb::AccessLogBatch::decode(payload) {
        Ok(batch) => {
            for r in batch.records {
                let _ = tx.send(Arc::new(r));
            }
        }
        Err(error) => tracing::warn!(%error, "undecodable message on the request-log feed ignored"),
    }
}

/// The sorted set holding `f`'s index entries.
fn index_key(f: Field) -> String {
    format!("{{portcullis}}:logs:x:{}", f.name())
}

/// The hash holding `f`'s posting rows: index member -> packed keys.
fn postings_key(f: Field) -> String {
    format!("{{portcullis}}:logs:p:{}", f.name())
}

/// What ends an index member that names a posting row.
const ROW: char = '+';

/// Fields whose values repeat within a batch: their records are indexed in posting rows.
/// Client addresses and request ids keep one member per record (a row would cost a member
/// and a hash field for one record, and deleting it a look-up).
fn grouped(f: Field) -> bool {
    matches!(
        f,
        Field::Host | Field::Status | Field::User | Field::ClientId
    )
}

/// Removes the keys in ARGV[2] (packed) from the posting row ARGV[1] of the hash KEYS[2],
/// and the row and its index member (in KEYS[1]) when none is left. Atomic, so concurrent
/// pruners never write back a key another removed.
const TRIM_ROW: &str = r"
local row = redis.call('HGET', KEYS[2], ARGV[1])
if not row then return 0 end
local gone = {}
for i = 1, #ARGV[2], 16 do gone[string.sub(ARGV[2], i, i + 15)] = true end
local keep = {}
for i = 1, #row, 16 do
  local k = string.sub(row, i, i + 15)
  if not gone[k] then keep[#keep + 1] = k end
end
if #keep == 0 then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[1], ARGV[1])
elseif #keep * 16 < #row then
  redis.call('HSET', KEYS[2], ARGV[1], table.concat(keep))
end
return 1
";

/// The lexical range (`ZRANGEBYLEX` bounds) of `value`'s members whose first key lies in
/// `bucket`.
fn bucket_range(prefix: &str, b: i64) -> (String, String) {
    let start = |b: i64| {
        member(LogKey {
            time: b.saturating_mul(BUCKET_NANOS).max(0),
            seq: 0,
        })
    };
    (
        format!("[{prefix}{}", start(b)),
        format!("({prefix}{}", start(b.saturating_add(1))),
    )
}

/// What every index entry of `value` starts with: its length, so no other value's entries
/// share the prefix (values are capped far below 0xffff bytes by `sanitize`).
fn entry_prefix(value: &str) -> String {
    format!("{:04x}{value}", value.len())
}

/// The index entry of `value` for the record `id`.
fn entry(value: &str, id: &str) -> String {
    let mut e = entry_prefix(value);
    e.push_str(id);
    e
}

fn visitors_key(host: &str, hour: i64) -> String {
    format!("{{portcullis}}:logs:uv:{host}:{hour}")
}

fn member(k: LogKey) -> String {
    format!("{:019}:{:016x}", k.time, k.seq)
}

fn parse_member(m: &str) -> Option<LogKey> {
    let (t, s) = m.split_once(':')?;
    Some(LogKey {
        time: t.parse().ok()?,
        seq: u64::from_str_radix(s, 16).ok()?,
    })
}

fn score(time: i64) -> i64 {
    time.div_euclid(1000)
}

fn corrupt(id: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        collection: "logs",
        key: id.to_owned(),
        reason: e.to_string(),
    }
}

/// A multiplexed, auto-reconnecting connection used for request logs only.
/// Deletes the index keys of the previous layout (records stored before the upgrade stay
/// searchable by time; retention no longer reaches these keys, so they would stay for
/// ever). Runs once per start in the background, `SCAN`/`UNLINK` in pages so Redis is
/// never blocked; a control plane sharing the Redis may do the same at the same time.
async fn remove_old_index_keys(mut conn: ConnectionManager) {
    let mut cursor: u64 = 0;
    let mut removed: u64 = 0;
    loop {
        let page: Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(OLD_INDEX_PATTERN)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await;
        let (next, keys) = match page {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(%error, "cannot scan for old request-log index keys; left in place");
                return;
            }
        };
        if !keys.is_empty() {
            match redis::cmd("UNLINK")
                .arg(&keys)
                .query_async::<u64>(&mut conn)
                .await
            {
                Ok(n) => removed += n,
                Err(error) => {
                    tracing::warn!(%error, "cannot delete old request-log index keys; left in place");
                    return;
                }
            }
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    if removed > 0 {
        tracing::info!(
            removed,
            "deleted the request-log index keys of the previous layout"
        );
    }
}

#[derive(Clone)]
pub struct RedisLogStore {
    conn: ConnectionManager,
    visitors_ttl: Duration,
}

impl RedisLogStore {
    /// Connects and checks the server answers. Visitor sketches expire one hour after the
    /// retention.
    pub async fn connect(url: &str, retention: Duration) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(2);
        let mut conn = client.get_connection_manager_with_config(config).await?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        tokio::spawn(remove_old_index_keys(conn.clone()));
        Ok(Self {
            conn,
            visitors_ttl: retention.saturating_add(Duration::from_secs(3600)),
        })
    }

    async fn fetch(&self, ids: &[String]) -> Result<Vec<(LogKey, Record)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let raws: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
            .arg(REC)
            .arg(ids)
            .query_async(&mut conn)
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, raw) in ids.iter().zip(raws) {
            // Deleted between the index read and this one: skipped.
            let Some(raw) = raw else { continue };
            let key = parse_member(id).ok_or_else(|| corrupt(id, "bad id"))?;
            out.push((
                key,
                Record::decode(raw.as_slice()).map_err(|e| corrupt(id, e))?,
            ));
        }
        Ok(out)
    }
}

#[tonic::async_trait]
impl LogStore for RedisLogStore {
    fn backend_name(&self) -> &'static str {
        "redis"
    }

    async fn append(
        &self,
        records: Arc<[Option<Shipped>]>,
        dropped: u64,
        position: Option<&ShipPosition>,
    ) -> Result<usize, StoreError> {
        let mut conn = self.conn.clone();
        let mut p = redis::pipe();
        p.atomic();
        let mut dropped = dropped;
        let mut skip = 0;
        if let Some(pos) = position {
            // Read, then written in the MULTI below with the records: a data plane ships
            // one batch at a time, so only a retry racing a slow first attempt (after
            // SHIP_TIMEOUT) could read a stale state; a batch is otherwise stored once.
            let key = format!("{STREAM_PREFIX}{}", pos.stream);
            let (end_seq, dropped_total): (Option<u64>, Option<u64>) = redis::cmd("HMGET")
                .arg(&key)
                .arg("end")
                .arg("dropped")
                .query_async(&mut conn)
                .await?;
            let state = StreamState {
                end_seq: end_seq.unwrap_or(0),
                dropped_total: dropped_total.unwrap_or(0),
            };
            let (s, new_drops, next) = state.advance(pos, records.len() as u64);
            skip = s as usize;
            dropped += new_drops;
            p.cmd("HSET")
                .arg(&key)
                .arg("end")
                .arg(next.end_seq)
                .arg("dropped")
                .arg(next.dropped_total)
                .ignore();
            p.cmd("EXPIRE")
                .arg(&key)
                .arg(self.visitors_ttl.as_secs().max(1))
                .ignore();
        }
        let refused = records[skip..].iter().filter(|r| r.is_none()).count() as u64;
        dropped += refused;
        let records: Vec<&Shipped> = records[skip..].iter().flatten().collect();
        if !records.is_empty() {
            let n = records.len() as u64;
            let last: u64 = redis::cmd("INCRBY")
                .arg(SEQ)
                .arg(n)
                .query_async(&mut conn)
                .await?;
            // One command per key, not per record: all records in one HSET, all time
            // entries in one ZADD, each index value's entries in one ZADD.
            let mut rec = redis::cmd("HSET");
            rec.arg(REC);
            let mut time = redis::cmd("ZADD");
            time.arg(TIME);
            let mut indexes: Vec<redis::Cmd> = Field::ALL
                .iter()
                .map(|f| {
                    let mut zadd = redis::cmd("ZADD");
                    zadd.arg(index_key(*f));
                    zadd
                })
                .collect();
            let mut indexed = [false; Field::ALL.len()];
            let mut visitors: HashMap<(&str, i64), Vec<&str>> = HashMap::new();
            let mut feed = FeedMessages::default();
            let mut keyed = Vec::with_capacity(records.len());
            for (seq, r) in (last.saturating_sub(n) + 1..).zip(records) {
                let key = LogKey {
                    time: r.time(),
                    seq,
                };
                keyed.push((key, r));
                let id = member(key);
                let s = score(r.time());
                feed.push(r.bytes());
                rec.arg(&id).arg(r.bytes());
                time.arg(s).arg(&id);
                for (i, f) in Field::ALL.iter().enumerate() {
                    if grouped(*f) {
                        continue;
                    }
                    if let Some(v) = f.value(r) {
                        indexes[i].arg(0).arg(entry(&v, &id));
                        indexed[i] = true;
                    }
                }
                let (host, ip) = (r.host(), r.client_ip());
                if !host.is_empty() && !ip.is_empty() {
                    visitors
                        .entry((host, hour_of(r.time())))
                        .or_default()
                        .push(ip);
                }
            }
            // Grouped fields: a lone record keeps its own member; several in one bucket
            // share a posting row.
            let rows = postings::group(keyed.into_iter(), grouped);
            let mut packed = Vec::new();
            for (i, (f, rows)) in Field::ALL.iter().zip(rows).enumerate() {
                let mut hset = redis::cmd("HSET");
                hset.arg(postings_key(*f));
                let mut any_row = false;
                for ((value, _), mut keys) in rows {
                    keys.sort_unstable();
                    let Some(first) = keys.first() else { continue };
                    let mut name = entry(&value, &member(*first));
                    if keys.len() > 1 {
                        name.push(ROW);
                        packed.clear();
                        postings::pack(&keys, &mut packed);
                        hset.arg(&name).arg(packed.as_slice());
                        any_row = true;
                    }
                    indexes[i].arg(0).arg(name);
                    indexed[i] = true;
                }
                if any_row {
                    p.add_command(hset).ignore();
                }
            }
            p.add_command(rec).ignore();
            p.add_command(time).ignore();
            for (zadd, used) in indexes.into_iter().zip(indexed) {
                if used {
                    p.add_command(zadd).ignore();
                }
            }
            for ((host, hour), ips) in visitors {
                let key = visitors_key(host, hour);
                p.cmd("PFADD").arg(&key).arg(ips).ignore();
                p.cmd("EXPIRE")
                    .arg(&key)
                    .arg(self.visitors_ttl.as_secs().max(1))
                    .ignore();
            }
            for message in feed.finish() {
                p.cmd("PUBLISH").arg(FEED).arg(message).ignore();
            }
        }
        if dropped > 0 {
            p.cmd("HINCRBY")
                .arg(DROPPED)
                .arg(hour_of(super::now_nanos()))
                .arg(dropped)
                .ignore();
        }
        let () = p.query_async(&mut conn).await?;
        Ok(skip)
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
        let before_id = member(before);
        let chunk = max.clamp(16, 1000);
        let mut conn = self.conn.clone();
        let mut offset = 0usize;
        let mut out = Vec::new();
        let key = match index {
            Index::Time => TIME,
            Index::Field(f, v) => {
                // One value's members between `since`'s bucket and `before`, newest first;
                // a row's keys are read from the postings hash and merged bucket by bucket.
                let key = index_key(*f);
                let rows_key = postings_key(*f);
                let prefix = entry_prefix(v);
                let hi = format!("({prefix}{before_id}");
                let (lo, _) = bucket_range(&prefix, bucket(since));
                let mut walk = postings::NewestFirst::new(since, before, max);
                'pages: loop {
                    let entries: Vec<String> = redis::cmd("ZREVRANGEBYLEX")
                        .arg(&key)
                        .arg(&hi)
                        .arg(&lo)
                        .arg("LIMIT")
                        .arg(offset)
                        .arg(chunk)
                        .query_async(&mut conn)
                        .await?;
                    offset += entries.len();
                    let rows: Vec<&str> = entries
                        .iter()
                        .filter(|e| e.ends_with(ROW))
                        .map(String::as_str)
                        .collect();
                    let mut contents = if rows.is_empty() {
                        Vec::new()
                    } else {
                        redis::cmd("HMGET")
                            .arg(&rows_key)
                            .arg(&rows)
                            .query_async::<Vec<Option<Vec<u8>>>>(&mut conn)
                            .await?
                    }
                    .into_iter();
                    for e in &entries {
                        let rest = e.get(prefix.len()..).unwrap_or_default();
                        let go_on = if let Some(name) = rest.strip_suffix(ROW) {
                            let first = parse_member(name).ok_or_else(|| corrupt(e, "bad row"))?;
                            // Deleted between the two reads: nothing left of it.
                            let Some(raw) = contents.next().flatten() else {
                                continue;
                            };
                            let keys = postings::unpack(&raw)
                                .ok_or_else(|| corrupt(e, "torn posting row"))?;
                            walk.push(bucket(first.time), keys)
                        } else {
                            let k = parse_member(rest).ok_or_else(|| corrupt(e, "bad id"))?;
                            walk.push(bucket(k.time), std::iter::once(k))
                        };
                        if !go_on {
                            break 'pages;
                        }
                    }
                    if entries.len() < chunk {
                        break;
                    }
                }
                let ids: Vec<String> = walk.finish().into_iter().map(member).collect();
                return self.fetch(&ids).await;
            }
        };
        loop {
            // Members at the top score may be at or after `before`: skipped, but they
            // count towards the offset.
            let ids: Vec<String> = redis::cmd("ZREVRANGEBYSCORE")
                .arg(key)
                .arg(score(before.time))
                .arg(score(since))
                .arg("LIMIT")
                .arg(offset)
                .arg(chunk)
                .query_async(&mut conn)
                .await?;
            offset += ids.len();
            let wanted: Vec<String> = ids
                .iter()
                .filter(|id| {
                    id.as_str() < before_id.as_str()
                        && parse_member(id).is_some_and(|k| k.time >= since)
                })
                .cloned()
                .collect();
            out.extend(self.fetch(&wanted).await?);
            if out.len() >= max || ids.len() < chunk {
                // The caller continues below the last key returned: nothing is skipped.
                out.truncate(max);
                return Ok(out);
            }
        }
    }

    async fn unique_visitors(
        &self,
        host: &str,
        from_hour: i64,
        to_hour: i64,
    ) -> Result<u64, StoreError> {
        if from_hour > to_hour {
            return Ok(0);
        }
        let keys: Vec<String> = (from_hour..=to_hour)
            .map(|h| visitors_key(host, h))
            .collect();
        let mut conn = self.conn.clone();
        Ok(redis::cmd("PFCOUNT")
            .arg(keys)
            .query_async(&mut conn)
            .await?)
    }

    async fn dropped(&self, from_hour: i64, to_hour: i64) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let all: HashMap<i64, u64> = redis::cmd("HGETALL")
            .arg(DROPPED)
            .query_async(&mut conn)
            .await?;
        Ok(all
            .into_iter()
            .filter(|(h, _)| (from_hour..=to_hour).contains(h))
            .map(|(_, n)| n)
            .sum())
    }

    async fn count(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("ZCARD").arg(TIME).query_async(&mut conn).await?)
    }

    async fn delete_oldest(
        &self,
        older_than: i64,
        keep_at_most: u64,
        max: usize,
    ) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let count: u64 = redis::cmd("ZCARD").arg(TIME).query_async(&mut conn).await?;
        let old: u64 = redis::cmd("ZCOUNT")
            .arg(TIME)
            .arg("-inf")
            .arg(format!("({}", score(older_than)))
            .query_async(&mut conn)
            .await?;
        let k = old.max(count.saturating_sub(keep_at_most)).min(max as u64);
        if k == 0 {
            return Ok(0);
        }
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(TIME)
            .arg(0)
            .arg(k - 1)
            .query_async(&mut conn)
            .await?;
        let raws: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
            .arg(REC)
            .arg(&ids)
            .query_async(&mut conn)
            .await?;
        let mut victims = Vec::with_capacity(ids.len());
        for (id, raw) in ids.iter().zip(raws) {
            if let Some(r) = raw.and_then(|raw| Record::decode(raw.as_slice()).ok()) {
                victims.push((id, r));
            }
        }
        let mut p = redis::pipe();
        p.atomic();
        // Fields with one member per record: the members are known.
        let mut indexes: Vec<(redis::Cmd, bool)> = Field::ALL
            .iter()
            .map(|f| {
                let mut zrem = redis::cmd("ZREM");
                zrem.arg(index_key(*f));
                (zrem, false)
            })
            .collect();
        for (id, r) in &victims {
            for (f, (zrem, used)) in Field::ALL.iter().zip(indexes.iter_mut()) {
                if grouped(*f) {
                    continue;
                }
                if let Some(v) = f.value(r) {
                    zrem.arg(entry(&v, id));
                    *used = true;
                }
            }
        }
        // Grouped fields: the members of each victim's (value, bucket), looked up; a lone
        // record's member goes, a row is trimmed by the script.
        let keyed: Vec<(LogKey, &Record)> = victims
            .iter()
            .filter_map(|(id, r)| Some((parse_member(id)?, r)))
            .collect();
        let mut groups: Vec<(usize, String, Vec<LogKey>)> = Vec::new();
        let mut lookups = redis::pipe();
        for (i, (f, rows)) in Field::ALL
            .iter()
            .zip(postings::group(keyed.into_iter(), grouped))
            .enumerate()
        {
            for ((value, b), keys) in rows {
                let prefix = entry_prefix(&value);
                let (lo, hi) = bucket_range(&prefix, b);
                lookups
                    .cmd("ZRANGEBYLEX")
                    .arg(index_key(*f))
                    .arg(lo)
                    .arg(hi);
                groups.push((i, prefix, keys));
            }
        }
        let found: Vec<Vec<String>> = if groups.is_empty() {
            Vec::new()
        } else {
            lookups.query_async(&mut conn).await?
        };
        let mut packed = Vec::new();
        for ((i, prefix, gone), members) in groups.iter().zip(found) {
            let f = Field::ALL[*i];
            let gone_ids: HashSet<String> = gone.iter().map(|k| member(*k)).collect();
            packed.clear();
            postings::pack(gone, &mut packed);
            for m in members {
                let rest = m.get(prefix.len()..).unwrap_or_default();
                if rest.ends_with(ROW) {
                    p.cmd("EVAL")
                        .arg(TRIM_ROW)
                        .arg(2)
                        .arg(index_key(f))
                        .arg(postings_key(f))
                        .arg(&m)
                        .arg(packed.as_slice())
                        .ignore();
                } else if gone_ids.contains(rest) {
                    let (zrem, used) = &mut indexes[*i];
                    zrem.arg(&m);
                    *used = true;
                }
            }
        }
        p.cmd("HDEL").arg(REC).arg(&ids).ignore();
        p.cmd("ZREM").arg(TIME).arg(&ids).ignore();
        for (zrem, used) in indexes {
            if used {
                p.add_command(zrem).ignore();
            }
        }
        let () = p.query_async(&mut conn).await?;
        Ok(ids.len() as u64)
    }

    async fn forget_hours_before(&self, hour: i64) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let hours: Vec<i64> = redis::cmd("HKEYS")
            .arg(DROPPED)
            .query_async(&mut conn)
            .await?;
        let old: Vec<i64> = hours.into_iter().filter(|h| *h < hour).collect();
        if !old.is_empty() {
            let _: u64 = redis::cmd("HDEL")
                .arg(DROPPED)
                .arg(old)
                .query_async(&mut conn)
                .await?;
        }
        // Visitor sketches expire by themselves.
        Ok(())
    }

    async fn index_entries(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let mut n = 0u64;
        for f in Field::ALL {
            let members: u64 = redis::cmd("ZCARD")
                .arg(index_key(f))
                .query_async(&mut conn)
                .await?;
            let rows: Vec<Vec<u8>> = redis::cmd("HVALS")
                .arg(postings_key(f))
                .query_async(&mut conn)
                .await?;
            // A row is one member holding several keys.
            n += members.saturating_sub(rows.len() as u64);
            n += rows.iter().map(|r| postings::count(r)).sum::<u64>();
        }
        Ok(n)
    }
}
