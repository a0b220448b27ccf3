//! `service create|list|show|start|stop|restart|delete|logs|proxy-create` and `service port
//! list|check` over `DockerService`, on their own connection. `--output json` prints the
//! REST API's shapes (flattened service with a `state` object).

use portcullis_proto::v1::docker_service_client::DockerServiceClient;
use portcullis_proto::v1::{
    ByName, ContainerServiceInput, ContainerServiceView, Empty, PortCheckRequest, PortSpec,
    ServiceLogsRequest, ServiceProxyRequest,
};
use serde_json::{Value, json};

use super::{Ctx, ReplyExt};
use crate::args::{PortCommand, ServiceCommand, ServiceCreateArgs, parse_port_spec};
use crate::client::{self, BearerAuth};
use crate::config::Settings;
use crate::error::{CliError, error_chain};
use crate::output::json::ProxyJson;
use crate::output::views;

/// Runs one Docker `service` subcommand.
pub(crate) async fn run(
    ctx: &mut Ctx,
    settings: &Settings,
    cmd: ServiceCommand,
) -> Result<(), CliError> {
    let auth = BearerAuth::new(settings.token.as_ref().map(|t| t.expose()))?;
    let channel =
        client::endpoint(settings)?
            .connect()
            .await
            .map_err(|e| CliError::Unreachable {
                url: settings.url.clone(),
                detail: error_chain(&e),
            })?;
    let mut c = DockerServiceClient::with_interceptor(channel.clone(), auth.clone());
    let by = |name: String| ByName {
        name,
        ..Default::default()
    };
    let view = match cmd {
        cmd @ (ServiceCommand::Cleanup { .. }
        | ServiceCommand::Port(
            PortCommand::Add(_)
            | PortCommand::Remove { .. }
            | PortCommand::Available { .. }
            | PortCommand::List { service: Some(_) },
        )) => return super::docker_ops::run(ctx, channel, auth, cmd).await,
        ServiceCommand::External(_) => {
            return Err(CliError::Usage("not a Docker service command".into()));
        }
        ServiceCommand::Create(a) => c.create_service(input(*a)?).await.reply(&ctx.call)?,
        ServiceCommand::Show { name } => c.get_service(by(name)).await.reply(&ctx.call)?,
        ServiceCommand::Start { name } => c.start_service(by(name)).await.reply(&ctx.call)?,
        ServiceCommand::Stop { name } => c.stop_service(by(name)).await.reply(&ctx.call)?,
        ServiceCommand::Restart { name } => c.restart_service(by(name)).await.reply(&ctx.call)?,
        ServiceCommand::List => {
            let list = c.list_services(Empty {}).await.reply(&ctx.call)?;
            let items: Vec<Value> = list.items.iter().map(service_json).collect();
            return ctx.out.emit(&json!({ "items": items }), || {
                let mut t = String::from("NAME\tSTATUS\tIMAGE\tPORTS\n");
                for s in &list.items {
                    t.push_str(&format!(
                        "{}\t{}\t{}\t{}\n",
                        s.name,
                        s.status,
                        s.image,
                        ports(s)
                    ));
                }
                t
            });
        }
        ServiceCommand::Delete { name } => {
            let r = c.delete_service(by(name)).await.reply(&ctx.call)?;
            let j = json!({
                "name": r.name,
                "released_ports": r.released_ports,
                "proxies_left": r.proxies_left,
            });
            return ctx.out.emit(&j, || {
                let mut t = format!("deleted service {}", r.name);
                if !r.released_ports.is_empty() {
                    t.push_str(&format!("; released {}", r.released_ports.join(", ")));
                }
                if !r.proxies_left.is_empty() {
                    t.push_str(&format!(
                        "\nproxies still pointing at it (left alone): {}",
                        r.proxies_left.join(", ")
                    ));
                }
                t
            });
        }
        ServiceCommand::Stats { name, follow } => {
            return super::docker_stream::stats(&mut c, ctx, name, follow).await;
        }
        ServiceCommand::Logs {
            name,
            tail,
            timestamps,
            follow,
        } => {
            let req = ServiceLogsRequest {
                name,
                tail,
                timestamps,
            };
            if follow {
                return super::docker_stream::follow_logs(&mut c, ctx, req).await;
            }
            let r = c.service_logs(req).await.reply(&ctx.call)?;
            return ctx
                .out
                .emit(&json!({ "lines": r.lines }), || r.lines.join("\n"));
        }
        ServiceCommand::ProxyCreate {
            name,
            hostname,
            https,
            port,
            target,
        } => {
            let req = ServiceProxyRequest {
                name,
                hostname: hostname.unwrap_or_default(),
                port: port.unwrap_or_default(),
                https,
                target: target.unwrap_or_default(),
            };
            let proxy = c.create_service_proxy(req).await.reply(&ctx.call)?;
            return ctx
                .out
                .emit(&ProxyJson::from(&proxy), || views::proxy(&proxy));
        }
        ServiceCommand::Port(PortCommand::List { service: None }) => {
            let list = c.list_ports(Empty {}).await.reply(&ctx.call)?;
            let items: Vec<Value> = list
                .items
                .iter()
                .map(|a| {
                    json!({
                        "host_port": a.host_port, "protocol": a.protocol, "bind": a.bind,
                        "service": a.service, "port_name": a.port_name,
                        "owner_token_id": a.owner_token_id,
                    })
                })
                .collect();
            return ctx.out.emit(&json!({ "items": items }), || {
                let mut t = String::from("PORT\tBIND\tSERVICE\tNAME\n");
                for a in &list.items {
                    t.push_str(&format!(
                        "{}/{}\t{}\t{}\t{}\n",
                        a.host_port, a.protocol, a.bind, a.service, a.port_name
                    ));
                }
                t
            });
        }
        ServiceCommand::Port(PortCommand::Check { port, bind, udp }) => {
            let req = PortCheckRequest {
                port: port.into(),
                bind: bind.unwrap_or_default(),
                protocol: if udp { "udp" } else { "tcp" }.into(),
            };
            let r = c.check_port(req).await.reply(&ctx.call)?;
            let j = json!({
                "port": r.port, "bind": r.bind, "protocol": r.protocol,
                "available": r.available,
                "reason": (!r.reason.is_empty()).then_some(&r.reason),
            });
            return ctx.out.emit(&j, || {
                if r.available {
                    format!("{}/{} on {} is available", r.port, r.protocol, r.bind)
                } else {
                    format!(
                        "{}/{} on {} is NOT available: {}",
                        r.port, r.protocol, r.bind, r.reason
                    )
                }
            });
        }
    };
    ctx.out.emit(&service_json(&view), || text(&view))
}

