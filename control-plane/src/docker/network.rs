//! Where a service's image comes from (the engine, or a build) and where it is reached:
//! the engine networks it joins and the address a one-step proxy targets.
//!
//! Proxy targets: by default the published host port (`http://BIND:HOST_PORT`, loopback
//! for `0.0.0.0`): it stays the same across container restarts and recreation and works
//! wherever the data plane can reach the host. `target: container` uses the container's
//! address on its first network and the container port (`http://172.17.0.5:8080`): no
//! published port is needed on the path, but the address is the engine's choice and may
//! change when the container is recreated or restarted, and only a data plane on the
//! engine's host (or routed into its network) reaches it.

use bollard::errors::Error as EngineError;
use bollard::models::NetworkConnectRequest;
use bollard::query_parameters::{InspectContainerOptions, InspectNetworkOptions};

use super::spec::{ContainerService, ContainerServiceInput, PortMapping};
use super::{Docker, build, spec};
use crate::error::ServiceError;

type Result<T> = std::result::Result<T, ServiceError>;

/// What a one-step proxy targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The published host port (default).
    Host,
    /// The container's address on its network and the container port.
    Container,
}

impl Target {
    /// `host` (default) or `container`.
    pub fn parse(v: Option<&str>) -> Result<Self> {
        match v.unwrap_or("host") {
            "" | "host" => Ok(Self::Host),
            "container" => Ok(Self::Container),
            other => Err(ServiceError::invalid(
                "target",
                format!("{other:?} is not host or container"),
            )),
        }
    }
}

impl Docker {
    /// The image to run and, for a Dockerfile, the build context to send.
    pub(super) fn image_or_build(
        &self,
        name: &str,
        input: &ContainerServiceInput,
    ) -> Result<(String, Option<Vec<u8>>)> {
        match &input.dockerfile {
            Some(dockerfile) => {
                let tag = build::tag_for(name);
                if !input.image.is_empty() && input.image != tag {
                    return Err(ServiceError::invalid(
                        "image",
                        format!("leave it empty with a dockerfile: the build is tagged {tag}"),
                    ));
                }
                let tar = build::context(dockerfile, input.build_context.as_deref())?;
                Ok((tag, Some(tar)))
            }
            None if input.build_context.is_some() => Err(ServiceError::invalid(
                "build_context",
                "is only used with a dockerfile",
            )),
            None => Ok((spec::image_ref(&input.image)?, None)),
        }
    }

    /// Builds the image for a new service, once the name is known to be free (a build can
    /// take minutes; a taken name should not wait for it).
    pub(super) async fn build_for(
        &self,
        engine: &bollard::Docker,
        name: &str,
        tag: &str,
        tar: Vec<u8>,
    ) -> Result<()> {
        if self
            .inner
            .cp
            .store()
            .get_record::<ContainerService>(name)
            .await?
            .is_some()
        {
            return Err(ServiceError::already_exists(format!(
                "name: service {name:?} already exists"
            )));
        }
        self.build(engine, tag, tar).await
    }

    /// Every network must exist on the engine.
    pub(super) async fn check_networks(
        &self,
        engine: &bollard::Docker,
        networks: &[String],
    ) -> Result<()> {
        for n in networks {
            match engine
                .inspect_network(n, None::<InspectNetworkOptions>)
                .await
            {
                Ok(_) => {}
                Err(EngineError::DockerResponseServerError {
                    status_code: 404, ..
                }) => {
                    return Err(ServiceError::invalid(
                        "networks",
                        format!("no network {n:?} on the Docker engine; create it first"),
                    ));
                }
                Err(e) => return Err(self.engine_error("inspecting a network", e)),
            }
        }
        Ok(())
    }

    /// Joins the networks after the first (the first is the container's network mode).
    pub(super) async fn join_networks(
        &self,
        engine: &bollard::Docker,
        s: &ContainerService,
    ) -> Result<()> {
        for n in s.networks.iter().skip(1) {
            let req = NetworkConnectRequest {
                container: s.container_id.clone(),
                endpoint_config: None,
            };
            engine
                .connect_network(n, req)
                .await
                .map_err(|e| self.engine_error("joining a network", e))?;
        }
        Ok(())
    }

    /// The container's addresses on its networks now; empty when it cannot be inspected
    /// (gone, or the engine refuses): a delete then reports only host-port proxies.
    pub(super) async fn container_ips(
        &self,
        engine: &bollard::Docker,
        s: &ContainerService,
    ) -> Vec<String> {
        let Ok(c) = engine
            .inspect_container(&s.container_name, None::<InspectContainerOptions>)
            .await
        else {
            return Vec::new();
        };
        c.network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default()
            .into_values()
            .filter_map(|e| e.ip_address)
            .filter(|ip| !ip.is_empty())
            .collect()
    }

    /// `http://IP:CONTAINER_PORT` on the service's first network (or the only one it is on).
    pub(super) async fn container_url(
        &self,
        s: &ContainerService,
        port: &PortMapping,
    ) -> Result<String> {
        let engine = self.engine().await?;
        let c = engine
            .inspect_container(&s.container_name, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.engine_error("inspecting the container", e))?;
        let nets = c
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default();
        let wanted = s.networks.first().map_or("bridge", String::as_str);
        let ip = nets
            .get(wanted)
            .or_else(|| nets.values().next())
            .and_then(|e| e.ip_address.clone())
            .filter(|ip| !ip.is_empty())
            .ok_or_else(|| {
                ServiceError::Unprocessable(format!(
                    "target: service {:?} has no container address now (is it running?)",
                    s.name
                ))
            })?;
        let host = match ip.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
            _ => ip,
        };
        Ok(format!("http://{host}:{}", port.container_port))
    }
}

/// Whether `target_url` is a container-address target: one of the container's addresses
/// `ips` and one of its container ports.
pub(super) fn targets_container(target_url: &str, ips: &[String], ports: &[PortMapping]) -> bool {
    url::Url::parse(target_url).is_ok_and(|u| {
        u.port_or_known_default()
            .is_some_and(|p| ports.iter().any(|m| m.container_port == p))
            && u.host_str()
                .is_some_and(|h| ips.iter().any(|ip| ip == h.trim_matches(['[', ']'])))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_targets() {
        let ports = [PortMapping {
            name: "http".into(),
            container_port: 8080,
            host_port: 10000,
            bind: "127.0.0.1".into(),
            protocol: "tcp".into(),
            source_token_id: None,
        }];
        let ips = ["172.18.0.2".to_owned(), "fd00::2".to_owned()];
        assert!(targets_container("http://172.18.0.2:8080", &ips, &ports));
        assert!(targets_container("http://[fd00::2]:8080/x", &ips, &ports));
        assert!(!targets_container("http://172.18.0.2:8081", &ips, &ports));
        assert!(!targets_container("http://172.18.0.3:8080", &ips, &ports));
        assert!(!targets_container("http://127.0.0.1:10000", &ips, &ports));
        assert!(!targets_container("http://172.18.0.2:8080", &[], &ports));
    }

    #[test]
    fn targets() {
        assert_eq!(Target::parse(None).unwrap(), Target::Host);
        assert_eq!(Target::parse(Some("")).unwrap(), Target::Host);
        assert_eq!(Target::parse(Some("container")).unwrap(), Target::Container);
        assert!(matches!(
            Target::parse(Some("ip")),
            Err(ServiceError::Invalid {
                field: "target",
                ..
            })
        ));
    }
}
