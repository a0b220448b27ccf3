//! `github-compatible-server`: the test suite's GitHub-compatible OAuth + REST server as a
//! standalone process, for deploy/ scripts and manual runs of "log in with GitHub" where
//! github.com is unreachable.
//!
//! Usage: `github-compatible-server --config github.json [--listen 127.0.0.1:8090]`
//!
//! The config is [`portcullis_tests::github::GithubConfig`] as JSON, e.g.
//! ```json
//! {"listen": "127.0.0.1:8090", "layout": "enterprise", "current_user": "octocat",
//!  "users": [{"login": "octocat", "id": 583231, "name": "The Octocat",
//!             "emails": [{"email": "octocat@example.com", "primary": true,
//!                         "verified": true, "visibility": "public"}],
//!             "orgs": [{"login": "acme", "id": 100}],
//!             "teams": [{"org": "acme", "slug": "ops", "name": "Ops", "id": 7}]}],
//!  "apps": [{"client_id": "Iv1.test", "client_secret": "s3cret",
//!            "callback_url": "http://127.0.0.1:8080/oauth/github/callback"}]}
//! ```
//! Once listening it prints one JSON line with `web_url`, `api_url`, `authorize_url` and
//! `token_url`, then serves until interrupted.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use portcullis_tests::github::{GithubConfig, GithubServer};

/// A GitHub-compatible OAuth and REST API server (GHES or github.com layout).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// JSON config: users, OAuth apps, current user, layout.
    #[arg(long)]
    config: PathBuf,
    /// Listen address for the web origin; overrides the config's `listen`.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Listen address for the API origin in the `dotcom` layout; overrides `api_listen`.
    #[arg(long)]
    api_listen: Option<SocketAddr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.config)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", args.config.display()))?;
    let mut config: GithubConfig = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.config.display()))?;
    if args.listen.is_some() {
        config.listen = args.listen;
    }
    if args.api_listen.is_some() {
        config.api_listen = args.api_listen;
    }
    let server = GithubServer::try_start(config)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.config.display()))?;
    println!(
        "{}",
        serde_json::json!({
            "web_url": server.web_url,
            "api_url": server.api_url,
            "authorize_url": server.authorize_url,
            "token_url": server.token_url,
        })
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
