//! `balloon-host attach --config FILE`: the stub as a daemon an operator
//! runs on a libvirt or QEMU host, from a config file and for as long as
//! it is not stopped; SIGHUP re-reads the file.
//!
//! The config file is a scenario file (the same `[host]`, `[tiers]`,
//! `[policy]`, `[alerts]` and `[[guest]]` keys, checked the same way, errors
//! naming the line) whose guests are running already: each `[[guest]]` has
//! `qmp = "/path/to/qmp.sock"`, or the file has `libvirt = "qemu:///system"`
//! and the guests' names are libvirt domains. A guest's `memory_mib` is
//! read from the guest (a value in the file must be the guest's).
//! `duration` left out means until stopped.
//!
//! A reload applies what can change under a running loop — the host's
//! capacity, minFree and thresholds, the policy, the alerts, and each
//! guest's reservation, limit and shares — and refuses, keeping the running
//! configuration, a file that cannot be read or checked or that changes
//! what needs a restart (the guests, how they are reached, the tiers, the
//! tick, the second host, the swap file's size, KSM's sleep).

use crate::backend::AttachTo;
use crate::scenario::{GuestSpec, Scenario};
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// Reads and checks a config file; `size_of` gives a guest's configured
/// memory (MiB) where the file leaves it out. Returns the scenario and how
/// to reach each guest, in the file's order.
pub fn load(
    path: &Path,
    mut size_of: impl FnMut(&GuestSpec, &AttachTo) -> Result<u64>,
) -> Result<(Scenario, Vec<(String, AttachTo)>)> {
    let text =
        std::fs::read_to_string(path).map_err(Error::io(format!("reading {}", path.display())))?;
    let mut sc = Scenario::parse_unchecked(&text, path)?;
    let bad = |message: String| Error::Scenario {
        path: path.to_path_buf(),
        message,
    };
    if sc.guest.is_empty() {
        return Err(bad(
            "no [[guest]]: a config names the guests to manage".into()
        ));
    }
    let mut targets = Vec::new();
    for g in sc.guest.iter_mut() {
        let spec = g.get_mut();
        let to = match (&sc.libvirt, &spec.qmp) {
            (Some(uri), None) => AttachTo::Libvirt { uri: uri.clone() },
            (None, Some(sock)) => AttachTo::Qmp(sock.clone()),
            (Some(_), Some(_)) => {
                return Err(bad(format!(
                    "guest {}: qmp with libvirt set: a guest is reached one way",
                    spec.name
                )))
            }
            (None, None) => {
                return Err(bad(format!(
                    "guest {}: no qmp socket (or set libvirt = \"qemu:///system\" at the top)",
                    spec.name
                )))
            }
        };
        // The guest's own size, always: a file that says otherwise is wrong.
        let has = size_of(spec, &to)?;
        if spec.memory_mib != 0 && spec.memory_mib != has {
            return Err(bad(format!(
                "guest {}: memory_mib {} in the file, but the guest has {has} MiB (leave it out)",
                spec.name, spec.memory_mib
            )));
        }
        spec.memory_mib = has;
        targets.push((spec.name.clone(), to));
    }
    sc.check(&text, path)?;
    Ok((sc, targets))
}

/// What a reload from `old` to `new` changes, in words (empty: nothing), or
/// why it cannot be applied without a restart.
pub fn reload_changes(old: &Scenario, new: &Scenario) -> std::result::Result<Vec<String>, String> {
    let reach = |s: &Scenario| -> Vec<(String, Option<std::path::PathBuf>, String)> {
        s.guests()
            .map(|g| (g.name.clone(), g.qmp.clone(), g.host.clone()))
            .collect()
    };
    let restart = |what: &str| Err(format!("{what} changed: restart balloon-host to change it"));
    if reach(old) != reach(new) || old.libvirt != new.libvirt {
        return restart("the guests or how they are reached");
    }
    if old.tiers != new.tiers {
        return restart("tiers");
    }
    if old.tick != new.tick {
        return restart("tick");
    }
    if old.second_host != new.second_host {
        return restart("second_host");
    }
    if old.host.swap_file_mib != new.host.swap_file_mib {
        return restart("host.swap_file_mib");
    }
    if old.host.zswap_max_pool_percent != new.host.zswap_max_pool_percent {
        return restart("host.zswap_max_pool_percent");
    }
    if old.policy.ksm_sleep_ms != new.policy.ksm_sleep_ms {
        return restart("policy.ksm_sleep_ms");
    }
    let mut changes = Vec::new();
    if old.name != new.name {
        changes.push(format!("name {} -> {}", old.name, new.name));
    }
    let diff = |changes: &mut Vec<String>, what: String, a: String, b: String| {
        if a != b {
            changes.push(format!("{what} {a} -> {b}"));
        }
    };
    diff(
        &mut changes,
        "host.capacity_mib".into(),
        old.host.capacity_mib.to_string(),
        new.host.capacity_mib.to_string(),
    );
    diff(
        &mut changes,
        "host.min_free_mib".into(),
        old.host.min_free().to_string(),
        new.host.min_free().to_string(),
    );
    diff(
        &mut changes,
        "host.thresholds".into(),
        format!("{:?}", old.host.thresholds),
        format!("{:?}", new.host.thresholds),
    );
    diff(
        &mut changes,
        "duration".into(),
        old.duration.to_string(),
        new.duration.to_string(),
    );
    if old.policy != new.policy {
        changes.push(format!("policy (kind {})", new.policy.kind.name()));
    }
    if old.alerts != new.alerts {
        changes.push("alerts".into());
    }
    for (a, b) in old.guests().zip(new.guests()) {
        let n = &a.name;
        diff(
            &mut changes,
            format!("{n}.reservation_mib"),
            a.reservation_mib.to_string(),
            b.reservation_mib.to_string(),
        );
        diff(
            &mut changes,
            format!("{n}.limit_mib"),
            a.limit().to_string(),
            b.limit().to_string(),
        );
        diff(
            &mut changes,
            format!("{n}.shares"),
            a.shares.to_string(),
            b.shares.to_string(),
        );
    }
    Ok(changes)
}

