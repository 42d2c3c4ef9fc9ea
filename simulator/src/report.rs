//! Writing a run's report: `report.json` (the [`Report`] as pretty JSON) and
//! `report.html`, a self-contained page for an operator — inline CSS and
//! inline SVG, no scripts, no external files, readable from disk without a
//! server. Labels are Chinese with English in parentheses.

use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;

use crate::model::{Backlog, FaultEvent, Latency, MissedDeadline, Report, SimMs};
use crate::schedule::{self, FaultSpan, format_duration};

/// Rows of the missed-deadline and fault-event tables shown at most.
const TABLE_ROWS: usize = 200;
/// Fault rows drawn in the timeline at most.
const TIMELINE_ROWS: usize = 40;
/// Links drawn individually in the backlog plot; the rest are summed.
const BACKLOG_LINES: usize = 8;
/// Points per polyline at most (peaks kept when thinning).
const MAX_POINTS: usize = 1_200;

const MINUTE_MS: SimMs = 60_000;
const HOUR_MS: SimMs = 60 * MINUTE_MS;

/// Writes `DIR/report.json` (pretty JSON of the report) and
/// `DIR/report.html` ([`render_html`]); creates `DIR` (and its parents).
pub fn write(report: &Report, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut json = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
    json.push('\n');
    std::fs::write(dir.join("report.json"), json)?;
    std::fs::write(dir.join("report.html"), render_html(report))?;
    Ok(())
}

/// p50/p90/p99/max (and the count) of a histogram of milliseconds; all zero
/// for an empty histogram.
pub fn latency(h: &Histogram<u64>) -> Latency {
    if h.is_empty() {
        return Latency::default();
    }
    Latency {
        count: h.len(),
        p50_ms: h.value_at_quantile(0.50) as f64,
        p90_ms: h.value_at_quantile(0.90) as f64,
        p99_ms: h.value_at_quantile(0.99) as f64,
        max_ms: h.max() as f64,
    }
}

/// The HTML page of a report: header (seed, topology, durations, speed,
/// digest, the command that reproduces the run), invariants, counts,
/// latency tables, four inline SVG plots — (a) fault timeline, (b)
/// cross-province backlog per link over time, (c) arrivals per hour, (d)
/// transfer latency — the fault events, and the first 200 missed deadlines.
pub fn render_html(report: &Report) -> String {
    let spans = schedule::spans(&report.faults);
    let end = time_end(report);
    let mut h = String::with_capacity(64 * 1024);
    let ok = report.invariants.violation.is_none() && invariant_rows(report).iter().all(|r| r.2);
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>仿真报告 (simulation report) — 种子 (seed) {seed} — {topo}</title>
<style>{CSS}</style>
</head>
<body>
<h1>12345 热线联邦仿真报告 <small>(hotline federation simulation report)</small></h1>
"#,
        seed = report.seed,
        topo = esc(&report.topology),
    );
    if ok {
        h.push_str(r#"<p class="banner ok">✓ 全部不变量成立 (all invariants held)</p>"#);
    } else {
        let _ = write!(
            h,
            r#"<p class="banner bad">✗ 不变量被违反 (invariant violated){}</p>"#,
            report
                .invariants
                .violation
                .as_deref()
                .map(|v| format!(": {}", esc(v)))
                .unwrap_or_default()
        );
    }
    h.push('\n');
    header(&mut h, report);
    invariants(&mut h, report);
    counts(&mut h, report);
    latencies(&mut h, report);

    h.push_str("<h2>图表 (plots)</h2>\n");
    figure(
        &mut h,
        "a",
        "故障时间线 (fault timeline)",
        "每行一个故障，从开始到恢复/重启 (one row per fault, from start to heal/restart)",
        &svg_timeline(&spans, end),
    );
    figure(
        &mut h,
        "b",
        "跨省积压 (cross-province backlog per link)",
        "已受理但未送达的转办信封数，按省际链路；阴影为网络分区 (envelopes accepted but not yet delivered, per province pair; shaded: partitions)",
        &svg_backlog(&report.backlog, &spans, end),
    );
    figure(
        &mut h,
        "c",
        "每小时受理量 (arrivals per hour)",
        "按模拟小时统计的受理工单 (tickets accepted per simulated hour)",
        &svg_arrivals(&report.arrivals_per_hour),
    );
    figure(
        &mut h,
        "d",
        "转办延迟 (transfer latency)",
        &format!(
            "从转出到送达，{} 次转办 (from transfer-out to delivery, {} transfers)",
            fmt_int(report.transfer_latency.count),
            fmt_int(report.transfer_latency.count)
        ),
        &svg_latency(&report.transfer_latency),
    );

    fault_events(&mut h, &report.faults);
    missed(&mut h, &report.missed_deadlines);
    h.push_str("</body>\n</html>\n");
    h
}

