//! The REST gateway under `/api/v1/`: the same operations as gRPC (and the OAuth admin
//! API), for the web UI, the justfile and curl. Handlers only extract, call the service
//! layer (or `oauth::admin`) and serialise.

use axum::Router;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::{self, Caller};
use crate::authenticator::Authenticator;
use crate::error::ServiceError;
use crate::oauth::OAuthServer;
use crate::service::ControlPlane;

mod handlers;
pub mod logs;
mod oauth_admin;
mod openapi;

pub use oauth_admin::OAuthApiDoc;
pub use openapi::ApiDoc;

/// What REST handlers extract: the service layer, the OAuth server (admin API) and the
/// authenticator that turns bearer secrets into callers.
#[derive(Clone)]
pub struct ApiState {
    cp: ControlPlane,
    oauth: OAuthServer,
    authn: Authenticator,
}

impl ApiState {
    /// Bundles the three.
    pub fn new(cp: ControlPlane, oauth: OAuthServer, authn: Authenticator) -> Self {
        Self { cp, oauth, authn }
    }
}

impl FromRef<ApiState> for ControlPlane {
    fn from_ref(s: &ApiState) -> Self {
        s.cp.clone()
    }
}

impl FromRef<ApiState> for OAuthServer {
    fn from_ref(s: &ApiState) -> Self {
        s.oauth.clone()
    }
}

impl FromRef<ApiState> for Authenticator {
    fn from_ref(s: &ApiState) -> Self {
        s.authn.clone()
    }
}

/// The REST routes: `/health` and `/api/v1/…` (the OpenAPI document and Swagger UI are
/// mounted with the other HTTP routes, by `server`).
pub fn router(state: ApiState) -> Router {
    Router::new()
        .merge(handlers::routes())
        .merge(oauth_admin::routes())
        .with_state(state)
}

/// Error body: `{"error": "<kind>", "detail": "<what and why>"}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Machine-readable kind.
    pub error: &'static str,
    /// Human-readable detail naming the field and the reason.
    pub detail: String,
    /// The request field at fault (`target_url`, `identity_headers.user`…), for a 400 that
    /// names one; forms show the detail next to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
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
            ServiceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let field = match &self.0 {
            ServiceError::Invalid { field, .. } => Some(*field),
            _ => None,
        };
        let body = ErrorBody {
            error: self.0.code(),
            detail: self.0.to_string(),
            field,
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

/// Extracts the authenticated API caller from `Authorization: Bearer …`, or from the web
/// console's session cookie (writes then need its `X-CSRF-Token`), for any router whose
/// state can hand out the authenticator. A bearer header, when present, is the only
/// credential looked at.
impl<S> FromRequestParts<S> for Caller
where
    Authenticator: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let authn = Authenticator::from_ref(state);
        if let Some(header) = parts.headers.get(axum::http::header::AUTHORIZATION) {
            let secret = header.to_str().ok().and_then(auth::bearer).ok_or(
                ServiceError::Unauthenticated("send `Authorization: Bearer <token>`"),
            )?;
            return Ok(authn.api_caller(secret).await?);
        }
        let (secret, _) = session_credential(parts, &authn)?;
        Ok(authn.api_caller(&secret).await?)
    }
}

/// The credential and CSRF token of the console session a request's cookie names; writes
/// (any method but GET, HEAD, OPTIONS) must carry the session's `X-CSRF-Token`.
pub fn session_credential(
    parts: &Parts,
    authn: &Authenticator,
) -> Result<(String, String), ServiceError> {
    use crate::authenticator::ui_session::{CSRF_HEADER, SessionAuth};
    const NONE: ServiceError =
        ServiceError::Unauthenticated("send `Authorization: Bearer <token>`");
    let sessions = authn.sessions();
    let id = parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| sessions.cookie_value(v))
        .ok_or(NONE)?;
    let safe = matches!(
        parts.method,
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    let csrf = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    match sessions.resolve(id, csrf, safe) {
        SessionAuth::Ok { secret, csrf } => Ok((secret, csrf)),
        SessionAuth::Unknown => Err(ServiceError::Unauthenticated(
            "the console session ended; sign in again",
        )),
        SessionAuth::CsrfMismatch => Err(ServiceError::Forbidden(
            "a write with the console's session cookie needs its X-CSRF-Token header".into(),
        )),
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
                    field: None,
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
