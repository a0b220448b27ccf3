//! Wires the store, service layer, publisher and both listeners into a running server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::Router;
use tokio::net::TcpListener;
use utoipa::OpenApi as _;
use utoipa_swagger_ui::SwaggerUi;

use crate::authenticator::Authenticator;
use crate::oauth::OAuthServer;
use crate::rest;
use crate::service::ControlPlane;
use crate::store::Store;

/// Everything `serve` needs; built from flags by the binary.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Directory of the embedded store.
    pub data_dir: PathBuf,
    /// REST, `/health`, `/docs`.
    pub http_listen: SocketAddr,
    /// gRPC for the CLI and data planes.
    pub grpc_listen: SocketAddr,
    /// Use Redis instead of the embedded store.
    pub redis_url: Option<String>,
    /// PEM certificate chain for the gRPC listener.
    pub grpc_tls_cert: Option<PathBuf>,
    /// PEM private key for the gRPC listener.
    pub grpc_tls_key: Option<PathBuf>,
    /// PEM CA whose client certificates data planes must present on the config stream.
    pub grpc_client_ca: Option<PathBuf>,
    /// Allow plaintext gRPC on a non-loopback address.
    pub insecure_grpc: bool,
    /// How often to look for writes by other control planes sharing the store.
    pub poll_interval: Duration,
    /// How long a lease (work that runs on one control plane at a time) lives unrenewed.
    pub lease_ttl: Duration,
    /// Base64 master key; `None` uses (or creates) `<data_dir>/master.key`.
    pub master_key: Option<String>,
    /// Certificate ordering.
    pub acme: crate::acme::AcmeSettings,
    /// How often certificates are checked for renewal.
    pub renew_check_interval: Duration,
    /// The OAuth authorization server; `issuer` empty = `http://<http_listen>` (loopback only).
    pub oauth: crate::oauth::OAuthSettings,
    /// Request-log retention and size cap.
    pub logs: crate::logs::LogSettings,
    /// Serve `/metrics` without authentication on this address too.
    pub metrics_listen: Option<SocketAddr>,
    /// Docker engine and host-port range for Docker services.
    pub docker: crate::docker::DockerSettings,
    /// What an empty store starts with (first admin token, GitHub provider, login rule).
    pub bootstrap: crate::bootstrap::Bootstrap,
}

/// Checks the issuer: https, or http on a loopback host; no query, fragment or trailing slash.
pub fn validate_issuer(issuer: &str) -> anyhow::Result<String> {
    let u = url::Url::parse(issuer)
        .with_context(|| format!("--oauth-issuer {issuer:?} is not a URL"))?;
    let loopback = u
        .host()
        .as_ref()
        .is_some_and(crate::oauth::clients::is_loopback_host);
    if u.scheme() != "https" && !(u.scheme() == "http" && loopback) {
        bail!("--oauth-issuer {issuer:?} must be https (http only for a loopback host)");
    }
    if u.query().is_some() || u.fragment().is_some() {
        bail!("--oauth-issuer {issuer:?} must not have a query or fragment");
    }
    Ok(issuer.trim_end_matches('/').to_owned())
}

/// Opens the configured store.
pub async fn open_store(
    data_dir: &std::path::Path,
    redis_url: Option<&str>,
) -> anyhow::Result<Store> {
    match redis_url {
        Some(url) => Store::connect_redis(url)
            .await
            .with_context(|| format!("cannot connect to Redis at {}", redact(url))),
        None => Store::open_embedded(data_dir).context("cannot open the embedded store"),
    }
}

