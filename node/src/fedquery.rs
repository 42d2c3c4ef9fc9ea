//! Federated queries: national and provincial views without a central
//! database (DESIGN.md §5). A query fans out down the group tree of the
//! directory, each group answers for its own tickets, answers are summed on
//! the way up, and every level carries the caller's deadline: a subtree that
//! does not answer in time is named in `missing`, never silently left out.
//!
//! A group answers for its own subtree only: the asking group keeps of an
//! answer what lies below the group it asked ([`keep_within`]) and names
//! the answer in `refused` when it had to drop anything, so one node cannot
//! add to or fake another region's figures.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;
use hotline_federation::directory::in_subtree;
use hotline_federation::topology::{group_region, try_group_id};
use hotline_proto::v1::federation_client::FederationClient;
use hotline_proto::v1::{
    CountShare, DeadlineState, FederatedQueryRequest, FederatedQueryResponse, ListTicketsRequest,
    RefusedRows, RegionCount,
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
        // Not hosted here: ask a member of the root group, and take of its
        // answer what lies in the root's subtree, as a parent does.
        Err(_) => {
            let timeout = Duration::from_millis((req.deadline_ms - now).max(1) as u64);
            let (node, mut resp) = tokio::time::timeout(timeout, ask(h, root, req))
                .await
                .map_err(|_| {
                    Status::deadline_exceeded("the root group did not answer in time")
                })??;
            if let Some(r) = refuse_outside(root, node, &mut resp) {
                resp.refused.push(r);
                resp.refused.sort_by(|a, b| a.region.cmp(&b.region));
            }
            Ok(resp)
        }
    }
}

/// Asks a member of `group` (not hosted here) for its subtree's answer,
/// waiting for each member until the request's deadline: the member
/// answers by then with what it has, so a slow grandchild costs only its
/// own figures, not its whole branch's. With the node that answered.
async fn ask(
    h: &Handle,
    group: u64,
    r: FederatedQueryRequest,
) -> Result<(u64, FederatedQueryResponse), Status> {
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
                        Ok((g.node_id, subtree(local, r).await))
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
                Some((node, mut r)) => {
                    if let Some(refused) = refuse_outside(child, node, &mut r) {
                        out.refused.push(refused);
                    }
                    merge(&mut out, r);
                }
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
        out.refused.sort_by(|a, b| a.region.cmp(&b.region));
        bound_lists(&mut out, if req.limit == 0 { 100 } else { req.limit });
        out
    })
}

/// Keeps of `group`'s answer (given by `node`) what lies in its subtree
/// ([`keep_within`]); when anything was dropped, logs it once for the
/// answer and says so for the caller.
fn refuse_outside(
    group: u64,
    node: u64,
    answer: &mut FederatedQueryResponse,
) -> Option<RefusedRows> {
    let region = group_region(group);
    let dropped = keep_within(&region, answer)?;
    tracing::warn!(
        group,
        node,
        dropped = dropped.count,
        example = %dropped.example,
        "federated query: answer named regions outside the group's subtree; dropped them"
    );
    Some(RefusedRows {
        region,
        node,
        dropped: dropped.count,
        example: dropped.example,
    })
}

/// What [`keep_within`] dropped of an answer.
#[derive(Debug, Default, PartialEq, Eq)]
struct Dropped {
    /// Rows, names, tickets and records.
    count: u64,
    /// The region of the first of them (bounded: it is the answerer's text).
    example: String,
}

impl Dropped {
    /// Counts one item of `region` as dropped; false, for `retain`.
    fn refuse(&mut self, region: &str) -> bool {
        if self.count == 0 {
            self.example = region.chars().take(32).collect();
        }
        self.count += 1;
        false
    }
}

