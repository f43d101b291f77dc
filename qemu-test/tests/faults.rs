//! The driver's error paths, reached with its own fault-injection points
//! (`/sys/kernel/debug/balloon_rs/fail_{request,alloc,probe}`, kernels with
//! `CONFIG_FAULT_INJECTION_DEBUG_FS`: the debug kernel). Every test ends
//! with `Guest::shutdown`, which fails on any KASAN, lockdep or other
//! kernel report in the console log.

use qemu_test::{ensure, Driver, Guest, GuestConfig, Result, MIB};
use std::time::Duration;

mod common;
use common::{baseline, inject, kmemleak_clean, memory_back, resize};
use qemu_test::steps::{balloon_among_holes, compact_until_migrated};

const DRIVER: Driver = Driver::BalloonRs;
const BIND: &str = "/sys/bus/virtio/drivers/balloon_rs";

fn compact(g: &mut Guest, times: u32) -> Result<()> {
    for _ in 0..times {
        g.sh("echo 1 > /proc/sys/vm/compact_memory")?;
    }
    Ok(())
}

/// The lines of the kernel log that contain `text`.
fn dmesg_lines(g: &mut Guest, text: &str) -> Result<Vec<String>> {
    Ok(g.sh("dmesg")?
        .lines()
        .filter(|l| l.contains(text))
        .map(str::to_string)
        .collect())
}

/// How many lines of the kernel log contain `text`.
fn dmesg_count(g: &mut Guest, text: &str) -> Result<usize> {
    Ok(dmesg_lines(g, text)?.len())
}

/// Each step of probe fails in turn (`fail_probe`, one fault per bind, its
/// `space` moving the fault one step further each time), with every
/// feature on so every step exists: each failed bind is refused and leaves
/// the device unbound, the next bind probes from scratch. When a bind
/// meets no fault, every step has failed once (at least 12 of them); the
/// balloon then inflates and deflates exactly, and after rmmod kmemleak
/// finds nothing of the driver's.
#[test]
#[ignore = "needs the debug kernel's fault injection: run by make test-reliability"]
fn each_probe_step_failing_cleans_up_and_the_next_probe_works() -> Result<()> {
    let mut cfg = GuestConfig::new("probe-faults")?;
    cfg.expect_probe_failure = true;
    cfg.extra_qemu_args = vec!["-object".into(), "iothread,id=iothread0".into()];
    for p in [
        "deflate-on-oom=on",
        "free-page-reporting=on",
        "free-page-hint=on",
        "iothread=iothread0",
    ] {
        cfg.balloon_props.push(p.into());
    }
    let mut g = Guest::boot(cfg)?;
    let size = g.config.mem_mib;
    g.load(DRIVER)?;
    let base = baseline(&mut g)?;
    let dev = g.sh(&format!("basename $(readlink {BIND}/virtio*)"))?;
    let dev = dev.trim().to_string();
    let _ = g.run("echo clear > /sys/kernel/debug/kmemleak")?;
    let mut steps: Vec<String> = Vec::new();
    loop {
        ensure!(steps.len() < 40, "probe never succeeded: {steps:?}");
        if g.bound_driver()?.is_some() {
            g.sh(&format!("echo {dev} > {BIND}/unbind"))?;
        }
        inject(&mut g, "fail_probe", 100, 1, steps.len() as u64 + 1)?;
        let before = dmesg_count(&mut g, "probe fails at")?;
        let bind = g.run(&format!("echo {dev} > {BIND}/bind"))?;
        let after = dmesg_lines(&mut g, "probe fails at")?;
        if after.len() == before {
            ensure!(bind.code == 0, "bind failed without a fault: {}", bind.text);
            break;
        }
        let step = after
            .last()
            .map_or("", |l| l.trim())
            .rsplit("probe fails at ")
            .next()
            .unwrap_or("")
            .to_string();
        ensure!(
            bind.code != 0,
            "bind succeeded although probe failed at {step}"
        );
        ensure!(
            g.bound_driver()?.is_none(),
            "device bound after probe failed at {step}"
        );
        ensure!(
            !steps.contains(&step),
            "step {step} failed twice: {steps:?}"
        );
        steps.push(step);
    }
    println!("probe failed at each of {} steps: {steps:?}", steps.len());
    ensure!(
        steps.len() >= 12,
        "only {} probe steps: {steps:?}",
        steps.len()
    );
    ensure!(
        g.bound_driver()?.as_deref() == Some(DRIVER.module_name()),
        "the last bind did not bind balloon_rs"
    );
    resize(&mut g, size / 2)?;
    resize(&mut g, size)?;
    g.unload(DRIVER)?;
    memory_back(&mut g, base, 8, "after the probe faults and rmmod")?;
    ensure!(
        kmemleak_clean(&mut g, DRIVER)?,
        "no kmemleak in this kernel"
    );
    g.shutdown()
}

