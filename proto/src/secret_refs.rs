//! Secret references in declarative documents (`portcullis apply -f FILE`, and
//! `portcullis-control-plane serve --bootstrap FILE`): a file names each secret as
//! `X_env: VARIABLE` or `X_file: PATH` (relative to the file), never the secret itself, since
//! such files are meant to be kept in git. Whoever reads the file — the CLI on the operator's
//! machine, or the control plane for its own `--bootstrap` file — resolves them here into `X`
//! before the document goes to the apply; the API itself takes only resolved secrets.
//!
//! Why in this crate: the CLI and the control plane both read such files and both depend on
//! this crate; the rules (which fields, what is refused, how a file's trailing newline is
//! cut) must be the same in both, so they live here once.
//!
//! Cost: one pass over two sections of the document; one environment lookup or file read
//! per reference.

use std::path::Path;

use serde_json::Value;

/// Secret fields that a file gives by reference, by section.
pub const SECRET_FIELDS: [(&str, &str); 2] = [
    ("oauth_providers", "client_secret"),
    ("proxy_oauth", "github_client_secret"),
];

/// One unresolvable reference, or a secret written inline, at its path in the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefError {
    /// Where: `oauth_providers[0].client_secret_env`.
    pub path: String,
    /// What is wrong (never the secret).
    pub message: String,
}

impl std::fmt::Display for RefError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Replaces `X_env` / `X_file` by `X` in every entry of [`SECRET_FIELDS`]; refuses `X`
/// written in the file, both references at once, an unset or empty variable and an
/// unreadable file. `env` looks a variable up (`|k| std::env::var(k).ok()`); paths are
/// relative to `base`. A file's one trailing line break (`\n` or `\r\n`) is not part of the
/// secret. Every error is collected; on error the document may be partly resolved and must
/// not be sent.
pub fn resolve_secrets(
    doc: &mut Value,
    base: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(), Vec<RefError>> {
    let mut errors = Vec::new();
    for (section, field) in SECRET_FIELDS {
        let Some(list) = doc.get_mut(section).and_then(Value::as_array_mut) else {
            continue;
        };
        for (i, entry) in list.iter_mut().enumerate() {
            let Some(obj) = entry.as_object_mut() else {
                continue;
            };
            let at = |f: &str, message: String| RefError {
                path: format!("{section}[{i}].{f}"),
                message,
            };
            if obj.contains_key(field) {
                errors.push(at(
                    field,
                    format!("a secret is not written into a file; use {field}_env or {field}_file"),
                ));
                continue;
            }
            let env_key = format!("{field}_env");
            let file_key = format!("{field}_file");
            let resolved = match (obj.remove(&env_key), obj.remove(&file_key)) {
                (None, None) => continue,
                (Some(_), Some(_)) => Err(at(
                    &env_key,
                    format!("give {env_key} or {file_key}, not both"),
                )),
                (Some(v), None) => match v.as_str() {
                    Some(name) => env(name)
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| at(&env_key, format!("{name} is not set"))),
                    None => Err(at(&env_key, "must be a variable name".into())),
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
                            .map_err(|e| at(&file_key, format!("cannot read {}: {e}", p.display())))
                    }
                    None => Err(at(&file_key, "must be a path".into())),
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
        std::fs::write(dir.path().join("gh.secret"), "from-file\r\n")?;
        let mut doc = serde_json::json!({
            "oauth_providers": [
                {"name": "a", "client_secret_env": "SECRET_A"},
                {"name": "b", "client_secret_file": "gh.secret"},
                {"name": "c"},
                {"name": "d", "client_secret_env": "SECRET_A", "client_secret_file": "gh.secret"},
                {"name": "e", "client_secret_file": "missing.secret"}
            ],
            "proxy_oauth": [{"hostname": "h", "github_client_secret_env": "UNSET_X"}]
        });
        let env = |k: &str| (k == "SECRET_A").then(|| "from-env".to_owned());
        let errors: Vec<String> = resolve_secrets(&mut doc, dir.path(), env)
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert_eq!(
            errors[0],
            "oauth_providers[3].client_secret_env: give client_secret_env or client_secret_file, not both"
        );
        assert!(
            errors[1].starts_with("oauth_providers[4].client_secret_file: cannot read "),
            "{errors:?}"
        );
        assert_eq!(
            errors[2],
            "proxy_oauth[0].github_client_secret_env: UNSET_X is not set"
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
        assert_eq!(errors[0].path, "oauth_providers[0].client_secret");
        assert!(
            errors[0].message.contains("client_secret_env"),
            "{errors:?}"
        );
        Ok(())
    }
}
