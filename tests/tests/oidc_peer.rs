//! The real OpenID Provider (`oidc-provider` under Node) runs and completes the authorization
//! code flow with PKCE the way our control plane will use it: discovery, authorize, token
//! exchange, ID Token (signature checked against the JWKS), userinfo.

use std::collections::HashMap;

use base64::Engine as _;
use portcullis_tests::http_client;
use portcullis_tests::oidc::{ALICE, BOB, OidcProvider, OidcUser};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::Digest as _;

const CLIENT: &str = "portcullis-cp";
const SECRET: &str = "oidc-client-secret-0123456789";
const REDIRECT: &str = "http://127.0.0.1:9/oauth/oidc/callback";

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .expect("base64url")
}

fn pkce() -> (String, String) {
    let verifier =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&verifier));
    (verifier, challenge)
}

async fn discovery(op: &OidcProvider) -> Value {
    http_client()
        .get(op.discovery_url())
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON body")
}

fn authorize_url(meta: &Value, extra: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(
        meta["authorization_endpoint"]
            .as_str()
            .expect("authorization_endpoint"),
    )
    .expect("authorization_endpoint URL");
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", "openid email profile groups")
        .extend_pairs(extra);
    url.to_string()
}

async fn token(meta: &Value, secret: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let r = http_client()
        .post(
            meta["token_endpoint"]
                .as_str()
                .expect("token_endpoint in discovery"),
        )
        .basic_auth(CLIENT, Some(secret))
        .form(form)
        .send()
        .await
        .expect("request");
    (r.status(), r.json().await.expect("JSON body"))
}

