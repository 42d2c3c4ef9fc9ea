//! `hotline sim run` and `hotline sim swarm`: the deterministic simulator
//! from the command line.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use hotline_federation::topology::{Scope, Topology};
use hotline_simulator::model::{Report, SimMs};
use hotline_simulator::sim::{Sim, SimConfig};
use hotline_simulator::workload::Workload;

#[derive(Subcommand)]
pub enum SimCmd {
    /// One seeded run: prints a summary, writes report.json and report.html.
    Run {
        /// city:3101 | province:31 | national | demo | FILE (a topology in the node's format)
        #[arg(long, default_value = "demo")]
        topology: String,
        /// Simulated time: 90s, 15m, 24h, 1h30m.
        #[arg(long, default_value = "1h")]
        duration: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// A fault schedule (see simulator/data/faults/).
        #[arg(long)]
        faults: Option<PathBuf>,
        /// Workload parameters (see simulator/data/workload.toml).
        #[arg(long)]
        workload: Option<PathBuf>,
        /// Directory for report.json and report.html.
        #[arg(long, default_value = "sim-report")]
        report: PathBuf,
        /// A holiday surge (+51.7%, Jinan) on top of the workload.
        #[arg(long)]
        holiday: bool,
        /// Scale the workload's daily volume on this topology (before surge
        /// and incidents) to this many calls; the shape is unchanged.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
        tickets_per_day: Option<u64>,
        /// No progress line.
        #[arg(long)]
        quiet: bool,
        #[arg(long)]
        json: bool,
        /// Shards, each running the groups of some provinces, over the
        /// machine's cores (a national day on two: see BENCHMARKS.md). The
        /// seed and this number give one run: its digest is the same on any
        /// machine, whatever its cores.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=16))]
        shards: u8,
    },
    /// Many seeds with random fault schedules; each failure is one command.
    Swarm {
        /// A range like 1..200 (inclusive).
        #[arg(long, default_value = "1..200")]
        seeds: String,
        #[arg(long, default_value = "demo")]
        topology: String,
        #[arg(long, default_value = "30m")]
        duration: String,
        /// Scale the workload down (tickets per day) so a run stays short.
        #[arg(long, default_value_t = 20_000)]
        tickets_per_day: u64,
        /// Test-only: make the destination apply a retried transfer twice.
        /// The invariants must catch it.
        #[arg(long, hide = true)]
        break_transfer_idempotency: bool,
        /// Shards per run (as `sim run --shards`).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=16))]
        shards: u8,
    },
}

pub fn parse_topology(spec: &str) -> Result<Topology> {
    let t = if let Some(code) = spec.strip_prefix("city:") {
        Topology::generate(Scope::City(code), None)
    } else if let Some(code) = spec.strip_prefix("province:") {
        Topology::generate(Scope::Province(code), None)
    } else if spec == "national" {
        Topology::generate(Scope::National, None)
    } else if spec == "demo" {
        Ok(Topology::demo())
    } else {
        Topology::load(std::path::Path::new(spec))
    };
    t.map_err(|e| anyhow!("--topology {spec}: {e}"))
}

fn parse_seeds(s: &str) -> Result<(u64, u64)> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| anyhow!("--seeds: {s:?} is not a range like 1..200"))?;
    let a: u64 = a.parse().context("--seeds: start")?;
    let b: u64 = b.parse().context("--seeds: end")?;
    if b < a {
        bail!("--seeds: {s} is empty");
    }
    Ok((a, b))
}

fn duration(flag: &str, s: &str) -> Result<SimMs> {
    hotline_simulator::schedule::parse_duration(s).map_err(|e| anyhow!("{flag}: {e}"))
}

fn summary(r: &Report) -> String {
    let inv = &r.invariants;
    let ok = inv.violation.is_none();
    format!(
        "seed {} on {} ({} nodes, {} groups{}): {:.1} h simulated in {:.1} s, {} events ({:.0}/s), {} tickets, {} commands, {} transfers ({} cross-province, {} sent back and dispatched at first contact, {} moved on from a unit's return); commit p50 {:.0} ms p99 {:.0} ms; transfer p50 {:.0} ms p99 {:.0} ms; notification p50 {:.0} ms p99 {:.0} ms; invariants {}; digest {}",
        r.seed,
        r.topology,
        r.nodes,
        r.groups,
        if r.shards > 1 {
            format!(", {} shards", r.shards)
        } else {
            String::new()
        },
        r.simulated_ms as f64 / 3.6e6,
        r.wall_ms as f64 / 1000.0,
        r.events,
        r.events_per_sec,
        r.tickets_accepted,
        r.commands_committed,
        r.transfers,
        r.cross_province_transfers,
        r.send_backs,
        r.moved_from_review,
        r.commit_latency.p50_ms,
        r.commit_latency.p99_ms,
        r.transfer_latency.p50_ms,
        r.transfer_latency.p99_ms,
        r.notify_latency.p50_ms,
        r.notify_latency.p99_ms,
        if ok {
            "hold".to_string()
        } else {
            format!("VIOLATED: {}", inv.violation.clone().unwrap_or_default())
        },
        &r.digest[..16]
    )
}

