//! The policy engine: a pure function from a snapshot of the host and its
//! guests to the actions of one tick.
//!
//! Both the real loop (`balloon-host run`/`attach`) and the simulator
//! (`balloon-host simulate`) call [`decide`]; nothing here touches QEMU, the
//! host or the clock, so every rule is unit- and property-tested.
//!
//! All sizes are MiB.
//!
//! **Host states** (ESXi's names; thresholds are percentages of `min_free`):
//!
//! | state | free memory     | tiers in force                              |
//! |-------|-----------------|---------------------------------------------|
//! | high  | >= high (400 %) | none; balloons deflate, cgroup limits lift  |
//! | clear | >= clear (100 %)| page sharing                                |
//! | soft  | >= soft (64 %)  | + ballooning                                |
//! | hard  | >= hard (32 %)  | + compression (cgroup limit, zswap)         |
//! | low   | below hard      | + swapping (deeper cgroup limits)           |
//!
//! A state gets worse as soon as free memory crosses its threshold; it gets
//! better only when free memory is `hysteresis_pct` above the better
//! state's threshold, so states don't flap.

use serde::{Deserialize, Serialize};

/// A host memory state, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostState {
    /// Plenty free: give memory back.
    High,
    /// Comfortable: page sharing only.
    Clear,
    /// Tight: ballooning.
    Soft,
    /// Very tight: compression.
    Hard,
    /// Critical: swapping.
    Low,
}

impl HostState {
    /// All states, best first.
    pub const ALL: [HostState; 5] = [
        HostState::High,
        HostState::Clear,
        HostState::Soft,
        HostState::Hard,
        HostState::Low,
    ];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            HostState::High => "high",
            HostState::Clear => "clear",
            HostState::Soft => "soft",
            HostState::Hard => "hard",
            HostState::Low => "low",
        }
    }
}

impl std::fmt::Display for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// State thresholds, in percent of `min_free` (ESXi's defaults).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// At or above: high.
    pub high: f64,
    /// At or above: clear.
    pub clear: f64,
    /// At or above: soft.
    pub soft: f64,
    /// At or above: hard; below: low.
    pub hard: f64,
    /// How far above a better state's threshold free memory must be before
    /// the host moves to it, in percent of that threshold.
    pub hysteresis_pct: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            high: 400.0,
            clear: 100.0,
            soft: 64.0,
            hard: 32.0,
            hysteresis_pct: 25.0,
        }
    }
}

impl Thresholds {
    /// The lower bound of `state` in percent of min_free (0 for low).
    pub fn lower_pct(&self, state: HostState) -> f64 {
        match state {
            HostState::High => self.high,
            HostState::Clear => self.clear,
            HostState::Soft => self.soft,
            HostState::Hard => self.hard,
            HostState::Low => 0.0,
        }
    }

    /// What is wrong with these thresholds, if anything.
    pub fn problem(&self) -> Option<String> {
        let ordered = [self.high, self.clear, self.soft, self.hard];
        let bad = ordered.iter().any(|v| !v.is_finite() || *v <= 0.0)
            || ordered.windows(2).any(|w| w[0] <= w[1])
            || !(self.hysteresis_pct.is_finite() && (0.0..=400.0).contains(&self.hysteresis_pct));
        bad.then(|| "need high > clear > soft > hard > 0 and hysteresis_pct in 0..=400".to_string())
    }

    /// The state free memory alone puts the host in, without hysteresis.
    pub fn classify(&self, free_mib: f64, min_free_mib: f64) -> HostState {
        let pct = 100.0 * free_mib / min_free_mib.max(1.0);
        HostState::ALL
            .into_iter()
            .find(|s| pct >= self.lower_pct(*s))
            .unwrap_or(HostState::Low)
    }

    /// The next state from `prev`: worse at once, better only past the
    /// hysteresis margin (possibly several levels at once).
    pub fn next(&self, prev: HostState, free_mib: f64, min_free_mib: f64) -> HostState {
        let raw = self.classify(free_mib, min_free_mib);
        if raw >= prev {
            return raw;
        }
        let pct = 100.0 * free_mib / min_free_mib.max(1.0);
        let margin = 1.0 + self.hysteresis_pct / 100.0;
        // The best state better than `prev` whose threshold (with margin) is met.
        HostState::ALL
            .into_iter()
            .filter(|s| *s < prev)
            .find(|s| pct >= self.lower_pct(*s) * margin)
            .unwrap_or(prev)
    }
}

/// Which policy decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    /// Observe only.
    None,
    /// oVirt MOM: host pressure below 20 % free, keep each guest 20 % free,
    /// +-5 % steps; KSM; no compression or swapping. MOM has no states: the
    /// state recorded for it is the thresholds' view of the same host.
    Mom,
    /// ESXi-like: states and tiers, shares with an idle memory tax, no view
    /// of the guest's own free memory beyond a fixed floor.
    Esxi,
    /// balloon_rs's own: ESXi's states and tiers, plus per-guest floors from
    /// guest stats, a reclaim goal past the hysteresis margin, and gentle
    /// ballooning of idle memory already in the clear state.
    #[serde(rename = "balloon-rs")]
    BalloonRs,
    /// Proxmox VE's auto-ballooning (pvestatd with `PVE::AutoBalloon`):
    /// keep the host at 80 % used, share the change among the ballooned
    /// VMs by `shares`, at most 100 MiB per VM per 10 s round; KSM as
    /// ksmtuned; no compression or swapping. Like MOM it has no states.
    /// See [`proxmox_targets`].
    Proxmox,
}

impl PolicyKind {
    /// Every policy, for comparisons.
    pub const ALL: [PolicyKind; 5] = [
        PolicyKind::None,
        PolicyKind::Mom,
        PolicyKind::Esxi,
        PolicyKind::BalloonRs,
        PolicyKind::Proxmox,
    ];

    /// Name as in scenario files and reports.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::None => "none",
            PolicyKind::Mom => "mom",
            PolicyKind::Esxi => "esxi",
            PolicyKind::BalloonRs => "balloon-rs",
            PolicyKind::Proxmox => "proxmox",
        }
    }
}

