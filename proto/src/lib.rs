//! gRPC wire types for Portcullis, generated from `proto/portcullis/v1/portcullis.proto`.
//!
//! Only the wire contract lives here; each binary converts these into its own validated
//! domain types at the boundary. The exceptions are [`healthcheck`], the `/readyz` probe
//! both server binaries embed for images without an HTTP client, and [`secret_refs`], how
//! the CLI and the control plane resolve a declarative file's secret references: this is
//! the crate they all already depend on, so each lives here once instead of twice.

#![allow(missing_docs, unreachable_pub, clippy::all)]

use bytes::{Buf, BufMut, Bytes};

pub mod healthcheck;
pub mod secret_refs;
use prost::encoding::{DecodeContext, WireType};

/// Version 1 of the Portcullis API.
pub mod v1 {
    tonic::include_proto!("portcullis.v1");

    /// The `ConfigService` server once more, streaming [`EncodedSnapshot`]s instead of
    /// `ConfigSnapshot`s (same wire format; see `build.rs`). The control plane serves this
    /// one; data planes use the ordinary client and decode `ConfigSnapshot`.
    ///
    /// [`EncodedSnapshot`]: crate::EncodedSnapshot
    pub mod encoded {
        include!(concat!(env!("OUT_DIR"), "/encoded/portcullis.v1.rs"));
    }
}

/// A [`v1::ConfigSnapshot`], encoded. The control plane encodes each version once and
/// sends the same bytes to every data plane: a deep copy and an encoding per stream cost
/// tens of milliseconds each at 10,000 proxies. Only ever encoded; nothing decodes it.
#[derive(Clone, Debug, Default)]
pub struct EncodedSnapshot(Bytes);

impl EncodedSnapshot {
    /// Encodes `snapshot`.
    pub fn new(snapshot: &v1::ConfigSnapshot) -> Self {
        Self(prost::Message::encode_to_vec(snapshot).into())
    }
}

impl prost::Message for EncodedSnapshot {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        // Never decoded (the server only sends it); skip rather than misread.
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// Rules on custom request/response headers (`custom_request_headers`,
/// `custom_response_headers`) that are part of the contract: the control plane refuses
/// what the data plane would refuse when it compiles a snapshot, from one list.
pub mod custom_headers {
    /// Headers the proxy owns, which a custom header may not set: setting them would
    /// break message framing or the hop-by-hop contract (lower-case names).
    pub const RESERVED: &[&str] = &[
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    ];
}

/// Rules on `identity_headers` values that are part of the contract: the control plane
/// refuses what the data plane would refuse when it compiles a snapshot, from one list.
pub mod identity_headers {
    /// Headers an identity header may never be renamed to: hop-by-hop and framing
    /// headers (renaming onto them would corrupt the request), credentials, and the
    /// routing headers the proxy itself owns.
    const RESERVED: [&str; 17] = [
        "host",
        "authorization",
        "proxy-authorization",
        "proxy-authenticate",
        "cookie",
        "set-cookie",
        "content-length",
        "content-type",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "forwarded",
    ];

    /// Whether `name` (lower-case) is reserved; `x-forwarded-*` is refused by prefix
    /// (oauth2-proxy compatible identity headers and forwarding metadata).
    pub fn is_reserved(name: &str) -> bool {
        RESERVED.contains(&name) || name.starts_with("x-forwarded-")
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn an_encoded_snapshot_is_the_snapshot_on_the_wire() {
        let snapshot = v1::ConfigSnapshot {
            version: 42,
            proxies: vec![v1::ProxyTarget {
                hostname: "app.example.com".into(),
                target_url: "http://127.0.0.1:3000".into(),
                enabled: true,
                ..Default::default()
            }],
            ..Default::default()
        };
        let encoded = EncodedSnapshot::new(&snapshot);
        assert_eq!(encoded.encoded_len(), snapshot.encoded_len());
        // What tonic writes for it decodes as the original.
        let wire = encoded.encode_to_vec();
        assert_eq!(wire, snapshot.encode_to_vec());
        assert_eq!(
            v1::ConfigSnapshot::decode(wire.as_slice()).unwrap(),
            snapshot
        );
    }
}
