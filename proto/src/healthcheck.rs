//! `healthcheck [URL]`: the container health check for images with no shell and no HTTP
//! client (distroless, `FROM scratch`), as compose's `healthcheck.test` runs it: one
//! HTTP/1.0 `GET` of a plain-`http://` URL, exit status 0 on a `200`, 1 otherwise
//! (connection refused, timeout, other status). Checked before flag parsing, so the
//! server's required flags and environment do not apply. Cost: one short-lived process
//! and one TCP connection per check; nothing is read beyond the status line.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::process::ExitCode;
use std::time::Duration;

/// The longest a check takes: connect, write and read each give up after this.
const TIMEOUT: Duration = Duration::from_secs(3);

/// `Some(exit code)` when the first argument is `healthcheck` (the probe ran), `None`
/// otherwise (start the server).
pub fn from_args(default_url: &str) -> Option<ExitCode> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("healthcheck") {
        return None;
    }
    let url = args.next().unwrap_or_else(|| default_url.to_owned());
    Some(match probe(&url) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("healthcheck {url}: {why}");
            ExitCode::FAILURE
        }
    })
}

/// `GET url`; `Ok` only on a `200` status line.
pub fn probe(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are probed")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("address {authority:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("address {authority:?} resolves to nothing"))?;
    let mut conn = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    conn.set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    // One write: the request goes out in one segment.
    let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n");
    conn.write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut status = String::new();
    BufReader::new(conn.take(256))
        .read_line(&mut status)
        .map_err(|e| e.to_string())?;
    match status.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        _ => Err(format!("answered {:?}", status.trim_end())),
    }
}

#[cfg(test)]
mod tests {
    use super::probe;

    #[test]
    fn only_a_200_passes() {
        for (answer, ok) in [
            ("HTTP/1.1 200 OK\r\n\r\n", true),
            ("HTTP/1.1 503 Service Unavailable\r\n\r\n", false),
        ] {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let url = format!("http://{}/readyz", listener.local_addr().expect("addr"));
            let server = std::thread::spawn(move || {
                use std::io::{Read as _, Write as _};
                let (mut c, _) = listener.accept().expect("accept");
                let mut head = Vec::new();
                let mut buf = [0u8; 512];
                while !head.ends_with(b"\r\n\r\n") {
                    let n = c.read(&mut buf).expect("read");
                    assert!(n > 0, "request head cut short");
                    head.extend_from_slice(&buf[..n]);
                }
                c.write_all(answer.as_bytes()).expect("write");
                String::from_utf8_lossy(&head).into_owned()
            });
            assert_eq!(probe(&url).is_ok(), ok, "{answer}");
            assert!(
                server
                    .join()
                    .expect("server")
                    .starts_with("GET /readyz HTTP/1.0\r\n")
            );
        }
        // Nothing listening: refused, not a pass.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        assert!(probe(&format!("http://127.0.0.1:{port}/readyz")).is_err());
        assert!(probe("https://127.0.0.1:1/").is_err());
    }
}
