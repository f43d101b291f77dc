//! The scenarios of `make compare`: what the guest tests check, observed
//! rather than asserted, the same steps for either driver.

use super::{Observations, Scenario};
use crate::steps::{
    balloon_among_holes, compact_until_migrated, follow_target, fresh_stats, rss_drop_after_free,
    SETTLE,
};
use crate::{Driver, Error, Guest, GuestConfig, Result, MIB};
use std::time::{Duration, Instant};

/// Every scenario, in the order `make compare` runs them.
pub static SCENARIOS: [Scenario; 8] = [
    Scenario {
        name: "inflate-deflate",
        about: "inflate half the guest, deflate it all: actual, MemTotal, vmstat",
        configure: plain,
        run: inflate_deflate,
    },
    Scenario {
        name: "stats",
        about: "the stats queue against /proc/meminfo, and 64 MiB of new page cache",
        configure: plain,
        run: stats,
    },
    Scenario {
        name: "oom",
        about: "deflate-on-oom: a workload of half the guest beside a balloon of 3/4",
        configure: deflate_on_oom,
        run: oom,
    },
    Scenario {
        name: "compaction",
        about: "compact_memory with 3/10 of the guest ballooned in 4 KiB holes all over it",
        configure: plain,
        run: compaction,
    },
    Scenario {
        name: "hostile",
        about: "a 1 MiB target: does the guest keep answering",
        configure: plain,
        run: hostile,
    },
    Scenario {
        name: "reporting",
        about: "free page reporting: QEMU's RSS after the guest frees half",
        configure: reporting_on,
        run: reporting,
    },
    Scenario {
        name: "pm",
        about: "freeze and restore (pm_test=devices) with half ballooned",
        configure: plain,
        run: pm,
    },
    Scenario {
        name: "speed",
        about: "inflate and deflate half of a written guest, one run (make bench for medians)",
        configure: plain,
        run: speed,
    },
];

fn plain(_: &mut GuestConfig) {}

fn deflate_on_oom(cfg: &mut GuestConfig) {
    cfg.balloon_props.push("deflate-on-oom=on".into());
}

fn reporting_on(cfg: &mut GuestConfig) {
    cfg.balloon_props.push("free-page-reporting=on".into());
}

/// The virtio balloon's REPORTING feature bit.
const F_REPORTING: usize = 5;

fn mem_total_kib(g: &mut Guest) -> Result<u64> {
    g.meminfo()?.kib("MemTotal")
}

fn vmstat(g: &mut Guest, name: &str) -> Result<u64> {
    g.vmstat()?.get(name)
}

fn inflate_deflate(g: &mut Guest, _: Driver, o: &mut Observations) -> Result<()> {
    let size = g.config.mem_mib;
    let total0 = mem_total_kib(g)?;
    let inflated0 = vmstat(g, "balloon_inflate")?;
    let t = follow_target(g, size / 2, SETTLE)?;
    o.yes_no("inflate to half: target reached", t.reached);
    o.info("actual while inflating", t.summary(5));
    o.measure("inflate time", t.secs, "s", 1);
    o.same(
        "MemTotal fell by (MiB)",
        total0.saturating_sub(mem_total_kib(g)?) / 1024,
    );
    let deflated0 = vmstat(g, "balloon_deflate")?;
    o.same(
        "balloon_inflate (pages)",
        vmstat(g, "balloon_inflate")? - inflated0,
    );
    let t = follow_target(g, size, SETTLE)?;
    o.yes_no("deflate to full: target reached", t.reached);
    o.info("actual while deflating", t.summary(5));
    o.measure("deflate time", t.secs, "s", 1);
    o.same(
        "balloon_deflate (pages)",
        vmstat(g, "balloon_deflate")? - deflated0,
    );
    o.yes_no("MemTotal back exactly", mem_total_kib(g)? == total0);
    Ok(())
}

