//! `status` and `dataplanes list`: read-only views of the control plane's state.

use portcullis_proto::v1::Empty;

use super::{Ctx, ReplyExt};
use crate::args::DataplanesCommand;
use crate::error::CliError;
use crate::output::json::{DataPlaneListJson, StatusJson};
use crate::output::views;

/// `status`.
pub(crate) async fn status(ctx: &mut Ctx) -> Result<(), CliError> {
    let reply = ctx.client.status(Empty {}).await.reply(&ctx.call)?;
    ctx.out
        .emit(&StatusJson::from(&reply), || views::status(&reply))
}

/// `dataplanes list`.
pub(crate) async fn dataplanes(ctx: &mut Ctx, cmd: DataplanesCommand) -> Result<(), CliError> {
    match cmd {
        DataplanesCommand::List => {
            let reply = ctx
                .client
                .list_data_planes(Empty {})
                .await
                .reply(&ctx.call)?;
            ctx.out.emit(&DataPlaneListJson::from(&reply), || {
                views::dataplanes(&reply)
            })
        }
    }
}
