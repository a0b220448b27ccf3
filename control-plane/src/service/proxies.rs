//! Proxy target operations.

use super::{CAS_RETRIES, ControlPlane, Result, require_owner, require_writer};
use crate::auth::Caller;
use crate::error::ServiceError;
use crate::model::{
    Proxy, ProxyInput, ProxyPatch, RateLimitKey, Route, TargetKind, UpstreamProxyProtocol, now,
    validate,
};
use crate::store::{Batch, Check, Collection, Write};

impl ControlPlane {
    /// Creates a proxy owned by the caller. 409 if the hostname is taken.
    pub async fn create_proxy(&self, caller: &Caller, input: ProxyInput) -> Result<Proxy> {
        require_writer(caller)?;
        let proxy = build_proxy(input, caller.token_id.clone(), now())?;
        let key = proxy.hostname.clone();
        let mut checks = vec![Check::Absent(Collection::Proxies, key.clone())];
        checks.extend(certificate_check(&proxy.certificate_name));
        self.commit(
            Batch {
                checks,
                writes: vec![Write::put(&proxy)],
            },
            |i| match i {
                0 => ServiceError::already_exists(format!("proxy {key:?} already exists")),
                _ => no_certificate(&proxy.certificate_name),
            },
        )
        .await?;
        if proxy.enable_https {
            self.ensure_certificate(caller, &proxy.hostname).await;
        }
        Ok(proxy)
    }

    /// Reads one proxy.
    pub async fn get_proxy(&self, _caller: &Caller, hostname: &str) -> Result<Proxy> {
        let key = hostname.to_ascii_lowercase();
        self.get(&key)
            .await?
            .map(|(p, _)| p)
            .ok_or_else(|| ServiceError::not_found("proxy", hostname))
    }

    /// Lists all proxies, sorted by hostname.
    pub async fn list_proxies(&self, _caller: &Caller) -> Result<Vec<Proxy>> {
        self.list().await
    }

    /// Changes the given fields of a proxy the caller owns.
    pub async fn update_proxy(
        &self,
        caller: &Caller,
        hostname: &str,
        patch: ProxyPatch,
    ) -> Result<Proxy> {
        self.modify_proxy(caller, hostname, |proxy| apply_patch(proxy, patch.clone()))
            .await
    }

