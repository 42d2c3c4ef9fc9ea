//! `hotline fault …`: drills (演练) on a live cluster.
//!
//! A rule names two sets of nodes and what happens between them: a
//! partition, a delay or a share of dropped messages, in both directions. It
//! is sent through the Admin service to every node of the client config,
//! each of which enforces it in its own transport (`hotline_node::faults`).
//! Each command reads the newest drill the nodes hold, changes it, and sets
//! the whole drill on every node with a higher generation. A node that
//! cannot be reached is reported and skipped (the command fails only if no
//! node accepted): it takes the drill from the others once it is back.
//! `heal` removes every rule, or with `--between A --and B` only the rules
//! between exactly those two sets (lift one cut while another stays); with
//! no rule in force on any node it sends nothing and says so. `show`
//! prints the rules and counters of each node.
//!
//! Sets are comma-separated: node ids, or — with a topology (`--topology
//! FILE`, by default the client config's) — site
//! names, region codes or region names (`jiading`, `310114`, `嘉定区` or
//! `嘉定`), each standing for every node at that site or serving that region
//! or a place within it (`31`: 上海's province, city and district nodes).
//! `node:`, `site:` and `region:` prefixes say which is meant when a token is
//! ambiguous (region 31 and node 31).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use clap::Subcommand;
use hotline_federation::topology::Topology;
use hotline_node::client::Client;
use hotline_node::config::ClientConfig;
use hotline_node::faults::{self, MAX_LABEL_BYTES};
use hotline_proto::v1::admin_client::AdminClient;
use hotline_proto::v1::{Drill, FaultAction, FaultRule, FaultsRequest, FaultsResponse};
use serde_json::{Value, json};

use crate::ticket_cli::ClientArgs;

/// What `heal` says when every node answered and none holds a rule.
const NOTHING_TO_HEAL: &str = "没有正在进行的演练（no drill in force）: nothing sent";

/// How long each node has to answer.
const NODE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Subcommand)]
pub enum FaultCmd {
    /// Cut every link between two sets of nodes, both directions (or, with
    /// --one-way, only from the first set to the second).
    Partition {
        #[command(flatten)]
        c: ClientArgs,
        /// One side: node ids, or sites / regions with --topology (e.g. 1,2 or jiading,310101).
        #[arg(long)]
        between: String,
        /// The other side.
        #[arg(long = "and")]
        and: String,
        /// Topology file, to name nodes by site or region (default: the client config's).
        #[arg(long)]
        topology: Option<PathBuf>,
        /// Only messages from --between to --and (the other way still passes).
        #[arg(long)]
        one_way: bool,
    },
    /// Delay every message between two sets.
    Delay {
        #[command(flatten)]
        c: ClientArgs,
        #[arg(long)]
        between: String,
        #[arg(long = "and")]
        and: String,
        /// Milliseconds each message is held (1..=60000).
        #[arg(long)]
        ms: u32,
        #[arg(long)]
        topology: Option<PathBuf>,
        /// Only messages from --between to --and (the other way still passes).
        #[arg(long)]
        one_way: bool,
    },
    /// Drop a share of messages between two sets.
    Drop {
        #[command(flatten)]
        c: ClientArgs,
        #[arg(long)]
        between: String,
        #[arg(long = "and")]
        and: String,
        /// Messages dropped per thousand (1..=1000).
        #[arg(long)]
        permille: u32,
        #[arg(long)]
        topology: Option<PathBuf>,
        /// Only messages from --between to --and (the other way still passes).
        #[arg(long)]
        one_way: bool,
    },
    /// Remove every rule on every node; with --between and --and, only the
    /// rules between exactly those two sets (lift one cut, keep the others).
    Heal {
        #[command(flatten)]
        c: ClientArgs,
        #[arg(long, requires = "and")]
        between: Option<String>,
        #[arg(long = "and", requires = "between")]
        and: Option<String>,
        #[arg(long)]
        topology: Option<PathBuf>,
    },
    /// Rules and counters per node.
    Show {
        #[command(flatten)]
        c: ClientArgs,
    },
}