/// Tiers a host may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tiers {
    /// KSM page sharing.
    pub sharing: bool,
    /// Balloon targets.
    pub ballooning: bool,
    /// Memory cgroup limits with zswap.
    pub compression: bool,
    /// Memory cgroup limits beyond what zswap holds (swap file).
    pub swapping: bool,
}

impl Default for Tiers {
    fn default() -> Self {
        Self {
            sharing: true,
            ballooning: true,
            compression: true,
            swapping: true,
        }
    }
}

/// Tunables of the policies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Which policy.
    pub kind: PolicyKind,
    /// ESXi's minFree, MiB.
    pub min_free_mib: u64,
    /// State thresholds.
    pub thresholds: Thresholds,
    /// Each guest keeps at least this share of its size available (and at
    /// least `guest_floor_min_mib`) beyond what it uses.
    pub guest_free_pct: f64,
    /// Absolute part of the guest floor, MiB.
    pub guest_floor_min_mib: u64,
    /// A balloon moves at most this share of the guest's size per tick.
    pub step_pct: f64,
    /// Changes smaller than this share of the guest's size are skipped.
    pub min_change_pct: f64,
    /// Idle memory tax (0..1): idle memory counts this much less.
    pub idle_tax: f64,
    /// KSM `pages_to_scan` bounds and steps (MOM's).
    pub ksm_min_pages: u32,
    /// Upper bound of `pages_to_scan`.
    pub ksm_max_pages: u32,
    /// Increase per tick under pressure.
    pub ksm_step_up: u32,
    /// Decrease per tick without pressure.
    pub ksm_step_down: u32,
    /// KSM `sleep_millisecs`.
    pub ksm_sleep_ms: u32,
    /// The own policy compresses only what ballooning cannot reclaim
    /// within this many ticks.
    pub balloon_horizon_ticks: u32,
    /// Seconds between ticks. Not a tunable (never read from or written
    /// to a file): the caller sets it from its own tick, the scenario's
    /// `tick` or the simulator's `tick_secs`. Only the Proxmox policy uses
    /// it, since Proxmox's step is per 10 s round (see [`proxmox_rounds`]).
    #[serde(skip)]
    pub tick_secs: f64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            kind: PolicyKind::BalloonRs,
            min_free_mib: 64,
            thresholds: Thresholds::default(),
            guest_free_pct: 20.0,
            guest_floor_min_mib: 32,
            step_pct: 5.0,
            min_change_pct: 0.25,
            idle_tax: 0.75,
            ksm_min_pages: 64,
            ksm_max_pages: 1250,
            ksm_step_up: 300,
            ksm_step_down: 50,
            ksm_sleep_ms: 20,
            balloon_horizon_ticks: 3,
            tick_secs: PROXMOX_ROUND_SECS,
        }
    }
}

impl PolicyConfig {
    /// The first tunable out of range, as (key, message); `min_free_mib`
    /// and the thresholds are the caller's (they belong to the host).
    pub fn problem(&self) -> Option<(&'static str, String)> {
        for (key, v, lo, hi) in [
            ("guest_free_pct", self.guest_free_pct, 0.0, 90.0),
            ("step_pct", self.step_pct, 0.01, 100.0),
            ("min_change_pct", self.min_change_pct, 0.0, 50.0),
            ("idle_tax", self.idle_tax, 0.0, 0.99),
        ] {
            if !(v.is_finite() && v >= lo && v <= hi) {
                return Some((key, format!("{key} {v}: must be between {lo} and {hi}")));
            }
        }
        if self.ksm_min_pages == 0
            || self.ksm_min_pages > self.ksm_max_pages
            || self.ksm_max_pages > 1 << 20
        {
            return Some((
                "ksm_max_pages",
                format!(
                    "ksm_min_pages {} / ksm_max_pages {}: need 1 <= min <= max <= 1048576",
                    self.ksm_min_pages, self.ksm_max_pages
                ),
            ));
        }
        if self.ksm_sleep_ms == 0 || self.ksm_sleep_ms > 60_000 {
            return Some((
                "ksm_sleep_ms",
                format!(
                    "ksm_sleep_ms {}: must be between 1 and 60000",
                    self.ksm_sleep_ms
                ),
            ));
        }
        if self.balloon_horizon_ticks > 1000 {
            return Some((
                "balloon_horizon_ticks",
                format!(
                    "balloon_horizon_ticks {}: at most 1000",
                    self.balloon_horizon_ticks
                ),
            ));
        }
        None
    }
}

/// What the guest driver last reported (balloon stats), MiB.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuestMem {
    /// MemTotal as the guest sees it (shrinks with the balloon).
    pub total: u64,
    /// MemFree.
    pub free: u64,
    /// MemAvailable.
    pub available: u64,
}

impl GuestMem {
    /// Memory the guest uses and cannot give without reclaim: total -
    /// available.
    pub fn used(&self) -> u64 {
        self.total.saturating_sub(self.available)
    }
}

/// One guest as the policy sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuestView {
    /// Configured RAM.
    pub configured: u64,
    /// Never balloon below.
    pub reservation: u64,
    /// Never let the guest have more than this (<= configured).
    pub limit: u64,
    /// Relative weight when memory is scarce.
    pub shares: u32,
    /// The balloon target last set (guest size asked for).
    pub target: u64,
    /// The guest's size now (`query-balloon` actual).
    pub actual: u64,
    /// QEMU's resident memory.
    pub resident: u64,
    /// Guest stats, if the driver sent any recently.
    pub mem: Option<GuestMem>,
    /// The memory cgroup limit in force, if any.
    pub cgroup_limit: Option<u64>,
}

/// The host as the policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostView {
    /// The host's memory for guests.
    pub capacity: u64,
    /// What the guests consume (resident, minus shared, plus the zswap pool).
    pub consumed: u64,
}

impl HostView {
    /// Free memory (may be negative when overcommitted).
    pub fn free(&self) -> f64 {
        self.capacity as f64 - self.consumed as f64
    }
}

/// State the policy carries from tick to tick.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyState {
    /// The host state of the last tick.
    pub host_state: HostState,
    /// KSM's pages_to_scan of the last tick.
    pub ksm_pages: u32,
}

impl PolicyState {
    /// The state before the first tick.
    pub fn initial(cfg: &PolicyConfig) -> Self {
        Self {
            host_state: HostState::High,
            ksm_pages: cfg.ksm_min_pages,
        }
    }
}

