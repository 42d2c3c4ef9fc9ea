//! The data the simulator's parts exchange: what the workload asks for, what
//! the fault schedule does, and what a run reports. Plain data, serde, no
//! logic: the engine (`sim.rs`) produces and consumes it; `workload.rs`,
//! `faults.rs` and `report.rs` build and render it.

use serde::{Deserialize, Serialize};

/// Simulated time, milliseconds since the run's start (the run starts at
/// `RunSpec::start_unix_ms`, 00:00 CST of the simulated day).
pub type SimMs = i64;

/// One citizen request the workload generates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Arrival {
    pub at: SimMs,
    /// The accepting center: a district code (6 digits) that has a group.
    pub region: String,
    /// Where the problem is: a street (9) or district (6) code. Differs
    /// from `region`'s district for calls about other places.
    pub location: String,
    /// consult | help | complaint | report | suggestion | praise
    pub kind: String,
    /// A category path of the built-in tree, e.g. "交通运输/交通出行".
    pub category: String,
    /// normal | urgent | emergency
    pub priority: String,
    /// 11 digits, deterministic from the seed.
    pub phone: String,
    /// What happens after accept.
    pub fate: Fate,
    /// Part of a mass incident (several requesters about one place within
    /// hours): the engine merges later ones into the first.
    pub incident: Option<u64>,
    /// Its position in the run's stream of calls, from 0 (counting the
    /// calls a simulator shard does not take: see `Arrivals::keep_only`).
    #[serde(default)]
    pub number: u64,
}

/// The life of a ticket after accept, as the workload decides it up front
/// (the engine turns it into commands at these delays after accept).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Fate {
    /// 直接答复 at intake.
    Answer { after_ms: SimMs },
    /// Dispatched and followed to the end.
    Handle(Handling),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Handling {
    pub dispatch_after_ms: SimMs,
    pub sign_after_ms: SimMs,
    pub reply_after_ms: SimMs,
    pub callback_after_ms: SimMs,
    /// The unit returns it once before signing (退单 → 改派).
    pub returned: bool,
    /// The unit asks for (and gets) an extension.
    pub extended: bool,
    /// The first callback is unsatisfied and the ticket is reopened (重办).
    pub reopened: bool,
    /// If the ticket is transferred to another region, the destination
    /// sends it back (退回首接) instead of dispatching it, and the
    /// first-contact center handles it.
    #[serde(default)]
    pub sent_back: bool,
    /// The unit's return (退单) finds the place in another region (属地不
    /// 符): the street it is in. The center transfers the ticket there from
    /// its review instead of dispatching it to another unit. Empty: none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub moved_to: String,
    /// satisfied | basic | unsatisfied (of the final callback)
    pub satisfaction: String,
}

/// What happens to the network, nodes and disks, and when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultEvent {
    pub at: SimMs,
    pub action: FaultAction,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultAction {
    /// Cut every link between the two sides (node ids), both directions.
    Partition {
        a: Vec<u64>,
        b: Vec<u64>,
        label: String,
    },
    /// Remove every partition and link fault.
    Heal,
    /// A node stops; writes not yet synced are lost.
    Crash {
        node: u64,
    },
    Restart {
        node: u64,
    },
    /// Every message between the sides takes `extra_ms` more.
    Delay {
        a: Vec<u64>,
        b: Vec<u64>,
        extra_ms: SimMs,
    },
    /// Each message between the sides is lost with this probability (‰).
    Loss {
        a: Vec<u64>,
        b: Vec<u64>,
        permille: u32,
    },
    /// Messages are duplicated / reordered with this probability (‰).
    Duplicate {
        permille: u32,
    },
    /// fsyncs on the node take this long (0 = back to normal).
    SlowDisk {
        node: u64,
        fsync_ms: SimMs,
    },
    /// The node's clock (the time it stamps on commands) is off by this much.
    ClockSkew {
        node: u64,
        skew_ms: SimMs,
    },
}

/// Which invariants held (all must), with the first violation if any.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Invariants {
    pub no_acked_ticket_lost: bool,
    pub one_leader_per_term: bool,
    pub committed_prefixes_agree: bool,
    pub one_owner_per_ticket: bool,
    pub no_transfer_applied_twice: bool,
    pub transfers_delivered_after_heal: bool,
    pub chains_verify: bool,
    /// The national group's directory places every group of the topology
    /// (reports written before it existed read as held).
    #[serde(default = "held")]
    pub directory_replicated: bool,
    pub violation: Option<String>,
}

fn held() -> bool {
    true
}

/// A latency distribution, in simulated milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Pending cross-region transfers on one province pair, sampled over time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Backlog {
    /// "31→32": origin province → destination province.
    pub link: String,
    /// (simulated minute, envelopes accepted but not yet delivered)
    pub samples: Vec<(i64, u64)>,
}

/// A deadline the run missed while a fault was in force.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MissedDeadline {
    pub ticket: String,
    pub deadline: String,
    pub due_ms: SimMs,
    pub done_ms: Option<SimMs>,
    pub fault: String,
}

/// The whole report of one run (`report.json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub seed: u64,
    pub topology: String,
    pub nodes: u64,
    pub groups: u64,
    pub replicas: u64,
    pub simulated_ms: SimMs,
    pub wall_ms: u64,
    pub events: u64,
    pub events_per_sec: f64,
    pub tickets_accepted: u64,
    pub commands_committed: u64,
    pub transfers: u64,
    pub cross_province_transfers: u64,
    /// Tickets a destination sent back (退回首接, each also one of
    /// `transfers`) that their first-contact center then dispatched.
    #[serde(default)]
    pub send_backs: u64,
    /// Tickets a unit returned as another region's (退单, 属地不符) that the
    /// center transferred from its review and the new owner then
    /// dispatched (each transfer also one of `transfers`).
    #[serde(default)]
    pub moved_from_review: u64,
    /// Reviews of a return that decided to transfer the ticket.
    #[serde(default)]
    pub review_moves: u64,
    /// Of those, decided more than two hours before the end and never
    /// dispatched by the new owner: stuck (none expected).
    #[serde(default)]
    pub review_moves_unfinished: u64,
    /// Transfers their destination refused (at the end of the run).
    #[serde(default)]
    pub transfers_refused: u64,
    pub messages_sent: u64,
    pub messages_dropped: u64,
    pub invariants: Invariants,
    pub commit_latency: Latency,
    pub transfer_latency: Latency,
    /// From a notification's creation (its ticket's event, by the
    /// proposer's clock) until the notifier sends it.
    #[serde(default)]
    pub notify_latency: Latency,
    pub backlog: Vec<Backlog>,
    pub faults: Vec<FaultEvent>,
    pub missed_deadlines: Vec<MissedDeadline>,
    /// Accepted tickets per simulated hour (the diurnal curve as run).
    pub arrivals_per_hour: Vec<u64>,
    /// SHA-256 over every group's final state, in group order: equal for
    /// equal seeds on any machine.
    pub digest: String,
    /// The command that reproduces this run.
    pub reproduce: String,
    /// Events by kind (where the simulator spends its time).
    #[serde(default)]
    pub events_by_kind: std::collections::BTreeMap<String, u64>,
    /// Threads the run was split over (part of what the seed reproduces).
    #[serde(default = "one")]
    pub shards: u64,
}

fn one() -> u64 {
    1
}
