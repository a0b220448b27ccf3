//! The justfile recipes with the seed's positional argument shapes (`deploy/seed-shapes.sh`)
//! and the seed's operational recipes, run for real against the quick start's processes.

use std::path::Path;
use std::process::{Command, Output};

use portcullis_tests::{RedisServer, free_port};
use serde_json::Value;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Quickstart {
    state: tempfile::TempDir,
    ports: [u16; 5],
}

impl Quickstart {
    fn command(&self, program: &str) -> Command {
        let [cp_http, cp_grpc, dp_http, dp_https, dp_admin] = self.ports;
        let mut c = Command::new(program);
        c.current_dir(root())
            .env("PORTCULLIS_STATE", self.state.path())
            .env("PORTCULLIS_PROFILE", "debug")
            .env("PORTCULLIS_BIN", "target/debug")
            .env("CP_HTTP", cp_http.to_string())
            .env("CP_GRPC", cp_grpc.to_string())
            .env("DP_HTTP", dp_http.to_string())
            .env("DP_HTTPS", dp_https.to_string())
            .env("DP_ADMIN", dp_admin.to_string())
            .env("PORTCULLIS_URL", format!("http://127.0.0.1:{cp_grpc}"))
            .env_remove("PORTCULLIS_TOKEN")
            .env_remove("PORTCULLIS_API_URL")
            .env_remove("PORTCULLIS_REDIS_URL")
            .env_remove("PORTCULLIS_OUTPUT");
        c
    }

    /// `just ARGS`, which must succeed; its stdout.
    fn just(&self, args: &[&str]) -> String {
        let out = self.command("just").args(args).output().expect("just");
        let (stdout, stderr) = text(&out);
        assert!(
            out.status.success(),
            "just {args:?} failed:\n{stdout}\n{stderr}"
        );
        stdout
    }

    /// `just ARGS` with `--output json` (PORTCULLIS_OUTPUT), parsed.
    fn json(&self, args: &[&str]) -> Value {
        let out = self
            .command("just")
            .env("PORTCULLIS_OUTPUT", "json")
            .args(args)
            .output()
            .expect("just");
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "just {args:?}:\n{stdout}\n{stderr}");
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("just {args:?}: {e}\n{stdout}"))
    }

    /// `just ARGS`, which must be refused with exit code 2 (nothing reached the CLI); stderr.
    fn refused(&self, args: &[&str]) -> String {
        let out = self.command("just").args(args).output().expect("just");
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "just {args:?} must fail:\n{stdout}");
        assert!(stderr.contains("usage: just"), "{stderr}");
        stderr
    }

    fn proxy(&self, host: &str) -> Value {
        self.json(&["proxy-show", host])
    }
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        let _ = self.command("deploy/down.sh").output();
    }
}

