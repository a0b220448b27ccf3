//! Declarative configuration: `export` writes every resource the control plane holds as one
//! versioned document, `apply` makes the installation match a document.
//!
//! Why here and not in the store: a document is validated by the service layer's own
//! builders (`service::build_proxy`, `build_route`, …, `oauth::admin::build_idp`), entry by
//! entry, so a document cannot store what the API would refuse; every error is collected
//! with its path in the document (`proxies[2].target_url: …`) before anything is written.
//!
//! Invariants:
//! - All or nothing: the whole plan is ONE store batch (a redb transaction, or one Lua
//!   script on Redis). Its checks pin every stored record the plan read (`Equals`) and
//!   every name it creates (`Absent`), so a concurrent writer makes the apply fail whole.
//!   One batch bumps the revision once: data planes get one snapshot per apply.
//! - Idempotent: an entry equal to the stored record (compared in the exported form, so
//!   owners and timestamps do not count) is `unchanged`; a plan with no change writes
//!   nothing, so the revision does not move.
//! - `prune` alone deletes: without it, resources absent from the document stay.
//! - Secrets (provider client secrets, per-proxy GitHub app secrets) are never exported.
//!   On the wire a document carries them as `client_secret`; files refer to them
//!   (`client_secret_env`, `client_secret_file`), resolved by the CLI or `--bootstrap`
//!   ([`bootstrap`]), never by the control plane for a remote caller (which would let an
//!   API client read the server's files and environment). An entry without its secret
//!   keeps the stored one.
//!
//! Not covered: API tokens and OAuth clients (credentials, created by people and clients),
//! sessions, consents and keys (runtime state), Docker services (containers, not records:
//! applying them needs the engine and cannot be one store transaction).
//!
//! Cost: one consistent read of eight collections and one batch per apply; the plan is
//! built in memory (O(resources)).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::auth::Caller;
use crate::error::ServiceError;
use crate::model::{
    CertSource, CertStatus, CertificateRecord, ExternalService, Proxy, Route, TargetKind, now, pem,
    validate,
};
use crate::oauth::model::{IdpInput, IdpRecord, LoginRule, ProxyOAuthSettings};
use crate::oauth::scopes::ScopeDescription;
use crate::service::ControlPlane;
use crate::service::certs::{certificate_domains, certificate_email};
use crate::store::{Batch, Check, Collection, StoreError, Write, decode, encode};

pub mod bootstrap;
pub mod document;
pub mod grpc;
pub mod rest;

use document::{
    API_VERSION, CertificateEntry, Exported, IdpEntry, KIND, ProxyEntry, ProxyOAuthEntry,
    RouteEntry, RuleEntry, SECTIONS, ScopeEntry, ServiceEntry, to_value,
};

/// Collections a document covers, in [`SECTIONS`] order.
const COLLECTIONS: [Collection; 8] = [
    Collection::Proxies,
    Collection::Routes,
    Collection::Services,
    Collection::Certificates,
    Collection::OAuthIdps,
    Collection::OAuthRules,
    Collection::OAuthScopes,
    Collection::OAuthProxySettings,
];

/// What `apply` does besides planning.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    /// Delete resources the document does not list.
    pub prune: bool,
    /// Plan only; write nothing.
    pub dry_run: bool,
}

/// What happens to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Not stored yet.
    Create,
    /// Stored, with other settings.
    Update,
    /// Stored, absent from the document (only with `prune`).
    Delete,
    /// Stored exactly so.
    Unchanged,
}

impl Action {
    /// The wire and JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Unchanged => "unchanged",
        }
    }
}

/// One line of the diff.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Change {
    /// `proxy`, `route`, `service`, `certificate`, `oauth_provider`, `login_rule`,
    /// `scope_description`, `proxy_oauth`.
    pub kind: &'static str,
    /// Its name (hostname, id, …).
    pub name: String,
    /// What happens to it.
    pub action: Action,
    /// For an update: the settings that differ.
    pub fields: Vec<String>,
}

/// The outcome of an apply.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Report {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Whether anything was written.
    pub applied: bool,
    /// The config revision after the apply (unchanged when nothing config was written).
    pub revision: u64,
    /// Every resource of the document, and every pruned one.
    pub changes: Vec<Change>,
}

/// One error in a document, at its path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PathError {
    /// Where: `proxies[2].target_url`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why an apply wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The document is invalid; every error found.
    #[error("the document is invalid ({} error(s)):\n{}", .0.len(), lines(.0))]
    Document(Vec<PathError>),
    /// The caller may not, or the store failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

