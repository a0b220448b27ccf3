//! Tokens that verified, by SHA-256, so a client repeating its token costs a hash and a
//! lookup instead of a signature check (about 20× the instructions of a whole proxied
//! request for ES256).
//!
//! One cache belongs to one snapshot's [`super::Verifier`]: keys and revocations are fixed
//! for its lifetime, so an entry stays as valid as the full check that created it until
//! the token's own expiry, and a new snapshot (a revocation, a key rotation) starts empty.
//! Sharded so concurrent requests rarely meet on a lock; bounded so memory is too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use aws_lc_rs::digest;

use super::Claims;

const SHARDS: usize = 16;
/// Entries per shard (16 × 1,024 tokens in all).
const PER_SHARD: usize = 1024;

/// SHA-256 of a token: the cache never holds the token itself.
pub(crate) type TokenKey = [u8; 32];

/// Verified claims by token hash, until each token expires.
pub(crate) struct TokenCache {
    shards: [Mutex<HashMap<TokenKey, Entry>>; SHARDS],
}

struct Entry {
    /// Last second (Unix) the token is accepted, leeway included.
    valid_until: i64,
    claims: Arc<Claims>,
}

/// The cache key for `token`.
pub(crate) fn key(token: &str) -> TokenKey {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
    out
}

impl TokenCache {
    pub(crate) fn new() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }

    fn shard(&self, key: &TokenKey) -> std::sync::MutexGuard<'_, HashMap<TokenKey, Entry>> {
        self.shards[usize::from(key[0]) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The claims of a token verified before and not expired at `now`.
    pub(crate) fn get(&self, key: &TokenKey, now: i64) -> Option<Arc<Claims>> {
        let mut shard = self.shard(key);
        match shard.get(key) {
            Some(e) if now <= e.valid_until => Some(e.claims.clone()),
            Some(_) => {
                shard.remove(key);
                None
            }
            None => None,
        }
    }

    /// Remembers a verified token. A full shard first drops its expired entries; if it
    /// is still full the token is not cached (the hot entries already there stay).
    pub(crate) fn insert(&self, key: TokenKey, valid_until: i64, claims: Arc<Claims>, now: i64) {
        let mut shard = self.shard(&key);
        if shard.len() >= PER_SHARD {
            shard.retain(|_, e| now <= e.valid_until);
            if shard.len() >= PER_SHARD {
                return;
            }
        }
        shard.insert(
            key,
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
        let k = key("token-a");
        assert_ne!(k, key("token-b"));
        cache.insert(k, 100, claims(), 50);
        assert!(cache.get(&k, 100).is_some());
        assert!(cache.get(&k, 101).is_none(), "served after expiry");
        assert_eq!(cache.len(), 0, "expired entry not dropped");

        // Fill one shard with live entries: a newcomer is not cached, nothing is evicted.
        let shard_of = |k: &TokenKey| usize::from(k[0]) % SHARDS;
        let target = shard_of(&key("x0"));
        let mut same: Vec<TokenKey> = (0..)
            .map(|i| key(&format!("x{i}")))
            .filter(|k| shard_of(k) == target)
            .take(PER_SHARD + 1)
            .collect();
        let newcomer = same.pop().unwrap_or_else(|| panic!("no keys"));
        for k in &same {
            cache.insert(*k, 1_000, claims(), 50);
        }
        cache.insert(newcomer, 1_000, claims(), 50);
        assert!(cache.get(&newcomer, 60).is_none());
        assert!(cache.get(&same[0], 60).is_some());
        // Once they expire, the shard makes room.
        cache.insert(newcomer, 5_000, claims(), 2_000);
        assert!(cache.get(&newcomer, 2_000).is_some());
        assert_eq!(cache.len(), 1);
    }
}
