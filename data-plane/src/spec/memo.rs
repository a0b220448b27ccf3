//! Values parsed from snapshot strings, kept from one compile to the next.
//!
//! Consecutive snapshots differ by a write or two, yet every version carries all target
//! URLs and route regexes again. Parsing them was most of a compile at 10,000 proxies
//! (URL parsing alone about half), so each kind of value lives in a [`Memo`] keyed by its
//! source string: an unchanged string costs a hash lookup and a clone that shares the
//! parsed value.
//!
//! An entry survives the compile after the last one that used it and is then dropped, so
//! the memo holds what the newest snapshot uses plus one snapshot's leftovers, and what
//! failed compiles since the last success parsed (they do not rotate). Values must be pure
//! functions of the key; errors are not kept. Concurrent compiles stay correct (a value is
//! the same whoever makes it); they only evict each other's entries.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use foldhash::fast::RandomState;

/// Parsed values by source string; see the module docs.
pub(crate) struct Memo<T> {
    maps: Mutex<Generations<T>>,
}

struct Generations<T> {
    /// Used by the compile in progress (or the last one, before [`Memo::rotate`]).
    current: HashMap<Box<str>, T, RandomState>,
    /// Used by the compile before; moved into `current` when used again.
    previous: HashMap<Box<str>, T, RandomState>,
}

// === impl Memo ===

impl<T: Clone> Memo<T> {
    pub(crate) fn new() -> Self {
        Self {
            maps: Mutex::new(Generations {
                current: HashMap::default(),
                previous: HashMap::default(),
            }),
        }
    }

    /// The value for `key`, from the memo or made by `make` (outside the lock: building a
    /// regex can take a while, and a concurrent build of the same key is harmless).
    pub(crate) fn get_or_try<E>(
        &self,
        key: &str,
        make: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<T, E> {
        {
            let mut maps = self.lock();
            if let Some(value) = maps.current.get(key) {
                return Ok(value.clone());
            }
            if let Some((key, value)) = maps.previous.remove_entry(key) {
                maps.current.insert(key, value.clone());
                return Ok(value);
            }
        }
        let value = make(key)?;
        self.lock().current.insert(key.into(), value.clone());
        Ok(value)
    }

    /// Ends a successful compile: entries it did not use are dropped at the next rotation.
    pub(crate) fn rotate(&self) {
        let mut maps = self.lock();
        maps.previous = std::mem::take(&mut maps.current);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations<T>> {
        self.maps.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_the_last_compile_used_and_drops_the_rest() {
        let memo = Memo::new();
        let made = std::cell::Cell::new(0);
        let make = |key: &str| {
            made.set(made.get() + 1);
            Ok::<_, ()>(key.len())
        };
        assert_eq!(memo.get_or_try("a", make), Ok(1));
        assert_eq!(memo.get_or_try("bb", make), Ok(2));
        assert_eq!(memo.get_or_try("a", make), Ok(1));
        assert_eq!(
            made.get(),
            2,
            "second lookup of a key is served from the memo"
        );
        memo.rotate();

        // Next compile uses only "a": "bb" is still there this time, gone after it.
        assert_eq!(memo.get_or_try("a", make), Ok(1));
        assert_eq!(made.get(), 2);
        memo.rotate();
        assert_eq!(memo.get_or_try("bb", make), Ok(2));
        assert_eq!(
            made.get(),
            3,
            "an entry unused for a whole compile is made again"
        );
    }

    #[test]
    fn errors_are_not_kept() {
        let memo: Memo<usize> = Memo::new();
        assert_eq!(memo.get_or_try("x", |_| Err("bad")), Err("bad"));
        assert_eq!(memo.get_or_try("x", |_| Ok::<_, &str>(7)), Ok(7));
    }
}
