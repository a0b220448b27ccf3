//! `service external ...`: named upstream services.

use portcullis_proto::v1::{ByName, Empty, ServiceInput};

use super::{Ctx, ReplyExt};
use crate::args::{ExternalCommand, ServiceCommand};
use crate::error::CliError;
use crate::output::json::{EmptyJson, Items, ServiceJson};
use crate::output::views;

/// Runs one `service` subcommand.
/// (`service external ...` here; the Docker services in `commands::docker`.)
pub(crate) async fn run(
    ctx: &mut Ctx,
    settings: &crate::config::Settings,
    cmd: ServiceCommand,
) -> Result<(), CliError> {
    let cmd = match cmd {
        ServiceCommand::External(cmd) => cmd,
        docker => return super::docker::run(ctx, settings, docker).await,
    };
    let service = match cmd {
        ExternalCommand::Register {
            name,
            url,
            description,
        } => {
            let input = ServiceInput {
                name,
                target_url: url,
                description: description.unwrap_or_default(),
            };
            ctx.client.register_service(input).await.reply(&ctx.call)?
        }
        ExternalCommand::Show { name } => {
            let req = ByName {
                name,
                ..Default::default()
            };
            ctx.client.get_service(req).await.reply(&ctx.call)?
        }
        ExternalCommand::List => {
            let list = ctx.client.list_services(Empty {}).await.reply(&ctx.call)?;
            return ctx
                .out
                .emit(&Items::<ServiceJson>::from_wire(&list.items), || {
                    views::services(&list.items)
                });
        }
        ExternalCommand::Delete { name } => {
            let req = ByName {
                name: name.clone(),
                ..Default::default()
            };
            ctx.client.delete_service(req).await.reply(&ctx.call)?;
            return ctx
                .out
                .emit(&EmptyJson {}, || format!("deleted service {name}"));
        }
    };
    ctx.out
        .emit(&ServiceJson::from(&service), || views::service(&service))
}