    /// Applies `change` to a proxy the caller owns and commits it, retrying when another
    /// writer got there first. Nothing is written when `change` fails.
    pub(super) async fn modify_proxy(
        &self,
        caller: &Caller,
        hostname: &str,
        change: impl Fn(&mut Proxy) -> Result<()>,
    ) -> Result<Proxy> {
        require_writer(caller)?;
        let key = hostname.to_ascii_lowercase();
        for _ in 0..CAS_RETRIES {
            let Some((mut proxy, raw)) = self.get::<Proxy>(&key).await? else {
                return Err(ServiceError::not_found("proxy", hostname));
            };
            require_owner(caller, "proxy", &key, &proxy.owner_token_id)?;
            let attached = proxy.certificate_name.clone();
            change(&mut proxy)?;
            proxy.updated_at = now();
            let mut checks = vec![Check::Equals(Collection::Proxies, key.clone(), raw)];
            // Only a newly attached certificate must exist: one deleted with `force` while
            // attached does not block unrelated changes.
            if proxy.certificate_name != attached {
                checks.extend(certificate_check(&proxy.certificate_name));
            }
            let batch = Batch {
                checks,
                writes: vec![Write::put(&proxy)],
            };
            match self
                .commit(batch, |i| match i {
                    0 => ServiceError::concurrent(String::new()),
                    _ => no_certificate(&proxy.certificate_name),
                })
                .await
            {
                Ok(_) => return Ok(proxy),
                Err(ServiceError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ServiceError::concurrent(format!(
            "proxy {key:?} is being changed concurrently; retry"
        )))
    }

    /// Deletes a proxy the caller owns; 409 while routes refer to it.
    pub async fn delete_proxy(&self, caller: &Caller, hostname: &str) -> Result<()> {
        require_writer(caller)?;
        let key = hostname.to_ascii_lowercase();
        let Some((proxy, raw)) = self.get::<Proxy>(&key).await? else {
            return Err(ServiceError::not_found("proxy", hostname));
        };
        require_owner(caller, "proxy", &key, &proxy.owner_token_id)?;
        let users: Vec<String> = self
            .list::<Route>()
            .await?
            .into_iter()
            .filter(|r| {
                r.proxy_hostnames.contains(&key)
                    || (r.target_kind == TargetKind::Proxy && r.target_value == key)
            })
            .map(|r| r.id)
            .collect();
        if !users.is_empty() {
            return Err(ServiceError::still_referenced(format!(
                "proxy {key:?} is used by routes {}; delete them first",
                users.join(", ")
            )));
        }
        self.commit(
            Batch {
                checks: vec![Check::Equals(Collection::Proxies, key.clone(), raw)],
                writes: vec![crate::store::Write::Delete(
                    Collection::Proxies,
                    key.clone(),
                )],
            },
            |_| ServiceError::concurrent(format!("proxy {key:?} changed while deleting; retry")),
        )
        .await?;
        Ok(())
    }
}

/// The proxy `input` describes, validated, owned by `owner`: what `create_proxy` stores and
/// what a declarative document's entry means.
pub(crate) fn build_proxy(input: ProxyInput, owner: String, now: i64) -> Result<Proxy> {
    let mut proxy = unconfigured(validate::hostname("hostname", &input.hostname)?, owner, now);
    apply_patch(
        &mut proxy,
        ProxyPatch {
            target_url: Some(input.target_url),
            enabled: input.enabled,
            enable_http: input.enable_http,
            enable_https: input.enable_https,
            preserve_host_header: input.preserve_host_header,
            custom_request_headers: input.custom_request_headers,
            custom_response_headers: input.custom_response_headers,
            connect_timeout_ms: input.connect_timeout_ms,
            read_timeout_ms: input.read_timeout_ms,
            redirect_http_to_https: input.redirect_http_to_https,
            hsts_max_age_secs: input.hsts_max_age_secs,
            certificate_name: input.certificate_name,
            idle_timeout_ms: input.idle_timeout_ms,
            rate_limit_rps: input.rate_limit_rps,
            rate_limit_burst: input.rate_limit_burst,
            rate_limit_key: input.rate_limit_key,
            max_concurrent_requests: input.max_concurrent_requests,
            max_request_body_bytes: input.max_request_body_bytes,
            upstream_proxy_protocol: input.upstream_proxy_protocol,
            ip_allowlist: input.ip_allowlist,
            log_query: input.log_query,
        },
    )?;
    Ok(proxy)
}

/// A proxy with every setting at its default and no target yet: what `create_proxy`
/// applies its input to.
fn unconfigured(hostname: String, owner_token_id: String, now: i64) -> Proxy {
    Proxy {
        hostname,
        target_url: String::new(),
        enabled: true,
        enable_http: true,
        enable_https: false,
        preserve_host_header: false,
        custom_request_headers: Default::default(),
        custom_response_headers: Default::default(),
        connect_timeout_ms: 0,
        read_timeout_ms: 0,
        redirect_http_to_https: false,
        hsts_max_age_secs: 0,
        certificate_name: String::new(),
        idle_timeout_ms: 0,
        rate_limit_rps: 0,
        rate_limit_burst: 0,
        rate_limit_key: RateLimitKey::Ip,
        max_concurrent_requests: 0,
        max_request_body_bytes: 0,
        upstream_proxy_protocol: UpstreamProxyProtocol::Off,
        ip_allowlist: Vec::new(),
        log_query: false,
        auth: None,
        owner_token_id,
        created_at: now,
        updated_at: now,
    }
}

/// The rate and concurrency limits of `patch`. Turning the rate off resets its burst and
/// key; a burst or key given while no rate is set would do nothing and is refused.
fn apply_limits(p: &mut Proxy, patch: &ProxyPatch) -> Result<()> {
    if let Some(v) = patch.rate_limit_rps {
        p.rate_limit_rps = validate::limit("rate_limit_rps", v)?;
        if v == 0 {
            p.rate_limit_burst = 0;
            p.rate_limit_key = RateLimitKey::Ip;
        }
    }
    if let Some(v) = patch.rate_limit_burst {
        p.rate_limit_burst = validate::limit("rate_limit_burst", v)?;
        if v > 0 && p.rate_limit_rps == 0 {
            return Err(ServiceError::invalid(
                "rate_limit_burst",
                "has no effect without rate_limit_rps",
            ));
        }
    }
    if let Some(key) = &patch.rate_limit_key {
        p.rate_limit_key = validate::rate_limit_key("rate_limit_key", key)?;
        if p.rate_limit_key != RateLimitKey::Ip && p.rate_limit_rps == 0 {
            return Err(ServiceError::invalid(
                "rate_limit_key",
                "has no effect without rate_limit_rps",
            ));
        }
    }
    if let Some(v) = patch.max_concurrent_requests {
        p.max_concurrent_requests = validate::limit("max_concurrent_requests", v)?;
    }
    Ok(())
}

/// The store check that the certificate a proxy names exists, checked in the same atomic
/// write as the proxy; none when it names none.
fn certificate_check(name: &str) -> Option<Check> {
    (!name.is_empty()).then(|| Check::Present(Collection::Certificates, name.to_owned()))
}

/// 422 for a `certificate_name` that names no certificate.
fn no_certificate(name: &str) -> ServiceError {
    ServiceError::Unprocessable(format!(
        "certificate_name: there is no certificate {name:?}"
    ))
}

/// Validates and applies each present field; the proxy is untouched on error only because
/// callers work on a copy.
fn apply_patch(p: &mut Proxy, patch: ProxyPatch) -> Result<()> {
    apply_limits(p, &patch)?;
    if let Some(url) = patch.target_url {
        p.target_url = validate::target_url("target_url", &url)?;
    }
    if let Some(h) = patch.custom_request_headers {
        validate::headers("custom_request_headers", &h)?;
        p.custom_request_headers = h;
    }
    if let Some(h) = patch.custom_response_headers {
        validate::headers("custom_response_headers", &h)?;
        p.custom_response_headers = h;
    }
    if let Some(v) = patch.connect_timeout_ms {
        p.connect_timeout_ms = validate::timeout_ms("connect_timeout_ms", v)?;
    }
    if let Some(v) = patch.read_timeout_ms {
        p.read_timeout_ms = validate::timeout_ms("read_timeout_ms", v)?;
    }
    if let Some(v) = patch.idle_timeout_ms {
        p.idle_timeout_ms = validate::idle_timeout_ms("idle_timeout_ms", v)?;
    }
    if let Some(v) = patch.ip_allowlist {
        p.ip_allowlist = validate::ip_allowlist("ip_allowlist", v)?;
    }
    if let Some(v) = &patch.upstream_proxy_protocol {
        p.upstream_proxy_protocol =
            validate::upstream_proxy_protocol("upstream_proxy_protocol", v)?;
    }
    if let Some(v) = patch.max_request_body_bytes {
        p.max_request_body_bytes = validate::max_request_body_bytes("max_request_body_bytes", v)?;
    }
    if let Some(v) = patch.hsts_max_age_secs {
        if v > 63_072_000 {
            return Err(ServiceError::invalid(
                "hsts_max_age_secs",
                "at most 63072000 (two years)",
            ));
        }
        p.hsts_max_age_secs = v;
    }
    if let Some(name) = patch.certificate_name {
        p.certificate_name = if name.is_empty() {
            name
        } else {
            validate::ident("certificate_name", &name)?
        };
    }
    p.redirect_http_to_https = patch
        .redirect_http_to_https
        .unwrap_or(p.redirect_http_to_https);
    p.enabled = patch.enabled.unwrap_or(p.enabled);
    p.enable_http = patch.enable_http.unwrap_or(p.enable_http);
    p.enable_https = patch.enable_https.unwrap_or(p.enable_https);
    p.preserve_host_header = patch.preserve_host_header.unwrap_or(p.preserve_host_header);
    p.log_query = patch.log_query.unwrap_or(p.log_query);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy() -> Proxy {
        let mut p = unconfigured("limits.example.com".into(), String::new(), 0);
        p.target_url = "http://127.0.0.1:1".into();
        p
    }

    fn invalid_field(result: Result<()>) -> Option<&'static str> {
        match result {
            Err(ServiceError::Invalid { field, .. }) => Some(field),
            _ => None,
        }
    }

    #[test]
    fn ip_allowlists_are_refused_not_rewritten() {
        let mut p = proxy();
        for bad in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "10.0.0.0/08",
            "10.0.0.0/",
            "2001:db8::1/32",
            "localhost",
            " 10.0.0.0/8",
        ] {
            let patch = ProxyPatch {
                ip_allowlist: Some(vec![bad.into()]),
                ..ProxyPatch::default()
            };
            assert_eq!(
                invalid_field(apply_patch(&mut p, patch)),
                Some("ip_allowlist"),
                "{bad:?}"
            );
            assert!(p.ip_allowlist.is_empty(), "{bad:?} changed the proxy");
        }
        let too_many = ProxyPatch {
            ip_allowlist: Some(vec!["192.0.2.7".into(); validate::MAX_IP_ALLOWLIST + 1]),
            ..ProxyPatch::default()
        };
        assert_eq!(
            invalid_field(apply_patch(&mut p, too_many)),
            Some("ip_allowlist")
        );
        let good = vec![
            "10.0.0.0/8".to_owned(),
            "192.0.2.7".into(),
            "0.0.0.0/0".into(),
            "2001:db8::/32".into(),
            "::1/128".into(),
        ];
        let patch = ProxyPatch {
            ip_allowlist: Some(good.clone()),
            ..ProxyPatch::default()
        };
        assert!(apply_patch(&mut p, patch).is_ok());
        assert_eq!(p.ip_allowlist, good);
        let wire = portcullis_proto::v1::ProxyTarget::from(p);
        assert_eq!(wire.ip_allowlist, good);
    }

