//! Tokens that verified, so a client repeating its token costs a hash of its last bytes
//! and one comparison instead of a signature check (about 20× the instructions of a
//! whole proxied request for ES256).
//!
//! One cache belongs to one snapshot's [`super::Verifier`]: keys and revocations are fixed
//! for its lifetime, so an entry stays as valid as the full check that created it until
//! the token's own expiry, and a new snapshot (a revocation, a key rotation) starts empty.
//! Sharded so concurrent requests rarely meet on a lock; bounded so memory is too.
//!
//! **Keys.** An entry is found by a seeded hash of the token's last [`TAIL`] bytes (and
//! its length): the end of a compact JWS is its signature, uniformly spread for tokens
//! the authorization server signed (16 base64url characters: 96 bits), so hashing the
//! rest (~600 bytes, ~0.3k instructions) added nothing. A hit then compares the **whole** token byte for byte, so no token can
//! ever be answered with another token's claims, whatever its tail. Only verified tokens
//! are inserted, so a client cannot choose the keys that occupy the map; two verified
//! tokens with the same key (no seen case: it takes equal signature tails) share one
//! entry, the later replacing the earlier, which costs the other a verification, never
//! a wrong answer. An earlier version keyed by SHA-256 to avoid holding tokens; without
//! SHA extensions on the CPU that hash cost more than the rest of the request. The
//! tokens stay in this process's memory only (never logged, never written), where every
//! request already carries them.
//!
//! **Cost of a hit** (~0.3k instructions, bench/README.md finding 6): the clock read
//! (compared as a `SystemTime`, not turned into seconds), foldhash over a length and 16
//! bytes, an uncontended lock, one map probe, a ~600-byte comparison and a reference
//! count.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use foldhash::fast::RandomState;

use super::Claims;

/// Hashed key → entry (the key is a seeded hash already; foldhash mixes it in a few
/// instructions).
type Map = HashMap<u64, Entry, RandomState>;

const SHARDS: usize = 16;
/// Entries per shard (16 × 1,024 tokens in all).
const PER_SHARD: usize = 1024;
/// Bytes at the token's end that are hashed: part of an ES256 or RS256 signature.
const TAIL: usize = 16;

/// Verified claims by token, until each token expires.
pub(crate) struct TokenCache {
    /// Seeded per cache, so keys cannot be predicted from outside.
    hasher: RandomState,
    shards: [Mutex<Map>; SHARDS],
}

struct Entry {
    /// The whole token, compared on every hit.
    token: Box<[u8]>,
    /// The first instant the full check refuses the token (its expiry, leeway included).
    refused_from: SystemTime,
    claims: Arc<Claims>,
}

impl TokenCache {
    pub(crate) fn new() -> Self {
        Self {
            hasher: RandomState::default(),
            shards: std::array::from_fn(|_| Mutex::new(Map::default())),
        }
    }

