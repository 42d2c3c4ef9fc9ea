//! `hotline group …`: online membership change of a region group, and its
//! configuration as the nodes report it.
//!
//! - `add-learner --region R --node N`: node N replicates R's group without
//!   voting (a street office). It starts empty and catches up by snapshot.
//! - `promote --region R --node N`: the learner becomes a voter (refused,
//!   and retried here, until it has caught up).
//! - `remove --region R --node N`: N leaves the group. The leader does not
//!   remove itself: it hands leadership over and the command retries at the
//!   new leader.
//! - `transfer-leader --region R --node N`: voter N leads the group (move
//!   leaders off a site before taking it down: no election when it goes).
//! - `balance-leaders [--dry-run] [--max-moves N]`: even out how many
//!   groups each node leads, moving leaderships to voters that lead fewer
//!   (after a node comes back: it leads nothing until moved). See
//!   `crate::leaders`.
//! - `show [--region R]`: voters and learners of each group, and the role of
//!   every replica.
//! - `purge --region R --node N`: after `remove`, N deletes its replica of
//!   R's group and the group's data on its disk (a removed replica's rows
//!   stay there otherwise). Refused unless the group's leader no longer
//!   counts N a member and N's replica shows itself removed (or is still
//!   empty, or a learner by a stale configuration, or only on N's disk: a
//!   group joined at run time and not loaded since N restarted). A voter
//!   by a stale configuration stops on its voters' word first (retried).
//!
//! Changes go to the group's leader (found by asking every node of the
//! client config) and are answered once the new configuration is applied
//! there. One node at a time: raft's simple protocol, no joint state. Then
//! the command waits (up to 15 s) until the leader's node routes with a
//! replicated directory that shows the change, and says so; until then the
//! leader refuses the group's next change, unless `--force` (see
//! `recorded_in_directory`).
//! Record the change in the topology file too (the group's `voters` and
//! `learners`), so that a `cluster init` from it matches.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use clap::Subcommand;
use hotline_federation::topology::{group_region, try_group_id};
use hotline_proto::v1::admin_client::AdminClient;
use hotline_proto::v1::federation_client::FederationClient;
use hotline_proto::v1::{
    ConfChangeRequest, ConfChangeResponse, DirectoryImage, DirectoryRequest, GroupStatus,
    PurgeReplicaRequest, TransferLeaderRequest, TransferLeaderResponse,
};
use serde_json::{Value, json};
use tonic::Code;

use crate::ticket_cli::{ClientArgs, client, status_err};

/// Attempts at the leader: a change refused for a reason that passes
/// (leader change, a change in progress, a learner still catching up) is
/// retried after a pause.
const ATTEMPTS: u32 = 60;
const PAUSE: Duration = Duration::from_millis(500);

