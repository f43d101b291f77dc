//! Steps that tests, `balloon-compare` and `balloon-inflate` share: set a
//! target and follow `actual`, run a workload in the guest, read a baseline.

use crate::procfs::MemInfo;
use crate::{ensure, Guest, Result, MIB};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a balloon may take to reach a target under TCG on a busy host.
pub const SETTLE: Duration = Duration::from_secs(180);

/// The longest a workload may take to fill its memory while it shows
/// progress.
pub const WORKLOAD_LIMIT: Duration = Duration::from_secs(900);

/// Sets the guest size and waits until `actual` is exactly that.
pub fn resize(g: &mut Guest, guest_mib: u64) -> Result<()> {
    g.qmp().set_guest_size(guest_mib * MIB)?;
    let (reached, actual) = g.qmp().wait_guest_size(guest_mib * MIB, SETTLE)?;
    ensure!(
        reached,
        "actual {} MiB never reached the {guest_mib} MiB target in {} s",
        actual / MIB,
        SETTLE.as_secs()
    );
    Ok(())
}

/// `actual` as it moved towards one target.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Trace {
    /// The target, in MiB of guest memory.
    pub target_mib: u64,
    /// Whether `actual` reached it exactly.
    pub reached: bool,
    /// Seconds from setting the target to the last sample.
    pub secs: f64,
    /// (seconds since the target was set, `actual` in MiB), one sample
    /// whenever `actual` changed, the first and the last.
    pub samples: Vec<(f64, u64)>,
}

impl Trace {
    /// The last `actual` seen, in MiB.
    pub fn actual_mib(&self) -> u64 {
        self.samples.last().map_or(0, |s| s.1)
    }

    /// The progression in a few steps: at most `points` samples, evenly
    /// spaced over the list, always the first and the last, e.g.
    /// `512 → 448 → 256 MiB in 3.1 s`.
    pub fn summary(&self, points: usize) -> String {
        let n = self.samples.len();
        let pick: Vec<u64> = match n {
            0 => Vec::new(),
            _ if n <= points || points < 2 => self.samples.iter().map(|s| s.1).collect(),
            _ => (0..points)
                .map(|i| self.samples[i * (n - 1) / (points - 1)].1)
                .collect(),
        };
        let steps: Vec<String> = pick.iter().map(u64::to_string).collect();
        format!(
            "{} MiB in {:.1} s{}",
            steps.join(" → "),
            self.secs,
            if self.reached { "" } else { " (not reached)" }
        )
    }
}

