//! Client of a hotline cluster: finds the leader, retries on leader change
//! and overload with the same request id (accepts are idempotent by it).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hotline_proto::v1::admin_client::AdminClient;
use hotline_proto::v1::tickets_client::TicketsClient;
use hotline_proto::v1::{
    AcceptRequest, Event, GetPolicyRequest, GetTicketRequest, GetTicketResponse,
    ListTicketsRequest, ListTicketsResponse, LookupRequest, LookupResponse, Notification,
    OutboxRequest, Policy, ReadConsistency, ReportRequest, ReportResponse, SetPolicyRequest,
    StatusRequest, StatusResponse, Ticket, TicketCommand, TicketCommandRequest,
    TransferTicketRequest, VerifyRequest, VerifyResponse, WatchRequest,
};
use tonic::transport::Channel;
use tonic::{Code, Status};

use hotline_federation::directory::Directory;
use hotline_federation::topology::Topology;
use hotline_proto::v1::federation_client::FederationClient;
use hotline_proto::v1::{FederatedQueryRequest, FederatedQueryResponse, TransfersRequest};

use crate::config::ClientConfig;
use crate::{tls, transport};

/// Attempts of one request across leader changes, with a growing pause.
const MAX_ATTEMPTS: u32 = 20;
/// How long one request keeps trying by default. Nodes that are down
/// refuse at once, and 20 attempts end within about 7 s; hosts that drop
/// packets or never answer hold each attempt to the connect timeout (2 s),
/// the call's timeout (10 s) and two leader searches (2 s each), so without
/// this bound a command would wait minutes before it says so.
pub const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(20);
/// Stubs `owner_of` follows: a transfer, a send-back and a second
/// transfer are three; more is a ticket going round in circles.
const MAX_OWNER_HOPS: u32 = 4;

pub struct Node {
    pub id: u64,
    pub address: String,
    channels: Vec<Channel>,
}

pub struct Client {
    pub nodes: Vec<Node>,
    /// Index into `nodes` of the node believed to lead (any group).
    leader: AtomicUsize,
    /// Per group: index into `nodes` of the node believed to lead it.
    leaders: std::sync::Mutex<std::collections::BTreeMap<u64, usize>>,
    next_conn: AtomicUsize,
    /// From the topology, when the client config names one: routes a
    /// request to the group that owns its region.
    pub directory: Option<Directory>,
    /// How long one request keeps trying, attempts and leader searches
    /// included (`DEFAULT_RETRY_BUDGET` unless set).
    retry_budget: Duration,
    /// When the whole command ends, if it has an end (the CLI's
    /// `--timeout`): a command of several requests (a lookup that follows
    /// a transferred ticket's stubs) ends there, not after a budget each.
    deadline: Option<Instant>,
}

fn retryable(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Cancelled
            | Code::Unknown
    )
}

/// What `with_retry_in` returns when no node of a group answered: every
/// attempt failed, or found only nodes that do not host the group. A group
/// that answered "busy" (`ResourceExhausted`) was reached.
pub fn unreachable(s: &Status) -> bool {
    (retryable(s) && s.code() != Code::ResourceExhausted)
        || (s.code() == Code::FailedPrecondition && s.message().contains("is not hosted on node"))
}

/// How `owner_of` says that a ticket's first-contact center (the group of
/// its id) cannot be reached: only there is it known where the ticket went,
/// so the caller has to name the center holding it now.
const FIRST_CONTACT_UNREACHABLE: &str = "its first-contact center, cannot be reached";

/// That answer, for ticket `id` whose first-contact center is `group`;
/// `cause` is the last attempt's error.
pub fn first_contact_unreachable_status(id: &str, group: u64, cause: &Status) -> Status {
    Status::unavailable(format!(
        "ticket {id}: group {group}, {FIRST_CONTACT_UNREACHABLE} ({})",
        cause.message()
    ))
}

/// Is this `owner_of`'s answer that the ticket's first-contact center
/// cannot be reached (and no other group was named)?
pub fn first_contact_unreachable(s: &Status) -> bool {
    s.code() == Code::Unavailable && s.message().contains(FIRST_CONTACT_UNREACHABLE)
}

/// `last` as the answer of a request that ran out of time after `attempts`
/// attempts: its code (so `unreachable` still tells), and how long it tried.
fn gave_up(last: &Status, attempts: u32, took: Duration) -> Status {
    Status::new(
        last.code(),
        format!(
            "{} (gave up after {attempts} attempt{} in {:.1} s)",
            last.message(),
            if attempts == 1 { "" } else { "s" },
            took.as_secs_f64()
        ),
    )
}

