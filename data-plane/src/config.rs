//! Snapshot compilation: wire `ConfigSnapshot` → validated, linked, immutable
//! [`Snapshot`] that requests read without locks.
//!
//! Validation happens once here (`TryFrom` per wire message, then linking of SERVICE and
//! PROXY references). Any error rejects the whole snapshot: the data plane NACKs and
//! keeps serving the previous one, so a request never sees partly valid config.
//!
//! Choices where the wire contract is silent:
//! - Disabled routes are skipped without validation; disabled proxies are validated and
//!   may still be PROXY route targets, they are just not served by hostname.
//! - URL and SERVICE route targets use the settings (timeouts, headers, Host handling) of
//!   the proxy the request matched; PROXY targets use the target proxy's settings.
//! - A PROXY target that is itself protected (any auth policy) would reach that proxy's
//!   upstream without its policy: such a route is kept but blocked (every request it
//!   matches gets 503), so one stale route neither bypasses auth nor NACKs the snapshot.
//! - Each listener has its own host table. A proxy is on the HTTP table when
//!   `enable_http` is set or it redirects to HTTPS, and on the HTTPS table when
//!   `enable_https` is set; a host missing from a listener's table is unknown (404) there,
//!   unless a wildcard proxy on that table matches it.
//! - Certificates and ACME challenge certificates are parsed and checked here (see
//!   [`crate::tls`]), so a handshake never parses PEM and a bad certificate is a NACK.

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_proto::v1 as pb;

use self::proxy::ProxySpec;
use self::route::{RouteSpec, RouteTarget};
use crate::auth::Verifier;
use crate::policy::{Policy, PolicySpec};
use crate::router::{HostTable, RouteMatcher, RouteTable};
use crate::spec::{self, InvalidField, Reason, RouteAccess, Target};
use crate::tls::{self, AcmeChallenges, Certificates};
use crate::upstream::{ClientCache, Upstream};
use crate::vhost::{Proxy, Routed};

mod error;
mod https;
mod limits;
mod proxy;
mod route;
mod superseded;

pub use self::error::CompileError;
pub use self::superseded::Superseded;

/// One compiled, immutable configuration version.
#[derive(Debug)]
pub struct Snapshot {
    version: u64,
    http_hosts: HostTable<Arc<Proxy>>,
    https_hosts: HostTable<Arc<Proxy>>,
    certificates: Certificates,
    acme: AcmeChallenges,
}

/// A route with its target resolved to either a URL or a proxy's default upstream.
enum Linked {
    Target(Target),
    Proxy(usize),
}

// === impl Snapshot ===

impl Snapshot {
    /// Validates and links `snapshot`. HTTP clients come from `clients` so connection
    /// pools outlive this snapshot.
    pub fn compile(
        snapshot: &pb::ConfigSnapshot,
        clients: &ClientCache,
    ) -> Result<Self, CompileError> {
        Self::compile_unless_superseded(snapshot, clients, &Superseded::never())
    }

    /// [`Snapshot::compile`], given up between phases with [`CompileError::Superseded`]
    /// once `superseded` is marked. Nothing is kept from a compile given up but parsed
    /// targets and regexes in the memo, which the next compile reuses.
    pub(crate) fn compile_unless_superseded(
        snapshot: &pb::ConfigSnapshot,
        clients: &ClientCache,
        superseded: &Superseded,
    ) -> Result<Self, CompileError> {
        let keys = tls::provider().key_provider;
        let certificates = Certificates::compile(
            &snapshot.certificates,
            snapshot.default_certificate_name.trim(),
            keys,
        )?;
        let acme = AcmeChallenges::compile(&snapshot.acme_http01, &snapshot.acme_tls_alpn01, keys)?;
        let services = services(&snapshot.services)?;
        // Keys, issuer and revocation sets: built once here, read by every request.
        let verifier = Arc::new(Verifier::compile(snapshot)?);
        let specs = snapshot
            .proxies
            .iter()
            .map(ProxySpec::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        superseded.check()?;
        let mut index = HashMap::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let name = spec.pattern.to_string();
            if index.insert(name.clone(), i).is_some() {
                return Err(CompileError::DuplicateHostname(name));
            }
        }
        let https: Vec<_> = specs
            .iter()
            .map(|s| s.https.link(&s.pattern, &certificates))
            .collect();
        let settings: Vec<_> = specs.iter().map(|s| s.settings(clients)).collect();
        let defaults: Vec<Upstream> = specs
            .iter()
            .zip(&settings)
            .map(|(spec, s)| Upstream::new(spec.target.clone(), s.clone()))
            .collect();

        let routes = snapshot
            .routes
            .iter()
            .filter(|r| r.enabled)
            .map(|r| link(r, &services, &index))
            .collect::<Result<Vec<_>, _>>()?;
        superseded.check()?;
        let access: Vec<Arc<RouteAccess>> = routes
            .iter()
            .map(|(spec, linked)| Arc::new(route_access(spec, linked, &specs)))
            .collect();
        let unrestricted = Arc::new(RouteAccess::default());
        // Identity header names configured on any proxy outside the default families:
        // client copies are stripped on every proxy, since one app may be reached through
        // several, or lose its protection later.
        let mut identity_headers: Vec<http::HeaderName> = Vec::new();
        for name in specs
            .iter()
            .flat_map(|s| s.policy.configured_identity_headers())
        {
            if !identity_headers.contains(name) {
                identity_headers.push(name.clone());
            }
        }
        let identity_headers: Arc<[http::HeaderName]> = identity_headers.into();
        let mut global = Vec::new();
        let mut scoped: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, (spec, _)) in routes.iter().enumerate() {
            if spec.scope.is_empty() {
                global.push(i);
            }
            for host in &spec.scope {
                scoped.entry(host.as_str()).or_default().push(i);
            }
        }

