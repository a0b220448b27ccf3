//! Protected-resource settings of a protected proxy (RFC 9728 metadata, the MCP endpoint
//! and the browser Origin allowlist). They are part of the proxy's auth policy, so they
//! go wherever the policy goes (snapshot, `auth show`) and vanish with it; this module
//! owns their validation and keeps them when `auth enable` replaces the rest.

use super::{ControlPlane, Result};
use crate::auth::Caller;
use crate::error::ServiceError;
use crate::model::{ProxyAuth, ProxyResourceInput, ProxyResourceView, validate};

/// Metadata fields with their own setting (or none at all), refused as custom fields.
const OWNED_FIELDS: [&str; 5] = [
    "resource",
    "authorization_servers",
    "bearer_methods_supported",
    "scopes_supported",
    "resource_documentation",
];
/// Bounds on custom fields, so the metadata document stays small.
const MAX_FIELDS: usize = 32;
const MAX_FIELDS_JSON: usize = 8 * 1024;
const MAX_ORIGINS: usize = 32;

/// The validated resource settings, applied onto a policy.
#[derive(Debug, Clone)]
struct ResourceSettings {
    endpoint: String,
    scopes_supported: Vec<String>,
    resource_documentation: String,
    fields: serde_json::Map<String, serde_json::Value>,
    allowed_origins: Vec<String>,
}

impl ControlPlane {
    /// Replaces the resource settings of a protected proxy the caller owns. Refused for an
    /// unprotected proxy: the metadata is only served under protection.
    pub async fn set_proxy_resource(
        &self,
        caller: &Caller,
        hostname: &str,
        input: ProxyResourceInput,
    ) -> Result<ProxyResourceView> {
        let settings = validate_resource(input)?;
        let proxy = self
            .modify_proxy(caller, hostname, |p| {
                let Some(auth) = p.auth.as_mut() else {
                    return Err(ServiceError::Unprocessable(format!(
                        "proxy {hostname:?} is not protected: run `proxy auth enable` first"
                    )));
                };
                settings.clone().apply(auth);
                Ok(())
            })
            .await?;
        Ok(view(proxy.hostname, proxy.auth.as_ref()))
    }

    /// The resource settings; `protected: false` when the proxy is unprotected.
    pub async fn get_proxy_resource(
        &self,
        caller: &Caller,
        hostname: &str,
    ) -> Result<ProxyResourceView> {
        let proxy = self.get_proxy(caller, hostname).await?;
        Ok(view(proxy.hostname, proxy.auth.as_ref()))
    }

    /// Resets the resource settings to none, keeping the protection (idempotent).
    pub async fn clear_proxy_resource(&self, caller: &Caller, hostname: &str) -> Result<()> {
        self.modify_proxy(caller, hostname, |p| {
            if let Some(auth) = p.auth.as_mut() {
                ResourceSettings::none().apply(auth);
            }
            Ok(())
        })
        .await?;
        Ok(())
    }
}

/// `auth enable` replaces the policy but not the resource settings: the endpoint, custom
/// fields and origins of `previous` are kept, and so are its advertised scopes and
/// documentation unless `next` sets its own.
pub(super) fn keep_resource(previous: Option<ProxyAuth>, next: &mut ProxyAuth) {
    let Some(previous) = previous else { return };
    next.resource_endpoint = previous.resource_endpoint;
    next.resource_fields = previous.resource_fields;
    next.allowed_origins = previous.allowed_origins;
    if next.scopes_supported.is_empty() {
        next.scopes_supported = previous.scopes_supported;
    }
    if next.resource_documentation.is_empty() {
        next.resource_documentation = previous.resource_documentation;
    }
}

fn view(hostname: String, auth: Option<&ProxyAuth>) -> ProxyResourceView {
    let Some(a) = auth else {
        return ProxyResourceView {
            hostname,
            protected: false,
            endpoint: String::new(),
            scopes_supported: vec![],
            resource_documentation: String::new(),
            fields: serde_json::Map::new(),
            allowed_origins: vec![],
        };
    };
    ProxyResourceView {
        hostname,
        protected: true,
        endpoint: a.resource_endpoint.clone(),
        scopes_supported: a.scopes_supported.clone(),
        resource_documentation: a.resource_documentation.clone(),
        fields: a.resource_fields.clone(),
        allowed_origins: a.allowed_origins.clone(),
    }
}

/// Validates `input` and sets it as the resource settings of `auth` (replacing them all).
pub(crate) fn apply_resource(auth: &mut ProxyAuth, input: ProxyResourceInput) -> Result<()> {
    validate_resource(input)?.apply(auth);
    Ok(())
}

fn validate_resource(input: ProxyResourceInput) -> Result<ResourceSettings> {
    Ok(ResourceSettings {
        endpoint: endpoint(input.endpoint.as_deref().unwrap_or_default())?,
        scopes_supported: validate::scopes(
            "scopes_supported",
            &input.scopes_supported.unwrap_or_default(),
        )?,
        resource_documentation: validate::doc_url(
            "resource_documentation",
            input.resource_documentation.as_deref().unwrap_or_default(),
        )?,
        fields: fields(input.fields.unwrap_or_default())?,
        allowed_origins: origins(&input.allowed_origins.unwrap_or_default())?,
    })
}

