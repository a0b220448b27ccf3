//! Splitting short strings at an ASCII delimiter, and comparing them ignoring case, for the
//! request path.
//!
//! `str::split_once(char)` and `str::find(char)` go through the general character
//! searcher and `memchr`: ~170 instructions per call on a host name or an audience, where
//! a byte loop takes a third of that. A protected request makes half a dozen such splits.

/// The index of the first `delimiter` in `s`.
pub(crate) fn find(s: &str, delimiter: u8) -> Option<usize> {
    debug_assert!(delimiter.is_ascii());
    s.bytes().position(|b| b == delimiter)
}

/// `s` split around the first `delimiter`, which is in neither part.
pub(crate) fn split_once(s: &str, delimiter: u8) -> Option<(&str, &str)> {
    let i = find(s, delimiter)?;
    // An ASCII byte is always a character boundary, so neither `get` fails.
    Some((s.get(..i)?, s.get(i + 1..)?))
}

/// Whether `s` equals `lower` ignoring ASCII case, for a `lower` without uppercase ASCII
/// letters (a `HeaderName`, a lowercase literal): what `s.eq_ignore_ascii_case(lower)`
/// answers, eight bytes at a time. That lowercases both sides byte by byte, ~16
/// instructions a byte (~210 for `authorization`, matched a few times per protected
/// request); this takes about a tenth. Inlined: most calls are the length check of a
/// name that is not the one sought.
#[inline]
pub(crate) fn eq_lowercase(s: &[u8], lower: &[u8]) -> bool {
    debug_assert!(!lower.iter().any(u8::is_ascii_uppercase));
    if s.len() != lower.len() {
        return false;
    }
    if s.len() < 8 {
        return s
            .iter()
            .zip(lower)
            .all(|(a, b)| a.to_ascii_lowercase() == *b);
    }
    let word = |bytes: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(w)
    };
    // Whole words, then the last eight bytes (overlapping the previous word). A plain
    // loop: an iterator chain here did not inline and cost twice the comparison.
    let last = s.len() - 8;
    let mut at = 0;
    while at < last {
        if lowercase_word(word(s, at)) != word(lower, at) {
            return false;
        }
        at += 8;
    }
    lowercase_word(word(s, last)) == word(lower, last)
}

/// `u8::to_ascii_lowercase` on each byte of `w` at once: `A`–`Z` gain 0x20, every other
/// byte (non-letters, bytes ≥ 0x80) is unchanged. Per byte, on its low seven bits (no
/// carry can cross into the next byte): +0x25 sets the high bit above `Z`, +0x3f at or
/// above `A`.
fn lowercase_word(w: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low = w & LOW7;
    let above_z = low + 0x2525_2525_2525_2525;
    let from_a = low + 0x3f3f_3f3f_3f3f_3f3f;
    let upper = (from_a ^ above_z) & !w & HIGH;
    w | (upper >> 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eq_lowercase_answers_as_eq_ignore_ascii_case_for_every_byte() {
        // Every byte value at every position of names 0..=20 bytes long.
        let lower = b"x-request-id:authz~0";
        for len in 0..=lower.len() {
            let target = &lower[..len];
            assert!(eq_lowercase(target, target));
            let upper = target.to_ascii_uppercase();
            assert!(eq_lowercase(&upper, target), "{upper:?}");
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut s = target.to_vec();
                    s[at] = b;
                    assert_eq!(
                        eq_lowercase(&s, target),
                        s.eq_ignore_ascii_case(target),
                        "{s:?} vs {target:?}"
                    );
                }
            }
        }
        assert!(eq_lowercase(b"Authorization", b"authorization"));
        assert!(!eq_lowercase(b"Authorizatio", b"authorization"));
        assert!(!eq_lowercase(b"Authorizatiom", b"authorization"));
        assert!(!eq_lowercase(b"authorization\xc1", b"authorizationa"));
    }

    #[test]
    fn splits_at_the_first_delimiter_only() {
        assert_eq!(split_once("host:8080", b':'), Some(("host", "8080")));
        assert_eq!(split_once("a:b:c", b':'), Some(("a", "b:c")));
        assert_eq!(split_once(":", b':'), Some(("", "")));
        assert_eq!(split_once("héllo:1", b':'), Some(("héllo", "1")));
        assert_eq!(split_once("host", b':'), None);
        assert_eq!(find("ab/c/d", b'/'), Some(2));
        assert_eq!(find("", b'/'), None);
    }
}
