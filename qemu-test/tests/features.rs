//! The rest of the virtio balloon: free page reporting, page poison,
//! freeze/restore and live migration, for both drivers.

use qemu_test::{ensure, Driver, Error, Guest, GuestConfig, Result, MIB};
use std::time::{Duration, Instant};

qemu_test::both_drivers!(
    free_page_hints_during_migration_are_all_given_back,
    free_page_reporting_gives_freed_memory_back_to_the_host,
    page_poison_is_negotiated_as_c_does_and_contents_survive,
    freeze_and_restore_keep_the_balloon,
    live_migration_keeps_the_balloon_working,
);

mod common;
use common::rss_drop_after_free;

fn config(test: &str, driver: Driver) -> Result<GuestConfig> {
    GuestConfig::new(&format!("{test}-{driver}"))
}

const F_FREE_PAGE_HINT: usize = 3;
const F_PAGE_POISON: usize = 4;
const F_REPORTING: usize = 5;

/// How long freed memory may take to leave QEMU's RSS: about 10 s with a
/// normal guest, longer with the debug kernel (KASAN, DEBUG_PAGEALLOC) under
/// TCG.
const REPORT_WINDOW: Duration = Duration::from_secs(60);

/// With `free-page-reporting=on`, QEMU's RSS falls by at least a quarter of
/// guest memory within 60 s after the guest frees half of it (the control
/// below shows that without reporting it does not, in the same time).
fn free_page_reporting_gives_freed_memory_back_to_the_host(driver: Driver) -> Result<()> {
    let mut cfg = config("report", driver)?;
    cfg.balloon_props.push("free-page-reporting=on".into());
    let mut g = Guest::boot(cfg)?;
    g.load(driver)?;
    ensure!(g.feature(F_REPORTING)?, "REPORTING not negotiated");
    let quarter = g.config.mem_mib / 4;
    let dropped = rss_drop_after_free(&mut g, quarter, REPORT_WINDOW)?;
    // What the guest says it reported tells a slow host from a silent guest.
    let reported = if driver == Driver::BalloonRs {
        format!(
            "; balloon_rs reported {} MiB",
            g.balloon_rs_status()?.get("reported_mib")?
        )
    } else {
        String::new()
    };
    ensure!(
        dropped >= quarter,
        "QEMU RSS fell by {dropped} MiB (need >= {quarter} MiB){reported}"
    );
    if driver == Driver::BalloonRs {
        let d = g.balloon_rs_status()?;
        ensure!(d.get("reports")? > 0, "no reports counted:\n{}", d.text);
    }
    g.unload(driver)?;
    g.shutdown()
}

/// The control: without reporting, freed guest memory stays resident.
#[test]
fn without_reporting_freed_memory_stays_resident() -> Result<()> {
    let mut g = Guest::boot(config("noreport", Driver::BalloonRs)?)?;
    g.load(Driver::BalloonRs)?;
    ensure!(
        !g.feature(F_REPORTING)?,
        "REPORTING negotiated without the device offering it"
    );
    let quarter = g.config.mem_mib / 4;
    let dropped = rss_drop_after_free(&mut g, quarter, REPORT_WINDOW)?;
    ensure!(
        dropped < quarter,
        "QEMU RSS fell by {dropped} MiB without reporting"
    );
    g.unload(Driver::BalloonRs)?;
    g.shutdown()
}

