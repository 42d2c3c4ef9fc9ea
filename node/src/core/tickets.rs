//! The ticket state machine (工单状态机): what a committed command does.
//!
//! Pure and deterministic: the same commands in the same order give the same
//! state on every replica. Time comes inside the command (`Command::at_ms`,
//! chosen by the proposer), and so does every rule that depends on
//! configuration (calendar, deadlines, categories: the replicated `Policy`);
//! nothing here reads a clock or a file, and iteration is over ordered maps
//! only, so snapshots are byte-identical across replicas.
//!
//! Every mutation is also recorded in `SmWrites`, which the replica hands to
//! its driver to persist in the same transaction as the applied index.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use hotline_proto::v1::{
    AcceptRequest, Actor, Channel, Command, DaySequence, DirectoryImage, Event, Kind,
    ListTicketsRequest, LookupResponse, Notification, Policy, Priority, PublicProgress,
    ReportResponse, RequestSeen, Requester, Role, StateSnapshot, Status, Ticket, TransferRecord,
    command,
};
use prost::Message;

use super::audit::{self, payload};
use super::kpi::{self, KpiWeights};
use super::lifecycle::{self, CommandError, Rules};
use super::placements::Placements;

/// Limits on a ticket's fields (bytes, after UTF-8 encoding).
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
pub const MAX_CATEGORY_CHARS: usize = 64;
pub const MAX_ADDRESS_CHARS: usize = 256;
pub const MAX_NAME_CHARS: usize = 32;
/// How long a request id is remembered for deduplicating client retries:
/// longer than any client's retry horizon.
pub const REQUEST_DEDUP_WINDOW_MS: i64 = 10 * 60 * 1000;
/// Bound on remembered request ids, whatever their age.
pub const MAX_REMEMBERED_REQUESTS: usize = 200_000;
/// Bound on undelivered notifications. Past it the oldest are dropped: a dead
/// SMS gateway must not grow the replicated state without limit or stop
/// the hotline from accepting calls.
pub const MAX_OUTBOX: usize = 100_000;
/// Tickets a list query examines per page, so one query cannot scan a
/// group's whole history; the answer says where to continue.
pub const MAX_SCAN_PER_QUERY: usize = 200_000;
/// China Standard Time, for the date in ticket ids (UTC+8, no DST).
const CST_OFFSET_MS: i64 = 8 * 3600 * 1000;

/// A field of a request that is wrong, and why. Becomes gRPC `InvalidArgument`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

/// The order of worklists (lists by deadline): the nearest deadline first,
/// no deadline last, then the order of acceptance.
pub fn worklist_order(t: &Ticket) -> (bool, i64, u64) {
    (t.deadline_ms == 0, t.deadline_ms, t.raft_index)
}

/// Does a list's deadline filter take a ticket in deadline state `have`?
/// At risk includes overdue (both need attention).
fn deadline_matches(wanted: hotline_proto::v1::DeadlineState, have: i32) -> bool {
    use hotline_proto::v1::DeadlineState as D;
    let have = D::try_from(have).unwrap_or(D::Unspecified);
    match wanted {
        D::Unspecified => true,
        D::AtRisk => matches!(have, D::AtRisk | D::Overdue),
        w => w == have,
    }
}

/// The filters of a list other than the deadline state (which needs the
/// time of asking).
fn list_filter(f: &ListTicketsRequest, t: &Ticket) -> bool {
    (f.region.is_empty()
        || t.region.starts_with(&f.region)
        || t.location
            .as_ref()
            .is_some_and(|l| l.code.starts_with(&f.region)))
        && (f.unit.is_empty() || t.lead_unit == f.unit || t.assisting_units.contains(&f.unit))
        && (f.statuses.is_empty() || f.statuses.contains(&t.status))
        && (f.kind == 0 || t.kind == f.kind)
        && (f.category.is_empty() || t.category.starts_with(&f.category))
        && (f.priority == 0 || t.priority == f.priority)
        && t.accepted_at_ms >= f.accepted_from_ms
        && (f.accepted_to_ms == 0 || t.accepted_at_ms < f.accepted_to_ms)
}

pub(crate) fn bad(field: &'static str, reason: impl Into<String>) -> FieldError {
    FieldError {
        field,
        reason: reason.into(),
    }
}

/// Result of applying one command.
#[derive(Clone, Debug, PartialEq)]
pub enum ApplyResult {
    /// The ticket as the command left it (accept and lifecycle commands):
    /// the state machine's own copy, shared.
    Ticket(Arc<Ticket>),
    Rejected(CommandError),
    Policy(Policy),
    /// The directory's version after a placement (national group); the
    /// groups are not copied into the answer.
    Directory(DirectoryImage),
    /// A transfer envelope or receipt taken into custody (`duplicate`: it
    /// was here already, acknowledged again and not applied twice).
    Custody {
        duplicate: bool,
    },
    /// An entry that carries no answer (leader no-op, conf change, delivery marks).
    Nothing,
}

/// Mutations made by applied commands since the last `take_writes`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SmWrites {
    /// The state machine's copies, shared (a driver that keeps them, like
    /// the simulator's disk, holds no second copy).
    pub tickets: Vec<Arc<Ticket>>,
    pub sequences: Vec<DaySequence>,
    pub requests_put: Vec<RequestSeen>,
    /// (at_ms, request_id) of forgotten requests: the disk keys requests by
    /// time (see `storage::REQUESTS`), so a delete needs the time too.
    pub requests_del: Vec<(i64, u64)>,
    pub outbox_put: Vec<Notification>,
    /// (created_at_ms, id) of notifications that left the outbox: the disk
    /// keys the outbox by time too (see `storage::OUTBOX`).
    pub outbox_del: Vec<(i64, String)>,
    /// Boxed (rare, and a batch moves several times per round).
    pub policy: Option<Box<Policy>>,
    pub transfers_put: Vec<Arc<TransferRecord>>,
    pub transfers_del: Vec<String>,
    /// The whole directory after a change (national group only; rare).
    pub directory: Option<Box<DirectoryImage>>,
}

impl SmWrites {
    /// Adds `later`'s writes after these (a later policy replaces an
    /// earlier one). Every field must be carried: a field left out here is
    /// a state change that never reaches the disk.
    pub fn append(&mut self, later: SmWrites) {
        let SmWrites {
            tickets,
            sequences,
            requests_put,
            requests_del,
            outbox_put,
            outbox_del,
            policy,
            transfers_put,
            transfers_del,
            directory,
        } = later;
        join(&mut self.tickets, tickets);
        join(&mut self.sequences, sequences);
        join(&mut self.requests_put, requests_put);
        join(&mut self.requests_del, requests_del);
        join(&mut self.outbox_put, outbox_put);
        join(&mut self.outbox_del, outbox_del);
        if policy.is_some() {
            self.policy = policy;
        }
        join(&mut self.transfers_put, transfers_put);
        join(&mut self.transfers_del, transfers_del);
        if directory.is_some() {
            self.directory = directory;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tickets.is_empty()
            && self.sequences.is_empty()
            && self.requests_put.is_empty()
            && self.requests_del.is_empty()
            && self.outbox_put.is_empty()
            && self.outbox_del.is_empty()
            && self.policy.is_none()
            && self.transfers_put.is_empty()
            && self.transfers_del.is_empty()
            && self.directory.is_none()
    }
}

/// `later` after `earlier`. Most raft rounds append one round's writes to
/// an empty batch: then the vector itself moves, instead of an allocation,
/// a copy and a free per field and round (with 64 busy groups at one or two
/// entries per round: 7 M of `core_rounds 64 2 20000`'s 1,318 M
/// instructions).
fn join<T>(earlier: &mut Vec<T>, later: Vec<T>) {
    if earlier.is_empty() {
        *earlier = later;
    } else {
        earlier.extend(later);
    }
}

/// The rules a machine applies: the process-wide built-in ones until a
/// `SetPolicy` replaces them (groups without a policy of their own, nearly
/// all, share one parsed copy).
#[derive(Debug)]
struct SharedRules(Arc<Rules>);

impl Default for SharedRules {
    fn default() -> Self {
        SharedRules(Rules::builtin())
    }
}

impl std::ops::Deref for SharedRules {
    type Target = Rules;
    fn deref(&self) -> &Rules {
        &self.0
    }
}

/// A ticket id as a map key, held inline when it fits (`CompactString`
/// keeps up to 24 bytes inline; every id this machine allocates,
/// `{6-digit region}-{yyyymmdd}-{sequence}`, is 22). A `String` key sends
/// each comparison of a B-tree search to the heap for its bytes; a group's
/// map holds up to a day's tickets × 30, so on a busy node (and in a
/// simulated national day, whose ≈ 10,000 replicas' maps outgrow the
/// caches) most of those visits miss the cache. Ordered as `str` is, i.e.
/// exactly as `String` keys were: iteration order (snapshots, listings) is
/// unchanged.
pub type IdKey = compact_str::CompactString;

/// The tickets of a group by id (see `IdKey`), each behind an `Arc` (see
/// `TicketMachine::tickets`).
#[derive(Debug, Default)]
pub(super) struct TicketMap(BTreeMap<IdKey, Arc<Ticket>>);

impl TicketMap {
    pub(super) fn get(&self, id: &str) -> Option<&Arc<Ticket>> {
        self.0.get(id)
    }

