//! Who leads which group, as the nodes report it, and a plan that evens
//! out how many groups each node leads (`hotline group balance-leaders`).
//!
//! Why balance: a leader takes the requests, sends every append and
//! applies first, so a node leading more groups than the others does more
//! of the work. Elections place leaders by chance, and a node that was down
//! for a while leads nothing when it comes back, because no group elects
//! anew while its leader is healthy. Measured in BENCHMARKS.md (5 Dec, each
//! node held to half a core by a CPU quota): 64 groups that one node leads
//! keep 0.87× of one group's throughput; the same 64 with their leaders
//! spread, by the elections alone or balanced, 1.17–1.20×.
//!
//! The planner is pure (status in, moves out), so it is tested here
//! without a cluster; the CLI carries the moves out with `TransferLeader`.

use std::collections::{BTreeMap, BTreeSet};

use hotline_proto::v1::{GroupStatus, StatusResponse};

/// A follower further behind its leader's commit index than this is not
/// handed the leadership: raft-rs would first catch it up, and the group
/// takes no writes while a transfer is under way (a node back from a stop
/// may be catching up by snapshot).
pub const MAX_LAG_ENTRIES: u64 = 1_000;

/// A group whose replicas agree on who leads it, and who could take over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Led {
    pub leader: u64,
    /// Voters other than the leader whose replica answered as a follower
    /// within [`MAX_LAG_ENTRIES`] of the leader's commit index: those a
    /// transfer can go to at once. Never a learner.
    pub ready: Vec<u64>,
    /// In a joint configuration: its leadership is left alone.
    pub joint: bool,
}