impl Client {
    /// Lazy connections (`connections` per node) to every endpoint.
    pub fn new(
        cfg: &ClientConfig,
        connections: usize,
    ) -> Result<Client, Box<dyn std::error::Error + Send + Sync>> {
        tls::install_crypto_provider();
        let mut nodes = Vec::new();
        for e in &cfg.endpoints {
            let client_tls = match &cfg.tls {
                Some(files) if !cfg.insecure => {
                    Some(tls::client_config(files, &tls::node_name(e.id))?)
                }
                _ => None,
            };
            let scheme = if cfg.insecure { "http" } else { "https" };
            let ep = transport::endpoint(format!("{scheme}://{}", e.address), client_tls)?
                .timeout(Duration::from_secs(10));
            let channels = (0..connections.max(1)).map(|_| ep.connect_lazy()).collect();
            nodes.push(Node {
                id: e.id,
                address: e.address.clone(),
                channels,
            });
        }
        let directory = match &cfg.topology {
            Some(p) => Some(Directory::new(&Topology::load(p)?)),
            None => None,
        };
        Ok(Client {
            nodes,
            leader: AtomicUsize::new(0),
            leaders: Default::default(),
            next_conn: AtomicUsize::new(0),
            directory,
            retry_budget: DEFAULT_RETRY_BUDGET,
            deadline: None,
        })
    }

    /// How long one request keeps trying before it reports the last error
    /// (at least a millisecond).
    pub fn with_retry_budget(mut self, budget: Duration) -> Client {
        self.retry_budget = budget.max(Duration::from_millis(1));
        self
    }

    /// No request starts or goes on past `at`: the end of a command that
    /// makes several requests.
    pub fn with_deadline(mut self, at: Instant) -> Client {
        self.deadline = Some(at);
        self
    }

    /// The time a request starting now may take: its retry budget, cut at
    /// the command's deadline.
    fn budget(&self) -> Duration {
        match self.deadline {
            Some(at) => self
                .retry_budget
                .min(at.saturating_duration_since(Instant::now())),
            None => self.retry_budget,
        }
    }

    pub fn channel(&self, node: usize) -> Channel {
        let n = &self.nodes[node];
        let i = self.next_conn.fetch_add(1, Ordering::Relaxed) % n.channels.len();
        n.channels[i].clone()
    }

    /// Status of one node, with a short deadline.
    pub async fn status_of(&self, node: usize) -> Result<StatusResponse, Status> {
        let mut c = AdminClient::new(self.channel(node));
        let mut req = tonic::Request::new(StatusRequest {});
        req.set_timeout(Duration::from_secs(2));
        Ok(c.status(req).await?.into_inner())
    }

    pub async fn status_all(&self) -> Vec<Result<StatusResponse, Status>> {
        let futs = (0..self.nodes.len()).map(|i| self.status_of(i));
        futures::future::join_all(futs).await
    }

    /// Asks every node; remembers the one that says it leads (any group).
    pub async fn find_leader(&self) -> Option<usize> {
        self.find_leader_of(None).await
    }

    /// Asks every node which groups it leads; remembers the leader of
    /// `group` (or of any group). The highest term wins a disagreement.
    pub async fn find_leader_of(&self, group: Option<u64>) -> Option<usize> {
        let all = self.status_all().await;
        let mut best: Option<(u64, usize)> = None;
        for (i, s) in all.iter().enumerate() {
            if let Ok(s) = s {
                for g in &s.groups {
                    if g.role == "leader"
                        && group.is_none_or(|want| g.group_id == want)
                        && best.is_none_or(|(t, _)| g.term > t)
                    {
                        best = Some((g.term, i));
                    }
                }
            }
        }
        let i = best?.1;
        match group {
            Some(g) => {
                self.leaders.lock().expect("not poisoned").insert(g, i);
            }
            None => self.leader.store(i, Ordering::Relaxed),
        }
        Some(i)
    }

    /// With no leader known, the node to try at `attempt`: the group's
    /// members in turn when the topology names them, else any node.
    fn member_to_try(&self, group: u64, attempt: u32) -> usize {
        let members: Vec<usize> = self
            .directory
            .as_ref()
            .map(|d| d.members(group))
            .unwrap_or_default()
            .iter()
            .filter_map(|id| self.nodes.iter().position(|n| n.id == *id))
            .collect();
        if members.is_empty() {
            attempt as usize
        } else {
            members[attempt as usize % members.len()]
        }
    }

