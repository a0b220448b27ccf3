//! Docker services: containers the control plane runs through the Docker Engine API
//! (bollard), their published host ports under one allocation registry, and proxies to them.
//!
//! Sits above the service layer (it calls [`ControlPlane::create_proxy`]) and below the
//! adapters; its REST adapter is [`rest`]. The store holds what to run
//! ([`spec::ContainerService`], collection `containers`) and which host ports are handed out
//! ([`spec::PortAllocation`], collection `portallocations`, key `port/protocol`); live state
//! always comes from the engine. Neither collection is config: writing them does not bump
//! the snapshot version.
//!
//! Invariants:
//! - A create validates every field first, then reserves its ports and record in ONE store
//!   batch (checks `Absent` on the name and each port, so two creators never get one port),
//!   then creates and starts the container; any later failure removes the container and the
//!   batch's records, so a refused create leaves nothing behind.
//! - Every container carries the labels [`spec::LABEL_MANAGED`], [`spec::LABEL_SERVICE`],
//!   [`spec::LABEL_OWNER`] and [`reconcile::LABEL_INSTALLATION`].
//! - When the engine is unreachable the control plane still runs; every call here answers
//!   503 ([`ServiceError::Unavailable`]) saying so, and [`Docker::status`] reports it.
//!
//! Costs: each read of a service is one engine inspect; a list is one per service (bounded
//! by the number of services). Logs are read with the engine's `tail` and capped at
//! [`MAX_LOG_LINES`] lines and [`MAX_LOG_BYTES`] bytes.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bollard::errors::Error as EngineError;
use bollard::models::{
    ContainerCreateBody, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, RestartContainerOptionsBuilder, StartContainerOptions,
    StopContainerOptionsBuilder,
};
use futures_util::StreamExt as _;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::ServiceError;
use crate::model::{Proxy, ProxyInput, TokenScope, now};
use crate::service::ControlPlane;
use crate::store::{Batch, Check, Write};

pub mod build;
pub mod grpc;
pub mod grpc_ops;
pub mod network;
pub mod ports;
pub mod reconcile;
pub mod rest;
pub mod rest_ops;
pub mod spec;
pub mod sse;
pub mod stream;

use spec::{ContainerService, ContainerServiceInput, PortAllocation, PortMapping};

type Result<T> = std::result::Result<T, ServiceError>;

/// Most log lines one request returns.
pub const MAX_LOG_LINES: u32 = 10_000;
/// Most log bytes one request returns.
pub const MAX_LOG_BYTES: usize = 4 << 20;
/// Seconds the engine waits for a container to stop before killing it.
const STOP_TIMEOUT_SECS: i32 = 10;

/// Where the engine is and which host ports may be handed out.
#[derive(Debug, Clone)]
pub struct DockerSettings {
    /// `unix:///path`, `tcp://host:port` or a socket path.
    pub host: String,
    /// Inclusive range automatic host ports come from.
    pub port_range: (u16, u16),
    /// How often records are compared with the engine's containers ([`reconcile`]).
    pub reconcile_interval: std::time::Duration,
}

impl Default for DockerSettings {
    fn default() -> Self {
        Self {
            host: "unix:///var/run/docker.sock".into(),
            port_range: (10000, 19999),
            reconcile_interval: std::time::Duration::from_secs(60),
        }
    }
}

/// Parses `--port-range LOW-HIGH`.
pub fn parse_port_range(v: &str) -> std::result::Result<(u16, u16), String> {
    let (a, b) = v
        .split_once('-')
        .ok_or_else(|| format!("--port-range {v:?}: expected LOW-HIGH, e.g. 10000-19999"))?;
    let (a, b): (u16, u16) = match (a.trim().parse(), b.trim().parse()) {
        (Ok(a), Ok(b)) => (a, b),
        _ => return Err(format!("--port-range {v:?}: ports are 1-65535")),
    };
    if a == 0 || a > b {
        return Err(format!("--port-range {v:?}: need 1 <= LOW <= HIGH"));
    }
    Ok((a, b))
}

/// Docker services. Cheap to clone.
#[derive(Clone)]
pub struct Docker {
    inner: Arc<Inner>,
}

