//! Benchmark fixture (`bench/run.sh`, HTTPS and JWT cases): writes a config snapshot
//! straight into a data plane's cache directory, so a real data plane serves it from
//! start-up without a control plane, plus the material the load generator and the other
//! proxies need.
//!
//! Why not through the control plane: its OAuth server only issues tokens after a browser
//! login at an upstream identity provider, and the bench needs one long-lived valid token.
//! Here the bench holds the signing key itself; the data plane verifies the token exactly
//! as it verifies the control plane's (same snapshot fields: `jwks_json`, `oauth_issuer`,
//! a `forward`-mode `ProxyAuthPolicy`).
//!
//! ```text
//! cargo run --release -p portcullis-data-plane --example bench_fixture -- \
//!     OUT_DIR BACKEND_URL HOST AUTH_HOST
//! ```
//!
//! Writes the sealed snapshot cache into `OUT_DIR/dp-cache` (version 1, sealed under the
//! enrolment token `unused` that `bench/lib/peers.sh` starts that data plane with): `HOST` unprotected on HTTP and
//! HTTPS, `AUTH_HOST` the same proxy protected in forward mode; `OUT_DIR/cert.pem` and
//! `OUT_DIR/key.pem` (self-signed for `HOST` and 127.0.0.1, ECDSA P-256, also the
//! snapshot's default certificate: wrk sends the URL's IP as SNI), `OUT_DIR/combined.pem` (both, for HAProxy) and `OUT_DIR/token` (an ES256
//! access token for `http://AUTH_HOST`, valid for 7 days).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis_data_plane::cache::SnapshotCache;
use portcullis_proto::v1 as pb;
use prost::Message;
use serde_json::json;

const ISSUER: &str = "https://auth.bench.local";
const KID: &str = "bench-es256";
const CERT_NAME: &str = "bench";
/// The enrolment token the fixture data plane runs with; it seals the cache.
const FIXTURE_TOKEN: &str = "unused";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out, backend, host, auth_host] = args.as_slice() else {
        anyhow::bail!("usage: bench_fixture OUT_DIR BACKEND_URL HOST AUTH_HOST");
    };
    let out = PathBuf::from(out);
    std::fs::create_dir_all(out.join("dp-cache"))?;

    let tls_key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec![host.clone(), "127.0.0.1".into()])?
        .self_signed(&tls_key)?;
    let (cert_pem, key_pem) = (cert.pem(), tls_key.serialize_pem());
    std::fs::write(out.join("cert.pem"), &cert_pem)?;
    std::fs::write(out.join("key.pem"), &key_pem)?;
    std::fs::write(out.join("combined.pem"), format!("{cert_pem}{key_pem}"))?;

    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map_err(|e| anyhow::anyhow!("generating the signing key: {e}"))?;
    let signing = EncodingKey::from_ec_der(pkcs8.as_ref());
    let mut jwk = Jwk::from_encoding_key(&signing, Algorithm::ES256)?;
    jwk.common.key_id = Some(KID.into());

    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = json!({
        "iss": ISSUER, "sub": "bench-user", "aud": [format!("http://{auth_host}")],
        "client_id": "bench-client", "scope": "bench", "jti": "bench-token",
        "iat": now, "nbf": now, "exp": now + 7 * 24 * 3600,
        "login": "bench", "email": "bench@example.com", "groups": ["bench"],
    });
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(KID.into());
    std::fs::write(
        out.join("token"),
        jsonwebtoken::encode(&header, &claims, &signing)?,
    )?;

    let proxy = |hostname: &str, auth: Option<pb::ProxyAuthPolicy>| pb::ProxyTarget {
        hostname: hostname.into(),
        target_url: backend.clone(),
        enabled: true,
        enable_http: true,
        enable_https: true,
        auth,
        ..Default::default()
    };
    let protected = pb::ProxyAuthPolicy {
        enabled: true,
        mode: "forward".into(),
        auth_host: "auth.bench.local".into(),
        ..Default::default()
    };
    let snapshot = pb::ConfigSnapshot {
        version: 1,
        proxies: vec![proxy(host, None), proxy(auth_host, Some(protected))],
        certificates: vec![pb::TlsCertificate {
            name: CERT_NAME.into(),
            domains: vec![host.clone()],
            cert_chain_pem: cert_pem,
            private_key_pem: key_pem,
        }],
        default_certificate_name: CERT_NAME.into(),
        jwks_json: json!({ "keys": [jwk] }).to_string(),
        oauth_issuer: ISSUER.into(),
        ..Default::default()
    };
    SnapshotCache::new(out.join("dp-cache"), FIXTURE_TOKEN).write(&snapshot.encode_to_vec())?;
    Ok(())
}
