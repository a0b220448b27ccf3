//! The fast path's own rules, one by one. End to end (real data plane, raw client and
//! backend): `tests/tests/h1_fast_path.rs`.

use super::*;

/// What [`qualify`] made of a head: path, query, host, keep-alive, request id.
type Qualified = (String, Option<String>, String, bool, Option<String>);

fn qualified(head: &str) -> Option<Qualified> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let n = match req.parse(head.as_bytes()) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return None,
    };
    let head = qualify(&req, n)?;
    Some((
        head.path.into_owned(),
        head.query.map(str::to_owned),
        head.host.as_str().to_owned(),
        head.keep_alive,
        head.request_id
            .map(|id| String::from_utf8_lossy(id).into_owned()),
    ))
}

#[test]
fn a_plain_head_qualifies_with_its_normal_path() {
    let (path, query, host, keep, id) = qualified(
        "GET /a/./b/../c%61//d?x=1&y=/../ HTTP/1.1\r\nHost: App.Example.com:8080\r\nConnection: keep-alive\r\nX-Request-Id: abc-1\r\nContent-Length: 0\r\n\r\n",
    )
    .expect("qualifies");
    assert_eq!(path, "/a/ca/d");
    assert_eq!(query.as_deref(), Some("x=1&y=/../"));
    assert_eq!(host, "app.example.com");
    assert!(keep);
    assert_eq!(id.as_deref(), Some("abc-1"));
}

#[test]
fn connection_close_is_kept_and_odd_request_ids_replaced() {
    let (.., keep, id) = qualified(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, close\r\nX-Request-Id: a b\r\n\r\n",
    )
    .expect("qualifies");
    assert!(!keep);
    assert_eq!(id, None);
    let (.., id) =
        qualified("GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: a\r\nX-Request-Id: b\r\n\r\n")
            .expect("qualifies");
    assert_eq!(id, None, "two ids: a new one");
}

#[test]
fn everything_unusual_goes_to_the_full_path() {
    for head in [
        // Versions.
        "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
        // Bodies, and every way of framing one.
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +0\r\n\r\n",
        // Upgrades, Expect and hop-by-hop fields.
        "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nKeep-Alive: timeout=5\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nProxy-Connection: keep-alive\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nTrailer: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHTTP2-Settings: AAA\r\n\r\n",
        // Loop check.
        "GET / HTTP/1.1\r\nHost: a\r\nVia: 1.1 other\r\n\r\n",
        // Hosts: none, two, malformed, not ASCII.
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a..b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: \r\n\r\n",
        "GET / HTTP/1.1\r\nHost: aé\r\n\r\n",
        // Targets: absolute form, asterisk, refused paths, characters the URI parser judges.
        "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /a%2Fb HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /a/..;/b HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /a{b} HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /a\\b HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /é HTTP/1.1\r\nHost: a\r\n\r\n",
        // CONNECT.
        "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        assert!(qualified(head).is_none(), "{head:?}");
    }
}

#[test]
fn malformed_heads_never_parse_into_the_fast_path() {
    // httparse refuses these; the connection then hands them to hyper, which answers 400.
    for head in [
        "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n folded\r\n\r\n",
        "GET / HTTP/1.1\r\n: empty\r\n\r\n",
        "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut slots);
        let complete = matches!(
            req.parse(head.as_bytes()),
            Ok(httparse::Status::Complete(_))
        );
        assert!(!complete || qualify(&req, 0).is_none(), "{head:?}");
    }
}

#[test]
fn too_many_headers_do_not_parse() {
    let mut head = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..MAX_HEADERS {
        head.push_str(&format!("X-{i}: 1\r\n"));
    }
    head.push_str("\r\n");
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    assert!(req.parse(head.as_bytes()).is_err());
}

#[test]
fn client_claims_and_replaced_headers_are_dropped() {
    let configured = [http::HeaderName::from_static("x-user-name")];
    let mut lower = [0u8; MAX_NAME];
    for name in [
        "Host",
        "CONNECTION",
        "X-Request-Id",
        "Forwarded",
        "X-Real-IP",
        "X-Forwarded-For",
        "x-forwarded-proto",
        "X-Forwarded-Host",
        "X-Forwarded-User",
        "X-Auth-Request-Email",
        "X-Original-URL",
        "X-Rewrite-Url",
        "X-User-Name",
    ] {
        assert!(
            dropped_request_header(name, &configured, &mut lower),
            "{name}"
        );
    }
    for name in [
        "Accept",
        "Authorization",
        "Cookie",
        "X-Custom",
        "Proxy-Authorization",
    ] {
        assert!(
            !dropped_request_header(name, &configured, &mut lower),
            "{name}"
        );
    }
    assert!(dropped_request_header(
        &"x".repeat(MAX_NAME + 1),
        &configured,
        &mut lower
    ));
}

