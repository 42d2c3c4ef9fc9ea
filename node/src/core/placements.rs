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

    /// The answer to a reader that has version `known`: only the version
    /// when that is this one (the groups are not copied for nothing).
    pub fn answer(&self, known: u64) -> DirectoryImage {
        answer_at(self.version, known, || self.image())
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
        if !placed
            .get(&p.group_id)
            .is_some_and(|q| same_members(q, &p.voters, &p.learners))
        {
            p.voters.sort_unstable();
            p.learners.sort_unstable();
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

/// A directory carrying its version and no groups: what a reader that has
/// this version already is answered, and what a placement answers.
pub fn version_only(version: u64) -> DirectoryImage {
    DirectoryImage {
        version,
        groups: Vec::new(),
    }
}

/// The answer to a reader that has version `known`, from a directory at
/// `version` whose groups `image` builds: the groups only if they are
/// newer than what the reader has. (An older image is of no use: versions
/// only go up, and [`agreed`] takes only newer ones. So a reader that
/// wants only the answer's label asks with `u64::MAX`.) The rule for every
/// reader, of a replica (`Placements::answer`) or of a node's last read
/// (`Federation.Directory`).
pub fn answer_at(
    version: u64,
    known: u64,
    image: impl FnOnce() -> DirectoryImage,
) -> DirectoryImage {
    if version <= known {
        version_only(version)
    } else {
        image()
    }
}

/// Whether placement `p` lists exactly these voters and learners, in any
/// order (raft-rs lists node ids in hash order).
pub fn same_members(p: &Placement, voters: &[u64], learners: &[u64]) -> bool {
    sorted(&p.voters) == sorted(voters) && sorted(&p.learners) == sorted(learners)
}

/// Node ids in order (raft-rs lists them in hash order).
pub fn sorted(ids: &[u64]) -> Vec<u64> {
    let mut v = ids.to_vec();
    v.sort_unstable();
    v
}

/// The placement of `group` in `img` when it differs from the group's
/// applied configuration (`voters`, `learners`): the directory has not
/// recorded the group's last membership change yet. `None` when they agree,
/// or when the directory does not place the group (nothing to keep in step).
pub fn lagging<'a>(
    img: &'a DirectoryImage,
    group: u64,
    voters: &[u64],
    learners: &[u64],
) -> Option<&'a Placement> {
    img.groups
        .iter()
        .find(|p| p.group_id == group)
        .filter(|p| !same_members(p, voters, learners))
}

/// Whether the replicated directory `img` places `node` in `group`, as a
/// voter or a learner. Only what national's state machine recorded counts:
/// an image of version 0 (none read yet) places nobody, and the topology
/// file, which the node routes with until then, is not consulted — it
/// knows no online change. `img.groups` is sorted by group id, as
/// [`Placements::image`] builds it and `LiveDirectory::offer` keeps it, so
/// this is a binary search: the raft loop asks it for every message that
/// its replica's configuration does not explain.
pub fn places(img: &DirectoryImage, group: u64, node: u64) -> bool {
    debug_assert!(img.groups.is_sorted_by_key(|p| p.group_id));
    img.version > 0
        && img
            .groups
            .binary_search_by_key(&group, |p| p.group_id)
            .is_ok_and(|i| {
                let p = &img.groups[i];
                p.voters.contains(&node) || p.learners.contains(&node)
            })
}

/// Replicas that make a majority of `voters` voters.
pub fn majority(voters: usize) -> usize {
    voters / 2 + 1
}

/// Whether a reported configuration is confirmed by its group: a majority
/// of the group's voters by the directory (`voters`) must have applied it
/// (`confirmers`: the nodes that showed it, the reporter among them). Raft
/// trusts a majority of a group's voters with its log, so the directory
/// trusts no fewer with its placement: a minority of colluding voters
/// cannot place nodes of their choosing.
pub fn confirmed(voters: &[u64], confirmers: &[u64]) -> bool {
    let mut seen: Vec<u64> = confirmers
        .iter()
        .copied()
        .filter(|c| voters.contains(c))
        .collect();
    seen.sort_unstable();
    seen.dedup();
    !voters.is_empty() && seen.len() >= majority(voters.len())
}

