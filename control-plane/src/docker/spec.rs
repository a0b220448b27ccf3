//! Docker service records and the validation of their input: every field is checked before
//! anything is allocated or created, and an error names the field.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ServiceError;
use crate::store::{Collection, Record};

type Result<T> = std::result::Result<T, ServiceError>;

/// Label marking a container as made by Portcullis.
pub const LABEL_MANAGED: &str = "portcullis.managed";
/// Label naming the Portcullis service a container belongs to.
pub const LABEL_SERVICE: &str = "portcullis.service";
/// Label naming the token that owns the service.
pub const LABEL_OWNER: &str = "portcullis.owner-token";

/// Most ports one service may publish.
pub const MAX_PORTS: usize = 32;
/// Most env entries, labels or command arguments one service may carry.
const MAX_ITEMS: usize = 256;
/// Longest env value, label value or argument.
const MAX_ITEM_LEN: usize = 4096;

/// Body of `POST /api/v1/services`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerServiceInput {
    /// Service name: also the container's name, prefixed with `portcullis-`.
    pub name: String,
    /// Image reference, e.g. `nginx:1.27` or `registry.local:5000/app@sha256:…`; empty or
    /// absent with `dockerfile`.
    #[serde(default)]
    pub image: String,
    /// Command and arguments (overrides the image's CMD).
    #[serde(default)]
    pub command: Vec<String>,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Extra container labels (`portcullis.*` is reserved).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Memory limit: bytes, or a number with `k`, `m` or `g` (e.g. `256m`).
    pub memory: Option<String>,
    /// CPU limit in CPUs, e.g. `0.5`.
    pub cpus: Option<String>,
    /// `no` (default), `always`, `unless-stopped`, `on-failure` or `on-failure:N`.
    pub restart_policy: Option<String>,
    /// Published ports.
    #[serde(default)]
    pub ports: Vec<PortInput>,
    /// Start the container once created (default true).
    pub start: Option<bool>,
    /// Dockerfile text: build the image through the engine instead of using one already
    /// there (`image` then stays empty; the build is tagged `portcullis-build/NAME:latest`).
    pub dockerfile: Option<String>,
    /// The build context: a plain (not compressed) tar, base64 in JSON; at most 32 MiB.
    #[serde(default, deserialize_with = "super::build::base64_opt")]
    #[schema(value_type = Option<String>, format = Byte)]
    pub build_context: Option<Vec<u8>>,
    /// Engine networks to join (existing ones; default: the engine's `bridge`).
    #[serde(default)]
    pub networks: Vec<String>,
}

/// One published port of a service.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortInput {
    /// Port name, unique within the service (default `http` for the first, then `port-N`).
    pub name: Option<String>,
    /// Port inside the container.
    pub container_port: u16,
    /// Host port; allocated from the port range when absent.
    pub host_port: Option<u16>,
    /// Host address to bind (default `127.0.0.1`; `0.0.0.0` only when asked).
    pub bind: Option<String>,
    /// `tcp` (default) or `udp`.
    pub protocol: Option<String>,
}

/// A published port as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PortMapping {
    /// Port name, unique within the service.
    pub name: String,
    /// Port inside the container.
    pub container_port: u16,
    /// Port on the host.
    pub host_port: u16,
    /// Host address bound.
    pub bind: String,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Token that alone (with admins) may manage this port; see `docker::ports`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_token_id: Option<String>,
}

/// A container service as stored: what to run, not its live state (that comes from the
/// engine on every read).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ContainerService {
    /// Service name.
    pub name: String,
    /// Engine container name (`portcullis-<name>`).
    pub container_name: String,
    /// Engine container id.
    pub container_id: String,
    /// Image reference.
    pub image: String,
    /// Command and arguments.
    pub command: Vec<String>,
    /// Environment variable names (values are not returned: they may be secrets).
    pub env_keys: Vec<String>,
    /// Extra labels.
    pub labels: BTreeMap<String, String>,
    /// Memory limit in bytes (0: none).
    pub memory_bytes: i64,
    /// CPU limit in nano-CPUs (0: none).
    pub nano_cpus: i64,
    /// Restart policy.
    pub restart_policy: String,
    /// Published ports.
    pub ports: Vec<PortMapping>,
    /// Token that created it.
    pub owner_token_id: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Engine networks joined (empty: the engine's default `bridge`).
    #[serde(default)]
    pub networks: Vec<String>,
    /// Whether the image was built from a Dockerfile.
    #[serde(default)]
    pub built: bool,
}

