//! The placement file: which nodes exist, where they run, and which nodes
//! replicate which region group (voters and learners).
//!
//! Every node and the simulator read the same TOML text (see
//! `topologies/README.md` for the format and `topologies/demo.toml` for the
//! shipped demo federation). Parsing is from `&str`; the only file read is the
//! explicit [`Topology::load`] helper for the command line. Everything else here
//! is pure and deterministic: the same text gives the same topology, the same
//! scope gives the same generated placement, and every list is in a fixed
//! order.
//!
//! Group ids: a region group is identified by its region code read as a number
//! ([`group_id`]); the national group is [`NATIONAL_GROUP`] (86). Province (2
//! digits, 11–82), city (4), district (6) and street (9) codes never start with
//! 0, so the ranges are disjoint and the id alone says the level.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{Level, Region, RegionError, regions};

/// The most voters a group may have (Raft groups larger than this only add
/// latency; learners are the way to add readers).
pub const MAX_VOTERS: usize = 7;

/// The shipped demo federation (`topologies/demo.toml`), compiled in so that
/// `hotline demo` needs no file.
pub const DEMO_TOML: &str = include_str!("../topologies/demo.toml");

/// The national group's id. Not 0, because 0 means "unspecified" in every
/// protobuf request that names a group; 86 is China's calling code and no
/// province's code (province codes are 11–82).
pub const NATIONAL_GROUP: u64 = 86;

/// The group id of a region: "" (national) → [`NATIONAL_GROUP`], else the
/// code as a number.
///
/// # Panics
/// If `region` is not "" or a 2/4/6/9-digit code without a leading zero; use
/// [`try_group_id`] for untrusted input. Every region of a validated
/// [`Topology`] is accepted.
pub fn group_id(region: &str) -> u64 {
    try_group_id(region).unwrap_or_else(|| panic!("{region:?} is not a region code"))
}

/// [`group_id`] for untrusted input: `None` unless `region` is "" or a
/// 2/4/6/9-digit code without a leading zero. (It does not check that the code
/// exists; [`Topology::validate`] does.)
pub fn try_group_id(region: &str) -> Option<u64> {
    if region.is_empty() {
        return Some(NATIONAL_GROUP);
    }
    let well_formed = matches!(region.len(), 2 | 4 | 6 | 9)
        && region.bytes().all(|b| b.is_ascii_digit())
        && !region.starts_with('0');
    if well_formed {
        region.parse().ok()
    } else {
        None
    }
}

/// The region of a group id, the inverse of [`group_id`]: 86 → "".
pub fn group_region(id: u64) -> String {
    if id == NATIONAL_GROUP {
        String::new()
    } else {
        id.to_string()
    }
}

/// The name of a level as written in a topology file.
pub fn level_name(level: Level) -> &'static str {
    match level {
        Level::National => "national",
        Level::Province => "province",
        Level::City => "city",
        Level::District => "district",
        Level::Street => "street",
    }
}

/// Reads a level as written in a topology file (lower case).
pub fn parse_level(name: &str) -> Option<Level> {
    Some(match name {
        "national" => Level::National,
        "province" => Level::Province,
        "city" => Level::City,
        "district" => Level::District,
        "street" => Level::Street,
        _ => return None,
    })
}

/// One node: a process at a site, serving one center (`level` + `region`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// > 0, unique in the topology.
    pub id: u64,
    /// `host:port` (unique), or `sim://…` for simulated nodes.
    pub address: String,
    /// The failure domain (data center); several nodes may share one.
    pub site: String,
    /// national | province | city | district | street.
    pub level: String,
    /// The region this node's center serves ("" for national).
    pub region: String,
}

/// One region group and the nodes that replicate it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// "" for the national group, else a division code (2/4/6/9 digits).
    pub region: String,
    /// 1 to [`MAX_VOTERS`] node ids.
    pub voters: Vec<u64>,
    /// Node ids that replicate without voting (e.g. street offices).
    #[serde(default)]
    pub learners: Vec<u64>,
}

impl GroupSpec {
    /// This group's id ([`group_id`] of its region); `None` if the region is
    /// malformed (never for a validated topology).
    pub fn id(&self) -> Option<u64> {
        try_group_id(&self.region)
    }
}

/// A federation's placement, as read from its TOML file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    pub name: String,
    #[serde(rename = "node", default)]
    pub nodes: Vec<NodeSpec>,
    #[serde(rename = "group", default)]
    pub groups: Vec<GroupSpec>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopologyError {
    /// A semantic error: `where_` names the node or group (`node 3`,
    /// `group "310114"`, `group "" (national)`), `field` the offending field.
    #[error("{where_}: {field}: {reason}")]
    Invalid {
        where_: String,
        field: &'static str,
        reason: String,
    },
    /// The text is not TOML of the expected shape.
    #[error("toml: {0}")]
    Toml(String),
    /// The file could not be read ([`Topology::load`] only).
    #[error("{0}")]
    Io(String),
}

