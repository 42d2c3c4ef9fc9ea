//! A cluster of real `hotline node` processes on loopback with mutual TLS,
//! for end-to-end tests.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hotline_node::client::Client;
use hotline_node::config::{ClientConfig, NodeConfig};
use hotline_proto::v1::{AcceptRequest, Kind};

pub const BIN: &str = env!("CARGO_BIN_EXE_hotline");

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Option<Child>>,
    pub n: u64,
}

impl Cluster {
    /// `hotline cluster init`, then `tune` may edit each node's config.
    pub fn init(n: u64, port_base: u16, tune: impl Fn(&mut NodeConfig)) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new(BIN)
            .args(["cluster", "init", "--dir"])
            .arg(dir.path())
            .args([
                "--nodes",
                &n.to_string(),
                "--port-base",
                &port_base.to_string(),
            ])
            .status()
            .unwrap();
        assert!(st.success());
        let c = Cluster {
            dir,
            nodes: (0..n).map(|_| None).collect(),
            n,
        };
        for id in 1..=n {
            let p = c.node_config(id);
            let mut cfg = NodeConfig::load(&p).unwrap();
            tune(&mut cfg);
            cfg.write(&p).unwrap();
        }
        c
    }

    /// `hotline cluster init --topology` of a federation (nodes listen on
    /// `port_base + id`), then `tune` may edit each node's config.
    pub fn init_topology(toml: &str, port_base: u16, tune: impl Fn(&mut NodeConfig)) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let topo = dir.path().join("given-topology.toml");
        std::fs::write(&topo, toml).unwrap();
        let st = Command::new(BIN)
            .args(["cluster", "init", "--dir"])
            .arg(dir.path())
            .arg("--topology")
            .arg(&topo)
            .args(["--port-base", &port_base.to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let t = hotline_federation::topology::Topology::parse(toml).unwrap();
        let n = t.nodes.iter().map(|n| n.id).max().unwrap_or(0);
        let c = Cluster {
            dir,
            nodes: (0..n).map(|_| None).collect(),
            n,
        };
        for node in &t.nodes {
            let p = c.node_config(node.id);
            let mut cfg = NodeConfig::load(&p).unwrap();
            tune(&mut cfg);
            cfg.write(&p).unwrap();
        }
        c
    }

    /// `GET /metrics` of node `id` over a plain socket: the body.
    pub fn metrics(&self, id: u64) -> String {
        use std::io::{Read, Write};
        let cfg = NodeConfig::load(&self.node_config(id)).unwrap();
        let addr = cfg
            .metrics_listen
            .expect("cluster init sets metrics_listen");
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        out.split_once("\r\n\r\n").unwrap().1.to_string()
    }

    /// Runs `hotline ARGS… --config client.toml`.
    fn run_cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(self.client_config())
            .output()
            .unwrap()
    }

    /// Runs `hotline ARGS… --config client.toml` and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self.run_cli(args);
        assert!(
            out.status.success(),
            "hotline {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs the CLI expecting it to fail; returns what it said on stderr.
    pub fn cli_fails(&self, args: &[&str]) -> String {
        let out = self.run_cli(args);
        assert!(
            !out.status.success(),
            "hotline {args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    pub fn node_config(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node-{id}.toml"))
    }

    /// A channel to `addr` (node `to`'s server name) that presents node
    /// `me`'s certificate: for tests of what one node may ask of another.
    pub fn channel_as(&self, me: u64, to: u64, addr: &str) -> tonic::transport::Channel {
        use hotline_node::{tls, transport};
        let files = NodeConfig::load(&self.node_config(me))
            .unwrap()
            .tls
            .unwrap();
        let tls = tls::client_config(&files, &tls::node_name(to)).unwrap();
        transport::endpoint(format!("https://{addr}"), Some(tls))
            .unwrap()
            .connect_lazy()
    }

    pub fn client_config(&self) -> PathBuf {
        self.dir.path().join("client.toml")
    }

    pub fn data_dir(&self, id: u64) -> PathBuf {
        NodeConfig::load(&self.node_config(id)).unwrap().data_dir
    }

    pub fn start(&mut self, id: u64) {
        let log = std::fs::File::create(self.dir.path().join(format!("node-{id}.log"))).unwrap();
        let child = Command::new(BIN)
            .args(["node", "--config"])
            .arg(self.node_config(id))
            .env(
                "HOTLINE_LOG",
                std::env::var("HOTLINE_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.nodes[(id - 1) as usize] = Some(child);
    }

    pub fn start_all(&mut self) {
        for id in 1..=self.n {
            self.start(id);
        }
    }

    /// kill -9.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.nodes[(id - 1) as usize].take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self, id: u64) {
        if let Some(mut c) = self.nodes[(id - 1) as usize].take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let st = c.wait().unwrap();
            assert!(st.success(), "node {id} exited with {st}");
        }
    }

    pub fn client(&self) -> Client {
        Client::new(&ClientConfig::load(&self.client_config()).unwrap(), 2).unwrap()
    }

    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node-{id}.log"))).unwrap_or_default()
    }
}

