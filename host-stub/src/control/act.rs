//! Acting: the engine's decisions applied to the guests (balloon targets,
//! cgroup limits) and to the host (KSM), and the scenario's workloads
//! started when they are due. A failed command is an event, never the end
//! of the run.

use super::Vm;
use crate::engine::policy::{self, CgroupAction};
use crate::mechanisms::HostSettings;
use std::path::Path;
use std::time::Duration;

/// Applies one host's decision to its guests (`members`, in the order the
/// policy saw them).
pub(super) fn guests(
    vms: &mut [Vm],
    members: &[usize],
    d: &policy::Decision,
    events: &mut Vec<String>,
) {
    for (k, &i) in members.iter().enumerate() {
        let vm = &mut vms[i];
        if let Some(t) = d.targets[k] {
            if let Some(c) = vm.conn.as_mut() {
                match c.set_size_mib(t) {
                    Ok(()) => {
                        events.push(format!("{}: target {} -> {t} MiB", vm.spec.name, vm.target));
                        vm.target = t;
                    }
                    Err(e) => events.push(format!("{}: balloon command failed: {e}", vm.spec.name)),
                }
            }
        }
        if let (Some(a), Some(cg)) = (d.cgroups[k], vm.cgroup.as_ref()) {
            let limit = match a {
                CgroupAction::Limit(m) => Some(m),
                CgroupAction::Unlimited => None,
            };
            if limit != vm.cgroup_limit {
                match cg.set_limit(limit) {
                    Ok(()) => {
                        events.push(match limit {
                            Some(m) => format!("{}: memory cgroup limit {m} MiB", vm.spec.name),
                            None => format!("{}: memory cgroup limit lifted", vm.spec.name),
                        });
                        vm.cgroup_limit = limit;
                    }
                    Err(e) => events.push(format!("{}: cgroup limit failed: {e}", vm.spec.name)),
                }
            }
        }
    }
}

/// One KSM setting for the machine from the hosts' decisions: scanning if
/// any host wants it, at the fastest pace any asks for.
pub(super) fn merge_ksm(a: Option<policy::Ksm>, b: policy::Ksm) -> policy::Ksm {
    match a {
        None => b,
        Some(k) => policy::Ksm {
            run: k.run || b.run,
            pages_to_scan: k.pages_to_scan.max(b.pages_to_scan),
            sleep_ms: k.sleep_ms.min(b.sleep_ms),
        },
    }
}

/// Applies the KSM decision; `on` is whether KSM scans now, updated.
pub(super) fn ksm(
    settings: &mut HostSettings,
    dir: &Path,
    want: policy::Ksm,
    on: &mut bool,
    events: &mut Vec<String>,
) {
    let r = settings
        .set(&dir.join("pages_to_scan"), &want.pages_to_scan.to_string())
        .and_then(|_| {
            if want.run != *on {
                settings.ksm_run(dir, want.run)?;
            }
            Ok(())
        });
    match r {
        Ok(()) => {
            if want.run != *on {
                events.push(format!(
                    "KSM {}",
                    if want.run { "scanning" } else { "paused" }
                ));
            }
            *on = want.run;
        }
        Err(e) => events.push(format!("KSM: {e}")),
    }
}

/// Starts the workloads due by `t` (s into the run) in the guests this run
/// launched.
pub(super) fn workloads(vms: &mut [Vm], t: f64, events: &mut Vec<String>) {
    for vm in vms.iter_mut() {
        while let Some(w) = vm.workloads.get(vm.next_workload).cloned() {
            if w.at > t {
                break;
            }
            vm.next_workload += 1;
            let Some(g) = vm.conn.as_mut().and_then(|c| c.owned()) else {
                continue;
            };
            let cmd = format!(
                "balloon-guest workload --mib {} --content {} --hold {} --seed {} >/dev/null 2>&1 &",
                w.mib,
                w.content.arg(),
                w.hold.ceil() as u64,
                vm.seed
            );
            match g.run_timeout(&cmd, Duration::from_secs(10)) {
                Ok(_) => events.push(format!(
                    "{}: workload {} MiB {} for {} s",
                    vm.spec.name,
                    w.mib,
                    w.content.arg(),
                    w.hold
                )),
                Err(e) => events.push(format!("{}: workload not started: {e}", vm.spec.name)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ksm_scans_if_any_host_wants_it_at_the_fastest_pace() {
        let slow = policy::Ksm {
            run: false,
            pages_to_scan: 100,
            sleep_ms: 200,
        };
        let fast = policy::Ksm {
            run: true,
            pages_to_scan: 1000,
            sleep_ms: 20,
        };
        assert_eq!(merge_ksm(None, slow), slow);
        assert_eq!(merge_ksm(Some(slow), fast), fast);
        assert_eq!(merge_ksm(Some(fast), slow), fast);
    }
}
