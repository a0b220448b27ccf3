//! The index entries of the records not yet in the index rows: the open block's (and,
//! for a moment after a large batch, the tail of the one before), kept in memory as the
//! records' indexed values.
//!
//! Why: an index entry inserted into a B-tree per record was most of the embedded store's
//! ingest cost (a tree descent, a leaf rebuilt, its page copied on the batch's first touch,
//! checksummed and written). Here a record costs one allocation holding its indexed
//! values; when a block closes its entries are grouped into rows once (`rows`).
//!
//! Invariants (kept by `embedded`, which alone mutates this):
//! - It holds the stored records with `seq` at or above `indexed` (`meta`), and only
//!   those, up to the records of a write being committed (added before its commit,
//!   removed again if it fails) and of records just deleted or flushed (removed right
//!   after that commit). A reader therefore takes the records in its snapshot's
//!   `indexed..=seq` only, under this lock taken before its snapshot.
//! - Records are in `seq` order (added so), so ranges of `seq` are binary searches.
//!
//! Costs: a search of a value reads every record held (at most a block and a batch,
//! ~40k: ~0.1 ms), instead of keeping a map per field updated on every record.
//! Memory: a record's key and its indexed values (each capped): bounded by a block
//! (2^15 records) plus one batch.

use std::collections::{HashSet, VecDeque};
use std::ops::RangeInclusive;

use crate::logs::LogKey;

/// Record keys `(time, seq)`.
type Key = (i64, u64);

/// A record's key and the values of its `N` indexed fields (empty: not indexed).
struct Held<const N: usize> {
    key: Key,
    /// The values, one after another.
    values: Box<str>,
    /// Where each value ends in `values`.
    ends: [u16; N],
}

impl<const N: usize> Held<N> {
    fn value(&self, slot: usize) -> &str {
        let start = slot.checked_sub(1).map_or(0, |p| usize::from(self.ends[p]));
        self.values
            .get(start..usize::from(self.ends[slot]))
            .unwrap_or_default()
    }
}

/// The records above `indexed`, in `seq` order, with their indexed values by slot.
pub(super) struct OpenBlock<const N: usize> {
    held: VecDeque<Held<N>>,
}

impl<const N: usize> OpenBlock<N> {
    pub(super) fn new() -> Self {
        Self {
            held: VecDeque::new(),
        }
    }

    /// Adds record `key` with its indexed values by slot (empty: none); records come in
    /// `seq` order. Values are capped far below 64 KiB in all (`sanitize`).
    pub(super) fn add(&mut self, key: Key, values: [&str; N]) {
        let mut joined = String::with_capacity(values.iter().map(|v| v.len()).sum());
        let mut ends = [0u16; N];
        for (end, v) in ends.iter_mut().zip(values) {
            if joined.len() + v.len() <= usize::from(u16::MAX) {
                joined.push_str(v);
            }
            *end = joined.len() as u16;
        }
        self.held.push_back(Held {
            key,
            values: joined.into_boxed_str(),
            ends,
        });
    }

    /// The records with `seq` in `seqs`.
    fn in_seqs(&self, seqs: RangeInclusive<u64>) -> impl Iterator<Item = &Held<N>> {
        let lo = self.held.partition_point(|h| h.key.1 < *seqs.start());
        let hi = self.held.partition_point(|h| h.key.1 <= *seqs.end());
        self.held.range(lo..hi.max(lo))
    }

    /// Up to `max` keys of records whose field `slot` is `value`, with `seq` in `seqs`,
    /// `since <= time` and `key < before`, newest first.
    pub(super) fn select(
        &self,
        slot: usize,
        value: &str,
        seqs: RangeInclusive<u64>,
        since: i64,
        before: LogKey,
        max: usize,
    ) -> Vec<Key> {
        let mut out: Vec<Key> = self
            .in_seqs(seqs)
            .filter(|h| {
                let (t, s) = h.key;
                t >= since && (t, s) < (before.time, before.seq) && h.value(slot) == value
            })
            .map(|h| h.key)
            .collect();
        out.sort_unstable_by(|a, b| b.cmp(a));
        out.truncate(max);
        out
    }

    /// Entries (non-empty values) of the records with `seq` in `seqs`.
    pub(super) fn count(&self, seqs: RangeInclusive<u64>) -> u64 {
        self.in_seqs(seqs)
            .map(|h| (0..N).filter(|i| !h.value(*i).is_empty()).count() as u64)
            .sum()
    }

    /// The earliest time of the records with `seq` in `seqs`.
    pub(super) fn min_time(&self, seqs: RangeInclusive<u64>) -> Option<i64> {
        self.in_seqs(seqs).map(|h| h.key.0).min()
    }

    /// The entries of the records with `seq` in `seqs`: `(slot, value, key)`, values
    /// non-empty.
    pub(super) fn entries(
        &self,
        seqs: RangeInclusive<u64>,
    ) -> impl Iterator<Item = (usize, &str, Key)> {
        self.in_seqs(seqs).flat_map(|h| {
            (0..N).filter_map(move |i| {
                let v = h.value(i);
                (!v.is_empty()).then_some((i, v, h.key))
            })
        })
    }

    /// Forgets every record with `seq < end` (flushed to the rows).
    pub(super) fn forget_before(&mut self, end: u64) {
        let n = self.held.partition_point(|h| h.key.1 < end);
        self.held.drain(..n);
    }

    /// Forgets every record with `seq >= start` (a write that did not commit).
    pub(super) fn forget_from(&mut self, start: u64) {
        let n = self.held.partition_point(|h| h.key.1 < start);
        self.held.truncate(n);
    }

    /// Forgets the records numbered in `seqs` (deleted).
    pub(super) fn forget_seqs(&mut self, seqs: &HashSet<u64>) {
        self.held.retain(|h| !seqs.contains(&h.key.1));
    }
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
            o.add((t, s), ["a", ""]);
        }
        o.add((30, 5), ["", "b"]);
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
        assert!(o.select(1, "a", 1..=5, 0, MAX, 10).is_empty());
        assert_eq!(o.select(1, "b", 1..=5, 0, MAX, 10), [(30, 5)]);
        assert_eq!((o.count(1..=5), o.count(2..=4)), (5, 3));
        assert_eq!(o.min_time(3..=5), Some(20));
        let entries: Vec<_> = o.entries(3..=5).collect();
        assert_eq!(
            entries,
            [(0, "a", (40, 3)), (0, "a", (20, 4)), (1, "b", (30, 5))]
        );

        o.forget_seqs(&HashSet::from([3]));
        o.forget_before(2);
        assert_eq!(o.select(0, "a", 0..=9, 0, MAX, 10), [(20, 4), (10, 2)]);
        o.forget_from(4);
        assert_eq!(o.select(0, "a", 0..=9, 0, MAX, 10), [(10, 2)]);
        o.forget_seqs(&HashSet::from([2, 7]));
        assert_eq!(o.count(0..=9), 0);
        assert!(o.held.is_empty());
    }
}
