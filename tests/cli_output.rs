//! What any command does with its stdout, whatever the command (here
//! `hotline bench topology`, which needs no cluster), how long a client
//! command waits for nodes that never answer, and what a command refuses
//! before it asks any node.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Cluster};
use serde_json::json;

/// `hotline bench topology` writing into `dir`: one line on stdout.
fn topology_command(dir: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(["bench", "topology", "--nodes", "3", "--groups", "2"])
        .args(["--provinces", "31", "--out"])
        .arg(dir.join("topology.toml"));
    c
}

/// `hotline ticket list --json | head -1` and the like: once the reader has
/// gone, the command ends quietly with 141 (as coreutils do under SIGPIPE),
/// not with a panic and its backtrace on the operator's terminal.
#[test]
fn a_closed_stdout_pipe_ends_the_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    // The pipe's only reader is closed before the command even starts.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = topology_command(dir.path())
        .env_remove("HOTLINE_LOG")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(141),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "nothing on stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The work itself was done before the print.
    assert!(dir.path().join("topology.toml").exists());
}

/// The same command with a reader prints its line and succeeds.
#[test]
fn a_read_stdout_gets_the_whole_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = topology_command(dir.path()).output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with("wrote ") && stdout.ends_with('\n'),
        "{stdout:?}"
    );
}

/// A client config of the demo federation whose eight endpoints are all
/// `address` (a socket that never answers, or nothing), in `dir`.
fn silent_demo_config(dir: &std::path::Path, address: std::net::SocketAddr) -> std::path::PathBuf {
    let topology = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/federation/topologies/demo.toml"
    );
    let mut cfg = format!("topology = {topology:?}\ninsecure = true\n");
    for id in 1..=8 {
        cfg += &format!("[[endpoints]]\nid = {id}\naddress = \"{address}\"\n");
    }
    let path = dir.join("client.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

/// Nodes that take connections and never answer (hung, or behind a
/// firewall that swallows packets): `hotline ticket get` gives up after
/// `--timeout` seconds and says which center it could not reach, instead
/// of retrying for minutes. No cluster: all eight of the demo's endpoints
/// are one listening socket that never accepts.
#[test]
fn a_command_against_nodes_that_never_answer_ends_at_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap();
    let path = silent_demo_config(dir.path(), address);
    let started = std::time::Instant::now();
    let out = Command::new(BIN)
        .args(["ticket", "get", "310114-20261205-000001", "--timeout", "3"])
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "stderr: {stderr}");
    assert!(
        took >= std::time::Duration::from_secs(3) && took < std::time::Duration::from_secs(15),
        "took {took:?}; stderr: {stderr}"
    );
    // 310114's group is nodes 6, 4 and 7: the leader search (2 s) finds
    // none, and the first member is asked, held until the 3 s are up.
    for says in [
        "group 310114, its first-contact center, cannot be reached",
        &format!("node 6 ({address}) of group 310114 did not answer"),
        "(gave up after 1 attempt in 3.",
        "--at ITS_REGION",
    ] {
        assert!(stderr.contains(says), "{says:?} not in: {stderr}");
    }
    drop(silent);
}

/// In a federation, a ticket list without `--region` would be answered by
/// the national group, which holds no tickets: a supervisor's red list
/// came back empty and looked complete. The command refuses before asking
/// any node, naming `--region` and the regions to choose from; a region
/// the federation does not serve is refused the same way.
#[test]
fn ticket_lists_in_a_federation_need_a_region() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens: a command that asked a node would fail otherwise.
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = unused.local_addr().unwrap();
    drop(unused);
    let config = silent_demo_config(dir.path(), address);
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&config)
            .args(["--timeout", "2"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "hotline {args:?} succeeded");
        String::from_utf8(out.stderr).unwrap()
    };
    for args in [
        &["ticket", "worklist", "--unit", "浏河镇城管中队"][..],
        &["ticket", "overdue"],
        &["ticket", "overdue", "--at-risk"],
        &["ticket", "list"],
        // Each group keeps its own outbox: national's is always empty.
        &["ticket", "outbox"],
    ] {
        let err = run(args);
        assert!(
            err.starts_with("error: --region: required: ")
                && err.contains("serves 8 region groups (a federation)")
                && err.contains("320585 太仓市"),
            "hotline {args:?}: {err}"
        );
    }
    let err = run(&["ticket", "overdue", "--region", "999999"]);
    assert!(
        err.starts_with("error: --region: 999999 is not a region of this federation"),
        "{err}"
    );
}

