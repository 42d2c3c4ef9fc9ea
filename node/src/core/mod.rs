//! The sans-IO core: everything that decides, nothing that waits.
//!
//! Architecture invariant: nothing under `core` performs IO, reads a clock,
//! spawns a thread or draws randomness it was not given. Time enters as
//! `tick()` and as `Command::at_ms`; durability enters as `on_persisted()`.
//! The node driver (`crate::server`) and the simulator both run this code.

pub mod audit;
pub mod calendar;
pub mod categories;
pub mod deadlines;
pub mod kpi;
pub mod lifecycle;
pub mod liveness;
pub mod log;
pub mod notify_pace;
pub mod placements;
pub mod replica;
pub mod tickets;
pub mod transfer;

pub use lifecycle::CommandError;
pub use replica::{
    AfterPersist, Applied, LocalRead, ProposeError, ReadDone, ReadFailed, Ready, Recovered,
    Replica, ReplicaConfig, SnapshotInstall, WriteBatch,
};
pub use tickets::{ApplyResult, FieldError, Query, QueryAnswer, TicketMachine};