#[derive(Subcommand)]
pub enum GroupCmd {
    /// Add a node as a learner of a region's group (replicates, does not vote).
    AddLearner {
        #[command(flatten)]
        c: ClientArgs,
        /// The group's region code ("" = national).
        #[arg(long)]
        region: String,
        /// The node to add (an id of the topology).
        #[arg(long)]
        node: u64,
        /// Change even though the directory does not show the group's
        /// previous change yet (refused otherwise).
        #[arg(long)]
        force: bool,
    },
    /// Make a learner of a region's group a voter.
    Promote {
        #[command(flatten)]
        c: ClientArgs,
        #[arg(long)]
        region: String,
        #[arg(long)]
        node: u64,
        /// Change even though the directory does not show the group's
        /// previous change yet (refused otherwise).
        #[arg(long)]
        force: bool,
    },
    /// Remove a voter or learner from a region's group.
    Remove {
        #[command(flatten)]
        c: ClientArgs,
        #[arg(long)]
        region: String,
        #[arg(long)]
        node: u64,
        /// Change even though the directory does not show the group's
        /// previous change yet, or though the voters left would not hold a
        /// reachable majority (refused otherwise: the group would stop).
        #[arg(long)]
        force: bool,
    },
    /// Hand a region group's leadership to one of its voters (before taking
    /// the current leader's site down: no election when it goes).
    TransferLeader {
        #[command(flatten)]
        c: ClientArgs,
        #[arg(long)]
        region: String,
        /// The voter to lead.
        #[arg(long)]
        node: u64,
    },
    /// Even out how many groups each node leads: hand leaderships from the
    /// node leading most to voters that lead fewer (after a node comes
    /// back, it leads nothing until then), only to voters that answer as
    /// followers caught up with their leader.
    BalanceLeaders {
        #[command(flatten)]
        c: ClientArgs,
        /// Print the moves, make none.
        #[arg(long)]
        dry_run: bool,
        /// At most this many moves (1-10000).
        #[arg(long, default_value_t = 1000)]
        max_moves: usize,
    },
    /// Delete a removed node's replica of a region's group and the group's
    /// data on that node's disk (after `remove`, once `status` shows the
    /// replica removed). The node no longer hosts the group, not even at
    /// its next start; added back, it catches up from the leader.
    Purge {
        #[command(flatten)]
        c: ClientArgs,
        #[arg(long)]
        region: String,
        /// The node that holds the removed replica.
        #[arg(long)]
        node: u64,
    },
    /// The replicated directory (kept by the national group): which group
    /// owns which region and where its replicas are, and the version each
    /// node routes with.
    Directory {
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Voters and learners of each group, and every replica's role.
    Show {
        #[command(flatten)]
        c: ClientArgs,
        /// Only this region's group.
        #[arg(long)]
        region: Option<String>,
    },
}

pub async fn run(cmd: GroupCmd) -> Result<()> {
    match cmd {
        GroupCmd::AddLearner {
            c,
            region,
            node,
            force,
        } => change(&c, &region, node, "add_learner", force).await,
        GroupCmd::Promote {
            c,
            region,
            node,
            force,
        } => change(&c, &region, node, "promote", force).await,
        GroupCmd::Remove {
            c,
            region,
            node,
            force,
        } => change(&c, &region, node, "remove", force).await,
        GroupCmd::TransferLeader { c, region, node } => transfer_leader(&c, &region, node).await,
        GroupCmd::BalanceLeaders {
            c,
            dry_run,
            max_moves,
        } => balance_leaders(&c, dry_run, max_moves).await,
        GroupCmd::Purge { c, region, node } => purge(&c, &region, node).await,
        GroupCmd::Show { c, region } => show(&c, region.as_deref()).await,
        GroupCmd::Directory { c } => directory(&c).await,
    }
}

fn group_of(region: &str) -> Result<u64> {
    try_group_id(region).ok_or_else(|| anyhow!("--region: {region:?} is not a division code"))
}

/// "310114 嘉定区" ("全国" for the national group).
fn label(group: u64) -> String {
    hotline_federation::regions().label(&group_region(group))
}

fn ids(v: &[u64]) -> String {
    let s: Vec<String> = v.iter().map(u64::to_string).collect();
    format!("[{}]", s.join(","))
}

/// What one attempt at a group's leader came to.
enum Attempt<T> {
    Done(T),
    /// Refused for a reason that passes: try again (at the leader then).
    Retry(String),
    Fail(anyhow::Error),
}

/// Runs `f(node index, attempt)` at the group's leader, found anew for each
/// attempt, up to `attempts` times with [`PAUSE`] between them. `Err`: a
/// failure, as it came; `Ok(Err)`: the last reason to retry (or that no
/// leader was found).
async fn at_leader<T, F, Fut>(
    cl: &hotline_node::client::Client,
    group: u64,
    attempts: u32,
    mut f: F,
) -> Result<Result<T, String>>
where
    F: FnMut(usize, u32) -> Fut,
    Fut: std::future::Future<Output = Attempt<T>>,
{
    let mut last = String::from("no leader found");
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(PAUSE).await;
        }
        let Some(i) = cl.find_leader_of(Some(group)).await else {
            last = format!("no node reports leading group {}", label(group));
            continue;
        };
        match f(i, attempt).await {
            Attempt::Done(v) => return Ok(Ok(v)),
            Attempt::Retry(why) => {
                last = format!("node {}: {why}", cl.nodes[i].id);
                eprintln!("retrying: {last}");
            }
            Attempt::Fail(e) => return Err(e),
        }
    }
    Ok(Err(last))
}

