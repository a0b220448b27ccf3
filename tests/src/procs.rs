//! The real processes under test, each killed when its handle drops. Both binaries bind
//! port 0 and announce the bound addresses on stdout (`… listening http=ADDR …`), so
//! parallel tests never race for a port; a restart reuses the ports of the first start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

pub use portcullis_test_support::{Proc, listening_addr};
use tokio::sync::oneshot;

use crate::{eventually, http_client};

/// Waits (20 s at most) for the line a process announces its bound addresses with, and
/// reads `keys` from it; `None` if the process closed stdout (exited) first.
async fn announced<const N: usize>(
    line: oneshot::Receiver<String>,
    what: &str,
    keys: [&str; N],
) -> Option<[Option<SocketAddr>; N]> {
    let line = tokio::time::timeout(Duration::from_secs(20), line)
        .await
        .unwrap_or_else(|_| panic!("{what} did not announce its addresses within 20 s"))
        .ok()?;
    Some(keys.map(|key| listening_addr(&line, key)))
}

/// Path of a workspace binary built by `cargo build` (`PORTCULLIS_TEST_PROFILE=release`:
/// by `cargo build --release`, for measurements).
pub fn bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let profile = std::env::var("PORTCULLIS_TEST_PROFILE").unwrap_or_else(|_| "debug".into());
    let path = target.join(profile).join(name);
    assert!(
        path.exists(),
        "{} missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// A running `portcullis-control-plane serve`.
pub struct ControlPlane {
    proc: Proc,
    /// Keeps the embedded store alive.
    pub data_dir: tempfile::TempDir,
    /// REST base, e.g. `http://127.0.0.1:PORT`.
    pub http: String,
    /// gRPC URL for the CLI and data planes.
    pub grpc: String,
    /// An admin token created before start.
    pub admin_token: String,
    redis_url: Option<String>,
    /// `(cert, key)` PEM files for a TLS gRPC listener; the cert is also the CA to trust.
    grpc_tls: Option<(PathBuf, PathBuf)>,
    /// The CA that signed the gRPC certificate, when it is not self-signed.
    grpc_ca: Option<PathBuf>,
    extra_args: Vec<String>,
    http_port: u16,
    grpc_port: u16,
    /// With [`Self::start_logged`]: the file its stdout and stderr (at debug) go to.
    output: Option<(tempfile::TempDir, PathBuf)>,
}

impl ControlPlane {
    /// Starts one on the embedded store.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Starts one, on Redis when `redis_url` is given.
    pub async fn start_with(redis_url: Option<&str>) -> Self {
        Self::start_full(redis_url, None, vec![]).await
    }

    /// Starts one whose gRPC listener uses TLS with these PEM files.
    pub async fn start_tls(cert: PathBuf, key: PathBuf) -> Self {
        Self::start_full(None, Some((cert, key)), vec![]).await
    }

    /// Starts one whose gRPC listener uses TLS with a certificate signed by the CA in `ca`,
    /// with extra `serve` flags.
    pub async fn start_tls_ca(
        cert: PathBuf,
        key: PathBuf,
        ca: PathBuf,
        extra_args: Vec<String>,
    ) -> Self {
        let mut cp = Self::start_full(None, Some((cert, key)), extra_args).await;
        cp.grpc_ca = Some(ca);
        cp
    }

    /// Starts one on Redis when `redis_url` is given, with extra `serve` flags.
    pub async fn start_redis_args(redis_url: Option<&str>, extra_args: Vec<String>) -> Self {
        Self::start_full(redis_url, None, extra_args).await
    }

    /// Starts one on the embedded store with extra `serve` flags (e.g. ACME settings).
    pub async fn start_args(extra_args: Vec<String>) -> Self {
        Self::start_full(None, None, extra_args).await
    }

    /// Starts one (on Redis when `redis_url` is given) logging at debug level, its stdout
    /// and stderr kept for [`Self::output`].
    pub async fn start_logged(redis_url: Option<&str>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("output.log");
        Self::start_inner(redis_url, None, vec![], Some((dir, file))).await
    }

    /// Everything a [`Self::start_logged`] control plane wrote to stdout and stderr so far.
    pub fn output(&self) -> String {
        let (_, file) = self.output.as_ref().expect("started with start_logged");
        std::fs::read_to_string(file).unwrap_or_default()
    }

    async fn start_full(
        redis_url: Option<&str>,
        grpc_tls: Option<(PathBuf, PathBuf)>,
        extra_args: Vec<String>,
    ) -> Self {
        Self::start_inner(redis_url, grpc_tls, extra_args, None).await
    }

    async fn start_inner(
        redis_url: Option<&str>,
        grpc_tls: Option<(PathBuf, PathBuf)>,
        extra_args: Vec<String>,
        output: Option<(tempfile::TempDir, PathBuf)>,
    ) -> Self {
        let data_dir = tempfile::tempdir().expect("tempdir");
        let mut create = Command::new(bin("portcullis-control-plane"));
        create
            .args(["token", "create-admin", "--data-dir"])
            .arg(data_dir.path());
        if let Some(url) = redis_url {
            create.args(["--redis-url", url]);
        }
        let out = create.output().expect("token create-admin");
        assert!(
            out.status.success(),
            "create-admin failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let admin_token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(
            admin_token.starts_with("pcs_"),
            "unexpected token output {admin_token:?}"
        );
        let mut cp = Self {
            proc: Proc::none(),
            data_dir,
            http: String::new(),
            grpc: String::new(),
            admin_token,
            redis_url: redis_url.map(str::to_owned),
            grpc_tls,
            grpc_ca: None,
            extra_args,
            // Bound by the process; learnt from its announcement.
            http_port: 0,
            grpc_port: 0,
            output,
        };
        assert!(cp.try_restart().await, "control plane exited at start");
        cp
    }

    /// Starts (again) on the same ports and store.
    pub async fn restart(&mut self) {
        assert!(self.try_restart().await, "control plane exited at start");
    }

    /// Starts on the current ports (0 = any); `false` if the process exited before
    /// `/health` answered (e.g. a port was taken).
    async fn try_restart(&mut self) -> bool {
        self.proc.kill();
        let mut cmd = Command::new(bin("portcullis-control-plane"));
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .args(["--http-listen", &format!("127.0.0.1:{}", self.http_port)])
            .args(["--grpc-listen", &format!("127.0.0.1:{}", self.grpc_port)])
            .env(
                "PORTCULLIS_LOG",
                std::env::var("PORTCULLIS_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            );
        if let Some(url) = &self.redis_url {
            cmd.args(["--redis-url", url]);
        }
        cmd.args(&self.extra_args);
        if let Some((cert, key)) = &self.grpc_tls {
            cmd.arg("--grpc-tls-cert")
                .arg(cert)
                .arg("--grpc-tls-key")
                .arg(key);
        }
        let mut copy = None;
        if let Some((_, file)) = &self.output {
            let open = || {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(file)
                    .expect("control-plane output file")
            };
            cmd.env("PORTCULLIS_LOG", "debug").stderr(open());
            copy = Some(open());
        }
        let line;
        (self.proc, line) =
            Proc::spawn_announcing_copy(&mut cmd, "portcullis-control-plane listening ", copy);
        let Some([Some(http), Some(grpc)]) =
            announced(line, "control plane", ["http", "grpc"]).await
        else {
            return false;
        };
        (self.http_port, self.grpc_port) = (http.port(), grpc.port());
        self.http = format!("http://127.0.0.1:{}", self.http_port);
        self.grpc = match self.grpc_tls {
            Some(_) => format!("https://localhost:{}", self.grpc_port),
            None => format!("http://127.0.0.1:{}", self.grpc_port),
        };
        let health = format!("{}/health", self.http);
        self.proc
            .answers_or_exits(&health, "control plane /health")
            .await
    }

    /// Stops it (SIGKILL).
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// The OS process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// Runs the CLI as admin; panics unless it succeeds, returning stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(&self.admin_token, args);
        assert!(
            out.status.success(),
            "portcullis {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Protects `host` in `forward` mode through the CLI (`proxy auth enable HOST
    /// --auth-host AUTH_HOST --mode forward [--scope SCOPE]`); panics unless it succeeds.
    pub fn enable_forward_auth(&self, host: &str, auth_host: &str, scope: Option<&str>) {
        match scope {
            Some(scope) => self.enable_forward_auth_with(host, auth_host, &["--scope", scope]),
            None => self.enable_forward_auth_with(host, auth_host, &[]),
        }
    }

    /// [`Self::enable_forward_auth`] with more `proxy auth enable` flags (`extra`: allow
    /// lists, `--forward-token`, `--identity-header`, …).
    pub fn enable_forward_auth_with(&self, host: &str, auth_host: &str, extra: &[&str]) {
        let mut args = vec![
            "proxy",
            "auth",
            "enable",
            host,
            "--auth-host",
            auth_host,
            "--mode",
            "forward",
        ];
        args.extend_from_slice(extra);
        self.cli_ok(&args);
    }

    /// Runs the CLI with `token` (trusting the gRPC certificate when TLS is on).
    pub fn cli(&self, token: &str, args: &[&str]) -> Output {
        match self.ca_cert() {
            Some(ca) => {
                let mut full = vec!["--ca-cert", ca];
                full.extend_from_slice(args);
                cli(&self.grpc, token, &full)
            }
            None => cli(&self.grpc, token, args),
        }
    }

    /// Runs `just ARGS` from the repository root against this control plane with `token`:
    /// the justfile's recipes as an operator runs them, with this build's CLI and no user
    /// configuration.
    pub fn just(&self, token: &str, args: &[&str]) -> Output {
        Command::new("just")
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .env("PORTCULLIS_URL", &self.grpc)
            .env("PORTCULLIS_TOKEN", token)
            .env(
                "PORTCULLIS_BIN",
                bin("portcullis").parent().expect("bin dir"),
            )
            .env("XDG_CONFIG_HOME", "/nonexistent")
            .args(args)
            .output()
            .expect("just must be installed (tests/run.sh installs it)")
    }

    /// The CA file clients must trust, when gRPC uses TLS.
    pub fn ca_cert(&self) -> Option<&str> {
        match &self.grpc_ca {
            Some(ca) => ca.to_str(),
            None => self.grpc_tls.as_ref().and_then(|(cert, _)| cert.to_str()),
        }
    }

    /// Creates a data-plane enrolment token.
    pub fn enrolment_token(&self, name: &str) -> String {
        self.cli_ok(&["dataplane-token", "create", name])
            .trim()
            .to_owned()
    }

    /// Newest config version.
    pub async fn version(&self) -> u64 {
        self.dataplanes().await["current_version"]
            .as_u64()
            .unwrap_or(0)
    }

    /// `GET /api/v1/dataplanes` as admin.
    pub async fn dataplanes(&self) -> serde_json::Value {
        http_client()
            .get(format!("{}/api/v1/dataplanes", self.http))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .expect("dataplanes")
            .json()
            .await
            .expect("dataplanes json")
    }

    /// Waits until data plane `node` reports `version` applied.
    pub async fn wait_applied(&self, node: &str, version: u64) {
        eventually(
            Duration::from_secs(20),
            &format!("{node} to apply version {version}"),
            || async move {
                let list = self.dataplanes().await;
                let items = list["items"].as_array()?;
                items
                    .iter()
                    .any(|d| d["node_id"] == node && d["applied_version"].as_u64() >= Some(version))
                    .then_some(())
            },
        )
        .await;
    }
}

/// Runs `portcullis --url URL --token T ARGS…`.
pub fn cli(url: &str, token: &str, args: &[&str]) -> Output {
    Command::new(bin("portcullis"))
        .args(["--url", url, "--token", token])
        .args(args)
        .env_remove("PORTCULLIS_CONFIG")
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .output()
        .expect("run portcullis")
}

/// A running `portcullis-data-plane`.
pub struct DataPlane {
    proc: Proc,
    /// The line announcing the bound addresses, until [`DataPlane::wait_ready`] reads it.
    announcement: Option<oneshot::Receiver<String>>,
    /// Node id it announces.
    pub node_id: String,
    /// Proxy base, e.g. `http://127.0.0.1:PORT`.
    pub http: String,
    /// Admin base with `/healthz` and `/readyz`.
    pub admin: String,
    /// Its snapshot cache.
    pub cache_dir: tempfile::TempDir,
    cp_grpc: String,
    ca_cert: Option<String>,
    token: String,
    http_port: u16,
    admin_port: u16,
    https_port: Option<u16>,
    /// Further command-line arguments, given at every start.
    extra_args: Vec<String>,
}

impl DataPlane {
    /// Enrols and starts one that also serves HTTPS, on the given ports (0: any, read back
    /// with [`DataPlane::http_port`] and [`DataPlane::https_addr`]). Tests that must know a
    /// port before the start (Pebble validates on it) pick it with `free_port`.
    pub async fn start_https(
        cp: &ControlPlane,
        node_id: &str,
        http_port: u16,
        https_port: u16,
    ) -> Self {
        let mut dp = Self::new(cp, node_id);
        dp.http_port = http_port;
        dp.https_port = Some(https_port);
        dp.restart().await;
        dp
    }

    /// As [`DataPlane::start_https`] on any ports, with further command-line arguments.
    pub async fn start_https_args(cp: &ControlPlane, node_id: &str, args: &[&str]) -> Self {
        let mut dp = Self::new(cp, node_id);
        dp.https_port = Some(0);
        dp.extra_args = args.iter().map(|a| (*a).to_owned()).collect();
        dp.restart().await;
        dp
    }

    /// `https://…` base of the HTTPS listener, if any.
    pub fn https_addr(&self) -> Option<std::net::SocketAddr> {
        self.https_port
            .map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p)))
    }

    /// Enrols and starts one, waiting until it is ready.
    pub async fn start(cp: &ControlPlane, node_id: &str) -> Self {
        Self::start_args(cp, node_id, &[]).await
    }

    /// Enrols and starts one with further command-line arguments, waiting until it is ready.
    pub async fn start_args(cp: &ControlPlane, node_id: &str, args: &[&str]) -> Self {
        let mut dp = Self::new(cp, node_id);
        dp.extra_args = args.iter().map(|a| (*a).to_owned()).collect();
        dp.restart().await;
        dp
    }

    /// As [`DataPlane::start_args`], its plain-HTTP listener on `http_port` (0: any).
    pub async fn start_on(cp: &ControlPlane, node_id: &str, http_port: u16, args: &[&str]) -> Self {
        let mut dp = Self::new(cp, node_id);
        dp.http_port = http_port;
        dp.extra_args = args.iter().map(|a| (*a).to_owned()).collect();
        dp.restart().await;
        dp
    }

    fn new(cp: &ControlPlane, node_id: &str) -> Self {
        let token = cp.enrolment_token(node_id);
        Self {
            proc: Proc::none(),
            announcement: None,
            node_id: node_id.to_owned(),
            http: String::new(),
            admin: String::new(),
            cache_dir: tempfile::tempdir().expect("tempdir"),
            cp_grpc: cp.grpc.clone(),
            ca_cert: cp.ca_cert().map(str::to_owned),
            token,
            // Bound by the process; learnt from its announcement.
            http_port: 0,
            admin_port: 0,
            https_port: None,
            extra_args: Vec::new(),
        }
    }

    /// The port of its plain-HTTP listener.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// Starts (again) on the same ports (0 at the first start: any) and cache; waits for
    /// `/readyz`.
    pub async fn restart(&mut self) {
        self.spawn();
        self.wait_ready().await;
    }

    /// Starts the process without waiting (for its addresses either: [`DataPlane::http`]
    /// and [`DataPlane::admin`] are set once [`DataPlane::wait_ready`] returns).
    pub fn spawn(&mut self) {
        self.proc.kill();
        let mut cmd = Command::new(bin("portcullis-data-plane"));
        if let Some(ca) = &self.ca_cert {
            cmd.args(["--ca-cert", ca]);
        }
        if let Some(port) = self.https_port {
            cmd.args(["--https-listen", &format!("127.0.0.1:{port}")]);
        }
        cmd.args(["--control-plane", &self.cp_grpc])
            .args(["--enrolment-token", &self.token])
            .args(["--node-id", &self.node_id])
            .args(["--http-listen", &format!("127.0.0.1:{}", self.http_port)])
            .args(["--admin-listen", &format!("127.0.0.1:{}", self.admin_port)])
            .arg("--cache-dir")
            .arg(self.cache_dir.path())
            .args(&self.extra_args)
            .env(
                "PORTCULLIS_LOG",
                std::env::var("PORTCULLIS_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            );
        let (proc, line) = Proc::spawn_announcing(&mut cmd, "portcullis-data-plane listening ");
        (self.proc, self.announcement) = (proc, Some(line));
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&mut self) {
        assert!(self.ready_unless_exited().await, "data plane exited");
    }

    /// Learns the bound ports, then waits until `/readyz` answers 200 (`true`) or the
    /// process exits (`false`).
    async fn ready_unless_exited(&mut self) -> bool {
        if let Some(line) = self.announcement.take() {
            let Some([Some(http), Some(admin), https]) =
                announced(line, "data plane", ["http", "admin", "https"]).await
            else {
                return false;
            };
            (self.http_port, self.admin_port) = (http.port(), admin.port());
            if self.https_port.is_some() {
                self.https_port = https.map(|a| a.port());
                assert!(self.https_port.is_some(), "no https address announced");
            }
            self.http = format!("http://127.0.0.1:{}", self.http_port);
            self.admin = format!("http://127.0.0.1:{}", self.admin_port);
        }
        let url = format!("{}/readyz", self.admin);
        self.proc.answers_or_exits(&url, "data plane /readyz").await
    }

    /// Stops it (SIGKILL).
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// The OS process id, while running (e.g. to pause it with SIGSTOP).
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// Peak resident memory so far, in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        let pid = self.proc.pid().expect("data plane running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// GET `path` with `Host: host` through this data plane.
    pub async fn get(&self, host: &str, path: &str) -> reqwest::Response {
        http_client()
            .get(format!("{}{path}", self.http))
            .header("host", host)
            .send()
            .await
            .expect("request through data plane")
    }
}
