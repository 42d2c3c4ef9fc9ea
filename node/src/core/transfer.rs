//! Cross-region transfer (跨区域转办), the state-machine half (DESIGN.md §5).
//!
//! A group that lets a ticket go, relays it or receives it records the
//! transfer in its replicated state, so custody is never in doubt:
//!
//! 1. origin commits `TransferOut` (or an accept with `transfer_to_group`):
//!    the ticket becomes a stub naming its new owner; a record is PENDING.
//! 2. the leader's forwarder passes the envelope to the next hop, which
//!    commits `Custody` before answering (store and forward); the sender
//!    then commits `HopDone` (FORWARDED) and stops sending. A hop that
//!    already has the transfer id answers "duplicate": exactly once.
//! 3. the destination's `Custody` creates the ticket (or refuses it: wrong
//!    region) and queues a receipt, which travels back hop by hop
//!    (`ReceiptIn` at each, then `ReceiptPassed` at the sender) to the
//!    origin; a refused ticket comes back to the origin for review.
//!
//! Everything here is deterministic: routing choices (which hop next) are
//! the forwarder's, made from the directory outside the state machine.

use std::collections::BTreeMap;
use std::sync::Arc;

use hotline_proto::v1::{
    Custody, Event, HopDone, ReceiptIn, ReceiptPassed, Status, Ticket, TransferEnvelope,
    TransferOut, TransferReceipt, TransferRecord, TransferState,
};

use super::audit::{self, payload};
use super::lifecycle::{self, CommandError};
use super::tickets::{ApplyResult, TicketMachine, bad};

/// Test-only: when set, a retried `Custody` is applied again instead of being
/// acknowledged as a duplicate. Exists only in builds with the
/// `test-switches` feature; the simulator's swarm must catch it.
#[cfg(feature = "test-switches")]
pub static BREAK_IDEMPOTENCY: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Sets the test-only switch; returns false (and does nothing) in builds
/// without the `test-switches` feature.
pub fn set_break_idempotency(on: bool) -> bool {
    #[cfg(feature = "test-switches")]
    {
        BREAK_IDEMPOTENCY.store(on, std::sync::atomic::Ordering::Relaxed);
        true
    }
    #[cfg(not(feature = "test-switches"))]
    {
        !on
    }
}

pub fn idempotency_broken() -> bool {
    #[cfg(feature = "test-switches")]
    {
        BREAK_IDEMPOTENCY.load(std::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(not(feature = "test-switches"))]
    {
        false
    }
}

/// Finished transfer records are kept this long for duplicate detection
/// and the national cross-province list, then pruned.
pub const TRANSFER_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;
/// Bound on transfer records kept, whatever their age.
pub const MAX_TRANSFER_RECORDS: usize = 1_000_000;

/// The group id of a region code ("" = national, `NATIONAL_GROUP`).
pub fn group_of_region(region: &str) -> u64 {
    hotline_federation::topology::try_group_id(region).unwrap_or(0)
}

/// The groups the forwarder tries, in order, for a record held at group
/// `at`: for an envelope, the target (the destination, or the national group
/// for a cross-province envelope that has not passed it yet) first, then the
/// groups on the way there, furthest first — direct delivery when possible,
/// hop by hop otherwise; for a receipt, the groups it came through, nearest
/// first, so each hop marks the transfer delivered on the way back, up to
/// the national group at most (it must see every cross-province receipt).
pub fn forward_candidates(
    dir: &hotline_federation::directory::Directory,
    at: u64,
    rec: &TransferRecord,
) -> Vec<u64> {
    let Some(env) = rec.envelope.as_ref() else {
        return Vec::new();
    };
    if rec.receipt_pending {
        let hops = &env.hops;
        let before = hops.iter().rposition(|&g| g == at).unwrap_or(hops.len());
        let mut out: Vec<u64> = hops[..before].iter().rev().copied().collect();
        out.dedup();
        // The national group lists every cross-province case with its
        // state: a receipt may skip a relay that does not answer, but not
        // national, whose list would show the case in transit for good.
        let national = hotline_federation::topology::NATIONAL_GROUP;
        if let Some(i) = out.iter().position(|&g| g == national) {
            out.truncate(i + 1);
        }
        return out;
    }
    step_candidates(dir, at, env.destination_group, env.via_national_done)
}

/// The groups an envelope at `at` heading for `to` may go to next, best
/// first: the relay target if reachable, else the furthest group on the way
/// there. Both the forwarder ([`forward_candidates`]) and the callee's
/// check of every step of an envelope's hops ([`hop_allowed`]) ask this, so
/// what one sends the other takes.
fn step_candidates(
    dir: &hotline_federation::directory::Directory,
    at: u64,
    to: u64,
    via_national_done: bool,
) -> Vec<u64> {
    if at == to {
        return Vec::new();
    }
    let target = relay_target(dir, at, to, via_national_done);
    dir.path(at, target).into_iter().skip(1).rev().collect()
}

/// Where an envelope at `at` heading for `to` aims: `to`, or the national
/// group for a cross-province envelope that has not passed it yet (the
/// national group relays and lists every cross-province case).
fn relay_target(
    dir: &hotline_federation::directory::Directory,
    at: u64,
    to: u64,
    via_national_done: bool,
) -> u64 {
    let national = hotline_federation::topology::NATIONAL_GROUP;
    let relay = !via_national_done
        && at != national
        && dir.contains(national)
        && dir.is_cross_province(at, to);
    if relay { national } else { to }
}

/// Every group an envelope from `origin` to `dest` may pass, in order: the
/// directory path to the relay target, then on to `dest`. Each hop
/// [`forward_candidates`] offers lies on it (a path between two groups of
/// a tree path is part of it).
fn route(dir: &hotline_federation::directory::Directory, origin: u64, dest: u64) -> Vec<u64> {
    let target = relay_target(dir, origin, dest, false);
    let mut r = dir.path(origin, target);
    r.extend(dir.path(target, dest).into_iter().skip(1));
    r
}

/// Whether a `Forward` call from group `from` to group `to` follows the
/// directory, as the callee checks it before committing anything
/// (DESIGN.md §5, security): an envelope must come from its last custodian
/// and go to a group [`forward_candidates`] offers from there, and every
/// earlier step of its hops must be one the forwarder could have taken
/// too (each hop a group offered from the one before, no group twice, the
/// national relay passed exactly when the hops say so); a receipt must
/// travel back along its transfer's route (origin → destination, the
/// origin's group leading its transfer id), from a later group to an
/// earlier one. `Err` says why not, for the refusal.
pub fn hop_allowed(
    dir: &hotline_federation::directory::Directory,
    from: u64,
    to: u64,
    envelope: Option<&TransferEnvelope>,
    receipt: Option<&TransferReceipt>,
) -> Result<(), String> {
    if let Some(env) = envelope {
        if env.hops.first() != Some(&env.origin_group) || env.hops.last() != Some(&from) {
            return Err(format!(
                "envelope.hops: {:?} must run from origin group {} to the sending group {from}",
                env.hops, env.origin_group
            ));
        }
        check_hops(dir, env, to)?;
        if !step_candidates(dir, from, env.destination_group, env.via_national_done).contains(&to) {
            return Err(format!(
                "to_group: group {to} is not on the directory's way from {from} to {}",
                env.destination_group
            ));
        }
    }
    if let Some(rc) = receipt {
        let origin = rc
            .transfer_id
            .split('-')
            .next()
            .and_then(|g| g.parse::<u64>().ok())
            .filter(|&g| dir.contains(g))
            .ok_or_else(|| {
                format!(
                    "receipt.transfer_id: {:?} does not start with an origin group",
                    rc.transfer_id
                )
            })?;
        let r = route(dir, origin, rc.by_group);
        let pos = |g| r.iter().position(|&x| x == g);
        match (pos(from), pos(to)) {
            (Some(f), Some(t)) if t < f => {
                let national = hotline_federation::topology::NATIONAL_GROUP;
                if pos(national).is_some_and(|n| t < n && n < f) {
                    return Err(format!(
                        "to_group: a receipt from {from} passes the national group before {to}"
                    ));
                }
            }
            _ => {
                return Err(format!(
                    "to_group: a receipt goes from {from} to {to}, not back along its route {r:?}"
                ));
            }
        }
    }
    Ok(())
}

/// The steps an envelope took before reaching its sender, checked one by
/// one: each hop must be a group the directory's way offered from the hop
/// before ([`step_candidates`]: the relay target directly, or a group on
/// the way there when it was not reachable), and no group may appear twice
/// (`to` included). Checking only the ends would let a sender present any
/// path, e.g. one that never passed the national group, whose custody log
/// is the list of cross-province cases. `via_national_done` is recomputed
/// at each step from the hops before it, and the envelope's own flag must
/// agree with its hops: the flag is what lets the next hops skip the relay.
///
/// Earlier steps are judged by the callee's directory of now, not by the
/// one each hop routed with. That holds because the group tree does not
/// change while the federation runs: the replicated directory moves a
/// group's replicas, and its groups are the topology file's (a node hosts,
/// and so places, only those). A topology that gains a group between an
/// envelope's hops, rolled out by restarts, can take a step of an envelope
/// in flight off the new way (a group added below the old lowest common
/// ancestor of two hops shortens the path past it): that envelope is then
/// refused, and logged, at its next hop, and stays in custody where it is —
/// a known limit, visible, never a loss.
fn check_hops(
    dir: &hotline_federation::directory::Directory,
    env: &TransferEnvelope,
    to: u64,
) -> Result<(), String> {
    let national = hotline_federation::topology::NATIONAL_GROUP;
    let mut seen = std::collections::BTreeSet::new();
    if let Some(g) = env.hops.iter().chain([&to]).find(|&&g| !seen.insert(g)) {
        return Err(format!(
            "envelope.hops: group {g} appears twice on the way {:?} → {to}; no group takes custody of an envelope twice",
            env.hops
        ));
    }
    let passed = env.hops.contains(&national);
    if env.via_national_done != passed {
        return Err(format!(
            "envelope.via_national_done: {} but the national group {} among the hops {:?}",
            env.via_national_done,
            if passed { "is" } else { "is not" },
            env.hops
        ));
    }
    let mut via_national = false;
    for pair in env.hops.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        via_national |= a == national;
        let offered = step_candidates(dir, a, env.destination_group, via_national);
        if !offered.contains(&b) {
            return Err(format!(
                "envelope.hops: {a} → {b} is not a step on the directory's way from {a} to {} (it offers {offered:?})",
                env.destination_group
            ));
        }
    }
    Ok(())
}

/// When a group's forwarder looks at its transfer work again. The node's
/// forwarder task (node/src/forwarder.rs) and the simulator's forwarder both
/// keep one, so a rehearsed transfer takes the time a real one does.
///
/// A forwarder wakes at its bell (transfer records changed on its node, or
/// its node became the leader) or when its pause runs out. A look that finds
/// this node leading with work runs a round ([`InFlight`]) and keeps the
/// short pause: work still pending after a round (its next hop cut off, say)
/// is retried every [`ForwarderPace::WORK_INTERVAL_MS`], with no backoff,
/// because a cut link fails fast and a silent one holds only its own record
/// for the call deadline. A look that finds nothing to do doubles the pause,
/// up to [`ForwarderPace::MAX_IDLE_POLL_MS`]: idle groups cost a timer and a
/// local look every half minute, the safety net behind the bell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForwarderPace {
    pause_ms: u64,
}

