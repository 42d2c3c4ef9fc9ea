//! `hotline ticket …`, `hotline report` and `hotline policy …`: one
//! subcommand per lifecycle command, named after the glossary identifier.
//!
//! Each builds a `TicketCommand` and sends it; the node validates it against
//! the ticket's state and answers `InvalidArgument`, `FailedPrecondition` or
//! `NotFound` with the field or state that is wrong.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use hotline_federation::{Directory, regions};
use hotline_node::client::Client;
use hotline_node::config::ClientConfig;
use hotline_node::core::audit;
use hotline_node::core::lifecycle::{
    parse_priority, parse_role, parse_status, priority_name, status_name, status_zh,
};
use hotline_node::core::tickets::{kind_name, parse_kind};
use hotline_proto::v1::{
    AcceptRequest, Actor, Answer, Archive, CalendarText, Callback, Channel, Close, DeadlineState,
    DecideExtension, Dispatch, Event, Extend, ListTicketsRequest, Location, Merge, Policy,
    ReadLabel, Refer, ReferReason, Reopen, Reply, ReportRequest, Resolution, Return, ReviewReturn,
    Role, Satisfaction, Sign, Status, Supervise, Ticket, TicketCommand, TransferTicketRequest,
    Urge, ticket_command::Op,
};
use serde_json::{Value, json};

use crate::labels::{both, event_zh, kind_zh, priority_zh, role_zh};

#[derive(Args, Clone)]
pub struct ClientArgs {
    #[arg(long)]
    pub config: PathBuf,
    #[arg(long)]
    pub json: bool,
    /// How long the command keeps trying, in seconds, while a group elects
    /// a leader or its nodes do not answer; then it fails and says which
    /// node it waited for. (`group` and `fault` commands keep their own
    /// waits per node.)
    #[arg(long = "timeout", value_name = "SECONDS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout_s: u64,
}

/// The client's arguments for a command on one ticket by its id.
#[derive(Args, Clone)]
pub struct TicketArgs {
    #[command(flatten)]
    pub c: ClientArgs,
    /// The center holding the ticket now (its region code), to act while
    /// the ticket's first-contact center cannot be reached
    ///
    /// A center that received the ticket by transfer names itself. Without
    /// it, the ticket is found from its id: asked at its first-contact
    /// center, whose stub names where it went.
    #[arg(long, value_name = "REGION")]
    pub at: Option<String>,
}

/// Field access as for the other commands (`c.config`, `c.json`).
impl std::ops::Deref for TicketArgs {
    type Target = ClientArgs;
    fn deref(&self) -> &ClientArgs {
        &self.c
    }
}

impl TicketArgs {
    /// The group named by `--at`, if given.
    fn at_group(&self, cl: &Client) -> Result<Option<u64>> {
        let Some(region) = &self.at else {
            return Ok(None);
        };
        match cl.group_of_region(region) {
            Some(g) => Ok(Some(g)),
            None => bail!(
                "--at: no group owns region {region:?} in the topology of {}",
                self.c.config.display()
            ),
        }
    }

    /// The group that holds ticket `id` now (`Client::owner_of`). When
    /// its first-contact center cannot be reached, says how to go on.
    async fn owner_of(&self, cl: &Client, id: &str) -> Result<u64> {
        let at = self.at_group(cl)?;
        cl.owner_of(id, at).await.map_err(|s| self.explain(s))
    }

    /// The group to read ticket `id` in as it is there (`get`, `verify`):
    /// `--at`'s, else the id's (a stub, after a transfer).
    fn read_group(&self, cl: &Client) -> Result<u64> {
        Ok(self.at_group(cl)?.unwrap_or(0))
    }

    /// An error of a read in `read_group`, in `owner_of`'s words.
    fn read_error(&self, cl: &Client, id: &str, s: tonic::Status) -> anyhow::Error {
        use tonic::Code;
        match &self.at {
            None if hotline_node::client::unreachable(&s) => {
                self.explain(hotline_node::client::first_contact_unreachable_status(
                    id,
                    cl.group_of_ticket(id).unwrap_or(0),
                    &s,
                ))
            }
            Some(region) if s.code() == Code::NotFound => {
                anyhow!("NotFound: ticket {id} is not held at {region} (--at)")
            }
            _ => status_err(s),
        }
    }

    /// Adds how to go on to an error saying the ticket's first-contact
    /// center cannot be reached.
    fn explain(&self, s: tonic::Status) -> anyhow::Error {
        if self.at.is_none() && hotline_node::client::first_contact_unreachable(&s) {
            anyhow!(
                "{}; a center the ticket was transferred to acts on it with --at ITS_REGION",
                status_err(s)
            )
        } else {
            status_err(s)
        }
    }
}

/// Who is acting. Unit commands act as the unit they name.
#[derive(Args, Clone)]
pub struct ActorArgs {
    /// Actor id (call-taker or supervisor id).
    #[arg(long = "as", default_value = "cli")]
    pub actor: String,
    /// call_taker | supervisor (unit commands always act as the unit).
    #[arg(long)]
    pub role: Option<String>,
    /// Why: recorded in the ticket's audit chain.
    #[arg(long, default_value = "")]
    pub reason: String,
}

