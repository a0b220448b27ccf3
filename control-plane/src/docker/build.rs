//! Images built from a Dockerfile and a build context, through the Engine API (`POST
//! /build`, bollard's `build_image`); no `docker` CLI.
//!
//! The client sends the Dockerfile's text and, optionally, its context as a plain tar (the
//! CLI makes it in-process from a local directory). The control plane never reads its own
//! disk for a build: a path in a request would let any token copy the control plane's files
//! into an image. The context is re-packed here, entry by entry, so what reaches the engine
//! is known to be bounded and confined:
//! - at most [`MAX_CONTEXT_BYTES`] of tar and of file data, [`MAX_ENTRIES`] entries;
//! - only relative paths without `..`, and only files, directories and links whose target
//!   stays inside the context (anything else is a 400 naming `build_context`);
//! - the Dockerfile is added as [`DOCKERFILE_ENTRY`] (a context may not hold that name).
//!
//! The build is tagged `portcullis-build/NAME:latest`, never a name the caller picks, so a
//! `user` token cannot replace an image another service runs. A failed build is a 422
//! whose message starts with `dockerfile:` with the engine's message and the last lines of its output; a build
//! longer than [`BUILD_TIMEOUT`] is abandoned (the engine stops when the request goes).
//!
//! The image goes with its service: deleted with it, and removed when a create is rolled
//! back after the build.
//!
//! Costs: the context is held in memory twice (received and re-packed) during a create.

use std::collections::VecDeque;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use bollard::query_parameters::{BuildImageOptionsBuilder, RemoveImageOptions};
use futures_util::StreamExt as _;
use serde::Deserialize;

use super::Docker;
use super::spec::ContainerService;
use crate::error::ServiceError;

type Result<T> = std::result::Result<T, ServiceError>;

/// Largest build context (tar bytes, and file data within it).
pub const MAX_CONTEXT_BYTES: usize = 32 << 20;
/// Most entries in a build context.
pub const MAX_ENTRIES: usize = 20_000;
/// Longest Dockerfile.
pub const MAX_DOCKERFILE_BYTES: usize = 64 << 10;
/// Name the Dockerfile gets in the context sent to the engine.
pub const DOCKERFILE_ENTRY: &str = ".portcullis.Dockerfile";
/// Longest a build may run.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(600);
/// Output lines kept for the error message of a failed build.
const KEPT_LINES: usize = 20;

/// The tag a service's build gets.
pub fn tag_for(service: &str) -> String {
    format!("portcullis-build/{service}:latest")
}

/// Deserializes an optional base64 string (standard alphabet, padded) into bytes, bounded.
pub(crate) fn base64_opt<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Vec<u8>>, D::Error> {
    use base64::Engine as _;
    let Some(s) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    if s.len() > MAX_CONTEXT_BYTES / 3 * 4 + 4 {
        return Err(serde::de::Error::custom(format!(
            "build_context: larger than {} MiB",
            MAX_CONTEXT_BYTES >> 20
        )));
    }
    base64::engine::general_purpose::STANDARD
        .decode(s.as_bytes())
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("build_context: not base64: {e}")))
}

