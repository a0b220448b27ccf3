//! Table-mode layouts for each resource: lists as columns, single resources as
//! key/value lines.

mod admin;
mod routing;

pub(crate) use admin::{dataplanes, status, tokens};
pub(crate) use routing::{proxies, proxy, proxy_auth, route, routes, service, services};
