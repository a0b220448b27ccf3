//! Admin listener for orchestrators: `/healthz` (process alive), `/readyz` (a
//! snapshot is being served, so traffic can be routed) and `/metrics` (Prometheus text
//! format, [`crate::metrics`]).
//!
//! No authentication, as before `/metrics` existed: the listener is reached only where
//! `--admin-listen` puts it (a loopback or cluster-internal address). `/metrics` names the
//! configured proxy hostnames and counts, never clients, paths or credentials.

use std::convert::Infallible;
use std::sync::Arc;

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::body::{self, ProxyBody};
use crate::store::ConfigStore;
use crate::{access_log, metrics, server};

/// Serves the admin endpoints forever.
pub async fn serve_admin(listener: TcpListener, store: Arc<ConfigStore>) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let store = store.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let response = respond(&store, &req);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(error) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, %error, "admin connection closed with error");
            }
        });
    }
}

/// Answers one admin request.
pub(crate) fn respond<B>(store: &ConfigStore, req: &Request<B>) -> Response<ProxyBody> {
    if req.uri().path() == "/metrics" {
        let text = metrics::render(metrics::External {
            parked_connections: server::parked_connections() as u64,
            refused_connections: server::refused_connections(),
            proxy_protocol_refused: server::refused_headers(),
            access_log_dropped: access_log::dropped_records(),
        });
        let mut response = Response::new(body::full(text));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(metrics::CONTENT_TYPE),
        );
        return response;
    }
    let (status, text) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, "ok\n".to_owned()),
        "/readyz" => match store.version() {
            Some(version) => (StatusCode::OK, format!("ready version={version}\n")),
            None => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_owned()),
        },
        _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    let mut response = Response::new(body::full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    #[tokio::test]
    async fn metrics_are_served_in_the_text_format() {
        let store = ConfigStore::default();
        let req = Request::get("/metrics").body(()).unwrap();
        let response = respond(&store, &req);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[CONTENT_TYPE],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let text = std::str::from_utf8(&body).unwrap();
        assert!(
            text.contains("# TYPE portcullis_dp_open_connections gauge\n"),
            "{text}"
        );
        assert!(text.contains("portcullis_dp_parked_connections "), "{text}");
        // Not ready yet: health is unaffected, readiness says so.
        let req = Request::get("/readyz").body(()).unwrap();
        assert_eq!(
            respond(&store, &req).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
