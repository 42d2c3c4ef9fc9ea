//! The federation driver: the forwarder that moves transfer envelopes and
//! receipts between groups, and the `Federation` gRPC service that receives
//! them (DESIGN.md §5).
//!
//! The state machine (`core::transfer`) decides what is in whose custody;
//! `core::transfer::forward_candidates` decides, from the directory, which
//! groups to try next. This module only moves bytes: while this node leads a
//! group, it reads the group's pending work, calls `Forward` on a member node
//! of a candidate group (which commits the envelope in its own group before
//! answering: store and forward), and then commits `HopDone` or
//! `ReceiptPassed` in its own group. Every step is idempotent by transfer
//! id, so retries after timeouts, leader changes or partitions deliver
//! exactly once.

use futures::StreamExt as _;
use std::future::Future;
use std::time::Duration;

use hotline_proto::v1::admin_client::AdminClient;
use hotline_proto::v1::federation_client::FederationClient;
use hotline_proto::v1::federation_server::Federation;
use hotline_proto::v1::{
    Custody, DirectoryImage, DirectoryRequest, FederatedQueryRequest, FederatedQueryResponse,
    ForwardRequest, ForwardResponse, HopDone, Placement, ReceiptIn, ReceiptPassed, StatusRequest,
    StatusResponse, TransferRecord, TransfersRequest, TransfersResponse, command,
};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::core::transfer::{ForwarderPace, InFlight, forward_candidates, hop_allowed};
use crate::core::{ApplyResult, Query, QueryAnswer};
use crate::faults::Verdict;
use crate::server::Handle;
use crate::tls;

/// Deadline of one `Forward` call (the callee waits for a commit).
pub(crate) const FORWARD_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a `Forward` waits on one member of the next group before it
/// asks the next member too. While that group elects a leader, a member
/// that still names the old, unreachable one may hold the call for the
/// whole [`FORWARD_TIMEOUT`]; asked one after another, such members stacked
/// their 3 s (the leader-kill drill: a hand-on after 3.0 s).
/// A commit takes a few ms to tens of ms here, so 500 ms rarely asks twice,
/// and asking twice is safe: the callee takes custody once per transfer id.
const FORWARD_HEDGE_AFTER: Duration = Duration::from_millis(500);
/// Metadata key carrying the calling node's id (checked against its certificate).
pub const NODE_HEADER: &str = "x-hotline-node";

/// A federation request from node `me`: the header names it, and the
/// callee checks the header against the TLS certificate.
pub(crate) fn from_node<T>(me: u64, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert(NODE_HEADER, me.to_string().parse().expect("digits"));
    r
}
/// How long a caller found in a group's live configuration stays trusted
/// to send for it, and one found outside it stays refused without asking
/// again (so a flood of refused calls is not a flood of status calls).
const LIVE_MEMBER_TTL: Duration = Duration::from_secs(30);
const LIVE_NONMEMBER_TTL: Duration = Duration::from_secs(5);
/// Bound on that memory: it is cleared when full.
const MAX_LIVE_MEMBER_ENTRIES: usize = 4_096;

/// (group, node, voters only) → whether the node was in the group's
/// configuration (as a voter, if asked so), and when that was learnt
/// ([`Handle::is_live_member`]).
pub(crate) type LiveMembers =
    std::sync::Mutex<std::collections::HashMap<(u64, u64, bool), (bool, std::time::Instant)>>;

