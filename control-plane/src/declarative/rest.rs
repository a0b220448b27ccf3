//! REST for declarative configuration: `GET /api/v1/config` (the document, JSON or
//! `?format=yaml`) and `POST /api/v1/config/apply?dry_run=true&prune=true` (a JSON or YAML
//! body, by `Content-Type`). Admin tokens only, as over gRPC.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRef, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::{ApplyError, ApplyOptions, Change, PathError, Report};
use crate::auth::Caller;
use crate::authenticator::Authenticator;
use crate::rest::{ApiError, ErrorBody};
use crate::service::ControlPlane;

/// These routes' part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(export, apply),
    components(schemas(Report, Change, super::Action, PathError, DocumentErrorBody))
)]
pub struct DeclarativeApiDoc;

#[derive(Clone)]
struct ConfigState {
    cp: ControlPlane,
    authn: Authenticator,
}

impl FromRef<ConfigState> for Authenticator {
    fn from_ref(s: &ConfigState) -> Self {
        s.authn.clone()
    }
}

/// The routes.
pub fn router(cp: ControlPlane, authn: Authenticator) -> axum::Router {
    axum::Router::new()
        .route("/api/v1/config", get(export))
        .route("/api/v1/config/apply", post(apply))
        .layer(DefaultBodyLimit::max(super::grpc::MAX_DOCUMENT_BYTES))
        .with_state(ConfigState { cp, authn })
}

/// Query of `GET /api/v1/config`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    /// `json` (default) or `yaml`.
    format: Option<String>,
}

/// Query of `POST /api/v1/config/apply`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ApplyQuery {
    /// Only compute the diff.
    dry_run: Option<bool>,
    /// Delete resources the document does not list.
    prune: Option<bool>,
}

/// 400 for an invalid document: every error at its path.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DocumentErrorBody {
    /// `invalid_document`.
    pub error: &'static str,
    /// All errors, one a line.
    pub detail: String,
    /// Each error with its path in the document.
    pub errors: Vec<PathError>,
}

fn bad_request(detail: String, errors: Vec<PathError>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(DocumentErrorBody {
            error: "invalid_document",
            detail,
            errors,
        }),
    )
        .into_response()
}

#[utoipa::path(get, path = "/api/v1/config", tag = "config", security(("bearer" = [])), params(ExportQuery),
    responses((status = 200, description = "The whole configuration as one document (no secrets, no keys)"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn export(
    State(s): State<ConfigState>,
    caller: Caller,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let doc = super::export(&s.cp, &caller).await?;
    match q.format.as_deref() {
        None | Some("json") => Ok(Json(doc).into_response()),
        Some("yaml") => {
            let text = serde_norway::to_string(&doc).map_err(|e| {
                crate::error::ServiceError::Unavailable(format!("cannot write YAML: {e}"))
            })?;
            Ok(([(header::CONTENT_TYPE, "application/yaml")], text).into_response())
        }
        Some(_) => Err(crate::error::ServiceError::invalid("format", "json or yaml").into()),
    }
}

#[utoipa::path(post, path = "/api/v1/config/apply", tag = "config", security(("bearer" = [])), params(ApplyQuery),
    request_body(content = Object, description = "The document, as JSON or YAML (`Content-Type: application/yaml`)"),
    responses((status = 200, body = Report, description = "The diff, and whether it was written"), (status = 400, body = DocumentErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn apply(
    State(s): State<ConfigState>,
    caller: Caller,
    Query(q): Query<ApplyQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let yaml = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.contains("yaml"));
    let doc: Result<serde_json::Value, String> = if yaml {
        serde_norway::from_slice(&body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    };
    let doc = match doc {
        Ok(d) => d,
        Err(e) => {
            let err = PathError {
                path: "$".into(),
                message: format!("not a {} document: {e}", if yaml { "YAML" } else { "JSON" }),
            };
            return bad_request(err.to_string(), vec![err]);
        }
    };
    let opts = ApplyOptions {
        prune: q.prune.unwrap_or(false),
        dry_run: q.dry_run.unwrap_or(false),
    };
    match super::apply(&s.cp, &caller, &doc, opts).await {
        Ok(report) => Json(report).into_response(),
        Err(e @ ApplyError::Document(_)) => {
            let detail = e.to_string();
            let ApplyError::Document(errors) = e else {
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            };
            bad_request(detail, errors)
        }
        Err(ApplyError::Service(e)) => ApiError::from(e).into_response(),
    }
}
