//! Routes: validation of the wire message into a matcher plus an unresolved target.

use std::sync::{Arc, LazyLock};

use http::Method;
use portcullis_proto::v1 as pb;
use regex::{Regex, RegexBuilder};

use super::error::CompileError;
use crate::router::{PathMatch, RouteMatcher};
use crate::spec::memo::Memo;
use crate::spec::{InvalidField, Reason, Target, normalize_name};

/// Largest compiled regex a route may carry (same limit as the control plane).
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A validated route before its target is linked to services and proxies.
#[derive(Debug)]
pub(crate) struct RouteSpec {
    pub(crate) matcher: Arc<RouteMatcher>,
    pub(crate) target: RouteTarget,
    /// Normalised hostnames; empty means every proxy.
    pub(crate) scope: Vec<String>,
    /// Admin-set exemption from the proxy's token requirement.
    pub(crate) public: bool,
    /// Scopes needed on top of the proxy's required scopes.
    pub(crate) required_scopes: Box<[Box<str>]>,
}

/// Where a route sends traffic, before linking.
#[derive(Debug)]
pub(crate) enum RouteTarget {
    /// An absolute URL; the matched proxy's settings apply.
    Url(Target),
    /// An `ExternalService` by name; the matched proxy's settings apply.
    Service(String),
    /// Another proxy by hostname; that proxy's target and settings apply.
    Proxy(String),
}

// === impl RouteSpec ===

impl TryFrom<&pb::Route> for RouteSpec {
    type Error = CompileError;

    fn try_from(r: &pb::Route) -> Result<Self, Self::Error> {
        let err = |field, reason| CompileError::Route {
            id: r.id.clone(),
            source: InvalidField::new(field, reason),
        };
        if r.id.is_empty() {
            return Err(err("id", Reason::Empty));
        }
        let path = path_match(r.match_kind, &r.path_pattern).map_err(|(f, e)| err(f, e))?;
        let methods = r
            .methods
            .iter()
            .map(|m| method(m).map_err(|e| err("methods", e)))
            .collect::<Result<Vec<_>, _>>()?;
        let target = route_target(r.target_kind, &r.target_value).map_err(|(f, e)| err(f, e))?;
        let required_scopes = crate::auth::scopes(&r.required_scopes)
            .map_err(|e| err("required_scopes", Reason::Auth(e)))?;
        Ok(Self {
            matcher: Arc::new(RouteMatcher::new(&r.id, r.priority, path, methods)),
            target,
            scope: scope(&r.proxy_hostnames),
            public: r.public,
            required_scopes,
        })
    }
}

fn scope(hostnames: &[String]) -> Vec<String> {
    let mut scope: Vec<String> = hostnames.iter().map(|h| normalize_name(h)).collect();
    scope.sort_unstable();
    scope.dedup();
    scope
}

fn path_match(kind: i32, pattern: &str) -> Result<PathMatch, (&'static str, Reason)> {
    const FIELD: &str = "path_pattern";
    if pattern.is_empty() {
        return Err((FIELD, Reason::Empty));
    }
    let literal = || {
        let ok = pattern.starts_with('/')
            && !pattern
                .bytes()
                .any(|b| b.is_ascii_control() || matches!(b, b' ' | b'?' | b'#'));
        ok.then(|| Box::<str>::from(pattern))
            .ok_or_else(|| (FIELD, Reason::Path(pattern.to_owned())))
    };
    match pb::PathMatchKind::try_from(kind) {
        Ok(pb::PathMatchKind::Prefix) => Ok(PathMatch::Prefix(literal()?)),
        Ok(pb::PathMatchKind::Exact) => Ok(PathMatch::Exact(literal()?)),
        Ok(pb::PathMatchKind::Regex) => cached_regex(pattern)
            .map(PathMatch::Regex)
            .map_err(|e| (FIELD, Reason::Regex(e))),
        Ok(pb::PathMatchKind::Unspecified) | Err(_) => {
            Err(("match_kind", Reason::Unsupported(kind)))
        }
    }
}

/// Compiled route regexes by pattern: building a regex costs far more than matching with
/// it, and a `Regex` clone shares the compiled program.
pub(super) static REGEXES: LazyLock<Memo<Regex>> = LazyLock::new(Memo::new);

fn cached_regex(pattern: &str) -> Result<Regex, regex::Error> {
    REGEXES.get_or_try(pattern, |pattern| {
        RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
    })
}

fn method(raw: &str) -> Result<Box<str>, Reason> {
    let upper = raw.trim().to_ascii_uppercase();
    if upper.is_empty() || Method::from_bytes(upper.as_bytes()).is_err() {
        return Err(Reason::Method(raw.to_owned()));
    }
    Ok(upper.into())
}

fn route_target(kind: i32, value: &str) -> Result<RouteTarget, (&'static str, Reason)> {
    const FIELD: &str = "target_value";
    let kind = match pb::RouteTargetKind::try_from(kind) {
        Ok(pb::RouteTargetKind::Unspecified) | Err(_) => {
            return Err(("target_kind", Reason::Unsupported(kind)));
        }
        Ok(known) => known,
    };
    if value.trim().is_empty() {
        return Err((FIELD, Reason::Empty));
    }
    Ok(match kind {
        pb::RouteTargetKind::Url => RouteTarget::Url(Target::parse(value).map_err(|e| (FIELD, e))?),
        pb::RouteTargetKind::Service => RouteTarget::Service(value.trim().to_owned()),
        // `Unspecified` was rejected above.
        pb::RouteTargetKind::Proxy | pb::RouteTargetKind::Unspecified => {
            RouteTarget::Proxy(normalize_name(value))
        }
    })
}
