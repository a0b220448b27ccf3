//! The container image of `deploy/Dockerfile`, built the only way this machine can: no
//! registry is reachable, so neither the Rust build image nor the distroless runtime can
//! be pulled. The test builds an equivalent image instead: `FROM scratch` plus what the
//! runtime base provides and the binary needs (the shared libraries `ldd` lists, the CA
//! bundle, `/etc/passwd` with user 65532, `/tmp`), then the Dockerfile's own
//! `control-plane` stage instructions verbatim (ENV, USER, EXPOSE, VOLUME, ENTRYPOINT),
//! with `COPY --from=build /out/…` taken from the locally built binary. It runs that image
//! under the local dockerd as a non-root user with gRPC TLS from a mounted secret and
//! checks `/healthz`, `/readyz` (the embedded store is writable in the image's state
//! directory) and the JSON log lines.

use std::time::Duration;

use portcullis_tests::image::{build_stage, docker, docker_ok, set_mode};
use portcullis_tests::procs::bin;
use portcullis_tests::{eventually, http_client};

/// Removes the container and image on the way out, passed or not.
struct Cleanup {
    container: String,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.container]);
        let _ = docker(&["rmi", "-f", &self.image]);
    }
}

#[tokio::test]
async fn the_control_plane_image_runs_as_non_root_and_answers_its_probes() {
    let tag = format!("{:08x}", rand::random::<u32>());
    let cleanup = Cleanup {
        container: format!("portcullis-test-cp-image-{tag}"),
        image: format!("portcullis-test-cp-image:{tag}"),
    };

    // The build context: rootfs/ (what the runtime base provides) and out/ (what the build
    // stage produces).
    build_stage(
        &cleanup.image,
        "control-plane",
        &bin("portcullis-control-plane"),
    );

    // gRPC off loopback needs TLS: a certificate mounted read-only as a secret.
    let secrets = tempfile::tempdir().expect("tempdir");
    let cert = rcgen::generate_simple_self_signed(vec!["portcullis-cp".to_owned()]).expect("cert");
    std::fs::write(secrets.path().join("cert.pem"), cert.cert.pem()).expect("cert.pem");
    std::fs::write(
        secrets.path().join("key.pem"),
        cert.signing_key.serialize_pem(),
    )
    .expect("key.pem");
    for f in ["cert.pem", "key.pem"] {
        set_mode(&secrets.path().join(f), 0o644);
    }
    set_mode(secrets.path(), 0o755);
    let mount = format!("{}:/run/secrets/grpc:ro", secrets.path().display());
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &cleanup.container,
        "-p",
        "127.0.0.1::9000",
        "-v",
        &mount,
        "-e",
        "PORTCULLIS_GRPC_TLS_CERT=/run/secrets/grpc/cert.pem",
        "-e",
        "PORTCULLIS_GRPC_TLS_KEY=/run/secrets/grpc/key.pem",
        // Required off loopback: the public origin of the OAuth server.
        "-e",
        "PORTCULLIS_OAUTH_ISSUER=https://auth.example.test",
        &cleanup.image,
    ]);
    let published = docker_ok(&["port", &cleanup.container, "9000/tcp"]);
    let addr = published.lines().next().expect("published port").to_owned();
    let base = format!("http://{addr}");

    let client = http_client();
    let get = |path: &'static str| {
        let (client, url) = (client.clone(), format!("{base}{path}"));
        async move {
            let r = client.get(url).send().await.ok()?;
            Some((r.status().as_u16(), r.text().await.ok()?))
        }
    };
    let logs = || docker_ok(&["logs", &cleanup.container]);
    let healthz = eventually(
        Duration::from_secs(30),
        "the container's /healthz",
        || async { get("/healthz").await.filter(|(s, _)| *s == 200) },
    )
    .await;
    assert_eq!(healthz.1, "ok\n", "{}", logs());
    // Ready: the embedded store opened in /var/lib/portcullis, owned by user 65532.
    assert_eq!(
        get("/readyz").await,
        Some((200, "ready\n".to_owned())),
        "{}",
        logs()
    );

    // Non-root, as the Dockerfile says; and the process really runs as that uid.
    assert_eq!(
        docker_ok(&["inspect", "-f", "{{.Config.User}}", &cleanup.container]),
        "65532:65532"
    );
    let top = docker_ok(&["top", &cleanup.container, "-o", "pid,uid,comm"]);
    let uids: Vec<&str> = top
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert!(
        !uids.is_empty() && uids.iter().all(|u| *u == "65532"),
        "{top}"
    );
    // Its own log lines are JSON (PORTCULLIS_LOG_FORMAT=json in the image), on stderr.
    let out = docker(&["logs", &cleanup.container]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().expect("a log line");
    let line: serde_json::Value = serde_json::from_str(first).expect("a JSON log line");
    assert!(line["level"].is_string(), "{line}");
    let size = docker_ok(&["image", "inspect", "-f", "{{.Size}}", &cleanup.image]);
    println!("control-plane image (debug binary, FROM scratch): {size} bytes");
}
