//! Docker helpers for the suites that run services on the real engine (`dockerd`, started
//! by tests/run.sh): a `FROM scratch` busybox image built through the Engine API (no
//! registry), a REST caller, container counts by label and unique names.

use std::collections::HashMap;

use bollard::query_parameters::{
    BuildImageOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptions,
};
use futures_util::StreamExt as _;
use reqwest::StatusCode;
use serde_json::Value;

use crate::{ControlPlane, http_client};

/// The test image: `/bin/busybox` (Debian's busybox-static) as entrypoint, `/www` served.
pub const IMAGE: &str = "portcullis-test-busybox:latest";
/// `/www/index.html` of [`IMAGE`].
pub const PAGE: &str = "hello from a portcullis-managed container";
/// The Dockerfile of [`IMAGE`], for a context made by [`context_tar`].
pub const DOCKERFILE: &str =
    "FROM scratch\nCOPY busybox /bin/busybox\nCOPY www /www\nENTRYPOINT [\"/bin/busybox\"]\n";

/// A tar of `busybox` and `www/index.html` (= `page`), plus `extra` entries.
pub fn context_tar(page: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static installed (/bin/busybox)");
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        tar.append_data(&mut h, path, data).expect("tar entry");
    };
    add("busybox", &busybox, 0o755);
    add("www/index.html", page.as_bytes(), 0o644);
    for (path, data) in extra {
        add(path, data, 0o644);
    }
    tar.into_inner().expect("tar")
}

/// Builds [`IMAGE`] through the Engine API.
pub async fn build_image(docker: &bollard::Docker) {
    let body = context_tar(PAGE, &[("Dockerfile", DOCKERFILE.as_bytes())]);
    let opts = BuildImageOptionsBuilder::default()
        .t(IMAGE)
        .rm(true)
        .build();
    let mut s = docker.build_image(opts, None, Some(bollard::body_full(body.into())));
    while let Some(step) = s.next().await {
        let step = step.expect("image build");
        assert!(
            step.error_detail.is_none(),
            "build error: {:?}",
            step.error_detail
        );
    }
}

/// The local engine, with [`IMAGE`] built.
pub async fn engine() -> bollard::Docker {
    let docker = bollard::Docker::connect_with_local_defaults().expect("docker client");
    let docker = docker
        .negotiate_version()
        .await
        .expect("dockerd must be running (tests/run.sh starts it)");
    build_image(&docker).await;
    docker
}

/// Containers on the engine (running or not) labelled with this service name.
pub async fn containers_named(docker: &bollard::Docker, service: &str) -> usize {
    let mut filters = HashMap::new();
    filters.insert(
        "label".to_string(),
        vec![format!("portcullis.service={service}")],
    );
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    docker
        .list_containers(Some(opts))
        .await
        .expect("list containers")
        .len()
}

/// REST calls with one bearer token.
pub struct Api<'a> {
    /// The control plane called.
    pub cp: &'a ControlPlane,
    /// The bearer token.
    pub token: String,
}

impl Api<'_> {
    /// `method path` with an optional JSON body: the status and the body (JSON, or the
    /// text as a JSON string).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.cp.http);
        let mut req = http_client()
            .request(method.parse().expect("method"), url)
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request");
        let s = r.status();
        let text = r.text().await.expect("body");
        (
            s,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// `prefix-` and 8 random hex digits: Docker objects are shared by concurrent tests.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// Removes, when dropped (also when a test panics), what a test may have left on the shared
/// engine: the containers labelled with each service name, the images built for them
/// (`portcullis-build/NAME:latest`) and the networks. Absent objects are fine.
#[derive(Default)]
pub struct Leftovers {
    services: Vec<String>,
    networks: Vec<String>,
}

impl Leftovers {
    /// Remembers a service name; returns it.
    pub fn service(&mut self, name: String) -> String {
        self.services.push(name.clone());
        name
    }

    /// Remembers a network name; returns it.
    pub fn network(&mut self, name: String) -> String {
        self.networks.push(name.clone());
        name
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let services = std::mem::take(&mut self.services);
        let networks = std::mem::take(&mut self.networks);
        // Drop cannot await, and may run inside a runtime: a thread with its own.
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let Ok(docker) = bollard::Docker::connect_with_local_defaults() else {
                    return;
                };
                for s in &services {
                    let mut filters = HashMap::new();
                    filters.insert("label".to_string(), vec![format!("portcullis.service={s}")]);
                    let opts = ListContainersOptionsBuilder::default()
                        .all(true)
                        .filters(&filters)
                        .build();
                    for c in docker.list_containers(Some(opts)).await.unwrap_or_default() {
                        if let Some(id) = c.id {
                            let rm = RemoveContainerOptionsBuilder::default().force(true).build();
                            let _ = docker.remove_container(&id, Some(rm)).await;
                        }
                    }
                    let _ = docker
                        .remove_image(
                            &format!("portcullis-build/{s}:latest"),
                            None::<RemoveImageOptions>,
                            None,
                        )
                        .await;
                }
                for n in &networks {
                    let _ = docker.remove_network(n).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}
