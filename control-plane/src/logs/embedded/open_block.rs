//! The index entries of the records not yet in the `ix_*` tables: the open block's (and,
//! for a moment after a large batch, the tail of the one before), kept in memory.
//!
//! Why: an index entry inserted into a B-tree per record was most of the embedded store's
//! ingest cost (a tree descent, a leaf rebuilt, its page copied on the batch's first touch,
//! checksummed and written). Here a record's entries cost a hash look-up and a push each;
//! when a block closes its entries go to the tables once, sorted (appended to the tree).
//!
//! Invariants (kept by `embedded`, which alone mutates this):
//! - It holds the entries of stored records with `seq` at or above `indexed` (`meta`), and
//!   only those, up to the entries of a write being committed (added before its commit,
//!   removed again if it fails) and of records just deleted or flushed (removed right
//!   after that commit). A reader therefore takes the entries in its snapshot's
//!   `indexed..=seq` only, under this lock taken before its snapshot.
//! - Per value the record keys are in `seq` order (records are added in `seq` order), so a
//!   flush takes a prefix and a lookup by `seq` is a binary search.
//!
//! Memory: one entry (16 bytes) per indexed field of each record above `indexed`, plus each
//! distinct value once: bounded by a block (2^15 records) plus one batch.

use std::collections::{HashMap, HashSet};
use std::ops::{Range, RangeInclusive};

use crate::logs::LogKey;

/// Record keys `(time, seq)`.
type Key = (i64, u64);

/// Per indexed field (by slot), value → keys of its records, in `seq` order.
pub(super) struct OpenBlock<const N: usize> {
    fields: [HashMap<Box<str>, Vec<Key>>; N],
}

impl<const N: usize> OpenBlock<N> {
    pub(super) fn new() -> Self {
        Self {
            fields: std::array::from_fn(|_| HashMap::new()),
        }
    }

    /// Adds the entry of record `key` under `value` of field `slot`; records come in
    /// `seq` order.
    pub(super) fn add(&mut self, slot: usize, value: &str, key: Key) {
        let map = &mut self.fields[slot];
        match map.get_mut(value) {
            Some(keys) => keys.push(key),
            None => {
                map.insert(value.into(), vec![key]);
            }
        }
    }

    /// Up to `max` keys of `value` with `seq` in `seqs`, `since <= time` and
    /// `key < before`, newest first.
    pub(super) fn select(
        &self,
        slot: usize,
        value: &str,
        seqs: RangeInclusive<u64>,
        since: i64,
        before: LogKey,
        max: usize,
    ) -> Vec<Key> {
        let Some(keys) = self.fields[slot].get(value) else {
            return Vec::new();
        };
        let mut out: Vec<Key> = in_seqs(keys, seqs)
            .iter()
            .filter(|(t, s)| *t >= since && (*t, *s) < (before.time, before.seq))
            .copied()
            .collect();
        out.sort_unstable_by(|a, b| b.cmp(a));
        out.truncate(max);
        out
    }

    /// Entries with `seq` in `seqs`, across all fields.
    pub(super) fn count(&self, seqs: RangeInclusive<u64>) -> u64 {
        self.fields
            .iter()
            .flat_map(|m| m.values())
            .map(|keys| in_seqs(keys, seqs.clone()).len() as u64)
            .sum()
    }

    /// The earliest record time among entries with `seq` in `seqs`.
    pub(super) fn min_time(&self, seqs: RangeInclusive<u64>) -> Option<i64> {
        self.fields
            .iter()
            .flat_map(|m| m.values())
            .flat_map(|keys| in_seqs(keys, seqs.clone()).iter().map(|(t, _)| *t))
            .min()
    }

    /// Field `slot`'s values with entries whose `seq` is in `seqs`, and those entries.
    pub(super) fn values(
        &self,
        slot: usize,
        seqs: Range<u64>,
    ) -> impl Iterator<Item = (&str, &[Key])> {
        let last = seqs.end.checked_sub(1);
        self.fields[slot].iter().filter_map(move |(v, keys)| {
            let keys = in_seqs(keys, seqs.start..=last?);
            (!keys.is_empty()).then_some((&**v, keys))
        })
    }

    /// Forgets every entry with `seq < end` (flushed to the tables).
    pub(super) fn forget_before(&mut self, end: u64) {
        for map in &mut self.fields {
            map.retain(|_, keys| {
                let n = keys.partition_point(|(_, s)| *s < end);
                keys.drain(..n);
                !keys.is_empty()
            });
        }
    }

    /// Forgets every entry with `seq >= start` (a write that did not commit).
    pub(super) fn forget_from(&mut self, start: u64) {
        for map in &mut self.fields {
            map.retain(|_, keys| {
                let n = keys.partition_point(|(_, s)| *s < start);
                keys.truncate(n);
                !keys.is_empty()
            });
        }
    }

    /// Forgets the entries of the records numbered in `seqs` (deleted). Costs a look-up
    /// per entry held: retention deletes records this recent rarely.
    pub(super) fn forget_seqs(&mut self, seqs: &HashSet<u64>) {
        for map in &mut self.fields {
            map.retain(|_, keys| {
                keys.retain(|(_, s)| !seqs.contains(s));
                !keys.is_empty()
            });
        }
    }
}

/// The keys with `seq` in `seqs` (`keys` in `seq` order).
fn in_seqs(keys: &[Key], seqs: RangeInclusive<u64>) -> &[Key] {
    let lo = keys.partition_point(|(_, s)| s < seqs.start());
    let hi = keys.partition_point(|(_, s)| s <= seqs.end());
    &keys[lo..hi.max(lo)]
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: LogKey = LogKey::MAX;

    #[test]
    fn entries_are_selected_by_seq_range_newest_first_and_forgotten() {
        let mut o = OpenBlock::<2>::new();
        // Times out of seq order, as two data planes' records may come.
        for (t, s) in [(50, 1), (10, 2), (40, 3), (20, 4)] {
            o.add(0, "a", (t, s));
        }
        o.add(1, "b", (30, 5));
        assert_eq!(
            o.select(0, "a", 1..=4, 0, MAX, 10),
            [(50, 1), (40, 3), (20, 4), (10, 2)]
        );
        // The snapshot's range, `since`, `before` and `max` each bound it.
        assert_eq!(o.select(0, "a", 2..=3, 0, MAX, 10), [(40, 3), (10, 2)]);
        assert_eq!(
            o.select(0, "a", 1..=4, 20, MAX, 10),
            [(50, 1), (40, 3), (20, 4)]
        );
        let before = LogKey { time: 40, seq: 3 };
        assert_eq!(o.select(0, "a", 1..=4, 0, before, 1), [(20, 4)]);
        assert!(o.select(0, "b", 1..=4, 0, MAX, 10).is_empty());
        assert_eq!((o.count(1..=5), o.count(2..=4)), (5, 3));
        assert_eq!(o.min_time(3..=5), Some(20));
        let values: Vec<_> = o.values(0, 3..5).collect();
        assert_eq!(values, [("a", &[(40, 3), (20, 4)][..])]);

        o.forget_seqs(&HashSet::from([3]));
        o.forget_before(2);
        assert_eq!(o.select(0, "a", 0..=9, 0, MAX, 10), [(20, 4), (10, 2)]);
        o.forget_from(4);
        assert_eq!(o.select(0, "a", 0..=9, 0, MAX, 10), [(10, 2)]);
        o.forget_seqs(&HashSet::from([2, 7]));
        assert_eq!(o.count(0..=9), 0);
        assert!(
            o.fields.iter().all(HashMap::is_empty),
            "empty values are dropped"
        );
    }
}
