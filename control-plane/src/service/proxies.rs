//! Proxy target operations.

use super::*;
use crate::model::validate;
use crate::model::{Proxy, ProxyInput, ProxyPatch, Route, TargetKind};
use crate::store::Check;

impl ControlPlane {
    /// Creates a proxy owned by the caller. 409 if the hostname is taken.
    pub async fn create_proxy(&self, caller: &Caller, input: ProxyInput) -> Result<Proxy> {
        require_writer(caller)?;
        let now = now();
        let mut proxy = Proxy {
            hostname: validate::hostname("hostname", &input.hostname)?,
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
            auth: None,
            owner_token_id: caller.token_id.clone(),
            created_at: now,
            updated_at: now,
        };
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
            },
        )?;
        let key = proxy.hostname.clone();
        let mut checks = vec![Check::Absent(Collection::Proxies, key.clone())];
        checks.extend(certificate_check(&proxy.certificate_name));
        self.commit(
            Batch {
                checks,
                writes: vec![put(Collection::Proxies, &key, &proxy)],
            },
            |i| match i {
                0 => ServiceError::Conflict(format!("proxy {key:?} already exists")),
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
        self.get(Collection::Proxies, &key)
            .await?
            .map(|(p, _)| p)
            .ok_or_else(|| ServiceError::not_found("proxy", hostname))
    }

    /// Lists all proxies, sorted by hostname.
    pub async fn list_proxies(&self, _caller: &Caller) -> Result<Vec<Proxy>> {
        self.list(Collection::Proxies).await
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
            let Some((mut proxy, raw)) = self.get::<Proxy>(Collection::Proxies, &key).await? else {
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
                writes: vec![put(Collection::Proxies, &key, &proxy)],
            };
            match self
                .commit(batch, |i| match i {
                    0 => ServiceError::Conflict(String::new()),
                    _ => no_certificate(&proxy.certificate_name),
                })
                .await
            {
                Ok(_) => return Ok(proxy),
                Err(ServiceError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ServiceError::Conflict(format!(
            "proxy {key:?} is being changed concurrently; retry"
        )))
    }

    /// Deletes a proxy the caller owns; 409 while routes refer to it.
    pub async fn delete_proxy(&self, caller: &Caller, hostname: &str) -> Result<()> {
        require_writer(caller)?;
        let key = hostname.to_ascii_lowercase();
        let Some((proxy, raw)) = self.get::<Proxy>(Collection::Proxies, &key).await? else {
            return Err(ServiceError::not_found("proxy", hostname));
        };
        require_owner(caller, "proxy", &key, &proxy.owner_token_id)?;
        let users: Vec<String> = self
            .list::<Route>(Collection::Routes)
            .await?
            .into_iter()
            .filter(|r| {
                r.proxy_hostnames.contains(&key)
                    || (r.target_kind == TargetKind::Proxy && r.target_value == key)
            })
            .map(|r| r.id)
            .collect();
        if !users.is_empty() {
            return Err(ServiceError::Conflict(format!(
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
            |_| ServiceError::Conflict(format!("proxy {key:?} changed while deleting; retry")),
        )
        .await?;
        Ok(())
    }
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
    Ok(())
}
