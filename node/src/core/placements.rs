//! The replicated directory (DESIGN.md §4): which group owns which region
//! and which nodes hold its replicas, kept in the national group's state
//! machine so that every node routes with the same, versioned picture.
//!
//! The topology file only seeds it: the national leader places every group
//! of the file the directory does not have yet, and after an online
//! membership change (`hotline group add-learner | promote | remove`) the
//! group's leader reports its new configuration (`Federation.Place`). Every
//! node reads the directory from a national replica (`Federation.Directory`)
//! and keeps the newest version it has seen.
//!
//! Pure and deterministic like the rest of `core`: `check` refuses bad
//! placements by field, `apply` changes the state and says whether anything
//! changed (the same placement twice is not a change, so a leader repeating
//! its report does not bump the version).

use std::collections::BTreeMap;

use hotline_federation::topology::GroupSpec;
use hotline_proto::v1::{DirectoryImage, Placement};

use super::tickets::{FieldError, bad};

/// Bound on the groups of the directory: every province, city, county and
/// street of China (≈44,700) fits.
pub const MAX_GROUPS: usize = 65_536;
/// Bound on one group's replicas (voters and learners).
pub const MAX_MEMBERS: usize = 16;

/// The directory as the national group's state machine holds it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Placements {
    /// Bumped by every applied change; 0 while empty.
    version: u64,
    groups: BTreeMap<u64, Placement>,
}

