//! A real OpenID Provider for upstream-login tests: panva's `oidc-provider` (OpenID
//! Certified), run by Node from `tests/oidc/server.mjs`.
//!
//! Using the certified library rather than a hand-written stand-in means discovery, PKCE,
//! client authentication, ID Token signing and userinfo behave as a real provider's do; only
//! the end user is automated (the interaction endpoint signs in a configured user and grants
//! the requested scopes, see `server.mjs`). Needs `node` and `npm ci --prefix tests/oidc`
//! (`tests/run.sh` does both).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::procs::Proc;
use crate::{free_port, http_client};

/// One of the provider's fixed users, with the claims it releases.
#[derive(Clone, Copy, Debug)]
pub struct OidcUser {
    /// Name to log in as (`login_hint`, [`OidcProvider::set_current_user`]); also
    /// `preferred_username`.
    pub username: &'static str,
    /// `sub`: stable and unlike the username, so keying on the wrong claim shows.
    pub sub: &'static str,
    /// `email`.
    pub email: &'static str,
    /// `email_verified`.
    pub email_verified: bool,
    /// `name`.
    pub name: &'static str,
    /// `groups` (scope `groups`).
    pub groups: &'static [&'static str],
}

/// Verified email, groups `admins` and `engineering`; the default user.
pub const ALICE: OidcUser = OidcUser {
    username: "alice",
    sub: "c3a1e2f0-0001-4a11-9c00-a11ce0000001",
    email: "alice@example.com",
    email_verified: true,
    name: "Alice Liddell",
    groups: &["admins", "engineering"],
};

/// Verified email, group `engineering`.
pub const BOB: OidcUser = OidcUser {
    username: "bob",
    sub: "c3a1e2f0-0002-4b22-9c00-b0b000000002",
    email: "bob@example.com",
    email_verified: true,
    name: "Bob Builder",
    groups: &["engineering"],
};

/// Unverified email (`email_verified: false`), no groups: must not be trusted by email.
pub const CAROL: OidcUser = OidcUser {
    username: "carol",
    sub: "c3a1e2f0-0003-4c33-9c00-ca7010000003",
    email: "carol@example.com",
    email_verified: false,
    name: "Carol Unverified",
    groups: &[],
};

/// A registered relying party (oidc-provider client metadata; the defaults are a
/// confidential web client using `client_secret_basic`, code flow and refresh tokens).
#[derive(Clone, Debug, Serialize)]
pub struct OidcClient {
    /// `client_id`.
    pub client_id: String,
    /// `client_secret`.
    pub client_secret: String,
    /// Exact redirect URIs allowed (OIDC compares them as strings).
    pub redirect_uris: Vec<String>,
    /// e.g. `client_secret_post`; default `client_secret_basic`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<String>,
}

/// Provider settings beyond the defaults of [`OidcProvider::start`].
#[derive(Clone, Debug, Serialize)]
pub struct OidcConfig {
    /// Registered clients.
    pub clients: Vec<OidcClient>,
    /// Who logs in when the request has no matching `login_hint`; `None`: the user cancels.
    pub default_user: Option<String>,
    /// Reject authorization requests without PKCE (`code_challenge`, S256). Default true,
    /// as OAuth 2.1 wants.
    pub require_pkce: bool,
}

/// A running `oidc-provider` on a loopback port; killed on drop.
pub struct OidcProvider {
    proc: Proc,
    _dir: tempfile::TempDir,
    /// Issuer, `http://127.0.0.1:PORT` (no trailing slash).
    pub issuer: String,
    /// Its port.
    pub port: u16,
}

impl OidcProvider {
    /// Registers this provider on `cp` as the OIDC identity provider `name`, with the
    /// client `portcullis` / `op-secret` the tests start it with, asking for `openid`
    /// plus `scopes`.
    pub fn add_to(&self, cp: &crate::procs::ControlPlane, name: &str, scopes: &[&str]) {
        let mut args = vec![
            "oauth",
            "idp",
            "add",
            name,
            "--kind",
            "oidc",
            "--client-id",
            "portcullis",
            "--client-secret",
            "op-secret",
            "--base-url",
            &self.issuer,
            "--scope",
            "openid",
        ];
        for scope in scopes {
            args.extend(["--scope", scope]);
        }
        cp.cli_ok(&args);
    }
}

/// Directory with `server.mjs` and `package.json`.
pub fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

impl OidcProvider {
    /// Starts a provider with one confidential client and the fixed users; `default_user`
    /// (e.g. `Some("alice")`) is who logs in, `None` makes every login a cancellation.
    pub async fn start(
        client_id: &str,
        client_secret: &str,
        redirect_uris: &[&str],
        default_user: Option<&str>,
    ) -> Self {
        Self::start_with(OidcConfig {
            clients: vec![OidcClient {
                client_id: client_id.to_owned(),
                client_secret: client_secret.to_owned(),
                redirect_uris: redirect_uris.iter().map(|s| (*s).to_owned()).collect(),
                token_endpoint_auth_method: None,
            }],
            default_user: default_user.map(str::to_owned),
            require_pkce: true,
        })
        .await
    }

