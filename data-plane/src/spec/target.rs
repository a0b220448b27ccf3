//! Upstream target URLs, parsed once at compile time so a request only joins paths.

use std::sync::{Arc, LazyLock};

use http::HeaderValue;
use http::uri::{Authority, PathAndQuery, Scheme, Uri};

use super::field::Reason;
use super::memo::Memo;

/// An absolute `http`/`https` upstream: scheme, authority and an optional base path that
/// is prefixed to every forwarded request path. Cheap to clone: every route and proxy
/// with the same URL shares one parsed target.
#[derive(Clone, Debug)]
pub struct Target(Arc<Parsed>);

#[derive(Debug)]
struct Parsed {
    scheme: Scheme,
    authority: Authority,
    /// Base path without a trailing slash; empty when the URL has no path.
    base_path: Box<str>,
    /// `Host` value sent upstream unless the proxy preserves the client's Host.
    host_header: HeaderValue,
}

// === impl Target ===

/// Parsed targets by URL (see [`super::memo`]).
pub(crate) static TARGETS: LazyLock<Memo<Target>> = LazyLock::new(Memo::new);

impl Target {
    /// Parses a target URL. Rejects anything but absolute http(s) with a host and no
    /// credentials, query or fragment (the control plane applies the same rules).
    pub fn parse(raw: &str) -> Result<Self, Reason> {
        TARGETS.get_or_try(raw, Self::parse_uncached)
    }

    fn parse_uncached(raw: &str) -> Result<Self, Reason> {
        let bad = |why: &str| Reason::Url(raw.to_owned(), why.to_owned());
        let url = url::Url::parse(raw.trim()).map_err(|e| bad(&e.to_string()))?;
        let scheme = match url.scheme() {
            "http" => Scheme::HTTP,
            "https" => Scheme::HTTPS,
            _ => return Err(bad("scheme must be http or https")),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("credentials are not allowed"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("query and fragment are not allowed"));
        }
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let authority = Authority::try_from(authority).map_err(|e| bad(&e.to_string()))?;
        let host_header =
            HeaderValue::from_str(authority.as_str()).map_err(|e| bad(&e.to_string()))?;
        Ok(Self(Arc::new(Parsed {
            scheme,
            authority,
            base_path: url.path().trim_end_matches('/').into(),
            host_header,
        })))
    }

    /// `http` or `https`: how requests are sent (upstream pools are per scheme and
    /// authority).
    pub fn scheme(&self) -> &Scheme {
        &self.0.scheme
    }

    /// The authority requests are sent to, e.g. `backend:8080`.
    pub(crate) fn authority(&self) -> &Authority {
        &self.0.authority
    }

    /// The `Host` value for this target.
    pub(crate) fn host_header(&self) -> &HeaderValue {
        &self.0.host_header
    }

    /// Whether requests are sent below a base path (`http://b/base`).
    pub(crate) fn has_base_path(&self) -> bool {
        !self.0.base_path.is_empty()
    }

    /// Builds the upstream URI: target scheme and authority, base path joined with the
    /// request path, request query kept. `http://b:8080/base` + `/x?y` → `/base/x?y`;
    /// without a base path the request path is used unchanged.
    pub(crate) fn uri_for(&self, request: Option<&PathAndQuery>) -> Result<Uri, http::Error> {
        let path_and_query = match request {
            None if self.0.base_path.is_empty() => PathAndQuery::from_static("/"),
            None => PathAndQuery::try_from(&*self.0.base_path)?,
            Some(pq) if self.0.base_path.is_empty() || pq.path() == "*" => pq.clone(),
            Some(pq) => PathAndQuery::try_from(self.join(pq))?,
        };
        Uri::builder()
            .scheme(self.0.scheme.clone())
            .authority(self.0.authority.clone())
            .path_and_query(path_and_query)
            .build()
    }

    fn join(&self, pq: &PathAndQuery) -> String {
        let path = pq.path();
        let query_len = pq.query().map_or(0, |q| q.len() + 1);
        let mut out = String::with_capacity(self.0.base_path.len() + path.len() + query_len + 1);
        out.push_str(&self.0.base_path);
        if !path.starts_with('/') {
            out.push('/');
        }
        out.push_str(path);
        if let Some(query) = pq.query() {
            out.push('?');
            out.push_str(query);
        }
        out
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.0.scheme, self.0.authority, self.0.base_path
        )
    }
}
