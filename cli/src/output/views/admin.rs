//! Tables for tokens, data planes and control plane status.

use portcullis_proto::v1 as pb;

use crate::output::json::scope_name;
use crate::output::table::{Table, key_values, or_dash, yes_no};
use crate::output::time::rfc3339;

/// `token list`.
pub(crate) fn tokens(items: &[pb::ApiToken]) -> String {
    let mut t = Table::new(&["ID", "NAME", "SCOPE", "CREATED", "LAST USED", "CREATED BY"]);
    for k in items {
        t.row(vec![
            k.id.clone(),
            k.name.clone(),
            scope_name(k.scope).to_owned(),
            rfc3339(k.created_at),
            rfc3339(k.last_used_at),
            or_dash(&k.created_by),
        ]);
    }
    t.render()
}

/// `dataplanes list`.
pub(crate) fn dataplanes(list: &pb::DataPlaneList) -> String {
    let mut t = Table::new(&[
        "NODE ID",
        "ADDRESS",
        "APPLIED",
        "CURRENT",
        "CONNECTED",
        "LAST SEEN",
        "LAST NACK ERROR",
    ]);
    for d in &list.items {
        t.row(vec![
            d.node_id.clone(),
            or_dash(&d.address),
            d.applied_version.to_string(),
            list.current_version.to_string(),
            yes_no(d.connected),
            rfc3339(d.last_seen),
            nack(d),
        ]);
    }
    t.render()
}

/// `status`.
pub(crate) fn status(s: &pb::StatusReply) -> String {
    key_values(&[
        ("version", or_dash(&s.version)),
        (
            "store",
            format!(
                "{} ({})",
                or_dash(&s.store_backend),
                if s.store_ok { "ok" } else { "FAILING" }
            ),
        ),
        ("config version", s.config_version.to_string()),
        (
            "data planes",
            format!("{} connected", s.connected_data_planes),
        ),
    ])
}

fn nack(d: &pb::DataPlaneStatus) -> String {
    if d.last_nack_error.is_empty() {
        "-".to_owned()
    } else {
        format!("v{}: {}", d.last_nack_version, d.last_nack_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataplanes_table_shows_versions_and_nacks() {
        let list = pb::DataPlaneList {
            current_version: 9,
            items: vec![
                pb::DataPlaneStatus {
                    node_id: "edge-1".into(),
                    address: "10.0.0.5:8080".into(),
                    applied_version: 9,
                    connected: true,
                    last_seen: 1_700_000_000,
                    ..Default::default()
                },
                pb::DataPlaneStatus {
                    node_id: "edge-2".into(),
                    applied_version: 8,
                    last_nack_version: 9,
                    last_nack_error: "bad regex".into(),
                    ..Default::default()
                },
            ],
        };
        let text = dataplanes(&list);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("NODE ID"));
        assert!(lines[1].contains("10.0.0.5:8080") && lines[1].contains("2023-11-14T22:13:20Z"));
        assert!(lines[2].ends_with("v9: bad regex"), "{}", lines[2]);
        assert!(lines[2].contains("  no  "));
    }

    #[test]
    fn status_reports_store_health() {
        let s = pb::StatusReply {
            version: "0.1.0".into(),
            store_ok: false,
            store_backend: "redis".into(),
            config_version: 3,
            connected_data_planes: 2,
        };
        let text = status(&s);
        assert!(text.contains("redis (FAILING)"), "{text}");
        assert!(text.contains("2 connected"));
    }
}
