//! Identity headers on the way to the upstream.
//!
//! The upstream must be able to trust these headers, so every copy the client sent is
//! removed first, on every proxy ([`strip_client_claims`]; the seed trusted a
//! client-sent identity header and let anyone in), the client's bearer token is removed (it was issued for this proxy,
//! not for the upstream: no token passthrough, unless the proxy opted in with
//! `forward_token` and the token was verified), and only then are values from verified
//! claims set. The `X-Auth-*` names can be renamed per proxy ([`IdentityHeaders`]);
//! client copies of both the default and the configured names are stripped.
//!
//! **Costs.** A token's header values are built once, on its first use, and cached with
//! its claims ([`IdentityValues`]); hyper's path then inserts ten clones into the request's
//! `HeaderMap` ([`apply`]). The HTTP/1.1 fast path writes bytes: the ten `name: value\r\n`
//! lines are also built once per token and set of names ([`IdentityHeaders`]' layout; every
//! proxy with the default names shares one) and appended with one copy
//! ([`write_fields`]). At most [`BLOCKS`] such blocks are kept per token (about 300 bytes
//! each); a token used through more sets of names gets its lines written field by field
//! for the others, the same bytes.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::invalid;
use super::{Claims, Verdict};
use crate::spec::InvalidField;

/// Login name at the identity provider.
pub(crate) const X_FORWARDED_USER: HeaderName = HeaderName::from_static("x-forwarded-user");
/// Email address.
pub(crate) const X_FORWARDED_EMAIL: HeaderName = HeaderName::from_static("x-forwarded-email");
/// Groups, comma separated.
pub(crate) const X_FORWARDED_GROUPS: HeaderName = HeaderName::from_static("x-forwarded-groups");
/// Stable subject id.
pub(crate) const X_FORWARDED_SUB: HeaderName = HeaderName::from_static("x-forwarded-sub");
/// Login name (Portcullis' own header family; `X-Forwarded-*` is kept for oauth2-proxy
/// compatible upstreams).
pub(crate) const X_AUTH_USER: HeaderName = HeaderName::from_static("x-auth-user");
/// Email address.
pub(crate) const X_AUTH_EMAIL: HeaderName = HeaderName::from_static("x-auth-email");
/// Stable subject id.
pub(crate) const X_AUTH_SUBJECT: HeaderName = HeaderName::from_static("x-auth-subject");
/// Granted scopes, space separated.
pub(crate) const X_AUTH_SCOPES: HeaderName = HeaderName::from_static("x-auth-scopes");
/// The OAuth client the token was issued to.
pub(crate) const X_AUTH_CLIENT_ID: HeaderName = HeaderName::from_static("x-auth-client-id");
/// Groups, comma separated.
pub(crate) const X_AUTH_GROUPS: HeaderName = HeaderName::from_static("x-auth-groups");

/// Names with this prefix are identity-like (`X-Auth-Request-User`, `X-Auth-User`, …) and
/// are stripped from every client request by prefix; configured names outside it are listed.
const X_AUTH_PREFIX: &str = "x-auth-";

/// The configurable items: admin key, field named in errors, default header.
const ITEMS: [(&str, &str, HeaderName); 6] = [
    ("user", "auth.identity_headers.user", X_AUTH_USER),
    ("email", "auth.identity_headers.email", X_AUTH_EMAIL),
    ("subject", "auth.identity_headers.subject", X_AUTH_SUBJECT),
    ("scopes", "auth.identity_headers.scopes", X_AUTH_SCOPES),
    (
        "client-id",
        "auth.identity_headers.client-id",
        X_AUTH_CLIENT_ID,
    ),
    ("groups", "auth.identity_headers.groups", X_AUTH_GROUPS),
];

/// A proxy's identity-header settings, compiled once per snapshot so a request only
/// reads prebuilt [`HeaderName`]s (no per-request parsing).
#[derive(Clone, Debug)]
pub(crate) struct IdentityHeaders {
    /// Keep a verified `Authorization: Bearer` header for the upstream.
    forward_token: bool,
    /// Header per item, in [`ITEMS`] order.
    names: [HeaderName; 6],
    /// Configured names outside the `x-auth-` family: stripped from client requests
    /// explicitly (the prefix rule covers the defaults).
    extra_strip: Box<[HeaderName]>,
    /// Which prebuilt block of field lines these names use ([`write_fields`]): 0 for the
    /// default names, shared by every proxy that has them; otherwise unique to this
    /// configuration (clones share it: they have the same names).
    layout: u64,
}

/// The layout of the default names.
const DEFAULT_LAYOUT: u64 = 0;

/// The next layout for configured names (process-wide, so two configurations never
/// share one, whichever snapshot compiled them).
static NEXT_LAYOUT: AtomicU64 = AtomicU64::new(DEFAULT_LAYOUT + 1);

