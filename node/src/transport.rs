//! Raft transport between nodes: one long-lived client-streaming gRPC call
//! per (sender, receiver) pair, carrying batches of messages for all groups.
//!
//! The raft loop `try_send`s into a bounded queue per peer; a full queue
//! drops the messages and tells raft the peer is unreachable (raft tolerates
//! loss, and an unbounded backlog would only grow during a partition). The
//! sender task drains whatever is queued into one `RaftBatch` per write.
//!
//! Drills (`hotline fault …`, see `faults.rs`): each queued batch gets a
//! verdict from [`Faults::outbound`] before it is written. A dropped batch is
//! discarded and counted, silently, as a cut link loses it (raft is not told
//! the peer is unreachable; it retransmits as for any loss). A delayed batch
//! is held until its time comes while later batches keep arriving, so every
//! message is late by the delay (a long link, not a slow one) and order is
//! kept: a batch that passes waits behind the held ones. At most
//! [`PEER_QUEUE_BATCHES`] batches are held; beyond that the sender stops
//! draining the queue, which then fills and drops as above. Held batches are
//! lost when the stream breaks, like anything else in flight.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use hotline_proto::v1::raft_client::RaftClient;
use hotline_proto::v1::{RaftBatch, RaftEnvelope};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use crate::faults::{Faults, Verdict};
use crate::raft_loop::Control;

/// Batches queued per peer before messages are dropped.
pub const PEER_QUEUE_BATCHES: usize = 1_024;
/// Envelopes per gRPC message, so one write stays bounded.
const MAX_ENVELOPES_PER_BATCH: usize = 4_096;
const RECONNECT_BACKOFF: Duration = Duration::from_millis(200);

/// A channel with the settings every inter-node link needs: lazy connect
/// (a node starts while peers are down), HTTP/2 keepalive (a silently
/// dropped connection is noticed in about a second, not at TCP timeout), and
/// no Nagle delay.
pub fn endpoint(
    uri: String,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Result<Endpoint, tonic::transport::Error> {
    let mut ep = Endpoint::from_shared(uri)?
        .connect_timeout(Duration::from_secs(2))
        .http2_keep_alive_interval(Duration::from_millis(500))
        .keep_alive_timeout(Duration::from_secs(1))
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        ep = ep.tls_config(tls)?;
    }
    Ok(ep)
}

/// The node's leadership epoch (`RaftBatch.leadership_epoch`): bumped by
/// the raft loop whenever one of its replicas changes role or leader, read
/// by every peer sender for every batch.
pub type LeadershipEpoch = Arc<std::sync::atomic::AtomicU64>;

/// A new epoch for a starting node: its clock in milliseconds, so that a
/// restart reads as a change to its peers, as it is.
pub fn new_leadership_epoch() -> LeadershipEpoch {
    let now_ms = crate::server::now_ms().max(1) as u64;
    Arc::new(std::sync::atomic::AtomicU64::new(now_ms))
}

fn batch(from_node: u64, envelopes: Vec<RaftEnvelope>, epoch: &LeadershipEpoch) -> RaftBatch {
    RaftBatch {
        from_node,
        envelopes,
        leadership_epoch: epoch.load(std::sync::atomic::Ordering::Relaxed),
    }
}

/// Batches held back by a delay rule, each with the instant it may leave;
/// the instants never decrease from front to back.
type Held = VecDeque<(Instant, Vec<RaftEnvelope>)>;

