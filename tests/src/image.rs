//! Container images built the only way the test machines can: no registry is reachable, so
//! an image is `FROM scratch` plus what a distroless runtime base provides and a binary
//! needs (the shared libraries `ldd` lists, the CA bundle, `/etc/passwd` with user 65532,
//! `/tmp`), then the instructions of one stage of `deploy/Dockerfile` verbatim, with
//! `COPY --from=build /out/…` taken from the locally built binaries.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `deploy/Dockerfile`.
pub const DOCKERFILE: &str = include_str!("../../deploy/Dockerfile");

/// Runs `docker ARGS`.
pub fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI")
}

/// Runs `docker ARGS`, panicking with its output unless it succeeds; its trimmed stdout.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The instructions of stage `name` of [`DOCKERFILE`] (`FROM … AS name` up to the next
/// `FROM`), without its `FROM` line, with `COPY --from=build /out/X` made a copy of context
/// path `out/X`.
pub fn stage(name: &str) -> String {
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
pub fn shared_libraries(binary: &Path) -> Vec<PathBuf> {
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

/// Copies `file` (following symlinks) to the same absolute path under `root`.
pub fn copy_into(root: &Path, file: &Path) {
    let dest = root.join(file.strip_prefix("/").expect("absolute path"));
    std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
    // Follows symlinks: the image gets the library itself under the name the loader asks for.
    std::fs::copy(file, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", file.display()));
}

/// `chmod mode path`.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Fills `rootfs` with what the distroless base provides and `binaries` need: their
/// libraries, the CA bundle, `/tmp`, and user and group 65532 (`nonroot`).
pub fn runtime_rootfs(rootfs: &Path, binaries: &[&Path]) {
    for binary in binaries {
        for lib in shared_libraries(binary) {
            copy_into(rootfs, &lib);
        }
    }
    copy_into(rootfs, Path::new("/etc/ssl/certs/ca-certificates.crt"));
    std::fs::create_dir_all(rootfs.join("tmp")).expect("mkdir tmp");
    set_mode(&rootfs.join("tmp"), 0o1777);
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
    )
    .expect("passwd");
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnonroot:x:65532:\n").expect("group");
}

/// Builds image `tag` of the `deploy/Dockerfile` stage `target` around the locally built
/// binary `binary` (copied as `out/bin/NAME`), in a fresh context.
pub fn build_stage(tag: &str, target: &str, binary: &Path) {
    let ctx = tempfile::tempdir().expect("tempdir");
    runtime_rootfs(&ctx.path().join("rootfs"), &[binary]);
    let out = ctx.path().join("out");
    std::fs::create_dir_all(out.join("bin")).expect("mkdir out/bin");
    std::fs::create_dir_all(out.join("state")).expect("mkdir out/state");
    let name = binary.file_name().expect("binary name");
    std::fs::copy(binary, out.join("bin").join(name)).expect("copy binary");
    let dockerfile = format!("FROM scratch\nCOPY rootfs/ /\n{}\n", stage(target));
    std::fs::write(ctx.path().join("Dockerfile"), &dockerfile).expect("Dockerfile");
    docker_ok(&["build", "-q", "-t", tag, &ctx.path().display().to_string()]);
}
