//! Online membership change of a region group: add a learner, promote it,
//! remove a member — one node at a time, proposed by the group's leader and
//! answered once the new configuration is applied there.
//!
//! Three pieces:
//! - [`change`]: the `Admin/ChangeMembership` handler (validates, hands the
//!   change to the raft loop, waits for the resulting `ConfState`);
//! - the core (`Replica::propose_conf_change`) decides what is allowed:
//!   only the leader proposes, one change at a time, a learner is promoted
//!   once caught up, the leader never removes itself (it hands over first);
//! - [`Joining`]: what the raft loop needs for nodes that join at run time.
//!   A node added to a group it did not host at start creates an empty
//!   replica on the first message from the group's leader and asks for a
//!   snapshot; the loop opens transport queues on demand to nodes it had
//!   none to (nodes that shared no group when the node started).
//!
//! A node that joined at run time hosts the group in its raft loop (status,
//! replication, votes, and it recovers the replica from disk on the first
//! message after a restart) and serves it: the loop adds the group to the
//! node's [`Hosted`] map, which the gRPC handlers route by, and the node
//! starts the group's forwarder and notifier. So a street office added as a
//! learner answers local reads and takes writes (forwarded to the leader)
//! at once. Record the change in the topology file (the group's voters and
//! learners) anyway: after a restart the node serves a joined group again
//! only once a message of the group has arrived; a node whose group is on
//! disk keeps that state and ignores the file's founding configuration.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use hotline_federation::topology::Topology;
use hotline_proto::v1::{
    ConfChangeRequest, ConfChangeResponse, PurgeReplicaRequest, PurgeReplicaResponse, RaftEnvelope,
    TransferLeaderRequest, TransferLeaderResponse,
};
use raft::eraftpb::{ConfState, Message, MessageType};
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use crate::config::NodeConfig;
use crate::core::replica::{self, ConfChangeError, MembershipOp};
use crate::faults::Faults;
use crate::raft_loop::{ConfChangeOutcome, Control, LeaderMove};
use crate::server::Handle;
use crate::{tls, transport};

/// Opens a transport queue to a peer node (spawning its sender task).
pub type PeerOpener = Box<dyn FnMut(u64) -> Option<mpsc::Sender<Vec<RaftEnvelope>>> + Send>;

/// Empty replicas (waiting for their first snapshot) a node keeps at once.
pub const MAX_JOINING_GROUPS: usize = 16;
/// Groups a node may join at run time during one process lifetime.
pub const MAX_JOINED_GROUPS: usize = 1_024;

/// The groups this node serves, by id → region: the topology's at start,
/// plus those joined at run time (added by the raft loop). The gRPC
/// handlers route by it; a joined group's id is also sent to `started`, so
/// its background tasks (forwarder, notifier) start.
pub struct Hosted {
    map: std::sync::RwLock<std::collections::BTreeMap<u64, String>>,
    started: Option<mpsc::Sender<(u64, crate::raft_loop::Bells)>>,
}

