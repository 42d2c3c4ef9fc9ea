//! Fault schedules: the TOML file an operator writes to ask "what if", and
//! random schedules for swarm testing.
//!
//! # File format
//!
//! ```toml
//! # 4-hour 上海–江苏 partition during the evening peak
//! [[fault]]
//! at = "18h"            # simulated time since start: "90s", "15m", "18h", "1h30m", "500ms", "1d2h"
//! kind = "partition"
//! between = ["31"]      # node selectors, see below
//! and = ["32"]
//! label = "上海–江苏"    # optional, shown in the report
//! [[fault]]
//! at = "22h"
//! kind = "heal"
//! ```
//!
//! Kinds and their fields (every field is required unless marked optional;
//! unknown fields are an error):
//!
//! | kind         | fields                                   |
//! |--------------|------------------------------------------|
//! | `partition`  | `between`, `and`, `label` (optional)     |
//! | `heal`       | —                                        |
//! | `crash`      | `node`                                   |
//! | `restart`    | `node`                                   |
//! | `delay`      | `between`, `and`, `extra_ms`             |
//! | `loss`       | `between`, `and`, `permille` (0–1000)    |
//! | `duplicate`  | `permille` (0–1000)                      |
//! | `slow_disk`  | `node`, `fsync_ms`                       |
//! | `clock_skew` | `node`, `skew_ms` (may be negative)      |
//!
//! `*_ms` fields take an integer (milliseconds) or a duration string
//! (`"2s"`; `skew_ms` also `"-5m"`).
//!
//! ## Selecting nodes
//!
//! Each entry of `between` / `and` selects a set of nodes:
//! - `"node:7"`, `"site:shanghai"`, `"region:31"` — explicit: a node id, every
//!   node at a site, every node whose region starts with the prefix.
//! - a bare string of two or more digits — a region prefix if some node's
//!   region starts with it (`"31"` = every node of 上海), otherwise a node id;
//!   a single digit is a node id (`"7"`);
//! - any other bare string — a site name.
//!
//! `""` is not allowed (the national node is named by id or site). Each side
//! must select at least one node, and the two sides must be disjoint.
//!
//! `node` (crash, restart, slow_disk, clock_skew) must resolve to exactly one
//! node: a bare entry is matched against node ids, site names and nodes'
//! exact regions, and is an error if those name different nodes (write
//! `node:…`, `site:…` or `region:…` to choose).
//!
//! ## What ends a fault
//!
//! `heal` ends every network fault in force: partitions, delays, losses and
//! duplication. A crash ends at the node's `restart`; `slow_disk` and
//! `clock_skew` end when set to 0 for the same node; `duplicate` also ends at
//! `duplicate` with `permille = 0`. [`spans`] pairs them up this way.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use hotline_federation::regions;
use hotline_federation::topology::Topology;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::model::{FaultAction, FaultEvent, SimMs};

const SECOND: SimMs = 1_000;
const MINUTE: SimMs = 60 * SECOND;
const HOUR: SimMs = 60 * MINUTE;
const DAY: SimMs = 24 * HOUR;

// ---------------------------------------------------------------------------
// Durations

/// Reads a simulated duration: one or more `<digits><unit>` parts with units
/// `d`, `h`, `m`, `s`, `ms`, largest first, each unit at most once ("24h",
/// "90s", "1h30m", "500ms", "1d2h"); `"0"` alone is zero. No sign, no
/// fractions, no spaces inside.
pub fn parse_duration(s: &str) -> Result<SimMs, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("empty duration (expected e.g. \"90s\", \"15m\", \"1h30m\")".into());
    }
    if text == "0" {
        return Ok(0);
    }
    let bad = |why: &str| format!("bad duration {s:?}: {why} (expected e.g. \"90s\", \"1h30m\")");
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut total: SimMs = 0;
    // Rank of the last unit seen: units must strictly decrease.
    let mut last_rank = usize::MAX;
    while i < bytes.len() {
        let digits_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == digits_start {
            return Err(bad("a number must come before each unit"));
        }
        let number: SimMs = text[digits_start..i]
            .parse()
            .map_err(|_| bad("number too large"))?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let (rank, unit_ms) = match &text[unit_start..i] {
            "d" => (0, DAY),
            "h" => (1, HOUR),
            "m" => (2, MINUTE),
            "s" => (3, SECOND),
            "ms" => (4, 1),
            "" => return Err(bad("missing unit after a number")),
            other => return Err(bad(&format!("unknown unit {other:?} (use d, h, m, s, ms)"))),
        };
        if last_rank != usize::MAX && rank <= last_rank {
            return Err(bad("units must go from largest to smallest, each once"));
        }
        last_rank = rank;
        total = number
            .checked_mul(unit_ms)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| bad("too large"))?;
    }
    Ok(total)
}

/// Formats a duration the way [`parse_duration`] reads it: "1h30m", "500ms",
/// "1d2h", "0s"; negative values get a leading "-".
pub fn format_duration(ms: SimMs) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let sign = if ms < 0 { "-" } else { "" };
    let mut rest = ms.unsigned_abs();
    let mut out = String::from(sign);
    for (unit, size) in [
        ("d", DAY),
        ("h", HOUR),
        ("m", MINUTE),
        ("s", SECOND),
        ("ms", 1),
    ] {
        let size = size as u64;
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Parsing schedule files

/// Reads a fault schedule (see the module docs for the format), resolving
/// node selectors against `topology`. The events come back sorted by `at`
/// (stably: equal times keep file order). Errors name the fault (1-based, in
/// file order) and the field, e.g. `fault #2 (crash at 2h): node: …`.
///
/// Besides each fault's own fields, the sequence is checked: a node is not
/// crashed twice without a restart between, and not restarted unless it is
/// crashed.
pub fn parse(text: &str, topology: &Topology) -> Result<Vec<FaultEvent>, String> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("fault schedule is not valid TOML: {e}"))?;
    if let Some(key) = table.keys().find(|k| k.as_str() != "fault") {
        return Err(format!(
            "fault schedule: unknown top-level key `{key}` (a schedule is a list of [[fault]] tables)"
        ));
    }
    let faults = match table.get("fault") {
        None => return Ok(Vec::new()),
        Some(toml::Value::Array(a)) => a,
        Some(_) => {
            return Err(
                "fault schedule: `fault` must be a list of tables, written [[fault]]".into(),
            );
        }
    };
    let resolver = Resolver::new(topology);
    let mut events: Vec<(usize, String, FaultEvent)> = Vec::with_capacity(faults.len());
    for (i, value) in faults.iter().enumerate() {
        let number = i + 1;
        let Some(t) = value.as_table() else {
            return Err(format!(
                "fault #{number}: must be a table, written [[fault]]"
            ));
        };
        let mut f = Fields::new(number, t)?;
        let action = f.action(&resolver)?;
        f.finish()?;
        events.push((number, f.context(), FaultEvent { at: f.at, action }));
    }
    events.sort_by_key(|(_, _, e)| e.at);
    check_sequence(&events)?;
    Ok(events.into_iter().map(|(_, _, e)| e).collect())
}

