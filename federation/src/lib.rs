//! Regions of the federation, from the national division codes (行政区划代码).
//!
//! This crate knows which codes exist and how they nest (national → province →
//! city → district/county → street/township). It is pure data and lookup: no
//! IO at run time (the CSVs are compiled in), no clock, no async. Later issues
//! add the directory (which group owns which region), routing and the transfer
//! protocol here, all sans-IO like the replica core.
//!
//! Quirks of the data that we keep rather than paper over (see
//! `data/PROVENANCE.md`): municipalities have pseudo-cities named 市辖区 (e.g.
//! 3101), some provinces have pseudo-cities 省直辖县级行政区划 (e.g. 4190)
//! whose counties report to the province; names repeat, so the code is the
//! identity, never the name.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

pub mod directory;
pub mod topology;

pub use directory::Directory;
pub use topology::{GroupSpec, NodeSpec, Scope, Topology, TopologyError, group_id, group_region};

/// Level of a region in the hierarchy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    National,
    Province,
    City,
    District,
    Street,
}

/// One division: its code, its name and its parent's code ("" for provinces,
/// whose parent is the national level).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    pub code: &'static str,
    pub name: &'static str,
    pub level: Level,
    pub parent: &'static str,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegionError {
    #[error("region code must be 2, 4, 6 or 9 ASCII digits, got {0:?}")]
    Malformed(String),
    #[error("unknown region code {0}")]
    Unknown(String),
}

/// The national level: the root of the hierarchy, code "" (the provinces'
/// parent). Not a row of the division table, so [`Regions::get`] refuses
/// "" as malformed (an empty code is a missing one wherever a place is
/// asked for); [`Regions::national`] and [`Regions::parent`] return it.
pub static NATIONAL: Region = Region {
    code: "",
    name: "全国",
    level: Level::National,
    parent: "",
};

/// All divisions, indexed by code. Built once from the compiled-in CSVs.
pub struct Regions {
    by_code: BTreeMap<&'static str, Region>,
    /// The same rows by hash, for `get`: every accepted ticket looks its
    /// location up (the directory, the transfer checks), and a search of the
    /// 45k-row B-tree is a dozen string comparisons on cold nodes (≈ 1.5 %
    /// of a simulated national hour's CPU). The B-tree stays for ordered
    /// iteration.
    by_hash: HashMap<&'static str, Region>,
    /// What [`Regions::display_name`] shows for the pseudo-cities (a dozen
    /// rows), made once at load; every other region shows its table name.
    shown: HashMap<&'static str, String>,
}

/// City-level names that say what a division is, not which: several
/// provinces have one of the same name.
const PSEUDO_CITIES: [&str; 4] = [
    "市辖区",
    "县",
    "省直辖县级行政区划",
    "自治区直辖县级行政区划",
];

const PROVINCES: &str = include_str!("../data/provinces.csv");
const CITIES: &str = include_str!("../data/cities.csv");
const AREAS: &str = include_str!("../data/areas.csv");
const STREETS: &str = include_str!("../data/streets.csv");

/// The division table, parsed on first use (≈45k rows, a few milliseconds).
pub fn regions() -> &'static Regions {
    static REGIONS: OnceLock<Regions> = OnceLock::new();
    REGIONS.get_or_init(Regions::load)
}

/// A group's region as people read it ("太仓市", "全国"): what callers and
/// supervisors see where a ticket went or came from. The region's code when
/// the table does not know it.
pub fn group_name(group: u64) -> String {
    let region = group_region(group);
    regions()
        .display_name(&region)
        .map_or(region.clone(), str::to_string)
}

