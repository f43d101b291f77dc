//! Short real scenarios: balloon-host managing QEMU guests with balloon_rs,
//! asserting each tier's effect with numbers, and that every host setting
//! is back afterwards. Run one at a time (`make test-host`): KSM, zswap and
//! swap are machine-wide.

use host_stub::control::{self, RunOptions, RunReport};
use host_stub::engine::policy::HostState;
use host_stub::record::timeline::AlertKind;
use host_stub::record::timeline::{Sample, VmStatus};
use host_stub::scenario::Scenario;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

mod common;
use common::host_settings;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("balloon-host-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Runs a scenario with test options; checks the host is as before.
fn run_scenario(
    text: &str,
    tweak: impl FnOnce(&mut RunOptions),
) -> Result<RunReport, Box<dyn std::error::Error>> {
    let sc = Scenario::parse(text, Path::new("test scenario"))?;
    let dir = out_dir(&sc.name);
    let mut opts = RunOptions::for_scenario(&sc.name);
    opts.out_dir = dir.clone();
    opts.live = false;
    opts.journal = Some(dir.join("journal.json"));
    opts.swap_file =
        std::env::temp_dir().join(format!("balloon-host-test-{}.swap", std::process::id()));
    tweak(&mut opts);
    let before = host_settings();
    let stop = AtomicBool::new(false);
    let report = control::run(&sc, &opts, &stop)?;
    let after = host_settings();
    assert_eq!(before, after, "host settings changed by the run");
    assert!(!dir.join("journal.json").exists(), "journal left behind");
    assert!(
        report.restore_failures.is_empty(),
        "{:?}",
        report.restore_failures
    );
    assert!(!opts.swap_file.exists(), "swap file left behind");
    for f in ["timeline.jsonl", "memory.svg", "memory.png", "summary.json"] {
        assert!(dir.join(f).exists(), "{f} not written");
    }
    // The timeline on disk is what the run returned.
    assert_eq!(
        host_stub::record::timeline::read(&dir.join("timeline.jsonl"))?.len(),
        report.samples.len()
    );
    Ok(report)
}

fn vm<'a>(s: &'a Sample, name: &str) -> &'a host_stub::record::timeline::VmSample {
    s.vms.iter().find(|v| v.name == name).expect("vm in sample")
}

fn first_inflation(samples: &[Sample], name: &str) -> Option<f64> {
    samples
        .iter()
        .find(|s| vm(s, name).target < vm(s, name).configured)
        .map(|s| s.t)
}

