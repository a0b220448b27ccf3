//! REST handlers, one per operation, each annotated for the OpenAPI document.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;

use super::{ApiError, ApiJson, ApiState, Cp, ErrorBody};
use crate::auth::Caller;
use crate::model::*;

type ApiResult<T> = Result<T, ApiError>;

pub(super) fn routes() -> axum::Router<ApiState> {
    axum::Router::new()
        .route("/health", get(health))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route(
            "/api/v1/proxy/targets",
            get(list_proxies).post(create_proxy),
        )
        .route(
            "/api/v1/proxy/targets/{hostname}",
            get(get_proxy).put(update_proxy).delete(delete_proxy),
        )
        .route(
            "/api/v1/proxy/targets/{hostname}/auth",
            get(get_proxy_auth)
                .put(set_proxy_auth)
                .delete(clear_proxy_auth),
        )
        .route(
            "/api/v1/proxy/targets/{hostname}/resource",
            get(get_proxy_resource)
                .put(set_proxy_resource)
                .delete(clear_proxy_resource),
        )
        .route("/api/v1/routes", get(list_routes).post(create_route))
        .route("/api/v1/routes/{id}", get(get_route).delete(delete_route))
        .route(
            "/api/v1/services/external",
            get(list_services).post(register_service),
        )
        .route(
            "/api/v1/services/external/{name}",
            get(get_service).delete(delete_service),
        )
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{id}", axum::routing::delete(delete_token))
        .route("/api/v1/dataplanes", get(list_dataplanes))
        .route(
            "/api/v1/certificates",
            get(list_certificates).post(create_certificate),
        )
        .route(
            "/api/v1/certificates/multi-domain",
            axum::routing::post(create_certificate),
        )
        .route(
            "/api/v1/certificates/{name}",
            get(get_certificate).delete(delete_certificate),
        )
        .route(
            "/api/v1/certificates/{name}/status",
            get(certificate_status),
        )
        .route(
            "/api/v1/certificates/{name}/renew",
            axum::routing::post(renew_certificate),
        )
        .route(
            "/api/v1/certificates/upload",
            axum::routing::post(upload_certificate),
        )
        .route(
            "/api/v1/certificates/{name}/export",
            get(export_certificate),
        )
        .route(
            "/api/v1/certificates/{name}/convert-to-production",
            axum::routing::post(convert_certificate),
        )
}

/// Store reachability, version and connected data planes; no token needed.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub(super) async fn health(State(cp): Cp) -> (StatusCode, Json<Health>) {
    let h = cp.health().await;
    let status = if h.store_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(h))
}

/// Liveness: the process answers. It does not look at the store, so an orchestrator does
/// not restart every control plane while Redis is away (they recover by themselves).
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "`ok`", body = String)))]
pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the store answers (one revision read), so this control plane can take
/// API calls and config streams; 503 while it cannot.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "`ready`", body = String),
        (status = 503, description = "`store unreachable`", body = String)))]
pub(super) async fn readyz(State(cp): Cp) -> (StatusCode, &'static str) {
    if cp.health().await.store_ok {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "store unreachable\n")
    }
}

#[utoipa::path(get, path = "/api/v1/proxy/targets", tag = "proxies", security(("bearer" = [])),
    responses((status = 200, body = [Proxy]), (status = 401, body = ErrorBody)))]
pub(super) async fn list_proxies(State(cp): Cp, c: Caller) -> ApiResult<Json<Vec<Proxy>>> {
    Ok(Json(cp.list_proxies(&c).await?))
}

#[utoipa::path(post, path = "/api/v1/proxy/targets", tag = "proxies", security(("bearer" = [])),
    request_body = ProxyInput,
    responses((status = 201, body = Proxy), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn create_proxy(
    State(cp): Cp,
    c: Caller,
    ApiJson(input): ApiJson<ProxyInput>,
) -> ApiResult<(StatusCode, Json<Proxy>)> {
    Ok((StatusCode::CREATED, Json(cp.create_proxy(&c, input).await?)))
}

#[utoipa::path(get, path = "/api/v1/proxy/targets/{hostname}", tag = "proxies", security(("bearer" = [])),
    params(("hostname" = String, Path)),
    responses((status = 200, body = Proxy), (status = 404, body = ErrorBody)))]
pub(super) async fn get_proxy(
    State(cp): Cp,
    c: Caller,
    Path(hostname): Path<String>,
) -> ApiResult<Json<Proxy>> {
    Ok(Json(cp.get_proxy(&c, &hostname).await?))
}

