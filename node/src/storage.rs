//! Durable storage of a node: one redb database for all its groups.
//!
//! Why redb: pure Rust (no C++ toolchain on CI), ACID with copy-on-write
//! B-trees and checksummed commit slots, `Durability::Immediate` = fsync
//! before `commit` returns. One write transaction per driver loop carries
//! every group's `WriteBatch`, so one fsync serves all of them (group
//! commit). A batch that only moves the commit index uses
//! `Durability::None`; redb makes it durable with the next immediate commit.
//!
//! Tables are keyed by group id first, so a node's groups never mix.
//! Architecture invariant: this module is the only code that touches redb.

use std::path::Path;

use hotline_node_core_types::*;
use prost::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState};
use redb::{Database, Durability, ReadableDatabase, TableDefinition};

use crate::core::log::Truncated;
use crate::core::{Recovered, WriteBatch};

mod hotline_node_core_types {
    pub use hotline_proto::v1::{
        DaySequence, Notification, Policy, RequestSeen, StateSnapshot, Ticket, TransferRecord,
    };
}

/// (group, index) → rust-protobuf encoded `eraftpb::Entry`.
const LOG: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("raft_log");
/// (group, key) → value; keys below.
const META: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("raft_meta");
/// (group, ticket id) → prost encoded `Ticket`.
const TICKETS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("tickets");
/// (group, yyyymmdd) → last sequence number of that day.
const SEQUENCES: TableDefinition<(u64, u32), u64> = TableDefinition::new("sequences");
/// (group, request id) → prost encoded `RequestSeen`.
const REQUESTS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("requests");
/// (group, notification id) → prost encoded `Notification` (the outbox).
const OUTBOX: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("outbox");
/// (group, key) → state-machine values that are not rows; keys below.
const SM_META: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("sm_meta");
/// (group, transfer id) → prost encoded `TransferRecord` (custody log).
const TRANSFERS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("transfers");
const POLICY: &str = "policy";