impl Record for ContainerService {
    const COLLECTION: Collection = Collection::Containers;
    fn key(&self) -> String {
        self.name.clone()
    }
}

/// One host port handed out: the registry entry that keeps it from being handed out twice.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PortAllocation {
    /// Host port.
    pub host_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Host address bound.
    pub bind: String,
    /// Owning service.
    pub service: String,
    /// The service's port name.
    pub port_name: String,
    /// Token that owns the service.
    pub owner_token_id: String,
}

impl PortAllocation {
    /// Registry key: one entry per host port and protocol, whatever the bind address (a
    /// port bound on 127.0.0.1 and 0.0.0.0 at once would collide on the host).
    pub fn key_for(host_port: u16, protocol: &str) -> String {
        format!("{host_port}/{protocol}")
    }
}

impl Record for PortAllocation {
    const COLLECTION: Collection = Collection::PortAllocations;
    fn key(&self) -> String {
        Self::key_for(self.host_port, &self.protocol)
    }
}

/// A service name: 1–63 of `[a-z0-9-]`, starting with a letter or digit.
pub fn service_name(v: &str) -> Result<String> {
    let ok = !v.is_empty()
        && v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !v.starts_with('-');
    if v == "external" {
        return Err(ServiceError::invalid(
            "name",
            "\"external\" is reserved (/api/v1/services/external lists external services)",
        ));
    }
    if v == "cleanup" {
        return Err(ServiceError::invalid(
            "name",
            "\"cleanup\" is reserved (/api/v1/services/cleanup)",
        ));
    }
    if ok {
        Ok(v.to_owned())
    } else {
        Err(ServiceError::invalid(
            "name",
            format!("{v:?} must be 1-63 of a-z, 0-9 and '-', not starting with '-'"),
        ))
    }
}

/// An image reference: `[host[:port]/]path[:tag][@sha256:<64 hex>]`, path components
/// lowercase `[a-z0-9]` joined by `.`, `_`, `__` or `-`.
pub fn image_ref(v: &str) -> Result<String> {
    let bad = |why: &str| ServiceError::invalid("image", format!("{v:?} {why}"));
    if v.is_empty() || v.len() > 255 {
        return Err(bad("must be 1-255 characters"));
    }
    let (rest, digest) = match v.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (v, None),
    };
    if let Some(d) = digest {
        let hex = d
            .strip_prefix("sha256:")
            .ok_or_else(|| bad("has a digest that is not sha256:<hex>"))?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("has a digest that is not sha256:<64 hex digits>"));
        }
    }
    // A tag is after the last ':' that follows the last '/'.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            && !t.starts_with(['.', '-']);
        if !ok {
            return Err(bad("has an invalid tag (letters, digits, '_', '.', '-')"));
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    // A first component with '.', ':' or `localhost` is a registry host.
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        let host = parts.remove(0);
        let (h, port) = host.split_once(':').unwrap_or((host, ""));
        let host_ok = !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'));
        let port_ok = port.is_empty() || port.parse::<u16>().is_ok();
        if !host_ok || !port_ok {
            return Err(bad("has an invalid registry host"));
        }
    }
    for p in &parts {
        let ok = !p.is_empty()
            && p.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
            && p.starts_with(|c: char| c.is_ascii_alphanumeric())
            && p.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !ok {
            return Err(bad(
                "is not a valid reference (lowercase letters, digits and '.', '_', '-' between them)",
            ));
        }
    }
    Ok(v.to_owned())
}

/// Memory limit in bytes: `N`, `Nb`, `Nk`, `Nm`, `Ng` (case-insensitive); at least 6 MiB
/// (the engine's minimum).
pub fn memory(v: &str) -> Result<i64> {
    let bad = || {
        ServiceError::invalid(
            "memory",
            format!("{v:?} is not a size: a number with an optional unit b, k, m or g (e.g. 256m)"),
        )
    };
    let t = v.trim().to_ascii_lowercase();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'b')) => (&t[..i], 1i64),
        Some((i, 'k')) => (&t[..i], 1 << 10),
        Some((i, 'm')) => (&t[..i], 1 << 20),
        Some((i, 'g')) => (&t[..i], 1 << 30),
        _ => (t.as_str(), 1),
    };
    let n: i64 = num.parse().map_err(|_| bad())?;
    let bytes = n.checked_mul(mult).ok_or_else(bad)?;
    if bytes < 6 << 20 {
        return Err(ServiceError::invalid(
            "memory",
            format!("{v:?} is below the engine's minimum of 6m"),
        ));
    }
    Ok(bytes)
}

