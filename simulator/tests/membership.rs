//! Online membership change on the real core, driven by `MemCluster`:
//! a learner joins empty and catches up (by snapshot), is promoted, an old
//! voter is removed, and the group still commits — with the new voter's
//! vote needed for a quorum.

use hotline_node::core::replica::{ConfChangeError, MembershipOp};
use hotline_node::core::{Recovered, Replica, ReplicaConfig};
use hotline_simulator::cluster::GROUP_ID;
use hotline_simulator::{Faults, MemCluster, MemDisk};
use raft::eraftpb::{ConfState, MessageType};

/// A node that joins at run time: an empty replica on a blank disk, as the
/// node's raft loop creates it on the first message from the leader.
fn add_empty_node(c: &mut MemCluster, id: u64) {
    let mut cfg = ReplicaConfig::new(id, GROUP_ID, "310114");
    cfg.deterministic_elections = true;
    cfg.compact_log_entries = c.compact_log_entries;
    c.disks.insert(id, MemDisk::default());
    let r = Replica::new(cfg, Recovered::default()).expect("empty replica starts");
    assert!(!r.is_initialized());
    c.replicas.insert(id, r);
}

/// A node that is gone for good (not restarted by `settle`).
fn destroy(c: &mut MemCluster, id: u64) {
    c.replicas.remove(&id);
    c.disks.remove(&id);
    c.network.retain(|m| m.to != id);
}

fn leader(c: &mut MemCluster) -> u64 {
    for _ in 0..2_000 {
        if let Some(l) = c.leader() {
            return l;
        }
        c.step();
    }
    panic!("no leader");
}

/// Proposes at the leader (retrying what a retry can fix) and runs until
/// the leader's configuration shows the change.
fn change(c: &mut MemCluster, op: MembershipOp, node: u64) -> ConfState {
    for _ in 0..200 {
        let l = leader(c);
        match c
            .replicas
            .get_mut(&l)
            .expect("leader")
            .propose_conf_change(op, node, false, |_| false)
        {
            Ok(()) => {
                for _ in 0..2_000 {
                    c.step();
                    if let Some(l) = c.leader() {
                        let mut cs = c.replicas[&l].conf_state().clone();
                        if op.is_done(node, &cs) {
                            cs.voters.sort_unstable();
                            cs.learners.sort_unstable();
                            return cs;
                        }
                    }
                }
                panic!("{op:?} {node} not applied");
            }
            Err(ConfChangeError::Invalid(e)) => panic!("{op:?} {node}: {e}"),
            Err(e) => {
                if std::env::var("DBG").is_ok() {
                    eprintln!("{e}");
                }
                c.run(20)
            }
        }
    }
    panic!("{op:?} {node} never proposed");
}

/// Proposes accepts at the leader; true if each was applied on `at`.
fn accept_applied(c: &mut MemCluster, at: u64, n: usize, tag: &str) -> bool {
    for i in 0..n {
        let mut done = false;
        for _ in 0..20 {
            let l = leader(c);
            let Some(rid) = c.propose_accept(l, &format!("{tag} {i}")) else {
                c.run(20);
                continue;
            };
            for _ in 0..1_000 {
                c.step();
                if c.acked.contains_key(&rid)
                    && c.replicas[&at].applied() >= c.replicas[&l].commit_index()
                {
                    done = true;
                    break;
                }
            }
            if done {
                break;
            }
        }
        if !done {
            eprintln!(
                "accept {i} not applied on node {at}: leader {:?}, node {at} applied {}",
                c.leader(),
                c.replicas[&at].applied()
            );
            return false;
        }
    }
    true
}

#[test]
fn learner_joins_is_promoted_and_replaces_a_voter() {
    for seed in [11, 12, 13, 14, 15, 16] {
        join_promote_replace(seed);
    }
}

