//! Inflating in 2 MiB blocks: balloon_rs takes whole PMD-sized blocks where
//! the guest has them and falls back to smaller ones where it does not, and
//! so the host keeps its huge pages where the C driver's scattered 4 KiB
//! pages break them.

use qemu_test::{ensure, Driver, Guest, GuestConfig, Result};

mod common;
use common::{baseline, memory_back, resize, start_workload, stop_workload};

/// Guest pages in a 2 MiB block (x86-64, 4 KiB pages): debugfs counts them
/// under `inflated_order_9`.
const BLOCK_COUNTER: &str = "inflated_order_9";

/// A freshly booted guest has free 2 MiB blocks: 64 MiB of balloon come at
/// least 60 MiB in blocks (the rest may be the tail of the last one, cut by
/// the target). With all but a few MiB of its memory held by a workload
/// that then gives every other 16 KiB back (and proactive compaction off,
/// which would rebuild blocks meanwhile), few blocks are left: of the next
/// 128 MiB at least 48 come from the smaller orders after counted
/// fallbacks. Deflating gives every page back both times (MemTotal exact,
/// MemFree up by the balloon within 8 MiB).
#[test]
fn balloon_rs_inflates_in_blocks_and_falls_back_on_a_fragmented_guest() -> Result<()> {
    let mut g = Guest::boot(GuestConfig::new("blocks")?)?;
    g.load(Driver::BalloonRs)?;
    let size = g.config.mem_mib;
    let base = baseline(&mut g)?;
    resize(&mut g, size - 64)?;
    let d = g.balloon_rs_status()?;
    let blocks = d.get(BLOCK_COUNTER)?;
    ensure!(
        blocks >= 60 * 256,
        "only {} of 64 MiB inflated in 2 MiB blocks on a fresh guest:\n{}",
        blocks / 256,
        d.text
    );
    resize(&mut g, size)?;
    memory_back(&mut g, base, 8, "after deflating the blocks")?;

    // Every free page a hole: a workload takes all but 48 MiB of what is
    // available, then gives every other 16 KiB back (holes smaller than
    // the 32 KiB fallback order; 4 KiB ones take a debug kernel minutes
    // of munmap).
    no_proactive_compaction(&mut g)?;
    let avail = g.meminfo()?.mib("MemAvailable")?;
    start_workload(
        &mut g,
        avail - 48,
        "--content random --hold 0 --free-one-in 2 --hole-kib 16",
    )?;
    let before = g.balloon_rs_status()?;
    resize(&mut g, size - 128)?;
    let d = g.balloon_rs_status()?;
    let delta = |name: &str| -> Result<u64> { Ok(d.get(name)? - before.get(name)?) };
    let smaller = delta("inflated_order_0")? + delta("inflated_order_3")?;
    ensure!(
        delta("order_fallbacks")? > 0 && smaller >= 48 * 256,
        "a fragmented guest: {} fallbacks, {} MiB of 128 MiB from the smaller orders (want >= 48):\n{}",
        delta("order_fallbacks")?,
        smaller / 256,
        d.text
    );
    // The workload's exit frees slab it held (VMAs), which a KASAN kernel
    // keeps in quarantine for a while: MemFree is compared with what it
    // was after the exit, with the balloon still full, plus the balloon.
    stop_workload(&mut g)?;
    let free_inflated = g.meminfo()?.kib("MemFree")?;
    resize(&mut g, size)?;
    memory_back(
        &mut g,
        (base.0, free_inflated + 128 * 1024),
        8,
        "after the fragmented inflation",
    )?;
    g.unload(Driver::BalloonRs)?;
    g.shutdown()
}

/// Turns the guest's proactive compaction off (`compaction_proactiveness`
/// 0): kcompactd would otherwise migrate the workload's pages to rebuild
/// free blocks out of its holes while a test relies on them.
fn no_proactive_compaction(g: &mut Guest) -> Result<()> {
    g.sh("echo 0 > /proc/sys/vm/compaction_proactiveness")?;
    Ok(())
}

/// Free memory beyond the balloon that the fragmenting workload leaves
/// the guest (MiB): the workload's own kernel memory (page tables, a VMA per
/// hole) and the guest's activity while it runs come out of it.
const BLOCK_HEADROOM_MIB: u64 = 64;

/// What one driver's inflation of a fragmented guest left the host: QEMU's
/// huge pages (KiB) before and after, and how far its RSS fell.
struct HostPages {
    huge_before: u64,
    huge_after: u64,
    rss_fell: u64,
    /// The guest's free memory in 2 MiB blocks or larger before the
    /// inflation (MiB, from `/proc/buddyinfo`).
    free_blocks_mib: u64,
    /// How much of the balloon came in 2 MiB blocks (MiB; balloon_rs's
    /// debugfs, 0 for C, whose pages are all 4 KiB).
    balloon_blocks_mib: u64,
}

/// The guest's free memory in blocks of 2 MiB or more (order 9 and up),
/// in MiB, summed over its zones from `/proc/buddyinfo`.
fn free_block_mib(g: &mut Guest) -> Result<u64> {
    let text = g.sh("cat /proc/buddyinfo")?;
    let mut pages = 0u64;
    for line in text.lines() {
        // "Node 0, zone   Normal  c0 c1 ... c10": counts follow the zone name.
        let counts = line.split_whitespace().skip(4);
        for (order, count) in counts.enumerate().skip(9) {
            let count: u64 = count.parse().map_err(|_| qemu_test::Error::Parse {
                what: "/proc/buddyinfo".into(),
                detail: line.to_string(),
            })?;
            pages += count << order;
        }
    }
    Ok(pages / 256)
}

