//! `--bootstrap FILE`: a document applied once, at start, to a store that holds no
//! resources (tokens do not count); ignored with an info log otherwise, so a restart never
//! overwrites what was changed through the API since. An invalid file stops the process
//! before it serves, with every error at its path.
//!
//! Files name their secrets by reference — `client_secret_env: VAR` or
//! `client_secret_file: PATH` (relative to the file), and the same for
//! `github_client_secret` — resolved here, on the control plane's own host; a secret
//! written into the file itself is refused, since such files are meant to be kept in git.
//! The CLI's `portcullis apply` resolves them the same way on the operator's machine.

use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;

use super::{ApplyError, ApplyOptions, PathError};
use crate::auth::Caller;
use crate::model::TokenScope;
use crate::service::ControlPlane;

/// Secret fields of each section that may be given by reference.
const SECRET_FIELDS: [(&str, &str); 2] = [
    ("oauth_providers", "client_secret"),
    ("proxy_oauth", "github_client_secret"),
];

/// Reads a YAML or JSON document and resolves its secret references.
pub fn load(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut doc: Value = serde_norway::from_str(&text)
        .with_context(|| format!("{} is not a YAML or JSON document", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    resolve_secrets(&mut doc, base, |k| std::env::var(k).ok()).map_err(|errors| {
        anyhow::anyhow!(
            "{}: {}",
            path.display(),
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    Ok(doc)
}

/// Replaces `X_env` / `X_file` by `X` in every entry; refuses `X` given inline.
pub fn resolve_secrets(
    doc: &mut Value,
    base: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(), Vec<PathError>> {
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
                errors.push(PathError {
                    path: at(field),
                    message: format!(
                        "a secret is not written into a file; use {field}_env or {field}_file"
                    ),
                });
                continue;
            }
            let from_env = obj.remove(&format!("{field}_env"));
            let from_file = obj.remove(&format!("{field}_file"));
            let value = match (from_env, from_file) {
                (None, None) => continue,
                (Some(_), Some(_)) => Err((
                    at(&format!("{field}_env")),
                    format!("give {field}_env or {field}_file, not both"),
                )),
                (Some(v), None) => match v.as_str() {
                    Some(name) => env(name).filter(|s| !s.is_empty()).ok_or_else(|| {
                        (
                            at(&format!("{field}_env")),
                            format!("the environment variable {name} is not set"),
                        )
                    }),
                    None => Err((at(&format!("{field}_env")), "must be a name".into())),
                },
                (None, Some(v)) => match v.as_str() {
                    Some(p) => {
                        let p = base.join(p);
                        std::fs::read_to_string(&p)
                            .map_err(|e| {
                                (
                                    at(&format!("{field}_file")),
                                    format!("cannot read {}: {e}", p.display()),
                                )
                            })
                            .map(|t| {
                                t.strip_suffix('\n')
                                    .map_or(t.as_str(), |t| t.strip_suffix('\r').unwrap_or(t))
                                    .to_owned()
                            })
                    }
                    None => Err((at(&format!("{field}_file")), "must be a path".into())),
                },
            };
            match value {
                Ok(secret) => {
                    obj.insert(field.into(), Value::String(secret));
                }
                Err((path, message)) => errors.push(PathError { path, message }),
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Applies `file` when the store holds no resources; new resources are owned by
/// `owner_token_id` (the first admin token, or none).
pub async fn at_start(
    cp: &ControlPlane,
    owner_token_id: Option<String>,
    file: &Path,
) -> anyhow::Result<()> {
    if !super::is_empty(cp)
        .await
        .context("--bootstrap: cannot read the store")?
    {
        tracing::info!(file = %file.display(), "--bootstrap ignored: the store already holds resources");
        return Ok(());
    }
    let doc = load(file).context("--bootstrap")?;
    let caller = Caller {
        token_id: owner_token_id.unwrap_or_default(),
        scope: TokenScope::Admin,
    };
    match super::apply(cp, &caller, &doc, ApplyOptions::default()).await {
        Ok(report) => {
            tracing::info!(
                file = %file.display(),
                revision = report.revision,
                resources = report.changes.len(),
                "--bootstrap applied"
            );
            Ok(())
        }
        Err(ApplyError::Service(crate::error::ServiceError::Conflict(_))) => {
            tracing::info!(file = %file.display(), "--bootstrap: another control plane applied it first");
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!("--bootstrap {}: {e}", file.display())),
    }
}