fn response(head: &str, is_head: bool) -> Result<(Response, String), String> {
    rewritten(
        head,
        Rewrite {
            is_head,
            hsts: None,
        },
    )
}

fn rewritten(head: &str, rules: Rewrite<'_>) -> Result<(Response, String), String> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        match parse_response(&head.as_bytes()[at..], &mut out, rules) {
            Ok(Some(Parsed::Informational(n))) => at += n,
            Ok(Some(Parsed::Final(mut r))) => {
                r.body_start += at;
                return Ok((r, String::from_utf8_lossy(&out).into_owned()));
            }
            Ok(None) => return Err("partial".into()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[test]
fn response_heads_are_rewritten_and_framed() {
    let (r, out) = response(
        "HTTP/1.1 200 Fine\r\nContent-Length: 5\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-Request-Id: theirs\r\nDate: Mon, 07 Dec 2026 10:00:00 GMT\r\nX-Kept: 2\r\n\r\nhello",
        false,
    )
    .unwrap();
    assert_eq!(r.framing, Framing::Length(5));
    assert!(r.reusable);
    assert_eq!(r.status, 200);
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nDate: Mon, 07 Dec 2026 10:00:00 GMT\r\nX-Kept: 2\r\n"
    );

    let (r, out) = response(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        false,
    )
    .unwrap();
    assert_eq!(r.framing, Framing::Chunked);
    assert!(out.contains("transfer-encoding: chunked\r\n") && out.contains("date: "));

    let (r, _) = response(
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
        false,
    )
    .unwrap();
    assert_eq!(r.framing, Framing::Length(3));

    // No length: until the upstream closes, chunked to the client, never reused.
    let (r, out) = response("HTTP/1.1 200 OK\r\n\r\n", false).unwrap();
    assert_eq!(r.framing, Framing::Close);
    assert!(!r.reusable && out.contains("transfer-encoding: chunked"));

    // Connection: close, HTTP/1.0: not reused.
    let (r, _) = response(
        "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        false,
    )
    .unwrap();
    assert!(!r.reusable);
    let (r, _) = response("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false).unwrap();
    assert!(!r.reusable);
}

/// Relayed header lines are `name: value` CRLF whatever the upstream's spacing or line
/// ends.
#[test]
fn relayed_header_lines_are_name_colon_space_value() {
    let (_, out) = response(
        "HTTP/1.1 200 OK\r\nX-A: 1\r\nX-B:2\r\nX-C:   3  \r\nX-D: 4\r\nX-E: \r\nConnection: x-f\r\nX-F: dropped\r\nX-G:\t7\r\nX-H: a b\r\nContent-Length: 0\r\nDate: d\r\n\r\n",
        false,
    )
    .unwrap();
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\nX-D: 4\r\nX-E: \r\nX-G: 7\r\nX-H: a b\r\nContent-Length: 0\r\nDate: d\r\n"
    );
    // Bare LF line ends (which httparse accepts) are written with CRLF.
    let (_, out) = response(
        "HTTP/1.1 200 OK\nX-A: 1\nContent-Length: 0\nDate: d\n\n",
        false,
    )
    .unwrap();
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 0\r\nDate: d\r\n"
    );
}

#[test]
fn the_proxys_hsts_replaces_the_upstreams_on_https() {
    let head = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nStrict-Transport-Security: max-age=1\r\nSTRICT-TRANSPORT-SECURITY: max-age=2\r\nX-Kept: 1\r\n\r\n";
    let hsts = HeaderValue::from_static("max-age=600; includeSubDomains");
    let (_, out) = rewritten(
        head,
        Rewrite {
            is_head: false,
            hsts: Some(&hsts),
        },
    )
    .unwrap();
    let sts: Vec<&str> = out
        .split("\r\n")
        .filter(|l| {
            l.to_ascii_lowercase()
                .starts_with("strict-transport-security:")
        })
        .collect();
    assert_eq!(
        sts,
        ["strict-transport-security: max-age=600; includeSubDomains"]
    );
    assert!(out.contains("X-Kept: 1\r\n"), "{out}");
    // Without one configured (or on plain HTTP), the upstream's are relayed as sent.
    let (_, out) = response(head, false).unwrap();
    assert!(
        out.contains(
            "Strict-Transport-Security: max-age=1\r\nSTRICT-TRANSPORT-SECURITY: max-age=2\r\n"
        ),
        "{out}"
    );
}

