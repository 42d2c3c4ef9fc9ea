//! `LogStore`: the in-memory view of one group's Raft log that raft-rs reads
//! through its `Storage` trait.
//!
//! Why in memory: the core must not do IO, yet raft-rs reads the log
//! synchronously. So the core keeps the unstable-and-stable tail of the log
//! here and tells its driver, through `WriteBatch`, what to make durable. The
//! driver loads this view back from disk on restart (`Recovered`). The tail is
//! bounded by compaction (`ReplicaConfig::compact_log_entries`).

use std::cell::Cell;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

/// Index and term of the last entry removed from the log (by compaction or
/// by installing a snapshot). `term(index)` must stay answerable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Truncated {
    pub index: u64,
    pub term: u64,
}

#[derive(Default)]
pub struct LogStore {
    hard_state: HardState,
    conf_state: ConfState,
    truncated: Truncated,
    /// entries[i].index == truncated.index + 1 + i
    entries: Vec<Entry>,
    /// Payload bytes (data + context) of `entries`: what the replica's
    /// byte bound on the log (`ReplicaConfig::compact_log_bytes`) counts.
    bytes: u64,
    /// Last snapshot built by the replica, served to lagging followers.
    snapshot: Option<Snapshot>,
    /// Set when raft asked for a snapshot newer than the cached one; the
    /// replica builds one at its applied index after the current step.
    /// A `Cell` because `Storage::snapshot` takes `&self`.
    snapshot_wanted: Cell<bool>,
}

impl LogStore {
    pub fn new(hs: HardState, cs: ConfState, truncated: Truncated, entries: Vec<Entry>) -> Self {
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(e.index, truncated.index + 1 + i as u64, "log has a gap");
        }
        let bytes = entries.iter().map(payload_bytes).sum();
        LogStore {
            hard_state: hs,
            conf_state: cs,
            truncated,
            entries,
            bytes,
            snapshot: None,
            snapshot_wanted: Cell::new(false),
        }
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    pub fn truncated(&self) -> Truncated {
        self.truncated
    }

    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    pub fn set_commit(&mut self, commit: u64) {
        self.hard_state.commit = commit;
    }

    pub fn set_conf_state(&mut self, cs: ConfState) {
        self.conf_state = cs;
    }

    pub fn first(&self) -> u64 {
        self.truncated.index + 1
    }