fn stats(g: &mut Guest, _: Driver, o: &mut Observations) -> Result<()> {
    g.qmp().set_stats_interval(1)?;
    let (first, m) = fresh_stats(g)?;
    let t = Instant::now();
    let names: Vec<&str> = first
        .keys()
        .map(|k| k.trim_start_matches("stat-"))
        .collect();
    o.same("stats QEMU shows", names.join(" "));
    for (stat, field) in [
        ("stat-free-memory", "MemFree"),
        ("stat-total-memory", "MemTotal"),
        ("stat-available-memory", "MemAvailable"),
    ] {
        let Some(&sent) = first.get(stat) else {
            o.info(&format!("{stat} − {field}"), "not sent");
            continue;
        };
        let diff = sent as i64 / MIB as i64 - (m.kib(field)? / 1024) as i64;
        o.info(&format!("{stat} − {field}"), format!("{diff:+} MiB"));
        o.yes_no(&format!("{stat} within 8 MiB of {field}"), diff.abs() <= 8);
    }
    let (next, _) = fresh_stats(g)?;
    o.measure(
        "seconds between updates (interval 1 s)",
        t.elapsed().as_secs_f64(),
        "s",
        1,
    );
    let caches0 = next.get("stat-disk-caches").copied().unwrap_or(0);
    g.sh("dd if=/dev/zero of=/tmp/cache bs=1M count=64 2>/dev/null")?;
    let (after, _) = fresh_stats(g)?;
    let grew = after
        .get("stat-disk-caches")
        .copied()
        .unwrap_or(0)
        .saturating_sub(caches0)
        / MIB;
    o.info(
        "disk caches grew after writing 64 MiB",
        format!("{grew} MiB"),
    );
    o.yes_no("stats follow page cache (grew ≥ 60 MiB)", grew >= 60);
    Ok(())
}

fn oom(g: &mut Guest, driver: Driver, o: &mut Observations) -> Result<()> {
    let size = g.config.mem_mib;
    let m = g.meminfo()?;
    let (total0, avail0) = (m.kib("MemTotal")?, m.mib("MemAvailable")?);
    // As the deflate-on-OOM test: 3/4 of the guest, or all but 96 MiB of
    // what is available; a workload of half the guest cannot fit beside it.
    let balloon = (size * 3 / 4).min(avail0.saturating_sub(96));
    let work = (size / 2).min(avail0 * 2 / 3);
    o.info("balloon, workload (MiB)", format!("{balloon}, {work}"));
    let t = follow_target(g, size - balloon, SETTLE)?;
    o.yes_no("balloon target reached", t.reached);
    o.yes_no(
        "MemTotal unchanged (deflate-on-oom)",
        mem_total_kib(g)? == total0,
    );
    let out = g.run_timeout(
        &format!("balloon-guest workload --mib {work} --content random --hold 1"),
        Duration::from_secs(600),
    )?;
    o.same("workload exit code", out.code);
    let actual = g.qmp().guest_size()? / MIB;
    o.measure(
        "balloon given back under OOM",
        actual.saturating_sub(size - balloon) as f64,
        "MiB",
        0,
    );
    o.same("OOM kills", vmstat(g, "oom_kill")?);
    if driver == Driver::BalloonRs {
        o.info(
            "OOM deflates (debugfs)",
            g.balloon_rs_status()?.get("oom_deflates")?,
        );
    }
    Ok(())
}

fn compaction(g: &mut Guest, _: Driver, o: &mut Observations) -> Result<()> {
    let size = g.config.mem_mib;
    let total0 = mem_total_kib(g)?;
    // As the compaction test: balloon pages scattered among a workload's,
    // which then frees its own.
    let t = balloon_among_holes(g, size * 3 / 10)?;
    o.yes_no("balloon of 3/10 reached", t.reached);
    let (before, after, rounds) = compact_until_migrated(g, 4)?;
    o.yes_no("balloon pages migrated", after > before);
    o.measure("balloon_migrate", (after - before) as f64, "pages", 0);
    o.info("rounds of 3 compactions", rounds);
    let t = follow_target(g, size, SETTLE)?;
    o.yes_no("deflate afterwards: target reached", t.reached);
    o.yes_no("MemTotal back exactly", mem_total_kib(g)? == total0);
    Ok(())
}