impl Default for IdentityHeaders {
    /// No token passthrough, the `X-Auth-*` names.
    fn default() -> Self {
        Self {
            forward_token: false,
            names: ITEMS.map(|(_, _, default)| default),
            extra_strip: Box::new([]),
            layout: DEFAULT_LAYOUT,
        }
    }
}

impl IdentityHeaders {
    /// Configured names outside the `X-Auth-*` family: every proxy strips client copies of
    /// these ([`strip_client_claims`]).
    pub(crate) fn configured(&self) -> &[HeaderName] {
        &self.extra_strip
    }

    /// Validates the wire settings; errors name the field (`auth.identity_headers.<key>`).
    pub(crate) fn from_proto(
        forward_token: bool,
        raw: &HashMap<String, String>,
    ) -> Result<Self, InvalidField> {
        if let Some(key) = raw.keys().find(|k| !ITEMS.iter().any(|(i, _, _)| i == k)) {
            return Err(invalid(
                "auth.identity_headers",
                format!(
                    "unknown key {key:?}: use user, email, subject, scopes, client-id or groups"
                ),
            ));
        }
        let mut out = Self {
            forward_token,
            ..Self::default()
        };
        let mut extra = Vec::new();
        for (i, (key, field, _)) in ITEMS.iter().enumerate() {
            let Some(value) = raw.get(*key) else { continue };
            let name = header_name(value).map_err(|e| invalid(field, e))?;
            if !name.as_str().starts_with(X_AUTH_PREFIX) {
                extra.push(name.clone());
            }
            out.names[i] = name;
        }
        for (i, name) in out.names.iter().enumerate() {
            if let Some(j) = out.names[..i].iter().position(|n| n == name) {
                return Err(invalid(
                    ITEMS[i].1,
                    format!(
                        "{name} is already the header of identity_headers.{}",
                        ITEMS[j].0
                    ),
                ));
            }
        }
        out.extra_strip = extra.into();
        if out.names != Self::default().names {
            out.layout = NEXT_LAYOUT.fetch_add(1, Ordering::Relaxed);
        }
        Ok(out)
    }
}

/// Parses one configured header name; `Err` says why it cannot be used.
fn header_name(raw: &str) -> Result<HeaderName, String> {
    let name = HeaderName::from_bytes(raw.trim().as_bytes())
        .map_err(|_| format!("{raw:?} is not a valid header name"))?;
    let s = name.as_str();
    if portcullis_proto::identity_headers::is_reserved(s) {
        return Err(format!("{raw:?} is a reserved header"));
    }
    Ok(name)
}

/// Most blocks of field lines kept per token ([`write_fields`]).
const BLOCKS: usize = 4;

/// The identity of one verified token as header values, built once per token: a cached
/// token then costs reference-count bumps instead of validation and allocation.
#[derive(Debug, Default)]
pub(crate) struct IdentityValues {
    sub: Option<HeaderValue>,
    login: Option<HeaderValue>,
    email: Option<HeaderValue>,
    scope: Option<HeaderValue>,
    client_id: Option<HeaderValue>,
    /// Comma separated; groups that contain a comma are left out (ambiguous in a list).
    groups: Option<HeaderValue>,
    /// The HTTP/1.1 field lines of these values, by layout ([`IdentityHeaders`]), each
    /// built on first use. A slot, once set, never changes.
    blocks: [OnceLock<(u64, Box<[u8]>)>; BLOCKS],
}

impl IdentityValues {
    fn of(claims: &Claims) -> Self {
        let groups: Vec<&str> = claims
            .groups
            .iter()
            .map(String::as_str)
            .filter(|g| !g.is_empty() && !g.contains(','))
            .collect();
        Self {
            sub: value("sub", &claims.sub),
            login: value("login", &claims.login),
            email: value("email", &claims.email),
            scope: value("scope", &claims.scope),
            client_id: value("client_id", &claims.client_id),
            groups: value("groups", &groups.join(",")),
            blocks: Default::default(),
        }
    }

    /// The lines for `layout`, built by `build` if no slot holds them yet; `None` when
    /// every slot holds another layout's.
    fn block(&self, layout: u64, build: impl Fn() -> Box<[u8]>) -> Option<&[u8]> {
        for slot in &self.blocks {
            // A racing request with another layout may win an empty slot: try the next.
            let (owner, lines) = match slot.get() {
                Some(set) => set,
                None => slot.get_or_init(|| (layout, build())),
            };
            if *owner == layout {
                return Some(lines);
            }
        }
        None
    }
}

/// A header value for a claim; `None` when empty or not representable in a header.
fn value(claim: &'static str, raw: &str) -> Option<HeaderValue> {
    if raw.is_empty() {
        return None;
    }
    let v = HeaderValue::from_str(raw).ok();
    if v.is_none() {
        tracing::debug!(claim, "identity value not representable; left out");
    }
    v
}

