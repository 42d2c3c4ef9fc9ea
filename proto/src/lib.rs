//! Generated protocol buffers of hotline (`hotline.v1`).
//!
//! This crate holds only generated code and the encoded descriptor set used
//! by gRPC reflection. It must never contain logic.

/// The `hotline.v1` package: services, tickets and replicated commands.
pub mod v1 {
    tonic::include_proto!("hotline.v1");
}

/// The subset of etcd's KV API used to benchmark etcd with our own client loop.
pub mod etcd {
    tonic::include_proto!("etcdserverpb");
}

/// Encoded `FileDescriptorSet` of every hotline proto, for tonic-reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/hotline_descriptor.bin"));
