//! The discrete-event simulator: the real core (replicas, ticket state
//! machine, transfer protocol) on simulated nodes, disks, network and clocks.
//!
//! One thread, one seeded `StdRng`, one event queue ordered by (simulated
//! time, insertion sequence): the same seed gives the same run on any
//! machine. The engine is a driver, like `node/src/raft_loop.rs`: it moves
//! messages, keeps time, syncs disks and plays the call centers (proposing
//! the workload's commands to group leaders) and the forwarder (handing
//! transfer envelopes between groups along `core::transfer::forward_candidates`).
//! It decides nothing the core decides.
//!
//! Speed comes from the design: a hibernating group costs nothing (its
//! replicas are not ticked; a node is ticked only while one of its
//! replicas is awake), node liveness is an oracle event on crashes and
//! partitions (the real node's per-node-pair heartbeat, without its per-tick
//! cost), raft messages travel as structs (no encoding), and the checks are
//! incremental.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use std::time::Instant;

use hdrhistogram::Histogram;
use hotline_federation::directory::Directory;
use hotline_federation::topology::{Topology, group_id, group_region};
use hotline_node::core::notify_pace::NotifyPace;
use hotline_node::core::placements::{MAX_GROUPS, from_spec, to_report};
use hotline_node::core::tickets::{IdKey, SmWrites};
use hotline_node::core::transfer::{ForwarderPace, InFlight, forward_candidates, hop_allowed};
use hotline_node::core::{
    Applied, ApplyResult, Query, QueryAnswer, Recovered, Replica, ReplicaConfig,
};
use hotline_proto::v1::{
    AcceptRequest, Actor, Answer, Callback, Command, Custody, DecideExtension, Delivered,
    DirectoryImage, Dispatch, Extend, HopDone, Kind, Location, Merge, Priority, ReceiptIn,
    ReceiptPassed, Reopen, Reply, Resolution, Return, ReviewReturn, Role, Satisfaction, Sign,
    Status, Ticket, TicketCommand, TransferEnvelope, TransferOut, TransferReceipt, TransferRecord,
    TransferState, command, ticket_command::Op,
};
use raft::StateRole;
use raft::eraftpb::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use crate::disk::MemDisk;
use crate::model::{
    Backlog, Fate, FaultAction, FaultEvent, Invariants, MissedDeadline, Report, SimMs,
};
use crate::workload::Workload;

/// 2026-10-01 00:00 CST (国庆): the simulated day starts here by default.
pub const DEFAULT_START_UNIX_MS: i64 = 1_790_784_000_000;
/// Raft tick.
pub const TICK_MS: SimMs = 100;
/// A request not acknowledged within this is proposed again (same request id).
const RETRY_MS: SimMs = 3_000;
/// Leader not known: look again after this.
const NO_LEADER_RETRY_MS: SimMs = 200;
/// A `Forward` call's deadline (node/src/forwarder.rs FORWARD_TIMEOUT).
const FORWARD_DEADLINE_MS: SimMs = 3_000;
/// The notifier's batch (the node's default; its pace is the core's
/// [`NotifyPace`]): the leader delivers its group's outbox and commits
/// `Delivered`, as the real node does, so outboxes stay bounded over a
/// simulated day.
const NOTIFY_BATCH: usize = NotifyPace::DEFAULT_BATCH;
/// How soon the notifier or the forwarder looks again while its leader
/// settles (the node's `SETTLE_POLL`).
const SETTLE_POLL_MS: SimMs = 10;
/// Liveness: a node unheard for this long is suspected, as in the node
/// (here the oracle fires once, after this delay).
const SUSPECT_AFTER_MS: SimMs =
    hotline_node::core::liveness::suspect_after_ticks(hotline_node::core::replica::ELECTION_TICKS)
        as SimMs
        * TICK_MS;
/// Messages buffered for a replica whose Ready is being persisted.
const MAX_BACKLOG: usize = 10_000;
/// How long after the last heal every transfer must be delivered.
pub const DELIVERY_BOUND_MS: SimMs = 120_000;

/// Test-only switch (hotline-node feature `test-switches`): the destination
/// applies a retried transfer again. Returns false without the feature.
pub fn set_break_transfer_idempotency(on: bool) -> bool {
    hotline_node::core::transfer::set_break_idempotency(on)
}

pub fn break_transfer_idempotency() -> bool {
    hotline_node::core::transfer::idempotency_broken()
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub topology: Topology,
    /// How the topology was named on the command line (for the report).
    pub topology_label: String,
    pub duration_ms: SimMs,
    pub workload: Workload,
    pub faults: Vec<FaultEvent>,
    pub start_unix_ms: i64,
    /// Normal fsync latency.
    pub fsync_ms: SimMs,
    /// Stop after this many events (a safety bound for tests).
    pub max_events: u64,
    /// Ticks of idleness before a group hibernates. The node waits 20; the
    /// simulator hibernates at the first idle tick with everything
    /// replicated: a national day is millions of short bursts of activity
    /// in otherwise quiet groups, and each tick of a quiesce tail costs
    /// every member a tick and a heartbeat round (≈ 30 % of the events at 5).
    pub quiesce_after_ticks: u64,
    /// Print progress to stderr every wall-clock second.
    pub progress: bool,
    /// The command line that reproduces this run (for reports and failures).
    pub reproduce: String,
    /// Threads, each running the groups of some provinces (see [`Shards`]).
    /// Part of what a seed reproduces: one seed and one shard count give one
    /// run, on any machine (a one-core machine runs the threads in turn).
    pub shards: usize,
    /// Free the replicas' state when the run ends. `hotline sim run` exits
    /// right after its report and leaves the memory to the OS: freeing a
    /// national day's ≈ 10 GB of tickets in thousands of maps takes seconds
    /// that measure nothing (and competes with writing the report).
    pub free_at_end: bool,
}

impl SimConfig {
    pub fn new(seed: u64, topology: Topology, duration_ms: SimMs) -> Self {
        SimConfig {
            seed,
            topology_label: topology.name.clone(),
            topology,
            duration_ms,
            workload: Workload::default(),
            faults: Vec::new(),
            start_unix_ms: DEFAULT_START_UNIX_MS,
            fsync_ms: 2,
            max_events: u64::MAX,
            quiesce_after_ticks: 1,
            progress: false,
            reproduce: String::new(),
            shards: 1,
            free_at_end: true,
        }
    }
}

/// What happens next.
#[derive(Debug)]
enum Ev {
    /// Every node due at this boundary (`Sim::tick_due`).
    Tick(SimMs),
    Deliver {
        to: u64,
        group: u64,
        msg: Box<Message>,
    },
    Persisted {
        node: u64,
        group: u64,
        life: u64,
    },
    Arrival,
    Step {
        ticket: u32,
        step: StepKind,
    },
    Fault(usize),
    WakeOrphans,
    /// A group's forwarder looks at its work (its bell, or its pause ran
    /// out); stale unless it is the look the forwarder has due.
    Forward(u64),
    /// A forwarder's round runs out of patience with records still in
    /// flight ([`ForwarderPace::ROUND_PATIENCE_MS`]).
    ForwardRoundEnd {
        group: u64,
        round: u64,
    },
    /// The call deadline of a round's records: those still in flight end.
    ForwardDeadline {
        group: u64,
        round: u64,
    },
    Notify(u64),
    FwdArrive(Box<FwdItem>),
    /// Boxed, as `FwdArrive`: the queue moves every event several times,
    /// so its largest variant sets the cost of all.
    FwdAck(Box<FwdAck>),
    Retry(u64),
    Sample,
    /// From another shard: a ticket whose group this shard runs, with the
    /// step due for it (see [`Shards`]).
    Adopt(Box<(Track, StepKind)>),
    /// From another shard: a group of that shard elected a leader (what a
    /// node learns from the leader hints of `Forward` answers).
    Hint {
        group: u64,
        node: u64,
        term: u64,
    },
}

/// When a simulated task (a group's forwarder or notifier) next wakes up.
/// Each time the wake-up is brought forward an event is pushed, and the
/// earlier schedule's event stays in the queue: only the event at the due
/// time fires, the others are stale.
#[derive(Debug, Default, Clone, Copy)]
struct Wakeup(Option<SimMs>);

impl Wakeup {
    /// Makes the wake-up due at `at` unless one is due sooner; true if it
    /// moved, and the caller pushes the event for `at`.
    fn bring_forward(&mut self, at: SimMs) -> bool {
        let moved = self.0.is_none_or(|due| at < due);
        if moved {
            self.0 = Some(at);
        }
        moved
    }

    /// An event for this task at `now`: true if it is the one due (the
    /// wake-up is then taken), false if it is stale.
    fn fires(&mut self, now: SimMs) -> bool {
        let fires = self.0 == Some(now);
        if fires {
            self.0 = None;
        }
        fires
    }

    fn is_set(&self) -> bool {
        self.0.is_some()
    }
}

/// A group's forwarder (node/src/forwarder.rs `run`): its pace, its next
/// look, the records it is handing on and the round it waits for.
#[derive(Debug, Default)]
struct Forwarder {
    pace: ForwarderPace,
    /// Its next look (`Ev::Forward`).
    due: Wakeup,
    /// The leader whose forwarder this is; only the leader's is simulated,
    /// and a new leader's has nothing in flight.
    node: Option<u64>,
    /// Records being handed on (the core's, as the node's task keeps it).
    in_flight: InFlight,
    /// The round it waits for, until its records end or its patience runs
    /// out.
    round: Option<u64>,
    /// The bell rang (or a straggler ended) during the round: look again as
    /// soon as it ends (as tokio's `Notify` keeps one permit).
    bell: bool,
}

/// A group's notifier (node/src/notify.rs `run`): its pace, its next
/// round, and the round waiting for its `Delivered` to commit.
#[derive(Debug)]
struct Notifier {
    pace: NotifyPace,
    /// Its next round, or the running round's deadline (`Ev::Notify`).
    due: Wakeup,
    /// A round's `Delivered` is being committed; whether its batch was
    /// full.
    round_full: Option<bool>,
    /// The bell rang while a round was due or running (tokio's `Notify`
    /// keeps one permit).
    bell: bool,
}

impl Default for Notifier {
    fn default() -> Self {
        Self {
            pace: NotifyPace::new(NotifyPace::DEFAULT_INTERVAL_MS),
            due: Wakeup::default(),
            round_full: None,
            bell: false,
        }
    }
}

#[derive(Debug)]
struct FwdAck {
    to: u64,
    group: u64,
    transfer_id: String,
    next_group: u64,
    receipt: bool,
}

#[derive(Debug)]
struct FwdItem {
    from_node: u64,
    from_group: u64,
    to_node: u64,
    to_group: u64,
    envelope: Option<TransferEnvelope>,
    receipt: Option<TransferReceipt>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StepKind {
    Answer,
    Dispatch,
    Return,
    Review,
    Sign,
    Extend,
    Approve,
    Reply,
    Callback,
    Reopen,
    Merge,
    /// 退回首接: the destination sends a transferred ticket back.
    SendBack,
    /// After a unit's return as another region's (退单, 属地不符): the
    /// center transfers it there from its review.
    MoveOn,
}

struct QItem {
    at: SimMs,
    seq: u64,
    ev: Ev,
}
impl PartialEq for QItem {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for QItem {}
impl PartialOrd for QItem {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for QItem {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// The event queue, in (time, sequence) order: a heap for what is due soon,
/// and buckets for what is due later. Most events are due within
/// milliseconds (deliveries, fsyncs, ticks), while every live ticket has a
/// lifecycle step hours ahead: a national day holds a million of those, and
/// a heap of them (pushed and popped through ≈ 20 cold levels each) was
/// ≈ 3.5 % of the day's samples. Later events wait in per-second buckets
/// instead, and a bucket joins the heap as a whole once the heap's head
/// reaches its first instant, so `pop` gives exactly the order of one heap.
#[derive(Default)]
struct Queue {
    near: BinaryHeap<Reverse<QItem>>,
    /// Events due later than `NEAR_MS` ahead when pushed, by `at / FAR_BUCKET_MS`.
    far: BTreeMap<SimMs, Vec<QItem>>,
}

/// Events due later than this go to the far buckets.
const NEAR_MS: SimMs = 10_000;
/// The span of one far bucket.
const FAR_BUCKET_MS: SimMs = 1_000;

impl Queue {
    fn push(&mut self, now: SimMs, item: QItem) {
        if item.at > now + NEAR_MS {
            self.far
                .entry(item.at / FAR_BUCKET_MS)
                .or_default()
                .push(item);
        } else {
            self.near.push(Reverse(item));
        }
    }

    fn pop(&mut self) -> Option<QItem> {
        self.settle();
        self.near.pop().map(|Reverse(item)| item)
    }

    /// When the next event is due.
    fn peek_at(&mut self) -> Option<SimMs> {
        self.settle();
        self.near.peek().map(|Reverse(item)| item.at)
    }

    /// Brings every bucket that may hold the smallest event into the heap.
    fn settle(&mut self) {
        // Every event of a bucket is due at or after its first instant: while
        // the heap's head is due before the first bucket starts, it is the
        // smallest event of all; otherwise that bucket may hold a smaller
        // one, and joins the heap (then the next bucket is checked).
        while let Some((&bucket, _)) = self.far.first_key_value() {
            let start = bucket * FAR_BUCKET_MS;
            if self.near.peek().is_some_and(|Reverse(n)| n.at < start) {
                break;
            }
            let (_, items) = self.far.pop_first().expect("peeked");
            self.near.extend(items.into_iter().map(Reverse));
        }
    }

    /// Every event still queued (for the end-of-run checks).
    fn items(&self) -> impl Iterator<Item = &QItem> {
        self.near
            .iter()
            .map(|Reverse(item)| item)
            .chain(self.far.values().flatten())
    }
}

/// Replicas touched by the current event, drained in (node, group) order.
/// A sorted deque rather than a `BTreeSet`: it holds one to a few pairs
/// and is emptied after every event, and a set allocated and freed a B-tree
/// leaf each time. Same order as the set, so the same run. A deque, not a
/// `Vec`: a tick boundary dirties every awake replica of the nodes it ticks
/// (inserted in order, at the back), and taking the first of a `Vec` moved
/// all the others each time (≈ 0.8 % of a national run's samples).
#[derive(Default)]
struct Dirty(VecDeque<(u64, u64)>);

impl Dirty {
    fn insert(&mut self, key: (u64, u64)) {
        if self.0.back().is_none_or(|&last| last < key) {
            self.0.push_back(key);
        } else if let Err(at) = self.0.binary_search(&key) {
            self.0.insert(at, key);
        }
    }

    fn pop_first(&mut self) -> Option<(u64, u64)> {
        self.0.pop_front()
    }
}

/// One replica's driver state on one node.
struct Slot {
    replica: Replica,
    disk: MemDisk,
    /// A Ready is being persisted: inputs wait in `backlog`.
    inflight: bool,
    backlog: VecDeque<Message>,
    /// The Ready being persisted wrote transfer records on the leader: its
    /// forwarder's bell rings once they are on disk.
    ring_when_persisted: bool,
    /// Requests to propose here that came while a Ready was being
    /// persisted: taken together once it is, as the node's raft loop takes
    /// every queued proposal at its next iteration. (Retried one by one
    /// instead, a burst went in one per fsync.)
    proposals_waiting: Vec<u64>,
}

struct Node {
    alive: bool,
    /// Bumped on every restart: stale events of a previous life are ignored.
    life: u64,
    /// Boxed: a `Slot` is ≈ 4 KB (the replica inline) and a B-tree leaf
    /// holds room for eleven values, so unboxed each node's map cost ≈ 44 KB
    /// for its two to four groups (≈ 150 MB over the national topology).
    slots: BTreeMap<u64, Box<Slot>>,
    disks_down: BTreeMap<u64, MemDisk>,
    ticking: bool,
    fsync_ms: SimMs,
    skew_ms: SimMs,
    province: String,
}

/// The simulated nodes by id, in id order: a table indexed by id (the
/// engine looks nodes up several times per event, and a B-tree walk over
/// 3,348 nodes showed in profiles), with a binary search for ids too large
/// to index.
#[derive(Default)]
struct Nodes {
    ids: Vec<u64>,
    list: Vec<Node>,
    /// id → position in `list` (u32::MAX: none), for ids below its length.
    index: Vec<u32>,
}

impl Nodes {
    fn from(map: BTreeMap<u64, Node>) -> Nodes {
        let ids: Vec<u64> = map.keys().copied().collect();
        let indexed = ids
            .iter()
            .copied()
            .filter(|&id| id < 1 << 24)
            .max()
            .map_or(0, |m| m as usize + 1);
        let mut index = vec![u32::MAX; indexed];
        for (pos, &id) in ids.iter().enumerate() {
            if let Some(slot) = index.get_mut(id as usize) {
                *slot = pos as u32;
            }
        }
        Nodes {
            ids,
            list: map.into_values().collect(),
            index,
        }
    }

