use super::*;

#[test]
fn hostnames() {
    assert_eq!(hostname("h", "Example.COM").unwrap(), "example.com");
    assert_eq!(hostname("h", "*.example.com").unwrap(), "*.example.com");
    assert_eq!(hostname("h", "localhost").unwrap(), "localhost");
    for bad in [
        "",
        "*.com",
        "a..b",
        "-a.b",
        "a-.b",
        "a_b.c",
        "a.*.b",
        "*",
        &"a".repeat(64),
        // Refused, not trimmed.
        "example.com.",
        " example.com",
        "example.com\r\n",
    ] {
        assert!(hostname("h", bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn target_urls() {
    assert_eq!(target_url("t", "http://b:8080/").unwrap(), "http://b:8080");
    assert_eq!(target_url("t", "https://b/base").unwrap(), "https://b/base");
    for bad in [
        "b:8080",
        "ftp://b",
        "http://u:p@b",
        "http://b/?q=1",
        "http://b/#f",
        "/rel",
        // What the URL parser would repair is refused, not stored repaired.
        "http:///x",
        "http://b/a\r\nb",
        "http://b/a\tb",
        " http://b",
        "http://b/a b",
        "http://b/\u{e4}",
        "HTTP://b",
        "http://B",
        "http://b:80",
    ] {
        let err = target_url("target_url", bad).unwrap_err().to_string();
        assert!(err.starts_with("invalid target_url"), "{bad:?}: {err}");
    }
}

#[test]
fn header_maps() {
    let mut m = BTreeMap::new();
    m.insert("X-Ok".to_owned(), "v".to_owned());
    assert!(headers("h", &m).is_ok());
    m.insert("Host".to_owned(), "x".to_owned());
    assert!(headers("h", &m).is_err());
    for value in ["a\nb", "a\r\n", " a", "a\t"] {
        let bad = BTreeMap::from([("X-Bad".to_owned(), value.to_owned())]);
        assert!(headers("h", &bad).is_err(), "{value:?} accepted");
    }
    let twice = BTreeMap::from([
        ("X-A".to_owned(), "1".to_owned()),
        ("x-a".to_owned(), "2".to_owned()),
    ]);
    assert!(headers("h", &twice).is_err());
}

#[test]
fn patterns() {
    assert!(path_pattern(MatchKind::Prefix, "/api/").is_ok());
    assert!(path_pattern(MatchKind::Prefix, "api").is_err());
    // Only normal forms: data planes match the normalised request path.
    for normal in ["/a%20b", "/caf%C3%A9", "/a;b", "/a..b/.c"] {
        assert!(path_pattern(MatchKind::Exact, normal).is_ok(), "{normal}");
    }
    for raw in [
        "/a/../admin",
        "/./a",
        "/a/.",
        "//a",
        "/a%2e",
        "/%61",
        "/a%2Fb",
        "/a%5C",
        "/a%00",
        "/a%c3%a9",
        "/a%",
        "/a%zz",
        "/a\\b",
        "/..;/a",
    ] {
        let err = path_pattern(MatchKind::Prefix, raw).expect_err(raw);
        assert!(err.to_string().contains("path_pattern"), "{raw}: {err}");
    }
    assert!(path_pattern(MatchKind::Regex, "^/v[0-9]+/").is_ok());
    assert!(path_pattern(MatchKind::Regex, "(").is_err());
    // Too large once compiled.
    assert!(path_pattern(MatchKind::Regex, "\\w{1000}\\w{1000}\\w{1000}").is_err());
}

#[test]
fn method_lists() {
    assert_eq!(
        methods(&["GET".into(), "GET".into(), "POST".into()]).unwrap(),
        ["GET", "POST"]
    );
    for bad in ["GE T", "GET\r\n", " GET", "get", ""] {
        let err = methods(&[bad.into()]).unwrap_err().to_string();
        assert!(err.starts_with("invalid methods"), "{bad:?}: {err}");
    }
}

#[test]
fn doc_urls_are_stored_as_given_or_refused() {
    assert_eq!(
        doc_url("d", "https://d.example").unwrap(),
        "https://d.example"
    );
    assert_eq!(doc_url("d", "").unwrap(), "");
    for bad in [" https://d.example", "https:///d", "https://d.example/a\nb"] {
        assert!(doc_url("d", bad).is_err(), "{bad:?} accepted");
    }
}