fn join_promote_replace(seed: u64) {
    let mut c = MemCluster::new(3, seed, Faults::NONE);
    c.run(200);
    let l = leader(&mut c);
    assert!(accept_applied(&mut c, l, 30, "before"));
    // The whole log is still there: the new node could be sent entries from
    // index 1, which would miss the founding configuration (it is not in
    // the log). It must ask for a snapshot instead.
    assert_eq!(c.replicas[&l].first_index(), 1);

    // Add node 4 as a learner: it starts empty and catches up by snapshot.
    add_empty_node(&mut c, 4);
    let cs = change(&mut c, MembershipOp::AddLearner, 4);
    assert_eq!(cs.learners, vec![4]);
    assert!(c.settle(5_000), "the learner catches up");
    let r4 = &c.replicas[&4];
    assert!(r4.is_initialized() && r4.is_learner());
    assert!(r4.first_index() > 1, "the learner started from a snapshot");
    let mut voters = r4.conf_state().voters.clone();
    voters.sort_unstable();
    assert_eq!(voters, vec![1, 2, 3]);
    let l = leader(&mut c);
    assert_eq!(c.ticket_ids(4), c.ticket_ids(l));
    assert_eq!(c.ticket_ids(4).len(), 30);

    // It keeps up with new entries as a learner, without voting.
    assert!(accept_applied(&mut c, 4, 5, "learner"));

    // Promote it.
    let cs = change(&mut c, MembershipOp::Promote, 4);
    assert_eq!(cs.voters, vec![1, 2, 3, 4]);
    assert!(cs.learners.is_empty() && cs.voters_outgoing.is_empty());
    assert!(c.settle(5_000));
    assert!(!c.replicas[&4].is_learner(), "node 4 applied its promotion");

    // Remove an old voter that does not lead.
    let l = leader(&mut c);
    let old = [1, 2, 3].into_iter().find(|&v| v != l).expect("a follower");
    let cs = change(&mut c, MembershipOp::Remove, old);
    assert!(!cs.voters.contains(&old) && cs.voters.contains(&4));
    assert_eq!(cs.voters.len(), 3);

    // The removed node stops receiving: once what was in flight is
    // delivered, no leader sends it appends, heartbeats or snapshots.
    c.run(50);
    for _ in 0..500 {
        c.step();
        let leaderly = c.network.iter().any(|m| {
            m.to == old
                && matches!(
                    m.get_msg_type(),
                    MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot
                )
        });
        assert!(!leaderly, "node {old} still receives from the leader");
    }
    assert!(accept_applied(&mut c, 4, 3, "after-remove"));

    // Take the removed node and one more old voter away for good: the two
    // left (one of them node 4) are a quorum of the three voters only
    // because node 4 votes.
    destroy(&mut c, old);
    let l = leader(&mut c);
    let other = [1, 2, 3]
        .into_iter()
        .find(|&v| v != old && v != l)
        .expect("another old voter");
    destroy(&mut c, other);
    assert!(accept_applied(&mut c, 4, 5, "quorum-with-4"));
    let l = leader(&mut c);
    assert_eq!(c.ticket_ids(4), c.ticket_ids(l));
    assert_eq!(c.ticket_ids(4).len(), 30 + 5 + 3 + 5);
}

#[test]
fn the_leader_hands_over_before_it_is_removed() {
    for seed in [5, 6, 7, 8] {
        hand_over_then_remove(seed);
    }
}

fn hand_over_then_remove(seed: u64) {
    let mut c = MemCluster::new(3, seed, Faults::NONE);
    c.run(200);
    let l = leader(&mut c);
    assert!(accept_applied(&mut c, l, 3, "t"));
    let err = c
        .replicas
        .get_mut(&l)
        .unwrap()
        .propose_conf_change(MembershipOp::Remove, l, false, |_| false)
        .unwrap_err();
    let ConfChangeError::RemovesLeader { to, .. } = err else {
        panic!("unexpected {err:?}");
    };
    assert_ne!(to, l);
    for _ in 0..2_000 {
        c.step();
        if c.leader().is_some_and(|n| n != l) {
            break;
        }
    }
    assert_eq!(c.leader(), Some(to), "leadership handed to node {to}");
    let cs = change(&mut c, MembershipOp::Remove, l);
    assert_eq!(cs.voters.len(), 2);
    assert!(!cs.voters.contains(&l));
    destroy(&mut c, l);
    assert!(accept_applied(&mut c, to, 3, "after"));
}

/// A voter removed while cut off comes back believing it is still one: it
/// campaigns, the members refuse it as a non-member and say so, and once
/// a majority of the voters it knows have, it parks and sends nothing
/// more; the group goes on without it, and adding it again brings it
/// back.
#[test]
fn a_voter_removed_while_cut_off_stops_campaigning() {
    for seed in [11, 12, 13, 14] {
        removed_while_cut_off(seed);
    }
}