/// [`parse`] of a file; errors start with the path.
pub fn load(path: &Path, topology: &Topology) -> Result<Vec<FaultEvent>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read fault schedule {}: {e}", path.display()))?;
    parse(&text, topology).map_err(|e| format!("{}: {e}", path.display()))
}

/// Crash/restart pairing, in time order.
fn check_sequence(events: &[(usize, String, FaultEvent)]) -> Result<(), String> {
    // node → the fault number that crashed it
    let mut crashed: BTreeMap<u64, (usize, SimMs)> = BTreeMap::new();
    for (number, context, e) in events {
        match e.action {
            FaultAction::Crash { node } => {
                if let Some((by, at)) = crashed.insert(node, (*number, e.at)) {
                    return Err(format!(
                        "fault #{number} ({context}): node: node {node} is already down \
                         (crashed by fault #{by} at {}, not restarted since)",
                        format_duration(at)
                    ));
                }
            }
            FaultAction::Restart { node } if crashed.remove(&node).is_none() => {
                return Err(format!(
                    "fault #{number} ({context}): node: node {node} is not crashed at {}",
                    format_duration(e.at)
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// One `[[fault]]` table being read; remembers which keys were used so
/// unknown ones can be reported.
struct Fields<'a> {
    number: usize,
    table: &'a toml::Table,
    kind: String,
    at: SimMs,
    used: BTreeSet<&'static str>,
}

impl<'a> Fields<'a> {
    fn new(number: usize, table: &'a toml::Table) -> Result<Fields<'a>, String> {
        let kind = match table.get("kind") {
            Some(toml::Value::String(s)) => s.clone(),
            Some(_) => return Err(format!("fault #{number}: kind: must be a string")),
            None => return Err(format!("fault #{number}: kind: missing")),
        };
        let mut f = Fields {
            number,
            table,
            kind,
            at: 0,
            used: BTreeSet::from(["kind", "at"]),
        };
        f.at = match table.get("at") {
            Some(toml::Value::String(s)) => parse_duration(s).map_err(|e| f.err("at", &e))?,
            Some(_) => {
                return Err(f.err("at", "must be a duration string like \"18h\" or \"1h30m\""));
            }
            None => return Err(f.err("at", "missing")),
        };
        Ok(f)
    }

    /// "partition at 18h", for messages.
    fn context(&self) -> String {
        format!("{} at {}", self.kind, format_duration(self.at))
    }

    fn err(&self, field: &str, msg: &str) -> String {
        // `at` is known once those two are read.
        if field != "at" && field != "kind" {
            format!(
                "fault #{} ({}): {field}: {msg}",
                self.number,
                self.context()
            )
        } else {
            format!("fault #{} ({}): {field}: {msg}", self.number, self.kind)
        }
    }

    fn get(&mut self, field: &'static str) -> Result<&'a toml::Value, String> {
        self.used.insert(field);
        self.table
            .get(field)
            .ok_or_else(|| self.err(field, "missing"))
    }

    fn action(&mut self, r: &Resolver<'_>) -> Result<FaultAction, String> {
        Ok(match self.kind.as_str() {
            "partition" => {
                let (a, b, names_a, names_b) = self.sides(r)?;
                let label = match self.table.get("label") {
                    None => format!("{} ↔ {}", r.describe(&names_a), r.describe(&names_b)),
                    Some(toml::Value::String(s)) if !s.trim().is_empty() => s.clone(),
                    Some(_) => return Err(self.err("label", "must be a non-empty string")),
                };
                self.used.insert("label");
                FaultAction::Partition { a, b, label }
            }
            "heal" => FaultAction::Heal,
            "crash" => FaultAction::Crash {
                node: self.node(r)?,
            },
            "restart" => FaultAction::Restart {
                node: self.node(r)?,
            },
            "delay" => {
                let (a, b, _, _) = self.sides(r)?;
                let extra_ms = self.millis("extra_ms", false)?;
                FaultAction::Delay { a, b, extra_ms }
            }
            "loss" => {
                let (a, b, _, _) = self.sides(r)?;
                let permille = self.permille()?;
                FaultAction::Loss { a, b, permille }
            }
            "duplicate" => FaultAction::Duplicate {
                permille: self.permille()?,
            },
            "slow_disk" => {
                let node = self.node(r)?;
                let fsync_ms = self.millis("fsync_ms", false)?;
                FaultAction::SlowDisk { node, fsync_ms }
            }
            "clock_skew" => {
                let node = self.node(r)?;
                let skew_ms = self.millis("skew_ms", true)?;
                FaultAction::ClockSkew { node, skew_ms }
            }
            other => {
                return Err(self.err(
                    "kind",
                    &format!(
                        "unknown kind {other:?} (expected partition, heal, crash, restart, \
                         delay, loss, duplicate, slow_disk or clock_skew)"
                    ),
                ));
            }
        })
    }

    fn finish(&self) -> Result<(), String> {
        if let Some(key) = self.table.keys().find(|k| !self.used.contains(k.as_str())) {
            return Err(self.err(key, &format!("unknown field for kind {:?}", self.kind)));
        }
        Ok(())
    }

    fn node(&mut self, r: &Resolver<'_>) -> Result<u64, String> {
        let v = self.get("node")?;
        let s = match v {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            _ => return Err(self.err("node", "must be a string (node id, site or region)")),
        };
        r.one(&s).map_err(|e| self.err("node", &e))
    }

    /// Both sides, resolved (sorted node ids) and as written.
    #[allow(clippy::type_complexity)]
    fn sides(
        &mut self,
        r: &Resolver<'_>,
    ) -> Result<(Vec<u64>, Vec<u64>, Vec<String>, Vec<String>), String> {
        let (a, names_a) = self.side(r, "between")?;
        let (b, names_b) = self.side(r, "and")?;
        let both: Vec<String> = a
            .iter()
            .filter(|n| b.binary_search(n).is_ok())
            .map(u64::to_string)
            .collect();
        if !both.is_empty() {
            return Err(self.err(
                "and",
                &format!(
                    "the sides must be disjoint, but node(s) {} are on both",
                    both.join(", ")
                ),
            ));
        }
        Ok((a, b, names_a, names_b))
    }

    fn side(
        &mut self,
        r: &Resolver<'_>,
        field: &'static str,
    ) -> Result<(Vec<u64>, Vec<String>), String> {
        let v = self.get(field)?;
        let entries: Vec<String> = match v {
            toml::Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        toml::Value::String(s) => out.push(s.clone()),
                        toml::Value::Integer(i) => out.push(i.to_string()),
                        _ => {
                            return Err(self.err(
                                field,
                                "entries must be strings (node id, site or region prefix)",
                            ));
                        }
                    }
                }
                out
            }
            toml::Value::String(s) => vec![s.clone()],
            _ => return Err(self.err(field, "must be a list of strings, e.g. [\"31\"]")),
        };
        if entries.is_empty() {
            return Err(self.err(field, "selects no node (the list is empty)"));
        }
        let mut nodes = BTreeSet::new();
        for e in &entries {
            nodes.extend(r.many(e).map_err(|msg| self.err(field, &msg))?);
        }
        Ok((nodes.into_iter().collect(), entries))
    }

    fn millis(&mut self, field: &'static str, signed: bool) -> Result<SimMs, String> {
        let v = self.get(field)?;
        let ms = match v {
            toml::Value::Integer(i) => *i,
            toml::Value::String(s) => {
                let (neg, body) = match s.trim().strip_prefix('-') {
                    Some(rest) if signed => (true, rest),
                    _ => (false, s.as_str()),
                };
                let d = parse_duration(body).map_err(|e| self.err(field, &e))?;
                if neg { -d } else { d }
            }
            _ => {
                return Err(self.err(
                    field,
                    "must be an integer (milliseconds) or a duration string like \"2s\"",
                ));
            }
        };
        if ms < 0 && !signed {
            return Err(self.err(field, &format!("must not be negative, got {ms}")));
        }
        Ok(ms)
    }

    fn permille(&mut self) -> Result<u32, String> {
        match self.get("permille")? {
            toml::Value::Integer(i) if (0..=1000).contains(i) => Ok(*i as u32),
            toml::Value::Integer(i) => Err(self.err(
                "permille",
                &format!("must be between 0 and 1000 (‰), got {i}"),
            )),
            _ => Err(self.err("permille", "must be an integer between 0 and 1000 (‰)")),
        }
    }
}

/// Resolves node selectors against a topology.
struct Resolver<'a> {
    topology: &'a Topology,
}

impl<'a> Resolver<'a> {
    fn new(topology: &'a Topology) -> Self {
        Resolver { topology }
    }

    fn id(&self, s: &str) -> Option<u64> {
        let id: u64 = s.parse().ok()?;
        self.topology.node(id).map(|n| n.id)
    }

    fn by_prefix(&self, prefix: &str) -> Vec<u64> {
        let mut out: Vec<u64> = self
            .topology
            .nodes
            .iter()
            .filter(|n| !n.region.is_empty() && n.region.starts_with(prefix))
            .map(|n| n.id)
            .collect();
        out.sort_unstable();
        out
    }

    fn by_exact_region(&self, region: &str) -> Vec<u64> {
        let mut out: Vec<u64> = self
            .topology
            .nodes
            .iter()
            .filter(|n| n.region == region)
            .map(|n| n.id)
            .collect();
        out.sort_unstable();
        out
    }

    fn sites_hint(&self) -> String {
        let sites = self.topology.sites();
        if sites.len() <= 12 {
            format!("known sites: {}", sites.join(", "))
        } else {
            format!("{} sites, e.g. {}", sites.len(), sites[..6].join(", "))
        }
    }

    /// A side entry: one or more nodes.
    fn many(&self, entry: &str) -> Result<Vec<u64>, String> {
        let e = entry.trim();
        if e.is_empty() {
            return Err("\"\" is not allowed: name the national node by its id or site".into());
        }
        let digits = e.bytes().all(|b| b.is_ascii_digit());
        if let Some(id) = e.strip_prefix("node:") {
            return self
                .id(id)
                .map(|n| vec![n])
                .ok_or_else(|| format!("{entry:?}: no node with id {id:?}"));
        }
        if let Some(site) = e.strip_prefix("site:") {
            let nodes = self.topology.nodes_at_site(site);
            if nodes.is_empty() {
                return Err(format!(
                    "{entry:?}: no node at site {site:?} ({})",
                    self.sites_hint()
                ));
            }
            return Ok(nodes);
        }
        if let Some(prefix) = e.strip_prefix("region:") {
            if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("{entry:?}: a region prefix is one or more digits"));
            }
            let nodes = self.by_prefix(prefix);
            if nodes.is_empty() {
                return Err(format!("{entry:?}: no node's region starts with {prefix}"));
            }
            return Ok(nodes);
        }
        if digits {
            if e.len() >= 2 {
                let nodes = self.by_prefix(e);
                if !nodes.is_empty() {
                    return Ok(nodes);
                }
            }
            return self.id(e).map(|n| vec![n]).ok_or_else(|| {
                if e.len() >= 2 {
                    format!("{entry:?}: no node's region starts with {e}, and no node has id {e}")
                } else {
                    format!("{entry:?}: no node with id {e}")
                }
            });
        }
        let nodes = self.topology.nodes_at_site(e);
        if nodes.is_empty() {
            return Err(format!(
                "{entry:?}: not a node id, region prefix or site ({})",
                self.sites_hint()
            ));
        }
        Ok(nodes)
    }

    /// A `node` field: exactly one node.
    fn one(&self, entry: &str) -> Result<u64, String> {
        let e = entry.trim();
        if e.is_empty() {
            return Err("\"\" is not allowed: name the node by id, site or region".into());
        }
        let exactly_one = |what: &str, nodes: Vec<u64>| match nodes.as_slice() {
            [n] => Ok(*n),
            [] => Err(format!("{entry:?}: no node {what}")),
            many => Err(format!(
                "{entry:?}: {} nodes {what} ({}); name one node",
                many.len(),
                list_ids(many)
            )),
        };
        if let Some(id) = e.strip_prefix("node:") {
            return self
                .id(id)
                .ok_or_else(|| format!("{entry:?}: no node with id {id:?}"));
        }
        if let Some(site) = e.strip_prefix("site:") {
            return exactly_one(
                &format!("at site {site:?}"),
                self.topology.nodes_at_site(site),
            );
        }
        if let Some(region) = e.strip_prefix("region:") {
            return exactly_one(
                &format!("with region {region:?}"),
                self.by_exact_region(region),
            );
        }
        // Bare: every reading, then they must agree on one node.
        let mut readings: Vec<(u64, String)> = Vec::new();
        if let Some(id) = self.id(e) {
            readings.push((id, format!("node:{id}")));
        }
        for id in self.topology.nodes_at_site(e) {
            readings.push((id, format!("site:{e} (node {id})")));
        }
        for id in self.by_exact_region(e) {
            readings.push((id, format!("region:{e} (node {id})")));
        }
        let distinct: BTreeSet<u64> = readings.iter().map(|(id, _)| *id).collect();
        match distinct.len() {
            1 => Ok(*distinct.first().expect("one")),
            0 => Err(format!(
                "{entry:?}: no node has this id, site or region ({})",
                self.sites_hint()
            )),
            _ => {
                let options: Vec<&str> = readings.iter().map(|(_, r)| r.as_str()).collect();
                Err(format!(
                    "{entry:?} is ambiguous: it names {} different nodes ({}); write one of {}",
                    distinct.len(),
                    list_ids(&distinct.iter().copied().collect::<Vec<_>>()),
                    options.join(", ")
                ))
            }
        }
    }

    /// A side as written, for a default label: "31 上海市 + 7".
    fn describe(&self, entries: &[String]) -> String {
        entries
            .iter()
            .map(|e| {
                let code = e.strip_prefix("region:").unwrap_or(e);
                match regions().get(code) {
                    Ok(_) if !self.by_prefix(code).is_empty() => regions().label(code),
                    _ => e.clone(),
                }
            })
            .collect::<Vec<_>>()
            .join(" + ")
    }
}

fn list_ids(ids: &[u64]) -> String {
    const SHOWN: usize = 8;
    let mut s: Vec<String> = ids.iter().take(SHOWN).map(u64::to_string).collect();
    if ids.len() > SHOWN {
        s.push(format!("… {} more", ids.len() - SHOWN));
    }
    s.join(", ")
}

// ---------------------------------------------------------------------------
// Describing schedules (for the report and for attributing missed deadlines)

/// One fault from its start to the event that ends it.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultSpan {
    pub start: SimMs,
    /// `None`: still in force when the schedule ends.
    pub end: Option<SimMs>,
    /// partition | crash | delay | loss | duplicate | slow_disk | clock_skew
    pub kind: &'static str,
    /// [`describe`] of the starting action.
    pub label: String,
}

