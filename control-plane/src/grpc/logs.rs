//! `AccessLogIngest.Ship` (data planes) and `AccessLogService` (search, stats, follow).
//!
//! Ship (one unary call per batch) is authenticated exactly as the config stream: a
//! `dataplane` enrolment token. A batch over the bound is refused whole; otherwise it is
//! stored in one transaction, records that can never be stored (e.g. status > 999) being
//! dropped and counted, so a retry of the same batch cannot loop.
//! Queries take an API token; a `user` token sees records of the proxies it owns only.

use std::pin::Pin;

use futures_util::Stream;
use portcullis_proto::ShippedBatch;
use portcullis_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::{api_caller, bearer};
use crate::auth::Caller;
use crate::authenticator::Authenticator;
use crate::logs::{AccessLogs, FollowEnd, FollowError};
use crate::model::TokenScope;
use crate::service::ControlPlane;

/// Largest ingest message: [`crate::logs::MAX_BATCH`] records of a few KiB at most.
const MAX_BATCH_BYTES: usize = 48 << 20;

/// Checks that a bearer secret is a data-plane enrolment token, as the config stream does.
pub(super) async fn dataplane_caller(cp: &ControlPlane, secret: &str) -> Result<Caller, Status> {
    let caller = cp.authenticate(secret).await?;
    if caller.scope != TokenScope::Dataplane {
        return Err(Status::permission_denied(
            "shipping access logs needs a data-plane enrolment token",
        ));
    }
    Ok(caller)
}

/// Both log services, ready to mount on a tonic server.
pub fn log_services(
    cp: ControlPlane,
    authn: Authenticator,
    logs: AccessLogs,
) -> (
    pb::encoded::access_log_ingest_server::AccessLogIngestServer<LogIngestApi>,
    pb::access_log_service_server::AccessLogServiceServer<LogQueryApi>,
) {
    (
        pb::encoded::access_log_ingest_server::AccessLogIngestServer::new(LogIngestApi {
            cp: cp.clone(),
            logs: logs.clone(),
        })
        .max_decoding_message_size(MAX_BATCH_BYTES),
        pb::access_log_service_server::AccessLogServiceServer::new(LogQueryApi { cp, authn, logs }),
    )
}

/// Receives data planes' record batches.
pub struct LogIngestApi {
    cp: ControlPlane,
    logs: AccessLogs,
}

/// Each record stays the bytes received ([`ShippedBatch`]) until the store checks it.
#[tonic::async_trait]
impl pb::encoded::access_log_ingest_server::AccessLogIngest for LogIngestApi {
    async fn ship(
        &self,
        req: Request<ShippedBatch>,
    ) -> Result<Response<pb::AccessLogShipReply>, Status> {
        let caller = dataplane_caller(&self.cp, bearer(&req)?).await?;
        let batch = req.into_inner();
        let node = batch
            .records
            .first()
            .and_then(|r| crate::logs::node_id(r))
            .filter(|n| !n.is_empty())
            .map_or(caller.token_id, str::to_owned);
        let accepted = self.logs.ingest_shipped(&node, batch).await?;
        Ok(Response::new(pb::AccessLogShipReply { accepted }))
    }
}

/// Search, stats and follow.
pub struct LogQueryApi {
    cp: ControlPlane,
    authn: Authenticator,
    logs: AccessLogs,
}

type RecordStream = Pin<Box<dyn Stream<Item = Result<pb::AccessLogRecord, Status>> + Send>>;

#[tonic::async_trait]
impl pb::access_log_service_server::AccessLogService for LogQueryApi {
    type FollowStream = RecordStream;

    async fn search(
        &self,
        req: Request<pb::AccessLogQuery>,
    ) -> Result<Response<pb::AccessLogPage>, Status> {
        let caller = api_caller(&self.authn, &req).await?;
        let page = self.logs.search(&self.cp, &caller, req.get_ref()).await?;
        Ok(Response::new(page))
    }

    async fn stats(
        &self,
        req: Request<pb::AccessLogQuery>,
    ) -> Result<Response<pb::AccessLogStats>, Status> {
        let caller = api_caller(&self.authn, &req).await?;
        let stats = self.logs.stats(&self.cp, &caller, req.get_ref()).await?;
        Ok(Response::new(stats))
    }

    async fn follow(
        &self,
        req: Request<pb::AccessLogQuery>,
    ) -> Result<Response<RecordStream>, Status> {
        let caller = api_caller(&self.authn, &req).await?;
        let follower = match self.logs.follow(&self.cp, &caller, req.get_ref()).await {
            Ok(f) => f,
            Err(FollowError::Service(e)) => return Err(e.into()),
            Err(e @ FollowError::TooMany) => return Err(Status::resource_exhausted(e.to_string())),
        };
        let stream = futures_util::stream::unfold(Some(follower), |state| async move {
            let mut f = state?;
            match f.next().await {
                Ok(r) => Some((Ok(std::sync::Arc::unwrap_or_clone(r)), Some(f))),
                Err(FollowEnd::Lagged(n)) => Some((
                    Err(Status::resource_exhausted(format!(
                        "follower fell {n} records behind and was closed; follow again"
                    ))),
                    None,
                )),
                Err(FollowEnd::Closed) => None,
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
