//! Reliability under abuse: rmmod in the middle of a large inflation, device
//! unplug with a full balloon, 1000 target changes in a row, inflation while
//! a workload fills the guest, and (on the debug kernel) a kmemleak scan
//! after rmmod. Every test ends with `Guest::shutdown`, which fails on any
//! kernel warning, KASAN or lockdep report in the console log.

use qemu_test::{ensure, Driver, Guest, GuestConfig, Result, MIB};
use std::time::{Duration, Instant};

mod common;
use common::{
    baseline, held_at_floor, inject, kmemleak_clean, memory_back, resize, responsive,
    short_pcp_lists, start_workload, xorshift, SETTLE,
};

qemu_test::both_drivers!(
    rmmod_during_a_large_inflation_returns_every_page,
    device_del_with_a_full_balloon_returns_every_page,
    a_thousand_targets_in_a_row_then_the_last_exactly,
);

fn config(test: &str, driver: Driver) -> Result<GuestConfig> {
    GuestConfig::new(&format!("{test}-{driver}"))
}

/// rmmod while the driver is inflating 3/4 of the guest: the module goes,
/// every page comes back (MemTotal exact, MemFree within 8 MiB), QEMU sees
/// the balloon empty, and a reload inflates normally.
fn rmmod_during_a_large_inflation_returns_every_page(driver: Driver) -> Result<()> {
    let mut g = Guest::boot(config("rmmod-mid", driver)?)?;
    let size = g.config.mem_mib;
    g.load(driver)?;
    let base = baseline(&mut g)?;
    let target = size / 4;
    g.qmp().set_guest_size(target * MIB)?;
    // rmmod as soon as QEMU sees the balloon grow: inflation has started and
    // is still far from its target (more than 64 MiB to go, at least 40 ms
    // at the fastest rate measured here, against the few milliseconds the
    // agent takes to start rmmod).
    let deadline = Instant::now() + Duration::from_secs(30);
    let before = loop {
        let actual = g.qmp().guest_size()? / MIB;
        if actual < size {
            break actual;
        }
        ensure!(Instant::now() < deadline, "inflation never started");
        std::thread::sleep(Duration::from_millis(5));
    };
    ensure!(
        before > target + 64,
        "not mid-inflation: actual was already {before} MiB (target {target}) when rmmod started"
    );
    g.unload(driver)?;
    let after_rmmod = g.qmp().guest_size()? / MIB;
    tracing::info!(
        before,
        after_rmmod,
        "actual when rmmod started and returned"
    );
    memory_back(&mut g, base, 8, "after rmmod mid-inflation")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while g.qmp().guest_size()? != size * MIB {
        ensure!(
            Instant::now() < deadline,
            "QEMU still sees a balloon after rmmod"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    g.load(driver)?;
    resize(&mut g, size / 2)?;
    g.unload(driver)?;
    memory_back(&mut g, base, 8, "after the reload and rmmod")?;
    kmemleak_clean(&mut g, driver)?;
    g.shutdown()
}

/// QMP `device_del` of the balloon device while it holds half the guest:
/// the guest ejects it (ACPI PCI hotplug), the driver's remove gives every
/// page back, QEMU drops the device, and the module unloads.
fn device_del_with_a_full_balloon_returns_every_page(driver: Driver) -> Result<()> {
    let mut g = Guest::boot(config("unplug", driver)?)?;
    let size = g.config.mem_mib;
    g.load(driver)?;
    let base = baseline(&mut g)?;
    resize(&mut g, size / 2)?;
    g.qmp().execute(&qapi::qmp::device_del {
        id: qemu_test::guest::BALLOON_ID.into(),
    })?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Once the device is gone, QEMU answers "No balloon device".
        if g.qmp().guest_size().is_err() {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the guest never ejected the balloon device"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    memory_back(&mut g, base, 8, "after device_del")?;
    let bound = g.bound_driver()?;
    ensure!(
        bound.is_none(),
        "a driver still bound after unplug: {bound:?}"
    );
    g.unload(driver)?;
    kmemleak_clean(&mut g, driver)?;
    responsive(&mut g, "after unplug and rmmod")?;
    g.shutdown()
}

/// 1000 random reachable targets (between half and all of the guest) in a
/// row, without waiting, then one final target: reached exactly, MemTotal
/// down by it, nothing OOM-killed.
fn a_thousand_targets_in_a_row_then_the_last_exactly(driver: Driver) -> Result<()> {
    let mut g = Guest::boot(config("storm", driver)?)?;
    let size = g.config.mem_mib;
    g.load(driver)?;
    let (total0, _) = baseline(&mut g)?;
    let mut seed = 0x1000_u64 + size;
    for i in 0..1000 {
        let mib = size / 2 + xorshift(&mut seed) % (size / 2 + 1);
        g.qmp().set_guest_size(mib * MIB)?;
        if i % 250 == 0 {
            responsive(&mut g, &format!("after {i} targets"))?;
        }
    }
    let last = size * 5 / 8;
    resize(&mut g, last)?;
    let total = g.meminfo()?.kib("MemTotal")?;
    let dropped = (total0 - total) / 1024;
    let want = size - last;
    ensure!(
        dropped.abs_diff(want) <= 1,
        "MemTotal dropped {dropped} MiB for a {want} MiB balloon (tolerance 1 MiB)"
    );
    ensure!(
        g.vmstat()?.get("oom_kill")? == 0,
        "OOM kills during the storm"
    );
    g.unload(driver)?;
    g.shutdown()
}

/// Without deflate-on-oom: a workload fills 60 % of what the guest has
/// available, then the host asks for nearly everything. balloon_rs takes
/// what is free down to its floor and stops there; nothing is OOM-killed,
/// the workload's memory verifies, and a final reachable target is met
/// exactly.
#[test]
fn balloon_rs_inflation_under_a_filling_workload_holds_at_the_floor() -> Result<()> {
    let driver = Driver::BalloonRs;
    let mut g = Guest::boot(config("fill", driver)?)?;
    let size = g.config.mem_mib;
    short_pcp_lists(&mut g)?;
    g.load(driver)?;
    let mib = g.meminfo()?.mib("MemAvailable")? * 6 / 10;
    start_workload(&mut g, mib, "--content random --hold 20 --verify")?;
    let deadline = Instant::now() + SETTLE;
    g.qmp().set_guest_size(32 * MIB)?;
    std::thread::sleep(Duration::from_secs(8));
    held_at_floor(&mut g)?;
    responsive(&mut g, "at the floor")?;
    while !g.sh("cat /tmp/w.log")?.contains("freed") {
        ensure!(Instant::now() < deadline, "the workload never finished");
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = g.sh("cat /tmp/w.log")?;
    ensure!(
        log.contains("verified"),
        "the workload's memory changed: {log}"
    );
    ensure!(
        g.vmstat()?.get("oom_kill")? == 0,
        "OOM kill with the balloon at its floor"
    );
    resize(&mut g, size * 3 / 4)?;
    g.unload(driver)?;
    g.shutdown()
}

/// Boots a balloon_rs guest whose driver fails `probability` % of its own
/// page allocations (its `fail_alloc` fault-injection point, debug kernel),
/// then asks for half the guest.
fn guest_with_failing_driver_allocations(test: &str, probability: u32) -> Result<Guest> {
    let driver = Driver::BalloonRs;
    let mut g = Guest::boot(config(test, driver)?)?;
    let size = g.config.mem_mib;
    g.load(driver)?;
    inject(&mut g, "fail_alloc", probability, -1, 0)?;
    g.qmp().set_guest_size(size / 2 * MIB)?;
    Ok(g)
}

/// Faults stop: the target is reached, nothing was OOM-killed.
fn faults_stop_then_target_reached(mut g: Guest) -> Result<()> {
    let size = g.config.mem_mib;
    inject(&mut g, "fail_alloc", 0, -1, 0)?;
    resize(&mut g, size / 2)?;
    ensure!(g.vmstat()?.get("oom_kill")? == 0, "OOM kills under faults");
    g.unload(Driver::BalloonRs)?;
    g.shutdown()
}

/// Every allocation of the size work fails: balloon_rs counts the
/// failures and backs off (200 ms doubling to 3.2 s: a few dozen retries in
/// 15 s, not a busy loop), the guest answers, and once the faults stop the
/// target is reached.
#[test]
#[ignore = "needs the debug kernel's fault injection: run by make test-reliability"]
fn balloon_rs_backs_off_under_page_allocation_faults() -> Result<()> {
    let mut g = guest_with_failing_driver_allocations("faults", 100)?;
    std::thread::sleep(Duration::from_secs(15));
    responsive(&mut g, "under allocation faults")?;
    let d = g.balloon_rs_status()?;
    let failures = d.get("alloc_failures")?;
    ensure!(failures > 0, "no allocation failed:\n{}", d.text);
    ensure!(failures < 500, "{failures} failures in 15 s: no back-off");
    faults_stop_then_target_reached(g)
}

/// A third of the size work's allocations fail, so batches come up short
/// with some pages allocated: balloon_rs backs off after each short batch
/// as after an empty one (C sleeps 200 ms after any failure). In 15 s the
/// back-off (at least 200 ms after each short batch, doubling while they
/// come in a row; a full batch, from a 2 MiB block the faults spared,
/// starts it again at 200 ms) allows at most 75 short batches; without it
/// every batch of every run is short, thousands of them. (Before block
/// inflate every batch was short and at most 15 came; a reliability run
/// with blocks saw 50.)
#[test]
#[ignore = "needs the debug kernel's fault injection: run by make test-reliability"]
fn balloon_rs_backs_off_after_a_partial_batch() -> Result<()> {
    let mut g = guest_with_failing_driver_allocations("partial", 30)?;
    std::thread::sleep(Duration::from_secs(15));
    responsive(&mut g, "under partial allocation faults")?;
    let d = g.balloon_rs_status()?;
    let failures = d.get("alloc_failures")?;
    ensure!(
        d.get("pages_inflated")? > 0 && failures > 0,
        "premise: batches must be partial (some pages, some failures):\n{}",
        d.text
    );
    ensure!(
        failures <= 75,
        "{failures} short batches in 15 s: no back-off after a partial batch"
    );
    faults_stop_then_target_reached(g)
}
