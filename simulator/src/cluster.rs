//! `MemCluster`: N replicas of one group on simulated disks and a simulated
//! network with seeded faults. The smallest driver of the core: the same
//! Ready/persist/advance loop the node runs, with no threads and no clock.
//!
//! Also the checker: every entry a replica applies is recorded by index and
//! compared across replicas, so a committed entry that is lost or changed is
//! caught at the step that did it.

use std::collections::BTreeMap;

use hotline_node::core::{Applied, ApplyResult, Replica, ReplicaConfig};
use hotline_proto::v1::{AcceptRequest, Command, Kind, command};
use raft::eraftpb::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::disk::MemDisk;

/// Fault probabilities, each per message or per step.
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    pub drop: f64,
    pub duplicate: f64,
    /// Deliver a random queued message instead of the oldest.
    pub reorder: f64,
    /// Crash and restart a random node (per step).
    pub crash: f64,
}

impl Faults {
    pub const NONE: Faults = Faults {
        drop: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        crash: 0.0,
    };
}

pub const GROUP_ID: u64 = 310114;
const REGION: &str = "310114";
/// 2026-11-28 00:00 CST, the simulated epoch.
const EPOCH_MS: i64 = 1_795_795_200_000;

pub struct MemCluster {
    pub replicas: BTreeMap<u64, Replica>,
    pub disks: BTreeMap<u64, MemDisk>,
    /// In-flight messages, oldest first.
    pub network: Vec<Message>,
    pub rng: StdRng,
    pub faults: Faults,
    /// Nodes cut off from everyone (both directions).
    pub isolated: Vec<u64>,
    /// index → (term, request_id): the first application seen of each index.
    pub committed: BTreeMap<u64, (u64, u64)>,
    /// request ids acknowledged to a client (applied on the proposing node).
    pub acked: BTreeMap<u64, String>,
    /// Reads (`Replica::read`) served and failed, by read id, in order.
    pub reads_served: Vec<u64>,
    pub reads_failed: Vec<(u64, hotline_node::core::ReadFailed)>,
    /// Proposals a Ready said will not be answered here, and why.
    pub proposals_dropped: Vec<(u64, hotline_node::core::ProposeError)>,
    pub steps: u64,
    pub compact_log_entries: u64,
    pub compact_log_bytes: u64,
    next_request: u64,
    voters: Vec<u64>,
}

impl MemCluster {
    pub fn new(nodes: u64, seed: u64, faults: Faults) -> Self {
        Self::with_compaction(nodes, seed, faults, 50, 4 * 1024 * 1024)
    }

    /// A cluster whose replicas start with these log bounds
    /// (`ReplicaConfig::compact_log_entries` and `compact_log_bytes`).
    pub fn with_compaction(
        nodes: u64,
        seed: u64,
        faults: Faults,
        compact_log_entries: u64,
        compact_log_bytes: u64,
    ) -> Self {
        let voters: Vec<u64> = (1..=nodes).collect();
        let mut c = MemCluster {
            replicas: BTreeMap::new(),
            disks: BTreeMap::new(),
            network: Vec::new(),
            rng: StdRng::seed_from_u64(seed),
            faults,
            isolated: Vec::new(),
            committed: BTreeMap::new(),
            acked: BTreeMap::new(),
            reads_served: Vec::new(),
            reads_failed: Vec::new(),
            proposals_dropped: Vec::new(),
            steps: 0,
            compact_log_entries,
            compact_log_bytes,
            next_request: 1,
            voters: voters.clone(),
        };
        for id in voters {
            c.disks.insert(id, MemDisk::default());
            c.start(id);
        }
        c
    }

    fn replica_config(&self, id: u64) -> ReplicaConfig {
        let mut cfg = ReplicaConfig::new(id, GROUP_ID, REGION);
        cfg.deterministic_elections = true;
        cfg.compact_log_entries = self.compact_log_entries;
        cfg.compact_log_bytes = self.compact_log_bytes;
        cfg
    }

    /// Starts (or restarts) a node from what its disk kept.
    pub fn start(&mut self, id: u64) {
        let disk = &self.disks[&id];
        let rec = if disk.is_blank() {
            hotline_node::core::Recovered::bootstrap(&self.voters)
        } else {
            disk.recovered(GROUP_ID)
        };
        let r = Replica::new(self.replica_config(id), rec).expect("replica starts");
        self.replicas.insert(id, r);
    }

