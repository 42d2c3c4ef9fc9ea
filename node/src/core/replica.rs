//! `Replica`: one member of one region group — raft-rs `RawNode` plus the
//! ticket state machine — as a deterministic, sans-IO value.
//!
//! Inputs: `step` (a Raft message), `tick`, `propose`, `read`.
//! Outputs, in the order a driver must honour (etcd/raft's Ready contract):
//!
//! 1. `ready()` returns `Ready`: `messages` may be sent at once (a leader
//!    sends appends before its own fsync, thesis §10.2.1); `applied` and
//!    `reads` may be answered at once (their entries are committed, so already
//!    durable on a quorum including this node); `write` must be made durable
//!    (fsync) before step 2.
//! 2. `on_persisted()` after the write is durable: returns the messages that
//!    acknowledge persisted state (votes, append responses) and any results
//!    of entries that became committed by this persist.
//!
//! State-machine mutations made in step 2 are carried in the next `write`.
//! The applied index always travels in the same write as the mutations it
//! covers, so applying is idempotent across crashes.

use std::collections::VecDeque;

use hotline_proto::v1::{Command, DirectoryImage, StateSnapshot, command};
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState,
    Entry, EntryType, HardState, Message, MessageType, Snapshot,
};
use raft::{Config, RawNode, StateRole};

use super::log::{LogStore, Truncated};
use super::tickets::{ApplyResult, FieldError, Query, QueryAnswer, SmWrites, TicketMachine, bad};

/// A compaction drops at least this many entries (or `compact_log_entries`
/// if smaller), and a follower keeps this many behind its applied index.
const COMPACT_STEP_ENTRIES: u64 = 256;
/// How many election timeouts a follower remembers the proposals it
/// forwarded (`Replica::sent_to_leader`): the node's longest deadline on a
/// proposal is 5 s, five election timeouts at the default tuning.
const SENT_TO_LEADER_KEEP_ELECTIONS: u64 = 6;
/// Bound on the batches of forwarded proposals remembered (each at most
/// `MAX_PROPOSAL_BATCH` ids); the oldest go first.
const MAX_SENT_TO_LEADER_BATCHES: usize = 1_024;
/// Bound on the leader's own proposals remembered until applied
/// (`Replica::proposed_here`): above the node's bound on proposals in
/// flight (16,384 by default); past it the oldest are forgotten, and their
/// proposers wait out their deadlines as before.
const MAX_PROPOSED_HERE: usize = 65_536;

/// Tunables of a replica. Ticks are abstract: the driver decides how long one
/// is (`tick_ms` in the node config).
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    pub node_id: u64,
    pub group_id: u64,
    pub region: String,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// Most applied entries a replica keeps for followers that lag a
    /// little (the log is compacted once it holds twice this many);
    /// followers further behind get a snapshot. See `finish_write` for the
    /// whole policy.
    pub compact_log_entries: u64,
    /// Most payload bytes a replica's log holds once applied: past it, the
    /// log is compacted to half of it. The log lives in memory (the disk
    /// keeps only what is not yet applied), and a node hosts many groups,
    /// so the entry count alone (10,000 tickets of 1 KiB ≈ 10 MiB, twice
    /// that before compacting) would let 64 busy groups hold over a GiB.
    pub compact_log_bytes: u64,
    pub max_size_per_msg_bytes: u64,
    pub max_inflight_msgs: usize,
    /// Pin the election timeout to a per-node constant instead of raft-rs's
    /// `thread_rng` draw, so a simulation replays exactly from its seed.
    pub deterministic_elections: bool,
    /// With `deterministic_elections`: this replica's timeout is
    /// `election_ticks + election_offset % election_ticks` ticks. The
    /// simulator draws it from its seed per replica (different replicas of
    /// a group should differ).
    pub election_offset: usize,
    /// Bound on reads waiting for a ReadIndex or for apply to catch up.
    pub max_pending_reads: usize,
    /// Hibernate (quiesce) after this many idle ticks with everything
    /// replicated and applied; 0 never does. See `Replica::tick`.
    pub quiesce_after_ticks: u64,
}

/// A replica's election timeout, in ticks, unless its node's tuning says
/// otherwise (the node's default tuning and the simulator use this one).
pub const ELECTION_TICKS: usize = 10;

impl ReplicaConfig {
    pub fn new(node_id: u64, group_id: u64, region: &str) -> Self {
        ReplicaConfig {
            node_id,
            group_id,
            region: region.to_string(),
            election_ticks: ELECTION_TICKS,
            heartbeat_ticks: 1,
            compact_log_entries: 10_000,
            compact_log_bytes: 4 * 1024 * 1024,
            max_size_per_msg_bytes: 1024 * 1024,
            max_inflight_msgs: 256,
            deterministic_elections: false,
            election_offset: 2 * node_id as usize,
            max_pending_reads: 65_536,
            quiesce_after_ticks: 20,
        }
    }
}

/// What a replica starts from: the durable state its driver loaded, or the
/// bootstrap of a founding member (`Recovered::bootstrap`).
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    pub hard_state: HardState,
    pub conf_state: ConfState,
    pub truncated: Truncated,
    pub entries: Vec<Entry>,
    pub applied: u64,
    pub state: StateSnapshot,
}

impl Recovered {
    /// A founding member of a group with these voters, nothing written yet.
    /// Every founding member must be given the same voters.
    pub fn bootstrap(voters: &[u64]) -> Self {
        Self::bootstrap_with(voters, &[])
    }

    /// Founding voters and learners (street offices replicate without voting).
    pub fn bootstrap_with(voters: &[u64], learners: &[u64]) -> Self {
        Recovered {
            conf_state: ConfState {
                voters: voters.to_vec(),
                learners: learners.to_vec(),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

/// A snapshot to install: replace the group's log and state wholesale.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotInstall {
    pub index: u64,
    pub term: u64,
    pub conf_state: ConfState,
    pub state: StateSnapshot,
    /// (accepted_at_ms, id) of every ticket the replaced state held: a
    /// disk that keys tickets by time before group (`storage::TICKETS`)
    /// deletes these instead of scanning all groups' tickets for the
    /// group's.
    pub replaced_tickets: Vec<(i64, String)>,
}

/// Everything the driver must make durable, atomically, before calling
/// `on_persisted`. Operations apply in field order: snapshot, entries,
/// hard/conf state, state-machine writes with the applied index, compaction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteBatch {
    pub group_id: u64,
    /// Boxed, like the other rare fields: a batch is moved several times
    /// per raft round, and inline it made every move a kilobyte.
    pub snapshot: Option<Box<SnapshotInstall>>,
    /// Entries to append; any stored entries at or after the first one's
    /// index are deleted first.
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    pub conf_state: Option<Box<ConfState>>,
    pub sm: SmWrites,
    pub applied: Option<u64>,
    /// Delete entries up to and including this index; record it as truncated.
    pub compact: Option<Truncated>,
    /// False when only the commit index changed: the fsync may be skipped.
    pub must_sync: bool,
}

impl WriteBatch {
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none()
            && self.entries.is_empty()
            && self.hard_state.is_none()
            && self.conf_state.is_none()
            && self.sm.is_empty()
            && self.applied.is_none()
            && self.compact.is_none()
    }
}

/// The outcome of a committed command, for the proposer waiting on it.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    pub request_id: u64,
    pub index: u64,
    pub result: ApplyResult,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ReadDone {
    pub read_id: u64,
    pub answer: QueryAnswer,
}

#[derive(Debug, Default)]
pub struct Ready {
    pub messages: Vec<Message>,
    pub write: WriteBatch,
    pub applied: Vec<Applied>,
    pub reads: Vec<ReadDone>,
    /// Reads that cannot be served here: answer Unavailable with the
    /// reason, the client retries (elsewhere).
    pub reads_failed: Vec<(u64, ReadFailed)>,
    /// Set when this replica's role changed in this Ready.
    pub role: Option<StateRole>,
    /// Its role or the leader it follows changed in this Ready (raft's
    /// soft state): the driver tells its peers ([`super::liveness`]).
    pub leadership_changed: bool,
    /// Request ids of proposals that will not be answered by an `Applied`
    /// here, and why: raft refused them when they were handed over (a
    /// leadership transfer under way, an election started since
    /// `propose`), or this follower forwarded them to a leader that is no
    /// longer the leader, or this replica appended them as leader and
    /// stopped leading before they committed ([`ProposeError::LeaderChanged`]).
    /// Answer NotLeader; the proposer retries with the same request id.
    pub proposals_dropped: Vec<(u64, ProposeError)>,
}

#[derive(Debug, Default)]
pub struct AfterPersist {
    pub messages: Vec<Message>,
    pub applied: Vec<Applied>,
    pub reads: Vec<ReadDone>,
}

/// Why a read was not served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadFailed {
    /// The replica's queue of pending reads is full.
    #[error("too many pending reads")]
    Overloaded,
    /// The replica took the read as leader and no longer leads: raft-rs
    /// drops a ReadIndex in flight when its leader steps down, and a leader
    /// cut off from its group's majority would hold its reads until the
    /// caller's deadline; answered now, the caller asks another node (etcd
    /// answers its pending linearizable reads "leader changed" too).
    #[error("the group's leader changed while the read waited; retry")]
    LeaderChanged,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("no leader is known for group {group_id}")]
    NoLeader { group_id: u64 },
    /// This replica follows a leader it cannot hear (node liveness): a
    /// proposal forwarded there would be lost, and its proposer would wait
    /// out its whole deadline for nothing.
    #[error("group {group_id}: its leader, node {leader_id}, cannot be reached from here; retry")]
    LeaderUnreachable { group_id: u64, leader_id: u64 },
    #[error("proposal dropped by raft: {0}")]
    Dropped(String),
    /// Forwarded to a leader that is no longer the leader, or appended by
    /// this replica as leader before it stopped leading: it may commit yet
    /// or be lost. Retry with the same request id (applied at most once).
    #[error("group {group_id}: the leader that took this proposal is no longer the leader; retry")]
    LeaderChanged { group_id: u64 },
}

/// One membership change of a group, one node at a time (so raft's simple
/// protocol applies and no joint configuration is entered).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipOp {
    /// A new node replicates the group without voting (a street office).
    AddLearner,
    /// A learner becomes a voter.
    Promote,
    /// A voter or learner leaves the group.
    Remove,
}

impl MembershipOp {
    pub fn parse(s: &str) -> Option<MembershipOp> {
        Some(match s {
            "add_learner" | "add-learner" => MembershipOp::AddLearner,
            "promote" => MembershipOp::Promote,
            "remove" => MembershipOp::Remove,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            MembershipOp::AddLearner => "add_learner",
            MembershipOp::Promote => "promote",
            MembershipOp::Remove => "remove",
        }
    }

    /// Does `cs` show this change done, and the group out of any joint
    /// configuration?
    pub fn is_done(self, node: u64, cs: &ConfState) -> bool {
        if !cs.voters_outgoing.is_empty() || !cs.learners_next.is_empty() {
            return false;
        }
        match self {
            MembershipOp::AddLearner => cs.learners.contains(&node),
            MembershipOp::Promote => cs.voters.contains(&node),
            MembershipOp::Remove => !cs.voters.contains(&node) && !cs.learners.contains(&node),
        }
    }
}

/// Why a membership change was not proposed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfChangeError {
    /// The request contradicts the group's configuration (`InvalidArgument`).
    #[error("{0}")]
    Invalid(FieldError),
    /// Only the leader proposes membership changes.
    #[error("node {node_id} does not lead group {group_id}; its leader is {}", leader_name(*.leader_id))]
    NotLeader {
        group_id: u64,
        node_id: u64,
        leader_id: u64,
    },
    /// One change at a time: an earlier one is not applied yet, or the group
    /// is still in a joint configuration. Retry shortly.
    #[error("group {group_id}: a membership change is still in progress; retry shortly")]
    InProgress { group_id: u64 },
    /// A learner is promoted only once it holds (nearly) the whole log, so
    /// that the new quorum can commit at once. Retry shortly.
    #[error(
        "group {group_id}: learner {node} has not caught up yet (matched {matched} of {committed}); retry shortly"
    )]
    NotCaughtUp {
        group_id: u64,
        node: u64,
        matched: u64,
        committed: u64,
    },
    /// The leader does not remove itself: it hands leadership to `to`
    /// (a caught-up voter); retry at the new leader.
    #[error(
        "group {group_id}: node {node} leads the group; leadership is being handed to node {to}, retry there"
    )]
    RemovesLeader { group_id: u64, node: u64, to: u64 },
    /// Removing `node` would leave `voters`, of which only `reachable` can
    /// be heard: not a majority, so the group could commit nothing, this
    /// change's undoing included.
    #[error(
        "group {group_id}: removing node {node} would leave voters {voters:?}, of which only {reachable:?} can be reached: not a majority, and the group would stop; bring the others back first, or remove anyway with --force"
    )]
    WouldLoseQuorum {
        group_id: u64,
        node: u64,
        voters: Vec<u64>,
        reachable: Vec<u64>,
    },
    #[error("conf change dropped by raft: {0}")]
    Dropped(String),
}