/// The kind name of an action, as written in schedule files.
pub fn kind_name(action: &FaultAction) -> &'static str {
    match action {
        FaultAction::Partition { .. } => "partition",
        FaultAction::Heal => "heal",
        FaultAction::Crash { .. } => "crash",
        FaultAction::Restart { .. } => "restart",
        FaultAction::Delay { .. } => "delay",
        FaultAction::Loss { .. } => "loss",
        FaultAction::Duplicate { .. } => "duplicate",
        FaultAction::SlowDisk { .. } => "slow_disk",
        FaultAction::ClockSkew { .. } => "clock_skew",
    }
}

fn side_text(ids: &[u64]) -> String {
    if ids.len() <= 4 {
        ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
    } else {
        format!("{} 个节点 (nodes)", ids.len())
    }
}

/// A one-line operator's description, Chinese with English in parentheses:
/// "分区 (partition) 31 上海市 ↔ 32 江苏省", "宕机 (crash) 节点 (node) 6".
pub fn describe(action: &FaultAction) -> String {
    match action {
        FaultAction::Partition { label, .. } => format!("分区 (partition) {label}"),
        FaultAction::Heal => "恢复网络 (heal)".into(),
        FaultAction::Crash { node } => format!("宕机 (crash) 节点 (node) {node}"),
        FaultAction::Restart { node } => format!("重启 (restart) 节点 (node) {node}"),
        FaultAction::Delay { a, b, extra_ms } => format!(
            "延迟 (delay) +{} {} ↔ {}",
            format_duration(*extra_ms),
            side_text(a),
            side_text(b)
        ),
        FaultAction::Loss { a, b, permille } => format!(
            "丢包 (loss) {permille}‰ {} ↔ {}",
            side_text(a),
            side_text(b)
        ),
        FaultAction::Duplicate { permille } => format!("重复/乱序 (duplicate) {permille}‰"),
        FaultAction::SlowDisk { node, fsync_ms } => format!(
            "慢盘 (slow disk) 节点 (node) {node} fsync {}",
            format_duration(*fsync_ms)
        ),
        FaultAction::ClockSkew { node, skew_ms } => format!(
            "时钟偏移 (clock skew) 节点 (node) {node} {}{}",
            if *skew_ms > 0 { "+" } else { "" },
            format_duration(*skew_ms)
        ),
    }
}

