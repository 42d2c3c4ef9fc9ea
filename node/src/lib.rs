//! hotline-node: a region group's replica and the node that runs it.
//!
//! - `core`: the deterministic, sans-IO replica (raft-rs `RawNode` + the
//!   ticket state machine). No IO, no clock, no threads.
//! - `storage`: redb, the only place that touches the disk.
//! - `server`, `transport`, `tls`, `config`, `client`: the tokio/tonic driver
//!   and its client.
//!
//! Only the driver modules may depend on tokio, tonic or redb; `core` must
//! stay runnable by the simulator unchanged.

pub mod client;
pub mod config;
pub mod core;
pub mod dirsync;
pub mod faults;
pub mod fedquery;
pub mod forwarder;
pub mod membership;
pub mod metrics;
pub mod notify;
pub mod raft_loop;
pub mod server;
pub mod storage;
pub mod tls;
pub mod transport;