fn leader_name(id: u64) -> String {
    if id == raft::INVALID_ID {
        "not known".into()
    } else {
        format!("node {id}")
    }
}

/// How far (in entries) a learner may trail the leader's commit index and
/// still be promoted.
pub const PROMOTE_MAX_LAG: u64 = 64;

/// Reads waiting for one ReadIndex round.
struct ReadBatch {
    ctx: u64,
    /// Tick at which the ReadIndex was last requested (raft-rs drops it
    /// silently when no leader is known or the leader has not committed in
    /// its term yet, so it is re-requested after an election timeout).
    issued_tick: u64,
    /// The leader this replica knew when it last requested the ReadIndex
    /// (0: none; raft-rs dropped the request, and it is re-requested as
    /// soon as a leader is known).
    leader: u64,
    reads: Vec<(u64, Query)>,
}

pub struct Replica {
    cfg: ReplicaConfig,
    raw: RawNode<LogStore>,
    sm: TicketMachine,
    applied: u64,
    /// Reads not yet attached to a ReadIndex request.
    new_reads: Vec<(u64, Query)>,
    /// ReadIndex requests without an answer yet.
    reads_unconfirmed: VecDeque<ReadBatch>,
    /// Confirmed reads waiting for apply to reach their index.
    reads_confirmed: VecDeque<(u64, Vec<(u64, Query)>)>,
    next_read_ctx: u64,
    ticks: u64,
    /// Writes produced after the last Ready (apply in `on_persisted`, commit
    /// index from the light ready), carried in the next `write`.
    carry: WriteBatch,
    in_flight: Option<raft::Ready>,
    role: StateRole,
    /// Applied index last handed to the driver in a `WriteBatch`.
    applied_written: u64,
    /// Hibernating: `tick` does nothing until something wakes the group.
    quiesced: bool,
    /// This node is no longer a member of the group (it applied its own
    /// removal, or a majority of the voters it knows said so while it had
    /// no leader): it stops ticking, so it stops campaigning. Nothing else
    /// changes: it still answers what members send it (votes too), and a
    /// leader's message ends it (the node was added again).
    parked: bool,
    /// Voters that refused this replica's messages because their applied
    /// configuration does not name this node ([`Self::not_a_member`]),
    /// since it last heard a leader. At most one entry per member.
    not_member_says: Vec<u64>,
    /// Ticks since the last proposal, read or non-heartbeat message.
    idle_ticks: u64,
    /// Messages the replica itself adds to the next Ready (quiesce notices).
    extra_messages: Vec<Message>,
    /// Send reports from the driver that arrived while a Ready was in
    /// flight (it sends a Ready's messages before persisting it); applied
    /// in `on_persisted`, when raft may take input again.
    deferred_reports: Vec<SendReport>,
    /// Peers sent a snapshot whose delivery the driver has not reported.
    snapshots_out: Vec<u64>,
    /// `ticks` when a message of the current leader last arrived: how old
    /// a local (stale) read may be.
    leader_heard_tick: u64,
    /// Proposals since the last Ready, handed to raft as one `MsgPropose`:
    /// raft-rs sends an append to every follower per proposal, so a busy
    /// leader proposing one by one sends (and persists, and acknowledges)
    /// N appends where one would do.
    proposals: Vec<Entry>,
    /// The request ids of `proposals`, in the same order.
    proposal_ids: Vec<u64>,
    proposal_bytes: usize,
    /// Request ids of flushed proposals that raft refused, and why.
    proposals_dropped: Vec<(u64, ProposeError)>,
    /// Proposals this replica forwarded to its leader as a follower:
    /// (tick, leader, request ids). When the leader changes, raft-rs does
    /// not forward them again, and an old leader cut off from the group
    /// never commits them, so their proposers would wait out their
    /// deadlines; they are answered `LeaderChanged` instead. Kept
    /// [`SENT_TO_LEADER_KEEP_ELECTIONS`] election timeouts (no proposer waits
    /// longer), at most [`MAX_SENT_TO_LEADER_BATCHES`] batches.
    sent_to_leader: VecDeque<(u64, u64, Vec<u64>)>,
    /// Proposals this replica appended as leader and has not applied yet:
    /// (log index, request id), in index order. When it stops leading,
    /// those above the commit index are answered `LeaderChanged`: a leader
    /// deposed (cut off in a minority, or replaced by a higher term) commits
    /// nothing more, so their proposers would otherwise wait out their
    /// deadlines to learn it. The entry may still commit under the next
    /// leader; the proposer's retry carries the same request id, and the
    /// state machine acts on a request id once. Pruned at each flush up to
    /// the applied index; at most [`MAX_PROPOSED_HERE`].
    proposed_here: VecDeque<(u64, u64)>,
    /// Term of the last applied entry: a leader whose own term's entry is
    /// applied holds every command acknowledged anywhere in the group.
    applied_term: u64,
    /// Followers whose forwarded proposals end at this index, not yet
    /// committed (at most one per follower: the highest index). Raft does
    /// not broadcast commits (`skip_bcast_commit`), so the leader tells
    /// these followers as soon as their proposals commit — they answer
    /// their clients only once they apply.
    forwarded: Vec<(u64, u64)>,
    /// `ticks` when an append last went to each peer (a leader's): raft's
    /// heartbeat to a peer that got one within the last heartbeat interval
    /// is dropped ([`Self::skip_redundant_heartbeats`]). At most one entry
    /// per member.
    appended_at: Vec<(u64, u64)>,
}

/// Most proposals in one `MsgPropose`; more are flushed early. The byte
/// bound is the group's `max_size_per_msg_bytes`.
pub const MAX_PROPOSAL_BATCH: usize = 1_024;

/// A read served from this replica's own state, without a ReadIndex round:
/// possibly behind the leader, so it says how far it may be behind.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalRead {
    pub answer: QueryAnswer,
    pub applied_index: u64,
    /// The commit index this replica knows (the leader's may be higher).
    pub commit_index: u64,
    pub leader_id: u64,
    pub term: u64,
    /// Ticks of this replica since it last heard from the leader (0 on the
    /// leader itself). Ticks stop while the group hibernates: it went to
    /// sleep fully caught up, and any write wakes it.
    pub ticks_since_leader: u64,
    pub hibernating: bool,
}

#[derive(Clone, Copy, Debug)]
enum SendReport {
    Unreachable(u64),
    Snapshot(u64, bool),
}

/// The context of the heartbeat a leader sends when it hibernates a group.
/// The follower strips it before raft sees the message (so raft's ReadIndex
/// machinery never sees an unknown context) and hibernates too when it is
/// caught up with that leader.
pub const QUIESCE_CONTEXT: &[u8] = b"hotline-quiesce";

fn discard_logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

/// Does configuration `cs` name `node` as a voter or learner, current or
/// outgoing (a node in `learners_next` is an outgoing voter too)?
pub fn names(cs: &ConfState, node: u64) -> bool {
    cs.voters.contains(&node)
        || cs.learners.contains(&node)
        || cs.voters_outgoing.contains(&node)
        || cs.learners_next.contains(&node)
}

/// Why a replica takes a raft message from a node, or that it does not
/// ([`admission`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// The replica's applied configuration names the sender.
    Configuration,
    /// Only the replicated directory does: this replica's configuration is
    /// stale (it was down or cut off while the group changed members).
    Directory,
    /// Neither: the message is refused (a replica without a configuration
    /// yet may still take it as a seed, `Joining::may_seed`).
    Refused,
}

/// Does a replica of `group` whose applied configuration is `cs` take a
/// raft message from node `from` (its certificate names it), with `dir`
/// the newest replicated directory this node has read?
///
/// A peer may send raft messages only for groups it is a member of: a node
/// outside a group must not vote in it, lead it or feed it entries. Its
/// configuration is what a replica knows of the members, but it may be
/// stale: voters {1, 2, 3}, node 3 down while online changes replace 1
/// and 2 by 4 and 5. Node 3 comes back with {1, 2, 3} and would refuse
/// every message of the group's leader (4) forever, a voter that can never
/// catch up. So a sender the replicated directory places in the group is
/// taken too: the group's leader reported its configuration there
/// (`Federation.Place`), a majority of its voters confirmed it, and
/// national's majority keeps it. The directory may still name a node the
/// group removed, until the leader reports the removal (seconds); raft's
/// own rules (terms, log matching, votes only for a log as complete) keep
/// such a sender as harmless as a member that missed its own removal.
///
/// Only the replicated directory counts, not the topology file the node
/// routes with until it has read one: the file knows no online change, and
/// it names nobody the founding configuration does not. And only for a
/// replica with a configuration: an empty one (joining) takes only what
/// may seed it (`Joining::may_seed`), or it could grant a vote with an
/// empty log.
pub fn admission(cs: &ConfState, dir: &DirectoryImage, group: u64, from: u64) -> Admission {
    if names(cs, from) {
        Admission::Configuration
    } else if !conf_state_is_empty(cs) && super::placements::places(dir, group, from) {
        Admission::Directory
    } else {
        Admission::Refused
    }
}

impl Replica {
    pub fn new(cfg: ReplicaConfig, rec: Recovered) -> Result<Self, raft::Error> {
        let mut raft_cfg = Config {
            id: cfg.node_id,
            election_tick: cfg.election_ticks,
            heartbeat_tick: cfg.heartbeat_ticks,
            applied: rec.applied,
            max_size_per_msg: cfg.max_size_per_msg_bytes,
            max_inflight_msgs: cfg.max_inflight_msgs,
            check_quorum: true,
            pre_vote: true,
            // No empty append to every follower each time the commit index
            // moves (and no response to it): followers learn it from the
            // next append, heartbeat or quiesce notice. With a few clients
            // per group (64 district groups, 128 clients) that broadcast
            // was a third of all raft messages. The leader applies and
            // answers at commit either way; a follower's ReadIndex round
            // brings its own heartbeat, which carries the commit index;
            // only a learner's local (stale) read may trail by one
            // heartbeat more, and says so. raft-rs still broadcasts while a
            // configuration change is pending.
            skip_bcast_commit: true,
            ..Default::default()
        };
        if cfg.deterministic_elections {
            // One value per node, different across nodes: no split-vote
            // livelock, and no thread_rng (see research §1.8).
            raft_cfg.min_election_tick =
                cfg.election_ticks + cfg.election_offset % cfg.election_ticks.max(1);
            raft_cfg.max_election_tick = raft_cfg.min_election_tick + 1;
        }
        raft_cfg.validate()?;
        let mut hs = rec.hard_state.clone();
        // A commit index above the persisted log is impossible; below the
        // truncated index it is stale (a snapshot moved us past it).
        hs.commit = hs.commit.max(rec.truncated.index);
        let store = LogStore::new(hs, rec.conf_state.clone(), rec.truncated, rec.entries);
        let raw = RawNode::new(&raft_cfg, store, &discard_logger())?;
        let sm = TicketMachine::restore(&cfg.region, rec.state);
        let mut carry = WriteBatch {
            group_id: cfg.group_id,
            ..Default::default()
        };
        if rec.hard_state == HardState::default()
            && rec.applied == 0
            && rec.truncated.index == 0
            && !conf_state_is_empty(&rec.conf_state)
        {
            // Bootstrap: make the founding configuration durable first. (A
            // replica created empty, to join a group at run time, has no
            // configuration to write: it learns one from a snapshot.)
            carry.conf_state = Some(Box::new(rec.conf_state.clone()));
            carry.must_sync = true;
        }
        Ok(Replica {
            applied: rec.applied.max(rec.truncated.index),
            cfg,
            raw,
            sm,
            new_reads: Vec::new(),
            reads_unconfirmed: VecDeque::new(),
            reads_confirmed: VecDeque::new(),
            next_read_ctx: 1,
            ticks: 0,
            carry,
            in_flight: None,
            role: StateRole::Follower,
            applied_written: rec.applied,
            quiesced: false,
            parked: false,
            not_member_says: Vec::new(),
            idle_ticks: 0,
            extra_messages: Vec::new(),
            deferred_reports: Vec::new(),
            snapshots_out: Vec::new(),
            leader_heard_tick: 0,
            proposals: Vec::new(),
            proposal_ids: Vec::new(),
            proposal_bytes: 0,
            proposals_dropped: Vec::new(),
            sent_to_leader: VecDeque::new(),
            proposed_here: VecDeque::new(),
            applied_term: 0,
            forwarded: Vec::new(),
            appended_at: Vec::new(),
        })
    }

    pub fn group_id(&self) -> u64 {
        self.cfg.group_id
    }

