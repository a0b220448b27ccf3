//! `/metrics` of the control plane, and the layers that count API calls.
//!
//! Served two ways: on the main HTTP listener, where it needs an admin API token like the
//! rest of the admin API ([`admin_router`]); and, with `--metrics-listen ADDR`, on a
//! listener of its own without authentication ([`serve_open`]), for a Prometheus that
//! holds no token (Traefik's metrics entrypoint). Put that address where only the scraper
//! reaches it.
//!
//! A scrape reads the data-plane records, the certificates and the OAuth counters from
//! the store (two listings), then encodes; the process-wide values come from
//! [`crate::metrics`]. API calls are counted by [`track_rest`] (an axum middleware on the
//! merged HTTP app, labelled with the matched route template) and [`GrpcMetricsLayer`]
//! (a tower layer on the gRPC server, labelled with the gRPC method of a served service);
//! both at the response head, so a streaming call counts when its stream opens.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::proto::{Metric, MetricFamily, MetricType};
use tokio::net::TcpListener;
use tower::{Layer, Service};

use crate::authenticator::Authenticator;
use crate::error::ServiceError;
use crate::metrics::{self, counter, family, gauge};
use crate::model::{CertificateRecord, now};
use crate::oauth::OAuthServer;
use crate::rest::ApiError;
use crate::service::ControlPlane;
use crate::store::{Collection, decode};

/// What a scrape reads.
#[derive(Clone)]
pub struct Scrape {
    cp: ControlPlane,
    oauth: OAuthServer,
}

impl Scrape {
    /// Scrapes `cp` and `oauth`.
    pub fn new(cp: ControlPlane, oauth: OAuthServer) -> Self {
        Self { cp, oauth }
    }

    /// The exposition text. A store failure leaves those series out (and is logged).
    pub async fn render(&self) -> String {
        let mut families = metrics::families();
        families.extend(self.dataplanes().await);
        families.extend(self.certificates().await);
        families.extend(self.oauth());
        metrics::encode(families)
    }

    async fn dataplanes(&self) -> Vec<MetricFamily> {
        let list = match self.cp.dataplanes().list().await {
            Ok(list) => list,
            Err(error) => {
                tracing::warn!(%error, "metrics: cannot read data planes");
                return Vec::new();
            }
        };
        let (mut connected, mut applied) = (Vec::new(), Vec::new());
        for dp in &list.items {
            let labels = [("node_id", dp.node_id.as_str())];
            connected.push(gauge(&labels, if dp.connected { 1.0 } else { 0.0 }));
            applied.push(gauge(&labels, dp.applied_version as f64));
        }
        let open = list.items.iter().filter(|d| d.connected).count();
        vec![
            family(
                "portcullis_cp_config_version",
                "Current configuration version (the snapshot version data planes should apply).",
                MetricType::GAUGE,
                vec![gauge(&[], list.current_version as f64)],
            ),
            family(
                "portcullis_cp_dataplanes_connected",
                "Data planes with an open config stream (to any control plane sharing the store).",
                MetricType::GAUGE,
                vec![gauge(&[], open as f64)],
            ),
            family(
                "portcullis_cp_dataplane_connected",
                "Whether each known data plane has an open config stream (1) or not (0).",
                MetricType::GAUGE,
                connected,
            ),
            family(
                "portcullis_cp_dataplane_applied_version",
                "Configuration version each data plane last acknowledged.",
                MetricType::GAUGE,
                applied,
            ),
        ]
    }

    async fn certificates(&self) -> Vec<MetricFamily> {
        let raw = match self.cp.store().list(Collection::Certificates).await {
            Ok(raw) => raw,
            Err(error) => {
                tracing::warn!(%error, "metrics: cannot read certificates");
                return Vec::new();
            }
        };
        let t = now();
        let expiry: Vec<Metric> = raw
            .iter()
            .filter_map(|(k, v)| decode::<CertificateRecord>(Collection::Certificates, k, v).ok())
            .filter(|c| !c.cert_chain_pem.is_empty())
            .map(|c| gauge(&[("name", &c.name)], (c.not_after - t) as f64))
            .collect();
        vec![family(
            "portcullis_cp_certificate_expiry_seconds",
            "Seconds until each issued certificate expires (negative: expired).",
            MetricType::GAUGE,
            expiry,
        )]
    }

