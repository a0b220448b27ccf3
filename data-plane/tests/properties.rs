//! Property tests of the request head → decision path, bearer verification and snapshot
//! compilation, on generated inputs (the checks themselves are in `props/`, shared with
//! the fuzz targets in `fuzz/`). Case counts are kept small so the whole file runs in a
//! few seconds; `PROPTEST_CASES=N` runs more.

mod props;

use proptest::prelude::*;
use proptest::test_runner::Config;

/// Path segments biased towards what normalisation and prefix matching decide on.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "", ".", "..", "pub", "pubx", "pubfoo", "Pub", "%70ub", "%70%75%62", "pu%62",
            "%2e", "%2E", "%2e%2e", ".%2e", "%2e.", "..;", ".;x", "%2e%2e;", "..%3B",
            "health", "healthz", "%68ealth", "%2f", "%2F", "%5c", "%5C", "\\", "%00", "%",
            "%2", "%zz", "%41", "%7e", "%7E", "%20", "%25", "%252e", "a;b", ";", "~", "é",
            "%C3%A9", "%c3", "x",
        ]).prop_map(str::to_owned),
        1 => "[a-z.%0-9A-F;~_-]{0,6}",
        1 => any::<String>().prop_map(|s| s.chars().take(6).collect()),
    ]
}

/// A request path: segments joined by one or more `/` (or none at the start).
fn request_path() -> impl Strategy<Value = String> {
    (
        prop_oneof![4 => Just("/"), 1 => Just("//"), 1 => Just("")],
        prop::collection::vec(
            (segment(), prop_oneof![4 => Just("/"), 1 => Just("//")]),
            0..6,
        ),
        prop_oneof![2 => Just(""), 1 => Just("/")],
    )
        .prop_map(|(lead, parts, tail)| {
            let mut p = lead.to_owned();
            for (i, (seg, sep)) in parts.iter().enumerate() {
                if i > 0 {
                    p.push_str(sep);
                }
                p.push_str(seg);
            }
            p.push_str(tail);
            p
        })
}

/// A request target: a path, optionally a query, sometimes in absolute form, sometimes
/// raw bytes.
fn request_target() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => (request_path(), prop::option::of("[a-z=&%./]{0,8}")).prop_map(|(p, q)| match q {
            Some(q) => format!("{p}?{q}").into_bytes(),
            None => p.into_bytes(),
        }),
        // Starting inside a public prefix, then wandering out of it (or not).
        3 => (prop::sample::select(vec!["/pub", "/pub/", "/health", "/%70ub/", "/pub%2F"]), request_path())
            .prop_map(|(prefix, p)| format!("{prefix}{p}").into_bytes()),
        1 => request_path().prop_map(|p| format!("http://api.example.com{p}").into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..24),
    ]
}

fn host() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => Just(b"api.example.com".to_vec()),
        1 => prop::sample::select(vec![
            "API.Example.com", "api.example.com:8080", "api.example.com.", " api.example.com",
            "other.example.com", "api.example.com:", "[::1]", "api..example.com",
        ]).prop_map(|s| s.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..20),
    ]
}

/// `Authorization` values: none, schemes with junk, and JWT-shaped forgeries (alg none,
/// HS256, the snapshot's kid and issuer, random signatures).
fn authorization() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        3 => Just(None),
        2 => forged_token().prop_map(|t| Some(format!("Bearer {t}").into_bytes())),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(Some),
        1 => "[ \t]{0,2}(Bearer|bearer|Basic|BEARER)[ \t]?[ -~]{0,40}".prop_map(|s| Some(s.into_bytes())),
    ]
}

fn forged_token() -> impl Strategy<Value = String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    (
        prop::sample::select(vec!["ES256", "RS256", "none", "HS256", "ES384", ""]),
        prop::sample::select(vec![props::KID, "other", ""]),
        prop::sample::select(vec!["at+jwt", "JWT", ""]),
        prop::collection::vec(any::<u8>(), 0..72),
        any::<bool>(),
    )
        .prop_map(|(alg, kid, typ, signature, expired)| {
            let header = serde_json::json!({ "alg": alg, "kid": kid, "typ": typ });
            let exp = if expired { 1 } else { 4_000_000_000_i64 };
            let claims = serde_json::json!({
                "iss": props::TOKEN_ISSUER, "sub": "u", "aud": "http://api.example.com",
                "client_id": "c", "scope": "mcp", "jti": "j", "iat": 1, "exp": exp,
            });
            format!(
                "{}.{}.{}",
                B64.encode(header.to_string()),
                B64.encode(claims.to_string()),
                B64.encode(signature)
            )
        })
}

fn method() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::sample::select(vec!["GET", "POST", "HEAD", "DELETE", "OPTIONS"])
            .prop_map(|m| m.as_bytes().to_vec()),
        1 => "[A-Za-z]{1,7}".prop_map(String::into_bytes),
    ]
}

fn cases(n: u32) -> Config {
    Config {
        // PROPTEST_CASES overrides (for longer runs).
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(n),
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn path_normal_form(path in request_path()) {
        props::check_path(path.as_bytes());
    }

    #[test]
    fn path_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..32)) {
        props::check_path(&bytes);
    }
}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn host_lookup(host in prop_oneof![
        3 => "([a-zA-Z0-9*_-]{0,5}[.:]){0,3}((b|B)\\.)?(example|EXAMPLE)\\.com\\.?(:[0-9]{0,6})?"
            .prop_map(String::into_bytes),
        1 => prop::sample::select(vec![
            "example.com", "b.example.com", "B.Example.COM.:80", "app.example.com",
            "x.app.example.com", "[::1]:8080", "app.example.com:", ":80", ".example.com",
        ]).prop_map(|h| h.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..300),
    ]) {
        thread_local!(static SNAPSHOT: portcullis_data_plane::config::Snapshot = props::host_snapshot());
        SNAPSHOT.with(|s| props::check_host(s, &host));
    }
}

#[test]
fn refused_requests_are_never_forwarded() {
    let edge = props::Edge::new();
    let mut runner = proptest::test_runner::TestRunner::new(cases(600));
    let strategy = (method(), request_target(), host(), authorization());
    runner
        .run(&strategy, |(method, target, host, auth)| {
            edge.check(&method, &target, &host, auth.as_deref());
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    // The run exercised the forwarding side, not only refusals.
    assert!(edge.forwarded() > 10, "only {} forwarded", edge.forwarded());
}

#[test]
fn forged_tokens_never_verify() {
    let verifier = props::verifier();
    let mut runner = proptest::test_runner::TestRunner::new(cases(500));
    let strategy = prop_oneof![forged_token(), any::<String>(),];
    runner
        .run(&strategy, |token| {
            props::check_verify(&verifier, token.as_bytes());
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn snapshots_decode_and_compile_without_panicking() {
    let clients = portcullis_data_plane::upstream::ClientCache::new();
    let seed = props::snapshot_seed();
    props::check_snapshot(&clients, &seed);
    let mut runner = proptest::test_runner::TestRunner::new(cases(300));
    // Mutations of a valid snapshot (overwritten, inserted and removed bytes), and raw bytes.
    let edits = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..8);
    let strategy = prop_oneof![
        3 => edits.prop_map(move |edits| {
            let mut bytes = seed.clone();
            for (at, byte, op) in edits {
                let i = at.index(bytes.len() + 1);
                match op {
                    0 if i < bytes.len() => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ if i < bytes.len() => { bytes.remove(i); }
                    _ => {}
                }
            }
            bytes
        }),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ];
    runner
        .run(&strategy, |bytes| {
            props::check_snapshot(&clients, &bytes);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
