//! `portcullis-control-plane tls bootstrap`: the CA and server certificate it writes carry a
//! real TLS deployment (control plane, data plane, CLI), it never overwrites or half-writes,
//! and bad input writes nothing.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

use portcullis_tests::procs::bin;
use portcullis_tests::{Backend, ControlPlane, DataPlane};

fn bootstrap(args: &[&str]) -> Output {
    Command::new(bin("portcullis-control-plane"))
        .args(["tls", "bootstrap"])
        .args(args)
        .output()
        .expect("run tls bootstrap")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).map_or(0, |m| m.permissions().mode() & 0o777)
}

const FILES: [&str; 6] = [
    "ca.pem",
    "ca-key.pem",
    "grpc.pem",
    "grpc-key.pem",
    "dataplane.pem",
    "dataplane-key.pem",
];

fn contents(dir: &Path) -> Vec<Vec<u8>> {
    FILES
        .iter()
        .map(|f| std::fs::read(dir.join(f)).expect("read bootstrap file"))
        .collect()
}

#[tokio::test]
async fn bootstrapped_certificates_carry_control_plane_data_plane_and_cli() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("tls");
    let out = bootstrap(&[
        "--out",
        dir.to_str().unwrap(),
        "--name",
        "localhost",
        "--ip",
        "127.0.0.1",
        "--days",
        "30",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let dir = dir.canonicalize().unwrap();
    let (ca, grpc, grpc_key) = (
        dir.join("ca.pem"),
        dir.join("grpc.pem"),
        dir.join("grpc-key.pem"),
    );
    // The exact flags, with the files' paths; never a key.
    for needle in [
        format!("--grpc-tls-cert {}", grpc.display()),
        format!("--grpc-tls-key {}", grpc_key.display()),
        format!("--ca-cert {}", ca.display()),
    ] {
        assert!(stdout.contains(&needle), "{needle:?} missing from {stdout}");
    }
    assert!(!stdout.contains("PRIVATE KEY"), "{stdout}");
    let key_pem = std::fs::read_to_string(&grpc_key).unwrap();
    assert!(key_pem.contains("PRIVATE KEY"));
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(
        FILES.map(|f| mode(&dir.join(f))),
        [0o644, 0o600, 0o644, 0o600, 0o644, 0o600]
    );

    // The control plane serves gRPC with the bootstrapped certificate; clients trust ca.pem.
    let cp = ControlPlane::start_tls_ca(grpc.clone(), grpc_key.clone(), ca.clone(), vec![]).await;
    assert!(cp.grpc.starts_with("https://localhost:"), "{}", cp.grpc);
    assert!(
        cp.cli_ok(&["status", "--output", "json"])
            .contains("\"store_ok\": true")
    );
    // The IP address is in the certificate too.
    let by_ip = cp.grpc.replace("localhost", "127.0.0.1");
    let out = portcullis_tests::cli(
        &by_ip,
        &cp.admin_token,
        &["--ca-cert", ca.to_str().unwrap(), "status"],
    );
    assert!(out.status.success(), "{}", text(&out));

    // Without --ca-cert the CLI does not trust the private CA and refuses to talk.
    let out = portcullis_tests::cli(&cp.grpc, &cp.admin_token, &["status"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    // Trusting the server certificate alone (not a CA) does not do either: the chain has to
    // end at ca.pem.
    let out = portcullis_tests::cli(
        &cp.grpc,
        &cp.admin_token,
        &["--ca-cert", grpc.to_str().unwrap(), "status"],
    );
    assert!(!out.status.success(), "{}", text(&out));

    // A data plane given --ca-cert enrols over TLS and applies the proxy created through
    // the CLI (also with --ca-cert over https).
    let dp = DataPlane::start(&cp, "dp-boot").await;
    let backend = Backend::start("boot").await;
    cp.cli_ok(&["proxy", "create", "boot.example.com", &backend.url]);
    let v = cp.version().await;
    cp.wait_applied("dp-boot", v).await;
    let body: serde_json::Value = dp.get("boot.example.com", "/").await.json().await.unwrap();
    assert_eq!(body["backend"], "boot");

    // A second bootstrap into the same directory refuses, names the file, changes nothing.
    let before = contents(&dir);
    let out = bootstrap(&["--out", dir.to_str().unwrap(), "--name", "localhost"]);
    assert!(!out.status.success());
    let err = text(&out);
    assert!(
        err.contains("ca.pem") && err.contains("already exists"),
        "{err}"
    );
    assert_eq!(contents(&dir), before);
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        6,
        "no stray files"
    );
}

#[test]
fn bad_input_names_the_flag_and_writes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("tls");
    let out_dir = dir.to_str().unwrap();
    for (args, flag) in [
        (vec!["--name", ""], "--name"),
        (vec!["--name", "bad_name.example"], "--name"),
        (vec!["--name", "localhost", "--ip", "1.2.3"], "--ip"),
        (vec!["--name", "localhost", "--days", "0"], "--days"),
        (vec!["--name", "localhost", "--days", "3651"], "--days"),
        (vec![], "--name"),
    ] {
        let mut full = vec!["--out", out_dir];
        full.extend_from_slice(&args);
        let out = bootstrap(&full);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = text(&out);
        assert!(err.contains(flag), "{args:?}: {err}");
        assert!(!dir.exists(), "{args:?} created {}", dir.display());
    }

    // An existing file in the directory blocks the whole run; the other three never appear.
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("grpc.pem"), b"mine").unwrap();
    let out = bootstrap(&["--out", out_dir, "--name", "localhost"]);
    assert!(!out.status.success());
    let err = text(&out);
    assert!(
        err.contains("grpc.pem") && err.contains("already exists"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    assert_eq!(std::fs::read(dir.join("grpc.pem")).unwrap(), b"mine");
}

/// Mutual TLS: with `--grpc-client-ca`, a data plane needs the bootstrapped client
/// certificate; the CLI still works with its token alone.
#[tokio::test]
async fn client_ca_requires_the_data_plane_certificate() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("tls");
    let out = bootstrap(&["--out", dir.to_str().unwrap(), "--name", "localhost"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let path = |f: &str| dir.canonicalize().unwrap().join(f);
    let (ca, dp_cert, dp_key) = (
        path("ca.pem"),
        path("dataplane.pem"),
        path("dataplane-key.pem"),
    );
    for needle in [
        format!("--grpc-client-ca {}", ca.display()),
        format!(
            "--client-cert {} --client-key {}",
            dp_cert.display(),
            dp_key.display()
        ),
    ] {
        assert!(stdout.contains(&needle), "{needle:?} missing from {stdout}");
    }
    let cp = ControlPlane::start_tls_ca(
        path("grpc.pem"),
        path("grpc-key.pem"),
        ca.clone(),
        vec![
            "--grpc-client-ca".to_owned(),
            ca.to_str().unwrap().to_owned(),
        ],
    )
    .await;
    assert!(
        cp.cli_ok(&["status", "--output", "json"])
            .contains("\"store_ok\": true"),
        "the CLI needs no client certificate"
    );

    // Without a client certificate the config stream is refused, with the reason.
    let log = refused_data_plane(&cp, &ca, "dp-nocert", &[], "client certificate").await;
    assert!(
        log.contains("requires a data-plane client certificate (--client-cert"),
        "{log}"
    );
    // A client certificate from another CA (another bootstrap) fails the TLS handshake.
    let other = root.path().join("other");
    let out = bootstrap(&["--out", other.to_str().unwrap(), "--name", "localhost"]);
    assert!(out.status.success(), "{}", text(&out));
    let (other_cert, other_key) = (other.join("dataplane.pem"), other.join("dataplane-key.pem"));
    let log = refused_data_plane(
        &cp,
        &ca,
        "dp-foreign",
        &[
            "--client-cert",
            other_cert.to_str().unwrap(),
            "--client-key",
            other_key.to_str().unwrap(),
        ],
        "config stream ended",
    )
    .await;
    assert!(
        !log.contains("requires a data-plane client certificate"),
        "{log}"
    );
    let listed = cp.dataplanes().await.to_string();
    for node in ["dp-nocert", "dp-foreign"] {
        assert!(
            !listed.contains(node),
            "refused {node} is registered: {listed}"
        );
    }

    // With it, the data plane enrols and applies config.
    let dp = DataPlane::start_args(
        &cp,
        "dp-mtls",
        &[
            "--client-cert",
            dp_cert.to_str().unwrap(),
            "--client-key",
            dp_key.to_str().unwrap(),
        ],
    )
    .await;
    let backend = Backend::start("mtls").await;
    cp.cli_ok(&["proxy", "create", "mtls.example.com", &backend.url]);
    let v = cp.version().await;
    cp.wait_applied("dp-mtls", v).await;
    let body: serde_json::Value = dp.get("mtls.example.com", "/").await.json().await.unwrap();
    assert_eq!(body["backend"], "mtls");
}

/// Runs a data plane enrolled with `cp` (trusting `ca`, with `extra` flags) until its log
/// (at warn) contains `needle`, then stops it and returns the log.
async fn refused_data_plane(
    cp: &ControlPlane,
    ca: &Path,
    node: &str,
    extra: &[&str],
    needle: &str,
) -> String {
    let token = cp.enrolment_token(node);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("dp.log");
    let mut child = Command::new(bin("portcullis-data-plane"))
        .arg("--ca-cert")
        .arg(ca)
        .args(["--control-plane", &cp.grpc, "--enrolment-token", &token])
        .args(["--node-id", node])
        .args([
            "--http-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .args(extra)
        .env("PORTCULLIS_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("data-plane log file"))
        .spawn()
        .expect("spawn portcullis-data-plane");
    let found = portcullis_tests::eventually(
        std::time::Duration::from_secs(20),
        &format!("{node} to log {needle:?}"),
        || async {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.contains(needle).then_some(text)
        },
    )
    .await;
    let _ = child.kill();
    let _ = child.wait();
    found
}
