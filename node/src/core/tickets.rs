//! The ticket state machine (工单状态机): what a committed command does.
//!
//! Pure and deterministic: the same commands in the same order give the same
//! state on every replica. Time comes inside the command (`Command::at_ms`,
//! chosen by the proposer); nothing here reads a clock, and iteration is over
//! ordered maps only, so snapshots are byte-identical across replicas.
//!
//! Every mutation is also recorded in `SmWrites`, which the replica hands to
//! its driver to persist in the same transaction as the applied index.

use std::collections::{BTreeMap, BTreeSet};

use hotline_proto::v1::{
    AcceptRequest, Channel, Command, DaySequence, Kind, RequestSeen, StateSnapshot, Status, Ticket,
    command,
};
use prost::Message;

/// Limits on a ticket's fields (bytes, after UTF-8 encoding).
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
pub const MAX_CATEGORY_CHARS: usize = 64;
/// How long an accept's request id is remembered for deduplicating client
/// retries: longer than any client's retry horizon.
pub const REQUEST_DEDUP_WINDOW_MS: i64 = 10 * 60 * 1000;
/// Bound on remembered request ids, whatever their age.
pub const MAX_REMEMBERED_REQUESTS: usize = 200_000;
/// China Standard Time, for the date in ticket ids (UTC+8, no DST).
const CST_OFFSET_MS: i64 = 8 * 3600 * 1000;

/// A field of a request that is wrong, and why. Becomes gRPC `InvalidArgument`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

fn bad(field: &'static str, reason: impl Into<String>) -> FieldError {
    FieldError {
        field,
        reason: reason.into(),
    }
}

/// Result of applying one command.
#[derive(Clone, Debug, PartialEq)]
pub enum ApplyResult {
    Accepted(Ticket),
    Rejected(FieldError),
    /// An entry that carries no command (leader no-op, conf change).
    Nothing,
}

/// Mutations made by applied commands since the last `take_writes`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SmWrites {
    pub tickets: Vec<Ticket>,
    pub sequences: Vec<DaySequence>,
    pub requests_put: Vec<RequestSeen>,
    pub requests_del: Vec<u64>,
}

impl SmWrites {
    pub fn is_empty(&self) -> bool {
        self.tickets.is_empty()
            && self.sequences.is_empty()
            && self.requests_put.is_empty()
            && self.requests_del.is_empty()
    }
}

/// The state of one region group's tickets.
#[derive(Debug, Default)]
pub struct TicketMachine {
    /// The region this group serves (a 6-digit district code, or a shorter
    /// city/province code). Accepts must name it or a region under it.
    region: String,
    tickets: BTreeMap<String, Ticket>,
    /// Raft index of each ticket's accept → id: newest-first listing.
    by_index: BTreeMap<u64, String>,
    /// Last sequence number per CST day (yyyymmdd).
    sequences: BTreeMap<u32, u64>,
    requests: BTreeMap<u64, RequestSeen>,
    /// (at_ms, request_id), to expire `requests` in time order.
    requests_by_time: BTreeSet<(i64, u64)>,
    writes: SmWrites,
}

/// Query of the ticket state, answered after a ReadIndex round.
#[derive(Clone, Debug, PartialEq)]
pub enum Query {
    Get { id: String },
    List { limit: usize, before_id: String },
}

#[derive(Clone, Debug, PartialEq)]
pub enum QueryAnswer {
    Ticket(Option<Ticket>),
    Tickets(Vec<Ticket>),
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

    /// Checks an accept request before it is proposed (and again when it is
    /// applied: the apply path never trusts the proposer).
    pub fn validate_accept(&self, req: &AcceptRequest) -> Result<(), FieldError> {
        validate_accept(&self.region, req)
    }

    pub fn apply(&mut self, index: u64, cmd: &Command) -> ApplyResult {
        match &cmd.op {
            Some(command::Op::Accept(req)) => match self.validate_accept(req) {
                Ok(()) => ApplyResult::Accepted(self.accept(index, cmd.request_id, cmd.at_ms, req)),
                Err(e) => ApplyResult::Rejected(e),
            },
            None => ApplyResult::Rejected(bad("op", "command has no operation")),
        }
    }

