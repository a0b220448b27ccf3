//! The gRPC listener carries secrets: TLS off loopback, or an explicit, loud opt-out.

use std::process::Command;

use portcullis_tests::procs::bin;
use portcullis_tests::{Backend, ControlPlane, DataPlane};

#[test]
fn plaintext_grpc_off_loopback_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin("portcullis-control-plane"))
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--http-listen", "127.0.0.1:0", "--grpc-listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing plaintext gRPC"), "{err}");
    assert!(err.contains("--insecure-grpc"), "{err}");
}

#[tokio::test]
async fn cli_and_data_planes_work_over_tls_and_verify_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (dir.path().join("grpc.pem"), dir.path().join("grpc.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();

    let cp = ControlPlane::start_tls(cert_path, key_path).await;
    assert!(cp.grpc.starts_with("https://"));
    assert!(
        cp.cli_ok(&["status", "--output", "json"])
            .contains("\"store_ok\": true")
    );

    // Without trusting the certificate the CLI refuses to talk.
    let out = portcullis_tests::cli(&cp.grpc, &cp.admin_token, &["status"]);
    assert!(!out.status.success());
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A data plane enrolled over TLS gets config.
    let dp = DataPlane::start(&cp, "dp-tls").await;
    let a = Backend::start("a").await;
    cp.cli_ok(&["proxy", "create", "tls.example.com", &a.url]);
    let v = cp.version().await;
    cp.wait_applied("dp-tls", v).await;
    let body: serde_json::Value = dp.get("tls.example.com", "/").await.json().await.unwrap();
    assert_eq!(body["backend"], "a");
}
