//! Path rules of edge auth: public path prefixes and path-scoped audiences.
//!
//! Both compare the path as received (still percent-encoded). A path that an upstream
//! could normalise into a different one (`/health/../admin`, `%2e%2e`, `%2f`, `\`) is
//! never treated as inside a prefix, so a public prefix or an audience for `/mcp` cannot
//! be stretched to cover other paths.

use super::Origin;

/// Longest public path accepted.
const MAX_PATH_LEN: usize = 256;

/// Why a public path from the snapshot was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PathError {
    /// Not an absolute, clean path of reasonable length.
    #[error(
        "{0:?} must start with '/', be at most 256 characters, and contain no '..', '.', '%', '\\', '?', '#', spaces or control characters"
    )]
    Invalid(String),
    /// `/` would make every path public.
    #[error("\"/\" would make every path public")]
    Root,
}

/// Path prefixes served without a token. A prefix matches itself and anything below it
/// at a segment boundary: `/health` matches `/health` and `/health/db`, not `/healthz`
/// (a prefix ending in `/` matches everything below it).
#[derive(Clone, Debug, Default)]
pub(crate) struct PublicPaths {
    prefixes: Box<[Box<str>]>,
}

// === impl PublicPaths ===

impl PublicPaths {
    /// Validates the prefixes.
    pub(crate) fn parse(raw: &[String]) -> Result<Self, PathError> {
        let mut prefixes = Vec::with_capacity(raw.len());
        for p in raw {
            if p == "/" {
                return Err(PathError::Root);
            }
            if p.len() > MAX_PATH_LEN || !p.starts_with('/') || !is_clean(p) || p.contains('%') {
                return Err(PathError::Invalid(p.clone()));
            }
            prefixes.push(p.as_str().into());
        }
        Ok(Self {
            prefixes: prefixes.into(),
        })
    }

    /// Whether `path` is public.
    pub(crate) fn matches(&self, path: &str) -> bool {
        !self.prefixes.is_empty() && is_clean(path) && self.prefixes.iter().any(|p| under(path, p))
    }
}