fn lines(errors: &[PathError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl From<StoreError> for ApplyError {
    fn from(e: StoreError) -> Self {
        Self::Service(e.into())
    }
}

fn require_admin(caller: &Caller) -> Result<(), ServiceError> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(
            "export and apply of the whole configuration need an admin token".into(),
        ))
    }
}

/// Stored records of one kind by key, with their raw bytes (for `Equals` checks).
type Stored<T> = BTreeMap<String, (T, Vec<u8>)>;

/// Everything a document covers, read at one revision.
struct State {
    revision: u64,
    proxies: Stored<Proxy>,
    routes: Stored<Route>,
    services: Stored<ExternalService>,
    certs: Stored<CertificateRecord>,
    idps: Stored<IdpRecord>,
    rules: Stored<LoginRule>,
    scopes: Stored<ScopeDescription>,
    proxy_oauth: Stored<ProxyOAuthSettings>,
}

fn stored<T: serde::de::DeserializeOwned>(
    c: Collection,
    list: Vec<(String, Vec<u8>)>,
) -> Result<Stored<T>, StoreError> {
    list.into_iter()
        .map(|(k, raw)| Ok((k.clone(), (decode(c, &k, &raw)?, raw))))
        .collect()
}

async fn read_state(cp: &ControlPlane) -> Result<State, StoreError> {
    let read = cp.store().read_consistent(&COLLECTIONS).await?;
    if read.collections.len() != COLLECTIONS.len() {
        return Err(StoreError::Shape {
            expected: COLLECTIONS.len(),
            got: read.collections.len(),
        });
    }
    let mut l = read.collections.into_iter();
    let mut next = || l.next().unwrap_or_default();
    Ok(State {
        revision: read.revision,
        proxies: stored(Collection::Proxies, next())?,
        routes: stored(Collection::Routes, next())?,
        services: stored(Collection::Services, next())?,
        certs: stored(Collection::Certificates, next())?,
        idps: stored(Collection::OAuthIdps, next())?,
        rules: stored(Collection::OAuthRules, next())?,
        scopes: stored(Collection::OAuthScopes, next())?,
        proxy_oauth: stored(Collection::OAuthProxySettings, next())?,
    })
}

/// Whether the store holds no resource a document covers (tokens do not count).
pub async fn is_empty(cp: &ControlPlane) -> Result<bool, StoreError> {
    let read = cp.store().read_consistent(&COLLECTIONS).await?;
    Ok(read.collections.iter().all(Vec::is_empty))
}

/// The whole configuration as one document (secrets and keys left out).
pub async fn export(cp: &ControlPlane, caller: &Caller) -> Result<Exported, ServiceError> {
    require_admin(caller)?;
    let s = read_state(cp).await?;
    let staging = &cp.acme().staging_directory_url;
    Ok(Exported {
        api_version: API_VERSION,
        kind: KIND,
        proxies: entries(&s.proxies, ProxyEntry::from_record),
        routes: entries(&s.routes, RouteEntry::from_record),
        services: entries(&s.services, ServiceEntry::from_record),
        certificates: entries(&s.certs, |c| cert_entry(c, staging)),
        oauth_providers: entries(&s.idps, IdpEntry::from_record),
        login_rules: entries(&s.rules, RuleEntry::from_record),
        scope_descriptions: entries(&s.scopes, ScopeEntry::from_record),
        proxy_oauth: entries(&s.proxy_oauth, ProxyOAuthEntry::from_record),
    })
}

fn entries<T, E>(s: &Stored<T>, f: impl Fn(&T) -> E) -> Vec<E> {
    s.values().map(|(r, _)| f(r)).collect()
}

fn cert_entry(c: &CertificateRecord, staging_url: &str) -> CertificateEntry {
    CertificateEntry {
        name: c.name.clone(),
        domains: c.domains.clone(),
        source: (c.source != CertSource::Acme).then_some(c.source),
        email: (!c.email.is_empty()).then(|| c.email.clone()),
        challenge: (c.challenge != Default::default()).then_some(c.challenge),
        staging: (c.source == CertSource::Acme
            && !c.acme_directory.is_empty()
            && c.acme_directory == staging_url)
            .then_some(true),
    }
}

/// Collects path errors while entries are built.
#[derive(Default)]
struct Errors(Vec<PathError>);