    pub fn crash(&mut self, id: u64) {
        self.replicas.remove(&id);
        self.disks.get_mut(&id).expect("disk").crash();
        self.network.retain(|m| m.to != id);
    }

    /// A wiped data directory: the node restarts with nothing.
    pub fn wipe(&mut self, id: u64) {
        self.crash(id);
        self.disks.insert(id, MemDisk::default());
    }

    pub fn leader(&self) -> Option<u64> {
        self.replicas
            .values()
            .filter(|r| r.is_leader())
            .max_by_key(|r| r.term())
            .map(|r| r.node_id())
    }

    /// Proposes an accept on `node`; returns the request id.
    pub fn propose_accept(&mut self, node: u64, text: &str) -> Option<u64> {
        let request_id = self.next_request;
        self.next_request += 1;
        self.propose_accept_as(node, request_id, text)
    }

    /// Proposes an accept with a given request id (a proposer's retry).
    pub fn propose_accept_as(&mut self, node: u64, request_id: u64, text: &str) -> Option<u64> {
        let cmd = Command {
            request_id,
            at_ms: EPOCH_MS + self.steps as i64,
            accept_text: Vec::new(),
            op: Some(command::Op::Accept(AcceptRequest {
                region: REGION.into(),
                kind: Kind::Complaint as i32,
                category: "城乡建设".into(),
                text: text.into(),
                phone: "13800000000".into(),
                request_id,
                ..Default::default()
            })),
        };
        let r = self.replicas.get_mut(&node)?;
        r.propose(&cmd).ok().map(|()| request_id)
    }

    fn record(&mut self, node: u64, applied: Vec<Applied>) {
        for a in applied {
            let term = 0; // terms are checked through the request id
            match self.committed.get(&a.index) {
                Some(&(_, rid)) => assert_eq!(
                    rid, a.request_id,
                    "node {node} applied request {} at index {} where another node applied {rid}",
                    a.request_id, a.index
                ),
                None => {
                    self.committed.insert(a.index, (term, a.request_id));
                }
            }
            if let ApplyResult::Ticket(t) = a.result {
                self.acked.entry(a.request_id).or_insert(t.id.clone());
            }
        }
    }

    fn handle_ready(&mut self, id: u64) {
        let Some(r) = self.replicas.get_mut(&id) else {
            return;
        };
        if !r.has_ready() {
            return;
        }
        let rd = r.ready();
        let write = rd.write;
        let mut msgs = rd.messages;
        let applied = rd.applied;
        self.reads_served
            .extend(rd.reads.into_iter().map(|d| d.read_id));
        self.reads_failed.extend(rd.reads_failed);
        self.proposals_dropped.extend(rd.proposals_dropped);
        self.disks.get_mut(&id).expect("disk").write(write);
        let r = self.replicas.get_mut(&id).expect("replica");
        let after = r.on_persisted();
        self.reads_served
            .extend(after.reads.into_iter().map(|d| d.read_id));
        msgs.extend(after.messages);
        self.send(msgs);
        self.record(id, applied);
        self.record(id, after.applied);
    }

    fn send(&mut self, msgs: Vec<Message>) {
        for m in msgs {
            if self.rng.gen_bool(self.faults.drop) {
                continue;
            }
            if self.rng.gen_bool(self.faults.duplicate) {
                self.network.push(m.clone());
            }
            self.network.push(m);
        }
    }

    fn deliver_one(&mut self) {
        if self.network.is_empty() {
            return;
        }
        let i = if self.rng.gen_bool(self.faults.reorder) {
            self.rng.gen_range(0..self.network.len())
        } else {
            0
        };
        let m = self.network.remove(i);
        if self.isolated.contains(&m.from) || self.isolated.contains(&m.to) {
            return;
        }
        let Some(r) = self.replicas.get_mut(&m.to) else {
            return;
        };
        if r.knows_not_member(m.from) {
            // As the node's raft loop does: refused, and the sender told
            // it is not a member by this replica's configuration
            // (`RaftEnvelope.not_a_member`), an answer on the same link.
            let (from, to) = (m.from, m.to);
            if let Some(sender) = self.replicas.get_mut(&from) {
                sender.not_a_member(to);
            }
            return;
        }
        r.step(m);
    }

