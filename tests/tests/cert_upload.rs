//! Certificates users bring: validated on upload, keys exported only by an admin who asks.

use std::process::Output;

use portcullis_tests::{ControlPlane, http_client};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

struct Pki {
    ca_pem: String,
    leaf_pem: String,
    leaf_key: String,
}

fn pki(ca_name: &str, expired: bool) -> Pki {
    let validity = expired.then(|| {
        (
            OffsetDateTime::from_unix_timestamp(1_577_836_800).expect("2020"),
            OffsetDateTime::from_unix_timestamp(1_609_459_200).expect("2021"),
        )
    });
    pki_valid(ca_name, validity)
}

/// A CA and a leaf for `up.example.com`, the leaf valid for `validity` if given.
fn pki_valid(ca_name: &str, validity: Option<(OffsetDateTime, OffsetDateTime)>) -> Pki {
    let ca_key = KeyPair::generate().expect("test step");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("test step");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    let ca = ca_params.self_signed(&ca_key).expect("test step");
    let leaf_key = KeyPair::generate().expect("test step");
    let mut leaf_params =
        CertificateParams::new(vec!["up.example.com".to_owned()]).expect("test step");
    if let Some((not_before, not_after)) = validity {
        leaf_params.not_before = not_before;
        leaf_params.not_after = not_after;
    }
    let issuer = Issuer::new(ca_params, &ca_key);
    let leaf = leaf_params
        .signed_by(&leaf_key, &issuer)
        .expect("test step");
    Pki {
        ca_pem: ca.pem(),
        leaf_pem: leaf.pem(),
        leaf_key: leaf_key.serialize_pem(),
    }
}

/// A CERTIFICATE block whose base64 is fine but whose content is not DER.
const NOT_A_CERTIFICATE: &str =
    "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";

