//! Durable storage of a node: a write-ahead log for raft and one redb
//! database for the state machines, shared by all the node's groups.
//!
//! The split (etcd's WAL + bbolt, TiKV's raft-engine + RocksDB):
//! - Every driver loop appends its groups' new entries and hard states to
//!   the WAL (`wal.rs`) in one frame and syncs it once when any of them
//!   must be durable (group commit): this is the acknowledgement path.
//! - State-machine rows are not written per loop. They collect in memory
//!   (`Dirty`, the last version of each row) and reach redb at a
//!   checkpoint: one redb transaction with `Durability::Immediate`, made
//!   on a background thread about once a second or every
//!   `CHECKPOINT_ROWS` rows, holding every changed group's rows, applied
//!   index, hard and conf state, and its log tail after the applied index.
//!   It also records the first WAL segment still needed; older ones are
//!   deleted.
//! - Recovery reads the checkpoint and replays the later segments into the
//!   groups' logs and hard states; raft then re-applies the entries after
//!   the checkpoint's applied index (the state machine is deterministic).
//!
//! Why redb for the state machines: pure Rust (no C++ toolchain on CI),
//! ACID with copy-on-write B-trees and checksummed commit slots,
//! `Durability::Immediate` = fsync before `commit` returns.
//!
//! Invariants:
//! - redb always holds a consistent cut: a group's rows, applied index,
//!   conf state and log tail from the same loop boundary, and the WAL from
//!   `replay_from` on holds everything after that cut.
//! - A write carrying a snapshot or a configuration change is checkpointed
//!   before `write` returns: the conf state is never in the WAL, so a
//!   configuration change is never re-applied after a restart.
//! - Every row's key names its group, so a node's groups never mix: first
//!   in the small tables, after the time in those that grow with every
//!   accept (`TICKETS`, `REQUESTS`, `OUTBOX`).
//! - A ticket's row is keyed by its accept time, which never changes; a
//!   snapshot's install deletes the rows of the tickets it replaces by
//!   those keys.
//! - The layout is `FORMAT_VERSION`, recorded in the `node` table; a
//!   directory of another layout is refused at open.
//! - This module is the only code that touches redb or the WAL files.

mod wal;

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hotline_node_core_types::*;
use prost::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::core::log::Truncated;
use crate::core::tickets::TimeKeys;
use crate::core::{Recovered, WriteBatch};

mod hotline_node_core_types {
    pub use hotline_proto::v1::{
        DaySequence, DirectoryImage, Notification, Policy, RaftImage, RequestSeen, StateSnapshot,
        Ticket, TransferRecord,
    };
}

/// group → prost encoded `RaftImage`: hard and conf state, applied index
/// and term, and the log tail after the applied index — one row per group,
/// rewritten whole by each checkpoint the group changed in. Until format 4
/// these were four rows of a `raft_meta` table and a row per tail entry in
/// `raft_log`: each changed group cost a checkpoint a range delete and
/// 5–6 inserts in two tables instead of one insert: in perf of a node
/// hosting 64 busy groups, ≈ a third of what its checkpoints spent beyond
/// one group's (the throughput gain was within the VM's spread;
/// BENCHMARKS.md, 2 Dec).
const IMAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_images");
/// (accepted_at_ms, group, ticket id) → prost encoded `Ticket`. Time
/// first, as `REQUESTS` below: a checkpoint's new tickets of all groups land
/// at one right edge. Keyed by group first, each changed group rewrote an
/// edge leaf of its own (and split it half full) at every checkpoint — on a
/// node hosting 64 busy groups 0.66 KiB more written per accept
/// (BENCHMARKS.md). A ticket's accept time never changes (asserted where
/// the state machine stores a version), so an update finds its row. Lookups
/// happen in memory; rows are read at start, one scan for all groups
/// ([`read_time_rows`]); a snapshot's install deletes the replaced tickets
/// by key (`SnapshotInstall::replaced_tickets`), not by a scan.
const TICKETS: TableDefinition<(i64, u64, &str), &[u8]> =
    TableDefinition::new("tickets_by_time_then_group");
/// (group, yyyymmdd) → last sequence number of that day.
const SEQUENCES: TableDefinition<(u64, u32), u64> = TableDefinition::new("sequences");
/// (at_ms, group, request id) → prost encoded `RequestSeen`. Keyed by time
/// first, not by the (random) request id nor by group: the requests of one
/// checkpoint, whatever groups they belong to, land in a few B-tree leaves
/// at the one right edge instead of one leaf each (a 4 KiB page written and
/// checksummed per 40-byte row), and expiry deletes from the left edge.
/// Group first would give each changed group an edge leaf of its own per
/// checkpoint: on a node hosting 64 busy groups that was ≈ 10 % of its
/// throughput (BENCHMARKS.md). Lookups by request id happen in memory; a
/// group's rows are read in one scan for all groups at start.
const REQUESTS: TableDefinition<(i64, u64, u64), &[u8]> =
    TableDefinition::new("requests_by_time_then_group");
/// (created_at_ms, group, notification id) → prost encoded `Notification`
/// (the outbox): time first for the reason above — most notifications are
/// written and deleted within seconds, the deletes near the same edge.
const OUTBOX: TableDefinition<(i64, u64, &str), &[u8]> =
    TableDefinition::new("outbox_by_time_then_group");
/// (group, key) → state-machine values that are not rows; keys below.
const SM_META: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("sm_meta");
/// (group, transfer id) → prost encoded `TransferRecord` (custody log).
const TRANSFERS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("transfers");
/// group → when its replica was purged from this node (Unix ms): a
/// tombstone, so that a start does not bootstrap the group again from the
/// topology file (TiKV keeps one per destroyed peer for the same reason).
/// It ends with the first write that brings the group's configuration
/// again (the snapshot of a node added back), in that write's checkpoint;
/// not with any write: an empty replica made on a leader's message writes
/// its term before any configuration, and without the tombstone a start
/// would then bootstrap the group from the file. A table that older
/// directories lack is created at open, so the layout's format is
/// unchanged.
const PURGED: TableDefinition<u64, u64> = TableDefinition::new("purged_groups");
/// Node-wide values; keys below.
const NODE: TableDefinition<&str, u64> = TableDefinition::new("node");
const POLICY: &str = "policy";
/// The replicated directory's row in `SM_META` (national group only).
const DIRECTORY: &str = "directory";

/// The first WAL segment a recovery must replay.
const REPLAY_FROM: &str = "wal_replay_from";
/// The layout of the tables above, checked at open: a directory written in
/// another layout is refused rather than half read.
const FORMAT: &str = "format";
/// 4: a group's raft state in one row (`IMAGES`); 3: tickets keyed by
/// time, then group; 2: requests and outbox keyed by time, then group; 1:
/// everything group first.
const FORMAT_VERSION: u64 = 4;

/// redb's page cache. The state machines live in memory and redb is only
/// written at checkpoints and read at start, so its default 1 GiB cache
/// would only hold copies: under load it grew the node by ≈2 KiB per ticket
/// and the kernel's zeroing of those fresh pages was the top of the
/// profile.
const REDB_CACHE_BYTES: usize = 64 << 20;