const HARD_STATE: &str = "hard_state";
const CONF_STATE: &str = "conf_state";
const TRUNCATED: &str = "truncated";
const APPLIED: &str = "applied";

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("redb: {0}")]
    Redb(#[from] redb::Error),
    #[error("corrupt {what} in group {group}: {detail}")]
    Corrupt {
        group: u64,
        what: &'static str,
        detail: String,
    },
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StorageError {
            fn from(e: $t) -> Self {
                StorageError::Redb(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

pub struct Storage {
    db: Database,
    /// Durable commits so far (one fsync each).
    pub syncs: u64,
}

impl Storage {
    pub fn open(dir: &Path) -> Result<Storage, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::Redb(redb::Error::Io(e)))?;
        let db = Database::create(dir.join("hotline.redb"))?;
        // Create the tables so that read transactions find them.
        let tx = db.begin_write()?;
        tx.open_table(LOG)?;
        tx.open_table(META)?;
        tx.open_table(TICKETS)?;
        tx.open_table(SEQUENCES)?;
        tx.open_table(REQUESTS)?;
        tx.open_table(OUTBOX)?;
        tx.open_table(SM_META)?;
        tx.open_table(TRANSFERS)?;
        tx.commit()?;
        Ok(Storage { db, syncs: 0 })
    }

    /// Writes the batches of all groups in one transaction; fsyncs before
    /// returning when any of them must be synced.
    pub fn write(&mut self, batches: &[&WriteBatch]) -> Result<(), StorageError> {
        if batches.iter().all(|b| b.is_empty()) {
            return Ok(());
        }
        let sync = batches.iter().any(|b| b.must_sync);
        let mut tx = self.db.begin_write()?;
        tx.set_durability(if sync {
            Durability::Immediate
        } else {
            Durability::None
        })?;
        {
            let mut log = tx.open_table(LOG)?;
            let mut meta = tx.open_table(META)?;
            let mut rows = Rows {
                tickets: tx.open_table(TICKETS)?,
                seqs: tx.open_table(SEQUENCES)?,
                reqs: tx.open_table(REQUESTS)?,
                outbox: tx.open_table(OUTBOX)?,
                sm_meta: tx.open_table(SM_META)?,
                transfers: tx.open_table(TRANSFERS)?,
            };
            for b in batches {
                let g = b.group_id;
                if let Some(s) = &b.snapshot {
                    log.retain_in((g, 0)..=(g, u64::MAX), |_, _| false)?;
                    rows.clear(g)?;
                    rows.put(
                        g,
                        &s.state.tickets,
                        &s.state.sequences,
                        &s.state.requests,
                        &s.state.outbox,
                        s.state.policy.as_ref(),
                    )?;
                    rows.put_transfers(g, &s.state.transfers)?;
                    let tr = Truncated {
                        index: s.index,
                        term: s.term,
                    };
                    meta.insert((g, TRUNCATED), encode_truncated(tr).as_slice())?;
                    meta.insert((g, APPLIED), s.index.to_be_bytes().as_slice())?;
                    meta.insert((g, CONF_STATE), pb(&s.conf_state).as_slice())?;
                }
                if let Some(first) = b.entries.first() {
                    // A new leader may overwrite a conflicting tail.
                    log.retain_in((g, first.index)..=(g, u64::MAX), |_, _| false)?;
                    for e in &b.entries {
                        log.insert((g, e.index), pb(e).as_slice())?;
                    }
                }
                if let Some(hs) = &b.hard_state {
                    meta.insert((g, HARD_STATE), pb(hs).as_slice())?;
                }
                if let Some(cs) = &b.conf_state {
                    meta.insert((g, CONF_STATE), pb(cs).as_slice())?;
                }
                rows.put(
                    g,
                    &b.sm.tickets,
                    &b.sm.sequences,
                    &b.sm.requests_put,
                    &b.sm.outbox_put,
                    b.sm.policy.as_ref(),
                )?;
                for id in &b.sm.requests_del {
                    rows.reqs.remove((g, *id))?;
                }
                for id in &b.sm.outbox_del {
                    rows.outbox.remove((g, id.as_str()))?;
                }
                rows.put_transfers(g, &b.sm.transfers_put)?;
                for id in &b.sm.transfers_del {
                    rows.transfers.remove((g, id.as_str()))?;
                }
                if let Some(a) = b.applied {
                    meta.insert((g, APPLIED), a.to_be_bytes().as_slice())?;
                }
                if let Some(t) = b.compact {
                    log.retain_in((g, 0)..=(g, t.index), |_, _| false)?;
                    meta.insert((g, TRUNCATED), encode_truncated(t).as_slice())?;
                }
            }
        }
        tx.commit()?;
        if sync {
            self.syncs += 1;
        }
        Ok(())
    }

    /// Loads a group's durable state; `None` if nothing was ever written.
    pub fn load(&self, g: u64) -> Result<Option<Recovered>, StorageError> {
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(META)?;
        let get = |k: &str| -> Result<Option<Vec<u8>>, StorageError> {
            Ok(meta.get((g, k))?.map(|v| v.value().to_vec()))
        };
        let Some(cs) = get(CONF_STATE)? else {
            return Ok(None);
        };
        let corrupt = |what, detail: String| StorageError::Corrupt {
            group: g,
            what,
            detail,
        };
        let conf_state: ConfState = unpb(&cs).map_err(|e| corrupt("conf state", e.to_string()))?;
        let hard_state: HardState = match get(HARD_STATE)? {
            Some(b) => unpb(&b).map_err(|e| corrupt("hard state", e.to_string()))?,
            None => HardState::default(),
        };
        let truncated = match get(TRUNCATED)? {
            Some(b) => {
                decode_truncated(&b).ok_or_else(|| corrupt("truncated", format!("{b:?}")))?
            }
            None => Truncated::default(),
        };
        let applied = match get(APPLIED)? {
            Some(b) => u64::from_be_bytes(
                b.as_slice()
                    .try_into()
                    .map_err(|_| corrupt("applied", format!("{b:?}")))?,
            ),
            None => 0,
        };
        let mut entries = Vec::new();
        let log = tx.open_table(LOG)?;
        for row in log.range((g, truncated.index + 1)..=(g, u64::MAX))? {
            let (k, v) = row?;
            let e: Entry = unpb(v.value()).map_err(|e| corrupt("log entry", e.to_string()))?;
            let want = truncated.index + 1 + entries.len() as u64;
            if k.value().1 != want || e.index != want {
                return Err(corrupt(
                    "log",
                    format!("gap: expected index {want}, found {}", e.index),
                ));
            }
            entries.push(e);
        }
        let mut state = StateSnapshot {
            group_id: g,
            ..Default::default()
        };
        for row in tx.open_table(TICKETS)?.range((g, "")..(g + 1, ""))? {
            let (_, v) = row?;
            state
                .tickets
                .push(Ticket::decode(v.value()).map_err(|e| corrupt("ticket", e.to_string()))?);
        }
        for row in tx.open_table(SEQUENCES)?.range((g, 0)..=(g, u32::MAX))? {
            let (k, v) = row?;
            state.sequences.push(DaySequence {
                day: k.value().1,
                last: v.value(),
            });
        }
        for row in tx.open_table(REQUESTS)?.range((g, 0)..=(g, u64::MAX))? {
            let (_, v) = row?;
            state.requests.push(
                RequestSeen::decode(v.value()).map_err(|e| corrupt("request", e.to_string()))?,
            );
        }
        for row in tx.open_table(OUTBOX)?.range((g, "")..(g + 1, ""))? {
            let (_, v) = row?;
            state.outbox.push(
                Notification::decode(v.value())
                    .map_err(|e| corrupt("notification", e.to_string()))?,
            );
        }
        // Outbox rows are keyed by id; the state machine orders by time.
        state
            .outbox
            .sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        for row in tx.open_table(TRANSFERS)?.range((g, "")..(g + 1, ""))? {
            let (_, v) = row?;
            state.transfers.push(
                TransferRecord::decode(v.value())
                    .map_err(|e| corrupt("transfer", e.to_string()))?,
            );
        }
        if let Some(v) = tx.open_table(SM_META)?.get((g, POLICY))? {
            state.policy =
                Some(Policy::decode(v.value()).map_err(|e| corrupt("policy", e.to_string()))?);
        }
        Ok(Some(Recovered {
            hard_state,
            conf_state,
            truncated,
            entries,
            applied,
            state,
        }))
    }
}

/// The state-machine tables of one write transaction.
struct Rows<'t> {
    tickets: redb::Table<'t, (u64, &'static str), &'static [u8]>,
    seqs: redb::Table<'t, (u64, u32), u64>,
    reqs: redb::Table<'t, (u64, u64), &'static [u8]>,
    outbox: redb::Table<'t, (u64, &'static str), &'static [u8]>,
    sm_meta: redb::Table<'t, (u64, &'static str), &'static [u8]>,
    transfers: redb::Table<'t, (u64, &'static str), &'static [u8]>,
}