/// Asks `members` one after another, each call bounded by its own timeout
/// (`call`), until one succeeds; a failure moves on to the next member at
/// once. With `hedge_after`, a member that has not answered by then no
/// longer holds up the next: both stay asked, and the first success wins.
/// When all fail, the error is the last to arrive.
async fn first_success<T, Fut>(
    group: u64,
    members: Vec<u64>,
    hedge_after: Option<Duration>,
    call: impl Fn(u64) -> Fut,
) -> Result<T, Status>
where
    Fut: Future<Output = Result<T, Status>>,
{
    let mut last = Status::unavailable(format!("group {group} has no reachable member"));
    let mut waiting = members.into_iter().peekable();
    let mut asked = futures::stream::FuturesUnordered::new();
    loop {
        if asked.is_empty() {
            match waiting.next() {
                Some(node) => asked.push(call(node)),
                None => return Err(last),
            }
        }
        let hedge = hedge_after.filter(|_| waiting.peek().is_some());
        tokio::select! {
            r = asked.next() => match r.expect("asked is not empty") {
                Ok(v) => return Ok(v),
                // A failure moves on at once, whoever else is still asked.
                Err(s) => {
                    last = s;
                    if let Some(node) = waiting.next() {
                        asked.push(call(node));
                    }
                }
            },
            _ = tokio::time::sleep(hedge.unwrap_or_default()), if hedge.is_some() => {
                asked.push(call(waiting.next().expect("peeked")));
            }
        }
    }
}