/// A checkpoint starts once this many rows are waiting in memory (about a
/// thousand accepts: small checkpoints keep each fsync short, and the WAL's
/// fdatasyncs, queued behind it on the same disk, with it; 16,384 gave a
/// p99 of 72–81 ms at 128 clients, 4,096 58–60 ms — BENCHMARKS.md)...
pub const CHECKPOINT_ROWS: usize = 4_096;
/// ...or this many WAL bytes were written since the last one...
pub const CHECKPOINT_WAL_BYTES: u64 = 64 << 20;
/// ...or this long after the last one, if anything changed.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// While a checkpoint is still being written, rows keep collecting up to
/// this many; then the loop waits for it (back-pressure, bounded memory).
pub const MAX_DIRTY_ROWS: usize = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("redb: {0}")]
    Redb(#[from] redb::Error),
    #[error("wal: {0}")]
    Wal(#[from] std::io::Error),
    #[error("corrupt {what} in group {group}: {detail}")]
    Corrupt {
        group: u64,
        what: &'static str,
        detail: String,
    },
    #[error("checkpoint thread panicked")]
    CheckpointPanicked,
    #[error(
        "{dir}: data written in storage format {found}, this build reads format {expected}; \
         move the directory away (or remove it): a node of a running cluster then catches up \
         from its peers"
    )]
    Format {
        dir: PathBuf,
        found: u64,
        expected: u64,
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

/// A group's raft state as the node knows it now: the checkpoint's, moved
/// on by every write (and at start by the WAL's replay).
#[derive(Clone, Debug, Default)]
struct Image {
    hard_state: HardState,
    conf_state: Option<ConfState>,
    applied: u64,
    /// Term of the entry at `applied` (the log's truncation point).
    applied_term: u64,
    /// The entries after `applied`, contiguous.
    tail: VecDeque<Entry>,
}

impl Image {
    /// Appends entries; stored entries at or after the first one's index
    /// are replaced (a new leader may overwrite a conflicting tail).
    fn append(&mut self, g: u64, entries: &[Entry]) {
        // Entries at or below `applied` are already in the state machine;
        // raft never rewrites them.
        let entries: Vec<&Entry> = entries.iter().filter(|e| e.index > self.applied).collect();
        let Some(first) = entries.first() else {
            return;
        };
        let keep = (first.index - self.applied - 1) as usize;
        self.tail.truncate(keep);
        let last = self.tail.back().map_or(self.applied, |e| e.index);
        assert_eq!(
            last + 1,
            first.index,
            "group {g}: appending at {} leaves a gap after {last}",
            first.index
        );
        self.tail.extend(entries.into_iter().cloned());
    }

    /// Moves the applied index to `a`, dropping the entries it covers.
    fn apply_to(&mut self, g: u64, a: u64) {
        if a <= self.applied {
            return;
        }
        while self.tail.front().is_some_and(|e| e.index <= a) {
            let e = self.tail.pop_front().expect("front exists");
            self.applied_term = e.term;
            self.applied = e.index;
        }
        assert_eq!(self.applied, a, "group {g}: applied {a} is not in the log");
    }

    /// The row of `IMAGES`.
    fn encode(&self) -> Vec<u8> {
        RaftImage {
            hard_state: pb(&self.hard_state),
            conf_state: self.conf_state.as_ref().map(pb),
            applied: self.applied,
            applied_term: self.applied_term,
            entries: self.tail.iter().map(pb).collect(),
        }
        .encode_to_vec()
    }

    fn decode(g: u64, row: &[u8]) -> Result<Image, StorageError> {
        let corrupt = |what, detail: String| StorageError::Corrupt {
            group: g,
            what,
            detail,
        };
        let r = RaftImage::decode(row).map_err(|e| corrupt("raft image", e.to_string()))?;
        let mut img = Image {
            hard_state: unpb(&r.hard_state).map_err(|e| corrupt("hard state", e.to_string()))?,
            conf_state: match &r.conf_state {
                None => None,
                Some(b) => Some(unpb(b).map_err(|e| corrupt("conf state", e.to_string()))?),
            },
            applied: r.applied,
            applied_term: r.applied_term,
            tail: VecDeque::with_capacity(r.entries.len()),
        };
        for b in &r.entries {
            let e: Entry = unpb(b).map_err(|e| corrupt("log entry", e.to_string()))?;
            let want = img.tail.back().map_or(img.applied, |e| e.index) + 1;
            if e.index != want {
                return Err(corrupt(
                    "log",
                    format!("gap: expected index {want}, found {}", e.index),
                ));
            }
            img.tail.push_back(e);
        }
        Ok(img)
    }

    fn recovered(&self, state: StateSnapshot) -> Option<Recovered> {
        Some(Recovered {
            hard_state: self.hard_state.clone(),
            conf_state: self.conf_state.clone()?,
            truncated: Truncated {
                index: self.applied,
                term: self.applied_term,
            },
            entries: self.tail.iter().cloned().collect(),
            applied: self.applied,
            state,
        })
    }
}

/// State-machine rows waiting for the next checkpoint: the last version of
/// each (`None` deletes it).
#[derive(Default)]
struct Dirty {
    /// Groups whose rows a snapshot replaced: cleared before the rows below.
    cleared: BTreeSet<u64>,
    /// Keyed as the table: (accepted_at_ms, group, ticket id).
    tickets: BTreeMap<(i64, u64, String), Option<Vec<u8>>>,
    seqs: BTreeMap<(u64, u32), u64>,
    /// Keyed as the table: (at_ms, group, request id).
    reqs: BTreeMap<(i64, u64, u64), Option<Vec<u8>>>,
    /// Keyed as the table: (created_at_ms, group, notification id).
    outbox: BTreeMap<(i64, u64, String), Option<Vec<u8>>>,
    transfers: BTreeMap<(u64, String), Option<Vec<u8>>>,
    /// Keyed as the table: (group, POLICY | DIRECTORY).
    meta: BTreeMap<(u64, &'static str), Vec<u8>>,
    /// Rows written (an upper bound of the maps' sizes).
    rows: usize,
    /// Groups purged from this node, with when (Unix ms): their image row
    /// and their rows of the group-first tables go, and a tombstone is
    /// written; their rows of the time-first tables go as deletes by key.
    purged: BTreeMap<u64, u64>,
    /// Groups whose tombstone ends (their configuration is written again).
    unpurged: BTreeSet<u64>,
}

impl Dirty {
    fn is_empty(&self) -> bool {
        self.rows == 0
            && self.cleared.is_empty()
            && self.purged.is_empty()
            && self.unpurged.is_empty()
    }

    /// A snapshot replaces every row of `g`. Its tickets are not cleared
    /// here (their table is keyed by time): the replaced ones come as
    /// deletes (`delete_tickets`); pending deletes stay, pending versions
    /// become deletes (they are among the replaced anyway).
    fn clear(&mut self, g: u64) {
        self.cleared.insert(g);
        for (_, v) in self.tickets.iter_mut().filter(|(k, _)| k.1 == g) {
            *v = None;
        }
        self.seqs.retain(|k, _| k.0 != g);
        self.reqs.retain(|k, _| k.1 != g);
        self.outbox.retain(|k, _| k.1 != g);
        self.transfers.retain(|k, _| k.0 != g);
        self.meta.retain(|k, _| k.0 != g);
    }

    fn put<T: Borrow<Ticket>, X: Borrow<TransferRecord>>(&mut self, g: u64, p: Puts<T, X>) {
        let Puts {
            tickets: ts,
            seqs: ds,
            reqs: rs,
            outbox: ns,
            policy,
            directory,
            transfers: xs,
        } = p;
        self.rows += ts.len()
            + ds.len()
            + rs.len()
            + ns.len()
            + xs.len()
            + usize::from(policy.is_some())
            + usize::from(directory.is_some());
        for t in ts.iter().map(Borrow::borrow) {
            self.tickets
                .insert((t.accepted_at_ms, g, t.id.clone()), Some(t.encode_to_vec()));
        }
        for d in ds {
            self.seqs.insert((g, d.day), d.last);
        }
        for r in rs {
            self.reqs
                .insert((r.at_ms, g, r.request_id), Some(r.encode_to_vec()));
        }
        for n in ns {
            self.outbox
                .insert((n.created_at_ms, g, n.id.clone()), Some(n.encode_to_vec()));
        }
        if let Some(p) = policy {
            self.meta.insert((g, POLICY), p.encode_to_vec());
        }
        if let Some(d) = directory {
            self.meta.insert((g, DIRECTORY), d.encode_to_vec());
        }
        for x in xs.iter().map(Borrow::borrow) {
            self.transfers
                .insert((g, transfer_id(x).to_string()), Some(x.encode_to_vec()));
        }
    }

    /// Every row of `g` goes ([`Storage::purge`]): pending versions
    /// become deletes and pending deletes stay (rows on disk the machine
    /// no longer holds), and each row the machine holds in the time-first
    /// tables is deleted by key; the group-first tables are cleared by
    /// range at the checkpoint.
    fn purge(&mut self, g: u64, keys: &TimeKeys, at_ms: u64) {
        for (_, v) in self.tickets.iter_mut().filter(|(k, _)| k.1 == g) {
            *v = None;
        }
        for (_, v) in self.reqs.iter_mut().filter(|(k, _)| k.1 == g) {
            *v = None;
        }
        for (_, v) in self.outbox.iter_mut().filter(|(k, _)| k.1 == g) {
            *v = None;
        }
        self.seqs.retain(|k, _| k.0 != g);
        self.transfers.retain(|k, _| k.0 != g);
        self.meta.retain(|k, _| k.0 != g);
        self.unpurged.remove(&g);
        self.delete_tickets(g, &keys.tickets);
        self.delete(g, &keys.requests, &keys.outbox, &[]);
        self.purged.insert(g, at_ms);
    }

    /// Tickets of `g` by (accepted_at_ms, id): those a snapshot replaced.
    fn delete_tickets(&mut self, g: u64, keys: &[(i64, String)]) {
        self.rows += keys.len();
        for (at_ms, id) in keys {
            self.tickets.insert((*at_ms, g, id.clone()), None);
        }
    }

    fn delete(
        &mut self,
        g: u64,
        reqs: &[(i64, u64)],
        outbox: &[(i64, String)],
        transfers: &[String],
    ) {
        self.rows += reqs.len() + outbox.len() + transfers.len();
        for &(at_ms, id) in reqs {
            self.reqs.insert((at_ms, g, id), None);
        }
        for (at_ms, id) in outbox {
            let key = (*at_ms, g, id.clone());
            if let Some(Some(_)) = self.outbox.get(&key) {
                // Put since the last checkpoint, so not in redb: a
                // notification id is never reused (ticket#event#recipient),
                // and most are delivered within a second of their accept.
                self.outbox.remove(&key);
            } else {
                self.outbox.insert(key, None);
            }
        }
        for id in transfers {
            self.transfers.insert((g, id.clone()), None);
        }
    }
}

/// Rows to upsert, from a snapshot (plain values) or from one batch (the
/// state machine's shared `Arc`s).
struct Puts<'a, T: Borrow<Ticket>, X: Borrow<TransferRecord>> {
    tickets: &'a [T],
    seqs: &'a [DaySequence],
    reqs: &'a [RequestSeen],
    outbox: &'a [Notification],
    policy: Option<&'a Policy>,
    directory: Option<&'a DirectoryImage>,
    transfers: &'a [X],
}

fn transfer_id(r: &TransferRecord) -> &str {
    r.envelope
        .as_ref()
        .map(|e| e.transfer_id.as_str())
        .unwrap_or("")
}

/// What one checkpoint writes: everything up to a loop boundary.
struct Cut {
    /// The first WAL segment written after the cut.
    replay_from: u64,
    groups: Vec<(u64, Image)>,
    dirty: Dirty,
}

pub struct Storage {
    db: Arc<Database>,
    wal_dir: PathBuf,
    wal: wal::Wal,
    images: HashMap<u64, Image>,
    /// Groups whose image changed since the last cut.
    changed: BTreeSet<u64>,
    dirty: Dirty,
    last_cut: Instant,
    checkpointer: Checkpointer,
    /// Checkpoints so far.
    pub checkpoints: u64,
    /// The time-keyed tables' rows of the groups not loaded yet (see
    /// [`StartRows`]).
    start_rows: Option<StartRows>,
    /// Groups purged from this node and not written since ([`PURGED`]).
    purged: BTreeMap<u64, u64>,
}

/// How long the rows of groups not loaded at start are kept in memory: a
/// group this node joined at run time is not in its topology's list, and is
/// loaded when its leader's first message arrives, within a second or so of
/// the start; after this, a load reads the tables again.
const START_ROWS_KEEP: Duration = Duration::from_secs(60);

/// Every group's rows of the time-keyed tables, read in one scan by the
/// first `load`: a group's rows there are not a key range, so without this
/// each group's load at start would scan those tables whole (a node with
/// 1,000 groups, 1,000 scans of every ticket). A load takes its group's
/// rows out; rows of a group only change through a write for it, after its
/// load, and that write also marks it. A load of a marked group, or once
/// the rows are older than [`START_ROWS_KEEP`], reads the tables again.
struct StartRows {
    by_group: HashMap<u64, TimeRows>,
    /// Groups loaded or written since the scan: their rows here are gone or
    /// out of date.
    taken: BTreeSet<u64>,
    read_at: Instant,
}

impl StartRows {
    fn read(db: &Database) -> Result<StartRows, StorageError> {
        Ok(StartRows {
            by_group: read_time_rows(db)?,
            taken: BTreeSet::new(),
            read_at: Instant::now(),
        })
    }

    fn take(&mut self, g: u64) -> Option<TimeRows> {
        self.taken.insert(g);
        self.by_group.remove(&g)
    }

    fn expired(&self) -> bool {
        self.read_at.elapsed() >= START_ROWS_KEEP
    }

    fn serves(&self, g: u64) -> bool {
        !self.taken.contains(&g) && !self.expired()
    }
}

impl Storage {
    /// Opens (or creates) the node's storage and replays its WAL.
    pub fn open(dir: &Path) -> Result<Storage, StorageError> {
        let wal_dir = dir.join("wal");
        std::fs::create_dir_all(&wal_dir)?;
        let db = redb::Builder::new()
            .set_cache_size(REDB_CACHE_BYTES)
            .create(dir.join("hotline.redb"))?;
        // Create the tables so that read transactions find them.
        let tx = db.begin_write()?;
        tx.open_table(IMAGES)?;
        tx.open_table(TICKETS)?;
        tx.open_table(SEQUENCES)?;
        tx.open_table(REQUESTS)?;
        tx.open_table(OUTBOX)?;
        tx.open_table(SM_META)?;
        tx.open_table(TRANSFERS)?;
        tx.open_table(PURGED)?;
        {
            let mut node = tx.open_table(NODE)?;
            let found = node.get(FORMAT)?.map(|v| v.value());
            // A directory with a checkpoint but no format is format 1.
            let found = found.or(node.get(REPLAY_FROM)?.map(|_| 1));
            match found {
                None => {
                    node.insert(FORMAT, FORMAT_VERSION)?;
                }
                Some(FORMAT_VERSION) => {}
                Some(found) => {
                    return Err(StorageError::Format {
                        dir: dir.to_path_buf(),
                        found,
                        expected: FORMAT_VERSION,
                    });
                }
            }
        }
        tx.commit()?;
        let (images, replay_from) = read_checkpoint(&db)?;
        let purged = read_purged(&db)?;
        let db = Arc::new(db);
        let mut s = Storage {
            images,
            wal: wal::Wal::create(&wal_dir, next_segment(&wal_dir, replay_from)?)?,
            checkpointer: Checkpointer::start(db.clone(), wal_dir.clone())?,
            db,
            wal_dir,
            changed: BTreeSet::new(),
            dirty: Dirty::default(),
            last_cut: Instant::now(),
            checkpoints: 0,
            start_rows: None,
            purged,
        };
        s.replay(replay_from)?;
        Ok(s)
    }

    /// Replays the segments from `replay_from` on (all but the one just
    /// created) into the groups' images; drops older leftovers.
    fn replay(&mut self, replay_from: u64) -> Result<(), StorageError> {
        wal::remove_below(&self.wal_dir, replay_from)?;
        for (seq, path) in wal::segments(&self.wal_dir)? {
            if seq == self.wal.seq() {
                continue;
            }
            // Replayed groups are written at the next checkpoint, which
            // deletes these segments.
            let images = &mut self.images;
            let changed = &mut self.changed;
            let end = wal::read_segment(&path, |r| {
                changed.insert(r.group);
                let img = images.entry(r.group).or_default();
                img.append(r.group, &r.entries);
                if let Some(hs) = r.hard_state {
                    img.hard_state = hs;
                }
            })?;
            if let wal::End::Torn { offset, reason } = end {
                // The unsynced tail of a crashed run (module docs).
                tracing::warn!(segment = seq, offset, reason, "wal: ignoring a torn tail");
            }
        }
        Ok(())
    }

    /// Makes the batches of all groups durable: their raft parts in one
    /// WAL frame, synced when any must be; their rows at a checkpoint.
    pub fn write(&mut self, batches: &[&WriteBatch]) -> Result<(), StorageError> {
        if batches.iter().all(|b| b.is_empty()) {
            return Ok(());
        }
        if self.start_rows.as_ref().is_some_and(StartRows::expired) {
            self.start_rows = None;
        }
        let frame = wal::encode(
            batches
                .iter()
                .map(|b| (b.group_id, b.hard_state.as_ref(), &b.entries[..])),
        );
        let checkpoint_now = batches
            .iter()
            .any(|b| b.snapshot.is_some() || b.conf_state.is_some());
        if let Some(f) = &frame {
            self.wal.append(f)?;
            // A checkpoint below makes all of it durable anyway.
            if !checkpoint_now && batches.iter().any(|b| b.must_sync) {
                self.wal.sync()?;
            }
        }
        for b in batches {
            self.absorb(b);
        }
        if checkpoint_now {
            self.checkpoint()
        } else {
            self.maybe_checkpoint()
        }
    }

    /// Moves group `b.group_id`'s image and rows on by one batch.
    fn absorb(&mut self, b: &WriteBatch) {
        let g = b.group_id;
        // Its configuration written again: the node was added back. The
        // tombstone goes with this write's checkpoint (a write carrying a
        // configuration is checkpointed before `write` returns).
        if (b.snapshot.is_some() || b.conf_state.is_some()) && self.purged.remove(&g).is_some() {
            self.dirty.unpurged.insert(g);
        }
        if let Some(c) = &mut self.start_rows {
            c.take(g);
        }
        let img = self.images.entry(g).or_default();
        if let Some(s) = &b.snapshot {
            *img = Image {
                hard_state: img.hard_state.clone(),
                conf_state: Some(s.conf_state.clone()),
                applied: s.index,
                applied_term: s.term,
                tail: VecDeque::new(),
            };
            self.dirty.clear(g);
            self.dirty.delete_tickets(g, &s.replaced_tickets);
            let st = &s.state;
            self.dirty.put(
                g,
                Puts {
                    tickets: &st.tickets,
                    seqs: &st.sequences,
                    reqs: &st.requests,
                    outbox: &st.outbox,
                    policy: st.policy.as_ref(),
                    directory: st.directory.as_ref(),
                    transfers: &st.transfers,
                },
            );
        }
        img.append(g, &b.entries);
        if let Some(hs) = &b.hard_state {
            img.hard_state = hs.clone();
        }
        if let Some(cs) = &b.conf_state {
            img.conf_state = Some((**cs).clone());
        }
        let sm = &b.sm;
        self.dirty.put(
            g,
            Puts {
                tickets: &sm.tickets,
                seqs: &sm.sequences,
                reqs: &sm.requests_put,
                outbox: &sm.outbox_put,
                policy: sm.policy.as_deref(),
                directory: sm.directory.as_deref(),
                transfers: &sm.transfers_put,
            },
        );
        self.dirty
            .delete(g, &sm.requests_del, &sm.outbox_del, &sm.transfers_del);
        if let Some(a) = b.applied {
            img.apply_to(g, a);
        }
        // `b.compact` needs nothing here: the image keeps only the entries
        // after the applied index, and the replica its own window.
        self.changed.insert(g);
    }

    fn maybe_checkpoint(&mut self) -> Result<(), StorageError> {
        if let Some(result) = self.checkpointer.poll() {
            result?;
        }
        let due = self.dirty.rows >= CHECKPOINT_ROWS
            // The segment being written started at the last cut.
            || self.wal.bytes >= CHECKPOINT_WAL_BYTES
            || (self.last_cut.elapsed() >= CHECKPOINT_INTERVAL && !self.changed.is_empty());
        if !due {
            return Ok(());
        }
        if self.checkpointer.busy {
            if self.dirty.rows < MAX_DIRTY_ROWS {
                return Ok(()); // the next loop looks again
            }
            self.checkpointer.wait()?;
        }
        let cut = self.cut()?;
        self.checkpointer.submit(cut)
    }

    /// Writes a checkpoint now and waits for it (and for one in flight).
    pub fn checkpoint(&mut self) -> Result<(), StorageError> {
        self.checkpointer.wait()?;
        let cut = self.cut()?;
        commit_cut(&self.db, &self.wal_dir, cut)
    }

    /// Takes everything written so far as the next checkpoint's content and
    /// starts a new WAL segment for what follows.
    fn cut(&mut self) -> Result<Cut, StorageError> {
        let replay_from = self.wal.rotate()?;
        let groups = std::mem::take(&mut self.changed)
            .into_iter()
            .map(|g| (g, self.images[&g].clone()))
            .collect();
        self.last_cut = Instant::now();
        self.checkpoints += 1;
        Ok(Cut {
            replay_from,
            groups,
            dirty: std::mem::take(&mut self.dirty),
        })
    }

    /// Deletes everything of group `g` on this node, durably, before it
    /// returns: its raft image (log tail, hard and conf state), its rows
    /// (`keys`: those its replica holds in the time-first tables, deleted
    /// by key, as a snapshot's install deletes tickets: no scan of other
    /// groups' rows on the loop thread), and leaves a tombstone
    /// ([`PURGED`]). The caller drops the group's replica and writes
    /// nothing more for it, so every WAL frame of the group lies below
    /// this checkpoint's replay point, and goes with it.
    pub fn purge(&mut self, g: u64, keys: &TimeKeys, at_ms: u64) -> Result<(), StorageError> {
        // A cut in flight may still write the group's image: after it.
        self.checkpointer.wait()?;
        if let Some(c) = &mut self.start_rows {
            c.take(g);
        }
        self.images.remove(&g);
        self.changed.remove(&g);
        self.dirty.purge(g, keys, at_ms);
        self.purged.insert(g, at_ms);
        self.checkpoint()
    }

    /// Groups purged from this node that have an image again, without a
    /// configuration or entries: an empty replica seeded after the purge
    /// wrote its term, and the node stopped before it was let go
    /// (`RaftLoop::let_go_of_stale_seeds`) or brought the group. With the
    /// purge's time. A snapshot or the log would have ended the tombstone.
    pub fn purged_with_term_only(&self) -> Vec<(u64, u64)> {
        self.purged
            .iter()
            .filter(|(g, _)| {
                self.images.get(g).is_some_and(|img| {
                    img.conf_state.is_none() && img.tail.is_empty() && img.applied == 0
                })
            })
            .map(|(&g, &at)| (g, at))
            .collect()
    }

    /// When group `g`'s replica was purged from this node (Unix ms), if
    /// it was and the group was not written since: a start leaves it out.
    pub fn purged_at(&self, g: u64) -> Option<u64> {
        self.purged.get(&g).copied()
    }

    /// The group's term and commit index as of its last write (`None`:
    /// nothing of the group on disk), without reading its rows. The commit
    /// is at least the applied index, as a replica made of the image takes
    /// it (a hard state written before a snapshot's install is behind it).
    pub fn term_and_commit(&self, g: u64) -> Option<(u64, u64)> {
        self.images
            .get(&g)
            .map(|img| (img.hard_state.term, img.hard_state.commit.max(img.applied)))
    }

    /// Every group with an image on this node's disk (hosted or not), in
    /// no order.
    pub fn groups_on_disk(&self) -> impl Iterator<Item = u64> + '_ {
        self.images.keys().copied()
    }

    /// The group's configuration as of its last write (`None`: not on
    /// disk, as for `load`), without reading its rows.
    pub fn conf_state(&self, g: u64) -> Option<&ConfState> {
        self.images.get(&g).and_then(|img| img.conf_state.as_ref())
    }

    /// Loads a group's durable state; `None` if nothing was ever written.
    /// The rows are the last checkpoint's; the entries after its applied
    /// index come with them, for raft to apply again.
    pub fn load(&mut self, g: u64) -> Result<Option<Recovered>, StorageError> {
        if self.checkpointer.busy || !self.dirty.is_empty() {
            // Rows are read from redb: bring it up to date first.
            self.checkpoint()?;
        }
        let Some(img) = self.images.get(&g) else {
            return Ok(None);
        };
        if img.conf_state.is_none() {
            return Ok(None);
        }
        if !self.start_rows.as_ref().is_some_and(|c| c.serves(g)) {
            self.start_rows = Some(StartRows::read(&self.db)?);
        }
        let time_rows = self.start_rows.as_mut().and_then(|c| c.take(g));
        let state = read_rows(&self.db, g, time_rows)?;
        Ok(img.recovered(state))
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        // Let a checkpoint in flight finish: it is a consistent cut either
        // way, but tests remove the directory right after.
        if let Err(e) = self.checkpointer.wait() {
            tracing::error!("checkpoint failed: {e}");
        }
    }
}

