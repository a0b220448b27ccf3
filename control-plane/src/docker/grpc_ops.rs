//! gRPC for port changes and reconciliation (`DockerPortService`, `DockerCleanupService`,
//! proto/portcullis/v1/docker_ops.proto): the same operations as [`super::rest_ops`].

use portcullis_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::Docker;
use super::ports::{PortAddInput, PortChange, PortRange};
use super::reconcile::ReconcileReport;
use super::spec::PortMapping;
use crate::auth::{self, Caller};
use crate::authenticator::Authenticator;

type Reply<T> = Result<Response<T>, Status>;

/// Both services' implementation.
#[derive(Clone)]
pub struct DockerOpsApi {
    docker: Docker,
    authn: Authenticator,
}

impl DockerOpsApi {
    /// Wraps the Docker services and the authenticator.
    pub fn new(docker: Docker, authn: Authenticator) -> Self {
        Self { docker, authn }
    }

    /// `DockerPortService`, ready to mount.
    pub fn ports_server(self) -> pb::docker_port_service_server::DockerPortServiceServer<Self> {
        pb::docker_port_service_server::DockerPortServiceServer::new(self)
    }

    /// `DockerCleanupService`, ready to mount.
    pub fn cleanup_server(
        self,
    ) -> pb::docker_cleanup_service_server::DockerCleanupServiceServer<Self> {
        pb::docker_cleanup_service_server::DockerCleanupServiceServer::new(self)
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

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn port16(field: &'static str, v: u32) -> Result<u16, Status> {
    u16::try_from(v)
        .map_err(|_| Status::invalid_argument(format!("invalid {field}: {v} is not 0-65535")))
}

fn port(p: PortMapping) -> pb::ServicePort {
    pb::ServicePort {
        name: p.name,
        container_port: p.container_port.into(),
        host_port: p.host_port.into(),
        bind: p.bind,
        protocol: p.protocol,
        source_token_id: p.source_token_id.unwrap_or_default(),
    }
}

fn change(c: PortChange) -> pb::ServicePortChange {
    pb::ServicePortChange {
        service: c.service,
        port: Some(port(c.port)),
        recreated: c.recreated,
        running: c.running,
        released: c.released.unwrap_or_default(),
        proxies_left: c.proxies_left,
    }
}

fn range(r: PortRange) -> pb::PortRangeEntry {
    pb::PortRangeEntry {
        start: r.start.into(),
        end: r.end.into(),
    }
}

fn report(r: ReconcileReport) -> pb::CleanupReport {
    pb::CleanupReport {
        installation: r.installation,
        orphans: r
            .orphans
            .into_iter()
            .map(|o| pb::OrphanedContainer {
                container_id: o.container_id,
                container_name: o.container_name,
                service: o.service,
                owner_token_id: o.owner_token_id,
                image: o.image,
                state: o.state,
            })
            .collect(),
        missing: r.missing,
        stale_allocations: r.stale_allocations,
        removed: r.removed,
        released: r.released,
        dry_run: r.dry_run,
    }
}

#[tonic::async_trait]
impl pb::docker_port_service_server::DockerPortService for DockerOpsApi {
    async fn add_service_port(
        &self,
        req: Request<pb::AddServicePortRequest>,
    ) -> Reply<pb::ServicePortChange> {
        let c = self.caller(&req).await?;
        let r = req.into_inner();
        let input = PortAddInput {
            container_port: port16("container_port", r.container_port)?,
            host_port: match port16("host_port", r.host_port)? {
                0 => None,
                n => Some(n),
            },
            bind: non_empty(r.bind),
            name: non_empty(r.name),
            protocol: non_empty(r.protocol),
            source_token: non_empty(r.source_token),
        };
        let done = self.docker.add_port(&c, &r.service, input).await?;
        Ok(Response::new(change(done)))
    }

    async fn remove_service_port(
        &self,
        req: Request<pb::RemoveServicePortRequest>,
    ) -> Reply<pb::ServicePortChange> {
        let c = self.caller(&req).await?;
        let r = req.into_inner();
        let done = self
            .docker
            .remove_port(&c, &r.service, &r.port_name)
            .await?;
        Ok(Response::new(change(done)))
    }

    async fn list_service_ports(&self, req: Request<pb::ByName>) -> Reply<pb::ServicePortList> {
        let c = self.caller(&req).await?;
        let name = req.into_inner().name;
        let items = self
            .docker
            .service_ports(&c, &name)
            .await?
            .into_iter()
            .map(port)
            .collect();
        Ok(Response::new(pb::ServicePortList { items }))
    }

    async fn available_ports(
        &self,
        req: Request<pb::AvailablePortsRequest>,
    ) -> Reply<pb::AvailablePortsResult> {
        self.caller(&req).await?;
        let r = req.into_inner();
        let bind = non_empty(r.bind);
        let protocol = non_empty(r.protocol);
        let a = self
            .docker
            .available_ports(bind.as_deref(), protocol.as_deref())
            .await?;
        Ok(Response::new(pb::AvailablePortsResult {
            range: Some(range(a.range)),
            bind: a.bind,
            protocol: a.protocol,
            free: a.free,
            ranges: a.ranges.into_iter().map(range).collect(),
        }))
    }
}

#[tonic::async_trait]
impl pb::docker_cleanup_service_server::DockerCleanupService for DockerOpsApi {
    async fn service_orphans(&self, req: Request<pb::Empty>) -> Reply<pb::CleanupReport> {
        let c = self.caller(&req).await?;
        Ok(Response::new(report(
            self.docker.reconcile_report(&c).await?,
        )))
    }

    async fn cleanup_services(&self, req: Request<pb::CleanupRequest>) -> Reply<pb::CleanupReport> {
        let c = self.caller(&req).await?;
        let dry_run = req.into_inner().dry_run;
        Ok(Response::new(report(
            self.docker.cleanup(&c, dry_run).await?,
        )))
    }
}
