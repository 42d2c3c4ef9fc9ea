//! The node's Raft loop: one OS thread that owns every replica on the node
//! and the redb storage, and runs the Ready contract for all groups.
//!
//! Why a dedicated thread and not a tokio task: each iteration ends in a
//! blocking fsync, and everything that arrives meanwhile (proposals from all
//! clients, messages from all peers) is taken in one gulp by the next
//! iteration — group commit falls out of the structure. Why crossbeam
//! channels: the loop must wait on two bounded queues (proposals, control)
//! with a timeout for the next tick; gRPC handlers `try_send` into them and
//! turn a full proposal queue into `ResourceExhausted`.
//!
//! One iteration:
//! 1. take what arrived (bounded per iteration), tick if the tick is due;
//! 2. for each group with a Ready: send its messages now, answer what it
//!    applied and read, collect its `WriteBatch`;
//! 3. one redb transaction for all batches (fsync if any must sync);
//! 4. `on_persisted` for each: send the acknowledgements, answer the rest.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};
use hotline_proto::v1::{Command, Event, GroupStatus, RaftEnvelope, ReadLabel, StatusResponse};
use protobuf::Message as _;
use raft::StateRole;
use raft::eraftpb::Message;
use tokio::sync::{mpsc, oneshot};

use crate::core::replica::{self, ConfChangeError, MembershipOp};
use crate::core::tickets::TimeKeys;
use crate::core::{
    Applied, ApplyResult, CommandError, ProposeError, Query, QueryAnswer, ReadDone, Recovered,
    Replica, ReplicaConfig,
};
use crate::metrics::LoopStats;
use crate::storage::Storage;

/// Proposals taken per iteration, so one iteration stays short.
const MAX_PROPOSALS_PER_ITERATION: usize = 4_096;
const MAX_CONTROL_PER_ITERATION: usize = 4_096;
/// Ticks between two full scans for hibernating followers of a silent
/// leader even when no peer is suspected (a safety net; the scan touches
/// every replica).
const WAKE_SCAN_TICKS: u64 = 50;
/// Membership changes waiting for their configuration to be applied.
const MAX_CONF_CHANGE_WAITERS: usize = 64;

#[derive(Debug)]
pub enum ProposeOutcome {
    /// Committed and applied; the result may still be a refusal (the state
    /// moved on between the check and the apply).
    Applied(ApplyResult),
    /// Refused by the check before proposing: nothing reached the log.
    Rejected(CommandError),
    NotLeader(ProposeError),
    Overloaded,
}

pub struct Proposal {
    pub group_id: u64,
    pub cmd: Command,
    pub reply: oneshot::Sender<ProposeOutcome>,
}

/// What `Control::Peek` tells about a group, from this replica's state.
#[derive(Clone, Copy, Debug, Default)]
pub struct Peek {
    pub leader: bool,
    /// [`Replica::is_settled_leader`].
    pub settled: bool,
    pub transfer_work: bool,
    pub outbox: usize,
}

pub enum ReadOutcome {
    Answer(QueryAnswer),
    Unavailable(String),
}

pub enum Control {
    /// Messages from a peer whose certificate was checked by the transport.
    Raft {
        from_node: u64,
        envelopes: Vec<RaftEnvelope>,
        leadership_epoch: u64,
    },
    Read {
        group_id: u64,
        query: Query,
        reply: oneshot::Sender<ReadOutcome>,
    },
    /// A stale-but-labelled read from this node's replica: answered at
    /// once from its state, no ReadIndex round (`None`: not hosted).
    ReadLocal {
        group_id: u64,
        query: Query,
        reply: oneshot::Sender<Option<(QueryAnswer, ReadLabel)>>,
    },
    Status {
        reply: oneshot::Sender<StatusResponse>,
    },
    /// A cheap local look at one group, for the background tasks: no
    /// ReadIndex round (which would wake a hibernating group), no status of
    /// every group.
    Peek {
        group_id: u64,
        reply: oneshot::Sender<Peek>,
    },
    /// The transport lost its stream to this peer.
    Unreachable {
        peer: u64,
    },
    /// Propose a membership change of a group this node leads; answered
    /// once the group's configuration on this node shows it.
    ConfChange {
        group_id: u64,
        op: MembershipOp,
        node: u64,
        /// Even though the directory does not show the previous change.
        force: bool,
        reply: oneshot::Sender<ConfChangeOutcome>,
    },
    /// Hand the leadership of a group this node leads to voter `to`;
    /// answered once this node's replica sees `to` lead, or the transfer
    /// was given up.
    TransferLeader {
        group_id: u64,
        to: u64,
        reply: oneshot::Sender<LeaderMove>,
    },
    /// Drop this node's replica of a group that no longer counts it a
    /// member, and delete the group's data here; answered once durable.
    Purge {
        ask: PurgeAsk,
        reply: oneshot::Sender<PurgeOutcome>,
    },
    Stop,
}

/// What `Control::Purge` asks.
#[derive(Clone, Copy, Debug)]
pub struct PurgeAsk {
    pub group_id: u64,
    /// The term and commit index of the group's leader that no longer
    /// counts this node a member (`Admin/PurgeReplica`).
    pub leader_term: u64,
    pub leader_commit: u64,
    /// When (Unix ms), for the tombstone.
    pub at_ms: u64,
}

#[derive(Debug)]
pub enum PurgeOutcome {
    /// Gone from this node: the number of tickets deleted.
    Done { tickets: usize },
    /// No replica here; when it was purged, if it was.
    NotHosted { purged_at_ms: Option<u64> },
    /// Not purged, and why (in the operator's words).
    Refused(String),
}

#[derive(Debug)]
pub enum LeaderMove {
    /// The voter named leads the group, in this term.
    Done {
        term: u64,
    },
    /// Not begun (not the leader, not a voter).
    Refused(ConfChangeError),
    /// Begun, then given up by raft (the voter did not catch up or did not
    /// win within an election timeout), or another node leads now.
    GivenUp {
        leader_id: u64,
    },
    NotHosted,
    /// Too many transfers waiting on this node.
    Busy,
}

/// A leadership transfer waiting for its outcome.
struct LeaderWaiter {
    group_id: u64,
    to: u64,
    reply: oneshot::Sender<LeaderMove>,
}

#[derive(Debug)]
pub enum ConfChangeOutcome {
    /// Applied: the group's configuration now.
    Applied(raft::eraftpb::ConfState),
    /// Not proposed (not the leader, invalid, another change in progress).
    Refused(ConfChangeError),
    NotHosted,
    /// Too many changes waiting on this node.
    Busy,
    /// Not proposed: the replicated directory this node routes with places
    /// the group otherwise than its applied configuration (its last change
    /// is not recorded yet), so a majority of the voters the directory
    /// lists may not be able to confirm the next one. The placement it has.
    DirectoryBehind(hotline_proto::v1::Placement, u64),
}

/// A proposed membership change waiting for its configuration.
struct ConfWaiter {
    group_id: u64,
    op: MembershipOp,
    node: u64,
    reply: oneshot::Sender<ConfChangeOutcome>,
}

