//! Observing: each guest's balloon, statistics and QEMU memory, the host's
//! KSM and zswap counters, and what each guest costs its host.

use super::Vm;
use crate::backend::{Backend, BalloonNow};
use crate::engine::policy::{GuestMem, GuestView};
use crate::mechanisms::{self, KsmCounters, VmCgroup};
use crate::record::timeline::VmSample;
use crate::Result;
use qemu_ctl::MIB;
use std::collections::BTreeMap;

/// One guest's measurements at one tick.
pub(super) struct Observed {
    /// Guest size, MiB.
    pub(super) actual: u64,
    /// Its QEMU's resident and swapped memory, MiB.
    pub(super) rss: f64,
    pub(super) swap: f64,
    /// Its QEMU's pages KSM merged, MiB.
    pub(super) merging: f64,
    pub(super) mem: Option<GuestMem>,
    /// Stats updated within the last few seconds.
    pub(super) fresh: bool,
    /// `BALLOON_CHANGE` events since the last tick: (count, last actual MiB).
    pub(super) changes: Option<(usize, u64)>,
    /// What zswap holds of the guest, MiB, as its cgroup v2 `memory.stat`
    /// says (`zswapped`); None elsewhere, where it is estimated.
    pub(super) zswapped: Option<f64>,
    /// Processes the OOM killer killed in its cgroup (v2 `memory.events`).
    pub(super) oom_kills: Option<u64>,
    pub(super) guest: BTreeMap<String, f64>,
}

/// Measures one guest, and its memory cgroup if it has one.
pub(super) fn guest(c: &mut dyn Backend, cgroup: Option<&VmCgroup>) -> Result<Observed> {
    c.alive()?;
    let BalloonNow {
        actual,
        guest,
        last_update,
        changes: events,
    } = c.balloon()?;
    let changes = events
        .last()
        .map(|&a| (events.len(), a.max(0) as u64 / MIB));
    let (rss, swap) = mechanisms::process_mem(c.pid())?;
    let merging = mechanisms::ksm_merging_mib(c.pid()).unwrap_or(0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let fresh = last_update > 0 && now - last_update <= 10;
    let mem = match (
        guest.get("available"),
        guest.get("unused"),
        guest.get("usable"),
    ) {
        (Some(&total), Some(&free), Some(&avail)) => Some(GuestMem {
            total: total as u64,
            free: free as u64,
            available: avail as u64,
        }),
        _ => None,
    };
    let v2 = cgroup.filter(|cg| cg.is_v2());
    Ok(Observed {
        actual,
        rss,
        swap,
        merging,
        mem,
        fresh,
        changes,
        guest,
        zswapped: v2.and_then(|cg| cg.stat().ok()).map(|m| m.zswapped),
        oom_kills: v2.and_then(|cg| cg.events().ok()).map(|e| e.oom_kill),
    })
}

/// What each guest holds of the host's shared, compressed and swapped
/// memory, and what it costs its host.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Attribution {
    /// Memory KSM saved on the guest's behalf, MiB.
    pub(super) shared: Vec<f64>,
    /// (compressed, swapped), MiB.
    pub(super) split: Vec<(f64, f64)>,
    /// Resident minus shared, plus its part of the zswap pool (by what it
    /// has compressed; all of it to the first guest when none has).
    pub(super) cost: Vec<f64>,
}

/// Attributes the host-wide KSM and zswap counters to the guests
/// (`None`: lost); `zswap` is (pool, compressed), MiB. What zswap holds of
/// each guest is the kernel's own count where every guest has one (cgroup
/// v2), else the host-wide count split by what each has swapped.
pub(super) fn attribute(
    guests: &[Option<Observed>],
    ksm: Option<&KsmCounters>,
    zswap: Option<(f64, f64)>,
) -> Attribution {
    let merging: Vec<f64> = guests
        .iter()
        .map(|o| o.as_ref().map_or(0.0, |o| o.merging))
        .collect();
    let shared = match ksm {
        Some(k) => mechanisms::attribute_sharing(&merging, k.sharing, k.shared),
        None => vec![0.0; guests.len()],
    };
    let swaps: Vec<f64> = guests
        .iter()
        .map(|o| o.as_ref().map_or(0.0, |o| o.swap))
        .collect();
    let exact: Option<Vec<f64>> = guests
        .iter()
        .map(|o| o.as_ref().map_or(Some(0.0), |o| o.zswapped))
        .collect();
    let split = match exact {
        Some(z) if guests.iter().any(Option::is_some) => swaps
            .iter()
            .zip(z)
            .map(|(&s, z)| (z.min(s), s - z.min(s)))
            .collect(),
        _ => mechanisms::attribute_swap(&swaps, zswap.map_or(0.0, |z| z.1)),
    };
    let pool = zswap.map_or(0.0, |z| z.0);
    let compressed_total: f64 = split.iter().map(|c| c.0).sum();
    let cost = (0..guests.len())
        .map(|i| {
            let pool_part = if compressed_total > 0.0 {
                pool * split[i].0 / compressed_total
            } else if i == 0 {
                pool
            } else {
                0.0
            };
            guests[i].as_ref().map_or(0.0, |o| o.rss - shared[i]) + pool_part
        })
        .collect();
    Attribution {
        shared,
        split,
        cost,
    }
}