    fn oauth(&self) -> Vec<MetricFamily> {
        let c = self.oauth.counters();
        let read = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
        [
            (
                "portcullis_cp_oauth_tokens_issued_total",
                "OAuth access tokens issued for a new login (code or device grant).",
                read(&c.issued),
            ),
            (
                "portcullis_cp_oauth_tokens_refreshed_total",
                "OAuth refresh grants served.",
                read(&c.refreshed),
            ),
            (
                "portcullis_cp_oauth_tokens_revoked_total",
                "OAuth tokens or token families revoked.",
                read(&c.revoked),
            ),
            (
                "portcullis_cp_oauth_login_failures_total",
                "Upstream logins that failed at the callback.",
                read(&c.login_failures),
            ),
        ]
        .into_iter()
        .map(|(name, help, n)| family(name, help, MetricType::COUNTER, vec![counter(&[], n)]))
        .collect()
    }
}

fn exposition(text: String) -> Response {
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static(metrics::CONTENT_TYPE),
        )],
        text,
    )
        .into_response()
}

/// `/metrics` for the main HTTP listener: an admin API token is required.
pub fn admin_router(scrape: Scrape, authn: Authenticator) -> Router {
    Router::new()
        .route("/metrics", get(admin_metrics))
        .with_state((scrape, authn))
}

async fn admin_metrics(
    State((scrape, authn)): State<(Scrape, Authenticator)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let secret = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::bearer)
        .ok_or(ServiceError::Unauthenticated(
            "send `Authorization: Bearer <token>`",
        ))?;
    let caller = authn.api_caller(secret).await?;
    if !caller.is_admin() {
        return Err(ServiceError::Forbidden("/metrics needs an admin token".into()).into());
    }
    Ok(exposition(scrape.render().await))
}

/// Serves `/metrics` without authentication on `listener` (`--metrics-listen`), until the
/// process ends. Anything else is 404.
pub async fn serve_open(listener: TcpListener, scrape: Scrape) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(scrape): State<Scrape>| async move { exposition(scrape.render().await) }),
        )
        .with_state(scrape);
    axum::serve(listener, app).await
}

/// Counts one REST/HTTP call by route template and status class (axum middleware, added
/// with `Router::layer` so the matched route is known). Requests no route matched count as
/// `unmatched`, whatever their path.
pub async fn track_rest(req: Request, next: Next) -> Response {
    let operation = req
        .extensions()
        .get::<MatchedPath>()
        .map(|path| format!("{} {}", method_label(req.method()), path.as_str()));
    let response = next.run(req).await;
    metrics::api_call(
        "rest",
        operation.as_deref().unwrap_or("unmatched"),
        status_class(response.status()),
    );
    response
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Counts gRPC calls by method and status code (a tower layer for the tonic server).
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcMetricsLayer;

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

/// The service of [`GrpcMetricsLayer`].
#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB> Service<http::Request<B>> for GrpcMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.uri().path().to_owned();
        let call = self.inner.call(req);
        Box::pin(async move {
            let result = call.await;
            if let Ok(response) = &result {
                record_grpc(&method, response.headers());
            }
            result
        })
    }
}

/// A call's outcome is its `grpc-status` header (an error answered at once, trailers-only)
/// or `Ok` (a status in trailers, which come after the head); also recorded on the call's
/// span. Methods of no served service
/// (`Unimplemented`, or outside `portcullis.`) count as `unknown`, so clients cannot add
/// label values.
fn record_grpc(path: &str, headers: &http::HeaderMap) {
    let code = headers
        .get("grpc-status")
        .map_or(tonic::Code::Ok, |v| tonic::Code::from_bytes(v.as_bytes()));
    let operation = if code == tonic::Code::Unimplemented || !path.starts_with("/portcullis.") {
        "unknown"
    } else {
        path
    };
    metrics::api_call("grpc", operation, &format!("{code:?}"));
    crate::telemetry::record_grpc_status(code);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_outcomes_and_unknown_methods() {
        let mut headers = http::HeaderMap::new();
        record_grpc("/portcullis.v1.ScrapeTest/Get", &headers);
        headers.insert("grpc-status", HeaderValue::from_static("16"));
        record_grpc("/portcullis.v1.ScrapeTest/Get", &headers);
        headers.insert("grpc-status", HeaderValue::from_static("12"));
        record_grpc("/portcullis.v1.ScrapeTest/Nope", &headers);
        let text = metrics::encode(metrics::families());
        for series in [
            "{api=\"grpc\",operation=\"/portcullis.v1.ScrapeTest/Get\",outcome=\"Ok\"} 1\n",
            "{api=\"grpc\",operation=\"/portcullis.v1.ScrapeTest/Get\",outcome=\"Unauthenticated\"} 1\n",
            "{api=\"grpc\",operation=\"unknown\",outcome=\"Unimplemented\"} ",
        ] {
            assert!(text.contains(series), "{series} in {text}");
        }
        assert!(!text.contains("ScrapeTest/Nope"), "{text}");
    }
}
