//! `balloon-host` as a user runs it: bad input is a clear error that
//! changes nothing; Ctrl-C and SIGKILL leave the host as it was (after
//! `balloon-host restore` for SIGKILL, which no process can catch).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::host_settings;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const BIN: &str = env!("CARGO_BIN_EXE_balloon-host");
const JOURNAL: &str = "/run/balloon-host/journal.json";

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("balloon-host-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

const SCENARIO: &str = r#"
name = "cli"
duration = 120
tick = 1
[host]
capacity_mib = 600
min_free_mib = 64
swap_file_mib = 256
[[guest]]
name = "a"
memory_mib = 256
[[guest.workload]]
at = 0
mib = 100
content = "dup"
hold = 100
"#;

#[test]
fn malformed_and_hostile_scenarios_are_clear_errors() -> TestResult {
    let dir = scratch("bad");
    let before = host_settings();
    let cases: [(&str, &str, &[&str]); 6] = [
        ("negative", "", &["line 12", "-5"]),
        ("huge", "memory_mib = 256", &["memory_mib", "line 11"]),
        ("unknown", "name = \"a\"", &["unknown field", "colour"]),
        ("missing", "capacity_mib = 600", &["capacity_mib"]),
        ("toobig", "mib = 100", &["workload[0].mib", "line 14"]),
        ("garbage", "[host]", &["line"]),
    ];
    for (what, find, expect) in cases {
        let text = match what {
            "negative" => SCENARIO.replace("memory_mib = 256", "memory_mib = 256\nlimit_mib = -5"),
            "huge" => SCENARIO.replace(find, "memory_mib = 99999999999"),
            "unknown" => SCENARIO.replace(find, "name = \"a\"\ncolour = \"red\""),
            "missing" => SCENARIO.replace(find, ""),
            "toobig" => SCENARIO.replace(find, "mib = 256"),
            _ => SCENARIO.replace(find, "[host"),
        };
        let path = dir.join(format!("{what}.toml"));
        std::fs::write(&path, text)?;
        let out = Command::new(BIN)
            .arg("run")
            .arg(&path)
            .arg("--no-live")
            .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(err.contains(&path.display().to_string()), "{what}: {err}");
        for e in expect {
            assert!(err.contains(e), "{what}: expected {e:?} in: {err}");
        }
        assert!(!err.contains("panicked"), "{what}: {err}");
    }
    let out = Command::new(BIN)
        .args(["run", "/nonexistent.toml"])
        .output()?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("reading /nonexistent.toml"));
    let out = Command::new(BIN)
        .args(["set", "/nonexistent.sock", "12Q"])
        .output()?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("size \"12Q\""));
    assert_eq!(before, host_settings());
    Ok(())
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> TestResult {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("timed out waiting for {what}").into())
}

fn start_run(
    dir: &Path,
    extra: &[&str],
) -> Result<std::process::Child, Box<dyn std::error::Error>> {
    let path = dir.join("s.toml");
    std::fs::write(&path, SCENARIO)?;
    Ok(Command::new(BIN)
        .arg("run")
        .arg(&path)
        .arg("--no-live")
        .args(extra)
        .arg("--out")
        .arg(dir.join("out"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?)
}

/// Ctrl-C (SIGINT) mid-run, after scraping `/metrics`: the guests stop, the
/// host is put back, the timeline and chart of what ran are written.
#[test]
fn ctrl_c_restores_the_host() -> TestResult {
    let dir = scratch("int");
    let before = host_settings();
    // A free port for the metrics endpoint.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = start_run(&dir, &["--metrics", &addr])?;
    let timeline = dir.join("out/timeline.jsonl");
    wait_for("the first ticks", Duration::from_secs(120), || {
        std::fs::read_to_string(&timeline).is_ok_and(|t| t.lines().count() >= 5)
    })?;
    assert_ne!(
        before,
        host_settings(),
        "the run changed nothing to restore"
    );
    // Mid-run, the Prometheus endpoint serves the latest tick: the host's
    // capacity as configured and the VM's QEMU resident memory (at least the
    // 100 MiB its workload wrote).
    let page = scrape(&addr)?;
    let value = |name: &str| -> Option<f64> {
        page.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
    };
    const MIB: f64 = 1024.0 * 1024.0;
    assert_eq!(
        value("balloon_host_capacity_bytes "),
        Some(600.0 * MIB),
        "{page}"
    );
    let resident = value("balloon_vm_resident_bytes{vm=\"a\"} ")
        .ok_or(format!("no resident gauge:\n{page}"))?
        / MIB;
    assert!(resident >= 100.0, "resident {resident} MiB:\n{page}");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert_eq!(before, host_settings());
    assert!(!Path::new(JOURNAL).exists());
    assert!(dir.join("out/memory.png").exists());
    Ok(())
}

/// One HTTP GET of /metrics; the body.
fn scrape(addr: &str) -> Result<String, Box<dyn std::error::Error>> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or(format!("no HTTP answer: {text}"))?;
    if !head.starts_with("HTTP/1.") || !head.contains(" 200 ") {
        return Err(format!("metrics: {head}").into());
    }
    Ok(body.to_string())
}

/// SIGKILL: nothing can run in the stub, its QEMUs die with it, the journal
/// stays, a new run refuses to start, and `balloon-host restore` puts
/// everything back.
#[test]
fn sigkill_then_restore() -> TestResult {
    let dir = scratch("kill");
    let before = host_settings();
    let mut child = start_run(&dir, &[])?;
    let timeline = dir.join("out/timeline.jsonl");
    wait_for("the first ticks", Duration::from_secs(120), || {
        std::fs::read_to_string(&timeline).is_ok_and(|t| t.lines().count() >= 3)
    })?;
    child.kill()?;
    child.wait()?;
    assert!(Path::new(JOURNAL).exists(), "no journal after SIGKILL");
    assert_ne!(before, host_settings());
    let out = Command::new(BIN)
        .arg("run")
        .arg(dir.join("s.toml"))
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("balloon-host restore"),
        "{err}"
    );
    let out = Command::new(BIN).arg("restore").output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(before, host_settings());
    assert!(!Path::new(JOURNAL).exists());
    wait_for("its QEMU to exit", Duration::from_secs(10), || {
        !Command::new("pgrep")
            .args([
                "-f",
                &format!("qemu-system[-]x86.*balloon_rs-a-{}-", child.id()),
            ])
            .status()
            .is_ok_and(|s| s.success())
    })?;
    Ok(())
}