/// A group's wake-ups for its background tasks. (`Notify` keeps one permit:
/// a ring while the task is busy is not lost.)
#[derive(Clone, Default)]
pub struct Bells {
    /// The forwarder's: transfer records changed, or leadership came here.
    pub transfers: std::sync::Arc<tokio::sync::Notify>,
    /// The notifier's: notifications were added, or leadership came here.
    pub outbox: std::sync::Arc<tokio::sync::Notify>,
    /// Rung once each when the group's replica is purged from this node:
    /// its forwarder and its notifier stop (one permit each, so a task
    /// busy at that moment still stops; a group joined again starts new
    /// ones, with new bells).
    pub forwarder_left: std::sync::Arc<tokio::sync::Notify>,
    pub notifier_left: std::sync::Arc<tokio::sync::Notify>,
}

/// A background task's end: the node stops, or the group's replica left
/// it (`left`: that task's bell of [`Bells`]).
pub async fn task_ends(
    left: std::sync::Arc<tokio::sync::Notify>,
    node_stops: impl std::future::Future<Output = ()>,
) {
    tokio::select! {
        () = node_stops => {}
        () = left.notified() => {}
    }
}

/// One peer's share of an iteration phase's messages, with the group (and
/// whether it is a snapshot) of each envelope.
#[derive(Default)]
struct PeerBatch {
    envelopes: Vec<RaftEnvelope>,
    groups: Vec<(u64, bool)>,
}

type Outgoing = BTreeMap<u64, PeerBatch>;

/// The loop's view of the transport: one bounded queue per peer node.
pub type PeerQueues = BTreeMap<u64, mpsc::Sender<Vec<RaftEnvelope>>>;

pub struct RaftLoop {
    pub node_id: u64,
    pub address: String,
    pub replicas: BTreeMap<u64, Replica>,
    pub storage: Storage,
    pub peers: PeerQueues,
    pub proposals: Receiver<Proposal>,
    pub control: Receiver<Control>,
    pub tick: Duration,
    pub max_in_flight: usize,
    /// Every event applied on this node, after it is durable: feeds `watch`.
    pub events: tokio::sync::broadcast::Sender<(String, Event)>,
    /// Which peer nodes answer; wakes hibernating groups of a silent leader.
    pub liveness: crate::core::liveness::Liveness,
    /// Bumped when a replica here changes role or leader; sent with every
    /// raft batch (`transport::LeadershipEpoch`).
    pub leadership_epoch: crate::transport::LeadershipEpoch,
    /// Per hosted group: rung when its transfer records or outbox change
    /// here, or when this node becomes its leader, so its forwarder and
    /// notifier wake at once instead of polling an idle group.
    pub bells: BTreeMap<u64, Bells>,
    /// Groups and peers that appear at run time (membership changes);
    /// `None`: only what the node started with.
    pub joining: Option<crate::membership::Joining>,
    /// The groups the node serves; a group joined at run time is added.
    pub hosted: std::sync::Arc<crate::membership::Hosted>,
    /// Counters for `/metrics`.
    pub stats: std::sync::Arc<LoopStats>,
    /// Told each directory version this node's national replica applies,
    /// once durable: `Federation.Directory` long polls wait on it. Read for
    /// who may send raft messages to a replica whose configuration is
    /// stale (`replica::admission`).
    pub directory: std::sync::Arc<crate::dirsync::LiveDirectory>,
    /// Senders taken on the directory's word, for the log.
    pub admitted_by_directory: DirectoryAdmissions,
}

/// The (group, sender) pairs whose raft messages this node's replicas
/// take on the replicated directory's word while their own configuration
/// does not name the sender (`replica::Admission::Directory`). Such a
/// replica is catching up with membership changes it missed, a message at
/// a time: the first is logged (info), the rest only at debug level, until
/// the configuration names the sender (the pair is forgotten then, so a
/// later episode is logged again).
#[derive(Default)]
pub struct DirectoryAdmissions(std::collections::BTreeSet<(u64, u64)>);

impl DirectoryAdmissions {
    /// Pairs remembered at most; past it, new episodes log at debug only.
    const MAX: usize = 1_024;

    /// A message from `from` for `group` was taken, `how`; `r` took it.
    fn note(&mut self, r: &Replica, from: u64, how: replica::Admission, dir_version: u64) {
        let key = (r.group_id(), from);
        match how {
            replica::Admission::Directory => {
                let first = self.0.len() < Self::MAX && self.0.insert(key);
                let cs = r.conf_state();
                if first {
                    tracing::info!(
                        group = key.0,
                        from_node = from,
                        voters = ?cs.voters,
                        learners = ?cs.learners,
                        directory = dir_version,
                        "raft message admitted by the replicated directory: this replica's \
                         configuration does not name the sender (it missed membership changes, \
                         which it now catches up with)"
                    );
                } else {
                    tracing::debug!(
                        group = key.0,
                        from_node = from,
                        directory = dir_version,
                        "raft message admitted by the replicated directory"
                    );
                }
            }
            replica::Admission::Configuration => {
                if !self.0.is_empty() {
                    self.0.remove(&key);
                }
            }
            replica::Admission::Refused => {}
        }
    }
}

struct Waiters {
    /// By (group, request id): two groups may apply the same client
    /// request id, and each answers only its own caller.
    proposals: HashMap<(u64, u64), Vec<oneshot::Sender<ProposeOutcome>>>,
    in_flight: usize,
    reads: HashMap<u64, oneshot::Sender<ReadOutcome>>,
    next_read: u64,
    conf_changes: Vec<ConfWaiter>,
    leader_moves: Vec<LeaderWaiter>,
    /// Groups that took input since their last Ready (or still have one
    /// to give): the only ones the loop asks `has_ready`. On a node with a
    /// thousand hibernating groups, scanning them all every iteration was
    /// most of its idle CPU.
    touched: std::collections::BTreeSet<u64>,
    /// Groups that may want ticks (awake): every group touched is added,
    /// and one found asleep at its tick is dropped.
    ticking: std::collections::BTreeSet<u64>,
}

impl RaftLoop {
    /// Runs until `Control::Stop` or until every sender is gone, then
    /// checkpoints so that the next start has little WAL to replay.
    pub fn run(mut self) {
        self.serve();
        if let Err(e) = self.storage.checkpoint() {
            tracing::error!("checkpoint at stop failed: {e}");
        }
    }

