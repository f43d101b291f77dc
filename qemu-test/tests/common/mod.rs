//! Helpers shared by the guest test files.

#![allow(dead_code)] // each test file uses its own subset

#[allow(unused_imports)] // each test file uses its own subset
pub use qemu_test::steps::{
    baseline, resize, rss_drop_after_free, start_workload, stop_workload, SETTLE,
};
use qemu_test::{ensure, Driver, Guest, Result};
use std::time::{Duration, Instant};

/// Checks that every page came back: MemTotal exactly `baseline.0` KiB, and
/// MemFree within `slack_mib` of `baseline.1` KiB once the per-cpu lists
/// drained (freed pages sit there for seconds, TOOLCHAIN.md; up to 40 s).
pub fn memory_back(g: &mut Guest, baseline: (u64, u64), slack_mib: u64, when: &str) -> Result<()> {
    let (total0, free0) = baseline;
    let total = g.meminfo()?.kib("MemTotal")?;
    ensure!(
        total == total0,
        "MemTotal {total} KiB {when}, baseline {total0} KiB (must be exact)"
    );
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let free = g.meminfo()?.kib("MemFree")?;
        if free + slack_mib * 1024 >= free0 {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "MemFree {free} KiB {when}, baseline {free0} KiB (tolerance {slack_mib} MiB)"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A deterministic pseudo-random sequence for the target storm.
pub fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Checks that the guest answers a command within 10 s.
pub fn responsive(g: &mut Guest, when: &str) -> Result<()> {
    let t = Instant::now();
    let out = g.run_timeout("cat /proc/loadavg", Duration::from_secs(10))?;
    ensure!(out.code == 0, "guest command failed {when}: {}", out.text);
    tracing::debug!(when, ms = t.elapsed().as_millis() as u64, "guest answered");
    Ok(())
}

/// balloon_rs held at its floor: its debugfs counts floor holds, and
/// MemAvailable is not below the floor. The floor is checked before each
/// batch; pages parked on per-cpu lists and the guest's own activity since
/// then move MemAvailable by a few MiB, hence 4 MiB of tolerance.
/// Shrinks the guest's per-cpu page lists to a few pages
/// (`vm.percpu_pagelist_high_fraction`): free pages parked there are not
/// counted in MemAvailable, which then swings by several MiB on the debug
/// kernel — more than a floor test's tolerance. With short lists
/// MemAvailable is what the driver's floor is measured against.
pub fn short_pcp_lists(g: &mut Guest) -> Result<()> {
    g.sh("echo 100000 > /proc/sys/vm/percpu_pagelist_high_fraction")?;
    Ok(())
}

pub fn held_at_floor(g: &mut Guest) -> Result<()> {
    let d = g.balloon_rs_status()?;
    ensure!(
        d.get("floor_holds")? > 0,
        "never held at the floor:\n{}",
        d.text
    );
    let avail = g.meminfo()?.mib("MemAvailable")?;
    ensure!(
        avail + 4 >= d.get("floor_mib")?,
        "MemAvailable {avail} MiB below the {} MiB floor",
        d.get("floor_mib")?
    );
    Ok(())
}

/// If the kernel has kmemleak (the debug kernel), scans and fails on any
/// unreferenced object allocated by a balloon driver. Returns whether a scan
/// ran.
pub fn kmemleak_clean(g: &mut Guest, driver: Driver) -> Result<bool> {
    let probe = g.run("test -w /sys/kernel/debug/kmemleak")?;
    if probe.code != 0 {
        return Ok(false);
    }
    // Two scans: kmemleak reports an object only when it was unreferenced
    // in two consecutive scans.
    g.sh(
        "echo scan > /sys/kernel/debug/kmemleak; sleep 6; echo scan > /sys/kernel/debug/kmemleak",
    )?;
    let report = g.sh("cat /sys/kernel/debug/kmemleak")?;
    let ours: Vec<&str> = report
        .split("unreferenced object")
        .filter(|r| r.contains(driver.module_name()) || r.contains("balloon"))
        .collect();
    ensure!(
        ours.is_empty(),
        "kmemleak after rmmod {}:\n{}",
        driver.module_name(),
        ours.join("\n---\n")
    );
    Ok(true)
}

/// Sets balloon_rs's fault-injection point `name` (`fail_request`,
/// `fail_alloc`, `fail_probe` in `/sys/kernel/debug/balloon_rs/`): fail
/// `probability` % of the calls after the first `space` − 1, at most
/// `times` times (-1: no limit), each logged in one line (verbose 1, no
/// stack dump). Fails if the kernel has no fault injection.
pub fn inject(g: &mut Guest, name: &str, probability: u32, times: i64, space: u64) -> Result<()> {
    let f = format!("/sys/kernel/debug/balloon_rs/{name}");
    ensure!(
        g.run(&format!("test -d {f}"))?.code == 0,
        "{f} missing: this test needs the debug kernel's fault injection (make kernel-debug)"
    );
    g.sh(&format!(
        "echo 1 > {f}/verbose; echo 1 > {f}/interval; echo {space} > {f}/space; \
         echo {times} > {f}/times; echo {probability} > {f}/probability"
    ))?;
    Ok(())
}