/// An absolute, clean path other than `/`, without a trailing slash: the same rules as
/// public paths, so an upstream cannot normalise another path into the endpoint.
fn endpoint(raw: &str) -> Result<String> {
    const FIELD: &str = "endpoint";
    if raw.is_empty() {
        return Ok(String::new());
    }
    let path = raw.trim_end_matches('/');
    if path.is_empty() {
        return Err(ServiceError::invalid(
            FIELD,
            "\"/\" is the whole proxy; leave the endpoint empty instead",
        ));
    }
    let clean = path.starts_with('/')
        && path.len() <= 256
        && !path
            .bytes()
            .any(|b| b.is_ascii_control() || matches!(b, b' ' | b'?' | b'#' | b'%' | b'\\' | b'"'))
        && !path.split('/').any(|seg| seg == "." || seg == "..");
    if !clean {
        return Err(ServiceError::invalid(
            FIELD,
            format!(
                "{raw:?} must start with '/', be at most 256 characters, and contain no '.' or '..' segments, '%', '\\', '?', '#', '\"', spaces or control characters"
            ),
        ));
    }
    Ok(path.to_owned())
}

/// Custom metadata fields: none of the fields Portcullis sets itself, bounded in number
/// and size.
fn fields(
    fields: serde_json::Map<String, serde_json::Value>,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    const FIELD: &str = "fields";
    if let Some(owned) = fields.keys().find(|k| OWNED_FIELDS.contains(&k.as_str())) {
        return Err(ServiceError::invalid(
            FIELD,
            format!("{owned:?} is set by Portcullis or by its own option, not as a custom field"),
        ));
    }
    if let Some(empty) = fields.keys().find(|k| k.is_empty()) {
        return Err(ServiceError::invalid(
            FIELD,
            format!("{empty:?}: field names must not be empty"),
        ));
    }
    let size = serde_json::to_string(&fields).map_or(usize::MAX, |s| s.len());
    if fields.len() > MAX_FIELDS || size > MAX_FIELDS_JSON {
        return Err(ServiceError::invalid(
            FIELD,
            "at most 32 fields and 8 KiB of JSON",
        ));
    }
    Ok(fields)
}

/// Browser origins, normalised to what browsers send: lowercase `scheme://host[:port]`
/// without default port or path. No wildcard: the allowlist exists to refuse other sites.
fn origins(raw: &[String]) -> Result<Vec<String>> {
    const FIELD: &str = "allowed_origins";
    if raw.len() > MAX_ORIGINS {
        return Err(ServiceError::invalid(FIELD, "at most 32 origins"));
    }
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for o in raw {
        let bad = || {
            ServiceError::invalid(
                FIELD,
                format!(
                    "{o:?} is not an origin like https://app.example.com[:port] (no path, no wildcard)"
                ),
            )
        };
        if o.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(bad());
        }
        let url = url::Url::parse(o).map_err(|_| bad())?;
        let plain = matches!(url.scheme(), "http" | "https")
            && url
                .host_str()
                .is_some_and(|h| !h.is_empty() && !h.contains('*'))
            && url.username().is_empty()
            && url.password().is_none()
            && url.path() == "/"
            && url.query().is_none()
            && url.fragment().is_none();
        if !plain {
            return Err(bad());
        }
        let origin = url.origin().ascii_serialization();
        if !out.contains(&origin) {
            out.push(origin);
        }
    }
    Ok(out)
}

// === impl ResourceSettings ===

impl ResourceSettings {
    fn none() -> Self {
        Self {
            endpoint: String::new(),
            scopes_supported: vec![],
            resource_documentation: String::new(),
            fields: serde_json::Map::new(),
            allowed_origins: vec![],
        }
    }

    fn apply(self, auth: &mut ProxyAuth) {
        auth.resource_endpoint = self.endpoint;
        auth.scopes_supported = self.scopes_supported;
        auth.resource_documentation = self.resource_documentation;
        auth.resource_fields = self.fields;
        auth.allowed_origins = self.allowed_origins;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_clean_paths() {
        assert_eq!(endpoint("/mcp/").ok().as_deref(), Some("/mcp"));
        assert_eq!(endpoint("").ok().as_deref(), Some(""));
        for bad in [
            "/", "mcp", "/a/../b", "/a%2f", "/a?x", "/a b", " /mcp", "/mcp\n",
        ] {
            assert!(endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origins_are_normalised_and_strict() {
        let ok = origins(&[
            "HTTPS://App.Example.com:443".into(),
            "http://localhost:6274/".into(),
        ]);
        assert_eq!(
            ok.ok(),
            Some(vec![
                "https://app.example.com".to_owned(),
                "http://localhost:6274".to_owned()
            ])
        );
        for bad in [
            "*",
            "https://*.example.com",
            "https://a.example/path",
            "ftp://a",
            "https://u@a.example",
            "null",
            " https://a.example",
            "https://a.example\n",
        ] {
            assert!(origins(&[bad.into()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn owned_fields_are_refused() {
        let mut m = serde_json::Map::new();
        m.insert("authorization_servers".into(), serde_json::json!(["x"]));
        assert!(fields(m).is_err());
        let mut m = serde_json::Map::new();
        m.insert("resource_name".into(), serde_json::json!("Echo"));
        assert!(fields(m).is_ok());
    }
}
