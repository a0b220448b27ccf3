//! The command-line surface: global connection flags and the subcommand tree.
//!
//! Only parsing lives here; turning arguments into API requests is the job of
//! `commands`, so the surface can be unit-tested without a control plane.

mod cert;
mod docker;
mod kv;
mod logs;
pub(crate) mod oauth;
mod proxy;
mod proxy_resource;
mod resources;
mod route;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand};

use crate::output::OutputFormat;

pub(crate) use cert::{CertCommand, CertCreateArgs};
pub(crate) use docker::{PortCommand, ServiceCreateArgs, parse_port_spec};
pub(crate) use kv::{HeaderPair, headers_to_map};
pub(crate) use logs::{LogFilterArgs, LogSearchArgs, LogsCommand};
pub(crate) use oauth::OAuthCommand;
pub(crate) use proxy::{
    ProxyAuthCommand, ProxyAuthEnableArgs, ProxyCommand, ProxyCreateArgs, ProxyUpdateArgs,
};
pub(crate) use proxy_resource::{ProxyResourceCommand, ProxyResourceSetArgs};
pub(crate) use resources::{
    DataplaneTokenCommand, DataplanesCommand, ExternalCommand, ScopeArg, ServiceCommand,
    TokenCommand,
};
pub(crate) use route::{MatchArg, RouteCommand, RouteCreateArgs, TargetArg};

/// Default control plane address, matching the control plane's default `--grpc-listen`.
pub(crate) const DEFAULT_URL: &str = "http://127.0.0.1:9090";

/// Administer a Portcullis control plane over gRPC.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, propagate_version = true)]
pub(crate) struct Cli {
    /// Connection and output settings shared by every subcommand.
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Flags accepted before or after any subcommand.
///
/// Connection settings are `Option`s without clap defaults so that the config file
/// can fill in whatever neither a flag nor the environment set.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub(crate) struct GlobalArgs {
    /// Control plane gRPC URL (http:// or https://) [default: http://127.0.0.1:9090]
    #[arg(long, env = "PORTCULLIS_URL", global = true, value_name = "GRPC_URL")]
    pub(crate) url: Option<String>,

    /// API token, sent as `authorization: Bearer <TOKEN>` on every call
    #[arg(
        long,
        env = "PORTCULLIS_TOKEN",
        global = true,
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub(crate) token: Option<Secret>,

    /// File holding the API token (keeps it off the command line)
    #[arg(
        long,
        env = "PORTCULLIS_TOKEN_FILE",
        global = true,
        value_name = "PATH",
        conflicts_with = "token",
        value_parser = Secret::from_file
    )]
    pub(crate) token_file: Option<Secret>,

    /// PEM file with the CA that signed an https control plane's certificate
    #[arg(
        long,
        env = "PORTCULLIS_CA_CERT",
        global = true,
        value_name = "PEM_FILE"
    )]
    pub(crate) ca_cert: Option<PathBuf>,

    /// Output format
    #[arg(
        long,
        short = 'o',
        env = "PORTCULLIS_OUTPUT",
        global = true,
        value_enum,
        default_value_t = OutputFormat::Table
    )]
    pub(crate) output: OutputFormat,

    /// TOML file with `url`, `token`, `ca_cert` [default: $XDG_CONFIG_HOME/portcullis/config.toml]
    #[arg(long, env = "PORTCULLIS_CONFIG", global = true, value_name = "PATH")]
    pub(crate) config: Option<PathBuf>,
}