/// Sets the guest size to `target_mib` and samples `actual` every 50 ms
/// until it is exactly that or `timeout` has passed. Not reaching the target
/// is not an error: the trace says so.
pub fn follow_target(g: &mut Guest, target_mib: u64, timeout: Duration) -> Result<Trace> {
    let t0 = Instant::now();
    let before = g.qmp().guest_size()? / MIB;
    g.qmp().set_guest_size(target_mib * MIB)?;
    let mut samples = vec![(0.0, before)];
    loop {
        let bytes = g.qmp().guest_size()?;
        let (actual, reached) = (bytes / MIB, bytes == target_mib * MIB);
        let t = t0.elapsed().as_secs_f64();
        if samples.last().map(|s| s.1) != Some(actual) {
            samples.push((t, actual));
        }
        if reached || t0.elapsed() >= timeout {
            if samples.last().map(|s| s.0) != Some(t) {
                samples.push((t, actual));
            }
            return Ok(Trace {
                target_mib,
                reached,
                secs: t,
                samples,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `balloon-guest workload --mib {mib} {args}` in the background
/// (log in `/tmp/w.log`, pid in `/tmp/w.pid`) and waits until it has touched
/// all its memory: as long as its log keeps growing (a scattered workload on
/// the debug kernel prints progress for minutes), but no longer than
/// [`SETTLE`] without a new line and [`WORKLOAD_LIMIT`] in all.
pub fn start_workload(g: &mut Guest, mib: u64, args: &str) -> Result<()> {
    g.sh(&format!(
        "balloon-guest workload --mib {mib} {args} >/tmp/w.log 2>&1 & echo $! >/tmp/w.pid"
    ))?;
    let start = Instant::now();
    let (mut last, mut changed) = (String::new(), Instant::now());
    loop {
        let log = g.sh("cat /tmp/w.log")?;
        if log.contains("workload: touched") {
            return Ok(());
        }
        if log != last {
            (last, changed) = (log, Instant::now());
        }
        ensure!(
            changed.elapsed() < SETTLE && start.elapsed() < WORKLOAD_LIMIT,
            "the workload never filled its memory ({:.0} s, {:.0} s since its last line): {}",
            start.elapsed().as_secs_f64(),
            changed.elapsed().as_secs_f64(),
            last.lines().last().unwrap_or("(nothing printed)")
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Kills the workload [`start_workload`] started and waits until it is
/// gone (its memory freed).
pub fn stop_workload(g: &mut Guest) -> Result<()> {
    g.sh(
        "kill $(cat /tmp/w.pid); while kill -0 $(cat /tmp/w.pid) 2>/dev/null; do sleep 0.2; done",
    )?;
    Ok(())
}

/// MemTotal and MemFree (KiB) with the driver loaded and the balloon empty.
pub fn baseline(g: &mut Guest) -> Result<(u64, u64)> {
    let m = g.meminfo()?;
    Ok((m.kib("MemTotal")?, m.kib("MemFree")?))
}

/// Waits for a guest-stats update newer than now (the stats interval must
/// be set); returns it with `/proc/meminfo` read right after.
pub fn fresh_stats(g: &mut Guest) -> Result<(BTreeMap<String, u64>, MemInfo)> {
    let start = g.qmp().guest_stats()?.last_update;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = g.qmp().guest_stats()?;
        if s.last_update > start && s.last_update != 0 {
            let m = g.meminfo()?;
            return Ok((s.stats, m));
        }
        ensure!(
            Instant::now() < deadline,
            "guest stats never updated (last-update {})",
            s.last_update
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// How far QEMU's RSS falls (MiB) within `window` after a workload that
/// touched half the guest exits, stopping early once it fell `enough_mib`.
/// The peak is read while the workload still holds the memory: read after it
/// exits, a slow guest has already given part of it back and the fall looks
/// smaller than it was.
pub fn rss_drop_after_free(g: &mut Guest, enough_mib: u64, window: Duration) -> Result<u64> {
    let half = g.config.mem_mib / 2;
    start_workload(g, half, "--content random --hold 0")?;
    let peak = g.rss_kib()?;
    stop_workload(g)?;
    let deadline = Instant::now() + window;
    let mut low = peak;
    while Instant::now() < deadline && peak.saturating_sub(low) / 1024 < enough_mib {
        std::thread::sleep(Duration::from_millis(500));
        low = low.min(g.rss_kib()?);
    }
    Ok(peak.saturating_sub(low) / 1024)
}

/// Inflates by `balloon_mib` with the balloon's pages scattered over the
/// whole guest: a workload first takes all but 48 MiB of the available
/// memory and gives every other 2 MiB back, so free memory is holes across
/// the zone (and at most 48 MiB elsewhere); the balloon fills holes (both
/// drivers: C takes the smallest free blocks first, balloon_rs 2 MiB ones;
/// 2 MiB holes are a few hundred `munmap`s, 4 KiB ones took the debug
/// kernel minutes); then the workload exits. The balloon's pages are left among free
/// ones everywhere, also low in the zone, where compaction's migration
/// scanner starts (a balloon taken from untouched free memory may sit
/// entirely above where the scanners meet, and no compaction moves it).
pub fn balloon_among_holes(g: &mut Guest, balloon_mib: u64) -> Result<Trace> {
    let avail = g.meminfo()?.mib("MemAvailable")?;
    start_workload(
        g,
        avail.saturating_sub(48).max(1),
        "--content random --hold 0 --free-one-in 2 --hole-kib 2048",
    )?;
    let t = follow_target(g, g.config.mem_mib - balloon_mib, SETTLE)?;
    stop_workload(g)?;
    Ok(t)
}

/// Compacts the guest's memory three times per round, for at most `rounds`
/// rounds, until `balloon_migrate` grows. Where the allocator put the
/// balloon's pages against the free ones is chance: before each further
/// round a short workload shuffles free memory. Returns `balloon_migrate`
/// before and after, and the rounds run.
pub fn compact_until_migrated(g: &mut Guest, rounds: u32) -> Result<(u64, u64, u32)> {
    let before = g.vmstat()?.get("balloon_migrate")?;
    let mut after = before;
    for round in 0..rounds {
        if round > 0 {
            start_workload(g, g.config.mem_mib / 10, "--content random --hold 0")?;
            stop_workload(g)?;
        }
        for _ in 0..3 {
            g.sh("echo 1 > /proc/sys/vm/compact_memory")?;
        }
        after = g.vmstat()?.get("balloon_migrate")?;
        if after > before {
            return Ok((before, after, round + 1));
        }
    }
    Ok((before, after, rounds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(actuals: &[u64], reached: bool) -> Trace {
        Trace {
            target_mib: 256,
            reached,
            secs: actuals.len() as f64,
            samples: actuals
                .iter()
                .enumerate()
                .map(|(i, a)| (i as f64, *a))
                .collect(),
        }
    }

    #[test]
    fn summary_keeps_first_and_last_and_at_most_points() {
        let t = trace(&[512, 500, 480, 400, 300, 256], true);
        assert_eq!(t.summary(3), "512 → 480 → 256 MiB in 6.0 s");
        assert_eq!(
            t.summary(10),
            "512 → 500 → 480 → 400 → 300 → 256 MiB in 6.0 s"
        );
        assert_eq!(t.actual_mib(), 256);
    }

    #[test]
    fn summary_says_when_the_target_was_missed() {
        let t = trace(&[512, 470], false);
        assert_eq!(t.summary(4), "512 → 470 MiB in 2.0 s (not reached)");
        assert_eq!(trace(&[], false).actual_mib(), 0);
    }
}
