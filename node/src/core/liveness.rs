//! Node liveness for hibernating groups.
//!
//! A hibernating (quiesced) group sends no heartbeats, so its followers
//! cannot notice a dead leader on their own. Instead every node sends one
//! tiny message per tick to each peer node — one per node pair, whatever
//! the number of groups — and a node that has not been heard from for
//! [`SUSPECT_AFTER_ELECTIONS`] election timeouts is suspected: every hibernating replica whose leader
//! lives there wakes up and resumes its election timer. Raft's own rules
//! then decide; a wrong suspicion costs one wake-up, never safety.

use std::collections::BTreeMap;

use super::Replica;

/// Election timeouts of silence after which a peer is suspected: twice the
/// longest election timeout (raft-rs draws one from 1 to 2 of them), since
/// a suspicion is cheap but should not fire on one slow tick. The node and
/// the simulator both wait this long, so failover rehearsed for a quiet
/// group takes as long as on a live cluster.
pub const SUSPECT_AFTER_ELECTIONS: u64 = 4;

/// A liveness timeout in ticks, for replicas with `election_ticks`.
pub const fn suspect_after_ticks(election_ticks: usize) -> u64 {
    SUSPECT_AFTER_ELECTIONS * election_ticks as u64
}

#[derive(Debug, Default)]
pub struct Liveness {
    /// Tick at which each peer node was last heard from.
    last_heard: BTreeMap<u64, u64>,
    /// Each peer's leadership epoch as last heard (see [`Self::epoch`]).
    epochs: BTreeMap<u64, u64>,
    now: u64,
    timeout_ticks: u64,
}

impl Liveness {
    pub fn new(peers: impl IntoIterator<Item = u64>, timeout_ticks: u64) -> Self {
        assert!(
            timeout_ticks > 0,
            "a liveness timeout of 0 ticks suspects everyone"
        );
        Liveness {
            last_heard: peers.into_iter().map(|p| (p, 0)).collect(),
            epochs: BTreeMap::new(),
            now: 0,
            timeout_ticks,
        }
    }

    pub fn tick(&mut self) {
        self.now += 1;
    }

    /// Anything arrived from `peer` (raft messages or its node heartbeat).
    pub fn heard(&mut self, peer: u64) {
        self.last_heard.insert(peer, self.now);
    }

    /// `peer`'s leadership epoch, which every message of its carries; true
    /// when it differs from the one heard before: some replica there
    /// changed its role or its leader since. Node heartbeats alone cannot
    /// tell a hibernating replica that its group moved on while the
    /// leader's node stays alive (a leadership transfer, a cut between two
    /// followers): this can, at the cost of one number per message.
    pub fn epoch(&mut self, peer: u64, epoch: u64) -> bool {
        match self.epochs.insert(peer, epoch) {
            Some(before) => before != epoch,
            None => false,
        }
    }

    /// The transport lost its connection to `peer`: suspect it now.
    pub fn lost(&mut self, peer: u64) {
        let stale = self.now.saturating_sub(self.timeout_ticks);
        self.last_heard.insert(peer, stale);
    }

    /// Is any peer suspected now? When none is, no hibernating replica can
    /// have a suspected leader, and the driver may skip the scan.
    pub fn any_suspect(&self) -> bool {
        self.last_heard.keys().any(|&p| self.suspect(p))
    }

    pub fn suspect(&self, peer: u64) -> bool {
        self.last_heard
            .get(&peer)
            .is_some_and(|&t| self.now.saturating_sub(t) >= self.timeout_ticks)
    }

    /// Wakes every hibernating replica whose leader is on a suspected node.
    /// Returns how many woke.
    pub fn wake_orphans<'a>(&self, replicas: impl IntoIterator<Item = &'a mut Replica>) -> usize {
        wake_orphans(replicas, |leader| self.suspect(leader))
    }
}

