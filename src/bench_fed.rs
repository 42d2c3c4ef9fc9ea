//! Federation benchmarks (`hotline bench transfer | topology | leaders |
//! idle`), besides the closed-loop accept bench of `bench.rs`:
//!
//! - `transfer`: closed-loop cross-region transfers — each client accepts a
//!   ticket whose location lies in another group's region and waits until
//!   that group owns it — with accept→owned latencies in HDR histograms;
//! - `topology`: writes a placement of N real district groups on M nodes,
//!   every node a voter of every group (multi-raft density benches);
//! - `leaders`: waits until every group of a topology has a leader that all
//!   its replicas know, and says how long that took;
//! - `idle`: CPU (utime + stime over an interval) and memory (VmRSS, VmHWM)
//!   of running node processes, from `/proc`.
//!
//! `bench/federation.sh` runs them all. Everything is bounded: clients,
//! durations, polls and group counts.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use hotline_federation::topology::{GroupSpec, NodeSpec, Topology, group_region};
use hotline_federation::{Level, regions};
use hotline_node::client::Client;
use hotline_node::config::ClientConfig;
use hotline_proto::v1::{AcceptRequest, Kind, Location, TransferState};
use serde_json::json;

/// What `hotline bench …` runs.
pub enum Job {
    /// `bench accept` and `bench etcd-put`.
    Closed(crate::bench::Spec),
    Transfer(TransferSpec),
    Topology(TopologySpec),
    Leaders {
        config: ClientConfig,
        timeout: Duration,
        json: bool,
    },
    Idle {
        pids: Vec<u32>,
        duration: Duration,
        json: bool,
    },
}

pub async fn run(job: Job) -> Result<()> {
    match job {
        Job::Closed(spec) => crate::bench::run(spec).await,
        Job::Transfer(spec) => transfer(spec).await,
        Job::Topology(spec) => write_topology(&spec),
        Job::Leaders {
            config,
            timeout,
            json,
        } => leaders(&config, timeout, json).await,
        Job::Idle {
            pids,
            duration,
            json,
        } => idle(&pids, duration, json).await,
    }
}

/// Bounds.
const MAX_CLIENTS: usize = 1_024;
const MAX_TRANSFER_TIMEOUT: Duration = Duration::from_secs(300);
const MIN_POLL: Duration = Duration::from_millis(1);
const MAX_GROUPS: usize = 5_000;
const MAX_NODES: usize = 9;
const MAX_WAIT: Duration = Duration::from_secs(1_800);
const MAX_IDLE_SAMPLE: Duration = Duration::from_secs(600);

/// A pause like `200ms` or `0s` (zero allowed, unlike `--duration`).
pub fn parse_pause(s: &str) -> Result<Duration> {
    let d: jiff::SignedDuration = s
        .parse()
        .with_context(|| format!("{s:?} is not a duration like 200ms or 0s"))?;
    if d.is_negative() || d > jiff::SignedDuration::from_secs(60) {
        bail!("{s:?}: must be 0 to 60 s");
    }
    Ok(d.unsigned_abs())
}

fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    h.record((d.as_micros() as u64).max(1)).ok();
}

/// p50/p99/p999/max in ms, or nulls for an empty histogram.
fn quantiles(h: &Histogram<u64>) -> serde_json::Value {
    if h.is_empty() {
        return json!({ "n": 0, "p50_ms": null, "p99_ms": null, "p999_ms": null, "max_ms": null });
    }
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    json!({
        "n": h.len(), "p50_ms": ms(0.5), "p99_ms": ms(0.99), "p999_ms": ms(0.999),
        "max_ms": h.max() as f64 / 1000.0, "mean_ms": h.mean() / 1000.0,
    })
}

fn line(name: &str, h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return format!("  {name:<34} (none)");
    }
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    format!(
        "  {name:<34} n {:>6}  p50 {:>8.1} ms  p99 {:>8.1} ms  p999 {:>8.1} ms  max {:>8.1} ms",
        h.len(),
        ms(0.5),
        ms(0.99),
        ms(0.999),
        h.max() as f64 / 1000.0
    )
}

// ---------------------------------------------------------------------------
// bench transfer