/// PAGE_POISON is kept only when freed pages have a known content
/// (`init_on_free=1` or `page_poison=1`), as C's validate(); with it, the
/// balloon inflates and deflates and a workload verifies its pages.
fn page_poison_is_negotiated_as_c_does_and_contents_survive(driver: Driver) -> Result<()> {
    for (args, poison) in [
        ("", false),
        ("init_on_free=1", true),
        ("page_poison=1", true),
    ] {
        let mut cfg = config("poison", driver)?;
        cfg.kernel_args = args.into();
        cfg.balloon_props.push("free-page-reporting=on".into());
        let mut g = Guest::boot(cfg)?;
        g.load(driver)?;
        let got = g.feature(F_PAGE_POISON)?;
        ensure!(
            got == poison,
            "{driver} with '{args}': PAGE_POISON negotiated = {got}, expected {poison}"
        );
        // QEMU offers PAGE_POISON, so REPORTING stays in every case.
        ensure!(
            g.feature(F_REPORTING)?,
            "{driver} with '{args}': REPORTING dropped"
        );
        if poison {
            let size = g.config.mem_mib;
            g.qmp().set_guest_size(size / 2 * MIB)?;
            let (ok, actual) = g
                .qmp()
                .wait_guest_size(size / 2 * MIB, Duration::from_secs(180))?;
            ensure!(ok, "inflate stopped at {} MiB", actual / MIB);
            g.qmp().set_guest_size(size * MIB)?;
            let (ok, actual) = g
                .qmp()
                .wait_guest_size(size * MIB, Duration::from_secs(180))?;
            ensure!(ok, "deflate stopped at {} MiB", actual / MIB);
            let out = g.run_timeout(
                &format!(
                    "balloon-guest workload --mib {} --content text --hold 2 --verify",
                    size / 2
                ),
                Duration::from_secs(300),
            )?;
            ensure!(
                out.code == 0 && out.text.contains("verified"),
                "workload verify failed with '{args}': {}",
                out.text
            );
        }
        g.unload(driver)?;
        g.shutdown()?;
    }
    Ok(())
}

/// A system sleep cycle in PM test mode (`pm_test=devices`, s2idle) runs the
/// driver's freeze and restore with an inflated balloon; afterwards `actual`
/// returns to the target and MemTotal is what it was.
fn freeze_and_restore_keep_the_balloon(driver: Driver) -> Result<()> {
    let mut g = Guest::boot(config("freeze", driver)?)?;
    g.load(driver)?;
    let size = g.config.mem_mib;
    g.qmp().set_guest_size(size / 2 * MIB)?;
    let (ok, _) = g
        .qmp()
        .wait_guest_size(size / 2 * MIB, Duration::from_secs(180))?;
    ensure!(ok, "did not inflate before the freeze");
    let total = g.meminfo()?.kib("MemTotal")?;
    g.sh("echo devices > /sys/power/pm_test")?;
    let out = g.run_timeout("echo freeze > /sys/power/state", Duration::from_secs(120))?;
    ensure!(out.code == 0, "suspend test failed: {}", out.text);
    ensure!(
        g.console().contains("PM: suspend debug: Waiting"),
        "the PM test did not run the device callbacks"
    );
    let (ok, actual) = g
        .qmp()
        .wait_guest_size(size / 2 * MIB, Duration::from_secs(180))?;
    ensure!(
        ok,
        "after restore actual is {} MiB, target {} MiB",
        actual / MIB,
        size / 2
    );
    let after = g.meminfo()?.kib("MemTotal")?;
    ensure!(
        after == total,
        "MemTotal {total} KiB before the freeze, {after} KiB after"
    );
    if driver == Driver::BalloonRs {
        let d = g.balloon_rs_status()?;
        ensure!(
            d.get("freezes")? == 1 && d.get("restores")? == 1,
            "freeze/restore not counted:\n{}",
            d.text
        );
    }
    g.unload(driver)?;
    match g.shutdown() {
        Ok(()) => Ok(()),
        Err(e) => Err(Error::Check(format!("after freeze/restore: {e}"))),
    }
}

