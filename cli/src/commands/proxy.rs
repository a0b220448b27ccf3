//! `proxy ...`: builds `ProxyInput` / `ProxyPatch` from flags and prints the result.

use portcullis_proto::v1::{
    ByName, Empty, HeaderMap, ProxyAuthInput, ProxyAuthPolicy, ProxyInput, ProxyPatch,
};

use super::{Ctx, ReplyExt};
use crate::args::{
    HeaderPair, ProxyAuthCommand, ProxyAuthEnableArgs, ProxyCommand, ProxyCreateArgs,
    ProxyUpdateArgs, headers_to_map,
};
use crate::error::CliError;
use crate::output::json::{EmptyJson, Items, ProxyAuthJson, ProxyJson};
use crate::output::views;

/// Runs one `proxy` subcommand.
pub(crate) async fn run(ctx: &mut Ctx, cmd: ProxyCommand) -> Result<(), CliError> {
    let proxy = match cmd {
        ProxyCommand::Create(args) => {
            let input = create_input(args)?;
            ctx.client.create_proxy(input).await.reply(&ctx.call)?
        }
        ProxyCommand::Update(args) => {
            let patch = update_patch(args)?;
            ctx.client.update_proxy(patch).await.reply(&ctx.call)?
        }
        ProxyCommand::CertAttach { hostname, cert } => {
            let patch = ProxyPatch {
                hostname,
                certificate_name: Some(cert),
                ..Default::default()
            };
            ctx.client.update_proxy(patch).await.reply(&ctx.call)?
        }
        ProxyCommand::Show { hostname } => {
            let req = ByName {
                name: hostname,
                ..Default::default()
            };
            ctx.client.get_proxy(req).await.reply(&ctx.call)?
        }
        ProxyCommand::List => {
            let list = ctx.client.list_proxies(Empty {}).await.reply(&ctx.call)?;
            return ctx
                .out
                .emit(&Items::<ProxyJson>::from_wire(&list.items), || {
                    views::proxies(&list.items)
                });
        }
        ProxyCommand::Auth(cmd) => return auth(ctx, cmd).await,
        ProxyCommand::Resource(cmd) => return super::proxy_resource::run(ctx, cmd).await,
        ProxyCommand::Delete { hostname } => {
            let req = ByName {
                name: hostname.clone(),
                ..Default::default()
            };
            ctx.client.delete_proxy(req).await.reply(&ctx.call)?;
            return ctx
                .out
                .emit(&EmptyJson {}, || format!("deleted proxy {hostname}"));
        }
    };
    ctx.out
        .emit(&ProxyJson::from(&proxy), || views::proxy(&proxy))
}

/// Runs one `proxy auth` subcommand.
async fn auth(ctx: &mut Ctx, cmd: ProxyAuthCommand) -> Result<(), CliError> {
    let (hostname, policy) = match cmd {
        ProxyAuthCommand::Enable(args) => {
            let input = auth_input(*args);
            let hostname = input.hostname.clone();
            let policy = ctx.client.set_proxy_auth(input).await.reply(&ctx.call)?;
            (hostname, policy)
        }
        ProxyAuthCommand::Show { hostname } => {
            let req = ByName {
                name: hostname.clone(),
                ..Default::default()
            };
            let policy = ctx.client.get_proxy_auth(req).await.reply(&ctx.call)?;
            (hostname, policy)
        }
        ProxyAuthCommand::Disable { hostname } => {
            let req = ByName {
                name: hostname.clone(),
                ..Default::default()
            };
            ctx.client.clear_proxy_auth(req).await.reply(&ctx.call)?;
            return ctx.out.emit(&EmptyJson {}, || {
                format!("proxy {hostname} is no longer protected by edge auth")
            });
        }
    };
    show_auth(ctx, &hostname, &policy)
}

fn show_auth(ctx: &Ctx, hostname: &str, policy: &ProxyAuthPolicy) -> Result<(), CliError> {
    ctx.out.emit(&ProxyAuthJson::from(policy), || {
        views::proxy_auth(hostname, policy)
    })
}

/// `proxy auth enable` flags → `ProxyAuthInput`; validation is the control plane's.
pub(crate) fn auth_input(args: ProxyAuthEnableArgs) -> ProxyAuthInput {
    ProxyAuthInput {
        hostname: args.hostname,
        mode: args.mode.as_str().to_owned(),
        auth_host: args.auth_host,
        required_scopes: args.scopes,
        public_paths: args.public_paths,
        scopes_supported: args.scopes_supported,
        resource_documentation: args.resource_doc.unwrap_or_default(),
        allowed_users: args.allow_users,
        allowed_orgs: args.allow_orgs,
        allowed_teams: args.allow_teams,
        allowed_email_domains: args.allow_email_domains,
        allowed_groups: args.allow_groups,
        forward_token: args.forward_token,
        identity_headers: args
            .identity_headers
            .into_iter()
            .map(|h| (h.key, h.name))
            .collect(),
    }
}

