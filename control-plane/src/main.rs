//! `portcullis-control-plane`: parses flags and hands over to the library.
//!
//! Secrets never need to be on the command line (visible in `ps`): each secret flag
//! `--X` also comes from `PORTCULLIS_X` or from a file with `--X-file` (giving both is an
//! error).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use portcullis_control_plane::server::{self, ServeConfig};
use portcullis_control_plane::service::ControlPlane;
use portcullis_control_plane::telemetry::{self, LogFormat, OtlpProtocol, TraceSettings};

/// Portcullis control plane: owns all state and streams config to data planes.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Format of this process's own log lines on stderr: `text` or `json` (one JSON
    /// object per line).
    #[arg(long, global = true, env = "PORTCULLIS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// OpenTelemetry traces of API calls, OAuth endpoints, ACME orders and snapshots.
#[derive(clap::Args, Clone)]
struct TraceArgs {
    /// OpenTelemetry collector to send spans to, e.g. `http://127.0.0.1:4317` (gRPC) or
    /// `http://127.0.0.1:4318` (with `--otlp-protocol http`). Without it no spans are
    /// exported.
    #[arg(long, env = "PORTCULLIS_OTLP_ENDPOINT", value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// OTLP transport: `grpc` or `http` (protobuf bodies POSTed to `<URL>/v1/traces`).
    #[arg(long, env = "PORTCULLIS_OTLP_PROTOCOL", value_enum, default_value_t = OtlpProtocol::Grpc)]
    otlp_protocol: OtlpProtocol,
    /// Share of new traces sampled, from 0.0 to 1.0 (a caller's `traceparent` decides for
    /// its own trace).
    #[arg(long, env = "PORTCULLIS_TRACE_SAMPLE_RATIO", value_name = "RATIO", default_value = "1.0", allow_negative_numbers = true, value_parser = portcullis_control_plane::telemetry::parse_sample_ratio)]
    trace_sample_ratio: f64,
}

impl TraceArgs {
    fn settings(&self) -> Option<TraceSettings> {
        self.otlp_endpoint.as_ref().map(|endpoint| TraceSettings {
            endpoint: endpoint.clone(),
            protocol: self.otlp_protocol,
            sample_ratio: self.trace_sample_ratio,
        })
    }
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
    #[arg(long, env = "PORTCULLIS_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// File holding the Redis URL (it may carry a password).
    #[arg(long, env = "PORTCULLIS_REDIS_URL_FILE", value_name = "PATH", conflicts_with = "redis_url", value_parser = secret_file)]
    redis_url_file: Option<String>,
    /// Redis password, for a Redis URL that carries none (the seed's `REDIS_PASSWORD`).
    #[arg(long, env = "PORTCULLIS_REDIS_PASSWORD", hide_env_values = true)]
    redis_password: Option<String>,
}

impl StoreArgs {
    /// The Redis URL, with `--redis-password` in it when given. A URL with a different
    /// password of its own is refused rather than silently overridden.
    fn redis_url(&self) -> anyhow::Result<Option<String>> {
        let Some(raw) = self.redis_url.as_deref().or(self.redis_url_file.as_deref()) else {
            return Ok(None);
        };
        let Some(password) = self.redis_password.as_deref() else {
            return Ok(Some(raw.to_owned()));
        };
        // The URL may carry a password: errors never quote it.
        let mut url =
            url::Url::parse(raw).map_err(|e| anyhow::anyhow!("--redis-url is not a URL: {e}"))?;
        match url.password() {
            Some(p) if p != password => anyhow::bail!(
                "--redis-url carries a password that differs from --redis-password (REDIS_PASSWORD); give one of them"
            ),
            Some(_) => {}
            None => url
                .set_password(Some(password))
                .map_err(|()| anyhow::anyhow!("--redis-url cannot carry a password"))?,
        }
        Ok(Some(url.into()))
    }
}