const CSS: &str = r#"
body{font-family:-apple-system,"PingFang SC","Noto Sans CJK SC","Microsoft YaHei","Segoe UI",sans-serif;margin:2em auto;max-width:1060px;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.5em;margin-bottom:.3em}h1 small{font-weight:normal;color:#666;font-size:.6em}
h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.5em 0;font-size:.92em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f5f5f5;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
table.kv th{width:14em}
.ok{color:#1a7f37}.bad{color:#cf222e}
td.ok,td.bad{font-weight:bold;text-align:center;width:2.5em}
.banner{padding:.6em 1em;border-radius:6px;font-weight:600}
.banner.ok{background:#dafbe1;border:1px solid #1a7f37}
.banner.bad{background:#ffebe9;border:1px solid #cf222e}
pre{background:#f6f8fa;border:1px solid #ddd;border-radius:6px;padding:.7em;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em}
figure{margin:1em 0 1.6em}figcaption{font-size:.9em;color:#444;margin-bottom:.3em}
figcaption b{color:#222}
svg{max-width:100%;height:auto;background:#fff;border:1px solid #eee}
svg text{font-family:inherit;font-size:12px;fill:#333}
.muted{color:#666;font-size:.9em}
"#;

// ---------------------------------------------------------------------------
// Tables

fn header(h: &mut String, r: &Report) {
    h.push_str("<h2>运行 (run)</h2>\n<table class=\"kv\">\n");
    let rows: [(&str, String); 9] = [
        ("种子 (seed)", r.seed.to_string()),
        (
            "拓扑 (topology)",
            format!(
                "{} — {} 节点 (nodes), {} 组 (groups), {} 副本 (replicas)",
                esc(&r.topology),
                fmt_int(r.nodes),
                fmt_int(r.groups),
                fmt_int(r.replicas)
            ),
        ),
        (
            "模拟时长 (simulated duration)",
            esc(&format!(
                "{} ({:.1} h)",
                format_duration(r.simulated_ms),
                r.simulated_ms as f64 / HOUR_MS as f64
            )),
        ),
        ("实际耗时 (wall time)", esc(&fmt_wall(r.wall_ms))),
        ("线程 (shards)", fmt_int(r.shards)),
        ("事件 (events)", fmt_int(r.events)),
        (
            "事件/秒 (events/s)",
            fmt_int(r.events_per_sec.round().max(0.0) as u64),
        ),
        (
            "状态摘要 (digest)",
            format!("<code>{}</code>", esc(&r.digest)),
        ),
        ("故障事件 (fault events)", fmt_int(r.faults.len() as u64)),
    ];
    for (k, v) in rows {
        let _ = writeln!(h, "<tr><th>{k}</th><td>{v}</td></tr>");
    }
    h.push_str("</table>\n");
    let _ = writeln!(
        h,
        "<p>复现命令 (reproduce this run):</p>\n<pre><code>{}</code></pre>",
        esc(&r.reproduce)
    );
}

/// (Chinese, English, held) per invariant, in the model's order.
fn invariant_rows(r: &Report) -> [(&'static str, &'static str, bool); 8] {
    let i = &r.invariants;
    [
        (
            "已确认工单不丢失",
            "no acknowledged ticket lost",
            i.no_acked_ticket_lost,
        ),
        (
            "每组每任期至多一个领导者",
            "at most one leader per term per group",
            i.one_leader_per_term,
        ),
        (
            "已提交前缀一致",
            "committed prefixes agree",
            i.committed_prefixes_agree,
        ),
        (
            "转办完成后每张工单唯一归属",
            "exactly one owner per ticket once transfers settle",
            i.one_owner_per_ticket,
        ),
        (
            "转办不重复执行",
            "no transfer applied twice",
            i.no_transfer_applied_twice,
        ),
        (
            "链路恢复后转办按时送达",
            "transfers delivered within a bound after heal",
            i.transfers_delivered_after_heal,
        ),
        (
            "事件链校验通过",
            "every event chain verifies",
            i.chains_verify,
        ),
        (
            "区域目录已复制",
            "the directory is replicated (every group placed)",
            i.directory_replicated,
        ),
    ]
}

fn invariants(h: &mut String, r: &Report) {
    h.push_str(
        "<h2>不变量 (invariants)</h2>\n<table>\n<tr><th></th><th>不变量 (invariant)</th><th>说明 (detail)</th></tr>\n",
    );
    let violation = r
        .invariants
        .violation
        .as_deref()
        .map(esc)
        .unwrap_or_default();
    for (zh, en, held) in invariant_rows(r) {
        if held {
            let _ = writeln!(
                h,
                "<tr><td class=\"ok\">✓</td><td>{zh} ({en})</td><td class=\"muted\">成立 (held)</td></tr>"
            );
        } else {
            let _ = writeln!(
                h,
                "<tr><td class=\"bad\">✗</td><td>{zh} ({en})</td><td class=\"bad\">{}</td></tr>",
                if violation.is_empty() {
                    "违反 (violated)".to_string()
                } else {
                    violation.clone()
                }
            );
        }
    }
    h.push_str("</table>\n");
    if !violation.is_empty() {
        let _ = writeln!(
            h,
            "<p class=\"bad\">首个违反 (first violation): {violation}</p>"
        );
    }
}

fn counts(h: &mut String, r: &Report) {
    h.push_str("<h2>计数 (counts)</h2>\n<table>\n");
    let rows = [
        ("受理工单 (tickets accepted)", r.tickets_accepted),
        ("提交命令 (commands committed)", r.commands_committed),
        ("转办 (transfers)", r.transfers),
        (
            "跨省转办 (cross-province transfers)",
            r.cross_province_transfers,
        ),
        (
            "退回首接后派单 (sent back, then dispatched at first contact)",
            r.send_backs,
        ),
        (
            "退单转出后派单 (returned as another region's, transferred, dispatched there)",
            r.moved_from_review,
        ),
        (
            "拒收转办 (transfers refused by their destination)",
            r.transfers_refused,
        ),
        ("发送消息 (messages sent)", r.messages_sent),
        ("丢弃消息 (messages dropped)", r.messages_dropped),
        (
            "错过时限 (deadlines missed)",
            r.missed_deadlines.len() as u64,
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(
            h,
            "<tr><th>{k}</th><td class=\"num\">{}</td></tr>",
            fmt_int(v)
        );
    }
    h.push_str("</table>\n");
}

fn latencies(h: &mut String, r: &Report) {
    h.push_str(
        "<h2>延迟 (latency, simulated time)</h2>\n<table>\n<tr><th></th><th class=\"num\">次数 (count)</th>\
         <th class=\"num\">p50</th><th class=\"num\">p90</th><th class=\"num\">p99</th><th class=\"num\">最大 (max)</th></tr>\n",
    );
    for (name, l) in [
        (
            "提交 (commit): 提议到提交 (proposal to commit)",
            &r.commit_latency,
        ),
        (
            "转办 (transfer): 转出到送达 (transfer-out to delivery)",
            &r.transfer_latency,
        ),
    ] {
        let _ = writeln!(
            h,
            "<tr><th>{name}</th><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            fmt_int(l.count),
            fmt_ms(l.p50_ms),
            fmt_ms(l.p90_ms),
            fmt_ms(l.p99_ms),
            fmt_ms(l.max_ms)
        );
    }
    h.push_str("</table>\n");
}

fn fault_events(h: &mut String, faults: &[FaultEvent]) {
    h.push_str("<h2>故障事件 (fault events)</h2>\n");
    if faults.is_empty() {
        h.push_str("<p class=\"muted\">无故障 (no faults scheduled)</p>\n");
        return;
    }
    shown_of(h, faults.len());
    h.push_str("<table>\n<tr><th class=\"num\">模拟时间 (at)</th><th>类型 (kind)</th><th>故障 (fault)</th></tr>\n");
    for e in faults.iter().take(TABLE_ROWS) {
        let _ = writeln!(
            h,
            "<tr><td class=\"num\">{}</td><td><code>{}</code></td><td>{}</td></tr>",
            esc(&fmt_clock(e.at)),
            schedule::kind_name(&e.action),
            esc(&schedule::describe(&e.action))
        );
    }
    h.push_str("</table>\n");
}

fn missed(h: &mut String, rows: &[MissedDeadline]) {
    h.push_str("<h2>因故障错过的时限 (deadlines missed because of faults)</h2>\n");
    if rows.is_empty() {
        h.push_str("<p class=\"muted\">无 (none)</p>\n");
        return;
    }
    shown_of(h, rows.len());
    h.push_str(
        "<table>\n<tr><th class=\"num\">#</th><th>工单 (ticket)</th><th>时限 (deadline)</th>\
         <th class=\"num\">到期 (due)</th><th class=\"num\">完成 (done)</th><th class=\"num\">逾期 (late by)</th>\
         <th>原因故障 (caused by)</th></tr>\n",
    );
    for (i, m) in rows.iter().take(TABLE_ROWS).enumerate() {
        let (done, late) = match m.done_ms {
            Some(d) => (fmt_clock(d), format_duration(d - m.due_ms)),
            None => ("未完成 (not done)".to_string(), "—".to_string()),
        };
        let _ = writeln!(
            h,
            "<tr><td class=\"num\">{}</td><td><code>{}</code></td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            i + 1,
            esc(&m.ticket),
            esc(&m.deadline),
            esc(&fmt_clock(m.due_ms)),
            esc(&done),
            esc(&late),
            esc(&m.fault)
        );
    }
    h.push_str("</table>\n");
}

fn shown_of(h: &mut String, total: usize) {
    if total > TABLE_ROWS {
        let _ = writeln!(
            h,
            "<p class=\"muted\">显示前 {TABLE_ROWS} 条，共 {} 条 (first {TABLE_ROWS} of {} shown; all in report.json)</p>",
            fmt_int(total as u64),
            fmt_int(total as u64)
        );
    }
}

fn figure(h: &mut String, letter: &str, title: &str, caption: &str, svg: &str) {
    let _ = writeln!(
        h,
        "<figure>\n<figcaption><b>({letter}) {title}</b> — {caption}</figcaption>\n{svg}</figure>"
    );
}

// ---------------------------------------------------------------------------
// Plots

const W: f64 = 1000.0;
const KIND_COLORS: [(&str, &str); 7] = [
    ("partition", "#d62728"),
    ("crash", "#7b3294"),
    ("delay", "#ff7f0e"),
    ("loss", "#e377c2"),
    ("duplicate", "#8c564b"),
    ("slow_disk", "#1f77b4"),
    ("clock_skew", "#17becf"),
];
const LINE_COLORS: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f",
];

fn kind_color(kind: &str) -> &'static str {
    KIND_COLORS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or("#555", |(_, c)| c)
}

/// The end of the time axis: the run's length, or later if samples or
/// faults go beyond it; at least one minute.
fn time_end(r: &Report) -> SimMs {
    let last_sample = r
        .backlog
        .iter()
        .filter_map(|b| b.samples.last())
        .map(|&(m, _)| m.saturating_mul(MINUTE_MS))
        .max()
        .unwrap_or(0);
    let last_fault = r.faults.iter().map(|f| f.at).max().unwrap_or(0);
    r.simulated_ms
        .max(last_sample)
        .max(last_fault)
        .max(MINUTE_MS)
}

/// A horizontal simulated-time axis mapped onto [x0, x1].
struct TimeAxis {
    end: SimMs,
    x0: f64,
    x1: f64,
}

impl TimeAxis {
    fn x(&self, t: SimMs) -> f64 {
        let t = t.clamp(0, self.end) as f64;
        self.x0 + t / self.end as f64 * (self.x1 - self.x0)
    }

    /// Tick positions and labels: hours ("10h") when the step is an hour or
    /// more, else minutes/seconds ("30m", "1h30m").
    fn ticks(&self) -> Vec<(SimMs, String)> {
        const STEPS: [SimMs; 16] = [
            1_000,
            5_000,
            10_000,
            30_000,
            MINUTE_MS,
            5 * MINUTE_MS,
            10 * MINUTE_MS,
            15 * MINUTE_MS,
            30 * MINUTE_MS,
            HOUR_MS,
            2 * HOUR_MS,
            3 * HOUR_MS,
            4 * HOUR_MS,
            6 * HOUR_MS,
            12 * HOUR_MS,
            24 * HOUR_MS,
        ];
        let mut step = *STEPS
            .iter()
            .find(|&&s| self.end / s <= 12)
            .unwrap_or(&(24 * HOUR_MS));
        while self.end / step > 12 {
            step *= 2;
        }
        (0..=self.end / step)
            .map(|i| {
                let t = i * step;
                let label = if step >= HOUR_MS {
                    format!("{}h", t / HOUR_MS)
                } else {
                    format_duration(t)
                };
                (t, label)
            })
            .collect()
    }

    fn draw(&self, s: &mut String, y: f64, top: f64) {
        let _ = writeln!(
            s,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#888"/>"##,
            self.x0, self.x1
        );
        for (t, label) in self.ticks() {
            let x = self.x(t);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{y:.1}" stroke="#eee"/><line x1="{x:.1}" y1="{y:.1}" x2="{x:.1}" y2="{:.1}" stroke="#888"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                y + 4.0,
                y + 17.0,
                esc(&label)
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">模拟时间 (simulated time, hours since start)</text>"#,
            (self.x0 + self.x1) / 2.0,
            y + 34.0
        );
    }
}

/// A "nice" step (1, 2 or 5 × 10^k, k ≥ 0) giving at most `n` steps up to `max`.
fn nice_step(max: f64, n: f64) -> f64 {
    let mut step = 1.0;
    let mut i = 0;
    while max / step > n && step < 1e18 {
        step *= if i % 3 == 1 { 2.5 } else { 2.0 };
        i += 1;
    }
    step
}

/// Y ticks 0..=top where top is the first multiple of the step ≥ max.
fn y_ticks(max: f64) -> (f64, Vec<f64>) {
    let max = if max > 0.0 { max } else { 1.0 };
    let step = nice_step(max, 5.0);
    let steps = (max / step).ceil().max(1.0) as usize;
    let top = step * steps as f64;
    (top, (0..=steps).map(|i| step * i as f64).collect())
}

fn svg_open(s: &mut String, height: f64, label: &str) {
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {height}" width="{W}" height="{height}" role="img" aria-label="{}">"#,
        esc(label)
    );
}

fn svg_message(s: &mut String, x: f64, y: f64, text: &str) {
    let _ = writeln!(
        s,
        r##"<text x="{x:.1}" y="{y:.1}" text-anchor="middle" fill="#888">{}</text>"##,
        esc(text)
    );
}

/// Cuts a label to `max` characters, with "…".
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max - 1).collect();
        out.push('…');
        out
    }
}

/// (a) One row per fault span: a bar from start to end, labelled on the left.
fn svg_timeline(spans: &[FaultSpan], end: SimMs) -> String {
    let rows = spans.len().min(TIMELINE_ROWS);
    let row_h = 22.0;
    let top = 12.0;
    let axis_y = top + row_h * rows.max(1) as f64 + 6.0;
    let height = axis_y + 44.0;
    let ax = TimeAxis {
        end,
        x0: 330.0,
        x1: W - 20.0,
    };
    let mut s = String::new();
    svg_open(&mut s, height, "故障时间线 (fault timeline)");
    if spans.is_empty() {
        svg_message(
            &mut s,
            (ax.x0 + ax.x1) / 2.0,
            top + 15.0,
            "无故障 (no faults)",
        );
    }
    for (i, sp) in spans.iter().take(rows).enumerate() {
        let y = top + row_h * i as f64;
        let x0 = ax.x(sp.start);
        let x1 = ax.x(sp.end.unwrap_or(end)).max(x0 + 2.0);
        let color = kind_color(sp.kind);
        let range = match sp.end {
            Some(e) => format!("{}–{}", fmt_clock(sp.start), fmt_clock(e)),
            None => format!("{}– 未恢复 (not healed)", fmt_clock(sp.start)),
        };
        let dash = if sp.end.is_none() {
            r#" stroke-dasharray="4 2""#
        } else {
            ""
        };
        let _ = writeln!(
            s,
            r##"<g><title>{title}</title><text x="{lx:.1}" y="{ty:.1}" text-anchor="end">{label}</text><rect x="{x0:.1}" y="{ry:.1}" width="{w:.1}" height="14" fill="{color}" fill-opacity="0.75" stroke="{color}"{dash}/>"##,
            title = esc(&format!("{} · {range}", sp.label)),
            lx = ax.x0 - 8.0,
            ty = y + 12.0,
            label = esc(&clip(&sp.label, 34)),
            ry = y + 1.0,
            w = x1 - x0,
        );
        let (tx, anchor, fill) = if x1 + 110.0 <= ax.x1 {
            (x1 + 4.0, "start", "#333")
        } else if x0 - 110.0 >= ax.x0 {
            (x0 - 4.0, "end", "#333")
        } else {
            (x0 + 4.0, "start", "#fff")
        };
        let _ = writeln!(
            s,
            r#"<text x="{tx:.1}" y="{:.1}" text-anchor="{anchor}" fill="{fill}" style="fill:{fill};font-size:11px">{}</text></g>"#,
            y + 12.0,
            esc(&range)
        );
    }
    if spans.len() > rows {
        svg_message(
            &mut s,
            ax.x0 - 170.0,
            axis_y + 34.0,
            &format!(
                "另有 {} 个故障未画出 (+{} more faults)",
                spans.len() - rows,
                spans.len() - rows
            ),
        );
    }
    ax.draw(&mut s, axis_y, top);
    s.push_str("</svg>\n");
    s
}

/// Thins a series to at most `MAX_POINTS`, keeping each chunk's peak.
fn thin(points: &[(SimMs, u64)]) -> Vec<(SimMs, u64)> {
    if points.len() <= MAX_POINTS {
        return points.to_vec();
    }
    let chunk = points.len().div_ceil(MAX_POINTS);
    points
        .chunks(chunk)
        .map(|c| *c.iter().max_by_key(|p| p.1).expect("non-empty chunk"))
        .collect()
}

/// The sum of several step series (each holds its value until its next
/// sample; 0 before its first), sampled at every minute any of them has.
fn sum_series(series: &[&Backlog]) -> Vec<(i64, u64)> {
    let minutes: std::collections::BTreeSet<i64> = series
        .iter()
        .flat_map(|b| b.samples.iter().map(|s| s.0))
        .collect();
    let mut idx = vec![0usize; series.len()];
    let mut current = vec![0u64; series.len()];
    let mut out = Vec::with_capacity(minutes.len());
    for m in minutes {
        let mut total = 0u64;
        for (k, b) in series.iter().enumerate() {
            while idx[k] < b.samples.len() && b.samples[idx[k]].0 <= m {
                current[k] = b.samples[idx[k]].1;
                idx[k] += 1;
            }
            total = total.saturating_add(current[k]);
        }
        out.push((m, total));
    }
    out
}

/// (b) Pending envelopes per province pair over time: one polyline per link
/// (the busiest ones; the rest summed), partitions shaded, legend on the
/// right.
fn svg_backlog(backlog: &[Backlog], spans: &[FaultSpan], end: SimMs) -> String {
    let peak = |b: &Backlog| b.samples.iter().map(|s| s.1).max().unwrap_or(0);
    let mut links: Vec<&Backlog> = backlog.iter().filter(|b| !b.samples.is_empty()).collect();
    // Busiest first; ties by name so the order is stable.
    links.sort_by(|a, b| peak(b).cmp(&peak(a)).then_with(|| a.link.cmp(&b.link)));
    let rest: Vec<&Backlog> = links.iter().skip(BACKLOG_LINES).copied().collect();
    let mut lines: Vec<(String, Vec<(SimMs, u64)>)> = links
        .iter()
        .take(BACKLOG_LINES)
        .map(|b| {
            (
                b.link.clone(),
                b.samples.iter().map(|&(m, v)| (m * MINUTE_MS, v)).collect(),
            )
        })
        .collect();
    if !rest.is_empty() {
        lines.push((
            format!(
                "其他 {} 条链路合计 (other {} links, summed)",
                rest.len(),
                rest.len()
            ),
            sum_series(&rest)
                .into_iter()
                .map(|(m, v)| (m * MINUTE_MS, v))
                .collect(),
        ));
    }

    let (top_y, bottom_y) = (14.0, 270.0);
    let height = bottom_y + 46.0;
    let ax = TimeAxis {
        end,
        x0: 70.0,
        x1: W - 250.0,
    };
    let max = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .max()
        .unwrap_or(0);
    let (y_top, yt) = y_ticks(max as f64);
    let y = |v: f64| bottom_y - v / y_top * (bottom_y - top_y);

    let mut s = String::new();
    svg_open(&mut s, height, "跨省积压 (cross-province backlog)");
    // Partitions, shaded behind the lines.
    for sp in spans.iter().filter(|sp| sp.kind == "partition") {
        let x0 = ax.x(sp.start);
        let x1 = ax.x(sp.end.unwrap_or(end));
        let _ = writeln!(
            s,
            r##"<rect x="{x0:.1}" y="{top_y:.1}" width="{:.1}" height="{:.1}" fill="#d62728" fill-opacity="0.09"><title>{}</title></rect>"##,
            (x1 - x0).max(1.0),
            bottom_y - top_y,
            esc(&sp.label)
        );
    }
    for v in &yt {
        let yy = y(*v);
        let _ = writeln!(
            s,
            r##"<line x1="{:.1}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            ax.x0,
            ax.x1,
            ax.x0 - 6.0,
            yy + 4.0,
            fmt_int(v.round() as u64)
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{x:.1}" y1="{top_y:.1}" x2="{x:.1}" y2="{bottom_y:.1}" stroke="#888"/><text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">待送达 (envelopes pending)</text>"##,
        (top_y + bottom_y) / 2.0,
        x = ax.x0
    );
    ax.draw(&mut s, bottom_y, top_y);
    if lines.is_empty() {
        svg_message(
            &mut s,
            (ax.x0 + ax.x1) / 2.0,
            (top_y + bottom_y) / 2.0,
            "无跨省积压数据 (no cross-province backlog samples)",
        );
    }
    let legend_x = ax.x1 + 16.0;
    for (i, (name, points)) in lines.iter().enumerate() {
        let color = LINE_COLORS[i % LINE_COLORS.len()];
        let pts: Vec<String> = thin(points)
            .iter()
            .map(|&(t, v)| format!("{:.1},{:.1}", ax.x(t), y(v as f64)))
            .collect();
        let series_peak = points.iter().map(|p| p.1).max().unwrap_or(0);
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.6" stroke-linejoin="round" points="{}"><title>{}</title></polyline>"#,
            pts.join(" "),
            esc(&format!("{name}: 峰值 (peak) {series_peak}"))
        );
        let ly = top_y + 8.0 + 20.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{legend_x:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{} <tspan style="fill:#777">峰值 (peak) {}</tspan></text>"#,
            legend_x + 20.0,
            legend_x + 26.0,
            ly + 4.0,
            esc(&clip(name, 26)),
            fmt_int(series_peak)
        );
    }
    if spans.iter().any(|sp| sp.kind == "partition") {
        let ly = top_y + 8.0 + 20.0 * lines.len() as f64;
        let _ = writeln!(
            s,
            r##"<rect x="{legend_x:.1}" y="{:.1}" width="20" height="10" fill="#d62728" fill-opacity="0.15"/><text x="{:.1}" y="{:.1}">网络分区 (partition)</text>"##,
            ly - 5.0,
            legend_x + 26.0,
            ly + 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// (c) Tickets accepted per simulated hour, as bars.
fn svg_arrivals(per_hour: &[u64]) -> String {
    let (top_y, bottom_y) = (14.0, 230.0);
    let height = bottom_y + 46.0;
    let (x0, x1) = (70.0, W - 20.0);
    let max = per_hour.iter().copied().max().unwrap_or(0);
    let (y_top, yt) = y_ticks(max as f64);
    let y = |v: f64| bottom_y - v / y_top * (bottom_y - top_y);
    let mut s = String::new();
    svg_open(&mut s, height, "每小时受理量 (arrivals per hour)");
    for v in &yt {
        let yy = y(*v);
        let _ = writeln!(
            s,
            r##"<line x1="{x0:.1}" y1="{yy:.1}" x2="{x1:.1}" y2="{yy:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 - 6.0,
            yy + 4.0,
            fmt_int(v.round() as u64)
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{x0:.1}" y1="{top_y:.1}" x2="{x0:.1}" y2="{bottom_y:.1}" stroke="#888"/><line x1="{x0:.1}" y1="{bottom_y:.1}" x2="{x1:.1}" y2="{bottom_y:.1}" stroke="#888"/><text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">工单 (tickets)</text>"##,
        (top_y + bottom_y) / 2.0
    );
    if per_hour.is_empty() {
        svg_message(
            &mut s,
            (x0 + x1) / 2.0,
            (top_y + bottom_y) / 2.0,
            "无数据 (no data)",
        );
    } else {
        let n = per_hour.len();
        let slot = (x1 - x0) / n as f64;
        let gap = (slot * 0.15).min(3.0);
        let label_every = n.div_ceil(24).max(1);
        for (i, &v) in per_hour.iter().enumerate() {
            let bx = x0 + slot * i as f64;
            let by = y(v as f64);
            let _ = writeln!(
                s,
                r##"<rect x="{:.1}" y="{by:.1}" width="{:.1}" height="{:.1}" fill="#4c78a8"><title>{}h–{}h: {}</title></rect>"##,
                bx + gap / 2.0,
                (slot - gap).max(0.5),
                bottom_y - by,
                i,
                i + 1,
                fmt_int(v)
            );
            if i % label_every == 0 {
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{i}h</text>"#,
                    bx,
                    bottom_y + 17.0
                );
            }
        }
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">模拟小时 (simulated hour)</text>"#,
        (x0 + x1) / 2.0,
        bottom_y + 36.0
    );
    s.push_str("</svg>\n");
    s
}

/// Tick marks of the latency plot (ms, label), on a log scale.
const LATENCY_TICKS: [(f64, &str); 12] = [
    (1.0, "1 ms"),
    (10.0, "10 ms"),
    (100.0, "100 ms"),
    (1e3, "1 s"),
    (1e4, "10 s"),
    (6e4, "1 min"),
    (6e5, "10 min"),
    (3.6e6, "1 h"),
    (2.16e7, "6 h"),
    (8.64e7, "1 d"),
    (6.048e8, "7 d"),
    (2.592e9, "30 d"),
];

/// (d) The transfer latency distribution as horizontal bars p50/p90/p99/max,
/// on a log scale.
fn svg_latency(l: &Latency) -> String {
    let rows = [
        ("p50 中位数 (median)", l.p50_ms),
        ("p90", l.p90_ms),
        ("p99", l.p99_ms),
        ("最大 (max)", l.max_ms),
    ];
    let (x0, x1) = (170.0, W - 140.0);
    let top = 10.0;
    let row_h = 30.0;
    let bottom = top + row_h * rows.len() as f64 + 4.0;
    let height = bottom + 44.0;
    // A log scale: transfers take milliseconds when the path is up and
    // hours across a partition, and both should be readable.
    let ticks: Vec<(f64, &str)> = LATENCY_TICKS
        .iter()
        .scan(false, |done, &(v, label)| {
            // Ticks up to the first at or above the max.
            if *done {
                return None;
            }
            *done = v >= l.max_ms;
            Some((v, label))
        })
        .collect();
    let x_top = ticks.last().map_or(1.0, |t| t.0).max(10.0);
    let x = |v: f64| x0 + v.clamp(1.0, x_top).log10() / x_top.log10() * (x1 - x0);
    let mut s = String::new();
    svg_open(&mut s, height, "转办延迟 (transfer latency)");
    for (t, label) in &ticks {
        let tx = x(*t);
        let _ = writeln!(
            s,
            r##"<line x1="{tx:.1}" y1="{top:.1}" x2="{tx:.1}" y2="{bottom:.1}" stroke="#eee"/><text x="{tx:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            bottom + 17.0,
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{x0:.1}" y1="{top:.1}" x2="{x0:.1}" y2="{bottom:.1}" stroke="#888"/><line x1="{x0:.1}" y1="{bottom:.1}" x2="{x1:.1}" y2="{bottom:.1}" stroke="#888"/><text x="{:.1}" y="{:.1}" text-anchor="middle">模拟时间，对数刻度 (simulated time, log scale)</text>"##,
        (x0 + x1) / 2.0,
        bottom + 36.0
    );
    if l.count == 0 {
        svg_message(
            &mut s,
            (x0 + x1) / 2.0,
            (top + bottom) / 2.0,
            "无转办 (no transfers)",
        );
    } else {
        for (i, (name, v)) in rows.iter().enumerate() {
            let ry = top + row_h * i as f64 + 6.0;
            let w = (x(*v) - x0).max(1.0);
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{name}</text><rect x="{x0:.1}" y="{ry:.1}" width="{w:.1}" height="18" fill="#59a14f"/><text x="{:.1}" y="{:.1}">{}</text>"##,
                x0 - 8.0,
                ry + 13.0,
                x0 + w + 6.0,
                ry + 13.0,
                esc(&fmt_ms(*v))
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

// ---------------------------------------------------------------------------
// Formatting

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// 2000000 → "2,000,000".
fn fmt_int(v: u64) -> String {
    let digits = v.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A latency in simulated ms, in the unit that reads best.
fn fmt_ms(ms: f64) -> String {
    if ms < 1_000.0 {
        format!("{ms:.0} ms")
    } else if ms < 60_000.0 {
        format!("{:.1} s", ms / 1_000.0)
    } else if ms < 3_600_000.0 {
        format!("{:.1} min", ms / 60_000.0)
    } else {
        format!("{:.2} h", ms / 3_600_000.0)
    }
}

fn fmt_wall(ms: u64) -> String {
    if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1_000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1_000)
    }
}

/// Simulated time as a clock reading (the run starts at 00:00): "18:30:00",
/// "1d 02:00:00" on the second day.
fn fmt_clock(ms: SimMs) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let s = ms.unsigned_abs() / 1_000;
    let (d, h, m, sec) = (s / 86_400, s / 3_600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{sign}{d}d {h:02}:{m:02}:{sec:02}")
    } else {
        format!("{sign}{h:02}:{m:02}:{sec:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FaultAction, Invariants};

    fn all_held() -> Invariants {
        Invariants {
            no_acked_ticket_lost: true,
            one_leader_per_term: true,
            committed_prefixes_agree: true,
            one_owner_per_ticket: true,
            no_transfer_applied_twice: true,
            transfers_delivered_after_heal: true,
            chains_verify: true,
            directory_replicated: true,
            violation: None,
        }
    }

    /// The 4-hour 上海–江苏 partition, as an engine might report it.
    fn sample() -> Report {
        let rise_and_drain = |scale: u64| -> Vec<(i64, u64)> {
            (0..24 * 60)
                .step_by(5)
                .map(|m| {
                    let v = if (600..840).contains(&m) {
                        (m as u64 - 600) * scale / 10
                    } else if (840..900).contains(&m) {
                        (900 - m as u64) * 24 * scale / 60
                    } else {
                        u64::from(m % 7 == 0)
                    };
                    (m, v)
                })
                .collect()
        };
        Report {
            events_by_kind: Default::default(),
            shards: 1,
            seed: 42,
            topology: "national".into(),
            nodes: 3_200,
            groups: 3_234,
            replicas: 9_702,
            simulated_ms: 24 * HOUR_MS,
            wall_ms: 187_400,
            events: 912_345_678,
            events_per_sec: 4_868_440.2,
            tickets_accepted: 2_013_456,
            commands_committed: 11_234_567,
            transfers: 340_112,
            cross_province_transfers: 21_004,
            send_backs: 1_020,
            moved_from_review: 310,
            review_moves: 312,
            review_moves_unfinished: 0,
            transfers_refused: 0,
            messages_sent: 99_000_000,
            messages_dropped: 1_234_567,
            invariants: all_held(),
            commit_latency: Latency { count: 11_234_567, p50_ms: 12.0, p90_ms: 25.0, p99_ms: 110.0, max_ms: 2_048.0 },
            transfer_latency: Latency { count: 340_112, p50_ms: 450.0, p90_ms: 1_800.0, p99_ms: 3_600_000.0, max_ms: 14_400_000.0 },
            notify_latency: Latency::default(),
            backlog: vec![
                Backlog { link: "31→32".into(), samples: rise_and_drain(3) },
                Backlog { link: "32→31".into(), samples: rise_and_drain(2) },
                Backlog { link: "11→31".into(), samples: vec![(0, 0), (60, 2), (120, 0)] },
            ],
            faults: vec![
                FaultEvent {
                    at: 10 * HOUR_MS,
                    action: FaultAction::Partition { a: vec![2, 4, 6, 7], b: vec![3, 5, 8], label: "上海–江苏 <Shanghai & Jiangsu>".into() },
                },
                FaultEvent { at: 14 * HOUR_MS, action: FaultAction::Heal },
                FaultEvent { at: 2 * HOUR_MS, action: FaultAction::Crash { node: 6 } },
                FaultEvent { at: 2 * HOUR_MS + 10 * MINUTE_MS, action: FaultAction::Restart { node: 6 } },
            ],
            missed_deadlines: (0..250)
                .map(|i| MissedDeadline {
                    ticket: format!("320585-20261128-{i:06}"),
                    deadline: "签收 (sign) <2h>".into(),
                    due_ms: 11 * HOUR_MS + i * MINUTE_MS,
                    done_ms: if i % 3 == 0 { None } else { Some(14 * HOUR_MS + i * 1_000) },
                    fault: "分区 (partition) 上海–江苏".into(),
                })
                .collect(),
            arrivals_per_hour: (0..24u64).map(|h| 20_000 + 70_000 * (h.min(23 - h)) / 12).collect(),
            digest: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
            reproduce: "hotline sim run --topology national --duration 24h --seed 42 --faults simulator/data/faults/sh-js-partition.toml --report out/sh-js".into(),
        }
    }

    #[test]
    fn html_has_plots_tables_and_escapes() {
        let mut r = sample();
        r.faults.sort_by_key(|f| f.at);
        let html = render_html(&r);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert_eq!(html.matches("<svg ").count(), 4, "four plots");
        assert_eq!(html.matches("</svg>").count(), 4);
        assert!(html.contains("<polyline"), "backlog lines");
        assert!(html.contains("31→32") && html.contains("32→31"), "legend");
        assert!(
            html.contains("上海–江苏 &lt;Shanghai &amp; Jiangsu&gt;"),
            "escaped label"
        );
        assert!(!html.contains("<Shanghai"), "raw label must not appear");
        assert!(html.contains("签收 (sign) &lt;2h&gt;"));
        assert!(
            html.contains("<code>hotline sim run --topology national"),
            "reproduce command"
        );
        assert!(html.contains("✓ 全部不变量成立"));
        assert!(!html.contains("✗"));
        // Missed deadlines: 200 of 250 rows, with the note.
        assert_eq!(html.matches("<code>320585-20261128-").count(), TABLE_ROWS);
        assert!(
            html.contains("320585-20261128-000199") && !html.contains("320585-20261128-000200")
        );
        assert!(html.contains("first 200 of 250 shown"));
        // Self-contained: no scripts, nothing fetched.
        assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("href="));
        // Timeline bars: the partition (10h–14h) and the crash (02:00–02:10).
        assert!(html.contains("10:00:00–14:00:00") && html.contains("02:00:00–02:10:00"));
        // Hour ticks on the time axes.
        assert!(html.contains(">12h</text>"));
    }

    #[test]
    fn backlog_rises_during_partition_in_the_plot() {
        // The plotted y of the 31→32 line is higher (smaller SVG y) inside the
        // partition than before it and after the heal has drained.
        let r = sample();
        let spans = schedule::spans(&{
            let mut f = r.faults.clone();
            f.sort_by_key(|f| f.at);
            f
        });
        let svg = svg_backlog(&r.backlog, &spans, time_end(&r));
        let line = svg
            .lines()
            .find(|l| l.contains("<polyline") && l.contains("31→32"))
            .unwrap();
        let pts: Vec<(f64, f64)> = line
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .split(' ')
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect();
        let ax = TimeAxis {
            end: 24 * HOUR_MS,
            x0: 70.0,
            x1: W - 250.0,
        };
        let y_at = |h: SimMs| {
            let x = ax.x(h * HOUR_MS);
            pts.iter()
                .min_by(|a, b| (a.0 - x).abs().total_cmp(&(b.0 - x).abs()))
                .unwrap()
                .1
        };
        assert!(y_at(13) < y_at(9) - 100.0, "risen during the partition");
        assert!(y_at(16) > y_at(13) + 100.0, "drained after the heal");
        assert!(svg.contains("fill-opacity=\"0.09\""), "partition shaded");
    }

    #[test]
    fn violation_is_shown() {
        let mut r = sample();
        r.invariants.one_leader_per_term = false;
        r.invariants.violation =
            Some("group 310114: two leaders in term 7 (nodes 6 & 4) <seed 42>".into());
        let html = render_html(&r);
        assert!(html.contains("✗ 不变量被违反"));
        assert!(html.contains("<td class=\"bad\">✗</td><td>每组每任期至多一个领导者"));
        assert!(html.contains("two leaders in term 7 (nodes 6 &amp; 4) &lt;seed 42&gt;"));
        assert_eq!(html.matches("<td class=\"ok\">✓</td>").count(), 7);
        assert!(!html.contains("全部不变量成立"));
    }

    #[test]
    fn empty_report_renders() {
        let html = render_html(&Report::default());
        assert_eq!(html.matches("<svg ").count(), 4);
        assert!(html.contains("无故障 (no faults)"));
        assert!(html.contains("无转办 (no transfers)"));
        // Default invariants are all false without a violation text.
        assert!(html.contains("违反 (violated)"));
    }

    #[test]
    fn many_links_are_summed() {
        let backlog: Vec<Backlog> = (0..20)
            .map(|i| Backlog {
                link: format!("{}→{}", 11 + i, 31),
                samples: vec![(0, i), (60, 2 * i), (120, 0)],
            })
            .collect();
        let svg = svg_backlog(&backlog, &[], 3 * HOUR_MS);
        assert_eq!(svg.matches("<polyline").count(), BACKLOG_LINES + 1);
        assert!(svg.contains("other 12 links, summed"));
        // The 12 smallest are i = 0..12: peak sum 2 * (0 + … + 11) = 132.
        assert!(svg.contains("peak) 132"), "{svg}");
    }

    #[test]
    fn write_creates_both_files_and_json_round_trips() {
        let r = sample();
        let dir = std::env::temp_dir().join(format!(
            "hotline-report-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let out = dir.join("nested/run");
        write(&r, &out).unwrap();
        let json = std::fs::read_to_string(out.join("report.json")).unwrap();
        let html = std::fs::read_to_string(out.join("report.html")).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), r);
        assert!(json.contains("\n  \"seed\": 42"), "pretty");
        assert_eq!(html, render_html(&r));
        std::fs::remove_dir_all(&dir).unwrap();

        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&text).unwrap(), r);
    }

    #[test]
    fn latency_from_histogram() {
        let mut h = Histogram::<u64>::new(3).unwrap();
        assert_eq!(latency(&h), Latency::default());
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let l = latency(&h);
        assert_eq!(l.count, 1000);
        assert_eq!(
            (l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms),
            (500.0, 900.0, 990.0, 1000.0)
        );
    }

    #[test]
    fn latency_plot_is_log_scaled() {
        let l = Latency {
            count: 5,
            p50_ms: 100.0,
            p90_ms: 1_000.0,
            p99_ms: 3_600_000.0,
            max_ms: 3_600_000.0,
        };
        let svg = svg_latency(&l);
        // Ticks 1 ms … 1 h; 100 ms sits at 2/6.556 of the width.
        assert!(svg.contains(">1 ms</text>") && svg.contains(">1 h</text>"));
        assert!(!svg.contains(">6 h</text>"));
        let widths: Vec<f64> = svg
            .split("height=\"18\"")
            .filter_map(|part| part.rsplit("width=\"").next())
            .filter_map(|w| w.split('"').next()?.parse().ok())
            .collect();
        assert_eq!(widths.len(), 4, "{svg}");
        assert!(widths[0] > 100.0 && widths[0] < widths[1] && widths[2] == widths[3]);
        // Beyond the last tick: clamped, not NaN.
        let huge = svg_latency(&Latency {
            count: 1,
            max_ms: 1e12,
            ..l
        });
        assert!(!huge.contains("NaN") && !huge.contains("inf"));
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_int(0), "0");
        assert_eq!(fmt_int(999), "999");
        assert_eq!(fmt_int(2_000_000), "2,000,000");
        assert_eq!(fmt_clock(18 * HOUR_MS + 30 * MINUTE_MS), "18:30:00");
        assert_eq!(fmt_clock(26 * HOUR_MS), "1d 02:00:00");
        assert_eq!(fmt_ms(12.0), "12 ms");
        assert_eq!(fmt_ms(14_400_000.0), "4.00 h");
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(clip("abcdef", 4), "abc…");
        let (top, ticks) = y_ticks(130.0);
        assert!(top >= 130.0 && ticks.len() <= 7, "{top} {ticks:?}");
        let ax = TimeAxis {
            end: 24 * HOUR_MS,
            x0: 0.0,
            x1: 1.0,
        };
        let t = ax.ticks();
        assert_eq!(t.first().unwrap().1, "0h");
        assert_eq!(t.last().unwrap().1, "24h");
        assert!(t.len() <= 13);
        let short = TimeAxis {
            end: 90 * 1_000,
            x0: 0.0,
            x1: 1.0,
        }
        .ticks();
        assert_eq!(short[1].1, "10s");
    }
}