/// Keeps of an answer for the subtree of the group whose region is `top`
/// only what lies in that subtree (by the directory's tree: a region under
/// `top`, [`in_subtree`]), so a child cannot add to or fake the figures of
/// a region it does not answer for; `None` when nothing had to go.
///
/// - `answered`, `missing` and `refused` name groups of the subtree;
/// - `by_region` rows are of regions in the subtree: an honest group counts
///   a ticket in the district of its place when that lies in its region,
///   else in its accepting center's, which does (`kpi::district_of`). A
///   dropped row's count comes off `total` too, which is the sum of the
///   rows in an honest answer (every query kind), so the total does not
///   keep what the rows no longer show. The volume sections (`by_kind`,
///   `by_category`, `by_status`) and `in_transit` name no region and are
///   taken as they are;
/// - tickets are about a place in the subtree or were accepted in it (a
///   ticket transferred here keeps its accepting center's region; one
///   refused or sent back, or about a place no group serves, keeps a place
///   elsewhere);
/// - transfer records lie wholly in it, both ends: only the national
///   group's custody log lists cross-province cases, and no group below
///   national answers for both provinces of one.
fn keep_within(top: &str, answer: &mut FederatedQueryResponse) -> Option<Dropped> {
    let mut d = Dropped::default();
    let within = |region: &str| in_subtree(top, region);
    answer.answered.retain(|n| within(n) || d.refuse(n));
    answer.missing.retain(|n| within(n) || d.refuse(n));
    answer
        .refused
        .retain(|r| within(&r.region) || d.refuse(&r.region));
    let mut off_total = 0u64;
    answer.by_region.retain(|r| {
        within(&r.region) || {
            off_total = off_total.saturating_add(r.count);
            d.refuse(&r.region)
        }
    });
    answer.total = answer.total.saturating_sub(off_total);
    answer.tickets.retain(|t| {
        let place = t.location.as_ref().map_or("", |l| l.code.as_str());
        within(place)
            || within(&t.region)
            || d.refuse(if place.is_empty() { &t.region } else { place })
    });
    answer.transfers.retain(|r| match r.envelope.as_ref() {
        Some(e) => {
            let from = group_region(e.origin_group);
            let outside = [from.as_str(), &e.destination_region]
                .into_iter()
                .find(|x| !within(x));
            outside.is_none_or(|x| d.refuse(x))
        }
        // No envelope: no place, so in no subtree.
        None => d.refuse(""),
    });
    (d.count > 0).then_some(d)
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
    into.refused.extend(from.refused);
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

    fn row(region: &str, key: &str, count: u64) -> RegionCount {
        RegionCount {
            region: region.into(),
            key: key.into(),
            count,
        }
    }

    /// 上海 (31) asked for its subtree answers with a row of its own
    /// district 嘉定 (kept), one of 江苏's 太仓 (dropped, and its count off
    /// the total), names 太仓 as missing (dropped) and 嘉定 as answered
    /// (kept): the parent adds only what lies under the group it asked.
    #[test]
    fn a_childs_rows_and_names_outside_its_subtree_are_dropped() {
        let mut a = FederatedQueryResponse {
            answered: vec!["31".into(), "310114".into()],
            missing: vec!["3101".into(), "320585".into()],
            by_region: vec![
                row("310114", "total", 5),
                row("320585", "total", 100),
                row("31", "total", 1),
            ],
            total: 106,
            ..Default::default()
        };
        let d = keep_within("31", &mut a).expect("something dropped");
        assert_eq!(
            d,
            Dropped {
                count: 2,
                example: "320585".into()
            }
        );
        assert_eq!(a.answered, ["31", "310114"]);
        assert_eq!(a.missing, ["3101"], "a name outside the subtree goes");
        assert_eq!(
            a.by_region,
            [row("310114", "total", 5), row("31", "total", 1)]
        );
        assert_eq!(a.total, 6, "the dropped row's count is not in the total");

        // An honest answer keeps everything, and says nothing was dropped.
        let honest = a.clone();
        assert_eq!(keep_within("31", &mut a), None);
        assert_eq!(a, honest);
        // National's subtree is everything.
        let mut all = FederatedQueryResponse {
            by_region: vec![row("320585", "total", 1), row("310114", "total", 1)],
            total: 2,
            ..Default::default()
        };
        assert_eq!(keep_within("", &mut all), None);
        assert_eq!(all.total, 2);
    }

    /// A district asked for its own subtree: its own row and a street of
    /// its own are kept; a neighbouring district's row, a grandchild's
    /// refusal naming a region outside, an overdue ticket of another
    /// province and a cross-province record are dropped; a ticket
    /// accepted here about a place no group serves, and one transferred
    /// here from elsewhere, are kept.
    #[test]
    fn a_districts_answer_keeps_its_own_and_loses_its_neighbours() {
        let ticket = |id: &str, region: &str, place: &str| Ticket {
            id: id.into(),
            region: region.into(),
            location: Some(hotline_proto::v1::Location {
                code: place.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let record = |origin: u64, dest: &str| hotline_proto::v1::TransferRecord {
            envelope: Some(hotline_proto::v1::TransferEnvelope {
                origin_group: origin,
                destination_region: dest.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut a = FederatedQueryResponse {
            answered: vec!["310114".into()],
            by_region: vec![
                row("310114", "overdue", 3),
                row("310114001", "overdue", 1),
                row("310101", "overdue", 7),
            ],
            total: 11,
            tickets: vec![
                ticket("stays", "310114", "110101001"),
                ticket("came", "320585", "310114002"),
                ticket("faked", "440305", "440305001"),
            ],
            transfers: vec![record(310_114, "320585102")],
            refused: vec![RefusedRows {
                region: "310101".into(),
                node: 4,
                dropped: 1,
                example: "x".into(),
            }],
            ..Default::default()
        };
        let d = keep_within("310114", &mut a).unwrap();
        assert_eq!(d.count, 4, "row, refusal, ticket, record");
        assert_eq!(d.example, "310101");
        assert_eq!(
            a.by_region,
            [row("310114", "overdue", 3), row("310114001", "overdue", 1)]
        );
        assert_eq!(a.total, 4);
        let ids: Vec<_> = a.tickets.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["stays", "came"]);
        assert!(a.transfers.is_empty() && a.refused.is_empty());

        // The caller sees it: the group asked, the node that answered,
        // how much went and an example.
        let mut b = FederatedQueryResponse {
            by_region: vec![row("440305", "total", 9)],
            ..Default::default()
        };
        assert_eq!(
            refuse_outside(310_114, 3, &mut b),
            Some(RefusedRows {
                region: "310114".into(),
                node: 3,
                dropped: 1,
                example: "440305".into(),
            })
        );
        assert!(b.by_region.is_empty());
        // National's cross-province list, asked of a national member by a
        // node that does not host it, is national's to give.
        let mut c = FederatedQueryResponse {
            transfers: vec![record(310_114, "320585102")],
            ..Default::default()
        };
        assert_eq!(
            refuse_outside(hotline_federation::topology::NATIONAL_GROUP, 1, &mut c),
            None
        );
        assert_eq!(c.transfers.len(), 1);
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
