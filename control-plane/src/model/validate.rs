//! Field validation shared by every write. Each check names the field and the reason.

use std::collections::BTreeMap;

use crate::error::ServiceError;

use super::{MatchKind, RateLimitKey, UpstreamProxyProtocol};

type Result<T> = std::result::Result<T, ServiceError>;

/// Largest compiled regex a route may carry; keeps snapshot compilation bounded.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;
const MAX_PATTERN_LEN: usize = 1024;
const MAX_HEADERS: usize = 64;
const MAX_TIMEOUT_MS: u32 = 3_600_000;
const MIN_IDLE_TIMEOUT_MS: u32 = 100;
const MAX_IDLE_TIMEOUT_MS: u32 = 86_400_000;
const MIN_REQUEST_BODY_BYTES: u64 = 1024;
const MAX_DESCRIPTION: usize = 1024;
const MAX_LIMIT: u32 = 1_000_000;

/// Headers the proxy owns; users may not set them as custom headers.
const RESERVED_HEADERS: &[&str] = portcullis_proto::custom_headers::RESERVED;

/// Checks an RFC 1123 host name, optionally a `*.` wildcard, and returns it lower-case:
/// host names are case-insensitive, so that is the same name. Nothing else is changed:
/// surrounding spaces or a trailing dot are refused, not trimmed.
pub fn hostname(field: &'static str, raw: &str) -> Result<String> {
    if raw.is_empty() {
        return Err(ServiceError::invalid(field, "must not be empty"));
    }
    if raw.ends_with('.') {
        return Err(ServiceError::invalid(
            field,
            format!("{raw:?}: write the name without its trailing '.'"),
        ));
    }
    let name = raw.to_ascii_lowercase();
    if name.len() > 253 {
        return Err(ServiceError::invalid(field, "longer than 253 characters"));
    }
    let rest = match name.strip_prefix("*.") {
        Some(rest) if rest.contains('.') => rest,
        Some(_) => {
            return Err(ServiceError::invalid(
                field,
                "a wildcard needs at least two labels after `*.` (e.g. *.example.com)",
            ));
        }
        None => &name,
    };
    for label in rest.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(ServiceError::invalid(
                field,
                format!("{raw:?}: each label must be 1 to 63 characters"),
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(ServiceError::invalid(
                field,
                format!("{raw:?}: only letters, digits, '-' and a leading '*.' are allowed"),
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(ServiceError::invalid(
                field,
                format!("{raw:?}: a label may not start or end with '-'"),
            ));
        }
    }
    Ok(name)
}

/// Checks an absolute http(s) upstream URL with a host and no credentials, query or
/// fragment. It is stored without a trailing `/`, otherwise exactly as given.
pub fn target_url(field: &'static str, raw: &str) -> Result<String> {
    let url = canonical_url(field, raw)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ServiceError::invalid(field, "scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ServiceError::invalid(field, "URL needs a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ServiceError::invalid(
            field,
            "credentials in the URL are not allowed; use custom_request_headers",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ServiceError::invalid(
            field,
            "query and fragment are not allowed",
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Parses an absolute URL that must already be in the form the URL parser gives back
/// (trailing `/` aside). The parser silently repairs input — it drops tabs and line
/// breaks, percent-encodes spaces and non-ASCII, turns `http:///x` into `http://x/`,
/// lower-cases the host and drops a default port — and storing that repair would store
/// something the user did not write; such input is refused with the form to use instead.
pub(crate) fn canonical_url(field: &'static str, raw: &str) -> Result<url::Url> {
    if raw.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(ServiceError::invalid(
            field,
            format!("{raw:?} contains spaces or control characters"),
        ));
    }
    let url = url::Url::parse(raw).map_err(|e| {
        ServiceError::invalid(field, format!("{raw:?} is not an absolute URL: {e}"))
    })?;
    let canonical = url.as_str().trim_end_matches('/');
    if raw.trim_end_matches('/') != canonical {
        return Err(ServiceError::invalid(
            field,
            format!("{raw:?} is not a canonical URL; write {canonical:?}"),
        ));
    }
    Ok(url)
}

/// Checks custom header names and values.
pub fn headers(field: &'static str, map: &BTreeMap<String, String>) -> Result<()> {
    if map.len() > MAX_HEADERS {
        return Err(ServiceError::invalid(
            field,
            format!("at most {MAX_HEADERS} headers"),
        ));
    }
    for (name, value) in map {
        let parsed = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            ServiceError::invalid(field, format!("{name:?} is not a valid header name"))
        })?;
        if RESERVED_HEADERS.contains(&parsed.as_str()) {
            return Err(ServiceError::invalid(
                field,
                format!("{name:?} is managed by the proxy and cannot be set"),
            ));
        }
        // Receivers strip a value's surrounding whitespace, so it would not arrive as
        // stored.
        let padded = value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']);
        if padded || http::HeaderValue::from_str(value).is_err() {
            return Err(ServiceError::invalid(
                field,
                format!(
                    "value of {name:?} has control characters or leading or trailing whitespace"
                ),
            ));
        }
        if map
            .keys()
            .any(|other| other != name && other.eq_ignore_ascii_case(name))
        {
            return Err(ServiceError::invalid(
                field,
                format!("{name:?} is given twice (header names are case-insensitive)"),
            ));
        }
    }
    Ok(())
}

/// Checks a timeout in milliseconds (0 = data-plane default).
pub fn timeout_ms(field: &'static str, value: u32) -> Result<u32> {
    if value > MAX_TIMEOUT_MS {
        return Err(ServiceError::invalid(field, "at most 3600000 (one hour)"));
    }
    Ok(value)
}

/// Checks a stream idle timeout: 0 (data plane default) or 100 ms to one day. Below
/// 100 ms ordinary network jitter would cut healthy streams; above a day a dead stream
/// would hold its upstream connection for no purpose.
pub fn idle_timeout_ms(field: &'static str, value: u32) -> Result<u32> {
    if value != 0 && !(MIN_IDLE_TIMEOUT_MS..=MAX_IDLE_TIMEOUT_MS).contains(&value) {
        return Err(ServiceError::invalid(
            field,
            "0 (default, 10 minutes) or 100 to 86400000 (one day)",
        ));
    }
    Ok(value)
}

/// Checks a limit (requests per second, burst or requests in flight): 0 = none, else at
/// most a million, which no single data plane serves per key anyway.
pub fn limit(field: &'static str, value: u32) -> Result<u32> {
    if value > MAX_LIMIT {
        return Err(ServiceError::invalid(field, "0 (none) to 1000000"));
    }
    Ok(value)
}

/// Checks a request body limit: 0 (no limit) or at least 1 KiB. A smaller limit
/// would refuse ordinary form posts and is more likely a unit mistake (KiB for bytes).
pub fn max_request_body_bytes(field: &'static str, value: u64) -> Result<u64> {
    if value != 0 && value < MIN_REQUEST_BODY_BYTES {
        return Err(ServiceError::invalid(
            field,
            "0 (no limit) or at least 1024 bytes",
        ));
    }
    Ok(value)
}

/// Parses an upstream PROXY protocol version.
pub fn upstream_proxy_protocol(field: &'static str, raw: &str) -> Result<UpstreamProxyProtocol> {
    match raw {
        "off" => Ok(UpstreamProxyProtocol::Off),
        "v1" => Ok(UpstreamProxyProtocol::V1),
        "v2" => Ok(UpstreamProxyProtocol::V2),
        _ => Err(ServiceError::invalid(
            field,
            format!("{raw:?}: use off, v1 or v2"),
        )),
    }
}

/// Most ranges in one proxy's IP allowlist.
pub const MAX_IP_ALLOWLIST: usize = 256;

/// Checks an IP allowlist: each entry an address or `address/prefix` with no host bits
/// set (`10.0.0.1/8` is refused, not rewritten to `10.0.0.0/8`), at most
/// [`MAX_IP_ALLOWLIST`] entries.
pub fn ip_allowlist(field: &'static str, entries: Vec<String>) -> Result<Vec<String>> {
    if entries.len() > MAX_IP_ALLOWLIST {
        return Err(ServiceError::invalid(
            field,
            format!("{} ranges: at most {MAX_IP_ALLOWLIST}", entries.len()),
        ));
    }
    for entry in &entries {
        ip_range(entry).map_err(|why| ServiceError::invalid(field, format!("{entry:?}: {why}")))?;
    }
    Ok(entries)
}

fn ip_range(entry: &str) -> std::result::Result<(), &'static str> {
    use std::net::IpAddr;
    let (ip, prefix) = match entry.split_once('/') {
        Some((ip, prefix)) => (ip, Some(prefix)),
        None => (entry, None),
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| "not an address or range (e.g. 10.0.0.0/8, 2001:db8::/32, 192.0.2.7)")?;
    let Some(prefix) = prefix else {
        return Ok(());
    };
    let canonical = !prefix.is_empty()
        && prefix.bytes().all(|b| b.is_ascii_digit())
        && !(prefix.len() > 1 && prefix.starts_with('0'));
    let prefix: u32 = match prefix.parse() {
        Ok(p) if canonical => p,
        _ => return Err("the prefix length must be a number from 0 to 32 (IPv4) or 128 (IPv6)"),
    };
    let host_bits_set = match ip {
        IpAddr::V4(v4) if prefix <= 32 => u32::from(v4).checked_shl(prefix).unwrap_or(0) != 0,
        IpAddr::V6(v6) if prefix <= 128 => u128::from(v6).checked_shl(prefix).unwrap_or(0) != 0,
        _ => return Err("the prefix length must be a number from 0 to 32 (IPv4) or 128 (IPv6)"),
    };
    if host_bits_set {
        return Err("host bits are set: give the network address");
    }
    Ok(())
}

/// Parses a rate-limit key name.
pub fn rate_limit_key(field: &'static str, raw: &str) -> Result<RateLimitKey> {
    match raw {
        "ip" => Ok(RateLimitKey::Ip),
        "subject" => Ok(RateLimitKey::Subject),
        "client" => Ok(RateLimitKey::Client),
        _ => Err(ServiceError::invalid(
            field,
            format!("{raw:?}: use ip, subject or client"),
        )),
    }
}

/// Checks an identifier: route ids, service and token names.
pub fn ident(field: &'static str, raw: &str) -> Result<String> {
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && raw.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(ServiceError::invalid(
            field,
            format!(
                "{raw:?}: 1 to 64 of letters, digits, '-', '_', '.', starting with a letter or digit"
            ),
        ))
    }
}

/// Checks a route path pattern for its match kind; regexes are compiled with a size limit.
pub fn path_pattern(kind: MatchKind, raw: &str) -> Result<String> {
    const FIELD: &str = "path_pattern";
    if raw.is_empty() || raw.len() > MAX_PATTERN_LEN {
        return Err(ServiceError::invalid(FIELD, "must be 1 to 1024 characters"));
    }
    match kind {
        MatchKind::Prefix | MatchKind::Exact => {
            if !raw.starts_with('/') {
                return Err(ServiceError::invalid(FIELD, "must start with '/'"));
            }
            if raw
                .bytes()
                .any(|b| b.is_ascii_control() || b == b' ' || b == b'?' || b == b'#')
            {
                return Err(ServiceError::invalid(
                    FIELD,
                    "must not contain spaces, control characters, '?' or '#'",
                ));
            }
            if !is_normal_path(raw) {
                return Err(ServiceError::invalid(
                    FIELD,
                    "must be a normalised path (data planes match the normal form of request \
                     paths): no '.' or '..' segments, no '//', no '\\', and '%' only in escapes \
                     of reserved characters with upper-case hex (not %2F, %5C or %00)",
                ));
            }
        }
        MatchKind::Regex => {
            regex::RegexBuilder::new(raw)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| ServiceError::invalid(FIELD, format!("invalid regex: {e}")))?;
        }
    }
    Ok(raw.to_owned())
}