impl Handle {
    /// Calls `f` on member nodes of `group` in turn until one succeeds,
    /// honouring drills (faults) on each link.
    pub(crate) async fn federation_call<T, F, Fut>(&self, group: u64, f: F) -> Result<T, Status>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.federation_call_hedged(group, None, f).await
    }

    /// [`Self::federation_call`], but when a member has not answered within
    /// `hedge_after`, the next one is asked too (the first stays asked) and
    /// the first success wins. Only for calls that are safe to make twice:
    /// a `Forward` is idempotent by transfer id at the callee.
    pub(crate) async fn federation_call_hedged<T, F, Fut>(
        &self,
        group: u64,
        hedge_after: Option<Duration>,
        f: F,
    ) -> Result<T, Status>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.members_call(group, FORWARD_TIMEOUT, hedge_after, f)
            .await
            .map(|(_, v)| v)
    }

    /// [`Self::federation_call`] with `per_call` for each member instead of
    /// [`FORWARD_TIMEOUT`]: for a federated query, whose callee answers by
    /// the query's deadline (with the regions it could not reach) and may
    /// rightly take until then. A member that is down or cut off still
    /// fails at once (refused, or a drill), or at the connect timeout; one
    /// that holds the call (a stalled process, a read that never returns)
    /// gets the next member asked too after a third of `per_call`, so the
    /// group's other members still answer in time. Only for reads. The
    /// answer comes with the node that gave it: the caller names it when it
    /// refuses part of the answer.
    pub(crate) async fn federation_call_within<T, F, Fut>(
        &self,
        group: u64,
        per_call: Duration,
        f: F,
    ) -> Result<(u64, T), Status>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let hedge_after = (per_call / 3).max(Duration::from_millis(200));
        self.members_call(group, per_call, Some(hedge_after), f)
            .await
    }

    /// `f` on `group`'s members in turn (hedged after `hedge_after`), each
    /// call within `per_call`, until one succeeds; with the node that
    /// answered.
    async fn members_call<T, F, Fut>(
        &self,
        group: u64,
        per_call: Duration,
        hedge_after: Option<Duration>,
        f: F,
    ) -> Result<(u64, T), Status>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let f = &f;
        first_success(
            group,
            self.dir().members(group).to_vec(),
            hedge_after,
            |node| async move {
                self.call_node_within(node, per_call, f)
                    .await
                    .map(|v| (node, v))
            },
        )
        .await
    }

    /// Calls `f` on one node over its federation channel (this node's own
    /// over loopback), honouring a drill on the link, within
    /// [`FORWARD_TIMEOUT`].
    pub(crate) async fn call_node<T, F, Fut>(&self, node: u64, f: F) -> Result<T, Status>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.call_node_within(node, FORWARD_TIMEOUT, f).await
    }

    /// [`Self::call_node`] within `timeout` (a long poll's wait plus
    /// [`FORWARD_TIMEOUT`]).
    pub(crate) async fn call_node_within<T, F, Fut>(
        &self,
        node: u64,
        timeout: Duration,
        f: F,
    ) -> Result<T, Status>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let drilled = node != self.node_id;
        let request = if drilled {
            self.faults.outbound(node)
        } else {
            Verdict::Pass
        };
        if request == Verdict::Drop {
            return Err(link_cut(node));
        }
        let Some(ch) = self.fed.get(&node).cloned() else {
            return Err(Status::unavailable(format!("node {node} is not known")));
        };
        // A drill's delay is part of the call's time, as a long link's is:
        // a call across a 30 s delay gives up at its timeout, not after
        // 30 s plus the timeout.
        let call = async {
            if let Verdict::Delay(d) = request {
                tokio::time::sleep(d).await;
            }
            let answer = f(ch).await;
            if !drilled {
                return answer;
            }
            // The answer crosses the link the other way.
            match self.faults.answer_from(node) {
                Verdict::Pass => answer,
                Verdict::Delay(d) => {
                    tokio::time::sleep(d).await;
                    answer
                }
                // Lost after `node` acted on the request: the caller retries,
                // and the callee's idempotence is what makes that safe.
                Verdict::Drop => Err(Status::unavailable(format!(
                    "the answer of node {node} was lost (drill)"
                ))),
            }
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "node {node} did not answer"
            ))),
        }
    }

    /// Whether `node` is in group `g`'s configuration now: for a caller the
    /// topology file does not list as a member, added online (`hotline group
    /// add-learner`/`promote`) — it may lead the group and send its
    /// transfers. The group itself says: this node's replica if it hosts
    /// it, else a listed member's (`Admin.Status`: the configuration each
    /// replica has applied). Answers are remembered for a while.
    /// `voter`: only a voter counts (a learner may not lead the group).
    pub(crate) async fn is_live_member(&self, g: u64, node: u64, voter: bool) -> bool {
        let now = std::time::Instant::now();
        if let Some(&(member, at)) = self
            .live_members
            .lock()
            .expect("not poisoned")
            .get(&(g, node, voter))
        {
            let ttl = if member {
                LIVE_MEMBER_TTL
            } else {
                LIVE_NONMEMBER_TTL
            };
            if now.duration_since(at) < ttl {
                return member;
            }
        }
        let names = |s: &StatusResponse| {
            s.groups.iter().find(|x| x.group_id == g).map(|x| {
                x.voters.contains(&node)
                    || x.voters_outgoing.contains(&node)
                    || (!voter && x.learners.contains(&node))
            })
        };
        let member = if self.hosted.contains(g) {
            self.status_now().await.ok().as_ref().and_then(names)
        } else {
            self.federation_call(g, |ch| async move {
                let s = AdminClient::new(ch)
                    .status(StatusRequest {})
                    .await?
                    .into_inner();
                // A listed node that no longer hosts the group: ask the next.
                names(&s).ok_or_else(|| Status::not_found("group not hosted there"))
            })
            .await
            .ok()
        };
        let Some(member) = member else {
            return false; // nobody answered: refuse, and ask again next time
        };
        let mut m = self.live_members.lock().expect("not poisoned");
        if m.len() >= MAX_LIVE_MEMBER_ENTRIES {
            m.clear();
        }
        m.insert((g, node, voter), (member, now));
        member
    }

    async fn forward_to(&self, group: u64, req: ForwardRequest) -> Result<ForwardResponse, Status> {
        let me = self.node_id;
        self.federation_call_hedged(group, Some(FORWARD_HEDGE_AFTER), |ch| {
            let req = req.clone();
            async move {
                FederationClient::new(ch)
                    .forward(from_node(me, req))
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await
    }

    /// The work a look found: the records to hand on, read from this
    /// node's replica as the group's settled leader.
    /// `peek`: the look that found work to do.
    async fn read_work(&self, peek: crate::raft_loop::Peek) -> Result<Vec<TransferRecord>, Status> {
        match self
            .read_as_settled_leader(
                peek,
                Query::TransferWork {
                    limit: ForwarderPace::MAX_WORK_PER_ROUND,
                },
            )
            .await?
        {
            QueryAnswer::Transfers(work) => Ok(work),
            _ => Err(Status::internal("unexpected answer")),
        }
    }

    /// Hands one record on; resolves to its transfer id when done (or
    /// failed). Owned record and handle keep the future `Send` and free of
    /// borrows, so it can outlive the round that started it.
    fn hand_on(&self, rec: TransferRecord) -> impl Future<Output = String> + Send + 'static {
        let h = self.clone();
        async move {
            h.forward_one(&rec).await;
            rec.envelope.map(|e| e.transfer_id).unwrap_or_default()
        }
    }

    async fn forward_one(&self, rec: &TransferRecord) -> bool {
        let Some(env) = rec.envelope.as_ref() else {
            return false;
        };
        let me = self.group_id;
        for cand in forward_candidates(&self.dir(), me, rec) {
            let req = if rec.receipt_pending {
                ForwardRequest {
                    from_group: me,
                    to_group: cand,
                    envelope: None,
                    receipt: rec.receipt.clone(),
                }
            } else {
                ForwardRequest {
                    from_group: me,
                    to_group: cand,
                    envelope: Some(env.clone()),
                    receipt: None,
                }
            };
            match self.forward_to(cand, req).await {
                Ok(resp) => {
                    tracing::info!(
                        group = me,
                        to = cand,
                        transfer = env.transfer_id,
                        receipt = rec.receipt_pending,
                        duplicate = resp.duplicate,
                        "transfer handed on"
                    );
                    let op = if rec.receipt_pending {
                        command::Op::ReceiptPassed(ReceiptPassed {
                            transfer_id: env.transfer_id.clone(),
                        })
                    } else {
                        command::Op::HopDone(HopDone {
                            transfer_id: env.transfer_id.clone(),
                            next_group: cand,
                        })
                    };
                    // If this commit is lost, the next round hands it on
                    // again and the next hop answers "duplicate".
                    return self.propose(op, 0).await.is_ok();
                }
                Err(s) => {
                    tracing::debug!(group = me, to = cand, "forward failed: {}", s.message());
                }
            }
        }
        false
    }
}

/// Runs the forwarder of one hosted group until `shutdown` resolves.
///
/// It wakes when the raft loop rings the group's bell (its transfer records
/// changed on this node, or this node became the group's leader), and
/// otherwise polls at a pace that slows down while the group has nothing to
/// pass on — an idle group costs a timer and a local peek every half
/// minute. Rounds and stragglers follow the core's [`InFlight`].
pub async fn run(
    h: Handle,
    bell: std::sync::Arc<tokio::sync::Notify>,
    shutdown: impl Future<Output = ()> + Send,
) {
    tokio::pin!(shutdown);
    // The pace and the rounds are the core's, so the simulator's forwarder
    // keeps the same.
    let mut pace = ForwarderPace::new();
    let mut in_flight = InFlight::default();
    // Every record in flight, as a task resolving to its transfer id:
    // concurrent, so their commits at the next hop and at home share
    // fsyncs instead of queueing one behind another; tasks of their own, so
    // they go on while this loop reads. Dropped (aborted) at shutdown.
    let mut tasks: tokio::task::JoinSet<String> = tokio::task::JoinSet::new();
    // A straggler ended during the last round: look at once after it.
    let mut look_now = false;
    loop {
        if !std::mem::take(&mut look_now) {
            tokio::select! {
                biased;
                _ = &mut shutdown => return,
                // A straggler ended: look at once (see `InFlight`).
                Some(r) = tasks.join_next(), if !tasks.is_empty() => {
                    in_flight.end(&task_ended(r));
                }
                _ = bell.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(pace.pause_ms())) => {}
            }
        }
        // A local look first: only a leader with work reads its group
        // (a read would wake a hibernating group every round).
        let peek = h.peek().await;
        if !pace.look(peek.leader, peek.transfer_work) {
            continue;
        }
        let work = tokio::select! {
            biased;
            _ = &mut shutdown => return,
            r = h.read_work(peek) => match r {
                Ok(work) => work,
                Err(s) => {
                    tracing::debug!(group = h.group_id, "forwarder look: {}", s.message());
                    continue;
                }
            },
        };
        let (round, records) = in_flight.start_round(work);
        for rec in records {
            tasks.spawn(h.hand_on(rec));
        }
        // The round: until each of its records is done, or its patience
        // runs out and the rest go on as stragglers.
        let patience = tokio::time::sleep(Duration::from_millis(ForwarderPace::ROUND_PATIENCE_MS));
        tokio::pin!(patience);
        while !in_flight.round_done(round) {
            tokio::select! {
                biased;
                _ = &mut shutdown => return,
                Some(r) = tasks.join_next() => {
                    look_now |= in_flight.end(&task_ended(r)).is_some_and(|r| r != round);
                }
                _ = &mut patience => {
                    tracing::debug!(
                        group = h.group_id,
                        stragglers = in_flight.len(),
                        "forwarder round goes on without its slowest records"
                    );
                    break;
                }
            }
        }
        debug_assert_eq!(in_flight.len(), tasks.len());
    }
}

