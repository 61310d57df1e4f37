//! Generates the tonic/prost code for `proto/*.proto` with a vendored `protoc`, so a fresh
//! machine needs no protoc install.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build reads PROTOC; build scripts are single-threaded.
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure().compile_protos(&["proto/control.proto", "proto/checkpoint.proto"], &["proto"])?;
    Ok(())
}