/// KSM settings for this tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ksm {
    /// Scan (run=1) or pause (run=0, merged pages stay merged).
    pub run: bool,
    /// pages_to_scan.
    pub pages_to_scan: u32,
    /// sleep_millisecs.
    pub sleep_ms: u32,
}

/// A memory cgroup change for one guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupAction {
    /// Limit the QEMU process to this many MiB.
    Limit(u64),
    /// Lift the limit.
    Unlimited,
}

/// The actions of one tick.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// State to carry to the next tick.
    pub state: PolicyState,
    /// KSM settings (only applied when the sharing tier is on).
    pub ksm: Ksm,
    /// New balloon target per guest (None: leave it).
    pub targets: Vec<Option<u64>>,
    /// Cgroup change per guest (None: leave it).
    pub cgroups: Vec<Option<CgroupAction>>,
}

/// The smallest size the policy may ask of a guest: what it uses plus its
/// free floor, never above its configured size. Without stats the guest is
/// not known to have anything to give, so its floor is its current target.
pub fn guest_floor(cfg: &PolicyConfig, g: &GuestView) -> u64 {
    match g.mem {
        Some(m) => {
            let free_floor = (cfg.guest_free_pct / 100.0 * g.configured as f64)
                .max(cfg.guest_floor_min_mib as f64);
            // The balloon already holds configured - actual; what the guest
            // uses is measured against the size it has now.
            (m.used() as f64 + free_floor)
                .ceil()
                .min(g.configured as f64) as u64
        }
        None => g.target.min(g.configured),
    }
}

/// The lowest size a guest may be given at all: reservation and floor, but
/// never above its limit.
pub fn lower_bound(cfg: &PolicyConfig, g: &GuestView) -> u64 {
    g.reservation.max(guest_floor(cfg, g)).min(g.limit)
}

/// Per-tick step bound for a guest, MiB (at least 1).
pub fn step(cfg: &PolicyConfig, g: &GuestView) -> u64 {
    ((cfg.step_pct / 100.0 * g.configured as f64) as u64).max(1)
}

/// Waldspurger's shares-per-page ratio with an idle memory tax: the guest
/// with the lowest value gives memory first. `active` is the share of the
/// guest's memory in use (1.0 without stats).
pub fn shares_per_page(cfg: &PolicyConfig, g: &GuestView) -> f64 {
    let active = match g.mem {
        Some(m) if m.total > 0 => (m.used() as f64 / m.total as f64).clamp(0.0, 1.0),
        _ => 1.0,
    };
    let k = 1.0 / (1.0 - cfg.idle_tax.clamp(0.0, 0.99));
    let pages = g.actual.max(1) as f64 * (active + k * (1.0 - active));
    g.shares.max(1) as f64 / pages
}

fn ksm_for(cfg: &PolicyConfig, state: &PolicyState, pressure: bool, run: bool) -> Ksm {
    let pages = if pressure {
        state.ksm_pages.saturating_add(cfg.ksm_step_up)
    } else {
        state.ksm_pages.saturating_sub(cfg.ksm_step_down)
    }
    .clamp(cfg.ksm_min_pages, cfg.ksm_max_pages.max(cfg.ksm_min_pages));
    Ksm {
        run,
        pages_to_scan: pages,
        sleep_ms: cfg.ksm_sleep_ms,
    }
}

/// Clamps a proposed target to the guest's hard bounds, and drops it when
/// it is no change or a change too small to be worth a QMP command.
fn settle(cfg: &PolicyConfig, g: &GuestView, proposed: u64) -> Option<u64> {
    let mut t = proposed.min(g.limit).min(g.configured);
    if t < g.target {
        // Inflating: never below the reservation or the guest's floor.
        t = t.max(lower_bound(cfg, g).min(g.target));
    }
    t = t.max(g.reservation.min(g.limit));
    let min_change = (cfg.min_change_pct / 100.0 * g.configured as f64).max(1.0);
    let forced = g.target > g.limit || g.target < g.reservation.min(g.limit);
    if t == g.target || (!forced && ((t as f64 - g.target as f64).abs() < min_change)) {
        None
    } else {
        Some(t)
    }
}

/// Indices of guests in the order they give memory: lowest shares per page
/// first (idle guests before busy ones).
pub fn give_order(cfg: &PolicyConfig, guests: &[GuestView]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..guests.len()).collect();
    order.sort_by(|&a, &b| {
        shares_per_page(cfg, &guests[a]).total_cmp(&shares_per_page(cfg, &guests[b]))
    });
    order
}

/// Balloon targets that reclaim `goal` MiB, idle guests first: the goal is
/// assigned in [`give_order`] to the guests that can cover it (each down to
/// its lower bound), so a busy guest gives only what the idle ones cannot;
/// each then moves at most one step this tick.
fn inflate(cfg: &PolicyConfig, guests: &[GuestView], goal: f64) -> Vec<Option<u64>> {
    let mut targets = vec![None; guests.len()];
    let mut left = goal.max(0.0).ceil() as u64;
    for i in give_order(cfg, guests) {
        if left == 0 {
            break;
        }
        let g = &guests[i];
        if g.actual > g.target.saturating_add(step(cfg, g)) {
            // The guest has not caught up with its last target (its driver
            // holds a floor, or is slow): asking for more moves nothing.
            continue;
        }
        let can = g.target.saturating_sub(lower_bound(cfg, g));
        let take = can.min(left);
        left -= take;
        let now = take.min(step(cfg, g));
        if now > 0 {
            targets[i] = settle(cfg, g, g.target - now);
        }
    }
    targets
}

/// Targets that give memory back one step at a time, up to the limit.
fn deflate_all(cfg: &PolicyConfig, guests: &[GuestView]) -> Vec<Option<u64>> {
    guests
        .iter()
        .map(|g| settle(cfg, g, g.target.saturating_add(step(cfg, g))))
        .collect()
}

/// Targets that deflate only the guests that fell below their own floor.
fn deflate_starving(cfg: &PolicyConfig, guests: &[GuestView]) -> Vec<Option<u64>> {
    guests
        .iter()
        .map(|g| match g.mem {
            Some(_) if guest_floor(cfg, g) > g.target => settle(
                cfg,
                g,
                g.target
                    .saturating_add(step(cfg, g))
                    .min(guest_floor(cfg, g)),
            ),
            _ => None,
        })
        .collect()
}

