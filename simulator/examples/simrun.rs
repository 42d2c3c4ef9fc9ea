//! `cargo run --release -p hotline-simulator --example simrun -- SEED HOURS [TOPOLOGY]`:
//! the simulator without the `hotline` binary (profiling, debugging).

use hotline_federation::topology::{Scope, Topology};
use hotline_simulator::sim::{Sim, SimConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seed: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let hours: i64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let topo = match args.get(3).map(String::as_str) {
        Some("national") => Topology::generate(Scope::National, None).expect("national"),
        Some(s) if s.starts_with("province:") => {
            Topology::generate(Scope::Province(&s[9..]), None).expect("province")
        }
        Some(s) if s.starts_with("city:") => {
            Topology::generate(Scope::City(&s[5..]), None).expect("city")
        }
        _ => Topology::demo(),
    };
    let minutes: i64 = std::env::var("SIM_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(hours * 60);
    let r = if std::env::var("SIM_SWARM").is_ok() {
        hotline_simulator::sim::swarm_run(&topo, "demo", seed, minutes * 60_000, "", 20_000, 1)
            .expect("sim")
    } else {
        let mut cfg = SimConfig::new(seed, topo.clone(), minutes * 60_000);
        cfg.progress = true;
        if let Ok(tpd) = std::env::var("SIM_TPD") {
            cfg.workload = cfg.workload.scaled_to(&topo, tpd.parse().expect("SIM_TPD"));
        }
        if std::env::var("SIM_PARTITION").is_ok() {
            use hotline_simulator::model::{FaultAction, FaultEvent};
            let h = 3_600_000;
            cfg.faults = vec![
                FaultEvent {
                    at: h,
                    action: FaultAction::Partition {
                        a: vec![3, 5, 8],
                        b: vec![1, 2, 4, 6, 7],
                        label: "js".into(),
                    },
                },
                FaultEvent {
                    at: 3 * h,
                    action: FaultAction::Heal,
                },
            ];
        }
        Sim::new(cfg).expect("sim").run()
    };
    println!("{:?}", r.faults);
    for b in &r.backlog {
        let peak = b.samples.iter().map(|(_, v)| *v).max().unwrap_or(0);
        println!(
            "backlog {}: peak {peak}, at 119 min {:?}, end {:?}",
            b.link,
            b.samples.iter().find(|(m, _)| *m == 119),
            b.samples.last()
        );
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&r.events_by_kind).unwrap()
    );
    println!(
        "events {} tickets {} commands {} (p99 {} ms, max {} ms) transfers {} (p50 {} ms, p99 {} ms) wall {} ms ({:.0} events/s) invariants {:?}",
        r.events,
        r.tickets_accepted,
        r.commands_committed,
        r.commit_latency.p99_ms,
        r.commit_latency.max_ms,
        r.transfer_latency.count,
        r.transfer_latency.p50_ms,
        r.transfer_latency.p99_ms,
        r.wall_ms,
        r.events_per_sec,
        r.invariants.violation
    );
}
