//! Edge-auth policy of a proxy: stored on the proxy record, sent to data planes in the
//! snapshot, written with the same ownership rules as any other proxy change.

use std::collections::BTreeMap;

use super::{ControlPlane, Result};
use crate::auth::Caller;
use crate::error::ServiceError;
use crate::model::{AuthMode, ProxyAuth, ProxyAuthInput, ProxyAuthView, validate};

impl ControlPlane {
    /// Protects a proxy the caller owns, replacing any previous policy (its resource
    /// settings are kept, see `proxy_resource`). Every field is validated before anything
    /// is written.
    pub async fn set_proxy_auth(
        &self,
        caller: &Caller,
        hostname: &str,
        input: ProxyAuthInput,
    ) -> Result<ProxyAuthView> {
        let auth = validate_auth(input)?;
        let proxy = self
            .modify_proxy(caller, hostname, |p| {
                let mut next = auth.clone();
                super::proxy_resource::keep_resource(p.auth.take(), &mut next);
                p.auth = Some(next);
                Ok(())
            })
            .await?;
        Ok(view(proxy.hostname, proxy.auth))
    }

    /// The proxy's policy; `enabled: false` when it is unprotected.
    pub async fn get_proxy_auth(&self, caller: &Caller, hostname: &str) -> Result<ProxyAuthView> {
        let proxy = self.get_proxy(caller, hostname).await?;
        Ok(view(proxy.hostname, proxy.auth))
    }

    /// Removes the protection of a proxy the caller owns (idempotent).
    pub async fn clear_proxy_auth(&self, caller: &Caller, hostname: &str) -> Result<()> {
        self.modify_proxy(caller, hostname, |p| {
            p.auth = None;
            Ok(())
        })
        .await?;
        Ok(())
    }
}

fn view(hostname: String, auth: Option<ProxyAuth>) -> ProxyAuthView {
    ProxyAuthView {
        hostname,
        enabled: auth.is_some(),
        auth,
    }
}

/// The policy `input` describes, every field validated (no resource settings yet).
pub(crate) fn validate_auth(input: ProxyAuthInput) -> Result<ProxyAuth> {
    let auth_host = validate::hostname("auth_host", &input.auth_host)?;
    if auth_host.starts_with("*.") {
        return Err(ServiceError::invalid(
            "auth_host",
            "must be one host name, not a wildcard",
        ));
    }
    let public_paths = validate::public_paths(&input.public_paths.unwrap_or_default())?;
    if input.mode == AuthMode::Passthrough && !public_paths.is_empty() {
        return Err(ServiceError::invalid(
            "public_paths",
            "passthrough mode never refuses a request, so public paths have no effect",
        ));
    }
    Ok(ProxyAuth {
        mode: input.mode,
        auth_host,
        required_scopes: validate::scopes(
            "required_scopes",
            &input.required_scopes.unwrap_or_default(),
        )?,
        public_paths,
        scopes_supported: validate::scopes(
            "scopes_supported",
            &input.scopes_supported.unwrap_or_default(),
        )?,
        resource_documentation: validate::doc_url(
            "resource_documentation",
            input.resource_documentation.as_deref().unwrap_or_default(),
        )?,
        resource_endpoint: String::new(),
        resource_fields: serde_json::Map::new(),
        allowed_origins: vec![],
        allowed_users: allowlist("allowed_users", input.allowed_users, Entry::User)?,
        allowed_orgs: allowlist("allowed_orgs", input.allowed_orgs, Entry::Org)?,
        allowed_teams: allowlist("allowed_teams", input.allowed_teams, Entry::Team)?,
        allowed_email_domains: allowlist(
            "allowed_email_domains",
            input.allowed_email_domains,
            Entry::EmailDomain,
        )?,
        allowed_groups: allowlist("allowed_groups", input.allowed_groups, Entry::Group)?,
        forward_token: input.forward_token.unwrap_or(false),
        identity_headers: identity_headers(input.identity_headers.unwrap_or_default())?,
    })
}