pub struct TransferSpec {
    pub config: ClientConfig,
    /// The accepting center (its group is the origin).
    pub from: String,
    /// The street (or district) the tickets are about, in another group.
    pub location: String,
    pub clients: usize,
    pub duration: Duration,
    /// Pause between two reads of the destination while waiting.
    pub poll: Duration,
    /// Give up on one transfer after this long (counted as timed out).
    pub timeout: Duration,
    /// Also wait for the delivery receipt back at the origin.
    pub receipt: bool,
    /// Each client pauses a uniform random time below this before each
    /// accept (not measured), so that a closed loop does not lock onto the
    /// forwarders' fixed cadence.
    pub jitter: Duration,
    pub connections: usize,
    /// Append every delivered transfer's latencies to this file, one line
    /// each: `owned_client_ms owned_server_ms` (to pool several runs).
    pub samples: Option<PathBuf>,
    pub json: bool,
}

#[derive(Default)]
struct TransferStats {
    accepted: u64,
    delivered: u64,
    timed_out: u64,
    errors: u64,
    not_transferred: u64,
}

struct Hists {
    /// Client clock: start of the accept call → the destination's leader
    /// first answers with the ticket (includes up to one poll interval).
    owned: Histogram<u64>,
    /// Server clocks: `accept` event at the origin → `transfer_in` event at
    /// the destination (times chosen by each group's proposer).
    server: Histogram<u64>,
    /// The accept call alone (accept + transfer_out, one command).
    accept: Histogram<u64>,
    /// Client clock: start of the accept call → the origin's stub says
    /// Delivered (only with `--receipt`).
    receipt: Histogram<u64>,
}

impl Hists {
    fn new() -> Self {
        Hists {
            owned: histogram(),
            server: histogram(),
            accept: histogram(),
            receipt: histogram(),
        }
    }
    fn add(&mut self, o: &Hists) -> Result<()> {
        self.owned.add(&o.owned)?;
        self.server.add(&o.server)?;
        self.accept.add(&o.accept)?;
        self.receipt.add(&o.receipt)?;
        Ok(())
    }
}

