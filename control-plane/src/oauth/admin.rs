//! Admin operations on the OAuth server: identity providers, login rules, clients, sessions,
//! consents, key rotation and counters. Every one needs an admin API token.

use super::{
    ClientRecord, ConsentRecord, IdpInput, IdpKind, IdpRecord, IdpView, LoginRule, LoginRuleInput,
    Metrics, OAuthServer, TokenFamily, idp, keys, put,
};
use crate::auth::Caller;
use crate::error::ServiceError;
use crate::model::{now, validate};
use crate::store::{Batch, Check, Collection, StoreError, Write};

type Result<T> = std::result::Result<T, ServiceError>;

fn admin(caller: &Caller) -> Result<()> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(
            "OAuth administration needs an admin token".into(),
        ))
    }
}

fn http_url(field: &'static str, raw: &str) -> Result<String> {
    // Refused rather than stored as given when the parser would read it differently
    // (`http:///x`, line breaks): these URLs are joined into login redirects.
    let u = validate::canonical_url(field, raw)?;
    if u.scheme() != "https" && u.scheme() != "http" {
        return Err(ServiceError::invalid(field, "must be http(s)"));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(ServiceError::invalid(
            field,
            "must not have a query or fragment",
        ));
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

/// Adds an identity provider. The secret is sealed before it is stored.
pub async fn create_idp(server: &OAuthServer, caller: &Caller, input: IdpInput) -> Result<IdpView> {
    admin(caller)?;
    let record = build_idp(input, server.cp().master_key(), now())?;
    let name = record.name.clone();
    server
        .apply(Batch {
            checks: vec![Check::Absent(Collection::OAuthIdps, name.clone())],
            writes: vec![put(Collection::OAuthIdps, &name, &record)],
        })
        .await
        .map_err(|e| match e {
            StoreError::CheckFailed(_) => {
                ServiceError::already_exists(format!("identity provider {name:?} exists"))
            }
            e => e.into(),
        })?;
    Ok(IdpView::from(&record))
}

/// The provider `input` describes, validated, its secret sealed with `key`.
pub(crate) fn build_idp(
    input: IdpInput,
    key: &crate::secrets::MasterKey,
    now: i64,
) -> Result<IdpRecord> {
    let name = validate::ident("name", &input.name)?;
    if input.client_id.is_empty()
        || input.client_id.len() > 200
        || input
            .client_id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ServiceError::invalid(
            "client_id",
            "must be 1-200 characters, no spaces or control characters",
        ));
    }
    if input.client_secret.is_empty() || input.client_secret.len() > 500 {
        return Err(ServiceError::invalid(
            "client_secret",
            "must be 1-500 characters",
        ));
    }
    let (base_url, api_url, default_scopes) = match input.kind {
        IdpKind::Github => {
            let base = http_url(
                "base_url",
                input.base_url.as_deref().unwrap_or("https://github.com"),
            )?;
            let api = match input.api_url.as_deref() {
                Some(a) => http_url("api_url", a)?,
                None if base == "https://github.com" => "https://api.github.com".into(),
                None => format!("{base}/api/v3"),
            };
            (base, api, idp::GITHUB_SCOPES)
        }
        IdpKind::Oidc => {
            let issuer = input.base_url.as_deref().ok_or_else(|| {
                ServiceError::invalid("base_url", "the OIDC issuer URL is required")
            })?;
            if input.api_url.is_some() {
                return Err(ServiceError::invalid(
                    "api_url",
                    "only for GitHub providers",
                ));
            }
            (
                http_url("base_url", issuer)?,
                String::new(),
                idp::OIDC_SCOPES,
            )
        }
    };
    let scopes = input
        .scopes
        .unwrap_or_else(|| default_scopes.iter().map(|s| (*s).to_owned()).collect());
    if let Some(bad) = scopes
        .iter()
        .find(|s| s.is_empty() || s.contains(char::is_whitespace))
    {
        return Err(ServiceError::invalid(
            "scopes",
            format!("{bad:?} is not a scope token"),
        ));
    }
    let record = IdpRecord {
        name: name.clone(),
        kind: input.kind,
        client_id: input.client_id,
        client_secret_sealed: key.seal(input.client_secret.as_bytes()),
        base_url,
        api_url,
        scopes,
        created_at: now,
    };
    Ok(record)
}