/// Free page hinting during a real migration (to `exec:cat > /dev/null`,
/// throttled to 64 MiB/s so the guest has time to hint): the guest keeps
/// working afterwards, every hinted block is given back after the host's
/// DONE (balloon_rs counts them in debugfs), and MemFree returns.
fn free_page_hints_during_migration_are_all_given_back(driver: Driver) -> Result<()> {
    let mut cfg = config("hint", driver)?;
    cfg.extra_qemu_args = vec!["-object".into(), "iothread,id=iothread0".into()];
    cfg.balloon_props.push("free-page-hint=on".into());
    cfg.balloon_props.push("iothread=iothread0".into());
    let mut g = Guest::boot(cfg)?;
    g.load(driver)?;
    ensure!(
        g.feature(F_FREE_PAGE_HINT)?,
        "FREE_PAGE_HINT not negotiated"
    );
    let free0 = g.meminfo()?.mib("MemFree")?;
    g.qmp()
        .migrate("exec:cat > /dev/null", 64 * MIB, Duration::from_secs(300))?;
    g.qmp().cont()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let free = g.meminfo()?.mib("MemFree")?;
        let hints_done = if driver == Driver::BalloonRs {
            let d = g.balloon_rs_status()?;
            let (sent, returned, shrunk) = (
                d.get("hint_blocks_sent")?,
                d.get("hint_blocks_returned")?,
                d.get("hint_blocks_shrunk")?,
            );
            if Instant::now() > deadline {
                return Err(Error::Check(format!(
                    "hints: sent {sent}, returned {returned}, shrunk {shrunk}; MemFree {free} MiB (was {free0})\n{}",
                    d.text
                )));
            }
            sent > 0 && d.get("hint_blocks_held")? == 0 && returned + shrunk == sent
        } else {
            true
        };
        // 16 MiB: page cache and slab the migration left behind.
        if hints_done && free + 16 >= free0 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "MemFree {free} MiB after the migration, {free0} MiB before"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = g.run_timeout(
        "balloon-guest workload --mib 128 --content text --hold 1 --verify",
        Duration::from_secs(120),
    )?;
    ensure!(
        out.code == 0 && out.text.contains("verified"),
        "workload after migration: {}",
        out.text
    );
    g.unload(driver)?;
    g.shutdown()
}

/// Live migration to a second QEMU over TCP loopback, as between two hosts:
/// the balloon and its target arrive with the guest (`actual`, MemTotal,
/// debugfs), the ballooned pages are not copied (the destination's RSS is
/// no larger than the source's), statistics flow from the destination, and
/// the driver inflates and deflates there.
fn live_migration_keeps_the_balloon_working(driver: Driver) -> Result<()> {
    let mut g = Guest::boot(config("livemig", driver)?)?;
    g.load(driver)?;
    let mem = g.config.mem_mib;
    let total0 = g.meminfo()?.mib("MemTotal")?;
    common::resize(&mut g, mem - 128)?;
    let rss_source = g.rss_kib()? / 1024;
    g.migrate_local(None, Duration::from_secs(300))?;
    let actual = g.qmp().guest_size()? / MIB;
    ensure!(
        actual == mem - 128,
        "actual {actual} MiB after the migration, {} MiB before",
        mem - 128
    );
    let total = g.meminfo()?.mib("MemTotal")?;
    ensure!(
        total + 128 <= total0 + 1 && total + 128 + 1 >= total0,
        "MemTotal {total} MiB after the migration: expected {total0} - 128 (± 1)"
    );
    if driver == Driver::BalloonRs {
        let d = g.balloon_rs_status()?;
        ensure!(
            d.get("target_mib")? == 128 && d.get("actual_mib")? == 128,
            "debugfs after the migration:\n{}",
            d.text
        );
    }
    let rss_dest = g.rss_kib()? / 1024;
    ensure!(
        rss_dest <= rss_source + 16,
        "destination RSS {rss_dest} MiB, source {rss_source} MiB: ballooned pages were copied?"
    );
    // Statistics from the destination (its polling starts with it).
    g.qmp().set_stats_interval(1)?;
    let start = g.qmp().guest_stats()?.last_update;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = g.qmp().guest_stats()?;
        if s.last_update > start && s.stats.contains_key("stat-free-memory") {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "no statistics from the destination in 30 s (last update {})",
            s.last_update
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    common::resize(&mut g, mem - 256)?;
    common::resize(&mut g, mem)?;
    let total = g.meminfo()?.mib("MemTotal")?;
    ensure!(
        total == total0,
        "MemTotal {total} MiB after deflating, {total0} MiB at boot"
    );
    g.unload(driver)?;
    g.shutdown()
}
