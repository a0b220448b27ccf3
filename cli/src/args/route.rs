//! `portcullis route ...` arguments.

use clap::{Args, Subcommand, ValueEnum};

/// Route management. Routes have no update RPC: delete and recreate to change one.
#[derive(Debug, Subcommand)]
pub(crate) enum RouteCommand {
    /// Create a route sending requests for PATH to a URL, a named service or a proxy
    Create(RouteCreateArgs),
    /// List all routes
    List,
    /// Show one route
    Show {
        /// Route id
        id: String,
    },
    /// Delete a route
    Delete {
        /// Route id
        id: String,
    },
}

/// What a route forwards to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TargetArg {
    /// TARGET_VALUE is an upstream URL
    Url,
    /// TARGET_VALUE is the name of an external service
    Service,
    /// TARGET_VALUE is the hostname of another proxy
    Proxy,
}

/// How PATH is compared with the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum MatchArg {
    /// The request path starts with PATH
    Prefix,
    /// The request path equals PATH
    Exact,
    /// PATH is a regular expression matched against the request path
    Regex,
}

/// `route create`.
#[derive(Debug, Args)]
pub(crate) struct RouteCreateArgs {
    /// Path pattern, interpreted according to --match
    pub(crate) path: String,
    /// Kind of target
    #[arg(value_enum)]
    pub(crate) target_kind: TargetArg,
    /// URL, service name or proxy hostname, according to TARGET_KIND
    pub(crate) target_value: String,
    /// Route id (the control plane generates one when omitted)
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// Evaluation priority (server default when omitted)
    #[arg(long, value_name = "N")]
    pub(crate) priority: Option<u32>,
    /// How PATH matches request paths
    #[arg(long = "match", value_enum, default_value_t = MatchArg::Prefix)]
    pub(crate) match_kind: MatchArg,
    /// Only match these HTTP methods (repeatable or comma-separated; default all)
    #[arg(long = "method", value_name = "METHOD", value_delimiter = ',')]
    pub(crate) methods: Vec<String>,
    /// Only apply to these proxy hostnames (repeatable or comma-separated; default global)
    #[arg(long = "proxy", value_name = "HOST", value_delimiter = ',')]
    pub(crate) proxies: Vec<String>,
    /// Create the route disabled
    #[arg(long)]
    pub(crate) disabled: bool,
    /// Free-text description
    #[arg(long)]
    pub(crate) description: Option<String>,
    /// Mark the route public (admin only; exempt from edge authentication)
    #[arg(long)]
    pub(crate) public: bool,
    /// OAuth scopes a token needs for this route, on top of the proxy's required scopes
    /// (repeatable or comma-separated)
    #[arg(long = "scope", value_name = "SCOPE", value_delimiter = ',')]
    pub(crate) scopes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use crate::args::{Cli, Command};
    use clap::Parser;

    use super::*;

    fn create(args: &[&str]) -> Result<RouteCreateArgs, clap::Error> {
        let cli = Cli::try_parse_from(["portcullis", "route", "create"].iter().chain(args))?;
        match cli.command {
            Command::Route(RouteCommand::Create(a)) => Ok(a),
            other => panic!("parsed into {other:?}"),
        }
    }

    #[test]
    fn defaults_to_prefix_and_global() -> Result<(), clap::Error> {
        let a = create(&["/api", "url", "http://api:8080"])?;
        assert_eq!(a.match_kind, MatchArg::Prefix);
        assert_eq!(a.target_kind, TargetArg::Url);
        assert!(a.proxies.is_empty() && a.methods.is_empty());
        assert!(!a.disabled && !a.public);
        Ok(())
    }

    #[test]
    fn methods_and_scopes_accept_repeats_and_commas() -> Result<(), clap::Error> {
        let a = create(&[
            "^/v[0-9]+/",
            "service",
            "billing",
            "--match",
            "regex",
            "--method",
            "GET,post",
            "--method",
            "PUT",
            "--proxy",
            "a.example",
            "--proxy",
            "b.example",
            "--scope",
            "billing:read,billing:write",
            "--scope",
            "admin",
        ])?;
        assert_eq!(a.scopes, ["billing:read", "billing:write", "admin"]);
        assert_eq!(a.methods, ["GET", "post", "PUT"]);
        assert_eq!(a.proxies, ["a.example", "b.example"]);
        assert_eq!(a.match_kind, MatchArg::Regex);
        Ok(())
    }

    #[test]
    fn unknown_target_kind_is_rejected() {
        assert!(create(&["/x", "lambda", "f"]).is_err());
    }
}
