//! Host table: exact names first, then the most specific `*.suffix` wildcard.
//!
//! Wildcard semantics: `*.example.com` matches any name with **one or more** labels in
//! front of `example.com` (`a.example.com`, `a.b.example.com`) but not `example.com`
//! itself. When several wildcards match, the longest suffix wins, so
//! `a.b.example.com` picks `*.b.example.com` over `*.example.com`.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use crate::spec::HostPattern;

/// Longest DNS name (RFC 1035); longer Host values are rejected, not looked up.
pub(crate) const MAX_HOST_LEN: usize = 253;

/// Maps hostnames to `T` (a compiled proxy in production).
///
/// Hashed with randomly seeded foldhash rather than SipHash: every request hashes its
/// host at least once, and the keys come from configuration, so a client can only look
/// names up, never crowd a bucket.
#[derive(Debug)]
pub struct HostTable<T> {
    exact: HashMap<Box<str>, T, RandomState>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<Box<str>, T, RandomState>,
}

/// A request host lowercased with its port stripped, held on the stack so lookups do not
/// allocate.
pub struct NormalizedHost {
    buf: [u8; MAX_HOST_LEN],
    len: usize,
}

/// Why a Host value cannot be looked up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostError {
    /// Empty after stripping the port.
    #[error("empty host")]
    Empty,
    /// Longer than a DNS name can be.
    #[error("host longer than {MAX_HOST_LEN} bytes")]
    TooLong,
    /// Not a plausible host (bad port syntax, empty labels, odd bytes).
    #[error("malformed host")]
    Malformed,
}

// === impl HostTable ===

impl<T> Default for HostTable<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::default(),
            wildcard: HashMap::default(),
        }
    }
}

impl<T> HostTable<T> {
    /// Adds an entry; returns `false` (leaving the table unchanged) if the pattern is
    /// already present, so the caller can report the duplicate.
    pub fn insert(&mut self, pattern: &HostPattern, value: T) -> bool {
        let (map, key) = match pattern {
            HostPattern::Exact(name) => (&mut self.exact, name),
            HostPattern::Wildcard(suffix) => (&mut self.wildcard, suffix),
        };
        if map.contains_key(key) {
            return false;
        }
        map.insert(key.clone(), value);
        true
    }

    /// Looks up a raw Host / `:authority` value: strips the port, lowercases, tries the
    /// exact map, then wildcards from most to least specific.
    pub fn lookup(&self, raw_host: &str) -> Result<Option<&T>, HostError> {
        let host = NormalizedHost::parse(raw_host)?;
        Ok(self.lookup_normalized(host.as_str()))
    }

    /// Looks up a name already produced by [`NormalizedHost`].
    pub(crate) fn lookup_normalized(&self, name: &str) -> Option<&T> {
        if let Some(found) = self.exact.get(name) {
            return Some(found);
        }
        if self.wildcard.is_empty() {
            return None;
        }
        let mut rest = name;
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            if let Some(found) = self.wildcard.get(rest) {
                return Some(found);
            }
        }
        None
    }

    /// Looks up `name` (already normalised) with certificate wildcard semantics
    /// (RFC 6125 §6.4.3): exact first, then `*.parent` where the wildcard stands for
    /// exactly one label, because that is all a client accepts a wildcard certificate for.
    pub(crate) fn lookup_single_label(&self, name: &str) -> Option<&T> {
        if let Some(found) = self.exact.get(name) {
            return Some(found);
        }
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent)
    }

    /// Number of entries (exact + wildcard).
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// === impl NormalizedHost ===

impl NormalizedHost {
    /// Strips an optional `:port` (IPv6 literals keep their brackets), drops one
    /// trailing dot and lowercases.
    pub fn parse(raw: &str) -> Result<Self, HostError> {
        let host = strip_port(raw.trim())?;
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.is_empty() {
            return Err(HostError::Empty);
        }
        if host.len() > MAX_HOST_LEN {
            return Err(HostError::TooLong);
        }
        // A second trailing dot is an empty label too (`a..` would become `a.`), and
        // whitespace before a port (`a.com :80`) is not part of a name.
        if host.starts_with('.')
            || host.ends_with(|c: char| c == '.' || c.is_whitespace())
            || host.contains("..")
        {
            return Err(HostError::Malformed);
        }
        let mut buf = [0u8; MAX_HOST_LEN];
        for (dst, src) in buf.iter_mut().zip(host.bytes()) {
            *dst = src.to_ascii_lowercase();
        }
        Ok(Self {
            buf,
            len: host.len(),
        })
    }

    /// The normal form of `raw` when it is a slice of `raw`: names of lower-case letters,
    /// digits, `-` and single inner dots, with at most a `:port` to strip — the Host of
    /// nearly every request, taken without the copy (and the UTF-8 check of every
    /// [`Self::as_str`]) that [`Self::parse`] makes. `None` for anything else, including
    /// every value `parse` refuses; for `Some`, `parse` gives the same name.
    pub fn slice_of(raw: &str) -> Option<&str> {
        let bytes = raw.as_bytes();
        // One pass up to the port's colon. `dot` starts true, so a leading dot, an empty
        // label and an empty name (`dot` still true at the end) are refused, as is a
        // trailing dot (which `parse` drops: a copy's job).
        let mut dot = true;
        let mut end = bytes.len();
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'a'..=b'z' | b'0'..=b'9' | b'-' => dot = false,
                b'.' if !dot => dot = true,
                b':' => {
                    end = i;
                    break;
                }
                _ => return None,
            }
        }
        if dot || end > MAX_HOST_LEN {
            return None;
        }
        if let Some(port) = bytes.get(end + 1..)
            && (port.is_empty() || port.len() > 5 || !port.iter().all(u8::is_ascii_digit))
        {
            return None;
        }
        raw.get(..end)
    }

    /// The normalised name.
    pub fn as_str(&self) -> &str {
        // Lowercasing ASCII bytes of a `&str` keeps it valid UTF-8; the fallback is
        // unreachable but avoids a panic path.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl std::fmt::Debug for NormalizedHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("NormalizedHost")
            .field(&self.as_str())
            .finish()
    }
}

fn strip_port(raw: &str) -> Result<&str, HostError> {
    let (host, port) = if raw.starts_with('[') {
        let end = crate::ascii::find(raw, b']').ok_or(HostError::Malformed)?;
        let (host, rest) = raw.split_at(end + 1);
        match rest.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if rest.is_empty() => (host, None),
            None => return Err(HostError::Malformed),
        }
    } else {
        match crate::ascii::split_once(raw, b':') {
            Some((host, port)) => (host, Some(port)),
            None => (raw, None),
        }
    };
    match port {
        Some(p) if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) => {
            Err(HostError::Malformed)
        }
        _ => Ok(host),
    }
}