#[derive(Subcommand)]
pub enum TicketCmd {
    /// 受理: register a request; prints the new ticket's id.
    Accept {
        #[command(flatten)]
        c: ClientArgs,
        /// The accepting center's region (6-digit district or 9-digit street code).
        #[arg(long)]
        region: String,
        /// consult | help | complaint | report | suggestion | praise (or 咨询 求助 投诉 举报 建议 表扬)
        #[arg(long)]
        kind: String,
        /// Category path, e.g. 城乡建设/市政道路.
        #[arg(long)]
        category: String,
        #[arg(long)]
        text: String,
        #[arg(long)]
        phone: String,
        /// Requester's name (stored once, shown masked).
        #[arg(long, default_value = "")]
        name: String,
        /// The place the request is about: a division code down to the street.
        #[arg(long, default_value = "")]
        location: String,
        #[arg(long, default_value = "")]
        address: String,
        #[arg(long, allow_hyphen_values = true)]
        lat: Option<f64>,
        #[arg(long, allow_hyphen_values = true)]
        lng: Option<f64>,
        /// normal | urgent | emergency
        #[arg(long, default_value = "normal")]
        priority: String,
        /// phone | web | app | wechat | sms | email | sign_language_video | foreign_language | walk_in | open311
        #[arg(long, default_value = "phone")]
        channel: String,
        /// Call-taker id (first-contact owner).
        #[arg(long = "as", default_value = "cli")]
        actor: String,
    },
    /// 直接答复: close at intake with an answer.
    Answer {
        #[command(flatten)]
        c: TicketArgs,
        id: String,
        #[arg(long)]
        text: String,
        #[command(flatten)]
        a: ActorArgs,
    },
    /// 不予受理/转办: refer (emergency → 110/119/120/122, legal_channel, secret, not_government, unclear).
    Refer {
        #[command(flatten)]
        c: TicketArgs,
        id: String,
        /// emergency | legal_channel | secret | not_government | unclear
        #[arg(long = "refer-reason")]
        refer_reason: String,
        /// Redirect target: 110, 119, 120, 122, or the competent channel.
        #[arg(long, default_value = "")]
        target: String,
        #[command(flatten)]
        a: ActorArgs,
    },
    /// 转办: send an accepted ticket (also one a destination refused and sent
    /// back, or one a unit returned as not its place: 退单审核) to the
    /// region where the problem is; this center keeps a stub that shows the
    /// new owner's progress.
    Transfer {
        #[command(flatten)]
        c: TicketArgs,
        id: String,
        /// The place the request is about: a district or street code.
        #[arg(long)]
        location: String,
        #[command(flatten)]
        a: ActorArgs,
    },
    /// 退回首接: this center received the ticket by transfer and finds it
    /// (before dispatch, or on a unit's return) is not its region; it goes
    /// back, with the reason (required), to the
    /// center it came from, which reviews it and transfers it on or handles
    /// it. Acts where the ticket is now (the id's center's stub points here).
    SendBack {
        #[command(flatten)]
        c: TicketArgs,
        id: String,
        #[command(flatten)]
        a: ActorArgs,
    },
    /// 派单: send to a lead unit (and assisting units).
    Dispatch {
        #[command(flatten)]
        c: TicketArgs,
        id: String,
        #[arg(long)]
        unit: String,
        #[arg(long = "assist")]
        assisting: Vec<String>,
        /// Reclassify while dispatching.
        #[arg(long, default_value = "")]
        category: String,
        #[command(flatten)]
        a: ActorArgs,
    },
    /// 签收: the lead unit signs for the ticket.
    Sign {
        #[command(flatten)]
        c: TicketArgs,
        id: String,
        #[arg(long)]
        unit: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// 退单: the lead unit returns the ticket (with --reason).
    Return {
        #[command(flatten)]
        c: TicketArgs,
        id: String,
        #[arg(long)]
        unit: String,
        #[arg(long)]
        reason: String,
    },
    /// 退单审核: redispatch to another unit, or reject the return.
    Review {
        #[command(flatten)]
        c: TicketArgs,
        id: String,
        /// Redispatch to this unit.
        #[arg(long, conflicts_with = "reject")]
        redispatch: Option<String>,
        #[arg(long = "assist")]
        assisting: Vec<String>,
        /// Reject the return: the unit keeps the ticket.
        #[arg(long)]
        reject: bool,
        #[command(flatten)]
        a: ActorArgs,
    },
    /// 延期申请: the lead unit asks for more working days.
    Extend {
        #[command(flatten)]
        c: TicketArgs,
        id: String,
        #[arg(long)]
        unit: String,
        /// Working days (0 = the policy's default).
        #[arg(long, default_value_t = 0)]
        days: u32,
        #[arg(long)]
        reason: String,
    },
    /// 延期审批: approve or deny a pending extension.
    DecideExtension {
        #[command(flatten)]
        c: TicketArgs,
        id: String,
        #[arg(long, conflicts_with = "deny")]
        approve: bool,
        #[arg(long)]
        deny: bool,
        #[command(flatten)]
        a: ActorArgs,
    },
    /// 办结反馈: the lead unit replies with the result.
    Reply {
        #[command(flatten)]
        c: TicketArgs,
        id: String,
        #[arg(long)]
        unit: String,
        #[arg(long)]
        text: String,
    },
    /// 回访: record the requester's answers.
    Callback {
        #[command(flatten)]
        c: TicketArgs,
        id: String,
        /// Did the unit contact you? yes | no
        #[arg(long)]
        contacted: String,
        /// yes | partly | no
        #[arg(long)]
        resolved: String,
        /// satisfied | basic | unsatisfied (or 满意 基本满意 不满意)
        #[arg(long)]
        satisfaction: String,
        #[command(flatten)]
        a: ActorArgs,
    },
    /// 重办: send back for handling after an attributable unsatisfied callback.
    Reopen {
        #[command(flatten)]
        c: TicketArgs,
        id: String,
        #[command(flatten)]
        a: ActorArgs,
    },
    /// 结案: close after callback (with --reason).
    Close {
        #[command(flatten)]
        c: TicketArgs,
        id: String,
        #[command(flatten)]
        a: ActorArgs,
    },
    /// 归档.
    Archive {
        #[command(flatten)]
        c: TicketArgs,
        id: String,
        #[command(flatten)]
        a: ActorArgs,
    },
    /// 并单: merge a duplicate into this master ticket, keeping every requester.
    Merge {
        #[command(flatten)]
        c: TicketArgs,
        /// The master ticket.
        id: String,
        #[arg(long)]
        duplicate: String,
        #[command(flatten)]
        a: ActorArgs,
    },
    /// 催办.
    Urge {
        #[command(flatten)]
        c: TicketArgs,
        id: String,
        #[command(flatten)]
        a: ActorArgs,
    },
    /// 督办.
    Supervise {
        #[command(flatten)]
        c: TicketArgs,
        id: String,
        #[command(flatten)]
        a: ActorArgs,
    },
    /// Show one ticket with its events.
    Get {
        #[command(flatten)]
        c: TicketArgs,
        id: String,
        /// Read node NODE's own replica (a street office's learner, say)
        /// without the leader: answers while cut off, possibly behind, and
        /// says how far (applied index, time since it heard the leader).
        #[arg(long, value_name = "NODE")]
        local: Option<u64>,
    },
    /// Tickets, newest first, with filters.
    List {
        #[command(flatten)]
        c: ClientArgs,
        #[command(flatten)]
        f: ListArgs,
        /// Read node NODE's own replica without the leader (see `get --local`).
        #[arg(long, value_name = "NODE")]
        local: Option<u64>,
    },
    /// A unit's worklist: its open tickets, nearest deadline first.
    Worklist {
        #[command(flatten)]
        c: ClientArgs,
        #[arg(long)]
        unit: String,
        /// The region whose group to ask, as in `ticket list` (required
        /// when the client config serves several groups).
        #[arg(long)]
        region: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// A supervisor's list: overdue (red) tickets, or --at-risk for yellow and red.
    Overdue {
        #[command(flatten)]
        c: ClientArgs,
        /// The region whose group to ask, as in `ticket list` (required
        /// when the client config serves several groups).
        #[arg(long)]
        region: Option<String>,
        #[arg(long)]
        at_risk: bool,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// 诉求人查询: progress by ticket number and the last 4 digits of the phone.
    Lookup {
        #[command(flatten)]
        c: ClientArgs,
        id: String,
        #[arg(long = "phone-last4")]
        phone_last4: String,
    },
    /// Recompute the ticket's audit chain and say where it breaks.
    Verify {
        #[command(flatten)]
        c: TicketArgs,
        id: String,
    },
    /// Follow a ticket's events as they happen (Ctrl-C stops).
    Watch {
        #[command(flatten)]
        c: TicketArgs,
        id: String,
    },
    /// Notifications waiting for delivery (phones masked).
    Outbox {
        #[command(flatten)]
        c: ClientArgs,
        /// The region whose group's outbox to read, as in `ticket list`
        /// (required when the client config serves several groups).
        #[arg(long)]
        region: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Args, Clone)]
pub struct ListArgs {
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Continue after this id (from the previous page's `next`).
    #[arg(long, default_value = "")]
    before: String,
    /// Prefix of the accepting region or of the location code; its group
    /// answers (required when the client config serves several groups).
    #[arg(long, default_value = "")]
    region: String,
    #[arg(long, default_value = "")]
    unit: String,
    /// Comma-separated: accepted, awaiting_sign, handling, return_review, awaiting_callback, closed, archived, merged.
    #[arg(long, default_value = "")]
    status: String,
    #[arg(long, default_value = "")]
    kind: String,
    /// Prefix of the category path.
    #[arg(long, default_value = "")]
    category: String,
    #[arg(long, default_value = "")]
    priority: String,
    /// on_time | at_risk (yellow or red) | overdue (red)
    #[arg(long, default_value = "")]
    deadline: String,
    /// Accepted at or after (2026-10-01 or 2026-10-01T08:00, CST).
    #[arg(long)]
    from: Option<String>,
    /// Accepted before.
    #[arg(long)]
    to: Option<String>,
    /// Nearest deadline first.
    #[arg(long)]
    by_deadline: bool,
}

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// The policy in force (version, loaded calendar years).
    Show {
        #[command(flatten)]
        c: ClientArgs,
        /// The region whose group to ask; without it, in a federation,
        /// every group's policy, one line each.
        #[arg(long)]
        region: Option<String>,
    },
    /// Replicate new policy texts: calendar years (e.g. 2027.toml), deadline
    /// rules, category tree. Every replica applies them at the same log index.
    Load {
        #[command(flatten)]
        c: ClientArgs,
        /// One region's group; default: every group of the topology.
        #[arg(long)]
        region: Option<String>,
        /// Calendar year files (TOML, see node/data/calendar/).
        #[arg(long = "calendar")]
        calendars: Vec<PathBuf>,
        #[arg(long)]
        deadlines: Option<PathBuf>,
        #[arg(long)]
        categories: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        basic_weight_permille: u32,
    },
}

/// A client for the command's `--config`: the command's requests, all
/// together, end within `--timeout` seconds from now.
pub fn client(c: &ClientArgs) -> Result<Client> {
    client_within(c, std::time::Duration::from_secs(c.timeout_s))
}

/// A client whose requests all end within `time` from now.
pub fn client_within(c: &ClientArgs, time: std::time::Duration) -> Result<Client> {
    let cl = Client::new(&ClientConfig::load(&c.config)?, 1).map_err(|e| anyhow!(e))?;
    Ok(cl
        .with_retry_budget(time)
        .with_deadline(std::time::Instant::now() + time))
}

pub fn status_err(s: tonic::Status) -> anyhow::Error {
    anyhow!("{:?}: {}", s.code(), s.message())
}

fn actor(a: &ActorArgs, default: Role) -> Result<Option<Actor>> {
    let role = match &a.role {
        Some(r) => {
            parse_role(r).ok_or_else(|| anyhow!("--role: {r:?} is not call_taker or supervisor"))?
        }
        None => default,
    };
    Ok(Some(Actor {
        id: a.actor.clone(),
        role: role as i32,
    }))
}

fn unit_actor(unit: &str) -> Option<Actor> {
    Some(Actor {
        id: unit.to_string(),
        role: Role::Unit as i32,
    })
}

fn cmd(id: String, actor: Option<Actor>, reason: String, op: Op) -> TicketCommand {
    TicketCommand {
        ticket_id: id,
        actor,
        reason,
        op: Some(op),
    }
}

fn yes_no(flag: &str, s: &str) -> Result<bool> {
    match s {
        "yes" | "y" | "true" | "是" => Ok(true),
        "no" | "n" | "false" | "否" => Ok(false),
        _ => bail!("{flag}: {s:?} is not yes or no"),
    }
}

fn parse_channel(s: &str) -> Result<Channel> {
    Channel::from_str_name(&format!("CHANNEL_{}", s.to_uppercase()))
        .filter(|c| *c != Channel::Unspecified)
        .ok_or_else(|| anyhow!("--channel: {s:?} is not a channel (phone, web, app, wechat, sms, email, sign_language_video, foreign_language, walk_in, open311)"))
}

/// A CST date or date-time → Unix ms.
fn parse_cst(flag: &str, s: &str) -> Result<i64> {
    let dt: jiff::civil::DateTime = match s.parse::<jiff::civil::DateTime>() {
        Ok(dt) => dt,
        Err(_) => s
            .parse::<jiff::civil::Date>()
            .with_context(|| {
                format!("{flag}: {s:?} is not a date like 2026-10-01 or 2026-10-01T08:00")
            })?
            .to_datetime(jiff::civil::Time::midnight()),
    };
    let z = dt
        .to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(8)))
        .with_context(|| format!("{flag}: {s:?}"))?;
    Ok(z.timestamp().as_millisecond())
}

pub fn cst(ms: i64) -> String {
    if ms == 0 {
        return "-".into();
    }
    jiff::Timestamp::from_millisecond(ms)
        .map(|ts| {
            ts.to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(8)))
                .strftime("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_default()
}

fn deadline_name(d: i32) -> &'static str {
    match DeadlineState::try_from(d).unwrap_or(DeadlineState::Unspecified) {
        DeadlineState::OnTime => "on_time",
        DeadlineState::AtRisk => "at_risk",
        DeadlineState::Overdue => "overdue",
        _ => "none",
    }
}

fn deadline_zh(d: i32) -> &'static str {
    match DeadlineState::try_from(d).unwrap_or(DeadlineState::Unspecified) {
        DeadlineState::OnTime => "正常",
        DeadlineState::AtRisk => "黄灯预警",
        DeadlineState::Overdue => "红灯超期",
        _ => "-",
    }
}

