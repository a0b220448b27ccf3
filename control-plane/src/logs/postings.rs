//! Posting lists (the Redis store's host, status, user and client-id indexes): an index
//! row per (field value, time bucket, batch) holding the keys of the batch's records with
//! that value in that bucket, instead of one index entry per record and field. A batch of
//! 5,000 records over 20 hosts and a few statuses writes a few dozen host and status rows
//! instead of 10,000. (Tried for every index of the embedded store too: its CPU per
//! record did not move, bench/README.md, so it keeps one row per record and field.)
//!
//! Invariants:
//! - A row's keys all lie in its bucket (`time div` [`BUCKET_NANOS`]), ascending, no key
//!   twice; every key of the store is in exactly one row per field whose value it has.
//! - Rows of one value are ordered by bucket, so a newest-first walk reads one bucket's
//!   rows (any number of batches), sorts their keys and emits them before moving to an
//!   older bucket: every key of a newer bucket is above every key of an older one.
//! - A row is named by the sequence number of its first key (unique: a key is in one row
//!   per field); deleting keys rewrites the row without them, or deletes it when empty.
//!
//! Costs: reading a value's newest page reads that value's whole newest bucket (at most
//! the records of [`BUCKET_NANOS`] of traffic, ~3,500 keys at 35k records/s for one
//! host), sorted in memory.

use std::borrow::Cow;
use std::collections::HashMap;

use super::{Field, Indexed, LogKey};

/// Time span of one posting row: 100 ms, about 3,500 records at the bench's 35k/s. A
/// batch spans a few buckets; a quiet value has a row per record, as without postings.
pub(crate) const BUCKET_NANOS: i64 = 100_000_000;

/// Bytes per packed key.
const KEY_BYTES: usize = 16;

/// The bucket of a record time.
pub(crate) fn bucket(time: i64) -> i64 {
    time.div_euclid(BUCKET_NANOS)
}

/// Appends `keys` as 16 bytes each (time, then seq, big-endian).
pub(crate) fn pack(keys: &[LogKey], out: &mut Vec<u8>) {
    out.reserve(keys.len() * KEY_BYTES);
    for k in keys {
        out.extend_from_slice(&k.time.to_be_bytes());
        out.extend_from_slice(&k.seq.to_be_bytes());
    }
}

/// The keys of a packed row; `None` if its length is not a multiple of 16.
pub(crate) fn unpack(raw: &[u8]) -> Option<impl Iterator<Item = LogKey> + '_> {
    if !raw.len().is_multiple_of(KEY_BYTES) {
        return None;
    }
    Some(raw.chunks_exact(KEY_BYTES).map(|c| {
        let mut t = [0u8; 8];
        let mut s = [0u8; 8];
        t.copy_from_slice(&c[..8]);
        s.copy_from_slice(&c[8..]);
        LogKey {
            time: i64::from_be_bytes(t),
            seq: u64::from_be_bytes(s),
        }
    }))
}

/// Keys packed in a row.
pub(crate) fn count(raw: &[u8]) -> u64 {
    (raw.len() / KEY_BYTES) as u64
}

/// One field's rows for a batch: (value, bucket) → the keys, in the order added.
pub(crate) type Rows<'a> = HashMap<(Cow<'a, str>, i64), Vec<LogKey>>;

/// Groups records (with their keys) into the rows of the fields `which` accepts (the others'
/// stay empty), values borrowed from the records.
pub(crate) fn group<'a, R: Indexed + 'a>(
    records: impl Iterator<Item = (LogKey, &'a R)>,
    which: impl Fn(Field) -> bool,
) -> [Rows<'a>; Field::ALL.len()] {
    let mut rows: [Rows<'a>; Field::ALL.len()] = Default::default();
    let fields: Vec<(usize, Field)> = Field::ALL
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, f)| which(*f))
        .collect();
    for (key, r) in records {
        for &(i, f) in &fields {
            if let Some(v) = f.value(r) {
                let rows = &mut rows[i];
                rows.entry((v, bucket(key.time))).or_default().push(key);
            }
        }
    }
    rows
}

/// Collects a newest-first walk over posting rows: rows arrive bucket by bucket (newest
/// bucket first); keys in `[since, before)` are kept; [`Self::full`] says when `max` keys
/// are certain (a bucket is complete once a row of an older one arrives).
pub(crate) struct NewestFirst {
    since: i64,
    before: LogKey,
    max: usize,
    bucket: Option<i64>,
    pending: Vec<LogKey>,
    out: Vec<LogKey>,
}

impl NewestFirst {
    pub(crate) fn new(since: i64, before: LogKey, max: usize) -> Self {
        Self {
            since,
            before,
            max,
            bucket: None,
            pending: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Adds a row of `bucket`; false when `max` keys are certain and no older row is
    /// needed.
    pub(crate) fn push(&mut self, bucket: i64, keys: impl Iterator<Item = LogKey>) -> bool {
        if self.bucket != Some(bucket) {
            self.settle();
            if self.out.len() >= self.max {
                return false;
            }
            self.bucket = Some(bucket);
        }
        let (since, before) = (self.since, self.before);
        self.pending
            .extend(keys.filter(|k| k.time >= since && *k < before));
        true
    }

    fn settle(&mut self) {
        self.pending.sort_unstable_by(|a, b| b.cmp(a));
        let room = self.max.saturating_sub(self.out.len());
        self.out.extend(self.pending.drain(..).take(room));
    }

    /// The newest `max` keys, newest first.
    pub(crate) fn finish(mut self) -> Vec<LogKey> {
        self.settle();
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(time: i64, seq: u64) -> LogKey {
        LogKey { time, seq }
    }

    #[test]
    fn packed_keys_round_trip_and_a_torn_row_is_refused() {
        let keys = [k(1, 2), k(-5, u64::MAX), k(i64::MAX, 0)];
        let mut raw = Vec::new();
        pack(&keys, &mut raw);
        assert_eq!(count(&raw), 3);
        assert_eq!(unpack(&raw).unwrap().collect::<Vec<_>>(), keys);
        assert!(unpack(&raw[..17]).is_none());
    }

    #[test]
    fn newest_first_merges_rows_of_one_bucket_and_stops_at_max() {
        let b = BUCKET_NANOS;
        // Bucket 3 has two rows (two batches, interleaved times); bucket 2 one.
        let mut w = NewestFirst::new(0, k(4 * b, 0), 4);
        assert!(w.push(3, [k(3 * b + 1, 1), k(3 * b + 9, 3)].into_iter()));
        assert!(w.push(3, [k(3 * b + 5, 2)].into_iter()));
        assert!(w.push(2, [k(2 * b + 7, 0), k(2 * b + 8, 4)].into_iter()));
        // Four keys are certain once bucket 2 is complete: bucket 1 is not needed.
        assert!(!w.push(1, [k(b, 9)].into_iter()));
        assert_eq!(
            w.finish(),
            [
                k(3 * b + 9, 3),
                k(3 * b + 5, 2),
                k(3 * b + 1, 1),
                k(2 * b + 8, 4)
            ]
        );
        // Bounds: `before` excludes, `since` includes.
        let mut w = NewestFirst::new(3 * b + 1, k(3 * b + 9, 3), 10);
        w.push(
            3,
            [k(3 * b + 1, 1), k(3 * b + 9, 3), k(3 * b + 9, 2)].into_iter(),
        );
        w.push(3, [k(3 * b, 7)].into_iter());
        assert_eq!(w.finish(), [k(3 * b + 9, 2), k(3 * b + 1, 1)]);
    }
}