/// Whether a client may not send `name`: identity (`X-Auth-*`, every `X-Forwarded-*` but
/// those this proxy sets, which are replaced anyway, and the identity names configured on
/// any proxy of the snapshot) and path overrides some frameworks honour (`X-Original-URL`,
/// `X-Rewrite-URL`), which would let a client choose a path other than the one decided on.
pub(crate) fn is_client_claim(name: &str, configured: &[HeaderName]) -> bool {
    name.starts_with("x-auth-")
        || name.starts_with("x-forwarded-")
        || matches!(name, "x-original-url" | "x-original-uri" | "x-rewrite-url")
        || configured.iter().any(|c| c.as_str() == name)
}

/// Removes every header a client may not claim (see [`is_client_claim`]). One scan over the
/// names present; allocates only when there is something to remove.
pub(crate) fn strip_client_claims(headers: &mut HeaderMap, configured: &[HeaderName]) {
    if !headers
        .keys()
        .any(|k| is_client_claim(k.as_str(), configured))
    {
        return;
    }
    let forged: Vec<HeaderName> = headers
        .keys()
        .filter(|k| is_client_claim(k.as_str(), configured))
        .cloned()
        .collect();
    for name in forged {
        headers.remove(name);
    }
}

/// Strips the bearer token (unless [`keeps_token`]), then sets identity from `verdict`
/// under the proxy's configured names ([`for_each_field`]). Client copies of identity
/// headers are already gone: [`strip_client_claims`] runs first for every proxy,
/// protected or not.
pub(crate) fn apply(
    headers: &mut HeaderMap,
    verdict: &Verdict,
    ids: &IdentityHeaders,
    token_verified: bool,
) {
    let authenticated = matches!(verdict, Verdict::Authenticated(_));
    if !keeps_token(ids, authenticated, token_verified)
        && headers.get_all(AUTHORIZATION).iter().any(super::is_bearer)
    {
        headers.remove(AUTHORIZATION);
    }
    let Verdict::Authenticated(claims) = verdict else {
        return;
    };
    headers.reserve(10);
    for_each_field(claims, ids, |name, value| {
        headers.insert(name.clone(), value.clone());
    });
}

/// Whether a client's bearer `Authorization` goes on to the upstream: only when the proxy
/// opted in (`forward_token`), `token_verified` says the verdict came from verifying that
/// very header, and it admitted a user (`authenticated`). Otherwise every `Authorization`
/// field goes when one of them is a bearer credential ([`super::is_bearer`]).
pub(crate) fn keeps_token(
    ids: &IdentityHeaders,
    authenticated: bool,
    token_verified: bool,
) -> bool {
    ids.forward_token && token_verified && authenticated
}

/// Calls `set` with each identity field the verified `claims` give, under the proxy's
/// names: what [`apply`] sets. The values are built once per token and cached with it.
fn for_each_field(
    claims: &Claims,
    ids: &IdentityHeaders,
    set: impl FnMut(&HeaderName, &HeaderValue),
) {
    each_field(values(claims), ids, set);
}

/// Appends what [`apply`] sets for the verified `claims` to `out` as HTTP/1.1 field lines
/// (`name: value\r\n`, in [`for_each_field`]'s order), for the HTTP/1.1 fast path. The
/// lines are built on a token's first request under these names and kept with its claims
/// (see the module docs), so a cached token costs one slot check and one copy. Safe as
/// bytes: names are valid tokens and values came through [`HeaderValue::from_str`]
/// (visible ASCII, spaces and tabs: never CR or LF).
pub(crate) fn write_fields(claims: &Claims, ids: &IdentityHeaders, out: &mut Vec<u8>) {
    let v = values(claims);
    let build = || {
        let mut lines = Vec::with_capacity(512);
        each_field(v, ids, |name, value| field_line(&mut lines, name, value));
        lines.into_boxed_slice()
    };
    match v.block(ids.layout, build) {
        Some(lines) => out.extend_from_slice(lines),
        None => each_field(v, ids, |name, value| field_line(out, name, value)),
    }
}

/// The header values of `claims`, built on first use.
fn values(claims: &Claims) -> &IdentityValues {
    claims
        .identity_values
        .get_or_init(|| IdentityValues::of(claims))
}

fn field_line(out: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// [`for_each_field`] over values already built.
fn each_field(
    v: &IdentityValues,
    ids: &IdentityHeaders,
    mut set: impl FnMut(&HeaderName, &HeaderValue),
) {
    let [user, email, subject, scopes, client_id, groups] = &ids.names;
    for (name, value) in [
        (&X_FORWARDED_SUB, &v.sub),
        (&X_FORWARDED_USER, &v.login),
        (&X_FORWARDED_EMAIL, &v.email),
        (&X_FORWARDED_GROUPS, &v.groups),
        (subject, &v.sub),
        (user, &v.login),
        (email, &v.email),
        (scopes, &v.scope),
        (client_id, &v.client_id),
        (groups, &v.groups),
    ] {
        if let Some(value) = value {
            set(name, value);
        }
    }
}
