//! `make bench`: inflate and deflate 3/4 of a 2 GiB guest with balloon_rs and
//! with the C driver, alternating A B A B, and report medians and per-pair
//! ratios; plus the host-side limit (how fast this host discards 4 KiB pages
//! the way QEMU does for each balloon PFN).
//!
//! Writes a Markdown report to `build/bench/report.md` and raw runs to
//! `build/bench/runs.json`, and prints the report.

use qemu_test::steps::{start_workload, stop_workload};
use qemu_test::{Driver, Error, Guest, GuestConfig, Result, MIB};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// One inflate+deflate run.
#[derive(Debug, Clone)]
struct Run {
    driver: Driver,
    inflate_mib_s: f64,
    deflate_mib_s: f64,
    latency_ms: f64,
    /// Guest kernel CPU (system + irq + softirq) during inflation, per GiB.
    cpu_ms_per_gib: f64,
    /// Slab growth during inflation per ballooned 4 KiB page, in bytes.
    slab_bytes_per_page: f64,
    /// How much QEMU's RSS fell during inflation (MiB).
    rss_freed_mib: f64,
    /// QEMU's anonymous memory in host huge pages after the inflation (MiB).
    huge_kept_mib: f64,
    /// balloon_rs's debugfs time split, ns per MiB: inflate alloc, enqueue,
    /// host; deflate dequeue, host, release. Empty for C.
    split: Vec<(String, f64)>,
    /// Pages inflated per order (balloon_rs; PMD, fallback, single).
    orders: Vec<(String, f64)>,
}

/// One inflation of a fragmented guest.
#[derive(Debug, Clone)]
struct FragRun {
    driver: Driver,
    inflate_mib_s: f64,
    huge_before_mib: f64,
    huge_kept_mib: f64,
    rss_freed_mib: f64,
}

/// balloon_rs's debugfs lines whose names end with `suffix` (or start with
/// `prefix`), as (name, value).
fn debugfs_lines(
    g: &mut Guest,
    driver: Driver,
    prefix: &str,
    suffix: &str,
) -> Result<Vec<(String, f64)>> {
    if driver != Driver::BalloonRs {
        return Ok(Vec::new());
    }
    let d = g.balloon_rs_status()?;
    Ok(d.text
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(k, _)| k.starts_with(prefix) && k.ends_with(suffix))
        .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
        .collect())
}