/// `hotline cluster init` on a directory that holds a cluster refuses,
/// naming the directory and what is there, and changes nothing: a new CA
/// and keys would leave nodes restarted from it unable to trust the ones
/// still running. (Nothing listens: no node is started.)
#[test]
fn cluster_init_keeps_an_existing_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let init = || {
        Command::new(BIN)
            .args([
                "cluster",
                "init",
                "--nodes",
                "1",
                "--port-base",
                "9890",
                "--dir",
            ])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    assert!(init().status.success());
    let ca = std::fs::read(dir.path().join("tls/ca.pem")).unwrap();
    let client = std::fs::read(dir.path().join("client.toml")).unwrap();
    let out = init();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "--dir: {} already holds a cluster (client.toml, node-1.toml, tls/)",
            dir.path().display()
        )),
        "{stderr}"
    );
    assert_eq!(std::fs::read(dir.path().join("tls/ca.pem")).unwrap(), ca);
    assert_eq!(
        std::fs::read(dir.path().join("client.toml")).unwrap(),
        client
    );
}

/// The demo federation as 8 node processes (nodes 1–8 on 8901–8908,
/// metrics on 18901–18908), once every group has a leader.
fn demo_federation() -> Cluster {
    demo_federation_at(8900, |_| {})
}

/// The demo federation with nodes 1–8 on `port_base` + 1…8, each config
/// edited by `tune`, once every group has a leader.
fn demo_federation_at(
    port_base: u16,
    tune: impl Fn(&mut hotline_node::config::NodeConfig),
) -> Cluster {
    let mut cl = Cluster::init_topology(hotline_federation::topology::DEMO_TOML, port_base, tune);
    cl.start_all();
    let start = Instant::now();
    loop {
        let v: serde_json::Value = serde_json::from_str(&cl.cli(&["status", "--json"])).unwrap();
        let led: std::collections::BTreeSet<u64> = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["role"] == "leader")
            .map(|r| r["group"].as_u64().unwrap())
            .collect();
        if led.len() == 8 {
            return cl;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "a leader in every group: {v}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// What a supervisor reads in a federation: a report names its region,
/// and a relay group's (a city or province group above the districts,
/// national) says why it is empty and where its region's figures are,
/// rather than a bare 总量:0; without --region the command asks for one.
/// Status, lists and tickets read in Chinese, identifiers beside the
/// words (`--json` keeps the identifiers alone).
#[test]
fn what_a_supervisor_reads_in_a_federation() {
    let cl = demo_federation();
    chinese_for_people(&cl);
    let config = cl.client_config();
    let text = cl.cli(&["report", "--region", "31"]);
    assert!(
        text.starts_with("12345 热线工单考核报告(地区 31 上海市)\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "总量:0 件\n注:31 上海市 这一组只中转(relay)跨地区工单,本身不办理工单,故总量为 0;全地区的统计请用联合查询:hotline query counts --config {} --region 31\n",
            config.display()
        )),
        "{text}"
    );
    // The national group: the query's default region is national.
    let text = cl.cli(&["report", "--region", ""]);
    assert!(
        text.starts_with("12345 热线工单考核报告(地区 全国)\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "hotline query counts --config {}\n",
            config.display()
        )),
        "{text}"
    );
    // A district's group handles its tickets: an empty month is just that.
    let text = cl.cli(&["report", "--region", "320585"]);
    assert!(
        text.starts_with("12345 热线工单考核报告(地区 320585 太仓市)\n"),
        "{text}"
    );
    assert!(!text.contains("注:"), "{text}");
    // The period is this month so far.
    let month = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(8)))
        .strftime("统计时段:%Y-%m-01 00:00 至 ")
        .to_string();
    assert!(text.contains(&month), "{month}: {text}");
    let err = cl.cli_fails(&["report"]);
    assert!(err.contains("--region: required"), "{err}");
    let err = cl.cli_fails(&["report", "--region", "999999"]);
    assert!(
        err.contains("--region: 999999 is not a region of this federation"),
        "{err}"
    );
    let err = cl.cli_fails(&[
        "report",
        "--region",
        "320585",
        "--from",
        "2026-12-06",
        "--to",
        "2026-12-01",
    ]);
    assert!(
        err.contains("--to: 2026-12-01 is not after --from"),
        "{err}"
    );
}

