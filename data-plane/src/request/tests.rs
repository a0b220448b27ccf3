use std::net::SocketAddr;

use http::header::{CONNECTION, HOST, TE, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderValue, Request, Version};

use super::headers::{remove_hop_by_hop, set_forwarding};
use super::host::RequestHost;
use super::upgrade::is_websocket_upgrade;
use super::{ConnInfo, Listener, ProxyError};

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_static(value));
    }
    map
}

#[test]
fn hop_by_hop_headers_are_removed() {
    let mut h = headers(&[
        ("connection", "keep-alive, X-Secret"),
        ("connection", "x-other"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("te", "trailers"),
        ("trailer", "x-checksum"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "websocket"),
        ("x-secret", "1"),
        ("x-other", "2"),
        ("x-kept", "3"),
        ("proxy-authorization", "Basic abc"),
    ]);
    remove_hop_by_hop(&mut h, false);
    let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
    left.sort_unstable();
    assert_eq!(left, ["proxy-authorization", "x-kept"]);
}

#[test]
fn each_hop_by_hop_header_is_removed_without_a_connection_header() {
    for name in [
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        let mut h = headers(&[(name, "x"), ("x-kept", "3")]);
        remove_hop_by_hop(&mut h, false);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-kept"], "{name}");
    }
}

#[test]
fn headers_named_by_connection_go_wherever_connection_stands() {
    for order in [["x-secret", "connection"], ["connection", "x-secret"]] {
        let mut h = headers(&[
            (
                order[0],
                if order[0] == "connection" {
                    "X-Secret"
                } else {
                    "1"
                },
            ),
            (
                order[1],
                if order[1] == "connection" {
                    "X-Secret"
                } else {
                    "1"
                },
            ),
            ("x-kept", "3"),
        ]);
        remove_hop_by_hop(&mut h, false);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-kept"], "order {order:?}");
    }
}

#[test]
fn upgrade_headers_survive_when_relaying() {
    let mut h = headers(&[
        ("connection", "Upgrade, x-drop"),
        ("upgrade", "websocket"),
        ("x-drop", "1"),
        ("te", "trailers"),
        ("sec-websocket-key", "k"),
    ]);
    remove_hop_by_hop(&mut h, true);
    assert_eq!(
        h.get(CONNECTION),
        Some(&HeaderValue::from_static("upgrade"))
    );
    assert_eq!(h.get(UPGRADE), Some(&HeaderValue::from_static("websocket")));
    assert!(h.get("x-drop").is_none() && h.get(TE).is_none());
    assert!(h.get("sec-websocket-key").is_some());
    assert!(h.get(TRANSFER_ENCODING).is_none());
}

fn request(uri: &str, host: Option<&'static str>, version: Version) -> Request<()> {
    let mut req = Request::new(());
    *req.uri_mut() = uri.parse().unwrap_or_else(|e| panic!("{e}"));
    *req.version_mut() = version;
    if let Some(host) = host {
        req.headers_mut()
            .insert(HOST, HeaderValue::from_static(host));
    }
    req
}

#[test]
fn forwarding_headers_replace_client_values() {
    let peer: SocketAddr = "[::ffff:10.1.2.3]:5555"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let conn = ConnInfo::new(peer, Listener::Http { https_port: 443 });
    let req = request("/", Some("App.Example.com:8080"), Version::HTTP_11);
    let host = RequestHost::from_request(&req).unwrap_or_else(|e| panic!("{e}"));
    let mut h = headers(&[
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-for", "7.7.7.7"),
        ("x-real-ip", "6.6.6.6"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil"),
        ("forwarded", "for=6.6.6.6"),
    ]);
    let client = conn.client_of(&h);
    set_forwarding(&mut h, &conn, &client, &host);
    let all = |name: &str| -> Vec<&str> {
        h.get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    };
    assert_eq!(all("x-forwarded-for"), ["10.1.2.3"]);
    assert_eq!(all("x-real-ip"), ["10.1.2.3"]);
    assert_eq!(all("x-forwarded-proto"), ["http"]);
    assert_eq!(all("x-forwarded-host"), ["App.Example.com:8080"]);
    assert!(all("forwarded").is_empty());
    assert_eq!(host.name(), "app.example.com");
}

#[test]
fn request_host_rules() {
    let ok = |req: &Request<()>| RequestHost::from_request(req).map(|h| h.name().to_owned());
    // HTTP/2 style: authority only.
    let h2 = request("http://App.test:81/x", None, Version::HTTP_2);
    assert_eq!(ok(&h2).ok().as_deref(), Some("app.test"));
    // Both present and agreeing (port ignored).
    let both = request("http://app.test/x", Some("APP.test:80"), Version::HTTP_11);
    assert_eq!(ok(&both).ok().as_deref(), Some("app.test"));
    // Disagreeing.
    let clash = request("http://a.test/x", Some("b.test"), Version::HTTP_11);
    assert!(matches!(ok(&clash), Err(ProxyError::HostMismatch)));
    // Missing.
    let none = request("/x", None, Version::HTTP_11);
    assert!(matches!(ok(&none), Err(ProxyError::MissingHost)));
    // Duplicated.
    let mut dup = request("/x", Some("a.test"), Version::HTTP_11);
    dup.headers_mut()
        .append(HOST, HeaderValue::from_static("b.test"));
    assert!(matches!(ok(&dup), Err(ProxyError::DuplicateHost)));
}

#[test]
fn websocket_upgrade_detection() {
    let mut req = request("/ws", Some("a"), Version::HTTP_11);
    req.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
    req.headers_mut()
        .insert(UPGRADE, HeaderValue::from_static("WebSocket"));
    assert!(is_websocket_upgrade(&req));
    *req.version_mut() = Version::HTTP_2;
    assert!(!is_websocket_upgrade(&req));
    *req.version_mut() = Version::HTTP_11;
    req.headers_mut()
        .insert(UPGRADE, HeaderValue::from_static("h2c"));
    assert!(!is_websocket_upgrade(&req));
}

#[test]
fn unknown_host_body_is_capped() {
    let long = "a".repeat(200);
    let response = ProxyError::unknown_host(&long).into_response();
    assert_eq!(response.status(), http::StatusCode::NOT_FOUND);
    match ProxyError::unknown_host(&long) {
        ProxyError::UnknownHost(h) => assert_eq!(h.len(), 64),
        other => panic!("{other:?}"),
    }
}

#[test]
fn redirect_location_building() {
    let uri = |s: &str| s.parse::<http::Uri>().unwrap_or_else(|e| panic!("{e}"));
    let loc = |host, port, u: &str| {
        super::https::redirect_location(host, port, &uri(u))
            .map(|v| v.to_str().unwrap_or_default().to_owned())
    };
    assert_eq!(
        loc("app.test", 443, "/a/b?x=1&y").as_deref(),
        Some("https://app.test/a/b?x=1&y")
    );
    assert_eq!(
        loc("app.test", 8443, "/").as_deref(),
        Some("https://app.test:8443/")
    );
    // Absolute-form request target: only path and query are kept.
    assert_eq!(
        loc("app.test", 443, "http://app.test:80/p?q").as_deref(),
        Some("https://app.test/p?q")
    );
    assert_eq!(loc("[::1]", 443, "*").as_deref(), Some("https://[::1]/"));
}
