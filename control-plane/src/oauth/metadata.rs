//! Authorization server metadata (RFC 8414) and its OpenID Connect discovery twin.

use super::params::{DEVICE_GRANT, known_scopes};
use super::{OAuthError, OAuthServer};

/// The metadata document; `issuer` is exactly the configured issuer.
pub async fn document(
    server: &OAuthServer,
    host: Option<&str>,
) -> Result<serde_json::Value, OAuthError> {
    let mut doc = base(server).await?;
    let host = host.map(|h| {
        match h.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => h,
        }
        .to_ascii_lowercase()
    });
    if let Some(host) = host
        && let Some((s, _)) = server
            .get::<super::ProxyOAuthSettings>(crate::store::Collection::OAuthProxySettings, &host)
            .await?
        && let Some(obj) = doc.as_object_mut()
    {
        for (k, v) in s.metadata {
            obj.insert(k, v);
        }
    }
    Ok(doc)
}

async fn base(server: &OAuthServer) -> Result<serde_json::Value, OAuthError> {
    let iss = server.issuer();
    Ok(serde_json::json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "registration_endpoint": format!("{iss}/register"),
        "revocation_endpoint": format!("{iss}/revoke"),
        "introspection_endpoint": format!("{iss}/introspect"),
        "userinfo_endpoint": format!("{iss}/userinfo"),
        "jwks_uri": format!("{iss}/jwks"),
        "scopes_supported": known_scopes(server).await?,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", DEVICE_GRANT],
        "device_authorization_endpoint": format!("{iss}/device_authorization"),
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "client_id_metadata_document_supported": true,
        "authorization_response_iss_parameter_supported": true,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [server.settings().signing_alg.as_str()],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "auth_time", "client_id", "scope", "preferred_username", "name", "email", "groups", "idp"],
    }))
}