    fn accept(&mut self, index: u64, request_id: u64, at_ms: i64, req: &AcceptRequest) -> Ticket {
        self.expire_requests(at_ms);
        if request_id != 0
            && let Some(seen) = self.requests.get(&request_id)
            && let Some(t) = self.tickets.get(&seen.ticket_id)
        {
            // A retried accept: answer with the first ticket.
            return t.clone();
        }
        let day = cst_day(at_ms);
        let seq = self.sequences.entry(day).or_insert(0);
        *seq += 1;
        let seq = *seq;
        self.writes.sequences.push(DaySequence { day, last: seq });
        let district: String = req.region.chars().take(6).collect();
        let channel = if req.channel == Channel::Unspecified as i32 {
            Channel::Phone as i32
        } else {
            req.channel
        };
        let ticket = Ticket {
            id: format!("{district}-{day}-{seq:06}"),
            region: req.region.clone(),
            kind: req.kind,
            category: req.category.clone(),
            text: req.text.clone(),
            phone: req.phone.clone(),
            phone_masked: mask_phone(&req.phone),
            channel,
            status: Status::Accepted as i32,
            accepted_at_ms: at_ms,
            raft_index: index,
        };
        assert!(
            !self.tickets.contains_key(&ticket.id),
            "ticket id {} allocated twice",
            ticket.id
        );
        self.by_index.insert(index, ticket.id.clone());
        self.tickets.insert(ticket.id.clone(), ticket.clone());
        self.writes.tickets.push(ticket.clone());
        if request_id != 0 {
            let seen = RequestSeen {
                request_id,
                ticket_id: ticket.id.clone(),
                at_ms,
            };
            self.requests_by_time.insert((at_ms, request_id));
            self.requests.insert(request_id, seen.clone());
            self.writes.requests_put.push(seen);
        }
        ticket
    }

    /// Forgets request ids older than the dedup window, measured against the
    /// newest command's time (never a local clock), and beyond the count cap.
    fn expire_requests(&mut self, now_ms: i64) {
        while let Some(&(at, id)) = self.requests_by_time.first() {
            let too_old = at < now_ms - REQUEST_DEDUP_WINDOW_MS;
            let too_many = self.requests.len() >= MAX_REMEMBERED_REQUESTS;
            if !too_old && !too_many {
                break;
            }
            self.requests_by_time.pop_first();
            self.requests.remove(&id);
            self.writes.requests_del.push(id);
        }
    }

    pub fn query(&self, q: &Query) -> QueryAnswer {
        match q {
            Query::Get { id } => QueryAnswer::Ticket(self.tickets.get(id).cloned()),
            Query::List { limit, before_id } => {
                let upper = if before_id.is_empty() {
                    u64::MAX
                } else {
                    self.tickets.get(before_id).map_or(0, |t| t.raft_index)
                };
                let out = self
                    .by_index
                    .range(..upper)
                    .rev()
                    .take(*limit)
                    .map(|(_, id)| self.tickets[id].clone())
                    .collect();
                QueryAnswer::Tickets(out)
            }
        }
    }

    pub fn take_writes(&mut self) -> SmWrites {
        std::mem::take(&mut self.writes)
    }

    pub fn has_writes(&self) -> bool {
        !self.writes.is_empty()
    }

    /// The whole state, for a Raft snapshot. Deterministic bytes.
    pub fn snapshot(&self, group_id: u64) -> StateSnapshot {
        StateSnapshot {
            group_id,
            tickets: self.tickets.values().cloned().collect(),
            sequences: self
                .sequences
                .iter()
                .map(|(&day, &last)| DaySequence { day, last })
                .collect(),
            requests: self.requests.values().cloned().collect(),
        }
    }

    pub fn snapshot_bytes(&self, group_id: u64) -> Vec<u8> {
        self.snapshot(group_id).encode_to_vec()
    }

