//! The DRS-like balancer, one pure function for both places that balance:
//! the real loop (two hosts on this machine, `[second_host]`) and the
//! cluster simulator (`simulate --hosts N`), so that what the simulator
//! says about balancing is what the real loop does.
//!
//! Each tick, hosts that have been in soft or worse for `sustain_ticks` in
//! a row are sources, the one with the least free memory first; each gets
//! the destination with the most free memory among hosts below soft; the
//! VM to move is the cheapest copy that frees what the source needs to
//! leave soft, else the one that frees the most — in both cases one whose
//! copy fits in the destination's room (its free memory less what it must
//! keep). A host takes part in one move at a time, and at most
//! `max_in_flight` moves run at once.

use crate::engine::policy::{HostState, Thresholds};

/// The balancer's rules.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rules {
    /// Ticks in a row in soft or worse before a VM moves away.
    pub sustain_ticks: u32,
    /// Most moves in flight at once.
    pub max_in_flight: usize,
}

/// A host as the balancer sees it this tick.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Host {
    /// Its state.
    pub state: HostState,
    /// Ticks in a row it has been in soft or worse (this one included).
    pub pressured: u32,
    /// Free memory, MiB (capacity less consumption; negative when over).
    pub free: f64,
    /// Free memory at which it leaves soft, MiB ([`leave_soft_mib`]).
    pub leave_soft: f64,
    /// Free memory it must keep after receiving a VM, MiB.
    pub keep: f64,
    /// Already in a move (or one just landed): not a source or destination.
    pub busy: bool,
}

/// A VM as the balancer sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Vm {
    /// The host it is on.
    pub host: usize,
    /// MiB the move copies (and the destination then holds).
    pub copy: f64,
    /// MiB its leaving frees on its host.
    pub frees: f64,
    /// Whether it may move (not in its cooldown, a migratable guest).
    pub may_move: bool,
}

/// One move: VM index, from host, to host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move {
    /// Index into the VMs.
    pub vm: usize,
    /// Source host.
    pub from: usize,
    /// Destination host.
    pub to: usize,
}

/// Free memory at which a host leaves soft: the clear level plus the
/// hysteresis margin.
pub fn leave_soft_mib(th: &Thresholds, min_free_mib: f64) -> f64 {
    th.clear / 100.0 * min_free_mib * (1.0 + th.hysteresis_pct / 100.0)
}

/// This tick's moves, given `in_flight` moves already running.
pub fn plan(rules: &Rules, hosts: &[Host], vms: &[Vm], in_flight: usize) -> Vec<Move> {
    let mut busy: Vec<bool> = hosts.iter().map(|h| h.busy).collect();
    let mut sources: Vec<usize> = (0..hosts.len())
        .filter(|&h| !busy[h] && hosts[h].pressured >= rules.sustain_ticks)
        .collect();
    sources.sort_by(|&a, &b| hosts[a].free.total_cmp(&hosts[b].free).then(a.cmp(&b)));
    let mut moves = Vec::new();
    for src in sources {
        if in_flight + moves.len() >= rules.max_in_flight {
            break;
        }
        let need = hosts[src].leave_soft - hosts[src].free;
        if busy[src] || need <= 0.0 {
            continue;
        }
        let dst = (0..hosts.len())
            .filter(|&h| h != src && !busy[h] && hosts[h].state < HostState::Soft)
            .max_by(|&a, &b| hosts[a].free.total_cmp(&hosts[b].free).then(b.cmp(&a)));
        let Some(dst) = dst else { continue };
        let room = hosts[dst].free - hosts[dst].keep;
        let Some(vm) = pick_vm(vms, src, need, room) else {
            continue;
        };
        moves.push(Move {
            vm,
            from: src,
            to: dst,
        });
        busy[src] = true;
        busy[dst] = true;
    }
    moves
}