/// Cgroup limits that push `goal` MiB out of QEMU processes (idle guests
/// first); none below the reservation or 64 MiB.
fn push_out(
    cfg: &PolicyConfig,
    guests: &[GuestView],
    goal: f64,
    depth: u64,
) -> Vec<Option<CgroupAction>> {
    let mut out = vec![None; guests.len()];
    let mut left = goal.max(0.0);
    for i in give_order(cfg, guests) {
        if left < 1.0 {
            break;
        }
        let g = &guests[i];
        let now = g.cgroup_limit.unwrap_or(g.resident).min(g.resident);
        let lowest = g.reservation.max(64);
        let can = now
            .saturating_sub(lowest)
            .min(step(cfg, g).saturating_mul(depth)) as f64;
        let give = can.min(left.ceil()) as u64;
        if give > 0 {
            out[i] = Some(CgroupAction::Limit(now - give));
            left -= give as f64;
        }
    }
    out
}

fn lift_all(guests: &[GuestView]) -> Vec<Option<CgroupAction>> {
    guests
        .iter()
        .map(|g| g.cgroup_limit.map(|_| CgroupAction::Unlimited))
        .collect()
}

// ---- Proxmox VE's auto-ballooning (see [`proxmox_targets`]) ---------------

/// Proxmox's default `ballooning-target`: host memory used, percent.
pub const PROXMOX_TARGET_PCT: f64 = 80.0;
/// Proxmox's `maxchange`: most a VM's balloon moves in one round, MiB.
pub const PROXMOX_MAX_STEP_MIB: u64 = 100;
/// pvestatd's update interval: one auto-ballooning round, seconds.
pub const PROXMOX_ROUND_SECS: f64 = 10.0;
/// A goal within this many MiB either way does nothing.
pub const PROXMOX_DEADBAND_MIB: i64 = 10;
/// Passes of the redistribution loop in one round, at most.
const PROXMOX_MAX_PASSES: usize = 64;

/// One VM as Proxmox's auto-ballooning sees it, MiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxmoxVm {
    /// Takes part: balloon driver running and shares not 0.
    pub enabled: bool,
    /// Current size (`query-balloon` actual).
    pub balloon: u64,
    /// Never below (the `balloon` setting).
    pub min: u64,
    /// Never above (`memory`).
    pub max: u64,
    /// Weight of its part of the memory above the minimums.
    pub shares: u32,
    /// Free memory the guest reports (MemFree), if any.
    pub free: Option<u64>,
}

/// Rounds per tick and the step of each round (MiB) for ticks of
/// `tick_secs`: `ceil(tick_secs / 10)` rounds of 100 MiB, shorter steps
/// for ticks under 10 s, so that a VM moves at most 10 MiB/s. A tick out of
/// 1..=3600 s counts as the nearer end (not a number: one round).
pub fn proxmox_rounds(tick_secs: f64) -> (u32, u64) {
    let t = if tick_secs.is_nan() {
        PROXMOX_ROUND_SECS
    } else {
        tick_secs.clamp(1.0, 3600.0)
    };
    let rounds = (t / PROXMOX_ROUND_SECS).ceil().max(1.0);
    let step = PROXMOX_MAX_STEP_MIB as f64 * t / PROXMOX_ROUND_SECS / rounds;
    (rounds as u32, (step.round() as u64).max(1))
}

/// `compute_alg1`'s inner step: shares `amount` MiB (give if positive, take
/// if negative) among the VMs `ids`, moving each of `res` (their new sizes,
/// starting at their current ones) by at most `max_step` from its current
/// size. Returns what is left of `amount`.
fn proxmox_share(
    vms: &[ProxmoxVm],
    res: &mut [i128],
    ids: &[usize],
    amount: i128,
    max_step: i128,
) -> i128 {
    let mut rest = amount;
    let mut done = vec![false; vms.len()];
    let (mut repeat, mut progress) = (true, true);
    let mut passes = 0;
    while rest != 0 && repeat && progress && passes < PROXMOX_MAX_PASSES {
        passes += 1;
        (repeat, progress) = (false, false);
        let live: Vec<usize> = ids.iter().copied().filter(|&i| !done[i]).collect();
        let shares_total: i128 = live.iter().map(|&i| i128::from(vms[i].shares)).sum();
        if shares_total == 0 {
            break;
        }
        let alloc_old: i128 = live.iter().map(|&i| res[i] - i128::from(vms[i].min)).sum();
        let alloc_new = alloc_old + rest;
        let mut changes = 0;
        for &i in &live {
            let v = &vms[i];
            let (min, max, cur) = (i128::from(v.min), i128::from(v.max), i128::from(v.balloon));
            let mut desired = min + alloc_new * i128::from(v.shares) / shares_total;
            if desired > max {
                desired = max;
                repeat = true;
            } else if desired < min {
                desired = min;
                repeat = true;
            }
            let new = if amount > 0 && desired > cur {
                (cur + max_step).min(desired)
            } else if desired < cur {
                (cur - max_step).max(desired)
            } else {
                done[i] = true;
                continue;
            };
            if new != cur {
                let change = new - res[i];
                res[i] = new;
                if change != 0 {
                    changes += change;
                    (progress, repeat) = (true, true);
                }
            }
        }
        rest -= changes;
    }
    rest
}