/// A simulation only grows its heap until the run ends (a national day to
/// ≈ 12 GB), so memory mimalloc gives back to the OS is asked for again soon
/// after, and the kernel zeroes every page anew: purging was ≈ half of the
/// run's system time (flat national 2 h: 3.5 → 1.8 s sys, user unchanged).
/// A simulation therefore never purges (an explicit `MIMALLOC_PURGE_DELAY`
/// still wins). For the same reason it keeps transparent huge pages, which
/// the other commands turn off (see `set_thp`).
fn keep_freed_memory() {
    crate::set_purge_delay(-1);
    crate::set_thp(true);
}

pub fn run(cmd: SimCmd) -> Result<()> {
    keep_freed_memory();
    match cmd {
        SimCmd::Run {
            topology,
            duration: d,
            seed,
            faults,
            workload,
            report,
            holiday,
            tickets_per_day,
            quiet,
            json,
            shards,
        } => {
            let topo = parse_topology(&topology)?;
            let duration_ms = duration("--duration", &d)?;
            let mut cfg = SimConfig::new(seed, topo.clone(), duration_ms);
            cfg.topology_label = topology.clone();
            if let Some(w) = &workload {
                cfg.workload = Workload::load(w).map_err(|e| anyhow!("--workload: {e}"))?;
            }
            if holiday {
                cfg.workload.holiday = true;
            }
            if let Some(n) = tickets_per_day {
                cfg.workload = cfg.workload.scaled_to(&topo, n);
            }
            if let Some(f) = &faults {
                cfg.faults = hotline_simulator::schedule::load(f, &topo)
                    .map_err(|e| anyhow!("--faults: {e}"))?;
            }
            cfg.progress = !quiet && !json;
            cfg.shards = usize::from(shards);
            cfg.reproduce = format!(
                "hotline sim run --topology {topology} --duration {d} --seed {seed}{}{}{}{}{}",
                faults
                    .as_ref()
                    .map(|f| format!(" --faults {}", f.display()))
                    .unwrap_or_default(),
                workload
                    .as_ref()
                    .map(|f| format!(" --workload {}", f.display()))
                    .unwrap_or_default(),
                if holiday { " --holiday" } else { "" },
                tickets_per_day
                    .map(|n| format!(" --tickets-per-day {n}"))
                    .unwrap_or_default(),
                if shards > 1 {
                    format!(" --shards {shards}")
                } else {
                    String::new()
                }
            );
            cfg.free_at_end = false;
            let r = Sim::new(cfg).map_err(|e| anyhow!(e))?.run();
            hotline_simulator::report::write(&r, &report)
                .with_context(|| format!("--report {}", report.display()))?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!("{}", summary(&r));
                println!(
                    "report: {}/report.json, {}/report.html",
                    report.display(),
                    report.display()
                );
            }
            if let Some(v) = &r.invariants.violation {
                eprintln!(
                    "INVARIANT VIOLATED at seed {seed}: {v}\nreproduce: {}",
                    r.reproduce
                );
                crate::exit_now(3);
            }
            crate::exit_now(0)
        }
        SimCmd::Swarm {
            seeds,
            topology,
            duration: d,
            tickets_per_day,
            break_transfer_idempotency,
            shards,
        } => {
            let (a, b) = parse_seeds(&seeds)?;
            let topo = parse_topology(&topology)?;
            let duration_ms = duration("--duration", &d)?;
            if !hotline_simulator::sim::set_break_transfer_idempotency(break_transfer_idempotency) {
                bail!("--break-transfer-idempotency needs a build with --features test-switches");
            }
            let mut failures = Vec::new();
            let started = std::time::Instant::now();
            for seed in a..=b {
                let r = hotline_simulator::sim::swarm_run(
                    &topo,
                    &topology,
                    seed,
                    duration_ms,
                    &d,
                    tickets_per_day,
                    usize::from(shards),
                )
                .map_err(|e| anyhow!(e))?;
                if let Some(v) = &r.invariants.violation {
                    println!("seed {seed}: FAILED: {v}\n  reproduce: {}", r.reproduce);
                    failures.push(seed);
                } else {
                    println!("{}", summary(&r));
                }
            }
            println!(
                "swarm: {} seeds in {:.1} s, {} failed {:?}",
                b - a + 1,
                started.elapsed().as_secs_f64(),
                failures.len(),
                failures
            );
            if !failures.is_empty() {
                std::process::exit(3);
            }
            Ok(())
        }
    }
}
