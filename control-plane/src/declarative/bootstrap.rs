//! `--bootstrap FILE`: a document applied once, at start, to a store that holds no
//! resources (tokens do not count); ignored with an info log otherwise, so a restart never
//! overwrites what was changed through the API since. An invalid file stops the process
//! before it serves, with every error at its path.
//!
//! Files name their secrets by reference — `client_secret_env: VAR` or
//! `client_secret_file: PATH` (relative to the file), and the same for
//! `github_client_secret` — resolved here, on the control plane's own host; a secret
//! written into the file itself is refused, since such files are meant to be kept in git.
//! The CLI's `portcullis apply` resolves them on the operator's machine with the same code
//! ([`portcullis_proto::secret_refs`]).

use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;

use portcullis_proto::secret_refs::resolve_secrets;

use super::{ApplyError, ApplyOptions};
use crate::auth::Caller;
use crate::model::TokenScope;
use crate::service::ControlPlane;

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