/// One auto-ballooning round (`compute_alg1`): the new size of every VM
/// (its current size where it does not change) for a host `goal` MiB from
/// its target use (positive: give memory back), each VM moving at most
/// `max_step` MiB.
pub fn proxmox_round(vms: &[ProxmoxVm], goal: i64, max_step: u64) -> Vec<u64> {
    let mut res: Vec<i128> = vms.iter().map(|v| i128::from(v.balloon)).collect();
    let ids: Vec<usize> = (0..vms.len()).filter(|&i| vms[i].enabled).collect();
    // A VM is comfortable with more free memory than a quarter of its
    // minimum and at least its minimum; otherwise it is under pressure.
    let (comfortable, pressured): (Vec<usize>, Vec<usize>) = ids.iter().partition(|&&i| {
        let v = &vms[i];
        v.free
            .is_some_and(|f| f > 0 && f as f64 > 0.25 * v.min as f64 && v.balloon >= v.min)
    });
    let goal = i128::from(goal);
    let step = i128::from(max_step);
    if goal > i128::from(PROXMOX_DEADBAND_MIB) {
        // Give to the VMs under pressure first; to all if they took nothing.
        let rest = proxmox_share(vms, &mut res, &pressured, goal, step);
        if rest >= goal {
            proxmox_share(vms, &mut res, &ids, rest, step);
        }
    } else if goal < -i128::from(PROXMOX_DEADBAND_MIB) {
        // Take from the comfortable VMs first; from all if they gave nothing.
        let rest = proxmox_share(vms, &mut res, &comfortable, goal, step);
        if rest <= goal {
            proxmox_share(vms, &mut res, &ids, rest, step);
        }
    }
    res.into_iter()
        .map(|r| r.clamp(0, i128::from(u64::MAX)) as u64)
        .collect()
}

/// One tick of Proxmox's auto-ballooning: [`proxmox_rounds`] rounds of
/// [`proxmox_round`], each applied (a VM's free memory moves with its size)
/// and taken off the goal before the next, as if the balloons followed
/// within the round. Returns every VM's new size.
pub fn proxmox_tick(vms: &[ProxmoxVm], goal_mib: f64, tick_secs: f64) -> Vec<u64> {
    let (rounds, step) = proxmox_rounds(tick_secs);
    let mut vms = vms.to_vec();
    // Saturating, and 0 for NaN.
    let mut goal = goal_mib as i64;
    for _ in 0..rounds {
        if goal.unsigned_abs() <= PROXMOX_DEADBAND_MIB.unsigned_abs() {
            break;
        }
        let new = proxmox_round(&vms, goal, step);
        if new.iter().zip(&vms).all(|(n, v)| *n == v.balloon) {
            break;
        }
        let mut changes: i128 = 0;
        for (v, n) in vms.iter_mut().zip(new) {
            let d = i128::from(n) - i128::from(v.balloon);
            changes += d;
            v.free = v
                .free
                .map(|f| (i128::from(f) + d).clamp(0, i128::from(u64::MAX)) as u64);
            v.balloon = n;
        }
        goal =
            (i128::from(goal) - changes).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    }
    vms.iter().map(|v| v.balloon).collect()
}

/// A guest as a policy blind to its free memory sees it: all of its memory
/// counts as available, so its floor ([`guest_floor`]) is the fixed share
/// of its size, `guest_free_pct` (at least `guest_floor_min_mib`).
fn fixed_floor_view(g: &GuestView) -> GuestView {
    let mut g = g.clone();
    if let Some(m) = g.mem.as_mut() {
        m.available = m.total;
    }
    g
}

/// Proxmox's view of the guests: see [`proxmox_targets`].
fn proxmox_view(cfg: &PolicyConfig, guests: &[GuestView]) -> Vec<ProxmoxVm> {
    guests
        .iter()
        .map(|g| {
            let max = g.limit.min(g.configured);
            ProxmoxVm {
                enabled: g.mem.is_some() && g.shares > 0,
                balloon: g.actual.min(g.configured),
                min: lower_bound(cfg, &fixed_floor_view(g)).min(max),
                max,
                shares: g.shares,
                free: g.mem.map(|m| m.free),
            }
        })
        .collect()
}

/// Proxmox VE's auto-ballooning for one tick: the balloon targets that
/// bring the host toward [`PROXMOX_TARGET_PCT`] used ([`proxmox_tick`] on
/// each guest's [`ProxmoxVm`] view), within each guest's reservation and
/// limit.
///
/// Modelled on pve-manager's `PVE/Service/pvestatd.pm` (`auto_balloning`) and
/// `PVE/AutoBalloon.pm` (`compute_alg1`), read in proxmox/pve-manager; the
/// shape, not the code. Every 10 s pvestatd computes
/// `goal = memtotal * ballooning-target (80 %) / 100 - memused` and asks
/// `compute_alg1` for new balloon sizes with `maxchange` = 100 MiB:
///
/// * only VMs with a running balloon driver, a `balloon` minimum set and
///   `shares` not 0 (and not migrating) take part;
/// * a goal within +-10 MiB does nothing;
/// * to give memory (goal > 0) it first tries the VMs under pressure (free
///   memory at most a quarter of their minimum, or below their minimum),
///   then, if that moved nothing, all of them; to take memory (goal < 0) it
///   first tries the VMs with enough free memory, then all;
/// * within a group the memory above the minimums plus the goal is shared
///   by `shares` (default 1000): `desired = min + alloc_new * shares /
///   shares_total`, clamped to min..max; each VM moves toward its desired
///   size by at most `maxchange` from its current size; VMs that reached
///   their desired size drop out and the rest of the goal is shared again
///   among the others until nothing moves. A give request also shrinks a VM
///   that holds more than its share (it rebalances), a take request never
///   grows one.
///
/// Where this model differs:
///
/// * the `balloon` minimum is an admin setting the model does not have: a
///   VM's minimum is its reservation raised to the fixed floor the ESXi-like
///   policy balloons to (`guest_free_pct` of its size, at least
///   `guest_floor_min_mib`); its maximum is its limit (at most its size);
/// * "memused" is what the guests consume ([`HostView::consumed`]) of the
///   host's memory for guests, not the whole node's MemTotal - MemAvailable;
/// * "balloon driver running" is "the guest sends stats" (`mem` is Some);
///   migration locks are not modelled;
/// * one tick of `tick_secs` is `ceil(tick_secs / 10)` rounds with the goal
///   reduced by each round's change, as Proxmox's own simulation
///   (`test/balloontest.pl`'s `absim`) runs them; with ticks under 10 s
///   the step shrinks in proportion, so a VM moves at most 10 MiB/s either
///   way;
/// * the project's hard bounds apply on top, as for every policy: a target
///   is never below the reservation nor above the limit; and a new target
///   that the balloon, lagging behind its last target, is already heading
///   past (a grow below the current target, a shrink above it) is not sent;
/// * the inner redistribution loop is capped at 64 passes (Proxmox's has no
///   cap; it ends when nothing moves);
/// * KSM follows ksmtuned, which Proxmox VE runs (ksm-control-daemon):
///   under pressure when less than 20 % of the host is free, with the same
///   `pages_to_scan` steps as MOM (both are ksmtuned's defaults).
pub fn proxmox_targets(
    cfg: &PolicyConfig,
    host: &HostView,
    guests: &[GuestView],
) -> Vec<Option<u64>> {
    let view = proxmox_view(cfg, guests);
    let goal = host.capacity as f64 * PROXMOX_TARGET_PCT / 100.0 - host.consumed as f64;
    let sizes = proxmox_tick(&view, goal, cfg.tick_secs);
    guests
        .iter()
        .zip(view.iter().zip(sizes))
        .map(|(g, (v, new))| {
            if new == v.balloon {
                return None;
            }
            // Growing from a balloon that lags below its target, or
            // shrinking from one that lags above it: the target already
            // asks for more than this.
            if (new > v.balloon && new <= g.target) || (new < v.balloon && new >= g.target) {
                return None;
            }
            let t = new.min(g.limit).max(g.reservation.min(g.limit));
            (t != g.target).then_some(t)
        })
        .collect()
}

