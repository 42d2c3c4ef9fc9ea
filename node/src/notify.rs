//! Delivery of the outbox: citizens' SMS/notifications, at least once.
//!
//! Each region group's replicated state holds an outbox of
//! [`Notification`]s. The group leader runs [`run`]: every interval it reads
//! the oldest pending notifications, sends the due ones through a pluggable
//! [`Sender`], and proposes one replicated `Delivered{ids}` for those the
//! sender accepted, which removes them from the outbox on every replica.
//!
//! Guarantees and their limits:
//! - **At least once.** A notification leaves the outbox only after a send
//!   succeeded. A crash or a leader change between the send and the commit of
//!   `Delivered` makes the next leader send it again; the receiver
//!   deduplicates by [`Notification::id`] (sent as `Idempotency-Key` by the
//!   [`WebhookSender`]).
//! - **Retries.** A failed send backs off exponentially
//!   (`interval · 2^attempts`, capped at `max_backoff_ms`). The backoff state
//!   is in memory on the leader only: a new leader starts afresh.
//! - **No poison pill blocks the queue** as long as fewer than `batch · 4`
//!   notifications fail at once: the notifier looks at a window of `batch · 4`
//!   oldest pending notifications and sends up to `batch` that are due.
//!   Notifications are never dropped; one that keeps failing stays in the
//!   outbox and is reported once with `warn!` after
//!   `max_attempts_before_warn` attempts.
//! - **Bounded.** At most `batch` sends per round, [`SEND_CONCURRENCY`] at a
//!   time, each cut off after [`SEND_TIMEOUT`] whatever the sender does; the
//!   per-id state holds at most `batch · 4` entries.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use hotline_proto::v1::Notification;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::core::notify_pace::NotifyPace;
use crate::core::tickets::mask_phone;

/// Sends in flight at once within one round.
pub const SEND_CONCURRENCY: usize = 8;
/// A send that has not finished after this long counts as failed, whatever
/// the [`Sender`] does (the webhook's own timeout is shorter).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// The pending window is `batch · WINDOW_FACTOR` notifications; it also
/// bounds the backoff map.
const WINDOW_FACTOR: usize = 4;
/// Largest accepted `batch` (the window is four times that).
pub const MAX_BATCH: usize = 10_000;
/// Longest sleep of an idle notifier that has a bell (a safety net: the
/// bell is what wakes it).
pub const IDLE_POLL: Duration = Duration::from_secs(30);
/// Shortest accepted `interval_ms`.
pub const MIN_INTERVAL_MS: u64 = 10;
/// Default timeout of one webhook request (connect + answer + body).
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// Answer bodies are drained (for connection reuse) up to this size.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

// ---------------------------------------------------------------- senders

/// Where notifications go.
///
/// `send` must be idempotent from the citizen's point of view: the same
/// notification (same `id`) may be sent more than once, and the receiving
/// side deduplicates by `id`.
#[tonic::async_trait]
pub trait Sender: Send + Sync + 'static {
    /// Delivers one notification. `Ok` means the receiver accepted it; the
    /// error is a short message for the log (it must not contain the phone
    /// number).
    async fn send(&self, n: &Notification) -> Result<(), String>;
    /// A short name for logs and status ("log", "webhook").
    fn name(&self) -> &'static str;
}

/// Writes each notification to the log (`tracing::info!`), with the phone
/// number masked. Always succeeds. For development and for sites without a
/// gateway yet.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogSender;

#[tonic::async_trait]
impl Sender for LogSender {
    async fn send(&self, n: &Notification) -> Result<(), String> {
        tracing::info!(
            id = %n.id,
            ticket = %n.ticket_id,
            phone = %mask_phone(&n.phone),
            text = %n.text,
            "notification"
        );
        Ok(())
    }

    fn name(&self) -> &'static str {
        "log"
    }
}

/// POSTs each notification as JSON
/// `{"id","ticket_id","phone","text","created_at_ms"}` to a plain `http://`
/// URL, with `Content-Type: application/json` and `Idempotency-Key: <id>`.
/// Any 2xx answer means delivered; any other status, a connection error or
/// no complete answer within the timeout (5 s) is a failure.
///
/// Plain HTTP only: TLS termination is the gateway's side. The intended peer
/// is an SMS gateway agent on the same host or LAN segment (e.g.
/// `http://127.0.0.1:8088/sms`), which forwards to the carrier over its own
/// secured channel and deduplicates by `Idempotency-Key`.
pub struct WebhookSender {
    uri: hyper::Uri,
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl fmt::Debug for WebhookSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSender")
            .field("uri", &self.uri)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The JSON body the webhook receives.
#[derive(Serialize)]
struct WebhookBody<'a> {
    id: &'a str,
    ticket_id: &'a str,
    phone: &'a str,
    text: &'a str,
    created_at_ms: i64,
}