    /// One scheduler step: deliver a message or tick everyone, then run
    /// every node's Ready loop.
    pub fn step(&mut self) {
        self.steps += 1;
        if self.rng.gen_bool(self.faults.crash) {
            let ids: Vec<u64> = self.disks.keys().copied().collect();
            let id = ids[self.rng.gen_range(0..ids.len())];
            if self.replicas.contains_key(&id) {
                self.crash(id);
            } else {
                self.start(id);
            }
        }
        if self.network.is_empty() || self.rng.gen_ratio(1, 8) {
            self.tick_all();
        } else {
            let n = self.rng.gen_range(1..=self.network.len().min(8));
            for _ in 0..n {
                self.deliver_one();
            }
        }
        self.handle_readies();
    }

    fn tick_all(&mut self) {
        for r in self.replicas.values_mut() {
            r.tick();
        }
    }

    /// Node liveness, as a node runs it every tick, with this cluster's
    /// network as the oracle: nobody hears a crashed node, and an isolated
    /// node hears nobody. Wakes hibernating followers of an unheard leader
    /// and steps down a hibernating leader that hears no majority.
    pub fn scan_liveness(&mut self) -> usize {
        let up: Vec<u64> = self.replicas.keys().copied().collect();
        let isolated = &self.isolated;
        let mut woke = 0;
        for (&me, r) in self.replicas.iter_mut() {
            let cut = |n: u64| {
                n != me && (!up.contains(&n) || isolated.contains(&n) || isolated.contains(&me))
            };
            woke += hotline_node::core::liveness::wake_orphans([r], cut);
        }
        woke
    }

    /// Runs every live node's Ready loop once.
    fn handle_readies(&mut self) {
        let ids: Vec<u64> = self.replicas.keys().copied().collect();
        for id in ids {
            self.handle_ready(id);
        }
    }

    pub fn run(&mut self, steps: u64) {
        for _ in 0..steps {
            self.step();
        }
    }

    /// Runs fault-free until every node has applied `index`, or gives up.
    pub fn settle(&mut self, max_steps: u64) -> bool {
        let saved = self.faults;
        self.faults = Faults::NONE;
        self.isolated.clear();
        let ids: Vec<u64> = self.disks.keys().copied().collect();
        for id in ids {
            if !self.replicas.contains_key(&id) {
                self.start(id);
            }
        }
        let mut ok = false;
        for _ in 0..max_steps {
            self.step();
            // Settled: the leader has committed everything in its log (so
            // its term's no-op too) and every node has applied that far.
            let Some(l) = self.leader() else { continue };
            let target = self.replicas[&l].last_index();
            if self.replicas[&l].commit_index() == target
                && self.replicas.values().all(|r| r.applied() >= target)
            {
                ok = true;
                break;
            }
        }
        self.faults = saved;
        ok
    }

