//! Keeps this node's directory in step with the replicated one (DESIGN.md
//! §4; the state is `core::placements`, kept by the national group).
//!
//! A node
//! 1. follows the directory ([`follow`]): reads it from a national replica
//!    — its own if it hosts one, else `Federation.Directory` on all of
//!    national's voters, taking only what a majority of them answer alike —
//!    and routes with it from then on if it is newer than what it has (the
//!    topology file's groups, overlaid with every replicated placement).
//!    The read is a long poll: a national replica with nothing newer holds
//!    it until it applies a newer version ([`DIRECTORY_WAIT`] at most), so
//!    a change reaches every node as it is applied, not at a next poll;
//! 2. every [`SYNC_INTERVAL`], reports for every group it leads the
//!    configuration the group has applied if the directory says otherwise
//!    (`Federation.Place`): this is how a membership change made online
//!    reaches every node's routing. A change applied through this node
//!    starts a round at once, and quick rounds follow until its report is
//!    taken (see [`run`]);
//! 3. if it leads the national group, places the topology's groups the
//!    directory does not have yet (the seed).
//!
//! The round reads each replica's status locally: it wakes no hibernating
//! group and sends no raft message. An unchanged directory costs one small
//! answer per national voter every [`DIRECTORY_WAIT`] (the request carries
//! the version the node has).

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hotline_federation::directory::{Directory, NATIONAL};
use hotline_federation::topology::{GroupSpec, group_region};
use hotline_proto::v1::federation_client::FederationClient;
use hotline_proto::v1::{DirectoryImage, DirectoryRequest, Placement, ReadLabel, command};
use tonic::Status;

use crate::core::placements::{agreed, from_spec, majority, to_report, to_spec, version_only};
use crate::core::{ApplyResult, Query, QueryAnswer};
use crate::forwarder::from_node;
use crate::server::Handle;

/// How often a node reads the directory and checks its groups' placements.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(2);
/// Bound on one `Federation.Directory` answer, above tonic's 4 MiB default:
/// a full directory ([`MAX_GROUPS`](crate::core::placements::MAX_GROUPS)
/// groups of [`MAX_MEMBERS`](crate::core::placements::MAX_MEMBERS)
/// replicas each) fits (`core::placements` tests it).
pub const MAX_DIRECTORY_BYTES: usize = 16 << 20;
/// Bound on the placements one round reports (a national leader seeding
/// thousands of groups does it over several rounds).
pub const MAX_PLACES_PER_ROUND: usize = 256;
/// After a membership change applied on this node, rounds follow at this
/// pace until the change is reported (the group's followers apply it a
/// moment after its leader, and a report is taken only once a majority of
/// the voters show it), at most [`MAX_QUICK_ROUNDS`] times; then the
/// ordinary [`SYNC_INTERVAL`] again.
pub const QUICK_ROUND_DELAY: Duration = Duration::from_millis(200);
pub const MAX_QUICK_ROUNDS: u32 = 10;
/// How long a national replica holds a `Federation.Directory` long poll
/// that has nothing newer (the request's `wait_ms` may ask less).
pub const DIRECTORY_WAIT: Duration = Duration::from_secs(10);
/// Long polls one node holds at once; past it, requests are answered at
/// once (a caller holds one per national voter).
pub const MAX_DIRECTORY_WAITERS: usize = 1_024;

/// The directory a node routes with: the topology file's, overlaid with the
/// newest replicated directory it has read.
pub struct LiveDirectory {
    topology: Vec<GroupSpec>,
    current: RwLock<(Arc<Directory>, Arc<DirectoryImage>)>,
    /// Rung when a membership change was applied here ([`Self::changed`]).
    changes: tokio::sync::Notify,
    /// The directory version this node's national replica last applied
    /// (durably), if it hosts one: long polls wait on it.
    national: tokio::sync::watch::Sender<u64>,
    /// Bounds the long polls waiting here.
    waiters: Arc<tokio::sync::Semaphore>,
    /// When the directory in use was last known current ([`Self::age`]).
    confirmed: Mutex<Option<Instant>>,
}

