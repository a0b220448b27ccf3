//! Adding and removing a service's published ports, the free ranges of `--port-range`, and
//! port access by source token.
//!
//! Why a recreate: the engine fixes a container's published ports when it is created, so
//! adding or removing one means a new container. It is made from the old one's inspected
//! configuration (same image id, command, env, labels, limits, restart policy, networks;
//! only the port bindings differ) under a temporary name, then the old one is stopped, the
//! new one started (when the old one ran), the old one removed and the new one renamed.
//! Every answer says `recreated`. A failure before the old container is removed restores
//! it (started again if it ran) and releases the new allocation, so a refused change
//! leaves the service as it was.
//!
//! Source token: a port added with `source_token` (a token id, or a token name the caller
//! can list) may afterwards be removed, shown and proxied to only by that token and by
//! admins — not by the service's owning token unless it is that token — and that token may
//! do so without owning the service. It governs these management operations only: traffic
//! to the published host port is not filtered (the engine publishes it directly; bind it to
//! 127.0.0.1 and put a protected proxy in front). Deleting the whole service (owner or
//! admin) removes the port too.
//!
//! Invariants: each change holds the engine lease ([`super::reconcile`]) from the
//! allocation to the record update (both writes fenced by it), so no other control plane
//! changes the service's container meanwhile and cleanup never sees the temporary container
//! as an orphan. The
//! new allocation is reserved (checked absent, with the record unchanged) before the engine
//! is touched.
//!
//! Costs: a change is one inspect, one create, a stop (up to 10 s) and a start; the service
//! is unreachable between the stop and the start. Listing free ranges binds each port of
//! the range once (twice for a specific address), off the async threads.

use std::collections::{HashMap, HashSet};

use bollard::errors::Error as EngineError;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, NetworkConnectRequest, NetworkingConfig, PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, RemoveContainerOptionsBuilder,
    RenameContainerOptionsBuilder, StartContainerOptions, StopContainerOptionsBuilder,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::spec::{self, ContainerService, PortAllocation, PortInput, PortMapping};
use super::{Docker, Result, STOP_TIMEOUT_SECS, probe, require_writer, targets, visible};
use crate::auth::Caller;
use crate::error::ServiceError;
use crate::model::{Proxy, TokenRecord};
use crate::store::{Batch, Check, Collection, Record, StoreError, Write};

/// Body of `POST /api/v1/services/{name}/ports`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortAddInput {
    /// Port inside the container.
    pub container_port: u16,
    /// Host port; allocated from `--port-range` when absent.
    pub host_port: Option<u16>,
    /// Host address to bind (default `127.0.0.1`).
    pub bind: Option<String>,
    /// Port name, unique within the service (default `port-N`).
    pub name: Option<String>,
    /// `tcp` (default) or `udp`.
    pub protocol: Option<String>,
    /// Token id (`tok_…`) or name that alone (with admins) may manage this port.
    pub source_token: Option<String>,
}

/// What a port change did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PortChange {
    /// The service.
    pub service: String,
    /// The port added or removed.
    pub port: PortMapping,
    /// Whether the container was recreated (the engine fixes published ports at creation).
    pub recreated: bool,
    /// Whether the (new) container runs.
    pub running: bool,
    /// The allocation released by a removal (`port/protocol`).
    pub released: Option<String>,
    /// Proxies still pointing at a removed port (left alone).
    pub proxies_left: Vec<String>,
}

/// An inclusive range of host ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct PortRange {
    /// First port.
    pub start: u16,
    /// Last port.
    pub end: u16,
}

/// Answer of `GET /api/v1/ports/available`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AvailablePorts {
    /// The configured `--port-range`.
    pub range: PortRange,
    /// Bind address probed.
    pub bind: String,
    /// Protocol probed.
    pub protocol: String,
    /// How many ports of the range are free.
    pub free: u32,
    /// The free ports: neither allocated nor in use on this host.
    pub ranges: Vec<PortRange>,
}

/// Whether the caller may manage `port`: when it has a source token, only that token and
/// admins may (whoever owns the service).
pub(crate) fn authorize(caller: &Caller, port: &PortMapping) -> Result<()> {
    match &port.source_token_id {
        Some(t) if !(caller.is_admin() || &caller.token_id == t) => Err(ServiceError::Forbidden(
            format!("port {:?} is restricted to token {t}", port.name),
        )),
        _ => Ok(()),
    }
}