impl ForwarderPace {
    /// The pause while the group has transfer work.
    pub const WORK_INTERVAL_MS: u64 = 200;
    /// The longest pause between two looks at an idle group.
    pub const MAX_IDLE_POLL_MS: u64 = 30_000;
    /// Records read per look, so one look stays short.
    pub const MAX_WORK_PER_ROUND: usize = 64;
    /// How long a round waits for its slowest record before the forwarder
    /// goes on without it. A hop answers in milliseconds when it answers at
    /// all (a commit at the next group), so this ends only rounds with a
    /// silent hop (a call held to its deadline, a delay drill): that record
    /// goes on in the background ([`InFlight`]) and holds up no newer one.
    pub const ROUND_PATIENCE_MS: u64 = 500;

    pub const fn new() -> Self {
        Self {
            pause_ms: Self::WORK_INTERVAL_MS,
        }
    }

    /// After a look: whether to run a round now (this node leads the group
    /// and it has work). Sets the pause before the next look, unless the
    /// bell rings first.
    pub fn look(&mut self, leader: bool, has_work: bool) -> bool {
        let round = leader && has_work;
        self.pause_ms = if round {
            Self::WORK_INTERVAL_MS
        } else {
            (self.pause_ms * 2).min(Self::MAX_IDLE_POLL_MS)
        };
        debug_assert!((Self::WORK_INTERVAL_MS..=Self::MAX_IDLE_POLL_MS).contains(&self.pause_ms));
        round
    }

    /// The pause before the next look (after a round ends, or after an
    /// idle look).
    pub fn pause_ms(&self) -> u64 {
        self.pause_ms
    }
}

impl Default for ForwarderPace {
    fn default() -> Self {
        Self::new()
    }
}

/// The records a forwarder is handing on (a `Forward` call to the next hop,
/// then the commit of `HopDone` or `ReceiptPassed` at home), each with the
/// round that started it. The node's forwarder task and the simulator's
/// forwarder both keep one.
///
/// A round starts the records of a look that are not in flight already,
/// and waits until they are all done or [`ForwarderPace::ROUND_PATIENCE_MS`]
/// passes. Under load every record of a round is done within milliseconds,
/// so rounds follow each other and the bells rung during one coalesce into
/// one look after it (per-record looks cost more than they save: BENCHMARKS,
/// "a forwarder without rounds"). A record still in flight when its round
/// gives up on it is a straggler: it goes on alone, its record is not
/// started again meanwhile, and when it ends the forwarder looks at once
/// (its end may have made more work, such as a receipt that reached this
/// hop while its envelope was still being handed on, which a look in
/// between skipped).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InFlight {
    /// Transfer id → the round that started it.
    by_id: BTreeMap<String, u64>,
    /// Rounds started.
    rounds: u64,
}

impl InFlight {
    /// Records in flight at once, stragglers included.
    pub const MAX: usize = ForwarderPace::MAX_WORK_PER_ROUND;

    /// Starts a round with the records of `work` (a look's, in its order)
    /// that are not in flight, as many as there is room for. Returns the
    /// round's number and its records; a record without an envelope (none
    /// is written so) is left out.
    pub fn start_round(&mut self, work: Vec<TransferRecord>) -> (u64, Vec<TransferRecord>) {
        self.rounds += 1;
        let round = self.rounds;
        let mut started = Vec::new();
        for rec in work {
            if self.by_id.len() >= Self::MAX {
                break;
            }
            let Some(id) = rec.envelope.as_ref().map(|e| &e.transfer_id) else {
                continue;
            };
            if self.by_id.contains_key(id) {
                continue;
            }
            self.by_id.insert(id.clone(), round);
            started.push(rec);
        }
        debug_assert!(self.by_id.len() <= Self::MAX);
        (round, started)
    }

    /// A record's hand-on ended (committed at home, failed, or past its
    /// deadline). Returns the round that started it, if it was in flight.
    pub fn end(&mut self, transfer_id: &str) -> Option<u64> {
        self.by_id.remove(transfer_id)
    }

    /// Ends every record `round` started that is still in flight (their
    /// calls' deadline passed). Returns how many there were.
    pub fn expire(&mut self, round: u64) -> usize {
        let before = self.by_id.len();
        self.by_id.retain(|_, r| *r != round);
        before - self.by_id.len()
    }

    /// Drops every record (a forwarder that is no longer its group's
    /// leader's); round numbers go on, so an older round's end stays told
    /// apart from a newer one's.
    pub fn clear(&mut self) {
        self.by_id.clear();
    }

    /// Whether every record `round` started has ended.
    pub fn round_done(&self, round: u64) -> bool {
        !self.by_id.values().any(|&r| r == round)
    }