/// Configurable identity items and the field named when their header is refused.
const IDENTITY_ITEMS: [(&str, &str); 6] = [
    ("user", "identity_headers.user"),
    ("email", "identity_headers.email"),
    ("subject", "identity_headers.subject"),
    ("scopes", "identity_headers.scopes"),
    ("client-id", "identity_headers.client-id"),
    ("groups", "identity_headers.groups"),
];

/// Checks the renamed identity headers (known key, valid, not reserved, distinct) and
/// stores them lower-case, so what is stored is what the data plane enforces.
fn identity_headers(raw: BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
    if let Some(key) = raw
        .keys()
        .find(|k| !IDENTITY_ITEMS.iter().any(|(i, _)| i == k))
    {
        return Err(ServiceError::invalid(
            "identity_headers",
            format!("unknown key {key:?}: use user, email, subject, scopes, client-id or groups"),
        ));
    }
    let mut out = BTreeMap::new();
    let mut effective: Vec<(&str, String)> = Vec::with_capacity(IDENTITY_ITEMS.len());
    for (key, field) in IDENTITY_ITEMS {
        let name = match raw.get(key) {
            Some(value) => {
                let name = http::HeaderName::from_bytes(value.as_bytes())
                    .map_err(|_| {
                        ServiceError::invalid(
                            field,
                            format!("{value:?} is not a valid header name"),
                        )
                    })?
                    .as_str()
                    .to_owned();
                if portcullis_proto::identity_headers::is_reserved(&name) {
                    return Err(ServiceError::invalid(
                        field,
                        format!("{value:?} is a reserved header"),
                    ));
                }
                out.insert(key.to_owned(), name.clone());
                name
            }
            // The default names are `x-auth-<key>`.
            None => format!("x-auth-{key}"),
        };
        if let Some((other, _)) = effective.iter().find(|(_, n)| *n == name) {
            return Err(ServiceError::invalid(
                field,
                format!("{name} is already the header of identity_headers.{other}"),
            ));
        }
        effective.push((key, name));
    }
    Ok(out)
}

/// Kinds of allowlist entry, for shape checks and case folding.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Entry {
    User,
    Org,
    Team,
    EmailDomain,
    Group,
}

/// Most entries one allowlist may hold.
const MAX_ALLOWLIST: usize = 256;

/// Checks, folds case (all but OIDC groups: the rest are case-insensitive names) and
/// deduplicates one allowlist. The data plane applies the same rules, so what is stored is
/// what is enforced. Surrounding spaces or a leading `@` on a domain are refused, not
/// trimmed.
fn allowlist(field: &'static str, raw: Option<Vec<String>>, kind: Entry) -> Result<Vec<String>> {
    let raw = raw.unwrap_or_default();
    if raw.len() > MAX_ALLOWLIST {
        return Err(ServiceError::invalid(field, "at most 256 entries"));
    }
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for e in &raw {
        let plain = !e.is_empty()
            && e.len() <= 256
            && !e
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || c == ',');
        let (shaped, expected) = match kind {
            Entry::User | Entry::Org => (!e.contains('/'), "a name without \"/\""),
            Entry::Team => (
                e.split_once('/')
                    .is_some_and(|(o, t)| !o.is_empty() && !t.is_empty() && !t.contains('/')),
                "org/team",
            ),
            Entry::EmailDomain => (
                !e.contains('@') && e.contains('.'),
                "a domain such as example.com",
            ),
            Entry::Group => (true, "a group name"),
        };
        if !plain || !shaped {
            return Err(ServiceError::invalid(
                field,
                format!("{e:?} is not {expected} (no spaces or commas, at most 256 bytes)"),
            ));
        }
        let e = if kind == Entry::Group {
            e.to_owned()
        } else {
            e.to_lowercase()
        };
        if !out.contains(&e) {
            out.push(e);
        }
    }
    Ok(out)
}
