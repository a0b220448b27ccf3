//! The REST gateway under `/api/v1/`: the same operations as gRPC, for the web UI, the
//! justfile and curl. Handlers only extract, call the service layer and serialise.

use axum::Router;
use axum::extract::{FromRef as _, FromRequest, FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::OpenApi as _;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::{self, Caller};
use crate::error::ServiceError;
use crate::service::ControlPlane;

mod handlers;
pub mod logs;
mod openapi;

pub use openapi::ApiDoc;

/// Builds the HTTP app: `/health`, `/api/v1/…`, `/openapi.json` and Swagger UI at `/docs`.
pub fn router(cp: ControlPlane) -> Router {
    Router::new()
        .merge(handlers::routes())
        .merge(SwaggerUi::new("/docs").url("/openapi.json", {
            let mut doc = ApiDoc::openapi();
            doc.merge(crate::oauth::http::OAuthApiDoc::openapi());
            doc.merge(logs::LogsApiDoc::openapi());
            doc
        }))
        .with_state(cp)
}

/// Error body: `{"error": "<kind>", "detail": "<what and why>"}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Machine-readable kind.
    pub error: &'static str,
    /// Human-readable detail naming the field and the reason.
    pub detail: String,
}

/// A service error on its way to becoming an HTTP response.
#[derive(Debug)]
pub struct ApiError(ServiceError);

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            ServiceError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ServiceError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ServiceError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ServiceError::Forbidden(_) => StatusCode::FORBIDDEN,
            ServiceError::NotFound { .. } => StatusCode::NOT_FOUND,
            ServiceError::Conflict(_) => StatusCode::CONFLICT,
            ServiceError::Store(e) => {
                tracing::error!(error = %e, "store error");
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        let body = ErrorBody {
            error: self.0.code(),
            detail: self.0.to_string(),
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

/// Extracts the authenticated API caller from `Authorization: Bearer …`, for any router
/// whose state can hand out the control plane (REST and the OAuth admin API).
impl<S> FromRequestParts<S> for Caller
where
    ControlPlane: axum::extract::FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let cp = ControlPlane::from_ref(state);
        let secret = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(auth::bearer)
            .ok_or(ServiceError::Unauthenticated(
                "send `Authorization: Bearer <token>`",
            ))?;
        Ok(cp.authenticate_api(secret).await?)
    }
}

/// JSON body whose rejections use our error shape and name the offending field.
pub struct ApiJson<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rej) => {
                let (status, error) = match rej {
                    axum::extract::rejection::JsonRejection::MissingJsonContentType(_) => {
                        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request")
                    }
                    // Over axum's body limit (2 MB): too large, not malformed.
                    _ if rej.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
                    }
                    _ => (StatusCode::BAD_REQUEST, "invalid_request"),
                };
                let body = ErrorBody {
                    error,
                    detail: rej.body_text(),
                };
                Err((status, axum::Json(body)).into_response())
            }
        }
    }
}

/// `State` re-exported for handlers.
pub(crate) type Cp = State<ControlPlane>;

#[cfg(test)]
mod tests {
    use axum::extract::FromRequest as _;
    use axum::http::StatusCode;

    use super::ApiJson;

    #[tokio::test]
    async fn a_json_body_over_the_limit_is_413_not_400() {
        let big = format!("\"{}\"", "a".repeat(3 << 20));
        let req = axum::http::Request::post("/")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(big))
            .unwrap();
        let rejected = ApiJson::<serde_json::Value>::from_request(req, &())
            .await
            .err()
            .unwrap();
        assert_eq!(rejected.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let req = axum::http::Request::post("/")
            .header("content-type", "application/json")
            .body(axum::body::Body::from("{"))
            .unwrap();
        let rejected = ApiJson::<serde_json::Value>::from_request(req, &())
            .await
            .err()
            .unwrap();
        assert_eq!(rejected.status(), StatusCode::BAD_REQUEST);
    }
}
