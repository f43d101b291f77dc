//! Property tests of the policy engine, [`host_stub::engine::policy::decide`]: the
//! rules every tick must keep, whatever the host, its guests and the
//! tunables, plus a few worked examples.

use host_stub::engine::policy::{
    decide, lower_bound, proxmox_rounds, CgroupAction, Decision, GuestMem, GuestView, HostState,
    HostView, Ksm, PolicyConfig, PolicyKind, PolicyState, Thresholds, Tiers, PROXMOX_DEADBAND_MIB,
    PROXMOX_TARGET_PCT,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

/// One tick's input.
#[derive(Clone, Debug)]
struct World {
    cfg: PolicyConfig,
    tiers: Tiers,
    host: HostView,
    guests: Vec<GuestView>,
    prev: PolicyState,
}

impl World {
    fn decide(&self) -> Decision {
        decide(&self.cfg, &self.tiers, &self.host, &self.guests, &self.prev)
    }
}

/// A share in 0..=1 that often hits the ends, where bugs live.
fn frac() -> impl Strategy<Value = f64> {
    prop_oneof![4 => 0.0..=1.0f64, 1 => Just(0.0), 1 => Just(1.0)]
}

/// `f` of `x`, rounded, never above `x`.
fn part(x: u64, f: f64) -> u64 {
    ((x as f64 * f).round() as u64).min(x)
}

/// A guest as the scenario validation and the real loop produce it:
/// reservation <= limit <= configured, target in 0..=configured, actual
/// near the target, resident <= configured, stats (when present) with
/// free <= available <= total <= actual-ish <= configured.
fn guest() -> impl Strategy<Value = GuestView> {
    (
        128u64..=16384,
        (
            prop_oneof![Just(1.0), frac()],
            frac(),
            1u32..=4000,
            prop_oneof![frac(), 0.8f64..=1.0],
            -0.05f64..=0.05,
            frac(),
        ),
        option::of((0.9f64..=1.0, frac(), frac())),
        option::of(frac()),
    )
        .prop_map(
            |(configured, (l, r, shares, t, jitter, res), mem, cgroup)| {
                let limit = 64 + part(configured - 64, l);
                let target = part(configured, t);
                let actual = (target as f64 + jitter * configured as f64)
                    .clamp(0.0, configured as f64) as u64;
                let mem = mem.map(|(tot, a, f)| {
                    let total = part(actual, tot);
                    let available = part(total, a);
                    GuestMem {
                        total,
                        free: part(available, f),
                        available,
                    }
                });
                GuestView {
                    configured,
                    reservation: part(limit, r),
                    limit,
                    shares,
                    target,
                    actual,
                    resident: part(configured, res),
                    mem,
                    cgroup_limit: cgroup.map(|c| part(configured, c)),
                }
            },
        )
}

/// Ordered thresholds (high > clear > soft > hard > 0), or the defaults.
fn thresholds() -> impl Strategy<Value = Thresholds> {
    prop_oneof![
        Just(Thresholds::default()),
        (
            1.0f64..=100.0,
            1.0f64..=100.0,
            1.0f64..=200.0,
            1.0f64..=600.0,
            0.0f64..=400.0
        )
            .prop_map(|(hard, soft, clear, high, hysteresis_pct)| Thresholds {
                hard,
                soft: hard + soft,
                clear: hard + soft + clear,
                high: hard + soft + clear + high,
                hysteresis_pct,
            }),
    ]
}

/// The default half the time, else any value of `range`.
fn or_default<T: Clone + std::fmt::Debug + 'static>(
    range: impl Strategy<Value = T> + 'static,
    default: T,
) -> impl Strategy<Value = T> {
    prop_oneof![Just(default), range]
}