/// The policy's view of one running guest.
pub(super) fn guest_view(vm: &Vm, o: &Observed) -> GuestView {
    GuestView {
        configured: vm.spec.memory_mib,
        reservation: vm.spec.reservation_mib,
        limit: vm.spec.limit(),
        shares: vm.spec.shares,
        target: vm.target,
        actual: o.actual,
        resident: o.rss.round() as u64,
        mem: o.mem.filter(|_| o.fresh),
        cgroup_limit: vm.cgroup_limit,
    }
}

/// One guest's line of the timeline.
pub(super) fn vm_sample(
    vm: &Vm,
    o: Option<&Observed>,
    shared: f64,
    (compressed, swapped): (f64, f64),
) -> VmSample {
    let configured = vm.spec.memory_mib;
    match o {
        Some(o) => VmSample {
            name: vm.spec.name.clone(),
            status: vm.status,
            configured,
            resident: o.rss.round() as u64,
            balloon: configured.saturating_sub(o.actual),
            target: vm.target,
            actual: o.actual,
            shared,
            compressed,
            swapped,
            cgroup_limit: vm.cgroup_limit,
            guest: o.guest.clone(),
        },
        None => VmSample {
            name: vm.spec.name.clone(),
            status: vm.status,
            configured,
            resident: 0,
            balloon: 0,
            target: vm.target,
            actual: 0,
            shared: 0.0,
            compressed: 0.0,
            swapped: 0.0,
            cgroup_limit: None,
            guest: BTreeMap::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(rss: f64, swap: f64, merging: f64) -> Option<Observed> {
        Some(Observed {
            actual: 512,
            rss,
            swap,
            merging,
            mem: None,
            fresh: true,
            changes: None,
            guest: BTreeMap::new(),
            zswapped: None,
            oom_kills: None,
        })
    }

    #[test]
    fn a_guest_costs_its_resident_memory_less_what_ksm_saved_plus_its_pool_share() {
        // The two QEMUs hold the 50 MiB KSM merged; 40 MiB of it is saved.
        let guests = [seen(400.0, 100.0, 30.0), seen(300.0, 0.0, 20.0), None];
        let ksm = KsmCounters {
            run: 1,
            pages_to_scan: 100,
            sharing: 40.0,
            shared: 10.0,
        };
        // 100 MiB swapped, all of it compressed, in a 40 MiB pool.
        let a = attribute(&guests, Some(&ksm), Some((40.0, 100.0)));
        assert_eq!(a.shared.len(), 3);
        assert_eq!(a.shared[2], 0.0, "a lost guest shares nothing");
        assert_eq!(
            a.shared[..2],
            [24.0, 16.0],
            "saved memory by what each merged"
        );
        assert_eq!(a.split[0], (100.0, 0.0));
        assert_eq!(a.split[1], (0.0, 0.0));
        assert!((a.cost[0] - (400.0 - a.shared[0] + 40.0)).abs() < 1e-9);
        assert!((a.cost[1] - (300.0 - a.shared[1])).abs() < 1e-9);
        assert_eq!(a.cost[2], 0.0);
    }

    #[test]
    fn cgroup_v2_counts_replace_the_estimate_only_when_every_guest_has_one() {
        let with = |o: Option<Observed>, z: f64| {
            o.map(|o| Observed {
                zswapped: Some(z),
                ..o
            })
        };
        // 60 MiB host-wide; the kernel says 50 of it is the first guest's
        // and 10 the second's, though both swapped 50 MiB.
        let guests = [
            with(seen(100.0, 50.0, 0.0), 50.0),
            with(seen(100.0, 50.0, 0.0), 10.0),
            None,
        ];
        let a = attribute(&guests, None, Some((20.0, 60.0)));
        assert_eq!(a.split, vec![(50.0, 0.0), (10.0, 40.0), (0.0, 0.0)]);
        assert!((a.cost[0] - (100.0 + 20.0 * 50.0 / 60.0)).abs() < 1e-9);
        // One guest without the count: the estimate, half each.
        let guests = [with(seen(100.0, 50.0, 0.0), 50.0), seen(100.0, 50.0, 0.0)];
        let a = attribute(&guests, None, Some((20.0, 60.0)));
        assert_eq!(a.split, vec![(30.0, 20.0), (30.0, 20.0)]);
    }

    #[test]
    fn a_pool_nobody_compressed_into_is_charged_once() {
        let guests = [seen(100.0, 0.0, 0.0), seen(100.0, 0.0, 0.0)];
        let a = attribute(&guests, None, Some((8.0, 0.0)));
        assert_eq!(a.cost, vec![108.0, 100.0]);
        assert_eq!(a.shared, vec![0.0, 0.0]);
    }
}