/// Port bindings and exposed ports for the engine, as a create needs them.
fn bindings(ports: &[PortMapping]) -> HashMap<String, Option<Vec<PortBinding>>> {
    let mut out: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in ports {
        out.entry(format!("{}/{}", p.container_port, p.protocol))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: Some(p.bind.clone()),
                host_port: Some(p.host_port.to_string()),
            });
    }
    out
}

/// Free ports of `lo..=hi` (not in `taken`, bindable) as ranges.
fn free_ranges(lo: u16, hi: u16, free: impl Fn(u16) -> bool) -> Vec<PortRange> {
    let mut out: Vec<PortRange> = Vec::new();
    for p in lo..=hi {
        if !free(p) {
            continue;
        }
        match out.last_mut() {
            Some(r) if u32::from(r.end) + 1 == u32::from(p) => r.end = p,
            _ => out.push(PortRange { start: p, end: p }),
        }
    }
    out
}

impl Docker {
    /// The service's ports the caller may see: all of them for its owner and admins
    /// (restricted ones included); only the ports restricted to it for a source token that
    /// does not own the service.
    pub async fn service_ports(&self, caller: &Caller, name: &str) -> Result<Vec<PortMapping>> {
        let s = self.record(name).await?;
        if visible(caller, &s.owner_token_id) {
            return Ok(s.ports);
        }
        let mine: Vec<PortMapping> = s
            .ports
            .into_iter()
            .filter(|p| p.source_token_id.as_deref() == Some(caller.token_id.as_str()))
            .collect();
        if mine.is_empty() {
            return Err(ServiceError::not_found("service", name));
        }
        Ok(mine)
    }

    /// One port, under the same rules as [`Self::remove_port`].
    pub async fn service_port(
        &self,
        caller: &Caller,
        name: &str,
        port_name: &str,
    ) -> Result<PortMapping> {
        let s = self.record(name).await?;
        let p = port_of(caller, &s, port_name)?;
        Ok(p.clone())
    }

    /// Publishes one more port; the container is recreated (see the module docs). Runs to
    /// its end even if the caller goes away (a recreate must not stop halfway).
    pub async fn add_port(
        &self,
        caller: &Caller,
        name: &str,
        input: PortAddInput,
    ) -> Result<PortChange> {
        let (this, caller, name) = (self.clone(), caller.clone(), name.to_owned());
        super::reconcile::detached(async move { this.add_port_now(&caller, &name, input).await })
            .await
    }

    async fn add_port_now(
        &self,
        caller: &Caller,
        name: &str,
        input: PortAddInput,
    ) -> Result<PortChange> {
        let s = self.owned(caller, name, true).await?;
        let source_token_id = match input.source_token.as_deref() {
            Some(t) => Some(self.source_token(caller, t).await?),
            None => None,
        };
        if let Some(n) = &input.name {
            spec::port_name(n)?;
            if s.ports.iter().any(|p| &p.name == n) {
                return Err(ServiceError::already_exists(format!(
                    "ports.name: service {name:?} already has a port {n:?}"
                )));
            }
        }
        // Checked again under the lock; this answers the common mistakes before waiting.
        self.plan_ports(&[port_input(&s, &input)]).await?;
        let engine = self.engine().await?;
        self.locked(async |fence| {
            let Some((s, raw)) = self
                .inner
                .cp
                .store()
                .get_record::<ContainerService>(name)
                .await?
            else {
                return Err(ServiceError::not_found("service", name));
            };
            let mut mapping = self
                .plan_ports(&[port_input(&s, &input)])
                .await?
                .pop()
                .ok_or_else(|| ServiceError::invalid("ports", "no port planned"))?;
            if s.ports.iter().any(|p| p.name == mapping.name) {
                return Err(ServiceError::already_exists(format!(
                    "ports.name: service {name:?} already has a port {:?}",
                    mapping.name
                )));
            }
            mapping.source_token_id = source_token_id.clone();
            let alloc = PortAllocation {
                host_port: mapping.host_port,
                protocol: mapping.protocol.clone(),
                bind: mapping.bind.clone(),
                service: s.name.clone(),
                port_name: mapping.name.clone(),
                owner_token_id: s.owner_token_id.clone(),
            };
            let key = alloc.key();
            let reserve = Batch {
                checks: vec![
                    Check::Absent(Collection::PortAllocations, key.clone()),
                    Check::Equals(Collection::Containers, s.name.clone(), raw),
                    fence.clone(),
                ],
                writes: vec![Write::put(&alloc)],
            };
            match self.inner.cp.store().apply(reserve).await {
                Ok(_) => {}
                Err(StoreError::CheckFailed(0)) => {
                    return Err(ServiceError::concurrent(format!(
                        "ports.host_port: {key} was allocated meanwhile; retry"
                    )));
                }
                Err(StoreError::CheckFailed(1)) => {
                    return Err(ServiceError::concurrent(format!(
                        "service {name:?} changed meanwhile; retry"
                    )));
                }
                Err(StoreError::CheckFailed(_)) => return Err(lease_lost()),
                Err(e) => return Err(e.into()),
            }
            let mut ports = s.ports.clone();
            ports.push(mapping.clone());
            let outcome = match self.recreate(&engine, &s, &ports).await {
                Ok(done) => self
                    .commit_ports(&s, ports, &done, fence.clone())
                    .await
                    .map(|()| done),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(done) => Ok(PortChange {
                    service: s.name.clone(),
                    port: mapping,
                    recreated: true,
                    running: done.running,
                    released: None,
                    proxies_left: vec![],
                }),
                Err(e) => {
                    self.release_one(&key, &s.name).await;
                    Err(e)
                }
            }
        })
        .await
    }