impl Errors {
    fn at(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(PathError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Records a service-layer error of the entry at `base`, naming its field.
    fn service(&mut self, base: &str, prefix: &str, e: ServiceError) {
        match e {
            ServiceError::Invalid { field, reason } => {
                self.at(format!("{base}.{prefix}{field}"), reason)
            }
            e => self.at(base, e.to_string()),
        }
    }
}

/// Parses the sections of a document into typed entries, each error at its path.
fn section<T: serde::de::DeserializeOwned>(
    doc: &serde_json::Map<String, Value>,
    name: &str,
    errors: &mut Errors,
) -> Vec<(usize, T)> {
    let Some(v) = doc.get(name) else {
        return vec![];
    };
    let Some(list) = v.as_array() else {
        if !v.is_null() {
            errors.at(name, "must be a list");
        }
        return vec![];
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        match serde_path_to_error::deserialize::<_, T>(entry.clone()) {
            Ok(t) => out.push((i, t)),
            Err(e) => {
                let inner = e.path().to_string();
                let path = if inner == "." || inner.is_empty() {
                    format!("{name}[{i}]")
                } else {
                    format!("{name}[{i}].{inner}")
                };
                errors.at(path, e.into_inner().to_string());
            }
        }
    }
    out
}

/// The plan under construction: the diff, and the one batch that carries it out.
#[derive(Default)]
struct Plan {
    changes: Vec<Change>,
    checks: Vec<Check>,
    writes: Vec<Write>,
    /// ACME certificates to order once the batch is committed.
    orders: Vec<String>,
}

/// One desired resource of one kind.
struct Desired<T> {
    key: String,
    record: T,
    /// A secret given in the document differs from the stored one.
    secret_changed: bool,
}

impl Plan {
    /// Diffs one kind: `desired` against `stored`, pruning what the document lacks.
    fn kind<T: Serialize>(
        &mut self,
        kind: &'static str,
        c: Collection,
        stored: &Stored<T>,
        desired: &[Desired<T>],
        form: impl Fn(&T) -> Value,
        prune: bool,
    ) {
        for d in desired {
            let (action, fields) = match stored.get(&d.key) {
                Some((old, raw)) => {
                    self.checks
                        .push(Check::Equals(c, d.key.clone(), raw.clone()));
                    let mut fields = differing(&form(old), &form(&d.record));
                    if d.secret_changed {
                        fields.push("secret".into());
                    }
                    if fields.is_empty() {
                        (Action::Unchanged, fields)
                    } else {
                        self.writes
                            .push(Write::Put(c, d.key.clone(), encode(&d.record)));
                        (Action::Update, fields)
                    }
                }
                None => {
                    self.checks.push(Check::Absent(c, d.key.clone()));
                    self.writes
                        .push(Write::Put(c, d.key.clone(), encode(&d.record)));
                    (Action::Create, vec![])
                }
            };
            self.changes.push(Change {
                kind,
                name: d.key.clone(),
                action,
                fields,
            });
        }
        if prune {
            let keep: BTreeSet<&str> = desired.iter().map(|d| d.key.as_str()).collect();
            for (key, (_, raw)) in stored {
                if !keep.contains(key.as_str()) {
                    self.checks.push(Check::Equals(c, key.clone(), raw.clone()));
                    self.writes.push(Write::Delete(c, key.clone()));
                    self.changes.push(Change {
                        kind,
                        name: key.clone(),
                        action: Action::Delete,
                        fields: vec![],
                    });
                }
            }
        }
    }
}

/// Top-level members of two exported forms that differ.
fn differing(old: &Value, new: &Value) -> Vec<String> {
    let (Some(a), Some(b)) = (old.as_object(), new.as_object()) else {
        return if old == new { vec![] } else { vec!["*".into()] };
    };
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| k.to_string())
        .collect()
}

/// Rejects duplicate keys within a section.
fn unique<T>(section: &str, field: &str, list: &[(usize, Desired<T>)], errors: &mut Errors) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, d) in list {
        if let Some(first) = seen.insert(d.key.as_str(), *i) {
            errors.at(
                format!("{section}[{i}].{field}"),
                format!("{:?} is also {section}[{first}]", d.key),
            );
        }
    }
}

