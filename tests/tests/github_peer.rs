//! The GitHub-compatible server speaks GitHub's OAuth and REST wire protocol: these tests
//! drive it with a plain HTTP client, as our control plane will, and pin the shapes and
//! errors GitHub documents.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use base64::Engine as _;
use portcullis_tests::github::{
    Consent, GithubConfig, GithubEmail, GithubServer, GithubUser, Layout, OAuthApp,
};
use portcullis_tests::http_client;
use reqwest::StatusCode;
use sha2::Digest as _;

const CALLBACK: &str = "http://127.0.0.1/oauth/github/callback";
const UA: &str = "portcullis-tests";

fn octocat() -> GithubUser {
    GithubUser::new("octocat", 583231)
        .name("The Octocat")
        .primary_email("octocat@example.com")
        .email(GithubEmail {
            email: "octo-old@example.org".to_owned(),
            primary: false,
            verified: false,
            visibility: None,
        })
        .org("acme", 1001)
        .org("widgets", 1002)
        .team("acme", "platform-eng", "Platform Eng", 42)
        .team("widgets", "ops", "Ops", 43)
}

fn config(layout: Layout) -> GithubConfig {
    GithubConfig {
        layout,
        users: vec![octocat(), GithubUser::new("hubot", 2).name("Hubot")],
        apps: vec![
            OAuthApp::new("Iv1.portcullis", "s3cret-one", CALLBACK),
            OAuthApp::new("Iv1.other", "s3cret-two", "https://other.example/cb"),
        ],
        current_user: Some("octocat".to_owned()),
        ..Default::default()
    }
}

/// (verifier, S256 challenge)
fn pkce() -> (String, String) {
    let verifier: String = (0..64)
        .map(|i| char::from(b'a' + (rand::random::<u8>().wrapping_add(i) % 26)))
        .collect();
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&verifier));
    (verifier, challenge)
}

fn query_of(url: &url::Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// GETs the authorize URL and returns the redirect target (asserting a 302).
async fn authorize(gh: &GithubServer, params: &[(&str, &str)]) -> url::Url {
    let mut url = url::Url::parse(&gh.authorize_url).expect("authorize URL");
    url.query_pairs_mut().extend_pairs(params);
    let r = http_client().get(url).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::FOUND, "authorize should redirect");
    url::Url::parse(r.headers()["location"].to_str().expect("Location is text"))
        .expect("Location is a URL")
}

