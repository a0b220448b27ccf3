//! The Portcullis control plane: owns all state, exposes one service layer through gRPC
//! (CLI, data planes) and REST (web UI, scripts), and streams versioned config snapshots to
//! data planes.
//!
//! Request flow for a write: adapter (`grpc`, `rest`; the caller identified by
//! [`authenticator::Authenticator`]) → [`service::ControlPlane`] (validation, ownership) →
//! [`store::Store`] (one atomic batch) → [`snapshot`] publisher → every data plane stream.

pub mod acme;
pub mod auth;
pub mod authenticator;
pub mod bootstrap;
pub mod convert;
pub mod declarative;
pub mod docker;
pub mod error;
pub mod files;
pub mod grpc;
pub mod issuer;
pub mod lease;
pub mod logs;
pub mod metrics;
pub mod model;
pub mod oauth;
pub mod pages;
pub mod rest;
pub mod scrape;
pub mod secrets;
pub mod seed_env;
pub mod server;
pub mod service;
pub mod snapshot;
pub mod store;
pub mod telemetry;
pub mod tls_bootstrap;
pub mod ui;