/// Lists identity providers (no secrets).
pub async fn list_idps(server: &OAuthServer, caller: &Caller) -> Result<Vec<IdpView>> {
    admin(caller)?;
    let all: Vec<IdpRecord> = server.list(Collection::OAuthIdps).await?;
    Ok(all.iter().map(IdpView::from).collect())
}

/// Removes an identity provider.
pub async fn delete_idp(server: &OAuthServer, caller: &Caller, name: &str) -> Result<()> {
    admin(caller)?;
    delete_one(server, Collection::OAuthIdps, "identity provider", name).await
}

async fn delete_one(
    server: &OAuthServer,
    c: Collection,
    kind: &'static str,
    key: &str,
) -> Result<()> {
    server
        .apply(Batch {
            checks: vec![Check::Present(c, key.to_owned())],
            writes: vec![Write::Delete(c, key.to_owned())],
        })
        .await
        .map_err(|e| match e {
            StoreError::CheckFailed(_) => ServiceError::not_found(kind, key),
            e => e.into(),
        })?;
    Ok(())
}

/// Adds a login rule.
pub async fn create_rule(
    server: &OAuthServer,
    caller: &Caller,
    input: LoginRuleInput,
) -> Result<LoginRule> {
    admin(caller)?;
    let id = format!("rule_{}", &super::random_token()[..12]);
    let rule = build_rule(id.clone(), input, now())?;
    server
        .apply(Batch {
            checks: vec![Check::Absent(Collection::OAuthRules, id.clone())],
            writes: vec![put(Collection::OAuthRules, &id, &rule)],
        })
        .await?;
    Ok(rule)
}

/// The login rule `input` describes under `id`, validated.
pub(crate) fn build_rule(id: String, input: LoginRuleInput, now: i64) -> Result<LoginRule> {
    validate::ident("id", &id)?;
    if input.users.is_empty() && input.groups.is_empty() && input.email_domains.is_empty() {
        return Err(ServiceError::invalid(
            "users",
            "a rule needs at least one of users (or \"*\"), groups, email_domains",
        ));
    }
    let proxy_hostname = match input.proxy_hostname.as_deref() {
        Some(h) => Some(validate::hostname("proxy_hostname", h)?),
        None => None,
    };
    for (field, list) in [
        ("users", &input.users),
        ("groups", &input.groups),
        ("email_domains", &input.email_domains),
        ("scopes", &input.scopes),
    ] {
        if let Some(bad) = list
            .iter()
            .find(|s| s.is_empty() || s.len() > 200 || s.contains(char::is_whitespace))
        {
            return Err(ServiceError::invalid(
                field,
                format!("{bad:?}: entries are non-empty, without spaces, at most 200 characters"),
            ));
        }
    }
    let rule = LoginRule {
        id,
        proxy_hostname,
        idp: input.idp,
        users: input.users,
        groups: input.groups,
        email_domains: input
            .email_domains
            .iter()
            .map(|d| d.to_ascii_lowercase())
            .collect(),
        scopes: input.scopes,
        created_at: now,
    };
    Ok(rule)
}

/// Lists login rules.
pub async fn list_rules(server: &OAuthServer, caller: &Caller) -> Result<Vec<LoginRule>> {
    admin(caller)?;
    Ok(server.list(Collection::OAuthRules).await?)
}

/// Removes a login rule.
pub async fn delete_rule(server: &OAuthServer, caller: &Caller, id: &str) -> Result<()> {
    admin(caller)?;
    delete_one(server, Collection::OAuthRules, "login rule", id).await
}