/// `proxy create` flags → `ProxyInput`. Boolean flags are sent only when given so
/// that the control plane's defaults apply otherwise.
pub(crate) fn create_input(args: ProxyCreateArgs) -> Result<ProxyInput, CliError> {
    Ok(ProxyInput {
        custom_request_headers: headers_to_map("--request-header", &args.request_headers)?,
        custom_response_headers: headers_to_map("--response-header", &args.response_headers)?,
        hostname: args.hostname,
        target_url: args.target_url,
        enabled: args.disabled.then_some(false),
        enable_http: args.no_http.then_some(false),
        enable_https: args.https.then_some(true),
        preserve_host_header: args.preserve_host.then_some(true),
        connect_timeout_ms: args.connect_timeout_ms,
        read_timeout_ms: args.read_timeout_ms,
        redirect_http_to_https: args.redirect_https.then_some(true),
        hsts_max_age_secs: args.hsts_max_age,
        certificate_name: args.cert,
        idle_timeout_ms: args.idle_timeout_ms,
        rate_limit_rps: args.rate_limit,
        rate_limit_burst: args.rate_burst,
        rate_limit_key: args.rate_limit_key.map(|k| k.as_str().to_owned()),
        max_concurrent_requests: args.max_concurrent_requests,
        max_request_body_bytes: args.max_request_body_bytes,
        upstream_proxy_protocol: args.upstream_proxy_protocol.map(|v| v.as_str().to_owned()),
        ip_allowlist: args.ip_allow,
        log_query: args.log_query,
    })
}

/// `proxy update` flags → `ProxyPatch`. Header maps are replaced wholesale when any
/// header flag is given, emptied by `--clear-*`, and left alone otherwise.
pub(crate) fn update_patch(args: ProxyUpdateArgs) -> Result<ProxyPatch, CliError> {
    Ok(ProxyPatch {
        custom_request_headers: header_patch(
            "--request-header",
            &args.request_headers,
            args.clear_request_headers,
        )?,
        custom_response_headers: header_patch(
            "--response-header",
            &args.response_headers,
            args.clear_response_headers,
        )?,
        hostname: args.hostname,
        target_url: args.target,
        enabled: args.enabled,
        enable_http: args.http,
        enable_https: args.https,
        preserve_host_header: args.preserve_host,
        connect_timeout_ms: args.connect_timeout_ms,
        read_timeout_ms: args.read_timeout_ms,
        redirect_http_to_https: args.redirect_https,
        hsts_max_age_secs: args.hsts_max_age,
        certificate_name: args.cert,
        idle_timeout_ms: args.idle_timeout_ms,
        rate_limit_rps: args.rate_limit,
        rate_limit_burst: args.rate_burst,
        rate_limit_key: args.rate_limit_key.map(|k| k.as_str().to_owned()),
        max_concurrent_requests: args.max_concurrent_requests,
        max_request_body_bytes: args.max_request_body_bytes,
        upstream_proxy_protocol: args.upstream_proxy_protocol.map(|v| v.as_str().to_owned()),
        ip_allowlist: args.ip_allow,
        log_query: args.log_query,
    })
}

