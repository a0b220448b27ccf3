//! `portcullis-data-plane`: parses flags and wires the library together.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use portcullis_data_plane::apply::Applier;
use portcullis_data_plane::cache::SnapshotCache;
use portcullis_data_plane::cli::{Args, LogFormat};
use portcullis_data_plane::request::PublicPorts;
use portcullis_data_plane::store::ConfigStore;
use portcullis_data_plane::stream::ControlPlane;
use portcullis_data_plane::upstream::{self, ClientCache};
use portcullis_data_plane::{access_log, admin, server, trace};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    // `portcullis-data-plane healthcheck [URL]`: the container health check (no shell there).
    if let Some(code) = portcullis_proto::healthcheck::from_args("http://127.0.0.1:9901/readyz") {
        return code;
    }
    let args = portcullis_data_plane::cli::parse();
    let filter = portcullis_data_plane::cli::log_filter(|k| std::env::var(k).ok())
        .and_then(|d| EnvFilter::try_new(&d).map_err(|e| format!("PORTCULLIS_LOG={d:?}: {e}")));
    let filter = match filter {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match args.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().with_ansi(false).init(),
    }
    // Another component may have installed it first; either way aws-lc-rs is in use.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    // Flushed when `run` returns (dropped last).
    let _spans = args
        .otlp_endpoint
        .as_ref()
        .map(|endpoint| {
            trace::install(&trace::TraceSettings {
                endpoint: endpoint.clone(),
                protocol: args.otlp_protocol,
                sample_ratio: args.trace_sample_ratio,
                service_name: "portcullis-data-plane",
                instance: args.node_id.clone(),
            })
        })
        .transpose()?;
    server::set_max_request_header_bytes(args.max_request_header_bytes);
    server::set_h1_fast_path(args.h1_fast_path);
    let ca_pem = args
        .ca_cert
        .as_ref()
        .map(|path| std::fs::read(path).with_context(|| format!("reading {}", path.display())))
        .transpose()?;
    let read = |path: &std::path::PathBuf| {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    };
    let client_identity = match (&args.client_cert, &args.client_key) {
        (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
        _ => None,
    };
    let workers = args.workers.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        usize::from,
    );
    let (http_addr, http) = server::workers::bind(args.http_listen, workers)
        .with_context(|| format!("binding HTTP listener {}", args.http_listen))?;
    let admin = TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("binding admin listener {}", args.admin_listen))?;
    let (https_addr, https) = args
        .https_listen
        .map(|addr| {
            server::workers::bind(addr, workers)
                .with_context(|| format!("binding HTTPS listener {addr}"))
        })
        .transpose()?
        .unzip();
    let admin_addr = admin.local_addr()?;
    let ports = PublicPorts {
        http: args.http_public_port.unwrap_or(http_addr.port()),
        https: args
            .https_public_port
            .or(https_addr.map(|a| a.port()))
            .unwrap_or(443),
    };
    let token = args
        .enrolment_token()
        .context("give --enrolment-token-file or PORTCULLIS_ENROLMENT_TOKEN")?;
    let control_plane = ControlPlane::new_with_identity(
        &args.control_plane,
        ca_pem.as_deref(),
        client_identity
            .as_ref()
            .map(|(cert, key)| (cert.as_slice(), key.as_slice())),
        token.expose(),
        args.node_id.clone(),
        http_addr.to_string(),
    )?
    // No HTTPS listener, no HTTPS callbacks (0), whatever `--https-public-port` says for
    // redirects.
    .with_public_ports(ports.http, https_addr.map_or(0, |_| ports.https));

    server::set_proxy_protocol(args.proxy_protocol()).map_err(anyhow::Error::msg)?;
    portcullis_data_plane::peer::set_trusted_forwarders(args.trusted_forwarders.clone());
    server::limit_per_client(args.max_connections_per_client);
    upstream::limit_connections_per_origin(args.max_upstream_connections);
    raise_open_file_limit();
    let store = Arc::new(ConfigStore::default());
    let applier = Arc::new(Applier::new(
        store.clone(),
        Arc::new(ClientCache::new()),
        SnapshotCache::new(&args.cache_dir, token.expose()),
    ));
    applier.restore().await;

    tokio::spawn(admin::serve_admin(admin, store.clone()));
    start_access_log(args.access_log, &args.node_id, &control_plane);
    let tls = https
        .is_some()
        .then(|| server::tls_config(store.clone()).context("building TLS configuration"))
        .transpose()?;
    let mut https = https.map(Vec::into_iter);
    for (index, http) in http.into_iter().enumerate() {
        let https = https.as_mut().and_then(Iterator::next);
        let (store, tls) = (store.clone(), tls.clone());
        server::workers::spawn(index, http, https, move |http, https| async move {
            if access_log::enabled() {
                tokio::spawn(access_log::flush_periodically());
            }
            if let (Some(https), Some(tls)) = (https, tls) {
                tokio::spawn(server::serve_https(https, store.clone(), tls, ports.https));
            }
            server::serve_http(http, store, ports).await;
        })
        .context("starting a serving worker")?;
    }
    tokio::spawn(control_plane.run(applier));
    tracing::info!(%http_addr, ?https_addr, %admin_addr, node_id = %args.node_id, "data plane listening");
    let https_text = https_addr
        .map(|a| format!(" https={a}"))
        .unwrap_or_default();
    println!("portcullis-data-plane listening http={http_addr}{https_text} admin={admin_addr}");

    shutdown_signal().await;
    tracing::info!("shutting down");
    Ok(())
}

/// Installs the access-log pipeline for `sinks`: the collector, and the shipper for the
/// control-plane sink, on this (multi-threaded) runtime; each worker runs its own flusher.
fn start_access_log(sinks: access_log::Sinks, node_id: &str, control_plane: &ControlPlane) {
    let Some(pipeline) = access_log::install(sinks) else {
        return;
    };
    let pipeline = pipeline.with_node_id(node_id);
    if sinks.control_plane {
        tokio::spawn(control_plane.ship_access_logs(&pipeline));
    }
    tokio::spawn(pipeline.collect());
}

/// Raises the soft limit on open files to the hard limit (as nginx's
/// `worker_rlimit_nofile`): the default soft limit (often 1024) would let a few hundred
/// clients and their upstream connections exhaust descriptors.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open file limit"),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