/// Reads a `--…-file` secret: the file's text without its trailing line break. The error
/// names the file, never its contents.
fn secret_file(path: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let secret = text
        .strip_suffix('\n')
        .map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t));
    if secret.is_empty() {
        return Err(format!("{path} is empty"));
    }
    Ok(secret.to_owned())
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
        /// PEM CA for data planes' client certificates: with it, a data plane's config
        /// stream needs a certificate this CA signed (mutual TLS; the CLI needs none).
        #[arg(long, env = "PORTCULLIS_GRPC_CLIENT_CA", value_name = "PEM_FILE")]
        grpc_client_ca: Option<PathBuf>,
        /// Allow plaintext gRPC on a non-loopback address (tokens travel in clear text).
        #[arg(long, env = "PORTCULLIS_INSECURE_GRPC")]
        insecure_grpc: bool,
        /// How often to poll the store for writes by other control planes, in ms: the safety
        /// net behind Redis pub/sub, which announces them at once.
        #[arg(long, env = "PORTCULLIS_POLL_INTERVAL_MS", default_value_t = 2000)]
        poll_interval_ms: u64,
        /// How long a lease lives without renewal, in seconds: work that runs on one control
        /// plane at a time (ACME orders, key rotation, log retention) moves to another
        /// within this plus a third of it when its holder dies.
        #[arg(long, env = "PORTCULLIS_LEASE_TTL_SECS", default_value_t = 10)]
        lease_ttl_secs: u64,
        /// Base64 32-byte key sealing private keys at rest [default: <data-dir>/master.key,
        /// created on first start]. Control planes sharing Redis need the same key.
        #[arg(long, env = "PORTCULLIS_MASTER_KEY", hide_env_values = true)]
        master_key: Option<String>,
        /// File holding the master key.
        #[arg(long, env = "PORTCULLIS_MASTER_KEY_FILE", value_name = "PATH", conflicts_with = "master_key", value_parser = secret_file)]
        master_key_file: Option<String>,
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
        /// External Account Binding key id, for CAs that require one (with --acme-eab-hmac-key).
        #[arg(long, env = "PORTCULLIS_ACME_EAB_KID")]
        acme_eab_kid: Option<String>,
        /// External Account Binding HMAC key, base64url as the CA gives it (with --acme-eab-kid).
        #[arg(long, env = "PORTCULLIS_ACME_EAB_HMAC_KEY", hide_env_values = true)]
        acme_eab_hmac_key: Option<String>,
        /// File holding the External Account Binding HMAC key.
        #[arg(long, env = "PORTCULLIS_ACME_EAB_HMAC_KEY_FILE", value_name = "PATH", conflicts_with = "acme_eab_hmac_key", value_parser = secret_file)]
        acme_eab_hmac_key_file: Option<String>,
        /// Longest wait, in seconds, for data planes to apply a challenge answer before the CA
        /// is asked to validate anyway.
        #[arg(long, env = "PORTCULLIS_ACME_ACK_TIMEOUT_SECS", default_value_t = 30)]
        acme_ack_timeout_secs: u64,
        #[command(flatten)]
        oauth: OAuthArgs,
        #[command(flatten)]
        logs: LogArgs,
        /// Also serve Prometheus `/metrics` WITHOUT authentication on this address (on the
        /// HTTP listener it needs an admin token). Put it where only the scraper reaches it.
        #[arg(long, env = "PORTCULLIS_METRICS_LISTEN", value_name = "ADDR")]
        metrics_listen: Option<SocketAddr>,
        #[command(flatten)]
        traces: TraceArgs,
        #[command(flatten)]
        docker: DockerArgs,
        #[command(flatten)]
        bootstrap: BootstrapArgs,
    },
    /// Manage API tokens directly in the store.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Certificates for the gRPC listener.
    Tls {
        #[command(subcommand)]
        command: TlsCommand,
    },
}