/// Makes the installation match `doc` (see the module doc).
pub async fn apply(
    cp: &ControlPlane,
    caller: &Caller,
    doc: &Value,
    opts: ApplyOptions,
) -> Result<Report, ApplyError> {
    require_admin(caller)?;
    let mut errors = Errors::default();
    let Some(top) = doc.as_object() else {
        return Err(ApplyError::Document(vec![PathError {
            path: "$".into(),
            message: "a document is a mapping with apiVersion, kind and the resource lists".into(),
        }]));
    };
    match top.get("apiVersion").and_then(Value::as_str) {
        Some(API_VERSION) => {}
        other => errors.at(
            "apiVersion",
            format!("must be {API_VERSION:?}, not {:?}", other.unwrap_or("")),
        ),
    }
    match top.get("kind").and_then(Value::as_str) {
        Some(KIND) => {}
        other => errors.at(
            "kind",
            format!("must be {KIND:?}, not {:?}", other.unwrap_or("")),
        ),
    }
    for k in top.keys() {
        if k != "apiVersion" && k != "kind" && !SECTIONS.contains(&k.as_str()) {
            errors.at(
                k.as_str(),
                format!("unknown section; expected one of {}", SECTIONS.join(", ")),
            );
        }
    }
    let proxies: Vec<(usize, ProxyEntry)> = section(top, "proxies", &mut errors);
    let routes: Vec<(usize, RouteEntry)> = section(top, "routes", &mut errors);
    let services: Vec<(usize, ServiceEntry)> = section(top, "services", &mut errors);
    let certs: Vec<(usize, CertificateEntry)> = section(top, "certificates", &mut errors);
    let idps: Vec<(usize, IdpEntry)> = section(top, "oauth_providers", &mut errors);
    let rules: Vec<(usize, RuleEntry)> = section(top, "login_rules", &mut errors);
    let scopes: Vec<(usize, ScopeEntry)> = section(top, "scope_descriptions", &mut errors);
    let proxy_oauth: Vec<(usize, ProxyOAuthEntry)> = section(top, "proxy_oauth", &mut errors);

    let state = read_state(cp).await?;
    let now = now();
    let owner = caller.token_id.clone();

    // Build every entry with the service layer's own validation.
    let mut d_proxies = Vec::new();
    for (i, e) in proxies {
        let base = format!("proxies[{i}]");
        let (input, auth) = e.input();
        let mut p = match crate::service::build_proxy(input, owner.clone(), now) {
            Ok(p) => p,
            Err(e) => {
                errors.service(&base, "", e);
                continue;
            }
        };
        if let Some(a) = auth {
            let (ai, ri) = a.inputs();
            match crate::service::validate_auth(ai) {
                Ok(mut policy) => match crate::service::apply_resource(&mut policy, ri) {
                    Ok(()) => p.auth = Some(policy),
                    Err(e) => {
                        errors.service(&base, "auth.resource.", e);
                        continue;
                    }
                },
                Err(e) => {
                    errors.service(&base, "auth.", e);
                    continue;
                }
            }
        }
        if let Some((old, _)) = state.proxies.get(&p.hostname) {
            p.owner_token_id = old.owner_token_id.clone();
            p.created_at = old.created_at;
        }
        d_proxies.push((
            i,
            Desired {
                key: p.hostname.clone(),
                record: p,
                secret_changed: false,
            },
        ));
    }
    unique("proxies", "hostname", &d_proxies, &mut errors);

    let mut d_routes = Vec::new();
    for (i, e) in routes {
        let (id, input) = e.input();
        match crate::service::build_route(id, input, owner.clone(), now) {
            Ok(mut r) => {
                if let Some((old, _)) = state.routes.get(&r.id) {
                    r.owner_token_id = old.owner_token_id.clone();
                    r.created_at = old.created_at;
                }
                d_routes.push((
                    i,
                    Desired {
                        key: r.id.clone(),
                        record: r,
                        secret_changed: false,
                    },
                ));
            }
            Err(e) => errors.service(&format!("routes[{i}]"), "", e),
        }
    }
    unique("routes", "id", &d_routes, &mut errors);

    let mut d_services = Vec::new();
    for (i, e) in services {
        match crate::service::build_service(e.input(), owner.clone(), now) {
            Ok(mut s) => {
                if let Some((old, _)) = state.services.get(&s.name) {
                    s.owner_token_id = old.owner_token_id.clone();
                    s.created_at = old.created_at;
                }
                d_services.push((
                    i,
                    Desired {
                        key: s.name.clone(),
                        record: s,
                        secret_changed: false,
                    },
                ));
            }
            Err(e) => errors.service(&format!("services[{i}]"), "", e),
        }
    }
    unique("services", "name", &d_services, &mut errors);

    let staging_url = cp.acme().staging_directory_url.clone();
    let mut d_certs = Vec::new();
    for (i, e) in certs {
        let base = format!("certificates[{i}]");
        match certificate(cp, &e, &owner, now, &state.certs, &staging_url) {
            Ok(c) => d_certs.push((
                i,
                Desired {
                    key: c.name.clone(),
                    record: c,
                    secret_changed: false,
                },
            )),
            Err(e) => errors.service(&base, "", e),
        }
    }
    unique("certificates", "name", &d_certs, &mut errors);

    let mut d_idps = Vec::new();
    for (i, e) in idps {
        let base = format!("oauth_providers[{i}]");
        match provider(cp, e, now, &state.idps) {
            Ok(d) => d_idps.push((i, d)),
            Err(e) => errors.service(&base, "", e),
        }
    }
    unique("oauth_providers", "name", &d_idps, &mut errors);

    let mut d_rules = Vec::new();
    for (i, e) in rules {
        let (id, input) = e.input();
        match crate::oauth::admin::build_rule(id, input, now) {
            Ok(mut r) => {
                if let Some((old, _)) = state.rules.get(&r.id) {
                    r.created_at = old.created_at;
                }
                d_rules.push((
                    i,
                    Desired {
                        key: r.id.clone(),
                        record: r,
                        secret_changed: false,
                    },
                ));
            }
            Err(e) => errors.service(&format!("login_rules[{i}]"), "", e),
        }
    }
    unique("login_rules", "id", &d_rules, &mut errors);

    let mut d_scopes = Vec::new();
    for (i, e) in scopes {
        let base = format!("scope_descriptions[{i}]");
        if let Err(why) = crate::oauth::scopes::valid_scope(&e.scope) {
            errors.at(format!("{base}.scope"), why);
            continue;
        }
        if let Err(why) = crate::oauth::scopes::valid_description(&e.description) {
            errors.at(format!("{base}.description"), why);
            continue;
        }
        let updated_at = match state.scopes.get(&e.scope) {
            Some((old, _)) if old.description == e.description => old.updated_at,
            _ => now,
        };
        d_scopes.push((
            i,
            Desired {
                key: e.scope.clone(),
                record: ScopeDescription {
                    scope: e.scope,
                    description: e.description,
                    updated_at,
                },
                secret_changed: false,
            },
        ));
    }
    unique("scope_descriptions", "scope", &d_scopes, &mut errors);

    let mut d_poauth = Vec::new();
    for (i, e) in proxy_oauth {
        let base = format!("proxy_oauth[{i}]");
        match proxy_oauth_settings(cp, e, now, &state.proxy_oauth) {
            Ok(d) => d_poauth.push((i, d)),
            Err(e) => errors.service(&base, "", e),
        }
    }
    unique("proxy_oauth", "hostname", &d_poauth, &mut errors);

    // References, checked on the state after the apply.
    let mut final_proxies: BTreeMap<String, &Proxy> = BTreeMap::new();
    if !opts.prune {
        final_proxies.extend(state.proxies.iter().map(|(k, (p, _))| (k.clone(), p)));
    }
    final_proxies.extend(d_proxies.iter().map(|(_, d)| (d.key.clone(), &d.record)));
    let final_services = final_keys(&state.services, &d_services, opts.prune);
    let final_certs = final_keys(&state.certs, &d_certs, opts.prune);
    let final_idps = final_keys(&state.idps, &d_idps, opts.prune);

    for (i, p) in &d_proxies {
        let name = &p.record.certificate_name;
        if !name.is_empty() && !final_certs.contains(name) {
            errors.at(
                format!("proxies[{i}].certificate_name"),
                format!("there is no certificate {name:?} (in the store or the document)"),
            );
        }
    }
    let mut routes_to_check: Vec<(String, &Route)> = d_routes
        .iter()
        .map(|(i, d)| (format!("routes[{i}]"), &d.record))
        .collect();
    if !opts.prune {
        let listed: BTreeSet<&str> = d_routes.iter().map(|(_, d)| d.key.as_str()).collect();
        routes_to_check.extend(
            state
                .routes
                .iter()
                .filter(|(k, _)| !listed.contains(k.as_str()))
                .map(|(k, (r, _))| (format!("routes (stored route {k:?})"), r)),
        );
    }
    for (base, r) in routes_to_check {
        for h in &r.proxy_hostnames {
            if !final_proxies.contains_key(h) {
                errors.at(
                    format!("{base}.proxy_hostnames"),
                    format!("there is no proxy {h:?} (in the store or the document)"),
                );
            }
        }
        match r.target_kind {
            TargetKind::Url => {}
            TargetKind::Service if !final_services.contains(&r.target_value) => errors.at(
                format!("{base}.target_value"),
                format!("there is no service {:?}", r.target_value),
            ),
            TargetKind::Service => {}
            TargetKind::Proxy => match final_proxies.get(&r.target_value) {
                None => errors.at(
                    format!("{base}.target_value"),
                    format!("there is no proxy {:?}", r.target_value),
                ),
                Some(p) => {
                    if let Err(e) = crate::service::refuse_protected_target(&r.target_value, p) {
                        errors.service(&base, "", e);
                    }
                }
            },
        }
    }
    for (i, c) in &d_certs {
        for d in &c.record.domains {
            if !final_proxies.keys().any(|h| crate::service::covers(h, d)) {
                errors.at(
                    format!("certificates[{i}].domains"),
                    format!("{d:?} is not served by a proxy (in the store or the document)"),
                );
            }
        }
    }
    for (i, s) in &d_poauth {
        if !final_proxies.contains_key(&s.key) {
            errors.at(
                format!("proxy_oauth[{i}].hostname"),
                format!("there is no proxy {:?}", s.key),
            );
        }
        for idp in &s.record.idps {
            if !final_idps.contains(idp) {
                errors.at(
                    format!("proxy_oauth[{i}].idps"),
                    format!("no identity provider named {idp:?}"),
                );
            }
        }
    }
    if !errors.0.is_empty() {
        return Err(ApplyError::Document(errors.0));
    }

    let mut plan = Plan::default();
    let prune = opts.prune;
    plan.kind(
        "proxy",
        Collection::Proxies,
        &state.proxies,
        &strip(d_proxies),
        |p| to_value(&ProxyEntry::from_record(p)),
        prune,
    );
    plan.kind(
        "route",
        Collection::Routes,
        &state.routes,
        &strip(d_routes),
        |r| to_value(&RouteEntry::from_record(r)),
        prune,
    );
    plan.kind(
        "service",
        Collection::Services,
        &state.services,
        &strip(d_services),
        |s| to_value(&ServiceEntry::from_record(s)),
        prune,
    );
    let d_certs = strip(d_certs);
    plan.kind(
        "certificate",
        Collection::Certificates,
        &state.certs,
        &d_certs,
        |c| to_value(&cert_entry(c, &staging_url)),
        prune,
    );
    plan.kind(
        "oauth_provider",
        Collection::OAuthIdps,
        &state.idps,
        &strip(d_idps),
        |r| to_value(&IdpEntry::from_record(r)),
        prune,
    );
    plan.kind(
        "login_rule",
        Collection::OAuthRules,
        &state.rules,
        &strip(d_rules),
        |r| to_value(&RuleEntry::from_record(r)),
        prune,
    );
    plan.kind(
        "scope_description",
        Collection::OAuthScopes,
        &state.scopes,
        &strip(d_scopes),
        |s| to_value(&ScopeEntry::from_record(s)),
        prune,
    );
    plan.kind(
        "proxy_oauth",
        Collection::OAuthProxySettings,
        &state.proxy_oauth,
        &strip(d_poauth),
        |s| to_value(&ProxyOAuthEntry::from_record(s)),
        prune,
    );
    for c in &plan.changes {
        if c.kind == "certificate"
            && matches!(c.action, Action::Create | Action::Update)
            && let Some(d) = d_certs.iter().find(|d| d.key == c.name)
            && d.record.source == CertSource::Acme
        {
            plan.orders.push(d.key.clone());
        }
    }

    let mut report = Report {
        dry_run: opts.dry_run,
        applied: false,
        revision: state.revision,
        changes: plan.changes,
    };
    if opts.dry_run || plan.writes.is_empty() {
        return Ok(report);
    }
    match cp
        .store()
        .apply(Batch {
            checks: plan.checks,
            writes: plan.writes,
        })
        .await
    {
        Ok(rev) => {
            cp.observe_revision(rev);
            report.revision = rev;
            report.applied = true;
        }
        Err(StoreError::CheckFailed(_)) => {
            return Err(ServiceError::concurrent(
                "the installation changed while the document was applied; nothing was written, apply again",
            )
            .into());
        }
        Err(e) => return Err(e.into()),
    }
    for name in plan.orders {
        cp.orders().push(name);
    }
    tracing::info!(
        revision = report.revision,
        changes = report
            .changes
            .iter()
            .filter(|c| c.action != Action::Unchanged)
            .count(),
        "declarative configuration applied"
    );
    Ok(report)
}

