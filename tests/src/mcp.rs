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