/// CPU limit in nano-CPUs: a positive decimal number of CPUs, at most 1024.
pub fn cpus(v: &str) -> Result<i64> {
    let n: f64 = v.trim().parse().map_err(|_| {
        ServiceError::invalid("cpus", format!("{v:?} is not a number of CPUs (e.g. 0.5)"))
    })?;
    if !(n.is_finite() && (0.01..=1024.0).contains(&n)) {
        return Err(ServiceError::invalid(
            "cpus",
            format!("{v:?} must be between 0.01 and 1024"),
        ));
    }
    Ok((n * 1e9).round() as i64)
}

/// A restart policy the engine knows.
pub fn restart_policy(v: &str) -> Result<String> {
    let ok = match v.split_once(':') {
        None => matches!(v, "no" | "always" | "unless-stopped" | "on-failure"),
        Some(("on-failure", n)) => n.parse::<u32>().is_ok(),
        Some(_) => false,
    };
    if ok {
        Ok(v.to_owned())
    } else {
        Err(ServiceError::invalid(
            "restart_policy",
            format!("{v:?} is not no, always, unless-stopped, on-failure or on-failure:N"),
        ))
    }
}

/// A port protocol.
pub fn protocol(v: &str) -> Result<String> {
    match v {
        "tcp" | "udp" => Ok(v.to_owned()),
        _ => Err(ServiceError::invalid(
            "ports.protocol",
            format!("{v:?} is not tcp or udp"),
        )),
    }
}

/// A bind address: an IP literal this host has (checked by binding a socket to it), or
/// `0.0.0.0`/`::` when asked for explicitly.
pub fn bind_address(v: &str) -> Result<IpAddr> {
    let ip: IpAddr = v
        .parse()
        .map_err(|_| ServiceError::invalid("ports.bind", format!("{v:?} is not an IP address")))?;
    if ip.is_unspecified() {
        return Ok(ip);
    }
    match std::net::UdpSocket::bind((ip, 0)) {
        Ok(_) => Ok(ip),
        Err(e) => Err(ServiceError::invalid(
            "ports.bind",
            format!("{v:?} is not an address of this host ({e})"),
        )),
    }
}

/// A port or service-port name: 1–32 of `[a-z0-9-]`.
pub fn port_name(v: &str) -> Result<String> {
    let ok = !v.is_empty()
        && v.len() <= 32
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(v.to_owned())
    } else {
        Err(ServiceError::invalid(
            "ports.name",
            format!("{v:?} must be 1-32 of a-z, 0-9 and '-'"),
        ))
    }
}

/// Network names: at most 8, each 1–64 of `[A-Za-z0-9_.-]`, not `host` or `none` (a
/// container there has no published ports of its own).
pub fn networks(v: &[String]) -> Result<Vec<String>> {
    if v.len() > 8 {
        return Err(ServiceError::invalid("networks", "at most 8 networks"));
    }
    let mut out: Vec<String> = Vec::with_capacity(v.len());
    for n in v {
        let ok = !n.is_empty()
            && n.len() <= 64
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            return Err(ServiceError::invalid(
                "networks",
                format!("{n:?} must be 1-64 of letters, digits, '_', '.' and '-'"),
            ));
        }
        if n == "host" || n == "none" || n.starts_with("container") {
            return Err(ServiceError::invalid(
                "networks",
                format!("{n:?}: host/none/container networking cannot publish ports"),
            ));
        }
        if out.contains(n) {
            return Err(ServiceError::invalid("networks", format!("{n:?} twice")));
        }
        out.push(n.clone());
    }
    Ok(out)
}

