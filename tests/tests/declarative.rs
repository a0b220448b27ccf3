//! Declarative configuration on the real binaries: `portcullis export` / `portcullis apply`,
//! `GET /api/v1/config`, `POST /api/v1/config/apply`, and `portcullis-control-plane
//! --bootstrap FILE`, on the embedded store and on a real Redis; applies racing each other
//! and API writes; and a document's certificate ordered from a real CA (Pebble).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_tests::pebble::Pebble;
use portcullis_tests::procs::bin;
use portcullis_tests::{
    Backend, ControlPlane, DataPlane, RedisServer, eventually, free_port, http_client,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};

/// The CLI against `cp` as admin, with no configuration file.
fn cli_cmd(cp: &ControlPlane) -> Command {
    let mut cmd = Command::new(bin("portcullis"));
    cmd.args(["--url", &cp.grpc, "--token", &cp.admin_token])
        .env_remove("PORTCULLIS_CONFIG")
        .env("XDG_CONFIG_HOME", "/nonexistent");
    cmd
}

/// Runs the CLI against `cp` as admin with extra environment variables.
fn cli_env(cp: &ControlPlane, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = cli_cmd(cp);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run portcullis")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn api(cp: &ControlPlane, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let url = format!("{}{path}", cp.http);
    let c = http_client();
    let req = match method {
        "GET" => c.get(url),
        "PUT" => c.put(url),
        "DELETE" => c.delete(url),
        _ => c.post(url),
    }
    .bearer_auth(&cp.admin_token);
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let r = req.send().await.expect("control plane answers");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn ok(cp: &ControlPlane, method: &str, path: &str, body: Value) -> Value {
    let (s, v) = api(cp, method, path, Some(body)).await;
    assert!((200..300).contains(&s), "{method} {path}: {s} {v}");
    v
}

/// The exported document as JSON (through the CLI).
fn export(cp: &ControlPlane) -> Value {
    let out = cp.cli_ok(&["export", "--format", "json"]);
    serde_json::from_str(&out).expect("export is JSON")
}

fn apply_json(cp: &ControlPlane, file: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "-o",
        "json",
        "apply",
        "-f",
        file.to_str().unwrap_or_default(),
    ];
    args.extend_from_slice(extra);
    serde_json::from_str(&cp.cli_ok(&args)).expect("apply report is JSON")
}

