//! The ticket lifecycle (DESIGN.md §3): which command may follow which state,
//! what it changes, which deadline it sets and what the requester is told.
//!
//! ```text
//! accept ─┬─ answer ───────────────────────────────────────────────→ closed
//!         ├─ refer (reason, redirect target) ───────────────────────→ closed
//!         └─ dispatch ─→ awaiting_sign ─sign→ handling ─reply→ awaiting_callback
//!               ↑  │return→ return_review ─┬ redispatch     │extend→ approve/deny
//!               │                          └ reject          │urge / supervise
//!               └──────── reopen ←── callback: unsatisfied ──┘
//!                          callback: satisfied / basic → closed → archived
//! ```
//!
//! `transition` is a pure function of (ticket, command, time, rules): the
//! state machine calls it when applying a committed command, and the node
//! calls it before proposing, so a command that would be refused is refused
//! before it reaches the log. It returns the new ticket; the caller stores it.

use std::sync::{Arc, OnceLock};

use hotline_proto::v1::{
    Actor, Closure, Event, Notification, PendingExtension, PendingReturn, Priority, ReferReason,
    Resolution, Role, Satisfaction, Status, Ticket, TicketCommand, ticket_command::Op,
};

use super::audit::{self, payload};
use super::calendar::Calendar;
use super::categories::CategoryTree;
use super::deadlines::{DeadlineRules, Span};
use super::kpi::KpiWeights;
use super::tickets::{FieldError, bad};

/// Bounds on a ticket's history, so no ticket grows without limit.
pub const MAX_EVENTS_PER_TICKET: usize = 512;
pub const MAX_REQUESTERS_PER_TICKET: usize = 500;
pub const MAX_CALLBACKS_PER_TICKET: usize = 16;
pub const MAX_URGES: u32 = 100;
pub const MAX_SUPERVISION_LEVEL: u32 = 5;
pub const MAX_ASSISTING_UNITS: usize = 16;
pub const MAX_UNIT_CHARS: usize = 64;
pub const MAX_ACTOR_CHARS: usize = 64;
pub const MAX_REASON_BYTES: usize = 2 * 1024;
pub const MAX_REPLY_BYTES: usize = 16 * 1024;
/// Characters of a reply quoted in the requester's notification.
const REPLY_QUOTE_CHARS: usize = 60;

/// The parsed policy every replica applies: calendar, deadline rules,
/// category tree and KPI weights. Built from the replicated `Policy`.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    pub calendar: Calendar,
    pub deadlines: DeadlineRules,
    pub categories: CategoryTree,
    pub weights: KpiWeights,
}

impl Default for Rules {
    fn default() -> Self {
        (*Rules::builtin()).clone()
    }
}

impl Rules {
    /// The built-in rules, parsed once per process and shared: every replica
    /// starts with them, and a node (or the simulator's national topology,
    /// ≈ 10,000 replicas) would otherwise parse the same TOML texts and hold
    /// the same tree once per replica.
    pub fn builtin() -> Arc<Rules> {
        static BUILTIN: OnceLock<Arc<Rules>> = OnceLock::new();
        BUILTIN
            .get_or_init(|| {
                Arc::new(Rules {
                    calendar: Calendar::builtin(),
                    deadlines: DeadlineRules::builtin(),
                    categories: CategoryTree::builtin(),
                    weights: KpiWeights::default(),
                })
            })
            .clone()
    }
}

impl Rules {
    /// Parses a replicated policy. Empty texts and zero weights mean "built in".
    pub fn from_policy(p: &hotline_proto::v1::Policy) -> Result<Rules, FieldError> {
        let mut r = Rules::default();
        for c in &p.calendars {
            let year = Calendar::parse_year(&c.toml)
                .map_err(|e| bad("policy.calendars", format!("year {}: {e}", c.year)))?;
            if i32::from(year.year) != c.year {
                return Err(bad(
                    "policy.calendars",
                    format!("file for {} says year = {}", c.year, year.year),
                ));
            }
            r.calendar.insert_year(year);
        }
        if !p.deadlines_toml.is_empty() {
            r.deadlines = DeadlineRules::parse(&p.deadlines_toml)
                .map_err(|e| bad("policy.deadlines_toml", e))?;
        }
        if !p.categories_toml.is_empty() {
            r.categories = CategoryTree::parse(&p.categories_toml)
                .map_err(|e| bad("policy.categories_toml", e))?;
        }
        if p.basic_weight_permille > 1000 {
            return Err(bad("policy.basic_weight_permille", "must be 0..=1000"));
        }
        if p.basic_weight_permille != 0 {
            r.weights.basic_permille = p.basic_weight_permille;
        }
        let w = [
            p.response_weight_permille,
            p.resolution_weight_permille,
            p.satisfaction_weight_permille,
        ];
        if w.iter().any(|&x| x != 0) {
            if w.iter().sum::<u32>() != 1000 {
                return Err(bad(
                    "policy.response_weight_permille",
                    "the three composite weights must add up to 1000",
                ));
            }
            r.weights.response_permille = w[0];
            r.weights.resolution_permille = w[1];
            r.weights.satisfaction_permille = w[2];
        }
        Ok(r)
    }
}

