//! The token endpoint, introspection and revocation over a real embedded store, with a
//! manual clock: expiry and revocation cut-offs without sleeping.

use std::time::Duration;

use super::*;
use crate::oauth::{ManualClock, OAuthSettings, TokenEndpointAuth};
use crate::service::ControlPlane;
use crate::store::Store;

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const REDIRECT: &str = "https://app.example/cb";

struct Fixture {
    server: OAuthServer,
    clock: ManualClock,
    client: Presented,
    _dir: tempfile::TempDir,
}

/// A server whose access tokens live 60 s, a confidential client allowed to refresh.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::new(Store::open_embedded(dir.path()).unwrap())
        .await
        .unwrap();
    let clock = ManualClock::new(1_800_000_000);
    let settings = OAuthSettings {
        access_ttl: Duration::from_secs(60),
        ..OAuthSettings::default()
    };
    let server = OAuthServer::with_clock(cp, settings, clock.clone().into()).unwrap();
    keys::ensure(&server).await.unwrap();
    let record = ClientRecord {
        client_id: "app".into(),
        secret_sha256: sha256_hex("app-secret"),
        registration_token_sha256: String::new(),
        redirect_uris: vec![REDIRECT.into()],
        token_endpoint_auth_method: TokenEndpointAuth::ClientSecretBasic,
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        application_type: "web".into(),
        client_name: None,
        client_uri: None,
        scope: None,
        created_at: 0,
        metadata_document: false,
        admin_registered: false,
    };
    server
        .apply(Batch {
            checks: vec![],
            writes: vec![put(Collection::OAuthClients, "app", &record)],
        })
        .await
        .unwrap();
    Fixture {
        server,
        clock,
        client: Presented {
            client_id: Some("app".into()),
            client_secret: Some("app-secret".into()),
            via_basic: true,
        },
        _dir: dir,
    }
}

fn alice() -> Identity {
    Identity {
        idp: "github".into(),
        sub: "github:1".into(),
        login: "alice".into(),
        email: None,
        name: None,
        groups: vec![],
    }
}

/// Stores a fresh authorization code for alice (as `/authorize` would) and returns it.
async fn code_for(fx: &Fixture) -> String {
    let code = random_token();
    let record = CodeRecord {
        client_id: "app".into(),
        redirect_uri: REDIRECT.into(),
        code_challenge: CHALLENGE.into(),
        scopes: vec!["openid".into()],
        resources: vec![],
        identity: alice(),
        auth_time: fx.clock.now(),
        expires_at: fx.clock.now() + 60,
        used_by_family: None,
    };
    fx.server
        .apply(Batch {
            checks: vec![],
            writes: vec![put(Collection::OAuthCodes, &sha256_hex(&code), &record)],
        })
        .await
        .unwrap();
    code
}

async fn login(fx: &Fixture) -> TokenResponse {
    let req = TokenRequest {
        grant_type: Some("authorization_code".into()),
        code: Some(code_for(fx).await),
        redirect_uri: Some(REDIRECT.into()),
        code_verifier: Some(VERIFIER.into()),
        ..TokenRequest::default()
    };
    token(&fx.server, &fx.client, req).await.unwrap()
}

async fn active(fx: &Fixture, token: &str) -> serde_json::Value {
    introspect(&fx.server, &fx.client, token).await.unwrap()["active"].clone()
}

#[tokio::test]
async fn access_tokens_carry_the_clock_and_expire_after_the_leeway() {
    let fx = fixture().await;
    let t0 = fx.clock.now();
    let t = login(&fx).await;
    assert_eq!(t.expires_in, 60);
    let claims = verify_access_token(&fx.server, &t.access_token)
        .await
        .unwrap();
    assert_eq!((claims.iat, claims.nbf, claims.exp), (t0, t0, t0 + 60));
    assert_eq!(claims.aud, vec![fx.server.issuer().to_owned()]);
    // Valid through exp plus the leeway, then inactive.
    fx.clock.advance(60 + LEEWAY_SECS);
    assert_eq!(active(&fx, &t.access_token).await, true);
    fx.clock.advance(1);
    assert_eq!(active(&fx, &t.access_token).await, false);
    let e = verify_access_token(&fx.server, &t.access_token)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidToken);
    assert_eq!(e.description, "token rejected: ExpiredSignature");
    let e = userinfo(&fx.server, &t.access_token).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidToken);
}

