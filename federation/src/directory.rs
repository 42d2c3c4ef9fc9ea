//! The directory: which group owns which region, and the way a transfer
//! envelope travels between groups (DESIGN.md §5).
//!
//! Built from a [`Topology`]; pure and deterministic. Groups form a tree by
//! region prefix: a group's parent is the group of the deepest proper prefix
//! of its region (street 9 → district 6 → city 4 → province 2 → national ""),
//! skipping levels that have no group. For example with groups for 419001 and
//! 41 but none for the pseudo-city 4190, 419001's parent is 41.

use std::collections::BTreeMap;

use crate::regions;
use crate::topology::{GroupSpec, Topology, group_id, group_region, try_group_id};

/// The national group's id.
pub const NATIONAL: u64 = crate::topology::NATIONAL_GROUP;

/// Which group owns which region, and how envelopes travel between groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directory {
    /// Group id → its region ("" for national).
    region: BTreeMap<u64, String>,
    /// Group id → its nearest ancestor group.
    parent: BTreeMap<u64, u64>,
    /// Group id → the groups whose nearest ancestor group it is, by id.
    children: BTreeMap<u64, Vec<u64>>,
    /// Group id → its voters, then its learners: where its replicas are.
    members: BTreeMap<u64, Vec<u64>>,
    /// Group id → how many of `members` are voters (they come first).
    voters: BTreeMap<u64, usize>,
    /// The version of the replicated directory this was built from; 0 for
    /// the topology file alone.
    version: u64,
}

/// The proper prefixes of a region that can be groups, deepest first:
/// "310114001" → "310114", "3101", "31", "".
fn proper_prefixes(region: &str) -> impl Iterator<Item = &str> {
    [6, 4, 2, 0]
        .into_iter()
        .filter(move |&n| n < region.len())
        .map(move |n| &region[..n])
}

/// Whether `region` lies in the subtree of the group whose region is `top`:
/// groups form a tree by region prefix (a group's parent is the group of
/// the deepest proper prefix of its region), so the places a group and the
/// groups below it answer for are `top` itself and the codes that have it
/// as one of their group-level prefixes. The national group ("") covers
/// every code. A federated query's parent keeps of a child's answer only
/// what this says lies below the child.
pub fn in_subtree(top: &str, region: &str) -> bool {
    region == top || proper_prefixes(region).any(|p| p == top)
}

/// The province part of a region ("" for national).
fn province(region: &str) -> &str {
    &region[..region.len().min(2)]
}

impl Directory {
    /// The directory of a topology's groups. The topology should be validated
    /// ([`Topology::parse`] does); a group whose region is malformed is left
    /// out.
    pub fn new(t: &Topology) -> Directory {
        Directory::from_groups(t.groups.iter(), 0)
    }