pub async fn run(cmd: FaultCmd) -> Result<()> {
    match cmd {
        FaultCmd::Partition {
            c,
            between,
            and,
            topology,
            one_way,
        } => {
            let rule = build_rule(
                &between,
                &and,
                topology_of(&c, topology).as_deref(),
                (FaultAction::Partition, one_way),
                0,
                0,
            )?;
            add(&c, rule).await
        }
        FaultCmd::Delay {
            c,
            between,
            and,
            ms,
            topology,
            one_way,
        } => {
            if !(1..=faults::MAX_DELAY_MS).contains(&ms) {
                bail!("--ms: must be 1..={} (got {ms})", faults::MAX_DELAY_MS);
            }
            let rule = build_rule(
                &between,
                &and,
                topology_of(&c, topology).as_deref(),
                (FaultAction::Delay, one_way),
                ms,
                0,
            )?;
            add(&c, rule).await
        }
        FaultCmd::Drop {
            c,
            between,
            and,
            permille,
            topology,
            one_way,
        } => {
            if !(1..=1000).contains(&permille) {
                bail!("--permille: must be 1..=1000 (got {permille})");
            }
            let rule = build_rule(
                &between,
                &and,
                topology_of(&c, topology).as_deref(),
                (FaultAction::Drop, one_way),
                0,
                permille,
            )?;
            add(&c, rule).await
        }
        FaultCmd::Heal {
            c,
            between,
            and,
            topology,
        } => {
            let sides = match (between, and) {
                (Some(between), Some(and)) => {
                    // Resolved and checked as a partition between the sets
                    // would be; only the sides go to the nodes.
                    let r = build_rule(
                        &between,
                        &and,
                        topology_of(&c, topology).as_deref(),
                        (FaultAction::Partition, false),
                        0,
                        0,
                    )?;
                    Some((r.side_a, r.side_b))
                }
                _ => None,
            };
            heal(&c, sides).await
        }
        FaultCmd::Show { c } => show(&c).await,
    }
}

// ------------------------------------------------------------ resolution

/// `--topology`, or else the one the client config names (`hotline cluster
/// init` and `hotline demo` write it there), so sites and regions resolve
/// without repeating the file.
fn topology_of(c: &ClientArgs, given: Option<PathBuf>) -> Option<PathBuf> {
    given.or_else(|| {
        hotline_node::config::ClientConfig::load(&c.config)
            .ok()?
            .topology
    })
}

/// The rule for `--between A --and B` (`one_way`: from A to B only),
/// resolved and checked like the nodes will check it (errors name the
/// flag).
fn build_rule(
    between: &str,
    and: &str,
    topology: Option<&Path>,
    (action, one_way): (FaultAction, bool),
    delay_ms: u32,
    drop_permille: u32,
) -> Result<FaultRule> {
    let topo = match topology {
        Some(p) => Some(Topology::load(p).map_err(|e| anyhow!("--topology: {e}"))?),
        None => None,
    };
    let side_a = resolve_side("--between", between, topo.as_ref())?;
    let side_b = resolve_side("--and", and, topo.as_ref())?;
    if let Some(both) = side_a.iter().find(|i| side_b.contains(i)) {
        bail!(
            "--and: node {both}{} is also in --between (the sides must be disjoint)",
            site_of(topo.as_ref(), *both)
        );
    }
    let rule = FaultRule {
        side_a,
        side_b,
        action: action as i32,
        delay_ms,
        drop_permille,
        label: label(between, and, one_way),
        one_way,
    };
    faults::validate(rule).map_err(in_flags)
}

/// An error of `hotline_node::faults`, which names a rule's fields, in the
/// words of the command line.
fn in_flags(e: String) -> anyhow::Error {
    anyhow!(
        e.replace("side_a", "--between")
            .replace("side_b", "--and")
            .replace("delay_ms", "--ms")
            .replace("drop_permille", "--permille")
    )
}

