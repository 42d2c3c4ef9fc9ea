//! Argument parsing and the subcommands' bodies.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::ticket_cli::{ClientArgs, PolicyCmd, TicketCmd, client};
use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use hotline_federation::topology::{GroupSpec, NodeSpec, Topology};
use hotline_node::client::{Client, DEFAULT_RETRY_BUDGET};
use hotline_node::config::{ClientConfig, NodeConfig, Peer, Tuning};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "hotline",
    version,
    about = "12345 政务服务便民热线 federation node and tools"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Cluster set-up.
    Cluster {
        #[command(subcommand)]
        cmd: ClusterCmd,
    },
    /// Run one node in the foreground (SIGTERM/SIGINT stop it cleanly).
    Node {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run a whole local cluster in this process: the main job out of the box.
    /// The shipped demo federation (national; 上海 and 江苏; 3101 and 苏州 3205;
    /// 嘉定 310114, 黄浦 310101, 太仓 320585), or `--topology FILE`.
    Demo {
        #[arg(long, default_value = "demo-data")]
        dir: PathBuf,
        /// Node i listens on port_base + i (default: the topology's addresses).
        #[arg(long)]
        port_base: Option<u16>,
        #[arg(long)]
        topology: Option<PathBuf>,
    },
    /// Role, term, commit and applied index of every node's groups, and the
    /// copies a node holds on disk without hosting them (role `on_disk`:
    /// joined at run time, not loaded since a restart).
    Status {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Ticket (工单) operations: the whole lifecycle.
    Ticket {
        #[command(subcommand)]
        cmd: Box<TicketCmd>,
    },
    /// KPIs (三率 and more) and counts by kind and category, like the seeds' reports.
    Report {
        #[command(flatten)]
        c: ClientArgs,
        /// The region (group) to report on; required when the client config
        /// serves several groups (a federation).
        #[arg(long)]
        region: Option<String>,
        /// Tickets accepted at or after (2026-10-01 or 2026-10-01T08:00,
        /// CST). Default: the first day of --to's month, so without either
        /// the current month so far (centers report the 三率 monthly).
        #[arg(long)]
        from: Option<String>,
        /// Tickets accepted before (default: now).
        #[arg(long)]
        to: Option<String>,
        #[arg(long, conflicts_with = "json")]
        csv: bool,
        /// Weight of 基本满意 in the satisfaction rate (‰); 0 = the policy's.
        #[arg(long, default_value_t = 0)]
        basic_weight_permille: u32,
    },
    /// Transfers a group holds; by default the national cross-province list.
    Transfers {
        #[command(flatten)]
        c: ClientArgs,
        /// The group's region ("" = national).
        #[arg(long, default_value = "")]
        region: String,
        /// Every transfer, not only cross-province ones.
        #[arg(long)]
        all: bool,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Drills (演练): partition, delay or drop traffic between nodes or sites; heal.
    Fault {
        #[command(subcommand)]
        cmd: crate::fault_cli::FaultCmd,
    },
    /// The deterministic simulator: partition drills on real topologies.
    Sim {
        #[command(subcommand)]
        cmd: crate::sim_cli::SimCmd,
    },
    /// Federated queries: fan out down the tree, say who did not answer.
    Query {
        #[command(subcommand)]
        cmd: crate::fed_cli::QueryCmd,
    },
    /// Online membership change of a region group: add-learner, promote, remove, show.
    Group {
        #[command(subcommand)]
        cmd: crate::group_cli::GroupCmd,
    },
    /// Replicated policy: calendar years, deadline rules, category tree.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
    /// Load generators.
    Bench {
        #[command(subcommand)]
        cmd: BenchCmd,
    },
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Write node configs, a client config and a CA with certificates.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// A federation's topology file (nodes, sites, groups); without it,
        /// one region group of --nodes nodes.
        #[arg(long)]
        topology: Option<PathBuf>,
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        /// Node i listens on port_base + i (default 7100, or the topology's addresses).
        #[arg(long)]
        port_base: Option<u16>,
        #[arg(long, default_value = "310114")]
        region: String,
        /// Plaintext gRPC, no certificates. For experiments only.
        #[arg(long)]
        insecure: bool,
    },
}

/// A bench's cluster: its client config (whose nodes the bench drives with
/// its own connections and waits) and the output format. Not `ClientArgs`:
/// a bench has no `--timeout` for one request, and some have their own.
#[derive(clap::Args, Clone)]
struct BenchClientArgs {
    #[arg(long)]
    config: PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Durable ticket accepts against a cluster.
    Accept {
        #[command(flatten)]
        c: BenchClientArgs,
        #[arg(long, default_value_t = 128)]
        clients: usize,
        #[arg(long, default_value = "10s")]
        duration: String,
        /// Size of each ticket's text in bytes.
        #[arg(long, default_value_t = 1024)]
        size: usize,
        /// gRPC connections to the leader shared by the clients.
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Accepting regions, used in turn (each routed to its group's
        /// leader); default 310114.
        #[arg(long, conflicts_with = "all_groups")]
        regions: Option<String>,
        /// Every district (and street) group of the client config's topology.
        #[arg(long)]
        all_groups: bool,
    },
    /// Closed-loop cross-region transfers: accept a ticket about a place in
    /// another group's region, wait until that group owns it.
    Transfer {
        #[command(flatten)]
        c: BenchClientArgs,
        /// The accepting center (origin group's region).
        #[arg(long, default_value = "310114")]
        from: String,
        /// The street the tickets are about (default 太仓 浏河镇).
        #[arg(long, default_value = "320585102")]
        location: String,
        #[arg(long, default_value_t = 1)]
        clients: usize,
        #[arg(long, default_value = "30s")]
        duration: String,
        /// Pause between two reads of the destination while waiting.
        #[arg(long, default_value = "10ms")]
        poll: String,
        /// Give up on one transfer after this long.
        #[arg(long, default_value = "60s")]
        timeout: String,
        /// Also wait for the delivery receipt at the origin.
        #[arg(long)]
        receipt: bool,
        /// Random pause (uniform below this, not measured) before each
        /// accept, so the loop does not lock onto the forwarders' cadence.
        #[arg(long, default_value = "200ms")]
        jitter: String,
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Append each transfer's latencies (ms: client, server) to this file.
        #[arg(long)]
        samples: Option<PathBuf>,
    },
    /// Write a topology of N real district groups on M nodes, every node a
    /// voter of every group.
    Topology {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[arg(long)]
        groups: usize,
        /// Provinces to take districts from, in order (default: all, by code).
        #[arg(long, value_delimiter = ',')]
        provinces: Vec<String>,
        /// Node i listens on port_base + i.
        #[arg(long, default_value_t = 9300)]
        port_base: u16,
        #[arg(long)]
        out: PathBuf,
    },
    /// Wait until every group of the topology has a leader its replicas agree on.
    Leaders {
        #[command(flatten)]
        c: BenchClientArgs,
        #[arg(long, default_value = "300s")]
        timeout: String,
    },
    /// CPU (% of one core over the interval) and memory of running processes.
    Idle {
        /// Process ids (repeat, or comma-separated).
        #[arg(long = "pid", value_delimiter = ',', required = true)]
        pids: Vec<u32>,
        #[arg(long, default_value = "20s")]
        duration: String,
        #[arg(long)]
        json: bool,
    },
    /// The same client loop against etcd's KV.Put (plain HTTP/2), for comparison.
    EtcdPut {
        /// host:port of the etcd member to send to (its leader).
        #[arg(long)]
        endpoint: String,
        #[arg(long, default_value_t = 128)]
        clients: usize,
        #[arg(long, default_value = "10s")]
        duration: String,
        #[arg(long, default_value_t = 1024)]
        size: usize,
        #[arg(long, default_value_t = 8)]
        connections: usize,
        #[arg(long)]
        json: bool,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOTLINE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once. anyhow's `{:#}`
/// appends every cause to its error's message, but our error types
/// (thiserror, `"storage: {0}"` with `#[from]`) already end with their
/// cause's message, which then printed twice; a cause the line already
/// ends with is left out.
fn error_chain(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let m = cause.to_string();
        if line.ends_with(&m) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&m);
    }
    line
}

async fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Cluster {
            cmd:
                ClusterCmd::Init {
                    dir,
                    topology,
                    nodes,
                    port_base,
                    region,
                    insecure,
                },
        } => {
            let topo = match topology {
                Some(p) => Topology::load(&p).map_err(|e| anyhow::anyhow!("--topology: {e}"))?,
                None => single_region(nodes, port_base.unwrap_or(7100), &region)?,
            };
            let nodes = topo.nodes.len();
            init(&dir, topo, port_base, insecure)?;
            println!(
                "wrote {}/topology.toml, node-*.toml ({nodes} nodes), client.toml and tls/",
                dir.display()
            );
            Ok(())
        }
        Cmd::Node { config } => {
            let cfg = NodeConfig::load(&config)?;
            hotline_node::server::run_node(cfg, shutdown_signal()).await?;
            Ok(())
        }
        Cmd::Demo {
            dir,
            port_base,
            topology,
        } => demo(&dir, port_base, topology).await,
        Cmd::Status { config, json } => status(&config, json).await,
        Cmd::Ticket { cmd } => crate::ticket_cli::run(*cmd).await,
        Cmd::Report {
            c,
            region,
            from,
            to,
            csv,
            basic_weight_permille,
        } => crate::ticket_cli::report(&c, region, from, to, csv, basic_weight_permille).await,
        Cmd::Policy { cmd } => crate::ticket_cli::policy(cmd).await,
        Cmd::Transfers {
            c,
            region,
            all,
            limit,
        } => crate::fed_cli::transfers(&c, &region, all, limit).await,
        Cmd::Query { cmd } => crate::fed_cli::query(cmd).await,
        Cmd::Sim { cmd } => tokio::task::block_in_place(|| crate::sim_cli::run(cmd)),
        Cmd::Group { cmd } => crate::group_cli::run(cmd).await,
        Cmd::Fault { cmd } => crate::fault_cli::run(cmd).await,
        Cmd::Bench { cmd } => crate::bench_fed::run(cmd_to_bench(cmd)?).await,
    }
}