/// A reported metric: its name and how to read it from a run.
type Metric<R = Run> = (&'static str, fn(&R) -> f64);

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// A run of one driver, alternating with the other's in pairs.
trait Paired {
    fn driver(&self) -> Driver;
}

impl Paired for Run {
    fn driver(&self) -> Driver {
        self.driver
    }
}

impl Paired for FragRun {
    fn driver(&self) -> Driver {
        self.driver
    }
}

/// The median of `f` over `driver`'s runs.
fn driver_median<R: Paired>(runs: &[R], driver: Driver, f: fn(&R) -> f64) -> f64 {
    let mut v: Vec<f64> = runs
        .iter()
        .filter(|r| r.driver() == driver)
        .map(f)
        .collect();
    median(&mut v)
}

/// The median of the per-pair ratios balloon_rs / C of `f` (runs alternate
/// balloon_rs, C).
fn pair_ratio<R>(runs: &[R], f: fn(&R) -> f64) -> f64 {
    let mut v: Vec<f64> = runs.chunks(2).map(|p| f(&p[0]) / f(&p[1])).collect();
    median(&mut v)
}

/// Appends a Markdown table of `metrics`: each driver's median and the
/// median of per-pair ratios.
fn metric_table<R: Paired>(md: &mut String, runs: &[R], metrics: &[Metric<R>]) {
    let _ = writeln!(
        md,
        "| metric | balloon_rs | C driver | ratio (rs / C, per pair) |"
    );
    let _ = writeln!(md, "| --- | --- | --- | --- |");
    for &(name, f) in metrics {
        let r = pair_ratio(runs, f);
        let r = if r.is_finite() {
            format!("{r:.2}")
        } else {
            "n/a (C is 0)".into()
        };
        let _ = writeln!(
            md,
            "| {name} | {:.2} | {:.2} | {r} |",
            driver_median(runs, Driver::BalloonRs, f),
            driver_median(runs, Driver::C, f)
        );
    }
}

/// Kernel-mode CPU time of the guest in ms (`/proc/stat` system, irq,
/// softirq; USER_HZ = 100).
fn guest_kernel_cpu_ms(g: &mut Guest) -> Result<f64> {
    let stat = g.sh("head -1 /proc/stat")?;
    let f: Vec<u64> = stat
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if f.len() < 7 {
        return Err(Error::Parse {
            what: "/proc/stat".into(),
            detail: stat,
        });
    }
    Ok((f[2] + f[5] + f[6]) as f64 * 10.0)
}

/// Polls `query-balloon` until `actual == target`; returns (time to the
/// first change, time to the target).
fn time_to(g: &mut Guest, target: u64, start_actual: u64) -> Result<(Duration, Duration)> {
    let t0 = Instant::now();
    g.qmp().set_guest_size(target)?;
    let mut first = None;
    loop {
        let a = g.qmp().guest_size()?;
        if first.is_none() && a != start_actual {
            first = Some(t0.elapsed());
        }
        if a == target {
            return Ok((first.unwrap_or_else(|| t0.elapsed()), t0.elapsed()));
        }
        if t0.elapsed() > Duration::from_secs(600) {
            return Err(Error::Check(format!(
                "target {} MiB not reached in 600 s",
                target / MIB
            )));
        }
        // Poll back to back until the first change (latency), then every 5 ms.
        if first.is_some() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn run_once(driver: Driver, mem_mib: u64, balloon_mib: u64) -> Result<Run> {
    let mut cfg = GuestConfig::new(&format!("bench-{driver}"))?;
    cfg.mem_mib = mem_mib;
    let mut g = Guest::boot(cfg)?;
    g.load(driver)?;
    // Touch the memory the balloon will take, so QEMU really has to give it
    // back to the host (untouched guest RAM costs nothing to discard).
    g.sh(&format!(
        "balloon-guest workload --mib {balloon_mib} --content random --hold 1 >/dev/null"
    ))?;
    let rss_touched = g.rss_kib()?;
    let full = mem_mib * MIB;
    let small = (mem_mib - balloon_mib) * MIB;
    let slab0 = g.meminfo()?.kib("Slab")?;
    let cpu0 = guest_kernel_cpu_ms(&mut g)?;
    let (lat, inflate) = time_to(&mut g, small, full)?;
    let rss_inflated = g.rss_kib()?;
    let cpu1 = guest_kernel_cpu_ms(&mut g)?;
    let slab1 = g.meminfo()?.kib("Slab")?;
    let huge_kept = g.anon_huge_kib()?;
    let orders = debugfs_lines(&mut g, driver, "inflated_order_", "")?;
    let (_, deflate) = time_to(&mut g, full, small)?;
    let split = debugfs_lines(&mut g, driver, "", "_ns_per_mib")?;
    g.unload(driver)?;
    g.shutdown()?;
    let pages = (balloon_mib * 256) as f64;
    Ok(Run {
        driver,
        inflate_mib_s: balloon_mib as f64 / inflate.as_secs_f64(),
        deflate_mib_s: balloon_mib as f64 / deflate.as_secs_f64(),
        latency_ms: lat.as_secs_f64() * 1e3,
        cpu_ms_per_gib: (cpu1 - cpu0) / (balloon_mib as f64 / 1024.0),
        slab_bytes_per_page: (slab1 as f64 - slab0 as f64) * 1024.0 / pages,
        rss_freed_mib: rss_touched.saturating_sub(rss_inflated) as f64 / 1024.0,
        huge_kept_mib: huge_kept as f64 / 1024.0,
        split,
        orders,
    })
}

/// A fragmented, fully written guest: nearly all its memory written once
/// (the host backs it with huge pages), then half of it held by a workload
/// that gives every other 16 KiB back (a quarter of the guest in 16 KiB
/// holes), and a quarter ballooned.
fn run_fragmented(driver: Driver, mem_mib: u64) -> Result<FragRun> {
    let mut cfg = GuestConfig::new(&format!("bench-frag-{driver}"))?;
    cfg.mem_mib = mem_mib;
    let mut g = Guest::boot(cfg)?;
    g.load(driver)?;
    let avail = g.meminfo()?.mib("MemAvailable")?;
    g.sh(&format!(
        "balloon-guest workload --mib {} --content random --hold 1 >/dev/null",
        avail - 64
    ))?;
    // Proactive compaction off: it would rebuild blocks out of the holes.
    g.sh("echo 0 > /proc/sys/vm/compaction_proactiveness")?;
    start_workload(
        &mut g,
        mem_mib / 2,
        "--content random --hold 0 --free-one-in 2 --hole-kib 16",
    )?;
    let (huge0, rss0) = (g.anon_huge_kib()?, g.rss_kib()?);
    let balloon = mem_mib / 4;
    let (_, inflate) = time_to(&mut g, (mem_mib - balloon) * MIB, mem_mib * MIB)?;
    let (huge1, rss1) = (g.anon_huge_kib()?, g.rss_kib()?);
    stop_workload(&mut g)?;
    g.unload(driver)?;
    g.shutdown()?;
    Ok(FragRun {
        driver,
        inflate_mib_s: balloon as f64 / inflate.as_secs_f64(),
        huge_before_mib: huge0 as f64 / 1024.0,
        huge_kept_mib: huge1 as f64 / 1024.0,
        rss_freed_mib: rss0.saturating_sub(rss1) as f64 / 1024.0,
    })
}

/// How fast this host discards touched 4 KiB pages one `madvise` at a time,
/// which is what QEMU does for every inflated balloon PFN (MiB/s). With
/// `sibling`, another thread of the process writes memory meanwhile, as a
/// second vCPU does if the guest allocates while QEMU discards: every
/// discard must then shoot down that thread's TLB (an IPI).
fn host_discard_mib_s(mib: usize, sibling: bool) -> Result<f64> {
    let len = mib << 20;
    // SAFETY: An anonymous private mapping of `len` bytes, unmapped below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(Error::io("mmap for the discard benchmark")(
            std::io::Error::last_os_error(),
        ));
    }
    let base = p.cast::<u8>();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let best = std::thread::scope(|s| {
        if sibling {
            s.spawn(|| {
                const LEN: usize = 64 << 20;
                let mut buf = vec![0u8; LEN];
                let mut i = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    buf[i % LEN] = buf[i % LEN].wrapping_add(1);
                    i = i.wrapping_add(4096 + 64);
                }
                std::hint::black_box(&buf);
            });
        }
        let best = discard_best_of_3(base, len, mib);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        best
    });
    // SAFETY: The mapping made above.
    unsafe { libc::munmap(p, len) };
    Ok(best)
}