/// What the operator typed, bounded like the nodes bound it.
fn label(between: &str, and: &str, one_way: bool) -> String {
    let sep = if one_way { "→" } else { "|" };
    let mut s = format!("{} {sep} {}", between.trim(), and.trim());
    if s.len() > MAX_LABEL_BYTES {
        let mut end = MAX_LABEL_BYTES - '…'.len_utf8();
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

fn site_of(topo: Option<&Topology>, id: u64) -> String {
    topo.and_then(|t| t.node(id))
        .map(|n| format!(" ({})", n.site))
        .unwrap_or_default()
}

/// Node ids for one side, sorted and each once. A token is a node id; with a
/// topology it may also be a site, a region code or a region name (with or
/// without its 省/市/区/县 suffix), or carry a `node:`, `site:` or `region:`
/// prefix.
pub(crate) fn resolve_side(flag: &str, text: &str, topo: Option<&Topology>) -> Result<Vec<u64>> {
    let mut out = BTreeSet::new();
    for token in text.split(',').map(str::trim) {
        if token.is_empty() {
            bail!("{flag}: empty name in {text:?} (write ids or names separated by commas)");
        }
        out.extend(resolve_token(flag, token, topo)?);
    }
    if out.is_empty() {
        bail!("{flag}: names no node");
    }
    Ok(out.into_iter().collect())
}

fn resolve_token(flag: &str, token: &str, topo: Option<&Topology>) -> Result<BTreeSet<u64>> {
    let (kind, name) = match token.split_once(':') {
        Some((k @ ("node" | "site" | "region"), rest)) => (Some(k), rest.trim()),
        Some(_) => bail!("{flag}: {token:?}: the prefixes are node:, site: and region:"),
        None => (None, token),
    };
    let as_id = || -> Result<u64> {
        match name.parse::<u64>() {
            Ok(0) => bail!("{flag}: node id 0 does not exist"),
            Ok(id) => Ok(id),
            Err(_) => bail!("{flag}: {name:?} is not a node id"),
        }
    };
    let Some(topo) = topo else {
        return match kind {
            None | Some("node") => {
                let id = as_id().map_err(|e| {
                    if name.parse::<u64>().is_err() {
                        anyhow!("{e} (give --topology FILE to name sites or regions)")
                    } else {
                        e
                    }
                })?;
                Ok(BTreeSet::from([id]))
            }
            Some(k) => bail!("{flag}: {k}:{name} needs --topology FILE"),
        };
    };
    let by_id: BTreeSet<u64> = match name.parse::<u64>() {
        Ok(id) if topo.node(id).is_some() => BTreeSet::from([id]),
        _ => BTreeSet::new(),
    };
    let by_site: BTreeSet<u64> = topo
        .nodes
        .iter()
        .filter(|n| n.site == name)
        .map(|n| n.id)
        .collect();
    let by_region: BTreeSet<u64> = topo
        .nodes
        .iter()
        .filter(|n| !n.region.is_empty() && region_matches(&n.region, name))
        .map(|n| n.id)
        .collect();
    let found = match kind {
        Some("node") => {
            let id = as_id()?;
            if by_id.is_empty() {
                bail!("{flag}: no node {id} in the topology");
            }
            by_id
        }
        Some("site") => by_site,
        Some(_) => by_region,
        None => {
            let hits: Vec<(&str, &BTreeSet<u64>)> =
                [("node", &by_id), ("site", &by_site), ("region", &by_region)]
                    .into_iter()
                    .filter(|(_, s)| !s.is_empty())
                    .collect();
            if let Some((_, first)) = hits.first()
                && hits.iter().any(|(_, s)| s != first)
            {
                let meanings: Vec<String> = hits
                    .iter()
                    .map(|(k, s)| format!("{k}:{name} = nodes {}", ids(s)))
                    .collect();
                bail!(
                    "{flag}: {name:?} is ambiguous ({}); write one of those prefixes",
                    meanings.join(", ")
                );
            }
            hits.first().map(|(_, s)| (*s).clone()).unwrap_or_default()
        }
    };
    if found.is_empty() {
        let what = match kind {
            Some("site") => "site",
            Some(_) => "region",
            None => "node id, site or region",
        };
        bail!(
            "{flag}: {name:?} matches no {what} in the topology (sites: {})",
            topo.sites().join(", ")
        );
    }
    Ok(found)
}

/// Whether a node serving region `code` lies in the region `name`: the
/// node's own region or one containing it (a province's token takes in its
/// cities', districts' and streets' nodes, so `--between 31 --and 32` cuts
/// 上海 from 江苏, as an operator means it).
fn region_matches(code: &str, name: &str) -> bool {
    [2, 4, 6, 9]
        .into_iter()
        .filter(|&n| n <= code.len())
        .any(|n| region_is(&code[..n], name))
}

/// A region matches its code, its name (`嘉定区`, or as shown: `上海市辖区`)
/// or its name without the 省/市/区/县 suffix (`嘉定`).
fn region_is(code: &str, name: &str) -> bool {
    if code == name {
        return true;
    }
    let regions = hotline_federation::regions();
    match regions.get(code) {
        Ok(r) => {
            r.name == name
                || regions
                    .display_name(code)
                    .is_some_and(|shown| shown == name)
                || r.name
                    .strip_suffix(['省', '市', '区', '县'])
                    .is_some_and(|short| !short.is_empty() && short == name)
        }
        Err(_) => false,
    }
}

fn ids(s: &BTreeSet<u64>) -> String {
    list(&s.iter().copied().collect::<Vec<_>>())
}

fn list(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

// ------------------------------------------------------------ calls

enum Call {
    Set(Drill),
    Show,
}

enum Outcome {
    Ok(FaultsResponse),
    /// The node answered with an error (a bad rule, or too many rules).
    Refused(String),
    Unreachable(String),
}

async fn call_one(client: &Client, node: usize, call: &Call) -> Outcome {
    let mut admin = AdminClient::new(client.channel(node));
    let fut = async {
        match call {
            Call::Set(drill) => {
                let mut req = tonic::Request::new(drill.clone());
                req.set_timeout(NODE_TIMEOUT);
                admin.set_faults(req).await
            }
            Call::Show => {
                let mut req = tonic::Request::new(FaultsRequest {});
                req.set_timeout(NODE_TIMEOUT);
                admin.faults(req).await
            }
        }
    };
    match tokio::time::timeout(NODE_TIMEOUT, fut).await {
        Err(_) => Outcome::Unreachable(format!("no answer within {NODE_TIMEOUT:?}")),
        Ok(Ok(resp)) => Outcome::Ok(resp.into_inner()),
        Ok(Err(s)) => match s.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                Outcome::Unreachable(s.message().to_string())
            }
            tonic::Code::Unimplemented => {
                Outcome::Refused("this node does not support drills (older version)".into())
            }
            code => Outcome::Refused(format!("{code:?}: {}", s.message())),
        },
    }
}

/// Every node of the client config, concurrently, in config order.
async fn call_all(client: &Client, call: &Call) -> Vec<Outcome> {
    let futs = (0..client.nodes.len()).map(|i| call_one(client, i, call));
    futures::future::join_all(futs).await
}

fn outcome_json(id: u64, address: &str, o: &Outcome) -> Value {
    match o {
        Outcome::Ok(r) => json!({
            "id": id, "address": address, "result": "ok", "rules": r.rules.len(),
            "generation": r.generation,
        }),
        Outcome::Refused(e) => json!({
            "id": id, "address": address, "result": "refused", "error": e,
        }),
        Outcome::Unreachable(e) => json!({
            "id": id, "address": address, "result": "unreachable", "error": e,
        }),
    }
}

fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Ok(r) => format!("ok (rules in force: {})", r.rules.len()),
        Outcome::Refused(e) => format!("refused: {e}"),
        Outcome::Unreachable(e) => format!("unreachable: {e}"),
    }
}

