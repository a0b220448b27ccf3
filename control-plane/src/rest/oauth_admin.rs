//! The OAuth admin API under `/api/v1/oauth/`: identity providers, login rules, clients,
//! sessions, consents, signing keys and per-proxy settings, over [`crate::oauth::admin`].

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};

use super::{ApiError, ApiJson, ApiState, ErrorBody};
use crate::auth::Caller;
use crate::oauth::{self, IdpInput, LoginRuleInput, OAuthServer, admin};

type S = State<OAuthServer>;

pub(super) fn routes() -> axum::Router<ApiState> {
    axum::Router::new()
        .route("/api/v1/oauth/idps", get(list_idps).post(create_idp))
        .route("/api/v1/oauth/idps/{name}", delete(delete_idp))
        .route("/api/v1/oauth/rules", get(list_rules).post(create_rule))
        .route("/api/v1/oauth/rules/{id}", delete(delete_rule))
        .route("/api/v1/oauth/scopes", get(list_scopes))
        .route(
            "/api/v1/oauth/scopes/{scope}",
            axum::routing::put(set_scope_description).delete(delete_scope_description),
        )
        .route(
            "/api/v1/oauth/clients",
            get(list_clients).post(register_client),
        )
        .route("/api/v1/oauth/setup", post(setup))
        .route("/api/v1/oauth/clients/{id}", delete(delete_client))
        .route("/api/v1/oauth/sessions", get(list_sessions))
        .route("/api/v1/oauth/sessions/{id}", delete(revoke_session))
        .route("/api/v1/oauth/users/{sub}/sessions", delete(revoke_user))
        .route(
            "/api/v1/oauth/consents",
            get(list_consents).delete(revoke_consent),
        )
        .route("/api/v1/oauth/keys/rotate", post(rotate_keys))
        .route("/api/v1/oauth/metrics", get(oauth_metrics))
        .route(
            "/api/v1/oauth/proxies/{hostname}",
            get(get_proxy_settings)
                .put(set_proxy_settings)
                .delete(clear_proxy_settings),
        )
}

/// The OAuth admin operations for the OpenAPI document (merged with [`super::ApiDoc`] where
/// the server builds its HTTP app).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    list_idps,
    create_idp,
    delete_idp,
    list_rules,
    create_rule,
    delete_rule,
    list_scopes,
    set_scope_description,
    delete_scope_description,
    list_clients,
    register_client,
    setup,
    delete_client,
    list_sessions,
    revoke_session,
    revoke_user,
    list_consents,
    revoke_consent,
    rotate_keys,
    oauth_metrics,
    get_proxy_settings,
    set_proxy_settings,
    clear_proxy_settings,
))]
pub struct OAuthApiDoc;

type ApiResult<T> = Result<T, ApiError>;

#[utoipa::path(get, path = "/api/v1/oauth/idps", tag = "oauth", security(("bearer" = [])),
    responses((status = 200, body = [oauth::IdpView]), (status = 403, body = ErrorBody)))]
async fn list_idps(State(s): S, c: Caller) -> ApiResult<axum::Json<Vec<oauth::IdpView>>> {
    Ok(axum::Json(admin::list_idps(&s, &c).await?))
}

#[utoipa::path(post, path = "/api/v1/oauth/idps", tag = "oauth", security(("bearer" = [])),
    request_body = oauth::IdpInput,
    responses((status = 201, body = oauth::IdpView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_idp(
    State(s): S,
    c: Caller,
    ApiJson(input): ApiJson<IdpInput>,
) -> ApiResult<(StatusCode, axum::Json<oauth::IdpView>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(admin::create_idp(&s, &c, input).await?),
    ))
}

#[utoipa::path(delete, path = "/api/v1/oauth/idps/{name}", tag = "oauth", security(("bearer" = [])), params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_idp(State(s): S, c: Caller, Path(name): Path<String>) -> ApiResult<StatusCode> {
    admin::delete_idp(&s, &c, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/oauth/rules", tag = "oauth", security(("bearer" = [])),
    responses((status = 200, body = [oauth::LoginRule])))]
async fn list_rules(State(s): S, c: Caller) -> ApiResult<axum::Json<Vec<oauth::LoginRule>>> {
    Ok(axum::Json(admin::list_rules(&s, &c).await?))
}

