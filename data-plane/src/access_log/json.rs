//! The stdout sink's JSON line, written by hand into a reused buffer.
//!
//! Field names, order and escaping are those of serde_json on the same fields (empty
//! optional fields left out), which the tests check, at a fraction of its cost: no
//! per-field dispatch, escaping that copies runs of plain bytes found eight at a time, and a
//! timestamp whose date and time of day are formatted once per second per thread.
//!
//! String values are taken as bytes, as [`Strings`] holds them, with no UTF-8 check: they
//! are valid UTF-8 by construction ([`Strings`]' invariant; the [`Fixed`] strings are
//! `&str`, and the node id is escaped from one once per process, [`node_id_field`]), and escaping never splits a multi-byte character (it only acts on
//! ASCII bytes, which never occur inside one), so the line is valid UTF-8 too.

use std::cell::Cell;

use super::strings::Text;
use super::{Fixed, Strings};

/// `,"name":` as one byte string, so a field's name is one copy.
macro_rules! key {
    ($name:literal) => {
        concat!(",\"", $name, "\":").as_bytes()
    };
}

/// `,"node_id":"…"` for `node_id`, escaped: what [`write_line`] takes, made once.
pub(super) fn node_id_field(node_id: &str) -> Vec<u8> {
    let mut out = Vec::new();
    str_field(&mut out, key!("node_id"), node_id.as_bytes());
    out
}

/// Appends the record `f` and `s` (named by `node_id`, a [`node_id_field`]) as one JSON
/// line (newline included) to `out`.
pub(super) fn write_line(out: &mut Vec<u8>, node_id: &[u8], f: &Fixed<'_>, s: &Strings) {
    // Room for the fixed part (names, numbers, time) and the values unescaped (the encoded
    // strings are at least as long): one capacity check per line rather than one per piece
    // (escapes may still grow it).
    out.reserve(640 + node_id.len() + f.method.len() + s.encoded().len());
    out.extend_from_slice(b"{\"time\":\"");
    write_time(out, f.time_unix_nanos);
    out.push(b'"');
    out.extend_from_slice(node_id);
    plain_field(out, key!("listener"), f.listener.as_bytes());
    plain_field(out, key!("client_ip"), s.get(Text::ClientIp));
    num_field(out, key!("client_port"), u64::from(f.client_port));
    plain_field(out, key!("method"), f.method.as_bytes());
    str_field(out, key!("host"), s.get(Text::Host));
    str_field(out, key!("path"), s.get(Text::Path));
    opt_str_field(out, key!("query"), s.get(Text::Query));
    plain_field(out, key!("http_version"), f.http_version.as_bytes());
    num_field(out, key!("status"), u64::from(f.status));
    num_field(out, key!("request_body_bytes"), f.request_body_bytes);
    num_field(out, key!("response_body_bytes"), f.response_body_bytes);
    num_field(out, key!("duration_us"), f.duration_micros);
    num_field(out, key!("upstream_ttfb_us"), f.upstream_ttfb_micros);
    opt_str_field(out, key!("upstream"), s.get(Text::Upstream));
    opt_str_field(out, key!("proxy"), s.get(Text::Proxy));
    opt_str_field(out, key!("route"), s.get(Text::Route));
    plain_field(out, key!("auth"), f.auth.as_bytes());
    opt_str_field(out, key!("auth_reason"), s.get(Text::AuthReason));
    opt_str_field(out, key!("user"), s.get(Text::User));
    opt_str_field(out, key!("client_id"), s.get(Text::ClientId));
    plain_field(out, key!("request_id"), s.get(Text::RequestId));
    let trace_id = s.get(Text::TraceId);
    if !trace_id.is_empty() {
        plain_field(out, key!("trace_id"), trace_id);
    }
    opt_str_field(out, key!("user_agent"), s.get(Text::UserAgent));
    opt_str_field(out, key!("mcp_session_id"), s.get(Text::McpSessionId));
    opt_str_field(out, key!("proxy_authority"), s.get(Text::ProxyAuthority));
    opt_str_field(out, key!("proxy_unique_id"), s.get(Text::ProxyUniqueId));
    opt_str_field(out, key!("proxy_alpn"), s.get(Text::ProxyAlpn));
    opt_str_field(out, key!("proxy_ssl_version"), s.get(Text::ProxySslVersion));
    if f.proxy_ssl_client != 0 || f.proxy_ssl_verify != 0 {
        num_field(out, key!("proxy_ssl_client"), u64::from(f.proxy_ssl_client));
        num_field(out, key!("proxy_ssl_verify"), u64::from(f.proxy_ssl_verify));
    }
    out.extend_from_slice(b"}\n");
}