/// Lines of each node's log printed when a test fails.
const FAILED_LOG_TAIL_LINES: usize = 40;

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in 1..=self.n {
            self.kill(id);
        }
        // A failing test keeps its directory (configs, data, whole logs)
        // and prints each node's last log lines: CI shows only the test's
        // output, and a rare failure must be readable there.
        // `HOTLINE_TEST_KEEP=1` keeps it for a passing test too.
        if std::thread::panicking() || std::env::var_os("HOTLINE_TEST_KEEP").is_some() {
            self.dir.disable_cleanup(true);
            eprintln!("cluster directory kept: {}", self.dir.path().display());
            for id in 1..=self.n {
                let log = self.log(id);
                let lines: Vec<&str> = log.lines().collect();
                let from = lines.len().saturating_sub(FAILED_LOG_TAIL_LINES);
                eprintln!(
                    "--- node {id}: last {} of {} log lines",
                    lines.len() - from,
                    lines.len()
                );
                for l in &lines[from..] {
                    eprintln!("{l}");
                }
            }
        }
    }
}

pub fn request(text: &str) -> AcceptRequest {
    AcceptRequest {
        region: "310114".into(),
        kind: Kind::Complaint as i32,
        category: "城乡建设".into(),
        text: text.into(),
        phone: "13800000000".into(),
        ..Default::default()
    }
}

