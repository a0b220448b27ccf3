//! The Redis backend: one hash per collection, a revision counter, and a Lua script that
//! checks and writes a whole batch atomically. All keys share the `{portcullis}` hash tag so
//! a batch never spans cluster slots.
//!
//! Every batch that bumps the revision also `PUBLISH`es the new revision on
//! [`REVISION_CHANNEL`] from inside the script, so the publish is atomic with the write;
//! [`RedisStore::watch_revisions`] subscribes and wakes this process's snapshot publisher
//! at once, whichever control plane wrote. Pub/sub is fire-and-forget (a message sent while
//! a subscriber reconnects is lost), so the watcher reads the revision after every
//! (re)subscription and the publisher keeps a slow poll as the safety net.

use redis::aio::ConnectionManager;

use super::{Batch, Check, Collection, Consistent, StoreError, Write};

/// One collection's `(key, value)` pairs.
type Records = Vec<(String, Vec<u8>)>;

const REVISION_KEY: &str = "{portcullis}:revision";

/// Pub/sub channel carrying each new revision (decimal), published by the apply script.
pub(crate) const REVISION_CHANNEL: &str = "{portcullis}:revisions";

/// Wait before resubscribing after the pub/sub connection failed.
const RESUBSCRIBE_DELAY: std::time::Duration = std::time::Duration::from_millis(500);

/// Runs checks then writes in one script invocation; Redis runs scripts atomically. A
/// bumped revision is published on [`REVISION_CHANNEL`] (spelt out in the script).
const APPLY_SCRIPT: &str = r"
local i = 1
local bump = ARGV[i]; i = i + 1
local nc = tonumber(ARGV[i]); i = i + 1
for n = 1, nc do
  local op, h, f, v = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]; i = i + 4
  local cur = redis.call('HGET', h, f)
  if op == 'absent' then
    if cur then return {0, n - 1} end
  elseif op == 'present' then
    if not cur then return {0, n - 1} end
  elseif cur ~= v then
    return {0, n - 1}
  end
end
local nw = tonumber(ARGV[i]); i = i + 1
for n = 1, nw do
  local op, h, f, v = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]; i = i + 4
  if op == 'put' then redis.call('HSET', h, f, v) else redis.call('HDEL', h, f) end
end
local rev
if bump == '1' then
  rev = redis.call('INCR', KEYS[1])
  redis.call('PUBLISH', '{portcullis}:revisions', rev)
else rev = tonumber(redis.call('GET', KEYS[1]) or '0') end
return {1, rev}
";

/// A multiplexed, auto-reconnecting connection to one Redis server.
#[derive(Clone)]
pub struct RedisStore {
    /// Opens the pub/sub connection (boxed: it is large and rarely used).
    client: std::sync::Arc<redis::Client>,
    conn: ConnectionManager,
    script: redis::Script,
}

fn parse_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        collection: "redis reply",
        key: String::new(),
        reason: e.to_string(),
    }
}

fn hash_key(c: Collection) -> String {
    format!("{{portcullis}}:{}", c.name())
}

impl RedisStore {
    /// Connects and checks the server answers.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(std::time::Duration::from_secs(5)))
            .set_response_timeout(Some(std::time::Duration::from_secs(10)))
            .set_number_of_retries(2);
        let mut conn = client.get_connection_manager_with_config(config).await?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(Self {
            client: std::sync::Arc::new(client),
            conn,
            script: redis::Script::new(APPLY_SCRIPT),
        })
    }

    /// Subscribes to [`REVISION_CHANNEL`] until the process ends, reporting every revision
    /// to `revisions`; after each (re)subscription also reads the revision, so writes made
    /// while the subscription was down are not missed.
    pub(super) fn watch_revisions(&self, revisions: super::Revisions) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                match this.follow(&revisions).await {
                    Ok(()) => tracing::warn!("revision subscription closed; resubscribing"),
                    Err(e) => {
                        tracing::warn!(error = %e, "revision subscription failed; resubscribing")
                    }
                }
                tokio::time::sleep(RESUBSCRIBE_DELAY).await;
            }
        });
    }

    async fn follow(&self, revisions: &super::Revisions) -> Result<(), StoreError> {
        use futures_util::StreamExt as _;
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(REVISION_CHANNEL).await?;
        let (revision,) = self.read_consistent(&[]).await.map(|c| (c.revision,))?;
        revisions.observe(revision);
        let mut messages = pubsub.on_message();
        while let Some(msg) = messages.next().await {
            // A malformed message only costs the wake-up; the poll still catches up.
            if let Ok(rev) = msg.get_payload::<u64>() {
                revisions.observe(rev);
            }
        }
        Ok(())
    }

    pub(super) async fn get(
        &self,
        c: Collection,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.conn.clone();
        let v: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(hash_key(c))
            .arg(key)
            .query_async(&mut conn)
            .await?;
        Ok(v)
    }

    pub(super) async fn read_consistent(
        &self,
        cs: &[Collection],
    ) -> Result<Consistent, StoreError> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.atomic().get(REVISION_KEY);
        for c in cs {
            pipe.hgetall(hash_key(*c));
        }
        let (revision, collections): (Option<u64>, Vec<Records>) = if cs.is_empty() {
            let (rev,): (Option<u64>,) = pipe.query_async(&mut conn).await?;
            (rev, Vec::new())
        } else {
            let values: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
            let mut iter = values.into_iter();
            let rev: Option<u64> = match iter.next() {
                Some(v) => redis::from_redis_value(v).map_err(parse_err)?,
                None => None,
            };
            let mut lists = Vec::with_capacity(cs.len());
            for v in iter {
                lists.push(redis::from_redis_value(v).map_err(parse_err)?);
            }
            (rev, lists)
        };
        Ok(Consistent {
            revision: revision.unwrap_or(0),
            collections,
        })
    }

    pub(super) async fn apply(&self, batch: Batch) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let mut inv = self.script.key(REVISION_KEY);
        let mut keys: Vec<Collection> = Vec::new();
        inv.arg(if batch.bumps_revision() { "1" } else { "0" });
        inv.arg(batch.checks.len());
        for check in &batch.checks {
            let (op, c, k, v): (&str, _, _, &[u8]) = match check {
                Check::Absent(c, k) => ("absent", *c, k, b""),
                Check::Present(c, k) => ("present", *c, k, b""),
                Check::Equals(c, k, v) => ("equals", *c, k, v),
            };
            keys.push(c);
            inv.arg(op).arg(hash_key(c)).arg(k.as_str()).arg(v);
        }
        inv.arg(batch.writes.len());
        for w in &batch.writes {
            let (op, c, k, v): (&str, _, _, &[u8]) = match w {
                Write::Put(c, k, v) => ("put", *c, k, v),
                Write::Delete(c, k) => ("del", *c, k, b""),
            };
            keys.push(c);
            inv.arg(op).arg(hash_key(c)).arg(k.as_str()).arg(v);
        }
        keys.sort_by_key(|c| c.name());
        keys.dedup();
        for c in keys {
            inv.key(hash_key(c));
        }
        let (ok, n): (i64, i64) = inv.invoke_async(&mut conn).await?;
        if ok == 1 {
            Ok(n.max(0) as u64)
        } else {
            Err(StoreError::CheckFailed(n.max(0) as usize))
        }
    }
}
