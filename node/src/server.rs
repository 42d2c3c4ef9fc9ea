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
use hotline_proto::v1::admin_server::{Admin, AdminServer};
use hotline_proto::v1::raft_server::{Raft, RaftServer};
use hotline_proto::v1::tickets_server::{Tickets, TicketsServer};
use hotline_proto::v1::{
    AcceptRequest, AcceptResponse, Command, GetTicketRequest, GetTicketResponse,
    ListTicketsRequest, ListTicketsResponse, RaftBatch, RaftDone, StatusRequest, StatusResponse,
    Ticket, command,
};
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status, Streaming};

use crate::config::NodeConfig;
use crate::core::{Query, QueryAnswer, Recovered, Replica, ReplicaConfig, tickets};
use crate::raft_loop::{Control, Proposal, ProposeOutcome, RaftLoop, ReadOutcome};
use crate::storage::Storage;
use crate::{tls, transport};

/// Largest page a list returns.
pub const MAX_LIST_LIMIT: u32 = 1_000;
/// How long a stopping node lets in-flight requests finish.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

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
    #[error("listen address {0:?}: {1}")]
    Listen(String, String),
}

/// What the gRPC handlers share: the queues into the raft loop.
#[derive(Clone)]
struct Handle {
    group_id: u64,
    region: String,
    proposals: Sender<Proposal>,
    control: Sender<Control>,
    timeout: Duration,
    tls: bool,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Tickets leave the node with the phone number masked.
fn redact(mut t: Ticket) -> Ticket {
    t.phone.clear();
    t
}

impl Handle {
    async fn wait<T>(&self, rx: oneshot::Receiver<T>) -> Result<T, Status> {
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(Status::unavailable("node is stopping")),
            Err(_) => Err(Status::deadline_exceeded(
                "no outcome within the request timeout (leader change or partition); retry with the same request_id",
            )),
        }
    }

    async fn read(&self, query: Query) -> Result<QueryAnswer, Status> {
        let (reply, rx) = oneshot::channel();
        self.control
            .try_send(Control::Read {
                group_id: self.group_id,
                query,
                reply,
            })
            .map_err(|_| Status::resource_exhausted("read queue is full"))?;
        match self.wait(rx).await? {
            ReadOutcome::Answer(a) => Ok(a),
            ReadOutcome::Unavailable(why) => Err(Status::unavailable(why)),
        }
    }
}

#[tonic::async_trait]
impl Tickets for Handle {
    async fn accept(
        &self,
        req: Request<AcceptRequest>,
    ) -> Result<Response<AcceptResponse>, Status> {
        let mut req = req.into_inner();
        tickets::validate_accept(&self.region, &req)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if req.request_id == 0 {
            req.request_id = rand::random::<u64>() | 1;
        }
        let cmd = Command {
            request_id: req.request_id,
            at_ms: now_ms(),
            op: Some(command::Op::Accept(req)),
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
            ProposeOutcome::Applied(t) => Ok(Response::new(AcceptResponse {
                ticket: Some(redact(t)),
            })),
            ProposeOutcome::Rejected(e) => Err(Status::invalid_argument(e.to_string())),
            ProposeOutcome::NotLeader(e) => Err(Status::unavailable(e.to_string())),
            ProposeOutcome::Overloaded => Err(Status::resource_exhausted(
                "too many proposals in flight; back off and retry",
            )),
        }
    }

    async fn get(
        &self,
        req: Request<GetTicketRequest>,
    ) -> Result<Response<GetTicketResponse>, Status> {
        let id = req.into_inner().id;
        if id.is_empty() || id.len() > 64 {
            return Err(Status::invalid_argument("id: must be 1 to 64 bytes"));
        }
        match self.read(Query::Get { id: id.clone() }).await? {
            QueryAnswer::Ticket(Some(t)) => Ok(Response::new(GetTicketResponse {
                ticket: Some(redact(t)),
            })),
            QueryAnswer::Ticket(None) => Err(Status::not_found(format!("ticket {id} not found"))),
            QueryAnswer::Tickets(_) => Err(Status::internal("unexpected answer")),
        }
    }

