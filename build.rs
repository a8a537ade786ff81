//! Compiles `proto/raft.proto` with `protox`, a pure-Rust protobuf compiler, so
//! that building gameraft needs cargo alone and no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/raft.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_build::configure().build_client(true).build_server(true).compile_fds(descriptors)?;
    Ok(())
}
