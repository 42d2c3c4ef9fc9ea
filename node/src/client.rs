//! Client of a hotline cluster: finds the leader, retries on leader change
//! and overload with the same request id (accepts are idempotent by it).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hotline_proto::v1::admin_client::AdminClient;
use hotline_proto::v1::tickets_client::TicketsClient;
use hotline_proto::v1::{
    AcceptRequest, Event, GetPolicyRequest, GetTicketRequest, ListTicketsRequest,
    ListTicketsResponse, LookupRequest, LookupResponse, Notification, OutboxRequest, Policy,
    ReportRequest, ReportResponse, SetPolicyRequest, StatusRequest, StatusResponse, Ticket,
    TicketCommand, TicketCommandRequest, VerifyRequest, VerifyResponse, WatchRequest,
};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::config::ClientConfig;
use crate::{tls, transport};

/// Attempts of one request across leader changes, with a growing pause.
const MAX_ATTEMPTS: u32 = 20;

pub struct Node {
    pub id: u64,
    pub address: String,
    channels: Vec<Channel>,
}

pub struct Client {
    pub nodes: Vec<Node>,
    /// Index into `nodes` of the node believed to lead.
    leader: AtomicUsize,
    next_conn: AtomicUsize,
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
        Ok(Client {
            nodes,
            leader: AtomicUsize::new(0),
            next_conn: AtomicUsize::new(0),
        })
    }

    fn channel(&self, node: usize) -> Channel {
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

    /// Asks every node; remembers the one that says it leads.
    pub async fn find_leader(&self) -> Option<usize> {
        let all = self.status_all().await;
        let mut best: Option<(u64, usize)> = None;
        for (i, s) in all.iter().enumerate() {
            if let Ok(s) = s {
                for g in &s.groups {
                    if g.role == "leader" && best.is_none_or(|(t, _)| g.term > t) {
                        best = Some((g.term, i));
                    }
                }
            }
        }
        let i = best?.1;
        self.leader.store(i, Ordering::Relaxed);
        Some(i)
    }

    async fn with_retry<T, F, Fut>(&self, mut f: F) -> Result<T, Status>
    where
        F: FnMut(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let mut last = Status::unavailable("no attempt made");
        for attempt in 0..MAX_ATTEMPTS {
            let node = self.leader.load(Ordering::Relaxed) % self.nodes.len();
            match f(self.channel(node)).await {
                Ok(v) => return Ok(v),
                Err(s) if retryable(&s) => {
                    last = s;
                    if last.code() != Code::ResourceExhausted && self.find_leader().await.is_none()
                    {
                        // No leader known yet: try the next node anyway.
                        self.leader.store(node + 1, Ordering::Relaxed);
                    }
                    let pause = Duration::from_millis(20 * u64::from(attempt + 1))
                        .min(Duration::from_millis(500));
                    tokio::time::sleep(pause).await;
                }
                Err(s) => return Err(s),
            }
        }
        Err(last)
    }

    /// Accepts a ticket. Give a non-zero `request_id` to make retries safe;
    /// zero gets a random one here, kept across this call's retries.
    pub async fn accept(&self, mut req: AcceptRequest) -> Result<Ticket, Status> {
        if req.request_id == 0 {
            req.request_id = rand::random::<u64>() | 1;
        }
        self.with_retry(|ch| {
            let req = req.clone();
            async move {
                let resp = TicketsClient::new(ch).accept(req).await?.into_inner();
                resp.ticket
                    .ok_or_else(|| Status::internal("empty response"))
            }
        })
        .await
    }

    pub async fn get(&self, id: &str) -> Result<Ticket, Status> {
        self.with_retry(|ch| {
            let id = id.to_string();
            async move {
                let resp = TicketsClient::new(ch)
                    .get(GetTicketRequest { id })
                    .await?
                    .into_inner();
                resp.ticket
                    .ok_or_else(|| Status::internal("empty response"))
            }
        })
        .await
    }

    pub async fn list(&self, filter: ListTicketsRequest) -> Result<ListTicketsResponse, Status> {
        self.with_retry(|ch| {
            let f = filter.clone();
            async move { Ok(TicketsClient::new(ch).list(f).await?.into_inner()) }
        })
        .await
    }

    /// Runs a lifecycle command. Zero `request_id` gets a random one, kept
    /// across this call's retries, so a retry never acts twice.
    pub async fn execute(&self, command: TicketCommand, request_id: u64) -> Result<Ticket, Status> {
        let request_id = if request_id == 0 {
            rand::random::<u64>() | 1
        } else {
            request_id
        };
        self.with_retry(|ch| {
            let req = TicketCommandRequest {
                command: Some(command.clone()),
                request_id,
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
        self.with_retry(|ch| {
            let req = LookupRequest {
                id: id.to_string(),
                phone_last4: phone_last4.to_string(),
            };
            async move { Ok(TicketsClient::new(ch).lookup(req).await?.into_inner()) }
        })
        .await
    }

    pub async fn verify(&self, id: &str) -> Result<VerifyResponse, Status> {
        self.with_retry(|ch| {
            let req = VerifyRequest { id: id.to_string() };
            async move { Ok(TicketsClient::new(ch).verify(req).await?.into_inner()) }
        })
        .await
    }

    pub async fn report(&self, req: ReportRequest) -> Result<ReportResponse, Status> {
        self.with_retry(
            |ch| async move { Ok(TicketsClient::new(ch).report(req).await?.into_inner()) },
        )
        .await
    }

    pub async fn outbox(&self, limit: u32) -> Result<Vec<Notification>, Status> {
        self.with_retry(|ch| async move {
            Ok(TicketsClient::new(ch)
                .outbox(OutboxRequest { limit })
                .await?
                .into_inner()
                .notifications)
        })
        .await
    }

    pub async fn set_policy(&self, policy: Policy) -> Result<Policy, Status> {
        self.with_retry(|ch| {
            let req = SetPolicyRequest {
                policy: Some(policy.clone()),
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

    pub async fn get_policy(&self) -> Result<Policy, Status> {
        self.with_retry(|ch| async move {
            TicketsClient::new(ch)
                .get_policy(GetPolicyRequest {})
                .await?
                .into_inner()
                .policy
                .ok_or_else(|| Status::internal("empty response"))
        })
        .await
    }

    /// Streams a ticket's events from one node (any replica serves it).
    pub async fn watch_on(
        &self,
        node: usize,
        id: &str,
        after_seq: u32,
    ) -> Result<tonic::Streaming<Event>, Status> {
        Ok(TicketsClient::new(self.channel(node))
            .watch(WatchRequest {
                id: id.to_string(),
                after_seq,
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
            .get(GetTicketRequest { id: id.to_string() })
            .await?
            .into_inner();
        resp.ticket
            .ok_or_else(|| Status::internal("empty response"))
    }
}
