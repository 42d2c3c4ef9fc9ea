//! The node: gRPC services (tickets, raft transport, admin, health,
//! reflection) in front of the raft loop.
//!
//! Handlers validate first (bad input never reaches the log), then hand the
//! request to the raft loop through a bounded queue and wait for the outcome
//! with a deadline. Nothing here decides anything about tickets or
//! consensus: that is `core`.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Sender, TrySendError, bounded};
use std::sync::Arc;

use hotline_federation::directory::Directory;
use hotline_federation::topology::{Topology, group_region};
use hotline_proto::v1::admin_server::{Admin, AdminServer};
use hotline_proto::v1::federation_server::FederationServer;
use hotline_proto::v1::raft_server::{Raft, RaftServer};
use hotline_proto::v1::tickets_server::{Tickets, TicketsServer};
use hotline_proto::v1::{
    AcceptRequest, AcceptResponse, Command, Delivered, Drill, Event, FaultsRequest, FaultsResponse,
    GetPolicyRequest, GetTicketRequest, GetTicketResponse, ListTicketsRequest, ListTicketsResponse,
    LookupRequest, LookupResponse, Notification, OutboxRequest, OutboxResponse, RaftBatch,
    RaftDone, ReadConsistency, ReadLabel, ReportRequest, ReportResponse, SetPolicyRequest,
    SetPolicyResponse, StatusRequest, StatusResponse, Ticket, TicketCommandRequest,
    TicketCommandResponse, TransferOut, TransferTicketRequest, VerifyRequest, VerifyResponse,
    WatchRequest, command,
};
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status, Streaming};

use crate::config::NodeConfig;
use crate::core::{
    ApplyResult, CommandError, Query, QueryAnswer, Recovered, Replica, ReplicaConfig, audit,
    lifecycle, tickets,
};
use crate::faults::Faults;
use crate::raft_loop::{Control, Proposal, ProposeOutcome, RaftLoop, ReadOutcome};
use crate::storage::Storage;
use crate::{notify, tls, transport};

/// Largest page a list returns.
pub const MAX_LIST_LIMIT: u32 = 1_000;
/// The node's drill rules, in its data directory (`faults::Faults::open`).
pub const DRILL_FILE: &str = "drill.pb";
/// How long a stopping node lets in-flight requests finish.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);
/// How often, and how many times, a background task looks again while this
/// node's replica settles as a new leader (one raft round, usually).
const SETTLE_POLL: Duration = Duration::from_millis(10);
const SETTLE_POLLS: u32 = 50;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
    #[error("tls: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("config: {0}")]
    Config(String),
    #[error("listen address {0:?}: {1}")]
    Listen(String, String),
}

/// What the gRPC handlers share: the queues into the raft loop, the
/// directory, the federation channels. A `Handle` is "at" one hosted group
/// (`group_id`, `region`); `at()` moves it to another.
#[derive(Clone)]
pub struct Handle {
    pub(crate) node_id: u64,
    pub(crate) group_id: u64,
    pub(crate) region: String,
    /// Groups hosted on this node → their regions (grows when the node
    /// joins a group at run time).
    pub(crate) hosted: Arc<crate::membership::Hosted>,
    pub(crate) topology: Arc<Topology>,
    /// The directory this node routes with (`dirsync`: the topology's,
    /// overlaid with the replicated one).
    pub(crate) directory: Arc<crate::dirsync::LiveDirectory>,
    pub(crate) faults: Arc<Faults>,
    /// Lazy channels to every node of the topology (federation traffic).
    pub(crate) fed: Arc<BTreeMap<u64, tonic::transport::Channel>>,
    /// (group, node) → whether the node was in the group's configuration,
    /// and when that was learnt (`forwarder.rs`, `is_live_member`).
    pub(crate) live_members: Arc<crate::forwarder::LiveMembers>,
    proposals: Sender<Proposal>,
    control: Sender<Control>,
    timeout: Duration,
    pub(crate) tls: bool,
    /// Applied events, for `watch`.
    events: tokio::sync::broadcast::Sender<(String, Event)>,
    watchers: std::sync::Arc<tokio::sync::Semaphore>,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Tickets leave the node with requesters masked: the full phone number and
/// name stay in the replicated state (for notifications and lookups).
pub fn redact(mut t: Ticket) -> Ticket {
    for r in &mut t.requesters {
        r.phone.clear();
        r.name.clear();
    }
    t
}

fn command_status(e: &CommandError) -> Status {
    match e {
        CommandError::Invalid(f) => Status::invalid_argument(f.to_string()),
        CommandError::State { .. } => Status::failed_precondition(e.to_string()),
        CommandError::NotFound(_) => Status::not_found(e.to_string()),
    }
}

fn unexpected() -> Status {
    Status::internal("unexpected answer from the state machine")
}

fn check_id(id: &str) -> Result<(), Status> {
    if id.is_empty() || id.len() > 64 {
        return Err(Status::invalid_argument("id: must be 1 to 64 bytes"));
    }
    Ok(())
}

/// Bound on concurrent `watch` streams per node.
const MAX_WATCHERS: usize = 1_024;

impl Handle {
    /// The directory in use now.
    pub(crate) fn dir(&self) -> Arc<Directory> {
        self.directory.get()
    }

    /// This handle at another hosted group.
    pub(crate) fn at(&self, group: u64) -> Result<Handle, Status> {
        match self.hosted.region(group) {
            Some(region) => {
                let mut h = self.clone();
                h.group_id = group;
                h.region = region;
                Ok(h)
            }
            None => Err(Status::failed_precondition(format!(
                "group {group} ({}) is not hosted on node {}; its members are nodes {:?}",
                hotline_federation::regions().label(&group_region(group)),
                self.node_id,
                self.dir().members(group)
            ))),
        }
    }

    /// The group owning `region` (the deepest group covering it), or the
    /// explicit one.
    pub(crate) fn for_region(&self, region: &str, explicit: u64) -> Result<Handle, Status> {
        if explicit != 0 {
            return self.at(explicit);
        }
        match self.dir().owner(region) {
            Some(g) => self.at(g),
            None => self.default_group(),
        }
    }