    #[test]
    fn upstream_proxy_protocol_is_validated_naming_the_field() {
        let mut p = proxy();
        assert_eq!(p.upstream_proxy_protocol, UpstreamProxyProtocol::Off);
        for bad in ["V1", "v3", "", "on"] {
            let patch = ProxyPatch {
                upstream_proxy_protocol: Some(bad.into()),
                ..ProxyPatch::default()
            };
            assert_eq!(
                invalid_field(apply_patch(&mut p, patch)),
                Some("upstream_proxy_protocol"),
                "{bad:?}"
            );
        }
        let patch = ProxyPatch {
            upstream_proxy_protocol: Some("v2".into()),
            ..ProxyPatch::default()
        };
        assert!(apply_patch(&mut p, patch).is_ok());
        assert_eq!(p.upstream_proxy_protocol, UpstreamProxyProtocol::V2);
        let wire = portcullis_proto::v1::ProxyTarget::from(p);
        assert_eq!(wire.upstream_proxy_protocol, "v2");
    }

    #[test]
    fn limits_are_validated_naming_the_field() {
        let patch = |f: fn(&mut ProxyPatch)| {
            let mut patch = ProxyPatch::default();
            f(&mut patch);
            apply_patch(&mut proxy(), patch)
        };
        assert_eq!(
            invalid_field(patch(|p| p.rate_limit_rps = Some(1_000_001))),
            Some("rate_limit_rps")
        );
        assert_eq!(
            invalid_field(patch(|p| {
                p.rate_limit_rps = Some(5);
                p.rate_limit_burst = Some(2_000_000);
            })),
            Some("rate_limit_burst")
        );
        assert_eq!(
            invalid_field(patch(|p| {
                p.rate_limit_rps = Some(5);
                p.rate_limit_key = Some("cookie".into());
            })),
            Some("rate_limit_key")
        );
        assert_eq!(
            invalid_field(patch(|p| p.max_concurrent_requests = Some(u32::MAX))),
            Some("max_concurrent_requests")
        );
        // A burst or a key without a rate would do nothing.
        assert_eq!(
            invalid_field(patch(|p| p.rate_limit_burst = Some(10))),
            Some("rate_limit_burst")
        );
        assert_eq!(
            invalid_field(patch(|p| p.rate_limit_key = Some("subject".into()))),
            Some("rate_limit_key")
        );
    }

