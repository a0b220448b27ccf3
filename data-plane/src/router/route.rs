//! Per-proxy route tables: ordered matchers, first match wins, fallback otherwise.
//!
//! Order: priority descending; ties broken by match kind (exact, then regex, then
//! prefix), then longer pattern first, then route id, so the result never depends on
//! the order routes arrived in.

use std::cmp::Ordering;
use std::sync::Arc;

use http::Method;
use regex::Regex;

/// How a route matches the request path (the path only, never the query; the normal form
/// of [`crate::path`], so `/x/../admin` and `/%61dmin` are `/admin` here).
#[derive(Debug)]
pub enum PathMatch {
    /// Whole segments: `/api` matches `/api` and `/api/x`, not `/apix`; a prefix ending in
    /// `/` matches everything below it.
    Prefix(Box<str>),
    /// Whole path equality.
    Exact(Box<str>),
    /// Unanchored regex search; anchor with `^…$` in the pattern if needed. Compiled once
    /// per snapshot with a size limit.
    Regex(Regex),
}

/// The matching half of a route, shared by every proxy the route applies to.
#[derive(Debug)]
pub struct RouteMatcher {
    id: Box<str>,
    priority: u32,
    path: PathMatch,
    /// Upper-cased; empty means any method.
    methods: Box<[Box<str>]>,
}

/// Routes of one proxy in match order, plus the proxy's own target as fallback.
#[derive(Debug)]
pub(crate) struct RouteTable<T> {
    entries: Box<[(Arc<RouteMatcher>, T)]>,
    fallback: T,
}

/// Result of route selection: the target and the route that chose it, if any.
#[derive(Debug)]
pub(crate) struct Selected<'a, T> {
    /// The matching route; `None` when the fallback was used.
    pub route: Option<&'a RouteMatcher>,
    /// Where to send the request.
    pub target: &'a T,
}

// === impl PathMatch ===

impl PathMatch {
    fn matches(&self, path: &str) -> bool {
        match self {
            Self::Prefix(p) => path
                .strip_prefix(&**p)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || p.ends_with('/')),
            Self::Exact(p) => path == &**p,
            Self::Regex(re) => re.is_match(path),
        }
    }

    /// Tie-break rank: lower sorts first.
    fn rank(&self) -> u8 {
        match self {
            Self::Exact(_) => 0,
            Self::Regex(_) => 1,
            Self::Prefix(_) => 2,
        }
    }

    fn pattern_len(&self) -> usize {
        match self {
            Self::Prefix(p) | Self::Exact(p) => p.len(),
            Self::Regex(re) => re.as_str().len(),
        }
    }
}

// === impl RouteMatcher ===

impl RouteMatcher {
    /// Builds a matcher; `methods` must already be upper-case tokens.
    pub fn new(id: &str, priority: u32, path: PathMatch, methods: Vec<Box<str>>) -> Self {
        Self {
            id: id.into(),
            priority,
            path,
            methods: methods.into_boxed_slice(),
        }
    }

    /// The route id, for logs.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The path pattern as configured (prefix, exact path or regex), for traces'
    /// `http.route`.
    pub fn pattern(&self) -> &str {
        match &self.path {
            PathMatch::Prefix(p) | PathMatch::Exact(p) => p,
            PathMatch::Regex(r) => r.as_str(),
        }
    }

    /// Whether `method` and `path` both match.
    pub fn matches(&self, method: &Method, path: &str) -> bool {
        let method_ok = self.methods.is_empty()
            || self
                .methods
                .iter()
                .any(|m| m.eq_ignore_ascii_case(method.as_str()));
        method_ok && self.path.matches(path)
    }

    fn precedence(&self, other: &Self) -> Ordering {
        other
            .priority
            .cmp(&self.priority)
            .then(self.path.rank().cmp(&other.path.rank()))
            .then(other.path.pattern_len().cmp(&self.path.pattern_len()))
            .then(self.id.cmp(&other.id))
    }
}

// === impl RouteTable ===

impl<T> RouteTable<T> {
    /// Sorts `entries` into match order.
    pub(crate) fn new(mut entries: Vec<(Arc<RouteMatcher>, T)>, fallback: T) -> Self {
        entries.sort_by(|a, b| a.0.precedence(&b.0));
        Self {
            entries: entries.into_boxed_slice(),
            fallback,
        }
    }

    /// First matching route's target, else the fallback. No allocation, no locks.
    pub(crate) fn select(&self, method: &Method, path: &str) -> Selected<'_, T> {
        self.entries
            .iter()
            .find(|(m, _)| m.matches(method, path))
            .map_or(
                Selected {
                    route: None,
                    target: &self.fallback,
                },
                |(m, t)| Selected {
                    route: Some(m),
                    target: t,
                },
            )
    }

    /// Route ids in match order (diagnostics and tests).
    #[cfg(test)]
    pub(crate) fn order(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(m, _)| m.id())
    }
}
