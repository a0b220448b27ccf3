//! Connection settings from flags, environment and the config file.
//!
//! Precedence is flag > environment > config file > built-in default. clap already
//! resolves flag over environment, so this module only layers the file underneath.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::args::{DEFAULT_URL, GlobalArgs, Secret};
use crate::error::CliError;

/// The config file's contents. Unknown keys are rejected so that a typo such as
/// `tokne = ...` is reported instead of silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// Control plane gRPC URL.
    pub(crate) url: Option<String>,
    /// API token.
    pub(crate) token: Option<Secret>,
    /// CA certificate PEM file; relative paths are relative to the config file.
    pub(crate) ca_cert: Option<PathBuf>,
}

/// Fully resolved settings used to connect.
#[derive(Debug)]
pub(crate) struct Settings {
    /// Control plane gRPC URL.
    pub(crate) url: String,
    /// API token, if any.
    pub(crate) token: Option<Secret>,
    /// CA certificate PEM file for https URLs, if any.
    pub(crate) ca_cert: Option<PathBuf>,
}

/// Reads the config file (if any) and layers the command line over it.
pub(crate) fn load(args: &GlobalArgs) -> Result<Settings, CliError> {
    let file = match &args.config {
        // An explicitly named file must exist.
        Some(path) => read_file(path)?,
        None => match default_path(
            std::env::var_os("XDG_CONFIG_HOME"),
            std::env::var_os("HOME"),
        ) {
            Some(path) if path.is_file() => read_file(&path)?,
            _ => FileConfig::default(),
        },
    };
    Ok(resolve(args, file))
}

/// Applies precedence: anything set (non-empty) on the command line or in the
/// environment wins over the file; the URL falls back to [`DEFAULT_URL`].
pub(crate) fn resolve(args: &GlobalArgs, file: FileConfig) -> Settings {
    let url = non_empty(args.url.clone())
        .or_else(|| non_empty(file.url))
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    let token = args
        .token
        .clone()
        .or_else(|| args.token_file.clone())
        .filter(|t| !t.expose().is_empty())
        .or_else(|| file.token.filter(|t| !t.expose().is_empty()));
    let ca_cert = args
        .ca_cert
        .clone()
        .filter(|p| !p.as_os_str().is_empty())
        .or(file.ca_cert.filter(|p| !p.as_os_str().is_empty()));
    Settings {
        url,
        token,
        ca_cert,
    }
}

/// `$XDG_CONFIG_HOME/portcullis/config.toml`, else `~/.config/portcullis/config.toml`.
/// A relative `XDG_CONFIG_HOME` is ignored, as the XDG spec requires.
pub(crate) fn default_path(
    xdg_config_home: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    let base = xdg_config_home
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            home.filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(base.join("portcullis").join("config.toml"))
}

/// Parses one config file, resolving `ca_cert` against the file's directory.
pub(crate) fn read_file(path: &Path) -> Result<FileConfig, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("cannot read config file {}: {e}", path.display())))?;
    // Only the message and line: toml's full report quotes the offending line, which
    // may be the token itself.
    let mut config: FileConfig = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|span| format!(" (line {})", line_of(&text, span.start)))
            .unwrap_or_default();
        CliError::Usage(format!(
            "invalid config file {}{line}: {}",
            path.display(),
            e.message().trim_end()
        ))
    })?;
    if let Some(ca) = config.ca_cert.take() {
        let ca = expand_home(&ca);
        config.ca_cert = Some(match path.parent() {
            Some(dir) if ca.is_relative() => dir.join(ca),
            _ => ca,
        });
    }
    if config.token.is_some() {
        warn_if_shared(path);
    }
    Ok(config)
}

/// Expands a leading `~/`, which TOML users write out of shell habit.
fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_path_buf(),
    }
}

