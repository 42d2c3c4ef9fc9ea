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
        // A raft envelope's message as `Bytes`: decoding a batch then slices
        // the received buffer instead of allocating and copying each message
        // (a node hosting many busy groups receives ≈ 3 envelopes per
        // accept); the envelope is dropped once its message is parsed, so
        // no buffer outlives its batch.
        .bytes(".hotline.v1.RaftEnvelope.message")
        // The tickets that transfer envelopes and receipts carry, boxed
        // (same wire format): a `Ticket` is ≈ 750 bytes inline, so every
        // `TransferRecord` (an envelope and a receipt) was ≈ 1.75 KB even
        // where the receipt carries no ticket, which is nearly everywhere
        // (a group on a transfer's path keeps a record for 30 days, and each
        // change of it is a new copy).
        .boxed(".hotline.v1.TransferEnvelope.ticket")
        .boxed(".hotline.v1.TransferReceipt.ticket")
        .compile_fds(fds)?;
    Ok(())
}