fn removed_while_cut_off(seed: u64) {
    let mut c = MemCluster::new(3, seed, Faults::NONE);
    c.run(200);
    let l = leader(&mut c);
    let gone = if l == 3 { 2 } else { 3 };
    assert!(accept_applied(&mut c, l, 2, "t"));
    c.isolated.push(gone);
    let cs = change(&mut c, MembershipOp::Remove, gone);
    assert!(!cs.voters.contains(&gone), "seed {seed}");
    c.isolated.clear();
    assert!(c.replicas[&gone].conf_state().voters.contains(&gone));
    for _ in 0..5_000 {
        c.step();
        if c.replicas[&gone].is_parked() {
            break;
        }
    }
    assert!(
        c.replicas[&gone].is_parked(),
        "seed {seed}: it never parked"
    );
    assert!(
        c.replicas[&gone].conf_state().voters.contains(&gone),
        "seed {seed}: it parked on the members' word, not its own log"
    );
    let mut sent = 0;
    for _ in 0..3_000 {
        sent += c.network.iter().filter(|m| m.from == gone).count();
        c.step();
    }
    assert_eq!(sent, 0, "seed {seed}: a parked replica sends nothing");
    let l = leader(&mut c);
    assert_ne!(l, gone);
    assert!(accept_applied(&mut c, l, 2, "after"), "seed {seed}");
    // Added again (as a learner: raft catches it up from its old log), the
    // leader's first message ends the parking.
    let cs = change(&mut c, MembershipOp::AddLearner, gone);
    assert!(cs.learners.contains(&gone), "seed {seed}");
    assert!(accept_applied(&mut c, gone, 2, "back"), "seed {seed}");
    assert!(!c.replicas[&gone].is_parked(), "seed {seed}");
}

#[test]
fn invalid_changes_are_refused_naming_the_field() {
    let mut c = MemCluster::new(3, 3, Faults::NONE);
    c.run(200);
    let l = leader(&mut c);
    assert!(accept_applied(&mut c, l, 1, "t"));
    let f = [1, 2, 3].into_iter().find(|&v| v != l).unwrap();
    let r = c.replicas.get_mut(&l).unwrap();
    let invalid = |e: ConfChangeError| match e {
        ConfChangeError::Invalid(f) => {
            assert_eq!(f.field, "node_id");
            f.reason
        }
        e => panic!("not invalid: {e:?}"),
    };
    let why = invalid(
        r.propose_conf_change(MembershipOp::Promote, f, false, |_| false)
            .unwrap_err(),
    );
    assert!(why.contains("already a voter"), "{why}");
    let why = invalid(
        r.propose_conf_change(MembershipOp::Promote, 9, false, |_| false)
            .unwrap_err(),
    );
    assert!(why.contains("not a learner"), "{why}");
    let why = invalid(
        r.propose_conf_change(MembershipOp::Remove, 9, false, |_| false)
            .unwrap_err(),
    );
    assert!(why.contains("not a member"), "{why}");
    let why = invalid(
        r.propose_conf_change(MembershipOp::AddLearner, f, false, |_| false)
            .unwrap_err(),
    );
    assert!(why.contains("already a voter"), "{why}");
    // A follower does not propose; it names the leader.
    let err = c
        .replicas
        .get_mut(&f)
        .unwrap()
        .propose_conf_change(MembershipOp::AddLearner, 4, false, |_| false)
        .unwrap_err();
    assert!(
        matches!(err, ConfChangeError::NotLeader { leader_id, .. } if leader_id == l),
        "{err:?}"
    );
    // A learner that has not caught up is not promoted yet.
    let r = c.replicas.get_mut(&l).unwrap();
    r.propose_conf_change(MembershipOp::AddLearner, 4, false, |_| false)
        .unwrap();
    c.run(300); // node 4 does not exist: it never acknowledges anything
    let cs = c.replicas[&l].conf_state().clone();
    assert_eq!(cs.learners, vec![4]);
    let err = c
        .replicas
        .get_mut(&l)
        .unwrap()
        .propose_conf_change(MembershipOp::Promote, 4, false, |_| false)
        .unwrap_err();
    assert!(
        matches!(err, ConfChangeError::NotCaughtUp { node: 4, .. }),
        "{err:?}"
    );
    let why = invalid(
        c.replicas
            .get_mut(&l)
            .unwrap()
            .propose_conf_change(MembershipOp::AddLearner, 4, false, |_| false)
            .unwrap_err(),
    );
    assert!(why.contains("already a learner"), "{why}");

    // The last voter stays.
    let mut one = MemCluster::new(1, 1, Faults::NONE);
    one.run(200);
    let l = leader(&mut one);
    assert!(accept_applied(&mut one, l, 1, "t"));
    let why = invalid(
        one.replicas
            .get_mut(&l)
            .unwrap()
            .propose_conf_change(MembershipOp::Remove, l, false, |_| false)
            .unwrap_err(),
    );
    assert!(why.contains("last voter"), "{why}");
}

