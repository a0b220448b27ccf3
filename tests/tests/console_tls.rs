//! The console served over HTTPS, as in production: the control plane's issuer is
//! `https://login.localhost:PORT`, published through a data plane's HTTPS listener by
//! `portcullis oauth setup`, with a certificate from `portcullis-control-plane tls
//! bootstrap` uploaded with `portcullis cert upload`. A real headless Chromium that trusts
//! the bootstrap CA as a root (an NSS database in its `$HOME`, as on a Linux desktop; no
//! certificate errors are ignored) signs in with single sign-on through a real OpenID
//! provider, and its cookie jar must hold the session as `__Host-portcullis-ui`: `Secure`,
//! `HttpOnly`, `SameSite=Lax`, `Path=/`, bound to the host. The same Chromium without the
//! CA refuses the site, so the trust path is the one under test. Screenshots (laptop and
//! phone) go to `target/browser-screenshots/console-tls-*.png`, each page checked with
//! axe-core.

use std::path::Path;
use std::process::Command;

use portcullis_tests::chromium::{self, Cookie, Options, Visit, screenshot_path};
use portcullis_tests::oidc::OidcProvider;
use portcullis_tests::procs::bin;
use portcullis_tests::{ControlPlane, DataPlane, free_port, http_client};
use serde_json::Value;

const HOST: &str = "login.localhost";

/// Signs in to the console at `issuer` with single sign-on, in a Chromium trusting `ca`.
async fn sso(issuer: &str, ca: &Path, name: &str, phone: bool) -> Visit {
    let shot = screenshot_path(name);
    let visit = chromium::visit_with(
        &format!("{issuer}/ui/"),
        &shot,
        Options {
            axe: true,
            phone,
            ca: Some(ca),
            click: Some("Sign in with single sign-on"),
            wait_heading: Some("Overview"),
            ..Options::default()
        },
    )
    .await;
    eprintln!("screenshot: {}", shot.display());
    assert!(shot.exists());
    visit
}

/// What a signed-in console over HTTPS must show, whatever the screen.
fn check_signed_in(visit: &Visit, issuer: &str, op_issuer: &str, node_id: &str) {
    let hops: Vec<String> = visit
        .navigations
        .iter()
        .map(|n| format!("{} {}", n.status, n.url))
        .collect();
    let hops = hops.join("\n");
    assert!(
        visit.url.starts_with(&format!("{issuer}/ui/")),
        "back on the console over HTTPS: {}\n{hops}",
        visit.url
    );
    // Through the console's login, the authorization server, the provider and back, all
    // on the https origin except the provider.
    for step in [
        format!("{issuer}/ui/login"),
        format!("{issuer}/authorize?"),
        op_issuer.to_owned(),
        format!("{issuer}/callback/corp?"),
        format!("{issuer}/ui/callback?"),
    ] {
        assert!(
            visit.navigations.iter().any(|n| n.url.starts_with(&step)),
            "{step} missing from:\n{hops}"
        );
    }
    assert_eq!(visit.title, "Overview · Portcullis", "{}", visit.text);
    // The overview read the API with the session cookie: the data plane is listed.
    for want in ["Overview", node_id, "admin"] {
        assert!(
            visit.text.contains(want),
            "{want:?} missing:\n{}",
            visit.text
        );
    }
    // Nothing may fail, the sign-in page's `/ui/session` probe included (nobody signed in
    // yet is a 204, not a 401).
    let errors: Vec<&String> = visit.console.iter().collect();
    assert!(
        errors.is_empty(),
        "console errors (a CSP refusal, a failed API call?): {errors:?}"
    );
    let serious = visit.serious_violations();
    assert!(serious.is_empty(), "{serious:#?}");

    // The browser's cookie jar: the session cookie as the issue asks, and nothing else.
    let session: Vec<&Cookie> = visit
        .cookies
        .iter()
        .filter(|c| c.name.contains("portcullis-ui"))
        .collect();
    assert_eq!(
        session.len(),
        1,
        "one console cookie (the login cookie cleared, no unprefixed one): {:?}",
        visit.cookies
    );
    let c = session[0];
    assert_eq!(c.name, "__Host-portcullis-ui", "{c:?}");
    assert_eq!(c.domain, HOST, "host-only, no Domain attribute: {c:?}");
    assert_eq!(c.path, "/", "{c:?}");
    assert!(c.secure, "Secure: {c:?}");
    assert!(c.http_only, "HttpOnly: {c:?}");
    assert_eq!(c.same_site, "Lax", "{c:?}");
}

