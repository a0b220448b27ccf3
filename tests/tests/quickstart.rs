//! The README's quick start and the justfile recipes, run for real.

use std::path::Path;
use std::process::{Command, Output};

use portcullis_tests::{Backend, free_port, http_client};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn ok(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn up_then_just_recipes_then_down() {
    let state = tempfile::tempdir().unwrap();
    let (cp_http, cp_grpc, dp_http, dp_admin) =
        (free_port(), free_port(), free_port(), free_port());
    let dp_https = free_port();
    let env = |c: &mut Command| {
        c.current_dir(root())
            .env("PORTCULLIS_STATE", state.path())
            .env("PORTCULLIS_PROFILE", "debug")
            .env("PORTCULLIS_BIN", "target/debug")
            .env("CP_HTTP", cp_http.to_string())
            .env("CP_GRPC", cp_grpc.to_string())
            .env("DP_HTTP", dp_http.to_string())
            .env("DP_ADMIN", dp_admin.to_string())
            .env("DP_HTTPS", dp_https.to_string())
            .env_remove("PORTCULLIS_URL")
            .env_remove("PORTCULLIS_TOKEN");
    };
    let just = |args: &[&str]| {
        let mut c = Command::new("just");
        env(&mut c);
        c.env("PORTCULLIS_URL", format!("http://127.0.0.1:{cp_grpc}"));
        ok(
            c.args(args)
                .output()
                .expect("just must be installed (tests/run.sh installs it)"),
            &format!("just {args:?}"),
        )
    };

    let mut up = Command::new("deploy/up.sh");
    env(&mut up);
    let printed = ok(up.output().unwrap(), "deploy/up.sh");
    let token = std::fs::read_to_string(state.path().join("admin-token")).unwrap();
    assert!(
        printed.contains(token.trim()),
        "up.sh must print the admin token:\n{printed}"
    );
    assert!(
        printed.contains(&format!("http://127.0.0.1:{dp_http}")),
        "{printed}"
    );

    let backend = Backend::start("quick").await;
    just(&["proxy-create", "app.localhost", &backend.url]);
    assert!(just(&["proxy-list"]).contains("app.localhost"));
    assert!(just(&["proxy-show", "app.localhost"]).contains(&backend.url));
    just(&["service-register", "svc", &backend.url, "a service"]);
    just(&[
        "route-create",
        "/svc",
        "service",
        "svc",
        "--id",
        "to-svc",
        "--proxy",
        "app.localhost",
    ]);
    assert!(just(&["route-list"]).contains("to-svc"));
    let extra = just(&["token-admin", "second-admin"]);
    assert!(extra.trim().starts_with("pcs_"), "{extra}");

    // Traffic flows through the data plane.
    let client = http_client();
    let mut served = false;
    for _ in 0..100 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{dp_http}/svc"))
            .header("host", "app.localhost")
            .send()
            .await
            && r.status() == 200
        {
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["backend"], "quick");
            served = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(served, "the data plane never served the new proxy");
    assert!(just(&["dataplanes-list"]).contains("dp-1"));
    just(&["route-delete", "to-svc"]);
    just(&["proxy-delete", "app.localhost"]);

    let mut down = Command::new("deploy/down.sh");
    env(&mut down);
    ok(down.output().unwrap(), "deploy/down.sh");
    assert!(
        client
            .get(format!("http://127.0.0.1:{cp_http}/health"))
            .send()
            .await
            .is_err()
    );
}
