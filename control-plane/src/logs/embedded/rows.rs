//! Index rows of closed blocks: per (block, field, bucket of the value's hash) one row
//! holding, for each value of that bucket, the keys of its records in the block.
//!
//! Why: a B-tree insert costs the same ~µs whether its key lands in order or not, so
//! writing a closed block's ~4 entries per record one by one cost as much as before
//! (measured). Rows make a block's index [`BUCKETS`] inserts per field instead of one per
//! record; a search reads one row per block (a point look-up) and skips the other values
//! in it by their counts.
//!
//! Row layout, repeated per value: value length (u16 BE), value, key count (u32 BE), then
//! each key as time (sign bit flipped) and seq, u64 BE, ascending. A value may appear in
//! more than one group of a row (rows are only appended to); readers merge them.
//!
//! The bucket hash is FNV-1a, fixed (rows must be found again after a restart). A data
//! plane choosing values that share a bucket makes that row longer, never more than the
//! block's entries of one field.

use std::collections::HashSet;

/// Buckets per (block, field): a block's ~30k client addresses or request ids make rows of
/// ~30 keys, so a search reads a few hundred bytes per block and a deletion rewrites a
/// row per deleted record at most.
pub(super) const BUCKETS: u64 = 1024;

/// Record keys `(time, seq)`.
type Key = (i64, u64);

/// The 64-bit FNV-1a hash of a value: its bucket, and the order of values within one
/// when a block is flushed (two values with the same hash may then interleave: they
/// become more groups of a row, which readers merge).
pub(super) fn hash(value: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in value.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The bucket of a value's [`hash`].
pub(super) fn bucket(hash: u64) -> u16 {
    (hash % BUCKETS) as u16
}

/// The table key of a row: block, field slot, bucket, big-endian (block order first).
pub(super) fn row_key(block: u64, slot: usize, bucket: u16) -> [u8; 11] {
    let mut k = [0u8; 11];
    k[..8].copy_from_slice(&block.to_be_bytes());
    k[8] = slot as u8;
    k[9..].copy_from_slice(&bucket.to_be_bytes());
    k
}

/// Appends a group: `value` and its keys (ascending).
pub(super) fn append(row: &mut Vec<u8>, value: &str, keys: &[Key]) {
    let len = value.len().min(usize::from(u16::MAX));
    row.extend_from_slice(&(len as u16).to_be_bytes());
    row.extend_from_slice(&value.as_bytes()[..len]);
    row.extend_from_slice(&(keys.len() as u32).to_be_bytes());
    for &(t, s) in keys {
        row.extend_from_slice(&((t as u64) ^ (1 << 63)).to_be_bytes());
        row.extend_from_slice(&s.to_be_bytes());
    }
}

/// The groups of a row: `(value, keys bytes)`; `None` at a torn row.
fn groups(row: &[u8]) -> impl Iterator<Item = Option<(&[u8], &[u8])>> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        if pos >= row.len() {
            return None;
        }
        let group = (|| {
            let len = usize::from(u16::from_be_bytes(row.get(pos..pos + 2)?.try_into().ok()?));
            let value = row.get(pos + 2..pos + 2 + len)?;
            let at = pos + 2 + len;
            let n = u32::from_be_bytes(row.get(at..at + 4)?.try_into().ok()?) as usize;
            let keys = row.get(at + 4..at + 4 + n.checked_mul(16)?)?;
            pos = at + 4 + keys.len();
            Some((value, keys))
        })();
        if group.is_none() {
            pos = row.len();
        }
        Some(group)
    })
}

fn decode_key(b: &[u8]) -> Key {
    let mut t = [0u8; 8];
    let mut s = [0u8; 8];
    t.copy_from_slice(&b[..8]);
    s.copy_from_slice(&b[8..16]);
    (
        (u64::from_be_bytes(t) ^ (1 << 63)) as i64,
        u64::from_be_bytes(s),
    )
}

/// The keys of `value` in a row, ascending; `None` if the row is torn.
pub(super) fn keys_of(row: &[u8], value: &str) -> Option<Vec<Key>> {
    let mut out = Vec::new();
    let mut groups_found = 0;
    for g in groups(row) {
        let (v, keys) = g?;
        if v == value.as_bytes() {
            groups_found += 1;
            out.extend(keys.chunks_exact(16).map(decode_key));
        }
    }
    if groups_found > 1 {
        out.sort_unstable();
    }
    Some(out)
}

/// Keys in a row; `None` if it is torn.
pub(super) fn count(row: &[u8]) -> Option<u64> {
    groups(row)
        .map(|g| g.map(|(_, k)| k.len() as u64 / 16))
        .sum()
}

/// The row without the entries `gone` (value, key), and how many of them it held;
/// `None` if the row is torn.
pub(super) fn without(row: &[u8], gone: &HashSet<(&str, Key)>) -> Option<(Vec<u8>, usize)> {
    let mut out = Vec::with_capacity(row.len());
    let mut removed = 0;
    for g in groups(row) {
        let (v, keys) = g?;
        let value = std::str::from_utf8(v).ok()?;
        let kept: Vec<Key> = keys
            .chunks_exact(16)
            .map(decode_key)
            .filter(|k| !gone.contains(&(value, *k)))
            .collect();
        removed += keys.len() / 16 - kept.len();
        if !kept.is_empty() {
            append(&mut out, value, &kept);
        }
    }
    Some((out, removed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_merge_groups_and_lose_deleted_entries() {
        let mut row = Vec::new();
        append(&mut row, "10.0.0.1", &[(-5, 1), (7, 3)]);
        append(&mut row, "10.0.0.2", &[(6, 2)]);
        // A second group of the first value (appended later): merged in order.
        append(&mut row, "10.0.0.1", &[(1, 9)]);
        assert_eq!(
            keys_of(&row, "10.0.0.1").unwrap(),
            [(-5, 1), (1, 9), (7, 3)]
        );
        assert_eq!(keys_of(&row, "10.0.0.3").unwrap(), []);
        assert_eq!(count(&row), Some(4));
        let gone = HashSet::from([("10.0.0.1", (7, 3)), ("10.0.0.2", (6, 2)), ("x", (1, 1))]);
        let (left, removed) = without(&row, &gone).unwrap();
        assert_eq!(removed, 2);
        assert_eq!(keys_of(&left, "10.0.0.1").unwrap(), [(-5, 1), (1, 9)]);
        assert_eq!(keys_of(&left, "10.0.0.2").unwrap(), []);
        assert_eq!(count(&left), Some(2));
        // A torn row is refused, not misread.
        assert_eq!(keys_of(&row[..row.len() - 3], "10.0.0.2"), None);
        assert_eq!(count(&row[..5]), None);
        assert!(bucket(hash("10.0.0.1")) < BUCKETS as u16);
        assert_eq!(row_key(2, 1, 3), [0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 3]);
    }
}