async fn wait_leader(c: &Client, group: u64, what: &str) -> Result<()> {
    for _ in 0..300 {
        if c.find_leader_of(Some(group)).await.is_some() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("no leader of {what} (group {group}) within 30 s")
}

async fn transfer(spec: TransferSpec) -> Result<()> {
    if spec.clients == 0 || spec.clients > MAX_CLIENTS {
        bail!("--clients: must be 1 to {MAX_CLIENTS}");
    }
    if spec.timeout > MAX_TRANSFER_TIMEOUT {
        bail!("--timeout: at most {MAX_TRANSFER_TIMEOUT:?}");
    }
    if spec.poll < MIN_POLL {
        bail!("--poll: at least {MIN_POLL:?}");
    }
    let c = Client::new(&spec.config, spec.connections).map_err(|e| anyhow::anyhow!(e))?;
    let origin = c
        .group_of_region(&spec.from)
        .ok_or_else(|| anyhow::anyhow!("--from: no group owns {}", spec.from))?;
    let dest = c
        .group_of_region(&spec.location)
        .ok_or_else(|| anyhow::anyhow!("--location: no group owns {}", spec.location))?;
    if origin == dest {
        bail!(
            "--location {} is owned by the origin's group {origin}: no transfer",
            spec.location
        );
    }
    let path = c
        .directory
        .as_ref()
        .map(|d| d.path(origin, dest))
        .unwrap_or_default();
    wait_leader(&c, origin, "the origin").await?;
    wait_leader(&c, dest, "the destination").await?;

    let c = Arc::new(c);
    let start = Instant::now();
    let deadline = start + spec.duration;
    let spec = Arc::new(spec);
    let mut tasks = Vec::new();
    for client_no in 0..spec.clients {
        let c = c.clone();
        let spec = spec.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = Hists::new();
            let mut st = TransferStats::default();
            let mut samples: Vec<String> = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                i += 1;
                if !spec.jitter.is_zero() {
                    let pause = rand::random::<f64>() * spec.jitter.as_secs_f64();
                    tokio::time::sleep(Duration::from_secs_f64(pause)).await;
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                let req = AcceptRequest {
                    region: spec.from.clone(),
                    kind: Kind::Complaint as i32,
                    category: "环境保护".into(),
                    text: format!("浏河镇工地夜间施工噪声 (bench {client_no}/{i})"),
                    phone: format!("139{:08}", (client_no as u64 * 1_000_003 + i) % 100_000_000),
                    location: Some(Location {
                        code: spec.location.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                let t0 = Instant::now();
                let stub = match c.accept(req).await {
                    Ok(t) => t,
                    Err(_) => {
                        st.errors += 1;
                        tokio::time::sleep(spec.poll).await;
                        continue;
                    }
                };
                record(&mut h.accept, t0.elapsed());
                st.accepted += 1;
                if stub.owner_group != dest {
                    st.not_transferred += 1;
                    continue;
                }
                let give_up = t0 + spec.timeout;
                let mut owned = None;
                while Instant::now() < give_up {
                    tokio::time::sleep(spec.poll).await;
                    if let Ok(t) = c.get_in(dest, &stub.id).await
                        && t.events.iter().any(|e| e.kind == "transfer_in")
                    {
                        owned = Some(t);
                        break;
                    }
                }
                let Some(t) = owned else {
                    st.timed_out += 1;
                    continue;
                };
                let owned_after = t0.elapsed();
                record(&mut h.owned, owned_after);
                st.delivered += 1;
                let at = |kind: &str| t.events.iter().find(|e| e.kind == kind).map(|e| e.at_ms);
                let server_ms = match (at("accept"), at("transfer_in")) {
                    (Some(a), Some(b)) => b.saturating_sub(a),
                    _ => -1,
                };
                if server_ms >= 0 {
                    record(&mut h.server, Duration::from_millis(server_ms as u64));
                }
                if spec.samples.is_some() {
                    samples.push(format!(
                        "{:.3} {server_ms}\n",
                        owned_after.as_secs_f64() * 1000.0
                    ));
                }
                if spec.receipt {
                    while Instant::now() < give_up {
                        if let Ok(s) = c.get_in(origin, &stub.id).await
                            && s.transfer_state == TransferState::Delivered as i32
                        {
                            record(&mut h.receipt, t0.elapsed());
                            break;
                        }
                        tokio::time::sleep(spec.poll).await;
                    }
                }
            }
            (h, st, samples)
        }));
    }
    let mut all = Hists::new();
    let mut st = TransferStats::default();
    let mut samples = String::new();
    for t in tasks {
        let (h, s, lines) = t.await?;
        samples.extend(lines);
        all.add(&h)?;
        st.accepted += s.accepted;
        st.delivered += s.delivered;
        st.timed_out += s.timed_out;
        st.errors += s.errors;
        st.not_transferred += s.not_transferred;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let tput = st.delivered as f64 / elapsed;
    if let Some(path) = &spec.samples {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(samples.as_bytes()))
            .with_context(|| format!("--samples {}", path.display()))?;
    }
    // The route taken, as the national group recorded it (cross-province).
    let hops: Vec<u64> = c
        .transfers(hotline_federation::topology::NATIONAL_GROUP, true, 1)
        .await
        .ok()
        .and_then(|r| r.into_iter().next()?.envelope)
        .map(|e| e.hops)
        .unwrap_or_default();
    if spec.json {
        println!(
            "{}",
            json!({
                "bench": "transfer", "from": spec.from, "location": spec.location,
                "origin_group": origin, "destination_group": dest, "hierarchy": path,
                "national_record_hops": hops, "clients": spec.clients,
                "poll_ms": spec.poll.as_secs_f64() * 1000.0,
                "jitter_ms": spec.jitter.as_secs_f64() * 1000.0,
                "duration_s": elapsed, "accepted": st.accepted, "delivered": st.delivered,
                "timed_out": st.timed_out, "errors": st.errors,
                "not_transferred": st.not_transferred, "delivered_per_s": tput,
                "owned_client": quantiles(&all.owned), "owned_server": quantiles(&all.server),
                "accept_call": quantiles(&all.accept), "receipt_client": quantiles(&all.receipt),
            })
        );
    } else {
        println!(
            "transfer {} → {} (groups {origin} → {dest}; hierarchy {path:?}; hops at national {hops:?}): {} clients, {elapsed:.1} s",
            spec.from, spec.location, spec.clients
        );
        println!(
            "  accepted {}, delivered {}, timed out {}, errors {}, not transferred {}",
            st.accepted, st.delivered, st.timed_out, st.errors, st.not_transferred
        );
        println!("  throughput {tput:.1} transfers/s (delivered)");
        println!("{}", line("accept → owned (client clock)", &all.owned));
        println!("{}", line("accept → transfer_in (server)", &all.server));
        println!("{}", line("accept call", &all.accept));
        if spec.receipt {
            println!("{}", line("accept → receipt at origin", &all.receipt));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// bench topology

pub struct TopologySpec {
    pub nodes: usize,
    pub groups: usize,
    /// Province codes to take districts from, in this order; empty: all.
    pub provinces: Vec<String>,
    pub port_base: u16,
    pub out: PathBuf,
}

/// District codes (6 digits, real), province by province in the given order
/// (all provinces by code when empty), each province's by code.
fn districts(provinces: &[String], want: usize) -> Result<Vec<&'static str>> {
    let table = regions();
    let provinces: Vec<&str> = if provinces.is_empty() {
        table.children("").map(|p| p.code).collect()
    } else {
        for p in provinces {
            match table.get(p) {
                Ok(r) if r.level == Level::Province => {}
                _ => bail!("--provinces: {p:?} is not a province code"),
            }
        }
        provinces.iter().map(String::as_str).collect()
    };
    let mut out = Vec::new();
    for p in provinces {
        for city in table.children(p) {
            for d in table.children(city.code) {
                if d.level == Level::District {
                    out.push(d.code);
                    if out.len() == want {
                        return Ok(out);
                    }
                }
            }
        }
    }
    Ok(out)
}

fn write_topology(spec: &TopologySpec) -> Result<()> {
    if spec.nodes == 0 || spec.nodes > MAX_NODES {
        bail!("--nodes: must be 1 to {MAX_NODES}");
    }
    if spec.groups == 0 || spec.groups > MAX_GROUPS {
        bail!("--groups: must be 1 to {MAX_GROUPS}");
    }
    if u64::from(spec.port_base) + spec.nodes as u64 > u64::from(u16::MAX) || spec.port_base == 0 {
        bail!("--port-base: node ports must fit in 1..=65535");
    }
    let want = spec.groups.max(spec.nodes);
    let codes = districts(&spec.provinces, want)?;
    if codes.len() < want {
        bail!(
            "only {} districts in {:?}; asked for {want}",
            codes.len(),
            spec.provinces
        );
    }
    let ids: Vec<u64> = (1..=spec.nodes as u64).collect();
    let topo = Topology {
        name: format!("bench-{}-nodes-{}-groups", spec.nodes, spec.groups),
        nodes: ids
            .iter()
            .map(|&id| NodeSpec {
                id,
                address: format!("127.0.0.1:{}", u64::from(spec.port_base) + id),
                site: format!("site-{id}"),
                level: "district".into(),
                region: codes[id as usize - 1].to_string(),
            })
            .collect(),
        groups: codes[..spec.groups]
            .iter()
            .map(|code| GroupSpec {
                region: code.to_string(),
                voters: ids.clone(),
                learners: vec![],
            })
            .collect(),
    };
    topo.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let header = format!(
        "# Written by `hotline bench topology --nodes {} --groups {}`: every node a\n\
         # voter of every group; groups are real district codes ({} … {}).\n",
        spec.nodes,
        spec.groups,
        codes[0],
        codes[spec.groups - 1]
    );
    std::fs::write(&spec.out, header + &topo.to_toml())
        .with_context(|| format!("write {}", spec.out.display()))?;
    println!(
        "wrote {}: {} nodes, {} groups ({} … {})",
        spec.out.display(),
        spec.nodes,
        spec.groups,
        codes[0],
        codes[spec.groups - 1]
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// bench leaders

async fn leaders(cfg: &ClientConfig, timeout: Duration, as_json: bool) -> Result<()> {
    if timeout > MAX_WAIT {
        bail!("--timeout: at most {MAX_WAIT:?}");
    }
    let start = Instant::now();
    let c = Client::new(cfg, 1).map_err(|e| anyhow::anyhow!(e))?;
    let groups: Vec<u64> = c
        .directory
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("the client config names no topology"))?
        .groups()
        .collect();
    let ids: Vec<u64> = c.nodes.iter().map(|n| n.id).collect();
    let mut last_report = Instant::now();
    let mut first_all_answered = None;
    loop {
        let all = c.status_all().await;
        let (agreed, answered) = crate::leaders::led_groups(&all, &ids);
        let answered = answered.len();
        if answered == ids.len() && first_all_answered.is_none() {
            first_all_answered = Some(start.elapsed());
        }
        let led = groups.iter().filter(|g| agreed.contains_key(g)).count();
        let elapsed = start.elapsed();
        if led == groups.len() {
            let per_node = crate::leaders::per_node(&agreed, &ids);
            if as_json {
                println!(
                    "{}",
                    json!({
                        "bench": "leaders", "groups": groups.len(), "nodes": ids.len(),
                        "all_led_s": elapsed.as_secs_f64(),
                        "all_nodes_answered_s": first_all_answered.map(|d| d.as_secs_f64()),
                        "leaders_per_node": per_node,
                    })
                );
            } else {
                println!(
                    "all {} groups led after {:.2} s (every node answering after {:.2} s); leaders per node: {per_node:?}",
                    groups.len(),
                    elapsed.as_secs_f64(),
                    first_all_answered.map_or(f64::NAN, |d| d.as_secs_f64())
                );
            }
            return Ok(());
        }
        if elapsed > timeout {
            let missing: Vec<String> = groups
                .iter()
                .filter(|g| !agreed.contains_key(g))
                .take(10)
                .map(|&g| group_region(g))
                .collect();
            bail!(
                "{led} of {} groups led after {:.1} s; e.g. without an agreed leader: {missing:?}",
                groups.len(),
                elapsed.as_secs_f64()
            );
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "  … {led}/{} groups led, {answered}/{} nodes answering, {:.0} s",
                groups.len(),
                ids.len(),
                elapsed.as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------
// bench idle

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid}"))?;
    // Fields after "(comm)": state is field 3, utime 14, stime 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow::anyhow!("/proc/{pid}/stat: unexpected format"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| -> Result<u64> {
        f.get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("/proc/{pid}/stat: no field {}", i + 3))
    };
    Ok(num(11)? + num(12)?)
}

/// A `/proc/PID/status` field in kB (VmRSS, VmHWM), and Threads.
fn status_field(pid: u32, key: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("/proc/{pid}/status: no {key}"))
}

/// `/proc/PID/io` counters: bytes through read/write syscalls (sockets
/// included) and bytes written to storage.
fn io_counters(pid: u32) -> Result<(u64, u64, u64)> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io"))
        .with_context(|| format!("process {pid}"))?;
    let get = |key: &str| -> Result<u64> {
        io.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| anyhow::anyhow!("/proc/{pid}/io: no {key}"))
    };
    Ok((get("rchar")?, get("wchar")?, get("write_bytes")?))
}

