//! Tables for proxies, routes and external services.

use std::collections::HashMap;

use portcullis_proto::v1 as pb;

use crate::output::json::{match_kind_name, target_kind_name};
use crate::output::table::{Table, key_values, or_dash, yes_no};
use crate::output::time::rfc3339;

/// `proxy list`.
pub(crate) fn proxies(items: &[pb::ProxyTarget]) -> String {
    let mut t = Table::new(&["HOSTNAME", "TARGET", "ENABLED", "HTTP", "HTTPS", "UPDATED"]);
    for p in items {
        t.row(vec![
            p.hostname.clone(),
            p.target_url.clone(),
            yes_no(p.enabled),
            yes_no(p.enable_http),
            yes_no(p.enable_https),
            rfc3339(p.updated_at),
        ]);
    }
    t.render()
}

/// `proxy show|create|update`.
pub(crate) fn proxy(p: &pb::ProxyTarget) -> String {
    let mut rows = vec![
        ("hostname", p.hostname.clone()),
        ("target", p.target_url.clone()),
        ("enabled", yes_no(p.enabled)),
        ("http", yes_no(p.enable_http)),
        ("https", yes_no(p.enable_https)),
        ("preserve host", yes_no(p.preserve_host_header)),
        ("request headers", headers(&p.custom_request_headers)),
        ("response headers", headers(&p.custom_response_headers)),
        ("connect timeout", millis(p.connect_timeout_ms)),
        ("read timeout", millis(p.read_timeout_ms)),
        ("idle timeout", millis(p.idle_timeout_ms)),
        ("rate limit", rate_limit(p)),
        (
            "max concurrent",
            match p.max_concurrent_requests {
                0 => "-".to_owned(),
                n => n.to_string(),
            },
        ),
        ("max request body", body_limit(p.max_request_body_bytes)),
        (
            "upstream proxy protocol",
            or_dash(&p.upstream_proxy_protocol),
        ),
        ("certificate", or_dash(&p.certificate_name)),
        ("redirect to https", yes_no(p.redirect_http_to_https)),
        ("log query string", yes_no(p.log_query)),
        (
            "hsts max-age",
            p.hsts
                .as_ref()
                .map_or_else(|| "-".to_owned(), |h| h.max_age_secs.to_string()),
        ),
    ];
    if let Some(auth) = &p.auth {
        let mode = if auth.enabled {
            or_dash(&auth.mode)
        } else {
            "disabled".to_owned()
        };
        rows.push(("edge auth", mode));
    }
    rows.extend([
        ("owner token", or_dash(&p.owner_token_id)),
        ("created", rfc3339(p.created_at)),
        ("updated", rfc3339(p.updated_at)),
    ]);
    key_values(&rows)
}

/// `50/s burst 100 per ip`, or `-` without a rate limit.
fn rate_limit(p: &pb::ProxyTarget) -> String {
    if p.rate_limit_rps == 0 {
        return "-".to_owned();
    }
    let burst = match p.rate_limit_burst {
        0 => p.rate_limit_rps,
        b => b,
    };
    let key = if p.rate_limit_key.is_empty() {
        "ip"
    } else {
        &p.rate_limit_key
    };
    format!("{}/s burst {burst} per {key}", p.rate_limit_rps)
}

/// `proxy auth enable|show`.
pub(crate) fn proxy_auth(hostname: &str, a: &pb::ProxyAuthPolicy) -> String {
    if !a.enabled {
        return format!("proxy {hostname} is not protected by edge auth");
    }
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.join(" ")
        }
    };
    key_values(&[
        ("hostname", hostname.to_owned()),
        ("mode", a.mode.clone()),
        ("auth host", a.auth_host.clone()),
        ("required scopes", list(&a.required_scopes)),
        ("public paths", list(&a.public_paths)),
        ("scopes supported", list(&a.scopes_supported)),
        ("documentation", or_dash(&a.resource_documentation)),
        ("allowed users", list(&a.allowed_users)),
        ("allowed orgs", list(&a.allowed_orgs)),
        ("allowed teams", list(&a.allowed_teams)),
        ("allowed e-mail domains", list(&a.allowed_email_domains)),
        ("allowed groups", list(&a.allowed_groups)),
        ("forward token", a.forward_token.to_string()),
        ("identity headers", {
            let mut names: Vec<String> = a
                .identity_headers
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            names.sort();
            list(&names)
        }),
    ])
}

/// `route list`.
pub(crate) fn routes(items: &[pb::Route]) -> String {
    let mut t = Table::new(&[
        "ID", "PRIORITY", "MATCH", "PATH", "METHODS", "TARGET", "SCOPE", "ENABLED", "PUBLIC",
    ]);
    for r in items {
        t.row(vec![
            r.id.clone(),
            r.priority.to_string(),
            match_kind_name(r.match_kind).to_owned(),
            r.path_pattern.clone(),
            methods(&r.methods),
            target(r),
            scope(&r.proxy_hostnames),
            yes_no(r.enabled),
            yes_no(r.public),
        ]);
    }
    t.render()
}