struct Inner {
    cp: ControlPlane,
    settings: DockerSettings,
    /// `--docker-host`, normalised to a URL.
    host: String,
    /// The client once made (bollard checks that a unix socket exists, so it is retried
    /// until the engine appears).
    client: std::sync::Mutex<Option<bollard::Docker>>,
    /// Whether the API version was negotiated (the engine may be older than bollard).
    negotiated: AtomicBool,
    /// The installation id, once read ([`reconcile`]).
    installation: tokio::sync::OnceCell<String>,
}

/// Live state of a service's container, from the engine.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct LiveState {
    /// `running`, `exited`, `created`, … ; `creating` while a create is in flight;
    /// `missing` when the container is gone;
    /// `unknown` when the engine cannot be reached.
    pub status: String,
    /// Whether it runs.
    pub running: bool,
    /// Exit code of the last run.
    pub exit_code: Option<i64>,
    /// RFC 3339 start time of the last run.
    pub started_at: Option<String>,
    /// Health check status, when the image has one.
    pub health: Option<String>,
    /// The engine's error, if any.
    pub error: Option<String>,
}

/// A service with its live state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServiceView {
    /// What Portcullis runs.
    #[serde(flatten)]
    pub service: ContainerService,
    /// What the engine says about it now.
    pub state: LiveState,
}

/// What a delete did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeleteReport {
    /// The deleted service.
    pub name: String,
    /// Host ports released (`port/protocol`).
    pub released_ports: Vec<String>,
    /// Proxies that still point at a released port or at the removed container's address
    /// (left alone).
    pub proxies_left: Vec<String>,
}

/// Whether a host port is free.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PortCheck {
    /// The port.
    pub port: u16,
    /// The bind address checked.
    pub bind: String,
    /// The protocol checked.
    pub protocol: String,
    /// Whether it can be handed out.
    pub available: bool,
    /// Why not, when it cannot.
    pub reason: Option<String>,
}

/// Engine reachability, for `/health`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DockerStatus {
    /// Whether the engine answered a ping.
    pub reachable: bool,
    /// The configured engine address.
    pub host: String,
    /// Why not, when unreachable.
    pub error: Option<String>,
}

impl Docker {
    /// Makes the client; the engine is not contacted until the first call, so the control
    /// plane starts whether or not it is there.
    pub fn new(cp: ControlPlane, settings: DockerSettings) -> Self {
        let host = if settings.host.starts_with('/') {
            format!("unix://{}", settings.host)
        } else {
            settings.host.clone()
        };
        Self {
            inner: Arc::new(Inner {
                cp,
                settings,
                host,
                client: std::sync::Mutex::new(None),
                negotiated: AtomicBool::new(false),
                installation: tokio::sync::OnceCell::new(),
            }),
        }
    }

    /// The settings in use.
    pub fn settings(&self) -> &DockerSettings {
        &self.inner.settings
    }

    /// The client, after version negotiation; 503 when the engine cannot be reached.
    async fn engine(&self) -> Result<bollard::Docker> {
        let client = {
            let mut slot = self
                .inner
                .client
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match &*slot {
                Some(c) => c.clone(),
                None => {
                    let c = bollard::Docker::connect_with_host(&self.inner.host)
                        .map_err(|e| self.unreachable(&e))?;
                    *slot = Some(c.clone());
                    c
                }
            }
        };
        if !self.inner.negotiated.load(Ordering::Acquire) {
            // Clones share the negotiated version.
            client
                .clone()
                .negotiate_version()
                .await
                .map_err(|e| self.unreachable(&e))?;
            self.inner.negotiated.store(true, Ordering::Release);
        }
        Ok(client)
    }

    fn unreachable(&self, e: &EngineError) -> ServiceError {
        ServiceError::Unavailable(format!(
            "Docker engine at {} is unreachable: {e}",
            self.inner.host
        ))
    }

    /// Maps an engine error: HTTP answers keep their meaning, anything else is 503.
    fn engine_error(&self, what: &str, e: EngineError) -> ServiceError {
        match e {
            EngineError::DockerResponseServerError {
                status_code,
                message,
            } => match status_code {
                404 => ServiceError::Unprocessable(format!("{what}: {message}")),
                409 => ServiceError::already_exists(format!("{what}: {message}")),
                400 => ServiceError::Unprocessable(format!("{what}: {message}")),
                _ if message.contains("port is already allocated")
                    || message.contains("address already in use") =>
                {
                    ServiceError::concurrent(format!(
                        "{what}: a host port was taken by something else meanwhile: {message}"
                    ))
                }
                _ => ServiceError::Unprocessable(format!("{what}: engine error: {message}")),
            },
            other => self.unreachable(&other),
        }
    }