/// The transfer id a hand-on task ended with. A panic in one is a bug, and
/// goes on up; nothing else aborts them while the forwarder runs.
fn task_ended(r: Result<String, tokio::task::JoinError>) -> String {
    match r {
        Ok(id) => id,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => unreachable!("a hand-on task was cancelled while its forwarder runs: {e}"),
    }
}

/// What a call on a link a drill cuts gets (before it is sent, or, for a
/// long poll, when its answer comes back through the cut).
pub(crate) fn link_cut(node: u64) -> Status {
    Status::unavailable(format!("link to node {node} is cut (drill)"))
}

#[tonic::async_trait]
impl Federation for Handle {
    /// Takes an envelope or a receipt into one of this node's groups: commits
    /// it there, then answers. Only nodes that are members of the sending
    /// group may call, and only for groups on the directory.
    async fn forward(
        &self,
        req: Request<ForwardRequest>,
    ) -> Result<Response<ForwardResponse>, Status> {
        let caller = self.verified_caller(&req, "forward")?;
        let certs = req.peer_certs();
        let peer_addr = req.remote_addr();
        let r = req.into_inner();
        let dir = self.dir();
        if !dir.contains(r.from_group) || !dir.contains(r.to_group) {
            tracing::warn!(
                caller,
                from = r.from_group,
                to = r.to_group,
                "forward refused: group not in the directory"
            );
            return Err(Status::permission_denied(
                "from_group/to_group: not in the directory",
            ));
        }
        // The directory (the topology file's placement until the group's
        // leader reports one, so a node removed online is no longer listed)
        // names members added online once reported; until then the group
        // says.
        let listed = dir.members(r.from_group).contains(&caller);
        if !listed && !self.is_live_member(r.from_group, caller, false).await {
            tracing::warn!(
                caller,
                presented = ?certs.as_ref().and_then(|c| c.first()).map(tls::presented_names),
                ?peer_addr,
                from = r.from_group,
                "forward refused: caller is not a member of the sending group"
            );
            return Err(Status::permission_denied(format!(
                "node {caller} is not a member of group {}",
                r.from_group
            )));
        }
        if let Err(why) = hop_allowed(
            &dir,
            r.from_group,
            r.to_group,
            r.envelope.as_ref(),
            r.receipt.as_ref(),
        ) {
            tracing::warn!(
                caller,
                from = r.from_group,
                to = r.to_group,
                why,
                "forward refused: not along the directory"
            );
            return Err(Status::permission_denied(why));
        }
        if caller != self.node_id && matches!(self.faults.inbound(caller), Verdict::Drop) {
            return Err(Status::unavailable("link cut (drill)"));
        }
        let g = self.at(r.to_group)?;
        let op = match (r.envelope, r.receipt) {
            (Some(envelope), None) => command::Op::Custody(Custody {
                envelope: Some(envelope),
            }),
            (None, Some(receipt)) => command::Op::ReceiptIn(ReceiptIn {
                receipt: Some(receipt),
            }),
            _ => {
                return Err(Status::invalid_argument(
                    "exactly one of envelope and receipt is required",
                ));
            }
        };
        match g.propose(op, 0).await? {
            ApplyResult::Custody { duplicate } => {
                if duplicate {
                    // The caller did not hear our earlier answer (lost, or
                    // its leader changed before it recorded it): applied
                    // once, answered again. Rare, so worth a line.
                    tracing::info!(
                        caller,
                        from = r.from_group,
                        to = r.to_group,
                        "forward already applied (duplicate): answered again"
                    );
                }
                Ok(Response::new(ForwardResponse { duplicate }))
            }
            _ => Err(Status::internal("unexpected answer")),
        }
    }