fn clock_ticks_per_s() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

async fn idle(pids: &[u32], duration: Duration, as_json: bool) -> Result<()> {
    if pids.is_empty() {
        bail!("--pid: give at least one process");
    }
    if duration.is_zero() || duration > MAX_IDLE_SAMPLE {
        bail!("--duration: up to {MAX_IDLE_SAMPLE:?}");
    }
    let hz = clock_ticks_per_s();
    let before: Vec<u64> = pids.iter().map(|&p| cpu_ticks(p)).collect::<Result<_>>()?;
    let io_before: Vec<(u64, u64, u64)> = pids
        .iter()
        .map(|&p| io_counters(p))
        .collect::<Result<_>>()?;
    let t0 = Instant::now();
    tokio::time::sleep(duration).await;
    let secs = t0.elapsed().as_secs_f64();
    let mut rows = Vec::new();
    let (mut total_pct, mut total_rss) = (0.0, 0);
    for ((&pid, b), io0) in pids.iter().zip(before).zip(io_before) {
        let used = cpu_ticks(pid)?.saturating_sub(b) as f64 / hz as f64;
        let io1 = io_counters(pid)?;
        let per_s = |a: u64, b: u64| b.saturating_sub(a) as f64 / 1024.0 / secs;
        let pct = 100.0 * used / secs;
        let rss = status_field(pid, "VmRSS")?;
        let hwm = status_field(pid, "VmHWM")?;
        let threads = status_field(pid, "Threads")?;
        total_pct += pct;
        total_rss += rss;
        rows.push(json!({
            "pid": pid, "cpu_s": used, "cpu_pct_of_one_core": pct,
            "rss_mib": rss as f64 / 1024.0, "hwm_mib": hwm as f64 / 1024.0, "threads": threads,
            "syscall_read_kib_s": per_s(io0.0, io1.0), "syscall_write_kib_s": per_s(io0.1, io1.1),
            "disk_write_kib_s": per_s(io0.2, io1.2),
        }));
    }
    if as_json {
        println!(
            "{}",
            json!({
                "bench": "idle", "interval_s": secs, "clk_tck": hz, "processes": rows,
                "total_cpu_pct_of_one_core": total_pct, "total_rss_mib": total_rss as f64 / 1024.0,
            })
        );
    } else {
        println!("over {secs:.1} s (CLK_TCK {hz}):");
        for r in &rows {
            let f = |k: &str| r[k].as_f64().unwrap_or(0.0);
            println!(
                "  pid {:>7}: CPU {:>6.2} % of one core, RSS {:>7.1} MiB (peak {:>7.1}), {} threads, \
                 read/write syscalls {:.1}/{:.1} KiB/s, disk writes {:.1} KiB/s",
                r["pid"],
                f("cpu_pct_of_one_core"),
                f("rss_mib"),
                f("hwm_mib"),
                r["threads"],
                f("syscall_read_kib_s"),
                f("syscall_write_kib_s"),
                f("disk_write_kib_s")
            );
        }
        println!(
            "  total: CPU {total_pct:.2} % of one core, RSS {:.1} MiB",
            total_rss as f64 / 1024.0
        );
    }
    Ok(())
}