    /// The group a request that names none goes to: the node's home group
    /// (its own region's, chosen at start), or, once that was purged from
    /// the node (`hotline group purge`), the first group it still hosts,
    /// as the next start would choose.
    fn default_group(&self) -> Result<Handle, Status> {
        if self.hosted.contains(self.group_id) {
            return Ok(self.clone());
        }
        match self.hosted.first() {
            Some(g) => self.at(g),
            None => Err(Status::failed_precondition(format!(
                "node {} hosts no group",
                self.node_id
            ))),
        }
    }

    /// The group of a ticket id's region (the part before the first '-').
    pub(crate) fn for_ticket(&self, id: &str, explicit: u64) -> Result<Handle, Status> {
        check_id(id)?;
        if explicit != 0 {
            return self.at(explicit);
        }
        let prefix = id.split('-').next().unwrap_or("");
        if self.hosted.len() == 1 || hotline_federation::regions().get(prefix).is_err() {
            return self.default_group();
        }
        self.for_region(prefix, 0)
    }

    pub(crate) fn home(&self, explicit: u64) -> Result<Handle, Status> {
        if explicit != 0 {
            self.at(explicit)
        } else {
            self.default_group()
        }
    }

    async fn wait<T>(&self, rx: oneshot::Receiver<T>) -> Result<T, Status> {
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(Status::unavailable("node is stopping")),
            Err(_) => Err(Status::deadline_exceeded(
                "no outcome within the request timeout (leader change or partition); retry with the same request_id",
            )),
        }
    }

    /// Hands the raft loop a control request and waits for its answer
    /// (bounded by the request timeout); `full` names what was full.
    async fn ask<T>(
        &self,
        full: &str,
        make: impl FnOnce(oneshot::Sender<T>) -> Control,
    ) -> Result<T, Status> {
        let (reply, rx) = oneshot::channel();
        self.control
            .try_send(make(reply))
            .map_err(|_| Status::resource_exhausted(format!("{full} is full")))?;
        self.wait(rx).await
    }

    pub(crate) async fn read(&self, query: Query) -> Result<QueryAnswer, Status> {
        let group_id = self.group_id;
        let outcome = self
            .ask("read queue", |reply| Control::Read {
                group_id,
                query,
                reply,
            })
            .await?;
        match outcome {
            ReadOutcome::Answer(a) => Ok(a),
            ReadOutcome::Unavailable(why) => Err(Status::unavailable(why)),
        }
    }

    /// This node's replica of the group, as it stands (no ReadIndex round),
    /// with the label that says how stale it may be.
    pub(crate) async fn read_local(
        &self,
        query: Query,
    ) -> Result<(QueryAnswer, ReadLabel), Status> {
        let group_id = self.group_id;
        let answer = self
            .ask("read queue", |reply| Control::ReadLocal {
                group_id,
                query,
                reply,
            })
            .await?;
        answer.ok_or_else(|| {
            Status::failed_precondition(format!(
                "group {group_id} is not hosted on node {}",
                self.node_id
            ))
        })
    }

    /// A read as the request asks: linearizable through the leader, or
    /// local (stale-but-labelled) from this node's replica.
    pub(crate) async fn read_as(
        &self,
        consistency: i32,
        query: Query,
    ) -> Result<(QueryAnswer, Option<ReadLabel>), Status> {
        match ReadConsistency::try_from(consistency) {
            Ok(ReadConsistency::ReadLinearizable) => Ok((self.read(query).await?, None)),
            Ok(ReadConsistency::ReadLocal) => {
                let (a, label) = self.read_local(query).await?;
                Ok((a, Some(label)))
            }
            Err(_) => Err(Status::invalid_argument(format!(
                "consistency: unknown value {consistency}"
            ))),
        }
    }