async fn post(cp: &ControlPlane, token: &str, body: Value) -> (StatusCode, Value) {
    let r = http_client()
        .post(format!("{}/api/v1/certificates/upload", cp.http))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("test step");
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn uploads_are_validated_and_keys_exported_only_on_request() {
    let cp = ControlPlane::start().await;
    let admin = cp.admin_token.clone();
    let good = pki("Good CA", false);
    let other = pki("Other CA", false);
    let old = pki("Old CA", true);
    let version = cp.version().await;

    let cases = [
        (
            format!("{}{}", good.leaf_pem, good.ca_pem),
            other.leaf_key.clone(),
            "does not match",
        ),
        (
            format!("{}{}", old.leaf_pem, old.ca_pem),
            old.leaf_key.clone(),
            "expired",
        ),
        (
            format!("{}{}", good.leaf_pem, other.ca_pem),
            good.leaf_key.clone(),
            "out of order",
        ),
        (
            "not pem".to_owned(),
            good.leaf_key.clone(),
            "cert_chain_pem",
        ),
        // The chain's own problems are named as the chain's, not blamed on the key.
        (
            format!("{}{}", good.ca_pem, good.leaf_pem),
            good.leaf_key.clone(),
            "invalid cert_chain_pem: the leaf must come first",
        ),
        (
            format!("{}{NOT_A_CERTIFICATE}", good.leaf_pem),
            good.leaf_key.clone(),
            "invalid cert_chain_pem: certificate 2 of 2 is not an X.509 certificate",
        ),
    ];
    for (chain, key, why) in cases {
        let (s, body) = post(
            &cp,
            &admin,
            json!({"name": "up", "cert_chain_pem": chain, "private_key_pem": key}),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            body["detail"].as_str().unwrap_or("").contains(why),
            "{why}: {body}"
        );
    }
    assert_eq!(
        cp.version().await,
        version,
        "a refused upload changed the config"
    );

    let chain = format!("{}{}", good.leaf_pem, good.ca_pem);
    let (s, body) = post(
        &cp,
        &admin,
        json!({"name": "up", "cert_chain_pem": chain, "private_key_pem": good.leaf_key}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "valid");
    assert_eq!(body["source"], "uploaded");
    assert_eq!(body["domains"], json!(["up.example.com"]));
    assert!(!body.to_string().contains("PRIVATE KEY"));

    // Export: admin only, and only when asked for explicitly.
    let tok: Value = http_client()
        .post(format!("{}/api/v1/tokens", cp.http))
        .bearer_auth(&admin)
        .json(&json!({"name": "bob"}))
        .send()
        .await
        .expect("test step")
        .json()
        .await
        .expect("test step");
    let export = |token: String, flag: &'static str| {
        let url = format!("{}/api/v1/certificates/up/export{flag}", cp.http);
        async move {
            http_client()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("test step")
        }
    };
    let bob = tok["secret"].as_str().expect("test step").to_owned();
    assert_eq!(
        export(bob, "?include_private_key=true").await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        export(admin.clone(), "").await.status(),
        StatusCode::BAD_REQUEST
    );
    let r = export(admin.clone(), "?include_private_key=true").await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("test step");
    assert_eq!(body["private_key_pem"], good.leaf_key);
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn the_cli_uploads_and_exports_keys_only_for_an_admin_who_asks() {
    let cp = ControlPlane::start().await;
    let good = pki("Good CA", false);
    let other = pki("Other CA", false);
    let dir = tempfile::tempdir().expect("test step");
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("test step");
        p.display().to_string()
    };
    let chain = file("chain.pem", &format!("{}{}", good.leaf_pem, good.ca_pem));
    let key = file("key.pem", &good.leaf_key);
    let wrong_key = file("wrong.pem", &other.leaf_key);
    let not_pem = file("notes.txt", "hello");
    let missing = dir.path().join("missing.pem").display().to_string();
    let version = cp.version().await;

    // Bad input: a clear error naming the flag or field, exit code 2 (local) or 1 (API),
    // and nothing stored.
    let out = cp.cli(
        &cp.admin_token,
        &["cert", "upload", "up", "--cert", &chain, "--key", &missing],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--key") && stderr(&out).contains("missing.pem"));
    let out = cp.cli(
        &cp.admin_token,
        &["cert", "upload", "up", "--cert", &not_pem, "--key", &key],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--cert") && stderr(&out).contains("PEM"));
    let out = cp.cli(
        &cp.admin_token,
        &[
            "cert", "upload", "up", "--cert", &chain, "--key", &wrong_key,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("private_key_pem"), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not match"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("PRIVATE KEY"));
    assert_eq!(
        cp.version().await,
        version,
        "a refused upload changed the config"
    );
    let list = cp.cli_ok(&["cert", "list", "--output", "json"]);
    assert!(!list.contains("\"up\""), "{list}");

    // A good upload; nothing the CLI shows carries the key.
    let shown: Value = serde_json::from_str(&cp.cli_ok(&[
        "cert", "upload", "up", "--cert", &chain, "--key", &key, "--output", "json",
    ]))
    .expect("test step");
    assert_eq!(shown["status"], "valid");
    assert_eq!(shown["source"], "uploaded");
    assert_eq!(shown["domains"], json!(["up.example.com"]));
    assert!(!shown["serial"].as_str().unwrap_or_default().is_empty());
    for args in [
        vec!["cert", "show", "up"],
        vec!["cert", "show", "up", "--output", "json"],
        vec!["cert", "list", "--output", "json"],
        vec!["cert", "status", "up"],
    ] {
        assert!(!cp.cli_ok(&args).contains("PRIVATE KEY"), "{args:?}");
    }
    let out = cp.cli(
        &cp.admin_token,
        &["cert", "upload", "up", "--cert", &chain, "--key", &key],
    );
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));

    // Export: refused for a non-admin token even with the flag, and for an admin without
    // it; neither prints anything on stdout.
    let bob = cp.cli_ok(&["token", "create", "bob"]).trim().to_owned();
    let out = cp.cli(&bob, &["cert", "export", "up", "--include-private-key"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("permission denied"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty() && !stderr(&out).contains("PRIVATE KEY"));
    let out = cp.cli(&cp.admin_token, &["cert", "export", "up"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("include_private_key"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty() && !stderr(&out).contains("PRIVATE KEY"));

    // An admin who asks gets chain then key (a usable PEM bundle), or both fields in JSON.
    let bundle = cp.cli_ok(&["cert", "export", "up", "--include-private-key"]);
    assert!(bundle.starts_with(&good.leaf_pem), "{bundle}");
    assert!(bundle.contains(&good.ca_pem));
    assert!(bundle.trim_end().ends_with(good.leaf_key.trim_end()));
    let exported: Value = serde_json::from_str(&cp.cli_ok(&[
        "cert",
        "export",
        "up",
        "--include-private-key",
        "--output",
        "json",
    ]))
    .expect("test step");
    assert_eq!(exported["private_key_pem"], good.leaf_key);
    assert_eq!(
        exported["cert_chain_pem"],
        format!("{}{}", good.leaf_pem, good.ca_pem)
    );
    // An unknown certificate is reported as such.
    let out = cp.cli(
        &cp.admin_token,
        &["cert", "export", "nope", "--include-private-key"],
    );
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));

    // The just recipes do the same through the CLI.
    let expiring = pki_valid(
        "Old-ish CA",
        Some((
            OffsetDateTime::now_utc() - Duration::days(80),
            OffsetDateTime::now_utc() + Duration::days(10),
        )),
    );
    let soon_chain = file(
        "soon.pem",
        &format!("{}{}", expiring.leaf_pem, expiring.ca_pem),
    );
    let soon_key = file("soon.key", &expiring.leaf_key);
    let just = |args: &[&str]| cp.just(&cp.admin_token, args);
    let out = just(&["cert-upload", "soon", &soon_chain, &soon_key]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("PRIVATE KEY"));
    let out = just(&["cert-export", "soon"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(expiring.leaf_key.trim_end()));

    // With a ninth of its lifetime left and nobody renewing it, it shows `expiring`, in
    // the CLI and in REST; a certificate far from its window stays `valid`.
    let status: Value =
        serde_json::from_str(&cp.cli_ok(&["cert", "status", "soon", "--output", "json"]))
            .expect("test step");
    assert_eq!(status["status"], "expiring", "{status}");
    let rest: Value = http_client()
        .get(format!("{}/api/v1/certificates/soon", cp.http))
        .bearer_auth(&cp.admin_token)
        .send()
        .await
        .expect("test step")
        .json()
        .await
        .expect("test step");
    assert_eq!(rest["status"], "expiring");
    assert_eq!(
        serde_json::from_str::<Value>(&cp.cli_ok(&["cert", "show", "up", "--output", "json"]))
            .expect("test step")["status"],
        "valid"
    );
}