impl LiveDirectory {
    pub fn new(topology: &hotline_federation::topology::Topology) -> LiveDirectory {
        LiveDirectory {
            topology: topology.groups.clone(),
            current: RwLock::new((
                Arc::new(Directory::new(topology)),
                Arc::new(DirectoryImage::default()),
            )),
            changes: tokio::sync::Notify::new(),
            national: tokio::sync::watch::Sender::new(0),
            waiters: Arc::new(tokio::sync::Semaphore::new(MAX_DIRECTORY_WAITERS)),
            confirmed: Mutex::new(None),
        }
    }

    /// How long ago the directory in use was last known current: a
    /// majority of national's voters answered a read with nothing newer
    /// (or with the newer one now in use). `None`: never. (A node hosting a
    /// national replica asks the replica instead: [`age`].) A node cut off
    /// from national's majority keeps routing with what it has (the
    /// destination checks every envelope against its own group); this age
    /// is how `hotline status` tells the operator so. While the voters hold
    /// a long poll nothing is confirmed, so on a healthy node it runs up to
    /// [`DIRECTORY_WAIT`] (see [`Self::is_current`]).
    pub fn age(&self) -> Option<Duration> {
        let at = *self.confirmed.lock().expect("not poisoned");
        at.map(|t| t.elapsed())
    }

    /// Whether [`Self::age`] is within what a healthy node shows: one long
    /// poll and one read interval.
    pub fn is_current(age: Duration) -> bool {
        age <= DIRECTORY_WAIT + SYNC_INTERVAL
    }

    fn confirm(&self, at: Instant) {
        let mut c = self.confirmed.lock().expect("not poisoned");
        if c.is_none_or(|t| t < at) {
            *c = Some(at);
        }
    }

    /// The raft loop: this node's national replica applied directory
    /// `version`, durably.
    pub(crate) fn national_applied(&self, version: u64) {
        self.national.send_replace(version);
    }

    /// A membership change was applied on this node (its leader): the
    /// sync reports it now rather than at its next round, up to
    /// [`SYNC_INTERVAL`] later.
    pub fn changed(&self) {
        self.changes.notify_one();
    }

    /// The directory in use now.
    pub fn get(&self) -> Arc<Directory> {
        self.current.read().expect("not poisoned").0.clone()
    }

    /// The newest replicated directory read so far (version 0: none yet),
    /// its groups sorted by id (`placements::places` searches them).
    pub fn image(&self) -> Arc<DirectoryImage> {
        self.current.read().expect("not poisoned").1.clone()
    }

    /// Routes with `img` from now on if it is newer than the one in use.
    /// Returns whether it was.
    pub fn offer(&self, mut img: DirectoryImage) -> bool {
        if img.version <= self.image().version {
            return false;
        }
        // National's state machine sends them in this order already (a
        // map by id); sorted here, whoever built the image, so that
        // `placements::places` may search it.
        img.groups.sort_by_key(|p| p.group_id);
        let placed: Vec<GroupSpec> = img.groups.iter().map(to_spec).collect();
        let dir = Directory::from_groups(self.topology.iter().chain(&placed), img.version);
        let mut cur = self.current.write().expect("not poisoned");
        if img.version <= cur.1.version {
            return false; // a concurrent offer won
        }
        *cur = (Arc::new(dir), Arc::new(img));
        true
    }
}