fn str_field(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.extend_from_slice(key);
    escape(out, value);
}

fn opt_str_field(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    if !value.is_empty() {
        str_field(out, key, value);
    }
}

/// A field whose value is one of a fixed set written by this crate (listener, version,
/// auth), an address it formatted (client), or a token it checked (method: `http::Method`'s
/// token characters; request id: `[A-Za-z0-9._~:+/=-]` or hex; trace id: hex): nothing to
/// escape.
fn plain_field(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    debug_assert_eq!(plain_prefix(value), value.len());
    out.extend_from_slice(key);
    out.push(b'"');
    out.extend_from_slice(value);
    out.push(b'"');
}

fn num_field(out: &mut Vec<u8>, key: &[u8], value: u64) {
    out.extend_from_slice(key);
    padded(out, value, 1);
}

/// How many leading bytes of `bytes` need no escaping: not `"`, not `\`, not a control
/// character. Eight bytes at a time; the last few (most values are short) as one more
/// word, padded or overlapping the one before, so a plain value is never scanned byte by
/// byte; only the word with a byte to escape is.
fn plain_prefix(bytes: &[u8]) -> usize {
    let mut i = 0;
    while let Some(chunk) = bytes.get(i..i + 8) {
        if needs_escape(chunk) {
            return i + first_to_escape(&bytes[i..i + 8]);
        }
        i += 8;
    }
    let rest = &bytes[i..];
    if rest.is_empty() {
        return i;
    }
    // The last 0–7 bytes: the final eight (overlapping plain bytes already seen), else
    // padded with a plain byte.
    let last = if let Some(tail) = bytes.len().checked_sub(8).map(|at| &bytes[at..]) {
        needs_escape(tail)
    } else {
        let mut word = [b'a'; 8];
        word[..rest.len()].copy_from_slice(rest);
        needs_escape(&word)
    };
    if last {
        i + first_to_escape(rest)
    } else {
        bytes.len()
    }
}

/// Whether any of eight bytes needs escaping (SWAR: a word has such a byte iff one of three
/// zero-byte tests fires; the tests are exact for presence, not for position).
#[inline]
fn needs_escape(eight: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut word = [0u8; 8];
    word.copy_from_slice(eight);
    let w = u64::from_le_bytes(word);
    let control = w.wrapping_sub(ONES * 0x20) & !w;
    let q = w ^ (ONES * u64::from(b'"'));
    let quote = q.wrapping_sub(ONES) & !q;
    let b = w ^ (ONES * u64::from(b'\\'));
    let backslash = b.wrapping_sub(ONES) & !b;
    (control | quote | backslash) & HIGH != 0
}

/// The index of the first byte of `bytes` that needs escaping, or its length.
fn first_to_escape(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
        .unwrap_or(bytes.len())
}

/// `value` as a quoted JSON string, escaped as serde_json does: `"` and `\`, the short
/// forms `\b \t \n \f \r`, other control characters as `\u00xx`; everything else (UTF-8
/// included) copied in runs.
fn escape(out: &mut Vec<u8>, value: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = value;
    out.push(b'"');
    loop {
        let run = plain_prefix(bytes);
        out.extend_from_slice(&bytes[..run]);
        let Some((&b, rest)) = bytes[run..].split_first() else {
            break;
        };
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            b'\t' => b't',
            b'\n' => b'n',
            0x0c => b'f',
            b'\r' => b'r',
            _ => b'u',
        };
        if short == b'u' {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', short]);
        }
        bytes = rest;
    }
    out.push(b'"');
}

thread_local! {
    /// The last second formatted on this thread and its `YYYY-MM-DDTHH:MM:SS.` text.
    static SECOND: Cell<(i64, [u8; 20])> = const { Cell::new((i64::MIN, [0; 20])) };
}

