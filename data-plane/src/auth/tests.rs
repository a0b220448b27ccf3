//! Edge-auth decisions through the real snapshot compiler and `vhost::admit`, with keys
//! generated here and tokens signed with jsonwebtoken (forged ones built by hand).

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http::header::AUTHORIZATION;
use http::{Method, Request, StatusCode};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis_proto::v1 as pb;
use serde_json::{Value, json};

use super::Origin;
use crate::answer::Rejection;
use crate::config::Snapshot;
use crate::upstream::ClientCache;
use crate::vhost::{self, Proxy};

const ISSUER: &str = "https://auth.example.com";
const API: &str = "api.example.com";
const OTHER: &str = "other.example.com";

struct SigningKey {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
    jwk: Value,
}

struct Fixture {
    es: SigningKey,
    snap: Snapshot,
}

fn es256_key(kid: &str) -> SigningKey {
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .unwrap_or_else(|e| panic!("{e}"));
    signing_key(
        kid,
        Algorithm::ES256,
        EncodingKey::from_ec_der(pkcs8.as_ref()),
    )
}

fn rs256_key(kid: &str) -> SigningKey {
    use aws_lc_rs::encoding::AsDer as _;
    let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .unwrap_or_else(|e| panic!("{e}"));
    let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> =
        kp.as_der().unwrap_or_else(|e| panic!("{e}"));
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(der.as_ref())
    );
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    signing_key(kid, Algorithm::RS256, key)
}

fn signing_key(kid: &str, alg: Algorithm, key: EncodingKey) -> SigningKey {
    let mut jwk = Jwk::from_encoding_key(&key, alg).unwrap_or_else(|e| panic!("{e}"));
    jwk.common.key_id = Some(kid.into());
    SigningKey {
        kid: kid.into(),
        alg,
        key,
        jwk: serde_json::to_value(&jwk).unwrap_or_else(|e| panic!("{e}")),
    }
}

fn auth(mode: &str, scopes: &[&str]) -> pb::ProxyAuthPolicy {
    pb::ProxyAuthPolicy {
        enabled: true,
        mode: mode.into(),
        auth_host: "auth.example.com".into(),
        required_scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        public_paths: vec!["/health".into()],
        ..Default::default()
    }
}

fn proxy(host: &str, auth: pb::ProxyAuthPolicy) -> pb::ProxyTarget {
    pb::ProxyTarget {
        hostname: host.into(),
        target_url: "http://backend:8080".into(),
        enabled: true,
        enable_http: true,
        auth: Some(auth),
        ..Default::default()
    }
}

fn compile(proxies: Vec<pb::ProxyTarget>, keys: &[&SigningKey], revoked: &[&str]) -> Snapshot {
    compile_with_routes(proxies, vec![], keys, revoked)
}

fn compile_with_routes(
    proxies: Vec<pb::ProxyTarget>,
    routes: Vec<pb::Route>,
    keys: &[&SigningKey],
    revoked: &[&str],
) -> Snapshot {
    let jwks = json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() });
    let wire = pb::ConfigSnapshot {
        version: 1,
        proxies,
        routes,
        jwks_json: jwks.to_string(),
        oauth_issuer: ISSUER.into(),
        revocations: revoked
            .iter()
            .map(|jti| pb::Revocation {
                kind: "jti".into(),
                value: (*jti).into(),
                expires_at: now() + 3600,
                issued_before: 0,
            })
            .collect(),
        ..Default::default()
    };
    let clients = ClientCache::with_roots(rustls::RootCertStore::empty());
    Snapshot::compile(&wire, &clients).unwrap_or_else(|e| panic!("{e}"))
}

fn fixture(mode: &str, scopes: &[&str]) -> Fixture {
    let es = es256_key("es-1");
    let snap = compile(
        vec![
            proxy(API, auth(mode, scopes)),
            proxy(OTHER, auth(mode, &[])),
        ],
        &[&es],
        &["revoked-jti"],
    );
    Fixture { es, snap }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn claims(aud: &str) -> Value {
    let t = now();
    json!({
        "iss": ISSUER, "sub": "user-42", "aud": [aud], "client_id": "client-1",
        "scope": "mcp:read mcp:write", "exp": t + 300, "iat": t, "nbf": t, "jti": "jti-1",
        "auth_time": t, "idp": "github", "login": "octocat", "email": "octo@example.com",
        "name": "Octo Cat", "groups": ["devs", "ops"],
    })
}

fn sign(key: &SigningKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.typ = Some("at+jwt".into());
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.key).unwrap_or_else(|e| panic!("{e}"))
}

fn proxy_for<'a>(snap: &'a Snapshot, host: &str) -> &'a Arc<Proxy> {
    match snap.http_hosts().lookup(host) {
        Ok(Some(p)) => p,
        other => panic!("{host}: {other:?}"),
    }
}

