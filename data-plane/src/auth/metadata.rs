//! OAuth 2.0 Protected Resource Metadata (RFC 9728) and the `WWW-Authenticate`
//! challenges that point clients at it.
//!
//! The document is served at `/.well-known/oauth-protected-resource` (resource = the
//! origin the client used) and at the path-suffixed form
//! `/.well-known/oauth-protected-resource/{path}` (resource = origin + `/{path}`), as
//! RFC 9728 §3.1 derives the metadata URL from the resource URL. `resource` and
//! `authorization_servers` are always ours: the URL the client used (§3.3 requires them to
//! match) and exactly the snapshot's issuer.

use http::HeaderValue;
use serde_json::{Map, Value};

use super::Origin;

/// The well-known path prefix of RFC 9728.
pub(crate) const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// Metadata fields the control plane may not override.
const RESERVED: [&str; 2] = ["resource", "authorization_servers"];

/// Why `resource_metadata_json` or a documentation URL was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MetadataError {
    /// Not a JSON object.
    #[error("must be a JSON object: {0}")]
    NotObject(String),
}

/// The metadata fields fixed per proxy (everything but `resource`), in output order.
#[derive(Debug)]
pub(crate) struct MetadataTemplate {
    fields: Map<String, Value>,
}

// === impl MetadataTemplate ===

impl MetadataTemplate {
    /// Merges the standard fields with the control plane's extra JSON object. Extra
    /// fields override standard ones, except the reserved `resource` and
    /// `authorization_servers`, which are ignored.
    pub(crate) fn new(
        issuer: &str,
        scopes_supported: &[Box<str>],
        resource_documentation: &str,
        extra_json: &str,
    ) -> Result<Self, MetadataError> {
        let mut fields = Map::new();
        fields.insert(
            "authorization_servers".into(),
            Value::from(if issuer.is_empty() {
                vec![]
            } else {
                vec![issuer.to_owned()]
            }),
        );
        if !scopes_supported.is_empty() {
            let scopes: Vec<Value> = scopes_supported.iter().map(|s| Value::from(&**s)).collect();
            fields.insert("scopes_supported".into(), Value::Array(scopes));
        }
        fields.insert(
            "bearer_methods_supported".into(),
            Value::from(vec!["header"]),
        );
        if !resource_documentation.is_empty() {
            fields.insert(
                "resource_documentation".into(),
                Value::from(resource_documentation),
            );
        }
        if !extra_json.trim().is_empty() {
            let extra: Value = serde_json::from_str(extra_json)
                .map_err(|e| MetadataError::NotObject(e.to_string()))?;
            let Value::Object(extra) = extra else {
                return Err(MetadataError::NotObject("found another JSON type".into()));
            };
            for (k, v) in extra {
                if !RESERVED.contains(&k.as_str()) {
                    fields.insert(k, v);
                }
            }
        }
        Ok(Self { fields })
    }

    /// The document for `resource`, as JSON text.
    pub(crate) fn render(&self, resource: &str) -> String {
        let mut doc = Map::with_capacity(self.fields.len() + 1);
        doc.insert("resource".into(), Value::from(resource));
        doc.extend(self.fields.iter().map(|(k, v)| (k.clone(), v.clone())));
        Value::Object(doc).to_string()
    }
}

/// For a request path under the well-known prefix, the resource path it describes:
/// `Some("")` for the root document, `Some("/mcp")` for the suffixed form. `None` when
/// the path is not a metadata path.
pub(crate) fn metadata_suffix(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(WELL_KNOWN)?;
    if rest.is_empty() || rest == "/" {
        return Some("");
    }
    rest.starts_with('/').then(|| rest.trim_end_matches('/'))
}

/// `scheme://authority` of the request: lowercase, default port dropped.
pub(crate) fn origin_url(origin: &Origin<'_>) -> String {
    let scheme = origin.scheme();
    let (host, port) = super::split_authority(origin.authority());
    let mut out = String::with_capacity(scheme.len() + 3 + origin.authority().len());
    out.push_str(scheme);
    out.push_str("://");
    out.extend(host.chars().map(|c| c.to_ascii_lowercase()));
    if let Some(port) = port.filter(|p| *p != origin.default_port()) {
        out.push(':');
        out.push_str(&port.to_string());
    }
    out
}

/// A `WWW-Authenticate: Bearer` challenge: `resource_metadata` (of the resource at
/// `resource_path`, `""` for the origin), then `scope` when the proxy requires scopes,
/// then the error when a token was sent.
pub(crate) fn challenge(
    origin: &Origin<'_>,
    resource_path: &str,
    scope_param: &str,
    error: Option<(&str, &str)>,
) -> HeaderValue {
    let mut value = format!(
        "Bearer resource_metadata=\"{}{WELL_KNOWN}{resource_path}\"",
        origin_url(origin)
    );
    if !scope_param.is_empty() {
        value.push_str(", scope=\"");
        value.push_str(scope_param);
        value.push('"');
    }
    if let Some((code, description)) = error {
        value.push_str(", error=\"");
        value.push_str(code);
        value.push_str("\", error_description=\"");
        value.push_str(description);
        value.push('"');
    }
    // Every part is a validated host, a scope token or a static text.
    HeaderValue::try_from(value).unwrap_or(HeaderValue::from_static("Bearer"))
}