/// Command, env and labels: bounded, env names well formed, `portcullis.*` labels reserved.
pub fn extras(input: &ContainerServiceInput) -> Result<()> {
    if input.command.len() > MAX_ITEMS || input.command.iter().any(|a| a.len() > MAX_ITEM_LEN) {
        return Err(ServiceError::invalid(
            "command",
            format!("at most {MAX_ITEMS} arguments of {MAX_ITEM_LEN} bytes"),
        ));
    }
    if input.env.len() > MAX_ITEMS {
        return Err(ServiceError::invalid(
            "env",
            format!("at most {MAX_ITEMS} variables"),
        ));
    }
    for (k, v) in &input.env {
        let ok = !k.is_empty()
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !k.starts_with(|c: char| c.is_ascii_digit());
        if !ok || v.len() > MAX_ITEM_LEN || v.contains('\0') {
            return Err(ServiceError::invalid(
                "env",
                format!(
                    "{k:?}: names are letters, digits and '_'; values at most {MAX_ITEM_LEN} bytes"
                ),
            ));
        }
    }
    if input.labels.len() > MAX_ITEMS {
        return Err(ServiceError::invalid(
            "labels",
            format!("at most {MAX_ITEMS} labels"),
        ));
    }
    for (k, v) in &input.labels {
        if k.is_empty() || k.len() > 255 || v.len() > MAX_ITEM_LEN {
            return Err(ServiceError::invalid(
                "labels",
                format!("{k:?} is empty or too long"),
            ));
        }
        if k.starts_with("portcullis.") {
            return Err(ServiceError::invalid(
                "labels",
                format!("{k:?}: the portcullis.* labels are set by Portcullis"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(e: ServiceError) -> &'static str {
        match e {
            ServiceError::Invalid { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn image_references() {
        for ok in [
            "busybox",
            "library/busybox:1.36",
            "registry.local:5000/team/app:v1.2-rc",
            "localhost/app",
            "app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "my_app.x-y",
        ] {
            assert_eq!(image_ref(ok).unwrap(), ok);
        }
        for bad in [
            "",
            "Busybox",
            "app:",
            "app:-x",
            "/app",
            "app//x",
            "a b",
            "app@md5:00",
            "-app",
        ] {
            assert_eq!(field(image_ref(bad).unwrap_err()), "image", "{bad}");
        }
    }

    #[test]
    fn memory_and_cpus() {
        assert_eq!(memory("256m").unwrap(), 256 << 20);
        assert_eq!(memory("1G").unwrap(), 1 << 30);
        assert_eq!(memory("10485760").unwrap(), 10 << 20);
        for bad in ["", "12x", "m", "-5m", "1k", "99999999999g"] {
            assert_eq!(field(memory(bad).unwrap_err()), "memory", "{bad}");
        }
        assert_eq!(cpus("0.5").unwrap(), 500_000_000);
        for bad in ["0", "abc", "NaN", "2000", "-1"] {
            assert_eq!(field(cpus(bad).unwrap_err()), "cpus", "{bad}");
        }
    }

    #[test]
    fn restart_policies_protocols_binds_and_names() {
        for ok in [
            "no",
            "always",
            "unless-stopped",
            "on-failure",
            "on-failure:3",
        ] {
            restart_policy(ok).unwrap();
        }
        for bad in ["sometimes", "on-failure:x", "always:2"] {
            assert_eq!(field(restart_policy(bad).unwrap_err()), "restart_policy");
        }
        assert_eq!(field(protocol("sctp").unwrap_err()), "ports.protocol");
        assert!(bind_address("127.0.0.1").unwrap().is_loopback());
        assert!(bind_address("0.0.0.0").unwrap().is_unspecified());
        // TEST-NET-3: never an address of this host.
        assert_eq!(
            field(bind_address("203.0.113.7").unwrap_err()),
            "ports.bind"
        );
        assert_eq!(field(bind_address("localhost").unwrap_err()), "ports.bind");
        assert_eq!(field(service_name("Web").unwrap_err()), "name");
        assert_eq!(field(service_name("-web").unwrap_err()), "name");
        service_name("web-1").unwrap();
        assert_eq!(
            networks(&["bridge".into(), "app_net-1".into()])
                .unwrap()
                .len(),
            2
        );
        for bad in ["", "host", "none", "a b", "container:x"] {
            assert_eq!(field(networks(&[bad.into()]).unwrap_err()), "networks");
        }
        assert_eq!(
            field(networks(&["a".into(), "a".into()]).unwrap_err()),
            "networks"
        );
    }
}