    fn serve(&mut self) {
        let mut w = Waiters {
            proposals: HashMap::new(),
            in_flight: 0,
            reads: HashMap::new(),
            next_read: 1,
            conf_changes: Vec::new(),
            leader_moves: Vec::new(),
            // Everything at start: recovered replicas may have writes to
            // make (a bootstrap configuration).
            touched: self.replicas.keys().copied().collect(),
            ticking: self.replicas.keys().copied().collect(),
        };
        let mut next_tick = Instant::now() + self.tick;
        let mut ticks: u64 = 0;
        loop {
            let timeout = next_tick.saturating_duration_since(Instant::now());
            let busy = w
                .touched
                .iter()
                .any(|g| self.replicas.get(g).is_some_and(Replica::has_ready));
            let first = if busy {
                None
            } else {
                select! {
                    recv(self.proposals) -> p => match p {
                        Ok(p) => Some(Ok(p)),
                        Err(_) => return,
                    },
                    recv(self.control) -> c => match c {
                        Ok(c) => Some(Err(c)),
                        Err(_) => return,
                    },
                    default(timeout) => None,
                }
            };
            let stop = match first {
                Some(Ok(p)) => {
                    self.propose(p, &mut w);
                    false
                }
                Some(Err(c)) => !self.control(c, &mut w),
                None => false,
            };
            if stop {
                return;
            }
            LoopStats::add(&self.stats.loop_iterations, 1);
            for c in self
                .control
                .try_iter()
                .take(MAX_CONTROL_PER_ITERATION)
                .collect::<Vec<_>>()
            {
                if !self.control(c, &mut w) {
                    return;
                }
            }
            for p in self
                .proposals
                .try_iter()
                .take(MAX_PROPOSALS_PER_ITERATION)
                .collect::<Vec<_>>()
            {
                self.propose(p, &mut w);
            }
            if Instant::now() >= next_tick {
                // Only awake groups: a hibernating group costs no tick, and
                // not even a look (a thousand replicas of a few KB each are
                // a thousand cache misses per tick).
                let awake: Vec<u64> = w.ticking.iter().copied().collect();
                for g in awake {
                    match self.replicas.get_mut(&g) {
                        Some(r) if r.wants_tick() => {
                            r.tick();
                            w.touched.insert(g);
                        }
                        _ => {
                            w.ticking.remove(&g);
                        }
                    }
                }
                // One node heartbeat per peer per tick, for all groups: the
                // only traffic of hibernating groups.
                self.liveness.tick();
                for q in self.peers.values() {
                    let _ = q.try_send(Vec::new());
                }
                // A full scan only when some peer is suspected (or, as a
                // safety net, every WAKE_SCAN_TICKS ticks).
                ticks += 1;
                if (self.liveness.any_suspect() || ticks.is_multiple_of(WAKE_SCAN_TICKS))
                    && self.liveness.wake_orphans(self.replicas.values_mut()) > 0
                {
                    self.tick_woken(&mut w);
                }
                next_tick = Instant::now() + self.tick;
                w.proposals.retain(|_, v| {
                    v.retain(|s| !s.is_closed());
                    !v.is_empty()
                });
                w.in_flight = w.proposals.values().map(Vec::len).sum();
                w.reads.retain(|_, s| !s.is_closed());
                w.conf_changes.retain(|c| !c.reply.is_closed());
                w.leader_moves.retain(|c| !c.reply.is_closed());
                // After the clean-up: a waiter that gave up holds no
                // replica back.
                self.let_go_of_stale_seeds(&mut w);
            }
            self.handle_readies(&mut w);
            self.answer_conf_changes(&mut w);
            self.answer_leader_moves(&mut w);
        }
    }

    fn propose(&mut self, p: Proposal, w: &mut Waiters) {
        let stats = &self.stats;
        let Some(r) = self.replicas.get_mut(&p.group_id) else {
            LoopStats::add(&stats.proposals_not_leader, 1);
            let _ = p
                .reply
                .send(ProposeOutcome::NotLeader(ProposeError::NoLeader {
                    group_id: p.group_id,
                }));
            return;
        };
        if w.in_flight >= self.max_in_flight {
            LoopStats::add(&stats.proposals_overloaded, 1);
            let _ = p.reply.send(ProposeOutcome::Overloaded);
            return;
        }
        // Refuse what the state machine would refuse, before it costs a log
        // entry (apply checks again: the state may move on meanwhile).
        if let Err(e) = r.precheck(&p.cmd) {
            LoopStats::add(&stats.proposals_rejected, 1);
            let _ = p.reply.send(ProposeOutcome::Rejected(e));
            return;
        }
        let liveness = &self.liveness;
        if let Err(e) = r.check_leader_reachable(|node| liveness.suspect(node)) {
            LoopStats::add(&stats.proposals_not_leader, 1);
            let _ = p.reply.send(ProposeOutcome::NotLeader(e));
            return;
        }
        w.touched.insert(p.group_id);
        match r.propose(&p.cmd) {
            Ok(()) => {
                LoopStats::add(&stats.proposals_proposed, 1);
                w.in_flight += 1;
                w.proposals
                    .entry((p.group_id, p.cmd.request_id))
                    .or_default()
                    .push(p.reply);
            }
            Err(e) => {
                LoopStats::add(&stats.proposals_not_leader, 1);
                let _ = p.reply.send(ProposeOutcome::NotLeader(e));
            }
        }
    }

