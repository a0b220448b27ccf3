//! `proxy resource ...`: builds `ProxyResourceInput` from flags and prints the settings.

use portcullis_proto::v1::{ByName, ProxyResource, ProxyResourceInput};
use serde::Serialize;

use super::{Ctx, ReplyExt};
use crate::args::{ProxyResourceCommand, ProxyResourceSetArgs};
use crate::error::CliError;
use crate::output::json::EmptyJson;

/// Runs one `proxy resource` subcommand.
pub(crate) async fn run(ctx: &mut Ctx, cmd: ProxyResourceCommand) -> Result<(), CliError> {
    let resource = match cmd {
        ProxyResourceCommand::Set(args) => {
            let input = set_input(args)?;
            ctx.client
                .set_proxy_resource(input)
                .await
                .reply(&ctx.call)?
        }
        ProxyResourceCommand::Show { hostname } => {
            let req = ByName {
                name: hostname,
                ..Default::default()
            };
            ctx.client.get_proxy_resource(req).await.reply(&ctx.call)?
        }
        ProxyResourceCommand::Clear { hostname } => {
            let req = ByName {
                name: hostname.clone(),
                ..Default::default()
            };
            ctx.client
                .clear_proxy_resource(req)
                .await
                .reply(&ctx.call)?;
            return ctx.out.emit(&EmptyJson {}, || {
                format!("proxy {hostname} has no resource settings any more")
            });
        }
    };
    ctx.out
        .emit(&ResourceJson::from(&resource), || view(&resource))
}

/// `proxy resource set` flags → `ProxyResourceInput`; validation is the control plane's.
fn set_input(args: ProxyResourceSetArgs) -> Result<ProxyResourceInput, CliError> {
    let mut fields = serde_json::Map::new();
    for f in args.fields {
        if fields.insert(f.key.clone(), f.value).is_some() {
            return Err(CliError::Usage(format!(
                "--field {:?} is given twice",
                f.key
            )));
        }
    }
    Ok(ProxyResourceInput {
        hostname: args.hostname,
        endpoint: args.endpoint.unwrap_or_default(),
        scopes_supported: args.scopes.into_iter().filter(|s| !s.is_empty()).collect(),
        resource_documentation: args.documentation.unwrap_or_default(),
        fields_json: if fields.is_empty() {
            String::new()
        } else {
            serde_json::Value::Object(fields).to_string()
        },
        allowed_origins: args.allow_origins,
    })
}

/// `ProxyResource` for `--output json`; `fields` as a JSON object, not text.
#[derive(Debug, Serialize)]
struct ResourceJson {
    hostname: String,
    protected: bool,
    endpoint: String,
    scopes_supported: Vec<String>,
    resource_documentation: String,
    fields: serde_json::Value,
    allowed_origins: Vec<String>,
}

impl From<&ProxyResource> for ResourceJson {
    fn from(r: &ProxyResource) -> Self {
        Self {
            hostname: r.hostname.clone(),
            protected: r.protected,
            endpoint: r.endpoint.clone(),
            scopes_supported: r.scopes_supported.clone(),
            resource_documentation: r.resource_documentation.clone(),
            fields: serde_json::from_str(&r.fields_json)
                .unwrap_or_else(|_| serde_json::Value::Object(serde_json::Map::new())),
            allowed_origins: r.allowed_origins.clone(),
        }
    }
}

fn view(r: &ProxyResource) -> String {
    if !r.protected {
        return format!(
            "proxy {} is not protected by edge auth (run `portcullis proxy auth enable` first)",
            r.hostname
        );
    }
    let or_dash = |s: String| if s.is_empty() { "-".to_owned() } else { s };
    let fields = if r.fields_json.is_empty() || r.fields_json == "{}" {
        String::new()
    } else {
        r.fields_json.clone()
    };
    let rows = [
        ("hostname", r.hostname.clone()),
        ("endpoint", or_dash(r.endpoint.clone())),
        ("scopes supported", or_dash(r.scopes_supported.join(" "))),
        ("documentation", or_dash(r.resource_documentation.clone())),
        ("custom fields", or_dash(fields)),
        ("allowed origins", or_dash(r.allowed_origins.join(" "))),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command, ProxyCommand};

    fn parse_set(args: &[&str]) -> ProxyResourceSetArgs {
        let argv = ["portcullis", "proxy", "resource", "set"]
            .iter()
            .chain(args);
        match Cli::try_parse_from(argv).map(|c| c.command) {
            Ok(Command::Proxy(ProxyCommand::Resource(ProxyResourceCommand::Set(a)))) => a,
            other => panic!("unexpected parse: {other:?}"),
        }
    }

    #[test]
    fn set_flags_map_to_fields() -> Result<(), CliError> {
        let input = set_input(parse_set(&[
            "mcp.example",
            "--endpoint",
            "/mcp",
            "--scopes",
            "a,b",
            "--documentation",
            "https://docs.example/mcp",
            "--field",
            "resource_name=\"Echo\"",
            "--field",
            "x=[1,2]",
            "--allow-origin",
            "http://localhost:6274",
        ]))?;
        assert_eq!(input.hostname, "mcp.example");
        assert_eq!(input.endpoint, "/mcp");
        assert_eq!(input.scopes_supported, ["a", "b"]);
        assert_eq!(input.resource_documentation, "https://docs.example/mcp");
        let fields: serde_json::Value =
            serde_json::from_str(&input.fields_json).map_err(|e| CliError::Usage(e.to_string()))?;
        assert_eq!(
            fields,
            serde_json::json!({"resource_name": "Echo", "x": [1, 2]})
        );
        assert_eq!(input.allowed_origins, ["http://localhost:6274"]);
        Ok(())
    }

    #[test]
    fn set_without_flags_clears_everything_and_duplicate_fields_fail() {
        let input = set_input(parse_set(&["h"])).ok();
        assert_eq!(
            input.map(|i| (i.endpoint, i.fields_json, i.scopes_supported.len())),
            Some((String::new(), String::new(), 0))
        );
        let dup = set_input(parse_set(&["h", "--field", "a=1", "--field", "a=2"]));
        assert!(matches!(dup, Err(CliError::Usage(_))));
    }
}