impl WebhookSender {
    /// Validates `url` (scheme `http`, a host, no user info) and builds the
    /// client. Building needs no runtime; sending needs tokio.
    pub fn new(url: &str) -> Result<Self, String> {
        let uri: hyper::Uri = url
            .trim()
            .parse()
            .map_err(|e| format!("notify url {url:?}: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(format!(
                    "notify url {url:?}: https is not supported; point it at a plain-http \
                     gateway agent (TLS termination is the gateway's side)"
                ));
            }
            Some(other) => {
                return Err(format!(
                    "notify url {url:?}: scheme {other:?} is not supported, use http://"
                ));
            }
            None => return Err(format!("notify url {url:?}: missing http:// scheme")),
        }
        let Some(authority) = uri.authority() else {
            return Err(format!("notify url {url:?}: missing host"));
        };
        if authority.as_str().contains('@') {
            // Do not echo the URL: it holds a password.
            return Err("notify url: user info in the URL is not supported".to_string());
        }
        if authority.host().is_empty() {
            return Err(format!("notify url {url:?}: missing host"));
        }

        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(WEBHOOK_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(SEND_CONCURRENCY)
            .build(connector);
        Ok(WebhookSender {
            uri,
            client,
            timeout: WEBHOOK_TIMEOUT,
        })
    }

    /// Replaces the per-request timeout (default [`WEBHOOK_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The validated URL.
    pub fn url(&self) -> &hyper::Uri {
        &self.uri
    }

    async fn post(&self, n: &Notification) -> Result<(), String> {
        let body = serde_json::to_vec(&WebhookBody {
            id: &n.id,
            ticket_id: &n.ticket_id,
            phone: &n.phone,
            text: &n.text,
            created_at_ms: n.created_at_ms,
        })
        .map_err(|e| format!("encoding the notification: {e}"))?;
        let request = hyper::Request::post(self.uri.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header("idempotency-key", n.id.as_str())
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("building the request: {e}"))?;
        let answer = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("POST {}: {}", self.uri, error_chain(&e)))?;
        let status = answer.status();
        // Drain the answer (bounded) so that the connection can be reused.
        let _ = Limited::new(answer.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("POST {} answered status {status}", self.uri))
        }
    }
}

#[tonic::async_trait]
impl Sender for WebhookSender {
    async fn send(&self, n: &Notification) -> Result<(), String> {
        match tokio::time::timeout(self.timeout, self.post(n)).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "POST {}: no answer within {:?} (timeout)",
                self.uri, self.timeout
            )),
        }
    }

    fn name(&self) -> &'static str {
        "webhook"
    }
}

/// An error and its sources, "a: b: c".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    // Bounded: error chains are short, but do not trust them to end.
    for _ in 0..8 {
        let Some(s) = source else { break };
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

// ---------------------------------------------------------------- outbox

/// The group the notifier delivers for, as the node exposes it.
#[tonic::async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Whether this node currently leads the group. Only the leader sends.
    async fn is_leader(&self) -> bool;
    /// Up to `limit` pending notifications, oldest first.
    async fn pending(&self, limit: usize) -> Result<Vec<Notification>, String>;
    /// Proposes `Delivered{ids}` and waits for it to commit.
    async fn delivered(&self, ids: Vec<String>) -> Result<(), String>;
}

#[tonic::async_trait]
impl<T: Outbox + ?Sized> Outbox for Arc<T> {
    async fn is_leader(&self) -> bool {
        (**self).is_leader().await
    }
    async fn pending(&self, limit: usize) -> Result<Vec<Notification>, String> {
        (**self).pending(limit).await
    }
    async fn delivered(&self, ids: Vec<String>) -> Result<(), String> {
        (**self).delivered(ids).await
    }
}

// ---------------------------------------------------------------- config

/// `[notify]` in the node configuration.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct NotifyConfig {
    /// "log" (default), "webhook" or "none".
    pub sender: String,
    /// The webhook URL (`http://host:port/path`); only for "webhook".
    pub url: String,
    /// How often the leader looks at the outbox.
    pub interval_ms: u64,
    /// Most notifications sent per round.
    pub batch: usize,
    /// Longest wait before retrying a failed notification.
    pub max_backoff_ms: u64,
    /// After this many failed attempts of one notification, warn (once).
    pub max_attempts_before_warn: u32,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            sender: "log".to_string(),
            url: String::new(),
            interval_ms: NotifyPace::DEFAULT_INTERVAL_MS,
            batch: NotifyPace::DEFAULT_BATCH,
            max_backoff_ms: 60_000,
            max_attempts_before_warn: 10,
        }
    }
}

impl NotifyConfig {
    /// Checks the numbers (the sender is checked by [`sender_from_config`]).
    pub fn validate(&self) -> Result<(), String> {
        if self.interval_ms < MIN_INTERVAL_MS {
            return Err(format!(
                "notify.interval_ms = {} (at least {MIN_INTERVAL_MS})",
                self.interval_ms
            ));
        }
        if self.batch == 0 || self.batch > MAX_BATCH {
            return Err(format!("notify.batch = {} (1..={MAX_BATCH})", self.batch));
        }
        if self.max_backoff_ms < self.interval_ms {
            return Err(format!(
                "notify.max_backoff_ms = {} is below notify.interval_ms = {}",
                self.max_backoff_ms, self.interval_ms
            ));
        }
        Ok(())
    }
}