/// The group of `--region`, after checking `--node`, and a client of the
/// config: what every command aimed at one node of one group starts from.
fn target(c: &ClientArgs, region: &str, node: u64) -> Result<(u64, hotline_node::client::Client)> {
    let group = group_of(region)?;
    if node == 0 {
        bail!("--node: node ids start at 1");
    }
    Ok((group, client(c)?))
}

async fn change(c: &ClientArgs, region: &str, node: u64, op: &str, force: bool) -> Result<()> {
    let (group, cl) = target(c, region, node)?;
    let done = at_leader(&cl, group, ATTEMPTS, |i, attempt| {
        let cl = &cl;
        async move {
            let mut admin = AdminClient::new(cl.channel(i));
            let mut req = tonic::Request::new(ConfChangeRequest {
                group_id: group,
                node_id: node,
                op: op.to_string(),
                force,
            });
            req.set_timeout(Duration::from_secs(15));
            match admin.change_membership(req).await {
                Ok(r) => {
                    let r = r.into_inner();
                    let recorded = recorded_in_directory(cl, i, &r).await;
                    Attempt::Done((cl.nodes[i].id, r, recorded))
                }
                // The directory has not caught up with the previous change
                // (it normally does within a second): wait, unless it takes
                // longer than the directory's own wait.
                Err(s)
                    if s.code() == Code::FailedPrecondition
                        && s.message()
                            .contains(hotline_node::membership::DIRECTORY_BEHIND)
                        && PAUSE * (attempt + 1) < DIRECTORY_RECORD_WAIT =>
                {
                    Attempt::Retry(s.message().to_string())
                }
                Err(s) if matches!(s.code(), Code::Unavailable | Code::ResourceExhausted) => {
                    Attempt::Retry(s.message().to_string())
                }
                Err(s) => Attempt::Fail(status_err(s)),
            }
        }
    })
    .await?;
    match done {
        Ok((leader, r, recorded)) => {
            print_change(c.json, op, node, leader, &r, recorded);
            Ok(())
        }
        Err(last) => bail!("group {}: {op} {node} not done: {last}", label(group)),
    }
}

/// Asks the group's leader to hand over to `node`, retrying at a new
/// leader (a leader change meanwhile) and while the transfer is given up
/// for a reason that passes (the voter still catching up). `Ok`: the node
/// that led when asked, and the answer.
async fn move_leader(
    cl: &hotline_node::client::Client,
    group: u64,
    node: u64,
    attempts: u32,
) -> Result<(u64, TransferLeaderResponse)> {
    let done = at_leader(cl, group, attempts, |i, _| async move {
        let mut admin = AdminClient::new(cl.channel(i));
        let mut req = tonic::Request::new(TransferLeaderRequest {
            group_id: group,
            node_id: node,
        });
        req.set_timeout(Duration::from_secs(10));
        match admin.transfer_leader(req).await {
            Ok(r) => Attempt::Done((cl.nodes[i].id, r.into_inner())),
            Err(s)
                if matches!(
                    s.code(),
                    Code::Unavailable | Code::Aborted | Code::ResourceExhausted
                ) =>
            {
                Attempt::Retry(s.message().to_string())
            }
            Err(s) => Attempt::Fail(status_err(s)),
        }
    })
    .await?;
    done.map_err(|last| {
        anyhow!(
            "group {}: leadership not moved to node {node}: {last}",
            label(group)
        )
    })
}

async fn transfer_leader(c: &ClientArgs, region: &str, node: u64) -> Result<()> {
    let (group, cl) = target(c, region, node)?;
    let (from, r) = move_leader(&cl, group, node, ATTEMPTS / 6).await?;
    if c.json {
        println!(
            "{}",
            json!({
                "group_id": r.group_id, "region": group_region(r.group_id),
                "leader": r.leader_id, "term": r.term, "from": from,
            })
        );
    } else {
        println!("{}", moved_text(group, from, &r));
    }
    Ok(())
}