/// A webhook receiver on loopback: records every POST's Idempotency-Key and
/// body, answers 200 — a stand-in for an SMS gateway, over a real socket.
pub struct Webhook {
    pub addr: std::net::SocketAddr,
    pub received: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

impl Webhook {
    pub async fn start() -> Webhook {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let rec = received.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let rec = rec.clone();
                tokio::spawn(async move {
                    let mut buf: Vec<u8> = Vec::new();
                    let mut chunk = [0u8; 8192];
                    loop {
                        // One request: headers, then Content-Length bytes.
                        let head_end = loop {
                            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break p + 4;
                            }
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            assert!(buf.len() < 1 << 20, "request too large");
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                        let header = |name: &str| {
                            head.lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.trim()
                                        .eq_ignore_ascii_case(name)
                                        .then(|| v.trim().to_string())
                                })
                                .unwrap_or_default()
                        };
                        let len: usize = header("content-length").parse().unwrap_or(0);
                        while buf.len() < head_end + len {
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let body =
                            String::from_utf8_lossy(&buf[head_end..head_end + len]).to_string();
                        rec.lock().unwrap().push((header("idempotency-key"), body));
                        buf.drain(..head_end + len);
                        if sock
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        Webhook { addr, received }
    }

    pub fn url(&self) -> String {
        format!("http://{}/sms", self.addr)
    }

    /// Distinct notification ids received.
    pub fn ids(&self) -> std::collections::BTreeSet<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// Polls until a leader is known, returning its node id.
pub async fn wait_leader(c: &Client, within: Duration) -> Option<u64> {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Some(i) = c.find_leader().await {
            return Some(c.nodes[i].id);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Polls node `id` until its applied index reaches `index`.
pub async fn wait_applied(c: &Client, id: u64, index: u64, within: Duration) -> bool {
    let start = Instant::now();
    let i = c.nodes.iter().position(|n| n.id == id).unwrap();
    while start.elapsed() < within {
        if let Ok(s) = c.status_of(i).await
            && s.groups.iter().all(|g| g.applied_index >= index)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Polls `f` every 100 ms until it holds; fails naming `what` after
/// `within`. Prints how long it waited (nextest shows it with a failure),
/// so a slow phase is visible.
pub async fn until<F, Fut>(what: &str, within: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("waited {:?} for {what}", start.elapsed());
}

/// The position of node `node` in the client's node list.
pub fn index_of(c: &Client, node: u64) -> usize {
    c.nodes.iter().position(|n| n.id == node).unwrap()
}

/// Group `group` as node `node` reports it (`None`: not hosted there, or
/// the node does not answer).
pub async fn group_on(c: &Client, group: u64, node: u64) -> Option<hotline_proto::v1::GroupStatus> {
    let s = c.status_of(index_of(c, node)).await.ok()?;
    s.groups.into_iter().find(|g| g.group_id == group)
}

/// The leader of group `group` and the group as it reports it.
pub async fn leader_of_group(
    c: &Client,
    group: u64,
) -> Option<(u64, hotline_proto::v1::GroupStatus)> {
    let i = c.find_leader_of(Some(group)).await?;
    let id = c.nodes[i].id;
    group_on(c, group, id).await.map(|g| (id, g))
}

/// Sends node `to` one raft heartbeat of group `group` at `term`, as node
/// `from` on a stream opened with `from`'s certificate: for tests of what a
/// node takes from whom. The stream's answer.
pub async fn heartbeat_as(
    cl: &Cluster,
    c: &Client,
    (from, to): (u64, u64),
    group: u64,
    term: u64,
) -> Result<(), tonic::Status> {
    use hotline_proto::v1::raft_client::RaftClient;
    use hotline_proto::v1::{RaftBatch, RaftEnvelope};
    let mut m = raft::eraftpb::Message::default();
    m.set_msg_type(raft::eraftpb::MessageType::MsgHeartbeat);
    (m.from, m.to, m.term) = (from, to, term);
    let batch = RaftBatch {
        from_node: from,
        leadership_epoch: 1,
        envelopes: vec![RaftEnvelope {
            group_id: group,
            message: protobuf::Message::write_to_bytes(&m).unwrap().into(),
            ..Default::default()
        }],
    };
    let addr = &c.nodes[index_of(c, to)].address;
    RaftClient::new(cl.channel_as(from, to, addr))
        .stream(tokio_stream::iter(vec![batch]))
        .await
        .map(|_| ())
}

/// Waits until node `node`'s replica of `group` has applied all that the
/// group's leader has committed, and `also` holds of it; fails naming
/// `what` after `within`.
pub async fn caught_up(
    c: &Client,
    group: u64,
    node: u64,
    what: &str,
    within: Duration,
    also: impl Fn(&hotline_proto::v1::GroupStatus) -> bool,
) {
    until(what, within, || async {
        let Some((_, l)) = leader_of_group(c, group).await else {
            return false;
        };
        group_on(c, group, node)
            .await
            .is_some_and(|g| g.applied_index >= l.commit_index && also(&g))
    })
    .await;
}

/// Waits until node `node` answers a status request again (after a
/// start).
pub async fn answers(c: &Client, node: u64, within: Duration) {
    until(&format!("node {node} answers"), within, || async {
        c.status_of(index_of(c, node)).await.is_ok()
    })
    .await;
}

/// A JSON list of node ids, sorted (empty if not a list).
pub fn ids(v: &serde_json::Value) -> Vec<u64> {
    let mut v: Vec<u64> = v
        .as_array()
        .map(|a| a.iter().map(|x| x.as_u64().unwrap()).collect())
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// A log without its colour codes.
pub fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}
