//! The simulated fleet and its workloads: each VM's kind, size, shares and
//! reservation drawn from the seed (`fleet`), and its trace (`Trace`):
//! what the workload wants every tick.

use super::simulate::{SimConfig, HOUR};
use serde::{Deserialize, Serialize};

/// A synthetic workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// Mostly idle: a small working set, slowly growing page cache.
    Idle,
    /// A steady service: a large working set with a mild daily swing.
    Steady,
    /// Spiky: a small base with occasional large bursts of minutes.
    Spiky,
    /// A cache-heavy database: page cache grows to fill the guest.
    CacheDb,
    /// Near-identical OS images (VDI-like): most of the base memory is
    /// identical across these VMs; busy in office hours.
    OsImage,
}

impl WorkloadKind {
    /// Every kind, in report order.
    pub const ALL: [WorkloadKind; 5] = [
        WorkloadKind::Idle,
        WorkloadKind::Steady,
        WorkloadKind::Spiky,
        WorkloadKind::CacheDb,
        WorkloadKind::OsImage,
    ];

    /// Name as in reports.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Idle => "idle",
            WorkloadKind::Steady => "steady",
            WorkloadKind::Spiky => "spiky",
            WorkloadKind::CacheDb => "cache-db",
            WorkloadKind::OsImage => "os-image",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Share of the fleet per kind, in [`WorkloadKind::ALL`] order.
pub(crate) const KIND_WEIGHTS: [f64; 5] = [0.25, 0.25, 0.15, 0.15, 0.20];

/// splitmix64: small, fast and good enough for traces.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub(crate) fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Standard normal (Box-Muller).
    pub(crate) fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// An index drawn with the given weights.
    pub(crate) fn pick(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.unit() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len().saturating_sub(1)
    }
}

/// One VM of the fleet, before any trace runs.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct VmSpec {
    pub(crate) kind: WorkloadKind,
    pub(crate) configured: u64,
    pub(crate) reservation: u64,
    pub(crate) shares: u32,
    pub(crate) seed: u64,
}

/// The fleet of `cfg`: the same for every policy and overcommit.
pub(crate) fn fleet(cfg: &SimConfig) -> Vec<VmSpec> {
    let mut rng = Rng::new(cfg.seed ^ 0x5EED_F1EE_7000_0000);
    (0..cfg.vms)
        .map(|_| {
            let kind = WorkloadKind::ALL[rng.pick(&KIND_WEIGHTS)];
            let (sizes, weights): (&[u64], &[f64]) = match kind {
                WorkloadKind::CacheDb => (&[4, 8], &[0.5, 0.5]),
                WorkloadKind::OsImage => (&[2, 4], &[0.6, 0.4]),
                _ => (&[1, 2, 4, 8], &[0.2, 0.35, 0.3, 0.15]),
            };
            let configured = sizes[rng.pick(weights)] * 1024;
            let shares = if rng.unit() < 0.15 { 2000 } else { 1000 };
            let reservation = if rng.unit() < 0.10 { configured / 2 } else { 0 };
            VmSpec {
                kind,
                configured,
                reservation,
                shares,
                seed: rng.next_u64(),
            }
        })
        .collect()
}

/// What a guest's workload wants at one tick, MiB.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Demand {
    /// Anonymous working set: in use, not reclaimable.
    pub(crate) anon: f64,
    /// Page cache the workload would keep if it had the room.
    pub(crate) cache_want: f64,
    /// Memory identical to other VMs of the kind (part of `anon`).
    pub(crate) sharable: f64,
}

/// A workload's shape, as shares of the VM's configured size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Shape {
    /// Base anonymous working set.
    pub(crate) base: f64,
    /// Daily swing of the working set (added at the day's peak).
    pub(crate) swing: f64,
    /// Standard deviation of the working set's noise (15-minute memory).
    pub(crate) noise_sd: f64,
    /// Page cache wanted at the start.
    pub(crate) cache0: f64,
    /// Page cache growth per hour.
    pub(crate) cache_growth: f64,
    /// Most page cache wanted.
    pub(crate) cache_cap: f64,
    /// Share of the working set identical to other VMs of the kind.
    pub(crate) share_frac: f64,
    /// Most identical memory.
    pub(crate) share_cap: f64,
}

