//! Property: among three in-memory replicas of the real core, random message
//! drops, reordering, duplication and crash-restarts never lose or change a
//! committed entry. `MemCluster::record` asserts agreement at every apply;
//! after healing, every acknowledged ticket is on every replica.
//!
//! A failure prints the seed; `MemCluster::new(3, seed, faults)` replays it.

use hotline_simulator::{Faults, MemCluster};
use proptest::prelude::*;

fn run(seed: u64, faults: Faults, proposals: u32) {
    let mut c = MemCluster::new(3, seed, faults);
    c.compact_log_entries = 20;
    for i in 0..proposals {
        c.run(15);
        let node = 1 + (i as u64 % 3);
        let _ = c.propose_accept(node, &format!("p{i}"));
    }
    assert!(
        c.settle(20_000),
        "seed {seed}: cluster did not settle after faults stopped"
    );
    let ids = c.ticket_ids(1);
    assert_eq!(ids, c.ticket_ids(2), "seed {seed}: replicas 1 and 2 differ");
    assert_eq!(ids, c.ticket_ids(3), "seed {seed}: replicas 1 and 3 differ");
    for (rid, tid) in &c.acked {
        assert!(
            ids.contains(tid),
            "seed {seed}: acknowledged request {rid} ({tid}) lost"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn committed_entries_survive_network_faults(
        seed in any::<u64>(),
        drop in 0.0f64..0.3,
        duplicate in 0.0f64..0.3,
        reorder in 0.0f64..0.8,
    ) {
        run(seed, Faults { drop, duplicate, reorder, crash: 0.0 }, 60);
    }

    #[test]
    fn committed_entries_survive_crashes(seed in any::<u64>(), crash in 0.0f64..0.02) {
        run(seed, Faults { drop: 0.05, duplicate: 0.05, reorder: 0.3, crash }, 60);
    }
}

#[test]
fn same_seed_same_history() {
    let f = Faults {
        drop: 0.1,
        duplicate: 0.1,
        reorder: 0.5,
        crash: 0.005,
    };
    let go = |seed| {
        let mut c = MemCluster::new(3, seed, f);
        for i in 0..40 {
            c.run(15);
            let _ = c.propose_accept(1 + i % 3, &format!("p{i}"));
        }
        c.settle(20_000);
        (c.committed.clone(), c.ticket_ids(1))
    };
    assert_eq!(go(42), go(42));
    assert_ne!(go(42).0, go(43).0);
}
