//! Waldspurger's experiment (OSDI 2002), reproduced: a guest ballooned down
//! to a size against a guest configured with that size. A benchmark, run by
//! `make bench` after `balloon-bench`.
//!
//! Three configurations run in rotation (`BENCH_REPS`, default 5): a static
//! 256 MiB guest; a 512 MiB guest ballooned to 256 MiB by balloon_rs; the
//! same by the C driver. In each, two workloads with a fixed working set:
//! the guest workload rewriting 96 MiB of anonymous memory 10 times
//! (median pass, MiB/s, timed in the guest), and reading a 64 MiB tmpfs file
//! 10 times (page cache; timed from the host around one agent command).

use qemu_test::{ensure, Driver, Error, Guest, GuestConfig, Result, MIB};
use std::fmt::Write as _;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Setup {
    Static,
    Ballooned(Driver),
}

impl Setup {
    fn name(self) -> String {
        match self {
            Setup::Static => "static 256 MiB".into(),
            Setup::Ballooned(d) => format!("512 MiB ballooned to 256 ({d})"),
        }
    }
}

#[derive(Debug)]
struct Run {
    setup: Setup,
    anon_mib_s: f64,
    file_mib_s: f64,
    mem_total_mib: u64,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

fn run_once(setup: Setup, rep: usize) -> Result<Run> {
    let mut cfg = GuestConfig::new(&format!("static-{rep}"))?;
    cfg.mem_mib = match setup {
        Setup::Static => 256,
        Setup::Ballooned(_) => 512,
    };
    cfg.cpus = 1;
    let mut g = Guest::boot(cfg)?;
    if let Setup::Ballooned(d) = setup {
        g.load(d)?;
        g.qmp().set_guest_size(256 * MIB)?;
        let (ok, actual) = g
            .qmp()
            .wait_guest_size(256 * MIB, std::time::Duration::from_secs(120))?;
        ensure!(ok, "{d}: actual {} MiB, not 256", actual / MIB);
    }
    let mem_total_mib = g.meminfo()?.mib("MemTotal")?;
    let out = g.sh("balloon-guest workload --mib 96 --content random --passes 10 --hold 1")?;
    let anon_mib_s = out
        .lines()
        .find_map(|l| l.split(" median ").nth(1))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Error::Check(format!("no median in workload output: {out}")))?;
    g.sh("dd if=/dev/urandom of=/tmp/f bs=1M count=64 2>/dev/null")?;
    g.sh("cat /tmp/f > /dev/null")?; // warm
    let t = Instant::now();
    g.sh("for i in 1 2 3 4 5 6 7 8 9 10; do cat /tmp/f > /dev/null; done")?;
    let file_mib_s = 640.0 / t.elapsed().as_secs_f64();
    g.shutdown()?;
    Ok(Run {
        setup,
        anon_mib_s,
        file_mib_s,
        mem_total_mib,
    })
}

fn main() -> Result<()> {
    let reps: usize = std::env::var("BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let setups = [
        Setup::Static,
        Setup::Ballooned(Driver::BalloonRs),
        Setup::Ballooned(Driver::C),
    ];
    let mut runs: Vec<Run> = Vec::new();
    for rep in 0..reps {
        for s in setups {
            let r = run_once(s, rep)?;
            eprintln!(
                "rep {}/{reps} {}: anon {:.0} MiB/s, tmpfs read {:.0} MiB/s, MemTotal {} MiB",
                rep + 1,
                s.name(),
                r.anon_mib_s,
                r.file_mib_s,
                r.mem_total_mib
            );
            runs.push(r);
        }
    }
    let col = |s: Setup, f: fn(&Run) -> f64| {
        let mut v: Vec<f64> = runs.iter().filter(|r| r.setup == s).map(f).collect();
        median(&mut v)
    };
    // Per-rep ratio against the static run of the same rep.
    let ratio = |s: Setup, f: fn(&Run) -> f64| {
        let mut v: Vec<f64> = runs
            .chunks(setups.len())
            .filter_map(|rep| {
                let base = rep.iter().find(|r| r.setup == Setup::Static)?;
                let x = rep.iter().find(|r| r.setup == s)?;
                Some(f(x) / f(base))
            })
            .collect();
        median(&mut v)
    };
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Ballooned against statically sized, {reps} rotations (static, balloon_rs, C); medians, and the median of per-rotation ratios to the static guest.\n"
    );
    let _ = writeln!(
        md,
        "| guest | MemTotal (MiB) | anon rewrite MiB/s | ratio | tmpfs read MiB/s | ratio |"
    );
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- |");
    for s in setups {
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.0} | {:.3} | {:.0} | {:.3} |",
            s.name(),
            col(s, |r| r.mem_total_mib as f64),
            col(s, |r| r.anon_mib_s),
            ratio(s, |r| r.anon_mib_s),
            col(s, |r| r.file_mib_s),
            ratio(s, |r| r.file_mib_s)
        );
    }
    let dir = qemu_test::artifacts::repo_root().join("build/bench");
    std::fs::create_dir_all(&dir).map_err(Error::io("creating build/bench"))?;
    std::fs::write(dir.join("ballooned-vs-static.md"), &md)
        .map_err(Error::io("writing ballooned-vs-static.md"))?;
    println!("{md}");
    Ok(())
}
