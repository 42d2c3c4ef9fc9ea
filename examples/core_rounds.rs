//! CPU of the sans-IO core per accepted ticket when one node's work is
//! spread over many groups: G groups of 3 replicas each (nodes 1–3, node 1
//! leads every group), K accepts in flight per group (closed loop), every
//! raft message encoded and decoded as the transport does, no disk and no
//! network. What it isolates: `bench/groups-fresh.sh` measures a real
//! 3-node cluster, whose figures move with the VM by ±15 % from run to run;
//! here the same replicas and state machine run alone on one thread, so the
//! cost of a raft round per group (and of 64 groups' state going cold
//! between two turns) shows without disk, gRPC or scheduling noise.
//!
//!   cargo run --release --example core_rounds -- GROUPS IN_FLIGHT ACCEPTS
//!
//! e.g. `64 2 80000` against `1 128 80000` (128 clients over 64 groups or on
//! one group, the volume of a 10 s run of `bench/groups-fresh.sh`). The
//! first tenth of the accepts warms up and is not counted. Prints one JSON
//! line: µs per accept (all three replicas) and raft messages per accept.
//! The state machine's outbox is never delivered here (no notifier), in
//! both configurations alike.

use std::time::Instant;

use hotline_node::core::{Recovered, Replica, ReplicaConfig};
use hotline_proto::v1::{AcceptRequest, Command, Kind, command};
use protobuf::Message as _;
use raft::eraftpb::Message;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NODES: usize = 3;
/// Loop iterations per raft tick (the node ticks every 100 ms; an iteration
/// of a busy node takes a few ms).
const ITERATIONS_PER_TICK: u64 = 20;

fn accept(request_id: u64, text: &str) -> Command {
    Command {
        request_id,
        at_ms: 1_795_831_200_000 + request_id as i64,
        accept_text: Vec::new(),
        op: Some(command::Op::Accept(AcceptRequest {
            region: "310114".into(),
            kind: Kind::Complaint as i32,
            category: "市容环境".into(),
            text: text.to_string(),
            phone: "13900000000".into(),
            ..Default::default()
        })),
    }
}

fn arg(args: &[String], i: usize, name: &str) -> u64 {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or_else(|| {
        panic!("usage: core_rounds GROUPS IN_FLIGHT ACCEPTS ({name} missing or not a number)")
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let groups = arg(&args, 0, "GROUPS") as usize;
    let in_flight_max = arg(&args, 1, "IN_FLIGHT");
    let accepts = arg(&args, 2, "ACCEPTS");
    assert!((1..=10_000).contains(&groups) && (1..=4_096).contains(&in_flight_max));
    let text = "噪".repeat(1024 / 3);
    // replicas[node][group]
    let mut replicas: Vec<Vec<Replica>> = (1..=NODES as u64)
        .map(|n| {
            (0..groups as u64)
                .map(|g| {
                    let cfg = ReplicaConfig::new(n, 1_000 + g, "310114");
                    Replica::new(cfg, Recovered::bootstrap(&[1, 2, 3])).expect("replica")
                })
                .collect()
        })
        .collect();
    for r in &mut replicas[0] {
        r.campaign();
    }
    let mut inbox: Vec<Vec<(usize, Vec<u8>)>> = vec![Vec::new(); NODES];
    let mut in_flight = vec![0u64; groups];
    let (mut next_request, mut done, mut messages, mut iterations) = (1u64, 0u64, 0u64, 0u64);
    let warm_up = accepts / 10;
    let mut measured: Option<(Instant, u64, u64)> = None;
    while done < warm_up + accepts {
        iterations += 1;
        if measured.is_none() && done >= warm_up && replicas[0].iter().all(Replica::is_leader) {
            measured = Some((Instant::now(), done, messages));
        }
        for (n, node) in replicas.iter_mut().enumerate() {
            for (g, bytes) in std::mem::take(&mut inbox[n]) {
                let mut m = Message::default();
                m.merge_from_bytes(&bytes).expect("decodes");
                node[g].step(m);
            }
            if n == 0 {
                for (g, r) in node.iter_mut().enumerate() {
                    while r.is_settled_leader() && in_flight[g] < in_flight_max {
                        r.propose(&accept(next_request, &text)).expect("leader");
                        next_request += 1;
                        in_flight[g] += 1;
                    }
                }
            }
            let mut out = Vec::new();
            for (g, r) in node.iter_mut().enumerate() {
                if !r.has_ready() {
                    continue;
                }
                let rd = r.ready();
                let mut applied = rd.applied.len() as u64;
                let after_msgs = {
                    out.extend(rd.messages.into_iter().map(|m| (m.to, g, m)));
                    // Nothing to persist: the disk is what this leaves out.
                    let after = r.on_persisted();
                    applied += after.applied.len() as u64;
                    after.messages
                };
                out.extend(after_msgs.into_iter().map(|m| (m.to, g, m)));
                if n == 0 {
                    in_flight[g] -= applied;
                    done += applied;
                }
            }
            messages += out.len() as u64;
            for (to, g, m) in out {
                let bytes = m.write_to_bytes().expect("encodes");
                inbox[to as usize - 1].push((g, bytes));
            }
        }
        if iterations.is_multiple_of(ITERATIONS_PER_TICK) {
            for r in replicas.iter_mut().flatten() {
                r.tick();
            }
        }
    }
    let (t0, done0, messages0) = measured.expect("leaders settled before the warm-up ended");
    let counted = (done - done0) as f64;
    println!(
        "{{\"groups\":{groups},\"in_flight_per_group\":{in_flight_max},\"accepts\":{counted},\"us_per_accept\":{:.2},\"raft_messages_per_accept\":{:.3}}}",
        t0.elapsed().as_secs_f64() * 1e6 / counted,
        (messages - messages0) as f64 / counted
    );
}