    /// Proposes a command and waits for its outcome. A refusal (before or
    /// after the log) maps to the gRPC code of its kind.
    pub(crate) async fn propose(
        &self,
        op: command::Op,
        request_id: u64,
    ) -> Result<ApplyResult, Status> {
        let request_id = if request_id == 0 {
            rand::random::<u64>() | 1
        } else {
            request_id
        };
        let cmd = Command {
            request_id,
            at_ms: now_ms(),
            accept_text: Vec::new(),
            op: Some(op),
        };
        let (reply, rx) = oneshot::channel();
        let p = Proposal {
            group_id: self.group_id,
            cmd,
            reply,
        };
        match self.proposals.try_send(p) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(Status::resource_exhausted(
                    "proposal queue is full; back off and retry",
                ));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(Status::unavailable("node is stopping"));
            }
        }
        match self.wait(rx).await? {
            ProposeOutcome::Applied(ApplyResult::Rejected(e)) | ProposeOutcome::Rejected(e) => {
                Err(command_status(&e))
            }
            ProposeOutcome::Applied(r) => Ok(r),
            ProposeOutcome::NotLeader(e) => Err(Status::unavailable(e.to_string())),
            ProposeOutcome::Overloaded => Err(Status::resource_exhausted(
                "too many proposals in flight; back off and retry",
            )),
        }
    }

    async fn propose_ticket(&self, op: command::Op, request_id: u64) -> Result<Ticket, Status> {
        match self.propose(op, request_id).await? {
            ApplyResult::Ticket(t) => Ok(redact(std::sync::Arc::unwrap_or_clone(t))),
            _ => Err(unexpected()),
        }
    }

    async fn get_ticket(&self, id: &str) -> Result<Ticket, Status> {
        Ok(self.get_ticket_as(id, 0).await?.0)
    }

    async fn get_ticket_as(
        &self,
        id: &str,
        consistency: i32,
    ) -> Result<(Ticket, Option<ReadLabel>), Status> {
        check_id(id)?;
        let query = Query::Get {
            id: id.to_string(),
            now_ms: now_ms(),
        };
        match self.read_as(consistency, query).await? {
            (QueryAnswer::Ticket(Some(t)), label) => Ok((redact(*t), label)),
            (QueryAnswer::Ticket(None), Some(label)) => Err(Status::not_found(format!(
                "ticket {id} not found on node {} (local read at applied index {}; it may not have arrived yet)",
                label.node_id, label.applied_index
            ))),
            (QueryAnswer::Ticket(None), None) => {
                Err(Status::not_found(format!("ticket {id} not found")))
            }
            _ => Err(unexpected()),
        }
    }

    /// Every hosted group as the raft loop sees it now.
    pub(crate) async fn status_now(&self) -> Result<StatusResponse, Status> {
        self.ask("control queue", |reply| Control::Status { reply })
            .await
    }

    /// Proposals waiting for the raft loop.
    pub(crate) fn proposal_queue_len(&self) -> usize {
        self.proposals.len()
    }

    pub(crate) async fn is_leader(&self) -> bool {
        self.peek().await.leader
    }

    /// This group as the local replica sees it (no ReadIndex round).
    pub(crate) async fn peek(&self) -> crate::raft_loop::Peek {
        let group_id = self.group_id;
        self.ask("control queue", |reply| Control::Peek { group_id, reply })
            .await
            .unwrap_or_default()
    }

    /// A read of this node's own replica for the group's background work
    /// (the notifier, the forwarder), once it has settled as leader
    /// ([`crate::core::Replica::is_settled_leader`]). No ReadIndex round: that
    /// was a heartbeat to every peer and back per group per round (on a node
    /// leading 64 busy groups, 3 % of its raft messages), and it
    /// would wake a hibernating group. The work is safe to repeat (delivery
    /// at least once, transfers idempotent by transfer id): a deposed leader
    /// that does not know it yet repeats some, the new one goes on. Settled
    /// means it has applied everything committed before its election, so a
    /// new leader does not redo what a `Delivered` or a `HopDone` it has not
    /// applied yet already finished.
    /// `peek` is the caller's fresh look at the group (it has just checked
    /// there is work), so a settled leader costs no second one.
    pub(crate) async fn read_as_settled_leader(
        &self,
        mut peek: crate::raft_loop::Peek,
        query: Query,
    ) -> Result<QueryAnswer, Status> {
        let group_id = self.group_id;
        for _ in 0..SETTLE_POLLS {
            if peek.settled || !peek.leader {
                break;
            }
            tokio::time::sleep(SETTLE_POLL).await;
            peek = self.peek().await;
        }
        if !peek.settled {
            return Err(Status::unavailable(format!(
                "group {group_id}: this node's replica is not a settled leader (leader, an entry of its term committed, everything committed applied)"
            )));
        }
        Ok(self.read_local(query).await?.0)
    }
}

#[tonic::async_trait]
impl notify::Outbox for Handle {
    async fn is_leader(&self) -> bool {
        Handle::is_leader(self).await
    }

    async fn pending(&self, limit: usize) -> Result<Vec<Notification>, String> {
        let peek = self.peek().await;
        if peek.outbox == 0 {
            // Notifications applied later ring the bell.
            return Ok(Vec::new());
        }
        match self
            .read_as_settled_leader(peek, Query::Outbox { limit })
            .await
        {
            Ok(QueryAnswer::Outbox(n)) => Ok(n),
            Ok(_) => Err("unexpected answer".into()),
            Err(e) => Err(e.message().to_string()),
        }
    }

    async fn delivered(&self, ids: Vec<String>) -> Result<(), String> {
        self.propose(command::Op::Delivered(Delivered { ids }), 0)
            .await
            .map(|_| ())
            .map_err(|e| e.message().to_string())
    }
}

type WatchStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<Event, Status>> + Send>>;

#[tonic::async_trait]
impl Tickets for Handle {
    async fn accept(
        &self,
        req: Request<AcceptRequest>,
    ) -> Result<Response<AcceptResponse>, Status> {
        self.client_only(&req, "accept")?;
        let mut req = req.into_inner();
        let g = self.for_region(&req.region, 0)?;
        // A center the federation does not have (深圳南山 in a federation of
        // 上海 and 江苏) falls to the national group, which covers the
        // country only to relay and list cases: it takes no calls.
        if g.group_id == hotline_federation::topology::NATIONAL_GROUP {
            return Err(Status::invalid_argument(format!(
                "region: {} ({}) is not served by any center of this federation; the national group relays cases and takes no calls",
                req.region,
                hotline_federation::regions()
                    .display_name(&req.region)
                    .unwrap_or_default()
            )));
        }
        tickets::validate_accept(&g.region, &req)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        // 首接负责: accepted here; owned where the problem is. Never from clients.
        req.transfer_to_group = 0;
        if let Some(loc) = req.location.as_ref().filter(|l| !l.code.is_empty())
            && let Some(owner) = self.dir().transfer_to(&loc.code, g.group_id)
        {
            req.transfer_to_group = owner;
        }
        let request_id = req.request_id;
        let wanted = req.transfer_to_group;
        let t = g
            .propose_ticket(command::Op::Accept(req), request_id)
            .await?;
        // The directory and the state machine disagree on where the place
        // belongs: the ticket stays here (accepted, never lost); the
        // operator of the node should know, as the call taker does from the
        // answer's last event.
        if let Some(e) = t.events.last().filter(|e| e.kind == "transfer_not_started") {
            tracing::warn!(
                ticket = %t.id,
                group = g.group_id,
                destination_group = wanted,
                reason = %e.reason,
                "accepted, but the transfer the directory asked for was refused; the ticket stays here"
            );
        }
        Ok(Response::new(AcceptResponse { ticket: Some(t) }))
    }

    async fn execute(
        &self,
        req: Request<TicketCommandRequest>,
    ) -> Result<Response<TicketCommandResponse>, Status> {
        self.client_only(&req, "execute")?;
        let r = req.into_inner();
        let Some(cmd) = r.command else {
            return Err(Status::invalid_argument("command: is required"));
        };
        let g = self.for_ticket(&cmd.ticket_id, r.group_id)?;
        let t = g
            .propose_ticket(command::Op::Ticket(cmd), r.request_id)
            .await?;
        Ok(Response::new(TicketCommandResponse { ticket: Some(t) }))
    }

