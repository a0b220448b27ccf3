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

/// Turns a bearer secret into an API caller. Cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    cp: ControlPlane,
    oauth: OAuthServer,
}

impl Authenticator {
    /// API tokens from `cp`'s store, access tokens issued by `oauth`.
    pub fn new(cp: ControlPlane, oauth: OAuthServer) -> Self {
        Self { cp, oauth }
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
mod tests {
    use super::*;
    use crate::model::now;
    use crate::oauth::token::AccessClaims;
    use crate::oauth::{OAuthSettings, keys};
    use crate::store::Store;

    /// An authenticator over a fresh store, with an admin API token.
    async fn setup() -> (Authenticator, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let cp = ControlPlane::new(Store::open_embedded(dir.path()).unwrap())
            .await
            .unwrap();
        let admin = cp.bootstrap_admin_token().await.unwrap().unwrap();
        let oauth = OAuthServer::new(cp.clone(), OAuthSettings::default()).unwrap();
        keys::ensure(&oauth).await.unwrap();
        (Authenticator::new(cp, oauth), admin.secret, dir)
    }

    /// An access token signed by the server's key, as the token endpoint mints them.
    async fn access_token(authn: &Authenticator, aud: &str, scope: &str) -> String {
        let key = keys::active(&authn.oauth).await.unwrap();
        let t = now();
        let claims = AccessClaims {
            iss: authn.oauth.issuer().to_owned(),
            sub: "github:1".into(),
            aud: vec![aud.to_owned()],
            client_id: "portcullis-cli".into(),
            scope: scope.into(),
            exp: t + 60,
            iat: t,
            nbf: t,
            jti: "jti-1".into(),
            auth_time: t,
            idp: "github".into(),
            login: "alice".into(),
            email: None,
            name: None,
            groups: vec![],
        };
        let mut header = jsonwebtoken::Header::new(key.alg);
        header.typ = Some("at+jwt".into());
        header.kid = Some(key.kid);
        jsonwebtoken::encode(&header, &claims, &key.key).unwrap()
    }

    #[tokio::test]
    async fn api_tokens_and_access_tokens_for_the_api_authenticate() {
        let (authn, admin, _dir) = setup().await;
        let c = authn.api_caller(&admin).await.unwrap();
        assert_eq!(c.scope, TokenScope::Admin);
        assert!(c.token_id.starts_with("tok_"));
        let issuer = authn.oauth.issuer().to_owned();
        for (scope, want) in [
            ("openid admin", TokenScope::Admin),
            ("user admin", TokenScope::Admin),
            ("user", TokenScope::User),
        ] {
            let jwt = access_token(&authn, &issuer, scope).await;
            let c = authn.api_caller(&jwt).await.unwrap();
            assert_eq!((c.token_id.as_str(), c.scope), ("oauth:github:1", want));
        }
    }

    #[tokio::test]
    async fn other_credentials_are_refused_with_the_messages_of_their_kind() {
        let (authn, admin, _dir) = setup().await;
        let admin = authn.api_caller(&admin).await.unwrap();
        let input = crate::model::TokenInput {
            name: "edge".into(),
            scope: Some(TokenScope::Dataplane),
        };
        let dp = authn.cp.create_token(&admin, input).await.unwrap();
        assert!(matches!(
            authn.api_caller(&dp.secret).await,
            Err(ServiceError::Forbidden(m)) if m == "a data-plane enrolment token cannot use the admin API"
        ));
        let issuer = authn.oauth.issuer().to_owned();
        for jwt in [
            access_token(&authn, "https://mcp.example.com", "admin").await,
            access_token(&authn, &issuer, "openid mcp").await,
            "a.b.c".to_owned(),
        ] {
            assert!(
                matches!(
                    authn.api_caller(&jwt).await,
                    Err(ServiceError::Unauthenticated(m)) if m.starts_with("invalid, expired or revoked token, or it grants neither")
                ),
                "{jwt}"
            );
        }
        for secret in ["pcs_forged", "pcs_a.b.c", "no-dots", "a.b"] {
            assert!(
                matches!(
                    authn.api_caller(secret).await,
                    Err(ServiceError::Unauthenticated("invalid or revoked token"))
                ),
                "{secret}"
            );
        }
    }

    #[test]
    fn credentials_are_told_apart_by_shape() {
        assert_eq!(Credential::of("pcs_abc"), Credential::ApiToken("pcs_abc"));
        // Our prefix wins even when the rest looks like a JWS.
        assert_eq!(
            Credential::of("pcs_a.b.c"),
            Credential::ApiToken("pcs_a.b.c")
        );
        assert_eq!(Credential::of("h.p.s"), Credential::AccessToken("h.p.s"));
        // Neither: the store answers (and refuses).
        assert_eq!(Credential::of("a.b"), Credential::ApiToken("a.b"));
        assert_eq!(Credential::of("a.b.c.d"), Credential::ApiToken("a.b.c.d"));
    }
}