impl Rows<'_> {
    /// Deletes every state row of group `g` (a snapshot replaces them).
    fn clear(&mut self, g: u64) -> Result<(), StorageError> {
        self.tickets.retain_in((g, "")..(g + 1, ""), |_, _| false)?;
        self.seqs.retain_in((g, 0)..=(g, u32::MAX), |_, _| false)?;
        self.reqs.retain_in((g, 0)..=(g, u64::MAX), |_, _| false)?;
        self.outbox.retain_in((g, "")..(g + 1, ""), |_, _| false)?;
        self.sm_meta.retain_in((g, "")..(g + 1, ""), |_, _| false)?;
        self.transfers
            .retain_in((g, "")..(g + 1, ""), |_, _| false)?;
        Ok(())
    }

    fn put_transfers(
        &mut self,
        g: u64,
        rs: &[impl std::borrow::Borrow<TransferRecord>],
    ) -> Result<(), StorageError> {
        for r in rs.iter().map(std::borrow::Borrow::borrow) {
            let id = r
                .envelope
                .as_ref()
                .map(|e| e.transfer_id.as_str())
                .unwrap_or("");
            self.transfers
                .insert((g, id), r.encode_to_vec().as_slice())?;
        }
        Ok(())
    }

    /// Upserts rows of group `g`.
    fn put(
        &mut self,
        g: u64,
        ts: &[impl std::borrow::Borrow<Ticket>],
        ds: &[DaySequence],
        rs: &[RequestSeen],
        ns: &[Notification],
        policy: Option<&Policy>,
    ) -> Result<(), StorageError> {
        for t in ts.iter().map(std::borrow::Borrow::borrow) {
            self.tickets
                .insert((g, t.id.as_str()), t.encode_to_vec().as_slice())?;
        }
        for d in ds {
            self.seqs.insert((g, d.day), d.last)?;
        }
        for r in rs {
            self.reqs
                .insert((g, r.request_id), r.encode_to_vec().as_slice())?;
        }
        for n in ns {
            self.outbox
                .insert((g, n.id.as_str()), n.encode_to_vec().as_slice())?;
        }
        if let Some(p) = policy {
            self.sm_meta
                .insert((g, POLICY), p.encode_to_vec().as_slice())?;
        }
        Ok(())
    }
}

fn pb(m: &impl protobuf::Message) -> Vec<u8> {
    m.write_to_bytes().expect("raft types encode")
}

/// Decodes with `merge_from_bytes` (works with either raft codec; see
/// research notes on `parse_from_bytes`).
fn unpb<M: protobuf::Message + Default>(b: &[u8]) -> Result<M, protobuf::ProtobufError> {
    let mut m = M::default();
    m.merge_from_bytes(b)?;
    Ok(m)
}

fn encode_truncated(t: Truncated) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&t.index.to_be_bytes());
    b[8..].copy_from_slice(&t.term.to_be_bytes());
    b
}

