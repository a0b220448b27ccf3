//! `portcullis-control-plane`: parses flags and hands over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use portcullis_control_plane::server::{self, ServeConfig};
use portcullis_control_plane::service::ControlPlane;

/// Portcullis control plane: owns all state and streams config to data planes.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct StoreArgs {
    /// Directory of the embedded store (one redb file).
    #[arg(
        long,
        env = "PORTCULLIS_DATA_DIR",
        default_value = ".portcullis/control-plane"
    )]
    data_dir: PathBuf,
    /// Use a shared Redis instead: redis://[:password@]host:port/db or rediss://…
    #[arg(long, env = "PORTCULLIS_REDIS_URL")]
    redis_url: Option<String>,
}

// Parsed once at start-up; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the control plane.
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        /// Address for REST (/api/v1), /health, /openapi.json and /docs.
        #[arg(long, env = "PORTCULLIS_HTTP_LISTEN", default_value = "127.0.0.1:9000")]
        http_listen: SocketAddr,
        /// Address for gRPC (CLI and data planes).
        #[arg(long, env = "PORTCULLIS_GRPC_LISTEN", default_value = "127.0.0.1:9090")]
        grpc_listen: SocketAddr,
        /// PEM certificate chain for the gRPC listener (required off loopback).
        #[arg(long, env = "PORTCULLIS_GRPC_TLS_CERT")]
        grpc_tls_cert: Option<PathBuf>,
        /// PEM private key for the gRPC listener.
        #[arg(long, env = "PORTCULLIS_GRPC_TLS_KEY")]
        grpc_tls_key: Option<PathBuf>,
        /// Allow plaintext gRPC on a non-loopback address (tokens travel in clear text).
        #[arg(long, env = "PORTCULLIS_INSECURE_GRPC")]
        insecure_grpc: bool,
        /// How often to check the store for writes by other control planes, in ms.
        #[arg(long, env = "PORTCULLIS_POLL_INTERVAL_MS", default_value_t = 250)]
        poll_interval_ms: u64,
        /// Base64 32-byte key sealing private keys at rest [default: <data-dir>/master.key,
        /// created on first start]. Control planes sharing Redis need the same key.
        #[arg(long, env = "PORTCULLIS_MASTER_KEY", hide_env_values = true)]
        master_key: Option<String>,
        /// ACME directory for certificates.
        #[arg(long, env = "PORTCULLIS_ACME_DIRECTORY", default_value = portcullis_control_plane::acme::LETS_ENCRYPT)]
        acme_directory: String,
        /// ACME directory used when a certificate asks for staging.
        #[arg(long, env = "PORTCULLIS_ACME_STAGING_DIRECTORY", default_value = portcullis_control_plane::acme::LETS_ENCRYPT_STAGING)]
        acme_staging_directory: String,
        /// PEM CA bundle trusted for the ACME directory's own TLS (e.g. Pebble's).
        #[arg(long, env = "PORTCULLIS_ACME_CA_CERT")]
        acme_ca_cert: Option<PathBuf>,
        /// How often to check certificates for renewal, in seconds.
        #[arg(long, env = "PORTCULLIS_RENEW_CHECK_SECS", default_value_t = 600)]
        renew_check_secs: u64,
        /// Default ACME account contact e-mail.
        #[arg(long, env = "PORTCULLIS_ACME_EMAIL", default_value = "")]
        acme_email: String,
        #[command(flatten)]
        oauth: OAuthArgs,
    },
    /// Manage API tokens directly in the store.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an admin token and print only the secret. Works while the server is stopped
    /// (embedded store) or at any time with Redis.
    CreateAdmin {
        #[command(flatten)]
        store: StoreArgs,
        /// Token name.
        #[arg(long, default_value = "admin")]
        name: String,
    },
}

