//! `MemDisk`: one node's simulated disk for one group.
//!
//! It keeps two copies: `synced` (what survives a crash) and `pending`
//! (written but not yet fsynced). A write with `must_sync` syncs everything
//! pending, as an fsync does; a crash drops what is pending.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use hotline_node::core::log::Truncated;
use hotline_node::core::{Recovered, WriteBatch};
use hotline_proto::v1::{
    DaySequence, DirectoryImage, Notification, Policy, RequestSeen, StateSnapshot, Ticket,
    TransferRecord,
};

fn transfer_key(r: &TransferRecord) -> String {
    r.envelope
        .as_ref()
        .map(|e| e.transfer_id.clone())
        .unwrap_or_default()
}
use raft::eraftpb::{ConfState, Entry, HardState};

#[derive(Clone, Debug, Default)]
struct Image {
    hard_state: HardState,
    conf_state: ConfState,
    truncated: Truncated,
    log: BTreeMap<u64, Entry>,
    applied: u64,
    /// A simulated national day keeps millions of tickets on ≈ 10,000
    /// simulated disks. The disk keeps the state machine's own copy of each
    /// ticket and transfer record (an `Arc` taken from the batch, shared by
    /// the group's replicas when they agree), not a copy of its own: what is
    /// durable is unchanged (a batch reaches `synced` only when its fsync
    /// completes, and a record is immutable once written).
    tickets: BTreeMap<String, Arc<Ticket>>,
    sequences: BTreeMap<u32, u64>,
    requests: BTreeMap<u64, RequestSeen>,
    outbox: BTreeMap<String, Notification>,
    policy: Option<Policy>,
    directory: Option<DirectoryImage>,
    transfers: BTreeMap<String, Arc<TransferRecord>>,
}

impl Image {
    /// Applies one synced batch, taking its records (a disk keeps what it is
    /// given; nothing else holds the batch afterwards).
    fn apply(&mut self, wb: WriteBatch) {
        if let Some(s) = wb.snapshot {
            // A node's storage keys tickets by accept time and deletes a
            // replaced state's tickets by the keys the replica names
            // (`SnapshotInstall::replaced_tickets`): every ticket this disk
            // holds must be named, under its time, or a real disk would
            // keep a stale row that comes back at the next start.
            let named: BTreeSet<(i64, &str)> = s
                .replaced_tickets
                .iter()
                .map(|(at_ms, id)| (*at_ms, id.as_str()))
                .collect();
            for t in self.tickets.values() {
                assert!(
                    named.contains(&(t.accepted_at_ms, t.id.as_str())),
                    "a snapshot install does not name ticket {} (accepted at {}) held on disk",
                    t.id,
                    t.accepted_at_ms
                );
            }
            *self = Image {
                hard_state: std::mem::take(&mut self.hard_state),
                conf_state: s.conf_state,
                truncated: Truncated {
                    index: s.index,
                    term: s.term,
                },
                applied: s.index,
                ..Default::default()
            };
            self.hard_state.commit = self.hard_state.commit.max(s.index);
            self.hard_state.term = self.hard_state.term.max(s.term);
            for t in s.state.tickets {
                self.tickets.insert(t.id.clone(), Arc::new(t));
            }
            for d in &s.state.sequences {
                self.sequences.insert(d.day, d.last);
            }
            for r in s.state.requests {
                self.requests.insert(r.request_id, r);
            }
            for n in s.state.outbox {
                self.outbox.insert(n.id.clone(), n);
            }
            self.policy = s.state.policy;
            self.directory = s.state.directory;
            for r in s.state.transfers {
                self.transfers.insert(transfer_key(&r), Arc::new(r));
            }
        }
        if let Some(first) = wb.entries.first() {
            // A new leader may overwrite a conflicting tail (rare: most
            // batches append after the last entry, and split_off allocates).
            if self
                .log
                .last_key_value()
                .is_some_and(|(&last, _)| last >= first.index)
            {
                let _ = self.log.split_off(&first.index);
            }
            for e in wb.entries {
                self.log.insert(e.index, e);
            }
        }
        if let Some(hs) = wb.hard_state {
            self.hard_state = hs;
        }
        if let Some(cs) = wb.conf_state {
            self.conf_state = *cs;
        }
        let sm = wb.sm;
        for t in sm.tickets {
            match self.tickets.get_mut(&t.id) {
                Some(held) => *held = t,
                None => {
                    self.tickets.insert(t.id.clone(), t);
                }
            }
        }
        for d in &sm.sequences {
            self.sequences.insert(d.day, d.last);
        }
        for r in sm.requests_put {
            self.requests.insert(r.request_id, r);
        }
        for (_, id) in &sm.requests_del {
            self.requests.remove(id);
        }
        for n in sm.outbox_put {
            self.outbox.insert(n.id.clone(), n);
        }
        for (_, id) in &sm.outbox_del {
            self.outbox.remove(id);
        }
        if let Some(p) = sm.policy {
            self.policy = Some(*p);
        }
        if let Some(d) = sm.directory {
            self.directory = Some(*d);
        }
        for r in sm.transfers_put {
            let id = r.envelope.as_ref().map_or("", |e| e.transfer_id.as_str());
            match self.transfers.get_mut(id) {
                Some(held) => *held = r,
                None => {
                    self.transfers.insert(transfer_key(&r), r);
                }
            }
        }
        for id in &sm.transfers_del {
            self.transfers.remove(id);
        }
        if let Some(a) = wb.applied {
            self.applied = a;
        }
        if let Some(t) = wb.compact {
            self.log = self.log.split_off(&(t.index + 1));
            self.truncated = t;
        }
    }

