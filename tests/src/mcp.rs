//! A real MCP server and a real MCP client for end-to-end tests, both from the official
//! npm packages pinned in `tests/mcp/package-lock.json`.
//!
//! - [`EverythingServer`]: `@modelcontextprotocol/server-everything`, the reference server
//!   that exercises every MCP feature, over Streamable HTTP (`POST`/`GET`/`DELETE /mcp`) or
//!   the legacy HTTP+SSE transport (`GET /sse` + `POST /message`).
//! - [`run_client`]: `tests/mcp/client.mjs`, a `Client` from `@modelcontextprotocol/sdk`
//!   that connects, lists tools and calls `echo`, sending a bearer token when given one.
//!
//! Needs `node` and `npm ci --prefix tests/mcp` (`tests/run.sh` does both).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::procs::Proc;
use crate::{eventually, free_port};

/// `tests/mcp`: the pinned npm packages and `client.mjs`.
pub fn mcp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("mcp")
}

fn installed(dir: &Path) {
    assert!(
        dir.join("node_modules/@modelcontextprotocol/server-everything")
            .exists()
            && dir.join("node_modules/@modelcontextprotocol/sdk").exists(),
        "MCP packages are not installed: run `npm ci --prefix tests/mcp` (tests/run.sh does)"
    );
}

/// An MCP transport, as both the server and the client speak it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Streamable HTTP (MCP 2025-03-26 and later): one endpoint, `/mcp`, with sessions
    /// carried in the `Mcp-Session-Id` header.
    StreamableHttp,
    /// The legacy HTTP+SSE transport (MCP 2024-11-05): an event stream at `/sse` that
    /// names a `/message?sessionId=…` endpoint for the client's POSTs.
    Sse,
}

impl Transport {
    /// The path a client connects to.
    pub fn path(self) -> &'static str {
        match self {
            Self::StreamableHttp => "/mcp",
            Self::Sse => "/sse",
        }
    }

    fn server_arg(self) -> &'static str {
        match self {
            Self::StreamableHttp => "streamableHttp",
            Self::Sse => "sse",
        }
    }

    fn client_arg(self) -> &'static str {
        match self {
            Self::StreamableHttp => "streamable",
            Self::Sse => "sse",
        }
    }
}

/// A running `mcp-server-everything` on a free loopback port, killed on drop.
pub struct EverythingServer {
    _proc: Proc,
    /// Base URL, e.g. `http://127.0.0.1:PORT` (no path).
    pub url: String,
    /// Its port.
    pub port: u16,
    /// The transport it serves.
    pub transport: Transport,
}

impl EverythingServer {
    /// Starts it serving `transport` and waits until it accepts connections.
    pub async fn start(transport: Transport) -> Self {
        let dir = mcp_dir();
        installed(&dir);
        let port = free_port();
        let proc = Proc::spawn(
            Command::new("node")
                .arg(dir.join("node_modules/.bin/mcp-server-everything"))
                .arg(transport.server_arg())
                .env("PORT", port.to_string())
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        eventually(
            Duration::from_secs(20),
            "mcp-server-everything to listen",
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await;
        Self {
            _proc: proc,
            url: format!("http://127.0.0.1:{port}"),
            port,
            transport,
        }
    }
}

/// What `client.mjs` reports after a successful session.
#[derive(Debug)]
pub struct ClientRun {
    /// Exit status was success.
    pub success: bool,
    /// Its stdout: on success, one JSON object
    /// `{sessionId, endpoint, server, tools, echo}`.
    pub stdout: String,
    /// Its stderr: on failure, the SDK's error.
    pub stderr: String,
}

impl ClientRun {
    /// The JSON result; panics (showing stderr) unless the client succeeded.
    pub fn json(&self) -> serde_json::Value {
        assert!(
            self.success,
            "MCP client failed:\n{}\n{}",
            self.stdout, self.stderr
        );
        serde_json::from_str(self.stdout.trim()).expect("client.mjs prints JSON")
    }
}

/// Runs the SDK client against `url` over `transport`: connect, `tools/list`, then
/// `tools/call echo {message}`, with `Authorization: Bearer {token}` when `token` is given.
/// `localhost` resolves to 127.0.0.1 first, as the data plane listens there.
pub async fn run_client(
    transport: Transport,
    url: &str,
    message: &str,
    token: Option<&str>,
) -> ClientRun {
    let dir = mcp_dir();
    installed(&dir);
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg("--dns-result-order=ipv4first")
        .arg(dir.join("client.mjs"))
        .args([transport.client_arg(), url, message])
        .args(token)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("MCP client timed out after 60 s")
        .expect("run node client.mjs");
    ClientRun {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The SDK client doing MCP authorization itself, paused where a browser would take over.
pub struct AuthorizingClient {
    child: tokio::process::Child,
    stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    /// The authorization request the SDK built (discovered endpoint, registered
    /// `client_id`, PKCE challenge, `resource`, `scope`, `redirect_uri`).
    pub authorize: url::Url,
}

impl AuthorizingClient {
    /// Starts the SDK client against Streamable HTTP `url` with an OAuth provider that
    /// redirects to `redirect_uri`; returns once it has answered the 401 with discovery
    /// and registration and asks the user to visit its authorization URL. Panics (with the
    /// client's stderr) if it never gets there.
    pub async fn start(url: &str, message: &str, redirect_uri: &str) -> Self {
        let dir = mcp_dir();
        installed(&dir);
        let mut child = tokio::process::Command::new("node")
            .arg("--dns-result-order=ipv4first")
            .arg(dir.join("client.mjs"))
            .args(["streamable-oauth", url, message, redirect_uri])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run node client.mjs");
        let mut stdout =
            tokio::io::BufReader::new(child.stdout.take().expect("client stdout")).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), stdout.next_line())
            .await
            .expect("MCP client never asked for authorization")
            .expect("read client stdout");
        let Some(line) = line else {
            let out = child.wait_with_output().await.expect("client exit");
            panic!(
                "MCP client exited before authorization: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let doc: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("client printed {line:?}, not JSON"));
        let authorize = doc["authorize"]
            .as_str()
            .and_then(|u| url::Url::parse(u).ok())
            .unwrap_or_else(|| panic!("no authorization URL in {doc}"));
        Self {
            child,
            stdout,
            authorize,
        }
    }

    /// Hands the client the URL the browser was redirected to (carrying `code`); it
    /// exchanges the code, connects with the token, lists tools and calls `echo`.
    pub async fn finish(mut self, redirected_to: &str) -> ClientRun {
        let mut stdin = self.child.stdin.take().expect("client stdin");
        stdin
            .write_all(format!("{redirected_to}\n").as_bytes())
            .await
            .expect("write to client");
        drop(stdin);
        let mut stderr = self.child.stderr.take().expect("client stderr");
        let work = async {
            let mut stdout = String::new();
            while let Some(line) = self.stdout.next_line().await.expect("read client stdout") {
                stdout.push_str(&line);
                stdout.push('\n');
            }
            let mut err = String::new();
            stderr
                .read_to_string(&mut err)
                .await
                .expect("read client stderr");
            let status = self.child.wait().await.expect("client exit");
            ClientRun {
                success: status.success(),
                stdout,
                stderr: err,
            }
        };
        tokio::time::timeout(Duration::from_secs(60), work)
            .await
            .expect("MCP client timed out after 60 s")
    }
}
