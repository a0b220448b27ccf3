//! Command-line flags. Every flag can also come from a `PORTCULLIS_*` environment
//! variable. The token never needs to be on the command line (visible in `ps`): give
//! `--enrolment-token-file` or `PORTCULLIS_ENROLMENT_TOKEN` instead.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::Parser;

use crate::access_log::Sinks;
use crate::peer::Cidrs;
use crate::server::{ProxyProtocol, ProxyProtocolMode};
pub use crate::trace::OtlpProtocol;

/// Portcullis data plane: serves HTTP traffic for the proxies and routes pushed by the
/// control plane, and keeps serving the last good configuration when it is away.
#[derive(Debug, Parser)]
#[command(name = "portcullis-data-plane", version, about, long_about = None)]
pub struct Args {
    /// gRPC URL of the control plane, e.g. `http://cp:50051` or `https://cp.internal:50051`.
    /// Repeat the flag (or give a comma-separated list) for several control planes sharing
    /// one Redis: the data plane streams from the first that answers and moves to the next
    /// when its control plane goes away, serving the last snapshot meanwhile. A name that
    /// resolves to several addresses is resolved on every connect and tried address by
    /// address.
    #[arg(
        long,
        env = "PORTCULLIS_CONTROL_PLANE",
        value_name = "GRPC_URL",
        value_delimiter = ',',
        required = true
    )]
    pub control_plane: Vec<String>,

    /// Data-plane enrolment token, sent as `authorization: Bearer <token>`; it also seals
    /// the snapshot cache. Prefer the environment variable or `--enrolment-token-file`:
    /// command lines are visible to other users.
    #[arg(
        long,
        env = "PORTCULLIS_ENROLMENT_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        required_unless_present = "enrolment_token_file"
    )]
    pub enrolment_token: Option<Secret>,

    /// File holding the enrolment token (one trailing newline is ignored).
    #[arg(
        long,
        env = "PORTCULLIS_ENROLMENT_TOKEN_FILE",
        value_name = "PATH",
        conflicts_with = "enrolment_token",
        value_parser = Secret::from_file
    )]
    pub enrolment_token_file: Option<Secret>,

    /// Name of this data plane as shown by the control plane.
    #[arg(long, env = "PORTCULLIS_NODE_ID", value_name = "ID")]
    pub node_id: String,

    /// Address for proxied HTTP traffic (HTTP/1.1 and h2c), e.g. 0.0.0.0:8080.
    #[arg(long, env = "PORTCULLIS_HTTP_LISTEN", value_name = "ADDR")]
    pub http_listen: SocketAddr,

    /// Address for proxied HTTPS traffic (TLS 1.2/1.3, ALPN h2 and http/1.1, plus
    /// acme-tls/1 for ACME TLS-ALPN-01), e.g. 0.0.0.0:443. Certificates come from the
    /// control plane's snapshots. Without it there is no HTTPS listener.
    #[arg(long, env = "PORTCULLIS_HTTPS_LISTEN", value_name = "ADDR")]
    pub https_listen: Option<SocketAddr>,

    /// Port clients use for HTTPS, written into HTTP→HTTPS redirects and `redirect`-mode
    /// login callbacks when it is not 443, and reported to the control plane, which
    /// accepts those callbacks on exactly the reported ports. Set it when the listener's
    /// port is published under another one (e.g. a container listening on 8443 published
    /// as 443). Default: the `--https-listen` port, or 443.
    #[arg(long, env = "PORTCULLIS_HTTPS_PUBLIC_PORT", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub https_public_port: Option<u16>,

    /// Port clients use for plain HTTP, written into `redirect`-mode login callbacks when
    /// it is not 80 and reported to the control plane (see `--https-public-port`). Set it
    /// when a load balancer or container runtime publishes the listener under another
    /// port. Default: the `--http-listen` port.
    #[arg(long, env = "PORTCULLIS_HTTP_PUBLIC_PORT", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub http_public_port: Option<u16>,

    /// Address for /healthz, /readyz and Prometheus /metrics (no authentication: keep it
    /// on loopback or an internal network), e.g. 127.0.0.1:9901.
    #[arg(long, env = "PORTCULLIS_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: SocketAddr,

    /// Directory for the last applied snapshot (created 0700; the file is 0600), so a
    /// restart serves traffic before the control plane answers.
    #[arg(long, env = "PORTCULLIS_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: PathBuf,

    /// Serving threads, each with its own listening sockets (`SO_REUSEPORT`) and its own
    /// connections, like nginx's `worker_processes`. Default: the CPUs this process may
    /// run on.
    #[arg(long, env = "PORTCULLIS_WORKERS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,

    /// Largest request head accepted, in bytes: the HTTP/1.1 request line and headers, or
    /// the HTTP/2 header list. A larger one is answered 431 Request Header Fields Too
    /// Large and never forwarded. One limit for every proxy: the head is read before its
    /// Host is known.
    #[arg(
        long,
        env = "PORTCULLIS_MAX_REQUEST_HEADER_BYTES",
        value_name = "BYTES",
        default_value_t = crate::server::DEFAULT_MAX_REQUEST_HEADER_BYTES,
        value_parser = clap::value_parser!(u32).range(MIN_REQUEST_HEADER_BYTES..=MAX_REQUEST_HEADER_BYTES)
    )]
    pub max_request_header_bytes: u32,

    /// Serve HTTP/1.1 keep-alive requests (plain and TLS) without hyper: heads are parsed and
    /// forwarded as bytes; every other request takes the usual path (see README, "HTTP/1.1
    /// fast path"). On by default; `--h1-fast-path false` (or
    /// `PORTCULLIS_H1_FAST_PATH=false`) serves every request through hyper.
    #[arg(
        long,
        env = "PORTCULLIS_H1_FAST_PATH",
        value_name = "BOOL",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub h1_fast_path: bool,

    /// PEM file with the CA that signed an `https://` control plane's certificate. Without
    /// it the system trust store is used.
    #[arg(long, env = "PORTCULLIS_CA_CERT", value_name = "PEM_FILE")]
    pub ca_cert: Option<PathBuf>,

    /// PEM client certificate presented to an `https://` control plane that requires one
    /// (`--grpc-client-ca` there; `tls bootstrap` writes `dataplane.pem`).
    #[arg(
        long,
        env = "PORTCULLIS_CLIENT_CERT",
        value_name = "PEM_FILE",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,

    /// PEM private key of `--client-cert`.
    #[arg(
        long,
        env = "PORTCULLIS_CLIENT_KEY",
        value_name = "PEM_FILE",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,

    /// Most connections one client address may hold open (HTTP and HTTPS together); further
    /// connections are closed at accept. 0 = no limit. Behind a load balancer that does not
    /// send the PROXY protocol, every connection has its address: raise this or set 0.
    #[arg(
        long,
        env = "PORTCULLIS_MAX_CONNECTIONS_PER_CLIENT",
        value_name = "N",
        default_value_t = 4096
    )]
    pub max_connections_per_client: u32,

    /// Most connections open at once to one upstream origin (scheme, host and port), over
    /// every proxy and worker; a request that would need another gets 503. 0 = no limit.
    /// The default is Envoy's default circuit breaker.
    #[arg(
        long,
        env = "PORTCULLIS_MAX_UPSTREAM_CONNECTIONS",
        value_name = "N",
        default_value_t = 1024
    )]
    pub max_upstream_connections: u32,

    /// Where access-log records go (one per request, written when its response ends):
    /// `off`, `stdout` (JSON lines) or `control-plane` (shipped over the authenticated
    /// gRPC channel), or `stdout,control-plane`. Default: `control-plane` (a data plane
    /// always has `--control-plane`). Records never hold Authorization, cookies, tokens
    /// or codes; the query string is not recorded.
    #[arg(
        long,
        env = "PORTCULLIS_ACCESS_LOG",
        value_name = "SINKS",
        default_value = "control-plane",
        value_parser = Sinks::parse
    )]
    pub access_log: Sinks,

    /// PROXY protocol on both listeners unless overridden: `off`, `v1`, `v2` or `any`. From
    /// the `--proxy-protocol-from` load balancers the header is then required (a connection
    /// without one is closed), and its source address is the client; from anyone else a
    /// PROXY header closes the connection. Read before TLS on HTTPS.
    #[arg(
        long,
        env = "PORTCULLIS_PROXY_PROTOCOL",
        value_name = "MODE",
        default_value = "off"
    )]
    pub proxy_protocol: ProxyProtocolMode,

    /// PROXY protocol on the plain-HTTP listener (default: `--proxy-protocol`).
    #[arg(long, env = "PORTCULLIS_HTTP_PROXY_PROTOCOL", value_name = "MODE")]
    pub http_proxy_protocol: Option<ProxyProtocolMode>,

    /// PROXY protocol on the HTTPS listener (default: `--proxy-protocol`).
    #[arg(long, env = "PORTCULLIS_HTTPS_PROXY_PROTOCOL", value_name = "MODE")]
    pub https_proxy_protocol: Option<ProxyProtocolMode>,

    /// The load balancers that send the PROXY protocol, `CIDR[,CIDR…]` (e.g.
    /// `10.0.0.0/8,192.0.2.7`). Required with a PROXY protocol mode.
    #[arg(
        long,
        env = "PORTCULLIS_PROXY_PROTOCOL_FROM",
        value_name = "CIDRS",
        default_value = ""
    )]
    pub proxy_protocol_from: Cidrs,

    /// Forwarders whose `X-Forwarded-For` is believed, `CIDR[,CIDR…]`: when the client
    /// address (the peer, or the PROXY header's source) is one of them, the rightmost
    /// address in `X-Forwarded-For` that is not is taken as the client. Default: none (the
    /// header is always replaced).
    #[arg(
        long,
        env = "PORTCULLIS_TRUSTED_FORWARDERS",
        value_name = "CIDRS",
        default_value = ""
    )]
    pub trusted_forwarders: Cidrs,

    /// Format of this process's own log lines on stderr: `text` (human-readable) or
    /// `json` (one JSON object per line).
    #[arg(long, env = "PORTCULLIS_LOG_FORMAT", value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// OpenTelemetry collector to send request spans to, e.g. `http://127.0.0.1:4317`
    /// (gRPC) or `http://127.0.0.1:4318` (with `--otlp-protocol http`). Without it no
    /// spans are made and `traceparent` passes through untouched.
    #[arg(long, env = "PORTCULLIS_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// OTLP transport: `grpc` (OTLP/gRPC) or `http` (OTLP/HTTP with protobuf bodies,
    /// POSTed to `<URL>/v1/traces`).
    #[arg(long, env = "PORTCULLIS_OTLP_PROTOCOL", value_name = "PROTOCOL", value_enum, default_value_t = OtlpProtocol::Grpc)]
    pub otlp_protocol: OtlpProtocol,

    /// Share of new traces sampled, from 0.0 to 1.0. A client's `traceparent` decides for
    /// its own trace (parent-based sampling).
    #[arg(long, env = "PORTCULLIS_TRACE_SAMPLE_RATIO", value_name = "RATIO", default_value = "1.0", allow_negative_numbers = true, value_parser = crate::trace::parse_sample_ratio)]
    pub trace_sample_ratio: f64,
}

