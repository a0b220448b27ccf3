//! Pure lookup structures built at snapshot-compile time and read on every request:
//! the host table (phase 1: which proxy) and per-proxy route tables (phase 3: which
//! upstream). Both are generic over what they map to so they can be tested and
//! benchmarked without sockets or HTTP clients.

mod host;
mod route;

pub use self::host::{HostTable, NormalizedHost};
pub(crate) use self::route::{PathMatch, RouteMatcher, RouteTable, Selected};

#[cfg(test)]
mod tests;
