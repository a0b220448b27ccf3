//! Mirrors of the administrative messages: tokens, data planes and status.

use portcullis_proto::v1 as pb;
use serde::Serialize;

use super::scope_name;

/// `ApiToken` (metadata only; there is no secret in it).
#[derive(Debug, Serialize)]
pub(crate) struct TokenJson {
    id: String,
    name: String,
    scope: &'static str,
    created_at: i64,
    last_used_at: i64,
    created_by: String,
}

impl From<&pb::ApiToken> for TokenJson {
    fn from(t: &pb::ApiToken) -> Self {
        Self {
            id: t.id.clone(),
            name: t.name.clone(),
            scope: scope_name(t.scope),
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            created_by: t.created_by.clone(),
        }
    }
}

/// `CreatedToken`: the only output that contains a secret, because asking for it is
/// the point of the command.
#[derive(Debug, Serialize)]
pub(crate) struct CreatedTokenJson {
    token: Option<TokenJson>,
    secret: String,
}

impl From<&pb::CreatedToken> for CreatedTokenJson {
    fn from(c: &pb::CreatedToken) -> Self {
        Self {
            token: c.token.as_ref().map(TokenJson::from),
            secret: c.secret.clone(),
        }
    }
}

/// `DataPlaneStatus`.
#[derive(Debug, Serialize)]
pub(crate) struct DataPlaneJson {
    node_id: String,
    address: String,
    applied_version: u64,
    last_nack_error: String,
    last_nack_version: u64,
    last_seen: i64,
    connected: bool,
    software_version: String,
}

impl From<&pb::DataPlaneStatus> for DataPlaneJson {
    fn from(d: &pb::DataPlaneStatus) -> Self {
        Self {
            node_id: d.node_id.clone(),
            address: d.address.clone(),
            applied_version: d.applied_version,
            last_nack_error: d.last_nack_error.clone(),
            last_nack_version: d.last_nack_version,
            last_seen: d.last_seen,
            connected: d.connected,
            software_version: d.software_version.clone(),
        }
    }
}

/// `DataPlaneList`: unlike the other lists it also carries the current config version.
#[derive(Debug, Serialize)]
pub(crate) struct DataPlaneListJson {
    current_version: u64,
    items: Vec<DataPlaneJson>,
}

impl From<&pb::DataPlaneList> for DataPlaneListJson {
    fn from(l: &pb::DataPlaneList) -> Self {
        Self {
            current_version: l.current_version,
            items: l.items.iter().map(DataPlaneJson::from).collect(),
        }
    }
}

/// `StatusReply`.
#[derive(Debug, Serialize)]
pub(crate) struct StatusJson {
    version: String,
    store_ok: bool,
    store_backend: String,
    config_version: u64,
    connected_data_planes: u32,
}

impl From<&pb::StatusReply> for StatusJson {
    fn from(s: &pb::StatusReply) -> Self {
        Self {
            version: s.version.clone(),
            store_ok: s.store_ok,
            store_backend: s.store_backend.clone(),
            config_version: s.config_version,
            connected_data_planes: s.connected_data_planes,
        }
    }
}
