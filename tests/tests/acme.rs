//! Automatic HTTPS against a real ACME server (Pebble): the control plane orders, data planes
//! answer the challenges and serve the issued certificate.

use std::time::Duration;

use portcullis_tests::pebble::Pebble;
use portcullis_tests::{Backend, ControlPlane, DataPlane, eventually, free_port};
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
    let dp2 = DataPlane::start_https(&cp, "dp-acme-2", free_port(), free_port()).await;
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
async fn self_signed_development_certificate_works_without_a_ca() {
    let cp = ControlPlane::start().await;
    let dp = DataPlane::start_https(&cp, "dp-dev", free_port(), free_port()).await;
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
