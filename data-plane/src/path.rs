//! The one view of a request path that every decision and the upstream see.
//!
//! A path is decided on once, before host lookup: routing, public routes and paths, audience
//! paths, MCP endpoints and the upstream all read the same normalised path, so a path that
//! an upstream would resolve differently from the proxy (`/pub/../secret`, `/pub/%2e%2e/x`,
//! `//admin`) can never be admitted as one thing and served as another.
//!
//! Normalisation (RFC 3986 §6.2.2, as nginx and Envoy's `normalize_path` + `merge_slashes`):
//! - percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, other escapes
//!   keep their meaning with upper-case hex digits (`%2f` is never decoded: see below);
//! - dot segments are removed (§5.2.4; `..` above the root stays at the root);
//! - runs of `/` become one.
//!
//! Refused (400), because no normal form is unambiguous for every upstream: a path not
//! starting with `/` (`*`, or an empty path), an escape that is not `%` and two hex digits,
//! `%2F` and `%5C` (an encoded separator an upstream may or may not decode after this
//! proxy decided), `%00`, a raw `\` (a separator on some servers), and a segment whose part
//! before `;` is a dot segment (`..;/`: Tomcat and Jetty treat it as `..`).
//!
//! Cost: one scan of the path with no allocation when it is already normal (almost every
//! request); a normalised copy otherwise. This module imports nothing of the crate.

use std::borrow::Cow;

/// Why a request path was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Not an absolute path (`*`, empty).
    #[error("the request path must start with '/'")]
    NotAbsolute,
    /// `%` not followed by two hex digits.
    #[error("malformed percent-encoding in the request path")]
    BadEscape,
    /// `%2F`, `%5C` or a raw `\`.
    #[error("encoded or backslash path separator in the request path")]
    Separator,
    /// `%00`.
    #[error("encoded NUL in the request path")]
    Nul,
    /// `.;…` or `..;…`: a dot segment with parameters.
    #[error("dot segment with parameters in the request path")]
    DotParameters,
}

/// The normal form of `path` (borrowed when it already is normal), or why it is refused.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if is_normal(path.as_bytes())? {
        return Ok(Cow::Borrowed(path));
    }
    normalize_slow(path).map(Cow::Owned)
}

/// Whether `path` is already normal; `Err` for what no normalisation can accept without
/// looking further (a backslash). Anything unusual (`%`, `//`, a segment starting with `.`)
/// sends the path to the slow path, which decides.
fn is_normal(path: &[u8]) -> Result<bool, PathError> {
    if path.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut i = 0;
    while i < path.len() {
        match path[i] {
            b'%' if !is_normal_escape(&path[i..]) => return Ok(false),
            b'\\' => return Err(PathError::Separator),
            b'/' => match path.get(i + 1) {
                Some(b'/') => return Ok(false),
                Some(b'.') if is_dot_start(&path[i + 1..]) => return Ok(false),
                _ => {}
            },
            _ => {}
        }
        i += 1;
    }
    Ok(true)
}

