//! README tables that cannot drift from the code.
//!
//! The README's test tables are rendered from the test sources (each test's
//! name and the first paragraph of its doc comment, which says what it
//! asserts) and from the output of a real `make test` run (each test's
//! outcome). `make readme` rewrites every block between
//! `<!-- begin NAME -->` and `<!-- end NAME -->`; a unit test checks that
//! the committed tables name exactly the tests that exist.

use std::collections::BTreeMap;

/// One test function as its source file declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestDoc {
    /// The function's name.
    pub name: String,
    /// Run once per driver (`both_drivers!`), in modules `balloon_rs` and
    /// `c_driver`.
    pub both: bool,
    /// Marked `#[ignore]`: run only where its reason says.
    pub ignored: bool,
    /// The first paragraph of its doc comment, on one line.
    pub summary: String,
}

/// The tests a test file declares: `#[test]` functions and the functions
/// named in a `both_drivers!(...)` invocation, in source order.
pub fn test_docs(src: &str) -> Vec<TestDoc> {
    let both = both_drivers_names(src);
    let mut out = Vec::new();
    let mut doc: Vec<&str> = Vec::new();
    let (mut is_test, mut ignored) = (false, false);
    for line in src.lines().map(str::trim) {
        if let Some(d) = line.strip_prefix("///") {
            doc.push(d.trim());
            continue;
        }
        if line.starts_with("#[test]") {
            is_test = true;
            continue;
        }
        if line.starts_with("#[ignore") {
            ignored = true;
            continue;
        }
        if line.starts_with("#[") {
            continue;
        }
        if let Some(name) = fn_name(line) {
            if is_test || both.iter().any(|b| b == name) {
                out.push(TestDoc {
                    name: name.to_string(),
                    both: !is_test,
                    ignored,
                    summary: first_paragraph(&doc),
                });
            }
        }
        doc.clear();
        is_test = false;
        ignored = false;
    }
    out
}

fn fn_name(line: &str) -> Option<&str> {
    let rest = line
        .strip_prefix("pub fn ")
        .or_else(|| line.strip_prefix("fn "))?;
    let end = rest.find(['(', '<'])?;
    Some(&rest[..end])
}

fn both_drivers_names(src: &str) -> Vec<String> {
    let Some(start) = src.find("both_drivers!(") else {
        return Vec::new();
    };
    let body = &src[start + "both_drivers!(".len()..];
    let body = &body[..body.find(')').unwrap_or(body.len())];
    body.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

fn first_paragraph(doc: &[&str]) -> String {
    doc.iter()
        .take_while(|l| !l.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A test's outcome in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `... ok`
    Pass,
    /// `... FAILED`
    Fail,
    /// `... ignored`
    Ignored,
}

impl Outcome {
    fn cell(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "**FAIL**",
            Outcome::Ignored => "ignored",
        }
    }
}

/// Outcomes from cargo test's output (`test PATH ... ok`), keyed by the
/// test's path (`balloon_rs::name`, `name`).
pub fn outcomes(log: &str) -> BTreeMap<String, Outcome> {
    let mut out = BTreeMap::new();
    for line in log.lines() {
        let Some(rest) = line.strip_prefix("test ") else {
            continue;
        };
        let Some((path, result)) = rest.split_once(" ... ") else {
            continue;
        };
        let outcome = if result.starts_with("ok") {
            Outcome::Pass
        } else if result.starts_with("FAILED") {
            Outcome::Fail
        } else if result.starts_with("ignored") {
            Outcome::Ignored
        } else {
            continue;
        };
        out.insert(path.trim().to_string(), outcome);
    }
    out
}

fn cell(outcomes: &BTreeMap<String, Outcome>, path: &str) -> &'static str {
    outcomes.get(path).map_or("not run", |o| o.cell())
}

fn escape(text: &str) -> String {
    text.replace('|', "\\|")
}

/// The guest-test table: a row per test, its outcome per driver. A test
/// named `c_driver_*` runs the C driver only; any other single test runs
/// balloon_rs (or no driver, for the harness's own tests).
pub fn guest_table(tests: &[TestDoc], outcomes: &BTreeMap<String, Outcome>) -> String {
    let mut t = String::from(
        "| test | what it asserts | balloon_rs | C driver |\n| --- | --- | --- | --- |\n",
    );
    for d in tests {
        let (rs, c) = if d.both {
            (
                cell(outcomes, &format!("balloon_rs::{}", d.name)),
                cell(outcomes, &format!("c_driver::{}", d.name)),
            )
        } else if d.name.starts_with("c_driver_") {
            ("n/a", cell(outcomes, &d.name))
        } else {
            (cell(outcomes, &d.name), "n/a")
        };
        t.push_str(&format!(
            "| `{}` | {} | {rs} | {c} |\n",
            d.name,
            escape(&d.summary)
        ));
    }
    t
}

/// A table of single tests with one outcome column.
pub fn single_table(tests: &[TestDoc], outcomes: &BTreeMap<String, Outcome>) -> String {
    let mut t = String::from("| test | what it asserts | result |\n| --- | --- | --- |\n");
    for d in tests {
        t.push_str(&format!(
            "| `{}` | {} | {} |\n",
            d.name,
            escape(&d.summary),
            cell(outcomes, &d.name)
        ));
    }
    t
}