/// OAuth authorization server settings.
#[derive(clap::Args, Clone)]
struct OAuthArgs {
    /// Public origin of the OAuth server, e.g. https://auth.example.com [default:
    /// http://<http-listen>, loopback only].
    #[arg(long, env = "PORTCULLIS_OAUTH_ISSUER", default_value = "")]
    oauth_issuer: String,
    /// Access token lifetime in seconds.
    #[arg(long, env = "PORTCULLIS_OAUTH_ACCESS_TTL_SECS", default_value_t = 3600)]
    oauth_access_ttl_secs: u64,
    /// Refresh token lifetime in seconds (sliding).
    #[arg(long, env = "PORTCULLIS_OAUTH_REFRESH_TTL_SECS", default_value_t = 30 * 86400)]
    oauth_refresh_ttl_secs: u64,
    /// Absolute cap of a refresh chain in seconds.
    #[arg(long, env = "PORTCULLIS_OAUTH_REFRESH_MAX_SECS", default_value_t = 90 * 86400)]
    oauth_refresh_max_secs: u64,
    /// Signing algorithm for new keys: ES256 or RS256.
    #[arg(long, env = "PORTCULLIS_OAUTH_SIGNING_ALG", default_value = "ES256")]
    oauth_signing_alg: portcullis_control_plane::oauth::SigningAlg,
    /// Rotate the signing key after this many days.
    #[arg(long, env = "PORTCULLIS_OAUTH_KEY_ROTATION_DAYS", default_value_t = 30)]
    oauth_key_rotation_days: u64,
    /// Require this initial access token at /register (open registration otherwise).
    #[arg(
        long,
        env = "PORTCULLIS_OAUTH_REGISTRATION_TOKEN",
        hide_env_values = true
    )]
    oauth_registration_token: Option<String>,
    /// Allow Client ID Metadata Document URLs on private or loopback addresses.
    #[arg(long, env = "PORTCULLIS_OAUTH_CIMD_ALLOW_PRIVATE")]
    oauth_cimd_allow_private: bool,
    /// PEM roots trusted (besides the system's) when calling identity providers and
    /// metadata documents.
    #[arg(long, env = "PORTCULLIS_OAUTH_UPSTREAM_CA")]
    oauth_upstream_ca: Option<PathBuf>,
}

impl OAuthArgs {
    fn settings(self) -> portcullis_control_plane::oauth::OAuthSettings {
        portcullis_control_plane::oauth::OAuthSettings {
            issuer: self.oauth_issuer,
            access_ttl: Duration::from_secs(self.oauth_access_ttl_secs.max(1)),
            refresh_ttl: Duration::from_secs(self.oauth_refresh_ttl_secs.max(1)),
            refresh_absolute_ttl: Duration::from_secs(self.oauth_refresh_max_secs.max(1)),
            code_ttl: Duration::from_secs(60),
            signing_alg: self.oauth_signing_alg,
            key_rotation: Duration::from_secs(self.oauth_key_rotation_days.max(1) * 86400),
            registration_token: self.oauth_registration_token,
            cimd_allow_private: self.oauth_cimd_allow_private,
            upstream_ca: self.oauth_upstream_ca,
            local_url: String::new(),
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            store,
            http_listen,
            grpc_listen,
            grpc_tls_cert,
            grpc_tls_key,
            insecure_grpc,
            poll_interval_ms,
            master_key,
            acme_directory,
            acme_staging_directory,
            acme_ca_cert,
            acme_email,
            renew_check_secs,
            oauth,
        } => {
            server::serve(ServeConfig {
                data_dir: store.data_dir,
                http_listen,
                grpc_listen,
                redis_url: store.redis_url,
                grpc_tls_cert,
                grpc_tls_key,
                insecure_grpc,
                poll_interval: Duration::from_millis(poll_interval_ms.max(10)),
                master_key,
                renew_check_interval: Duration::from_secs(renew_check_secs.max(1)),
                acme: portcullis_control_plane::acme::AcmeSettings {
                    directory_url: acme_directory,
                    staging_directory_url: acme_staging_directory,
                    ca_bundle: acme_ca_cert,
                    default_email: acme_email,
                    ..Default::default()
                },
                oauth: oauth.settings(),
            })
            .await
        }
        Command::Token {
            command: TokenCommand::CreateAdmin { store, name },
        } => {
            let s = server::open_store(&store.data_dir, store.redis_url.as_deref()).await?;
            let cp = ControlPlane::new(s).await?;
            let created = cp.create_admin_token(&name).await?;
            println!("{}", created.secret);
            Ok(())
        }
    }
}