/// Whether `esc` (starting at a `%`) is an escape the normal form keeps as it is: upper-case
/// hex, and neither an unreserved character (decoded) nor one refused.
fn is_normal_escape(esc: &[u8]) -> bool {
    let upper = |b: Option<&u8>| matches!(b, Some(b'0'..=b'9' | b'A'..=b'F'));
    if !(upper(esc.get(1)) && upper(esc.get(2))) {
        return false;
    }
    let (Some(hi), Some(lo)) = (hex(esc[1]), hex(esc[2])) else {
        return false;
    };
    let c = hi << 4 | lo;
    !(c == 0 || c == b'/' || c == b'\\' || is_unreserved(c))
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

/// Whether a segment starting at `seg` (which starts with `.`) is `.`, `..`, or one of them
/// followed by `;`.
fn is_dot_start(seg: &[u8]) -> bool {
    let end = |b: Option<&u8>| matches!(b, None | Some(b'/') | Some(b';'));
    end(seg.get(1)) || (seg.get(1) == Some(&b'.') && end(seg.get(2)))
}

fn normalize_slow(path: &str) -> Result<String, PathError> {
    let mut out = String::with_capacity(path.len());
    // Byte offsets in `out` where each kept segment's leading '/' starts, for `..`.
    let mut starts: Vec<usize> = Vec::new();
    let mut segment = String::new();
    let mut trailing_slash = false;
    // Skip the leading '/' (checked by `is_normal`).
    let mut parts = path[1..].split('/').peekable();
    while let Some(raw) = parts.next() {
        let last = parts.peek().is_none();
        decode_segment(raw, &mut segment)?;
        let dot_part = segment.split(';').next().unwrap_or_default();
        if segment != dot_part && (dot_part == "." || dot_part == "..") {
            return Err(PathError::DotParameters);
        }
        match segment.as_str() {
            "" | "." => trailing_slash = last,
            ".." => {
                if let Some(start) = starts.pop() {
                    out.truncate(start);
                }
                trailing_slash = last;
            }
            seg => {
                starts.push(out.len());
                out.push('/');
                out.push_str(seg);
                trailing_slash = false;
            }
        }
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

/// Decodes the unreserved escapes of one segment into `out` (cleared first) and upper-cases
/// the hex of the others.
fn decode_segment(raw: &str, out: &mut String) -> Result<(), PathError> {
    out.clear();
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\\' {
            return Err(PathError::Separator);
        }
        if b != b'%' {
            // Copy the run up to the next escape or backslash as it is (keeps any UTF-8).
            let run = raw[i..].find(['%', '\\']).map_or(raw.len(), |n| i + n);
            out.push_str(&raw[i..run]);
            i = run;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            bytes.get(i + 1).and_then(|&c| hex(c)),
            bytes.get(i + 2).and_then(|&c| hex(c)),
        ) else {
            return Err(PathError::BadEscape);
        };
        let decoded = hi << 4 | lo;
        match decoded {
            0 => return Err(PathError::Nul),
            b'/' | b'\\' => return Err(PathError::Separator),
            c if is_unreserved(c) => {
                out.push(char::from(c));
            }
            c => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(char::from(HEX[usize::from(c >> 4)]));
                out.push(char::from(HEX[usize::from(c & 0xF)]));
            }
        }
        i += 3;
    }
    Ok(())
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, PathError> {
        normalize(p).map(Cow::into_owned)
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for p in [
            "/",
            "/a",
            "/a/b/",
            "/a.b/c..d/.e",
            "/a;b=c",
            "/é",
            "/.well-known/x",
            "/a/..b",
            "/a%20b%3F%C3%A9",
        ] {
            assert!(matches!(normalize(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn dot_segments_are_removed() {
        let cases = [
            ("/pub/../secret.txt", "/secret.txt"),
            ("/x/../admin", "/admin"),
            ("/./admin", "/admin"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/.", "/a/"),
            ("/..", "/"),
            ("/.", "/"),
            ("/a/b/../../..", "/"),
            ("/a/./b/../c", "/a/c"),
        ];
        for (raw, want) in cases {
            assert_eq!(norm(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn unreserved_escapes_are_decoded_before_dot_removal() {
        let cases = [
            ("/pub/%2e%2e/secret.txt", "/secret.txt"),
            ("/api/%2E%2e/admin", "/admin"),
            ("/%2e/admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("/a%7e%2D%5f", "/a~-_"),
            ("/a%20b", "/a%20b"),
            ("/a%3fb%c3%a9", "/a%3Fb%C3%A9"),
            ("/a%252e%252e/x", "/a%252e%252e/x"),
        ];
        for (raw, want) in cases {
            assert_eq!(norm(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn slashes_are_merged() {
        assert_eq!(norm("//admin").as_deref(), Ok("/admin"));
        assert_eq!(norm("/a//b///c//").as_deref(), Ok("/a/b/c/"));
        assert_eq!(norm("//").as_deref(), Ok("/"));
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        let cases = [
            ("*", PathError::NotAbsolute),
            ("", PathError::NotAbsolute),
            ("a/b", PathError::NotAbsolute),
            ("/a%2fb", PathError::Separator),
            ("/pub/..%2Fsecret", PathError::Separator),
            ("/a%5Cb", PathError::Separator),
            ("/a\\..\\b", PathError::Separator),
            ("/a/%5c", PathError::Separator),
            ("/a%00", PathError::Nul),
            ("/a%", PathError::BadEscape),
            ("/a%2", PathError::BadEscape),
            ("/a%zz", PathError::BadEscape),
            ("/pub/..;/secret", PathError::DotParameters),
            ("/pub/.;x/secret", PathError::DotParameters),
            ("/pub/%2e%2e;/secret", PathError::DotParameters),
        ];
        for (raw, want) in cases {
            assert_eq!(norm(raw), Err(want), "{raw}");
        }
    }

    #[test]
    fn the_normal_form_is_a_fixed_point() {
        for p in [
            "/pub/%2e%2e/a%2541/./b//c/..",
            "/%41%42%7E/x%3B/;a",
            "/a/b/../../..",
        ] {
            let once = norm(p).unwrap_or_else(|e| panic!("{p}: {e}"));
            assert!(
                matches!(normalize(&once), Ok(Cow::Borrowed(_))),
                "{p} -> {once}"
            );
        }
    }
}
