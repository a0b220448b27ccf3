//! Docker services over gRPC (`DockerService`, proto/portcullis/v1/docker.proto): the same
//! operations as [`super::rest`], for the CLI.

use portcullis_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::spec::{ContainerServiceInput, PortAllocation, PortInput};
use super::{Docker, ServiceView};
use crate::auth::{self, Caller};
use crate::authenticator::Authenticator;

type Reply<T> = Result<Response<T>, Status>;

/// The `DockerService` implementation.
#[derive(Clone)]
pub struct DockerApi {
    docker: Docker,
    authn: Authenticator,
}

impl DockerApi {
    /// Wraps the Docker services and the authenticator.
    pub fn new(docker: Docker, authn: Authenticator) -> Self {
        Self { docker, authn }
    }

    /// Ready to mount on a tonic server.
    pub fn server(self) -> pb::docker_service_server::DockerServiceServer<Self> {
        pb::docker_service_server::DockerServiceServer::new(self)
            // A create may carry a build context.
            .max_decoding_message_size(super::build::MAX_CONTEXT_BYTES + (1 << 20))
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

fn view(v: ServiceView) -> pb::ContainerServiceView {
    let s = v.service;
    pb::ContainerServiceView {
        name: s.name,
        container_name: s.container_name,
        container_id: s.container_id,
        image: s.image,
        command: s.command,
        env_keys: s.env_keys,
        labels: s.labels.into_iter().collect(),
        memory_bytes: s.memory_bytes,
        nano_cpus: s.nano_cpus,
        restart_policy: s.restart_policy,
        ports: s
            .ports
            .into_iter()
            .map(|p| pb::PublishedPort {
                name: p.name,
                container_port: p.container_port.into(),
                host_port: p.host_port.into(),
                bind: p.bind,
                protocol: p.protocol,
            })
            .collect(),
        owner_token_id: s.owner_token_id,
        created_at: s.created_at,
        status: v.state.status,
        running: v.state.running,
        exit_code: v.state.exit_code,
        started_at: v.state.started_at.unwrap_or_default(),
        health: v.state.health.unwrap_or_default(),
        error: v.state.error.unwrap_or_default(),
        networks: s.networks,
        built: s.built,
    }
}

fn port16(field: &'static str, v: u32) -> Result<u16, Status> {
    u16::try_from(v)
        .map_err(|_| Status::invalid_argument(format!("invalid {field}: {v} is not 0-65535")))
}

fn input(i: pb::ContainerServiceInput) -> Result<ContainerServiceInput, Status> {
    let mut ports = Vec::with_capacity(i.ports.len());
    for p in i.ports {
        ports.push(PortInput {
            name: non_empty(p.name),
            container_port: port16("ports.container_port", p.container_port)?,
            host_port: match port16("ports.host_port", p.host_port)? {
                0 => None,
                n => Some(n),
            },
            bind: non_empty(p.bind),
            protocol: non_empty(p.protocol),
        });
    }
    Ok(ContainerServiceInput {
        name: i.name,
        image: i.image,
        command: i.command,
        env: i.env.into_iter().collect(),
        labels: i.labels.into_iter().collect(),
        memory: non_empty(i.memory),
        cpus: non_empty(i.cpus),
        restart_policy: non_empty(i.restart_policy),
        ports,
        start: Some(!i.no_start),
        dockerfile: non_empty(i.dockerfile),
        build_context: (!i.build_context.is_empty()).then_some(i.build_context),
        networks: i.networks,
    })
}

fn allocation(a: PortAllocation) -> pb::PortAllocationEntry {
    pb::PortAllocationEntry {
        host_port: a.host_port.into(),
        protocol: a.protocol,
        bind: a.bind,
        service: a.service,
        port_name: a.port_name,
        owner_token_id: a.owner_token_id,
    }
}

#[tonic::async_trait]
impl pb::docker_service_server::DockerService for DockerApi {
    type FollowServiceStatsStream = super::stream::GrpcFollow<pb::ServiceStatsSample>;
    type FollowServiceLogsStream = super::stream::GrpcFollow<pb::ServiceLogLines>;

    async fn service_stats(&self, req: Request<pb::ByName>) -> Reply<pb::ServiceStatsSample> {
        let c = self.caller(&req).await?;
        let name = req.into_inner().name;
        Ok(Response::new(self.docker.stats(&c, &name).await?.into()))
    }

    async fn follow_service_stats(
        &self,
        req: Request<pb::ByName>,
    ) -> Reply<Self::FollowServiceStatsStream> {
        let c = self.caller(&req).await?;
        let name = req.into_inner().name;
        let st = self.docker.follow_stats(&c, &name).await?;
        Ok(Response::new(super::stream::grpc(st, Into::into)))
    }

    async fn follow_service_logs(
        &self,
        req: Request<pb::ServiceLogsRequest>,
    ) -> Reply<Self::FollowServiceLogsStream> {
        let c = self.caller(&req).await?;
        let r = req.into_inner();
        let tail = (r.tail != 0).then_some(r.tail);
        let st = self
            .docker
            .follow_logs(&c, &r.name, tail, r.timestamps)
            .await?;
        let one = |line| pb::ServiceLogLines { lines: vec![line] };
        Ok(Response::new(super::stream::grpc(st, one)))
    }

    async fn create_service(
        &self,
        req: Request<pb::ContainerServiceInput>,
    ) -> Reply<pb::ContainerServiceView> {
        let c = self.caller(&req).await?;
        let i = input(req.into_inner())?;
        Ok(Response::new(view(self.docker.create(&c, i).await?)))
    }

    async fn list_services(&self, req: Request<pb::Empty>) -> Reply<pb::ContainerServiceList> {
        let c = self.caller(&req).await?;
        let items = self.docker.list(&c).await?.into_iter().map(view).collect();
        Ok(Response::new(pb::ContainerServiceList { items }))
    }

    async fn get_service(&self, req: Request<pb::ByName>) -> Reply<pb::ContainerServiceView> {
        let c = self.caller(&req).await?;
        let name = req.into_inner().name;
        Ok(Response::new(view(self.docker.show(&c, &name).await?)))
    }

    async fn start_service(&self, req: Request<pb::ByName>) -> Reply<pb::ContainerServiceView> {
        let c = self.caller(&req).await?;
        let name = req.into_inner().name;
        Ok(Response::new(view(self.docker.start(&c, &name).await?)))
    }

    async fn stop_service(&self, req: Request<pb::ByName>) -> Reply<pb::ContainerServiceView> {
        let c = self.caller(&req).await?;
        let name = req.into_inner().name;
        Ok(Response::new(view(self.docker.stop(&c, &name).await?)))
    }

    async fn restart_service(&self, req: Request<pb::ByName>) -> Reply<pb::ContainerServiceView> {
        let c = self.caller(&req).await?;
        let name = req.into_inner().name;
        Ok(Response::new(view(self.docker.restart(&c, &name).await?)))
    }

    async fn delete_service(&self, req: Request<pb::ByName>) -> Reply<pb::ContainerServiceDeleted> {
        let c = self.caller(&req).await?;
        let name = req.into_inner().name;
        let r = self.docker.delete(&c, &name).await?;
        Ok(Response::new(pb::ContainerServiceDeleted {
            name: r.name,
            released_ports: r.released_ports,
            proxies_left: r.proxies_left,
        }))
    }

    async fn service_logs(
        &self,
        req: Request<pb::ServiceLogsRequest>,
    ) -> Reply<pb::ServiceLogLines> {
        let c = self.caller(&req).await?;
        let r = req.into_inner();
        let tail = (r.tail != 0).then_some(r.tail);
        let lines = self.docker.logs(&c, &r.name, tail, r.timestamps).await?;
        Ok(Response::new(pb::ServiceLogLines { lines }))
    }

    async fn create_service_proxy(
        &self,
        req: Request<pb::ServiceProxyRequest>,
    ) -> Reply<pb::ProxyTarget> {
        let c = self.caller(&req).await?;
        let r = req.into_inner();
        let port = non_empty(r.port);
        let proxy = self
            .docker
            .proxy_create(
                &c,
                &r.name,
                non_empty(r.hostname),
                port.as_deref(),
                r.https,
                Some(r.target.as_str()),
            )
            .await?;
        Ok(Response::new(proxy.into()))
    }

    async fn list_ports(&self, req: Request<pb::Empty>) -> Reply<pb::PortAllocationList> {
        let c = self.caller(&req).await?;
        let items = self
            .docker
            .ports(&c)
            .await?
            .into_iter()
            .map(allocation)
            .collect();
        Ok(Response::new(pb::PortAllocationList { items }))
    }

    async fn check_port(&self, req: Request<pb::PortCheckRequest>) -> Reply<pb::PortCheckResult> {
        self.caller(&req).await?;
        let r = req.into_inner();
        let port = port16("port", r.port)?;
        let bind = non_empty(r.bind);
        let protocol = non_empty(r.protocol);
        let c = self
            .docker
            .check_port(port, bind.as_deref(), protocol.as_deref())
            .await?;
        Ok(Response::new(pb::PortCheckResult {
            port: c.port.into(),
            bind: c.bind,
            protocol: c.protocol,
            available: c.available,
            reason: c.reason.unwrap_or_default(),
        }))
    }
}