impl Hosted {
    pub fn new(
        at_start: std::collections::BTreeMap<u64, String>,
        started: Option<mpsc::Sender<(u64, crate::raft_loop::Bells)>>,
    ) -> Hosted {
        Hosted {
            map: std::sync::RwLock::new(at_start),
            started,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, std::collections::BTreeMap<u64, String>> {
        // A panic while holding the lock leaves the map itself intact.
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn region(&self, group: u64) -> Option<String> {
        self.read().get(&group).cloned()
    }

    /// The hosted group of the lowest id.
    pub fn first(&self) -> Option<u64> {
        self.read().keys().next().copied()
    }

    pub fn contains(&self, group: u64) -> bool {
        self.read().contains_key(&group)
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// A group whose replica was purged from this node: no longer served
    /// here. Joined again later, it starts new background tasks.
    pub fn leave(&self, group: u64) {
        let mut m = self.map.write().unwrap_or_else(|p| p.into_inner());
        m.remove(&group);
    }

    /// A group joined at run time, with the bells of its background tasks.
    pub fn join(&self, group: u64, region: String, bells: crate::raft_loop::Bells) {
        let mut m = self.map.write().unwrap_or_else(|p| p.into_inner());
        if m.insert(group, region).is_none()
            && let Some(tx) = &self.started
            && tx.try_send((group, bells)).is_err()
        {
            // Bounded by MAX_JOINED_GROUPS; a full queue means the node is
            // stopping (nobody starts tasks any more).
            tracing::warn!(group, "background tasks of a joined group not started");
        }
    }
}

/// What the raft loop needs to let groups and peers appear at run time.
pub struct Joining {
    topology: Arc<Topology>,
    /// The directory the node routes with: who may seed a group here. `None`
    /// (tests) means the topology's members.
    directory: Option<Arc<crate::dirsync::LiveDirectory>>,
    open: PeerOpener,
    /// Groups hosted since they were joined at run time (bounded by
    /// [`MAX_JOINED_GROUPS`]); a group leaves it when unhosted (purged).
    pub(crate) joined: std::collections::BTreeSet<u64>,
    /// Topology groups known not to be on this node's disk (so a stray
    /// message for one costs no disk read).
    pub(crate) absent: std::collections::BTreeSet<u64>,
    /// Peers no queue could be opened to (not in the topology, bad TLS
    /// files): not tried again on every send.
    unopenable: std::collections::BTreeSet<u64>,
    /// Empty replicas hosted for groups purged from this node, and when
    /// each goes again unless a leader has brought it the group by then
    /// (`RaftLoop::let_go_of_stale_seeds`). Each is a group in `joined`,
    /// so at most [`MAX_JOINED_GROUPS`].
    pub(crate) seeded_after_purge: std::collections::BTreeMap<u64, std::time::Instant>,
    /// How long such a replica waits (`tuning.purged_seed_wait_ms`).
    pub(crate) purged_seed_wait: std::time::Duration,
}

impl Joining {
    /// The production set-up, built in `run_node`: queues to other nodes of
    /// the topology are opened with the same endpoint, TLS identity, message
    /// bound and drill faults as the ones opened at start.
    pub fn new(
        cfg: &NodeConfig,
        topology: &Topology,
        directory: &Arc<crate::dirsync::LiveDirectory>,
        control: &Sender<Control>,
        faults: &Arc<Faults>,
        epoch: &transport::LeadershipEpoch,
    ) -> Option<Joining> {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no tokio runtime: peers cannot be added at run time");
            return None;
        };
        let me = cfg.id;
        let tls_files = if cfg.insecure { None } else { cfg.tls.clone() };
        let scheme = if cfg.insecure { "http" } else { "https" };
        let max = cfg.tuning.max_message_bytes;
        let topo = Arc::new(topology.clone());
        let addresses = topo.clone();
        let control = control.clone();
        let faults = faults.clone();
        let epoch = epoch.clone();
        let open: PeerOpener = Box::new(move |peer: u64| {
            if peer == me {
                return None;
            }
            let node = addresses.node(peer)?;
            let client_tls = match &tls_files {
                Some(files) => match tls::client_config(files, &tls::node_name(peer)) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::warn!(peer, "tls config for a new peer: {e}");
                        return None;
                    }
                },
                None => None,
            };
            let ep = match transport::endpoint(format!("{scheme}://{}", node.address), client_tls) {
                Ok(ep) => ep,
                Err(e) => {
                    tracing::warn!(peer, "endpoint of a new peer: {e}");
                    return None;
                }
            };
            let (tx, rx) = mpsc::channel(transport::PEER_QUEUE_BATCHES);
            rt.spawn(transport::peer_sender(
                me,
                peer,
                ep,
                max,
                rx,
                control.clone(),
                faults.clone(),
                epoch.clone(),
            ));
            tracing::info!(node = me, peer, "raft transport opened to a new peer");
            Some(tx)
        });
        let mut j = Joining::with_opener(topo, open);
        j.directory = Some(directory.clone());
        j.purged_seed_wait = std::time::Duration::from_millis(cfg.tuning.purged_seed_wait_ms);
        Some(j)
    }

    /// A set-up with a custom way of opening peer queues (tests).
    pub fn with_opener(topology: Arc<Topology>, open: PeerOpener) -> Joining {
        Joining {
            topology,
            directory: None,
            open,
            joined: Default::default(),
            absent: Default::default(),
            unopenable: Default::default(),
            seeded_after_purge: Default::default(),
            purged_seed_wait: std::time::Duration::from_millis(
                crate::config::Tuning::default().purged_seed_wait_ms,
            ),
        }
    }

    pub(crate) fn open(&mut self, peer: u64) -> Option<mpsc::Sender<Vec<RaftEnvelope>>> {
        if self.unopenable.contains(&peer) {
            return None;
        }
        let q = (self.open)(peer);
        if q.is_none() {
            self.unopenable.insert(peer);
        }
        q
    }

    pub(crate) fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The region of a group of the topology.
    pub(crate) fn group_region(&self, group: u64) -> Option<String> {
        self.topology.group(group).map(|g| g.region.clone())
    }

    /// May `msg`, from node `from`, make this node host `group` (create an
    /// empty replica), or be stepped into such a replica before it has a
    /// configuration?
    ///
    /// The sender is authenticated (the transport checked that its
    /// certificate names it). An empty replica cannot check membership, so
    /// it takes only what a leader sends: appends and heartbeats, which it
    /// answers with a snapshot request (they change nothing but its term),
    /// and a snapshot, which must be for this group, name the sender as a
    /// voter and this node as a member (raft-rs checks the latter too).
    /// The group must be one of the topology's, and the sender a member of
    /// it by the directory (the replicated one once read): a snapshot's
    /// configuration is the sender's own word, so a node outside the group
    /// could otherwise name itself a voter and seed a replica of its making.
    /// A leader added online seeds once its placement has reached this
    /// node's directory (raft sends the snapshot again until then).
    pub(crate) fn may_seed(&self, me: u64, group: u64, from: u64, msg: &Message) -> bool {
        if self.topology.group(group).is_none() || self.topology.node(from).is_none() {
            return false;
        }
        let member = match &self.directory {
            Some(d) => d.get().members(group).contains(&from),
            None => self.topology.members(group).contains(&from),
        };
        if !member {
            return false;
        }
        match msg.get_msg_type() {
            MessageType::MsgAppend | MessageType::MsgHeartbeat => true,
            MessageType::MsgSnapshot => {
                let snap = msg.get_snapshot();
                let cs = snap.get_metadata().get_conf_state();
                let names_me = replica::names(cs, me);
                let from_voter = cs.voters.contains(&from) || cs.voters_outgoing.contains(&from);
                names_me && from_voter && snapshot_group(snap.get_data()) == Some(group)
            }
            _ => false,
        }
    }
}

/// The group id a snapshot's state names (field 1 of `StateSnapshot`),
/// read without decoding the whole state.
fn snapshot_group(data: &[u8]) -> Option<u64> {
    use prost::Message as _;
    #[derive(Clone, PartialEq, prost::Message)]
    struct Head {
        #[prost(uint64, tag = "1")]
        group_id: u64,
    }
    Head::decode(data).ok().map(|h| h.group_id)
}

/// A `ConfState` as the gRPC answer.
pub fn response(group_id: u64, cs: &ConfState) -> ConfChangeResponse {
    ConfChangeResponse {
        group_id,
        voters: sorted(&cs.voters),
        learners: sorted(&cs.learners),
        voters_outgoing: sorted(&cs.voters_outgoing),
        joint: !cs.voters_outgoing.is_empty(),
    }
}

/// How a change refused because the directory does not show the group's
/// previous change yet starts its message (after the group): the CLI
/// retries those for a while, since the directory normally follows within
/// a second.
pub const DIRECTORY_BEHIND: &str = "目录尚未记录上一次成员变更";

pub use crate::core::placements::sorted;

/// The gRPC status of a refused change. Everything the caller should retry
/// at the (new) leader is `Unavailable`, which clients retry.
pub fn refusal(e: &ConfChangeError) -> Status {
    match e {
        ConfChangeError::Invalid(f) => Status::invalid_argument(f.to_string()),
        ConfChangeError::NotLeader { .. }
        | ConfChangeError::InProgress { .. }
        | ConfChangeError::NotCaughtUp { .. }
        | ConfChangeError::RemovesLeader { .. }
        | ConfChangeError::Dropped(_) => Status::unavailable(e.to_string()),
        // Not retried: the operator brings the voters back, or forces.
        ConfChangeError::WouldLoseQuorum { .. } => Status::failed_precondition(e.to_string()),
    }
}

/// What every request about a group's members checks first: both ids
/// given, and the group one this node knows (the topology's, or joined at
/// run time).
fn check_ids(h: &Handle, group_id: u64, node_id: u64) -> Result<(), Status> {
    if group_id == 0 {
        return Err(Status::invalid_argument("group_id: is required"));
    }
    if node_id == 0 {
        return Err(Status::invalid_argument("node_id: is required"));
    }
    if h.topology.group(group_id).is_none() && !h.hosted.contains(group_id) {
        return Err(Status::not_found(format!(
            "group_id: group {group_id} is not in the topology"
        )));
    }
    Ok(())
}

/// Hands `msg` to the raft loop and waits up to `timeout` for its answer
/// on `rx`; `late` words the timeout.
async fn ask_loop<T>(
    control: &Sender<Control>,
    msg: Control,
    rx: oneshot::Receiver<T>,
    timeout: Duration,
    late: impl FnOnce() -> String,
) -> Result<T, Status> {
    control
        .try_send(msg)
        .map_err(|_| Status::resource_exhausted("control queue is full"))?;
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(o)) => Ok(o),
        Ok(Err(_)) => Err(Status::unavailable("node is stopping")),
        Err(_) => Err(Status::deadline_exceeded(late())),
    }
}

