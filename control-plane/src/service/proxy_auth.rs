//! Edge-auth policy of a proxy: stored on the proxy record, sent to data planes in the
//! snapshot, written with the same ownership rules as any other proxy change.

use super::*;
use crate::model::validate;
use crate::model::{AuthMode, ProxyAuth, ProxyAuthInput, ProxyAuthView};

impl ControlPlane {
    /// Protects a proxy the caller owns, replacing any previous policy (its resource
    /// settings are kept, see `proxy_resource`). Every field is validated before anything
    /// is written.
    pub async fn set_proxy_auth(
        &self,
        caller: &Caller,
        hostname: &str,
        input: ProxyAuthInput,
    ) -> Result<ProxyAuthView> {
        let auth = validate_auth(input)?;
        let proxy = self
            .modify_proxy(caller, hostname, |p| {
                let mut next = auth.clone();
                super::proxy_resource::keep_resource(p.auth.take(), &mut next);
                p.auth = Some(next);
                Ok(())
            })
            .await?;
        Ok(view(proxy.hostname, proxy.auth))
    }

    /// The proxy's policy; `enabled: false` when it is unprotected.
    pub async fn get_proxy_auth(&self, caller: &Caller, hostname: &str) -> Result<ProxyAuthView> {
        let proxy = self.get_proxy(caller, hostname).await?;
        Ok(view(proxy.hostname, proxy.auth))
    }

    /// Removes the protection of a proxy the caller owns (idempotent).
    pub async fn clear_proxy_auth(&self, caller: &Caller, hostname: &str) -> Result<()> {
        self.modify_proxy(caller, hostname, |p| {
            p.auth = None;
            Ok(())
        })
        .await?;
        Ok(())
    }
}

fn view(hostname: String, auth: Option<ProxyAuth>) -> ProxyAuthView {
    ProxyAuthView {
        hostname,
        enabled: auth.is_some(),
        auth,
    }
}

fn validate_auth(input: ProxyAuthInput) -> Result<ProxyAuth> {
    let auth_host = validate::hostname("auth_host", &input.auth_host)?;
    if auth_host.starts_with("*.") {
        return Err(ServiceError::invalid(
            "auth_host",
            "must be one host name, not a wildcard",
        ));
    }
    let public_paths = validate::public_paths(&input.public_paths.unwrap_or_default())?;
    if input.mode == AuthMode::Passthrough && !public_paths.is_empty() {
        return Err(ServiceError::invalid(
            "public_paths",
            "passthrough mode never refuses a request, so public paths have no effect",
        ));
    }
    Ok(ProxyAuth {
        mode: input.mode,
        auth_host,
        required_scopes: validate::scopes(
            "required_scopes",
            &input.required_scopes.unwrap_or_default(),
        )?,
        public_paths,
        scopes_supported: validate::scopes(
            "scopes_supported",
            &input.scopes_supported.unwrap_or_default(),
        )?,
        resource_documentation: validate::doc_url(
            "resource_documentation",
            input.resource_documentation.as_deref().unwrap_or_default(),
        )?,
        resource_endpoint: String::new(),
        resource_fields: serde_json::Map::new(),
        allowed_origins: vec![],
    })
}