    #[test]
    fn limits_are_stored_and_turning_the_rate_off_resets_burst_and_key() -> Result<()> {
        let mut p = proxy();
        // Refused, never folded: the key is written as the API lists it.
        let folded = ProxyPatch {
            rate_limit_rps: Some(50),
            rate_limit_key: Some("Subject".into()),
            ..Default::default()
        };
        assert!(apply_patch(&mut proxy(), folded).is_err());
        let set = ProxyPatch {
            rate_limit_rps: Some(50),
            rate_limit_burst: Some(100),
            rate_limit_key: Some("subject".into()),
            max_concurrent_requests: Some(8),
            ..Default::default()
        };
        apply_patch(&mut p, set)?;
        assert_eq!(
            (
                p.rate_limit_rps,
                p.rate_limit_burst,
                p.rate_limit_key,
                p.max_concurrent_requests
            ),
            (50, 100, RateLimitKey::Subject, 8)
        );
        let wire = portcullis_proto::v1::ProxyTarget::from(p.clone());
        assert_eq!(
            (
                wire.rate_limit_rps,
                wire.rate_limit_burst,
                wire.rate_limit_key.as_str(),
                wire.max_concurrent_requests
            ),
            (50, 100, "subject", 8)
        );
        // Other changes keep the limits.
        apply_patch(
            &mut p,
            ProxyPatch {
                idle_timeout_ms: Some(500),
                ..Default::default()
            },
        )?;
        assert_eq!((p.rate_limit_rps, p.max_concurrent_requests), (50, 8));
        let off = ProxyPatch {
            rate_limit_rps: Some(0),
            ..Default::default()
        };
        apply_patch(&mut p, off)?;
        assert_eq!(
            (p.rate_limit_rps, p.rate_limit_burst, p.rate_limit_key),
            (0, 0, RateLimitKey::Ip)
        );
        assert_eq!(p.max_concurrent_requests, 8);
        Ok(())
    }

