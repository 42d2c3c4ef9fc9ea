//! End-to-end: a voter that missed its group's membership changes comes
//! back and catches up, over real processes and mutual TLS.
//!
//! 嘉定 310114's group starts with voters 1, 2, 3; nodes 4 and 5 are street
//! offices of 嘉定 (新成路街道, 真新街道), each with a group of its own; node
//! 6 is the national site, whose group keeps the replicated directory.
//! Node 3 goes down; online changes replace 1 and 2 by 4 and 5 (add-learner,
//! promote, remove), each recorded in the directory. Node 3 comes back with
//! its configuration {1, 2, 3}, which names neither 4 nor 5: by that alone
//! it would refuse every message of the group's leader and never catch up
//! (the group would live on 2 of 3 voters). The directory places 4 and 5 in
//! the group, so node 3 takes their messages, catches up and follows.
//! Then the same for a group found on disk: node 5 (which joined at run
//! time) is away while node 1 is added again and leads; back, it loads the
//! group with its configuration {3, 4, 5} at node 1's first message and
//! takes node 1's messages on the directory's word.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use hotline_proto::v1::ListTicketsRequest;
use serde_json::Value;

const GROUP: u64 = 310114;

const TOPOLOGY: &str = r#"
name = "admission"

[[node]]
id = 1
address = "127.0.0.1:7961"
site = "jiading-a"
level = "district"
region = "310114"

[[node]]
id = 2
address = "127.0.0.1:7962"
site = "jiading-b"
level = "district"
region = "310114"

[[node]]
id = 3
address = "127.0.0.1:7963"
site = "jiading-c"
level = "district"
region = "310114"

[[node]]
id = 4
address = "127.0.0.1:7964"
site = "xinchenglu"
level = "street"
region = "310114001"

[[node]]
id = 5
address = "127.0.0.1:7965"
site = "zhenxin"
level = "street"
region = "310114002"

[[node]]
id = 6
address = "127.0.0.1:7966"
site = "beijing"
level = "national"
region = ""

[[group]]
region = "310114"
voters = [1, 2, 3]

[[group]]
region = "310114001"
voters = [4]

[[group]]
region = "310114002"
voters = [5]

[[group]]
region = ""
voters = [6]
"#;

