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

fn main() -> std::process::ExitCode {
    cli::main()
}
