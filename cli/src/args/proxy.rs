//! `portcullis proxy ...` arguments.

use clap::{ArgGroup, Args, Subcommand, ValueEnum};

use super::HeaderPair;

/// Proxy (virtual host) management.
#[derive(Debug, Subcommand)]
pub(crate) enum ProxyCommand {
    /// Create a proxy that forwards requests for HOSTNAME to TARGET_URL
    Create(ProxyCreateArgs),
    /// List all proxies
    List,
    /// Show one proxy
    Show {
        /// Hostname of the proxy
        hostname: String,
    },
    /// Change some fields of a proxy; fields not given stay as they are
    Update(ProxyUpdateArgs),
    /// Delete a proxy
    Delete {
        /// Hostname of the proxy
        hostname: String,
    },
    /// Serve certificate CERT for proxy HOSTNAME
    CertAttach {
        /// Hostname of the proxy
        hostname: String,
        /// Certificate name
        cert: String,
    },
    /// Protect a proxy with OAuth bearer tokens checked at the edge
    #[command(subcommand)]
    Auth(ProxyAuthCommand),
    /// Protected-resource metadata, MCP endpoint and allowed browser origins
    #[command(subcommand)]
    Resource(super::ProxyResourceCommand),
}

/// `proxy auth ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum ProxyAuthCommand {
    /// Protect HOSTNAME (replaces any previous policy)
    Enable(Box<ProxyAuthEnableArgs>),
    /// Remove the protection of HOSTNAME
    Disable {
        /// Hostname of the proxy
        hostname: String,
    },
    /// Show how HOSTNAME is protected
    Show {
        /// Hostname of the proxy
        hostname: String,
    },
}

/// What a protected proxy does without a valid token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum AuthModeArg {
    /// Bearer token required: 401 without one, 403 without the scopes (APIs, MCP)
    Forward,
    /// Browser login: page loads without a session are sent to sign in at the issuer and
    /// get a sealed session cookie; other requests get 401 login_required (web apps)
    Redirect,
    /// Never refuse; identity headers only with a valid token
    Passthrough,
}

/// `proxy auth enable`.
#[derive(Debug, Args)]
pub(crate) struct ProxyAuthEnableArgs {
    /// Hostname of the proxy
    pub(crate) hostname: String,
    /// Host that serves login for this proxy, as published with `oauth setup` (logins go
    /// to the control plane's --oauth-issuer, which should be https://AUTH_HOST)
    #[arg(long, value_name = "AUTH_HOST")]
    pub(crate) auth_host: String,
    /// What happens to requests without a valid token
    #[arg(long, value_enum)]
    pub(crate) mode: AuthModeArg,
    /// Scope every token must carry (repeatable)
    #[arg(long = "scope", value_name = "SCOPE")]
    pub(crate) scopes: Vec<String>,
    /// Path prefix served without a token, e.g. /health (repeatable)
    #[arg(long = "public-path", value_name = "PATH")]
    pub(crate) public_paths: Vec<String>,
    /// Scope advertised in the protected-resource metadata (repeatable; default: --scope)
    #[arg(long = "scope-supported", value_name = "SCOPE")]
    pub(crate) scopes_supported: Vec<String>,
    /// Documentation URL advertised in the protected-resource metadata
    #[arg(long, value_name = "URL")]
    pub(crate) resource_doc: Option<String>,
    /// Allow only these logins (repeatable or comma-separated; with the other --allow-*
    /// flags, a token matching any entry is admitted; none = every valid token)
    #[arg(long = "allow-user", value_name = "LOGIN", value_delimiter = ',')]
    pub(crate) allow_users: Vec<String>,
    /// Allow members of this GitHub organisation (repeatable or comma-separated)
    #[arg(long = "allow-org", value_name = "ORG", value_delimiter = ',')]
    pub(crate) allow_orgs: Vec<String>,
    /// Allow members of this GitHub team, as ORG/TEAM (repeatable or comma-separated)
    #[arg(long = "allow-team", value_name = "ORG/TEAM", value_delimiter = ',')]
    pub(crate) allow_teams: Vec<String>,
    /// Allow users whose verified e-mail is in this domain (repeatable or comma-separated)
    #[arg(
        long = "allow-email-domain",
        value_name = "DOMAIN",
        value_delimiter = ','
    )]
    pub(crate) allow_email_domains: Vec<String>,
    /// Allow members of this OIDC group, compared exactly (repeatable or comma-separated)
    #[arg(long = "allow-group", value_name = "GROUP", value_delimiter = ',')]
    pub(crate) allow_groups: Vec<String>,
    /// Forward the client's verified `Authorization: Bearer` header to the backend
    /// (default: removed, no token passthrough)
    #[arg(long)]
    pub(crate) forward_token: bool,
    /// Rename an identity header, KEY=NAME with KEY one of user, email, subject, scopes,
    /// client-id, groups (repeatable), e.g. user=X-Remote-User
    #[arg(long = "identity-header", value_name = "KEY=NAME")]
    pub(crate) identity_headers: Vec<IdentityHeaderArg>,
}