/// The VM of `src` to move: the cheapest copy that frees `need`, else the
/// one that frees the most; its copy within `room`.
fn pick_vm(vms: &[Vm], src: usize, need: f64, room: f64) -> Option<usize> {
    let mut cover: Option<(usize, f64)> = None;
    let mut most: Option<(usize, f64)> = None;
    for (i, v) in vms.iter().enumerate() {
        if v.host != src || !v.may_move || v.copy > room || v.frees <= 0.0 {
            continue;
        }
        if v.frees >= need && cover.is_none_or(|(_, c)| v.copy < c) {
            cover = Some((i, v.copy));
        }
        if most.is_none_or(|(_, f)| v.frees > f) {
            most = Some((i, v.frees));
        }
    }
    cover.or(most).map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RULES: Rules = Rules {
        sustain_ticks: 3,
        max_in_flight: 2,
    };

    fn host(state: HostState, pressured: u32, free: f64) -> Host {
        Host {
            state,
            pressured,
            free,
            leave_soft: 80.0,
            keep: 100.0,
            busy: false,
        }
    }

    fn vm(host: usize, mib: f64) -> Vm {
        Vm {
            host,
            copy: mib,
            frees: mib,
            may_move: true,
        }
    }

    #[test]
    fn the_cheapest_vm_that_relieves_the_source_moves() {
        let hosts = [
            host(HostState::Hard, 3, 10.0),
            host(HostState::High, 0, 700.0),
        ];
        // Need 70 MiB: 100 is the cheapest that covers it; 900 does not fit.
        let vms = [
            vm(0, 300.0),
            vm(0, 100.0),
            vm(1, 50.0),
            vm(0, 900.0),
            vm(0, 40.0),
        ];
        assert_eq!(
            plan(&RULES, &hosts, &vms, 0),
            [Move {
                vm: 1,
                from: 0,
                to: 1
            }]
        );
        // None covers it: the one that frees the most (and fits).
        let small = [vm(0, 40.0), vm(0, 60.0), vm(1, 500.0)];
        assert_eq!(
            plan(&RULES, &hosts, &small, 0),
            [Move {
                vm: 1,
                from: 0,
                to: 1
            }]
        );
    }

    #[test]
    fn nothing_moves_without_sustained_pressure_a_destination_or_room() {
        let vms = [vm(0, 100.0)];
        let b = host(HostState::High, 0, 700.0);
        let not_yet = host(HostState::Hard, 2, 10.0);
        assert!(plan(&RULES, &[not_yet, b], &vms, 0).is_empty());
        let a = host(HostState::Hard, 3, 10.0);
        let b_soft = host(HostState::Soft, 1, 700.0);
        assert!(plan(&RULES, &[a, b_soft], &vms, 0).is_empty());
        let b_full = host(HostState::Clear, 0, 150.0); // room 50 < 100
        assert!(plan(&RULES, &[a, b_full], &vms, 0).is_empty());
        let cool = [Vm {
            may_move: false,
            ..vm(0, 100.0)
        }];
        assert!(plan(&RULES, &[a, b], &cool, 0).is_empty());
        assert!(
            plan(&RULES, &[a, b], &vms, 2).is_empty(),
            "two already in flight"
        );
        let b_busy = Host { busy: true, ..b };
        assert!(plan(&RULES, &[a, b_busy], &vms, 0).is_empty());
    }

    #[test]
    fn the_poorest_source_goes_first_to_the_richest_destination() {
        let hosts = [
            host(HostState::Soft, 5, 60.0),
            host(HostState::Low, 5, -50.0),
            host(HostState::High, 0, 400.0),
            host(HostState::High, 0, 900.0),
        ];
        let vms = [vm(0, 50.0), vm(1, 200.0), vm(2, 10.0)];
        assert_eq!(
            plan(&RULES, &hosts, &vms, 0),
            [
                Move {
                    vm: 1,
                    from: 1,
                    to: 3
                },
                Move {
                    vm: 0,
                    from: 0,
                    to: 2
                }
            ]
        );
    }

    fn state() -> impl Strategy<Value = HostState> {
        prop::sample::select(HostState::ALL.to_vec())
    }

    fn hosts() -> impl Strategy<Value = Vec<Host>> {
        prop::collection::vec(
            (
                state(),
                0u32..8,
                -500.0f64..2000.0,
                0.0f64..300.0,
                0.0f64..300.0,
                any::<bool>(),
            ),
            1..6,
        )
        .prop_map(|v| {
            v.into_iter()
                .map(|(state, pressured, free, leave_soft, keep, busy)| Host {
                    state,
                    pressured,
                    free,
                    leave_soft,
                    keep,
                    busy,
                })
                .collect()
        })
    }

    proptest! {
        /// Every move is allowed by the rules, no host is in two moves, and
        /// the count stays within the slots left.
        #[test]
        fn moves_obey_the_rules(
            hosts in hosts(),
            raw in prop::collection::vec((0usize..6, 0.0f64..800.0, -50.0f64..800.0, any::<bool>()), 0..12),
            in_flight in 0usize..3,
        ) {
            let vms: Vec<Vm> = raw
                .into_iter()
                .map(|(h, copy, frees, may_move)| Vm { host: h % hosts.len(), copy, frees, may_move })
                .collect();
            let moves = plan(&RULES, &hosts, &vms, in_flight);
            prop_assert!(in_flight + moves.len() <= RULES.max_in_flight.max(in_flight));
            let mut used = vec![false; hosts.len()];
            for m in &moves {
                let (s, d, v) = (&hosts[m.from], &hosts[m.to], &vms[m.vm]);
                prop_assert!(!s.busy && !d.busy && m.from != m.to);
                prop_assert!(s.pressured >= RULES.sustain_ticks && s.free < s.leave_soft);
                prop_assert!(d.state < HostState::Soft);
                prop_assert!(v.host == m.from && v.may_move && v.frees > 0.0);
                prop_assert!(v.copy <= d.free - d.keep);
                prop_assert!(!used[m.from] && !used[m.to]);
                used[m.from] = true;
                used[m.to] = true;
            }
        }

        /// With one pressured source, one free destination and a VM that
        /// fits, something moves.
        #[test]
        fn a_fitting_vm_always_moves(free in -200.0f64..70.0, room in 100.0f64..1000.0, copy in 1.0f64..100.0) {
            let hosts = [host(HostState::Hard, 3, free), host(HostState::Clear, 0, 100.0 + room)];
            let vms = [vm(1, 10.0), vm(0, copy)];
            prop_assert_eq!(plan(&RULES, &hosts, &vms, 0), vec![Move { vm: 1, from: 0, to: 1 }]);
        }
    }
}