/// The text between `<!-- begin NAME -->` and `<!-- end NAME -->`.
pub fn block<'a>(readme: &'a str, name: &str) -> Option<&'a str> {
    let (start, end) = markers(name);
    let from = readme.find(&start)? + start.len();
    let to = from + readme[from..].find(&end)?;
    Some(readme[from..to].trim_start_matches('\n'))
}

/// `readme` with the block NAME replaced by `body`; `None` if the markers
/// are missing.
pub fn splice(readme: &str, name: &str, body: &str) -> Option<String> {
    let (start, end) = markers(name);
    let from = readme.find(&start)? + start.len();
    let to = from + readme[from..].find(&end)?;
    Some(format!("{}\n{}{}", &readme[..from], body, &readme[to..]))
}

fn markers(name: &str) -> (String, String) {
    (
        format!("<!-- begin {name} -->"),
        format!("<!-- end {name} -->"),
    )
}

/// The test names in a rendered table's first column.
pub fn table_names(table: &str) -> Vec<String> {
    table
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(n, _)| n.to_string()))
        .collect()
}

/// The README's generated test tables: block name and the test files whose
/// tests it lists.
pub const TABLES: &[(&str, &[&str])] = &[
    (
        "guest-tests",
        &[
            "qemu-test/tests/driver.rs",
            "qemu-test/tests/balloon.rs",
            "qemu-test/tests/features.rs",
            "qemu-test/tests/race.rs",
            "qemu-test/tests/reliability.rs",
            "qemu-test/tests/faults.rs",
            "qemu-test/tests/harness.rs",
            "qemu-test/tests/blocks.rs",
            "qemu-test/tests/tools.rs",
        ],
    ),
    (
        "host-tests",
        &[
            "host-stub/tests/guests.rs",
            "host-stub/tests/cli.rs",
            "host-stub/tests/libvirt.rs",
            "host-stub/tests/cgroup_v2.rs",
        ],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const SRC: &str = r#"
qemu_test::both_drivers!(
    alpha,
    beta,
);

/// Alpha does a thing: with numbers.
/// Second line.
///
/// Not in the summary.
fn alpha(driver: Driver) -> Result<()> { Ok(()) }

fn helper() {}

/// Beta.
fn beta(driver: Driver) -> Result<()> { Ok(()) }

/// Only C | pipes.
#[test]
fn c_driver_gamma() -> Result<()> { Ok(()) }

/// Needs the debug kernel.
#[test]
#[ignore = "debug only"]
fn delta() -> Result<()> { Ok(()) }
"#;

    #[test]
    fn parses_both_drivers_and_single_tests() {
        let t = test_docs(SRC);
        let names: Vec<_> = t.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["alpha", "beta", "c_driver_gamma", "delta"]);
        assert_eq!(
            t[0].summary,
            "Alpha does a thing: with numbers. Second line."
        );
        assert!(t[0].both && t[1].both && !t[2].both);
        assert!(t[3].ignored && !t[2].ignored);
    }

    #[test]
    fn renders_outcomes_per_driver() {
        let log = "test balloon_rs::alpha ... ok\ntest c_driver::alpha ... FAILED\n\
                   test c_driver_gamma ... ok\ntest delta ... ignored, debug only\n";
        let table = guest_table(&test_docs(SRC), &outcomes(log));
        assert!(
            table.contains(
                "| `alpha` | Alpha does a thing: with numbers. Second line. | pass | **FAIL** |"
            ),
            "{table}"
        );
        assert!(
            table.contains("| `beta` | Beta. | not run | not run |"),
            "{table}"
        );
        assert!(
            table.contains("| `c_driver_gamma` | Only C \\| pipes. | n/a | pass |"),
            "{table}"
        );
        assert!(
            table.contains("| `delta` | Needs the debug kernel. | ignored | n/a |"),
            "{table}"
        );
        assert_eq!(
            table_names(&table),
            ["alpha", "beta", "c_driver_gamma", "delta"]
        );
    }

    #[test]
    fn splices_between_markers() {
        let readme = "a\n<!-- begin x -->\nold\n<!-- end x -->\nb\n";
        let new = splice(readme, "x", "new\n").unwrap();
        assert_eq!(new, "a\n<!-- begin x -->\nnew\n<!-- end x -->\nb\n");
        assert_eq!(block(&new, "x"), Some("new\n"));
        assert_eq!(splice(readme, "y", ""), None);
    }

    /// The committed README names exactly the tests that exist, in each of
    /// its generated tables (`make readme` rewrites them after a run).
    #[test]
    fn readme_tables_name_every_test() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        for (block_name, files) in TABLES {
            let mut want = Vec::new();
            for f in *files {
                let src = std::fs::read_to_string(root.join(f)).unwrap();
                want.extend(test_docs(&src));
            }
            let table = block(&readme, block_name)
                .unwrap_or_else(|| panic!("README has no block {block_name}"));
            let names: Vec<&str> = want.iter().map(|d| d.name.as_str()).collect();
            assert_eq!(
                table_names(table),
                names,
                "README's {block_name} table is out of date: run make readme"
            );
            for d in &want {
                let row = format!("| `{}` | {} |", d.name, escape(&d.summary));
                assert!(
                    table.lines().any(|l| l.starts_with(&row)),
                    "README's {block_name} row for {} does not say what its doc comment says: run make readme",
                    d.name
                );
            }
        }
    }
}
