//! The control-plane sink's wire form, written by hand: each record encoded once, at the
//! end of its request, as one `records` entry of an `AccessLogBatch` (field 1, length
//! delimited). Such entries concatenate into a batch as they are; the shipper appends the
//! batch's position (`stream`, `first_seq`, `dropped_total`) and sends the bytes without decoding or copying records again.
//!
//! [`write_record`]'s bytes equal prost's encoding of the same `AccessLogRecord` (fields in
//! number order, proto3 defaults left out); [`write_encoded`]'s (the request path's: the
//! strings arrive already encoded, in the order they were learnt) decode to the same
//! record. The tests check both.

use super::{Encoded, Fields};

/// Appends `f` (named by `node_id`) as one `AccessLogBatch.records` entry.
pub(super) fn write_record(out: &mut Vec<u8>, node_id: &str, f: &Fields<'_>) {
    out.push(0x0a);
    // The record's length comes first: room for a 3-byte varint (records up to 2 MiB),
    // closed up once the length is known.
    let at = out.len();
    out.extend_from_slice(&[0; 3]);
    write_fields(out, node_id, f);
    close_length(out, at);
}

/// Appends `e` (named by `node_id`) as one `AccessLogBatch.records` entry: its fixed
/// fields, then its already encoded strings as they are (one copy). Decodes to the same
/// record as [`write_record`] of the same fields (the bytes differ in field order).
pub(crate) fn write_encoded(out: &mut Vec<u8>, node_id: &str, e: &Encoded<'_>) {
    // Everything below fits: one capacity check instead of one per piece.
    out.reserve(
        4 + 11 * 16
            + node_id.len()
            + e.listener.len()
            + e.method.len()
            + e.http_version.len()
            + e.auth.len()
            + e.strings.len(),
    );
    out.push(0x0a);
    let at = out.len();
    out.extend_from_slice(&[0; 3]);
    if e.time_unix_nanos != 0 {
        out.push(1 << 3);
        varint(out, e.time_unix_nanos as u64);
    }
    string(out, 2, node_id);
    string(out, 3, e.listener);
    uint(out, 5, u64::from(e.client_port));
    string(out, 6, e.method);
    string(out, 10, e.http_version);
    uint(out, 11, u64::from(e.status));
    uint(out, 12, e.request_body_bytes);
    uint(out, 13, e.response_body_bytes);
    uint(out, 14, e.duration_micros);
    uint(out, 15, e.upstream_ttfb_micros);
    string(out, 19, e.auth);
    uint(out, 31, u64::from(e.proxy_ssl_client));
    uint(out, 32, u64::from(e.proxy_ssl_verify));
    out.extend_from_slice(e.strings);
    close_length(out, at);
}

/// Appends string field `number` (tag, length, `value`) even when empty: what a field
/// set again to nothing needs, so that its last occurrence is the empty one.
pub(crate) fn string_field(out: &mut Vec<u8>, number: u32, value: &[u8]) {
    string_head(out, number, value.len());
    out.extend_from_slice(value);
}

/// Appends the tag and length of string field `number` whose `len` bytes follow.
pub(crate) fn string_head(out: &mut Vec<u8>, number: u32, len: usize) {
    varint(out, u64::from(number << 3 | 2));
    varint(out, len as u64);
}

/// Fills in the 3 bytes reserved at `at` with the length of what follows them, as a
/// varint (moving the rest when it takes fewer or more bytes).
fn close_length(out: &mut Vec<u8>, at: usize) {
    let len = out.len() - at - 3;
    let mut varint = [0u8; 10];
    let n = encode_varint(&mut varint, len as u64);
    if n <= 3 {
        out.copy_within(at + 3.., at + n);
        out.truncate(out.len() - (3 - n));
        out[at..at + n].copy_from_slice(&varint[..n]);
    } else {
        out.splice(at..at + 3, varint[..n].iter().copied());
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

fn write_fields(out: &mut Vec<u8>, node_id: &str, f: &Fields<'_>) {
    if f.time_unix_nanos != 0 {
        out.push(1 << 3);
        // int64: negative values as their 64-bit two's complement.
        varint(out, f.time_unix_nanos as u64);
    }
    string(out, 2, node_id);
    string(out, 3, f.listener);
    string(out, 4, f.client_ip);
    uint(out, 5, u64::from(f.client_port));
    string(out, 6, f.method);
    string(out, 7, f.host);
    string(out, 8, f.path);
    string(out, 9, f.query);
    string(out, 10, f.http_version);
    uint(out, 11, u64::from(f.status));
    uint(out, 12, f.request_body_bytes);
    uint(out, 13, f.response_body_bytes);
    uint(out, 14, f.duration_micros);
    uint(out, 15, f.upstream_ttfb_micros);
    string(out, 16, f.upstream);
    string(out, 17, f.proxy);
    string(out, 18, f.route);
    string(out, 19, f.auth);
    string(out, 20, f.auth_reason);
    string(out, 21, f.user);
    string(out, 22, f.client_id);
    string(out, 23, f.request_id);
    string(out, 24, f.trace_id);
    string(out, 25, f.user_agent);
    string(out, 26, f.mcp_session_id);
    string(out, 27, f.proxy_authority);
    string(out, 28, f.proxy_unique_id);
    string(out, 29, f.proxy_alpn);
    string(out, 30, f.proxy_ssl_version);
    uint(out, 31, u64::from(f.proxy_ssl_client));
    uint(out, 32, u64::from(f.proxy_ssl_verify));
}

/// Field `number` (wire type 0), unless 0.
fn uint(out: &mut Vec<u8>, number: u32, v: u64) {
    if v != 0 {
        varint(out, u64::from(number << 3));
        varint(out, v);
    }
}

/// Field `number` (wire type 2), unless empty.
fn string(out: &mut Vec<u8>, number: u32, s: &str) {
    if !s.is_empty() {
        varint(out, u64::from(number << 3 | 2));
        varint(out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }
}

fn varint(out: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        out.push(v as u8);
        return;
    }
    let mut buf = [0u8; 10];
    let n = encode_varint(&mut buf, v);
    out.extend_from_slice(&buf[..n]);
}

fn encode_varint(buf: &mut [u8; 10], mut v: u64) -> usize {
    let mut n = 0;
    while v >= 0x80 {
        buf[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    buf[n] = v as u8;
    n + 1
}