    /// The group that owns a region code, from the topology (if known).
    pub fn group_of_region(&self, region: &str) -> Option<u64> {
        self.directory.as_ref().and_then(|d| d.owner(region))
    }

    /// The group of a ticket id's region (the part before the first '-').
    pub fn group_of_ticket(&self, id: &str) -> Option<u64> {
        self.group_of_region(id.split('-').next().unwrap_or(""))
    }

    /// Sends to the believed leader of `group` (any node for `None`),
    /// re-finding the leader after a retryable error, for at most
    /// `MAX_ATTEMPTS` attempts and `retry_budget` in all.
    async fn with_retry_in<T, F, Fut>(&self, group: Option<u64>, mut f: F) -> Result<T, Status>
    where
        F: FnMut(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let started = Instant::now();
        let budget = self.budget();
        let mut last = Status::deadline_exceeded(
            "the command's time (--timeout) ran out before this request was sent",
        );
        for attempt in 0..MAX_ATTEMPTS {
            let left = budget.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(match attempt {
                    0 => last,
                    _ => gave_up(&last, attempt, started.elapsed()),
                });
            }
            // The node waited on while its call is out, to name it when
            // the attempt runs out of time (`None` during a leader search).
            let mut asked: Option<usize> = None;
            let outcome = tokio::time::timeout(left, async {
                let believed = match group {
                    Some(g) => self.leaders.lock().expect("not poisoned").get(&g).copied(),
                    None => None,
                };
                let node = match (group, believed) {
                    (_, Some(i)) => i,
                    (Some(g), None) => match self.find_leader_of(group).await {
                        Some(i) => i,
                        None => self.member_to_try(g, attempt),
                    },
                    (None, None) => self.leader.load(Ordering::Relaxed),
                } % self.nodes.len();
                asked = Some(node);
                let answer = f(self.channel(node)).await;
                asked = None;
                match answer {
                    Ok(v) => Ok(Ok(v)),
                    Err(s) if retryable(&s) || (group.is_some() && unreachable(&s)) => {
                        if s.code() != Code::ResourceExhausted
                            && self.find_leader_of(group).await.is_none()
                        {
                            // No leader known yet: try the next member anyway.
                            match group {
                                Some(g) => {
                                    let next = self.member_to_try(g, attempt + 1);
                                    self.leaders.lock().expect("not poisoned").insert(g, next);
                                }
                                None => self.leader.store(node + 1, Ordering::Relaxed),
                            }
                        }
                        Err(s)
                    }
                    Err(s) => Ok(Err(s)),
                }
            })
            .await;
            match outcome {
                Ok(Ok(done)) => return done,
                Ok(Err(s)) => last = s,
                Err(_elapsed) => {
                    let what = match (asked, group) {
                        (Some(i), Some(g)) => format!(
                            "node {} ({}) of group {g} did not answer",
                            self.nodes[i].id, self.nodes[i].address
                        ),
                        (Some(i), None) => format!(
                            "node {} ({}) did not answer",
                            self.nodes[i].id, self.nodes[i].address
                        ),
                        (None, Some(g)) => format!("no node said which one leads group {g}"),
                        (None, None) => "no node answered".to_string(),
                    };
                    let s = if attempt == 0 {
                        Status::unavailable(what)
                    } else {
                        Status::unavailable(format!("{what}; before: {}", last.message()))
                    };
                    return Err(gave_up(&s, attempt + 1, started.elapsed()));
                }
            }
            let pause = Duration::from_millis(20 * u64::from(attempt + 1))
                .min(Duration::from_millis(500))
                .min(budget.saturating_sub(started.elapsed()));
            tokio::time::sleep(pause).await;
        }
        Err(last)
    }

    /// Accepts a ticket at the group of its accepting region. Give a
    /// non-zero `request_id` to make retries safe; zero gets a random one
    /// here, kept across this call's retries.
    pub async fn accept(&self, mut req: AcceptRequest) -> Result<Ticket, Status> {
        if req.request_id == 0 {
            req.request_id = rand::random::<u64>() | 1;
        }
        let group = self.group_of_region(&req.region);
        self.with_retry_in(group, |ch| {
            let req = req.clone();
            async move {
                let resp = TicketsClient::new(ch).accept(req).await?.into_inner();
                resp.ticket
                    .ok_or_else(|| Status::internal("empty response"))
            }
        })
        .await
    }

    /// `group` 0 means: the group of the ticket id's region.
    fn ticket_group(&self, id: &str, group: u64) -> Option<u64> {
        if group != 0 {
            Some(group)
        } else {
            self.group_of_ticket(id)
        }
    }

    pub async fn get(&self, id: &str) -> Result<Ticket, Status> {
        self.get_in(0, id).await
    }

    /// Reads a ticket in a given group (after a transfer, the owner's).
    pub async fn get_in(&self, group: u64, id: &str) -> Result<Ticket, Status> {
        let g = self.ticket_group(id, group);
        self.with_retry_in(g, |ch| {
            let req = GetTicketRequest {
                id: id.to_string(),
                group_id: g.unwrap_or(0),
                ..Default::default()
            };
            async move {
                let resp = TicketsClient::new(ch).get(req).await?.into_inner();
                resp.ticket
                    .ok_or_else(|| Status::internal("empty response"))
            }
        })
        .await
    }

    /// The group that owns ticket `id` now. A ticket is first asked for in
    /// the group of its id's region (where it was accepted); a copy there
    /// that is a stub names the group it went to, which is asked next, at
    /// most `MAX_OWNER_HOPS` times (a ticket re-transferred, or sent back).
    /// An operator at the destination thus acts on an incoming ticket by
    /// its id alone. A ticket still on its way (its new owner does not have
    /// it yet, or two stubs name each other during a send-back) is
    /// `FailedPrecondition`, to try again in a moment.
    ///
    /// `at`: start at this group instead, the one the caller believes holds
    /// the ticket now (a destination's operator, while the first-contact
    /// center cannot be reached). A ticket it does not hold is `NotFound`.
    /// When the id's group cannot be reached, the error is `Unavailable`
    /// and says so: no other group can tell where the ticket went.
    pub async fn owner_of(&self, id: &str, at: Option<u64>) -> Result<u64, Status> {
        let mut group = at.or_else(|| self.group_of_ticket(id)).unwrap_or(0);
        let mut asked: Vec<u64> = Vec::new();
        let on_its_way = |from: u64, to: u64| {
            Status::failed_precondition(format!(
                "ticket {id} is on its way from group {from} to group {to} (a transfer in flight): try again in a moment"
            ))
        };
        for _ in 0..MAX_OWNER_HOPS {
            let t = match self.get_in(group, id).await {
                Ok(t) => t,
                Err(s)
                    if s.code() == Code::NotFound
                        && let Some(&from) = asked.last() =>
                {
                    return Err(on_its_way(from, group));
                }
                Err(s) if asked.is_empty() && at.is_some() && s.code() == Code::NotFound => {
                    return Err(Status::not_found(format!(
                        "ticket {id} is not held at group {group}"
                    )));
                }
                Err(s) if unreachable(&s) => {
                    let which = match (asked.last(), at) {
                        (Some(from), _) => format!("where group {from} sent it"),
                        (None, Some(_)) => "named to hold it".to_string(),
                        (None, None) => {
                            return Err(first_contact_unreachable_status(id, group, &s));
                        }
                    };
                    return Err(Status::unavailable(format!(
                        "ticket {id}: group {group}, {which}, cannot be reached ({})",
                        s.message()
                    )));
                }
                Err(s) => return Err(s),
            };
            asked.push(group);
            let moved = t.status == hotline_proto::v1::Status::Transferred as i32
                && t.owner_group != 0
                && t.owner_group != group;
            if !moved {
                return Ok(group);
            }
            if asked.contains(&t.owner_group) {
                return Err(on_its_way(group, t.owner_group));
            }
            group = t.owner_group;
        }
        Err(Status::failed_precondition(format!(
            "ticket {id}: more than {MAX_OWNER_HOPS} transfers to follow; name the group that owns it"
        )))
    }

    pub async fn list(&self, filter: ListTicketsRequest) -> Result<ListTicketsResponse, Status> {
        let g = (filter.group_id != 0).then_some(filter.group_id);
        self.with_retry_in(g, |ch| {
            let f = filter.clone();
            async move { Ok(TicketsClient::new(ch).list(f).await?.into_inner()) }
        })
        .await
    }

    /// Runs a lifecycle command. Zero `request_id` gets a random one, kept
    /// across this call's retries, so a retry never acts twice.
    /// 转办: sends ticket `req.ticket_id` to the group owning `req.location`.
    pub async fn transfer(&self, mut req: TransferTicketRequest) -> Result<Ticket, Status> {
        if req.request_id == 0 {
            req.request_id = rand::random::<u64>() | 1;
        }
        let g = self.ticket_group(&req.ticket_id, req.group_id);
        req.group_id = g.unwrap_or(0);
        self.with_retry_in(g, |ch| {
            let req = req.clone();
            async move {
                TicketsClient::new(ch)
                    .transfer(req)
                    .await?
                    .into_inner()
                    .ticket
                    .ok_or_else(|| Status::internal("empty response"))
            }
        })
        .await
    }

    pub async fn execute(&self, command: TicketCommand, request_id: u64) -> Result<Ticket, Status> {
        self.execute_in(0, command, request_id).await
    }

    pub async fn execute_in(
        &self,
        group: u64,
        command: TicketCommand,
        request_id: u64,
    ) -> Result<Ticket, Status> {
        let request_id = if request_id == 0 {
            rand::random::<u64>() | 1
        } else {
            request_id
        };
        let g = self.ticket_group(&command.ticket_id, group);
        self.with_retry_in(g, |ch| {
            let req = TicketCommandRequest {
                command: Some(command.clone()),
                request_id,
                group_id: g.unwrap_or(0),
            };
            async move {
                TicketsClient::new(ch)
                    .execute(req)
                    .await?
                    .into_inner()
                    .ticket
                    .ok_or_else(|| Status::internal("empty response"))
            }
        })
        .await
    }

    pub async fn lookup(&self, id: &str, phone_last4: &str) -> Result<LookupResponse, Status> {
        let g = self.group_of_ticket(id);
        self.with_retry_in(g, |ch| {
            let req = LookupRequest {
                id: id.to_string(),
                phone_last4: phone_last4.to_string(),
                group_id: g.unwrap_or(0),
            };
            async move { Ok(TicketsClient::new(ch).lookup(req).await?.into_inner()) }
        })
        .await
    }

    pub async fn verify(&self, id: &str) -> Result<VerifyResponse, Status> {
        self.verify_in(0, id).await
    }

    pub async fn verify_in(&self, group: u64, id: &str) -> Result<VerifyResponse, Status> {
        let g = self.ticket_group(id, group);
        self.with_retry_in(g, |ch| {
            let req = VerifyRequest {
                id: id.to_string(),
                group_id: g.unwrap_or(0),
            };
            async move { Ok(TicketsClient::new(ch).verify(req).await?.into_inner()) }
        })
        .await
    }

    pub async fn report(&self, req: ReportRequest) -> Result<ReportResponse, Status> {
        let g = (req.group_id != 0).then_some(req.group_id);
        self.with_retry_in(g, |ch| async move {
            Ok(TicketsClient::new(ch).report(req).await?.into_inner())
        })
        .await
    }

    pub async fn outbox(&self, limit: u32) -> Result<Vec<Notification>, Status> {
        self.outbox_in(0, limit).await
    }

    pub async fn outbox_in(&self, group: u64, limit: u32) -> Result<Vec<Notification>, Status> {
        let g = (group != 0).then_some(group);
        self.with_retry_in(g, |ch| async move {
            Ok(TicketsClient::new(ch)
                .outbox(OutboxRequest {
                    limit,
                    group_id: group,
                })
                .await?
                .into_inner()
                .notifications)
        })
        .await
    }

    pub async fn set_policy(&self, group: u64, policy: Policy) -> Result<Policy, Status> {
        let g = (group != 0).then_some(group);
        self.with_retry_in(g, |ch| {
            let req = SetPolicyRequest {
                policy: Some(policy.clone()),
                group_id: group,
            };
            async move {
                TicketsClient::new(ch)
                    .set_policy(req)
                    .await?
                    .into_inner()
                    .policy
                    .ok_or_else(|| Status::internal("empty response"))
            }
        })
        .await
    }

    pub async fn get_policy(&self, group: u64) -> Result<Policy, Status> {
        let g = (group != 0).then_some(group);
        self.with_retry_in(g, |ch| async move {
            TicketsClient::new(ch)
                .get_policy(GetPolicyRequest { group_id: group })
                .await?
                .into_inner()
                .policy
                .ok_or_else(|| Status::internal("empty response"))
        })
        .await
    }

    /// Cross-province cases (or all transfers) a group holds.
    pub async fn transfers(
        &self,
        group: u64,
        cross_province_only: bool,
        limit: u32,
    ) -> Result<Vec<hotline_proto::v1::TransferRecord>, Status> {
        self.with_retry_in(Some(group), |ch| async move {
            Ok(FederationClient::new(ch)
                .transfers(TransfersRequest {
                    cross_province_only,
                    limit,
                    group_id: group,
                })
                .await?
                .into_inner()
                .records)
        })
        .await
    }

    /// A federated query, asked of any node (it forwards to the root group).
    /// An answer in which no region answered (the node asked is cut off
    /// from all of them) is kept only until another node does better.
    pub async fn federated_query(
        &self,
        req: FederatedQueryRequest,
    ) -> Result<FederatedQueryResponse, Status> {
        let started = Instant::now();
        let budget = self.budget();
        let mut last = Status::unavailable("no node answered");
        let mut empty: Option<FederatedQueryResponse> = None;
        for i in 0..self.nodes.len() {
            let left = budget.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            let mut c = FederationClient::new(self.channel(i));
            match tokio::time::timeout(left, c.query(req.clone())).await {
                Ok(Ok(r))
                    if r.get_ref().answered.is_empty()
                        && req.deadline_ms > crate::server::now_ms() =>
                {
                    empty.get_or_insert(r.into_inner());
                }
                Ok(Ok(r)) => return Ok(r.into_inner()),
                Ok(Err(s)) if retryable(&s) => last = s,
                // Past its deadline, the next node refuses the query: the
                // answer with no region in it is the answer.
                Ok(Err(s)) => return empty.ok_or(s),
                Err(_elapsed) => {
                    let n = &self.nodes[i];
                    let s = Status::unavailable(format!(
                        "node {} ({}) did not answer the query; before: {}",
                        n.id,
                        n.address,
                        last.message()
                    ));
                    return match empty {
                        Some(r) => Ok(r),
                        None => Err(gave_up(&s, i as u32 + 1, started.elapsed())),
                    };
                }
            }
        }
        empty.ok_or(last)
    }

    /// Streams ticket `id`'s events from node index `node` (any replica of
    /// the group serves it), in `group` (0: the group of the id's region).
    pub async fn watch_on(
        &self,
        node: usize,
        group: u64,
        id: &str,
        after_seq: u32,
    ) -> Result<tonic::Streaming<Event>, Status> {
        Ok(TicketsClient::new(self.channel(node))
            .watch(WatchRequest {
                id: id.to_string(),
                after_seq,
                group_id: self.ticket_group(id, group).unwrap_or(0),
            })
            .await?
            .into_inner())
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// A direct call on one node (no retry, no leader search): tests use it
    /// to read what a given replica holds.
    pub async fn get_on(&self, node: usize, id: &str) -> Result<Ticket, Status> {
        let resp = TicketsClient::new(self.channel(node))
            .get(GetTicketRequest {
                id: id.to_string(),
                group_id: self.group_of_ticket(id).unwrap_or(0),
                ..Default::default()
            })
            .await?
            .into_inner();
        resp.ticket
            .ok_or_else(|| Status::internal("empty response"))
    }

    /// The position of node `id` among the endpoints.
    pub fn node_index(&self, id: u64) -> Result<usize, Status> {
        self.nodes.iter().position(|n| n.id == id).ok_or_else(|| {
            Status::invalid_argument(format!("node: {id} is not in the client configuration"))
        })
    }

    /// A local (stale-but-labelled) read of a ticket on node `node_id`'s
    /// replica: no leader involved, so it answers while cut off.
    pub async fn get_local(
        &self,
        node_id: u64,
        group: u64,
        id: &str,
    ) -> Result<GetTicketResponse, Status> {
        let i = self.node_index(node_id)?;
        let group_id = if group != 0 {
            group
        } else {
            self.group_of_ticket(id).unwrap_or(0)
        };
        Ok(TicketsClient::new(self.channel(i))
            .get(GetTicketRequest {
                id: id.to_string(),
                group_id,
                consistency: ReadConsistency::ReadLocal as i32,
            })
            .await?
            .into_inner())
    }

    /// A local (stale-but-labelled) list on node `node_id`'s replica.
    pub async fn list_local(
        &self,
        node_id: u64,
        mut filter: ListTicketsRequest,
    ) -> Result<ListTicketsResponse, Status> {
        let i = self.node_index(node_id)?;
        filter.consistency = ReadConsistency::ReadLocal as i32;
        Ok(TicketsClient::new(self.channel(i))
            .list(filter)
            .await?
            .into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Peer;

    /// A host that takes connections and never answers (a hung process,
    /// or a firewall that swallows what follows the handshake): a request
    /// to it ends after the retry budget, naming the node, as unreachable.
    #[tokio::test]
    async fn a_request_to_a_host_that_never_answers_ends_within_its_budget() {
        // Bound and listening, never accepted: the kernel completes the
        // handshake from its backlog, and nothing ever reads.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = silent.local_addr().expect("address").to_string();
        let cfg = ClientConfig {
            endpoints: vec![Peer {
                id: 7,
                address: address.clone(),
            }],
            topology: None,
            insecure: true,
            tls: None,
        };
        let node = format!("node 7 ({address})");
        // (budget, group, what the error says): without a group the one
        // node is asked at once; with one, the leader search (2 s per
        // status call) comes first, and then the node asked.
        let cases = [
            (1_500, None, format!("{node} did not answer")),
            (
                1_500,
                Some(310114),
                "no node said which one leads group 310114".to_string(),
            ),
            (
                3_000,
                Some(310114),
                format!("{node} of group 310114 did not answer"),
            ),
        ];
        for (budget_ms, group, says) in cases {
            let budget = Duration::from_millis(budget_ms);
            let cl = Client::new(&cfg, 1)
                .expect("client")
                .with_retry_budget(budget);
            let started = Instant::now();
            let err = match group {
                None => cl.get("310114-20261205-000001").await,
                Some(g) => cl.get_in(g, "310114-20261205-000001").await,
            }
            .expect_err("nobody answers");
            let took = started.elapsed();
            assert!(
                took >= budget && took < budget + Duration::from_secs(3),
                "group {group:?}: took {took:?} with a budget of {budget:?}"
            );
            assert!(unreachable(&err), "group {group:?}: {err:?}");
            assert!(
                err.message().starts_with(&says)
                    && err.message().contains("(gave up after 1 attempt in"),
                "group {group:?}: {}",
                err.message()
            );
        }
        drop(silent);
    }

    /// A command of several requests (a lookup following stubs) ends at
    /// its deadline, not after a budget per request: the second request,
    /// starting past the deadline, is not sent and says why.
    #[tokio::test]
    async fn the_requests_of_a_command_end_together_at_its_deadline() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let cfg = ClientConfig {
            endpoints: vec![Peer {
                id: 7,
                address: silent.local_addr().expect("address").to_string(),
            }],
            topology: None,
            insecure: true,
            tls: None,
        };
        let time = Duration::from_millis(1_500);
        let started = Instant::now();
        let cl = Client::new(&cfg, 1)
            .expect("client")
            .with_retry_budget(time)
            .with_deadline(started + time);
        let first = cl.get("310114-20261205-000001").await.expect_err("silent");
        assert!(first.message().contains("did not answer"), "{first:?}");
        let second = cl.get("310114-20261205-000002").await.expect_err("late");
        let took = started.elapsed();
        assert!(
            took >= time && took < time + Duration::from_secs(3),
            "two requests took {took:?} with a command time of {time:?}"
        );
        assert_eq!(second.code(), Code::DeadlineExceeded, "{second:?}");
        assert!(second.message().contains("--timeout"), "{second:?}");
        drop(silent);
    }

    /// Nodes that refuse at once are retried `MAX_ATTEMPTS` times, well
    /// within the budget, and the last refusal is what the caller reads.
    #[tokio::test]
    async fn refused_connections_end_after_the_attempts_with_the_refusal() {
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("address").to_string()
        };
        let cfg = ClientConfig {
            endpoints: vec![Peer {
                id: 3,
                address: closed,
            }],
            topology: None,
            insecure: true,
            tls: None,
        };
        let cl = Client::new(&cfg, 1).expect("client");
        let started = Instant::now();
        let err = cl
            .get_in(310114, "310114-20261205-000001")
            .await
            .expect_err("refused");
        assert!(
            started.elapsed() < DEFAULT_RETRY_BUDGET,
            "{:?}",
            started.elapsed()
        );
        assert!(unreachable(&err), "{err:?}");
        assert!(
            !err.message().contains("gave up after"),
            "{}",
            err.message()
        );
    }
}
