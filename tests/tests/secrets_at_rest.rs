//! Secrets at rest: what the binaries leave on disk and on their command lines.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use portcullis_tests::procs::{Proc, bin};
use portcullis_tests::{eventually, free_port, http_client};

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

/// Under the usual umask 022, a data directory the control plane creates is 0700 and its
/// store and master key are 0600.
#[tokio::test]
async fn the_control_plane_writes_private_files_only() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("state/control-plane");
    let http = format!("127.0.0.1:{}", free_port());
    let mut proc = Proc::spawn(
        Command::new("sh")
            .args(["-c", "umask 022 && exec \"$@\"", "sh"])
            .arg(bin("portcullis-control-plane"))
            .arg("serve")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--http-listen", &http])
            .args(["--grpc-listen", &format!("127.0.0.1:{}", free_port())])
            .env("PORTCULLIS_LOG", "warn")
            .stdout(Stdio::null()),
    );
    let client = http_client();
    eventually(Duration::from_secs(20), "control plane /health", || {
        let request = client.get(format!("http://{http}/health")).send();
        async move { request.await.ok()?.status().is_success().then_some(()) }
    })
    .await;
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
