//! Argument parsing and the subcommands' bodies.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::ticket_cli::{ClientArgs, PolicyCmd, TicketCmd, client};
use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use hotline_node::client::Client;
use hotline_node::config::{ClientConfig, GroupConfig, NodeConfig, Peer, Tuning};
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
    Demo {
        #[arg(long, default_value = "demo-data")]
        dir: PathBuf,
        #[arg(long, default_value_t = 7100)]
        port_base: u16,
    },
    /// Role, term, commit and applied index of every node.
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
        /// Tickets accepted at or after (2026-10-01 or 2026-10-01T08:00, CST).
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
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        #[arg(long, default_value_t = 7100)]
        port_base: u16,
        #[arg(long, default_value = "310114")]
        region: String,
        /// Plaintext gRPC, no certificates. For experiments only.
        #[arg(long)]
        insecure: bool,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Durable ticket accepts against a cluster.
    Accept {
        #[command(flatten)]
        c: ClientArgs,
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
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Cluster {
            cmd:
                ClusterCmd::Init {
                    dir,
                    nodes,
                    port_base,
                    region,
                    insecure,
                },
        } => {
            init(&dir, nodes, port_base, &region, insecure)?;
            println!(
                "wrote {}/node-1.toml … node-{nodes}.toml, client.toml and tls/",
                dir.display()
            );
            Ok(())
        }
        Cmd::Node { config } => {
            let cfg = NodeConfig::load(&config)?;
            hotline_node::server::run_node(cfg, shutdown_signal()).await?;
            Ok(())
        }
        Cmd::Demo { dir, port_base } => demo(&dir, port_base).await,
        Cmd::Status { config, json } => status(&config, json).await,
        Cmd::Ticket { cmd } => crate::ticket_cli::run(*cmd).await,
        Cmd::Report {
            c,
            from,
            to,
            csv,
            basic_weight_permille,
        } => crate::ticket_cli::report(&c, from, to, csv, basic_weight_permille).await,
        Cmd::Policy { cmd } => crate::ticket_cli::policy(cmd).await,
        Cmd::Bench { cmd } => crate::bench::run(cmd_to_bench(cmd)?).await,
    }
}

