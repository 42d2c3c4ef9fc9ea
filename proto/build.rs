//! Compiles `proto/*.proto` with protox (pure Rust), so a fresh machine needs
//! no `protoc`. The same descriptor set feeds tonic-reflection.
use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["hotline.proto", "etcd_kv.proto"], ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("hotline_descriptor.bin"), fds.encode_to_vec())?;
    // An event's hashes as `bytes::Bytes` (same wire format): a ticket is
    // copied for every new version of it, with all its events, and each
    // `Vec<u8>` hash was an allocation and a copy per event per version;
    // a `Bytes` copy shares the 32 bytes, and `prev_hash` shares the
    // previous event's `hash`.
    tonic_prost_build::configure()
        .bytes(".hotline.v1.Event.prev_hash")
        .bytes(".hotline.v1.Event.hash")
        .compile_fds(fds)?;
    Ok(())
}