/// The first segment number to write after a restart: never one in use.
fn next_segment(dir: &Path, replay_from: u64) -> Result<u64, StorageError> {
    let last = wal::segments(dir)?.last().map(|s| s.0 + 1);
    Ok(last.unwrap_or(0).max(replay_from))
}

/// The node's checkpoint thread, alive as long as its [`Storage`]: it
/// takes one cut at a time and answers each with its result.
///
/// One thread for the node's life, not one per checkpoint (as until
/// 2026-12-01): no thread is spawned five times a second, and checkpoints
/// run one at a time by construction. CPU per accept did not change beyond
/// the VM's spread; the page zeroing that then sat under redb's page
/// buffers on each new thread's empty heap was the allocator's huge pages,
/// since turned off (`set_thp` in src/main.rs; BENCHMARKS.md, 1 Dec).
struct Checkpointer {
    /// At most one cut is in flight: the next goes only after the last
    /// one's result was taken.
    jobs: Option<crossbeam_channel::Sender<Cut>>,
    /// A cut was handed over and its result not yet taken.
    busy: bool,
    results: crossbeam_channel::Receiver<Result<(), StorageError>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    fn start(db: Arc<Database>, wal_dir: PathBuf) -> Result<Checkpointer, StorageError> {
        let (jobs, cuts) = crossbeam_channel::bounded::<Cut>(1);
        let (done, results) = crossbeam_channel::bounded(1);
        let thread = std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || {
                for cut in cuts {
                    if done.send(commit_cut(&db, &wal_dir, cut)).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Checkpointer {
            jobs: Some(jobs),
            busy: false,
            results,
            thread: Some(thread),
        })
    }

    fn submit(&mut self, cut: Cut) -> Result<(), StorageError> {
        assert!(!self.busy, "one cut in flight at a time");
        self.jobs
            .as_ref()
            .expect("jobs open until drop")
            .send(cut)
            .map_err(|_| StorageError::CheckpointPanicked)?;
        self.busy = true;
        Ok(())
    }

    /// The result of the cut in flight if there is one and it is done.
    fn poll(&mut self) -> Option<Result<(), StorageError>> {
        if !self.busy {
            return None;
        }
        let result = match self.results.try_recv() {
            Ok(r) => r,
            Err(crossbeam_channel::TryRecvError::Empty) => return None,
            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                Err(StorageError::CheckpointPanicked)
            }
        };
        self.busy = false;
        Some(result)
    }