#[tokio::test]
async fn seed_argument_shapes_and_operational_recipes() {
    let qs = Quickstart {
        state: tempfile::tempdir().unwrap(),
        ports: std::array::from_fn(|_| free_port()),
    };
    // `setup` builds (a no-op here: the binaries are built) and saves an admin token.
    assert!(qs.just(&["setup"]).contains("admin-token"));
    let token = std::fs::read_to_string(qs.state.path().join("admin-token")).unwrap();
    let token = token.trim();
    assert!(token.starts_with("pcs_"), "{token}");
    let up = qs.command("deploy/up.sh").output().unwrap();
    assert!(up.status.success(), "{:?}", text(&up));

    // proxy-create HOST URL [STAGING] [PRESERVE_HOST] [HTTP] [HTTPS] [TOKEN]
    let target = "http://127.0.0.1:9";
    qs.just(&[
        "proxy-create",
        "plain.localhost",
        target,
        "false",
        "true",
        "true",
        "false",
    ]);
    let p = qs.proxy("plain.localhost");
    assert_eq!(
        (
            &p["enable_http"],
            &p["enable_https"],
            &p["preserve_host_header"]
        ),
        (&Value::Bool(true), &Value::Bool(false), &Value::Bool(true)),
        "{p}"
    );
    // The seed's defaults with only a token: HTTP and HTTPS (a *.localhost name gets a
    // self-signed certificate at once).
    qs.just(&["proxy-create", "both.localhost", target, token]);
    let p = qs.proxy("both.localhost");
    assert_eq!(p["enable_https"], true, "{p}");
    assert_eq!(p["preserve_host_header"], false, "{p}");
    // STAGING: a staging certificate named after the host, served by the proxy.
    qs.just(&["proxy-create", "staging.localhost", target, "true"]);
    let p = qs.proxy("staging.localhost");
    assert_eq!(p["enable_https"], true, "{p}");
    assert_eq!(p["certificate_name"], "staging.localhost", "{p}");
    let cert = qs.json(&["cert-show", "staging.localhost"]);
    assert!(
        cert["acme_directory"]
            .as_str()
            .is_some_and(|d| d.contains("staging")),
        "{cert}"
    );
    // An argument that fits no slot changes nothing.
    let err = qs.refused(&["proxy-create", "bad.localhost", target, "maybe"]);
    assert!(err.contains("'maybe'"), "{err}");
    let err = qs.refused(&[
        "proxy-create",
        "bad.localhost",
        target,
        "false",
        "false",
        "false",
        "false",
    ]);
    assert!(err.contains("both be false"), "{err}");
    let hosts: Vec<String> = qs.json(&["proxy-list"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["hostname"].as_str().unwrap().to_owned())
        .collect();
    assert!(!hosts.iter().any(|h| h == "bad.localhost"), "{hosts:?}");
    // The CLI's own shape still passes through.
    qs.just(&["proxy-create", "flags.localhost", target, "--preserve-host"]);
    assert_eq!(qs.proxy("flags.localhost")["preserve_host_header"], true);

    // cert-create NAME DOMAIN [EMAIL] [STAGING] [TOKEN] and cert-create-multi.
    qs.just(&[
        "cert-create",
        "plain-cert",
        "plain.localhost",
        "ops@example.com",
        "true",
        token,
    ]);
    let cert = qs.json(&["cert-show", "plain-cert"]);
    assert_eq!(cert["email"], "ops@example.com", "{cert}");
    assert!(
        cert["acme_directory"]
            .as_str()
            .is_some_and(|d| d.contains("staging")),
        "{cert}"
    );
    qs.just(&[
        "cert-create-multi",
        "shared",
        "plain.localhost,both.localhost",
        "ops@example.com",
    ]);
    let cert = qs.json(&["cert-show", "shared"]);
    assert_eq!(
        cert["domains"],
        serde_json::json!(["plain.localhost", "both.localhost"]),
        "{cert}"
    );
    let err = qs.refused(&["cert-create", "x", "plain.localhost", "nobody"]);
    assert!(err.contains("'nobody'"), "{err}");

    // service-register NAME URL [TOKEN] [DESCRIPTION], and this project's NAME URL DESCRIPTION.
    qs.just(&[
        "service-register",
        "seed-svc",
        "http://127.0.0.1:10",
        token,
        "from the seed",
    ]);
    qs.just(&["service-register", "our-svc", "http://127.0.0.1:11", "ours"]);
    let services = qs.json(&["service-list"]);
    let description = |name: &str| {
        services["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["description"].clone())
    };
    assert_eq!(
        description("seed-svc"),
        Some(Value::from("from the seed")),
        "{services}"
    );
    assert_eq!(
        description("our-svc"),
        Some(Value::from("ours")),
        "{services}"
    );
    qs.refused(&[
        "service-register",
        "bad",
        "http://127.0.0.1:12",
        "not-a-token",
        "d",
    ]);

    // route-create PATH TYPE TARGET [TOKEN] [PRIORITY] [METHODS] [IS_REGEX] [DESCRIPTION]
    qs.just(&[
        "route-create",
        "/seed",
        "service",
        "seed-svc",
        "",
        "50",
        "GET,POST",
        "false",
        "seed route",
    ]);
    qs.just(&[
        "route-create",
        "^/items/[0-9]+$",
        "url",
        "http://127.0.0.1:13",
        token,
        "60",
        "",
        "true",
    ]);
    qs.refused(&[
        "route-create",
        "/nope",
        "url",
        "http://127.0.0.1:14",
        "",
        "70",
        "",
        "maybe",
    ]);
    let routes = qs.json(&["route-list"]);
    let routes = routes["items"].as_array().unwrap();
    let seed = routes
        .iter()
        .find(|r| r["path_pattern"] == "/seed")
        .unwrap();
    assert_eq!(seed["priority"], 50);
    assert_eq!(seed["methods"], serde_json::json!(["GET", "POST"]));
    assert_eq!(seed["match_kind"], "prefix");
    assert_eq!(seed["description"], "seed route");
    let regex = routes
        .iter()
        .find(|r| r["path_pattern"] == "^/items/[0-9]+$")
        .unwrap();
    assert_eq!(
        (regex["priority"].as_i64(), regex["match_kind"].as_str()),
        (Some(60), Some("regex"))
    );
    assert!(!routes.iter().any(|r| r["path_pattern"] == "/nope"));

    // Operations.
    let health = qs.just(&["health"]);
    assert!(health.contains("\"store_ok\":true"), "{health}");
    assert!(qs.just(&["stats"]).contains("dp-1"));
    let logs = qs.just(&["logs", "data-plane", "50"]);
    assert!(logs.contains("applied config snapshot"), "{logs}");
    let oauth = qs.just(&["oauth-health"]);
    assert!(oauth.contains("/jwks 200"), "{oauth}");
    // redis-cli: refused on the embedded store, a real client on a real Redis.
    let out = qs.command("just").arg("redis-cli").output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out).1.contains("embedded store"), "{:?}", text(&out));
    let redis = RedisServer::start().await;
    let out = qs
        .command("just")
        .env("PORTCULLIS_REDIS_URL", &redis.url)
        .args(["redis-cli", "PING"])
        .output()
        .unwrap();
    assert_eq!(text(&out).0.trim(), "PONG", "{:?}", text(&out));
    // restart keeps the state.
    qs.just(&["restart"]);
    assert_eq!(qs.proxy("plain.localhost")["preserve_host_header"], true);
}
