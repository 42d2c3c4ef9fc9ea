//! `GET /metrics`: the node's state and counters in the OpenMetrics text
//! format (what Prometheus scrapes), over plain HTTP/1.1 on the node's
//! `metrics_listen` address.
//!
//! Two kinds of figures:
//! - counters the raft loop bumps as it works ([`LoopStats`]: proposals by
//!   outcome, storage commits, raft messages sent and dropped), plus the
//!   drill counters of `faults.rs` and the notifier's;
//! - per-group gauges read at scrape time from the loop's status (role,
//!   term, commit and applied index, hibernating, outbox), so a scrape costs
//!   one status round and nothing between scrapes.
//!
//! Plain HTTP without TLS, as Prometheus scrapes usually are: the figures
//! carry no ticket content. Bind it to loopback or a management network.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::notify::NotifyStats;
use crate::server::Handle;

/// Scrapes served at once; more wait for the accept loop.
const MAX_CONNECTIONS: usize = 16;
/// A client that does not send its request within this is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Counters of the raft loop (relaxed atomics: figures, not
/// synchronisation).
#[derive(Debug, Default)]
pub struct LoopStats {
    /// Handed to raft.
    pub proposals_proposed: AtomicU64,
    /// Refused by the state machine's check before the log.
    pub proposals_rejected: AtomicU64,
    /// No leader known, or the group is not hosted here.
    pub proposals_not_leader: AtomicU64,
    /// Too many in flight: the client got `ResourceExhausted`.
    pub proposals_overloaded: AtomicU64,
    /// WAL frames written with an fdatasync (something had to be durable).
    pub commits_synced: AtomicU64,
    /// WAL frames made durable by the next synced one (only commit indexes
    /// or state-machine rows moved).
    pub commits_deferred: AtomicU64,
    /// redb checkpoints started (state-machine rows, one fsync each).
    pub checkpoints: AtomicU64,
    pub raft_messages_sent: AtomicU64,
    /// A peer's queue was full or missing: raft is told the peer is
    /// unreachable and retransmits later.
    pub raft_messages_dropped: AtomicU64,
    pub loop_iterations: AtomicU64,
}

