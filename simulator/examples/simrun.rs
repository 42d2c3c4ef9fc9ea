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
    let mut cfg = SimConfig::new(seed, topo, hours * 3_600_000);
    cfg.progress = true;
    let r = Sim::new(cfg).expect("sim").run();
    println!(
        "{}",
        serde_json::to_string_pretty(&r.events_by_kind).unwrap()
    );
    println!(
        "events {} tickets {} commands {} wall {} ms ({:.0} events/s) invariants {:?}",
        r.events,
        r.tickets_accepted,
        r.commands_committed,
        r.wall_ms,
        r.events_per_sec,
        r.invariants.violation
    );
}