/// `route show|create`.
pub(crate) fn route(r: &pb::Route) -> String {
    key_values(&[
        ("id", r.id.clone()),
        ("priority", r.priority.to_string()),
        ("match", match_kind_name(r.match_kind).to_owned()),
        ("path", r.path_pattern.clone()),
        ("methods", methods(&r.methods)),
        ("target", target(r)),
        ("scope", scope(&r.proxy_hostnames)),
        ("enabled", yes_no(r.enabled)),
        ("public", yes_no(r.public)),
        ("required scopes", or_dash(&r.required_scopes.join(" "))),
        ("description", or_dash(&r.description)),
        ("owner token", or_dash(&r.owner_token_id)),
        ("created", rfc3339(r.created_at)),
    ])
}

/// `service external list`.
pub(crate) fn services(items: &[pb::ExternalService]) -> String {
    let mut t = Table::new(&["NAME", "URL", "DESCRIPTION", "CREATED"]);
    for s in items {
        t.row(vec![
            s.name.clone(),
            s.target_url.clone(),
            or_dash(&s.description),
            rfc3339(s.created_at),
        ]);
    }
    t.render()
}

/// `service external show|register`.
pub(crate) fn service(s: &pb::ExternalService) -> String {
    key_values(&[
        ("name", s.name.clone()),
        ("url", s.target_url.clone()),
        ("description", or_dash(&s.description)),
        ("owner token", or_dash(&s.owner_token_id)),
        ("created", rfc3339(s.created_at)),
    ])
}

fn headers(map: &HashMap<String, String>) -> String {
    let mut pairs: Vec<_> = map.iter().collect();
    pairs.sort();
    let joined: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if joined.is_empty() {
        "-".to_owned()
    } else {
        joined.join(", ")
    }
}

fn millis(ms: u32) -> String {
    format!("{ms} ms")
}

fn body_limit(bytes: u64) -> String {
    if bytes == 0 {
        "no limit".to_owned()
    } else {
        format!("{bytes} bytes")
    }
}

fn methods(m: &[String]) -> String {
    if m.is_empty() {
        "*".to_owned()
    } else {
        m.join(",")
    }
}

fn scope(hosts: &[String]) -> String {
    if hosts.is_empty() {
        "global".to_owned()
    } else {
        hosts.join(",")
    }
}

fn target(r: &pb::Route) -> String {
    format!("{}:{}", target_kind_name(r.target_kind), r.target_value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_list_has_one_row_per_proxy() {
        let p = pb::ProxyTarget {
            hostname: "a.example".into(),
            target_url: "http://up:8080".into(),
            enabled: true,
            enable_http: true,
            ..Default::default()
        };
        let text = proxies(&[p]);
        assert_eq!(
            text,
            "HOSTNAME   TARGET          ENABLED  HTTP  HTTPS  UPDATED\n\
             a.example  http://up:8080  yes      yes   no     -\n"
        );
    }

    #[test]
    fn route_views_describe_scope_methods_and_target() {
        let r = pb::Route {
            id: "r1".into(),
            priority: 10,
            match_kind: pb::PathMatchKind::Prefix as i32,
            path_pattern: "/api".into(),
            target_kind: pb::RouteTargetKind::Url as i32,
            target_value: "http://api".into(),
            enabled: true,
            ..Default::default()
        };
        let row = routes(std::slice::from_ref(&r));
        assert!(row.contains("url:http://api") && row.contains("global") && row.contains('*'));
        let scoped = pb::Route {
            proxy_hostnames: vec!["a".into(), "b".into()],
            methods: vec!["GET".into(), "POST".into()],
            required_scopes: vec!["admin".into(), "audit".into()],
            ..r
        };
        let detail = route(&scoped);
        assert!(detail.contains("scope:           a,b"), "{detail}");
        assert!(detail.contains("methods:         GET,POST"), "{detail}");
        assert!(detail.contains("required scopes: admin audit"), "{detail}");
    }

    #[test]
    fn proxy_detail_lists_sorted_headers() {
        let p = pb::ProxyTarget {
            hostname: "a".into(),
            custom_request_headers: [("X-B".into(), "2".into()), ("X-A".into(), "1".into())].into(),
            ..Default::default()
        };
        let text = proxy(&p);
        let line = |key: &str| {
            text.lines()
                .find(|l| l.starts_with(key))
                .map(|l| l[key.len()..].trim().to_owned())
        };
        assert_eq!(
            line("request headers:").as_deref(),
            Some("X-A=1, X-B=2"),
            "{text}"
        );
        assert_eq!(line("response headers:").as_deref(), Some("-"), "{text}");
    }
}