fn cmd_to_bench(cmd: BenchCmd) -> Result<crate::bench::Spec> {
    Ok(match cmd {
        BenchCmd::Accept {
            c,
            clients,
            duration,
            size,
            connections,
        } => crate::bench::Spec {
            target: crate::bench::Target::Hotline(ClientConfig::load(&c.config)?),
            clients,
            duration: parse_duration(&duration)?,
            size,
            connections,
            json: c.json,
        },
        BenchCmd::EtcdPut {
            endpoint,
            clients,
            duration,
            size,
            connections,
            json,
        } => crate::bench::Spec {
            target: crate::bench::Target::Etcd(endpoint),
            clients,
            duration: parse_duration(&duration)?,
            size,
            connections,
            json,
        },
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

fn init(dir: &Path, nodes: u64, port_base: u16, region: &str, insecure: bool) -> Result<()> {
    if nodes == 0 || nodes > 9 {
        bail!("--nodes: must be 1 to 9");
    }
    let r = hotline_federation::regions()
        .get(region)
        .map_err(|e| anyhow::anyhow!("--region: {e}"))?;
    if r.code.len() != 6 {
        bail!("--region: {region} is not a district (6-digit) code");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let ids: Vec<u64> = (1..=nodes).collect();
    let peers: Vec<Peer> = ids
        .iter()
        .map(|&id| Peer {
            id,
            address: format!("127.0.0.1:{}", u64::from(port_base) + id),
        })
        .collect();
    let (node_tls, client_tls) = if insecure {
        (vec![None; ids.len()], None)
    } else {
        let (n, c) = hotline_node::tls::create_pki(&dir.join("tls"), &ids)?;
        (n.into_iter().map(Some).collect(), Some(c))
    };
    for (i, &id) in ids.iter().enumerate() {
        let cfg = NodeConfig {
            id,
            listen: peers[i].address.clone(),
            data_dir: dir.join("data").join(format!("node-{id}")),
            group: GroupConfig {
                id: region.parse().expect("digits"),
                region: region.to_string(),
                voters: ids.clone(),
            },
            peers: peers.clone(),
            insecure,
            tls: node_tls[i].clone(),
            tuning: Tuning::default(),
            notify: Default::default(),
        };
        cfg.write(&dir.join(format!("node-{id}.toml")))?;
    }
    ClientConfig {
        endpoints: peers,
        insecure,
        tls: client_tls,
    }
    .write(&dir.join("client.toml"))?;
    Ok(())
}

async fn demo(dir: &Path, port_base: u16) -> Result<()> {
    if !dir.join("client.toml").exists() {
        init(dir, 3, port_base, "310114", false)?;
        eprintln!(
            "initialised a 3-node cluster for 310114 嘉定区 in {}",
            dir.display()
        );
    }
    let dir = dir.canonicalize()?;
    let mut tasks = Vec::new();
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    for id in 1..=3 {
        let cfg = NodeConfig::load(&dir.join(format!("node-{id}.toml")))?;
        let mut stop = stop_tx.subscribe();
        tasks.push(tokio::spawn(hotline_node::server::run_node(
            cfg,
            async move {
                let _ = stop.recv().await;
            },
        )));
    }
    let client_cfg = dir.join("client.toml");
    let client =
        Client::new(&ClientConfig::load(&client_cfg)?, 1).map_err(|e| anyhow::anyhow!(e))?;
    let mut leader = None;
    for _ in 0..100 {
        if let Some(l) = client.find_leader().await {
            leader = Some(l);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = client_cfg.display();
    println!(
        "hotline demo: region group 310114 (上海市嘉定区), 3 replicas, mutual TLS, redb under {}/data",
        dir.display()
    );
    for n in &client.nodes {
        println!("  node-{}  https://{}", n.id, n.address);
    }
    match leader {
        Some(l) => println!("  leader: node-{}", client.nodes[l].id),
        None => println!("  no leader elected yet"),
    }
    println!("\nTry, in another terminal:");
    println!("  hotline status --config {c}");
    println!(
        "  hotline ticket accept --config {c} --region 310114 --kind complaint --category 城乡建设 --text \"小区门口道路破损\" --phone 13800000000"
    );
    println!("  hotline ticket list --config {c}");
    println!("  hotline bench accept --config {c} --clients 128 --duration 10s");
    println!("(cargo run --release -- … from the repository.) Ctrl-C stops the demo.");
    shutdown_signal().await;
    let _ = stop_tx.send(());
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn status(cfg: &Path, as_json: bool) -> Result<()> {
    let c = client(cfg)?;
    let all = c.status_all().await;
    let mut rows = Vec::new();
    for (n, s) in c.nodes.iter().zip(all) {
        match s {
            Ok(s) => {
                for g in s.groups {
                    rows.push(json!({
                        "id": n.id, "address": n.address, "group": g.group_id, "role": g.role,
                        "term": g.term, "commit_index": g.commit_index, "applied_index": g.applied_index,
                        "leader_id": g.leader_id, "first_index": g.first_index, "last_index": g.last_index,
                    }));
                }
            }
            Err(e) => rows.push(json!({
                "id": n.id, "address": n.address, "role": "unreachable", "error": e.message(),
            })),
        }
    }
    if as_json {
        println!("{}", json!({ "nodes": rows }));
        return Ok(());
    }
    println!(
        "{:<4} {:<18} {:<8} {:<13} {:>6} {:>10} {:>10}",
        "ID", "ADDRESS", "GROUP", "ROLE", "TERM", "COMMIT", "APPLIED"
    );
    for r in rows {
        let g = |k: &str| {
            r.get(k)
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "{:<4} {:<18} {:<8} {:<13} {:>6} {:>10} {:>10}",
            g("id"),
            r["address"].as_str().unwrap_or(""),
            g("group"),
            r["role"].as_str().unwrap_or(""),
            g("term"),
            g("commit_index"),
            g("applied_index")
        );
    }
    Ok(())
}
