//! The control-plane sink's wire form, written by hand: each record encoded once, at the
//! end of its request, as one `records` entry of an `AccessLogBatch` (field 1, length
//! delimited). Such entries concatenate into a batch as they are; the shipper appends the
//! batch's position (`stream`, `first_seq`, `dropped_total`) and sends the bytes without
//! decoding or copying records again.
//!
//! A record is its fixed fields ([`Fixed`]: numbers first, then `node_id`, encoded once per
//! process, and the four short strings) followed by its free-form strings as they are ([`Strings`]: already protobuf
//! fields, one copy). The field order differs from prost's (number order), so the bytes do
//! too; the decoded record is the same, which the tests check against prost.
//!
//! **Costs.** The record's length is known before anything is written (the numbers are
//! encoded into a stack buffer first), so nothing is moved to close it up; every piece is
//! one copy into a buffer reserved once.

use super::{Fixed, Strings};

/// `AccessLogRecord.node_id` (field 2) for `node_id`, or nothing when it is empty: what
/// [`write_record`] takes, made once.
pub(super) fn node_id_field(node_id: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if !node_id.is_empty() {
        string_head(&mut out, 2, node_id.len());
        out.extend_from_slice(node_id.as_bytes());
    }
    out
}

/// Appends one `AccessLogBatch.records` entry: `f` and `strings`, named by `node_id` (a
/// [`node_id_field`]).
pub(super) fn write_record(out: &mut Vec<u8>, node_id: &[u8], f: &Fixed<'_>, strings: &Strings) {
    let mut numbers = Numbers::default();
    if f.time_unix_nanos != 0 {
        // int64: a negative value as its 64-bit two's complement.
        numbers.field(1, f.time_unix_nanos as u64);
    }
    numbers.field(5, u64::from(f.client_port));
    numbers.field(11, u64::from(f.status));
    numbers.field(12, f.request_body_bytes);
    numbers.field(13, f.response_body_bytes);
    numbers.field(14, f.duration_micros);
    numbers.field(15, f.upstream_ttfb_micros);
    numbers.field(31, u64::from(f.proxy_ssl_client));
    numbers.field(32, u64::from(f.proxy_ssl_verify));
    let short = [
        (3, f.listener),
        (6, f.method),
        (10, f.http_version),
        (19, f.auth),
    ];
    let strings = strings.encoded();
    let len = numbers.len
        + node_id.len()
        + short
            .iter()
            .map(|&(number, s)| string_len(number, s))
            .sum::<usize>()
        + strings.len();
    out.reserve(1 + 10 + len);
    out.push(0x0a);
    varint(out, len as u64);
    out.extend_from_slice(&numbers.buf[..numbers.len]);
    out.extend_from_slice(node_id);
    for (number, s) in short {
        if !s.is_empty() {
            string_head(out, number, s.len());
            out.extend_from_slice(s.as_bytes());
        }
    }
    out.extend_from_slice(strings);
}

/// A record's number fields, encoded on the stack (their length is needed first).
struct Numbers {
    /// Nine fields at most: a 2-byte tag and a 10-byte varint each.
    buf: [u8; 9 * 12],
    len: usize,
}

impl Default for Numbers {
    fn default() -> Self {
        Self {
            buf: [0; 9 * 12],
            len: 0,
        }
    }
}

impl Numbers {
    /// Field `number` (wire type 0), unless 0 (proto3 leaves it out).
    #[inline]
    fn field(&mut self, number: u32, v: u64) {
        if v != 0 {
            self.varint(u64::from(number << 3));
            self.varint(v);
        }
    }

    #[inline]
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf[self.len] = (v as u8) | 0x80;
            self.len += 1;
            v >>= 7;
        }
        self.buf[self.len] = v as u8;
        self.len += 1;
    }
}

/// Bytes string field `number` takes as [`write_record`] writes it: none when empty.
#[inline]
fn string_len(number: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else if number < 16 && s.len() < 0x80 {
        // One byte of tag, one of length: the record's short strings.
        2 + s.len()
    } else {
        varint_len(u64::from(number << 3 | 2)) + varint_len(s.len() as u64) + s.len()
    }
}

/// Appends the tag and length of string field `number` whose `len` bytes follow.
#[inline]
fn string_head(out: &mut Vec<u8>, number: u32, len: usize) {
    if number < 16 && len < 0x80 {
        out.extend_from_slice(&[(number << 3 | 2) as u8, len as u8]);
    } else {
        varint(out, u64::from(number << 3 | 2));
        varint(out, len as u64);
    }
}

/// Appends an `AccessLogBatch`'s position fields: `stream` (3), `first_seq` (4) and
/// `dropped_total` (5); zeros are left out, as prost does.
pub(super) fn write_position(
    out: &mut Vec<u8>,
    stream: &[u8; 16],
    first_seq: u64,
    dropped_total: u64,
) {
    out.push(3 << 3 | 2);
    out.push(stream.len() as u8);
    out.extend_from_slice(stream);
    if first_seq != 0 {
        out.push(4 << 3);
        varint(out, first_seq);
    }
    if dropped_total != 0 {
        out.push(5 << 3);
        varint(out, dropped_total);
    }
}

#[inline]
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    // 7 bits per byte; 0 takes one.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_len_is_the_encoded_length() {
        for v in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            varint(&mut out, v);
            assert_eq!(varint_len(v), out.len(), "{v}");
        }
    }
}
