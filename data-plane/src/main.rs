//! `portcullis-data-plane`: parses flags and wires the library together.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use portcullis_data_plane::apply::Applier;
use portcullis_data_plane::cache::SnapshotCache;
use portcullis_data_plane::cli::Args;
use portcullis_data_plane::store::ConfigStore;
use portcullis_data_plane::stream::ControlPlane;
use portcullis_data_plane::upstream::ClientCache;
use portcullis_data_plane::{admin, server, tls};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_env("PORTCULLIS_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
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
    let ca_pem = args
        .ca_cert
        .as_ref()
        .map(|path| std::fs::read(path).with_context(|| format!("reading {}", path.display())))
        .transpose()?;
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
    let https_port = args
        .https_public_port
        .or(https_addr.map(|a| a.port()))
        .unwrap_or(443);
    let token = args
        .enrolment_token()
        .context("give --enrolment-token-file or PORTCULLIS_ENROLMENT_TOKEN")?;
    let control_plane = ControlPlane::new(
        &args.control_plane,
        ca_pem.as_deref(),
        token.expose(),
        args.node_id.clone(),
        http_addr.to_string(),
    )?;

    let store = Arc::new(ConfigStore::default());
    let applier = Arc::new(Applier::new(
        store.clone(),
        Arc::new(ClientCache::new()),
        SnapshotCache::new(&args.cache_dir, token.expose()),
    ));
    applier.restore().await;

    tokio::spawn(admin::serve_admin(admin, store.clone()));
    let tls = https
        .is_some()
        .then(|| tls::server_config(store.clone()).context("building TLS configuration"))
        .transpose()?;
    let mut https = https.map(Vec::into_iter);
    for (index, http) in http.into_iter().enumerate() {
        let https = https.as_mut().and_then(Iterator::next);
        let (store, tls) = (store.clone(), tls.clone());
        server::workers::spawn(index, http, https, move |http, https| async move {
            if let (Some(https), Some(tls)) = (https, tls) {
                tokio::spawn(server::serve_https(https, store.clone(), tls));
            }
            server::serve_http(http, store, https_port).await;
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