/// Wakes every hibernating follower whose leader `unreachable` says cannot be
/// heard (or that knows no leader), and steps down every hibernating leader
/// that cannot hear a majority of its voters. The node asks its `Liveness`;
/// the simulator asks its network model. Returns how many woke.
///
/// Why the leaders: a hibernating leader does not tick, so raft's quorum
/// check, which would depose it, never runs; cut off in a minority it would
/// go on calling itself leader while the majority elects another, and label
/// its local reads as fresh. Node liveness stands in for that check here, as
/// it stands in for heartbeats for the followers, and the leader steps down
/// as the check would have made it.
pub fn wake_orphans<'a>(
    replicas: impl IntoIterator<Item = &'a mut Replica>,
    unreachable: impl Fn(u64) -> bool,
) -> usize {
    let mut woke = 0;
    for r in replicas {
        if !r.is_quiesced() {
            continue;
        }
        if r.is_leader() {
            if !reaches_quorum(r.conf_state(), r.node_id(), &unreachable) && r.step_down() {
                woke += 1;
            }
        } else if r.leader_id() == 0 || unreachable(r.leader_id()) {
            r.wake();
            woke += 1;
        }
    }
    woke
}

/// Wakes the hibernating replicas that `peer`'s leadership change may
/// concern: followers whose leader is on `peer` (it may lead no more), and
/// leaders with `peer` among their voters (it may follow another leader
/// now, elected behind this one's back). Woken, they tick: a follower
/// whose leader still leads hears from it again (its pre-votes wake the
/// leader) and both go back to sleep; one whose leader stepped down finds
/// the new leader or campaigns; a deposed leader meets the higher term.
/// Returns how many woke.
pub fn wake_on_leadership_change<'a>(
    replicas: impl IntoIterator<Item = &'a mut Replica>,
    peer: u64,
) -> usize {
    let mut woke = 0;
    for r in replicas {
        if !r.is_quiesced() {
            continue;
        }
        let concerned = if r.is_leader() {
            r.conf_state().voters.contains(&peer) || r.conf_state().voters_outgoing.contains(&peer)
        } else {
            r.leader_id() == peer
        };
        if concerned {
            r.wake();
            woke += 1;
        }
    }
    woke
}

/// Can `me` hear a majority of the voters (of both halves of a joint
/// configuration), counting itself?
pub fn reaches_quorum(
    cs: &raft::eraftpb::ConfState,
    me: u64,
    unreachable: impl Fn(u64) -> bool,
) -> bool {
    let heard = |voters: &[u64]| {
        let up = voters
            .iter()
            .filter(|&&v| v == me || !unreachable(v))
            .count();
        voters.is_empty() || up * 2 > voters.len()
    };
    heard(&cs.voters) && heard(&cs.voters_outgoing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_peer_is_suspected_after_the_timeout() {
        let mut l = Liveness::new([2, 3], 5);
        for _ in 0..4 {
            l.tick();
        }
        assert!(!l.suspect(2));
        l.tick();
        assert!(l.suspect(2));
        l.heard(2);
        assert!(!l.suspect(2));
        l.lost(3);
        assert!(l.suspect(3));
        assert!(!l.suspect(9), "unknown nodes are not suspected");
    }

    /// A peer's first epoch is only remembered; a different one later is a
    /// change (a replica there changed role or leader, or it restarted).
    #[test]
    fn a_peer_epoch_that_changes_is_reported_once() {
        let mut l = Liveness::new([2, 3], 5);
        assert!(!l.epoch(2, 7), "first heard");
        assert!(!l.epoch(2, 7));
        assert!(l.epoch(2, 8), "changed");
        assert!(!l.epoch(2, 8));
        assert!(!l.epoch(3, 8), "per peer");
    }

    #[test]
    fn a_quorum_is_a_majority_of_each_half_counting_oneself() {
        let cs = |voters: &[u64], outgoing: &[u64]| raft::eraftpb::ConfState {
            voters: voters.to_vec(),
            voters_outgoing: outgoing.to_vec(),
            ..Default::default()
        };
        let down = |set: &'static [u64]| move |n: u64| set.contains(&n);
        assert!(reaches_quorum(&cs(&[1, 2, 3], &[]), 1, down(&[3])));
        assert!(!reaches_quorum(&cs(&[1, 2, 3], &[]), 1, down(&[2, 3])));
        assert!(reaches_quorum(&cs(&[1], &[]), 1, down(&[2, 3])));
        assert!(!reaches_quorum(&cs(&[1, 2, 3, 4], &[]), 1, down(&[3, 4])));
        // Joint: the outgoing half must be heard too.
        assert!(!reaches_quorum(
            &cs(&[1, 2, 3], &[1, 4, 5]),
            1,
            down(&[4, 5])
        ));
        assert!(reaches_quorum(
            &cs(&[1, 2, 3], &[1, 2, 5]),
            1,
            down(&[3, 5])
        ));
    }
}
