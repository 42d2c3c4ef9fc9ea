//! Fault injection for drills on a live cluster (`hotline fault …`).
//!
//! An operator adds rules through the Admin service (`AddFault`, `Heal`,
//! `Faults`) on every node; each node keeps its own copy here. A rule names
//! two sets of node ids and an action between them: partition (nothing
//! passes), delay (each message is held `delay_ms`) or drop (`drop_permille`
//! of messages vanish). It applies in both directions: it matches a link
//! from this node to `peer` when (self ∈ a and peer ∈ b) or (self ∈ b and
//! peer ∈ a), so a rule that does not name this node never matches here. A
//! one-way rule (`one_way`) matches only messages from a to b: the link
//! that carries traffic one way only, a failure real networks have (a
//! half-broken NIC or firewall) and the way a drill holds a reply while
//! letting requests in.
//!
//! Who asks:
//! - [`Faults::outbound`] — every sender (the raft transport per queued batch,
//!   the federation forwarder per envelope) before a message leaves this node.
//!   This is where all three actions take effect.
//! - [`Faults::inbound`] — the receive paths, as defence in depth for a sender
//!   that missed the rule (it was unreachable when the rule was broadcast).
//!   Only certain losses are enforced here (partitions, and drops of 1000‰):
//!   a probabilistic drop applied on both sides would lose `1-(1-p)²` instead
//!   of `p`, and a delay is the sender's to apply.
//!
//! Bounded: at most [`MAX_RULES`] rules of at most [`MAX_SIDE_IDS`] ids per
//! side; counters exist only for peers that a rule matched. Rules live in
//! memory only: a restarted node comes back healed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hotline_proto::v1::{FaultAction, FaultCounter, FaultRule, FaultsResponse};
use rand::Rng;

/// Rules in force on one node.
pub const MAX_RULES: usize = 64;
/// Node ids per side of a rule.
pub const MAX_SIDE_IDS: usize = 1_024;
/// Longest delay a rule may ask for, in milliseconds.
pub const MAX_DELAY_MS: u32 = 60_000;
/// Longest label, in bytes.
pub const MAX_LABEL_BYTES: usize = 256;

/// What to do with one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop,
    /// Hold the message this long before sending it.
    Delay(Duration),
}

/// The fault rules of one node and what they did, per peer.
pub struct Faults {
    node_id: u64,
    /// Fast path: false while there are no rules, so the hot paths take no lock.
    active: AtomicBool,
    rules: RwLock<Vec<FaultRule>>,
    /// peer → (dropped, delayed), both directions together.
    counters: Mutex<BTreeMap<u64, (u64, u64)>>,
}

/// `partition`, `delay`, `drop` or `unspecified` (also for unknown values).
pub fn action_name(action: i32) -> &'static str {
    match FaultAction::try_from(action) {
        Ok(FaultAction::Partition) => "partition",
        Ok(FaultAction::Delay) => "delay",
        Ok(FaultAction::Drop) => "drop",
        _ => "unspecified",
    }
}

