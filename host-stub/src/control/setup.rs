//! What a run needs before its first tick: the host's mechanisms for the
//! tiers asked for (each one missing is said and the run goes on without
//! it), and the guests, booted or found running.

use super::{RunOptions, Vm};
use crate::backend::{self, AttachTo, OwnedQemu};
use crate::engine::policy::Tiers;
use crate::mechanisms::{self, CgroupFs, HostSettings, VmCgroup};
use crate::record::timeline::VmStatus;
use crate::scenario::{Scenario, Workload};
use crate::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};

/// The mechanisms this host could give the run.
pub(super) struct Mechanisms {
    pub(super) tiers: Tiers,
    pub(super) cgroups: Option<CgroupFs>,
    pub(super) unavailable: Vec<String>,
}

/// Prepares KSM, the swap file, memory cgroups and zswap for the tiers the
/// scenario asks for, recording every setting in `settings`.
pub(super) fn mechanisms(
    settings: &mut HostSettings,
    scenario: &Scenario,
    opts: &RunOptions,
) -> Mechanisms {
    let want = scenario.tiers;
    let mut m = Mechanisms {
        tiers: want,
        cgroups: None,
        unavailable: Vec::new(),
    };
    let off = |m: &mut Mechanisms, tier: &str, why: String| {
        let msg = format!("tier {tier} unavailable: {why}; continuing without it");
        tracing::warn!("{msg}");
        m.unavailable.push(msg);
    };
    let cfg = scenario.policy_config();
    if want.sharing {
        let k = &opts.ksm_dir;
        let r = mechanisms::ksm_available(k).and_then(|_| {
            settings.set(&k.join("pages_to_scan"), &cfg.ksm_min_pages.to_string())?;
            settings.set(&k.join("sleep_millisecs"), &cfg.ksm_sleep_ms.to_string())?;
            settings.ksm_run(k, false)
        });
        if let Err(e) = r {
            m.tiers.sharing = false;
            off(&mut m, "sharing (KSM)", e.to_string());
        }
    }
    if want.compression || want.swapping {
        let r = CgroupFs::detect().and_then(|fs| {
            fs.prepare(settings)?;
            settings.swap_file(&opts.swap_file, scenario.host.swap_file_mib)?;
            Ok(fs)
        });
        match r {
            Ok(fs) => m.cgroups = Some(fs),
            Err(e) => {
                m.tiers.compression = false;
                m.tiers.swapping = false;
                off(&mut m, "compression and swapping", e.to_string());
            }
        }
    }
    if m.tiers.compression {
        let pool = scenario.host.zswap_max_pool_percent;
        let r = mechanisms::zswap_available(&opts.zswap_dir)
            .and_then(|_| settings.set(&opts.zswap_dir.join("enabled"), "Y"))
            .and_then(|_| match pool {
                Some(p) => settings.set(&opts.zswap_dir.join("max_pool_percent"), &p.to_string()),
                None => Ok(()),
            });
        if let Err(e) = r {
            m.tiers.compression = false;
            off(&mut m, "compression (zswap)", e.to_string());
        }
    }
    m
}

/// The scenario's guests, each in its memory cgroup if the run has them,
/// not yet connected.
pub(super) fn guests(
    settings: &mut HostSettings,
    scenario: &Scenario,
    cgroups: Option<&CgroupFs>,
) -> Result<Vec<Vm>> {
    let mut vms = Vec::new();
    for (i, spec) in scenario.guests().enumerate() {
        let cgroup = match cgroups {
            Some(fs) => Some(VmCgroup::create(settings, fs, &spec.name)?),
            None => None,
        };
        let mut workloads: Vec<Workload> =
            spec.workload.iter().map(|w| w.get_ref().clone()).collect();
        workloads.sort_by(|a, b| a.at.total_cmp(&b.at));
        vms.push(Vm {
            spec: spec.clone(),
            host: usize::from(spec.host == "b"),
            conn: None,
            launched: false,
            status: VmStatus::Booting,
            target: spec.limit(),
            cgroup,
            cgroup_limit: None,
            oom_kills: 0,
            workloads,
            next_workload: 0,
            seed: i as u64 + 1,
        });
    }
    Ok(vms)
}

/// Connects each guest to the running QEMU or domain it is attached to,
/// moving the QEMU into the guest's cgroup.
pub(super) fn attach(
    settings: &mut HostSettings,
    vms: &mut [Vm],
    to: &[(String, AttachTo)],
) -> Result<()> {
    for (vm, (name, to)) in vms.iter_mut().zip(to) {
        let conn = backend::attach(name, to)?;
        if let Some(cg) = &vm.cgroup {
            cg.add(settings, conn.pid())?;
        }
        vm.conn = Some(conn);
    }
    Ok(())
}

/// Boots each guest. One after the other, from this thread: QEMU dies with
/// the thread that started it (`PR_SET_PDEATHSIG`), and a TCG boot to the
/// agent takes only a few seconds.
pub(super) fn boot(vms: &mut [Vm], stop: &AtomicBool) -> Result<()> {
    for vm in vms.iter_mut() {
        if stop.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        tracing::info!(
            "booting {} ({} MiB, {:?} driver)",
            vm.spec.name,
            vm.spec.memory_mib,
            vm.spec.driver
        );
        let procs = vm.cgroup.as_ref().map(VmCgroup::procs);
        vm.conn = Some(Box::new(OwnedQemu::boot(&vm.spec, procs)?));
        vm.launched = true;
    }
    Ok(())
}