    async fn transfers(
        &self,
        req: Request<TransfersRequest>,
    ) -> Result<Response<TransfersResponse>, Status> {
        let r = req.into_inner();
        let limit = if r.limit == 0 {
            100
        } else {
            r.limit.min(1_000) as usize
        };
        let g = self.home(r.group_id)?;
        match g
            .read(Query::Transfers {
                cross_province_only: r.cross_province_only,
                limit,
            })
            .await?
        {
            QueryAnswer::TransferList { mut records, .. } => {
                for rec in &mut records {
                    mask_record(rec);
                }
                Ok(Response::new(TransfersResponse { records }))
            }
            _ => Err(Status::internal("unexpected answer")),
        }
    }

    async fn query(
        &self,
        req: Request<FederatedQueryRequest>,
    ) -> Result<Response<FederatedQueryResponse>, Status> {
        crate::fedquery::query(self, req.into_inner())
            .await
            .map(Response::new)
    }

    /// The replicated directory as this node's national replica has applied
    /// it, or else the newest this node has read; without groups if the
    /// caller already has this version.
    async fn directory(
        &self,
        req: Request<DirectoryRequest>,
    ) -> Result<Response<DirectoryImage>, Status> {
        let DirectoryRequest {
            known_version: known,
            wait_ms,
        } = req.into_inner();
        let wait = Duration::from_millis(wait_ms.into());
        if wait > crate::dirsync::DIRECTORY_WAIT {
            return Err(Status::invalid_argument(format!(
                "wait_ms: {wait_ms} is more than {} ms",
                crate::dirsync::DIRECTORY_WAIT.as_millis()
            )));
        }
        if self
            .hosted
            .contains(hotline_federation::directory::NATIONAL)
        {
            return Ok(Response::new(
                crate::dirsync::local_image_after(self, known, wait).await?,
            ));
        }
        let img = self.directory.image();
        Ok(Response::new(crate::core::placements::answer_at(
            img.version,
            known,
            || (*img).clone(),
        )))
    }

