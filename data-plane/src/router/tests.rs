use std::sync::Arc;

use http::Method;
use regex::Regex;

use super::host::HostError;
use super::*;
use crate::spec::HostPattern;

fn table(entries: &[&str]) -> HostTable<&'static str> {
    let mut t = HostTable::default();
    for e in entries {
        let leaked: &'static str = Box::leak(e.to_string().into_boxed_str());
        let pattern = HostPattern::parse(e).unwrap_or_else(|r| panic!("{e}: {r}"));
        assert!(t.insert(&pattern, leaked));
    }
    t
}

fn lookup<'a>(t: &'a HostTable<&'static str>, host: &str) -> Option<&'a str> {
    t.lookup(host)
        .unwrap_or_else(|e| panic!("{host}: {e}"))
        .copied()
}

#[test]
fn host_exact_case_and_port() {
    let t = table(&["app.example.com", "other.example.com"]);
    assert_eq!(lookup(&t, "app.example.com"), Some("app.example.com"));
    assert_eq!(lookup(&t, "APP.Example.COM"), Some("app.example.com"));
    assert_eq!(lookup(&t, "app.example.com:8080"), Some("app.example.com"));
    assert_eq!(lookup(&t, "app.example.com."), Some("app.example.com"));
    assert_eq!(lookup(&t, "nope.example.com"), None);
    assert_eq!(lookup(&t, "example.com"), None);
}

#[test]
fn host_wildcard_specificity() {
    let t = table(&["*.example.com", "*.b.example.com", "x.b.example.com"]);
    // Exact beats every wildcard.
    assert_eq!(lookup(&t, "x.b.example.com"), Some("x.b.example.com"));
    // Most specific wildcard wins.
    assert_eq!(lookup(&t, "a.b.example.com"), Some("*.b.example.com"));
    assert_eq!(lookup(&t, "deep.a.b.example.com"), Some("*.b.example.com"));
    // One or more labels in front of the suffix.
    assert_eq!(lookup(&t, "a.example.com"), Some("*.example.com"));
    assert_eq!(lookup(&t, "a.c.example.com:443"), Some("*.example.com"));
    // Never the bare suffix.
    assert_eq!(lookup(&t, "example.com"), None);
    assert_eq!(lookup(&t, "b.example.com"), Some("*.example.com"));
}

#[test]
fn host_duplicates_are_refused() {
    let mut t = table(&["a.example.com", "*.example.com"]);
    let dup = HostPattern::parse("A.example.com.").unwrap_or_else(|r| panic!("{r}"));
    assert!(!t.insert(&dup, "again"));
    let dup = HostPattern::parse("*.EXAMPLE.com").unwrap_or_else(|r| panic!("{r}"));
    assert!(!t.insert(&dup, "again"));
    assert_eq!(t.len(), 2);
}

#[test]
fn host_normalization_rejects_garbage() {
    assert_eq!(NormalizedHost::parse("").err(), Some(HostError::Empty));
    assert_eq!(NormalizedHost::parse(":80").err(), Some(HostError::Empty));
    assert_eq!(
        NormalizedHost::parse("a:b").err(),
        Some(HostError::Malformed)
    );
    assert_eq!(
        NormalizedHost::parse("a:").err(),
        Some(HostError::Malformed)
    );
    assert_eq!(
        NormalizedHost::parse("a:1:2").err(),
        Some(HostError::Malformed)
    );
    assert_eq!(
        NormalizedHost::parse("a..b").err(),
        Some(HostError::Malformed)
    );
    assert_eq!(
        NormalizedHost::parse(".a").err(),
        Some(HostError::Malformed)
    );
    // One trailing dot is dropped; a second is an empty label (found by fuzz/host).
    assert_eq!(
        NormalizedHost::parse("a.example.com..").err(),
        Some(HostError::Malformed)
    );
    assert_eq!(
        NormalizedHost::parse("a.example.com. :80").err(),
        Some(HostError::Malformed)
    );
    assert_eq!(
        NormalizedHost::parse(&"a".repeat(300)).err(),
        Some(HostError::TooLong)
    );
    let v6 = NormalizedHost::parse("[::1]:8080").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v6.as_str(), "[::1]");
    assert_eq!(
        NormalizedHost::parse("[::1]x").err(),
        Some(HostError::Malformed)
    );
}

/// `slice_of` takes the common Host without a copy, and only where `parse` gives the same
/// name; everything else is left to `parse`.
#[test]
fn host_slices_are_what_parse_gives() {
    let long = format!("{}.com", "a".repeat(249));
    let too_long = format!("{}.com", "a".repeat(250));
    for raw in [
        "a",
        "app.example.com",
        "app.example.com:8080",
        "bench.local:80",
        "x-1.a-b.c0",
        "127.0.0.1",
        "127.0.0.1:65535",
        long.as_str(),
        too_long.as_str(),
        "",
        ":80",
        "a:",
        "a:b",
        "a:1:2",
        "a:123456",
        "a..b",
        ".a",
        "a.",
        "a.example.com.",
        "a.example.com..",
        "a.example.com. :80",
        " a",
        "a ",
        "a :80",
        "App.Example.com",
        "a_b.com",
        "[::1]",
        "[::1]:8080",
        "a\tb",
        "\u{e9}.com",
    ] {
        let parsed = NormalizedHost::parse(raw);
        match NormalizedHost::slice_of(raw) {
            Some(slice) => assert_eq!(
                parsed.as_ref().map(NormalizedHost::as_str),
                Ok(slice),
                "{raw:?}"
            ),
            None => {
                let lower = raw.bytes().all(|b| !b.is_ascii_uppercase());
                let plain = raw
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b));
                let slice = parsed.as_ref().is_ok_and(|p| raw.starts_with(p.as_str()));
                assert!(
                    !(lower && plain && slice && !raw.contains(".:") && !raw.ends_with('.')),
                    "{raw:?} could have been a slice"
                );
            }
        }
    }
    assert_eq!(NormalizedHost::slice_of(&long), Some(long.as_str()));
    assert_eq!(
        NormalizedHost::slice_of("bench.local:80"),
        Some("bench.local")
    );
    assert_eq!(NormalizedHost::slice_of("App.Example.com"), None);
}