/// rmmod with half the guest ballooned while the host refuses every
/// request (`fail_request` at 100 %): the driver gives up on telling the
/// host after 1000 refusals and gives the pages back anyway, as C (whose
/// `tell_host()` cannot fail); MemTotal is exact again. Compaction right
/// after finds no page of the freed balloon (a page left on the freed
/// pool's list would be a KASAN use-after-free here).
#[test]
#[ignore = "needs the debug kernel's fault injection: run by make test-reliability"]
fn rmmod_while_the_host_refuses_every_request_gives_every_page_back() -> Result<()> {
    let mut g = Guest::boot(GuestConfig::new("refused-rmmod")?)?;
    let size = g.config.mem_mib;
    g.load(DRIVER)?;
    let total0 = g.meminfo()?.kib("MemTotal")?;
    resize(&mut g, size / 2)?;
    inject(&mut g, "fail_request", 100, -1, 0)?;
    let out = g.run_timeout(
        &format!("rmmod {}", DRIVER.module_name()),
        Duration::from_secs(300),
    )?;
    ensure!(out.code == 0, "rmmod failed: {}", out.text);
    ensure!(
        dmesg_count(&mut g, "the host refused to deflate the last")? == 1,
        "the driver did not report giving the pages back untold"
    );
    let total = g.meminfo()?.kib("MemTotal")?;
    ensure!(
        total == total0,
        "MemTotal {total} KiB after rmmod, {total0} KiB before the balloon"
    );
    compact(&mut g, 3)?;
    g.shutdown()
}

/// Compaction migrates balloon pages (3/10 of the guest ballooned among a
/// workload's holes, so that some sit where the migration scanner starts;
/// up to four rounds) while the host refuses every request
/// (`fail_request` at 100 %): each migration is committed when the new
/// page is in the balloon (the host not hearing of it is logged, not
/// reported as a failure, or the core would put the page on the list a
/// second time), the balloon keeps its size, and once the host answers
/// again the balloon deflates to exactly zero with every page back.
#[test]
#[ignore = "needs the debug kernel's fault injection: run by make test-reliability"]
fn migration_while_the_host_refuses_requests_keeps_every_page() -> Result<()> {
    let mut g = Guest::boot(GuestConfig::new("refused-migrate")?)?;
    let size = g.config.mem_mib;
    g.load(DRIVER)?;
    let base = baseline(&mut g)?;
    // A balloon taken from one free region (as after a 64 MiB page-cache
    // file) may sit entirely above where the scanners meet: one run in a
    // reliability run migrated nothing.
    let t = balloon_among_holes(&mut g, size * 3 / 10)?;
    ensure!(
        t.reached,
        "the balloon did not reach 3/10: {}",
        t.summary(5)
    );
    let held = g.balloon_rs_status()?.get("actual_pages")?;
    inject(&mut g, "fail_request", 100, -1, 0)?;
    let (before, after, _) = compact_until_migrated(&mut g, 4)?;
    let migrated = after - before;
    let untold = dmesg_count(&mut g, "migration: inflate request for the new page failed")?;
    inject(&mut g, "fail_request", 0, -1, 0)?;
    ensure!(migrated > 0, "no balloon page migrated under compaction");
    ensure!(untold > 0, "no migration met a refused request");
    let d = g.balloon_rs_status()?;
    ensure!(
        d.get("actual_pages")? == held,
        "balloon {} pages after migration, {held} before",
        d.get("actual_pages")?
    );
    println!("{migrated} pages migrated, {untold} with the host refusing");
    resize(&mut g, size)?;
    let actual = g.qmp().guest_size()?;
    ensure!(
        actual == size * MIB,
        "QEMU's actual {} MiB, not the full guest",
        actual / MIB
    );
    g.unload(DRIVER)?;
    memory_back(&mut g, base, 8, "after migrations the host refused")?;
    g.shutdown()
}