/// One tick of the policy.
pub fn decide(
    cfg: &PolicyConfig,
    tiers: &Tiers,
    host: &HostView,
    guests: &[GuestView],
    prev: &PolicyState,
) -> Decision {
    let min_free = cfg.min_free_mib.max(1) as f64;
    let free = host.free();
    let th = &cfg.thresholds;
    let host_state = th.next(prev.host_state, free, min_free);
    let none = vec![None; guests.len()];
    // Guests above their limit are always brought down to it.
    let limit_fix: Vec<Option<u64>> = guests
        .iter()
        .map(|g| (g.target > g.limit).then_some(g.limit))
        .collect();
    let merge = |mut a: Vec<Option<u64>>| {
        for (x, l) in a.iter_mut().zip(&limit_fix) {
            if x.is_none() {
                *x = *l;
            }
        }
        a
    };
    let no_cgroups = lift_all(guests);
    let (targets, cgroups, ksm) = match cfg.kind {
        PolicyKind::None => (
            none.clone(),
            none.iter().map(|_| None).collect(),
            ksm_for(cfg, prev, false, false),
        ),
        PolicyKind::Mom => {
            // MOM: pressure below 20 % of the host free.
            let pressure = free < 0.20 * host.capacity as f64;
            let targets = if !tiers.ballooning {
                none.clone()
            } else if pressure {
                guests
                    .iter()
                    .map(|g| match g.mem {
                        Some(m) => {
                            let keep = (0.20 * g.configured as f64) as u64;
                            let spare = m.available.saturating_sub(keep).min(step(cfg, g));
                            settle(cfg, g, g.target.saturating_sub(spare))
                        }
                        None => None,
                    })
                    .collect()
            } else {
                deflate_all(cfg, guests)
            };
            (
                targets,
                no_cgroups,
                ksm_for(cfg, prev, pressure, tiers.sharing && pressure),
            )
        }
        PolicyKind::Proxmox => {
            // ksmtuned: pressure below 20 % of the host free, as MOM.
            let pressure = free < 0.20 * host.capacity as f64;
            let targets = if tiers.ballooning {
                proxmox_targets(cfg, host, guests)
            } else {
                none.clone()
            };
            (
                targets,
                no_cgroups,
                ksm_for(cfg, prev, pressure, tiers.sharing && pressure),
            )
        }
        PolicyKind::Esxi | PolicyKind::BalloonRs => {
            let own = cfg.kind == PolicyKind::BalloonRs;
            let pressure = host_state >= HostState::Clear;
            let ksm = ksm_for(cfg, prev, pressure, tiers.sharing && pressure);
            // Reclaim back to the clear threshold (own policy: past the
            // hysteresis margin, so the host really leaves the state).
            let margin = if own {
                1.0 + th.hysteresis_pct / 100.0
            } else {
                1.0
            };
            let goal = th.clear / 100.0 * min_free * margin - free;
            // ESXi cannot see the guest's own free memory: it balloons
            // down to a fixed floor of guest_free_pct of the size.
            let esxi_floor =
                |gs: &[GuestView]| -> Vec<GuestView> { gs.iter().map(fixed_floor_view).collect() };
            let view: Vec<GuestView> = if own {
                guests.to_vec()
            } else {
                esxi_floor(guests)
            };
            let targets = if !tiers.ballooning {
                none.clone()
            } else {
                match host_state {
                    HostState::High => deflate_all(cfg, &view),
                    HostState::Clear if own => {
                        // Still inside the clear state's hysteresis band:
                        // keep reclaiming idle memory until the host is
                        // past it, and feed guests below their floor.
                        let mut t = inflate(cfg, &view, goal);
                        for (x, s) in t.iter_mut().zip(deflate_starving(cfg, &view)) {
                            if s.is_some() {
                                *x = s;
                            }
                        }
                        t
                    }
                    HostState::Clear => none.clone(),
                    _ => {
                        let mut t = inflate(cfg, &view, goal);
                        if own {
                            for (x, s) in t.iter_mut().zip(deflate_starving(cfg, &view)) {
                                if s.is_some() {
                                    *x = s;
                                }
                            }
                        }
                        t
                    }
                }
            };
            // What ballooning reclaims this tick counts toward the goal of
            // the later tiers.
            // What ballooning reclaims counts toward the goal of the later
            // tiers: ESXi counts this tick's steps; the own policy also
            // counts what the balloons can still reclaim within
            // `balloon_horizon_ticks`, so it compresses only what ballooning
            // cannot soon cover (least disruptive first).
            let this_tick: f64 = targets
                .iter()
                .zip(guests)
                .map(|(t, g)| t.map_or(0.0, |t| g.target.saturating_sub(t) as f64))
                .sum();
            let ballooned = if own && tiers.ballooning {
                let soon: f64 = view
                    .iter()
                    .filter(|g| g.actual <= g.target.saturating_add(step(cfg, g)))
                    .map(|g| {
                        let can = g.target.saturating_sub(lower_bound(cfg, g));
                        can.min(step(cfg, g).saturating_mul(cfg.balloon_horizon_ticks as u64))
                            as f64
                    })
                    .sum();
                this_tick.max(soon)
            } else {
                this_tick
            };
            let cgroups = match host_state {
                HostState::Hard if tiers.compression => push_out(cfg, guests, goal - ballooned, 1),
                HostState::Low if tiers.compression || tiers.swapping => {
                    push_out(cfg, guests, goal - ballooned, 2)
                }
                // Limits stay through soft (hysteresis) and lift once the
                // host is clear again.
                HostState::Hard | HostState::Low | HostState::Soft => {
                    none.iter().map(|_| None).collect()
                }
                HostState::High | HostState::Clear => no_cgroups,
            };
            (targets, cgroups, ksm)
        }
    };
    Decision {
        state: PolicyState {
            host_state,
            ksm_pages: ksm.pages_to_scan,
        },
        ksm,
        targets: merge(targets),
        cgroups,
    }
}