    /// The ticket ids a node holds, read straight from its state machine.
    pub fn ticket_ids(&self, node: u64) -> Vec<String> {
        let r = &self.replicas[&node];
        let mut ts: Vec<&hotline_proto::v1::Ticket> = r.tickets().tickets().collect();
        ts.sort_by_key(|t| std::cmp::Reverse(t.raft_index));
        ts.into_iter().map(|t| t.id.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::MessageType;

    #[test]
    fn three_replicas_elect_and_replicate() {
        let mut c = MemCluster::new(3, 1, Faults::NONE);
        c.run(200);
        let leader = c.leader().expect("a leader within 200 steps");
        for i in 0..20 {
            c.propose_accept(leader, &format!("ticket {i}"))
                .expect("leader accepts");
            c.run(5);
        }
        assert!(c.settle(2_000));
        assert_eq!(c.acked.len(), 20);
        let a = c.ticket_ids(1);
        assert_eq!(a.len(), 20);
        assert_eq!(a, c.ticket_ids(2));
        assert_eq!(a, c.ticket_ids(3));
    }

    /// A settled cluster and its leader.
    fn settled() -> (MemCluster, u64) {
        let mut c = MemCluster::new(3, 7, Faults::NONE);
        c.run(200);
        assert!(c.settle(2_000));
        let l = c.leader().expect("leader");
        (c, l)
    }

    /// Runs the Ready loops and delivers every message, without ticks (so
    /// no heartbeat carries anything).
    fn drain(c: &mut MemCluster) {
        c.handle_readies();
        for _ in 0..1_000 {
            if c.network.is_empty() {
                return;
            }
            c.deliver_one();
            c.handle_readies();
        }
        panic!("messages kept flowing without ticks");
    }

    /// A linearizable read for the read tests (what it finds does not matter).
    fn a_lookup() -> hotline_node::core::Query {
        hotline_node::core::Query::Get {
            id: "310114-310114-20261128-000001".into(),
            now_ms: 0,
        }
    }

    /// Scans liveness, ticks everyone and drains, as a node's loop does,
    /// at most `max_ticks` times, until `done`; returns the ticks taken.
    fn tick_until(c: &mut MemCluster, max_ticks: u64, done: impl Fn(&MemCluster) -> bool) -> u64 {
        for ticks in 0..max_ticks {
            if done(c) {
                return ticks;
            }
            c.scan_liveness();
            c.tick_all();
            drain(c);
        }
        max_ticks
    }

    /// The notifier and the forwarder read their leader's own replica (no
    /// ReadIndex round), so a new leader must not pass for settled before it
    /// has applied what was committed before its election: its term's no-op
    /// marks that.
    #[test]
    fn a_new_leader_is_settled_only_once_its_no_op_is_applied() {
        let (mut c, old) = settled();
        assert!(c.replicas[&old].is_settled_leader());
        for i in 0..5 {
            c.propose_accept(old, &format!("ticket {i}"))
                .expect("accepted");
        }
        drain(&mut c);
        let before = c.ticket_ids(old);
        assert_eq!(before.len(), 5);
        assert!(
            c.replicas
                .values()
                .all(|r| r.is_leader() == r.is_settled_leader()),
            "followers are never settled leaders, a leader with everything applied is"
        );
        c.crash(old);
        // A follower that hibernated wakes once its leader is unreachable.
        c.scan_liveness();
        let mut new = None;
        for _ in 0..10_000 {
            if c.network.is_empty() {
                c.tick_all();
            } else {
                c.deliver_one();
            }
            // Looked at before its Ready: the vote that made it leader is
            // stepped, its no-op is not even persisted.
            if let Some(r) = c.replicas.values().find(|r| r.is_leader()) {
                assert!(
                    !r.is_settled_leader(),
                    "a leader of a moment is not settled"
                );
                new = Some(r.node_id());
                break;
            }
            c.handle_readies();
        }
        let new = new.expect("a new leader");
        assert_ne!(new, old);
        drain(&mut c);
        assert!(c.replicas[&new].is_settled_leader());
        assert_eq!(c.replicas[&new].applied(), c.replicas[&new].commit_index());
        assert_eq!(
            c.ticket_ids(new),
            before,
            "what was committed before, applied"
        );
    }

    /// A hibernating leader does not tick, so raft's quorum check cannot
    /// depose it. Cut off from a majority of its voters it steps down when
    /// node liveness says so (and only then), instead of calling itself
    /// leader while the majority elects another.
    #[test]
    fn a_hibernating_leader_cut_off_from_a_majority_steps_down() {
        use hotline_node::core::liveness::wake_orphans;
        let (mut c, l) = settled();
        tick_until(&mut c, 200, |c| c.replicas[&l].is_quiesced());
        assert!(c.replicas[&l].is_quiesced(), "the idle group hibernates");
        let followers: Vec<u64> = c.replicas.keys().copied().filter(|&n| n != l).collect();
        // One follower silent: a majority is still heard.
        let one = followers[0];
        assert_eq!(wake_orphans(c.replicas.get_mut(&l), |n| n == one), 0);
        assert!(c.replicas[&l].is_leader() && c.replicas[&l].is_quiesced());
        // Both silent: it steps down, awake, and says so in its next Ready.
        assert_eq!(wake_orphans(c.replicas.get_mut(&l), |n| n != l), 1);
        let r = c.replicas.get_mut(&l).expect("replica");
        assert!(!r.is_leader() && !r.is_quiesced());
        assert_eq!(r.leader_id(), 0);
        assert!(r.has_ready());
        let rd = r.ready();
        assert_eq!(rd.role, Some(raft::StateRole::Follower));
        r.on_persisted();
    }

    /// A follower does not take a proposal it would forward to a leader it
    /// cannot hear (it would be lost there, and its proposer would wait out
    /// its deadline); the leader itself, and a follower that hears it, do.
    #[test]
    fn a_follower_refuses_proposals_for_a_leader_it_cannot_hear() {
        use hotline_node::core::ProposeError;
        let (c, l) = settled();
        let f = *c.replicas.keys().find(|&&n| n != l).expect("a follower");
        let follower = &c.replicas[&f];
        assert_eq!(follower.leader_id(), l);
        assert_eq!(follower.check_leader_reachable(|_| false), Ok(()));
        let err = follower.check_leader_reachable(|n| n == l).unwrap_err();
        assert_eq!(
            err,
            ProposeError::LeaderUnreachable {
                group_id: follower.group_id(),
                leader_id: l,
            }
        );
        assert!(err.to_string().contains(&format!("node {l}")), "{err}");
        assert_eq!(
            follower.check_leader_reachable(|n| n != l),
            Ok(()),
            "only the leader's node matters"
        );
        assert_eq!(
            c.replicas[&l].check_leader_reachable(|_| true),
            Ok(()),
            "a leader proposes to itself"
        );
    }

    /// A read waiting for its leader's confirmation fails as soon as that
    /// leader steps down (here: cut off from both followers, its quorum
    /// check deposes it), so the caller asks another node instead of
    /// waiting out its deadline; a read at a healthy leader is served.
    #[test]
    fn a_read_waiting_on_a_deposed_leader_fails_at_once() {
        use hotline_node::core::ReadFailed;
        let (mut c, l) = settled();
        c.replicas.get_mut(&l).expect("leader").read(1, a_lookup());
        tick_until(&mut c, 100, |c| !c.reads_served.is_empty());
        assert_eq!(c.reads_served, [1], "a healthy leader serves its read");
        let followers: Vec<u64> = c.replicas.keys().copied().filter(|&n| n != l).collect();
        for f in followers {
            c.crash(f);
        }
        c.replicas.get_mut(&l).expect("leader").read(2, a_lookup());
        let ticks = tick_until(&mut c, 100, |c| !c.reads_failed.is_empty());
        assert_eq!(c.reads_served, [1], "no majority confirms read 2");
        assert_eq!(c.reads_failed, [(2, ReadFailed::LeaderChanged)]);
        assert!(!c.replicas[&l].is_leader());
        assert!(
            ticks <= 25,
            "failed when the leader stepped down, at tick {ticks}"
        );
    }

    /// A follower's read whose leader dies before confirming it is not
    /// failed: the follower asks the new leader, which serves it.
    #[test]
    fn a_followers_read_across_a_leader_change_is_served_by_the_new_leader() {
        let (mut c, l) = settled();
        let f = *c.replicas.keys().find(|&&n| n != l).expect("a follower");
        c.replicas
            .get_mut(&f)
            .expect("follower")
            .read(5, a_lookup());
        c.handle_ready(f);
        c.crash(l);
        tick_until(&mut c, 200, |c| !c.reads_served.is_empty());
        assert!(c.reads_failed.is_empty(), "{:?}", c.reads_failed);
        assert_eq!(c.reads_served, [5]);
        assert!(c.leader().is_some_and(|n| n != l));
    }

    /// A proposal a follower forwarded to a leader that died before taking
    /// it is answered `LeaderChanged` as soon as the follower stops
    /// following that leader (raft-rs does not forward it again), instead
    /// of leaving its proposer to wait out its deadline.
    #[test]
    fn a_proposal_forwarded_to_a_leader_that_is_gone_is_answered_leader_changed() {
        use hotline_node::core::ProposeError;
        let (mut c, l) = settled();
        let f = *c.replicas.keys().find(|&&n| n != l).expect("a follower");
        let group_id = c.replicas[&f].group_id();
        let rid = c.propose_accept(f, "转发途中领导者宕机").expect("proposed");
        c.handle_ready(f);
        assert!(
            c.network.iter().any(|m| m.to == l && !m.entries.is_empty()),
            "forwarded to the leader"
        );
        c.crash(l);
        tick_until(&mut c, 200, |c| !c.proposals_dropped.is_empty());
        assert_eq!(
            c.proposals_dropped,
            [(rid, ProposeError::LeaderChanged { group_id })]
        );
        assert!(!c.acked.contains_key(&rid), "lost with the old leader");
    }

    /// A leader cut off before its proposal commits is deposed by its
    /// quorum check and answers the proposal `LeaderChanged` then, not at
    /// its proposer's deadline. The proposer's retry, with the same request
    /// id, is accepted by the new leader once.
    #[test]
    fn a_deposed_leaders_own_proposal_is_answered_leader_changed() {
        use hotline_node::core::ProposeError;
        let (mut c, l) = settled();
        let group_id = c.replicas[&l].group_id();
        let rid = c.propose_accept(l, "领导者被隔离前受理").expect("proposed");
        c.isolated.push(l);
        let ticks = tick_until(&mut c, 100, |c| !c.proposals_dropped.is_empty());
        assert_eq!(
            c.proposals_dropped,
            [(rid, ProposeError::LeaderChanged { group_id })]
        );
        assert!(!c.replicas[&l].is_leader());
        assert!(
            ticks <= 25,
            "answered when it stepped down, at tick {ticks}"
        );
        assert!(!c.acked.contains_key(&rid), "nothing reached a majority");

        tick_until(&mut c, 200, |c| c.leader().is_some_and(|n| n != l));
        let n = c.leader().expect("a new leader");
        c.proposals_dropped.clear();
        c.propose_accept_as(n, rid, "领导者被隔离前受理")
            .expect("retried at the new leader");
        c.isolated.clear();
        tick_until(&mut c, 200, |c| c.acked.contains_key(&rid));
        assert!(c.settle(2_000));
        let at: Vec<u64> = c
            .committed
            .iter()
            .filter(|&(_, &(_, r))| r == rid)
            .map(|(&i, _)| i)
            .collect();
        assert_eq!(at.len(), 1, "one entry of request {rid}: {at:?}");
        assert!(c.proposals_dropped.is_empty(), "{:?}", c.proposals_dropped);
    }

    /// A leader's proposal that committed is answered by its apply: when
    /// the leader is deposed afterwards, nothing is answered again.
    #[test]
    fn a_committed_proposal_is_not_answered_again_when_its_leader_is_deposed() {
        let (mut c, l) = settled();
        let rid = c.propose_accept(l, "提交后领导者被隔离").expect("proposed");
        tick_until(&mut c, 100, |c| c.acked.contains_key(&rid));
        assert!(c.acked.contains_key(&rid));
        c.isolated.push(l);
        tick_until(&mut c, 100, |c| !c.replicas[&l].is_leader());
        assert!(!c.replicas[&l].is_leader());
        assert!(c.proposals_dropped.is_empty(), "{:?}", c.proposals_dropped);
    }

    /// A read asked before any leader is known (raft-rs drops its
    /// ReadIndex) is asked again at the first tick after a leader is known,
    /// not an election timeout after it was first asked.
    #[test]
    fn a_read_asked_before_any_leader_is_asked_again_once_one_is_known() {
        let mut c = MemCluster::new(3, 7, Faults::NONE);
        c.replicas.get_mut(&3).expect("replica").read(9, a_lookup());
        drain(&mut c);
        let mut known_at = None;
        for tick in 1..=60u64 {
            c.tick_all();
            drain(&mut c);
            if !c.reads_served.is_empty() {
                let known = known_at.expect("served only once a leader is known");
                assert_eq!(c.reads_served, [9]);
                assert!(
                    tick <= known + 2,
                    "served at tick {tick}, leader known at tick {known}"
                );
                return;
            }
            if known_at.is_none() && c.replicas[&3].leader_id() != 0 {
                known_at = Some(tick);
            }
        }
        panic!("the read was never served (leader known at {known_at:?})");
    }

    #[test]
    fn proposals_between_two_readies_share_one_append_per_follower() {
        let (mut c, l) = settled();
        for i in 0..10 {
            c.propose_accept(l, &format!("t{i}")).expect("proposed");
        }
        c.handle_ready(l);
        let appends: Vec<&Message> = c
            .network
            .iter()
            .filter(|m| m.from == l && m.get_msg_type() == MessageType::MsgAppend)
            .collect();
        assert_eq!(appends.len(), 2, "one append per follower");
        assert!(appends.iter().all(|m| m.entries.len() == 10));
        drain(&mut c);
        assert_eq!(c.ticket_ids(l).len(), 10);
    }

    /// Ticks every replica once and runs the Ready loops; returns raft's
    /// own heartbeats (empty context) the leader `l` sent.
    fn tick_and_count_heartbeats(c: &mut MemCluster, l: u64) -> usize {
        c.tick_all();
        c.handle_readies();
        c.network
            .iter()
            .filter(|m| {
                m.from == l && m.get_msg_type() == MessageType::MsgHeartbeat && m.context.is_empty()
            })
            .count()
    }

    #[test]
    fn a_busy_group_sends_no_heartbeats_and_an_idle_one_does() {
        let (mut c, l) = settled();
        let term = c.replicas[&l].term();
        // Busy for three election timeouts: an accept between every two
        // ticks. The appends keep the followers from campaigning.
        let mut busy_beats = 0;
        for i in 0..60 {
            c.propose_accept(l, &format!("t{i}")).expect("proposed");
            c.handle_ready(l);
            drain(&mut c);
            busy_beats += tick_and_count_heartbeats(&mut c, l);
            drain(&mut c);
        }
        assert_eq!(busy_beats, 0, "appends stand in for heartbeats");
        assert_eq!(c.leader(), Some(l));
        assert_eq!(c.replicas[&l].term(), term, "no election while busy");
        // Idle: from the first interval without an append, a heartbeat to
        // each follower every tick again (until the group hibernates).
        let idle_beats: Vec<usize> = (0..3)
            .map(|_| {
                let n = tick_and_count_heartbeats(&mut c, l);
                drain(&mut c);
                n
            })
            .collect();
        assert_eq!(idle_beats, vec![2, 2, 2]);
        assert!(c.settle(1_000));
        assert_eq!(c.ticket_ids(l).len(), 60);
        for id in 1..=3 {
            assert_eq!(c.ticket_ids(id), c.ticket_ids(l), "node {id}");
        }
    }

    #[test]
    fn a_follower_applies_its_forwarded_proposal_without_waiting_for_a_heartbeat() {
        let (mut c, l) = settled();
        let f = (1..=3).find(|&i| i != l).expect("a follower");
        let other = 6 - l - f;
        c.propose_accept(f, "via follower").expect("proposed");
        c.handle_ready(f);
        drain(&mut c);
        // The proposer's client is answered when the proposer applies: the
        // leader told it the commit index although raft broadcasts none.
        assert_eq!(c.ticket_ids(f).len(), 1);
        assert_eq!(c.ticket_ids(l).len(), 1);
        // The third replica learns the commit with the next heartbeat.
        assert!(c.ticket_ids(other).is_empty());
        assert!(c.settle(1_000));
        assert_eq!(c.ticket_ids(other).len(), 1);
    }

    #[test]
    fn a_trailing_follower_does_not_refuse_what_the_leader_accepts() {
        let (mut c, l) = settled();
        let f = (1..=3).find(|&i| i != l).expect("a follower");
        c.propose_accept(l, "accepted at the leader")
            .expect("proposed");
        c.handle_ready(l);
        drain(&mut c);
        let id = c.ticket_ids(l).pop().expect("applied on the leader");
        assert!(
            c.ticket_ids(f).is_empty(),
            "the follower has not applied it yet"
        );
        let cmd = Command {
            request_id: 99,
            at_ms: EPOCH_MS + 1_000,
            accept_text: Vec::new(),
            op: Some(command::Op::Ticket(hotline_proto::v1::TicketCommand {
                ticket_id: id,
                actor: Some(hotline_proto::v1::Actor {
                    id: "op-1".into(),
                    role: hotline_proto::v1::Role::CallTaker as i32,
                }),
                reason: String::new(),
                op: Some(hotline_proto::v1::ticket_command::Op::Dispatch(
                    hotline_proto::v1::Dispatch {
                        lead_unit: "区城管委".into(),
                        ..Default::default()
                    },
                )),
            })),
        };
        assert!(
            c.replicas[&f].tickets().check(&cmd).is_err(),
            "state trails"
        );
        assert!(c.replicas[&f].precheck(&cmd).is_ok());
        assert!(c.replicas[&l].precheck(&cmd).is_ok());
    }

    /// Entries held in a replica's in-memory log.
    fn held(c: &MemCluster, id: u64) -> u64 {
        let r = &c.replicas[&id];
        r.last_index() + 1 - r.first_index()
    }

    #[test]
    fn a_healthy_group_keeps_only_a_short_log_everywhere() {
        // The entry bound alone would keep up to 20,000 entries here.
        let mut c = MemCluster::with_compaction(3, 11, Faults::NONE, 10_000, 64 << 20);
        c.run(200);
        for i in 0..3_000 {
            let l = c.leader().expect("leader");
            c.propose_accept(l, &format!("ticket {i}"));
            c.run(2);
        }
        assert!(c.settle(20_000));
        let leader = c.leader().expect("leader");
        assert!(c.replicas[&leader].applied() > 3_000);
        // Every member holds what the leader compacts (its step is 256),
        // and a follower keeps one step to two behind its applied index.
        assert!(held(&c, leader) <= 256, "leader holds {}", held(&c, leader));
        for id in 1..=3 {
            assert!(held(&c, id) <= 512, "node {id} holds {}", held(&c, id));
        }
    }

    #[test]
    fn a_silent_follower_pins_the_leaders_log_only_up_to_the_bounds() {
        let text = "x".repeat(1024);
        for (entries, bytes) in [(10_000, 1 << 20), (400, 64 << 20)] {
            let mut c = MemCluster::with_compaction(3, 5, Faults::NONE, entries, bytes);
            c.run(200);
            let leader = c.leader().expect("leader");
            let silent = (1..=3).find(|&i| i != leader).expect("a follower");
            c.isolated.push(silent);
            let mut most = (0, 0);
            for _ in 0..1_500 {
                c.propose_accept(leader, &text);
                c.run(2);
                let r = &c.replicas[&leader];
                most = (most.0.max(held(&c, leader)), most.1.max(r.log_bytes()));
            }
            assert!(
                c.replicas[&leader].applied() > 1_000,
                "the majority goes on"
            );
            // Kept for the silent follower well past the healthy window
            // (at most 512 entries)…
            assert!(most.0 > 600, "({entries}, {bytes}): most held {most:?}");
            // …but bounded: twice the entry bound, or the byte bound plus
            // what is not applied yet.
            assert!(
                most.0 <= 2 * entries + 64,
                "({entries}, {bytes}): most {most:?}"
            );
            assert!(
                most.1 <= bytes + 64 * 1024,
                "({entries}, {bytes}): most {most:?}"
            );
            // Healed, the silent follower catches up by snapshot.
            assert!(c.settle(20_000));
            assert_eq!(c.ticket_ids(silent), c.ticket_ids(leader));
        }
    }

    /// A follower that holds tickets and falls behind the leader's log
    /// takes a snapshot over them: the install names every ticket on its
    /// disk (the disk asserts it; a node's storage deletes those rows by
    /// name), and after a restart the disk holds the leader's tickets only.
    #[test]
    fn a_lagging_follower_with_tickets_takes_a_snapshot_over_them() {
        let mut c = MemCluster::with_compaction(3, 11, Faults::NONE, 10, 4 * 1024 * 1024);
        c.run(200);
        let leader = c.leader().expect("leader");
        for i in 0..20 {
            c.propose_accept(leader, &format!("before {i}"));
            c.run(4);
        }
        assert!(c.settle(5_000));
        let lagging = (1..=3).find(|&i| i != leader).expect("a follower");
        assert_eq!(c.ticket_ids(lagging).len(), 20);
        c.isolated.push(lagging);
        for i in 0..150 {
            c.propose_accept(leader, &format!("while away {i}"));
            c.run(4);
        }
        assert!(
            c.replicas[&leader].first_index() > 25,
            "the leader compacted past the lagging follower"
        );
        c.isolated.clear();
        assert!(c.settle(20_000));
        assert_eq!(c.ticket_ids(lagging), c.ticket_ids(leader));
        assert_eq!(c.ticket_ids(lagging).len(), 170);
        c.crash(lagging);
        c.start(lagging);
        assert!(c.settle(5_000));
        assert_eq!(c.ticket_ids(lagging), c.ticket_ids(leader));
    }

    #[test]
    fn wiped_follower_catches_up_by_snapshot() {
        let mut c = MemCluster::new(3, 7, Faults::NONE);
        c.compact_log_entries = 10;
        c.run(200);
        let leader = c.leader().expect("leader");
        let victim = (1..=3).find(|&i| i != leader).expect("a follower");
        c.wipe(victim);
        // The running replicas keep their 50-entry window (the setting above
        // reaches restarted ones only): 150 entries compact the leader's log
        // whatever the message timing.
        for i in 0..150 {
            let l = c.leader().expect("leader");
            c.propose_accept(l, &format!("t{i}"));
            c.run(4);
        }
        assert!(
            c.replicas[&leader].first_index() > 1,
            "leader compacted its log"
        );
        assert!(c.settle(5_000));
        assert_eq!(c.ticket_ids(victim), c.ticket_ids(leader));
        assert!(!c.ticket_ids(victim).is_empty());
    }
}
