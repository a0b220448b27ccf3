use super::*;

#[test]
fn hostnames() {
    assert_eq!(hostname("h", "Example.COM.").unwrap(), "example.com");
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
    let mut bad = BTreeMap::new();
    bad.insert("X-Bad".to_owned(), "a\nb".to_owned());
    assert!(headers("h", &bad).is_err());
}

#[test]
fn patterns() {
    assert!(path_pattern(MatchKind::Prefix, "/api/").is_ok());
    assert!(path_pattern(MatchKind::Prefix, "api").is_err());
    assert!(path_pattern(MatchKind::Regex, "^/v[0-9]+/").is_ok());
    assert!(path_pattern(MatchKind::Regex, "(").is_err());
    // Too large once compiled.
    assert!(path_pattern(MatchKind::Regex, "\\w{1000}\\w{1000}\\w{1000}").is_err());
}

#[test]
fn method_lists() {
    assert_eq!(
        methods(&["get".into(), "GET".into(), "post".into()]).unwrap(),
        ["GET", "POST"]
    );
    assert!(methods(&["GE T".into()]).is_err());
}