/// Groups whose replicas (all that answered, but those outside the
/// leader's configuration or still `joining`, whom no leader talks to)
/// agree on a leader that says it leads, and the nodes that answered.
/// `all[i]` is node `ids[i]`'s status.
pub fn led_groups<E>(
    all: &[Result<StatusResponse, E>],
    ids: &[u64],
) -> (BTreeMap<u64, Led>, Vec<u64>) {
    assert_eq!(all.len(), ids.len(), "one status per node");
    let mut replicas: BTreeMap<u64, Vec<(u64, &GroupStatus)>> = BTreeMap::new();
    let mut answered = Vec::new();
    for (s, &node) in all.iter().zip(ids) {
        let Ok(s) = s else { continue };
        answered.push(node);
        for g in &s.groups {
            replicas.entry(g.group_id).or_default().push((node, g));
        }
    }
    let mut agreed = BTreeMap::new();
    for (group, rs) in replicas {
        let Some(&(leader, lg)) = rs.iter().find(|(_, g)| g.role == "leader") else {
            continue;
        };
        // Only replicas in the leader's configuration, and with a copy of
        // the group: no leader talks to the others (removed while away, or
        // still waiting for their first snapshot).
        let members = || {
            rs.iter().filter(|(n, g)| {
                (lg.voters.contains(n) || lg.learners.contains(n)) && g.role != "joining"
            })
        };
        if !members().all(|(_, g)| g.leader_id == leader) {
            continue;
        }
        let ready = members()
            .filter(|(n, g)| {
                *n != leader
                    && g.role == "follower"
                    && lg.voters.contains(n)
                    && g.applied_index + MAX_LAG_ENTRIES >= lg.commit_index
            })
            .map(|(n, _)| *n)
            .collect();
        agreed.insert(
            group,
            Led {
                leader,
                ready,
                joint: !lg.voters_outgoing.is_empty(),
            },
        );
    }
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
/// to. Each move takes a group from its leader to one of its `ready`
/// voters that leads at least two groups fewer (so the move narrows their
/// gap), the widest gap first (ties: the lowest group, then the lowest
/// node, so a plan is the same for the same status). Only to nodes of `up`
/// (they answered: a transfer to a node that is down would stall the
/// group for an election timeout), never a group in a joint
/// configuration, each group at most once, at most `max_moves`. It ends:
/// every move lowers the sum of the squared counts by at least 2.
pub fn balance_plan(led: &BTreeMap<u64, Led>, up: &[u64], max_moves: usize) -> Plan {
    let up_set: BTreeSet<u64> = up.iter().copied().collect();
    let mut count = per_node(led, up);
    let mut moved: BTreeSet<u64> = BTreeSet::new();
    let mut moves = Vec::new();
    let cut_short = loop {
        // (gap, group, to) of the best move left.
        let mut best: Option<(usize, u64, u64)> = None;
        for (&g, l) in led {
            if l.joint || moved.contains(&g) {
                continue; // in a change, or moved already
            }
            let from_count = count[&l.leader];
            for &v in &l.ready {
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
        let Some((_, g, to)) = best else { break false };
        if moves.len() == max_moves {
            break true;
        }
        let from = led[&g].leader;
        *count.get_mut(&from).expect("leader counted") -= 1;
        *count.get_mut(&to).expect("voter of up counted") += 1;
        moved.insert(g);
        moves.push(Move { group: g, from, to });
    };
    debug_assert!(moves.len() <= max_moves && moves.len() <= led.len());
    Plan {
        moves,
        after: count,
        cut_short,
    }
}

/// What [`balance_plan`] comes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub moves: Vec<Move>,
    /// Groups led per node once the moves are made.
    pub after: BTreeMap<u64, usize>,
    /// `max_moves` stopped the plan: more moves would narrow a gap.
    pub cut_short: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotline_proto::v1::GroupStatus;
    use proptest::prelude::*;

    /// Led by `leader`, with `voters` (the leader among them) all ready.
    fn led(leader: u64, voters: &[u64]) -> Led {
        Led {
            leader,
            ready: voters.iter().copied().filter(|&v| v != leader).collect(),
            joint: false,
        }
    }

    /// `all` once `moves` are carried out.
    fn carried_out(all: &BTreeMap<u64, Led>, moves: &[Move]) -> BTreeMap<u64, Led> {
        let mut now = all.clone();
        for m in moves {
            now.get_mut(&m.group).unwrap().leader = m.to;
        }
        now
    }

    fn spread(c: &BTreeMap<u64, usize>) -> usize {
        c.values().max().unwrap() - c.values().min().unwrap()
    }

    #[test]
    fn groups_all_led_by_one_node_end_a_third_each() {
        let all: BTreeMap<u64, Led> = (0..64).map(|g| (g, led(1, &[1, 2, 3]))).collect();
        let p = balance_plan(&all, &[1, 2, 3], 1000);
        assert_eq!(p.moves.len(), 42);
        assert_eq!(p.after, BTreeMap::from([(1, 22), (2, 21), (3, 21)]));
        assert!(!p.cut_short);
        assert!(p.moves.iter().all(|m| m.from == 1 && m.to != 1));
        // Deterministic, and balanced already the second time.
        assert_eq!(balance_plan(&all, &[1, 2, 3], 1000), p);
        // Exactly as many moves as it takes is not cut short.
        assert!(!balance_plan(&all, &[1, 2, 3], 42).cut_short);
        let now = carried_out(&all, &p.moves);
        assert_eq!(balance_plan(&now, &[1, 2, 3], 1000).moves, vec![]);
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
        let Plan { moves, after, .. } = balance_plan(&all, &[1, 2, 4], 1000);
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
        let p = balance_plan(&all, &[1, 2, 3], 5);
        assert_eq!(p.moves.len(), 5);
        assert_eq!(p.after[&1], 25);
        assert!(p.cut_short);
        let none = balance_plan(&all, &[1, 2, 3], 0);
        assert_eq!((none.moves.len(), none.cut_short), (0, true));
    }

    #[test]
    fn agreed_leaders_only_and_ready_followers() {
        let st = |node: u64, gs: &[(u64, &str, u64, u64)]| StatusResponse {
            node_id: node,
            groups: gs
                .iter()
                .map(|&(group_id, role, leader_id, applied)| GroupStatus {
                    group_id,
                    role: role.into(),
                    leader_id,
                    // Node 3 was removed from group 10.
                    voters: if group_id == 10 {
                        vec![1, 2]
                    } else {
                        vec![1, 2, 3]
                    },
                    commit_index: applied,
                    applied_index: applied,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let all: Vec<Result<StatusResponse, ()>> = vec![
            Ok(st(
                1,
                &[
                    (10, "leader", 1, 5_000),
                    (20, "leader", 1, 10),
                    (30, "leader", 1, 10),
                ],
            )),
            // Group 10: node 2 is far behind. Group 20: node 2 still
            // follows an old leader. Group 30: node 2 is a learner.
            Ok(st(
                2,
                &[
                    (10, "follower", 1, 3_000),
                    (20, "follower", 3, 10),
                    (30, "learner", 1, 10),
                ],
            )),
            // Removed from group 10 while away (still a follower by its own
            // configuration, naming an old leader): no leader tells it of
            // a new one, and it does not count.
            Ok(st(3, &[(10, "follower", 2, 10), (30, "follower", 1, 10)])),
            Err(()),
        ];
        let (agreed, answered) = led_groups(&all, &[1, 2, 3, 4]);
        assert_eq!(answered, vec![1, 2, 3]);
        let want = |ready: &[u64]| Led {
            leader: 1,
            ready: ready.to_vec(),
            joint: false,
        };
        assert_eq!(agreed, BTreeMap::from([(10, want(&[])), (30, want(&[3]))]));
    }

    proptest! {
        /// Whatever the placement: moves go from a group's leader to one of
        /// its ready voters that answered, each group moves once, and at
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
                all.insert(g as u64, Led { joint: *joint, ..led(leader, voters) });
            }
            let up: Vec<u64> = (1..=5).filter(|n| !down.contains(n) || all.values().any(|l| l.leader == *n)).collect();
            let Plan { moves, after, cut_short } = balance_plan(&all, &up, 10_000);
            prop_assert!(!cut_short);
            let mut moved = BTreeSet::new();
            for m in &moves {
                let l = &all[&m.group];
                prop_assert!(!l.joint);
                prop_assert_eq!(m.from, l.leader);
                prop_assert!(l.ready.contains(&m.to) && m.to != m.from && up.contains(&m.to));
                prop_assert!(moved.insert(m.group), "group {} moved twice", m.group);
            }
            let now = carried_out(&all, &moves);
            prop_assert_eq!(&per_node(&now, &up), &after);
            prop_assert_eq!(after.values().sum::<usize>(), all.len());
            for (g, l) in &now {
                if l.joint || moved.contains(g) {
                    continue;
                }
                for v in l.ready.iter().filter(|v| up.contains(v)) {
                    prop_assert!(after[&l.leader] < after[v] + 2, "group {} could still move to {}", g, v);
                }
            }
            if all.values().all(|l| !l.joint && l.ready.len() == 4) && down.is_empty() {
                prop_assert!(spread(&after) <= 1);
            }
        }
    }
}