    /// Waits for the result of the cut in flight, if there is one.
    fn wait(&mut self) -> Result<(), StorageError> {
        if !std::mem::take(&mut self.busy) {
            return Ok(());
        }
        self.results
            .recv()
            .map_err(|_| StorageError::CheckpointPanicked)?
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Closing the queue ends the thread's loop.
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Writes one cut in one durable redb transaction, then deletes the WAL
/// segments it covers.
fn commit_cut(db: &Database, wal_dir: &Path, cut: Cut) -> Result<(), StorageError> {
    let Cut {
        replay_from,
        groups,
        dirty,
    } = cut;
    let started = Instant::now();
    let rows = dirty.rows;
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate)?;
    {
        let mut images = tx.open_table(IMAGES)?;
        for (g, img) in &groups {
            images.insert(*g, img.encode().as_slice())?;
        }
        let mut purged = tx.open_table(PURGED)?;
        for g in &dirty.unpurged {
            purged.remove(*g)?;
        }
        for (g, at_ms) in &dirty.purged {
            assert!(
                !groups.iter().any(|(w, _)| w == g),
                "group {g}: purged and written in one cut"
            );
            images.remove(*g)?;
            purged.insert(*g, *at_ms)?;
        }
        Rows::open(&tx)?.write(&dirty)?;
        tx.open_table(NODE)?.insert(REPLAY_FROM, replay_from)?;
    }
    tx.commit()?;
    wal::remove_below(wal_dir, replay_from)?;
    tracing::debug!(
        rows,
        groups = groups.len(),
        ms = started.elapsed().as_millis() as u64,
        "checkpoint"
    );
    Ok(())
}

/// Every group's image and the first segment to replay, from redb.
fn read_checkpoint(db: &Database) -> Result<(HashMap<u64, Image>, u64), StorageError> {
    let tx = db.begin_read()?;
    let replay_from = tx
        .open_table(NODE)?
        .get(REPLAY_FROM)?
        .map_or(0, |v| v.value());
    let mut images: HashMap<u64, Image> = HashMap::new();
    for row in tx.open_table(IMAGES)?.iter()? {
        let (g, v) = row?;
        let g = g.value();
        images.insert(g, Image::decode(g, v.value())?);
    }
    Ok((images, replay_from))
}

/// The tombstones of groups purged from this node.
fn read_purged(db: &Database) -> Result<BTreeMap<u64, u64>, StorageError> {
    let tx = db.begin_read()?;
    let mut out = BTreeMap::new();
    for row in tx.open_table(PURGED)?.iter()? {
        let (g, at) = row?;
        out.insert(g.value(), at.value());
    }
    Ok(out)
}

/// One group's rows of the time-keyed tables, in time order.
#[derive(Default)]
struct TimeRows {
    tickets: Vec<Ticket>,
    requests: Vec<RequestSeen>,
    outbox: Vec<Notification>,
}

/// The time-keyed tables' rows of every group (one scan each).
fn read_time_rows(db: &Database) -> Result<HashMap<u64, TimeRows>, StorageError> {
    let tx = db.begin_read()?;
    let mut by_group: HashMap<u64, TimeRows> = HashMap::new();
    scan_by_time(&tx, TICKETS, "ticket", |g, t| {
        by_group.entry(g).or_default().tickets.push(t)
    })?;
    scan_by_time(&tx, REQUESTS, "request", |g, r| {
        by_group.entry(g).or_default().requests.push(r)
    })?;
    scan_by_time(&tx, OUTBOX, "notification", |g, n| {
        by_group.entry(g).or_default().outbox.push(n)
    })?;
    Ok(by_group)
}

/// Every row of a table keyed `(at_ms, group, id)`, decoded, with its group.
fn scan_by_time<I: redb::Key + 'static, M: prost::Message + Default>(
    tx: &redb::ReadTransaction,
    table: TableDefinition<(i64, u64, I), &[u8]>,
    what: &'static str,
    mut add: impl FnMut(u64, M),
) -> Result<(), StorageError> {
    for row in tx.open_table(table)?.iter()? {
        let (k, v) = row?;
        let g = k.value().1;
        add(g, decode_row(g, what, v.value())?);
    }
    Ok(())
}