/// Pairs each fault with the event that ends it (see the module docs), in
/// order of start (events must be sorted by `at`). Events that only end
/// faults (heal, restart, zero settings) produce no span of their own.
pub fn spans(faults: &[FaultEvent]) -> Vec<FaultSpan> {
    let mut out: Vec<FaultSpan> = Vec::new();
    // Open spans, by what ends them.
    let mut network: Vec<usize> = Vec::new();
    let mut duplicate: Option<usize> = None;
    let mut crashed: BTreeMap<u64, usize> = BTreeMap::new();
    let mut slow: BTreeMap<u64, usize> = BTreeMap::new();
    let mut skew: BTreeMap<u64, usize> = BTreeMap::new();
    let close = |out: &mut Vec<FaultSpan>, i: Option<usize>, at: SimMs| {
        if let Some(i) = i {
            out[i].end = Some(at);
        }
    };
    for e in faults {
        let open = |out: &mut Vec<FaultSpan>| {
            out.push(FaultSpan {
                start: e.at,
                end: None,
                kind: kind_name(&e.action),
                label: describe(&e.action),
            });
            out.len() - 1
        };
        match &e.action {
            FaultAction::Partition { .. }
            | FaultAction::Delay { .. }
            | FaultAction::Loss { .. } => {
                let i = open(&mut out);
                network.push(i);
            }
            FaultAction::Heal => {
                for i in network.drain(..) {
                    close(&mut out, Some(i), e.at);
                }
                close(&mut out, duplicate.take(), e.at);
            }
            FaultAction::Duplicate { permille } => {
                close(&mut out, duplicate.take(), e.at);
                if *permille > 0 {
                    duplicate = Some(open(&mut out));
                }
            }
            FaultAction::Crash { node } => {
                if !crashed.contains_key(node) {
                    let i = open(&mut out);
                    crashed.insert(*node, i);
                }
            }
            FaultAction::Restart { node } => close(&mut out, crashed.remove(node), e.at),
            FaultAction::SlowDisk { node, fsync_ms } => {
                close(&mut out, slow.remove(node), e.at);
                if *fsync_ms > 0 {
                    let i = open(&mut out);
                    slow.insert(*node, i);
                }
            }
            FaultAction::ClockSkew { node, skew_ms } => {
                close(&mut out, skew.remove(node), e.at);
                if *skew_ms != 0 {
                    let i = open(&mut out);
                    skew.insert(*node, i);
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Random schedules

/// An inclusive time window.
#[derive(Clone, Copy, Debug)]
struct Window {
    start: SimMs,
    end: SimMs,
}

impl Window {
    fn overlaps(&self, o: &Window) -> bool {
        self.start <= o.end && o.start <= self.end
    }
}

/// A random schedule for swarm testing, deterministic from `seed`: up to
/// `max_faults` faults drawn from partitions (random halves of the sites, one
/// site cut off, or province against province), crashes with restarts,
/// message loss, delay, duplication, slow disks and clock skew.
///
/// Every fault is over (healed, restarted, set back to 0) strictly before
/// `duration_ms − settle_ms`, so each run ends with a quiet period. Network
/// faults (partition, delay, loss) come in non-overlapping episodes that each
/// end with one `Heal`; faults of one episode may overlap. No two voters of
/// one group are ever crashed at the same time, so every group keeps a
/// majority (for groups of three or more voters) and runs make progress.
/// Sorted by `at`. Empty when there is no room (`duration − settle` under
/// 2 s), no node, or `max_faults` is 0.
pub fn random(
    topology: &Topology,
    seed: u64,
    duration_ms: SimMs,
    settle_ms: SimMs,
    max_faults: usize,
) -> Vec<FaultEvent> {
    let limit = duration_ms.saturating_sub(settle_ms.max(0));
    if limit < 2 * SECOND || topology.nodes.is_empty() || max_faults == 0 {
        return Vec::new();
    }
    // "faults" in ASCII: keeps this stream apart from the engine's, which is
    // seeded from the same number.
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6661_756c_7473);
    let mut g = Generator::new(topology, limit);
    let wanted = rng.gen_range(1..=max_faults);
    for _ in 0..wanted {
        for _attempt in 0..8 {
            if g.try_one(&mut rng) {
                break;
            }
        }
    }
    g.finish()
}

struct Generator<'a> {
    topology: &'a Topology,
    limit: SimMs,
    min_len: SimMs,
    max_len: SimMs,
    /// Node ids, sorted.
    nodes: Vec<u64>,
    sites: Vec<String>,
    /// site → its nodes, sorted.
    site_nodes: BTreeMap<String, Vec<u64>>,
    /// Distinct province codes (first two digits of node regions), sorted.
    provinces: Vec<String>,
    /// node → the other voters of every group it votes in.
    co_voters: BTreeMap<u64, BTreeSet<u64>>,
    events: Vec<FaultEvent>,
    episodes: Vec<Window>,
    duplicate: Vec<Window>,
    crashes: BTreeMap<u64, Vec<Window>>,
    slow: BTreeMap<u64, Vec<Window>>,
    skew: BTreeMap<u64, Vec<Window>>,
}

impl<'a> Generator<'a> {
    fn new(topology: &'a Topology, limit: SimMs) -> Self {
        let mut nodes: Vec<u64> = topology.nodes.iter().map(|n| n.id).collect();
        nodes.sort_unstable();
        let provinces: BTreeSet<String> = topology
            .nodes
            .iter()
            .filter(|n| n.region.len() >= 2)
            .map(|n| n.region[..2].to_string())
            .collect();
        let mut co_voters: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        for g in &topology.groups {
            for &v in &g.voters {
                let set = co_voters.entry(v).or_default();
                set.extend(g.voters.iter().copied().filter(|&o| o != v));
            }
        }
        let mut site_nodes: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for n in &topology.nodes {
            site_nodes.entry(n.site.clone()).or_default().push(n.id);
        }
        for v in site_nodes.values_mut() {
            v.sort_unstable();
        }
        let min_len = SECOND.min(limit / 4).max(1);
        Generator {
            topology,
            limit,
            min_len,
            max_len: (limit / 3).max(min_len),
            nodes,
            sites: topology.sites(),
            site_nodes,
            provinces: provinces.into_iter().collect(),
            co_voters,
            events: Vec::new(),
            episodes: Vec::new(),
            duplicate: Vec::new(),
            crashes: BTreeMap::new(),
            slow: BTreeMap::new(),
            skew: BTreeMap::new(),
        }
    }

    /// A window inside [0, limit): a start, then a length drawn from
    /// doubling buckets (short and long faults equally likely per bucket),
    /// integer-only so it is the same on every machine.
    fn window(&self, rng: &mut StdRng) -> Window {
        let start = rng.gen_range(0..self.limit - self.min_len);
        let mut buckets = vec![self.min_len];
        while let Some(&b) = buckets.last() {
            match b.checked_mul(2) {
                Some(n) if n <= self.max_len => buckets.push(n),
                _ => break,
            }
        }
        let lo = buckets[rng.gen_range(0..buckets.len())];
        let hi = lo.saturating_mul(2).min(self.max_len).max(lo);
        let len = rng.gen_range(lo..=hi);
        Window {
            start,
            end: (start + len).min(self.limit - 1),
        }
    }

    fn free(windows: &[Window], w: &Window) -> bool {
        !windows.iter().any(|o| o.overlaps(w))
    }

    fn push(&mut self, at: SimMs, action: FaultAction) {
        self.events.push(FaultEvent { at, action });
    }

    fn try_one(&mut self, rng: &mut StdRng) -> bool {
        let network_possible = self.nodes.len() >= 2;
        // Weights: partition 25, crash 25, loss 10, delay 10, duplicate 10,
        // slow disk 10, clock skew 10.
        let roll = rng.gen_range(0..100);
        match roll {
            0..25 if network_possible => self.network(rng, NetKind::Partition),
            0..25 => self.crash(rng),
            25..50 => self.crash(rng),
            50..60 if network_possible => self.network(rng, NetKind::Loss),
            60..70 if network_possible => self.network(rng, NetKind::Delay),
            50..70 => self.crash(rng),
            70..80 => self.duplicate(rng),
            80..90 => self.slow_disk(rng),
            _ => self.clock_skew(rng),
        }
    }

    fn network(&mut self, rng: &mut StdRng, kind: NetKind) -> bool {
        let mut w = self.window(rng);
        // Start inside an existing episode: join it (ends at its heal).
        // Otherwise open a new episode, cut short before the next one.
        let inside = self
            .episodes
            .iter()
            .any(|e| e.start <= w.start && w.start < e.end);
        if !inside {
            if let Some(next) = self
                .episodes
                .iter()
                .filter(|e| e.start > w.start)
                .map(|e| e.start)
                .min()
            {
                w.end = w.end.min(next - 1);
            }
            if w.end <= w.start || !Self::free(&self.episodes, &w) {
                return false;
            }
        }
        let (a, b, label) = self.sides(rng);
        let action = match kind {
            NetKind::Partition => FaultAction::Partition { a, b, label },
            NetKind::Delay => FaultAction::Delay {
                a,
                b,
                extra_ms: rng.gen_range(10..=5_000),
            },
            NetKind::Loss => FaultAction::Loss {
                a,
                b,
                permille: rng.gen_range(10..=500),
            },
        };
        self.push(w.start, action);
        if !inside {
            self.episodes.push(w);
        }
        true
    }

    /// Two disjoint, non-empty sides and a label. Needs ≥ 2 nodes.
    fn sides(&self, rng: &mut StdRng) -> (Vec<u64>, Vec<u64>, String) {
        let mode = if self.provinces.len() >= 2 {
            rng.gen_range(0..3)
        } else if self.sites.len() >= 2 {
            rng.gen_range(1..3)
        } else {
            3
        };
        match mode {
            0 => {
                let i = rng.gen_range(0..self.provinces.len());
                let mut j = rng.gen_range(0..self.provinces.len() - 1);
                if j >= i {
                    j += 1;
                }
                let (p, q) = (&self.provinces[i], &self.provinces[j]);
                let side = |p: &str| -> Vec<u64> {
                    let mut v: Vec<u64> = self
                        .topology
                        .nodes
                        .iter()
                        .filter(|n| n.region.starts_with(p))
                        .map(|n| n.id)
                        .collect();
                    v.sort_unstable();
                    v
                };
                let name = |p: &str| regions().label(p);
                (side(p), side(q), format!("{} ↔ {}", name(p), name(q)))
            }
            1 => {
                let mut sites = self.sites.clone();
                sites.shuffle(rng);
                let k = sites.len() / 2;
                let nodes_of = |ss: &[String]| -> Vec<u64> {
                    let mut v: Vec<u64> = ss
                        .iter()
                        .flat_map(|s| self.site_nodes[s].iter().copied())
                        .collect();
                    v.sort_unstable();
                    v
                };
                let (x, y) = sites.split_at(k);
                (
                    nodes_of(x),
                    nodes_of(y),
                    format!(
                        "随机半数站点 (random halves of sites) {}|{}",
                        x.len(),
                        y.len()
                    ),
                )
            }
            2 => {
                let site = &self.sites[rng.gen_range(0..self.sites.len())];
                let a = self.site_nodes[site].clone();
                let b: Vec<u64> = self
                    .nodes
                    .iter()
                    .copied()
                    .filter(|n| a.binary_search(n).is_err())
                    .collect();
                (a, b, format!("站点 {site} 隔离 (site {site} cut off)"))
            }
            _ => {
                // One site only: random halves of the nodes.
                let mut nodes = self.nodes.clone();
                nodes.shuffle(rng);
                let (x, y) = nodes.split_at(nodes.len() / 2);
                let (mut x, mut y) = (x.to_vec(), y.to_vec());
                x.sort_unstable();
                y.sort_unstable();
                let label = format!(
                    "随机半数节点 (random halves of nodes) {}|{}",
                    x.len(),
                    y.len()
                );
                (x, y, label)
            }
        }
    }

    fn pick_node(&self, rng: &mut StdRng) -> u64 {
        self.nodes[rng.gen_range(0..self.nodes.len())]
    }

    fn crash(&mut self, rng: &mut StdRng) -> bool {
        let node = self.pick_node(rng);
        let w = self.window(rng);
        let busy = |n: u64| self.crashes.get(&n).is_some_and(|ws| !Self::free(ws, &w));
        if busy(node) {
            return false;
        }
        if let Some(others) = self.co_voters.get(&node)
            && others.iter().any(|&o| busy(o))
        {
            return false;
        }
        self.crashes.entry(node).or_default().push(w);
        self.push(w.start, FaultAction::Crash { node });
        self.push(w.end, FaultAction::Restart { node });
        true
    }

    fn duplicate(&mut self, rng: &mut StdRng) -> bool {
        let w = self.window(rng);
        if !Self::free(&self.duplicate, &w) {
            return false;
        }
        self.duplicate.push(w);
        let permille = rng.gen_range(10..=300);
        self.push(w.start, FaultAction::Duplicate { permille });
        self.push(w.end, FaultAction::Duplicate { permille: 0 });
        true
    }

    fn slow_disk(&mut self, rng: &mut StdRng) -> bool {
        let node = self.pick_node(rng);
        let w = self.window(rng);
        let ws = self.slow.entry(node).or_default();
        if !Self::free(ws, &w) {
            return false;
        }
        ws.push(w);
        let fsync_ms = rng.gen_range(10..=2_000);
        self.push(w.start, FaultAction::SlowDisk { node, fsync_ms });
        self.push(w.end, FaultAction::SlowDisk { node, fsync_ms: 0 });
        true
    }

    fn clock_skew(&mut self, rng: &mut StdRng) -> bool {
        let node = self.pick_node(rng);
        let w = self.window(rng);
        let ws = self.skew.entry(node).or_default();
        if !Self::free(ws, &w) {
            return false;
        }
        ws.push(w);
        let size = rng.gen_range(100..=10 * MINUTE);
        let skew_ms = if rng.gen_bool(0.5) { size } else { -size };
        self.push(w.start, FaultAction::ClockSkew { node, skew_ms });
        self.push(w.end, FaultAction::ClockSkew { node, skew_ms: 0 });
        true
    }

    fn finish(mut self) -> Vec<FaultEvent> {
        for e in std::mem::take(&mut self.episodes) {
            self.push(e.end, FaultAction::Heal);
        }
        self.events.sort_by_key(|e| e.at);
        self.events
    }
}

#[derive(Clone, Copy)]
enum NetKind {
    Partition,
    Delay,
    Loss,
}

// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> Topology {
        Topology::demo()
    }

    const SH_JS: &str = include_str!("../data/faults/sh-js-partition.toml");
    const DEMO_SH_JS: &str = include_str!("../data/faults/demo-sh-js-partition.toml");
    const CRASH: &str = include_str!("../data/faults/district-crash-restart.toml");

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Ok(24 * HOUR));
        assert_eq!(parse_duration("90s"), Ok(90 * SECOND));
        assert_eq!(parse_duration("1h30m"), Ok(90 * MINUTE));
        assert_eq!(parse_duration("500ms"), Ok(500));
        assert_eq!(parse_duration("1d2h"), Ok(26 * HOUR));
        assert_eq!(
            parse_duration("2h10m5s20ms"),
            Ok(2 * HOUR + 10 * MINUTE + 5_020)
        );
        assert_eq!(parse_duration(" 15m "), Ok(15 * MINUTE));
        assert_eq!(parse_duration("0"), Ok(0));
        for bad in [
            "",
            "5",
            "h",
            "1x",
            "30m1h",
            "1h1h",
            "-5m",
            "1.5h",
            "1h 30m",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
        for ms in [
            0,
            1,
            500,
            90 * SECOND,
            90 * MINUTE,
            26 * HOUR + 5,
            -3 * SECOND,
        ] {
            let text = format_duration(ms);
            let back = match text.strip_prefix('-') {
                Some(rest) => -parse_duration(rest).unwrap(),
                None => parse_duration(&text).unwrap(),
            };
            assert_eq!(back, ms, "{text}");
        }
        assert_eq!(format_duration(2 * HOUR + 10 * MINUTE), "2h10m");
    }

    #[test]
    fn shipped_partition_file() {
        let events = parse(DEMO_SH_JS, &demo()).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].at, 10 * HOUR);
        match &events[0].action {
            FaultAction::Partition { a, b, label } => {
                assert_eq!(
                    a,
                    &vec![3, 5, 8],
                    "32 = 江苏: its province, city and district"
                );
                assert_eq!(b, &vec![1, 2, 4, 6, 7], "上海 (31) and the national site");
                assert!(label.contains("上海") && label.contains("江苏"), "{label}");
            }
            other => panic!("expected a partition, got {other:?}"),
        }
        assert_eq!(
            events[1],
            FaultEvent {
                at: 14 * HOUR,
                action: FaultAction::Heal
            }
        );
        let spans = spans(&events);
        assert_eq!(spans.len(), 1);
        assert_eq!((spans[0].start, spans[0].end), (10 * HOUR, Some(14 * HOUR)));
    }

    #[test]
    fn shipped_crash_file() {
        let events = parse(CRASH, &demo()).unwrap();
        let actions: Vec<(SimMs, FaultAction)> =
            events.iter().map(|e| (e.at, e.action.clone())).collect();
        assert!(actions.contains(&(2 * HOUR, FaultAction::Crash { node: 6 })));
        assert!(actions.contains(&(2 * HOUR + 10 * MINUTE, FaultAction::Restart { node: 6 })));
        assert!(events.windows(2).all(|w| w[0].at <= w[1].at));
        // Every fault in the example ends.
        assert!(
            spans(&events).iter().all(|s| s.end.is_some()),
            "{:?}",
            spans(&events)
        );
    }

    fn one(kind_and_fields: &str) -> Result<Vec<FaultEvent>, String> {
        parse(
            &format!("[[fault]]\nat = \"1h\"\n{kind_and_fields}\n"),
            &demo(),
        )
    }

    #[test]
    fn selectors() {
        let sides = |between: &str, and: &str| match one(&format!(
            "kind = \"partition\"\nbetween = {between}\nand = {and}"
        )) {
            Ok(e) => match &e[0].action {
                FaultAction::Partition { a, b, .. } => Ok((a.clone(), b.clone())),
                _ => unreachable!(),
            },
            Err(e) => Err(e),
        };
        assert_eq!(
            sides(r#"["31"]"#, r#"["32"]"#),
            Ok((vec![2, 4, 6, 7], vec![3, 5, 8]))
        );
        assert_eq!(
            sides(r#"["3101"]"#, r#"["3", "8"]"#).unwrap().0,
            vec![4, 6, 7]
        );
        // "7" is a node id; a site name; explicit forms.
        assert_eq!(sides(r#"["7"]"#, r#"["beijing"]"#), Ok((vec![7], vec![1])));
        // site:taicang (8) is also in region 3205: the sides overlap.
        let e = sides(r#"["node:2", "site:taicang"]"#, r#"["region:3205"]"#).unwrap_err();
        assert!(e.contains("node(s) 8"), "{e}");
        assert_eq!(
            sides(r#"["node:2", "site:jiading"]"#, r#"["region:3205"]"#),
            Ok((vec![2, 6], vec![5, 8]))
        );
        // Errors.
        let e = sides(r#"["31"]"#, r#"["3101"]"#).unwrap_err();
        assert!(
            e.contains("fault #1") && e.contains("and:") && e.contains("disjoint"),
            "{e}"
        );
        let e = sides(r#"["33"]"#, r#"["32"]"#).unwrap_err();
        assert!(e.contains("between:") && e.contains("33"), "{e}");
        let e = sides(r#"[""]"#, r#"["32"]"#).unwrap_err();
        assert!(e.contains("between:") && e.contains("not allowed"), "{e}");
        let e = sides("[]", r#"["32"]"#).unwrap_err();
        assert!(e.contains("between:") && e.contains("empty"), "{e}");
        let e = sides(r#"["31"]"#, r#"["nowhere"]"#).unwrap_err();
        assert!(e.contains("and:") && e.contains("nowhere"), "{e}");
    }

    #[test]
    fn single_node_field() {
        let node = |sel: &str| {
            one(&format!(
                "kind = \"slow_disk\"\nnode = \"{sel}\"\nfsync_ms = 50"
            ))
            .map(|e| match e[0].action {
                FaultAction::SlowDisk { node, fsync_ms } => {
                    assert_eq!(fsync_ms, 50);
                    node
                }
                _ => unreachable!(),
            })
        };
        assert_eq!(node("310114"), Ok(6));
        assert_eq!(node("6"), Ok(6));
        assert_eq!(node("jiading"), Ok(6));
        assert_eq!(node("region:320585"), Ok(8));
        assert_eq!(node("site:beijing"), Ok(1));
        let e = node("31x").unwrap_err();
        assert!(e.contains("fault #1") && e.contains("node:"), "{e}");
        // Ambiguity: a site named like another node's id.
        let mut topo = demo();
        topo.nodes[1].site = "8".into(); // node 2 now at site "8"; node 8 exists
        let e = parse(
            "[[fault]]\nat = \"1h\"\nkind = \"crash\"\nnode = \"8\"\n",
            &topo,
        )
        .unwrap_err();
        assert!(
            e.contains("ambiguous") && e.contains("node:8") && e.contains("site:8"),
            "{e}"
        );
        assert_eq!(
            parse(
                "[[fault]]\nat = \"1h\"\nkind = \"crash\"\nnode = \"node:8\"\n",
                &topo
            )
            .unwrap()[0]
                .action,
            FaultAction::Crash { node: 8 }
        );
    }

    #[test]
    fn errors_name_fault_and_field() {
        let cases = [
            ("kind = \"crash\"", "node:", "missing"),
            ("kind = \"explode\"", "kind:", "unknown kind"),
            ("kind = \"heal\"\nnode = \"6\"", "node:", "unknown field"),
            (
                "kind = \"loss\"\nbetween = [\"31\"]\nand = [\"32\"]\npermille = 2000",
                "permille:",
                "1000",
            ),
            (
                "kind = \"delay\"\nbetween = [\"31\"]\nand = [\"32\"]\nextra_ms = -5",
                "extra_ms:",
                "negative",
            ),
            ("kind = \"duplicate\"", "permille:", "missing"),
        ];
        for (body, field, why) in cases {
            let e = parse(
                &format!(
                    "[[fault]]\nat = \"1h\"\nkind = \"heal\"\n[[fault]]\nat = \"2h\"\n{body}\n"
                ),
                &demo(),
            )
            .unwrap_err();
            assert!(
                e.starts_with("fault #2") && e.contains(field) && e.contains(why),
                "{body}: {e}"
            );
        }
        let e = parse("[[fault]]\nat = \"soon\"\nkind = \"heal\"\n", &demo()).unwrap_err();
        assert!(e.contains("fault #1") && e.contains("at:"), "{e}");
        let e = parse("[[fault]]\nkind = \"heal\"\n", &demo()).unwrap_err();
        assert!(e.contains("at:") && e.contains("missing"), "{e}");
        let e = parse("faults = 1\n", &demo()).unwrap_err();
        assert!(e.contains("unknown top-level key"), "{e}");
        assert!(parse("[[fault]\n", &demo()).unwrap_err().contains("TOML"));
        // Sequence: restart before crash (after sorting by time).
        let e = parse(
            "[[fault]]\nat = \"3h\"\nkind = \"crash\"\nnode = \"6\"\n\
             [[fault]]\nat = \"2h\"\nkind = \"restart\"\nnode = \"6\"\n",
            &demo(),
        )
        .unwrap_err();
        assert!(e.contains("fault #2") && e.contains("not crashed"), "{e}");
        let e = parse(
            "[[fault]]\nat = \"1h\"\nkind = \"crash\"\nnode = \"6\"\n\
             [[fault]]\nat = \"2h\"\nkind = \"crash\"\nnode = \"jiading\"\n",
            &demo(),
        )
        .unwrap_err();
        assert!(e.contains("fault #2") && e.contains("already down"), "{e}");
    }

    #[test]
    fn every_kind_parses_and_sorts_stably() {
        let text = r#"
            [[fault]]
            at = "3h"
            kind = "clock_skew"
            node = "7"
            skew_ms = "-5m"
            [[fault]]
            at = "1h"
            kind = "delay"
            between = ["31"]
            and = ["32"]
            extra_ms = "2s"
            [[fault]]
            at = "1h"
            kind = "loss"
            between = ["310114"]
            and = ["310101"]
            permille = 100
            [[fault]]
            at = "0"
            kind = "duplicate"
            permille = 50
            [[fault]]
            at = "4h"
            kind = "heal"
        "#;
        let events = parse(text, &demo()).unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| kind_name(&e.action)).collect();
        assert_eq!(kinds, ["duplicate", "delay", "loss", "clock_skew", "heal"]);
        assert_eq!(
            events[1].action,
            FaultAction::Delay {
                a: vec![2, 4, 6, 7],
                b: vec![3, 5, 8],
                extra_ms: 2_000
            }
        );
        assert_eq!(
            events[3].action,
            FaultAction::ClockSkew {
                node: 7,
                skew_ms: -300_000
            }
        );
        let s = spans(&events);
        assert_eq!(s.len(), 4);
        assert!(
            s.iter()
                .filter(|s| s.kind != "clock_skew")
                .all(|s| s.end == Some(4 * HOUR))
        );
        assert_eq!(s.iter().find(|s| s.kind == "clock_skew").unwrap().end, None);
        assert!(parse("", &demo()).unwrap().is_empty());
    }

    /// Replays a schedule; checks the crash rule as it goes and returns what
    /// is still in force after the last event.
    fn replay(topology: &Topology, events: &[FaultEvent]) -> (usize, BTreeSet<u64>, bool) {
        let mut network = 0usize;
        let mut crashed = BTreeSet::new();
        let mut dup = false;
        let mut slow = BTreeSet::new();
        let mut skew = BTreeSet::new();
        for e in events {
            match &e.action {
                FaultAction::Partition { a, b, .. }
                | FaultAction::Delay { a, b, .. }
                | FaultAction::Loss { a, b, .. } => {
                    assert!(!a.is_empty() && !b.is_empty());
                    assert!(a.iter().all(|n| !b.contains(n)), "sides overlap: {e:?}");
                    network += 1;
                }
                FaultAction::Heal => network = 0,
                FaultAction::Crash { node } => {
                    assert!(crashed.insert(*node), "{node} crashed twice");
                    for g in &topology.groups {
                        let down = g.voters.iter().filter(|v| crashed.contains(v)).count();
                        assert!(
                            down <= 1,
                            "two voters of group {:?} down at {}",
                            g.region,
                            e.at
                        );
                    }
                }
                FaultAction::Restart { node } => assert!(crashed.remove(node)),
                FaultAction::Duplicate { permille } => dup = *permille > 0,
                FaultAction::SlowDisk { node, fsync_ms } => {
                    if *fsync_ms > 0 {
                        assert!(slow.insert(*node));
                    } else {
                        assert!(slow.remove(node));
                    }
                }
                FaultAction::ClockSkew { node, skew_ms } => {
                    if *skew_ms != 0 {
                        assert!(skew.insert(*node));
                    } else {
                        assert!(skew.remove(node));
                    }
                }
            }
        }
        let quiet = slow.is_empty() && skew.is_empty() && !dup;
        (network, crashed, quiet)
    }

    #[test]
    fn random_schedules() {
        let province = Topology::generate(hotline_federation::Scope::Province("32"), None).unwrap();
        for topology in [demo(), province] {
            let duration = 24 * HOUR;
            let settle = 2 * HOUR;
            let mut distinct = BTreeSet::new();
            let mut kinds = BTreeSet::new();
            for seed in 0..300 {
                let events = random(&topology, seed, duration, settle, 12);
                assert_eq!(
                    events,
                    random(&topology, seed, duration, settle, 12),
                    "seed {seed}"
                );
                assert!(
                    events.windows(2).all(|w| w[0].at <= w[1].at),
                    "seed {seed} unsorted"
                );
                assert!(
                    events
                        .iter()
                        .all(|e| (0..duration - settle).contains(&e.at))
                );
                let starts = spans(&events);
                assert!(
                    !starts.is_empty() && starts.len() <= 12,
                    "seed {seed}: {}",
                    starts.len()
                );
                assert!(starts.iter().all(|s| s.end.is_some()), "seed {seed}");
                let (network, crashed, quiet) = replay(&topology, &events);
                assert!(
                    network == 0 && crashed.is_empty() && quiet,
                    "seed {seed} ends faulty"
                );
                kinds.extend(starts.iter().map(|s| s.kind));
                distinct.insert(format!("{events:?}"));
            }
            assert!(distinct.len() > 290, "seeds give different schedules");
            assert_eq!(kinds.len(), 7, "every kind appears: {kinds:?}");
        }
        assert!(random(&demo(), 1, 10 * SECOND, 9 * SECOND, 5).is_empty());
        assert!(random(&demo(), 1, 24 * HOUR, 0, 0).is_empty());
        // A tiny but valid window still works.
        let events = random(&demo(), 7, 3 * SECOND, 0, 20);
        assert!(events.iter().all(|e| e.at < 3 * SECOND));
    }

    #[test]
    fn random_on_the_national_topology() {
        let national = Topology::generate(hotline_federation::Scope::National, None).unwrap();
        let (duration, settle) = (24 * HOUR, 2 * HOUR);
        let mut province_pairs = 0;
        for seed in 0..40 {
            let events = random(&national, seed, duration, settle, 30);
            assert_eq!(events, random(&national, seed, duration, settle, 30));
            let (network, crashed, quiet) = replay(&national, &events);
            assert!(network == 0 && crashed.is_empty() && quiet, "seed {seed}");
            province_pairs += events
                .iter()
                .filter(|e| matches!(&e.action, FaultAction::Partition { label, .. } if label.contains('↔')))
                .count();
        }
        assert!(
            province_pairs > 0,
            "province-against-province partitions occur"
        );
        // The shipped files on the real topology: "31" is 上海's region
        // prefix even though a node 31 exists; "310114" is one node.
        assert!(national.node(31).is_some());
        let events = parse(SH_JS, &national).unwrap();
        let FaultAction::Partition { a, b, .. } = &events[0].action else {
            panic!("{events:?}")
        };
        let with_prefix = |p: &str| {
            national
                .nodes
                .iter()
                .filter(|n| n.region.starts_with(p))
                .count()
        };
        assert_eq!(a.len(), with_prefix("32"));
        assert!(
            b.len() > with_prefix("31"),
            "上海 and the national group's nodes"
        );
        assert!(a.len() > 50 && b.len() > 10, "{} {}", a.len(), b.len());
        parse(CRASH, &national).unwrap();
    }
}
