//! What the mechanisms report: KSM's counters, zswap's pool, a QEMU's
//! resident and swapped memory, and how host-wide counters are attributed
//! to the VMs.

use super::{controllable, page_mib, read_num};
use crate::{Error, Result};
use std::path::Path;

/// KSM counters, MiB.
#[derive(Clone, Debug, PartialEq)]
pub struct KsmCounters {
    /// `run`.
    pub run: u32,
    /// `pages_to_scan`.
    pub pages_to_scan: u32,
    /// `pages_sharing` (memory saved).
    pub sharing: f64,
    /// `pages_shared`.
    pub shared: f64,
}

/// KSM in directory `ksm`, if it is there and we may write it.
pub fn ksm_available(ksm: &Path) -> Result<()> {
    controllable(&ksm.join("run"), "KSM")
}

/// Reads KSM's counters from directory `k`.
pub fn ksm_counters(k: &Path) -> Result<KsmCounters> {
    Ok(KsmCounters {
        run: read_num(&k.join("run"))? as u32,
        pages_to_scan: read_num(&k.join("pages_to_scan"))? as u32,
        sharing: read_num(&k.join("pages_sharing"))? as f64 * page_mib(),
        shared: read_num(&k.join("pages_shared"))? as f64 * page_mib(),
    })
}

/// Pages of process `pid` that KSM merged, MiB (`/proc/PID/ksm_merging_pages`;
/// None where the kernel does not expose it).
pub fn ksm_merging_mib(pid: u32) -> Option<f64> {
    let t = std::fs::read_to_string(format!("/proc/{pid}/ksm_merging_pages")).ok()?;
    Some(t.trim().parse::<f64>().ok()? * page_mib())
}

/// zswap (module parameters in `zswap`), if it is there and we may turn it on.
pub fn zswap_available(zswap: &Path) -> Result<()> {
    controllable(&zswap.join("enabled"), "zswap")
}

/// A process's resident and swapped memory, MiB.
pub fn process_mem(pid: u32) -> Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(Error::io(format!("reading /proc/{pid}/status")))?;
    let kib = |f| qemu_ctl::procfs::status_field_kib(&status, f);
    let rss = kib("VmRSS").ok_or_else(|| Error::Host(format!("/proc/{pid}/status: no VmRSS")))?;
    Ok((
        rss as f64 / 1024.0,
        kib("VmSwap").unwrap_or(0) as f64 / 1024.0,
    ))
}

/// `Zswap` (pool) and `Zswapped` (pages held) from /proc/meminfo, MiB.
pub fn zswap_meminfo() -> Result<(f64, f64)> {
    let text =
        std::fs::read_to_string("/proc/meminfo").map_err(Error::io("reading /proc/meminfo"))?;
    let mi = qemu_ctl::procfs::MemInfo::parse(&text)?;
    Ok((
        mi.kib("Zswap").unwrap_or(0) as f64 / 1024.0,
        mi.kib("Zswapped").unwrap_or(0) as f64 / 1024.0,
    ))
}

/// Splits host-wide `zswapped` MiB among VMs by their share of swapped
/// memory; returns (compressed, swapped to disk) per VM.
pub fn attribute_swap(vm_swap: &[f64], zswapped: f64) -> Vec<(f64, f64)> {
    let total: f64 = vm_swap.iter().sum();
    vm_swap
        .iter()
        .map(|&s| {
            if total <= 0.0 {
                return (0.0, 0.0);
            }
            let c = (zswapped * s / total).min(s);
            (c, s - c)
        })
        .collect()
}

/// Splits KSM's saving (`pages_sharing`) among VMs by their merged pages.
pub fn attribute_sharing(merging: &[f64], sharing: f64, shared: f64) -> Vec<f64> {
    let all = sharing + shared;
    merging
        .iter()
        .map(|m| if all > 0.0 { m * sharing / all } else { 0.0 })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_attribution_sums_to_measured() {
        let a = attribute_swap(&[100.0, 50.0, 0.0], 90.0);
        assert_eq!(a[0], (60.0, 40.0));
        assert_eq!(a[1], (30.0, 20.0));
        assert_eq!(a[2], (0.0, 0.0));
        assert_eq!(attribute_swap(&[0.0], 10.0), vec![(0.0, 0.0)]);
        // zswap holding more than the VMs swapped (another process) never
        // makes a VM's share exceed its own swap.
        assert_eq!(attribute_swap(&[10.0], 50.0), vec![(10.0, 0.0)]);
    }

    #[test]
    fn sharing_attribution_sums_to_pages_sharing() {
        let a = attribute_sharing(&[30.0, 30.0, 0.0], 40.0, 20.0);
        assert!((a.iter().sum::<f64>() - 40.0).abs() < 1e-9);
        assert_eq!(attribute_sharing(&[5.0], 0.0, 0.0), vec![0.0]);
    }
}
