//! Tokens that verified, so a client repeating its token costs one keyed hash and a
//! comparison instead of a signature check (about 20× the instructions of a whole
//! proxied request for ES256).
//!
//! One cache belongs to one snapshot's [`super::Verifier`]: keys and revocations are fixed
//! for its lifetime, so an entry stays as valid as the full check that created it until
//! the token's own expiry, and a new snapshot (a revocation, a key rotation) starts empty.
//! Sharded so concurrent requests rarely meet on a lock; bounded so memory is too.
//!
//! Entries are keyed by the token itself and a hit compares it byte for byte, so no
//! token can ever be answered with another token's claims. An earlier version keyed by
//! SHA-256 to avoid holding tokens; without SHA extensions on the CPU that hash cost
//! more than the rest of the request. The tokens stay in this process's memory only
//! (never logged, never written), where every request already carries them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use foldhash::fast::RandomState;

use super::Claims;

type Map = HashMap<Box<[u8]>, Entry, RandomState>;

const SHARDS: usize = 16;
/// Entries per shard (16 × 1,024 tokens in all).
const PER_SHARD: usize = 1024;

/// Verified claims by token, until each token expires.
pub(crate) struct TokenCache {
    /// Hashed with randomly seeded foldhash (a few hundred instructions for a token where
    /// SipHash took 1,400). Its weaker flooding resistance does not matter here: only
    /// tokens that verified are inserted, so a client cannot fill a bucket.
    shards: [Mutex<Map>; SHARDS],
}

struct Entry {
    /// Last second (Unix) the token is accepted, leeway included.
    valid_until: i64,
    claims: Arc<Claims>,
}

/// The shard of `token`: from its last characters, the signature's, which are uniformly
/// spread for tokens the authorization server signed. A client choosing them only picks
/// which lock it waits on; the lookup inside is keyed by the whole token.
fn shard_index(token: &[u8]) -> usize {
    token.iter().rev().skip(2).take(4).fold(0usize, |acc, b| {
        acc.wrapping_mul(31).wrapping_add(usize::from(*b))
    }) % SHARDS
}

impl TokenCache {
    pub(crate) fn new() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(Map::default())),
        }
    }

    fn shard(&self, token: &[u8]) -> std::sync::MutexGuard<'_, Map> {
        self.shards[shard_index(token)]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The claims of a token verified before and not expired at `now`.
    pub(crate) fn get(&self, token: &[u8], now: i64) -> Option<Arc<Claims>> {
        let mut shard = self.shard(token);
        match shard.get(token) {
            Some(e) if now <= e.valid_until => Some(e.claims.clone()),
            Some(_) => {
                shard.remove(token);
                None
            }
            None => None,
        }
    }

    /// Remembers a verified token. A full shard first drops its expired entries; if it
    /// is still full the token is not cached (the hot entries already there stay).
    pub(crate) fn insert(&self, token: &str, valid_until: i64, claims: Arc<Claims>, now: i64) {
        let mut shard = self.shard(token.as_bytes());
        if shard.len() >= PER_SHARD {
            shard.retain(|_, e| now <= e.valid_until);
            if shard.len() >= PER_SHARD {
                return;
            }
        }
        shard.insert(
            token.as_bytes().into(),
            Entry {
                valid_until,
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
    use super::*;

    fn claims() -> Arc<Claims> {
        let c: Claims = serde_json::from_value(serde_json::json!({
            "sub": "u", "aud": "https://a", "jti": "j", "exp": 100, "iat": 1,
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        Arc::new(c)
    }

    #[test]
    fn entries_expire_and_full_shards_keep_what_they_hold() {
        let cache = TokenCache::new();
        cache.insert("token-a", 100, claims(), 50);
        assert!(cache.get(b"token-a", 100).is_some());
        assert!(
            cache.get(b"token-b", 100).is_none(),
            "another token answered"
        );
        assert!(cache.get(b"token-", 100).is_none(), "a prefix answered");
        assert!(cache.get(b"token-a", 101).is_none(), "served after expiry");
        assert_eq!(cache.len(), 0, "expired entry not dropped");

        // Fill one shard with live entries: a newcomer is not cached, nothing is evicted.
        let target = shard_index(b"x0000");
        let mut same: Vec<String> = (0..)
            .map(|i| format!("x{i:04}"))
            .filter(|k| shard_index(k.as_bytes()) == target)
            .take(PER_SHARD + 1)
            .collect();
        let newcomer = same.pop().unwrap_or_else(|| panic!("no keys"));
        for k in &same {
            cache.insert(k, 1_000, claims(), 50);
        }
        cache.insert(&newcomer, 1_000, claims(), 50);
        assert!(cache.get(newcomer.as_bytes(), 60).is_none());
        assert!(cache.get(same[0].as_bytes(), 60).is_some());
        // Once they expire, the shard makes room.
        cache.insert(&newcomer, 5_000, claims(), 2_000);
        assert!(cache.get(newcomer.as_bytes(), 2_000).is_some());
        assert_eq!(cache.len(), 1);
    }
}