    fn pos(&self, id: u64) -> Option<usize> {
        match self.index.get(id as usize) {
            Some(&p) => (p != u32::MAX).then_some(p as usize),
            None => self.ids.binary_search(&id).ok(),
        }
    }

    fn get(&self, id: &u64) -> Option<&Node> {
        self.pos(*id).map(|p| &self.list[p])
    }

    fn get_mut(&mut self, id: &u64) -> Option<&mut Node> {
        self.pos(*id).map(|p| &mut self.list[p])
    }

    fn keys(&self) -> impl Iterator<Item = &u64> {
        self.ids.iter()
    }

    fn len(&self) -> usize {
        self.list.len()
    }
}

impl std::ops::Index<&u64> for Nodes {
    type Output = Node;
    fn index(&self, id: &u64) -> &Node {
        self.get(id).expect("a node of the topology")
    }
}

impl<'a> IntoIterator for &'a Nodes {
    type Item = (&'a u64, &'a Node);
    type IntoIter = std::iter::Zip<std::slice::Iter<'a, u64>, std::slice::Iter<'a, Node>>;
    fn into_iter(self) -> Self::IntoIter {
        self.ids.iter().zip(self.list.iter())
    }
}

/// What a pending request is for.
#[derive(Clone, Debug)]
enum Purpose {
    Accept {
        ticket: u32,
    },
    Step {
        ticket: u32,
        step: StepKind,
    },
    /// The notifier's: its batch left the outbox.
    Delivered,
    /// The callee side of a forward: on apply, acknowledge to the caller.
    Custody {
        reply_to: u64,
        from_group: u64,
        transfer_id: String,
        receipt: bool,
    },
    /// The forwarder's commit after a hop answered (`HopDone` or
    /// `ReceiptPassed`): it ends that record's part of the round.
    HopDone {
        transfer_id: String,
    },
    /// A group's placement for the national group's replicated directory.
    Place,
}

#[derive(Clone, Debug)]
struct Pending {
    group: u64,
    node: u64,
    /// Propose on this node's replica (raft forwards to the leader over
    /// the simulated network), instead of on the leader directly: what a
    /// node that receives a `Forward` call does.
    at_node: Option<u64>,
    cmd: Command,
    purpose: Purpose,
    proposed_at: SimMs,
}

/// The workload's view of one ticket: what the later steps need of its
/// `Arrival` and no more (a national day holds 2.25 million of these).
#[derive(Debug)]
struct Track {
    /// The arrival's number in the run (every shard counts every arrival).
    number: u32,
    /// Handed to the shard of the group that owns the ticket now.
    moved: bool,
    /// The accepting center (the units' names are made from it).
    region: Box<str>,
    fate: Fate,
    incident: Option<u64>,
    id: Option<String>,
    /// The group that owns it now (after a transfer: the destination).
    group: u64,
    /// The center reviewed a return and sent it to another unit.
    redispatched: bool,
    transferred: bool,
    delivered: bool,
    /// The destination sent it back: it is the first-contact center's again.
    sent_back: bool,
    /// Transferred from 退单审核 (`Handling::moved_to`): 1 on the way, 2 once
    /// dispatched by its new owner. It is not returned again.
    moved_on: u8,
    answered_first_callback: bool,
    master: Option<u32>,
}

/// A cross-shard item is due at least this long after it is sent: the
/// lookahead that lets shards run side by side. It is the least latency
/// between two provinces (`Sim::latency`: 1 ms, plus 8 across provinces),
/// and shards split the groups by province, so almost every item took this
/// long anyway; the exception is a hand-off between the national group and
/// a province group on the one node that hosts both (the national node),
/// lengthened from 1–3 ms to this.
const LOOKAHEAD_MS: SimMs = 9;
/// A waiting shard spins this many times between yields.
const SPINS_PER_YIELD: u32 = 256;
/// Pauses between two looks at the other shards' bounds: each look pulls
/// the line a working shard stores its bound to, and a store to a line
/// another core keeps reading waits for that core.
const SPIN_PAUSES: u32 = 8;
/// Shards publish their figures for the progress line this often (events).
const PROGRESS_EVERY: u64 = 4_096;

/// What the shards of one run share, each value on its own cache line: a
/// shard stores its bound before every event, and with two bounds on one
/// line each store would take the line from the other core.
struct Shared {
    /// Per shard: no event it processes from now on is due earlier, so
    /// nothing it sends is due before this plus `LOOKAHEAD_MS`.
    bound: Vec<CachePadded<AtomicI64>>,
    /// A shard found a violation: every shard stops.
    stop: CachePadded<AtomicBool>,
    /// Per shard: events, tickets accepted, transfers (the progress line).
    progress: Vec<CachePadded<[AtomicU64; 3]>>,
}

/// A shard leaving its loop, however it does: no other shard waits for it
/// any more, and after a panic (which the run re-raises) every shard stops.
struct Leave<'a>(&'a Shared, usize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.stop.store(true, Ordering::Relaxed);
        }
        self.0.bound[self.1].store(SimMs::MAX / 2, Ordering::Release);
    }
}

/// What a shard may do next.
enum Due {
    /// Process its next event, due then.
    Ready(SimMs),
    /// Wait for another shard.
    Blocked,
    /// Nothing more to do.
    Over,
}

/// An event for another shard.
struct Remote {
    from: usize,
    at: SimMs,
    seq: u64,
    ev: Ev,
}

/// A run on several threads (`SimConfig::shards`): each shard is a `Sim`
/// that runs the groups of some provinces (all replicas of each, and every
/// engine table about them), while every shard knows every node's liveness,
/// faults and network state (all of it comes from the fault schedule, which
/// every shard plays). What crosses between shards is what crosses between
/// provinces: transfer envelopes and their acknowledgements, a ticket's
/// later steps once its owner is elsewhere, and leader hints, each due at
/// least `LOOKAHEAD_MS` after it is sent.
///
/// The synchronisation is conservative (Chandy–Misra without null messages,
/// bounds published in shared memory): a shard processes an event only
/// while it is due before every other shard's bound plus the lookahead, so
/// everything that could still arrive earlier has arrived. Events are
/// ordered by (due time, origin, sequence) — a received item sorts after
/// local events due at the same instant, by its sender's sequence — so the
/// order never depends on when a thread got to run: the same seed and shard
/// count give the same run on any machine.
struct Shards {
    index: usize,
    of_group: Arc<BTreeMap<u64, u8>>,
    shared: Arc<Shared>,
    inbox: crossbeam_channel::Receiver<Remote>,
    /// By shard index (this shard's own sender is never used).
    outboxes: Vec<crossbeam_channel::Sender<Remote>>,
    sent: u64,
    /// Events due before this may be processed without looking at the
    /// other shards again: it was their least bound plus the lookahead when
    /// the inbox was last drained, and whatever they sent since is due later.
    safe: SimMs,
    /// The bound this shard last published (see `publish`).
    published: SimMs,
}

impl Shards {
    /// Promises the other shards that this one processes nothing due before
    /// `bound` any more. Bounds only grow, and a bound that did not grow is
    /// not stored again: every store takes the line from a waiting shard's
    /// core.
    fn publish(&mut self, bound: SimMs) {
        if bound > self.published {
            self.published = bound;
            self.shared.bound[self.index].store(bound, Ordering::Release);
        }
    }
}

/// Which shard runs which group: whole provinces (a province's groups talk
/// within milliseconds; provinces and the national group are at least
/// `LOOKAHEAD_MS` apart), balanced by the workload's volume per province.
fn assign_shards(cfg: &SimConfig, count: usize) -> BTreeMap<u64, u8> {
    let province = |g: u64| group_region(g).get(..2).unwrap_or("").to_string();
    let mut weight: BTreeMap<String, f64> = BTreeMap::new();
    for g in &cfg.topology.groups {
        if let Some(id) = g.id() {
            weight.entry(province(id)).or_insert(0.0);
        }
    }
    let mut total = 0.0;
    for (district, per_day) in cfg.workload.district_volumes_of(&cfg.topology) {
        if let Some(w) = weight.get_mut(district.get(..2).unwrap_or("")) {
            *w += per_day;
            total += per_day;
        }
    }
    // The national group relays every cross-province transfer (a national
    // day: 117k of 2.25M tickets, a few commands each).
    if let Some(w) = weight.get_mut(&province(group_id(""))) {
        *w += total / 20.0;
    }
    let mut order: Vec<(String, f64)> = weight.into_iter().collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut load = vec![0.0f64; count];
    let mut shard_of: BTreeMap<String, u8> = BTreeMap::new();
    for (p, w) in order {
        let lightest = (0..count)
            .min_by(|&a, &b| load[a].total_cmp(&load[b]))
            .expect("at least one shard");
        load[lightest] += w;
        shard_of.insert(p, lightest as u8);
    }
    cfg.topology
        .groups
        .iter()
        .filter_map(|g| g.id())
        .map(|id| (id, shard_of[&province(id)]))
        .collect()
}

impl Track {
    /// Moves this track out for another shard, leaving a marker that is
    /// skipped from then on.
    fn hand_over(&mut self) -> Track {
        let moved = Track {
            number: self.number,
            moved: true,
            region: Box::from(""),
            fate: Fate::Answer { after_ms: 0 },
            incident: None,
            id: None,
            group: self.group,
            redispatched: false,
            transferred: false,
            delivered: false,
            sent_back: false,
            moved_on: 0,
            answered_first_callback: false,
            master: None,
        };
        let mut track = std::mem::replace(self, moved);
        // A local index of this shard: the new one has its own.
        track.master = None;
        track
    }
}

pub struct Sim {
    cfg: SimConfig,
    /// Set when the run has several shards; `others` holds the rest until
    /// `run` starts them.
    shards: Option<Shards>,
    others: Vec<Sim>,
    /// Times this shard waited for another, and for how long in all.
    waits: u64,
    waited: std::time::Duration,
    wait_started: Option<Instant>,
    /// Leaders of other shards' groups, by group: (term, node).
    hints: BTreeMap<u64, (u64, u64)>,
    dir: Directory,
    now: SimMs,
    queue: Queue,
    seq: u64,
    rng: StdRng,
    nodes: Nodes,
    /// The fault schedule crashes a node: disks must keep what they sync.
    crashes: bool,
    members: BTreeMap<u64, Vec<u64>>,
    /// Per group: (voters, learners), as the topology places them.
    placement: BTreeMap<u64, (Vec<u64>, Vec<u64>)>,
    /// Per node: the groups it replicates, by id (`Topology::groups_of`).
    node_groups: BTreeMap<u64, Vec<u64>>,
    /// Versions being written by a group's replicas (see `Fresh`).
    fresh: FreshWrites,
    /// `tick`'s list of a node's groups, reused.
    tick_groups: Vec<u64>,
    dirty: Dirty,
    /// Nodes to tick, by tick boundary.
    tick_due: BTreeMap<SimMs, BTreeSet<u64>>,
    arrivals: std::iter::Peekable<crate::workload::Arrivals>,
    tracks: Vec<Track>,
    incidents: BTreeMap<u64, u32>,
    pending: BTreeMap<u64, Pending>,
    next_request: u64,
    /// Per group: its forwarder, as the node's task plays it.
    forwarders: BTreeMap<u64, Forwarder>,
    /// Per group: its notifier, as the node's task plays it.
    notifiers: BTreeMap<u64, Notifier>,
    // network faults
    partitions: Vec<(BTreeSet<u64>, BTreeSet<u64>)>,
    delays: Vec<(BTreeSet<u64>, BTreeSet<u64>, SimMs)>,
    losses: Vec<(BTreeSet<u64>, BTreeSet<u64>, u32)>,
    dup_permille: u32,
    last_heal: SimMs,
    // checks
    first_apply: BTreeMap<(u64, u64), (u64, u8)>,
    replicas_per_group: BTreeMap<u64, u8>,
    history: BTreeMap<u64, [u8; 32]>,
    leaders: BTreeMap<(u64, u64), u64>,
    custody_applied: BTreeMap<(String, u64), u32>,
    violation: Option<String>,
    /// When it was found (simulated ms): the earliest of the shards' wins.
    violation_at: SimMs,
    /// `HOTLINE_SIM_TRACE=GROUP`: print that group's messages and roles.
    trace_group: Option<u64>,
    // figures
    events: u64,
    by_kind: [u64; 14],
    commands_committed: u64,
    messages_sent: u64,
    messages_dropped: u64,
    commit_hist: Histogram<u64>,
    /// The national group's first leader has proposed the directory's seed.
    directory_seeded: bool,
    transfer_hist: Histogram<u64>,
    notify_hist: Histogram<u64>,
    /// transfer id → (start, "31→32").
    transfer_started: BTreeMap<String, (SimMs, String)>,
    transfers: u64,
    cross_province: u64,
    /// Tickets a destination sent back (退回首接) that their first-contact
    /// center then dispatched.
    send_backs: u64,
    /// Reviews that decided to transfer a ticket (MoveOn scheduled), by
    /// arrival number (run-wide: a track may end on another shard), and
    /// when; and those dispatched by their new owner since.
    review_moves: BTreeMap<u32, SimMs>,
    review_moves_done: BTreeSet<u32>,
    backlog: BTreeMap<String, Vec<(i64, u64)>>,
    arrivals_per_hour: Vec<u64>,
    accepted: u64,
}

/// (group, id, version, state): a ticket's version is its number of events
/// (every command that changes it adds one); a transfer record's is its
/// update time, with its state. The id is the core's `IdKey` (inline up to
/// 24 bytes, as ticket ids are).
type FreshKey = (u64, IdKey, i64, i32);

/// Past this many versions waiting for a replica (one that crashed, lags
/// or caught up from a snapshot never writes them), the table starts over:
/// what is lost is sharing (memory), never a check.
const MAX_FRESH: usize = 10_000;

/// The versions one replica of a group has written and not every replica
/// has yet, by `FreshKey`: where `share_writes` finds the equal copy of
/// another replica. Looking it up in the other replicas' maps instead was
/// ≈ 3 % of a national day's samples: up to two walks of cold B-trees per
/// write, string-keyed for transfers. This table holds only versions in
/// flight (a group's replicas apply a command within milliseconds of each
/// other), so it stays small and in the cache. Sharing changes nothing
/// observable (see `same_ticket`), so neither does what this table
/// forgets.
struct Fresh<T> {
    /// The first writer's copy and how many replicas hold it.
    versions: BTreeMap<FreshKey, (Arc<T>, usize)>,
}

impl<T> Default for Fresh<T> {
    fn default() -> Self {
        Fresh {
            versions: BTreeMap::new(),
        }
    }
}

impl<T> Fresh<T> {
    /// The copy `mine` should be replaced with, if another replica wrote an
    /// equal one (`same`, a full comparison: a replica that computed
    /// something else keeps its own); otherwise `mine` is remembered for the
    /// others, unless the key holds a different version already.
    fn share(
        &mut self,
        key: FreshKey,
        mine: &Arc<T>,
        replicas: usize,
        same: fn(&T, &T) -> bool,
    ) -> Option<Arc<T>> {
        match self.versions.get_mut(&key) {
            Some((theirs, holders)) => {
                if Arc::ptr_eq(theirs, mine) || !same(theirs, mine) {
                    return None;
                }
                let theirs = theirs.clone();
                *holders += 1;
                if *holders >= replicas {
                    self.versions.remove(&key);
                }
                Some(theirs)
            }
            None => {
                if self.versions.len() >= MAX_FRESH {
                    self.versions.clear();
                }
                self.versions.insert(key, (mine.clone(), 1));
                None
            }
        }
    }
}

#[derive(Default)]
struct FreshWrites {
    tickets: Fresh<Ticket>,
    transfers: Fresh<TransferRecord>,
}

/// Whether two versions of a ticket are equal, as `==` decides, without
/// comparing every event: every field but the events in full, the number of
/// events, and the last event in full. The last event's `prev_hash` is the
/// SHA-256 of the event before it (its fields and its own `prev_hash`), and
/// so on down the chain, so equal last events mean equal chains as surely as
/// the audit chain itself is tamper-evident. `share_writes` compares every
/// new version of a ticket against another replica's (a full `==` walked a
/// dozen strings per event and was ≈ 5 % of a national run's CPU).
fn same_ticket(a: &Ticket, b: &Ticket) -> bool {
    // Destructured without `..`: a field added to `Ticket` must be added here.
    let Ticket {
        id,
        region,
        kind,
        category,
        text,
        channel,
        status,
        accepted_at_ms,
        raft_index,
        priority,
        location,
        requesters,
        call_taker,
        lead_unit,
        assisting_units,
        closure,
        refer_reason,
        refer_target,
        answer_text,
        reply_text,
        first_dispatched_at_ms,
        dispatched_at_ms,
        signed_at_ms,
        replied_at_ms,
        closed_at_ms,
        archived_at_ms,
        sign_due_ms,
        handle_due_ms,
        handle_warn_ms,
        callback_due_ms,
        signed_in_time,
        replied_in_time,
        extensions,
        pending_extension,
        pending_return,
        returns,
        reopens,
        urges,
        supervision_level,
        callbacks,
        master_id,
        merged_ids,
        deadline_state,
        deadline_ms,
        owner_group,
        transfer_id,
        origin_group,
        transfer_state,
        events,
    } = a;
    if events.len() != b.events.len() || events.last() != b.events.last() {
        return false;
    }
    *id == b.id
        && *region == b.region
        && *kind == b.kind
        && *category == b.category
        && *text == b.text
        && *channel == b.channel
        && *status == b.status
        && *accepted_at_ms == b.accepted_at_ms
        && *raft_index == b.raft_index
        && *priority == b.priority
        && *location == b.location
        && *requesters == b.requesters
        && *call_taker == b.call_taker
        && *lead_unit == b.lead_unit
        && *assisting_units == b.assisting_units
        && *closure == b.closure
        && *refer_reason == b.refer_reason
        && *refer_target == b.refer_target
        && *answer_text == b.answer_text
        && *reply_text == b.reply_text
        && *first_dispatched_at_ms == b.first_dispatched_at_ms
        && *dispatched_at_ms == b.dispatched_at_ms
        && *signed_at_ms == b.signed_at_ms
        && *replied_at_ms == b.replied_at_ms
        && *closed_at_ms == b.closed_at_ms
        && *archived_at_ms == b.archived_at_ms
        && *sign_due_ms == b.sign_due_ms
        && *handle_due_ms == b.handle_due_ms
        && *handle_warn_ms == b.handle_warn_ms
        && *callback_due_ms == b.callback_due_ms
        && *signed_in_time == b.signed_in_time
        && *replied_in_time == b.replied_in_time
        && *extensions == b.extensions
        && *pending_extension == b.pending_extension
        && *pending_return == b.pending_return
        && *returns == b.returns
        && *reopens == b.reopens
        && *urges == b.urges
        && *supervision_level == b.supervision_level
        && *callbacks == b.callbacks
        && *master_id == b.master_id
        && *merged_ids == b.merged_ids
        && *deadline_state == b.deadline_state
        && *deadline_ms == b.deadline_ms
        && *owner_group == b.owner_group
        && *transfer_id == b.transfer_id
        && *origin_group == b.origin_group
        && *transfer_state == b.transfer_state
}

/// `same_ticket` for an optional ticket.
fn same_opt_ticket(a: &Option<Box<Ticket>>, b: &Option<Box<Ticket>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => same_ticket(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// Whether two versions of a transfer record are equal, as `==` decides,
/// with the tickets they carry compared as `same_ticket` does (a record
/// holds one or two whole tickets; a full `==` was ≈ 1.5 % of a national
/// run's CPU). Destructured without `..`, as `same_ticket`.
fn same_transfer(a: &TransferRecord, b: &TransferRecord) -> bool {
    let TransferRecord {
        envelope,
        state,
        next_group,
        updated_at_ms,
        refusal,
        receipt,
        receipt_pending,
        cross_province,
    } = a;
    let same_envelope = match (envelope, &b.envelope) {
        (Some(x), Some(y)) => {
            let TransferEnvelope {
                transfer_id,
                origin_group,
                destination_group,
                destination_region,
                ticket,
                sent_at_ms,
                via_national_done,
                hops,
                reason,
                send_back,
            } = x;
            *transfer_id == y.transfer_id
                && *send_back == y.send_back
                && *origin_group == y.origin_group
                && *destination_group == y.destination_group
                && *destination_region == y.destination_region
                && *sent_at_ms == y.sent_at_ms
                && *via_national_done == y.via_national_done
                && *hops == y.hops
                && *reason == y.reason
                && same_opt_ticket(ticket, &y.ticket)
        }
        (None, None) => true,
        _ => false,
    };
    let same_receipt = match (receipt, &b.receipt) {
        (Some(x), Some(y)) => {
            let TransferReceipt {
                transfer_id,
                refused,
                reason,
                by_group,
                at_ms,
                ticket,
            } = x;
            *transfer_id == y.transfer_id
                && *refused == y.refused
                && *reason == y.reason
                && *by_group == y.by_group
                && *at_ms == y.at_ms
                && same_opt_ticket(ticket, &y.ticket)
        }
        (None, None) => true,
        _ => false,
    };
    *state == b.state
        && *next_group == b.next_group
        && *updated_at_ms == b.updated_at_ms
        && *refusal == b.refusal
        && *receipt_pending == b.receipt_pending
        && *cross_province == b.cross_province
        && same_envelope
        && same_receipt
}

fn actor(id: &str, role: Role) -> Option<Actor> {
    Some(Actor {
        id: id.to_string(),
        role: role as i32,
    })
}

fn kind_of(s: &str) -> Kind {
    hotline_node::core::tickets::parse_kind(s).unwrap_or(Kind::Consult)
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Result<Sim, String> {
        cfg.topology.validate().map_err(|e| e.to_string())?;
        let count = cfg.shards.max(1);
        if count == 1 {
            return Sim::build(cfg, None);
        }
        if count > u8::MAX as usize {
            return Err(format!("shards: at most {} (got {count})", u8::MAX));
        }
        let of_group = Arc::new(assign_shards(&cfg, count));
        let shared = Arc::new(Shared {
            bound: (0..count)
                .map(|_| CachePadded::new(AtomicI64::new(0)))
                .collect(),
            stop: CachePadded::new(AtomicBool::new(false)),
            progress: (0..count)
                .map(|_| {
                    CachePadded::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)])
                })
                .collect(),
        });
        let (outboxes, inboxes): (Vec<_>, Vec<_>) =
            (0..count).map(|_| crossbeam_channel::unbounded()).unzip();
        let mut sims = Vec::with_capacity(count);
        for (index, inbox) in inboxes.into_iter().enumerate() {
            let link = Shards {
                index,
                of_group: of_group.clone(),
                shared: shared.clone(),
                inbox,
                outboxes: outboxes.clone(),
                sent: 0,
                safe: 0,
                published: 0,
            };
            sims.push(Sim::build(cfg.clone(), Some(link))?);
        }
        let mut first = sims.remove(0);
        first.others = sims;
        Ok(first)
    }