    /// Stops publishing one port and releases its host port; the container is recreated.
    /// Runs to its end even if the caller goes away.
    pub async fn remove_port(
        &self,
        caller: &Caller,
        name: &str,
        port_name: &str,
    ) -> Result<PortChange> {
        let (this, caller) = (self.clone(), caller.clone());
        let (name, port_name) = (name.to_owned(), port_name.to_owned());
        super::reconcile::detached(
            async move { this.remove_port_now(&caller, &name, &port_name).await },
        )
        .await
    }

    async fn remove_port_now(
        &self,
        caller: &Caller,
        name: &str,
        port_name: &str,
    ) -> Result<PortChange> {
        require_writer(caller)?;
        let s = self.record(name).await?;
        port_of(caller, &s, port_name)?;
        let engine = self.engine().await?;
        self.locked(async |fence| {
            let s = self.record(name).await?;
            let port = port_of(caller, &s, port_name)?.clone();
            let ports: Vec<PortMapping> = s
                .ports
                .iter()
                .filter(|p| p.name != port.name)
                .cloned()
                .collect();
            let done = self.recreate(&engine, &s, &ports).await?;
            self.commit_ports(&s, ports, &done, fence.clone()).await?;
            let key = PortAllocation::key_for(port.host_port, &port.protocol);
            let released = self.release_one(&key, &s.name).await.then_some(key);
            let proxies: Vec<Proxy> = self.inner.cp.store().list_records().await?;
            let proxies_left = proxies
                .into_iter()
                .filter(|p| targets(&p.target_url, &port))
                .map(|p| p.hostname)
                .collect();
            Ok(PortChange {
                service: s.name.clone(),
                port,
                recreated: true,
                running: done.running,
                released,
                proxies_left,
            })
        })
        .await
    }

    /// The free parts of `--port-range` on `bind` (default 127.0.0.1) for `protocol`
    /// (default tcp): neither allocated nor bound by anything else on this host.
    pub async fn available_ports(
        &self,
        bind: Option<&str>,
        protocol: Option<&str>,
    ) -> Result<AvailablePorts> {
        let protocol = spec::protocol(protocol.unwrap_or("tcp"))?;
        let bind = spec::bind_address(bind.unwrap_or("127.0.0.1"))?;
        let taken: HashSet<u16> = self
            .inner
            .cp
            .store()
            .list_records::<PortAllocation>()
            .await?
            .into_iter()
            .filter(|a| a.protocol == protocol)
            .map(|a| a.host_port)
            .collect();
        let (lo, hi) = self.inner.settings.port_range;
        let proto = protocol.clone();
        let ranges = tokio::task::spawn_blocking(move || {
            free_ranges(lo, hi, |p| {
                !taken.contains(&p) && probe(bind, p, &proto).is_ok()
            })
        })
        .await
        .map_err(|e| ServiceError::Unavailable(format!("probing ports failed: {e}")))?;
        Ok(AvailablePorts {
            range: PortRange { start: lo, end: hi },
            bind: bind.to_string(),
            protocol,
            free: ranges.iter().map(|r| u32::from(r.end - r.start) + 1).sum(),
            ranges,
        })
    }

    // === helpers ===