fn invalid(
    where_: impl Into<String>,
    field: &'static str,
    reason: impl Into<String>,
) -> TopologyError {
    TopologyError::Invalid {
        where_: where_.into(),
        field,
        reason: reason.into(),
    }
}

fn group_where(region: &str) -> String {
    if region.is_empty() {
        "group \"\" (national)".to_string()
    } else {
        format!("group {region:?}")
    }
}

fn node_where(index: usize, id: u64) -> String {
    if id == 0 {
        format!("node #{} (id 0)", index + 1)
    } else {
        format!("node {id}")
    }
}

fn describe(region: &Region) -> String {
    format!(
        "{} {} {}",
        level_name(region.level),
        region.code,
        crate::regions()
            .display_name(region.code)
            .unwrap_or(region.name)
    )
}

/// Checks an address: `sim://…` (simulated) or `host:port` with a port in
/// 1..=65535.
fn check_address(address: &str) -> Result<(), String> {
    if address.chars().any(char::is_whitespace) {
        return Err(format!("{address:?} contains whitespace"));
    }
    if let Some(rest) = address.strip_prefix("sim://") {
        return if rest.is_empty() {
            Err(format!("{address:?} names no simulated node"))
        } else {
            Ok(())
        };
    }
    match address.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => match port.parse::<u16>() {
            Ok(p) if p > 0 => Ok(()),
            _ => Err(format!("{address:?} has no valid port (1..=65535)")),
        },
        _ => Err(format!("{address:?} is not host:port")),
    }
}

/// Looks a region up for a node or group: "" is the national level.
fn lookup(region: &str) -> Result<Option<&'static Region>, String> {
    if region.is_empty() {
        return Ok(None);
    }
    match regions().get(region) {
        Ok(r) => Ok(Some(r)),
        Err(RegionError::Malformed(_)) => Err(format!(
            "{region:?} is not a division code (\"\" for national, or 2, 4, 6 or 9 digits)"
        )),
        Err(RegionError::Unknown(_)) => Err(format!("unknown division code {region}")),
    }
}

impl Topology {
    /// Parses and validates a topology.
    pub fn parse(text: &str) -> Result<Topology, TopologyError> {
        let t: Topology = toml::from_str(text).map_err(|e| TopologyError::Toml(e.to_string()))?;
        t.validate()?;
        Ok(t)
    }

