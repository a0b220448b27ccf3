//! Per-proxy allowlists: who, among users with a valid token, may use the proxy.
//!
//! Decided locally from the token's claims (the authorization server copies the
//! identity provider's `login`, verified `email` and `groups` into every access token;
//! GitHub orgs appear as `org`, teams as `org/team`). An empty allowlist admits every
//! valid token; otherwise one matching entry of any kind suffices. GitHub names are
//! case-insensitive, OIDC groups are compared exactly.

use super::invalid;
use super::verify::Claims;
use crate::spec::InvalidField;

/// Compiled allowlist of one proxy; entries are pre-lowercased where matching ignores
/// case, so a request only compares.
#[derive(Clone, Debug, Default)]
pub(crate) struct Allowlist {
    users: Box<[Box<str>]>,
    orgs: Box<[Box<str>]>,
    teams: Box<[Box<str>]>,
    email_domains: Box<[Box<str>]>,
    groups: Box<[Box<str>]>,
}

// === impl Allowlist ===

impl Allowlist {
    /// Validates the wire lists. Errors name the wire field.
    pub(crate) fn from_proto(
        p: &portcullis_proto::v1::ProxyAuthPolicy,
    ) -> Result<Self, InvalidField> {
        Ok(Self {
            users: entries("auth.allowed_users", &p.allowed_users, true, |e| {
                !e.contains('/')
            })?,
            orgs: entries("auth.allowed_orgs", &p.allowed_orgs, true, |e| {
                !e.contains('/')
            })?,
            teams: entries("auth.allowed_teams", &p.allowed_teams, true, |e| {
                e.split_once('/')
                    .is_some_and(|(o, t)| !o.is_empty() && !t.is_empty() && !t.contains('/'))
            })?,
            email_domains: entries(
                "auth.allowed_email_domains",
                &p.allowed_email_domains,
                true,
                |e| !e.contains('@') && e.contains('.'),
            )?,
            groups: entries("auth.allowed_groups", &p.allowed_groups, false, |_| true)?,
        })
    }

    /// Whether no list is set (every valid token is admitted).
    pub(crate) fn is_empty(&self) -> bool {
        self.users.is_empty()
            && self.orgs.is_empty()
            && self.teams.is_empty()
            && self.email_domains.is_empty()
            && self.groups.is_empty()
    }

    /// Whether the verified `claims` match an entry (always true when empty).
    pub(crate) fn permits(&self, claims: &Claims) -> bool {
        if self.is_empty() {
            return true;
        }
        let ci = |list: &[Box<str>], value: &str| {
            !value.is_empty() && list.iter().any(|e| e.eq_ignore_ascii_case(value))
        };
        if ci(&self.users, &claims.login) {
            return true;
        }
        if let Some((_, domain)) = claims.email.rsplit_once('@')
            && ci(&self.email_domains, domain)
        {
            return true;
        }
        claims.groups.iter().any(|g| {
            let listed = if g.contains('/') {
                &self.teams
            } else {
                &self.orgs
            };
            ci(listed, g) || self.groups.iter().any(|e| **e == **g)
        })
    }
}

/// Trims, validates (printable, no spaces or commas, at most 256 bytes, plus `shape`),
/// deduplicates and, when `fold`, lowercases each entry.
fn entries(
    field: &'static str,
    raw: &[String],
    fold: bool,
    shape: impl Fn(&str) -> bool,
) -> Result<Box<[Box<str>]>, InvalidField> {
    let mut out: Vec<Box<str>> = Vec::with_capacity(raw.len());
    for e in raw {
        let e = e.trim();
        let ok = !e.is_empty()
            && e.len() <= 256
            && !e
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || c == ',')
            && shape(e);
        if !ok {
            return Err(invalid(field, format!("{e:?} is not a valid entry")));
        }
        let e: Box<str> = if fold {
            e.to_lowercase().into()
        } else {
            e.into()
        };
        if !out.contains(&e) {
            out.push(e);
        }
    }
    Ok(out.into())
}