/// A transfer's outcome in the operator's words.
fn moved_text(group: u64, from: u64, r: &TransferLeaderResponse) -> String {
    if from == r.leader_id {
        format!(
            "group {}: 节点 {} 已是领导者 node {} leads already (term {})",
            label(group),
            r.leader_id,
            r.leader_id,
            r.term
        )
    } else {
        format!(
            "group {}: 领导权已由节点 {from} 移交节点 {} leadership moved from node {from} \
             to node {} (term {})",
            label(group),
            r.leader_id,
            r.leader_id,
            r.term
        )
    }
}

/// Transfers under way at once: each waits at its group's leader until the
/// new leader leads (a node holds at most 64 such waits).
const BALANCE_PARALLEL: usize = 8;
/// Attempts per move: a transfer given up pauses the group's writes for up
/// to an election timeout each time, so a balance does not insist (one run
/// more picks up what is left).
const BALANCE_ATTEMPTS: u32 = 3;
const MAX_BALANCE_MOVES: usize = 10_000;
/// How long to wait for every replica of a moved group to name its new
/// leader before counting the leaders per node again.
const BALANCE_SETTLE: Duration = Duration::from_secs(5);

/// "node 1: 22, node 2: 21"
fn counts_text(c: &BTreeMap<u64, usize>) -> String {
    let v: Vec<String> = c.iter().map(|(n, k)| format!("node {n}: {k}")).collect();
    v.join(", ")
}