/// `(kind, name) → action` of a report.
fn actions(report: &Value) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = report["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap_or_default().to_owned(),
                c["name"].as_str().unwrap_or_default().to_owned(),
                c["action"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

fn triple(kind: &str, name: &str, action: &str) -> (String, String, String) {
    (kind.into(), name.into(), action.into())
}

#[tokio::test]
async fn export_then_apply_to_a_fresh_control_plane_reproduces_it_and_serves() {
    let app = Backend::start("app").await;
    let svc = Backend::start("svc").await;
    let cp1 = ControlPlane::start().await;
    // A bit of everything a document covers, made through the ordinary API.
    ok(
        &cp1,
        "POST",
        "/api/v1/proxy/targets",
        json!({"hostname": "app.localhost", "target_url": app.url, "enable_https": true}),
    )
    .await;
    ok(&cp1, "POST", "/api/v1/proxy/targets", json!({"hostname": "mcp.example.com", "target_url": app.url, "rate_limit_rps": 10, "custom_request_headers": {"X-Env": "prod"}})).await;
    ok(
        &cp1,
        "PUT",
        "/api/v1/proxy/targets/mcp.example.com/auth",
        json!({"mode": "forward", "auth_host": "auth.example.com", "required_scopes": ["mcp"]}),
    )
    .await;
    ok(
        &cp1,
        "PUT",
        "/api/v1/proxy/targets/mcp.example.com/resource",
        json!({"endpoint": "/mcp", "allowed_origins": ["https://app.example.com"]}),
    )
    .await;
    ok(
        &cp1,
        "POST",
        "/api/v1/services/external",
        json!({"name": "svc", "target_url": svc.url}),
    )
    .await;
    ok(&cp1, "POST", "/api/v1/routes", json!({"id": "r-api", "path_pattern": "/api", "target_kind": "service", "target_value": "svc", "proxy_hostnames": ["app.localhost"], "priority": 70})).await;
    ok(&cp1, "POST", "/api/v1/oauth/idps", json!({"name": "corp", "kind": "oidc", "client_id": "cid", "client_secret": "s3cret-value", "base_url": "https://idp.example.com"})).await;
    ok(
        &cp1,
        "POST",
        "/api/v1/oauth/rules",
        json!({"users": ["alice"], "scopes": ["mcp"]}),
    )
    .await;
    ok(
        &cp1,
        "PUT",
        "/api/v1/oauth/scopes/mcp",
        json!({"description": "Use the tools"}),
    )
    .await;
    ok(
        &cp1,
        "PUT",
        "/api/v1/oauth/proxies/mcp.example.com",
        json!({"idps": ["corp"]}),
    )
    .await;

    let doc = export(&cp1);
    assert_eq!(doc["apiVersion"], "portcullis/v1");
    assert_eq!(doc["kind"], "Config");
    assert!(
        !doc.to_string().contains("s3cret-value") && !doc.to_string().contains("PRIVATE KEY"),
        "{doc}"
    );
    assert_eq!(doc["certificates"][0]["name"], "app.localhost");
    assert_eq!(doc["certificates"][0]["source"], "self-signed");
    assert_eq!(doc["proxies"][1]["auth"]["resource"]["endpoint"], "/mcp");
    assert_eq!(doc["oauth_providers"][0]["name"], "corp");
    assert!(doc["oauth_providers"][0].get("client_secret").is_none());
    // The YAML export is the same document.
    let yaml = cp1.cli_ok(&["export"]);
    assert!(
        yaml.starts_with("apiVersion: portcullis/v1\nkind: Config\nproxies:\n- hostname: app.localhost\n  target_url: "),
        "members in document order: {yaml}"
    );

    // The secret comes by reference, resolved by the CLI.
    let dir = tempfile::tempdir().unwrap();
    let mut file_doc = doc.clone();
    file_doc["oauth_providers"][0]["client_secret_env"] = json!("CORP_SECRET");
    let file = dir.path().join("portcullis.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&file_doc).unwrap()).unwrap();

    let cp2 = ControlPlane::start().await;
    // Without the variable: refused, naming the path, nothing written.
    let before = cp2.version().await;
    let out = cli_env(&cp2, &[], &["apply", "-f", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("oauth_providers[0].client_secret_env: CORP_SECRET is not set"),
        "{}",
        text(&out)
    );
    let out = cli_env(
        &cp2,
        &[("CORP_SECRET", "s3cret-value")],
        &["-o", "json", "apply", "-f", file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["applied"], true);
    assert!(
        actions(&report).iter().all(|(_, _, a)| a == "create"),
        "{report}"
    );
    assert_eq!(actions(&report).len(), 9, "{report}");
    // One transaction: one revision for every config change.
    assert_eq!(cp2.version().await, before + 1);
    assert_eq!(
        export(&cp2),
        doc,
        "export → apply → export is a fixed point"
    );
    // The provider works with the secret given by reference: the stored secret is the one
    // the variable held (applying it again with the same value changes nothing).
    let again = cli_env(
        &cp2,
        &[("CORP_SECRET", "s3cret-value")],
        &["-o", "json", "apply", "-f", file.to_str().unwrap()],
    );
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["applied"], false);
    assert!(
        actions(&again).iter().all(|(_, _, a)| a == "unchanged"),
        "{again}"
    );
    assert_eq!(cp2.version().await, before + 1, "nothing written");
    // A different secret is an update of that provider only.
    let rotated = cli_env(
        &cp2,
        &[("CORP_SECRET", "rotated")],
        &["-o", "json", "apply", "-f", file.to_str().unwrap()],
    );
    let rotated: Value = serde_json::from_slice(&rotated.stdout).unwrap();
    let changed: Vec<_> = actions(&rotated)
        .into_iter()
        .filter(|(_, _, a)| a != "unchanged")
        .collect();
    assert_eq!(changed, vec![triple("oauth_provider", "corp", "update")]);
    // Without any secret, the stored one is kept.
    let keep = dir.path().join("keep.json");
    std::fs::write(&keep, serde_json::to_vec(&doc).unwrap()).unwrap();
    let kept = apply_json(&cp2, &keep, &[]);
    assert_eq!(kept["applied"], false, "{kept}");

    // What apply created is served.
    let dp = DataPlane::start(&cp2, "dp-declarative").await;
    cp2.wait_applied(&dp.node_id, cp2.version().await).await;
    let r = dp.get("app.localhost", "/").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["backend"], "app");
    let r = dp.get("app.localhost", "/api/x").await;
    assert_eq!(r.json::<Value>().await.unwrap()["backend"], "svc");
    // The protection came along: no token, no entry.
    assert_eq!(dp.get("mcp.example.com", "/mcp").await.status(), 401);
}

const DOC_A: &str = "apiVersion: portcullis/v1
kind: Config
proxies:
  - hostname: a.example.com
    target_url: http://127.0.0.1:9
  - hostname: b.example.com
    target_url: http://127.0.0.1:9
routes:
  - id: r-b
    path_pattern: /b
    target_kind: proxy
    target_value: b.example.com
    proxy_hostnames: [a.example.com]
";

async fn proxy_target(cp: &ControlPlane, host: &str) -> Option<String> {
    let (s, v) = api(cp, "GET", &format!("/api/v1/proxy/targets/{host}"), None).await;
    (s == 200).then(|| v["target_url"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn dry_run_invalid_documents_and_prune_on_the_embedded_store() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let a = write("a.yaml", DOC_A);
    let report = apply_json(&cp, &a, &[]);
    assert_eq!(
        actions(&report),
        vec![
            triple("proxy", "a.example.com", "create"),
            triple("proxy", "b.example.com", "create"),
            triple("route", "r-b", "create"),
        ]
    );
    let v1 = cp.version().await;
    let exported = export(&cp);

    // Dry run: the diff, nothing written.
    let b = write(
        "b.yaml",
        &DOC_A
            .replacen("http://127.0.0.1:9", "http://127.0.0.1:10", 1)
            .replace(
                "routes:",
                "  - hostname: c.example.com\n    target_url: http://127.0.0.1:9\nroutes:",
            ),
    );
    let report = apply_json(&cp, &b, &["--dry-run"]);
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["applied"], false);
    assert_eq!(
        actions(&report),
        vec![
            triple("proxy", "a.example.com", "update"),
            triple("proxy", "b.example.com", "unchanged"),
            triple("proxy", "c.example.com", "create"),
            triple("route", "r-b", "unchanged"),
        ]
    );
    let update = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["action"] == "update")
        .unwrap();
    assert_eq!(update["fields"], json!(["target_url"]));
    let human = cp.cli_ok(&["apply", "-f", b.to_str().unwrap(), "--dry-run"]);
    assert!(
        human.contains("update")
            && human.contains("(target_url)")
            && human.contains("1 to create, 1 to update, 0 to delete, 2 unchanged (dry run"),
        "{human}"
    );
    assert_eq!(cp.version().await, v1);
    assert_eq!(
        proxy_target(&cp, "a.example.com").await.as_deref(),
        Some("http://127.0.0.1:9")
    );
    assert_eq!(proxy_target(&cp, "c.example.com").await, None);

    // One bad resource among good ones: nothing changes, every error names its path.
    let bad = write(
        "bad.yaml",
        &DOC_A.replacen("http://127.0.0.1:9", "http://127.0.0.1:10", 1).replace(
            "routes:\n",
            "  - hostname: c.example.com\n    target_url: ftp://nope\nroutes:\n  - id: r-c\n    path_pattern: /c\n    target_kind: url\n    target_value: http://127.0.0.1:9\n    proxy_hostnames: [missing.example.com]\n",
        ),
    );
    let out = cp.cli(&cp.admin_token, &["apply", "-f", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(msg.contains("proxies[2].target_url"), "{msg}");
    assert!(
        msg.contains("routes[0].proxy_hostnames") && msg.contains("missing.example.com"),
        "{msg}"
    );
    assert_eq!(cp.version().await, v1);
    assert_eq!(export(&cp), exported, "an invalid document changes nothing");

    // Without --prune nothing is deleted; with it, what the document lacks is, in one
    // revision.
    let only_a = write(
        "only-a.yaml",
        "apiVersion: portcullis/v1\nkind: Config\nproxies:\n  - hostname: a.example.com\n    target_url: http://127.0.0.1:9\n",
    );
    let report = apply_json(&cp, &only_a, &[]);
    assert_eq!(
        actions(&report),
        vec![triple("proxy", "a.example.com", "unchanged")]
    );
    assert!(proxy_target(&cp, "b.example.com").await.is_some());
    let report = apply_json(&cp, &only_a, &["--prune", "--dry-run"]);
    assert_eq!(report["applied"], false);
    assert!(proxy_target(&cp, "b.example.com").await.is_some());
    let report = apply_json(&cp, &only_a, &["--prune"]);
    assert_eq!(
        actions(&report),
        vec![
            triple("proxy", "a.example.com", "unchanged"),
            triple("proxy", "b.example.com", "delete"),
            triple("route", "r-b", "delete"),
        ]
    );
    assert_eq!(proxy_target(&cp, "b.example.com").await, None);
    let (s, _) = api(&cp, "GET", "/api/v1/routes/r-b", None).await;
    assert_eq!(s, 404);
    assert_eq!(cp.version().await, v1 + 1);

    // REST: YAML in, the same diff out; errors at their paths; admin only.
    let r = http_client()
        .post(format!("{}/api/v1/config/apply?dry_run=true", cp.http))
        .bearer_auth(&cp.admin_token)
        .header("content-type", "application/yaml")
        .body(DOC_A)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();
    assert_eq!(
        actions(&report),
        vec![
            triple("proxy", "a.example.com", "unchanged"),
            triple("proxy", "b.example.com", "create"),
            triple("route", "r-b", "create"),
        ]
    );
    assert_eq!(proxy_target(&cp, "b.example.com").await, None);
    let (s, body) = api(
        &cp,
        "POST",
        "/api/v1/config/apply",
        Some(json!({"apiVersion": "portcullis/v1", "kind": "Config",
            "proxies": [{"hostname": "d.example.com", "targt_url": "http://127.0.0.1:9"}],
            "services": [{"name": "ok-svc", "target_url": "http://127.0.0.1:9"}]})),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["error"], "invalid_document");
    assert_eq!(body["errors"][0]["path"], "proxies[0].targt_url", "{body}");
    let (s, _) = api(&cp, "GET", "/api/v1/services/external/ok-svc", None).await;
    assert_eq!(s, 404, "nothing of an invalid document is written");
    let (_, openapi) = api(&cp, "GET", "/openapi.json", None).await;
    assert!(
        openapi["paths"]["/api/v1/config"]["get"].is_object(),
        "{openapi}"
    );
    assert!(openapi["paths"]["/api/v1/config/apply"]["post"].is_object());
    let (s, doc) = api(&cp, "GET", "/api/v1/config", None).await;
    assert_eq!(s, 200);
    assert_eq!(doc, export(&cp));
    let user = ok(
        &cp,
        "POST",
        "/api/v1/tokens",
        json!({"name": "u", "scope": "user"}),
    )
    .await;
    let r = http_client()
        .get(format!("{}/api/v1/config", cp.http))
        .bearer_auth(user["secret"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn apply_on_redis_is_one_transaction_and_idempotent() {
    let redis = RedisServer::start().await;
    let cp = ControlPlane::start_with(Some(&redis.url)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.yaml");
    std::fs::write(&file, DOC_A).unwrap();
    let revision = || -> u64 {
        redis
            .cli(&["GET", "{portcullis}:revision"])
            .parse()
            .unwrap_or(0)
    };
    let before = revision();
    let report = apply_json(&cp, &file, &[]);
    assert_eq!(report["applied"], true);
    assert_eq!(revision(), before + 1, "three resources, one revision");
    assert_eq!(report["revision"], before + 1);
    assert_eq!(redis.cli(&["HLEN", "{portcullis}:proxies"]), "2");
    assert_eq!(redis.cli(&["HLEN", "{portcullis}:routes"]), "1");
    let stored = redis.cli(&["HGET", "{portcullis}:proxies", "b.example.com"]);
    let again = cp.cli_ok(&["apply", "-f", file.to_str().unwrap()]);
    assert!(
        again.contains("0 to create, 0 to update, 0 to delete, 3 unchanged (nothing to write)"),
        "{again}"
    );
    assert_eq!(revision(), before + 1, "the second apply writes nothing");
    assert_eq!(
        redis.cli(&["HGET", "{portcullis}:proxies", "b.example.com"]),
        stored
    );
    let doc = export(&cp);
    assert_eq!(
        doc["proxies"],
        json!([
            {"hostname": "a.example.com", "target_url": "http://127.0.0.1:9"},
            {"hostname": "b.example.com", "target_url": "http://127.0.0.1:9"}
        ])
    );
    // An invalid document on Redis changes nothing either.
    std::fs::write(
        &file,
        DOC_A.replace(
            "target_value: b.example.com",
            "target_value: zz.example.com",
        ),
    )
    .unwrap();
    let out = cp.cli(&cp.admin_token, &["apply", "-f", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("routes[0].target_value"),
        "{}",
        text(&out)
    );
    assert_eq!(revision(), before + 1);
}

/// Runs `serve --bootstrap FILE` on `data_dir` expecting it to exit; its exit status and
/// output.
fn serve_until_exit(data_dir: &Path, file: &Path) -> (bool, String) {
    let mut child = Command::new(bin("portcullis-control-plane"))
        .args([
            "serve",
            "--http-listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .arg("--bootstrap")
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("control plane");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve with an invalid --bootstrap file did not exit");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("output");
    (out.status.success(), text(&out))
}

#[tokio::test]
async fn bootstrap_applies_to_an_empty_store_once_and_refuses_an_invalid_file() {
    let backend = Backend::start("boot").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("boot.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: portcullis/v1\nkind: Config\nproxies:\n  - hostname: boot.example.com\n    target_url: {}\n",
            backend.url
        ),
    )
    .unwrap();
    let mut cp =
        ControlPlane::start_args(vec!["--bootstrap".into(), file.to_str().unwrap().into()]).await;
    assert_eq!(
        proxy_target(&cp, "boot.example.com").await,
        Some(backend.url.clone())
    );
    let dp = DataPlane::start(&cp, "dp-bootstrap").await;
    cp.wait_applied(&dp.node_id, cp.version().await).await;
    let r = dp.get("boot.example.com", "/").await;
    assert_eq!(r.json::<Value>().await.unwrap()["backend"], "boot");

    // Not empty any more: a restart ignores the file, whatever it says now.
    std::fs::write(
        &file,
        "apiVersion: portcullis/v1\nkind: Config\nproxies:\n  - hostname: other.example.com\n    target_url: http://127.0.0.1:9\n",
    )
    .unwrap();
    cp.kill();
    cp.restart().await;
    assert_eq!(proxy_target(&cp, "other.example.com").await, None);
    assert_eq!(
        proxy_target(&cp, "boot.example.com").await,
        Some(backend.url.clone())
    );

    // An invalid file on an empty store: the process exits before serving, naming the
    // path; nothing is stored, so a fixed file applies on the next start.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: portcullis/v1\nkind: Config\nproxies:\n  - hostname: ok.example.com\n    target_url: http://127.0.0.1:9\n  - hostname: bad.example.com\n    target_url: not-a-url\n",
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let (success, output) = serve_until_exit(data.path(), &bad);
    assert!(!success, "{output}");
    assert!(output.contains("proxies[1].target_url"), "{output}");
    // A secret written into the file is refused too.
    std::fs::write(
        &bad,
        "apiVersion: portcullis/v1\nkind: Config\noauth_providers:\n  - name: gh\n    kind: github\n    client_id: x\n    client_secret: zz9-plain-secret\n",
    )
    .unwrap();
    let (success, output) = serve_until_exit(data.path(), &bad);
    assert!(!success, "{output}");
    assert!(
        output.contains("oauth_providers[0].client_secret"),
        "{output}"
    );
    assert!(
        !output.contains("zz9-plain-secret"),
        "the secret is not echoed: {output}"
    );
}

#[tokio::test]
async fn two_control_planes_bootstrapping_one_redis_apply_the_file_once() {
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("boot.yaml");
    std::fs::write(&file, DOC_A).unwrap();
    let args = || vec!["--bootstrap".to_owned(), file.to_str().unwrap().to_owned()];
    let (a, b) = tokio::join!(
        ControlPlane::start_redis_args(Some(&redis.url), args()),
        ControlPlane::start_redis_args(Some(&redis.url), args()),
    );
    assert_eq!(redis.cli(&["HLEN", "{portcullis}:proxies"]), "2");
    assert_eq!(redis.cli(&["HLEN", "{portcullis}:routes"]), "1");
    // Whichever applied it, both serve the same document, and it is already in place.
    assert_eq!(export(&a), export(&b));
    let report = apply_json(&b, &file, &[]);
    assert_eq!(report["applied"], false, "{report}");
}

/// Entries per section of a race document: enough that planning an apply takes a few
/// milliseconds, so a concurrent writer can land between its read and its commit.
const RACE_N: usize = 40;

/// A document of `RACE_N` proxies and `RACE_N` routes whose every entry depends on `port`:
/// two such documents differ in every resource, so any mix of them is visible in an export.
fn race_doc(port: u16) -> Value {
    let host = |i: usize| format!("p{i:03}.race.test");
    let proxies: Vec<Value> = (0..RACE_N)
        .map(|i| json!({"hostname": host(i), "target_url": format!("http://127.0.0.1:{port}")}))
        .collect();
    let routes: Vec<Value> = (0..RACE_N)
        .map(|i| {
            json!({"id": format!("r{i:03}"), "path_pattern": format!("/v{port}"),
                "target_kind": "url", "target_value": format!("http://127.0.0.1:{port}/r"),
                "proxy_hostnames": [host(i)]})
        })
        .collect();
    json!({"apiVersion": "portcullis/v1", "kind": "Config", "proxies": proxies, "routes": routes})
}

/// `POST /api/v1/config/apply`: `Ok(revision)` when it was written, `Err(())` for a
/// `409 conflict` (anything else fails the test).
async fn race_apply(cp: &ControlPlane, doc: &Value) -> Result<u64, ()> {
    let (status, body) = api(cp, "POST", "/api/v1/config/apply", Some(doc.clone())).await;
    match status {
        200 => {
            assert_eq!(body["applied"], true, "{body}");
            Ok(body["revision"].as_u64().expect("revision"))
        }
        409 => {
            assert_eq!(body["error"], "conflict", "{body}");
            assert!(
                body["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("nothing was written, apply again")),
                "{body}"
            );
            Err(())
        }
        _ => panic!("apply answered {status}: {body}"),
    }
}

/// The exported document (`GET /api/v1/config`).
async fn exported(cp: &ControlPlane) -> Value {
    let (s, doc) = api(cp, "GET", "/api/v1/config", None).await;
    assert_eq!(s, 200, "{doc}");
    doc
}

/// Races on `cps` (one control plane twice, or two on one Redis): (a) two applies of
/// different documents, (b) an apply and an API write to a proxy the document lists. Each
/// round starts from document Z; the stagger between the two requests sweeps the apply's
/// own duration, and rounds go on until the apply lost at least once (the requests really
/// overlapped: the loser's pinned reads failed). After every round the store equals exactly
/// what some serial order of the successful requests gives, never a mix.
async fn apply_races(cps: [&ControlPlane; 2]) {
    let (z, x, y) = (race_doc(1), race_doc(2), race_doc(3));
    // What each document alone leaves, as exported.
    race_apply(cps[0], &x).await.expect("x alone");
    let ex = exported(cps[0]).await;
    race_apply(cps[0], &y).await.expect("y alone");
    let ey = exported(cps[0]).await;
    let t = Instant::now();
    race_apply(cps[0], &z).await.expect("z alone");
    let took = t.elapsed();
    let ez = exported(cps[0]).await;
    assert!(ex != ey && ey != ez && ex != ez);
    assert_eq!(ex["proxies"].as_array().map(Vec::len), Some(RACE_N));
    // The second request starts after 0, 1/32, …, 7/32 of an apply's duration: the
    // window between an apply's read and its commit is a small part of the whole call.
    let stagger = |round: u32| took.mul_f64(f64::from(round % 8) / 32.0);

    // (a) Two documents at once.
    let (mut conflicts, mut rounds) = (0, 0);
    while conflicts < 1 || rounds < 8 {
        assert!(
            rounds < 150,
            "two applies never overlapped in {rounds} rounds (each {took:?})"
        );
        let delay = stagger(rounds);
        let (rx, ry) = tokio::join!(race_apply(cps[0], &x), async {
            tokio::time::sleep(delay).await;
            race_apply(cps[1], &y).await
        });
        let now = exported(cps[0]).await;
        match (rx, ry) {
            (Ok(a), Ok(b)) => {
                let last = if a > b { &ex } else { &ey };
                assert!(
                    &now == last,
                    "round {rounds}: both applied, the store is a mix"
                );
            }
            (Ok(_), Err(())) => {
                conflicts += 1;
                assert!(now == ex, "round {rounds}: x won, the store is not x");
            }
            (Err(()), Ok(_)) => {
                conflicts += 1;
                assert!(now == ey, "round {rounds}: y won, the store is not y");
            }
            (Err(()), Err(())) => panic!("round {rounds}: both applies lost"),
        }
        assert_eq!(
            exported(cps[1]).await,
            now,
            "both control planes read one store"
        );
        race_apply(cps[0], &z).await.expect("reset to z");
        rounds += 1;
    }
    println!("two applies: {rounds} rounds, {conflicts} answered conflict");

    // (b) The document against API writes to one of its proxies (a setting the document
    // leaves at its default, so each serial order leaves a different store): the same
    // write, repeated from a moment into the apply until it has answered, so that one
    // lands between its read and its commit in some rounds and after it in others.
    let written = |doc: &Value| {
        let mut d = doc.clone();
        let p = d["proxies"]
            .as_array_mut()
            .and_then(|l| l.iter_mut().find(|p| p["hostname"] == "p007.race.test"))
            .expect("p007 exported");
        p["preserve_host_header"] = json!(true);
        d
    };
    let (ex_w, ez_w) = (written(&ex), written(&ez));
    let (mut conflicts, mut wins, mut rounds) = (0, 0, 0);
    while conflicts < 1 || wins < 1 || rounds < 8 {
        assert!(
            rounds < 150,
            "the apply never overlapped the writes in {rounds} rounds ({conflicts} lost)"
        );
        let delay = took.mul_f64(f64::from(rounds % 8) / 6.0);
        let done = std::sync::atomic::AtomicBool::new(false);
        let (rx, ()) = tokio::join!(
            async {
                let r = race_apply(cps[0], &x).await;
                done.store(true, std::sync::atomic::Ordering::SeqCst);
                r
            },
            async {
                tokio::time::sleep(delay).await;
                loop {
                    ok(
                        cps[1],
                        "PUT",
                        "/api/v1/proxy/targets/p007.race.test",
                        json!({"preserve_host_header": true}),
                    )
                    .await;
                    if done.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                }
            }
        );
        let now = exported(cps[0]).await;
        match rx {
            // Writes then the apply (which reset the setting), or a write after it.
            Ok(_) => {
                wins += 1;
                assert!(
                    now == ex || now == ex_w,
                    "round {rounds}: applied, but the store is neither x nor x + the write"
                );
            }
            Err(()) => {
                conflicts += 1;
                assert!(
                    now == ez_w,
                    "round {rounds}: the apply lost, the store is not z + the write"
                );
            }
        }
        race_apply(cps[0], &z).await.expect("reset to z");
        rounds += 1;
    }
    println!("apply against writes: {rounds} rounds, {conflicts} answered conflict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_applies_and_writes_are_all_or_nothing_on_the_embedded_store() {
    let cp = ControlPlane::start().await;
    apply_races([&cp, &cp]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_applies_and_writes_are_all_or_nothing_on_redis() {
    let redis = RedisServer::start().await;
    let a = ControlPlane::start_with(Some(&redis.url)).await;
    let b = ControlPlane::start_with(Some(&redis.url)).await;
    apply_races([&a, &b]).await;
}

const GITOPS_HOST: &str = "gitops.example.test";

/// The document a user keeps in git: a proxy with HTTPS and the certificate it names.
fn gitops_document(target: &str) -> String {
    format!(
        "apiVersion: portcullis/v1
kind: Config
proxies:
  - hostname: {GITOPS_HOST}
    target_url: {target}
    enable_https: true
    certificate_name: gitops
certificates:
  - name: gitops
    domains: [{GITOPS_HOST}]
"
    )
}

/// `portcullis -o json apply -f FILE` through `cp`, started now (wait with
/// `wait_with_output`).
fn spawn_apply(cp: &ControlPlane, file: &Path) -> std::process::Child {
    cli_cmd(cp)
        .args(["-o", "json", "apply", "-f"])
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run portcullis")
}

fn show(cp: &ControlPlane, name: &str) -> Value {
    serde_json::from_str(&cp.cli_ok(&["cert", "show", name, "--output", "json"]))
        .expect("cert show json")
}

/// The leaf certificate a TLS handshake with SNI `host` at `addr` presents, verified
/// against `root` only (the handshake fails otherwise).
async fn served_leaf(addr: SocketAddr, host: &str, root: &str) -> Option<Vec<u8>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(root.as_bytes()) {
        roots.add(c.ok()?).ok()?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .ok()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(host.to_owned()).ok()?, tcp)
        .await
        .ok()?;
    Some(tls.get_ref().1.peer_certificates()?.first()?.to_vec())
}

/// Asserts that a certificate (its API view or its stored record) is valid, from Pebble.
fn issued_by_pebble(cert: &Value) {
    let issuer = cert["issuer"].as_str().unwrap_or_default();
    assert!(
        cert["status"] == "valid" && issuer.contains("Pebble"),
        "{cert}"
    );
}

/// Issuer and DNS names of a DER certificate.
fn issuer_and_names(der: &[u8]) -> (String, Vec<String>) {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("x509");
    let names = cert
        .subject_alternative_name()
        .expect("SAN extension")
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    (cert.issuer().to_string(), names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apply_orders_a_listed_certificate_once_across_two_control_planes() {
    let redis = RedisServer::start().await;
    let (http, https) = (free_port(), free_port());
    let pebble = Pebble::start(http, https).await;
    // Both share the key that seals private keys. Renewal checks every second, so the
    // control plane that did not take the order looks at the pending certificate many
    // times while the other orders it: only the lease keeps it from ordering too. A
    // data plane that never ACKs makes the order last at least 3 s.
    let args = || -> Vec<String> {
        [
            "--acme-directory",
            &pebble.directory,
            "--acme-ca-cert",
            &pebble.tls_cert.display().to_string(),
            "--acme-email",
            "ops@example.test",
            "--master-key",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            "--acme-ack-timeout-secs",
            "3",
            "--renew-check-secs",
            "1",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let cp_a = ControlPlane::start_redis_args(Some(&redis.url), args()).await;
    let cp_b = ControlPlane::start_redis_args(Some(&redis.url), args()).await;
    let dp = DataPlane::start_https(&cp_a, "dp-gitops", http, https).await;
    let mut stalled = DataPlane::start(&cp_b, "dp-gitops-stalled").await;
    let backend = Backend::start("gitops").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let revision = || redis.cli(&["GET", "{portcullis}:revision"]);

    // The document path refuses what `cert create` refuses, before writing anything.
    let bad = dir.path().join("bad.yaml");
    for (domain, why) in [
        ("*.example.test", "DNS-01"),
        ("elsewhere.example.test", "not served by a proxy"),
    ] {
        std::fs::write(
            &bad,
            gitops_document(&backend.url).replace(
                &format!("domains: [{GITOPS_HOST}]"),
                &format!("domains: [\"{domain}\"]"),
            ),
        )
        .expect("write");
        let before = revision();
        let out = spawn_apply(&cp_a, &bad).wait_with_output().expect("apply");
        assert!(!out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains("certificates[0].domains") && text(&out).contains(why),
            "{}",
            text(&out)
        );
        assert_eq!(revision(), before, "a refused document writes nothing");
    }
    assert_eq!(redis.cli(&["HLEN", "{portcullis}:certificates"]), "0");

    // Pause one data plane (connected, never ACKs) so the order lasts.
    let stopped = Command::new("kill")
        .args(["-STOP", &stalled.pid().expect("running").to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(stopped);

    // The same document through both control planes at once: one creates both resources;
    // the other finds them in place or, if it read before that commit, answers conflict.
    let file = dir.path().join("gitops.yaml");
    std::fs::write(&file, gitops_document(&backend.url)).expect("write");
    let (ra, rb) = (spawn_apply(&cp_a, &file), spawn_apply(&cp_b, &file));
    let mut creates = 0;
    for out in [ra, rb].map(|r| r.wait_with_output().expect("apply")) {
        if out.status.success() {
            let report: Value = serde_json::from_slice(&out.stdout).expect("report");
            let acts = actions(&report);
            let created = |kind, name| acts.contains(&triple(kind, name, "create"));
            if report["applied"] == true {
                creates += 1;
                assert!(
                    created("proxy", GITOPS_HOST)
                        && created("certificate", "gitops")
                        && acts.len() == 2,
                    "{report}"
                );
            } else {
                assert!(acts.iter().all(|(_, _, a)| a == "unchanged"), "{report}");
            }
        } else {
            assert!(
                text(&out).contains("nothing was written, apply again"),
                "{}",
                text(&out)
            );
        }
    }
    assert_eq!(creates, 1, "exactly one apply wrote the document");

    // The order runs under its lease in Redis, held by one of the two control planes.
    let lease = || redis.cli(&["HGET", "{portcullis}:meta", "lease:acme:gitops"]);
    let holder = eventually(Duration::from_secs(10), "the order's lease", || async {
        let v: Value = serde_json::from_str(&lease()).ok()?;
        v["holder"].as_str()?.split('/').nth(1)?.parse::<u32>().ok()
    })
    .await;
    assert!(
        Some(holder) == cp_a.pid() || Some(holder) == cp_b.pid(),
        "lease holder pid {holder}"
    );

    let issued = eventually(
        Duration::from_secs(90),
        "the certificate to leave pending",
        || async {
            let v = show(&cp_b, "gitops");
            (v["status"] != "pending").then_some(v)
        },
    )
    .await;
    issued_by_pebble(&issued);
    // In the store itself: issued by Pebble, the key sealed.
    let stored: Value =
        serde_json::from_str(&redis.cli(&["HGET", "{portcullis}:certificates", "gitops"]))
            .expect("stored certificate record");
    issued_by_pebble(&stored);
    assert!(!stored.to_string().contains("PRIVATE KEY"));
    let stored_leaf = CertificateDer::pem_slice_iter(
        stored["cert_chain_pem"]
            .as_str()
            .unwrap_or_default()
            .as_bytes(),
    )
    .next()
    .expect("a chain")
    .expect("pem")
    .to_vec();

    // The data plane serves it on its TLS listener: a real handshake that trusts only
    // Pebble's root gets the stored leaf, for the document's name.
    let root = pebble.root_pem().await;
    let addr = dp.https_addr().expect("https");
    let leaf = eventually(
        Duration::from_secs(20),
        "the data plane serves the issued certificate",
        || async {
            let leaf = served_leaf(addr, GITOPS_HOST, &root).await?;
            (leaf == stored_leaf).then_some(leaf)
        },
    )
    .await;
    let (issuer, names) = issuer_and_names(&leaf);
    assert!(issuer.contains("Pebble"), "{issuer}");
    assert_eq!(names, vec![GITOPS_HOST.to_owned()]);
    let r = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(root.as_bytes()).expect("root")])
        .resolve(GITOPS_HOST, addr)
        .no_proxy()
        .build()
        .expect("client")
        .get(format!("https://{GITOPS_HOST}:{}/", addr.port()))
        .send()
        .await
        .expect("https request");
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.expect("json")["backend"], "gitops");

    // Several renewal checks later, on both control planes: still one order.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(pebble.issued_serials().len(), 1, "{}", pebble.log());

    // Applying it again, through either control plane: nothing written, nothing ordered.
    let before = revision();
    for cp in [&cp_a, &cp_b] {
        let out = spawn_apply(cp, &file).wait_with_output().expect("apply");
        assert!(out.status.success(), "{}", text(&out));
        let report: Value = serde_json::from_slice(&out.stdout).expect("report");
        assert_eq!(report["applied"], false, "{report}");
        assert!(
            actions(&report).iter().all(|(_, _, a)| a == "unchanged"),
            "{report}"
        );
    }
    assert_eq!(revision(), before, "a re-apply writes nothing");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(pebble.issued_serials().len(), 1, "no second order");
    assert!(lease().is_empty(), "no order runs: {}", lease());
    assert_eq!(show(&cp_a, "gitops")["serial"], issued["serial"]);
    stalled.kill();
}