/// Checks the ID Token's RS256 signature with the provider's JWKS; returns its claims.
async fn verify_id_token(meta: &Value, jwt: &str) -> Value {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "compact JWS");
    let header: Value = serde_json::from_slice(&b64(parts[0])).expect("JSON in JWT part");
    assert_eq!(header["alg"], "RS256");
    let jwks: Value = http_client()
        .get(meta["jwks_uri"].as_str().expect("jwks_uri in discovery"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON body");
    let key = jwks["keys"]
        .as_array()
        .expect("JWKS keys array")
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("signing key in JWKS");
    assert!(
        key.get("d").is_none(),
        "JWKS must not publish the private key"
    );
    let n = b64(key["n"].as_str().expect("n"));
    let e = b64(key["e"].as_str().expect("e"));
    aws_lc_rs::signature::RsaPublicKeyComponents { n: &n, e: &e }
        .verify(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &b64(parts[2]),
        )
        .expect("ID Token signature verifies");
    serde_json::from_slice(&b64(parts[1])).expect("JSON in JWT part")
}

/// Runs the whole flow for whoever the provider logs in; returns (ID Token claims, userinfo).
async fn full_flow(op: &OidcProvider, extra: &[(&str, &str)]) -> (Value, Value) {
    let meta = discovery(op).await;
    let (verifier, challenge) = pkce();
    let mut params = vec![
        ("state", "st-123"),
        ("nonce", "n-456"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    params.extend_from_slice(extra);
    let back = op.login(&authorize_url(&meta, &params)).await;
    assert!(back.as_str().starts_with(REDIRECT), "{back}");
    let q: HashMap<String, String> = back.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "st-123");
    assert_eq!(q["iss"], op.issuer, "RFC 9207 iss parameter");
    let code = q.get("code").unwrap_or_else(|| panic!("no code: {back}"));

    let (status, tok) = token(
        &meta,
        SECRET,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tok}");
    assert_eq!(tok["token_type"], "Bearer");
    assert!(tok["expires_in"].as_u64().expect("expires_in") > 0);
    let id = verify_id_token(&meta, tok["id_token"].as_str().expect("id_token")).await;
    assert_eq!(id["iss"], op.issuer);
    assert_eq!(id["aud"], CLIENT);
    assert_eq!(id["nonce"], "n-456");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    assert!(id["exp"].as_u64().expect("exp") > now);

    let access = tok["access_token"].as_str().expect("access_token");
    let info: Value = http_client()
        .get(
            meta["userinfo_endpoint"]
                .as_str()
                .expect("userinfo_endpoint in discovery"),
        )
        .bearer_auth(access)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON body");
    // The code is single-use, and replaying it revokes what it gave (RFC 6749 §4.1.2).
    let (status, again) = token(
        &meta,
        SECRET,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(again["error"], "invalid_grant");

    let r = http_client()
        .get(
            meta["userinfo_endpoint"]
                .as_str()
                .expect("userinfo_endpoint in discovery"),
        )
        .bearer_auth(access)
        .send()
        .await
        .expect("request");
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "token revoked after code replay"
    );
    (id, info)
}

fn assert_claims(info: &Value, user: &OidcUser) {
    assert_eq!(info["sub"], user.sub);
    assert_eq!(info["email"], user.email);
    assert_eq!(info["email_verified"], user.email_verified);
    assert_eq!(info["name"], user.name);
    assert_eq!(info["preferred_username"], user.username);
    assert_eq!(info["groups"], serde_json::json!(user.groups));
}

#[tokio::test]
async fn authorization_code_flow_with_pkce_yields_verified_id_token_and_userinfo() {
    let op = OidcProvider::start(CLIENT, SECRET, &[REDIRECT], Some("alice")).await;
    let meta = discovery(&op).await;
    assert_eq!(meta["issuer"], op.issuer);
    assert_eq!(
        meta["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    for scope in ["openid", "email", "profile", "groups"] {
        assert!(
            meta["scopes_supported"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s == scope),
            "{scope} advertised"
        );
    }

    let (id, info) = full_flow(&op, &[]).await;
    assert_eq!(id["sub"], ALICE.sub);
    assert_claims(&info, &ALICE);

    // login_hint picks the user; so does changing the current user.
    let (id, info) = full_flow(&op, &[("login_hint", "bob")]).await;
    assert_eq!(id["sub"], BOB.sub);
    assert_claims(&info, &BOB);
    op.set_current_user(Some("carol")).await;
    let (_, info) = full_flow(&op, &[]).await;
    assert_eq!(info["email_verified"], false);
}

#[tokio::test]
async fn provider_rejects_bad_pkce_secret_and_redirect_and_reports_cancel() {
    let op = OidcProvider::start(CLIENT, SECRET, &[REDIRECT], Some("alice")).await;
    let meta = discovery(&op).await;
    let (verifier, challenge) = pkce();
    let pkce_params = [
        ("state", "s"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];

    // PKCE is required.
    let back = op.login(&authorize_url(&meta, &[("state", "s")])).await;
    let q: HashMap<String, String> = back.query_pairs().into_owned().collect();
    assert_eq!(q["error"], "invalid_request", "{back}");
    assert!(!q.contains_key("code"));

    // Wrong verifier, wrong secret.
    let back = op.login(&authorize_url(&meta, &pkce_params)).await;
    let q: HashMap<String, String> = back.query_pairs().into_owned().collect();
    let (other_verifier, _) = pkce();
    let (status, e) = token(
        &meta,
        SECRET,
        &[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &other_verifier),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(e["error"], "invalid_grant");
    let back = op.login(&authorize_url(&meta, &pkce_params)).await;
    let q: HashMap<String, String> = back.query_pairs().into_owned().collect();
    let (status, e) = token(
        &meta,
        "wrong-secret",
        &[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(e["error"], "invalid_client");

    // An unregistered redirect_uri is never redirected to.
    let mut bad = url::Url::parse(&authorize_url(&meta, &pkce_params)).unwrap();
    let pairs: Vec<(String, String)> = bad
        .query_pairs()
        .into_owned()
        .map(|(k, v)| match k.as_str() {
            "redirect_uri" => (k, "http://127.0.0.1:9/evil".to_owned()),
            _ => (k, v),
        })
        .collect();
    bad.query_pairs_mut().clear().extend_pairs(pairs);
    let r = http_client().get(bad).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("location").is_none());

    // A cancelled login comes back as access_denied with the state.
    op.set_current_user(None).await;
    let back = op.login(&authorize_url(&meta, &pkce_params)).await;
    let q: HashMap<String, String> = back.query_pairs().into_owned().collect();
    assert_eq!(q["error"], "access_denied", "{back}");
    assert_eq!(q["state"], "s");
}
