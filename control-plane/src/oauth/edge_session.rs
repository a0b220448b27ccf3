//! The authorization server's side of `redirect` mode (browser login at the edge).
//!
//! A proxy in `redirect` mode logs browsers in as an OAuth client of this server. That
//! client is built in, not registered: its id is [`EDGE_CLIENT_PREFIX`] + the proxy's
//! hostname, it is public (PKCE S256 only) and its only redirect URIs are the proxy's own
//! [`CALLBACK_PATH`] on the public ports the connected data planes announced (the port a
//! browser's Host header names never counts). It exists exactly while the proxy is enabled
//! and in `redirect` mode, so enabling the mode is the only step an operator takes.
//!
//! Data planes seal the login and session cookies with a per-proxy key derived from the
//! master key ([`with_session_key`]); it only ever travels in snapshots.

use portcullis_proto::v1 as pb;

use super::{ClientRecord, ErrorCode, OAuthError, OAuthServer, TokenEndpointAuth};
use crate::model::{AuthMode, DataPlaneRecord, Proxy};
use crate::secrets::MasterKey;
use crate::service::edge_callback_ports;
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

/// The edge client's redirect URIs: `https://{host}[:port]/.portcullis/callback` for
/// every public HTTPS port of a connected data plane, and the `http://` ones of their
/// HTTP ports when `plain_http` (the proxy serves plain HTTP without redirecting it).
/// Default ports are left out, as data planes leave them out of the URIs they send.
///
/// Only ports data planes announced count, never one a browser's Host header named: a
/// callback on any other port of the host could be another program's, and would receive
/// this client's codes (exact matching stays; this only says what to match).
fn callback_uris(host: &str, dataplanes: &[DataPlaneRecord], plain_http: bool) -> Vec<String> {
    let uri = |scheme: &str, port: u16, default: u16| {
        if port == default {
            format!("{scheme}://{host}{CALLBACK_PATH}")
        } else {
            format!("{scheme}://{host}:{port}{CALLBACK_PATH}")
        }
    };
    let (https, http) = edge_callback_ports(dataplanes);
    let mut uris: Vec<String> = https.iter().map(|&p| uri("https", p, 443)).collect();
    if plain_http {
        uris.extend(http.iter().map(|&p| uri("http", p, 80)));
    }
    uris
}

/// The built-in client for `client_id`, `None` when it is not an edge client id.
///
/// Unknown hosts, disabled proxies and proxies in another mode are `invalid_client`.
/// Plain-HTTP callbacks are allowed only while the proxy still serves plain HTTP
/// without redirecting it to HTTPS (loopback and test setups). Redirect URIs are on the
/// ports connected data planes announced ([`callback_uris`]); with none connected there
/// are none, and `/authorize` refuses every redirect URI.
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
    let unknown = || OAuthError::new(ErrorCode::InvalidClient, "unknown client_id");
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
    let dataplanes: Vec<DataPlaneRecord> = server.list(Collection::DataPlanes).await?;
    let plain_http = proxy.enable_http && !proxy.redirect_http_to_https;
    let redirect_uris = callback_uris(host, &dataplanes, plain_http);
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
        admin_registered: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dp(connected: bool, http: u16, https: u16) -> DataPlaneRecord {
        DataPlaneRecord {
            node_id: format!("dp-{http}-{https}"),
            address: String::new(),
            applied_version: 0,
            last_nack_error: String::new(),
            last_nack_version: 0,
            last_seen: 0,
            connected,
            software_version: String::new(),
            http_public_port: http,
            https_public_port: https,
        }
    }

    #[test]
    fn callbacks_are_on_the_announced_ports_of_connected_data_planes_only() {
        let planes = [
            dp(true, 8080, 8443),
            dp(true, 80, 443),
            dp(true, 8080, 0),
            // Gone: its ports are nobody's now.
            dp(false, 9999, 9443),
        ];
        assert_eq!(
            callback_uris("app.example", &planes, true),
            [
                "https://app.example/.portcullis/callback",
                "https://app.example:8443/.portcullis/callback",
                "http://app.example/.portcullis/callback",
                "http://app.example:8080/.portcullis/callback",
            ]
        );
        // Plain HTTP redirected (or off): HTTPS callbacks only.
        assert_eq!(
            callback_uris("app.example", &planes[2..], false),
            Vec::<String>::new()
        );
        assert_eq!(
            callback_uris("app.example", &planes[..1], false),
            ["https://app.example:8443/.portcullis/callback"]
        );
        // No data plane connected: no callback at all.
        assert!(callback_uris("app.example", &planes[3..], true).is_empty());
    }

    #[test]
    fn a_data_plane_that_announces_no_ports_counts_as_serving_the_defaults() {
        assert_eq!(
            callback_uris("app.example", &[dp(true, 0, 0)], true),
            [
                "https://app.example/.portcullis/callback",
                "http://app.example/.portcullis/callback",
            ]
        );
    }
}