/// Boots a guest with `driver`, writes nearly all its memory once (the host
/// backs it with 2 MiB pages), fragments it (a workload holds up to half
/// the guest and gives every other 16 KiB back: holes smaller than a huge
/// page), and balloons a quarter of the guest.
///
/// The workload leaves the balloon's worth of free 2 MiB blocks plus
/// [`BLOCK_HEADROOM_MIB`] (a debug guest, whose KASAN shadow takes an
/// eighth of it, would otherwise have fewer free blocks than the balloon,
/// and which holes fill the rest decides the result); the guest's free
/// blocks before the inflation are checked as the test's premise.
fn inflate_fragmented(driver: Driver) -> Result<HostPages> {
    let mut g = Guest::boot(GuestConfig::new(&format!("thp-{driver}"))?)?;
    g.load(driver)?;
    let size = g.config.mem_mib;
    let avail = g.meminfo()?.mib("MemAvailable")?;
    g.sh(&format!(
        "balloon-guest workload --mib {} --content random --hold 1 >/dev/null",
        avail - 32
    ))?;
    no_proactive_compaction(&mut g)?;
    let written = g.anon_huge_kib()?;
    ensure!(
        written >= size * 1024 / 2,
        "premise: QEMU has only {} MiB in host huge pages after the guest wrote its memory \
         (host THP: {})",
        written / 1024,
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .unwrap_or_default()
            .trim()
    );
    let balloon = size / 4;
    let avail = g.meminfo()?.mib("MemAvailable")?;
    let workload = (size / 2).min(avail.saturating_sub(balloon + BLOCK_HEADROOM_MIB));
    start_workload(
        &mut g,
        workload,
        "--content random --hold 0 --free-one-in 2 --hole-kib 16",
    )?;
    let (huge_before, rss_before) = (g.anon_huge_kib()?, g.rss_kib()?);
    let free_blocks_mib = free_block_mib(&mut g)?;
    ensure!(
        free_blocks_mib >= balloon,
        "premise: the guest has only {free_blocks_mib} MiB free in 2 MiB blocks for a \
         {balloon} MiB balloon (a {workload} MiB workload of {avail} MiB available)"
    );
    resize(&mut g, size - balloon)?;
    let (huge_after, rss_after) = (g.anon_huge_kib()?, g.rss_kib()?);
    let balloon_blocks_mib = match driver {
        Driver::BalloonRs => g.balloon_rs_status()?.get(BLOCK_COUNTER)? / 256,
        Driver::C => 0,
    };
    stop_workload(&mut g)?;
    resize(&mut g, size)?;
    g.unload(driver)?;
    g.shutdown()?;
    Ok(HostPages {
        huge_before,
        huge_after,
        rss_fell: rss_before.saturating_sub(rss_after),
        free_blocks_mib,
        balloon_blocks_mib,
    })
}

/// The same fragmented guest (up to half of it held by a workload that gave
/// every other 16 KiB back, the balloon's worth of 2 MiB blocks left free),
/// a quarter ballooned, once per driver: the host frees about the same
/// memory for both (RSS falls by at least 3/4 of the balloon, within 1/8 of
/// the guest of each other), but QEMU keeps at least 1/32 of the guest more
/// in huge pages after balloon_rs, which takes whole 2 MiB blocks, than
/// after C, whose 4 KiB pages come from the holes and split the huge page
/// around each (C breaks the workload's part, balloon_rs only the quarter
/// it takes).
#[test]
fn balloon_rs_keeps_more_host_huge_pages_than_c_on_a_fragmented_guest() -> Result<()> {
    let size = GuestConfig::new("thp")?.mem_mib;
    let rs = inflate_fragmented(Driver::BalloonRs)?;
    let c = inflate_fragmented(Driver::C)?;
    let mib = |kib: u64| kib / 1024;
    let report = format!(
        "huge pages before/after, RSS fell, guest's free 2 MiB blocks, balloon in \
         blocks (MiB): balloon_rs {}/{}, {}, {}, {}; C {}/{}, {}, {}",
        mib(rs.huge_before),
        mib(rs.huge_after),
        mib(rs.rss_fell),
        rs.free_blocks_mib,
        rs.balloon_blocks_mib,
        mib(c.huge_before),
        mib(c.huge_after),
        mib(c.rss_fell),
        c.free_blocks_mib
    );
    eprintln!("{report}");
    let balloon_kib = size / 4 * 1024;
    for (who, h) in [("balloon_rs", &rs), ("C", &c)] {
        ensure!(
            h.rss_fell >= balloon_kib * 3 / 4,
            "{who}: QEMU's RSS fell by only {} MiB for a {} MiB balloon; {report}",
            mib(h.rss_fell),
            size / 4
        );
    }
    ensure!(
        rs.rss_fell.abs_diff(c.rss_fell) <= size * 1024 / 8,
        "the host freed different amounts; {report}"
    );
    // 1/32 of the guest (16 or 32 huge pages): the two guests' huge pages
    // differ by a few before the inflation. Runs kept 112 and 134 MiB more
    // of 512 (normal kernel) and 204 MiB more of 1 GiB (debug kernel). Before
    // the workload left the balloon's worth of free blocks, a debug balloon
    // came partly from the holes, and one run kept only 12 MiB more.
    ensure!(
        rs.huge_after >= c.huge_after + size * 1024 / 32,
        "balloon_rs did not keep more host huge pages than C; {report}"
    );
    Ok(())
}
