//! A KPI report (`ReportResponse`, computed by `hotline_node::core::kpi`) as a
//! supervisor reads it (text, labels in Chinese), as CSV for a spreadsheet and
//! as JSON for `--json`.
//!
//! The definitions of the rates are in `hotline_node::core::kpi`; this module
//! only formats. Per-mille values are shown as percentages with one decimal
//! (667 → 66.7%); a rate with no data (denominator 0) is shown as "—", never
//! as 0%.

use std::fmt::Write as _;

use hotline_proto::v1::{CountShare, Kpis, Rate, ReportResponse};
use serde_json::{Value, json};

/// How many top-level categories the text report lists before "其他".
const TOP_CATEGORIES: usize = 10;
/// Display width of the rate labels (the widest is 及时签收率), so that the
/// 三率 and the timeliness sections line up.
const LABEL_WIDTH: usize = 10;
/// A table cell without data: ASCII, because "—" is one column wide in some
/// terminals and two in others.
const NO_DATA: &str = "-";

/// The report as a supervisor reads it: period, volumes, the 三率 and the
/// timeliness rates of the region, then one row per lead unit. `note`
/// follows the totals: why they are empty (a relay group's report, say,
/// and where its region's figures are).
pub fn render_text(r: &ReportResponse, note: Option<&str>) -> String {
    let region = r.region.clone().unwrap_or_default();
    let merged = r
        .by_status
        .iter()
        .find(|s| s.key == "merged")
        .map_or(0, |s| s.count);
    let mut out = String::new();
    let o = &mut out;

    let _ = writeln!(o, "12345 热线工单考核报告({})", scope_label(&region.scope));
    let _ = writeln!(
        o,
        "统计时段:{} 至 {}(北京时间,按受理时间,含起不含止)",
        cst(r.from_ms),
        cst(r.to_ms)
    );
    let _ = write!(o, "总量:{} 件", r.total);
    if merged > 0 {
        let _ = write!(o, "(其中并单 {merged} 件,计入总量,不计入各项比率)");
    }
    o.push('\n');
    if let Some(note) = note {
        let _ = writeln!(o, "注:{note}");
    }

    volume_sections(o, &r.by_kind, &r.by_category, &r.by_status);
    // A group serving several districts (a city center whose districts have
    // no group of their own) shows each of them.
    if r.by_district.len() > 1 {
        o.push_str("\n按地区\n");
        shares_table(o, &r.by_district, usize::MAX, district_label);
    }

    o.push_str("\n三率(按最后一次回访)\n");
    let rows = [
        ("响应率", rate_detail(region.response.as_ref())),
        ("解决率", rate_detail(region.resolution.as_ref())),
        ("满意率", satisfaction_detail(region.satisfaction.as_ref())),
        (
            "综合得分",
            format!(
                "{}(满分 100)",
                if has_callbacks(&region) {
                    decimal(region.composite_permille)
                } else {
                    "—".into()
                }
            ),
        ),
    ];
    labelled(o, &rows);

    o.push_str("\n办理时效与质量\n");
    let rows = [
        ("及时签收率", rate_detail(region.on_time_sign.as_ref())),
        ("按时办结率", rate_detail(region.on_time_reply.as_ref())),
        ("退单率", rate_detail(region.returns.as_ref())),
        ("重办率", rate_detail(region.reopens.as_ref())),
        ("直接答复率", rate_detail(region.direct_answer.as_ref())),
    ];
    labelled(o, &rows);

    o.push_str("\n承办单位\n");
    if r.units.is_empty() {
        o.push_str("  (本时段无派单工单)\n");
    } else {
        let header = [
            "承办单位",
            "工单",
            "响应率",
            "解决率",
            "满意率",
            "综合",
            "及时签收率",
            "按时办结率",
        ]
        .map(String::from)
        .to_vec();
        let mut rows = vec![header];
        for u in &r.units {
            rows.push(vec![
                scope_label(&u.scope),
                u.tickets.to_string(),
                cell(u.response.as_ref()),
                cell(u.resolution.as_ref()),
                cell(u.satisfaction.as_ref()),
                if has_callbacks(u) {
                    decimal(u.composite_permille)
                } else {
                    NO_DATA.into()
                },
                cell(u.on_time_sign.as_ref()),
                cell(u.on_time_reply.as_ref()),
            ]);
        }
        pipe_table(o, &rows);
    }
    out
}