/// Whether `path` is already in the normal form data planes match request paths in (their
/// `path` module): a pattern in any other form could never match.
fn is_normal_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    let escape_ok = |i: usize| {
        let hex = |b: Option<&u8>| match b {
            Some(c @ b'0'..=b'9') => Some(c - b'0'),
            Some(c @ b'A'..=b'F') => Some(c - b'A' + 10),
            _ => None,
        };
        let (Some(hi), Some(lo)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) else {
            return false;
        };
        let c = hi << 4 | lo;
        !(c == 0
            || c == b'/'
            || c == b'\\'
            || c.is_ascii_alphanumeric()
            || matches!(c, b'-' | b'.' | b'_' | b'~'))
    };
    path.starts_with('/')
        && !path.contains("//")
        && !path.contains('\\')
        && !path[1..]
            .split('/')
            .any(|seg| matches!(seg.split(';').next(), Some("." | "..")))
        && bytes
            .iter()
            .enumerate()
            .all(|(i, &b)| b != b'%' || escape_ok(i))
}

/// Checks HTTP method tokens, dropping duplicates. Methods are case-sensitive (RFC 9110
/// §9.1), so `get` is refused rather than stored as `GET`.
pub fn methods(raw: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for m in raw {
        if http::Method::from_bytes(m.as_bytes()).is_err() || m.is_empty() || m.len() > 32 {
            return Err(ServiceError::invalid(
                "methods",
                format!("{m:?} is not an HTTP method"),
            ));
        }
        if m.bytes().any(|b| b.is_ascii_lowercase()) {
            return Err(ServiceError::invalid(
                "methods",
                format!(
                    "{m:?}: methods are case-sensitive; write {:?}",
                    m.to_ascii_uppercase()
                ),
            ));
        }
        if !out.contains(m) {
            out.push(m.clone());
        }
    }
    Ok(out)
}