/// One `--identity-header KEY=NAME`; the control plane checks the key and the name, so
/// every client gets the same rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdentityHeaderArg {
    /// Identity item (`user`, `email`, …).
    pub(crate) key: String,
    /// Header name to use instead of the `X-Auth-*` default.
    pub(crate) name: String,
}

impl std::str::FromStr for IdentityHeaderArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((key, name)) if !key.trim().is_empty() && !name.trim().is_empty() => Ok(Self {
                key: key.trim().to_owned(),
                name: name.trim().to_owned(),
            }),
            _ => Err(format!(
                "expected KEY=NAME, e.g. user=X-Remote-User, got {s:?}"
            )),
        }
    }
}

impl AuthModeArg {
    /// The wire name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Forward => "forward",
            Self::Redirect => "redirect",
            Self::Passthrough => "passthrough",
        }
    }
}

/// The PROXY protocol version sent to a proxy's upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum UpstreamProxyProtocolArg {
    /// None
    Off,
    /// Text header (nginx `proxy_protocol`, HAProxy `accept-proxy`)
    V1,
    /// Binary header
    V2,
}

impl UpstreamProxyProtocolArg {
    /// The wire name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::V1 => "v1",
            Self::V2 => "v2",
        }
    }
}

/// What a proxy's request rate is counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RateLimitKeyArg {
    /// The client address (IPv6 per /64)
    Ip,
    /// The verified token's subject (the user)
    Subject,
    /// The verified token's OAuth client
    Client,
}

impl RateLimitKeyArg {
    /// The wire name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Ip => "ip",
            Self::Subject => "subject",
            Self::Client => "client",
        }
    }
}

/// `proxy create`: flags only override server defaults when given, so the
/// control plane stays the single source of defaults.
#[derive(Debug, Args)]
pub(crate) struct ProxyCreateArgs {
    /// Host header value this proxy answers for
    pub(crate) hostname: String,
    /// Upstream URL requests are forwarded to
    pub(crate) target_url: String,
    /// Create the proxy disabled
    #[arg(long)]
    pub(crate) disabled: bool,
    /// Do not serve this host on the plain HTTP listener
    #[arg(long)]
    pub(crate) no_http: bool,
    /// Answer plain HTTP with a 308 redirect to HTTPS
    #[arg(long)]
    pub(crate) redirect_https: bool,
    /// Send Strict-Transport-Security with this max-age on HTTPS responses
    #[arg(long, value_name = "SECS")]
    pub(crate) hsts_max_age: Option<u32>,
    /// Serve this certificate for the host (default: any valid one covering it)
    #[arg(long, value_name = "NAME")]
    pub(crate) cert: Option<String>,
    /// Serve this host on the HTTPS listener
    #[arg(long)]
    pub(crate) https: bool,
    /// Forward the client's Host header instead of the target's
    #[arg(long)]
    pub(crate) preserve_host: bool,
    /// Header added to upstream requests (repeatable)
    #[arg(long = "request-header", value_name = "K=V")]
    pub(crate) request_headers: Vec<HeaderPair>,
    /// Header added to responses (repeatable)
    #[arg(long = "response-header", value_name = "K=V")]
    pub(crate) response_headers: Vec<HeaderPair>,
    /// Upstream connect timeout in milliseconds
    #[arg(long, value_name = "MS")]
    pub(crate) connect_timeout_ms: Option<u32>,
    /// Upstream read timeout in milliseconds
    #[arg(long, value_name = "MS")]
    pub(crate) read_timeout_ms: Option<u32>,
    /// Longest silence between body frames of a streamed response or request, in
    /// milliseconds (0 = default, 10 minutes)
    #[arg(long, value_name = "MS")]
    pub(crate) idle_timeout_ms: Option<u32>,
    /// Requests per second per client key on each data plane; more get 429 with
    /// Retry-After (0 = no rate limit)
    #[arg(long = "rate-limit", value_name = "RPS")]
    pub(crate) rate_limit: Option<u32>,
    /// Requests a key may send at once after a quiet spell (default: RPS)
    #[arg(long = "rate-burst", value_name = "N")]
    pub(crate) rate_burst: Option<u32>,
    /// What the rate is counted by; subject and client apply once a token was verified
    /// (requests without one count by address)
    #[arg(long = "rate-limit-key", value_enum, value_name = "KEY")]
    pub(crate) rate_limit_key: Option<RateLimitKeyArg>,
    /// Requests in flight at once on each data plane; more get 503 (0 = no cap)
    #[arg(long, value_name = "N")]
    pub(crate) max_concurrent_requests: Option<u32>,
    /// Largest request body forwarded, in bytes; larger ones are answered 413
    /// (0 = no limit, the default)
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_request_body_bytes: Option<u64>,
    /// Open upstream connections with a PROXY protocol header carrying the client's
    /// address; such connections serve one request each (never pooled)
    #[arg(long, value_enum, value_name = "VERSION")]
    pub(crate) upstream_proxy_protocol: Option<UpstreamProxyProtocolArg>,
    /// Only these client address ranges may reach the proxy, `CIDR[,CIDR…]` (others get
    /// 403); default: every client
    #[arg(long, value_name = "CIDRS")]
    pub(crate) ip_allow: Option<String>,
    /// Record the query string in access-log records (credential parameters such as
    /// access_token, code and state removed); default: the path only
    #[arg(long, value_name = "true|false", num_args = 0..=1, require_equals = true,
        default_missing_value = "true")]
    pub(crate) log_query: Option<bool>,
}