fn strip<T>(v: Vec<(usize, Desired<T>)>) -> Vec<Desired<T>> {
    v.into_iter().map(|(_, d)| d).collect()
}

fn final_keys<T>(
    stored: &Stored<T>,
    desired: &[(usize, Desired<T>)],
    prune: bool,
) -> BTreeSet<String> {
    let mut set: BTreeSet<String> = desired.iter().map(|(_, d)| d.key.clone()).collect();
    if !prune {
        set.extend(stored.keys().cloned());
    }
    set
}

/// A certificate entry as the record to store. An unchanged entry keeps the stored record
/// (with its key and chain); a changed one is ordered again (an issued one keeps serving
/// meanwhile) or self-signed anew.
fn certificate(
    cp: &ControlPlane,
    e: &CertificateEntry,
    owner: &str,
    now: i64,
    stored: &Stored<CertificateRecord>,
    staging_url: &str,
) -> Result<CertificateRecord, ServiceError> {
    let name = validate::ident("name", &e.name)?;
    let domains = certificate_domains(&e.domains)?;
    let source = e.source.unwrap_or(CertSource::Acme);
    let email = certificate_email(e.email.as_deref(), &cp.acme().default_email)?;
    let staging = e.staging.unwrap_or(false);
    if staging && source != CertSource::Acme {
        return Err(ServiceError::invalid(
            "staging",
            "only for ACME certificates",
        ));
    }
    let wanted = CertificateEntry {
        name: name.clone(),
        domains: domains.clone(),
        source: (source != CertSource::Acme).then_some(source),
        email: (!email.is_empty()).then(|| email.clone()),
        challenge: e.challenge.filter(|c| *c != Default::default()),
        staging: staging.then_some(true),
    };
    let old = stored.get(&name).map(|(c, _)| c);
    if let Some(old) = old
        && cert_entry(old, staging_url) == wanted
    {
        return Ok(old.clone());
    }
    if source == CertSource::Uploaded || old.is_some_and(|o| o.source == CertSource::Uploaded) {
        return Err(ServiceError::invalid(
            "source",
            "an uploaded certificate is created and changed only by `cert upload` (a document holds no keys); list it as stored",
        ));
    }
    // An issued ACME certificate whose settings change keeps serving until the new order
    // completes (as `cert renew` does); the order goes out after the commit.
    if let Some(o) = old
        && o.source == CertSource::Acme
        && source == CertSource::Acme
        && o.status == CertStatus::Valid
    {
        let mut rec = o.clone();
        rec.domains = domains;
        rec.email = email;
        rec.challenge = e.challenge.unwrap_or_default();
        rec.acme_directory = if staging {
            staging_url.to_owned()
        } else {
            cp.acme().directory_url.clone()
        };
        rec.renewal_failures = 0;
        return Ok(rec);
    }
    let mut rec = CertificateRecord {
        name,
        domains,
        owner_token_id: old.map_or_else(|| owner.to_owned(), |o| o.owner_token_id.clone()),
        source,
        acme_directory: String::new(),
        email,
        challenge: e.challenge.unwrap_or_default(),
        status: CertStatus::Pending,
        error: String::new(),
        issuer: String::new(),
        not_before: 0,
        not_after: 0,
        last_attempt_at: now,
        created_at: old.map_or(now, |o| o.created_at),
        renewal_failures: 0,
        ari: Default::default(),
        cert_chain_pem: String::new(),
        private_key_sealed: String::new(),
    };
    if source == CertSource::SelfSigned {
        let (chain, key) = pem::self_signed(&rec.domains)
            .map_err(|e| ServiceError::Unprocessable(format!("cannot make a certificate: {e}")))?;
        let (issuer, nb, na) = pem::parse_validity(&chain);
        rec.private_key_sealed = cp.master_key().seal(key.as_bytes());
        rec.cert_chain_pem = chain;
        rec.issuer = issuer;
        rec.not_before = nb;
        rec.not_after = na;
        rec.status = CertStatus::Valid;
    } else {
        rec.acme_directory = if staging {
            staging_url.to_owned()
        } else {
            cp.acme().directory_url.clone()
        };
    }
    Ok(rec)
}

