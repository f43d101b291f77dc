//! The command-line tools a script or a reviewer runs: `balloon-inflate`
//! (boot, set targets, report) and `balloon-compare` (`make compare`), run
//! as their binaries with the harness's kernel and modules.

use qemu_test::{ensure, Error, GuestConfig, Result};
use std::process::{Command, Output};

qemu_test::both_drivers!(balloon_inflate_reaches_each_target_and_reports_json);

fn tool(bin: &str, args: &[&str]) -> Result<(i32, String, String)> {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(bin)
        .args(args)
        .output()
        .map_err(Error::io(format!("running {bin}")))?;
    let code = status
        .code()
        .ok_or_else(|| Error::Check(format!("{bin} killed by a signal: {status}")))?;
    Ok((
        code,
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    ))
}

fn inflate(args: &[&str]) -> Result<(i32, serde_json::Value, String)> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (code, out, err) = tool(env!("CARGO_BIN_EXE_balloon-inflate"), &all)?;
    let json = serde_json::from_str(&out).map_err(|e| {
        Error::Check(format!(
            "balloon-inflate printed no JSON ({e}):\n{out}\n{err}"
        ))
    })?;
    Ok((code, json, err))
}

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or(u64::MAX)
}

/// `balloon-inflate --json` with two targets, 128 MiB below the guest's
/// size and the size itself, exits 0 and reports both reached, `actual`
/// equal to each, and MemTotal 128 MiB apart between them (±1 MiB).
fn balloon_inflate_reaches_each_target_and_reports_json(driver: qemu_test::Driver) -> Result<()> {
    let which = match driver {
        qemu_test::Driver::BalloonRs => "balloon_rs",
        qemu_test::Driver::C => "c",
    };
    let mem = GuestConfig::new("tools")?.mem_mib;
    let (low_mib, high_mib) = ((mem - 128).to_string(), mem.to_string());
    let (code, r, err) = inflate(&["--driver", which, &low_mib, &high_mib])?;
    ensure!(code == 0, "exit {code}: {r}\n{err}");
    ensure!(
        r["ok"] == true && r["kernel_reports"].as_array().is_some_and(Vec::is_empty),
        "{r}"
    );
    let t = r["targets"]
        .as_array()
        .ok_or_else(|| Error::Check(format!("no targets: {r}")))?;
    ensure!(t.len() == 2, "{} targets reported: {r}", t.len());
    for (step, want) in t.iter().zip([mem - 128, mem]) {
        ensure!(
            step["reached"] == true
                && u(&step["actual_mib"]) == want
                && u(&step["target_mib"]) == want,
            "target {want}: {step}"
        );
    }
    let (low, high) = (u(&t[0]["mem_total_kib"]), u(&t[1]["mem_total_kib"]));
    ensure!(
        high.abs_diff(low).abs_diff(128 * 1024) <= 1024,
        "MemTotal {low} KiB at {low_mib} MiB, {high} KiB at {high_mib} MiB: not 128 MiB apart (±1 MiB)"
    );
    Ok(())
}

/// `balloon-inflate` exits 1 when a target is not reached in `--timeout`
/// (a 1 MiB target: balloon_rs holds at its floor), 3 when the console
/// shows a kernel report (a `WARNING:` line written to /dev/kmsg by
/// `--guest-cmd`), and 4 at once for a kernel directory with no kernel.
#[test]
fn balloon_inflate_exit_status_says_what_failed() -> Result<()> {
    let (code, r, err) = inflate(&["--timeout", "20", "1"])?;
    ensure!(code == 1, "unreachable target: exit {code}: {r}\n{err}");
    ensure!(
        r["targets"][0]["reached"] == false && r["ok"] == false,
        "{r}"
    );
    ensure!(u(&r["targets"][0]["actual_mib"]) > 1, "{r}");

    let target = (GuestConfig::new("tools")?.mem_mib - 64).to_string();
    let (code, r, err) = inflate(&[
        "--guest-cmd",
        "echo '<4>WARNING: CPU: 0 PID: 1 injected by the tools test' > /dev/kmsg",
        &target,
    ])?;
    ensure!(code == 3, "kernel report: exit {code}: {r}\n{err}");
    ensure!(
        r["targets"][0]["reached"] == true
            && r["kernel_reports"][0]
                .as_str()
                .is_some_and(|l| l.contains("injected by the tools test")),
        "{r}"
    );

    let start = std::time::Instant::now();
    let (code, out, err) = tool(
        env!("CARGO_BIN_EXE_balloon-inflate"),
        &["--kernel-dir", "/nonexistent", "256"],
    )?;
    ensure!(
        code == 4 && err.contains("kernel image not found") && start.elapsed().as_secs() < 10,
        "missing kernel: exit {code} after {:?}: {out}\n{err}",
        start.elapsed()
    );
    Ok(())
}

/// `balloon-compare --only inflate-deflate --json` runs the scenario for
/// both drivers with no error and no kernel report, and the rows set them
/// side by side: both reached the targets, MemTotal fell by the same MiB
/// and `balloon_inflate` counted the same pages (`same`), and the inflate
/// times have a ratio.
#[test]
fn balloon_compare_sets_both_drivers_side_by_side() -> Result<()> {
    let (code, out, err) = tool(
        env!("CARGO_BIN_EXE_balloon-compare"),
        &["--only", "inflate-deflate", "--json"],
    )?;
    ensure!(code == 0, "exit {code}:\n{out}\n{err}");
    let r: serde_json::Value = serde_json::from_str(&out)
        .map_err(|e| Error::Check(format!("no JSON ({e}):\n{out}\n{err}")))?;
    let outcomes = r["outcomes"].as_array().cloned().unwrap_or_default();
    ensure!(outcomes.len() == 2, "{} outcomes: {r}", outcomes.len());
    for o in &outcomes {
        ensure!(
            o["error"].is_null() && o["kernel_reports"].as_array().is_some_and(Vec::is_empty),
            "{}: {o}",
            o["driver"]
        );
    }
    let rows = r["rows"].as_array().cloned().unwrap_or_default();
    let verdict = |what: &str| {
        rows.iter()
            .find(|row| row["what"] == what)
            .and_then(|row| row["verdict"].as_str())
            .map(str::to_string)
    };
    for what in [
        "inflate to half: target reached",
        "MemTotal fell by (MiB)",
        "balloon_inflate (pages)",
        "MemTotal back exactly",
        "kernel reports",
        "result",
    ] {
        ensure!(
            verdict(what).as_deref() == Some("same"),
            "{what}: {:?}\n{out}",
            verdict(what)
        );
    }
    ensure!(
        verdict("inflate time").is_some_and(|v| v.ends_with('×')),
        "no inflate-time ratio: {:?}",
        verdict("inflate time")
    );
    ensure!(
        err.contains("[2/2] inflate-deflate with virtio_balloon"),
        "no progress lines:\n{err}"
    );
    Ok(())
}