// === impl Args (PROXY protocol) ===

impl Args {
    /// The PROXY protocol receiving configuration the flags describe.
    pub fn proxy_protocol(&self) -> ProxyProtocol {
        ProxyProtocol {
            http: self.http_proxy_protocol.unwrap_or(self.proxy_protocol),
            https: self.https_proxy_protocol.unwrap_or(self.proxy_protocol),
            from: self.proxy_protocol_from.clone(),
        }
    }
}

/// Format of the process's own logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`).
    Json,
}

/// Smallest `--max-request-header-bytes`: below this ordinary browser requests fail.
const MIN_REQUEST_HEADER_BYTES: i64 = 1024;
/// Largest `--max-request-header-bytes`: hyper's HTTP/1.1 read buffer stops at ~400 KiB,
/// so a larger flag would not be what applies.
const MAX_REQUEST_HEADER_BYTES: i64 = 256 * 1024;

// === impl Args ===

impl Args {
    /// The enrolment token, from whichever of its flags was given (clap requires exactly
    /// one).
    pub fn enrolment_token(&self) -> Option<&Secret> {
        self.enrolment_token
            .as_ref()
            .or(self.enrolment_token_file.as_ref())
    }
}

/// A credential that never appears in `Debug` output or logs.
#[derive(Clone)]
pub struct Secret(String);

