//! Control-plane ingest rate (`bench/run.sh`, case `ingest`): how many access-log records
//! per second a running control plane stores, sustained, through the real path — records
//! encoded by [`access_log::record`] as a worker does, queued, and shipped by the data
//! plane's own shipper (`AccessLogIngest.Ship`, enrolment token, one batch in flight,
//! exactly-once positions).
//!
//! ```text
//! cargo run --release -p portcullis-data-plane --example ingest_bench -- \
//!     GRPC_URL ENROLMENT_TOKEN [SECONDS] [RATE]
//! ```
//!
//! `RATE` 0 (the default) keeps the ship queue near its bound (the control plane is the
//! bottleneck: the acknowledged rate is its ingest rate); a positive `RATE` offers that many
//! records per second (then drops show whether the control plane keeps up). Records look
//! like a busy proxy's: 20 hosts, 50,000 client addresses (`INGEST_CLIENTS`), a fresh
//! request id each as the data plane makes them (time first; `INGEST_RANDOM_IDS=1`: random,
//! as a client may send), one in ten with a user and client id, one in ten a 404 or 502. Prints one line per second
//! and, last, `ingest records_per_s=… shipped=… dropped=… seconds=…` over the run after a
//! 2 s warm-up.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use portcullis_data_plane::access_log::{self, Fields, Fixed, MAX_PENDING, Sinks};
use portcullis_data_plane::stream::ControlPlane;

const WARM_UP: Duration = Duration::from_secs(2);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(url), Some(token)) = (args.first(), args.get(1)) else {
        return Err("usage: ingest_bench GRPC_URL ENROLMENT_TOKEN [SECONDS] [RATE]".into());
    };
    let seconds: u64 = args.get(2).map_or(Ok(10), |s| s.parse())?;
    let rate: u64 = args.get(3).map_or(Ok(0), |s| s.parse())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let _guard = runtime.enter();
    let control_plane = ControlPlane::new(
        &[url.as_str()],
        None,
        token,
        "ingest-bench".into(),
        "127.0.0.1:0".into(),
    )?;
    let pipeline = access_log::install(Sinks {
        stdout: false,
        control_plane: true,
    })
    .ok_or("access log not installed")?
    .with_node_id("ingest-bench");
    let counters = pipeline.counters.clone();
    let queue = pipeline.queue.clone();
    runtime.spawn(control_plane.ship_access_logs(&pipeline));
    runtime.spawn(pipeline.collect());

    let start = Instant::now();
    let end = start + WARM_UP + Duration::from_secs(seconds);
    let mut offered = 0u64;
    let mut next_report = start + Duration::from_secs(1);
    let (mut last_shipped, mut warm) = (0u64, None);
    let mut n = 0u64;
    while Instant::now() < end {
        let now = Instant::now();
        let due = if rate == 0 {
            // Keep the queue near its bound: the control plane alone sets the pace.
            (MAX_PENDING - MAX_PENDING / 10).saturating_sub(queue.len()) as u64
        } else {
            (rate * now.duration_since(start).as_micros() as u64 / 1_000_000)
                .saturating_sub(offered)
        };
        for _ in 0..due.min(5_000) {
            record(n);
            n += 1;
            offered += 1;
        }
        access_log::flush_this_thread();
        if now >= next_report {
            let shipped = counters.shipped.load(Ordering::Relaxed);
            println!(
                "t={:>3}s shipped/s={:>7} queued={:>6} dropped={}",
                now.duration_since(start).as_secs(),
                shipped - last_shipped,
                queue.len(),
                counters.dropped.load(Ordering::Relaxed),
            );
            last_shipped = shipped;
            next_report += Duration::from_secs(1);
            if warm.is_none() && now >= start + WARM_UP {
                warm = Some((now, shipped));
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let (t0, s0) = warm.ok_or("run shorter than the warm-up")?;
    let shipped = counters.shipped.load(Ordering::Relaxed) - s0;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "ingest records_per_s={:.0} shipped={shipped} offered={offered} dropped={} seconds={secs:.1} total_shipped={}",
        shipped as f64 / secs,
        counters.dropped.load(Ordering::Relaxed),
        counters.shipped.load(Ordering::Relaxed),
    );
    Ok(())
}

/// Distinct client addresses (`INGEST_CLIENTS`, default 50,000).
fn clients() -> u64 {
    static N: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::env::var("INGEST_CLIENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(50_000)
    })
}

/// `INGEST_RANDOM_IDS=1`: random request ids (as clients may send), not the data plane's
/// time-ordered ones.
fn random_ids() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("INGEST_RANDOM_IDS").is_ok_and(|v| v == "1"))
}

/// Encodes record number `n` as the request path does.
fn record(n: u64) {
    const HOSTS: [&str; 20] = [
        "a.example.com",
        "b.example.com",
        "c.example.com",
        "d.example.com",
        "e.example.com",
        "f.example.com",
        "g.example.com",
        "h.example.com",
        "i.example.com",
        "j.example.com",
        "k.example.com",
        "l.example.com",
        "m.example.com",
        "n.example.com",
        "o.example.com",
        "p.example.com",
        "q.example.com",
        "r.example.com",
        "s.example.com",
        "t.example.com",
    ];
    let time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let mix = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let client = (mix >> 20) % clients();
    let ip = format!(
        "10.{}.{}.{}",
        client >> 16,
        (client >> 8) & 255,
        client & 255
    );
    let request_id = if random_ids() {
        format!("{:032x}", u128::from(mix) << 64 | u128::from(n))
    } else {
        // As the data plane generates them: milliseconds, then a random tail.
        let millis = (time / 1_000_000) as u64 & 0xffff_ffff_ffff;
        format!(
            "{millis:012x}{:020x}",
            u128::from(mix) << 16 | u128::from(n & 0xffff)
        )
    };
    let host = HOSTS[(mix >> 40) as usize % HOSTS.len()];
    let status = match n % 20 {
        0 => 404,
        10 => 502,
        _ => 200,
    };
    let user = if n % 10 == 3 { "alice" } else { "" };
    let client_id = if n % 10 == 3 { "cli-app" } else { "" };
    access_log::record(&Fields {
        fixed: Fixed {
            time_unix_nanos: time,
            listener: "http",
            client_port: 40_000 + (n % 20_000) as u32,
            method: "GET",
            http_version: "HTTP/1.1",
            status,
            response_body_bytes: 100,
            duration_micros: 180 + n % 300,
            upstream_ttfb_micros: 150,
            auth: if user.is_empty() { "none" } else { "admitted" },
            ..Fixed::default()
        },
        client_ip: &ip,
        host,
        path: "/api/v1/items/42",
        upstream: "127.0.0.1:18001",
        proxy: host,
        route: "r-1",
        user,
        client_id,
        request_id: &request_id,
        user_agent: "Mozilla/5.0 (X11; Linux x86_64) bench",
        ..Fields::default()
    });
}
