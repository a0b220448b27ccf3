//! What access-log records hold beyond the basics, end to end with real binaries: the query
//! string only for a proxy that opted in (`proxy create|update --log-query`), and then
//! without credential parameters; and the TLVs of a real HAProxy's PROXY v2 header
//! (`send-proxy-v2` with `proxy-v2-options unique-id,authority,ssl`, TLS terminated at
//! HAProxy): authority, unique id, ALPN and the SSL flags, version and verify result.
//! Records are read back from the control plane's store (`GET /api/v1/logs`), which keeps
//! whole records.

use std::time::Duration;

use portcullis_tests::procs::Proc;
use portcullis_tests::{Backend, ControlPlane, DataPlane, eventually, free_port, http_client};
use serde_json::Value;

/// The stored record with request id `id`, once it has arrived.
async fn record(cp: &ControlPlane, id: &str) -> Value {
    eventually(Duration::from_secs(20), "record stored", || async move {
        let resp = http_client()
            .get(format!("{}/api/v1/logs?request_id={id}", cp.http))
            .bearer_auth(&cp.admin_token)
            .send()
            .await
            .ok()?;
        let page: Value = resp.json().await.ok()?;
        page["items"].as_array().and_then(|a| a.first()).cloned()
    })
    .await
}

async fn get(dp: &DataPlane, host: &str, path_and_query: &str, id: &str) -> Value {
    let resp = http_client()
        .get(format!(
            "http://127.0.0.1:{}{path_and_query}",
            dp.http_port()
        ))
        .header("host", host)
        .header("x-request-id", id)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("echo")
}

const QUERY: &str = "?a=1&code=x&state=y&access_token=z";

#[tokio::test]
async fn the_query_string_is_recorded_only_when_the_proxy_opts_in_and_never_credentials() {
    let cp = ControlPlane::start().await;
    let backend = Backend::start("q").await;
    cp.cli_ok(&["proxy", "create", "plain.test", &backend.url]);
    cp.cli_ok(&["proxy", "create", "query.test", &backend.url, "--log-query"]);
    let shown: Value =
        serde_json::from_str(&cp.cli_ok(&["proxy", "show", "query.test", "--output", "json"]))
            .expect("json");
    assert_eq!(shown["log_query"], true, "{shown}");
    let dp = DataPlane::start(&cp, "dp-log-query").await;
    cp.wait_applied("dp-log-query", cp.version().await).await;

    // The upstream gets the query as sent either way; only the record differs.
    let seen = get(&dp, "plain.test", &format!("/p{QUERY}"), "q-off").await;
    assert_eq!(seen["path"], format!("/p{QUERY}"));
    get(&dp, "query.test", &format!("/p{QUERY}"), "q-on").await;
    let off = record(&cp, "q-off").await;
    assert_eq!(off["path"], "/p", "{off}");
    assert_eq!(off["query"], "", "{off}");
    let on = record(&cp, "q-on").await;
    assert_eq!(on["path"], "/p", "{on}");
    assert_eq!(on["query"], "a=1", "{on}");

    // Switched on and off with `proxy update`.
    cp.cli_ok(&["proxy", "update", "plain.test", "--log-query=true"]);
    cp.cli_ok(&["proxy", "update", "query.test", "--log-query=false"]);
    cp.wait_applied("dp-log-query", cp.version().await).await;
    get(&dp, "plain.test", "/p?b=2&STATE=s", "q-on-2").await;
    get(&dp, "query.test", &format!("/p{QUERY}"), "q-off-2").await;
    assert_eq!(record(&cp, "q-on-2").await["query"], "b=2");
    assert_eq!(record(&cp, "q-off-2").await["query"], "");

    // REST takes the field too, and refuses a wrong type naming it.
    let resp = http_client()
        .put(format!("{}/api/v1/proxy/targets/plain.test", cp.http))
        .bearer_auth(&cp.admin_token)
        .json(&serde_json::json!({"log_query": "yes"}))
        .send()
        .await
        .expect("put");
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.expect("body");
    assert!(text.contains("log_query"), "{text}");
    let resp = http_client()
        .put(format!("{}/api/v1/proxy/targets/plain.test", cp.http))
        .bearer_auth(&cp.admin_token)
        .json(&serde_json::json!({"log_query": false}))
        .send()
        .await
        .expect("put");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["log_query"], false, "{body}");
}