    fn control(&mut self, c: Control, w: &mut Waiters) -> bool {
        match c {
            Control::Raft {
                from_node,
                envelopes,
                leadership_epoch,
            } => {
                self.liveness.heard(from_node);
                if self.liveness.epoch(from_node, leadership_epoch) {
                    let woke = crate::core::liveness::wake_on_leadership_change(
                        self.replicas.values_mut(),
                        from_node,
                    );
                    if woke > 0 {
                        tracing::debug!(
                            peer = from_node,
                            woke,
                            "woke on a peer's leadership change"
                        );
                        self.tick_woken(w);
                    }
                }
                let mut notices = Outgoing::new();
                // Who may send to a replica whose configuration is stale
                // (`replica::admission`): read once per batch.
                let dir = self.directory.image();
                for env in envelopes {
                    if env.not_a_member {
                        self.not_a_member(from_node, env.group_id);
                        continue;
                    }
                    let mut m = Message::default();
                    if let Err(e) = m.merge_from_bytes(&env.message) {
                        tracing::warn!(from_node, "undecodable raft message: {e}");
                        continue;
                    }
                    if m.from != from_node {
                        tracing::warn!(
                            from_node,
                            claimed = m.from,
                            "raft message claims another sender; refused"
                        );
                        continue;
                    }
                    if !self.replicas.contains_key(&env.group_id)
                        && !self.join_group(env.group_id, from_node, &m, &dir)
                    {
                        tracing::warn!(
                            from_node,
                            group = env.group_id,
                            "raft message for a group this node does not host"
                        );
                        continue;
                    }
                    let r = self.replicas.get_mut(&env.group_id).expect("hosted");
                    // A member by the replica's configuration, or else by
                    // the replicated directory (the configuration may be
                    // stale); an empty replica takes what may seed it.
                    let admitted = r.admission(from_node, &dir);
                    let seeding = admitted == replica::Admission::Refused
                        && !r.is_initialized()
                        && self
                            .joining
                            .as_ref()
                            .is_some_and(|j| j.may_seed(self.node_id, env.group_id, from_node, &m));
                    self.admitted_by_directory
                        .note(r, from_node, admitted, dir.version);
                    if admitted == replica::Admission::Refused && !seeding {
                        tracing::warn!(
                            from_node,
                            group = env.group_id,
                            "raft message from a node that is not a member of the group; refused"
                        );
                        // Tell the sender, once per batch and group: a node
                        // that missed its own removal learns it this way
                        // (it parks once a majority of its voters said so).
                        if r.knows_not_member(from_node) {
                            let b = notices.entry(from_node).or_default();
                            if !b.envelopes.iter().any(|e| e.group_id == env.group_id) {
                                b.envelopes.push(RaftEnvelope {
                                    group_id: env.group_id,
                                    not_a_member: true,
                                    ..Default::default()
                                });
                            }
                        }
                        continue;
                    }
                    r.step(m);
                    w.touched.insert(env.group_id);
                }
                self.flush(&mut notices);
            }
            Control::Read {
                group_id,
                query,
                reply,
            } => match self.replicas.get_mut(&group_id) {
                Some(r) => {
                    let id = w.next_read;
                    w.next_read += 1;
                    w.reads.insert(id, reply);
                    r.read(id, query);
                    w.touched.insert(group_id);
                }
                None => {
                    let _ = reply.send(ReadOutcome::Unavailable(format!(
                        "group {group_id} is not hosted on this node"
                    )));
                }
            },
            Control::ReadLocal {
                group_id,
                query,
                reply,
            } => {
                let tick_ms = self.tick.as_millis() as u64;
                let out = self.replicas.get(&group_id).map(|r| {
                    let l = r.read_local(&query);
                    let label = ReadLabel {
                        node_id: self.node_id,
                        group_id,
                        role: role_name(r).into(),
                        applied_index: l.applied_index,
                        commit_index: l.commit_index,
                        leader_id: l.leader_id,
                        term: l.term,
                        since_leader_ms: l.ticks_since_leader * tick_ms,
                        hibernating: l.hibernating,
                    };
                    (l.answer, label)
                });
                let _ = reply.send(out);
            }
            Control::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Control::Peek { group_id, reply } => {
                let peek = self
                    .replicas
                    .get(&group_id)
                    .map_or(Peek::default(), |r| Peek {
                        leader: r.is_leader(),
                        settled: r.is_settled_leader(),
                        transfer_work: !r.tickets().transfer_work(1).is_empty(),
                        outbox: r.tickets().outbox_len(),
                    });
                let _ = reply.send(peek);
            }
            Control::Unreachable { peer } => {
                self.liveness.lost(peer);
                for (&g, r) in self.replicas.iter_mut() {
                    if r.is_member(peer) {
                        r.report_unreachable(peer);
                        w.touched.insert(g);
                    }
                }
            }
            Control::ConfChange {
                group_id,
                op,
                node,
                force,
                reply,
            } => {
                let Some(r) = self.replicas.get_mut(&group_id) else {
                    let _ = reply.send(ConfChangeOutcome::NotHosted);
                    return true;
                };
                if w.conf_changes.len() >= MAX_CONF_CHANGE_WAITERS {
                    let _ = reply.send(ConfChangeOutcome::Busy);
                    return true;
                }
                // Only the leader proposes; a follower's refusal says who leads.
                if !force && r.is_leader() {
                    let img = self.directory.image();
                    let cs = r.conf_state();
                    if let Some(p) =
                        crate::core::placements::lagging(&img, group_id, &cs.voters, &cs.learners)
                    {
                        tracing::info!(
                            group = group_id,
                            directory = img.version,
                            "membership change refused: the directory does not show the last one"
                        );
                        let _ =
                            reply.send(ConfChangeOutcome::DirectoryBehind(p.clone(), img.version));
                        return true;
                    }
                }
                w.touched.insert(group_id);
                let liveness = &self.liveness;
                match r.propose_conf_change(op, node, force, |n| liveness.suspect(n)) {
                    Ok(()) => {
                        tracing::info!(
                            group = group_id,
                            op = op.name(),
                            node,
                            "membership change proposed"
                        );
                        w.conf_changes.push(ConfWaiter {
                            group_id,
                            op,
                            node,
                            reply,
                        });
                    }
                    Err(e) => {
                        tracing::info!(group = group_id, "membership change refused: {e}");
                        let _ = reply.send(ConfChangeOutcome::Refused(e));
                    }
                }
            }
            Control::TransferLeader {
                group_id,
                to,
                reply,
            } => {
                let Some(r) = self.replicas.get_mut(&group_id) else {
                    let _ = reply.send(LeaderMove::NotHosted);
                    return true;
                };
                if w.leader_moves.len() >= MAX_CONF_CHANGE_WAITERS {
                    let _ = reply.send(LeaderMove::Busy);
                    return true;
                }
                // Touched, so it ticks again (raft gives a transfer up
                // after an election timeout of ticks).
                w.touched.insert(group_id);
                match r.transfer_leadership(to) {
                    Ok(true) => {
                        let _ = reply.send(LeaderMove::Done { term: r.term() });
                    }
                    Ok(false) => {
                        tracing::info!(group = group_id, to, "leadership transfer begun");
                        w.leader_moves.push(LeaderWaiter {
                            group_id,
                            to,
                            reply,
                        });
                    }
                    Err(e) => {
                        let _ = reply.send(LeaderMove::Refused(e));
                    }
                }
            }
            Control::Purge { ask, reply } => {
                let _ = reply.send(self.purge(ask, w));
            }
            Control::Stop => return false,
        }
        true
    }