/// A deadline mark in a list: "黄灯预警 at_risk", "-" without a deadline.
fn deadline_cell(d: i32) -> String {
    match deadline_name(d) {
        "none" => "-".into(),
        name => both(deadline_zh(d), name),
    }
}

fn event_json(e: &Event) -> Value {
    json!({
        "seq": e.seq, "kind": e.kind,
        "actor": e.actor.as_ref().map(|a| &a.id), "role": e.actor.as_ref().map(|a| a.role),
        "at_ms": e.at_ms, "reason": e.reason,
        "payload": serde_json::from_str::<Value>(&e.payload).unwrap_or(Value::Null),
        "hash": hex_encode(&e.hash), "prev_hash": hex_encode(&e.prev_hash),
    })
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn ticket_json(t: &Ticket) -> Value {
    let loc = t.location.clone().unwrap_or_default();
    json!({
        "id": t.id, "region": t.region, "kind": kind_name(t.kind), "category": t.category,
        "text": t.text, "status": status_name(t.status), "priority": priority_name(t.priority),
        "channel": Channel::try_from(t.channel).map(|c| c.as_str_name().trim_start_matches("CHANNEL_").to_lowercase()).unwrap_or_default(),
        "location": { "code": loc.code, "address": loc.address, "lat": loc.has_coordinates.then_some(loc.lat), "lng": loc.has_coordinates.then_some(loc.lng) },
        "requesters": t.requesters.iter().map(|r| json!({ "phone": r.phone_masked, "name": r.name_masked, "ticket_id": r.ticket_id })).collect::<Vec<_>>(),
        "phone": t.requesters.first().map(|r| r.phone_masked.clone()),
        "call_taker": t.call_taker.as_ref().map(|a| &a.id),
        "lead_unit": t.lead_unit, "assisting_units": t.assisting_units,
        "origin_group": t.origin_group, "owner_group": t.owner_group,
        "closure": t.closure, "refer_target": t.refer_target, "answer_text": t.answer_text, "reply_text": t.reply_text,
        "accepted_at_ms": t.accepted_at_ms, "first_dispatched_at_ms": t.first_dispatched_at_ms,
        "dispatched_at_ms": t.dispatched_at_ms, "signed_at_ms": t.signed_at_ms, "replied_at_ms": t.replied_at_ms,
        "closed_at_ms": t.closed_at_ms, "archived_at_ms": t.archived_at_ms,
        "sign_due_ms": t.sign_due_ms, "handle_due_ms": t.handle_due_ms, "handle_warn_ms": t.handle_warn_ms,
        "callback_due_ms": t.callback_due_ms, "signed_in_time": t.signed_in_time, "replied_in_time": t.replied_in_time,
        "deadline": deadline_name(t.deadline_state), "deadline_ms": t.deadline_ms,
        "extensions": t.extensions, "pending_extension": t.pending_extension.as_ref().map(|p| json!({"days": p.days, "reason": p.reason})),
        "pending_return": t.pending_return.as_ref().map(|p| json!({"unit": p.unit, "reason": p.reason})),
        "returns": t.returns, "reopens": t.reopens, "urges": t.urges, "supervision_level": t.supervision_level,
        "callbacks": t.callbacks.iter().map(|c| json!({"at_ms": c.at_ms, "contacted": c.contacted, "resolution": c.resolution, "satisfaction": c.satisfaction, "in_time": c.in_time})).collect::<Vec<_>>(),
        "master_id": t.master_id, "merged_ids": t.merged_ids,
        "raft_index": t.raft_index,
        "events": t.events.iter().map(event_json).collect::<Vec<_>>(),
    })
}

fn print_ticket(t: &Ticket) {
    let loc = t.location.clone().unwrap_or_default();
    let phones: Vec<&str> = t
        .requesters
        .iter()
        .map(|r| r.phone_masked.as_str())
        .collect();
    println!("工单编号 id:          {}", t.id);
    println!(
        "状态 status:          {} {}",
        status_zh(t.status),
        status_name(t.status)
    );
    println!("受理中心 region:      {}", regions().label(&t.region));
    if t.status == Status::Transferred as i32 && t.owner_group != 0 {
        // A stub: where this center sent the ticket (it may have moved on
        // since; `--at` acts where it is).
        let to = hotline_federation::topology::group_region(t.owner_group);
        println!(
            "转至 transferred to:  {}",
            hotline_federation::regions().label(&to)
        );
    }
    let kind = kind_name(t.kind);
    println!("诉求类型 kind:        {}", both(kind_zh(kind), kind));
    println!("分类 category:        {}", t.category);
    let priority = priority_name(t.priority);
    println!(
        "紧急程度 priority:    {}",
        both(priority_zh(priority), priority)
    );
    // The place by name too: "320585102 浏河镇", as the requester said it.
    let place = if loc.code.is_empty() {
        String::new()
    } else {
        regions().label(&loc.code)
    };
    println!(
        "问题地点 location:    {}",
        [place, loc.address.clone()]
            .iter()
            .filter(|p| !p.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("诉求人 requesters:    {}", phones.join(", "));
    println!("受理时间 accepted:    {}", cst(t.accepted_at_ms));
    if !t.lead_unit.is_empty() {
        println!(
            "承办单位 lead unit:   {} {}",
            t.lead_unit,
            if t.assisting_units.is_empty() {
                String::new()
            } else {
                format!("(协办 {})", t.assisting_units.join("、"))
            }
        );
        println!("派单时间 dispatched:  {}", cst(t.dispatched_at_ms));
        println!("签收期限 sign due:    {}", cst(t.sign_due_ms));
        println!("办理期限 handle due:  {}", cst(t.handle_due_ms));
    }
    println!(
        "时限状态 deadline:    {} {}",
        deadline_zh(t.deadline_state),
        cst(t.deadline_ms)
    );
    println!("内容 text:            {}", t.text);
    if !t.reply_text.is_empty() {
        println!("答复 reply:           {}", t.reply_text);
    }
    if !t.master_id.is_empty() {
        println!("并入 merged into:     {}", t.master_id);
    }
    println!("事件 events:");
    for e in &t.events {
        println!("  {}", event_line(e));
    }
}

/// One event of a ticket's history: number, time, what ("派单 dispatch"),
/// who, why.
fn event_line(e: &Event) -> String {
    let line = format!(
        "{:>3} {}  {} {} {}",
        e.seq,
        cst(e.at_ms),
        crate::report::pad(&both(event_zh(&e.kind), &e.kind), 26),
        crate::report::pad(e.actor.as_ref().map(|a| a.id.as_str()).unwrap_or(""), 14),
        e.reason
    );
    // No padding left at the end of a line without a reason.
    line.trim_end().to_string()
}

fn print_list(ts: &[Ticket]) {
    use crate::report::pad;
    // Chinese for the supervisors, with the identifiers `--status`,
    // `--kind` and `--deadline` take. Padded by display width (CJK counts
    // two columns).
    println!(
        "{} {} {} {} {} {} {} 期限 DUE",
        pad("工单编号 ID", 24),
        pad("状态 STATUS", 24),
        pad("类型 KIND", 15),
        pad("分类 CATEGORY", 18),
        pad("承办单位 UNIT", 16),
        pad("转办 TRANSFER", 14),
        pad("时限 DEADLINE", 16),
    );
    for t in ts {
        let (status, kind) = (status_name(t.status), kind_name(t.kind));
        println!(
            "{} {} {} {} {} {} {} {}",
            pad(&t.id, 24),
            pad(&both(status_zh(t.status), status), 24),
            pad(&both(kind_zh(kind), kind), 15),
            pad(&t.category, 18),
            pad(&t.lead_unit, 16),
            pad(&transfer_cell(t), 14),
            pad(&deadline_cell(t.deadline_state), 16),
            cst(t.deadline_ms)
        );
    }
}

/// Where a listed ticket went or came from: a stub's destination (转至),
/// or the center a ticket came from by transfer (转自): a center's
/// operators see at a glance what another center sent them.
fn transfer_cell(t: &Ticket) -> String {
    use hotline_federation::group_name;
    if t.status == Status::Transferred as i32 && t.owner_group != 0 {
        format!("转至 {}", group_name(t.owner_group))
    } else if t.origin_group != 0 {
        format!("转自 {}", group_name(t.origin_group))
    } else {
        "-".into()
    }
}

fn list_request(f: ListArgs) -> Result<ListTicketsRequest> {
    let mut statuses = Vec::new();
    for s in f.status.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        statuses.push(
            parse_status(s).ok_or_else(|| anyhow!("--status: {s:?} is not a status"))? as i32,
        );
    }
    let kind = if f.kind.is_empty() {
        0
    } else {
        parse_kind(&f.kind).ok_or_else(|| anyhow!("--kind: {:?} is not a kind", f.kind))? as i32
    };
    let priority = if f.priority.is_empty() {
        0
    } else {
        parse_priority(&f.priority).ok_or_else(|| {
            anyhow!(
                "--priority: {:?} is not normal, urgent or emergency",
                f.priority
            )
        })? as i32
    };
    let deadline = match f.deadline.as_str() {
        "" => 0,
        "on_time" => DeadlineState::OnTime as i32,
        "at_risk" => DeadlineState::AtRisk as i32,
        "overdue" => DeadlineState::Overdue as i32,
        d => bail!("--deadline: {d:?} is not on_time, at_risk or overdue"),
    };
    let accepted_from_ms = f
        .from
        .as_deref()
        .map(|s| parse_cst("--from", s))
        .transpose()?
        .unwrap_or(0);
    let accepted_to_ms =
        f.to.as_deref()
            .map(|s| parse_cst("--to", s))
            .transpose()?
            .unwrap_or(0);
    if accepted_to_ms != 0 && accepted_to_ms <= accepted_from_ms {
        bail!(
            "--to: {} is not after --from ({})",
            f.to.as_deref().unwrap_or_default(),
            cst(accepted_from_ms)
        );
    }
    Ok(ListTicketsRequest {
        limit: f.limit,
        before_id: f.before,
        region: f.region,
        unit: f.unit,
        statuses,
        kind,
        category: f.category,
        priority,
        deadline,
        accepted_from_ms,
        accepted_to_ms,
        by_deadline: f.by_deadline,
        group_id: 0,
        consistency: 0,
    })
}

/// What a local read was served from, for `--json`.
fn label_json(l: &ReadLabel) -> Value {
    json!({
        "node": l.node_id, "group": l.group_id, "role": l.role,
        "applied_index": l.applied_index, "commit_index": l.commit_index,
        "leader": l.leader_id, "term": l.term, "since_leader_ms": l.since_leader_ms,
        "hibernating": l.hibernating, "stale_possible": true,
    })
}

/// The label of a local read, for people: it may be behind, by how much.
fn print_label(l: &ReadLabel) {
    let leader = if l.leader_id == 0 {
        "未知".to_string()
    } else {
        format!("节点 {}", l.leader_id)
    };
    let heard = if l.hibernating {
        "组休眠中（休眠前已与 leader 追平）".to_string()
    } else {
        format!("上次收到其消息在 {} ms 前", l.since_leader_ms)
    };
    println!(
        "本地读取（可能滞后）：节点 {} {}，组 {}，已应用至 {}；leader {}，{}",
        l.node_id,
        both(role_zh(&l.role), &l.role),
        regions().label(&hotline_federation::topology::group_region(l.group_id)),
        l.applied_index,
        leader,
        heard
    );
}

async fn show_list(c: &ClientArgs, mut req: ListTicketsRequest, local: Option<u64>) -> Result<()> {
    let cl = client(c)?;
    // The group that owns the region answers for it.
    let region = (!req.region.is_empty()).then_some(req.region.as_str());
    req.group_id = ticket_group(&cl, &c.config, region)?;
    let r = match local {
        Some(node) => cl.list_local(node, req).await,
        None => cl.list(req).await,
    }
    .map_err(status_err)?;
    if c.json {
        let mut v = json!({ "tickets": r.tickets.iter().map(ticket_json).collect::<Vec<_>>(), "next": r.next_before_id });
        if let Some(l) = &r.label {
            v["label"] = label_json(l);
        }
        println!("{v}");
    } else {
        if let Some(l) = &r.label {
            print_label(l);
        }
        print_list(&r.tickets);
        if !r.next_before_id.is_empty() {
            println!("(more: --before {})", r.next_before_id);
        }
    }
    Ok(())
}

/// 转办 or 退回首接, at the group that holds the ticket now.
async fn transfer_where_it_is(c: &TicketArgs, mut req: TransferTicketRequest) -> Result<Ticket> {
    let cl = client(c)?;
    req.group_id = c.owner_of(&cl, &req.ticket_id).await?;
    cl.transfer(req).await.map_err(status_err)
}

async fn send(c: &TicketArgs, command: TicketCommand) -> Result<()> {
    // Acts where the ticket is now: after a transfer, at the destination.
    let cl = client(c)?;
    let group = c.owner_of(&cl, &command.ticket_id).await?;
    let t = cl.execute_in(group, command, 0).await.map_err(status_err)?;
    if c.json {
        println!("{}", ticket_json(&t));
    } else {
        let last = t.events.last().map(|e| e.kind.as_str()).unwrap_or("");
        println!(
            "{} {} → {} {}",
            t.id,
            both(event_zh(last), last),
            status_zh(t.status),
            status_name(t.status)
        );
    }
    Ok(())
}

pub async fn run(command: TicketCmd) -> Result<()> {
    use Role::{CallTaker, Supervisor};
    match command {
        TicketCmd::Accept {
            c,
            region,
            kind,
            category,
            text,
            phone,
            name,
            location,
            address,
            lat,
            lng,
            priority,
            channel,
            actor,
        } => {
            let kind = parse_kind(&kind).ok_or_else(|| {
                anyhow!("--kind: {kind:?} is not one of consult, help, complaint, report, suggestion, praise")
            })?;
            let priority = parse_priority(&priority).ok_or_else(|| {
                anyhow!("--priority: {priority:?} is not normal, urgent or emergency")
            })?;
            if lat.is_some() != lng.is_some() {
                bail!("--lat and --lng go together");
            }
            let has_location = !location.is_empty() || !address.is_empty() || lat.is_some();
            let t = client(&c)?
                .accept(AcceptRequest {
                    region,
                    kind: kind as i32,
                    category,
                    text,
                    phone,
                    channel: parse_channel(&channel)? as i32,
                    request_id: 0,
                    priority: priority as i32,
                    location: has_location.then(|| Location {
                        code: location,
                        address,
                        has_coordinates: lat.is_some(),
                        lat: lat.unwrap_or(0.0),
                        lng: lng.unwrap_or(0.0),
                    }),
                    name,
                    actor: Some(Actor {
                        id: actor,
                        role: CallTaker as i32,
                    }),
                    transfer_to_group: 0,
                })
                .await
                .map_err(status_err)?;
            if let Some(e) = t.events.last().filter(|e| e.kind == "transfer_not_started") {
                // On stderr: stdout stays the id alone, for scripts.
                eprintln!("注意：未能转出，工单留在本中心办理（{}）", e.reason);
            }
            if c.json {
                println!("{}", ticket_json(&t));
            } else {
                println!("{}", t.id);
            }
        }
        TicketCmd::Answer { c, id, text, a } => {
            let op = Op::Answer(Answer { text });
            send(&c, cmd(id, actor(&a, CallTaker)?, a.reason, op)).await?;
        }
        TicketCmd::Transfer { c, id, location, a } => {
            let t = transfer_where_it_is(
                &c,
                TransferTicketRequest {
                    ticket_id: id,
                    location,
                    actor: actor(&a, CallTaker)?,
                    reason: a.reason,
                    ..Default::default()
                },
            )
            .await?;
            if c.json {
                println!("{}", ticket_json(&t));
            } else {
                println!(
                    "{} {} → {} {} ({})",
                    t.id,
                    both(event_zh("transfer_out"), "transfer_out"),
                    status_zh(t.status),
                    status_name(t.status),
                    regions().label(&hotline_federation::topology::group_region(t.owner_group))
                );
            }
        }
        TicketCmd::SendBack { c, id, a } => {
            if a.reason.trim().is_empty() {
                bail!("--reason: is required: say why the ticket is not this region's (退回原因)");
            }
            let t = transfer_where_it_is(
                &c,
                TransferTicketRequest {
                    ticket_id: id,
                    actor: actor(&a, CallTaker)?,
                    reason: a.reason,
                    send_back: true,
                    ..Default::default()
                },
            )
            .await?;
            if c.json {
                println!("{}", ticket_json(&t));
            } else {
                let to = hotline_federation::topology::group_region(t.owner_group);
                println!(
                    "{} 退回首接 → {}",
                    t.id,
                    hotline_federation::regions().label(&to)
                );
            }
        }
        TicketCmd::Refer {
            c,
            id,
            refer_reason,
            target,
            a,
        } => {
            let reason = ReferReason::from_str_name(&format!(
                "REFER_REASON_{}",
                refer_reason.to_uppercase()
            ))
            .filter(|r| *r != ReferReason::Unspecified)
            .ok_or_else(|| {
                anyhow!("--refer-reason: {refer_reason:?} is not emergency, legal_channel, secret, not_government or unclear")
            })?;
            let op = Op::Refer(Refer {
                reason: reason as i32,
                target,
            });
            send(&c, cmd(id, actor(&a, CallTaker)?, a.reason, op)).await?;
        }
        TicketCmd::Dispatch {
            c,
            id,
            unit,
            assisting,
            category,
            a,
        } => {
            let op = Op::Dispatch(Dispatch {
                lead_unit: unit,
                assisting_units: assisting,
                category,
            });
            send(&c, cmd(id, actor(&a, CallTaker)?, a.reason, op)).await?;
        }
        TicketCmd::Sign {
            c,
            id,
            unit,
            reason,
        } => {
            let who = unit_actor(&unit);
            send(&c, cmd(id, who, reason, Op::Sign(Sign { unit }))).await?;
        }
        TicketCmd::Return {
            c,
            id,
            unit,
            reason,
        } => {
            let who = unit_actor(&unit);
            send(&c, cmd(id, who, reason, Op::Return(Return { unit }))).await?;
        }
        TicketCmd::Review {
            c,
            id,
            redispatch,
            assisting,
            reject,
            a,
        } => {
            if !reject && redispatch.is_none() {
                bail!("give --redispatch UNIT or --reject");
            }
            let op = Op::ReviewReturn(ReviewReturn {
                reject,
                lead_unit: redispatch.unwrap_or_default(),
                assisting_units: assisting,
            });
            send(&c, cmd(id, actor(&a, CallTaker)?, a.reason, op)).await?;
        }
        TicketCmd::Extend {
            c,
            id,
            unit,
            days,
            reason,
        } => {
            let who = unit_actor(&unit);
            send(&c, cmd(id, who, reason, Op::Extend(Extend { unit, days }))).await?;
        }
        TicketCmd::DecideExtension {
            c,
            id,
            approve,
            deny,
            a,
        } => {
            if approve == deny {
                bail!("give --approve or --deny");
            }
            let op = Op::DecideExtension(DecideExtension { approve });
            send(&c, cmd(id, actor(&a, Supervisor)?, a.reason, op)).await?;
        }
        TicketCmd::Reply { c, id, unit, text } => {
            let who = unit_actor(&unit);
            send(
                &c,
                cmd(id, who, String::new(), Op::Reply(Reply { unit, text })),
            )
            .await?;
        }
        TicketCmd::Callback {
            c,
            id,
            contacted,
            resolved,
            satisfaction,
            a,
        } => {
            let resolution = match resolved.as_str() {
                "yes" | "resolved" | "已解决" => Resolution::Resolved,
                "partly" | "部分解决" => Resolution::Partly,
                "no" | "unresolved" | "未解决" => Resolution::Unresolved,
                r => bail!("--resolved: {r:?} is not yes, partly or no"),
            };
            let sat = match satisfaction.as_str() {
                "satisfied" | "满意" => Satisfaction::Satisfied,
                "basic" | "basically" | "基本满意" => Satisfaction::Basic,
                "unsatisfied" | "不满意" => Satisfaction::Unsatisfied,
                s => bail!("--satisfaction: {s:?} is not satisfied, basic or unsatisfied"),
            };
            let op = Op::Callback(Callback {
                contacted: yes_no("--contacted", &contacted)?,
                resolution: resolution as i32,
                satisfaction: sat as i32,
            });
            send(&c, cmd(id, actor(&a, CallTaker)?, a.reason, op)).await?;
        }
        TicketCmd::Reopen { c, id, a } => {
            send(
                &c,
                cmd(id, actor(&a, CallTaker)?, a.reason, Op::Reopen(Reopen {})),
            )
            .await?;
        }
        TicketCmd::Close { c, id, a } => {
            send(
                &c,
                cmd(id, actor(&a, CallTaker)?, a.reason, Op::Close(Close {})),
            )
            .await?;
        }
        TicketCmd::Archive { c, id, a } => {
            send(
                &c,
                cmd(id, actor(&a, CallTaker)?, a.reason, Op::Archive(Archive {})),
            )
            .await?;
        }
        TicketCmd::Merge {
            c,
            id,
            duplicate,
            a,
        } => {
            let op = Op::Merge(Merge {
                duplicate_id: duplicate,
            });
            send(&c, cmd(id, actor(&a, CallTaker)?, a.reason, op)).await?;
        }
        TicketCmd::Urge { c, id, a } => {
            send(
                &c,
                cmd(id, actor(&a, Supervisor)?, a.reason, Op::Urge(Urge {})),
            )
            .await?;
        }
        TicketCmd::Supervise { c, id, a } => {
            let op = Op::Supervise(Supervise {});
            send(&c, cmd(id, actor(&a, Supervisor)?, a.reason, op)).await?;
        }
        TicketCmd::Get { c, id, local: None } => {
            let cl = client(&c)?;
            let g = c.read_group(&cl)?;
            let t = cl
                .get_in(g, &id)
                .await
                .map_err(|s| c.read_error(&cl, &id, s))?;
            if c.json {
                println!("{}", ticket_json(&t));
            } else {
                print_ticket(&t);
            }
        }
        TicketCmd::Get {
            c,
            id,
            local: Some(node),
        } => {
            let cl = client(&c)?;
            let g = c.read_group(&cl)?;
            let r = cl.get_local(node, g, &id).await.map_err(status_err)?;
            let t = r.ticket.unwrap_or_default();
            let label = r.label.unwrap_or_default();
            if c.json {
                let mut v = ticket_json(&t);
                v["label"] = label_json(&label);
                println!("{v}");
            } else {
                print_label(&label);
                print_ticket(&t);
            }
        }
        TicketCmd::List { c, f, local } => {
            let req = list_request(f)?;
            show_list(&c, req, local).await?;
        }
        TicketCmd::Worklist {
            c,
            unit,
            region,
            limit,
        } => {
            let req = ListTicketsRequest {
                limit,
                unit,
                region: region.unwrap_or_default(),
                statuses: vec![
                    Status::AwaitingSign as i32,
                    Status::Handling as i32,
                    Status::ReturnReview as i32,
                ],
                by_deadline: true,
                ..Default::default()
            };
            show_list(&c, req, None).await?;
        }
        TicketCmd::Overdue {
            c,
            region,
            at_risk,
            limit,
        } => {
            let req = ListTicketsRequest {
                limit,
                region: region.unwrap_or_default(),
                deadline: if at_risk {
                    DeadlineState::AtRisk as i32
                } else {
                    DeadlineState::Overdue as i32
                },
                by_deadline: true,
                ..Default::default()
            };
            show_list(&c, req, None).await?;
        }
        TicketCmd::Lookup { c, id, phone_last4 } => {
            let l = client(&c)?
                .lookup(&id, &phone_last4)
                .await
                .map_err(status_err)?;
            if c.json {
                println!(
                    "{}",
                    json!({
                        "id": l.id, "kind": kind_name(l.kind), "category": l.category,
                        "status": status_name(l.status), "status_text": l.status_text,
                        "accepted_at_ms": l.accepted_at_ms, "reply_text": l.reply_text,
                        "progress": l.progress.iter().map(|p| json!({"kind": p.kind, "at_ms": p.at_ms, "summary": p.summary})).collect::<Vec<_>>(),
                    })
                );
            } else {
                println!("工单 {}：{}", l.id, l.status_text);
                for p in &l.progress {
                    println!("  {}  {}", cst(p.at_ms), p.summary);
                }
                if !l.reply_text.is_empty() {
                    println!("答复：{}", l.reply_text);
                }
            }
        }
        TicketCmd::Verify { c, id } => {
            let cl = client(&c)?;
            let g = c.read_group(&cl)?;
            let v = cl
                .verify_in(g, &id)
                .await
                .map_err(|s| c.read_error(&cl, &id, s))?;
            // Recompute here too: a verifier should not have to trust the node.
            let events = v
                .ticket
                .as_ref()
                .map(|t| t.events.clone())
                .unwrap_or_default();
            let local = audit::verify(&events);
            let ok = v.ok && local.is_ok();
            if c.json {
                println!(
                    "{}",
                    json!({
                        "id": id, "ok": ok, "events": v.events,
                        "broken_at_seq": local.as_ref().err().map_or(v.broken_at_seq, |b| b.seq),
                        "detail": local.as_ref().err().map_or(v.detail.clone(), |b| b.detail.clone()),
                    })
                );
            } else if ok {
                println!("{id}: chain of {} events verifies (SHA-256)", v.events);
            } else {
                let b = local
                    .err()
                    .map_or((v.broken_at_seq, v.detail), |b| (b.seq, b.detail));
                println!("{id}: chain BROKEN at event {}: {}", b.0, b.1);
            }
            if !ok {
                std::process::exit(2);
            }
        }
        TicketCmd::Watch { c, id } => {
            // Where the ticket is now: after a transfer, the destination's events.
            let cl = client(&c)?;
            let group = c.owner_of(&cl, &id).await?;
            let node = cl.find_leader_of(Some(group)).await.unwrap_or(0);
            let mut s = cl.watch_on(node, group, &id, 0).await.map_err(status_err)?;
            while let Some(e) = s.message().await.map_err(status_err)? {
                if c.json {
                    println!("{}", event_json(&e));
                } else {
                    println!("{}", event_line(&e));
                }
            }
        }
        TicketCmd::Outbox { c, region, limit } => {
            // Each group keeps its own outbox: without a group the first
            // node's home group (national, in a federation) would answer,
            // and its empty list would look like nothing is waiting.
            let cl = client(&c)?;
            let group = ticket_group(&cl, &c.config, region.as_deref())?;
            let ns = cl.outbox_in(group, limit).await.map_err(status_err)?;
            if c.json {
                println!(
                    "{}",
                    json!({ "notifications": ns.iter().map(|n| json!({"id": n.id, "ticket_id": n.ticket_id, "phone": n.phone, "text": n.text, "created_at_ms": n.created_at_ms})).collect::<Vec<_>>() })
                );
            } else {
                for n in ns {
                    println!(
                        "{}  {}  {}  {}",
                        n.id,
                        cst(n.created_at_ms),
                        n.phone,
                        n.text
                    );
                }
            }
        }
    }
    Ok(())
}

/// `hotline report`.
pub async fn report(
    c: &ClientArgs,
    region: Option<String>,
    from: Option<String>,
    to: Option<String>,
    csv: bool,
    basic_weight_permille: u32,
) -> Result<()> {
    // Checked here, naming the flags, before any node is asked.
    let (from_ms, to_ms) = report_period(
        from.as_deref(),
        to.as_deref(),
        jiff::Timestamp::now().as_millisecond(),
    )?;
    if basic_weight_permille > 1000 {
        bail!("--basic-weight-permille: must be 0..=1000 (got {basic_weight_permille})");
    }
    let cl = client(c)?;
    let group_id = ticket_group(&cl, &c.config, region.as_deref())?;
    let req = ReportRequest {
        group_id,
        from_ms,
        to_ms,
        basic_weight_permille,
    };
    let r = cl.report(req).await.map_err(status_err)?;
    if c.json {
        println!("{}", crate::report::report_json(&r));
    } else if csv {
        print!("{}", crate::report::render_csv(&r));
    } else {
        let note = relay_note(&cl, c, group_id, &r).await;
        print!("{}", crate::report::render_text(&r, note.as_deref()));
    }
    Ok(())
}

/// `hotline report`'s period as (from_ms, to_ms); to_ms 0 is the node's
/// now. Without `--from`, the first day of `--to`'s month (of the month
/// `--to` ends, as it is not included), so without either the current
/// month so far: the period of the monthly 三率 reports centers publish
/// (research/12345-domain.md), where from 1970 the figures mixed years.
fn report_period(from: Option<&str>, to: Option<&str>, now_ms: i64) -> Result<(i64, i64)> {
    let to_ms = to.map(|s| parse_cst("--to", s)).transpose()?;
    let end = to_ms.unwrap_or(now_ms);
    let from_ms = match from {
        Some(s) => parse_cst("--from", s)?,
        None => month_start_cst(end - 1)?,
    };
    if end <= from_ms {
        match (to, from) {
            (Some(t), _) => bail!(
                "--to: {t} is not after --from ({}); the period runs from --from up to, not including, --to",
                cst(from_ms)
            ),
            (None, Some(f)) => bail!("--from: {f} is not before now (--to's default)"),
            (None, None) => bail!("the clock is before 1970"),
        }
    }
    Ok((from_ms, to_ms.unwrap_or(0)))
}

/// Midnight CST of the first day of the month holding `ms`.
fn month_start_cst(ms: i64) -> Result<i64> {
    let tz = jiff::tz::TimeZone::fixed(jiff::tz::offset(8));
    let day = jiff::Timestamp::from_millisecond(ms)?
        .to_zoned(tz.clone())
        .date()
        .first_of_month();
    Ok(day.to_zoned(tz)?.timestamp().as_millisecond())
}

/// Why a report of group `g` is empty, when `g` is a relay: a group with
/// groups under it (national, a province) that holds no ticket at all —
/// cases are handled, and counted, in the groups below, and reach it only
/// to be passed on. `None` otherwise, or when it cannot be told.
async fn relay_note(
    cl: &Client,
    c: &ClientArgs,
    g: u64,
    r: &hotline_proto::v1::ReportResponse,
) -> Option<String> {
    let d = cl.directory.as_ref()?;
    if r.total > 0 || r.in_transit > 0 || d.child_groups(g).is_empty() {
        return None;
    }
    // Empty in the period is not enough: a city group serving districts
    // without groups of their own handles tickets, just none lately.
    let any = ListTicketsRequest {
        limit: 1,
        group_id: g,
        ..Default::default()
    };
    if !cl.list(any).await.ok()?.tickets.is_empty() {
        return None;
    }
    let region = hotline_federation::topology::group_region(g);
    let name = hotline_federation::regions().label(&region);
    let region_arg = if region.is_empty() {
        String::new()
    } else {
        format!(" --region {region}")
    };
    Some(format!(
        "{name} 这一组只中转(relay)跨地区工单,本身不办理工单,故总量为 0;全地区的统计请用联合查询:hotline query counts --config {}{region_arg}",
        c.config.display()
    ))
}

/// The group of a region code: the deepest group of the topology covering it.
pub fn group_for(cl: &Client, region: &str) -> Result<u64> {
    group_in(cl.directory.as_ref(), region)
}

/// `group_for` on the client config's directory (`None`: the config names
/// no topology, and the code itself is the group). A code the federation
/// does not serve is refused here, naming `--region`, rather than sent to a
/// node that would answer that it hosts no such group.
fn group_in(directory: Option<&Directory>, region: &str) -> Result<u64> {
    use hotline_federation::topology::{NATIONAL_GROUP, try_group_id};
    let Some(d) = directory else {
        return try_group_id(region)
            .ok_or_else(|| anyhow!("--region: {region:?} is not a division code"));
    };
    match d.owner(region) {
        // Only the national group covers it: a place outside every region
        // group, where no ticket is held (national relays, it handles none).
        Some(NATIONAL_GROUP) if !region.is_empty() => bail!(
            "--region: {} is not a region of this federation (only the national group, which holds no tickets, covers it); its regions: {}",
            hotline_federation::regions().label(region),
            region_list(d)
        ),
        Some(g) => Ok(g),
        None => match try_group_id(region) {
            // "" (national), which `owner` does not take as a place.
            Some(g) if d.contains(g) => Ok(g),
            Some(_) => bail!(
                "--region: {region} is not a region of this federation; its regions: {}",
                region_list(d)
            ),
            None => bail!("--region: {region:?} is not a division code"),
        },
    }
}

/// Regions shown in an error at most; a national federation has thousands.
const REGIONS_LISTED: usize = 12;

/// The regions whose groups may hold tickets (every group but the
/// national one), "310114 嘉定区, …", for errors that ask for `--region`.
fn region_list(d: &Directory) -> String {
    use hotline_federation::topology::{NATIONAL_GROUP, group_region};
    let all: Vec<u64> = d.groups().filter(|&g| g != NATIONAL_GROUP).collect();
    let mut shown: Vec<String> = all
        .iter()
        .take(REGIONS_LISTED)
        .map(|&g| hotline_federation::regions().label(&group_region(g)))
        .collect();
    if all.len() > REGIONS_LISTED {
        shown.push(format!("… ({} in all)", all.len()));
    }
    format!("{} (hotline group show lists them)", shown.join(", "))
}

/// The group a command about tickets asks: `--region`'s, else the only
/// group of the client config. In a federation, a request without a group
/// is answered by the first node's home group — the national group, which
/// holds no tickets — so a worklist or red list would come back empty and
/// look complete: there `--region` is required.
pub fn ticket_group(cl: &Client, config: &Path, region: Option<&str>) -> Result<u64> {
    ticket_group_in(cl.directory.as_ref(), config, region)
}

fn ticket_group_in(
    directory: Option<&Directory>,
    config: &Path,
    region: Option<&str>,
) -> Result<u64> {
    if let Some(r) = region {
        return group_in(directory, r);
    }
    let Some(d) = directory else {
        // No topology: the nodes' own group answers, as before.
        return Ok(0);
    };
    let groups: Vec<u64> = d.groups().collect();
    match groups[..] {
        [] => Ok(0),
        [only] => Ok(only),
        _ => bail!(
            "--region: required: {} serves {} region groups (a federation), and without it the national group, which holds no tickets, would answer; give one of {}",
            config.display(),
            groups.len(),
            region_list(d)
        ),
    }
}

/// The groups a policy command addresses: one region's, or every group of
/// the topology (the calendar is national).
fn policy_groups(cl: &Client, region: &Option<String>) -> Result<Vec<u64>> {
    Ok(match (region, &cl.directory) {
        (Some(r), _) => vec![group_for(cl, r)?],
        (None, Some(d)) => d.groups().collect(),
        (None, None) => vec![0],
    })
}

/// Which policies `policy show` prints.
#[derive(Debug, PartialEq)]
enum PolicyShow {
    /// One group's, in full: `--region`'s, or the config's only group.
    One(u64),
    /// Every group's, a line each: each group has its own replicated
    /// policy, so in a federation the first group's alone would pass for
    /// all of them.
    Every(Vec<u64>),
}

fn policy_show_groups(directory: Option<&Directory>, region: Option<&str>) -> Result<PolicyShow> {
    if let Some(r) = region {
        return Ok(PolicyShow::One(group_in(directory, r)?));
    }
    let Some(d) = directory else {
        // No topology: the nodes' own group answers, as before.
        return Ok(PolicyShow::One(0));
    };
    let mut groups: Vec<u64> = d.groups().collect();
    // In the tree's order (national, then each province followed by the
    // places in it), as a supervisor reads the federation.
    groups.sort_by_key(|&g| hotline_federation::topology::group_region(g));
    Ok(match groups[..] {
        [] => PolicyShow::One(0),
        [only] => PolicyShow::One(only),
        _ => PolicyShow::Every(groups),
    })
}

/// The calendar years a policy loads beyond the built-in ones.
fn policy_years(p: &Policy) -> Vec<i32> {
    p.calendars.iter().map(|c| c.year).collect()
}

fn policy_source(text: &str) -> &'static str {
    if text.is_empty() {
        "built_in"
    } else {
        "custom"
    }
}

/// One group's policy for `--json`, as `policy show` has always printed it.
fn policy_json(p: &Policy) -> Value {
    json!({
        "version": p.version, "extra_calendar_years": policy_years(p),
        "custom_deadlines": !p.deadlines_toml.is_empty(),
        "custom_categories": !p.categories_toml.is_empty(),
        "basic_weight_permille": p.basic_weight_permille,
    })
}

fn print_policy(p: &Policy) {
    println!("policy version {} (0 = built in)", p.version);
    println!(
        "calendar years loaded beyond the built-in 2025–2026: {:?}",
        policy_years(p)
    );
    println!(
        "deadline rules: {}",
        if p.deadlines_toml.is_empty() {
            "built in"
        } else {
            "custom"
        }
    );
    println!(
        "category tree: {}",
        if p.categories_toml.is_empty() {
            "built in"
        } else {
            "custom"
        }
    );
}

/// Column widths of the every-group policy table.
const POLICY_COLUMNS: [usize; 5] = [9, 16, 13, 20, 20];

fn policy_header() -> String {
    use crate::report::pad;
    let w = POLICY_COLUMNS;
    format!(
        "{} {} {} {} {} 日历年份 CALENDAR",
        pad("组 GROUP", w[0]),
        pad("地区 REGION", w[1]),
        pad("版本 VERSION", w[2]),
        pad("时限规则 DEADLINES", w[3]),
        pad("分类目录 CATEGORIES", w[4]),
    )
}

/// Group `g` and its region's name, the start of its row.
fn policy_row_start(g: u64) -> String {
    use crate::report::pad;
    format!(
        "{} {}",
        pad(&g.to_string(), POLICY_COLUMNS[0]),
        pad(&hotline_federation::group_name(g), POLICY_COLUMNS[1])
    )
}

/// Group `g`'s policy on one line: version, where its deadline rules and
/// category tree come from, and its calendar years (the built-in ones,
/// then those loaded).
fn policy_row(g: u64, p: &Policy) -> String {
    use crate::labels::{both, policy_zh};
    use crate::report::pad;
    let w = POLICY_COLUMNS;
    let source = |text: &str| {
        let key = policy_source(text);
        both(policy_zh(key), key)
    };
    let mut years = "2025–2026".to_string();
    for y in policy_years(p) {
        years += &format!(" +{y}");
    }
    format!(
        "{} {} {} {} {years}",
        policy_row_start(g),
        pad(&p.version.to_string(), w[2]),
        pad(&source(&p.deadlines_toml), w[3]),
        pad(&source(&p.categories_toml), w[4]),
    )
}

/// `policy show` in a federation without `--region`: every group's policy,
/// asked concurrently; a group that does not answer is named in its row,
/// and the command fails after printing the others.
async fn show_every_policy(cl: &Client, c: &ClientArgs, groups: &[u64]) -> Result<()> {
    use hotline_federation::topology::group_region;
    let answers = futures::future::join_all(groups.iter().map(|&g| cl.get_policy(g))).await;
    let mut failed = Vec::new();
    let mut rows = Vec::new();
    if !c.json {
        println!("{}", policy_header());
    }
    for (&g, a) in groups.iter().zip(answers) {
        match a {
            Ok(p) => {
                if c.json {
                    let mut v = policy_json(&p);
                    v["group"] = json!(g);
                    v["region"] = json!(group_region(g));
                    rows.push(v);
                } else {
                    println!("{}", policy_row(g, &p));
                }
            }
            Err(s) => {
                failed.push(g);
                if c.json {
                    rows.push(json!({
                        "group": g, "region": group_region(g),
                        "error": format!("{:?}: {}", s.code(), s.message()),
                    }));
                } else {
                    println!(
                        "{} 未应答 no answer: {:?}: {}",
                        policy_row_start(g),
                        s.code(),
                        s.message()
                    );
                }
            }
        }
    }
    if c.json {
        println!("{}", Value::Array(rows));
    }
    if !failed.is_empty() {
        bail!(
            "the policy of {} of {} groups could not be read (groups {failed:?})",
            failed.len(),
            groups.len()
        );
    }
    Ok(())
}

pub async fn policy(cmd: PolicyCmd) -> Result<()> {
    match cmd {
        PolicyCmd::Show { c, region } => {
            let cl = client(&c)?;
            match policy_show_groups(cl.directory.as_ref(), region.as_deref())? {
                PolicyShow::One(g) => {
                    let p = cl.get_policy(g).await.map_err(status_err)?;
                    if c.json {
                        println!("{}", policy_json(&p));
                    } else {
                        print_policy(&p);
                    }
                }
                PolicyShow::Every(groups) => show_every_policy(&cl, &c, &groups).await?,
            }
        }
        PolicyCmd::Load {
            c,
            region,
            calendars,
            deadlines,
            categories,
            basic_weight_permille,
        } => {
            let cl = client(&c)?;
            for g in policy_groups(&cl, &region)? {
                let mut p = cl.get_policy(g).await.map_err(status_err)?;
                p.version += 1;
                for path in &calendars {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("--calendar {}", path.display()))?;
                    let year = hotline_node::core::calendar::Calendar::parse_year(&text)
                        .map_err(|e| anyhow!("--calendar {}: {e}", path.display()))?;
                    p.calendars.retain(|c| c.year != i32::from(year.year));
                    p.calendars.push(CalendarText {
                        year: i32::from(year.year),
                        toml: text,
                    });
                }
                p.calendars.sort_by_key(|c| c.year);
                if let Some(path) = &deadlines {
                    p.deadlines_toml = std::fs::read_to_string(path)
                        .with_context(|| format!("--deadlines {}", path.display()))?;
                }
                if let Some(path) = &categories {
                    p.categories_toml = std::fs::read_to_string(path)
                        .with_context(|| format!("--categories {}", path.display()))?;
                }
                if basic_weight_permille != 0 {
                    p.basic_weight_permille = basic_weight_permille;
                }
                let p: Policy = cl.set_policy(g, p).await.map_err(status_err)?;
                if c.json {
                    println!("{}", json!({ "group": g, "version": p.version }));
                } else {
                    println!(
                        "group {g}: policy version {} is in force on every replica",
                        p.version
                    );
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotline_federation::topology::{GroupSpec, Topology};

    fn demo() -> Directory {
        Directory::new(&Topology::demo())
    }

    const CONFIG: &str = "demo-data/client.toml";

    #[test]
    fn a_federation_needs_region_and_says_which() {
        let d = demo();
        let e = ticket_group_in(Some(&d), Path::new(CONFIG), None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--region: required"), "{e}");
        assert!(
            e.contains("demo-data/client.toml serves 8 region groups"),
            "{e}"
        );
        assert!(
            e.contains("310114 嘉定区") && e.contains("320585 太仓市"),
            "{e}"
        );
        assert!(e.contains("hotline group show"), "{e}");
        // The national group is not offered: it holds no tickets.
        assert!(!e.contains("全国"), "{e}");
        // Given, the owning group answers: a street's is its district's.
        let group = |r: &str| ticket_group_in(Some(&d), Path::new(CONFIG), Some(r));
        assert_eq!(group("320585").unwrap(), 320585);
        assert_eq!(group("320585102").unwrap(), 320585);
        assert_eq!(group("31").unwrap(), 31);
    }

    #[test]
    fn one_group_or_no_topology_needs_no_region() {
        let mut t = Topology::demo();
        t.groups = vec![GroupSpec {
            region: "310114".into(),
            voters: vec![6],
            learners: vec![],
        }];
        let d = Directory::new(&t);
        assert_eq!(
            ticket_group_in(Some(&d), Path::new(CONFIG), None).unwrap(),
            310114
        );
        // Without a topology the nodes' own group answers, as before.
        assert_eq!(ticket_group_in(None, Path::new(CONFIG), None).unwrap(), 0);
    }

    #[test]
    fn a_region_outside_the_federation_is_refused_before_any_node_is_asked() {
        let d = demo();
        let e = group_in(Some(&d), "999999").unwrap_err().to_string();
        assert!(
            e.starts_with(
                "--region: 999999 is not a region of this federation; its regions: 31 上海市"
            ),
            "{e}"
        );
        // A real place no region group serves: only national covers it.
        let e = group_in(Some(&d), "110101").unwrap_err().to_string();
        assert!(
            e.starts_with("--region: 110101 东城区 is not a region of this federation"),
            "{e}"
        );
        let e = group_in(Some(&d), "abc").unwrap_err().to_string();
        assert_eq!(e, "--region: \"abc\" is not a division code");
        // "" is the national group (`hotline transfers`' default).
        assert_eq!(group_in(Some(&d), "").unwrap(), 86);
    }

    /// Each group has its own policy: in a federation, `policy show`
    /// without `--region` shows every group's (it showed the first one's
    /// as if it were all of them); with it, that region's group's.
    #[test]
    fn policy_show_in_a_federation_shows_every_group() {
        let d = demo();
        assert_eq!(
            policy_show_groups(Some(&d), None).unwrap(),
            PolicyShow::Every(vec![86, 31, 3101, 310101, 310114, 32, 3205, 320585])
        );
        assert_eq!(
            policy_show_groups(Some(&d), Some("320585102")).unwrap(),
            PolicyShow::One(320585)
        );
        assert_eq!(
            policy_show_groups(Some(&d), Some("")).unwrap(),
            PolicyShow::One(86)
        );
        let e = policy_show_groups(Some(&d), Some("999999")).unwrap_err();
        assert!(e.to_string().starts_with("--region: 999999"), "{e}");
        // One group, or no topology: as before.
        let mut t = Topology::demo();
        t.groups.retain(|g| g.region == "310114");
        let one = Directory::new(&t);
        assert_eq!(
            policy_show_groups(Some(&one), None).unwrap(),
            PolicyShow::One(310114)
        );
        assert_eq!(policy_show_groups(None, None).unwrap(), PolicyShow::One(0));
    }

    #[test]
    fn a_policy_row_names_its_group_and_what_is_custom() {
        let p = Policy {
            version: 3,
            calendars: vec![CalendarText {
                year: 2027,
                toml: String::new(),
            }],
            deadlines_toml: "x".into(),
            ..Default::default()
        };
        let row = policy_row(320585, &p);
        assert!(row.starts_with("320585    太仓市 "), "{row}");
        assert!(row.contains(" 3 "), "{row}");
        assert!(row.contains("自定义 custom"), "{row}");
        assert!(row.contains("内置 built_in"), "{row}");
        assert!(row.ends_with("2025–2026 +2027"), "{row}");
        let national = policy_row(86, &Policy::default());
        assert!(national.starts_with("86        全国 "), "{national}");
        assert!(national.ends_with(" 2025–2026"), "{national}");
        // The columns line up under the header (CJK counts two columns).
        let header = policy_header();
        let col =
            |line: &str, word: &str| crate::report::width(&line[..line.find(word).expect(word)]);
        assert_eq!(
            col(&header, "版本"),
            col(&row, " 3 ") + 1,
            "{header}\n{row}"
        );
        assert_eq!(
            col(&header, "时限规则"),
            col(&row, "自定义"),
            "{header}\n{row}"
        );
    }

    #[test]
    fn a_report_covers_the_month_so_far_by_default() {
        let ms = |s: &str| parse_cst("--x", s).unwrap();
        let now = ms("2026-12-05T11:30");
        assert_eq!(
            report_period(None, None, now).unwrap(),
            (ms("2026-12-01"), 0)
        );
        // Up to --to: the month it ends (the first of a month is not in).
        assert_eq!(
            report_period(None, Some("2026-11-01"), now).unwrap(),
            (ms("2026-10-01"), ms("2026-11-01"))
        );
        assert_eq!(
            report_period(Some("2026-10-01"), Some("2026-10-08"), now).unwrap(),
            (ms("2026-10-01"), ms("2026-10-08"))
        );
        // Midnight of the 1st in CST is the previous day in UTC.
        assert_eq!(
            cst(report_period(None, None, ms("2026-12-01")).unwrap().0),
            "2026-11-01 00:00"
        );
    }

    #[test]
    fn a_reversed_period_names_the_flags() {
        let now = parse_cst("--x", "2026-12-05").unwrap();
        let e = report_period(Some("2026-12-06"), Some("2026-12-01"), now)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--to: 2026-12-01 is not after --from (2026-12-06 00:00)"),
            "{e}"
        );
        let e = report_period(Some("2026-12-06"), None, now)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--from: 2026-12-06 is not before now"), "{e}");
        let e = report_period(Some("2026-12-01"), Some("2026-12-01"), now)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--to:"), "{e}");
    }

    #[test]
    fn a_ticket_list_with_a_reversed_period_names_the_flags() {
        use clap::Parser;
        #[derive(Parser)]
        struct L {
            #[command(flatten)]
            f: ListArgs,
        }
        let l = L::parse_from(["l", "--from", "2026-12-06", "--to", "2026-12-01"]);
        let e = list_request(l.f).unwrap_err().to_string();
        assert_eq!(e, "--to: 2026-12-01 is not after --from (2026-12-06 00:00)");
    }
}