fn hostile(g: &mut Guest, _: Driver, o: &mut Observations) -> Result<()> {
    let size = g.config.mem_mib;
    let avail0 = g.meminfo()?.mib("MemAvailable")?;
    g.qmp().set_guest_size(MIB)?;
    let (mut least, mut asked, mut answered) = (size, 0, 0);
    let mut died = None;
    // 20 s to inflate, then a command a second for 20 s.
    for i in 0..40 {
        std::thread::sleep(Duration::from_secs(1));
        if let Err(e) = g.check_alive("under a 1 MiB target") {
            died = Some(e);
            break;
        }
        match g.qmp().guest_size() {
            Ok(bytes) => least = least.min(bytes / MIB),
            Err(e) => {
                died = Some(e);
                break;
            }
        }
        if i < 20 {
            continue;
        }
        asked += 1;
        match g.run_timeout("cat /proc/loadavg", Duration::from_secs(10)) {
            Ok(out) if out.code == 0 => answered += 1,
            Ok(_) | Err(Error::Timeout { .. }) => {}
            Err(e) => {
                died = Some(e);
                break;
            }
        }
    }
    o.info(
        "ballooned of the MiB available",
        format!("{} of {avail0}", size - least),
    );
    o.same(
        "commands answered (one a second from 20 s)",
        format!("{answered}/{asked}"),
    );
    let console = g.console();
    o.same(
        "OOM kills (console)",
        console.matches("Out of memory: Killed process").count(),
    );
    o.yes_no("guest alive after 40 s", died.is_none());
    if let Some(e) = died {
        return Err(e);
    }
    let t = follow_target(g, size * 3 / 4, SETTLE)?;
    o.yes_no("next target (3/4) reached", t.reached);
    Ok(())
}

fn reporting(g: &mut Guest, driver: Driver, o: &mut Observations) -> Result<()> {
    o.yes_no("REPORTING negotiated", g.feature(F_REPORTING)?);
    let size = g.config.mem_mib;
    let dropped = rss_drop_after_free(g, size / 2, Duration::from_secs(60))?;
    o.measure(
        "QEMU RSS fell within 60 s of freeing half",
        dropped as f64,
        "MiB",
        0,
    );
    o.yes_no(
        "fell by at least a quarter of the guest",
        dropped >= size / 4,
    );
    if driver == Driver::BalloonRs {
        o.info(
            "reported (debugfs)",
            format!("{} MiB", g.balloon_rs_status()?.get("reported_mib")?),
        );
    }
    Ok(())
}

fn pm(g: &mut Guest, _: Driver, o: &mut Observations) -> Result<()> {
    let size = g.config.mem_mib;
    let t = follow_target(g, size / 2, SETTLE)?;
    o.yes_no("half ballooned before the freeze", t.reached);
    let total = mem_total_kib(g)?;
    g.sh("echo devices > /sys/power/pm_test")?;
    let out = g.run_timeout("echo freeze > /sys/power/state", Duration::from_secs(120))?;
    o.same("suspend test exit code", out.code);
    o.yes_no(
        "device callbacks ran",
        g.console().contains("PM: suspend debug: Waiting"),
    );
    let t0 = Instant::now();
    let (ok, _) = g.qmp().wait_guest_size(size / 2 * MIB, SETTLE)?;
    o.yes_no("actual at the target after restore", ok);
    o.measure(
        "time to the target after restore",
        t0.elapsed().as_secs_f64(),
        "s",
        1,
    );
    o.yes_no("MemTotal unchanged", mem_total_kib(g)? == total);
    Ok(())
}

fn speed(g: &mut Guest, _: Driver, o: &mut Observations) -> Result<()> {
    let size = g.config.mem_mib;
    let balloon = size / 2;
    // Written first, so QEMU really has pages to give back to the host.
    g.sh(&format!(
        "balloon-guest workload --mib {balloon} --content random --hold 1 >/dev/null"
    ))?;
    let rss0 = g.rss_kib()?;
    let t = follow_target(g, size - balloon, SETTLE)?;
    o.yes_no("inflate: target reached", t.reached);
    o.measure("inflate rate", balloon as f64 / t.secs, "MiB/s", 0);
    o.measure(
        "QEMU RSS fell during inflate",
        rss0.saturating_sub(g.rss_kib()?) as f64 / 1024.0,
        "MiB",
        0,
    );
    let t = follow_target(g, size, SETTLE)?;
    o.yes_no("deflate: target reached", t.reached);
    o.measure("deflate rate", balloon as f64 / t.secs, "MiB/s", 0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_names_are_unique_and_cover_the_issue_list() {
        let names: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
        for want in [
            "inflate-deflate",
            "stats",
            "oom",
            "compaction",
            "hostile",
            "reporting",
            "pm",
            "speed",
        ] {
            assert_eq!(names.iter().filter(|n| **n == want).count(), 1, "{want}");
        }
    }
}