    /// Reads, parses and validates a topology file (for the command line; the
    /// rest of the crate never touches files).
    pub fn load(path: &std::path::Path) -> Result<Topology, TopologyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TopologyError::Io(format!("{}: {e}", path.display())))?;
        Topology::parse(&text).map_err(|e| match e {
            TopologyError::Toml(m) => TopologyError::Toml(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// The shipped demo federation ([`DEMO_TOML`]).
    pub fn demo() -> Topology {
        Topology::parse(DEMO_TOML).expect("the shipped demo topology is valid")
    }

    /// The topology as TOML; [`Topology::parse`] reads it back unchanged.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a topology always serializes to TOML")
    }

    /// Checks everything a node relies on; the first problem found (in file
    /// order) is returned, naming the node or group and the field.
    ///
    /// Nodes: id > 0 and unique; address `host:port` (or `sim://…`) and
    /// unique; a site; a known level; a region that exists ("" only for
    /// national) and whose length matches the level. Groups: region "" or an
    /// existing code, one group per region; 1..=7 voters; voters and learners
    /// are nodes of the topology, without repeats, and no node is both.
    /// Even voter counts are allowed. No constraint ties a group to its parent
    /// region's group or to the nodes' own regions.
    pub fn validate(&self) -> Result<(), TopologyError> {
        let mut ids = BTreeMap::new();
        let mut addresses = BTreeMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let at = node_where(i, n.id);
            if n.id == 0 {
                return Err(invalid(at, "id", "node ids start at 1"));
            }
            if let Some(first) = ids.insert(n.id, i) {
                return Err(invalid(
                    at,
                    "id",
                    format!("duplicate id (also [[node]] #{})", first + 1),
                ));
            }
            check_address(&n.address).map_err(|r| invalid(&at, "address", r))?;
            if let Some(other) = addresses.insert(n.address.as_str(), n.id) {
                return Err(invalid(
                    at,
                    "address",
                    format!("{:?} is also node {other}'s address", n.address),
                ));
            }
            if n.site.trim().is_empty() {
                return Err(invalid(
                    at,
                    "site",
                    "a node needs a site (its failure domain)",
                ));
            }
            let Some(level) = parse_level(&n.level) else {
                return Err(invalid(
                    at,
                    "level",
                    format!(
                        "unknown level {:?} (national, province, city, district or street)",
                        n.level
                    ),
                ));
            };
            let region = lookup(&n.region).map_err(|r| invalid(&at, "region", r))?;
            let region_level = region.map_or(Level::National, |r| r.level);
            if level != region_level {
                let served = region.map_or("the national level (\"\")".to_string(), describe);
                return Err(invalid(
                    at,
                    "level",
                    format!("level {:?} does not match region {served}", n.level),
                ));
            }
        }

        let mut seen_groups = BTreeSet::new();
        for g in &self.groups {
            let at = group_where(&g.region);
            lookup(&g.region).map_err(|r| invalid(&at, "region", r))?;
            if !seen_groups.insert(g.region.as_str()) {
                return Err(invalid(at, "region", "duplicate group for this region"));
            }
            if g.voters.is_empty() {
                return Err(invalid(at, "voters", "a group needs at least one voter"));
            }
            if g.voters.len() > MAX_VOTERS {
                return Err(invalid(
                    at,
                    "voters",
                    format!(
                        "{} voters, at most {MAX_VOTERS} (add learners instead)",
                        g.voters.len()
                    ),
                ));
            }
            for (field, list) in [("voters", &g.voters), ("learners", &g.learners)] {
                let mut seen = BTreeSet::new();
                for &id in list {
                    if !ids.contains_key(&id) {
                        return Err(invalid(
                            &at,
                            field,
                            format!("{id} is not a node of this topology"),
                        ));
                    }
                    if !seen.insert(id) {
                        return Err(invalid(&at, field, format!("node {id} is listed twice")));
                    }
                }
            }
            if let Some(both) = g.learners.iter().find(|l| g.voters.contains(l)) {
                return Err(invalid(
                    at,
                    "learners",
                    format!("node {both} is both a voter and a learner"),
                ));
            }
        }
        Ok(())
    }

    /// The node with this id.
    pub fn node(&self, id: u64) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The group with this id ([`group_id`] of its region).
    pub fn group(&self, id: u64) -> Option<&GroupSpec> {
        self.groups.iter().find(|g| g.id() == Some(id))
    }

    /// The groups this node replicates (as voter or learner), by id.
    pub fn groups_of(&self, node: u64) -> Vec<u64> {
        let mut out: Vec<u64> = self
            .groups
            .iter()
            .filter(|g| g.voters.contains(&node) || g.learners.contains(&node))
            .filter_map(GroupSpec::id)
            .collect();
        out.sort_unstable();
        out
    }

    /// A group's members: its voters, then its learners, in file order.
    /// Empty for an unknown group.
    pub fn members(&self, group: u64) -> Vec<u64> {
        self.group(group)
            .map(|g| g.voters.iter().chain(&g.learners).copied().collect())
            .unwrap_or_default()
    }

    /// The nodes sharing at least one group with `node`, sorted, without
    /// `node` itself: the peers its transport connects to.
    pub fn peers_of(&self, node: u64) -> Vec<u64> {
        let mut out = BTreeSet::new();
        for g in &self.groups {
            let mut members = g.voters.iter().chain(&g.learners);
            if members.clone().any(|&m| m == node) {
                out.extend(members.by_ref().copied().filter(|&m| m != node));
            }
        }
        out.into_iter().collect()
    }

    /// The sites, sorted, each once.
    pub fn sites(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self.nodes.iter().map(|n| n.site.as_str()).collect();
        set.into_iter().map(str::to_string).collect()
    }

    /// The nodes at a site, sorted by id.
    pub fn nodes_at_site(&self, site: &str) -> Vec<u64> {
        let mut out: Vec<u64> = self
            .nodes
            .iter()
            .filter(|n| n.site == site)
            .map(|n| n.id)
            .collect();
        out.sort_unstable();
        out
    }

    /// A generated placement of a whole city, province or the country, from
    /// the division table (for the simulator and tests).
    ///
    /// - One node per center, each its own site (site = region code, or
    ///   `national`); ids in the order national (1), provinces, cities,
    ///   districts, each by code. Address `sim://{id}`, or
    ///   `127.0.0.1:{port_base + id - 1}` when a base port is given.
    /// - One group per district/county, per city, per province, and the
    ///   national group; groups are listed by id (national, provinces, cities,
    ///   districts). No learners.
    /// - District group: its own node, its city's node, and the node of the
    ///   next district of the same city (by code, wrapping around) — three
    ///   sites, so a district survives losing its own site. A city with a
    ///   single district (东莞 4419, 中山 4420, 儋州 4604, 嘉峪关 6202, 济源
    ///   4190) borrows the next district of the province instead.
    /// - City group: city node, province node, the city's first district node.
    /// - Province group: province node, national node, the first city node.
    /// - National group: national node and the first two province nodes; a
    ///   scope with a single province fills up to three with city (then
    ///   district) nodes.
    /// - Pseudo-cities 省直辖县级行政区划 / 自治区直辖县级行政区划 (4190,
    ///   4290, 4690, 6590) get no node and no group: their counties report
    ///   straight to the province, so the province node takes the city node's
    ///   place in their groups and routing goes county → province. The
    ///   municipalities' pseudo-cities (市辖区 3101, 县 5002, …) are real
    ///   municipal centers and get a node and a group like any city.
    ///
    /// Errors name the scope when its code is unknown or of the wrong level,
    /// or when the base port leaves no room for every node.
    pub fn generate(scope: Scope<'_>, port_base: Option<u16>) -> Result<Topology, TopologyError> {
        let table = regions();
        let scope_region = |code: &str, want: Level, field: &'static str| {
            let r = table
                .get(code)
                .map_err(|e| invalid("scope", field, e.to_string()))?;
            if r.level != want {
                return Err(invalid(
                    "scope",
                    field,
                    format!("{} is a {}, not a {field}", code, level_name(r.level)),
                ));
            }
            Ok(r)
        };
        let (name, only_province, only_city) = match scope {
            Scope::National => ("generated-national".to_string(), None, None),
            Scope::Province(code) => {
                let p = scope_region(code, Level::Province, "province")?;
                (format!("generated-province-{code}"), Some(p.code), None)
            }
            Scope::City(code) => {
                let c = scope_region(code, Level::City, "city")?;
                (
                    format!("generated-city-{code}"),
                    Some(c.parent),
                    Some(c.code),
                )
            }
        };

        // The regions in scope, each level by code, in one pass over the
        // table (a region's code sorts before its children's, so a district's
        // city has been seen when the district comes).
        let mut provinces: Vec<&Region> = Vec::new();
        let mut cities: Vec<&Region> = Vec::new();
        let mut districts: Vec<&Region> = Vec::new();
        let mut province_of_city: BTreeMap<&str, &str> = BTreeMap::new();
        let mut districts_of_city: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut districts_of_province: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for r in table.by_code.values() {
            match r.level {
                Level::Province if only_province.is_none_or(|p| p == r.code) => provinces.push(r),
                Level::City
                    if only_province.is_none_or(|p| p == r.parent)
                        && only_city.is_none_or(|c| c == r.code) =>
                {
                    province_of_city.insert(r.code, r.parent);
                    cities.push(r);
                }
                Level::District => {
                    if let Some(&p) = province_of_city.get(r.parent) {
                        districts.push(r);
                        districts_of_city.entry(r.parent).or_default().push(r.code);
                        districts_of_province.entry(p).or_default().push(r.code);
                    }
                }
                _ => {}
            }
        }
        let has_center = |c: &Region| !c.name.contains("直辖县级行政区划");

        // Nodes: national, provinces, cities with a center, districts.
        let mut centers: Vec<(Level, &str)> = vec![(Level::National, "")];
        centers.extend(provinces.iter().map(|p| (Level::Province, p.code)));
        centers.extend(
            cities
                .iter()
                .filter(|c| has_center(c))
                .map(|c| (Level::City, c.code)),
        );
        centers.extend(districts.iter().map(|d| (Level::District, d.code)));
        if let Some(base) = port_base {
            let last = u32::from(base) + centers.len() as u32 - 1;
            if base == 0 || last > u32::from(u16::MAX) {
                return Err(invalid(
                    "scope",
                    "port_base",
                    format!(
                        "{} nodes need ports {base}..={last}, which do not fit in 1..=65535",
                        centers.len()
                    ),
                ));
            }
        }
        let mut node_of: BTreeMap<&str, u64> = BTreeMap::new();
        let mut nodes = Vec::with_capacity(centers.len());
        for (i, &(level, region)) in centers.iter().enumerate() {
            let id = i as u64 + 1;
            node_of.insert(region, id);
            nodes.push(NodeSpec {
                id,
                address: match port_base {
                    Some(base) => format!("127.0.0.1:{}", u64::from(base) + id - 1),
                    None => format!("sim://{id}"),
                },
                site: if region.is_empty() {
                    "national".to_string()
                } else {
                    region.to_string()
                },
                level: level_name(level).to_string(),
                region: region.to_string(),
            });
        }
        let national = node_of[""];

        // The element after `x` in `list`, wrapping around; None if `x` is alone.
        fn next_after<'a>(list: &[&'a str], x: &str) -> Option<&'a str> {
            let i = list.iter().position(|&y| y == x)?;
            let next = list[(i + 1) % list.len()];
            (next != x).then_some(next)
        }
        let group = |region: &str, voters: Vec<u64>| {
            debug_assert!(
                voters.iter().collect::<BTreeSet<_>>().len() == voters.len(),
                "generated group {region:?} repeats a voter: {voters:?}"
            );
            GroupSpec {
                region: region.to_string(),
                voters,
                learners: Vec::new(),
            }
        };
        let push_distinct = |voters: &mut Vec<u64>, candidates: &mut dyn Iterator<Item = u64>| {
            for c in candidates {
                if voters.len() >= 3 {
                    break;
                }
                if !voters.contains(&c) {
                    voters.push(c);
                }
            }
        };

        let mut groups = Vec::new();
        // National.
        let mut voters = vec![national];
        push_distinct(
            &mut voters,
            &mut provinces
                .iter()
                .map(|p| node_of[p.code])
                .chain(cities.iter().filter_map(|c| node_of.get(c.code).copied()))
                .chain(districts.iter().map(|d| node_of[d.code])),
        );
        groups.push(group("", voters));
        // Provinces.
        for p in &provinces {
            let mut voters = vec![node_of[p.code], national];
            let province_cities = cities.iter().filter(|c| c.parent == p.code);
            let province_districts = districts_of_province.get(p.code).into_iter().flatten();
            push_distinct(
                &mut voters,
                &mut province_cities
                    .filter_map(|c| node_of.get(c.code).copied())
                    .chain(province_districts.map(|d| node_of[d]))
                    .take(1),
            );
            groups.push(group(p.code, voters));
        }
        // Cities with a center.
        for c in cities.iter().filter(|c| has_center(c)) {
            let mut voters = vec![node_of[c.code], node_of[c.parent]];
            let own = districts_of_city.get(c.code).into_iter().flatten();
            push_distinct(
                &mut voters,
                &mut own
                    .map(|d| node_of[d])
                    .chain(std::iter::once(national))
                    .take(1),
            );
            groups.push(group(c.code, voters));
        }
        // Districts.
        for d in &districts {
            let city = d.parent;
            let province = province_of_city[city];
            let own = node_of[d.code];
            let above = node_of.get(city).copied().unwrap_or(node_of[province]);
            let sibling = next_after(&districts_of_city[city], d.code)
                .or_else(|| next_after(&districts_of_province[province], d.code))
                .map(|s| node_of[s]);
            let mut voters = vec![own, above];
            push_distinct(
                &mut voters,
                &mut sibling.into_iter().chain([node_of[province], national]),
            );
            groups.push(group(d.code, voters));
        }

        Ok(Topology {
            name,
            nodes,
            groups,
        })
    }
}