/// Every top-level subcommand.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show control plane version, store health and config version
    Status,
    /// Manage proxies (virtual hosts forwarded to a target URL)
    #[command(subcommand)]
    Proxy(ProxyCommand),
    /// Manage path routes (global or scoped to proxies)
    #[command(subcommand)]
    Route(RouteCommand),
    /// Manage Docker container services (lifecycle, logs, ports, proxies) and named external upstreams
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Manage TLS certificates (ACME or self-signed)
    #[command(subcommand)]
    Cert(CertCommand),
    /// Manage API tokens
    #[command(subcommand)]
    Token(TokenCommand),
    /// Create enrolment tokens for data planes
    #[command(subcommand)]
    DataplaneToken(DataplaneTokenCommand),
    /// Inspect connected data planes
    #[command(subcommand)]
    Dataplanes(DataplanesCommand),
    /// Query request logs: search, errors, follow, stats
    #[command(subcommand)]
    Logs(LogsCommand),
    /// Sign in through the OAuth authorization server (device flow) and print or save the token
    Login {
        /// The authorization server's issuer URL
        #[arg(
            long,
            env = "PORTCULLIS_ISSUER",
            default_value = "http://127.0.0.1:9000"
        )]
        issuer: String,
        /// Scope to ask for: `admin` or `user`
        #[arg(long, default_value = "admin")]
        scope: String,
        /// Save the token into the config file instead of printing it
        #[arg(long)]
        save: bool,
    },
    /// Administer the OAuth authorization server
    #[command(subcommand)]
    Oauth(OAuthCommand),
    /// Write every resource as one declarative document (YAML or JSON; no secrets, no keys)
    Export {
        /// Document format
        #[arg(long, value_enum, default_value_t = DocFormat::Yaml)]
        format: DocFormat,
        /// Write to this file instead of stdout
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Make the installation match a document: shows the diff, writes all of it or nothing
    Apply {
        /// The document (YAML or JSON; `-` reads stdin)
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
        /// Also delete resources the document does not list
        #[arg(long)]
        prune: bool,
        /// Only show the diff; change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Print a shell completion script to stdout
    Completions {
        /// Shell to generate completions for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `export --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DocFormat {
    /// YAML (the default)
    Yaml,
    /// JSON
    Json,
}

/// A credential that must never end up in logs, `Debug` output or error messages.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    /// The raw value, for the one place that needs it: the authorization header.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Reads a `--…-file` secret: the file's text without its trailing line break. The
    /// error names the file, never its contents.
    pub(crate) fn from_file(path: &str) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let secret = text
            .strip_suffix('\n')
            .map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t));
        if secret.is_empty() {
            return Err(format!("{path} is empty"));
        }
        Ok(Self(secret.to_owned()))
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("portcullis").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_token_may_come_from_a_file_but_not_from_both() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("token");
        std::fs::write(&file, "pcs_from_file\n")?;
        let path = file.to_str().unwrap_or_default();
        let cli = parse(&["--token-file", path, "status"])?;
        assert_eq!(
            cli.global.token_file.as_ref().map(Secret::expose),
            Some("pcs_from_file")
        );
        let both = parse(&["--token-file", path, "--token", "t", "status"]);
        assert!(both.is_err_and(|e| e.kind() == clap::error::ErrorKind::ArgumentConflict));

        // The OAuth client secrets follow the same rule.
        let idp = [
            "oauth",
            "idp",
            "add",
            "gh",
            "--kind",
            "github",
            "--client-id",
            "i",
        ];
        let from_file = [&idp[..], &["--client-secret-file", path]].concat();
        assert!(parse(&from_file).is_ok());
        let both = [&from_file[..], &["--client-secret", "s"]].concat();
        assert!(parse(&both).is_err_and(|e| e.kind() == clap::error::ErrorKind::ArgumentConflict));
        let app = ["oauth", "proxy", "set", "h.test", "--github-client-id", "i"];
        assert!(parse(&app).is_err(), "the app needs its secret");
        let from_file = [&app[..], &["--github-client-secret-file", path]].concat();
        assert!(parse(&from_file).is_ok());
        let both = [&from_file[..], &["--github-client-secret", "s"]].concat();
        assert!(parse(&both).is_err_and(|e| e.kind() == clap::error::ErrorKind::ArgumentConflict));
        Ok(())
    }

    #[test]
    fn global_flags_work_after_the_subcommand() -> Result<(), clap::Error> {
        let cli = parse(&["status", "--url", "https://cp:9090", "-o", "json"])?;
        assert_eq!(cli.global.url.as_deref(), Some("https://cp:9090"));
        assert_eq!(cli.global.output, OutputFormat::Json);
        Ok(())
    }

    #[test]
    fn secret_debug_is_redacted() -> Result<(), clap::Error> {
        let cli = parse(&["--token", "hunter2", "status"])?;
        let shown = format!("{cli:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(
            cli.global.token.as_ref().map(Secret::expose),
            Some("hunter2")
        );
        Ok(())
    }

    #[test]
    fn completions_takes_a_shell() {
        assert!(parse(&["completions", "zsh"]).is_ok());
        assert!(parse(&["completions", "tcsh"]).is_err());
    }
}