    /// `Control::Purge`. Only a replica that shows itself `removed`
    /// (parked: it applied its own removal, or a majority of its voters
    /// refused it as a non-member), an empty one (made on a leader's
    /// message and never caught up, so never a voter: a promotion needs it
    /// caught up), or a learner by its own stale configuration (below)
    /// goes: a voter still counted a member is part of its group's quorum,
    /// and its log may be what keeps a committed entry. A group only on
    /// disk: [`Self::purge_from_disk`]. For the
    /// same reason not one that has seen more of the group than the leader
    /// that told the operator it is out (a later term or commit: a
    /// "leader" that lost the group's history, say a wiped voter of two).
    /// Nor the node's last group at start (a node with none does not
    /// start), nor one with a caller still waiting (say so; a parked
    /// replica gets hardly any).
    fn purge(&mut self, p: PurgeAsk, w: &mut Waiters) -> PurgeOutcome {
        let (group_id, me) = (p.group_id, self.node_id);
        let Some(r) = self.replicas.get(&group_id) else {
            return self.purge_from_disk(p, w);
        };
        let role = role_name(r);
        // A learner by its own configuration, which the leader no longer
        // counts (the CLI checked): removed after the replica last heard
        // from the group, as when the node was down then, and no member
        // tells a learner (it never campaigns, so it is never refused). A
        // learner's copy counts in no vote and no commit (raft keeps a
        // node out of the voters while it is a learner, outgoing voters
        // included), so the leader's word is enough; a voter's parks on
        // the members' word first.
        if r.is_initialized() && !r.is_parked() && !r.is_learner() {
            let why = if !r.is_member(me) {
                // It applied its own removal and parks at its next tick.
                format!("group {group_id}'s replica on node {me} has not stopped yet; try again")
            } else {
                // A voter by a configuration its leader no longer counts
                // (the CLI asked that leader first): removed while it was
                // away. Whatever leader it last heard falls silent, it
                // campaigns, and it parks once the voters refuse it.
                format!(
                    "group {group_id}'s replica on node {me} is {role} by its own configuration, \
                     which the group's leader no longer counts: it stops once the group's \
                     voters refuse it as a non-member (an election timeout or two after it last \
                     heard from a leader); try again"
                )
            };
            return PurgeOutcome::Refused(why);
        }
        if let Some(why) = beyond_leader(&p, me, r.term(), r.commit_index()) {
            return PurgeOutcome::Refused(why);
        }
        let at_start = match &self.joining {
            Some(j) => crate::membership::groups_at_start(j.topology(), me, &self.storage),
            None => self.replicas.keys().copied().collect(),
        };
        if at_start.iter().all(|&g| g == group_id) {
            let joined: Vec<u64> = self
                .replicas
                .keys()
                .copied()
                .filter(|g| *g != group_id && !at_start.contains(g))
                .collect();
            let why = if joined.is_empty() {
                format!(
                    "group {group_id} is the last group of node {me}; a node with no group \
                     does not start: stop the node and retire it (its data directory) instead"
                )
            } else {
                format!(
                    "node {me} would start with no group without group {group_id}: its other \
                     groups {joined:?} were joined at run time and are not in its topology \
                     file; add the node to them there first"
                )
            };
            return PurgeOutcome::Refused(why);
        }
        if in_hand(r, group_id, w) {
            return PurgeOutcome::Refused(format!(
                "group {group_id}'s replica on node {me} still has requests in hand; try again"
            ));
        }
        // The replica goes first: nothing writes for the group after this.
        let keys = self.unhost(group_id, w).time_keys();
        self.purge_storage(group_id, p.at_ms, &keys, Purged::Hosted);
        PurgeOutcome::Done {
            tickets: keys.tickets.len(),
        }
    }

    /// Takes group `group_id`'s replica out of the loop, and stops its
    /// forwarder and notifier: nothing runs or writes for the group here
    /// after this. A group joined at run time frees its place in the bound.
    fn unhost(&mut self, group_id: u64, w: &mut Waiters) -> Replica {
        if let Some(j) = self.joining.as_mut() {
            j.joined.remove(&group_id);
            j.seeded_after_purge.remove(&group_id);
        }
        let r = self.replicas.remove(&group_id).expect("hosted");
        w.touched.remove(&group_id);
        w.ticking.remove(&group_id);
        self.hosted.leave(group_id);
        if let Some(b) = self.bells.remove(&group_id) {
            b.forwarder_left.notify_one();
            b.notifier_left.notify_one();
        }
        r
    }

    /// Lets go of each empty replica hosted for a group purged from this
    /// node that no leader has brought the group to (by snapshot or log)
    /// within `tuning.purged_seed_wait_ms`. A leader that added the node
    /// back does so within a heartbeat and a snapshot's transfer: the empty
    /// replica answers its heartbeat or rejects its first append, and gets
    /// the snapshot. So such a replica was most likely seeded by a member's
    /// message queued before the removal and delivered after the purge (a
    /// reconnect after a restart): it holds nothing, and would otherwise
    /// stay hosted and show in `hotline status` for good. Its term on disk
    /// goes with it (a start lets go of one left by a stop in between,
    /// `Storage::purged_with_term_only`); the tombstone stays as it was. If
    /// it was a leader's snapshot that was slower than the wait, that
    /// snapshot hosts the group again when it arrives (`Joining::may_seed`
    /// takes a snapshot that names this node). Safe to forget: an empty
    /// replica is never a voter (a learner is promoted only once it has
    /// matched the leader's log), so no vote it gave counts.
    fn let_go_of_stale_seeds(&mut self, w: &mut Waiters) {
        let now = Instant::now();
        let (due, wait) = match self.joining.as_mut() {
            Some(j) if !j.seeded_after_purge.is_empty() => {
                let due: Vec<u64> = j
                    .seeded_after_purge
                    .iter()
                    .filter(|&(_, &at)| at <= now)
                    .map(|(&g, _)| g)
                    .collect();
                for g in &due {
                    j.seeded_after_purge.remove(g);
                }
                (due, j.purged_seed_wait)
            }
            _ => return,
        };
        for g in due {
            let (Some(r), Some(at_ms)) = (self.replicas.get(&g), self.storage.purged_at(g)) else {
                continue; // a snapshot or the log ended the tombstone
            };
            if r.is_initialized() {
                continue; // brought up to date by a leader: a member again
            }
            if in_hand(r, g, w) {
                // Look again at the next tick.
                if let Some(j) = self.joining.as_mut() {
                    j.seeded_after_purge.insert(g, now + self.tick);
                }
                continue;
            }
            let keys = self.unhost(g, w).time_keys();
            debug_assert!(keys.tickets.is_empty(), "an empty replica holds no ticket");
            self.purge_storage(g, at_ms, &keys, Purged::StaleSeed { wait });
        }
    }

    /// The purge of a group that is on this node's disk but not hosted:
    /// one joined at run time (so not in the topology file, and not loaded
    /// at start) that no member has sent a message since the restart, as
    /// when the node was removed from it while down. Only a message loads
    /// such a group (`join_group`), and the members of a group send none
    /// to a node they removed: without this its rows would stay for good.
    /// Nothing runs for it, so nothing can be in hand. A voter by the
    /// configuration on disk is hosted instead, as a member's message would
    /// host it: it campaigns, the voters refuse it, it parks, and the purge
    /// asked again takes the hosted path — the members' word, not the
    /// leader's alone, as for a voter that stayed up. Otherwise (a learner
    /// or no member by that configuration, or none written) the leader's
    /// word that the node is out (the CLI checked that leader's applied
    /// configuration) and the term and commit check decide.
    ///
    /// Reading the rows takes what `join_group` takes for a group found on
    /// disk: a checkpoint first, and after the start-up rows have expired,
    /// a scan of the time-keyed tables on the loop thread (an operator's
    /// rare command, as loading a group at run time is a rare event).
    fn purge_from_disk(&mut self, p: PurgeAsk, w: &mut Waiters) -> PurgeOutcome {
        let (group_id, me) = (p.group_id, self.node_id);
        let Some((term, commit)) = self.storage.term_and_commit(group_id) else {
            return PurgeOutcome::NotHosted {
                purged_at_ms: self.storage.purged_at(group_id),
            };
        };
        let voter = self
            .storage
            .conf_state(group_id)
            .is_some_and(|cs| cs.voters.contains(&me) || cs.voters_outgoing.contains(&me));
        if voter {
            let region = self.joining.as_ref().and_then(|j| j.group_region(group_id));
            let Some(region) = region else {
                return PurgeOutcome::Refused(format!(
                    "group {group_id} is on node {me}'s disk with a configuration that names the \
                     node a voter, and the node's topology file does not know the group, so it \
                     cannot host it to learn its removal; not purged"
                ));
            };
            let rec = self.load(group_id);
            if !self.host_joined(group_id, region, rec.unwrap_or_default()) {
                return PurgeOutcome::Refused(format!(
                    "group {group_id}'s state on node {me}'s disk does not make a replica; \
                     not purged"
                ));
            }
            tracing::info!(
                node = me,
                group = group_id,
                "hosting a group found on disk to purge it: a voter by its configuration \
                 there, it learns its removal from the group's voters first"
            );
            w.touched.insert(group_id);
            return PurgeOutcome::Refused(format!(
                "group {group_id}'s replica on node {me} was on disk only, a voter by its \
                 configuration there: hosted now, to hear from the group's voters that it was \
                 removed; try again"
            ));
        }
        if let Some(why) = beyond_leader(&p, me, term, commit) {
            return PurgeOutcome::Refused(why);
        }
        // The rows on disk (`None`: an empty replica that wrote only its
        // term, no rows).
        let keys = self
            .load(group_id)
            .map_or_else(TimeKeys::default, |rec| TimeKeys::of_rows(&rec.state));
        self.purge_storage(group_id, p.at_ms, &keys, Purged::FromDisk);
        PurgeOutcome::Done {
            tickets: keys.tickets.len(),
        }
    }

