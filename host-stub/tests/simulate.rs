//! The simulator through its public API.

use host_stub::engine::policy::PolicyKind;
use host_stub::render::sim_table::render_table;
use host_stub::sim::simulate::{compare, run_policy, SimConfig};

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
