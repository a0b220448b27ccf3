//! The streamed Docker answers over REST, as Server-Sent Events (like
//! `/api/v1/logs/follow`): `GET /api/v1/services/{name}/stats` (one JSON sample, or with
//! `?stream=true` one `data:` sample per engine reading) and the `?follow=true` form of
//! `/api/v1/services/{name}/logs` (one `data:` JSON `{"line": …}` per line).
//!
//! A stream that ends because of an engine error sends `event: error` with
//! `{"detail": …}` first; one that ends at its bounds ([`super::stream`]) or because the
//! engine ended it (the container stopped) just ends. A client that goes away drops the
//! stream and with it the engine request.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{FromRef, Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};

use super::Docker;
use super::stream::{Follow, StatsSample};
use crate::auth::Caller;
use crate::authenticator::Authenticator;
use crate::rest::{ApiError, ErrorBody};

#[derive(Clone)]
struct SseState {
    docker: Docker,
    authn: Authenticator,
}

impl FromRef<SseState> for Authenticator {
    fn from_ref(s: &SseState) -> Self {
        s.authn.clone()
    }
}

/// `GET /api/v1/services/{name}/stats`.
pub fn router(docker: Docker, authn: Authenticator) -> axum::Router {
    axum::Router::new()
        .route("/api/v1/services/{name}/stats", get(stats))
        .with_state(SseState { docker, authn })
}

/// Query of `GET /api/v1/services/{name}/stats`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct StatsQuery {
    /// Follow: `text/event-stream`, one sample a second, for at most an hour.
    stream: Option<bool>,
}

/// CPU %, memory usage and limit, network and block I/O of the service's container.
#[utoipa::path(get, path = "/api/v1/services/{name}/stats", tag = "docker", security(("bearer" = [])), params(("name" = String, Path, description = "Service name"), StatsQuery),
    responses((status = 200, body = StatsSample, description = "one sample; with stream=true a text/event-stream of samples"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn stats(
    State(s): State<SseState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<StatsQuery>,
) -> Response {
    if q.stream.unwrap_or(false) {
        match s.docker.follow_stats(&caller, &name).await {
            Ok(st) => events(st),
            Err(e) => ApiError::from(e).into_response(),
        }
    } else {
        match s.docker.stats(&caller, &name).await {
            Ok(v) => Json(v).into_response(),
            Err(e) => ApiError::from(e).into_response(),
        }
    }
}

#[derive(Serialize)]
struct LineJson {
    line: String,
}

/// The `?follow=true` answer of the logs route.
pub async fn follow_logs(
    docker: &Docker,
    caller: &Caller,
    name: &str,
    tail: Option<u32>,
    timestamps: bool,
) -> Response {
    match docker.follow_logs(caller, name, tail, timestamps).await {
        Ok(st) => events(Box::pin(st.map(|r| r.map(|line| LineJson { line })))),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// One `data:` event per item; an error becomes `event: error` and ends the stream.
fn events<T: Serialize + Send + 'static>(st: Follow<T>) -> Response {
    let out = futures_util::stream::unfold(Some(st), |state| async move {
        let mut st = state?;
        match st.next().await? {
            Ok(v) => {
                let data = serde_json::to_string(&v).unwrap_or_default();
                Some((Ok::<_, Infallible>(Event::default().data(data)), Some(st)))
            }
            Err(e) => {
                let data = serde_json::json!({ "detail": e.to_string() }).to_string();
                Some((Ok(Event::default().event("error").data(data)), None))
            }
        }
    });
    Sse::new(out)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
