//! The stdout sink's JSON line, written by hand into a reused buffer.
//!
//! Field names, order and escaping are those of serde_json on the same fields (empty
//! optional fields left out), which the tests check, at a fraction of its cost: no
//! per-field dispatch, escaping that copies runs of plain bytes found eight at a time, and a
//! timestamp whose date and time of day are formatted once per second per thread.

use std::cell::Cell;

use super::Fields;

/// `,"name":` as one byte string, so a field's name is one copy.
macro_rules! key {
    ($name:literal) => {
        concat!(",\"", $name, "\":").as_bytes()
    };
}

/// Appends `f` as one JSON line (newline included) to `out`.
pub(super) fn write_line(out: &mut Vec<u8>, node_id: &str, f: &Fields<'_>) {
    // Room for the fixed part (names, numbers, time) and the values unescaped: one
    // capacity check per line rather than one per piece (escapes may still grow it).
    out.reserve(
        640 + node_id.len()
            + f.client_ip.len()
            + f.host.len()
            + f.path.len()
            + f.query.len()
            + f.upstream.len()
            + f.proxy.len()
            + f.route.len()
            + f.user.len()
            + f.client_id.len()
            + f.request_id.len()
            + f.user_agent.len()
            + f.mcp_session_id.len(),
    );
    out.extend_from_slice(b"{\"time\":\"");
    write_time(out, f.time_unix_nanos);
    out.push(b'"');
    str_field(out, key!("node_id"), node_id);
    plain_field(out, key!("listener"), f.listener);
    plain_field(out, key!("client_ip"), f.client_ip);
    num_field(out, key!("client_port"), u64::from(f.client_port));
    plain_field(out, key!("method"), f.method);
    str_field(out, key!("host"), f.host);
    str_field(out, key!("path"), f.path);
    opt_str_field(out, key!("query"), f.query);
    plain_field(out, key!("http_version"), f.http_version);
    num_field(out, key!("status"), u64::from(f.status));
    num_field(out, key!("request_body_bytes"), f.request_body_bytes);
    num_field(out, key!("response_body_bytes"), f.response_body_bytes);
    num_field(out, key!("duration_us"), f.duration_micros);
    num_field(out, key!("upstream_ttfb_us"), f.upstream_ttfb_micros);
    opt_str_field(out, key!("upstream"), f.upstream);
    opt_str_field(out, key!("proxy"), f.proxy);
    opt_str_field(out, key!("route"), f.route);
    plain_field(out, key!("auth"), f.auth);
    opt_str_field(out, key!("auth_reason"), f.auth_reason);
    opt_str_field(out, key!("user"), f.user);
    opt_str_field(out, key!("client_id"), f.client_id);
    plain_field(out, key!("request_id"), f.request_id);
    if !f.trace_id.is_empty() {
        plain_field(out, key!("trace_id"), f.trace_id);
    }
    opt_str_field(out, key!("user_agent"), f.user_agent);
    opt_str_field(out, key!("mcp_session_id"), f.mcp_session_id);
    opt_str_field(out, key!("proxy_authority"), f.proxy_authority);
    opt_str_field(out, key!("proxy_unique_id"), f.proxy_unique_id);
    opt_str_field(out, key!("proxy_alpn"), f.proxy_alpn);
    opt_str_field(out, key!("proxy_ssl_version"), f.proxy_ssl_version);
    if f.proxy_ssl_client != 0 || f.proxy_ssl_verify != 0 {
        num_field(out, key!("proxy_ssl_client"), u64::from(f.proxy_ssl_client));
        num_field(out, key!("proxy_ssl_verify"), u64::from(f.proxy_ssl_verify));
    }
    out.extend_from_slice(b"}\n");
}

fn str_field(out: &mut Vec<u8>, key: &[u8], value: &str) {
    out.extend_from_slice(key);
    escape(out, value);
}

fn opt_str_field(out: &mut Vec<u8>, key: &[u8], value: &str) {
    if !value.is_empty() {
        str_field(out, key, value);
    }
}

/// A field whose value is one of a fixed set written by this crate (listener, version,
/// auth), an address it formatted, or a token it checked (method: `http::Method`'s token
/// characters; request id: `[A-Za-z0-9._~:+/=-]` or hex; trace id: hex): nothing to escape.
fn plain_field(out: &mut Vec<u8>, key: &[u8], value: &str) {
    debug_assert_eq!(plain_prefix(value.as_bytes()), value.len());
    out.extend_from_slice(key);
    out.push(b'"');
    out.extend_from_slice(value.as_bytes());
    out.push(b'"');
}

fn num_field(out: &mut Vec<u8>, key: &[u8], value: u64) {
    out.extend_from_slice(key);
    padded(out, value, 1);
}

/// How many leading bytes of `bytes` need no escaping: not `"`, not `\`, not a control
/// character. Eight bytes at a time (SWAR: a word has such a byte iff one of three
/// zero-byte tests fires), then byte by byte from the word that has one.
fn plain_prefix(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let control = w.wrapping_sub(ONES * 0x20) & !w;
        let quote =
            (w ^ (ONES * u64::from(b'"'))).wrapping_sub(ONES) & !(w ^ (ONES * u64::from(b'"')));
        let backslash =
            (w ^ (ONES * u64::from(b'\\'))).wrapping_sub(ONES) & !(w ^ (ONES * u64::from(b'\\')));
        if (control | quote | backslash) & HIGH != 0 {
            break;
        }
        i += 8;
    }
    while let Some(&b) = bytes.get(i) {
        if b < 0x20 || b == b'"' || b == b'\\' {
            break;
        }
        i += 1;
    }
    i
}

/// `value` as a quoted JSON string, escaped as serde_json does: `"` and `\`, the short
/// forms `\b \t \n \f \r`, other control characters as `\u00xx`; everything else (UTF-8
/// included) copied in runs.
fn escape(out: &mut Vec<u8>, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = value.as_bytes();
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
        let mut s = vec![b'a'; 40];
        assert_eq!(plain_prefix(&s), 40);
        for bad in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
            for at in 0..40 {
                s[at] = bad;
                assert_eq!(plain_prefix(&s), at, "{bad:#x} at {at}");
                s[at] = b'a';
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
