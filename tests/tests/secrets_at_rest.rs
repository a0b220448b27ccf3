//! Secrets at rest: what the binaries leave on disk and on their command lines.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use portcullis_tests::procs::{Proc, bin, listening_addr};
use portcullis_tests::{ControlPlane, DataPlane, eventually};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Every file in `dir`, with its contents.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), std::fs::read(&p).expect("read")))
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Under the usual umask 022, a data directory the control plane creates is 0700 and its
/// store and master key are 0600.
#[tokio::test]
async fn the_control_plane_writes_private_files_only() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("state/control-plane");
    let (mut proc, announced) = Proc::spawn_announcing(
        Command::new("sh")
            .args(["-c", "umask 022 && exec \"$@\"", "sh"])
            .arg(bin("portcullis-control-plane"))
            .arg("serve")
            .arg("--data-dir")
            .arg(&data_dir)
            .args([
                "--http-listen",
                "127.0.0.1:0",
                "--grpc-listen",
                "127.0.0.1:0",
            ])
            .env("PORTCULLIS_LOG", "warn"),
        "portcullis-control-plane listening ",
    );
    let line = tokio::time::timeout(Duration::from_secs(20), announced)
        .await
        .expect("control plane announces its addresses within 20 s")
        .expect("control plane exited at start");
    let http = listening_addr(&line, "http").expect("http address");
    assert!(
        proc.answers_or_exits(&format!("http://{http}/health"), "control plane /health")
            .await,
        "control plane exited"
    );
    proc.kill();
    assert_eq!(mode(&root.path().join("state")), 0o700);
    assert_eq!(mode(&data_dir), 0o700);
    let written = files(&data_dir);
    let names: Vec<&str> = written.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.iter().any(|n| n.ends_with("/portcullis.redb"))
            && names.iter().any(|n| n.ends_with("/master.key")),
        "{names:?}"
    );
    for (name, _) in &written {
        assert_eq!(mode(Path::new(name)), 0o600, "{name}");
    }
}

/// The data plane's snapshot cache holds the certificate's private key and the cookie
/// sealing key only sealed, and still serves after a restart without the control plane.
#[tokio::test]
async fn the_snapshot_cache_holds_no_key_in_plain_text() {
    let mut cp = ControlPlane::start().await;
    let mut dp = DataPlane::start(&cp, "dp-sealed").await;
    let backend = portcullis_tests::Backend::start("sealed").await;
    // A `localhost` name gets a self-signed certificate at once, so its key is in the
    // snapshot; redirect mode puts the cookie-sealing key there.
    cp.cli_ok(&["proxy", "create", "app.localhost", &backend.url, "--https"]);
    cp.cli_ok(&[
        "proxy",
        "auth",
        "enable",
        "app.localhost",
        "--auth-host",
        "auth.localhost",
        "--mode",
        "redirect",
        "--public-path",
        "/health",
    ]);
    let certs = eventually(Duration::from_secs(20), "certificate issued", || async {
        let out = cp.cli_ok(&["cert", "list", "--output", "json"]);
        out.contains("app.localhost").then_some(out)
    })
    .await;
    assert!(certs.contains("app.localhost"), "{certs}");
    let version = cp.version().await;
    cp.wait_applied("dp-sealed", version).await;
    // The cache is written just after the ACK.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let cached = files(dp.cache_dir.path());
    assert!(!cached.is_empty());
    for (name, bytes) in &cached {
        assert!(!contains(bytes, b"PRIVATE KEY"), "{name} holds a PEM key");
        assert!(!contains(bytes, b"app.localhost"), "{name} is not sealed");
        assert_eq!(mode(Path::new(name)), 0o600, "{name}");
    }
    assert_eq!(mode(dp.cache_dir.path()), 0o700);

    // Restarted while the control plane is down, it serves from the sealed cache.
    cp.kill();
    dp.kill();
    dp.restart().await;
    let resp = dp.get("app.localhost", "/health").await;
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("sealed"));
}

fn data_plane(cp: &ControlPlane, node: &str, cache: &Path) -> Command {
    let mut cmd = Command::new(bin("portcullis-data-plane"));
    cmd.args(["--control-plane", &cp.grpc, "--node-id", node])
        .args([
            "--http-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--cache-dir")
        .arg(cache)
        .env_remove("PORTCULLIS_ENROLMENT_TOKEN")
        .env("PORTCULLIS_LOG", "warn");
    cmd
}

/// `--enrolment-token-file` keeps the token off the command line; giving it and the token
/// itself is refused at start-up.
#[tokio::test]
async fn a_data_plane_reads_its_token_from_a_file() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = cp.enrolment_token("dp-file");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();

    let _dp = Proc::spawn(
        data_plane(&cp, "dp-file", &dir.path().join("cache"))
            .arg("--enrolment-token-file")
            .arg(&token_file)
            .stdout(Stdio::null()),
    );
    eventually(Duration::from_secs(20), "dp-file to connect", || async {
        let list = cp.dataplanes().await;
        list["items"]
            .as_array()?
            .iter()
            .any(|d| d["node_id"] == "dp-file" && d["connected"] == true)
            .then_some(())
    })
    .await;

    let out = data_plane(&cp, "dp-both", &dir.path().join("cache2"))
        .arg("--enrolment-token-file")
        .arg(&token_file)
        .args(["--enrolment-token", &token])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--enrolment-token-file") && err.contains("cannot be used with"),
        "{err}"
    );
    assert!(!err.contains(&token), "the error repeats the token: {err}");
}
