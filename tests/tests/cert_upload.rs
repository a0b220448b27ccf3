//! Certificates users bring: validated on upload, keys exported only by an admin who asks.

use portcullis_tests::{ControlPlane, http_client};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Pki {
    ca_pem: String,
    leaf_pem: String,
    leaf_key: String,
}

fn pki(ca_name: &str, expired: bool) -> Pki {
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
    if expired {
        leaf_params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        leaf_params.not_after = rcgen::date_time_ymd(2021, 1, 1);
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
