//! Child processes killed on drop, and the addresses they announce once bound.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::eventually;

/// A child process killed (SIGKILL) on drop.
pub struct Proc(Option<Child>);

impl Proc {
    /// No process (yet).
    pub fn none() -> Self {
        Self(None)
    }

    /// Starts `cmd`.
    pub fn spawn(cmd: &mut Command) -> Self {
        Self(Some(spawn(cmd)))
    }

    /// Starts `cmd` with stdout piped, and hands over the first stdout line that starts with
    /// `prefix` (e.g. `portcullis-data-plane listening `, which names the bound addresses, so
    /// the process can bind port 0). The rest of stdout is read and dropped on a thread, so
    /// the process never blocks on a full pipe. The receiver fails when stdout closes without
    /// such a line: the process exited.
    pub fn spawn_announcing(
        cmd: &mut Command,
        prefix: &'static str,
    ) -> (Self, oneshot::Receiver<String>) {
        Self::spawn_announcing_copy(cmd, prefix, None)
    }

    /// [`Self::spawn_announcing`], also writing every stdout line to `copy` (a test that
    /// inspects what the process printed).
    pub fn spawn_announcing_copy(
        cmd: &mut Command,
        prefix: &'static str,
        mut copy: Option<std::fs::File>,
    ) -> (Self, oneshot::Receiver<String>) {
        use std::io::Write as _;
        let mut child = spawn(cmd.stdout(Stdio::piped()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = oneshot::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(file) = copy.as_mut() {
                    let _ = writeln!(file, "{line}");
                }
                if line.starts_with(prefix)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(line);
                }
            }
        });
        (Self(Some(child)), rx)
    }

    /// OS process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.0.as_ref().map(Child::id)
    }

    /// Whether the process has exited (it was started and is gone).
    pub fn exited(&mut self) -> bool {
        self.0
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// Polls `url` until it answers 2xx (`true`) or the process exits (`false`); panics
    /// naming `what` after 20 s.
    pub async fn answers_or_exits(&mut self, url: &str, what: &str) -> bool {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("reqwest client");
        eventually(Duration::from_secs(20), what, || {
            let exited = self.exited();
            let request = client.get(url).send();
            async move {
                if exited {
                    return Some(false);
                }
                request.await.ok()?.status().is_success().then_some(true)
            }
        })
        .await
    }

    /// Kills the process now.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(cmd: &mut Command) -> Child {
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()))
}

/// The address after `key=` in an announcement line such as
/// `portcullis-data-plane listening http=127.0.0.1:4242 admin=127.0.0.1:4343`.
pub fn listening_addr(line: &str, key: &str) -> Option<SocketAddr> {
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(prefix.as_str()))?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::listening_addr;

    #[test]
    fn reads_each_announced_address() {
        let line = "portcullis-data-plane listening http=127.0.0.1:4242 https=127.0.0.1:4444 admin=127.0.0.1:4343";
        assert_eq!(
            listening_addr(line, "http"),
            Some(([127, 0, 0, 1], 4242).into())
        );
        assert_eq!(
            listening_addr(line, "https"),
            Some(([127, 0, 0, 1], 4444).into())
        );
        assert_eq!(
            listening_addr(line, "admin"),
            Some(([127, 0, 0, 1], 4343).into())
        );
        assert_eq!(listening_addr(line, "grpc"), None);
    }
}