    fn build(cfg: SimConfig, shards: Option<Shards>) -> Result<Sim, String> {
        let dir = Directory::new(&cfg.topology);
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let mut nodes = BTreeMap::new();
        let mut members = BTreeMap::new();
        let mut replicas_per_group = BTreeMap::new();
        // One pass over the groups instead of the topology's per-group and
        // per-node searches (each a walk of every group: quadratic, ≈ 10 %
        // of a national 2-hour run's instructions went to start-up).
        let mut placement = BTreeMap::new();
        let mut node_groups: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for g in &cfg.topology.groups {
            let gid = g.id().ok_or("group without id")?;
            if placement.contains_key(&gid) {
                continue; // `Topology::group` finds the first
            }
            // `Topology::members`: voters, then learners, in file order.
            members.insert(gid, g.voters.iter().chain(&g.learners).copied().collect());
            replicas_per_group.insert(gid, (g.voters.len() + g.learners.len()) as u8);
            placement.insert(gid, (g.voters.clone(), g.learners.clone()));
            for &n in g.voters.iter().chain(&g.learners) {
                node_groups.entry(n).or_default().push(gid);
            }
        }
        for groups in node_groups.values_mut() {
            groups.sort_unstable();
            groups.dedup();
        }
        for n in &cfg.topology.nodes {
            nodes.insert(
                n.id,
                Node {
                    alive: true,
                    life: 0,
                    slots: BTreeMap::new(),
                    disks_down: BTreeMap::new(),
                    ticking: false,
                    fsync_ms: cfg.fsync_ms,
                    skew_ms: 0,
                    province: n.region.get(..2).unwrap_or("").to_string(),
                },
            );
        }
        let mut arrivals = cfg
            .workload
            .arrivals(&cfg.topology, cfg.duration_ms, cfg.seed);
        if let Some(s) = &shards {
            // This shard's calls only: the others' are drawn and skipped.
            let keep = arrivals
                .district_codes()
                .iter()
                .map(|code| {
                    dir.owner(code).is_none_or(|g| {
                        s.of_group
                            .get(&g)
                            .is_none_or(|&i| usize::from(i) == s.index)
                    })
                })
                .collect();
            arrivals.keep_only(keep);
        }
        let arrivals = arrivals.peekable();
        let hist = || Histogram::<u64>::new_with_bounds(1, 30 * 24 * 3_600_000, 3).expect("bounds");
        // Each shard draws from its own generator; shard 0's (and a
        // one-shard run's) is the one a run has always drawn from.
        let index = shards.as_ref().map_or(0, |s| s.index as u64);
        let rng_seed = rng.r#gen::<u64>() ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut sim = Sim {
            shards,
            others: Vec::new(),
            hints: BTreeMap::new(),
            waits: 0,
            waited: std::time::Duration::ZERO,
            wait_started: None,
            dir,
            now: 0,
            queue: Queue::default(),
            seq: 0,
            rng: StdRng::seed_from_u64(rng_seed),
            nodes: Nodes::from(nodes),
            crashes: cfg
                .faults
                .iter()
                .any(|f| matches!(f.action, FaultAction::Crash { .. })),
            members,
            placement,
            node_groups,
            fresh: FreshWrites::default(),
            tick_groups: Vec::new(),
            dirty: Dirty::default(),
            tick_due: BTreeMap::new(),
            arrivals,
            tracks: Vec::new(),
            incidents: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_request: 1,
            forwarders: BTreeMap::new(),
            notifiers: BTreeMap::new(),
            partitions: Vec::new(),
            delays: Vec::new(),
            losses: Vec::new(),
            dup_permille: 0,
            last_heal: 0,
            first_apply: BTreeMap::new(),
            replicas_per_group,
            history: BTreeMap::new(),
            leaders: BTreeMap::new(),
            custody_applied: BTreeMap::new(),
            violation: None,
            violation_at: 0,
            trace_group: std::env::var("HOTLINE_SIM_TRACE")
                .ok()
                .and_then(|g| g.parse().ok()),
            events: 0,
            by_kind: [0; 14],
            commands_committed: 0,
            messages_sent: 0,
            messages_dropped: 0,
            commit_hist: hist(),
            directory_seeded: false,
            transfer_hist: hist(),
            notify_hist: hist(),
            transfer_started: BTreeMap::new(),
            transfers: 0,
            cross_province: 0,
            send_backs: 0,
            review_moves: BTreeMap::new(),
            review_moves_done: BTreeSet::new(),
            backlog: BTreeMap::new(),
            arrivals_per_hour: vec![0; (cfg.duration_ms / 3_600_000 + 1) as usize],
            accepted: 0,
            cfg,
        };
        let ids: Vec<u64> = sim.nodes.keys().copied().collect();
        for id in ids {
            sim.start_node(id);
        }
        for (i, f) in sim.cfg.faults.clone().iter().enumerate() {
            sim.push(f.at, Ev::Fault(i));
        }
        if let Some(a) = sim.arrivals.peek() {
            let at = a.at;
            sim.push(at, Ev::Arrival);
        }
        sim.push(60_000, Ev::Sample);
        Ok(sim)
    }

    /// What the node driver's national leader does (`dirsync`): place
    /// every group of the topology in the replicated directory, the same
    /// `core::placements` deciding and applying. Proposed once the national
    /// group first has a leader (at its first forward round) and retried
    /// until applied, through whatever faults the run brings.
    fn seed_directory(&mut self) {
        let national = hotline_federation::directory::NATIONAL;
        if !self.dir.contains(national) || !self.is_local(national) {
            return;
        }
        let seed = self.cfg.topology.groups.iter().filter_map(from_spec);
        let all = to_report(&DirectoryImage::default(), [], seed, MAX_GROUPS);
        for p in all {
            self.propose(national, command::Op::Place(p), Purpose::Place);
        }
    }

    fn push(&mut self, at: SimMs, ev: Ev) {
        self.seq += 1;
        self.queue.push(
            self.now,
            QItem {
                at: at.max(self.now),
                seq: self.seq,
                ev,
            },
        );
    }

    /// Whether this shard runs `group` (always, in a one-shard run).
    fn is_local(&self, group: u64) -> bool {
        self.shards.as_ref().is_none_or(|s| {
            s.of_group
                .get(&group)
                .is_none_or(|&i| usize::from(i) == s.index)
        })
    }

    /// Queues an event about `group`: here, or for the shard that runs it
    /// (due at least `LOOKAHEAD_MS` from now).
    fn push_for(&mut self, group: u64, at: SimMs, ev: Ev) {
        let to = match &self.shards {
            Some(s) => s.of_group.get(&group).map_or(s.index, |&i| usize::from(i)),
            None => return self.push(at, ev),
        };
        self.send_to(to, at, ev);
    }

    fn send_to(&mut self, to: usize, at: SimMs, ev: Ev) {
        let now = self.now;
        let Some(s) = self.shards.as_mut().filter(|s| s.index != to) else {
            return self.push(at, ev);
        };
        s.sent += 1;
        let item = Remote {
            from: s.index,
            at: at.max(now + LOOKAHEAD_MS),
            seq: s.sent,
            ev,
        };
        // A receiver gone (its thread ended) no longer needs anything.
        let _ = s.outboxes[to].send(item);
    }

    fn replica_config(&mut self, node: u64, group: u64) -> ReplicaConfig {
        let mut c = ReplicaConfig::new(node, group, &group_region(group));
        c.deterministic_elections = true;
        // Distinct timeouts within a group (raft-rs would redraw them from
        // thread_rng on every election; pinned ones must not collide, or
        // the group splits its vote forever): each member gets its own band
        // of ticks, with a seeded position inside it.
        let members = self.members.get(&group).map_or(1, Vec::len).max(1);
        let idx = self
            .members
            .get(&group)
            .and_then(|m| m.iter().position(|&n| n == node))
            .unwrap_or(0);
        let band = (c.election_ticks / members).max(1);
        c.election_offset = idx * band + self.rng.gen_range(0..band);
        c.quiesce_after_ticks = self.cfg.quiesce_after_ticks;
        // Far below the node's 10,000: a simulated national day holds
        // ≈ 3,300 groups × 3 replicas' logs plus their disks' copies in one
        // process, and a short log also sends lagging replicas down the
        // snapshot path more often, which the simulation wants exercised.
        c.compact_log_entries = 100;
        c
    }

    fn start_node(&mut self, id: u64) {
        let mut groups = self.node_groups.get(&id).cloned().unwrap_or_default();
        groups.retain(|&g| self.is_local(g));
        let mut slots = BTreeMap::new();
        let mut downs = std::mem::take(&mut self.nodes.get_mut(&id).expect("node").disks_down);
        for g in groups {
            let (voters, learners) = self.placement.get(&g).expect("group").clone();
            let (disk, rec) = match downs.remove(&g) {
                Some(disk) if !disk.is_blank() => {
                    let rec = disk.recovered(g);
                    (disk, rec)
                }
                down => (
                    down.unwrap_or_else(|| self.fresh_disk()),
                    Recovered::bootstrap_with(&voters, &learners),
                ),
            };
            let rc = self.replica_config(id, g);
            let replica = Replica::new(rc, rec).expect("replica starts");
            slots.insert(
                g,
                Box::new(Slot {
                    replica,
                    disk,
                    inflight: false,
                    backlog: VecDeque::new(),
                    ring_when_persisted: false,
                    proposals_waiting: Vec::new(),
                }),
            );
        }
        let n = self.nodes.get_mut(&id).expect("node");
        n.slots = slots;
        n.alive = true;
        n.life += 1;
        n.ticking = false;
        self.ensure_ticking(id);
    }

    /// A new node's disk. Disks are read only when a crashed node restarts:
    /// without a crash in the schedule they keep nothing (`MemDisk::unread`).
    fn fresh_disk(&self) -> MemDisk {
        if self.crashes {
            MemDisk::default()
        } else {
            MemDisk::unread()
        }
    }

    fn crash_node(&mut self, id: u64) {
        let n = self.nodes.get_mut(&id).expect("node");
        if !n.alive {
            return;
        }
        n.alive = false;
        n.life += 1;
        let slots = std::mem::take(&mut n.slots);
        let mut waiting = Vec::new();
        for (g, mut s) in slots {
            s.disk.crash();
            n.disks_down.insert(g, s.disk);
            waiting.append(&mut s.proposals_waiting);
        }
        // Their proposers try elsewhere, as after any refusal.
        for rid in waiting {
            self.push(self.now + NO_LEADER_RETRY_MS, Ev::Retry(rid));
        }
        self.push(self.now + SUSPECT_AFTER_MS, Ev::WakeOrphans);
    }

    /// Ticks `node` at the next tick boundary. Every node due at one
    /// boundary is ticked by one event (a tick is 100 ms everywhere, so
    /// awake nodes share boundaries; one event each was a quarter of all).
    fn ensure_ticking(&mut self, node: u64) {
        let n = self.nodes.get_mut(&node).expect("node");
        if n.alive && !n.ticking {
            n.ticking = true;
            let at = (self.now / TICK_MS + 1) * TICK_MS;
            let first = !self.tick_due.contains_key(&at);
            self.tick_due.entry(at).or_default().insert(node);
            if first {
                self.push(at, Ev::Tick(at));
            }
        }
    }

    fn link_ok(&self, a: u64, b: u64) -> bool {
        !self
            .partitions
            .iter()
            .any(|(x, y)| (x.contains(&a) && y.contains(&b)) || (x.contains(&b) && y.contains(&a)))
    }

    fn reachable(&self, from: u64, to: u64) -> bool {
        from == to || (self.nodes[&to].alive && self.link_ok(from, to))
    }

    /// Latency of one message, or None if it is lost.
    fn latency(&mut self, from: u64, to: u64) -> Option<SimMs> {
        if !self.link_ok(from, to) {
            return None;
        }
        let pair = |s: &(BTreeSet<u64>, BTreeSet<u64>)| {
            (s.0.contains(&from) && s.1.contains(&to)) || (s.0.contains(&to) && s.1.contains(&from))
        };
        for (a, b, p) in self.losses.clone() {
            if pair(&(a, b)) && self.rng.gen_range(0..1000) < p {
                return None;
            }
        }
        let mut ms = 1 + self.rng.gen_range(0..3);
        if self.nodes[&from].province != self.nodes[&to].province {
            ms += 8;
        }
        for (a, b, extra) in &self.delays {
            if (a.contains(&from) && b.contains(&to)) || (a.contains(&to) && b.contains(&from)) {
                ms += extra;
            }
        }
        Some(ms)
    }

    fn send(&mut self, from: u64, group: u64, msgs: Vec<Message>) {
        for m in msgs {
            self.messages_sent += 1;
            let to = m.to;
            match self.latency(from, to) {
                Some(ms) => {
                    let dup =
                        self.dup_permille > 0 && self.rng.gen_range(0..1000) < self.dup_permille;
                    if dup {
                        let extra = self.rng.gen_range(0..20);
                        self.push(
                            self.now + ms + extra,
                            Ev::Deliver {
                                to,
                                group,
                                msg: Box::new(m.clone()),
                            },
                        );
                    }
                    self.push(
                        self.now + ms,
                        Ev::Deliver {
                            to,
                            group,
                            msg: Box::new(m),
                        },
                    );
                }
                None => self.messages_dropped += 1,
            }
        }
    }

    fn slot(&mut self, node: u64, group: u64) -> Option<&mut Slot> {
        let n = self.nodes.get_mut(&node)?;
        if !n.alive {
            return None;
        }
        n.slots.get_mut(&group).map(|s| &mut **s)
    }

    /// Runs the Ready loop of every replica touched by the last event.
    fn drain(&mut self) {
        while let Some((node, group)) = self.dirty.pop_first() {
            self.process(node, group);
        }
    }

    fn process(&mut self, node: u64, group: u64) {
        loop {
            let life = self.nodes[&node].life;
            let Some(slot) = self.slot(node, group) else {
                return;
            };
            if slot.inflight || !slot.replica.has_ready() {
                return;
            }
            let mut rd = slot.replica.ready();
            self.share_writes(node, group, &mut rd.write.sm);
            let Some(slot) = self.slot(node, group) else {
                return;
            };
            let must_sync = rd.write.must_sync;
            // The node's raft loop rings the forwarder's bell when a
            // round's writes with transfer records are on disk (only a
            // leader's forwarder acts on it, and only the leader's is
            // simulated).
            slot.ring_when_persisted |=
                !rd.write.sm.transfers_put.is_empty() && slot.replica.is_leader();
            slot.disk.stage(rd.write);
            if let Some(role) = rd.role {
                let term = slot.replica.term();
                self.on_role(node, group, role, term);
            }
            let applied = rd.applied;
            self.send(node, group, rd.messages);
            // The simulator reads replicas locally, never through ReadIndex.
            debug_assert!(rd.reads_failed.is_empty());
            // Raft refused a batch (an election or leadership transfer
            // began since `propose`), or the leader it was forwarded to is
            // no longer the leader: a forward's callee answers no; a
            // client's own retry timer proposes again.
            for (rid, _) in rd.proposals_dropped {
                if self.pending.get(&rid).is_some_and(|p| p.at_node.is_some()) {
                    self.pending.remove(&rid);
                }
            }
            self.on_applied(node, group, applied);
            if must_sync {
                let fsync = self.nodes[&node].fsync_ms;
                if let Some(s) = self.slot(node, group) {
                    s.inflight = true;
                }
                self.push(self.now + fsync, Ev::Persisted { node, group, life });
                return;
            }
            self.persisted(node, group);
        }
    }

    /// One copy of a ticket or transfer record per group, not one per
    /// replica: a version this replica just wrote that another member
    /// already holds (equal: every replica applies the same commands) is
    /// replaced by that member's copy, in the batch (so the disk keeps the
    /// same copy) and in the replica's state machine. Nothing observable
    /// changes; a national day's memory is mostly these.
    fn share_writes(&mut self, node: u64, group: u64, sm: &mut SmWrites) {
        if sm.tickets.is_empty() && sm.transfers_put.is_empty() {
            return;
        }
        let Some(replicas) = self.members.get(&group).map(Vec::len) else {
            return;
        };
        // (mine, theirs): this replica's new copy and the equal one.
        let mut shared_tickets = Vec::new();
        for t in sm.tickets.iter_mut() {
            let key = (group, IdKey::new(&t.id), t.events.len() as i64, 0);
            if let Some(a) = self.fresh.tickets.share(key, t, replicas, same_ticket) {
                shared_tickets.push((std::mem::replace(t, a.clone()), a));
            }
        }
        let mut shared_transfers = Vec::new();
        for r in sm.transfers_put.iter_mut() {
            let id = r.envelope.as_ref().map_or("", |e| e.transfer_id.as_str());
            let key = (group, IdKey::new(id), r.updated_at_ms, r.state);
            if let Some(a) = self.fresh.transfers.share(key, r, replicas, same_transfer) {
                shared_transfers.push((std::mem::replace(r, a.clone()), a));
            }
        }
        if let Some(slot) = self.slot(node, group) {
            for (mine, theirs) in &shared_tickets {
                slot.replica.share_ticket(mine, theirs);
            }
            for (mine, theirs) in &shared_transfers {
                slot.replica.share_transfer(mine, theirs);
            }
        }
    }

    fn persisted(&mut self, node: u64, group: u64) {
        let Some(slot) = self.slot(node, group) else {
            return;
        };
        slot.disk.sync();
        slot.inflight = false;
        if std::mem::take(&mut slot.ring_when_persisted) {
            self.ring_forwarder(group);
        }
        let Some(slot) = self.slot(node, group) else {
            return;
        };
        let after = slot.replica.on_persisted();
        let backlog: Vec<Message> = slot.backlog.drain(..).collect();
        for m in backlog {
            slot.replica.step(m);
        }
        let waiting = std::mem::take(&mut slot.proposals_waiting);
        self.send(node, group, after.messages);
        self.on_applied(node, group, after.applied);
        for rid in waiting {
            self.retry(rid);
        }
        self.dirty.insert((node, group));
    }

    fn on_role(&mut self, node: u64, group: u64, role: StateRole, term: u64) {
        if self.trace_group == Some(group) {
            eprintln!(
                "{} ms: group {group} node {node} -> {role:?} term {term}",
                self.now
            );
        }
        if role == StateRole::Leader {
            if let Some(&other) = self.leaders.get(&(group, term))
                && other != node
            {
                self.fail(format!(
                    "two leaders in group {group} term {term}: nodes {other} and {node}"
                ));
            }
            self.leaders.insert((group, term), node);
            if let Some(s) = &self.shards {
                let (me, count) = (s.index, s.outboxes.len());
                for to in (0..count).filter(|&i| i != me) {
                    let now = self.now;
                    self.send_to(to, now, Ev::Hint { group, node, term });
                }
            }
            // A new leader resumes the group's transfers and deliveries:
            // the raft loop rings its forwarder's and notifier's bells.
            self.ring_forwarder(group);
            self.ring_notifier(group);
        }
    }

    fn fail(&mut self, what: String) {
        if self.violation.is_none() {
            self.violation_at = self.now;
            self.violation = Some(format!("at {} ms: {what}", self.now));
        }
    }

    fn on_applied(&mut self, node: u64, group: u64, applied: Vec<Applied>) {
        for a in applied {
            // Committed prefixes agree: the first replica to apply an index
            // fixes its request id; every other replica must match.
            let n = self.replicas_per_group.get(&group).copied().unwrap_or(3);
            match self.first_apply.get_mut(&(group, a.index)) {
                Some((rid, seen)) => {
                    let want = *rid;
                    *seen += 1;
                    if *seen >= n {
                        self.first_apply.remove(&(group, a.index));
                    }
                    if want != a.request_id {
                        self.fail(format!(
                            "group {group} index {}: node {node} applied request {} but another replica applied {want}",
                            a.index, a.request_id
                        ));
                    }
                }
                None => {
                    if n > 1 {
                        self.first_apply.insert((group, a.index), (a.request_id, 1));
                    }
                    let h = self.history.entry(group).or_insert([0; 32]);
                    let mut s = Sha256::new();
                    s.update(*h);
                    s.update(a.index.to_be_bytes());
                    s.update(a.request_id.to_be_bytes());
                    *h = s.finalize().into();
                    if a.request_id != 0 {
                        self.commands_committed += 1;
                    }
                }
            }
            if let ApplyResult::Custody { duplicate: false } = &a.result
                && let Some(p) = self.pending.get(&a.request_id)
                && let Purpose::Custody {
                    transfer_id,
                    receipt: false,
                    ..
                } = &p.purpose
                && let Some(t) = self
                    .nodes
                    .get(&node)
                    .and_then(|n| n.slots.get(&group))
                    .and_then(|s| s.replica.tickets().transfer(transfer_id))
                && t.envelope
                    .as_ref()
                    .is_some_and(|e| e.destination_group == group)
            {
                let tid = transfer_id.clone();
                let c = self.custody_applied.entry((tid.clone(), node)).or_insert(0);
                *c += 1;
                if *c > 1 {
                    self.fail(format!("transfer {tid} applied twice on node {node}"));
                }
            }
            if !self
                .pending
                .get(&a.request_id)
                .is_some_and(|p| p.node == node && p.group == group)
            {
                continue;
            }
            let p = self.pending.remove(&a.request_id).expect("checked");
            let lat = (self.now - p.proposed_at).max(1) as u64;
            let _ = self.commit_hist.record(lat);
            self.on_done(p, a.result);
        }
    }

    fn on_done(&mut self, p: Pending, result: ApplyResult) {
        // Any command may queue notifications (accept, dispatch, reply,
        // callback, a ticket arriving by transfer): the notifier looks.
        if matches!(p.purpose, Purpose::Delivered) {
            self.notify_round_done(p.group);
        } else {
            self.ring_notifier(p.group);
        }
        match p.purpose {
            Purpose::Accept { ticket } => {
                let ApplyResult::Ticket(t) = result else {
                    return;
                };
                self.accepted += 1;
                let hour = (self.now / 3_600_000) as usize;
                if let Some(h) = self.arrivals_per_hour.get_mut(hour) {
                    *h += 1;
                }
                let tr = &mut self.tracks[ticket as usize];
                tr.id = Some(t.id.clone());
                let transferred = t.status == Status::Transferred as i32;
                if transferred {
                    tr.transferred = true;
                    tr.group = t.owner_group;
                }
                let incident = tr.incident;
                let fate = tr.fate.clone();
                if transferred {
                    self.transfer_begun(p.group, &t);
                }
                // Mass incident: later callers are merged into the first.
                if let Some(inc) = incident {
                    match self.incidents.get(&inc) {
                        Some(&master) if !transferred => {
                            self.tracks[ticket as usize].master = Some(master);
                            self.push(
                                self.now + 60_000,
                                Ev::Step {
                                    ticket,
                                    step: StepKind::Merge,
                                },
                            );
                            return;
                        }
                        _ => {
                            self.incidents.insert(inc, ticket);
                        }
                    }
                }
                match fate {
                    Fate::Answer { after_ms } => self.push(
                        self.now + after_ms,
                        Ev::Step {
                            ticket,
                            step: StepKind::Answer,
                        },
                    ),
                    Fate::Handle(h) => {
                        // A destination dispatches what it received, or
                        // sends it back to the first-contact center.
                        let step = if transferred && h.sent_back {
                            StepKind::SendBack
                        } else {
                            StepKind::Dispatch
                        };
                        self.push(self.now + h.dispatch_after_ms, Ev::Step { ticket, step });
                    }
                }
            }
            Purpose::Step { ticket, step } => {
                let ApplyResult::Ticket(t) = result else {
                    return;
                };
                if step == StepKind::SendBack {
                    // Owned by the center it came from once it is back.
                    let tr = &mut self.tracks[ticket as usize];
                    tr.group = t.owner_group;
                    tr.delivered = false;
                    tr.sent_back = true;
                    self.transfer_begun(p.group, &t);
                } else if step == StepKind::MoveOn {
                    // Owned by the place's group once it is there.
                    let tr = &mut self.tracks[ticket as usize];
                    tr.group = t.owner_group;
                    tr.transferred = true;
                    tr.delivered = false;
                    tr.moved_on = 1;
                    self.transfer_begun(p.group, &t);
                } else if step == StepKind::Dispatch {
                    let tr = &mut self.tracks[ticket as usize];
                    if tr.moved_on == 1 {
                        // Returned, moved on and taken up where it belongs.
                        tr.moved_on = 2;
                        self.review_moves_done.insert(tr.number);
                    } else if tr.sent_back && tr.moved_on == 0 {
                        // Back, reviewed and taken up: the whole 退回首接.
                        self.send_backs += 1;
                    }
                }
                self.next_step(ticket, step);
            }
            Purpose::Custody {
                reply_to,
                from_group,
                transfer_id,
                receipt,
            } => {
                if matches!(result, ApplyResult::Custody { .. }) {
                    // Acknowledge to the caller, over the network.
                    if let Some(ms) = self.latency(p.node, reply_to) {
                        self.push_for(
                            from_group,
                            self.now + ms,
                            Ev::FwdAck(Box::new(FwdAck {
                                to: reply_to,
                                group: from_group,
                                transfer_id: transfer_id.clone(),
                                next_group: p.group,
                                receipt,
                            })),
                        );
                    }
                    // The receipt reached the origin: the transfer is done.
                    if receipt
                        && transfer_id.starts_with(&format!("{}-", p.group))
                        && let Some((start, _)) = self.transfer_started.remove(&transfer_id)
                    {
                        let _ = self.transfer_hist.record((self.now - start).max(1) as u64);
                    }
                }
            }
            Purpose::HopDone { transfer_id } => self.hop_done(p.group, p.node, &transfer_id),
            Purpose::Delivered | Purpose::Place => {}
        }
    }

    /// Counts a transfer group `from` committed (an accept's, a send-back
    /// or one from 退单审核) and starts its clock, which stops when the receipt is
    /// back at `from`.
    fn transfer_begun(&mut self, from: u64, t: &Ticket) {
        self.transfers += 1;
        if self.dir.is_cross_province(from, t.owner_group) {
            self.cross_province += 1;
        }
        let link = format!(
            "{}→{}",
            group_region(from).get(..2).unwrap_or("00"),
            group_region(t.owner_group).get(..2).unwrap_or("00")
        );
        // A command answered late (by a replica that was cut off, or to a
        // retry) may be answered after the transfer settled: if its
        // receipt is back at `from` already, there is nothing to wait for.
        let settled = self.members[&from].iter().any(|n| {
            self.nodes[n].slots.get(&from).is_some_and(|s| {
                s.replica.tickets().ticket(&t.id).is_some_and(|x| {
                    x.transfer_id == t.transfer_id
                        && x.transfer_state == TransferState::Delivered as i32
                })
            })
        });
        if !settled {
            self.transfer_started
                .insert(t.transfer_id.clone(), (self.now, link));
        }
    }

    /// Schedules the lifecycle step after `done`.
    fn next_step(&mut self, ticket: u32, done: StepKind) {
        let tr = &self.tracks[ticket as usize];
        let Fate::Handle(h) = tr.fate.clone() else {
            return;
        };
        let first_cb = tr.answered_first_callback;
        let (step, after) = match done {
            StepKind::Dispatch if h.returned && tr.moved_on == 0 => {
                (StepKind::Return, h.sign_after_ms / 2)
            }
            StepKind::Dispatch | StepKind::Review => (StepKind::Sign, h.sign_after_ms),
            // The center reviews the return: a place another group owns
            // goes there, anything else to another unit.
            StepKind::Return if self.dir.transfer_to(&h.moved_to, tr.group).is_some() => {
                self.review_moves.insert(tr.number, self.now);
                (StepKind::MoveOn, 30 * 60_000)
            }
            StepKind::Return => (StepKind::Review, 30 * 60_000),
            // Taken up where it belongs: dispatched by its new owner.
            StepKind::MoveOn => (StepKind::Dispatch, 30 * 60_000),
            // The first-contact center reviews what came back, then
            // dispatches it itself.
            StepKind::SendBack => (StepKind::Dispatch, 30 * 60_000),
            StepKind::Sign if h.extended && !first_cb => (StepKind::Extend, h.reply_after_ms / 2),
            StepKind::Sign => (StepKind::Reply, h.reply_after_ms),
            StepKind::Extend => (StepKind::Approve, 60 * 60_000),
            StepKind::Approve => (StepKind::Reply, h.reply_after_ms / 2),
            StepKind::Reply => (StepKind::Callback, h.callback_after_ms),
            StepKind::Callback if h.reopened && !first_cb => {
                self.tracks[ticket as usize].answered_first_callback = true;
                (StepKind::Reopen, 30 * 60_000)
            }
            StepKind::Reopen => (StepKind::Sign, h.sign_after_ms),
            _ => return,
        };
        self.push(self.now + after, Ev::Step { ticket, step });
    }

    fn leader_of(&self, group: u64) -> Option<u64> {
        // The latest leader `on_role` recorded for the group (every replica
        // that becomes leader is recorded by the end of the event it became
        // leader in, and no event asks for the leader in between), while it
        // still leads in that term: any other member that believes it leads
        // has an older term, so the scan below would pick this one too. It
        // saves touching every member's replica (cold, on ≈ 10,000) on each
        // proposal, retry, notifier and forwarder round.
        if let Some((&(_, term), &n)) = self
            .leaders
            .range((group, 0)..=(group, u64::MAX))
            .next_back()
            && let Some(node) = self.nodes.get(&n)
            && node.alive
            && let Some(s) = node.slots.get(&group)
            && s.replica.is_leader()
            && s.replica.term() == term
        {
            return Some(n);
        }
        let mut best: Option<(u64, u64)> = None;
        for &n in self.members.get(&group)? {
            let node = &self.nodes[&n];
            if !node.alive {
                continue;
            }
            if let Some(s) = node.slots.get(&group)
                && s.replica.is_leader()
                && best.is_none_or(|(t, _)| s.replica.term() > t)
            {
                best = Some((s.replica.term(), n));
            }
        }
        best.map(|(_, n)| n)
    }

    /// Proposes on the group's leader; retried until applied.
    fn propose(&mut self, group: u64, op: command::Op, purpose: Purpose) {
        self.propose_at(group, None, op, purpose);
    }

    fn propose_at(&mut self, group: u64, at_node: Option<u64>, op: command::Op, purpose: Purpose) {
        let rid = self.next_request;
        self.next_request += 1;
        let cmd = Command {
            request_id: rid,
            at_ms: 0,
            accept_text: Vec::new(),
            op: Some(op),
        };
        self.pending.insert(
            rid,
            Pending {
                group,
                node: 0,
                at_node,
                cmd,
                purpose,
                proposed_at: self.now,
            },
        );
        self.retry(rid);
    }

    fn retry(&mut self, rid: u64) {
        let Some(p) = self.pending.get(&rid) else {
            return;
        };
        let (group, at_node, proposed_at) = (p.group, p.at_node, p.proposed_at);
        // A forward's callee (and the caller's HopDone) answer within the
        // RPC deadline or not at all: the forwarder calls again later.
        if matches!(p.purpose, Purpose::Custody { .. } | Purpose::HopDone { .. })
            && self.now - proposed_at > FORWARD_DEADLINE_MS
        {
            self.pending.remove(&rid);
            return;
        }
        // Clients back off up to a few seconds between attempts.
        let backoff = ((self.now - proposed_at) / 4).clamp(NO_LEADER_RETRY_MS, 5_000);
        let target = match at_node {
            Some(n) => self.nodes[&n].alive.then_some(n),
            None => self.leader_of(group),
        };
        let Some(node) = target else {
            self.push(self.now + backoff, Ev::Retry(rid));
            return;
        };
        let skew = self.nodes[&node].skew_ms;
        // The core's rule, asked of the network model as the node asks its
        // liveness: no proposal forwarded to a leader this node cannot hear.
        let leader_check = self.nodes[&node].slots.get(&group).map(|s| {
            s.replica
                .check_leader_reachable(|l| !self.reachable(node, l))
        });
        let Some(slot) = self
            .nodes
            .get_mut(&node)
            .filter(|n| n.alive)
            .and_then(|n| n.slots.get_mut(&group))
        else {
            self.pending.remove(&rid);
            return;
        };
        if slot.inflight {
            slot.proposals_waiting.push(rid);
            return;
        }
        let p = self.pending.get_mut(&rid).expect("looked up above");
        // The proposer stamps the time: its own (possibly skewed) clock.
        p.cmd.at_ms = self.cfg.start_unix_ms + self.now + skew;
        let proposed = match leader_check {
            Some(Err(e)) => Err(e),
            _ => slot.replica.propose(&p.cmd),
        };
        if proposed.is_ok() {
            p.node = node;
        }
        match proposed {
            Ok(()) => {
                self.dirty.insert((node, group));
                self.ensure_ticking(node);
                // A callee proposes once and answers within the deadline
                // or not at all; clients retry with the same request id.
                let again = if at_node.is_some() {
                    FORWARD_DEADLINE_MS + 1
                } else {
                    RETRY_MS
                };
                self.push(self.now + again, Ev::Retry(rid));
            }
            Err(_) if at_node.is_some() => {
                self.pending.remove(&rid);
            }
            Err(_) => self.push(self.now + backoff, Ev::Retry(rid)),
        }
    }

    /// Makes the notifier's next round due at `at`, unless one is due
    /// sooner (a later event of an earlier schedule is then stale).
    fn schedule_notify(&mut self, group: u64, at: SimMs) {
        let n = self.notifiers.entry(group).or_default();
        let at = at.max(self.now);
        if n.due.bring_forward(at) {
            self.push(at, Ev::Notify(group));
        }
    }

    /// Rings a group's notifier bell, as the node does when notifications
    /// are added to the outbox: an idle notifier goes at once, unless a
    /// round started within the interval; one with a round due or running
    /// keeps the ring for after it.
    fn ring_notifier(&mut self, group: u64) {
        let n = self.notifiers.entry(group).or_default();
        if n.due.is_set() || n.round_full.is_some() {
            n.bell = true;
        } else {
            let at = n.pace.rung(self.now as u64) as SimMs;
            self.schedule_notify(group, at);
        }
    }

    /// A round ended (its `Delivered` committed, or it found nothing):
    /// the next one as the core's pace says, or at the bell.
    fn notify_round_done(&mut self, group: u64) {
        let Some(n) = self.notifiers.get_mut(&group) else {
            return;
        };
        let Some(full) = n.round_full.take() else {
            return;
        };
        // The round's deadline (see `notify`) is stale now.
        n.due = Wakeup(None);
        let next = match n.pace.after_round(full, true) {
            Some(at) => Some(at as SimMs),
            None if std::mem::take(&mut n.bell) => Some(n.pace.rung(self.now as u64) as SimMs),
            None => None,
        };
        if let Some(at) = next {
            self.schedule_notify(group, at);
        }
    }

    /// The notifier of one group: the leader "sends" a batch of its outbox
    /// (delivery itself is outside the model: a gateway answers at once)
    /// and proposes `Delivered` for it; the round ends when that commits.
    /// Without a leader it waits for the bell a new leader rings, as a
    /// node's notifier does.
    fn notify(&mut self, group: u64) {
        let n = self.notifiers.entry(group).or_default();
        if !n.due.fires(self.now) {
            return;
        }
        // A round whose `Delivered` has not committed by its deadline
        // failed, as the node's request times out: what it sent is sent
        // again (delivery is at least once), and a new round goes now (its
        // pace would have it one interval after the failed one started).
        n.round_full = None;
        let Some(leader) = self.leader_of(group) else {
            return;
        };
        // As the node's notifier: the leader's own replica, once it has
        // settled as leader (its term's entry committed, all applied).
        let Some(slot) = self.slot(leader, group) else {
            return;
        };
        if !slot.replica.is_settled_leader() {
            self.schedule_notify(group, self.now + SETTLE_POLL_MS);
            return;
        }
        let QueryAnswer::Outbox(batch) = slot.replica.tickets().query(&Query::Outbox {
            limit: NOTIFY_BATCH,
        }) else {
            return;
        };
        let n = self.notifiers.get_mut(&group).expect("entered above");
        n.pace.round_started(self.now as u64);
        if batch.is_empty() {
            // Idle: the bell (kept if it rang meanwhile) wakes it.
            if std::mem::take(&mut n.bell) {
                let at = n.pace.rung(self.now as u64) as SimMs;
                self.schedule_notify(group, at);
            }
            return;
        }
        n.round_full = Some(batch.len() == NOTIFY_BATCH);
        let sent_at_ms = self.cfg.start_unix_ms + self.now;
        for n in &batch {
            let _ = self
                .notify_hist
                .record((sent_at_ms - n.created_at_ms).max(1) as u64);
        }
        // The round's deadline: its event is stale once the round ends
        // (`notify_round_done` clears `due`).
        let deadline = self.now + RETRY_MS;
        if n.due.bring_forward(deadline) {
            self.push(deadline, Ev::Notify(group));
        }
        let ids = batch.into_iter().map(|n| n.id).collect();
        self.propose(
            group,
            command::Op::Delivered(Delivered { ids }),
            Purpose::Delivered,
        );
    }

    /// Rings a group's forwarder bell, as the node's raft loop does when
    /// transfer records change on the leader or a node becomes the leader:
    /// it looks now, or as soon as the round it waits for ends.
    fn ring_forwarder(&mut self, group: u64) {
        let f = self.forwarders.entry(group).or_default();
        if f.round.is_some() {
            f.bell = true;
        } else {
            self.schedule_look(group, self.now);
        }
    }

    /// Makes the forwarder's next look due at `at`, unless one is due
    /// sooner (a later event of an earlier schedule is then stale).
    fn schedule_look(&mut self, group: u64, at: SimMs) {
        let f = self.forwarders.entry(group).or_default();
        if f.due.bring_forward(at) {
            self.push(at, Ev::Forward(group));
        }
    }

    /// The forwarder of one group looks at its work, as the node's task
    /// does (node/src/forwarder.rs `run`, with the core's
    /// [`ForwarderPace`] and [`InFlight`]): a settled leader with work hands
    /// each pending envelope or receipt not in flight already to a
    /// reachable member of the first candidate group that has one, and the
    /// round lasts until every record it sent is acknowledged and committed
    /// at home, or its patience runs out; a record still in flight then
    /// goes on until its call deadline. One
    /// difference: a node polls an idle group every half minute behind its
    /// bell, and here a leader with nothing to do waits for its bell alone,
    /// which the simulation rings exactly.
    fn forward(&mut self, group: u64) {
        let f = self.forwarders.entry(group).or_default();
        if !f.due.fires(self.now) {
            return;
        }
        // The national group's first leader seeds the directory (its
        // forward round is the first moment outside its Ready cycle).
        if group == hotline_federation::directory::NATIONAL && !self.directory_seeded {
            self.directory_seeded = true;
            self.seed_directory();
        }
        let leader = self.leader_of(group);
        let f = self.forwarders.get_mut(&group).expect("entered above");
        if f.node != leader {
            // Another node's forwarder ran the rounds so far; what it was
            // handing on is that node's (its calls end by themselves).
            f.node = leader;
            f.in_flight.clear();
            f.round = None;
            f.bell = false;
        } else if f.round.is_some() {
            // This node's round is still running: it looks at its end.
            f.bell = true;
            return;
        }
        let Some(leader) = leader else {
            // Every replica's forwarder polls while it does not lead; the
            // new leader's bell cuts the wait short.
            f.pace.look(false, false);
            let at = self.now + f.pace.pause_ms() as SimMs;
            self.schedule_look(group, at);
            return;
        };
        // As the node's forwarder: a settled leader's own replica.
        let work = match self.slot(leader, group) {
            Some(s) if s.replica.is_settled_leader() => s
                .replica
                .tickets()
                .transfer_work(ForwarderPace::MAX_WORK_PER_ROUND),
            Some(_) => {
                self.schedule_look(group, self.now + SETTLE_POLL_MS);
                return;
            }
            None => return,
        };
        let f = self.forwarders.get_mut(&group).expect("entered above");
        if !f.pace.look(true, !work.is_empty()) {
            return;
        }
        let (round, started) = f.in_flight.start_round(work);
        for rec in &started {
            let mut sent = false;
            let cands = forward_candidates(&self.dir, group, rec);
            for c in cands {
                // Another shard's group: its leader as last heard of.
                let leader_of_c = if self.is_local(c) {
                    self.leader_of(c)
                } else {
                    self.hints.get(&c).map(|&(_, n)| n)
                };
                let target = leader_of_c
                    .filter(|&n| self.reachable(leader, n))
                    .or_else(|| {
                        self.members[&c]
                            .iter()
                            .copied()
                            .find(|&n| self.reachable(leader, n))
                    });
                let Some(to_node) = target else {
                    continue;
                };
                let Some(ms) = self.latency(leader, to_node) else {
                    continue;
                };
                let item = FwdItem {
                    from_node: leader,
                    from_group: group,
                    to_node,
                    to_group: c,
                    envelope: if rec.receipt_pending {
                        None
                    } else {
                        rec.envelope.clone()
                    },
                    receipt: if rec.receipt_pending {
                        rec.receipt.clone()
                    } else {
                        None
                    },
                };
                self.push_for(c, self.now + ms, Ev::FwdArrive(Box::new(item)));
                sent = true;
                break;
            }
            if !sent {
                // Nothing reachable: the node's calls fail at once on a cut
                // link (or a refused connection).
                let id = &rec.envelope.as_ref().expect("started").transfer_id;
                let f = self.forwarders.get_mut(&group).expect("entered above");
                f.in_flight.end(id);
            }
        }
        let f = self.forwarders.get_mut(&group).expect("entered above");
        if f.in_flight.round_done(round) {
            self.end_round(group);
        } else {
            f.round = Some(round);
            self.push(
                self.now + ForwarderPace::ROUND_PATIENCE_MS as SimMs,
                Ev::ForwardRoundEnd { group, round },
            );
            self.push(
                self.now + FORWARD_DEADLINE_MS,
                Ev::ForwardDeadline { group, round },
            );
        }
    }

    /// The forwarder's commit for `transfer_id` (after its hop answered)
    /// applied on `node`: that record is no longer in flight.
    fn hop_done(&mut self, group: u64, node: u64, transfer_id: &str) {
        let Some(f) = self
            .forwarders
            .get_mut(&group)
            .filter(|f| f.node == Some(node))
        else {
            return;
        };
        if let Some(round) = f.in_flight.end(transfer_id) {
            self.record_ended(group, round);
        }
    }

    /// Records of `round` ended (answered and committed, or past their
    /// deadline): the round it waits for may be done, and a straggler's end
    /// makes the forwarder look at once, or as soon as its round ends.
    fn record_ended(&mut self, group: u64, round: u64) {
        let f = self
            .forwarders
            .get_mut(&group)
            .expect("a forwarder's record");
        match f.round {
            Some(r) if r == round => {
                if f.in_flight.round_done(round) {
                    self.end_round(group);
                }
            }
            Some(_) => f.bell = true,
            None => self.schedule_look(group, self.now),
        }
    }

    /// A round ended: the next look comes at once if the bell rang during
    /// it, else after the pace's pause.
    fn end_round(&mut self, group: u64) {
        let f = self
            .forwarders
            .get_mut(&group)
            .expect("a round's forwarder");
        f.round = None;
        let at = if std::mem::take(&mut f.bell) {
            self.now
        } else {
            self.now + f.pace.pause_ms() as SimMs
        };
        self.schedule_look(group, at);
    }

    fn fwd_arrive(&mut self, item: FwdItem) {
        if !self.reachable(item.from_node, item.to_node) {
            return;
        }
        let transfer_id = item
            .envelope
            .as_ref()
            .map(|e| e.transfer_id.clone())
            .or_else(|| item.receipt.as_ref().map(|r| r.transfer_id.clone()))
            .unwrap_or_default();
        let receipt = item.receipt.is_some();
        // The callee's check of the real node (node/src/forwarder.rs): every
        // hop this forwarder takes must pass it, or nodes would refuse
        // legitimate transfers.
        if let Err(why) = hop_allowed(
            &self.dir,
            item.from_group,
            item.to_group,
            item.envelope.as_ref(),
            item.receipt.as_ref(),
        ) {
            self.fail(format!(
                "transfer {transfer_id}: the callee refuses the hop {} → {}: {why}",
                item.from_group, item.to_group
            ));
            return;
        }
        let op = match (item.envelope, item.receipt) {
            (Some(envelope), None) => command::Op::Custody(Custody {
                envelope: Some(envelope),
            }),
            (None, Some(receipt)) => command::Op::ReceiptIn(ReceiptIn {
                receipt: Some(receipt),
            }),
            _ => return,
        };
        // The callee proposes into its group and answers once applied
        // (a retried forward is answered "duplicate" by the state machine).
        self.propose_at(
            item.to_group,
            Some(item.to_node),
            op,
            Purpose::Custody {
                reply_to: item.from_node,
                from_group: item.from_group,
                transfer_id,
                receipt,
            },
        );
    }

    fn fwd_ack(
        &mut self,
        to: u64,
        group: u64,
        transfer_id: String,
        next_group: u64,
        receipt: bool,
    ) {
        if !self.nodes[&to].alive {
            return;
        }
        let op = if receipt {
            command::Op::ReceiptPassed(ReceiptPassed {
                transfer_id: transfer_id.clone(),
            })
        } else {
            command::Op::HopDone(HopDone {
                transfer_id: transfer_id.clone(),
                next_group,
            })
        };
        self.propose_at(group, Some(to), op, Purpose::HopDone { transfer_id });
    }

    fn step(&mut self, ticket: u32, step: StepKind) {
        let tr = &self.tracks[ticket as usize];
        if tr.moved {
            return;
        }
        if !self.is_local(tr.group) {
            // Owned in another shard's group now: its steps go on there.
            let group = tr.group;
            let track = self.tracks[ticket as usize].hand_over();
            let now = self.now;
            self.push_for(group, now, Ev::Adopt(Box::new((track, step))));
            return;
        }
        let Some(id) = tr.id.clone() else {
            return;
        };
        let group = tr.group;
        let number = tr.number;
        let region = tr.region.clone();
        if tr.transferred && !tr.delivered {
            // Owned elsewhere but not yet there: ask again later.
            let delivered = self
                .leader_of(group)
                .and_then(|n| self.slot(n, group))
                .is_some_and(|s| {
                    s.replica
                        .tickets()
                        .ticket(&id)
                        .is_some_and(|t| t.status != Status::Transferred as i32)
                });
            if !delivered {
                self.push(self.now + 60_000, Ev::Step { ticket, step });
                return;
            }
            self.tracks[ticket as usize].delivered = true;
        }
        if step == StepKind::SendBack {
            let op = command::Op::TransferOut(TransferOut {
                ticket_id: id,
                actor: actor("话务员", Role::CallTaker),
                reason: "核实问题发生地不属本地区，退回首接中心".into(),
                send_back: true,
                ..Default::default()
            });
            self.propose(group, op, Purpose::Step { ticket, step });
            return;
        }
        if step == StepKind::MoveOn {
            // The node's `Tickets.Transfer`: the directory names the owner.
            let Fate::Handle(h) = &self.tracks[ticket as usize].fate else {
                unreachable!("only a handled ticket is returned");
            };
            let place = h.moved_to.clone();
            let to = self
                .dir
                .transfer_to(&place, group)
                .expect("checked by next_step");
            let op = command::Op::TransferOut(TransferOut {
                ticket_id: id,
                destination_group: to,
                destination_region: place,
                actor: actor("话务员", Role::CallTaker),
                reason: "退单审核：属地不符，转当地办理".into(),
                send_back: false,
            });
            self.propose(group, op, Purpose::Step { ticket, step });
            return;
        }
        let base = format!("{}单位{}", region, number % 7);
        if step == StepKind::Review {
            self.tracks[ticket as usize].redispatched = true;
        }
        let tr = &self.tracks[ticket as usize];
        let unit = if tr.redispatched {
            format!("{base}改派")
        } else {
            base
        };
        let h = match &tr.fate {
            Fate::Handle(h) => Some(h.clone()),
            Fate::Answer { .. } => None,
        };
        let center = actor("话务员", Role::CallTaker);
        let u = actor(&unit, Role::Unit);
        let (who, reason, op) = match step {
            StepKind::Answer => (
                center,
                "",
                Op::Answer(Answer {
                    text: "已按知识库答复".into(),
                }),
            ),
            StepKind::Dispatch => (
                center,
                "",
                Op::Dispatch(Dispatch {
                    lead_unit: unit.clone(),
                    ..Default::default()
                }),
            ),
            StepKind::Return => {
                // Returned by the unit it was dispatched to (before review).
                let first = format!("{}单位{}", region, number % 7);
                (
                    actor(&first, Role::Unit),
                    "非本单位职责",
                    Op::Return(Return {
                        unit: first.clone(),
                    }),
                )
            }
            StepKind::Review => (
                center,
                "改派",
                Op::ReviewReturn(ReviewReturn {
                    reject: false,
                    lead_unit: unit.clone(),
                    assisting_units: vec![],
                }),
            ),
            StepKind::Sign => (u, "", Op::Sign(Sign { unit: unit.clone() })),
            StepKind::Extend => (
                u,
                "需协调",
                Op::Extend(Extend {
                    unit: unit.clone(),
                    days: 0,
                }),
            ),
            StepKind::Approve => (
                actor("督办员", Role::Supervisor),
                "",
                Op::DecideExtension(DecideExtension { approve: true }),
            ),
            StepKind::Reply => (
                u,
                "",
                Op::Reply(Reply {
                    unit: unit.clone(),
                    text: "已办理".into(),
                }),
            ),
            StepKind::Callback => {
                let first = !tr.answered_first_callback;
                let sat = match h.as_ref().map(|h| h.satisfaction.as_str()) {
                    _ if first && h.as_ref().is_some_and(|h| h.reopened) => {
                        Satisfaction::Unsatisfied
                    }
                    Some("basic") => Satisfaction::Basic,
                    Some("unsatisfied") => Satisfaction::Unsatisfied,
                    _ => Satisfaction::Satisfied,
                };
                let res = if sat == Satisfaction::Unsatisfied {
                    Resolution::Unresolved
                } else {
                    Resolution::Resolved
                };
                (
                    center,
                    "",
                    Op::Callback(Callback {
                        contacted: true,
                        resolution: res as i32,
                        satisfaction: sat as i32,
                    }),
                )
            }
            StepKind::Reopen => (center, "未解决，重办", Op::Reopen(Reopen {})),
            StepKind::SendBack | StepKind::MoveOn => {
                unreachable!("a transfer is a TransferOut, proposed above")
            }
            StepKind::Merge => {
                let Some(master) = tr.master else { return };
                if self.tracks[master as usize].group != group {
                    return;
                }
                (
                    center,
                    "同一事件",
                    Op::Merge(Merge {
                        duplicate_id: id.clone(),
                    }),
                )
            }
        };
        let target = match &op {
            Op::Merge(_) => match self.tracks[ticket as usize].master {
                Some(m) => self.tracks[m as usize].id.clone().unwrap_or_default(),
                None => return,
            },
            _ => id,
        };
        // The reopen changes the unit that signs: after review, the new unit.
        let cmd = TicketCommand {
            ticket_id: target,
            actor: who,
            reason: reason.into(),
            op: Some(op),
        };
        self.propose(
            group,
            command::Op::Ticket(cmd),
            Purpose::Step { ticket, step },
        );
    }

    fn arrival(&mut self) {
        let Some(a) = self.arrivals.next() else {
            return;
        };
        if let Some(next) = self.arrivals.peek() {
            let at = next.at;
            self.push(at, Ev::Arrival);
        }
        let Some(group) = self.dir.owner(&a.region) else {
            return;
        };
        let number = a.number as u32;
        if !self.is_local(group) {
            return; // another shard's
        }
        let ticket = self.tracks.len() as u32;
        // The accepting node's directory decides, as in the node.
        let transfer_to_group = self.dir.transfer_to(&a.location, group).unwrap_or(0);
        // What only the accept needs moves into it: a day's tracks are
        // millions (the region and the fate stay for the later steps).
        let mut a = a;
        let req = AcceptRequest {
            region: a.region.clone(),
            kind: kind_of(&std::mem::take(&mut a.kind)) as i32,
            category: std::mem::take(&mut a.category),
            text: format!("模拟诉求 {number}"),
            phone: std::mem::take(&mut a.phone),
            priority: hotline_node::core::lifecycle::parse_priority(&std::mem::take(
                &mut a.priority,
            ))
            .unwrap_or(Priority::Normal) as i32,
            location: Some(Location {
                code: std::mem::take(&mut a.location),
                ..Default::default()
            }),
            actor: actor("话务员", Role::CallTaker),
            transfer_to_group,
            ..Default::default()
        };
        self.tracks.push(Track {
            number,
            moved: false,
            region: std::mem::take(&mut a.region).into(),
            fate: a.fate,
            incident: a.incident,
            id: None,
            group,
            redispatched: false,
            transferred: false,
            delivered: false,
            sent_back: false,
            moved_on: 0,
            answered_first_callback: false,
            master: None,
        });
        self.propose(group, command::Op::Accept(req), Purpose::Accept { ticket });
    }

    fn fault(&mut self, i: usize) {
        let f = self.cfg.faults[i].clone();
        let set = |v: &[u64]| v.iter().copied().collect::<BTreeSet<u64>>();
        match f.action {
            FaultAction::Partition { a, b, .. } => {
                self.partitions.push((set(&a), set(&b)));
                self.push(self.now + SUSPECT_AFTER_MS, Ev::WakeOrphans);
            }
            FaultAction::Heal => {
                self.partitions.clear();
                self.delays.clear();
                self.losses.clear();
                self.dup_permille = 0;
                self.last_heal = self.now;
                // Everyone is heard again: forwarders with work left retry
                // at their pace, as the nodes' do.
                self.push(self.now + SUSPECT_AFTER_MS, Ev::WakeOrphans);
            }
            FaultAction::Crash { node } => self.crash_node(node),
            FaultAction::Restart { node } => {
                if !self.nodes[&node].alive {
                    self.start_node(node);
                    self.last_heal = self.now;
                }
            }
            FaultAction::Delay { a, b, extra_ms } => self.delays.push((set(&a), set(&b), extra_ms)),
            FaultAction::Loss { a, b, permille } => self.losses.push((set(&a), set(&b), permille)),
            FaultAction::Duplicate { permille } => self.dup_permille = permille,
            FaultAction::SlowDisk { node, fsync_ms } => {
                self.nodes.get_mut(&node).expect("node").fsync_ms = if fsync_ms == 0 {
                    self.cfg.fsync_ms
                } else {
                    fsync_ms
                };
            }
            FaultAction::ClockSkew { node, skew_ms } => {
                self.nodes.get_mut(&node).expect("node").skew_ms = skew_ms;
            }
        }
    }

    /// The liveness oracle: every hibernating replica whose leader is on a
    /// node it cannot hear wakes up (as the node's per-pair heartbeats would
    /// make it do after their timeout).
    fn wake_orphans(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            if !self.nodes[&id].alive {
                continue;
            }
            // Who this node can hear, as its per-pair heartbeats would tell.
            let heard: BTreeSet<u64> = self
                .nodes
                .keys()
                .copied()
                .filter(|&n| self.reachable(id, n))
                .collect();
            let n = self.nodes.get_mut(&id).expect("node");
            let woke = hotline_node::core::liveness::wake_orphans(
                n.slots.values_mut().map(|s| &mut s.replica),
                |leader| !heard.contains(&leader),
            );
            if woke > 0 {
                self.ensure_ticking(id);
            }
        }
    }

    fn tick(&mut self, node: u64) {
        let n = self.nodes.get_mut(&node).expect("node");
        n.ticking = false;
        if !n.alive {
            return;
        }
        let mut awake = false;
        // The node's groups, in a buffer kept between ticks (a tick event
        // walks every node due at the boundary: an allocation each was
        // ≈ 0.8 % of a national day's samples).
        let mut groups = std::mem::take(&mut self.tick_groups);
        groups.clear();
        groups.extend(n.slots.keys().copied());
        for &g in &groups {
            let s = self
                .nodes
                .get_mut(&node)
                .expect("node")
                .slots
                .get_mut(&g)
                .expect("slot");
            if s.inflight {
                awake = true;
                continue;
            }
            if s.replica.is_quiesced() {
                continue;
            }
            s.replica.tick();
            awake |= !s.replica.is_quiesced() || s.replica.has_ready();
            self.dirty.insert((node, g));
        }
        self.tick_groups = groups;
        if awake {
            self.ensure_ticking(node);
        }
    }

    fn deliver(&mut self, to: u64, group: u64, msg: Message) {
        if self.trace_group == Some(group) {
            eprintln!(
                "{} ms: deliver {:?} {}->{} term {} commit {} ctx {}",
                self.now,
                msg.get_msg_type(),
                msg.from,
                msg.to,
                msg.term,
                msg.commit,
                msg.context.len()
            );
        }
        let Some(slot) = self.slot(to, group) else {
            return;
        };
        if slot.inflight {
            if slot.backlog.len() < MAX_BACKLOG {
                slot.backlog.push_back(msg);
            }
            return;
        }
        slot.replica.step(msg);
        self.dirty.insert((to, group));
        self.ensure_ticking(to);
    }

    fn sample(&mut self) {
        // Pending transfers per province pair: started and not finished.
        let mut per: BTreeMap<String, u64> = BTreeMap::new();
        for (_, link) in self.transfer_started.values() {
            *per.entry(link.clone()).or_default() += 1;
        }
        let minute = self.now / 60_000;
        let keys: BTreeSet<String> = per.keys().chain(self.backlog.keys()).cloned().collect();
        for k in keys {
            let v = per.get(&k).copied().unwrap_or(0);
            self.backlog.entry(k).or_default().push((minute, v));
        }
        if self.now + 60_000 <= self.cfg.duration_ms {
            self.push(self.now + 60_000, Ev::Sample);
        }
    }

    /// When each fault was in force: (start, end, label), simulated ms.
    fn fault_windows(&self) -> Vec<(SimMs, SimMs, String)> {
        let end = self.cfg.duration_ms;
        let mut out = Vec::new();
        let faults = &self.cfg.faults;
        for (i, f) in faults.iter().enumerate() {
            let until = |pred: &dyn Fn(&FaultAction) -> bool| {
                faults[i + 1..]
                    .iter()
                    .find(|g| pred(&g.action))
                    .map_or(end, |g| g.at)
            };
            let (stop, label) = match &f.action {
                FaultAction::Partition { label, a, b } => (
                    until(&|x| matches!(x, FaultAction::Heal)),
                    if label.is_empty() {
                        format!("partition {a:?} | {b:?}")
                    } else {
                        label.clone()
                    },
                ),
                FaultAction::Delay { extra_ms, .. } => (
                    until(&|x| matches!(x, FaultAction::Heal)),
                    format!("delay +{extra_ms} ms"),
                ),
                FaultAction::Loss { permille, .. } => (
                    until(&|x| matches!(x, FaultAction::Heal)),
                    format!("loss {permille}‰"),
                ),
                FaultAction::Crash { node } => {
                    let n = *node;
                    (
                        until(&|x| matches!(x, FaultAction::Restart { node } if *node == n)),
                        format!("crash of node {n}"),
                    )
                }
                FaultAction::SlowDisk { node, fsync_ms } if *fsync_ms > 0 => {
                    let n = *node;
                    (
                        until(
                            &|x| matches!(x, FaultAction::SlowDisk { node, fsync_ms: 0 } if *node == n),
                        ),
                        format!("slow disk on node {n} ({fsync_ms} ms)"),
                    )
                }
                _ => continue,
            };
            out.push((f.at, stop, label));
        }
        out
    }

    /// Sign and reply deadlines missed while a fault was in force.
    fn missed_deadlines<'a>(
        &self,
        now: SimMs,
        best: impl Iterator<Item = &'a Replica>,
    ) -> Vec<MissedDeadline> {
        let windows = self.fault_windows();
        if windows.is_empty() {
            return Vec::new();
        }
        let base = self.cfg.start_unix_ms;
        let end = base + now;
        let mut out = Vec::new();
        for replica in best {
            for t in replica.tickets().tickets() {
                let mut check = |deadline: &str, start: i64, due: i64, done: i64| {
                    let late = if done > 0 { done >= due } else { due <= end };
                    if due == 0 || start == 0 || !late || out.len() >= 1_000 {
                        return;
                    }
                    let (s, e) = (start - base, due - base);
                    if let Some((_, _, label)) = windows.iter().find(|(a, b, _)| *a <= e && *b >= s)
                    {
                        out.push(MissedDeadline {
                            ticket: t.id.clone(),
                            deadline: deadline.to_string(),
                            due_ms: e,
                            done_ms: (done > 0).then(|| done - base),
                            fault: label.clone(),
                        });
                    }
                };
                check("sign", t.dispatched_at_ms, t.sign_due_ms, t.signed_at_ms);
                check("reply", t.signed_at_ms, t.handle_due_ms, t.replied_at_ms);
            }
        }
        out
    }

    /// One event, and the Ready loops it touched.
    fn handle(&mut self, item: QItem) {
        self.now = item.at;
        self.events += 1;
        self.by_kind[ev_index(&item.ev)] += 1;
        match item.ev {
            Ev::Tick(at) => {
                for n in self.tick_due.remove(&at).unwrap_or_default() {
                    self.tick(n);
                }
            }
            Ev::Deliver { to, group, msg } => self.deliver(to, group, *msg),
            Ev::Persisted { node, group, life } => {
                if self.nodes[&node].life == life {
                    self.persisted(node, group);
                }
            }
            Ev::Arrival => self.arrival(),
            Ev::Step { ticket, step } => self.step(ticket, step),
            Ev::Fault(i) => self.fault(i),
            Ev::WakeOrphans => self.wake_orphans(),
            Ev::Forward(g) => self.forward(g),
            Ev::ForwardRoundEnd { group, round } => {
                if self
                    .forwarders
                    .get(&group)
                    .is_some_and(|f| f.round == Some(round))
                {
                    self.end_round(group);
                }
            }
            Ev::ForwardDeadline { group, round } => {
                if let Some(f) = self.forwarders.get_mut(&group)
                    && f.in_flight.expire(round) > 0
                {
                    self.record_ended(group, round);
                }
            }
            Ev::Notify(g) => self.notify(g),
            Ev::FwdArrive(item) => self.fwd_arrive(*item),
            Ev::FwdAck(a) => {
                let FwdAck {
                    to,
                    group,
                    transfer_id,
                    next_group,
                    receipt,
                } = *a;
                self.fwd_ack(to, group, transfer_id, next_group, receipt)
            }
            Ev::Retry(rid) => self.retry(rid),
            Ev::Sample => self.sample(),
            Ev::Adopt(adopted) => {
                let (track, step) = *adopted;
                let ticket = self.tracks.len() as u32;
                self.tracks.push(track);
                self.step(ticket, step);
            }
            Ev::Hint { group, node, term } => {
                if self.hints.get(&group).is_none_or(|&(t, _)| term >= t) {
                    self.hints.insert(group, (term, node));
                }
            }
        }
        self.drain();
    }

    fn print_progress(&self, wall: Instant, events: u64, accepted: u64, transfers: u64) {
        let secs = wall.elapsed().as_secs_f64();
        eprint!(
            "\r  simulated {:>6.2} h / {:.1} h  | {:>9.0} events/s | {:>9} tickets | {:>6} transfers   ",
            self.now as f64 / 3.6e6,
            self.cfg.duration_ms as f64 / 3.6e6,
            events as f64 / secs,
            accepted,
            transfers
        );
    }

    /// Runs to the end of the simulated duration (or the first violation).
    pub fn run(mut self) -> Report {
        let wall = Instant::now();
        if self.shards.is_some() {
            return self.run_sharded(wall);
        }
        let mut last_progress = Instant::now();
        while let Some(item) = self.queue.pop() {
            if item.at > self.cfg.duration_ms || self.events >= self.cfg.max_events {
                break;
            }
            self.handle(item);
            if self.violation.is_some() {
                break;
            }
            if self.cfg.progress && last_progress.elapsed().as_secs() >= 1 {
                last_progress = Instant::now();
                self.print_progress(wall, self.events, self.accepted, self.transfers);
            }
        }
        if self.cfg.progress {
            eprintln!();
        }
        Sim::finish(vec![self], wall.elapsed().as_millis() as u64)
    }

    /// The shards over as many threads as the machine has (at most one per
    /// shard; this thread runs the first share), then one report. The
    /// threads change how fast a run goes, never what it does.
    fn run_sharded(mut self, wall: Instant) -> Report {
        let mut all = vec![];
        let others = std::mem::take(&mut self.others);
        let progress = self.cfg.progress;
        all.push(self);
        all.extend(others);
        let count = all.len();
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, count);
        // Shard i runs on thread i mod threads.
        let mut per_thread: Vec<Vec<Sim>> = (0..threads).map(|_| Vec::new()).collect();
        for (i, shard) in all.into_iter().enumerate() {
            per_thread[i % threads].push(shard);
        }
        let mut first = per_thread.remove(0);
        let per_thread = std::thread::scope(|scope| {
            let handles: Vec<_> = per_thread
                .into_iter()
                .map(|mut mine| {
                    scope.spawn(move || {
                        Sim::run_thread(&mut mine, wall);
                        mine
                    })
                })
                .collect();
            Sim::run_thread(&mut first, wall);
            let mut done = vec![first];
            for h in handles {
                done.push(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
            }
            done
        });
        let mut shards: Vec<Option<Sim>> = (0..count).map(|_| None).collect();
        for (t, mine) in per_thread.into_iter().enumerate() {
            for (k, shard) in mine.into_iter().enumerate() {
                shards[t + k * threads] = Some(shard);
            }
        }
        if progress {
            eprintln!();
        }
        let shards = shards
            .into_iter()
            .map(|s| s.expect("every shard"))
            .collect();
        Sim::finish(shards, wall.elapsed().as_millis() as u64)
    }

    /// One thread's loop over its shards: always the earliest event that is
    /// safe among them (so they publish rising bounds together), spinning
    /// while none is.
    fn run_thread(mine: &mut [Sim], wall: Instant) {
        let shared = mine[0]
            .shards
            .as_ref()
            .expect("a sharded run")
            .shared
            .clone();
        let _leave: Vec<Leave> = mine
            .iter()
            .map(|sh| Leave(&shared, sh.shards.as_ref().expect("a sharded run").index))
            .collect();
        // Each shard stops at its share of the bound, a deterministic point.
        let max_events = mine[0].cfg.max_events / shared.bound.len() as u64;
        let mut live = vec![true; mine.len()];
        let mut last_progress = Instant::now();
        let mut spins = 0u32;
        loop {
            let mut next: Option<(SimMs, usize)> = None;
            for (k, sh) in mine.iter_mut().enumerate() {
                if !live[k] {
                    continue;
                }
                match sh.poll_due() {
                    Due::Ready(at) if sh.events < max_events => {
                        if next.is_none_or(|(best, _)| at < best) {
                            next = Some((at, k));
                        }
                    }
                    Due::Blocked => {}
                    Due::Ready(_) | Due::Over => {
                        live[k] = false;
                        let index = sh.shards.as_ref().expect("a sharded run").index;
                        shared.bound[index].store(SimMs::MAX / 2, Ordering::Release);
                    }
                }
            }
            let Some((at, k)) = next else {
                if !live.iter().any(|&l| l) {
                    return;
                }
                spins += 1;
                if spins.is_multiple_of(SPINS_PER_YIELD) {
                    std::thread::yield_now();
                } else {
                    for _ in 0..SPIN_PAUSES {
                        std::hint::spin_loop();
                    }
                }
                continue;
            };
            spins = 0;
            let sh = &mut mine[k];
            let s = sh.shards.as_mut().expect("a sharded run");
            let index = s.index;
            // Everything this event sends is due at least a lookahead later.
            s.publish(at);
            let item = sh.queue.pop().expect("the event poll_due saw");
            sh.handle(item);
            if sh.violation.is_some() {
                shared.stop.store(true, Ordering::Relaxed);
                return;
            }
            if sh.events.is_multiple_of(PROGRESS_EVERY) {
                if shared.stop.load(Ordering::Relaxed) {
                    return;
                }
                let p = &shared.progress[index];
                p[0].store(sh.events, Ordering::Relaxed);
                p[1].store(sh.accepted, Ordering::Relaxed);
                p[2].store(sh.transfers, Ordering::Relaxed);
                if index == 0 && sh.cfg.progress && last_progress.elapsed().as_secs() >= 1 {
                    last_progress = Instant::now();
                    let sum = |k: usize| -> u64 {
                        shared
                            .progress
                            .iter()
                            .map(|p| p[k].load(Ordering::Relaxed))
                            .sum()
                    };
                    sh.print_progress(wall, sum(0), sum(1), sum(2));
                }
            }
        }
    }

    /// Whether this shard's next event may be processed now (whatever
    /// another shard may still send is due later), must wait, or whether
    /// its run is over.
    fn poll_due(&mut self) -> Due {
        let end = self.cfg.duration_ms;
        let safe = self.shards.as_ref().expect("a sharded run").safe;
        if let Some(at) = self.queue.peek_at()
            && at < safe
            && at <= end
        {
            return Due::Ready(at);
        }
        let s = self.shards.as_ref().expect("a sharded run");
        // The bounds first, then the inbox: what a shard sent before it
        // published a bound is in the inbox by the time it is read.
        let others = s
            .shared
            .bound
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != s.index)
            .map(|(_, b)| b.load(Ordering::Acquire))
            .min()
            .unwrap_or(SimMs::MAX / 2);
        let stop = s.shared.stop.load(Ordering::Relaxed);
        let received: Vec<Remote> = s.inbox.try_iter().collect();
        for r in received {
            self.receive(r);
        }
        if stop {
            return Due::Over;
        }
        let safe = others.saturating_add(LOOKAHEAD_MS);
        self.shards.as_mut().expect("a sharded run").safe = safe;
        let head = self.queue.peek_at();
        match head {
            Some(at) if at <= end && at < safe => {
                if let Some(t) = self.wait_started.take() {
                    self.waited += t.elapsed();
                }
                return Due::Ready(at);
            }
            Some(_) | None if safe > end && head.is_none_or(|at| at > end) => return Due::Over,
            _ => {}
        }
        if self.wait_started.is_none() {
            self.waits += 1;
            self.wait_started = Some(Instant::now());
        }
        // Waiting: promise what this shard can (it may still receive
        // something due at `safe`), so that the others can go on.
        let bound = head.unwrap_or(SimMs::MAX / 2).min(safe);
        self.shards.as_mut().expect("a sharded run").publish(bound);
        Due::Blocked
    }

    /// Queues an item from another shard. It sorts after every local event
    /// due at the same instant, by its sender's sequence: an order that does
    /// not depend on when it was read.
    fn receive(&mut self, r: Remote) {
        assert!(
            r.at >= self.now,
            "shard {} received an item due at {} ms at {} ms: the lookahead was not kept",
            self.shards.as_ref().map_or(0, |s| s.index),
            r.at,
            self.now
        );
        let item = QItem {
            at: r.at,
            seq: ((r.from as u64 + 1) << 56) | r.seq,
            ev: r.ev,
        };
        self.queue.push(self.now, item);
    }

    /// The report of a run, from its shards (one, or several).
    fn finish(mut shards: Vec<Sim>, wall_ms: u64) -> Report {
        // Items still travelling between shards join their queues (the
        // tickets they carry are checked below like any other).
        for sh in shards.iter_mut() {
            let received: Vec<Remote> = match &sh.shards {
                Some(s) => s.inbox.try_iter().collect(),
                None => Vec::new(),
            };
            for r in received {
                sh.receive(r);
            }
        }
        let now = shards.iter().map(|s| s.now).max().unwrap_or(0);
        if shards.len() > 1 && std::env::var("HOTLINE_SIM_DEBUG").is_ok() {
            for (i, sh) in shards.iter().enumerate() {
                eprintln!(
                    "shard {i}: {} events, {} tracks, waited {} times, {:.1} s in all",
                    sh.events,
                    sh.tracks.len(),
                    sh.waits,
                    sh.waited.as_secs_f64()
                );
            }
        }
        let mut inv = Invariants {
            one_leader_per_term: true,
            committed_prefixes_agree: true,
            no_transfer_applied_twice: true,
            ..Default::default()
        };
        let violation = shards
            .iter()
            .filter(|s| s.violation.is_some())
            .min_by_key(|s| s.violation_at)
            .and_then(|s| s.violation.clone());
        if let Some(v) = &violation {
            inv.violation = Some(v.clone());
            inv.one_leader_per_term = !v.contains("two leaders");
            inv.committed_prefixes_agree = !v.contains("applied request");
            inv.no_transfer_applied_twice = !v.contains("applied twice");
        }
        // End-of-run checks, on each group's most advanced live replica:
        // group → (applied, shard, node).
        let mut best: BTreeMap<u64, (u64, usize, u64)> = BTreeMap::new();
        for (si, sh) in shards.iter().enumerate() {
            for (&nid, n) in &sh.nodes {
                if !n.alive {
                    continue;
                }
                for (&g, s) in &n.slots {
                    let a = s.replica.applied();
                    if best.get(&g).is_none_or(|(b, _, _)| a > *b) {
                        best.insert(g, (a, si, nid));
                    }
                }
            }
        }
        let replica = |g: &u64| -> &Replica {
            let (_, si, nid) = best[g];
            &shards[si].nodes[&nid].slots[g].replica
        };
        let tickets: Vec<&Ticket> = best
            .keys()
            .flat_map(|g| replica(g).tickets().tickets())
            .collect();
        // Refusals a destination issued. In a run none is expected (regions
        // never move between groups and ticket ids never clash), so a test
        // can tell a return refused by mistake from one that is slow.
        let transfers_refused = best
            .keys()
            .map(|g| {
                replica(g)
                    .tickets()
                    .transfers()
                    .filter(|r| {
                        r.state == TransferState::Refused as i32
                            && r.envelope
                                .as_ref()
                                .is_some_and(|e| e.destination_group == *g)
                    })
                    .count() as u64
            })
            .sum::<u64>();
        let mut owners: HashMap<&str, u32> = HashMap::with_capacity(tickets.len());
        let mut pending_transfers = 0u64;
        for t in &tickets {
            if t.status != Status::Transferred as i32 {
                *owners.entry(t.id.as_str()).or_default() += 1;
            } else if t.transfer_state != TransferState::Delivered as i32
                && t.transfer_state != TransferState::Refused as i32
            {
                pending_transfers += 1;
            }
        }
        // Every event chain verifies: a hash per event, millions on a
        // national day, so on as many threads as the run had.
        let threads = shards.len();
        let chunk = tickets.len().div_ceil(threads).max(1);
        let first_broken = std::thread::scope(|scope| {
            let handles: Vec<_> = tickets
                .chunks(chunk)
                .enumerate()
                .map(|(k, part)| {
                    scope.spawn(move || {
                        part.iter()
                            .position(|t| hotline_node::core::tickets::verify_ticket(t).is_err())
                            .map(|i| k * chunk + i)
                    })
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().expect("a verifying thread"))
                .min()
        });
        let chains_ok = first_broken.is_none();
        if let Some(i) = first_broken
            && inv.violation.is_none()
        {
            inv.violation = Some(format!("ticket {} does not verify", tickets[i].id));
        }
        // Every shard's tracks, and those on their way to another shard.
        let tracks = shards.iter().flat_map(|sh| {
            sh.tracks
                .iter()
                .filter(|t| !t.moved)
                .chain(sh.queue.items().filter_map(|item| match &item.ev {
                    Ev::Adopt(adopted) => Some(&adopted.0),
                    _ => None,
                }))
        });
        let mut lost = 0u64;
        for tr in tracks {
            if let Some(id) = &tr.id
                && !owners.contains_key(id.as_str())
                && (!tr.transferred || tr.delivered)
            {
                // Not owned anywhere: either lost or its transfer has not
                // settled (counted in pending_transfers).
                let stub = best
                    .keys()
                    .any(|g| replica(g).tickets().ticket(id).is_some());
                if !stub {
                    lost += 1;
                }
            }
        }
        inv.no_acked_ticket_lost = lost == 0;
        if lost > 0 && inv.violation.is_none() {
            inv.violation = Some(format!(
                "{lost} acknowledged tickets are not found in any group"
            ));
        }
        // The first by id, whatever the map's order.
        let twice = owners.iter().filter(|(_, c)| **c != 1).min();
        inv.one_owner_per_ticket = twice.is_none();
        if let Some((id, c)) = twice
            && inv.violation.is_none()
        {
            inv.violation = Some(format!("ticket {id} has {c} owners"));
        }
        // Every transfer is delivered (its receipt back at the origin)
        // within the bound after it started or after the last heal,
        // whichever is later; younger ones may still be on their way.
        let last_heal = shards.iter().map(|s| s.last_heal).max().unwrap_or(0);
        let started: BTreeMap<&String, SimMs> = shards
            .iter()
            .flat_map(|s| s.transfer_started.iter().map(|(id, (at, _))| (id, *at)))
            .collect();
        let late: Vec<&String> = started
            .iter()
            .filter(|(_, start)| (**start).max(last_heal) + DELIVERY_BOUND_MS < now)
            .map(|(id, _)| *id)
            .collect();
        inv.transfers_delivered_after_heal = late.is_empty();
        if std::env::var("HOTLINE_SIM_DEBUG").is_ok() {
            for id in late.iter().take(3) {
                for g in best.keys() {
                    if let Some(r) = replica(g).tickets().transfer(id) {
                        let e = r.envelope.clone().unwrap_or_default();
                        eprintln!(
                            "stuck {id} at group {g}: state {} next {} receipt_pending {} hops {:?} dest {}",
                            r.state, r.next_group, r.receipt_pending, e.hops, e.destination_group
                        );
                    }
                }
            }
        }
        if let Some(first) = late.first()
            && inv.violation.is_none()
        {
            inv.violation = Some(format!(
                "{} transfers undelivered more than {} s after they started or after the last heal ({} of {pending_transfers} stubs pending), e.g. {first}",
                late.len(),
                DELIVERY_BOUND_MS / 1000,
                late.len()
            ));
        }
        inv.chains_verify = chains_ok;
        // The replicated directory has every group of the topology, as
        // placed, once the faults are long over.
        let national = hotline_federation::directory::NATIONAL;
        inv.directory_replicated = true;
        if best.contains_key(&national) && last_heal + DELIVERY_BOUND_MS < now {
            let QueryAnswer::Directory(img) = replica(&national)
                .tickets()
                .query(&Query::Directory { known_version: 0 })
            else {
                unreachable!("a directory query answers with the directory")
            };
            let topo = &shards[0].cfg.topology;
            let unplaced: Vec<&str> = topo
                .groups
                .iter()
                .filter(|g| {
                    let mut want = (g.voters.clone(), g.learners.clone());
                    want.0.sort_unstable();
                    want.1.sort_unstable();
                    !img.groups.iter().any(|p| {
                        p.region == g.region && (p.voters.clone(), p.learners.clone()) == want
                    })
                })
                .map(|g| g.region.as_str())
                .collect();
            inv.directory_replicated = unplaced.is_empty();
            if let Some(first) = unplaced.first()
                && inv.violation.is_none()
            {
                inv.violation = Some(format!(
                    "{} of {} groups missing from the replicated directory, e.g. {first:?}",
                    unplaced.len(),
                    topo.groups.len()
                ));
            }
        }
        let missed = shards[0].missed_deadlines(now, best.keys().map(replica));
        // Digest: every group's history of applied commands and every
        // replica's position, in order.
        let mut d = Sha256::new();
        let history: BTreeMap<u64, [u8; 32]> = shards
            .iter()
            .flat_map(|s| s.history.iter().map(|(&g, h)| (g, *h)))
            .collect();
        for (g, h) in &history {
            d.update(g.to_be_bytes());
            d.update(h);
        }
        // (node, group, applied, tickets), in node then group order.
        let mut positions: Vec<(u64, u64, u64, u64)> = shards
            .iter()
            .flat_map(|sh| {
                sh.nodes.into_iter().flat_map(|(&nid, n)| {
                    n.slots.iter().map(move |(&g, s)| {
                        (
                            nid,
                            g,
                            s.replica.applied(),
                            s.replica.tickets().len() as u64,
                        )
                    })
                })
            })
            .collect();
        positions.sort_unstable();
        for (nid, g, applied, tickets) in positions {
            d.update(nid.to_be_bytes());
            d.update(g.to_be_bytes());
            d.update(applied.to_be_bytes());
            d.update(tickets.to_be_bytes());
        }
        let digest = hex::encode(d.finalize());
        if std::env::var("HOTLINE_SIM_DEBUG").is_ok() {
            for sh in &shards {
                for (&nid, n) in &sh.nodes {
                    for (&g, s) in &n.slots {
                        eprintln!(
                            "node {nid} group {g}: term {} applied {} quiesced {} leader {}",
                            s.replica.term(),
                            s.replica.applied(),
                            s.replica.is_quiesced(),
                            s.replica.leader_id()
                        );
                    }
                }
            }
        }
        let sum = |f: fn(&Sim) -> u64| -> u64 { shards.iter().map(f).sum() };
        let events = sum(|s| s.events);
        let secs = (wall_ms as f64 / 1000.0).max(1e-9);
        let mut commit_hist = shards[0].commit_hist.clone();
        let mut transfer_hist = shards[0].transfer_hist.clone();
        let mut notify_hist = shards[0].notify_hist.clone();
        for sh in &shards[1..] {
            commit_hist.add(&sh.commit_hist).expect("same bounds");
            transfer_hist.add(&sh.transfer_hist).expect("same bounds");
            notify_hist.add(&sh.notify_hist).expect("same bounds");
        }
        // Backlog per link and minute, summed over the shards (a shard
        // samples a link every minute from its first pending transfer on).
        let mut backlog: BTreeMap<String, BTreeMap<i64, u64>> = BTreeMap::new();
        for sh in &shards {
            for (link, samples) in &sh.backlog {
                let per = backlog.entry(link.clone()).or_default();
                for &(minute, v) in samples {
                    *per.entry(minute).or_default() += v;
                }
            }
        }
        let mut arrivals_per_hour = vec![0u64; shards[0].arrivals_per_hour.len()];
        let mut by_kind = [0u64; 14];
        for sh in &shards {
            for (a, b) in arrivals_per_hour.iter_mut().zip(&sh.arrivals_per_hour) {
                *a += b;
            }
            for (a, b) in by_kind.iter_mut().zip(sh.by_kind) {
                *a += b;
            }
        }
        let first = &shards[0];
        let cfg = &first.cfg;
        let (node_count, group_count) = (first.nodes.len() as u64, first.members.len() as u64);
        let replicas: u64 = first
            .replicas_per_group
            .values()
            .map(|&v| u64::from(v))
            .sum();
        let report = Report {
            seed: cfg.seed,
            topology: cfg.topology_label.clone(),
            nodes: node_count,
            groups: group_count,
            replicas,
            simulated_ms: now.min(cfg.duration_ms),
            wall_ms,
            events,
            events_per_sec: events as f64 / secs,
            tickets_accepted: sum(|s| s.accepted),
            commands_committed: sum(|s| s.commands_committed),
            transfers: sum(|s| s.transfers),
            cross_province_transfers: sum(|s| s.cross_province),
            send_backs: sum(|s| s.send_backs),
            moved_from_review: sum(|s| s.review_moves_done.len() as u64),
            review_moves: sum(|s| s.review_moves.len() as u64),
            review_moves_unfinished: {
                // Two hours is more than a move's own steps (30 min to
                // transfer, 30 min to dispatch) and its delivery take.
                let done: BTreeSet<u32> = shards
                    .iter()
                    .flat_map(|s| s.review_moves_done.iter().copied())
                    .collect();
                shards
                    .iter()
                    .flat_map(|s| s.review_moves.iter())
                    .filter(|&(n, &at)| !done.contains(n) && at + 2 * 3_600_000 <= now)
                    .count() as u64
            },
            transfers_refused,
            messages_sent: sum(|s| s.messages_sent),
            messages_dropped: sum(|s| s.messages_dropped),
            invariants: inv,
            commit_latency: crate::report::latency(&commit_hist),
            transfer_latency: crate::report::latency(&transfer_hist),
            notify_latency: crate::report::latency(&notify_hist),
            backlog: backlog
                .into_iter()
                .map(|(link, per)| Backlog {
                    link,
                    samples: per.into_iter().collect(),
                })
                .collect(),
            faults: cfg.faults.clone(),
            missed_deadlines: missed,
            arrivals_per_hour,
            digest,
            // A run built in code (a test) has no command line: its seed,
            // shards and length still name it, so a failure says them.
            reproduce: if cfg.reproduce.is_empty() {
                format!(
                    "seed {} on {}, {} shard(s), {} min, {} faults (a SimConfig built in code)",
                    cfg.seed,
                    cfg.topology_label,
                    cfg.shards,
                    cfg.duration_ms / 60_000,
                    cfg.faults.len()
                )
            } else {
                cfg.reproduce.clone()
            },
            events_by_kind: EV_NAMES
                .iter()
                .zip(by_kind)
                .map(|(n, c)| (n.to_string(), c))
                .collect(),
            shards: shards.len() as u64,
        };
        // Freeing a national run's replicas (millions of tickets in
        // thousands of maps) takes seconds that measure nothing: hand them
        // to another thread, which the process may end before it finishes,
        // or leave them to the process's exit.
        for sh in shards.iter_mut() {
            let nodes = std::mem::take(&mut sh.nodes);
            if sh.cfg.free_at_end {
                std::thread::spawn(move || drop(nodes));
            } else {
                std::mem::forget(nodes);
            }
        }
        report
    }
}