#[utoipa::path(put, path = "/api/v1/proxy/targets/{hostname}", tag = "proxies", security(("bearer" = [])),
    params(("hostname" = String, Path)), request_body = ProxyPatch,
    responses((status = 200, body = Proxy), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn update_proxy(
    State(cp): Cp,
    c: Caller,
    Path(hostname): Path<String>,
    ApiJson(patch): ApiJson<ProxyPatch>,
) -> ApiResult<Json<Proxy>> {
    Ok(Json(cp.update_proxy(&c, &hostname, patch).await?))
}

#[utoipa::path(delete, path = "/api/v1/proxy/targets/{hostname}", tag = "proxies", security(("bearer" = [])),
    params(("hostname" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn delete_proxy(
    State(cp): Cp,
    c: Caller,
    Path(hostname): Path<String>,
) -> ApiResult<StatusCode> {
    cp.delete_proxy(&c, &hostname).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Protects the proxy with edge OAuth (replaces any previous policy).
#[utoipa::path(put, path = "/api/v1/proxy/targets/{hostname}/auth", tag = "proxies", security(("bearer" = [])),
    params(("hostname" = String, Path)), request_body = ProxyAuthInput,
    responses((status = 200, body = ProxyAuthView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(super) async fn set_proxy_auth(
    State(cp): Cp,
    c: Caller,
    Path(hostname): Path<String>,
    ApiJson(input): ApiJson<ProxyAuthInput>,
) -> ApiResult<Json<ProxyAuthView>> {
    Ok(Json(cp.set_proxy_auth(&c, &hostname, input).await?))
}

/// The proxy's edge OAuth policy; `enabled: false` when unprotected.
#[utoipa::path(get, path = "/api/v1/proxy/targets/{hostname}/auth", tag = "proxies", security(("bearer" = [])),
    params(("hostname" = String, Path)),
    responses((status = 200, body = ProxyAuthView), (status = 404, body = ErrorBody)))]
pub(super) async fn get_proxy_auth(
    State(cp): Cp,
    c: Caller,
    Path(hostname): Path<String>,
) -> ApiResult<Json<ProxyAuthView>> {
    Ok(Json(cp.get_proxy_auth(&c, &hostname).await?))
}

/// Removes the proxy's edge OAuth protection.
#[utoipa::path(delete, path = "/api/v1/proxy/targets/{hostname}/auth", tag = "proxies", security(("bearer" = [])),
    params(("hostname" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn clear_proxy_auth(
    State(cp): Cp,
    c: Caller,
    Path(hostname): Path<String>,
) -> ApiResult<StatusCode> {
    cp.clear_proxy_auth(&c, &hostname).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets the protected proxy's resource settings: MCP endpoint, advertised scopes,
/// documentation, custom metadata fields and allowed browser origins (replaces them all).
#[utoipa::path(put, path = "/api/v1/proxy/targets/{hostname}/resource", tag = "proxies", security(("bearer" = [])),
    params(("hostname" = String, Path)), request_body = ProxyResourceInput,
    responses((status = 200, body = ProxyResourceView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn set_proxy_resource(
    State(cp): Cp,
    c: Caller,
    Path(hostname): Path<String>,
    ApiJson(input): ApiJson<ProxyResourceInput>,
) -> ApiResult<Json<ProxyResourceView>> {
    Ok(Json(cp.set_proxy_resource(&c, &hostname, input).await?))
}

/// The proxy's resource settings; `protected: false` when unprotected.
#[utoipa::path(get, path = "/api/v1/proxy/targets/{hostname}/resource", tag = "proxies", security(("bearer" = [])),
    params(("hostname" = String, Path)),
    responses((status = 200, body = ProxyResourceView), (status = 404, body = ErrorBody)))]
pub(super) async fn get_proxy_resource(
    State(cp): Cp,
    c: Caller,
    Path(hostname): Path<String>,
) -> ApiResult<Json<ProxyResourceView>> {
    Ok(Json(cp.get_proxy_resource(&c, &hostname).await?))
}

/// Resets the proxy's resource settings to none (the protection stays).
#[utoipa::path(delete, path = "/api/v1/proxy/targets/{hostname}/resource", tag = "proxies", security(("bearer" = [])),
    params(("hostname" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn clear_proxy_resource(
    State(cp): Cp,
    c: Caller,
    Path(hostname): Path<String>,
) -> ApiResult<StatusCode> {
    cp.clear_proxy_resource(&c, &hostname).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/routes", tag = "routes", security(("bearer" = [])),
    responses((status = 200, body = [Route])))]
pub(super) async fn list_routes(State(cp): Cp, c: Caller) -> ApiResult<Json<Vec<Route>>> {
    Ok(Json(cp.list_routes(&c).await?))
}

#[utoipa::path(post, path = "/api/v1/routes", tag = "routes", security(("bearer" = [])),
    request_body = RouteInput,
    responses((status = 201, body = Route), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn create_route(
    State(cp): Cp,
    c: Caller,
    ApiJson(input): ApiJson<RouteInput>,
) -> ApiResult<(StatusCode, Json<Route>)> {
    Ok((StatusCode::CREATED, Json(cp.create_route(&c, input).await?)))
}

#[utoipa::path(get, path = "/api/v1/routes/{id}", tag = "routes", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = Route), (status = 404, body = ErrorBody)))]
pub(super) async fn get_route(
    State(cp): Cp,
    c: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Route>> {
    Ok(Json(cp.get_route(&c, &id).await?))
}

#[utoipa::path(delete, path = "/api/v1/routes/{id}", tag = "routes", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn delete_route(
    State(cp): Cp,
    c: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    cp.delete_route(&c, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/services/external", tag = "services", security(("bearer" = [])),
    responses((status = 200, body = [ExternalService])))]
pub(super) async fn list_services(
    State(cp): Cp,
    c: Caller,
) -> ApiResult<Json<Vec<ExternalService>>> {
    Ok(Json(cp.list_services(&c).await?))
}

#[utoipa::path(post, path = "/api/v1/services/external", tag = "services", security(("bearer" = [])),
    request_body = ServiceInput,
    responses((status = 201, body = ExternalService), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn register_service(
    State(cp): Cp,
    c: Caller,
    ApiJson(input): ApiJson<ServiceInput>,
) -> ApiResult<(StatusCode, Json<ExternalService>)> {
    Ok((
        StatusCode::CREATED,
        Json(cp.register_service(&c, input).await?),
    ))
}

#[utoipa::path(get, path = "/api/v1/services/external/{name}", tag = "services", security(("bearer" = [])),
    params(("name" = String, Path)), responses((status = 200, body = ExternalService), (status = 404, body = ErrorBody)))]
pub(super) async fn get_service(
    State(cp): Cp,
    c: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<ExternalService>> {
    Ok(Json(cp.get_service(&c, &name).await?))
}

#[utoipa::path(delete, path = "/api/v1/services/external/{name}", tag = "services", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn delete_service(
    State(cp): Cp,
    c: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    cp.delete_service(&c, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", security(("bearer" = [])),
    responses((status = 200, body = [TokenInfo])))]
pub(super) async fn list_tokens(State(cp): Cp, c: Caller) -> ApiResult<Json<Vec<TokenInfo>>> {
    Ok(Json(cp.list_tokens(&c).await?))
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", security(("bearer" = [])),
    request_body = TokenInput,
    responses((status = 201, body = CreatedToken), (status = 403, body = ErrorBody)))]
pub(super) async fn create_token(
    State(cp): Cp,
    c: Caller,
    ApiJson(input): ApiJson<TokenInput>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    Ok((StatusCode::CREATED, Json(cp.create_token(&c, input).await?)))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn delete_token(
    State(cp): Cp,
    c: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    cp.delete_token(&c, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/dataplanes", tag = "dataplanes", security(("bearer" = [])),
    responses((status = 200, body = DataPlaneList)))]
pub(super) async fn list_dataplanes(State(cp): Cp, c: Caller) -> ApiResult<Json<DataPlaneList>> {
    Ok(Json(cp.list_dataplanes(&c).await?))
}

#[utoipa::path(get, path = "/api/v1/certificates", tag = "certificates", security(("bearer" = [])),
    responses((status = 200, body = [CertificateInfo])))]
pub(super) async fn list_certificates(
    State(cp): Cp,
    c: Caller,
) -> ApiResult<Json<Vec<CertificateInfo>>> {
    Ok(Json(cp.list_certificates(&c).await?))
}

/// Orders in the background (202) or makes a self-signed certificate at once (201).
#[utoipa::path(post, path = "/api/v1/certificates", tag = "certificates", security(("bearer" = [])),
    request_body = CertificateInput,
    responses((status = 202, body = CertificateInfo), (status = 201, body = CertificateInfo),
        (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn create_certificate(
    State(cp): Cp,
    c: Caller,
    ApiJson(input): ApiJson<CertificateInput>,
) -> ApiResult<(StatusCode, Json<CertificateInfo>)> {
    let info = cp.create_certificate(&c, input).await?;
    let status = if info.status == CertStatus::Pending {
        StatusCode::ACCEPTED
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(info)))
}

#[utoipa::path(get, path = "/api/v1/certificates/{name}", tag = "certificates", security(("bearer" = [])),
    params(("name" = String, Path)), responses((status = 200, body = CertificateInfo), (status = 404, body = ErrorBody)))]
pub(super) async fn get_certificate(
    State(cp): Cp,
    c: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<CertificateInfo>> {
    Ok(Json(cp.get_certificate(&c, &name).await?))
}

/// Status, validity and last error only.
#[utoipa::path(get, path = "/api/v1/certificates/{name}/status", tag = "certificates", security(("bearer" = [])),
    params(("name" = String, Path)), responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub(super) async fn certificate_status(
    State(cp): Cp,
    c: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let i = cp.get_certificate(&c, &name).await?;
    Ok(Json(serde_json::json!({
        "name": i.name, "status": i.status, "error": i.error, "domains": i.domains,
        "not_before": i.not_before, "not_after": i.not_after, "last_attempt_at": i.last_attempt_at,
    })))
}

#[utoipa::path(post, path = "/api/v1/certificates/{name}/renew", tag = "certificates", security(("bearer" = [])),
    params(("name" = String, Path)), responses((status = 202, body = CertificateInfo), (status = 404, body = ErrorBody)))]
pub(super) async fn renew_certificate(
    State(cp): Cp,
    c: Caller,
    Path(name): Path<String>,
) -> ApiResult<(StatusCode, Json<CertificateInfo>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(cp.renew_certificate(&c, &name).await?),
    ))
}

/// `?force=true` deletes even while proxies name the certificate.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub(super) struct ForceQuery {
    #[serde(default)]
    force: bool,
}

#[utoipa::path(delete, path = "/api/v1/certificates/{name}", tag = "certificates", security(("bearer" = [])),
    params(("name" = String, Path), ForceQuery),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn delete_certificate(
    State(cp): Cp,
    c: Caller,
    Path(name): Path<String>,
    axum::extract::Query(q): axum::extract::Query<ForceQuery>,
) -> ApiResult<StatusCode> {
    cp.delete_certificate(&c, &name, q.force).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Stores a certificate and key the user brings (PEM; validated).
#[utoipa::path(post, path = "/api/v1/certificates/upload", tag = "certificates", security(("bearer" = [])),
    request_body = CertificateUpload,
    responses((status = 201, body = CertificateInfo), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn upload_certificate(
    State(cp): Cp,
    c: Caller,
    ApiJson(input): ApiJson<CertificateUpload>,
) -> ApiResult<(StatusCode, Json<CertificateInfo>)> {
    Ok((
        StatusCode::CREATED,
        Json(cp.upload_certificate(&c, input).await?),
    ))
}

/// `?include_private_key=true` is required: exporting a key is never implicit.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub(super) struct ExportQuery {
    #[serde(default)]
    include_private_key: bool,
}

/// Chain and private key; admin only, and only with `include_private_key=true`.
#[utoipa::path(get, path = "/api/v1/certificates/{name}/export", tag = "certificates", security(("bearer" = [])),
    params(("name" = String, Path), ExportQuery),
    responses((status = 200, body = CertificateExport), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn export_certificate(
    State(cp): Cp,
    c: Caller,
    Path(name): Path<String>,
    axum::extract::Query(q): axum::extract::Query<ExportQuery>,
) -> ApiResult<Json<CertificateExport>> {
    Ok(Json(
        cp.export_certificate(&c, &name, q.include_private_key)
            .await?,
    ))
}

/// Re-orders a staging certificate from the production directory.
#[utoipa::path(post, path = "/api/v1/certificates/{name}/convert-to-production", tag = "certificates",
    security(("bearer" = [])), params(("name" = String, Path)),
    responses((status = 202, body = CertificateInfo), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn convert_certificate(
    State(cp): Cp,
    c: Caller,
    Path(name): Path<String>,
) -> ApiResult<(StatusCode, Json<CertificateInfo>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(cp.convert_to_production(&c, &name).await?),
    ))
}
