//! `balloon-inflate`: boot a guest with a chosen kernel and balloon driver,
//! set balloon targets one after the other, and print what happened — for
//! scripts (`make run` is the interactive guest).
//!
//! Exit status: 0 every target reached and the console is clean; 1 a target
//! was not reached in time; 2 usage; 3 the console shows a kernel report
//! (`WARNING:`, `BUG:`, `Oops`, `Call Trace`, a panic); 4 the guest could
//! not be booted or driven.

use clap::{Parser, ValueEnum};
use qemu_test::steps::{follow_target, Trace};
use qemu_test::{logscan, Artifacts, Driver, Error, Guest, GuestConfig, Result};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, ValueEnum)]
enum Which {
    /// balloon_rs.ko
    #[value(name = "balloon_rs")]
    BalloonRs,
    /// The C driver, virtio_balloon.ko from the kernel build.
    #[value(name = "c")]
    C,
}

#[derive(Parser)]
#[command(
    about = "Boot a guest, set balloon targets, report actual, MemTotal and kernel reports",
    after_help = "Exit status: 0 all targets reached, 1 a target missed, 2 usage, \
                  3 a kernel report in the console, 4 the guest could not be booted or driven."
)]
struct Args {
    /// Guest sizes to set in turn, in MiB (QMP `balloon`: memory left to
    /// the guest, so smaller inflates).
    #[arg(required = true, value_name = "TARGET_MIB")]
    targets: Vec<u64>,
    /// The driver to load.
    #[arg(long, value_enum, default_value = "balloon_rs")]
    driver: Which,
    /// Kernel build directory (bzImage and virtio_balloon.ko); default
    /// BALLOON_RS_KDIR or build/kernel.
    #[arg(long, value_name = "DIR")]
    kernel_dir: Option<PathBuf>,
    /// balloon_rs module file; default BALLOON_RS_MODULE or ./balloon_rs.ko.
    #[arg(long, value_name = "KO")]
    module: Option<PathBuf>,
    /// Guest memory in MiB (default BALLOON_RS_GUEST_MIB or 512).
    #[arg(long)]
    mem: Option<u64>,
    /// Extra virtio-balloon-pci property, e.g. deflate-on-oom=on (repeatable).
    #[arg(long = "balloon", value_name = "PROP=VALUE")]
    balloon_props: Vec<String>,
    /// Extra kernel command line.
    #[arg(long, value_name = "ARGS", default_value = "")]
    append: String,
    /// A shell command to run in the guest after loading the driver, before
    /// the first target (must succeed).
    #[arg(long, value_name = "CMD")]
    guest_cmd: Option<String>,
    /// Seconds to wait for each target.
    #[arg(long, default_value_t = 180)]
    timeout: u64,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Step {
    #[serde(flatten)]
    trace: Trace,
    actual_mib: u64,
    mem_total_kib: u64,
}

#[derive(serde::Serialize)]
struct Report {
    driver: String,
    kernel: String,
    module: String,
    mem_mib: Option<u64>,
    targets: Vec<Step>,
    kernel_reports: Vec<String>,
    /// Set when the guest could not be booted or driven.
    error: Option<String>,
    ok: bool,
}

fn main() {
    let args = Args::parse();
    let driver = match args.driver {
        Which::BalloonRs => Driver::BalloonRs,
        Which::C => Driver::C,
    };
    let artifacts = match Artifacts::locate_with(args.kernel_dir.as_deref(), args.module.as_deref())
    {
        Ok(a) => a,
        Err(e) => {
            eprintln!("balloon-inflate: {e}");
            std::process::exit(4);
        }
    };
    let mut report = Report {
        driver: driver.to_string(),
        kernel: artifacts.kernel.display().to_string(),
        module: artifacts.module(driver).display().to_string(),
        mem_mib: args.mem,
        targets: Vec::new(),
        kernel_reports: Vec::new(),
        error: None,
        ok: false,
    };
    if let Err(e) = drive(&args, driver, artifacts, &mut report) {
        report.error = Some(e.to_string());
    }
    let reached = report.targets.len() == args.targets.len()
        && report.targets.iter().all(|s| s.trace.reached);
    report.ok = reached && report.kernel_reports.is_empty() && report.error.is_none();
    print(&report, args.json);
    let code = if report.error.is_some() {
        4
    } else if !report.kernel_reports.is_empty() {
        3
    } else if !reached {
        1
    } else {
        0
    };
    std::process::exit(code);
}

fn drive(args: &Args, driver: Driver, artifacts: Artifacts, report: &mut Report) -> Result<()> {
    let mut cfg = GuestConfig::new(&format!("inflate-{driver}"))?;
    if let Some(mem) = args.mem {
        cfg.mem_mib = mem;
    }
    report.mem_mib = Some(cfg.mem_mib);
    cfg.balloon_props = args.balloon_props.clone();
    cfg.kernel_args = args.append.clone();
    cfg.artifacts = Some(artifacts);
    if !args.json {
        eprintln!("booting a {} MiB guest with {driver} ...", cfg.mem_mib);
    }
    let mut g = Guest::boot(cfg)?;
    let steps = (|| -> Result<()> {
        g.load(driver)?;
        if let Some(cmd) = &args.guest_cmd {
            g.sh(cmd)?;
        }
        for &target in &args.targets {
            let trace = follow_target(&mut g, target, Duration::from_secs(args.timeout))?;
            let step = Step {
                actual_mib: trace.actual_mib(),
                mem_total_kib: g.meminfo()?.kib("MemTotal")?,
                trace,
            };
            if !args.json {
                eprintln!("target {target} MiB: {}", step.trace.summary(5));
            }
            report.targets.push(step);
        }
        g.unload(driver)
    })();
    let problems = logscan::kernel_problems(&g.console())
        .iter()
        .map(|(n, l)| format!("{n}: {}", l.trim()))
        .collect();
    report.kernel_reports = problems;
    match (steps, g.shutdown()) {
        (Err(e), _) => Err(e),
        // Reported in kernel_reports (read after QEMU stopped: complete).
        (Ok(()), Err(Error::KernelLog { lines, .. })) => {
            report.kernel_reports = lines.lines().map(str::to_string).collect();
            Ok(())
        }
        (Ok(()), r) => r,
    }
}

fn print(r: &Report, json: bool) {
    if json {
        match serde_json::to_string_pretty(r) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("balloon-inflate: serialising the result: {e}"),
        }
        return;
    }
    println!(
        "{} on {} ({} MiB guest)",
        r.driver,
        r.kernel,
        r.mem_mib.map_or("?".into(), |m| m.to_string())
    );
    for s in &r.targets {
        println!(
            "target {:>6} MiB: {:<11} actual {:>6} MiB after {:>6.1} s, MemTotal {} MiB",
            s.trace.target_mib,
            if s.trace.reached {
                "reached"
            } else {
                "NOT reached"
            },
            s.actual_mib,
            s.trace.secs,
            s.mem_total_kib / 1024
        );
    }
    match r.kernel_reports.len() {
        0 => println!("kernel reports: none"),
        n => {
            println!("kernel reports: {n}");
            for l in &r.kernel_reports {
                println!("  {l}");
            }
        }
    }
    if let Some(e) = &r.error {
        println!("error: {e}");
    }
    println!("{}", if r.ok { "ok" } else { "FAILED" });
}
