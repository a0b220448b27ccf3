//! Read access to a request's header fields, whether hyper parsed them into a
//! [`HeaderMap`] or they are still slices of the request head (the HTTP/1.1 fast path,
//! `crate::request::h1`, which builds no map). The admission reads headers only through
//! this, so both paths verify a request with the same functions.
//!
//! **Invariant.** Both views give the same values for the same head: httparse (which
//! hyper uses too) produced the slices, a field's value without surrounding whitespace,
//! in the order sent; a name is matched case-insensitively, as `HeaderMap` stores names
//! lowercased.

use http::{HeaderMap, HeaderName, HeaderValue};

/// A request's header fields, read by name.
pub(crate) trait HeaderView {
    /// The values of every field named `name`, in the order sent.
    fn values<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a [u8]>;

    /// Whether a field named `name` is present.
    fn contains(&self, name: &HeaderName) -> bool {
        self.values(name).next().is_some()
    }
}

impl HeaderView for HeaderMap {
    fn values<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a [u8]> {
        self.get_all(name).iter().map(HeaderValue::as_bytes)
    }
}

impl HeaderView for [httparse::Header<'_>] {
    fn values<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a [u8]> {
        // `HeaderName`s are lowercase.
        let name = name.as_str().as_bytes();
        self.iter()
            .filter(move |h| crate::ascii::eq_lowercase(h.name.as_bytes(), name))
            .map(|h| h.value)
    }
}

#[cfg(test)]
mod tests {
    use http::header::{AUTHORIZATION, ORIGIN};

    use super::*;

    #[test]
    fn a_map_and_the_head_slices_give_the_same_values_in_order() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nauthorization: Bearer x\r\nX-Other: 1\r\nAUTHORIZATION:  Basic y \r\n\r\n";
        let mut slots = [httparse::EMPTY_HEADER; 8];
        let mut req = httparse::Request::new(&mut slots);
        assert!(req.parse(head).is_ok_and(|s| s.is_complete()));
        let slices: &[httparse::Header<'_>] = req.headers;
        let mut map = HeaderMap::new();
        for h in slices {
            map.append(
                HeaderName::from_bytes(h.name.as_bytes()).unwrap_or_else(|e| panic!("{e}")),
                HeaderValue::from_bytes(h.value).unwrap_or_else(|e| panic!("{e}")),
            );
        }
        let from_slices: Vec<&[u8]> = slices.values(&AUTHORIZATION).collect();
        let from_map: Vec<&[u8]> = HeaderView::values(&map, &AUTHORIZATION).collect();
        assert_eq!(from_slices, [&b"Bearer x"[..], b"Basic y"]);
        assert_eq!(from_slices, from_map);
        assert!(!HeaderView::contains(slices, &ORIGIN) && !HeaderView::contains(&map, &ORIGIN));
    }
}