impl Placements {
    /// Refuses a placement that may not enter the directory. `national` says
    /// whether the checking machine is the national group's: no other group
    /// keeps the directory.
    pub fn check(&self, national: bool, p: &Placement) -> Result<(), FieldError> {
        if !national {
            return Err(bad("place", "only the national group keeps the directory"));
        }
        match hotline_federation::topology::try_group_id(&p.region) {
            Some(g) if g == p.group_id => {}
            Some(g) => {
                return Err(bad(
                    "place.group_id",
                    format!(
                        "{} is not the group of region {:?} ({g})",
                        p.group_id, p.region
                    ),
                ));
            }
            None => {
                return Err(bad(
                    "place.region",
                    format!("{:?} is not a region code", p.region),
                ));
            }
        }
        if !p.region.is_empty() {
            hotline_federation::regions()
                .get(&p.region)
                .map_err(|e| bad("place.region", e.to_string()))?;
        }
        if p.voters.is_empty() {
            return Err(bad("place.voters", "a group needs at least one voter"));
        }
        if p.voters.len() + p.learners.len() > MAX_MEMBERS {
            return Err(bad(
                "place.voters",
                format!("more than {MAX_MEMBERS} replicas"),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for &n in p.voters.iter().chain(&p.learners) {
            if n == 0 {
                return Err(bad("place.voters", "node id 0 is not a node"));
            }
            if !seen.insert(n) {
                return Err(bad("place.learners", format!("node {n} is named twice")));
            }
        }
        if !self.groups.contains_key(&p.group_id) && self.groups.len() >= MAX_GROUPS {
            return Err(bad(
                "place.group_id",
                format!("the directory is full ({MAX_GROUPS} groups)"),
            ));
        }
        Ok(())
    }

    /// Puts a checked placement (members sorted, so equal configurations
    /// compare equal). Returns whether the directory changed.
    pub fn apply(&mut self, p: &Placement) -> bool {
        let mut p = p.clone();
        p.voters.sort_unstable();
        p.learners.sort_unstable();
        if self.groups.get(&p.group_id) == Some(&p) {
            return false;
        }
        assert!(
            self.groups.contains_key(&p.group_id) || self.groups.len() < MAX_GROUPS,
            "a placement past the bound was not checked"
        );
        self.groups.insert(p.group_id, p);
        self.version += 1;
        true
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    pub fn image(&self) -> DirectoryImage {
        DirectoryImage {
            version: self.version,
            groups: self.groups.values().cloned().collect(),
        }
    }

    pub fn restore(img: DirectoryImage) -> Placements {
        Placements {
            version: img.version,
            groups: img.groups.into_iter().map(|p| (p.group_id, p)).collect(),
        }
    }
}

/// A topology file's group as a placement (`None` for a malformed region,
/// never in a validated topology): what the national leader seeds, in the
/// node (`dirsync`) and in the simulator alike.
pub fn from_spec(g: &GroupSpec) -> Option<Placement> {
    Some(Placement {
        group_id: g.id()?,
        region: g.region.clone(),
        voters: g.voters.clone(),
        learners: g.learners.clone(),
    })
}

/// A placement as a topology group, to build a `Directory` from.
pub fn to_spec(p: &Placement) -> GroupSpec {
    GroupSpec {
        region: p.region.clone(),
        voters: p.voters.clone(),
        learners: p.learners.clone(),
    }
}

/// The placements a node reports in one round (`dirsync`): each group it
/// leads whose configuration (`leading`, out of joint state) the directory
/// `img` does not show, then — if it leads the national group — every group
/// of the topology file (`seed`) the directory does not have yet; at most
/// `limit`, the rest next round.
pub fn to_report(
    img: &DirectoryImage,
    leading: impl IntoIterator<Item = Placement>,
    seed: impl IntoIterator<Item = Placement>,
    limit: usize,
) -> Vec<Placement> {
    let placed: BTreeMap<u64, &Placement> = img.groups.iter().map(|p| (p.group_id, p)).collect();
    let mut out: Vec<Placement> = Vec::new();
    for mut p in leading {
        p.voters.sort_unstable();
        p.learners.sort_unstable();
        if placed.get(&p.group_id) != Some(&&p) {
            out.push(p);
        }
    }
    for p in seed {
        if !placed.contains_key(&p.group_id) && !out.iter().any(|q| q.group_id == p.group_id) {
            out.push(p);
        }
    }
    out.truncate(limit);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(region: &str, voters: &[u64], learners: &[u64]) -> Placement {
        Placement {
            group_id: hotline_federation::topology::group_id(region),
            region: region.into(),
            voters: voters.to_vec(),
            learners: learners.to_vec(),
        }
    }

    #[test]
    fn changes_bump_the_version_and_repeats_do_not() {
        let mut d = Placements::default();
        let p = place("310114", &[3, 1, 2], &[]);
        d.check(true, &p).unwrap();
        assert!(d.apply(&p));
        assert_eq!(d.image().version, 1);
        // Sorted members: the same configuration in another order is no change.
        assert!(!d.apply(&place("310114", &[1, 2, 3], &[])));
        assert_eq!(d.image().version, 1);
        assert!(d.apply(&place("310114", &[1, 2, 3], &[5])));
        assert_eq!(d.image().version, 2);
        assert_eq!(d.image().groups[0].voters, vec![1, 2, 3]);
        assert_eq!(d.image().groups[0].learners, vec![5]);
        assert_eq!(Placements::restore(d.image()), d);
    }

    #[test]
    fn a_leader_reports_what_the_directory_does_not_show() {
        let mut d = Placements::default();
        d.apply(&place("310114", &[2, 3, 4], &[]));
        let img = d.image();
        // Same configuration in another order: nothing to report.
        assert!(to_report(&img, [place("310114", &[4, 2, 3], &[])], [], 10).is_empty());
        // A learner added online: reported, sorted.
        let r = to_report(&img, [place("310114", &[4, 2, 3], &[5])], [], 10);
        assert_eq!(r, vec![place("310114", &[2, 3, 4], &[5])]);
        // The seed adds only groups the directory lacks, after the leader's
        // own reports and without repeating them; bounded.
        let seed = [
            place("310114", &[1], &[]),
            place("320585", &[6, 7], &[]),
            place("310101", &[2, 8], &[]),
        ];
        let r = to_report(&img, [place("320585", &[7, 6, 8], &[])], seed.clone(), 10);
        assert_eq!(
            r,
            vec![
                place("320585", &[6, 7, 8], &[]),
                place("310101", &[2, 8], &[])
            ]
        );
        assert_eq!(to_report(&img, [], seed, 1).len(), 1);
    }

    #[test]
    fn bad_placements_are_refused_by_field() {
        let d = Placements::default();
        let field = |national: bool, p: Placement| d.check(national, &p).unwrap_err().field;
        assert_eq!(field(false, place("310114", &[1], &[])), "place");
        let mut p = place("310114", &[1], &[]);
        p.group_id = 310_101;
        assert_eq!(field(true, p), "place.group_id");
        let mut p = place("310114", &[1], &[]);
        p.region = "31x".into();
        assert_eq!(field(true, p), "place.region");
        // Well formed, but no such division.
        let mut p = place("310114", &[1], &[]);
        p.region = "319999".into();
        p.group_id = 319_999;
        assert_eq!(field(true, p), "place.region");
        assert_eq!(field(true, place("310114", &[], &[4])), "place.voters");
        assert_eq!(field(true, place("310114", &[0], &[])), "place.voters");
        assert_eq!(
            field(true, place("310114", &[1, 2], &[2])),
            "place.learners"
        );
        let many: Vec<u64> = (1..=17).collect();
        assert_eq!(field(true, place("310114", &many, &[])), "place.voters");
        d.check(true, &place("", &[1], &[])).unwrap();
    }
}