#[tokio::test]
async fn console_single_sign_on_over_https_keeps_a_host_prefixed_secure_cookie() {
    // A private CA and a server certificate for the console's host.
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = dir.path().join("tls");
    let out = Command::new(bin("portcullis-control-plane"))
        .args(["tls", "bootstrap", "--out"])
        .arg(&tls)
        .args(["--name", HOST])
        .output()
        .expect("run tls bootstrap");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ca, cert, key) = (
        tls.join("ca.pem"),
        tls.join("grpc.pem"),
        tls.join("grpc-key.pem"),
    );
    let chain = dir.path().join("chain.pem");
    let pem = |p: &Path| std::fs::read_to_string(p).expect("read PEM");
    std::fs::write(&chain, format!("{}{}", pem(&cert), pem(&ca))).expect("write chain");

    // The data plane's HTTPS port is the issuer's, so it is chosen before the start.
    let https_port = free_port();
    let issuer = format!("https://{HOST}:{https_port}");
    let cp = ControlPlane::start_args(vec!["--oauth-issuer".into(), issuer.clone()]).await;
    let op = OidcProvider::start(
        "portcullis",
        "op-secret",
        &[&format!("{issuer}/callback/corp")],
        Some("alice"),
    )
    .await;
    op.add_to(&cp, "corp", &["email"]);
    // alice@example.com may use the console as an admin.
    cp.cli_ok(&[
        "oauth",
        "rule",
        "add",
        "--email-domain",
        "example.com",
        "--scope",
        "admin",
    ]);
    cp.cli_ok(&[
        "cert",
        "upload",
        "login",
        "--cert",
        chain.to_str().expect("utf-8 path"),
        "--key",
        key.to_str().expect("utf-8 path"),
    ]);
    // Publishes the control plane (OAuth endpoints and console) at the host, HTTPS on; the
    // uploaded certificate covers it, so none is made up.
    cp.cli_ok(&["oauth", "setup", HOST]);
    let certs: Value = http_client()
        .get(format!("{}/api/v1/certificates", cp.http))
        .bearer_auth(&cp.admin_token)
        .send()
        .await
        .expect("list certificates")
        .json()
        .await
        .expect("JSON");
    let certs: Vec<(&str, &str)> = certs
        .as_array()
        .expect("a list")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default(),
                c["source"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(certs, [("login", "uploaded")], "no automatic certificate");
    let dp = DataPlane::start_https(&cp, "dp-console-tls", 0, https_port).await;
    let version = cp.version().await;
    cp.wait_applied(&dp.node_id, version).await;

    // Without the CA, Chromium refuses the site: nothing below passes by ignoring errors.
    let refused = chromium::try_visit_with(
        &format!("{issuer}/ui/"),
        &screenshot_path("console-tls-untrusted"),
        Options::default(),
    )
    .await;
    match refused {
        Err(e) => assert!(e.contains("ERR_CERT_AUTHORITY_INVALID"), "{e}"),
        Ok(v) => panic!(
            "an untrusted certificate was accepted: {} {}",
            v.status, v.url
        ),
    }

    let laptop = sso(&issuer, &ca, "console-tls-sso-light", false).await;
    check_signed_in(&laptop, &issuer, &op.issuer, &dp.node_id);
    let phone = sso(&issuer, &ca, "console-tls-sso-phone", true).await;
    check_signed_in(&phone, &issuer, &op.issuer, &dp.node_id);
    assert_eq!(phone.overflow, 0, "the overview is wider than a phone");
}