/// The idle guest (a short burst whose freed memory the host still backs)
/// is ballooned before the busy one (holding its working set); a reservation holds; when the busy guest's spike
/// ends (free page reporting returns its memory) the host leaves pressure
/// and every balloon comes back. KSM is made unavailable (a KSM directory
/// that does not exist): the run says so and the other tiers still work.
#[test]
fn idle_guest_first_reservation_holds_balloons_return() -> TestResult {
    let report = run_scenario(
        r#"
name = "idle-first"
duration = 90
tick = 3
[host]
capacity_mib = 560
min_free_mib = 40
[tiers]
compression = false
swapping = false
[[guest]]
name = "idle"
memory_mib = 384
[[guest.workload]]
at = 6
mib = 200
content = "text"
hold = 1
[[guest]]
name = "busy"
memory_mib = 384
reservation_mib = 320
free_page_reporting = true
[[guest.workload]]
at = 0
mib = 200
content = "random"
hold = 40
"#,
        |o| o.ksm_dir = PathBuf::from("/nonexistent/ksm"),
    )?;
    let s = &report.samples;
    assert!(report.lost.is_empty(), "{:?}", report.lost);
    assert!(
        report
            .unavailable
            .iter()
            .any(|u| u.contains("sharing") && u.contains("/nonexistent/ksm")),
        "unavailable tiers: {:?}",
        report.unavailable
    );
    assert!(
        s.iter().all(|x| x.host.ksm.is_none()),
        "KSM savings reported without KSM"
    );
    // Pressure happened.
    assert!(
        s.iter().any(|x| x.host.state >= HostState::Soft),
        "the host never got under pressure: peak consumed {} MiB",
        s.iter().map(|x| x.host.consumed).max().unwrap_or(0)
    );
    // The idle guest gave first (a tick where both look alike can take a
    // step from each: the stats of a 1 s burst may still show it) and gave
    // the most.
    let idle_at = first_inflation(s, "idle").ok_or("idle guest never ballooned")?;
    if let Some(busy_at) = first_inflation(s, "busy") {
        assert!(
            idle_at <= busy_at,
            "idle ballooned at {idle_at} s, busy at {busy_at} s"
        );
    }
    let busy_peak = s.iter().map(|x| vm(x, "busy").balloon).max().unwrap_or(0);
    let idle_peak = s.iter().map(|x| vm(x, "idle").balloon).max().unwrap_or(0);
    assert!(idle_peak >= 64, "idle balloon peaked at {idle_peak} MiB");
    assert!(
        idle_peak >= busy_peak + 32,
        "idle gave {idle_peak} MiB, busy {busy_peak} MiB"
    );
    // Its QEMU gave the memory back to the host.
    let rss_before = s
        .iter()
        .take(10)
        .map(|x| vm(x, "idle").resident)
        .max()
        .unwrap_or(0);
    let rss_low = s
        .iter()
        .map(|x| vm(x, "idle").resident)
        .filter(|r| *r > 0)
        .min()
        .unwrap_or(0);
    assert!(
        rss_before >= rss_low + 64,
        "idle QEMU RSS {rss_before} -> {rss_low} MiB"
    );
    // The reservation held in every tick.
    for x in s {
        let b = vm(x, "busy");
        assert!(
            b.target >= 320 && (b.actual == 0 || b.actual >= 320),
            "busy at {} s: target {} actual {}",
            x.t,
            b.target,
            b.actual
        );
    }
    // Right-sizing from this timeline: the busy guest's use covers its
    // 200 MiB working set, and the recommendation covers that use.
    let rs = host_stub::record::report::build(std::slice::from_ref(s))?;
    let busy = rs
        .vms
        .iter()
        .find(|v| v.name == "busy")
        .ok_or("no busy row")?;
    let used = busy.used.as_ref().ok_or("busy has no use statistics")?;
    assert!(used.peak >= 200.0, "busy peak use {:.0} MiB", used.peak);
    assert!(
        busy.recommended
            .is_some_and(|r| r as f64 >= used.p95 + 64.0),
        "{busy:?}"
    );
    assert!(rs
        .vms
        .iter()
        .find(|v| v.name == "idle")
        .is_some_and(|v| v.ballooned_s > 0.0));
    let dir = out_dir("report");
    std::fs::create_dir_all(&dir)?;
    let (svg, png) = (dir.join("r.svg"), dir.join("r.png"));
    host_stub::render::chart::render_report(std::slice::from_ref(s), &rs, &svg, &png)?;
    let text = std::fs::read_to_string(&svg)?;
    assert!(
        text.contains("busy: configured 384 MiB, recommended") && text.contains("idle:"),
        "report chart lacks the VM panels"
    );
    // Pressure passed and the balloons came back.
    let last = s.last().ok_or("no samples")?;
    assert_eq!(
        last.host.state,
        HostState::High,
        "host still {} at the end",
        last.host.state
    );
    for v in &last.vms {
        assert_eq!(v.status, VmStatus::Running);
        assert_eq!(
            (v.target, v.actual),
            (v.configured, v.configured),
            "{} not returned",
            v.name
        );
    }
    Ok(())
}