/// Sets the description users read for `scope` on the consent page (replacing a default).
pub async fn set_scope_description(
    server: &OAuthServer,
    caller: &Caller,
    scope: &str,
    description: &str,
) -> Result<super::scopes::ScopeView> {
    admin(caller)?;
    super::scopes::valid_scope(scope).map_err(|why| ServiceError::invalid("scope", why))?;
    super::scopes::valid_description(description)
        .map_err(|why| ServiceError::invalid("description", why))?;
    let record = super::scopes::ScopeDescription {
        scope: scope.to_owned(),
        description: description.to_owned(),
        updated_at: now(),
    };
    server
        .apply(Batch {
            checks: vec![],
            writes: vec![put(Collection::OAuthScopes, scope, &record)],
        })
        .await?;
    Ok(super::scopes::ScopeView {
        scope: record.scope,
        description: Some(record.description),
        source: "custom",
    })
}

/// Lists every known scope with its description (custom, default or none).
pub async fn list_scopes(
    server: &OAuthServer,
    caller: &Caller,
) -> Result<Vec<super::scopes::ScopeView>> {
    admin(caller)?;
    let rules: Vec<LoginRule> = server.list(Collection::OAuthRules).await?;
    let custom: Vec<super::scopes::ScopeDescription> = server.list(Collection::OAuthScopes).await?;
    let rule_scopes: Vec<String> = rules.into_iter().flat_map(|r| r.scopes).collect();
    Ok(super::scopes::views(&rule_scopes, &custom))
}

/// Removes a custom description (a built-in scope's default applies again).
pub async fn delete_scope_description(
    server: &OAuthServer,
    caller: &Caller,
    scope: &str,
) -> Result<()> {
    admin(caller)?;
    delete_one(server, Collection::OAuthScopes, "scope description", scope).await
}

/// Client as the admin API shows it (no secret hashes).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ClientView {
    /// Id.
    pub client_id: String,
    /// Name.
    pub client_name: Option<String>,
    /// Redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Auth method.
    pub token_endpoint_auth_method: String,
    /// Grants.
    pub grant_types: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Registered by an admin (`POST /api/v1/oauth/clients`, `oauth client register`), not
    /// self-registered through `/register`.
    pub admin_registered: bool,
}

/// Lists registered clients.
pub async fn list_clients(server: &OAuthServer, caller: &Caller) -> Result<Vec<ClientView>> {
    admin(caller)?;
    let all: Vec<ClientRecord> = server.list(Collection::OAuthClients).await?;
    Ok(all
        .into_iter()
        .map(|c| ClientView {
            client_id: c.client_id,
            client_name: c.client_name,
            redirect_uris: c.redirect_uris,
            token_endpoint_auth_method: c.token_endpoint_auth_method.as_str().into(),
            grant_types: c.grant_types,
            created_at: c.created_at,
            admin_registered: c.admin_registered,
        })
        .collect())
}

/// Deletes a client and revokes its tokens.
pub async fn delete_client(server: &OAuthServer, caller: &Caller, id: &str) -> Result<()> {
    admin(caller)?;
    if server
        .get::<ClientRecord>(Collection::OAuthClients, id)
        .await?
        .is_none()
    {
        return Err(ServiceError::not_found("client", id));
    }
    super::clients::delete(server, id, None)
        .await
        .map_err(|e| ServiceError::Unprocessable(e.to_string()))
}

/// A login session (refresh family) as the admin API shows it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SessionView {
    /// Family id (revoke with it).
    pub id: String,
    /// Client.
    pub client_id: String,
    /// User.
    pub sub: String,
    /// Login.
    pub login: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Audiences.
    pub resources: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub refresh_expires_at: i64,
}

/// Lists live sessions.
pub async fn list_sessions(server: &OAuthServer, caller: &Caller) -> Result<Vec<SessionView>> {
    admin(caller)?;
    let all: Vec<TokenFamily> = server.list(Collection::OAuthFamilies).await?;
    Ok(all
        .into_iter()
        .map(|f| SessionView {
            id: f.id,
            client_id: f.client_id,
            sub: f.identity.sub,
            login: f.identity.login,
            scopes: f.scopes,
            resources: f.resources,
            created_at: f.created_at,
            refresh_expires_at: f.refresh_expires_at,
        })
        .collect())
}

