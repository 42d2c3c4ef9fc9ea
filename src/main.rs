//! `hotline`: the command line of the 12345 hotline federation.
//!
//! Every subcommand with `--json` prints exactly one JSON document on stdout;
//! without it, a readable table. Errors go to stderr with a non-zero exit.

#![recursion_limit = "256"]

mod bench;
mod bench_fed;
mod cli;
mod fault_cli;
mod fed_cli;
mod group_cli;
mod report;
mod sim_cli;
mod ticket_cli;

/// mimalloc instead of glibc's malloc: the raft loop frees what the gRPC
/// workers allocated (requests, tickets) and glibc's per-thread arenas
/// spent about half of the leader loop's time in `_int_malloc`,
/// `unlink_chunk` and `malloc_consolidate` under 128 clients (perf).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