fn request(path: &str, token: Option<&str>, extra: &[(&str, &str)]) -> Request<()> {
    let mut b = Request::builder().method(Method::GET).uri(path);
    if let Some(t) = token {
        b = b.header(AUTHORIZATION, format!("Bearer {t}"));
    }
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs the policy for `host` and returns the (possibly rewritten) request or the answer.
fn run(snap: &Snapshot, host: &str, mut req: Request<()>) -> Result<Request<()>, Rejection> {
    let proxy = proxy_for(snap, host);
    vhost::admit(proxy, &Origin::new(false, host), &mut req).map(|_| ())?;
    Ok(req)
}

fn refused(snap: &Snapshot, host: &str, req: Request<()>) -> Rejection {
    match run(snap, host, req) {
        Ok(req) => panic!("admitted: {:?}", req.headers()),
        Err(r) => r,
    }
}

fn challenge(r: &Rejection) -> &str {
    r.challenge()
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn body(r: &Rejection) -> Value {
    serde_json::from_slice(r.body()).unwrap_or(Value::Null)
}

/// 401 `invalid_token` with `description` in the challenge and the body.
fn assert_invalid(r: &Rejection, description: &str) {
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{:?}", r);
    assert_eq!(
        challenge(r),
        format!(
            "Bearer resource_metadata=\"http://{API}/.well-known/oauth-protected-resource\", \
             error=\"invalid_token\", error_description=\"{description}\""
        )
    );
    assert_eq!(
        body(r),
        json!({"error": "invalid_token", "error_description": description})
    );
}

fn header<'a>(req: &'a Request<()>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

#[test]
fn missing_token_gets_the_metadata_challenge() {
    let f = fixture("forward", &[]);
    let r = refused(&f.snap, API, request("/api", None, &[]));
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge(&r),
        "Bearer resource_metadata=\"http://api.example.com/.well-known/oauth-protected-resource\""
    );
    // Another scheme is not a bearer token: same plain challenge.
    let basic = request("/api", None, &[("authorization", "Basic dTpw")]);
    let r = refused(&f.snap, API, basic);
    assert!(!challenge(&r).contains("error="), "{}", challenge(&r));
}

#[test]
fn challenge_names_required_scopes_and_the_port_the_client_used() {
    let f = fixture("forward", &["mcp:read"]);
    let proxy = proxy_for(&f.snap, API);
    let mut req = request("/", None, &[]);
    let r = vhost::admit(proxy, &Origin::new(true, "API.example.com:8443"), &mut req)
        .err()
        .unwrap_or_else(|| panic!("admitted"));
    assert_eq!(
        challenge(&r),
        "Bearer resource_metadata=\"https://api.example.com:8443/.well-known/oauth-protected-resource\", scope=\"mcp:read\""
    );
}

#[test]
fn valid_token_is_admitted_with_identity_and_without_the_token() {
    let f = fixture("forward", &["mcp:read"]);
    let token = sign(&f.es, &claims("https://api.example.com"));
    let forged = [
        ("x-forwarded-user", "admin"),
        ("x-forwarded-email", "root@evil"),
        ("x-forwarded-groups", "admins"),
        ("x-forwarded-sub", "0"),
        ("x-auth-request-user", "admin"),
        ("x-auth-user", "admin"),
        ("x-kept", "1"),
    ];
    let req = run(&f.snap, API, request("/api/x", Some(&token), &forged))
        .unwrap_or_else(|r| panic!("{r:?}"));
    assert_eq!(header(&req, "authorization"), None);
    assert_eq!(header(&req, "x-forwarded-user"), Some("octocat"));
    assert_eq!(header(&req, "x-forwarded-email"), Some("octo@example.com"));
    assert_eq!(header(&req, "x-forwarded-groups"), Some("devs,ops"));
    assert_eq!(header(&req, "x-forwarded-sub"), Some("user-42"));
    assert_eq!(header(&req, "x-auth-request-user"), None);
    assert_eq!(
        header(&req, "x-auth-user"),
        Some("octocat"),
        "ours, not the forged one"
    );
    assert_eq!(req.headers().get_all("x-auth-user").iter().count(), 1);
    assert_eq!(header(&req, "x-auth-subject"), Some("user-42"));
    assert_eq!(header(&req, "x-kept"), Some("1"));
    assert_eq!(req.headers().get_all("x-forwarded-user").iter().count(), 1);
}

#[test]
fn rs256_tokens_verify_and_algorithms_must_match_the_key() {
    let es = es256_key("es-1");
    let rs = rs256_key("rs-1");
    let snap = compile(vec![proxy(API, auth("forward", &[]))], &[&es, &rs], &[]);
    let token = sign(&rs, &claims("https://api.example.com/"));
    assert!(run(&snap, API, request("/", Some(&token), &[])).is_ok());
    // An ES256 signature presented under the RSA key's kid.
    let liar = SigningKey {
        kid: "rs-1".into(),
        ..es256_key("x")
    };
    let token = sign(&liar, &claims("https://api.example.com"));
    let r = refused(&snap, API, request("/", Some(&token), &[]));
    assert_invalid(&r, "unsupported or mismatched algorithm");
}

#[test]
fn wrong_issuer_is_refused() {
    let f = fixture("forward", &[]);
    let mut c = claims("https://api.example.com");
    c["iss"] = json!("https://evil.example.com");
    let r = refused(&f.snap, API, request("/", Some(&sign(&f.es, &c)), &[]));
    assert_invalid(&r, "wrong issuer");
}

#[test]
fn token_for_another_resource_is_refused() {
    let f = fixture("forward", &[]);
    let for_other = sign(&f.es, &claims("https://other.example.com"));
    assert!(run(&f.snap, OTHER, request("/", Some(&for_other), &[])).is_ok());
    let r = refused(&f.snap, API, request("/", Some(&for_other), &[]));
    assert_invalid(&r, "token is not for this resource");
    // Look-alike hosts and schemes are not this resource either.
    for aud in [
        "https://api.example.com.evil.com",
        "https://evil.com/https://api.example.com",
        "ftp://api.example.com",
        "https://api.example.com:444",
        "api.example.com",
    ] {
        let token = sign(&f.es, &claims(aud));
        let r = refused(&f.snap, API, request("/", Some(&token), &[]));
        assert_invalid(&r, "token is not for this resource");
    }
}

#[test]
fn path_scoped_audience_covers_only_that_path() {
    let f = fixture("forward", &[]);
    let token = sign(&f.es, &claims("https://api.example.com/mcp"));
    for ok in ["/mcp", "/mcp/", "/mcp/tools"] {
        assert!(
            run(&f.snap, API, request(ok, Some(&token), &[])).is_ok(),
            "{ok}"
        );
    }
    for bad in ["/", "/mcpx", "/other", "/mcp/../admin", "/mcp/%2e%2e/admin"] {
        let r = refused(&f.snap, API, request(bad, Some(&token), &[]));
        assert_invalid(&r, "token is not for this resource");
    }
    // What the plain-HTTP listener's metadata advertises is accepted there too.
    let token = sign(&f.es, &claims("http://api.example.com"));
    assert!(run(&f.snap, API, request("/", Some(&token), &[])).is_ok());
}

#[test]
fn expired_and_not_yet_valid_tokens_are_refused() {
    use crate::metrics::{TokenOutcome, token_count};
    let counted = token_count(TokenOutcome::Expired);
    let f = fixture("forward", &[]);
    let mut c = claims("https://api.example.com");
    c["exp"] = json!(now() - 120);
    assert_invalid(
        &refused(&f.snap, API, request("/", Some(&sign(&f.es, &c)), &[])),
        "token expired",
    );
    let mut c = claims("https://api.example.com");
    c["nbf"] = json!(now() + 300);
    assert_invalid(
        &refused(&f.snap, API, request("/", Some(&sign(&f.es, &c)), &[])),
        "token not yet valid",
    );
    // Counted under `expired` (other tests may count more meanwhile).
    assert!(token_count(TokenOutcome::Expired) >= counted + 2);
    // Within the leeway: accepted.
    let mut c = claims("https://api.example.com");
    c["exp"] = json!(now() - 10);
    assert!(run(&f.snap, API, request("/", Some(&sign(&f.es, &c)), &[])).is_ok());
}

#[test]
fn alg_none_is_refused() {
    let f = fixture("forward", &[]);
    let header = B64.encode(json!({"alg": "none", "typ": "at+jwt", "kid": "es-1"}).to_string());
    let payload = B64.encode(claims("https://api.example.com").to_string());
    let token = format!("{header}.{payload}.");
    assert_invalid(
        &refused(&f.snap, API, request("/", Some(&token), &[])),
        "malformed token",
    );
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    let f = fixture("forward", &[]);
    let c = claims("https://api.example.com");
    let x = f.es.jwk["x"].as_str().unwrap_or_default();
    let secrets = [
        f.es.jwk.to_string().into_bytes(),
        x.as_bytes().to_vec(),
        B64.decode(x).unwrap_or_default(),
    ];
    for secret in secrets {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("at+jwt".into());
        header.kid = Some("es-1".into());
        let token = jsonwebtoken::encode(&header, &c, &EncodingKey::from_secret(&secret))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_invalid(
            &refused(&f.snap, API, request("/", Some(&token), &[])),
            "unsupported or mismatched algorithm",
        );
    }
}

#[test]
fn tampered_tokens_are_refused() {
    let f = fixture("forward", &[]);
    let token = sign(&f.es, &claims("https://api.example.com"));
    let parts: Vec<&str> = token.split('.').collect();
    let [h, p, s] = parts[..] else {
        panic!("not a JWS: {token}")
    };
    // A flipped signature byte.
    let mut sig = B64.decode(s).unwrap_or_else(|e| panic!("{e}"));
    sig[10] ^= 0x01;
    let token = format!("{h}.{p}.{}", B64.encode(&sig));
    assert_invalid(
        &refused(&f.snap, API, request("/", Some(&token), &[])),
        "invalid signature",
    );
    // Claims changed under the original signature.
    let mut c = claims("https://api.example.com");
    c["sub"] = json!("someone-else");
    let token = format!("{h}.{}.{s}", B64.encode(c.to_string()));
    assert_invalid(
        &refused(&f.snap, API, request("/", Some(&token), &[])),
        "invalid signature",
    );
}

#[test]
fn unknown_kid_missing_kid_and_wrong_typ_are_refused() {
    let f = fixture("forward", &[]);
    let stranger = es256_key("es-2");
    let token = sign(&stranger, &claims("https://api.example.com"));
    assert_invalid(
        &refused(&f.snap, API, request("/", Some(&token), &[])),
        "unknown signing key",
    );
    let c = claims("https://api.example.com");
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    let token = jsonwebtoken::encode(&header, &c, &f.es.key).unwrap_or_else(|e| panic!("{e}"));
    assert_invalid(
        &refused(&f.snap, API, request("/", Some(&token), &[])),
        "token has no key id",
    );
    header.kid = Some("es-1".into());
    header.typ = Some("JWT".into());
    let token = jsonwebtoken::encode(&header, &c, &f.es.key).unwrap_or_else(|e| panic!("{e}"));
    assert_invalid(
        &refused(&f.snap, API, request("/", Some(&token), &[])),
        "not an access token",
    );
    assert_invalid(
        &refused(&f.snap, API, request("/", Some("not-a-jwt"), &[])),
        "malformed token",
    );
}

#[test]
fn revoked_jti_is_refused() {
    let f = fixture("forward", &[]);
    let mut c = claims("https://api.example.com");
    c["jti"] = json!("revoked-jti");
    assert_invalid(
        &refused(&f.snap, API, request("/", Some(&sign(&f.es, &c)), &[])),
        "token revoked",
    );
}

#[test]
fn user_and_client_revocations_cover_tokens_issued_up_to_their_cutoff() {
    let es = es256_key("es-1");
    let t = now();
    let revoke = |kind: &str, value: &str, issued_before: i64| pb::Revocation {
        kind: kind.into(),
        value: value.into(),
        expires_at: t + 3600,
        issued_before,
    };
    let snapshot_with = |r: pb::Revocation| {
        let clients = ClientCache::with_roots(rustls::RootCertStore::empty());
        let wire = pb::ConfigSnapshot {
            version: 1,
            proxies: vec![proxy(API, auth("forward", &[]))],
            jwks_json: json!({ "keys": [es.jwk.clone()] }).to_string(),
            oauth_issuer: ISSUER.into(),
            revocations: vec![r],
            ..Default::default()
        };
        Snapshot::compile(&wire, &clients).unwrap_or_else(|e| panic!("{e}"))
    };
    let issued_at = |iat: i64| {
        let mut c = claims("https://api.example.com");
        c["iat"] = json!(iat);
        c["nbf"] = json!(t - 120);
        sign(&es, &c)
    };
    for kind in ["sub", "client_id"] {
        let value = if kind == "sub" { "user-42" } else { "client-1" };
        let snap = snapshot_with(revoke(kind, value, t - 10));
        // Issued before and at the cutoff: revoked.
        for iat in [t - 60, t - 10] {
            let req = request("/", Some(&issued_at(iat)), &[]);
            assert_invalid(&refused(&snap, API, req), "token revoked");
        }
        // A login after the revocation is unaffected.
        let req = request("/", Some(&issued_at(t - 9)), &[]);
        assert!(run(&snap, API, req).is_ok(), "{kind}: later token refused");
        // Another user or client is unaffected.
        let mut other = claims("https://api.example.com");
        other["sub"] = json!("user-7");
        other["client_id"] = json!("client-2");
        other["iat"] = json!(t - 60);
        let req = request("/", Some(&sign(&es, &other)), &[]);
        assert!(
            run(&snap, API, req).is_ok(),
            "{kind}: other principal refused"
        );
        // No cutoff: every token of theirs.
        let snap = snapshot_with(revoke(kind, value, 0));
        let req = request("/", Some(&issued_at(t)), &[]);
        assert_invalid(&refused(&snap, API, req), "token revoked");
    }
}

#[test]
fn verified_tokens_are_cached_until_expiry_and_never_across_snapshots() {
    let es = es256_key("es-1");
    let wire = |revoked: &[&str]| pb::ConfigSnapshot {
        version: 1,
        jwks_json: json!({ "keys": [es.jwk.clone()] }).to_string(),
        oauth_issuer: ISSUER.into(),
        revocations: revoked
            .iter()
            .map(|jti| pb::Revocation {
                kind: "jti".into(),
                value: (*jti).into(),
                expires_at: now() + 3600,
                issued_before: 0,
            })
            .collect(),
        ..Default::default()
    };
    let verifier = super::Verifier::compile(&wire(&[])).unwrap_or_else(|e| panic!("{e}"));
    let token = sign(&es, &claims("https://api.example.com"));
    let first = verifier.verify(&token).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(verifier.cached(), 1);
    let again = verifier.verify(&token).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        Arc::ptr_eq(&first, &again),
        "second check not served from the cache"
    );
    assert_eq!(verifier.cached(), 1);

    // Refusals are never cached; a tampered copy of a cached token is still refused.
    let mut tampered = token.clone();
    tampered.pop();
    assert!(verifier.verify(&tampered).is_err());
    assert_eq!(verifier.cached(), 1);
    // The same length and signature, another payload: the cache's key (the token's tail)
    // finds the entry, its whole-token comparison refuses it, the full check too.
    let dot = token.find('.').unwrap_or_else(|| panic!("no dot")) + 1;
    let mut forged = token.clone().into_bytes();
    forged[dot] = if forged[dot] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap_or_else(|e| panic!("{e}"));
    assert!(verifier.cached_claims(forged.as_bytes()).is_none());
    assert_eq!(
        verifier.verify(&forged).err(),
        Some(super::TokenError::Signature)
    );
    assert!(
        verifier
            .cached_claims(token.as_bytes())
            .is_some_and(|c| Arc::ptr_eq(&c, &first))
    );

    // A token past exp + leeway is refused by the full check and so never cached.
    let mut old = claims("https://api.example.com");
    old["exp"] = json!(now() - super::verify::LEEWAY_SECS as i64 - 5);
    assert_eq!(
        verifier.verify(&sign(&es, &old)).err(),
        Some(super::TokenError::Expired)
    );
    assert_eq!(verifier.cached(), 1);

    // The next snapshot revokes it: a fresh verifier, so the cached success is gone.
    let next = super::Verifier::compile(&wire(&["jti-1"])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(next.verify(&token).err(), Some(super::TokenError::Revoked));
    assert_eq!(next.cached(), 0);
}

#[test]
fn insufficient_scope_is_403_naming_the_scopes() {
    let f = fixture("forward", &["mcp:read", "admin"]);
    let token = sign(&f.es, &claims("https://api.example.com"));
    let r = refused(&f.snap, API, request("/", Some(&token), &[]));
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        challenge(&r),
        "Bearer resource_metadata=\"http://api.example.com/.well-known/oauth-protected-resource\", \
         scope=\"mcp:read admin\", error=\"insufficient_scope\", \
         error_description=\"the token lacks a required scope\""
    );
    assert_eq!(body(&r)["error"], "insufficient_scope");
}

