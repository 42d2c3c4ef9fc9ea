//! `hotline transfers` (the national cross-province list) and `hotline query`
//! (federated figures: fanned out down the tree, with the regions that did
//! not answer named).

use anyhow::{Result, anyhow};
use clap::Subcommand;
use hotline_node::core::lifecycle::{status_name, status_zh};
use hotline_node::core::tickets::kind_name;
use hotline_proto::v1::{FederatedQueryRequest, TransferRecord, TransferState};
use serde_json::{Value, json};

use crate::report::{pad, width};
use crate::ticket_cli::{ClientArgs, client, client_within, cst, group_for, status_err};

#[derive(Subcommand)]
pub enum QueryCmd {
    /// Ticket counts by region, kind, category and status.
    Counts {
        #[command(flatten)]
        c: ClientArgs,
        /// Root of the query ("" = national).
        #[arg(long, default_value = "")]
        region: String,
        /// Deadline in milliseconds.
        #[arg(long, default_value_t = 3_000)]
        deadline_ms: i64,
    },
    /// Overdue (red) tickets under a region.
    Overdue {
        #[command(flatten)]
        c: ClientArgs,
        #[arg(long, default_value = "")]
        region: String,
        #[arg(long, default_value_t = 3_000)]
        deadline_ms: i64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Cross-province cases, as the national group relayed them.
    CrossProvince {
        #[command(flatten)]
        c: ClientArgs,
        #[arg(long, default_value_t = 3_000)]
        deadline_ms: i64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

fn state_name(s: i32) -> &'static str {
    match TransferState::try_from(s).unwrap_or(TransferState::Unspecified) {
        TransferState::Pending => "pending",
        TransferState::Forwarded => "forwarded",
        TransferState::Delivered => "delivered",
        TransferState::Refused => "refused",
        TransferState::Unspecified => "unspecified",
    }
}

fn state_zh(s: i32) -> &'static str {
    match TransferState::try_from(s).unwrap_or(TransferState::Unspecified) {
        TransferState::Pending => "待转出",
        TransferState::Forwarded => "转送中",
        TransferState::Delivered => "已送达",
        TransferState::Refused => "被退回",
        TransferState::Unspecified => "-",
    }
}

fn record_json(r: &TransferRecord, now_ms: i64) -> Value {
    let env = r.envelope.clone().unwrap_or_default();
    let t = env.ticket.clone().unwrap_or_default();
    json!({
        "transfer_id": env.transfer_id, "ticket_id": t.id, "kind": kind_name(t.kind),
        "category": t.category, "origin_group": env.origin_group,
        "destination_group": env.destination_group, "destination_region": env.destination_region,
        "state": state_name(r.state), "hops": env.hops, "next_group": r.next_group,
        "sent_at_ms": env.sent_at_ms,
        "age_ms": now_ms - env.sent_at_ms, "refusal": r.refusal, "cross_province": r.cross_province,
        "send_back": env.send_back, "reason": env.reason,
    })
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// The header of a table of transfer records: Chinese beside each
/// column's identifier (`--json`'s names are the records' fields).
fn records_header() -> String {
    use crate::labels::{both, transfer_column_zh};
    let h = |key: &str| both(transfer_column_zh(key), key);
    format!(
        "{} {} {} {} {} {}  {}",
        pad(&h("TICKET"), 26),
        pad(&h("FROM"), 10),
        pad(&h("TO"), 10),
        pad(&h("STATE"), 17),
        pad(&h("SENT"), 17),
        crate::report::pad_left(&h("AGE"), 10),
        h("HOPS")
    )
}

fn print_records(rs: &[TransferRecord]) {
    let now = now_ms();
    println!("{}", records_header());
    for r in rs {
        let env = r.envelope.clone().unwrap_or_default();
        let t = env.ticket.clone().unwrap_or_default();
        let age_min = (now - env.sent_at_ms) / 60_000;
        // By name, as a supervisor reads a route: 嘉定区→全国→太仓市. The
        // envelope names the hops up to this group; where this group
        // passed it on is the record's own (`next_group`, once acknowledged).
        let on =
            (r.next_group != 0 && env.hops.last() != Some(&r.next_group)).then_some(r.next_group);
        let hops: Vec<String> = env
            .hops
            .iter()
            .chain(on.iter())
            .map(|&h| hotline_federation::group_name(h))
            .collect();
        println!(
            "{:<26} {:<10} {:<10} {} {:<17} {:>8}分  {}",
            t.id,
            env.origin_group,
            env.destination_group,
            pad(
                &format!("{} {}", state_zh(r.state), state_name(r.state)),
                17
            ),
            cst(env.sent_at_ms),
            age_min,
            hops.join("→")
        );
        if !r.refusal.is_empty() {
            println!("    退回原因: {}", r.refusal);
        }
        if env.send_back {
            // Sent back by the center it was transferred to (退回首接).
            println!("    退回首接: {}", env.reason);
        }
    }
}

/// `hotline transfers [--region R] [--all]`: a group's custody log; by
/// default the national group's cross-province list.
pub async fn transfers(c: &ClientArgs, region: &str, all: bool, limit: u32) -> Result<()> {
    let cl = client(c)?;
    let group = group_for(&cl, region)?;
    let rs = cl.transfers(group, !all, limit).await.map_err(status_err)?;
    if c.json {
        let now = now_ms();
        println!(
            "{}",
            json!({ "group": group, "records": rs.iter().map(|r| record_json(r, now)).collect::<Vec<_>>() })
        );
    } else {
        print_records(&rs);
    }
    Ok(())
}

pub async fn query(cmd: QueryCmd) -> Result<()> {
    let (c, what, region, deadline_ms, limit) = match cmd {
        QueryCmd::Counts {
            c,
            region,
            deadline_ms,
        } => (c, "counts", region, deadline_ms, 0),
        QueryCmd::Overdue {
            c,
            region,
            deadline_ms,
            limit,
        } => (c, "overdue", region, deadline_ms, limit),
        QueryCmd::CrossProvince {
            c,
            deadline_ms,
            limit,
        } => (c, "cross_province", String::new(), deadline_ms, limit),
    };
    if !(1..=30_000).contains(&deadline_ms) {
        return Err(anyhow!("--deadline-ms: must be 1 to 30000"));
    }
    // The query answers by its deadline, with the regions that did not:
    // the client waits for that answer at least, whatever `--timeout` says.
    let wait = std::time::Duration::from_secs(c.timeout_s)
        .max(std::time::Duration::from_millis(deadline_ms as u64 + 5_000));
    let cl = client_within(&c, wait)?;
    let r = cl
        .federated_query(FederatedQueryRequest {
            region: region.clone(),
            deadline_ms: now_ms() + deadline_ms,
            what: what.into(),
            limit,
        })
        .await
        .map_err(status_err)?;
    if c.json {
        let now = now_ms();
        println!(
            "{}",
            json!({
                "region": region, "what": what, "total": r.total, "in_transit": r.in_transit,
                "answered": r.answered, "missing": r.missing,
                "refused": r.refused.iter().map(|x| json!({"region": x.region, "node": x.node, "dropped": x.dropped, "example": x.example})).collect::<Vec<_>>(),
                // An answer taken only in part is not one to read as whole.
                "complete": r.missing.is_empty() && r.refused.is_empty(),
                "by_region": r.by_region.iter().map(|x| json!({"region": x.region, "key": x.key, "count": x.count})).collect::<Vec<_>>(),
                "by_kind": r.by_kind.iter().map(|x| json!({"key": x.key, "count": x.count, "permille": x.permille})).collect::<Vec<_>>(),
                "by_category": r.by_category.iter().map(|x| json!({"key": x.key, "count": x.count, "permille": x.permille})).collect::<Vec<_>>(),
                "by_status": r.by_status.iter().map(|x| json!({"key": x.key, "count": x.count, "permille": x.permille})).collect::<Vec<_>>(),
                "tickets": r.tickets.iter().map(crate::ticket_cli::ticket_json).collect::<Vec<_>>(),
                "transfers": r.transfers.iter().map(|t| record_json(t, now)).collect::<Vec<_>>(),
            })
        );
        return Ok(());
    }
    let label = |r: &str| hotline_federation::regions().label(r);
    println!("联合查询 {} @ {}: 共 {} 件", what, label(&region), r.total);
    if r.in_transit > 0 {
        println!(
            "在途 in transit: {} 件 (转出、尚未确认送达，不计入合计 — counted where delivered)",
            r.in_transit
        );
    }
    println!(
        "已应答 answered: {}",
        r.answered
            .iter()
            .map(|x| label(x))
            .collect::<Vec<_>>()
            .join(" ")
    );
    if r.missing.is_empty() {
        println!("未应答 missing: 无 (complete)");
    } else {
        println!(
            "未应答 missing: {}  ← 结果不完整 (partial)",
            r.missing
                .iter()
                .map(|x| label(x))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    // A group answered for regions outside its subtree: what it said of
    // them was dropped, and its own figures are to be read with care.
    for x in &r.refused {
        println!(
            "部分拒收 refused: {} (node {}) 答了辖区外的 {} 项，已丢弃 (dropped rows outside its subtree, e.g. {})  ← 结果不完整 (partial)",
            label(&x.region),
            x.node,
            x.dropped,
            label(&x.example)
        );
    }
    let labels: Vec<String> = r.by_region.iter().map(|x| label(&x.region)).collect();
    let label_w = labels.iter().map(|l| width(l)).max().unwrap_or(0);
    for (x, l) in r.by_region.iter().zip(&labels) {
        println!("  {} {:>8}", pad(l, label_w), x.count);
    }
    if !r.by_kind.is_empty() {
        // The same sections, words and shares as `hotline report`.
        let mut o = String::new();
        crate::report::volume_sections(&mut o, &r.by_kind, &r.by_category, &r.by_status);
        print!("{o}");
    }
    for t in &r.tickets {
        println!(
            "  {} {} {} {}",
            t.id,
            crate::labels::both(status_zh(t.status), status_name(t.status)),
            t.lead_unit,
            cst(t.deadline_ms)
        );
    }
    if !r.transfers.is_empty() {
        print_records(&r.transfers);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The columns read in Chinese beside their identifiers (they were
    /// English only), each word where its column starts.
    #[test]
    fn transfer_columns_in_chinese_beside_the_identifiers() {
        let h = records_header();
        assert!(h.starts_with("工单编号 TICKET "), "{h}");
        for says in [
            " 转自 FROM ",
            " 转至 TO ",
            " 状态 STATE ",
            " 发出时间 SENT ",
            " 已历时 AGE",
            " 经由 HOPS",
        ] {
            assert!(h.contains(says), "{says:?} not in {h:?}");
        }
        // Where a row's columns start (26, 10, 10, 17, 17 and 10 columns).
        let at = |word: &str| width(&h[..h.find(word).expect(word)]);
        assert_eq!(at("转自"), 27);
        assert_eq!(at("转至"), 38);
        assert_eq!(at("状态"), 49);
        assert_eq!(at("发出时间"), 67);
        assert_eq!(at("经由"), 97);
    }
}