/// A token in a file other users can read is a leaked credential; say so.
#[cfg(unix)]
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        eprintln!(
            "warning: {} holds a token but is accessible to other users; run `chmod 600` on it",
            path.display()
        );
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &Path) {}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset)
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use clap::Parser;

    use super::*;
    use crate::args::Cli;

    fn global(args: &[&str]) -> Result<GlobalArgs, clap::Error> {
        let argv = std::iter::once(&"portcullis")
            .chain(args)
            .chain(&["status"]);
        Ok(Cli::try_parse_from(argv)?.global)
    }

    fn file(url: &str, token: &str, ca: &str) -> FileConfig {
        FileConfig {
            url: Some(url.into()),
            token: token.parse().ok(),
            ca_cert: Some(ca.into()),
        }
    }

    #[test]
    fn file_fills_what_flags_leave_unset() -> Result<(), clap::Error> {
        let s = resolve(&global(&[])?, file("https://cp:9090", "t-file", "/ca.pem"));
        assert_eq!(s.url, "https://cp:9090");
        assert_eq!(s.token.as_ref().map(Secret::expose), Some("t-file"));
        assert_eq!(s.ca_cert, Some(PathBuf::from("/ca.pem")));
        Ok(())
    }

    #[test]
    fn flags_override_the_file() -> Result<(), clap::Error> {
        let args = global(&[
            "--url",
            "http://other:1",
            "--token",
            "t-flag",
            "--ca-cert",
            "x.pem",
        ])?;
        let s = resolve(&args, file("https://cp:9090", "t-file", "/ca.pem"));
        assert_eq!(s.url, "http://other:1");
        assert_eq!(s.token.as_ref().map(Secret::expose), Some("t-flag"));
        assert_eq!(s.ca_cert, Some(PathBuf::from("x.pem")));
        Ok(())
    }

    #[test]
    fn empty_values_count_as_unset() -> Result<(), clap::Error> {
        let args = global(&["--url", "", "--token", ""])?;
        let s = resolve(&args, file("https://cp:9090", "t-file", "/ca.pem"));
        assert_eq!(s.url, "https://cp:9090");
        assert_eq!(s.token.as_ref().map(Secret::expose), Some("t-file"));
        let s = resolve(&args, FileConfig::default());
        assert_eq!(s.url, DEFAULT_URL);
        assert!(s.token.is_none() && s.ca_cert.is_none());
        Ok(())
    }

    #[test]
    fn default_path_prefers_absolute_xdg() {
        let p = default_path(Some("/xdg".into()), Some("/home/u".into()));
        assert_eq!(p, Some(PathBuf::from("/xdg/portcullis/config.toml")));
        let p = default_path(Some("relative".into()), Some("/home/u".into()));
        assert_eq!(
            p,
            Some(PathBuf::from("/home/u/.config/portcullis/config.toml"))
        );
        assert_eq!(default_path(None, None), None);
    }

    #[test]
    fn reads_file_and_resolves_relative_ca() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("config.toml");
        let mut f = std::fs::File::create(&path)?;
        writeln!(
            f,
            "url = \"https://cp:9090\"\ntoken = \"s3cret\"\nca_cert = \"ca.pem\""
        )?;
        let c = read_file(&path)?;
        assert_eq!(c.url.as_deref(), Some("https://cp:9090"));
        assert_eq!(c.ca_cert, Some(dir.path().join("ca.pem")));
        Ok(())
    }

    #[test]
    fn rejects_unknown_keys_and_missing_explicit_file() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "tokne = \"x\"\n")?;
        let err = read_file(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("tokne"), "{err}");
        let missing = read_file(&dir.path().join("nope.toml"));
        assert!(matches!(missing, Err(CliError::Usage(m)) if m.contains("cannot read config")));
        Ok(())
    }

    #[test]
    fn parse_errors_do_not_echo_the_file() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "url = \"http://x\"\ntoken = hunter2-secret\n")?;
        let err = read_file(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        Ok(())
    }
}
