//! End-to-end: three `hotline node` processes over real sockets and mutual
//! TLS, killed with SIGKILL, wiped and restarted.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// Election timeout of the default tuning: raft-rs randomizes in
/// [election_ticks, 2 × election_ticks) ticks of 100 ms, with pre-vote.
const ELECTION_TIMEOUT: Duration = Duration::from_millis(2_000);

async fn leader_commit(c: &hotline_node::client::Client) -> u64 {
    let i = c.find_leader().await.expect("leader");
    c.status_of(i).await.unwrap().groups[0].commit_index
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_loses_no_acknowledged_ticket() {
    let mut cl = Cluster::init(3, 7300, |_| {});
    cl.start_all();
    let c = Arc::new(cl.client());
    let first = wait_leader(&c, Duration::from_secs(10))
        .await
        .expect("first leader");

    // A stream of accepts from 4 writers, recording what was acknowledged.
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (c, acked, stop) = (c.clone(), acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(t) = c.accept(request(&format!("writer {w} ticket {i}"))).await {
                    acked.lock().unwrap().insert(t.id);
                }
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let before = acked.lock().unwrap().len();
    assert!(before > 0, "accepts flow before the kill");

    cl.kill(first);
    let killed_at = Instant::now();
    let mut new_leader = None;
    while killed_at.elapsed() < ELECTION_TIMEOUT + Duration::from_millis(1_500) {
        if let Some(i) = c.find_leader().await {
            let id = c.nodes[i].id;
            if id != first {
                new_leader = Some((id, killed_at.elapsed()));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (leader, took) = new_leader.expect("a new leader after the kill");
    eprintln!("new leader node-{leader} after {took:?}");
    assert!(
        took <= ELECTION_TIMEOUT + Duration::from_millis(1_500),
        "election took {took:?}"
    );

    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > before,
        "accepts continue under the new leader"
    );

    cl.start(first);
    let commit = leader_commit(&c).await;
    for id in 1..=3 {
        assert!(
            wait_applied(&c, id, commit, Duration::from_secs(20)).await,
            "node {id} catches up"
        );
    }
    for id in &acked {
        for node in 0..3 {
            let t = c
                .get_on(node, id)
                .await
                .unwrap_or_else(|e| panic!("{id} on node {}: {e}", node + 1));
            assert_eq!(&t.id, id);
        }
    }
    eprintln!("{} acknowledged tickets on all three nodes", acked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_catches_up_by_snapshot() {
    let mut cl = Cluster::init(3, 7400, |cfg| cfg.tuning.compact_log_entries = 50);
    cl.start_all();
    let c = cl.client();
    let leader = wait_leader(&c, Duration::from_secs(10))
        .await
        .expect("leader");
    let victim = if leader == 3 { 2 } else { 3 };
    for i in 0..20 {
        c.accept(request(&format!("before {i}"))).await.unwrap();
    }
    cl.kill(victim);
    std::fs::remove_dir_all(cl.data_dir(victim)).unwrap();
    let mut ids = Vec::new();
    for i in 0..400 {
        ids.push(
            c.accept(request(&format!("while wiped {i}")))
                .await
                .unwrap()
                .id,
        );
    }
    let li = c.find_leader().await.unwrap();
    let st = c.status_of(li).await.unwrap().groups[0].clone();
    assert!(
        st.first_index > 100,
        "leader compacted its log (first index {})",
        st.first_index
    );

    cl.start(victim);
    assert!(wait_applied(&c, victim, st.commit_index, Duration::from_secs(20)).await);
    let vi = (victim - 1) as usize;
    let vs = c.status_of(vi).await.unwrap().groups[0].clone();
    assert!(
        vs.first_index > 1,
        "the wiped node starts its log after a snapshot (first index {})",
        vs.first_index
    );
    for id in ids.iter().step_by(7) {
        c.get_on(vi, id)
            .await
            .unwrap_or_else(|e| panic!("{id} on wiped node: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_stop_keeps_everything() {
    let mut cl = Cluster::init(3, 7500, |_| {});
    cl.start_all();
    let c = cl.client();
    wait_leader(&c, Duration::from_secs(10))
        .await
        .expect("leader");
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(c.accept(request(&format!("ticket {i}"))).await.unwrap().id);
    }
    for id in 1..=3 {
        cl.stop(id);
    }
    cl.start_all();
    let c = cl.client();
    wait_leader(&c, Duration::from_secs(10))
        .await
        .expect("leader after restart");
    let listed: Vec<String> = c
        .list(hotline_proto::v1::ListTicketsRequest {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .tickets
        .into_iter()
        .map(|t| t.id)
        .collect();
    let mut want = ids.clone();
    want.reverse();
    assert_eq!(listed, want, "all tickets, newest first");
    // New tickets continue the day's sequence instead of reusing numbers.
    let next = c.accept(request("after restart")).await.unwrap();
    assert!(!ids.contains(&next.id));
}

/// Each node's drill as `hotline fault show --json` reports it: id →
/// (generation, rule texts, packets it dropped toward each peer); nodes that
/// did not answer are left out.
type Drills = std::collections::BTreeMap<u64, (u64, Vec<String>, Vec<(u64, u64)>)>;

fn drills(cl: &Cluster) -> Drills {
    let v: serde_json::Value = serde_json::from_str(&cl.cli(&["fault", "show", "--json"])).unwrap();
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["result"] == "ok")
        .map(|n| {
            let texts = n["rules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["text"].as_str().unwrap().to_string())
                .collect();
            let dropped = n["counters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| (k["peer"].as_u64().unwrap(), k["dropped"].as_u64().unwrap()))
                .collect();
            (
                n["id"].as_u64().unwrap(),
                (n["generation"].as_u64().unwrap(), texts, dropped),
            )
        })
        .collect()
}

/// Waits until node `id` reports the drill `(generation, rules)`.
async fn wait_drill(cl: &Cluster, id: u64, want: &(u64, Vec<String>), within: Duration) {
    let start = Instant::now();
    loop {
        let d = drills(cl);
        if d.get(&id)
            .is_some_and(|(g, r, _)| (g, r) == (&want.0, &want.1))
        {
            return;
        }
        assert!(
            start.elapsed() < within,
            "node {id} did not take the drill {want:?} within {within:?}: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_outlives_restarts_and_reaches_the_node_that_missed_it() {
    let mut cl = Cluster::init(3, 8600, |_| {});
    cl.start_all();
    wait_leader(&cl.client(), Duration::from_secs(10))
        .await
        .expect("leader");
    // Node 3 is down when the operator cuts 1 from 2.
    cl.kill(3);
    let out: serde_json::Value = serde_json::from_str(&cl.cli(&[
        "fault",
        "partition",
        "--between",
        "1",
        "--and",
        "2",
        "--json",
    ]))
    .unwrap();
    assert_eq!(out["accepted"], 2, "{out}");
    assert_eq!(out["nodes"][2]["result"], "unreachable", "{out}");
    let cut = {
        let d = drills(&cl);
        assert_eq!(d[&1].0, d[&2].0, "one generation on both: {d:?}");
        assert_eq!(d[&1].1, vec!["partition 1 | 2".to_string()]);
        (d[&1].0, d[&1].1.clone())
    };
    assert!(cut.0 > 0);
    // Back, node 3 takes the drill from the others (it starts healed: it
    // never had it).
    cl.start(3);
    wait_drill(&cl, 3, &cut, Duration::from_secs(15)).await;
    assert!(
        cl.log(3).contains("fault drill taken from node"),
        "{}",
        cl.log(3)
    );
    let m = cl.metrics(3);
    assert!(
        m.contains(&format!("hotline_fault_drill_generation {}", cut.0)),
        "{m}"
    );

    // Every node killed and restarted: each comes back under the drill from
    // its own file, and the cut is enforced (1 and 2 still elect through 3
    // and accept).
    for id in 1..=3 {
        cl.kill(id);
    }
    cl.start_all();
    let c = cl.client();
    wait_leader(&c, Duration::from_secs(15))
        .await
        .expect("leader under the drill");
    c.accept(request("under the drill")).await.unwrap();
    let d = drills(&cl);
    for id in 1..=3 {
        assert_eq!((&d[&id].0, &d[&id].1), (&cut.0, &cut.1), "node {id}: {d:?}");
        assert!(
            cl.log(id)
                .contains("fault drill in force since before the restart"),
            "node {id}: {}",
            cl.log(id)
        );
    }
    let dropped = |id: u64, peer: u64| {
        d[&id]
            .2
            .iter()
            .filter(|(p, _)| *p == peer)
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    assert!(
        dropped(1, 2) + dropped(2, 1) > 0,
        "the elections' votes between 1 and 2 were cut: {d:?}"
    );
    assert_eq!(dropped(1, 3) + dropped(2, 3) + dropped(3, 1), 0, "{d:?}");

    // Node 2 is down for the heal; back, it drops its stale cut for the
    // others' newer, empty drill.
    cl.kill(2);
    let out: serde_json::Value =
        serde_json::from_str(&cl.cli(&["fault", "heal", "--json"])).unwrap();
    assert_eq!(out["accepted"], 2, "{out}");
    assert_eq!(out["drill"]["removed"], 1, "{out}");
    let healed = {
        let d = drills(&cl);
        assert!(d[&1].0 > cut.0 && d[&1].1.is_empty(), "{d:?}");
        (d[&1].0, Vec::new())
    };
    cl.start(2);
    wait_drill(&cl, 2, &healed, Duration::from_secs(15)).await;
    assert_eq!(drills(&cl).len(), 3);
}