/// `path` equals `prefix` or lies below it at a segment boundary.
fn under(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

/// No dot segments, encoded dots/slashes/backslashes, raw backslashes, query or fragment
/// characters, spaces or control characters.
pub(crate) fn is_clean(path: &str) -> bool {
    if path
        .bytes()
        .any(|b| b == b'\\' || b == b'?' || b == b'#' || b == b' ' || b.is_ascii_control())
    {
        return false;
    }
    let lower_has = |needle: &[u8]| {
        path.as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
    };
    if lower_has(b"%2e") || lower_has(b"%2f") || lower_has(b"%5c") {
        return false;
    }
    !path.split('/').any(|seg| seg == "." || seg == "..")
}

/// Whether the audience value `aud` names the resource this request is for.
///
/// Accepted: `https://{host}` (the proxy's canonical resource) and
/// `{listener scheme}://{host}[:{port}]` (what this listener's metadata advertises), each
/// optionally with a path that is a segment prefix of the request path
/// (`https://host/mcp` for `/mcp/…`). A trailing `/` is ignored, host and scheme compare
/// case-insensitively, default ports are implied.
pub(crate) fn audience_matches(aud: &str, origin: &Origin<'_>, path: &str) -> bool {
    Audience::parse(aud)
        .is_some_and(|aud| aud.matches(origin, super::split_authority(origin.authority()), path))
}

/// An `aud` value split once, so that checking it against a request only compares
/// ([`audience_matches`] parses and checks in one go; a verified token keeps its parsed
/// audiences with its cached claims, `Claims::audiences`).
#[derive(Debug)]
pub(crate) struct Audience {
    /// `https`, else `http` (other schemes never match and are not kept).
    https: bool,
    /// Without a trailing `.`, lowercased (compared case-insensitively: exact equality
    /// first, which a client sending its Host in lowercase meets at the cost of a
    /// `memcmp`).
    host: Box<str>,
    /// As given, or the scheme's default.
    port: u16,
    /// Without trailing `/`; empty: the whole origin.
    path: Box<str>,
}

impl Audience {
    /// `None` for a value no request can match (not `http(s)://host…`).
    pub(crate) fn parse(aud: &str) -> Option<Self> {
        // A scheme never contains ':', so the first one ends it (cheaper than searching
        // for "://").
        let (scheme, rest) = crate::ascii::split_once(aud, b':')?;
        let rest = rest.strip_prefix("//")?;
        let (authority, path) = match crate::ascii::find(rest, b'/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let https = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return None;
        };
        let (host, port) = super::split_authority(authority);
        if host.is_empty() {
            return None;
        }
        Some(Self {
            https,
            host: host.to_ascii_lowercase().into(),
            port: port.unwrap_or(if https { 443 } else { 80 }),
            path: path.trim_end_matches('/').into(),
        })
    }

    /// Whether this audience names the resource of a request to `path` through `origin`,
    /// whose authority split into `(host, port)` is `request` ([`super::split_authority`],
    /// once per request however many audiences the token has).
    pub(crate) fn matches(
        &self,
        origin: &Origin<'_>,
        (req_host, req_port): (&str, Option<u16>),
        path: &str,
    ) -> bool {
        if *self.host != *req_host && !self.host.eq_ignore_ascii_case(req_host) {
            return false;
        }
        let canonical = self.https && self.port == 443;
        let this_listener =
            self.https == origin.secure && self.port == req_port.unwrap_or(origin.default_port());
        (canonical || this_listener)
            && (self.path.is_empty() || (is_clean(path) && under(path, &self.path)))
    }
}

/// Whether `path` is a valid endpoint path: absolute, clean, not `/`, no trailing `/`,
/// no `%` or `"` (it is embedded in a quoted challenge parameter).
pub(crate) fn is_endpoint(path: &str) -> bool {
    path.len() > 1
        && path.len() <= MAX_PATH_LEN
        && path.starts_with('/')
        && !path.ends_with('/')
        && is_clean(path)
        && !path.contains(['%', '"'])
}

/// Whether the request `path` is the endpoint or lies below it (segment boundary).
pub(crate) fn within(path: &str, endpoint: &str) -> bool {
    is_clean(path) && under(path, endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsed_audiences_match_what_they_name_whatever_the_case_and_only_that() {
        let plain = Origin::new(false, "API.Example.com");
        let tls = Origin::new(true, "api.example.com.:443");
        let port = Origin::new(false, "api.example.com:8080");
        let cases: [(&str, &Origin<'_>, &str, bool); 16] = [
            ("https://api.example.com", &plain, "/", true),
            ("HTTPS://API.EXAMPLE.COM/", &plain, "/x", true),
            ("http://api.example.com", &plain, "/", true),
            ("http://api.example.com", &tls, "/", false),
            ("https://api.example.com", &tls, "/", true),
            ("https://api.example.com.", &tls, "/", true),
            ("http://api.example.com:8080", &port, "/", true),
            ("http://api.example.com", &port, "/", false),
            ("https://api.example.com:8443", &plain, "/", false),
            ("https://api.example.com/mcp", &plain, "/mcp/tools", true),
            ("https://api.example.com/mcp/", &plain, "/mcp", true),
            ("https://api.example.com/mcp", &plain, "/mcpx", false),
            (
                "https://api.example.com/mcp",
                &plain,
                "/mcp/%2e%2e/admin",
                false,
            ),
            ("https://api.example.com.evil.com", &plain, "/", false),
            ("ftp://api.example.com", &plain, "/", false),
            ("api.example.com", &plain, "/", false),
        ];
        for (aud, origin, path, expected) in cases {
            assert_eq!(
                audience_matches(aud, origin, path),
                expected,
                "{aud} for {}{path}",
                origin.authority()
            );
            let request = super::super::split_authority(origin.authority());
            let parsed = Audience::parse(aud).is_some_and(|a| a.matches(origin, request, path));
            assert_eq!(
                parsed,
                expected,
                "parsed {aud} for {}{path}",
                origin.authority()
            );
        }
        assert!(Audience::parse("https://").is_none(), "empty host kept");
        assert!(
            Audience::parse("https://:443/x").is_none(),
            "empty host kept"
        );
    }
}
