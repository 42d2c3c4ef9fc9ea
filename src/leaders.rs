//! Who leads which group, as the nodes report it, and a plan that evens
//! out how many groups each node leads (`hotline group balance-leaders`).
//!
//! Why balance: a node's CPU goes mostly to the groups it leads (a leader
//! takes the requests, sends every append and applies first; a follower
//! only appends). Elections place leaders by chance, and a node that was
//! down for a while leads nothing when it comes back, because no group
//! elects anew while its leader is healthy. So a federation whose nodes
//! all host the same groups is bound by its busiest node. Measured in
//! BENCHMARKS.md (5 Dec): 64 groups led by one node keep 0.9× of one
//! group's throughput, spread over three nodes, each on CPU of its own,
//! more than 1×.
//!
//! The planner is pure (status in, moves out), so it is tested here
//! without a cluster; the CLI carries the moves out with `TransferLeader`.

use std::collections::{BTreeMap, BTreeSet};

use hotline_proto::v1::StatusResponse;

/// A group whose replicas agree on who leads it, with the leader's view of
/// its configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Led {
    pub leader: u64,
    pub voters: Vec<u64>,
    /// In a joint configuration (a membership change under way): its
    /// leadership is left alone.
    pub joint: bool,
}

/// Groups whose replicas (all that answered) agree on a leader that says it
/// leads, and how many nodes answered. `all[i]` is node `ids[i]`'s status.
pub fn led_groups<E>(
    all: &[Result<StatusResponse, E>],
    ids: &[u64],
) -> (BTreeMap<u64, Led>, usize) {
    assert_eq!(all.len(), ids.len(), "one status per node");
    let mut leader: BTreeMap<u64, Led> = BTreeMap::new();
    let mut seen: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut answered = 0;
    for (s, &node) in all.iter().zip(ids) {
        let Ok(s) = s else { continue };
        answered += 1;
        for g in &s.groups {
            if g.role == "leader" {
                leader.insert(
                    g.group_id,
                    Led {
                        leader: node,
                        voters: g.voters.clone(),
                        joint: !g.voters_outgoing.is_empty(),
                    },
                );
            }
            seen.entry(g.group_id).or_default().push(g.leader_id);
        }
    }
    let agreed = leader
        .into_iter()
        .filter(|(g, l)| {
            seen.get(g)
                .is_some_and(|v| v.iter().all(|x| *x == l.leader))
        })
        .collect();
    (agreed, answered)
}

/// Groups led per node: every node of `up` (0 if it leads nothing) and
/// every leader.
pub fn per_node(led: &BTreeMap<u64, Led>, up: &[u64]) -> BTreeMap<u64, usize> {
    let mut count: BTreeMap<u64, usize> = up.iter().map(|&n| (n, 0)).collect();
    for l in led.values() {
        *count.entry(l.leader).or_default() += 1;
    }
    count
}

/// One group's leadership to hand over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move {
    pub group: u64,
    pub from: u64,
    pub to: u64,
}