/// Validates the Dockerfile and the context and makes the tar sent to the engine.
pub fn context(dockerfile: &str, context: Option<&[u8]>) -> Result<Vec<u8>> {
    if dockerfile.trim().is_empty() || dockerfile.len() > MAX_DOCKERFILE_BYTES {
        return Err(ServiceError::invalid(
            "dockerfile",
            format!(
                "must be the Dockerfile's text, 1-{} KiB",
                MAX_DOCKERFILE_BYTES >> 10
            ),
        ));
    }
    let bad = |why: String| ServiceError::invalid("build_context", why);
    let mut out = tar::Builder::new(Vec::new());
    out.mode(tar::HeaderMode::Deterministic);
    if let Some(ctx) = context {
        if ctx.len() > MAX_CONTEXT_BYTES {
            return Err(bad(format!("larger than {} MiB", MAX_CONTEXT_BYTES >> 20)));
        }
        let mut archive = tar::Archive::new(ctx);
        let entries = archive
            .entries()
            .map_err(|e| bad(format!("not a tar archive: {e}")))?;
        let (mut count, mut data) = (0usize, 0u64);
        for entry in entries {
            let mut entry = entry.map_err(|e| bad(format!("not a tar archive: {e}")))?;
            count += 1;
            if count > MAX_ENTRIES {
                return Err(bad(format!("more than {MAX_ENTRIES} entries")));
            }
            let path = entry
                .path()
                .map_err(|e| bad(format!("an entry has an unreadable path: {e}")))?
                .into_owned();
            let path = confined(&path).ok_or_else(|| {
                bad(format!(
                    "{}: paths must be relative and stay inside the context",
                    path.display()
                ))
            })?;
            if path == Path::new(DOCKERFILE_ENTRY) {
                return Err(bad(format!("{DOCKERFILE_ENTRY} is reserved")));
            }
            let mut header = entry.header().clone();
            let kind = header.entry_type();
            data += header.size().unwrap_or(0);
            if data > MAX_CONTEXT_BYTES as u64 {
                return Err(bad(format!(
                    "more than {} MiB of file data",
                    MAX_CONTEXT_BYTES >> 20
                )));
            }
            let io = |e: std::io::Error| bad(format!("{}: {e}", path.display()));
            match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    out.append_data(&mut header, &path, &mut entry)
                        .map_err(io)?;
                }
                tar::EntryType::Directory => {
                    out.append_data(&mut header, &path, std::io::empty())
                        .map_err(io)?;
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry
                        .link_name()
                        .map_err(io)?
                        .ok_or_else(|| bad(format!("{}: a link without target", path.display())))?
                        .into_owned();
                    // A symlink resolves from its own directory, a hard link from the root.
                    let resolved = if kind == tar::EntryType::Symlink {
                        path.parent().unwrap_or(Path::new("")).join(&target)
                    } else {
                        target.clone()
                    };
                    if target.is_absolute() || confined(&resolved).is_none() {
                        return Err(bad(format!(
                            "{} links to {} outside the context",
                            path.display(),
                            target.display()
                        )));
                    }
                    out.append_link(&mut header, &path, &target).map_err(io)?;
                }
                other => {
                    return Err(bad(format!(
                        "{}: {other:?} entries are not allowed (files, directories and links only)",
                        path.display()
                    )));
                }
            }
        }
    }
    let mut h = tar::Header::new_gnu();
    h.set_size(dockerfile.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    out.append_data(&mut h, DOCKERFILE_ENTRY, dockerfile.as_bytes())
        .map_err(|e| bad(e.to_string()))?;
    out.into_inner().map_err(|e| bad(e.to_string()))
}

/// `path` with `.` removed, if it is relative and never climbs above its root.
fn confined(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

impl Docker {
    /// Removes the image built for `s` (its tag is the service's own, see [`tag_for`]) when
    /// the service goes or its create is rolled back, so builds do not pile up on the
    /// engine's disk. Best effort: an image another container still uses stays (the engine
    /// refuses), logged.
    pub(super) async fn remove_built_image(&self, engine: &bollard::Docker, s: &ContainerService) {
        if !s.built || s.image != tag_for(&s.name) {
            return;
        }
        match engine
            .remove_image(&s.image, None::<RemoveImageOptions>, None)
            .await
        {
            Ok(_)
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => {
                tracing::warn!(service = %s.name, image = %s.image, error = %e, "cannot remove the built image");
            }
        }
    }

    /// Builds `tar` into `tag` through the engine; see the module docs for the errors.
    pub(super) async fn build(
        &self,
        engine: &bollard::Docker,
        tag: &str,
        tar: Vec<u8>,
    ) -> Result<()> {
        let opts = BuildImageOptionsBuilder::default()
            .dockerfile(DOCKERFILE_ENTRY)
            .t(tag)
            .rm(true)
            .forcerm(true)
            .build();
        let mut stream = engine.build_image(opts, None, Some(bollard::body_full(tar.into())));
        let mut tail: VecDeque<String> = VecDeque::with_capacity(KEPT_LINES);
        let run = async {
            while let Some(step) = stream.next().await {
                let step = match step {
                    Ok(s) => s,
                    Err(bollard::errors::Error::DockerStreamError { error }) => {
                        return Err(failed(&error, &tail));
                    }
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code,
                        message,
                    }) if status_code < 500 => return Err(failed(&message, &tail)),
                    Err(e) => return Err(self.engine_error("building the image", e)),
                };
                if let Some(err) = step
                    .error_detail
                    .map(|d| d.message.unwrap_or_else(|| "unknown error".into()))
                {
                    return Err(failed(&err, &tail));
                }
                if let Some(line) = step.stream {
                    for l in line.lines().filter(|l| !l.trim().is_empty()) {
                        if tail.len() == KEPT_LINES {
                            tail.pop_front();
                        }
                        tail.push_back(l.chars().take(500).collect());
                    }
                }
            }
            Ok(())
        };
        match tokio::time::timeout(BUILD_TIMEOUT, run).await {
            Ok(r) => r,
            Err(_) => Err(ServiceError::Unprocessable(format!(
                "dockerfile: the build took longer than {} s",
                BUILD_TIMEOUT.as_secs()
            ))),
        }
    }
}

