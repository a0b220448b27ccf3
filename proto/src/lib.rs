//! gRPC wire types for Portcullis, generated from `proto/portcullis/v1/portcullis.proto`.
//!
//! Only the wire contract lives here; each binary converts these into its own validated
//! domain types at the boundary.

#![allow(missing_docs, unreachable_pub, clippy::all)]

/// Version 1 of the Portcullis API.
pub mod v1 {
    tonic::include_proto!("portcullis.v1");
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