/// The drill's generation on node 1, as `hotline fault show` reports it.
fn drill_generation(cl: &Cluster) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&cl.cli(&["fault", "show", "--json"])).unwrap();
    v["nodes"][0]["generation"].as_u64().unwrap()
}

/// A heal between sets no rule is between fails and sends nothing (it
/// printed `removed: 0`, exited 0 and raised every node's drill
/// generation), saying what is in force; the same cut under another
/// label is refused naming the rule. Node 1 of 3 alone (8921, metrics
/// 18921) answers: drills need no quorum.
#[test]
fn fault_commands_that_would_change_nothing_fail() {
    let mut cl = Cluster::init(3, 8920, |_| {});
    cl.start(1);
    let start = Instant::now();
    while Command::new(BIN)
        .args(["fault", "show", "--config"])
        .arg(cl.client_config())
        .output()
        .map_or(true, |o| !o.status.success())
    {
        assert!(start.elapsed() < Duration::from_secs(20), "node 1 answers");
        std::thread::sleep(Duration::from_millis(100));
    }
    cl.cli(&["fault", "partition", "--between", "1", "--and", "2,3"]);
    let generation = drill_generation(&cl);
    let err = cl.cli_fails(&["fault", "partition", "--between", "3,2", "--and", "1"]);
    assert!(
        err.contains(
            "--between, --and: this partition between these sides is in force already: partition 1 | 2,3 [1 | 2,3]"
        ),
        "{err}"
    );
    let err = cl.cli_fails(&["fault", "heal", "--between", "1", "--and", "2"]);
    assert!(
        err.contains(
            "--between, --and: no rule in force is between exactly 1 and 2 (either way round); in force: partition 1 | 2,3 [1 | 2,3]"
        ),
        "{err}"
    );
    assert_eq!(drill_generation(&cl), generation, "nothing was sent");
    let out = cl.cli(&["fault", "heal", "--between", "2,3", "--and", "1"]);
    assert!(out.contains("removed: 1"), "{out}");
    assert!(drill_generation(&cl) > generation);
}