/// Revokes a session and the access tokens it issued.
pub async fn revoke_session(server: &OAuthServer, caller: &Caller, id: &str) -> Result<()> {
    admin(caller)?;
    if server
        .get::<TokenFamily>(Collection::OAuthFamilies, id)
        .await?
        .is_none()
    {
        return Err(ServiceError::not_found("session", id));
    }
    super::revocation::revoke_family(server, id)
        .await
        .map_err(|e| ServiceError::Unprocessable(e.to_string()))
}

/// Signs user `sub` out everywhere: every session ends and every access token issued to
/// them so far stops working at every data plane (one revocation entry in the snapshot).
/// Logging in again afterwards works; to keep someone out, change the login rules.
pub async fn revoke_user(server: &OAuthServer, caller: &Caller, sub: &str) -> Result<()> {
    admin(caller)?;
    subject("sub", sub)?;
    super::revocation::revoke_all_of(server, super::RevokedKind::Subject, sub)
        .await
        .map_err(|e| ServiceError::Unprocessable(e.to_string()))
}

/// Checks a user's subject as given: refused, never trimmed (a padded subject names no
/// user, and revoking it would quietly revoke nothing).
fn subject<'a>(field: &'static str, sub: &'a str) -> Result<&'a str> {
    if sub.is_empty() || sub.len() > 512 || sub.trim() != sub || sub.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            field,
            "must be a user's subject (1-512 characters, no surrounding spaces, no control \
             characters)",
        ));
    }
    Ok(sub)
}

/// Lists remembered consents.
pub async fn list_consents(server: &OAuthServer, caller: &Caller) -> Result<Vec<ConsentRecord>> {
    admin(caller)?;
    Ok(server.list(Collection::OAuthConsents).await?)
}

/// Forgets a user's consents for a client, at every resource: the user is asked again
/// next time.
pub async fn revoke_consent(
    server: &OAuthServer,
    caller: &Caller,
    sub: &str,
    client_id: &str,
) -> Result<()> {
    admin(caller)?;
    let mut writes = Vec::new();
    for (key, raw) in server.cp().store().list(Collection::OAuthConsents).await? {
        let c: ConsentRecord = super::decode(Collection::OAuthConsents, &key, &raw)?;
        if c.sub == sub && c.client_id == client_id {
            writes.push(Write::Delete(Collection::OAuthConsents, key));
        }
    }
    if writes.is_empty() {
        return Err(ServiceError::not_found(
            "consent",
            format!("{sub} for {client_id}"),
        ));
    }
    server
        .apply(Batch {
            checks: vec![],
            writes,
        })
        .await?;
    Ok(())
}

/// Rotates the signing key; returns once the new key signs (see [`keys::rotate`]).
pub async fn rotate_keys(server: &OAuthServer, caller: &Caller) -> Result<String> {
    admin(caller)?;
    keys::rotate(server)
        .await
        .map_err(|e| ServiceError::Unprocessable(e.to_string()))
}

/// Token counters and live totals.
pub async fn metrics(server: &OAuthServer, caller: &Caller) -> Result<Metrics> {
    admin(caller)?;
    use std::sync::atomic::Ordering::Relaxed;
    let c = server.counters();
    Ok(Metrics {
        issued: c.issued.load(Relaxed),
        refreshed: c.refreshed.load(Relaxed),
        revoked: c.revoked.load(Relaxed),
        clients: server
            .cp()
            .store()
            .list(Collection::OAuthClients)
            .await?
            .len(),
        sessions: server
            .cp()
            .store()
            .list(Collection::OAuthFamilies)
            .await?
            .len(),
    })
}

