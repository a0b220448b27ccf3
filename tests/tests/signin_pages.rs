//! The pages people meet when they sign in, in a real headless Chromium: the consent page
//! of the authorization server (a self-registered client, scopes with the descriptions an
//! admin set, the resource named), its error page, the identity-provider chooser, and the
//! data plane's refusals — a login the rules refuse, a user allowlist, a page needing a
//! scope the sign-in lacks, a login cancelled at the identity provider, an IP allowlist
//! refusal. Each page is checked for title, `lang`, text and status, screenshotted (light
//! and dark, and at a phone's width, where it may be no wider than the screen) into
//! `target/browser-screenshots/`, loads its stylesheet under its
//! Content-Security-Policy (no console error), and has no serious or critical axe-core
//! violation. The same answers to non-browser requests stay JSON.

use portcullis_tests::browser::PKCE_CHALLENGE;
use portcullis_tests::chromium::{self, Options, Visit, screenshot_path};
use portcullis_tests::oidc::OidcProvider;
use portcullis_tests::{Backend, ControlPlane, DataPlane, http_client};
use serde_json::{Value, json};

const HTML: &str = "text/html,application/xhtml+xml";

/// Opens `url` in Chromium at a laptop's width (light, then dark) and at a phone's (light),
/// each with axe, saving `signin-NAME-{light,dark,phone}.png`, and checks what every
/// sign-in page must have: title, `lang`, no console error, no serious or critical axe
/// violation, and nothing wider than a phone's screen.
async fn page(url: &str, name: &str, status: u16, title: &str) -> Visit {
    let mut first = None;
    for (variant, dark, phone) in [
        ("light", false, false),
        ("dark", true, false),
        ("phone", false, true),
    ] {
        let shot = screenshot_path(&format!("signin-{name}-{variant}"));
        let options = Options {
            axe: true,
            dark,
            phone,
            ..Options::default()
        };
        let visit = chromium::visit_with(url, &shot, options).await;
        eprintln!("screenshot: {}", shot.display());
        let hops: Vec<String> = visit
            .navigations
            .iter()
            .map(|n| format!("{} {}", n.status, n.url))
            .collect();
        assert_eq!(
            (visit.status, visit.title.as_str()),
            (status, format!("{title} · Portcullis").as_str()),
            "{name} ({variant}): hops:\n{}\ntext:\n{}",
            hops.join("\n"),
            visit.text
        );
        assert_eq!(visit.lang, "en", "{name}");
        assert!(
            visit.console.is_empty(),
            "{name} ({variant}): console (a CSP refusal?): {:?}",
            visit.console
        );
        let serious = visit.serious_violations();
        assert!(serious.is_empty(), "{name} ({variant}): {serious:#?}");
        assert_eq!(
            visit.overflow, 0,
            "{name} ({variant}): the page is wider than the window"
        );
        assert!(shot.exists());
        first.get_or_insert(visit);
    }
    first.expect("visited")
}

struct Fixture {
    cp: ControlPlane,
    op: OidcProvider,
    _backend: Backend,
    dp: DataPlane,
}