/// Near-identical pages in two guests: KSM merges them and the stub
/// reports the saving per VM; afterwards KSM is back as it was (unmerged).
///
/// What the policy guarantees, and so what is asserted: KSM runs while the
/// host is short of memory and is paused once it is high again. So the run
/// ends high although the guests' resident memory alone would not let it,
/// the saving is what got it there, and consumption counts that saving.
/// Which guest's pages KSM happens to scan first decides how the saving is
/// split between them, not the policy: only the sum of the guests' shares
/// is checked against KSM's own figure.
#[test]
fn ksm_shares_duplicate_pages() -> TestResult {
    const CAPACITY: u64 = 700;
    const MIN_FREE: u64 = 64;
    let report = run_scenario(
        &format!(
            r#"
name = "ksm"
duration = 30
tick = 1
[host]
capacity_mib = {CAPACITY}
min_free_mib = {MIN_FREE}
[tiers]
ballooning = false
compression = false
swapping = false
[policy]
ksm_sleep_ms = 10
[[guest]]
name = "a"
memory_mib = 384
[[guest.workload]]
at = 0
mib = 160
content = "dup"
hold = 60
[[guest]]
name = "b"
memory_mib = 384
[[guest.workload]]
at = 0
mib = 160
content = "dup"
hold = 60
"#
        ),
        |_| {},
    )?;
    let s = &report.samples;
    assert!(report.lost.is_empty(), "{:?}", report.lost);
    if report.unavailable.iter().any(|u| u.contains("sharing")) {
        return Err(format!("KSM unavailable: {:?}", report.unavailable).into());
    }
    let ran = s
        .iter()
        .position(|x| x.host.ksm.as_ref().is_some_and(|k| k.run == 1))
        .ok_or("KSM never ran")?;
    assert!(
        s[ran].host.state != HostState::High,
        "KSM started while the host was high (t = {})",
        s[ran].t
    );
    let last = s.last().ok_or("no samples")?;
    let rss: u64 = last.vms.iter().map(|v| v.resident).sum();
    // The high threshold: 400 % of min_free (policy::Thresholds::default).
    let high_free = MIN_FREE * 4;
    assert!(
        rss + high_free > CAPACITY,
        "premise: without KSM the host would be high anyway (RSS {rss} MiB of {CAPACITY})"
    );
    assert_eq!(
        last.host.state,
        HostState::High,
        "KSM ran but the host did not get back to high: consumed {} of {CAPACITY} MiB, RSS {rss}",
        last.host.consumed
    );
    let sharing = last.host.ksm.as_ref().ok_or("no KSM sample")?.sharing;
    // Consumption is RSS minus each guest's share of the saving; the shares
    // are rounded to whole MiB per guest and RSS and KSM's counters are read
    // a few milliseconds apart: 8 MiB.
    let consumed = last.host.consumed as f64;
    assert!(
        (rss as f64 - sharing - consumed).abs() <= 8.0,
        "consumed {consumed} MiB is not RSS {rss} minus KSM's saving {sharing:.0}"
    );
    let shares: f64 = last.vms.iter().map(|v| v.shared).sum();
    assert!(
        (shares - sharing).abs() <= 8.0,
        "the guests' shares add up to {shares:.0} MiB, KSM saved {sharing:.0}"
    );
    // The saving is at least what it took to leave less than the high
    // threshold's worth consumed.
    assert!(
        sharing + 8.0 >= (rss + high_free - CAPACITY) as f64,
        "KSM saved {sharing:.0} MiB, the host needed {} to be high",
        rss + high_free - CAPACITY
    );
    Ok(())
}