fn rule_json(r: &FaultRule) -> Value {
    json!({
        "label": r.label,
        "action": faults::action_name(r.action),
        "side_a": r.side_a,
        "side_b": r.side_b,
        "delay_ms": r.delay_ms,
        "drop_permille": r.drop_permille,
        "one_way": r.one_way,
        "text": faults::describe(r),
    })
}

/// Prints the per-node outcomes of `add` or `heal`; fails if no node
/// accepted. `named` are the nodes a new rule names: those missing from the
/// client config do not get it, so only their peers' ends enforce it.
fn report(
    c: &ClientArgs,
    client: &Client,
    what: Value,
    title: &str,
    named: &[u64],
    outcomes: &[Outcome],
) -> Result<()> {
    let absent: Vec<u64> = named
        .iter()
        .copied()
        .filter(|id| client.nodes.iter().all(|n| n.id != *id))
        .collect();
    let accepted = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Ok(_)))
        .count();
    let unreachable: Vec<u64> = client
        .nodes
        .iter()
        .zip(outcomes)
        .filter(|(_, o)| matches!(o, Outcome::Unreachable(_)))
        .map(|(n, _)| n.id)
        .collect();
    if c.json {
        let nodes: Vec<Value> = client
            .nodes
            .iter()
            .zip(outcomes)
            .map(|(n, o)| outcome_json(n.id, &n.address, o))
            .collect();
        println!(
            "{}",
            json!({
                "drill": what, "nodes": nodes, "accepted": accepted, "total": outcomes.len(),
                "not_in_config": absent,
            })
        );
    } else {
        println!("演练 drill: {title}");
        println!("{:<6} {:<22} RESULT", "NODE", "ADDRESS");
        for (n, o) in client.nodes.iter().zip(outcomes) {
            println!("{:<6} {:<22} {}", n.id, n.address, outcome_text(o));
        }
        println!("accepted by {accepted} of {} nodes", outcomes.len());
        if !unreachable.is_empty() && accepted > 0 {
            println!(
                "not reached: {} — each takes the drill from the others once it is back (they ask every {} s)",
                list(&unreachable),
                faults::SYNC_INTERVAL.as_secs()
            );
        }
        if !absent.is_empty() {
            println!(
                "not in the client config: {} — only their peers' ends enforce the rule",
                list(&absent)
            );
        }
    }
    if accepted == 0 {
        bail!("no node accepted the drill");
    }
    Ok(())
}