#[derive(Subcommand)]
enum TlsCommand {
    /// Create a private CA (ca.pem, ca-key.pem) and a gRPC server certificate signed by it
    /// (grpc.pem, grpc-key.pem) in --out, and print the flags that use them. Never
    /// overwrites a file; keys are written 0600 and never printed.
    Bootstrap {
        /// Directory for the four files (created 0700).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// DNS names clients reach the control plane by (comma-separated or repeated).
        #[arg(long, value_name = "HOST", value_delimiter = ',', required = true)]
        name: Vec<String>,
        /// IP addresses clients reach the control plane by (comma-separated or repeated).
        #[arg(long, value_name = "IP", value_delimiter = ',')]
        ip: Vec<String>,
        /// Lifetime of the server certificate, in days (1-3650; the CA lives 3650).
        #[arg(long, value_name = "N", default_value_t = 825)]
        days: u32,
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

/// What an empty store starts with (ignored, with a warning, once it has tokens).
#[derive(clap::Args, Clone)]
struct BootstrapArgs {
    /// The first admin token's secret instead of a generated one (32-256 printable
    /// characters; the seed's `ADMIN_TOKEN`).
    #[arg(long, env = "PORTCULLIS_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// File holding the first admin token's secret.
    #[arg(long, env = "PORTCULLIS_ADMIN_TOKEN_FILE", value_name = "PATH", conflicts_with = "admin_token", value_parser = secret_file)]
    admin_token_file: Option<String>,
    /// Create the identity provider `github` with this GitHub OAuth app (the seed's
    /// `GITHUB_CLIENT_ID`).
    #[arg(long, env = "PORTCULLIS_GITHUB_CLIENT_ID")]
    github_client_id: Option<String>,
    /// The GitHub OAuth app's secret (the seed's `GITHUB_CLIENT_SECRET`).
    #[arg(long, env = "PORTCULLIS_GITHUB_CLIENT_SECRET", hide_env_values = true)]
    github_client_secret: Option<String>,
    /// File holding the GitHub OAuth app's secret.
    #[arg(long, env = "PORTCULLIS_GITHUB_CLIENT_SECRET_FILE", value_name = "PATH", conflicts_with = "github_client_secret", value_parser = secret_file)]
    github_client_secret_file: Option<String>,
    /// A login rule for these GitHub logins, comma-separated, or `*` for everyone GitHub
    /// vouches for; grants `mcp:read mcp:write` (the seed's `OAUTH_ALLOWED_GITHUB_USERS`).
    #[arg(long, env = "PORTCULLIS_ALLOWED_GITHUB_USERS", value_delimiter = ',')]
    allowed_github_users: Vec<String>,
    /// A declarative document (YAML or JSON, as `portcullis export` writes) applied once at
    /// start when the store holds no resources; ignored (info log) otherwise. An invalid
    /// file stops the start with the path of each error.
    #[arg(long = "bootstrap", env = "PORTCULLIS_BOOTSTRAP", value_name = "FILE")]
    bootstrap_file: Option<PathBuf>,
}

impl BootstrapArgs {
    /// Checked here, not by clap: a seed variable is a default, which clap's `requires`
    /// does not look at.
    fn settings(self) -> anyhow::Result<portcullis_control_plane::bootstrap::Bootstrap> {
        use portcullis_control_plane::bootstrap::{Bootstrap, GithubApp};
        let secret = self.github_client_secret.or(self.github_client_secret_file);
        let github = match (self.github_client_id, secret) {
            (Some(client_id), Some(client_secret)) => Some(GithubApp {
                client_id,
                client_secret,
            }),
            (None, None) => None,
            _ => anyhow::bail!(
                "--github-client-id and --github-client-secret (GITHUB_CLIENT_ID, GITHUB_CLIENT_SECRET) go together"
            ),
        };
        Ok(Bootstrap {
            admin_token: self.admin_token.or(self.admin_token_file),
            github,
            allowed_github_users: self.allowed_github_users,
            file: self.bootstrap_file,
        })
    }
}

/// Docker services.
#[derive(clap::Args, Clone)]
struct DockerArgs {
    /// Docker Engine API: unix:///path, tcp://host:port or a socket path. The control plane
    /// starts without it; service calls answer 503 until it is reachable.
    #[arg(
        long,
        env = "DOCKER_HOST",
        default_value = "unix:///var/run/docker.sock"
    )]
    docker_host: String,
    /// Host ports handed out automatically to services (inclusive).
    #[arg(long, env = "PORTCULLIS_PORT_RANGE", default_value = "10000-19999", value_parser = portcullis_control_plane::docker::parse_port_range)]
    port_range: (u16, u16),
    /// How often service records are compared with the engine's containers (missing
    /// containers, orphans); also once at start.
    #[arg(long, env = "PORTCULLIS_DOCKER_RECONCILE_INTERVAL", default_value = "60s", value_parser = portcullis_control_plane::logs::parse_duration)]
    docker_reconcile_interval: Duration,
}