    pub fn node_id(&self) -> u64 {
        self.cfg.node_id
    }

    pub fn config(&self) -> &ReplicaConfig {
        &self.cfg
    }

    pub fn tickets(&self) -> &TicketMachine {
        &self.sm
    }

    /// Takes another replica's equal copy of a ticket or transfer record
    /// (`TicketMachine::share_ticket`): for a driver that holds a group's
    /// replicas in one process. Changes nothing observable, so it may be
    /// called at any time.
    pub fn share_ticket(
        &mut self,
        mine: &std::sync::Arc<hotline_proto::v1::Ticket>,
        theirs: &std::sync::Arc<hotline_proto::v1::Ticket>,
    ) -> bool {
        self.sm.share_ticket(mine, theirs)
    }

    pub fn share_transfer(
        &mut self,
        mine: &std::sync::Arc<hotline_proto::v1::TransferRecord>,
        theirs: &std::sync::Arc<hotline_proto::v1::TransferRecord>,
    ) -> bool {
        self.sm.share_transfer(mine, theirs)
    }

    pub fn applied(&self) -> u64 {
        self.applied
    }

    pub fn role(&self) -> StateRole {
        self.raw.raft.state
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// Leader, with an entry of its own term committed and everything
    /// committed applied: its state machine holds every write committed
    /// before its election. A new leader is not settled until its no-op
    /// commits. (Unlike a ReadIndex read, this does not prove it is still
    /// the leader: enough for work that is at least once anyway.)
    pub fn is_settled_leader(&self) -> bool {
        let r = &self.raw.raft;
        self.is_leader() && r.commit_to_current_term() && self.applied >= r.raft_log.committed
    }

    pub fn leader_id(&self) -> u64 {
        self.raw.raft.leader_id
    }

    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    pub fn first_index(&self) -> u64 {
        self.raw.store().first()
    }

    pub fn last_index(&self) -> u64 {
        self.raw.raft.raft_log.last_index()
    }

    /// Payload bytes of the entries in the in-memory log.
    pub fn log_bytes(&self) -> u64 {
        self.raw.store().bytes()
    }

    pub fn conf_state(&self) -> &ConfState {
        self.raw.store().conf_state()
    }

    /// Is `node` a voter or learner of this group (current or outgoing)?
    pub fn is_member(&self, node: u64) -> bool {
        names(self.raw.store().conf_state(), node)
    }

    pub fn is_learner(&self) -> bool {
        self.raw
            .store()
            .conf_state()
            .learners
            .contains(&self.cfg.node_id)
    }

    fn assert_not_in_flight(&self) {
        assert!(
            self.in_flight.is_none(),
            "input to replica {} of group {} between ready() and on_persisted()",
            self.cfg.node_id,
            self.cfg.group_id
        );
    }

    /// Feeds a message from a peer. Messages from unknown peers, and local
    /// message types, are ignored: raft tolerates loss.
    pub fn step(&mut self, mut msg: Message) {
        self.assert_not_in_flight();
        if raft::raw_node::is_local_msg(msg.get_msg_type()) {
            return;
        }
        let quiesce_notice = msg.get_msg_type() == MessageType::MsgHeartbeat
            && msg.context.as_ref() == QUIESCE_CONTEXT;
        let t = msg.get_msg_type();
        let heartbeat_traffic = msg.term == self.raw.raft.term
            && (t == MessageType::MsgHeartbeatResponse
                || (t == MessageType::MsgHeartbeat && msg.from == self.raw.raft.leader_id));
        if quiesce_notice {
            msg.context.clear();
        } else if !heartbeat_traffic {
            // Anything but the heartbeat traffic of the current leader is
            // activity. (A hibernating follower that hears an awake leader's
            // heartbeats may stay asleep: appends wake it, and if the leader
            // dies the node liveness check does.)
            self.wake();
        }
        if matches!(
            t,
            MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot
        ) {
            // A leader talks to this node: it is a member (again), or
            // about to learn its removal from the log. Either way raft,
            // not the refusals heard so far, decides from here.
            self.parked = false;
            self.not_member_says.clear();
        }
        let (from, term, commit) = (msg.from, msg.term, msg.commit);
        let forwarded_proposal = t == MessageType::MsgPropose && self.is_leader();
        self.request_snapshot_if_empty(&msg);
        let msg = self.guard_lost_log(msg);
        match self.raw.step(msg) {
            // A proposal forwarded to a node that is no longer leader is
            // dropped; its proposer times out and retries.
            Ok(())
            | Err(raft::Error::StepPeerNotFound)
            | Err(raft::Error::StepLocalMsg)
            | Err(raft::Error::ProposalDropped) => {}
            Err(e) => panic!("raft step failed on group {}: {e}", self.cfg.group_id),
        }
        if from == self.raw.raft.leader_id && term == self.raw.raft.term {
            self.leader_heard_tick = self.ticks;
        }
        if forwarded_proposal && self.is_leader() {
            let last = self.raw.raft.raft_log.last_index();
            match self.forwarded.iter_mut().find(|(f, _)| *f == from) {
                Some(entry) => entry.1 = last,
                None => self.forwarded.push((from, last)),
            }
        }
        // Hibernate with the leader only when fully caught up with it.
        if quiesce_notice {
            // No answer: the leader sent the notice because every member
            // had matched its log, and it has stopped ticking, so the answer
            // would tell it nothing (no catch-up to trigger, no ReadIndex
            // round, no quorum check until it wakes, and then the appends
            // that woke it are answered). It was a quarter of the messages
            // of a group woken for one command. Raft tolerates the loss of
            // any message, so dropping this one is safe.
            self.raw.raft.msgs.retain(|m| {
                !(m.to == from && m.get_msg_type() == MessageType::MsgHeartbeatResponse)
            });
            let r = &self.raw.raft;
            // Applying what is committed needs no timer: it happens in the
            // next Ready whether or not the group hibernates.
            let caught_up = r.leader_id == from
                && r.term == term
                && r.raft_log.last_index() == commit
                && r.raft_log.committed == commit;
            if caught_up {
                self.quiesced = true;
            }
        }
        self.build_snapshot_if_wanted();
    }

    /// Is this group hibernating?
    pub fn is_quiesced(&self) -> bool {
        self.quiesced
    }

    /// Has this replica stopped because its node is no longer a member of
    /// the group (see [`Self::not_a_member`])?
    pub fn is_parked(&self) -> bool {
        self.parked
    }

    /// A replica that applied its own removal parks at its next tick: raft
    /// no longer lets it campaign, and nothing else a tick does concerns a
    /// node outside the group, so its ticks are pure cost (and a group a
    /// node left must cost it nothing, as a hibernating one does).
    /// Not a leader, though: raft-rs lets a removed leader go on leading
    /// (one elected before it applied its own removal), and only its ticks
    /// (check_quorum) make it step down once the members stop answering;
    /// parked at once, it would lead, and take proposals that never
    /// commit, forever.
    fn park_if_removed_here(&mut self) -> bool {
        if self.is_initialized() && !self.is_member(self.cfg.node_id) && !self.is_leader() {
            self.parked = true;
        }
        self.parked
    }

    /// Does this replica refuse a raft message from `from` as a
    /// non-member, with a word to its sender (`RaftEnvelope.not_a_member`,
    /// read by [`Self::not_a_member`])? Only a replica that knows a
    /// configuration can say so: an empty one (joining) knows none. Both
    /// drivers route by it; the node's raft loop asks it only of a message
    /// [`Self::admission`] refused (the simulators have no directory).
    pub fn knows_not_member(&self, from: u64) -> bool {
        self.is_initialized() && !self.is_member(from)
    }

    /// Whether this replica takes a raft message from `from`: its applied
    /// configuration names it, or else the replicated directory `dir` does
    /// ([`admission`]).
    pub fn admission(&self, from: u64, dir: &DirectoryImage) -> Admission {
        admission(self.conf_state(), dir, self.cfg.group_id, from)
    }

    /// Voter `from` refused a message of this replica because the group's
    /// configuration it has applied does not name this node (the driver
    /// got `RaftEnvelope.not_a_member` from it). A node removed while it
    /// was cut off, or that missed the commit of its own removal, never
    /// learns it from raft: no member sends to it again, so it campaigns
    /// at every election timeout, forever, and every member refuses and
    /// logs each vote request. Once a majority of the voters this replica
    /// knows have said so while it has no leader, it parks: the group has
    /// moved on without it (a majority cannot have applied a configuration
    /// without this node unless one was committed). One voter's word is
    /// not enough: it may not yet have applied this node's addition.
    /// Except where that word is all there is: in a group of two voters
    /// the other one's is the majority of the voters that can speak (this
    /// node does not refuse itself), and there parking on it costs
    /// nothing even when wrong: this node cannot be elected without the
    /// vote of a voter that refuses its messages.
    /// Parking changes no raft state, so it is always safe; a leader's
    /// message ends it. Returns whether the replica parked now.
    pub fn not_a_member(&mut self, from: u64) -> bool {
        let me = self.cfg.node_id;
        let voters = &self.conf_state().voters;
        if self.parked
            || !self.is_initialized()
            || self.raw.raft.leader_id != raft::INVALID_ID
            || from == me
            || !voters.contains(&from)
        {
            return false;
        }
        let others = voters.len() - usize::from(voters.contains(&me));
        let needed = (voters.len() / 2 + 1).min(others);
        if !self.not_member_says.contains(&from) {
            self.not_member_says.push(from);
        }
        let says = self.not_member_says.len();
        debug_assert!(says <= others, "one entry per other voter");
        if says < needed {
            return false;
        }
        self.parked = true;
        true
    }

    /// Ends hibernation: the driver calls this when it suspects the group's
    /// leader is gone (its node stopped answering), so the followers start
    /// counting towards an election again.
    pub fn wake(&mut self) {
        self.quiesced = false;
        self.idle_ticks = 0;
    }

    /// A hibernating leader that node liveness says cannot hear a majority
    /// of its voters becomes a follower, as raft's quorum check would have
    /// made it had it been ticking (`liveness::wake_orphans`). Stepping down
    /// is always safe; the group elects whoever can reach a majority.
    /// Returns false, changing nothing, while a Ready is in flight (the
    /// driver's next liveness scan asks again).
    pub fn step_down(&mut self) -> bool {
        assert!(
            self.quiesced && self.is_leader(),
            "only a hibernating leader"
        );
        if self.in_flight.is_some() {
            return false;
        }
        self.wake();
        let term = self.raw.raft.term;
        self.raw.raft.become_follower(term, raft::INVALID_ID);
        // It knew the group's state as leader until now.
        self.leader_heard_tick = self.ticks;
        true
    }

    /// A leader may hibernate its group when nothing happened for a while
    /// and every member holds and has applied everything: then nobody needs
    /// heartbeats, and a follower that wakes up (a message, a suspected
    /// leader failure) simply resumes the election timer.
    fn can_quiesce(&self) -> bool {
        let r = &self.raw.raft;
        let last = r.raft_log.last_index();
        self.cfg.quiesce_after_ticks > 0
            && self.idle_ticks >= self.cfg.quiesce_after_ticks
            && r.state == StateRole::Leader
            && r.raft_log.committed == last
            && self.applied == last
            && self.pending_reads() == 0
            && self.carry.is_empty()
            && r.lead_transferee.is_none()
            && !r.has_pending_conf()
            && r.prs().iter().all(|(_, pr)| pr.matched == last)
    }

    fn quiesce(&mut self) {
        let r = &self.raw.raft;
        let (me, term, commit) = (r.id, r.term, r.raft_log.committed);
        let peers: Vec<u64> = r
            .prs()
            .iter()
            .map(|(id, _)| *id)
            .filter(|&id| id != me)
            .collect();
        for to in peers {
            let mut m = Message::default();
            m.set_msg_type(MessageType::MsgHeartbeat);
            m.to = to;
            m.from = me;
            m.term = term;
            m.commit = commit;
            m.context = QUIESCE_CONTEXT.to_vec().into();
            self.extra_messages.push(m);
        }
        self.quiesced = true;
    }

    /// A replica whose data directory was wiped comes back with an empty
    /// log, while the leader remembers it as matched up to some index. Plain
    /// raft-rs panics on the follower (a heartbeat commits past its last
    /// index) and stalls on the leader (the follower's reject looks stale).
    /// So: the follower clamps a heartbeat's commit to what it holds (commit
    /// is only a lower bound, clamping it is safe), and the leader, seeing a
    /// reject whose hint is below the peer's matched index, believes it and
    /// probes from the hint, which leads to a snapshot once the log is
    /// compacted. What this cannot restore is the lost copy itself; see
    /// ARCHITECTURE.md, "wiped replicas".
    fn guard_lost_log(&mut self, mut msg: Message) -> Message {
        match msg.get_msg_type() {
            MessageType::MsgHeartbeat => {
                let last = self.raw.raft.raft_log.last_index();
                if msg.commit > last {
                    msg.commit = last;
                }
            }
            MessageType::MsgAppendResponse if msg.reject && self.is_leader() => {
                let from = msg.from;
                let hint = msg.reject_hint;
                if let Some(pr) = self.raw.raft.mut_prs().get_mut(from)
                    && hint < pr.matched
                {
                    pr.matched = hint;
                    pr.become_probe();
                }
            }
            _ => {}
        }
        msg
    }

    /// Advances the group's clock by one tick. A hibernating group does
    /// nothing at all: most of a province's county groups are quiet most of
    /// the time, and they must cost nothing (no heartbeats, no timers).
    /// Whether `tick` would do anything: a hibernating group needs no
    /// ticks, unless it is stuck in a joint configuration (the leader must
    /// leave it). Drivers skip the rest, so idle groups cost nothing.
    pub fn wants_tick(&self) -> bool {
        !self.parked && (!self.quiesced || !self.conf_state().voters_outgoing.is_empty())
    }

    pub fn tick(&mut self) {
        self.assert_not_in_flight();
        if self.parked || self.park_if_removed_here() {
            return;
        }
        self.leave_joint_if_stuck();
        if self.quiesced {
            return;
        }
        self.ticks += 1;
        self.idle_ticks += 1;
        // A leader that may hibernate does so instead of ticking raft: its
        // quiesce notice is this tick's heartbeat (raft's own would be a
        // second heartbeat to every follower, and a second response).
        if self.can_quiesce() {
            self.quiesce();
            return;
        }
        self.raw.tick();
        self.retry_stale_reads();
        self.expire_sent_to_leader();
        self.build_snapshot_if_wanted();
        if self.can_quiesce() {
            self.quiesce();
        }
    }

    /// Proposes a command. `Ok` means accepted for the next Ready, not
    /// committed: the outcome arrives as an `Applied` with the same
    /// `request_id`, or as a `Ready::proposals_dropped` entry (raft refused
    /// the batch, or the leader that took it stopped leading before it
    /// committed), or never (a leader remembers at most `MAX_PROPOSED_HERE`
    /// of its own, a follower what it forwarded for a few election
    /// timeouts; the proposer times out). On a follower raft forwards the
    /// proposal to the leader.
    pub fn propose(&mut self, cmd: &Command) -> Result<(), ProposeError> {
        self.assert_not_in_flight();
        self.wake();
        if self.raw.raft.leader_id == raft::INVALID_ID {
            return Err(ProposeError::NoLeader {
                group_id: self.cfg.group_id,
            });
        }
        let data = encode_command(cmd);
        self.proposal_bytes += data.len();
        self.proposals.push(Entry {
            data: data.into(),
            ..Default::default()
        });
        self.proposal_ids.push(cmd.request_id);
        if self.proposals.len() >= MAX_PROPOSAL_BATCH
            || self.proposal_bytes as u64 >= self.cfg.max_size_per_msg_bytes
        {
            self.flush_proposals();
        }
        Ok(())
    }

    /// Refuses to take a proposal that raft would forward to a leader on a
    /// node that `unreachable` says cannot be heard: the driver's node
    /// liveness (the node), or its network model (the simulator). Raft
    /// would send the proposal there and lose it, and its proposer — a
    /// client, or a transfer's hand-on from another group — would wait out
    /// its deadline before trying elsewhere; refused, it tries elsewhere at
    /// once (the forwarder asks the next member, or hands the envelope to a
    /// nearer group on the route). Refusing is always safe; a wrong
    /// suspicion costs one retry.
    pub fn check_leader_reachable(
        &self,
        unreachable: impl Fn(u64) -> bool,
    ) -> Result<(), ProposeError> {
        let leader_id = self.raw.raft.leader_id;
        if leader_id != raft::INVALID_ID && leader_id != self.cfg.node_id && unreachable(leader_id)
        {
            return Err(ProposeError::LeaderUnreachable {
                group_id: self.cfg.group_id,
                leader_id,
            });
        }
        Ok(())
    }

    /// Checks a command before it is proposed, so that what the state
    /// machine would refuse never costs a log entry. Only a leader that has
    /// applied an entry of its own term surely holds every command
    /// acknowledged in the group (followers learn the commit index later; a
    /// new leader, once it commits in its term): elsewhere a command valid
    /// on the group's state could be refused on a trailing one, so only what
    /// does not depend on the state is checked. Apply checks everything.
    pub fn precheck(&self, cmd: &Command) -> Result<(), super::lifecycle::CommandError> {
        if self.is_leader() && self.applied_term == self.raw.raft.term {
            self.sm.check(cmd)
        } else {
            self.sm.validate(cmd)
        }
    }

    /// Hands the buffered proposals to raft as one message (what
    /// `RawNode::propose` does for one entry).
    fn flush_proposals(&mut self) {
        if self.proposals.is_empty() {
            return;
        }
        debug_assert_eq!(self.proposals.len(), self.proposal_ids.len());
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgPropose);
        m.from = self.raw.raft.id;
        m.entries = std::mem::take(&mut self.proposals).into();
        self.proposal_bytes = 0;
        match self.raw.raft.step(m) {
            Ok(()) if !self.is_leader() => {
                if self.sent_to_leader.len() >= MAX_SENT_TO_LEADER_BATCHES {
                    self.sent_to_leader.pop_front();
                }
                let ids = std::mem::take(&mut self.proposal_ids);
                self.sent_to_leader
                    .push_back((self.ticks, self.raw.raft.leader_id, ids));
            }
            Ok(()) => self.note_proposed_here(),
            Err(raft::Error::ProposalDropped) => {
                let why = ProposeError::NoLeader {
                    group_id: self.cfg.group_id,
                };
                self.proposals_dropped
                    .extend(self.proposal_ids.drain(..).map(|id| (id, why.clone())));
            }
            Err(e) => panic!(
                "raft refused a proposal on group {}: {e}",
                self.cfg.group_id
            ),
        }
    }

