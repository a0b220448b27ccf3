//! A record's free-form strings, kept from the start in the control-plane sink's wire form.
//!
//! [`Strings`] holds each [`Text`] field as an `AccessLogRecord` protobuf field (tag, length,
//! value) in one buffer, in the order they were set, and where each value is. The
//! control-plane sink copies the buffer as it is (protobuf takes a field's last occurrence, so
//! a replaced value is simply written again); the stdout sink reads each value through its
//! span. The request path fills one per request ([`crate::request::Observation`]);
//! [`super::record`] fills a per-thread one from [`super::Fields`].
//!
//! **Invariant: every value is valid UTF-8**, by construction: the buffer is private, and
//! only [`Strings::set`] (a `&str`), [`Strings::set_visible`] (visible ASCII) and
//! [`Strings::set_hex`] (ASCII hex digits) write into it. So the JSON writer copies values
//! as bytes with no UTF-8 check, and the protobuf `string` fields decode.

/// The record's free-form fields: the `AccessLogRecord` strings other than `node_id` (the
/// process's) and the four from fixed sets (listener, method, HTTP version, auth: in
/// [`super::Fixed`]). The order is field-number order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Text {
    ClientIp,
    Host,
    Path,
    Query,
    Upstream,
    Proxy,
    Route,
    AuthReason,
    User,
    ClientId,
    RequestId,
    TraceId,
    UserAgent,
    McpSessionId,
    ProxyAuthority,
    ProxyUniqueId,
    ProxyAlpn,
    ProxySslVersion,
}

const TEXTS: usize = Text::ProxySslVersion as usize + 1;

/// Each [`Text`]'s field number in `AccessLogRecord` (proto/portcullis.proto).
const FIELD: [u32; TEXTS] = [
    4, 7, 8, 9, 16, 17, 18, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30,
];

/// A record's free-form strings as protobuf fields, and where each value is (module docs).
#[derive(Debug)]
pub(crate) struct Strings {
    /// `AccessLogRecord` string fields, one after the other; valid UTF-8 values.
    encoded: Vec<u8>,
    /// Where each [`Text`]'s current value is in `encoded`; `(0, 0)` when never set.
    spans: [(u32, u32); TEXTS],
}

impl Strings {
    /// Empty, with room for `bytes` of encoded fields.
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        Self {
            encoded: Vec::with_capacity(bytes),
            spans: [(0, 0); TEXTS],
        }
    }

    /// Sets `field` to `value`. An empty value for a field never set writes nothing (it is
    /// absent, as proto3 leaves an empty string out); for one set before, an empty field
    /// that replaces it.
    pub(crate) fn set(&mut self, field: Text, value: &str) {
        let (start, end) = self.spans[field as usize];
        if value.is_empty() && start == end {
            return;
        }
        self.head(field, value.len());
        self.encoded.extend_from_slice(value.as_bytes());
        self.close(field, value.len());
    }

    /// Sets `field` to `value` if it is visible ASCII or tab (what `HeaderValue::to_str`
    /// accepts), else to the empty string: a header value as a record takes it, without
    /// a UTF-8 check (such bytes are ASCII, so the invariant holds) and with a check that
    /// does not stop early (so it runs word by word).
    pub(crate) fn set_visible(&mut self, field: Text, value: &[u8]) {
        let visible = value.iter().fold(true, |ok, &b| {
            ok & ((b' '..0x7f).contains(&b) | (b == b'\t'))
        });
        let value = if visible { value } else { &[] };
        let (start, end) = self.spans[field as usize];
        if value.is_empty() && start == end {
            return;
        }
        self.head(field, value.len());
        self.encoded.extend_from_slice(value);
        self.close(field, value.len());
    }

    /// Sets `field` to `bytes` as lower-case hex.
    pub(crate) fn set_hex(&mut self, field: Text, bytes: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.head(field, bytes.len() * 2);
        for b in bytes {
            self.encoded
                .extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        }
        self.close(field, bytes.len() * 2);
    }

    /// Appends `field`'s tag and `len`, the length of the value that follows, with room
    /// for that value: one capacity check, the bytes pushed in place (a field is set about
    /// ten times per request).
    #[inline]
    fn head(&mut self, field: Text, len: usize) {
        // Field numbers are below 32: the tag (wire type 2) is one byte below 16, two from
        // 16 on.
        let tag = FIELD[field as usize] << 3 | 2;
        self.encoded.reserve(2 + 10 + len);
        if tag < 0x80 && len < 0x80 {
            // Nearly every value: one byte of tag, one of length, in one copy.
            self.encoded.extend_from_slice(&[tag as u8, len as u8]);
            return;
        }
        if tag < 0x80 {
            self.encoded.push(tag as u8);
        } else {
            self.encoded.push(tag as u8 | 0x80);
            self.encoded.push((tag >> 7) as u8);
        }
        let mut v = len;
        while v >= 0x80 {
            self.encoded.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.encoded.push(v as u8);
    }

    /// Notes that `field`'s value is the last `len` bytes written.
    fn close(&mut self, field: Text, len: usize) {
        let end = self.encoded.len();
        // Spans are u32: a record's strings come from one request head (bounded far below).
        self.spans[field as usize] = ((end - len) as u32, end as u32);
    }

    /// `field`'s value (UTF-8, the module's invariant); empty when unset.
    pub(crate) fn get(&self, field: Text) -> &[u8] {
        let (start, end) = self.spans[field as usize];
        self.encoded
            .get(start as usize..end as usize)
            .unwrap_or_default()
    }

    /// The fields as `AccessLogRecord` protobuf bytes (a replaced field occurs more than
    /// once; its last occurrence is its value).
    pub(crate) fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// Bytes the buffer holds room for.
    pub(crate) fn capacity(&self) -> usize {
        self.encoded.capacity()
    }

    /// Unsets every field, keeping the buffer's capacity.
    pub(crate) fn clear(&mut self) {
        self.encoded.clear();
        self.spans = [(0, 0); TEXTS];
    }
}