#[cfg(test)]
mod proxmox_tests {
    use super::*;

    /// A VM as in Proxmox's `test/balloontest.pl` (its MB are our MiB).
    fn pvm(shares: u32, balloon: u64, min: u64, max: u64, free: u64) -> ProxmoxVm {
        ProxmoxVm {
            enabled: true,
            balloon,
            min,
            max,
            shares,
            free: Some(free),
        }
    }

    /// Rounds until nothing moves, each applied before the next, as
    /// `absim` does; returns the VMs afterwards.
    fn sim(vms: &[ProxmoxVm], goal: f64) -> Vec<ProxmoxVm> {
        let sizes = proxmox_tick(vms, goal, 3600.0);
        vms.iter()
            .zip(sizes)
            .map(|(v, n)| ProxmoxVm {
                balloon: n,
                free: v
                    .free
                    .map(|f| (f as i64 + n as i64 - v.balloon as i64).max(0) as u64),
                ..*v
            })
            .collect()
    }

    fn sizes(vms: &[ProxmoxVm]) -> Vec<u64> {
        vms.iter().map(|v| v.balloon).collect()
    }

    /// Proxmox's own expectations for `compute_alg1`, one round each.
    #[test]
    fn one_round_matches_proxmoxs_tests() {
        // Two VMs at their 1000 MiB minimum (max 2000), shares 2:1.
        let s1 = [
            pvm(2000, 1000, 1000, 2000, 0),
            pvm(1000, 1000, 1000, 2000, 0),
        ];
        assert_eq!(proxmox_round(&s1, 0, 100), [1000, 1000]);
        // Proportional to shares: 60 + 30.
        assert_eq!(proxmox_round(&s1, 90, 100), [1060, 1030]);
        assert_eq!(proxmox_round(&s1, 150, 100), [1100, 1050]);
        // 180 + 90 wanted; the first is held to 100 MiB in the round.
        assert_eq!(proxmox_round(&s1, 270, 100), [1100, 1090]);
        // A VM already at its maximum takes nothing; the other takes all,
        // at most one step.
        let s2 = [
            pvm(2000, 2000, 2000, 2000, 0),
            pvm(1000, 1000, 1000, 2000, 0),
        ];
        assert_eq!(proxmox_round(&s2, 18, 100), [2000, 1018]);
        assert_eq!(proxmox_round(&s2, 500, 100), [2000, 1100]);
        // VMs under pressure (no free memory) get the memory first; the
        // one with 512 MiB free gets none while they can take it.
        let s3 = [
            pvm(2000, 2000, 2000, 2000, 0),
            pvm(1000, 1007, 1000, 2000, 0),
            pvm(1000, 1000, 1000, 2000, 512),
        ];
        assert_eq!(proxmox_round(&s3, 11, 100), [2000, 1018, 1000]);
        assert_eq!(proxmox_round(&s3, 80, 100), [2000, 1087, 1000]);
        assert_eq!(proxmox_round(&s3, 200, 100), [2000, 1107, 1000]);
        // Within the 10 MiB dead band nothing moves, either way.
        assert_eq!(proxmox_round(&s3, 10, 100), sizes(&s3));
        assert_eq!(proxmox_round(&s3, -10, 100), sizes(&s3));
    }

    /// Proxmox's own expectations over rounds (`absim`): both directions,
    /// bounded by the minimum and the maximum.
    #[test]
    fn rounds_match_proxmoxs_simulation() {
        let s1 = [
            pvm(2000, 1000, 1000, 2000, 0),
            pvm(1000, 1000, 1000, 2000, 0),
        ];
        assert_eq!(sizes(&sim(&s1, 180.0)), [1120, 1060]);
        assert_eq!(sizes(&sim(&s1, 270.0)), [1180, 1090]);
        assert_eq!(sizes(&sim(&s1, 600.0)), [1300, 1300]);
        // 900 is 600 + 300, by shares.
        assert_eq!(sizes(&sim(&s1, 900.0)), [1600, 1300]);
        let s3 = [
            pvm(2000, 2000, 2000, 2000, 0),
            pvm(1000, 1007, 1000, 2000, 0),
            pvm(1000, 1000, 1000, 2000, 512),
        ];
        let grown = sim(&s3, 593.0);
        assert_eq!(sizes(&grown), [2000, 1300, 1300]);
        // Taking back: shared while both are above their minimum, never
        // below it, and never from the VM at its fixed size.
        assert_eq!(sizes(&sim(&grown, -200.0)), [2000, 1200, 1200]);
        assert_eq!(sizes(&sim(&grown, -400.0)), [2000, 1200, 1000]);
        assert_eq!(sizes(&sim(&grown, -593.0)), [2000, 1007, 1000]);
        assert_eq!(sizes(&sim(&grown, -5000.0)), [2000, 1000, 1000]);
        assert_eq!(sizes(&sim(&s1, 5000.0)), [2000, 2000]);
    }

    #[test]
    fn named_proxmox_in_files_and_reports() {
        assert_eq!(PolicyKind::Proxmox.name(), "proxmox");
        let cfg: PolicyConfig = toml::from_str("kind = \"proxmox\"").unwrap();
        assert_eq!(cfg.kind, PolicyKind::Proxmox);
        assert_eq!(cfg.tick_secs, PROXMOX_ROUND_SECS, "not read from files");
        assert!(toml::from_str::<PolicyConfig>("tick_secs = 60").is_err());
        assert_eq!(
            serde_json::to_string(&PolicyKind::Proxmox).unwrap(),
            "\"proxmox\""
        );
    }

