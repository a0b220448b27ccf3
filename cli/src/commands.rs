//! Runs a parsed command: resolves settings, connects, calls the API, prints the result.

mod cert;
mod declarative;
mod docker;
mod docker_ops;
mod docker_stream;
mod login;
mod logs;
mod oauth;
mod proxy;
mod proxy_resource;
mod route;
mod service;
mod status;
mod token;

use clap::CommandFactory;
use tonic::{Response, Status};

use crate::args::{Cli, Command};
use crate::client::{self, AdminClient, OAuthClient};
use crate::config;
use crate::error::CliError;
use crate::output::{Printer, write_stdout};

/// What every command needs: the client, how to print, and how to explain failures.
pub(crate) struct Ctx {
    /// The connected AdminService client.
    pub(crate) client: AdminClient,
    /// The OAuthAdminService client on the same connection.
    pub(crate) oauth: OAuthClient,
    /// Output format chosen by `--output`.
    pub(crate) out: Printer,
    /// Used to turn a failed call into the right [`CliError`].
    pub(crate) call: CallInfo,
}

/// Facts about the connection that error messages need.
#[derive(Debug, Clone)]
pub(crate) struct CallInfo {
    /// The control plane URL, named when it cannot be reached.
    pub(crate) url: String,
    /// Whether a token was sent, to hint at a missing one on `unauthenticated`.
    pub(crate) has_token: bool,
}

/// Unwraps a unary reply or classifies its error (API refusal vs. unreachable).
pub(crate) trait ReplyExt<T> {
    /// The reply message, or the matching [`CliError`].
    fn reply(self, call: &CallInfo) -> Result<T, CliError>;
}

impl<T> ReplyExt<T> for Result<Response<T>, Status> {
    fn reply(self, call: &CallInfo) -> Result<T, CliError> {
        self.map(Response::into_inner)
            .map_err(|s| CliError::from_status(s, &call.url, call.has_token))
    }
}

/// Executes a command; only `completions` works without a control plane.
pub(crate) async fn run(cli: Cli) -> Result<(), CliError> {
    if let Command::Completions { shell } = cli.command {
        return completions(shell);
    }
    if let Command::Login {
        issuer,
        scope,
        save,
    } = &cli.command
    {
        let path = match (save, &cli.global.config) {
            (false, _) => None,
            (true, Some(p)) => Some(p.clone()),
            (true, None) => config::default_path(
                std::env::var_os("XDG_CONFIG_HOME"),
                std::env::var_os("HOME"),
            ),
        };
        return login::login(issuer, scope, path.as_deref()).await;
    }
    let settings = config::load(&cli.global)?;
    let call = CallInfo {
        url: settings.url.clone(),
        has_token: settings.token.is_some(),
    };
    let (admin, oauth) = client::connect(&settings).await?;
    let format = cli.global.output;
    let mut ctx = Ctx {
        client: admin,
        oauth,
        out: Printer::new(cli.global.output),
        call,
    };
    match cli.command {
        Command::Status => status::status(&mut ctx).await,
        Command::Proxy(cmd) => proxy::run(&mut ctx, cmd).await,
        Command::Route(cmd) => route::run(&mut ctx, cmd).await,
        Command::Service(cmd) => service::run(&mut ctx, &settings, cmd).await,
        Command::Cert(cmd) => cert::run(&mut ctx, cmd).await,
        Command::Token(cmd) => token::run(&mut ctx, cmd).await,
        Command::DataplaneToken(cmd) => token::run_dataplane(&mut ctx, cmd).await,
        Command::Dataplanes(cmd) => status::dataplanes(&mut ctx, cmd).await,
        Command::Oauth(cmd) => oauth::run(&mut ctx, cmd).await,
        Command::Logs(cmd) => logs::run(&mut ctx, &settings, format, cmd).await,
        Command::Export { format, out } => {
            let json = format == crate::args::DocFormat::Json;
            declarative::export(&mut ctx, &settings, json, out.as_deref()).await
        }
        Command::Apply {
            file,
            prune,
            dry_run,
        } => declarative::apply(&mut ctx, &settings, &file, prune, dry_run).await,
        Command::Completions { shell } => completions(shell),
        Command::Login { .. } => Ok(()),
    }
}

/// Prints a completion script. Rendered to memory first because clap_complete panics
/// on write errors, and a closed pipe should not be a crash.
fn completions(shell: clap_complete::Shell) -> Result<(), CliError> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "portcullis", &mut script);
    write_stdout(&String::from_utf8_lossy(&script))
}