    /// Remembers the batch this leader just appended (the last
    /// `proposal_ids.len()` entries of its log) and forgets what it has
    /// applied since the last flush.
    fn note_proposed_here(&mut self) {
        let applied = self.applied;
        while self
            .proposed_here
            .front()
            .is_some_and(|&(i, _)| i <= applied)
        {
            self.proposed_here.pop_front();
        }
        let last = self.raw.raft.raft_log.last_index();
        let first = last + 1 - self.proposal_ids.len() as u64;
        debug_assert!(self.proposed_here.back().is_none_or(|&(i, _)| i < first));
        let ids = self.proposal_ids.drain(..);
        self.proposed_here.extend((first..=last).zip(ids));
        let over = self.proposed_here.len().saturating_sub(MAX_PROPOSED_HERE);
        self.proposed_here.drain(..over);
    }

    /// Asks for a linearizable read. Reads arriving between two Readies share
    /// one ReadIndex round.
    /// Serves a query from this replica's state at once: no ReadIndex
    /// round, no wake-up, so a learner at a street office answers while
    /// cut off from the leader. The answer carries how stale it may be.
    pub fn read_local(&self, query: &Query) -> LocalRead {
        let r = &self.raw.raft;
        let ticks_since_leader = if r.state == StateRole::Leader {
            0
        } else {
            self.ticks - self.leader_heard_tick
        };
        LocalRead {
            answer: self.sm.query(query),
            applied_index: self.applied,
            commit_index: r.raft_log.committed,
            leader_id: r.leader_id,
            term: r.term,
            ticks_since_leader,
            hibernating: self.quiesced,
        }
    }

    pub fn read(&mut self, read_id: u64, query: Query) {
        self.assert_not_in_flight();
        self.wake();
        self.new_reads.push((read_id, query));
    }

    /// Reads taken and not yet answered (served or failed).
    pub fn pending_reads(&self) -> usize {
        self.new_reads.len()
            + self
                .reads_unconfirmed
                .iter()
                .map(|b| b.reads.len())
                .sum::<usize>()
            + self
                .reads_confirmed
                .iter()
                .map(|(_, r)| r.len())
                .sum::<usize>()
    }

    fn issue_reads(&mut self) -> Vec<(u64, ReadFailed)> {
        if self.new_reads.is_empty() {
            return Vec::new();
        }
        let mut failed = Vec::new();
        let waiting = self.pending_reads() - self.new_reads.len();
        if waiting + self.new_reads.len() > self.cfg.max_pending_reads {
            let room = self.cfg.max_pending_reads.saturating_sub(waiting);
            failed.extend(
                self.new_reads
                    .drain(room.min(self.new_reads.len())..)
                    .map(|(id, _)| (id, ReadFailed::Overloaded)),
            );
            if self.new_reads.is_empty() {
                return failed;
            }
        }
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        self.raw.read_index(ctx.to_be_bytes().to_vec());
        self.reads_unconfirmed.push_back(ReadBatch {
            ctx,
            issued_tick: self.ticks,
            leader: self.raw.raft.leader_id,
            reads: std::mem::take(&mut self.new_reads),
        });
        failed
    }

    /// The leader changed (raft's soft state moved), so raft-rs dropped the
    /// ReadIndex requests in flight. Reads this replica took as leader fail
    /// ([`ReadFailed::LeaderChanged`]): it no longer leads, most likely cut
    /// off in a minority, and the caller does better asking another node
    /// than waiting out its deadline here. A follower's reads wait for the
    /// new leader instead, asked at the next tick once one is known
    /// ([`Self::retry_stale_reads`]; not here, between raft's Ready and its
    /// advance, where a follower may not add messages): the follower is
    /// likely on the majority's side, and its caller (a federated query,
    /// within its deadline) would rather have the answer.
    fn reads_after_leader_change(&mut self, failed: &mut Vec<(u64, ReadFailed)>) {
        let (now, me) = (self.raw.raft.leader_id, self.cfg.node_id);
        let mut i = 0;
        while i < self.reads_unconfirmed.len() {
            let b = &mut self.reads_unconfirmed[i];
            if b.leader != me || now == me {
                if b.leader != now {
                    b.leader = raft::INVALID_ID;
                }
                i += 1;
                continue;
            }
            let b = self.reads_unconfirmed.remove(i).expect("index is valid");
            failed.extend(
                b.reads
                    .into_iter()
                    .map(|(id, _)| (id, ReadFailed::LeaderChanged)),
            );
        }
    }

    /// The leader changed: proposals forwarded to another leader than
    /// today's are answered [`ProposeError::LeaderChanged`] (raft-rs does
    /// not send them again, and a cut-off old leader never commits them).
    fn sent_to_leader_after_change(&mut self, dropped: &mut Vec<(u64, ProposeError)>) {
        let now = self.raw.raft.leader_id;
        let group_id = self.cfg.group_id;
        self.sent_to_leader.retain_mut(|(_, leader, ids)| {
            if *leader == now {
                return true;
            }
            let why = ProposeError::LeaderChanged { group_id };
            dropped.extend(ids.drain(..).map(|id| (id, why.clone())));
            false
        });
    }

    /// This replica stopped leading: its own proposals not yet committed
    /// are answered [`ProposeError::LeaderChanged`] (see `proposed_here`);
    /// those committed will be applied, and answered then.
    fn proposed_here_after_change(&mut self, dropped: &mut Vec<(u64, ProposeError)>) {
        if self.raw.raft.leader_id == self.cfg.node_id || self.proposed_here.is_empty() {
            return;
        }
        let committed = self.raw.raft.raft_log.committed;
        let why = ProposeError::LeaderChanged {
            group_id: self.cfg.group_id,
        };
        dropped.extend(
            self.proposed_here
                .drain(..)
                .filter(|&(i, _)| i > committed)
                .map(|(_, id)| (id, why.clone())),
        );
    }

    /// Forgets forwarded proposals older than any proposer waits.
    fn expire_sent_to_leader(&mut self) {
        let keep = SENT_TO_LEADER_KEEP_ELECTIONS * self.cfg.election_ticks as u64;
        while self
            .sent_to_leader
            .front()
            .is_some_and(|(tick, _, _)| tick + keep < self.ticks)
        {
            self.sent_to_leader.pop_front();
        }
    }

    /// Requests again the reads raft-rs may have dropped: those requested
    /// an election timeout ago, and at once those requested while no
    /// leader was known, once one is.
    fn retry_stale_reads(&mut self) {
        let timeout = self.cfg.election_ticks as u64;
        let leader = self.raw.raft.leader_id;
        for b in self.reads_unconfirmed.iter_mut() {
            if self.ticks >= b.issued_tick + timeout
                || (b.leader == raft::INVALID_ID && leader != raft::INVALID_ID)
            {
                b.issued_tick = self.ticks;
                b.leader = leader;
                self.raw.read_index(b.ctx.to_be_bytes().to_vec());
            }
        }
    }