/// With ballooning off and the host in hard state, the compression tier
/// limits the guest's memory cgroup: its QEMU's memory goes to zswap
/// (compressible text), measured as VmSwap and the zswap pool; zswap's pool
/// cap is the scenario's while the run lasts; the limit, zswap and its cap,
/// the swap file and the cgroup are gone afterwards.
#[test]
fn compression_pushes_memory_into_zswap() -> TestResult {
    const POOL: &str = "/sys/module/zswap/parameters/max_pool_percent";
    let read_pool = || std::fs::read_to_string(POOL).map(|v| v.trim().to_string());
    let host_pool = read_pool()?;
    let cap = if host_pool == "3" { "4" } else { "3" };
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let seen = {
        let done = std::sync::Arc::clone(&done);
        std::thread::spawn(move || {
            let mut seen = std::collections::BTreeSet::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(v) = std::fs::read_to_string(POOL) {
                    seen.insert(v.trim().to_string());
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            seen
        })
    };
    let report = run_scenario(
        &format!(
            r#"
name = "compress"
duration = 30
tick = 1
[host]
capacity_mib = 300
min_free_mib = 100
swap_file_mib = 512
zswap_max_pool_percent = {cap}
[tiers]
sharing = false
ballooning = false
[[guest]]
name = "a"
memory_mib = 512
[[guest.workload]]
at = 0
mib = 240
content = "text"
hold = 60
"#
        ),
        |_| {},
    );
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = seen.join().map_err(|_| "pool watcher panicked")?;
    let report = report?;
    let s = &report.samples;
    assert!(report.lost.is_empty(), "{:?}", report.lost);
    if !report.unavailable.is_empty() {
        return Err(format!("tiers unavailable here: {:?}", report.unavailable).into());
    }
    assert!(
        seen.contains(cap),
        "max_pool_percent seen during the run: {seen:?}, not {cap}"
    );
    assert_eq!(read_pool()?, host_pool, "max_pool_percent not put back");
    assert!(
        s.iter().any(|x| x.host.state >= HostState::Hard),
        "never reached hard"
    );
    assert!(
        s.iter().any(|x| vm(x, "a").cgroup_limit.is_some()),
        "no cgroup limit was set"
    );
    let compressed = s.iter().map(|x| vm(x, "a").compressed).fold(0.0, f64::max);
    assert!(compressed >= 32.0, "compressed at most {compressed:.0} MiB");
    let pool = s
        .iter()
        .filter_map(|x| x.host.zswap_pool)
        .fold(0.0, f64::max);
    assert!(
        pool > 0.0 && pool < compressed,
        "zswap pool {pool:.0} MiB for {compressed:.0} MiB"
    );
    let rss_peak = s.iter().map(|x| vm(x, "a").resident).max().unwrap_or(0);
    let rss_end = s.last().map_or(0, |x| vm(x, "a").resident);
    assert!(rss_end + 32 <= rss_peak, "RSS {rss_peak} -> {rss_end} MiB");
    Ok(())
}

/// A QEMU killed mid-run is marked lost; the other guest is still managed
/// to the end; the host is put back.
#[test]
fn killed_qemu_is_lost_others_go_on() -> TestResult {
    let me = std::process::id();
    // The kill comes once the loop has ticked three times: booting (and
    // writing the swap file before it) takes longer on a loaded machine,
    // and a QEMU killed before the loop starts fails the run's start.
    let timeline = std::env::temp_dir()
        .join(format!("balloon-host-test-lost-{me}"))
        .join("timeline.jsonl");
    let killer = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
        while std::fs::read_to_string(&timeline).map_or(0, |t| t.lines().count()) < 3
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let pat = format!("qemu-system[-]x86.*balloon_rs-victim-{me}-");
        std::process::Command::new("pkill")
            .args(["-KILL", "-f", &pat])
            .status()
    });
    let report = run_scenario(
        r#"
name = "lost"
duration = 25
tick = 1
[host]
capacity_mib = 2048
[[guest]]
name = "victim"
memory_mib = 256
[[guest]]
name = "survivor"
memory_mib = 256
"#,
        |_| {},
    )?;
    let killed = killer.join().map_err(|_| "killer thread panicked")??;
    assert!(killed.success(), "pkill found no victim QEMU");
    assert_eq!(report.lost.len(), 1, "{:?}", report.lost);
    assert!(report.lost[0].contains("victim"), "{:?}", report.lost);
    let last = report.samples.last().ok_or("no samples")?;
    assert_eq!(vm(last, "victim").status, VmStatus::Lost);
    assert_eq!(vm(last, "survivor").status, VmStatus::Running);
    assert!(last.t >= 20.0, "run stopped at {} s", last.t);
    Ok(())
}

/// Alerts with real guests: a guest booted without a balloon driver is
/// named ("balloon driver missing or not responding") and the one with
/// balloon_rs is not; ballooning that lasts past the (shortened) threshold
/// is flagged as sustained, with advice; both are in the timeline and the
/// summary.
#[test]
fn alerts_name_a_missing_driver_and_sustained_ballooning() -> TestResult {
    let report = run_scenario(
        r#"
name = "alerts"
duration = 40
tick = 1
[host]
capacity_mib = 400
min_free_mib = 40
[tiers]
sharing = false
compression = false
swapping = false
[alerts]
sustained_balloon_s = 10
[[guest]]
name = "nodrv"
memory_mib = 256
driver = "none"
[[guest]]
name = "rs"
memory_mib = 384
[[guest.workload]]
at = 0
mib = 200
content = "text"
hold = 1
"#,
        |_| {},
    )?;
    let alerts: Vec<_> = report
        .samples
        .iter()
        .flat_map(|s| s.alerts.iter())
        .collect();
    let of = |kind: AlertKind, vm: &str| {
        alerts
            .iter()
            .filter(|a| a.kind == kind && a.vm.as_deref() == Some(vm))
            .count()
    };
    assert_eq!(
        of(AlertKind::BalloonNotResponding, "nodrv"),
        1,
        "{alerts:#?}"
    );
    assert_eq!(of(AlertKind::BalloonNotResponding, "rs"), 0, "{alerts:#?}");
    let nodrv = alerts
        .iter()
        .find(|a| a.kind == AlertKind::BalloonNotResponding)
        .ok_or("no alert")?;
    assert!(
        nodrv
            .advice
            .contains("balloon driver missing or not responding")
            && nodrv.evidence.contains("no memory statistics"),
        "{nodrv:?}"
    );
    assert!(nodrv.at >= 29.0, "raised at {} s, threshold 30 s", nodrv.at);
    assert_eq!(of(AlertKind::SustainedBallooning, "rs"), 1, "{alerts:#?}");
    assert_eq!(
        of(AlertKind::SustainedBallooning, "nodrv"),
        0,
        "{alerts:#?}"
    );
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        std::env::temp_dir()
            .join(format!("balloon-host-test-alerts-{}", std::process::id()))
            .join("summary.json"),
    )?)?;
    assert!(
        summary["alerts"].as_array().is_some_and(|a| a.len() >= 2),
        "{summary}"
    );
    Ok(())
}

