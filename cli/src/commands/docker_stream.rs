//! `service stats NAME [--follow]`, `service logs NAME --follow` and the build context of
//! `service create --dockerfile PATH [--context DIR]`.
//!
//! The context is packed here, in-process, into a plain tar: the directory's files,
//! directories and symlinks (not followed; the control plane refuses links that leave the
//! context), at most 32 MiB of file data. Other file types are an error naming the path.

use std::path::{Path, PathBuf};

use portcullis_proto::v1::docker_service_client::DockerServiceClient;
use portcullis_proto::v1::{ByName, ServiceLogsRequest, ServiceStatsSample};
use serde_json::{Value, json};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::{Ctx, ReplyExt};
use crate::client::BearerAuth;
use crate::error::CliError;
use crate::output::write_stdout;

type Client = DockerServiceClient<InterceptedService<Channel, BearerAuth>>;

/// Largest context sent (the control plane's bound).
const MAX_CONTEXT_BYTES: u64 = 32 << 20;

/// One sample, or (`follow`) one line per sample until the stream ends or Ctrl-C.
pub(super) async fn stats(
    c: &mut Client,
    ctx: &Ctx,
    name: String,
    follow: bool,
) -> Result<(), CliError> {
    let req = ByName {
        name,
        ..Default::default()
    };
    if !follow {
        let s = c.service_stats(req).await.reply(&ctx.call)?;
        return ctx.out.emit(&stats_json(&s), || stats_text(&s));
    }
    let mut st = c.follow_service_stats(req).await.reply(&ctx.call)?;
    loop {
        match st.message().await {
            Ok(Some(s)) => line(ctx, &stats_json(&s), || stats_text(&s))?,
            Ok(None) => return Ok(()),
            Err(s) => return Err(CliError::from_status(s, &ctx.call.url, ctx.call.has_token)),
        }
    }
}

/// Prints lines as the container prints them.
pub(super) async fn follow_logs(
    c: &mut Client,
    ctx: &Ctx,
    req: ServiceLogsRequest,
) -> Result<(), CliError> {
    let mut st = c.follow_service_logs(req).await.reply(&ctx.call)?;
    loop {
        match st.message().await {
            Ok(Some(m)) => {
                for l in m.lines {
                    line(ctx, &json!({ "line": l }), || l.clone())?;
                }
            }
            Ok(None) => return Ok(()),
            Err(s) => return Err(CliError::from_status(s, &ctx.call.url, ctx.call.has_token)),
        }
    }
}

/// One JSON object per line with `--output json`, else the text.
fn line(ctx: &Ctx, j: &Value, text: impl FnOnce() -> String) -> Result<(), CliError> {
    if ctx.out.json() {
        write_stdout(&j.to_string())
    } else {
        write_stdout(&text())
    }
}

fn stats_json(s: &ServiceStatsSample) -> Value {
    json!({
        "read": (!s.read.is_empty()).then_some(&s.read),
        "cpu_percent": s.cpu_percent,
        "online_cpus": s.online_cpus,
        "memory_usage_bytes": s.memory_usage_bytes,
        "memory_limit_bytes": s.memory_limit_bytes,
        "memory_percent": s.memory_percent,
        "network_rx_bytes": s.network_rx_bytes,
        "network_tx_bytes": s.network_tx_bytes,
        "block_read_bytes": s.block_read_bytes,
        "block_write_bytes": s.block_write_bytes,
        "pids": s.pids,
    })
}

fn stats_text(s: &ServiceStatsSample) -> String {
    format!(
        "CPU {:.2}%  MEM {} / {} ({:.2}%)  NET rx {} tx {}  BLOCK read {} write {}  PIDS {}",
        s.cpu_percent,
        size(s.memory_usage_bytes),
        size(s.memory_limit_bytes),
        s.memory_percent,
        size(s.network_rx_bytes),
        size(s.network_tx_bytes),
        size(s.block_read_bytes),
        size(s.block_write_bytes),
        s.pids
    )
}

fn size(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else {
        format!("{v:.1}{}", UNITS[i])
    }
}

/// The Dockerfile's text and the context tar (the Dockerfile's directory by default).
pub(super) fn build_context(
    dockerfile: &Path,
    context: Option<&Path>,
) -> Result<(String, Vec<u8>), CliError> {
    let text = std::fs::read_to_string(dockerfile)
        .map_err(|e| CliError::Usage(format!("--dockerfile {}: {e}", dockerfile.display())))?;
    let dir = match context {
        Some(d) => d.to_path_buf(),
        None => dockerfile
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
    };
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let mut total = 0u64;
    add_dir(&mut b, &dir, Path::new(""), &mut total)?;
    let tar = b
        .into_inner()
        .map_err(|e| CliError::Usage(format!("--context {}: {e}", dir.display())))?;
    Ok((text, tar))
}

fn add_dir(
    b: &mut tar::Builder<Vec<u8>>,
    dir: &Path,
    rel: &Path,
    total: &mut u64,
) -> Result<(), CliError> {
    let err =
        |p: &Path, e: std::io::Error| CliError::Usage(format!("--context {}: {e}", p.display()));
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| err(dir, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(dir, e))?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        let path = e.path();
        let name = rel.join(e.file_name());
        let meta = std::fs::symlink_metadata(&path).map_err(|er| err(&path, er))?;
        if meta.is_dir() {
            b.append_path_with_name(&path, &name)
                .map_err(|er| err(&path, er))?;
            add_dir(b, &path, &name, total)?;
        } else if meta.is_file() || meta.file_type().is_symlink() {
            *total += meta.len();
            if *total > MAX_CONTEXT_BYTES {
                return Err(CliError::Usage(format!(
                    "--context {}: more than {} MiB",
                    dir.display(),
                    MAX_CONTEXT_BYTES >> 20
                )));
            }
            b.append_path_with_name(&path, &name)
                .map_err(|er| err(&path, er))?;
        } else {
            return Err(CliError::Usage(format!(
                "--context: {} is not a file, directory or symlink",
                path.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_directory_becomes_a_tar() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::create_dir(d.path().join("www")).unwrap();
        std::fs::write(d.path().join("www/index.html"), "hi").unwrap();
        std::os::unix::fs::symlink("index.html", d.path().join("www/l")).unwrap();
        let (text, tar) = build_context(&d.path().join("Dockerfile"), None).unwrap();
        assert_eq!(text, "FROM scratch\n");
        let names: Vec<String> = tar::Archive::new(&tar[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["Dockerfile", "www", "www/index.html", "www/l"]);
        assert!(matches!(
            build_context(&d.path().join("nope"), None),
            Err(CliError::Usage(_))
        ));
    }
}