/// Until `stop` completes: follows the replicated directory ([`follow`])
/// and runs report rounds every [`SYNC_INTERVAL`], at once after a
/// membership change applied here, then every [`QUICK_ROUND_DELAY`] while
/// a report is not yet confirmed (at most [`MAX_QUICK_ROUNDS`] times).
pub async fn run(h: Handle, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let mut every = tokio::time::interval(SYNC_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut quick_left = 0;
    let reports = async {
        loop {
            let quick = tokio::time::sleep(QUICK_ROUND_DELAY);
            tokio::select! {
                _ = every.tick() => {}
                () = h.directory.changes.notified() => quick_left = MAX_QUICK_ROUNDS,
                () = quick, if quick_left > 0 => quick_left -= 1,
            }
            match round(&h).await {
                Ok(0) => quick_left = 0,
                Ok(_) => {}
                Err(e) => tracing::debug!(node = h.node_id, error = %e, "directory round"),
            }
        }
    };
    tokio::select! {
        () = reports => {}
        () = follow(&h) => {}
        () = &mut stop => {}
    }
}

/// Reads the directory as it changes: a long poll
/// ([`DIRECTORY_WAIT`]) that national's replicas answer as soon as they
/// apply a newer version, then routes with it. Reads that bring nothing
/// new start no more often than every [`SYNC_INTERVAL`] (a voter that
/// answers at once, or cannot be reached, costs what polling did).
async fn follow(h: &Handle) {
    loop {
        let started = tokio::time::Instant::now();
        let known = h.directory.image().version;
        match fetch(h, known, DIRECTORY_WAIT).await {
            Ok(img) if img.version > known => {
                let (version, groups) = (img.version, img.groups.len());
                if h.directory.offer(img) {
                    tracing::info!(node = h.node_id, version, groups, "directory updated");
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(node = h.node_id, error = %e, "directory read"),
        }
        tokio::time::sleep_until(started + SYNC_INTERVAL).await;
    }
}

/// One round; returns how many reports were not taken.
async fn round(h: &Handle) -> Result<usize, Status> {
    let img = h.directory.image();
    let status = h.status_now().await?;
    // A joint configuration is on its way somewhere: report where it lands.
    let leading = status
        .groups
        .iter()
        .filter(|g| g.role == "leader" && g.voters_outgoing.is_empty() && !g.voters.is_empty())
        .map(|g| Placement {
            group_id: g.group_id,
            region: group_region(g.group_id),
            voters: g.voters.clone(),
            learners: g.learners.clone(),
        });
    let leads_national = status
        .groups
        .iter()
        .any(|g| g.group_id == NATIONAL && g.role == "leader");
    let seed = h
        .topology
        .groups
        .iter()
        .filter(|_| leads_national)
        .filter_map(from_spec);
    let reports = to_report(&img, leading, seed, MAX_PLACES_PER_ROUND);
    let mut not_taken = 0;
    for p in reports {
        let group = p.group_id;
        match place(h, leads_national, p).await {
            // The answer carries the version only: the next round reads
            // the directory that has it.
            Ok(img) => {
                let version = img.version;
                tracing::info!(node = h.node_id, group, version, "placement reported");
            }
            Err(e) => {
                not_taken += 1;
                tracing::debug!(node = h.node_id, group, error = %e, "placement not reported");
            }
        }
    }
    Ok(not_taken)
}

/// The replicated directory: this node's own national replica's if it
/// hosts one (a local read: it may trail, the version says by how much),
/// else what a majority of national's voters answer alike on
/// `Federation.Directory`, asked concurrently
/// (`core::placements::agreed`). An answer at `known` carries no groups;
/// so does this one when nothing newer is agreed on yet. With a `wait`,
/// each voter holds the request until it has something newer (or the
/// wait is over), and the answer comes as soon as a majority agree on one.
/// A majority's answer confirms the directory ([`LiveDirectory::age`]).
async fn fetch(h: &Handle, known: u64, wait: Duration) -> Result<DirectoryImage, Status> {
    if h.hosted.contains(NATIONAL) {
        return local_image_after(h, known, wait).await;
    }
    let me = h.node_id;
    let voters = h.dir().voters(NATIONAL).to_vec();
    let wait_ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
    let mut asks: futures::stream::FuturesUnordered<_> = voters
        .iter()
        .map(|&node| async move {
            let answer = h
                .call_node_within(
                    node,
                    wait + crate::forwarder::FORWARD_TIMEOUT,
                    |ch| async move {
                        FederationClient::new(ch)
                            .max_decoding_message_size(MAX_DIRECTORY_BYTES)
                            .directory(from_node(
                                me,
                                DirectoryRequest {
                                    known_version: known,
                                    wait_ms,
                                },
                            ))
                            .await
                            .map(|r| r.into_inner())
                    },
                )
                .await;
            // A drill that cut the link while the poll was held drops its
            // answer too: `call_node_within` judges the answer when it comes.
            (node, answer)
        })
        .collect();
    let mut answers = Vec::with_capacity(voters.len());
    let mut last = Status::unavailable("the national group has no voter");
    while let Some((node, answer)) = asks.next().await {
        match answer {
            Ok(img) => answers.push((node, img)),
            Err(e) => last = e,
        }
        if let Some(img) = agreed(&answers, &voters, known) {
            h.directory.confirm(Instant::now());
            return Ok(img);
        }
    }
    if answers.len() < majority(voters.len()) {
        return Err(last);
    }
    h.directory.confirm(Instant::now());
    Ok(version_only(known))
}

/// How long ago the directory this node routes with was last known
/// current ([`LiveDirectory::age`]); on a node hosting a national replica,
/// how long ago that replica last heard its leader (zero if it leads), read
/// now from the replica.
pub(crate) async fn age(h: &Handle) -> Result<Option<Duration>, Status> {
    if !h.hosted.contains(NATIONAL) {
        return Ok(h.directory.age());
    }
    // Only the label is wanted: an answer for a reader "ahead" of every
    // version carries no groups.
    let (_, label) = local_image(h, u64::MAX).await?;
    Ok(Some(Duration::from_millis(label.since_leader_ms)))
}

/// [`local_image`], held up to `wait` (bounded by [`DIRECTORY_WAIT`] and
/// by [`MAX_DIRECTORY_WAITERS`]) until this node's national replica has
/// applied a version newer than `known`.
pub(crate) async fn local_image_after(
    h: &Handle,
    known: u64,
    wait: Duration,
) -> Result<DirectoryImage, Status> {
    // Subscribed before the read: a version applied in between wakes it.
    let mut applied = h.directory.national.subscribe();
    let (img, _) = local_image(h, known).await?;
    if img.version > known || wait.is_zero() {
        return Ok(img);
    }
    let Ok(_permit) = h.directory.waiters.clone().try_acquire_owned() else {
        return Ok(img);
    };
    let newer = applied.wait_for(|&v| v > known);
    let _ = tokio::time::timeout(wait.min(DIRECTORY_WAIT), newer).await;
    Ok(local_image(h, known).await?.0)
}

/// This node's national replica's directory (only its version if that is
/// `known`: the groups are not copied for nothing), with the read's label.
pub(crate) async fn local_image(
    h: &Handle,
    known: u64,
) -> Result<(DirectoryImage, ReadLabel), Status> {
    let query = Query::Directory {
        known_version: known,
    };
    match h.at(NATIONAL)?.read_local(query).await? {
        (QueryAnswer::Directory(img), label) => Ok((img, label)),
        _ => Err(Status::internal("unexpected answer")),
    }
}

/// Commits a placement in the national group: here if this node leads it,
/// else through a national member (`Federation.Place`).
async fn place(h: &Handle, national_here: bool, p: Placement) -> Result<DirectoryImage, Status> {
    if national_here {
        return commit(h, p).await;
    }
    let me = h.node_id;
    h.federation_call(NATIONAL, |ch| {
        let p = p.clone();
        async move {
            FederationClient::new(ch)
                .place(from_node(me, p))
                .await
                .map(|r| r.into_inner())
        }
    })
    .await
}

/// Proposes the placement to this node's national replica.
pub(crate) async fn commit(h: &Handle, p: Placement) -> Result<DirectoryImage, Status> {
    match h.at(NATIONAL)?.propose(command::Op::Place(p), 0).await? {
        ApplyResult::Directory(img) => Ok(img),
        _ => Err(Status::internal("unexpected answer")),
    }
}
