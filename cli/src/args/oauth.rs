//! `portcullis oauth …`: the authorization server's identity providers, login rules,
//! clients, sessions, consents and keys.

use clap::{Args, Subcommand};

use super::Secret;

/// OAuth administration.
#[derive(Debug, Subcommand)]
pub(crate) enum OAuthCommand {
    /// Publish the OAuth endpoints at HOST: creates an HTTPS proxy to this control plane
    Setup {
        /// Public host name of the authorization server, e.g. auth.example.com
        hostname: String,
        /// Where data planes reach the control plane's HTTP listener [default: its listen address]
        #[arg(long)]
        target: Option<String>,
    },
    /// Upstream identity providers (GitHub, OpenID Connect)
    #[command(subcommand)]
    Idp(IdpCommand),
    /// Who may log in, and with which scopes
    #[command(subcommand)]
    Rule(RuleCommand),
    /// What each scope means, in the words users read on the consent page
    #[command(subcommand)]
    Scope(ScopeCommand),
    /// OAuth clients
    #[command(subcommand)]
    Client(ClientCommand),
    /// Login sessions (refresh token families)
    #[command(subcommand)]
    Session(SessionCommand),
    /// Remembered consents
    #[command(subcommand)]
    Consent(ConsentCommand),
    /// Per-proxy settings: allowed providers, own GitHub app, metadata overrides
    #[command(subcommand)]
    Proxy(ProxySettingsCommand),
    /// Rotate the token signing key: returns once data planes have the new key (at most
    /// 10 s), which then signs; the old key stays published until its tokens expire
    RotateKeys,
    /// Token counters and totals
    Metrics,
}

/// Identity provider commands.
#[derive(Debug, Subcommand)]
pub(crate) enum IdpCommand {
    /// Add a provider
    Add(IdpAddArgs),
    /// List providers (secrets are never shown)
    List,
    /// Remove a provider
    Delete {
        /// Provider name
        name: String,
    },
}

/// `oauth idp add`.
#[derive(Debug, Args)]
pub(crate) struct IdpAddArgs {
    /// Short name used in URLs and subjects, e.g. `github`
    pub(crate) name: String,
    /// `github` or `oidc`
    #[arg(long, value_parser = ["github", "oidc"])]
    pub(crate) kind: String,
    /// OAuth client id registered at the provider
    #[arg(long)]
    pub(crate) client_id: String,
    /// OAuth client secret at the provider (or env PORTCULLIS_IDP_CLIENT_SECRET)
    #[arg(
        long,
        env = "PORTCULLIS_IDP_CLIENT_SECRET",
        hide_env_values = true,
        required_unless_present = "client_secret_file"
    )]
    pub(crate) client_secret: Option<Secret>,
    /// File holding the client secret
    #[arg(
        long,
        env = "PORTCULLIS_IDP_CLIENT_SECRET_FILE",
        value_name = "PATH",
        conflicts_with = "client_secret",
        value_parser = Secret::from_file
    )]
    pub(crate) client_secret_file: Option<Secret>,
    /// GitHub web URL (default https://github.com; GHES origin) or the OIDC issuer URL
    #[arg(long)]
    pub(crate) base_url: Option<String>,
    /// GitHub API URL (default https://api.github.com, or BASE/api/v3 for GHES)
    #[arg(long)]
    pub(crate) api_url: Option<String>,
    /// Scopes asked of the provider (repeatable)
    #[arg(long = "scope")]
    pub(crate) scopes: Vec<String>,
}

/// Login rule commands.
#[derive(Debug, Subcommand)]
pub(crate) enum RuleCommand {
    /// Add a rule; a user matching any listed login, group or e-mail domain may log in
    Add(RuleAddArgs),
    /// List rules
    List,
    /// Remove a rule
    Delete {
        /// Rule id
        id: String,
    },
}

/// Scope description commands.
#[derive(Debug, Subcommand)]
pub(crate) enum ScopeCommand {
    /// List every known scope (built in, granted by rules, described) with its description
    List,
    /// Set the description users read for SCOPE on the consent page (replaces a default)
    Set {
        /// Scope name, e.g. `mcp` or `files:read`
        scope: String,
        /// One line, 1-200 characters, e.g. "Read your files"
        #[arg(long)]
        description: String,
    },
    /// Remove a custom description (a built-in scope's default applies again)
    Delete {
        /// Scope name
        scope: String,
    },
}