    /// Pings the engine every `every` and reports the result to `/health` (peer `docker`);
    /// warns when it becomes unreachable.
    pub fn spawn_health(&self, every: std::time::Duration) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut was_ok = true;
            loop {
                let s = this.status().await;
                if was_ok && !s.reachable {
                    tracing::warn!(host = %s.host, error = ?s.error, "Docker engine unreachable; service calls answer 503 until it is");
                }
                was_ok = s.reachable;
                this.inner.cp.report_peer(
                    "docker",
                    crate::model::PeerHealth {
                        reachable: s.reachable,
                        address: s.host,
                        error: s.error,
                    },
                );
                tokio::time::sleep(every).await;
            }
        });
    }

    /// Engine reachability (one ping).
    pub async fn status(&self) -> DockerStatus {
        let host = self.inner.settings.host.clone();
        match self.engine().await {
            Ok(c) => match c.ping().await {
                Ok(_) => DockerStatus {
                    reachable: true,
                    host,
                    error: None,
                },
                Err(e) => DockerStatus {
                    reachable: false,
                    host,
                    error: Some(e.to_string()),
                },
            },
            Err(e) => DockerStatus {
                reachable: false,
                host,
                error: Some(e.to_string()),
            },
        }
    }

    // === services ===

    /// Creates (and by default starts) a service; see the module invariants.
    pub async fn create(
        &self,
        caller: &Caller,
        input: ContainerServiceInput,
    ) -> Result<ServiceView> {
        require_writer(caller)?;
        let name = spec::service_name(&input.name)?;
        let (image, context) = self.image_or_build(&name, &input)?;
        let networks = spec::networks(&input.networks)?;
        spec::extras(&input)?;
        let memory_bytes = input.memory.as_deref().map(spec::memory).transpose()?;
        let nano_cpus = input.cpus.as_deref().map(spec::cpus).transpose()?;
        let restart = spec::restart_policy(input.restart_policy.as_deref().unwrap_or("no"))?;
        let ports = self.plan_ports(&input.ports).await?;
        let engine = &self.engine().await?;
        self.check_networks(engine, &networks).await?;
        if let Some(tar) = context {
            self.build_for(engine, &name, &image, tar).await?;
        }

        let service = ContainerService {
            container_name: format!("portcullis-{name}"),
            name: name.clone(),
            container_id: String::new(),
            image,
            command: input.command.clone(),
            env_keys: input.env.keys().cloned().collect(),
            labels: input.labels.clone(),
            memory_bytes: memory_bytes.unwrap_or(0),
            nano_cpus: nano_cpus.unwrap_or(0),
            restart_policy: restart,
            ports,
            owner_token_id: caller.token_id.clone(),
            created_at: now(),
            built: input.dockerfile.is_some(),
            networks,
        };
        self.reserve(&service).await?;
        match self.create_container(engine, &service, &input).await {
            Ok(id) => {
                let mut stored = service.clone();
                stored.container_id = id;
                if let Err(e) = self.put(&stored).await {
                    self.undo(engine, &stored).await;
                    return Err(e);
                }
                if let Err(e) = self.join_networks(engine, &stored).await {
                    self.undo(engine, &stored).await;
                    return Err(e);
                }
                if input.start.unwrap_or(true)
                    && let Err(e) = engine
                        .start_container(&stored.container_name, None::<StartContainerOptions>)
                        .await
                {
                    self.undo(engine, &stored).await;
                    return Err(self.engine_error("starting the container", e));
                }
                let state = self.live(&stored).await;
                Ok(ServiceView {
                    service: stored,
                    state,
                })
            }
            Err(e) => {
                self.undo(engine, &service).await;
                Err(e)
            }
        }
    }

    async fn create_container(
        &self,
        engine: &bollard::Docker,
        s: &ContainerService,
        input: &ContainerServiceInput,
    ) -> Result<String> {
        let mut labels: HashMap<String, String> = s.labels.clone().into_iter().collect();
        labels.insert(spec::LABEL_MANAGED.into(), "true".into());
        labels.insert(spec::LABEL_SERVICE.into(), s.name.clone());
        labels.insert(spec::LABEL_OWNER.into(), s.owner_token_id.clone());
        labels.insert(
            reconcile::LABEL_INSTALLATION.into(),
            self.installation().await?,
        );
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for p in &s.ports {
            bindings
                .entry(format!("{}/{}", p.container_port, p.protocol))
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: Some(p.bind.clone()),
                    host_port: Some(p.host_port.to_string()),
                });
        }
        let (policy, retries) = match s.restart_policy.split_once(':') {
            Some((_, n)) => (RestartPolicyNameEnum::ON_FAILURE, n.parse().ok()),
            None => (
                match s.restart_policy.as_str() {
                    "always" => RestartPolicyNameEnum::ALWAYS,
                    "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
                    "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
                    _ => RestartPolicyNameEnum::NO,
                },
                None,
            ),
        };
        let body = ContainerCreateBody {
            image: Some(s.image.clone()),
            cmd: (!s.command.is_empty()).then(|| s.command.clone()),
            env: Some(input.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(labels),
            exposed_ports: Some(bindings.keys().cloned().collect()),
            host_config: Some(HostConfig {
                port_bindings: Some(bindings),
                network_mode: s.networks.first().cloned(),
                memory: (s.memory_bytes > 0).then_some(s.memory_bytes),
                nano_cpus: (s.nano_cpus > 0).then_some(s.nano_cpus),
                restart_policy: Some(RestartPolicy {
                    name: Some(policy),
                    maximum_retry_count: retries,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default()
            .name(&s.container_name)
            .build();
        match engine.create_container(Some(opts), body).await {
            Ok(r) => Ok(r.id),
            Err(EngineError::DockerResponseServerError {
                status_code: 404,
                message,
            }) => Err(ServiceError::invalid(
                "image",
                format!(
                    "{:?} is not on the Docker engine ({message}); pull or build it first",
                    s.image
                ),
            )),
            Err(EngineError::DockerResponseServerError {
                status_code: 409,
                message,
            }) => Err(ServiceError::already_exists(format!(
                "name: a container named {:?} already exists on the engine (not made by this service record): {message}",
                s.container_name
            ))),
            Err(e) => Err(self.engine_error("creating the container", e)),
        }
    }

    /// Reserves the record's name and ports in one batch.
    async fn reserve(&self, s: &ContainerService) -> Result<()> {
        let mut checks = vec![Check::Absent(
            crate::store::Collection::Containers,
            s.name.clone(),
        )];
        let mut writes = vec![Write::put(s)];
        for a in allocations(s) {
            checks.push(Check::Absent(
                crate::store::Collection::PortAllocations,
                crate::store::Record::key(&a),
            ));
            writes.push(Write::put(&a));
        }
        let name = s.name.clone();
        let ports: Vec<String> = s
            .ports
            .iter()
            .map(|p| PortAllocation::key_for(p.host_port, &p.protocol))
            .collect();
        match self.inner.cp.store().apply(Batch { checks, writes }).await {
            Ok(_) => Ok(()),
            Err(crate::store::StoreError::CheckFailed(0)) => Err(ServiceError::already_exists(
                format!("name: service {name:?} already exists"),
            )),
            Err(crate::store::StoreError::CheckFailed(i)) => {
                Err(ServiceError::concurrent(format!(
                    "host port {} was allocated meanwhile; retry",
                    ports.get(i - 1).map_or("?", String::as_str)
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn put(&self, s: &ContainerService) -> Result<()> {
        self.inner
            .cp
            .store()
            .apply(Batch {
                checks: vec![],
                writes: vec![Write::put(s)],
            })
            .await?;
        Ok(())
    }

    /// Removes the container (if any) and the record and its allocations. Best effort: used
    /// to roll back a failed create.
    async fn undo(&self, engine: &bollard::Docker, s: &ContainerService) {
        let opts = RemoveContainerOptionsBuilder::default().force(true).build();
        if !s.container_id.is_empty()
            && let Err(e) = engine.remove_container(&s.container_id, Some(opts)).await
        {
            tracing::warn!(service = %s.name, error = %e, "rolling back: cannot remove the container");
        }
        if let Err(e) = self.release(s).await {
            tracing::warn!(service = %s.name, error = %e, "rolling back: cannot release the record");
        }
        self.remove_built_image(engine, s).await;
    }

    async fn release(&self, s: &ContainerService) -> Result<Vec<String>> {
        let mut writes = vec![Write::Delete(
            crate::store::Collection::Containers,
            s.name.clone(),
        )];
        let mut released = Vec::new();
        for a in allocations(s) {
            let key = crate::store::Record::key(&a);
            // Only this service's own allocations.
            if let Some((held, _)) = self
                .inner
                .cp
                .store()
                .get_record::<PortAllocation>(&key)
                .await?
                && held.service == s.name
            {
                writes.push(Write::Delete(
                    crate::store::Collection::PortAllocations,
                    key.clone(),
                ));
                released.push(key);
            }
        }
        self.inner
            .cp
            .store()
            .apply(Batch {
                checks: vec![],
                writes,
            })
            .await?;
        Ok(released)
    }

    /// Chooses every host port: chosen ones are checked, the rest allocated from the range.
    /// Nothing is written here; [`Self::reserve`] commits them.
    async fn plan_ports(&self, inputs: &[spec::PortInput]) -> Result<Vec<PortMapping>> {
        if inputs.len() > spec::MAX_PORTS {
            return Err(ServiceError::invalid(
                "ports",
                format!("at most {} ports", spec::MAX_PORTS),
            ));
        }
        let taken: HashSet<String> = self
            .inner
            .cp
            .store()
            .list_records::<PortAllocation>()
            .await?
            .into_iter()
            .map(|a| crate::store::Record::key(&a))
            .collect();
        let mut out: Vec<PortMapping> = Vec::new();
        let mut mine: HashSet<String> = HashSet::new();
        for (i, p) in inputs.iter().enumerate() {
            let name = match &p.name {
                Some(n) => spec::port_name(n)?,
                None if i == 0 => "http".to_owned(),
                None => format!("port-{}", i + 1),
            };
            if out.iter().any(|o| o.name == name) {
                return Err(ServiceError::invalid(
                    "ports.name",
                    format!("{name:?} is used twice"),
                ));
            }
            if p.container_port == 0 {
                return Err(ServiceError::invalid(
                    "ports.container_port",
                    "must be 1-65535",
                ));
            }
            let protocol = spec::protocol(p.protocol.as_deref().unwrap_or("tcp"))?;
            let bind = spec::bind_address(p.bind.as_deref().unwrap_or("127.0.0.1"))?;
            let host_port = match p.host_port {
                Some(hp) => {
                    if hp < 1024 {
                        return Err(ServiceError::invalid(
                            "ports.host_port",
                            format!("{hp}: privileged ports (below 1024) are not handed out"),
                        ));
                    }
                    let key = PortAllocation::key_for(hp, &protocol);
                    if taken.contains(&key) || mine.contains(&key) {
                        return Err(ServiceError::already_exists(format!(
                            "ports.host_port: {hp}/{protocol} is already allocated"
                        )));
                    }
                    if let Err(why) = probe(bind, hp, &protocol) {
                        return Err(ServiceError::already_exists(format!(
                            "ports.host_port: {hp}/{protocol} is in use on this host ({why})"
                        )));
                    }
                    hp
                }
                None => self.allocate(bind, &protocol, &taken, &mine)?,
            };
            mine.insert(PortAllocation::key_for(host_port, &protocol));
            out.push(PortMapping {
                name,
                container_port: p.container_port,
                host_port,
                bind: bind.to_string(),
                protocol,
                source_token_id: None,
            });
        }
        Ok(out)
    }

    fn allocate(
        &self,
        bind: IpAddr,
        protocol: &str,
        taken: &HashSet<String>,
        mine: &HashSet<String>,
    ) -> Result<u16> {
        let (lo, hi) = self.inner.settings.port_range;
        let span = u32::from(hi - lo) + 1;
        // Start at a random offset so concurrent creators rarely race for one port.
        let start = rand::random::<u32>() % span;
        for i in 0..span {
            let port = lo + ((start + i) % span) as u16;
            let key = PortAllocation::key_for(port, protocol);
            if taken.contains(&key) || mine.contains(&key) {
                continue;
            }
            if probe(bind, port, protocol).is_ok() {
                return Ok(port);
            }
        }
        Err(ServiceError::Unprocessable(format!(
            "ports.host_port: no free {protocol} port left in the range {lo}-{hi}"
        )))
    }

    /// Lists the services the caller may see (a `user` token: its own).
    pub async fn list(&self, caller: &Caller) -> Result<Vec<ServiceView>> {
        let services = self
            .inner
            .cp
            .store()
            .list_records::<ContainerService>()
            .await?;
        let mut out = Vec::new();
        for s in services {
            if visible(caller, &s.owner_token_id) {
                let state = self.live(&s).await;
                out.push(ServiceView { service: s, state });
            }
        }
        Ok(out)
    }

    /// One service with its live state.
    pub async fn show(&self, caller: &Caller, name: &str) -> Result<ServiceView> {
        let s = self.owned(caller, name, false).await?;
        let state = self.live(&s).await;
        Ok(ServiceView { service: s, state })
    }

    /// Starts the container.
    pub async fn start(&self, caller: &Caller, name: &str) -> Result<ServiceView> {
        let s = self.owned(caller, name, true).await?;
        let engine = self.engine().await?;
        engine
            .start_container(&s.container_name, None::<StartContainerOptions>)
            .await
            .or_else(not_modified)
            .map_err(|e| self.engine_error("starting the container", e))?;
        self.show(caller, name).await
    }

    /// Stops the container (SIGTERM, then SIGKILL after 10 s).
    pub async fn stop(&self, caller: &Caller, name: &str) -> Result<ServiceView> {
        let s = self.owned(caller, name, true).await?;
        let engine = self.engine().await?;
        let opts = StopContainerOptionsBuilder::default()
            .t(STOP_TIMEOUT_SECS)
            .build();
        engine
            .stop_container(&s.container_name, Some(opts))
            .await
            .or_else(not_modified)
            .map_err(|e| self.engine_error("stopping the container", e))?;
        self.show(caller, name).await
    }

    /// Restarts the container.
    pub async fn restart(&self, caller: &Caller, name: &str) -> Result<ServiceView> {
        let s = self.owned(caller, name, true).await?;
        let engine = self.engine().await?;
        let opts = RestartContainerOptionsBuilder::default()
            .t(STOP_TIMEOUT_SECS)
            .build();
        engine
            .restart_container(&s.container_name, Some(opts))
            .await
            .map_err(|e| self.engine_error("restarting the container", e))?;
        self.show(caller, name).await
    }

    /// Removes the container and the record and releases its ports; proxies pointing at
    /// them are left alone and reported.
    pub async fn delete(&self, caller: &Caller, name: &str) -> Result<DeleteReport> {
        let s = self.owned(caller, name, true).await?;
        let engine = self.engine().await?;
        let ips = self.container_ips(&engine, &s).await;
        let opts = RemoveContainerOptionsBuilder::default().force(true).build();
        match engine.remove_container(&s.container_name, Some(opts)).await {
            Ok(()) => {}
            // Already gone behind our back: the record still goes.
            Err(EngineError::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(self.engine_error("removing the container", e)),
        }
        let released_ports = self.release(&s).await?;
        self.remove_built_image(&engine, &s).await;
        let proxies: Vec<Proxy> = self.inner.cp.store().list_records::<Proxy>().await?;
        let proxies_left = proxies
            .into_iter()
            .filter(|p| {
                s.ports.iter().any(|m| targets(&p.target_url, m))
                    || network::targets_container(&p.target_url, &ips, &s.ports)
            })
            .map(|p| p.hostname)
            .collect();
        Ok(DeleteReport {
            name: s.name,
            released_ports,
            proxies_left,
        })
    }

    /// The last `tail` lines of the container's output (stdout and stderr).
    pub async fn logs(
        &self,
        caller: &Caller,
        name: &str,
        tail: Option<u32>,
        timestamps: bool,
    ) -> Result<Vec<String>> {
        let tail = tail.unwrap_or(100);
        if tail == 0 || tail > MAX_LOG_LINES {
            return Err(ServiceError::invalid(
                "tail",
                format!("must be 1-{MAX_LOG_LINES}"),
            ));
        }
        let s = self.owned(caller, name, false).await?;
        let engine = self.engine().await?;
        let opts = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .timestamps(timestamps)
            .tail(&tail.to_string())
            .build();
        let mut stream = engine.logs(&s.container_name, Some(opts));
        let mut text = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.engine_error("reading logs", e))?;
            let bytes = chunk.into_bytes();
            if text.len() + bytes.len() > MAX_LOG_BYTES {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
        Ok(text.lines().map(str::to_owned).collect())
    }

    /// Creates a proxy `hostname` (default `<name>.localhost`) targeting the published host
    /// port `port_name` (default: the first), or with `target` `container` the container's
    /// address on its network ([`network::Target`]), in one step.
    pub async fn proxy_create(
        &self,
        caller: &Caller,
        name: &str,
        hostname: Option<String>,
        port_name: Option<&str>,
        https: bool,
        target: Option<&str>,
    ) -> Result<Proxy> {
        let target = network::Target::parse(target)?;
        let s = self.owned(caller, name, true).await?;
        let port = match port_name {
            Some(n) => s.ports.iter().find(|p| p.name == n).ok_or_else(|| {
                ServiceError::invalid("port", format!("service {name:?} has no port {n:?}"))
            })?,
            None => s
                .ports
                .iter()
                .find(|p| p.protocol == "tcp")
                .ok_or_else(|| {
                    ServiceError::Unprocessable(format!(
                        "service {name:?} publishes no tcp port to proxy to"
                    ))
                })?,
        };
        ports::authorize(caller, port)?;
        if port.protocol != "tcp" {
            return Err(ServiceError::invalid(
                "port",
                format!("{:?} is udp; proxies speak HTTP over tcp", port.name),
            ));
        }
        let target_url = match target {
            network::Target::Host => {
                format!("http://{}:{}", target_host(&port.bind), port.host_port)
            }
            network::Target::Container => self.container_url(&s, port).await?,
        };
        self.inner
            .cp
            .create_proxy(
                caller,
                ProxyInput {
                    hostname: hostname.unwrap_or_else(|| format!("{name}.localhost")),
                    target_url,
                    enable_https: Some(https),
                    ..Default::default()
                },
            )
            .await
    }

    // === ports ===

    /// Host-port allocations the caller may see.
    pub async fn ports(&self, caller: &Caller) -> Result<Vec<PortAllocation>> {
        Ok(self
            .inner
            .cp
            .store()
            .list_records::<PortAllocation>()
            .await?
            .into_iter()
            .filter(|a| visible(caller, &a.owner_token_id))
            .collect())
    }

    /// Whether `port` could be handed out on `bind`, and why not.
    pub async fn check_port(
        &self,
        port: u16,
        bind: Option<&str>,
        protocol: Option<&str>,
    ) -> Result<PortCheck> {
        let protocol = spec::protocol(protocol.unwrap_or("tcp"))?;
        let bind = spec::bind_address(bind.unwrap_or("127.0.0.1"))?;
        if port == 0 {
            return Err(ServiceError::invalid("port", "must be 1-65535"));
        }
        let held = self
            .inner
            .cp
            .store()
            .get_record::<PortAllocation>(&PortAllocation::key_for(port, &protocol))
            .await?;
        let reason = if let Some((a, _)) = held {
            Some(format!(
                "allocated to service {:?} (port {:?})",
                a.service, a.port_name
            ))
        } else if port < 1024 {
            Some("privileged ports (below 1024) are not handed out".into())
        } else {
            probe(bind, port, &protocol)
                .err()
                .map(|e| format!("in use on this host: {e}"))
        };
        Ok(PortCheck {
            port,
            bind: bind.to_string(),
            protocol,
            available: reason.is_none(),
            reason,
        })
    }

    // === helpers ===

    /// The record, if the caller may see it (and change it, when `write`).
    async fn owned(&self, caller: &Caller, name: &str, write: bool) -> Result<ContainerService> {
        if write {
            require_writer(caller)?;
        }
        let Some((s, _)) = self
            .inner
            .cp
            .store()
            .get_record::<ContainerService>(name)
            .await?
        else {
            return Err(ServiceError::not_found("service", name));
        };
        if !visible(caller, &s.owner_token_id) {
            // A user token does not learn that another's service exists.
            return Err(ServiceError::not_found("service", name));
        }
        Ok(s)
    }

    async fn live(&self, s: &ContainerService) -> LiveState {
        let engine = match self.engine().await {
            Ok(e) => e,
            Err(e) => {
                return LiveState {
                    status: "unknown".into(),
                    error: Some(e.to_string()),
                    ..Default::default()
                };
            }
        };
        match engine
            .inspect_container(&s.container_name, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => {
                let st = c.state.unwrap_or_default();
                LiveState {
                    status: st
                        .status
                        .map_or_else(|| "unknown".into(), |s| s.to_string()),
                    running: st.running.unwrap_or(false),
                    exit_code: st.exit_code,
                    started_at: st.started_at,
                    health: st
                        .health
                        .and_then(|h| h.status)
                        .map(|h| h.to_string())
                        .filter(|h| !h.is_empty()),
                    error: st.error.filter(|e| !e.is_empty()),
                }
            }
            Err(EngineError::DockerResponseServerError {
                status_code: 404, ..
            }) if reconcile::creating(s) => LiveState {
                status: "creating".into(),
                ..Default::default()
            },
            Err(EngineError::DockerResponseServerError {
                status_code: 404, ..
            }) => LiveState {
                status: "missing".into(),
                error: Some("the container was removed behind Portcullis' back".into()),
                ..Default::default()
            },
            Err(e) => LiveState {
                status: "unknown".into(),
                error: Some(e.to_string()),
                ..Default::default()
            },
        }
    }
}

fn allocations(s: &ContainerService) -> Vec<PortAllocation> {
    s.ports
        .iter()
        .map(|p| PortAllocation {
            host_port: p.host_port,
            protocol: p.protocol.clone(),
            bind: p.bind.clone(),
            service: s.name.clone(),
            port_name: p.name.clone(),
            owner_token_id: s.owner_token_id.clone(),
        })
        .collect()
}

/// Whether the caller may see a resource owned by `owner`.
fn visible(caller: &Caller, owner: &str) -> bool {
    caller.may_modify(owner)
}

fn require_writer(caller: &Caller) -> Result<()> {
    if caller.scope == TokenScope::Dataplane {
        return Err(ServiceError::Forbidden(
            "data-plane tokens cannot manage services".into(),
        ));
    }
    Ok(())
}

/// 304 (already started/stopped) is success.
fn not_modified(e: EngineError) -> std::result::Result<(), EngineError> {
    match e {
        EngineError::DockerResponseServerError {
            status_code: 304, ..
        } => Ok(()),
        other => Err(other),
    }
}

/// The address a proxy on this host uses to reach a port bound on `bind`.
fn target_host(bind: &str) -> String {
    match bind.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() => "127.0.0.1".into(),
        Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => bind.to_owned(),
    }
}

/// Whether a proxy target URL points at this published port.
fn targets(target_url: &str, m: &PortMapping) -> bool {
    url::Url::parse(target_url).is_ok_and(|u| {
        u.port_or_known_default() == Some(m.host_port)
            && u.host_str().is_some_and(|h| {
                h == target_host(&m.bind)
                    || h == "localhost"
                    || h == "127.0.0.1"
                    || h.trim_matches(['[', ']']) == m.bind
            })
    })
}

/// Whether the host port is free, by binding it (and on the wildcard address too, which
/// catches a listener on another local address).
fn probe(bind: IpAddr, port: u16, protocol: &str) -> std::result::Result<(), String> {
    let try_bind = |ip: IpAddr| -> std::io::Result<()> {
        if protocol == "udp" {
            std::net::UdpSocket::bind((ip, port)).map(drop)
        } else {
            std::net::TcpListener::bind((ip, port)).map(drop)
        }
    };
    try_bind(bind).map_err(|e| e.to_string())?;
    let wildcard = if bind.is_ipv4() {
        IpAddr::from([0u8; 4])
    } else {
        IpAddr::from([0u16; 8])
    };
    if wildcard != bind {
        try_bind(wildcard).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("10000-19999").unwrap(), (10000, 19999));
        assert_eq!(parse_port_range("2000-2000").unwrap(), (2000, 2000));
        for bad in ["", "5", "0-10", "20-10", "1-70000", "a-b"] {
            assert!(parse_port_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_port_in_use_is_not_free() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(probe("127.0.0.1".parse().unwrap(), port, "tcp").is_err());
        drop(l);
        assert!(probe("127.0.0.1".parse().unwrap(), port, "tcp").is_ok());
    }

    #[test]
    fn proxies_targeting_a_port_are_recognised() {
        let m = PortMapping {
            name: "http".into(),
            container_port: 80,
            host_port: 10001,
            bind: "127.0.0.1".into(),
            protocol: "tcp".into(),
            source_token_id: None,
        };
        assert!(targets("http://127.0.0.1:10001", &m));
        assert!(targets("http://localhost:10001/x", &m));
        assert!(!targets("http://127.0.0.1:10002", &m));
        assert!(!targets("http://10.0.0.1:10001", &m));
    }
}
