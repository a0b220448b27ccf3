//! `service port add|remove|list SERVICE|available` and `service cleanup` over
//! `DockerPortService` / `DockerCleanupService`. `--output json` prints the REST shapes.

use portcullis_proto::v1::docker_cleanup_service_client::DockerCleanupServiceClient;
use portcullis_proto::v1::docker_port_service_client::DockerPortServiceClient;
use portcullis_proto::v1::{
    AddServicePortRequest, AvailablePortsRequest, ByName, CleanupReport, CleanupRequest,
    RemoveServicePortRequest, ServicePort, ServicePortChange,
};
use serde_json::{Value, json};
use tonic::transport::Channel;

use super::{Ctx, ReplyExt};
use crate::args::{PortCommand, ServiceCommand};
use crate::client::BearerAuth;
use crate::error::CliError;

/// Runs one of these subcommands on an open connection.
pub(crate) async fn run(
    ctx: &mut Ctx,
    channel: Channel,
    auth: BearerAuth,
    cmd: ServiceCommand,
) -> Result<(), CliError> {
    let mut ports = DockerPortServiceClient::with_interceptor(channel.clone(), auth.clone());
    match cmd {
        ServiceCommand::Cleanup { dry_run } => {
            let mut c = DockerCleanupServiceClient::with_interceptor(channel, auth);
            let r = c
                .cleanup_services(CleanupRequest { dry_run })
                .await
                .reply(&ctx.call)?;
            ctx.out.emit(&report_json(&r), || report_text(&r))
        }
        ServiceCommand::Port(PortCommand::Add(a)) => {
            let req = AddServicePortRequest {
                service: a.service,
                container_port: a.port.into(),
                host_port: a.host_port.map_or(0, u32::from),
                bind: a.bind.unwrap_or_default(),
                name: a.name.unwrap_or_default(),
                protocol: a.protocol.unwrap_or_default(),
                source_token: a.source_token.unwrap_or_default(),
            };
            let r = ports.add_service_port(req).await.reply(&ctx.call)?;
            ctx.out.emit(&change_json(&r), || change_text(&r, "added"))
        }
        ServiceCommand::Port(PortCommand::Remove { service, port_name }) => {
            let req = RemoveServicePortRequest { service, port_name };
            let r = ports.remove_service_port(req).await.reply(&ctx.call)?;
            ctx.out
                .emit(&change_json(&r), || change_text(&r, "removed"))
        }
        ServiceCommand::Port(PortCommand::List {
            service: Some(name),
        }) => {
            let req = ByName {
                name,
                ..Default::default()
            };
            let r = ports.list_service_ports(req).await.reply(&ctx.call)?;
            let items: Vec<Value> = r.items.iter().map(port_json).collect();
            ctx.out.emit(&json!({ "items": items }), || {
                let mut t = String::from("NAME\tHOST\tCONTAINER\tSOURCE TOKEN\n");
                for p in &r.items {
                    t.push_str(&format!(
                        "{}\t{}:{}/{}\t{}\t{}\n",
                        p.name,
                        p.bind,
                        p.host_port,
                        p.protocol,
                        p.container_port,
                        if p.source_token_id.is_empty() {
                            "-"
                        } else {
                            &p.source_token_id
                        }
                    ));
                }
                t
            })
        }
        ServiceCommand::Port(PortCommand::Available { bind, udp }) => {
            let req = AvailablePortsRequest {
                bind: bind.unwrap_or_default(),
                protocol: if udp { "udp" } else { "tcp" }.into(),
            };
            let r = ports.available_ports(req).await.reply(&ctx.call)?;
            let ranges: Vec<Value> = r
                .ranges
                .iter()
                .map(|x| json!({ "start": x.start, "end": x.end }))
                .collect();
            let range = r.range.unwrap_or_default();
            let j = json!({
                "range": { "start": range.start, "end": range.end },
                "bind": r.bind, "protocol": r.protocol, "free": r.free, "ranges": ranges,
            });
            ctx.out.emit(&j, || {
                let list: Vec<String> = r
                    .ranges
                    .iter()
                    .map(|x| {
                        if x.start == x.end {
                            x.start.to_string()
                        } else {
                            format!("{}-{}", x.start, x.end)
                        }
                    })
                    .collect();
                format!(
                    "{} free {} ports on {} in {}-{}: {}",
                    r.free,
                    r.protocol,
                    r.bind,
                    range.start,
                    range.end,
                    list.join(", ")
                )
            })
        }
        _ => Err(CliError::Usage("not a port or cleanup command".into())),
    }
}

fn port_json(p: &ServicePort) -> Value {
    json!({
        "name": p.name, "container_port": p.container_port, "host_port": p.host_port,
        "bind": p.bind, "protocol": p.protocol,
        "source_token_id": (!p.source_token_id.is_empty()).then_some(&p.source_token_id),
    })
}

fn change_json(c: &ServicePortChange) -> Value {
    json!({
        "service": c.service,
        "port": c.port.as_ref().map(port_json),
        "recreated": c.recreated,
        "running": c.running,
        "released": (!c.released.is_empty()).then_some(&c.released),
        "proxies_left": c.proxies_left,
    })
}

fn change_text(c: &ServicePortChange, what: &str) -> String {
    let p = c.port.clone().unwrap_or_default();
    let mut t = format!(
        "{what} port {} of service {}: {}:{} -> {}/{}",
        p.name, c.service, p.bind, p.host_port, p.container_port, p.protocol
    );
    if c.recreated {
        t.push_str(&format!(
            "\nthe container was recreated ({})",
            if c.running { "running" } else { "not started" }
        ));
    }
    if !c.released.is_empty() {
        t.push_str(&format!("\nreleased {}", c.released));
    }
    if !c.proxies_left.is_empty() {
        t.push_str(&format!(
            "\nproxies still pointing at it (left alone): {}",
            c.proxies_left.join(", ")
        ));
    }
    t
}

fn report_json(r: &CleanupReport) -> Value {
    json!({
        "installation": r.installation,
        "orphans": r.orphans.iter().map(|o| json!({
            "container_id": o.container_id, "container_name": o.container_name,
            "service": o.service, "owner_token_id": o.owner_token_id,
            "image": o.image, "state": o.state,
        })).collect::<Vec<_>>(),
        "missing": r.missing,
        "stale_allocations": r.stale_allocations,
        "removed": r.removed,
        "released": r.released,
        "dry_run": r.dry_run,
    })
}

fn report_text(r: &CleanupReport) -> String {
    let mut t = String::new();
    if r.orphans.is_empty() {
        t.push_str("no orphaned containers\n");
    }
    for o in &r.orphans {
        let verb = if r.removed.contains(&o.container_name) {
            "removed"
        } else {
            "orphan"
        };
        t.push_str(&format!(
            "{verb}\t{}\t(service label {:?}, {})\n",
            o.container_name, o.service, o.state
        ));
    }
    for a in &r.stale_allocations {
        let verb = if r.released.contains(a) {
            "released"
        } else {
            "stale allocation"
        };
        t.push_str(&format!("{verb}\t{a}\n"));
    }
    for m in &r.missing {
        t.push_str(&format!(
            "missing\t{m}\t(container removed behind Portcullis' back; `service delete {m}` drops the record)\n"
        ));
    }
    if r.dry_run {
        t.push_str("dry run: nothing removed\n");
    }
    t.trim_end().to_owned()
}