    /// The key of `token`: its length and last [`TAIL`] bytes, hashed with this cache's
    /// seed.
    fn key(&self, token: &[u8]) -> u64 {
        let tail = match token.last_chunk::<TAIL>() {
            Some(tail) => u128::from_le_bytes(*tail),
            None => token.iter().fold(0, |t, b| (t << 8) | u128::from(*b)),
        };
        self.hasher.hash_one((token.len(), tail))
    }

    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, Map> {
        // The map hashes the key again to pick a bucket, so shard and bucket are unrelated.
        self.shards[(key % SHARDS as u64) as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The claims of a token verified before and not expired at `now`: only when the
    /// entry's token equals `token` byte for byte.
    pub(crate) fn get(&self, token: &[u8], now: SystemTime) -> Option<Arc<Claims>> {
        let key = self.key(token);
        let mut shard = self.shard(key);
        let entry = shard.get(&key).filter(|e| *e.token == *token)?;
        if now < entry.refused_from {
            return Some(entry.claims.clone());
        }
        shard.remove(&key);
        None
    }

    /// Remembers a verified token. A full shard first drops its expired entries; if it
    /// is still full the token is not cached (the hot entries already there stay).
    pub(crate) fn insert(
        &self,
        token: &str,
        refused_from: SystemTime,
        claims: Arc<Claims>,
        now: SystemTime,
    ) {
        let key = self.key(token.as_bytes());
        let mut shard = self.shard(key);
        if shard.len() >= PER_SHARD && !shard.contains_key(&key) {
            shard.retain(|_, e| now < e.refused_from);
            if shard.len() >= PER_SHARD {
                return;
            }
        }
        shard.insert(
            key,
            Entry {
                token: token.as_bytes().into(),
                refused_from,
                claims,
            },
        );
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    /// `secs` seconds after the epoch.
    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn claims(sub: &str) -> Arc<Claims> {
        let c: Claims = serde_json::from_value(serde_json::json!({
            "sub": sub, "aud": "https://a", "jti": "j", "exp": 100, "iat": 1,
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        Arc::new(c)
    }

    fn sub(found: Option<Arc<Claims>>) -> Option<String> {
        found.map(|c| c.sub.clone())
    }

    #[test]
    fn a_hit_returns_that_tokens_claims_and_only_for_the_whole_token() {
        let cache = TokenCache::new();
        // Refused from second 101 on: accepted through the last instant of second 100.
        cache.insert("token-a", at(101), claims("a"), at(50));
        let last = at(100) + Duration::from_millis(999);
        assert_eq!(sub(cache.get(b"token-a", last)).as_deref(), Some("a"));
        assert!(
            cache.get(b"token-b", at(100)).is_none(),
            "another token answered"
        );
        assert!(cache.get(b"token-", at(100)).is_none(), "a prefix answered");
        assert!(
            cache.get(b"xtoken-a", at(100)).is_none(),
            "a longer token answered"
        );
        assert!(cache.get(b"", at(100)).is_none());
        assert!(
            cache.get(b"token-a", at(101)).is_none(),
            "served after expiry"
        );
        assert_eq!(cache.len(), 0, "expired entry not dropped");
    }

    #[test]
    fn tokens_with_the_same_tail_never_answer_for_each_other() {
        // Same length and last TAIL bytes: the same key, different tokens.
        let tail = "s".repeat(TAIL);
        let (a, b) = (format!("head-a.{tail}"), format!("head-b.{tail}"));
        let cache = TokenCache::new();
        assert_eq!(cache.key(a.as_bytes()), cache.key(b.as_bytes()));
        cache.insert(&a, at(100), claims("a"), at(50));
        assert!(
            cache.get(b.as_bytes(), at(60)).is_none(),
            "b answered with a's claims"
        );
        assert_eq!(sub(cache.get(a.as_bytes(), at(60))).as_deref(), Some("a"));
        // b verified too: it takes the entry; a is verified again on its next request.
        cache.insert(&b, at(100), claims("b"), at(50));
        assert_eq!(sub(cache.get(b.as_bytes(), at(60))).as_deref(), Some("b"));
        assert!(
            cache.get(a.as_bytes(), at(60)).is_none(),
            "a answered with b's claims"
        );
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn full_shards_keep_what_they_hold_until_it_expires() {
        let cache = TokenCache::new();
        let shard_of = |k: &str| cache.key(k.as_bytes()) % SHARDS as u64;
        let target = shard_of("x0000");
        let mut same: Vec<String> = (0..)
            .map(|i| format!("x{i:04}"))
            .filter(|k| shard_of(k) == target)
            .take(PER_SHARD + 1)
            .collect();
        let newcomer = same.pop().unwrap_or_else(|| panic!("no keys"));
        for k in &same {
            cache.insert(k, at(1_000), claims(k), at(50));
        }
        cache.insert(&newcomer, at(1_000), claims(&newcomer), at(50));
        assert!(cache.get(newcomer.as_bytes(), at(60)).is_none());
        assert_eq!(
            sub(cache.get(same[0].as_bytes(), at(60))),
            Some(same[0].clone())
        );
        // Once they expire, the shard makes room.
        cache.insert(&newcomer, at(5_000), claims(&newcomer), at(2_000));
        assert_eq!(
            sub(cache.get(newcomer.as_bytes(), at(2_000))),
            Some(newcomer)
        );
        assert_eq!(cache.len(), 1);
    }
}