/// Tunables within the ranges the scenario validation accepts, each the
/// default half the time.
fn config(kinds: &'static [PolicyKind], capacity: u64) -> impl Strategy<Value = PolicyConfig> {
    let d = PolicyConfig::default();
    // The scenario default (6 %), or 0.1 %..50 % of the capacity, log-uniform.
    let min_free = prop_oneof![
        Just((capacity * 6 / 100).max(16)),
        (-3.0f64..=-0.3).prop_map(move |e| ((capacity as f64 * 10f64.powf(e)) as u64).max(1)),
    ];
    (
        select(kinds),
        min_free,
        thresholds(),
        (
            or_default(0.0f64..=90.0, d.guest_free_pct),
            or_default(0u64..=512, d.guest_floor_min_mib),
            or_default(0.01f64..=100.0, d.step_pct),
            or_default(0.0f64..=50.0, d.min_change_pct),
            or_default(0.0f64..=0.99, d.idle_tax),
        ),
        (
            1u32..=2000,
            0u32..=2000,
            0u32..=1000,
            0u32..=1000,
            1u32..=60_000,
        ),
    )
        .prop_map(
            |(
                kind,
                min_free_mib,
                thresholds,
                (free_pct, floor_min, step, min_change, tax),
                (kmin, kspan, up, down, sleep),
            )| {
                PolicyConfig {
                    kind,
                    min_free_mib,
                    thresholds,
                    guest_free_pct: free_pct,
                    guest_floor_min_mib: floor_min,
                    step_pct: step,
                    min_change_pct: min_change,
                    idle_tax: tax,
                    ksm_min_pages: kmin,
                    ksm_max_pages: kmin + kspan,
                    ksm_step_up: up,
                    ksm_step_down: down,
                    ksm_sleep_ms: sleep,
                    balloon_horizon_ticks: kmin % 8,
                    // Proxmox's 10 s round half the time, else 1..=120 s
                    // (rounds per tick and their step).
                    tick_secs: if up % 2 == 0 {
                        10.0
                    } else {
                        f64::from(1 + up % 120)
                    },
                }
            },
        )
}

/// Every tier on, mostly; any combination sometimes.
fn tiers() -> impl Strategy<Value = Tiers> {
    prop_oneof![
        3 => Just(Tiers::default()),
        1 => (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
            |(sharing, ballooning, compression, swapping)| Tiers { sharing, ballooning, compression, swapping }
        ),
    ]
}

fn prev() -> impl Strategy<Value = PolicyState> {
    (select(HostState::ALL.to_vec()), 0u32..=4000).prop_map(|(host_state, ksm_pages)| PolicyState {
        host_state,
        ksm_pages,
    })
}

/// A host of 256 MiB..64 GiB with 0..2x its capacity consumed, two times
/// in three with free memory near the state thresholds (-1..12 x min_free)
/// so that every state is reached; 0..6 guests.
fn world(kinds: &'static [PolicyKind]) -> impl Strategy<Value = World> {
    (256u64..=65536)
        .prop_flat_map(move |capacity| (Just(capacity), config(kinds, capacity)))
        .prop_flat_map(|(capacity, cfg)| {
            let min_free = cfg.min_free_mib as f64;
            let cap = capacity as f64;
            let consumed = prop_oneof![
                1 => 0..=2 * capacity,
                2 => (-1.0f64..=12.0).prop_map(move |k| (cap - k * min_free).clamp(0.0, 2.0 * cap) as u64),
            ];
            (Just(cfg), tiers(), consumed, vec(guest(), 0..=6), prev()).prop_map(
                move |(cfg, tiers, consumed, guests, prev)| World {
                    cfg,
                    tiers,
                    host: HostView { capacity, consumed },
                    guests,
                    prev,
                },
            )
        })
}

const ALL: &[PolicyKind] = &PolicyKind::ALL;

/// ESXi's view of a guest: no sight of its free memory (all of it counts
/// as available), so its floor is the fixed share of its size.
fn esxi_view(g: &GuestView) -> GuestView {
    let mut g = g.clone();
    if let Some(m) = g.mem.as_mut() {
        m.available = m.total;
    }
    g
}

/// The new target lowers the guest below both its old target and its limit:
/// the balloon inflates (bringing a guest down to its limit is not that).
fn inflates(new: Option<u64>, g: &GuestView) -> bool {
    new.is_some_and(|t| t < g.target.min(g.limit))
}