async fn balance_leaders(c: &ClientArgs, dry_run: bool, max_moves: usize) -> Result<()> {
    use crate::leaders::{Move, balance_plan, led_groups, per_node};
    use futures::StreamExt;
    if !(1..=MAX_BALANCE_MOVES).contains(&max_moves) {
        bail!("--max-moves: 1 to {MAX_BALANCE_MOVES}, got {max_moves}");
    }
    let cl = client(c)?;
    let node_ids: Vec<u64> = cl.nodes.iter().map(|n| n.id).collect();
    let all = cl.status_all().await;
    let (led, up) = led_groups(&all, &node_ids);
    if up.is_empty() {
        bail!("no node of the client config answers");
    }
    let unreachable: Vec<u64> = node_ids
        .iter()
        .filter(|n| !up.contains(n))
        .copied()
        .collect();
    let hosted: std::collections::BTreeSet<u64> = all
        .iter()
        .flatten()
        .flat_map(|s| s.groups.iter().map(|g| g.group_id))
        .collect();
    let without_leader = hosted.len() - led.len();
    let before = per_node(&led, &up);
    let crate::leaders::Plan {
        moves: plan,
        after: planned,
        cut_short,
    } = balance_plan(&led, &up, max_moves);
    let mut outcomes: Vec<(Move, Result<(u64, TransferLeaderResponse)>)> = if dry_run {
        Vec::new()
    } else {
        futures::stream::iter(plan.iter().copied())
            .map(|m| {
                let cl = &cl;
                async move { (m, move_leader(cl, m.group, m.to, BALANCE_ATTEMPTS).await) }
            })
            .buffer_unordered(BALANCE_PARALLEL)
            .collect()
            .await
    };
    outcomes.sort_by_key(|(m, _)| m.group);
    let failed = outcomes.iter().filter(|(_, r)| r.is_err()).count();
    // The leaders per node as the nodes report them now: once all replicas
    // of each moved group name its new leader (a follower hears of it with
    // the new leader's first append), or after BALANCE_SETTLE.
    let mut settled = true;
    let now = if dry_run || outcomes.is_empty() {
        None
    } else {
        let until = tokio::time::Instant::now() + BALANCE_SETTLE;
        loop {
            let all = cl.status_all().await;
            let (now, _) = led_groups(&all, &node_ids);
            let done = outcomes
                .iter()
                .all(|(m, r)| r.is_err() || now.get(&m.group).is_some_and(|l| l.leader == m.to));
            if done || tokio::time::Instant::now() >= until {
                settled = done;
                break Some(per_node(&now, &up));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let move_json = |m: &Move, from: u64| {
        json!({
            "group_id": m.group, "region": group_region(m.group), "from": from, "to": m.to,
        })
    };
    if c.json {
        let moves: Vec<Value> = if dry_run {
            plan.iter().map(|m| move_json(m, m.from)).collect()
        } else {
            outcomes
                .iter()
                .map(|(m, r)| {
                    let mut v = move_json(m, r.as_ref().map_or(m.from, |(from, _)| *from));
                    match r {
                        Ok((_, r)) => {
                            v["ok"] = true.into();
                            v["term"] = r.term.into();
                        }
                        Err(e) => {
                            v["ok"] = false.into();
                            v["error"] = format!("{e:#}").into();
                        }
                    }
                    v
                })
                .collect()
        };
        println!(
            "{}",
            json!({
                "dry_run": dry_run, "before": before, "moves": moves, "failed": failed,
                "planned": planned, "after": now, "settled": settled,
                "cut_short_at_max_moves": cut_short,
                "unreachable": unreachable, "without_leader": without_leader,
            })
        );
    } else {
        println!("领导者分布 leaders per node: {}", counts_text(&before));
        if !unreachable.is_empty() {
            println!(
                "未响应节点 unreachable nodes {} (nothing moved to them)",
                ids(&unreachable)
            );
        }
        if without_leader > 0 {
            println!(
                "{without_leader} group(s) without a leader all their replicas agree on: \
                 left alone"
            );
        }
        if plan.is_empty() {
            println!(
                "已均衡 balanced: no group has a ready voter that leads two or more groups \
                 fewer than its leader does"
            );
            return Ok(());
        }
        for (m, r) in &outcomes {
            match r {
                Ok((from, r)) => println!("{}", moved_text(m.group, *from, r)),
                Err(e) => println!(
                    "失败 failed: group {} to node {}: {e:#}",
                    label(m.group),
                    m.to
                ),
            }
        }
        if dry_run {
            for m in &plan {
                println!(
                    "group {}: would move from node {} to node {}",
                    label(m.group),
                    m.from,
                    m.to
                );
            }
            println!("计划 planned: {}", counts_text(&planned));
        } else if let Some(now) = &now {
            println!(
                "均衡后 leaders per node now: {} ({} moved, {failed} failed{})",
                counts_text(now),
                outcomes.len() - failed,
                if settled {
                    ""
                } else {
                    "; some replicas do not name the new leaders yet"
                }
            );
        }
        if cut_short {
            println!("stopped at --max-moves {max_moves}: run again to go on");
        }
    }
    if failed > 0 {
        bail!("{failed} of {} leadership moves failed", plan.len());
    }
    Ok(())
}

/// Asks the group's leader whether `node` is still a member (a purge of a
/// member's replica is refused here before the node is asked: its log may
/// be what keeps a committed entry), then asks the node to purge.
async fn purge(c: &ClientArgs, region: &str, node: u64) -> Result<()> {
    let (group, cl) = target(c, region, node)?;
    let Some(at) = cl.nodes.iter().position(|n| n.id == node) else {
        bail!("--node: node {node} is not in the client config");
    };
    let Some(leader) = cl.find_leader_of(Some(group)).await else {
        bail!(
            "group {}: no leader answers, so nothing confirms that node {node} is out of the \
             group; try again once it has one",
            label(group)
        );
    };
    let leader_id = cl.nodes[leader].id;
    let g = cl
        .status_of(leader)
        .await
        .map_err(status_err)?
        .groups
        .into_iter()
        .find(|g| g.group_id == group)
        .ok_or_else(|| {
            anyhow!(
                "group {}: its leader's node stopped hosting it",
                label(group)
            )
        })?;
    let role = if g.voters.contains(&node) || g.voters_outgoing.contains(&node) {
        Some("voter 投票成员")
    } else if g.learners.contains(&node) {
        Some("learner 学习者")
    } else {
        None
    };
    if let Some(role) = role {
        bail!(
            "group {}: node {node} is still a {role} of the group (by its leader, node \
             {leader_id}); `hotline group remove --region {region} --node {node}` first",
            label(group)
        );
    }
    let mut admin = AdminClient::new(cl.channel(at));
    // Right after `group remove` the replica parks at its next tick, and a
    // request in its hands passes; a voter removed while it was away parks
    // once the voters refuse its campaign: retried for up to 15 s.
    let mut attempt = 0;
    let r = loop {
        attempt += 1;
        let mut req = tonic::Request::new(PurgeReplicaRequest {
            group_id: group,
            leader_term: g.term,
            leader_commit: g.commit_index,
        });
        req.set_timeout(Duration::from_secs(30));
        match admin.purge_replica(req).await {
            Ok(r) => break r.into_inner(),
            Err(s)
                if s.code() == Code::FailedPrecondition
                    && s.message().ends_with("try again")
                    && attempt < ATTEMPTS / 2 =>
            {
                tokio::time::sleep(PAUSE).await;
            }
            Err(s) => return Err(status_err(s)),
        }
    };
    if c.json {
        println!(
            "{}",
            json!({
                "group_id": r.group_id, "region": group_region(r.group_id),
                "node": r.node_id, "tickets_deleted": r.tickets_deleted,
            })
        );
    } else {
        println!(
            "group {}: 节点 {} 的副本已清除 node {}'s replica purged (已删除工单 tickets deleted {})",
            label(group),
            r.node_id,
            r.node_id,
            r.tickets_deleted
        );
    }
    Ok(())
}

/// Where the replicated directory stands on a change just applied.
#[derive(Clone, Copy, Debug)]
enum Recorded {
    /// The federation keeps no directory (no national group): nothing to wait for.
    NoDirectory,
    /// The leader's node routes with this directory version, which shows the change.
    At(u64),
    /// Not within [`DIRECTORY_RECORD_WAIT`]: the newest version the node had.
    NotYet(u64),
}

/// How long a change waits for the directory to show it: the leader
/// reports at once and then every 200 ms for 2 s, each report needing a
/// majority of the group's voters to show the change; then every node's
/// next read (long poll, or every 2 s).
const DIRECTORY_RECORD_WAIT: Duration = Duration::from_secs(15);
const DIRECTORY_RECORD_POLL: Duration = Duration::from_millis(300);
/// See `recorded_in_directory`: only when the client has no topology.
const NO_DIRECTORY_GRACE: Duration = Duration::from_secs(3);

/// Waits until the directory node `i` (the group's leader) routes with
/// shows the group as `r` says. Why the command waits: the directory takes
/// a report only when a majority of the voters *it* lists show the change,
/// so changes made faster than it follows can leave it unable to confirm
/// any (move a group to new sites — add and promote two voters, remove two
/// old ones and shut them down — and the old voters it still lists cannot
/// answer). One change at a time, each recorded before the next, keeps a
/// majority of the listed voters able to confirm.
async fn recorded_in_directory(
    cl: &hotline_node::client::Client,
    i: usize,
    r: &ConfChangeResponse,
) -> Recorded {
    // Whether the federation keeps a directory at all: it does when it has
    // a national group. A client config without the topology cannot tell,
    // so a directory still at version 0 after a grace (a national leader
    // seeds it within a second or two of its start) counts as none.
    let national = cl
        .directory
        .as_ref()
        .map(|d| d.contains(hotline_federation::topology::NATIONAL_GROUP));
    if national == Some(false) {
        return Recorded::NoDirectory;
    }
    let started = std::time::Instant::now();
    let mut newest = 0;
    loop {
        if let Ok(img) = node_directory(cl, i).await {
            if img.version == 0 && national.is_none() && started.elapsed() >= NO_DIRECTORY_GRACE {
                return Recorded::NoDirectory;
            }
            newest = newest.max(img.version);
            if shows(&img, r) {
                return Recorded::At(img.version);
            }
        }
        if started.elapsed() + DIRECTORY_RECORD_POLL > DIRECTORY_RECORD_WAIT {
            return Recorded::NotYet(newest);
        }
        tokio::time::sleep(DIRECTORY_RECORD_POLL).await;
    }
}

/// The whole directory node `i` has (`Federation.Directory`, no long poll).
async fn node_directory(
    cl: &hotline_node::client::Client,
    i: usize,
) -> Result<DirectoryImage, tonic::Status> {
    let mut fed = FederationClient::new(cl.channel(i))
        .max_decoding_message_size(hotline_node::dirsync::MAX_DIRECTORY_BYTES);
    let mut req = tonic::Request::new(DirectoryRequest {
        known_version: 0,
        wait_ms: 0,
    });
    req.set_timeout(Duration::from_secs(5));
    fed.directory(req).await.map(|r| r.into_inner())
}

/// Does the directory place `r.group_id` with exactly `r`'s voters and learners?
fn shows(img: &DirectoryImage, r: &ConfChangeResponse) -> bool {
    img.groups.iter().any(|p| {
        p.group_id == r.group_id
            && hotline_node::core::placements::same_members(p, &r.voters, &r.learners)
    })
}

fn print_change(
    json: bool,
    op: &str,
    node: u64,
    leader: u64,
    r: &ConfChangeResponse,
    recorded: Recorded,
) {
    if json {
        let (version, is_recorded) = match recorded {
            Recorded::NoDirectory => (None, None),
            Recorded::At(v) => (Some(v), Some(true)),
            Recorded::NotYet(v) => (Some(v), Some(false)),
        };
        println!(
            "{}",
            json!({
                "group_id": r.group_id, "region": group_region(r.group_id), "op": op,
                "node": node, "leader": leader, "voters": r.voters, "learners": r.learners,
                "voters_outgoing": r.voters_outgoing, "joint": r.joint,
                "directory_version": version, "directory_recorded": is_recorded,
            })
        );
        return;
    }
    println!(
        "group {}: {op} node {node} done (leader node {leader})",
        label(r.group_id)
    );
    println!("  voters   {}", ids(&r.voters));
    println!("  learners {}", ids(&r.learners));
    if r.joint {
        println!(
            "  leaving joint configuration, outgoing voters {}",
            ids(&r.voters_outgoing)
        );
    }
    match recorded {
        Recorded::NoDirectory => {}
        Recorded::At(v) => println!("  目录 directory: 已记录 recorded, version {v}"),
        Recorded::NotYet(v) => eprintln!(
            "  目录 directory: {} s 内未记录 not recorded within {} s (node {leader} routes with version {v}; \
             联系不到国家级多数，或本组多数未显示此变更 national's majority unreachable, or a majority of \
             the group's listed voters does not show the change): 记录前请勿进行下一次变更 make no \
             further change to this group until `hotline group directory` shows it",
            DIRECTORY_RECORD_WAIT.as_secs(),
            DIRECTORY_RECORD_WAIT.as_secs(),
        ),
    }
}

/// One group as the nodes report it.
#[derive(Default)]
struct GroupView {
    /// The configuration of the replica with the highest (term, applied):
    /// the leader's, when one is reachable.
    best: Option<((bool, u64, u64), GroupStatus)>,
    /// node id → that node's report.
    replicas: BTreeMap<u64, GroupStatus>,
}

async fn show(c: &ClientArgs, region: Option<&str>) -> Result<()> {
    let only = region.map(group_of).transpose()?;
    let cl = client(c)?;
    let all = cl.status_all().await;
    let mut groups: BTreeMap<u64, GroupView> = BTreeMap::new();
    let mut unreachable = Vec::new();
    for (i, s) in all.into_iter().enumerate() {
        let node = cl.nodes[i].id;
        let Ok(s) = s else {
            unreachable.push(node);
            continue;
        };
        for g in s.groups {
            if only.is_some_and(|o| o != g.group_id) {
                continue;
            }
            let v = groups.entry(g.group_id).or_default();
            let rank = (g.role == "leader", g.term, g.applied_index);
            if v.best.as_ref().is_none_or(|(r, _)| rank > *r) {
                v.best = Some((rank, g.clone()));
            }
            v.replicas.insert(node, g);
        }
    }
    if let Some(o) = only
        && !groups.contains_key(&o)
    {
        bail!(
            "no reachable node hosts group {} (unreachable: {})",
            label(o),
            ids(&unreachable)
        );
    }
    if c.json {
        let gs: Vec<Value> = groups
            .iter()
            .map(|(id, v)| {
                let b = v.best.as_ref().map(|(_, g)| g.clone()).unwrap_or_default();
                let leader = v
                    .replicas
                    .iter()
                    .find(|(_, g)| g.role == "leader")
                    .map(|(n, _)| *n);
                json!({
                    "group_id": id, "region": group_region(*id), "leader": leader,
                    "term": b.term, "voters": b.voters, "learners": b.learners,
                    "voters_outgoing": b.voters_outgoing, "joint": !b.voters_outgoing.is_empty(),
                    "replicas": v.replicas.iter().map(|(n, g)| json!({
                        "node": n, "role": g.role, "term": g.term,
                        "commit_index": g.commit_index, "applied_index": g.applied_index,
                        "voters": g.voters, "learners": g.learners,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", json!({ "groups": gs, "unreachable": unreachable }));
        return Ok(());
    }
    for (id, v) in &groups {
        let b = v.best.as_ref().map(|(_, g)| g.clone()).unwrap_or_default();
        println!("group {} (term {})", label(*id), b.term);
        println!("  voters   {}", ids(&b.voters));
        println!("  learners {}", ids(&b.learners));
        if !b.voters_outgoing.is_empty() {
            println!("  joint: outgoing voters {}", ids(&b.voters_outgoing));
        }
        for (n, g) in &v.replicas {
            println!(
                "    node-{n:<3} {} applied {:>8}  commit {:>8}",
                crate::report::pad(
                    &crate::labels::both(crate::labels::role_zh(&g.role), &g.role),
                    22
                ),
                g.applied_index,
                g.commit_index
            );
        }
    }
    if !unreachable.is_empty() {
        println!("unreachable nodes: {}", ids(&unreachable));
    }
    Ok(())
}

/// The newest directory any node answers with, and each node's version.
async fn directory(c: &ClientArgs) -> Result<()> {
    let cl = client(c)?;
    let mut newest = DirectoryImage::default();
    let mut nodes = Vec::new();
    for (i, n) in cl.nodes.iter().enumerate() {
        let img = node_directory(&cl, i).await;
        let routes_with = match AdminClient::new(cl.channel(i))
            .status(hotline_proto::v1::StatusRequest {})
            .await
        {
            Ok(s) => Some(s.into_inner().directory_version),
            Err(_) => None,
        };
        match img {
            Ok(img) => {
                nodes.push(json!({ "id": n.id, "routes_with": routes_with, "has": img.version }));
                if img.version > newest.version {
                    newest = img;
                }
            }
            Err(e) => nodes.push(json!({ "id": n.id, "error": e.message() })),
        }
    }
    if c.json {
        let gs: Vec<Value> = newest
            .groups
            .iter()
            .map(|p| {
                json!({
                    "group_id": p.group_id, "region": p.region,
                    "voters": p.voters, "learners": p.learners,
                })
            })
            .collect();
        println!(
            "{}",
            json!({ "version": newest.version, "groups": gs, "nodes": nodes })
        );
        return Ok(());
    }
    println!("目录 directory version {}", newest.version);
    for p in &newest.groups {
        println!(
            "  {:<20} voters {:<12} learners {}",
            label(p.group_id),
            ids(&p.voters),
            ids(&p.learners)
        );
    }
    for n in &nodes {
        match n.get("error") {
            Some(e) => println!("  node-{:<3} unreachable: {}", n["id"], e),
            None => println!(
                "  node-{:<3} routes with version {}",
                n["id"], n["routes_with"]
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotline_proto::v1::Placement;

    #[test]
    fn the_directory_shows_a_change_in_any_order_and_only_exactly() {
        let img = DirectoryImage {
            version: 7,
            groups: vec![Placement {
                group_id: 310114,
                region: "310114".into(),
                voters: vec![7, 4, 6],
                learners: vec![5],
            }],
        };
        let change = |voters: Vec<u64>, learners: Vec<u64>| ConfChangeResponse {
            group_id: 310114,
            voters,
            learners,
            ..Default::default()
        };
        assert!(shows(&img, &change(vec![4, 6, 7], vec![5])));
        // The learner not placed yet, a voter still listed, another group.
        assert!(!shows(&img, &change(vec![4, 6, 7], vec![])));
        assert!(!shows(&img, &change(vec![4, 6], vec![5])));
        assert!(!shows(
            &img,
            &ConfChangeResponse {
                group_id: 310101,
                ..change(vec![4, 6, 7], vec![5])
            }
        ));
    }
}
