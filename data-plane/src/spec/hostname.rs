//! Hostname patterns from the control plane: an exact name or a `*.suffix` wildcard.
//!
//! Rules match the control plane's validation (RFC 1123 labels, lowercased, one trailing
//! dot dropped, a wildcard needs at least two labels after `*.`), so a snapshot the
//! control plane accepted is never NACKed here for a hostname the CP considers valid.

use super::field::Reason;

/// A validated proxy hostname.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// Matches exactly this lowercased name.
    Exact(Box<str>),
    /// `*.suffix`: matches one or more labels in front of `suffix` (not `suffix` itself).
    Wildcard(Box<str>),
}

// === impl HostPattern ===

impl HostPattern {
    /// Parses and normalises a hostname as configured on a proxy.
    pub fn parse(raw: &str) -> Result<Self, Reason> {
        let name = normalize_name(raw);
        let bad = |why| Reason::Hostname(raw.to_owned(), why);
        if name.is_empty() {
            return Err(Reason::Empty);
        }
        if name.len() > 253 {
            return Err(bad("longer than 253 characters"));
        }
        let (wildcard, rest) = match name.strip_prefix("*.") {
            Some(rest) if rest.contains('.') => (true, rest),
            Some(_) => return Err(bad("a wildcard needs at least two labels after `*.`")),
            None => (false, name.as_str()),
        };
        for label in rest.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(bad("each label must be 1 to 63 characters"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(bad(
                    "only letters, digits, '-' and a leading '*.' are allowed",
                ));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(bad("a label may not start or end with '-'"));
            }
        }
        Ok(if wildcard {
            Self::Wildcard(rest.into())
        } else {
            Self::Exact(name.into())
        })
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Wildcard(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// Lowercases, trims whitespace and one trailing dot: the key under which proxies are
/// referenced by routes (`proxy_hostnames`, PROXY targets).
pub(crate) fn normalize_name(raw: &str) -> String {
    let trimmed = raw.trim();
    trimmed
        .strip_suffix('.')
        .unwrap_or(trimmed)
        .to_ascii_lowercase()
}