    /// A group's leader reports its configuration; answered by the national
    /// leader once committed (with the directory's version only), if a
    /// majority of the group's voters confirm it. The caller must be a voter of what it
    /// reports (leaders are voters) and a voter of the group now: by the directory this node routes with (the
    /// topology file's placement only until the group is placed, so a node
    /// removed online is not one), or else by the group's own live
    /// configuration (`is_live_member`: a voter added and made leader
    /// within one sync round is in neither list yet).
    async fn place(&self, req: Request<Placement>) -> Result<Response<DirectoryImage>, Status> {
        let caller = self.verified_caller(&req, "place")?;
        let p = req.into_inner();
        let reported = p.voters.contains(&caller);
        let member = reported
            && (self.dir().voters(p.group_id).contains(&caller)
                || self.is_live_member(p.group_id, caller, true).await);
        if !member {
            tracing::warn!(
                caller,
                group = p.group_id,
                "place refused: caller is not a voter of the group"
            );
            return Err(Status::permission_denied(format!(
                "node {caller} is not a voter of group {} (not a member of it, or not among the voters it reports)",
                p.group_id
            )));
        }
        if let Err(e) = self.confirmed_by_majority(&p, caller).await {
            tracing::warn!(caller, group = p.group_id, "place refused: {e}");
            return Err(Status::failed_precondition(format!(
                "group {}: the configuration node {caller} reports is not confirmed: {e}",
                p.group_id
            )));
        }
        crate::dirsync::commit(self, p).await.map(Response::new)
    }
}

