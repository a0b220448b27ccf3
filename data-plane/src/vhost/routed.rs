//! Route-table entries: where a request goes and what its route adds to the policy.

use std::sync::Arc;

use crate::spec::RouteAccess;
use crate::upstream::Upstream;

/// A route-table entry: where the request goes and what the policy demands for it.
#[derive(Clone, Debug)]
pub(crate) struct Routed {
    upstream: Upstream,
    access: Arc<RouteAccess>,
}

// === impl Routed ===

impl Routed {
    /// Pairs an upstream with its route's settings.
    pub(crate) fn new(upstream: Upstream, access: Arc<RouteAccess>) -> Self {
        Self { upstream, access }
    }

    /// Where the request goes.
    pub(crate) fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// What the route demands of the policy.
    pub(crate) fn access(&self) -> &RouteAccess {
        &self.access
    }
}
