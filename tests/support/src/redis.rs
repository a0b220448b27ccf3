//! A private `redis-server` (the one helper the control plane's store tests and the
//! end-to-end suite both had a copy of).

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{Proc, eventually, free_port};

/// A private `redis-server` on a free loopback port, without persistence, killed on drop.
/// `redis-server --port 0` disables TCP, so the port is picked before start ([`free_port`]).
pub struct RedisServer {
    _proc: Proc,
    /// `redis://127.0.0.1:PORT/0`
    pub url: String,
    /// Its port.
    pub port: u16,
}

impl RedisServer {
    /// Starts it and waits until it accepts connections.
    pub async fn start() -> Self {
        let port = free_port();
        let proc = Proc::spawn(
            Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(Stdio::null()),
        );
        eventually(
            Duration::from_secs(10),
            "redis-server to listen (is it installed? tests/run.sh installs it)",
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
            url: format!("redis://127.0.0.1:{port}/0"),
            port,
        }
    }

    /// Runs `redis-cli` against it, returning its trimmed stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}