impl Handle {
    /// Whether a majority of the group's voters, by the directory, have
    /// applied the configuration `p` reports (each one's `Admin.Status`,
    /// asked concurrently; the caller counts for itself): a report is the
    /// caller's word, and a minority of voters must not place nodes of
    /// their choosing (`core::placements::confirmed`). A voter still
    /// applying the change does not confirm yet; the leader reports again
    /// next round. `Err` says how many confirmed.
    async fn confirmed_by_majority(&self, p: &Placement, caller: u64) -> Result<(), String> {
        use crate::core::placements::{confirmed, majority, same_members};
        let same = |s: &StatusResponse| {
            s.groups.iter().any(|g| {
                g.group_id == p.group_id
                    && g.voters_outgoing.is_empty()
                    && same_members(p, &g.voters, &g.learners)
            })
        };
        let voters = self.dir().voters(p.group_id).to_vec();
        let mut confirmers = vec![caller];
        if confirmed(&voters, &confirmers) {
            return Ok(());
        }
        let mut asks: futures::stream::FuturesUnordered<_> = voters
            .iter()
            .copied()
            .filter(|&n| n != caller)
            .map(|node| async move {
                let status = if node == self.node_id {
                    self.status_now().await
                } else {
                    self.call_node(node, |ch| async move {
                        AdminClient::new(ch)
                            .status(StatusRequest {})
                            .await
                            .map(|r| r.into_inner())
                    })
                    .await
                };
                (node, status)
            })
            .collect();
        while let Some((node, status)) = asks.next().await {
            if status.as_ref().is_ok_and(same) {
                confirmers.push(node);
                if confirmed(&voters, &confirmers) {
                    return Ok(());
                }
            }
        }
        let have = confirmers.iter().filter(|n| voters.contains(n)).count();
        Err(format!(
            "{have} of its {} voters show it, {} needed",
            voters.len(),
            majority(voters.len())
        ))
    }
}