/// Registers a client on behalf of an admin (same validation as `/register`).
pub async fn register_client(
    server: &OAuthServer,
    caller: &Caller,
    m: super::clients::ClientMetadata,
) -> Result<super::clients::RegistrationResponse> {
    admin(caller)?;
    // An admin registration bypasses the initial-access-token gate on purpose.
    super::clients::register_unchecked(server, m, true)
        .await
        .map_err(|e| ServiceError::invalid(metadata_field(&e), e.to_string()))
}

/// The metadata field a registration error is about (`redirect_uris` for a bad redirect,
/// else the `field:` its description starts with), so a form can show it next to that field.
fn metadata_field(e: &super::OAuthError) -> &'static str {
    const FIELDS: &[&str] = &[
        "redirect_uris",
        "grant_types",
        "token_endpoint_auth_method",
        "client_name",
        "client_uri",
        "scope",
        "client_id",
    ];
    if e.code == super::ErrorCode::InvalidRedirectUri {
        return "redirect_uris";
    }
    FIELDS
        .iter()
        .find(|f| {
            e.description
                .strip_prefix(**f)
                .is_some_and(|rest| rest.starts_with(':'))
        })
        .copied()
        .unwrap_or("client metadata")
}

/// What `oauth setup` did.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SetupResult {
    /// The proxy that now carries the OAuth endpoints.
    pub proxy: crate::model::Proxy,
    /// The running issuer.
    pub issuer: String,
    /// Set when the issuer is not `https://{hostname}`.
    pub warning: Option<String>,
}

/// Creates the proxy that publishes the OAuth endpoints at `hostname` (HTTPS on), targeting
/// this control plane's HTTP listener.
pub async fn setup(
    server: &OAuthServer,
    caller: &Caller,
    hostname: &str,
    target_url: Option<&str>,
) -> Result<SetupResult> {
    admin(caller)?;
    let target = match target_url.filter(|t| !t.is_empty()) {
        Some(t) => t.to_owned(),
        None => server.settings().local_url.clone(),
    };
    if target.is_empty() {
        return Err(ServiceError::invalid(
            "target_url",
            "give the URL where data planes reach this control plane's HTTP listener",
        ));
    }
    let proxy = server
        .cp()
        .create_proxy(
            caller,
            crate::model::ProxyInput {
                hostname: hostname.to_owned(),
                target_url: target,
                enable_https: Some(true),
                ..Default::default()
            },
        )
        .await?;
    let expected = format!("https://{}", proxy.hostname);
    let warning = (server.issuer() != expected).then(|| {
        format!(
            "the running issuer is {}; restart the control plane with --oauth-issuer {expected} so tokens name this host",
            server.issuer()
        )
    });
    Ok(SetupResult {
        proxy,
        issuer: server.issuer().to_owned(),
        warning,
    })
}

/// Metadata fields that point clients at endpoints; overriding them per proxy would let a
/// proxy owner send clients (and their codes) elsewhere, so they are refused.
const PROTECTED_METADATA: &[&str] = &[
    "authorization_endpoint",
    "token_endpoint",
    "jwks_uri",
    "registration_endpoint",
    "revocation_endpoint",
    "introspection_endpoint",
    "userinfo_endpoint",
];