/// Request-log retention.
#[derive(clap::Args, Clone)]
struct LogArgs {
    /// Delete request-log records older than this (e.g. 24h, 90m, 7d).
    #[arg(long, env = "PORTCULLIS_LOG_RETENTION", default_value = "24h", value_parser = portcullis_control_plane::logs::parse_duration)]
    log_retention: Duration,
    /// Keep at most this many request-log records (the oldest go first).
    #[arg(long, env = "PORTCULLIS_LOG_MAX_RECORDS", default_value_t = 1_000_000)]
    log_max_records: u64,
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
    /// File holding the initial access token for /register.
    #[arg(long, env = "PORTCULLIS_OAUTH_REGISTRATION_TOKEN_FILE", value_name = "PATH", conflicts_with = "oauth_registration_token", value_parser = secret_file)]
    oauth_registration_token_file: Option<String>,
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
            registration_token: self
                .oauth_registration_token
                .or(self.oauth_registration_token_file),
            cimd_allow_private: self.oauth_cimd_allow_private,
            upstream_ca: self.oauth_upstream_ca,
            local_url: String::new(),
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // `portcullis-control-plane healthcheck [URL]`: the container health check (no shell there).
    if let Some(code) = portcullis_proto::healthcheck::from_args("http://127.0.0.1:9000/readyz") {
        return code;
    }
    // The seed's `.env` names stand in for flags they mean the same as.
    let command = portcullis_control_plane::seed_env::apply(
        Cli::command(),
        portcullis_control_plane::seed_env::CONTROL_PLANE,
        |k| std::env::var(k).ok(),
    );
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let traces = match &cli.command {
        Command::Serve { traces, .. } => traces.settings(),
        Command::Token { .. } | Command::Tls { .. } => None,
    };
    // Flushes queued spans when dropped, after `run`.
    let _spans = match telemetry::init(cli.log_format, traces.as_ref()) {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match run(cli).await {
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
            grpc_client_ca,
            insecure_grpc,
            poll_interval_ms,
            lease_ttl_secs,
            master_key,
            master_key_file,
            acme_directory,
            acme_staging_directory,
            acme_ca_cert,
            acme_email,
            acme_eab_kid,
            acme_eab_hmac_key,
            acme_eab_hmac_key_file,
            acme_ack_timeout_secs,
            renew_check_secs,
            oauth,
            logs,
            metrics_listen,
            traces: _,
            docker,
            bootstrap,
        } => {
            let eab = portcullis_control_plane::acme::Eab::from_flags(
                acme_eab_kid.as_deref(),
                acme_eab_hmac_key.or(acme_eab_hmac_key_file).as_deref(),
            )?;
            server::serve(ServeConfig {
                redis_url: store.redis_url()?,
                data_dir: store.data_dir,
                http_listen,
                grpc_listen,
                grpc_tls_cert,
                grpc_tls_key,
                grpc_client_ca,
                insecure_grpc,
                poll_interval: Duration::from_millis(poll_interval_ms.max(10)),
                lease_ttl: Duration::from_secs(lease_ttl_secs.max(1)),
                master_key: master_key.or(master_key_file),
                renew_check_interval: Duration::from_secs(renew_check_secs.max(1)),
                acme: portcullis_control_plane::acme::AcmeSettings {
                    directory_url: acme_directory,
                    staging_directory_url: acme_staging_directory,
                    ca_bundle: acme_ca_cert,
                    default_email: acme_email,
                    ack_timeout: Duration::from_secs(acme_ack_timeout_secs),
                    eab,
                    ..Default::default()
                },
                oauth: oauth.settings(),
                logs: portcullis_control_plane::logs::LogSettings {
                    retention: logs.log_retention,
                    max_records: logs.log_max_records,
                },
                metrics_listen,
                docker: portcullis_control_plane::docker::DockerSettings {
                    host: docker.docker_host,
                    port_range: docker.port_range,
                    reconcile_interval: docker.docker_reconcile_interval,
                },
                bootstrap: bootstrap.settings()?,
            })
            .await
        }
        Command::Token {
            command: TokenCommand::CreateAdmin { store, name },
        } => {
            let s = server::open_store(&store.data_dir, store.redis_url()?.as_deref()).await?;
            let cp = ControlPlane::new(s).await?;
            let created = cp.create_admin_token(&name).await?;
            println!("{}", created.secret);
            Ok(())
        }
        Command::Tls {
            command:
                TlsCommand::Bootstrap {
                    out,
                    name,
                    ip,
                    days,
                },
        } => {
            use portcullis_control_plane::tls_bootstrap;
            let req = tls_bootstrap::Request::new(out, &name, &ip, days)?;
            let written = tls_bootstrap::bootstrap(&req)?;
            print!("{}", tls_bootstrap::instructions(&req, &written));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn secret_flags_have_file_variants_and_refuse_both() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("secret");
        std::fs::write(&file, "s3cret\r\n")?;
        let path = file.to_str().unwrap_or_default();
        for flag in [
            "master-key",
            "acme-eab-hmac-key",
            "oauth-registration-token",
            "redis-url",
        ] {
            let with_file = [&format!("--{flag}-file"), path];
            let parsed = Cli::try_parse_from(["cp", "serve"].iter().copied().chain(with_file));
            assert!(parsed.is_ok(), "{flag}: {:?}", parsed.err());
            let both = Cli::try_parse_from(
                ["cp", "serve", &format!("--{flag}"), "x"]
                    .iter()
                    .copied()
                    .chain(with_file),
            );
            assert!(
                both.is_err_and(|e| e.kind() == clap::error::ErrorKind::ArgumentConflict),
                "{flag}"
            );
        }
        assert_eq!(secret_file(path).as_deref(), Ok("s3cret"));
        std::fs::write(&file, "\n")?;
        assert!(secret_file(path).is_err());
        assert!(secret_file("/nonexistent").is_err_and(|e| e.contains("/nonexistent")));
        Ok(())
    }
}
