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
    /// `ConfigSnapshot`s, and the `AccessLogIngest` server taking [`ShippedBatch`]es
    /// instead of `AccessLogBatch`es (same wire formats; see `build.rs`). The control plane
    /// serves these; data planes use the ordinary clients.
    ///
    /// [`EncodedSnapshot`]: crate::EncodedSnapshot
    /// [`ShippedBatch`]: crate::ShippedBatch
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

/// An [`v1::AccessLogBatch`] as the control plane receives it (same wire format): each
/// record as its bytes, undecoded, and the batch's own fields. Decoding checks the batch's
/// framing only; the control plane checks each record itself and stores the bytes it
/// received when they need no change, instead of decoding every record into two dozen
/// owned strings and encoding it again. Each record is a slice of the received message
/// (`Bytes`: no copy), so the batch holds that message until it is dropped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ShippedBatch {
    /// `records` (1): one encoded `AccessLogRecord` each.
    pub records: Vec<Bytes>,
    /// `dropped` (2).
    pub dropped: u64,
    /// `stream` (3).
    pub stream: Bytes,
    /// `first_seq` (4).
    pub first_seq: u64,
    /// `dropped_total` (5).
    pub dropped_total: u64,
}

impl prost::Message for ShippedBatch {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        use prost::encoding::{bytes, uint64};
        for r in &self.records {
            bytes::encode(1, r, buf);
        }
        if self.dropped != 0 {
            uint64::encode(2, &self.dropped, buf);
        }
        if !self.stream.is_empty() {
            bytes::encode(3, &self.stream, buf);
        }
        if self.first_seq != 0 {
            uint64::encode(4, &self.first_seq, buf);
        }
        if self.dropped_total != 0 {
            uint64::encode(5, &self.dropped_total, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        use prost::encoding::{bytes, skip_field, uint64};
        match tag {
            1 => {
                let mut record = Bytes::new();
                bytes::merge(wire_type, &mut record, buf, ctx)?;
                self.records.push(record);
                Ok(())
            }
            2 => uint64::merge(wire_type, &mut self.dropped, buf, ctx),
            3 => bytes::merge(wire_type, &mut self.stream, buf, ctx),
            4 => uint64::merge(wire_type, &mut self.first_seq, buf, ctx),
            5 => uint64::merge(wire_type, &mut self.dropped_total, buf, ctx),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        use prost::encoding::{bytes, uint64};
        let mut n = bytes::encoded_len_repeated(1, &self.records);
        if self.dropped != 0 {
            n += uint64::encoded_len(2, &self.dropped);
        }
        if !self.stream.is_empty() {
            n += bytes::encoded_len(3, &self.stream);
        }
        if self.first_seq != 0 {
            n += uint64::encoded_len(4, &self.first_seq);
        }
        if self.dropped_total != 0 {
            n += uint64::encoded_len(5, &self.dropped_total);
        }
        n
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

    #[test]
    fn a_shipped_batch_is_the_batch_on_the_wire_with_each_record_undecoded() {
        let record = |i: u32| v1::AccessLogRecord {
            time_unix_nanos: 1_700_000_000_000_000_000 + i64::from(i),
            host: "app.example.com".into(),
            status: 200 + i,
            ..Default::default()
        };
        let batch = v1::AccessLogBatch {
            records: vec![record(0), record(1)],
            dropped: 3,
            stream: vec![7; 16],
            first_seq: 5,
            dropped_total: 9,
        };
        let wire = Bytes::from(batch.encode_to_vec());
        let shipped = ShippedBatch::decode(wire.clone()).unwrap();
        assert_eq!(shipped.records.len(), 2);
        for (raw, r) in shipped.records.iter().zip(&batch.records) {
            assert_eq!(raw.as_ref(), r.encode_to_vec().as_slice());
        }
        assert_eq!(
            (
                shipped.dropped,
                shipped.stream.as_ref(),
                shipped.first_seq,
                shipped.dropped_total
            ),
            (3, [7u8; 16].as_slice(), 5, 9)
        );
        // And back: the same bytes.
        assert_eq!(shipped.encoded_len(), wire.len());
        assert_eq!(shipped.encode_to_vec(), wire.as_ref());
        // A record field that is not length-delimited is refused, as the batch would be.
        assert!(ShippedBatch::decode([0x08u8, 0x01].as_slice()).is_err());
    }
}
