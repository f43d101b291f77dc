//! The README's `simulate` table is what `balloon-host simulate` prints
//! today (`make readme` rewrites it): a change to the model or the policies
//! that moves a number fails here until the README says so too.

use qemu_test::readme::block;
use std::process::Command;

#[test]
fn readme_simulate_table_is_the_simulators_output() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let committed = block(&readme, "simulate").expect("README has no simulate block");
    let out = Command::new(env!("CARGO_BIN_EXE_balloon-host"))
        .arg("simulate")
        .output()
        .expect("running balloon-host simulate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let now = format!("```\n{}```\n", String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        committed, now,
        "README's simulate table differs from `balloon-host simulate`: run make readme"
    );
}