/// What [`Topology::generate`] places: the whole country, one province (with
/// the national group), or one city (with its province and the national
/// group).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope<'a> {
    National,
    /// A 2-digit province code.
    Province(&'a str),
    /// A 4-digit city code.
    City(&'a str),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> Topology {
        Topology::parse(DEMO_TOML).unwrap()
    }

    /// The demo with one edit applied to its TOML text.
    fn edited(from: &str, to: &str) -> Result<Topology, TopologyError> {
        assert!(DEMO_TOML.contains(from), "demo.toml has no {from:?}");
        Topology::parse(&DEMO_TOML.replacen(from, to, 1))
    }

    fn expect_invalid(r: Result<Topology, TopologyError>, where_: &str, field: &str, reason: &str) {
        match r {
            Err(TopologyError::Invalid {
                where_: w,
                field: f,
                reason: why,
            }) => {
                assert_eq!((w.as_str(), f), (where_, field), "reason: {why}");
                assert!(why.contains(reason), "{why:?} does not mention {reason:?}");
            }
            other => panic!("expected {where_}: {field}: …{reason}…, got {other:?}"),
        }
    }

    #[test]
    fn group_ids_round_trip_and_ranges_are_disjoint() {
        for code in ["", "31", "3101", "310114", "310114001"] {
            assert_eq!(group_region(group_id(code)), code);
        }
        assert_eq!(group_id(""), NATIONAL_GROUP);
        assert_eq!(group_id("32"), 32);
        assert_eq!(group_id("320585"), 320_585);
        for bad in ["3", "031", "31a1", "3101140", "0101"] {
            assert_eq!(try_group_id(bad), None, "{bad}");
        }
        // Every code in the table has its own id, in the range of its level.
        let mut seen = BTreeSet::new();
        for code in ["11", "99", "1101", "9999", "110101", "999999", "110101001"] {
            assert!(seen.insert(group_id(code)));
        }
        assert!(group_id("99") < group_id("1000"));
        assert!(group_id("9999") < group_id("100000"));
        assert!(group_id("999999") < group_id("100000000"));
    }

    #[test]
    fn levels_round_trip() {
        for l in [
            Level::National,
            Level::Province,
            Level::City,
            Level::District,
            Level::Street,
        ] {
            assert_eq!(parse_level(level_name(l)), Some(l));
        }
        assert_eq!(parse_level("County"), None);
    }

    #[test]
    fn the_demo_parses_and_answers_lookups() {
        let t = demo();
        assert_eq!(t.name, "demo");
        assert_eq!(t.nodes.len(), 8);
        assert_eq!(t.groups.len(), 8);
        assert_eq!(t.node(6).unwrap().region, "310114");
        assert_eq!(t.node(1).unwrap().site, "beijing");
        assert_eq!(t.node(8).unwrap().address, "127.0.0.1:7108");
        assert_eq!(t.group(310_114).unwrap().voters, [6, 4, 7]);
        assert_eq!(t.group(NATIONAL_GROUP).unwrap().voters, [1, 2, 3]);
        assert!(t.group(320_505).is_none());
        assert_eq!(t.groups_of(4), [31, 3101, 310_101, 310_114]);
        assert_eq!(t.groups_of(1), [31, 32, NATIONAL_GROUP]);
        assert_eq!(t.members(3205), [5, 3, 8]);
        assert!(t.members(99).is_empty());
        assert_eq!(t.peers_of(6), [2, 4, 7]);
        assert_eq!(t.peers_of(1), [2, 3, 4, 5]);
        assert_eq!(t.sites().len(), 8);
        assert_eq!(t.nodes_at_site("beijing"), [1]);
        assert!(t.nodes_at_site("nowhere").is_empty());
        assert_eq!(Topology::demo(), t);
    }

    #[test]
    fn to_toml_round_trips() {
        let t = demo();
        assert_eq!(Topology::parse(&t.to_toml()).unwrap(), t);
        let g = Topology::generate(Scope::City("3205"), Some(7101)).unwrap();
        assert_eq!(Topology::parse(&g.to_toml()).unwrap(), g);
    }

    #[test]
    fn learners_default_to_none_and_count_as_members() {
        let t = edited(
            "voters = [7, 4, 6]\nlearners = []",
            "voters = [7, 4]\nlearners = [6]",
        )
        .unwrap();
        assert_eq!(t.members(310_101), [7, 4, 6]);
        assert!(t.groups_of(6).contains(&310_101));
        let text = "name = \"x\"\n[[node]]\nid = 1\naddress = \"a:1\"\nsite = \"s\"\n\
                    level = \"national\"\nregion = \"\"\n[[group]]\nregion = \"\"\nvoters = [1]\n";
        let t = Topology::parse(text).unwrap();
        assert!(t.groups[0].learners.is_empty());
    }

    #[test]
    fn loading_names_the_file() {
        let missing = std::path::Path::new("/nonexistent/topology.toml");
        match Topology::load(missing) {
            Err(TopologyError::Io(m)) => assert!(m.contains("/nonexistent/topology.toml"), "{m}"),
            other => panic!("{other:?}"),
        }
        let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies/demo.toml");
        assert_eq!(Topology::load(&shipped).unwrap(), demo());
    }

    #[test]
    fn malformed_toml_is_a_toml_error() {
        assert!(matches!(
            Topology::parse("name = "),
            Err(TopologyError::Toml(_))
        ));
        // Unknown fields are refused rather than silently ignored (a typo in
        // `learners` would otherwise drop a replica).
        let r = edited("learners = []", "learner = [5]");
        assert!(
            matches!(&r, Err(TopologyError::Toml(m)) if m.contains("learner")),
            "{r:?}"
        );
        let r = edited("id = 2", "id = -2");
        assert!(matches!(r, Err(TopologyError::Toml(_))), "{r:?}");
    }

    #[test]
    fn node_errors_name_the_node_and_field() {
        expect_invalid(
            edited("id = 2", "id = 0"),
            "node #2 (id 0)",
            "id",
            "start at 1",
        );
        expect_invalid(
            edited("id = 3", "id = 2"),
            "node 2",
            "id",
            "duplicate id (also [[node]] #2)",
        );
        expect_invalid(
            edited("127.0.0.1:7103", "127.0.0.1:7102"),
            "node 3",
            "address",
            "also node 2's address",
        );
        expect_invalid(
            edited("127.0.0.1:7103", "127.0.0.1"),
            "node 3",
            "address",
            "not host:port",
        );
        expect_invalid(
            edited("127.0.0.1:7103", "h:70000"),
            "node 3",
            "address",
            "no valid port",
        );
        expect_invalid(
            edited("127.0.0.1:7103", ""),
            "node 3",
            "address",
            "not host:port",
        );
        expect_invalid(
            edited("site = \"nanjing\"", "site = \"\""),
            "node 3",
            "site",
            "needs a site",
        );
        expect_invalid(
            edited("level = \"city\"", "level = \"prefecture\""),
            "node 4",
            "level",
            "unknown level \"prefecture\"",
        );
        expect_invalid(
            edited("region = \"3205\"", "region = \"3299\""),
            "node 5",
            "region",
            "unknown division code 3299",
        );
        expect_invalid(
            edited("region = \"3205\"", "region = \"32-5\""),
            "node 5",
            "region",
            "not a division code",
        );
        expect_invalid(
            edited("region = \"3205\"", "region = \"320585\""),
            "node 5",
            "level",
            "\"city\" does not match region district 320585 太仓市",
        );
        expect_invalid(
            edited("level = \"national\"", "level = \"province\""),
            "node 1",
            "level",
            "does not match region the national level",
        );
    }

    #[test]
    fn group_errors_name_the_group_and_field() {
        expect_invalid(
            edited("region = \"310101\"\nvoters", "region = \"310199\"\nvoters"),
            "group \"310199\"",
            "region",
            "unknown division code 310199",
        );
        expect_invalid(
            edited("region = \"310101\"\nvoters", "region = \"310114\"\nvoters"),
            "group \"310114\"",
            "region",
            "duplicate group",
        );
        expect_invalid(
            edited("voters = [7, 4, 6]", "voters = []"),
            "group \"310101\"",
            "voters",
            "at least one voter",
        );
        expect_invalid(
            edited("voters = [7, 4, 6]", "voters = [7, 4, 6, 1, 2, 3, 5, 8]"),
            "group \"310101\"",
            "voters",
            "8 voters, at most 7",
        );
        expect_invalid(
            edited("voters = [7, 4, 6]", "voters = [7, 4, 9]"),
            "group \"310101\"",
            "voters",
            "9 is not a node",
        );
        expect_invalid(
            edited("voters = [7, 4, 6]", "voters = [7, 4, 7]"),
            "group \"310101\"",
            "voters",
            "node 7 is listed twice",
        );
        expect_invalid(
            edited(
                "voters = [7, 4, 6]\nlearners = []",
                "voters = [7, 4, 6]\nlearners = [10]",
            ),
            "group \"310101\"",
            "learners",
            "10 is not a node",
        );
        expect_invalid(
            edited(
                "voters = [7, 4, 6]\nlearners = []",
                "voters = [7, 4, 6]\nlearners = [6]",
            ),
            "group \"310101\"",
            "learners",
            "node 6 is both a voter and a learner",
        );
        expect_invalid(
            edited("voters = [1, 2, 3]", "voters = [1, 2, 9]"),
            "group \"\" (national)",
            "voters",
            "9 is not a node",
        );
        // Even voter counts and street groups are allowed.
        edited("voters = [7, 4, 6]", "voters = [7, 4]").unwrap();
        let street = DEMO_TOML.to_string()
            + "\n[[group]]\nregion = \"320585102\"\nvoters = [8]\nlearners = [5]\n";
        Topology::parse(&street).unwrap();
    }

    fn check_generated(t: &Topology) {
        t.validate().unwrap();
        let sites_of = |g: &GroupSpec| -> BTreeSet<&str> {
            g.voters
                .iter()
                .map(|&v| t.node(v).unwrap().site.as_str())
                .collect()
        };
        for g in &t.groups {
            if g.region.len() == 6 {
                assert_eq!(g.voters.len(), 3, "{g:?}");
                assert_eq!(sites_of(g).len(), 3, "{g:?}");
                assert_eq!(t.node(g.voters[0]).unwrap().region, g.region);
            }
        }
        // Listed national first, then by id.
        let ids: Vec<u64> = t.groups.iter().skip(1).map(|g| g.id().unwrap()).collect();
        assert_eq!(t.groups[0].region, "", "national first");
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "groups are listed by id"
        );
    }

    #[test]
    fn generated_province_has_a_group_per_district_city_and_level() {
        let t = Topology::generate(Scope::Province("32"), None).unwrap();
        check_generated(&t);
        let table = regions();
        let cities: Vec<&str> = table.children("32").map(|c| c.code).collect();
        let districts: usize = cities.iter().map(|c| table.children(c).count()).sum();
        assert_eq!(cities.len(), 13);
        assert_eq!(districts, 104);
        assert_eq!(t.groups.len(), districts + cities.len() + 1 + 1);
        assert_eq!(t.nodes.len(), t.groups.len());
        assert_eq!(t.name, "generated-province-32");
        // 太仓: its node, 苏州's node, and the next district of 苏州.
        let taicang = t.group(320_585).unwrap();
        let region = |id: u64| t.node(id).unwrap().region.as_str();
        let placed: Vec<&str> = taicang.voters.iter().map(|&v| region(v)).collect();
        assert_eq!(placed[..2], ["320585", "3205"]);
        assert!(placed[2].starts_with("3205"), "{placed:?}");
        // Province and national groups have three voters on three sites.
        for id in [NATIONAL_GROUP, 32] {
            assert_eq!(t.group(id).unwrap().voters.len(), 3);
        }
        assert_eq!(t.node(1).unwrap().level, "national");
        assert_eq!(t.node(1).unwrap().address, "sim://1");
    }

    #[test]
    fn generated_city_and_ports() {
        let t = Topology::generate(Scope::City("3101"), Some(7101)).unwrap();
        check_generated(&t);
        // national, 31, 3101 and 上海's 16 districts.
        assert_eq!(t.nodes.len(), 3 + 16);
        assert_eq!(t.groups.len(), 3 + 16);
        assert_eq!(t.node(1).unwrap().address, "127.0.0.1:7101");
        assert_eq!(t.node(19).unwrap().address, "127.0.0.1:7119");
        assert_eq!(t.group(3101).unwrap().voters.len(), 3);
        assert_eq!(t.group(NATIONAL_GROUP).unwrap().voters.len(), 3);
        let too_high = Topology::generate(Scope::National, Some(65_000));
        assert!(
            matches!(
                &too_high,
                Err(TopologyError::Invalid {
                    field: "port_base",
                    ..
                })
            ),
            "{too_high:?}"
        );
    }

    #[test]
    fn generated_scope_errors() {
        expect_invalid(
            Topology::generate(Scope::Province("3205"), None),
            "scope",
            "province",
            "3205 is a city, not a province",
        );
        expect_invalid(
            Topology::generate(Scope::City("99"), None),
            "scope",
            "city",
            "unknown region code 99",
        );
    }

    #[test]
    fn pseudo_cities_of_counties_report_to_the_province() {
        // 4190 (省直辖县级行政区划) has one county, 济源 419001.
        let t = Topology::generate(Scope::Province("41"), None).unwrap();
        check_generated(&t);
        assert!(t.group(4190).is_none());
        assert!(!t.nodes.iter().any(|n| n.region == "4190"));
        let jiyuan = t.group(419_001).unwrap();
        let region = |id: u64| t.node(id).unwrap().region.as_str();
        assert_eq!(region(jiyuan.voters[0]), "419001");
        assert_eq!(region(jiyuan.voters[1]), "41");
        // 济源 is alone in 4190: the third voter is another district of 河南.
        assert!(region(jiyuan.voters[2]).starts_with("41"));
        // 东莞 (4419) has a center but a single district-level code; alone in
        // its city and in the scope, it gets the province node as third voter.
        let t = Topology::generate(Scope::City("4419"), None).unwrap();
        check_generated(&t);
        let dongguan = t.group(441_900).unwrap();
        let placed: Vec<&str> = dongguan
            .voters
            .iter()
            .map(|&v| t.node(v).unwrap().region.as_str())
            .collect();
        assert_eq!(placed, ["441900", "4419", "44"]);
        // In the whole province it borrows the next district of 广东 instead.
        let t = Topology::generate(Scope::Province("44"), None).unwrap();
        let dongguan = t.group(441_900).unwrap();
        let third = &t.node(dongguan.voters[2]).unwrap().region;
        assert_eq!(third.len(), 6);
        assert!(third.starts_with("44") && !third.starts_with("4419"));
    }

    #[test]
    fn generated_national_counts_and_time() {
        let start = std::time::Instant::now();
        let table = regions();
        let loaded = start.elapsed();
        let start = std::time::Instant::now();
        let t = Topology::generate(Scope::National, None).unwrap();
        let generated = start.elapsed();
        assert!(
            generated < std::time::Duration::from_secs(1),
            "{generated:?}"
        );
        let start = std::time::Instant::now();
        check_generated(&t);
        let validated = start.elapsed();
        let cities: Vec<&Region> = table
            .children("")
            .flat_map(|p| table.children(p.code))
            .collect();
        let pseudo = cities
            .iter()
            .filter(|c| c.name.contains("直辖县级行政区划"))
            .count();
        assert_eq!(cities.len(), 342);
        assert_eq!(pseudo, 4);
        assert_eq!(t.groups.len(), 2978 + (342 - 4) + 31 + 1);
        assert_eq!(t.nodes.len(), t.groups.len());
        let start = std::time::Instant::now();
        let text = t.to_toml();
        let serialized = start.elapsed();
        let start = std::time::Instant::now();
        assert_eq!(Topology::parse(&text).unwrap(), t);
        let parsed = start.elapsed();
        eprintln!(
            "generate(National): {} nodes, {} groups, {} bytes of TOML; division table loaded in \
             {loaded:?}, generated in {generated:?}, validated in {validated:?}, to_toml in \
             {serialized:?}, parse+validate in {parsed:?}",
            t.nodes.len(),
            t.groups.len(),
            text.len()
        );
    }
}