/// The directory the national group's voters agree on: the newest image
/// newer than `known` that a majority of `voters` answered with, group for
/// group (`answers`: node → its answer; an answer at `known` carries no
/// groups and agrees with what the asker has). `None`: nothing newer is
/// agreed on yet (members still applying, or too few answered). One
/// member's word is not enough: a national replica that serves a forged
/// image is outvoted.
pub fn agreed(
    answers: &[(u64, DirectoryImage)],
    voters: &[u64],
    known: u64,
) -> Option<DirectoryImage> {
    let from_voters: Vec<&(u64, DirectoryImage)> =
        answers.iter().filter(|(n, _)| voters.contains(n)).collect();
    let mut candidates: Vec<&DirectoryImage> = from_voters
        .iter()
        .map(|(_, img)| img)
        .filter(|img| img.version > known)
        .collect();
    candidates.sort_by_key(|img| std::cmp::Reverse(img.version));
    candidates.into_iter().find_map(|img| {
        let mut nodes: Vec<u64> = from_voters
            .iter()
            .filter(|(_, other)| other == img)
            .map(|(n, _)| *n)
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        (nodes.len() >= majority(voters.len())).then(|| img.clone())
    })
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

    /// Only a replicated image places anyone: voters and learners of the
    /// group asked about, found in the image's order by group id.
    #[test]
    fn places_reads_the_replicated_image_only() {
        let mut d = Placements::default();
        assert!(!places(&d.image(), 310114, 1), "nothing read");
        d.apply(&place("310114", &[3, 4], &[5]));
        d.apply(&place("310101", &[7], &[]));
        d.apply(&place("", &[1], &[]));
        let img = d.image();
        assert!(img.groups.is_sorted_by_key(|p| p.group_id));
        assert!(places(&img, 310114, 3) && places(&img, 310114, 5));
        assert!(!places(&img, 310114, 7), "another group's member");
        assert!(!places(&img, 320585, 3), "a group not placed");
        assert!(places(&img, 86, 1));
        let unread = DirectoryImage {
            version: 0,
            ..img.clone()
        };
        assert!(!places(&unread, 310114, 3));
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
    fn a_change_waits_while_the_directory_lags_the_applied_configuration() {
        let mut d = Placements::default();
        d.apply(&place("310114", &[4, 6, 7], &[]));
        let img = d.image();
        // In step, in any order: no lag.
        assert_eq!(lagging(&img, 310114, &[7, 4, 6], &[]), None);
        // A learner applied but not recorded: the directory's placement.
        assert_eq!(
            lagging(&img, 310114, &[4, 6, 7], &[5]),
            Some(&place("310114", &[4, 6, 7], &[]))
        );
        assert_eq!(
            lagging(&img, 310114, &[4, 6], &[]).map(|p| p.voters.clone()),
            Some(vec![4, 6, 7])
        );
        // A group the directory does not place has nothing to keep in step.
        assert_eq!(lagging(&img, 310101, &[1], &[]), None);
        assert_eq!(lagging(&DirectoryImage::default(), 310114, &[1], &[]), None);
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

    #[test]
    fn a_placement_needs_a_majority_of_the_voters_by_the_directory() {
        // Three voters: the reporter and one other, as before.
        assert!(confirmed(&[1, 2, 3], &[1, 2]));
        assert!(!confirmed(&[1, 2, 3], &[1]));
        // Five voters: two colluding voters are not enough, three are.
        assert!(!confirmed(&[1, 2, 3, 4, 5], &[4, 5]));
        assert!(confirmed(&[1, 2, 3, 4, 5], &[3, 4, 5]));
        // Nodes outside the directory's voters (the new ones a report names,
        // learners) and repeats do not count.
        assert!(!confirmed(&[1, 2, 3, 4, 5], &[4, 5, 6, 7, 8, 5]));
        // A voter added online that leads already: the old voters confirm.
        assert!(confirmed(&[1, 2, 3], &[9, 1, 2]));
        // One voter: its own word.
        assert!(confirmed(&[7], &[7]));
        assert!(!confirmed(&[], &[7]));
    }

    #[test]
    fn a_directory_is_taken_only_when_a_majority_of_national_agrees() {
        let img = |version: u64, voters: &[u64]| DirectoryImage {
            version,
            groups: vec![place("310114", voters, &[])],
        };
        let at = version_only;
        let national = [1, 2, 3];
        // All three at version 4, the asker at 3.
        let all = [
            (1, img(4, &[1, 2])),
            (2, img(4, &[1, 2])),
            (3, img(4, &[1, 2])),
        ];
        assert_eq!(agreed(&all, &national, 3), Some(img(4, &[1, 2])));
        // Unchanged (answers carry the version only): nothing new.
        assert_eq!(agreed(&[(1, at(4)), (2, at(4))], &national, 4), None);
        // One member serves a forged image with a higher version: outvoted,
        // and the two that agree win.
        let forged = [
            (1, img(9, &[6, 7])),
            (2, img(4, &[1, 2])),
            (3, img(4, &[1, 2])),
        ];
        assert_eq!(agreed(&forged, &national, 3), Some(img(4, &[1, 2])));
        // The same version with other groups is not agreement.
        let split = [(1, img(4, &[6, 7])), (2, img(4, &[1, 2])), (3, at(3))];
        assert_eq!(agreed(&split, &national, 3), None);
        // One trails: the newest version a majority has.
        let trailing = [
            (1, img(5, &[1])),
            (2, img(4, &[1, 2])),
            (3, img(4, &[1, 2])),
        ];
        assert_eq!(agreed(&trailing, &national, 3), Some(img(4, &[1, 2])));
        // Only one answered, or answers from nodes that are not voters, or
        // one node answering twice: not a majority.
        assert_eq!(agreed(&all[..1], &national, 3), None);
        let outsiders = [(1, img(4, &[1])), (8, img(4, &[1])), (9, img(4, &[1]))];
        assert_eq!(agreed(&outsiders, &national, 3), None);
        assert_eq!(
            agreed(&[(1, img(4, &[1])), (1, img(4, &[1]))], &national, 3),
            None
        );
        assert_eq!(agreed(&all, &[], 3), None);
    }

    #[test]
    fn readers_get_groups_only_when_they_are_newer() {
        let mut d = Placements::default();
        d.apply(&place("310114", &[6, 4, 7], &[]));
        d.apply(&place("310101", &[7, 4, 6], &[]));
        let v = d.version;
        assert_eq!(d.answer(0).groups.len(), 2, "a new reader");
        assert_eq!(d.answer(v - 1).groups.len(), 2, "a reader one behind");
        assert_eq!(d.answer(v), version_only(v), "up to date");
        assert_eq!(d.answer(v + 5), version_only(v), "ahead of this replica");
        assert_eq!(d.answer(u64::MAX), version_only(v), "the label only");
    }

    #[test]
    fn a_full_directory_fits_one_answer() {
        use prost::Message as _;
        // Every group at the bound, each with the most replicas and the
        // longest region codes and node ids: the worst case of one answer.
        let members: Vec<u64> = (0..MAX_MEMBERS as u64).map(|i| u64::MAX - i).collect();
        let img = DirectoryImage {
            version: u64::MAX,
            groups: (0..MAX_GROUPS as u64)
                .map(|i| Placement {
                    group_id: 999_999_999_000 + i,
                    region: "999999999000".into(),
                    voters: members[..MAX_MEMBERS / 2].to_vec(),
                    learners: members[MAX_MEMBERS / 2..].to_vec(),
                })
                .collect(),
        };
        let bytes = img.encoded_len();
        assert!(bytes > 4 << 20, "tonic's default would not do: {bytes}");
        assert!(
            bytes <= crate::dirsync::MAX_DIRECTORY_BYTES,
            "{bytes} bytes"
        );
    }
}
