//! `hotline`: the command line of the 12345 hotline federation.
//!
//! Every subcommand with `--json` prints exactly one JSON document on stdout;
//! without it, a readable table. Errors go to stderr with a non-zero exit.

#![recursion_limit = "256"]

/// Every module's `println!`/`print!` (this textual definition shadows std's
/// in the modules declared below): when stdout is a pipe its reader closed
/// (`hotline ticket list --json | head -1`), the command ends quietly with
/// 141 (128 + SIGPIPE, what a shell shows for coreutils in that case)
/// instead of std's panic and backtrace. Rust ignores SIGPIPE, so the write
/// fails with `BrokenPipe` instead of killing the process; restoring the
/// signal would also let a node's closed socket kill a client command.
macro_rules! println {
    () => {
        $crate::stdout_write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::stdout_write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// See `println!` above.
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::stdout_write(format_args!($($arg)*))
    };
}

mod bench;
mod bench_fed;
mod cli;
mod fault_cli;
mod fed_cli;
mod group_cli;
mod labels;
mod leaders;
mod report;
mod sim_cli;
mod ticket_cli;

/// mimalloc instead of glibc's malloc: the raft loop frees what the gRPC
/// workers allocated (requests, tickets) and glibc's per-thread arenas
/// spent about half of the leader loop's time in `_int_malloc`,
/// `unlink_chunk` and `malloc_consolidate` under 128 clients (perf).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (v2 and v3 alike);
/// `libmimalloc-sys` names the options around it but not this one. The test
/// below checks that the index still reads the option's documented default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// How long a freed page stays mapped before mimalloc returns it to the OS.
/// mimalloc's default is 10 ms in v2, which we build (1 s in v3, measured
/// first): a node frees the buffers of a checkpoint and of its batches and
/// allocates them again a little later, and each page given back came back
/// through a page fault that zeroes it
/// (`clear_page_erms` was ≈ 12 % of the raft loops' samples under 128
/// clients). With 10 s the node's CPU per accept fell 4–15 % (more on nodes
/// holding more tickets) and its throughput rose (BENCHMARKS.md); memory
/// unused for longer than that is still given back.
const PURGE_DELAY_MS: std::ffi::c_long = 10_000;

/// Sets mimalloc's purge delay (milliseconds; −1: never give freed pages
/// back) unless `MIMALLOC_PURGE_DELAY` sets it.
fn set_purge_delay(ms: std::ffi::c_long) {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a process-wide tuning value; mimalloc reads options
        // with atomic loads and allows changing this one at any time.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms) };
    }
}

/// `mi_option_allow_thp` in mimalloc v2's `mi_option_e` (the last option;
/// v3 numbers it differently). The test below checks the index reads the
/// option's default.
const MI_OPTION_ALLOW_THP: libmimalloc_sys::mi_option_t = 37;

/// Allows or refuses transparent huge pages for this process unless
/// `MIMALLOC_ALLOW_THP` says otherwise. mimalloc asks for huge pages on its
/// segments (`madvise(MADV_HUGEPAGE)`), so the first touch of any 2 MiB of a
/// segment faults in and zeroes all of it. A node grows by its batches and
/// tickets a little at a time: under 128 clients `clear_page_erms` under
/// `do_huge_pmd_anonymous_page` was 15 % of the machine's samples, all in
/// the raft loops, and with huge pages off the nodes' CPU per accept fell
/// 14–23 % and throughput rose 21–35 % (BENCHMARKS.md, 2026-12-01
/// afternoon). A simulation fills every page it maps and keeps it: it keeps
/// huge pages (`sim_cli`; the national day took 610 s without them against
/// 487 s with them).
fn set_thp(allow: bool) {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    // SAFETY: sets a process-wide tuning value read with atomic loads; new
    // segments are then mapped with or without `MADV_HUGEPAGE`.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ALLOW_THP, std::ffi::c_long::from(allow)) };
    // Segments mapped before (and any other `MADV_HUGEPAGE` mapping) keep
    // their advice; the process-wide switch covers them too, and the
    // kernel's own "always" mode. An error (a kernel without it) leaves
    // huge pages as they were, which is only slower.
    // SAFETY: prctl with integer arguments only.
    let _ = unsafe {
        libc::prctl(
            libc::PR_SET_THP_DISABLE,
            libc::c_ulong::from(!allow),
            0,
            0,
            0,
        )
    };
}

/// The default for every command; `hotline sim` keeps everything instead.
fn tune_allocator() {
    set_purge_delay(PURGE_DELAY_MS);
    set_thp(false);
}

/// Writes to stdout for `println!`/`print!`: a closed pipe ends the process
/// (exit code 141); any other failure panics, as std's macros do.
fn stdout_write(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    match std::io::stdout().lock().write_fmt(args) {
        Ok(()) => {}
        // Nothing printed later could arrive, and a command that prints has
        // nothing else to finish.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit_now(141),
        Err(e) => panic!("failed printing to stdout: {e}"),
    }
}

/// Ends the process at once, once stdout is flushed (a failed flush, as to a
/// closed pipe, is ignored). `hotline sim run` ends this way because a run's
/// state stays allocated to the end (`SimConfig::free_at_end`) and a normal
/// exit would still have mimalloc collect every heap (its `mi_process_done`):
/// ≈ 6 s after a national day, measuring nothing.
fn exit_now(code: i32) -> ! {
    use std::io::Write;
    // stdout is buffered (stderr is not); callers' files are closed.
    let _ = std::io::stdout().flush();
    // SAFETY: `_exit` ends the process without running atexit handlers or
    // destructors; nothing of ours waits for them (files are closed,
    // stdout is flushed above).
    unsafe { libc::_exit(code) }
}

fn main() -> std::process::ExitCode {
    tune_allocator();
    cli::main()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_we_mean() {
        // SAFETY: reads a tuning value.
        let get = |o| unsafe { libmimalloc_sys::mi_option_get(o) };
        // purge_delay defaults to 1000 (ms) in mimalloc v3's options.c and
        // 10 in v2's; the options around it default to 0 or 1.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert!([10, 1000].contains(&get(MI_OPTION_PURGE_DELAY)));
            // Not all of `tune_allocator`: the test below owns the THP
            // settings (`cargo test` runs both in one process).
            set_purge_delay(PURGE_DELAY_MS);
            assert_eq!(get(MI_OPTION_PURGE_DELAY), PURGE_DELAY_MS);
        }
    }

    #[test]
    fn huge_pages_are_off_after_tuning_and_back_on_for_the_simulator() {
        if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
            return;
        }
        // SAFETY: reads a tuning value; prctl with integer arguments only.
        let get = || unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_ALLOW_THP) };
        let thp_disabled = || unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        // Untuned (no test but this one touches THP), the index must read
        // allow_thp's default, 1 on Linux: generic_collect before it reads
        // 10,000, the options that default to 0 read 0, and an index past
        // the last option reads 0.
        assert_eq!(get(), 1);
        tune_allocator();
        assert_eq!(get(), 0);
        assert_eq!(thp_disabled(), 1);
        // What `hotline sim` asks for.
        set_thp(true);
        assert_eq!(get(), 1);
        assert_eq!(thp_disabled(), 0);
    }
}
