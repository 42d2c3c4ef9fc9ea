//! Federated queries: national and provincial views without a central
//! database (DESIGN.md §5). A query fans out down the group tree of the
//! directory, each group answers for its own tickets, answers are summed on
//! the way up, and every level carries the caller's deadline: a subtree that
//! does not answer in time is named in `missing`, never silently left out.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;
use hotline_federation::topology::{group_region, try_group_id};
use hotline_proto::v1::federation_client::FederationClient;
use hotline_proto::v1::{
    CountShare, DeadlineState, FederatedQueryRequest, FederatedQueryResponse, ListTicketsRequest,
    RegionCount,
};
use tonic::Status;

use crate::core::{Query, QueryAnswer};
use crate::server::{Handle, now_ms, redact};

/// Longest deadline a caller may ask for.
pub const MAX_QUERY_MS: i64 = 30_000;
/// Time kept back at each level to merge and answer before the caller's deadline.
const MERGE_MARGIN_MS: i64 = 150;
/// Most tickets or transfer records a list query returns.
pub const MAX_LIST: u32 = 1_000;

pub async fn query(
    h: &Handle,
    mut req: FederatedQueryRequest,
) -> Result<FederatedQueryResponse, Status> {
    let now = now_ms();
    if req.deadline_ms == 0 {
        req.deadline_ms = now + 5_000;
    }
    if req.deadline_ms <= now || req.deadline_ms > now + MAX_QUERY_MS {
        return Err(Status::invalid_argument(format!(
            "deadline_ms: must be in the next {MAX_QUERY_MS} ms"
        )));
    }
    if !matches!(req.what.as_str(), "counts" | "overdue" | "cross_province") {
        return Err(Status::invalid_argument(
            "what: must be counts, overdue or cross_province",
        ));
    }
    if req.limit > MAX_LIST {
        return Err(Status::invalid_argument(format!(
            "limit: at most {MAX_LIST}"
        )));
    }
    let root = try_group_id(&req.region)
        .filter(|g| h.dir().contains(*g))
        .ok_or_else(|| {
            Status::invalid_argument(format!(
                "region: {:?} is not a group of the directory",
                req.region
            ))
        })?;
    match h.at(root) {
        Ok(g) => Ok(subtree(g, req).await),
        // Not hosted here: ask a member of the root group.
        Err(_) => {
            let timeout = Duration::from_millis((req.deadline_ms - now).max(1) as u64);
            tokio::time::timeout(timeout, ask(h, root, req))
                .await
                .map_err(|_| Status::deadline_exceeded("the root group did not answer in time"))?
        }
    }
}

/// Asks a member of `group` (not hosted here) for its subtree's answer,
/// waiting for each member until the request's deadline: the member
/// answers by then with what it has, so a slow grandchild costs only its
/// own figures, not its whole branch's.
async fn ask(
    h: &Handle,
    group: u64,
    r: FederatedQueryRequest,
) -> Result<FederatedQueryResponse, Status> {
    let left = Duration::from_millis((r.deadline_ms - now_ms()).max(1) as u64);
    h.federation_call_within(group, left, move |ch| {
        let r = r.clone();
        async move {
            FederationClient::new(ch)
                .query(r)
                .await
                .map(|x| x.into_inner())
        }
    })
    .await
}