/// `hotline group OP --region 310114 --node N --json`: the change, which
/// must be recorded in the replicated directory before the command ends.
fn change(cl: &Cluster, op: &str, node: u64) -> Value {
    let out = cl.cli(&[
        "group",
        op,
        "--region",
        "310114",
        "--node",
        &node.to_string(),
        "--json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["directory_recorded"], true, "{op} {node}: {out}");
    v
}

/// Where the replicated directory places 嘉定's group: (version, voters,
/// learners).
fn placed(cl: &Cluster) -> (u64, Vec<u64>, Vec<u64>) {
    let out = Command::new(BIN)
        .args(["group", "directory", "--json", "--config"])
        .arg(cl.client_config())
        .output()
        .unwrap();
    let Ok(d) = serde_json::from_slice::<Value>(&out.stdout) else {
        return (0, vec![], vec![]);
    };
    let g = d["groups"]
        .as_array()
        .and_then(|gs| gs.iter().find(|g| g["group_id"] == GROUP).cloned())
        .unwrap_or_default();
    (
        d["version"].as_u64().unwrap_or(0),
        ids(&g["voters"]),
        ids(&g["learners"]),
    )
}

/// Node 3's refusals of raft messages from `from` for 嘉定's group, by its
/// log.
fn refusals_of(cl: &Cluster, from: u64) -> usize {
    let who = format!("from_node={from} group={GROUP}");
    plain(&cl.log(3))
        .lines()
        .filter(|l| l.contains("not a member of the group; refused") && l.contains(&who))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_that_missed_the_changes_catches_up_by_the_directory() {
    let started = Instant::now();
    let mut cl = Cluster::init_topology(TOPOLOGY, 7960, |_| {});
    cl.start_all();
    let c = cl.client();
    until("a leader of 310114", Duration::from_secs(20), || async {
        leader_of_group(&c, GROUP).await.is_some()
    })
    .await;
    // The national leader seeds the directory with the topology's groups.
    until(
        "the directory places 310114 on 1, 2, 3",
        Duration::from_secs(20),
        || async { placed(&cl).1 == vec![1, 2, 3] },
    )
    .await;
    for i in 0..3 {
        c.accept(request(&format!("before {i}"))).await.unwrap();
    }

    // Node 3 goes away (not leading, so the group needs no election).
    if leader_of_group(&c, GROUP)
        .await
        .is_some_and(|(l, _)| l == 3)
    {
        cl.cli(&[
            "group",
            "transfer-leader",
            "--region",
            "310114",
            "--node",
            "1",
        ]);
    }
    cl.stop(3);

    // 4 and 5 replace 1 and 2, one change at a time, each recorded.
    change(&cl, "add-learner", 4);
    change(&cl, "promote", 4);
    c.accept(request("while 3 is away")).await.unwrap();
    change(&cl, "add-learner", 5);
    change(&cl, "promote", 5);
    cl.cli(&[
        "group",
        "transfer-leader",
        "--region",
        "310114",
        "--node",
        "4",
    ]);
    change(&cl, "remove", 1);
    let v = change(&cl, "remove", 2);
    assert_eq!(ids(&v["voters"]), vec![3, 4, 5], "{v}");
    let (version, voters, learners) = placed(&cl);
    assert_eq!((voters, learners), (vec![3, 4, 5], vec![]), "v{version}");
    let last = c.accept(request("after the changes")).await.unwrap();
    let (leader, _) = leader_of_group(&c, GROUP)
        .await
        .expect("a leader of 3, 4, 5");
    assert!(leader == 4 || leader == 5, "leader {leader}");
    eprintln!("leader of 310114 on 3, 4, 5: node {leader} (directory v{version})");

    // Node 3 comes back with {1, 2, 3}. It takes the leader's messages on
    // the directory's word, catches up (its applied index reaches the
    // leader's commit index) and follows, with the group's configuration.
    cl.start(3);
    caught_up(
        &c,
        GROUP,
        3,
        "node 3 catches up and follows",
        Duration::from_secs(30),
        |g| {
            g.role == "follower" && g.applied_index >= last.raft_index && {
                let mut v = g.voters.clone();
                v.sort_unstable();
                v == [3, 4, 5]
            }
        },
    )
    .await;
    let log3 = plain(&cl.log(3));
    assert!(
        log3.contains("raft message admitted by the replicated directory"),
        "node 3 took the new members' messages on the directory's word"
    );
    // Everything accepted while it was away is there.
    let after = c.accept(request("with node 3 back")).await.unwrap();
    until(
        "node 3 has every ticket",
        Duration::from_secs(10),
        || async { c.get_local(3, 0, &after.id).await.is_ok() },
    )
    .await;
    let all = c
        .list(ListTicketsRequest {
            group_id: GROUP,
            ..Default::default()
        })
        .await
        .unwrap()
        .tickets;
    assert_eq!(all.len(), 6, "every ticket accepted in 310114");
    for t in all {
        assert!(c.get_local(3, 0, &t.id).await.is_ok(), "{} on node 3", t.id);
    }

    // Its own configuration names the members now: no refusal of them
    // from here on (before the directory was read at its start, a few may
    // have been refused).
    let (leader, _) = leader_of_group(&c, GROUP).await.expect("a leader");
    let refused = (refusals_of(&cl, 4), refusals_of(&cl, 5));
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.accept(request("one more")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        (refusals_of(&cl, 4), refusals_of(&cl, 5)),
        refused,
        "node 3 still refuses the members (leader {leader})"
    );
    let g3 = group_on(&c, GROUP, 3).await.unwrap();
    assert_eq!(g3.role, "follower");
    assert_eq!(g3.leader_id, leader);

    // The same rule for a group found on disk. Node 5 joined 嘉定's group
    // at run time (the topology does not place it there), so after a
    // restart it loads the group from its disk at the first message for
    // it, if the configuration there names the sender, or else the
    // directory does. It goes down; node 1 is added again and leads; node 5
    // comes back with {3, 4, 5}, and node 1's messages bring the group back.
    cl.stop(5);
    change(&cl, "add-learner", 1);
    change(&cl, "promote", 1);
    cl.cli(&[
        "group",
        "transfer-leader",
        "--region",
        "310114",
        "--node",
        "1",
    ]);
    let (_, voters, _) = placed(&cl);
    assert_eq!(voters, vec![1, 3, 4, 5]);
    let last = c.accept(request("while 5 is away")).await.unwrap();
    cl.start(5);
    caught_up(
        &c,
        GROUP,
        5,
        "node 5 loads the group from its disk and catches up",
        Duration::from_secs(30),
        |g| g.role == "follower" && g.applied_index >= last.raft_index && g.leader_id == 1,
    )
    .await;
    let joined: Vec<String> = plain(&cl.log(5))
        .lines()
        .filter(|l| l.contains("hosting a group joined at run time"))
        .map(str::to_string)
        .collect();
    let back = joined.last().expect("node 5 hosted the group again");
    assert!(
        back.contains("from_node=1") && back.contains("from_disk=true"),
        "{back}"
    );
    // (Loaded on the directory's word, `by_directory=true`, or, when node
    // 1's first heartbeat came before node 5 had read the directory, as a
    // seed from a member by the topology; either way its configuration
    // does not name node 1, and node 1's messages are taken only on the
    // directory's word.)
    eprintln!("{back}");
    assert!(
        plain(&cl.log(5)).lines().any(|l| l
            .contains("raft message admitted by the replicated directory")
            && l.contains("group=310114 from_node=1")),
        "node 5 took node 1's messages on the directory's word"
    );

    for n in 1..=6 {
        let log = cl.log(n);
        assert!(!log.contains("panicked"), "node {n} panicked:\n{log}");
    }
    eprintln!("took {:?}", started.elapsed());
}