/// Builds the configured sender; `None` for "none" (no delivery: the outbox
/// grows until a sender is configured). Validates the whole configuration.
pub fn sender_from_config(c: &NotifyConfig) -> Result<Option<Arc<dyn Sender>>, String> {
    c.validate()?;
    match c.sender.as_str() {
        "none" => Ok(None),
        "log" => Ok(Some(Arc::new(LogSender))),
        "webhook" => Ok(Some(Arc::new(WebhookSender::new(&c.url)?))),
        other => Err(format!(
            "notify.sender = {other:?} (expected \"log\", \"webhook\" or \"none\")"
        )),
    }
}

// ---------------------------------------------------------------- the loop

/// Counters of the notifier, shared with the node for status output.
#[derive(Debug, Default)]
pub struct NotifyStats {
    /// Notifications whose `Delivered` committed (sent and removed from the
    /// outbox).
    pub delivered: AtomicU64,
    /// Failed send attempts (each retry counts).
    pub failed: AtomicU64,
}

/// Runs until `shutdown` resolves: every `interval_ms`, if this node leads
/// the group, delivers due pending notifications and marks the delivered
/// ones with one `delivered` call (see the module documentation). A round in
/// progress is abandoned at shutdown, which is safe: what was sent and not
/// marked is sent again by the next leader.
///
/// The pace is the core's [`NotifyPace`]: a full batch goes again at once,
/// pending work at the next interval. With a `bell` (the node rings it when
/// notifications are added to the group's outbox here, or when this node
/// becomes the group's leader), an idle notifier — nothing pending, nothing
/// to retry — sleeps until the bell rings (or [`IDLE_POLL`] passes) instead
/// of looking every `interval_ms`: most of a province's groups are idle,
/// and each look costs.
pub async fn run(
    outbox: impl Outbox,
    sender: Arc<dyn Sender>,
    cfg: NotifyConfig,
    stats: Arc<NotifyStats>,
    bell: Option<Arc<tokio::sync::Notify>>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut notifier = Notifier::new(sender, &cfg, stats);
    tracing::info!(
        sender = notifier.sender.name(),
        interval_ms = notifier.interval.as_millis() as u64,
        batch = notifier.batch,
        "notifier started"
    );
    tokio::pin!(shutdown);
    // The pace is the core's, so the simulator's notifier keeps the same;
    // it counts milliseconds from this start.
    let start = Instant::now();
    let ms_since_start = || Instant::now().duration_since(start).as_millis() as u64;
    let mut pace = NotifyPace::new(notifier.interval.as_millis() as u64);
    // When the next round is due without a bell; `None`: idle.
    let mut due: Option<u64> = None;
    loop {
        let at_ms = match (due, &bell) {
            (Some(at_ms), _) => at_ms,
            (None, Some(bell)) => {
                tokio::select! {
                    biased;
                    _ = &mut shutdown => break,
                    _ = bell.notified() => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                }
                pace.rung(ms_since_start())
            }
            // No bell: look every interval.
            (None, None) => pace.rung(ms_since_start()),
        };
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            _ = tokio::time::sleep_until(start + Duration::from_millis(at_ms)) => {}
        }
        pace.round_started(ms_since_start());
        let full = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            m = notifier.round(&outbox) => m,
        };
        due = pace.after_round(full, !notifier.is_idle());
    }
    tracing::info!("notifier stopped");
}

/// Backoff state of one failing notification.
#[derive(Debug)]
struct Retry {
    attempts: u32,
    next_at: Instant,
    warned: bool,
    /// Insertion order, to trim the oldest.
    order: u64,
}

/// The state of [`run`] between rounds.
struct Notifier {
    sender: Arc<dyn Sender>,
    stats: Arc<NotifyStats>,
    interval: Duration,
    batch: usize,
    window: usize,
    max_backoff: Duration,
    warn_after: u32,
    retries: HashMap<String, Retry>,
    next_order: u64,
    /// Sent successfully, `Delivered` not committed yet: marked again, not
    /// sent again, while this node stays leader.
    unmarked: Vec<String>,
    /// The last round found notifications pending (as leader).
    saw_pending: bool,
}

impl Notifier {
    fn new(sender: Arc<dyn Sender>, cfg: &NotifyConfig, stats: Arc<NotifyStats>) -> Self {
        // Clamp rather than trust: a zero interval would spin.
        let interval = Duration::from_millis(cfg.interval_ms.max(MIN_INTERVAL_MS));
        let batch = cfg.batch.clamp(1, MAX_BATCH);
        Notifier {
            sender,
            stats,
            interval,
            batch,
            window: batch * WINDOW_FACTOR,
            max_backoff: Duration::from_millis(cfg.max_backoff_ms).max(interval),
            warn_after: cfg.max_attempts_before_warn.max(1),
            retries: HashMap::new(),
            next_order: 0,
            unmarked: Vec::new(),
            saw_pending: false,
        }
    }

    /// Nothing pending at the last look, nothing to retry or to mark.
    fn is_idle(&self) -> bool {
        !self.saw_pending && self.retries.is_empty() && self.unmarked.is_empty()
    }

