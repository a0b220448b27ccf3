//! `token ...` and `dataplane-token create`.
//!
//! In table mode a create prints only the secret on stdout, so
//! `TOKEN=$(portcullis token create ci)` captures exactly the credential.

use std::io::IsTerminal;

use portcullis_proto::v1::{ByName, CreatedToken, Empty, TokenInput, TokenScope};

use super::{Ctx, ReplyExt};
use crate::args::{DataplaneTokenCommand, ScopeArg, TokenCommand};
use crate::error::CliError;
use crate::output::json::{CreatedTokenJson, EmptyJson, Items, TokenJson, scope_name};
use crate::output::views;

/// Runs one `token` subcommand.
pub(crate) async fn run(ctx: &mut Ctx, cmd: TokenCommand) -> Result<(), CliError> {
    match cmd {
        TokenCommand::Create { name, scope } => {
            let scope = match scope {
                ScopeArg::Admin => TokenScope::Admin,
                ScopeArg::User => TokenScope::User,
            };
            create(ctx, name, scope).await
        }
        TokenCommand::List => {
            let list = ctx.client.list_tokens(Empty {}).await.reply(&ctx.call)?;
            ctx.out
                .emit(&Items::<TokenJson>::from_wire(&list.items), || {
                    views::tokens(&list.items)
                })
        }
        TokenCommand::Delete { id } => {
            let req = ByName {
                name: id.clone(),
                ..Default::default()
            };
            ctx.client.delete_token(req).await.reply(&ctx.call)?;
            ctx.out
                .emit(&EmptyJson {}, || format!("deleted token {id}"))
        }
    }
}

/// Runs one `dataplane-token` subcommand.
pub(crate) async fn run_dataplane(
    ctx: &mut Ctx,
    cmd: DataplaneTokenCommand,
) -> Result<(), CliError> {
    match cmd {
        DataplaneTokenCommand::Create { name } => create(ctx, name, TokenScope::Dataplane).await,
    }
}

async fn create(ctx: &mut Ctx, name: String, scope: TokenScope) -> Result<(), CliError> {
    let input = TokenInput {
        name,
        scope: scope as i32,
    };
    let created = ctx.client.create_token(input).await.reply(&ctx.call)?;
    if created.secret.is_empty() {
        let status = tonic::Status::internal("the control plane returned no secret");
        return Err(CliError::from_status(status, &ctx.call.url, true));
    }
    ctx.out.emit(&CreatedTokenJson::from(&created), || {
        // The note goes to stderr, and only for people, so captured stdout stays clean.
        if std::io::stderr().is_terminal() {
            eprintln!("{}", creation_note(&created));
        }
        created.secret.clone()
    })
}

/// What was created, for the person at the terminal.
fn creation_note(created: &CreatedToken) -> String {
    match &created.token {
        Some(t) => format!(
            "created {} token {:?} (id {}); the secret below is shown only once",
            scope_name(t.scope),
            t.name,
            t.id
        ),
        None => "token created; the secret below is shown only once".to_owned(),
    }
}
