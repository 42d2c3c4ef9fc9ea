//! hotline-simulator: the same replica core, driven by a seeded,
//! single-threaded scheduler over simulated disks and network.
//!
//! Architecture invariant: this crate re-implements no protocol logic. It
//! owns only what a driver owns: where messages go (and whether they arrive),
//! when ticks happen, what a disk keeps across a crash. Everything that
//! decides — Raft, the ticket state machine — is `hotline_node::core`.
//!
//! One seed gives one run: all randomness comes from one `StdRng` seeded by
//! the caller, replicas pin their election timeouts
//! (`ReplicaConfig::deterministic_elections`), and all maps are ordered.

pub mod cluster;
pub mod disk;
pub mod model;
pub mod report;
pub mod schedule;
pub mod sim;
pub mod workload;

pub use cluster::{Faults, MemCluster};
pub use disk::MemDisk;
