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
    // A scheme never contains ':', so the first one ends it (cheaper than searching for
    // "://", which this runs for every request with a token).
    let Some((scheme, rest)) = crate::ascii::split_once(aud, b':') else {
        return false;
    };
    let Some(rest) = rest.strip_prefix("//") else {
        return false;
    };
    let (authority, aud_path) = match crate::ascii::find(rest, b'/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let aud_path = aud_path.trim_end_matches('/');
    let (aud_host, aud_port) = super::split_authority(authority);
    let (req_host, req_port) = super::split_authority(origin.authority());
    if aud_host.is_empty() || !aud_host.eq_ignore_ascii_case(req_host) {
        return false;
    }
    let https = scheme.eq_ignore_ascii_case("https");
    let aud_port = aud_port.unwrap_or(if https { 443 } else { 80 });
    let canonical = https && aud_port == 443;
    let this_listener = scheme.eq_ignore_ascii_case(origin.scheme())
        && aud_port == req_port.unwrap_or(origin.default_port());
    if !canonical && !this_listener {
        return false;
    }
    aud_path.is_empty() || (is_clean(path) && under(path, aud_path))
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