    fn recovered(&self, group_id: u64) -> Recovered {
        Recovered {
            hard_state: self.hard_state.clone(),
            conf_state: self.conf_state.clone(),
            truncated: self.truncated,
            entries: self.log.values().cloned().collect(),
            applied: self.applied,
            state: StateSnapshot {
                group_id,
                tickets: self.tickets.values().map(|t| (**t).clone()).collect(),
                sequences: self
                    .sequences
                    .iter()
                    .map(|(&day, &last)| DaySequence { day, last })
                    .collect(),
                requests: self.requests.values().cloned().collect(),
                policy: self.policy.clone(),
                directory: self.directory.clone(),
                transfers: self.transfers.values().map(|r| (**r).clone()).collect(),
                outbox: {
                    let mut o: Vec<Notification> = self.outbox.values().cloned().collect();
                    o.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
                    o
                },
            },
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct MemDisk {
    synced: Image,
    pending: Vec<WriteBatch>,
    /// Nothing is ever read back (see [`MemDisk::unread`]): batches are
    /// counted and dropped.
    unread: bool,
    pub writes: u64,
    pub syncs: u64,
}

impl MemDisk {
    /// A disk that no crash will ever read: the run's fault schedule has no
    /// crash, so no replica recovers from it, and what it holds could
    /// change nothing observable. It counts writes and syncs and keeps
    /// nothing. On a national day the disks' copies of every replica's
    /// state machine were ≈ 15 % of the CPU (one more ordered map insert per
    /// record and replica) and a sizable share of the memory; the fsync
    /// latency the replicas wait for is the engine's (`Persisted` events),
    /// not the disk's, so it is unchanged.
    pub fn unread() -> MemDisk {
        MemDisk {
            unread: true,
            ..MemDisk::default()
        }
    }

    pub fn write(&mut self, wb: WriteBatch) {
        let sync = wb.must_sync;
        self.stage(wb);
        if sync {
            self.sync();
        }
    }

    /// Queues a batch without syncing it (the simulator syncs when its
    /// simulated fsync completes; a crash before that loses the batch).
    pub fn stage(&mut self, wb: WriteBatch) {
        self.writes += 1;
        if !self.unread {
            self.pending.push(wb);
        }
    }

    pub fn sync(&mut self) {
        self.syncs += 1;
        for wb in self.pending.drain(..) {
            self.synced.apply(wb);
        }
    }

    /// A crash: what was not synced is gone.
    pub fn crash(&mut self) {
        self.pending.clear();
    }

    pub fn is_blank(&self) -> bool {
        assert!(!self.unread, "a disk that nothing reads was read");
        self.synced.conf_state.voters.is_empty() && self.synced.log.is_empty()
    }

    pub fn recovered(&self, group_id: u64) -> Recovered {
        assert!(!self.unread, "a disk that nothing reads was read");
        self.synced.recovered(group_id)
    }
}
