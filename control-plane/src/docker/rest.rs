//! Docker services over REST: `/api/v1/services` (+ `/{name}`, `/{name}/start|stop|restart|
//! logs|ports|proxy`), `/api/v1/ports`, `/api/v1/ports/check/{port}` and
//! `/api/v1/docker/health`. `/api/v1/services/external` belongs to the external-service
//! handlers and is not shadowed: axum prefers its static segment over `{name}`.

use axum::Json;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;

use super::spec::{ContainerServiceInput, PortAllocation};
use super::{DeleteReport, Docker, DockerStatus, PortCheck, ServiceView};
use crate::auth::Caller;
use crate::authenticator::Authenticator;
use crate::model::Proxy;
use crate::rest::{ApiError, ApiJson, ErrorBody};

type ApiResult<T> = Result<T, ApiError>;

/// The Docker routes' part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        list,
        create,
        show,
        remove,
        start,
        stop,
        restart,
        logs,
        service_ports,
        proxy_create,
        ports,
        check,
        health,
        super::sse::stats
    ),
    components(schemas(
        ServiceView,
        ContainerServiceInput,
        PortAllocation,
        PortCheck,
        DockerStatus,
        DeleteReport,
        LogsBody,
        ProxyCreateBody,
        super::stream::StatsSample
    ))
)]
pub struct DockerApiDoc;

/// State of the Docker routes.
#[derive(Clone)]
pub struct DockerState {
    docker: Docker,
    authn: Authenticator,
}

impl FromRef<DockerState> for Authenticator {
    fn from_ref(s: &DockerState) -> Self {
        s.authn.clone()
    }
}

/// The Docker service and port routes.
pub fn router(docker: Docker, authn: Authenticator) -> axum::Router {
    axum::Router::new()
        .route(
            "/api/v1/services",
            get(list)
                .post(create)
                // A build context (base64) is larger than axum's default 2 MB.
                .layer(axum::extract::DefaultBodyLimit::max(
                    super::build::MAX_CONTEXT_BYTES / 3 * 4 + (1 << 20),
                )),
        )
        .route("/api/v1/services/{name}", get(show).delete(remove))
        .route("/api/v1/services/{name}/start", post(start))
        .route("/api/v1/services/{name}/stop", post(stop))
        .route("/api/v1/services/{name}/restart", post(restart))
        .route("/api/v1/services/{name}/logs", get(logs))
        .route("/api/v1/services/{name}/ports", get(service_ports))
        .route("/api/v1/services/{name}/proxy", post(proxy_create))
        .route("/api/v1/ports", get(ports))
        .route("/api/v1/ports/check/{port}", get(check))
        .route("/api/v1/docker/health", get(health))
        .with_state(DockerState {
            docker: docker.clone(),
            authn: authn.clone(),
        })
        .merge(super::sse::router(docker, authn))
}

