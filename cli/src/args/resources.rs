//! Arguments for the smaller resources: services, tokens and data planes.

use clap::{Subcommand, ValueEnum};

/// `portcullis service ...`: Docker container services, and named external upstreams under
/// `service external`.
#[derive(Debug, Subcommand)]
pub(crate) enum ServiceCommand {
    /// Named upstream services outside the proxy
    #[command(subcommand)]
    External(ExternalCommand),
    /// Create (and start) a Docker container service
    Create(Box<super::docker::ServiceCreateArgs>),
    /// List Docker services with their live state
    List,
    /// Show one Docker service with its live state
    Show {
        /// Service name
        name: String,
    },
    /// Start a Docker service
    Start {
        /// Service name
        name: String,
    },
    /// Stop a Docker service
    Stop {
        /// Service name
        name: String,
    },
    /// Restart a Docker service
    Restart {
        /// Service name
        name: String,
    },
    /// Delete a Docker service: container removed, ports released
    Delete {
        /// Service name
        name: String,
    },
    /// A Docker service's recent output
    Logs {
        /// Service name
        name: String,
        /// Lines from the end
        #[arg(long, default_value_t = 100)]
        tail: u32,
        /// Prefix each line with its timestamp
        #[arg(long)]
        timestamps: bool,
        /// Keep printing new lines until the container stops (or Ctrl-C)
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// A Docker service's CPU, memory, network and block I/O
    Stats {
        /// Service name
        name: String,
        /// A line per second until the container stops (or Ctrl-C)
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Create a proxy to a Docker service's published port, in one step
    ProxyCreate {
        /// Service name
        name: String,
        /// Hostname (default NAME.localhost)
        hostname: Option<String>,
        /// Serve HTTPS too
        #[arg(long)]
        https: bool,
        /// Port name (default: the first tcp port)
        #[arg(long)]
        port: Option<String>,
        /// host (default: the published host port) or container (its address on its network)
        #[arg(long)]
        target: Option<String>,
    },
    /// Host-port allocations
    #[command(subcommand)]
    Port(super::docker::PortCommand),
    /// Remove orphaned managed containers and stale allocations (admin); also lists
    /// services whose container is missing
    Cleanup {
        /// Only report what would be removed
        #[arg(long)]
        dry_run: bool,
    },
}

/// `portcullis service external ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum ExternalCommand {
    /// Register a named upstream service
    Register {
        /// Service name, used as TARGET_VALUE of `route create PATH service NAME`
        name: String,
        /// Upstream URL (its own arg id: a positional named `url` would collide with the
        /// global `--url` and silently replace the control plane address)
        #[arg(id = "target_url", value_name = "URL")]
        url: String,
        /// Free-text description
        #[arg(long)]
        description: Option<String>,
    },
    /// List registered services
    List,
    /// Show one service
    Show {
        /// Service name
        name: String,
    },
    /// Delete a service
    Delete {
        /// Service name
        name: String,
    },
}

/// Scopes a person can hold; data plane tokens are made by `dataplane-token create`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ScopeArg {
    /// Full control, including tokens
    Admin,
    /// Manage own proxies, routes and services
    User,
}

/// `portcullis token ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create an API token; prints the secret, which is shown only once
    Create {
        /// Human-readable token name
        name: String,
        /// What the token may do (least privilege by default)
        #[arg(long, value_enum, default_value_t = ScopeArg::User)]
        scope: ScopeArg,
    },
    /// List tokens (metadata only; secrets are never returned)
    List,
    /// Delete (revoke) a token
    Delete {
        /// Token id
        id: String,
    },
}

/// `portcullis dataplane-token ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum DataplaneTokenCommand {
    /// Create a data plane enrolment token; prints only the secret
    Create {
        /// Human-readable token name, e.g. the node it is for
        name: String,
    },
}

/// `portcullis dataplanes ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum DataplanesCommand {
    /// List data planes known to the control plane
    List,
}

#[cfg(test)]
mod tests {
    use crate::args::{Cli, Command};
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Ok(Cli::try_parse_from(std::iter::once(&"portcullis").chain(args))?.command)
    }

    #[test]
    fn token_scope_defaults_to_user() -> Result<(), clap::Error> {
        let cmd = parse(&["token", "create", "ci"])?;
        assert!(matches!(
            cmd,
            Command::Token(TokenCommand::Create {
                scope: ScopeArg::User,
                ..
            })
        ));
        let cmd = parse(&["token", "create", "root", "--scope", "admin"])?;
        assert!(matches!(
            cmd,
            Command::Token(TokenCommand::Create {
                scope: ScopeArg::Admin,
                ..
            })
        ));
        assert!(parse(&["token", "create", "x", "--scope", "dataplane"]).is_err());
        Ok(())
    }

    #[test]
    fn service_url_does_not_replace_the_control_plane_url() -> Result<(), clap::Error> {
        let cli = Cli::try_parse_from([
            "portcullis",
            "--url",
            "http://cp:9090",
            "service",
            "external",
            "register",
            "b",
            "http://b:1",
        ])?;
        assert_eq!(cli.global.url.as_deref(), Some("http://cp:9090"));
        assert!(matches!(
            cli.command,
            Command::Service(ServiceCommand::External(ExternalCommand::Register { ref url, .. })) if url == "http://b:1"
        ));
        Ok(())
    }

    #[test]
    fn nested_service_commands_parse() -> Result<(), clap::Error> {
        let cmd = parse(&["service", "external", "register", "billing", "http://b:1"])?;
        assert!(matches!(
            cmd,
            Command::Service(ServiceCommand::External(ExternalCommand::Register { .. }))
        ));
        assert!(matches!(
            parse(&["dataplane-token", "create", "edge-1"])?,
            Command::DataplaneToken(DataplaneTokenCommand::Create { .. })
        ));
        assert!(matches!(
            parse(&["dataplanes", "list"])?,
            Command::Dataplanes(DataplanesCommand::List)
        ));
        Ok(())
    }
}
