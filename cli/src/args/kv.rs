//! `K=V` header arguments, validated on the client so typos fail before any network call.

use std::collections::HashMap;
use std::str::FromStr;

use crate::error::CliError;

/// One `NAME=VALUE` header from `--request-header` / `--response-header`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeaderPair {
    /// Header name, an HTTP token (letters, digits and ``!#$%&'*+-.^_`|~``).
    pub(crate) name: String,
    /// Header value, possibly empty; visible ASCII, spaces and tabs only.
    pub(crate) value: String,
}

impl FromStr for HeaderPair {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((name, value)) = s.split_once('=') else {
            return Err(format!("expected NAME=VALUE, got {s:?} (missing '=')"));
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(format!(
                "expected NAME=VALUE, got {s:?} (empty header name)"
            ));
        }
        if let Some(bad) = name.chars().find(|c| !is_token_char(*c)) {
            return Err(format!(
                "invalid header name {name:?}: character {bad:?} is not allowed"
            ));
        }
        if let Some(bad) = value.chars().find(|c| !is_value_char(*c)) {
            return Err(format!(
                "invalid value for header {name:?}: character {bad:?} is not allowed"
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            value: value.trim().to_owned(),
        })
    }
}

/// RFC 9110 `tchar`.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// RFC 9110 `field-value` restricted to ASCII: no control characters except tab.
fn is_value_char(c: char) -> bool {
    c == '\t' || (' '..='~').contains(&c)
}

/// Collects pairs into the wire map, rejecting a name given twice (header names are
/// case-insensitive, so `X-A` and `x-a` collide) instead of silently keeping one.
pub(crate) fn headers_to_map(
    flag: &str,
    pairs: &[HeaderPair],
) -> Result<HashMap<String, String>, CliError> {
    let mut map = HashMap::with_capacity(pairs.len());
    let mut seen = std::collections::HashSet::with_capacity(pairs.len());
    for pair in pairs {
        if !seen.insert(pair.name.to_ascii_lowercase()) {
            return Err(CliError::Usage(format!(
                "header {:?} given more than once in {flag}",
                pair.name
            )));
        }
        map.insert(pair.name.clone(), pair.value.clone());
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(s: &str) -> Result<HeaderPair, String> {
        s.parse()
    }

    #[test]
    fn parses_name_and_value() -> Result<(), String> {
        let p = pair("X-Forwarded-Proto=https")?;
        assert_eq!(p.name, "X-Forwarded-Proto");
        assert_eq!(p.value, "https");
        Ok(())
    }

    #[test]
    fn only_the_first_equals_splits() -> Result<(), String> {
        let p = pair("Cookie=a=b; c=d")?;
        assert_eq!(p.value, "a=b; c=d");
        Ok(())
    }

    #[test]
    fn empty_value_is_allowed_and_whitespace_trimmed() -> Result<(), String> {
        assert_eq!(pair("X-Empty=")?.value, "");
        let p = pair(" X-A = b ")?;
        assert_eq!((p.name.as_str(), p.value.as_str()), ("X-A", "b"));
        Ok(())
    }

    #[test]
    fn rejects_malformed_pairs_with_a_reason() {
        let missing = pair("X-A").err().unwrap_or_default();
        assert!(missing.contains("missing '='"), "{missing}");
        let empty = pair("=v").err().unwrap_or_default();
        assert!(empty.contains("empty header name"), "{empty}");
        let bad_name = pair("X A=v").err().unwrap_or_default();
        assert!(bad_name.contains("invalid header name"), "{bad_name}");
        let bad_value = pair("X-A=line\nbreak").err().unwrap_or_default();
        assert!(bad_value.contains("invalid value"), "{bad_value}");
    }

    #[test]
    fn duplicate_names_are_rejected_case_insensitively() -> Result<(), String> {
        let pairs = [pair("X-A=1")?, pair("x-a=2")?];
        let err = headers_to_map("--request-header", &pairs);
        assert!(matches!(err, Err(CliError::Usage(m)) if m.contains("more than once")));
        Ok(())
    }

    #[test]
    fn distinct_names_build_the_map() -> Result<(), String> {
        let pairs = [pair("X-A=1")?, pair("X-B=2")?];
        let map = headers_to_map("--request-header", &pairs).map_err(|e| e.to_string())?;
        assert_eq!(map.len(), 2);
        assert_eq!(map.get("X-B").map(String::as_str), Some("2"));
        Ok(())
    }
}