#[utoipa::path(get, path = "/api/v1/services", tag = "docker", security(("bearer" = [])),
    responses((status = 200, body = Vec<ServiceView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn list(State(s): State<DockerState>, caller: Caller) -> ApiResult<Json<Vec<ServiceView>>> {
    Ok(Json(s.docker.list(&caller).await?))
}

#[utoipa::path(post, path = "/api/v1/services", tag = "docker", security(("bearer" = [])), request_body = ContainerServiceInput,
    responses((status = 201, body = ServiceView), (status = 409, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn create(
    State(s): State<DockerState>,
    caller: Caller,
    ApiJson(input): ApiJson<ContainerServiceInput>,
) -> ApiResult<(StatusCode, Json<ServiceView>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.docker.create(&caller, input).await?),
    ))
}

#[utoipa::path(get, path = "/api/v1/services/{name}", tag = "docker", security(("bearer" = [])), params(("name" = String, Path, description = "Service name")),
    responses((status = 200, body = ServiceView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn show(
    State(s): State<DockerState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<ServiceView>> {
    Ok(Json(s.docker.show(&caller, &name).await?))
}

#[utoipa::path(delete, path = "/api/v1/services/{name}", tag = "docker", security(("bearer" = [])), params(("name" = String, Path, description = "Service name")),
    responses((status = 200, body = DeleteReport), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn remove(
    State(s): State<DockerState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<DeleteReport>> {
    Ok(Json(s.docker.delete(&caller, &name).await?))
}

#[utoipa::path(post, path = "/api/v1/services/{name}/start", tag = "docker", security(("bearer" = [])), params(("name" = String, Path, description = "Service name")),
    responses((status = 200, body = ServiceView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn start(
    State(s): State<DockerState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<ServiceView>> {
    Ok(Json(s.docker.start(&caller, &name).await?))
}

#[utoipa::path(post, path = "/api/v1/services/{name}/stop", tag = "docker", security(("bearer" = [])), params(("name" = String, Path, description = "Service name")),
    responses((status = 200, body = ServiceView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn stop(
    State(s): State<DockerState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<ServiceView>> {
    Ok(Json(s.docker.stop(&caller, &name).await?))
}

#[utoipa::path(post, path = "/api/v1/services/{name}/restart", tag = "docker", security(("bearer" = [])), params(("name" = String, Path, description = "Service name")),
    responses((status = 200, body = ServiceView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn restart(
    State(s): State<DockerState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<ServiceView>> {
    Ok(Json(s.docker.restart(&caller, &name).await?))
}

/// Query of `GET /api/v1/services/{name}/logs`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    /// Lines from the end (default 100).
    tail: Option<u32>,
    /// Prefix each line with the engine's RFC 3339 timestamp.
    timestamps: Option<bool>,
    /// Follow: `text/event-stream`, one `data: {"line": …}` per line as printed, until the
    /// container stops, the client goes, an hour or 64 MiB (see `docker::stream`).
    follow: Option<bool>,
}

/// Body of the logs answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct LogsBody {
    lines: Vec<String>,
}

#[utoipa::path(get, path = "/api/v1/services/{name}/logs", tag = "docker", security(("bearer" = [])), params(("name" = String, Path, description = "Service name"), LogsQuery),
    responses((status = 200, body = LogsBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn logs(
    State(s): State<DockerState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse as _;
    let ts = q.timestamps.unwrap_or(false);
    if q.follow.unwrap_or(false) {
        return Ok(super::sse::follow_logs(&s.docker, &caller, &name, q.tail, ts).await);
    }
    let lines = s
        .docker
        .logs(&caller, &name, q.tail, q.timestamps.unwrap_or(false))
        .await?;
    Ok(Json(LogsBody { lines }).into_response())
}

#[utoipa::path(get, path = "/api/v1/services/{name}/ports", tag = "docker", security(("bearer" = [])), params(("name" = String, Path, description = "Service name")),
    responses((status = 200, body = Vec<super::spec::PortMapping>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn service_ports(
    State(s): State<DockerState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<super::spec::PortMapping>>> {
    Ok(Json(s.docker.service_ports(&caller, &name).await?))
}

/// Body of `POST /api/v1/services/{name}/proxy`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ProxyCreateBody {
    /// Default `<name>.localhost`.
    hostname: Option<String>,
    /// Port name (default: the first tcp port).
    port: Option<String>,
    /// Serve HTTPS too (default false).
    https: Option<bool>,
    /// `host` (default: the published host port) or `container` (the container's address
    /// on its network and the container port).
    target: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/services/{name}/proxy", tag = "docker", security(("bearer" = [])), params(("name" = String, Path, description = "Service name")), request_body = ProxyCreateBody,
    responses((status = 201, body = Proxy), (status = 409, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn proxy_create(
    State(s): State<DockerState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<ProxyCreateBody>,
) -> ApiResult<(StatusCode, Json<Proxy>)> {
    let proxy = s
        .docker
        .proxy_create(
            &caller,
            &name,
            body.hostname,
            body.port.as_deref(),
            body.https.unwrap_or(false),
            body.target.as_deref(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(proxy)))
}

#[utoipa::path(get, path = "/api/v1/ports", tag = "docker", security(("bearer" = [])),
    responses((status = 200, body = Vec<PortAllocation>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn ports(
    State(s): State<DockerState>,
    caller: Caller,
) -> ApiResult<Json<Vec<PortAllocation>>> {
    Ok(Json(s.docker.ports(&caller).await?))
}

/// Query of `GET /api/v1/ports/check/{port}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct CheckQuery {
    /// Bind address (default 127.0.0.1).
    bind: Option<String>,
    /// `tcp` (default) or `udp`.
    protocol: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/ports/check/{port}", tag = "docker", security(("bearer" = [])), params(("port" = u16, Path, description = "Host port"), CheckQuery),
    responses((status = 200, body = PortCheck), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn check(
    State(s): State<DockerState>,
    _caller: Caller,
    Path(port): Path<u16>,
    Query(q): Query<CheckQuery>,
) -> ApiResult<Json<PortCheck>> {
    Ok(Json(
        s.docker
            .check_port(port, q.bind.as_deref(), q.protocol.as_deref())
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/docker/health", tag = "docker", security(("bearer" = [])),
    responses((status = 200, body = DockerStatus), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn health(State(s): State<DockerState>, _caller: Caller) -> Json<DockerStatus> {
    Json(s.docker.status().await)
}
