//! `hotline sim run` as operators call it: one JSON document on stdout,
//! the report's two files on disk, and one digest per seed. The command
//! ends with `_exit` after its report (it leaves a run's memory to the OS),
//! so these tests also check that nothing it writes is lost on the way out.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_hotline");

/// Runs two simulated hours of the demo federation with `seed`, reporting
/// into `dir`, and returns the JSON document printed on stdout.
fn sim_run(seed: u64, dir: &Path) -> serde_json::Value {
    let out = Command::new(BIN)
        .args(["sim", "run", "--topology", "demo", "--duration", "2h"])
        .args(["--seed", &seed.to_string(), "--json", "--report"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hotline sim run --seed {seed}: status {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.trim_end().lines().count(),
        1,
        "one JSON document on one line"
    );
    serde_json::from_str(&stdout).expect("stdout is one complete JSON document")
}

#[test]
fn sim_run_prints_its_report_and_one_digest_per_seed() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = sim_run(7, dirs[0].path());
    let b = sim_run(7, dirs[1].path());
    let c = sim_run(8, dirs[2].path());

    let digest = |v: &serde_json::Value| v["digest"].as_str().unwrap().to_string();
    assert_eq!(digest(&a).len(), 64, "a sha-256 digest in hex: {a}");
    assert!(
        a["invariants"]["violation"].is_null(),
        "{}",
        a["invariants"]
    );
    assert!(a["events"].as_u64().unwrap() > 0);
    assert_eq!(digest(&a), digest(&b), "the same seed gives the same run");
    assert_ne!(digest(&a), digest(&c), "another seed gives another run");

    // The report on disk is the one printed, and the page is complete.
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dirs[0].path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(digest(&on_disk), digest(&a));
    let html = std::fs::read_to_string(dirs[0].path().join("report.html")).unwrap();
    assert!(
        html.trim_end().ends_with("</html>"),
        "report.html is cut short"
    );
}