/// `proxy update`: every flag is optional, but at least one must be given, since an
/// empty patch is almost certainly a mistake.
#[derive(Debug, Args)]
#[command(
    override_usage = "portcullis proxy update [OPTIONS] <HOSTNAME>  (at least one change option)"
)]
#[command(group(
    ArgGroup::new("changes")
        .required(true)
        .multiple(true)
        .args([
            "target", "enabled", "http", "https", "preserve_host",
            "request_headers", "clear_request_headers",
            "response_headers", "clear_response_headers",
            "connect_timeout_ms", "read_timeout_ms", "idle_timeout_ms",
            "redirect_https", "hsts_max_age", "cert", "max_request_body_bytes",
            "rate_limit", "rate_burst", "rate_limit_key", "max_concurrent_requests",
            "upstream_proxy_protocol", "ip_allow", "log_query",
        ])
))]
pub(crate) struct ProxyUpdateArgs {
    /// Hostname of the proxy to change
    pub(crate) hostname: String,
    /// New upstream URL
    #[arg(long, value_name = "URL")]
    pub(crate) target: Option<String>,
    /// Enable or disable the proxy
    #[arg(long, value_name = "true|false")]
    pub(crate) enabled: Option<bool>,
    /// Serve on the plain HTTP listener
    #[arg(long, value_name = "true|false")]
    pub(crate) http: Option<bool>,
    /// Serve on the HTTPS listener
    #[arg(long, value_name = "true|false")]
    pub(crate) https: Option<bool>,
    /// Forward the client's Host header
    #[arg(long, value_name = "true|false")]
    pub(crate) preserve_host: Option<bool>,
    /// Replace all request headers with these (repeatable)
    #[arg(long = "request-header", value_name = "K=V")]
    pub(crate) request_headers: Vec<HeaderPair>,
    /// Remove all request headers
    #[arg(long, conflicts_with = "request_headers")]
    pub(crate) clear_request_headers: bool,
    /// Replace all response headers with these (repeatable)
    #[arg(long = "response-header", value_name = "K=V")]
    pub(crate) response_headers: Vec<HeaderPair>,
    /// Remove all response headers
    #[arg(long, conflicts_with = "response_headers")]
    pub(crate) clear_response_headers: bool,
    /// Upstream connect timeout in milliseconds
    #[arg(long, value_name = "MS")]
    pub(crate) connect_timeout_ms: Option<u32>,
    /// Upstream read timeout in milliseconds
    #[arg(long, value_name = "MS")]
    pub(crate) read_timeout_ms: Option<u32>,
    /// Longest silence between body frames of a streamed response or request, in
    /// milliseconds (0 = default, 10 minutes)
    #[arg(long, value_name = "MS")]
    pub(crate) idle_timeout_ms: Option<u32>,
    /// Largest request body forwarded, in bytes; larger ones are answered 413 (0 = no
    /// limit)
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_request_body_bytes: Option<u64>,
    /// PROXY protocol header on upstream connections: off, v1 or v2
    #[arg(long, value_enum, value_name = "VERSION")]
    pub(crate) upstream_proxy_protocol: Option<UpstreamProxyProtocolArg>,
    /// Client address ranges allowed, `CIDR[,CIDR…]`; "" allows every client again
    #[arg(long, value_name = "CIDRS")]
    pub(crate) ip_allow: Option<String>,
    /// Redirect plain HTTP to HTTPS
    #[arg(long, value_name = "true|false")]
    pub(crate) redirect_https: Option<bool>,
    /// HSTS max-age in seconds; 0 turns HSTS off
    #[arg(long, value_name = "SECS")]
    pub(crate) hsts_max_age: Option<u32>,
    /// Certificate to serve for this host; "" detaches
    #[arg(long, value_name = "NAME")]
    pub(crate) cert: Option<String>,
    /// Requests per second per client key on each data plane; more get 429 with
    /// Retry-After (0 turns it off)
    #[arg(long = "rate-limit", value_name = "RPS")]
    pub(crate) rate_limit: Option<u32>,
    /// Requests a key may send at once after a quiet spell (default: RPS)
    #[arg(long = "rate-burst", value_name = "N")]
    pub(crate) rate_burst: Option<u32>,
    /// What the rate is counted by; subject and client apply once a token was verified
    /// (requests without one count by address)
    #[arg(long = "rate-limit-key", value_enum, value_name = "KEY")]
    pub(crate) rate_limit_key: Option<RateLimitKeyArg>,
    /// Requests in flight at once on each data plane; more get 503 (0 = no cap)
    #[arg(long, value_name = "N")]
    pub(crate) max_concurrent_requests: Option<u32>,
    /// Record the query string in access-log records (credential parameters such as
    /// access_token, code and state removed); default: the path only
    #[arg(long, value_name = "true|false", num_args = 0..=1, require_equals = true,
        default_missing_value = "true")]
    pub(crate) log_query: Option<bool>,
}