fn cmd_to_bench(cmd: BenchCmd) -> Result<crate::bench_fed::Job> {
    use crate::bench_fed::Job;
    Ok(match cmd {
        BenchCmd::Accept {
            c,
            clients,
            duration,
            size,
            connections,
            regions,
            all_groups,
        } => {
            let cfg = ClientConfig::load(&c.config)?;
            let regions = crate::bench::accept_regions(&cfg, regions.as_deref(), all_groups)?;
            Job::Closed(crate::bench::Spec {
                target: crate::bench::Target::Hotline(cfg),
                regions,
                clients,
                duration: parse_duration(&duration)?,
                size,
                connections,
                json: c.json,
            })
        }
        BenchCmd::Transfer {
            c,
            from,
            location,
            clients,
            duration,
            poll,
            timeout,
            receipt,
            jitter,
            connections,
            samples,
        } => Job::Transfer(crate::bench_fed::TransferSpec {
            config: ClientConfig::load(&c.config)?,
            from,
            location,
            clients,
            duration: parse_duration(&duration)?,
            poll: parse_duration(&poll)?,
            timeout: parse_duration(&timeout)?,
            receipt,
            jitter: crate::bench_fed::parse_pause(&jitter)?,
            connections,
            samples,
            json: c.json,
        }),
        BenchCmd::Topology {
            nodes,
            groups,
            provinces,
            port_base,
            out,
        } => Job::Topology(crate::bench_fed::TopologySpec {
            nodes,
            groups,
            provinces,
            port_base,
            out,
        }),
        BenchCmd::Leaders { c, timeout } => Job::Leaders {
            config: ClientConfig::load(&c.config)?,
            timeout: parse_duration(&timeout)?,
            json: c.json,
        },
        BenchCmd::Idle {
            pids,
            duration,
            json,
        } => Job::Idle {
            pids,
            duration: parse_duration(&duration)?,
            json,
        },
        BenchCmd::EtcdPut {
            endpoint,
            clients,
            duration,
            size,
            connections,
            json,
        } => Job::Closed(crate::bench::Spec {
            target: crate::bench::Target::Etcd(endpoint),
            regions: Vec::new(),
            clients,
            duration: parse_duration(&duration)?,
            size,
            connections,
            json,
        }),
    })
}