async fn fixture() -> Fixture {
    let cp = ControlPlane::start().await;
    let callback = format!("{}/callback/corp", cp.http);
    let op = OidcProvider::start("portcullis", "op-secret", &[&callback], Some("alice")).await;
    op.add_to(&cp, "corp", &["email", "profile"]);
    // app.localhost and members.localhost admit example.com users; logins to
    // closed.localhost are refused by the rules.
    for host in ["app.localhost", "members.localhost"] {
        cp.cli_ok(&[
            "oauth",
            "rule",
            "add",
            "--proxy",
            host,
            "--email-domain",
            "example.com",
            "--scope",
            "mcp",
        ]);
    }
    let backend = Backend::start("app").await;
    let dp = DataPlane::start(&cp, "dp-signin").await;
    // members.localhost lets only bob in (its user allowlist): alice signs in, and is
    // refused by the proxy.
    for (host, allow) in [
        ("app.localhost", None),
        ("closed.localhost", None),
        ("members.localhost", Some("bob")),
    ] {
        cp.cli_ok(&["proxy", "create", host, &backend.url]);
        let mut args = vec![
            "proxy",
            "auth",
            "enable",
            host,
            "--auth-host",
            "auth.localhost",
            "--mode",
            "redirect",
        ];
        if let Some(user) = allow {
            args.extend(["--allow-user", user]);
        }
        cp.cli_ok(&args);
    }
    // app.localhost/admin needs a scope the rules never grant.
    cp.cli_ok(&[
        "route",
        "create",
        "/admin",
        "url",
        &backend.url,
        "--id",
        "admin-only",
        "--proxy",
        "app.localhost",
        "--scope",
        "files:write",
    ]);
    cp.cli_ok(&[
        "proxy",
        "create",
        "office.localhost",
        &backend.url,
        "--ip-allow",
        "10.0.0.0/8",
    ]);
    let version = cp.version().await;
    cp.wait_applied(&dp.node_id, version).await;
    Fixture {
        cp,
        op,
        _backend: backend,
        dp,
    }
}