/// Refuses a secret reference on the wire: only clients resolve them.
fn no_reference(field: &'static str, given: bool) -> Result<(), ServiceError> {
    if given {
        return Err(ServiceError::invalid(
            field,
            "secret references are resolved by the client (`portcullis apply`, `--bootstrap`); send the secret itself to the API",
        ));
    }
    Ok(())
}

/// Whether `given` differs from the sealed stored secret.
fn secret_differs(cp: &ControlPlane, sealed: &str, given: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    match cp.master_key().open(sealed) {
        Ok(stored) => !bool::from(stored.ct_eq(given.as_bytes())),
        Err(_) => true,
    }
}

fn provider(
    cp: &ControlPlane,
    e: IdpEntry,
    now: i64,
    stored: &Stored<IdpRecord>,
) -> Result<Desired<IdpRecord>, ServiceError> {
    no_reference("client_secret_env", e.client_secret_env.is_some())?;
    no_reference("client_secret_file", e.client_secret_file.is_some())?;
    let old = stored.get(&e.name).map(|(r, _)| r);
    let secret = e.client_secret.map(|s| s.0);
    if secret.is_none() && old.is_none() {
        return Err(ServiceError::invalid(
            "client_secret",
            "required for a new provider (in a file: client_secret_env or client_secret_file)",
        ));
    }
    let mut rec = crate::oauth::admin::build_idp(
        IdpInput {
            name: e.name,
            kind: e.kind,
            client_id: e.client_id,
            client_secret: secret.clone().unwrap_or_else(|| "kept".into()),
            base_url: e.base_url,
            api_url: e.api_url,
            scopes: e.scopes,
        },
        cp.master_key(),
        now,
    )?;
    let mut secret_changed = false;
    if let Some(old) = old {
        rec.created_at = old.created_at;
        match &secret {
            Some(s) if secret_differs(cp, &old.client_secret_sealed, s) => secret_changed = true,
            _ => rec.client_secret_sealed = old.client_secret_sealed.clone(),
        }
    }
    Ok(Desired {
        key: rec.name.clone(),
        record: rec,
        secret_changed,
    })
}

