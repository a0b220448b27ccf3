//! Compiles `proto/*.proto` with protox, so no system `protoc` is needed.
//!
//! Two passes: every message, client and server as usual; then the `ConfigService` and
//! `AccessLogIngest` servers alone again, with `ConfigSnapshot` mapped to
//! `crate::EncodedSnapshot` (the control plane sends every data plane the same bytes,
//! encoded once per version) and `AccessLogBatch` to `crate::ShippedBatch` (the control
//! plane keeps each shipped record's bytes instead of decoding it into owned strings).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/portcullis/v1/portcullis.proto",
        "proto/portcullis/v1/oauth.proto",
        "proto/portcullis/v1/logs.proto",
        "proto/portcullis/v1/docker.proto",
        "proto/portcullis/v1/docker_ops.proto",
        "proto/portcullis/v1/config.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds.clone())?;

    let mut config_service = fds;
    for file in &mut config_service.file {
        file.service
            .retain(|s| matches!(s.name(), "ConfigService" | "AccessLogIngest"));
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("encoded");
    std::fs::create_dir_all(&out)?;
    tonic_prost_build::configure()
        .build_client(false)
        .out_dir(out)
        .extern_path(".portcullis.v1", "crate::v1")
        .extern_path(".portcullis.v1.ConfigSnapshot", "crate::EncodedSnapshot")
        .extern_path(".portcullis.v1.AccessLogBatch", "crate::ShippedBatch")
        .compile_fds(config_service)?;
    Ok(())
}