    /// `Storage::load`, whose failure stops the node (as every storage
    /// failure: it cannot say what is on its disk any more).
    fn load(&mut self, group_id: u64) -> Option<Recovered> {
        match self.storage.load(group_id) {
            Ok(rec) => rec,
            Err(e) => {
                tracing::error!(group = group_id, "storage read failed, stopping node: {e}");
                panic!("storage read failed: {e}");
            }
        }
    }

    /// Deletes group `group_id`'s data from this node's disk, durably,
    /// once its replica is gone from the loop (or was never loaded), with a
    /// tombstone of `at_ms`; a later message for the group finds nothing on
    /// disk.
    fn purge_storage(&mut self, group_id: u64, at_ms: u64, keys: &TimeKeys, how: Purged) {
        if let Err(e) = self.storage.purge(group_id, keys, at_ms) {
            // As for every storage failure: the node cannot say what is
            // on its disk any more.
            tracing::error!(group = group_id, "storage purge failed, stopping node: {e}");
            panic!("storage purge failed: {e}");
        }
        if let Some(j) = self.joining.as_mut() {
            j.absent.insert(group_id);
        }
        let node = self.node_id;
        match how {
            Purged::Hosted | Purged::FromDisk => tracing::info!(
                node,
                group = group_id,
                tickets = keys.tickets.len(),
                from_disk = matches!(how, Purged::FromDisk),
                "purged the replica of a group this node was removed from"
            ),
            Purged::StaleSeed { wait } => tracing::info!(
                node,
                group = group_id,
                wait_ms = wait.as_millis() as u64,
                "let go of an empty replica of a purged group: no leader brought it the group \
                 within the wait (a member's message from before the removal, or a snapshot \
                 slower than the wait, which hosts it again when it arrives)"
            ),
        }
    }

    /// Voter `from_node` refused this node's messages for `group_id`: by
    /// the configuration it applied, this node is no longer a member
    /// (`RaftEnvelope.not_a_member`; the core decides when that is enough,
    /// `Replica::not_a_member`).
    fn not_a_member(&mut self, from_node: u64, group_id: u64) {
        let Some(r) = self.replicas.get_mut(&group_id) else {
            return;
        };
        if r.not_a_member(from_node) {
            tracing::info!(
                group = group_id,
                from_node,
                "a majority of the group's voters say this node is no longer a member: \
                 its replica stops campaigning until a leader contacts it (role removed)"
            );
        }
    }

    /// A raft message for a group this node does not host: the node may
    /// have been added to the group at run time. If it hosted the group
    /// before a restart, the group is on disk and its configuration there
    /// decides who may talk to it (any message, votes too: a voter that
    /// joined at run time must be able to vote after a restart), or else
    /// the replicated directory `dir`, as for a hosted replica
    /// (`replica::admission`: the configuration on disk is stale if the
    /// group changed members while this node was away). Otherwise it hosts
    /// an empty replica if the group is the topology's and the message
    /// could come from its leader (`Joining::may_seed`), within the bounds;
    /// the replica then asks for a snapshot.
    fn join_group(
        &mut self,
        group_id: u64,
        from_node: u64,
        m: &Message,
        dir: &hotline_proto::v1::DirectoryImage,
    ) -> bool {
        let Some(j) = self.joining.as_mut() else {
            return false;
        };
        let Some(region) = j.group_region(group_id) else {
            return false;
        };
        if j.joined.len() >= crate::membership::MAX_JOINED_GROUPS {
            tracing::warn!(group = group_id, "too many groups joined at run time");
            return false;
        }
        let seed = j.may_seed(self.node_id, group_id, from_node, m);
        // The configuration on disk decides (or, where it does not name
        // the sender, the replicated directory: it may be stale, as for a
        // hosted replica), and storage keeps it in memory: the group's
        // rows are read only for a sender that may bring the group back (a
        // load reads every group's time-keyed rows once the start-up scan
        // is gone; a refused sender may keep sending).
        let on_disk_admits = self
            .storage
            .conf_state(group_id)
            .map(|cs| replica::admission(cs, dir, group_id, from_node));
        if on_disk_admits == Some(replica::Admission::Refused) && !seed {
            return false;
        }
        let absent = j.absent.contains(&group_id);
        let on_disk = if absent { None } else { self.load(group_id) };
        let rec = match on_disk {
            Some(rec) => rec,
            None => {
                // Not on disk, and it will not be until this node joins.
                if let Some(j) = self.joining.as_mut() {
                    j.absent.insert(group_id);
                }
                let joining_now = self
                    .replicas
                    .values()
                    .filter(|r| !r.is_initialized())
                    .count();
                if !seed || joining_now >= crate::membership::MAX_JOINING_GROUPS {
                    return false;
                }
                Recovered::default()
            }
        };
        if !self.host_joined(group_id, region, rec) {
            return false;
        }
        if !self.replicas[&group_id].is_initialized()
            && self.storage.purged_at(group_id).is_some()
            && let Some(j) = self.joining.as_mut()
        {
            let until = Instant::now() + j.purged_seed_wait;
            j.seeded_after_purge.insert(group_id, until);
        }
        tracing::info!(
            node = self.node_id,
            group = group_id,
            from_node,
            from_disk = self.replicas[&group_id].is_initialized(),
            by_directory = on_disk_admits == Some(replica::Admission::Directory),
            "hosting a group joined at run time"
        );
        true
    }