/// The best of three rounds: touch every page of the mapping at `base`,
/// then discard them one at a time (MiB/s).
fn discard_best_of_3(base: *mut u8, len: usize, mib: usize) -> f64 {
    let mut best = 0.0f64;
    for _ in 0..3 {
        for off in (0..len).step_by(4096) {
            // SAFETY: Inside the mapping.
            unsafe { base.add(off).write_volatile(1) };
        }
        let t = Instant::now();
        for off in (0..len).step_by(4096) {
            // SAFETY: A page-aligned range inside the mapping.
            unsafe { libc::madvise(base.add(off).cast(), 4096, libc::MADV_DONTNEED) };
        }
        best = best.max(mib as f64 / t.elapsed().as_secs_f64());
    }
    best
}

fn main() -> Result<()> {
    let pairs: usize = std::env::var("BENCH_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let (mem_mib, balloon_mib) = (2048u64, 1536u64);
    let mut runs = Vec::new();
    for i in 0..pairs {
        for driver in [Driver::BalloonRs, Driver::C] {
            let r = run_once(driver, mem_mib, balloon_mib)?;
            eprintln!(
                "pair {}/{pairs} {driver}: inflate {:.0} MiB/s, deflate {:.0} MiB/s, latency {:.1} ms, cpu {:.0} ms/GiB, slab {:.2} B/page",
                i + 1,
                r.inflate_mib_s,
                r.deflate_mib_s,
                r.latency_ms,
                r.cpu_ms_per_gib,
                r.slab_bytes_per_page
            );
            runs.push(r);
        }
    }
    let host = host_discard_mib_s(512, false)?;
    let host_busy = host_discard_mib_s(256, true)?;
    let col = |d: Driver, f: fn(&Run) -> f64| driver_median(&runs, d, f);
    let ratio = |f: fn(&Run) -> f64| pair_ratio(&runs, f);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Inflate and deflate {balloon_mib} MiB of a {mem_mib} MiB guest, {pairs} pairs run alternately \
         (balloon_rs, C, balloon_rs, C, ...); medians, and the median of per-pair ratios.\n"
    );
    let metrics: [Metric; 7] = [
        ("inflate MiB/s", |r| r.inflate_mib_s),
        ("deflate MiB/s", |r| r.deflate_mib_s),
        ("latency QMP balloon -> first change of actual (ms)", |r| {
            r.latency_ms
        }),
        ("guest kernel CPU during inflation (ms per GiB)", |r| {
            r.cpu_ms_per_gib
        }),
        ("slab growth per ballooned page (bytes)", |r| {
            r.slab_bytes_per_page
        }),
        ("QEMU RSS freed by the inflation (MiB)", |r| r.rss_freed_mib),
        ("QEMU memory still in host huge pages after it (MiB)", |r| {
            r.huge_kept_mib
        }),
    ];
    metric_table(&mut md, &runs, &metrics);
    let c_inflate = col(Driver::C, |r| r.inflate_mib_s);
    let goal = |what: &str, ratio: f64, want: f64| {
        format!(
            "{what}: {ratio:.2}x C (goal {want}x): {}",
            if ratio >= want { "met" } else { "missed" }
        )
    };
    let _ = writeln!(
        md,
        "\n{}; {}.",
        goal("inflate", ratio(|r| r.inflate_mib_s), 1.5),
        goal("deflate", ratio(|r| r.deflate_mib_s), 1.0)
    );
    // Where balloon_rs's time goes (debugfs), against C's whole time per MiB.
    let rs_runs: Vec<&Run> = runs
        .iter()
        .filter(|r| r.driver == Driver::BalloonRs)
        .collect();
    if let Some(first) = rs_runs.first() {
        let _ = writeln!(
            md,
            "\nWhere the time goes, ns per MiB (median of runs; balloon_rs from its debugfs, C only \
             as a whole — its driver has no such counters):\n"
        );
        let _ = writeln!(md, "| phase | balloon_rs | C (whole) |");
        let _ = writeln!(md, "| --- | --- | --- |");
        let whole = |d: Driver, f: fn(&Run) -> f64| 1e9 / col(d, f);
        for (name, _) in &first.split {
            let mut v: Vec<f64> = rs_runs
                .iter()
                .filter_map(|r| r.split.iter().find(|(n, _)| n == name).map(|x| x.1))
                .collect();
            let c = match name.as_str() {
                "inflate_alloc_ns_per_mib" => format!(
                    "{:.0} (all of inflate)",
                    whole(Driver::C, |r| r.inflate_mib_s)
                ),
                "deflate_dequeue_ns_per_mib" => format!(
                    "{:.0} (all of deflate)",
                    whole(Driver::C, |r| r.deflate_mib_s)
                ),
                _ => String::new(),
            };
            let _ = writeln!(
                md,
                "| {} | {:.0} | {c} |",
                name.trim_end_matches("_ns_per_mib"),
                median(&mut v)
            );
        }
        let _ = writeln!(
            md,
            "| all of inflate (wall) | {:.0} | |\n| all of deflate (wall) | {:.0} | |",
            whole(Driver::BalloonRs, |r| r.inflate_mib_s),
            whole(Driver::BalloonRs, |r| r.deflate_mib_s)
        );
        let orders: Vec<String> = first
            .orders
            .iter()
            .map(|(n, v)| format!("{} {:.0} MiB", n.trim_start_matches("inflated_"), v / 256.0))
            .collect();
        let _ = writeln!(
            md,
            "\nballoon_rs's pages by order in the first run: {}.",
            orders.join(", ")
        );
    }
    let _ = writeln!(
        md,
        "\nHost-side limit: this host discards touched 4 KiB pages one `madvise(MADV_DONTNEED)` at a time \
         (what QEMU does per balloon PFN) at {host:.0} MiB/s (best of 3, 512 MiB): {:.2}x the C driver's \
         inflation, the bound for a guest that spent no time at all per page. With another thread of \
         the process running meanwhile (a second vCPU allocating while QEMU discards), every discard \
         also shoots down that thread's TLB: {host_busy:.0} MiB/s (best of 3, 256 MiB), {:.2}x the rate alone.",
        host / c_inflate,
        host_busy / host
    );
    // A fragmented, fully written guest (1 GiB, a quarter ballooned).
    let frag_mem = 1024;
    let mut frag = Vec::new();
    for i in 0..pairs {
        for driver in [Driver::BalloonRs, Driver::C] {
            let r = run_fragmented(driver, frag_mem)?;
            eprintln!(
                "fragmented pair {}/{pairs} {driver}: inflate {:.0} MiB/s, huge pages {:.0} -> {:.0} MiB, RSS freed {:.0} MiB",
                i + 1,
                r.inflate_mib_s,
                r.huge_before_mib,
                r.huge_kept_mib,
                r.rss_freed_mib
            );
            frag.push(r);
        }
    }
    let _ = writeln!(
        md,
        "\nA fragmented, fully written {frag_mem} MiB guest (written once, then half of it held by a \
         workload that gave every other 16 KiB back), {} MiB ballooned; {pairs} pairs:\n",
        frag_mem / 4
    );
    let frag_metrics: [Metric<FragRun>; 4] = [
        ("inflate MiB/s", |r| r.inflate_mib_s),
        ("host huge pages before (MiB)", |r| r.huge_before_mib),
        ("host huge pages kept after (MiB)", |r| r.huge_kept_mib),
        ("QEMU RSS freed (MiB)", |r| r.rss_freed_mib),
    ];
    metric_table(&mut md, &frag, &frag_metrics);
    let _ = writeln!(
        md,
        "\n{}.",
        goal(
            "fragmented guest, host huge pages kept",
            pair_ratio(&frag, |r| r.huge_kept_mib),
            1.5
        )
    );

    let dir = qemu_test::artifacts::repo_root().join("build/bench");
    std::fs::create_dir_all(&dir).map_err(Error::io("creating build/bench"))?;
    std::fs::write(dir.join("report.md"), &md).map_err(Error::io("writing report.md"))?;
    let raw: Vec<String> = runs
        .iter()
        .map(|r| format!("{r:?}"))
        .chain(frag.iter().map(|r| format!("{r:?}")))
        .collect();
    std::fs::write(dir.join("runs.txt"), raw.join("\n")).map_err(Error::io("writing runs.txt"))?;
    println!("{md}");
    Ok(())
}