// === impl Secret ===

impl Secret {
    /// The secret itself; call only where it is sent.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads a secret from a file, as `--…-file` flags do. The error names the file, never
    /// its contents.
    pub(crate) fn from_file(path: &str) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        text.parse()
            .map_err(|e| format!("{path}: the secret in it {e}"))
    }
}

impl FromStr for Secret {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err("must not be empty");
        }
        Ok(Self(s.to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The seed's `.env` names that mean the same as a flag here: `HTTP_PORT` and `HTTPS_PORT`
/// become the defaults of `--http-listen` / `--https-listen` on every interface (the seed's
/// container listened there), so the flags and `PORTCULLIS_*` still win and the value goes
/// through the flag's parser (a bad port is refused, not repaired).
pub fn parse() -> Args {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let command = seed_defaults(Args::command(), |k| std::env::var(k).ok());
    match Args::from_arg_matches(&command.get_matches()) {
        Ok(args) => args,
        Err(e) => e.exit(),
    }
}

fn seed_defaults(
    mut command: clap::Command,
    env: impl Fn(&str) -> Option<String>,
) -> clap::Command {
    for (seed, arg) in [("HTTP_PORT", "http_listen"), ("HTTPS_PORT", "https_listen")] {
        if let Some(port) = env(seed).filter(|v| !v.is_empty()) {
            // Parsed once per process; clap's defaults are `'static`, so this is leaked.
            let addr: &'static str = Box::leak(format!("0.0.0.0:{port}").into_boxed_str());
            command = command.mut_arg(arg, |a| a.default_value(addr).required(false));
        }
    }
    command
}

/// The log filter: `PORTCULLIS_LOG` (an `EnvFilter` directive), else the seed's `LOG_LEVEL`
/// (`DEBUG`, `INFO`, `WARNING`, `ERROR`, `CRITICAL`, any case), else `info`; an unknown
/// `LOG_LEVEL` is an error. (The control plane's `seed_env::log_filter` does the same.)
pub fn log_filter(env: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    if let Some(directive) = env("PORTCULLIS_LOG").filter(|v| !v.is_empty()) {
        return Ok(directive);
    }
    let Some(level) = env("LOG_LEVEL").filter(|v| !v.is_empty()) else {
        return Ok("info".into());
    };
    Ok(match level.to_ascii_uppercase().as_str() {
        "TRACE" => "trace",
        "DEBUG" => "debug",
        "INFO" => "info",
        "WARN" | "WARNING" => "warn",
        "ERROR" | "CRITICAL" => "error",
        _ => {
            return Err(format!(
                "LOG_LEVEL={level:?} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
            ));
        }
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The required flags but the token, then `extra`.
    fn parse(extra: &[&str]) -> Result<Args, clap::Error> {
        let required = [
            "portcullis-data-plane",
            "--control-plane",
            "http://127.0.0.1:50051",
            "--node-id",
            "dp-1",
            "--http-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--cache-dir",
            "/tmp/x",
        ];
        Args::try_parse_from(required.iter().chain(extra))
    }

    #[test]
    fn parses_flags_and_redacts_token() {
        let args = match parse(&["--enrolment-token", "s3cret"]) {
            Ok(args) => args,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(args.enrolment_token().map(Secret::expose), Some("s3cret"));
        assert!(!format!("{args:?}").contains("s3cret"));
        assert!(args.ca_cert.is_none());
        assert_eq!(args.control_plane, ["http://127.0.0.1:50051"]);
        assert!(args.https_listen.is_none() && args.https_public_port.is_none());
        assert_eq!(args.max_request_header_bytes, 64 * 1024);
        assert!(args.http_public_port.is_none());
        assert_eq!(args.log_format, LogFormat::Text);
        assert!(args.otlp_endpoint.is_none());
        assert_eq!(args.otlp_protocol, OtlpProtocol::Grpc);
        assert!((args.trace_sample_ratio - 1.0).abs() < f64::EPSILON);
        assert_eq!(
            args.access_log,
            Sinks {
                stdout: false,
                control_plane: true
            }
        );
    }

    #[test]
    fn several_control_planes_repeated_or_comma_separated() {
        let args = parse(&[
            "--enrolment-token",
            "t",
            "--control-plane",
            "http://b:1,http://c:2",
            "--control-plane",
            "http://d:3",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            args.control_plane,
            [
                "http://127.0.0.1:50051",
                "http://b:1",
                "http://c:2",
                "http://d:3"
            ]
        );
    }

    #[test]
    fn trace_flags_are_checked() {
        let ok = parse(&[
            "--enrolment-token",
            "t",
            "--otlp-endpoint",
            "http://127.0.0.1:4318",
            "--otlp-protocol",
            "http",
            "--trace-sample-ratio",
            "0.5",
            "--log-format",
            "json",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok.otlp_protocol, OtlpProtocol::Http);
        assert_eq!(ok.log_format, LogFormat::Json);
        assert!((ok.trace_sample_ratio - 0.5).abs() < f64::EPSILON);
        for bad in [
            ["--trace-sample-ratio", "1.5"],
            ["--trace-sample-ratio", "-1"],
            ["--otlp-protocol", "udp"],
            ["--log-format", "xml"],
        ] {
            let error = parse(&["--enrolment-token", "t", bad[0], bad[1]])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.contains(bad[0]), "{bad:?}: {error}");
        }
    }

    #[test]
    fn access_log_sinks_combine_and_refuse_unknown_ones() {
        let args = parse(&[
            "--enrolment-token",
            "t",
            "--access-log",
            "stdout,control-plane",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(args.access_log.stdout && args.access_log.control_plane);
        let off = parse(&["--enrolment-token", "t", "--access-log", "off"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(off.access_log.is_off());
        let bad = parse(&["--enrolment-token", "t", "--access-log", "file"]);
        assert!(bad.is_err_and(|e| e.to_string().contains("\"file\"")));
    }

    #[test]
    fn public_ports_are_tcp_ports() {
        let with_token = |extra: &[&str]| {
            let mut argv = vec!["--enrolment-token", "t"];
            argv.extend_from_slice(extra);
            parse(&argv)
        };
        let args = with_token(&["--http-public-port", "80", "--https-public-port", "443"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (args.http_public_port, args.https_public_port),
            (Some(80), Some(443))
        );
        for bad in [
            ["--http-public-port", "0"],
            ["--https-public-port", "65536"],
        ] {
            assert!(with_token(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_token_comes_from_exactly_one_of_its_flags() -> std::io::Result<()> {
        let file = tempfile::NamedTempFile::new()?;
        std::fs::write(file.path(), "from-file\n")?;
        let path = file.path().to_str().unwrap_or_default();
        let args = parse(&["--enrolment-token-file", path]).map_err(std::io::Error::other)?;
        assert_eq!(
            args.enrolment_token().map(Secret::expose),
            Some("from-file")
        );
        let both = parse(&["--enrolment-token-file", path, "--enrolment-token", "t"]);
        assert!(both.is_err_and(|e| e.kind() == clap::error::ErrorKind::ArgumentConflict));
        assert!(parse(&[]).is_err(), "a token is required");
        assert!(parse(&["--enrolment-token-file", "/nonexistent"]).is_err());
        std::fs::write(file.path(), "\n")?;
        assert!(parse(&["--enrolment-token-file", path]).is_err(), "empty");
        Ok(())
    }

    #[test]
    fn proxy_protocol_flags() {
        let args = parse(&[
            "--enrolment-token",
            "t",
            "--proxy-protocol",
            "v2",
            "--http-proxy-protocol",
            "any",
            "--proxy-protocol-from",
            "127.0.0.1/32, 10.0.0.0/8",
            "--trusted-forwarders",
            "192.0.2.0/24",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let config = args.proxy_protocol();
        assert_eq!(
            (config.http, config.https),
            (ProxyProtocolMode::Any, ProxyProtocolMode::V2)
        );
        assert!(config.from.contains([10, 1, 1, 1].into()));
        assert!(args.trusted_forwarders.contains([192, 0, 2, 9].into()));
        let off = parse(&["--enrolment-token", "t"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(off.proxy_protocol(), ProxyProtocol::default());
        assert!(off.trusted_forwarders.is_empty());
        for bad in [
            ["--proxy-protocol", "v3"],
            ["--proxy-protocol-from", "10.0.0.0/40"],
            ["--trusted-forwarders", "example.com"],
        ] {
            let error = parse(&["--enrolment-token", "t", bad[0], bad[1]])
                .err()
                .unwrap_or_else(|| panic!("{bad:?}"));
            assert!(error.to_string().contains(bad[0]), "{error}");
        }
    }

    #[test]
    fn the_h1_fast_path_is_on_unless_turned_off() {
        let on = |extra: &[&str]| {
            let mut args = vec!["--enrolment-token", "t"];
            args.extend_from_slice(extra);
            parse(&args)
                .unwrap_or_else(|e| panic!("{extra:?}: {e}"))
                .h1_fast_path
        };
        assert!(on(&[]));
        assert!(on(&["--h1-fast-path"]));
        assert!(on(&["--h1-fast-path", "true"]));
        assert!(!on(&["--h1-fast-path", "false"]));
        assert!(!on(&["--h1-fast-path=false"]));
        assert!(parse(&["--enrolment-token", "t", "--h1-fast-path", "no"]).is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }

    #[test]
    fn seed_ports_are_listen_defaults_that_flags_override() {
        use clap::{CommandFactory as _, FromArgMatches as _};
        let env = |k: &str| match k {
            "HTTP_PORT" => Some("80".to_owned()),
            "HTTPS_PORT" => Some("443".to_owned()),
            _ => None,
        };
        let base = [
            "dp",
            "--control-plane",
            "http://127.0.0.1:1",
            "--enrolment-token",
            "t",
            "--node-id",
            "n",
            "--admin-listen",
            "127.0.0.1:0",
            "--cache-dir",
            "/tmp/x",
        ];
        let parse = |extra: &[&str]| {
            let m = seed_defaults(Args::command(), env)
                .try_get_matches_from(base.iter().chain(extra))
                .unwrap();
            Args::from_arg_matches(&m).unwrap()
        };
        let args = parse(&[]);
        assert_eq!(args.http_listen.to_string(), "0.0.0.0:80");
        assert_eq!(
            args.https_listen.map(|a| a.to_string()).as_deref(),
            Some("0.0.0.0:443")
        );
        let args = parse(&["--http-listen", "127.0.0.1:8080"]);
        assert_eq!(args.http_listen.to_string(), "127.0.0.1:8080");
        // A bad seed port is refused by the flag's parser.
        let bad = seed_defaults(Args::command(), |k| {
            (k == "HTTP_PORT").then(|| "eighty".to_owned())
        })
        .try_get_matches_from(base);
        assert!(bad.is_err());
    }

    #[test]
    fn log_level_maps_the_seed_names_and_refuses_others() {
        let only = |k: &'static str, v: &'static str| move |q: &str| (q == k).then(|| v.to_owned());
        assert_eq!(log_filter(only("LOG_LEVEL", "WARNING")).unwrap(), "warn");
        assert_eq!(
            log_filter(only("PORTCULLIS_LOG", "debug")).unwrap(),
            "debug"
        );
        assert_eq!(log_filter(|_| None).unwrap(), "info");
        assert!(log_filter(only("LOG_LEVEL", "LOUD")).is_err());
    }
}
