//! balloon-host's cgroup v2 path on a real cgroup v2 kernel.
//!
//! The development machine mounts cgroup v1; the hosts operators run
//! (Debian 12, Ubuntu 22.04+, Fedora, RHEL 9) mount v2. So the project's own
//! test kernel plays the host: it has MEMCG, ZSWAP and SWAP
//! (kernel/balloon_rs.config); the guest mounts cgroup2, puts an ext2 file
//! system on a RAM disk for the swap file, delegates the memory controller
//! to a `balloon-host.service` cgroup as systemd's `Delegate=yes` does, and
//! runs `balloon-guest mechanisms` there: the host stub's own mechanism code
//! (the `host-mechanisms` crate, linked into the guest binary) against a
//! workload of compressible pages. What the kernel reported comes back as
//! JSON; the assertions are here.

use qemu_ctl::{Guest, GuestConfig};
use serde_json::Value;
use std::time::Duration;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const WORKLOAD_MIB: f64 = 112.0;
const RECLAIM_MIB: f64 = 32.0;
const LIMIT_MIB: f64 = 64.0;
const SERVICE: &str = "/sys/fs/cgroup/balloon-host.service";

/// Runs the mechanisms check in `SERVICE`, as its only process; returns
/// its exit code and its JSON report.
fn run_check(g: &mut Guest) -> Result<(i32, Value), Box<dyn std::error::Error>> {
    let cmd = format!(
        "echo $$ > {SERVICE}/cgroup.procs && exec balloon-guest mechanisms \
         --workload-mib {WORKLOAD_MIB} --reclaim-mib {RECLAIM_MIB} --limit-mib {LIMIT_MIB} \
         --swap-file /mnt/disk/balloon-host.swap --swap-mib 96 --journal /tmp/journal.json"
    );
    // A subshell: the agent's own shell stays where it is.
    let out = g.run_timeout(&format!("({cmd})"), Duration::from_secs(600))?;
    let json = out
        .text
        .lines()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("no JSON report (exit {}):\n{}", out.code, out.text))?;
    Ok((out.code, serde_json::from_str(json)?))
}

fn mib(v: &Value, path: &str) -> f64 {
    v.pointer(path)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no number at {path} in the report"))
}

