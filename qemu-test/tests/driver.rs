//! Guest tests that run against both balloon drivers: balloon_rs and the
//! in-tree C `virtio_balloon.ko`, built from the same kernel.
//!
//! Every test ends with `Guest::shutdown`, which fails on any `WARNING:`,
//! `BUG:`, `Oops`, `Call Trace` or panic in the console log; a failing test
//! kills its QEMU when the `Guest` is dropped.

use qemu_test::{ensure, Driver, Guest, GuestConfig, Result, MIB};
use std::time::Duration;

mod common;
use common::start_workload;

qemu_test::both_drivers!(
    binds_and_unbinds_cleanly,
    probe_sees_target_set_before_insmod,
    workload_memory_shows_in_meminfo,
    modprobe_of_the_device_modalias_loads_the_driver,
    adjusting_the_balloon_is_a_wakeup_event,
);

fn boot(test: &str, driver: Driver) -> Result<Guest> {
    Guest::boot(GuestConfig::new(&format!("{test}-{driver}"))?)
}

/// insmod binds the balloon device; rmmod unbinds it and removes the module.
fn binds_and_unbinds_cleanly(driver: Driver) -> Result<()> {
    let mut g = boot("bind", driver)?;
    ensure!(
        g.bound_driver()?.is_none(),
        "no driver should be bound before insmod"
    );
    g.load(driver)?;
    let bound = g.bound_driver()?;
    // The C module registers its driver as "virtio_balloon", ours as "balloon_rs".
    ensure!(
        bound.as_deref() == Some(driver.module_name()),
        "after insmod, virtio0 is bound to {bound:?}, expected {}",
        driver.module_name()
    );
    g.unload(driver)?;
    ensure!(
        g.bound_driver()?.is_none(),
        "virtio0 still bound after rmmod"
    );
    let lsmod = g.sh("cat /proc/modules")?;
    ensure!(
        !lsmod.contains(driver.module_name()),
        "module still listed after rmmod:\n{lsmod}"
    );
    // A second load/unload cycle works too.
    g.load(driver)?;
    g.unload(driver)?;
    g.shutdown()
}

/// The module declares its device table (`MODULE_DEVICE_TABLE`): with the
/// module alone in the kernel's module directory, `depmod` indexes its
/// alias and `modprobe` of the device's modalias (what udev runs on a
/// hotplug event) loads it and binds the device.
fn modprobe_of_the_device_modalias_loads_the_driver(driver: Driver) -> Result<()> {
    let mut g = boot("modalias", driver)?;
    let alias = g.sh("cat /sys/bus/virtio/devices/virtio0/modalias")?;
    ensure!(
        alias.trim().starts_with("virtio:d00000005v"),
        "unexpected modalias {alias}"
    );
    g.sh(&format!(
        "d=/lib/modules/$(uname -r); mkdir -p $d && cp /lib/modules/{} $d/ && depmod",
        driver.file_name()
    ))?;
    let aliases = g.sh("cat /lib/modules/$(uname -r)/modules.alias")?;
    ensure!(
        aliases.contains("alias virtio:d00000005v* "),
        "depmod found no virtio alias in {}:\n{aliases}",
        driver.file_name()
    );
    g.sh(&format!("modprobe {}", alias.trim()))?;
    let bound = g.bound_driver()?;
    ensure!(
        bound.as_deref() == Some(driver.module_name()),
        "after modprobe {}, virtio0 is bound to {bound:?}",
        alias.trim()
    );
    g.unload(driver)?;
    g.shutdown()
}