    /// The directory of these groups (a later spec of the same region
    /// replaces an earlier one), at a version of the replicated directory.
    pub fn from_groups<'a>(
        groups: impl IntoIterator<Item = &'a GroupSpec>,
        version: u64,
    ) -> Directory {
        let mut region = BTreeMap::new();
        let mut members = BTreeMap::new();
        let mut voters = BTreeMap::new();
        for g in groups {
            if let Some(id) = try_group_id(&g.region) {
                region.insert(id, g.region.clone());
                members.insert(id, g.voters.iter().chain(&g.learners).copied().collect());
                voters.insert(id, g.voters.len());
            }
        }
        let mut parent = BTreeMap::new();
        let mut children: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for (&g, r) in &region {
            let up = proper_prefixes(r)
                .map(group_id)
                .find(|p| region.contains_key(p));
            if let Some(p) = up {
                parent.insert(g, p);
                // Iterating by id keeps every child list sorted.
                children.entry(p).or_default().push(g);
            }
        }
        Directory {
            region,
            parent,
            children,
            members,
            voters,
            version,
        }
    }

    /// A group's voters. Empty for an unknown group.
    pub fn voters(&self, group: u64) -> &[u64] {
        let n = self.voters.get(&group).copied().unwrap_or(0);
        &self.members(group)[..n]
    }

    /// The nodes holding a group's replicas: its voters, then its learners.
    /// Empty for an unknown group.
    pub fn members(&self, group: u64) -> &[u64] {
        self.members.get(&group).map_or(&[], Vec::as_slice)
    }

    /// The replicated directory's version this was built from (0: the
    /// topology file alone).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Whether the directory has this group.
    pub fn contains(&self, group: u64) -> bool {
        self.region.contains_key(&group)
    }

    /// The group that owns tickets about `location` (a division code, normally
    /// 6 or 9 digits): the deepest group whose region is a prefix of it — the
    /// street group if one exists, else the district, city, province, or
    /// national group. `None` if nothing covers it (no national group), or if
    /// the location is not a known division code (a ticket about a place that
    /// does not exist belongs to nobody; refuse it before routing).
    pub fn owner(&self, location: &str) -> Option<u64> {
        regions().get(location).ok()?;
        std::iter::once(location)
            .chain(proper_prefixes(location))
            .map(group_id)
            .find(|g| self.region.contains_key(g))
    }

    /// Where a ticket about `location` held by group `from` should go: the
    /// owner of the place when that is another group (an accept's
    /// transfer, a center's 转办 from review); `None` when `from` owns it or
    /// no region group does. A place only the national group covers (a
    /// province or city outside the federation) stays where it was
    /// accepted: national relays and lists cases, it handles none, and
    /// would refuse it. The node and the simulator both route by it.
    pub fn transfer_to(&self, location: &str, from: u64) -> Option<u64> {
        self.owner(location).filter(|&o| o != from && o != NATIONAL)
    }

    /// `group` and its ancestor groups, nearest first, up to the national
    /// group if there is one. Works for ids that are not in the directory too
    /// (the chain then starts with that id).
    fn chain_up(&self, group: u64) -> Vec<u64> {
        let region = group_region(group);
        std::iter::once(group)
            .chain(
                proper_prefixes(&region)
                    .map(group_id)
                    .filter(|g| self.region.contains_key(g)),
            )
            .collect()
    }

    /// The groups an envelope passes from `from` to `to` along the hierarchy,
    /// both ends included, skipping levels that have no group: up from `from`
    /// through its ancestors' groups to the lowest common ancestor group, then
    /// down to `to`. E.g. 310114 → 3101 → 31 → 86 → 32 → 3205 → 320585.
    /// `[from]` when `from == to`. Without a common ancestor group (no
    /// national group and different provinces) the path goes up as far as
    /// `from`'s top group, then down from `to`'s top group.
    pub fn path(&self, from: u64, to: u64) -> Vec<u64> {
        let up = self.chain_up(from);
        let down = self.chain_up(to);
        let meet = up
            .iter()
            .enumerate()
            .find_map(|(i, g)| Some((i, down.iter().position(|d| d == g)?)));
        match meet {
            Some((i, j)) => up[..=i]
                .iter()
                .chain(down[..j].iter().rev())
                .copied()
                .collect(),
            None => up.iter().chain(down.iter().rev()).copied().collect(),
        }
    }

    /// Whether two groups lie in different provinces; the national group
    /// counts as a province of its own.
    pub fn is_cross_province(&self, from: u64, to: u64) -> bool {
        province(&group_region(from)) != province(&group_region(to))
    }

    /// Where an envelope at group `at` heading for group `to` goes next, given
    /// which groups are reachable right now (the forwarder knows from its
    /// transport); `None` if it is already there or nothing ahead is
    /// reachable (store it and retry later).
    ///
    /// The target is `to`, except for a cross-province envelope that has not
    /// yet passed the national group (`via_national_done == false`): then the
    /// target is the national group, which relays every cross-province
    /// envelope and keeps the list of cross-province cases. (An envelope *at*
    /// the national group has passed it, whatever the flag says; without a
    /// national group in the directory, cross-province envelopes route like
    /// any other.)
    ///
    /// The hop is the target itself when reachable (direct delivery), else the
    /// furthest reachable group ahead of `at` on `path(at, target)`.
    pub fn next_hop(
        &self,
        at: u64,
        to: u64,
        via_national_done: bool,
        reachable: &dyn Fn(u64) -> bool,
    ) -> Option<u64> {
        if at == to {
            return None;
        }
        let relay = !via_national_done
            && at != NATIONAL
            && self.contains(NATIONAL)
            && self.is_cross_province(at, to);
        let target = if relay { NATIONAL } else { to };
        let path = self.path(at, target);
        path.iter().skip(1).rev().copied().find(|&g| reachable(g))
    }

    /// The region of a group ("" for national); `None` for a group that is not
    /// in the directory (see [`group_region`] for the region of any id).
    pub fn region_of(&self, group: u64) -> Option<&str> {
        self.region.get(&group).map(String::as_str)
    }

    /// Every group's id, ascending (national first, then provinces, cities,
    /// districts, streets).
    pub fn groups(&self) -> impl Iterator<Item = u64> + '_ {
        self.region.keys().copied()
    }

    /// A group's nearest ancestor group; `None` for the top of the tree (the
    /// national group, or a group with no ancestor group) and for unknown
    /// groups.
    pub fn parent_group(&self, group: u64) -> Option<u64> {
        self.parent.get(&group).copied()
    }

    /// The groups whose nearest ancestor group is `g`, by id: where a
    /// federated query fans out to from `g`.
    pub fn child_groups(&self, g: u64) -> Vec<u64> {
        self.children.get(&g).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{DEMO_TOML, Scope};

    fn demo() -> Directory {
        Directory::new(&Topology::parse(DEMO_TOML).unwrap())
    }

    fn all(_: u64) -> bool {
        true
    }

    /// A replicated placement replaces the file's for its group (the node
    /// added online is where the group's replicas are now), and the tree
    /// stays the same.
    #[test]
    fn a_later_placement_replaces_the_files() {
        let t = Topology::parse(DEMO_TOML).unwrap();
        let d = demo();
        assert_eq!(d.version(), 0);
        assert_eq!(d.members(310_114), t.members(310_114).as_slice());
        assert!(d.members(999).is_empty());
        let moved = GroupSpec {
            region: "310114".into(),
            voters: vec![2, 4, 5],
            learners: vec![9],
        };
        let d2 = Directory::from_groups(t.groups.iter().chain([&moved]), 7);
        assert_eq!(d2.version(), 7);
        assert_eq!(d2.members(310_114), &[2, 4, 5, 9]);
        assert_eq!(d2.voters(310_114), &[2, 4, 5]);
        assert!(d2.voters(999).is_empty());
        assert_eq!(d2.members(320_585), d.members(320_585));
        assert_eq!(d2.path(310_114, 320_585), d.path(310_114, 320_585));
        assert_eq!(d2.owner("310114001"), Some(310_114));
    }

    #[test]
    fn demo_routes_jiading_to_taicang_through_national() {
        let d = demo();
        assert_eq!(
            d.path(310_114, 320_585),
            [310_114, 3101, 31, NATIONAL, 32, 3205, 320_585]
        );
        assert_eq!(
            d.path(320_585, 310_114),
            [320_585, 3205, 32, NATIONAL, 31, 3101, 310_114]
        );
        // 浏河镇, a street of 太仓 in the division table.
        assert_eq!(regions().get("320585102").unwrap().name, "浏河镇");
        assert_eq!(d.owner("320585102"), Some(320_585));
        assert_eq!(d.owner("320585"), Some(320_585));
        assert!(d.is_cross_province(310_114, 320_585));

        // Everything reachable: the envelope goes straight to national first.
        assert_eq!(d.next_hop(310_114, 320_585, false, &all), Some(NATIONAL));
        // From national, with the relay done: straight to 太仓.
        assert_eq!(d.next_hop(NATIONAL, 320_585, true, &all), Some(320_585));
        assert_eq!(d.next_hop(NATIONAL, 320_585, false, &all), Some(320_585));
        // 太仓 unreachable from national: to 苏州, or to 江苏 if 苏州 is too.
        assert_eq!(
            d.next_hop(NATIONAL, 320_585, true, &|g| g != 320_585),
            Some(3205)
        );
        assert_eq!(
            d.next_hop(NATIONAL, 320_585, true, &|g| g != 320_585 && g != 3205),
            Some(32)
        );
        assert_eq!(d.next_hop(NATIONAL, 320_585, true, &|g| g == 31), None);
    }

    #[test]
    fn next_hop_walks_back_to_the_furthest_reachable_group() {
        let d = demo();
        // National unreachable from 嘉定: up as far as possible, to 上海 (31).
        assert_eq!(
            d.next_hop(310_114, 320_585, false, &|g| g != NATIONAL),
            Some(31)
        );
        assert_eq!(
            d.next_hop(310_114, 320_585, false, &|g| g == 3101),
            Some(3101)
        );
        assert_eq!(d.next_hop(310_114, 320_585, false, &|_| false), None);
        // Cross-province envelopes never skip national, even if the
        // destination itself is reachable.
        assert_eq!(d.next_hop(310_114, 320_585, false, &|g| g == 320_585), None);
        // Already there.
        assert_eq!(d.next_hop(320_585, 320_585, true, &all), None);
        // Within a province: directly when reachable, else along the path.
        assert_eq!(d.next_hop(310_114, 310_101, false, &all), Some(310_101));
        assert_eq!(
            d.next_hop(310_114, 310_101, false, &|g| g != 310_101),
            Some(3101)
        );
        // Down from a province group to one of its districts.
        assert_eq!(d.next_hop(32, 320_585, false, &|g| g == 3205), Some(3205));
        // Up from a district to its province.
        assert_eq!(d.next_hop(320_585, 32, false, &all), Some(32));
        assert_eq!(d.next_hop(320_585, 32, false, &|g| g != 32), Some(3205));
    }

    #[test]
    fn paths_within_a_branch() {
        let d = demo();
        assert_eq!(d.path(310_114, 310_114), [310_114]);
        assert_eq!(d.path(310_114, 310_101), [310_114, 3101, 310_101]);
        assert_eq!(d.path(3101, 310_114), [3101, 310_114]);
        assert_eq!(d.path(310_114, 31), [310_114, 3101, 31]);
        assert_eq!(d.path(NATIONAL, 320_585), [NATIONAL, 32, 3205, 320_585]);
        assert_eq!(d.path(31, 32), [31, NATIONAL, 32]);
    }

    #[test]
    fn a_ticket_goes_to_the_owner_only_when_it_is_another_group() {
        let d = demo();
        assert_eq!(d.transfer_to("320585102", 310_114), Some(320_585));
        assert_eq!(d.transfer_to("310114001", 310_114), None, "its own");
        assert_eq!(
            d.transfer_to("310114001", 3101),
            Some(310_114),
            "down to 嘉定"
        );
        assert_eq!(d.transfer_to("999999", 310_114), None, "no such place");
        // 北京东城 has no group in the demo: only national covers it, and
        // national handles no cases, so the ticket stays at 嘉定.
        assert_eq!(d.owner("110101001"), Some(NATIONAL));
        assert_eq!(d.transfer_to("110101001", 310_114), None, "not to national");
    }

    #[test]
    fn owner_takes_the_deepest_group() {
        let d = demo();
        // A 嘉定 street: the district group.
        assert_eq!(d.owner("310114001"), Some(310_114));
        // Another 上海 district has no group: the city group 3101.
        assert_eq!(d.owner("310115"), Some(3101));
        // Another 苏州 district: 苏州's group.
        assert_eq!(d.owner("320506"), Some(3205));
        // Another 江苏 city: the province group.
        assert_eq!(d.owner("320102"), Some(32));
        // Another province: national.
        assert_eq!(d.owner("110101"), Some(NATIONAL));
        // Not a division code.
        assert_eq!(d.owner("999999"), None);
        assert_eq!(d.owner("31011"), None);
        assert_eq!(d.owner(""), None);
        // A street group, when one exists, owns its street.
        let mut t = Topology::parse(DEMO_TOML).unwrap();
        t.groups.push(crate::topology::GroupSpec {
            region: "320585102".into(),
            voters: vec![8],
            learners: vec![5],
        });
        t.validate().unwrap();
        let d = Directory::new(&t);
        assert_eq!(d.owner("320585102"), Some(320_585_102));
        assert_eq!(d.owner("320585101"), Some(320_585));
        assert_eq!(d.parent_group(320_585_102), Some(320_585));
        assert_eq!(
            d.path(320_585_102, 310_114),
            [320_585_102, 320_585, 3205, 32, NATIONAL, 31, 3101, 310_114]
        );
    }

    #[test]
    fn without_a_national_group() {
        let mut t = Topology::parse(DEMO_TOML).unwrap();
        t.groups.retain(|g| !g.region.is_empty());
        let d = Directory::new(&t);
        assert_eq!(d.owner("110101"), None);
        assert_eq!(d.owner("310114001"), Some(310_114));
        assert_eq!(d.parent_group(31), None);
        assert_eq!(
            d.path(310_114, 320_585),
            [310_114, 3101, 31, 32, 3205, 320_585]
        );
        // No relay to wait for: straight to the destination when reachable.
        assert_eq!(d.next_hop(310_114, 320_585, false, &all), Some(320_585));
    }

    /// A region lies under a group when the group's region is one of its
    /// group-level prefixes: a street under its district, city and
    /// province; nothing under a neighbour or a code that only shares
    /// digits; everything under national.
    #[test]
    fn regions_in_a_groups_subtree() {
        assert!(in_subtree("310114", "310114"));
        assert!(in_subtree("310114", "310114001"));
        assert!(in_subtree("3101", "310114001"));
        assert!(in_subtree("31", "310114"));
        assert!(in_subtree("", "320585"));
        assert!(in_subtree("", ""));
        assert!(!in_subtree("310114", "310101"), "a neighbour");
        assert!(!in_subtree("310114", "3101"), "its parent");
        assert!(!in_subtree("31", "320585"), "another province");
        assert!(!in_subtree("31", ""), "national");
        assert!(!in_subtree("310", "310114"), "not a group level");
    }

    #[test]
    fn tree_queries() {
        let d = demo();
        assert_eq!(
            d.groups().collect::<Vec<_>>(),
            [31, 32, NATIONAL, 3101, 3205, 310_101, 310_114, 320_585]
        );
        assert_eq!(d.region_of(NATIONAL), Some(""));
        assert_eq!(d.region_of(310_114), Some("310114"));
        assert_eq!(d.region_of(310_115), None);
        assert!(d.contains(3205) && !d.contains(3201));
        assert_eq!(d.child_groups(NATIONAL), [31, 32]);
        assert_eq!(d.child_groups(3101), [310_101, 310_114]);
        assert_eq!(d.child_groups(310_114), Vec::<u64>::new());
        assert_eq!(d.parent_group(310_114), Some(3101));
        assert_eq!(d.parent_group(NATIONAL), None);
        assert!(!d.is_cross_province(310_114, 31));
        assert!(d.is_cross_province(0, 31));
        assert!(!d.is_cross_province(0, 0));
    }

    #[test]
    fn pseudo_city_counties_hang_off_the_province() {
        let d = Directory::new(&Topology::generate(Scope::Province("41"), None).unwrap());
        assert!(!d.contains(4190));
        assert_eq!(d.parent_group(419_001), Some(41));
        assert_eq!(d.owner("419001001"), Some(419_001));
        assert_eq!(d.path(419_001, 410_102), [419_001, 41, 4101, 410_102]);
        assert!(d.child_groups(41).contains(&419_001));
    }

    #[test]
    fn national_tree_is_complete() {
        let t = Topology::generate(Scope::National, None).unwrap();
        let d = Directory::new(&t);
        assert_eq!(d.groups().count(), t.groups.len());
        // Every group but national has a parent; every parent lists it.
        let mut seen = 0;
        for g in d.groups().filter(|&g| g != NATIONAL) {
            let p = d.parent_group(g).unwrap();
            assert!(d.child_groups(p).contains(&g));
            seen += 1;
        }
        assert_eq!(seen + 1, t.groups.len());
        assert_eq!(d.child_groups(NATIONAL).len(), 31);
        assert_eq!(
            d.path(310_114, 320_585),
            [310_114, 3101, 31, NATIONAL, 32, 3205, 320_585]
        );
    }
}