impl Handle {
    /// The calling node named by the request's header, proven by its
    /// certificate (TLS): a claim without the matching certificate is
    /// refused and logged with the names the certificate presents. Also
    /// when the caller claims to be this node: a node's calls to itself go
    /// over loopback with its own certificate, and anyone else's claim must
    /// not skip the check.
    fn verified_caller<T>(&self, req: &Request<T>, what: &str) -> Result<u64, Status> {
        let caller: u64 = req
            .metadata()
            .get(NODE_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if self.tls {
            let certs = req.peer_certs();
            let cert = certs.as_ref().and_then(|c| c.first());
            if !cert.is_some_and(|c| tls::cert_names_node(c, caller)) {
                let presented = cert.map(tls::presented_names).unwrap_or_default();
                tracing::warn!(
                    caller,
                    ?presented,
                    peer_addr = ?req.remote_addr(),
                    "{what} refused: certificate does not name the calling node"
                );
                return Err(Status::permission_denied(format!(
                    "certificate does not name node {caller}"
                )));
            }
        }
        Ok(caller)
    }
}

/// Records leave the node with requesters masked.
pub fn mask_record(rec: &mut TransferRecord) {
    if let Some(t) = rec.envelope.as_mut().and_then(|e| e.ticket.as_mut()) {
        **t = crate::server::redact(std::mem::take(&mut **t));
    }
    if let Some(t) = rec.receipt.as_mut().and_then(|r| r.ticket.as_mut()) {
        **t = crate::server::redact(std::mem::take(&mut **t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::time::Instant;

    /// Asks members 1, 2 and 3 of group 7 through `first_success`; member
    /// `n` answers `answer(n)` = (after how long, success). Returns the
    /// outcome, the time it took, and who was asked when.
    async fn ask(
        hedge_after: Option<Duration>,
        answer: fn(u64) -> (Duration, bool),
    ) -> (Result<u64, Status>, Duration, Vec<(u64, Duration)>) {
        let start = Instant::now();
        let asked = Mutex::new(Vec::new());
        let r = first_success(7, vec![1, 2, 3], hedge_after, |n| {
            asked.lock().unwrap().push((n, start.elapsed()));
            let (after, ok) = answer(n);
            async move {
                tokio::time::sleep(after).await;
                if ok {
                    Ok(n)
                } else {
                    Err(Status::unavailable(format!("member {n}")))
                }
            }
        })
        .await;
        (r, start.elapsed(), asked.into_inner().unwrap())
    }

    /// Member 1 holds the call for the whole timeout (it names a leader it
    /// cannot reach), members 2 and 3 answer in 20 ms.
    fn stuck_first(n: u64) -> (Duration, bool) {
        if n == 1 {
            (FORWARD_TIMEOUT, false)
        } else {
            (Duration::from_millis(20), true)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_member_that_holds_the_call_no_longer_holds_up_the_next() {
        let (r, took, asked) = ask(Some(FORWARD_HEDGE_AFTER), stuck_first).await;
        assert_eq!(r.unwrap(), 2);
        assert_eq!(took, FORWARD_HEDGE_AFTER + Duration::from_millis(20));
        assert_eq!(
            asked,
            vec![(1, Duration::ZERO), (2, FORWARD_HEDGE_AFTER)],
            "member 3 is not asked once member 2 answered"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_hedging_members_are_asked_in_turn() {
        let (r, took, asked) = ask(None, stuck_first).await;
        assert_eq!(r.unwrap(), 2);
        assert_eq!(took, FORWARD_TIMEOUT + Duration::from_millis(20));
        assert_eq!(asked, vec![(1, Duration::ZERO), (2, FORWARD_TIMEOUT)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_failure_moves_on_at_once_and_all_failing_is_an_error() {
        // 1 fails after the timeout, 2 at once, 3 after 100 ms: 2 is asked
        // at the hedge (500 ms), 3 right after 2's failure.
        let (r, took, asked) = ask(Some(FORWARD_HEDGE_AFTER), |n| match n {
            1 => (FORWARD_TIMEOUT, false),
            2 => (Duration::ZERO, false),
            _ => (Duration::from_millis(100), false),
        })
        .await;
        assert_eq!(
            r.unwrap_err().message(),
            "member 1",
            "the last failure to arrive"
        );
        assert_eq!(took, FORWARD_TIMEOUT);
        assert_eq!(
            asked,
            vec![
                (1, Duration::ZERO),
                (2, FORWARD_HEDGE_AFTER),
                (3, FORWARD_HEDGE_AFTER)
            ]
        );
        let none = first_success(7, Vec::new(), Some(FORWARD_HEDGE_AFTER), |n| async move {
            Ok::<u64, Status>(n)
        })
        .await;
        assert!(none.unwrap_err().message().contains("group 7"));
    }
}