fn not_hosted(h: &Handle, group_id: u64) -> Status {
    Status::failed_precondition(format!(
        "group {group_id} is not hosted on node {}; its members per the directory are nodes {:?}",
        h.node_id,
        h.dir().members(group_id)
    ))
}

/// `Admin/ChangeMembership`: validates the request, hands the change to the
/// raft loop and waits (up to `timeout`) until the group's configuration on
/// this node shows it.
///
/// The group does not have to be one the topology placed here: a node that
/// joined the group at run time and now leads it answers too.
pub async fn change(
    h: &Handle,
    control: &Sender<Control>,
    timeout: Duration,
    req: ConfChangeRequest,
) -> Result<ConfChangeResponse, Status> {
    let Some(op) = MembershipOp::parse(&req.op) else {
        return Err(Status::invalid_argument(format!(
            "op: {:?} is not add_learner, promote or remove",
            req.op
        )));
    };
    check_ids(h, req.group_id, req.node_id)?;
    // Removing a node the topology forgot is allowed (clean-up); adding one
    // is not: nobody would know its address.
    if op != MembershipOp::Remove && h.topology.node(req.node_id).is_none() {
        return Err(Status::invalid_argument(format!(
            "node_id: node {} is not in the topology",
            req.node_id
        )));
    }
    let (reply, rx) = oneshot::channel();
    let msg = Control::ConfChange {
        group_id: req.group_id,
        op,
        node: req.node_id,
        force: req.force,
        reply,
    };
    let outcome = ask_loop(control, msg, rx, timeout, || {
        format!(
            "group {}: the change was proposed but not applied within {} ms \
             (leader change or lost quorum); check `hotline group show` before retrying",
            req.group_id,
            timeout.as_millis()
        )
    })
    .await?;
    match outcome {
        ConfChangeOutcome::Applied(cs) => {
            tracing::info!(
                node = h.node_id,
                group = req.group_id,
                op = op.name(),
                target = req.node_id,
                voters = ?cs.voters,
                learners = ?cs.learners,
                "membership changed"
            );
            h.directory.changed();
            Ok(response(req.group_id, &cs))
        }
        ConfChangeOutcome::Refused(e) => Err(refusal(&e)),
        ConfChangeOutcome::NotHosted => Err(not_hosted(h, req.group_id)),
        ConfChangeOutcome::Busy => Err(Status::resource_exhausted(
            "too many membership changes waiting on this node; retry shortly",
        )),
        ConfChangeOutcome::DirectoryBehind(p, version) => {
            Err(Status::failed_precondition(format!(
                "group {}: {DIRECTORY_BEHIND} the directory (version {version}) still \
                 places it on voters {:?} and learners {:?}, not its applied configuration: \
                 wait until `hotline group directory` shows it (national's majority must be \
                 reachable), or change anyway with --force",
                req.group_id,
                sorted(&p.voters),
                sorted(&p.learners),
            )))
        }
    }
}