    /// One round. Returns whether more due work is likely waiting (a full
    /// batch went out and was marked), so the caller may go again at once.
    async fn round<O: Outbox + ?Sized>(&mut self, outbox: &O) -> bool {
        self.saw_pending = false;
        if !outbox.is_leader().await {
            // The state is about this node's attempts as leader.
            self.retries.clear();
            self.unmarked.clear();
            return false;
        }
        let pending = match outbox.pending(self.window).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "notifier: reading the outbox failed");
                // Not idle: look again at the normal pace.
                self.saw_pending = true;
                return false;
            }
        };
        self.saw_pending = !pending.is_empty();

        // Forget what is no longer pending (delivered, possibly by an earlier
        // leader). The window only moves forward: the outbox is append-only
        // and loses entries only by `Delivered`.
        let live: HashSet<&str> = pending.iter().map(|n| n.id.as_str()).collect();
        self.retries.retain(|id, _| live.contains(id.as_str()));
        self.unmarked.retain(|id| live.contains(id.as_str()));

        let now = Instant::now();
        let mut seen: HashSet<&str> = self.unmarked.iter().map(String::as_str).collect();
        let due: Vec<Notification> = pending
            .iter()
            .filter(|n| {
                seen.insert(n.id.as_str())
                    && self.retries.get(&n.id).is_none_or(|r| r.next_at <= now)
            })
            .take(self.batch)
            .cloned()
            .collect();
        let attempted = due.len();

        // Owned notifications and sender per future: keeps the round future
        // `Send` (borrowing closures trip the higher-ranked lifetime check).
        let results: Vec<(Notification, Result<(), String>)> = futures::stream::iter(due)
            .map(|n| {
                let sender = Arc::clone(&self.sender);
                async move {
                    let result = match tokio::time::timeout(SEND_TIMEOUT, sender.send(&n)).await {
                        Ok(r) => r,
                        Err(_) => Err(format!(
                            "{} sender did not finish within {SEND_TIMEOUT:?}",
                            sender.name()
                        )),
                    };
                    (n, result)
                }
            })
            .buffer_unordered(SEND_CONCURRENCY)
            .collect()
            .await;

        let mut sent = 0usize;
        for (n, result) in results {
            match result {
                Ok(()) => {
                    sent += 1;
                    self.unmarked.push(n.id);
                }
                Err(e) => self.failed(&n, &e),
            }
        }

        if self.unmarked.is_empty() {
            return false;
        }
        let ids = self.unmarked.clone();
        let count = ids.len();
        match outbox.delivered(ids).await {
            Ok(()) => {
                self.stats
                    .delivered
                    .fetch_add(count as u64, Ordering::Relaxed);
                for id in self.unmarked.drain(..) {
                    if let Some(r) = self.retries.remove(&id) {
                        tracing::info!(
                            id = %id,
                            attempts = r.attempts + 1,
                            "notification delivered after retries"
                        );
                    }
                }
                tracing::debug!(count, attempted, "notifications delivered");
                attempted == self.batch && sent == attempted
            }
            Err(e) => {
                // Sent but not marked: keep them to mark again next round.
                // If this node lost leadership, the next leader sends them
                // again and the receiver deduplicates.
                tracing::warn!(
                    count,
                    error = %e,
                    "notifier: marking notifications delivered failed; will retry"
                );
                false
            }
        }
    }

    /// Records a failed attempt: backoff, stats, one warning.
    fn failed(&mut self, n: &Notification, error: &str) {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let order = self.next_order;
        let retry = self.retries.entry(n.id.clone()).or_insert_with(|| Retry {
            attempts: 0,
            next_at: now,
            warned: false,
            order,
        });
        if retry.order == order {
            self.next_order += 1;
        }
        retry.attempts = retry.attempts.saturating_add(1);
        let delay = backoff(self.interval, retry.attempts, self.max_backoff);
        retry.next_at = now + delay;
        if retry.attempts >= self.warn_after && !retry.warned {
            retry.warned = true;
            tracing::warn!(
                id = %n.id,
                ticket = %n.ticket_id,
                phone = %mask_phone(&n.phone),
                attempts = retry.attempts,
                error = %error,
                "notification still not delivered; retrying every {:?} at most",
                self.max_backoff
            );
        } else if retry.attempts == 1 {
            tracing::info!(id = %n.id, error = %error, retry_in = ?delay, "notification failed");
        } else {
            tracing::debug!(
                id = %n.id,
                attempts = retry.attempts,
                error = %error,
                retry_in = ?delay,
                "notification failed again"
            );
        }
        self.trim();
    }

    /// Keeps the backoff map within the window size, dropping the oldest
    /// entries (they become due at once, nothing is lost).
    fn trim(&mut self) {
        let cap = self.window;
        if self.retries.len() <= cap {
            return;
        }
        let mut orders: Vec<u64> = self.retries.values().map(|r| r.order).collect();
        orders.sort_unstable();
        let cutoff = orders[self.retries.len() - cap];
        self.retries.retain(|_, r| r.order >= cutoff);
    }
}