#[test]
fn head_204_and_304_responses_have_no_body_and_1xx_are_skipped() {
    let (r, out) = response("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", true).unwrap();
    assert_eq!(r.framing, Framing::None);
    assert!(out.contains("Content-Length: 100"), "HEAD keeps the length");
    let (r, _) = response("HTTP/1.1 204 No Content\r\n\r\n", false).unwrap();
    assert_eq!((r.framing, r.reusable), (Framing::None, true));
    let (r, _) = response(
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
        false,
    )
    .unwrap();
    assert_eq!(r.framing, Framing::None);
    let head = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let (r, out) = response(head, false).unwrap();
    assert_eq!((r.status, r.framing), (200, Framing::Length(2)));
    assert_eq!(&head[r.body_start..], "ok");
    assert!(!out.contains("Link"));
}

#[test]
fn ambiguous_or_broken_responses_are_502() {
    for head in [
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        "SPDY/3 200 OK\r\n\r\n",
    ] {
        let got = response(head, false);
        assert!(got.is_err(), "{head:?}: {got:?}");
    }
}

fn dechunk(input: &[&[u8]]) -> Result<(Vec<u8>, bool, usize), ()> {
    let mut decoder = Chunked::default();
    let mut out = Vec::new();
    let mut used = 0;
    for part in input {
        used = decoder.decode(part, &mut out)?;
    }
    Ok((out, decoder.done(), used))
}

#[test]
fn chunked_bodies_are_decoded_strictly_and_rechunked() {
    let body: &[u8] = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
    let (out, done, used) = dechunk(&[body]).unwrap();
    assert!(done);
    assert_eq!(used, body.len());
    assert_eq!(out, b"5\r\nhello\r\n6\r\n world\r\n");
    // Byte by byte: the same data, re-chunked as it came.
    let parts: Vec<&[u8]> = body.chunks(1).collect();
    let (out, done, _) = dechunk(&parts).unwrap();
    assert!(done);
    let mut data = Vec::new();
    let mut rest = &out[..];
    while !rest.is_empty() {
        let at = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..at]).unwrap(), 16).unwrap();
        data.extend_from_slice(&rest[at + 2..at + 2 + size]);
        rest = &rest[at + 4 + size..];
    }
    assert_eq!(data, b"hello world");
    // Stops at the end: what follows is not the body's.
    let (_, done, used) = dechunk(&[b"0\r\n\r\nHTTP/1.1"]).unwrap();
    assert!(done);
    assert_eq!(used, 5);
    for bad in [
        &b"x\r\n"[..],
        b"\r\n",
        b"5\r\nhelloX\r\n",
        b"5\nhello\r\n",
        b"1234567890abcdef0\r\n",
        b"0\r\nX: 1\n\r\n",
        b"5 \nhello",
    ] {
        assert!(dechunk(&[bad]).is_err(), "{bad:?}");
    }
    let long_extension = [&b"1;"[..], &vec![b'a'; MAX_CHUNK_META + 1], b"\r\n"].concat();
    assert!(dechunk(&[&long_extension]).is_err());
}

#[test]
fn chunk_sizes_are_hex() {
    let mut out = Vec::new();
    chunk(&mut out, &[b'x'; 300]);
    assert!(out.starts_with(b"12c\r\nxxx"));
    assert!(out.ends_with(b"x\r\n"));
    assert_eq!(parse_length(b"18446744073709551615"), None);
    assert_eq!(
        parse_length(b"1844674407370955161"),
        Some(1_844_674_407_370_955_161)
    );
    assert_eq!(parse_length(b""), None);
}

#[tokio::test]
async fn a_client_that_closes_while_its_response_is_awaited_is_noticed() {
    let (mut ours, theirs) = tokio::io::duplex(64);
    let mut read_ahead = Vec::new();
    drop(theirs);
    tokio::time::timeout(std::time::Duration::from_secs(5), async {
        client_gone(&mut ours, &mut read_ahead).await;
    })
    .await
    .expect("the close is noticed");
    assert!(read_ahead.is_empty());
}

#[tokio::test]
async fn bytes_sent_while_the_response_is_awaited_are_kept_for_the_next_request() {
    let (mut ours, mut theirs) = tokio::io::duplex(64);
    let mut read_ahead = Vec::new();
    theirs.write_all(b"GET /next").await.unwrap();
    let watched = tokio::time::timeout(std::time::Duration::from_millis(200), async {
        client_gone(&mut ours, &mut read_ahead).await;
    })
    .await;
    assert!(watched.is_err(), "a client that sends is not gone");
    assert_eq!(read_ahead, b"GET /next");
    let mut bufs = Buffers {
        read_ahead,
        ..Buffers::default()
    };
    let mut buf = bytes::BytesMut::from(&b"rest "[..]);
    bufs.take_read_ahead(&mut buf);
    assert_eq!(&buf[..], b"rest GET /next");
    assert!(bufs.read_ahead.is_empty());
}