    fn confirm_reads(&mut self, states: Vec<raft::ReadState>) {
        for rs in states {
            let Ok(ctx) = <[u8; 8]>::try_from(rs.request_ctx.as_slice()) else {
                continue;
            };
            let ctx = u64::from_be_bytes(ctx);
            if let Some(pos) = self.reads_unconfirmed.iter().position(|b| b.ctx == ctx) {
                let b = self
                    .reads_unconfirmed
                    .remove(pos)
                    .expect("position is valid");
                self.reads_confirmed.push_back((rs.index, b.reads));
            }
        }
    }

    fn serve_reads(&mut self) -> Vec<ReadDone> {
        let mut out = Vec::new();
        // Confirmed batches are served as soon as apply covers their index;
        // indexes are not necessarily increasing across retried batches.
        let mut i = 0;
        while i < self.reads_confirmed.len() {
            if self.reads_confirmed[i].0 <= self.applied {
                let (_, reads) = self.reads_confirmed.remove(i).expect("index is valid");
                for (read_id, q) in reads {
                    out.push(ReadDone {
                        read_id,
                        answer: self.sm.query(&q),
                    });
                }
            } else {
                i += 1;
            }
        }
        out
    }

    /// Is a commit notice due to a follower that forwarded proposals?
    fn notice_due(&self) -> bool {
        let r = &self.raw.raft;
        self.forwarded
            .iter()
            .any(|&(f, idx)| r.prs().get(f).is_some_and(|pr| notice_ready(r, pr, idx)))
    }

    /// Heartbeats carrying the commit index to followers whose forwarded
    /// proposals are now committed (what raft's commit broadcast would
    /// have told them). As in raft's heartbeat the commit index is capped
    /// at what the follower is known to hold, which also means it cannot
    /// commit entries of its log that the leader has not confirmed.
    fn take_commit_notices(&mut self) -> Vec<Message> {
        if !self.is_leader() {
            self.forwarded.clear();
            return Vec::new();
        }
        let r = &self.raw.raft;
        let (me, term, committed) = (r.id, r.term, r.raft_log.committed);
        let mut out = Vec::new();
        self.forwarded.retain(|&(f, idx)| {
            let Some(pr) = r.prs().get(f) else {
                return false;
            };
            if !notice_ready(r, pr, idx) {
                return true;
            }
            let mut m = Message::default();
            m.set_msg_type(MessageType::MsgHeartbeat);
            m.to = f;
            m.from = me;
            m.term = term;
            m.commit = committed.min(pr.matched);
            out.push(m);
            false
        });
        out
    }

    /// Is there anything for `ready()` to return?
    pub fn has_ready(&self) -> bool {
        self.in_flight.is_none()
            && (self.raw.has_ready()
                || self.notice_due()
                || !self.proposals.is_empty()
                || !self.proposals_dropped.is_empty()
                || !self.extra_messages.is_empty()
                || !self.carry.is_empty()
                || !self.new_reads.is_empty()
                || self
                    .reads_confirmed
                    .front()
                    .is_some_and(|(i, _)| *i <= self.applied))
    }

    pub fn ready(&mut self) -> Ready {
        self.assert_not_in_flight();
        self.flush_proposals();
        let mut out = Ready {
            reads_failed: self.issue_reads(),
            proposals_dropped: std::mem::take(&mut self.proposals_dropped),
            ..Default::default()
        };
        let mut write = std::mem::replace(
            &mut self.carry,
            WriteBatch {
                group_id: self.cfg.group_id,
                ..Default::default()
            },
        );
        if !self.raw.has_ready() {
            out.messages = std::mem::take(&mut self.extra_messages);
            out.messages.append(&mut self.take_commit_notices());
            out.reads = self.serve_reads();
            self.finish_write(&mut write);
            out.write = write;
            // Nothing for raft: no on_persisted needed, but keep the
            // protocol uniform for the driver.
            self.in_flight = None;
            return out;
        }
        let mut rd = self.raw.ready();
        if let Some(ss) = rd.ss() {
            out.leadership_changed = true;
            if ss.raft_state != self.role {
                self.role = ss.raft_state;
                out.role = Some(ss.raft_state);
            }
            self.reads_after_leader_change(&mut out.reads_failed);
            self.sent_to_leader_after_change(&mut out.proposals_dropped);
            self.proposed_here_after_change(&mut out.proposals_dropped);
        }
        // Raft's own messages first: a quiesce notice goes after the
        // heartbeat of the same tick.
        out.messages = rd.take_messages();
        self.skip_redundant_heartbeats(&mut out.messages);
        out.messages.append(&mut self.extra_messages);
        out.messages.append(&mut self.take_commit_notices());
        self.note_snapshots_sent(&out.messages);
        self.confirm_reads(rd.take_read_states());
        if !rd.snapshot().is_empty() {
            self.install_snapshot(rd.snapshot().clone(), &mut write);
        }
        out.applied = self.apply_entries(rd.take_committed_entries(), &mut write);
        if !rd.entries().is_empty() {
            self.raw.mut_store().append(rd.entries());
            write.entries = rd.take_entries();
            write.must_sync = true;
        }
        if let Some(hs) = rd.hs() {
            self.raw.mut_store().set_hard_state(hs.clone());
            write.hard_state = Some(hs.clone());
        }
        write.must_sync |= rd.must_sync();
        out.reads = self.serve_reads();
        self.finish_write(&mut write);
        out.write = write;
        self.in_flight = Some(rd);
        out
    }

