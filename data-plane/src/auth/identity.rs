//! Identity headers on the way to the upstream.
//!
//! On a protected proxy the upstream must be able to trust these headers, so every copy
//! the client sent is removed first (the seed trusted a client-sent identity header and
//! let anyone in), the client's bearer token is removed (it was issued for this proxy,
//! not for the upstream: no token passthrough), and only then are values from verified
//! claims set.

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::Verdict;

/// Login name at the identity provider.
pub const X_FORWARDED_USER: HeaderName = HeaderName::from_static("x-forwarded-user");
/// Email address.
pub const X_FORWARDED_EMAIL: HeaderName = HeaderName::from_static("x-forwarded-email");
/// Groups, comma separated.
pub const X_FORWARDED_GROUPS: HeaderName = HeaderName::from_static("x-forwarded-groups");
/// Stable subject id.
pub const X_FORWARDED_SUB: HeaderName = HeaderName::from_static("x-forwarded-sub");
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

const IDENTITY: [HeaderName; 4] = [
    X_FORWARDED_USER,
    X_FORWARDED_EMAIL,
    X_FORWARDED_GROUPS,
    X_FORWARDED_SUB,
];

/// Any header with this prefix is identity-like (`X-Auth-Request-User`, `X-Auth-User`, …)
/// and never comes from the client.
const X_AUTH_PREFIX: &str = "x-auth-";

/// Strips the bearer token and forged identity headers, then sets identity from `verdict`.
pub(crate) fn apply(headers: &mut HeaderMap, verdict: &Verdict) {
    if headers.get(AUTHORIZATION).is_some_and(super::is_bearer) {
        headers.remove(AUTHORIZATION);
    }
    for name in IDENTITY {
        headers.remove(name);
    }
    // Allocates only when the client sent such headers.
    let forged: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with(X_AUTH_PREFIX))
        .cloned()
        .collect();
    for name in forged {
        headers.remove(name);
    }
    let Verdict::Authenticated(claims) = verdict else {
        return;
    };
    set(headers, X_FORWARDED_SUB, &claims.sub);
    set(headers, X_FORWARDED_USER, &claims.login);
    set(headers, X_FORWARDED_EMAIL, &claims.email);
    set(headers, X_AUTH_SUBJECT, &claims.sub);
    set(headers, X_AUTH_USER, &claims.login);
    set(headers, X_AUTH_EMAIL, &claims.email);
    set(headers, X_AUTH_SCOPES, &claims.scope);
    set(headers, X_AUTH_CLIENT_ID, &claims.client_id);
    if !claims.groups.is_empty() {
        // A group containing a comma would be ambiguous in the list; leave it out.
        let groups: Vec<&str> = claims
            .groups
            .iter()
            .map(String::as_str)
            .filter(|g| !g.is_empty() && !g.contains(','))
            .collect();
        let joined = groups.join(",");
        set(headers, X_FORWARDED_GROUPS, &joined);
        set(headers, X_AUTH_GROUPS, &joined);
    }
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if value.is_empty() {
        return;
    }
    match HeaderValue::from_str(value) {
        Ok(v) => {
            headers.insert(name, v);
        }
        Err(_) => tracing::debug!(header = %name, "identity value not representable; left out"),
    }
}
