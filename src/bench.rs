//! `hotline bench`: closed-loop load — each client keeps one request in
//! flight — with latencies in an HDR histogram. The same loop drives etcd,
//! so both systems are measured by the same code.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use hdrhistogram::Histogram;
use hotline_node::client::Client;
use hotline_node::config::ClientConfig;
use hotline_proto::etcd::PutRequest;
use hotline_proto::etcd::kv_client::KvClient;
use hotline_proto::v1::{AcceptRequest, Kind};
use serde_json::json;

pub enum Target {
    Hotline(ClientConfig),
    /// host:port of an etcd member.
    Etcd(String),
}

pub struct Spec {
    pub target: Target,
    /// Accepting regions (hotline only), used in turn: request `i` of client
    /// `c` goes to `regions[(c + i) % len]`, which the client routes to that
    /// region's group leader. Empty: 310114.
    pub regions: Vec<String>,
    pub clients: usize,
    pub duration: Duration,
    pub size: usize,
    pub connections: usize,
    pub json: bool,
}

/// Bounds: clients and sizes a bench may ask for.
const MAX_CLIENTS: usize = 4_096;
const MAX_SIZE_BYTES: usize = 16 * 1024;
const MAX_REGIONS: usize = 10_000;

/// The accepting regions of `--regions R1,R2,…` or `--all-groups` (every
/// district or street group of the client config's topology).
pub fn accept_regions(
    cfg: &ClientConfig,
    regions: Option<&str>,
    all_groups: bool,
) -> Result<Vec<String>> {
    let list: Vec<String> = if all_groups {
        let path = cfg
            .topology
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("--all-groups: the client config names no topology"))?;
        let topo = hotline_federation::topology::Topology::load(path)
            .map_err(|e| anyhow::anyhow!("--all-groups: {e}"))?;
        topo.groups
            .iter()
            .map(|g| g.region.clone())
            .filter(|r| matches!(r.len(), 6 | 9))
            .collect()
    } else {
        regions
            .unwrap_or("")
            .split(',')
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .collect()
    };
    if (all_groups || regions.is_some()) && list.is_empty() {
        anyhow::bail!("no accepting region: a bench needs district (6-digit) or street groups");
    }
    if list.len() > MAX_REGIONS {
        anyhow::bail!("at most {MAX_REGIONS} regions");
    }
    for r in &list {
        if !matches!(r.len(), 6 | 9) || hotline_federation::regions().get(r).is_err() {
            anyhow::bail!("--regions: {r:?} is not a district or street code");
        }
    }
    Ok(list)
}

enum Driver {
    Hotline(Arc<Client>),
    Etcd(Vec<KvClient<tonic::transport::Channel>>),
}

pub async fn run(spec: Spec) -> Result<()> {
    if spec.clients == 0 || spec.clients > MAX_CLIENTS {
        anyhow::bail!("--clients: must be 1 to {MAX_CLIENTS}");
    }
    if spec.size == 0 || spec.size > MAX_SIZE_BYTES {
        anyhow::bail!("--size: must be 1 to {MAX_SIZE_BYTES} bytes");
    }
    let regions: Arc<Vec<String>> = Arc::new(if spec.regions.is_empty() {
        vec!["310114".to_string()]
    } else {
        spec.regions.clone()
    });
    let (driver, system) = match &spec.target {
        Target::Hotline(cfg) => {
            let c = Client::new(cfg, spec.connections).map_err(|e| anyhow::anyhow!(e))?;
            let mut found = None;
            for _ in 0..50 {
                found = c.find_leader().await;
                if found.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            found.ok_or_else(|| anyhow::anyhow!("no leader found"))?;
            // Learn every group's leader before the clock starts, so the
            // first requests do not all look leaders up at once.
            if spec.regions.len() > 1 {
                for r in regions.iter() {
                    let g = c.group_of_region(r);
                    if g.is_some() {
                        let _ = c.find_leader_of(g).await;
                    }
                }
            }
            (Driver::Hotline(Arc::new(c)), "hotline")
        }
        Target::Etcd(ep) => {
            let endpoint = hotline_node::transport::endpoint(format!("http://{ep}"), None)?;
            let conns = (0..spec.connections.max(1))
                .map(|_| KvClient::new(endpoint.connect_lazy()))
                .collect();
            (Driver::Etcd(conns), "etcd")
        }
    };
    let text: String = "热".repeat(spec.size / 3) + &"x".repeat(spec.size % 3);
    let value = vec![b'x'; spec.size];
    let start = Instant::now();
    let deadline = start + spec.duration;
    let driver = Arc::new(driver);
    let mut tasks = Vec::new();
    for client_no in 0..spec.clients {
        let driver = driver.clone();
        let text = text.clone();
        let value = value.clone();
        let regions = regions.clone();
        tasks.push(tokio::spawn(async move {
            let mut h =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            let mut errors = 0u64;
            let mut i = 0u64;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let ok = match &*driver {
                    Driver::Hotline(c) => c
                        .accept(AcceptRequest {
                            region: regions[(client_no + i as usize) % regions.len()].clone(),
                            kind: Kind::Complaint as i32,
                            category: "城乡建设".into(),
                            text: text.clone(),
                            phone: "13800000000".into(),
                            ..Default::default()
                        })
                        .await
                        .is_ok(),
                    Driver::Etcd(conns) => {
                        let mut kv = conns[client_no % conns.len()].clone();
                        kv.put(PutRequest {
                            key: format!("bench/{client_no}/{i}").into_bytes(),
                            value: value.clone(),
                            ..Default::default()
                        })
                        .await
                        .is_ok()
                    }
                };
                i += 1;
                if ok {
                    h.record(t0.elapsed().as_micros().max(1) as u64).ok();
                } else {
                    errors += 1;
                }
            }
            (h, errors)
        }));
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    for t in tasks {
        let (h, e) = t.await?;
        all.add(h)?;
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let ok = all.len();
    let ms = |q: f64| all.value_at_quantile(q) as f64 / 1000.0;
    let tput = ok as f64 / elapsed;
    if spec.json {
        println!(
            "{}",
            json!({
                "system": system, "clients": spec.clients, "connections": spec.connections,
                "regions": regions.len(),
                "size_bytes": spec.size, "duration_s": elapsed, "ok": ok, "errors": errors,
                "throughput_per_s": tput, "p50_ms": ms(0.5), "p99_ms": ms(0.99), "p999_ms": ms(0.999),
                "max_ms": all.max() as f64 / 1000.0,
            })
        );
    } else {
        println!(
            "{system}: {} clients, {} B, {:.1} s, {} accepting region(s)",
            spec.clients,
            spec.size,
            elapsed,
            regions.len()
        );
        println!("  ok {ok}, errors {errors}");
        println!("  throughput {tput:.0}/s");
        println!(
            "  p50 {:.3} ms  p99 {:.3} ms  p999 {:.3} ms  max {:.3} ms",
            ms(0.5),
            ms(0.99),
            ms(0.999),
            all.max() as f64 / 1000.0
        );
    }
    Ok(())
}