#[test]
fn learner_joins_a_group_with_a_compacted_log() {
    let mut c = MemCluster::new(3, 21, Faults::NONE);
    c.run(200);
    let l = leader(&mut c);
    assert!(accept_applied(&mut c, l, 120, "t"));
    assert!(c.replicas[&l].first_index() > 1, "the leader compacted");
    add_empty_node(&mut c, 4);
    change(&mut c, MembershipOp::AddLearner, 4);
    assert!(c.settle(5_000));
    let l = leader(&mut c);
    assert_eq!(c.ticket_ids(4), c.ticket_ids(l));
    assert_eq!(c.ticket_ids(4).len(), 120);
}

#[test]
fn a_learner_joins_over_a_lossy_network() {
    for seed in [31, 32, 33, 34] {
        let mut c = MemCluster::new(3, seed, Faults::NONE);
        c.run(200);
        let l = leader(&mut c);
        assert!(accept_applied(&mut c, l, 20, "before"));
        c.faults = Faults {
            drop: 0.05,
            duplicate: 0.02,
            reorder: 0.1,
            crash: 0.0,
        };
        add_empty_node(&mut c, 4);
        change(&mut c, MembershipOp::AddLearner, 4);
        change(&mut c, MembershipOp::Promote, 4);
        assert!(c.settle(10_000), "seed {seed}: settles");
        let l = leader(&mut c);
        assert_eq!(c.ticket_ids(4), c.ticket_ids(l), "seed {seed}");
        assert_eq!(c.ticket_ids(4).len(), 20);
    }
}

/// An operator moves a group's leadership to a named voter (before taking
/// a site down): the voter leads within an election timeout and commits;
/// a transfer to a voter that cannot be reached is given up and the old
/// leader keeps leading; a learner, a stranger or a follower's own call is
/// refused, naming the field or the leader.
#[test]
fn leadership_moves_to_the_voter_named_or_stays() {
    for seed in [11, 12, 13, 14] {
        move_leadership(seed);
    }
}

fn move_leadership(seed: u64) {
    let mut c = MemCluster::new(3, seed, Faults::NONE);
    c.run(200);
    let l = leader(&mut c);
    assert!(accept_applied(&mut c, l, 3, "t"));
    let to = [1, 2, 3].into_iter().find(|&v| v != l).unwrap();
    let third = [1, 2, 3].into_iter().find(|&v| v != l && v != to).unwrap();

    let r = c.replicas.get_mut(&l).unwrap();
    match r.transfer_leadership(9).unwrap_err() {
        ConfChangeError::Invalid(f) => {
            assert_eq!(f.field, "node_id");
            assert!(f.reason.contains("not a voter"), "{}", f.reason);
        }
        e => panic!("seed {seed}: not invalid: {e:?}"),
    }
    assert_eq!(r.transfer_leadership(l).ok(), Some(true), "leads already");
    let err = c
        .replicas
        .get_mut(&to)
        .unwrap()
        .transfer_leadership(third)
        .unwrap_err();
    assert!(
        matches!(err, ConfChangeError::NotLeader { leader_id, .. } if leader_id == l),
        "seed {seed}: {err:?}"
    );

    let r = c.replicas.get_mut(&l).unwrap();
    assert_eq!(r.transfer_leadership(to).ok(), Some(false), "begun");
    assert!(r.is_transferring_leadership());
    for _ in 0..2_000 {
        c.step();
        if c.leader() == Some(to) {
            break;
        }
    }
    assert_eq!(c.leader(), Some(to), "seed {seed}: handed to node {to}");
    assert!(accept_applied(&mut c, to, 3, "after"));
    assert!(c.settle(5_000), "seed {seed}: settles");
    assert_eq!(c.leader(), Some(to));
    assert_eq!(c.ticket_ids(l), c.ticket_ids(to));
    assert_eq!(c.ticket_ids(to).len(), 6);
    assert_eq!(
        c.replicas.get_mut(&l).unwrap().transfer_leadership(to).ok(),
        Some(true),
        "a follower whose leader is the one named has nothing to do"
    );

    // The voter named cannot be reached: raft gives up after an election
    // timeout, and the leader keeps leading (a majority still hears it).
    c.isolated = vec![third];
    let r = c.replicas.get_mut(&to).unwrap();
    let term = r.term();
    assert_eq!(r.transfer_leadership(third).ok(), Some(false));
    for _ in 0..3_000 {
        c.step();
        if !c.replicas[&to].is_transferring_leadership() {
            break;
        }
    }
    let r = &c.replicas[&to];
    assert!(!r.is_transferring_leadership(), "seed {seed}: given up");
    assert!(r.is_leader(), "seed {seed}: still leads");
    assert_eq!(r.term(), term, "seed {seed}: no election");
    assert!(accept_applied(&mut c, to, 2, "kept"));
}