    /// The record, whoever owns it (callers check access).
    async fn record(&self, name: &str) -> Result<ContainerService> {
        self.inner
            .cp
            .store()
            .get_record::<ContainerService>(name)
            .await?
            .map(|(s, _)| s)
            .ok_or_else(|| ServiceError::not_found("service", name))
    }

    /// Resolves `source_token` to a token id: an exact id of an existing token, or the name
    /// of exactly one token the caller can list (its own for a `user` token).
    async fn source_token(&self, caller: &Caller, v: &str) -> Result<String> {
        let cp = &self.inner.cp;
        if v.starts_with("tok_") && cp.store().get_record::<TokenRecord>(v).await?.is_some() {
            return Ok(v.to_owned());
        }
        let named: Vec<String> = cp
            .list_tokens(caller)
            .await?
            .into_iter()
            .filter(|t| t.name == v)
            .map(|t| t.id)
            .collect();
        match named.as_slice() {
            [id] => Ok(id.clone()),
            [] => Err(ServiceError::invalid(
                "source_token",
                format!("{v:?} is neither a token id nor the name of a token you can list"),
            )),
            _ => Err(ServiceError::invalid(
                "source_token",
                format!(
                    "{v:?} names several tokens; give the id ({})",
                    named.join(", ")
                ),
            )),
        }
    }

    /// Writes the record's new ports and container, if the record is still there; on
    /// failure removes the new container (the old one is gone: the service shows missing).
    async fn commit_ports(
        &self,
        s: &ContainerService,
        ports: Vec<PortMapping>,
        done: &Recreated,
        fence: Check,
    ) -> Result<()> {
        let mut next = s.clone();
        next.ports = ports;
        next.container_id = done.id.clone();
        next.container_name = done.name.clone();
        let batch = Batch {
            checks: vec![
                Check::Present(Collection::Containers, s.name.clone()),
                fence,
            ],
            writes: vec![Write::put(&next)],
        };
        match self.inner.cp.store().apply(batch).await {
            Ok(_) => Ok(()),
            Err(e) => {
                if let Ok(engine) = self.engine().await {
                    let opts = RemoveContainerOptionsBuilder::default().force(true).build();
                    let _ = engine.remove_container(&done.id, Some(opts)).await;
                }
                Err(match e {
                    StoreError::CheckFailed(0) => ServiceError::concurrent(format!(
                        "service {:?} was deleted meanwhile",
                        s.name
                    )),
                    StoreError::CheckFailed(_) => lease_lost(),
                    other => other.into(),
                })
            }
        }
    }