/// Hides the password in a Redis URL for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Runs until SIGINT/SIGTERM.
pub async fn serve(cfg: ServeConfig) -> anyhow::Result<()> {
    cfg.bootstrap.validate()?;
    let tls = match (&cfg.grpc_tls_cert, &cfg.grpc_tls_key) {
        (Some(cert), Some(key)) => {
            let cert =
                std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
            let key = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
            Some(
                tonic::transport::ServerTlsConfig::new()
                    .identity(tonic::transport::Identity::from_pem(cert, key)),
            )
        }
        (None, None) => None,
        _ => bail!("--grpc-tls-cert and --grpc-tls-key go together"),
    };
    let tls = match (tls, &cfg.grpc_client_ca) {
        (Some(tls), Some(ca)) => {
            let ca = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            // Optional at the TLS layer (the CLI has no client certificate); the config
            // stream refuses a connection that presented none.
            Some(
                tls.client_ca_root(tonic::transport::Certificate::from_pem(ca))
                    .client_auth_optional(true),
            )
        }
        (None, Some(_)) => bail!("--grpc-client-ca needs --grpc-tls-cert/--grpc-tls-key"),
        (tls, None) => tls,
    };
    if tls.is_none() && !cfg.grpc_listen.ip().is_loopback() {
        if !cfg.insecure_grpc {
            bail!(
                "refusing plaintext gRPC on non-loopback {}: the config stream will carry private keys. \
                 Give --grpc-tls-cert/--grpc-tls-key, or --insecure-grpc if you really mean it",
                cfg.grpc_listen
            );
        }
        tracing::warn!(
            "!!! gRPC on {} WITHOUT TLS (--insecure-grpc): tokens and config travel in clear text !!!",
            cfg.grpc_listen
        );
    }

    let master_key =
        crate::secrets::MasterKey::load_or_create(cfg.master_key.as_deref(), &cfg.data_dir)?;
    if cfg.redis_url.is_some() && cfg.master_key.is_none() {
        tracing::warn!(
            "no --master-key given: using {}/master.key; every control plane sharing this Redis needs the same key",
            cfg.data_dir.display()
        );
    }
    let store = open_store(&cfg.data_dir, cfg.redis_url.as_deref()).await?;
    // Bound before the issuer is derived from the address, so `--http-listen 127.0.0.1:0`
    // yields the real port (tests bind port 0 and read the line printed below).
    let http = TcpListener::bind(cfg.http_listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.http_listen))?;
    let grpc = TcpListener::bind(cfg.grpc_listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.grpc_listen))?;
    let (http_addr, grpc_addr) = (http.local_addr()?, grpc.local_addr()?);
    let metrics_listener = match cfg.metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on --metrics-listen {addr}"))?,
        ),
        None => None,
    };
    tracing::info!(http = %http_addr, grpc = %grpc_addr, store = store.backend_name(), "control plane listening");
    println!("portcullis-control-plane listening http={http_addr} grpc={grpc_addr}");
    let mut oauth_settings = cfg.oauth.clone();
    oauth_settings.local_url = if http_addr.ip().is_unspecified() {
        format!("http://127.0.0.1:{}", http_addr.port())
    } else {
        format!("http://{http_addr}")
    };
    oauth_settings.issuer = if oauth_settings.issuer.is_empty() {
        if !http_addr.ip().is_loopback() {
            bail!(
                "give --oauth-issuer (the public https origin of the OAuth server) when --http-listen is not loopback"
            );
        }
        format!("http://{http_addr}")
    } else {
        validate_issuer(&oauth_settings.issuer)?
    };
    let options = crate::service::Options {
        master_key,
        acme: cfg.acme.clone(),
        oauth_issuer: oauth_settings.issuer.clone(),
        lease_ttl: cfg.lease_ttl,
    };
    let cp = ControlPlane::with_options(store, options).await?;
    let first_start = crate::bootstrap::admin_token(&cp, &cfg.bootstrap).await?;
    let oauth = crate::oauth::OAuthServer::new(cp.clone(), oauth_settings)?;
    if let Some(file) = &cfg.bootstrap.file {
        let owner = first_start.as_ref().map(|t| t.token.id.clone());
        crate::declarative::bootstrap::at_start(&cp, owner, file).await?;
    }
    if let Some(first) = &first_start {
        crate::bootstrap::resources(&oauth, first, &cfg.bootstrap).await?;
    }
    // Before the first snapshot is built, so every data plane has the key of the first token.
    crate::oauth::keys::ensure(&oauth)
        .await
        .context("cannot create the OAuth signing key")?;
    let source = crate::snapshot::Source {
        store: cp.store().clone(),
        key: cp.master_key().clone(),
        oauth_issuer: cp.oauth_issuer().to_owned(),
        revisions: cp.revisions().clone(),
    };
    let snapshots = crate::snapshot::spawn_publisher(source, cfg.poll_interval);
    crate::issuer::spawn(cp.clone(), cfg.renew_check_interval);

    oauth.spawn_sweeper(Duration::from_secs(60));
    tracing::info!(issuer = %oauth.issuer(), "OAuth authorization server enabled");
    let authn = Authenticator::new(cp.clone(), oauth.clone());
    let (admin, config) = crate::grpc::services(
        cp.clone(),
        authn.clone(),
        snapshots,
        cfg.grpc_client_ca.is_some(),
    );
    // Request logs: own store (logs.redb, or the same Redis on its own connection).
    let logs =
        crate::logs::AccessLogs::open(&cfg.data_dir, cfg.redis_url.as_deref(), cfg.logs.clone())
            .await
            .context("cannot open the request-log store")?;
    logs.spawn_pruner(cp.leases().clone(), Duration::from_secs(60));
    let (log_ingest, log_query) =
        crate::grpc::log_services(cp.clone(), authn.clone(), logs.clone());
    let oauth_admin =
        portcullis_proto::v1::o_auth_admin_service_server::OAuthAdminServiceServer::new(
            crate::grpc::OAuthAdminApi::new(oauth.clone(), authn.clone()),
        );
    let docker = crate::docker::Docker::new(cp.clone(), cfg.docker.clone());
    let docker_grpc = crate::docker::grpc::DockerApi::new(docker.clone(), authn.clone()).server();
    let docker_ops = crate::docker::grpc_ops::DockerOpsApi::new(docker.clone(), authn.clone());
    let mut builder = tonic::transport::Server::builder().trace_fn(crate::telemetry::grpc_span);
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let grpc_server = builder
        .accept_http1(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(crate::scrape::GrpcMetricsLayer)
        .add_service(admin)
        .add_service(config)
        .add_service(oauth_admin)
        .add_service(log_ingest)
        .add_service(log_query)
        .add_service(docker_grpc)
        .add_service(docker_ops.clone().ports_server())
        .add_service(docker_ops.cleanup_server())
        .add_service(
            crate::declarative::grpc::DeclarativeApi::new(cp.clone(), authn.clone()).server(),
        )
        .serve_with_incoming_shutdown(
            // Nagle would hold a snapshot's last segment for the peer's delayed ACK (~40 ms).
            tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true)),
            shutdown(),
        );
    // In the background: an unreachable tcp:// engine must not delay startup.
    docker.spawn_health(Duration::from_secs(15));
    docker.spawn_reconcile(cfg.docker.reconcile_interval);
    let scrape = crate::scrape::Scrape::new(cp.clone(), oauth.clone());
    if let Some(listener) = metrics_listener {
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "serving /metrics without authentication");
        println!("portcullis-control-plane metrics={addr}");
        tokio::spawn(crate::scrape::serve_open(listener, scrape.clone()));
    }
    let app = http_app(cp.clone(), oauth, authn.clone())
        .merge(crate::declarative::rest::router(cp.clone(), authn.clone()))
        .merge(crate::rest::logs::router(cp, authn.clone(), logs))
        .merge(crate::docker::rest_ops::router(
            docker.clone(),
            authn.clone(),
        ))
        .merge(crate::docker::rest::router(docker, authn.clone()))
        .merge(crate::scrape::admin_router(scrape, authn))
        // A span per REST/OAuth call when --otlp-endpoint is given (a no-op otherwise).
        .route_layer(axum::middleware::from_fn(crate::telemetry::http_span))
        .layer(axum::middleware::from_fn(crate::scrape::track_rest));
    let http_server = axum::serve(http, app).with_graceful_shutdown(shutdown());

    tokio::select! {
        r = grpc_server => r.context("gRPC server failed")?,
        r = http_server => r.context("HTTP server failed")?,
    }
    Ok(())
}

/// The whole HTTP listener: the web console (`/ui/`), REST (`/health`, `/api/v1/…`, the OAuth admin API), the OAuth
/// protocol endpoints at the root, and the merged OpenAPI document (`/openapi.json`, Swagger
/// UI at `/docs`).
pub fn http_app(cp: ControlPlane, oauth: OAuthServer, authn: Authenticator) -> Router {
    Router::new()
        .merge(crate::ui::router(authn.clone(), oauth.clone()))
        .merge(rest::router(rest::ApiState::new(cp, oauth.clone(), authn)))
        .merge(crate::oauth::http::router(oauth))
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi()))
}

/// The OpenAPI document of every `/api/v1/` operation, REST and OAuth admin.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = rest::ApiDoc::openapi();
    doc.merge(rest::OAuthApiDoc::openapi());
    doc.merge(rest::logs::LogsApiDoc::openapi());
    doc.merge(crate::docker::rest::DockerApiDoc::openapi());
    doc.merge(crate::docker::rest_ops::DockerOpsApiDoc::openapi());
    doc.merge(crate::declarative::rest::DeclarativeApiDoc::openapi());
    doc
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
