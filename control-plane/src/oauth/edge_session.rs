//! The authorization server's side of `redirect` mode (browser login at the edge).
//!
//! A proxy in `redirect` mode logs browsers in as an OAuth client of this server. That
//! client is built in, not registered: its id is [`EDGE_CLIENT_PREFIX`] + the proxy's
//! hostname, it is public (PKCE S256 only) and its only redirect URI is the proxy's own
//! [`CALLBACK_PATH`]. It exists exactly while the proxy is enabled and in `redirect` mode,
//! so enabling the mode is the only step an operator takes.
//!
//! Data planes seal the login and session cookies with a per-proxy key derived from the
//! master key ([`with_session_key`]); it only ever travels in snapshots.

use portcullis_proto::v1 as pb;

use super::{ClientRecord, OAuthError, OAuthServer, TokenEndpointAuth};
use crate::model::{AuthMode, Proxy};
use crate::secrets::MasterKey;
use crate::store::Collection;

/// Client ids of the built-in per-proxy clients start with this; the rest is the hostname.
pub const EDGE_CLIENT_PREFIX: &str = "portcullis-edge:";

/// Where the data plane takes the authorization response (reserved on redirect-mode
/// proxies, like oauth2-proxy's `/oauth2/`).
pub const CALLBACK_PATH: &str = "/.portcullis/callback";

/// HKDF label of the cookie-sealing keys.
const SESSION_KEY_LABEL: &str = "portcullis edge session cookie v1";

/// Whether `client_id` names a built-in edge client (first party: no consent page).
pub fn is_edge_client(client_id: &str) -> bool {
    client_id.starts_with(EDGE_CLIENT_PREFIX)
}

/// Fills the cookie key of a redirect-mode proxy going into a snapshot. Admin answers are
/// built from the model and never carry it.
pub fn with_session_key(mut proxy: pb::ProxyTarget, key: &MasterKey) -> pb::ProxyTarget {
    if let Some(auth) = proxy.auth.as_mut()
        && auth.enabled
        && auth.mode == "redirect"
    {
        auth.session_key = key.derive(SESSION_KEY_LABEL, &proxy.hostname).to_vec();
    }
    proxy
}

/// The built-in client for `client_id`, `None` when it is not an edge client id.
///
/// Unknown hosts, disabled proxies and proxies in another mode are `invalid_client`.
/// Plain-HTTP callbacks are allowed only while the proxy still serves plain HTTP
/// without redirecting it to HTTPS (loopback and test setups).
pub async fn resolve(
    server: &OAuthServer,
    client_id: &str,
) -> Option<Result<ClientRecord, OAuthError>> {
    let host = client_id.strip_prefix(EDGE_CLIENT_PREFIX)?;
    Some(resolve_host(server, client_id, host).await)
}

async fn resolve_host(
    server: &OAuthServer,
    client_id: &str,
    host: &str,
) -> Result<ClientRecord, OAuthError> {
    let unknown = || OAuthError::new("invalid_client", "unknown client_id");
    if host.is_empty() || host.starts_with("*.") {
        return Err(unknown());
    }
    let (proxy, _) = server
        .get::<Proxy>(Collection::Proxies, host)
        .await?
        .ok_or_else(unknown)?;
    let redirect_mode = proxy
        .auth
        .as_ref()
        .is_some_and(|a| a.mode == AuthMode::Redirect);
    if !proxy.enabled || !redirect_mode {
        return Err(unknown());
    }
    let mut redirect_uris = vec![format!("https://{host}{CALLBACK_PATH}")];
    if proxy.enable_http && !proxy.redirect_http_to_https {
        redirect_uris.push(format!("http://{host}{CALLBACK_PATH}"));
    }
    Ok(ClientRecord {
        client_id: client_id.to_owned(),
        secret_sha256: String::new(),
        registration_token_sha256: String::new(),
        redirect_uris,
        token_endpoint_auth_method: TokenEndpointAuth::None,
        grant_types: vec!["authorization_code".into()],
        application_type: "web".into(),
        client_name: Some(host.to_owned()),
        client_uri: Some(format!("https://{host}")),
        scope: None,
        created_at: proxy.created_at,
        metadata_document: false,
    })
}
