//! Node liveness for hibernating groups.
//!
//! A hibernating (quiesced) group sends no heartbeats, so its followers
//! cannot notice a dead leader on their own. Instead every node sends one
//! tiny message per tick to each peer node — one per node pair, whatever
//! the number of groups — and a node that has not been heard from for an
//! election timeout is suspected: every hibernating replica whose leader
//! lives there wakes up and resumes its election timer. Raft's own rules
//! then decide; a wrong suspicion costs one wake-up, never safety.

use std::collections::BTreeMap;

use super::Replica;

#[derive(Debug, Default)]
pub struct Liveness {
    /// Tick at which each peer node was last heard from.
    last_heard: BTreeMap<u64, u64>,
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
/// heard (or that knows no leader). The node asks its `Liveness`; the
/// simulator asks its network model. Returns how many woke.
pub fn wake_orphans<'a>(
    replicas: impl IntoIterator<Item = &'a mut Replica>,
    unreachable: impl Fn(u64) -> bool,
) -> usize {
    let mut woke = 0;
    for r in replicas {
        if r.is_quiesced() && !r.is_leader() && (r.leader_id() == 0 || unreachable(r.leader_id())) {
            r.wake();
            woke += 1;
        }
    }
    woke
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
}