/// `hotline status`, `ticket list`, `ticket get` and a command's answer in
/// Chinese, with the identifiers beside them; a case about 浏河镇 accepted
/// at 嘉定 and handled at 太仓.
fn chinese_for_people(cl: &Cluster) {
    let text = cl.cli(&["status"]);
    for says in [
        "角色 ROLE",
        "领导者 leader",
        "跟随者 follower",
        "310114 嘉定区",
    ] {
        assert!(text.contains(says), "{says:?} not in: {text}");
    }
    // The national group by name, not as 86.
    let national: Vec<&str> = text.lines().filter(|l| l.contains("全国")).collect();
    assert_eq!(national.len(), 3, "national's three replicas: {text}");
    assert!(national.iter().all(|l| !l.contains(" 86 ")), "{text}");

    let id = cl.cli(&[
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
        "浏河镇工地夜间施工噪声",
        "--phone",
        "13900000000",
    ]);
    let id = id.trim();
    let start = Instant::now();
    while !cl
        .cli(&["ticket", "list", "--region", "320585", "--json"])
        .contains(id)
    {
        assert!(start.elapsed() < Duration::from_secs(20), "{id} at 太仓");
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = cl.cli(&[
        "ticket",
        "dispatch",
        id,
        "--unit",
        "浏河镇城管中队",
        "--at",
        "320585",
    ]);
    assert!(
        out.contains("派单 dispatch → 待签收 awaiting_sign"),
        "{out}"
    );
    let list = cl.cli(&[
        "ticket",
        "worklist",
        "--region",
        "320585",
        "--unit",
        "浏河镇城管中队",
    ]);
    assert!(list.starts_with("工单编号 ID"), "{list}");
    assert!(list.contains("状态 STATUS"), "{list}");
    let row = list.lines().find(|l| l.starts_with(id)).expect(&list);
    for says in [
        "待签收 awaiting_sign",
        "投诉 complaint",
        "正常 on_time",
        "转自 嘉定区",
    ] {
        assert!(row.contains(says), "{says:?} not in: {row}");
    }
    let text = cl.cli(&["ticket", "get", id, "--at", "320585"]);
    for says in [
        "受理中心 region:      310114 嘉定区\n",
        "诉求类型 kind:        投诉 complaint\n",
        "紧急程度 priority:    一般 normal\n",
        "问题地点 location:    320585102 浏河镇\n",
        "跨区域转出 transfer_out",
        "跨区域转入 transfer_in",
        "派单 dispatch",
    ] {
        assert!(text.contains(says), "{says:?} not in: {text}");
    }
    // For machines, the identifiers as before.
    let v: serde_json::Value =
        serde_json::from_str(&cl.cli(&["ticket", "get", id, "--at", "320585", "--json"])).unwrap();
    assert_eq!(
        (&v["kind"], &v["priority"], &v["status"], &v["deadline"]),
        (
            &serde_json::json!("complaint"),
            &serde_json::json!("normal"),
            &serde_json::json!("awaiting_sign"),
            &serde_json::json!("on_time")
        ),
        "{v}"
    );
    assert_eq!(v["events"][1]["kind"], "transfer_out", "{v}");
}

/// What a supervisor reads of every group in a federation (nodes 1–8 on
/// 8931–8938, no metrics listener; notifications are kept in the outbox,
/// no sender). Each group keeps its own outbox: `ticket outbox --region`
/// reads that region's (it read the first node's group, national, where
/// nothing ever waits).
///
/// Each group has its own policy: `policy show` without `--region` lists
/// every group's (it showed the first group's as if it were all).
///
/// `fault heal` with no drill says so and sends nothing (it raised every
/// node's generation).
///
/// The status drill line and the transfer table read in Chinese beside
/// the identifiers.
#[test]
fn a_supervisor_reads_every_group_of_a_federation() {
    let cl = demo_federation_at(8930, |cfg| {
        cfg.metrics_listen = None;
        cfg.notify.sender = "none".into();
    });

    // 嘉定's outbox holds its acceptance SMS; 太仓's does not.
    let accept = |location: &str| {
        let mut args = vec![
            "ticket",
            "accept",
            "--region",
            "310114",
            "--kind",
            "complaint",
            "--category",
            "环境保护",
            "--text",
            "工地夜间施工噪声",
            "--phone",
            "13900000000",
        ];
        if !location.is_empty() {
            args.extend(["--location", location]);
        }
        cl.cli(&args).trim().to_string()
    };
    let id = accept("");
    let outbox = cl.cli(&["ticket", "outbox", "--region", "310114"]);
    let line = outbox.lines().find(|l| l.contains(&id)).expect(&outbox);
    assert!(line.contains("139****0000"), "phone masked: {line}");
    let outbox = cl.cli(&["ticket", "outbox", "--region", "320585", "--json"]);
    assert!(!outbox.contains(&id), "{outbox}");

    // Every group's policy, a line each, by name; a list with --json.
    let text = cl.cli(&["policy", "show"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 9, "a header and 8 groups: {text}");
    assert!(lines[0].starts_with("组 GROUP"), "{text}");
    assert!(lines[0].contains("时限规则 DEADLINES"), "{text}");
    // National first, then each province with the places in it.
    assert!(lines[1].starts_with("86        全国 "), "{text}");
    assert!(lines[2].starts_with("31        上海市 "), "{text}");
    for says in ["86        全国 ", "310114    嘉定区 ", "320585    太仓市 "] {
        let row = lines.iter().find(|l| l.starts_with(says)).expect(&text);
        assert!(
            row.contains("内置 built_in") && row.ends_with("2025–2026"),
            "{row}"
        );
    }
    let v: serde_json::Value =
        serde_json::from_str(&cl.cli(&["policy", "show", "--json"])).unwrap();
    let groups: Vec<u64> = v
        .as_array()
        .expect("a list")
        .iter()
        .map(|p| p["group"].as_u64().unwrap())
        .collect();
    assert_eq!(
        groups,
        [86, 31, 3101, 310101, 310114, 32, 3205, 320585],
        "{v}"
    );
    assert_eq!(v[0]["version"], 0, "{v}");
    // One region: that group's, as the command always printed it.
    let text = cl.cli(&["policy", "show", "--region", "320585"]);
    assert!(
        text.starts_with("policy version 0 (0 = built in)\n"),
        "{text}"
    );

    // No drill: nothing is sent, and the generation stays.
    let generations = |cl: &Cluster| -> Vec<u64> {
        let v: serde_json::Value =
            serde_json::from_str(&cl.cli(&["fault", "show", "--json"])).unwrap();
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["generation"].as_u64().unwrap())
            .collect()
    };
    let before = generations(&cl);
    assert_eq!(before.len(), 8, "{before:?}");
    let out = cl.cli(&["fault", "heal"]);
    assert_eq!(
        out, "没有正在进行的演练（no drill in force）: nothing sent\n",
        "{out}"
    );
    let v: serde_json::Value = serde_json::from_str(&cl.cli(&["fault", "heal", "--json"])).unwrap();
    assert_eq!(
        (&v["sent"], &v["in_force"]),
        (&json!(false), &json!(false)),
        "{v}"
    );
    assert_eq!(generations(&cl), before, "nothing was sent");

    // A cross-province case: the national list's columns in Chinese.
    let moved = accept("320585102");
    let start = Instant::now();
    let text = loop {
        let text = cl.cli(&["transfers"]);
        if text.contains(&moved) {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{moved} at national: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for says in [
        "工单编号 TICKET",
        "转自 FROM",
        "转至 TO",
        "状态 STATE",
        "已历时 AGE",
        "经由 HOPS",
    ] {
        assert!(text.contains(says), "{says:?} not in: {text}");
    }

    // A drill in force, in status's words; --json keeps the identifiers.
    cl.cli(&[
        "fault",
        "delay",
        "--between",
        "7",
        "--and",
        "8",
        "--ms",
        "1",
    ]);
    let text = cl.cli(&["status"]);
    let line = text
        .lines()
        .find(|l| l.starts_with("演练 drill @ 节点 node 7: "))
        .expect(&text);
    assert!(line.contains("延迟 delay 1ms 7 | 8"), "{line}");
    assert!(line.contains("代次 generation "), "{line}");
    let v: serde_json::Value = serde_json::from_str(&cl.cli(&["status", "--json"])).unwrap();
    let drill = v["drills"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == 7)
        .expect("node 7's drill");
    assert_eq!(drill["rules"], json!(["delay 1ms 7 | 8"]), "{v}");
    let out = cl.cli(&["fault", "heal"]);
    assert!(out.contains("removed: 1"), "{out}");
}