#[tokio::test]
async fn tokens_from_the_future_are_refused_beyond_the_leeway() {
    let fx = fixture().await;
    let t = login(&fx).await;
    fx.clock.advance(-LEEWAY_SECS);
    assert_eq!(active(&fx, &t.access_token).await, true);
    fx.clock.advance(-1);
    let e = verify_access_token(&fx.server, &t.access_token)
        .await
        .unwrap_err();
    assert_eq!(e.description, "token rejected: ImmatureSignature");
}

#[tokio::test]
async fn revoking_a_user_cuts_off_tokens_issued_up_to_that_second_only() {
    let fx = fixture().await;
    let before = login(&fx).await;
    // Issued in the same second as the cut-off: `iat` has whole seconds, so it cannot be
    // told apart from one issued just before the revocation; it is revoked too.
    crate::oauth::revocation::revoke_all_of(&fx.server, RevokedKind::Subject, "github:1")
        .await
        .unwrap();
    let same_second = login(&fx).await;
    fx.clock.advance(1);
    let after = login(&fx).await;
    for (t, want) in [(&before, false), (&same_second, false), (&after, true)] {
        assert_eq!(active(&fx, &t.access_token).await, want);
    }
    // The families went with the user's tokens: their refresh tokens are dead too.
    let refresh = |t: &TokenResponse| TokenRequest {
        grant_type: Some("refresh_token".into()),
        refresh_token: t.refresh_token.clone(),
        ..TokenRequest::default()
    };
    let e = token(&fx.server, &fx.client, refresh(&before))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidGrant);
    assert!(token(&fx.server, &fx.client, refresh(&after)).await.is_ok());
}

#[tokio::test]
async fn codes_expire_by_the_clock_and_are_single_use() {
    let fx = fixture().await;
    let req = |code: String| TokenRequest {
        grant_type: Some("authorization_code".into()),
        code: Some(code),
        redirect_uri: Some(REDIRECT.into()),
        code_verifier: Some(VERIFIER.into()),
        ..TokenRequest::default()
    };
    let stale = code_for(&fx).await;
    fx.clock.advance(61);
    let e = token(&fx.server, &fx.client, req(stale)).await.unwrap_err();
    assert_eq!(
        (e.code, e.description.as_str()),
        (ErrorCode::InvalidGrant, "the code is invalid or expired")
    );
    let code = code_for(&fx).await;
    let first = token(&fx.server, &fx.client, req(code.clone()))
        .await
        .unwrap();
    let e = token(&fx.server, &fx.client, req(code)).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidGrant);
    // The replay revoked what the code issued.
    assert_eq!(active(&fx, &first.access_token).await, false);
}

#[tokio::test]
async fn refresh_rotates_and_the_family_ends_with_its_lifetime() {
    let fx = fixture().await;
    let t = login(&fx).await;
    let refresh = |rt: &str| TokenRequest {
        grant_type: Some("refresh_token".into()),
        refresh_token: Some(rt.to_owned()),
        ..TokenRequest::default()
    };
    let first = t.refresh_token.clone().unwrap();
    let second = token(&fx.server, &fx.client, refresh(&first))
        .await
        .unwrap();
    let second_rt = second.refresh_token.clone().unwrap();
    assert_ne!(second_rt, first);
    // The sliding lifetime (30 days by default) restarts at each refresh, then ends.
    fx.clock.advance(30 * 86400 + 1);
    let e = token(&fx.server, &fx.client, refresh(&second_rt))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.description.as_str()),
        (ErrorCode::InvalidGrant, "the refresh token has expired")
    );
}

#[tokio::test]
async fn introspection_needs_a_confidential_client_and_hides_foreign_tokens() {
    let fx = fixture().await;
    let t = login(&fx).await;
    let public = Presented {
        client_id: Some(crate::oauth::clients::CLI_CLIENT_ID.into()),
        client_secret: None,
        via_basic: false,
    };
    let e = introspect(&fx.server, &public, &t.access_token)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidClient);
    let v = introspect(&fx.server, &fx.client, &t.access_token)
        .await
        .unwrap();
    assert_eq!(v["active"], true);
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["username"], "alice");
    let v = introspect(&fx.server, &fx.client, t.refresh_token.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(v["token_type"], "refresh_token");
    assert_eq!(active(&fx, "not-a-token").await, false);
    // Revoking the access token (RFC 7009) makes it inactive.
    revoke(&fx.server, &fx.client, &t.access_token)
        .await
        .unwrap();
    assert_eq!(active(&fx, &t.access_token).await, false);
}
