//! Raft transport between nodes: one long-lived client-streaming gRPC call
//! per (sender, receiver) pair, carrying batches of messages for all groups.
//!
//! The raft loop `try_send`s into a bounded queue per peer; a full queue
//! drops the messages and tells raft the peer is unreachable (raft tolerates
//! loss, and an unbounded backlog would only grow during a partition). The
//! sender task drains whatever is queued into one `RaftBatch` per write.

use std::time::Duration;

use crossbeam_channel::Sender;
use hotline_proto::v1::raft_client::RaftClient;
use hotline_proto::v1::{RaftBatch, RaftEnvelope};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

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

/// Runs until the loop drops its queue to this peer.
pub async fn peer_sender(
    from_node: u64,
    peer: u64,
    endpoint: Endpoint,
    max_message_bytes: usize,
    mut queue: mpsc::Receiver<Vec<RaftEnvelope>>,
    control: Sender<Control>,
) {
    loop {
        let channel: Channel = endpoint.connect_lazy();
        let mut client = RaftClient::new(channel)
            .max_encoding_message_size(max_message_bytes)
            .max_decoding_message_size(max_message_bytes);
        let (tx, rx) = mpsc::channel::<RaftBatch>(16);
        let mut call = tokio::spawn(async move { client.stream(ReceiverStream::new(rx)).await });
        loop {
            tokio::select! {
                next = queue.recv() => {
                    let Some(mut envelopes) = next else {
                        call.abort();
                        return;
                    };
                    while envelopes.len() < MAX_ENVELOPES_PER_BATCH {
                        match queue.try_recv() {
                            Ok(more) => envelopes.extend(more),
                            Err(_) => break,
                        }
                    }
                    if tx.send(RaftBatch { from_node, envelopes }).await.is_err() {
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
