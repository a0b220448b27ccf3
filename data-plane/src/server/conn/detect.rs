//! Protocol detection: whether a connection without ALPN starts with the HTTP/2 preface
//! (h2c with prior knowledge) or speaks HTTP/1.1.

use std::io;

use bytes::Bytes;
use tokio::io::AsyncReadExt;

use super::Transport;

/// The HTTP/2 connection preface (RFC 9113 §3.4): a client speaking h2c with prior
/// knowledge starts with it.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the first bytes of a connection say it speaks, with those bytes.
pub(super) enum Preface {
    H1(Bytes),
    H2(Bytes),
}

/// Reads until the bytes stop matching [`H2_PREFACE`] (HTTP/1) or match all of it (h2c);
/// as hyper-util's protocol detection does.
pub(super) async fn read_preface<T: Transport>(stream: &mut T) -> io::Result<Preface> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut filled = 0;
    while filled < buf.len() {
        let n = stream.read(&mut buf[filled..]).await?;
        let matches = buf[filled..filled + n] == H2_PREFACE[filled..filled + n];
        filled += n;
        if n == 0 || !matches {
            // A PROXY header here is from a peer not allowed to send one (a trusted
            // balancer's was consumed before): never served, whatever it claims.
            if super::super::proxy_protocol::is_signature(&buf[..filled]) {
                super::super::proxy_protocol::count_untrusted();
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "PROXY protocol header from a peer not in --proxy-protocol-from",
                ));
            }
            return Ok(Preface::H1(Bytes::copy_from_slice(&buf[..filled])));
        }
    }
    Ok(Preface::H2(Bytes::copy_from_slice(&buf)))
}