    /// Deletes allocation `key` if `service` holds it; whether it did.
    async fn release_one(&self, key: &str, service: &str) -> bool {
        let store = self.inner.cp.store();
        let Ok(Some((held, raw))) = store.get_record::<PortAllocation>(key).await else {
            return false;
        };
        if held.service != service {
            return false;
        }
        let batch = Batch {
            checks: vec![Check::Equals(
                Collection::PortAllocations,
                key.to_owned(),
                raw,
            )],
            writes: vec![Write::Delete(Collection::PortAllocations, key.to_owned())],
        };
        match store.apply(batch).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(port = %key, error = %e, "cannot release an allocation");
                false
            }
        }
    }

    /// Replaces the service's container by one publishing `ports` (see the module docs).
    async fn recreate(
        &self,
        engine: &bollard::Docker,
        s: &ContainerService,
        ports: &[PortMapping],
    ) -> Result<Recreated> {
        let old = match engine
            .inspect_container(&s.container_name, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => c,
            Err(EngineError::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                return Err(ServiceError::Unprocessable(format!(
                    "the container of service {:?} is missing (removed behind Portcullis' back); delete the service and create it again",
                    s.name
                )));
            }
            Err(e) => return Err(self.engine_error("inspecting the container", e)),
        };
        let old_id = old.id.clone().unwrap_or_else(|| s.container_name.clone());
        let running = old
            .state
            .as_ref()
            .and_then(|st| st.running)
            .unwrap_or(false);
        let cfg = old.config.unwrap_or_default();
        let port_bindings = bindings(ports);
        let mut host = old.host_config.unwrap_or_default();
        host.port_bindings = Some(port_bindings.clone());
        // Only what a create accepts: the inspected endpoints also carry runtime state.
        // Engines before API 1.44 take one network at create: the primary one (the network
        // mode) goes in the create, the others are joined before the start.
        let primary = match host.network_mode.as_deref() {
            None | Some("default") => "bridge".to_owned(),
            Some(m) => m.to_owned(),
        };
        let (mut endpoints, others): (Vec<(String, EndpointSettings)>, Vec<_>) = old
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default()
            .into_iter()
            .map(|(net, e)| {
                let keep = EndpointSettings {
                    ipam_config: e.ipam_config,
                    links: e.links,
                    aliases: e.aliases.filter(|a| !a.is_empty()),
                    driver_opts: e.driver_opts,
                    gw_priority: e.gw_priority,
                    ..Default::default()
                };
                (net, keep)
            })
            .partition(|(net, _)| *net == primary);
        let primary_endpoint = endpoints.pop();
        let body = ContainerCreateBody {
            domainname: cfg.domainname,
            user: cfg.user,
            attach_stdin: cfg.attach_stdin,
            attach_stdout: cfg.attach_stdout,
            attach_stderr: cfg.attach_stderr,
            exposed_ports: Some(port_bindings.keys().cloned().collect()),
            tty: cfg.tty,
            open_stdin: cfg.open_stdin,
            stdin_once: cfg.stdin_once,
            env: cfg.env,
            cmd: cfg.cmd,
            healthcheck: cfg.healthcheck,
            args_escaped: cfg.args_escaped,
            // The same image, even if its tag moved meanwhile.
            image: old.image.or(cfg.image),
            volumes: cfg.volumes,
            working_dir: cfg.working_dir,
            entrypoint: cfg.entrypoint,
            network_disabled: cfg.network_disabled,
            on_build: cfg.on_build,
            labels: cfg.labels,
            stop_signal: cfg.stop_signal,
            stop_timeout: cfg.stop_timeout,
            shell: cfg.shell,
            host_config: Some(host),
            networking_config: primary_endpoint.map(|e| NetworkingConfig {
                endpoints_config: Some(HashMap::from([e])),
            }),
            ..Default::default()
        };
        let temp = format!("{}-next-{:08x}", s.container_name, rand::random::<u32>());
        let opts = CreateContainerOptionsBuilder::default().name(&temp).build();
        let new_id = engine
            .create_container(Some(opts), body)
            .await
            .map_err(|e| self.engine_error("creating the replacement container", e))?
            .id;
        let remove = async |id: &str| {
            let opts = RemoveContainerOptionsBuilder::default().force(true).build();
            if let Err(e) = engine.remove_container(id, Some(opts)).await {
                tracing::warn!(container = %id, error = %e, "cannot remove a container");
            }
        };
        for (net, endpoint) in others {
            let req = NetworkConnectRequest {
                container: new_id.clone(),
                endpoint_config: Some(endpoint),
            };
            if let Err(e) = engine.connect_network(&net, req).await {
                remove(&new_id).await;
                return Err(self.engine_error("joining a network", e));
            }
        }
        let restore_old = async || {
            if running
                && let Err(e) = engine
                    .start_container(&old_id, None::<StartContainerOptions>)
                    .await
            {
                tracing::warn!(service = %s.name, error = %e, "cannot start the old container again");
            }
        };
        if running {
            let stop = StopContainerOptionsBuilder::default()
                .t(STOP_TIMEOUT_SECS)
                .build();
            if let Err(e) = engine
                .stop_container(&old_id, Some(stop))
                .await
                .or_else(super::not_modified)
            {
                remove(&new_id).await;
                return Err(self.engine_error("stopping the container", e));
            }
            if let Err(e) = engine
                .start_container(&new_id, None::<StartContainerOptions>)
                .await
            {
                remove(&new_id).await;
                restore_old().await;
                return Err(self.engine_error("starting the replacement container", e));
            }
        }
        let opts = RemoveContainerOptionsBuilder::default().force(true).build();
        match engine.remove_container(&old_id, Some(opts)).await {
            Ok(())
            | Err(EngineError::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => {
                remove(&new_id).await;
                restore_old().await;
                return Err(self.engine_error("removing the old container", e));
            }
        }
        let rename = RenameContainerOptionsBuilder::default()
            .name(&s.container_name)
            .build();
        let name = match engine.rename_container(&new_id, rename).await {
            Ok(()) => s.container_name.clone(),
            Err(e) => {
                tracing::warn!(container = %temp, error = %e, "cannot rename the replacement container; it keeps its temporary name");
                temp
            }
        };
        Ok(Recreated {
            id: new_id,
            name,
            running,
        })
    }
}

