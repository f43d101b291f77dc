//! `make compare`: every driver scenario against balloon_rs and the C
//! driver, each in a fresh guest, and one side-by-side table of what each
//! driver did.
//!
//! The table goes to stdout (or the JSON with `--json`); progress goes to
//! stderr. Both are also written to `build/compare/`. The exit status is 1
//! when a scenario could not run for balloon_rs or its guest logged a kernel
//! report; the C driver's failures are shown, not judged (it is starved by
//! a hostile host by design).

use clap::Parser;
use qemu_test::compare::{self, Outcome, Row, SCENARIOS};
use qemu_test::{Driver, Error, GuestConfig, Result};

#[derive(Parser)]
#[command(about = "Run the balloon scenarios against balloon_rs and the C driver, side by side")]
struct Args {
    /// Run only these scenarios (repeatable; see --list).
    #[arg(long = "only", value_name = "SCENARIO")]
    only: Vec<String>,
    /// Guest memory in MiB (default BALLOON_RS_GUEST_MIB or 512).
    #[arg(long)]
    mem: Option<u64>,
    /// Print the results as JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Table width in columns.
    #[arg(long, default_value_t = 140)]
    width: u16,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
}

#[derive(serde::Serialize)]
struct Report<'a> {
    mem_mib: u64,
    outcomes: &'a [Outcome],
    rows: &'a [Row],
}

fn main() {
    match run() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("balloon-compare: {e}");
            std::process::exit(4);
        }
    }
}

fn run() -> Result<i32> {
    let args = Args::parse();
    if args.list {
        for s in &SCENARIOS {
            println!("{:<16} {}", s.name, s.about);
        }
        return Ok(0);
    }
    for name in &args.only {
        if !SCENARIOS.iter().any(|s| s.name == name) {
            let known: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
            return Err(Error::Check(format!(
                "no scenario {name:?}; scenarios: {}",
                known.join(", ")
            )));
        }
    }
    let chosen: Vec<_> = SCENARIOS
        .iter()
        .filter(|s| args.only.is_empty() || args.only.iter().any(|n| n == s.name))
        .collect();
    let mut base = GuestConfig::new("compare")?;
    if let Some(mem) = args.mem {
        base.mem_mib = mem;
    }
    // Fail before the first boot if something is not built.
    base.artifacts = Some(qemu_test::Artifacts::locate()?);

    let total = chosen.len() * 2;
    let mut outcomes = Vec::new();
    let mut rows = Vec::new();
    for (i, s) in chosen.iter().enumerate() {
        let mut pair = Vec::new();
        for (j, driver) in [Driver::BalloonRs, Driver::C].into_iter().enumerate() {
            eprint!("[{}/{total}] {} with {driver} ... ", i * 2 + j + 1, s.name);
            let o = compare::run(s, driver, &base);
            eprintln!(
                "{} ({:.0} s{}{})",
                o.result(),
                o.secs,
                match o.kernel_reports.len() {
                    0 => String::new(),
                    n => format!(", {n} kernel reports"),
                },
                o.kept
                    .as_ref()
                    .map(|d| format!(", files kept in {d}"))
                    .unwrap_or_default()
            );
            pair.push(o);
        }
        rows.extend(compare::scenario_rows(&pair[0], &pair[1]));
        outcomes.extend(pair);
    }

    let table = compare::render(&rows, args.width);
    let json = serde_json::to_string_pretty(&Report {
        mem_mib: base.mem_mib,
        outcomes: &outcomes,
        rows: &rows,
    })
    .map_err(|e| Error::Check(format!("serialising the results: {e}")))?;
    let dir = qemu_test::artifacts::repo_root().join("build/compare");
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    std::fs::write(dir.join("table.txt"), &table).map_err(Error::io("writing table.txt"))?;
    std::fs::write(dir.join("results.json"), &json).map_err(Error::io("writing results.json"))?;
    if args.json {
        println!("{json}");
    } else {
        println!("{table}");
        eprintln!("(also in {}/table.txt and results.json)", dir.display());
    }
    let bad = outcomes.iter().any(|o| {
        o.driver == Driver::BalloonRs.to_string()
            && (o.error.is_some() || !o.kernel_reports.is_empty())
    });
    Ok(i32::from(bad))
}