/// `oauth rule add`.
#[derive(Debug, Args)]
pub(crate) struct RuleAddArgs {
    /// Only for logins to this proxy
    #[arg(long)]
    pub(crate) proxy: Option<String>,
    /// Only for this identity provider
    #[arg(long)]
    pub(crate) idp: Option<String>,
    /// Login name, or `*` for everyone the provider vouches for (repeatable)
    #[arg(long = "user")]
    pub(crate) users: Vec<String>,
    /// GitHub org, `org/team`, or OIDC group (repeatable)
    #[arg(long = "group")]
    pub(crate) groups: Vec<String>,
    /// E-mail domain of the verified address (repeatable)
    #[arg(long = "email-domain")]
    pub(crate) email_domains: Vec<String>,
    /// Scope granted to matching users (repeatable)
    #[arg(long = "scope")]
    pub(crate) scopes: Vec<String>,
}

/// Client commands.
#[derive(Debug, Subcommand)]
pub(crate) enum ClientCommand {
    /// Register a client; prints its secret once
    Register {
        /// Exact redirect URI (repeatable)
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
        /// Name shown on the consent page
        #[arg(long)]
        name: Option<String>,
        /// A public client (PKCE only, no secret)
        #[arg(long)]
        public: bool,
        /// Grant type (repeatable) [default: authorization_code refresh_token]
        #[arg(long = "grant")]
        grants: Vec<String>,
    },
    /// List clients
    List,
    /// Delete a client and revoke its tokens
    Delete {
        /// Client id
        client_id: String,
    },
}

/// Session commands.
#[derive(Debug, Subcommand)]
pub(crate) enum SessionCommand {
    /// List live sessions
    List,
    /// Revoke a session and every token it issued
    Revoke {
        /// Session id
        id: String,
    },
    /// Sign a user out everywhere: every session and every token issued to them so far
    RevokeUser {
        /// The user's subject (`sub`, as `session list` shows it)
        sub: String,
    },
}

/// Consent commands.
#[derive(Debug, Subcommand)]
pub(crate) enum ConsentCommand {
    /// List remembered consents (one per user, client and resource)
    List,
    /// Forget a user's consents for a client (at every resource) so the user is asked again
    Revoke {
        /// The user's subject
        #[arg(long)]
        sub: String,
        /// The client
        #[arg(long)]
        client_id: String,
    },
}

/// Per-proxy OAuth settings.
#[derive(Debug, Subcommand)]
pub(crate) enum ProxySettingsCommand {
    /// Show a proxy's OAuth settings (never the GitHub secret)
    Show {
        /// Proxy hostname
        hostname: String,
    },
    /// Change a proxy's OAuth settings; flags not given keep their value
    Set(ProxySettingsArgs),
    /// Remove all of a proxy's OAuth settings
    Clear {
        /// Proxy hostname
        hostname: String,
    },
}

/// `oauth proxy set`.
#[derive(Debug, Args)]
pub(crate) struct ProxySettingsArgs {
    /// Proxy hostname
    pub(crate) hostname: String,
    /// Allowed identity provider (repeatable); replaces the list
    #[arg(long = "idp", conflicts_with = "all_idps")]
    pub(crate) idps: Vec<String>,
    /// Allow every identity provider again
    #[arg(long)]
    pub(crate) all_idps: bool,
    /// Client id of this proxy's own GitHub OAuth app
    #[arg(long, requires = "github_secret", conflicts_with = "no_github")]
    pub(crate) github_client_id: Option<String>,
    /// Its client secret (or env PORTCULLIS_GITHUB_CLIENT_SECRET)
    #[arg(
        long,
        env = "PORTCULLIS_GITHUB_CLIENT_SECRET",
        hide_env_values = true,
        group = "github_secret"
    )]
    pub(crate) github_client_secret: Option<Secret>,
    /// File holding its client secret
    #[arg(
        long,
        env = "PORTCULLIS_GITHUB_CLIENT_SECRET_FILE",
        value_name = "PATH",
        group = "github_secret",
        value_parser = Secret::from_file
    )]
    pub(crate) github_client_secret_file: Option<Secret>,
    /// Remove the GitHub app override
    #[arg(long)]
    pub(crate) no_github: bool,
    /// JSON object merged into the authorization server metadata served for this host
    #[arg(long, conflicts_with = "clear_metadata")]
    pub(crate) metadata_json: Option<String>,
    /// Remove the metadata overrides
    #[arg(long)]
    pub(crate) clear_metadata: bool,
}