/// One header line and one row per scope (region first, then units), a blank
/// line, then the volume sections as `section,key,count,permille` (a `total`
/// row first). RFC 4180: CRLF line ends, fields quoted when they hold a comma,
/// a quote or a line break, quotes doubled.
pub fn render_csv(r: &ReportResponse) -> String {
    let mut header = vec!["scope".to_owned(), "tickets".to_owned()];
    for (name, _) in rate_fields(&Kpis::default()) {
        if name == "on_time_sign" {
            header.push("composite_permille".into());
        }
        for part in ["permille", "numerator", "denominator"] {
            header.push(format!("{name}_{part}"));
        }
    }
    let mut out = String::new();
    csv_line(&mut out, &header);
    for k in r.region.iter().chain(&r.units) {
        let mut row = vec![k.scope.clone(), k.tickets.to_string()];
        for (name, rt) in rate_fields(k) {
            if name == "on_time_sign" {
                row.push(k.composite_permille.to_string());
            }
            let rt = rt.cloned().unwrap_or_default();
            row.push(rt.permille.to_string());
            row.push(rt.numerator.to_string());
            row.push(rt.denominator.to_string());
        }
        csv_line(&mut out, &row);
    }
    out.push_str("\r\n");
    csv_line(
        &mut out,
        &["section", "key", "count", "permille"].map(String::from),
    );
    csv_line(
        &mut out,
        &[
            "total".into(),
            "all".into(),
            r.total.to_string(),
            if r.total > 0 { "1000" } else { "0" }.into(),
        ],
    );
    for (section, shares) in [
        ("kind", &r.by_kind),
        ("category", &r.by_category),
        ("status", &r.by_status),
    ] {
        for s in shares {
            csv_line(
                &mut out,
                &[
                    section.into(),
                    s.key.clone(),
                    s.count.to_string(),
                    s.permille.to_string(),
                ],
            );
        }
    }
    out
}

/// Every field of the report; rates as `{numerator, denominator, permille}`.
pub fn report_json(r: &ReportResponse) -> Value {
    json!({
        "from_ms": r.from_ms,
        "to_ms": r.to_ms,
        "total": r.total,
        "region": r.region.as_ref().map(kpis_json),
        "units": r.units.iter().map(kpis_json).collect::<Vec<_>>(),
        "by_kind": shares_json(&r.by_kind),
        "by_category": shares_json(&r.by_category),
        "by_status": shares_json(&r.by_status),
        "by_district": shares_json(&r.by_district),
    })
}

fn kpis_json(k: &Kpis) -> Value {
    let mut v = json!({
        "scope": k.scope,
        "tickets": k.tickets,
        "composite_permille": k.composite_permille,
    });
    for (name, rt) in rate_fields(k) {
        let rt = rt.cloned().unwrap_or_default();
        v[name] = json!({
            "numerator": rt.numerator,
            "denominator": rt.denominator,
            "permille": rt.permille,
        });
    }
    v
}

fn shares_json(shares: &[CountShare]) -> Value {
    shares
        .iter()
        .map(|s| json!({ "key": s.key, "count": s.count, "permille": s.permille }))
        .collect()
}

/// The rates of a scope, in report order, with their field names.
fn rate_fields(k: &Kpis) -> [(&'static str, Option<&Rate>); 8] {
    [
        ("response", k.response.as_ref()),
        ("resolution", k.resolution.as_ref()),
        ("satisfaction", k.satisfaction.as_ref()),
        ("on_time_sign", k.on_time_sign.as_ref()),
        ("on_time_reply", k.on_time_reply.as_ref()),
        ("returns", k.returns.as_ref()),
        ("reopens", k.reopens.as_ref()),
        ("direct_answer", k.direct_answer.as_ref()),
    ]
}

fn csv_line(out: &mut String, fields: &[String]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&csv_field(f));
    }
    out.push_str("\r\n");
}

fn csv_field(f: &str) -> String {
    if f.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_owned()
    }
}

/// Unix milliseconds as CST (UTC+8) `yyyy-mm-dd hh:mm`.
fn cst(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|ts| {
            ts.to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(8)))
                .strftime("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|_| format!("{ms} ms"))
}