/// `Admin/TransferLeader`: hands the group's leadership to one of its
/// voters and waits (up to `timeout`) until this node's replica sees that
/// voter lead. Asked of the group's leader (a follower refuses with
/// `Unavailable`, naming the leader, as for membership changes).
pub async fn transfer_leader(
    h: &Handle,
    control: &Sender<Control>,
    timeout: Duration,
    req: TransferLeaderRequest,
) -> Result<TransferLeaderResponse, Status> {
    check_ids(h, req.group_id, req.node_id)?;
    let (reply, rx) = oneshot::channel();
    let msg = Control::TransferLeader {
        group_id: req.group_id,
        to: req.node_id,
        reply,
    };
    let outcome = ask_loop(control, msg, rx, timeout, || {
        format!(
            "group {}: node {} does not lead within {} ms; check `hotline group show`",
            req.group_id,
            req.node_id,
            timeout.as_millis()
        )
    })
    .await?;
    match outcome {
        LeaderMove::Done { term } => {
            tracing::info!(
                node = h.node_id,
                group = req.group_id,
                leader = req.node_id,
                term,
                "leadership transferred"
            );
            Ok(TransferLeaderResponse {
                group_id: req.group_id,
                leader_id: req.node_id,
                term,
            })
        }
        LeaderMove::Refused(e) => Err(refusal(&e)),
        LeaderMove::GivenUp { leader_id } => Err(Status::aborted(format!(
            "group {}: node {} did not take the leadership (not caught up, or unreachable); \
             the leader is {}",
            req.group_id,
            req.node_id,
            if leader_id == raft::INVALID_ID {
                "not known".to_string()
            } else {
                format!("node {leader_id}")
            }
        ))),
        LeaderMove::NotHosted => Err(not_hosted(h, req.group_id)),
        LeaderMove::Busy => Err(Status::resource_exhausted(
            "too many leadership transfers waiting on this node; retry shortly",
        )),
    }
}

