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
}

impl PolicyKind {
    /// Every policy, for comparisons.
    pub const ALL: [PolicyKind; 4] = [
        PolicyKind::None,
        PolicyKind::Mom,
        PolicyKind::Esxi,
        PolicyKind::BalloonRs,
    ];

    /// Name as in scenario files and reports.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::None => "none",
            PolicyKind::Mom => "mom",
            PolicyKind::Esxi => "esxi",
            PolicyKind::BalloonRs => "balloon-rs",
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
            let esxi_floor = |gs: &[GuestView]| -> Vec<GuestView> {
                // ESXi cannot see the guest's own free memory: it balloons
                // down to a fixed floor of guest_free_pct of the size.
                gs.iter()
                    .map(|g| {
                        let mut g = g.clone();
                        if let Some(m) = g.mem.as_mut() {
                            m.available = m.total;
                        }
                        g
                    })
                    .collect()
            };
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

/// One host of a two-host scenario, as the balancer sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BalanceHost {
    /// Its state this tick.
    pub state: HostState,
    /// Ticks in a row it has been in soft or worse (this one included).
    pub pressured: u32,
    /// Free memory, MiB.
    pub free: f64,
    /// Its minFree, MiB.
    pub min_free: f64,
}

/// Two-host balancing, DRS-like: when a host has been in soft or worse for
/// `sustain` ticks and the other is in high or clear, move the guest that
/// frees the most among those the other host can take without leaving
/// clear. `guests[i]` is `Some((host, cost))` for a guest that may move
/// (cost: MiB it takes from its host). Returns `(guest, from, to)`.
pub fn pick_migration(
    th: &Thresholds,
    sustain: u32,
    hosts: [BalanceHost; 2],
    guests: &[Option<(usize, f64)>],
) -> Option<(usize, usize, usize)> {
    let from = (0..2)
        .filter(|&h| hosts[h].pressured >= sustain)
        .max_by_key(|&h| hosts[h].pressured)?;
    let to = 1 - from;
    let dest = hosts[to];
    if dest.state > HostState::Clear {
        return None;
    }
    guests
        .iter()
        .enumerate()
        .filter_map(|(i, g)| g.filter(|(h, _)| *h == from).map(|(_, cost)| (i, cost)))
        .filter(|(_, cost)| th.classify(dest.free - cost, dest.min_free) <= HostState::Clear)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| (i, from, to))
}

#[cfg(test)]
mod balance_tests {
    use super::*;

    fn host(state: HostState, pressured: u32, free: f64) -> BalanceHost {
        BalanceHost {
            state,
            pressured,
            free,
            min_free: 64.0,
        }
    }

    #[test]
    fn moves_the_largest_guest_that_fits_after_sustained_pressure() {
        let th = Thresholds::default();
        let guests = [
            Some((0, 100.0)),
            Some((0, 300.0)),
            Some((1, 50.0)),
            Some((0, 900.0)),
        ];
        let a = host(HostState::Hard, 3, 10.0);
        let b = host(HostState::High, 0, 700.0);
        // 900 MiB would leave b below zero; 300 is the largest that fits.
        assert_eq!(pick_migration(&th, 3, [a, b], &guests), Some((1, 0, 1)));
        // Not yet sustained.
        let a2 = BalanceHost { pressured: 2, ..a };
        assert_eq!(pick_migration(&th, 3, [a2, b], &guests), None);
        // The other host is itself under pressure.
        let b2 = host(HostState::Soft, 1, 700.0);
        assert_eq!(pick_migration(&th, 3, [a, b2], &guests), None);
        // Nothing fits: 150 MiB free less 100 is below the clear level.
        let b3 = host(HostState::Clear, 0, 150.0);
        assert_eq!(pick_migration(&th, 3, [a, b3], &guests), None);
        // Guests that may not move (None) are skipped; b can be the source.
        let only = [None, Some((1, 100.0))];
        let (x, y) = (
            host(HostState::High, 0, 700.0),
            host(HostState::Low, 9, -5.0),
        );
        assert_eq!(pick_migration(&th, 3, [x, y], &only), Some((1, 1, 0)));
    }
}
