//! Fault injection for drills on a live cluster (`hotline fault …`).
//!
//! An operator sets rules through the Admin service (`SetFaults`, `Faults`)
//! on every node; each node keeps its own copy here. A rule names
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
//!   that has not caught up with the drill yet.
//!   Only certain losses are enforced here (partitions, and drops of 1000‰):
//!   a probabilistic drop applied on both sides would lose `1-(1-p)²` instead
//!   of `p`, and a delay is the sender's to apply.
//!
//! The rules in force form a versioned [`Drill`]. `hotline fault …` reads
//! the newest drill the nodes hold, changes it, and sets it on every node it
//! reaches with a higher generation ([`Faults::set`] refuses an older one).
//! Each node keeps its drill in a file (written durably before it takes
//! effect), so a node restarted mid-drill is still cut, and [`sync`] has it
//! take a newer drill from the others, so a node that was down or
//! unreachable when the operator changed the drill catches up.
//!
//! Bounded: at most [`MAX_RULES`] rules of at most [`MAX_SIDE_IDS`] ids per
//! side; counters exist only for peers that a rule matched (they live in
//! memory and start from zero with the node).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hotline_proto::v1::{Drill, FaultAction, FaultCounter, FaultRule, FaultsResponse};
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
    drill: RwLock<Drill>,
    /// Where the drill is kept (`None`: in memory only, for tests). Held
    /// across a change, so that changes reach the file in the order they
    /// take effect.
    file: Mutex<Option<PathBuf>>,
    /// peer → (dropped, delayed), both directions together.
    counters: Mutex<BTreeMap<u64, (u64, u64)>>,
    /// What a drill must pass to be put in force ([`Self::require`]).
    check: std::sync::OnceLock<DrillCheck>,
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

/// `rules` with `rule` added (after [`validate`]). A rule equal to one in
/// force changes nothing, so a retried `hotline fault …` does not stack. One
/// with the action and sides of a rule in force (under another label, or
/// another delay or rate) is refused, naming that rule: the two would be
/// shown as two drills and lifted together by one heal between the sides.
pub fn with_rule(rules: &[FaultRule], rule: FaultRule) -> Result<Vec<FaultRule>, String> {
    let rule = validate(rule)?;
    let mut out = rules.to_vec();
    if out.contains(&rule) {
        return Ok(out);
    }
    // Sides are sorted by `validate`; a two-way rule reads alike either way
    // round, a one-way rule only from its first side.
    let same = out.iter().find(|r| {
        r.action == rule.action
            && r.one_way == rule.one_way
            && ((r.side_a == rule.side_a && r.side_b == rule.side_b)
                || (!r.one_way && r.side_a == rule.side_b && r.side_b == rule.side_a))
    });
    if let Some(r) = same {
        return Err(format!(
            "side_a, side_b: this {} between these sides is in force already: {}{}; heal it first to change it",
            action_name(r.action),
            describe(r),
            if r.label.is_empty() {
                String::new()
            } else {
                format!(" [{}]", r.label)
            }
        ));
    }
    if out.len() >= MAX_RULES {
        return Err(format!(
            "rule: {MAX_RULES} rules in force already; heal first"
        ));
    }
    out.push(rule);
    Ok(out)
}