/// On the test kernel as a cgroup v2 host: without the memory controller
/// delegated the run stops with a clear error and changes nothing; with it,
/// the workload is charged to its VM cgroup, `memory.reclaim` moves the
/// asked amount into zswap, the limit (`memory.reclaim` then `memory.high`)
/// holds the cgroup at it with the rest compressed (the saving read from
/// `memory.stat`), the workload reads every page back intact while
/// throttled at `memory.high` and never OOM-killed, and afterwards zswap,
/// the swap file, the cgroups, the controllers, the journal and our own
/// cgroup are as before.
#[test]
fn cgroup_v2_limit_pushes_a_workload_into_zswap_and_everything_is_restored() -> TestResult {
    let mut cfg = GuestConfig::new("cgroup-v2")?;
    // 128 MiB RAM disk (brd allocates a page only when it is written).
    cfg.kernel_args = "brd.rd_size=131072".into();
    let mut g = Guest::boot(cfg)?;
    g.sh(
        "mount -t cgroup2 cgroup2 /sys/fs/cgroup && mke2fs -q /dev/ram0 && mkdir -p /mnt/disk \
         && mount -t ext2 /dev/ram0 /mnt/disk && mkdir {SERVICE}"
            .replace("{SERVICE}", SERVICE)
            .as_str(),
    )?;

    // Not delegated yet: a clear error, and nothing changed.
    let (code, r) = run_check(&mut g)?;
    let err = r["error"].as_str().unwrap_or_default();
    assert_ne!(code, 0, "the check passed without the memory controller");
    assert!(
        err.contains("not available") && err.contains("Delegate=yes"),
        "error without the memory controller: {err:?}"
    );
    assert_eq!(r["before"], r["after"], "settings changed by a failed run");

    // Delegated, as systemd does for a unit with Delegate=yes.
    g.sh("echo +memory > /sys/fs/cgroup/cgroup.subtree_control")?;
    let (code, r) = run_check(&mut g)?;
    let report = serde_json::to_string_pretty(&r)?;
    eprintln!("the mechanisms' report:\n{report}");
    assert_eq!(code, 0, "the check failed:\n{report}");
    assert!(r["error"].is_null(), "{report}");
    assert_eq!(r["flavour"], "v2");

    // The workload's pages are charged to its VM cgroup.
    let anon = mib(&r, "/filled/cgroup/anon");
    assert!(
        anon >= WORKLOAD_MIB * 0.9,
        "only {anon:.1} MiB of the {WORKLOAD_MIB} MiB workload charged to the VM cgroup\n{report}"
    );

    // memory.reclaim moves the asked amount into zswap, with no limit set.
    let moved = mib(&r, "/reclaimed/cgroup/zswapped") - mib(&r, "/filled/cgroup/zswapped");
    let anon_fell = anon - mib(&r, "/reclaimed/cgroup/anon");
    assert!(
        moved >= RECLAIM_MIB * 0.75 && anon_fell >= RECLAIM_MIB * 0.75,
        "memory.reclaim of {RECLAIM_MIB} MiB: {moved:.1} MiB into zswap, anon fell \
         {anon_fell:.1} MiB\n{report}"
    );

    // The limit (memory.reclaim, then memory.high) holds the cgroup at it,
    // the rest compressed: the saving is read from the kernel.
    let current = mib(&r, "/limited/cgroup/current");
    let zswapped = mib(&r, "/limited/cgroup/zswapped");
    let pool = mib(&r, "/limited/cgroup/zswap");
    let rss = mib(&r, "/limited/workload_rss");
    assert!(
        current <= LIMIT_MIB + 2.0,
        "{current:.1} MiB charged under a {LIMIT_MIB} MiB limit\n{report}"
    );
    assert!(
        rss <= LIMIT_MIB,
        "workload resident {rss:.1} MiB under a {LIMIT_MIB} MiB limit\n{report}"
    );
    assert!(
        zswapped >= WORKLOAD_MIB - LIMIT_MIB - 4.0,
        "only {zswapped:.1} MiB compressed under the limit\n{report}"
    );
    assert!(
        pool > 0.0 && zswapped - pool >= zswapped * 0.4,
        "zswap saved {:.1} of {zswapped:.1} MiB (pool {pool:.1} MiB); text compresses \
         better than that\n{report}",
        zswapped - pool
    );
    let host_wide = mib(&r, "/limited/meminfo_zswapped");
    assert!(
        host_wide + 1.0 >= zswapped,
        "/proc/meminfo Zswapped {host_wide:.1} MiB below the cgroup's {zswapped:.1}\n{report}"
    );

    // Read back while limited: every page intact, throttled at memory.high,
    // never OOM-killed.
    let output = r["workload_output"].as_str().unwrap_or_default();
    assert!(
        output.contains(&format!("workload: verified {WORKLOAD_MIB} MiB"))
            && r["workload_exit"] == 0,
        "the workload's pages did not come back intact:\n{report}"
    );
    assert!(
        mib(&r, "/verified/events/high") >= 1.0,
        "memory.high never acted while the workload read its pages back\n{report}"
    );
    assert_eq!(mib(&r, "/verified/events/oom_kill"), 0.0, "{report}");
    assert_eq!(mib(&r, "/verified/events/oom"), 0.0, "{report}");
    assert_eq!(r["lifted_high"], "max", "{report}");

    // Everything back: the process's cgroup, our cgroup's children and
    // controllers, zswap, the swap file, the journal.
    let restore_failures = r["restore_failures"].as_array().map_or(0, Vec::len);
    assert_eq!(restore_failures, 0, "{report}");
    assert_eq!(r["before"], r["after"], "settings not restored\n{report}");
    assert_eq!(r["after"]["swap_file_exists"], false, "{report}");
    assert_eq!(r["after"]["journal_exists"], false, "{report}");
    g.shutdown()?;
    Ok(())
}