    /// 转办 after the accept: the destination is the directory's owner of
    /// the location, as at an accept; the state machine checks the rest
    /// (the ticket is accepted here, the location outside this region).
    async fn transfer(
        &self,
        req: Request<TransferTicketRequest>,
    ) -> Result<Response<TicketCommandResponse>, Status> {
        self.client_only(&req, "transfer")?;
        let r = req.into_inner();
        let g = self.for_ticket(&r.ticket_id, r.group_id)?;
        // Where it goes: for a send-back the state machine takes the group
        // it came from; otherwise the directory's owner of the location.
        let (destination_group, destination_region) = if r.send_back {
            if !r.location.is_empty() {
                return Err(Status::invalid_argument(
                    "location: must be empty with send_back (the ticket goes back to the group it came from)",
                ));
            }
            (0, String::new())
        } else {
            if r.location.is_empty() {
                return Err(Status::invalid_argument("location: is required"));
            }
            let Some(owner) = self.dir().owner(&r.location) else {
                return Err(Status::invalid_argument(format!(
                    "location: no group owns {} (not a district or street code in the directory)",
                    r.location
                )));
            };
            if owner == g.group_id {
                return Err(Status::invalid_argument(format!(
                    "location: {} belongs to this group ({}): dispatch it here",
                    r.location, g.group_id
                )));
            }
            if owner == hotline_federation::topology::NATIONAL_GROUP {
                return Err(Status::invalid_argument(format!(
                    "location: no region group of the federation serves {} ({}); the national group relays cases and handles none: handle it here",
                    r.location,
                    hotline_federation::regions()
                        .display_name(&r.location)
                        .unwrap_or_default()
                )));
            }
            (owner, r.location)
        };
        let op = command::Op::TransferOut(TransferOut {
            ticket_id: r.ticket_id,
            destination_group,
            destination_region,
            actor: r.actor,
            reason: r.reason,
            send_back: r.send_back,
        });
        let t = g.propose_ticket(op, r.request_id).await?;
        Ok(Response::new(TicketCommandResponse { ticket: Some(t) }))
    }

    async fn get(
        &self,
        req: Request<GetTicketRequest>,
    ) -> Result<Response<GetTicketResponse>, Status> {
        self.client_only(&req, "get")?;
        let r = req.into_inner();
        let (t, label) = self
            .for_ticket(&r.id, r.group_id)?
            .get_ticket_as(&r.id, r.consistency)
            .await?;
        Ok(Response::new(GetTicketResponse {
            ticket: Some(t),
            label,
        }))
    }

    async fn list(
        &self,
        req: Request<ListTicketsRequest>,
    ) -> Result<Response<ListTicketsResponse>, Status> {
        self.client_only(&req, "list")?;
        let r = req.into_inner();
        if r.limit > MAX_LIST_LIMIT {
            return Err(Status::invalid_argument(format!(
                "limit: {} is over the maximum of {MAX_LIST_LIMIT}",
                r.limit
            )));
        }
        for &s in &r.statuses {
            if hotline_proto::v1::Status::try_from(s).is_err() {
                return Err(Status::invalid_argument(format!(
                    "statuses: unknown status {s}"
                )));
            }
        }
        if r.accepted_to_ms != 0 && r.accepted_to_ms <= r.accepted_from_ms {
            return Err(Status::invalid_argument(
                "accepted_to_ms: must be after accepted_from_ms",
            ));
        }
        let g = self.home(r.group_id)?;
        let consistency = r.consistency;
        let query = Query::List {
            filter: r,
            now_ms: now_ms(),
        };
        match g.read_as(consistency, query).await? {
            (
                QueryAnswer::Tickets {
                    tickets,
                    next_before_id,
                    ..
                },
                label,
            ) => Ok(Response::new(ListTicketsResponse {
                tickets: tickets.into_iter().map(redact).collect(),
                next_before_id,
                label,
            })),
            _ => Err(unexpected()),
        }
    }

    type WatchStream = WatchStream;