/// `rules` without those between exactly the sets `a` and `b` (either way
/// round, whatever their action), and how many went. Both sets empty: every
/// rule goes. Sets that no rule is between are an error listing the rules
/// in force: a heal that lifts nothing is a mistyped set, and the drill
/// the operator meant to lift is still cutting. The error names the field.
pub fn without(
    rules: &[FaultRule],
    a: &[u64],
    b: &[u64],
) -> Result<(Vec<FaultRule>, usize), String> {
    if a.is_empty() && b.is_empty() {
        return Ok((Vec::new(), rules.len()));
    }
    // The sides as `validate` stores them (sorted, each id once).
    let probe = validate(FaultRule {
        side_a: a.to_vec(),
        side_b: b.to_vec(),
        action: FaultAction::Partition as i32,
        ..Default::default()
    })?;
    let (a, b) = (&probe.side_a, &probe.side_b);
    let kept: Vec<FaultRule> = rules
        .iter()
        .filter(|r| !((&r.side_a == a && &r.side_b == b) || (&r.side_a == b && &r.side_b == a)))
        .cloned()
        .collect();
    let removed = rules.len() - kept.len();
    if removed == 0 {
        let ids = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        let in_force: Vec<String> = rules
            .iter()
            .map(|r| match r.label.as_str() {
                "" => describe(r),
                label => format!("{} [{label}]", describe(r)),
            })
            .collect();
        return Err(format!(
            "side_a, side_b: no rule in force is between exactly {} and {} (either way round); in force: {}",
            ids(a),
            ids(b),
            if in_force.is_empty() {
                "none".to_string()
            } else {
                in_force.join("; ")
            }
        ));
    }
    Ok((kept, removed))
}

/// Whether drill `a` replaces drill `b`: a higher generation, or at the
/// same generation (two operators at once) the larger encoding, so that
/// every node settles on the same one.
pub fn newer(a: &Drill, b: &Drill) -> bool {
    use prost::Message;
    match a.generation.cmp(&b.generation) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => a.encode_to_vec() > b.encode_to_vec(),
    }
}

/// The item with the [`newer`] drill of `items` (the first of equals).
pub fn newest<T>(items: impl IntoIterator<Item = T>, drill: impl Fn(&T) -> &Drill) -> Option<T> {
    items
        .into_iter()
        .reduce(|a, b| if newer(drill(&b), drill(&a)) { b } else { a })
}

/// Checks every rule of a drill (errors name `rules[i].field`) and returns
/// it normalized: sides sorted, equal rules once.
pub fn validate_drill(drill: Drill) -> Result<Drill, String> {
    if drill.rules.len() > MAX_RULES {
        return Err(format!(
            "rules: {} rules, at most {MAX_RULES}",
            drill.rules.len()
        ));
    }
    // A certificate is ~0.5–2 KiB, an ECDSA signature ~72 bytes.
    if drill.operator_cert.len() > 16 << 10 || drill.signature.len() > 1 << 10 {
        return Err(format!(
            "operator_cert, signature: {} and {} bytes, at most 16 KiB and 1 KiB",
            drill.operator_cert.len(),
            drill.signature.len()
        ));
    }
    let mut rules: Vec<FaultRule> = Vec::with_capacity(drill.rules.len());
    for (i, r) in drill.rules.into_iter().enumerate() {
        let r = validate(r).map_err(|e| format!("rules[{i}].{e}"))?;
        if !rules.contains(&r) {
            rules.push(r);
        }
    }
    Ok(Drill {
        generation: drill.generation,
        rules,
        operator_cert: drill.operator_cert,
        signature: drill.signature,
    })
}

/// How far ahead of a node's clock a drill's generation may be (clocks of
/// the operator's machine and the nodes differ by less).
pub const MAX_GENERATION_AHEAD_MS: u64 = 24 * 3_600_000;

/// Why a drill file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DrillFileError {
    #[error("drill file {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("drill file {0}: {1} (remove the file to start without drill rules)")]
    Corrupt(PathBuf, String),
}

/// Why [`Faults::set`] did not put a drill in force.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// A rule is malformed: the message names `rules[i].field`.
    #[error("{0}")]
    Invalid(String),
    /// The node holds a newer drill (another operator's, or one this
    /// caller did not see).
    #[error("generation: this node holds a newer drill (generation {held})")]
    Older { held: u64 },
    /// The drill file could not be written: nothing changed.
    #[error("{0}")]
    Io(String),
}

/// Writes `bytes` to `path` so that after a crash the file holds either
/// the old or the new bytes: a temporary file, fsynced, renamed over, and
/// the directory fsynced for the rename.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    std::fs::File::open(dir.unwrap_or(Path::new(".")))?.sync_all()
}