/// Per-mille as a number with one decimal: 667 → "66.7".
fn decimal(permille: u32) -> String {
    format!("{}.{}", permille / 10, permille % 10)
}

/// A rate as "66.7%".
fn percent(rt: &Rate) -> String {
    format!("{}%", decimal(rt.permille))
}

/// A rate in the unit table: "66.7%", or "-" when it has no data.
fn cell(rt: Option<&Rate>) -> String {
    match rt {
        Some(rt) if rt.denominator > 0 => percent(rt),
        _ => NO_DATA.into(),
    }
}

/// A rate with its counts: "66.7%(2/3)".
fn rate_detail(rt: Option<&Rate>) -> String {
    match rt {
        Some(rt) if rt.denominator > 0 => {
            format!("{}({}/{})", percent(rt), rt.numerator, rt.denominator)
        }
        _ => "—(无数据)".into(),
    }
}

/// The satisfaction rate's counts are in thousandths of a ticket (基本满意
/// weighted): "53.3%(折合满意 1.6 / 评价 3 件)".
fn satisfaction_detail(rt: Option<&Rate>) -> String {
    match rt {
        Some(rt) if rt.denominator > 0 => format!(
            "{}(折合满意 {} / 评价 {} 件)",
            percent(rt),
            thousandths(rt.numerator),
            thousandths(rt.denominator)
        ),
        _ => "—(无数据)".into(),
    }
}

/// 1600 → "1.6", 2000 → "2", 1234 → "1.234".
fn thousandths(v: u64) -> String {
    let (whole, frac) = (v / 1000, v % 1000);
    if frac == 0 {
        whole.to_string()
    } else {
        let f = format!("{frac:03}");
        format!("{whole}.{}", f.trim_end_matches('0'))
    }
}

fn has_callbacks(k: &Kpis) -> bool {
    k.response.as_ref().is_some_and(|r| r.denominator > 0)
}

/// "region 310114" → "地区 310114 嘉定区" ("地区 全国" for the national
/// group), "unit 城管局" → "城管局".
fn scope_label(scope: &str) -> String {
    if let Some(code) = scope.strip_prefix("region ") {
        format!("地区 {}", hotline_federation::regions().label(code))
    } else if let Some(unit) = scope.strip_prefix("unit ") {
        unit.to_owned()
    } else {
        scope.to_owned()
    }
}

fn kind_label(key: &str) -> String {
    crate::labels::kind_zh(key).to_owned()
}

/// "310104 徐汇区": the code and its name.
fn district_label(key: &str) -> String {
    hotline_federation::regions().label(key)
}

fn category_label(key: &str) -> String {
    if key == "unspecified" {
        "未分类".to_owned()
    } else {
        key.to_owned()
    }
}

fn status_label(key: &str) -> String {
    crate::labels::status_zh_of(key).to_owned()
}

/// "  投诉      3 件  占比 60.0%", the first `limit` shares, then "其他".
/// The volume sections of a report, also printed by `hotline query
/// counts`: by kind, by top-level category (the first `TOP_CATEGORIES`),
/// by status, each labelled in Chinese with its share.
pub(crate) fn volume_sections(
    o: &mut String,
    by_kind: &[CountShare],
    by_category: &[CountShare],
    by_status: &[CountShare],
) {
    o.push_str("\n按类型\n");
    shares_table(o, by_kind, usize::MAX, kind_label);
    if by_category.len() > TOP_CATEGORIES {
        let _ = writeln!(o, "\n按分类(前 {TOP_CATEGORIES} 类)");
    } else {
        o.push_str("\n按分类\n");
    }
    shares_table(o, by_category, TOP_CATEGORIES, category_label);
    o.push_str("\n按状态\n");
    shares_table(o, by_status, usize::MAX, status_label);
}