/// The device is a wakeup source (`device_set_wakeup_capable`, as C): once
/// wakeup is enabled in sysfs, each balloon adjustment keeps the system
/// awake until it is done (`wakeup_active_count` grows), and nothing is left
/// holding it once the target is reached (`wakeup_active` is 0).
fn adjusting_the_balloon_is_a_wakeup_event(driver: Driver) -> Result<()> {
    let mut g = boot("wakeup", driver)?;
    let power = "/sys/bus/virtio/devices/virtio0/power";
    g.load(driver)?;
    let state = g.sh(&format!("cat {power}/wakeup"))?;
    ensure!(
        state.trim() == "disabled" || state.trim() == "enabled",
        "not wakeup-capable: {power}/wakeup says {state:?}"
    );
    g.sh(&format!("echo enabled > {power}/wakeup"))?;
    let count = |g: &mut Guest, what: &str| -> Result<u64> {
        let v = g.sh(&format!("cat {power}/{what}"))?;
        v.trim()
            .parse()
            .map_err(|e| qemu_test::Error::Check(format!("{what}: {v:?}: {e}")))
    };
    let before = count(&mut g, "wakeup_active_count")?;
    let size = g.config.mem_mib;
    g.qmp().set_guest_size((size - 64) * MIB)?;
    let (reached, actual) = g
        .qmp()
        .wait_guest_size((size - 64) * MIB, Duration::from_secs(120))?;
    ensure!(
        reached,
        "actual {} MiB never reached the target",
        actual / MIB
    );
    std::thread::sleep(Duration::from_millis(500));
    let after = count(&mut g, "wakeup_active_count")?;
    ensure!(
        after > before,
        "wakeup_active_count {before} -> {after}: the adjustment held no wakeup event"
    );
    ensure!(
        count(&mut g, "wakeup_active")? == 0,
        "the wakeup source is still active after the target was reached"
    );
    g.unload(driver)?;
    g.shutdown()
}

/// A target set over QMP before the module loads is what the driver sees at
/// probe time (balloon_rs logs it), and both drivers inflate to it exactly.
fn probe_sees_target_set_before_insmod(driver: Driver) -> Result<()> {
    let mut g = boot("probe", driver)?;
    let configured = g.config.mem_mib * MIB;
    let balloon = 128 * MIB;
    g.qmp().set_guest_size(configured - balloon)?;
    g.load(driver)?;
    let expected_pages = balloon / 4096;
    if driver == Driver::BalloonRs {
        let line = format!("balloon_rs: probed virtio0: num_pages={expected_pages} (128 MiB)");
        let dmesg = g.sh("dmesg")?;
        ensure!(dmesg.contains(&line), "dmesg lacks {line:?}:\n{dmesg}");
    }
    // Both drivers then inflate to exactly that target.
    let (reached, actual) = g
        .qmp()
        .wait_guest_size(configured - balloon, Duration::from_secs(120))?;
    ensure!(
        reached,
        "{driver}: actual {} MiB, expected {} MiB",
        actual / MIB,
        (configured - balloon) / MIB
    );
    g.unload(driver)?;
    g.shutdown()
}

/// The guest workload allocates what it is asked for: MemFree falls by at
/// least 90 % of it while held and comes back after it is killed.
fn workload_memory_shows_in_meminfo(driver: Driver) -> Result<()> {
    let mut g = boot("workload", driver)?;
    g.load(driver)?;
    let before = g.meminfo()?.mib("MemFree")?;
    let mib = 128;
    start_workload(&mut g, mib, "--content text --hold 0")?;
    let during = g.meminfo()?.mib("MemFree")?;
    ensure!(
        before.saturating_sub(during) >= mib * 9 / 10,
        "MemFree fell by {} MiB while holding {mib} MiB (before {before}, during {during})",
        before.saturating_sub(during)
    );
    g.sh("kill $(cat /tmp/w.pid)")?;
    // Freed pages sit on per-cpu lists and drain over several seconds
    // (TOOLCHAIN.md); wait up to 30 s for MemFree to come back within 5 %.
    let mut after = 0;
    for _ in 0..60 {
        after = g.meminfo()?.mib("MemFree")?;
        if after + mib / 20 >= before {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    ensure!(
        after + mib / 20 >= before,
        "MemFree did not come back: before {before} MiB, after {after} MiB"
    );
    g.unload(driver)?;
    g.shutdown()
}