/// A 384 MiB guest running balloon_rs, as someone else would have started
/// it: the harness holds its own QMP socket (QEMU serves one client per
/// socket), so it gets a second one, `DIR/qmp.sock`, for balloon-host.
fn guest_with_second_qmp(
    dir: &Path,
    name: &str,
) -> Result<(qemu_ctl::Guest, String), Box<dyn std::error::Error>> {
    use qemu_ctl::{Driver, Guest, GuestConfig};
    let sock_s = dir.join("qmp.sock").display().to_string();
    let mut cfg = GuestConfig::new(name)?;
    cfg.mem_mib = 384;
    cfg.cpus = 1;
    cfg.extra_qemu_args = vec!["-qmp".into(), format!("unix:{sock_s},server=on,wait=off")];
    let mut g = Guest::boot(cfg)?;
    g.load(Driver::BalloonRs)?;
    Ok((g, sock_s))
}

/// A guest someone else started: `status` shows it, `set` moves its
/// balloon (and refuses more than the guest has), and `attach` manages it
/// under pressure without owning it — the guest lives on afterwards.
#[test]
fn status_set_and_attach_a_running_guest() -> TestResult {
    use qemu_ctl::MIB;
    let dir = scratch("attach");
    let before = host_settings();
    let (mut g, sock_s) = guest_with_second_qmp(&dir, "attached")?;
    // A socket another client holds is a clear error, not a hang.
    let busy = g.dir().join("qmp.sock").display().to_string();
    let out = Command::new(BIN).args(["status", &busy]).output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("another client"),
        "{err}"
    );

    let out = Command::new(BIN).args(["status", &sock_s]).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&sock_s) && text.contains(" 384 "), "{text}");

    let out = Command::new(BIN)
        .args(["set", &sock_s, "300M", "--wait", "60"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(g.qmp().guest_size()?, 300 * MIB);
    let out = Command::new(BIN).args(["set", &sock_s, "1G"]).output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("more than the guest's 384 MiB"),
        "{err}"
    );
    assert_eq!(
        g.qmp().guest_size()?,
        300 * MIB,
        "a refused set changed the target"
    );
    g.qmp().set_guest_size(384 * MIB)?;
    g.qmp()
        .wait_guest_size(384 * MIB, Duration::from_secs(60))?;

    // Memory the guest freed but QEMU still holds: something to reclaim.
    g.sh("balloon-guest workload --mib 200 --content text --hold 1")?;
    let rss_before = g.rss_kib()? / 1024;
    let out = Command::new(BIN)
        .args([
            "attach",
            "--capacity",
            "240",
            "--min-free",
            "40",
            "--duration",
            "25",
            "--tick",
            "1",
        ])
        .args(["--tiers", "ballooning", "--no-live", "--out"])
        .arg(dir.join("out"))
        .arg(format!("a={sock_s}"))
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let samples = host_stub::record::timeline::read(&dir.join("out/timeline.jsonl"))?;
    let min_target = samples.iter().map(|s| s.vms[0].target).min().unwrap_or(384);
    assert!(
        min_target <= 384 - 64,
        "attach ballooned only to {min_target} MiB"
    );
    g.check_alive("after attach")?;
    let rss_after = g.rss_kib()? / 1024;
    assert!(
        rss_after + 64 <= rss_before,
        "QEMU RSS {rss_before} -> {rss_after} MiB"
    );
    assert!(samples
        .iter()
        .any(|s| s.events.iter().any(|e| e.contains("BALLOON_CHANGE"))));
    g.shutdown()?;
    assert_eq!(before, host_settings());
    Ok(())
}

