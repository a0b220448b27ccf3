//! What the engine streams about a running service: resource usage (`stats`, one sample or
//! followed) and followed logs.
//!
//! Bounds, since every follower holds an engine connection and a task:
//! - at most [`MAX_STREAMS`] followed streams at once per control plane (a further one is
//!   503); the slot is freed when the stream is dropped;
//! - a followed stream ends after [`MAX_STREAM_DURATION`], when the engine ends it (the
//!   container stopped or was removed) or when the client goes (the adapters drop it, which
//!   drops the engine request);
//! - a followed log line is cut at [`MAX_LINE_BYTES`] and a log follow ends after
//!   [`MAX_FOLLOW_BYTES`].
//!
//! CPU % is computed as `docker stats` does: the container's CPU time over the host's in
//! the interval between two engine samples, times the online CPUs. A one-shot read asks the
//! engine for one sample with its predecessor (it takes about a second).

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::{LogsOptionsBuilder, StatsOptionsBuilder};
use futures_util::{Stream, StreamExt as _};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use utoipa::ToSchema;

use super::{Docker, MAX_LOG_LINES};
use crate::auth::Caller;
use crate::error::ServiceError;

type Result<T> = std::result::Result<T, ServiceError>;

/// A boxed stream handed to the adapters.
pub type Follow<T> = Pin<Box<dyn Stream<Item = Result<T>> + Send>>;

/// Most followed streams (stats and logs together) at once.
pub const MAX_STREAMS: usize = 64;
/// Longest a followed stream runs.
pub const MAX_STREAM_DURATION: Duration = Duration::from_secs(3600);
/// Longest followed log line; longer ones are cut and marked.
pub const MAX_LINE_BYTES: usize = 16 << 10;
/// Most bytes one log follow sends.
pub const MAX_FOLLOW_BYTES: usize = 64 << 20;

/// One resource-usage sample of a container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct StatsSample {
    /// When the engine read it (RFC 3339).
    pub read: Option<String>,
    /// CPU use in percent of one CPU (200 = two CPUs busy).
    pub cpu_percent: f64,
    /// CPUs the container may run on.
    pub online_cpus: u32,
    /// Memory in use, page cache excluded (as `docker stats`).
    pub memory_usage_bytes: u64,
    /// Memory limit (the host's memory when none is set).
    pub memory_limit_bytes: u64,
    /// Usage over limit, in percent.
    pub memory_percent: f64,
    /// Bytes received, over all networks.
    pub network_rx_bytes: u64,
    /// Bytes sent, over all networks.
    pub network_tx_bytes: u64,
    /// Bytes read from block devices.
    pub block_read_bytes: u64,
    /// Bytes written to block devices.
    pub block_write_bytes: u64,
    /// Processes and threads.
    pub pids: u64,
}

/// Makes a sample from the engine's answer.
pub fn sample(r: &ContainerStatsResponse) -> StatsSample {
    let cpu = r.cpu_stats.clone().unwrap_or_default();
    let pre = r.precpu_stats.clone().unwrap_or_default();
    let total = |c: &bollard::models::ContainerCpuStats| {
        c.cpu_usage
            .as_ref()
            .and_then(|u| u.total_usage)
            .unwrap_or(0)
    };
    let online = cpu.online_cpus.unwrap_or(0).max(
        cpu.cpu_usage
            .as_ref()
            .and_then(|u| u.percpu_usage.as_ref())
            .map_or(0, |p| u32::try_from(p.len()).unwrap_or(u32::MAX)),
    );
    let cpu_delta = total(&cpu).saturating_sub(total(&pre));
    let sys_delta = cpu
        .system_cpu_usage
        .unwrap_or(0)
        .saturating_sub(pre.system_cpu_usage.unwrap_or(0));
    let cpu_percent = if cpu_delta > 0 && sys_delta > 0 && pre.system_cpu_usage.is_some() {
        cpu_delta as f64 / sys_delta as f64 * f64::from(online.max(1)) * 100.0
    } else {
        0.0
    };
    let mem = r.memory_stats.clone().unwrap_or_default();
    // Page cache is reclaimable: cgroup v2 `inactive_file`, v1 `total_inactive_file`.
    let cache = mem.stats.as_ref().map_or(0, |s| {
        s.get("inactive_file")
            .or_else(|| s.get("total_inactive_file"))
            .copied()
            .unwrap_or(0)
    });
    let usage = mem.usage.unwrap_or(0).saturating_sub(cache);
    let limit = mem.limit.unwrap_or(0);
    let (mut rx, mut tx) = (0u64, 0u64);
    for n in r.networks.iter().flat_map(|m| m.values()) {
        rx = rx.saturating_add(n.rx_bytes.unwrap_or(0));
        tx = tx.saturating_add(n.tx_bytes.unwrap_or(0));
    }
    let (mut read, mut write) = (0u64, 0u64);
    for e in r
        .blkio_stats
        .iter()
        .flat_map(|b| b.io_service_bytes_recursive.iter().flatten())
    {
        let v = e.value.unwrap_or(0);
        match e.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => read = read.saturating_add(v),
            Some("write") => write = write.saturating_add(v),
            _ => {}
        }
    }
    StatsSample {
        read: r.read.as_ref().map(ToString::to_string),
        cpu_percent: (cpu_percent * 100.0).round() / 100.0,
        online_cpus: online,
        memory_usage_bytes: usage,
        memory_limit_bytes: limit,
        memory_percent: if limit > 0 {
            (usage as f64 / limit as f64 * 10_000.0).round() / 100.0
        } else {
            0.0
        },
        network_rx_bytes: rx,
        network_tx_bytes: tx,
        block_read_bytes: read,
        block_write_bytes: write,
        pids: r.pids_stats.as_ref().and_then(|p| p.current).unwrap_or(0),
    }
}