const HOST: &str = "app.localhost";

/// HAProxy terminating TLS for `HOST` (ALPN http/1.1) and sending a PROXY v2 header with
/// the unique-id, authority and SSL TLVs to `http`; the unique id also goes upstream as
/// `X-Unique-ID`, so the test can compare.
fn haproxy(http: u16, dir: &std::path::Path) -> (Proc, u16, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec![HOST.to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let pem = dir.join("haproxy.pem");
    std::fs::write(&pem, format!("{}{}", cert.pem(), key.serialize_pem())).expect("pem");
    let port = free_port();
    let conf = format!(
        r#"global
  maxconn 100
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend tls
  bind 127.0.0.1:{port} ssl crt {pem} alpn http/1.1
  unique-id-format %{{+X}}o%ci-%cp-%rt
  unique-id-header X-Unique-ID
  default_backend dp
backend dp
  server s1 127.0.0.1:{http} send-proxy-v2 proxy-v2-options unique-id,authority,ssl
"#,
        pem = pem.display()
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, conf).expect("write haproxy.cfg");
    let proc = Proc::spawn(
        std::process::Command::new(if std::path::Path::new("/usr/sbin/haproxy").exists() {
            "/usr/sbin/haproxy"
        } else {
            "haproxy"
        })
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null()),
    );
    (proc, port, cert.pem())
}

#[tokio::test]
async fn proxy_v2_tlvs_from_haproxy_reach_the_record() {
    let cp = ControlPlane::start().await;
    let backend = Backend::start("tlv").await;
    cp.cli_ok(&["proxy", "create", HOST, &backend.url]);
    let dp = DataPlane::start_args(
        &cp,
        "dp-log-tlv",
        &[
            "--http-proxy-protocol",
            "v2",
            "--proxy-protocol-from",
            "127.0.0.1/32",
        ],
    )
    .await;
    cp.wait_applied("dp-log-tlv", cp.version().await).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut lb, port, cert_pem) = haproxy(dp.http_port(), dir.path());
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert_pem.as_bytes()).expect("pem")])
        .resolve(HOST, addr)
        .http1_only()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let seen: Value = eventually(Duration::from_secs(10), "haproxy answers", || {
        let client = client.clone();
        async move {
            let resp = client
                .get(format!("https://{HOST}:{port}/tlv"))
                .header("x-request-id", "tlv-1")
                .send()
                .await
                .ok()?;
            (resp.status() == 200).then_some(())?;
            resp.json().await.ok()
        }
    })
    .await;
    let unique_id = seen["headers"]["x-unique-id"]
        .as_str()
        .expect("HAProxy's unique id upstream")
        .to_owned();
    assert!(!unique_id.is_empty());
    let r = record(&cp, "tlv-1").await;
    lb.kill();
    let hex: String = unique_id.bytes().map(|b| format!("{b:02x}")).collect();
    assert_eq!(r["proxy_unique_id"], hex, "{r}");
    assert_eq!(r["proxy_authority"], HOST, "{r}");
    assert_eq!(r["proxy_alpn"], "http/1.1", "{r}");
    assert_eq!(r["proxy_ssl_version"], "TLSv1.3", "{r}");
    // PP2_CLIENT_SSL, no client certificate, nothing to verify.
    assert_eq!(r["proxy_ssl_client"], 1, "{r}");
    assert_eq!(r["proxy_ssl_verify"], 0, "{r}");
    assert_eq!(r["client_ip"], "127.0.0.1", "{r}");
    assert_eq!(r["listener"], "http", "{r}");

    // A direct client (not the balancer: no header) has none of them.
    let resp = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 5]))
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
        .get(format!("http://127.0.0.1:{}/direct", dp.http_port()))
        .header("host", HOST)
        .header("x-request-id", "tlv-none")
        .send()
        .await
        .expect("direct request");
    assert_eq!(resp.status(), 200);
    let r = record(&cp, "tlv-none").await;
    for field in [
        "proxy_unique_id",
        "proxy_authority",
        "proxy_alpn",
        "proxy_ssl_version",
    ] {
        assert_eq!(r[field], "", "{field}: {r}");
    }
    assert_eq!(r["proxy_ssl_client"], 0, "{r}");
}
