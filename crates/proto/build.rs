//! Generates the gRPC code and the descriptor set from `proto/`.
//!
//! protoc comes from `protoc-bin-vendored`, so a fresh machine needs no system package.

use std::path::PathBuf;

/// Messages that carry personal values: their `Debug` is written by hand in `src/lib.rs`.
const REDACTED_DEBUG: [&str; 2] =
    [".fetchreward.vault.v1.PiiValue", ".fetchreward.vault.v1.DetokenizeResult"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // One descriptor set per service, so that each server's reflection lists its own API only.
    for (service, proto) in [
        ("vault", "fetchreward/vault/v1/vault.proto"),
        ("writer", "fetchreward/writer/v1/writer.proto"),
    ] {
        let proto = root.join(proto);
        // The protos live outside this crate, where Cargo does not look for changes by itself.
        println!("cargo:rerun-if-changed={}", proto.display());
        let mut config = prost_build::Config::new();
        config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
        config.skip_debug(REDACTED_DEBUG);
        tonic_prost_build::configure()
            .file_descriptor_set_path(out_dir.join(format!("{service}_descriptor.bin")))
            .compile_with_config(config, &[proto], std::slice::from_ref(&root))?;
    }
    Ok(())
}