/// The groups node `node` starts with: those the topology file places on
/// it, less those purged from it (`hotline group purge`). Groups joined at
/// run time come back only on a leader's message, after the start.
pub fn groups_at_start(
    topology: &Topology,
    node: u64,
    storage: &crate::storage::Storage,
) -> Vec<u64> {
    topology
        .groups_of(node)
        .into_iter()
        .filter(|&g| storage.purged_at(g).is_none())
        .collect()
}

/// How long `Admin/PurgeReplica` waits for the loop at least.
const PURGE_TIMEOUT: Duration = Duration::from_secs(25);

/// `Admin/PurgeReplica`: deletes this node's replica of a group it was
/// removed from, and the group's data on its disk, once the replica shows
/// itself removed (`RaftLoop::purge` says what else it refuses). Asked of
/// the node that holds the replica; answered once the deletion is durable.
pub async fn purge(
    h: &Handle,
    control: &Sender<Control>,
    timeout: Duration,
    req: PurgeReplicaRequest,
) -> Result<PurgeReplicaResponse, Status> {
    if req.group_id == 0 {
        return Err(Status::invalid_argument("group_id: is required"));
    }
    if req.leader_term == 0 {
        return Err(Status::invalid_argument(
            "leader_term: is required (the term of the group's leader that no longer counts \
             this node a member)",
        ));
    }
    let (reply, rx) = oneshot::channel();
    let msg = Control::Purge {
        ask: crate::raft_loop::PurgeAsk {
            group_id: req.group_id,
            leader_term: req.leader_term,
            leader_commit: req.leader_commit,
            at_ms: crate::server::now_ms().max(0) as u64,
        },
        reply,
    };
    // A purge deletes one group's rows in one checkpoint: on a busy node
    // that may take longer than an ordinary request.
    let timeout = timeout.max(PURGE_TIMEOUT);
    let outcome = ask_loop(control, msg, rx, timeout, || {
        format!(
            "group {}: node {} did not answer the purge within {} ms; it may still complete \
             (run the command again to see)",
            req.group_id,
            h.node_id,
            timeout.as_millis()
        )
    })
    .await?;
    match outcome {
        crate::raft_loop::PurgeOutcome::Done { tickets } => Ok(PurgeReplicaResponse {
            group_id: req.group_id,
            node_id: h.node_id,
            tickets_deleted: tickets as u64,
        }),
        crate::raft_loop::PurgeOutcome::NotHosted { purged_at_ms } => {
            let when = purged_at_ms.map_or(String::new(), |at| {
                let at = jiff::Timestamp::from_millisecond(at as i64)
                    .map_or(at.to_string(), |t| t.to_string());
                format!(" (purged at {at})")
            });
            Err(Status::not_found(format!(
                "group {} has no replica on node {}{when}",
                req.group_id, h.node_id
            )))
        }
        crate::raft_loop::PurgeOutcome::Refused(why) => Err(Status::failed_precondition(why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotline_proto::v1::StateSnapshot;

    #[test]
    fn ops_parse_and_name() {
        for op in [
            MembershipOp::AddLearner,
            MembershipOp::Promote,
            MembershipOp::Remove,
        ] {
            assert_eq!(MembershipOp::parse(op.name()), Some(op));
        }
        assert_eq!(
            MembershipOp::parse("add-learner"),
            Some(MembershipOp::AddLearner)
        );
        assert_eq!(MembershipOp::parse("demote"), None);
    }

    #[test]
    fn snapshot_group_reads_the_state_head() {
        use prost::Message as _;
        let s = StateSnapshot {
            group_id: 310114,
            ..Default::default()
        };
        assert_eq!(snapshot_group(&s.encode_to_vec()), Some(310114));
        assert_eq!(snapshot_group(&[0xff, 0xff]), None);
    }

    /// A snapshot seeds a replica here only from a member of the group by
    /// the directory; the configuration inside it is the sender's word.
    #[test]
    fn only_a_member_by_the_directory_may_seed() {
        use prost::Message as _;
        let topo = Topology::demo();
        let snapshot = |from: u64| {
            let mut m = Message::default();
            m.set_msg_type(MessageType::MsgSnapshot);
            m.from = from;
            let snap = m.mut_snapshot();
            snap.data = StateSnapshot {
                group_id: 310114,
                ..Default::default()
            }
            .encode_to_vec()
            .into();
            let cs = snap.mut_metadata().mut_conf_state();
            cs.voters = vec![from, 2];
            cs.learners = vec![5];
            m
        };
        let members = topo.members(310114);
        let outsider = topo
            .nodes
            .iter()
            .map(|n| n.id)
            .find(|n| !members.contains(n) && *n != 5)
            .expect("a node outside 嘉定's group");
        let live = Arc::new(crate::dirsync::LiveDirectory::new(&topo));
        let mut j = Joining::with_opener(Arc::new(topo.clone()), Box::new(|_| None));
        j.directory = Some(live.clone());
        let leader = members[0];
        assert!(j.may_seed(5, 310114, leader, &snapshot(leader)));
        // Naming itself a voter does not make the outsider one.
        assert!(!j.may_seed(5, 310114, outsider, &snapshot(outsider)));
        // Once the replicated directory places it in the group, it may.
        let mut voters = members.clone();
        voters.push(outsider);
        live.offer(hotline_proto::v1::DirectoryImage {
            version: 1,
            groups: vec![hotline_proto::v1::Placement {
                group_id: 310114,
                region: "310114".into(),
                voters,
                learners: vec![5],
            }],
        });
        assert!(j.may_seed(5, 310114, outsider, &snapshot(outsider)));
    }

    #[test]
    fn refusals_that_a_retry_can_fix_are_unavailable() {
        let e = ConfChangeError::InProgress { group_id: 1 };
        assert_eq!(refusal(&e).code(), tonic::Code::Unavailable);
        let e = ConfChangeError::Invalid(crate::core::FieldError {
            field: "node_id",
            reason: "x".into(),
        });
        assert_eq!(refusal(&e).code(), tonic::Code::InvalidArgument);
    }
}
