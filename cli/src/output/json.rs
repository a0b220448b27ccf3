//! Serde mirrors of the wire messages for `--output json`.
//!
//! Field names follow the proto; enums become lowercase words ("prefix", "url",
//! "admin"); timestamps stay unix seconds (0 = never/unknown) exactly as on the wire,
//! so scripts can do arithmetic without parsing; maps are sorted for stable output.

mod admin;
mod routing;

use portcullis_proto::v1 as pb;
use serde::Serialize;

pub(crate) use admin::{CreatedTokenJson, DataPlaneListJson, StatusJson, TokenJson};
pub(crate) use routing::{ProxyAuthJson, ProxyJson, RouteJson, ServiceJson};

/// Any `*List` message: `{"items": [...]}`.
#[derive(Debug, Serialize)]
pub(crate) struct Items<T> {
    /// The listed resources.
    pub(crate) items: Vec<T>,
}

impl<T> Items<T> {
    /// Mirrors each wire item.
    pub(crate) fn from_wire<'a, W: 'a>(items: &'a [W]) -> Self
    where
        T: From<&'a W>,
    {
        Self {
            items: items.iter().map(T::from).collect(),
        }
    }
}

/// The `Empty` reply of delete calls: `{}`.
#[derive(Debug, Serialize)]
pub(crate) struct EmptyJson {}

/// Lowercase name of a `PathMatchKind` value.
pub(crate) fn match_kind_name(v: i32) -> &'static str {
    match pb::PathMatchKind::try_from(v) {
        Ok(pb::PathMatchKind::Prefix) => "prefix",
        Ok(pb::PathMatchKind::Exact) => "exact",
        Ok(pb::PathMatchKind::Regex) => "regex",
        Ok(pb::PathMatchKind::Unspecified) => "unspecified",
        Err(_) => "unknown",
    }
}

/// Lowercase name of a `RouteTargetKind` value.
pub(crate) fn target_kind_name(v: i32) -> &'static str {
    match pb::RouteTargetKind::try_from(v) {
        Ok(pb::RouteTargetKind::Url) => "url",
        Ok(pb::RouteTargetKind::Service) => "service",
        Ok(pb::RouteTargetKind::Proxy) => "proxy",
        Ok(pb::RouteTargetKind::Unspecified) => "unspecified",
        Err(_) => "unknown",
    }
}

/// Lowercase name of a `TokenScope` value.
pub(crate) fn scope_name(v: i32) -> &'static str {
    match pb::TokenScope::try_from(v) {
        Ok(pb::TokenScope::Admin) => "admin",
        Ok(pb::TokenScope::User) => "user",
        Ok(pb::TokenScope::Dataplane) => "dataplane",
        Ok(pb::TokenScope::Unspecified) => "unspecified",
        Err(_) => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn to_json<T: Serialize>(v: &T) -> Value {
        serde_json::to_value(v).unwrap_or(Value::Null)
    }

    #[test]
    fn proxy_mirrors_the_wire_message() {
        let p = pb::ProxyTarget {
            hostname: "a.example".into(),
            target_url: "http://up".into(),
            enabled: true,
            enable_http: true,
            custom_request_headers: [("X-B".into(), "2".into()), ("X-A".into(), "1".into())].into(),
            connect_timeout_ms: 5000,
            created_at: 1_700_000_000,
            ..Default::default()
        };
        let v = to_json(&ProxyJson::from(&p));
        assert_eq!(v["hostname"], "a.example");
        assert_eq!(v["enable_https"], false);
        assert_eq!(v["custom_request_headers"], json!({"X-A": "1", "X-B": "2"}));
        assert_eq!(v["custom_response_headers"], json!({}));
        assert_eq!(v["created_at"], 1_700_000_000);
        assert_eq!(v["auth"], Value::Null);
        // Sorted map keys give stable text output too.
        let text = serde_json::to_string(&ProxyJson::from(&p)).unwrap_or_default();
        assert!(text.find("X-A") < text.find("X-B"));
    }

    #[test]
    fn enums_are_lowercase_words() {
        let r = pb::Route {
            id: "r1".into(),
            match_kind: pb::PathMatchKind::Regex as i32,
            target_kind: pb::RouteTargetKind::Service as i32,
            methods: vec!["GET".into()],
            ..Default::default()
        };
        let v = to_json(&RouteJson::from(&r));
        assert_eq!(v["match_kind"], "regex");
        assert_eq!(v["target_kind"], "service");
        assert_eq!(v["proxy_hostnames"], json!([]));
        assert_eq!(match_kind_name(99), "unknown");
        assert_eq!(scope_name(pb::TokenScope::Dataplane as i32), "dataplane");
    }

    #[test]
    fn lists_and_created_tokens() {
        let t = pb::ApiToken {
            id: "t1".into(),
            name: "ci".into(),
            scope: pb::TokenScope::Admin as i32,
            ..Default::default()
        };
        let list = to_json(&Items::<TokenJson>::from_wire(std::slice::from_ref(&t)));
        assert_eq!(list["items"][0]["scope"], "admin");
        let created = pb::CreatedToken {
            token: Some(t),
            secret: "pcs_secret".into(),
        };
        let v = to_json(&CreatedTokenJson::from(&created));
        assert_eq!(v["secret"], "pcs_secret");
        assert_eq!(v["token"]["id"], "t1");
        assert_eq!(to_json(&EmptyJson {}), json!({}));
    }

    #[test]
    fn dataplane_list_keeps_current_version() {
        let l = pb::DataPlaneList {
            current_version: 7,
            items: vec![pb::DataPlaneStatus {
                node_id: "edge-1".into(),
                applied_version: 6,
                connected: true,
                ..Default::default()
            }],
        };
        let v = to_json(&DataPlaneListJson::from(&l));
        assert_eq!(v["current_version"], 7);
        assert_eq!(v["items"][0]["node_id"], "edge-1");
        assert_eq!(v["items"][0]["applied_version"], 6);
        assert_eq!(v["items"][0]["last_seen"], 0);
    }
}