/// Re-reads a running daemon's config: the new scenario if it can be
/// applied to the running one, with what changed; the running guests' sizes
/// fill those the file leaves out.
pub fn reload(
    path: &Path,
    running: &Scenario,
) -> std::result::Result<(Scenario, Vec<String>), String> {
    let sizes: BTreeMap<&str, u64> = running
        .guests()
        .map(|g| (g.name.as_str(), g.memory_mib))
        .collect();
    let (new, _) = load(path, |g, _| {
        sizes
            .get(g.name.as_str())
            .copied()
            .ok_or_else(|| Error::Invalid(format!("guest {} is not running here", g.name)))
    })
    .map_err(|e| e.to_string())?;
    let changes = reload_changes(running, &new)?;
    Ok((new, changes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
name = "host1"
tick = 2
[host]
capacity_mib = "2G"
[tiers]
sharing = true
ballooning = true
compression = false
swapping = false
[[guest]]
name = "web"
qmp = "/run/web.qmp"
shares = 2000
[[guest]]
name = "db"
qmp = "/run/db.qmp"
memory_mib = "1G"
reservation_mib = "512M"
"#;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let p =
            std::env::temp_dir().join(format!("balloon-host-{name}-{}.toml", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    fn load_text(name: &str, text: &str) -> Result<(Scenario, Vec<(String, AttachTo)>)> {
        let p = write(name, text);
        let r = load(&p, |g, _| {
            Ok(if g.name.starts_with("db") { 1024 } else { 768 })
        });
        let _ = std::fs::remove_file(&p);
        r
    }

    #[test]
    fn a_config_names_running_guests_and_runs_until_stopped() {
        let (sc, to) = load_text("ok", CONFIG).unwrap();
        assert_eq!(sc.duration, f64::INFINITY);
        assert_eq!(sc.host.capacity_mib, 2048);
        let sizes: Vec<u64> = sc.guests().map(|g| g.memory_mib).collect();
        assert_eq!(
            sizes,
            [768, 1024],
            "size read from the guest where left out"
        );
        assert!(matches!(&to[1], (n, AttachTo::Qmp(p)) if n == "db" && p.ends_with("db.qmp")));
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let e = load_text("noqmp", &CONFIG.replace("qmp = \"/run/db.qmp\"\n", ""))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("guest db: no qmp socket"), "{e}");
        let e = load_text(
            "libvirt",
            &format!("libvirt = \"qemu:///system\"\n{CONFIG}"),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains("reached one way"), "{e}");
        let e = load_text("res", &CONFIG.replace("\"512M\"", "\"2G\""))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("(db).reservation_mib") && e.contains("line 19"),
            "{e}"
        );
        let e = load_text(
            "size",
            &CONFIG.replace("memory_mib = \"1G\"", "memory_mib = \"2G\""),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(
            e.contains("memory_mib 2048 in the file, but the guest has 1024"),
            "{e}"
        );
        let e = load_text("typo", &CONFIG.replace("shares = 2000", "shrares = 2000"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("line 14") && e.contains("shrares"), "{e}");
    }

    #[test]
    fn the_shipped_example_config_loads() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../contrib/balloon-host.toml"
        ));
        let (sc, to) = load(path, |_, _| Ok(4096)).unwrap();
        assert_eq!(sc.host.capacity_mib, 12 * 1024);
        assert_eq!(sc.duration, f64::INFINITY);
        assert!(to
            .iter()
            .all(|(_, t)| matches!(t, AttachTo::Libvirt { uri } if uri == "qemu:///system")));
        assert_eq!(
            sc.guests().map(|g| g.limit()).collect::<Vec<_>>(),
            [4096, 3072]
        );
    }

    #[test]
    fn reload_applies_limits_and_refuses_what_needs_a_restart() {
        let (old, _) = load_text("r0", CONFIG).unwrap();
        let (new, _) = load_text(
            "r1",
            &CONFIG
                .replace("capacity_mib = \"2G\"", "capacity_mib = \"3G\"")
                .replace("shares = 2000", "shares = 500"),
        )
        .unwrap();
        assert_eq!(
            reload_changes(&old, &new).unwrap(),
            [
                "host.capacity_mib 2048 -> 3072",
                // The default minFree follows the capacity (6 %).
                "host.min_free_mib 122 -> 184",
                "web.shares 2000 -> 500"
            ]
        );
        assert_eq!(reload_changes(&old, &old).unwrap(), Vec::<String>::new());
        for (what, text) in [
            ("guests", CONFIG.replace("name = \"db\"", "name = \"db2\"")),
            (
                "tiers",
                CONFIG.replace("compression = false", "compression = true"),
            ),
            ("tick", CONFIG.replace("tick = 2", "tick = 5")),
            (
                "swap",
                CONFIG.replace("[tiers]", "swap_file_mib = 2048\n[tiers]"),
            ),
        ] {
            let (new, _) = load_text("r2", &text).unwrap();
            let e = reload_changes(&old, &new).unwrap_err();
            assert!(e.contains("restart"), "{what}: {e}");
        }
    }
}