#[utoipa::path(post, path = "/api/v1/oauth/rules", tag = "oauth", security(("bearer" = [])),
    request_body = oauth::LoginRuleInput,
    responses((status = 201, body = oauth::LoginRule), (status = 400, body = ErrorBody)))]
async fn create_rule(
    State(s): S,
    c: Caller,
    ApiJson(input): ApiJson<LoginRuleInput>,
) -> ApiResult<(StatusCode, axum::Json<oauth::LoginRule>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(admin::create_rule(&s, &c, input).await?),
    ))
}

#[utoipa::path(delete, path = "/api/v1/oauth/rules/{id}", tag = "oauth", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_rule(State(s): S, c: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    admin::delete_rule(&s, &c, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `PUT /api/v1/oauth/scopes/{scope}`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ScopeDescriptionInput {
    /// What granting the scope allows, in words users read on the consent page (1-200
    /// characters, one line).
    pub(super) description: String,
}

#[utoipa::path(get, path = "/api/v1/oauth/scopes", tag = "oauth", security(("bearer" = [])),
    responses((status = 200, body = [oauth::scopes::ScopeView]), (status = 403, body = ErrorBody)))]
async fn list_scopes(
    State(s): S,
    c: Caller,
) -> ApiResult<axum::Json<Vec<oauth::scopes::ScopeView>>> {
    Ok(axum::Json(admin::list_scopes(&s, &c).await?))
}

#[utoipa::path(put, path = "/api/v1/oauth/scopes/{scope}", tag = "oauth", security(("bearer" = [])),
    params(("scope" = String, Path)), request_body = ScopeDescriptionInput,
    responses((status = 200, body = oauth::scopes::ScopeView), (status = 400, body = ErrorBody)))]
async fn set_scope_description(
    State(s): S,
    c: Caller,
    Path(scope): Path<String>,
    ApiJson(input): ApiJson<ScopeDescriptionInput>,
) -> ApiResult<axum::Json<oauth::scopes::ScopeView>> {
    Ok(axum::Json(
        admin::set_scope_description(&s, &c, &scope, &input.description).await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/oauth/scopes/{scope}", tag = "oauth", security(("bearer" = [])),
    params(("scope" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_scope_description(
    State(s): S,
    c: Caller,
    Path(scope): Path<String>,
) -> ApiResult<StatusCode> {
    admin::delete_scope_description(&s, &c, &scope).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/oauth/clients", tag = "oauth", security(("bearer" = [])),
    responses((status = 200, body = [admin::ClientView])))]
async fn list_clients(State(s): S, c: Caller) -> ApiResult<axum::Json<Vec<admin::ClientView>>> {
    Ok(axum::Json(admin::list_clients(&s, &c).await?))
}

#[utoipa::path(post, path = "/api/v1/oauth/clients", tag = "oauth", security(("bearer" = [])),
    request_body = oauth::clients::ClientMetadata,
    responses((status = 201, description = "The client; `client_secret` is shown only here", body = oauth::clients::RegistrationResponse), (status = 400, body = ErrorBody)))]
async fn register_client(
    State(s): S,
    c: Caller,
    ApiJson(m): ApiJson<oauth::clients::ClientMetadata>,
) -> ApiResult<(StatusCode, axum::Json<oauth::clients::RegistrationResponse>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(admin::register_client(&s, &c, m).await?),
    ))
}

/// What `POST /api/v1/oauth/setup` takes (the REST twin of `portcullis oauth setup`).
#[derive(serde::Deserialize, utoipa::ToSchema)]
struct SetupInput {
    /// The host that publishes the OAuth endpoints.
    hostname: String,
    /// Where data planes reach this control plane's HTTP listener (default: its own URL).
    #[serde(default)]
    target_url: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/oauth/setup", tag = "oauth", security(("bearer" = [])),
    request_body = SetupInput,
    responses((status = 201, body = admin::SetupResult), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn setup(
    State(s): S,
    c: Caller,
    ApiJson(i): ApiJson<SetupInput>,
) -> ApiResult<(StatusCode, axum::Json<admin::SetupResult>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(admin::setup(&s, &c, &i.hostname, i.target_url.as_deref()).await?),
    ))
}

#[utoipa::path(delete, path = "/api/v1/oauth/clients/{id}", tag = "oauth", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_client(State(s): S, c: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    admin::delete_client(&s, &c, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/oauth/sessions", tag = "oauth", security(("bearer" = [])),
    responses((status = 200, body = [admin::SessionView])))]