/// Two hosts managed by one stub: host a is overrun (a workload in a guest
/// whose reservation forbids ballooning it), stays in soft or worse, and
/// the stub live-migrates a guest to host b with QEMU's own migration over
/// loopback. Host a recovers, host b carries the guest, and in the
/// migrated guest balloon_rs keeps its balloon (`actual` at the limit) and
/// keeps sending statistics.
#[test]
fn pressured_host_live_migrates_a_guest_to_the_other() -> TestResult {
    let report = run_scenario(
        r#"
name = "two-hosts"
duration = 50
tick = 2
[host]
capacity_mib = 450
min_free_mib = 40
[second_host]
capacity_mib = 900
min_free_mib = 40
sustain_ticks = 2
cooldown_s = 300
[tiers]
sharing = false
compression = false
swapping = false
[[guest]]
name = "web"
memory_mib = 384
limit_mib = 320
reservation_mib = 320
[[guest]]
name = "batch"
memory_mib = 384
limit_mib = 352
reservation_mib = 352
[[guest.workload]]
at = 2
mib = 250
content = "random"
hold = 200
"#,
        |_| {},
    )?;
    let s = &report.samples;
    assert!(report.lost.is_empty(), "{:?}", report.lost);
    let (at, moved) = s
        .iter()
        .enumerate()
        .find_map(|(k, x)| {
            x.events.iter().find_map(|e| {
                let (name, rest) = e.split_once(": live-migrated from host a to host b")?;
                let _ = rest;
                Some((k, name.to_string()))
            })
        })
        .ok_or_else(|| {
            let states: Vec<String> = s.iter().map(|x| x.host.state.to_string()).collect();
            format!("no migration; host a states: {states:?}")
        })?;
    // Only after sustained pressure (2 ticks in soft or worse).
    assert!(
        at >= 1
            && s[at - 1..=at]
                .iter()
                .all(|x| x.host.state >= HostState::Soft),
        "migrated at tick {at} without sustained pressure"
    );
    let limit = if moved == "web" { 320 } else { 352 };
    let after = &s[at + 1..];
    assert!(after.len() >= 5, "too few ticks after the migration");
    // Host a recovers; host b carries the guest.
    assert!(
        after.iter().any(|x| x.host.state <= HostState::Clear),
        "host a never recovered after the migration"
    );
    for x in after {
        let b = x
            .second_host
            .as_ref()
            .ok_or("no second host in the sample")?;
        assert!(b.vms.contains(&moved), "{moved} not on host b at {} s", x.t);
        let v = vm(x, &moved);
        assert_eq!(v.status, VmStatus::Running, "{moved} at {} s", x.t);
        assert!(
            b.host.consumed + 1 >= v.resident,
            "host b consumed {} MiB < {moved}'s resident {}",
            b.host.consumed,
            v.resident
        );
    }
    // The balloon came along: actual stays at the limit on host b.
    for x in &after[1..] {
        let v = vm(x, &moved);
        assert_eq!(
            v.actual, limit,
            "{moved} actual at {} s after the migration",
            x.t
        );
    }
    // Statistics flow from the destination: the guest's free memory keeps
    // being reported after the move.
    let late = &after[after.len() - 3..];
    assert!(
        late.iter()
            .all(|x| vm(x, &moved).guest.contains_key("available")),
        "{moved} sends no statistics from host b"
    );
    Ok(())
}
