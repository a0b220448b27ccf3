//! Portcullis data plane: routes HTTP traffic using configuration snapshots pushed by
//! the control plane.
//!
//! Layout, following the request path:
//! - [`stream`] receives snapshots, [`apply`] compiles ([`config`]) and publishes them
//!   into the [`store`], and [`cache`] persists the last good one.
//! - [`server`] accepts connections (plain HTTP, and HTTPS with certificates chosen per
//!   handshake from the snapshot's [`tls`] material); [`request`] runs each request
//!   through host lookup ([`router`]), admission to the compiled virtual host
//!   ([`vhost`], applying its `policy`, edge OAuth in [`auth`], answers of its own in
//!   `answer`), route selection and forwarding via pooled clients ([`upstream`]).
//! - [`peer`] says who the client is: trusted address ranges, `X-Forwarded-For` from
//!   trusted forwarders, and what a PROXY protocol header carried (read in [`server`]).
//! - [`admin`] answers health and readiness probes and serves [`metrics`].
//! - [`trace`] makes one OpenTelemetry server span per request when `--otlp-endpoint` is
//!   given (a leaf: it imports nothing of the crate).
//!
//! Imports flow one way (checked by `tests/import_cycles.py`): `spec` (leaf types:
//! hostnames, headers, targets, field errors) → [`router`], [`upstream`], [`tls`],
//! [`auth`] → `policy` → [`vhost`] → [`config`] (the compiler) → [`store`] →
//! [`request`] → [`server`].
//!
//! For benchmarks: [`config::Snapshot::compile`] builds a snapshot from wire types,
//! [`router::HostTable::lookup`] resolves a host, [`vhost::admit`] +
//! [`vhost::Admitted::upstream`] pick the upstream.
//!
//! Exports are what the binary, benches, fuzz targets and integration tests use;
//! everything else is `pub(crate)`, so `unreachable_pub` and dead-code analysis see it.

#![warn(missing_docs, unreachable_pub)]

pub mod access_log;
pub mod admin;
mod answer;
pub mod apply;
mod ascii;
pub mod auth;
mod body;
pub mod cache;
pub mod cli;
pub mod config;
pub mod metrics;
pub mod path;
pub mod peer;
mod policy;
mod ratelimit;
mod report;
pub mod request;
pub mod router;
pub mod server;
mod spec;
pub mod store;
pub mod stream;
pub mod tls;
pub mod trace;
pub mod upstream;
pub mod vhost;
mod worker;