/// `cases` cases and no regression files (a failure prints its minimal
/// input).
fn config_with_cases(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    // The high state with MOM's own pressure is a narrow corner: more cases.
    #![proptest_config(config_with_cases(4000))]

    /// 4'. In the high state no state-driven policy inflates a balloon, and
    /// no policy limits a cgroup. MOM has no states: it balloons when free
    /// memory is under 20 % of capacity, which can be "high" by ESXi's
    /// thresholds when min_free is small; that is MOM's rule, so its
    /// balloons are left out here and its cgroups are not. Proxmox has no
    /// states either (it balloons above 80 % used, and rebalances by shares
    /// below): likewise.
    #[test]
    fn high_state_neither_inflates_nor_limits(w in world(ALL)) {
        let d = w.decide();
        if d.state.host_state == HostState::High {
            if matches!(w.cfg.kind, PolicyKind::Mom | PolicyKind::Proxmox) {
                for c in &d.cgroups {
                    prop_assert!(!matches!(c, Some(CgroupAction::Limit(_))), "{:?} in high: {c:?}", w.cfg.kind);
                }
                return Ok(());
            }
            for ((t, c), g) in d.targets.iter().zip(&d.cgroups).zip(&w.guests) {
                prop_assert!(!inflates(*t, g), "{:?} in high: target {} -> {t:?}", w.cfg.kind, g.target);
                prop_assert!(!matches!(c, Some(CgroupAction::Limit(_))), "{:?} in high: {c:?}", w.cfg.kind);
            }
        }
    }
}

