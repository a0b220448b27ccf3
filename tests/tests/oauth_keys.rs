//! Signing keys reach data planes before they sign: the first token of a fresh control
//! plane, and every token signed right after a key rotation, is admitted by a data plane at
//! once (no retry, no sleep). Data planes verify tokens only with the JWKS of their snapshot.

use std::time::Duration;

use portcullis_tests::browser::{self, alice, github_login};
use portcullis_tests::github::GithubServer;
use portcullis_tests::{Backend, ControlPlane, DataPlane, http_client};
use serde_json::{Value, json};

const REDIRECT: &str = "http://127.0.0.1:53997/callback";
const HOST: &str = "mcp.example.com";

/// A fresh control plane with GitHub login, a public client that may refresh, and a data
/// plane serving `HOST` protected in forward mode, synced.
struct Edge {
    cp: ControlPlane,
    _github: GithubServer,
    _backend: Backend,
    dp: DataPlane,
    client_id: String,
}

async fn edge() -> Edge {
    let cp = ControlPlane::start().await;
    let github = github_login(&cp, vec![alice()]).await;
    let backend = Backend::start("mcp").await;
    let dp = DataPlane::start(&cp, "dp-keys").await;
    cp.cli_ok(&["proxy", "create", HOST, &backend.url]);
    cp.enable_forward_auth(HOST, "auth.example.com", Some("mcp"));
    let resp = http_client()
        .post(format!("{}/register", cp.http))
        .json(
            &json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
                      "grant_types": ["authorization_code", "refresh_token"]}),
        )
        .send()
        .await
        .expect("register");
    assert_eq!(resp.status(), 201);
    let client: Value = resp.json().await.expect("json");
    // The data plane serves the protection before any token exists.
    let version = cp.version().await;
    cp.wait_applied(&dp.node_id, version).await;
    Edge {
        cp,
        _github: github,
        _backend: backend,
        dp,
        client_id: client["client_id"].as_str().expect("client_id").to_owned(),
    }
}

/// `/authorize` → GitHub → consent → `/token`: the token response.
async fn login(e: &Edge) -> Value {
    let mut authorize = url::Url::parse(&format!("{}/authorize", e.cp.http)).expect("url");
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &e.client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_challenge", browser::PKCE_CHALLENGE)
        .append_pair("code_challenge_method", "S256")
        .append_pair("scope", "mcp")
        .append_pair("resource", &format!("https://{HOST}"));
    let back = browser::browse(&e.cp, authorize, true).await.back;
    let code = browser::param(&back, "code").unwrap_or_else(|| panic!("no code in {back}"));
    token(
        e,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", browser::PKCE_VERIFIER),
        ],
    )
    .await
}

async fn token(e: &Edge, form: &[(&str, &str)]) -> Value {
    let resp = http_client()
        .post(format!("{}/token", e.cp.http))
        .form(&[form, &[("client_id", e.client_id.as_str())]].concat())
        .send()
        .await
        .expect("token");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("json")
}

/// The data plane's answer to `access_token`, once: 200, or the refusal it explains.
async fn admitted(e: &Edge, access_token: &str) {
    let (status, challenge) = request(e.dp.http.clone(), access_token.to_owned()).await;
    assert_eq!(status, 200, "refused at once: {challenge:?}");
}

/// GET `/tools` on `HOST` through the data plane at `dp_http`: status and challenge.
async fn request(dp_http: String, access_token: String) -> (u16, Option<String>) {
    let resp = http_client()
        .get(format!("{dp_http}/tools"))
        .header("host", HOST)
        .bearer_auth(access_token)
        .send()
        .await
        .expect("request through data plane");
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (resp.status().as_u16(), challenge)
}

fn signal(dp: &DataPlane, sig: &str) {
    let pid = dp.pid().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Sends `access_token` to the paused data plane, then resumes it: the request and any
/// snapshot sent meanwhile wait in its sockets together, so a key that reached the data
/// plane only in that snapshot would (almost always) come too late for the request.
async fn admitted_on_resume(e: &Edge, access_token: &str) {
    let pending = tokio::spawn(request(e.dp.http.clone(), access_token.to_owned()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    signal(&e.dp, "-CONT");
    let (status, challenge) = pending.await.expect("request task");
    assert_eq!(status, 200, "refused at once: {challenge:?}");
}

fn kid(jwt: &str) -> String {
    jsonwebtoken::decode_header(jwt)
        .expect("header")
        .kid
        .expect("kid")
}

#[tokio::test]
async fn the_first_token_of_a_fresh_control_plane_is_admitted_at_once() {
    let e = edge().await;
    // Paused: whatever the token needs must have reached the data plane before the login.
    signal(&e.dp, "-STOP");
    let tokens = login(&e).await;
    admitted_on_resume(&e, tokens["access_token"].as_str().expect("access_token")).await;
}

#[tokio::test]
async fn tokens_signed_right_after_a_key_rotation_are_admitted_at_once() {
    let e = edge().await;
    let tokens = login(&e).await;
    let first = tokens["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    let mut refresh = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    admitted(&e, &first).await;
    for round in 0..2 {
        // Rotate while the data plane is paused (connected, not ACKing).
        signal(&e.dp, "-STOP");
        let rotation = tokio::spawn({
            let (url, admin) = (
                format!("{}/api/v1/oauth/keys/rotate", e.cp.http),
                e.cp.admin_token.clone(),
            );
            async move {
                let resp = http_client()
                    .post(url)
                    .bearer_auth(admin)
                    .send()
                    .await
                    .expect("rotate");
                assert_eq!(resp.status(), 200);
                resp.json::<Value>().await.expect("json")
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let tokens = token(
            &e,
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
        refresh = tokens["refresh_token"]
            .as_str()
            .expect("refresh")
            .to_owned();
        admitted_on_resume(&e, tokens["access_token"].as_str().expect("jwt")).await;
        // Once the rotation answers, the new key signs, and the data plane has it.
        let rotated = rotation.await.expect("rotation task");
        let tokens = token(
            &e,
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
        refresh = tokens["refresh_token"]
            .as_str()
            .expect("refresh")
            .to_owned();
        let jwt = tokens["access_token"].as_str().expect("access_token");
        assert_eq!(kid(jwt), rotated["kid"], "round {round}: the new key signs");
        admitted(&e, jwt).await;
    }
    // Retired keys stay published while their tokens live.
    admitted(&e, &first).await;
}