#[cfg(test)]
mod tests {
    use portcullis_proto::v1::AccessLogRecord;
    use prost::Message as _;

    use super::*;

    /// The buffer is the record's strings as protobuf fields: decoded, it holds each field's
    /// last value, which is what `get` (the stdout sink's view) reads too.
    #[test]
    fn the_buffer_decodes_to_the_values_get_reads() {
        let mut s = Strings::with_capacity(16);
        s.set(Text::ClientIp, "192.0.2.1");
        s.set(Text::Host, "App.Example.com:8080");
        s.set(Text::Path, "/a/../b");
        s.set(Text::RequestId, "rid");
        s.set(Text::UserAgent, &"u\u{e9}".repeat(100));
        s.set(Text::McpSessionId, "");
        s.set_hex(Text::TraceId, &[0xab; 16]);
        s.set(Text::Proxy, "app.example.com");
        s.set(Text::Host, "app.example.com");
        s.set(Text::Path, "/b");
        s.set(Text::User, "octocat");
        s.set(Text::User, "");
        s.set(Text::Query, "");
        s.set_hex(Text::ProxyUniqueId, &[0, 0xff]);
        s.set(Text::ProxySslVersion, "TLSv1.3");
        let r = AccessLogRecord::decode(s.encoded()).expect("protobuf fields");
        let text = |f| std::str::from_utf8(s.get(f)).expect("UTF-8");
        let (user_agent, trace_id) = ("u\u{e9}".repeat(100), "ab".repeat(16));
        for (field, decoded, expected) in [
            (Text::ClientIp, &r.client_ip, "192.0.2.1"),
            (Text::Host, &r.host, "app.example.com"),
            (Text::Path, &r.path, "/b"),
            (Text::User, &r.user, ""),
            (Text::Query, &r.query, ""),
            (Text::McpSessionId, &r.mcp_session_id, ""),
            (Text::UserAgent, &r.user_agent, user_agent.as_str()),
            (Text::TraceId, &r.trace_id, trace_id.as_str()),
            (Text::ProxyUniqueId, &r.proxy_unique_id, "00ff"),
            (Text::RequestId, &r.request_id, "rid"),
            (Text::Proxy, &r.proxy, "app.example.com"),
            (Text::ProxySslVersion, &r.proxy_ssl_version, "TLSv1.3"),
            // Never set: absent from the buffer.
            (Text::Route, &r.route, ""),
            (Text::Upstream, &r.upstream, ""),
            (Text::AuthReason, &r.auth_reason, ""),
        ] {
            assert_eq!(
                (decoded.as_str(), text(field)),
                (expected, expected),
                "{field:?}"
            );
        }
        // Header values: visible ASCII is taken, anything else is empty.
        s.set_visible(Text::UserAgent, b"curl/8.0 \t(x)");
        assert_eq!(s.get(Text::UserAgent), b"curl/8.0 \t(x)");
        for odd in [&b"a\x7f"[..], b"a\r", b"\xc3\xa9", b"a\0"] {
            s.set_visible(Text::UserAgent, odd);
            assert_eq!(s.get(Text::UserAgent), b"", "{odd:?}");
        }
        let r = AccessLogRecord::decode(s.encoded()).expect("protobuf fields");
        assert_eq!(r.user_agent, "");
        let mut empty = Strings::with_capacity(0);
        empty.set_visible(Text::Route, b"\x01");
        assert!(empty.encoded().is_empty());
        // An empty value for a field never set writes nothing.
        let mut empty = Strings::with_capacity(0);
        empty.set(Text::Query, "");
        assert!(empty.encoded().is_empty());
        s.clear();
        assert!(s.encoded().is_empty() && s.get(Text::Host).is_empty());
    }
}