impl Regions {
    fn load() -> Regions {
        let mut by_code = BTreeMap::new();
        // Columns: code,name[,parent…]; the parent column differs per file.
        let mut add = |csv: &'static str, level: Level, parent_col: Option<usize>| {
            for line in csv.lines().skip(1).filter(|l| !l.is_empty()) {
                let cols: Vec<&'static str> = line.split(',').collect();
                assert!(cols.len() >= 2, "malformed division row {line:?}");
                let region = Region {
                    code: cols[0],
                    name: cols[1].trim_matches('"'),
                    level,
                    parent: parent_col.map_or("", |c| cols[c]),
                };
                by_code.insert(region.code, region);
            }
        };
        add(PROVINCES, Level::Province, None);
        add(CITIES, Level::City, Some(2));
        add(AREAS, Level::District, Some(2));
        add(STREETS, Level::Street, Some(2));
        let by_hash: HashMap<_, _> = by_code.iter().map(|(k, r)| (*k, r.clone())).collect();
        let shown = by_code
            .values()
            .filter(|r| r.level == Level::City && PSEUDO_CITIES.contains(&r.name))
            .filter_map(|r| {
                let province = by_hash.get(r.parent)?.name;
                // The longest suffix of the province's name the
                // pseudo-city's name starts with ("市" of 上海市 and 市辖区)
                // is written once.
                let shared = province
                    .char_indices()
                    .map(|(i, _)| &province[i..])
                    .find(|suffix| r.name.starts_with(suffix))
                    .unwrap_or("");
                Some((r.code, format!("{province}{}", &r.name[shared.len()..])))
            })
            .collect();
        Regions {
            by_code,
            by_hash,
            shown,
        }
    }

    /// Looks a code up; the error says whether it is malformed or unknown.
    pub fn get(&self, code: &str) -> Result<&Region, RegionError> {
        let well_formed =
            matches!(code.len(), 2 | 4 | 6 | 9) && code.bytes().all(|b| b.is_ascii_digit());
        if !well_formed {
            return Err(RegionError::Malformed(code.to_string()));
        }
        self.by_hash
            .get(code)
            .ok_or_else(|| RegionError::Unknown(code.to_string()))
    }

    /// The children of a region ("" = national: the provinces).
    pub fn children(&self, code: &str) -> impl Iterator<Item = &Region> + '_ {
        let code = code.to_string();
        self.by_code.values().filter(move |r| r.parent == code)
    }

    /// The national level (code "").
    pub fn national(&self) -> &'static Region {
        &NATIONAL
    }

    /// The region one level up: a province's is the national level, the
    /// national level has none; `None` too for a code not in the table.
    pub fn parent(&self, code: &str) -> Option<&Region> {
        if code.is_empty() {
            return None;
        }
        let r = self.by_hash.get(code)?;
        if r.parent.is_empty() {
            Some(&NATIONAL)
        } else {
            self.by_hash.get(r.parent)
        }
    }

    /// "320585 太仓市" for messages and tables: "全国" for the national
    /// level (""), the code alone when the table does not know it. The name
    /// is [`Regions::display_name`]'s, so a municipality's pseudo-city reads
    /// "3101 上海市辖区", not a bare "市辖区" that four municipalities share.
    pub fn label(&self, code: &str) -> String {
        match self.display_name(code) {
            Some(name) if code.is_empty() => name.into(),
            Some(name) => format!("{code} {name}"),
            None => code.to_string(),
        }
    }

    /// A region's name as people read it: the table's name, except for the
    /// pseudo-cities whose name says only what they are (市辖区 3101, 县
    /// 5002, 省直辖县级行政区划 4190, 自治区直辖县级行政区划 6590), which
    /// take their province's name in front, sharing the suffix the two have
    /// in common: "上海市辖区", "重庆市县", "河南省直辖县级行政区划". What
    /// the table says stays in [`Region::name`] (the data's quirks are kept,
    /// see the crate documentation). "全国" for the national level; `None`
    /// for a code the table does not know.
    pub fn display_name(&self, code: &str) -> Option<&str> {
        if code.is_empty() {
            return Some(NATIONAL.name);
        }
        let r = self.by_hash.get(code)?;
        Some(self.shown.get(code).map_or(r.name, String::as_str))
    }

    /// The chain from the region up to its province, the region first.
    pub fn ancestors(&self, code: &str) -> Vec<&Region> {
        let mut out = Vec::new();
        let mut cur = self.by_hash.get(code);
        while let Some(r) = cur {
            out.push(r);
            cur = self.by_hash.get(r.parent);
        }
        out
    }

    pub fn len(&self) -> usize {
        self.by_code.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_code.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_match_the_provenance_note() {
        let r = regions();
        let count = |l| r.by_code.values().filter(|x| x.level == l).count();
        assert_eq!(count(Level::Province), 31);
        assert_eq!(count(Level::City), 342);
        assert_eq!(count(Level::District), 2978);
        assert_eq!(count(Level::Street), 41352);
    }

    #[test]
    fn jiading_nests_under_shanghai() {
        let r = regions();
        let d = r.get("310114").unwrap();
        assert_eq!(d.name, "嘉定区");
        assert_eq!(d.level, Level::District);
        let chain: Vec<_> = r.ancestors("310114").iter().map(|x| x.code).collect();
        assert_eq!(chain, ["310114", "3101", "31"]);
        assert!(r.children("3101").any(|c| c.code == "310101"));
        assert_eq!(r.get("3101").unwrap().name, "市辖区");
    }

    #[test]
    fn the_national_level_is_the_provinces_parent() {
        let r = regions();
        let n = r.national();
        assert_eq!((n.code, n.name, n.level), ("", "全国", Level::National));
        assert_eq!(r.children("").count(), 31, "the provinces");
        assert!(r.children("").all(|p| p.level == Level::Province));
        assert_eq!(r.parent("31"), Some(n));
        assert_eq!(r.parent("3101").map(|p| p.code), Some("31"));
        assert_eq!(r.parent("320585102").map(|p| p.code), Some("320585"));
        assert_eq!(r.parent(""), None, "the root has none");
        assert_eq!(r.parent("999999"), None);
        assert_eq!(r.label(""), "全国");
        assert_eq!(r.label("320585"), "320585 太仓市");
        assert_eq!(r.label("999999"), "999999");
        assert_eq!(r.label("3101"), "3101 上海市辖区");
        assert_eq!(
            r.get(""),
            Err(RegionError::Malformed(String::new())),
            "an empty code is a missing one"
        );
    }

    #[test]
    fn pseudo_cities_read_with_their_province() {
        let r = regions();
        let shown = |code| r.display_name(code).unwrap();
        assert_eq!(shown("1101"), "北京市辖区");
        assert_eq!(shown("3101"), "上海市辖区");
        assert_eq!(shown("5001"), "重庆市辖区");
        assert_eq!(shown("5002"), "重庆市县");
        assert_eq!(shown("4190"), "河南省直辖县级行政区划");
        assert_eq!(shown("6590"), "新疆维吾尔自治区直辖县级行政区划");
        // Every other region keeps the table's name.
        assert_eq!(shown("3205"), "苏州市");
        assert_eq!(shown("310114"), "嘉定区");
        assert_eq!(group_name(320585), "太仓市");
        assert_eq!(group_name(3101), "上海市辖区");
        assert_eq!(shown("31"), "上海市");
        assert_eq!(shown(""), "全国");
        assert_eq!(r.display_name("999999"), None);
        assert_eq!(r.get("3101").unwrap().name, "市辖区", "the data as it is");
        // No two cities read alike any more.
        let mut names: Vec<_> = r
            .by_code
            .values()
            .filter(|c| c.level == Level::City)
            .map(|c| shown(c.code))
            .collect();
        let all = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all, "a city name shared");
    }

    #[test]
    fn bad_codes_are_named() {
        let r = regions();
        assert_eq!(r.get("31011"), Err(RegionError::Malformed("31011".into())));
        assert_eq!(
            r.get("31a114"),
            Err(RegionError::Malformed("31a114".into()))
        );
        assert_eq!(r.get("999999"), Err(RegionError::Unknown("999999".into())));
    }
}