#[test]
fn hostname_patterns_validate() {
    assert!(HostPattern::parse("*.com").is_err());
    assert!(HostPattern::parse("-a.example.com").is_err());
    assert!(HostPattern::parse("a_b.example.com").is_err());
    assert!(HostPattern::parse("a.*.example.com").is_err());
    assert!(HostPattern::parse("").is_err());
    assert_eq!(
        HostPattern::parse(" App.Example.com. ").ok(),
        Some(HostPattern::Exact("app.example.com".into()))
    );
}

fn prefix(p: &str) -> PathMatch {
    PathMatch::Prefix(p.into())
}

fn exact(p: &str) -> PathMatch {
    PathMatch::Exact(p.into())
}

fn regex(p: &str) -> PathMatch {
    PathMatch::Regex(Regex::new(p).unwrap_or_else(|e| panic!("{e}")))
}

fn routes(defs: Vec<(&'static str, u32, PathMatch, &[&str])>) -> RouteTable<&'static str> {
    let entries = defs
        .into_iter()
        .map(|(id, prio, path, methods)| {
            let methods = methods.iter().map(|m| Box::<str>::from(*m)).collect();
            (Arc::new(RouteMatcher::new(id, prio, path, methods)), id)
        })
        .collect();
    RouteTable::new(entries, "fallback")
}

fn pick<'a>(t: &'a RouteTable<&'static str>, method: Method, path: &str) -> &'a str {
    t.select(&method, path).target
}

#[test]
fn route_priority_wins_over_kind() {
    let t = routes(vec![
        ("exact-low", 1, exact("/api/users"), &[]),
        ("prefix-high", 10, prefix("/api"), &[]),
    ]);
    assert_eq!(pick(&t, Method::GET, "/api/users"), "prefix-high");
    assert_eq!(pick(&t, Method::GET, "/other"), "fallback");
    assert!(t.select(&Method::GET, "/other").route.is_none());
}

#[test]
fn route_ties_exact_then_regex_then_prefix_then_length_then_id() {
    let t = routes(vec![
        ("p-short", 5, prefix("/a"), &[]),
        ("p-long", 5, prefix("/a/b"), &[]),
        ("re", 5, regex("^/a/b/c$"), &[]),
        ("ex", 5, exact("/a/b/c"), &[]),
        ("p-same-z", 5, prefix("/z"), &[]),
        ("p-same-y", 5, prefix("/z"), &[]),
    ]);
    assert_eq!(
        t.order().collect::<Vec<_>>(),
        ["ex", "re", "p-long", "p-same-y", "p-same-z", "p-short"]
    );
    assert_eq!(pick(&t, Method::GET, "/a/b/c"), "ex");
    assert_eq!(pick(&t, Method::GET, "/a/b/cd"), "p-long");
    assert_eq!(pick(&t, Method::GET, "/a/x"), "p-short");
    assert_eq!(pick(&t, Method::GET, "/z"), "p-same-y");
}

#[test]
fn route_kinds_match_as_documented() {
    let t = routes(vec![
        ("prefix", 1, prefix("/api"), &[]),
        ("dir", 1, prefix("/static/"), &[]),
        ("exact", 1, exact("/health"), &[]),
        ("regex", 1, regex(r"^/v\d+/"), &[]),
    ]);
    // Prefixes match whole segments.
    assert_eq!(pick(&t, Method::GET, "/api"), "prefix");
    assert_eq!(pick(&t, Method::GET, "/api/"), "prefix");
    assert_eq!(pick(&t, Method::GET, "/api/users"), "prefix");
    assert_eq!(pick(&t, Method::GET, "/apix"), "fallback");
    assert_eq!(pick(&t, Method::GET, "/api.json"), "fallback");
    assert_eq!(pick(&t, Method::GET, "/static/app.js"), "dir");
    assert_eq!(pick(&t, Method::GET, "/static"), "fallback");
    assert_eq!(pick(&t, Method::GET, "/health"), "exact");
    assert_eq!(pick(&t, Method::GET, "/health/x"), "fallback");
    assert_eq!(pick(&t, Method::GET, "/v2/items"), "regex");
    assert_eq!(pick(&t, Method::GET, "/x/v2/items"), "fallback");
}

#[test]
fn route_methods_filter() {
    let t = routes(vec![
        ("writes", 10, prefix("/"), &["POST", "PUT"]),
        ("reads", 1, prefix("/"), &[]),
    ]);
    assert_eq!(pick(&t, Method::POST, "/x"), "writes");
    assert_eq!(pick(&t, Method::PUT, "/x"), "writes");
    assert_eq!(pick(&t, Method::GET, "/x"), "reads");
    let custom = Method::from_bytes(b"post").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pick(&t, custom, "/x"), "writes");
}