/// The engine lease was taken over mid-change (this control plane stalled past its TTL).
fn lease_lost() -> ServiceError {
    ServiceError::concurrent(
        "another control plane took over the Docker engine lease meanwhile; retry",
    )
}

/// The container that replaced a service's container.
struct Recreated {
    id: String,
    name: String,
    running: bool,
}

/// The port input for one more port of `s`: the default name is the first free `port-N`.
fn port_input(s: &ContainerService, input: &PortAddInput) -> PortInput {
    let name = input.name.clone().unwrap_or_else(|| {
        (s.ports.len() + 1..)
            .map(|n| format!("port-{n}"))
            .find(|n| !s.ports.iter().any(|p| &p.name == n))
            .unwrap_or_else(|| "port".into())
    });
    PortInput {
        name: Some(name),
        container_port: input.container_port,
        host_port: input.host_port,
        bind: input.bind.clone(),
        protocol: input.protocol.clone(),
    }
}

/// Port `port_name` of `s`, if the caller may manage it: restricted ports by their source
/// token (or an admin), others by the service's owner. Anyone else learns nothing (404).
fn port_of<'a>(
    caller: &Caller,
    s: &'a ContainerService,
    port_name: &str,
) -> Result<&'a PortMapping> {
    let owner = visible(caller, &s.owner_token_id);
    let Some(p) = s.ports.iter().find(|p| p.name == port_name) else {
        return Err(if owner {
            ServiceError::not_found("port", port_name)
        } else {
            ServiceError::not_found("service", &s.name)
        });
    };
    let delegated = p.source_token_id.as_deref() == Some(caller.token_id.as_str());
    if !owner && !delegated {
        return Err(ServiceError::not_found("service", &s.name));
    }
    authorize(caller, p)?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TokenScope;

    fn port(name: &str, token: Option<&str>) -> PortMapping {
        PortMapping {
            name: name.into(),
            container_port: 80,
            host_port: 10080,
            bind: "127.0.0.1".into(),
            protocol: "tcp".into(),
            source_token_id: token.map(str::to_owned),
        }
    }

    fn caller(id: &str, scope: TokenScope) -> Caller {
        Caller {
            token_id: id.into(),
            scope,
        }
    }

    #[test]
    fn free_ports_become_ranges() {
        let taken = [3u16, 4, 8];
        let r = free_ranges(1, 9, |p| !taken.contains(&p));
        assert_eq!(
            r,
            vec![
                PortRange { start: 1, end: 2 },
                PortRange { start: 5, end: 7 },
                PortRange { start: 9, end: 9 }
            ]
        );
        assert!(free_ranges(5, 5, |_| false).is_empty());
        assert_eq!(
            free_ranges(65535, 65535, |_| true),
            vec![PortRange {
                start: 65535,
                end: 65535
            }]
        );
    }

    #[test]
    fn a_source_token_alone_manages_its_port() {
        let s = ContainerService {
            name: "web".into(),
            container_name: "portcullis-web".into(),
            container_id: String::new(),
            image: "x".into(),
            command: vec![],
            env_keys: vec![],
            labels: Default::default(),
            memory_bytes: 0,
            nano_cpus: 0,
            restart_policy: "no".into(),
            ports: vec![port("http", None), port("api", Some("tok_b"))],
            owner_token_id: "tok_a".into(),
            created_at: 0,
            networks: vec![],
            built: false,
        };
        let owner = caller("tok_a", TokenScope::User);
        let b = caller("tok_b", TokenScope::User);
        let other = caller("tok_c", TokenScope::User);
        let admin = caller("tok_z", TokenScope::Admin);
        assert!(port_of(&owner, &s, "http").is_ok());
        assert!(matches!(
            port_of(&owner, &s, "api"),
            Err(ServiceError::Forbidden(_))
        ));
        assert!(port_of(&b, &s, "api").is_ok());
        assert!(matches!(
            port_of(&b, &s, "http"),
            Err(ServiceError::NotFound {
                kind: "service",
                ..
            })
        ));
        assert!(matches!(
            port_of(&other, &s, "api"),
            Err(ServiceError::NotFound {
                kind: "service",
                ..
            })
        ));
        assert!(port_of(&admin, &s, "api").is_ok());
        assert!(matches!(
            port_of(&owner, &s, "nope"),
            Err(ServiceError::NotFound { kind: "port", .. })
        ));
    }
}
