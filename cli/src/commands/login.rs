//! `portcullis login`: the OAuth device authorization grant (RFC 8628) against the control
//! plane's authorization server, so people sign in with their identity provider instead of
//! handling long-lived API tokens.

use std::time::Duration;

use serde::Deserialize;

use crate::error::CliError;
use crate::output::write_stdout;

/// The built-in public client the authorization server knows.
const CLIENT_ID: &str = "portcullis-cli";
const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

#[derive(Deserialize)]
struct DeviceReply {
    device_code: String,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: Option<String>,
    expires_in: u64,
    interval: Option<u64>,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs the device flow; prints the access token, or saves it to `save_to` (mode 0600).
pub(crate) async fn login(
    issuer: &str,
    scope: &str,
    save_to: Option<&std::path::Path>,
) -> Result<(), CliError> {
    let issuer = issuer.trim_end_matches('/');
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| CliError::Usage(format!("HTTP client: {e}")))?;
    let unreachable = |e: reqwest::Error| CliError::Unreachable {
        url: issuer.to_owned(),
        detail: e.to_string(),
    };
    let resp = http
        .post(format!("{issuer}/device_authorization"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("client_id", CLIENT_ID),
            ("scope", scope),
            ("resource", issuer),
        ]))
        .send()
        .await
        .map_err(unreachable)?;
    if !resp.status().is_success() {
        let t: TokenReply = resp.json().await.map_err(unreachable)?;
        return Err(CliError::Usage(format!(
            "the authorization server refused: {} {}",
            t.error.unwrap_or_default(),
            t.error_description.unwrap_or_default()
        )));
    }
    let d: DeviceReply = resp.json().await.map_err(unreachable)?;
    eprintln!(
        "To sign in, open {}\nand enter the code {}\n(or open {})",
        d.verification_uri,
        d.user_code,
        d.verification_uri_complete
            .as_deref()
            .unwrap_or(&d.verification_uri)
    );
    let mut interval = Duration::from_secs(d.interval.unwrap_or(5).max(1));
    let deadline = std::time::Instant::now() + Duration::from_secs(d.expires_in);
    loop {
        tokio::time::sleep(interval).await;
        if std::time::Instant::now() > deadline {
            return Err(CliError::Usage(
                "the code expired before sign-in finished; run `portcullis login` again".into(),
            ));
        }
        let t: TokenReply = http
            .post(format!("{issuer}/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("grant_type", GRANT),
                ("client_id", CLIENT_ID),
                ("device_code", &d.device_code),
            ]))
            .send()
            .await
            .map_err(unreachable)?
            .json()
            .await
            .map_err(unreachable)?;
        match (t.access_token, t.error.as_deref()) {
            (Some(token), _) => return deliver(&token, save_to),
            (None, Some("authorization_pending")) => {}
            (None, Some("slow_down")) => interval += Duration::from_secs(5),
            (None, e) => {
                return Err(CliError::Usage(format!(
                    "sign-in failed: {} {}",
                    e.unwrap_or("unknown error"),
                    t.error_description.unwrap_or_default()
                )));
            }
        }
    }
}

fn deliver(token: &str, save_to: Option<&std::path::Path>) -> Result<(), CliError> {
    let Some(path) = save_to else {
        return write_stdout(token);
    };
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let mut text: String = existing
        .lines()
        .filter(|l| !l.trim_start().starts_with("token"))
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(&format!("token = \"{token}\"\n"));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::Usage(format!("cannot create {}: {e}", dir.display())))?;
    }
    write_private(path, &text)
        .map_err(|e| CliError::Usage(format!("cannot write {}: {e}", path.display())))?;
    eprintln!("signed in; token saved to {}", path.display());
    Ok(())
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // The mode above applies only to a new file; an existing one may be wider.
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    f.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}