#[cfg(test)]
mod tests {
    use crate::args::{Cli, Command};
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Result<ProxyCommand, clap::Error> {
        let cli = Cli::try_parse_from(["portcullis", "proxy"].iter().chain(args))?;
        match cli.command {
            Command::Proxy(cmd) => Ok(cmd),
            other => panic!("parsed into {other:?}"),
        }
    }

    #[test]
    fn create_collects_repeated_headers() -> Result<(), clap::Error> {
        let cmd = parse(&[
            "create",
            "a.example",
            "http://up:8080",
            "--request-header",
            "X-A=1",
            "--request-header",
            "X-B=2",
            "--https",
            "--connect-timeout-ms",
            "500",
        ])?;
        let ProxyCommand::Create(args) = cmd else {
            panic!("not create: {cmd:?}")
        };
        assert_eq!(args.request_headers.len(), 2);
        assert!(args.https && !args.disabled);
        assert_eq!(args.connect_timeout_ms, Some(500));
        Ok(())
    }

    #[test]
    fn bad_header_is_a_usage_error() {
        let err = parse(&["create", "a", "http://u", "--request-header", "nope"]).err();
        assert_eq!(
            err.map(|e| e.kind()),
            Some(clap::error::ErrorKind::ValueValidation)
        );
    }

    #[test]
    fn update_takes_explicit_booleans() -> Result<(), clap::Error> {
        let cmd = parse(&["update", "a", "--enabled", "false", "--http", "true"])?;
        let ProxyCommand::Update(args) = cmd else {
            panic!("not update: {cmd:?}")
        };
        assert_eq!(
            (args.enabled, args.http, args.https),
            (Some(false), Some(true), None)
        );
        assert!(parse(&["update", "a", "--enabled", "maybe"]).is_err());
        assert!(parse(&["update", "a", "--enabled"]).is_err());
        Ok(())
    }

    #[test]
    fn auth_enable_requires_host_and_mode() -> Result<(), clap::Error> {
        let cmd = parse(&[
            "auth",
            "enable",
            "api.example",
            "--auth-host",
            "auth.example",
            "--mode",
            "forward",
            "--scope",
            "a",
            "--scope",
            "b",
            "--public-path",
            "/health",
        ])?;
        let ProxyCommand::Auth(ProxyAuthCommand::Enable(args)) = cmd else {
            panic!("not auth enable: {cmd:?}")
        };
        assert_eq!(args.mode, AuthModeArg::Forward);
        assert_eq!(args.scopes, ["a", "b"]);
        assert_eq!(args.public_paths, ["/health"]);
        assert!(parse(&["auth", "enable", "h", "--mode", "forward"]).is_err());
        assert!(parse(&["auth", "enable", "h", "--auth-host", "a"]).is_err());
        assert!(parse(&["auth", "enable", "h", "--auth-host", "a", "--mode", "open"]).is_err());
        Ok(())
    }

    #[test]
    fn update_needs_a_change_and_clear_conflicts_with_replace() {
        assert!(parse(&["update", "a"]).is_err());
        assert!(parse(&["update", "a", "--clear-request-headers"]).is_ok());
        assert!(
            parse(&[
                "update",
                "a",
                "--clear-request-headers",
                "--request-header",
                "X=1"
            ])
            .is_err()
        );
    }
}