fn shares_table(o: &mut String, shares: &[CountShare], limit: usize, label: fn(&str) -> String) {
    if shares.is_empty() {
        o.push_str("  (无)\n");
        return;
    }
    let shown = &shares[..shares.len().min(limit)];
    let rest = &shares[shown.len()..];
    let mut rows: Vec<(String, u64, u32)> = shown
        .iter()
        .map(|s| (label(&s.key), s.count, s.permille))
        .collect();
    if !rest.is_empty() {
        rows.push((
            format!("其他 {} 类", rest.len()),
            rest.iter().map(|s| s.count).sum(),
            rest.iter().map(|s| s.permille).sum::<u32>().min(1000),
        ));
    }
    let name_w = rows.iter().map(|r| width(&r.0)).max().unwrap_or(0);
    let count_w = rows
        .iter()
        .map(|r| r.1.to_string().len())
        .max()
        .unwrap_or(0);
    for (name, count, permille) in rows {
        let _ = writeln!(
            o,
            "  {}  {count:>count_w$} 件  占比 {:>5}%",
            pad(&name, name_w),
            decimal(permille)
        );
    }
}

/// "  响应率      66.7%(2/3)".
fn labelled(o: &mut String, rows: &[(&str, String)]) {
    for (label, value) in rows {
        let _ = writeln!(o, "  {}  {value}", pad(label, LABEL_WIDTH));
    }
}

/// A `| a | b |` table aligned by display width (CJK counts two columns);
/// the first column left-aligned, the others right-aligned.
fn pipe_table(o: &mut String, rows: &[Vec<String>]) {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| width(&r[c])).max().unwrap_or(0))
        .collect();
    for (i, row) in rows.iter().enumerate() {
        o.push('|');
        for (c, cell) in row.iter().enumerate() {
            let fill = " ".repeat(widths[c] - width(cell));
            if c == 0 {
                let _ = write!(o, " {cell}{fill} |");
            } else {
                let _ = write!(o, " {fill}{cell} |");
            }
        }
        o.push('\n');
        if i == 0 {
            o.push('|');
            for (c, w) in widths.iter().enumerate() {
                let dashes = "-".repeat(*w);
                if c == 0 {
                    let _ = write!(o, " {dashes} |");
                } else {
                    // Markdown's right-alignment marker, same width.
                    let _ = write!(o, " {}: |", &dashes[1..]);
                }
            }
            o.push('\n');
        }
    }
}

/// `s` padded with spaces to `w` terminal columns: CJK characters take two
/// (`format!`'s width counts chars, which misaligns Chinese tables).
pub(crate) fn pad(s: &str, w: usize) -> String {
    format!("{s}{}", " ".repeat(w.saturating_sub(width(s))))
}

/// `s` right-aligned in `w` terminal columns (CJK counts two).
pub(crate) fn pad_left(s: &str, w: usize) -> String {
    format!("{}{s}", " ".repeat(w.saturating_sub(width(s))))
}