/// Why a command on a ticket is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// A field of the request is wrong (`InvalidArgument`).
    #[error("{0}")]
    Invalid(FieldError),
    /// The command is not allowed in the ticket's state (`FailedPrecondition`).
    #[error("ticket {ticket} is {state} ({state_zh}): {command} {why}")]
    State {
        ticket: String,
        state: &'static str,
        state_zh: &'static str,
        command: &'static str,
        why: String,
    },
    /// No such ticket (`NotFound`).
    #[error("ticket {0} not found")]
    NotFound(String),
}

impl From<FieldError> for CommandError {
    fn from(e: FieldError) -> Self {
        CommandError::Invalid(e)
    }
}

/// What a command did: the changed ticket(s) and messages for requesters.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub ticket: Ticket,
    /// A merge also changes the duplicate.
    pub other: Option<Ticket>,
    pub notifications: Vec<Notification>,
}

pub fn status_name(s: i32) -> &'static str {
    match Status::try_from(s).unwrap_or(Status::Unspecified) {
        Status::Unspecified => "unspecified",
        Status::Accepted => "accepted",
        Status::AwaitingSign => "awaiting_sign",
        Status::Handling => "handling",
        Status::ReturnReview => "return_review",
        Status::AwaitingCallback => "awaiting_callback",
        Status::Closed => "closed",
        Status::Archived => "archived",
        Status::Merged => "merged",
        Status::Transferred => "transferred",
    }
}

pub fn status_zh(s: i32) -> &'static str {
    match Status::try_from(s).unwrap_or(Status::Unspecified) {
        Status::Unspecified => "未知",
        Status::Accepted => "已受理",
        Status::AwaitingSign => "待签收",
        Status::Handling => "办理中",
        Status::ReturnReview => "退单审核中",
        Status::AwaitingCallback => "待回访",
        Status::Closed => "已办结",
        Status::Archived => "已归档",
        Status::Merged => "已并单",
        Status::Transferred => "已转出",
    }
}

pub fn parse_status(s: &str) -> Option<Status> {
    Some(match s {
        "accepted" => Status::Accepted,
        "awaiting_sign" => Status::AwaitingSign,
        "handling" => Status::Handling,
        "return_review" => Status::ReturnReview,
        "awaiting_callback" => Status::AwaitingCallback,
        "closed" => Status::Closed,
        "archived" => Status::Archived,
        "merged" => Status::Merged,
        "transferred" => Status::Transferred,
        _ => return None,
    })
}

pub fn priority_name(p: i32) -> &'static str {
    match Priority::try_from(p).unwrap_or(Priority::Unspecified) {
        Priority::Urgent => "urgent",
        Priority::Emergency => "emergency",
        Priority::Normal | Priority::Unspecified => "normal",
    }
}

pub fn parse_priority(s: &str) -> Option<Priority> {
    Some(match s {
        "normal" | "一般" => Priority::Normal,
        "urgent" | "紧急" => Priority::Urgent,
        "emergency" | "特急" => Priority::Emergency,
        _ => return None,
    })
}

/// The glossary identifier of a command.
pub fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Answer(_) => "answer",
        Op::Refer(_) => "refer",
        Op::Dispatch(_) => "dispatch",
        Op::Sign(_) => "sign",
        Op::Return(_) => "return",
        Op::ReviewReturn(_) => "review_return",
        Op::Extend(_) => "extend",
        Op::DecideExtension(_) => "decide_extension",
        Op::Reply(_) => "reply",
        Op::Callback(_) => "callback",
        Op::Reopen(_) => "reopen",
        Op::Close(_) => "close",
        Op::Archive(_) => "archive",
        Op::Merge(_) => "merge",
        Op::Urge(_) => "urge",
        Op::Supervise(_) => "supervise",
    }
}

/// The states each command is allowed in: the diagram, as a table.
pub fn allowed_from(op: &Op) -> &'static [Status] {
    use Status::*;
    match op {
        Op::Answer(_) | Op::Refer(_) => &[Accepted],
        Op::Dispatch(_) => &[Accepted, AwaitingSign],
        Op::Sign(_) => &[AwaitingSign],
        Op::Return(_) => &[AwaitingSign, Handling],
        Op::ReviewReturn(_) => &[ReturnReview],
        Op::Extend(_) | Op::DecideExtension(_) | Op::Reply(_) => &[Handling],
        Op::Callback(_) | Op::Reopen(_) | Op::Close(_) => &[AwaitingCallback],
        Op::Archive(_) => &[Closed],
        Op::Merge(_) => &[Accepted, AwaitingSign, Handling, ReturnReview],
        Op::Urge(_) | Op::Supervise(_) => &[AwaitingSign, Handling, ReturnReview, AwaitingCallback],
    }
}