async fn list_sessions(State(s): S, c: Caller) -> ApiResult<axum::Json<Vec<admin::SessionView>>> {
    Ok(axum::Json(admin::list_sessions(&s, &c).await?))
}

#[utoipa::path(delete, path = "/api/v1/oauth/sessions/{id}", tag = "oauth", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn revoke_session(State(s): S, c: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    admin::revoke_session(&s, &c, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/oauth/users/{sub}/sessions", tag = "oauth", security(("bearer" = [])), params(("sub" = String, Path, description = "The user's subject")),
    responses((status = 204, description = "Every session and token of the user revoked"), (status = 400, body = ErrorBody)))]
async fn revoke_user(State(s): S, c: Caller, Path(sub): Path<String>) -> ApiResult<StatusCode> {
    admin::revoke_user(&s, &c, &sub).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/oauth/consents", tag = "oauth", security(("bearer" = [])),
    responses((status = 200, body = [oauth::ConsentRecord])))]
async fn list_consents(State(s): S, c: Caller) -> ApiResult<axum::Json<Vec<oauth::ConsentRecord>>> {
    Ok(axum::Json(admin::list_consents(&s, &c).await?))
}

#[derive(serde::Deserialize)]
struct ConsentQuery {
    sub: String,
    client_id: String,
}

#[utoipa::path(delete, path = "/api/v1/oauth/consents", tag = "oauth", security(("bearer" = [])), params(("sub" = String, Query), ("client_id" = String, Query)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn revoke_consent(
    State(s): S,
    c: Caller,
    Query(q): Query<ConsentQuery>,
) -> ApiResult<StatusCode> {
    admin::revoke_consent(&s, &c, &q.sub, &q.client_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/oauth/keys/rotate", tag = "oauth", security(("bearer" = [])),
    responses((status = 200, description = "The new key id; it signs from now on (the call waits up to 10 s for data planes to ACK it)")))]
async fn rotate_keys(State(s): S, c: Caller) -> ApiResult<axum::Json<serde_json::Value>> {
    let kid = admin::rotate_keys(&s, &c).await?;
    Ok(axum::Json(serde_json::json!({"kid": kid})))
}

#[utoipa::path(get, path = "/api/v1/oauth/metrics", tag = "oauth", security(("bearer" = [])),
    responses((status = 200, body = oauth::Metrics)))]
async fn oauth_metrics(State(s): S, c: Caller) -> ApiResult<axum::Json<oauth::Metrics>> {
    Ok(axum::Json(admin::metrics(&s, &c).await?))
}

#[utoipa::path(get, path = "/api/v1/oauth/proxies/{hostname}", tag = "oauth", security(("bearer" = [])), params(("hostname" = String, Path)),
    responses((status = 200, body = oauth::ProxyOAuthView), (status = 404, body = ErrorBody)))]
async fn get_proxy_settings(
    State(s): S,
    c: Caller,
    Path(h): Path<String>,
) -> ApiResult<axum::Json<oauth::ProxyOAuthView>> {
    Ok(axum::Json(admin::get_proxy_settings(&s, &c, &h).await?))
}

#[utoipa::path(put, path = "/api/v1/oauth/proxies/{hostname}", tag = "oauth", security(("bearer" = [])), params(("hostname" = String, Path)),
    request_body = oauth::ProxyOAuthInput,
    responses((status = 200, body = oauth::ProxyOAuthView), (status = 400, body = ErrorBody)))]
async fn set_proxy_settings(
    State(s): S,
    c: Caller,
    Path(h): Path<String>,
    ApiJson(input): ApiJson<oauth::ProxyOAuthInput>,
) -> ApiResult<axum::Json<oauth::ProxyOAuthView>> {
    Ok(axum::Json(
        admin::set_proxy_settings(&s, &c, &h, input).await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/oauth/proxies/{hostname}", tag = "oauth", security(("bearer" = [])), params(("hostname" = String, Path)),
    responses((status = 204)))]
async fn clear_proxy_settings(
    State(s): S,
    c: Caller,
    Path(h): Path<String>,
) -> ApiResult<StatusCode> {
    admin::clear_proxy_settings(&s, &c, &h).await?;
    Ok(StatusCode::NO_CONTENT)
}
