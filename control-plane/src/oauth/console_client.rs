//! The web console's built-in OAuth client: how a user who logs in through GitHub or an
//! OpenID Connect provider signs in to `/ui/` without pasting a token.
//!
//! Like the edge's `portcullis-edge:HOST` clients it is built in, not registered: the
//! public client [`CONSOLE_CLIENT_ID`] (PKCE S256, authorization code only), first party
//! (no consent page), whose only redirect URI is the issuer's own [`CALLBACK_PATH`]. The
//! console asks for no `resource`, so the access token's audience is the issuer — the
//! control plane's API — and it authenticates API calls only with the `admin` or `user`
//! scope (the login rules decide; see `authenticator`).

use super::{ClientRecord, OAuthServer, TokenEndpointAuth};

/// The console's client id.
pub const CONSOLE_CLIENT_ID: &str = "portcullis-console";

/// Where the authorization response comes back, on the issuer's origin.
pub const CALLBACK_PATH: &str = "/ui/callback";

/// The console's redirect URI.
pub fn redirect_uri(server: &OAuthServer) -> String {
    format!("{}{CALLBACK_PATH}", server.issuer())
}

/// The built-in client, `None` for any other client id.
pub fn resolve(server: &OAuthServer, client_id: &str) -> Option<ClientRecord> {
    (client_id == CONSOLE_CLIENT_ID).then(|| ClientRecord {
        client_id: CONSOLE_CLIENT_ID.into(),
        secret_sha256: String::new(),
        registration_token_sha256: String::new(),
        redirect_uris: vec![redirect_uri(server)],
        token_endpoint_auth_method: TokenEndpointAuth::None,
        grant_types: vec!["authorization_code".into()],
        application_type: "web".into(),
        client_name: Some("Portcullis console".into()),
        client_uri: Some(server.issuer().to_owned()),
        scope: None,
        created_at: 0,
        metadata_document: false,
        // Built in: its name is ours.
        admin_registered: true,
    })
}
