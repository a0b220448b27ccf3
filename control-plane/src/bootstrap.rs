//! What a fresh store starts with: the first admin token (generated, or the operator's own),
//! and the seed's `.env` resources — a GitHub identity provider (`GITHUB_CLIENT_ID` /
//! `GITHUB_CLIENT_SECRET`) and the login rule for `OAUTH_ALLOWED_GITHUB_USERS`.
//!
//! Applied once: by the control plane whose first admin token took the store's bootstrap
//! marker (one of several starting at once on a Redis). On a store that has tokens these
//! settings are ignored with a warning; a later change goes through the API like any other.

use anyhow::Context as _;

use crate::auth::Caller;
use crate::model::{CreatedToken, TokenScope};
use crate::oauth::OAuthServer;
use crate::oauth::admin;
use crate::oauth::model::{IdpInput, IdpKind, LoginRuleInput};
use crate::service::ControlPlane;

/// Name of the identity provider created from `GITHUB_CLIENT_ID`.
pub const GITHUB_IDP: &str = "github";
/// Scopes the `OAUTH_ALLOWED_GITHUB_USERS` rule grants: the seed's MCP scopes.
pub const SEED_SCOPES: [&str; 2] = ["mcp:read", "mcp:write"];

/// First-start settings (`--admin-token`, `--github-client-id`, … and the seed's names).
#[derive(Debug, Clone, Default)]
pub struct Bootstrap {
    /// The first admin token's secret; `None` generates one and prints it once.
    pub admin_token: Option<String>,
    /// A GitHub OAuth app for logins.
    pub github: Option<GithubApp>,
    /// GitHub logins allowed to sign in (`*` = everyone GitHub vouches for).
    pub allowed_github_users: Vec<String>,
    /// A declarative document applied when the store holds no resources (`--bootstrap`).
    pub file: Option<std::path::PathBuf>,
}

/// A GitHub OAuth app's credentials.
#[derive(Clone)]
pub struct GithubApp {
    /// Client id.
    pub client_id: String,
    /// Client secret (sealed when stored).
    pub client_secret: String,
}

impl std::fmt::Debug for GithubApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubApp")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl Bootstrap {
    /// Checks what can be checked before anything is written.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !self.allowed_github_users.is_empty() && self.github.is_none() {
            anyhow::bail!(
                "--allowed-github-users (OAUTH_ALLOWED_GITHUB_USERS) needs --github-client-id and --github-client-secret (GITHUB_CLIENT_ID, GITHUB_CLIENT_SECRET)"
            );
        }
        Ok(())
    }

    fn creates_resources(&self) -> bool {
        self.github.is_some() || !self.allowed_github_users.is_empty()
    }
}

/// The first admin token on an empty store; `None` when the store already had one.
pub async fn admin_token(cp: &ControlPlane, b: &Bootstrap) -> anyhow::Result<Option<CreatedToken>> {
    let created = cp
        .bootstrap_admin_token_with(b.admin_token.as_deref())
        .await
        .context("--admin-token (ADMIN_TOKEN)")?;
    match &created {
        Some(t) if b.admin_token.is_none() => {
            // Printed once, to stdout only; it is never logged.
            println!("admin token (shown once, keep it safe): {}", t.secret);
        }
        Some(t) => {
            tracing::info!(token = %t.token.id, "first admin token: the one --admin-token gave")
        }
        None if b.admin_token.is_some() || b.creates_resources() => tracing::warn!(
            "--admin-token, --github-client-id and --allowed-github-users apply to an empty store only; this one has tokens, so they are ignored"
        ),
        None => {}
    }
    Ok(created)
}

/// The GitHub provider and login rule, on the start that created the first admin token.
pub async fn resources(
    oauth: &OAuthServer,
    first: &CreatedToken,
    b: &Bootstrap,
) -> anyhow::Result<()> {
    let caller = Caller {
        token_id: first.token.id.clone(),
        scope: TokenScope::Admin,
    };
    let context = "this first start created the admin token; add the rest with `portcullis oauth idp add` / `oauth rule add`";
    if let Some(app) = &b.github {
        admin::create_idp(
            oauth,
            &caller,
            IdpInput {
                name: GITHUB_IDP.into(),
                kind: IdpKind::Github,
                client_id: app.client_id.clone(),
                client_secret: app.client_secret.clone(),
                base_url: None,
                api_url: None,
                scopes: None,
            },
        )
        .await
        .with_context(|| format!("--github-client-id (GITHUB_CLIENT_ID): {context}"))?;
        tracing::info!(
            idp = GITHUB_IDP,
            "identity provider created from --github-client-id"
        );
    }
    if !b.allowed_github_users.is_empty() {
        let rule = admin::create_rule(
            oauth,
            &caller,
            LoginRuleInput {
                proxy_hostname: None,
                idp: Some(GITHUB_IDP.into()),
                users: b.allowed_github_users.clone(),
                groups: vec![],
                email_domains: vec![],
                scopes: SEED_SCOPES.map(str::to_owned).to_vec(),
            },
        )
        .await
        .with_context(|| {
            format!("--allowed-github-users (OAUTH_ALLOWED_GITHUB_USERS): {context}")
        })?;
        tracing::info!(rule = %rule.id, "login rule created from --allowed-github-users");
    }
    Ok(())
}