    pub fn last(&self) -> u64 {
        self.truncated.index + self.entries.len() as u64
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Payload bytes held in the log.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The smallest index up to which compacting (never past `upto`)
    /// leaves at most `target_bytes` of payload in the log.
    pub fn index_to_fit(&self, target_bytes: u64, upto: u64) -> u64 {
        let mut held = self.bytes;
        let mut index = self.truncated.index;
        for e in &self.entries {
            if held <= target_bytes || e.index > upto {
                break;
            }
            held -= payload_bytes(e);
            index = e.index;
        }
        index
    }

    /// Appends entries, first dropping any existing entries at or after the
    /// first new index (a new leader overwrote a conflicting tail).
    pub fn append(&mut self, ents: &[Entry]) {
        let Some(first_new) = ents.first().map(|e| e.index) else {
            return;
        };
        assert!(
            first_new > self.truncated.index,
            "append at {first_new} overwrites compacted log (truncated {})",
            self.truncated.index
        );
        assert!(
            first_new <= self.last() + 1,
            "append at {first_new} leaves a gap after {}",
            self.last()
        );
        let keep = (first_new - self.first()) as usize;
        for e in &self.entries[keep..] {
            self.bytes -= payload_bytes(e);
        }
        self.entries.truncate(keep);
        self.entries.extend_from_slice(ents);
        self.bytes += ents.iter().map(payload_bytes).sum::<u64>();
    }

    /// Drops entries up to and including `index` (which must be applied).
    pub fn compact(&mut self, index: u64) {
        if index <= self.truncated.index {
            return;
        }
        assert!(
            index <= self.last(),
            "compact {index} past last {}",
            self.last()
        );
        let term = self.term_of(index).expect("term of compaction index");
        let drop = (index - self.truncated.index) as usize;
        for e in self.entries.drain(..drop) {
            self.bytes -= payload_bytes(&e);
        }
        self.truncated = Truncated { index, term };
    }

    /// Replaces the whole log by a snapshot's position.
    pub fn install_snapshot(&mut self, meta: &SnapshotMetadata) {
        self.entries.clear();
        self.bytes = 0;
        self.truncated = Truncated {
            index: meta.index,
            term: meta.term,
        };
        self.conf_state = meta.get_conf_state().clone();
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        self.hard_state.term = self.hard_state.term.max(meta.term);
    }

    pub fn term_of(&self, idx: u64) -> Option<u64> {
        if idx == self.truncated.index {
            return Some(self.truncated.term);
        }
        if idx < self.first() || idx > self.last() {
            return None;
        }
        Some(self.entries[(idx - self.first()) as usize].term)
    }

    pub fn set_snapshot(&mut self, snap: Snapshot) {
        self.snapshot = Some(snap);
        self.snapshot_wanted.set(false);
    }

    pub fn snapshot_wanted(&self) -> bool {
        self.snapshot_wanted.get()
    }
}

fn payload_bytes(e: &Entry) -> u64 {
    (e.data.len() + e.context.len()) as u64
}

impl Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _ctx: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        assert!(
            high <= self.last() + 1,
            "entries({low},{high}) past last {}",
            self.last()
        );
        let lo = (low - self.first()) as usize;
        let hi = (high - self.first()) as usize;
        let max_size = max_size.into().unwrap_or(u64::MAX);
        // The contract: always return at least one entry, even if it alone
        // exceeds max_size, or replication stalls on a large entry.
        let mut size = 0u64;
        let mut out = Vec::with_capacity(hi - lo);
        for e in &self.entries[lo..hi] {
            size += protobuf::Message::compute_size(e) as u64;
            if !out.is_empty() && size > max_size {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.truncated.index {
            return Ok(self.truncated.term);
        }
        if idx < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.term_of(idx)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let need = request_index.max(self.truncated.index);
        match &self.snapshot {
            Some(s) if s.get_metadata().index >= need => Ok(s.clone()),
            _ => {
                self.snapshot_wanted.set(true);
                Err(raft::Error::Store(
                    StorageError::SnapshotTemporarilyUnavailable,
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    fn sized(index: u64, term: u64, bytes: usize) -> Entry {
        Entry {
            index,
            term,
            data: vec![7u8; bytes].into(),
            ..Default::default()
        }
    }

    #[test]
    fn payload_bytes_follow_appends_overwrites_compactions_and_snapshots() {
        let mut s = LogStore::new(
            HardState::default(),
            ConfState::default(),
            Truncated::default(),
            vec![sized(1, 1, 100)],
        );
        assert_eq!(s.bytes(), 100);
        s.append(&[sized(2, 1, 10), sized(3, 1, 20), sized(4, 1, 40)]);
        assert_eq!(s.bytes(), 170);
        // A new leader overwrites 3 and 4 with one entry.
        s.append(&[sized(3, 2, 5)]);
        assert_eq!(s.bytes(), 115);
        s.compact(2);
        assert_eq!(s.bytes(), 5);
        s.install_snapshot(&SnapshotMetadata {
            index: 9,
            term: 2,
            ..Default::default()
        });
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn index_to_fit_drops_from_the_front_and_never_past_the_bound() {
        let mut s = LogStore::default();
        s.append(&[
            sized(1, 1, 100),
            sized(2, 1, 100),
            sized(3, 1, 100),
            sized(4, 1, 100),
        ]);
        assert_eq!(s.index_to_fit(400, 4), 0, "already fits");
        assert_eq!(s.index_to_fit(250, 4), 2);
        assert_eq!(s.index_to_fit(0, 4), 4);
        assert_eq!(s.index_to_fit(0, 3), 3, "stops at `upto`");
    }

    #[test]
    fn append_truncates_conflicting_tail() {
        let mut s = LogStore::default();
        s.append(&[ent(1, 1), ent(2, 1), ent(3, 1)]);
        s.append(&[ent(2, 2)]);
        assert_eq!(s.last(), 2);
        assert_eq!(s.term(2).unwrap(), 2);
        assert!(s.term(3).is_err());
    }

    #[test]
    fn compaction_keeps_term_of_truncated_index() {
        let mut s = LogStore::default();
        s.append(&[ent(1, 1), ent(2, 1), ent(3, 2)]);
        s.compact(2);
        assert_eq!(s.first(), 3);
        assert_eq!(s.term(2).unwrap(), 1);
        assert!(matches!(
            s.entries(1, 3, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        let got = s
            .entries(3, 4, Some(0), GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(got.len(), 1, "at least one entry even over max_size");
    }

    #[test]
    fn stale_snapshot_is_rebuilt_on_demand() {
        let mut s = LogStore::default();
        s.append(&[ent(1, 1), ent(2, 1)]);
        s.compact(2);
        assert!(s.snapshot(0, 0).is_err());
        assert!(s.snapshot_wanted());
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 2;
        s.set_snapshot(snap);
        assert_eq!(s.snapshot(0, 0).unwrap().get_metadata().index, 2);
        assert!(!s.snapshot_wanted());
    }
}
