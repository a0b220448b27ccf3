//! gRPC wire types for Portcullis, generated from `proto/portcullis/v1/portcullis.proto`.
//!
//! Only the wire contract lives here; each binary converts these into its own validated
//! domain types at the boundary.

#![allow(missing_docs, unreachable_pub, clippy::all)]

/// Version 1 of the Portcullis API.
pub mod v1 {
    tonic::include_proto!("portcullis.v1");
}