/// Most scopes or public paths one proxy may list.
const MAX_AUTH_LIST: usize = 32;

/// Checks OAuth scope tokens (RFC 6749 §3.3: printable ASCII except space, double quote
/// and backslash), dropping duplicates. Scopes end up in `WWW-Authenticate` parameters,
/// so anything else could break the header.
pub fn scopes(field: &'static str, raw: &[String]) -> Result<Vec<String>> {
    if raw.len() > MAX_AUTH_LIST {
        return Err(ServiceError::invalid(field, "at most 32 scopes"));
    }
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for s in raw {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\');
        if !ok {
            return Err(ServiceError::invalid(
                field,
                format!(
                    "{s:?} is not a scope (1 to 128 printable characters, no spaces, quotes or backslashes)"
                ),
            ));
        }
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    Ok(out)
}

/// Checks public path prefixes: absolute, clean (no dot segments, no percent-encoding,
/// no backslash) so an upstream cannot normalise `/health/../admin` out of a public
/// prefix, and never `/`, which would make the whole proxy public.
pub fn public_paths(raw: &[String]) -> Result<Vec<String>> {
    const FIELD: &str = "public_paths";
    if raw.len() > MAX_AUTH_LIST {
        return Err(ServiceError::invalid(FIELD, "at most 32 paths"));
    }
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for p in raw {
        if p == "/" {
            return Err(ServiceError::invalid(
                FIELD,
                "\"/\" would make every path public; use mode passthrough or disable auth",
            ));
        }
        let clean = p.starts_with('/')
            && p.len() <= 256
            && !p
                .bytes()
                .any(|b| b.is_ascii_control() || matches!(b, b' ' | b'?' | b'#' | b'%' | b'\\'))
            && !p.split('/').any(|seg| seg == "." || seg == "..");
        if !clean {
            return Err(ServiceError::invalid(
                FIELD,
                format!(
                    "{p:?} must start with '/', be at most 256 characters, and contain no '.' or '..' segments, '%', '\\', '?', '#', spaces or control characters"
                ),
            ));
        }
        if !out.contains(p) {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Checks an absolute http(s) URL for documentation links shown to clients.
pub fn doc_url(field: &'static str, raw: &str) -> Result<String> {
    if raw.is_empty() {
        return Ok(String::new());
    }
    let url = canonical_url(field, raw)?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(ServiceError::invalid(
            field,
            "must be an http(s) URL with a host",
        ));
    }
    if raw.len() > 2048 || raw.contains('"') {
        return Err(ServiceError::invalid(
            field,
            "at most 2048 characters, no double quotes",
        ));
    }
    Ok(raw.to_owned())
}

/// Checks free text.
pub fn description(raw: &str) -> Result<String> {
    if raw.len() > MAX_DESCRIPTION || raw.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ServiceError::invalid(
            "description",
            "at most 1024 characters, no control characters",
        ));
    }
    Ok(raw.to_owned())
}

#[cfg(test)]
mod tests;
