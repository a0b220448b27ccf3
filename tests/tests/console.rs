//! The management console (`/ui/`): its headers and both sign-ins at the HTTP level, then
//! one operator's day in a real headless Chromium (`tests/browser/console.mjs`) against
//! real binaries: sign in with a token, create a proxy and see traffic flow through a data
//! plane, the API's errors next to their fields, protection, a route, a self-signed and an
//! ACME (Pebble) certificate with its progress, an export (chain shown, key only once
//! confirmed), a refused convert-to-production (409 shown), a token, an external service,
//! an OAuth session revoked (after a cancelled confirmation), an OAuth client registered
//! (secret shown once), a scope description set, a proxy's OAuth settings set and cleared,
//! the OAuth endpoints published at a host, request logs, a `user` token refused
//! on another's proxy, and single sign-on through the GitHub-compatible server. Every page
//! is screenshotted (laptop and phone width, light and dark) to
//! `target/browser-screenshots/console-*.png` and checked with axe-core (at a phone's width
//! too, where no page may be wider than the screen).

use portcullis_tests::browser::{alice, browse, github_login, location, param};
use portcullis_tests::chromium::{run_script, screenshot_path};
use portcullis_tests::github::GithubUser;
use portcullis_tests::pebble::Pebble;
use portcullis_tests::{Backend, ControlPlane, DataPlane, free_port, http_client};
use serde_json::{Value, json};

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
const REDIRECT: &str = "http://127.0.0.1:53996/callback";
/// The name the browser run orders from Pebble (its DNS answers 127.0.0.1 for any name).
const ACME_DOMAIN: &str = "shop.example.test";