    /// Starts a provider with `config`, waiting until discovery answers (panics with the
    /// provider's output if it does not within 20 s).
    pub async fn start_with(config: OidcConfig) -> Self {
        let dir = oidc_dir();
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "oidc-provider is not installed: run `npm ci --prefix tests/oidc` (tests/run.sh does)"
        );
        let tmp = tempfile::tempdir().expect("tempdir for the OIDC provider");
        let config_path = tmp.path().join("config.json");
        std::fs::write(
            &config_path,
            serde_json::to_vec(&config).expect("serialize OIDC config"),
        )
        .expect("write OIDC config");
        let log_path = tmp.path().join("provider.log");
        let log = std::fs::File::create(&log_path).expect("create OIDC provider log");
        let port = free_port();
        let mut proc = Proc::spawn(
            Command::new("node")
                .arg(dir.join("server.mjs"))
                .args(["--port", &port.to_string(), "--host", "127.0.0.1"])
                .arg("--config")
                .arg(&config_path)
                .current_dir(&dir)
                .stdout(log.try_clone().expect("clone log handle"))
                .stderr(log)
                .stdin(Stdio::null()),
        );
        let issuer = format!("http://127.0.0.1:{port}");
        let discovery = format!("{issuer}/.well-known/openid-configuration");
        let client = http_client();
        let start = Instant::now();
        loop {
            if let Ok(r) = client.get(&discovery).send().await
                && r.status().is_success()
            {
                break;
            }
            if start.elapsed() > Duration::from_secs(20) {
                proc.kill();
                panic!(
                    "oidc-provider did not answer {discovery} within 20 s; its output:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self {
            proc,
            _dir: tmp,
            issuer,
            port,
        }
    }

    /// `{issuer}/.well-known/openid-configuration`.
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }

    /// Changes who logs in next (`None`: the next login is cancelled with `access_denied`).
    pub async fn set_current_user(&self, user: Option<&str>) {
        let mut url =
            url::Url::parse(&format!("{}/__test/current-user", self.issuer)).expect("control URL");
        url.query_pairs_mut()
            .append_pair("user", user.unwrap_or(""));
        let r = http_client()
            .post(url)
            .send()
            .await
            .expect("POST /__test/current-user");
        let status = r.status();
        assert!(
            status.is_success(),
            "set_current_user({user:?}): {status} {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// Plays the browser: opens `authorize_url` and follows redirects on the issuer's origin,
    /// keeping its cookies, until one leaves it; returns that URL (normally the client's
    /// `redirect_uri` with `code`, `state` and `iss`, or with `error`). Panics on a page that
    /// is not a redirect, showing it.
    pub async fn login(&self, authorize_url: &str) -> url::Url {
        browse_until_leaving(authorize_url, &self.issuer).await
    }

    /// Stops the provider now.
    pub fn kill(&mut self) {
        self.proc.kill();
    }
}

/// Follows redirects from `start` like a browser with a fresh cookie jar while they stay on
/// `origin`; returns the first URL off it.
pub async fn browse_until_leaving(start: &str, origin: &str) -> url::Url {
    let origin = url::Url::parse(origin)
        .expect("origin URL")
        .origin()
        .ascii_serialization();
    let client = http_client();
    let mut jar: HashMap<String, String> = HashMap::new();
    let mut url = url::Url::parse(start).expect("start URL");
    for _ in 0..20 {
        if url.origin().ascii_serialization() != origin {
            return url;
        }
        let mut req = client.get(url.clone());
        if !jar.is_empty() {
            let cookie: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.header("cookie", cookie.join("; "));
        }
        let resp = req.send().await.expect("request during browser login");
        for sc in resp.headers().get_all("set-cookie") {
            let Some((name, rest)) = sc.to_str().unwrap_or("").split_once('=') else {
                continue;
            };
            let value = rest.split(';').next().unwrap_or("").to_owned();
            let expired = rest
                .to_ascii_lowercase()
                .contains("expires=thu, 01 jan 1970");
            if value.is_empty() || expired {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_owned(), value);
            }
        }
        let status = resp.status();
        if !status.is_redirection() {
            panic!(
                "browser login stopped at {url} with {status}: {}",
                resp.text().await.unwrap_or_default()
            );
        }
        let location = resp
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .expect("redirect without Location")
            .to_owned();
        url = url.join(&location).expect("resolve Location");
    }
    panic!("more than 20 redirects during browser login, last at {url}");
}
