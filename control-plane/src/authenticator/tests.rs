//! Both kinds of credential over a real embedded store and a real signing key.

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
