//! Shipped records as bytes: a record a data plane sent is checked on its encoding and,
//! when [`super::sanitize`] would change nothing (every record the data plane writes
//! itself), stored as the bytes received; the fields the stores index are read from those
//! bytes, borrowed. Any other record (a field over its cap, an upper-case host, a
//! credential in the query, a time to stamp, a field twice or unknown, a wrong wire type,
//! invalid UTF-8, a status over 999, …) takes the exact path it always took: decoded,
//! sanitized (or refused) and encoded again. So what is stored decodes to the same record
//! either way, and what a data plane can make the store keep stays bounded by the caps.
//!
//! Cost: one pass over the record's bytes (a UTF-8 check per string, no allocation),
//! instead of two dozen owned strings decoded, then encoded again for the store.

use std::borrow::Cow;
use std::sync::OnceLock;

use bytes::Bytes;
use prost::Message as _;

use super::{Field, HOUR_NANOS, Record, is_secret_param, sanitize};

/// Longest value of each string field of `AccessLogRecord`, by field number: the caps
/// [`sanitize`] applies (`every_string_cap_is_sanitize_s` checks that they agree).
fn string_cap(tag: u32) -> Option<usize> {
    Some(match tag {
        2 => 128,  // node_id
        3 => 16,   // listener
        4 => 64,   // client_ip
        6 => 16,   // method
        7 => 256,  // host
        8 => 4096, // path
        9 => 2048, // query
        10 => 16,  // http_version
        16 => 256, // upstream
        17 => 256, // proxy
        18 => 128, // route
        19 => 16,  // auth
        20 => 128, // auth_reason
        21 => 256, // user
        22 => 256, // client_id
        23 => 128, // request_id
        24 => 64,  // trace_id
        25 => 512, // user_agent
        26 => 256, // mcp_session_id
        27 => 256, // proxy_authority
        28 => 256, // proxy_unique_id
        29 => 64,  // proxy_alpn
        30 => 32,  // proxy_ssl_version
        _ => return None,
    })
}

/// Varint fields of `AccessLogRecord`, by field number.
fn is_varint_field(tag: u32) -> bool {
    matches!(tag, 1 | 5 | 11..=15 | 31 | 32)
}

/// Field numbers of the indexed strings, in [`Shipped::spans`] order.
const SPAN_TAGS: [u32; 5] = [4, 7, 21, 22, 23];
const IP: usize = 0;
const HOST: usize = 1;
const USER: usize = 2;
const CLIENT_ID: usize = 3;
const REQUEST_ID: usize = 4;

/// A record ready to store: its encoding (as received, or re-encoded after sanitizing)
/// and where its indexed fields lie in it.
#[derive(Debug, Clone)]
pub struct Shipped {
    bytes: Bytes,
    time: i64,
    status: u32,
    /// Byte ranges of client_ip, host, user, client_id, request_id (empty: absent).
    spans: [(u32, u32); 5],
}

/// What one pass over a record found, when it is storable as it is.
struct Scan {
    time: i64,
    status: u32,
    spans: [(u32, u32); 5],
}

fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let byte = *b.get(*pos)?;
        *pos += 1;
        // The tenth byte may carry one bit only (prost refuses more).
        if i == 9 && byte > 1 {
            return None;
        }
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

