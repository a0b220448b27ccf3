//! Portcullis data plane: routes HTTP traffic using configuration snapshots pushed by
//! the control plane.
//!
//! Layout, following the request path:
//! - [`stream`] receives snapshots, [`apply`] compiles ([`config`]) and publishes them
//!   into the [`store`], and [`cache`] persists the last good one.
//! - [`server`] accepts connections (plain HTTP, and HTTPS with certificates chosen per
//!   handshake by [`tls`]); [`proxy`] runs each request through host lookup
//!   ([`router`]), the proxy [`policy`] (edge OAuth in [`auth`]), route selection and
//!   forwarding via pooled clients ([`upstream`]).
//! - [`admin`] answers health and readiness probes.
//!
//! For benchmarks: [`config::Snapshot::compile`] builds a snapshot from wire types,
//! [`router::HostTable::lookup`] resolves a host, [`policy::admit`] +
//! [`policy::Admitted::select`] pick the upstream.

#![warn(missing_docs)]

pub mod access_log;
pub mod admin;
pub mod apply;
mod ascii;
pub mod auth;
pub mod body;
pub mod cache;
pub mod cli;
pub mod config;
pub mod path;
pub mod policy;
pub mod proxy;
pub mod ratelimit;
mod report;
pub mod router;
pub mod server;
pub mod store;
pub mod stream;
pub mod tls;
pub mod upstream;