/// Roles that may issue each command.
fn allowed_roles(op: &Op) -> &'static [Role] {
    use Role::*;
    match op {
        Op::Sign(_) | Op::Return(_) | Op::Extend(_) | Op::Reply(_) => &[Unit],
        Op::Urge(_) | Op::Supervise(_) | Op::DecideExtension(_) => &[Supervisor, CallTaker],
        _ => &[CallTaker, Supervisor],
    }
}

fn role_name(r: i32) -> &'static str {
    match Role::try_from(r).unwrap_or(Role::Unspecified) {
        Role::Unspecified => "unspecified",
        Role::CallTaker => "call_taker",
        Role::Unit => "unit",
        Role::Supervisor => "supervisor",
        Role::Requester => "requester",
        Role::System => "system",
    }
}

pub fn parse_role(s: &str) -> Option<Role> {
    Some(match s {
        "call_taker" | "话务员" => Role::CallTaker,
        "unit" | "承办单位" => Role::Unit,
        "supervisor" | "督办员" => Role::Supervisor,
        "requester" | "诉求人" => Role::Requester,
        "system" => Role::System,
        _ => return None,
    })
}

fn check_name(field: &'static str, s: &str, max_chars: usize) -> Result<(), FieldError> {
    if s.trim().is_empty() {
        return Err(bad(field, "is required"));
    }
    if s.chars().count() > max_chars {
        return Err(bad(field, format!("longer than {max_chars} characters")));
    }
    if s.chars().any(char::is_control) {
        return Err(bad(field, "contains control characters"));
    }
    Ok(())
}

pub(super) fn check_text(field: &'static str, s: &str, max_bytes: usize) -> Result<(), FieldError> {
    if s.trim().is_empty() {
        return Err(bad(field, "is required"));
    }
    if s.len() > max_bytes {
        return Err(bad(
            field,
            format!("{} bytes is over the limit of {max_bytes}", s.len()),
        ));
    }
    Ok(())
}

