//! `balloon-guest`: the guest side of the balloon_rs QEMU harness.
//!
//! A static binary in the test initramfs with two jobs:
//! - `agent TTY`: serve the host's commands on a serial port (see `agent`);
//! - `workload ...`: allocate, touch, hold and free memory with a chosen
//!   content, so host-side sharing and compression tiers get real data;
//! - `mechanisms ...`: run balloon-host's cgroup v2, zswap and swap-file
//!   code (the `host-mechanisms` crate) against a workload, in a guest whose
//!   kernel has them, and print what the kernel reported as JSON.
//!
//! Its crates are pure Rust, so it links statically.

mod agent;
mod mechanisms;
mod workload;

use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!(
        "usage:\n  balloon-guest agent TTY\n  balloon-guest workload --mib N [--content zeros|dup|text|random] \
         [--hold SECS|stdin] [--verify] [--seed N] [--passes N] [--free-one-in N [--hole-kib K]]\n  balloon-guest mechanisms {}\n\nworkload: --hold 0 holds until killed (default 0), --hold stdin until standard input ends; --free-one-in N gives one hole of K KiB (default 4) in N back after the fill.",
        mechanisms::USAGE
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("agent") => match args.get(1) {
            Some(tty) => match agent::serve(tty) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("balloon-guest agent: {e}");
                    ExitCode::FAILURE
                }
            },
            None => usage(),
        },
        Some("workload") => subcommand(
            "workload",
            workload::Options::parse(&args[1..]),
            workload::run,
        ),
        Some("mechanisms") => subcommand(
            "mechanisms",
            mechanisms::Options::parse(&args[1..]),
            mechanisms::run,
        ),
        _ => usage(),
    }
}

/// Runs subcommand `name` with its parsed options; a parse error prints
/// the usage.
fn subcommand<O>(
    name: &str,
    opts: Result<O, String>,
    run: impl FnOnce(&O) -> Result<(), String>,
) -> ExitCode {
    match opts.map(|o| run(&o)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("balloon-guest {name}: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("balloon-guest {name}: {e}");
            usage()
        }
    }
}