/// One line for an operator: `partition 1,2 | 3`, `delay 200ms 1 | 2`,
/// `drop 100‰ 1 | 2`.
pub fn describe(rule: &FaultRule) -> String {
    let ids = |v: &[u64]| {
        v.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let what = match FaultAction::try_from(rule.action) {
        Ok(FaultAction::Delay) => format!("delay {}ms", rule.delay_ms),
        Ok(FaultAction::Drop) => format!("drop {}‰", rule.drop_permille),
        _ => action_name(rule.action).to_string(),
    };
    let sep = if rule.one_way { "→" } else { "|" };
    format!("{what} {} {sep} {}", ids(&rule.side_a), ids(&rule.side_b))
}

/// Checks a rule and returns it with each side sorted and deduplicated.
/// The error names the field.
pub fn validate(mut rule: FaultRule) -> Result<FaultRule, String> {
    for (name, side) in [("side_a", &mut rule.side_a), ("side_b", &mut rule.side_b)] {
        if side.is_empty() {
            return Err(format!("{name}: must name at least one node"));
        }
        if side.len() > MAX_SIDE_IDS {
            return Err(format!(
                "{name}: {} node ids, at most {MAX_SIDE_IDS}",
                side.len()
            ));
        }
        if side.contains(&0) {
            return Err(format!("{name}: node id 0 does not exist"));
        }
        side.sort_unstable();
        side.dedup();
    }
    if let Some(both) = rule.side_a.iter().find(|i| rule.side_b.contains(i)) {
        return Err(format!(
            "side_b: node {both} is on both sides (the sides must be disjoint)"
        ));
    }
    if rule.label.len() > MAX_LABEL_BYTES {
        return Err(format!("label: at most {MAX_LABEL_BYTES} bytes"));
    }
    let action = FaultAction::try_from(rule.action).unwrap_or(FaultAction::Unspecified);
    match action {
        FaultAction::Unspecified => {
            return Err(format!(
                "action: must be partition, delay or drop (got {})",
                rule.action
            ));
        }
        FaultAction::Partition => {}
        FaultAction::Delay => {
            if !(1..=MAX_DELAY_MS).contains(&rule.delay_ms) {
                return Err(format!(
                    "delay_ms: must be 1..={MAX_DELAY_MS} for a delay (got {})",
                    rule.delay_ms
                ));
            }
        }
        FaultAction::Drop => {
            if !(1..=1000).contains(&rule.drop_permille) {
                return Err(format!(
                    "drop_permille: must be 1..=1000 for a drop (got {})",
                    rule.drop_permille
                ));
            }
        }
    }
    if action != FaultAction::Delay && rule.delay_ms != 0 {
        return Err(format!(
            "delay_ms: only for a delay, not a {}",
            action_name(rule.action)
        ));
    }
    if action != FaultAction::Drop && rule.drop_permille != 0 {
        return Err(format!(
            "drop_permille: only for a drop, not a {}",
            action_name(rule.action)
        ));
    }
    Ok(rule)
}

impl Faults {
    pub fn new(node_id: u64) -> Arc<Faults> {
        Arc::new(Faults {
            node_id,
            active: AtomicBool::new(false),
            rules: RwLock::new(Vec::new()),
            counters: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// Adds a rule after [`validate`]. Adding a rule equal to one in force
    /// changes nothing (a retried `hotline fault …` does not stack).
    pub fn add(&self, rule: FaultRule) -> Result<(), String> {
        let rule = validate(rule)?;
        let mut rules = self.rules.write().unwrap_or_else(|e| e.into_inner());
        if rules.contains(&rule) {
            return Ok(());
        }
        if rules.len() >= MAX_RULES {
            return Err(format!(
                "rule: {MAX_RULES} rules in force already; heal first"
            ));
        }
        tracing::warn!(node = self.node_id, "fault drill: {}", describe(&rule));
        rules.push(rule);
        self.active.store(true, Ordering::Release);
        Ok(())
    }

    /// Removes every rule and returns how many. Counters are kept: they
    /// tell what the drill did.
    pub fn heal(&self) -> usize {
        let mut rules = self.rules.write().unwrap_or_else(|e| e.into_inner());
        let removed = rules.len();
        if removed > 0 {
            tracing::warn!(node = self.node_id, "fault drill: healed {removed} rules");
        }
        rules.clear();
        self.active.store(false, Ordering::Release);
        removed
    }

    /// Removes the rules between exactly the sets `a` and `b` (either way
    /// round, whatever their action) and returns how many; the others stay
    /// in force. Both sets empty: every rule, as [`Self::heal`]. The error
    /// names the field.
    pub fn heal_between(&self, a: &[u64], b: &[u64]) -> Result<usize, String> {
        if a.is_empty() && b.is_empty() {
            return Ok(self.heal());
        }
        // The sides as `add` stored them (sorted, each id once).
        let probe = validate(FaultRule {
            side_a: a.to_vec(),
            side_b: b.to_vec(),
            action: FaultAction::Partition as i32,
            ..Default::default()
        })?;
        let (a, b) = (&probe.side_a, &probe.side_b);
        let mut rules = self.rules.write().unwrap_or_else(|e| e.into_inner());
        let before = rules.len();
        rules.retain(|r| {
            !((&r.side_a == a && &r.side_b == b) || (&r.side_a == b && &r.side_b == a))
        });
        let removed = before - rules.len();
        if removed > 0 {
            tracing::warn!(
                node = self.node_id,
                "fault drill: healed {removed} rules between {a:?} and {b:?}"
            );
        }
        self.active.store(!rules.is_empty(), Ordering::Release);
        Ok(removed)
    }

    /// Rules in the order they were added; counters by peer.
    pub fn snapshot(&self) -> FaultsResponse {
        let rules = self.rules.read().unwrap_or_else(|e| e.into_inner()).clone();
        let counters = self
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(&peer, &(dropped, delayed))| FaultCounter {
                peer,
                dropped,
                delayed,
            })
            .collect();
        FaultsResponse {
            node_id: self.node_id,
            rules,
            counters,
        }
    }

    /// Does `rule` apply to a message from node `from` to node `to`?
    fn applies(rule: &FaultRule, from: u64, to: u64) -> bool {
        let (a, b) = (&rule.side_a, &rule.side_b);
        (a.contains(&from) && b.contains(&to))
            || (!rule.one_way && b.contains(&from) && a.contains(&to))
    }

    fn count(&self, peer: u64, verdict: Verdict) {
        let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let e = c.entry(peer).or_default();
        match verdict {
            Verdict::Drop => e.0 += 1,
            Verdict::Delay(_) => e.1 += 1,
            Verdict::Pass => {}
        }
    }

    /// A message from this node to `peer`. A partition drops it; each drop
    /// rule drops it with its probability; otherwise it is delayed by the
    /// longest matching delay. Counted per peer.
    pub fn outbound(&self, peer: u64) -> Verdict {
        if !self.active.load(Ordering::Acquire) {
            return Verdict::Pass;
        }
        let verdict = {
            let rules = self.rules.read().unwrap_or_else(|e| e.into_inner());
            let mut drop = false;
            let mut delay = 0u32;
            for r in rules
                .iter()
                .filter(|r| Self::applies(r, self.node_id, peer))
            {
                match FaultAction::try_from(r.action) {
                    Ok(FaultAction::Partition) => drop = true,
                    Ok(FaultAction::Drop) => {
                        drop |= rand::thread_rng().gen_range(0..1000) < r.drop_permille;
                    }
                    Ok(FaultAction::Delay) => delay = delay.max(r.delay_ms),
                    _ => {}
                }
                if drop {
                    break;
                }
            }
            if drop {
                Verdict::Drop
            } else if delay > 0 {
                Verdict::Delay(Duration::from_millis(u64::from(delay)))
            } else {
                Verdict::Pass
            }
        };
        if verdict != Verdict::Pass {
            self.count(peer, verdict);
        }
        verdict
    }

    /// A message arriving from `peer`: dropped when a rule cuts the link for
    /// certain (see the module doc), passed otherwise. Counted per peer.
    pub fn inbound(&self, peer: u64) -> Verdict {
        if self.is_partitioned_from(peer) {
            self.count(peer, Verdict::Drop);
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    }

    /// True when a rule loses every message from `peer` to this node (a
    /// partition, or a drop of 1000‰).
    pub fn is_partitioned_from(&self, peer: u64) -> bool {
        if !self.active.load(Ordering::Acquire) {
            return false;
        }
        let rules = self.rules.read().unwrap_or_else(|e| e.into_inner());
        let applies = |r: &&FaultRule| Self::applies(r, peer, self.node_id);
        rules
            .iter()
            .filter(applies)
            .any(|r| match FaultAction::try_from(r.action) {
                Ok(FaultAction::Partition) => true,
                Ok(FaultAction::Drop) => r.drop_permille >= 1000,
                _ => false,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(a: &[u64], b: &[u64], action: FaultAction) -> FaultRule {
        FaultRule {
            side_a: a.to_vec(),
            side_b: b.to_vec(),
            action: action as i32,
            delay_ms: if action == FaultAction::Delay { 200 } else { 0 },
            drop_permille: if action == FaultAction::Drop { 1000 } else { 0 },
            label: String::new(),
            one_way: false,
        }
    }

    fn counter(f: &Faults, peer: u64) -> (u64, u64) {
        f.snapshot()
            .counters
            .iter()
            .find(|c| c.peer == peer)
            .map(|c| (c.dropped, c.delayed))
            .unwrap_or((0, 0))
    }

    #[test]
    fn no_rules_pass_everything_and_count_nothing() {
        let f = Faults::new(1);
        for p in 1..5 {
            assert_eq!(f.outbound(p), Verdict::Pass);
            assert_eq!(f.inbound(p), Verdict::Pass);
            assert!(!f.is_partitioned_from(p));
        }
        assert!(f.snapshot().counters.is_empty());
        assert_eq!(f.snapshot().node_id, 1);
    }

    #[test]
    fn partition_cuts_both_directions_between_the_sides_only() {
        // {1,2} | {3,4}; 5 is on neither side.
        let r = rule(&[1, 2], &[3, 4], FaultAction::Partition);
        let nodes: Vec<Arc<Faults>> = (1..=5).map(Faults::new).collect();
        for n in &nodes {
            n.add(r.clone()).unwrap();
        }
        let cut =
            |x: u64, y: u64| (x <= 2 && (3..=4).contains(&y)) || (y <= 2 && (3..=4).contains(&x));
        for from in 1..=5u64 {
            for to in 1..=5u64 {
                if from == to {
                    continue;
                }
                let f = &nodes[from as usize - 1];
                let expect = if cut(from, to) {
                    Verdict::Drop
                } else {
                    Verdict::Pass
                };
                assert_eq!(f.outbound(to), expect, "outbound {from}→{to}");
                assert_eq!(f.inbound(to), expect, "inbound at {from} from {to}");
                assert_eq!(f.is_partitioned_from(to), cut(from, to));
            }
        }
        // The rule as written on side b's nodes matches too (self ∈ b).
        assert_eq!(nodes[3].outbound(1), Verdict::Drop);
        // Counters: node 1 dropped one outbound and one inbound per cut peer.
        assert_eq!(counter(&nodes[0], 3), (2, 0));
        assert_eq!(counter(&nodes[0], 4), (2, 0));
        assert_eq!(counter(&nodes[0], 2), (0, 0));
        assert_eq!(counter(&nodes[4], 1), (0, 0));
    }

    #[test]
    fn a_one_way_partition_cuts_only_from_side_a_to_side_b() {
        // {1} → {2,3}: 1 cannot reach 2 or 3; they still reach 1.
        let mut r = rule(&[1], &[2, 3], FaultAction::Partition);
        r.one_way = true;
        assert_eq!(describe(&r), "partition 1 → 2,3");
        let nodes: Vec<Arc<Faults>> = (1..=4).map(Faults::new).collect();
        for n in &nodes {
            n.add(r.clone()).unwrap();
        }
        let cut = |from: u64, to: u64| from == 1 && (2..=3).contains(&to);
        for from in 1..=4u64 {
            for to in (1..=4u64).filter(|&t| t != from) {
                let expect = if cut(from, to) {
                    Verdict::Drop
                } else {
                    Verdict::Pass
                };
                let (f, g) = (&nodes[from as usize - 1], &nodes[to as usize - 1]);
                assert_eq!(f.outbound(to), expect, "outbound {from}→{to}");
                assert_eq!(g.inbound(from), expect, "inbound at {to} from {from}");
                assert_eq!(g.is_partitioned_from(from), cut(from, to));
            }
        }
        // Only the cut direction was counted.
        assert_eq!(counter(&nodes[0], 2), (1, 0));
        assert_eq!(counter(&nodes[1], 1), (1, 0));
        assert_eq!(counter(&nodes[3], 1), (0, 0));
        // A two-way rule between the same sets is another rule; healing by
        // the sets lifts both.
        nodes[0]
            .add(rule(&[1], &[2, 3], FaultAction::Partition))
            .unwrap();
        assert_eq!(nodes[0].snapshot().rules.len(), 2);
        assert_eq!(nodes[0].heal_between(&[2, 3], &[1]), Ok(2));
    }

    #[test]
    fn delay_takes_the_longest_matching_rule_and_is_sender_side() {
        let f = Faults::new(3);
        f.add(rule(&[1], &[3], FaultAction::Delay)).unwrap();
        let mut long = rule(&[3], &[1, 2], FaultAction::Delay);
        long.delay_ms = 750;
        f.add(long).unwrap();
        assert_eq!(f.outbound(1), Verdict::Delay(Duration::from_millis(750)));
        assert_eq!(f.outbound(2), Verdict::Delay(Duration::from_millis(750)));
        assert_eq!(f.outbound(4), Verdict::Pass);
        assert_eq!(f.inbound(1), Verdict::Pass);
        assert!(!f.is_partitioned_from(1));
        assert_eq!(counter(&f, 1), (0, 1));
        assert_eq!(counter(&f, 2), (0, 1));
        // A partition wins over a delay.
        f.add(rule(&[1], &[3], FaultAction::Partition)).unwrap();
        assert_eq!(f.outbound(1), Verdict::Drop);
        assert_eq!(counter(&f, 1), (1, 1));
    }

    #[test]
    fn drop_follows_its_rate_outbound_and_only_certain_drops_inbound() {
        let f = Faults::new(1);
        let mut r = rule(&[1], &[2], FaultAction::Drop);
        r.drop_permille = 250;
        f.add(r).unwrap();
        let n = 20_000;
        let dropped = (0..n).filter(|_| f.outbound(2) == Verdict::Drop).count();
        assert!((4_000..6_000).contains(&dropped), "{dropped} of {n}");
        assert_eq!(counter(&f, 2), (dropped as u64, 0));
        assert_eq!(f.inbound(2), Verdict::Pass);
        assert!(!f.is_partitioned_from(2));
        assert_eq!(f.outbound(3), Verdict::Pass);

        let g = Faults::new(2);
        g.add(rule(&[1], &[2], FaultAction::Drop)).unwrap(); // 1000‰
        assert_eq!(g.outbound(1), Verdict::Drop);
        assert_eq!(g.inbound(1), Verdict::Drop);
        assert!(g.is_partitioned_from(1));
    }

    #[test]
    fn heal_removes_rules_and_keeps_counters() {
        let f = Faults::new(1);
        f.add(rule(&[1], &[2], FaultAction::Partition)).unwrap();
        f.add(rule(&[1], &[3], FaultAction::Delay)).unwrap();
        assert_eq!(f.outbound(2), Verdict::Drop);
        assert_eq!(f.snapshot().rules.len(), 2);
        f.heal();
        assert_eq!(f.outbound(2), Verdict::Pass);
        assert_eq!(f.outbound(3), Verdict::Pass);
        let s = f.snapshot();
        assert!(s.rules.is_empty());
        assert_eq!(counter(&f, 2), (1, 0));
        // Rules can be added again after a heal.
        f.add(rule(&[1], &[2], FaultAction::Partition)).unwrap();
        assert_eq!(f.outbound(2), Verdict::Drop);
    }

    #[test]
    fn heal_between_lifts_one_cut_and_keeps_the_others() {
        let f = Faults::new(1);
        f.add(rule(&[1, 4], &[2, 3], FaultAction::Partition))
            .unwrap();
        f.add(rule(&[1], &[5], FaultAction::Partition)).unwrap();
        // Either way round, ids in any order: the first rule only.
        assert_eq!(f.heal_between(&[3, 2], &[4, 1]), Ok(1));
        assert_eq!(f.outbound(2), Verdict::Pass);
        assert_eq!(f.outbound(5), Verdict::Drop);
        // Sets that match no rule exactly remove nothing.
        assert_eq!(f.heal_between(&[1], &[5, 6]), Ok(0));
        assert_eq!(f.outbound(5), Verdict::Drop);
        assert_eq!(
            f.heal_between(&[1], &[]).unwrap_err(),
            "side_b: must name at least one node"
        );
        assert_eq!(f.heal_between(&[1], &[5]), Ok(1));
        assert_eq!(f.outbound(5), Verdict::Pass);
        assert!(f.snapshot().rules.is_empty());
        // Both empty: everything.
        f.add(rule(&[1], &[2], FaultAction::Partition)).unwrap();
        f.add(rule(&[1], &[3], FaultAction::Partition)).unwrap();
        assert_eq!(f.heal_between(&[], &[]), Ok(2));
        assert!(f.snapshot().rules.is_empty());
    }

    #[test]
    fn snapshot_shows_normalized_rules_and_an_equal_rule_does_not_stack() {
        let f = Faults::new(1);
        let mut r = rule(&[2, 1, 2], &[3], FaultAction::Partition);
        r.label = "嘉定,黄浦 | 太仓".into();
        f.add(r.clone()).unwrap();
        f.add(r).unwrap();
        let s = f.snapshot();
        assert_eq!(s.rules.len(), 1);
        assert_eq!(s.rules[0].side_a, vec![1, 2]);
        assert_eq!(s.rules[0].label, "嘉定,黄浦 | 太仓");
        assert_eq!(describe(&s.rules[0]), "partition 1,2 | 3");
    }

    #[test]
    fn validation_names_the_field() {
        let f = Faults::new(1);
        let err = |r: FaultRule| f.add(r).unwrap_err();
        let ok = rule(&[1], &[2], FaultAction::Partition);

        assert!(
            err(FaultRule {
                side_a: vec![],
                ..ok.clone()
            })
            .starts_with("side_a:")
        );
        assert!(
            err(FaultRule {
                side_b: vec![],
                ..ok.clone()
            })
            .starts_with("side_b:")
        );
        assert!(
            err(FaultRule {
                side_a: vec![0, 1],
                ..ok.clone()
            })
            .starts_with("side_a:")
        );
        assert!(
            err(FaultRule {
                side_b: vec![2, 0],
                ..ok.clone()
            })
            .starts_with("side_b:")
        );
        let many: Vec<u64> = (10..10 + MAX_SIDE_IDS as u64 + 1).collect();
        assert!(
            err(FaultRule {
                side_a: many.clone(),
                ..ok.clone()
            })
            .starts_with("side_a:")
        );
        assert!(
            err(FaultRule {
                side_b: many,
                ..ok.clone()
            })
            .starts_with("side_b:")
        );
        let overlap = err(FaultRule {
            side_a: vec![1, 2],
            side_b: vec![2, 3],
            ..ok.clone()
        });
        assert!(
            overlap.starts_with("side_b:") && overlap.contains("disjoint"),
            "{overlap}"
        );
        assert!(
            err(FaultRule {
                action: 0,
                ..ok.clone()
            })
            .starts_with("action:")
        );
        assert!(
            err(FaultRule {
                action: 99,
                ..ok.clone()
            })
            .starts_with("action:")
        );
        assert!(
            err(FaultRule {
                label: "x".repeat(MAX_LABEL_BYTES + 1),
                ..ok.clone()
            })
            .starts_with("label:")
        );

        let delay = rule(&[1], &[2], FaultAction::Delay);
        assert!(
            err(FaultRule {
                delay_ms: 0,
                ..delay.clone()
            })
            .starts_with("delay_ms:")
        );
        assert!(
            err(FaultRule {
                delay_ms: 60_001,
                ..delay.clone()
            })
            .starts_with("delay_ms:")
        );
        assert!(
            err(FaultRule {
                drop_permille: 5,
                ..delay.clone()
            })
            .starts_with("drop_permille:")
        );
        f.add(FaultRule {
            delay_ms: 60_000,
            ..delay
        })
        .unwrap();

        let drop = rule(&[1], &[2], FaultAction::Drop);
        assert!(
            err(FaultRule {
                drop_permille: 0,
                ..drop.clone()
            })
            .starts_with("drop_permille:")
        );
        assert!(
            err(FaultRule {
                drop_permille: 1001,
                ..drop.clone()
            })
            .starts_with("drop_permille:")
        );
        assert!(
            err(FaultRule {
                delay_ms: 5,
                ..drop.clone()
            })
            .starts_with("delay_ms:")
        );
        f.add(FaultRule {
            drop_permille: 1,
            ..drop
        })
        .unwrap();

        assert!(
            err(FaultRule {
                delay_ms: 5,
                ..ok.clone()
            })
            .starts_with("delay_ms:")
        );
        // Nothing refused was added.
        assert_eq!(f.snapshot().rules.len(), 2);
    }

    #[test]
    fn at_most_max_rules() {
        let f = Faults::new(1);
        for i in 0..MAX_RULES as u64 {
            f.add(rule(&[1], &[100 + i], FaultAction::Partition))
                .unwrap();
        }
        let e = f.add(rule(&[1], &[2], FaultAction::Partition)).unwrap_err();
        assert!(e.starts_with("rule:"), "{e}");
        // An equal rule is still accepted (it adds nothing).
        f.add(rule(&[1], &[100], FaultAction::Partition)).unwrap();
        assert_eq!(f.snapshot().rules.len(), MAX_RULES);
    }
}