/// One pass over `b`: `Some` when the record is well formed, every field known, once, of
/// its wire type, and [`sanitize`] would neither refuse nor change it.
fn scan(b: &[u8], now: i64) -> Option<Scan> {
    let mut seen = 0u64;
    let mut pos = 0usize;
    let mut out = Scan {
        time: 0,
        status: 0,
        spans: [(0, 0); 5],
    };
    let mut port = 0u32;
    while pos < b.len() {
        let key = varint(b, &mut pos)?;
        let tag = u32::try_from(key >> 3).ok()?;
        if !(1..=32).contains(&tag) || seen & (1 << tag) != 0 {
            return None;
        }
        seen |= 1 << tag;
        match key & 7 {
            0 if is_varint_field(tag) => {
                // As prost converts: int64 and uint32 truncate.
                let v = varint(b, &mut pos)?;
                match tag {
                    1 => out.time = v as i64,
                    5 => port = v as u32,
                    11 => out.status = v as u32,
                    _ => {}
                }
            }
            2 => {
                let cap = string_cap(tag)?;
                let len = usize::try_from(varint(b, &mut pos)?).ok()?;
                let end = pos.checked_add(len).filter(|e| *e <= b.len())?;
                if len > cap {
                    return None;
                }
                let s = std::str::from_utf8(&b[pos..end]).ok()?;
                let clean = match tag {
                    7 | 17 => !s.bytes().any(|c| c.is_ascii_uppercase()),
                    9 => !s.split('&').any(is_secret_param),
                    _ => true,
                };
                if !clean {
                    return None;
                }
                if let Some(i) = SPAN_TAGS.iter().position(|t| *t == tag) {
                    out.spans[i] = (pos as u32, end as u32);
                }
                pos = end;
            }
            _ => return None,
        }
    }
    let timely = out.time > 0 && out.time <= now.saturating_add(HOUR_NANOS);
    (timely && out.status <= 999 && port <= 65535).then_some(out)
}

impl Shipped {
    /// Checks a shipped record at `now` (Unix nanos): stored as received when
    /// [`sanitize`] would change nothing, else decoded, sanitized and encoded again;
    /// `Err` says why it cannot be stored at all.
    pub fn check(bytes: Bytes, now: i64) -> Result<Self, String> {
        if bytes.len() <= u32::MAX as usize
            && let Some(s) = scan(&bytes, now)
        {
            return Ok(Self::new(bytes, s));
        }
        let record = Record::decode(bytes).map_err(|e| format!("undecodable: {e}"))?;
        Self::sanitized(record, now)
    }

    /// Sanitizes `record` at `now` and encodes it for storage.
    pub fn sanitized(record: Record, now: i64) -> Result<Self, String> {
        let bytes = Bytes::from(sanitize(record, now)?.encode_to_vec());
        // A sanitized record is storable as it is (sanitize's output passes the scan).
        match scan(&bytes, now) {
            Some(s) => Ok(Self::new(bytes, s)),
            None => Err("sanitized record not storable (a bug)".into()),
        }
    }

    fn new(bytes: Bytes, s: Scan) -> Self {
        Self {
            bytes,
            time: s.time,
            status: s.status,
            spans: s.spans,
        }
    }

    /// The encoding to store (an `AccessLogRecord`).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// `time_unix_nanos`.
    pub fn time(&self) -> i64 {
        self.time
    }

    fn span(&self, i: usize) -> &str {
        let (a, b) = self.spans[i];
        // Checked UTF-8 by `scan`: the fallback never happens.
        std::str::from_utf8(&self.bytes[a as usize..b as usize]).unwrap_or_default()
    }

    /// `host`.
    pub fn host(&self) -> &str {
        self.span(HOST)
    }

    /// `client_ip`.
    pub fn client_ip(&self) -> &str {
        self.span(IP)
    }

    /// The record itself (for followers).
    pub fn decode(&self) -> Option<Record> {
        Record::decode(self.bytes.clone()).ok()
    }
}

/// A record's indexed fields (stored records are [`Shipped`] on the way in, decoded
/// [`Record`]s on the way out).
pub trait Indexed {
    /// The value of `f`, empty when absent.
    fn field(&self, f: Field) -> &str;
}

impl Indexed for Shipped {
    fn field(&self, f: Field) -> &str {
        match f {
            Field::Ip => self.span(IP),
            Field::Host => self.span(HOST),
            Field::User => self.span(USER),
            Field::ClientId => self.span(CLIENT_ID),
            Field::Status => status_text(self.status),
            Field::RequestId => self.span(REQUEST_ID),
        }
    }
}

impl Indexed for Record {
    fn field(&self, f: Field) -> &str {
        match f {
            Field::Ip => &self.client_ip,
            Field::Host => &self.host,
            Field::User => &self.user,
            Field::ClientId => &self.client_id,
            Field::Status => status_text(self.status),
            Field::RequestId => &self.request_id,
        }
    }
}

