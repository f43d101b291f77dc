//! The simulator through its public API.

use host_stub::policy::PolicyKind;
use host_stub::simulate::{compare, render_json, render_table, run_policy, SimConfig};

/// `name` from the environment, parsed, or `default`.
fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Prints the comparison of the default configuration (500 VMs, a day) and
/// how long it took. Run in release:
/// `cargo test --release -p host-stub --test simulate -- --ignored --nocapture`
/// (`SIM_VMS`, `SIM_HOURS`, `SIM_TICK`, `SIM_SEED`, `SIM_OVERCOMMIT` and
/// `SIM_STEPS` override the defaults; `SIM_JSON=path` writes the JSON.)
#[test]
#[ignore = "prints the default comparison; slow in debug builds"]
fn print_default_comparison() {
    let d = SimConfig::default();
    let cfg = SimConfig {
        vms: env("SIM_VMS", d.vms),
        hours: env("SIM_HOURS", d.hours),
        tick_secs: env("SIM_TICK", d.tick_secs),
        seed: env("SIM_SEED", d.seed),
        overcommit: env("SIM_OVERCOMMIT", d.overcommit),
        consolidation_steps: env("SIM_STEPS", d.consolidation_steps),
        ..d
    };
    let start = std::time::Instant::now();
    let c = compare(&cfg).unwrap();
    let took = start.elapsed();
    println!("{}", render_table(&c));
    println!("compare took {:.2} s", took.as_secs_f64());
    if let Ok(path) = std::env::var("SIM_JSON") {
        std::fs::write(path, render_json(&c).unwrap()).unwrap();
    }
}

#[test]
fn public_api_small_run() {
    let cfg = SimConfig {
        vms: 12,
        hours: 1.0,
        consolidation_steps: 1,
        ..SimConfig::default()
    };
    let c = compare(&cfg).unwrap();
    assert_eq!(c.results.len(), PolicyKind::ALL.len());
    let table = render_table(&c);
    assert!(
        table.contains("balloon-rs") && table.contains("12 VMs"),
        "{table}"
    );
    let json: serde_json::Value = serde_json::to_value(&c).unwrap();
    assert_eq!(json["config"]["vms"], 12);
    assert_eq!(json["results"][3]["policy"], "balloon-rs");
    assert!(json["results"][0]["reclaimed"]["balloon"]["mean_mib"].is_number());
    let one = run_policy(&cfg, PolicyKind::Esxi).unwrap();
    assert_eq!(one, c.results[2]);
    let bad = SimConfig { vms: 0, ..cfg };
    assert!(run_policy(&bad, PolicyKind::Esxi)
        .unwrap_err()
        .to_string()
        .contains("vms 0"));
}
