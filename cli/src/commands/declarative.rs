//! `export` and `apply`: the whole configuration as one document (see the README,
//! "Declarative configuration"). Files are YAML or JSON; they name secrets by reference
//! (`client_secret_env`, `client_secret_file`, and the same for `github_client_secret`),
//! resolved here, on the operator's machine, and sent as the secret itself. A secret
//! written into the file is refused: such files are meant to be kept in git.

use std::path::Path;

use portcullis_proto::v1 as pb;
use portcullis_proto::v1::declarative_config_service_client::DeclarativeConfigServiceClient;
use serde_json::Value;

use super::{Ctx, ReplyExt};
use crate::client::{self, BearerAuth};
use crate::config::Settings;
use crate::error::{CliError, error_chain};
use crate::output::write_stdout;

/// Secret fields that files give by reference, by section.
const SECRET_FIELDS: [(&str, &str); 2] = [
    ("oauth_providers", "client_secret"),
    ("proxy_oauth", "github_client_secret"),
];

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
            errors.join("\n")
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

/// Replaces `X_env` / `X_file` by `X` in every entry; refuses `X` written in the file.
/// Errors are `path: message` lines.
fn resolve_secrets(
    doc: &mut Value,
    base: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    for (section, field) in SECRET_FIELDS {
        let Some(list) = doc.get_mut(section).and_then(Value::as_array_mut) else {
            continue;
        };
        for (i, entry) in list.iter_mut().enumerate() {
            let Some(obj) = entry.as_object_mut() else {
                continue;
            };
            let at = |f: &str| format!("{section}[{i}].{f}");
            if obj.contains_key(field) {
                errors.push(format!(
                    "{}: a secret is not written into a file; use {field}_env or {field}_file",
                    at(field)
                ));
                continue;
            }
            let env_key = format!("{field}_env");
            let file_key = format!("{field}_file");
            let resolved = match (obj.remove(&env_key), obj.remove(&file_key)) {
                (None, None) => continue,
                (Some(_), Some(_)) => Err(format!(
                    "{}: give {env_key} or {file_key}, not both",
                    at(&env_key)
                )),
                (Some(v), None) => match v.as_str() {
                    Some(name) => env(name)
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| format!("{}: {name} is not set", at(&env_key))),
                    None => Err(format!("{}: must be a variable name", at(&env_key))),
                },
                (None, Some(v)) => match v.as_str() {
                    Some(p) => {
                        let p = base.join(p);
                        std::fs::read_to_string(&p)
                            .map(|t| {
                                t.strip_suffix('\n')
                                    .map_or(t.as_str(), |t| t.strip_suffix('\r').unwrap_or(t))
                                    .to_owned()
                            })
                            .map_err(|e| {
                                format!("{}: cannot read {}: {e}", at(&file_key), p.display())
                            })
                    }
                    None => Err(format!("{}: must be a path", at(&file_key))),
                },
            };
            match resolved {
                Ok(secret) => {
                    obj.insert(field.into(), Value::String(secret));
                }
                Err(e) => errors.push(e),
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_the_environment_or_a_file_never_the_document()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("gh.secret"), "from-file\n")?;
        let mut doc = serde_json::json!({
            "oauth_providers": [
                {"name": "a", "client_secret_env": "SECRET_A"},
                {"name": "b", "client_secret_file": "gh.secret"},
                {"name": "c"}
            ],
            "proxy_oauth": [{"hostname": "h", "github_client_secret_env": "UNSET_X"}]
        });
        let env = |k: &str| (k == "SECRET_A").then(|| "from-env".to_owned());
        let errors = resolve_secrets(&mut doc, dir.path(), env)
            .err()
            .unwrap_or_default();
        assert_eq!(
            errors,
            vec!["proxy_oauth[0].github_client_secret_env: UNSET_X is not set".to_owned()]
        );
        assert_eq!(doc["oauth_providers"][0]["client_secret"], "from-env");
        assert_eq!(doc["oauth_providers"][1]["client_secret"], "from-file");
        assert!(doc["oauth_providers"][2].get("client_secret").is_none());
        assert!(doc["oauth_providers"][0].get("client_secret_env").is_none());

        let mut inline = serde_json::json!({"oauth_providers": [{"client_secret": "x"}]});
        let errors = resolve_secrets(&mut inline, dir.path(), |_| None)
            .err()
            .unwrap_or_default();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("oauth_providers[0].client_secret: "),
            "{errors:?}"
        );
        Ok(())
    }
}
