//! The gRPC adapter: authenticates, converts wire types, calls the service layer.

use portcullis_proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::auth::{self, Caller};
use crate::authenticator::Authenticator;
use crate::error::{Conflict, ServiceError};
use crate::service::ControlPlane;

mod admin;
mod config_stream;
mod logs;
mod oauth;

pub use admin::AdminApi;
pub use config_stream::ConfigStreamApi;
pub use logs::{LogIngestApi, LogQueryApi, log_services};
pub use oauth::OAuthAdminApi;

/// Maps a service error to a gRPC status; store details are logged, never sent.
impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Self {
        let msg = e.to_string();
        match e {
            ServiceError::Invalid { .. } => Status::invalid_argument(msg),
            ServiceError::Unprocessable(_) => Status::failed_precondition(msg),
            ServiceError::Unauthenticated(_) => Status::unauthenticated(msg),
            ServiceError::Forbidden(_) => Status::permission_denied(msg),
            ServiceError::NotFound { .. } => Status::not_found(msg),
            ServiceError::Conflict(Conflict::AlreadyExists(_)) => Status::already_exists(msg),
            ServiceError::Conflict(Conflict::StillReferenced(_)) => {
                Status::failed_precondition(msg)
            }
            ServiceError::Conflict(Conflict::Concurrent(_)) => Status::aborted(msg),
            ServiceError::Store(inner) => {
                tracing::error!(error = %inner, "store error");
                Status::unavailable(msg)
            }
            ServiceError::Unavailable(_) => Status::unavailable(msg),
        }
    }
}

/// The bearer secret from `authorization` metadata.
fn bearer<T>(req: &Request<T>) -> Result<&str, Status> {
    req.metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(auth::bearer)
        .ok_or_else(|| Status::unauthenticated("missing `authorization: Bearer <token>` metadata"))
}

async fn api_caller<T>(authn: &Authenticator, req: &Request<T>) -> Result<Caller, Status> {
    Ok(authn.api_caller(bearer(req)?).await?)
}

fn ok<T>(v: T) -> Result<Response<T>, Status> {
    Ok(Response::new(v))
}

/// Both gRPC services, ready to mount on a tonic server.
pub fn services(
    cp: ControlPlane,
    authn: Authenticator,
    snapshots: crate::snapshot::SnapshotRx,
    require_client_cert: bool,
) -> (
    pb::admin_service_server::AdminServiceServer<AdminApi>,
    pb::encoded::config_service_server::ConfigServiceServer<ConfigStreamApi>,
) {
    (
        pb::admin_service_server::AdminServiceServer::new(AdminApi::new(cp.clone(), authn)),
        pb::encoded::config_service_server::ConfigServiceServer::new(
            ConfigStreamApi::new(cp, snapshots).requiring_client_cert(require_client_cert),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn each_kind_of_conflict_has_its_own_code() {
        let code = |e: ServiceError| (e.code(), Status::from(e).code());
        assert_eq!(
            code(ServiceError::already_exists("x")),
            ("already_exists", Code::AlreadyExists)
        );
        assert_eq!(
            code(ServiceError::still_referenced("x")),
            ("still_referenced", Code::FailedPrecondition)
        );
        assert_eq!(
            code(ServiceError::concurrent("x")),
            ("conflict", Code::Aborted)
        );
    }
}
