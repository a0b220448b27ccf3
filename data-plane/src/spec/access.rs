//! What a single route adds to its proxy's policy.
//!
//! A route can only tighten the proxy's protection (extra scopes) or, when an admin
//! marked it `public`, waive the token requirement; a route without these settings is
//! protected exactly like its proxy.

/// The policy settings of one route (or of a proxy's own target, which has none).
#[derive(Debug, Default)]
pub(crate) struct RouteAccess {
    /// Admin-set: no token needed on a protected proxy. Identity headers are still
    /// stripped and never set.
    pub(crate) public: bool,
    /// Scopes needed on top of the proxy's required scopes.
    pub(crate) required_scopes: Box<[Box<str>]>,
    /// The route forwards to a protected proxy's upstream, which would bypass that
    /// proxy's own policy: every request it matches is refused (503).
    pub(crate) blocked: bool,
}
