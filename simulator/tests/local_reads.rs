//! Local (stale-but-labelled) reads of the real core: a replica cut off from
//! its leader keeps answering from its own state, and the answer says how
//! far behind it may be; once the link heals it catches up and says so.

use hotline_node::core::{Query, QueryAnswer};
use hotline_simulator::{Faults, MemCluster};

fn get(id: &str) -> Query {
    Query::Get {
        id: id.to_string(),
        now_ms: 0,
    }
}

fn found(a: &QueryAnswer) -> bool {
    matches!(a, QueryAnswer::Ticket(Some(_)))
}

#[test]
fn a_cut_off_replica_answers_locally_and_labels_its_staleness() {
    let mut c = MemCluster::new(3, 11, Faults::NONE);
    c.run(200);
    let leader = c.leader().expect("a leader within 200 steps");
    c.propose_accept(leader, "before the cut")
        .expect("accepted");
    assert!(c.settle(2_000));
    let first = c.ticket_ids(leader)[0].clone();
    let cut = (1..=3).find(|&i| i != leader).expect("a follower");

    let fresh = c.replicas[&cut].read_local(&get(&first));
    assert!(found(&fresh.answer), "caught-up replica has the ticket");
    assert_eq!(fresh.leader_id, leader);
    assert_eq!(fresh.applied_index, c.replicas[&leader].applied());

    c.isolated.push(cut);
    c.propose_accept(leader, "during the cut")
        .expect("accepted");
    // Long enough for the two others to commit, not for an election on
    // the cut-off replica's side to matter (it cannot win alone).
    c.run(300);
    let second = c.ticket_ids(leader)[0].clone();
    assert_ne!(first, second);
    let stale = c.replicas[&cut].read_local(&get(&second));
    assert!(
        !found(&stale.answer),
        "the cut-off replica lacks the new ticket"
    );
    assert!(
        stale.applied_index < c.replicas[&leader].applied(),
        "label shows it is behind: {stale:?}"
    );
    assert!(
        stale.ticks_since_leader > fresh.ticks_since_leader,
        "label shows the leader has been silent: {stale:?}"
    );
    assert!(
        found(&c.replicas[&cut].read_local(&get(&first)).answer),
        "older tickets are still served while cut off"
    );

    assert!(c.settle(5_000));
    let healed = c.replicas[&cut].read_local(&get(&second));
    assert!(found(&healed.answer), "after the heal it catches up");
    assert_eq!(healed.applied_index, c.replicas[&leader].applied());
}
