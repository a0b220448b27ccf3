//! `redirect` mode end to end: a browser-like client is sent from a protected proxy to the
//! control plane's `/authorize`, logs in through the GitHub-compatible server, comes back
//! to the proxy's `/.portcullis/callback`, gets a sealed `__Host-` session cookie and
//! reaches the backend with verified identity (and without the cookie). Real binaries,
//! real sockets; the client follows redirects by hand so every hop is asserted, and once
//! more in a real headless Chromium on a non-default port. The callback's port is the
//! data plane's listener's, and the authorization server accepts exactly those.

use portcullis_tests::browser::{PKCE_CHALLENGE, alice, browse, github_login, param};
use portcullis_tests::chromium::{self, screenshot_path};
use portcullis_tests::github::GithubServer;
use portcullis_tests::oidc::OidcProvider;
use portcullis_tests::{Backend, ControlPlane, DataPlane, eventually, http_client};
use serde_json::Value;
use std::time::Duration;

const HTML: &str = "text/html,application/xhtml+xml";

struct Fixture {
    cp: ControlPlane,
    _github: GithubServer,
    backend: Backend,
    dp: DataPlane,
}

async fn fixture() -> Fixture {
    let cp = ControlPlane::start().await;
    let github = github_login(&cp, vec![alice()]).await;
    let backend = Backend::start("app").await;
    let dp = DataPlane::start(&cp, "dp-redirect").await;
    for host in ["app.test", "other.test"] {
        cp.cli_ok(&["proxy", "create", host, &backend.url]);
        cp.cli_ok(&[
            "proxy",
            "auth",
            "enable",
            host,
            "--auth-host",
            "auth.test",
            "--mode",
            "redirect",
            "--public-path",
            "/health",
        ]);
    }
    let fx = Fixture {
        cp,
        _github: github,
        backend,
        dp,
    };
    synced(&fx).await;
    fx
}

/// Waits until the data plane serves the control plane's newest config.
async fn synced(fx: &Fixture) {
    let version = fx.cp.version().await;
    fx.cp.wait_applied(&fx.dp.node_id, version).await;
}

/// GET through the data plane as `host` with extra headers.
async fn get(fx: &Fixture, host: &str, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = http_client()
        .get(format!("{}{path}", fx.dp.http))
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request through data plane")
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no Location on {}", resp.status()))
        .to_owned()
}

/// The full `Set-Cookie` line for `name`, if set.
fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// `name=value` of a `Set-Cookie` line, ready for a `Cookie` header.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or_default().to_owned()
}

fn assert_cookie_attributes(line: &str) {
    for attr in ["; Path=/", "; Secure", "; HttpOnly", "; SameSite=Lax"] {
        assert!(line.contains(attr), "{attr} missing in {line}");
    }
    assert!(!line.contains("Domain="), "{line}");
}

/// Plays the browser from the proxy's redirect through `/authorize` and GitHub back to the
/// proxy: the callback URL (on the proxy) the authorization server sends it to.
async fn login_at_the_authorization_server(cp: &ControlPlane, authorize: &str) -> url::Url {
    let authorize = url::Url::parse(authorize).expect("absolute authorize URL");
    let browsed = browse(cp, authorize, true).await;
    // First-party edge client: no consent page.
    assert!(!browsed.consent_shown, "consent asked for the edge client");
    browsed.back
}

/// Sends the authorization response to the proxy as the browser would.
async fn callback(fx: &Fixture, back: &url::Url, cookie: Option<&str>) -> reqwest::Response {
    assert_eq!(back.host_str(), Some("app.test"), "{back}");
    let path = format!("{}?{}", back.path(), back.query().unwrap_or_default());
    let headers: Vec<(&str, &str)> = cookie.map(|c| ("cookie", c)).into_iter().collect();
    get(fx, "app.test", &path, &headers).await
}