/// `2026-12-07T03:38:00.123456789Z` from Unix nanoseconds (UTC, proleptic Gregorian). The
/// part up to the seconds is formatted once per second per thread.
fn write_time(out: &mut Vec<u8>, nanos: i64) {
    let secs = nanos.div_euclid(1_000_000_000);
    let sub = nanos.rem_euclid(1_000_000_000) as u64;
    let (cached, text) = SECOND.get();
    if cached == secs {
        out.extend_from_slice(&text);
    } else {
        let start = out.len();
        write_second(out, secs);
        if let Ok(text) = <[u8; 20]>::try_from(&out[start..]) {
            SECOND.set((secs, text));
        }
    }
    padded(out, sub, 9);
    out.push(b'Z');
}

/// `YYYY-MM-DDTHH:MM:SS.` of Unix second `secs`.
fn write_second(out: &mut Vec<u8>, secs: i64) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u64;
    let (y, m, d) = civil_from_days(days);
    if y < 0 {
        out.push(b'-');
    }
    padded(out, y.unsigned_abs(), if y < 0 { 3 } else { 4 });
    out.push(b'-');
    padded(out, u64::from(m), 2);
    out.push(b'-');
    padded(out, u64::from(d), 2);
    out.push(b'T');
    padded(out, rem / 3600, 2);
    out.push(b':');
    padded(out, rem % 3600 / 60, 2);
    out.push(b':');
    padded(out, rem % 60, 2);
    out.push(b'.');
}

/// Appends `v` zero-padded to `width` digits (more when it is wider).
fn padded(out: &mut Vec<u8>, v: u64, width: usize) {
    // Two digits per division, from a table of "00".."99".
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    let mut v = v;
    while v >= 100 {
        let pair = (v % 100) as usize * 2;
        v /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if v >= 10 {
        let pair = v as usize * 2;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        i -= 1;
        buf[i] = b'0' + v as u8;
    }
    let start = i.min(buf.len() - width);
    out.extend_from_slice(&buf[start..]);
}

/// Howard Hinnant's days-to-civil algorithm.
pub(super) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_prefix_stops_at_the_first_byte_to_escape() {
        // Every length (whole words, a padded tail, an overlapping tail), every position,
        // and a second such byte after the first.
        for len in 0..=40 {
            let mut s = vec![b'a'; len];
            assert_eq!(plain_prefix(&s), len);
            for bad in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                for at in 0..len {
                    s[at] = bad;
                    assert_eq!(plain_prefix(&s), at, "{bad:#x} at {at} of {len}");
                    if let Some(next) = s.get_mut(at + 1..).and_then(|r| r.last_mut()) {
                        *next = b'"';
                        assert_eq!(
                            plain_prefix(&s),
                            at,
                            "{bad:#x} at {at} of {len}, then one more"
                        );
                        s[len - 1] = b'a';
                    }
                    s[at] = b'a';
                }
            }
        }
        // High bytes (UTF-8) and DEL are copied as they are.
        let high = "é😀\u{7f} !#[]~ and more than eight bytes";
        assert_eq!(plain_prefix(high.as_bytes()), high.len());
    }

    #[test]
    fn numbers_are_their_decimal_text() {
        let mut samples = vec![0, 1, 9, 10, 99, 100, 101, 999, 1000, u64::MAX, u64::MAX - 1];
        samples.extend((0..20).map(|p| 10u64.pow(p)));
        samples.extend((1..20).map(|p| 10u64.pow(p) - 1));
        for v in samples {
            for width in [1, 2, 4, 9] {
                let mut out = Vec::new();
                padded(&mut out, v, width);
                assert_eq!(
                    String::from_utf8(out).expect("ascii"),
                    format!("{v:0width$}")
                );
            }
        }
    }

    #[test]
    fn the_cached_second_is_the_same_text() {
        for nanos in [
            1_796_614_680_123_456_789,
            1_796_614_680_999_999_999,
            1_796_614_681_000_000_001,
        ] {
            let mut cached = Vec::new();
            write_time(&mut cached, nanos);
            write_time(&mut cached, nanos);
            let mut fresh = Vec::new();
            SECOND.set((i64::MIN, [0; 20]));
            write_time(&mut fresh, nanos);
            fresh.extend_from_slice(&fresh.clone());
            assert_eq!(cached, fresh);
        }
    }
}