    /// The ticket's events so far, then each new one as it is applied on
    /// this node. Subscribes before reading, so no event falls in between.
    async fn watch(&self, req: Request<WatchRequest>) -> Result<Response<WatchStream>, Status> {
        self.client_only(&req, "watch")?;
        let r = req.into_inner();
        let permit = self
            .watchers
            .clone()
            .try_acquire_owned()
            .map_err(|_| Status::resource_exhausted("too many watch streams on this node"))?;
        let g = self.for_ticket(&r.id, r.group_id)?;
        let mut rx = self.events.subscribe();
        let t = g.get_ticket(&r.id).await?;
        let id = t.id.clone();
        let mut last = r.after_seq;
        let backlog: Vec<Event> = t.events.into_iter().filter(|e| e.seq > last).collect();
        last = backlog.last().map_or(last, |e| e.seq);
        let handle = g;
        let stream = async_stream(move |tx| async move {
            let _permit = permit;
            for e in backlog {
                if tx.send(Ok(e)).await.is_err() {
                    return;
                }
            }
            loop {
                match rx.recv().await {
                    Ok((tid, e)) if tid == id && e.seq > last => {
                        last = e.seq;
                        if tx.send(Ok(e)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        // Fell behind: catch up from the ticket itself.
                        match handle.get_ticket(&id).await {
                            Ok(t) => {
                                let from = last;
                                for e in t.events.into_iter().filter(|e| e.seq > from) {
                                    last = e.seq;
                                    if tx.send(Ok(e)).await.is_err() {
                                        return;
                                    }
                                }
                            }
                            Err(s) => {
                                let _ = tx.send(Err(s)).await;
                                return;
                            }
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        let _ = tx.send(Err(Status::unavailable("node is stopping"))).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn lookup(
        &self,
        req: Request<LookupRequest>,
    ) -> Result<Response<LookupResponse>, Status> {
        let r = req.into_inner();
        check_id(&r.id)?;
        if r.phone_last4.len() != 4 || !r.phone_last4.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Status::invalid_argument("phone_last4: must be 4 digits"));
        }
        let g = self.for_ticket(&r.id, r.group_id)?;
        match g
            .read(Query::Lookup {
                id: r.id.clone(),
                phone_last4: r.phone_last4.clone(),
            })
            .await?
        {
            QueryAnswer::Lookup(Some(l))
                if l.status == hotline_proto::v1::Status::Transferred as i32 =>
            {
                // 首接负责: the accepting center answers with the owner's progress.
                let mut stub = g.get_ticket(&r.id).await?;
                let mut id = r.id.clone();
                if stub.status == hotline_proto::v1::Status::Merged as i32
                    && !stub.master_id.is_empty()
                {
                    // A caller merged into a ticket that has moved since:
                    // the lookup shows the master, so ask its owner for it
                    // (the merge copied the caller into its requesters).
                    id = stub.master_id.clone();
                    stub = g.get_ticket(&id).await?;
                }
                let owner = stub.owner_group;
                // A caller reads the place's name (太仓市), not its code.
                let owner_name = hotline_federation::group_name(owner);
                let remote = LookupRequest {
                    id,
                    phone_last4: r.phone_last4,
                    group_id: owner,
                };
                match self
                    .federation_call(owner, |ch| {
                        let remote = remote.clone();
                        async move {
                            let mut c = hotline_proto::v1::tickets_client::TicketsClient::new(ch);
                            c.lookup(remote).await.map(|r| r.into_inner())
                        }
                    })
                    .await
                {
                    Ok(mut there) => {
                        // The owner's copy carries the whole chain, the
                        // origin's steps included.
                        there.status_text =
                            format!("已转至{owner_name}办理：{}", there.status_text);
                        Ok(Response::new(there))
                    }
                    // The owner is out of reach: say what the origin knows.
                    // The cause is for the operators' log, not the caller
                    // (a drill's or a transport's words mean nothing to them).
                    Err(e) => {
                        tracing::info!(
                            ticket = %r.id,
                            owner,
                            error = %e.message(),
                            "lookup answered without the owner's progress"
                        );
                        let mut l = l;
                        l.status_text =
                            format!("已转至{owner_name}办理（暂时无法获取最新进度，请稍后再查询）");
                        Ok(Response::new(l))
                    }
                }
            }
            QueryAnswer::Lookup(Some(l)) => Ok(Response::new(l)),
            // Same answer for a wrong number and wrong digits.
            QueryAnswer::Lookup(None) => Err(Status::not_found(format!(
                "no ticket {} with a phone ending in these digits",
                r.id
            ))),
            _ => Err(unexpected()),
        }
    }

    async fn verify(
        &self,
        req: Request<VerifyRequest>,
    ) -> Result<Response<VerifyResponse>, Status> {
        self.client_only(&req, "verify")?;
        let r = req.into_inner();
        let t = self
            .for_ticket(&r.id, r.group_id)?
            .get_ticket(&r.id)
            .await?;
        let resp = match audit::verify(&t.events) {
            Ok(n) => VerifyResponse {
                ok: true,
                events: n,
                broken_at_seq: 0,
                detail: format!("{n} events verify"),
                ticket: Some(t),
            },
            Err(b) => VerifyResponse {
                ok: false,
                events: t.events.len() as u32,
                broken_at_seq: b.seq,
                detail: b.detail,
                ticket: Some(t),
            },
        };
        Ok(Response::new(resp))
    }

    async fn report(
        &self,
        req: Request<ReportRequest>,
    ) -> Result<Response<ReportResponse>, Status> {
        self.client_only(&req, "report")?;
        let r = req.into_inner();
        let to_ms = if r.to_ms == 0 { now_ms() + 1 } else { r.to_ms };
        if to_ms <= r.from_ms {
            return Err(Status::invalid_argument("to_ms: must be after from_ms"));
        }
        if r.basic_weight_permille > 1000 {
            return Err(Status::invalid_argument(
                "basic_weight_permille: must be 0..=1000",
            ));
        }
        match self
            .home(r.group_id)?
            .read(Query::Report {
                from_ms: r.from_ms,
                to_ms,
                basic_weight_permille: r.basic_weight_permille,
            })
            .await?
        {
            QueryAnswer::Report(rep) => Ok(Response::new(*rep)),
            _ => Err(unexpected()),
        }
    }

    async fn outbox(
        &self,
        req: Request<OutboxRequest>,
    ) -> Result<Response<OutboxResponse>, Status> {
        self.client_only(&req, "outbox")?;
        let r = req.into_inner();
        let limit = r.limit;
        if limit > MAX_LIST_LIMIT {
            return Err(Status::invalid_argument(format!(
                "limit: over the maximum of {MAX_LIST_LIMIT}"
            )));
        }
        let limit = if limit == 0 { 100 } else { limit as usize };
        match self.home(r.group_id)?.read(Query::Outbox { limit }).await? {
            QueryAnswer::Outbox(ns) => Ok(Response::new(OutboxResponse {
                notifications: ns
                    .into_iter()
                    .map(|mut n| {
                        n.phone = tickets::mask_phone(&n.phone);
                        n
                    })
                    .collect(),
            })),
            _ => Err(unexpected()),
        }
    }

    async fn set_policy(
        &self,
        req: Request<SetPolicyRequest>,
    ) -> Result<Response<SetPolicyResponse>, Status> {
        self.client_only(&req, "set_policy")?;
        let r = req.into_inner();
        let g = self.home(r.group_id)?;
        let Some(p) = r.policy else {
            return Err(Status::invalid_argument("policy: is required"));
        };
        lifecycle::Rules::from_policy(&p).map_err(|e| Status::invalid_argument(e.to_string()))?;
        match g.propose(command::Op::SetPolicy(p), 0).await? {
            ApplyResult::Policy(p) => Ok(Response::new(SetPolicyResponse { policy: Some(p) })),
            _ => Err(unexpected()),
        }
    }

    async fn get_policy(
        &self,
        req: Request<GetPolicyRequest>,
    ) -> Result<Response<SetPolicyResponse>, Status> {
        self.client_only(&req, "get_policy")?;
        let g = self.home(req.into_inner().group_id)?;
        match g.read(Query::Policy).await? {
            QueryAnswer::Policy(p) => Ok(Response::new(SetPolicyResponse { policy: Some(p) })),
            _ => Err(unexpected()),
        }
    }
}

/// A stream fed by a task through a small bounded channel (backpressure:
/// a slow watcher slows only its own task).
fn async_stream<F, Fut>(f: F) -> WatchStream
where
    F: FnOnce(mpsc::Sender<Result<Event, Status>>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

#[tonic::async_trait]
impl Raft for Handle {
    async fn stream(
        &self,
        req: Request<Streaming<RaftBatch>>,
    ) -> Result<Response<RaftDone>, Status> {
        let certs = req.peer_certs();
        let peer_addr = req.remote_addr();
        let mut stream = req.into_inner();
        let mut checked: Option<u64> = None;
        while let Some(batch) = stream.message().await? {
            let from = batch.from_node;
            if checked != Some(from) {
                // The certificate must name the node the batch claims to be
                // from; a client certificate or another node's is refused.
                if self.tls {
                    let ok = certs
                        .as_ref()
                        .and_then(|c| c.first())
                        .is_some_and(|c| tls::cert_names_node(c, from));
                    if !ok {
                        let presented = certs
                            .as_ref()
                            .and_then(|c| c.first())
                            .map(tls::presented_names);
                        tracing::warn!(
                            ?peer_addr,
                            ?presented,
                            claimed = from,
                            "raft stream refused: certificate does not name the claimed node"
                        );
                        return Err(Status::permission_denied(format!(
                            "certificate does not name node {from}"
                        )));
                    }
                }
                checked = Some(from);
            }
            if matches!(self.faults.inbound(from), crate::faults::Verdict::Drop) {
                continue; // a drill cuts this link
            }
            // A full control queue drops the batch: raft retransmits.
            let _ = self.control.try_send(Control::Raft {
                from_node: from,
                envelopes: batch.envelopes,
                leadership_epoch: batch.leadership_epoch,
            });
        }
        Ok(Response::new(RaftDone {}))
    }
}

impl Handle {
    /// Admin calls that change the cluster (drills, membership, leadership)
    /// are the operators': with TLS, only the client certificate may make
    /// them. A node's certificate may not (nodes only read each other's
    /// status and drills): a street-office node could otherwise add itself
    /// to any group, national's included, and then receive its raft
    /// traffic as a member. Refused and logged with the certificate's names.
    /// Refuses `what` unless the caller presents the client certificate
    /// (consoles and operators; `client.hotline`). Nodes call each other
    /// only for raft, federation, status, drills and lookups; a node's key
    /// that could also accept, act on tickets or replace a group's deadline
    /// rules would make one compromised street office every center.
    fn client_only<T>(&self, req: &Request<T>, what: &str) -> Result<(), Status> {
        if !self.tls {
            return Ok(());
        }
        let certs = req.peer_certs();
        let cert = certs.as_ref().and_then(|c| c.first());
        if cert.is_some_and(tls::cert_names_client) {
            return Ok(());
        }
        let presented = cert.map(tls::presented_names);
        tracing::warn!(
            peer_addr = ?req.remote_addr(),
            ?presented,
            what,
            "call refused: not the operators' client certificate"
        );
        Err(Status::permission_denied(format!(
            "{what}: only the operators' client certificate ({}) may make this call",
            tls::CLIENT_NAME
        )))
    }
}

#[tonic::async_trait]
impl Admin for Handle {
    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let mut s = self.status_now().await?;
        s.faults = Some(self.faults.snapshot());
        s.directory_version = self.dir().version();
        // Unknown rather than no status if the replica's queue is full.
        s.directory_age_ms = crate::dirsync::age(self)
            .await
            .ok()
            .flatten()
            .map(|a| a.as_millis() as u64);
        Ok(Response::new(s))
    }

    async fn set_faults(&self, req: Request<Drill>) -> Result<Response<FaultsResponse>, Status> {
        use crate::faults::SetError;
        self.client_only(&req, "set_faults")?;
        match self.faults.set(req.into_inner()) {
            Ok(_) => Ok(Response::new(self.faults.snapshot())),
            Err(e @ SetError::Invalid(_)) => Err(Status::invalid_argument(e.to_string())),
            Err(e @ SetError::Older { .. }) => Err(Status::failed_precondition(e.to_string())),
            Err(e @ SetError::Io(_)) => Err(Status::unavailable(e.to_string())),
        }
    }

    async fn faults(
        &self,
        _req: Request<FaultsRequest>,
    ) -> Result<Response<FaultsResponse>, Status> {
        Ok(Response::new(self.faults.snapshot()))
    }

    async fn change_membership(
        &self,
        req: Request<hotline_proto::v1::ConfChangeRequest>,
    ) -> Result<Response<hotline_proto::v1::ConfChangeResponse>, Status> {
        self.client_only(&req, "change_membership")?;
        crate::membership::change(self, &self.control, self.timeout, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn transfer_leader(
        &self,
        req: Request<hotline_proto::v1::TransferLeaderRequest>,
    ) -> Result<Response<hotline_proto::v1::TransferLeaderResponse>, Status> {
        self.client_only(&req, "transfer_leader")?;
        crate::membership::transfer_leader(self, &self.control, self.timeout, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn purge_replica(
        &self,
        req: Request<hotline_proto::v1::PurgeReplicaRequest>,
    ) -> Result<Response<hotline_proto::v1::PurgeReplicaResponse>, Status> {
        self.client_only(&req, "purge_replica")?;
        crate::membership::purge(self, &self.control, self.timeout, req.into_inner())
            .await
            .map(Response::new)
    }
}

/// Opens storage, starts the raft loop and the transport, and serves gRPC
/// until `shutdown` resolves.
pub async fn run_node(
    cfg: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    tls::install_crypto_provider();
    let t = &cfg.tuning;
    let mut storage = Storage::open(&cfg.data_dir)?;
    let topology = cfg
        .load_topology()
        .map_err(|e| NodeError::Config(format!("topology: {e}")))?;
    let me = topology
        .node(cfg.id)
        .ok_or_else(|| NodeError::Config(format!("node {} is not in the topology", cfg.id)))?
        .clone();
    let directory = Arc::new(crate::dirsync::LiveDirectory::new(&topology));
    let mut replicas = BTreeMap::new();
    let mut hosted = BTreeMap::new();
    for (gid, at_ms) in storage.purged_with_term_only() {
        // An empty replica seeded after the purge, which the node stopped
        // before letting go (`RaftLoop::let_go_of_stale_seeds`): only its
        // term was written. A leader that added the node back sends its
        // snapshot again.
        storage.purge(gid, &Default::default(), at_ms)?;
        tracing::info!(
            node = cfg.id,
            group = gid,
            "let go of the term an empty replica wrote after the group was purged"
        );
    }
    let at_start = crate::membership::groups_at_start(&topology, cfg.id, &storage);
    let purged: Vec<u64> = topology
        .groups_of(cfg.id)
        .into_iter()
        .filter(|g| !at_start.contains(g))
        .collect();
    for &gid in &purged {
        // Bootstrapped again from the file, it would campaign as a voter
        // of the group's first configuration. Added back, the group's
        // leader brings it (`RaftLoop::join_group`).
        tracing::info!(
            node = cfg.id,
            group = gid,
            purged_at_ms = storage.purged_at(gid),
            "group purged from this node (`hotline group purge`): not hosted, though the \
             topology file lists it here"
        );
    }
    for gid in at_start {
        let spec = topology
            .group(gid)
            .expect("groups_of lists topology groups");
        let rec = match storage.load(gid)? {
            Some(rec) => rec,
            None => {
                tracing::info!(
                    node = cfg.id,
                    group = gid,
                    "group not on disk: bootstrapping with voters {:?} and learners {:?}",
                    spec.voters,
                    spec.learners
                );
                Recovered::bootstrap_with(&spec.voters, &spec.learners)
            }
        };
        let mut rcfg = ReplicaConfig::new(cfg.id, gid, &spec.region);
        rcfg.election_ticks = t.election_ticks;
        rcfg.heartbeat_ticks = t.heartbeat_ticks;
        rcfg.compact_log_entries = t.compact_log_entries;
        rcfg.compact_log_bytes = t.compact_log_bytes;
        let replica = Replica::new(rcfg, rec)?;
        tracing::info!(
            node = cfg.id,
            group = gid,
            applied = replica.applied(),
            last = replica.last_index(),
            "replica recovered"
        );
        replicas.insert(gid, replica);
        hosted.insert(gid, spec.region.clone());
    }
    if hosted.is_empty() {
        return Err(NodeError::Config(format!(
            "node {} is a member of no group in the topology (purged from it: {purged:?})",
            cfg.id
        )));
    }
    // The node's own center's group is its default; else its first group.
    let home = hotline_federation::topology::try_group_id(&me.region)
        .filter(|g| hosted.contains_key(g))
        .unwrap_or_else(|| *hosted.keys().next().expect("not empty"));

    let epoch = transport::new_leadership_epoch();
    let faults = crate::faults::Faults::open(cfg.id, &cfg.data_dir.join(DRILL_FILE))
        .map_err(|e| NodeError::Config(e.to_string()))?;
    if let Some(files) = cfg.tls.as_ref().filter(|_| !cfg.insecure) {
        let verifier =
            tls::DrillVerifier::new(files).map_err(|e| NodeError::Config(format!("tls: {e}")))?;
        faults.require(Box::new(move |d| verifier.verify(d)));
    }
    let (prop_tx, prop_rx) = bounded(t.max_proposal_queue);
    let (ctl_tx, ctl_rx) = bounded(65_536);
    let scheme = if cfg.insecure { "http" } else { "https" };
    let mut peers = BTreeMap::new();
    let mut fed = BTreeMap::new();
    for n in topology.nodes.iter() {
        let client_tls = match &cfg.tls {
            Some(files) if !cfg.insecure => Some(tls::client_config(files, &tls::node_name(n.id))?),
            _ => None,
        };
        let ep = transport::endpoint(format!("{scheme}://{}", n.address), client_tls)?;
        // Federation calls may target a group this node hosts too: itself.
        fed.insert(n.id, ep.connect_lazy());
        if n.id == cfg.id || !topology.peers_of(cfg.id).contains(&n.id) {
            continue; // no group in common: no raft traffic
        }
        let (qtx, qrx) = mpsc::channel(transport::PEER_QUEUE_BATCHES);
        peers.insert(n.id, qtx);
        tokio::spawn(transport::peer_sender(
            cfg.id,
            n.id,
            ep,
            t.max_message_bytes,
            qrx,
            ctl_tx.clone(),
            faults.clone(),
            epoch.clone(),
        ));
    }
    // Watchers that fall this far behind re-read the ticket.
    let (events, _) = tokio::sync::broadcast::channel(4_096);
    let bells: BTreeMap<u64, crate::raft_loop::Bells> =
        hosted.keys().map(|&g| (g, Default::default())).collect();
    // Groups joined at run time start their background tasks through this.
    let (joined_tx, mut joined_rx) = mpsc::channel(crate::membership::MAX_JOINED_GROUPS);
    let hosted_groups = hosted.clone();
    let hosted = Arc::new(crate::membership::Hosted::new(hosted, Some(joined_tx)));
    let loop_stats = Arc::new(crate::metrics::LoopStats::default());
    let raft_loop = RaftLoop {
        stats: loop_stats.clone(),
        hosted: hosted.clone(),
        bells: bells.clone(),
        node_id: cfg.id,
        address: cfg.listen.clone(),
        replicas,
        storage,
        peers,
        proposals: prop_rx,
        control: ctl_rx,
        tick: Duration::from_millis(t.tick_ms),
        max_in_flight: t.max_in_flight_proposals,
        events: events.clone(),
        liveness: crate::core::liveness::Liveness::new(
            topology.peers_of(cfg.id),
            crate::core::liveness::suspect_after_ticks(t.election_ticks),
        ),
        joining: crate::membership::Joining::new(
            &cfg, &topology, &directory, &ctl_tx, &faults, &epoch,
        ),
        leadership_epoch: epoch.clone(),
        directory: directory.clone(),
        admitted_by_directory: Default::default(),
    };
    let loop_thread = std::thread::Builder::new()
        .name(format!("raft-loop-{}", cfg.id))
        .spawn(move || raft_loop.run())
        .expect("spawn raft loop thread");

    let handle = Handle {
        node_id: cfg.id,
        group_id: home,
        region: hosted_groups[&home].clone(),
        hosted,
        topology: Arc::new(topology),
        directory,
        faults,
        fed: Arc::new(fed),
        live_members: Arc::default(),
        proposals: prop_tx,
        control: ctl_tx.clone(),
        timeout: Duration::from_millis(t.request_timeout_ms),
        tls: !cfg.insecure,
        events,
        watchers: Arc::new(tokio::sync::Semaphore::new(MAX_WATCHERS)),
    };
    // Per hosted group: the notifier delivers its outbox and the forwarder
    // passes its transfers on, while this node leads the group.
    let background_stop = Arc::new(tokio::sync::Notify::new());
    let sender = notify::sender_from_config(&cfg.notify).map_err(NodeError::Config)?;
    let notify_stats = Arc::new(notify::NotifyStats::default());
    let start_background = {
        let notify_stats = notify_stats.clone();
        let handle = handle.clone();
        let background_stop = background_stop.clone();
        let notify_cfg = cfg.notify.clone();
        move |gid: u64, bells: crate::raft_loop::Bells| {
            // Purged meanwhile (`Hosted::leave`): nothing to start.
            let Ok(h) = handle.at(gid) else {
                return;
            };
            if let Some(sender) = &sender {
                let stop = background_stop.clone();
                let left = bells.notifier_left.clone();
                tokio::spawn(notify::run(
                    h.clone(),
                    sender.clone(),
                    notify_cfg.clone(),
                    notify_stats.clone(),
                    Some(bells.outbox.clone()),
                    async move { crate::raft_loop::task_ends(left, stop.notified()).await },
                ));
            }
            let stop = background_stop.clone();
            let left = bells.forwarder_left.clone();
            tokio::spawn(crate::forwarder::run(
                h,
                bells.transfers.clone(),
                async move { crate::raft_loop::task_ends(left, stop.notified()).await },
            ));
        }
    };
    for &gid in hosted_groups.keys() {
        start_background(gid, bells[&gid].clone());
    }
    {
        let stop = background_stop.clone();
        tokio::spawn(crate::dirsync::run(handle.clone(), async move {
            stop.notified().await
        }));
    }
    {
        let stop = background_stop.clone();
        let others = handle
            .fed
            .iter()
            .filter(|(id, _)| **id != cfg.id)
            .map(|(id, ch)| (*id, ch.clone()))
            .collect();
        tokio::spawn(crate::faults::sync(
            handle.faults.clone(),
            others,
            async move { stop.notified().await },
        ));
    }
    {
        let stop = background_stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    joined = joined_rx.recv() => match joined {
                        Some((gid, b)) => start_background(gid, b),
                        None => return,
                    },
                    () = stop.notified() => return,
                }
            }
        });
    }
    if let Some(m) = &cfg.metrics_listen {
        let listener = tokio::net::TcpListener::bind(m)
            .await
            .map_err(|e| NodeError::Listen(m.clone(), format!("metrics: {e}")))?;
        tracing::info!(node = cfg.id, address = %m, "serving /metrics");
        let stop = background_stop.clone();
        tokio::spawn(crate::metrics::serve(
            listener,
            handle.clone(),
            loop_stats,
            notify_stats,
            async move { stop.notified().await },
        ));
    }
    let (health, health_svc) = tonic_health::server::health_reporter();
    health.set_serving::<TicketsServer<Handle>>().await;
    health.set_serving::<RaftServer<Handle>>().await;
    health.set_serving::<AdminServer<Handle>>().await;
    health.set_serving::<FederationServer<Handle>>().await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(hotline_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    // grpcurl up to 1.8 speaks only v1alpha.
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(hotline_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let addr: SocketAddr = cfg.listen.parse().map_err(|e: std::net::AddrParseError| {
        NodeError::Listen(cfg.listen.clone(), e.to_string())
    })?;
    let mut builder = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(1)))
        .http2_keepalive_timeout(Some(Duration::from_secs(2)));
    if !cfg.insecure {
        let files = cfg
            .tls
            .as_ref()
            .expect("config checked: tls present unless insecure");
        builder = builder.tls_config(tls::server_config(files)?)?;
    }
    let max = t.max_message_bytes;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| NodeError::Listen(cfg.listen.clone(), e.to_string()))?;
    tracing::info!(node = cfg.id, %addr, tls = !cfg.insecure, "serving");
    // Our own listener (so a bind error is reported before serving) loses
    // the builder's TCP_NODELAY: set it here, or Nagle plus delayed ACKs add
    // ~40 ms to every small response.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    // Peers keep their raft streams open forever, so a graceful drain would
    // never finish: stop accepting, give in-flight requests a grace period,
    // then drop the server.
    let stop = std::sync::Arc::new(tokio::sync::Notify::new());
    let stop2 = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        stop2.notify_waiters();
        stop2.notify_one();
    });
    let stop3 = stop.clone();
    let graceful: Pin<Box<dyn Future<Output = ()> + Send>> =
        Box::pin(async move { stop3.notified().await });
    let serve = builder
        .add_service(health_svc)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(TicketsServer::new(handle.clone()))
        .add_service(AdminServer::new(handle.clone()))
        .add_service(FederationServer::new(handle.clone()))
        .add_service(
            RaftServer::new(handle)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .serve_with_incoming_shutdown(incoming, graceful);
    tokio::pin!(serve);
    let served = tokio::select! {
        r = &mut serve => r,
        _ = async {
            stop.notified().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => Ok(()),
    };
    background_stop.notify_waiters();
    let _ = ctl_tx.send(Control::Stop);
    let _ = tokio::task::spawn_blocking(move || loop_thread.join()).await;
    tracing::info!(node = cfg.id, "stopped");
    served?;
    Ok(())
}