/// Decodes a prost row of group `g`; one that does not decode is corrupt,
/// named by what it should have been.
fn decode_row<M: prost::Message + Default>(
    g: u64,
    what: &'static str,
    v: &[u8],
) -> Result<M, StorageError> {
    M::decode(v).map_err(|e| StorageError::Corrupt {
        group: g,
        what,
        detail: e.to_string(),
    })
}

/// A group's state-machine rows as of the last checkpoint (`time_rows`:
/// its rows of the time-keyed tables, from [`read_time_rows`]).
fn read_rows(
    db: &Database,
    g: u64,
    time_rows: Option<TimeRows>,
) -> Result<StateSnapshot, StorageError> {
    let tx = db.begin_read()?;
    let mut state = StateSnapshot {
        group_id: g,
        ..Default::default()
    };
    for row in tx.open_table(SEQUENCES)?.range((g, 0)..=(g, u32::MAX))? {
        let (k, v) = row?;
        state.sequences.push(DaySequence {
            day: k.value().1,
            last: v.value(),
        });
    }
    if let Some(t) = time_rows {
        // Already in (time, id) order, the state machine's.
        state.tickets = t.tickets;
        state.requests = t.requests;
        state.outbox = t.outbox;
    }
    for row in tx.open_table(TRANSFERS)?.range((g, "")..(g + 1, ""))? {
        let (_, v) = row?;
        state.transfers.push(decode_row(g, "transfer", v.value())?);
    }
    if let Some(v) = tx.open_table(SM_META)?.get((g, POLICY))? {
        state.policy = Some(decode_row(g, "policy", v.value())?);
    }
    if let Some(v) = tx.open_table(SM_META)?.get((g, DIRECTORY))? {
        state.directory = Some(decode_row(g, "directory", v.value())?);
    }
    Ok(state)
}

/// The state-machine tables of one write transaction.
struct Rows<'t> {
    tickets: redb::Table<'t, (i64, u64, &'static str), &'static [u8]>,
    seqs: redb::Table<'t, (u64, u32), u64>,
    reqs: redb::Table<'t, (i64, u64, u64), &'static [u8]>,
    outbox: redb::Table<'t, (i64, u64, &'static str), &'static [u8]>,
    sm_meta: redb::Table<'t, (u64, &'static str), &'static [u8]>,
    transfers: redb::Table<'t, (u64, &'static str), &'static [u8]>,
}

impl<'t> Rows<'t> {
    fn open(tx: &'t redb::WriteTransaction) -> Result<Rows<'t>, StorageError> {
        Ok(Rows {
            tickets: tx.open_table(TICKETS)?,
            seqs: tx.open_table(SEQUENCES)?,
            reqs: tx.open_table(REQUESTS)?,
            outbox: tx.open_table(OUTBOX)?,
            sm_meta: tx.open_table(SM_META)?,
            transfers: tx.open_table(TRANSFERS)?,
        })
    }

    /// Deletes every state row of group `g` (a snapshot replaces them).
    /// Not its tickets: those come as deletes (`Dirty::clear`).
    fn clear(&mut self, g: u64) -> Result<(), StorageError> {
        self.clear_ranges(g)?;
        // Time-first tables: a scan of each (a snapshot's install is rare,
        // and both tables are bounded — MAX_REMEMBERED_REQUESTS and
        // MAX_OUTBOX per group).
        self.reqs.retain(|k, _| k.1 != g)?;
        self.outbox.retain(|k, _| k.1 != g)?;
        Ok(())
    }

    /// Deletes group `g`'s rows of the tables keyed by group first.
    fn clear_ranges(&mut self, g: u64) -> Result<(), StorageError> {
        self.seqs.retain_in((g, 0)..=(g, u32::MAX), |_, _| false)?;
        self.sm_meta.retain_in((g, "")..(g + 1, ""), |_, _| false)?;
        self.transfers
            .retain_in((g, "")..(g + 1, ""), |_, _| false)?;
        Ok(())
    }

    fn write(&mut self, d: &Dirty) -> Result<(), StorageError> {
        for g in &d.cleared {
            self.clear(*g)?;
        }
        for g in d.purged.keys() {
            self.clear_ranges(*g)?;
        }
        for ((at, g, id), v) in &d.tickets {
            let k = (*at, *g, id.as_str());
            match v {
                Some(v) => self.tickets.insert(k, v.as_slice())?,
                None => self.tickets.remove(k)?,
            };
        }
        for (k, v) in &d.seqs {
            self.seqs.insert(*k, *v)?;
        }
        for (k, v) in &d.reqs {
            match v {
                Some(v) => self.reqs.insert(*k, v.as_slice())?,
                None => self.reqs.remove(*k)?,
            };
        }
        for ((at, g, id), v) in &d.outbox {
            let k = (*at, *g, id.as_str());
            match v {
                Some(v) => self.outbox.insert(k, v.as_slice())?,
                None => self.outbox.remove(k)?,
            };
        }
        for ((g, id), v) in &d.transfers {
            match v {
                Some(v) => self.transfers.insert((*g, id.as_str()), v.as_slice())?,
                None => self.transfers.remove((*g, id.as_str()))?,
            };
        }
        for ((g, key), v) in &d.meta {
            self.sm_meta.insert((*g, *key), v.as_slice())?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Replica, ReplicaConfig};
    use hotline_proto::v1::{AcceptRequest, Command, Kind, command};

    fn run(r: &mut Replica, st: &mut Storage) {
        for _ in 0..50 {
            r.tick();
            while r.has_ready() {
                let rd = r.ready();
                st.write(&[&rd.write]).unwrap();
                r.on_persisted();
            }
        }
    }

    /// A single-voter group on fresh storage in `dir`, led by its node.
    fn founded(dir: &Path) -> (ReplicaConfig, Storage, Replica) {
        let cfg = ReplicaConfig::new(1, 310114, "310114");
        let mut st = Storage::open(dir).unwrap();
        let mut r = Replica::new(cfg.clone(), Recovered::bootstrap(&[1])).unwrap();
        run(&mut r, &mut st);
        assert!(r.is_leader());
        (cfg, st, r)
    }

    /// Proposes accepts `ids` and runs the loop until they are applied.
    fn accept_all(r: &mut Replica, st: &mut Storage, ids: impl IntoIterator<Item = u64>) {
        for i in ids {
            r.propose(&accept(i)).unwrap();
        }
        run(r, st);
    }

    fn accept(i: u64) -> Command {
        accept_in("310114", i)
    }

    fn accept_in(region: &str, i: u64) -> Command {
        Command {
            request_id: i + 1,
            at_ms: 1_795_831_200_000,
            accept_text: Vec::new(),
            op: Some(command::Op::Accept(AcceptRequest {
                region: region.into(),
                kind: Kind::Help as i32,
                category: "民政".into(),
                text: format!("t{i}"),
                phone: "13900000000".into(),
                ..Default::default()
            })),
        }
    }

    /// A single-voter group through the whole loop, then restarts: first
    /// from the WAL alone (a crash before any checkpoint), then from a
    /// checkpoint.
    #[test]
    fn single_voter_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, mut st, mut r) = founded(dir.path());
        accept_all(&mut r, &mut st, 0..5);
        assert_eq!(r.tickets().len(), 5);
        let applied = r.applied();
        let ids: Vec<String> = r.tickets().tickets().map(|t| t.id.clone()).collect();
        drop(r);
        assert_eq!(st.checkpoints, 1, "only the bootstrap configuration");
        drop(st);

        // Crash before a checkpoint: redb holds only the configuration;
        // the WAL brings the entries back and raft applies them again.
        let mut st = Storage::open(dir.path()).unwrap();
        let rec = st.load(310114).unwrap().expect("state on disk");
        assert_eq!(rec.applied, 0);
        assert!(rec.state.tickets.is_empty());
        assert_eq!(rec.entries.last().map(|e| e.index), Some(applied));
        assert!(rec.hard_state.commit >= applied);
        let mut r = Replica::new(cfg.clone(), rec).unwrap();
        run(&mut r, &mut st);
        assert_eq!(r.applied(), applied + 1, "a new term's no-op on top");
        let again: Vec<String> = r.tickets().tickets().map(|t| t.id.clone()).collect();
        assert_eq!(again, ids, "the same tickets, re-applied");
        assert_eq!(r.tickets().outbox_len(), 5);
        let applied = r.applied();
        drop(r);
        st.checkpoint().unwrap();
        drop(st);

        // From the checkpoint: rows in redb, nothing left to re-apply.
        let mut st = Storage::open(dir.path()).unwrap();
        // The configuration is known before any row is read.
        assert_eq!(
            st.conf_state(310114).map(|cs| cs.voters.clone()),
            Some(vec![1])
        );
        assert!(st.conf_state(1).is_none());
        let rec = st.load(310114).unwrap().expect("state on disk");
        assert_eq!(rec.applied, applied);
        assert!(rec.entries.is_empty());
        assert_eq!(rec.state.tickets.len(), 5);
        // The rest of the state machine too: each accept queued a notice
        // for its requester.
        assert_eq!(rec.state.outbox.len(), 5, "outbox rows on disk");
        assert_eq!(rec.state.requests.len(), 5, "request rows on disk");
        let r = Replica::new(cfg, rec).unwrap();
        assert_eq!(r.tickets().len(), 5);
        assert_eq!(r.tickets().outbox_len(), 5);
        assert!(st.load(1).unwrap().is_none());
        let segments = wal::segments(&dir.path().join("wal")).unwrap();
        assert_eq!(segments.len(), 2, "the checkpoint removed what it covers");
    }