    /// The round started last (0 before the first).
    pub fn last_round(&self) -> u64 {
        self.rounds
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

fn province(code: &str) -> &str {
    code.get(..2).unwrap_or("")
}

/// A send-back names no destination (the state machine takes it from the
/// ticket) and must say why.
fn check_send_back_fields(t: &TransferOut) -> Result<(), CommandError> {
    for (field, set) in [
        ("destination_group", t.destination_group != 0),
        ("destination_region", !t.destination_region.is_empty()),
    ] {
        if set {
            return Err(bad(
                field,
                "must be empty for a send-back: it goes to the group the ticket came from",
            )
            .into());
        }
    }
    lifecycle::check_text("reason", &t.reason, lifecycle::MAX_REASON_BYTES)?;
    Ok(())
}

/// Whether an envelope goes from one province to another, which is what
/// puts it on the national group's list of cross-province cases: from the
/// province of the group that sent it (as routing decides), not of the
/// ticket's accepting center, which differs once a ticket moves on from
/// where it arrived, or is sent back. The national group, which belongs to
/// no province, sends from the ticket's accepting center.
fn crosses_provinces(env: &TransferEnvelope) -> bool {
    let from = hotline_federation::topology::group_region(env.origin_group);
    let from = if from.is_empty() {
        env.ticket.as_ref().map_or("", |t| t.region.as_str())
    } else {
        from.as_str()
    };
    province(from) != province(&env.destination_region)
}

/// The system actor of the group that acts (receives, refuses, relays).
fn group_actor(group: u64) -> Option<hotline_proto::v1::Actor> {
    Some(hotline_proto::v1::Actor {
        id: format!("group-{group}"),
        role: hotline_proto::v1::Role::System as i32,
    })
}

/// A transfer's outcome as an event of the ticket's chain, by the group
/// `by_group` (a system actor): delivered, refused on arrival, or sent
/// back.
fn transfer_event(
    kind: &str,
    by_group: u64,
    transfer_id: &str,
    reason: &str,
    send_back: bool,
    at_ms: i64,
    index: u64,
) -> Event {
    Event {
        kind: kind.into(),
        actor: group_actor(by_group),
        at_ms,
        reason: reason.into(),
        payload: if send_back {
            payload!({
                "transfer_id": transfer_id,
                "by_group": by_group,
                "send_back": true,
            })
        } else {
            payload!({
                "transfer_id": transfer_id,
                "by_group": by_group,
            })
        },
        raft_index: index,
        ..Default::default()
    }
}

/// What a ticket's handling here left on it (units, deadlines, the
/// return under review, counters a unit's KPIs read) is cleared from the
/// copy that leaves: the destination handles it from the start, by its own
/// units, deadlines and rules, and its KPIs do not count what another
/// region's units did. The history stays in the events (the hash chain
/// goes on). The stub here keeps it: a ticket refused on arrival comes back
/// to the review it left. A ticket transferred before dispatch has none.
fn clear_handling(t: &mut Ticket) {
    t.lead_unit.clear();
    t.assisting_units.clear();
    t.first_dispatched_at_ms = 0;
    t.dispatched_at_ms = 0;
    t.signed_at_ms = 0;
    t.sign_due_ms = 0;
    t.handle_due_ms = 0;
    t.handle_warn_ms = 0;
    t.callback_due_ms = 0;
    t.signed_in_time = false;
    t.replied_at_ms = 0;
    t.replied_in_time = false;
    t.reply_text.clear();
    t.extensions = 0;
    t.pending_extension = None;
    t.pending_return = None;
    t.returns = 0;
    t.reopens = 0;
    t.urges = 0;
    t.supervision_level = 0;
    t.callbacks.clear();
}

/// Whether the ticket is here because the group it was sent to sent it
/// back (退回): its latest transfer event is that return.
fn came_back(t: &Ticket) -> bool {
    t.transfer_state == TransferState::Refused as i32
        && t.events
            .iter()
            .rev()
            .find(|e| e.kind.starts_with("transfer_"))
            .is_some_and(|e| {
                e.kind == "transfer_refused" && e.payload.contains("\"send_back\":true")
            })
}

impl TicketMachine {
    pub fn group_id(&self) -> u64 {
        group_of_region(self.region())
    }

    fn is_national(&self) -> bool {
        self.region().is_empty()
    }

    /// Records that need the forwarder: envelopes held here that are not yet
    /// passed on (and are not for this group), and receipts to pass back.
    /// A receipt this group issued as the destination carries the ticket as
    /// it is now (the record does not keep a second copy of it).
    pub fn transfer_work(&self, limit: usize) -> Vec<TransferRecord> {
        let me = self.group_id();
        self.transfer_work_ids
            .iter()
            .take(limit)
            .map(|id| {
                let mut r = (*self.transfers[id]).clone();
                if let Some(rc) = r.receipt.as_mut()
                    && rc.by_group == me
                    && !rc.refused
                    && rc.ticket.is_none()
                {
                    let ticket_id = r
                        .envelope
                        .as_ref()
                        .and_then(|e| e.ticket.as_ref())
                        .map_or("", |t| t.id.as_str());
                    rc.ticket = self
                        .tickets_map()
                        .get(ticket_id)
                        .map(|t| Box::new((**t).clone()));
                }
                r
            })
            .collect()
    }

    fn needs_forwarder(&self, r: &TransferRecord) -> bool {
        let dest = r.envelope.as_ref().map_or(0, |e| e.destination_group);
        (r.state == TransferState::Pending as i32 && dest != self.group_id()) || r.receipt_pending
    }

    /// Keeps `transfer_work_ids` in step with record `id` (after it was
    /// stored or removed).
    pub(super) fn track_transfer_work(&mut self, id: &str) {
        let work = self
            .transfers
            .get(id)
            .is_some_and(|r| self.needs_forwarder(r));
        if work {
            self.transfer_work_ids.insert(id.to_string());
        } else {
            self.transfer_work_ids.remove(id);
        }
    }

    pub fn transfer(&self, id: &str) -> Option<&TransferRecord> {
        self.transfers.get(id).map(|r| &**r)
    }

    pub fn transfers(&self) -> impl Iterator<Item = &TransferRecord> {
        self.transfers.values().map(|r| &**r)
    }

    /// The shared copy of a transfer record (see `share_transfer`).
    pub fn transfer_arc(&self, id: &str) -> Option<&Arc<TransferRecord>> {
        self.transfers.get(id)
    }

    /// As `share_ticket`, for a transfer record.
    pub fn share_transfer(
        &mut self,
        mine: &Arc<TransferRecord>,
        theirs: &Arc<TransferRecord>,
    ) -> bool {
        debug_assert!(**mine == **theirs, "shared records must be equal");
        let id = mine
            .envelope
            .as_ref()
            .map_or("", |e| e.transfer_id.as_str());
        match self.transfers.get_mut(id) {
            Some(held) if Arc::ptr_eq(held, mine) => {
                *held = theirs.clone();
                true
            }
            _ => false,
        }
    }

    /// Record `id`, to be changed in place and then stored with
    /// `transfer_changed`. A version another holder shares (the other
    /// replicas of a simulated group, a write the disk has not taken yet) is
    /// copied first (`Arc::make_mut`), so a version once handed out never
    /// changes; the last holder changes it without copying the envelope's
    /// ticket — on the node nearly always, in the simulator the last of a
    /// group's replicas. Take it only once the command will change it.
    fn transfer_mut(&mut self, id: &str) -> Option<&mut TransferRecord> {
        self.transfers.get_mut(id).map(Arc::make_mut)
    }

    /// After `transfer_mut`: the changed version goes to the writes.
    fn transfer_changed(&mut self, id: &str) {
        let r = self.transfers.get(id).expect("changed in place").clone();
        self.transfers_floor.0 = self.transfers_floor.0.min(r.updated_at_ms);
        self.writes.transfers_put.push(r);
        self.track_transfer_work(id);
    }

    fn put_transfer(&mut self, r: TransferRecord) {
        let id = r
            .envelope
            .as_ref()
            .expect("record has an envelope")
            .transfer_id
            .clone();
        let r = Arc::new(r);
        self.transfers_floor.0 = self.transfers_floor.0.min(r.updated_at_ms);
        self.writes.transfers_put.push(r.clone());
        self.transfers.insert(id.clone(), r);
        self.track_transfer_work(&id);
    }

    /// Checks a TransferOut against the state without changing it; gives
    /// the ticket and where it goes (for a send-back, the group it came
    /// from, taken from the ticket).
    pub(super) fn check_transfer_out(
        &self,
        t: &TransferOut,
    ) -> Result<(&Ticket, u64, String), CommandError> {
        let ticket = self
            .tickets_map()
            .get(&t.ticket_id)
            .ok_or_else(|| CommandError::NotFound(t.ticket_id.clone()))?;
        lifecycle::check_actor(
            t.actor.as_ref(),
            &[
                hotline_proto::v1::Role::CallTaker,
                hotline_proto::v1::Role::Supervisor,
                hotline_proto::v1::Role::System,
            ],
        )?;
        if t.send_back {
            check_send_back_fields(t)?;
        } else {
            self.check_destination(t)?;
        }
        // Before dispatch, or after a unit returned it (退单, typically
        // 属地不符: "the place is not ours") while the center reviews it.
        // Not while a unit handles it: the unit returns it first.
        if ticket.status != Status::Accepted as i32 && ticket.status != Status::ReturnReview as i32
        {
            let command = if t.send_back {
                "send_back"
            } else {
                "transfer_out"
            };
            return Err(lifecycle::state_error(
                ticket,
                command,
                "is allowed only when accepted (before dispatch) or when a unit returned it (退单审核)",
            ));
        }
        if t.send_back {
            let group = self.send_back_to(ticket)?;
            Ok((
                ticket,
                group,
                hotline_federation::topology::group_region(group),
            ))
        } else {
            Ok((ticket, t.destination_group, t.destination_region.clone()))
        }
    }

    fn check_destination(&self, t: &TransferOut) -> Result<(), CommandError> {
        if t.destination_group == self.group_id() {
            return Err(bad("destination_group", "is this group").into());
        }
        let r = hotline_federation::regions()
            .get(&t.destination_region)
            .map_err(|e| bad("destination_region", e.to_string()))?;
        if r.code.len() < 6 {
            return Err(bad(
                "destination_region",
                format!("{} is not a district or street code", r.code),
            )
            .into());
        }
        // A place under this group's region is this group's own, unless a
        // deeper group serves it: a city group (3101) hands a call about
        // 嘉定 to 嘉定's group (310114), which covers the place.
        let to = hotline_federation::topology::group_region(t.destination_group);
        let deeper = to.len() > self.region().len()
            && to.starts_with(self.region())
            && t.destination_region.starts_with(&to);
        if t.destination_region.starts_with(self.region()) && !self.is_national() && !deeper {
            return Err(bad(
                "destination_region",
                format!("{} lies in this group's region", t.destination_region),
            )
            .into());
        }
        Ok(())
    }

    /// A send-back (退回) goes to the group the ticket came from: only a
    /// ticket that arrived by transfer has one, and one that came back
    /// refused is this group's to review, not to send back again (it would
    /// bounce between two centers with nobody deciding).
    fn send_back_to(&self, ticket: &Ticket) -> Result<u64, CommandError> {
        if ticket.origin_group == 0 || ticket.origin_group == self.group_id() {
            return Err(lifecycle::state_error(
                ticket,
                "send_back",
                "is only for a ticket received by transfer; this one was accepted here",
            ));
        }
        if ticket.origin_group == hotline_federation::topology::NATIONAL_GROUP {
            return Err(lifecycle::state_error(
                ticket,
                "send_back",
                "is not possible: it came from the national group, which handles no tickets; transfer it to the right region or handle it here",
            ));
        }
        if came_back(ticket) {
            return Err(lifecycle::state_error(
                ticket,
                "send_back",
                "is not allowed: it was sent back here for this center's review; transfer it to the right region or handle it here",
            ));
        }
        Ok(ticket.origin_group)
    }

    /// An accept's transfer (首接, owned where the problem is) that the
    /// state machine refused: the node's directory named a destination this
    /// group's region does not allow. The citizen's request is still
    /// accepted here, never lost, and the center handles it or transfers it
    /// by hand; the event says why, so the refusal is not silent (a city
    /// center once kept calls about its districts this way, unnoticed).
    /// Citizens do not see it (`public_summary` has no line for it).
    pub(super) fn transfer_not_started(
        &mut self,
        ticket_id: &str,
        out: &TransferOut,
        error: &CommandError,
        at_ms: i64,
        index: u64,
    ) -> ApplyResult {
        let me = self.group_id();
        let ev = Event {
            kind: "transfer_not_started".into(),
            actor: group_actor(me),
            at_ms,
            reason: error.to_string(),
            payload: payload!({
                "destination_group": out.destination_group,
                "destination_region": out.destination_region,
            }),
            raft_index: index,
            ..Default::default()
        };
        let t = self.ticket_mut(ticket_id).expect("accepted in this apply");
        audit::append(&mut t.events, ev);
        ApplyResult::Ticket(self.ticket_changed(ticket_id))
    }

    pub(super) fn apply_transfer_out(
        &mut self,
        t: &TransferOut,
        at_ms: i64,
        index: u64,
    ) -> ApplyResult {
        let (ticket, destination_group, destination_region) = match self.check_transfer_out(t) {
            Ok((tk, g, r)) => (tk.clone(), g, r),
            Err(e) => return ApplyResult::Rejected(e),
        };
        let n = ticket
            .events
            .iter()
            .filter(|e| e.kind == "transfer_out")
            .count()
            + 1;
        let transfer_id = format!("{}-{}-{n}", self.group_id(), ticket.id);
        let mut stub = ticket;
        stub.status = Status::Transferred as i32;
        stub.owner_group = destination_group;
        stub.transfer_id = transfer_id.clone();
        stub.transfer_state = TransferState::Pending as i32;
        let ev = Event {
            kind: "transfer_out".into(),
            actor: t.actor.clone(),
            at_ms,
            reason: t.reason.clone(),
            payload: payload!({
                "transfer_id": transfer_id,
                "destination_group": destination_group,
                "destination_region": destination_region,
                "send_back": t.send_back,
            }),
            raft_index: index,
            ..Default::default()
        };
        audit::append(&mut stub.events, ev);
        let me = self.group_id();
        let mut leaving = stub.clone();
        clear_handling(&mut leaving);
        // A transfer names where the problem is (the directory's owner of
        // it): the operator's correction of a wrong place (属地不符), which
        // the destination dispatches by. Its coordinates were the old
        // place's. (A send-back names no place: the origin decides.)
        if !t.send_back
            && let Some(loc) = leaving.location.as_mut()
            && loc.code != destination_region
        {
            loc.code = destination_region.clone();
            loc.has_coordinates = false;
            loc.lat = 0.0;
            loc.lng = 0.0;
        }
        let envelope = TransferEnvelope {
            transfer_id: transfer_id.clone(),
            origin_group: me,
            destination_group,
            destination_region,
            ticket: Some(Box::new(leaving)),
            sent_at_ms: at_ms,
            via_national_done: self.is_national(),
            hops: vec![me],
            reason: t.reason.clone(),
            send_back: t.send_back,
        };
        let record = TransferRecord {
            cross_province: crosses_provinces(&envelope),
            envelope: Some(envelope),
            state: TransferState::Pending as i32,
            updated_at_ms: at_ms,
            ..Default::default()
        };
        self.put_transfer(record);
        ApplyResult::Ticket(self.put_ticket(stub))
    }

    pub(super) fn apply_custody(&mut self, c: &Custody, at_ms: i64, index: u64) -> ApplyResult {
        let Some(env) = &c.envelope else {
            return ApplyResult::Rejected(bad("envelope", "is required").into());
        };
        if env.transfer_id.is_empty() || env.ticket.is_none() {
            return ApplyResult::Rejected(bad("envelope", "has no transfer id or ticket").into());
        }
        self.prune_transfers(at_ms);
        if self.transfers.contains_key(&env.transfer_id) && !idempotency_broken() {
            // Seen: acknowledged again, never applied twice.
            return ApplyResult::Custody { duplicate: true };
        }
        let me = self.group_id();
        let mut env = env.clone();
        env.hops.push(me);
        if self.is_national() {
            env.via_national_done = true;
        }
        let mut record = TransferRecord {
            cross_province: crosses_provinces(&env),
            state: TransferState::Pending as i32,
            updated_at_ms: at_ms,
            ..Default::default()
        };
        if env.destination_group == me {
            let incoming = env.ticket.clone().expect("checked");
            let wrong_region =
                !env.destination_region.starts_with(self.region()) || self.is_national();
            // A stub of the same ticket (it left and comes back) is
            // replaced; another ticket under the same id is a clash, as is
            // the same one still being handled here. (A different accept
            // time is a different ticket: the disk keys a ticket by its
            // accept time, so the time must also never change.)
            let held = self.tickets_map().get(&incoming.id);
            let active = held.is_some_and(|t| t.status != Status::Transferred as i32);
            let other = held.is_some_and(|t| t.accepted_at_ms != incoming.accepted_at_ms);
            if wrong_region || active || other {
                let reason = if wrong_region {
                    format!(
                        "{} 不属于本地区({})管辖，退回首接中心",
                        env.destination_region,
                        self.region()
                    )
                } else if other {
                    format!("工单号 {} 与本地区另一工单重复，退回首接中心", incoming.id)
                } else {
                    format!("工单 {} 已在本地区办理中", incoming.id)
                };
                record.state = TransferState::Refused as i32;
                record.refusal = reason.clone();
                record.receipt = Some(TransferReceipt {
                    transfer_id: env.transfer_id.clone(),
                    refused: true,
                    reason,
                    by_group: me,
                    at_ms,
                    ticket: None,
                });
            } else {
                let mut t = incoming;
                t.status = Status::Accepted as i32;
                t.owner_group = 0;
                t.origin_group = env.origin_group;
                t.transfer_id = env.transfer_id.clone();
                t.raft_index = index;
                if env.send_back {
                    // Sent back (退回): this center reviews it, as a ticket
                    // refused on arrival. The citizen's lookup says so; no
                    // SMS, as for that refusal.
                    t.transfer_state = TransferState::Refused as i32;
                    let ev = transfer_event(
                        "transfer_refused",
                        env.origin_group,
                        &env.transfer_id,
                        &env.reason,
                        true,
                        at_ms,
                        index,
                    );
                    audit::append(&mut t.events, ev);
                } else {
                    t.transfer_state = TransferState::Delivered as i32;
                    let ev = Event {
                        kind: "transfer_in".into(),
                        actor: group_actor(me),
                        at_ms,
                        reason: env.reason.clone(),
                        payload: payload!({
                            "transfer_id": env.transfer_id,
                            "origin_group": env.origin_group,
                            "hops": env.hops,
                        }),
                        raft_index: index,
                        ..Default::default()
                    };
                    let seq = audit::append(&mut t.events, ev);
                    // "上海市辖区" for the city group 3101, not "市辖区".
                    let region_name = hotline_federation::regions()
                        .display_name(self.region())
                        .unwrap_or("");
                    let text = format!(
                        "【12345热线】您的工单{}涉及{}，已转至当地热线办理，可继续凭工单号查询进度。",
                        t.id, region_name
                    );
                    for n in lifecycle::notify_all(&t, seq, &text, at_ms) {
                        self.enqueue(n);
                    }
                }
                self.index_ticket(index, &t.id);
                self.put_ticket(*t);
                record.state = TransferState::Delivered as i32;
                // The owner's copy travels with the receipt, but the record
                // does not keep one: the group holds the ticket itself, and
                // `transfer_work` puts it in the receipt as it leaves.
                record.receipt = Some(TransferReceipt {
                    transfer_id: env.transfer_id.clone(),
                    refused: false,
                    reason: String::new(),
                    by_group: me,
                    at_ms,
                    ticket: None,
                });
            }
            record.receipt_pending = true;
        }
        record.envelope = Some(env);
        self.put_transfer(record);
        ApplyResult::Custody { duplicate: false }
    }

    pub(super) fn apply_hop_done(&mut self, h: &HopDone, at_ms: i64) -> ApplyResult {
        let Some(r) = self.transfers.get(&h.transfer_id) else {
            return ApplyResult::Rejected(CommandError::NotFound(h.transfer_id.clone()));
        };
        if r.state != TransferState::Pending as i32 {
            // A repeated acknowledgement, or one the destination's receipt
            // overtook (a direct delivery answers while this hop's own
            // commit is still on its way): the receipt decided the state,
            // but where the envelope went is still this hop's to record.
            if r.next_group == 0 && h.next_group != 0 {
                let r = self.transfer_mut(&h.transfer_id).expect("found above");
                r.next_group = h.next_group;
                self.transfer_changed(&h.transfer_id);
            }
            return ApplyResult::Nothing;
        }
        let r = self.transfer_mut(&h.transfer_id).expect("found above");
        r.state = TransferState::Forwarded as i32;
        r.next_group = h.next_group;
        r.updated_at_ms = at_ms;
        let origin = r.envelope.as_ref().map_or(0, |e| e.origin_group);
        let ticket_id = r
            .envelope
            .as_ref()
            .and_then(|e| e.ticket.as_ref())
            .map(|t| t.id.clone())
            .unwrap_or_default();
        self.transfer_changed(&h.transfer_id);
        if origin == self.group_id()
            && let Some(t) = self.tickets_map().get(&ticket_id)
            && t.transfer_id == h.transfer_id
            && t.transfer_state == TransferState::Pending as i32
        {
            let t = self.ticket_mut(&ticket_id).expect("found above");
            t.transfer_state = TransferState::Forwarded as i32;
            self.ticket_changed(&ticket_id);
        }
        ApplyResult::Nothing
    }

    pub(super) fn apply_receipt_in(
        &mut self,
        r: &ReceiptIn,
        at_ms: i64,
        index: u64,
    ) -> ApplyResult {
        let Some(rc) = &r.receipt else {
            return ApplyResult::Rejected(bad("receipt", "is required").into());
        };
        let Some(rec) = self.transfers.get(&rc.transfer_id) else {
            return ApplyResult::Rejected(CommandError::NotFound(rc.transfer_id.clone()));
        };
        if rec.receipt.is_some() {
            return ApplyResult::Custody { duplicate: true };
        }
        // Only the destination answers a transfer (accepted or refused): a
        // receipt naming another group would let any group on the way undo
        // a delivery (a refused stub turns back into the origin's ticket).
        let dest = rec.envelope.as_ref().map_or(0, |e| e.destination_group);
        if rc.by_group != dest {
            return ApplyResult::Rejected(
                bad(
                    "receipt.by_group",
                    format!(
                        "group {} is not this transfer's destination ({dest})",
                        rc.by_group
                    ),
                )
                .into(),
            );
        }
        let me = self.group_id();
        let rec = self.transfer_mut(&rc.transfer_id).expect("found above");
        rec.state = if rc.refused {
            TransferState::Refused as i32
        } else {
            TransferState::Delivered as i32
        };
        rec.refusal = if rc.refused {
            rc.reason.clone()
        } else {
            String::new()
        };
        rec.receipt = Some(rc.clone());
        rec.updated_at_ms = at_ms;
        let env = rec.envelope.as_ref();
        let at_origin = env.map_or(0, |e| e.origin_group) == me;
        let ticket_id = env
            .and_then(|e| e.ticket.as_ref())
            .map(|t| t.id.clone())
            .unwrap_or_default();
        rec.receipt_pending = !at_origin;
        self.transfer_changed(&rc.transfer_id);
        if at_origin
            && self
                .tickets_map()
                .get(&ticket_id)
                .is_some_and(|t| t.transfer_id == rc.transfer_id)
        {
            let t = self.ticket_mut(&ticket_id).expect("found above");
            let (kind, reason) = if rc.refused {
                // Back to the first-contact center for review: of the
                // return it left from (退单审核), or as accepted.
                t.status = if t.pending_return.is_some() {
                    Status::ReturnReview as i32
                } else {
                    Status::Accepted as i32
                };
                t.owner_group = 0;
                t.transfer_state = TransferState::Refused as i32;
                ("transfer_refused", rc.reason.clone())
            } else {
                t.transfer_state = TransferState::Delivered as i32;
                ("transfer_delivered", String::new())
            };
            let ev = transfer_event(
                kind,
                rc.by_group,
                &rc.transfer_id,
                &reason,
                false,
                at_ms,
                index,
            );
            audit::append(&mut t.events, ev);
            self.ticket_changed(&ticket_id);
        }
        ApplyResult::Custody { duplicate: false }
    }

    pub(super) fn apply_receipt_passed(&mut self, p: &ReceiptPassed, at_ms: i64) -> ApplyResult {
        if self
            .transfers
            .get(&p.transfer_id)
            .is_some_and(|r| r.receipt_pending)
        {
            let r = self.transfer_mut(&p.transfer_id).expect("found above");
            r.receipt_pending = false;
            r.updated_at_ms = at_ms;
            // Passed on toward the origin, which keeps the owner's copy (the
            // first-contact center's view of progress): a relay keeps the
            // receipt, not a second copy of the ticket.
            if let Some(rc) = r.receipt.as_mut() {
                rc.ticket = None;
            }
            self.transfer_changed(&p.transfer_id);
        }
        ApplyResult::Nothing
    }

    /// Drops finished records past retention (or over the count bound),
    /// oldest first. Time is the newest command's, never a clock.
    fn prune_transfers(&mut self, now_ms: i64) {
        let me = self.group_id();
        let national = hotline_federation::topology::NATIONAL_GROUP;
        // A relay other than national may be skipped by the receipt (it did
        // not answer when the receipt passed): past retention, its record
        // of passing the envelope on is finished too. The origin and
        // national wait for theirs.
        let finished = |r: &TransferRecord| {
            let relay = r.envelope.as_ref().is_some_and(|e| e.origin_group != me) && me != national;
            !r.receipt_pending
                && r.state != TransferState::Pending as i32
                && (r.state != TransferState::Forwarded as i32 || r.receipt.is_some() || relay)
        };
        if self.transfers.len() < MAX_TRANSFER_RECORDS
            && self.transfers_floor.0 >= now_ms - TRANSFER_RETENTION_MS
        {
            return; // no record is old enough, and there is room
        }
        if self.transfers.len() < MAX_TRANSFER_RECORDS
            && !self
                .transfers
                .values()
                .take(64)
                .any(|r| finished(r) && r.updated_at_ms < now_ms - TRANSFER_RETENTION_MS)
        {
            return;
        }
        let old: Vec<String> = self
            .transfers
            .iter()
            .filter(|(_, r)| finished(r) && r.updated_at_ms < now_ms - TRANSFER_RETENTION_MS)
            .map(|(k, _)| k.clone())
            .take(4_096)
            .collect();
        for k in old {
            self.transfers.remove(&k);
            self.track_transfer_work(&k);
            self.writes.transfers_del.push(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forwarder_keeps_its_short_pause_while_it_has_work_and_backs_off_when_idle() {
        let mut p = ForwarderPace::new();
        assert_eq!(p.pause_ms(), ForwarderPace::WORK_INTERVAL_MS);
        // Idle looks, or looks on a replica that does not lead, back off
        // to the half-minute poll and stay there.
        let mut pauses = Vec::new();
        for _ in 0..10 {
            assert!(!p.look(true, false));
            pauses.push(p.pause_ms());
        }
        assert_eq!(&pauses[..4], &[400, 800, 1_600, 3_200]);
        assert_eq!(pauses[9], ForwarderPace::MAX_IDLE_POLL_MS);
        assert!(!p.look(false, true), "a follower runs no round");
        assert_eq!(p.pause_ms(), ForwarderPace::MAX_IDLE_POLL_MS);
        // Work found by a leader: a round, and the short pause again at
        // once, however long it was idle (retries do not back off).
        assert!(p.look(true, true));
        assert_eq!(p.pause_ms(), ForwarderPace::WORK_INTERVAL_MS);
        assert!(p.look(true, true));
        assert_eq!(p.pause_ms(), ForwarderPace::WORK_INTERVAL_MS);
    }

    fn rec(id: &str) -> TransferRecord {
        TransferRecord {
            envelope: Some(TransferEnvelope {
                transfer_id: id.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_straggler_holds_up_neither_the_next_round_nor_its_own_records_twice() {
        let mut f = InFlight::default();
        let (r1, started) = f.start_round(vec![rec("a"), rec("b")]);
        assert_eq!(started.len(), 2);
        assert!(!f.round_done(r1));
        assert_eq!(f.end("a"), Some(r1));
        assert!(!f.round_done(r1), "b still in flight");
        // The round gives up on b (its patience ran out); the next look
        // finds b and a newer record, and starts only the newer one.
        let (r2, started) = f.start_round(vec![rec("b"), rec("c")]);
        let ids: Vec<_> = started
            .iter()
            .map(|r| r.envelope.as_ref().unwrap().transfer_id.as_str())
            .collect();
        assert_eq!(ids, ["c"]);
        assert_eq!(f.end("c"), Some(r2));
        assert!(f.round_done(r2), "the new round is done without b");
        // b ends later, as a straggler of the first round; an end twice is
        // nothing.
        assert_eq!(f.end("b"), Some(r1));
        assert_eq!(f.end("b"), None);
        assert!(f.is_empty());
        // A record without an envelope is never started.
        let (_, started) = f.start_round(vec![TransferRecord::default()]);
        assert!(started.is_empty());
    }

    #[test]
    fn records_in_flight_are_bounded_and_a_deadline_ends_its_rounds_records() {
        let mut f = InFlight::default();
        let work: Vec<_> = (0..InFlight::MAX + 10)
            .map(|i| rec(&format!("t{i}")))
            .collect();
        let (r1, started) = f.start_round(work.clone());
        assert_eq!(started.len(), InFlight::MAX);
        let (r2, started) = f.start_round(work.clone());
        assert!(started.is_empty(), "no room while all are in flight");
        assert!(f.round_done(r2));
        assert_eq!(f.expire(r1), InFlight::MAX);
        assert!(f.is_empty());
        let (r3, started) = f.start_round(work);
        assert_eq!(started.len(), InFlight::MAX);
        assert_eq!(f.last_round(), r3);
        assert_eq!(f.len(), InFlight::MAX);
    }
    use crate::core::tickets::{Query, QueryAnswer};
    use hotline_proto::v1::ticket_command::Op as TicketOp;
    use hotline_proto::v1::{AcceptRequest, Command, Kind, Location, command};

    const AT: i64 = 1_795_831_200_000;

    struct G {
        m: TicketMachine,
        index: u64,
        /// Added to every command's time: days passing.
        later_ms: i64,
    }

    impl G {
        fn new(region: &str) -> G {
            G {
                m: TicketMachine::new(region),
                index: 0,
                later_ms: 0,
            }
        }
        fn apply(&mut self, op: command::Op) -> ApplyResult {
            self.index += 1;
            self.m.apply(
                self.index,
                &Command {
                    request_id: 0,
                    at_ms: AT + self.later_ms + self.index as i64,
                    accept_text: Vec::new(),
                    op: Some(op),
                },
            )
        }
        fn work(&self) -> Vec<TransferRecord> {
            self.m.transfer_work(100)
        }
    }

    fn accept_about(g: &mut G, location: &str, to_group: u64) -> Ticket {
        accept_at(g, "310114", location, to_group)
    }

    /// An accept at the center `region` about `location` ("" = the region).
    fn accept_at(g: &mut G, region: &str, location: &str, to_group: u64) -> Ticket {
        let r = g.apply(command::Op::Accept(AcceptRequest {
            region: region.into(),
            kind: Kind::Complaint as i32,
            category: "城乡建设".into(),
            text: "太仓浮桥镇工地噪声".into(),
            phone: "13800000000".into(),
            location: Some(Location {
                code: location.into(),
                ..Default::default()
            }),
            transfer_to_group: to_group,
            ..Default::default()
        }));
        match r {
            ApplyResult::Ticket(t) => (*t).clone(),
            other => panic!("{other:?}"),
        }
    }

    fn custody(g: &mut G, env: &TransferEnvelope) -> bool {
        match g.apply(command::Op::Custody(Custody {
            envelope: Some(env.clone()),
        })) {
            ApplyResult::Custody { duplicate } => duplicate,
            other => panic!("{other:?}"),
        }
    }

    /// Passes every pending item of `from` to `to` as the forwarder would.
    fn pass(from: &mut G, to: &mut G) {
        for r in from.work() {
            let env = r.envelope.clone().unwrap();
            if r.receipt_pending {
                to.apply(command::Op::ReceiptIn(ReceiptIn {
                    receipt: r.receipt.clone(),
                }));
                from.apply(command::Op::ReceiptPassed(ReceiptPassed {
                    transfer_id: env.transfer_id.clone(),
                }));
            } else {
                custody(to, &env);
                from.apply(command::Op::HopDone(HopDone {
                    transfer_id: env.transfer_id.clone(),
                    next_group: to.m.group_id(),
                }));
            }
        }
    }

    /// A receipt that skipped a relay (it did not answer when the receipt
    /// passed) leaves that relay's record "forwarded" for good; past
    /// retention a relay drops it, as it drops finished ones. National and
    /// the origin keep theirs: they wait for the receipt (the forwarder
    /// never sends one past national).
    #[test]
    fn a_relay_the_receipt_skipped_drops_its_record_after_retention() {
        let skip_receipt = |dest: &mut G, to: &mut G| {
            for r in dest.work() {
                assert!(r.receipt_pending);
                to.apply(command::Op::ReceiptIn(ReceiptIn {
                    receipt: r.receipt.clone(),
                }));
                dest.apply(command::Op::ReceiptPassed(ReceiptPassed {
                    transfer_id: r.envelope.unwrap().transfer_id,
                }));
            }
        };
        // 嘉定 → 上海 city → 黄浦, and 嘉定 → national → 太仓, both
        // receipts straight back to 嘉定.
        let mut origin = G::new("310114");
        let mut city = G::new("3101");
        let mut huangpu = G::new("310101");
        let mut national = G::new("");
        let mut taicang = G::new("320585");
        accept_about(&mut origin, "310101002", 310101);
        accept_about(&mut origin, "320585102", 320585);
        let works = origin.work();
        let (to_huangpu, to_taicang) = (&works[0], &works[1]);
        for (w, relay) in [(to_huangpu, &mut city), (to_taicang, &mut national)] {
            let env = w.envelope.clone().unwrap();
            custody(relay, &env);
            origin.apply(command::Op::HopDone(HopDone {
                transfer_id: env.transfer_id.clone(),
                next_group: relay.m.group_id(),
            }));
        }
        pass(&mut city, &mut huangpu);
        pass(&mut national, &mut taicang);
        skip_receipt(&mut huangpu, &mut origin);
        skip_receipt(&mut taicang, &mut origin);
        let forwarded = |g: &G| {
            g.m.transfers
                .values()
                .filter(|r| r.state == TransferState::Forwarded as i32 && r.receipt.is_none())
                .count()
        };
        assert_eq!((forwarded(&city), forwarded(&national)), (1, 1));

        // Past retention, the next custody at each prunes what is finished.
        for g in [&mut city, &mut national] {
            g.later_ms = TRANSFER_RETENTION_MS + 24 * 3600 * 1000;
        }
        let mut later = G::new("310114");
        later.later_ms = TRANSFER_RETENTION_MS + 24 * 3600 * 1000;
        accept_about(&mut later, "310101013", 310101);
        accept_about(&mut later, "320585103", 320585);
        let works = later.work();
        custody(&mut city, works[0].envelope.as_ref().unwrap());
        custody(&mut national, works[1].envelope.as_ref().unwrap());
        assert_eq!(forwarded(&city), 0, "the relay dropped what it passed on");
        assert_eq!(city.m.transfers.len(), 1, "and holds the new one");
        assert_eq!(
            forwarded(&national),
            1,
            "national still waits for its receipt"
        );
        assert_eq!(national.m.transfers.len(), 2);
    }

    #[test]
    fn jiading_to_taicang_through_national_exactly_once() {
        let mut origin = G::new("310114");
        let mut national = G::new("");
        let mut dest = G::new("320585");
        let t = accept_about(&mut origin, "320585102", 320585);
        assert_eq!(t.status, Status::Transferred as i32);
        assert_eq!(t.owner_group, 320585);
        let kinds: Vec<_> = t.events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["accept", "transfer_out"]);

        pass(&mut origin, &mut national);
        assert!(
            origin.work().is_empty(),
            "the next hop has it: stop sending"
        );
        // A retried delivery (the ack was lost) is not applied twice.
        let env = national.work()[0].envelope.clone().unwrap();
        let mut retry = env.clone();
        retry.hops.pop();
        assert!(custody(&mut national, &retry));
        let QueryAnswer::TransferList { records: list, .. } = national.m.query(&Query::Transfers {
            cross_province_only: true,
            limit: 10,
        }) else {
            panic!()
        };
        assert_eq!(list.len(), 1, "national keeps the cross-province case");

        pass(&mut national, &mut dest);
        assert!(custody(&mut dest, &env), "destination: duplicate refused");
        let owned = dest.m.ticket(&t.id).unwrap();
        assert_eq!(owned.status, Status::Accepted as i32);
        assert_eq!(owned.origin_group, 310114);
        assert_eq!(
            crate::core::tickets::verify_ticket(owned),
            Ok(owned.events.len() as u32),
            "the chain continues across regions"
        );
        assert_eq!(dest.m.len(), 1);

        // Receipts flow back: destination → national → origin.
        pass(&mut dest, &mut national);
        pass(&mut national, &mut origin);
        assert!(dest.work().is_empty() && national.work().is_empty() && origin.work().is_empty());
        let stub = origin.m.ticket(&t.id).unwrap();
        assert_eq!(stub.transfer_state, TransferState::Delivered as i32);
        assert_eq!(stub.status, Status::Transferred as i32);
        assert_eq!(
            national.m.transfer(&env.transfer_id).unwrap().state,
            TransferState::Delivered as i32
        );
        // The ticket is kept once per record: the origin keeps the owner's
        // copy that came back with the receipt; the destination (which
        // owns the ticket) and the relay keep the receipt without it.
        let receipt_ticket = |g: &G| {
            g.m.transfer(&env.transfer_id)
                .unwrap()
                .receipt
                .as_ref()
                .unwrap()
                .ticket
                .clone()
        };
        assert_eq!(receipt_ticket(&dest), None);
        assert_eq!(receipt_ticket(&national), None);
        let owners_copy = receipt_ticket(&origin).expect("the origin keeps the owner's copy");
        assert_eq!(&*owners_copy, dest.m.ticket(&t.id).unwrap());
    }

    /// The citizen's SMS names where the ticket went as people read it: a
    /// street of 徐汇 (no group of its own) goes to the city group 3101,
    /// whose table name is the bare 市辖区 every municipality shares.
    #[test]
    fn the_sms_names_a_municipalitys_city_group_with_its_province() {
        let mut origin = G::new("310114");
        let mut city = G::new("3101");
        let t = accept_about(&mut origin, "310104003", 3101);
        pass(&mut origin, &mut city);
        assert_eq!(
            city.m.ticket(&t.id).map(|t| t.status),
            Some(Status::Accepted as i32)
        );
        let QueryAnswer::Outbox(out) = city.m.query(&Query::Outbox { limit: 10 }) else {
            panic!()
        };
        let sms: Vec<&str> = out
            .iter()
            .filter(|n| n.ticket_id == t.id)
            .map(|n| n.text.as_str())
            .collect();
        assert!(
            sms.iter()
                .any(|text| text.contains("涉及上海市辖区，已转至当地热线办理")),
            "{sms:?}"
        );
    }

    /// A direct delivery's receipt can commit at the origin before the
    /// origin's own acknowledgement of the hop (`HopDone`): the record is
    /// delivered either way, and still names the group it went to.
    #[test]
    fn a_receipt_that_overtakes_the_hops_acknowledgement_keeps_the_next_hop() {
        let mut origin = G::new("310114");
        let mut dest = G::new("310101");
        let t = accept_about(&mut origin, "310101002", 310101);
        let env = origin.work()[0].envelope.clone().unwrap();
        assert!(!custody(&mut dest, &env));
        let receipt = dest.work()[0].receipt.clone();
        origin.apply(command::Op::ReceiptIn(ReceiptIn { receipt }));
        let rec = origin.m.transfer(&env.transfer_id).unwrap().clone();
        assert_eq!(rec.state, TransferState::Delivered as i32);
        assert_eq!(rec.next_group, 0, "not acknowledged yet");
        let hop_done = || {
            command::Op::HopDone(HopDone {
                transfer_id: env.transfer_id.clone(),
                next_group: 310101,
            })
        };
        origin.apply(hop_done());
        let rec = origin.m.transfer(&env.transfer_id).unwrap().clone();
        assert_eq!(
            rec.state,
            TransferState::Delivered as i32,
            "the receipt decided"
        );
        assert_eq!(rec.next_group, 310101);
        let stub = origin.m.ticket(&t.id).unwrap();
        assert_eq!(stub.transfer_state, TransferState::Delivered as i32);
        origin.apply(hop_done());
        assert_eq!(origin.m.transfer(&env.transfer_id).unwrap(), &rec, "once");
        assert!(origin.work().is_empty());
    }

    /// The callee's check of a `Forward` (`hop_allowed`) lets through every
    /// hop the forwarder takes (`forward_candidates`), envelope and receipt,
    /// and refuses hops off the directory; the core refuses a receipt that
    /// the transfer's destination did not issue.
    #[test]
    fn forwards_follow_the_directory() {
        use hotline_federation::directory::Directory;
        use hotline_federation::topology::{DEMO_TOML, NATIONAL_GROUP as NAT, Topology};
        let dir = Directory::new(&Topology::parse(DEMO_TOML).unwrap());
        let mut origin = G::new("310114");
        let mut national = G::new("");
        let mut dest = G::new("320585");
        let t = accept_about(&mut origin, "320585102", 320585);

        let allowed_from = |g: u64, rec: &TransferRecord| {
            let hops = forward_candidates(&dir, g, rec);
            assert!(!hops.is_empty());
            for to in hops {
                let r = hop_allowed(&dir, g, to, rec.envelope.as_ref(), None);
                assert_eq!(r, Ok(()), "{g} → {to}");
            }
        };
        let rec = origin.work()[0].clone();
        let env = rec.envelope.clone().unwrap();
        allowed_from(310114, &rec);
        // Straight to 太仓 skips the national relay of a cross-province case.
        let e = hop_allowed(&dir, 310114, 320585, Some(&env), None).unwrap_err();
        assert!(e.starts_with("to_group"), "{e}");
        // 嘉定's city may not send what 嘉定 holds.
        let e = hop_allowed(&dir, 3101, NAT, Some(&env), None).unwrap_err();
        assert!(e.starts_with("envelope.hops"), "{e}");

        pass(&mut origin, &mut national);
        allowed_from(NAT, &national.work()[0]);
        pass(&mut national, &mut dest);

        // The receipt goes back along the route, by the groups it came through.
        let rec = dest.work()[0].clone();
        assert!(rec.receipt_pending);
        let rc = rec.receipt.clone().unwrap();
        for to in forward_candidates(&dir, 320585, &rec) {
            assert_eq!(
                hop_allowed(&dir, 320585, to, None, Some(&rc)),
                Ok(()),
                "→ {to}"
            );
        }
        assert_eq!(hop_allowed(&dir, NAT, 310114, None, Some(&rc)), Ok(()));
        // Never past national, which lists the case: when it does not
        // answer, the receipt waits for it rather than go straight to 嘉定
        // and leave the national list showing the case in transit.
        assert_eq!(forward_candidates(&dir, 320585, &rec), [NAT]);
        let e = hop_allowed(&dir, 320585, 310114, None, Some(&rc)).unwrap_err();
        assert!(e.contains("passes the national group"), "{e}");
        // Not forward along it, nor from a group off it (黄浦).
        assert!(hop_allowed(&dir, 310114, NAT, None, Some(&rc)).is_err());
        assert!(hop_allowed(&dir, 310101, 310114, None, Some(&rc)).is_err());
        let mut bad_id = rc.clone();
        bad_id.transfer_id = format!("x{}", rc.transfer_id);
        let e = hop_allowed(&dir, 320585, NAT, None, Some(&bad_id)).unwrap_err();
        assert!(e.starts_with("receipt.transfer_id"), "{e}");

        // A refusal the destination did not issue does not reach the
        // origin's ticket: it stays transferred.
        let mut forged = rc.clone();
        forged.by_group = NAT;
        forged.refused = true;
        match origin.apply(command::Op::ReceiptIn(ReceiptIn {
            receipt: Some(forged),
        })) {
            ApplyResult::Rejected(e) => {
                assert!(e.to_string().contains("receipt.by_group"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        let stub = origin.m.ticket(&t.id).unwrap();
        assert_eq!(stub.status, Status::Transferred as i32);
        assert_eq!(stub.owner_group, 320585);
        assert_ne!(stub.transfer_state, TransferState::Refused as i32);
        // The destination's own receipt still completes it.
        pass(&mut dest, &mut national);
        pass(&mut national, &mut origin);
        let stub = origin.m.ticket(&t.id).unwrap();
        assert_eq!(stub.transfer_state, TransferState::Delivered as i32);
    }

    /// An envelope with the given hops, origin first, heading for `to`; the
    /// flag says what its hops say, as custody sets it.
    fn envelope_with_hops(hops: &[u64], to: u64) -> TransferEnvelope {
        TransferEnvelope {
            transfer_id: format!("{}-t-1", hops[0]),
            origin_group: hops[0],
            destination_group: to,
            via_national_done: hops.contains(&hotline_federation::topology::NATIONAL_GROUP),
            hops: hops.to_vec(),
            ..Default::default()
        }
    }

    /// Every step of an envelope's hops is checked against the directory's
    /// way, not only its ends: a path the forwarder can take passes, hop by
    /// hop or direct; a forged middle hop, a repeated group or a relay
    /// flag the hops do not bear out is refused, naming the field and the
    /// offending step.
    #[test]
    fn every_step_of_an_envelopes_hops_follows_the_directory() {
        use hotline_federation::directory::Directory;
        use hotline_federation::topology::{DEMO_TOML, NATIONAL_GROUP as NAT, Topology};
        let dir = Directory::new(&Topology::parse(DEMO_TOML).unwrap());
        let ok = |hops: &[u64], to: u64, dest: u64| {
            let env = envelope_with_hops(hops, dest);
            hop_allowed(&dir, *hops.last().unwrap(), to, Some(&env), None)
        };

        // 嘉定 → 太仓 hop by hop, every level on the way (national
        // unreachable from the district, each relay reaching only the next).
        assert_eq!(
            ok(&[310114, 3101, 31, NAT, 32, 3205], 320585, 320585),
            Ok(())
        );
        // Furthest reachable first: 嘉定 straight up to 上海, national
        // straight down to 苏州.
        assert_eq!(ok(&[310114, 31, NAT, 3205], 320585, 320585), Ok(()));
        // Direct: to the relay, then from it to the destination.
        assert_eq!(ok(&[310114], NAT, 320585), Ok(()));
        assert_eq!(ok(&[310114, NAT], 320585, 320585), Ok(()));
        // Within a province, directly to the destination.
        assert_eq!(ok(&[310114], 310101, 310101), Ok(()));
        // A send-back (退回) from 太仓 to 嘉定 is an envelope of its own,
        // with 太仓 as its origin: the same way, the other direction.
        assert_eq!(ok(&[320585, 32, NAT, 31], 310114, 310114), Ok(()));

        // A forged middle hop: 嘉定 → 苏州 skips national (the old check
        // saw only the ends: origin first, sender last, 苏州 → 太仓 fine).
        let e = ok(&[310114, 3205], 320585, 320585).unwrap_err();
        assert!(
            e.starts_with(
                "envelope.hops: 310114 → 3205 is not a step on the directory's way from 310114 to 320585"
            ),
            "{e}"
        );
        // Forged deeper in the path: national → 上海 is not toward 太仓.
        let e = ok(&[310114, NAT, 31, 32], 3205, 320585).unwrap_err();
        assert!(e.starts_with("envelope.hops: 86 → 31 is not a step"), "{e}");
        // A group twice (嘉定 → 上海市辖区 → 嘉定): a loop, even though
        // each end checks out and 嘉定 → 黄浦 is a direct delivery.
        let e = ok(&[310114, 3101, 310114], 310101, 310101).unwrap_err();
        assert!(
            e.starts_with("envelope.hops: group 310114 appears twice"),
            "{e}"
        );
        // The callee already among the hops.
        let e = ok(&[310114, 3101], 310114, 310114).unwrap_err();
        assert!(e.contains("appears twice"), "{e}");
        // A relay flag the hops do not bear out would let 上海 send
        // straight to 江苏, past national's list.
        let mut env = envelope_with_hops(&[310114, 31], 320585);
        env.via_national_done = true;
        let e = hop_allowed(&dir, 31, 32, Some(&env), None).unwrap_err();
        assert!(e.starts_with("envelope.via_national_done"), "{e}");
    }

    /// Every path the forwarder can produce passes the callee's check at
    /// every hop: from each group to each other (a transfer, or a
    /// send-back the other way), taking at each hop any group
    /// `forward_candidates` offers (the target when reachable, else any
    /// group on the way: the fallback from a failed direct delivery), in the
    /// demo federation and in a generated province whose pseudo-city
    /// counties hang off the province group.
    #[test]
    fn every_path_the_forwarder_can_take_passes_the_hop_check() {
        use hotline_federation::directory::Directory;
        use hotline_federation::topology::{DEMO_TOML, Scope, Topology};
        fn walk(dir: &Directory, env: &TransferEnvelope, steps: &mut usize) {
            let at = *env.hops.last().unwrap();
            let rec = TransferRecord {
                envelope: Some(env.clone()),
                ..Default::default()
            };
            for to in forward_candidates(dir, at, &rec) {
                assert_eq!(
                    hop_allowed(dir, at, to, Some(env), None),
                    Ok(()),
                    "{:?} → {to}",
                    env.hops
                );
                *steps += 1;
                if to != env.destination_group {
                    let mut next = env.clone();
                    next.hops.push(to);
                    next.via_national_done |= to == hotline_federation::topology::NATIONAL_GROUP;
                    walk(dir, &next, steps);
                }
            }
        }
        let demo = Directory::new(&Topology::parse(DEMO_TOML).unwrap());
        let mut steps = 0;
        let groups: Vec<u64> = demo.groups().filter(|&g| g != 86).collect();
        for &a in &groups {
            for &b in groups.iter().filter(|&&b| b != a) {
                walk(&demo, &envelope_with_hops(&[a], b), &mut steps);
            }
        }
        assert!(steps > 300, "{steps} steps");
        let henan = Directory::new(&Topology::generate(Scope::Province("41"), None).unwrap());
        for (a, b) in [(419_001, 410_102), (410_102, 419_001), (411_002, 419_001)] {
            assert!(henan.contains(a) && henan.contains(b));
            walk(&henan, &envelope_with_hops(&[a], b), &mut steps);
        }
    }

    #[test]
    fn a_refused_transfer_comes_back_for_review() {
        let mut origin = G::new("310114");
        let mut wrong = G::new("320585");
        // The proposer's directory was wrong: the location is in 苏州 3205 elsewhere.
        let t = accept_about(&mut origin, "320506", 320585);
        pass(&mut origin, &mut wrong);
        assert!(wrong.m.is_empty(), "refused: no ticket created");
        pass(&mut wrong, &mut origin);
        let back = origin.m.ticket(&t.id).unwrap();
        assert_eq!(back.status, Status::Accepted as i32, "back at the origin");
        assert_eq!(back.transfer_state, TransferState::Refused as i32);
        let last = back.events.last().unwrap();
        assert_eq!(last.kind, "transfer_refused");
        assert!(last.reason.contains("不属于"), "{}", last.reason);
    }

    /// A ticket arriving under the id of another ticket this group holds
    /// as a stub (same id, another accept time) is refused, not written
    /// over the stub; and a street group's ids carry its street code, so
    /// its tickets do not take its district's ids in the first place.
    #[test]
    fn an_incoming_ticket_under_another_tickets_id_is_refused() {
        let mut origin = G::new("310114");
        let mut dest = G::new("320585");
        // The destination's own ticket, transferred away: a stub stays.
        let own = accept_at(&mut dest, "320585", "310114001", 310114);
        assert_eq!(own.status, Status::Transferred as i32);
        // Another ticket comes under that id.
        accept_about(&mut origin, "320585102", 320585);
        let mut env = origin.work()[0].envelope.clone().unwrap();
        let t = env.ticket.as_mut().unwrap();
        t.id = own.id.clone();
        t.accepted_at_ms = own.accepted_at_ms + 60_000;
        custody(&mut dest, &env);
        let kept = dest.m.ticket(&own.id).unwrap();
        assert_eq!(kept, &own, "the stub is left as it was");
        let record = dest.m.transfer(&env.transfer_id).unwrap();
        assert_eq!(record.state, TransferState::Refused as i32);
        assert!(record.refusal.contains("重复"), "{}", record.refusal);

        let mut street = G::new("310114001");
        let t = accept_at(&mut street, "310114001", "", 0);
        assert!(t.id.starts_with("310114001-"), "{}", t.id);
        let district = accept_about(&mut origin, "310114001", 0);
        assert!(district.id.starts_with("310114-"), "{}", district.id);
    }

    #[test]
    fn transfer_out_checks_its_fields() {
        let mut origin = G::new("310114");
        let t = accept_about(&mut origin, "310114001", 0);
        let r = origin.apply(command::Op::TransferOut(TransferOut {
            ticket_id: t.id.clone(),
            destination_group: 320585,
            destination_region: "310114001".into(),
            actor: Some(hotline_proto::v1::Actor {
                id: "x".into(),
                role: hotline_proto::v1::Role::CallTaker as i32,
            }),
            reason: String::new(),
            send_back: false,
        }));
        let ApplyResult::Rejected(CommandError::Invalid(f)) = r else {
            panic!("{r:?}")
        };
        assert_eq!(f.field, "destination_region");
    }

    /// 转办 by a call taker, as `Tickets.Transfer` proposes it.
    fn transfer(g: &mut G, id: &str, to: u64, place: &str) -> ApplyResult {
        g.apply(command::Op::TransferOut(TransferOut {
            ticket_id: id.into(),
            destination_group: to,
            destination_region: place.into(),
            actor: Some(hotline_proto::v1::Actor {
                id: "话务员".into(),
                role: hotline_proto::v1::Role::CallTaker as i32,
            }),
            reason: "退单审核：属地不符".into(),
            send_back: false,
        }))
    }

    fn send_back(g: &mut G, id: &str, reason: &str) -> ApplyResult {
        g.apply(command::Op::TransferOut(TransferOut {
            ticket_id: id.into(),
            actor: Some(hotline_proto::v1::Actor {
                id: "太仓话务员".into(),
                role: hotline_proto::v1::Role::CallTaker as i32,
            }),
            reason: reason.into(),
            send_back: true,
            ..Default::default()
        }))
    }

    fn invalid_field(r: ApplyResult) -> &'static str {
        match r {
            ApplyResult::Rejected(CommandError::Invalid(f)) => f.field,
            other => panic!("{other:?}"),
        }
    }

    /// 退回首接: 太仓 finds the street the caller named is not its own and
    /// sends the ticket back; it comes back to 嘉定 through the national
    /// group, once, for 嘉定's review, and 嘉定 can then transfer it on.
    #[test]
    fn a_destination_sends_a_ticket_back_to_the_first_contact_center() {
        let mut origin = G::new("310114");
        let mut national = G::new("");
        let mut dest = G::new("320585");
        let t = accept_about(&mut origin, "320585102", 320585);
        pass(&mut origin, &mut national);
        pass(&mut national, &mut dest);
        pass(&mut dest, &mut national);
        pass(&mut national, &mut origin);
        let sms_before = origin.m.outbox_len();

        let why = "地址实为昆山市花桥镇，不属太仓";
        let stub = match send_back(&mut dest, &t.id, why) {
            ApplyResult::Ticket(s) => s,
            other => panic!("{other:?}"),
        };
        assert_eq!(stub.status, Status::Transferred as i32);
        assert_eq!(stub.owner_group, 310114, "back to where it came from");
        let last = stub.events.last().unwrap();
        assert_eq!(
            lifecycle::public_summary(last).as_deref(),
            Some("经核实不属本地区，已退回首接中心")
        );
        let env = dest.work()[0].envelope.clone().unwrap();
        assert!(env.send_back);
        assert_eq!(env.destination_region, "310114");
        assert_eq!(env.reason, why);
        assert!(dest.work()[0].cross_province, "江苏 → 上海");

        pass(&mut dest, &mut national);
        let QueryAnswer::TransferList { records: list, .. } = national.m.query(&Query::Transfers {
            cross_province_only: true,
            limit: 10,
        }) else {
            panic!()
        };
        assert_eq!(list.len(), 2, "national lists the way there and back");
        pass(&mut national, &mut origin);
        assert!(
            custody(&mut origin, &env),
            "a retried return is not applied twice"
        );

        let back = origin.m.ticket(&t.id).unwrap().clone();
        assert_eq!(
            back.status,
            Status::Accepted as i32,
            "the origin's to review"
        );
        assert_eq!(back.owner_group, 0);
        assert_eq!(back.origin_group, 320585);
        assert_eq!(back.transfer_state, TransferState::Refused as i32);
        let last = back.events.last().unwrap();
        assert_eq!(last.kind, "transfer_refused");
        assert_eq!(last.reason, why);
        assert_eq!(
            crate::core::tickets::verify_ticket(&back),
            Ok(back.events.len() as u32),
            "the chain runs there and back"
        );
        assert_eq!(origin.m.len(), 1);
        assert_eq!(origin.m.outbox_len(), sms_before, "no SMS for a return");

        // The receipt goes back to 太仓, whose stub now follows 嘉定.
        pass(&mut origin, &mut national);
        pass(&mut national, &mut dest);
        let stub = dest.m.ticket(&t.id).unwrap();
        assert_eq!(stub.transfer_state, TransferState::Delivered as i32);
        assert!(origin.work().is_empty() && national.work().is_empty() && dest.work().is_empty());

        // Reviewed at 嘉定: not sent back again, but transferred on.
        assert!(
            matches!(
                send_back(&mut origin, &t.id, "再退"),
                ApplyResult::Rejected(CommandError::State {
                    command: "send_back",
                    ..
                })
            ),
            "a ticket that came back refused is this center's to review"
        );
        let r = origin.apply(command::Op::TransferOut(TransferOut {
            ticket_id: t.id.clone(),
            destination_group: 3205,
            destination_region: "320583".into(),
            actor: stub.call_taker.clone(),
            reason: "核实地址后转昆山".into(),
            send_back: false,
        }));
        let ApplyResult::Ticket(again) = r else {
            panic!("{r:?}")
        };
        assert_eq!(again.owner_group, 3205);
        assert_eq!(again.transfer_id, format!("310114-{}-3", t.id));
    }

    /// The receipt of the first transfer may reach the origin after the
    /// ticket came back (太仓 sent it back at once): the returned ticket is
    /// left as it is, and the first transfer's record is closed.
    #[test]
    fn a_late_receipt_of_the_first_transfer_leaves_the_returned_ticket_alone() {
        let mut origin = G::new("310114");
        let mut dest = G::new("320585");
        let t = accept_about(&mut origin, "320585102", 320585);
        pass(&mut origin, &mut dest);
        let first = dest.work()[0].clone();
        assert!(first.receipt_pending, "太仓's receipt not yet sent");
        send_back(&mut dest, &t.id, "不属太仓");
        let back = dest
            .work()
            .into_iter()
            .find(|r| !r.receipt_pending)
            .unwrap();
        custody(&mut origin, back.envelope.as_ref().unwrap());
        let returned = origin.m.ticket(&t.id).unwrap().clone();
        assert_eq!(returned.status, Status::Accepted as i32);
        origin.apply(command::Op::ReceiptIn(ReceiptIn {
            receipt: first.receipt.clone(),
        }));
        assert_eq!(origin.m.ticket(&t.id).unwrap(), &returned, "left alone");
        let first_id = &first.envelope.as_ref().unwrap().transfer_id;
        assert_eq!(
            origin.m.transfer(first_id).unwrap().state,
            TransferState::Delivered as i32
        );
    }

    /// Only a ticket sent back here is barred from going back again: one
    /// that this center passed on and that was refused on arrival may still
    /// go back to where it came from. A ticket from the national group
    /// cannot go back there.
    #[test]
    fn only_a_returned_ticket_is_not_sent_back_again() {
        let mut origin = G::new("310114");
        let mut taicang = G::new("320585");
        let mut wrong = G::new("320583");
        // 嘉定 passes a ticket to 太仓, which passes it on to 昆山 with a
        // location 昆山 does not serve: refused on arrival, back at 太仓.
        let t = accept_about(&mut origin, "320585102", 320585);
        pass(&mut origin, &mut taicang);
        let r = taicang.apply(command::Op::TransferOut(TransferOut {
            ticket_id: t.id.clone(),
            destination_group: 320583,
            destination_region: "320506001".into(),
            actor: t.call_taker.clone(),
            reason: "转昆山".into(),
            send_back: false,
        }));
        assert!(matches!(r, ApplyResult::Ticket(_)), "{r:?}");
        pass(&mut taicang, &mut wrong);
        pass(&mut wrong, &mut taicang);
        let held = taicang.m.ticket(&t.id).unwrap();
        assert_eq!(held.status, Status::Accepted as i32);
        assert_eq!(held.transfer_state, TransferState::Refused as i32);
        assert_eq!(held.origin_group, 310114);
        let r = send_back(&mut taicang, &t.id, "不属太仓，退回嘉定");
        let ApplyResult::Ticket(stub) = r else {
            panic!("{r:?}")
        };
        assert_eq!(stub.owner_group, 310114);

        let mut national = G::new("");
        let from_national = accept_at(&mut national, "320585", "320585102", 320585);
        let mut dest = G::new("320585");
        pass(&mut national, &mut dest);
        assert!(matches!(
            send_back(&mut dest, &from_national.id, "不属太仓"),
            ApplyResult::Rejected(CommandError::State {
                command: "send_back",
                ..
            })
        ));
    }

    /// A city group's center (3101 serves 徐汇, which has no group of its
    /// own) takes a call about 嘉定, which has: the ticket goes down to
    /// 嘉定's group. (It stayed at the city: the place lies under the city's
    /// region, which the check took for the city's own.) The place must
    /// still be under the deeper group's region, and a district cannot send
    /// one of its own streets up to its city.
    #[test]
    fn a_city_center_transfers_down_to_a_district_with_its_own_group() {
        let mut city = G::new("3101");
        let mut jiading = G::new("310114");
        let t = accept_at(&mut city, "310104", "310114001", 310114);
        assert_eq!(t.status, Status::Transferred as i32, "{:?}", t.events);
        assert_eq!(t.owner_group, 310114);
        assert!(!city.work()[0].cross_province);
        pass(&mut city, &mut jiading);
        let owned = jiading.m.ticket(&t.id).unwrap();
        assert_eq!(owned.status, Status::Accepted as i32);
        assert_eq!(owned.origin_group, 3101);

        let local = accept_at(&mut city, "310104", "310104003", 0);
        let up = |g: &mut G, id: &str, to: u64, place: &str| {
            g.apply(command::Op::TransferOut(TransferOut {
                ticket_id: id.into(),
                destination_group: to,
                destination_region: place.into(),
                actor: local.call_taker.clone(),
                reason: "转办".into(),
                send_back: false,
            }))
        };
        assert_eq!(
            invalid_field(up(&mut city, &local.id, 310114, "310104003")),
            "destination_region",
            "徐汇 is the city's own, not 嘉定's"
        );
        let own = accept_at(&mut jiading, "310114", "310114001", 0);
        assert_eq!(
            invalid_field(up(&mut jiading, &own.id, 3101, "310114001")),
            "destination_region",
            "嘉定's own street does not go up to the city"
        );
    }

    #[test]
    fn an_accept_whose_transfer_is_refused_keeps_the_ticket_and_says_why() {
        // A directory that disagrees with the state machine (嘉定's own
        // street routed up to the city): the call is still accepted here.
        let mut jiading = G::new("310114");
        let t = accept_at(&mut jiading, "310114", "310114001", 3101);
        assert_eq!(t.status, Status::Accepted as i32);
        assert_eq!(t.owner_group, 0);
        assert_eq!(t.transfer_state, TransferState::Unspecified as i32);
        let kinds: Vec<_> = t.events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["accept", "transfer_not_started"]);
        let ev = &t.events[1];
        assert!(ev.reason.contains("destination_region"), "{}", ev.reason);
        assert!(
            ev.payload.contains("\"destination_group\":3101"),
            "{}",
            ev.payload
        );
        assert_eq!(
            lifecycle::public_summary(ev),
            None,
            "not shown to the caller"
        );
        assert_eq!(jiading.m.ticket(&t.id).unwrap().events.len(), 2, "stored");
        assert!(jiading.work().is_empty(), "no envelope");
        // The chain holds, and the center can still handle it.
        assert!(audit::verify(&t.events).is_ok());
    }

    /// A ticket command at `g`, as the center or a unit gives it.
    fn run(
        g: &mut G,
        id: &str,
        role: hotline_proto::v1::Role,
        who: &str,
        op: TicketOp,
    ) -> ApplyResult {
        g.apply(command::Op::Ticket(hotline_proto::v1::TicketCommand {
            ticket_id: id.into(),
            actor: Some(hotline_proto::v1::Actor {
                id: who.into(),
                role: role as i32,
            }),
            reason: "属地不符：实为太仓市浮桥镇".into(),
            op: Some(op),
        }))
    }

    /// Dispatched to `unit`, which returns it (退单): the ticket waits for
    /// the center's review.
    fn returned_by_unit(g: &mut G, id: &str, unit: &str) -> Ticket {
        use hotline_proto::v1::Role;
        let dispatch = TicketOp::Dispatch(hotline_proto::v1::Dispatch {
            lead_unit: unit.into(),
            ..Default::default()
        });
        assert!(matches!(
            run(g, id, Role::CallTaker, "话务员", dispatch),
            ApplyResult::Ticket(_)
        ));
        let ret = TicketOp::Return(hotline_proto::v1::Return { unit: unit.into() });
        match run(g, id, Role::Unit, unit, ret) {
            ApplyResult::Ticket(t) => {
                assert_eq!(t.status, Status::ReturnReview as i32);
                (*t).clone()
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_ticket_a_unit_returned_as_another_regions_is_transferred_from_review() {
        use hotline_proto::v1::Role;
        let mut origin = G::new("310114");
        let mut national = G::new("");
        let mut dest = G::new("320585");
        // The caller named a 嘉定 street; the unit finds the place in 太仓.
        let t = accept_about(&mut origin, "310114001", 0);
        let returned = returned_by_unit(&mut origin, &t.id, "嘉定区城管局");
        assert_eq!(returned.returns, 1);
        assert!(returned.pending_return.is_some());
        let stub = match transfer(&mut origin, &t.id, 320585, "320585102") {
            ApplyResult::Ticket(s) => (*s).clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(stub.status, Status::Transferred as i32);
        assert_eq!(stub.owner_group, 320585);
        assert_eq!(
            stub.lead_unit, "嘉定区城管局",
            "the stub keeps 嘉定's handling"
        );
        assert!(stub.pending_return.is_some());
        let sent = origin.work()[0].envelope.clone().unwrap().ticket.unwrap();
        assert_eq!(sent.lead_unit, "", "嘉定's unit does not go with it");
        assert!(sent.pending_return.is_none());
        assert_eq!(
            sent.location.unwrap().code,
            "320585102",
            "the place as corrected"
        );
        assert_eq!(
            stub.location.as_ref().unwrap().code,
            "310114001",
            "the stub as it was"
        );
        pass(&mut origin, &mut national);
        pass(&mut national, &mut dest);
        let owned = dest.m.ticket(&t.id).unwrap();
        assert_eq!(owned.status, Status::Accepted as i32);
        assert_eq!(owned.origin_group, 310114);
        // 太仓 handles it from the start, by its own units and deadlines;
        // its KPIs do not count 嘉定's unit's return.
        assert_eq!(
            (
                owned.lead_unit.as_str(),
                owned.first_dispatched_at_ms,
                owned.handle_due_ms,
                owned.returns
            ),
            ("", 0, 0, 0)
        );
        assert!(owned.pending_return.is_none());
        // The history travels: accept, dispatch, return, transfer out, in.
        let kinds: Vec<_> = owned.events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "accept",
                "dispatch",
                "return",
                "transfer_out",
                "transfer_in"
            ]
        );
        assert!(audit::verify(&owned.events).is_ok());
        let k = crate::core::kpi::report("320585", [owned], 0, i64::MAX, &Default::default());
        assert_eq!(k.region.unwrap().returns.unwrap().denominator, 0);

        // While a unit handles a ticket it is not transferred: the unit
        // returns it first.
        let busy = accept_about(&mut origin, "310114001", 0);
        let dispatch = TicketOp::Dispatch(hotline_proto::v1::Dispatch {
            lead_unit: "嘉定区城管局".into(),
            ..Default::default()
        });
        run(&mut origin, &busy.id, Role::CallTaker, "话务员", dispatch);
        let r = transfer(&mut origin, &busy.id, 320585, "320585102");
        assert!(
            matches!(
                r,
                ApplyResult::Rejected(CommandError::State {
                    command: "transfer_out",
                    ..
                })
            ),
            "{r:?}"
        );
    }

    #[test]
    fn a_transfer_from_review_refused_on_arrival_comes_back_to_the_review() {
        use hotline_proto::v1::Role;
        let mut origin = G::new("310114");
        let mut wrong = G::new("320585");
        let t = accept_about(&mut origin, "310114001", 0);
        returned_by_unit(&mut origin, &t.id, "嘉定区城管局");
        // A directory gone wrong: 姑苏 (320508) sent to 太仓's group.
        let r = transfer(&mut origin, &t.id, 320585, "320508");
        assert!(matches!(r, ApplyResult::Ticket(_)), "{r:?}");
        pass(&mut origin, &mut wrong);
        assert!(wrong.m.is_empty(), "refused: no ticket created");
        pass(&mut wrong, &mut origin);
        let back = origin.m.ticket(&t.id).unwrap().clone();
        assert_eq!(
            back.status,
            Status::ReturnReview as i32,
            "back to the review it left"
        );
        assert_eq!(back.transfer_state, TransferState::Refused as i32);
        assert_eq!((back.lead_unit.as_str(), back.returns), ("嘉定区城管局", 1));
        assert!(back.pending_return.is_some());
        // The review goes on: redispatched to another unit.
        let review = TicketOp::ReviewReturn(hotline_proto::v1::ReviewReturn {
            reject: false,
            lead_unit: "嘉定区市容所".into(),
            assisting_units: vec![],
        });
        match run(&mut origin, &t.id, Role::CallTaker, "话务员", review) {
            ApplyResult::Ticket(t) => assert_eq!(t.lead_unit, "嘉定区市容所"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_destination_sends_back_a_ticket_its_unit_returned() {
        let mut origin = G::new("310114");
        let mut national = G::new("");
        let mut dest = G::new("320585");
        let t = accept_about(&mut origin, "320585102", 320585);
        pass(&mut origin, &mut national);
        pass(&mut national, &mut dest);
        // 太仓 dispatched it; its unit finds the place in 嘉定 after all.
        returned_by_unit(&mut dest, &t.id, "太仓市城管局");
        assert!(matches!(
            send_back(&mut dest, &t.id, "属地不符：实为嘉定区"),
            ApplyResult::Ticket(_)
        ));
        pass(&mut dest, &mut national);
        pass(&mut national, &mut origin);
        let back = origin.m.ticket(&t.id).unwrap();
        assert_eq!(
            back.status,
            Status::Accepted as i32,
            "back for the center's review"
        );
        assert_eq!(back.owner_group, 0);
        assert_eq!((back.lead_unit.as_str(), back.returns), ("", 0));
        assert!(back.pending_return.is_none());
        assert!(audit::verify(&back.events).is_ok());
    }

    #[test]
    fn a_send_back_checks_its_fields() {
        let mut origin = G::new("310114");
        let mut dest = G::new("320585");
        let here = accept_about(&mut origin, "310114001", 0);
        assert!(
            matches!(
                send_back(&mut origin, &here.id, "不属本区"),
                ApplyResult::Rejected(CommandError::State {
                    command: "send_back",
                    ..
                })
            ),
            "accepted here: nowhere to send it back to"
        );
        let t = accept_about(&mut origin, "320585102", 320585);
        pass(&mut origin, &mut dest);
        assert_eq!(invalid_field(send_back(&mut dest, &t.id, " ")), "reason");
        let r = dest.apply(command::Op::TransferOut(TransferOut {
            ticket_id: t.id.clone(),
            destination_group: 320585,
            actor: t.call_taker.clone(),
            reason: "不属本区".into(),
            send_back: true,
            ..Default::default()
        }));
        assert_eq!(invalid_field(r), "destination_group");
        assert!(
            dest.work().iter().all(|r| r.receipt_pending),
            "nothing sent"
        );
        assert_eq!(
            dest.m.ticket(&t.id).unwrap().status,
            Status::Accepted as i32
        );
    }
}
