//! `X-Request-Id`: the correlation id of one request, in its access-log record, sent to
//! the upstream and returned to the client.
//!
//! The client's value is kept when it is a sane token (1–128 characters of
//! `[A-Za-z0-9._~:+/=-]`, which covers UUIDs, ULIDs and base64 ids and nothing that could
//! split a log line or a header); otherwise, or when absent, a new one replaces it: 32 hex
//! digits, the first 12 the Unix time in milliseconds and the other 20 from the thread's
//! RNG (rand's thread-local, reseeded ChaCha: 80 unpredictable bits), as a UUIDv7 or ULID
//! orders its bits. Why time first: the control plane indexes records by request id, and
//! ids that grow with time are appended to that index where random ones would each
//! rewrite a different page of it (three times the ingest rate of the embedded store,
//! bench/README.md). Cost: one header lookup; a generated id costs a clock reading and is
//! hex-encoded on the stack and copied once into the header value (no formatting
//! machinery, no intermediate `String`).

use http::{HeaderMap, HeaderName, HeaderValue};

/// `X-Request-Id`.
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied id kept.
const MAX_LEN: usize = 128;

/// The request's id: the client's if sane, else a new one. The request's headers then
/// carry exactly that id (a second or insane value is replaced), so the upstream sees it.
pub(crate) fn take_or_make(headers: &mut HeaderMap) -> HeaderValue {
    let mut values = headers.get_all(&X_REQUEST_ID).iter();
    if let (Some(value), None) = (values.next(), values.next())
        && is_sane(value.as_bytes())
    {
        return value.clone();
    }
    let id = generate();
    headers.insert(X_REQUEST_ID, id.clone());
    id
}

pub(crate) fn is_sane(id: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"._~:+/=-".contains(&b))
}

fn generate() -> HeaderValue {
    // 32 hex digits are always a valid header value.
    HeaderValue::from_bytes(&generate_hex()).unwrap_or(HeaderValue::from_static("0"))
}

/// A new id: 32 hex digits of 128 random bits, on the stack.
pub(crate) fn generate_hex() -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let random: u128 =
        (u128::from(millis & 0xffff_ffff_ffff) << 80) | (rand::random::<u128>() >> 48);
    // Two digits per byte (a shift of the `u128` per digit cost twice as much).
    let mut id = [0u8; 32];
    for (pair, b) in id.chunks_exact_mut(2).zip(random.to_be_bytes()) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_kept_and_others_replaced() {
        let mut headers = HeaderMap::new();
        headers.insert(
            X_REQUEST_ID,
            HeaderValue::from_static("abc-123_x.y~z:1+2/3="),
        );
        assert_eq!(take_or_make(&mut headers), "abc-123_x.y~z:1+2/3=");

        for bad in ["", "has space", "semi;colon", &"a".repeat(129)] {
            let mut headers = HeaderMap::new();
            headers.insert(X_REQUEST_ID, HeaderValue::try_from(bad).unwrap());
            let id = take_or_make(&mut headers);
            assert_eq!(id.len(), 32, "{bad:?}");
            assert!(id.as_bytes().iter().all(u8::is_ascii_hexdigit));
            assert_eq!(headers.get(X_REQUEST_ID), Some(&id));
        }

        let mut two = HeaderMap::new();
        two.append(X_REQUEST_ID, HeaderValue::from_static("a"));
        two.append(X_REQUEST_ID, HeaderValue::from_static("b"));
        let id = take_or_make(&mut two);
        assert_eq!(id.len(), 32);
        assert_eq!(two.get_all(X_REQUEST_ID).iter().count(), 1);

        let mut none = HeaderMap::new();
        let (a, b) = (take_or_make(&mut none), take_or_make(&mut HeaderMap::new()));
        assert_ne!(a, b, "generated ids differ");
        assert_eq!(none.get(X_REQUEST_ID), Some(&a));
        // Time first: a later id sorts after (12 hex digits of milliseconds).
        std::thread::sleep(std::time::Duration::from_millis(2));
        let c = take_or_make(&mut HeaderMap::new());
        assert!(c.as_bytes()[..12] > a.as_bytes()[..12], "{a:?} then {c:?}");
        assert_ne!(
            a.as_bytes()[12..],
            b.as_bytes()[12..],
            "random tails differ"
        );
    }
}