fn kv(items: &[String], flag: &str) -> Result<std::collections::HashMap<String, String>, CliError> {
    items
        .iter()
        .map(|i| {
            i.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| CliError::Usage(format!("{flag} {i:?}: expected KEY=VALUE")))
        })
        .collect()
}

fn input(a: ServiceCreateArgs) -> Result<ContainerServiceInput, CliError> {
    let mut ports = Vec::new();
    for p in &a.ports {
        let p = parse_port_spec(p).map_err(CliError::Usage)?;
        ports.push(PortSpec {
            name: p.name.unwrap_or_default(),
            container_port: p.container_port.into(),
            host_port: p.host_port.map_or(0, u32::from),
            bind: a.bind.clone().unwrap_or_default(),
            protocol: p.protocol.unwrap_or_default(),
        });
    }
    let (dockerfile, build_context) = match &a.dockerfile {
        Some(path) => super::docker_stream::build_context(path, a.context.as_deref())?,
        None => Default::default(),
    };
    Ok(ContainerServiceInput {
        env: kv(&a.env, "--env")?,
        labels: kv(&a.labels, "--label")?,
        name: a.name,
        image: a.image.unwrap_or_default(),
        command: a.command,
        memory: a.memory.unwrap_or_default(),
        cpus: a.cpus.unwrap_or_default(),
        restart_policy: a.restart.unwrap_or_default(),
        ports,
        no_start: a.no_start,
        dockerfile,
        build_context,
        networks: a.networks,
    })
}

fn ports(s: &ContainerServiceView) -> String {
    s.ports
        .iter()
        .map(|p| {
            format!(
                "{}={}:{}->{}/{}",
                p.name, p.bind, p.host_port, p.container_port, p.protocol
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn text(s: &ContainerServiceView) -> String {
    let mut t = format!(
        "service {}\n  image: {}\n  status: {}{}\n  ports: {}\n  container: {}",
        s.name,
        s.image,
        s.status,
        s.exit_code
            .filter(|_| !s.running)
            .map(|c| format!(" (exit code {c})"))
            .unwrap_or_default(),
        ports(s),
        s.container_name
    );
    if !s.error.is_empty() {
        t.push_str(&format!("\n  error: {}", s.error));
    }
    t
}

/// The REST shape: the stored service flattened, live state under `state`.
fn service_json(s: &ContainerServiceView) -> Value {
    json!({
        "name": s.name,
        "container_name": s.container_name,
        "container_id": s.container_id,
        "image": s.image,
        "command": s.command,
        "env_keys": s.env_keys,
        "labels": s.labels,
        "memory_bytes": s.memory_bytes,
        "nano_cpus": s.nano_cpus,
        "restart_policy": s.restart_policy,
        "ports": s.ports.iter().map(|p| json!({
            "name": p.name, "container_port": p.container_port, "host_port": p.host_port,
            "bind": p.bind, "protocol": p.protocol,
        })).collect::<Vec<_>>(),
        "owner_token_id": s.owner_token_id,
        "created_at": s.created_at,
        "networks": s.networks,
        "built": s.built,
        "state": {
            "status": s.status,
            "running": s.running,
            "exit_code": s.exit_code,
            "started_at": (!s.started_at.is_empty()).then_some(&s.started_at),
            "health": (!s.health.is_empty()).then_some(&s.health),
            "error": (!s.error.is_empty()).then_some(&s.error),
        },
    })
}
