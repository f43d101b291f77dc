//! `make readme`: rewrites the README's generated blocks from the test
//! sources, the logs of the last `make test` run and `balloon-host
//! simulate`'s output.
//!
//! usage: readme-tables README GUEST_LOG HOST_LOG SIMULATE_OUTPUT

use qemu_test::readme::{guest_table, outcomes, single_table, splice, test_docs, TABLES};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

/// The date a log was written, for the line above its table.
fn log_date(path: &Path) -> Result<String, String> {
    let out = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .arg("-r")
        .arg(path)
        .output()
        .map_err(|e| format!("date: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn run(args: &[PathBuf]) -> Result<(), String> {
    let [readme_path, guest_log, host_log, simulate] = args else {
        return Err("usage: readme-tables README GUEST_LOG HOST_LOG SIMULATE_OUTPUT".into());
    };
    let root = readme_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut readme = read(readme_path)?;
    for (name, files) in TABLES {
        let mut tests = Vec::new();
        for f in *files {
            tests.extend(test_docs(&read(&root.join(f))?));
        }
        let (log, render): (&PathBuf, fn(&_, &_) -> String) = if *name == "guest-tests" {
            (guest_log, guest_table)
        } else {
            (host_log, single_table)
        };
        let body = format!(
            "Outcomes from the run logged in `{1}` on {0}; each row's text is the test's doc comment.\n\n{2}",
            log_date(log)?,
            log.display(),
            render(&tests, &outcomes(&read(log)?))
        );
        readme = splice(&readme, name, &body).ok_or(format!(
            "{}: no <!-- begin {name} --> block",
            readme_path.display()
        ))?;
    }
    let sim = format!("```\n{}```\n", read(simulate)?);
    readme = splice(&readme, "simulate", &sim).ok_or(format!(
        "{}: no <!-- begin simulate --> block",
        readme_path.display()
    ))?;
    std::fs::write(readme_path, readme)
        .map_err(|e| format!("writing {}: {e}", readme_path.display()))?;
    println!("rewrote the generated blocks of {}", readme_path.display());
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("readme-tables: {e}");
            ExitCode::FAILURE
        }
    }
}
