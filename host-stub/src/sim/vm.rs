//! One simulated VM on the host model: its balloon, guest memory (working
//! set, page cache, free) and where its pages are on the host (resident,
//! merged, in zswap, in the swap file). The order of one tick is in
//! [`crate::sim::simulate`]'s documentation.

use super::simulate::{CACHE_FILL_MIB_S, REFAULT_TAU_S, ZSWAP_SHARE};
use super::workload::{Trace, VmSpec, WorkloadKind};
use crate::engine::policy::{GuestMem, GuestView};

/// One simulated VM: its trace, balloon, guest memory and where its pages
/// are on the host.
#[derive(Clone, Debug)]
pub(crate) struct Vm {
    pub(crate) kind: WorkloadKind,
    pub(crate) size: f64,
    pub(crate) reservation: u64,
    pub(crate) shares: u32,
    pub(crate) trace: Trace,
    /// balloon_rs's floor of available memory: max(32, size / 16).
    pub(crate) guest_floor: f64,
    /// The guest kernel's own reserve: max(16, size / 64).
    pub(crate) reserve: f64,
    /// Last balloon target (guest size asked for).
    pub(crate) target: u64,
    /// Guest size now.
    pub(crate) actual: f64,
    pub(crate) anon: f64,
    pub(crate) cache: f64,
    pub(crate) sharable: f64,
    /// Touched memory: in RAM, in zswap (uncompressed) and in the swap file.
    pub(crate) ram: f64,
    pub(crate) zswap: f64,
    pub(crate) swap: f64,
    /// KSM-merged memory of this VM.
    pub(crate) merged: f64,
    /// The cgroup limit in force.
    pub(crate) limit: Option<u64>,
}

/// Pain and events one tick caused in one VM.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct TickPain {
    /// MiB-seconds below the guest's own floor.
    pub(crate) squeeze: f64,
    /// MiB-seconds of page cache wanted but not had.
    pub(crate) cache_short: f64,
    /// MiB refaulted from zswap and from the swap file.
    pub(crate) refault_zswap: f64,
    pub(crate) refault_swap: f64,
    /// OOM deflations.
    pub(crate) oom: u64,
}

impl Vm {
    pub(crate) fn new(spec: &VmSpec) -> Self {
        let size = spec.configured as f64;
        let mut trace = Trace::new(spec);
        let d = trace.step(0.0, 0.0);
        let reserve = (size / 64.0).max(16.0);
        let anon = d.anon.min(size - reserve);
        let cache = d.cache_want.min(size - anon - reserve).max(0.0);
        Self {
            kind: spec.kind,
            size,
            reservation: spec.reservation,
            shares: spec.shares,
            trace,
            guest_floor: (size / 16.0).max(32.0),
            reserve,
            target: spec.configured,
            actual: size,
            anon,
            cache,
            sharable: d.sharable,
            ram: anon + cache,
            zswap: 0.0,
            swap: 0.0,
            merged: 0.0,
            limit: None,
        }
    }

    /// Touched memory: in RAM, in zswap and in the swap file.
    pub(crate) fn touched(&self) -> f64 {
        self.ram + self.zswap + self.swap
    }

    pub(crate) fn working_set(&self) -> f64 {
        self.anon + self.cache
    }

    /// Touched memory the guest no longer uses.
    pub(crate) fn stale(&self) -> f64 {
        (self.touched() - self.working_set()).max(0.0)
    }

    /// The part of the swapped-out memory that belongs to the working set
    /// (cold pages go out first, so the stale ones are out before these).
    pub(crate) fn out_working_set(&self) -> f64 {
        (self.zswap + self.swap - self.stale()).max(0.0)
    }

    /// Working-set pages in RAM.
    pub(crate) fn ram_working_set(&self) -> f64 {
        let stale_in_ram = self.stale() - self.stale().min(self.zswap + self.swap);
        (self.ram - stale_in_ram).max(0.0)
    }

    /// Removes `amount` of swapped-out memory, zswap and swap file in
    /// proportion; returns what came from each.
    pub(crate) fn take_out(&mut self, amount: f64) -> (f64, f64) {
        let out = self.zswap + self.swap;
        if out <= 0.0 || amount <= 0.0 {
            return (0.0, 0.0);
        }
        let amount = amount.min(out);
        let from_zswap = amount * self.zswap / out;
        let from_swap = amount - from_zswap;
        self.zswap = (self.zswap - from_zswap).max(0.0);
        self.swap = (self.swap - from_swap).max(0.0);
        (from_zswap, from_swap)
    }