/// `Set-Cookie` of a response, as one line.
fn set_cookie(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Signs in with `token`; returns the `name=value` cookie pair and the CSRF token.
async fn sign_in(cp: &ControlPlane, token: &str) -> (String, String) {
    let resp = http_client()
        .post(format!("{}/ui/session", cp.http))
        .json(&json!({ "token": token }))
        .send()
        .await
        .expect("sign in");
    assert_eq!(resp.status(), 200);
    let line = set_cookie(&resp);
    let body: Value = resp.json().await.expect("json");
    let pair = line.split(';').next().unwrap_or_default().to_owned();
    (pair, body["csrf"].as_str().expect("csrf").to_owned())
}

#[tokio::test]
async fn console_assets_carry_a_strict_policy_and_writes_need_the_csrf_token() {
    let cp = ControlPlane::start().await;
    let http = http_client();

    // `/` leads to the console; every console answer has the policy and no framing.
    let root = http.get(format!("{}/", cp.http)).send().await.unwrap();
    assert!(root.status().is_redirection(), "{}", root.status());
    assert_eq!(root.headers()["location"], "/ui/");
    for path in [
        "/ui/",
        "/ui/app.js",
        "/ui/style.css",
        "/ui/pages/proxies.js",
    ] {
        let resp = http.get(format!("{}{path}", cp.http)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let h = resp.headers();
        assert_eq!(h["content-security-policy"], CSP, "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        let etag = h["etag"].to_str().unwrap().to_owned();
        // Revalidation answers 304 without a body.
        let again = http
            .get(format!("{}{path}", cp.http))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
    }
    let page = http
        .get(format!("{}/ui/", cp.http))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<html lang=\"en\">"), "{page}");
    assert!(
        !page.contains("<script>") && !page.contains("style="),
        "nothing inline: {page}"
    );
    let missing = http
        .get(format!("{}/ui/nope.js", cp.http))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // Before sign-in the console asks who is signed in: nobody is an answer (204, not a 401
    // that the request log would count as an error); a cookie naming no session is a 401.
    let nobody = http
        .get(format!("{}/ui/session", cp.http))
        .send()
        .await
        .unwrap();
    assert_eq!(nobody.status(), 204);
    assert_eq!(nobody.headers()["cache-control"], "no-store");
    let stale = http
        .get(format!("{}/ui/session", cp.http))
        .header("cookie", "other=1; portcullis-ui=not-a-session")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 401);

    // A wrong token sets no cookie.
    let resp = http
        .post(format!("{}/ui/session", cp.http))
        .json(&json!({"token": "pcs_wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get("set-cookie").is_none());

    // Plain http: the cookie cannot be `__Host-`/Secure; it is HttpOnly and SameSite=Lax,
    // and holds an opaque id, never the token.
    let resp = http
        .post(format!("{}/ui/session", cp.http))
        .json(&json!({"token": cp.admin_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let line = set_cookie(&resp);
    assert!(line.starts_with("portcullis-ui="), "{line}");
    assert!(
        line.contains("; HttpOnly") && line.contains("; SameSite=Lax") && line.contains("; Path=/"),
        "{line}"
    );
    assert!(!line.contains(&cp.admin_token), "{line}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["scope"], "admin");
    assert!(body.get("token").is_none() && !body.to_string().contains(&cp.admin_token));
    let cookie = line.split(';').next().unwrap().to_owned();
    let csrf = body["csrf"].as_str().unwrap().to_owned();

    // Reads need only the cookie.
    let whoami = http
        .get(format!("{}/ui/session", cp.http))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(whoami.status(), 200);
    let list = http
        .get(format!("{}/api/v1/proxy/targets", cp.http))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);

    // A write with the cookie but without (or with a wrong) CSRF header is refused and
    // changes nothing.
    let proxy = json!({"hostname": "csrf.test", "target_url": "http://127.0.0.1:9"});
    for csrf_header in [None, Some("wrong")] {
        let mut req = http
            .post(format!("{}/api/v1/proxy/targets", cp.http))
            .header("cookie", &cookie)
            .json(&proxy);
        if let Some(v) = csrf_header {
            req = req.header("x-csrf-token", v);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 403, "{csrf_header:?}");
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["detail"].as_str().unwrap().contains("X-CSRF-Token"),
            "{body}"
        );
    }
    let none = http
        .get(format!("{}/api/v1/proxy/targets/csrf.test", cp.http))
        .bearer_auth(&cp.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 404, "the refused write created nothing");
    // With it, the write goes through; a 400 names its field for the form.
    let resp = http
        .post(format!("{}/api/v1/proxy/targets", cp.http))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&proxy)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let resp = http
        .post(format!("{}/api/v1/proxy/targets", cp.http))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"hostname": "bad.test", "target_url": "ftp://x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["field"], "target_url", "{body}");

    // Signing out needs the CSRF token too, then the cookie is worthless.
    let out = http
        .delete(format!("{}/ui/session", cp.http))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 403);
    let out = http
        .delete(format!("{}/ui/session", cp.http))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert!(set_cookie(&out).contains("Max-Age=0"));
    let after = http
        .get(format!("{}/api/v1/proxy/targets", cp.http))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);

    // Deleting the token ends its sessions at once.
    let (cookie, _) = sign_in(&cp, &cp.admin_token).await;
    let created: Value = http
        .post(format!("{}/api/v1/tokens", cp.http))
        .bearer_auth(&cp.admin_token)
        .json(&json!({"name": "temp", "scope": "admin"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = created["secret"].as_str().unwrap();
    let id = created["token"]["id"].as_str().unwrap();
    let (temp_cookie, _) = sign_in(&cp, secret).await;
    let resp = http
        .delete(format!("{}/api/v1/tokens/{id}", cp.http))
        .bearer_auth(&cp.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = http
        .get(format!("{}/api/v1/tokens", cp.http))
        .header("cookie", &temp_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = http
        .get(format!("{}/api/v1/tokens", cp.http))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// The console's `name=value` cookie pairs set by a response, by name prefix.
fn cookie_pair(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(|c| c.to_owned())
}

/// `GET /ui/login` up to the console's callback: returns the login cookie pair and the
/// authorization response's URL.
async fn console_login(cp: &ControlPlane) -> (String, url::Url) {
    let resp = http_client()
        .get(format!("{}/ui/login", cp.http))
        .send()
        .await
        .expect("/ui/login");
    assert_eq!(resp.status(), 303);
    let line = cookie_pair(&resp, "portcullis-ui-login").expect("login cookie");
    assert!(
        line.contains("; HttpOnly") && line.contains("; SameSite=Lax"),
        "{line}"
    );
    let authorize = location(&resp);
    assert!(
        authorize
            .as_str()
            .starts_with(&format!("{}/authorize?", cp.http)),
        "{authorize}"
    );
    assert_eq!(
        param(&authorize, "client_id").as_deref(),
        Some("portcullis-console")
    );
    assert_eq!(
        param(&authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(
        param(&authorize, "redirect_uri"),
        Some(format!("{}/ui/callback", cp.http))
    );
    let state = param(&authorize, "state").expect("state");
    let pair = line.split(';').next().unwrap_or_default().to_owned();
    assert_eq!(pair, format!("portcullis-ui-login={state}"));
    let browsed = browse(cp, authorize, true).await;
    assert!(!browsed.consent_shown, "the console is first party");
    (pair, browsed.back)
}

#[tokio::test]
async fn console_single_sign_on_is_a_pkce_login_as_the_built_in_client() {
    let cp = ControlPlane::start().await;
    let github = github_login(
        &cp,
        vec![alice(), GithubUser::new("mallory", 1002).org("evil", 666)],
    )
    .await;
    cp.cli_ok(&["oauth", "rule", "add", "--user", "alice", "--scope", "user"]);
    cp.cli_ok(&[
        "oauth", "rule", "add", "--user", "mallory", "--scope", "mcp",
    ]);
    let http = http_client();

    // alice: GitHub → the authorization server → back to the console with a code; the
    // callback exchanges it (PKCE) and starts a session, the cookie HttpOnly and Lax.
    let (login, back) = console_login(&cp).await;
    assert!(
        back.as_str()
            .starts_with(&format!("{}/ui/callback?", cp.http)),
        "{back}"
    );
    assert!(param(&back, "code").is_some(), "{back}");
    // Without the cookie that began it (another browser, a forged link) it is refused.
    let resp = http.get(back.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(
        resp.headers()["location"],
        "/ui/?signin_error=login_expired"
    );
    assert!(cookie_pair(&resp, "portcullis-ui").is_none());
    let resp = http
        .get(back.clone())
        .header("cookie", &login)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/ui/");
    let line = cookie_pair(&resp, "portcullis-ui").expect("session cookie");
    assert!(
        line.contains("; HttpOnly") && line.contains("; SameSite=Lax") && line.contains("; Path=/"),
        "{line}"
    );
    let cleared = cookie_pair(&resp, "portcullis-ui-login").expect("login cookie cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let cookie = line.split(';').next().unwrap().to_owned();
    let whoami: Value = http
        .get(format!("{}/ui/session", cp.http))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(whoami["scope"], "user", "{whoami}");
    assert!(
        whoami["token_id"].as_str().unwrap().contains("1001"),
        "{whoami}"
    );
    // The state is used once: replaying the response starts nothing.
    let replay = http
        .get(back)
        .header("cookie", &login)
        .send()
        .await
        .unwrap();
    assert_eq!(
        replay.headers()["location"],
        "/ui/?signin_error=login_expired"
    );
    // alice is a `user`: her session follows the API's ownership rules (the admin's proxy
    // is not hers to delete) and writes need the CSRF token.
    cp.cli_ok(&["proxy", "create", "admins.localhost", "http://127.0.0.1:9"]);
    let csrf = whoami["csrf"].as_str().unwrap();
    let resp = http
        .delete(format!("{}/api/v1/proxy/targets/admins.localhost", cp.http))
        .header("cookie", &cookie)
        .header("x-csrf-token", csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let still = http
        .get(format!("{}/api/v1/proxy/targets/admins.localhost", cp.http))
        .bearer_auth(&cp.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(still.status(), 200, "the refused delete changed nothing");
    let resp = http
        .post(format!("{}/api/v1/proxy/targets", cp.http))
        .header("cookie", &cookie)
        .json(&json!({"hostname": "alice.localhost", "target_url": "http://127.0.0.1:9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "no CSRF token, no write");
    let resp = http
        .post(format!("{}/api/v1/proxy/targets", cp.http))
        .header("cookie", &cookie)
        .header("x-csrf-token", csrf)
        .json(&json!({"hostname": "alice.localhost", "target_url": "http://127.0.0.1:9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);

    // Her console sign-in is an OAuth session like any other: revoking it ends it at once.
    let sessions: Value = http
        .get(format!("{}/api/v1/oauth/sessions", cp.http))
        .bearer_auth(&cp.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let console_session = sessions
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["client_id"] == "portcullis-console" && s["login"] == "alice")
        .unwrap_or_else(|| panic!("alice's console session in {sessions}"));
    let id = console_session["id"].as_str().unwrap();
    let resp = http
        .delete(format!("{}/api/v1/oauth/sessions/{id}", cp.http))
        .bearer_auth(&cp.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = http
        .get(format!("{}/ui/session", cp.http))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        401,
        "the revoked session's cookie is worthless"
    );

    // mallory logs in, but no rule grants her `admin` or `user`: no session.
    github.set_user("mallory");
    let (login, back) = console_login(&cp).await;
    let resp = http
        .get(back)
        .header("cookie", &login)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["location"],
        "/ui/?signin_error=no_console_scope"
    );
    assert!(cookie_pair(&resp, "portcullis-ui").is_none());
}

/// An OAuth session for alice through a dynamically registered public client, so the
/// OAuth page has one to revoke.
async fn oauth_session(cp: &ControlPlane) {
    let resp = http_client()
        .post(format!("{}/register", cp.http))
        .json(&json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
                      "grant_types": ["authorization_code", "refresh_token"], "client_name": "Console test"}))
        .send()
        .await
        .expect("register");
    assert_eq!(resp.status(), 201);
    let client: Value = resp.json().await.expect("json");
    let client_id = client["client_id"].as_str().expect("client_id");
    portcullis_tests::browser::access_token(
        cp,
        &format!("{}/authorize", cp.http),
        &format!("{}/token", cp.http),
        client_id,
        REDIRECT,
        "https://other.localhost",
    )
    .await;
}

#[tokio::test]
async fn an_operator_manages_everything_from_the_console_in_a_real_browser() {
    // Pebble is the CA of the page's ACME order; the data plane answers its HTTP-01
    // challenges on Pebble's validation port.
    let (http_port, https_port) = (free_port(), free_port());
    let pebble = Pebble::start(http_port, https_port).await;
    let cp = ControlPlane::start_args(vec![
        "--acme-directory".into(),
        pebble.directory.clone(),
        "--acme-ca-cert".into(),
        pebble.tls_cert.display().to_string(),
    ])
    .await;
    let _github = github_login(&cp, vec![alice()]).await;
    // alice may use the console as a `user` (single sign-on at the end of the run).
    cp.cli_ok(&["oauth", "rule", "add", "--user", "alice", "--scope", "user"]);
    let backend = Backend::start("console-app").await;
    let dp = DataPlane::start_https(&cp, "dp-console", http_port, https_port).await;
    // A proxy for the resource the OAuth session is for (another owner's, made by the CLI).
    cp.cli_ok(&["proxy", "create", "other.localhost", &backend.url]);
    // The name the page orders a certificate for must be served by a proxy.
    cp.cli_ok(&["proxy", "create", ACME_DOMAIN, &backend.url]);
    cp.enable_forward_auth("other.localhost", "auth.localhost", None);
    oauth_session(&cp).await;
    let sessions: Value = http_client()
        .get(format!("{}/api/v1/oauth/sessions", cp.http))
        .bearer_auth(&cp.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sessions.as_array().map(Vec::len), Some(1), "{sessions}");

    let out_dir = screenshot_path("console-x")
        .parent()
        .expect("screenshot dir")
        .to_owned();
    // This run's screenshots only: none left from an earlier run counts below.
    if let Ok(entries) = std::fs::read_dir(&out_dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("console-") && name.ends_with(".png") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let app_url = format!("http://app.localhost:{}", dp.http_port());
    let report = run_script("console.mjs", &cp.admin_token, &out_dir, |cmd| {
        cmd.args(["--base", &cp.http, "--app-url", &app_url])
            .args(["--acme-domain", ACME_DOMAIN])
            .env("PORTCULLIS_BACKEND_URL", &backend.url);
    })
    .await;

    // axe-core: no serious or critical violation on any page, light or dark.
    let axe = report["axe"].as_object().expect("axe report");
    assert!(axe.len() >= 20, "every page was checked: {:?}", axe.keys());
    let serious: Vec<String> = axe
        .iter()
        .flat_map(|(page, violations)| {
            violations
                .as_array()
                .into_iter()
                .flatten()
                .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
                .map(move |v| format!("{page}: {v}"))
        })
        .collect();
    assert!(serious.is_empty(), "axe-core:\n{}", serious.join("\n"));
    // At a phone's width nothing is wider than the screen (cut off or scrolled sideways).
    let overflow = report["overflow"].as_object().expect("overflow report");
    assert!(
        overflow.len() >= 16,
        "every page was measured: {overflow:?}"
    );
    let wide: Vec<String> = overflow
        .iter()
        .filter(|(_, px)| px.as_i64() != Some(0))
        .map(|(page, px)| format!("{page}: {px} px"))
        .collect();
    assert!(wide.is_empty(), "wider than a phone: {wide:?}");

    // What the pages did is in the store.
    let admin = |path: String| {
        let req = http_client().get(path).bearer_auth(&cp.admin_token);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let proxy = admin(format!("{}/api/v1/proxy/targets/app.localhost", cp.http)).await;
    assert_eq!(
        proxy["target_url"],
        backend.url.trim_end_matches('/'),
        "{proxy}"
    );
    assert_eq!(proxy["auth"]["mode"], "forward", "{proxy}");
    assert_eq!(proxy["auth"]["required_scopes"], json!(["mcp"]), "{proxy}");
    assert_eq!(proxy["auth"]["allowed_orgs"], json!(["acme"]), "{proxy}");
    let bad = http_client()
        .get(format!("{}/api/v1/proxy/targets/bad.localhost", cp.http))
        .bearer_auth(&cp.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 404, "the refused create left nothing");
    let cert = admin(format!("{}/api/v1/certificates/app-localhost", cp.http)).await;
    assert_eq!(
        (cert["status"].as_str(), cert["source"].as_str()),
        (Some("valid"), Some("self-signed")),
        "{cert}"
    );
    let route = admin(format!("{}/api/v1/routes/api-v2", cp.http)).await;
    assert_eq!(route["priority"], 10, "{route}");
    assert_eq!(
        route["proxy_hostnames"],
        json!(["app.localhost"]),
        "{route}"
    );
    let service = admin(format!("{}/api/v1/services/external/billing", cp.http)).await;
    assert_eq!(service["target_url"], "http://127.0.0.1:9", "{service}");
    let sessions = admin(format!("{}/api/v1/oauth/sessions", cp.http)).await;
    // The revoked session is gone; what is left is alice's console sign-in.
    let left: Vec<&str> = sessions
        .as_array()
        .expect("sessions")
        .iter()
        .filter_map(|s| s["client_id"].as_str())
        .collect();
    assert_eq!(left, ["portcullis-console"], "{sessions}");
    let shop = admin(format!("{}/api/v1/certificates/shop", cp.http)).await;
    assert_eq!(
        (shop["status"].as_str(), shop["source"].as_str()),
        (Some("valid"), Some("acme")),
        "{shop}"
    );
    assert_eq!(shop["domains"], json!([ACME_DOMAIN]), "{shop}");
    // The OAuth page's writes: a client, a scope description, settings set then cleared, and
    // the proxy that publishes the OAuth endpoints.
    let clients = admin(format!("{}/api/v1/oauth/clients", cp.http)).await;
    assert!(
        clients
            .as_array()
            .expect("clients")
            .iter()
            .any(|c| c["client_name"] == "ci-client"
                && c["redirect_uris"] == json!(["https://ci.example.test/callback"])),
        "{clients}"
    );
    let scopes = admin(format!("{}/api/v1/oauth/scopes", cp.http)).await;
    assert!(
        scopes
            .as_array()
            .expect("scopes")
            .iter()
            .any(|s| s["scope"] == "mcp"
                && s["description"] == "Use the MCP tools"
                && s["source"] == "custom"),
        "{scopes}"
    );
    let settings = admin(format!("{}/api/v1/oauth/proxies/app.localhost", cp.http)).await;
    assert_eq!(settings["idps"], json!([]), "cleared: {settings}");
    let login = admin(format!("{}/api/v1/proxy/targets/login.localhost", cp.http)).await;
    assert_eq!(login["enable_https"], true, "{login}");
    // The refused conversion changed nothing.
    let shop = admin(format!("{}/api/v1/certificates/shop", cp.http)).await;
    assert_eq!(shop["status"], "valid", "{shop}");
    // The user's refused writes changed nothing; the user token the page made is a user's.
    let user_token = report["user_token"].as_str().expect("user token");
    let mine: Value = http_client()
        .get(format!("{}/api/v1/tokens", cp.http))
        .bearer_auth(user_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine[0]["name"], "bob", "{mine}");
    assert_eq!(mine[0]["scope"], "user", "{mine}");
    let proxy = admin(format!("{}/api/v1/proxy/targets/app.localhost", cp.http)).await;
    assert_eq!(
        proxy["target_url"],
        backend.url.trim_end_matches('/'),
        "{proxy}"
    );
    for page in [
        "signin",
        "overview",
        "proxies",
        "proxy-detail",
        "routes",
        "certificates",
        "certificate-export",
        "oauth-admin",
        "tokens",
        "services",
        "oauth",
        "docker",
        "logs",
        "forbidden",
        "signin-error",
        "overview-sso",
    ] {
        for variant in ["light", "dark", "phone", "phone-dark"] {
            let shot = out_dir.join(format!("console-{page}-{variant}.png"));
            assert!(shot.exists(), "{}", shot.display());
        }
    }
}