/// `status` as decimal text, without allocating for the storable ones (0..=999).
fn status_text(status: u32) -> &'static str {
    static TEXT: OnceLock<Vec<String>> = OnceLock::new();
    let text = TEXT.get_or_init(|| (0..1000).map(|s: u32| s.to_string()).collect());
    text.get(status as usize).map_or("", String::as_str)
}

/// The value `r` is indexed under for `f`; `None` for empty fields (not indexed).
pub(super) fn value<R: Indexed + ?Sized>(f: Field, r: &R) -> Option<Cow<'_, str>> {
    let v = r.field(f);
    (!v.is_empty()).then_some(Cow::Borrowed(v))
}

/// The `node_id` of an encoded record, if it has a well-formed one (for log messages).
pub fn node_id(b: &[u8]) -> Option<&str> {
    let mut pos = 0usize;
    while pos < b.len() {
        let key = varint(b, &mut pos)?;
        match key & 7 {
            0 => {
                varint(b, &mut pos)?;
            }
            2 => {
                let len = usize::try_from(varint(b, &mut pos)?).ok()?;
                let end = pos.checked_add(len).filter(|e| *e <= b.len())?;
                if key >> 3 == 2 {
                    return std::str::from_utf8(&b[pos..end]).ok();
                }
                pos = end;
            }
            1 => pos = pos.checked_add(8)?,
            5 => pos = pos.checked_add(4)?,
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000_000_000;

    fn record() -> Record {
        Record {
            time_unix_nanos: NOW - 1,
            node_id: "dp-1".into(),
            listener: "http".into(),
            client_ip: "10.0.0.1".into(),
            client_port: 40_000,
            method: "GET".into(),
            host: "a.example.com".into(),
            path: "/x".into(),
            query: "a=1&b=2".into(),
            http_version: "HTTP/1.1".into(),
            status: 404,
            request_id: "r-1".into(),
            user: "alice".into(),
            client_id: "cli".into(),
            proxy: "a.example.com".into(),
            proxy_ssl_client: 1,
            ..Default::default()
        }
    }

    fn check(r: &Record) -> Result<Shipped, String> {
        Shipped::check(Bytes::from(r.encode_to_vec()), NOW)
    }

    /// Stored as received exactly when sanitizing changes nothing; either way what is
    /// stored decodes to the sanitized record.
    fn assert_stored_as_sanitized(r: Record, as_received: bool) {
        let sent = Bytes::from(r.encode_to_vec());
        let s = Shipped::check(sent.clone(), NOW).expect("storable");
        assert_eq!(s.bytes() == sent.as_ref(), as_received, "{r:?}");
        assert_eq!(s.decode().unwrap(), sanitize(r, NOW).unwrap());
    }

    #[test]
    fn a_clean_record_is_stored_as_received_and_its_indexed_fields_read_from_its_bytes() {
        let s = check(&record()).unwrap();
        assert_eq!(s.bytes(), record().encode_to_vec().as_slice());
        assert_eq!(s.time(), NOW - 1);
        for f in Field::ALL {
            assert_eq!(s.field(f), record().field(f), "{f:?}");
        }
        assert_eq!(s.field(Field::Status), "404");
        assert_eq!(node_id(s.bytes()), Some("dp-1"));
        assert_stored_as_sanitized(record(), true);
    }

    #[test]
    fn what_sanitize_would_change_or_refuse_takes_its_path() {
        let edits: [fn(&mut Record); 9] = [
            |r| r.host = "A.example.com".into(),
            |r| r.proxy = "A.example.com".into(),
            |r| r.query = "a=1&Access_Token=x".into(),
            |r| r.path = "p".repeat(4097),
            |r| r.user_agent = "é".repeat(300),
            |r| r.time_unix_nanos = 0,
            |r| r.time_unix_nanos = NOW + HOUR_NANOS + 1,
            |r| r.time_unix_nanos = -5,
            |r| r.request_id = "q".repeat(129),
        ];
        for edit in edits {
            let mut r = record();
            edit(&mut r);
            assert_stored_as_sanitized(r, false);
        }
        // At the caps exactly: unchanged.
        let mut r = record();
        r.path = "p".repeat(4096);
        r.query = "x".repeat(2048);
        assert_stored_as_sanitized(r, true);
        let mut r = record();
        r.status = 1000;
        assert!(check(&r).unwrap_err().contains("status"));
        let mut r = record();
        r.client_port = 65536;
        assert!(check(&r).unwrap_err().contains("client_port"));
    }

    #[test]
    fn malformed_or_foreign_encodings_are_refused_or_re_encoded() {
        let clean = record().encode_to_vec();
        // Invalid UTF-8 in a string: refused, as decoding refuses it.
        let mut bad = clean.clone();
        bad.extend_from_slice(&[0x4a, 2, 0xff, 0xfe]); // field 9 (query)
        assert!(Shipped::check(bad.into(), NOW).is_err());
        // Truncated: refused.
        assert!(Shipped::check(Bytes::copy_from_slice(&clean[..clean.len() - 1]), NOW).is_err());
        // A wrong wire type: refused.
        let mut bad = clean.clone();
        bad.extend_from_slice(&[0x38, 1]); // field 7 (host) as a varint
        assert!(Shipped::check(bad.into(), NOW).is_err());
        // An unknown field (say, a large one) is not kept; a repeated field counts once,
        // the last, as decoding has it.
        let mut odd = clean.clone();
        odd.extend_from_slice(&[0xa2, 0x06, 3, b'a', b'b', b'c']); // field 100
        odd.extend_from_slice(&[0x3a, 1, b'z']); // host again
        let s = Shipped::check(odd.clone().into(), NOW).unwrap();
        assert_ne!(s.bytes(), odd.as_slice());
        let want = sanitize(Record::decode(odd.as_slice()).unwrap(), NOW).unwrap();
        assert_eq!(want.host, "z");
        assert_eq!(s.decode().unwrap(), want);
        assert_eq!(s.host(), "z");
        // A status truncated to 32 bits as prost does (2^32 + 200 is 200).
        let mut wide = Vec::new();
        prost::encoding::encode_key(1, prost::encoding::WireType::Varint, &mut wide);
        prost::encoding::encode_varint((NOW - 1) as u64, &mut wide);
        prost::encoding::encode_key(11, prost::encoding::WireType::Varint, &mut wide);
        prost::encoding::encode_varint((1 << 32) + 200, &mut wide);
        let s = Shipped::check(wide.into(), NOW).unwrap();
        assert_eq!(s.field(Field::Status), "200");
        assert_eq!(s.decode().unwrap().status, 200);
    }

    #[test]
    fn every_string_cap_is_sanitize_s() {
        let long = "x".repeat(10_000);
        // Every string field over any cap: sanitize truncates each to its cap.
        let r = Record {
            node_id: long.clone(),
            listener: long.clone(),
            client_ip: long.clone(),
            method: long.clone(),
            host: long.clone(),
            path: long.clone(),
            query: long.clone(),
            http_version: long.clone(),
            upstream: long.clone(),
            proxy: long.clone(),
            route: long.clone(),
            auth: long.clone(),
            auth_reason: long.clone(),
            user: long.clone(),
            client_id: long.clone(),
            request_id: long.clone(),
            trace_id: long.clone(),
            user_agent: long.clone(),
            mcp_session_id: long.clone(),
            proxy_authority: long.clone(),
            proxy_unique_id: long.clone(),
            proxy_alpn: long.clone(),
            proxy_ssl_version: long,
            time_unix_nanos: NOW,
            ..Default::default()
        };
        let encoded = sanitize(r, NOW).unwrap().encode_to_vec();
        let (mut pos, mut strings) = (0, 0);
        while pos < encoded.len() {
            let key = varint(&encoded, &mut pos).unwrap();
            let tag = (key >> 3) as u32;
            // A varint's value, or a string's length.
            let len = varint(&encoded, &mut pos).unwrap() as usize;
            if key & 7 == 2 {
                assert_eq!(Some(len), string_cap(tag), "field {tag}");
                strings += 1;
                pos += len;
            }
        }
        assert_eq!(strings, 23);
    }
}
