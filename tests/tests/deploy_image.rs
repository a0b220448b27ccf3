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

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use portcullis_tests::procs::bin;
use portcullis_tests::{eventually, http_client};

const DOCKERFILE: &str = include_str!("../../deploy/Dockerfile");

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI")
}

fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

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

/// The instructions of stage `name` (`FROM … AS name` up to the next `FROM`), without its
/// `FROM` line, with `COPY --from=build /out/X` made a copy of context path `out/X`.
fn stage(name: &str) -> String {
    let header = format!(" AS {name}");
    let mut lines = DOCKERFILE
        .lines()
        .skip_while(|l| !(l.starts_with("FROM ") && l.ends_with(&header)));
    assert!(
        lines.next().is_some(),
        "stage {name} missing from deploy/Dockerfile"
    );
    let body: Vec<String> = lines
        .take_while(|l| !l.starts_with("FROM "))
        .map(|l| {
            l.replace("COPY --from=build ", "COPY ")
                .replace(" /out/", " out/")
        })
        .collect();
    assert!(
        !body.iter().any(|l| l.contains("--from=")),
        "stage {name} copies from a stage the test does not build"
    );
    body.join("\n")
}

/// The shared libraries `ldd` lists for `binary` (the loader included).
fn shared_libraries(binary: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(binary).output().expect("ldd");
    assert!(out.status.success(), "ldd {}", binary.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux… (0x…)"
            let path = l.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

fn copy_into(root: &Path, file: &Path) {
    let dest = root.join(file.strip_prefix("/").expect("absolute path"));
    std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
    // Follows symlinks: the image gets the library itself under the name the loader asks for.
    std::fs::copy(file, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", file.display()));
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
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
    let ctx = tempfile::tempdir().expect("tempdir");
    let rootfs = ctx.path().join("rootfs");
    let binary = bin("portcullis-control-plane");
    for lib in shared_libraries(&binary) {
        copy_into(&rootfs, &lib);
    }
    copy_into(&rootfs, Path::new("/etc/ssl/certs/ca-certificates.crt"));
    std::fs::create_dir_all(rootfs.join("tmp")).expect("mkdir tmp");
    set_mode(&rootfs.join("tmp"), 0o1777);
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
    )
    .expect("passwd");
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnonroot:x:65532:\n").expect("group");
    let out = ctx.path().join("out");
    std::fs::create_dir_all(out.join("bin")).expect("mkdir out/bin");
    std::fs::create_dir_all(out.join("state")).expect("mkdir out/state");
    std::fs::copy(&binary, out.join("bin/portcullis-control-plane")).expect("copy binary");
    let dockerfile = format!("FROM scratch\nCOPY rootfs/ /\n{}\n", stage("control-plane"));
    std::fs::write(ctx.path().join("Dockerfile"), &dockerfile).expect("Dockerfile");
    docker_ok(&[
        "build",
        "-q",
        "-t",
        &cleanup.image,
        &ctx.path().display().to_string(),
    ]);

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