        superseded.check()?;
        let mut http_hosts = HostTable::default();
        let mut https_hosts = HostTable::default();
        for (i, spec) in specs.iter().enumerate() {
            let (on_http, on_https) = (spec.served_on_http(), spec.served_on_https());
            if !on_http && !on_https {
                continue;
            }
            let name = spec.pattern.to_string();
            let mine = scoped.get(name.as_str()).map_or(&[][..], Vec::as_slice);
            let entries: Vec<(Arc<RouteMatcher>, Routed)> = global
                .iter()
                .chain(mine)
                .filter_map(|&r| Some((routes.get(r)?, access.get(r)?)))
                .filter_map(|((spec, linked), access)| {
                    let upstream = match linked {
                        Linked::Target(t) => Upstream::new(t.clone(), settings.get(i)?.clone()),
                        Linked::Proxy(p) => defaults.get(*p)?.clone(),
                    };
                    Some((spec.matcher.clone(), Routed::new(upstream, access.clone())))
                })
                .collect();
            let Some(fallback) = defaults.get(i).cloned() else {
                continue;
            };
            let fallback = Routed::new(fallback, unrestricted.clone());
            let policy =
                Policy::link(&spec.policy, &verifier).map_err(|e| CompileError::Proxy {
                    hostname: name.clone(),
                    source: InvalidField::new(
                        "auth.resource_metadata_json",
                        Reason::Auth(e.to_string()),
                    ),
                })?;
            let limits = spec.limits.link(&name);
            let proxy = Arc::new(
                Proxy::new(
                    name,
                    policy,
                    RouteTable::new(entries, fallback),
                    https.get(i).cloned().unwrap_or_default(),
                    identity_headers.clone(),
                )
                .with_limits(limits)
                .with_ip_allowlist(spec.ip_allowlist.clone())
                .with_log_query(spec.log_query),
            );
            if on_http {
                http_hosts.insert(&spec.pattern, proxy.clone());
            }
            if on_https {
                https_hosts.insert(&spec.pattern, proxy);
            }
        }

        // The last chance: what follows prunes the shared client pools and ages the memo.
        superseded.check()?;
        let timeouts: Vec<_> = specs.iter().map(|s| s.connect_timeout).collect();
        clients.retain(&timeouts);
        route::REGEXES.rotate();
        spec::TARGETS.rotate();
        limits::rotate();
        Ok(Self {
            version: snapshot.version,
            http_hosts,
            https_hosts,
            certificates,
            acme,
        })
    }

    /// The control plane's version number for this snapshot.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Proxies known on the plain-HTTP listener (enabled, and `enable_http` or
    /// redirecting to HTTPS).
    pub fn http_hosts(&self) -> &HostTable<Arc<Proxy>> {
        &self.http_hosts
    }

    /// Proxies served on the HTTPS listener (enabled and `enable_https`).
    pub(crate) fn https_hosts(&self) -> &HostTable<Arc<Proxy>> {
        &self.https_hosts
    }

    /// The snapshot's certificates, for SNI selection.
    pub fn certificates(&self) -> &Certificates {
        &self.certificates
    }

    /// Pending ACME challenges.
    pub fn acme(&self) -> &AcmeChallenges {
        &self.acme
    }
}

fn services(list: &[pb::ExternalService]) -> Result<HashMap<&str, Target>, CompileError> {
    let mut out = HashMap::with_capacity(list.len());
    for s in list {
        let target = Target::parse(&s.target_url).map_err(|reason| CompileError::Service {
            name: s.name.clone(),
            source: InvalidField::new("target_url", reason),
        })?;
        if out.insert(s.name.as_str(), target).is_some() {
            return Err(CompileError::DuplicateService(s.name.clone()));
        }
    }
    Ok(out)
}

/// The route's policy settings; blocked when it targets a protected proxy.
fn route_access(spec: &RouteSpec, linked: &Linked, proxies: &[ProxySpec]) -> RouteAccess {
    let blocked = match linked {
        Linked::Proxy(p) => proxies
            .get(*p)
            .is_none_or(|target| !matches!(target.policy, PolicySpec::Open)),
        Linked::Target(_) => false,
    };
    RouteAccess {
        public: spec.public,
        required_scopes: spec.required_scopes.clone(),
        blocked,
    }
}

fn link(
    route: &pb::Route,
    services: &HashMap<&str, Target>,
    proxies: &HashMap<String, usize>,
) -> Result<(RouteSpec, Linked), CompileError> {
    let spec = RouteSpec::try_from(route)?;
    let missing = |reason| CompileError::Route {
        id: route.id.clone(),
        source: InvalidField::new("target_value", reason),
    };
    let linked = match &spec.target {
        RouteTarget::Url(target) => Linked::Target(target.clone()),
        RouteTarget::Service(name) => match services.get(name.as_str()) {
            Some(target) => Linked::Target(target.clone()),
            None => return Err(missing(Reason::UnknownService(name.clone()))),
        },
        RouteTarget::Proxy(host) => match proxies.get(host) {
            Some(&i) => Linked::Proxy(i),
            None => return Err(missing(Reason::UnknownProxy(host.clone()))),
        },
    };
    Ok((spec, linked))
}

#[cfg(test)]
mod tests;