proptest! {
    #![proptest_config(config_with_cases(1000))]

    /// 1. No target below a guest's reservation (as far as its limit allows).
    #[test]
    fn reservation_is_never_violated(w in world(ALL)) {
        let d = w.decide();
        for (t, g) in d.targets.iter().zip(&w.guests) {
            if let Some(t) = *t {
                prop_assert!(t >= g.reservation.min(g.limit), "target {t} below reservation of {g:?}");
            }
        }
    }

    /// 2. No target above a guest's limit, and a guest above its limit is
    /// always brought down to it (to exactly the limit when nothing
    /// inflates: in the high state for the state-driven policies, which
    /// MOM and Proxmox are not).
    #[test]
    fn limit_is_never_exceeded(w in world(ALL)) {
        let d = w.decide();
        let high = d.state.host_state == HostState::High
            && !matches!(w.cfg.kind, PolicyKind::Mom | PolicyKind::Proxmox);
        for (t, g) in d.targets.iter().zip(&w.guests) {
            if let Some(t) = *t {
                prop_assert!(t <= g.limit, "target {t} above the limit of {g:?}");
            }
            if g.target > g.limit {
                prop_assert!(t.is_some_and(|t| t <= g.limit), "{g:?} above its limit got {t:?}");
                if high {
                    prop_assert_eq!(*t, Some(g.limit), "{:?}", g);
                }
            }
        }
    }

    /// 3. A lowered target never goes below the guest's floor (reservation,
    /// used + free share) unless it already was: BalloonRs and MOM by the
    /// guest's stats, ESXi and Proxmox (whose minimum is that floor) by the
    /// fixed floor.
    #[test]
    fn targets_respect_the_guest_floor(w in world(ALL)) {
        let d = w.decide();
        for (t, g) in d.targets.iter().zip(&w.guests) {
            let Some(t) = *t else { continue };
            if t >= g.target {
                continue;
            }
            let floor = match w.cfg.kind {
                PolicyKind::Esxi | PolicyKind::Proxmox => lower_bound(&w.cfg, &esxi_view(g)),
                _ => lower_bound(&w.cfg, g),
            };
            prop_assert!(
                t >= g.target.min(floor),
                "{:?}: target {} -> {t}, floor {floor}, guest {g:?}", w.cfg.kind, g.target
            );
        }
    }

    /// 4. Tiers escalate in order: cgroup limits only in hard or low; ESXi
    /// inflates only from soft on, BalloonRs from clear on; KSM runs only in
    /// clear or worse. (MOM and Proxmox have no states; Proxmox's rule is
    /// 8.)
    #[test]
    fn tiers_escalate_in_order(w in world(ALL)) {
        let d = w.decide();
        let state = d.state.host_state;
        for (c, g) in d.cgroups.iter().zip(&w.guests) {
            if let Some(CgroupAction::Limit(v)) = c {
                prop_assert!(state >= HostState::Hard, "cgroup limit {v} in {state} for {g:?}");
            }
        }
        let inflating = d.targets.iter().zip(&w.guests).any(|(t, g)| inflates(*t, g));
        match w.cfg.kind {
            PolicyKind::Esxi => prop_assert!(!inflating || state >= HostState::Soft, "ESXi inflates in {}", state),
            PolicyKind::BalloonRs => prop_assert!(!inflating || state >= HostState::Clear, "BalloonRs inflates in {}", state),
            PolicyKind::None => prop_assert!(!inflating, "policy none inflates"),
            PolicyKind::Mom | PolicyKind::Proxmox => {}
        }
        if matches!(w.cfg.kind, PolicyKind::Esxi | PolicyKind::BalloonRs) && d.ksm.run {
            prop_assert!(state >= HostState::Clear, "KSM runs in {}", state);
        }
    }

    /// 5. The host gets better only past the hysteresis margin of the state
    /// it moves to, never claims a better state than free memory alone
    /// gives, and enters a worse state at once.
    #[test]
    fn states_have_hysteresis(
        th in thresholds(),
        prev in select(HostState::ALL.to_vec()),
        min_free in 1u64..=8192,
        k in -1.0f64..=15.0,
    ) {
        let min_free = min_free as f64;
        let free = k * min_free;
        let raw = th.classify(free, min_free);
        let next = th.next(prev, free, min_free);
        prop_assert!(next >= raw, "{next} is better than free memory gives ({raw})");
        if raw > prev {
            prop_assert_eq!(next, raw, "worse state not entered at once");
        }
        if next < prev {
            let needed = th.lower_pct(next) / 100.0 * min_free * (1.0 + th.hysteresis_pct / 100.0);
            prop_assert!(free >= needed * (1.0 - 1e-12), "{prev} -> {next} with free {free} < {needed}");
        }
        if next > prev {
            prop_assert_eq!(next, raw);
        }
    }

    /// 5'. Free memory oscillating around a threshold, within its hysteresis
    /// band (never past the next threshold down nor the margin up), changes
    /// the state at most once.
    #[test]
    fn oscillation_in_the_band_does_not_flap(
        th in thresholds(),
        min_free in 1u64..=8192,
        at in 0usize..4,
        start_below in any::<bool>(),
        steps in vec(0.0f64..1.0, 2..60),
    ) {
        let min_free = min_free as f64;
        let (state, below) = (HostState::ALL[at], HostState::ALL[at + 1]);
        let mib = |pct: f64| pct / 100.0 * min_free;
        let threshold = mib(th.lower_pct(state));
        let lo = mib(th.lower_pct(below).max(th.lower_pct(state) / 2.0)) * (1.0 + 1e-9);
        let hi = threshold * (1.0 + th.hysteresis_pct / 100.0) * (1.0 - 1e-9);
        let mut s = if start_below { below } else { state };
        let mut changes = 0;
        for (i, f) in steps.iter().enumerate() {
            // Alternately under the threshold and above it (in the margin).
            let free = if i % 2 == 0 {
                lo + f * (threshold - lo) * (1.0 - 1e-9)
            } else {
                threshold + f * (hi - threshold).max(0.0)
            };
            let next = th.next(s, free, min_free);
            if next != s {
                changes += 1;
            }
            s = next;
        }
        prop_assert!(changes <= 1, "{changes} state changes");
    }

    /// 6. Never a panic on anything the scenario validation lets through,
    /// with degenerate measurements: zero-capacity hosts, guests of 0 MiB,
    /// huge or inconsistent stats, targets and sizes out of range.
    #[test]
    fn no_panic_on_degenerate_measurements(
        w in world(ALL),
        capacity in prop_oneof![Just(0u64), Just(1), any::<u64>()],
        consumed in prop_oneof![Just(0u64), any::<u64>()],
        wild in vec(
            (
                (0u64..=64 * 1024, frac(), frac(), any::<u32>()),
                (any::<u64>(), any::<u64>(), any::<u64>()),
                option::of((any::<u64>(), any::<u64>(), any::<u64>())),
                option::of(any::<u64>()),
            ),
            0..8,
        ),
    ) {
        let mut w = w;
        w.host = HostView { capacity, consumed };
        for ((configured, l, r, shares), (target, actual, resident), mem, cgroup_limit) in wild {
            let limit = part(configured, l);
            w.guests.push(GuestView {
                configured,
                reservation: part(limit, r),
                limit,
                shares,
                target,
                actual,
                resident,
                mem: mem.map(|(total, free, available)| GuestMem { total, free, available }),
                cgroup_limit,
            });
        }
        let d = w.decide();
        prop_assert_eq!(d.targets.len(), w.guests.len());
    }

    /// 6'. Never a panic, whatever the input: any sizes and tunables.
    #[test]
    fn no_panic_on_any_input(
        kind in select(ALL),
        floats in (any::<f64>(), any::<f64>(), any::<f64>(), any::<f64>()),
        th in (any::<f64>(), any::<f64>(), any::<f64>(), any::<f64>(), any::<f64>()),
        ints in (any::<u64>(), any::<u64>(), any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()),
        host in (any::<u64>(), any::<u64>()),
        prev in (select(HostState::ALL.to_vec()), any::<u32>()),
        tiers in tiers(),
        guests in vec(
            (
                (any::<u64>(), any::<u64>(), any::<u64>(), any::<u32>()),
                (any::<u64>(), any::<u64>(), any::<u64>()),
                option::of((any::<u64>(), any::<u64>(), any::<u64>())),
                option::of(any::<u64>()),
            ),
            0..6,
        ),
    ) {
        let cfg = PolicyConfig {
            kind,
            min_free_mib: ints.0,
            thresholds: Thresholds { high: th.0, clear: th.1, soft: th.2, hard: th.3, hysteresis_pct: th.4 },
            guest_free_pct: floats.0,
            guest_floor_min_mib: ints.1,
            step_pct: floats.1,
            min_change_pct: floats.2,
            idle_tax: floats.3,
            ksm_min_pages: ints.2,
            ksm_max_pages: ints.3,
            ksm_step_up: ints.4,
            ksm_step_down: ints.5,
            ksm_sleep_ms: ints.6,
            balloon_horizon_ticks: ints.6,
            tick_secs: floats.0,
        };
        let guests: Vec<GuestView> = guests
            .into_iter()
            .map(|((configured, reservation, limit, shares), (target, actual, resident), mem, cgroup_limit)| GuestView {
                configured,
                reservation,
                limit,
                shares,
                target,
                actual,
                resident,
                mem: mem.map(|(total, free, available)| GuestMem { total, free, available }),
                cgroup_limit,
            })
            .collect();
        let host = HostView { capacity: host.0, consumed: host.1 };
        let prev = PolicyState { host_state: prev.0, ksm_pages: prev.1 };
        let d = decide(&cfg, &tiers, &host, &guests, &prev);
        prop_assert_eq!(d.targets.len(), guests.len());
    }

    /// 7. One target and one cgroup action per guest; cgroup limits only
    /// tighten, never below the reservation or 64 MiB; limits are lifted
    /// only where there is one; KSM's pages_to_scan stays within its bounds
    /// (how it moves: 7').
    #[test]
    fn decisions_are_well_formed(w in world(ALL)) {
        let d = w.decide();
        prop_assert_eq!(d.targets.len(), w.guests.len());
        prop_assert_eq!(d.cgroups.len(), w.guests.len());
        for (c, g) in d.cgroups.iter().zip(&w.guests) {
            match *c {
                Some(CgroupAction::Limit(v)) => {
                    let now = g.cgroup_limit.unwrap_or(g.resident).min(g.resident);
                    prop_assert!(v >= g.reservation, "limit {v} below the reservation of {g:?}");
                    prop_assert!(v >= 64, "limit {v} below 64 MiB for {g:?}");
                    prop_assert!(v < now, "limit {v} does not tighten {now} for {g:?}");
                }
                Some(CgroupAction::Unlimited) => prop_assert!(g.cgroup_limit.is_some(), "lifting no limit: {g:?}"),
                None => {}
            }
        }
        let cfg = &w.cfg;
        prop_assert!(d.ksm.pages_to_scan >= cfg.ksm_min_pages && d.ksm.pages_to_scan <= cfg.ksm_max_pages);
        if !w.tiers.sharing {
            prop_assert!(!d.ksm.run);
        }
        if !w.tiers.ballooning {
            for (t, g) in d.targets.iter().zip(&w.guests) {
                prop_assert!(t.is_none() || g.target > g.limit || g.target < g.reservation, "{t:?} without ballooning");
            }
        }
    }

    /// 7'. KSM follows the pressure each policy acts on (ESXi and
    /// balloon_rs: the host in clear or worse; MOM and Proxmox's ksmtuned:
    /// under 20 % of the host free; none: never). It runs exactly when there is pressure and the
    /// sharing tier is on; its scan rate rises under pressure by at most
    /// `ksm_step_up` pages a tick (strictly, until `ksm_max_pages`) and falls
    /// without it by at most `ksm_step_down` (strictly, until
    /// `ksm_min_pages`), never outside the rates the bounds give at the
    /// configured sleep. The state a tick carries is what the next one
    /// starts from: fed its own state back with the host unchanged, the
    /// policy keeps the host state and moves the rate one more step the same
    /// way.
    #[test]
    fn ksm_scan_rate_follows_pressure(w in world(ALL)) {
        let cfg = &w.cfg;
        let d = w.decide();
        let pressure = match cfg.kind {
            PolicyKind::None => false,
            PolicyKind::Mom | PolicyKind::Proxmox => w.host.free() < 0.20 * w.host.capacity as f64,
            PolicyKind::Esxi | PolicyKind::BalloonRs => d.state.host_state >= HostState::Clear,
        };
        prop_assert_eq!(d.ksm.run, pressure && w.tiers.sharing, "{:?} in {}", cfg.kind, d.state.host_state);
        // The scan rate, pages per ms: what ksmd scans (pages_to_scan every
        // sleep_millisecs) and what the simulator turns into MiB/s. The
        // bounds are rates at the configured sleep: the CPU KSM may take is
        // what the configuration allows, whatever the policy does with
        // pages and sleep. (A rate and its bound share the divisor when the
        // policy keeps the sleep, so the comparison is exact: no tolerance.)
        let rate = |k: &Ksm| f64::from(k.pages_to_scan) / f64::from(k.sleep_ms);
        let slowest = f64::from(cfg.ksm_min_pages) / f64::from(cfg.ksm_sleep_ms);
        let fastest = f64::from(cfg.ksm_max_pages) / f64::from(cfg.ksm_sleep_ms);
        let (lo, hi) = (cfg.ksm_min_pages, cfg.ksm_max_pages);
        // One tick's move of pages_to_scan from `from` (the carried value;
        // one outside the bounds counts as the nearer bound, and then the
        // first step may be swallowed by the clamp, so strictness is
        // asked only of a value within the bounds).
        let step_ok = |from: u32, to: u32| -> bool {
            let strict = (lo..=hi).contains(&from);
            let from = from.clamp(lo, hi);
            if pressure {
                to >= from
                    && to - from <= cfg.ksm_step_up
                    && (!strict || from == hi || cfg.ksm_step_up == 0 || to > from)
            } else {
                to <= from
                    && from - to <= cfg.ksm_step_down
                    && (!strict || from == lo || cfg.ksm_step_down == 0 || to < from)
            }
        };
        prop_assert!(
            step_ok(w.prev.ksm_pages, d.ksm.pages_to_scan),
            "pressure {pressure}: pages {} -> {}", w.prev.ksm_pages, d.ksm.pages_to_scan
        );
        let next = World { prev: d.state, ..w.clone() }.decide();
        prop_assert_eq!(next.state.host_state, d.state.host_state, "the host state moved with the host unchanged");
        for k in [&d.ksm, &next.ksm] {
            prop_assert!(rate(k) >= slowest && rate(k) <= fastest, "rate {} outside {slowest}..={fastest}: {k:?}", rate(k));
        }
        prop_assert!(
            step_ok(d.ksm.pages_to_scan, next.ksm.pages_to_scan),
            "pressure {pressure}: the next tick went {} -> {} (carried {:?})",
            d.ksm.pages_to_scan, next.ksm.pages_to_scan, d.state
        );
        let (r1, r2) = (rate(&d.ksm), rate(&next.ksm));
        prop_assert!(if pressure { r2 >= r1 } else { r2 <= r1 }, "pressure {pressure}: rate {r1} -> {r2}");
    }
}