/// Validates the actor of any command.
pub fn check_actor(actor: Option<&Actor>, roles: &[Role]) -> Result<(), FieldError> {
    let Some(a) = actor else {
        return Err(bad("actor", "is required (id and role)"));
    };
    check_name("actor.id", &a.id, MAX_ACTOR_CHARS)?;
    let role = Role::try_from(a.role).unwrap_or(Role::Unspecified);
    if !roles.contains(&role) {
        let names: Vec<&str> = roles.iter().map(|r| role_name(*r as i32)).collect();
        return Err(bad(
            "actor.role",
            format!(
                "{} may not do this; allowed: {}",
                role_name(a.role),
                names.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Checks the fields of a command that do not depend on the ticket.
pub fn validate_command(cmd: &TicketCommand, rules: &Rules) -> Result<(), FieldError> {
    check_name("ticket_id", &cmd.ticket_id, 64)?;
    let Some(op) = &cmd.op else {
        return Err(bad("op", "command has no operation"));
    };
    check_actor(cmd.actor.as_ref(), allowed_roles(op))?;
    if cmd.reason.len() > MAX_REASON_BYTES {
        return Err(bad(
            "reason",
            format!("over the limit of {MAX_REASON_BYTES} bytes"),
        ));
    }
    let need_reason = || check_text("reason", &cmd.reason, MAX_REASON_BYTES);
    match op {
        Op::Answer(a) => check_text("answer.text", &a.text, MAX_REPLY_BYTES)?,
        Op::Refer(r) => {
            need_reason()?;
            let reason = ReferReason::try_from(r.reason).unwrap_or(ReferReason::Unspecified);
            match reason {
                ReferReason::Unspecified => {
                    return Err(bad(
                        "refer.reason",
                        "is required: emergency, legal_channel, secret, not_government or unclear",
                    ));
                }
                ReferReason::Emergency => {
                    if !["110", "119", "120", "122"].contains(&r.target.as_str()) {
                        return Err(bad(
                            "refer.target",
                            "an emergency is referred to 110, 119, 120 or 122",
                        ));
                    }
                }
                ReferReason::LegalChannel | ReferReason::NotGovernment => {
                    check_name("refer.target", &r.target, 128)?;
                }
                ReferReason::Secret | ReferReason::Unclear => {
                    if r.target.chars().count() > 128 {
                        return Err(bad("refer.target", "longer than 128 characters"));
                    }
                }
            }
        }
        Op::Dispatch(d) => {
            check_units(&d.lead_unit, &d.assisting_units, "dispatch")?;
            if !d.category.is_empty() {
                rules
                    .categories
                    .validate(&d.category)
                    .map_err(|e| bad("dispatch.category", e))?;
            }
        }
        Op::Sign(s) => check_unit_actor("sign.unit", &s.unit, cmd)?,
        Op::Return(r) => {
            check_unit_actor("return.unit", &r.unit, cmd)?;
            need_reason()?;
        }
        Op::ReviewReturn(r) => {
            need_reason()?;
            if r.reject {
                if !r.lead_unit.is_empty() || !r.assisting_units.is_empty() {
                    return Err(bad(
                        "review_return.lead_unit",
                        "a rejected return keeps its unit; leave lead_unit empty",
                    ));
                }
            } else {
                check_units(&r.lead_unit, &r.assisting_units, "review_return")?;
            }
        }
        Op::Extend(e) => {
            check_unit_actor("extend.unit", &e.unit, cmd)?;
            need_reason()?;
            let max = rules.deadlines.extension_days;
            if e.days > max {
                return Err(bad(
                    "extend.days",
                    format!("{} working days is more than the allowed {max}", e.days),
                ));
            }
        }
        Op::DecideExtension(d) => {
            if !d.approve {
                need_reason()?;
            }
        }
        Op::Reply(r) => {
            check_unit_actor("reply.unit", &r.unit, cmd)?;
            check_text("reply.text", &r.text, MAX_REPLY_BYTES)?;
        }
        Op::Callback(c) => {
            if Resolution::try_from(c.resolution).unwrap_or(Resolution::Unspecified)
                == Resolution::Unspecified
            {
                return Err(bad(
                    "callback.resolution",
                    "is required: resolved, partly or unresolved",
                ));
            }
            if Satisfaction::try_from(c.satisfaction).unwrap_or(Satisfaction::Unspecified)
                == Satisfaction::Unspecified
            {
                return Err(bad(
                    "callback.satisfaction",
                    "is required: satisfied, basic or unsatisfied",
                ));
            }
        }
        Op::Reopen(_) | Op::Close(_) => need_reason()?,
        Op::Merge(m) => {
            check_name("merge.duplicate_id", &m.duplicate_id, 64)?;
            if m.duplicate_id == cmd.ticket_id {
                return Err(bad(
                    "merge.duplicate_id",
                    "a ticket cannot be merged into itself",
                ));
            }
        }
        Op::Archive(_) | Op::Urge(_) | Op::Supervise(_) => {}
    }
    Ok(())
}

fn check_units(lead: &str, assisting: &[String], cmd: &'static str) -> Result<(), FieldError> {
    let (lead_field, assist_field) = match cmd {
        "dispatch" => ("dispatch.lead_unit", "dispatch.assisting_units"),
        _ => ("review_return.lead_unit", "review_return.assisting_units"),
    };
    check_name(lead_field, lead, MAX_UNIT_CHARS)?;
    if assisting.len() > MAX_ASSISTING_UNITS {
        return Err(bad(
            assist_field,
            format!("more than {MAX_ASSISTING_UNITS} units"),
        ));
    }
    for (i, u) in assisting.iter().enumerate() {
        check_name(assist_field, u, MAX_UNIT_CHARS)?;
        if u == lead {
            return Err(bad(assist_field, format!("{u} is already the lead unit")));
        }
        if assisting[..i].contains(u) {
            return Err(bad(assist_field, format!("{u} is listed twice")));
        }
    }
    Ok(())
}

/// A unit command names the unit; the actor must be that unit.
fn check_unit_actor(
    field: &'static str,
    unit: &str,
    cmd: &TicketCommand,
) -> Result<(), FieldError> {
    check_name(field, unit, MAX_UNIT_CHARS)?;
    let actor = cmd.actor.as_ref().map(|a| a.id.as_str()).unwrap_or("");
    if actor != unit {
        return Err(bad(
            "actor.id",
            format!("{actor} cannot act for unit {unit}"),
        ));
    }
    Ok(())
}

pub(super) fn state_error(
    t: &Ticket,
    command: &'static str,
    why: impl Into<String>,
) -> CommandError {
    CommandError::State {
        ticket: t.id.clone(),
        state: status_name(t.status),
        state_zh: status_zh(t.status),
        command,
        why: why.into(),
    }
}

/// The deadline in force and where `now_ms` stands against it.
pub fn deadline_view(t: &Ticket, warn_permille: u32, now_ms: i64) -> (i32, i64) {
    use hotline_proto::v1::DeadlineState as D;
    let Some((start, due, warn)) = clock(t) else {
        return (D::None as i32, 0);
    };
    if due == 0 {
        return (D::None as i32, 0);
    }
    let warn = if warn != 0 {
        warn
    } else {
        start + (due - start) * i64::from(warn_permille) / 1000
    };
    let state = if now_ms >= due {
        D::Overdue
    } else if now_ms >= warn {
        D::AtRisk
    } else {
        D::OnTime
    };
    (state as i32, due)
}

/// The clock of the ticket's current stage, if that stage has one: when it
/// started, when it is due (0: no deadline set) and when it warns (0: at
/// the rules' share of the way).
fn clock(t: &Ticket) -> Option<(i64, i64, i64)> {
    match Status::try_from(t.status).unwrap_or(Status::Unspecified) {
        Status::AwaitingSign => Some((t.dispatched_at_ms, t.sign_due_ms, 0)),
        Status::Handling => Some((t.signed_at_ms, t.handle_due_ms, t.handle_warn_ms)),
        Status::AwaitingCallback => Some((t.replied_at_ms, t.callback_due_ms, 0)),
        _ => None,
    }
}

/// Where a ticket stands in worklists, if any holds it: the
/// [`worklist_order`](super::tickets::worklist_order) of its view (a
/// running deadline first, the nearest first; then the rest in accept
/// order), for every ticket not closed, archived, merged or transferred
/// away. Depends on the ticket alone, never on the time of asking.
pub fn work_key(t: &Ticket) -> Option<(bool, i64, u64)> {
    is_open(t.status).then(|| {
        let due = clock(t).map_or(0, |(_, due, _)| due);
        (due == 0, due, t.raft_index)
    })
}

/// Can a ticket in `status` be on a worklist: not closed, archived, merged
/// or transferred away (and a status at all)?
pub fn is_open(status: i32) -> bool {
    !matches!(
        Status::try_from(status).unwrap_or(Status::Unspecified),
        Status::Closed
            | Status::Archived
            | Status::Merged
            | Status::Transferred
            | Status::Unspecified
    )
}

/// Applies `cmd` to `t` at `at_ms`. Pure: returns the new ticket or why not.
/// `duplicate` is the ticket named by a merge, looked up by the caller.
pub fn transition(
    t: &Ticket,
    cmd: &TicketCommand,
    at_ms: i64,
    index: u64,
    rules: &Rules,
    duplicate: Option<&Ticket>,
) -> Result<Outcome, CommandError> {
    validate_command(cmd, rules)?;
    let op = cmd.op.as_ref().expect("validated");
    let name = op_name(op);
    let status = Status::try_from(t.status).unwrap_or(Status::Unspecified);
    if !allowed_from(op).contains(&status) {
        let allowed: Vec<&str> = allowed_from(op)
            .iter()
            .map(|s| status_name(*s as i32))
            .collect();
        return Err(state_error(
            t,
            name,
            format!("is allowed only when {}", allowed.join(" or ")),
        ));
    }
    if t.events.len() >= MAX_EVENTS_PER_TICKET {
        return Err(state_error(
            t,
            name,
            format!("refused: the ticket has reached {MAX_EVENTS_PER_TICKET} events"),
        ));
    }
    let d = &rules.deadlines;
    let cal = &rules.calendar;
    let mut n = t.clone();
    let mut other = None;
    let mut notes: Vec<(String, &'static str)> = Vec::new(); // (text, kind)
    let payload: String;
    match op {
        Op::Answer(a) => {
            n.status = Status::Closed as i32;
            n.closure = Closure::Answered as i32;
            n.answer_text = a.text.clone();
            n.closed_at_ms = at_ms;
            payload = payload!({ "text_sha256": sha_hex(&a.text) });
        }
        Op::Refer(r) => {
            n.status = Status::Closed as i32;
            n.closure = Closure::Referred as i32;
            n.refer_reason = r.reason;
            n.refer_target = r.target.clone();
            n.closed_at_ms = at_ms;
            payload = payload!({ "refer_reason": r.reason, "target": r.target });
        }
        Op::Dispatch(x) => {
            if !x.category.is_empty() {
                n.category = x.category.clone();
            }
            dispatch_to(&mut n, &x.lead_unit, &x.assisting_units, at_ms, rules);
            notes.push((
                format!(
                    "【12345热线】您的工单{}已转交{}办理，我们将跟踪督办，请留意后续答复。",
                    n.id, x.lead_unit
                ),
                "dispatch",
            ));
            payload = payload!({
                "lead_unit": x.lead_unit,
                "assisting_units": x.assisting_units,
                "category": n.category,
                "sign_due_ms": n.sign_due_ms,
                "redispatch": status == Status::AwaitingSign,
            });
        }
        Op::Sign(s) => {
            must_be_lead(t, &s.unit, name)?;
            n.status = Status::Handling as i32;
            n.signed_at_ms = at_ms;
            n.signed_in_time = at_ms < t.sign_due_ms;
            let span = d.handling_span(
                super::tickets::kind_name(t.kind),
                &t.category,
                priority_name(t.priority),
            );
            n.handle_due_ms = DeadlineRules::due_ms(cal, span, at_ms);
            n.handle_warn_ms = d.warn_ms(at_ms, n.handle_due_ms);
            payload = payload!({
                "unit": s.unit,
                "in_time": n.signed_in_time,
                "handle_due_ms": n.handle_due_ms,
            });
        }
        Op::Return(r) => {
            must_be_lead(t, &r.unit, name)?;
            n.status = Status::ReturnReview as i32;
            n.returns += 1;
            n.pending_return = Some(PendingReturn {
                unit: r.unit.clone(),
                reason: cmd.reason.clone(),
                from_status: t.status,
                returned_at_ms: at_ms,
            });
            payload = payload!({ "unit": r.unit });
        }
        Op::ReviewReturn(r) => {
            let pending = t.pending_return.clone().unwrap_or_default();
            n.pending_return = None;
            if r.reject {
                // Back to the unit, in the state it returned from, with its
                // deadlines unchanged: a rejected return buys no time.
                n.status = pending.from_status;
                payload = payload!({ "reject": true, "unit": pending.unit });
            } else {
                if r.lead_unit == pending.unit {
                    return Err(CommandError::Invalid(bad(
                        "review_return.lead_unit",
                        format!(
                            "{} returned this ticket; redispatch to another unit",
                            pending.unit
                        ),
                    )));
                }
                dispatch_to(&mut n, &r.lead_unit, &r.assisting_units, at_ms, rules);
                notes.push((
                    format!(
                        "【12345热线】您的工单{}已改派{}办理，请留意后续答复。",
                        n.id, r.lead_unit
                    ),
                    "dispatch",
                ));
                payload = payload!({
                    "reject": false,
                    "returned_by": pending.unit,
                    "lead_unit": r.lead_unit,
                    "assisting_units": r.assisting_units,
                    "sign_due_ms": n.sign_due_ms,
                });
            }
        }
        Op::Extend(e) => {
            must_be_lead(t, &e.unit, name)?;
            if t.pending_extension.is_some() {
                return Err(state_error(
                    t,
                    name,
                    "refused: an extension request is already pending",
                ));
            }
            if t.extensions >= d.max_extensions {
                return Err(state_error(
                    t,
                    name,
                    format!(
                        "refused: {} extension(s) already approved, the limit is {}",
                        t.extensions, d.max_extensions
                    ),
                ));
            }
            let days = if e.days == 0 {
                d.extension_days
            } else {
                e.days
            };
            n.pending_extension = Some(PendingExtension {
                days,
                reason: cmd.reason.clone(),
                requested_at_ms: at_ms,
            });
            payload = payload!({ "unit": e.unit, "days": days });
        }
        Op::DecideExtension(x) => {
            let Some(p) = &t.pending_extension else {
                return Err(state_error(
                    t,
                    name,
                    "refused: no extension request is pending",
                ));
            };
            n.pending_extension = None;
            if x.approve {
                n.extensions += 1;
                // Counted from the current deadline's day: an extension only
                // ever moves the deadline later.
                n.handle_due_ms = cal.add_working_days(t.handle_due_ms - 1, p.days);
                n.handle_warn_ms = d.warn_ms(t.signed_at_ms, n.handle_due_ms);
                assert!(
                    n.handle_due_ms > t.handle_due_ms,
                    "an extension moved a deadline back"
                );
            }
            payload = payload!({
                "approve": x.approve,
                "days": p.days,
                "handle_due_ms": n.handle_due_ms,
            });
        }
        Op::Reply(r) => {
            must_be_lead(t, &r.unit, name)?;
            n.status = Status::AwaitingCallback as i32;
            n.reply_text = r.text.clone();
            n.replied_at_ms = at_ms;
            n.replied_in_time = at_ms < t.handle_due_ms;
            n.pending_extension = None;
            n.callback_due_ms = DeadlineRules::due_ms(cal, d.callback, at_ms);
            let quote: String = r.text.chars().take(REPLY_QUOTE_CHARS).collect();
            let ellipsis = if r.text.chars().count() > REPLY_QUOTE_CHARS {
                "…"
            } else {
                ""
            };
            notes.push((
                format!(
                    "【12345热线】您的工单{}已由{}答复：{quote}{ellipsis}。我们将对您进行回访，请留意来电。",
                    n.id, r.unit
                ),
                "reply",
            ));
            payload = payload!({
                "unit": r.unit,
                "in_time": n.replied_in_time,
                "text_sha256": sha_hex(&r.text),
                "callback_due_ms": n.callback_due_ms,
            });
        }
        Op::Callback(c) => {
            if t.callbacks.len() >= MAX_CALLBACKS_PER_TICKET {
                return Err(state_error(
                    t,
                    name,
                    format!(
                        "refused: {MAX_CALLBACKS_PER_TICKET} callbacks already recorded; close the ticket"
                    ),
                ));
            }
            let in_time = at_ms < t.callback_due_ms;
            n.callbacks.push(hotline_proto::v1::CallbackResult {
                at_ms,
                contacted: c.contacted,
                resolution: c.resolution,
                satisfaction: c.satisfaction,
                note: cmd.reason.clone(),
                in_time,
            });
            let sat = Satisfaction::try_from(c.satisfaction).unwrap_or(Satisfaction::Unspecified);
            let text = if sat == Satisfaction::Unsatisfied {
                format!(
                    "【12345热线】感谢您对工单{}的评价。您的意见已记录，我们将核实后重新办理或向您说明情况。",
                    n.id
                )
            } else {
                n.status = Status::Closed as i32;
                n.closure = Closure::Resolved as i32;
                n.closed_at_ms = at_ms;
                format!("【12345热线】感谢您对工单{}的评价，该工单已办结。", n.id)
            };
            notes.push((text, "callback"));
            payload = payload!({
                "contacted": c.contacted,
                "resolution": c.resolution,
                "satisfaction": c.satisfaction,
                "in_time": in_time,
            });
        }
        Op::Reopen(_) => {
            let last = t.callbacks.last().map(|c| c.satisfaction);
            if last != Some(Satisfaction::Unsatisfied as i32) {
                return Err(state_error(
                    t,
                    name,
                    "is allowed only after an unsatisfied callback",
                ));
            }
            // Back to the same lead unit, which signs again: 重办.
            n.reopens += 1;
            let lead = t.lead_unit.clone();
            let assisting = t.assisting_units.clone();
            dispatch_to(&mut n, &lead, &assisting, at_ms, rules);
            payload = payload!({ "lead_unit": lead, "sign_due_ms": n.sign_due_ms });
        }
        Op::Close(_) => {
            n.status = Status::Closed as i32;
            n.closure = Closure::Closed as i32;
            n.closed_at_ms = at_ms;
            payload = payload!({});
        }
        Op::Archive(_) => {
            n.status = Status::Archived as i32;
            n.archived_at_ms = at_ms;
            payload = payload!({});
        }
        Op::Merge(m) => {
            let Some(dup) = duplicate else {
                return Err(CommandError::NotFound(m.duplicate_id.clone()));
            };
            let dup_status = Status::try_from(dup.status).unwrap_or(Status::Unspecified);
            if !allowed_from(op).contains(&dup_status) {
                return Err(state_error(
                    dup,
                    "merge",
                    "refused: only an open ticket can be merged as a duplicate",
                ));
            }
            if dup.events.len() >= MAX_EVENTS_PER_TICKET {
                return Err(state_error(
                    dup,
                    "merge",
                    "refused: the duplicate has reached its event limit",
                ));
            }
            if n.requesters.len() + dup.requesters.len() > MAX_REQUESTERS_PER_TICKET {
                return Err(state_error(
                    t,
                    name,
                    format!("refused: more than {MAX_REQUESTERS_PER_TICKET} requesters"),
                ));
            }
            // Every requester is kept, each remembering the ticket they called about.
            n.requesters.extend(dup.requesters.iter().cloned());
            n.merged_ids.push(dup.id.clone());
            let mut d2 = dup.clone();
            d2.status = Status::Merged as i32;
            d2.closure = Closure::Merged as i32;
            d2.master_id = t.id.clone();
            d2.closed_at_ms = at_ms;
            let ev = Event {
                kind: "merged_into".into(),
                actor: cmd.actor.clone(),
                at_ms,
                reason: cmd.reason.clone(),
                payload: payload!({ "master_id": t.id }),
                raft_index: index,
                ..Default::default()
            };
            audit::append(&mut d2.events, ev);
            other = Some(d2);
            payload = payload!({ "duplicate_id": dup.id, "requesters": n.requesters.len() });
        }
        Op::Urge(_) => {
            if t.urges >= MAX_URGES {
                return Err(state_error(
                    t,
                    name,
                    format!("refused: already urged {MAX_URGES} times"),
                ));
            }
            n.urges += 1;
            payload = payload!({ "urges": n.urges });
        }
        Op::Supervise(_) => {
            if t.supervision_level >= MAX_SUPERVISION_LEVEL {
                return Err(state_error(
                    t,
                    name,
                    "refused: already at the highest supervision level",
                ));
            }
            n.supervision_level += 1;
            payload = payload!({ "level": n.supervision_level });
        }
    }
    let ev = Event {
        kind: name.into(),
        actor: cmd.actor.clone(),
        at_ms,
        reason: cmd.reason.clone(),
        payload,
        raft_index: index,
        ..Default::default()
    };
    let seq = audit::append(&mut n.events, ev);
    let notifications = notes
        .into_iter()
        .flat_map(|(text, _)| notify_all(&n, seq, &text, at_ms))
        .collect();
    Ok(Outcome {
        ticket: n,
        other,
        notifications,
    })
}

fn must_be_lead(t: &Ticket, unit: &str, command: &'static str) -> Result<(), CommandError> {
    if t.lead_unit != unit {
        return Err(state_error(
            t,
            command,
            format!("refused: {unit} is not the lead unit ({})", t.lead_unit),
        ));
    }
    Ok(())
}

/// Sends the ticket to a lead unit: a fresh sign deadline, the handling
/// clock stopped until the unit signs.
fn dispatch_to(n: &mut Ticket, lead: &str, assisting: &[String], at_ms: i64, rules: &Rules) {
    let d = &rules.deadlines;
    let cal = &rules.calendar;
    n.status = Status::AwaitingSign as i32;
    n.lead_unit = lead.to_string();
    n.assisting_units = assisting.to_vec();
    if n.first_dispatched_at_ms == 0 {
        n.first_dispatched_at_ms = at_ms;
    }
    n.dispatched_at_ms = at_ms;
    let mut sign_due = DeadlineRules::due_ms(cal, d.sign, at_ms);
    // An hours-bound ticket (emergency, utilities) cannot wait a working day
    // to be signed: signing is due within its whole handling span.
    let span = d.handling_span(
        super::tickets::kind_name(n.kind),
        &n.category,
        priority_name(n.priority),
    );
    if let Span::Hours(_) = span {
        sign_due = sign_due.min(DeadlineRules::due_ms(cal, span, at_ms));
    }
    n.sign_due_ms = sign_due;
    n.signed_at_ms = 0;
    n.handle_due_ms = 0;
    n.handle_warn_ms = 0;
}

/// One notification per requester (a merged ticket tells everyone).
pub fn notify_all(t: &Ticket, seq: u32, text: &str, at_ms: i64) -> Vec<Notification> {
    t.requesters
        .iter()
        .enumerate()
        .map(|(i, r)| Notification {
            id: format!("{}#{seq}#{i}", t.id),
            ticket_id: t.id.clone(),
            phone: r.phone.clone(),
            text: text.to_string(),
            created_at_ms: at_ms,
        })
        .collect()
}

pub fn sha_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// What a requester may see of an event: progress, nothing private.
pub fn public_summary(e: &Event) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(&e.payload).unwrap_or_default();
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    Some(match e.kind.as_str() {
        "accept" => "您的诉求已受理".into(),
        "answer" => "已直接答复，工单办结".into(),
        "refer" => format!("已告知办理途径：{}", s("target")),
        "dispatch" => format!("已派发至{}办理", s("lead_unit")),
        "sign" => "承办单位已签收，正在办理".into(),
        "return" => "承办单位申请退回，热线正在审核".into(),
        "review_return" => {
            if v.get("reject").and_then(|x| x.as_bool()) == Some(true) {
                "退回未通过，原承办单位继续办理".into()
            } else {
                format!("已改派至{}办理", s("lead_unit"))
            }
        }
        "extend" => "承办单位申请延期".into(),
        "decide_extension" => {
            if v.get("approve").and_then(|x| x.as_bool()) == Some(true) {
                "延期申请已批准".into()
            } else {
                "延期申请未批准".into()
            }
        }
        "reply" => "承办单位已答复".into(),
        "callback" => "已回访".into(),
        "reopen" => "已重新办理".into(),
        "close" | "archive" => "工单已办结".into(),
        "merge" => "同类诉求已合并办理".into(),
        "merged_into" => format!("已并入工单{}统一办理", s("master_id")),
        "transfer_out" if v.get("send_back").and_then(|x| x.as_bool()) == Some(true) => {
            "经核实不属本地区，已退回首接中心".into()
        }
        "transfer_out" => "问题发生地不在本地区，已转当地热线办理".into(),
        "transfer_in" => "当地热线已接收，正在办理".into(),
        "transfer_delivered" => "当地热线已确认接收".into(),
        "transfer_refused" => "当地热线退回，首接中心重新处理".into(),
        "urge" => "已催办".into(),
        "supervise" => "已督办".into(),
        _ => return None,
    })
}