async fn code_for(gh: &GithubServer, redirect_uri: &str, scope: &str, challenge: &str) -> String {
    let loc = authorize(
        gh,
        &[
            ("client_id", "Iv1.portcullis"),
            ("redirect_uri", redirect_uri),
            ("scope", scope),
            ("state", "st-1"),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    query_of(&loc)
        .remove("code")
        .unwrap_or_else(|| panic!("no code in {loc}"))
}

async fn exchange_json(gh: &GithubServer, form: &[(&str, &str)]) -> serde_json::Value {
    let r = http_client()
        .post(&gh.token_url)
        .header("accept", "application/json")
        .form(form)
        .send()
        .await
        .expect("request");
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "GitHub answers token errors with 200 too"
    );
    assert!(
        r.headers()["content-type"]
            .to_str()
            .expect("header is text")
            .starts_with("application/json")
    );
    r.json().await.expect("JSON body")
}

async fn api_get(gh: &GithubServer, path: &str, token: &str) -> reqwest::Response {
    http_client()
        .get(format!("{}{path}", gh.api_url))
        .bearer_auth(token)
        .header("user-agent", UA)
        .header("accept", "application/vnd.github+json")
        .header("x-github-api-version", "2022-11-28")
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn full_code_flow_with_pkce_then_api_on_enterprise_layout() {
    let gh = GithubServer::start(config(Layout::Enterprise)).await;
    assert_eq!(gh.api_url, format!("{}/api/v3", gh.web_url));
    let (verifier, challenge) = pkce();
    // Loopback callback: any port is accepted, and a sub-path of the callback path.
    let redirect = "http://127.0.0.1:45678/oauth/github/callback/done";
    let loc = authorize(
        &gh,
        &[
            ("client_id", "Iv1.portcullis"),
            ("redirect_uri", redirect),
            ("scope", "read:user user:email read:org"),
            ("state", "xyz-state"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    assert_eq!(
        format!("{}://{}{}", loc.scheme(), loc.authority(), loc.path()),
        redirect
    );
    let q = query_of(&loc);
    assert_eq!(q["state"], "xyz-state");
    let code = &q["code"];
    assert_eq!(code.len(), 20);

    let tok = exchange_json(
        &gh,
        &[
            ("client_id", "Iv1.portcullis"),
            ("client_secret", "s3cret-one"),
            ("code", code),
            ("redirect_uri", redirect),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    let token = tok["access_token"].as_str().expect("access_token");
    assert!(token.starts_with("gho_") && token.len() == 40, "{token}");
    assert_eq!(tok["token_type"], "bearer");
    assert_eq!(tok["scope"], "read:user,user:email,read:org");

    // What our client sent is on record.
    let sent = gh.token_requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].param("client_secret").as_deref(),
        Some("s3cret-one")
    );
    assert_eq!(sent[0].param("code_verifier").as_deref(), Some(&*verifier));

    let r = api_get(&gh, "/user", token).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["x-oauth-scopes"],
        "read:user, user:email, read:org"
    );
    let user: serde_json::Value = r.json().await.unwrap();
    assert_eq!(user["id"], 583231);
    assert_eq!(user["login"], "octocat");
    assert_eq!(user["name"], "The Octocat");
    assert_eq!(user["email"], "octocat@example.com");
    assert_eq!(user["type"], "User");
    assert_eq!(user["url"], format!("{}/users/octocat", gh.api_url));
    assert_eq!(user["html_url"], format!("{}/octocat", gh.web_url));
    assert!(
        user["avatar_url"]
            .as_str()
            .unwrap()
            .starts_with(&gh.web_url)
    );

    let emails: serde_json::Value = api_get(&gh, "/user/emails", token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        emails,
        serde_json::json!([
            {"email": "octocat@example.com", "primary": true, "verified": true, "visibility": "public"},
            {"email": "octo-old@example.org", "primary": false, "verified": false, "visibility": null},
        ])
    );
    let orgs: serde_json::Value = api_get(&gh, "/user/orgs", token)
        .await
        .json()
        .await
        .unwrap();
    let logins: Vec<&str> = orgs
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["login"].as_str().unwrap())
        .collect();
    assert_eq!(logins, ["acme", "widgets"]);
    assert_eq!(orgs[0]["id"], 1001);
    let teams: serde_json::Value = api_get(&gh, "/user/teams", token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(teams[0]["slug"], "platform-eng");
    assert_eq!(teams[0]["name"], "Platform Eng");
    assert_eq!(teams[0]["id"], 42);
    assert_eq!(teams[0]["organization"]["login"], "acme");
    assert_eq!(teams[1]["organization"]["login"], "widgets");

    // The older `token` scheme works as well.
    let r = http_client()
        .get(format!("{}/user", gh.api_url))
        .header("authorization", format!("token {token}"))
        .header("user-agent", UA)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(gh.api_requests().len(), 5);
}

#[tokio::test]
async fn token_endpoint_speaks_form_by_default_and_checks_the_secret() {
    let gh = GithubServer::start(config(Layout::Enterprise)).await;
    let (verifier, challenge) = pkce();
    let code = code_for(&gh, CALLBACK, "user", &challenge).await;

    // Wrong secret: 200 with GitHub's error, form-encoded since no Accept was sent.
    let r = http_client()
        .post(&gh.token_url)
        .form(&[
            ("client_id", "Iv1.portcullis"),
            ("client_secret", "wrong"),
            ("code", &code),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/x-www-form-urlencoded")
    );
    let body: HashMap<String, String> =
        url::form_urlencoded::parse(r.text().await.unwrap().as_bytes())
            .into_owned()
            .collect();
    assert_eq!(body["error"], "incorrect_client_credentials");
    assert_eq!(
        body["error_description"],
        "The client_id and/or client_secret passed are incorrect."
    );
    assert!(!body.contains_key("access_token"));

    // No secret at all is refused the same way.
    let e = exchange_json(&gh, &[("client_id", "Iv1.portcullis"), ("code", &code)]).await;
    assert_eq!(e["error"], "incorrect_client_credentials");

    // A failed client authentication does not spend the code; HTTP Basic is accepted.
    let r = http_client()
        .post(&gh.token_url)
        .basic_auth("Iv1.portcullis", Some("s3cret-one"))
        .form(&[("code", &*code), ("code_verifier", &verifier)])
        .send()
        .await
        .unwrap();
    let body: HashMap<String, String> =
        url::form_urlencoded::parse(r.text().await.unwrap().as_bytes())
            .into_owned()
            .collect();
    assert!(body["access_token"].starts_with("gho_"), "{body:?}");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["scope"], "user");

    // XML on request, like GitHub.
    let code = code_for(&gh, CALLBACK, "", &challenge).await;
    let xml = http_client()
        .post(&gh.token_url)
        .header("accept", "application/xml")
        .form(&[
            ("client_id", "Iv1.portcullis"),
            ("client_secret", "s3cret-one"),
            ("code", &code),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        xml.starts_with("<OAuth><access_token>gho_")
            && xml.contains("<token_type>bearer</token_type>"),
        "{xml}"
    );
}

#[tokio::test]
async fn codes_are_single_use_bound_to_their_client_and_expire() {
    let gh = GithubServer::start(config(Layout::Enterprise)).await;
    let (verifier, challenge) = pkce();
    let code = code_for(&gh, CALLBACK, "read:user", &challenge).await;
    let form = |code: &str, id: &str, secret: &str| {
        [
            ("client_id", id.to_owned()),
            ("client_secret", secret.to_owned()),
            ("code", code.to_owned()),
            ("code_verifier", verifier.clone()),
        ]
    };
    let exchange = |f: [(&'static str, String); 4]| {
        let gh = &gh;
        async move {
            let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            exchange_json(gh, &pairs).await
        }
    };

    // Another app, with its own valid credentials, cannot redeem it.
    let e = exchange(form(&code, "Iv1.other", "s3cret-two")).await;
    assert_eq!(e["error"], "bad_verification_code");
    assert_eq!(
        e["error_description"],
        "The code passed is incorrect or expired."
    );
    assert!(
        e["error_uri"]
            .as_str()
            .unwrap()
            .contains("bad-verification-code")
    );

    let ok = exchange(form(&code, "Iv1.portcullis", "s3cret-one")).await;
    assert!(ok["access_token"].is_string(), "{ok}");
    // Second use fails.
    let again = exchange(form(&code, "Iv1.portcullis", "s3cret-one")).await;
    assert_eq!(again["error"], "bad_verification_code");
    assert!(again.get("access_token").is_none());

    // An unknown code too.
    let bogus = exchange(form("0123456789abcdef0123", "Iv1.portcullis", "s3cret-one")).await;
    assert_eq!(bogus["error"], "bad_verification_code");

    // Expired codes.
    gh.set_code_lifetime(std::time::Duration::ZERO);
    let code = code_for(&gh, CALLBACK, "read:user", &challenge).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let old = exchange(form(&code, "Iv1.portcullis", "s3cret-one")).await;
    assert_eq!(old["error"], "bad_verification_code");
}

#[tokio::test]
async fn pkce_is_enforced_once_used() {
    let gh = GithubServer::start(config(Layout::Enterprise)).await;
    let (_, challenge) = pkce();
    let (other_verifier, _) = pkce();
    let code = code_for(&gh, CALLBACK, "", &challenge).await;
    let e = exchange_json(
        &gh,
        &[
            ("client_id", "Iv1.portcullis"),
            ("client_secret", "s3cret-one"),
            ("code", &code),
            ("code_verifier", &other_verifier),
        ],
    )
    .await;
    assert_eq!(e["error"], "bad_verification_code");

    let code = code_for(&gh, CALLBACK, "", &challenge).await;
    let e = exchange_json(
        &gh,
        &[
            ("client_id", "Iv1.portcullis"),
            ("client_secret", "s3cret-one"),
            ("code", &code),
        ],
    )
    .await;
    assert_eq!(e["error"], "bad_verification_code", "verifier required");

    // Only S256 is accepted.
    let loc = authorize(
        &gh,
        &[
            ("client_id", "Iv1.portcullis"),
            ("state", "s"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "plain"),
        ],
    )
    .await;
    let q = query_of(&loc);
    assert_eq!(q["error"], "invalid_request");
    assert!(!q.contains_key("code"));

    // Without PKCE the flow works (GitHub does not require it).
    let loc = authorize(&gh, &[("client_id", "Iv1.portcullis")]).await;
    assert!(
        loc.as_str().starts_with(CALLBACK),
        "defaults to the callback URL: {loc}"
    );
    let code = query_of(&loc)["code"].clone();
    assert!(!query_of(&loc).contains_key("state"));
    let ok = exchange_json(
        &gh,
        &[
            ("client_id", "Iv1.portcullis"),
            ("client_secret", "s3cret-one"),
            ("code", &code),
        ],
    )
    .await;
    assert_eq!(ok["scope"], "");
    assert!(ok["access_token"].is_string());
}

#[tokio::test]
async fn redirect_uri_must_match_the_registered_callback() {
    let gh = GithubServer::start(config(Layout::Enterprise)).await;
    for bad in [
        "http://127.0.0.1/elsewhere",
        "http://127.0.0.2/oauth/github/callback",
        "https://127.0.0.1/oauth/github/callback",
        "http://127.0.0.1/oauth/github/callbackx",
    ] {
        let loc = authorize(
            &gh,
            &[
                ("client_id", "Iv1.portcullis"),
                ("redirect_uri", bad),
                ("state", "keep-me"),
            ],
        )
        .await;
        // GitHub sends the error to the registered callback, not to the bad URI.
        assert!(loc.as_str().starts_with(CALLBACK), "{bad}: {loc}");
        let q = query_of(&loc);
        assert_eq!(q["error"], "redirect_uri_mismatch", "{bad}");
        assert_eq!(q["state"], "keep-me");
        assert!(!q.contains_key("code"));
    }
    // Non-loopback callbacks need the same port.
    let loc = authorize(
        &gh,
        &[
            ("client_id", "Iv1.other"),
            ("redirect_uri", "https://other.example:8443/cb"),
        ],
    )
    .await;
    assert_eq!(query_of(&loc)["error"], "redirect_uri_mismatch");

    // At the token endpoint, redirect_uri must repeat the one the code was issued for.
    let (verifier, challenge) = pkce();
    let code = code_for(
        &gh,
        "http://127.0.0.1:9000/oauth/github/callback",
        "",
        &challenge,
    )
    .await;
    let e = exchange_json(
        &gh,
        &[
            ("client_id", "Iv1.portcullis"),
            ("client_secret", "s3cret-one"),
            ("code", &code),
            ("code_verifier", &verifier),
            (
                "redirect_uri",
                "http://127.0.0.1:9001/oauth/github/callback",
            ),
        ],
    )
    .await;
    assert_eq!(e["error"], "redirect_uri_mismatch");
    assert_eq!(
        e["error_description"],
        "The redirect_uri MUST match the registered callback URL for this application."
    );
}

#[tokio::test]
async fn authorize_page_states_unknown_client_signed_out_and_denied() {
    let gh = GithubServer::start(config(Layout::Enterprise)).await;
    let r = http_client()
        .get(format!("{}?client_id=nope", gh.authorize_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    gh.sign_out();
    let r = http_client()
        .get(format!(
            "{}?client_id=Iv1.portcullis&state=s",
            gh.authorize_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the sign-in page, not a redirect"
    );
    assert!(r.text().await.unwrap().contains("Sign in to GitHub"));

    gh.set_user("hubot");
    gh.set_consent(Consent::Deny);
    let loc = authorize(&gh, &[("client_id", "Iv1.portcullis"), ("state", "s2")]).await;
    let q = query_of(&loc);
    assert_eq!(q["error"], "access_denied");
    assert_eq!(
        q["error_description"],
        "The user has denied your application access."
    );
    assert_eq!(q["state"], "s2");
    assert!(!q.contains_key("code"));

    // The signed-in user is who the token belongs to.
    gh.set_consent(Consent::Approve);
    let (verifier, challenge) = pkce();
    let code = code_for(&gh, CALLBACK, "", &challenge).await;
    let tok = exchange_json(
        &gh,
        &[
            ("client_id", "Iv1.portcullis"),
            ("client_secret", "s3cret-one"),
            ("code", &code),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    let me: serde_json::Value = api_get(&gh, "/user", tok["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["login"], "hubot");
    assert_eq!(me["id"], 2);
    assert_eq!(me["email"], serde_json::Value::Null);
}

#[tokio::test]
async fn api_requires_credentials_user_agent_and_scopes() {
    let gh = GithubServer::start(config(Layout::Enterprise)).await;
    let client = http_client();

    let r = client
        .get(format!("{}/user", gh.api_url))
        .header("user-agent", UA)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["message"], "Requires authentication");
    assert!(
        body["documentation_url"]
            .as_str()
            .unwrap()
            .starts_with("https://docs.github.com/")
    );

    let r = api_get(&gh, "/user", "gho_not-a-real-token").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["message"], "Bad credentials");

    let token = gh.issue_token("octocat", &["read:user"]);
    let r = client
        .get(format!("{}/user", gh.api_url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "no User-Agent");
    assert!(r.text().await.unwrap().contains("User-Agent"));

    let r = client
        .get(format!("{}/user", gh.api_url))
        .bearer_auth(&token)
        .header("user-agent", UA)
        .header("accept", "application/xml")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let r = client
        .get(format!("{}/user", gh.api_url))
        .bearer_auth(&token)
        .header("user-agent", UA)
        .header("x-github-api-version", "1999-01-01")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // read:user alone: /user works, emails are hidden (404), orgs and teams are forbidden.
    assert_eq!(api_get(&gh, "/user", &token).await.status(), StatusCode::OK);
    let r = api_get(&gh, "/user/emails", &token).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.headers()["x-accepted-oauth-scopes"], "user, user:email");
    assert_eq!(
        api_get(&gh, "/user/orgs", &token).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api_get(&gh, "/user/teams", &token).await.status(),
        StatusCode::FORBIDDEN
    );

    // `user` implies user:email and allows orgs and teams.
    let token = gh.issue_token("octocat", &["user"]);
    assert_eq!(
        api_get(&gh, "/user/emails", &token).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        api_get(&gh, "/user/orgs", &token).await.status(),
        StatusCode::OK
    );

    // Pagination with Link headers, as GitHub does.
    let r = api_get(&gh, "/user/orgs?per_page=1", &token).await;
    let link = r.headers()["link"].to_str().unwrap().to_owned();
    assert!(
        link.contains(&format!(
            "<{}/user/orgs?per_page=1&page=2>; rel=\"next\"",
            gh.api_url
        )),
        "{link}"
    );
    let page1: serde_json::Value = r.json().await.unwrap();
    assert_eq!(page1.as_array().unwrap().len(), 1);
    let r = api_get(&gh, "/user/orgs?per_page=1&page=2", &token).await;
    assert!(
        !r.headers()["link"]
            .to_str()
            .unwrap()
            .contains("rel=\"next\"")
    );
    let page2: serde_json::Value = r.json().await.unwrap();
    assert_eq!(page2[0]["login"], "widgets");

    gh.revoke_all_tokens();
    assert_eq!(
        api_get(&gh, "/user", &token).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn dotcom_layout_serves_the_api_on_its_own_origin() {
    let gh = GithubServer::start(config(Layout::DotCom)).await;
    let web = url::Url::parse(&gh.web_url).unwrap();
    let api = url::Url::parse(&gh.api_url).unwrap();
    assert_ne!(web.port(), api.port());
    let token = gh.issue_token("octocat", &["read:user"]);
    let me: serde_json::Value = api_get(&gh, "/user", &token).await.json().await.unwrap();
    assert_eq!(me["login"], "octocat");
    assert_eq!(me["url"], format!("{}/users/octocat", gh.api_url));
    // The web origin has no API, and the API origin has no OAuth pages.
    let r = http_client()
        .get(format!("{}/api/v3/user", gh.web_url))
        .bearer_auth(&token)
        .header("user-agent", UA)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = http_client()
        .get(format!(
            "{}/login/oauth/authorize?client_id=Iv1.portcullis",
            gh.api_url
        ))
        .header("user-agent", UA)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[test]
fn invalid_configs_are_rejected_with_a_reason() {
    let mut c = config(Layout::Enterprise);
    c.users[0] = GithubUser::new("octocat", 1).team("nowhere", "t", "T", 1);
    let e = c.validate().unwrap_err();
    assert!(e.contains("nowhere"), "{e}");
    let mut c = config(Layout::Enterprise);
    c.current_user = Some("ghost".to_owned());
    assert!(c.validate().unwrap_err().contains("ghost"));
    let mut c = config(Layout::Enterprise);
    c.apps[0].callback_url = "not a url".to_owned();
    assert!(c.validate().unwrap_err().contains("callback_url"));
}

#[tokio::test]
async fn standalone_binary_serves_from_a_json_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("github.json");
    std::fs::write(
        &cfg,
        serde_json::to_vec(&config(Layout::Enterprise)).unwrap(),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_github-compatible-server"))
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let urls: serde_json::Value = serde_json::from_str(&line).unwrap();
    let authorize_url = urls["authorize_url"].as_str().unwrap();
    let r = http_client()
        .get(format!(
            "{authorize_url}?client_id=Iv1.portcullis&state=bin"
        ))
        .send()
        .await
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(r.status(), StatusCode::FOUND);
    let loc = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(query_of(&loc)["state"], "bin");
    assert!(urls["api_url"].as_str().unwrap().ends_with("/api/v3"));

    // A bad config is refused with the reason.
    let mut bad = config(Layout::Enterprise);
    bad.current_user = Some("ghost".to_owned());
    std::fs::write(&cfg, serde_json::to_vec(&bad).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_github-compatible-server"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ghost"));
}