fn proxy_oauth_settings(
    cp: &ControlPlane,
    e: ProxyOAuthEntry,
    now: i64,
    stored: &Stored<ProxyOAuthSettings>,
) -> Result<Desired<ProxyOAuthSettings>, ServiceError> {
    no_reference(
        "github_client_secret_env",
        e.github_client_secret_env.is_some(),
    )?;
    no_reference(
        "github_client_secret_file",
        e.github_client_secret_file.is_some(),
    )?;
    let hostname = validate::hostname("hostname", &e.hostname)?;
    let old = stored.get(&hostname).map(|(r, _)| r);
    let metadata = e.metadata.unwrap_or_default();
    crate::oauth::admin::validate_metadata_overrides(&metadata)?;
    let secret = e.github_client_secret.map(|s| s.0);
    let mut secret_changed = false;
    let (github_client_id, github_client_secret_sealed) = match e.github_client_id {
        None => {
            if secret.is_some() {
                return Err(ServiceError::invalid(
                    "github_client_id",
                    "required together with github_client_secret",
                ));
            }
            (None, None)
        }
        Some(id) => {
            if id.is_empty() || id.len() > 200 {
                return Err(ServiceError::invalid(
                    "github_client_id",
                    "1 to 200 characters",
                ));
            }
            let kept = old.and_then(|o| o.github_client_secret_sealed.clone());
            let sealed = match (secret, kept) {
                (Some(s), _) if s.is_empty() || s.len() > 500 => {
                    return Err(ServiceError::invalid(
                        "github_client_secret",
                        "1 to 500 characters",
                    ));
                }
                (Some(s), Some(k)) if !secret_differs(cp, &k, &s) => k,
                (Some(s), kept) => {
                    secret_changed = kept.is_some();
                    cp.master_key().seal(s.as_bytes())
                }
                (None, Some(k)) => k,
                (None, None) => {
                    return Err(ServiceError::invalid(
                        "github_client_secret",
                        "required with github_client_id (in a file: github_client_secret_env or github_client_secret_file)",
                    ));
                }
            };
            (Some(id), Some(sealed))
        }
    };
    let rec = ProxyOAuthSettings {
        hostname: hostname.clone(),
        idps: e.idps.unwrap_or_default(),
        github_client_id,
        github_client_secret_sealed,
        metadata,
        updated_at: old.map_or(now, |o| o.updated_at),
    };
    Ok(Desired {
        key: hostname,
        record: rec,
        secret_changed,
    })
}

#[cfg(test)]
mod tests;
