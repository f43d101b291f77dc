//! Two hosts: moving a guest off a host that stays under pressure, with the
//! simulator's balancer ([`balance::plan`]) and QEMU's own live migration.

use super::Vm;
use crate::engine::balance;
use crate::engine::policy::{HostState, HostView, PolicyConfig, PolicyState};
use crate::mechanisms::VmCgroup;
use crate::record::timeline::VmStatus;
use crate::scenario::SecondHost;
use std::time::{Duration, Instant};

/// Longest a live migration may take.
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(300);

/// Two-host balancing state: how long each host has been under pressure,
/// and when the last migration ended.
#[derive(Default)]
pub(super) struct Balancer {
    pressured: [u32; 2],
    last: Option<Instant>,
}

impl Balancer {
    /// Counts this tick's pressure and picks a migration (guest, from, to)
    /// unless one ended within the cooldown.
    pub(super) fn pick(
        &mut self,
        b: &SecondHost,
        hosts: &[(&str, u64, PolicyConfig)],
        states: &[PolicyState],
        views: &[HostView],
        vms: &[Vm],
        cost: &[f64],
    ) -> Option<(usize, usize, usize)> {
        if hosts.len() != 2 || states.len() != 2 || views.len() != 2 {
            return None;
        }
        for (p, s) in self.pressured.iter_mut().zip(states) {
            *p = if s.host_state >= HostState::Soft {
                *p + 1
            } else {
                0
            };
        }
        if self
            .last
            .is_some_and(|t| t.elapsed().as_secs_f64() < b.cooldown_s)
        {
            return None;
        }
        // The scenario's hosts keep no margin beyond leaving soft, and
        // the destination must not itself be pushed back into soft.
        let host = |h: usize| {
            let leave_soft =
                balance::leave_soft_mib(&hosts[h].2.thresholds, hosts[h].2.min_free_mib as f64);
            balance::Host {
                state: states[h].host_state,
                pressured: self.pressured[h],
                free: views[h].free(),
                leave_soft,
                keep: leave_soft,
                busy: false,
            }
        };
        // Only guests this run launched can be migrated (it owns their
        // QEMU); a guest costs its host what it takes, and takes as much on
        // the other.
        let guests: Vec<balance::Vm> = vms
            .iter()
            .zip(cost)
            .map(|(v, c)| balance::Vm {
                host: v.host,
                copy: *c,
                frees: *c,
                may_move: v.status == VmStatus::Running && v.launched && v.conn.is_some(),
            })
            .collect();
        let rules = balance::Rules {
            sustain_ticks: b.sustain_ticks,
            max_in_flight: 1,
        };
        balance::plan(&rules, &[host(0), host(1)], &guests, 0)
            .first()
            .map(|m| (m.vm, m.from, m.to))
    }

    /// A migration ended: the cooldown starts, pressure is counted anew.
    pub(super) fn migrated(&mut self) {
        self.last = Some(Instant::now());
        self.pressured = [0; 2];
    }
}

/// Live-migrates a guest this run launched from host `from` to host `to`
/// (index, name): QEMU's own migration over loopback into a new QEMU in the
/// guest's cgroup. Returns the event; a failed migration leaves the guest
/// where it was.
pub(super) fn migrate(vm: &mut Vm, from: &str, (to, to_name): (usize, &str)) -> String {
    let name = vm.spec.name.clone();
    let Some(g) = vm.conn.as_mut().and_then(|c| c.owned()) else {
        return format!("{name}: not migrated (a guest this run did not launch)");
    };
    // Source and destination are charged to the same cgroup while both
    // exist: no limit during the move (the next tick decides again).
    if let (Some(_), Some(cg)) = (vm.cgroup_limit, vm.cgroup.as_ref()) {
        if cg.set_limit(None).is_ok() {
            vm.cgroup_limit = None;
        }
    }
    tracing::info!("live-migrating {name} from host {from} to host {to_name}");
    let t0 = Instant::now();
    match g.migrate_local(vm.cgroup.as_ref().map(VmCgroup::procs), MIGRATION_TIMEOUT) {
        Ok(()) => {
            vm.host = to;
            // Stats polling belongs to the QEMU, not to the guest.
            let stats = match g.qmp().set_stats_interval(1) {
                Ok(()) => String::new(),
                Err(e) => format!(" (statistics polling not set: {e})"),
            };
            format!(
                "{name}: live-migrated from host {from} to host {to_name} in {:.1} s{stats}",
                t0.elapsed().as_secs_f64()
            )
        }
        Err(e) => format!(
            "{name}: migration from host {from} to host {to_name} failed, the guest stays: {e}"
        ),
    }
}