/// The moves that even out leaderships, and the count per node they lead
/// to. Each move takes a group from its leader to one of its voters that
/// leads at least two groups fewer (so the move narrows their gap), the
/// widest gap first (ties: the lowest group, then the lowest node, so a
/// plan is the same for the same status). Only to nodes of `up` (they
/// answered: a transfer to a node that is down would stall the group for
/// an election timeout), never a group in a joint configuration, each
/// group at most once, at most `max_moves`. It ends: every move lowers
/// the sum of the squared counts by at least 2.
pub fn balance_plan(
    led: &BTreeMap<u64, Led>,
    up: &[u64],
    max_moves: usize,
) -> (Vec<Move>, BTreeMap<u64, usize>) {
    let up_set: BTreeSet<u64> = up.iter().copied().collect();
    let mut count = per_node(led, up);
    let mut leader: BTreeMap<u64, u64> = led.iter().map(|(&g, l)| (g, l.leader)).collect();
    let mut moves = Vec::new();
    while moves.len() < max_moves {
        // (gap, group, to) of the best move so far.
        let mut best: Option<(usize, u64, u64)> = None;
        for (&g, l) in led {
            if l.joint || leader[&g] != l.leader {
                continue; // in a change, or moved already
            }
            let from_count = count[&l.leader];
            for &v in &l.voters {
                if v == l.leader || !up_set.contains(&v) {
                    continue;
                }
                let gap = from_count.saturating_sub(count[&v]);
                let better = match best {
                    None => true,
                    Some((bg, bgroup, bto)) => gap > bg || (gap == bg && (g, v) < (bgroup, bto)),
                };
                if gap >= 2 && better {
                    best = Some((gap, g, v));
                }
            }
        }
        let Some((_, g, to)) = best else { break };
        let from = led[&g].leader;
        *count.get_mut(&from).expect("leader counted") -= 1;
        *count.get_mut(&to).expect("voter of up counted") += 1;
        leader.insert(g, to);
        moves.push(Move { group: g, from, to });
    }
    debug_assert!(moves.len() <= max_moves && moves.len() <= led.len());
    (moves, count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotline_proto::v1::GroupStatus;
    use proptest::prelude::*;

    fn led(leader: u64, voters: &[u64]) -> Led {
        Led {
            leader,
            voters: voters.to_vec(),
            joint: false,
        }
    }

    fn spread(c: &BTreeMap<u64, usize>) -> usize {
        c.values().max().unwrap() - c.values().min().unwrap()
    }

    #[test]
    fn groups_all_led_by_one_node_end_a_third_each() {
        let all: BTreeMap<u64, Led> = (0..64).map(|g| (g, led(1, &[1, 2, 3]))).collect();
        let (moves, after) = balance_plan(&all, &[1, 2, 3], 1000);
        assert_eq!(moves.len(), 42);
        assert_eq!(after, BTreeMap::from([(1, 22), (2, 21), (3, 21)]));
        assert!(moves.iter().all(|m| m.from == 1 && m.to != 1));
        // Deterministic, and balanced already the second time.
        assert_eq!(balance_plan(&all, &[1, 2, 3], 1000).0, moves);
        let mut now = all.clone();
        for m in &moves {
            now.get_mut(&m.group).unwrap().leader = m.to;
        }
        assert_eq!(balance_plan(&now, &[1, 2, 3], 1000).0, vec![]);
    }

    #[test]
    fn only_to_voters_that_answered_and_never_in_a_joint_change() {
        let mut all = BTreeMap::from([
            (1, led(1, &[1, 2])),
            (2, led(1, &[1, 2])),
            (3, led(1, &[1, 3])),
            (4, led(1, &[1, 3])),
            (5, led(1, &[1, 4])),
            (6, led(1, &[1, 4])),
        ]);
        all.get_mut(&6).unwrap().joint = true;
        // Node 3 did not answer; node 4 did.
        let (moves, after) = balance_plan(&all, &[1, 2, 4], 1000);
        assert_eq!(
            moves,
            vec![
                Move {
                    group: 1,
                    from: 1,
                    to: 2
                },
                Move {
                    group: 5,
                    from: 1,
                    to: 4
                },
                Move {
                    group: 2,
                    from: 1,
                    to: 2
                },
            ]
        );
        // Node 1 keeps groups 3 and 4 (their other voter, node 3, is down)
        // and 6 (joint).
        assert_eq!(after, BTreeMap::from([(1, 3), (2, 2), (4, 1)]));
    }

    #[test]
    fn at_most_max_moves() {
        let all: BTreeMap<u64, Led> = (0..30).map(|g| (g, led(1, &[1, 2, 3]))).collect();
        let (moves, after) = balance_plan(&all, &[1, 2, 3], 5);
        assert_eq!(moves.len(), 5);
        assert_eq!(after[&1], 25);
        assert_eq!(balance_plan(&all, &[1, 2, 3], 0).0, vec![]);
    }

    #[test]
    fn agreed_leaders_only() {
        let st = |node: u64, gs: &[(u64, &str, u64)]| StatusResponse {
            node_id: node,
            groups: gs
                .iter()
                .map(|&(group_id, role, leader_id)| GroupStatus {
                    group_id,
                    role: role.into(),
                    leader_id,
                    voters: vec![1, 2],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let all: Vec<Result<StatusResponse, ()>> = vec![
            Ok(st(1, &[(10, "leader", 1), (20, "leader", 1)])),
            // Node 2 still follows an old leader of group 20.
            Ok(st(2, &[(10, "follower", 1), (20, "follower", 3)])),
            Err(()),
        ];
        let (agreed, answered) = led_groups(&all, &[1, 2, 3]);
        assert_eq!(answered, 2);
        assert_eq!(agreed, BTreeMap::from([(10, led(1, &[1, 2]))]));
    }

    proptest! {
        /// Whatever the placement: moves go from a group's leader to one of
        /// its other voters that answered, each group moves once, and at
        /// the end no group's leader leads two or more groups more than one
        /// of its other answering voters (no move is left that would narrow
        /// a gap).
        #[test]
        fn a_plan_moves_within_voters_and_leaves_no_gap_of_two(
            groups in proptest::collection::vec(
                (proptest::sample::subsequence(vec![1u64, 2, 3, 4, 5], 1..=5), any::<prop::sample::Index>(), any::<bool>()),
                0..80,
            ),
            down in proptest::sample::subsequence(vec![1u64, 2, 3, 4, 5], 0..=2),
        ) {
            let mut all = BTreeMap::new();
            for (g, (voters, pick, joint)) in groups.iter().enumerate() {
                // The leader answered (it reported leading).
                let leader = voters[pick.index(voters.len())];
                all.insert(g as u64, Led { leader, voters: voters.clone(), joint: *joint });
            }
            let up: Vec<u64> = (1..=5).filter(|n| !down.contains(n) || all.values().any(|l| l.leader == *n)).collect();
            let (moves, after) = balance_plan(&all, &up, 10_000);
            let mut now = all.clone();
            let mut moved = BTreeSet::new();
            for m in &moves {
                let l = &all[&m.group];
                prop_assert!(!l.joint);
                prop_assert_eq!(m.from, l.leader);
                prop_assert!(l.voters.contains(&m.to) && m.to != m.from && up.contains(&m.to));
                prop_assert!(moved.insert(m.group), "group {} moved twice", m.group);
                now.get_mut(&m.group).unwrap().leader = m.to;
            }
            prop_assert_eq!(&per_node(&now, &up), &after);
            prop_assert_eq!(after.values().sum::<usize>(), all.len());
            for (g, l) in &now {
                if l.joint || moved.contains(g) {
                    continue;
                }
                for v in l.voters.iter().filter(|v| up.contains(v) && **v != l.leader) {
                    prop_assert!(after[&l.leader] < after[v] + 2, "group {} could still move to {}", g, v);
                }
            }
            if all.values().all(|l| !l.joint && l.voters.len() == 5) && down.is_empty() {
                prop_assert!(spread(&after) <= 1);
            }
        }
    }
}