    /// Rows of group `g` in every table of the database.
    fn rows_of(db: &Database, g: u64) -> usize {
        let tx = db.begin_read().unwrap();
        let mut n = 0;
        n += tx
            .open_table(IMAGES)
            .unwrap()
            .get(g)
            .unwrap()
            .iter()
            .count();
        for row in tx.open_table(TICKETS).unwrap().iter().unwrap() {
            n += usize::from(row.unwrap().0.value().1 == g);
        }
        for row in tx.open_table(REQUESTS).unwrap().iter().unwrap() {
            n += usize::from(row.unwrap().0.value().1 == g);
        }
        for row in tx.open_table(OUTBOX).unwrap().iter().unwrap() {
            n += usize::from(row.unwrap().0.value().1 == g);
        }
        for row in tx.open_table(SEQUENCES).unwrap().iter().unwrap() {
            n += usize::from(row.unwrap().0.value().0 == g);
        }
        for row in tx.open_table(TRANSFERS).unwrap().iter().unwrap() {
            n += usize::from(row.unwrap().0.value().0 == g);
        }
        for row in tx.open_table(SM_META).unwrap().iter().unwrap() {
            n += usize::from(row.unwrap().0.value().0 == g);
        }
        n
    }

    /// A purge deletes everything of one group, durably, those rows
    /// already checkpointed and those still in the WAL alike, and nothing
    /// of another group; its tombstone keeps a start from bootstrapping
    /// the group again, until the group is written again (added back).
    #[test]
    fn a_purged_group_leaves_nothing_but_its_tombstone() {
        const AT_MS: u64 = 1_795_831_200_000;
        let dir = tempfile::tempdir().unwrap();
        let (cfg, mut st, mut r) = founded(dir.path());
        accept_all(&mut r, &mut st, 0..5);
        let mut other = Replica::new(
            ReplicaConfig::new(1, 310101, "310101"),
            Recovered::bootstrap(&[1]),
        )
        .unwrap();
        run(&mut other, &mut st);
        for i in 100..103 {
            other.propose(&accept_in("310101", i)).unwrap();
        }
        run(&mut other, &mut st);
        assert_eq!(other.tickets().len(), 3);
        st.checkpoint().unwrap();
        // Three more only in the WAL and in memory.
        accept_all(&mut r, &mut st, 5..8);
        assert!(rows_of(&st.db, 310114) > 10, "rows to delete");
        let keys = r.time_keys();
        assert_eq!(keys.tickets.len(), 8);
        drop(r);
        st.purge(310114, &keys, AT_MS).unwrap();
        assert_eq!(st.purged_at(310114), Some(AT_MS));
        assert!(st.conf_state(310114).is_none());
        assert_eq!(rows_of(&st.db, 310114), 0, "durable before it returns");
        drop(st);

        let mut st = Storage::open(dir.path()).unwrap();
        assert_eq!(st.purged_at(310114), Some(AT_MS), "the tombstone stays");
        assert!(st.conf_state(310114).is_none(), "nor replayed from the WAL");
        assert!(st.load(310114).unwrap().is_none());
        assert_eq!(rows_of(&st.db, 310114), 0);
        let rec = st.load(310101).unwrap().expect("the other group stays");
        assert_eq!(rec.state.tickets.len(), 3);
        assert_eq!(st.purged_at(310101), None);

        // Added back: its first write ends the tombstone, durably with the
        // checkpoint that writes its image.
        let mut again = Replica::new(cfg, Recovered::bootstrap(&[1])).unwrap();
        run(&mut again, &mut st);
        assert_eq!(st.purged_at(310114), None);
        drop(again);
        drop(st);
        let st = Storage::open(dir.path()).unwrap();
        assert_eq!(st.purged_at(310114), None);
        assert!(st.conf_state(310114).is_some());
    }

    /// The tombstone ends only with a write that brings the group's
    /// configuration back. A node added back first hosts an empty replica
    /// that writes the leader's term, with no configuration; had that
    /// ended the tombstone (at its checkpoint, or at the first checkpoint
    /// after a crash and the WAL's replay), a start would find neither a
    /// tombstone nor a configuration, and bootstrap the group from the
    /// topology file. (Found by review.)
    #[test]
    fn a_tombstone_outlives_writes_without_a_configuration() {
        use raft::eraftpb::{Message, MessageType};
        const AT_MS: u64 = 1_795_831_200_000;
        let join = |cfg: &ReplicaConfig, st: &mut Storage| {
            let mut joining = Replica::new(cfg.clone(), Recovered::default()).unwrap();
            let mut hb = Message::default();
            hb.set_msg_type(MessageType::MsgHeartbeat);
            (hb.from, hb.to, hb.term) = (2, 1, 7);
            joining.step(hb);
            let mut wrote = 0;
            while joining.has_ready() {
                let rd = joining.ready();
                wrote += usize::from(!rd.write.is_empty());
                st.write(&[&rd.write]).unwrap();
                joining.on_persisted();
            }
            assert!(wrote > 0, "the empty replica wrote its term");
        };
        let purged = |dir: &Path| {
            let (cfg, mut st, mut r) = founded(dir);
            accept_all(&mut r, &mut st, 0..3);
            let keys = r.time_keys();
            drop(r);
            st.purge(310114, &keys, AT_MS).unwrap();
            join(&cfg, &mut st);
            st
        };
        // The write, then a checkpoint.
        let dir = tempfile::tempdir().unwrap();
        let mut st = purged(dir.path());
        st.checkpoint().unwrap();
        drop(st);
        let st = Storage::open(dir.path()).unwrap();
        assert_eq!(st.purged_at(310114), Some(AT_MS));
        drop(st);
        // The write only in the WAL (a crash), then a start's checkpoint.
        let dir = tempfile::tempdir().unwrap();
        drop(purged(dir.path()));
        let mut st = Storage::open(dir.path()).unwrap();
        assert_eq!(st.purged_at(310114), Some(AT_MS));
        st.checkpoint().unwrap();
        drop(st);
        let mut st = Storage::open(dir.path()).unwrap();
        assert_eq!(st.purged_at(310114), Some(AT_MS));
        assert!(st.conf_state(310114).is_none());
        // What a start lets go of (`run_node`): the term only, not the
        // tombstone.
        assert_eq!(st.purged_with_term_only(), vec![(310114, AT_MS)]);
        assert_eq!(st.groups_on_disk().collect::<Vec<_>>(), vec![310114]);
        st.purge(310114, &TimeKeys::default(), AT_MS).unwrap();
        drop(st);
        let st = Storage::open(dir.path()).unwrap();
        assert_eq!(st.purged_with_term_only(), vec![]);
        assert_eq!(st.groups_on_disk().count(), 0);
        assert_eq!(st.purged_at(310114), Some(AT_MS));
    }