const EV_NAMES: [&str; 14] = [
    "tick",
    "deliver",
    "persisted",
    "arrival",
    "step",
    "fault",
    "wake_orphans",
    "forward",
    "fwd_arrive",
    "fwd_ack",
    "retry",
    "sample",
    "notify",
    "other",
];

fn ev_index(ev: &Ev) -> usize {
    match ev {
        Ev::Tick(_) => 0,
        Ev::Deliver { .. } => 1,
        Ev::Persisted { .. } => 2,
        Ev::Arrival => 3,
        Ev::Step { .. } => 4,
        Ev::Fault(_) => 5,
        Ev::WakeOrphans => 6,
        Ev::Forward(_) | Ev::ForwardRoundEnd { .. } | Ev::ForwardDeadline { .. } => 7,
        Ev::FwdArrive(_) => 8,
        Ev::FwdAck(_) => 9,
        Ev::Retry(_) => 10,
        Ev::Sample => 11,
        Ev::Notify(_) => 12,
        Ev::Adopt(_) | Ev::Hint { .. } => 13,
    }
}

/// One swarm run: the seed draws the fault schedule too (random partitions,
/// crashes, loss, delay, duplication, slow disks, clock skew), all healed
/// before the last quarter of the run so that delivery can be checked.
pub fn swarm_run(
    topo: &Topology,
    label: &str,
    seed: u64,
    duration_ms: SimMs,
    duration_text: &str,
    tickets_per_day: u64,
    shards: usize,
) -> Result<Report, String> {
    let settle = (duration_ms / 4).max(DELIVERY_BOUND_MS + 30_000);
    let faults = crate::schedule::random(topo, seed, duration_ms, settle, 6);
    let mut cfg = SimConfig::new(seed, topo.clone(), duration_ms);
    cfg.topology_label = label.to_string();
    cfg.workload = cfg.workload.scaled_to(topo, tickets_per_day);
    cfg.faults = faults;
    cfg.shards = shards;
    cfg.reproduce = format!(
        "hotline sim swarm --seeds {seed}..{seed} --topology {label} --duration {duration_text} --tickets-per-day {tickets_per_day}{}{}",
        if shards > 1 {
            format!(" --shards {shards}")
        } else {
            String::new()
        },
        if break_transfer_idempotency() {
            " --break-transfer-idempotency"
        } else {
            ""
        }
    );
    Ok(Sim::new(cfg)?.run())
}
