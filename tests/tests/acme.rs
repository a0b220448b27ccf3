//! Automatic HTTPS against a real ACME server (Pebble): the control plane orders, data planes
//! answer the challenges and serve the issued certificate.

use std::time::Duration;

use portcullis_tests::pebble::{Pebble, PebbleOptions};
use portcullis_tests::procs::bin;
use portcullis_tests::{Backend, ControlPlane, DataPlane, RedisServer, eventually, free_port};
use serde_json::Value;

async fn setup() -> (Pebble, ControlPlane, DataPlane) {
    let (http, https) = (free_port(), free_port());
    let pebble = Pebble::start(http, https).await;
    let cp = ControlPlane::start_args(vec![
        "--acme-directory".into(),
        pebble.directory.clone(),
        "--acme-ca-cert".into(),
        pebble.tls_cert.display().to_string(),
        "--acme-email".into(),
        "ops@example.test".into(),
    ])
    .await;
    let dp = DataPlane::start_https(&cp, "dp-acme", http, https).await;
    (pebble, cp, dp)
}

async fn wait_status(cp: &ControlPlane, name: &str) -> Value {
    eventually(
        Duration::from_secs(90),
        &format!("certificate {name} to leave pending"),
        || async {
            let v: Value =
                serde_json::from_str(&cp.cli_ok(&["cert", "status", name, "--output", "json"]))
                    .ok()?;
            (v["status"] != "pending").then_some(v)
        },
    )
    .await
}

/// `cert show NAME` as JSON.
fn show(cp: &ControlPlane, name: &str) -> Value {
    serde_json::from_str(&cp.cli_ok(&["cert", "show", name, "--output", "json"]))
        .expect("cert show json")
}

/// Serve flags that order from `production` (and `staging`, if given), trusting its TLS.
fn acme_args(production: &Pebble, staging: Option<&Pebble>) -> Vec<String> {
    let mut args = vec![
        "--acme-directory".into(),
        production.directory.clone(),
        "--acme-ca-cert".into(),
        production.tls_cert.display().to_string(),
        "--acme-email".into(),
        "ops@example.test".into(),
    ];
    if let Some(s) = staging {
        args.extend(["--acme-staging-directory".into(), s.directory.clone()]);
    }
    args
}

/// An HTTPS client that trusts only Pebble's root and resolves `hosts` to `addr`.
fn client(root: &str, hosts: &[&str], addr: std::net::SocketAddr, http1: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(root.as_bytes()).expect("root pem")])
        .no_proxy();
    for h in hosts {
        b = b.resolve(h, addr);
    }
    if http1 {
        b = b.http1_only();
    }
    b.build().expect("client")
}