/// The newest drill any node of the client config holds (see
/// `faults::newer`): what a change starts from, so that it keeps the rules
/// set by an earlier command even if some node missed that one.
async fn newest_drill(client: &Client) -> Result<Drill> {
    Ok(newest_drill_of_all(client).await?.0)
}

/// `newest_drill`, and whether every node of the client config answered
/// (so that no node this command could not reach holds a newer one).
async fn newest_drill_of_all(client: &Client) -> Result<(Drill, bool)> {
    let outcomes = call_all(client, &Call::Show).await;
    let everyone = outcomes.iter().all(|o| matches!(o, Outcome::Ok(_)));
    let held = outcomes.into_iter().filter_map(|o| match o {
        Outcome::Ok(r) => Some(Drill {
            generation: r.generation,
            rules: r.rules,
            operator_cert: r.operator_cert,
            signature: r.signature,
        }),
        _ => None,
    });
    let newest = faults::newest(held, |d| d)
        .ok_or_else(|| anyhow!("no node answered: the drill is unchanged"))?;
    Ok((newest, everyone))
}

/// What a heal sends.
#[derive(Debug, PartialEq)]
enum HealPlan {
    /// No rule is in force: nothing to send (a new generation would only
    /// look like a drill changed).
    Nothing,
    /// The rules to keep, and how many were removed.
    Send(Vec<FaultRule>, usize),
}