proptest! {
    #![proptest_config(config_with_cases(2000))]

    /// 8. Proxmox's auto-ballooning: a guest with ballooning off (shares 0
    /// or no stats: no driver) or without the ballooning tier is left alone
    /// (but for the limit, every policy's rule); within 10 MiB of 80 % used
    /// nothing moves; above it no balloon deflates (in a tick of one round);
    /// a balloon moves at most
    /// 10 MiB/s of the tick from its current size (rounds x step), except
    /// to reach the reservation or the limit; no target goes below the
    /// guest's current size and its minimum (reservation, fixed floor), nor
    /// above its limit.
    #[test]
    fn proxmox_steps_toward_80_percent_within_bounds(w in world(&[PolicyKind::Proxmox])) {
        let d = w.decide();
        let goal = (w.host.capacity as f64 * PROXMOX_TARGET_PCT / 100.0 - w.host.consumed as f64) as i64;
        let (rounds, step) = proxmox_rounds(w.cfg.tick_secs);
        let most = u64::from(rounds) * step;
        for (t, g) in d.targets.iter().zip(&w.guests) {
            let Some(t) = *t else { continue };
            prop_assert!(t <= g.limit, "{t} above the limit of {g:?}");
            if g.target > g.limit {
                // The limit fix, or Proxmox's own move below the limit.
                continue;
            }
            let off = g.mem.is_none() || g.shares == 0 || !w.tiers.ballooning;
            prop_assert!(!off, "ballooning off, yet {t} for {g:?}");
            prop_assert!(goal.abs() > PROXMOX_DEADBAND_MIB, "goal {goal}: {t} for {g:?}");
            let base = g.actual.min(g.configured);
            let floor = g.reservation.min(g.limit);
            // One round only: over several, a round that brings a VM above
            // its maximum down to it may take more than the goal, and the
            // next gives the excess back (as Proxmox's would).
            if goal < 0 && rounds == 1 {
                prop_assert!(t <= base.max(floor), "goal {goal}: {g:?} grows to {t}");
            }
            if t > base {
                prop_assert!(t - base <= most || t == floor, "{base} -> {t} in {rounds} x {step} MiB");
            } else {
                prop_assert!(base - t <= most || t == g.limit, "{base} -> {t} in {rounds} x {step} MiB");
            }
            let min = lower_bound(&w.cfg, &esxi_view(g)).min(g.limit.min(g.configured));
            prop_assert!(t >= base.min(min), "{t} below {} and the minimum {min}: {g:?}", base);
        }
    }
}

