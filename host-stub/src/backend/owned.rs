//! A QEMU this process launched.

use super::{qmp_balloon, Backend, BalloonNow};
use crate::scenario::{GuestDriver, GuestSpec};
use crate::Result;
use qemu_ctl::guest::{Guest, GuestConfig};
use qemu_ctl::{Driver, MIB};
use std::path::PathBuf;

/// A guest booted by this process: the harness's guest, with its serial
/// agent and console log. It dies with the thread that booted it
/// (`PR_SET_PDEATHSIG`) and when dropped.
pub struct OwnedQemu(Box<Guest>);

impl OwnedQemu {
    /// Boots the guest `spec` describes, in the memory cgroup whose
    /// `cgroup.procs` is `cgroup_procs`, and loads its balloon driver.
    pub fn boot(spec: &GuestSpec, cgroup_procs: Option<PathBuf>) -> Result<Self> {
        let mut cfg = GuestConfig::new(&spec.name)?;
        cfg.mem_mib = spec.memory_mib;
        cfg.cpus = spec.cpus;
        if spec.free_page_reporting {
            cfg.balloon_props.push("free-page-reporting=on".into());
        }
        if spec.deflate_on_oom {
            cfg.balloon_props.push("deflate-on-oom=on".into());
        }
        cfg.cgroup_procs = cgroup_procs;
        let mut g = Guest::boot(cfg)?;
        match spec.driver {
            GuestDriver::BalloonRs => g.load(Driver::BalloonRs)?,
            GuestDriver::C => g.load(Driver::C)?,
            GuestDriver::None => {}
        }
        Ok(Self(Box::new(g)))
    }
}

impl Backend for OwnedQemu {
    fn pid(&self) -> u32 {
        self.0.pid()
    }

    fn alive(&mut self) -> Result<()> {
        Ok(self.0.check_alive("being managed")?)
    }

    fn set_size_mib(&mut self, mib: u64) -> Result<()> {
        Ok(self.0.qmp().set_guest_size(mib * MIB)?)
    }

    fn set_stats_interval(&mut self, secs: u32) -> Result<()> {
        Ok(self.0.qmp().set_stats_interval(secs)?)
    }

    fn balloon(&mut self) -> Result<BalloonNow> {
        qmp_balloon(self.0.qmp())
    }

    fn owned(&mut self) -> Option<&mut Guest> {
        Some(&mut self.0)
    }

    fn release(self: Box<Self>) -> Result<()> {
        Ok(self.0.shutdown()?)
    }
}