pub(crate) fn validate_metadata_overrides(
    m: &serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    if serde_json::to_vec(m).map(|v| v.len()).unwrap_or(usize::MAX) > 16 * 1024 {
        return Err(ServiceError::invalid("metadata", "at most 16 KiB"));
    }
    for (k, v) in m {
        if PROTECTED_METADATA.contains(&k.as_str()) {
            return Err(ServiceError::invalid(
                "metadata",
                format!("{k} cannot be overridden per proxy"),
            ));
        }
        let string_list = || {
            v.as_array()
                .is_some_and(|a| a.iter().all(serde_json::Value::is_string))
        };
        match k.as_str() {
            "issuer" => {
                let ok = v.as_str().is_some_and(|s| {
                    url::Url::parse(s).is_ok_and(|u| u.scheme() == "https" || u.scheme() == "http")
                });
                if !ok {
                    return Err(ServiceError::invalid(
                        "metadata",
                        "issuer must be an http(s) URL",
                    ));
                }
            }
            "code_challenge_methods_supported" if v != &serde_json::json!(["S256"]) => {
                return Err(ServiceError::invalid(
                    "metadata",
                    "PKCE with S256 is always required; code_challenge_methods_supported can only be [\"S256\"]",
                ));
            }
            "scopes_supported"
            | "grant_types_supported"
            | "response_types_supported"
            | "token_endpoint_auth_methods_supported"
            | "claims_supported"
                if !string_list() =>
            {
                return Err(ServiceError::invalid(
                    "metadata",
                    format!("{k} must be a list of strings"),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Sets a proxy's OAuth settings (admin or the proxy's owner).
pub async fn set_proxy_settings(
    server: &OAuthServer,
    caller: &Caller,
    hostname: &str,
    input: super::ProxyOAuthInput,
) -> Result<super::ProxyOAuthView> {
    let hostname = validate::hostname("hostname", hostname)?;
    let proxy = server.cp().get_proxy(caller, &hostname).await?;
    if !caller.may_modify(&proxy.owner_token_id) {
        return Err(ServiceError::Forbidden(format!(
            "proxy {hostname:?} belongs to another token"
        )));
    }
    let existing = server
        .get::<super::ProxyOAuthSettings>(Collection::OAuthProxySettings, &hostname)
        .await?;
    let (mut s, check) = match existing {
        Some((s, raw)) => (
            s,
            Check::Equals(Collection::OAuthProxySettings, hostname.clone(), raw),
        ),
        None => (
            super::ProxyOAuthSettings {
                hostname: hostname.clone(),
                idps: vec![],
                github_client_id: None,
                github_client_secret_sealed: None,
                metadata: Default::default(),
                updated_at: 0,
            },
            Check::Absent(Collection::OAuthProxySettings, hostname.clone()),
        ),
    };
    if let Some(idps) = input.idps {
        let known: Vec<IdpRecord> = server.list(Collection::OAuthIdps).await?;
        if let Some(bad) = idps.iter().find(|i| !known.iter().any(|k| &k.name == *i)) {
            return Err(ServiceError::invalid(
                "idps",
                format!("no identity provider named {bad:?}"),
            ));
        }
        s.idps = idps;
    }
    match (input.github_client_id, input.github_client_secret) {
        (Some(id), _) if id.is_empty() => {
            s.github_client_id = None;
            s.github_client_secret_sealed = None;
        }
        (Some(id), Some(secret)) if !secret.is_empty() => {
            if id.len() > 200 || secret.len() > 500 {
                return Err(ServiceError::invalid("github_client_id", "too long"));
            }
            s.github_client_id = Some(id);
            s.github_client_secret_sealed = Some(server.cp().master_key().seal(secret.as_bytes()));
        }
        (Some(_), _) => {
            return Err(ServiceError::invalid(
                "github_client_secret",
                "required together with github_client_id",
            ));
        }
        (None, Some(_)) => {
            return Err(ServiceError::invalid(
                "github_client_id",
                "required together with github_client_secret",
            ));
        }
        (None, None) => {}
    }
    if let Some(m) = input.metadata {
        validate_metadata_overrides(&m)?;
        s.metadata = m;
    }
    s.updated_at = now();
    server
        .apply(Batch {
            checks: vec![check],
            writes: vec![put(Collection::OAuthProxySettings, &hostname, &s)],
        })
        .await
        .map_err(|e| match e {
            StoreError::CheckFailed(_) => ServiceError::concurrent("changed concurrently; retry"),
            e => e.into(),
        })?;
    Ok((&s).into())
}

/// A proxy's OAuth settings (defaults when none were set).
pub async fn get_proxy_settings(
    server: &OAuthServer,
    caller: &Caller,
    hostname: &str,
) -> Result<super::ProxyOAuthView> {
    let proxy = server.cp().get_proxy(caller, hostname).await?;
    Ok(
        match server
            .get::<super::ProxyOAuthSettings>(Collection::OAuthProxySettings, &proxy.hostname)
            .await?
        {
            Some((s, _)) => (&s).into(),
            None => super::ProxyOAuthView {
                hostname: proxy.hostname,
                idps: vec![],
                github_client_id: None,
                metadata: Default::default(),
                updated_at: 0,
            },
        },
    )
}

/// Removes a proxy's OAuth settings.
pub async fn clear_proxy_settings(
    server: &OAuthServer,
    caller: &Caller,
    hostname: &str,
) -> Result<()> {
    let proxy = server.cp().get_proxy(caller, hostname).await?;
    if !caller.may_modify(&proxy.owner_token_id) {
        return Err(ServiceError::Forbidden(format!(
            "proxy {hostname:?} belongs to another token"
        )));
    }
    server
        .apply(Batch {
            checks: vec![],
            writes: vec![Write::Delete(
                Collection::OAuthProxySettings,
                proxy.hostname,
            )],
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_refused_not_trimmed() {
        assert_eq!(subject("sub", "github:42").ok(), Some("github:42"));
        for bad in ["", " github:42", "github:42 ", "a\nb", &"x".repeat(513)] {
            let err = subject("sub", bad).expect_err(bad);
            assert!(err.to_string().contains("sub"), "{err}");
        }
    }

    #[test]
    fn provider_urls_are_stored_as_given_or_refused() {
        assert_eq!(
            http_url("base_url", "https://ghe.example/").ok().as_deref(),
            Some("https://ghe.example")
        );
        for bad in [
            "https:///ghe.example",
            "https://ghe.example/\r\nx",
            " https://ghe.example",
            "ftp://ghe.example",
            "https://ghe.example/?q",
        ] {
            let err = http_url("base_url", bad).map_err(|e| e.to_string());
            assert!(
                err.as_ref().is_err_and(|e| e.contains("base_url")),
                "{bad:?}: {err:?}"
            );
        }
    }

    mod stored {
        //! The operations over a real embedded store, with a manual clock.

        use super::super::*;
        use crate::model::TokenScope;
        use crate::oauth::{Identity, ManualClock, OAuthSettings, RevokedKind, RevokedToken};
        use crate::service::ControlPlane;
        use crate::store::Store;

        const T0: i64 = 1_800_000_000;

        fn caller(scope: TokenScope) -> Caller {
            Caller {
                token_id: "tok_x".into(),
                scope,
            }
        }

        async fn server() -> (OAuthServer, ManualClock, tempfile::TempDir) {
            let dir = tempfile::tempdir().unwrap();
            let cp = ControlPlane::new(Store::open_embedded(dir.path()).unwrap())
                .await
                .unwrap();
            let clock = ManualClock::new(T0);
            let server =
                OAuthServer::with_clock(cp, OAuthSettings::default(), clock.clone().into())
                    .unwrap();
            (server, clock, dir)
        }

        async fn family(server: &OAuthServer, id: &str, sub: &str, tokens: &[(&str, i64)]) {
            let f = TokenFamily {
                id: id.into(),
                client_id: "app".into(),
                identity: Identity {
                    idp: "github".into(),
                    sub: sub.into(),
                    login: sub.into(),
                    email: None,
                    name: None,
                    groups: vec![],
                },
                scopes: vec![],
                resources: vec![],
                auth_time: T0,
                current_refresh_sha256: String::new(),
                access_tokens: tokens.iter().map(|(j, e)| ((*j).to_owned(), *e)).collect(),
                absolute_expires_at: T0 + 86400,
                refresh_expires_at: T0 + 86400,
                created_at: T0,
            };
            server
                .apply(Batch {
                    checks: vec![],
                    writes: vec![put(Collection::OAuthFamilies, id, &f)],
                })
                .await
                .unwrap();
        }

        async fn revoked(server: &OAuthServer, key: &str) -> Option<RevokedToken> {
            server
                .get::<RevokedToken>(Collection::OAuthRevocations, key)
                .await
                .unwrap()
                .map(|(r, _)| r)
        }

        async fn sessions(server: &OAuthServer) -> Vec<String> {
            let mut ids: Vec<String> = list_sessions(server, &caller(TokenScope::Admin))
                .await
                .unwrap()
                .into_iter()
                .map(|s| s.id)
                .collect();
            ids.sort();
            ids
        }

        #[tokio::test]
        async fn every_operation_needs_an_admin() {
            let (server, _clock, _dir) = server().await;
            family(&server, "f1", "github:1", &[]).await;
            for scope in [TokenScope::User, TokenScope::Dataplane] {
                let c = caller(scope);
                let forbidden = |r: Result<()>| matches!(r, Err(ServiceError::Forbidden(_)));
                assert!(forbidden(list_idps(&server, &c).await.map(drop)));
                assert!(forbidden(list_rules(&server, &c).await.map(drop)));
                assert!(forbidden(list_clients(&server, &c).await.map(drop)));
                assert!(forbidden(list_sessions(&server, &c).await.map(drop)));
                assert!(forbidden(list_consents(&server, &c).await.map(drop)));
                assert!(forbidden(metrics(&server, &c).await.map(drop)));
                assert!(forbidden(rotate_keys(&server, &c).await.map(drop)));
                assert!(forbidden(revoke_session(&server, &c, "f1").await));
                assert!(forbidden(revoke_user(&server, &c, "github:1").await));
            }
            // Nothing was revoked on their behalf.
            assert_eq!(sessions(&server).await, ["f1"]);
        }

        #[tokio::test]
        async fn revoking_a_session_revokes_its_live_access_tokens_only() {
            let (server, _clock, _dir) = server().await;
            family(
                &server,
                "f1",
                "github:1",
                &[("live", T0 + 60), ("dead", T0 - 1)],
            )
            .await;
            family(&server, "f2", "github:1", &[("other", T0 + 60)]).await;
            let admin_caller = caller(TokenScope::Admin);
            revoke_session(&server, &admin_caller, "f1").await.unwrap();
            assert_eq!(sessions(&server).await, ["f2"]);
            let live = revoked(&server, "live").await.expect("live token revoked");
            assert_eq!(live.expires_at, T0 + 60);
            assert!(revoked(&server, "dead").await.is_none());
            assert!(revoked(&server, "other").await.is_none());
            assert!(matches!(
                revoke_session(&server, &admin_caller, "f1").await,
                Err(ServiceError::NotFound { .. })
            ));
        }

        #[tokio::test]
        async fn revoking_a_user_ends_their_sessions_with_one_cutoff_by_the_clock() {
            let (server, clock, _dir) = server().await;
            family(&server, "a1", "github:1", &[("a-token", T0 + 60)]).await;
            family(&server, "a2", "github:1", &[]).await;
            family(&server, "b1", "github:2", &[]).await;
            clock.advance(10);
            let admin_caller = caller(TokenScope::Admin);
            assert!(matches!(
                revoke_user(&server, &admin_caller, " github:1").await,
                Err(ServiceError::Invalid { .. })
            ));
            assert_eq!(sessions(&server).await, ["a1", "a2", "b1"]);
            revoke_user(&server, &admin_caller, "github:1")
                .await
                .unwrap();
            assert_eq!(sessions(&server).await, ["b1"]);
            let key = format!("{}:github:1", RevokedKind::Subject.as_str());
            let entry = revoked(&server, &key).await.expect("one subject entry");
            assert_eq!(entry.issued_before, T0 + 10);
            // Kept as long as a token issued up to the cut-off can live (ttl + leeway).
            let ttl = OAuthSettings::default().access_ttl.as_secs() as i64;
            assert_eq!(entry.expires_at, T0 + 10 + ttl + 5);
            // One entry, not one per token.
            assert!(revoked(&server, "a-token").await.is_none());
            let m = metrics(&server, &admin_caller).await.unwrap();
            assert_eq!((m.revoked, m.sessions), (1, 1));
        }
    }
}