    /// Hosts group `group_id` from `rec` (its state on disk, or none) as a
    /// group joined at run time: its bells, its place among the hosted
    /// groups, its share of the bound. False if no replica can be made of
    /// it (logged).
    fn host_joined(&mut self, group_id: u64, region: String, rec: Recovered) -> bool {
        let cfg = replica_config(
            self.replicas.values().next(),
            self.node_id,
            group_id,
            region,
        );
        let replica = match Replica::new(cfg, rec) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(group = group_id, "cannot create a replica to join: {e}");
                return false;
            }
        };
        if let Some(j) = self.joining.as_mut() {
            j.joined.insert(group_id);
            j.absent.remove(&group_id);
        }
        let bells = self.bells.entry(group_id).or_default().clone();
        self.hosted
            .join(group_id, replica.config().region.clone(), bells);
        self.replicas.insert(group_id, replica);
        true
    }

    /// Answers the membership changes whose configuration is now applied.
    fn answer_conf_changes(&mut self, w: &mut Waiters) {
        let mut i = 0;
        while i < w.conf_changes.len() {
            let c = &w.conf_changes[i];
            let done = self
                .replicas
                .get(&c.group_id)
                .map(|r| r.conf_state())
                .filter(|cs| c.op.is_done(c.node, cs))
                .cloned();
            match done {
                Some(cs) => {
                    let c = w.conf_changes.swap_remove(i);
                    let _ = c.reply.send(ConfChangeOutcome::Applied(cs));
                }
                None => i += 1,
            }
        }
    }

    /// Answers the leadership transfers that ended: the voter named leads,
    /// or raft gave up (this node leads with no transfer going on), or
    /// someone else leads.
    fn answer_leader_moves(&mut self, w: &mut Waiters) {
        let mut i = 0;
        while i < w.leader_moves.len() {
            let m = &w.leader_moves[i];
            let outcome = match self.replicas.get(&m.group_id) {
                None => Some(LeaderMove::NotHosted),
                Some(r) if r.leader_id() == m.to => Some(LeaderMove::Done { term: r.term() }),
                // Leading with no transfer going on, or following another.
                Some(r)
                    if (r.is_leader() && !r.is_transferring_leadership())
                        || (!r.is_leader() && r.leader_id() != raft::INVALID_ID) =>
                {
                    Some(LeaderMove::GivenUp {
                        leader_id: r.leader_id(),
                    })
                }
                Some(_) => None,
            };
            match outcome {
                Some(o) => {
                    let m = w.leader_moves.swap_remove(i);
                    let _ = m.reply.send(o);
                }
                None => i += 1,
            }
        }
    }

    pub fn status(&self) -> StatusResponse {
        StatusResponse {
            node_id: self.node_id,
            address: self.address.clone(),
            faults: None,
            // The server fills these in.
            directory_version: 0,
            directory_age_ms: None,
            groups: self
                .replicas
                .values()
                .map(|r| GroupStatus {
                    group_id: r.group_id(),
                    role: role_name(r).into(),
                    term: r.term(),
                    commit_index: r.commit_index(),
                    applied_index: r.applied(),
                    leader_id: r.leader_id(),
                    first_index: r.first_index(),
                    last_index: r.last_index(),
                    voters: crate::membership::sorted(&r.conf_state().voters),
                    learners: crate::membership::sorted(&r.conf_state().learners),
                    voters_outgoing: crate::membership::sorted(&r.conf_state().voters_outgoing),
                    hibernating: r.is_quiesced(),
                    outbox_pending: r.tickets().outbox_len() as u32,
                })
                .collect(),
            on_disk: self.on_disk_only(),
        }
    }

    /// The groups on this node's disk that it does not host, by id.
    fn on_disk_only(&self) -> Vec<hotline_proto::v1::GroupOnDisk> {
        let mut ids: Vec<u64> = self
            .storage
            .groups_on_disk()
            .filter(|g| !self.replicas.contains_key(g))
            .collect();
        ids.sort_unstable();
        ids.into_iter()
            .map(|g| {
                let (term, commit_index) = self.storage.term_and_commit(g).unwrap_or_default();
                let cs = self.storage.conf_state(g);
                hotline_proto::v1::GroupOnDisk {
                    group_id: g,
                    term,
                    commit_index,
                    voters: cs.map_or_else(Vec::new, |c| crate::membership::sorted(&c.voters)),
                    learners: cs.map_or_else(Vec::new, |c| crate::membership::sorted(&c.learners)),
                }
            })
            .collect()
    }

    /// Encodes a group's messages into the per-peer outgoing batches of
    /// this phase of the iteration; [`Self::flush`] hands them to the
    /// transport. Batching across groups matters on a node hosting many:
    /// one queue operation per peer per phase, not one per group.
    fn stage(&mut self, out: &mut Outgoing, group_id: u64, msgs: Vec<Message>) {
        for m in msgs {
            let snap = crate::core::replica::is_snapshot(&m);
            let env = RaftEnvelope {
                group_id,
                message: m.write_to_bytes().expect("raft message encodes").into(),
                not_a_member: false,
            };
            let b = out.entry(m.to).or_default();
            b.envelopes.push(env);
            b.groups.push((group_id, snap));
        }
    }

    /// Sends each peer its batch; tells raft of every group whose messages
    /// could not be queued (it probes instead of streaming into a dead
    /// link) and of every snapshot's fate.
    fn flush(&mut self, out: &mut Outgoing) {
        for (peer, batch) in std::mem::take(out) {
            if !self.peers.contains_key(&peer)
                && let Some(q) = self.joining.as_mut().and_then(|j| j.open(peer))
            {
                // A node that shared no group with this one at start.
                self.peers.insert(peer, q);
            }
            let count = batch.envelopes.len() as u64;
            let ok = match self.peers.get(&peer) {
                Some(q) => q.try_send(batch.envelopes).is_ok(),
                None => false,
            };
            LoopStats::add(
                if ok {
                    &self.stats.raft_messages_sent
                } else {
                    &self.stats.raft_messages_dropped
                },
                count,
            );
            let mut told: Option<u64> = None;
            // Raft hears back only of a failure or a snapshot: a delivered
            // append needs no lookup (one per message, 64 groups' worth of
            // cold map walks per loop on a busy node).
            for (g, snap) in batch.groups.into_iter().filter(|&(_, snap)| !ok || snap) {
                let Some(r) = self.replicas.get_mut(&g) else {
                    continue;
                };
                if !ok && told != Some(g) {
                    r.report_unreachable(peer);
                    told = Some(g);
                }
                if snap {
                    r.report_snapshot(peer, ok);
                }
            }
        }
    }

    /// After a liveness wake-up: every replica that wants ticks again gets
    /// them (the woken ones among the sleepers).
    fn tick_woken(&self, w: &mut Waiters) {
        w.ticking.extend(
            self.replicas
                .iter()
                .filter(|(_, r)| r.wants_tick())
                .map(|(g, _)| *g),
        );
    }

    fn handle_readies(&mut self, w: &mut Waiters) {
        let replicas = &self.replicas;
        // Input may have woken a group: it ticks again until it sleeps.
        w.ticking.extend(
            w.touched
                .iter()
                .filter(|g| replicas.get(g).is_some_and(Replica::wants_tick)),
        );
        w.touched
            .retain(|g| replicas.get(g).is_some_and(Replica::has_ready));
        let ids: Vec<u64> = w.touched.iter().copied().collect();
        if ids.is_empty() {
            return;
        }
        let mut writes = Vec::with_capacity(ids.len());
        let mut out = Outgoing::new();
        for &g in &ids {
            let rd = self.replicas.get_mut(&g).expect("group").ready();
            if rd.leadership_changed {
                self.leadership_epoch
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if let Some(role) = rd.role {
                tracing::info!(group = g, node = self.node_id, ?role, "role changed");
                if role == StateRole::Leader
                    && let Some(b) = self.bells.get(&g)
                {
                    // The new leader's tasks pick up what the old one left.
                    b.transfers.notify_one();
                    b.outbox.notify_one();
                }
            }
            self.stage(&mut out, g, rd.messages);
            answer_applied(g, rd.applied, w);
            answer_reads(rd.reads, w);
            for (id, why) in rd.reads_failed {
                if let Some(s) = w.reads.remove(&id) {
                    let _ = s.send(ReadOutcome::Unavailable(why.to_string()));
                }
            }
            for (id, why) in rd.proposals_dropped {
                if let Some(waiters) = w.proposals.remove(&(g, id)) {
                    LoopStats::add(&self.stats.proposals_not_leader, waiters.len() as u64);
                    w.in_flight = w.in_flight.saturating_sub(waiters.len());
                    for s in waiters {
                        let _ = s.send(ProposeOutcome::NotLeader(why.clone()));
                    }
                }
            }
            writes.push(rd.write);
        }
        // Before the fsync: appends go out while the leader persists
        // (thesis §10.2.1).
        self.flush(&mut out);
        let refs: Vec<_> = writes.iter().collect();
        if refs.iter().any(|w| w.must_sync) {
            LoopStats::add(&self.stats.commits_synced, 1);
        } else if !refs.iter().all(|w| w.is_empty()) {
            LoopStats::add(&self.stats.commits_deferred, 1);
        }
        if let Err(e) = self.storage.write(&refs) {
            // Storage errors leave raft unable to continue safely: stop the
            // node rather than acknowledge anything more (fjall and raft-rs
            // give the same advice).
            tracing::error!("storage write failed, stopping node: {e}");
            panic!("storage write failed: {e}");
        }
        self.stats.checkpoints.store(
            self.storage.checkpoints,
            std::sync::atomic::Ordering::Relaxed,
        );
        for wb in &writes {
            // A national replica that caught up by snapshot has a new
            // directory too.
            let installed = wb
                .snapshot
                .as_ref()
                .and_then(|s| s.state.directory.as_ref());
            if let Some(img) = wb.sm.directory.as_deref().or(installed) {
                self.directory.national_applied(img.version);
            }
            if let Some(b) = self.bells.get(&wb.group_id) {
                if !wb.sm.transfers_put.is_empty() {
                    b.transfers.notify_one();
                }
                if !wb.sm.outbox_put.is_empty() {
                    b.outbox.notify_one();
                }
            }
            for t in &wb.sm.tickets {
                if let Some(e) = t.events.last() {
                    // No receivers is fine: nobody watches.
                    let _ = self.events.send((t.id.clone(), e.clone()));
                }
            }
        }
        // Every group handled stays touched for one more look: its
        // `on_persisted` may leave writes or messages for the next Ready.
        for g in ids {
            let after = self.replicas.get_mut(&g).expect("group").on_persisted();
            self.stage(&mut out, g, after.messages);
            answer_applied(g, after.applied, w);
            answer_reads(after.reads, w);
        }
        self.flush(&mut out);
    }
}