fn failed(message: &str, tail: &VecDeque<String>) -> ServiceError {
    let mut m = format!("dockerfile: the build failed: {}", message.trim());
    if !tail.is_empty() {
        m.push_str("; last output: ");
        m.push_str(
            &tail
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(" | "),
        );
    }
    ServiceError::Unprocessable(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(e: ServiceError) -> (&'static str, String) {
        match e {
            ServiceError::Invalid { field, reason } => (field, reason),
            other => panic!("{other:?}"),
        }
    }

    fn tar_of(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            // Written raw so that hostile names reach the parser as a client sends them.
            let name = h.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            if *kind == tar::EntryType::Symlink || *kind == tar::EntryType::Link {
                h.set_link_name(data).unwrap();
                h.set_size(0);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            } else {
                h.set_size(data.len() as u64);
                h.set_cksum();
                b.append(&h, data.as_bytes()).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    fn names(tar: &[u8]) -> Vec<String> {
        tar::Archive::new(tar)
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn a_context_is_repacked_with_the_dockerfile() {
        let ctx = tar_of(&[
            ("www/", tar::EntryType::Directory, ""),
            ("www/index.html", tar::EntryType::Regular, "hi"),
            ("www/link", tar::EntryType::Symlink, "index.html"),
            ("./up/../x", tar::EntryType::Regular, "x"),
        ]);
        let out = context("FROM scratch\n", Some(&ctx)).unwrap();
        assert_eq!(
            names(&out),
            ["www", "www/index.html", "www/link", "x", DOCKERFILE_ENTRY]
        );
        assert_eq!(
            names(&context("FROM scratch\n", None).unwrap()),
            [DOCKERFILE_ENTRY]
        );
    }

    #[test]
    fn escaping_or_odd_entries_are_refused_naming_the_field() {
        for (entries, why) in [
            (
                vec![("../etc/passwd", tar::EntryType::Regular, "x")],
                "inside",
            ),
            (
                vec![("/etc/passwd", tar::EntryType::Regular, "x")],
                "inside",
            ),
            (vec![("a/../../b", tar::EntryType::Regular, "x")], "inside"),
            (
                vec![("l", tar::EntryType::Symlink, "/etc/passwd")],
                "outside",
            ),
            (vec![("d/l", tar::EntryType::Symlink, "../../x")], "outside"),
            (vec![("h", tar::EntryType::Link, "../x")], "outside"),
            (vec![("dev", tar::EntryType::Char, "")], "not allowed"),
            (vec![("f", tar::EntryType::Fifo, "")], "not allowed"),
            (
                vec![(DOCKERFILE_ENTRY, tar::EntryType::Regular, "x")],
                "reserved",
            ),
        ] {
            let (f, m) = field(context("FROM scratch", Some(&tar_of(&entries))).unwrap_err());
            assert_eq!(f, "build_context", "{entries:?}");
            assert!(m.contains(why), "{entries:?}: {m}");
        }
        let (f, _) = field(context("FROM scratch", Some(b"not a tar at all, no")).unwrap_err());
        assert_eq!(f, "build_context");
        assert_eq!(field(context("  ", None).unwrap_err()).0, "dockerfile");
        let big = "#".repeat(MAX_DOCKERFILE_BYTES + 1);
        assert_eq!(field(context(&big, None).unwrap_err()).0, "dockerfile");
    }

    #[test]
    fn base64_contexts_are_bounded() {
        #[derive(Deserialize)]
        struct T {
            #[serde(default, deserialize_with = "base64_opt")]
            c: Option<Vec<u8>>,
        }
        let t: T = serde_json::from_str(r#"{"c":"aGk="}"#).unwrap();
        assert_eq!(t.c.unwrap(), b"hi");
        let t: T = serde_json::from_str(r#"{}"#).unwrap();
        assert!(t.c.is_none());
        assert!(serde_json::from_str::<T>(r#"{"c":"@@@"}"#).is_err());
    }
}
