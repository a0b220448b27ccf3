//! `export` and `apply`: the whole configuration as one document (see the README,
//! "Declarative configuration"). Files are YAML or JSON; they name secrets by reference
//! (`client_secret_env`, `client_secret_file`, and the same for `github_client_secret`),
//! resolved here ([`portcullis_proto::secret_refs`], shared with `--bootstrap`), on the
//! operator's machine, and sent as the secret itself. A secret written into the file is
//! refused: such files are meant to be kept in git.

use std::path::Path;

use portcullis_proto::secret_refs::resolve_secrets;
use portcullis_proto::v1 as pb;
use portcullis_proto::v1::declarative_config_service_client::DeclarativeConfigServiceClient;
use serde_json::Value;

use super::{Ctx, ReplyExt};
use crate::client::{self, BearerAuth};
use crate::config::Settings;
use crate::error::{CliError, error_chain};
use crate::output::write_stdout;

async fn connect(
    settings: &Settings,
) -> Result<
    DeclarativeConfigServiceClient<
        tonic::service::interceptor::InterceptedService<tonic::transport::Channel, BearerAuth>,
    >,
    CliError,
> {
    let auth = BearerAuth::new(settings.token.as_ref().map(|t| t.expose()))?;
    let channel =
        client::endpoint(settings)?
            .connect()
            .await
            .map_err(|e| CliError::Unreachable {
                url: settings.url.clone(),
                detail: error_chain(&e),
            })?;
    Ok(
        DeclarativeConfigServiceClient::with_interceptor(channel, auth)
            .max_decoding_message_size(32 << 20)
            .max_encoding_message_size(32 << 20),
    )
}

/// `export [--format yaml|json] [--out FILE]`.
pub(crate) async fn export(
    ctx: &mut Ctx,
    settings: &Settings,
    json: bool,
    out: Option<&Path>,
) -> Result<(), CliError> {
    let mut c = connect(settings).await?;
    let reply = c
        .export_config(pb::ExportConfigRequest {})
        .await
        .reply(&ctx.call)?;
    // Parsed into YAML's value, whose mappings keep the order the control plane wrote.
    let doc: serde_norway::Value = serde_json::from_str(&reply.document_json)
        .map_err(|e| CliError::Output(std::io::Error::other(e)))?;
    let text = if json {
        serde_json::to_string_pretty(&doc)
            .map_err(|e| CliError::Output(std::io::Error::other(e)))?
            + "\n"
    } else {
        serde_norway::to_string(&doc).map_err(|e| CliError::Output(std::io::Error::other(e)))?
    };
    match out {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| CliError::Usage(format!("cannot write {}: {e}", path.display()))),
        None => write_stdout(&text),
    }
}

/// `apply -f FILE [--prune] [--dry-run]`.
pub(crate) async fn apply(
    ctx: &mut Ctx,
    settings: &Settings,
    file: &Path,
    prune: bool,
    dry_run: bool,
) -> Result<(), CliError> {
    let text = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
            .map_err(|e| CliError::Usage(format!("cannot read stdin: {e}")))?
    } else {
        std::fs::read_to_string(file)
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?
    };
    let mut doc: Value = serde_norway::from_str(&text).map_err(|e| {
        CliError::Usage(format!(
            "{} is not a YAML or JSON document: {e}",
            file.display()
        ))
    })?;
    let base = file.parent().unwrap_or(Path::new("."));
    resolve_secrets(&mut doc, base, |k| std::env::var(k).ok()).map_err(|errors| {
        CliError::Usage(format!(
            "{}: the document is invalid:\n{}",
            file.display(),
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ))
    })?;
    let mut c = connect(settings).await?;
    let reply = c
        .apply_config(pb::ApplyConfigRequest {
            document_json: doc.to_string(),
            prune,
            dry_run,
        })
        .await
        .reply(&ctx.call)?;
    let json = ReportJson::from(&reply);
    ctx.out.emit(&json, || report_view(&reply))
}

/// `--output json` of `apply`.
#[derive(serde::Serialize)]
struct ReportJson {
    dry_run: bool,
    applied: bool,
    revision: u64,
    changes: Vec<ChangeJson>,
}

#[derive(serde::Serialize)]
struct ChangeJson {
    kind: String,
    name: String,
    action: String,
    fields: Vec<String>,
}

impl From<&pb::ApplyConfigReply> for ReportJson {
    fn from(r: &pb::ApplyConfigReply) -> Self {
        Self {
            dry_run: r.dry_run,
            applied: r.applied,
            revision: r.revision,
            changes: r
                .changes
                .iter()
                .map(|c| ChangeJson {
                    kind: c.kind.clone(),
                    name: c.name.clone(),
                    action: c.action.clone(),
                    fields: c.fields.clone(),
                })
                .collect(),
        }
    }
}

/// The diff for people: one line per resource, then a summary.
fn report_view(r: &pb::ApplyConfigReply) -> String {
    let mut out = String::new();
    let kind_w = r.changes.iter().map(|c| c.kind.len()).max().unwrap_or(0);
    let name_w = r.changes.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for c in &r.changes {
        let fields = if c.fields.is_empty() {
            String::new()
        } else {
            format!("  ({})", c.fields.join(", "))
        };
        out.push_str(&format!(
            "{:<9} {:<kind_w$}  {:<name_w$}{fields}\n",
            c.action, c.kind, c.name
        ));
    }
    let count = |a: &str| r.changes.iter().filter(|c| c.action == a).count();
    out.push_str(&format!(
        "{} to create, {} to update, {} to delete, {} unchanged",
        count("create"),
        count("update"),
        count("delete"),
        count("unchanged")
    ));
    out.push_str(if r.dry_run {
        " (dry run: nothing written)"
    } else if r.applied {
        ""
    } else {
        " (nothing to write)"
    });
    if r.applied {
        out.push_str(&format!("; applied at revision {}", r.revision));
    }
    out
}