#[tokio::test]
async fn sign_in_pages_in_a_real_browser() {
    let fx = fixture().await;
    let port = fx.dp.http_port();

    // Scope descriptions: built-in defaults, an admin's own (CLI and REST), removal.
    let rest = |path: &str| format!("{}/api/v1/oauth/scopes{path}", fx.cp.http);
    let listed: Value =
        serde_json::from_str(&fx.cp.cli_ok(&["-o", "json", "oauth", "scope", "list"]))
            .expect("scope list JSON");
    let mcp = listed["items"]
        .as_array()
        .and_then(|items| items.iter().find(|s| s["scope"] == "mcp"))
        .cloned()
        .expect("mcp listed");
    assert_eq!(mcp["source"], "default", "{listed}");
    fx.cp.cli_ok(&[
        "oauth",
        "scope",
        "set",
        "mcp",
        "--description",
        "Use the echo tools & read <your> notes",
    ]);
    let bad = fx.cp.cli(
        &fx.cp.admin_token,
        &["oauth", "scope", "set", "mcp", "--description", " padded"],
    );
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("description"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let http = http_client();
    let resp = http
        .put(rest("/files:read"))
        .bearer_auth(&fx.cp.admin_token)
        .json(&json!({"description": "Read your files"}))
        .send()
        .await
        .expect("PUT scope");
    assert_eq!(resp.status(), 200);
    let resp = http
        .put(rest("/files:read"))
        .bearer_auth(&fx.cp.admin_token)
        .json(&json!({"description": "two\nlines"}))
        .send()
        .await
        .expect("PUT scope");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("error JSON");
    assert!(body.to_string().contains("description"), "{body}");
    let all: Value = http
        .get(rest(""))
        .bearer_auth(&fx.cp.admin_token)
        .send()
        .await
        .expect("GET scopes")
        .json()
        .await
        .expect("JSON");
    let find = |all: &Value, s: &str| {
        all.as_array()
            .and_then(|items| items.iter().find(|x| x["scope"] == s))
            .cloned()
    };
    assert_eq!(
        find(&all, "files:read").map(|s| s["description"].clone()),
        Some(json!("Read your files")),
        "{all}"
    );
    assert_eq!(
        find(&all, "mcp").map(|s| s["source"].clone()),
        Some(json!("custom"))
    );
    let resp = http
        .delete(rest("/files:read"))
        .bearer_auth(&fx.cp.admin_token)
        .send()
        .await
        .expect("DELETE scope");
    assert_eq!(resp.status(), 204);
    let all: Value = http
        .get(rest(""))
        .bearer_auth(&fx.cp.admin_token)
        .send()
        .await
        .expect("GET scopes")
        .json()
        .await
        .expect("JSON");
    assert!(find(&all, "files:read").is_none(), "{all}");

    // The consent page for a self-registered client.
    let registered: Value = http
        .post(format!("{}/register", fx.cp.http))
        .json(&json!({
            "redirect_uris": ["http://127.0.0.1:9/cb"],
            "client_name": "Evil <b>Corp</b>",
            "token_endpoint_auth_method": "none",
        }))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("registration JSON");
    let client_id = registered["client_id"].as_str().expect("client_id");
    let mut authorize = url::Url::parse(&format!("{}/authorize", fx.cp.http)).expect("url");
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", "http://127.0.0.1:9/cb")
        .append_pair("code_challenge", PKCE_CHALLENGE)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "s1")
        .append_pair("scope", "mcp")
        .append_pair("resource", "https://app.localhost");
    let consent = page(authorize.as_str(), "consent", 200, "Allow access?").await;
    for want in [
        "Signed in as alice with corp",
        "Evil <b>Corp</b>",
        "unverified",
        "has not been verified",
        "app.localhost",
        "https://app.localhost",
        "Use the echo tools & read <your> notes",
        "mcp",
        "127.0.0.1",
        "Allow",
        "Deny",
    ] {
        assert!(
            consent.text.contains(want),
            "{want:?} missing:\n{}",
            consent.text
        );
    }

    // The authorization server's own error page.
    let error = page(
        &format!("{}/authorize?client_id=nobody", fx.cp.http),
        "authorize-error",
        400,
        "Sign-in cannot continue",
    )
    .await;
    assert!(error.text.contains("unknown client_id"), "{}", error.text);

    // The device page (`portcullis login` sends people there): a labelled code field.
    let device = page(
        &format!("{}/device?user_code=WDJB-MJHT", fx.cp.http),
        "device",
        200,
        "Connect a device",
    )
    .await;
    assert!(device.text.contains("Enter the code"), "{}", device.text);

    // A login the rules refuse: who signed in, why, and a way to try another account.
    let refused = page(
        &format!("http://closed.localhost:{port}/private"),
        "refused-by-rules",
        403,
        "Access denied",
    )
    .await;
    for want in [
        "Signed in as alice via corp",
        "not allowed to use this site",
        "the login rules do not allow this user here",
        "Sign in as someone else",
    ] {
        assert!(
            refused.text.contains(want),
            "{want:?} missing:\n{}",
            refused.text
        );
    }
    assert!(
        refused
            .navigations
            .iter()
            .any(|n| n.url.starts_with(&format!(
                "http://closed.localhost:{port}/.portcullis/callback?"
            ))),
        "{:?}",
        refused.navigations
    );

    // A user allowlist refusal: alice signs in, the proxy admits only bob.
    let members = page(
        &format!("http://members.localhost:{port}/notes"),
        "user-allowlist",
        403,
        "Access denied",
    )
    .await;
    for want in [
        "Signed in as alice (alice@example.com)",
        "not on the list of people allowed to use members.localhost",
        "alice (alice@example.com) is not on the allowlist of members.localhost",
        "Sign in as someone else",
        "Sign out",
    ] {
        assert!(
            members.text.contains(want),
            "{want:?} missing:\n{}",
            members.text
        );
    }
    assert!(
        members
            .cookies
            .iter()
            .any(|c| c.name == "__Host-portcullis-session"),
        "signed in: {:?}",
        members.cookies
    );

    // A part of a site that needs a scope the sign-in was not given.
    let scoped = page(
        &format!("http://app.localhost:{port}/admin"),
        "missing-scope",
        403,
        "Access denied",
    )
    .await;
    for want in [
        "Signed in as alice (alice@example.com)",
        "may use app.localhost, but not this part of it",
        "this page requires the scope files:write, which your sign-in was not given",
        "Sign in as someone else",
    ] {
        assert!(
            scoped.text.contains(want),
            "{want:?} missing:\n{}",
            scoped.text
        );
    }

    // "Sign in as someone else" (the page's link) with the account the proxy admits: the
    // identity provider is asked to let the user choose, and bob gets through.
    fx.op.set_current_user(Some("bob")).await;
    let shot = screenshot_path("signin-switched-account");
    let switched = chromium::visit(
        &format!(
            "http://members.localhost:{port}/.portcullis/login?rd=%2Fnotes&prompt=select_account"
        ),
        &shot,
    )
    .await;
    assert_eq!(
        (switched.status, switched.url.as_str()),
        (
            200,
            format!("http://members.localhost:{port}/notes").as_str()
        ),
        "{}",
        switched.text
    );
    // This provider refuses `select_account` (invalid_request): the issuer asks again with
    // `login`, which OIDC Core defines.
    for prompt in ["prompt=select_account", "prompt=login"] {
        assert!(
            switched
                .navigations
                .iter()
                .any(|n| n.url.starts_with(&fx.op.issuer) && n.url.contains(prompt)),
            "{prompt}: {:?}",
            switched.navigations
        );
    }
    fx.op.set_current_user(Some("alice")).await;

    // An IP allowlist refusal: a page for the browser.
    let office = page(
        &format!("http://office.localhost:{port}/"),
        "ip-allowlist",
        403,
        "Your network is not allowed here",
    )
    .await;
    assert!(
        office
            .text
            .contains("your address 127.0.0.1 is outside the IP allowlist of office.localhost"),
        "{}",
        office.text
    );
    assert!(office.text.contains("Try again"), "{}", office.text);

    // A login cancelled at the identity provider.
    fx.op.set_current_user(None).await;
    let cancelled = page(
        &format!("http://app.localhost:{port}/"),
        "cancelled",
        403,
        "Sign-in cancelled",
    )
    .await;
    for want in ["cancelled", "not signed in", "access_denied", "Try again"] {
        assert!(
            cancelled.text.contains(want),
            "{want:?} missing:\n{}",
            cancelled.text
        );
    }
    assert!(
        !cancelled.text.contains("Signed in as"),
        "{}",
        cancelled.text
    );

    // A second identity provider: the authorization server lets the user choose (the
    // provider named `github` is never contacted here; nobody chooses it).
    fx.cp.cli_ok(&[
        "oauth",
        "idp",
        "add",
        "github",
        "--kind",
        "github",
        "--client-id",
        "gh-app",
        "--client-secret",
        "gh-secret",
        "--base-url",
        "http://127.0.0.1:9",
        "--api-url",
        "http://127.0.0.1:9",
    ]);
    fx.op.set_current_user(Some("alice")).await;
    let chooser = page(authorize.as_str(), "chooser", 200, "Choose how to sign in").await;
    for want in [
        "To continue to app.localhost, choose the account to sign in with.",
        "Continue with corp",
        "Continue with github",
    ] {
        assert!(
            chooser.text.contains(want),
            "{want:?} missing:\n{}",
            chooser.text
        );
    }
    // Choosing a provider (the page's link) goes on to it, and back to the consent page.
    let shot = screenshot_path("signin-chooser-chosen");
    let chosen = chromium::visit_with(
        authorize.as_str(),
        &shot,
        Options {
            click: Some("Continue with corp"),
            ..Options::default()
        },
    )
    .await;
    assert_eq!(
        (chosen.status, chosen.title.as_str()),
        (200, "Allow access? · Portcullis"),
        "{:?}\n{}",
        chosen.navigations,
        chosen.text
    );
    assert!(
        chosen.text.contains("Signed in as alice with corp"),
        "{}",
        chosen.text
    );
    assert!(
        chosen
            .navigations
            .iter()
            .any(|n| n.url.starts_with(&fx.op.issuer)),
        "through the provider: {:?}",
        chosen.navigations
    );
}