/// Whether a drill may be put in force here (with TLS: signed by the
/// operators, `tls::DrillVerifier`); the error names the field.
pub type DrillCheck = Box<dyn Fn(&Drill) -> Result<(), String> + Send + Sync>;

impl Faults {
    /// From now on, [`Self::set`] puts a drill in force only if `check`
    /// passes it. Set once, at start; a second check is ignored.
    pub fn require(&self, check: DrillCheck) {
        let _ = self.check.set(check);
    }

    /// Rules in memory only (tests).
    pub fn new(node_id: u64) -> Arc<Faults> {
        Self::with(node_id, Drill::default(), None)
    }

    /// The node's faults, kept in `path`: a drill in force when the node
    /// stopped is in force again when it starts, so a node restarted during
    /// a drill does not come back healed while its peers still cut it.
    pub fn open(node_id: u64, path: &Path) -> Result<Arc<Faults>, DrillFileError> {
        use prost::Message;
        let drill = match std::fs::read(path) {
            Ok(bytes) => {
                let corrupt = |e: String| DrillFileError::Corrupt(path.to_path_buf(), e);
                let d = Drill::decode(bytes.as_slice()).map_err(|e| corrupt(e.to_string()))?;
                validate_drill(d).map_err(corrupt)?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Drill::default(),
            Err(e) => return Err(DrillFileError::Io(path.to_path_buf(), e)),
        };
        if !drill.rules.is_empty() {
            let rules: Vec<String> = drill.rules.iter().map(describe).collect();
            tracing::warn!(
                node = node_id,
                generation = drill.generation,
                "fault drill in force since before the restart: {}",
                rules.join("; ")
            );
        }
        Ok(Self::with(node_id, drill, Some(path.to_path_buf())))
    }

    fn with(node_id: u64, drill: Drill, file: Option<PathBuf>) -> Arc<Faults> {
        Arc::new(Faults {
            node_id,
            active: AtomicBool::new(!drill.rules.is_empty()),
            drill: RwLock::new(drill),
            file: Mutex::new(file),
            counters: Mutex::new(BTreeMap::new()),
            check: std::sync::OnceLock::new(),
        })
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// The drill in force.
    pub fn drill(&self) -> Drill {
        self.drill.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts `drill` in force if it is [`newer`] than the one in force (and
    /// on disk first, when the node keeps a file). `Ok(false)`: the same
    /// drill, nothing to do. The error names the field; an older drill is
    /// refused with the generation held.
    pub fn set(&self, drill: Drill) -> Result<bool, SetError> {
        let drill = validate_drill(drill).map_err(SetError::Invalid)?;
        // With TLS, only the operators sign drills: the sync installs what
        // peers answer, and a peer's word is not an operator's.
        if let Some(check) = self.check.get() {
            check(&drill).map_err(SetError::Invalid)?;
        }
        // Generations are the CLI's clock in ms. One far ahead of ours
        // (u64::MAX from a rogue peer's sync answer) would stand above
        // every later command, `heal` included.
        let now_ms = crate::server::now_ms().max(0) as u64;
        if drill.generation > now_ms.saturating_add(MAX_GENERATION_AHEAD_MS) {
            return Err(SetError::Invalid(format!(
                "generation: {} is more than {} h ahead of this node's clock",
                drill.generation,
                MAX_GENERATION_AHEAD_MS / 3_600_000
            )));
        }
        let file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.drill();
        if drill == current {
            return Ok(false);
        }
        if !newer(&drill, &current) {
            return Err(SetError::Older {
                held: current.generation,
            });
        }
        if let Some(path) = file.as_ref() {
            use prost::Message;
            write_durably(path, &drill.encode_to_vec())
                .map_err(|e| SetError::Io(format!("drill file {}: {e}", path.display())))?;
        }
        let rules: Vec<String> = drill.rules.iter().map(describe).collect();
        tracing::warn!(
            node = self.node_id,
            generation = drill.generation,
            "fault drill: {} rules in force{}{}",
            rules.len(),
            if rules.is_empty() { "" } else { ": " },
            rules.join("; ")
        );
        let active = !drill.rules.is_empty();
        *self.drill.write().unwrap_or_else(|e| e.into_inner()) = drill;
        self.active.store(active, Ordering::Release);
        Ok(true)
    }

    /// Rules in the order they were added; counters by peer.
    pub fn snapshot(&self) -> FaultsResponse {
        let drill = self.drill();
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
            rules: drill.rules,
            counters,
            generation: drill.generation,
            operator_cert: drill.operator_cert,
            signature: drill.signature,
        }
    }

    /// Test shorthands for a local change one generation up.
    #[cfg(test)]
    pub(crate) fn add(&self, rule: FaultRule) -> Result<(), String> {
        let d = self.drill();
        let rules = with_rule(&d.rules, rule)?;
        self.bump(rules);
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn heal(&self) -> usize {
        self.heal_between(&[], &[]).expect("both sides empty")
    }

    #[cfg(test)]
    pub(crate) fn heal_between(&self, a: &[u64], b: &[u64]) -> Result<usize, String> {
        let (rules, removed) = without(&self.drill().rules, a, b)?;
        self.bump(rules);
        Ok(removed)
    }

    #[cfg(test)]
    fn bump(&self, rules: Vec<FaultRule>) {
        let generation = self.drill().generation + 1;
        self.set(Drill {
            generation,
            rules,
            ..Default::default()
        })
        .expect("newer");
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
        self.verdict(self.node_id, peer, peer)
    }

    /// The answer to a call this node made to `peer`, on its way back: a
    /// message from `peer` to this node, judged as [`Self::outbound`] judges
    /// one the other way. The caller applies it, since a unary call's
    /// answer has no sender-side hook; a one-way rule from `peer` loses
    /// the answer after `peer` acted, as a half-broken link does.
    pub fn answer_from(&self, peer: u64) -> Verdict {
        self.verdict(peer, self.node_id, peer)
    }

    /// A message from `from` to `to` (one of them this node, the other
    /// `peer`, whose counters it adds to).
    fn verdict(&self, from: u64, to: u64, peer: u64) -> Verdict {
        if !self.active.load(Ordering::Acquire) {
            return Verdict::Pass;
        }
        let verdict = {
            let drill = self.drill.read().unwrap_or_else(|e| e.into_inner());
            let mut drop = false;
            let mut delay = 0u32;
            for r in drill.rules.iter().filter(|r| Self::applies(r, from, to)) {
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
        let drill = self.drill.read().unwrap_or_else(|e| e.into_inner());
        let applies = |r: &&FaultRule| Self::applies(r, peer, self.node_id);
        drill
            .rules
            .iter()
            .filter(applies)
            .any(|r| match FaultAction::try_from(r.action) {
                Ok(FaultAction::Partition) => true,
                Ok(FaultAction::Drop) => r.drop_permille >= 1000,
                _ => false,
            })
    }
}

/// How often a node asks others for a newer drill.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(3);
/// Nodes asked per round, chosen at random when there are more.
pub const SYNC_FANOUT: usize = 4;
/// How long one asked node has to answer.
const SYNC_TIMEOUT: Duration = Duration::from_secs(1);

/// Keeps this node's drill up to date with the others': at start and every
/// [`SYNC_INTERVAL`], asks up to [`SYNC_FANOUT`] nodes for theirs and takes
/// the newest if it is newer. This is how a node that was down or
/// unreachable when an operator changed the drill catches up (the CLI only
/// reaches the nodes that answer), and how two operators' drills at the
/// same generation settle on one.
///
/// The questions go over the Admin service, which drills do not cut: a
/// drill rehearses the network the nodes' raft and federation traffic
/// sees, while its own control must reach everyone, heal included.
pub async fn sync(
    faults: Arc<Faults>,
    others: Vec<(u64, tonic::transport::Channel)>,
    stop: impl std::future::Future<Output = ()>,
) {
    use hotline_proto::v1::FaultsRequest;
    use hotline_proto::v1::admin_client::AdminClient;
    use rand::seq::SliceRandom;
    tokio::pin!(stop);
    let mut every = tokio::time::interval(SYNC_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = &mut stop => return,
        }
        let asked: Vec<(u64, tonic::transport::Channel)> = others
            .choose_multiple(&mut rand::thread_rng(), SYNC_FANOUT)
            .cloned()
            .collect();
        let answers = futures::future::join_all(asked.into_iter().map(|(id, ch)| async move {
            let mut req = tonic::Request::new(FaultsRequest {});
            req.set_timeout(SYNC_TIMEOUT);
            let answer = tokio::time::timeout(SYNC_TIMEOUT, AdminClient::new(ch).faults(req)).await;
            match answer {
                Ok(Ok(r)) => {
                    let r = r.into_inner();
                    Some((
                        id,
                        Drill {
                            generation: r.generation,
                            rules: r.rules,
                            operator_cert: r.operator_cert,
                            signature: r.signature,
                        },
                    ))
                }
                _ => None, // down or slow: another round, or another node
            }
        }))
        .await;
        // Only drills this node would take: a rogue peer's unsigned one,
        // however new, must not hide an operator's drill another peer has.
        let held = faults.drill();
        let admissible = answers.into_iter().flatten().filter(|(from, d)| {
            if !newer(d, &held) {
                return false; // nothing to take, nothing to say
            }
            let Some(check) = faults.check.get() else {
                return true;
            };
            match validate_drill(d.clone()).and_then(|d| check(&d)) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(node = faults.node_id, from, "fault drill not taken: {e}");
                    false
                }
            }
        });
        let Some((from, drill)) = newest(admissible, |(_, d)| d) else {
            continue;
        };
        if !newer(&drill, &faults.drill()) {
            continue;
        }
        let generation = drill.generation;
        match faults.set(drill) {
            Ok(true) => tracing::warn!(
                node = faults.node_id,
                from,
                generation,
                "fault drill taken from node {from}: it missed a change"
            ),
            // Changed meanwhile by the operator: theirs is at least as new.
            Ok(false) | Err(SetError::Older { .. }) => {}
            Err(e) => tracing::error!(node = faults.node_id, from, "fault drill not taken: {e}"),
        }
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
                // The answer to a call `to` made to `from` crosses the
                // same link: lost exactly where a message would be.
                assert_eq!(g.answer_from(from), expect, "answer at {to} from {from}");
            }
        }
        // Only the cut direction was counted.
        assert_eq!(counter(&nodes[0], 2), (1, 0));
        assert_eq!(counter(&nodes[1], 1), (2, 0));
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
        // Sets that match no rule exactly are refused, naming what is in force.
        assert_eq!(
            f.heal_between(&[1], &[5, 6]).unwrap_err(),
            "side_a, side_b: no rule in force is between exactly 1 and 5,6 (either way round); in force: partition 1 | 5"
        );
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

    /// With a check required (TLS: the operators' signature), a drill it
    /// refuses is not put in force, from the Admin call or the sync alike.
    #[test]
    fn a_required_check_refuses_a_drill_it_does_not_pass() {
        let f = Faults::new(1);
        f.require(Box::new(|d| {
            if d.signature.is_empty() {
                Err("signature: missing".into())
            } else {
                Ok(())
            }
        }));
        let e = f.set(drill(5, Vec::new())).unwrap_err();
        assert!(
            matches!(&e, SetError::Invalid(m) if m == "signature: missing"),
            "{e}"
        );
        assert_eq!(f.drill().generation, 0, "nothing in force");
        let mut signed = drill(5, Vec::new());
        signed.signature = vec![1];
        assert!(f.set(signed).unwrap());
    }

    fn drill(generation: u64, rules: Vec<FaultRule>) -> Drill {
        Drill {
            generation,
            rules,
            ..Default::default()
        }
    }

    #[test]
    fn a_newer_drill_replaces_the_one_in_force_and_an_older_one_is_refused() {
        let f = Faults::new(1);
        let cut = rule(&[1], &[2], FaultAction::Partition);
        assert_eq!(f.set(drill(10, vec![cut.clone()])), Ok(true));
        assert_eq!(f.outbound(2), Verdict::Drop);
        // The same drill again (a retried command): nothing to do.
        assert_eq!(f.set(drill(10, vec![cut.clone()])), Ok(false));
        // An older one (an operator who did not see generation 10): refused,
        // naming the generation held, and the rule stays.
        assert_eq!(f.set(drill(9, vec![])), Err(SetError::Older { held: 10 }));
        assert!(
            SetError::Older { held: 10 }
                .to_string()
                .starts_with("generation: ")
        );
        assert_eq!(f.outbound(2), Verdict::Drop);
        // One far ahead of the clock (a rogue peer's u64::MAX, which no
        // later command could outrank) is refused, naming the field.
        let e = f.set(drill(u64::MAX, vec![])).unwrap_err();
        assert!(
            matches!(&e, SetError::Invalid(m) if m.starts_with("generation: ")),
            "{e}"
        );
        assert_eq!(f.outbound(2), Verdict::Drop);
        // A heal is a newer, empty drill.
        assert_eq!(f.set(drill(11, vec![])), Ok(true));
        assert_eq!(f.outbound(2), Verdict::Pass);
        assert_eq!(f.snapshot().generation, 11);
        // Two drills at one generation: every node takes the same one,
        // whichever it saw first.
        let (x, y) = (
            drill(12, vec![cut.clone()]),
            drill(12, vec![rule(&[1], &[3], FaultAction::Partition)]),
        );
        assert!(newer(&x, &y) != newer(&y, &x));
        let winner = if newer(&x, &y) { &x } else { &y };
        for order in [[&x, &y], [&y, &x]] {
            let g = Faults::new(1);
            for d in order {
                let _ = g.set(d.clone());
            }
            assert_eq!(&g.drill(), winner);
        }
        // A bad rule is refused by index and field; nothing changes.
        let mut bad_rule = cut.clone();
        bad_rule.side_b.clear();
        let e = f.set(drill(13, vec![cut, bad_rule])).unwrap_err();
        assert_eq!(
            e,
            SetError::Invalid("rules[1].side_b: must name at least one node".into())
        );
        assert_eq!(f.snapshot().generation, 11);
    }

    #[test]
    fn the_drill_outlives_a_restart_and_a_damaged_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drill.pb");
        let f = Faults::open(1, &path).unwrap();
        assert_eq!(f.drill(), Drill::default(), "no file: no drill");
        let mut slow = rule(&[1], &[2], FaultAction::Delay);
        slow.label = "上海 | 江苏".into();
        let d = drill(7, vec![rule(&[1], &[3], FaultAction::Partition), slow]);
        assert_eq!(f.set(d.clone()), Ok(true));
        drop(f);
        // Restarted: the same drill is in force before anything is asked.
        let g = Faults::open(1, &path).unwrap();
        assert_eq!(g.drill(), d);
        assert_eq!(g.outbound(3), Verdict::Drop);
        assert_eq!(g.outbound(2), Verdict::Delay(Duration::from_millis(200)));
        assert!(!path.with_extension("tmp").exists());
        // Healed, then restarted: healed.
        assert_eq!(g.set(drill(8, vec![])), Ok(true));
        drop(g);
        assert_eq!(Faults::open(1, &path).unwrap().outbound(3), Verdict::Pass);
        // A damaged file stops the node with the file's name, rather than
        // starting it outside the drill the operator set.
        std::fs::write(&path, b"\xff\xff\xff").unwrap();
        let e = Faults::open(1, &path).err().expect("refused").to_string();
        assert!(
            e.contains("drill.pb") && e.contains("remove the file"),
            "{e}"
        );
    }

    #[test]
    fn a_change_keeps_what_it_does_not_touch() {
        let a = rule(&[1], &[2], FaultAction::Partition);
        let b = rule(&[3], &[4], FaultAction::Delay);
        let rules = with_rule(std::slice::from_ref(&a), b.clone()).unwrap();
        assert_eq!(rules, vec![a.clone(), b.clone()]);
        assert_eq!(with_rule(&rules, a.clone()).unwrap(), rules, "no stacking");
        let full: Vec<FaultRule> = (0..MAX_RULES as u64)
            .map(|i| rule(&[100 + i], &[1], FaultAction::Partition))
            .collect();
        assert!(
            with_rule(&full, b.clone())
                .unwrap_err()
                .starts_with("rule:")
        );
        assert_eq!(without(&rules, &[4], &[3]).unwrap(), (vec![a], 1));
        assert_eq!(without(&rules, &[], &[]).unwrap(), (vec![], 2));
    }

    #[test]
    fn a_heal_between_sets_no_rule_is_between_is_refused() {
        let mut a = rule(&[1], &[2], FaultAction::Partition);
        a.label = "1 | 2".into();
        let b = rule(&[3], &[4], FaultAction::Delay);
        let rules = vec![a, b];
        let e = without(&rules, &[1], &[3]).unwrap_err();
        assert_eq!(
            e,
            "side_a, side_b: no rule in force is between exactly 1 and 3 (either way round); in force: partition 1 | 2 [1 | 2]; delay 200ms 3 | 4"
        );
        let e = without(&[], &[1], &[2]).unwrap_err();
        assert!(e.ends_with("in force: none"), "{e}");
        // Healing everything when nothing is in force is no mistake.
        assert_eq!(without(&[], &[], &[]).unwrap(), (vec![], 0));
    }

    #[test]
    fn the_same_action_between_the_same_sides_is_refused_naming_the_rule() {
        let mut a = rule(&[1, 2], &[3], FaultAction::Partition);
        a.label = "上海 | 江苏".into();
        let rules = with_rule(&[], a.clone()).unwrap();
        // The same sides under another label, either way round.
        let mut again = rule(&[3], &[2, 1], FaultAction::Partition);
        again.label = "31 | 32".into();
        assert_eq!(
            with_rule(&rules, again).unwrap_err(),
            "side_a, side_b: this partition between these sides is in force already: partition 1,2 | 3 [上海 | 江苏]; heal it first to change it"
        );
        // Another delay between the same sides: one delay at a time.
        let d = with_rule(&rules, rule(&[1], &[3], FaultAction::Delay)).unwrap();
        let mut longer = rule(&[1], &[3], FaultAction::Delay);
        longer.delay_ms = 900;
        assert!(
            with_rule(&d, longer)
                .unwrap_err()
                .contains("delay 200ms 1 | 3")
        );
        // Equal, label and all: a retried command, no change.
        assert_eq!(with_rule(&rules, a.clone()).unwrap(), rules);
        // Another action, or one way only, is another rule.
        assert_eq!(
            with_rule(&rules, rule(&[1, 2], &[3], FaultAction::Drop))
                .unwrap()
                .len(),
            2
        );
        let mut one_way = a.clone();
        one_way.one_way = true;
        let rules = with_rule(&rules, one_way.clone()).unwrap();
        assert_eq!(rules.len(), 2);
        // One way, the direction counts: 3 → 1,2 is not 1,2 → 3.
        let mut back = rule(&[3], &[1, 2], FaultAction::Partition);
        back.one_way = true;
        assert_eq!(with_rule(&rules, back).unwrap().len(), 3);
        one_way.label = "again".into();
        assert!(with_rule(&rules, one_way).is_err());
    }
}