    #[test]
    fn rounds_per_tick_keep_ten_mib_per_second() {
        assert_eq!(proxmox_rounds(10.0), (1, 100));
        assert_eq!(proxmox_rounds(60.0), (6, 100));
        assert_eq!(proxmox_rounds(2.0), (1, 20));
        assert_eq!(proxmox_rounds(15.0), (2, 75));
        assert_eq!(proxmox_rounds(f64::NAN), (1, 100));
        assert_eq!(proxmox_rounds(-5.0), (1, 10));
        assert_eq!(proxmox_rounds(f64::INFINITY), (360, 100));
        // A 60 s tick moves a VM by at most 600 MiB.
        let s = [pvm(1000, 1000, 1000, 8000, 0)];
        assert_eq!(proxmox_tick(&s, 5000.0, 60.0), [1600]);
    }

    /// A 4 GiB guest at `size` with `free` MiB free (and as much available).
    fn guest(size: u64, free: u64, shares: u32) -> GuestView {
        GuestView {
            configured: 4096,
            reservation: 0,
            limit: 4096,
            shares,
            target: size,
            actual: size,
            resident: size,
            mem: Some(GuestMem {
                total: size,
                free,
                available: free,
            }),
            cgroup_limit: None,
        }
    }

    fn px() -> PolicyConfig {
        PolicyConfig {
            kind: PolicyKind::Proxmox,
            ..PolicyConfig::default()
        }
    }

    /// One 10 s tick on a 10 GiB host with `consumed` MiB used.
    fn tick(guests: &[GuestView], consumed: u64) -> Decision {
        let cfg = px();
        let host = HostView {
            capacity: 10240,
            consumed,
        };
        decide(
            &cfg,
            &Tiers::default(),
            &host,
            guests,
            &PolicyState::initial(&cfg),
        )
    }

    #[test]
    fn above_80_percent_it_takes_by_shares_and_steps() {
        // 90 % used: 1024 MiB to take from two guests of the same size.
        // Above their minimums (820 MiB, 20 % of 4096) Proxmox wants them
        // 1:2 by shares: the high-shares guest's part is above its size, so
        // only the other gives, one 100 MiB step this round.
        let guests = [guest(4096, 2000, 1000), guest(4096, 2000, 2000)];
        assert_eq!(tick(&guests, 9216).targets, [Some(3996), None]);
        // Held 1:2 already (1000 and 2000 MiB above the minimums): 60 MiB
        // to take, both give, 20 and 40, and the split stays 1:2.
        let guests = [guest(1820, 900, 1000), guest(2820, 1900, 2000)];
        let d = tick(&guests, 8192 + 60);
        assert_eq!(d.targets, [Some(1800), Some(2780)]);
        assert!(d.cgroups.iter().all(Option::is_none));
        assert!(d.ksm.run, "ksmtuned runs below 20 % free");
    }

    #[test]
    fn below_80_percent_it_gives_back_to_the_maximum() {
        // 50 % used: grow both by a step, the one below its limit only to it.
        let mut g = [guest(2048, 10, 1000), guest(3000, 10, 1000)];
        g[1].limit = 3050;
        let d = tick(&g, 5120);
        assert_eq!(d.targets, [Some(2148), Some(3050)]);
        assert!(!d.ksm.run);
        // At 80 % (within 10 MiB) nothing moves.
        let d = tick(&g, 8192 - 10);
        assert_eq!(d.targets, [None, None]);
        let d = tick(&g, 8192 + 10);
        assert_eq!(d.targets, [None, None]);
    }

    #[test]
    fn minimum_is_the_reservation_or_the_fixed_floor() {
        // Far above the goal, round after round: each guest ends at its
        // minimum, 20 % of its size or its reservation, whatever it uses.
        let mut g = [guest(4096, 100, 1000), guest(4096, 3000, 1000)];
        g[0].reservation = 2048;
        for _ in 0..100 {
            let d = tick(&g, 10240);
            for (x, t) in g.iter_mut().zip(&d.targets) {
                if let Some(t) = *t {
                    assert!(
                        x.target - t <= PROXMOX_MAX_STEP_MIB,
                        "{t} from {}",
                        x.target
                    );
                    (x.target, x.actual) = (t, t);
                }
            }
        }
        let floor = (0.2f64 * 4096.0).ceil() as u64;
        assert_eq!((g[0].target, g[1].target), (2048, floor));
    }

    #[test]
    fn guests_with_ballooning_off_are_untouched() {
        // shares 0 (Proxmox's opt-out) and no balloon stats (no driver).
        let mut off = guest(4096, 3000, 0);
        let mut quiet = guest(4096, 3000, 1000);
        quiet.mem = None;
        let on = guest(4096, 3000, 1000);
        for consumed in [10240, 2048] {
            let d = tick(&[off.clone(), quiet.clone(), on.clone()], consumed);
            assert_eq!(&d.targets[..2], [None, None], "{consumed}: {d:?}");
        }
        let d = tick(&[off.clone(), quiet.clone(), on], 10240);
        assert_eq!(d.targets[2], Some(3996));
        // Only the limit, every policy's rule, applies to them.
        off.target = 4096;
        off.limit = 3000;
        quiet.limit = 3000;
        let d = tick(&[off, quiet], 10240);
        assert_eq!(d.targets, [Some(3000), Some(3000)]);
        // Without the ballooning tier nothing moves.
        let cfg = px();
        let d = decide(
            &cfg,
            &Tiers {
                ballooning: false,
                ..Tiers::default()
            },
            &HostView {
                capacity: 10240,
                consumed: 10240,
            },
            &[guest(4096, 3000, 1000)],
            &PolicyState::initial(&cfg),
        );
        assert_eq!(d.targets, [None]);
    }

    #[test]
    fn a_lagging_balloon_keeps_its_target() {
        // The guest holds above its target (its own floor): a shrink that
        // asks less than the target already does is not sent.
        let mut g = guest(3000, 10, 1000);
        g.target = 2500;
        assert_eq!(tick(&[g.clone()], 10240).targets, [None]);
        // Growing: from the actual size by a step, past the target.
        assert_eq!(tick(&[g], 2048).targets, [Some(3100)]);
    }
}