    /// To be called once `Ready::write` is durable.
    pub fn on_persisted(&mut self) -> AfterPersist {
        let mut out = AfterPersist::default();
        let Some(mut rd) = self.in_flight.take() else {
            return out;
        };
        out.messages = rd.take_persisted_messages();
        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit);
            let mut hs = self.raw.store().hard_state().clone();
            hs.commit = commit;
            self.carry.hard_state = Some(hs);
        }
        out.messages.extend(light.take_messages());
        self.note_appends(&out.messages);
        let mut carry = std::mem::take(&mut self.carry);
        out.applied = self.apply_entries(light.take_committed_entries(), &mut carry);
        self.carry = carry;
        self.carry.group_id = self.cfg.group_id;
        self.raw.advance_apply_to(self.applied);
        self.apply_send_reports();
        // Snapshots in these messages are reported by the driver as it
        // sends them, or taken as delivered at the next `on_persisted`.
        self.note_snapshots_sent(&out.messages);
        out.reads = self.serve_reads();
        out
    }

    fn apply_entries(&mut self, entries: Vec<Entry>, write: &mut WriteBatch) -> Vec<Applied> {
        let mut out = Vec::new();
        for e in entries {
            if e.index <= self.applied {
                // Already applied before a restart (Config.applied covers
                // this; the check keeps apply idempotent regardless).
                continue;
            }
            assert_eq!(
                e.index,
                self.applied + 1,
                "group {} applies out of order",
                self.cfg.group_id
            );
            self.applied = e.index;
            self.applied_term = e.term;
            match e.get_entry_type() {
                EntryType::EntryNormal => {
                    if e.data.is_empty() {
                        continue; // the leader's no-op of a new term
                    }
                    let cmd = match decode_command(&e.data[..]) {
                        Ok(c) => c,
                        Err(err) => panic!(
                            "group {} entry {} is not a Command: {err}",
                            self.cfg.group_id, e.index
                        ),
                    };
                    let result = self.sm.apply(e.index, &cmd);
                    out.push(Applied {
                        request_id: cmd.request_id,
                        index: e.index,
                        result,
                    });
                }
                EntryType::EntryConfChange => {
                    let mut cc = ConfChange::default();
                    cc.merge_from_bytes(&e.data).expect("conf change decodes");
                    let cs = self
                        .raw
                        .apply_conf_change(&cc)
                        .expect("conf change applies");
                    self.conf_changed(cs, write);
                }
                EntryType::EntryConfChangeV2 => {
                    // The auto-leave entry of joint consensus has empty data.
                    let mut cc = ConfChangeV2::default();
                    cc.merge_from_bytes(&e.data).expect("conf change decodes");
                    let cs = self
                        .raw
                        .apply_conf_change(&cc)
                        .expect("conf change applies");
                    self.conf_changed(cs, write);
                }
            }
        }
        out
    }

    /// The storage keys of every row this replica holds in the tables
    /// keyed by time: what a purge deletes.
    pub fn time_keys(&self) -> super::tickets::TimeKeys {
        self.sm.time_keys()
    }

    fn install_snapshot(&mut self, snap: Snapshot, write: &mut WriteBatch) {
        let meta = snap.get_metadata();
        let state = StateSnapshot::decode(snap.get_data()).expect("snapshot data decodes");
        assert_eq!(
            state.group_id, self.cfg.group_id,
            "snapshot of another group"
        );
        self.raw.mut_store().install_snapshot(meta);
        let replaced_tickets = self.sm.ticket_keys();
        self.sm = TicketMachine::restore(&self.cfg.region, state.clone());
        self.applied = meta.index;
        self.applied_term = meta.term;
        // Earlier carried writes are superseded by the snapshot.
        *write = WriteBatch {
            group_id: self.cfg.group_id,
            snapshot: Some(Box::new(SnapshotInstall {
                index: meta.index,
                term: meta.term,
                conf_state: meta.get_conf_state().clone(),
                state,
                replaced_tickets,
            })),
            must_sync: true,
            ..Default::default()
        };
        self.raw.mut_store().set_snapshot(snap);
    }

    /// Moves state-machine writes and the applied index into the batch, and
    /// compacts the log when it has grown past its bound.
    fn finish_write(&mut self, write: &mut WriteBatch) {
        // Taken only when there is something: `SmWrites` is a few hundred
        // bytes, and most Readies (raft messages, heartbeats) apply nothing.
        if self.sm.has_writes() || self.applied > self.applied_written {
            write.sm.append(self.sm.take_writes());
            write.applied = Some(self.applied);
        }
        let to = self.compact_to();
        if to > self.raw.store().truncated().index {
            self.raw.mut_store().compact(to);
            write.compact = Some(self.raw.store().truncated());
            // No snapshot is built here: serializing the whole state is
            // paid only when a follower actually needs one.
        }
        if let Some(a) = write.applied {
            self.applied_written = a;
        }
    }

    /// Where to compact the log to now (the truncated index: nothing).
    ///
    /// The policy (after TiKV's raft log GC): entries every member already
    /// holds serve nobody, so a leader drops them as soon as a step's worth
    /// can go; a follower, which does not know what the others hold, keeps a
    /// short window behind its applied index for the case it becomes leader.
    /// Whatever the role, a member that stopped answering may not pin the
    /// log beyond `compact_log_entries` applied entries or
    /// `compact_log_bytes`: it gets a snapshot instead. Compaction never
    /// passes the applied index (the state machine is the only other copy).
    /// `compact_log_entries == 0` turns compaction off.
    fn compact_to(&self) -> u64 {
        let keep = self.cfg.compact_log_entries;
        let store = self.raw.store();
        let truncated = store.truncated().index;
        if keep == 0 || self.applied <= truncated {
            return truncated;
        }
        // Dropping fewer entries than this is not worth a compaction (it
        // moves the rest of the log and writes a record).
        let step = keep.min(COMPACT_STEP_ENTRIES);
        let mut to = truncated;
        if self.is_leader() {
            let everyone = self.raw.raft.prs().iter().map(|(_, pr)| pr.matched).min();
            let held_by_all = everyone.unwrap_or(0).min(self.applied);
            if held_by_all >= truncated + step {
                to = held_by_all;
            }
        } else if self.applied >= truncated + 2 * step {
            to = self.applied - step;
        }
        if self.applied > truncated + 2 * keep {
            to = to.max(self.applied - keep);
        }
        if store.bytes() > self.cfg.compact_log_bytes {
            to = to.max(store.index_to_fit(self.cfg.compact_log_bytes / 2, self.applied));
        }
        debug_assert!(to <= self.applied);
        to
    }

    fn build_snapshot_if_wanted(&mut self) {
        if self.raw.store().snapshot_wanted() {
            self.build_snapshot();
        }
    }

    fn build_snapshot(&mut self) {
        let store = self.raw.store();
        let term = store
            .term_of(self.applied)
            .expect("term of the applied index is in the log");
        let mut snap = Snapshot::default();
        snap.set_data(self.sm.snapshot_bytes(self.cfg.group_id).into());
        let meta = snap.mut_metadata();
        meta.index = self.applied;
        meta.term = term;
        meta.set_conf_state(store.conf_state().clone());
        self.raw.mut_store().set_snapshot(snap);
    }

    /// Raft message sent to a peer that could not be reached.
    /// The driver sends a Ready's messages before it persists the Ready, so
    /// this may arrive between `ready()` and `on_persisted()`: it is then
    /// kept and applied in `on_persisted()`.
    pub fn report_unreachable(&mut self, peer: u64) {
        if self.in_flight.is_some() {
            self.deferred_reports.push(SendReport::Unreachable(peer));
            return;
        }
        self.raw.report_unreachable(peer);
    }

    /// Whether a snapshot the replica emitted was handed to the transport.
    /// Like `report_unreachable`, may arrive while a Ready is in flight. A
    /// snapshot the driver does not report is taken as delivered at the
    /// next `on_persisted()`: raft-rs keeps a follower paused until it hears
    /// either way, and a lost one is simply asked for again.
    pub fn report_snapshot(&mut self, peer: u64, delivered: bool) {
        self.snapshots_out.retain(|&p| p != peer);
        if self.in_flight.is_some() {
            self.deferred_reports
                .push(SendReport::Snapshot(peer, delivered));
            return;
        }
        self.apply_snapshot_report(peer, delivered);
    }

    fn apply_snapshot_report(&mut self, peer: u64, delivered: bool) {
        let status = if delivered {
            raft::SnapshotStatus::Finish
        } else {
            raft::SnapshotStatus::Failure
        };
        self.raw.report_snapshot(peer, status);
    }

    /// After a Ready is persisted: the driver's deferred send reports, then
    /// "delivered" for the snapshots it did not report.
    fn apply_send_reports(&mut self) {
        for r in std::mem::take(&mut self.deferred_reports) {
            match r {
                SendReport::Unreachable(peer) => self.raw.report_unreachable(peer),
                SendReport::Snapshot(peer, ok) => self.apply_snapshot_report(peer, ok),
            }
        }
        for peer in std::mem::take(&mut self.snapshots_out) {
            self.apply_snapshot_report(peer, true);
        }
    }

    /// Drops raft's own heartbeats (empty context: not a ReadIndex round)
    /// to peers that got an append within the last heartbeat interval, or
    /// get one in this batch. Appends carry everything a heartbeat does —
    /// term, commit, and for the follower proof of a live leader (they
    /// reset its election timer) — and their answers keep the peer active
    /// for the leader's quorum check. So a busy group sends no heartbeats:
    /// on a node hosting 64 busy groups they were one raft message in
    /// seven, each with its answer (BENCHMARKS.md). A peer that got no
    /// append for a whole interval (the group idle, the peer paused or
    /// behind) gets its heartbeat as before, so it hears from the leader at
    /// least every two intervals, far inside the election timeout, and
    /// learns the last commit index one interval later at most. Dropping a
    /// message is always safe in raft; this only chooses which.
    fn skip_redundant_heartbeats(&mut self, msgs: &mut Vec<Message>) {
        self.note_appends(msgs);
        if self.appended_at.is_empty() {
            return;
        }
        let (ticks, interval) = (self.ticks, self.cfg.heartbeat_ticks as u64);
        let appended_at = &self.appended_at;
        msgs.retain(|m| {
            let redundant = m.get_msg_type() == MessageType::MsgHeartbeat
                && m.context.is_empty()
                && appended_at
                    .iter()
                    .any(|&(peer, at)| peer == m.to && at + interval >= ticks);
            !redundant
        });
    }

    /// Records the appends among messages about to leave.
    fn note_appends(&mut self, msgs: &[Message]) {
        for m in msgs
            .iter()
            .filter(|m| m.get_msg_type() == MessageType::MsgAppend)
        {
            match self.appended_at.iter_mut().find(|(peer, _)| *peer == m.to) {
                Some(e) => e.1 = self.ticks,
                None => {
                    // A new peer: forget the ones no longer members first,
                    // so the list stays as long as the configuration.
                    let prs = self.raw.raft.prs();
                    self.appended_at
                        .retain(|(peer, _)| prs.get(*peer).is_some());
                    self.appended_at.push((m.to, self.ticks));
                }
            }
        }
    }

    fn note_snapshots_sent(&mut self, msgs: &[Message]) {
        for m in msgs.iter().filter(|m| is_snapshot(m)) {
            if !self.snapshots_out.contains(&m.to) {
                self.snapshots_out.push(m.to);
            }
        }
    }

    /// Has this replica a configuration yet? A replica created empty to
    /// join a group at run time has none until the leader's snapshot.
    pub fn is_initialized(&self) -> bool {
        !conf_state_is_empty(self.conf_state()) || self.raw.raft.raft_log.last_index() > 0
    }

    /// Proposes one membership change. Only the leader proposes; `Ok` means
    /// handed to raft: the change is done when the replica's `conf_state()`
    /// shows it (`MembershipOp::is_done`). Raft may still drop the entry
    /// (a leader change truncates it), so the driver watches the
    /// configuration with a deadline rather than waiting for an answer.
    ///
    /// Every change is a single one (`ConfChangeTransition::Auto` with one
    /// change is raft's simple protocol, no joint state); promoting one
    /// learner at a time is safe because majorities of the old and new
    /// voter sets always overlap.
    ///
    /// `unreachable` says which nodes this one cannot hear now (the node's
    /// liveness; the simulator's network). A removal that would leave the
    /// voters without a reachable majority is refused unless `force`: the
    /// group would stop, and only a leader could change it back (etcd's
    /// strict reconfiguration check). For the same reason a leader that is
    /// removed hands over only to a voter it can hear.
    pub fn propose_conf_change(
        &mut self,
        op: MembershipOp,
        node: u64,
        force: bool,
        unreachable: impl Fn(u64) -> bool,
    ) -> Result<(), ConfChangeError> {
        self.assert_not_in_flight();
        // Commands proposed earlier go into the log first.
        self.flush_proposals();
        let group_id = self.cfg.group_id;
        if !self.is_leader() {
            return Err(ConfChangeError::NotLeader {
                group_id,
                node_id: self.cfg.node_id,
                leader_id: self.raw.raft.leader_id,
            });
        }
        if node == 0 {
            return Err(ConfChangeError::Invalid(bad("node_id", "is required")));
        }
        let cs = self.conf_state().clone();
        if !cs.voters_outgoing.is_empty() || self.raw.raft.has_pending_conf() {
            return Err(ConfChangeError::InProgress { group_id });
        }
        let is_voter = cs.voters.contains(&node);
        let is_learner = cs.learners.contains(&node);
        let ty = match op {
            MembershipOp::AddLearner => {
                if is_voter || is_learner {
                    let what = if is_voter { "voter" } else { "learner" };
                    return Err(ConfChangeError::Invalid(bad(
                        "node_id",
                        format!("node {node} is already a {what} of group {group_id}"),
                    )));
                }
                ConfChangeType::AddLearnerNode
            }
            MembershipOp::Promote => {
                if !is_learner {
                    let why = if is_voter {
                        format!("node {node} is already a voter of group {group_id}")
                    } else {
                        format!(
                            "node {node} is not a learner of group {group_id} (add it as a learner first)"
                        )
                    };
                    return Err(ConfChangeError::Invalid(bad("node_id", why)));
                }
                let committed = self.raw.raft.raft_log.committed;
                let matched = self.raw.raft.prs().get(node).map_or(0, |pr| pr.matched);
                if matched + PROMOTE_MAX_LAG < committed || matched == 0 {
                    return Err(ConfChangeError::NotCaughtUp {
                        group_id,
                        node,
                        matched,
                        committed,
                    });
                }
                ConfChangeType::AddNode
            }
            MembershipOp::Remove => {
                if !is_voter && !is_learner {
                    return Err(ConfChangeError::Invalid(bad(
                        "node_id",
                        format!("node {node} is not a member of group {group_id}"),
                    )));
                }
                if is_voter && cs.voters.len() == 1 {
                    return Err(ConfChangeError::Invalid(bad(
                        "node_id",
                        format!("node {node} is the last voter of group {group_id}"),
                    )));
                }
                if is_voter && !force {
                    let mut after = cs.clone();
                    after.voters.retain(|&v| v != node);
                    let me = self.cfg.node_id;
                    if !super::liveness::reaches_quorum(&after, me, &unreachable) {
                        let mut reachable: Vec<u64> = after
                            .voters
                            .iter()
                            .copied()
                            .filter(|&v| v == me || !unreachable(v))
                            .collect();
                        reachable.sort_unstable();
                        let mut voters = after.voters.clone();
                        voters.sort_unstable();
                        return Err(ConfChangeError::WouldLoseQuorum {
                            group_id,
                            node,
                            voters,
                            reachable,
                        });
                    }
                }
                if node == self.cfg.node_id {
                    // raft-rs lets a removed leader go on leading a group it
                    // is no longer part of (post_conf_change, "TODO: step
                    // down"). Hand leadership over first instead.
                    let to = self
                        .transfer_target(&unreachable)
                        .ok_or(ConfChangeError::InProgress { group_id })?;
                    self.wake();
                    self.raw.transfer_leader(to);
                    return Err(ConfChangeError::RemovesLeader { group_id, node, to });
                }
                ConfChangeType::RemoveNode
            }
        };
        let mut change = ConfChangeSingle::default();
        change.set_change_type(ty);
        change.node_id = node;
        let mut cc = ConfChangeV2::default();
        cc.set_transition(ConfChangeTransition::Auto);
        cc.mut_changes().push(change);
        self.wake();
        self.raw
            .propose_conf_change(Vec::new(), cc)
            .map_err(|e| match e {
                raft::Error::ProposalDropped => ConfChangeError::InProgress { group_id },
                e => ConfChangeError::Dropped(e.to_string()),
            })
    }

    /// Hands the group's leadership to voter `to`: an operator moves
    /// leaders off a site before maintenance or a drill, so that the site
    /// going down costs no election. raft-rs catches `to` up, then tells it
    /// to campaign at once (no pre-vote, no waiting out a lease); it gives up
    /// after an election timeout and refuses proposals meanwhile (the
    /// proposers retry). `Ok(true)`: `to` leads already, nothing to do.
    pub fn transfer_leadership(&mut self, to: u64) -> Result<bool, ConfChangeError> {
        self.assert_not_in_flight();
        let group_id = self.cfg.group_id;
        if to == 0 {
            return Err(ConfChangeError::Invalid(bad("node_id", "is required")));
        }
        if !self.is_leader() {
            if self.raw.raft.leader_id == to {
                return Ok(true);
            }
            return Err(ConfChangeError::NotLeader {
                group_id,
                node_id: self.cfg.node_id,
                leader_id: self.raw.raft.leader_id,
            });
        }
        if to == self.cfg.node_id {
            return Ok(true);
        }
        if !self.conf_state().voters.contains(&to) {
            return Err(ConfChangeError::Invalid(bad(
                "node_id",
                format!("node {to} is not a voter of group {group_id}"),
            )));
        }
        // Commands proposed earlier go into the log first (raft-rs drops
        // proposals once the transfer has begun).
        self.flush_proposals();
        self.wake();
        self.raw.transfer_leader(to);
        Ok(false)
    }

    /// Whether a leadership transfer begun here is still going on.
    pub fn is_transferring_leadership(&self) -> bool {
        self.raw.raft.lead_transferee.is_some()
    }

    /// The voter, other than this node, that holds the most of the log
    /// (lowest id on a tie) among those this node can hear: where a leader
    /// that is being removed hands over. A voter that died while the group
    /// was idle keeps its matched index; handing over to it would stall
    /// the group for an election timeout at each of the operator's retries.
    fn transfer_target(&self, unreachable: impl Fn(u64) -> bool) -> Option<u64> {
        let me = self.cfg.node_id;
        let voters = &self.conf_state().voters;
        self.raw
            .raft
            .prs()
            .iter()
            .filter(|(id, _)| **id != me && voters.contains(id) && !unreachable(**id))
            .map(|(id, pr)| (std::cmp::Reverse(pr.matched), *id))
            .min()
            .map(|(_, id)| id)
    }

    /// raft-rs leaves a joint configuration on its own (the leader appends
    /// an empty ConfChangeV2 once the entering one is applied), except when
    /// the leader changed in between (its source: "it may never auto_leave
    /// if leader steps down before enter joint is applied"). A leader that
    /// finds itself in a joint configuration with nothing pending proposes
    /// the leaving entry itself.
    fn leave_joint_if_stuck(&mut self) {
        if !self.is_leader()
            || self.conf_state().voters_outgoing.is_empty()
            || self.raw.raft.has_pending_conf()
        {
            return;
        }
        self.wake();
        let _ = self
            .raw
            .propose_conf_change(Vec::new(), ConfChangeV2::default());
    }

    /// A configuration was applied: remember it, make it durable, and drop
    /// the cached snapshot, so a node added by this change is never sent a
    /// snapshot whose configuration does not list it (raft-rs refuses to
    /// restore such a snapshot, and would be sent the same one again).
    fn conf_changed(&mut self, cs: ConfState, write: &mut WriteBatch) {
        self.raw.mut_store().set_conf_state(cs.clone());
        self.raw.mut_store().set_snapshot(Snapshot::default());
        write.conf_state = Some(Box::new(cs));
    }

    /// An empty replica (created to join a group at run time) must not
    /// append the leader's log from index 1: the founding configuration is
    /// not in the log, only in the founding members' initial state. So it
    /// asks for a snapshot instead (raft's request-snapshot path: its append
    /// and heartbeat answers become "reject, send me a snapshot").
    fn request_snapshot_if_empty(&mut self, msg: &Message) {
        let leaderly = matches!(
            msg.get_msg_type(),
            MessageType::MsgAppend | MessageType::MsgHeartbeat
        );
        if leaderly
            && !self.is_initialized()
            && self.raw.raft.pending_request_snapshot == raft::INVALID_INDEX
        {
            self.raw.raft.pending_request_snapshot = 1;
        }
    }

    /// Starts an election now (tests and operators; raft normally campaigns
    /// on its own after an election timeout).
    pub fn campaign(&mut self) {
        self.assert_not_in_flight();
        self.flush_proposals();
        let _ = self.raw.campaign();
    }
}