/// This group's own answer plus its children's, each bounded by the deadline.
fn subtree(
    g: Handle,
    req: FederatedQueryRequest,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = FederatedQueryResponse> + Send>> {
    Box::pin(async move {
        let mut out = FederatedQueryResponse::default();
        let me = group_region(g.group_id);
        // Our own read is bounded by the deadline too: a group that lost its
        // quorum must not hold the whole answer past it. It runs alongside
        // the children's: waited for first, it would leave them no time.
        let left = (req.deadline_ms - MERGE_MARGIN_MS - now_ms()).max(1) as u64;
        let mine = async {
            tokio::time::timeout(Duration::from_millis(left), own(&g, &req))
                .await
                .unwrap_or_else(|_| Err(Status::deadline_exceeded("own group")))
        };
        let children = g.dir().child_groups(g.group_id);
        let asks = children.into_iter().map(|child| {
            let g = g.clone();
            let mut r = req.clone();
            r.region = group_region(child);
            // Leave our own margin to merge and answer.
            r.deadline_ms -= MERGE_MARGIN_MS;
            async move {
                let left = r.deadline_ms - now_ms();
                if left <= 0 {
                    return (child, None);
                }
                let call = async {
                    if let Ok(local) = g.at(child) {
                        Ok(subtree(local, r).await)
                    } else {
                        ask(&g, child, r).await
                    }
                };
                match tokio::time::timeout(Duration::from_millis(left as u64), call).await {
                    Ok(Ok(resp)) => (child, Some(resp)),
                    _ => (child, None),
                }
            }
        });
        let (mine, theirs) = tokio::join!(mine, join_all(asks));
        match mine {
            Ok(mine) => {
                merge(&mut out, mine);
                out.answered.push(me.clone());
            }
            Err(_) => out.missing.push(me.clone()),
        }
        for (child, resp) in theirs {
            match resp {
                Some(r) => merge(&mut out, r),
                // The whole subtree's figures are missing, so name every
                // region in it, not only the one we could not reach.
                None => {
                    let mut stack = vec![child];
                    while let Some(x) = stack.pop() {
                        out.missing.push(group_region(x));
                        stack.extend(g.dir().child_groups(x));
                    }
                }
            }
        }
        out.answered.sort();
        out.missing.sort();
        bound_lists(&mut out, if req.limit == 0 { 100 } else { req.limit });
        out
    })
}

/// Each group answers up to `limit` items: a subtree's list is the first
/// `limit` of their union, in the groups' own order (the nearest deadline
/// first), so an answer stays bounded however many groups the tree has.
fn bound_lists(out: &mut FederatedQueryResponse, limit: u32) {
    out.tickets
        .sort_by_key(|t| (crate::core::tickets::worklist_order(t), t.id.clone()));
    out.tickets.truncate(limit as usize);
    out.transfers.truncate(limit as usize);
}

/// One group's answer from its own state (a linearizable read).
async fn own(g: &Handle, req: &FederatedQueryRequest) -> Result<FederatedQueryResponse, Status> {
    let region = group_region(g.group_id);
    let mut out = FederatedQueryResponse::default();
    let limit = if req.limit == 0 { 100 } else { req.limit };
    match req.what.as_str() {
        "counts" => {
            let QueryAnswer::Report(rep) = g
                .read(Query::Report {
                    from_ms: 0,
                    to_ms: now_ms() + 1,
                    basic_weight_permille: 0,
                })
                .await?
            else {
                return Err(Status::internal("unexpected answer"));
            };
            out.total = rep.total;
            out.in_transit = rep.in_transit;
            // By district, so a city group serving districts without a
            // group of their own shows each; a group with no tickets shows
            // itself at 0.
            out.by_region = rep
                .by_district
                .iter()
                .map(|d| RegionCount {
                    region: d.key.clone(),
                    key: "total".into(),
                    count: d.count,
                })
                .collect();
            if out.by_region.is_empty() {
                out.by_region.push(RegionCount {
                    region,
                    key: "total".into(),
                    count: 0,
                });
            }
            out.by_kind = rep.by_kind;
            out.by_category = rep.by_category;
            out.by_status = rep.by_status;
        }
        "overdue" => {
            let QueryAnswer::Tickets {
                tickets, matched, ..
            } = g
                .read(Query::List {
                    filter: ListTicketsRequest {
                        limit,
                        deadline: DeadlineState::Overdue as i32,
                        by_deadline: true,
                        ..Default::default()
                    },
                    now_ms: now_ms(),
                })
                .await?
            else {
                return Err(Status::internal("unexpected answer"));
            };
            // All the overdue tickets, of which the list holds the first
            // `limit` (the nearest deadlines).
            out.total = matched;
            out.by_region.push(RegionCount {
                region,
                key: "overdue".into(),
                count: out.total,
            });
            out.tickets = tickets.into_iter().map(redact).collect();
        }
        _ => {
            let QueryAnswer::TransferList {
                mut records,
                matched,
            } = g
                .read(Query::Transfers {
                    cross_province_only: true,
                    limit: limit as usize,
                })
                .await?
            else {
                return Err(Status::internal("unexpected answer"));
            };
            // Only the national group's custody log is the cross-province
            // list: every case, of which the list holds the first `limit`.
            if g.group_id == hotline_federation::topology::NATIONAL_GROUP {
                out.total = matched;
            } else {
                records.clear();
            }
            for r in &mut records {
                crate::forwarder::mask_record(r);
            }
            out.by_region.push(RegionCount {
                region,
                key: "cross_province".into(),
                count: out.total,
            });
            out.transfers = records;
        }
    }
    Ok(out)
}

fn merge(into: &mut FederatedQueryResponse, from: FederatedQueryResponse) {
    into.answered.extend(from.answered);
    into.missing.extend(from.missing);
    // Two groups may count the same district (tickets about a place no
    // region group serves stay where they were accepted): one row each.
    // Rows in region order.
    let mut rows: BTreeMap<(String, String), u64> = BTreeMap::new();
    for r in into.by_region.drain(..).chain(from.by_region) {
        *rows.entry((r.region, r.key)).or_default() += r.count;
    }
    into.by_region = rows
        .into_iter()
        .map(|((region, key), count)| RegionCount { region, key, count })
        .collect();
    into.total += from.total;
    into.in_transit += from.in_transit;
    let sum = |a: &mut Vec<CountShare>, b: Vec<CountShare>| {
        let mut m: BTreeMap<String, u64> = a.drain(..).map(|c| (c.key, c.count)).collect();
        for c in b {
            *m.entry(c.key).or_default() += c.count;
        }
        let total: u64 = m.values().sum();
        let mut v: Vec<CountShare> = m
            .into_iter()
            .map(|(key, count)| CountShare {
                key,
                count,
                permille: crate::core::kpi::rate(count, total).permille,
            })
            .collect();
        v.sort_by(|x, y| y.count.cmp(&x.count).then_with(|| x.key.cmp(&y.key)));
        *a = v;
    };
    sum(&mut into.by_kind, from.by_kind);
    sum(&mut into.by_category, from.by_category);
    sum(&mut into.by_status, from.by_status);
    into.tickets.extend(from.tickets);
    into.transfers.extend(from.transfers);
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotline_proto::v1::Ticket;

    /// Two regions' counts: totals and the volume sections add up key by
    /// key, the shares are those of the sum, and who answered is kept.
    #[test]
    fn counts_add_up_key_by_key_with_the_shares_of_the_sum() {
        let share = |key: &str, count: u64, permille: u32| CountShare {
            key: key.into(),
            count,
            permille,
        };
        let mut out = FederatedQueryResponse {
            answered: vec!["310114".into()],
            total: 3,
            in_transit: 1,
            by_kind: vec![share("complaint", 2, 667), share("report", 1, 333)],
            by_category: vec![share("环境保护", 3, 1000)],
            by_status: vec![share("accepted", 3, 1000)],
            ..Default::default()
        };
        merge(
            &mut out,
            FederatedQueryResponse {
                answered: vec!["310101".into()],
                missing: vec!["320585".into()],
                total: 1,
                by_kind: vec![share("report", 1, 1000)],
                by_category: vec![share("城市管理", 1, 1000)],
                by_status: vec![share("closed", 1, 1000)],
                ..Default::default()
            },
        );
        assert_eq!((out.total, out.in_transit), (4, 1));
        // By region, one row per district, summed when two groups count
        // the same one, in region order.
        let row = |region: &str, count: u64| RegionCount {
            region: region.into(),
            key: "total".into(),
            count,
        };
        let mut rows = FederatedQueryResponse {
            by_region: vec![row("310114", 2), row("110101", 1)],
            ..Default::default()
        };
        merge(
            &mut rows,
            FederatedQueryResponse {
                by_region: vec![row("110101", 1), row("310101", 1)],
                ..Default::default()
            },
        );
        assert_eq!(
            rows.by_region,
            [row("110101", 2), row("310101", 1), row("310114", 2)]
        );
        assert_eq!(out.answered, ["310114", "310101"]);
        assert_eq!(out.missing, ["320585"]);
        // Largest first, ties by key.
        assert_eq!(
            out.by_kind,
            [share("complaint", 2, 500), share("report", 2, 500)]
        );
        assert_eq!(
            out.by_category,
            [share("环境保护", 3, 750), share("城市管理", 1, 250)]
        );
        assert_eq!(
            out.by_status,
            [share("accepted", 3, 750), share("closed", 1, 250)]
        );
    }

    /// Two groups' overdue lists, each at the limit: the merged answer
    /// keeps `limit` items, the most pressing of both.
    #[test]
    fn a_merged_list_is_bounded_by_the_limit() {
        let list = |group: &str, deadlines: &[i64]| FederatedQueryResponse {
            tickets: deadlines
                .iter()
                .map(|&d| Ticket {
                    id: format!("{group}-{d}"),
                    deadline_ms: d,
                    ..Default::default()
                })
                .collect(),
            total: deadlines.len() as u64,
            ..Default::default()
        };
        let mut out = list("310114", &[10, 30, 50]);
        merge(&mut out, list("320585", &[20, 40, 0]));
        assert_eq!(out.tickets.len(), 6);
        bound_lists(&mut out, 3);
        let ids: Vec<_> = out.tickets.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["310114-10", "320585-20", "310114-30"]);
        assert_eq!(out.total, 6, "the count still covers every answer");
    }
}