/// The heal of the rules between sides `a` and `b` (both empty: every
/// rule) of `newest`, the newest drill the nodes hold. Nothing is sent when
/// no rule is in force, but only if every node answered
/// (`everyone_answered`): one that did not may hold a newer drill with
/// rules, which a heal at a higher generation still overrides once the node
/// syncs with the others.
fn heal_plan(newest: &Drill, everyone_answered: bool, a: &[u64], b: &[u64]) -> Result<HealPlan> {
    // Sets no rule is between: refused before anything is sent, so the
    // drill's generation stays and the cut meant is still in force.
    let (rules, removed) = faults::without(&newest.rules, a, b).map_err(in_flags)?;
    if newest.rules.is_empty() && everyone_answered {
        return Ok(HealPlan::Nothing);
    }
    Ok(HealPlan::Send(rules, removed))
}

/// The generation of a change to a drill at `newest`: this machine's clock
/// in milliseconds, so that a later command wins even over a node this one
/// could not reach, and at least one more than what the nodes hold.
fn next_generation(newest: u64) -> u64 {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    now_ms.max(newest + 1)
}

/// Sets `rules` as the new drill on every node.
/// Sets the next drill on every node, signed with the operators' client
/// key when the config has one (nodes with TLS take no unsigned drill).
async fn set_all(
    c: &ClientArgs,
    client: &Client,
    newest: &Drill,
    rules: Vec<FaultRule>,
) -> Result<Vec<Outcome>> {
    // Signed as nodes will hold it: normalized (sides sorted).
    let mut drill = faults::validate_drill(Drill {
        generation: next_generation(newest.generation),
        rules,
        ..Default::default()
    })
    .map_err(|e| anyhow!(e))?;
    let cfg = ClientConfig::load(&c.config)?;
    if let Some(files) = cfg.tls.as_ref().filter(|_| !cfg.insecure) {
        hotline_node::tls::sign_drill(files, &mut drill).map_err(|e| anyhow!(e))?;
    }
    Ok(call_all(client, &Call::Set(drill)).await)
}

async fn add(c: &ClientArgs, rule: FaultRule) -> Result<()> {
    let client = crate::ticket_cli::client(c)?;
    let title = format!("{}  [{}]", faults::describe(&rule), rule.label);
    let what = rule_json(&rule);
    let named: Vec<u64> = rule.side_a.iter().chain(&rule.side_b).copied().collect();
    let newest = newest_drill(&client).await?;
    // Refused before anything is sent: the same cut under another label.
    let rules = faults::with_rule(&newest.rules, rule).map_err(in_flags)?;
    let outcomes = set_all(c, &client, &newest, rules).await?;
    report(c, &client, what, &title, &named, &outcomes)
}

async fn heal(c: &ClientArgs, sides: Option<(Vec<u64>, Vec<u64>)>) -> Result<()> {
    let client = crate::ticket_cli::client(c)?;
    let (a, b) = sides.unwrap_or_default();
    let (newest, everyone) = newest_drill_of_all(&client).await?;
    let (rules, removed) = match heal_plan(&newest, everyone, &a, &b)? {
        HealPlan::Send(rules, removed) => (rules, removed),
        HealPlan::Nothing => {
            if c.json {
                println!(
                    "{}",
                    json!({
                        "drill": { "action": "heal", "removed": 0 },
                        "in_force": false, "sent": false, "generation": newest.generation,
                    })
                );
            } else {
                println!("{NOTHING_TO_HEAL}");
            }
            return Ok(());
        }
    };
    let outcomes = set_all(c, &client, &newest, rules).await?;
    let (what, title) = if a.is_empty() {
        (
            json!({ "action": "heal", "removed": removed }),
            format!("heal (every rule removed: {removed}; counters kept)"),
        )
    } else {
        (
            json!({ "action": "heal", "side_a": a, "side_b": b, "removed": removed }),
            format!(
                "heal {a:?} | {b:?} (the rules between these sets removed: {removed}; others kept)"
            ),
        )
    };
    let named: Vec<u64> = a.iter().chain(&b).copied().collect();
    report(c, &client, what, &title, &named, &outcomes)
}