/// A follower's forwarded proposals up to `idx` are committed and known to
/// be in its log: a commit notice may tell it so.
fn notice_ready<T: raft::Storage>(r: &raft::Raft<T>, pr: &raft::Progress, idx: u64) -> bool {
    r.raft_log.committed >= idx && pr.matched >= idx
}

/// A command as a log entry: an accept's text travels beside the request
/// as bytes (`Command.accept_text`), so that [`decode_command`] checks it
/// with a SIMD validator instead of prost's scalar `string` check, which
/// every replica paid on every entry (half of an accept's apply for a 1
/// KiB Chinese text: BENCHMARKS.md, 3 Dec).
pub fn encode_command(cmd: &Command) -> Vec<u8> {
    match &cmd.op {
        Some(command::Op::Accept(req)) if !req.text.is_empty() => {
            let mut apart = cmd.clone();
            if let Some(command::Op::Accept(r)) = &mut apart.op {
                apart.accept_text = std::mem::take(&mut r.text).into_bytes();
            }
            apart.encode_to_vec()
        }
        _ => cmd.encode_to_vec(),
    }
}

/// Why a log entry is not a command.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Protobuf(#[from] prost::DecodeError),
    #[error("accept_text: {0}")]
    Text(String),
}

/// The inverse of [`encode_command`]; an entry written before
/// `accept_text` existed (the text inside the request) decodes as before.
pub fn decode_command(data: &[u8]) -> Result<Command, DecodeError> {
    let mut cmd = Command::decode(data)?;
    if !cmd.accept_text.is_empty() {
        let bytes = std::mem::take(&mut cmd.accept_text);
        let text = simdutf8::basic::from_utf8(&bytes)
            .map_err(|_| DecodeError::Text("is not UTF-8".into()))?;
        match &mut cmd.op {
            Some(command::Op::Accept(r)) if r.text.is_empty() => r.text = text.to_owned(),
            _ => {
                return Err(DecodeError::Text(
                    "set on a command that is not an accept without text".into(),
                ));
            }
        }
    }
    Ok(cmd)
}

/// Is this outgoing message a snapshot (the driver reports its delivery)?
pub fn is_snapshot(msg: &Message) -> bool {
    msg.get_msg_type() == MessageType::MsgSnapshot
}