/// `attach --config` as a daemon runs it: from a config file naming a
/// running guest, until SIGTERM; SIGHUP with a changed capacity and shares
/// applies them at the next tick, SIGHUP with a broken file is refused and
/// the running configuration stays; SIGTERM stops it cleanly with the host
/// put back, and the guest lives on.
#[test]
fn attach_config_reloads_on_sighup() -> TestResult {
    let dir = scratch("daemon");
    let before = host_settings();
    let (mut g, sock_s) = guest_with_second_qmp(&dir, "daemon")?;
    let config = |capacity: &str, shares: u32| {
        format!(
            "name = \"daemon\"\ntick = 1\n[host]\ncapacity_mib = \"{capacity}\"\n\
             [tiers]\nsharing = false\nballooning = true\ncompression = false\nswapping = false\n\
             [[guest]]\nname = \"a\"\nqmp = \"{sock_s}\"\nshares = {shares}\n"
        )
    };
    let path = dir.join("balloon-host.toml");
    std::fs::write(&path, config("1G", 1000))?;
    let child = Command::new(BIN)
        .args(["attach", "--config"])
        .arg(&path)
        .arg("--out")
        .arg(dir.join("out"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id() as i32;
    let timeline = dir.join("out/timeline.jsonl");
    // The daemon appends while we read: a read that catches a line half
    // written is tried again.
    let samples = || {
        (0..20)
            .find_map(|_| {
                host_stub::record::timeline::read(&timeline)
                    .map_err(|_| std::thread::sleep(Duration::from_millis(50)))
                    .ok()
            })
            .unwrap_or_default()
    };
    wait_for("the first ticks", Duration::from_secs(60), || {
        samples().len() >= 3
    })?;
    assert_eq!(samples().last().map(|s| s.host.capacity), Some(1024));
    // A changed file, then SIGHUP: applied at the next tick.
    std::fs::write(&path, config("768M", 3000))?;
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    wait_for("the reload", Duration::from_secs(30), || {
        samples().last().is_some_and(|s| s.host.capacity == 768)
    })?;
    let events: Vec<String> = samples().into_iter().flat_map(|s| s.events).collect();
    assert!(
        events
            .iter()
            .any(|e| e.contains("host.capacity_mib 1024 -> 768")
                && e.contains("a.shares 1000 -> 3000")),
        "{events:?}"
    );
    // A broken file: refused, nothing changes, the daemon goes on.
    std::fs::write(&path, config("768M", 3000).replace("shares", "shrares"))?;
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    wait_for("the refusal", Duration::from_secs(30), || {
        samples()
            .iter()
            .flat_map(|s| s.events.iter())
            .any(|e| e.contains("refused") && e.contains("shrares"))
    })?;
    let n = samples().len();
    wait_for("ticks after the refusal", Duration::from_secs(30), || {
        samples().len() >= n + 2
    })?;
    assert_eq!(samples().last().map(|s| s.host.capacity), Some(768));
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let out = child.wait_with_output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("reloaded") && err.contains("refused"),
        "the log says it too: {err}"
    );
    assert_eq!(before, host_settings());
    g.check_alive("after the daemon stopped")?;
    g.shutdown()?;
    Ok(())
}

#[test]
fn simulate_cluster_compares_balancing_and_draws_the_chart() -> TestResult {
    let dir = scratch("cluster");
    let out = Command::new(BIN)
        .args(["simulate", "--hosts", "3", "--vms", "30", "--hours", "2"])
        .args(["--first-host-pct", "50", "--chart"])
        .arg(&dir)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("30 VMs") && stdout.contains("3 hosts"),
        "{stdout}"
    );
    let row = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
    };
    let (none, drs) = (
        row("none").ok_or("no 'none' row")?,
        row("drs").ok_or("no 'drs' row")?,
    );
    // Column 12 is the migration count: none never migrates.
    assert_eq!(none[12], "0", "{stdout}");
    assert!(
        drs[12].parse::<u32>()? > 0,
        "an uneven cluster should migrate: {stdout}"
    );
    for f in ["cluster.svg", "cluster.png"] {
        assert!(
            std::fs::metadata(dir.join(f))?.len() > 1000,
            "{f} missing or empty"
        );
    }
    let out = Command::new(BIN)
        .args(["simulate", "--chart"])
        .arg(&dir)
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--hosts 2 or more"));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