/// A slot for one followed stream; 503 when all are taken.
fn slot() -> Result<OwnedSemaphorePermit> {
    static SLOTS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    SLOTS
        .get_or_init(|| Arc::new(Semaphore::new(MAX_STREAMS)))
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            ServiceError::Unavailable(format!(
                "{MAX_STREAMS} stats/log streams are open already; try again later"
            ))
        })
}

/// Splits engine chunks into lines: each at most [`MAX_LINE_BYTES`] (cut ones end with
/// `…[cut]`), [`MAX_FOLLOW_BYTES`] in all.
#[derive(Default)]
struct Lines {
    partial: Vec<u8>,
    cut: bool,
    sent: usize,
}

impl Lines {
    /// Appends the lines `chunk` completes to `out`.
    fn push(&mut self, chunk: &[u8], out: &mut Vec<String>) {
        for &b in chunk {
            if b == b'\n' {
                self.finish(out);
            } else if self.partial.len() < MAX_LINE_BYTES {
                self.partial.push(b);
            } else {
                self.cut = true;
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<String>) {
        let mut line = String::from_utf8_lossy(&self.partial).into_owned();
        if self.cut {
            line.push_str("…[cut]");
        }
        self.sent = self.sent.saturating_add(line.len() + 1);
        out.push(line);
        self.partial.clear();
        self.cut = false;
    }

    fn spent(&self) -> bool {
        self.sent >= MAX_FOLLOW_BYTES
    }
}

impl Docker {
    /// One resource-usage sample (about a second: the engine measures an interval).
    pub async fn stats(&self, caller: &Caller, name: &str) -> Result<StatsSample> {
        let s = self.owned(caller, name, false).await?;
        let engine = self.engine().await?;
        let opts = StatsOptionsBuilder::default()
            .stream(false)
            .one_shot(false)
            .build();
        let mut st = engine.stats(&s.container_name, Some(opts));
        match st.next().await {
            Some(Ok(r)) => Ok(sample(&r)),
            Some(Err(e)) => Err(self.engine_error("reading stats", e)),
            None => Err(ServiceError::Unprocessable(format!(
                "the engine sent no stats for {name:?}"
            ))),
        }
    }

    /// Samples as the engine produces them (about one a second), bounded as the module
    /// says.
    pub async fn follow_stats(&self, caller: &Caller, name: &str) -> Result<Follow<StatsSample>> {
        let s = self.owned(caller, name, false).await?;
        let engine = self.engine().await?;
        let permit = slot()?;
        let opts = StatsOptionsBuilder::default().stream(true).build();
        let this = self.clone();
        let st = engine
            .stats(&s.container_name, Some(opts))
            .map(move |r| {
                let _slot = &permit;
                r.map(|r| sample(&r))
                    .map_err(|e| this.engine_error("reading stats", e))
            })
            .take_until(tokio::time::sleep(MAX_STREAM_DURATION));
        Ok(Box::pin(st))
    }

    /// The last `tail` lines, then new ones as the container prints them, bounded as the
    /// module says.
    pub async fn follow_logs(
        &self,
        caller: &Caller,
        name: &str,
        tail: Option<u32>,
        timestamps: bool,
    ) -> Result<Follow<String>> {
        let tail = tail.unwrap_or(100);
        if tail > MAX_LOG_LINES {
            return Err(ServiceError::invalid(
                "tail",
                format!("must be 0-{MAX_LOG_LINES}"),
            ));
        }
        let s = self.owned(caller, name, false).await?;
        let engine = self.engine().await?;
        let permit = slot()?;
        let opts = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .follow(true)
            .timestamps(timestamps)
            .tail(&tail.to_string())
            .build();
        let chunks = engine.logs(&s.container_name, Some(opts));
        let this = self.clone();
        // State: the engine stream (None once it ended), the splitter, the slot.
        let st = futures_util::stream::unfold(
            (Some(chunks), Lines::default(), permit),
            move |(chunks, mut lines, permit)| {
                let this = this.clone();
                async move {
                    let mut chunks = chunks?;
                    if lines.spent() {
                        return None;
                    }
                    let mut out = Vec::new();
                    loop {
                        match chunks.next().await {
                            Some(Ok(c)) => {
                                lines.push(&c.into_bytes(), &mut out);
                                if !out.is_empty() {
                                    let items: Vec<Result<String>> =
                                        out.into_iter().map(Ok).collect();
                                    return Some((items, (Some(chunks), lines, permit)));
                                }
                            }
                            Some(Err(e)) => {
                                let e = this.engine_error("reading logs", e);
                                return Some((vec![Err(e)], (None, lines, permit)));
                            }
                            None => {
                                if !lines.partial.is_empty() {
                                    lines.finish(&mut out);
                                }
                                let items = out.into_iter().map(Ok).collect();
                                return Some((items, (None, lines, permit)));
                            }
                        }
                    }
                }
            },
        )
        .flat_map(futures_util::stream::iter)
        .take_until(tokio::time::sleep(MAX_STREAM_DURATION));
        Ok(Box::pin(st))
    }
}

/// A followed stream as a tonic server stream.
pub type GrpcFollow<T> = Pin<Box<dyn Stream<Item = std::result::Result<T, tonic::Status>> + Send>>;

/// Maps a followed stream's items for gRPC; an error ends it with its status.
pub fn grpc<T, U: Send + 'static>(
    st: Follow<T>,
    f: impl Fn(T) -> U + Send + 'static,
) -> GrpcFollow<U>
where
    T: Send + 'static,
{
    Box::pin(st.map(move |r| r.map(&f).map_err(tonic::Status::from)))
}

impl From<StatsSample> for portcullis_proto::v1::ServiceStatsSample {
    fn from(s: StatsSample) -> Self {
        Self {
            read: s.read.unwrap_or_default(),
            cpu_percent: s.cpu_percent,
            online_cpus: s.online_cpus,
            memory_usage_bytes: s.memory_usage_bytes,
            memory_limit_bytes: s.memory_limit_bytes,
            memory_percent: s.memory_percent,
            network_rx_bytes: s.network_rx_bytes,
            network_tx_bytes: s.network_tx_bytes,
            block_read_bytes: s.block_read_bytes,
            block_write_bytes: s.block_write_bytes,
            pids: s.pids,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{
        ContainerBlkioStatEntry, ContainerBlkioStats, ContainerCpuStats, ContainerCpuUsage,
        ContainerMemoryStats, ContainerNetworkStats, ContainerPidsStats,
    };

    #[test]
    fn a_sample_is_computed_as_docker_stats_does() {
        let cpu = |total, system| ContainerCpuStats {
            cpu_usage: Some(ContainerCpuUsage {
                total_usage: Some(total),
                ..Default::default()
            }),
            system_cpu_usage: Some(system),
            online_cpus: Some(2),
            ..Default::default()
        };
        let net = |rx, tx| ContainerNetworkStats {
            rx_bytes: Some(rx),
            tx_bytes: Some(tx),
            ..Default::default()
        };
        let io = |op: &str, v| ContainerBlkioStatEntry {
            op: Some(op.into()),
            value: Some(v),
            ..Default::default()
        };
        let r = ContainerStatsResponse {
            cpu_stats: Some(cpu(1_500, 10_000)),
            precpu_stats: Some(cpu(1_000, 8_000)),
            memory_stats: Some(ContainerMemoryStats {
                usage: Some(3_000),
                limit: Some(10_000),
                stats: Some([("inactive_file".to_string(), 1_000)].into()),
                ..Default::default()
            }),
            networks: Some([("eth0".into(), net(10, 20)), ("eth1".into(), net(1, 2))].into()),
            blkio_stats: Some(ContainerBlkioStats {
                io_service_bytes_recursive: Some(vec![
                    io("Read", 4),
                    io("Write", 8),
                    io("read", 1),
                    io("Total", 13),
                ]),
                ..Default::default()
            }),
            pids_stats: Some(ContainerPidsStats {
                current: Some(3),
                ..Default::default()
            }),
            ..Default::default()
        };
        let s = sample(&r);
        // 500 of 2000 host ns on 2 CPUs: 50 %.
        assert_eq!(s.cpu_percent, 50.0);
        assert_eq!(s.memory_usage_bytes, 2_000);
        assert_eq!(s.memory_limit_bytes, 10_000);
        assert_eq!(s.memory_percent, 20.0);
        assert_eq!((s.network_rx_bytes, s.network_tx_bytes), (11, 22));
        assert_eq!((s.block_read_bytes, s.block_write_bytes), (5, 8));
        assert_eq!(s.pids, 3);
        // A stopped container: nothing, and no division by zero.
        assert_eq!(
            sample(&ContainerStatsResponse::default()),
            StatsSample::default()
        );
    }

    #[test]
    fn log_lines_are_split_and_bounded() {
        let mut l = Lines::default();
        let mut out = Vec::new();
        l.push(b"one\ntw", &mut out);
        assert_eq!(out, ["one"]);
        l.push(b"o\n", &mut out);
        assert_eq!(out, ["one", "two"]);
        out.clear();
        let long = vec![b'x'; MAX_LINE_BYTES + 10];
        l.push(&long, &mut out);
        l.push(b"\n", &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].ends_with("…[cut]"));
        assert_eq!(out[0].len(), MAX_LINE_BYTES + "…[cut]".len());
        assert!(!l.spent());
        l.sent = MAX_FOLLOW_BYTES;
        assert!(l.spent());
    }
}