    #[test]
    fn stored_proxies_from_before_limits_read_as_unlimited() -> std::result::Result<(), String> {
        let mut json = serde_json::to_value(proxy()).map_err(|e| e.to_string())?;
        let map = json.as_object_mut().ok_or("not an object")?;
        for field in [
            "rate_limit_rps",
            "rate_limit_burst",
            "rate_limit_key",
            "max_concurrent_requests",
        ] {
            map.remove(field).ok_or(field)?;
        }
        let old: Proxy = serde_json::from_value(json).map_err(|e| e.to_string())?;
        assert_eq!(old, proxy());
        Ok(())
    }

    #[test]
    fn the_openapi_document_describes_the_limit_fields() -> std::result::Result<(), String> {
        use utoipa::OpenApi as _;
        let doc =
            serde_json::to_value(crate::rest::ApiDoc::openapi()).map_err(|e| e.to_string())?;
        let schemas = &doc["components"]["schemas"];
        for (schema, field) in [
            ("Proxy", "rate_limit_key"),
            ("ProxyInput", "rate_limit_rps"),
            ("ProxyPatch", "max_concurrent_requests"),
        ] {
            let props = &schemas[schema]["properties"];
            assert!(props[field].is_object(), "{schema}.{field}: {props}");
        }
        let key = schemas["RateLimitKey"].to_string();
        for value in ["ip", "subject", "client"] {
            assert!(key.contains(&format!("\"{value}\"")), "{key}");
        }
        Ok(())
    }
}
