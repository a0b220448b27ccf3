//! Shipping access-log records to the control plane: `AccessLogIngest.Ship`, one unary
//! call per batch, over the config stream's endpoint with the same enrolment token.
//!
//! The channel is lazy (connected on first use, reconnected by tonic after a failure),
//! balanced over every control plane given (one that is down is skipped), and
//! every call has [`SHIP_TIMEOUT`], so a control plane that hangs cannot hold a batch
//! forever; [`access_log::Shipper`] keeps an unacknowledged batch and retries it.

use std::time::Duration;

use portcullis_proto::v1::AccessLogBatch;
use portcullis_proto::v1::access_log_ingest_client::AccessLogIngestClient;

use super::ControlPlane;
use crate::access_log::{Pipeline, Shipper};

/// Longest one `Ship` call may take.
pub const SHIP_TIMEOUT: Duration = Duration::from_secs(10);

impl ControlPlane {
    /// Ships `pipeline`'s control-plane queue forever (spawn it on the process runtime).
    pub fn ship_access_logs(&self, pipeline: &Pipeline) -> impl Future<Output = ()> + use<> {
        let channel = match self.endpoints.as_slice() {
            [one] => one.connect_lazy(),
            several => tonic::transport::Channel::balance_list(several.iter().cloned()),
        };
        let client = AccessLogIngestClient::new(channel);
        let authorization = self.authorization.clone();
        let send = move |batch: AccessLogBatch| {
            let mut client = client.clone();
            let mut request = tonic::Request::new(batch);
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
            request.set_timeout(SHIP_TIMEOUT);
            async move {
                match tokio::time::timeout(SHIP_TIMEOUT, client.ship(request)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(status)) => Err(format!("{}: {}", status.code(), status.message())),
                    Err(_) => Err(format!("no answer within {SHIP_TIMEOUT:?}")),
                }
            }
        };
        Shipper::new(pipeline, send).run()
    }
}
