//! `route ...`: builds `RouteInput` from flags and prints the result.

use portcullis_proto::v1::{ByName, Empty, PathMatchKind, RouteInput, RouteTargetKind};

use super::{Ctx, ReplyExt};
use crate::args::{MatchArg, RouteCommand, RouteCreateArgs, TargetArg};
use crate::error::CliError;
use crate::output::json::{EmptyJson, Items, RouteJson};
use crate::output::views;

/// Runs one `route` subcommand.
pub(crate) async fn run(ctx: &mut Ctx, cmd: RouteCommand) -> Result<(), CliError> {
    let route = match cmd {
        RouteCommand::Create(args) => {
            let input = create_input(args)?;
            ctx.client.create_route(input).await.reply(&ctx.call)?
        }
        RouteCommand::Show { id } => {
            let req = ByName {
                name: id,
                ..Default::default()
            };
            ctx.client.get_route(req).await.reply(&ctx.call)?
        }
        RouteCommand::List => {
            let list = ctx.client.list_routes(Empty {}).await.reply(&ctx.call)?;
            return ctx
                .out
                .emit(&Items::<RouteJson>::from_wire(&list.items), || {
                    views::routes(&list.items)
                });
        }
        RouteCommand::Delete { id } => {
            let req = ByName {
                name: id.clone(),
                ..Default::default()
            };
            ctx.client.delete_route(req).await.reply(&ctx.call)?;
            return ctx
                .out
                .emit(&EmptyJson {}, || format!("deleted route {id}"));
        }
    };
    ctx.out
        .emit(&RouteJson::from(&route), || views::route(&route))
}

/// `route create` arguments → `RouteInput`. Methods are upper-cased (HTTP methods
/// are conventionally upper case and a lower-case `get` would never match).
pub(crate) fn create_input(args: RouteCreateArgs) -> Result<RouteInput, CliError> {
    let methods = args
        .methods
        .iter()
        .map(|m| normalize_method(m))
        .collect::<Result<Vec<_>, _>>()?;
    let proxy_hostnames = args
        .proxies
        .iter()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .collect();
    Ok(RouteInput {
        id: args.id.unwrap_or_default(),
        priority: args.priority,
        match_kind: match args.match_kind {
            MatchArg::Prefix => PathMatchKind::Prefix,
            MatchArg::Exact => PathMatchKind::Exact,
            MatchArg::Regex => PathMatchKind::Regex,
        } as i32,
        path_pattern: args.path,
        methods,
        target_kind: match args.target_kind {
            TargetArg::Url => RouteTargetKind::Url,
            TargetArg::Service => RouteTargetKind::Service,
            TargetArg::Proxy => RouteTargetKind::Proxy,
        } as i32,
        target_value: args.target_value,
        proxy_hostnames,
        enabled: args.disabled.then_some(false),
        description: args.description.unwrap_or_default(),
        public: args.public,
        required_scopes: args.scopes,
    })
}

/// Upper-cases a method and checks it is an HTTP token, so `--method "GET POST"` fails here.
fn normalize_method(m: &str) -> Result<String, CliError> {
    let m = m.trim();
    let valid = !m.is_empty()
        && m.chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c));
    if valid {
        Ok(m.to_ascii_uppercase())
    } else {
        Err(CliError::Usage(format!(
            "invalid HTTP method {m:?} in --method"
        )))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

    fn input(args: &[&str]) -> Result<RouteInput, CliError> {
        let argv = ["portcullis", "route", "create"].iter().chain(args);
        match Cli::try_parse_from(argv).map(|c| c.command) {
            Ok(Command::Route(RouteCommand::Create(a))) => create_input(a),
            other => panic!("unexpected parse: {other:?}"),
        }
    }

    #[test]
    fn defaults_are_prefix_global_and_server_chosen() -> Result<(), CliError> {
        let r = input(&["/api", "url", "http://api:8080"])?;
        assert_eq!(r.match_kind, PathMatchKind::Prefix as i32);
        assert_eq!(r.target_kind, RouteTargetKind::Url as i32);
        assert_eq!((r.id.as_str(), r.priority, r.enabled), ("", None, None));
        assert!(r.proxy_hostnames.is_empty() && r.methods.is_empty() && !r.public);
        Ok(())
    }

    #[test]
    fn flags_map_to_fields() -> Result<(), CliError> {
        let r = input(&[
            "/v1/",
            "service",
            "billing",
            "--id",
            "billing-v1",
            "--priority",
            "10",
            "--match",
            "exact",
            "--method",
            "get,Post",
            "--proxy",
            "a.example",
            "--disabled",
            "--description",
            "billing API",
            "--public",
        ])?;
        assert_eq!(r.id, "billing-v1");
        assert_eq!(r.priority, Some(10));
        assert_eq!(r.match_kind, PathMatchKind::Exact as i32);
        assert_eq!(r.target_kind, RouteTargetKind::Service as i32);
        assert_eq!(r.methods, ["GET", "POST"]);
        assert_eq!(r.proxy_hostnames, ["a.example"]);
        assert_eq!(r.enabled, Some(false));
        assert_eq!(r.description, "billing API");
        assert!(r.public);
        Ok(())
    }

    #[test]
    fn invalid_method_is_a_usage_error() {
        assert!(matches!(
            input(&["/", "proxy", "b.example", "--method", "GET POST"]),
            Err(CliError::Usage(m)) if m.contains("invalid HTTP method")
        ));
    }
}