// ---- Worked examples -------------------------------------------------------

const GIB4: u64 = 4096;

/// A 4 GiB guest at full size using `used` MiB.
fn vm(used: u64, shares: u32) -> GuestView {
    GuestView {
        configured: GIB4,
        reservation: 0,
        limit: GIB4,
        shares,
        target: GIB4,
        actual: GIB4,
        resident: GIB4,
        mem: Some(GuestMem {
            total: GIB4,
            free: GIB4 - used,
            available: GIB4 - used,
        }),
        cgroup_limit: None,
    }
}

fn cfg(kind: PolicyKind) -> PolicyConfig {
    PolicyConfig {
        kind,
        min_free_mib: 1024,
        step_pct: 10.0,
        ..PolicyConfig::default()
    }
}

/// One tick from `state` with `free` MiB free on a 16 GiB host.
fn tick(cfg: &PolicyConfig, guests: &[GuestView], free: u64, state: HostState) -> Decision {
    let host = HostView {
        capacity: 16 * 1024,
        consumed: 16 * 1024 - free,
    };
    let prev = PolicyState {
        host_state: state,
        ..PolicyState::initial(cfg)
    };
    decide(cfg, &Tiers::default(), &host, guests, &prev)
}

#[test]
fn idle_guest_is_ballooned_before_busy_guest() {
    let c = cfg(PolicyKind::BalloonRs);
    // Free 1000 of min_free 1024: soft; a goal below one step (409 MiB).
    let guests = [vm(2000, 1000), vm(300, 1000)];
    // The busy guest could give too: only the order keeps it.
    assert!(lower_bound(&c, &guests[0]) < GIB4);
    // From high: the host enters soft at once (the state is decided, not
    // carried over).
    let d = tick(&c, &guests, 1000, HostState::High);
    assert_eq!(d.state.host_state, HostState::Soft);
    assert!(
        d.targets[1].is_some_and(|t| t < GIB4),
        "idle guest not ballooned: {d:?}"
    );
    assert_eq!(d.targets[0], None, "busy guest ballooned first: {d:?}");
}