    fn get_key(&self, id: &IdKey) -> Option<&Arc<Ticket>> {
        self.0.get(id)
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut Arc<Ticket>> {
        self.0.get_mut(id)
    }

    /// Stores `t` under its own id; the version it replaces, if any.
    fn insert(&mut self, t: Arc<Ticket>) -> Option<Arc<Ticket>> {
        self.0.insert(IdKey::new(&t.id), t)
    }

    fn values(&self) -> impl Iterator<Item = &Arc<Ticket>> {
        self.0.values()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A lower bound on the `at_ms` of every remembered request, so that
/// `expire_requests`, which every applied command runs, can tell that nothing
/// is due without walking `requests_by_time` down to its first leaf: on a
/// node with many groups (and in a simulated national day, ≈ 10,000
/// replicas) that walk misses the cache at every level. Inserts lower it,
/// removals leave it valid; `i64::MIN` (a restored machine) means "unknown".
#[derive(Debug, Clone, Copy)]
struct RequestFloor(i64);

impl Default for RequestFloor {
    fn default() -> Self {
        RequestFloor(i64::MIN)
    }
}

/// A lower bound on the `updated_at_ms` of every transfer record, so that
/// `prune_transfers`, which every `Custody` runs, can tell that no record is
/// past retention without visiting the first 64 records (cold `Arc`s: ≈ 1.5 %
/// of a simulated national day's samples, on groups holding thousands of
/// records). Stores lower it, removals leave it valid; an empty machine's is
/// `i64::MAX` (no record), a restored one's is computed as it loads.
#[derive(Debug, Clone, Copy)]
pub(super) struct TransferFloor(pub(super) i64);

impl Default for TransferFloor {
    fn default() -> Self {
        TransferFloor(i64::MAX)
    }
}

/// Keys of a machine's rows in the tables keyed by time first
/// ([`TicketMachine::time_keys`]).
#[derive(Clone, Debug, Default)]
pub struct TimeKeys {
    /// (accepted_at_ms, ticket id)
    pub tickets: Vec<(i64, String)>,
    /// (at_ms, request id)
    pub requests: Vec<(i64, u64)>,
    /// (created_at_ms, notification id)
    pub outbox: Vec<(i64, String)>,
}

impl TimeKeys {
    /// The keys of these rows.
    pub fn of<'a>(
        tickets: impl IntoIterator<Item = &'a Ticket>,
        requests: impl IntoIterator<Item = &'a RequestSeen>,
        outbox: impl IntoIterator<Item = &'a Notification>,
    ) -> TimeKeys {
        TimeKeys {
            tickets: tickets
                .into_iter()
                .map(|t| (t.accepted_at_ms, t.id.clone()))
                .collect(),
            requests: requests
                .into_iter()
                .map(|r| (r.at_ms, r.request_id))
                .collect(),
            outbox: outbox
                .into_iter()
                .map(|n| (n.created_at_ms, n.id.clone()))
                .collect(),
        }
    }

    /// The keys of a group's rows as storage reads them (a purge of a
    /// group that is only on disk: no machine is made of them).
    pub fn of_rows(s: &StateSnapshot) -> TimeKeys {
        TimeKeys::of(&s.tickets, &s.requests, &s.outbox)
    }
}

/// The state of one region group's tickets.
#[derive(Debug, Default)]
pub struct TicketMachine {
    /// The region this group serves (a 6-digit district code, or a shorter
    /// city/province code). Accepts must name it or a region under it.
    region: String,
    /// Behind an `Arc`: a B-tree leaf holds eleven values inline, and a
    /// `Ticket` is ≈ 1 KB, so unboxed a group with a few tickets costs
    /// ≈ 10 KB per map node whatever its size (a national topology has
    /// ≈ 10,000 replicas); and the same copy goes to the driver in
    /// `SmWrites` and back in `ApplyResult` without being cloned (the
    /// simulator also shares it between a group's replicas, `share`).
    tickets: TicketMap,
    /// Raft index of each ticket's accept → id: newest-first listing.
    /// (An `IdKey`, not a `String`: one heap block less per ticket.)
    by_index: BTreeMap<u64, IdKey>,
    /// Every open ticket (not closed, archived, merged or transferred away)
    /// in worklist order (`lifecycle::work_key`): worklists and overdue
    /// lists walk these, not the group's history. A busy district accepts
    /// 200,000 tickets in a few months; a scan of the newest ones, as lists
    /// do, would miss exactly the tickets overdue for longest. Kept by
    /// every path that stores a ticket (`keep_open`).
    open: BTreeSet<(bool, i64, u64)>,
    /// Last sequence number per CST day (yyyymmdd).
    sequences: BTreeMap<u32, u64>,
    requests: BTreeMap<u64, RequestSeen>,
    /// (at_ms, request_id), to expire `requests` in time order.
    requests_by_time: BTreeSet<(i64, u64)>,
    /// No remembered request is older than this (see `expire_requests`).
    requests_floor: RequestFloor,
    policy: Policy,
    rules: SharedRules,
    outbox: BTreeMap<String, Notification>,
    /// (created_at_ms, id): delivery and eviction order.
    outbox_order: BTreeSet<(i64, String)>,
    /// Transfers this group originated, relayed or received, by transfer id.
    /// Shared for the same reasons as `tickets` (a record carries its
    /// envelope with the ticket).
    pub(super) transfers: BTreeMap<String, Arc<TransferRecord>>,
    /// Ids of the records the forwarder must act on, in id order: what
    /// `transfer_work` answers every forwarder round without scanning every
    /// record kept for 30 days (a day's cross-province cases at the national
    /// group).
    pub(super) transfer_work_ids: BTreeSet<String>,
    /// No transfer record was updated before this (see `TransferFloor`).
    pub(super) transfers_floor: TransferFloor,
    /// The replicated directory (national group only).
    placements: Placements,
    /// A placement changed since the last `take_writes`: the directory's
    /// image is built once there, not once per command (a seed of
    /// thousands of groups would copy it thousands of times).
    directory_dirty: bool,
    pub(super) writes: SmWrites,
}

/// Query of the ticket state, answered after a ReadIndex round. `now_ms` is
/// the asking node's clock: it only colours deadlines (yellow/red) in the
/// answer, it never changes state.
#[derive(Clone, Debug, PartialEq)]
pub enum Query {
    Get {
        id: String,
        now_ms: i64,
    },
    List {
        filter: ListTicketsRequest,
        now_ms: i64,
    },
    Lookup {
        id: String,
        phone_last4: String,
    },
    Report {
        from_ms: i64,
        to_ms: i64,
        basic_weight_permille: u32,
    },
    Outbox {
        limit: usize,
    },
    Policy,
    /// Transfer records (the national group's cross-province list).
    Transfers {
        cross_province_only: bool,
        limit: usize,
    },
    /// What the forwarder must pass on.
    TransferWork {
        limit: usize,
    },
    /// The replicated directory (national group); only its version if the
    /// asker has `known_version` already.
    Directory {
        known_version: u64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum QueryAnswer {
    Ticket(Option<Box<Ticket>>),
    Tickets {
        tickets: Vec<Ticket>,
        next_before_id: String,
        /// Tickets that matched: for a worklist (`by_deadline`) all of the
        /// scanned window's, of which `tickets` holds the first `limit`;
        /// for a page, the page's.
        matched: u64,
    },
    Lookup(Option<LookupResponse>),
    Report(Box<ReportResponse>),
    Outbox(Vec<Notification>),
    Policy(Policy),
    Transfers(Vec<TransferRecord>),
    /// A custody log's page (`Query::Transfers`) and how many records
    /// matched in all.
    TransferList {
        records: Vec<TransferRecord>,
        matched: u64,
    },
    Directory(DirectoryImage),
}

/// The order of a custody log as a supervisor reads it: the transfers
/// still on their way first (pending here, or passed on and no receipt
/// back yet), the longest waiting leading; then the finished ones, the last
/// finished first. Ties by transfer id, so every replica lists alike.
pub fn transfer_list_order(a: &TransferRecord, b: &TransferRecord) -> std::cmp::Ordering {
    let key = |r: &TransferRecord| {
        use hotline_proto::v1::TransferState as S;
        let open = r.state == S::Pending as i32 || r.state == S::Forwarded as i32;
        let sent_at_ms = r.envelope.as_ref().map_or(0, |e| e.sent_at_ms);
        if open {
            (0, sent_at_ms)
        } else {
            (1, -r.updated_at_ms)
        }
    };
    fn id(r: &TransferRecord) -> Option<&str> {
        r.envelope.as_ref().map(|e| e.transfer_id.as_str())
    }
    key(a).cmp(&key(b)).then_with(|| id(a).cmp(&id(b)))
}

impl TicketMachine {
    pub fn new(region: &str) -> Self {
        TicketMachine {
            region: region.to_string(),
            ..Default::default()
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn len(&self) -> usize {
        self.tickets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tickets.is_empty()
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    pub fn ticket(&self, id: &str) -> Option<&Ticket> {
        self.tickets.get(id).map(|t| &**t)
    }

    pub fn tickets(&self) -> impl Iterator<Item = &Ticket> {
        self.tickets.values().map(|t| &**t)
    }

    /// The shared copy of a ticket (see `share_ticket`).
    pub fn ticket_arc(&self, id: &str) -> Option<&Arc<Ticket>> {
        self.tickets.get(id)
    }

    /// A driver that keeps several replicas of a group in one process (the
    /// simulator) keeps one copy of each ticket for all of them: if this
    /// machine holds `mine` (as handed out in `SmWrites`), it takes
    /// `theirs` instead, which the caller found equal to it. Changes nothing
    /// observable; false if this machine has moved on from `mine`.
    pub fn share_ticket(&mut self, mine: &Arc<Ticket>, theirs: &Arc<Ticket>) -> bool {
        debug_assert!(**mine == **theirs, "shared tickets must be equal");
        match self.tickets.get_mut(&mine.id) {
            Some(held) if Arc::ptr_eq(held, mine) => {
                *held = theirs.clone();
                true
            }
            _ => false,
        }
    }

    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// Checks an accept request before it is proposed (and again when it is
    /// applied: the apply path never trusts the proposer).
    pub fn validate_accept(&self, req: &AcceptRequest) -> Result<(), FieldError> {
        validate_accept(&self.region, req)?;
        self.rules
            .categories
            .validate(&req.category)
            .map_err(|e| bad("category", e))
    }

    /// Checks a command against the current state without changing it: what
    /// the node does before proposing, so a command that would be refused
    /// never reaches the log. The apply path checks again (state may have
    /// moved on in between).
    pub fn check(&self, cmd: &Command) -> Result<(), CommandError> {
        if cmd.request_id != 0 && self.requests.contains_key(&cmd.request_id) {
            return Ok(()); // a retry: apply answers with the first outcome
        }
        match &cmd.op {
            Some(command::Op::Accept(req)) => Ok(self.validate_accept(req)?),
            Some(command::Op::Ticket(tc)) => {
                let t = self
                    .tickets
                    .get(&tc.ticket_id)
                    .ok_or_else(|| CommandError::NotFound(tc.ticket_id.clone()))?;
                let dup = self.merge_duplicate(tc);
                lifecycle::transition(t, tc, cmd.at_ms, 0, &self.rules, dup).map(|_| ())
            }
            Some(command::Op::SetPolicy(p)) => self.check_policy(p).map(|_| ()),
            Some(command::Op::TransferOut(t)) => self.check_transfer_out(t).map(|_| ()),
            Some(command::Op::Place(p)) => Ok(self.placements.check(self.region.is_empty(), p)?),
            Some(
                command::Op::Delivered(_)
                | command::Op::Custody(_)
                | command::Op::HopDone(_)
                | command::Op::ReceiptIn(_)
                | command::Op::ReceiptPassed(_),
            ) => Ok(()),
            None => Err(bad("op", "command has no operation").into()),
        }
    }

    /// What `check` checks without looking at tickets, transfers or the
    /// request log: for a replica whose state may trail the group's (a
    /// follower, a leader new in its term).
    pub fn validate(&self, cmd: &Command) -> Result<(), CommandError> {
        match &cmd.op {
            Some(command::Op::Accept(req)) => Ok(self.validate_accept(req)?),
            Some(_) => Ok(()),
            None => Err(bad("op", "command has no operation").into()),
        }
    }

    fn merge_duplicate(&self, tc: &hotline_proto::v1::TicketCommand) -> Option<&Ticket> {
        match &tc.op {
            Some(hotline_proto::v1::ticket_command::Op::Merge(m)) => {
                self.tickets.get(&m.duplicate_id).map(|t| &**t)
            }
            _ => None,
        }
    }

    fn check_policy(&self, p: &Policy) -> Result<Rules, CommandError> {
        if p.version <= self.policy.version {
            return Err(bad(
                "policy.version",
                format!(
                    "{} is not newer than the policy in force ({})",
                    p.version, self.policy.version
                ),
            )
            .into());
        }
        Ok(Rules::from_policy(p)?)
    }

    pub fn apply(&mut self, index: u64, cmd: &Command) -> ApplyResult {
        self.expire_requests(cmd.at_ms);
        // A retried request (same id within the window) answers with the
        // ticket of the first one instead of acting twice.
        if cmd.request_id != 0
            && let Some(seen) = self.requests.get(&cmd.request_id)
            && let Some(t) = self.tickets.get(&seen.ticket_id)
        {
            return ApplyResult::Ticket(t.clone());
        }
        let result = match &cmd.op {
            Some(command::Op::Accept(req)) => match self.validate_accept(req) {
                Ok(()) => {
                    let t = self.accept(index, cmd.at_ms, req);
                    if req.transfer_to_group != 0 {
                        // Accepted here (首接), owned there: one command.
                        let out = hotline_proto::v1::TransferOut {
                            ticket_id: t.id.clone(),
                            destination_group: req.transfer_to_group,
                            destination_region: t
                                .location
                                .as_ref()
                                .map(|l| l.code.clone())
                                .unwrap_or_default(),
                            actor: t.call_taker.clone(),
                            reason: "问题发生地不在本地区，转当地办理".into(),
                            send_back: false,
                        };
                        match self.apply_transfer_out(&out, cmd.at_ms, index) {
                            ApplyResult::Rejected(e) => {
                                self.transfer_not_started(&t.id, &out, &e, cmd.at_ms, index)
                            }
                            r => r,
                        }
                    } else {
                        ApplyResult::Ticket(t)
                    }
                }
                Err(e) => ApplyResult::Rejected(e.into()),
            },
            Some(command::Op::TransferOut(t)) => self.apply_transfer_out(t, cmd.at_ms, index),
            Some(command::Op::Custody(c)) => return self.apply_custody(c, cmd.at_ms, index),
            Some(command::Op::HopDone(h)) => return self.apply_hop_done(h, cmd.at_ms),
            Some(command::Op::ReceiptIn(r)) => return self.apply_receipt_in(r, cmd.at_ms, index),
            Some(command::Op::ReceiptPassed(p)) => {
                return self.apply_receipt_passed(p, cmd.at_ms);
            }
            Some(command::Op::Ticket(tc)) => {
                let Some(t) = self.tickets.get(&tc.ticket_id) else {
                    return ApplyResult::Rejected(CommandError::NotFound(tc.ticket_id.clone()));
                };
                let dup = self.merge_duplicate(tc);
                match lifecycle::transition(t, tc, cmd.at_ms, index, &self.rules, dup) {
                    Ok(out) => {
                        if let Some(o) = out.other {
                            self.put_ticket(o);
                        }
                        for n in out.notifications {
                            self.enqueue(n);
                        }
                        ApplyResult::Ticket(self.put_ticket(out.ticket))
                    }
                    Err(e) => ApplyResult::Rejected(e),
                }
            }
            Some(command::Op::SetPolicy(p)) => match self.check_policy(p) {
                Ok(rules) => {
                    self.rules = SharedRules(Arc::new(rules));
                    self.policy = p.clone();
                    self.writes.policy = Some(Box::new(p.clone()));
                    return ApplyResult::Policy(p.clone());
                }
                Err(e) => return ApplyResult::Rejected(e),
            },
            Some(command::Op::Place(p)) => {
                return match self.placements.check(self.region.is_empty(), p) {
                    Ok(()) => {
                        if self.placements.apply(p) {
                            self.directory_dirty = true;
                        }
                        ApplyResult::Directory(super::placements::version_only(
                            self.placements.version(),
                        ))
                    }
                    Err(e) => ApplyResult::Rejected(e.into()),
                };
            }
            Some(command::Op::Delivered(d)) => {
                for id in &d.ids {
                    if let Some(n) = self.outbox.remove(id) {
                        let key = (n.created_at_ms, n.id);
                        self.outbox_order.remove(&key);
                        self.writes.outbox_del.push(key);
                    }
                }
                return ApplyResult::Nothing;
            }
            None => ApplyResult::Rejected(bad("op", "command has no operation").into()),
        };
        if cmd.request_id != 0
            && let ApplyResult::Ticket(t) = &result
        {
            self.remember(cmd.request_id, &t.id, cmd.at_ms);
        }
        result
    }

    pub(super) fn tickets_map(&self) -> &TicketMap {
        &self.tickets
    }

    /// Lists a ticket that arrived by transfer under its custody index.
    pub(super) fn index_ticket(&mut self, index: u64, id: &str) {
        if let Some(old) = self.tickets.get(id) {
            self.by_index.remove(&old.raft_index);
        }
        self.by_index.insert(index, IdKey::new(id));
    }

    /// Ticket `id`, to be changed in place and then stored with
    /// `ticket_changed`: as `transfer_mut`, a version another holder shares
    /// is copied first, so a version once handed out never changes. Take it
    /// only once the command will change it.
    pub(super) fn ticket_mut(&mut self, id: &str) -> Option<&mut Ticket> {
        // The key, not a clone of the `Arc`: a second reference would make
        // `make_mut` copy the whole ticket every time.
        let key = lifecycle::work_key(self.tickets.get(id)?);
        self.keep_open(key, None);
        self.tickets.get_mut(id).map(Arc::make_mut)
    }

    /// After `ticket_mut`: the changed version goes to the writes.
    pub(super) fn ticket_changed(&mut self, id: &str) -> Arc<Ticket> {
        let t = self.tickets.get(id).expect("changed in place").clone();
        self.keep_open(None, lifecycle::work_key(&t));
        self.writes.tickets.push(t.clone());
        t
    }

    /// Keeps `open` in step when a ticket whose version had work key `old`
    /// (none: a new ticket, or not open) gets one with key `new` (none:
    /// not open, or still being changed in place), keys by
    /// `lifecycle::work_key`. `open` is derived, not replicated: a drift
    /// (which the lifecycle property test would catch) must not stop every
    /// replica's apply at the same index, so it is checked in debug builds
    /// only.
    fn keep_open(&mut self, old: Option<(bool, i64, u64)>, new: Option<(bool, i64, u64)>) {
        if let Some(k) = old {
            let held = self.open.remove(&k);
            debug_assert!(held, "open ticket at raft index {} was not indexed", k.2);
        }
        if let Some(k) = new {
            let fresh = self.open.insert(k);
            debug_assert!(fresh, "two open tickets at raft index {}", k.2);
        }
    }

    /// Checks `open` against the tickets it indexes (tests).
    #[cfg(test)]
    pub(super) fn assert_open_index(&self) {
        let want: BTreeSet<(bool, i64, u64)> = self
            .tickets
            .values()
            .filter_map(|t| lifecycle::work_key(t))
            .collect();
        assert_eq!(self.open, want, "the open index drifted");
    }

    /// Stores a ticket's new version; the same copy goes to the writes.
    pub(super) fn put_ticket(&mut self, t: Ticket) -> Arc<Ticket> {
        let t = Arc::new(t);
        self.writes.tickets.push(t.clone());
        let old = self.tickets.insert(t.clone());
        if let Some(old) = &old {
            // The disk keys a ticket by its accept time (`storage::TICKETS`):
            // a version under another time would leave the old row behind.
            assert_eq!(
                old.accepted_at_ms, t.accepted_at_ms,
                "ticket {} changed its accept time",
                t.id
            );
        }
        self.keep_open(
            old.as_deref().and_then(lifecycle::work_key),
            lifecycle::work_key(&t),
        );
        t
    }

    pub(super) fn enqueue(&mut self, n: Notification) {
        while self.outbox.len() >= MAX_OUTBOX {
            let oldest = self.outbox_order.pop_first().expect("outbox is not empty");
            self.outbox.remove(&oldest.1);
            self.writes.outbox_del.push(oldest);
        }
        self.outbox_order.insert((n.created_at_ms, n.id.clone()));
        self.outbox.insert(n.id.clone(), n.clone());
        self.writes.outbox_put.push(n);
    }

    fn remember(&mut self, request_id: u64, ticket_id: &str, at_ms: i64) {
        let seen = RequestSeen {
            request_id,
            ticket_id: ticket_id.to_string(),
            at_ms,
        };
        self.requests_by_time.insert((at_ms, request_id));
        self.requests_floor.0 = self.requests_floor.0.min(at_ms);
        if let Some(old) = self.requests.insert(request_id, seen.clone()) {
            self.requests_by_time.remove(&(old.at_ms, request_id));
            if old.at_ms != at_ms {
                self.writes.requests_del.push((old.at_ms, request_id));
            }
        }
        self.writes.requests_put.push(seen);
    }

    fn accept(&mut self, index: u64, at_ms: i64, req: &AcceptRequest) -> Arc<Ticket> {
        let day = cst_day(at_ms);
        let seq = self.sequences.entry(day).or_insert(0);
        *seq += 1;
        let seq = *seq;
        self.writes.sequences.push(DaySequence { day, last: seq });
        // The district's code — or a street group's own code: its sequence
        // is its own, and its district's group counts the same days from 1
        // too, so a district prefix would give both groups the same ids
        // (and a street ticket transferred to its district would clash).
        // The prefix also routes `get` to the group (`Handle::for_ticket`).
        let prefix_len = self.region.len().max(6);
        let district: String = req.region.chars().take(prefix_len).collect();
        let channel = if req.channel == Channel::Unspecified as i32 {
            Channel::Phone as i32
        } else {
            req.channel
        };
        let priority = if req.priority == Priority::Unspecified as i32 {
            Priority::Normal as i32
        } else {
            req.priority
        };
        let mut location = req.location.clone().unwrap_or_default();
        if location.code.is_empty() {
            location.code = req.region.clone();
        }
        let id = format!("{district}-{day}-{seq:06}");
        let actor = req.actor.clone().unwrap_or(Actor {
            id: "unknown".into(),
            role: Role::CallTaker as i32,
        });
        let mut ticket = Ticket {
            id: id.clone(),
            region: req.region.clone(),
            kind: req.kind,
            category: req.category.clone(),
            text: req.text.clone(),
            channel,
            status: Status::Accepted as i32,
            accepted_at_ms: at_ms,
            raft_index: index,
            priority,
            location: Some(location.clone()),
            requesters: vec![Requester {
                phone: req.phone.clone(),
                phone_masked: mask_phone(&req.phone),
                name: req.name.clone(),
                name_masked: mask_name(&req.name),
                ticket_id: id.clone(),
            }],
            call_taker: Some(actor.clone()),
            ..Default::default()
        };
        let payload = payload!({
            "region": req.region,
            "kind": kind_name(req.kind),
            "category": req.category,
            "channel": channel,
            "priority": lifecycle::priority_name(priority),
            "location": location.code,
            "text_sha256": lifecycle::sha_hex(&req.text),
        });
        audit::append(
            &mut ticket.events,
            Event {
                kind: "accept".into(),
                actor: Some(actor),
                at_ms,
                payload,
                raft_index: index,
                ..Default::default()
            },
        );
        let text = format!(
            "【12345热线】您反映的问题已受理，工单号{id}。可凭工单号和手机号后4位查询办理进度。"
        );
        for n in lifecycle::notify_all(&ticket, 1, &text, at_ms) {
            self.enqueue(n);
        }
        self.by_index.insert(index, IdKey::new(&ticket.id));
        self.keep_open(None, lifecycle::work_key(&ticket));
        let t = Arc::new(ticket);
        // Checked by the insert itself rather than by a lookup before it
        // (a B-tree walk per accept on every replica).
        let earlier = self.tickets.insert(t.clone());
        assert!(earlier.is_none(), "ticket id {} allocated twice", t.id);
        self.writes.tickets.push(t.clone());
        t
    }

    /// Forgets request ids older than the dedup window, measured against the
    /// newest command's time (never a local clock), and beyond the count cap.
    fn expire_requests(&mut self, now_ms: i64) {
        if self.requests_floor.0 >= now_ms - REQUEST_DEDUP_WINDOW_MS
            && self.requests.len() < MAX_REMEMBERED_REQUESTS
        {
            return; // nothing is old enough, and there is room
        }
        while let Some(&(at, id)) = self.requests_by_time.first() {
            let too_old = at < now_ms - REQUEST_DEDUP_WINDOW_MS;
            let too_many = self.requests.len() >= MAX_REMEMBERED_REQUESTS;
            if !too_old && !too_many {
                break;
            }
            self.requests_by_time.pop_first();
            self.requests.remove(&id);
            self.writes.requests_del.push((at, id));
        }
        self.requests_floor.0 = self
            .requests_by_time
            .first()
            .map_or(i64::MAX, |&(at, _)| at);
    }

    /// A ticket as a query shows it: the deadline coloured at `now_ms`.
    fn view(&self, t: &Ticket, now_ms: i64) -> Ticket {
        let mut v = t.clone();
        let (state, due) = lifecycle::deadline_view(t, self.rules.deadlines.warn_permille, now_ms);
        v.deadline_state = state;
        v.deadline_ms = due;
        v
    }

    pub fn query(&self, q: &Query) -> QueryAnswer {
        match q {
            Query::Get { id, now_ms } => QueryAnswer::Ticket(
                self.tickets
                    .get(id)
                    .map(|t| Box::new(self.view(t, *now_ms))),
            ),
            Query::List { filter, now_ms } => self.list(filter, *now_ms),
            Query::Lookup { id, phone_last4 } => QueryAnswer::Lookup(self.lookup(id, phone_last4)),
            Query::Report {
                from_ms,
                to_ms,
                basic_weight_permille,
            } => {
                let mut w: KpiWeights = self.rules.weights;
                if *basic_weight_permille != 0 {
                    w.basic_permille = *basic_weight_permille;
                }
                QueryAnswer::Report(Box::new(kpi::report(
                    &self.region,
                    self.tickets.values().map(|t| &**t),
                    *from_ms,
                    *to_ms,
                    &w,
                )))
            }
            Query::Outbox { limit } => QueryAnswer::Outbox(
                self.outbox_order
                    .iter()
                    .take(*limit)
                    .map(|(_, id)| self.outbox[id].clone())
                    .collect(),
            ),
            Query::Policy => QueryAnswer::Policy(self.policy.clone()),
            Query::Directory { known_version } => {
                QueryAnswer::Directory(self.placements.answer(*known_version))
            }
            Query::Transfers {
                cross_province_only,
                limit,
            } => {
                let mut v: Vec<&TransferRecord> = self
                    .transfers
                    .values()
                    .map(|r| &**r)
                    .filter(|r| !cross_province_only || r.cross_province)
                    .collect();
                let matched = v.len() as u64;
                // Only the page is sorted and copied: a national group
                // keeps a month of cross-province cases.
                if v.len() > *limit && *limit > 0 {
                    v.select_nth_unstable_by(*limit - 1, |a, b| transfer_list_order(a, b));
                }
                v.truncate(*limit);
                v.sort_by(|a, b| transfer_list_order(a, b));
                QueryAnswer::TransferList {
                    records: v.into_iter().cloned().collect(),
                    matched,
                }
            }
            Query::TransferWork { limit } => QueryAnswer::Transfers(self.transfer_work(*limit)),
        }
    }

    fn list(&self, f: &ListTicketsRequest, now_ms: i64) -> QueryAnswer {
        use hotline_proto::v1::DeadlineState as D;
        let limit = if f.limit == 0 { 100 } else { f.limit as usize };
        let upper = if f.before_id.is_empty() {
            u64::MAX
        } else {
            self.tickets.get(&f.before_id).map_or(0, |t| t.raft_index)
        };
        let wanted = D::try_from(f.deadline).unwrap_or(D::Unspecified);
        // Only open tickets have a running deadline, and a worklist asks
        // for open statuses: such a list walks the open tickets alone.
        let open_only = matches!(wanted, D::OnTime | D::AtRisk | D::Overdue)
            || (!f.statuses.is_empty() && f.statuses.iter().all(|&s| lifecycle::is_open(s)));
        if f.by_deadline && open_only {
            return self.worklist(f, wanted, limit, now_ms);
        }
        let mut out = Vec::new();
        let mut next = String::new();
        for (scanned, (_, id)) in self.by_index.range(..upper).rev().enumerate() {
            if scanned >= MAX_SCAN_PER_QUERY {
                next = id.as_str().to_string();
                break;
            }
            let Some(v) = self.listed(f, wanted, id, now_ms) else {
                continue;
            };
            out.push(v);
            if !f.by_deadline && out.len() == limit {
                next = id.as_str().to_string();
                break;
            }
        }
        let matched = out.len() as u64;
        if f.by_deadline {
            // Worklists: the nearest deadline first; no deadline last.
            out.sort_by_key(worklist_order);
            out.truncate(limit);
        }
        QueryAnswer::Tickets {
            tickets: out,
            next_before_id: next,
            matched,
        }
    }

    /// Ticket `id` as a list shows it at `now_ms`, if it passes the list's
    /// filters.
    fn listed(
        &self,
        f: &ListTicketsRequest,
        wanted: hotline_proto::v1::DeadlineState,
        id: &IdKey,
        now_ms: i64,
    ) -> Option<Ticket> {
        let t = self
            .tickets
            .get_key(id)
            .expect("by_index lists held tickets");
        if !list_filter(f, t) {
            return None;
        }
        let v = self.view(t, now_ms);
        deadline_matches(wanted, v.deadline_state).then_some(v)
    }

    /// A list by deadline of open tickets only: the open index is already
    /// in worklist order, so the first `limit` that pass the filter are the
    /// answer, and an overdue list stops at the first ticket not yet due.
    /// Every match is counted, however old. At most [`MAX_SCAN_PER_QUERY`]
    /// open tickets are examined, in deadline order, so the list itself is
    /// always the most urgent one; past the bound `matched` is a lower
    /// bound. Such a list has no next page (`before_id` pages in accept
    /// order, which is not this list's order), so none is offered.
    fn worklist(
        &self,
        f: &ListTicketsRequest,
        wanted: hotline_proto::v1::DeadlineState,
        limit: usize,
        now_ms: i64,
    ) -> QueryAnswer {
        use hotline_proto::v1::DeadlineState as D;
        let keys = match wanted {
            // Overdue: due at or before now (`deadline_view`).
            D::Overdue => self.open.range(..=(false, now_ms, u64::MAX)),
            _ => self.open.range(..),
        };
        let mut out = Vec::new();
        let mut matched = 0u64;
        for &(_, _, index) in keys.take(MAX_SCAN_PER_QUERY) {
            let Some(id) = self.by_index.get(&index) else {
                debug_assert!(false, "open ticket at {index} is not listed");
                continue;
            };
            let Some(v) = self.listed(f, wanted, id, now_ms) else {
                continue;
            };
            matched += 1;
            if out.len() < limit {
                out.push(v);
            }
        }
        debug_assert!(
            out.is_sorted_by_key(worklist_order),
            "the index is in worklist order"
        );
        QueryAnswer::Tickets {
            tickets: out,
            next_before_id: String::new(),
            matched,
        }
    }

    /// A requester's view: ticket number plus the last 4 digits of any
    /// requester's phone. Wrong digits and unknown ids answer the same
    /// (`None`), so the lookup cannot probe which ids exist.
    fn lookup(&self, id: &str, last4: &str) -> Option<LookupResponse> {
        let t = self.tickets.get(id)?;
        if last4.len() != 4 || !t.requesters.iter().any(|r| r.phone.ends_with(last4)) {
            return None;
        }
        // A merged duplicate shows its master's progress after its own.
        let master = if t.master_id.is_empty() {
            None
        } else {
            self.tickets.get(&t.master_id)
        };
        let shown = master.unwrap_or(t);
        let mut progress: Vec<PublicProgress> = t
            .events
            .iter()
            .chain(master.into_iter().flat_map(|m| m.events.iter()))
            .filter_map(|e| {
                lifecycle::public_summary(e).map(|summary| PublicProgress {
                    kind: e.kind.clone(),
                    at_ms: e.at_ms,
                    summary,
                })
            })
            .collect();
        progress.sort_by_key(|p| p.at_ms);
        Some(LookupResponse {
            id: t.id.clone(),
            kind: t.kind,
            category: t.category.clone(),
            status: shown.status,
            accepted_at_ms: t.accepted_at_ms,
            status_text: lifecycle::status_zh(shown.status).to_string(),
            progress,
            reply_text: shown.reply_text.clone(),
        })
    }

    pub fn take_writes(&mut self) -> SmWrites {
        if std::mem::take(&mut self.directory_dirty) {
            self.writes.directory = Some(Box::new(self.placements.image()));
        }
        std::mem::take(&mut self.writes)
    }

    pub fn has_writes(&self) -> bool {
        !self.writes.is_empty() || self.directory_dirty
    }

    /// The whole state, for a Raft snapshot. Deterministic bytes.
    /// The storage keys of every ticket this machine holds: (accept time,
    /// id), as its table is keyed.
    pub fn ticket_keys(&self) -> Vec<(i64, String)> {
        TimeKeys::of(self.tickets.values().map(|t| &**t), [], []).tickets
    }

    /// The storage keys of every row this machine holds in the tables
    /// keyed by time first: what a purge deletes by key, since a group has
    /// no key range of its own there (a scan of those tables would hold up
    /// every other group of the node).
    pub fn time_keys(&self) -> TimeKeys {
        TimeKeys::of(
            self.tickets.values().map(|t| &**t),
            self.requests.values(),
            self.outbox.values(),
        )
    }

    pub fn snapshot(&self, group_id: u64) -> StateSnapshot {
        StateSnapshot {
            group_id,
            tickets: self.tickets.values().map(|t| (**t).clone()).collect(),
            sequences: self
                .sequences
                .iter()
                .map(|(&day, &last)| DaySequence { day, last })
                .collect(),
            requests: self.requests.values().cloned().collect(),
            policy: (self.policy.version != 0).then(|| self.policy.clone()),
            outbox: self
                .outbox_order
                .iter()
                .map(|(_, id)| self.outbox[id].clone())
                .collect(),
            transfers: self.transfers.values().map(|r| (**r).clone()).collect(),
            directory: (!self.placements.is_empty()).then(|| self.placements.image()),
        }
    }

    pub fn snapshot_bytes(&self, group_id: u64) -> Vec<u8> {
        self.snapshot(group_id).encode_to_vec()
    }

    /// Rebuilds the state from a snapshot or from what the driver loaded.
    pub fn restore(region: &str, snap: StateSnapshot) -> Self {
        let mut m = TicketMachine::new(region);
        for t in snap.tickets {
            m.by_index.insert(t.raft_index, IdKey::new(&t.id));
            m.keep_open(None, lifecycle::work_key(&t));
            // Two rows of one ticket: a disk that lost track of a version
            // (it keys tickets by accept time). Keeping either would hide it.
            if let Some(old) = m.tickets.insert(Arc::new(t)) {
                let at_ms = m.tickets.get(&old.id).map_or(0, |t| t.accepted_at_ms);
                panic!(
                    "ticket {} is stored twice (accepted at {} and {at_ms})",
                    old.id, old.accepted_at_ms
                );
            }
        }
        for s in snap.sequences {
            m.sequences.insert(s.day, s.last);
        }
        for r in snap.requests {
            m.requests_by_time.insert((r.at_ms, r.request_id));
            m.requests.insert(r.request_id, r);
        }
        if let Some(p) = snap.policy {
            // It was valid when applied, and parsing is deterministic.
            m.rules = SharedRules(Arc::new(
                Rules::from_policy(&p).expect("a stored policy parses"),
            ));
            m.policy = p;
        }
        for n in snap.outbox {
            m.outbox_order.insert((n.created_at_ms, n.id.clone()));
            m.outbox.insert(n.id.clone(), n);
        }
        for r in snap.transfers {
            let id = r
                .envelope
                .as_ref()
                .map(|e| e.transfer_id.clone())
                .unwrap_or_default();
            m.transfers_floor.0 = m.transfers_floor.0.min(r.updated_at_ms);
            m.transfers.insert(id.clone(), Arc::new(r));
            m.track_transfer_work(&id);
        }
        if let Some(d) = snap.directory {
            m.placements = Placements::restore(d);
        }
        m
    }
}

/// 张三 → 张*; 欧阳娜娜 → 欧***. Keeps the first character.
pub fn mask_name(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        None => String::new(),
        Some(first) => {
            let rest = chars.count().max(1);
            let mut out = first.to_string();
            out.extend(std::iter::repeat_n('*', rest));
            out
        }
    }
}

/// Verifies every ticket's event chain (the simulator and tests use this).
pub fn verify_ticket(t: &Ticket) -> Result<u32, audit::Break> {
    audit::verify(&t.events)
}

/// The CST calendar day of a Unix-millisecond instant, as yyyymmdd.
pub fn cst_day(at_ms: i64) -> u32 {
    let ts = jiff::Timestamp::from_millisecond(at_ms + CST_OFFSET_MS)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let d = ts.to_zoned(jiff::tz::TimeZone::UTC).date();
    (d.year() as u32) * 10_000 + (d.month() as u32) * 100 + d.day() as u32
}

/// 13800000000 → 138****0000. Keeps the first 3 and last 4 digits.
pub fn mask_phone(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().collect();
    if chars.len() <= 7 {
        return "*".repeat(chars.len());
    }
    let mut out: String = chars[..3].iter().collect();
    out.extend(std::iter::repeat_n('*', chars.len() - 7));
    out.extend(chars[chars.len() - 4..].iter());
    out
}

/// A mainland mobile number (1[3-9] + 9 digits) or a landline with its area
/// code (0 + 2–3 digits, optional '-', 7–8 digits).
pub fn validate_phone(phone: &str) -> Result<(), FieldError> {
    let b = phone.as_bytes();
    if b.is_empty() {
        return Err(bad("phone", "is required"));
    }
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    let mobile = b.len() == 11 && b[0] == b'1' && (b'3'..=b'9').contains(&b[1]) && digits(b);
    let landline = b[0] == b'0' && {
        let flat: Vec<u8> = b.iter().copied().filter(|&c| c != b'-').collect();
        let dashes = b.len() - flat.len();
        let dash_ok = dashes == 0
            || (dashes == 1 && matches!(b.iter().position(|&c| c == b'-'), Some(3 | 4)));
        dash_ok && digits(&flat) && (10..=12).contains(&flat.len())
    };
    if mobile || landline {
        Ok(())
    } else {
        Err(bad(
            "phone",
            format!(
                "{phone:?} is not a mainland mobile (1[3-9]XXXXXXXXX) or landline (0XX-XXXXXXXX) number"
            ),
        ))
    }
}

pub fn validate_accept(group_region: &str, req: &AcceptRequest) -> Result<(), FieldError> {
    if req.region.is_empty() {
        return Err(bad("region", "is required"));
    }
    hotline_federation::regions()
        .get(&req.region)
        .map_err(|e| bad("region", e.to_string()))?;
    if !req.region.starts_with(group_region) {
        return Err(bad(
            "region",
            format!(
                "{} is not served by this group (region {group_region})",
                req.region
            ),
        ));
    }
    if req.region.len() < 6 {
        return Err(bad(
            "region",
            format!(
                "{} is not a district or street code (6 or 9 digits)",
                req.region
            ),
        ));
    }
    match Kind::try_from(req.kind) {
        Ok(Kind::Unspecified) => return Err(bad("kind", "is required")),
        Ok(_) => {}
        Err(_) => return Err(bad("kind", format!("unknown kind {}", req.kind))),
    }
    if Channel::try_from(req.channel).is_err() {
        return Err(bad("channel", format!("unknown channel {}", req.channel)));
    }
    let category = req.category.trim();
    if category.is_empty() {
        return Err(bad("category", "is required"));
    }
    if req.category.chars().count() > MAX_CATEGORY_CHARS {
        return Err(bad(
            "category",
            format!("longer than {MAX_CATEGORY_CHARS} characters"),
        ));
    }
    if req.text.trim().is_empty() {
        return Err(bad("text", "is required"));
    }
    if req.text.len() > MAX_TEXT_BYTES {
        return Err(bad(
            "text",
            format!(
                "{} bytes is over the limit of {MAX_TEXT_BYTES}",
                req.text.len()
            ),
        ));
    }
    validate_phone(&req.phone)?;
    if Priority::try_from(req.priority).is_err() {
        return Err(bad(
            "priority",
            format!("unknown priority {}", req.priority),
        ));
    }
    if req.name.chars().count() > MAX_NAME_CHARS {
        return Err(bad(
            "name",
            format!("longer than {MAX_NAME_CHARS} characters"),
        ));
    }
    if let Some(l) = &req.location {
        if !l.code.is_empty() {
            let regions = hotline_federation::regions();
            regions
                .get(&l.code)
                .map_err(|e| bad("location.code", e.to_string()))?;
            if l.code.len() < 6 {
                return Err(bad(
                    "location.code",
                    format!(
                        "{} is not a district or street code",
                        regions.label(&l.code)
                    ),
                ));
            }
        }
        if l.address.chars().count() > MAX_ADDRESS_CHARS {
            return Err(bad(
                "location.address",
                format!("longer than {MAX_ADDRESS_CHARS} characters"),
            ));
        }
        if l.has_coordinates {
            if !(l.lat.is_finite() && (-90.0..=90.0).contains(&l.lat)) {
                return Err(bad("location.lat", "must be a latitude in -90..=90"));
            }
            if !(l.lng.is_finite() && (-180.0..=180.0).contains(&l.lng)) {
                return Err(bad("location.lng", "must be a longitude in -180..=180"));
            }
        }
    }
    if let Some(a) = &req.actor {
        lifecycle::check_actor(
            Some(a),
            &[
                Role::CallTaker,
                Role::Supervisor,
                Role::Requester,
                Role::System,
            ],
        )?;
    }
    Ok(())
}

pub fn parse_kind(s: &str) -> Option<Kind> {
    Some(match s {
        "consult" | "咨询" => Kind::Consult,
        "help" | "求助" => Kind::Help,
        "complaint" | "投诉" => Kind::Complaint,
        "report" | "举报" => Kind::Report,
        "suggestion" | "建议" => Kind::Suggestion,
        "praise" | "表扬" => Kind::Praise,
        _ => return None,
    })
}

pub fn kind_name(k: i32) -> &'static str {
    match Kind::try_from(k) {
        Ok(Kind::Consult) => "consult",
        Ok(Kind::Help) => "help",
        Ok(Kind::Complaint) => "complaint",
        Ok(Kind::Report) => "report",
        Ok(Kind::Suggestion) => "suggestion",
        Ok(Kind::Praise) => "praise",
        _ => "unspecified",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotline_proto::v1::{
        Answer, Archive, Callback, Close, DecideExtension, Dispatch, Extend, Merge, Refer,
        ReferReason, Reopen, Reply, Resolution, Return, ReviewReturn, Satisfaction, Sign,
        Supervise, TicketCommand, Urge, ticket_command::Op,
    };
    use proptest::prelude::*;

    #[test]
    fn writes_appended_keep_their_order_and_the_latest_policy() {
        let seq = |day, last| DaySequence { day, last };
        let policy = |version| {
            Some(Box::new(Policy {
                version,
                ..Default::default()
            }))
        };
        // Onto an empty batch (the vector moves), then onto a filled one.
        let mut w = SmWrites::default();
        w.append(SmWrites {
            sequences: vec![seq(1, 1), seq(1, 2)],
            outbox_del: vec![(5, "n1".into())],
            policy: policy(1),
            ..Default::default()
        });
        w.append(SmWrites {
            sequences: vec![seq(1, 3)],
            requests_del: vec![(7, 9)],
            ..Default::default()
        });
        assert_eq!(w.sequences, vec![seq(1, 1), seq(1, 2), seq(1, 3)]);
        assert_eq!(w.outbox_del, vec![(5, "n1".to_string())]);
        assert_eq!(w.requests_del, vec![(7, 9)]);
        assert_eq!(
            w.policy.as_ref().map(|p| p.version),
            Some(1),
            "kept when the later has none"
        );
        w.append(SmWrites {
            policy: policy(2),
            ..Default::default()
        });
        assert_eq!(
            w.policy.map(|p| p.version),
            Some(2),
            "a later policy replaces"
        );
        // An empty later batch changes nothing.
        let mut e = SmWrites::default();
        e.append(SmWrites::default());
        assert!(e.is_empty());
    }

    pub(crate) fn req() -> AcceptRequest {
        AcceptRequest {
            region: "310114".into(),
            kind: Kind::Complaint as i32,
            category: "城乡建设".into(),
            text: "小区门口道路破损".into(),
            phone: "13800000000".into(),
            ..Default::default()
        }
    }

    fn accept(m: &mut TicketMachine, index: u64, request_id: u64, at_ms: i64) -> ApplyResult {
        let cmd = Command {
            request_id,
            at_ms,
            accept_text: Vec::new(),
            op: Some(command::Op::Accept(req())),
        };
        m.apply(index, &cmd)
    }

    fn ticket(r: ApplyResult) -> Ticket {
        match r {
            ApplyResult::Ticket(t) => (*t).clone(),
            other => panic!("expected a ticket, got {other:?}"),
        }
    }

    // 2026-11-27 (Friday) 10:00 CST
    const AT: i64 = 1_795_831_200_000 - 86_400_000;
    const HOUR: i64 = 3_600_000;

    fn center() -> Option<Actor> {
        Some(Actor {
            id: "话务员007".into(),
            role: Role::CallTaker as i32,
        })
    }
    fn unit(name: &str) -> Option<Actor> {
        Some(Actor {
            id: name.into(),
            role: Role::Unit as i32,
        })
    }

    struct Driver {
        m: TicketMachine,
        index: u64,
    }

    impl Driver {
        fn new() -> Self {
            Driver {
                m: TicketMachine::new("310114"),
                index: 0,
            }
        }
        fn accept_at(&mut self, at: i64) -> Ticket {
            self.index += 1;
            ticket(accept(&mut self.m, self.index, 0, at))
        }
        fn run(
            &mut self,
            id: &str,
            actor: Option<Actor>,
            reason: &str,
            op: Op,
            at: i64,
        ) -> ApplyResult {
            self.index += 1;
            let cmd = Command {
                request_id: 0,
                at_ms: at,
                accept_text: Vec::new(),
                op: Some(command::Op::Ticket(TicketCommand {
                    ticket_id: id.into(),
                    actor,
                    reason: reason.into(),
                    op: Some(op),
                })),
            };
            // What the proposer checks must agree with what apply does.
            let checked = self.m.check(&cmd);
            let r = self.m.apply(self.index, &cmd);
            assert_eq!(
                checked.is_ok(),
                matches!(r, ApplyResult::Ticket(_)),
                "{r:?}"
            );
            r
        }
    }

    fn dispatch(u: &str) -> Op {
        Op::Dispatch(Dispatch {
            lead_unit: u.into(),
            ..Default::default()
        })
    }

    #[test]
    fn ids_are_region_day_sequence() {
        let mut m = TicketMachine::new("310114");
        let t = ticket(accept(&mut m, 5, 0, AT));
        assert_eq!(t.id, "310114-20261127-000001");
        assert_eq!(t.requesters[0].phone_masked, "138****0000");
        let t2 = ticket(accept(&mut m, 6, 0, AT));
        assert_eq!(t2.id, "310114-20261127-000002");
        assert_eq!(t.events.len(), 1);
        assert_eq!(verify_ticket(&t), Ok(1));
        assert_eq!(m.outbox_len(), 2, "an accept notifies the requester");
    }

    #[test]
    fn a_retried_request_returns_the_first_ticket() {
        let mut m = TicketMachine::new("310114");
        let a = ticket(accept(&mut m, 5, 42, AT));
        let b = ticket(accept(&mut m, 6, 42, AT + 1000));
        assert_eq!(a.id, b.id);
        assert_eq!(m.len(), 1);
        // After the window it is a new request.
        let c = ticket(accept(&mut m, 7, 42, AT + REQUEST_DEDUP_WINDOW_MS + 5000));
        assert_ne!(a.id, c.id);
    }

    #[test]
    fn the_main_path_sets_deadlines_and_notifies() {
        let mut d = Driver::new();
        let t = d.accept_at(AT);
        let u = "嘉定区城管局";
        let t = ticket(d.run(&t.id, center(), "", dispatch(u), AT + HOUR));
        assert_eq!(t.status, Status::AwaitingSign as i32);
        // Sign within 1 working day: Friday → end of Monday 2026-11-30.
        assert_eq!(t.sign_due_ms, calendar_midnight(2026, 12, 1));
        // Someone else cannot sign for the unit.
        let r = d.run(
            &t.id,
            unit("别的单位"),
            "",
            Op::Sign(Sign {
                unit: "别的单位".into(),
            }),
            AT + 2 * HOUR,
        );
        assert!(
            matches!(r, ApplyResult::Rejected(CommandError::State { .. })),
            "{r:?}"
        );
        let t = ticket(d.run(
            &t.id,
            unit(u),
            "",
            Op::Sign(Sign { unit: u.into() }),
            AT + 2 * HOUR,
        ));
        assert!(t.signed_in_time);
        // Complaint: 10 working days from the sign day (built-in rules).
        assert!(t.handle_due_ms > t.signed_at_ms + 10 * 86_400_000);
        let due = t.handle_due_ms;
        let t = ticket(d.run(
            &t.id,
            unit(u),
            "需现场勘查",
            Op::Extend(Extend {
                unit: u.into(),
                days: 0,
            }),
            AT + 3 * HOUR,
        ));
        assert!(t.pending_extension.is_some());
        let t = ticket(d.run(
            &t.id,
            center(),
            "",
            Op::DecideExtension(DecideExtension { approve: true }),
            AT + 4 * HOUR,
        ));
        assert!(
            t.handle_due_ms > due,
            "an approved extension moves the deadline later"
        );
        assert_eq!(t.extensions, 1);
        let t = ticket(d.run(
            &t.id,
            unit(u),
            "",
            Op::Reply(Reply {
                unit: u.into(),
                text: "已修复路面".into(),
            }),
            AT + 5 * HOUR,
        ));
        assert!(t.replied_in_time);
        assert_eq!(t.status, Status::AwaitingCallback as i32);
        let t = ticket(d.run(
            &t.id,
            center(),
            "",
            Op::Callback(Callback {
                contacted: true,
                resolution: Resolution::Resolved as i32,
                satisfaction: Satisfaction::Satisfied as i32,
            }),
            AT + 6 * HOUR,
        ));
        assert_eq!(t.status, Status::Closed as i32);
        let t = ticket(d.run(&t.id, center(), "", Op::Archive(Archive {}), AT + 7 * HOUR));
        assert_eq!(t.status, Status::Archived as i32);
        assert_eq!(verify_ticket(&t), Ok(t.events.len() as u32));
        let kinds: Vec<&str> = t.events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "accept",
                "dispatch",
                "sign",
                "extend",
                "decide_extension",
                "reply",
                "callback",
                "archive"
            ]
        );
        // accept, dispatch, reply, callback.
        let QueryAnswer::Outbox(out) = d.m.query(&Query::Outbox { limit: 100 }) else {
            panic!()
        };
        assert_eq!(out.len(), 4);
        assert!(out.iter().all(|n| n.text.contains(&t.id)), "{out:?}");
        assert!(out[2].text.contains("已修复路面"));
    }

    fn calendar_midnight(y: i16, mo: i8, d: i8) -> i64 {
        super::super::calendar::Calendar::cst_midnight_ms(jiff::civil::date(y, mo, d))
    }

    #[test]
    fn illegal_transitions_name_the_state_and_change_nothing() {
        let mut d = Driver::new();
        let t = d.accept_at(AT);
        let before = d.m.snapshot_bytes(1);
        let r = d.run(
            &t.id,
            unit("x"),
            "",
            Op::Reply(Reply {
                unit: "x".into(),
                text: "好".into(),
            }),
            AT + 1,
        );
        let ApplyResult::Rejected(e) = r else {
            panic!()
        };
        assert!(
            matches!(
                e,
                CommandError::State {
                    state: "accepted",
                    command: "reply",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("已受理"), "{e}");
        assert_eq!(d.m.snapshot_bytes(1), before);
        assert_eq!(d.m.take_writes().tickets.len(), 1, "only the accept wrote");
        // Bad fields are InvalidArgument, naming the field.
        let r = d.run(
            &t.id,
            center(),
            "",
            Op::Refer(Refer {
                reason: ReferReason::Emergency as i32,
                target: "999".into(),
            }),
            AT + 2,
        );
        let ApplyResult::Rejected(CommandError::Invalid(f)) = r else {
            panic!("{r:?}")
        };
        assert_eq!(f.field, "reason");
        let r = d.run(
            &t.id,
            center(),
            "火情",
            Op::Refer(Refer {
                reason: ReferReason::Emergency as i32,
                target: "999".into(),
            }),
            AT + 2,
        );
        let ApplyResult::Rejected(CommandError::Invalid(f)) = r else {
            panic!("{r:?}")
        };
        assert_eq!(f.field, "refer.target");
        let r = d.run(
            "310114-20261127-999999",
            center(),
            "",
            Op::Urge(Urge {}),
            AT + 3,
        );
        assert!(matches!(
            r,
            ApplyResult::Rejected(CommandError::NotFound(_))
        ));
        let r = d.run(
            &t.id,
            unit("x"),
            "",
            Op::Answer(Answer {
                text: "答复".into(),
            }),
            AT + 3,
        );
        let ApplyResult::Rejected(CommandError::Invalid(f)) = r else {
            panic!("{r:?}")
        };
        assert_eq!(f.field, "actor.role");
        assert_eq!(d.m.snapshot_bytes(1), before);
    }

    #[test]
    fn return_review_reopen_and_merge() {
        let mut d = Driver::new();
        let t = d.accept_at(AT);
        let a = "甲单位";
        let b = "乙单位";
        let t = ticket(d.run(&t.id, center(), "", dispatch(a), AT + 1));
        let t = ticket(d.run(
            &t.id,
            unit(a),
            "不属于本单位职责",
            Op::Return(Return { unit: a.into() }),
            AT + 2,
        ));
        assert_eq!(t.status, Status::ReturnReview as i32);
        // Redispatching to the returning unit is refused.
        let r = d.run(
            &t.id,
            center(),
            "改派",
            Op::ReviewReturn(ReviewReturn {
                reject: false,
                lead_unit: a.into(),
                assisting_units: vec![],
            }),
            AT + 3,
        );
        assert!(matches!(r, ApplyResult::Rejected(CommandError::Invalid(_))));
        let t = ticket(d.run(
            &t.id,
            center(),
            "退回理由不成立",
            Op::ReviewReturn(ReviewReturn {
                reject: true,
                ..Default::default()
            }),
            AT + 3,
        ));
        assert_eq!(t.status, Status::AwaitingSign as i32);
        assert_eq!(t.lead_unit, a);
        let t = ticket(d.run(
            &t.id,
            unit(a),
            "确非职责",
            Op::Return(Return { unit: a.into() }),
            AT + 4,
        ));
        let t = ticket(d.run(
            &t.id,
            center(),
            "改派乙",
            Op::ReviewReturn(ReviewReturn {
                reject: false,
                lead_unit: b.into(),
                assisting_units: vec![a.into()],
            }),
            AT + 5,
        ));
        assert_eq!((t.lead_unit.as_str(), t.returns), (b, 2));
        let t = ticket(d.run(
            &t.id,
            unit(b),
            "",
            Op::Sign(Sign { unit: b.into() }),
            AT + 6,
        ));
        let t = ticket(d.run(
            &t.id,
            unit(b),
            "",
            Op::Reply(Reply {
                unit: b.into(),
                text: "已处理".into(),
            }),
            AT + 7,
        ));
        let unsat = Op::Callback(Callback {
            contacted: true,
            resolution: Resolution::Unresolved as i32,
            satisfaction: Satisfaction::Unsatisfied as i32,
        });
        let t = ticket(d.run(&t.id, center(), "仍未解决", unsat, AT + 8));
        assert_eq!(t.status, Status::AwaitingCallback as i32);
        let t = ticket(d.run(
            &t.id,
            center(),
            "承办单位未实际处理",
            Op::Reopen(Reopen {}),
            AT + 9,
        ));
        assert_eq!((t.status, t.reopens), (Status::AwaitingSign as i32, 1));

        // Merge: the duplicate's requester joins the master.
        let mut r2 = req();
        r2.phone = "13911112222".into();
        d.index += 1;
        let dup = ticket(d.m.apply(
            d.index,
            &Command {
                request_id: 0,
                at_ms: AT + 10,
                accept_text: Vec::new(),
                op: Some(command::Op::Accept(r2)),
            },
        ));
        let t = ticket(d.run(
            &t.id,
            center(),
            "同一路段",
            Op::Merge(Merge {
                duplicate_id: dup.id.clone(),
            }),
            AT + 11,
        ));
        assert_eq!(t.requesters.len(), 2);
        assert_eq!(t.merged_ids, std::slice::from_ref(&dup.id));
        let dup2 = d.m.ticket(&dup.id).unwrap().clone();
        assert_eq!(
            (dup2.status, dup2.master_id.as_str()),
            (Status::Merged as i32, t.id.as_str())
        );
        assert_eq!(verify_ticket(&dup2), Ok(2));
        // The duplicate's requester follows the master's progress.
        let QueryAnswer::Lookup(Some(l)) = d.m.query(&Query::Lookup {
            id: dup.id.clone(),
            phone_last4: "2222".into(),
        }) else {
            panic!()
        };
        assert_eq!(l.status, Status::AwaitingSign as i32);
        assert!(l.progress.iter().any(|p| p.summary.contains("并入")));
        let QueryAnswer::Lookup(None) = d.m.query(&Query::Lookup {
            id: dup.id.clone(),
            phone_last4: "0001".into(),
        }) else {
            panic!()
        };
        // Master's notifications now reach both requesters.
        let t = ticket(d.run(
            &t.id,
            unit(b),
            "",
            Op::Sign(Sign { unit: b.into() }),
            AT + 12,
        ));
        let before = d.m.outbox_len();
        ticket(d.run(
            &t.id,
            unit(b),
            "",
            Op::Reply(Reply {
                unit: b.into(),
                text: "已处理完毕".into(),
            }),
            AT + 13,
        ));
        assert_eq!(d.m.outbox_len(), before + 2);
    }

    #[test]
    fn answer_refer_close() {
        let mut d = Driver::new();
        let t = d.accept_at(AT);
        let t = ticket(d.run(
            &t.id,
            center(),
            "",
            Op::Answer(Answer {
                text: "办理居住证需携带身份证".into(),
            }),
            AT + 1,
        ));
        assert_eq!(
            (t.status, t.closure),
            (
                Status::Closed as i32,
                hotline_proto::v1::Closure::Answered as i32
            )
        );
        let t = d.accept_at(AT);
        let t = ticket(d.run(
            &t.id,
            center(),
            "来电称家中起火",
            Op::Refer(Refer {
                reason: ReferReason::Emergency as i32,
                target: "119".into(),
            }),
            AT + 1,
        ));
        assert_eq!(t.refer_target, "119");
        let r = d.run(&t.id, center(), "", Op::Urge(Urge {}), AT + 2);
        assert!(matches!(
            r,
            ApplyResult::Rejected(CommandError::State {
                state: "closed",
                ..
            })
        ));
    }

    /// A busy district accepts more tickets in a few months than a list
    /// scans: the ticket overdue longest must still head the overdue list
    /// and the worklist, and be counted, however many came after it.
    #[test]
    fn a_ticket_overdue_for_months_heads_the_lists_however_many_came_after() {
        use hotline_proto::v1::DeadlineState as D;
        let mut d = Driver::new();
        let old = d.accept_at(AT);
        let old = ticket(d.run(&old.id, center(), "", dispatch("u"), AT));
        let after = MAX_SCAN_PER_QUERY as i64 + 10;
        for i in 0..after {
            d.accept_at(AT + 1 + i);
        }
        // One more overdue ticket, recent, and one not yet due.
        let recent = d.accept_at(AT + after + 1);
        let recent = ticket(d.run(&recent.id, center(), "", dispatch("u"), AT + after + 1));
        let now = recent.sign_due_ms + 1;
        let fresh = d.accept_at(now - 1);
        let fresh = ticket(d.run(&fresh.id, center(), "", dispatch("u"), now - 1));
        d.m.assert_open_index();
        let list = |m: &TicketMachine, f: ListTicketsRequest| match m.query(&Query::List {
            filter: f,
            now_ms: now,
        }) {
            QueryAnswer::Tickets {
                tickets, matched, ..
            } => (
                tickets.into_iter().map(|t| t.id).collect::<Vec<_>>(),
                matched,
            ),
            _ => panic!(),
        };
        let (ids, matched) = list(
            &d.m,
            ListTicketsRequest {
                deadline: D::Overdue as i32,
                by_deadline: true,
                limit: 10,
                ..Default::default()
            },
        );
        assert_eq!(ids, [old.id.clone(), recent.id.clone()], "the oldest first");
        assert_eq!(matched, 2);
        let (ids, matched) = list(
            &d.m,
            ListTicketsRequest {
                statuses: vec![
                    Status::AwaitingSign as i32,
                    Status::Handling as i32,
                    Status::ReturnReview as i32,
                ],
                by_deadline: true,
                limit: 2,
                ..Default::default()
            },
        );
        assert_eq!(
            ids,
            [old.id.clone(), recent.id.clone()],
            "nearest deadline first"
        );
        assert_eq!(matched, 3, "the not-yet-due one counted too");
        // An on-time list holds only the one not yet due.
        let (ids, _) = list(
            &d.m,
            ListTicketsRequest {
                deadline: D::OnTime as i32,
                by_deadline: true,
                ..Default::default()
            },
        );
        assert_eq!(ids, [fresh.id]);
    }

    #[test]
    fn deadline_colours_follow_the_clock() {
        use hotline_proto::v1::DeadlineState as D;
        let mut d = Driver::new();
        let t = d.accept_at(AT);
        let t = ticket(d.run(&t.id, center(), "", dispatch("u"), AT));
        let get = |m: &TicketMachine, now| match m.query(&Query::Get {
            id: t.id.clone(),
            now_ms: now,
        }) {
            QueryAnswer::Ticket(Some(t)) => t.deadline_state,
            _ => panic!(),
        };
        assert_eq!(get(&d.m, AT + 1), D::OnTime as i32);
        assert_eq!(get(&d.m, t.sign_due_ms - 1), D::AtRisk as i32);
        assert_eq!(get(&d.m, t.sign_due_ms), D::Overdue as i32);
        let list = |m: &TicketMachine, state: D, now| match m.query(&Query::List {
            filter: ListTicketsRequest {
                deadline: state as i32,
                ..Default::default()
            },
            now_ms: now,
        }) {
            QueryAnswer::Tickets { tickets, .. } => tickets.len(),
            _ => panic!(),
        };
        assert_eq!(list(&d.m, D::Overdue, AT + 1), 0);
        assert_eq!(list(&d.m, D::Overdue, t.sign_due_ms + 1), 1);
        assert_eq!(
            list(&d.m, D::AtRisk, t.sign_due_ms + 1),
            1,
            "at risk includes overdue"
        );
        // Emergency: 2 hours, sign included.
        let mut r = req();
        r.priority = Priority::Emergency as i32;
        d.index += 1;
        let e = ticket(d.m.apply(
            d.index,
            &Command {
                request_id: 0,
                at_ms: AT,
                accept_text: Vec::new(),
                op: Some(command::Op::Accept(r)),
            },
        ));
        let e = ticket(d.run(&e.id, center(), "", dispatch("u"), AT));
        assert_eq!(e.sign_due_ms, AT + 2 * HOUR);
        let e = ticket(d.run(
            &e.id,
            unit("u"),
            "",
            Op::Sign(Sign { unit: "u".into() }),
            AT + HOUR,
        ));
        assert_eq!(e.handle_due_ms, AT + 3 * HOUR);
    }

    #[test]
    fn snapshot_round_trip_is_identical() {
        let mut d = Driver::new();
        for i in 0..10 {
            let t = d.accept_at(AT + i);
            d.run(&t.id, center(), "", dispatch("u"), AT + 100 + i);
        }
        let bytes = d.m.snapshot_bytes(7);
        let back = TicketMachine::restore("310114", StateSnapshot::decode(&bytes[..]).unwrap());
        assert_eq!(back.snapshot_bytes(7), bytes);
        let QueryAnswer::Tickets {
            tickets,
            next_before_id,
            ..
        } = back.query(&Query::List {
            filter: ListTicketsRequest {
                limit: 3,
                ..Default::default()
            },
            now_ms: AT,
        })
        else {
            panic!()
        };
        let idx: Vec<_> = tickets.iter().map(|t| t.raft_index).collect();
        assert_eq!(idx, [19, 17, 15], "newest first");
        assert_eq!(next_before_id, tickets[2].id);
        // A worklist holds the first `limit` by deadline and counts all
        // that matched (the federated overdue query's total).
        let QueryAnswer::Tickets {
            tickets, matched, ..
        } = back.query(&Query::List {
            filter: ListTicketsRequest {
                limit: 3,
                by_deadline: true,
                ..Default::default()
            },
            now_ms: AT,
        })
        else {
            panic!()
        };
        assert_eq!((tickets.len(), matched), (3, 10));
    }

    #[test]
    fn policy_is_replicated_and_versioned() {
        let mut m = TicketMachine::new("310114");
        let p = Policy {
            version: 1,
            categories_toml: "[[class]]\nname = \"测试类\"\n".into(),
            ..Default::default()
        };
        let set = |m: &mut TicketMachine, p: &Policy, i| {
            m.apply(
                i,
                &Command {
                    request_id: 0,
                    at_ms: AT,
                    accept_text: Vec::new(),
                    op: Some(command::Op::SetPolicy(p.clone())),
                },
            )
        };
        match set(&mut m, &p, 1) {
            ApplyResult::Policy(_) => {}
            ApplyResult::Rejected(e) => panic!("{e}"),
            other => panic!("{other:?}"),
        }
        // The old tree no longer applies.
        let r = accept(&mut m, 2, 0, AT);
        let ApplyResult::Rejected(CommandError::Invalid(f)) = r else {
            panic!("{r:?}")
        };
        assert_eq!(f.field, "category");
        // Same version again is refused.
        assert!(matches!(set(&mut m, &p, 3), ApplyResult::Rejected(_)));
        let back = TicketMachine::restore("310114", m.snapshot(1));
        assert_eq!(back.policy.version, 1);
    }

    /// The directory lives in the national group only; a placement there
    /// is written (for the disk) once per change and survives a snapshot.
    #[test]
    fn the_national_group_keeps_the_directory() {
        let place = |m: &mut TicketMachine, learners: Vec<u64>, i| {
            let cmd = Command {
                request_id: 0,
                at_ms: AT,
                accept_text: Vec::new(),
                op: Some(command::Op::Place(hotline_proto::v1::Placement {
                    group_id: 310_114,
                    region: "310114".into(),
                    voters: vec![2, 3, 4],
                    learners,
                })),
            };
            let checked = m.check(&cmd);
            let applied = m.apply(i, &cmd);
            assert_eq!(
                checked.is_ok(),
                !matches!(applied, ApplyResult::Rejected(_))
            );
            applied
        };
        let mut district = TicketMachine::new("310114");
        let r = place(&mut district, vec![], 1);
        let ApplyResult::Rejected(CommandError::Invalid(f)) = r else {
            panic!("{r:?}")
        };
        assert_eq!(f.field, "place");
        assert!(!district.has_writes());

        let mut national = TicketMachine::new("");
        let ApplyResult::Directory(v) = place(&mut national, vec![5], 1) else {
            panic!("placed")
        };
        assert_eq!(v.version, 1);
        assert!(v.groups.is_empty(), "the answer carries the version only");
        assert!(national.has_writes());
        let img = national.take_writes().directory.expect("written");
        assert_eq!(img.version, 1);
        assert_eq!(img.groups.len(), 1);
        // The same report again: no change, nothing to write.
        place(&mut national, vec![5], 2);
        assert!(national.take_writes().directory.is_none());
        let back = TicketMachine::restore(
            "",
            national.snapshot(hotline_federation::directory::NATIONAL),
        );
        assert_eq!(back.placements.image(), *img);
    }

    #[test]
    fn bad_fields_are_named() {
        let check = |f: fn(&mut AcceptRequest), field: &str| {
            let mut r = req();
            f(&mut r);
            let e = TicketMachine::new("310114")
                .validate_accept(&r)
                .unwrap_err();
            assert_eq!(e.field, field, "{e}");
        };
        check(|r| r.region = String::new(), "region");
        check(|r| r.region = "999999".into(), "region");
        check(|r| r.region = "320585".into(), "region");
        check(|r| r.kind = 0, "kind");
        check(|r| r.kind = 99, "kind");
        check(|r| r.category = " ".into(), "category");
        check(|r| r.category = "不存在的分类".into(), "category");
        check(|r| r.text = String::new(), "text");
        check(|r| r.text = "x".repeat(MAX_TEXT_BYTES + 1), "text");
        check(|r| r.phone = "12345".into(), "phone");
        check(|r| r.phone = "1380000000a".into(), "phone");
        check(|r| r.priority = 9, "priority");
        check(
            |r| {
                r.location = Some(hotline_proto::v1::Location {
                    code: "31".into(),
                    ..Default::default()
                })
            },
            "location.code",
        );
        check(
            |r| {
                r.location = Some(hotline_proto::v1::Location {
                    has_coordinates: true,
                    lat: 91.0,
                    ..Default::default()
                })
            },
            "location.lat",
        );
        let mut ok = req();
        ok.phone = "021-69123456".into();
        assert!(validate_accept("310114", &ok).is_ok());
        ok.region = "310114001".into();
        assert!(validate_accept("310114", &ok).is_ok());
    }

    #[test]
    fn masks() {
        assert_eq!(mask_phone("021-69123456"), "021*****3456");
        assert_eq!(mask_name("张三"), "张*");
        assert_eq!(mask_name("欧阳娜娜"), "欧***");
        assert_eq!(mask_name("李"), "李*");
        assert_eq!(mask_name(""), "");
    }

    /// Every command, with arguments drawn from a small set so that random
    /// sequences hit both legal and illegal transitions.
    fn any_op() -> impl Strategy<Value = (u8, Op)> {
        let units = prop::sample::select(vec!["甲", "乙"]);
        let sat = prop::sample::select(vec![
            Satisfaction::Satisfied as i32,
            Satisfaction::Basic as i32,
            Satisfaction::Unsatisfied as i32,
        ]);
        prop_oneof![
            Just((0, Op::Answer(Answer { text: "答".into() }))),
            Just((
                0,
                Op::Refer(Refer {
                    reason: ReferReason::Unclear as i32,
                    target: String::new()
                })
            )),
            units.clone().prop_map(|u| (0, dispatch(u))),
            units
                .clone()
                .prop_map(|u| (1, Op::Sign(Sign { unit: u.into() }))),
            units
                .clone()
                .prop_map(|u| (1, Op::Return(Return { unit: u.into() }))),
            (any::<bool>(), units.clone()).prop_map(|(reject, u)| (
                0,
                Op::ReviewReturn(ReviewReturn {
                    reject,
                    lead_unit: if reject { String::new() } else { u.into() },
                    assisting_units: vec![],
                })
            )),
            (units.clone(), 0u32..3).prop_map(|(u, days)| (
                1,
                Op::Extend(Extend {
                    unit: u.into(),
                    days
                })
            )),
            any::<bool>().prop_map(|approve| (2, Op::DecideExtension(DecideExtension { approve }))),
            units.prop_map(|u| (
                1,
                Op::Reply(Reply {
                    unit: u.into(),
                    text: "办".into()
                })
            )),
            (any::<bool>(), sat).prop_map(|(contacted, satisfaction)| (
                0,
                Op::Callback(Callback {
                    contacted,
                    resolution: Resolution::Partly as i32,
                    satisfaction
                })
            )),
            Just((0, Op::Reopen(Reopen {}))),
            Just((0, Op::Close(Close {}))),
            Just((0, Op::Archive(Archive {}))),
            Just((2, Op::Urge(Urge {}))),
            Just((2, Op::Supervise(Supervise {}))),
            Just((
                0,
                Op::Merge(Merge {
                    duplicate_id: String::new()
                })
            )),
        ]
    }

    /// (from, command) → to: the diagram. Anything else is a bug.
    fn legal(from: Status, op: &str, to: Status) -> bool {
        use Status::*;
        match (from, op) {
            (Accepted, "answer" | "refer") => to == Closed,
            (Accepted | AwaitingSign, "dispatch") => to == AwaitingSign,
            (AwaitingSign, "sign") => to == Handling,
            (AwaitingSign | Handling, "return") => to == ReturnReview,
            (ReturnReview, "review_return") => matches!(to, AwaitingSign | Handling),
            (Handling, "extend" | "decide_extension") => to == Handling,
            (Handling, "reply") => to == AwaitingCallback,
            (AwaitingCallback, "callback") => matches!(to, AwaitingCallback | Closed),
            (AwaitingCallback, "reopen") => to == AwaitingSign,
            (AwaitingCallback, "close") => to == Closed,
            (Closed, "archive") => to == Archived,
            (_, "merge") => to == from,
            // 转办 before dispatch, or from 退单审核 (属地不符); then a stub,
            // on which no lifecycle command acts.
            (Accepted | ReturnReview, "transfer_out") => to == Transferred,
            (_, "urge" | "supervise") => {
                to == from && !matches!(from, Accepted | Closed | Archived | Merged)
            }
            _ => false,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]
        #[test]
        fn random_commands_stay_in_the_diagram(ops in prop::collection::vec((0usize..3, any_op(), 0i64..72, 0u8..24), 1..60)) {
            let mut d = Driver::new();
            let ids: Vec<String> = (0..3).map(|i| d.accept_at(AT + i).id).collect();
            let mut now = AT + 10;
            for (which, (actor_kind, op), advance_h, transfer) in ops {
                now += advance_h * HOUR / 4;
                let id = ids[which].clone();
                if transfer == 0 {
                    // Now and then a transfer to 太仓 instead.
                    let before = d.m.ticket(&id).unwrap().clone();
                    d.index += 1;
                    let r = d.m.apply(d.index, &Command {
                        request_id: 0,
                        at_ms: now,
                        accept_text: Vec::new(),
                        op: Some(command::Op::TransferOut(hotline_proto::v1::TransferOut {
                            ticket_id: id.clone(),
                            destination_group: 320585,
                            destination_region: "320585102".into(),
                            actor: center(),
                            reason: "转办".into(),
                            send_back: false,
                        })),
                    });
                    d.m.assert_open_index();
                    let after = d.m.ticket(&id).unwrap().clone();
                    let from = Status::try_from(before.status).unwrap();
                    let to = Status::try_from(after.status).unwrap();
                    match r {
                        ApplyResult::Ticket(_) => {
                            prop_assert!(legal(from, "transfer_out", to), "{from:?} --transfer_out--> {to:?}");
                            prop_assert_eq!(after.events.len(), before.events.len() + 1);
                        }
                        ApplyResult::Rejected(_) => {
                            prop_assert!(!matches!(from, Status::Accepted | Status::ReturnReview), "{from:?} refused a transfer");
                            prop_assert_eq!(&after, &before, "a refused transfer changed the ticket");
                        }
                        other => prop_assert!(false, "unexpected {other:?}"),
                    }
                    continue;
                }
                let op = match op {
                    Op::Merge(_) => Op::Merge(Merge { duplicate_id: ids[(which + 1) % 3].clone() }),
                    op => op,
                };
                let actor = match (actor_kind, &op) {
                    (1, Op::Sign(s)) => unit(&s.unit),
                    (1, Op::Return(s)) => unit(&s.unit),
                    (1, Op::Extend(s)) => unit(&s.unit),
                    (1, Op::Reply(s)) => unit(&s.unit),
                    (2, _) => Some(Actor { id: "督办".into(), role: Role::Supervisor as i32 }),
                    _ => center(),
                };
                let reason = "理由";
                let before = d.m.ticket(&id).unwrap().clone();
                let name = lifecycle::op_name(&op);
                let r = d.run(&id, actor, reason, op, now);
                d.m.assert_open_index();
                let after = d.m.ticket(&id).unwrap().clone();
                match r {
                    ApplyResult::Ticket(_) => {
                        let from = Status::try_from(before.status).unwrap();
                        let to = Status::try_from(after.status).unwrap();
                        prop_assert!(legal(from, name, to), "{from:?} --{name}--> {to:?}");
                        prop_assert_eq!(after.events.len(), before.events.len() + 1);
                        // A running handling deadline only moves by an approved extension.
                        if from == Status::Handling && to == Status::Handling {
                            prop_assert!(after.handle_due_ms >= before.handle_due_ms);
                            if after.handle_due_ms != before.handle_due_ms {
                                prop_assert_eq!(name, "decide_extension");
                            }
                        }
                    }
                    ApplyResult::Rejected(_) => prop_assert_eq!(&after, &before, "a refused command changed the ticket"),
                    other => prop_assert!(false, "unexpected {other:?}"),
                }
            }
            for t in d.m.tickets() {
                prop_assert_eq!(verify_ticket(t), Ok(t.events.len() as u32));
            }
            let bytes = d.m.snapshot_bytes(1);
            prop_assert_eq!(TicketMachine::restore("310114", StateSnapshot::decode(&bytes[..]).unwrap()).snapshot_bytes(1), bytes);
        }
    }

    /// A custody log as a supervisor reads it: transfers still on their
    /// way first (the longest waiting leading), then finished ones (the
    /// last finished first); the page is bounded and the total counts all.
    /// Sorted oldest first as before, a month of delivered cases pushed
    /// the open ones off the first page.
    #[test]
    fn the_transfers_list_shows_open_cases_first_and_counts_all() {
        use hotline_proto::v1::{TransferEnvelope, TransferState as S};
        let mut m = TicketMachine::new("86");
        let rec =
            |id: &str, state: S, sent_at_ms: i64, updated_at_ms: i64, cross: bool| TransferRecord {
                envelope: Some(TransferEnvelope {
                    transfer_id: id.into(),
                    sent_at_ms,
                    ..Default::default()
                }),
                state: state as i32,
                updated_at_ms,
                cross_province: cross,
                ..Default::default()
            };
        for r in [
            rec("old-delivered", S::Delivered, 1_000, 2_000, true),
            rec("new-delivered", S::Delivered, 9_000, 9_500, true),
            rec("refused", S::Refused, 5_000, 6_000, true),
            rec("forwarded", S::Forwarded, 7_000, 7_100, true),
            rec("pending", S::Pending, 8_000, 8_000, true),
            rec("pending-too", S::Pending, 8_000, 8_000, true),
            rec("within-province", S::Pending, 100, 100, false),
        ] {
            let id = r.envelope.as_ref().unwrap().transfer_id.clone();
            m.transfers.insert(id, Arc::new(r));
        }
        let list = |limit: usize, cross_province_only: bool| {
            let QueryAnswer::TransferList { records, matched } = m.query(&Query::Transfers {
                cross_province_only,
                limit,
            }) else {
                panic!("a transfer list")
            };
            let ids: Vec<String> = records
                .into_iter()
                .map(|r| r.envelope.unwrap().transfer_id)
                .collect();
            (ids, matched)
        };
        let all = [
            "forwarded",
            "pending",
            "pending-too",
            "new-delivered",
            "refused",
            "old-delivered",
        ];
        assert_eq!(list(10, true), (all.map(String::from).to_vec(), 6));
        for limit in 0..=6 {
            assert_eq!(
                list(limit, true),
                (all[..limit].iter().map(|s| s.to_string()).collect(), 6),
                "limit {limit}"
            );
        }
        let (ids, matched) = list(2, false);
        assert_eq!(
            (ids, matched),
            (vec!["within-province".to_string(), "forwarded".into()], 7)
        );
    }
}