#[tokio::test]
async fn http01_multi_domain_and_tls_alpn01_certificates_are_issued_and_served() {
    let (pebble, cp, dp) = setup().await;
    let a = Backend::start("a").await;
    for host in ["app.example.test", "www.example.test", "alpn.example.test"] {
        cp.cli_ok(&["proxy", "create", host, &a.url, "--https"]);
    }
    // Creating a proxy with HTTPS ordered its certificate with no other step.
    let auto = wait_status(&cp, "app.example.test").await;
    assert_eq!(auto["status"], "valid", "{auto}");
    cp.cli_ok(&[
        "cert",
        "create-multi",
        "site",
        "app.example.test,www.example.test",
    ]);
    cp.cli_ok(&["proxy", "cert-attach", "www.example.test", "site"]);
    cp.cli_ok(&[
        "cert",
        "create",
        "alpn",
        "alpn.example.test",
        "--challenge",
        "tls-alpn-01",
    ]);
    let site = wait_status(&cp, "site").await;
    assert_eq!(site["status"], "valid", "{site}");
    let alpn = wait_status(&cp, "alpn").await;
    assert_eq!(alpn["status"], "valid", "{alpn}");
    let shown: Value =
        serde_json::from_str(&cp.cli_ok(&["cert", "show", "alpn", "--output", "json"])).unwrap();
    assert_eq!(shown["challenge"], "tls-alpn-01");
    assert!(shown.get("private_key_pem").is_none() && !shown.to_string().contains("PRIVATE KEY"));

    // The chain verifies against Pebble's root only, on HTTP/1.1 and HTTP/2, for every name.
    let root = pebble.root_pem().await;
    let addr = dp.https_addr().unwrap();
    let hosts = ["app.example.test", "www.example.test", "alpn.example.test"];
    let port = addr.port();
    for http1 in [true, false] {
        let c = client(&root, &hosts, addr, http1);
        for host in hosts {
            let url = format!("https://{host}:{port}/x");
            let version = if http1 {
                reqwest::Version::HTTP_11
            } else {
                reqwest::Version::HTTP_2
            };
            // The snapshot carrying the certificate may still be on its way.
            let r = eventually(
                Duration::from_secs(20),
                "data plane serves the new certificate",
                || {
                    let (c, url) = (c.clone(), url.clone());
                    async move { c.get(&url).send().await.ok() }
                },
            )
            .await;
            assert_eq!(r.status(), 200, "{host}");
            assert_eq!(r.version(), version);
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["backend"], "a");
            assert_eq!(body["headers"]["x-forwarded-proto"], "https");
        }
    }

    // A second data plane gets the same certificates through its snapshot.
    let dp2 = DataPlane::start_https(&cp, "dp-acme-2", 0, 0).await;
    let c = client(&root, &hosts, dp2.https_addr().unwrap(), false);
    let port2 = dp2.https_addr().unwrap().port();
    let r = c
        .get(format!("https://www.example.test:{port2}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A forced renewal swaps the certificate for new connections while a long download
    // keeps going on a connection opened before it.
    let peer = |r: &reqwest::Response| {
        r.extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|t| t.peer_certificate().map(<[u8]>::to_vec))
            .expect("peer certificate")
    };
    let tls_client = |root: &str| {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(root.as_bytes()).expect("root")])
            .resolve("www.example.test", addr)
            .tls_info(true)
            .no_proxy()
            .build()
            .expect("client")
    };
    let show = || -> Value {
        serde_json::from_str(&cp.cli_ok(&["cert", "show", "site", "--output", "json"])).unwrap()
    };
    let before = show();
    const SIZE: u64 = 64 << 20;
    let download = tls_client(&root)
        .get(format!("https://www.example.test:{port}/bytes/{SIZE}"))
        .send()
        .await
        .unwrap();
    let old_cert = peer(&download);
    let mut stream = download.bytes_stream();
    let mut got = futures_util::StreamExt::next(&mut stream)
        .await
        .unwrap()
        .unwrap()
        .len() as u64;
    cp.cli_ok(&["cert", "renew", "site"]);
    eventually(Duration::from_secs(90), "renewed certificate", || async {
        let v = show();
        (v["cert_chain_pem"] != before["cert_chain_pem"] && v["status"] == "valid").then_some(())
    })
    .await;
    let new_cert = eventually(
        Duration::from_secs(20),
        "new connections see the new certificate",
        || async {
            let r = tls_client(&root)
                .get(format!("https://www.example.test:{port}/"))
                .send()
                .await
                .ok()?;
            let c = peer(&r);
            (c != old_cert).then_some(c)
        },
    )
    .await;
    assert_ne!(new_cert, old_cert);
    while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
        got += chunk.expect("download survives the swap").len() as u64;
    }
    assert_eq!(got, SIZE);

    // Delete is refused while a proxy names the certificate, unless forced.
    let out = cp.cli(&cp.admin_token, &["cert", "delete", "site"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("attached"));
    cp.cli_ok(&["cert", "delete", "site", "--force"]);

    // The private key is sealed at rest: the embedded store file never holds it in clear.
    let db = std::fs::read(cp.data_dir.path().join("portcullis.redb")).unwrap();
    let needle = b"BEGIN PRIVATE KEY";
    assert!(
        !db.windows(needle.len()).any(|w| w == needle),
        "private key stored in clear text"
    );
}