fn parse_duration(s: &str) -> Result<Duration> {
    let d: jiff::SignedDuration = s
        .parse()
        .with_context(|| format!("--duration: {s:?} is not a duration like 10s or 2m"))?;
    if d.is_negative() || d.is_zero() {
        bail!("--duration: must be positive");
    }
    Ok(d.unsigned_abs())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// One region group of `nodes` nodes on loopback, each its own site.
fn single_region(nodes: u64, port_base: u16, region: &str) -> Result<Topology> {
    if nodes == 0 || nodes > 9 {
        bail!("--nodes: must be 1 to 9");
    }
    let r = hotline_federation::regions()
        .get(region)
        .map_err(|e| anyhow::anyhow!("--region: {e}"))?;
    if r.code.len() != 6 {
        bail!("--region: {region} is not a district (6-digit) code");
    }
    let ids: Vec<u64> = (1..=nodes).collect();
    let t = Topology {
        name: format!("{region} {}", r.name),
        nodes: ids
            .iter()
            .map(|&id| NodeSpec {
                id,
                address: format!("127.0.0.1:{}", u64::from(port_base) + id),
                site: format!("site-{id}"),
                level: "district".into(),
                region: region.into(),
            })
            .collect(),
        groups: vec![GroupSpec {
            region: region.into(),
            voters: ids,
            learners: vec![],
        }],
    };
    t.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(t)
}

/// What of a cluster `dir` holds already: its client config, node configs,
/// certificates and data directories (`topology.toml` alone is not a
/// cluster: an operator may put the file to init from there).
fn cluster_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let is_node_config = name.starts_with("node-") && name.ends_with(".toml");
        if name == "client.toml" || name == "tls" || name == "data" || is_node_config {
            found.push(if e.path().is_dir() {
                format!("{name}/")
            } else {
                name
            });
        }
    }
    found.sort();
    found
}

