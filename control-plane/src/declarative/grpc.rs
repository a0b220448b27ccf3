//! `DeclarativeConfigService`: export and apply over gRPC, for the CLI. Thin: the document
//! travels as JSON text and the service layer ([`super::export`], [`super::apply`]) does
//! the rest.

use portcullis_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::{ApplyError, ApplyOptions};
use crate::auth::{self, Caller};
use crate::authenticator::Authenticator;
use crate::service::ControlPlane;

/// Largest document accepted (a few thousand resources).
pub const MAX_DOCUMENT_BYTES: usize = 32 << 20;

/// The gRPC service.
#[derive(Clone)]
pub struct DeclarativeApi {
    cp: ControlPlane,
    authn: Authenticator,
}

impl DeclarativeApi {
    /// Over the control plane, authenticating as every admin API does.
    pub fn new(cp: ControlPlane, authn: Authenticator) -> Self {
        Self { cp, authn }
    }

    /// Ready to mount on a tonic server.
    pub fn server(
        self,
    ) -> pb::declarative_config_service_server::DeclarativeConfigServiceServer<Self> {
        pb::declarative_config_service_server::DeclarativeConfigServiceServer::new(self)
            .max_decoding_message_size(MAX_DOCUMENT_BYTES)
            .max_encoding_message_size(MAX_DOCUMENT_BYTES)
    }

    async fn caller<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        let secret = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(auth::bearer)
            .ok_or_else(|| {
                Status::unauthenticated("missing `authorization: Bearer <token>` metadata")
            })?;
        Ok(self.authn.api_caller(secret).await?)
    }
}

impl From<ApplyError> for Status {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Document(_) => Status::invalid_argument(e.to_string()),
            ApplyError::Service(s) => s.into(),
        }
    }
}

#[tonic::async_trait]
impl pb::declarative_config_service_server::DeclarativeConfigService for DeclarativeApi {
    async fn export_config(
        &self,
        req: Request<pb::ExportConfigRequest>,
    ) -> Result<Response<pb::ExportConfigReply>, Status> {
        let caller = self.caller(&req).await?;
        let doc = super::export(&self.cp, &caller).await?;
        Ok(Response::new(pb::ExportConfigReply {
            document_json: serde_json::to_string(&doc)
                .map_err(|e| Status::internal(format!("cannot encode the document: {e}")))?,
        }))
    }

    async fn apply_config(
        &self,
        req: Request<pb::ApplyConfigRequest>,
    ) -> Result<Response<pb::ApplyConfigReply>, Status> {
        let caller = self.caller(&req).await?;
        let r = req.into_inner();
        let doc: serde_json::Value = serde_json::from_str(&r.document_json)
            .map_err(|e| Status::invalid_argument(format!("the document is not JSON: {e}")))?;
        let opts = ApplyOptions {
            prune: r.prune,
            dry_run: r.dry_run,
        };
        let report = super::apply(&self.cp, &caller, &doc, opts).await?;
        Ok(Response::new(pb::ApplyConfigReply {
            dry_run: report.dry_run,
            applied: report.applied,
            revision: report.revision,
            changes: report
                .changes
                .into_iter()
                .map(|c| pb::ConfigChange {
                    kind: c.kind.into(),
                    name: c.name,
                    action: c.action.as_str().into(),
                    fields: c.fields,
                })
                .collect(),
        }))
    }
}