#[tokio::test]
async fn redirect_mode_login_round_trip_sets_a_sealed_host_cookie_and_logout_clears_it() {
    let fx = fixture().await;

    // A page load without a session goes to the authorization server.
    let resp = get(&fx, "app.test", "/secret?x=1", &[("accept", HTML)]).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let authorize = location(&resp);
    let u = url::Url::parse(&authorize).expect("absolute");
    assert!(
        authorize.starts_with(&format!("{}/authorize?", fx.cp.http)),
        "{authorize}"
    );
    assert_eq!(param(&u, "response_type").as_deref(), Some("code"));
    assert_eq!(
        param(&u, "client_id").as_deref(),
        Some("portcullis-edge:app.test")
    );
    // The callback is on the data plane's listener port, not a default one.
    assert_eq!(
        param(&u, "redirect_uri"),
        Some(format!(
            "http://app.test:{}/.portcullis/callback",
            fx.dp.http_port()
        ))
    );
    assert_eq!(param(&u, "code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(param(&u, "code_challenge").map(|c| c.len()), Some(43));
    assert_eq!(param(&u, "state").map(|s| s.len()), Some(43));
    assert_eq!(param(&u, "resource").as_deref(), Some("https://app.test"));
    let login_line = set_cookie(&resp, "__Host-portcullis-login").expect("login cookie");
    assert_cookie_attributes(&login_line);
    assert!(login_line.contains("Max-Age=600"), "{login_line}");
    let login = pair(&login_line);
    // Another page load starts another login (new state).
    let again = get(&fx, "app.test", "/", &[("accept", HTML)]).await;
    let again = url::Url::parse(&location(&again)).expect("absolute");
    assert_ne!(param(&again, "state"), param(&u, "state"));

    // Scripts get 401 rather than a login page; public paths pass.
    let resp = get(
        &fx,
        "app.test",
        "/api/data",
        &[("accept", "application/json")],
    )
    .await;
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get("location").is_none());
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "login_required");
    assert_eq!(get(&fx, "app.test", "/health", &[]).await.status(), 200);
    assert_eq!(fx.backend.received(), ["/health"]);

    let back = login_at_the_authorization_server(&fx.cp, &authorize).await;
    assert_eq!(back.path(), "/.portcullis/callback");
    assert_eq!(param(&back, "state"), param(&u, "state"));

    // Without the login cookie, or with another state, there is no session.
    let resp = callback(&fx, &back, None).await;
    assert_eq!(resp.status(), 400);
    assert!(set_cookie(&resp, "__Host-portcullis-session").is_none());
    let mut forged = back.clone();
    let code = param(&back, "code").expect("code");
    forged
        .query_pairs_mut()
        .clear()
        .append_pair("code", &code)
        .append_pair("state", &"A".repeat(43));
    let resp = callback(&fx, &forged, Some(&login)).await;
    assert_eq!(resp.status(), 403);
    assert!(set_cookie(&resp, "__Host-portcullis-session").is_none());
    // A login cookie of another host is refused there.
    let elsewhere = get(
        &fx,
        "other.test",
        &format!("/.portcullis/callback?{}", back.query().unwrap_or_default()),
        &[("cookie", &login)],
    )
    .await;
    assert_eq!(elsewhere.status(), 400);
    assert!(set_cookie(&elsewhere, "__Host-portcullis-session").is_none());

    // The real callback: a session cookie and back to the page first asked for.
    let resp = callback(&fx, &back, Some(&login)).await;
    assert_eq!(resp.status(), 302, "{:?}", resp.text().await);
    assert_eq!(location(&resp), "/secret?x=1");
    let session_line = set_cookie(&resp, "__Host-portcullis-session").expect("session cookie");
    assert_cookie_attributes(&session_line);
    let cleared = set_cookie(&resp, "__Host-portcullis-login").expect("login cookie cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let session = pair(&session_line);
    assert!(
        !session.contains("eyJ"),
        "the token is sealed, not readable"
    );
    // The first login created the signing key; wait until the data plane has it.
    synced(&fx).await;

    // With the session the backend gets identity, and neither the cookie nor forgeries.
    let cookies = format!("theme=dark; {session}");
    let resp = get(
        &fx,
        "app.test",
        "/secret?x=1",
        &[
            ("cookie", &cookies),
            ("x-forwarded-user", "admin"),
            ("authorization", "Bearer junk"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let seen: Value = resp.json().await.expect("echo");
    assert_eq!(seen["headers"]["x-forwarded-user"], "alice", "{seen}");
    assert_eq!(seen["headers"]["x-forwarded-email"], "alice@acme.example");
    assert_eq!(
        seen["headers"]["x-auth-client-id"],
        "portcullis-edge:app.test"
    );
    assert_eq!(seen["headers"]["cookie"], "theme=dark", "{seen}");
    assert!(seen["headers"].get("authorization").is_none(), "{seen}");
    // Only the session cookie: nothing left to forward.
    let resp = get(&fx, "app.test", "/secret", &[("cookie", &session)]).await;
    let seen: Value = resp.json().await.expect("echo");
    assert!(seen["headers"].get("cookie").is_none(), "{seen}");

    // A tampered cookie is no session: log in again.
    let (name, value) = session.split_once('=').expect("pair");
    let mut bytes = value.as_bytes().to_vec();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{name}={}", String::from_utf8(bytes).expect("ascii"));
    let resp = get(
        &fx,
        "app.test",
        "/secret",
        &[("cookie", &tampered), ("accept", HTML)],
    )
    .await;
    assert_eq!(resp.status(), 302);
    assert!(location(&resp).starts_with(&format!("{}/authorize?", fx.cp.http)));
    // The session of app.test is worth nothing at other.test.
    let resp = get(&fx, "other.test", "/secret", &[("cookie", &session)]).await;
    assert_eq!(resp.status(), 401);
    let resp = get(
        &fx,
        "other.test",
        "/secret",
        &[("cookie", &session), ("accept", HTML)],
    )
    .await;
    assert_eq!(resp.status(), 302);
    assert!(
        location(&resp).contains("client_id=portcullis-edge%3Aother.test"),
        "{}",
        location(&resp)
    );

    // Logout clears the cookie, goes to a same-origin page and revokes the token.
    let resp = get(
        &fx,
        "app.test",
        "/.portcullis/logout",
        &[("cookie", &session)],
    )
    .await;
    assert_eq!(resp.status(), 302);
    assert_eq!(location(&resp), "/");
    let cleared = set_cookie(&resp, "__Host-portcullis-session").expect("session cleared");
    assert!(
        cleared.starts_with("__Host-portcullis-session=;"),
        "{cleared}"
    );
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    eventually(Duration::from_secs(20), "revoked session refused", || {
        let fx = &fx;
        let session = session.clone();
        async move {
            let resp = get(fx, "app.test", "/secret", &[("cookie", &session)]).await;
            (resp.status() == 401).then_some(())
        }
    })
    .await;
    // Reserved paths never reach the backend.
    let resp = get(
        &fx,
        "app.test",
        "/.portcullis/other",
        &[("cookie", &session)],
    )
    .await;
    assert_eq!(resp.status(), 404);
    assert!(
        fx.backend
            .received()
            .iter()
            .all(|p| !p.starts_with("/.portcullis")),
        "{:?}",
        fx.backend.received()
    );
}

#[tokio::test]
async fn login_never_returns_to_another_origin() {
    let fx = fixture().await;
    // Backslash and encoding tricks are covered by the unit tests of `safe_return`.
    for (rd, expected) in [
        ("https://evil.example/", "/"),
        ("//evil.example/x", "/"),
        ("/ok", "/ok"),
    ] {
        let start = format!("/.portcullis/login?rd={rd}");
        let resp = get(&fx, "app.test", &start, &[]).await;
        assert_eq!(resp.status(), 302, "{rd}");
        let authorize = location(&resp);
        let login = pair(&set_cookie(&resp, "__Host-portcullis-login").expect("login cookie"));
        let back = login_at_the_authorization_server(&fx.cp, &authorize).await;
        let resp = callback(&fx, &back, Some(&login)).await;
        assert_eq!(resp.status(), 302, "{rd}");
        assert_eq!(location(&resp), expected, "{rd}");
        assert!(set_cookie(&resp, "__Host-portcullis-session").is_some());
        // The code is single use: replaying the callback gives no second session.
        let replay = callback(&fx, &back, Some(&login)).await;
        assert_eq!(replay.status(), 502, "{rd}");
        assert!(set_cookie(&replay, "__Host-portcullis-session").is_none());
    }
    // A refused or cancelled login at the authorization server gives no session.
    let resp = get(&fx, "app.test", "/", &[("accept", HTML)]).await;
    let u = url::Url::parse(&location(&resp)).expect("absolute");
    let login = pair(&set_cookie(&resp, "__Host-portcullis-login").expect("login cookie"));
    let state = param(&u, "state").expect("state");
    let resp = get(
        &fx,
        "app.test",
        &format!("/.portcullis/callback?error=access_denied&state={state}"),
        &[("cookie", &login)],
    )
    .await;
    assert_eq!(resp.status(), 403);
    assert!(set_cookie(&resp, "__Host-portcullis-session").is_none());
}

#[tokio::test]
async fn sessions_obey_allowlists_route_scopes_and_public_routes() {
    let fx = fixture().await;
    let resp = get(&fx, "app.test", "/.portcullis/login?rd=/ok", &[]).await;
    let login = pair(&set_cookie(&resp, "__Host-portcullis-login").expect("login cookie"));
    let back = login_at_the_authorization_server(&fx.cp, &location(&resp)).await;
    let resp = callback(&fx, &back, Some(&login)).await;
    let session = pair(&set_cookie(&resp, "__Host-portcullis-session").expect("session"));
    assert_eq!(
        get(&fx, "app.test", "/ok", &[("cookie", &session)])
            .await
            .status(),
        200
    );

    let protect = |allow: &[&str]| {
        let mut args = vec![
            "proxy",
            "auth",
            "enable",
            "app.test",
            "--auth-host",
            "auth.test",
            "--mode",
            "redirect",
        ];
        args.extend_from_slice(allow);
        fx.cp.cli_ok(&args);
    };
    // alice is not bob: a valid session, but not for this proxy. No login loop either.
    protect(&["--allow-user", "bob"]);
    synced(&fx).await;
    let resp = get(
        &fx,
        "app.test",
        "/ok",
        &[("cookie", &session), ("accept", HTML)],
    )
    .await;
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().get("location").is_none());
    // A page load gets a page naming who is signed in; a script gets JSON.
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    let page = resp.text().await.expect("page");
    assert!(page.contains("Access denied"), "{page}");
    assert!(page.contains("alice"), "{page}");
    let resp = get(&fx, "app.test", "/ok", &[("cookie", &session)]).await;
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "access_denied");

    // Her org is allowed; a route needing a scope she lacks is refused, its neighbours not.
    protect(&["--allow-org", "acme"]);
    fx.cp.cli_ok(&[
        "route",
        "create",
        "/admin",
        "url",
        &fx.backend.url,
        "--proxy",
        "app.test",
        "--scope",
        "admin",
    ]);
    fx.cp.cli_ok(&[
        "route",
        "create",
        "/status",
        "url",
        &fx.backend.url,
        "--proxy",
        "app.test",
        "--public",
        "--match",
        "exact",
    ]);
    synced(&fx).await;
    let resp = get(&fx, "app.test", "/admin", &[("cookie", &session)]).await;
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "insufficient_scope");
    assert_eq!(
        get(&fx, "app.test", "/ok", &[("cookie", &session)])
            .await
            .status(),
        200
    );
    // The admin's public route needs no session, and forged identity never arrives.
    let resp = get(
        &fx,
        "app.test",
        "/status",
        &[("x-forwarded-user", "mallory")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let seen: Value = resp.json().await.expect("echo");
    assert!(seen["headers"].get("x-forwarded-user").is_none(), "{seen}");
    assert_eq!(fx.backend.received(), ["/ok", "/ok", "/status"]);
}

/// Asks the authorization server to start a login as the edge client of `host` with
/// `redirect_uri`: `(status, body)`. 303 means the redirect URI was accepted (on to the
/// identity provider); a refused one gets an error page, never a redirect.
async fn authorize_with(cp: &ControlPlane, host: &str, redirect_uri: &str) -> (u16, String) {
    let mut u = url::Url::parse(&format!("{}/authorize", cp.http)).expect("authorize URL");
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &format!("portcullis-edge:{host}"))
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("code_challenge", PKCE_CHALLENGE)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "st")
        .append_pair("resource", &format!("https://{host}"));
    let resp = http_client().get(u).send().await.expect("authorize");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// Asserts `/authorize` refuses `redirect_uri` for `app.test` with the exact-match error.
async fn assert_refused(cp: &ControlPlane, redirect_uri: &str) {
    let (status, body) = authorize_with(cp, "app.test", redirect_uri).await;
    assert_eq!(status, 400, "{redirect_uri} accepted: {body}");
    assert!(
        body.contains("redirect_uri does not exactly match"),
        "{redirect_uri}: {body}"
    );
}

/// Asserts `/authorize` accepts `redirect_uri` for `app.test`.
async fn assert_accepted(cp: &ControlPlane, redirect_uri: &str) {
    let (status, body) = authorize_with(cp, "app.test", redirect_uri).await;
    assert_eq!(status, 303, "{redirect_uri} refused: {body}");
}

#[tokio::test]
async fn the_callback_port_is_the_listeners_never_the_host_headers() {
    let fx = fixture().await;
    let port = fx.dp.http_port();
    let ours = format!("http://app.test:{port}/.portcullis/callback");
    // Whatever port the Host header names, the data plane sends its own listener's.
    for host in ["app.test", "app.test:9999", "APP.test:80", "app.test.:1"] {
        let resp = get(&fx, host, "/", &[("accept", HTML)]).await;
        assert_eq!(resp.status(), 302, "{host}");
        let u = url::Url::parse(&location(&resp)).expect("absolute");
        assert_eq!(
            param(&u, "redirect_uri").as_deref(),
            Some(ours.as_str()),
            "{host}"
        );
        assert_eq!(
            param(&u, "client_id").as_deref(),
            Some("portcullis-edge:app.test")
        );
    }
    // The authorization server accepts exactly that callback: not another port of the
    // host (another program's, which would get the code), nor the default ports no data
    // plane here serves.
    assert_accepted(&fx.cp, &ours).await;
    for other in [
        "http://app.test:9999/.portcullis/callback".to_owned(),
        "http://app.test/.portcullis/callback".to_owned(),
        "https://app.test/.portcullis/callback".to_owned(),
        format!("https://app.test:{port}/.portcullis/callback"),
        format!("http://app.test:{port}/.portcullis/callback/"),
        format!("http://app.test:{port}/other"),
    ] {
        assert_refused(&fx.cp, &other).await;
    }
    // The data plane announced its port; the registry shows it.
    let planes = fx.cp.dataplanes().await;
    let me = planes["items"]
        .as_array()
        .and_then(|items| items.iter().find(|d| d["node_id"] == fx.dp.node_id))
        .cloned()
        .unwrap_or_else(|| panic!("{planes}"));
    assert_eq!(me["http_public_port"], port, "{me}");
    assert_eq!(me["https_public_port"], 0, "{me}");
}

#[tokio::test]
async fn public_ports_behind_a_load_balancer_are_the_registered_ones() {
    let cp = ControlPlane::start().await;
    let _github = github_login(&cp, vec![alice()]).await;
    let backend = Backend::start("app").await;
    // Published as port 80 by something in front of it.
    let behind = DataPlane::start_args(&cp, "dp-behind-lb", &["--http-public-port", "80"]).await;
    // Reached directly, HTTPS included.
    let mut tls = DataPlane::start_https(&cp, "dp-tls", 0, 0).await;
    let (http_port, https_port) = (
        tls.http_port(),
        tls.https_addr().expect("an HTTPS listener").port(),
    );
    cp.cli_ok(&["proxy", "create", "app.test", &backend.url]);
    cp.cli_ok(&[
        "proxy",
        "auth",
        "enable",
        "app.test",
        "--auth-host",
        "auth.test",
        "--mode",
        "redirect",
    ]);
    let version = cp.version().await;
    cp.wait_applied(&behind.node_id, version).await;
    cp.wait_applied(&tls.node_id, version).await;

    let resp = http_client()
        .get(format!("{}/", behind.http))
        .header("host", "app.test")
        .header("accept", HTML)
        .send()
        .await
        .expect("through the data plane");
    assert_eq!(resp.status(), 302);
    let u = url::Url::parse(&location(&resp)).expect("absolute");
    assert_eq!(
        param(&u, "redirect_uri").as_deref(),
        Some("http://app.test/.portcullis/callback")
    );
    for accepted in [
        "http://app.test/.portcullis/callback".to_owned(),
        format!("http://app.test:{http_port}/.portcullis/callback"),
        format!("https://app.test:{https_port}/.portcullis/callback"),
    ] {
        assert_accepted(&cp, &accepted).await;
    }
    for refused in [
        // The port it listens on is not where browsers reach it.
        format!(
            "http://app.test:{}/.portcullis/callback",
            behind.http_port()
        ),
        // Nobody serves HTTPS on 443.
        "https://app.test/.portcullis/callback".to_owned(),
    ] {
        assert_refused(&cp, &refused).await;
    }

    // Once a data plane is gone, its ports are nobody's.
    tls.kill();
    eventually(Duration::from_secs(20), "dp-tls disconnected", || {
        let cp = &cp;
        async move {
            let planes = cp.dataplanes().await;
            let gone = planes["items"].as_array().is_some_and(|items| {
                items
                    .iter()
                    .any(|d| d["node_id"] == "dp-tls" && d["connected"] == false)
            });
            gone.then_some(())
        }
    })
    .await;
    assert_refused(
        &cp,
        &format!("https://app.test:{https_port}/.portcullis/callback"),
    )
    .await;
    assert_accepted(&cp, "http://app.test/.portcullis/callback").await;
}

/// The quick start's setup, in a real browser: a data plane serving `app.localhost` on a
/// port that is not 80, a redirect-mode proxy, an OpenID Provider to log in at. Chromium
/// opens the app, is sent through the authorization server and the provider, comes back
/// to the proxy's callback and lands on the page it asked for, which the backend served
/// with the user's identity.
#[tokio::test]
async fn a_real_browser_logs_in_on_a_non_default_port() {
    let cp = ControlPlane::start().await;
    let callback = format!("{}/callback/corp", cp.http);
    let op = OidcProvider::start("portcullis", "op-secret", &[&callback], Some("alice")).await;
    op.add_to(&cp, "corp", &["email", "profile"]);
    cp.cli_ok(&[
        "oauth",
        "rule",
        "add",
        "--email-domain",
        "example.com",
        "--scope",
        "mcp",
    ]);
    let backend = Backend::start("app").await;
    let dp = DataPlane::start(&cp, "dp-browser").await;
    let port = dp.http_port();
    assert_ne!(port, 80);
    cp.cli_ok(&["proxy", "create", "app.localhost", &backend.url]);
    cp.cli_ok(&[
        "proxy",
        "auth",
        "enable",
        "app.localhost",
        "--auth-host",
        "auth.localhost",
        "--mode",
        "redirect",
    ]);
    let version = cp.version().await;
    cp.wait_applied(&dp.node_id, version).await;

    let app = format!("http://app.localhost:{port}");
    let page = format!("{app}/hello?x=1");
    let shot = screenshot_path("edge_redirect-real-browser-login");
    let visit = chromium::visit(&page, &shot).await;
    eprintln!("screenshot: {}", shot.display());
    let hops: Vec<String> = visit
        .navigations
        .iter()
        .map(|n| format!("{} {}", n.status, n.url))
        .collect();
    assert_eq!(
        (visit.status, visit.url.as_str()),
        (200, page.as_str()),
        "the browser ended elsewhere; hops:\n{}\npage:\n{}",
        hops.join("\n"),
        visit.text
    );
    // It went through the authorization server, the provider and the proxy's callback.
    let went = |prefix: &str| visit.navigations.iter().any(|n| n.url.starts_with(prefix));
    assert!(went(&format!("{}/authorize?", cp.http)), "{hops:#?}");
    assert!(went(&format!("{}/", op.issuer)), "{hops:#?}");
    assert!(went(&format!("{app}/.portcullis/callback?")), "{hops:#?}");
    // The page is the backend's echo of what it received: the user's identity, no cookie
    // of ours.
    let json = visit
        .text
        .find('{')
        .zip(visit.text.rfind('}'))
        .map(|(start, end)| &visit.text[start..=end])
        .unwrap_or_else(|| panic!("no echo on the page: {}", visit.text));
    let seen: Value = serde_json::from_str(json).expect("the backend's JSON echo");
    assert_eq!(seen["path"], "/hello?x=1", "{seen}");
    assert_eq!(
        seen["headers"]["x-forwarded-email"], "alice@example.com",
        "{seen}"
    );
    assert_eq!(
        seen["headers"]["x-auth-client-id"], "portcullis-edge:app.localhost",
        "{seen}"
    );
    assert!(seen["headers"].get("cookie").is_none(), "{seen}");
    // The session cookie is the browser's, host-only, Secure and HttpOnly.
    let session = visit
        .cookies
        .iter()
        .find(|c| c.name == "__Host-portcullis-session")
        .unwrap_or_else(|| panic!("no session cookie: {:?}", visit.cookies));
    assert_eq!(session.domain, "app.localhost");
    assert!(session.secure && session.http_only, "{session:?}");
    assert!(
        !visit
            .cookies
            .iter()
            .any(|c| c.name == "__Host-portcullis-login"),
        "the login cookie is cleared: {:?}",
        visit.cookies
    );
    assert!(shot.exists(), "{}", shot.display());
}