async fn show(c: &ClientArgs) -> Result<()> {
    let client = crate::ticket_cli::client(c)?;
    let outcomes = call_all(&client, &Call::Show).await;
    let answered = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Ok(_)))
        .count();
    if c.json {
        let nodes: Vec<Value> = client
            .nodes
            .iter()
            .zip(&outcomes)
            .map(|(n, o)| match o {
                Outcome::Ok(r) => json!({
                    "id": n.id, "address": n.address, "result": "ok",
                    "generation": r.generation,
                    "rules": r.rules.iter().map(rule_json).collect::<Vec<_>>(),
                    "counters": r.counters.iter().map(|k| json!({
                        "peer": k.peer, "dropped": k.dropped, "delayed": k.delayed,
                    })).collect::<Vec<_>>(),
                }),
                other => outcome_json(n.id, &n.address, other),
            })
            .collect();
        println!("{}", json!({ "nodes": nodes }));
    } else {
        for (i, (n, o)) in client.nodes.iter().zip(&outcomes).enumerate() {
            if i > 0 {
                println!();
            }
            let Outcome::Ok(r) = o else {
                println!("node {} {}: {}", n.id, n.address, outcome_text(o));
                continue;
            };
            println!(
                "node {} {}: {} 演练规则 drill rules (generation {})",
                n.id,
                n.address,
                r.rules.len(),
                r.generation
            );
            for rule in &r.rules {
                println!("  {:<32} {}", faults::describe(rule), rule.label);
            }
            if r.counters.is_empty() {
                println!("  nothing dropped or delayed");
            } else {
                println!("  counters 计数 (丢弃 dropped, 延迟 delayed):");
                println!("  {:<6} {:>10} {:>10}", "PEER", "DROPPED", "DELAYED");
                for k in &r.counters {
                    println!("  {:<6} {:>10} {:>10}", k.peer, k.dropped, k.delayed);
                }
            }
        }
    }
    if answered == 0 {
        bail!("no node answered");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPO: &str = r#"
name = "t"

[[node]]
id = 1
address = "127.0.0.1:7101"
site = "beijing"
level = "national"
region = ""

[[node]]
id = 2
address = "127.0.0.1:7102"
site = "shanghai"
level = "province"
region = "31"

[[node]]
id = 31
address = "127.0.0.1:7103"
site = "nanjing"
level = "province"
region = "32"

[[node]]
id = 6
address = "127.0.0.1:7106"
site = "jiading"
level = "district"
region = "310114"

[[node]]
id = 9
address = "127.0.0.1:7109"
site = "jiading"
level = "district"
region = "310114"

[[group]]
region = ""
voters = [1]

[[group]]
region = "31"
voters = [2]

[[group]]
region = "32"
voters = [31]

[[group]]
region = "310114"
voters = [6, 9]
"#;

    fn topo() -> Topology {
        Topology::parse(TOPO).expect("test topology")
    }

    fn drill(rules: Vec<FaultRule>) -> Drill {
        Drill {
            generation: 7,
            rules,
            ..Default::default()
        }
    }

    /// A heal with nothing in force sends nothing (it raised every node's
    /// generation for no rule); if a node did not answer it still sends,
    /// as that node may hold a newer drill the others have not synced.
    #[test]
    fn a_heal_with_nothing_in_force_sends_nothing() {
        assert_eq!(
            heal_plan(&drill(vec![]), true, &[], &[]).unwrap(),
            HealPlan::Nothing
        );
        assert_eq!(
            heal_plan(&drill(vec![]), false, &[], &[]).unwrap(),
            HealPlan::Send(vec![], 0)
        );
        let cut = build_rule("1", "2,3", None, (FaultAction::Partition, false), 0, 0).unwrap();
        assert_eq!(
            heal_plan(&drill(vec![cut.clone()]), true, &[], &[]).unwrap(),
            HealPlan::Send(vec![], 1)
        );
        assert_eq!(
            heal_plan(&drill(vec![cut]), true, &[2, 3], &[1]).unwrap(),
            HealPlan::Send(vec![], 1)
        );
        // Between sets with no rule: refused, naming the flags, as before.
        let e = heal_plan(&drill(vec![]), true, &[1], &[2])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--between, --and: no rule in force"), "{e}");
    }

    #[test]
    fn ids_without_a_topology() {
        assert_eq!(
            resolve_side("--between", "3, 1,3", None).unwrap(),
            vec![1, 3]
        );
        let e = resolve_side("--between", "jiading", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--topology"), "{e}");
        let e = resolve_side("--and", "1,,2", None).unwrap_err().to_string();
        assert!(e.starts_with("--and: empty"), "{e}");
        let e = resolve_side("--and", "0", None).unwrap_err().to_string();
        assert!(e.contains("node id 0"), "{e}");
        let e = resolve_side("--and", "site:jiading", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs --topology"), "{e}");
    }

    #[test]
    fn names_resolve_through_the_topology() {
        let t = topo();
        let r = |s: &str| resolve_side("--between", s, Some(&t));
        assert_eq!(r("jiading").unwrap(), vec![6, 9]); // site: every node there
        assert_eq!(r("310114").unwrap(), vec![6, 9]); // region code
        assert_eq!(r("嘉定区").unwrap(), vec![6, 9]); // region name
        assert_eq!(r("嘉定").unwrap(), vec![6, 9]); // without its suffix
        assert_eq!(r("江苏").unwrap(), vec![31]);
        // A region takes in the nodes of the places within it.
        assert_eq!(r("上海").unwrap(), vec![2, 6, 9]);
        assert_eq!(r("region:3101").unwrap(), vec![6, 9]);
        assert_eq!(r("beijing,shanghai").unwrap(), vec![1, 2]);
        assert_eq!(r("2,jiading").unwrap(), vec![2, 6, 9]); // ids and names mix
        assert_eq!(r("region:31").unwrap(), vec![2, 6, 9]);
        assert_eq!(r("node:31").unwrap(), vec![31]);
        assert_eq!(r("site:nanjing").unwrap(), vec![31]);
        // 31 is node 31 (nanjing) and region 31 (nodes 2, 6, 9): ask which.
        let e = r("31").unwrap_err().to_string();
        assert!(
            e.contains("ambiguous") && e.contains("node:31") && e.contains("region:31"),
            "{e}"
        );
        // 32 is only region 32 (no node 32).
        assert_eq!(r("32").unwrap(), vec![31]);
        let e = r("taicang").unwrap_err().to_string();
        assert!(e.contains("matches no") && e.contains("jiading"), "{e}");
        let e = r("77").unwrap_err().to_string();
        assert!(e.contains("matches no"), "{e}");
        let e = r("node:77").unwrap_err().to_string();
        assert!(e.contains("no node 77"), "{e}");
        let e = r("zone:x").unwrap_err().to_string();
        assert!(e.contains("prefixes"), "{e}");
    }

    #[test]
    fn rules_are_checked_before_they_are_sent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, TOPO).unwrap();
        let r = build_rule(
            "jiading",
            "shanghai,beijing",
            Some(&path),
            (FaultAction::Partition, false),
            0,
            0,
        )
        .unwrap();
        assert_eq!(
            (r.side_a.clone(), r.side_b.clone()),
            (vec![6, 9], vec![1, 2])
        );
        assert_eq!(r.label, "jiading | shanghai,beijing");
        assert!(!r.one_way);
        let one = build_rule(
            "jiading",
            "beijing",
            Some(&path),
            (FaultAction::Drop, true),
            0,
            1000,
        )
        .unwrap();
        assert!(one.one_way);
        assert_eq!(one.label, "jiading → beijing");
        let e = build_rule(
            "jiading,2",
            "2",
            Some(&path),
            (FaultAction::Partition, false),
            0,
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("--and: node 2 (shanghai)") && e.contains("disjoint"),
            "{e}"
        );
        let e = build_rule("1", "2", None, (FaultAction::Delay, false), 0, 0)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--ms:"), "{e}");
        let long = "1,".repeat(200) + "1";
        assert!(
            build_rule(&long, "2", None, (FaultAction::Partition, false), 0, 0)
                .unwrap()
                .label
                .len()
                <= MAX_LABEL_BYTES
        );
    }
}
