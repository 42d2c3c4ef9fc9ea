//! What any command does with its stdout, whatever the command: here
//! `hotline bench topology`, which needs no cluster.

use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_hotline");

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