#[test]
fn malformed_authorization_is_400() {
    let f = fixture("forward", &[]);
    for value in ["Bearer", "Bearer a b"] {
        let r = refused(
            &f.snap,
            API,
            request("/", None, &[("authorization", value)]),
        );
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{value}");
        assert!(challenge(&r).contains("error=\"invalid_request\""));
    }
    let mut req = request("/", Some("a.b.c"), &[]);
    req.headers_mut().append(
        AUTHORIZATION,
        http::HeaderValue::from_static("Bearer x.y.z"),
    );
    assert_eq!(refused(&f.snap, API, req).status(), StatusCode::BAD_REQUEST);
    // Bytes outside ASCII (obs-text, or UTF-8) cannot be a bearer credential.
    for raw in [&b"Bearer a.b\xff"[..], "Bearer a.b.c\u{e9}".as_bytes()] {
        let mut req = request("/", None, &[]);
        req.headers_mut()
            .insert(AUTHORIZATION, http::HeaderValue::from_bytes(raw).unwrap());
        let r = refused(&f.snap, API, req);
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{raw:?}");
        assert!(challenge(&r).contains("error=\"invalid_request\""));
    }
}

#[test]
fn a_verified_token_skips_no_check_when_the_header_differs() {
    let f = fixture("forward", &[]);
    let token = sign(&f.es, &claims("https://api.example.com"));
    // Verified once (and cached); spaces around it, or another case of the scheme, are
    // the same credential.
    assert!(run(&f.snap, API, request("/", Some(&token), &[])).is_ok());
    for value in [format!("bearer   {token}  "), format!("BEARER {token}")] {
        let req = request("/", None, &[("authorization", &value)]);
        assert!(run(&f.snap, API, req).is_ok(), "{value}");
    }
    // Anything added to it is a different credential and gets every check.
    for (raw, status) in [
        (
            format!("Bearer {token} x").into_bytes(),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("Bearer {token}\u{e9}").into_bytes(),
            StatusCode::BAD_REQUEST,
        ),
        (
            [format!("Bearer {token}").as_bytes(), b"\xff"].concat(),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("Bearer {token}x").into_bytes(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            format!("Bearer x{token}").into_bytes(),
            StatusCode::UNAUTHORIZED,
        ),
    ] {
        let mut req = request("/", None, &[]);
        req.headers_mut()
            .insert(AUTHORIZATION, http::HeaderValue::from_bytes(&raw).unwrap());
        let r = refused(&f.snap, API, req);
        assert_eq!(r.status(), status, "{}", String::from_utf8_lossy(&raw));
    }
}

#[test]
fn public_paths_pass_without_a_token_but_are_still_sanitised() {
    let f = fixture("forward", &[]);
    let req = run(
        &f.snap,
        API,
        request("/health/db", Some("junk"), &[("x-forwarded-user", "admin")]),
    )
    .unwrap_or_else(|r| panic!("{r:?}"));
    assert_eq!(header(&req, "authorization"), None);
    assert_eq!(header(&req, "x-forwarded-user"), None);
    // Nor a bearer token hidden behind whitespace that an upstream skips (HTTP/2 lets a
    // value start with a space; found by fuzz/edge).
    for value in [" Bearer junk", "\tbearer junk", "Bearer\tjunk"] {
        let mut req = request("/health", None, &[("authorization", value)]);
        let proxy = proxy_for(&f.snap, API);
        vhost::admit(proxy, &Origin::new(false, API), &mut req)
            .unwrap_or_else(|r| panic!("{value:?}: {r:?}"));
        assert_eq!(header(&req, "authorization"), None, "{value:?}");
    }
    for private in [
        "/healthz",
        "/health/../admin",
        "/health/%2E%2E/admin",
        "/x/health",
    ] {
        let r = refused(&f.snap, API, request(private, None, &[]));
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{private}");
    }
}

#[test]
fn passthrough_never_refuses_and_sets_identity_only_for_valid_tokens() {
    let f = fixture("passthrough", &[]);
    let forged = [
        ("x-forwarded-user", "admin"),
        ("x-auth-request-email", "a@b"),
    ];
    let req = run(&f.snap, API, request("/", None, &forged)).unwrap_or_else(|r| panic!("{r:?}"));
    assert_eq!(header(&req, "x-forwarded-user"), None);
    assert_eq!(header(&req, "x-auth-request-email"), None);
    let wrong = sign(&f.es, &claims("https://other.example.com"));
    let req =
        run(&f.snap, API, request("/", Some(&wrong), &forged)).unwrap_or_else(|r| panic!("{r:?}"));
    assert_eq!(header(&req, "x-forwarded-user"), None);
    assert_eq!(header(&req, "authorization"), None);
    let good = sign(&f.es, &claims("https://api.example.com"));
    let req = run(&f.snap, API, request("/", Some(&good), &[])).unwrap_or_else(|r| panic!("{r:?}"));
    assert_eq!(header(&req, "x-forwarded-user"), Some("octocat"));
    // Other schemes belong to the application and pass untouched.
    let req = run(
        &f.snap,
        API,
        request("/", None, &[("authorization", "Basic dTpw")]),
    )
    .unwrap_or_else(|r| panic!("{r:?}"));
    assert_eq!(header(&req, "authorization"), Some("Basic dTpw"));
}

#[test]
fn metadata_documents_describe_the_resource() {
    let mut a = auth("forward", &["mcp:read"]);
    a.resource_documentation = "https://docs.example.com/api".into();
    a.resource_metadata_json =
        json!({"resource_name": "Example API", "resource": "https://evil", "authorization_servers": ["https://evil"]})
            .to_string();
    let es = es256_key("es-1");
    let snap = compile(vec![proxy(API, a)], &[&es], &[]);
    let doc = |path: &str| {
        let r = refused(&snap, API, request(path, None, &[]));
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        serde_json::from_slice::<Value>(r.body()).unwrap_or(Value::Null)
    };
    assert_eq!(
        doc("/.well-known/oauth-protected-resource"),
        json!({
            "resource": "http://api.example.com",
            "authorization_servers": [ISSUER],
            "scopes_supported": ["mcp:read"],
            "bearer_methods_supported": ["header"],
            "resource_documentation": "https://docs.example.com/api",
            "resource_name": "Example API",
        })
    );
    assert_eq!(
        doc("/.well-known/oauth-protected-resource/mcp")["resource"],
        "http://api.example.com/mcp"
    );
    let mut post = request("/.well-known/oauth-protected-resource", None, &[]);
    *post.method_mut() = Method::POST;
    assert_eq!(
        refused(&snap, API, post).status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[test]
fn hostile_host_values_are_not_echoed_into_challenges() {
    let f = fixture("forward", &[]);
    let proxy = proxy_for(&f.snap, API);
    let mut req = request("/", None, &[]);
    let r = vhost::admit(proxy, &Origin::new(false, "api.example.com\"x"), &mut req)
        .err()
        .unwrap_or_else(|| panic!("admitted"));
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.challenge().is_none());
}

fn route(id: &str, path: &str, host: &str, target: &str) -> pb::Route {
    pb::Route {
        id: id.into(),
        priority: 10,
        match_kind: pb::PathMatchKind::Exact as i32,
        path_pattern: path.into(),
        target_kind: pb::RouteTargetKind::Url as i32,
        target_value: target.into(),
        proxy_hostnames: vec![host.into()],
        enabled: true,
        ..Default::default()
    }
}

/// Runs the policy and returns the upstream URL the admitted request goes to.
fn upstream_of(snap: &Snapshot, host: &str, req: &mut Request<()>) -> String {
    let proxy = proxy_for(snap, host);
    match vhost::admit(proxy, &Origin::new(false, host), req) {
        Ok(admitted) => admitted.upstream().target().to_string(),
        Err(r) => panic!("refused: {r:?}"),
    }
}

fn routed_fixture() -> Fixture {
    let es = es256_key("es-1");
    let mut public = route("status", "/status", API, "http://status:1");
    public.public = true;
    let mut admin = route("admin", "/admin", API, "http://admin:2");
    admin.required_scopes = vec!["admin".into(), "mcp:read".into()];
    let private = route("private", "/private", API, "http://private:3");
    let snap = compile_with_routes(
        vec![proxy(API, auth("forward", &["mcp:read"]))],
        vec![public, admin, private],
        &[&es],
        &[],
    );
    Fixture { es, snap }
}

#[test]
fn only_a_route_marked_public_skips_the_token() {
    let f = routed_fixture();
    let forged = [("x-forwarded-user", "admin"), ("x-auth-user", "admin")];
    let mut req = request("/status", Some("junk"), &forged);
    assert_eq!(upstream_of(&f.snap, API, &mut req), "http://status:1");
    // Still sanitised: no token upstream, no forged identity, none set.
    assert_eq!(header(&req, "authorization"), None);
    assert_eq!(header(&req, "x-forwarded-user"), None);
    assert_eq!(header(&req, "x-auth-user"), None);
    // The public route is an exact match: neighbours and other routes stay protected.
    for path in ["/status/x", "/statusx", "/private", "/"] {
        let r = refused(&f.snap, API, request(path, None, &[]));
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let token = sign(&f.es, &claims("https://api.example.com"));
    let mut req = request("/private", Some(&token), &[]);
    assert_eq!(upstream_of(&f.snap, API, &mut req), "http://private:3");
    assert_eq!(header(&req, "x-forwarded-user"), Some("octocat"));
}

#[test]
fn route_scopes_add_to_the_proxy_scopes() {
    let f = routed_fixture();
    let union = "scope=\"mcp:read admin\"";
    // No token: the challenge asks for the union.
    let r = refused(&f.snap, API, request("/admin", None, &[]));
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&r).contains(union), "{}", challenge(&r));
    // Enough for the proxy, not for the route: 403 naming the union.
    let token = sign(&f.es, &claims("https://api.example.com"));
    let r = refused(&f.snap, API, request("/admin", Some(&token), &[]));
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(challenge(&r).contains(union), "{}", challenge(&r));
    assert!(challenge(&r).contains("error=\"insufficient_scope\""));
    assert_eq!(body(&r)["error"], "insufficient_scope");
    // Other paths only need the proxy's scopes, and say so.
    let mut req = request("/", Some(&token), &[]);
    assert_eq!(upstream_of(&f.snap, API, &mut req), "http://backend:8080");
    let r = refused(&f.snap, API, request("/", None, &[]));
    assert!(
        challenge(&r).contains("scope=\"mcp:read\""),
        "{}",
        challenge(&r)
    );
    // Both sets granted: admitted to the route.
    let mut c = claims("https://api.example.com");
    c["scope"] = json!("admin mcp:read");
    let mut req = request("/admin", Some(&sign(&f.es, &c)), &[]);
    assert_eq!(upstream_of(&f.snap, API, &mut req), "http://admin:2");
    // Only admin: the proxy's own scope is still required.
    c["scope"] = json!("admin");
    let r = refused(&f.snap, API, request("/admin", Some(&sign(&f.es, &c)), &[]));
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[test]
fn routes_into_a_protected_proxy_are_blocked() {
    let es = es256_key("es-1");
    let mut open = proxy(OTHER, auth("forward", &[]));
    open.auth = None;
    let mut plain = proxy("plain.example.com", auth("forward", &[]));
    plain.auth = None;
    plain.target_url = "http://plain:4".into();
    let to_proxy = |id: &str, path: &str, target: &str| pb::Route {
        target_kind: pb::RouteTargetKind::Proxy as i32,
        ..route(id, path, OTHER, target)
    };
    let snap = compile_with_routes(
        vec![proxy(API, auth("forward", &[])), open, plain],
        vec![
            to_proxy("bypass", "/vault", API),
            to_proxy("fine", "/plain", "plain.example.com"),
        ],
        &[&es],
        &[],
    );
    let r = refused(&snap, OTHER, request("/vault", None, &[]));
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    // A valid token for the protected proxy does not open the route either.
    let token = sign(&es, &claims("https://api.example.com"));
    let r = refused(&snap, OTHER, request("/vault", Some(&token), &[]));
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let mut req = request("/plain", None, &[]);
    assert_eq!(upstream_of(&snap, OTHER, &mut req), "http://plain:4");
}

fn allowlisted(configure: impl FnOnce(&mut pb::ProxyAuthPolicy)) -> Fixture {
    let es = es256_key("es-1");
    let mut policy = auth("forward", &[]);
    configure(&mut policy);
    let snap = compile(vec![proxy(API, policy)], &[&es], &[]);
    Fixture { es, snap }
}

#[test]
fn allowlists_admit_only_matching_users() {
    let mut c = claims("https://api.example.com");
    c["groups"] = json!(["Acme", "acme/Platform", "oidc-Admins"]);
    let admitted =
        |f: &Fixture| run(&f.snap, API, request("/", Some(&sign(&f.es, &c)), &[])).map(|_| ());
    type Configure = fn(&mut pb::ProxyAuthPolicy);
    let matching: [(&str, Configure); 6] = [
        ("empty", |_| {}),
        ("user", |p| {
            p.allowed_users = vec!["nobody".into(), "OctoCat".into()]
        }),
        ("org", |p| p.allowed_orgs = vec!["acme".into()]),
        ("team", |p| p.allowed_teams = vec!["ACME/platform".into()]),
        ("domain", |p| {
            p.allowed_email_domains = vec!["Example.COM".into()]
        }),
        ("group", |p| p.allowed_groups = vec!["oidc-Admins".into()]),
    ];
    for (name, configure) in matching {
        let f = allowlisted(configure);
        assert!(admitted(&f).is_ok(), "{name}: {:?}", admitted(&f));
    }
    let refusing: [(&str, Configure); 6] = [
        ("user", |p| p.allowed_users = vec!["octo".into()]),
        ("org is not a team", |p| {
            p.allowed_orgs = vec!["platform".into()]
        }),
        ("team", |p| p.allowed_teams = vec!["acme/other".into()]),
        ("team is not an org", |p| {
            p.allowed_teams = vec!["other/acme".into()]
        }),
        ("domain suffix", |p| {
            p.allowed_email_domains = vec!["ample.com".into()]
        }),
        ("groups are exact", |p| {
            p.allowed_groups = vec!["oidc-admins".into()]
        }),
    ];
    for (name, configure) in refusing {
        let f = allowlisted(configure);
        let r = admitted(&f)
            .err()
            .unwrap_or_else(|| panic!("{name}: admitted"));
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{name}");
        assert!(r.challenge().is_none(), "{name}");
        assert_eq!(
            body(&r),
            json!({"error": "access_denied",
                   "error_description": "the user is not allowed to use this resource"}),
            "{name}"
        );
    }
    // Invalid tokens are still 401, whatever the allowlist.
    let f = allowlisted(|p| p.allowed_users = vec!["octocat".into()]);
    let r = refused(&f.snap, API, request("/", None, &[]));
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn malformed_allowlist_entries_reject_the_snapshot() {
    let es = es256_key("es-1");
    let jwks = json!({ "keys": [es.jwk.clone()] });
    for (field, configure) in [
        (
            "auth.allowed_teams",
            (|p: &mut pb::ProxyAuthPolicy| p.allowed_teams = vec!["acme".into()]) as fn(&mut _),
        ),
        ("auth.allowed_users", |p| {
            p.allowed_users = vec!["a b".into()]
        }),
        ("auth.allowed_email_domains", |p| {
            p.allowed_email_domains = vec!["a@b.c".into()]
        }),
    ] {
        let mut policy = auth("forward", &[]);
        configure(&mut policy);
        let wire = pb::ConfigSnapshot {
            version: 1,
            proxies: vec![proxy(API, policy)],
            jwks_json: jwks.to_string(),
            oauth_issuer: ISSUER.into(),
            ..Default::default()
        };
        let clients = ClientCache::with_roots(rustls::RootCertStore::empty());
        let err = Snapshot::compile(&wire, &clients)
            .err()
            .unwrap_or_else(|| panic!("{field}: compiled"));
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
}

fn auth_with(mode: &str, forward_token: bool, names: &[(&str, &str)]) -> pb::ProxyAuthPolicy {
    pb::ProxyAuthPolicy {
        forward_token,
        identity_headers: names
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..auth(mode, &[])
    }
}

#[test]
fn token_is_forwarded_only_when_opted_in_and_verified() {
    let es = es256_key("es-1");
    let snap = compile(
        vec![
            proxy(API, auth_with("forward", true, &[])),
            proxy(OTHER, auth_with("passthrough", true, &[])),
            proxy("plain.example.com", auth("forward", &[])),
        ],
        &[&es],
        &[],
    );
    let token = sign(&es, &claims("https://api.example.com"));
    let req = run(&snap, API, request("/x", Some(&token), &[])).unwrap_or_else(|r| panic!("{r:?}"));
    assert_eq!(
        header(&req, "authorization"),
        Some(format!("Bearer {token}").as_str()),
        "verified token reaches the upstream unchanged"
    );
    assert_eq!(header(&req, "x-auth-user"), Some("octocat"));
    // Public path: admitted without verification, so the header is not forwarded.
    let req =
        run(&snap, API, request("/health", Some(&token), &[])).unwrap_or_else(|r| panic!("{r:?}"));
    assert_eq!(header(&req, "authorization"), None);
    // Passthrough with a token for another resource: admitted anonymously, token removed.
    let wrong = sign(&es, &claims("https://api.example.com"));
    let req =
        run(&snap, OTHER, request("/", Some(&wrong), &[])).unwrap_or_else(|r| panic!("{r:?}"));
    assert_eq!(header(&req, "authorization"), None);
    assert_eq!(header(&req, "x-auth-user"), None);
    // Passthrough with a valid token: forwarded.
    let good = sign(&es, &claims("https://other.example.com"));
    let req = run(&snap, OTHER, request("/", Some(&good), &[])).unwrap_or_else(|r| panic!("{r:?}"));
    assert_eq!(
        header(&req, "authorization"),
        Some(&*format!("Bearer {good}"))
    );
    // Without the opt-in the verified token is still removed.
    let plain = sign(&es, &claims("https://plain.example.com"));
    let req = run(&snap, "plain.example.com", request("/", Some(&plain), &[]))
        .unwrap_or_else(|r| panic!("{r:?}"));
    assert_eq!(header(&req, "authorization"), None);
    assert_eq!(header(&req, "x-auth-user"), Some("octocat"));
}

#[test]
fn renamed_identity_headers_replace_the_defaults_and_forged_copies_are_stripped() {
    let es = es256_key("es-1");
    let names = [("user", "X-Remote-User"), ("groups", "X-Auth-Teams")];
    let snap = compile(
        vec![proxy(API, auth_with("forward", false, &names))],
        &[&es],
        &[],
    );
    let token = sign(&es, &claims("https://api.example.com"));
    let forged = [
        ("x-remote-user", "admin"),
        ("x-auth-user", "admin"),
        ("x-auth-teams", "admins"),
        ("x-auth-groups", "admins"),
    ];
    let req =
        run(&snap, API, request("/x", Some(&token), &forged)).unwrap_or_else(|r| panic!("{r:?}"));
    assert_eq!(header(&req, "x-remote-user"), Some("octocat"));
    assert_eq!(req.headers().get_all("x-remote-user").iter().count(), 1);
    assert_eq!(header(&req, "x-auth-user"), None, "default name not set");
    assert_eq!(header(&req, "x-auth-teams"), Some("devs,ops"));
    assert_eq!(header(&req, "x-auth-groups"), None);
    assert_eq!(header(&req, "x-auth-email"), Some("octo@example.com"));
    assert_eq!(
        header(&req, "x-forwarded-user"),
        Some("octocat"),
        "compat kept"
    );
    assert_eq!(header(&req, "authorization"), None);
    // Anonymous (no token, passthrough-like public path): forged copies of both gone.
    let req =
        run(&snap, API, request("/health", None, &forged)).unwrap_or_else(|r| panic!("{r:?}"));
    for (name, _) in forged {
        assert_eq!(header(&req, name), None, "{name}");
    }
}

#[test]
fn bad_identity_header_names_reject_the_snapshot_naming_the_field() {
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("user", "Authorization")], "auth.identity_headers.user"),
        (&[("email", "bad name")], "auth.identity_headers.email"),
        (
            &[("client-id", "X-Forwarded-User")],
            "auth.identity_headers.client-id",
        ),
        (&[("nickname", "X-Nick")], "auth.identity_headers"),
        (
            &[("user", "X-Who"), ("email", "x-who")],
            "auth.identity_headers.email",
        ),
    ];
    for (names, field) in cases {
        let p = auth_with("forward", false, names);
        let e = super::IdentityHeaders::from_proto(p.forward_token, &p.identity_headers)
            .err()
            .unwrap_or_else(|| panic!("{names:?} accepted"));
        assert_eq!(e.field(), field, "{names:?}: {}", e.reason());
        let wire = pb::ConfigSnapshot {
            version: 1,
            proxies: vec![proxy(API, p)],
            oauth_issuer: ISSUER.into(),
            ..Default::default()
        };
        let clients = ClientCache::with_roots(rustls::RootCertStore::empty());
        let err = Snapshot::compile(&wire, &clients)
            .err()
            .unwrap_or_else(|| panic!("{names:?} compiled"));
        assert!(err.to_string().contains(field), "{err}");
    }
}

// === The head admission (HTTP/1.1 fast path) ===

/// `req` as an HTTP/1.1 head for `host`, parsed by httparse into `slots` as the fast path
/// parses it.
fn head_bytes(host: &str, req: &Request<()>) -> Vec<u8> {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {host}\r\n",
        req.method(),
        req.uri()
    );
    for (name, value) in req.headers() {
        head.push_str(&format!(
            "{name}: {}\r\n",
            value.to_str().unwrap_or_else(|e| panic!("{e}"))
        ));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// `vhost::admit_head` over the head's slices, and `vhost::admit` over the same request;
/// for each admission: its claims' subject and the identity fields the fast path would
/// write (`write_identity_fields`, or `apply_identity`'s through `admit`), and whether
/// the bearer `Authorization` goes on.
/// The lines `write_identity_fields` appends, as (name, value) pairs in order; each line
/// must be `name: value\r\n`.
fn field_lines(claims: &super::Claims, ids: &super::IdentityHeaders) -> Vec<(String, String)> {
    let mut out = b"GET / HTTP/1.1\r\n".to_vec();
    super::write_identity_fields(claims, ids, &mut out);
    let text = String::from_utf8(out).unwrap_or_else(|e| panic!("{e}"));
    let lines = text.strip_prefix("GET / HTTP/1.1\r\n").unwrap_or_default();
    let lines = lines
        .strip_suffix("\r\n")
        .unwrap_or_else(|| panic!("{lines:?}"));
    lines
        .split("\r\n")
        .map(|line| match line.split_once(": ") {
            Some((n, v)) => (n.to_owned(), v.to_owned()),
            None => panic!("not a field line: {line:?}"),
        })
        .collect()
}

type Both = (
    Option<(Option<String>, Vec<(String, String)>, bool)>,
    Option<(Option<String>, Vec<(String, String)>, bool)>,
);

fn both(
    snap: &Snapshot,
    host: &str,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
) -> Both {
    let proxy = proxy_for(snap, host);
    let origin = Origin::new(false, host);
    let mut req = request(path, token, extra);
    let bytes = head_bytes(host, &req);
    let mut slots = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Request::new(&mut slots);
    assert!(parsed.parse(&bytes).is_ok_and(|s| s.is_complete()));
    let fast = vhost::admit_head(proxy, &origin, &Method::GET, path, parsed.headers).map(|a| {
        let mut fields = Vec::new();
        let mut keeps = true;
        if let Some(ids) = a.identity_headers() {
            keeps = super::keeps_token(ids, a.claims().is_some(), true);
            if let Some(claims) = a.claims() {
                fields = field_lines(claims, ids);
            }
        }
        fields.sort();
        (a.claims().map(|c| c.sub.clone()), fields, keeps)
    });
    let full = vhost::admit(proxy, &origin, &mut req).ok().map(|a| {
        let sub = a.claims().map(|c| c.sub.clone());
        let mut fields: Vec<(String, String)> = req
            .headers()
            .iter()
            .filter(|(n, _)| {
                let n = n.as_str();
                n.starts_with("x-auth-")
                    || n.starts_with("x-forwarded-")
                    || n.starts_with("x-user-")
                    || n == "x-remote-user"
            })
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        fields.sort();
        (sub, fields, req.headers().contains_key(AUTHORIZATION))
    });
    (fast, full)
}

#[test]
fn the_head_admission_admits_only_what_admit_admits_and_with_the_same_identity() {
    let es = es256_key("es-1");
    let snap = compile(
        vec![
            proxy(
                API,
                auth_with("forward", false, &[("user", "x-remote-user")]),
            ),
            proxy(OTHER, auth_with("passthrough", true, &[])),
            pb::ProxyTarget {
                auth: None,
                ..proxy("open.example.com", auth("forward", &[]))
            },
        ],
        &[&es],
        &["revoked-jti"],
    );
    let good = sign(&es, &claims("https://api.example.com"));
    let other = sign(&es, &claims("https://other.example.com"));
    let mut revoked = claims("https://api.example.com");
    revoked["jti"] = json!("revoked-jti");
    let revoked = sign(&es, &revoked);
    let forged = [("x-forwarded-user", "admin"), ("x-remote-user", "admin")];
    // Admitted by both, with the same identity.
    for (host, path, token) in [
        (API, "/api", Some(good.as_str())),
        (API, "/health", Some(good.as_str())),
        (API, "/health", None),
        (OTHER, "/", Some(other.as_str())),
        ("open.example.com", "/", Some(good.as_str())),
        ("open.example.com", "/", None),
    ] {
        let (fast, full) = both(&snap, host, path, token, &forged);
        let (fast, full) = (fast.expect("head admission"), full.expect("admit"));
        assert_eq!(fast.0, full.0, "{host}{path}");
        if host != "open.example.com" {
            // `admit` strips forged copies first; the fast path drops them while writing.
            assert_eq!(fast.1, full.1, "{host}{path}");
            assert_eq!(token.is_some() && fast.2, full.2, "{host}{path}");
        }
    }
    let (fast, _) = both(&snap, API, "/api", Some(&good), &[]);
    let (sub, fields, keeps) = fast.expect("admitted");
    assert_eq!(sub.as_deref(), Some("user-42"));
    assert!(
        fields.contains(&("x-remote-user".into(), "octocat".into())),
        "{fields:?}"
    );
    assert!(!keeps, "the token is not forwarded without the opt-in");
    // Everything `admit` refuses or answers, and what only it decides: not admitted here.
    for (what, host, path, token, extra) in [
        ("no token", API, "/api", None, &[][..]),
        ("other resource", API, "/api", Some(other.as_str()), &[][..]),
        ("revoked", API, "/api", Some(revoked.as_str()), &[][..]),
        ("garbage", API, "/api", Some("a.b.c"), &[][..]),
        (
            "metadata",
            API,
            "/.well-known/oauth-protected-resource",
            None,
            &[][..],
        ),
        (
            "two authorizations",
            API,
            "/api",
            Some(good.as_str()),
            &[("authorization", "Basic eDp5")][..],
        ),
        (
            "origin",
            API,
            "/api",
            Some(good.as_str()),
            &[("origin", "https://app.example")][..],
        ),
        ("passthrough, no token", OTHER, "/", None, &[][..]),
        (
            "passthrough, wrong token",
            OTHER,
            "/",
            Some(good.as_str()),
            &[][..],
        ),
    ] {
        let (fast, _) = both(&snap, host, path, token, extra);
        assert!(fast.is_none(), "{what}");
    }
}

#[test]
fn proxies_with_different_identity_names_share_a_token_and_each_gets_its_own_lines() {
    let es = es256_key("es-1");
    // The default names (twice: one layout), and five renamed sets: more layouts than a
    // token keeps prebuilt, so the last ones are written field by field.
    let hosts: Vec<String> = (0..7).map(|i| format!("p{i}.example.com")).collect();
    let names = |i: usize| match i {
        0 | 1 => vec![],
        i => vec![("user".to_owned(), format!("x-user-{i}"))],
    };
    let proxies = hosts
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let names = names(i);
            let names: Vec<(&str, &str)> = names
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            proxy(host, auth_with("forward", false, &names))
        })
        .collect();
    let snap = compile(proxies, &[&es], &[]);
    let mut shared = claims("unused");
    shared["aud"] = json!(
        hosts
            .iter()
            .map(|h| format!("http://{h}"))
            .collect::<Vec<_>>()
    );
    let token = sign(&es, &shared);
    let mut first: Option<*const super::Claims> = None;
    // Twice round the proxies: built on first use, then served from the token's blocks.
    for round in 0..2 {
        for (i, host) in hosts.iter().enumerate() {
            let (fast, full) = both(&snap, host, "/api", Some(&token), &[("x-user-3", "forged")]);
            let (fast, full) = (fast.expect("head admission"), full.expect("admit"));
            assert_eq!(
                fast.1, full.1,
                "round {round}, {host}: fast path and hyper's differ"
            );
            let user = if i < 2 {
                "x-auth-user".to_owned()
            } else {
                format!("x-user-{i}")
            };
            assert!(
                fast.1.contains(&(user.clone(), "octocat".into())),
                "{host}: {:?}",
                fast.1
            );
            for (name, value) in &fast.1 {
                assert!(
                    !name.starts_with("x-user-") || *name == user,
                    "{host}: another proxy's name {name}: {value}"
                );
            }
            assert_eq!(fast.1.len(), 10, "{host}: {:?}", fast.1);
            // One verified token, one set of claims, whichever proxy.
            let proxy = proxy_for(&snap, host);
            let mut req = request("/api", Some(&token), &[]);
            let admitted = vhost::admit(proxy, &Origin::new(false, host), &mut req)
                .unwrap_or_else(|r| panic!("{r:?}"));
            let claims: *const super::Claims =
                admitted.claims().unwrap_or_else(|| panic!("no claims"));
            match first {
                Some(first) => assert!(std::ptr::eq(first, claims), "{host}: claims not shared"),
                None => first = Some(claims),
            }
        }
    }
    // Another user's token on the same proxies: its own identity, never the first's.
    let mut other = shared.clone();
    other["login"] = json!("hubot");
    other["jti"] = json!("jti-2");
    let other = sign(&es, &other);
    for (i, host) in hosts.iter().enumerate() {
        let (fast, _) = both(&snap, host, "/api", Some(&other), &[]);
        let fields = fast.expect("admitted").1;
        let user = if i < 2 {
            "x-auth-user".to_owned()
        } else {
            format!("x-user-{i}")
        };
        assert!(
            fields.contains(&(user, "hubot".into())),
            "{host}: {fields:?}"
        );
        assert!(
            !fields.iter().any(|(_, v)| v == "octocat"),
            "{host}: {fields:?}"
        );
    }
}