/// Terminal columns of `s` (East Asian wide and fullwidth characters take
/// two).
pub(crate) fn width(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(numerator: u64, denominator: u64, permille: u32) -> Option<Rate> {
        Some(Rate {
            numerator,
            denominator,
            permille,
        })
    }

    fn share(key: &str, count: u64, permille: u32) -> CountShare {
        CountShare {
            key: key.into(),
            count,
            permille,
        }
    }

    fn kpis(scope: &str, tickets: u64) -> Kpis {
        Kpis {
            scope: scope.into(),
            tickets,
            response: rate(2, 3, 667),
            resolution: rate(1, 3, 333),
            satisfaction: rate(1600, 3000, 533),
            composite_permille: 503,
            on_time_sign: rate(2, 3, 667),
            on_time_reply: rate(2, 3, 667),
            returns: rate(1, 3, 333),
            reopens: rate(1, 3, 333),
            direct_answer: rate(1, 4, 250),
        }
    }

    /// 2020-10-01 00:00 to 2020-10-09 00:00 CST.
    fn sample() -> ReportResponse {
        ReportResponse {
            from_ms: 1_601_481_600_000,
            to_ms: 1_602_172_800_000,
            region: Some(kpis("region 370100", 4)),
            units: vec![
                kpis("unit 市城管局", 2),
                Kpis {
                    scope: "unit 住建局, 物业科".into(),
                    tickets: 1,
                    ..Kpis::default()
                },
            ],
            by_kind: vec![
                share("complaint", 3, 600),
                share("consult", 1, 200),
                share("help", 1, 200),
            ],
            by_category: vec![share("交通运输", 2, 400), share("城乡建设", 3, 600)],
            by_status: vec![
                share("closed", 3, 600),
                share("handling", 1, 200),
                share("merged", 1, 200),
            ],
            total: 5,
            in_transit: 0,
            by_district: vec![share("370102", 4, 800), share("370103", 1, 200)],
        }
    }

    #[test]
    fn text_reads_like_a_supervisors_report() {
        let t = render_text(&sample(), None);
        assert!(t.contains("地区 370100"), "{t}");
        assert!(
            t.contains("统计时段:2020-10-01 00:00 至 2020-10-09 00:00"),
            "{t}"
        );
        assert!(t.contains("总量:5 件(其中并单 1 件"), "{t}");
        assert!(t.contains("投诉  3 件  占比  60.0%"), "{t}");
        assert!(t.contains("咨询  1 件  占比  20.0%"), "{t}");
        assert!(t.contains("交通运输  2 件  占比  40.0%"), "{t}");
        assert!(t.contains("已并单"), "{t}");
        assert!(
            t.contains("按地区\n  370102 历下区  4 件  占比  80.0%"),
            "{t}"
        );
        assert!(t.contains("响应率      66.7%(2/3)"), "{t}");
        assert!(t.contains("解决率      33.3%(1/3)"), "{t}");
        assert!(
            t.contains("满意率      53.3%(折合满意 1.6 / 评价 3 件)"),
            "{t}"
        );
        assert!(t.contains("综合得分    50.3(满分 100)"), "{t}");
        assert!(t.contains("及时签收率  66.7%(2/3)"), "{t}");
        assert!(t.contains("按时办结率  66.7%(2/3)"), "{t}");
        assert!(t.contains("退单率      33.3%(1/3)"), "{t}");
        assert!(t.contains("重办率      33.3%(1/3)"), "{t}");
        assert!(t.contains("直接答复率  25.0%(1/4)"), "{t}");
        // The unit table: header, separator, then rows in the report's order.
        let table: Vec<&str> = t.lines().filter(|l| l.starts_with('|')).collect();
        assert_eq!(table.len(), 4, "{t}");
        assert!(table[0].starts_with("| 承办单位 "), "{t}");
        assert!(table[0].contains("| 满意率 |"), "{t}");
        assert!(table[2].starts_with("| 市城管局 "), "{t}");
        assert!(table[2].contains("|  66.7% |"), "{t}");
        assert!(table[2].contains("| 50.3 |"), "{t}");
        // A unit without callbacks shows "-", not 0%.
        assert!(table[3].starts_with("| 住建局, 物业科 "), "{t}");
        assert!(table[3].contains("      - |"), "{t}");
        // Every row of the table is as wide as the header.
        let widths: Vec<usize> = table.iter().map(|l| width(l)).collect();
        assert!(widths.iter().all(|&w| w == widths[0]), "{widths:?}\n{t}");
    }

    #[test]
    fn the_region_is_named() {
        let mut r = sample();
        r.region = Some(kpis("region 320585", 1));
        let t = render_text(&r, None);
        assert!(
            t.starts_with("12345 热线工单考核报告(地区 320585 太仓市)\n"),
            "{t}"
        );
        // The national group's scope has no code.
        r.region = Some(kpis("region ", 0));
        let t = render_text(&r, None);
        assert!(t.starts_with("12345 热线工单考核报告(地区 全国)\n"), "{t}");
    }

    #[test]
    fn a_note_follows_the_totals() {
        let t = render_text(&ReportResponse::default(), Some("本组为中转组"));
        assert!(t.contains("总量:0 件\n注:本组为中转组\n"), "{t}");
    }

    #[test]
    fn text_of_an_empty_report() {
        let r = ReportResponse {
            region: Some(Kpis {
                scope: "region 310114".into(),
                ..Kpis::default()
            }),
            ..ReportResponse::default()
        };
        let t = render_text(&r, None);
        assert!(t.contains("总量:0 件\n"), "{t}");
        assert!(t.contains("满意率      —(无数据)"), "{t}");
        assert!(t.contains("综合得分    —(满分 100)"), "{t}");
        assert!(t.contains("本时段无派单工单"), "{t}");
    }

    #[test]
    fn top_categories_then_the_rest() {
        let mut r = sample();
        r.by_category = (0..12)
            .map(|i| share(&format!("类{i:02}"), 12 - i, 10))
            .collect();
        let t = render_text(&r, None);
        assert!(t.contains("按分类(前 10 类)"), "{t}");
        assert!(t.contains("类09"), "{t}");
        assert!(!t.contains("类10"), "{t}");
        assert!(t.contains("其他 2 类   3 件  占比   2.0%"), "{t}");
    }

    #[test]
    fn csv_rows_and_escaping() {
        let c = render_csv(&sample());
        let lines: Vec<&str> = c.split("\r\n").collect();
        assert_eq!(
            lines[0],
            "scope,tickets,\
             response_permille,response_numerator,response_denominator,\
             resolution_permille,resolution_numerator,resolution_denominator,\
             satisfaction_permille,satisfaction_numerator,satisfaction_denominator,\
             composite_permille,\
             on_time_sign_permille,on_time_sign_numerator,on_time_sign_denominator,\
             on_time_reply_permille,on_time_reply_numerator,on_time_reply_denominator,\
             returns_permille,returns_numerator,returns_denominator,\
             reopens_permille,reopens_numerator,reopens_denominator,\
             direct_answer_permille,direct_answer_numerator,direct_answer_denominator"
        );
        assert_eq!(
            lines[1],
            "region 370100,4,667,2,3,333,1,3,533,1600,3000,503,667,2,3,667,2,3,333,1,3,333,1,3,250,1,4"
        );
        assert!(lines[2].starts_with("unit 市城管局,2,667,2,3,"));
        // A comma in a unit's name: the field is quoted.
        assert_eq!(
            lines[3],
            "\"unit 住建局, 物业科\",1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0"
        );
        assert_eq!(lines[4], "");
        assert_eq!(
            &lines[5..],
            [
                "section,key,count,permille",
                "total,all,5,1000",
                "kind,complaint,3,600",
                "kind,consult,1,200",
                "kind,help,1,200",
                "category,交通运输,2,400",
                "category,城乡建设,3,600",
                "status,closed,3,600",
                "status,handling,1,200",
                "status,merged,1,200",
                "",
            ]
        );
        // Every scope row has as many fields as the header.
        let n = lines[0].split(',').count();
        assert_eq!(lines[1].split(',').count(), n);
    }

    #[test]
    fn csv_fields_per_rfc_4180() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field("cr\r"), "\"cr\r\"");
    }

    #[test]
    fn json_has_every_field() {
        let v = report_json(&sample());
        assert_eq!(v["from_ms"], 1_601_481_600_000_i64);
        assert_eq!(v["to_ms"], 1_602_172_800_000_i64);
        assert_eq!(v["total"], 5);
        let region = &v["region"];
        assert_eq!(region["scope"], "region 370100");
        assert_eq!(region["tickets"], 4);
        assert_eq!(region["composite_permille"], 503);
        assert_eq!(
            region["satisfaction"],
            json!({ "numerator": 1600, "denominator": 3000, "permille": 533 })
        );
        for name in [
            "response",
            "resolution",
            "satisfaction",
            "on_time_sign",
            "on_time_reply",
            "returns",
            "reopens",
            "direct_answer",
        ] {
            assert!(region[name]["permille"].is_u64(), "{name}");
            assert!(v["units"][1][name]["denominator"].is_u64(), "{name}");
        }
        assert_eq!(v["units"][1]["scope"], "unit 住建局, 物业科");
        assert_eq!(
            v["by_kind"][0],
            json!({ "key": "complaint", "count": 3, "permille": 600 })
        );
        assert_eq!(v["by_category"][1]["key"], "城乡建设");
        assert_eq!(v["by_status"][2]["key"], "merged");
        assert_eq!(
            v["by_district"][0],
            json!({ "key": "370102", "count": 4, "permille": 800 })
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(decimal(667), "66.7");
        assert_eq!(decimal(5), "0.5");
        assert_eq!(decimal(1000), "100.0");
        assert_eq!(thousandths(1600), "1.6");
        assert_eq!(thousandths(2000), "2");
        assert_eq!(thousandths(1234), "1.234");
        assert_eq!(thousandths(50), "0.05");
        assert_eq!(cst(0), "1970-01-01 08:00");
        assert_eq!(width("城管局 a"), 8);
    }
}