    async fn list(
        &self,
        req: Request<ListTicketsRequest>,
    ) -> Result<Response<ListTicketsResponse>, Status> {
        let r = req.into_inner();
        if r.limit > MAX_LIST_LIMIT {
            return Err(Status::invalid_argument(format!(
                "limit: {} is over the maximum of {MAX_LIST_LIMIT}",
                r.limit
            )));
        }
        let limit = if r.limit == 0 { 100 } else { r.limit as usize };
        match self
            .read(Query::List {
                limit,
                before_id: r.before_id,
            })
            .await?
        {
            QueryAnswer::Tickets(ts) => Ok(Response::new(ListTicketsResponse {
                tickets: ts.into_iter().map(redact).collect(),
            })),
            QueryAnswer::Ticket(_) => Err(Status::internal("unexpected answer")),
        }
    }
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
                        tracing::warn!(
                            ?peer_addr,
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
            // A full control queue drops the batch: raft retransmits.
            let _ = self.control.try_send(Control::Raft {
                from_node: from,
                envelopes: batch.envelopes,
            });
        }
        Ok(Response::new(RaftDone {}))
    }
}

#[tonic::async_trait]
impl Admin for Handle {
    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let (reply, rx) = oneshot::channel();
        self.control
            .try_send(Control::Status { reply })
            .map_err(|_| Status::resource_exhausted("control queue is full"))?;
        Ok(Response::new(self.wait(rx).await?))
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
    let storage = Storage::open(&cfg.data_dir)?;
    let rec = match storage.load(cfg.group.id)? {
        Some(rec) => rec,
        None => {
            tracing::info!(
                node = cfg.id,
                group = cfg.group.id,
                "empty data directory: bootstrapping with voters {:?}",
                cfg.group.voters
            );
            Recovered::bootstrap(&cfg.group.voters)
        }
    };
    let mut rcfg = ReplicaConfig::new(cfg.id, cfg.group.id, &cfg.group.region);
    rcfg.election_ticks = t.election_ticks;
    rcfg.heartbeat_ticks = t.heartbeat_ticks;
    rcfg.compact_log_entries = t.compact_log_entries;
    let replica = Replica::new(rcfg, rec)?;
    tracing::info!(
        node = cfg.id,
        group = cfg.group.id,
        applied = replica.applied(),
        last = replica.last_index(),
        "replica recovered"
    );

    let (prop_tx, prop_rx) = bounded(t.max_proposal_queue);
    let (ctl_tx, ctl_rx) = bounded(65_536);
    let mut peers = BTreeMap::new();
    for p in cfg.peers.iter().filter(|p| p.id != cfg.id) {
        let (qtx, qrx) = mpsc::channel(transport::PEER_QUEUE_BATCHES);
        peers.insert(p.id, qtx);
        let scheme = if cfg.insecure { "http" } else { "https" };
        let client_tls = match &cfg.tls {
            Some(files) if !cfg.insecure => Some(tls::client_config(files, &tls::node_name(p.id))?),
            _ => None,
        };
        let ep = transport::endpoint(format!("{scheme}://{}", p.address), client_tls)?;
        tokio::spawn(transport::peer_sender(
            cfg.id,
            p.id,
            ep,
            t.max_message_bytes,
            qrx,
            ctl_tx.clone(),
        ));
    }
    let raft_loop = RaftLoop {
        node_id: cfg.id,
        address: cfg.listen.clone(),
        replicas: BTreeMap::from([(cfg.group.id, replica)]),
        storage,
        peers,
        proposals: prop_rx,
        control: ctl_rx,
        tick: Duration::from_millis(t.tick_ms),
        max_in_flight: t.max_in_flight_proposals,
    };
    let loop_thread = std::thread::Builder::new()
        .name(format!("raft-loop-{}", cfg.id))
        .spawn(move || raft_loop.run())
        .expect("spawn raft loop thread");

    let handle = Handle {
        group_id: cfg.group.id,
        region: cfg.group.region.clone(),
        proposals: prop_tx,
        control: ctl_tx.clone(),
        timeout: Duration::from_millis(t.request_timeout_ms),
        tls: !cfg.insecure,
    };
    let (health, health_svc) = tonic_health::server::health_reporter();
    health.set_serving::<TicketsServer<Handle>>().await;
    health.set_serving::<RaftServer<Handle>>().await;
    health.set_serving::<AdminServer<Handle>>().await;
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
    let _ = ctl_tx.send(Control::Stop);
    let _ = tokio::task::spawn_blocking(move || loop_thread.join()).await;
    tracing::info!(node = cfg.id, "stopped");
    served?;
    Ok(())
}