impl Shape {
    /// The shape of `kind`, with this VM's draws from `rng`.
    pub(crate) fn draw(kind: WorkloadKind, rng: &mut Rng) -> Self {
        match kind {
            WorkloadKind::Idle => {
                let cache0 = rng.range(0.05, 0.10);
                Shape {
                    base: rng.range(0.08, 0.15),
                    swing: 0.03,
                    noise_sd: 0.01,
                    cache0,
                    // Logs and updatedb: +15 % over half a day.
                    cache_growth: 0.15 / 12.0,
                    cache_cap: cache0 + 0.15,
                    // Zero pages and the common kernel.
                    share_frac: 0.15,
                    share_cap: 1.0,
                }
            }
            WorkloadKind::Steady => {
                let cache0 = rng.range(0.15, 0.30);
                Shape {
                    base: rng.range(0.35, 0.50),
                    swing: 0.10,
                    noise_sd: 0.02,
                    cache0,
                    cache_growth: 0.0,
                    cache_cap: cache0,
                    share_frac: 0.05,
                    share_cap: 1.0,
                }
            }
            WorkloadKind::Spiky => Shape {
                base: rng.range(0.10, 0.20),
                swing: 0.0,
                noise_sd: 0.02,
                cache0: 0.10,
                cache_growth: 0.0,
                cache_cap: 0.10,
                share_frac: 0.05,
                share_cap: 1.0,
            },
            WorkloadKind::CacheDb => Shape {
                base: rng.range(0.20, 0.30),
                swing: 0.05,
                noise_sd: 0.01,
                cache0: rng.range(0.05, 0.20),
                // Reads fill the guest in a few hours.
                cache_growth: rng.range(0.10, 0.40),
                cache_cap: 1.0,
                share_frac: 0.02,
                share_cap: 1.0,
            },
            WorkloadKind::OsImage => {
                let cache0 = rng.range(0.08, 0.15);
                Shape {
                    base: rng.range(0.20, 0.28),
                    swing: 0.25,
                    noise_sd: 0.015,
                    cache0,
                    cache_growth: 0.0,
                    cache_cap: cache0,
                    // The common image: nearly all of the base.
                    share_frac: 0.85,
                    share_cap: rng.range(0.22, 0.26),
                }
            }
        }
    }
}

/// A VM's workload trace: its shape drawn from its seed, and the state of
/// its noise and bursts.
#[derive(Clone, Debug)]
pub(crate) struct Trace {
    pub(crate) kind: WorkloadKind,
    pub(crate) size: f64,
    pub(crate) rng: Rng,
    /// Hours the VM's day is shifted by.
    pub(crate) phase_h: f64,
    pub(crate) shape: Shape,
    pub(crate) noise: f64,
    /// Bursts (spiky only): mean gap (s), and the one in progress (seconds
    /// left, height as a share of the size).
    pub(crate) burst_gap_s: f64,
    pub(crate) burst_left_s: f64,
    pub(crate) burst_height: f64,
}

impl Trace {
    pub(crate) fn new(spec: &VmSpec) -> Self {
        let mut rng = Rng::new(spec.seed);
        let phase_h = rng.range(-2.0, 2.0);
        let shape = Shape::draw(spec.kind, &mut rng);
        let burst_gap_s = rng.range(1.5, 4.0) * HOUR;
        Self {
            kind: spec.kind,
            size: spec.configured as f64,
            rng,
            phase_h,
            shape,
            noise: 0.0,
            burst_gap_s,
            burst_left_s: 0.0,
            burst_height: 0.0,
        }
    }

    /// Daily activity in 0..=1: lowest at 03:00, highest at 15:00 (shifted
    /// by the VM's phase).
    pub(crate) fn day(&self, t: f64) -> f64 {
        let h = t / HOUR - 3.0 - self.phase_h;
        0.5 - 0.5 * (std::f64::consts::TAU * h / 24.0).cos()
    }

    /// The demand at `t` seconds, `dt` after the previous call.
    pub(crate) fn step(&mut self, t: f64, dt: f64) -> Demand {
        let sh = self.shape;
        let rho = (-dt / 900.0).exp();
        self.noise = rho * self.noise + sh.noise_sd * (1.0 - rho * rho).sqrt() * self.rng.normal();
        let day = self.day(t);
        let activity = match self.kind {
            // Office hours: a sharper peak.
            WorkloadKind::OsImage => day * day,
            _ => day,
        };
        let mut anon = sh.base + sh.swing * activity + self.noise;
        if self.kind == WorkloadKind::Spiky {
            if self.burst_left_s > 0.0 {
                self.burst_left_s -= dt;
            } else {
                // More bursts by day.
                let p = 1.0 - (-dt * (0.3 + day) / self.burst_gap_s).exp();
                if self.rng.unit() < p {
                    self.burst_left_s = self.rng.range(5.0, 45.0) * 60.0;
                    self.burst_height = self.rng.range(0.35, 0.70);
                }
            }
            if self.burst_left_s > 0.0 {
                anon += self.burst_height;
            }
        }
        let anon = anon.clamp(0.02, 0.92) * self.size;
        let cache_want = (sh.cache0 + sh.cache_growth * t / HOUR)
            .min(sh.cache_cap)
            .min(1.0)
            * self.size;
        let sharable = (sh.share_frac * anon).min(sh.share_cap * self.size);
        Demand {
            anon,
            cache_want,
            sharable,
        }
    }
}