fn header_patch(
    flag: &str,
    pairs: &[HeaderPair],
    clear: bool,
) -> Result<Option<HeaderMap>, CliError> {
    if pairs.is_empty() && !clear {
        return Ok(None);
    }
    Ok(Some(HeaderMap {
        entries: headers_to_map(flag, pairs)?,
    }))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

    fn parse(args: &[&str]) -> ProxyCommand {
        let argv = ["portcullis", "proxy"].iter().chain(args);
        match Cli::try_parse_from(argv).map(|c| c.command) {
            Ok(Command::Proxy(cmd)) => cmd,
            other => panic!("unexpected parse: {other:?}"),
        }
    }

    #[test]
    fn create_sends_only_given_booleans() -> Result<(), CliError> {
        let ProxyCommand::Create(args) = parse(&["create", "a.example", "http://up"]) else {
            panic!("not create")
        };
        let input = create_input(args)?;
        assert_eq!(input.hostname, "a.example");
        assert_eq!(input.target_url, "http://up");
        assert_eq!(
            (
                input.enabled,
                input.enable_http,
                input.enable_https,
                input.preserve_host_header
            ),
            (None, None, None, None)
        );
        assert!(input.custom_request_headers.is_empty());
        assert_eq!(input.connect_timeout_ms, None);
        Ok(())
    }

    #[test]
    fn create_flags_map_to_fields() -> Result<(), CliError> {
        let ProxyCommand::Create(args) = parse(&[
            "create",
            "a",
            "http://up",
            "--disabled",
            "--no-http",
            "--https",
            "--preserve-host",
            "--response-header",
            "X-Frame-Options=DENY",
            "--read-timeout-ms",
            "2500",
            "--idle-timeout-ms",
            "600000",
            "--max-request-body-bytes",
            "1048576",
        ]) else {
            panic!("not create")
        };
        let input = create_input(args)?;
        assert_eq!(
            (
                input.enabled,
                input.enable_http,
                input.enable_https,
                input.preserve_host_header
            ),
            (Some(false), Some(false), Some(true), Some(true))
        );
        assert_eq!(
            input
                .custom_response_headers
                .get("X-Frame-Options")
                .map(String::as_str),
            Some("DENY")
        );
        assert_eq!(input.read_timeout_ms, Some(2500));
        assert_eq!(input.idle_timeout_ms, Some(600_000));
        assert_eq!(input.max_request_body_bytes, Some(1 << 20));
        Ok(())
    }

    #[test]
    fn create_rejects_duplicate_headers() {
        let ProxyCommand::Create(args) = parse(&[
            "create",
            "a",
            "http://up",
            "--request-header",
            "X=1",
            "--request-header",
            "x=2",
        ]) else {
            panic!("not create")
        };
        assert!(matches!(create_input(args), Err(CliError::Usage(_))));
    }

    #[test]
    fn update_leaves_unset_fields_unset() -> Result<(), CliError> {
        let ProxyCommand::Update(args) = parse(&["update", "a", "--target", "http://new"]) else {
            panic!("not update")
        };
        let patch = update_patch(args)?;
        assert_eq!(patch.target_url.as_deref(), Some("http://new"));
        assert_eq!((patch.enabled, patch.enable_http), (None, None));
        assert!(patch.custom_request_headers.is_none());
        assert!(patch.custom_response_headers.is_none());
        Ok(())
    }

    #[test]
    fn update_replaces_or_clears_header_maps() -> Result<(), CliError> {
        let ProxyCommand::Update(args) = parse(&[
            "update",
            "a",
            "--request-header",
            "X-A=1",
            "--clear-response-headers",
            "--enabled",
            "false",
        ]) else {
            panic!("not update")
        };
        let patch = update_patch(args)?;
        let req = patch
            .custom_request_headers
            .map(|m| m.entries)
            .unwrap_or_default();
        assert_eq!(req.get("X-A").map(String::as_str), Some("1"));
        assert_eq!(
            patch.custom_response_headers.map(|m| m.entries.len()),
            Some(0)
        );
        assert_eq!(patch.enabled, Some(false));
        Ok(())
    }

    #[test]
    fn limit_flags_map_to_fields() -> Result<(), CliError> {
        let ProxyCommand::Create(args) = parse(&[
            "create",
            "a",
            "http://up",
            "--rate-limit",
            "50",
            "--rate-burst",
            "100",
            "--rate-limit-key",
            "client",
            "--max-concurrent-requests",
            "8",
        ]) else {
            panic!("not create")
        };
        let input = create_input(args)?;
        assert_eq!(
            (
                input.rate_limit_rps,
                input.rate_limit_burst,
                input.rate_limit_key.as_deref(),
                input.max_concurrent_requests
            ),
            (Some(50), Some(100), Some("client"), Some(8))
        );
        // Each limit flag alone is a change worth sending.
        let ProxyCommand::Update(args) = parse(&["update", "a", "--max-concurrent-requests", "0"])
        else {
            panic!("not update")
        };
        let patch = update_patch(args)?;
        assert_eq!(patch.max_concurrent_requests, Some(0));
        assert_eq!((patch.rate_limit_rps, patch.rate_limit_key), (None, None));
        let ProxyCommand::Update(args) = parse(&["update", "a", "--rate-limit", "0"]) else {
            panic!("not update")
        };
        assert_eq!(update_patch(args)?.rate_limit_rps, Some(0));
        let argv = [
            "portcullis",
            "proxy",
            "update",
            "a",
            "--rate-limit-key",
            "cookie",
        ];
        assert!(Cli::try_parse_from(argv).is_err());
        Ok(())
    }
}
