//! `hotline demo` as an operator runs it: one process, every node of the
//! shipped federation on its own port and data directory, real sockets and
//! TLS. The commands the banner suggests work against it — a 嘉定 → 太仓
//! transfer, the national list, a drop drill on the live cluster — and it
//! stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hotline");
/// Nodes 1–8 listen on 8201–8208 (metrics on 18201–18208).
const PORT_BASE: &str = "8200";

/// The demo process; killed if the test ends early.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `hotline ARGS --config DIR/client.toml --json`, parsed.
fn hotline(dir: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(dir.join("client.toml"))
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hotline {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "hotline {args:?}: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn the_demo_federation_runs_in_one_process() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let mut child = Command::new(BIN)
        .args(["demo", "--port-base", PORT_BASE, "--dir"])
        .arg(&dir)
        .env("HOTLINE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let pid = child.id();
    let demo = Demo(child);
    // The banner: every node and the commands to try. Read on a thread so
    // a demo that never prints fails the test instead of hanging it.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut banner = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no banner within 90 s; so far: {banner:#?}"));
        let done = line.starts_with("Try, in another terminal");
        banner.push(line);
        if done {
            break;
        }
    }
    assert!(
        banner[0].contains("8 nodes") && banner[0].contains("8 region groups"),
        "{banner:#?}"
    );
    for id in 1..=8 {
        assert!(
            banner.iter().any(|l| l.contains(&format!("node-{id} "))),
            "node {id} listed: {banner:#?}"
        );
    }

    // Every node answers `hotline status`, and each of the 8 groups has
    // one leader (elections may still be settling when the banner prints).
    until("a leader in each group", Duration::from_secs(30), || {
        let status = hotline(&dir, &["status"]);
        let rows = status["nodes"].as_array().unwrap();
        let led: std::collections::BTreeSet<u64> = rows
            .iter()
            .filter(|r| r["role"] == "leader")
            .map(|r| r["group"].as_u64().unwrap())
            .collect();
        rows.iter().all(|r| r["role"] != "unreachable") && led.len() == 8
    });

    // A drop drill between 上海's and 江苏's nodes on the live cluster:
    // half the messages are lost, the transfer still arrives exactly once.
    let topology = dir.join("topology.toml");
    let topology = topology.to_str().unwrap();
    hotline(
        &dir,
        &[
            "fault",
            "drop",
            "--between",
            "31",
            "--and",
            "32",
            "--permille",
            "500",
            "--topology",
            topology,
        ],
    );
    let t = hotline(
        &dir,
        &[
            "ticket",
            "accept",
            "--region",
            "310114",
            "--location",
            "320585102",
            "--kind",
            "complaint",
            "--category",
            "环境保护",
            "--text",
            "浏河镇工地夜间施工",
            "--phone",
            "13900000000",
        ],
    );
    let id = t["id"].as_str().expect("a ticket id").to_string();
    let record = || {
        hotline(&dir, &["transfers"])["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["ticket_id"] == id.as_str())
            .cloned()
            .collect::<Vec<_>>()
    };
    until(
        "the transfer is delivered through the drill",
        Duration::from_secs(90),
        || {
            let rs = record();
            rs.len() == 1 && rs[0]["state"] == "delivered"
        },
    );
    // The drill is enforced and counted. The transfer alone may not show
    // it (through a national leader on node 1, outside both sides, none of
    // its calls crosses the cut), but 上海's and 江苏's national replicas
    // exchange a liveness message every tick, half of them dropped.
    until(
        "the drill counts dropped messages",
        Duration::from_secs(10),
        || {
            let shown = hotline(&dir, &["fault", "show"]);
            let dropped: u64 = shown["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|n| n["counters"].as_array().cloned().unwrap_or_default())
                .map(|k| k["dropped"].as_u64().unwrap())
                .sum();
            dropped > 0
        },
    );
    let drills = hotline(&dir, &["status"])["drills"]
        .as_array()
        .unwrap()
        .len();
    assert!(drills > 0, "status shows the drill");
    hotline(&dir, &["fault", "heal"]);
    assert!(
        hotline(&dir, &["status"])["drills"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["rules"].as_array().unwrap().is_empty()),
        "healed"
    );
    // 太仓 owns it once.
    let owned = hotline(&dir, &["ticket", "list", "--region", "320585"]);
    let ids: Vec<&str> = owned["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()], "{owned}");

    // Ctrl-C / SIGTERM stops every node and ends the process cleanly.
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut demo = demo;
    let start = Instant::now();
    let code = loop {
        if let Some(s) = demo.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "demo did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(code.success(), "demo exit: {code:?}");
}

/// A directory that already holds a federation resumes it with its own
/// topology and ports: an option that would start another is refused,
/// naming the option, before anything starts (it was silently ignored).
#[test]
fn a_second_demo_in_the_same_directory_refuses_new_options() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("client.toml"), "").unwrap();
    for (option, value) in [("--port-base", "8300"), ("--topology", "other.toml")] {
        let out = Command::new(BIN)
            .args(["demo", option, value, "--dir"])
            .arg(&dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "{option}: {} already holds a federation",
                dir.display()
            )),
            "{stderr}"
        );
    }
    assert!(!dir.join("data").exists(), "nothing started");
}