/// Runs until the loop drops its queue to this peer.
#[allow(clippy::too_many_arguments)]
pub async fn peer_sender(
    from_node: u64,
    peer: u64,
    endpoint: Endpoint,
    max_message_bytes: usize,
    mut queue: mpsc::Receiver<Vec<RaftEnvelope>>,
    control: Sender<Control>,
    faults: Arc<Faults>,
    epoch: LeadershipEpoch,
) {
    loop {
        let channel: Channel = endpoint.connect_lazy();
        let mut client = RaftClient::new(channel)
            .max_encoding_message_size(max_message_bytes)
            .max_decoding_message_size(max_message_bytes);
        let (tx, rx) = mpsc::channel::<RaftBatch>(16);
        let mut call = tokio::spawn(async move { client.stream(ReceiverStream::new(rx)).await });
        let mut held = Held::new();
        loop {
            let due = held.front().map(|(at, _)| *at);
            tokio::select! {
                next = queue.recv(), if held.len() < PEER_QUEUE_BATCHES => {
                    let Some(first) = next else {
                        call.abort();
                        return;
                    };
                    let mut envelopes = Vec::new();
                    let mut passed = admit(&faults, peer, first, &mut envelopes, &mut held);
                    while envelopes.len() < MAX_ENVELOPES_PER_BATCH
                        && held.len() < PEER_QUEUE_BATCHES
                    {
                        match queue.try_recv() {
                            Ok(more) => {
                                passed |= admit(&faults, peer, more, &mut envelopes, &mut held)
                            }
                            Err(_) => break,
                        }
                    }
                    // An empty batch is the per-tick liveness heartbeat: the
                    // only traffic between nodes whose groups all hibernate.
                    if passed
                        && tx.send(batch(from_node, envelopes, &epoch)).await.is_err()
                    {
                        break;
                    }
                }
                () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    // Sent even when empty: held heartbeats are heartbeats
                    // late, not lost (a delayed link is a long one, not a
                    // dead one; dropped, every idle group led across it
                    // would be deposed after 4 election timeouts).
                    if let Some(envelopes) = release(&mut held, Instant::now())
                        && tx.send(batch(from_node, envelopes, &epoch)).await.is_err()
                    {
                        break;
                    }
                }
                res = &mut call => {
                    if let Ok(Err(status)) = res {
                        tracing::debug!(peer, "raft stream ended: {status}");
                    }
                    break;
                }
            }
        }
        call.abort();
        let _ = control.try_send(Control::Unreachable { peer });
        tokio::time::sleep(RECONNECT_BACKOFF).await;
    }
}

/// Applies the drill verdict to one queued batch: into `ready` when it
/// passes and nothing is held, else behind the held batches (a delayed one
/// until now + delay); a dropped one nowhere.
/// Returns true when the batch passed at once (an empty batch — the node
/// liveness heartbeat — must then still be sent).
fn admit(
    faults: &Faults,
    peer: u64,
    batch: Vec<RaftEnvelope>,
    ready: &mut Vec<RaftEnvelope>,
    held: &mut Held,
) -> bool {
    let at = match faults.outbound(peer) {
        Verdict::Drop => return false,
        Verdict::Pass if held.is_empty() => {
            ready.extend(batch);
            return true;
        }
        Verdict::Pass => Instant::now(),
        Verdict::Delay(d) => Instant::now() + d,
    };
    // A delay healed or shortened since the held batches were timed: they
    // leave by the new time, so `fault heal` takes effect within a tick
    // (the next heartbeat comes through here) instead of after the old
    // delay, up to a minute. Instants stay in order: each is capped alike.
    for (when, _) in held.iter_mut() {
        *when = (*when).min(at);
    }
    let at = held.back().map_or(at, |(last, _)| at.max(*last));
    held.push_back((at, batch));
    false
}

