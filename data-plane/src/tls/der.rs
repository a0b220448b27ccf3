//! Just enough DER to find a certificate's SubjectPublicKeyInfo without webpki.
//!
//! ACME TLS-ALPN-01 challenge certificates carry the `acmeIdentifier` extension, which
//! RFC 8737 §3 requires to be critical; webpki (and so rustls' `keys_match`) rejects any
//! certificate with an unknown critical extension. Matching a challenge key against its
//! certificate therefore walks the DER here instead. Input comes from the control
//! plane, and every step is bounds-checked: malformed input yields `None`, never a panic.

const SEQUENCE: u8 = 0x30;
/// `[0] EXPLICIT Version` at the start of a v2/v3 `TBSCertificate`.
const VERSION: u8 = 0xa0;

/// One DER element at the start of `input`.
struct Tlv<'a> {
    tag: u8,
    /// Tag, length and contents.
    whole: &'a [u8],
    contents: &'a [u8],
    rest: &'a [u8],
}

/// The DER `SubjectPublicKeyInfo` of an X.509 certificate (RFC 5280 §4.1):
/// `Certificate → TBSCertificate → [version], serialNumber, signature, issuer,
/// validity, subject, subjectPublicKeyInfo`.
pub(crate) fn subject_public_key_info(cert: &[u8]) -> Option<&[u8]> {
    let cert = sequence(cert)?;
    let tbs = sequence(cert.contents)?;
    let mut rest = tbs.contents;
    let first = tlv(rest)?;
    if first.tag == VERSION {
        rest = first.rest;
    }
    for _ in 0..5 {
        rest = tlv(rest)?.rest;
    }
    sequence(rest).map(|spki| spki.whole)
}

fn sequence(input: &[u8]) -> Option<Tlv<'_>> {
    tlv(input).filter(|t| t.tag == SEQUENCE)
}

fn tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let (&tag, after_tag) = input.split_first()?;
    let (&first, after_len) = after_tag.split_first()?;
    let (len, body) = if first < 0x80 {
        (usize::from(first), after_len)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, body) = after_len.split_at_checked(n)?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, body)
    };
    let (contents, rest) = body.split_at_checked(len)?;
    let header = input.len() - body.len();
    Some(Tlv {
        tag,
        whole: input.get(..header + len)?,
        contents,
        rest,
    })
}
