//! `make compare`: the driver scenarios run against both drivers, each in a
//! fresh guest, and what each driver did set side by side.
//!
//! A scenario observes; it does not assert (the tests do that). Each
//! observation says how the two drivers' values are compared: the same
//! value expected ([`Kind::Same`]), a measurement whose ratio is shown
//! ([`Kind::Ratio`]), or context only ([`Kind::Info`]). A scenario that
//! fails part-way keeps what it observed before, and the failure is a row.

mod scenarios;
mod table;

pub use scenarios::SCENARIOS;
pub use table::{render, scenario_rows, Row};

use crate::{logscan, Driver, Error, Guest, GuestConfig, Result};
use std::time::Instant;

/// How two drivers' values of one observation are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The same value is expected; the table says `same` or `differs`.
    Same,
    /// A measurement: the table shows balloon_rs / C.
    Ratio,
    /// Context: not compared.
    Info,
}

/// One thing a driver did in a scenario.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Observation {
    /// What was observed, e.g. `MemTotal after deflate`.
    pub what: String,
    /// The value as shown.
    pub value: String,
    /// The number behind a [`Kind::Ratio`] value.
    pub number: Option<f64>,
    /// How it is compared with the other driver.
    pub kind: Kind,
}

/// The observations of one scenario run, in order.
#[derive(Debug, Default)]
pub struct Observations(pub Vec<Observation>);

impl Observations {
    fn push(&mut self, what: &str, value: String, number: Option<f64>, kind: Kind) {
        self.0.push(Observation {
            what: what.to_string(),
            value,
            number,
            kind,
        });
    }

    /// A value both drivers should have alike.
    pub fn same(&mut self, what: &str, value: impl ToString) {
        self.push(what, value.to_string(), None, Kind::Same);
    }

    /// A yes/no both drivers should have alike.
    pub fn yes_no(&mut self, what: &str, yes: bool) {
        self.same(what, if yes { "yes" } else { "no" });
    }

    /// A measurement in `unit`, shown with `decimals`, compared as a ratio.
    pub fn measure(&mut self, what: &str, number: f64, unit: &str, decimals: usize) {
        let value = format!("{number:.decimals$} {unit}").trim_end().to_string();
        self.push(what, value, Some(number), Kind::Ratio);
    }

    /// Context, not compared.
    pub fn info(&mut self, what: &str, value: impl ToString) {
        self.push(what, value.to_string(), None, Kind::Info);
    }
}

/// A scenario: a guest configuration and what to do with the driver loaded.
pub struct Scenario {
    /// Its name on the command line and in the table.
    pub name: &'static str,
    /// One line on what it does.
    pub about: &'static str,
    /// Changes to the default guest (device properties).
    pub configure: fn(&mut GuestConfig),
    /// Runs with the driver loaded; records what happened.
    pub run: fn(&mut Guest, Driver, &mut Observations) -> Result<()>,
}

/// What one driver did in one scenario.
#[derive(Debug, serde::Serialize)]
pub struct Outcome {
    /// The scenario's name.
    pub scenario: &'static str,
    /// The driver (`balloon_rs` or `virtio_balloon`).
    pub driver: String,
    /// What was observed, in order.
    pub observations: Vec<Observation>,
    /// Kernel reports (`WARNING:`, `BUG:`, `Oops`, ...) in the console log.
    pub kernel_reports: Vec<String>,
    /// Why the scenario stopped early, if it did.
    pub error: Option<String>,
    /// Wall time including the boot, seconds.
    pub secs: f64,
    /// The guest's directory, kept when something went wrong.
    pub kept: Option<String>,
}

impl Outcome {
    /// The first line of the error, or `ok`.
    pub fn result(&self) -> String {
        match &self.error {
            None => "ok".into(),
            Some(e) => e.lines().next().unwrap_or("failed").to_string(),
        }
    }
}

/// Runs `scenario` with `driver` in a fresh guest made from `base`.
pub fn run(scenario: &Scenario, driver: Driver, base: &GuestConfig) -> Outcome {
    let start = Instant::now();
    let mut cfg = base.clone();
    cfg.name = format!("compare-{}-{driver}", scenario.name);
    (scenario.configure)(&mut cfg);
    let mut obs = Observations::default();
    let mut outcome = Outcome {
        scenario: scenario.name,
        driver: driver.to_string(),
        observations: Vec::new(),
        kernel_reports: Vec::new(),
        error: None,
        secs: 0.0,
        kept: None,
    };
    match Guest::boot(cfg) {
        Err(e) => outcome.error = Some(format!("boot: {e}")),
        Ok(mut g) => {
            let ran = g
                .load(driver)
                .and_then(|()| (scenario.run)(&mut g, driver, &mut obs))
                .and_then(|()| g.unload(driver));
            outcome.kernel_reports = logscan::kernel_problems(&g.console())
                .iter()
                .map(|(n, l)| format!("{n}: {}", l.trim()))
                .collect();
            let dir = g.dir().display().to_string();
            match ran {
                // Dropped, not shut down: QEMU is killed and its files kept.
                Err(e) => {
                    outcome.error = Some(e.to_string());
                    outcome.kept = Some(dir);
                }
                Ok(()) => match g.shutdown() {
                    Ok(()) => {}
                    Err(Error::KernelLog { lines, .. }) => {
                        // Read after QEMU stopped: the complete list.
                        outcome.kernel_reports = lines.lines().map(str::to_string).collect();
                        outcome.kept = Some(dir);
                    }
                    Err(e) => {
                        outcome.error = Some(e.to_string());
                        outcome.kept = Some(dir);
                    }
                },
            }
        }
    }
    outcome.observations = obs.0;
    outcome.secs = start.elapsed().as_secs_f64();
    outcome
}
