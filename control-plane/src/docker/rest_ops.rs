//! REST for port changes and reconciliation: `POST /api/v1/services/{name}/ports`,
//! `GET|DELETE /api/v1/services/{name}/ports/{port_name}`, `GET /api/v1/ports/available`,
//! `GET|POST /api/v1/services/cleanup`. Merged beside [`super::rest`]; axum prefers the
//! static `cleanup` segment over `{name}` (and `cleanup` is not a valid service name).

use axum::Json;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;

use super::Docker;
use super::ports::{AvailablePorts, PortAddInput, PortChange, PortRange};
use super::reconcile::{Orphan, ReconcileReport};
use super::spec::PortMapping;
use crate::auth::Caller;
use crate::authenticator::Authenticator;
use crate::rest::{ApiError, ApiJson, ErrorBody};

type ApiResult<T> = Result<T, ApiError>;

/// These routes' part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(port_add, port_show, port_remove, available, orphans, cleanup),
    components(schemas(
        PortAddInput,
        PortChange,
        PortMapping,
        PortRange,
        AvailablePorts,
        Orphan,
        ReconcileReport
    ))
)]
pub struct DockerOpsApiDoc;

#[derive(Clone)]
struct OpsState {
    docker: Docker,
    authn: Authenticator,
}

impl FromRef<OpsState> for Authenticator {
    fn from_ref(s: &OpsState) -> Self {
        s.authn.clone()
    }
}

/// The routes.
pub fn router(docker: Docker, authn: Authenticator) -> axum::Router {
    axum::Router::new()
        .route("/api/v1/services/{name}/ports", post(port_add))
        .route(
            "/api/v1/services/{name}/ports/{port_name}",
            get(port_show).delete(port_remove),
        )
        .route("/api/v1/ports/available", get(available))
        .route("/api/v1/services/cleanup", get(orphans).post(cleanup))
        .with_state(OpsState { docker, authn })
}

#[utoipa::path(post, path = "/api/v1/services/{name}/ports", tag = "docker", security(("bearer" = [])), params(("name" = String, Path, description = "Service name")), request_body = PortAddInput,
    responses((status = 201, body = PortChange, description = "Published; the container was recreated (`recreated`)"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn port_add(
    State(s): State<OpsState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(input): ApiJson<PortAddInput>,
) -> ApiResult<(StatusCode, Json<PortChange>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.docker.add_port(&caller, &name, input).await?),
    ))
}

#[utoipa::path(get, path = "/api/v1/services/{name}/ports/{port_name}", tag = "docker", security(("bearer" = [])), params(("name" = String, Path, description = "Service name"), ("port_name" = String, Path, description = "Port name")),
    responses((status = 200, body = PortMapping), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn port_show(
    State(s): State<OpsState>,
    caller: Caller,
    Path((name, port)): Path<(String, String)>,
) -> ApiResult<Json<PortMapping>> {
    Ok(Json(s.docker.service_port(&caller, &name, &port).await?))
}

#[utoipa::path(delete, path = "/api/v1/services/{name}/ports/{port_name}", tag = "docker", security(("bearer" = [])), params(("name" = String, Path, description = "Service name"), ("port_name" = String, Path, description = "Port name")),
    responses((status = 200, body = PortChange, description = "Unpublished and released; the container was recreated"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn port_remove(
    State(s): State<OpsState>,
    caller: Caller,
    Path((name, port)): Path<(String, String)>,
) -> ApiResult<Json<PortChange>> {
    Ok(Json(s.docker.remove_port(&caller, &name, &port).await?))
}

/// Query of `GET /api/v1/ports/available`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AvailableQuery {
    /// Bind address to probe (default 127.0.0.1).
    bind: Option<String>,
    /// `tcp` (default) or `udp`.
    protocol: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/ports/available", tag = "docker", security(("bearer" = [])), params(AvailableQuery),
    responses((status = 200, body = AvailablePorts), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn available(
    State(s): State<OpsState>,
    _caller: Caller,
    Query(q): Query<AvailableQuery>,
) -> ApiResult<Json<AvailablePorts>> {
    Ok(Json(
        s.docker
            .available_ports(q.bind.as_deref(), q.protocol.as_deref())
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/services/cleanup", tag = "docker", security(("bearer" = [])),
    responses((status = 200, body = ReconcileReport, description = "Orphaned containers, missing containers and stale allocations (a user token: its own)"), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn orphans(State(s): State<OpsState>, caller: Caller) -> ApiResult<Json<ReconcileReport>> {
    Ok(Json(s.docker.reconcile_report(&caller).await?))
}

/// Query of `POST /api/v1/services/cleanup`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct CleanupQuery {
    /// Only report what would be removed.
    dry_run: Option<bool>,
}

#[utoipa::path(post, path = "/api/v1/services/cleanup", tag = "docker", security(("bearer" = [])), params(CleanupQuery),
    responses((status = 200, body = ReconcileReport, description = "What was removed (`removed`, `released`)"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn cleanup(
    State(s): State<OpsState>,
    caller: Caller,
    Query(q): Query<CleanupQuery>,
) -> ApiResult<Json<ReconcileReport>> {
    Ok(Json(
        s.docker
            .cleanup(&caller, q.dry_run.unwrap_or(false))
            .await?,
    ))
}