#[test]
fn guest_with_more_shares_gives_less() {
    for kind in [PolicyKind::Esxi, PolicyKind::BalloonRs] {
        let c = cfg(kind);
        let guests = [vm(1000, 2000), vm(1000, 500)];
        let d = tick(&c, &guests, 1000, HostState::Soft);
        assert!(
            d.targets[1].is_some_and(|t| t < GIB4),
            "{kind:?}: low shares kept all: {d:?}"
        );
        assert_eq!(
            d.targets[0], None,
            "{kind:?}: high shares gave first: {d:?}"
        );
        // A goal of one to two steps: both give, the low-shares guest more.
        let d = tick(&c, &guests, 600, HostState::Soft);
        let given = |i: usize| GIB4 - d.targets[i].unwrap_or(GIB4);
        assert!(given(1) > given(0), "{kind:?}: {d:?}");
    }
}

#[test]
fn high_state_deflates_and_lifts_limits() {
    let mut g = vm(1000, 1000);
    g.target = 2048;
    g.actual = 2048;
    g.cgroup_limit = Some(1500);
    for kind in [PolicyKind::Mom, PolicyKind::Esxi, PolicyKind::BalloonRs] {
        let c = cfg(kind);
        // From clear: 8000 MiB free is 781 % of min_free, past high's 400 %
        // plus the 25 % hysteresis margin, so the host moves up to high.
        let d = tick(&c, std::slice::from_ref(&g), 8000, HostState::Clear);
        assert_eq!(d.state.host_state, HostState::High);
        assert_eq!(d.targets[0], Some(2048 + 409), "{kind:?}: {d:?}");
        assert_eq!(
            d.cgroups[0],
            Some(CgroupAction::Unlimited),
            "{kind:?}: {d:?}"
        );
        assert!(!d.ksm.run, "{kind:?}: {d:?}");
    }
}

#[test]
fn mom_keeps_a_fifth_of_each_guest_free() {
    // Only MOM's own rule: no reservation or stats floor.
    let c = PolicyConfig {
        guest_free_pct: 0.0,
        guest_floor_min_mib: 0,
        ..cfg(PolicyKind::Mom)
    };
    let mut g = vm(1500, 1000);
    // Under pressure (free < 20 % of the host) tick after tick.
    for _ in 0..100 {
        let d = tick(&c, std::slice::from_ref(&g), 1000, HostState::Low);
        let Some(t) = d.targets[0] else { break };
        assert!(t < g.target, "MOM raised a target under pressure: {d:?}");
        let m = g.mem.as_mut().unwrap();
        let given = g.target - t;
        m.total -= given;
        m.available -= given;
        m.free -= given;
        (g.target, g.actual) = (t, t);
    }
    let available = g.mem.unwrap().available;
    let keep = GIB4 / 5;
    let min_change = (c.min_change_pct / 100.0 * GIB4 as f64).max(1.0) as u64;
    assert!(g.target < GIB4, "MOM did not balloon");
    assert!(
        available >= keep && available <= keep + min_change,
        "available {available}, keep {keep}"
    );
}