fn decode_truncated(b: &[u8]) -> Option<Truncated> {
    let b: [u8; 16] = b.try_into().ok()?;
    Some(Truncated {
        index: u64::from_be_bytes(b[..8].try_into().ok()?),
        term: u64::from_be_bytes(b[8..].try_into().ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Replica, ReplicaConfig};
    use hotline_proto::v1::{AcceptRequest, Command, Kind, command};

    /// A single-voter group through the whole loop, then restart from disk.
    #[test]
    fn single_voter_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ReplicaConfig::new(1, 310114, "310114");
        let mut st = Storage::open(dir.path()).unwrap();
        let mut r = Replica::new(cfg.clone(), Recovered::bootstrap(&[1])).unwrap();
        let run = |r: &mut Replica, st: &mut Storage| {
            for _ in 0..50 {
                r.tick();
                while r.has_ready() {
                    let rd = r.ready();
                    st.write(&[&rd.write]).unwrap();
                    r.on_persisted();
                }
            }
        };
        run(&mut r, &mut st);
        assert!(r.is_leader());
        for i in 0..5u64 {
            let cmd = Command {
                request_id: i + 1,
                at_ms: 1_795_831_200_000,
                op: Some(command::Op::Accept(AcceptRequest {
                    region: "310114".into(),
                    kind: Kind::Help as i32,
                    category: "民政".into(),
                    text: format!("t{i}"),
                    phone: "13900000000".into(),
                    ..Default::default()
                })),
            };
            r.propose(&cmd).unwrap();
        }
        run(&mut r, &mut st);
        assert_eq!(r.tickets().len(), 5);
        let applied = r.applied();
        drop(r);
        drop(st);
        let st = Storage::open(dir.path()).unwrap();
        let rec = st.load(310114).unwrap().expect("state on disk");
        assert_eq!(rec.applied, applied);
        assert_eq!(rec.state.tickets.len(), 5);
        // The rest of the state machine too: each accept queued a notice
        // for its requester.
        assert_eq!(rec.state.outbox.len(), 5, "outbox rows on disk");
        let r = Replica::new(cfg, rec).unwrap();
        assert_eq!(r.tickets().len(), 5);
        assert_eq!(r.tickets().outbox_len(), 5);
        assert!(st.load(1).unwrap().is_none());
    }

    /// The audit chain catches an event altered on disk behind the state
    /// machine's back (e.g. by someone with access to the redb file).
    #[test]
    fn an_event_altered_on_disk_breaks_the_chain() {
        use crate::core::tickets::verify_ticket;
        use hotline_proto::v1::{Actor, Dispatch, Role, TicketCommand, ticket_command::Op};
        use redb::ReadableTable;
        let dir = tempfile::tempdir().unwrap();
        let cfg = ReplicaConfig::new(1, 310114, "310114");
        let mut st = Storage::open(dir.path()).unwrap();
        let mut r = Replica::new(cfg, Recovered::bootstrap(&[1])).unwrap();
        let run = |r: &mut Replica, st: &mut Storage| {
            for _ in 0..50 {
                r.tick();
                while r.has_ready() {
                    let rd = r.ready();
                    st.write(&[&rd.write]).unwrap();
                    r.on_persisted();
                }
            }
        };
        run(&mut r, &mut st);
        let at = 1_795_831_200_000;
        r.propose(&Command {
            request_id: 1,
            at_ms: at,
            op: Some(command::Op::Accept(AcceptRequest {
                region: "310114".into(),
                kind: Kind::Complaint as i32,
                category: "城乡建设".into(),
                text: "路灯不亮".into(),
                phone: "13900000000".into(),
                ..Default::default()
            })),
        })
        .unwrap();
        run(&mut r, &mut st);
        let id = r.tickets().tickets().next().unwrap().id.clone();
        r.propose(&Command {
            request_id: 2,
            at_ms: at + 1000,
            op: Some(command::Op::Ticket(TicketCommand {
                ticket_id: id.clone(),
                actor: Some(Actor {
                    id: "话务员1".into(),
                    role: Role::CallTaker as i32,
                }),
                reason: "派往路灯所".into(),
                op: Some(Op::Dispatch(Dispatch {
                    lead_unit: "嘉定区路灯管理所".into(),
                    ..Default::default()
                })),
            })),
        })
        .unwrap();
        run(&mut r, &mut st);
        drop(r);

        // Intact on disk.
        let rec = st.load(310114).unwrap().unwrap();
        assert_eq!(verify_ticket(&rec.state.tickets[0]), Ok(2));

        // Rewrite the dispatch event's reason directly in redb.
        {
            let tx = st.db.begin_write().unwrap();
            {
                let mut t = tx.open_table(TICKETS).unwrap();
                let mut ticket =
                    Ticket::decode(t.get((310114, id.as_str())).unwrap().unwrap().value()).unwrap();
                ticket.events[1].reason = "派往别处".into();
                t.insert((310114, id.as_str()), ticket.encode_to_vec().as_slice())
                    .unwrap();
            }
            tx.commit().unwrap();
        }
        let rec = st.load(310114).unwrap().unwrap();
        let b = verify_ticket(&rec.state.tickets[0]).unwrap_err();
        assert_eq!(b.seq, 2, "{}", b.detail);
        assert!(b.detail.contains("altered"), "{}", b.detail);
    }
}