/// `interval · 2^attempts`, capped at `max`.
fn backoff(interval: Duration, attempts: u32, max: Duration) -> Duration {
    let factor = 1u32.checked_shl(attempts).unwrap_or(u32::MAX);
    interval.saturating_mul(factor).min(max)
}

// ---------------------------------------------------------------- tests

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot;

    const TEST_LIMIT: Duration = Duration::from_secs(10);

    fn note(i: usize) -> Notification {
        Notification {
            id: format!("310114-20250101-{i:06}#1#0"),
            ticket_id: format!("310114-20250101-{i:06}"),
            phone: "13812345678".to_string(),
            text: format!("您的工单 310114-20250101-{i:06} 已受理。"),
            created_at_ms: 1_735_689_600_000 + i as i64,
        }
    }

    fn fast_config() -> NotifyConfig {
        NotifyConfig {
            interval_ms: 10,
            batch: 4,
            max_backoff_ms: 80,
            ..NotifyConfig::default()
        }
    }

    /// An in-memory outbox counting `delivered` calls.
    #[derive(Default)]
    struct FakeOutbox {
        leader: std::sync::atomic::AtomicBool,
        pending: Mutex<Vec<Notification>>,
        marked: Mutex<Vec<String>>,
        delivered_calls: AtomicU64,
        /// `delivered` fails while this is positive (and counts down).
        fail_marks: AtomicU64,
    }

    impl FakeOutbox {
        fn with(notes: Vec<Notification>, leader: bool) -> Arc<Self> {
            let o = FakeOutbox::default();
            *o.pending.lock().unwrap() = notes;
            o.leader.store(leader, Ordering::SeqCst);
            Arc::new(o)
        }
        fn pending_len(&self) -> usize {
            self.pending.lock().unwrap().len()
        }
    }

    #[tonic::async_trait]
    impl Outbox for FakeOutbox {
        async fn is_leader(&self) -> bool {
            self.leader.load(Ordering::SeqCst)
        }
        async fn pending(&self, limit: usize) -> Result<Vec<Notification>, String> {
            let p = self.pending.lock().unwrap();
            Ok(p.iter().take(limit).cloned().collect())
        }
        async fn delivered(&self, ids: Vec<String>) -> Result<(), String> {
            self.delivered_calls.fetch_add(1, Ordering::SeqCst);
            if self
                .fail_marks
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err("proposal dropped".to_string());
            }
            let mut p = self.pending.lock().unwrap();
            let mut m = self.marked.lock().unwrap();
            for id in ids {
                assert!(!m.contains(&id), "{id} marked twice");
                p.retain(|n| n.id != id);
                m.push(id);
            }
            Ok(())
        }
    }

    /// Fails the first `fail_first` attempts of `failing`; records every
    /// attempt, and flags a send of something already marked delivered.
    struct FakeSender {
        outbox: Arc<FakeOutbox>,
        failing: String,
        fail_first: u32,
        attempts: Mutex<HashMap<String, Vec<Instant>>>,
        successes: Mutex<HashMap<String, u32>>,
        sent_after_marked: AtomicU64,
    }

    impl FakeSender {
        fn new(outbox: Arc<FakeOutbox>, failing: &str, fail_first: u32) -> Arc<Self> {
            Arc::new(FakeSender {
                outbox,
                failing: failing.to_string(),
                fail_first,
                attempts: Mutex::new(HashMap::new()),
                successes: Mutex::new(HashMap::new()),
                sent_after_marked: AtomicU64::new(0),
            })
        }
        fn total_attempts(&self) -> usize {
            self.attempts.lock().unwrap().values().map(Vec::len).sum()
        }
    }

    #[tonic::async_trait]
    impl Sender for FakeSender {
        async fn send(&self, n: &Notification) -> Result<(), String> {
            if self.outbox.marked.lock().unwrap().contains(&n.id) {
                self.sent_after_marked.fetch_add(1, Ordering::SeqCst);
            }
            let attempt = {
                let mut a = self.attempts.lock().unwrap();
                let v = a.entry(n.id.clone()).or_default();
                v.push(Instant::now());
                v.len() as u32
            };
            tokio::time::sleep(Duration::from_millis(1)).await;
            if n.id == self.failing && attempt <= self.fail_first {
                return Err("gateway answered status 503".to_string());
            }
            *self
                .successes
                .lock()
                .unwrap()
                .entry(n.id.clone())
                .or_default() += 1;
            Ok(())
        }
        fn name(&self) -> &'static str {
            "fake"
        }
    }

    /// Spawns `run`; returns the stop switch and the task.
    fn spawn_run(
        outbox: Arc<FakeOutbox>,
        sender: Arc<dyn Sender>,
        cfg: NotifyConfig,
        stats: Arc<NotifyStats>,
    ) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(outbox, sender, cfg, stats, None, async move {
            let _ = stopped.await;
        }));
        (stop, task)
    }

    async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        tokio::time::timeout(TEST_LIMIT, async {
            while !cond() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
    }

    async fn stop(stop: oneshot::Sender<()>, task: tokio::task::JoinHandle<()>) {
        let _ = stop.send(());
        tokio::time::timeout(TEST_LIMIT, task)
            .await
            .expect("notifier did not stop")
            .expect("notifier panicked");
    }

    #[tokio::test]
    async fn with_a_bell_an_idle_notifier_sleeps_until_rung_but_retries_on_its_own() {
        let outbox = FakeOutbox::with(Vec::new(), true);
        let first = note(1);
        let sender = FakeSender::new(outbox.clone(), &first.id, 1);
        let stats = Arc::new(NotifyStats::default());
        let bell = Arc::new(tokio::sync::Notify::new());
        let (stop_tx, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(
            outbox.clone(),
            sender.clone(),
            fast_config(),
            stats.clone(),
            Some(bell.clone()),
            async move {
                let _ = stopped.await;
            },
        ));
        // Idle: a notification that appears without a ring waits (the
        // interval is 10 ms, so a polling notifier would have sent it).
        tokio::time::sleep(Duration::from_millis(50)).await;
        outbox.pending.lock().unwrap().push(first.clone());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(sender.total_attempts(), 0, "idle notifier polled");
        // Rung: it looks at once; the first attempt fails, and the retry
        // comes at the interval's pace without another ring.
        bell.notify_one();
        wait_until("delivery after one failure", || outbox.pending_len() == 0).await;
        assert_eq!(sender.total_attempts(), 2);
        stop(stop_tx, task).await;
    }

    /// The core's pace (`NotifyPace`): a full batch goes again at once; a
    /// notification made within the interval of a round that found work
    /// waits for the interval's end, bell or not.
    #[tokio::test(start_paused = true)]
    async fn a_full_batch_goes_again_at_once_and_a_bell_waits_out_the_interval() {
        let cfg = NotifyConfig {
            interval_ms: 1_000,
            batch: 4,
            max_backoff_ms: 2_000,
            ..NotifyConfig::default()
        };
        let outbox = FakeOutbox::with((0..10).map(note).collect(), true);
        let sender = FakeSender::new(outbox.clone(), "none", 0);
        let bell = Arc::new(tokio::sync::Notify::new());
        let (stop_tx, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(
            outbox.clone(),
            sender.clone(),
            cfg,
            Arc::new(NotifyStats::default()),
            Some(bell.clone()),
            async move {
                let _ = stopped.await;
            },
        ));
        let t0 = Instant::now();
        bell.notify_one();
        wait_until("the ten delivered", || outbox.pending_len() == 0).await;
        // Rounds of 4, 4 and 2: the full ones were followed at once.
        assert_eq!(outbox.delivered_calls.load(Ordering::SeqCst), 3);
        assert!(
            t0.elapsed() < Duration::from_millis(100),
            "{:?}",
            t0.elapsed()
        );
        // The last round found work, so the next is one interval after it;
        // a ring now does not bring it forward.
        let late = note(11);
        outbox.pending.lock().unwrap().push(late.clone());
        bell.notify_one();
        wait_until("the late one delivered", || outbox.pending_len() == 0).await;
        let sent = sender.attempts.lock().unwrap()[&late.id][0];
        let waited = sent.duration_since(t0);
        assert!(
            (Duration::from_millis(1_000)..Duration::from_millis(1_100)).contains(&waited),
            "{waited:?}"
        );
        stop(stop_tx, task).await;
    }

    #[tokio::test]
    async fn delivers_everything_retrying_the_failing_one() {
        let notes: Vec<Notification> = (0..10).map(note).collect();
        let failing = notes[2].id.clone();
        let outbox = FakeOutbox::with(notes.clone(), true);
        let sender = FakeSender::new(outbox.clone(), &failing, 2);
        let stats = Arc::new(NotifyStats::default());
        let cfg = fast_config();
        let (s, task) = spawn_run(outbox.clone(), sender.clone(), cfg.clone(), stats.clone());

        wait_until("an empty outbox", || outbox.pending_len() == 0).await;
        // A few more rounds: nothing is sent again once marked.
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop(s, task).await;

        let successes = sender.successes.lock().unwrap().clone();
        for n in &notes {
            assert_eq!(successes.get(&n.id), Some(&1), "{} sent once", n.id);
        }
        let attempts = sender.attempts.lock().unwrap().clone();
        let tries = &attempts[&failing];
        assert_eq!(tries.len(), 3, "two failures, then success");
        // Backoff: interval·2 after the first failure, interval·4 after the second.
        assert!(
            tries[1] - tries[0] >= Duration::from_millis(20),
            "{tries:?}"
        );
        assert!(
            tries[2] - tries[1] >= Duration::from_millis(40),
            "{tries:?}"
        );
        assert_eq!(sender.total_attempts(), notes.len() + 2);
        assert_eq!(sender.sent_after_marked.load(Ordering::SeqCst), 0);

        let marked = outbox.marked.lock().unwrap().clone();
        assert_eq!(marked.len(), notes.len());
        let calls = outbox.delivered_calls.load(Ordering::SeqCst);
        // 10 notifications, batch 4: at least 3 calls, and the retried one
        // was marked on its own later.
        assert!((3..=6).contains(&calls), "{calls} delivered calls");
        assert_eq!(marked.last(), Some(&failing));
        assert_eq!(stats.delivered.load(Ordering::Relaxed), notes.len() as u64);
        assert_eq!(stats.failed.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn not_leader_sends_nothing_until_it_leads() {
        let notes: Vec<Notification> = (0..3).map(note).collect();
        let outbox = FakeOutbox::with(notes.clone(), false);
        let sender = FakeSender::new(outbox.clone(), "", 0);
        let stats = Arc::new(NotifyStats::default());
        let (s, task) = spawn_run(outbox.clone(), sender.clone(), fast_config(), stats.clone());

        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(sender.total_attempts(), 0);
        assert_eq!(outbox.delivered_calls.load(Ordering::SeqCst), 0);
        assert_eq!(outbox.pending_len(), 3);

        // Leadership arrives: the new leader reads the outbox and sends.
        outbox.leader.store(true, Ordering::SeqCst);
        wait_until("an empty outbox", || outbox.pending_len() == 0).await;
        stop(s, task).await;
        assert_eq!(sender.total_attempts(), 3);
        assert_eq!(stats.delivered.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn failed_marking_is_retried_without_sending_again() {
        let notes: Vec<Notification> = (0..3).map(note).collect();
        let outbox = FakeOutbox::with(notes.clone(), true);
        outbox.fail_marks.store(2, Ordering::SeqCst);
        let sender = FakeSender::new(outbox.clone(), "", 0);
        let stats = Arc::new(NotifyStats::default());
        let (s, task) = spawn_run(outbox.clone(), sender.clone(), fast_config(), stats.clone());

        wait_until("an empty outbox", || outbox.pending_len() == 0).await;
        stop(s, task).await;
        assert_eq!(sender.total_attempts(), 3, "each sent once");
        assert_eq!(outbox.delivered_calls.load(Ordering::SeqCst), 3);
        assert_eq!(stats.delivered.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn shutdown_stops_a_round_stuck_in_the_sender() {
        struct Stuck;
        #[tonic::async_trait]
        impl Sender for Stuck {
            async fn send(&self, _: &Notification) -> Result<(), String> {
                futures::future::pending().await
            }
            fn name(&self) -> &'static str {
                "stuck"
            }
        }
        let outbox = FakeOutbox::with(vec![note(1)], true);
        let (s, task) = spawn_run(
            outbox.clone(),
            Arc::new(Stuck),
            fast_config(),
            Arc::new(NotifyStats::default()),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop(s, task).await;
        assert_eq!(outbox.pending_len(), 1);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let i = Duration::from_millis(500);
        let max = Duration::from_secs(60);
        assert_eq!(backoff(i, 1, max), Duration::from_secs(1));
        assert_eq!(backoff(i, 2, max), Duration::from_secs(2));
        assert_eq!(backoff(i, 6, max), Duration::from_secs(32));
        assert_eq!(backoff(i, 7, max), max);
        assert_eq!(backoff(i, 40, max), max);
        assert_eq!(backoff(i, u32::MAX, max), max);
    }

    #[tokio::test]
    async fn backoff_map_is_bounded_and_trims_the_oldest() {
        let cfg = NotifyConfig {
            batch: 2,
            ..fast_config()
        };
        let mut n = Notifier::new(Arc::new(LogSender), &cfg, Arc::new(NotifyStats::default()));
        for i in 0..20 {
            n.failed(&note(i), "boom");
        }
        assert_eq!(n.retries.len(), 8);
        for i in 12..20 {
            assert!(n.retries.contains_key(&note(i).id), "{i} kept");
        }
        // A second failure of a kept one keeps its age.
        n.failed(&note(12), "boom");
        assert_eq!(n.retries[&note(12).id].attempts, 2);
        n.failed(&note(20), "boom");
        assert!(!n.retries.contains_key(&note(12).id));
    }

    #[test]
    fn config_defaults_and_toml() {
        let d = NotifyConfig::default();
        assert_eq!(d.sender, "log");
        assert_eq!(
            (
                d.interval_ms,
                d.batch,
                d.max_backoff_ms,
                d.max_attempts_before_warn
            ),
            (500, 100, 60_000, 10)
        );
        let c: NotifyConfig =
            toml::from_str("sender = \"webhook\"\nurl = \"http://127.0.0.1:8088/sms\"\n").unwrap();
        assert_eq!(c.sender, "webhook");
        assert_eq!(c.batch, 100);
        let back: NotifyConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    fn config_error(c: &NotifyConfig) -> String {
        match sender_from_config(c) {
            Ok(_) => panic!("{c:?} accepted"),
            Err(e) => e,
        }
    }

    #[tokio::test]
    async fn sender_from_config_picks_and_validates() {
        let mut c = NotifyConfig::default();
        assert_eq!(sender_from_config(&c).unwrap().unwrap().name(), "log");
        c.sender = "none".into();
        assert!(sender_from_config(&c).unwrap().is_none());
        c.sender = "webhook".into();
        c.url = "http://127.0.0.1:8088/sms".into();
        assert_eq!(sender_from_config(&c).unwrap().unwrap().name(), "webhook");
        c.url = "https://sms.example.cn/send".into();
        assert!(config_error(&c).contains("https"));
        c.sender = "carrier-pigeon".into();
        assert!(config_error(&c).contains("carrier-pigeon"));
        let c = NotifyConfig {
            batch: 0,
            ..NotifyConfig::default()
        };
        assert!(config_error(&c).contains("batch"));
        let c = NotifyConfig {
            interval_ms: 0,
            ..NotifyConfig::default()
        };
        assert!(config_error(&c).contains("interval"));
    }

    #[test]
    fn webhook_url_validation() {
        assert!(WebhookSender::new("http://127.0.0.1:8088/sms").is_ok());
        assert!(WebhookSender::new("http://gateway.local").is_ok());
        for bad in [
            "",
            "127.0.0.1:8088",
            "/sms",
            "ftp://gateway/sms",
            "https://gateway/sms",
            "http://user:pw@gateway/sms",
            "http:///sms",
            "not a url",
        ] {
            assert!(WebhookSender::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    /// What the one-shot test server saw.
    struct Seen {
        head: String,
        body: Vec<u8>,
    }

    /// A minimal HTTP/1.1 server on 127.0.0.1:0 answering one request with
    /// `status_line` (or never answering when `None`).
    async fn one_shot_server(
        status_line: Option<&'static str>,
    ) -> (String, oneshot::Receiver<Seen>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head, then Content-Length bytes of body (bounded).
            let (head_end, length) = loop {
                let n = sock.read(&mut chunk).await.unwrap();
                assert!(n > 0, "client closed early");
                buf.extend_from_slice(&chunk[..n]);
                assert!(buf.len() < 1 << 20, "request too large");
                if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map(|v| v.trim().parse::<usize>().unwrap())
                        .unwrap_or(0);
                    break (p + 4, length);
                }
            };
            while buf.len() < head_end + length {
                let n = sock.read(&mut chunk).await.unwrap();
                assert!(n > 0, "client closed early");
                buf.extend_from_slice(&chunk[..n]);
            }
            let seen = Seen {
                head: String::from_utf8_lossy(&buf[..head_end]).into_owned(),
                body: buf[head_end..head_end + length].to_vec(),
            };
            let _ = tx.send(seen);
            match status_line {
                Some(status) => {
                    let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\n\r\nok");
                    sock.write_all(answer.as_bytes()).await.unwrap();
                    sock.flush().await.unwrap();
                }
                None => tokio::time::sleep(Duration::from_secs(30)).await,
            }
        });
        (format!("http://{addr}/sms/send"), rx)
    }

    #[tokio::test]
    async fn webhook_posts_json_with_idempotency_key() {
        let (url, seen) = one_shot_server(Some("200 OK")).await;
        let sender = WebhookSender::new(&url).unwrap();
        let n = note(7);
        tokio::time::timeout(TEST_LIMIT, sender.send(&n))
            .await
            .unwrap()
            .unwrap();
        let seen = tokio::time::timeout(TEST_LIMIT, seen)
            .await
            .unwrap()
            .unwrap();
        let head = seen.head.to_ascii_lowercase();
        assert!(head.starts_with("post /sms/send http/1.1\r\n"), "{head}");
        assert!(
            head.contains(&format!(
                "\r\nidempotency-key: {}\r\n",
                n.id.to_ascii_lowercase()
            )),
            "{head}"
        );
        assert!(
            head.contains("\r\ncontent-type: application/json\r\n"),
            "{head}"
        );
        let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "id": n.id,
                "ticket_id": n.ticket_id,
                "phone": "13812345678",
                "text": n.text,
                "created_at_ms": n.created_at_ms,
            })
        );
    }

    #[tokio::test]
    async fn webhook_non_2xx_is_an_error_naming_the_status() {
        let (url, seen) = one_shot_server(Some("500 Internal Server Error")).await;
        let sender = WebhookSender::new(&url).unwrap();
        let err = tokio::time::timeout(TEST_LIMIT, sender.send(&note(1)))
            .await
            .unwrap()
            .unwrap_err();
        assert!(err.contains("500"), "{err}");
        assert!(!err.contains("13812345678"), "{err}");
        tokio::time::timeout(TEST_LIMIT, seen)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn webhook_timeout_and_refused_connection_are_errors() {
        let (url, _seen) = one_shot_server(None).await;
        let sender = WebhookSender::new(&url)
            .unwrap()
            .with_timeout(Duration::from_millis(200));
        let err = tokio::time::timeout(TEST_LIMIT, sender.send(&note(1)))
            .await
            .unwrap()
            .unwrap_err();
        assert!(err.contains("timeout"), "{err}");

        // A port nobody listens on (bound, then released).
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let sender = WebhookSender::new(&format!("http://127.0.0.1:{port}/")).unwrap();
        let err = tokio::time::timeout(TEST_LIMIT, sender.send(&note(1)))
            .await
            .unwrap()
            .unwrap_err();
        assert!(err.contains(&port.to_string()), "{err}");
    }
}