    /// Rebuilds the state from a snapshot or from what the driver loaded.
    pub fn restore(region: &str, snap: StateSnapshot) -> Self {
        let mut m = TicketMachine::new(region);
        for t in snap.tickets {
            m.by_index.insert(t.raft_index, t.id.clone());
            m.tickets.insert(t.id.clone(), t);
        }
        for s in snap.sequences {
            m.sequences.insert(s.day, s.last);
        }
        for r in snap.requests {
            m.requests_by_time.insert((r.at_ms, r.request_id));
            m.requests.insert(r.request_id, r);
        }
        m
    }
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
    validate_phone(&req.phone)
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

    fn req() -> AcceptRequest {
        AcceptRequest {
            region: "310114".into(),
            kind: Kind::Complaint as i32,
            category: "城乡建设".into(),
            text: "小区门口道路破损".into(),
            phone: "13800000000".into(),
            channel: 0,
            request_id: 0,
        }
    }

    fn accept(m: &mut TicketMachine, index: u64, request_id: u64, at_ms: i64) -> ApplyResult {
        let cmd = Command {
            request_id,
            at_ms,
            op: Some(command::Op::Accept(req())),
        };
        m.apply(index, &cmd)
    }

    // 2026-11-28 10:00 CST
    const AT: i64 = 1_795_831_200_000;

    #[test]
    fn ids_are_region_day_sequence() {
        let mut m = TicketMachine::new("310114");
        let ApplyResult::Accepted(t) = accept(&mut m, 5, 0, AT) else {
            panic!()
        };
        assert_eq!(t.id, "310114-20261128-000001");
        assert_eq!(t.phone_masked, "138****0000");
        let ApplyResult::Accepted(t2) = accept(&mut m, 6, 0, AT) else {
            panic!()
        };
        assert_eq!(t2.id, "310114-20261128-000002");
    }

    #[test]
    fn a_retried_request_returns_the_first_ticket() {
        let mut m = TicketMachine::new("310114");
        let ApplyResult::Accepted(a) = accept(&mut m, 5, 42, AT) else {
            panic!()
        };
        let ApplyResult::Accepted(b) = accept(&mut m, 6, 42, AT + 1000) else {
            panic!()
        };
        assert_eq!(a.id, b.id);
        assert_eq!(m.len(), 1);
        // After the window it is a new request.
        let ApplyResult::Accepted(c) = accept(&mut m, 7, 42, AT + REQUEST_DEDUP_WINDOW_MS + 5000)
        else {
            panic!()
        };
        assert_ne!(a.id, c.id);
    }

    #[test]
    fn snapshot_round_trip_is_identical() {
        let mut m = TicketMachine::new("310114");
        for i in 0..10 {
            accept(&mut m, 10 + i, i + 1, AT + i as i64);
        }
        let bytes = m.snapshot_bytes(7);
        let back = TicketMachine::restore("310114", StateSnapshot::decode(&bytes[..]).unwrap());
        assert_eq!(back.snapshot_bytes(7), bytes);
        let QueryAnswer::Tickets(list) = back.query(&Query::List {
            limit: 3,
            before_id: String::new(),
        }) else {
            panic!()
        };
        let ids: Vec<_> = list.iter().map(|t| t.raft_index).collect();
        assert_eq!(ids, [19, 18, 17], "newest first");
    }

    #[test]
    fn bad_fields_are_named() {
        let check = |f: fn(&mut AcceptRequest), field: &str| {
            let mut r = req();
            f(&mut r);
            let e = validate_accept("310114", &r).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        };
        check(|r| r.region = String::new(), "region");
        check(|r| r.region = "999999".into(), "region");
        check(|r| r.region = "320585".into(), "region");
        check(|r| r.kind = 0, "kind");
        check(|r| r.kind = 99, "kind");
        check(|r| r.category = " ".into(), "category");
        check(|r| r.text = String::new(), "text");
        check(|r| r.text = "x".repeat(MAX_TEXT_BYTES + 1), "text");
        check(|r| r.phone = "12345".into(), "phone");
        check(|r| r.phone = "1380000000a".into(), "phone");
        let mut ok = req();
        ok.phone = "021-69123456".into();
        assert!(validate_accept("310114", &ok).is_ok());
        ok.region = "310114001".into();
        assert!(validate_accept("310114", &ok).is_ok());
    }

    #[test]
    fn masks_landlines_too() {
        assert_eq!(mask_phone("021-69123456"), "021*****3456");
    }
}