/// Non-browser requests keep their JSON answers; page loads get HTML with the server's
/// reason escaped.
#[tokio::test]
async fn refusals_stay_json_for_scripts_and_escape_what_they_show() {
    let fx = fixture().await;
    let http = http_client();
    let get = |host: &str, path: &str, headers: &[(&str, &str)]| {
        let mut req = http
            .get(format!("{}{path}", fx.dp.http))
            .header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send()
    };

    // IP allowlist: JSON for a script, HTML for a navigation.
    let resp = get("office.localhost", "/", &[]).await.expect("request");
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(
        body,
        json!({"error": "access_denied", "error_description": "your address may not reach this site"})
    );
    let resp = get("office.localhost", "/", &[("sec-fetch-mode", "navigate")])
        .await
        .expect("request");
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(csp.contains("style-src 'sha256-"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");

    // Redirect mode without a session: scripts get 401 login_required, as before.
    let resp = get("app.localhost", "/api", &[("accept", "application/json")])
        .await
        .expect("request");
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["error"], "login_required");

    // A refused login's callback: JSON for a script, an escaped page for a browser.
    let resp = get("app.localhost", "/", &[("accept", HTML)])
        .await
        .expect("request");
    assert_eq!(resp.status(), 302);
    let location =
        url::Url::parse(resp.headers()["location"].to_str().expect("ascii")).expect("absolute");
    let state = location
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("state");
    let login = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("__Host-portcullis-login="))
        .and_then(|c| c.split(';').next())
        .expect("login cookie")
        .to_owned();
    let evil = "the login rules do not allow this user here: <script>alert(1)</script> via corp";
    let callback = format!(
        "/.portcullis/callback?error=access_denied&error_description={}&state={state}",
        url::form_urlencoded::byte_serialize(evil.as_bytes()).collect::<String>()
    );
    let resp = get("app.localhost", &callback, &[("cookie", &login)])
        .await
        .expect("request");
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(
        body,
        json!({"error": "access_denied", "error_description": "the login was refused or cancelled"})
    );
    let resp = get(
        "app.localhost",
        &callback,
        &[("cookie", &login), ("accept", HTML)],
    )
    .await
    .expect("request");
    assert_eq!(resp.status(), 403);
    let cleared = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|c| c.starts_with("__Host-portcullis-login=;") && c.contains("Max-Age=0"));
    assert!(cleared, "the login cookie is cleared");
    let html = resp.text().await.expect("page");
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt; via corp"),
        "{html}"
    );
    assert!(!html.contains(&state), "the state is not reflected: {html}");

    // "Sign in as someone else": the login asks the issuer, and the issuer the identity
    // provider, to let the user pick an account; a plain login does not.
    for (login, want) in [
        ("/.portcullis/login?rd=%2Fa&prompt=select_account", true),
        ("/.portcullis/login?rd=%2Fa", false),
    ] {
        let resp = get("app.localhost", login, &[]).await.expect("request");
        assert_eq!(resp.status(), 302, "{login}");
        let to_issuer = resp.headers()["location"]
            .to_str()
            .expect("ascii")
            .to_owned();
        let has_prompt = |u: &str| {
            url::Url::parse(u)
                .expect("absolute")
                .query_pairs()
                .any(|(k, v)| k == "prompt" && v == "select_account")
        };
        assert_eq!(has_prompt(&to_issuer), want, "{to_issuer}");
        let resp = http.get(&to_issuer).send().await.expect("authorize");
        assert_eq!(resp.status(), 303, "{to_issuer}");
        let to_idp = resp.headers()["location"].to_str().expect("ascii");
        assert!(to_idp.starts_with(&fx.op.issuer), "{to_idp}");
        assert_eq!(has_prompt(to_idp), want, "{to_idp}");
    }

    // The authorization server's error page and stylesheet.
    let resp = http
        .get(format!("{}/authorize?client_id=%3Cb%3E", fx.cp.http))
        .send()
        .await
        .expect("authorize");
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.headers()["content-security-policy"],
        "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    let html = resp.text().await.expect("page");
    assert!(html.contains("<html lang=\"en\">"), "{html}");
    assert!(html.contains("href=\"/oauth/page.css\""), "{html}");
    let css = http
        .get(format!("{}/oauth/page.css", fx.cp.http))
        .send()
        .await
        .expect("css");
    assert_eq!(css.status(), 200);
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    let css = css.text().await.expect("css");
    // The console's stylesheet, then the pages' own rules.
    assert!(css.starts_with(include_str!("../../control-plane/ui/style.css")));
    assert!(css.contains("main.page"), "{css}");
}
