//! Who is calling the admin APIs: the one place that knows both kinds of bearer credential,
//! owned by the adapters (gRPC, REST) that need a [`Caller`].
//!
//! - API tokens (`pcs_…`, made by the service layer) are checked against their stored hash by
//!   [`ControlPlane::authenticate_api`]; data-plane enrolment tokens are refused there.
//! - Access tokens from `portcullis login` are JWTs signed by our OAuth server; they count
//!   only when issued for the control plane itself (audience = the issuer) with the `admin`
//!   or `user` scope.
//!
//! It sits above the service layer and the OAuth server and is known to neither, so the two
//! never need each other to authenticate.

use crate::auth::{Caller, SECRET_PREFIX};
use crate::error::ServiceError;
use crate::model::TokenScope;
use crate::oauth::{OAuthServer, token};
use crate::service::ControlPlane;

/// Why an access token does not authenticate an API caller (signature, time, revocation,
/// audience or scope: one answer, so a caller learns nothing about which).
const BAD_ACCESS_TOKEN: ServiceError = ServiceError::Unauthenticated(
    "invalid, expired or revoked token, or it grants neither the admin nor the user scope",
);

/// A bearer credential, by its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credential<'a> {
    /// One of our API tokens, or anything that is not an access token (the store decides).
    ApiToken(&'a str),
    /// A compact JWS (`header.payload.signature`, RFC 7515 §7.1) without our API token
    /// prefix: an OAuth access token.
    AccessToken(&'a str),
}

impl<'a> Credential<'a> {
    fn of(secret: &'a str) -> Self {
        if !secret.starts_with(SECRET_PREFIX) && secret.split('.').count() == 3 {
            Self::AccessToken(secret)
        } else {
            Self::ApiToken(secret)
        }
    }
}

pub mod ui_session;

/// Turns a bearer secret (or a console session cookie) into an API caller. Cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    cp: ControlPlane,
    oauth: OAuthServer,
    sessions: ui_session::UiSessions,
}

impl Authenticator {
    /// API tokens from `cp`'s store, access tokens issued by `oauth`.
    pub fn new(cp: ControlPlane, oauth: OAuthServer) -> Self {
        // Browsers reach the console at the issuer's origin: HTTPS there means a Secure,
        // `__Host-` session cookie.
        let secure = oauth.issuer().starts_with("https://");
        Self {
            cp,
            oauth,
            sessions: ui_session::UiSessions::new(secure),
        }
    }

    /// The web console's sessions.
    pub fn sessions(&self) -> &ui_session::UiSessions {
        &self.sessions
    }

    /// Authenticates an API caller: an API token of any scope but `dataplane`, or an OAuth
    /// access token issued for this control plane with the `admin` or `user` scope.
    pub async fn api_caller(&self, secret: &str) -> Result<Caller, ServiceError> {
        match Credential::of(secret) {
            Credential::ApiToken(secret) => self.cp.authenticate_api(secret).await,
            Credential::AccessToken(jwt) => self.access_token(jwt).await.ok_or(BAD_ACCESS_TOKEN),
        }
    }

    /// The caller an access token stands for: audience = the issuer (the control plane's
    /// own resource), scope `admin` (preferred) or `user`.
    async fn access_token(&self, jwt: &str) -> Option<Caller> {
        let claims = token::verify_access_token(&self.oauth, jwt).await.ok()?;
        if !claims.aud.iter().any(|a| a == self.oauth.issuer()) {
            return None;
        }
        let scopes: Vec<&str> = claims.scope.split(' ').collect();
        let scope = if scopes.contains(&"admin") {
            TokenScope::Admin
        } else if scopes.contains(&"user") {
            TokenScope::User
        } else {
            return None;
        };
        Some(Caller {
            token_id: format!("oauth:{}", claims.sub),
            scope,
        })
    }
}

#[cfg(test)]
mod tests;
