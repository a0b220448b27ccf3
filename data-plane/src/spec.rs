//! Leaf types of validated configuration, shared by the compiler ([`crate::config`]) and
//! by the modules that serve with them (router, upstream, TLS, auth). This module imports
//! nothing else of the crate, so any module may use it without creating a cycle.
//!
//! - [`HostPattern`]: a proxy hostname, exact or wildcard.
//! - [`HeaderList`]: custom request/response headers, checked at compile time.
//! - [`Target`]: a parsed upstream URL.
//! - [`RouteAccess`]: what one route adds to its proxy's policy.
//! - [`InvalidField`] / [`Reason`]: why a wire field was refused.

mod access;
mod field;
mod headers;
mod hostname;
pub(crate) mod memo;
mod target;

pub(crate) use self::access::RouteAccess;
pub(crate) use self::field::{InvalidField, Reason};
pub(crate) use self::headers::HeaderList;
pub(crate) use self::hostname::HostPattern;
pub(crate) use self::hostname::normalize_name;
pub(crate) use self::target::TARGETS;
pub(crate) use self::target::Target;