#[tokio::test]
async fn an_order_the_ca_rejects_ends_failed_with_its_error() {
    let (pebble, cp, _dp) = setup().await;
    let a = Backend::start("a").await;
    cp.cli_ok(&["proxy", "create", "bad.example.test", &a.url]);
    // Validation for this name goes to an address where nothing answers.
    pebble.dns_a("bad.example.test", "127.0.0.2").await;
    cp.cli_ok(&["cert", "create", "bad", "bad.example.test"]);
    let status = wait_status(&cp, "bad").await;
    assert_eq!(status["status"], "failed", "{status}");
    let error = status["error"].as_str().unwrap_or("");
    assert!(
        error.contains("127.0.0.2") || error.to_lowercase().contains("connect"),
        "{status}"
    );

    // Names that no proxy of this token serves, and wildcards, are refused up front.
    let out = cp.cli(
        &cp.admin_token,
        &["cert", "create", "nope", "nope.example.test"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not served by a proxy"));
    let out = cp.cli(
        &cp.admin_token,
        &["cert", "create", "wild", "*.example.test"],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("DNS-01"));
}

#[tokio::test]
async fn a_ca_that_forgot_the_account_gets_a_new_one() {
    let (mut pebble, mut cp, _dp) = setup().await;
    let a = Backend::start("a").await;
    cp.cli_ok(&["proxy", "create", "forget.example.test", &a.url, "--https"]);
    let status = wait_status(&cp, "forget.example.test").await;
    assert_eq!(status["status"], "valid", "{status}");
    let before = show(&cp, "forget.example.test");

    // A reset CA (Pebble keeps accounts in memory) answers `accountDoesNotExist` to the
    // stored account; the renewal registers a new one instead of failing for good.
    pebble.restart().await;
    cp.cli_ok(&["cert", "renew", "forget.example.test"]);
    let after = eventually(Duration::from_secs(90), "the renewal to end", || async {
        let v = show(&cp, "forget.example.test");
        (v["serial"] != before["serial"] || v["error"] != "").then_some(v)
    })
    .await;
    assert_eq!(after["error"], "", "{after}");
    assert_eq!(after["status"], "valid", "{after}");
    let serial = after["serial"].as_str().unwrap_or_default().to_owned();
    assert!(
        pebble.issued_serials().contains(&serial),
        "{serial} not issued by the restarted CA: {}",
        pebble.log()
    );

    // The new account replaced the stored one: a new order after a control-plane restart
    // uses it at once (no third registration).
    cp.restart().await;
    cp.cli_ok(&["proxy", "create", "forget2.example.test", &a.url, "--https"]);
    let status = wait_status(&cp, "forget2.example.test").await;
    assert_eq!(status["status"], "valid", "{status}");
    assert_eq!(pebble.new_accounts(), 2, "{}", pebble.log());
}

#[tokio::test]
async fn an_unreachable_ca_is_reported_with_its_cause() {
    // A closed port, and a CA whose TLS certificate nothing here trusts (no --acme-ca-cert).
    let untrusted = Pebble::start(free_port(), free_port()).await;
    let closed = format!("https://127.0.0.1:{}/dir", free_port());
    let a = Backend::start("a").await;
    for (directory, cause) in [
        (closed.as_str(), "Connection refused"),
        (untrusted.directory.as_str(), "UnknownIssuer"),
    ] {
        let cp = ControlPlane::start_args(vec!["--acme-directory".into(), directory.into()]).await;
        cp.cli_ok(&["proxy", "create", "down.example.test", &a.url]);
        cp.cli_ok(&["cert", "create", "down", "down.example.test"]);
        let status = wait_status(&cp, "down").await;
        assert_eq!(status["status"], "failed", "{status}");
        let error = status["error"].as_str().unwrap_or_default();
        assert!(error.contains(directory), "{directory}: {status}");
        assert!(error.contains(cause), "{directory}: {status}");
    }
}

#[tokio::test]
async fn self_signed_development_certificate_works_without_a_ca() {
    let cp = ControlPlane::start().await;
    let dp = DataPlane::start_https(&cp, "dp-dev", 0, 0).await;
    let a = Backend::start("a").await;
    cp.cli_ok(&[
        "proxy",
        "create",
        "app.localhost",
        &a.url,
        "--https",
        "--redirect-https",
        "--hsts-max-age",
        "600",
    ]);
    // A localhost name gets a self-signed certificate at once, with no CA involved.
    let c: Value =
        serde_json::from_str(&cp.cli_ok(&["cert", "show", "app.localhost", "--output", "json"]))
            .unwrap();
    assert_eq!(c["status"], "valid");
    assert_eq!(c["source"], "self-signed");
    let pem = c["cert_chain_pem"].as_str().unwrap().to_owned();
    let v = cp.version().await;
    cp.wait_applied("dp-dev", v).await;
    let client = client(&pem, &["app.localhost"], dp.https_addr().unwrap(), false);
    let port = dp.https_addr().unwrap().port();
    let r = client
        .get(format!("https://app.localhost:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["strict-transport-security"], "max-age=600");

    // Plain HTTP is redirected with 308.
    let r = dp.get("app.localhost", "/p?q=1").await;
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"],
        format!("https://app.localhost:{port}/p?q=1")
    );
}

#[tokio::test]
async fn convert_to_production_orders_again_from_the_production_directory() {
    // Two real CAs: "production" and "staging" (one TLS certificate, so one trust file).
    let (http, https) = (free_port(), free_port());
    let production = Pebble::start(http, https).await;
    let staging = Pebble::start_with(
        http,
        https,
        PebbleOptions {
            tls_from: Some(production.tls_files()),
            ..Default::default()
        },
    )
    .await;
    let cp = ControlPlane::start_args(acme_args(&production, Some(&staging))).await;
    let dp = DataPlane::start_https(&cp, "dp-convert", http, https).await;
    let a = Backend::start("a").await;
    cp.cli_ok(&["proxy", "create", "conv.example.test", &a.url, "--https"]);
    cp.cli_ok(&["cert", "create", "conv", "conv.example.test", "--staging"]);
    let status = wait_status(&cp, "conv").await;
    assert_eq!(status["status"], "valid", "{status}");
    let before = show(&cp, "conv");
    assert_eq!(before["acme_directory"], staging.directory.as_str());
    let serial_before = before["serial"].as_str().unwrap_or_default().to_owned();
    assert_eq!(staging.issued_serials(), vec![serial_before.clone()]);
    cp.cli_ok(&["proxy", "cert-attach", "conv.example.test", "conv"]);

    let (staging_root, production_root) = (staging.root_pem().await, production.root_pem().await);
    let addr = dp.https_addr().unwrap();
    let url = format!("https://conv.example.test:{}/", addr.port());
    let get_with = |root: String| {
        let url = url.clone();
        async move {
            client(&root, &["conv.example.test"], addr, false)
                .get(&url)
                .send()
                .await
        }
    };
    eventually(
        Duration::from_secs(20),
        "the staging certificate is served",
        || async { get_with(staging_root.clone()).await.ok() },
    )
    .await;

    // Convert: the record points at production at once, the staging certificate keeps
    // serving, and a new one is ordered from the production CA.
    let converted: Value = serde_json::from_str(&cp.cli_ok(&[
        "cert",
        "convert-to-production",
        "conv",
        "--output",
        "json",
    ]))
    .unwrap();
    assert_eq!(converted["acme_directory"], production.directory.as_str());
    let after = eventually(
        Duration::from_secs(90),
        "certificate re-issued by production",
        || async {
            let v = show(&cp, "conv");
            (v["serial"] != serial_before.as_str() && v["status"] == "valid").then_some(v)
        },
    )
    .await;
    assert_eq!(after["acme_directory"], production.directory.as_str());
    assert_eq!(after["error"], "");
    assert_ne!(after["issuer"], before["issuer"], "{after}");
    let serial_after = after["serial"].as_str().unwrap_or_default().to_owned();
    assert!(
        production.issued_serials().contains(&serial_after),
        "{serial_after} not issued by production: {:?}",
        production.issued_serials()
    );
    assert_eq!(staging.issued_serials().len(), 1, "staging ordered again");

    // Data planes now serve a chain that only the production root verifies.
    eventually(
        Duration::from_secs(20),
        "the production certificate is served",
        || async { get_with(production_root.clone()).await.ok() },
    )
    .await;
    assert!(get_with(staging_root.clone()).await.is_err());

    // Converting again, or a certificate that is not from ACME, is refused.
    let out = cp.cli(&cp.admin_token, &["cert", "convert-to-production", "conv"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already from production"));
    cp.cli_ok(&["proxy", "create", "dev.localhost", &a.url, "--https"]);
    let out = cp.cli(
        &cp.admin_token,
        &["cert", "convert-to-production", "dev.localhost"],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not issued by ACME"));
}

/// Pebble's example External Account Binding key (base64url).
const EAB_KEY: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
/// Another valid key that Pebble does not hold for `kid-1`.
const WRONG_EAB_KEY: &str = "b10lLJs8l1GPIzsLP0s6pMt8O0XVGnfTaCeROxQM0BIt2XrJMDHJZBM5NuQmQJQH";

#[tokio::test]
async fn a_ca_requiring_external_account_binding_accepts_only_bound_accounts() {
    let (http, https) = (free_port(), free_port());
    let pebble = Pebble::start_with(
        http,
        https,
        PebbleOptions {
            eab_keys: vec![("kid-1".into(), EAB_KEY.into())],
            ..Default::default()
        },
    )
    .await;
    let with_eab = |key: &str| {
        let mut args = acme_args(&pebble, None);
        args.extend([
            "--acme-eab-kid".into(),
            "kid-1".into(),
            "--acme-eab-hmac-key".into(),
            key.into(),
        ]);
        args
    };
    let a = Backend::start("a").await;

    // The right key: the account is created and the order succeeds.
    let good = ControlPlane::start_args(with_eab(EAB_KEY)).await;
    let _dp = DataPlane::start_https(&good, "dp-eab", http, https).await;
    good.cli_ok(&["proxy", "create", "eab.example.test", &a.url]);
    good.cli_ok(&["cert", "create", "eab", "eab.example.test"]);
    let status = wait_status(&good, "eab").await;
    assert_eq!(status["status"], "valid", "{status}");

    // No binding: the CA refuses the account; the certificate fails with that reason and
    // the fix, and no order was placed (nor a challenge type retried).
    let none = ControlPlane::start_args(acme_args(&pebble, None)).await;
    none.cli_ok(&["proxy", "create", "eab.example.test", &a.url]);
    none.cli_ok(&["cert", "create", "eab", "eab.example.test"]);
    let status = wait_status(&none, "eab").await;
    assert_eq!(status["status"], "failed", "{status}");
    let error = status["error"].as_str().unwrap_or_default();
    assert!(error.contains("ACME account"), "{status}");
    assert!(error.contains("externalAccountRequired"), "{status}");
    assert!(error.contains("--acme-eab-kid"), "{status}");
    assert!(
        !error.contains("TlsAlpn01"),
        "account errors are not retried: {status}"
    );

    // A wrong key: refused too, and the key never appears in the error.
    let wrong = ControlPlane::start_args(with_eab(WRONG_EAB_KEY)).await;
    wrong.cli_ok(&["proxy", "create", "eab.example.test", &a.url]);
    wrong.cli_ok(&["cert", "create", "eab", "eab.example.test"]);
    let status = wait_status(&wrong, "eab").await;
    assert_eq!(status["status"], "failed", "{status}");
    let error = status["error"].as_str().unwrap_or_default();
    assert!(error.contains("ACME account"), "{status}");
    assert!(!error.contains(WRONG_EAB_KEY), "{status}");
    assert_eq!(pebble.issued_serials().len(), 1, "{}", pebble.log());

    // Half a binding, or a key that is not base64url, stops the control plane at start.
    for (flags, named) in [
        (vec!["--acme-eab-kid", "kid-1"], "--acme-eab-hmac-key"),
        (vec!["--acme-eab-hmac-key", EAB_KEY], "--acme-eab-kid"),
        (
            vec![
                "--acme-eab-kid",
                "kid-1",
                "--acme-eab-hmac-key",
                "not base64!",
            ],
            "--acme-eab-hmac-key",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(bin("portcullis-control-plane"))
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path())
            .args([
                "--http-listen",
                "127.0.0.1:0",
                "--grpc-listen",
                "127.0.0.1:0",
            ])
            .args(&flags)
            .env_remove("PORTCULLIS_ACME_EAB_KID")
            .env_remove("PORTCULLIS_ACME_EAB_HMAC_KEY")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let exited = eventually(Duration::from_secs(10), "control plane refuses", || {
            let s = child.try_wait().ok().flatten();
            async move { s }
        })
        .await;
        assert!(!exited.success(), "{flags:?}");
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(stderr.contains(named), "{flags:?}: {stderr}");
        assert!(!stderr.contains(EAB_KEY), "{stderr}");
        assert!(
            !dir.path().join("portcullis.redb").exists(),
            "a refused start touched the store"
        );
    }
}

#[tokio::test]
async fn a_failing_challenge_type_falls_back_to_the_other() {
    // Nothing listens on `dead`: one CA validates HTTP-01 there, the other TLS-ALPN-01.
    let (http, https, dead) = (free_port(), free_port(), free_port());
    let no_http = Pebble::start(dead, https).await;
    let no_tls = Pebble::start_with(
        http,
        dead,
        PebbleOptions {
            tls_from: Some(no_http.tls_files()),
            ..Default::default()
        },
    )
    .await;
    let cp = ControlPlane::start_args(acme_args(&no_http, Some(&no_tls))).await;
    let _dp = DataPlane::start_https(&cp, "dp-fallback", http, https).await;
    let a = Backend::start("a").await;
    for host in ["fb-http.example.test", "fb-alpn.example.test"] {
        cp.cli_ok(&["proxy", "create", host, &a.url]);
    }
    // HTTP-01 preferred but unreachable: TLS-ALPN-01 gets the certificate.
    cp.cli_ok(&["cert", "create", "fb-http", "fb-http.example.test"]);
    // TLS-ALPN-01 preferred but unreachable: HTTP-01 gets it.
    cp.cli_ok(&[
        "cert",
        "create",
        "fb-alpn",
        "fb-alpn.example.test",
        "--challenge",
        "tls-alpn-01",
        "--staging",
    ]);
    for (name, ca) in [("fb-http", &no_http), ("fb-alpn", &no_tls)] {
        let status = wait_status(&cp, name).await;
        assert_eq!(status["status"], "valid", "{name}: {status}");
        let c = show(&cp, name);
        assert_eq!(c["acme_directory"], ca.directory.as_str());
        assert_eq!(c["error"], "");
        let serial = c["serial"].as_str().unwrap_or_default().to_owned();
        assert_eq!(ca.issued_serials(), vec![serial], "{name}");
    }
    // The preferred type is what was asked for; only the successful order was finalized.
    assert_eq!(show(&cp, "fb-http")["challenge"], "http-01");
    assert_eq!(show(&cp, "fb-alpn")["challenge"], "tls-alpn-01");
}

#[tokio::test]
async fn two_control_planes_on_one_redis_order_a_certificate_once() {
    let redis = RedisServer::start().await;
    let (http, https) = (free_port(), free_port());
    let pebble = Pebble::start(http, https).await;
    let mut args = acme_args(&pebble, None);
    // Control planes sharing a store share the key that seals private keys; a data plane
    // that does not ACK makes each order wait this long, so the two requests overlap.
    args.extend([
        "--master-key".into(),
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into(),
        "--acme-ack-timeout-secs".into(),
        "3".into(),
    ]);
    let cp_a = ControlPlane::start_redis_args(Some(&redis.url), args.clone()).await;
    let cp_b = ControlPlane::start_redis_args(Some(&redis.url), args).await;
    let _dp = DataPlane::start_https(&cp_a, "dp-lock-a", http, https).await;
    let mut stalled = DataPlane::start(&cp_b, "dp-lock-b").await;
    let a = Backend::start("a").await;
    cp_a.cli_ok(&["proxy", "create", "lock.example.test", &a.url]);
    cp_a.cli_ok(&["cert", "create", "shared", "lock.example.test"]);
    let status = wait_status(&cp_b, "shared").await;
    assert_eq!(status["status"], "valid", "{status}");
    let first = show(&cp_b, "shared");
    assert_eq!(pebble.issued_serials().len(), 1);

    // Pause one data plane: still connected, never ACKs, so an order takes >= 3 s.
    let pid = stalled.pid().expect("running").to_string();
    let stop = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap();
    assert!(stop.success());

    let renew = |cp: &ControlPlane| {
        std::process::Command::new(bin("portcullis"))
            .args(["--url", &cp.grpc, "--token", &cp.admin_token])
            .args(["cert", "renew", "shared"])
            .env("XDG_CONFIG_HOME", "/nonexistent")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let lock_value = || redis.cli(&["HGET", "{portcullis}:meta", "lease:acme:shared"]);
    let mut serial = first["serial"].clone();
    // Round 1: both control planes are asked at the same moment (both find no lock; the
    // atomic check in Redis lets one take it). Round 2: B is asked while A holds the lock.
    for staggered in [false, true] {
        let ra = renew(&cp_a);
        if staggered {
            eventually(Duration::from_secs(10), "A takes the lock", || async {
                (!lock_value().is_empty()).then_some(())
            })
            .await;
        }
        let rb = renew(&cp_b);
        for r in [ra, rb] {
            let out = r.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }

        // While the order runs, its lease in Redis names one holder, a fencing token and an
        // expiry within the lease TTL (10 s by default, renewed while the order runs).
        let lock = eventually(Duration::from_secs(10), "the order lease", || async {
            let v = lock_value();
            (!v.is_empty()).then_some(v)
        })
        .await;
        let lease: serde_json::Value = serde_json::from_str(&lock).expect("lease record");
        let expiry = lease["expires_at_ms"].as_u64().expect("expires_at_ms");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(expiry + 1_000 > now && expiry <= now + 10_000, "{lock}");
        assert!(
            lease["holder"].as_str().is_some_and(|h| !h.is_empty()),
            "{lock}"
        );
        assert!(lease["token"].as_u64().is_some_and(|t| t > 0), "{lock}");

        let renewed = eventually(Duration::from_secs(60), "renewed certificate", || async {
            let v = show(&cp_a, "shared");
            (v["serial"] != serial && v["status"] == "valid").then_some(v)
        })
        .await;
        eventually(Duration::from_secs(10), "the lock is released", || async {
            lock_value().is_empty().then_some(())
        })
        .await;
        // Long enough for a second, overlapping order to have finished too.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let serials = pebble.issued_serials();
        let expected = if staggered { 3 } else { 2 };
        assert_eq!(
            serials.len(),
            expected,
            "staggered={staggered}: one renewal, not two: {serials:?}"
        );
        assert_eq!(
            serials.last().map(String::as_str),
            renewed["serial"].as_str()
        );
        assert_eq!(show(&cp_b, "shared")["serial"], renewed["serial"]);
        serial = renewed["serial"].clone();
    }
    stalled.kill();
}