/// Writes `topology.toml`, a CA with node and client certificates, one
/// config per node and `client.toml`. Refuses a directory that holds a
/// cluster already: a new CA and new keys there would leave nodes started
/// from it unable to trust the ones still running from the old ones.
fn init(dir: &Path, mut topo: Topology, port_base: Option<u16>, insecure: bool) -> Result<()> {
    let there = cluster_files(dir);
    if !there.is_empty() {
        bail!(
            "--dir: {} already holds a cluster ({}); its CA, keys and configs are kept: remove the directory, or give another --dir, to initialise a new one",
            dir.display(),
            there.join(", ")
        );
    }
    if let Some(base) = port_base {
        for n in &mut topo.nodes {
            n.address = format!("127.0.0.1:{}", u64::from(base) + n.id);
        }
    }
    topo.validate()
        .map_err(|e| anyhow::anyhow!("topology: {e}"))?;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let topology_path = dir.join("topology.toml");
    std::fs::write(&topology_path, topo.to_toml())?;
    let ids: Vec<u64> = topo.nodes.iter().map(|n| n.id).collect();
    let (node_tls, client_tls) = if insecure {
        (vec![None; ids.len()], None)
    } else {
        let (n, c) = hotline_node::tls::create_pki(&dir.join("tls"), &ids)?;
        (n.into_iter().map(Some).collect(), Some(c))
    };
    for (i, n) in topo.nodes.iter().enumerate() {
        let cfg = NodeConfig {
            id: n.id,
            listen: n.address.clone(),
            data_dir: dir.join("data").join(format!("node-{}", n.id)),
            topology: topology_path.clone(),
            insecure,
            tls: node_tls[i].clone(),
            tuning: Tuning::default(),
            notify: Default::default(),
            metrics_listen: Some(metrics_address(&n.address)?),
        };
        cfg.write(&dir.join(format!("node-{}.toml", n.id)))?;
    }
    ClientConfig {
        endpoints: topo
            .nodes
            .iter()
            .map(|n| Peer {
                id: n.id,
                address: n.address.clone(),
            })
            .collect(),
        topology: Some(topology_path),
        insecure,
        tls: client_tls,
    }
    .write(&dir.join("client.toml"))?;
    Ok(())
}

