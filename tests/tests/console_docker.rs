//! The console's Docker page in a real headless Chromium (`tests/browser/console-docker.mjs`)
//! against the real engine (`dockerd`, started by tests/run.sh): a create refused with the
//! API's error next to its field, a service from the local busybox image running, stopped
//! (exited), started, stopped and started behind the page (the list follows without a
//! reload), its logs (shown and followed over SSE), its stats, a port added and removed
//! (the container recreated each time), a proxy published to it (left alone by the
//! delete), an orphaned container of this installation cleaned up after a confirmation, a
//! second service built from a Dockerfile with a build context (a tar) and labels, running
//! and printing the context's file, and the first service deleted after a confirmation. Screenshots
//! `target/browser-screenshots/docker-{create-error,services,service,built}-*.png` (not
//! `console-*`, which the main console run clears); axe-core finds no serious or critical
//! violation.

use std::collections::HashMap;

use bollard::query_parameters::CreateContainerOptionsBuilder;
use portcullis_tests::ControlPlane;
use portcullis_tests::chromium::{run_script, screenshot_path};
use portcullis_tests::docker::{Api, IMAGE, Leftovers, containers_named, engine, unique};
use reqwest::StatusCode;

#[tokio::test]
async fn an_operator_runs_a_docker_service_from_the_console_in_a_real_browser() {
    let mut left = Leftovers::default();
    let docker = engine().await;
    let cp = ControlPlane::start_args(vec!["--port-range".into(), "28500-28599".into()]).await;
    let api = Api {
        cp: &cp,
        token: cp.admin_token.clone(),
    };
    let service = left.service(unique("console"));
    let built = left.service(unique("console-built"));

    // A managed container of this installation without a record: an orphan for the page.
    let (s, report) = api.call("GET", "/api/v1/services/cleanup", None).await;
    assert_eq!(s, StatusCode::OK, "{report}");
    let installation = report["installation"].as_str().expect("installation");
    let orphan_service = left.service(unique("console-orphan"));
    let orphan = format!("portcullis-{orphan_service}");
    let labels: HashMap<String, String> = [
        ("portcullis.managed", "true"),
        ("portcullis.service", orphan_service.as_str()),
        ("portcullis.owner-token", "tok_gone"),
        ("portcullis.installation", installation),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    docker
        .create_container(
            Some(
                CreateContainerOptionsBuilder::default()
                    .name(&orphan)
                    .build(),
            ),
            bollard::models::ContainerCreateBody {
                image: Some(IMAGE.into()),
                cmd: Some(vec!["true".into()]),
                labels: Some(labels),
                ..Default::default()
            },
        )
        .await
        .expect("orphan container");

    let out_dir = screenshot_path("docker-x")
        .parent()
        .expect("screenshot dir")
        .to_owned();
    for page in ["create-error", "services", "service", "built"] {
        for variant in ["light", "dark", "phone", "phone-dark"] {
            let _ = std::fs::remove_file(out_dir.join(format!("docker-{page}-{variant}.png")));
        }
    }
    let report = run_script("console-docker.mjs", &cp.admin_token, &out_dir, |cmd| {
        cmd.args(["--base", &cp.http, "--service", &service, "--image", IMAGE])
            .args(["--built", &built])
            .args(["--orphan", &orphan]);
    })
    .await;

    let axe = report["axe"].as_object().expect("axe report");
    assert_eq!(axe.len(), 8, "four pages, light and dark: {:?}", axe.keys());
    let serious: Vec<String> = axe
        .iter()
        .flat_map(|(page, violations)| {
            violations
                .as_array()
                .into_iter()
                .flatten()
                .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
                .map(move |v| format!("{page}: {v}"))
        })
        .collect();
    assert!(serious.is_empty(), "axe-core:\n{}", serious.join("\n"));
    for page in ["create-error", "services", "service", "built"] {
        for variant in ["light", "dark", "phone", "phone-dark"] {
            let shot = out_dir.join(format!("docker-{page}-{variant}.png"));
            assert!(shot.exists(), "{}", shot.display());
        }
    }

    // What the page did is what the engine and the store hold: the service, its container
    // and its ports are gone, and so is the orphan.
    let (s, body) = api
        .call("GET", &format!("/api/v1/services/{service}"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(containers_named(&docker, &service).await, 0);
    assert_eq!(containers_named(&docker, &orphan_service).await, 0);
    // The proxy the page published is left alone by the delete (the notice listed it).
    let (s, proxy) = api
        .call(
            "GET",
            &format!("/api/v1/proxy/targets/{service}.localhost"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{proxy}");
    assert!(
        proxy["target_url"]
            .as_str()
            .is_some_and(|t| t.starts_with("http://127.0.0.1:285")),
        "{proxy}"
    );
    // The service the page built from a Dockerfile runs, with the labels the form gave.
    let (s, b) = api
        .call("GET", &format!("/api/v1/services/{built}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["state"]["running"], true, "{b}");
    assert_eq!(b["labels"]["team"], "web", "{b}");
    assert_eq!(
        b["image"],
        format!("portcullis-build/{built}:latest"),
        "{b}"
    );
    assert_eq!(containers_named(&docker, &built).await, 1);
    let (_, ports) = api.call("GET", "/api/v1/ports", None).await;
    assert!(
        !ports.to_string().contains(&service),
        "no allocation left: {ports}"
    );
}
