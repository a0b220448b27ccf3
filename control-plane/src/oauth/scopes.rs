//! What each scope means, in words a user reads on the consent page. Built-in scopes have
//! default descriptions; an admin may set a description for any scope (replacing a
//! default) and delete it again (the default, if any, comes back). Descriptions are not
//! config: data planes never see them, so setting one bumps no snapshot version.
//!
//! Cost: the consent page reads the few description records once per page (one `list`).

use serde::{Deserialize, Serialize};

use super::OAuthServer;
use crate::store::{Collection, StoreError};

/// Longest description accepted.
pub const MAX_DESCRIPTION: usize = 200;
/// Longest scope name accepted (login rules allow the same).
pub const MAX_SCOPE: usize = 200;

/// Descriptions of the scopes this server knows without configuration.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("openid", "Confirm who you are (your account identifier)"),
    ("profile", "See your name and login"),
    ("email", "See your e-mail address"),
    (
        "offline_access",
        "Stay connected when you are away (a long-lived refresh token)",
    ),
    ("mcp", "Use this MCP server's tools and data on your behalf"),
    (
        "admin",
        "Administer Portcullis: every proxy, certificate, token and setting",
    ),
    ("user", "Manage your own proxies and routes in Portcullis"),
];

/// A description an admin set, stored by scope name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScopeDescription {
    /// The scope.
    pub scope: String,
    /// What granting it allows, in words for users.
    pub description: String,
    /// Unix seconds of the last change.
    pub updated_at: i64,
}

/// A scope as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ScopeView {
    /// The scope.
    pub scope: String,
    /// Its description; `None` when neither an admin nor a default gives one.
    pub description: Option<String>,
    /// `custom` (set by an admin), `default` (built in) or `none`.
    pub source: &'static str,
}

/// The built-in description of `scope`, if any.
pub fn default_description(scope: &str) -> Option<&'static str> {
    DEFAULTS.iter().find(|(s, _)| *s == scope).map(|(_, d)| *d)
}

/// Checks a scope name: a scope token (RFC 6749 §3.3 NQCHAR, no space).
pub fn valid_scope(s: &str) -> Result<(), &'static str> {
    if s.is_empty() || s.len() > MAX_SCOPE {
        return Err("must be 1-200 characters");
    }
    if !s
        .bytes()
        .all(|b| (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        return Err("must be printable ASCII without spaces, quotes or backslashes");
    }
    Ok(())
}

/// Checks a description: stored as given or refused.
pub fn valid_description(d: &str) -> Result<(), &'static str> {
    if d.is_empty() || d.chars().count() > MAX_DESCRIPTION {
        return Err("must be 1-200 characters");
    }
    if d.trim() != d {
        return Err("must not start or end with spaces");
    }
    if d.chars().any(char::is_control) {
        return Err("must not contain control characters (line breaks, tabs)");
    }
    Ok(())
}

/// The description of each of `scopes` (custom, else default, else `None`), in order.
pub async fn describe(
    server: &OAuthServer,
    scopes: &[String],
) -> Result<Vec<(String, Option<String>)>, StoreError> {
    let custom: Vec<ScopeDescription> = if scopes.is_empty() {
        vec![]
    } else {
        server.list(Collection::OAuthScopes).await?
    };
    Ok(scopes
        .iter()
        .map(|s| {
            let d = custom
                .iter()
                .find(|c| &c.scope == s)
                .map(|c| c.description.clone())
                .or_else(|| default_description(s).map(str::to_owned));
            (s.clone(), d)
        })
        .collect())
}

/// Every scope worth describing: the built-in ones, those login rules grant and those with
/// a custom description, sorted by name.
pub fn views(rule_scopes: &[String], custom: &[ScopeDescription]) -> Vec<ScopeView> {
    let mut names: Vec<&str> = DEFAULTS.iter().map(|(s, _)| *s).collect();
    names.extend(super::BASE_SCOPES);
    names.extend(rule_scopes.iter().map(String::as_str));
    names.extend(custom.iter().map(|c| c.scope.as_str()));
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .map(|s| match custom.iter().find(|c| c.scope == s) {
            Some(c) => ScopeView {
                scope: s.to_owned(),
                description: Some(c.description.clone()),
                source: "custom",
            },
            None => match default_description(s) {
                Some(d) => ScopeView {
                    scope: s.to_owned(),
                    description: Some(d.to_owned()),
                    source: "default",
                },
                None => ScopeView {
                    scope: s.to_owned(),
                    description: None,
                    source: "none",
                },
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_base_scope_has_a_default() {
        for s in super::super::BASE_SCOPES {
            assert!(default_description(s).is_some(), "{s}");
        }
        for (_, d) in DEFAULTS {
            assert_eq!(valid_description(d), Ok(()), "{d}");
        }
    }

    #[test]
    fn names_and_descriptions_are_checked() {
        assert!(valid_scope("mcp:read").is_ok());
        for bad in ["", "a b", "a\"b", "a\\b", "é", &"x".repeat(201)] {
            assert!(valid_scope(bad).is_err(), "{bad:?}");
        }
        assert!(valid_description("Read your files").is_ok());
        for bad in ["", " lead", "trail ", "two\nlines", &"x".repeat(201)] {
            assert!(valid_description(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn custom_descriptions_replace_defaults_and_rule_scopes_are_listed() {
        let custom = vec![ScopeDescription {
            scope: "mcp".into(),
            description: "Talk to the robot".into(),
            updated_at: 1,
        }];
        let v = views(&["files:read".into()], &custom);
        let get = |s: &str| v.iter().find(|x| x.scope == s).unwrap().clone();
        assert_eq!(get("mcp").description.as_deref(), Some("Talk to the robot"));
        assert_eq!(get("mcp").source, "custom");
        assert_eq!(get("email").source, "default");
        assert_eq!(get("files:read").source, "none");
        let names: Vec<&str> = v.iter().map(|x| x.scope.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
    }
}