    /// Step 1: the balloon moves to the target, inflation stopping at the
    /// guest's floor and shedding page cache. The balloon returns the
    /// touched pages it took: the guest's allocator hands out recently freed
    /// (touched) pages before the large never-touched blocks, so an
    /// inflation of `d` returns `min(d, stale)` touched pages.
    pub(crate) fn move_balloon(&mut self) {
        let target = self.target as f64;
        let before = self.actual;
        if target < before {
            let floor = (self.anon + self.guest_floor).min(before);
            self.actual = target.max(floor);
        } else if target > before {
            self.actual = target.min(self.size);
        }
        self.cache = self
            .cache
            .min((self.actual - self.anon - self.reserve).max(0.0));
        let stale = self.stale();
        let taken = (before - self.actual)
            .min(stale)
            .max(self.touched() - self.actual);
        if taken > 0.0 {
            // Stale pages in RAM and swapped out give in proportion.
            let out_stale = stale.min(self.zswap + self.swap);
            let from_out = if stale > 0.0 {
                taken * out_stale / stale
            } else {
                0.0
            };
            let (z, s) = self.take_out(from_out);
            self.ram = (self.ram - (taken - z - s)).max(0.0);
        }
    }

    /// Step 2: the workload moves; the guest deflates on OOM, its page cache
    /// follows the trace, and new pages become resident.
    pub(crate) fn run_workload(&mut self, t: f64, dt: f64, pain: &mut TickPain) {
        let d = self.trace.step(t, dt);
        self.anon = d.anon.min(self.size - self.reserve);
        self.sharable = d.sharable;
        if self.anon + self.reserve > self.actual {
            self.actual = (self.anon + self.reserve).min(self.size);
            pain.oom += 1;
        }
        let can_grow = d.cache_want.min(self.cache + CACHE_FILL_MIB_S * dt);
        let room = (self.actual - self.anon - self.reserve).max(0.0);
        let unballooned = (self.size - self.anon - self.reserve).max(0.0);
        let cache = can_grow.min(room);
        pain.cache_short += (can_grow.min(unballooned) - cache).max(0.0) * dt;
        self.cache = cache;
        pain.squeeze += ((self.anon + self.guest_floor).min(self.size) - self.actual).max(0.0) * dt;
        let new = self.working_set() - self.touched();
        if new > 0.0 {
            self.ram += new;
        }
    }

    /// Step 3: refaults of swapped-out working-set pages, then the cgroup
    /// limit pushes resident memory above it out.
    pub(crate) fn enforce_limit(&mut self, dt: f64, pain: &mut TickPain) {
        let back = self.out_working_set() * (1.0 - (-dt / REFAULT_TAU_S).exp());
        if back > 0.0 {
            let (z, s) = self.take_out(back);
            self.ram += z + s;
            pain.refault_zswap += z;
            pain.refault_swap += s;
        }
        if let Some(limit) = self.limit {
            let push = self.ram - limit as f64;
            if push > 0.0 {
                let into_zswap = push.min((ZSWAP_SHARE * self.size - self.zswap).max(0.0));
                self.zswap += into_zswap;
                self.swap += push - into_zswap;
                self.ram = limit as f64;
            }
        }
    }

    /// Step 4: merged pages split when the guest stops using them; a
    /// running KSM merges `fraction` of what is left to merge.
    pub(crate) fn share(&mut self, fraction: f64) {
        let can = self.sharable.min(self.ram_working_set());
        self.merged = self.merged.min(can);
        self.merged += fraction * (can - self.merged);
    }

    /// The policy's view of this VM.
    pub(crate) fn view(&self) -> GuestView {
        let configured = self.size as u64;
        let total = self.actual.round() as u64;
        let free = (self.actual - self.anon - self.cache).max(0.0).round() as u64;
        let available = (self.actual - self.anon).max(0.0).round() as u64;
        GuestView {
            configured,
            reservation: self.reservation,
            limit: configured,
            shares: self.shares,
            target: self.target,
            actual: total,
            resident: self.ram.round() as u64,
            mem: Some(GuestMem {
                total,
                free: free.min(total),
                available: available.min(total),
            }),
            cgroup_limit: self.limit,
        }
    }
}