/// Takes the held batches whose time has come, up to one gRPC message;
/// `None` when none has. Held heartbeats (empty batches) make an empty
/// message, which is still to be sent.
fn release(held: &mut Held, now: Instant) -> Option<Vec<RaftEnvelope>> {
    let mut envelopes = Vec::new();
    let mut any = false;
    while envelopes.len() < MAX_ENVELOPES_PER_BATCH
        && held.front().is_some_and(|(at, _)| *at <= now)
    {
        if let Some((_, batch)) = held.pop_front() {
            envelopes.extend(batch);
            any = true;
        }
    }
    any.then_some(envelopes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotline_proto::v1::{FaultAction, FaultRule};

    fn env(group_id: u64) -> Vec<RaftEnvelope> {
        vec![RaftEnvelope {
            group_id,
            ..Default::default()
        }]
    }

    fn groups(v: &[RaftEnvelope]) -> Vec<u64> {
        v.iter().map(|e| e.group_id).collect()
    }

    fn rule(action: FaultAction, delay_ms: u32, drop_permille: u32) -> FaultRule {
        FaultRule {
            side_a: vec![1],
            side_b: vec![2],
            action: action as i32,
            delay_ms,
            drop_permille,
            label: String::new(),
            one_way: false,
        }
    }

    #[test]
    fn without_rules_batches_pass_at_once() {
        let f = Faults::new(1);
        let (mut ready, mut held) = (Vec::new(), Held::new());
        admit(&f, 2, env(1), &mut ready, &mut held);
        admit(&f, 2, env(2), &mut ready, &mut held);
        assert_eq!(groups(&ready), vec![1, 2]);
        assert!(held.is_empty());
    }

    #[test]
    fn dropped_batches_vanish_and_are_counted() {
        let f = Faults::new(1);
        f.add(rule(FaultAction::Partition, 0, 0)).unwrap();
        let (mut ready, mut held) = (Vec::new(), Held::new());
        admit(&f, 2, env(1), &mut ready, &mut held);
        admit(&f, 3, env(2), &mut ready, &mut held); // another peer passes
        assert_eq!(groups(&ready), vec![2]);
        assert!(held.is_empty());
        assert_eq!(f.snapshot().counters[0].dropped, 1);
    }

    #[test]
    fn delayed_batches_leave_in_order_after_the_delay() {
        let f = Faults::new(1);
        f.add(rule(FaultAction::Delay, 500, 0)).unwrap();
        let start = Instant::now();
        let (mut ready, mut held) = (Vec::new(), Held::new());
        admit(&f, 2, env(1), &mut ready, &mut held);
        admit(&f, 2, Vec::new(), &mut ready, &mut held); // a heartbeat
        admit(&f, 2, env(2), &mut ready, &mut held);
        assert!(ready.is_empty());
        assert_eq!(held.len(), 3);
        assert!(release(&mut held, start).is_none(), "not yet");
        let later = start + Duration::from_millis(600);
        assert_eq!(
            release(&mut held, later).map(|e| groups(&e)),
            Some(vec![1, 2])
        );
        assert!(held.is_empty());
        assert_eq!(f.snapshot().counters[0].delayed, 3);
        // A heartbeat held alone is still sent when its time comes, empty.
        admit(&f, 2, Vec::new(), &mut ready, &mut held);
        assert_eq!(
            release(&mut held, Instant::now() + Duration::from_secs(1)),
            Some(vec![])
        );
    }

    /// `fault heal` ends a delay at once: what it held leaves with the
    /// next batch (a heartbeat within a tick), in order, not after the old
    /// delay; a shortened delay caps the held batches' time alike.
    #[test]
    fn a_heal_releases_what_a_delay_held_at_once() {
        let f = Faults::new(1);
        f.add(rule(FaultAction::Delay, 60_000, 0)).unwrap();
        let (mut ready, mut held) = (Vec::new(), Held::new());
        admit(&f, 2, env(1), &mut ready, &mut held);
        admit(&f, 2, env(2), &mut ready, &mut held);
        f.heal();
        admit(&f, 2, env(3), &mut ready, &mut held);
        assert!(ready.is_empty(), "behind the held ones, in order");
        let soon = Instant::now() + Duration::from_millis(1);
        assert_eq!(
            release(&mut held, soon).map(|e| groups(&e)),
            Some(vec![1, 2, 3])
        );

        f.add(rule(FaultAction::Delay, 60_000, 0)).unwrap();
        admit(&f, 2, env(4), &mut ready, &mut held);
        f.heal();
        f.add(rule(FaultAction::Delay, 100, 0)).unwrap();
        admit(&f, 2, env(5), &mut ready, &mut held);
        let later = Instant::now() + Duration::from_millis(200);
        assert_eq!(
            release(&mut held, later).map(|e| groups(&e)),
            Some(vec![4, 5])
        );
    }
}