    /// The national group's directory reaches redb at a checkpoint and
    /// comes back on open (the row beside the policy's).
    #[test]
    fn the_directory_survives_a_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ReplicaConfig::new(1, 86, "");
        let mut st = Storage::open(dir.path()).unwrap();
        let mut r = Replica::new(cfg.clone(), Recovered::bootstrap(&[1])).unwrap();
        run(&mut r, &mut st);
        r.propose(&Command {
            request_id: 1,
            at_ms: 1_795_831_200_000,
            accept_text: Vec::new(),
            op: Some(command::Op::Place(hotline_proto::v1::Placement {
                group_id: 310_114,
                region: "310114".into(),
                voters: vec![2, 3, 4],
                learners: vec![5],
            })),
        })
        .unwrap();
        run(&mut r, &mut st);
        drop(r);
        st.checkpoint().unwrap();
        drop(st);
        let mut st = Storage::open(dir.path()).unwrap();
        let rec = st.load(86).unwrap().expect("state on disk");
        assert!(rec.entries.is_empty(), "from the checkpoint, not the WAL");
        let d = rec.state.directory.clone().expect("directory row");
        assert_eq!(d.version, 1);
        assert_eq!(d.groups[0].learners, vec![5]);
        let r = Replica::new(cfg, rec).unwrap();
        assert_eq!(
            r.tickets()
                .query(&crate::core::Query::Directory { known_version: 0 }),
            crate::core::QueryAnswer::Directory(d)
        );
    }

    /// A group replayed from the WAL and then left alone is written by the
    /// next checkpoint, before that checkpoint deletes the segments it
    /// came from; and a torn tail does not stop a restart.
    #[test]
    fn replayed_groups_survive_the_next_checkpoint_and_torn_tails() {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, mut st, mut r) = founded(dir.path());
        accept_all(&mut r, &mut st, 0..3);
        let applied = r.applied();
        drop(r);
        drop(st);

        // A crash in the middle of a frame leaves garbage at the end.
        let (_, last) = wal::segments(&dir.path().join("wal"))
            .unwrap()
            .pop()
            .unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&last)
            .unwrap();
        std::io::Write::write_all(&mut f, &[200, 0, 0, 0, 1, 2]).unwrap();
        drop(f);

        let mut st = Storage::open(dir.path()).unwrap();
        st.checkpoint().unwrap(); // nothing written since the restart
        drop(st);
        let mut st = Storage::open(dir.path()).unwrap();
        let rec = st.load(310114).unwrap().expect("state on disk");
        assert_eq!(rec.entries.last().map(|e| e.index), Some(applied));
        let mut r = Replica::new(cfg, rec).unwrap();
        run(&mut r, &mut st);
        assert_eq!(r.tickets().len(), 3);
    }

    /// A crash between a checkpoint's redb commit and the deletion of the
    /// segments it covers leaves old segments behind: a restart must not
    /// replay them over the newer checkpoint (their hard states are older).
    #[test]
    fn segments_older_than_the_checkpoint_are_never_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().join("wal");
        let (cfg, mut st, mut r) = founded(dir.path());
        accept_all(&mut r, &mut st, 0..3);
        // Keep copies of the segments the checkpoint will delete.
        let old: Vec<(PathBuf, Vec<u8>)> = wal::segments(&wal_dir)
            .unwrap()
            .into_iter()
            .map(|(_, p)| {
                let bytes = std::fs::read(&p).unwrap();
                (p, bytes)
            })
            .collect();
        st.checkpoint().unwrap();
        // A later term, so the old segments' hard states are stale.
        r.campaign();
        run(&mut r, &mut st);
        let term = r.term();
        let applied = r.applied();
        drop(r);
        st.checkpoint().unwrap();
        drop(st);
        for (p, bytes) in &old {
            std::fs::write(p, bytes).unwrap();
        }

        let mut st = Storage::open(dir.path()).unwrap();
        let rec = st.load(310114).unwrap().unwrap();
        assert_eq!(
            rec.hard_state.term, term,
            "an older hard state was replayed"
        );
        assert_eq!(rec.applied, applied);
        assert_eq!(rec.state.tickets.len(), 3);
        for (p, _) in &old {
            assert!(!p.exists(), "{} is left behind", p.display());
        }
        let mut r = Replica::new(cfg, rec).unwrap();
        run(&mut r, &mut st);
        assert_eq!(r.tickets().len(), 3);
    }

    /// Checkpoints start by themselves once enough rows wait, one after the
    /// other on the checkpoint thread, and a restart after them needs only
    /// the newer segments.
    #[test]
    fn checkpoints_run_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, mut st, mut r) = founded(dir.path());
        // Each accept writes a ticket, its request id, a day sequence and a
        // notification: 4 rows.
        let n = (3 * CHECKPOINT_ROWS / 4 + 100) as u64;
        for start in (0..n).step_by(512) {
            accept_all(&mut r, &mut st, start..(start + 512).min(n));
            // Take each background result before the next chunk, so that
            // the count below does not depend on how fast the disk is (the
            // loop starts no cut while one is in flight).
            st.checkpointer.wait().unwrap();
        }
        assert_eq!(r.tickets().len() as u64, n);
        assert!(st.checkpoints >= 3, "{} checkpoints", st.checkpoints);
        let applied = r.applied();
        drop(r);
        drop(st);
        let mut st = Storage::open(dir.path()).unwrap();
        let rec = st.load(310114).unwrap().unwrap();
        assert!(rec.applied > 0 && !rec.state.tickets.is_empty());
        assert_eq!(
            rec.applied + rec.entries.len() as u64,
            applied,
            "the checkpoint plus the WAL hold every entry"
        );
        let mut r = Replica::new(cfg, rec).unwrap();
        run(&mut r, &mut st);
        assert_eq!(r.tickets().len() as u64, n);
    }

    /// Request ids are kept on disk by time: a restart brings back the ones
    /// still inside the dedup window, and the expired ones are gone from
    /// redb too (their delete found the row under its time key).
    #[test]
    fn expired_requests_leave_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, mut st, mut r) = founded(dir.path());
        accept_all(&mut r, &mut st, 0..3);
        st.checkpoint().unwrap();
        let mut late = accept(10);
        late.at_ms += crate::core::tickets::REQUEST_DEDUP_WINDOW_MS + 1;
        r.propose(&late).unwrap();
        run(&mut r, &mut st);
        drop(r);
        st.checkpoint().unwrap();
        drop(st);
        let mut st = Storage::open(dir.path()).unwrap();
        let rec = st.load(310114).unwrap().expect("state on disk");
        assert!(rec.entries.is_empty(), "everything is in the checkpoint");
        let ids: Vec<u64> = rec.state.requests.iter().map(|q| q.request_id).collect();
        assert_eq!(ids, vec![11], "the first three expired");
        let r = Replica::new(cfg, rec).unwrap();
        assert_eq!(r.tickets().len(), 4);
    }

    /// A notification queued and delivered between two checkpoints never
    /// reaches redb; one delivered after a checkpoint is deleted there.
    #[test]
    fn delivered_notifications_between_checkpoints_are_not_written() {
        let n = |id: &str| Notification {
            id: id.into(),
            ..Default::default()
        };
        let mut d = Dirty::default();
        let ns = [n("a#1#0"), n("b#1#0")];
        d.put(
            7,
            Puts {
                tickets: &[] as &[Ticket],
                seqs: &[],
                reqs: &[],
                outbox: &ns,
                policy: None,
                directory: None,
                transfers: &[] as &[TransferRecord],
            },
        );
        d.delete(7, &[], &[(0, "a#1#0".into()), (0, "old#1#0".into())], &[]);
        let keys: Vec<_> = d
            .outbox
            .iter()
            .map(|(k, v)| (k.2.as_str(), v.is_some()))
            .collect();
        assert_eq!(keys, vec![("b#1#0", true), ("old#1#0", false)]);
    }

    /// Requests and notifications are keyed by time before group: the rows
    /// of several groups interleave in the table, come back to their own
    /// group in time order, and a snapshot's clear of one group leaves the
    /// others' rows alone.
    #[test]
    fn time_keyed_rows_stay_with_their_group() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("t.redb")).unwrap();
        let req = |g: u64, at_ms, request_id| RequestSeen {
            request_id,
            ticket_id: format!("{g}-{request_id}"),
            at_ms,
        };
        let note = |created_at_ms, id: &str| Notification {
            id: id.into(),
            created_at_ms,
            ..Default::default()
        };
        let ticket = |accepted_at_ms, id: &str| Ticket {
            id: id.into(),
            accepted_at_ms,
            ..Default::default()
        };
        let puts = |tickets, reqs, outbox| Puts {
            tickets,
            seqs: &[],
            reqs,
            outbox,
            policy: None,
            directory: None,
            transfers: &[] as &[TransferRecord],
        };
        let commit = |d: &Dirty| {
            let tx = db.begin_write().unwrap();
            Rows::open(&tx).unwrap().write(d).unwrap();
            tx.commit().unwrap();
        };
        let mut d = Dirty::default();
        let (reqs7, notes7) = (
            [req(7, 30, 1), req(7, 10, 2)],
            [note(50, "a"), note(20, "b")],
        );
        let (reqs8, notes8) = ([req(8, 20, 3)], [note(40, "c")]);
        let tickets7 = [ticket(30, "7-b"), ticket(10, "7-a")];
        let tickets8 = [ticket(20, "8-a")];
        d.put(7, puts(&tickets7, &reqs7, &notes7));
        d.put(8, puts(&tickets8, &reqs8, &notes8));
        commit(&d);
        let ids = |rows: &HashMap<u64, TimeRows>, g| {
            let t = &rows[&g];
            let r: Vec<u64> = t.requests.iter().map(|r| r.request_id).collect();
            let n: Vec<&str> = t.outbox.iter().map(|n| n.id.as_str()).collect();
            (r, n.into_iter().map(String::from).collect::<Vec<_>>())
        };
        let ticket_ids = |rows: &HashMap<u64, TimeRows>, g| {
            let t = rows.get(&g).map_or(&[][..], |t| &t.tickets[..]);
            t.iter().map(|t| t.id.clone()).collect::<Vec<_>>()
        };
        let rows = read_time_rows(&db).unwrap();
        assert_eq!(ids(&rows, 7), (vec![2, 1], vec!["b".into(), "a".into()]));
        assert_eq!(ids(&rows, 8), (vec![3], vec!["c".into()]));
        assert_eq!(ticket_ids(&rows, 7), ["7-a", "7-b"]);
        assert_eq!(ticket_ids(&rows, 8), ["8-a"]);
        // Deletes find the rows under their time keys.
        let mut d = Dirty::default();
        d.delete(7, &[(10, 2)], &[(50, "a".into())], &[]);
        commit(&d);
        let rows = read_time_rows(&db).unwrap();
        assert_eq!(ids(&rows, 7), (vec![1], vec!["b".into()]));
        // A snapshot of group 7 replaces its rows only; its tickets go by
        // key, a version still waiting for the checkpoint (7-c) with them.
        let mut d = Dirty::default();
        d.put(7, puts(&[ticket(40, "7-c")], &[], &[]));
        d.clear(7);
        d.delete_tickets(7, &[(10, "7-a".into()), (30, "7-b".into())]);
        commit(&d);
        let rows = read_time_rows(&db).unwrap();
        assert!(!rows.contains_key(&7));
        assert_eq!(ids(&rows, 8), (vec![3], vec!["c".into()]));
        assert_eq!(ticket_ids(&rows, 8), ["8-a"]);
    }

    /// A snapshot's install through `Storage::write` replaces its group's
    /// tickets — those in redb and one still waiting for a checkpoint,
    /// deleted by the keys the replica handed over — and leaves another
    /// group's tickets with the same accept time alone, across a restart.
    #[test]
    fn a_snapshot_replaces_its_groups_tickets_only() {
        use crate::core::replica::SnapshotInstall;
        use crate::core::tickets::SmWrites;
        let dir = tempfile::tempdir().unwrap();
        let ticket = |id: &str, accepted_at_ms, text: &str| {
            Arc::new(Ticket {
                id: id.into(),
                accepted_at_ms,
                text: text.into(),
                ..Default::default()
            })
        };
        let cs = ConfState {
            voters: vec![1],
            ..Default::default()
        };
        let batch = |g, tickets, conf_state: Option<ConfState>| WriteBatch {
            group_id: g,
            conf_state: conf_state.map(Box::new),
            sm: SmWrites {
                tickets,
                ..Default::default()
            },
            must_sync: true,
            ..Default::default()
        };
        let mut st = Storage::open(dir.path()).unwrap();
        // A configuration is checkpointed at once: these rows reach redb.
        st.write(&[
            &batch(
                7,
                vec![ticket("a", 10, ""), ticket("b", 20, "")],
                Some(cs.clone()),
            ),
            &batch(8, vec![ticket("x", 20, "")], Some(cs.clone())),
        ])
        .unwrap();
        // This one only waits in memory.
        st.write(&[&batch(7, vec![ticket("c", 30, "")], None)])
            .unwrap();
        assert!(!st.dirty.is_empty());
        let install = WriteBatch {
            group_id: 7,
            snapshot: Some(Box::new(SnapshotInstall {
                index: 9,
                term: 2,
                conf_state: cs.clone(),
                state: StateSnapshot {
                    group_id: 7,
                    tickets: vec![
                        (*ticket("b", 20, "changed")).clone(),
                        (*ticket("d", 40, "")).clone(),
                    ],
                    ..Default::default()
                },
                replaced_tickets: vec![(10, "a".into()), (20, "b".into()), (30, "c".into())],
            })),
            must_sync: true,
            ..Default::default()
        };
        st.write(&[&install]).unwrap();
        for restart in [false, true] {
            if restart {
                drop(st);
                st = Storage::open(dir.path()).unwrap();
            } else {
                st.checkpoint().unwrap();
            }
            let tickets = |st: &mut Storage, g| {
                let rec = st.load(g).unwrap().expect("on disk");
                let mut t: Vec<(String, String)> = rec
                    .state
                    .tickets
                    .into_iter()
                    .map(|t| (t.id, t.text))
                    .collect();
                t.sort();
                t
            };
            assert_eq!(
                tickets(&mut st, 7),
                [("b".into(), "changed".into()), ("d".into(), String::new())],
                "restart {restart}"
            );
            assert_eq!(tickets(&mut st, 8), [("x".into(), String::new())]);
            // A second load of the same group reads the tables again.
            assert_eq!(tickets(&mut st, 8).len(), 1);
        }
    }

    /// A directory written in another table layout is refused with the
    /// format it has, not half read: one from before the format was
    /// recorded (a checkpoint but no format) counts as format 1.
    #[test]
    fn a_directory_of_another_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_, st, r) = founded(dir.path());
        drop(r);
        drop(st);
        Storage::open(dir.path()).expect("the same format opens");
        let set = |v: Option<u64>| {
            let db = Database::create(dir.path().join("hotline.redb")).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut node = tx.open_table(NODE).unwrap();
                match v {
                    Some(v) => node.insert(FORMAT, v).unwrap(),
                    None => node.remove(FORMAT).unwrap(),
                };
            }
            tx.commit().unwrap();
        };
        let newer = FORMAT_VERSION + 1;
        for (written, found) in [(None, 1), (Some(2), 2), (Some(newer), newer)] {
            set(written);
            match Storage::open(dir.path()) {
                Err(e @ StorageError::Format { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains(&format!("format {found}")), "{msg}");
                    assert!(
                        msg.contains(&format!("reads format {FORMAT_VERSION}")),
                        "{msg}"
                    );
                }
                Err(e) => panic!("expected a format error, got {e}"),
                Ok(_) => panic!("format {found} opened"),
            }
        }
        set(Some(FORMAT_VERSION));
        Storage::open(dir.path()).expect("back to this format");
    }

    /// A group's raft image survives its one row as it was, an empty conf
    /// state included; a row whose tail has a gap is named corrupt.
    #[test]
    fn a_raft_image_row_round_trips_and_a_gap_is_corrupt() {
        let entry = |index, term| Entry {
            index,
            term,
            data: vec![index as u8; 3].into(),
            ..Default::default()
        };
        let hs = HardState {
            term: 4,
            vote: 2,
            commit: 11,
            ..Default::default()
        };
        let cs = ConfState {
            voters: vec![1, 2, 3],
            ..Default::default()
        };
        let img = Image {
            hard_state: hs,
            conf_state: Some(cs),
            applied: 10,
            applied_term: 3,
            tail: [entry(11, 4), entry(12, 4)].into_iter().collect(),
        };
        let back = Image::decode(7, &img.encode()).expect("decodes");
        assert_eq!(back.hard_state, img.hard_state);
        assert_eq!(back.conf_state, img.conf_state);
        assert_eq!((back.applied, back.applied_term), (10, 3));
        assert_eq!(back.tail, img.tail);
        for conf_state in [None, Some(ConfState::default())] {
            let i = Image {
                conf_state: conf_state.clone(),
                ..Image::default()
            };
            assert_eq!(
                Image::decode(7, &i.encode()).unwrap().conf_state,
                conf_state
            );
        }
        let gap = Image {
            tail: [entry(11, 4), entry(13, 4)].into_iter().collect(),
            ..img
        };
        match Image::decode(7, &gap.encode()) {
            Err(StorageError::Corrupt {
                group: 7,
                what,
                detail,
            }) => {
                assert_eq!(what, "log");
                assert!(detail.contains("expected index 12, found 13"), "{detail}");
            }
            other => panic!("expected a corrupt log, got {:?}", other.map(|i| i.applied)),
        }
    }

    /// The audit chain catches an event altered on disk behind the state
    /// machine's back (e.g. by someone with access to the redb file).
    #[test]
    fn an_event_altered_on_disk_breaks_the_chain() {
        use crate::core::tickets::verify_ticket;
        use hotline_proto::v1::{Actor, Dispatch, Role, TicketCommand, ticket_command::Op};
        let dir = tempfile::tempdir().unwrap();
        let (_, mut st, mut r) = founded(dir.path());
        let at = 1_795_831_200_000;
        r.propose(&Command {
            request_id: 1,
            at_ms: at,
            accept_text: Vec::new(),
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
            accept_text: Vec::new(),
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
                let key = (at, 310114, id.as_str());
                let mut ticket = Ticket::decode(t.get(key).unwrap().unwrap().value()).unwrap();
                ticket.events[1].reason = "派往别处".into();
                t.insert(key, ticket.encode_to_vec().as_slice()).unwrap();
            }
            tx.commit().unwrap();
        }
        let rec = st.load(310114).unwrap().unwrap();
        let b = verify_ticket(&rec.state.tickets[0]).unwrap_err();
        assert_eq!(b.seq, 2, "{}", b.detail);
        assert!(b.detail.contains("altered"), "{}", b.detail);
    }
}
