//! Arguments of the Docker service commands: `service create|list|show|start|stop|restart|
//! delete|logs|proxy-create|cleanup` and `service port list|check|add|remove|available`
//! (beside `service external ...`).

use clap::{Args, Subcommand};

/// `portcullis service create NAME IMAGE [-- COMMAND...]`.
#[derive(Debug, Args)]
pub(crate) struct ServiceCreateArgs {
    /// Service name (the container is `portcullis-NAME`)
    pub(crate) name: String,
    /// Image reference, present on the engine (e.g. built locally); leave out with
    /// --dockerfile
    pub(crate) image: Option<String>,
    /// Build the image from this Dockerfile (tagged portcullis-build/NAME:latest)
    #[arg(long, value_name = "PATH")]
    pub(crate) dockerfile: Option<std::path::PathBuf>,
    /// Build context directory (default: the Dockerfile's directory), sent as a tar
    #[arg(long, value_name = "DIR", requires = "dockerfile")]
    pub(crate) context: Option<std::path::PathBuf>,
    /// Existing engine network to join (the first is the container's network). Repeatable.
    #[arg(long = "network", value_name = "NAME")]
    pub(crate) networks: Vec<String>,
    /// Published port: `[NAME=]CONTAINER_PORT[:HOST_PORT][/tcp|udp]`; without HOST_PORT one
    /// is allocated from the control plane's --port-range. Repeatable.
    #[arg(long = "port", value_name = "SPEC")]
    pub(crate) ports: Vec<String>,
    /// Host address every port binds (default 127.0.0.1; 0.0.0.0 only when asked)
    #[arg(long)]
    pub(crate) bind: Option<String>,
    /// Environment variable `KEY=VALUE`. Repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub(crate) env: Vec<String>,
    /// Container label `KEY=VALUE`. Repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub(crate) labels: Vec<String>,
    /// Memory limit, e.g. 256m
    #[arg(long)]
    pub(crate) memory: Option<String>,
    /// CPU limit in CPUs, e.g. 0.5
    #[arg(long)]
    pub(crate) cpus: Option<String>,
    /// no, always, unless-stopped, on-failure[:N]
    #[arg(long)]
    pub(crate) restart: Option<String>,
    /// Create without starting
    #[arg(long)]
    pub(crate) no_start: bool,
    /// Command and arguments, after `--`
    #[arg(last = true)]
    pub(crate) command: Vec<String>,
}

/// `portcullis service port ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum PortCommand {
    /// List host-port allocations, or one service's ports
    List {
        /// Service name (default: every allocation)
        service: Option<String>,
    },
    /// Publish one more port of a service (the container is recreated)
    Add(PortAddArgs),
    /// Stop publishing a port and release its host port (the container is recreated)
    Remove {
        /// Service name
        service: String,
        /// Port name
        port_name: String,
    },
    /// Free host-port ranges within the control plane's --port-range
    Available {
        /// Bind address to probe (default 127.0.0.1)
        #[arg(long)]
        bind: Option<String>,
        /// Probe udp instead of tcp
        #[arg(long)]
        udp: bool,
    },
    /// Whether a host port is free, and why not
    Check {
        /// Host port
        port: u16,
        /// Bind address (default 127.0.0.1)
        bind: Option<String>,
        /// Check udp instead of tcp
        #[arg(long)]
        udp: bool,
    },
}

/// `portcullis service port add SERVICE PORT ...`.
#[derive(Debug, Args)]
pub(crate) struct PortAddArgs {
    /// Service name
    pub(crate) service: String,
    /// Port inside the container
    pub(crate) port: u16,
    /// Host address to bind (default 127.0.0.1; 0.0.0.0 only when asked)
    #[arg(long)]
    pub(crate) bind: Option<String>,
    /// Port name (default port-N)
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// tcp (default) or udp
    #[arg(long)]
    pub(crate) protocol: Option<String>,
    /// Host port (default: allocated from the control plane's --port-range)
    #[arg(long)]
    pub(crate) host_port: Option<u16>,
    /// Token id or name that alone (with admins) may manage this port afterwards
    #[arg(long)]
    pub(crate) source_token: Option<String>,
}

/// One `--port` spec, parsed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PortSpecArg {
    pub(crate) name: Option<String>,
    pub(crate) container_port: u16,
    pub(crate) host_port: Option<u16>,
    pub(crate) protocol: Option<String>,
}

/// Parses `[NAME=]CONTAINER[:HOST][/PROTO]`.
pub(crate) fn parse_port_spec(v: &str) -> Result<PortSpecArg, String> {
    let bad = || format!("--port {v:?}: expected [NAME=]CONTAINER_PORT[:HOST_PORT][/tcp|udp]");
    let (name, rest) = match v.split_once('=') {
        Some((n, r)) => (Some(n.to_owned()), r),
        None => (None, v),
    };
    let (ports, protocol) = match rest.split_once('/') {
        Some((p, proto)) => (p, Some(proto.to_owned())),
        None => (rest, None),
    };
    let (c, h) = match ports.split_once(':') {
        Some((c, h)) => (c, Some(h.parse::<u16>().map_err(|_| bad())?)),
        None => (ports, None),
    };
    Ok(PortSpecArg {
        name,
        container_port: c.parse().map_err(|_| bad())?,
        host_port: h,
        protocol,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs() {
        assert_eq!(
            parse_port_spec("web=8080:18080/udp").unwrap(),
            PortSpecArg {
                name: Some("web".into()),
                container_port: 8080,
                host_port: Some(18080),
                protocol: Some("udp".into())
            }
        );
        assert_eq!(parse_port_spec("80").unwrap().host_port, None);
        assert!(parse_port_spec("x").is_err());
        assert!(parse_port_spec("80:70000").is_err());
    }
}