fn conf_state_is_empty(cs: &ConfState) -> bool {
    cs.voters.is_empty() && cs.learners.is_empty() && cs.voters_outgoing.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(r: &mut Replica) {
        while r.has_ready() {
            let _ = r.ready();
            r.on_persisted();
        }
    }

    /// Every message `r` has to send now: its Readies persisted at once.
    fn messages_of(r: &mut Replica) -> Vec<Message> {
        let mut out = Vec::new();
        while r.has_ready() {
            out.extend(r.ready().messages);
            out.extend(r.on_persisted().messages);
        }
        out
    }

    /// Three replicas of one group, messages delivered among them (none to
    /// or from a node in `down`) until all is quiet.
    fn settle(rs: &mut [Replica], down: &[u64]) {
        for _ in 0..1_000 {
            let mut out = Vec::new();
            for r in rs.iter_mut() {
                out.extend(messages_of(r));
            }
            if out.is_empty() {
                return;
            }
            for m in out {
                if down.contains(&m.from) || down.contains(&m.to) {
                    continue;
                }
                if let Some(r) = rs.iter_mut().find(|r| r.node_id() == m.to) {
                    r.step(m);
                }
            }
        }
        panic!("the group did not settle");
    }

    /// Node 1 leading a group of voters 1..=n, all caught up.
    fn led_by_one(n: u64) -> Vec<Replica> {
        let voters: Vec<u64> = (1..=n).collect();
        let mut rs: Vec<Replica> = voters
            .iter()
            .map(|&id| {
                let cfg = ReplicaConfig::new(id, 310114, "310114");
                Replica::new(cfg, Recovered::bootstrap(&voters)).unwrap()
            })
            .collect();
        rs[0].campaign();
        settle(&mut rs, &[]);
        assert!(rs[0].is_leader());
        rs
    }

    /// Removing a voter that would leave the others without a reachable
    /// majority is refused (the group would stop, and only a leader could
    /// undo it), unless forced; a leader that removes itself hands over to
    /// a voter it can hear, not to the one holding the most of the log.
    #[test]
    fn a_removal_keeps_a_reachable_majority_and_hands_over_to_a_live_voter() {
        let three_down = |n: u64| n == 3;
        let mut rs = led_by_one(3);
        // Node 3 is down: removing node 2 leaves [1, 3] with one reachable.
        let e = rs[0]
            .propose_conf_change(MembershipOp::Remove, 2, false, three_down)
            .unwrap_err();
        assert!(
            matches!(&e, ConfChangeError::WouldLoseQuorum { voters, reachable, .. }
                if voters == &[1, 3] && reachable == &[1]),
            "{e}"
        );
        assert!(e.to_string().contains("--force"), "{e}");
        // Removing the dead node itself keeps [1, 2], both reachable.
        rs[0]
            .propose_conf_change(MembershipOp::Remove, 3, false, three_down)
            .unwrap();
        settle(&mut rs, &[3]);
        assert_eq!(rs[0].conf_state().voters, [1, 2]);

        // Forced, the removal that loses the majority goes through.
        let mut rs = led_by_one(3);
        rs[0]
            .propose_conf_change(MembershipOp::Remove, 2, true, three_down)
            .unwrap();
        settle(&mut rs, &[]);
        assert_eq!(rs[0].conf_state().voters, [1, 3]);

        // Nor may the leader remove itself then: [2, 3] with 3 alone.
        let mut rs = led_by_one(3);
        let e = rs[0]
            .propose_conf_change(MembershipOp::Remove, 1, false, |n| n == 2)
            .unwrap_err();
        assert!(matches!(e, ConfChangeError::WouldLoseQuorum { .. }), "{e}");

        // Of five, the leader removing itself with node 2 down hands over to
        // node 3, though node 2 (the lower id) holds as much of the log.
        let mut rs = led_by_one(5);
        let e = rs[0]
            .propose_conf_change(MembershipOp::Remove, 1, false, |n| n == 2)
            .unwrap_err();
        assert!(
            matches!(e, ConfChangeError::RemovesLeader { to: 3, .. }),
            "{e}"
        );
        let mut rs = led_by_one(5);
        let e = rs[0]
            .propose_conf_change(MembershipOp::Remove, 1, false, |_| false)
            .unwrap_err();
        assert!(
            matches!(e, ConfChangeError::RemovesLeader { to: 2, .. }),
            "{e}"
        );
    }

    /// A bare raft message, as a peer would send it.
    fn raft_msg(ty: MessageType, from: u64, to: u64, term: u64) -> Message {
        let mut m = Message::default();
        m.set_msg_type(ty);
        m.from = from;
        m.to = to;
        m.term = term;
        m
    }

    /// Ticks a replica that hears nobody; returns the messages it sent.
    fn tick_alone(r: &mut Replica, ticks: usize) -> usize {
        let mut sent = 0;
        for _ in 0..ticks {
            r.tick();
            sent += messages_of(r).len();
        }
        sent
    }

    /// A voter elected before it applied its own removal leads a group it
    /// is not in (raft-rs lets it). It must not park as leader: its ticks
    /// (check_quorum) make it step down once the members refuse it, and
    /// only then may it stop. Messages go as the node's loop routes them:
    /// a non-member's are refused and its sender told.
    #[test]
    fn a_removed_leader_steps_down_before_it_parks() {
        fn route(rs: &mut [Replica], msgs: Vec<Message>, down: u64) {
            for m in msgs {
                if m.from == down || m.to == down {
                    continue;
                }
                let to = rs.iter().position(|r| r.node_id() == m.to).unwrap();
                if rs[to].knows_not_member(m.from) {
                    let (from, me) = (m.from, m.to);
                    rs.iter_mut()
                        .find(|r| r.node_id() == from)
                        .unwrap()
                        .not_a_member(me);
                    continue;
                }
                rs[to].step(m);
            }
        }
        fn drain_all(rs: &mut [Replica], down: u64) {
            for _ in 0..100 {
                let mut out = Vec::new();
                for r in rs.iter_mut().filter(|r| r.node_id() != down) {
                    out.extend(messages_of(r));
                }
                if out.is_empty() {
                    return;
                }
                route(rs, out, down);
            }
        }
        let mut rs = led_by_one(3);
        rs[0]
            .propose_conf_change(MembershipOp::Remove, 3, false, |_| false)
            .unwrap();
        // 1 sends the entry; 2 and 3 append it; 1 commits and applies it,
        // then is gone before anyone learns the commit.
        let mut out = Vec::new();
        while rs[0].has_ready() {
            out.extend(rs[0].ready().messages);
            out.extend(rs[0].on_persisted().messages);
        }
        let mut acks = Vec::new();
        for m in out {
            let to = rs.iter().position(|r| r.node_id() == m.to).unwrap();
            rs[to].step(m);
            while rs[to].has_ready() {
                acks.extend(rs[to].ready().messages);
                acks.extend(rs[to].on_persisted().messages);
            }
        }
        for m in acks.into_iter().filter(|m| m.to == 1) {
            rs[0].step(m);
        }
        while rs[0].has_ready() {
            let _ = rs[0].ready();
            let _ = rs[0].on_persisted();
        }
        assert_eq!(rs[0].conf_state().voters, [1, 2], "1 applied the removal");
        assert_eq!(rs[2].conf_state().voters, [1, 2, 3], "3 has not");
        // 3 wins with 2's vote (a transfer's campaign, which 2's leader
        // lease does not hold up), commits its own removal and applies it.
        let term = rs[2].term();
        rs[2].step(raft_msg(MessageType::MsgTimeoutNow, 1, 3, term));
        drain_all(&mut rs, 1);
        assert!(rs[2].is_leader(), "3 leads");
        assert!(!rs[2].is_member(3), "a group it is no longer in");
        for _ in 0..200 {
            for r in rs.iter_mut().skip(1) {
                if r.wants_tick() {
                    r.tick();
                }
            }
            drain_all(&mut rs, 1);
        }
        assert!(!rs[2].is_leader(), "check_quorum made it step down");
        assert!(rs[2].is_parked(), "then it stopped");
    }

    /// A voter removed while it was cut off never learns it from raft: it
    /// campaigns at every election timeout, forever. It parks once a
    /// majority of the voters it knows refuse it as a non-member, and then
    /// sends nothing at all; a leader's message ends that.
    #[test]
    fn a_voter_removed_while_cut_off_parks_on_a_majoritys_word() {
        let mut rs = led_by_one(3);
        rs[0]
            .propose_conf_change(MembershipOp::Remove, 3, false, |n| n == 3)
            .unwrap();
        settle(&mut rs, &[3]);
        assert_eq!(rs[0].conf_state().voters, [1, 2]);
        let three = &mut rs[2];
        assert_eq!(three.conf_state().voters, [1, 2, 3], "it missed it");
        // While it still follows a leader, refusals change nothing.
        assert!(!three.not_a_member(1) && !three.not_a_member(2));
        let sent = tick_alone(three, 100);
        assert!(sent > 0, "it campaigns");
        assert_eq!(three.leader_id(), raft::INVALID_ID);
        // One voter's word is not enough (it may not have applied this
        // node's addition yet), nor is the same voter's twice, nor a
        // non-voter's.
        assert!(!three.not_a_member(1));
        assert!(!three.not_a_member(1));
        assert!(!three.not_a_member(7));
        assert!(!three.is_parked());
        assert!(three.not_a_member(2), "two of three voters");
        assert!(three.is_parked() && !three.wants_tick());
        let sent = tick_alone(three, 100);
        assert_eq!(sent, 0, "a parked replica sends nothing");
        // Added again, the leader's first message ends it.
        let term = rs[0].term();
        rs[2].step(raft_msg(MessageType::MsgHeartbeat, 1, 3, term));
        assert!(!rs[2].is_parked() && rs[2].wants_tick());
    }

    /// In a group of two voters the other voter's word is all there is to
    /// hear: a removed voter parks on it (by the majority rule it would
    /// wait for a second word that never comes, and campaign forever).
    #[test]
    fn a_removed_voter_of_two_parks_on_the_others_word() {
        let mut rs = led_by_one(2);
        rs[0]
            .propose_conf_change(MembershipOp::Remove, 2, false, |n| n == 2)
            .unwrap();
        // The removal needs node 2's append to commit; node 2 is cut off
        // after it acknowledged it and before it heard of the commit.
        for (from, to) in [(0, 1), (1, 0)] {
            let mut out = Vec::new();
            out.extend(messages_of(&mut rs[from]));
            for m in out {
                rs[to].step(m);
            }
        }
        settle(&mut rs, &[2]);
        assert_eq!(rs[0].conf_state().voters, [1]);
        let two = &mut rs[1];
        assert_eq!(two.conf_state().voters, [1, 2], "it missed it");
        assert!(tick_alone(two, 100) > 0, "it campaigns");
        assert!(!two.not_a_member(7), "not a voter's word");
        assert!(two.not_a_member(1), "the one other voter");
        assert_eq!(tick_alone(two, 100), 0, "parked, it sends nothing");
    }

    /// A replicated directory at `version` placing 嘉定's group on
    /// `voters` and `learners`, and another group on node 9.
    fn directory(version: u64, voters: &[u64], learners: &[u64]) -> DirectoryImage {
        use hotline_proto::v1::Placement;
        DirectoryImage {
            version,
            groups: vec![
                Placement {
                    group_id: 310101,
                    region: "310101".into(),
                    voters: vec![9],
                    learners: vec![],
                },
                Placement {
                    group_id: 310114,
                    region: "310114".into(),
                    voters: voters.to_vec(),
                    learners: learners.to_vec(),
                },
            ],
        }
    }

    /// Who a replica takes raft messages from: its configuration's
    /// members, or else the replicated directory's; never by the directory
    /// when none was read, nor into a replica without a configuration.
    #[test]
    fn admission_by_configuration_else_by_the_replicated_directory() {
        use Admission::*;
        let stale = ConfState::from((vec![1, 2, 3], vec![]));
        let dir = directory(7, &[3, 4], &[5]);
        let admit =
            |cs: &ConfState, dir: &DirectoryImage, from: u64| admission(cs, dir, 310114, from);
        // Named by the configuration: whatever the directory says.
        assert_eq!(admit(&stale, &dir, 1), Configuration);
        assert_eq!(admit(&stale, &DirectoryImage::default(), 2), Configuration);
        // Named by the directory only, as a voter or as a learner.
        assert_eq!(admit(&stale, &dir, 4), Directory);
        assert_eq!(admit(&stale, &dir, 5), Directory);
        // Named by neither; a member of another group is not one of this.
        assert_eq!(admit(&stale, &dir, 6), Refused);
        assert_eq!(admit(&stale, &dir, 9), Refused);
        assert_eq!(admission(&stale, &dir, 320585, 4), Refused);
        // No replicated directory read yet (no national group): the
        // configuration alone, as before (the topology file does not count).
        assert_eq!(admit(&stale, &DirectoryImage::default(), 4), Refused);
        let mut unread = dir.clone();
        unread.version = 0;
        assert_eq!(admit(&stale, &unread, 4), Refused);
        // A replica without a configuration (joining): only a seed
        // (`Joining::may_seed`), never a vote request from the directory's
        // members into an empty log.
        assert_eq!(admit(&ConfState::default(), &dir, 4), Refused);
        // An outgoing voter of a joint configuration is named by it.
        let mut joint = ConfState::from((vec![1, 2, 4], vec![]));
        joint.voters_outgoing = vec![1, 2, 3];
        assert_eq!(admit(&joint, &DirectoryImage::default(), 3), Configuration);
        // The replica asks with its own group and configuration.
        let r = Replica::new(
            ReplicaConfig::new(3, 310114, "310114"),
            Recovered::bootstrap(&[1, 2, 3]),
        )
        .unwrap();
        assert_eq!(r.admission(4, &dir), Directory);
        assert_eq!(r.admission(2, &dir), Configuration);
        assert_eq!(r.admission(6, &dir), Refused);
        assert!(r.knows_not_member(4), "refused, it would tell the sender");
    }

    /// `ticks` ticks of every replica not `down`, each followed by its
    /// messages, routed as the node's raft loop routes them: a replica
    /// with a configuration takes only what [`Replica::admission`] admits
    /// by it and `dir` (and tells a refused non-member), an empty one what
    /// its leader sends (the loop's `Joining::may_seed`).
    fn run_admitting(rs: &mut [Replica], down: u64, dir: &DirectoryImage, ticks: usize) {
        for _ in 0..ticks {
            for r in rs.iter_mut().filter(|r| r.node_id() != down) {
                if r.wants_tick() {
                    r.tick();
                }
            }
            for _ in 0..100 {
                let mut out = Vec::new();
                for r in rs.iter_mut().filter(|r| r.node_id() != down) {
                    out.extend(messages_of(r));
                }
                if out.is_empty() {
                    break;
                }
                for m in out {
                    if m.from == down || m.to == down {
                        continue;
                    }
                    let to = rs.iter().position(|r| r.node_id() == m.to).unwrap();
                    let r = &rs[to];
                    if r.is_initialized() && r.admission(m.from, dir) == Admission::Refused {
                        if r.knows_not_member(m.from) {
                            let (from, me) = (m.from, m.to);
                            let sender = rs.iter_mut().find(|r| r.node_id() == from).unwrap();
                            sender.not_a_member(me);
                        }
                        continue;
                    }
                    rs[to].step(m);
                }
            }
        }
    }

    /// The case the directory rule is for. Voters {1, 2, 3}; node 3 is
    /// down while online changes replace 1 and 2 by 4 and 5. Back with
    /// {1, 2, 3}, node 3 refuses the new leader by its configuration alone
    /// and never catches up (the group lives on 2 of 3); taking the
    /// directory's members too, it catches up, and its configuration then
    /// names them itself.
    #[test]
    fn a_voter_back_with_a_stale_configuration_catches_up_by_the_directory() {
        let mut rs: Vec<Replica> = (1..=5)
            .map(|id| {
                let rec = if id <= 3 {
                    Recovered::bootstrap(&[1, 2, 3])
                } else {
                    Recovered::default()
                };
                Replica::new(ReplicaConfig::new(id, 310114, "310114"), rec).unwrap()
            })
            .collect();
        rs[0].campaign();
        settle(&mut rs, &[]);
        let voters = |r: &Replica| super::super::placements::sorted(&r.conf_state().voters);
        let none = DirectoryImage::default();
        let leader = |rs: &[Replica]| rs.iter().position(Replica::is_leader).unwrap();
        let change = |rs: &mut [Replica], op: MembershipOp, node: u64| {
            for _ in 0..50 {
                let l = leader(rs);
                if rs[l]
                    .propose_conf_change(op, node, false, |n| n == 3)
                    .is_ok()
                {
                    run_admitting(rs, 3, &none, 30);
                    if op.is_done(node, rs[leader(rs)].conf_state()) {
                        return;
                    }
                }
                run_admitting(rs, 3, &none, 5);
            }
            panic!("{} {node} not done", op.name());
        };
        for n in [4, 5] {
            change(&mut rs, MembershipOp::AddLearner, n);
            change(&mut rs, MembershipOp::Promote, n);
        }
        rs[0].transfer_leadership(4).unwrap();
        run_admitting(&mut rs, 3, &none, 30);
        assert!(rs[3].is_leader(), "4 leads");
        change(&mut rs, MembershipOp::Remove, 1);
        change(&mut rs, MembershipOp::Remove, 2);
        let commit = rs[3].commit_index();
        assert_eq!(voters(&rs[3]), [3, 4, 5]);
        assert_eq!(voters(&rs[2]), [1, 2, 3], "3 missed it all");

        // Node 3 is back. By its configuration alone it refuses 4 and 5.
        run_admitting(&mut rs, 0, &none, 200);
        assert_eq!(voters(&rs[2]), [1, 2, 3], "still stale");
        assert!(rs[2].applied() < commit, "and behind");
        assert!(rs[3].is_leader(), "the group lives on 4 and 5");

        // The directory places the group on {3, 4, 5} (its leader reported
        // it): node 3 takes the leader's messages and catches up.
        let dir = directory(9, &[3, 4, 5], &[]);
        run_admitting(&mut rs, 0, &dir, 50);
        assert_eq!(voters(&rs[2]), [3, 4, 5]);
        assert_eq!(rs[2].leader_id(), 4);
        assert_eq!(rs[2].role(), StateRole::Follower);
        assert!(rs[2].applied() >= rs[3].commit_index());
        // From here its configuration names the leader by itself.
        assert_eq!(rs[2].admission(4, &none), Admission::Configuration);
    }

    /// A leader that finds its group in a joint configuration that raft-rs
    /// will not leave by itself (here an explicit transition; in the wild a
    /// leader change before the entering entry applied) proposes the
    /// leaving entry on its next tick.
    #[test]
    fn a_leader_leaves_a_joint_configuration_nobody_else_will() {
        let cfg = ReplicaConfig::new(1, 310114, "310114");
        let mut r = Replica::new(cfg, Recovered::bootstrap(&[1])).unwrap();
        for _ in 0..50 {
            r.tick();
            drain(&mut r);
        }
        assert!(r.is_leader());
        let mut change = ConfChangeSingle::default();
        change.set_change_type(ConfChangeType::AddLearnerNode);
        change.node_id = 2;
        let mut cc = ConfChangeV2::default();
        cc.set_transition(ConfChangeTransition::Explicit);
        cc.mut_changes().push(change);
        r.raw.propose_conf_change(Vec::new(), cc).unwrap();
        drain(&mut r);
        assert_eq!(r.conf_state().voters_outgoing, [1], "joint, and stays so");
        assert!(
            r.propose_conf_change(MembershipOp::Remove, 2, false, |_| false)
                .is_err(),
            "no other change while joint"
        );
        r.tick();
        drain(&mut r);
        let cs = r.conf_state();
        assert!(cs.voters_outgoing.is_empty(), "left: {cs:?}");
        assert_eq!(
            (cs.voters.as_slice(), cs.learners.as_slice()),
            (&[1][..], &[2][..])
        );
    }

    fn accept(text: &str) -> Command {
        Command {
            request_id: 7,
            at_ms: 1_764_000_000_000,
            accept_text: Vec::new(),
            op: Some(command::Op::Accept(hotline_proto::v1::AcceptRequest {
                region: "310114".into(),
                text: text.into(),
                phone: "13800000000".into(),
                ..Default::default()
            })),
        }
    }

    /// An accept's text goes into the entry beside the request and comes
    /// back into it; entries written before `accept_text` existed, and
    /// commands without text, decode unchanged; bad bytes are named.
    #[test]
    fn an_accepts_text_travels_apart_and_decodes_as_it_was() {
        let cmd = accept("嘉定区某小区门口路灯不亮已经三天了，请尽快修复。");
        let entry = encode_command(&cmd);
        let plain = Command::decode(&entry[..]).unwrap();
        assert_eq!(plain.accept_text, cmd_text(&cmd).as_bytes());
        let Some(command::Op::Accept(r)) = &plain.op else {
            panic!("accept")
        };
        assert!(r.text.is_empty(), "the text is not in the request twice");
        assert_eq!(decode_command(&entry).unwrap(), cmd);
        // The layout before this field: the text inside the request.
        assert_eq!(decode_command(&cmd.encode_to_vec()).unwrap(), cmd);
        let empty = accept("");
        assert_eq!(encode_command(&empty), empty.encode_to_vec());
        assert_eq!(decode_command(&encode_command(&empty)).unwrap(), empty);

        let mut bad = empty.clone();
        bad.accept_text = vec![0xe5, 0x98];
        let err = decode_command(&bad.encode_to_vec()).unwrap_err();
        assert_eq!(err.to_string(), "accept_text: is not UTF-8");
        let mut twice = cmd.clone();
        twice.accept_text = b"x".to_vec();
        assert!(
            decode_command(&twice.encode_to_vec()).is_err(),
            "text twice"
        );
        let mut stray = Command {
            op: Some(command::Op::Delivered(
                hotline_proto::v1::Delivered::default(),
            )),
            ..empty
        };
        stray.accept_text = b"x".to_vec();
        assert!(
            decode_command(&stray.encode_to_vec()).is_err(),
            "not an accept"
        );
    }

    fn cmd_text(cmd: &Command) -> &str {
        match &cmd.op {
            Some(command::Op::Accept(r)) => &r.text,
            _ => "",
        }
    }
}
