//! Stressors together, where the tests elsewhere use them one at a time:
//! memory pressure with deflate-on-OOM, compaction migrating balloon pages,
//! and a host changing the target every few tens of milliseconds. The bugs
//! that kill guests live where these paths meet (a virtqueue reached from
//! two contexts, a buffer reaped twice, migration interleaved with the size
//! work). Both drivers; C survives this run.
//!
//! `BALLOON_RS_RACE_SECS` sets how long the stress runs (default 60 s).

use qemu_test::{ensure, Driver, Guest, GuestConfig, Result, MIB};
use std::time::{Duration, Instant};

mod common;
use common::{resize, xorshift};

qemu_test::both_drivers!(pressure_compaction_and_a_target_storm_together,);

/// Console lines that show the balloon's queues or its memory broke.
const BROKEN: [&str; 5] = [
    "is not a head",
    "request failed",
    "not acknowledged",
    "Killed process",
    "out of range",
];

/// The longest the OOM notifier may take while inflation allocates under
/// memory pressure.
const OOM_NOTIFIER_MAX_MS: u64 = 1000;

fn race_secs() -> Result<u64> {
    match std::env::var("BALLOON_RS_RACE_SECS") {
        Ok(v) => v
            .parse()
            .map_err(|e| qemu_test::Error::Check(format!("BALLOON_RS_RACE_SECS={v}: {e}"))),
        Err(_) => Ok(60),
    }
}

/// A guest with deflate-on-OOM, a shell loop writing and deleting a tmpfs
/// file of 40 % of its available memory, another loop compacting memory 5
/// times a second, and the host setting a random target (a quarter to all
/// of the guest) every 30 ms: the guest answers a command every second, no
/// queue breaks, nothing is OOM-killed, balloon pages were migrated (and,
/// for balloon_rs, given back on OOM), and after the stressors stop a final
/// target is reached exactly.
fn pressure_compaction_and_a_target_storm_together(driver: Driver) -> Result<()> {
    let mut cfg = GuestConfig::new(&format!("race-{driver}"))?;
    cfg.balloon_props.push("deflate-on-oom=on".into());
    let mut g = Guest::boot(cfg)?;
    g.load(driver)?;
    let size = g.config.mem_mib;
    let avail = g.meminfo()?.mib("MemAvailable")?;
    let file = avail * 2 / 5;
    let migrate0 = g.vmstat()?.get("balloon_migrate")?;
    g.sh(&format!(
        "mkdir -p /stress && mount -t tmpfs -o size={}m stress /stress",
        file + 16
    ))?;
    g.sh(&format!(
        "(while :; do dd if=/dev/zero of=/stress/f bs=1M count={file} 2>/dev/null; rm -f /stress/f; done) \
         >/dev/null 2>&1 & echo $! > /run-fill.pid"
    ))?;
    g.sh(
        "(while :; do echo 1 > /proc/sys/vm/compact_memory; sleep 0.2; done) >/dev/null 2>&1 & \
         echo $! > /run-compact.pid",
    )?;

    let secs = race_secs()?;
    let start = Instant::now();
    let mut last_probe = Instant::now();
    let mut seed = 0x7ace_u64;
    let mut targets = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        let mib = size / 4 + xorshift(&mut seed) % (size - size / 4 + 1);
        g.qmp().set_guest_size(mib * MIB)?;
        targets += 1;
        std::thread::sleep(Duration::from_millis(30));
        if last_probe.elapsed() >= Duration::from_secs(1) {
            last_probe = Instant::now();
            let t = start.elapsed().as_secs();
            let out = g.run_timeout("cat /proc/loadavg", Duration::from_secs(10))?;
            ensure!(out.code == 0, "guest command failed after {t} s of stress");
            let console = g.console();
            if let Some(line) = console
                .lines()
                .find(|l| BROKEN.iter().any(|b| l.contains(b)))
            {
                return Err(qemu_test::Error::Check(format!(
                    "after {t} s of stress ({targets} targets): {line}\n--- console tail ---\n{}",
                    qemu_test::logscan::tail(&console, 30)
                )));
            }
        }
    }
    g.sh("kill $(cat /run-fill.pid) $(cat /run-compact.pid); sleep 1; rm -f /stress/f")?;
    let kills = g.vmstat()?.get("oom_kill")?;
    ensure!(kills == 0, "{kills} OOM kills during the stress");
    let migrated = g.vmstat()?.get("balloon_migrate")? - migrate0;
    ensure!(
        migrated > 0,
        "premise: compaction migrated no balloon page in {secs} s"
    );
    if driver == Driver::BalloonRs {
        let d = g.balloon_rs_status()?;
        eprintln!("{}", d.text);
        ensure!(
            d.get("oom_deflates")? > 0,
            "premise: no deflate on OOM in {secs} s:\n{}",
            d.text
        );
        // The OOM notifier waits for the balloon lock, which is held for one
        // host request at a time and never while allocating: well under a
        // second even on the debug kernel under TCG.
        let oom_max_ms = d.get("oom_max_us")? / 1000;
        ensure!(
            oom_max_ms < OOM_NOTIFIER_MAX_MS,
            "the OOM notifier took {oom_max_ms} ms (at most {OOM_NOTIFIER_MAX_MS} ms allowed)"
        );
    }
    eprintln!("{driver}: {targets} targets, {migrated} balloon pages migrated in {secs} s");
    resize(&mut g, size / 2)?;
    g.unload(driver)?;
    g.shutdown()
}