/// The `/metrics` address of a node serving gRPC on `address`: the same
/// host, port + 10000 (7101 → 17101).
fn metrics_address(address: &str) -> Result<String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("address {address:?}: expected host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| anyhow::anyhow!("address {address:?}: bad port"))?;
    let metrics = port.checked_add(10_000).ok_or_else(|| {
        anyhow::anyhow!("address {address:?}: port + 10000 (the /metrics port) is over 65535")
    })?;
    Ok(format!("{host}:{metrics}"))
}

async fn demo(dir: &Path, port_base: Option<u16>, topology: Option<PathBuf>) -> Result<()> {
    if dir.join("client.toml").exists() {
        // A second run resumes the federation the directory holds, with
        // its own topology and ports: options that would start another
        // one are an error, not silently ignored.
        let given = match (&topology, port_base) {
            (Some(_), _) => Some("--topology"),
            (None, Some(_)) => Some("--port-base"),
            (None, None) => None,
        };
        if let Some(option) = given {
            anyhow::bail!(
                "{option}: {} already holds a federation, which resumes with its own topology and ports; remove it, or give another --dir, to start a new one",
                dir.display()
            );
        }
        eprintln!("resuming the federation in {}", dir.display());
    } else {
        let topo = match &topology {
            Some(p) => Topology::load(p).map_err(|e| anyhow::anyhow!("--topology: {e}"))?,
            None => Topology::demo(),
        };
        init(dir, topo, port_base, false)?;
        eprintln!("initialised the federation in {}", dir.display());
    }
    let dir = dir.canonicalize()?;
    let topo = Topology::load(&dir.join("topology.toml")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut tasks = tokio::task::JoinSet::new();
    let mut metrics = Vec::new();
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    for n in &topo.nodes {
        let cfg = NodeConfig::load(&dir.join(format!("node-{}.toml", n.id)))?;
        metrics.extend(cfg.metrics_listen.clone());
        let mut stop = stop_tx.subscribe();
        let id = n.id;
        let node = hotline_node::server::run_node(cfg, async move {
            let _ = stop.recv().await;
        });
        tasks.spawn(async move { node.await.map_err(|e| anyhow::anyhow!("node {id}: {e}")) });
    }
    let client_cfg = dir.join("client.toml");
    let client =
        Client::new(&ClientConfig::load(&client_cfg)?, 1).map_err(|e| anyhow::anyhow!(e))?;
    for _ in 0..100 {
        // A node that cannot start (a port in use, a data directory of
        // another format) ends the demo now, with its error, rather than
        // after a banner of unreachable nodes and a Ctrl-C.
        if let Some(r) = tasks.try_join_next() {
            return stop_demo(r, &stop_tx, tasks).await;
        }
        if client.find_leader().await.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let c = client_cfg.display();
    println!(
        "hotline demo: federation {:?}, {} nodes, {} region groups, mutual TLS, redb under {}/data",
        topo.name,
        topo.nodes.len(),
        topo.groups.len(),
        dir.display()
    );
    let all = client.status_all().await;
    for (n, st) in topo.nodes.iter().zip(all) {
        let led: Vec<String> = st
            .map(|s| {
                s.groups
                    .iter()
                    .filter(|g| g.role == "leader")
                    .map(|g| hotline_federation::topology::group_region(g.group_id))
                    .map(|r| {
                        if r.is_empty() {
                            hotline_federation::NATIONAL.name.into()
                        } else {
                            r
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let name = hotline_federation::regions()
            .display_name(&n.region)
            .unwrap_or("");
        println!(
            "  node-{:<2} https://{:<16} {:<9} {:<8} {} leads: {}",
            n.id,
            n.address,
            n.level,
            n.region,
            crate::report::pad(name, 12),
            led.join(" ")
        );
    }
    println!("\nTry, in another terminal:");
    println!("  hotline status --config {c}");
    println!(
        "  hotline ticket accept --config {c} --region 310114 --kind complaint --category 城乡建设 --text \"小区门口道路破损\" --phone 13800000000"
    );
    println!(
        "  hotline ticket accept --config {c} --region 310114 --location 320585102 --kind complaint --category 环境保护 --text \"浏河镇工地夜间施工\" --phone 13900000000   # 嘉定 → 太仓"
    );
    println!(
        "  hotline ticket send-back --config {c} ID --reason \"地址实为嘉定区安亭镇\"   # 太仓 退回首接: back to 嘉定 for review"
    );
    println!(
        "  hotline ticket transfer --config {c} ID --location 320585102 --reason \"退单审核：属地不符\"   # 嘉定: a unit returned it as 太仓's (退单), so it goes there"
    );
    println!("  hotline transfers --config {c}            # the national cross-province list");
    println!("  hotline query counts --config {c}         # national figures, fanned out");
    println!(
        "  hotline fault partition --config {c} --between 2,4,6,7 --and 3,5,8   # cut 上海's nodes from 江苏's"
    );
    println!("  hotline ticket list --config {c} --region 310114");
    if let Some(m) = metrics.first() {
        println!("  curl http://{m}/metrics                 # Prometheus figures of node 1");
    }
    println!("(cargo run --release -- … from the repository.) Ctrl-C stops the demo.");
    tokio::select! {
        () = shutdown_signal() => {}
        Some(r) = tasks.join_next() => return stop_demo(r, &stop_tx, tasks).await,
    }
    let _ = stop_tx.send(());
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

/// One of the demo's nodes ended on its own (`first`): stops the others
/// and returns its error (or says it stopped, if it ended without one).
async fn stop_demo(
    first: Result<Result<()>, tokio::task::JoinError>,
    stop: &tokio::sync::broadcast::Sender<()>,
    mut rest: tokio::task::JoinSet<Result<()>>,
) -> Result<()> {
    let _ = stop.send(());
    while rest.join_next().await.is_some() {}
    first??;
    anyhow::bail!("a node of the demo stopped by itself")
}

async fn status(cfg: &Path, as_json: bool) -> Result<()> {
    // Status asks every node once, each with its own short deadline.
    let c = client(&ClientArgs {
        config: cfg.to_path_buf(),
        json: as_json,
        timeout_s: DEFAULT_RETRY_BUDGET.as_secs(),
    })?;
    let all = c.status_all().await;
    let mut rows = Vec::new();
    let mut drills = Vec::new();
    let mut drill_lines = Vec::new();
    let mut directories = Vec::new();
    for (n, s) in c.nodes.iter().zip(all) {
        match s {
            Ok(s) => {
                let age = s.directory_age_ms.map(Duration::from_millis);
                directories.push(json!({
                    "id": n.id, "version": s.directory_version,
                    "age_ms": s.directory_age_ms,
                    "current": age.is_some_and(hotline_node::dirsync::LiveDirectory::is_current),
                }));
                if let Some(f) = &s.faults {
                    let rules: Vec<String> =
                        f.rules.iter().map(hotline_node::faults::describe).collect();
                    let dropped: u64 = f.counters.iter().map(|c| c.dropped).sum();
                    let delayed: u64 = f.counters.iter().map(|c| c.delayed).sum();
                    if !rules.is_empty() || dropped + delayed > 0 {
                        drills.push(json!({
                            "id": n.id, "rules": rules, "dropped": dropped, "delayed": delayed,
                            "generation": f.generation,
                        }));
                        drill_lines.push(drill_line(n.id, f));
                    }
                }
                for g in s.groups {
                    rows.push(json!({
                        "id": n.id, "address": n.address, "group": g.group_id, "role": g.role,
                        "term": g.term, "commit_index": g.commit_index, "applied_index": g.applied_index,
                        "leader_id": g.leader_id, "first_index": g.first_index, "last_index": g.last_index,
                    }));
                }
                // Copies the node holds but does not host: what `hotline
                // group purge` may delete once the node is out of the group.
                for g in s.on_disk {
                    rows.push(json!({
                        "id": n.id, "address": n.address, "group": g.group_id, "role": "on_disk",
                        "term": g.term, "commit_index": g.commit_index,
                        "voters": g.voters, "learners": g.learners,
                    }));
                }
            }
            Err(e) => rows.push(json!({
                "id": n.id, "address": n.address, "role": "unreachable", "error": e.message(),
            })),
        }
    }
    if as_json {
        println!(
            "{}",
            json!({ "nodes": rows, "drills": drills, "directories": directories })
        );
        return Ok(());
    }
    // In Chinese for the centers' operators, with raft's identifiers; a
    // group by its region's name (the national group, 86, is 全国).
    use crate::labels::{both, role_zh};
    use crate::report::{pad, pad_left};
    println!(
        "{} {} {} {} {} {} {}",
        pad("节点 ID", 8),
        pad("地址 ADDRESS", 18),
        pad("组 GROUP", 16),
        pad("角色 ROLE", 22),
        pad_left("任期 TERM", 9),
        pad_left("提交 COMMIT", 11),
        pad_left("应用 APPLIED", 12)
    );
    for r in rows {
        let g = |k: &str| {
            r.get(k)
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into())
        };
        let group = match r.get("group").and_then(|v| v.as_u64()) {
            Some(id) => {
                hotline_federation::regions().label(&hotline_federation::topology::group_region(id))
            }
            None => "-".into(),
        };
        let role = r["role"].as_str().unwrap_or("");
        println!(
            "{} {} {} {} {} {} {}",
            pad(&g("id"), 8),
            pad(r["address"].as_str().unwrap_or(""), 18),
            pad(&group, 16),
            pad(&both(role_zh(role), role), 22),
            pad_left(&g("term"), 9),
            pad_left(&g("commit_index"), 11),
            pad_left(&g("applied_index"), 12)
        );
    }
    for line in &drill_lines {
        println!("{line}");
    }
    println!(
        "\n{:<4} {} 确认 CONFIRMED",
        "ID",
        crate::report::pad("目录 DIR", 10)
    );
    for d in &directories {
        let version = match d["version"].as_u64() {
            Some(0) | None => "拓扑文件".to_string(),
            Some(v) => format!("v{v}"),
        };
        let confirmed = match d["age_ms"].as_u64() {
            None => "从未确认 never".to_string(),
            Some(ms) if d["current"] == true => format!("{} s 前", ms / 1000),
            Some(ms) => format!(
                "{} s 前 — 过期 stale: 联系不到国家级多数，按现有目录路由",
                ms / 1000
            ),
        };
        let id = d["id"].as_u64().unwrap_or_default();
        println!("{id:<4} {} {confirmed}", crate::report::pad(&version, 10));
    }
    Ok(())
}

/// A drill rule for people: its action in Chinese beside the identifier,
/// then `faults::describe`'s sides ("网络分区 partition 1 | 2,3").
fn drill_rule_text(rule: &hotline_proto::v1::FaultRule) -> String {
    use crate::labels::drill_zh;
    let action = hotline_node::faults::action_name(rule.action);
    let text = hotline_node::faults::describe(rule);
    match drill_zh(action) {
        zh if zh == action => text,
        zh => format!("{zh} {text}"),
    }
}

/// `hotline status`'s line for a node with a drill (演练) in force or
/// one whose counts remain after a heal; the words beside the identifiers
/// `--json` uses.
fn drill_line(node: u64, f: &hotline_proto::v1::FaultsResponse) -> String {
    use crate::labels::{both, drill_zh};
    let w = |key: &str| both(drill_zh(key), key);
    let dropped: u64 = f.counters.iter().map(|c| c.dropped).sum();
    let delayed: u64 = f.counters.iter().map(|c| c.delayed).sum();
    // After a heal the counts stay (what the drill did); say that nothing
    // is in force, rather than print an empty rule list.
    let rules = if f.rules.is_empty() {
        w("healed")
    } else {
        f.rules
            .iter()
            .map(drill_rule_text)
            .collect::<Vec<_>>()
            .join("; ")
    };
    format!(
        "演练 drill @ {} {node}: {rules} ({} {dropped}, {} {delayed}; {} {})",
        w("node"),
        w("dropped"),
        w("delayed"),
        w("generation"),
        f.generation
    )
}

#[cfg(test)]
mod tests {
    use super::{Cli, error_chain};
    use crate::report::pad;

    /// Every subcommand's arguments fit together (no option named twice,
    /// as a flattened `ClientArgs` and a command's own may be): clap checks
    /// only the subcommand it parses, so a clash would show when a user
    /// first runs that command.
    #[test]
    fn the_command_line_is_well_formed() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }

    /// The drill line reads in Chinese with the identifiers beside the
    /// words (it was English only).
    #[test]
    fn a_drill_line_in_chinese_beside_the_identifiers() {
        use hotline_proto::v1::{FaultAction, FaultCounter, FaultRule, FaultsResponse};
        let rule = |action: FaultAction, delay_ms| FaultRule {
            side_a: vec![1],
            side_b: vec![2, 3],
            action: action as i32,
            delay_ms,
            ..Default::default()
        };
        let f = FaultsResponse {
            rules: vec![
                rule(FaultAction::Partition, 0),
                rule(FaultAction::Delay, 200),
            ],
            counters: vec![
                FaultCounter {
                    peer: 2,
                    dropped: 5,
                    delayed: 1,
                },
                FaultCounter {
                    peer: 3,
                    dropped: 2,
                    delayed: 0,
                },
            ],
            generation: 42,
            ..Default::default()
        };
        assert_eq!(
            super::drill_line(1, &f),
            "演练 drill @ 节点 node 1: 网络分区 partition 1 | 2,3; 延迟 delay 200ms 1 | 2,3 (已丢弃 dropped 7, 已延迟 delayed 1; 代次 generation 42)"
        );
        let healed = FaultsResponse { rules: vec![], ..f };
        assert!(
            super::drill_line(1, &healed).starts_with("演练 drill @ 节点 node 1: 已解除 healed ("),
            "{}",
            super::drill_line(1, &healed)
        );
    }

    #[test]
    fn pads_to_terminal_columns_counting_cjk_as_two() {
        assert_eq!(pad("v8", 6), "v8    ");
        assert_eq!(pad("拓扑文件", 10), "拓扑文件  ");
        assert_eq!(pad("目录 DIR", 10), "目录 DIR  ");
        assert_eq!(pad("longer than ten", 10), "longer than ten");
    }

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("storage: {0}")]
        Storage(#[from] Inner),
    }

    #[derive(Debug, thiserror::Error)]
    #[error("format 1, this build reads format 2")]
    struct Inner;

    #[test]
    fn each_cause_is_printed_once() {
        let e = anyhow::Error::from(Outer::from(Inner)).context("node 1");
        assert_eq!(
            error_chain(&e),
            "node 1: storage: format 1, this build reads format 2"
        );
        // A cause the message does not already contain still shows.
        let e = anyhow::Error::from(Inner).context("open /tmp/x");
        assert_eq!(
            error_chain(&e),
            "open /tmp/x: format 1, this build reads format 2"
        );
    }
}