impl LoopStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabel {
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupRole {
    group: String,
    region: String,
    role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerVerdict {
    peer: String,
    verdict: &'static str,
}

fn counter_family(reg: &mut Registry, name: &str, help: &str, values: &[(&'static str, u64)]) {
    let f = Family::<Outcome, Counter>::default();
    for &(outcome, v) in values {
        f.get_or_create(&Outcome { outcome }).inc_by(v);
    }
    reg.register(name, help, f);
}

fn gauge(reg: &mut Registry, name: &str, help: &str, v: i64) {
    let g = Gauge::<i64>::default();
    g.set(v);
    reg.register(name, help, g);
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// Everything the endpoint shows, read now.
pub async fn render(h: &Handle, loop_stats: &LoopStats, notify: &NotifyStats) -> String {
    let mut reg = Registry::with_prefix("hotline");
    let s = loop_stats;
    counter_family(
        &mut reg,
        "proposals",
        "Proposals by outcome at this node's raft loop",
        &[
            ("proposed", load(&s.proposals_proposed)),
            ("rejected", load(&s.proposals_rejected)),
            ("not_leader", load(&s.proposals_not_leader)),
            ("overloaded", load(&s.proposals_overloaded)),
        ],
    );
    counter_family(
        &mut reg,
        "storage_commits",
        "Storage writes: WAL frames synced (fdatasync) or deferred to the next synced one, and redb checkpoints",
        &[
            ("synced", load(&s.commits_synced)),
            ("deferred", load(&s.commits_deferred)),
            ("checkpoint", load(&s.checkpoints)),
        ],
    );
    counter_family(
        &mut reg,
        "raft_messages",
        "Raft messages handed to the transport, or dropped at a full or missing peer queue",
        &[
            ("sent", load(&s.raft_messages_sent)),
            ("dropped", load(&s.raft_messages_dropped)),
        ],
    );
    let it = Counter::<u64>::default();
    it.inc_by(load(&s.loop_iterations));
    reg.register("raft_loop_iterations", "Iterations of the raft loop", it);
    counter_family(
        &mut reg,
        "notifications",
        "Requester notifications: delivered (and marked), failed attempts",
        &[
            ("delivered", load(&notify.delivered)),
            ("failed", load(&notify.failed)),
        ],
    );
    gauge(
        &mut reg,
        "proposal_queue_depth",
        "Proposals waiting for the raft loop",
        h.proposal_queue_len() as i64,
    );

    // Drills: rules in force and what they did, per peer.
    let f = h.faults.snapshot();
    gauge(
        &mut reg,
        "fault_rules",
        "Drill rules in force on this node (hotline fault …)",
        f.rules.len() as i64,
    );
    // Nodes at different generations have not all caught up (faults::sync).
    gauge(
        &mut reg,
        "fault_drill_generation",
        "Generation of the drill in force on this node (0: never set)",
        f.generation as i64,
    );
    let fam = Family::<PeerVerdict, Counter>::default();
    for c in &f.counters {
        let peer = c.peer.to_string();
        fam.get_or_create(&PeerVerdict {
            peer: peer.clone(),
            verdict: "dropped",
        })
        .inc_by(c.dropped);
        fam.get_or_create(&PeerVerdict {
            peer,
            verdict: "delayed",
        })
        .inc_by(c.delayed);
    }
    reg.register(
        "fault_batches",
        "Messages a drill rule dropped or delayed, per peer: raft batches and federation calls sent, raft messages received",
        fam,
    );

    // Groups, from the loop's status (absent if the loop does not answer).
    if let Ok(st) = h.status_now().await {
        let role = Family::<GroupRole, Gauge>::default();
        let term = Family::<GroupLabel, Gauge>::default();
        let commit = Family::<GroupLabel, Gauge>::default();
        let applied = Family::<GroupLabel, Gauge>::default();
        let sleeping = Family::<GroupLabel, Gauge>::default();
        let outbox = Family::<GroupLabel, Gauge>::default();
        let mut hibernating = 0;
        let mut leading = 0;
        for g in &st.groups {
            let group = g.group_id.to_string();
            let l = GroupLabel {
                group: group.clone(),
            };
            role.get_or_create(&GroupRole {
                group,
                region: hotline_federation::topology::group_region(g.group_id),
                role: g.role.clone(),
            })
            .set(1);
            term.get_or_create(&l).set(g.term as i64);
            commit.get_or_create(&l).set(g.commit_index as i64);
            applied.get_or_create(&l).set(g.applied_index as i64);
            sleeping.get_or_create(&l).set(i64::from(g.hibernating));
            outbox.get_or_create(&l).set(i64::from(g.outbox_pending));
            hibernating += i64::from(g.hibernating);
            leading += i64::from(g.role == "leader");
        }
        gauge(
            &mut reg,
            "groups_hosted",
            "Region groups with a replica on this node",
            st.groups.len() as i64,
        );
        gauge(
            &mut reg,
            "groups_leading",
            "Groups this node leads",
            leading,
        );
        gauge(
            &mut reg,
            "groups_hibernating",
            "Groups whose replica here hibernates (no ticks, no heartbeats)",
            hibernating,
        );
        reg.register(
            "group_role",
            "1 for the role this node's replica has in the group",
            role,
        );
        reg.register("group_term", "Raft term of the group's replica", term);
        reg.register(
            "group_commit_index",
            "Commit index the replica knows",
            commit,
        );
        reg.register(
            "group_applied_index",
            "Last entry applied to the replica's state machine",
            applied,
        );
        reg.register(
            "group_hibernating",
            "1 while the replica hibernates",
            sleeping,
        );
        reg.register(
            "group_outbox_pending",
            "Requester notifications not yet delivered",
            outbox,
        );
    }
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &reg).expect("writing to a String");
    out
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

/// Serves `/metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    h: Handle,
    loop_stats: Arc<LoopStats>,
    notify: Arc<NotifyStats>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    tokio::pin!(shutdown);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => return,
            p = permits.clone().acquire_owned() => p.expect("never closed"),
        };
        let (stream, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("metrics: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (h, loop_stats, notify) = (h.clone(), loop_stats.clone(), notify.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (h, loop_stats, notify) = (h.clone(), loop_stats.clone(), notify.clone());
                async move {
                    let r = if req.method() != hyper::Method::GET {
                        reply(
                            StatusCode::METHOD_NOT_ALLOWED,
                            "text/plain",
                            "only GET\n".into(),
                        )
                    } else if req.uri().path() != "/metrics" {
                        reply(StatusCode::NOT_FOUND, "text/plain", "try /metrics\n".into())
                    } else {
                        reply(
                            StatusCode::OK,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            render(&h, &loop_stats, &notify).await,
                        )
                    };
                    Ok::<_, std::convert::Infallible>(r)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "metrics connection: {e}");
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_families_encode_with_the_prefix_and_total_suffix() {
        let mut reg = Registry::with_prefix("hotline");
        counter_family(
            &mut reg,
            "proposals",
            "help",
            &[("proposed", 7), ("rejected", 2)],
        );
        gauge(&mut reg, "fault_rules", "help", 3);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        assert!(
            out.contains("hotline_proposals_total{outcome=\"proposed\"} 7"),
            "{out}"
        );
        assert!(
            out.contains("hotline_proposals_total{outcome=\"rejected\"} 2"),
            "{out}"
        );
        assert!(out.contains("hotline_fault_rules 3"), "{out}");
        assert!(out.ends_with("# EOF\n"), "{out}");
    }
}
