//! Tests that need the debug kernel (`make test-debug`): page-allocation
//! fault injection. Ignored in `make test`, run with `--include-ignored`.

use qemu_test::{ensure, Driver, Guest, GuestConfig, Result, MIB};
use std::time::Duration;

/// The next 20 page allocations after the target is set fail (every one, in
/// whichever task): balloon_rs backs off (200 ms doubling to 3.2 s, one
/// failure per attempt), counts the failures, nothing crashes, and the
/// target is reached once the faults stop.
#[test]
#[ignore = "needs the debug kernel (FAIL_PAGE_ALLOC): make test-debug"]
fn balloon_rs_backs_off_under_allocation_faults() -> Result<()> {
    let mut g = Guest::boot(GuestConfig::new("faults-balloon_rs")?)?;
    g.load(Driver::BalloonRs)?;
    let f = "/sys/kernel/debug/fail_page_alloc";
    ensure!(g.run(&format!("test -d {f}"))?.code == 0, "{f} missing: not the debug kernel");
    let size = g.config.mem_mib;
    // Arm the faults and set the target from the same command, so the agent
    // itself does not need a page while they are armed.
    g.sh(&format!(
        "cd {f} && echo 0 > verbose && echo N > ignore-gfp-wait && echo N > ignore-gfp-highmem && \
         echo 0 > min-order && echo 1 > interval && echo 20 > times && echo 100 > probability"
    ))?;
    g.qmp().set_guest_size(size / 2 * MIB)?;
    let (ok, actual) = g.qmp().wait_guest_size(size / 2 * MIB, Duration::from_secs(300))?;
    ensure!(ok, "target not reached after the faults: actual {} MiB", actual / MIB);
    let status = g.sh("cat /sys/kernel/debug/balloon_rs/status")?;
    let failures: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("alloc_failures: ")?.trim().parse().ok())
        .unwrap_or(0);
    ensure!(failures > 0, "no allocation failure was seen:\n{status}");
    g.sh(&format!("echo 0 > {f}/probability"))?;
    g.unload(Driver::BalloonRs)?;
    g.shutdown()
}
