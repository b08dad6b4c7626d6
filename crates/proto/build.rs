//! Generates the gRPC code and the descriptor set from `proto/`.
//!
//! protoc comes from `protoc-bin-vendored`, so a fresh machine needs no system package.

use std::path::PathBuf;

/// Messages that carry personal values: their `Debug` is written by hand in `src/lib.rs`.
const REDACTED_DEBUG: [&str; 2] =
    [".fetchreward.vault.v1.PiiValue", ".fetchreward.vault.v1.DetokenizeResult"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let protos = [
        root.join("fetchreward/vault/v1/vault.proto"),
        root.join("fetchreward/writer/v1/writer.proto"),
    ];
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // The protos live outside this crate, where Cargo does not look for changes by itself.
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }

    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    config.skip_debug(REDACTED_DEBUG);

    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("fetchreward_descriptor.bin"))
        .compile_with_config(config, &protos, &[root])?;
    Ok(())
}