/// Has group `g`'s replica something in hand: proposals waiting for their
/// answer, reads, or a Ready not yet handled? Then it is not purged yet.
fn in_hand(r: &Replica, g: u64, w: &Waiters) -> bool {
    w.proposals.keys().any(|(pg, _)| *pg == g) || r.pending_reads() > 0 || r.has_ready()
}

/// Which purge deleted a group's data here (for the log).
#[derive(Clone, Copy)]
enum Purged {
    /// `hotline group purge` of a hosted replica.
    Hosted,
    /// `hotline group purge` of a copy only on disk.
    FromDisk,
    /// An empty replica seeded after a purge that no leader followed up
    /// within `wait` (`RaftLoop::let_go_of_stale_seeds`).
    StaleSeed { wait: Duration },
}

/// Why a purge asked on the word of a leader at `p.leader_term` with
/// commit index `p.leader_commit` is refused for a copy that has seen
/// `term` and `commit`: that leader may lack entries this copy holds.
fn beyond_leader(p: &PurgeAsk, me: u64, term: u64, commit: u64) -> Option<String> {
    (term > p.leader_term || commit > p.leader_commit).then(|| {
        format!(
            "group {}'s replica on node {me} has seen term {term} and commit index {commit}, \
             beyond its leader's (term {}, commit index {}): that leader may lack entries this \
             copy holds; not purged",
            p.group_id, p.leader_term, p.leader_commit
        )
    })
}

/// The configuration of a replica a node makes at run time: the node's
/// tuning (that of `like`, one of its replicas), this group's identity.
fn replica_config(
    like: Option<&Replica>,
    node_id: u64,
    group_id: u64,
    region: String,
) -> ReplicaConfig {
    let mut cfg = match like {
        Some(r) => r.config().clone(),
        None => ReplicaConfig::new(node_id, group_id, &region),
    };
    cfg.node_id = node_id;
    cfg.group_id = group_id;
    cfg.region = region;
    cfg
}

fn role_name(r: &Replica) -> &'static str {
    if !r.is_initialized() {
        return "joining"; // created to join at run time, waiting for a snapshot
    }
    if r.is_parked() || !r.is_member(r.node_id()) {
        return "removed";
    }
    if r.is_learner() {
        return "learner";
    }
    match r.role() {
        StateRole::Leader => "leader",
        StateRole::Follower => "follower",
        StateRole::Candidate => "candidate",
        StateRole::PreCandidate => "pre-candidate",
    }
}

/// Answers the callers of group `group`'s applied proposals.
fn answer_applied(group: u64, applied: Vec<Applied>, w: &mut Waiters) {
    for a in applied {
        let Some(waiters) = w.proposals.remove(&(group, a.request_id)) else {
            continue;
        };
        w.in_flight = w.in_flight.saturating_sub(waiters.len());
        for s in waiters {
            let _ = s.send(ProposeOutcome::Applied(a.result.clone()));
        }
    }
}

fn answer_reads(reads: Vec<ReadDone>, w: &mut Waiters) {
    for r in reads {
        if let Some(s) = w.reads.remove(&r.read_id) {
            let _ = s.send(ReadOutcome::Answer(r.answer));
        }
    }
}
