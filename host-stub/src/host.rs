//! The host's own reclamation mechanisms: KSM, zswap, a swap file and
//! per-VM memory cgroups; and what they report.
//!
//! Every setting the stub changes is recorded in [`HostSettings`] before it
//! is changed, and put back when it is dropped — at the end of a run, after
//! an error, Ctrl-C (the run loop ends normally) or a panic (unwinding).
//! The record is also written to a journal file, so `balloon-host restore`
//! can put things back after the stub was killed with SIGKILL.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// KSM's sysfs directory.
pub const KSM: &str = "/sys/kernel/mm/ksm";
/// zswap's module parameters.
pub const ZSWAP: &str = "/sys/module/zswap/parameters";
/// Where the journal of changed settings lives while a run is active.
pub const JOURNAL: &str = "/run/balloon-host/journal.json";

/// One change to undo.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// A sysfs/cgroup file and its old content.
    File {
        /// The file.
        path: PathBuf,
        /// Its content before.
        old: String,
    },
    /// KSM's `run` was changed: unmerge (`run=2`), then write the old value.
    KsmRun {
        /// The `run` file.
        path: PathBuf,
        /// The old value.
        old: String,
    },
    /// A swap file we created and turned on.
    Swap {
        /// The file.
        path: PathBuf,
    },
    /// A running process we moved into one of our cgroups (attach): it
    /// goes back to the cgroup it came from (a libvirt domain's own, say),
    /// not to ours, where a service manager stopping us would kill it.
    Joined {
        /// The process.
        pid: u32,
        /// The `cgroup.procs` of the cgroup it was in.
        back_to: PathBuf,
    },
    /// A cgroup directory we created (removed after its processes left).
    Cgroup {
        /// The directory.
        path: PathBuf,
        /// Where to move processes still in it.
        parent_procs: PathBuf,
    },
}

/// Reads a sysfs file, trimmed.
pub fn read_trim(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(Error::io(format!("reading {}", path.display())))
}

fn write_file(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(Error::io(format!(
        "writing {value:?} to {}",
        path.display()
    )))
}

/// The host settings a run changed, restored on drop.
pub struct HostSettings {
    changes: Vec<Change>,
    journal: Option<PathBuf>,
}

impl HostSettings {
    /// Starts an empty record. With a journal path, the record is kept
    /// there; a journal left by an earlier run that was killed is an error
    /// that says how to restore it.
    pub fn new(journal: Option<&Path>) -> Result<Self> {
        if let Some(j) = journal {
            if j.exists() {
                return Err(Error::Host(format!(
                    "{} exists: an earlier balloon-host run did not put the host back \
                     (killed?). Run `balloon-host restore` first.",
                    j.display()
                )));
            }
        }
        Ok(Self {
            changes: Vec::new(),
            journal: journal.map(Path::to_path_buf),
        })
    }

    fn record(&mut self, change: Change) -> Result<()> {
        self.changes.push(change);
        self.save()
    }

    fn save(&self) -> Result<()> {
        let Some(j) = &self.journal else {
            return Ok(());
        };
        if self.changes.is_empty() {
            return match std::fs::remove_file(j) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(Error::io(format!("removing {}", j.display()))(e))
                }
                _ => Ok(()),
            };
        }
        if let Some(dir) = j.parent() {
            std::fs::create_dir_all(dir)
                .map_err(Error::io(format!("creating {}", dir.display())))?;
        }
        let text = serde_json::to_string_pretty(&self.changes)
            .map_err(|e| Error::Host(format!("journal: {e}")))?;
        write_file(j, &text)
    }

    /// Sets a file, remembering its old content (once per file).
    pub fn set(&mut self, path: &Path, value: &str) -> Result<()> {
        let seen = self
            .changes
            .iter()
            .any(|c| matches!(c, Change::File { path: p, .. } if p == path));
        if !seen {
            let old = read_trim(path)?;
            if old == value {
                return Ok(());
            }
            self.record(Change::File {
                path: path.to_path_buf(),
                old,
            })?;
        }
        write_file(path, value)
    }

    /// Sets KSM's `run` (in KSM directory `ksm`), remembering the old value.
    pub fn ksm_run(&mut self, ksm: &Path, value: bool) -> Result<()> {
        let path = ksm.join("run");
        if !self
            .changes
            .iter()
            .any(|c| matches!(c, Change::KsmRun { .. }))
        {
            let old = read_trim(&path)?;
            self.record(Change::KsmRun {
                path: path.clone(),
                old,
            })?;
        }
        write_file(&path, if value { "1" } else { "0" })
    }

    /// Creates a swap file of `mib` MiB at `path` and turns it on.
    pub fn swap_file(&mut self, path: &Path, mib: u64) -> Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(path)
            .map_err(Error::io(format!("creating {}", path.display())))?;
        // Written, not fallocated: swapon refuses files with holes on some
        // file systems.
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..mib {
            f.write_all(&chunk)
                .map_err(Error::io(format!("writing {}", path.display())))?;
        }
        f.sync_all()
            .map_err(Error::io(format!("syncing {}", path.display())))?;
        drop(f);
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(Error::io(format!("chmod {}", path.display())))?;
        // Recorded before swapon, so a failure still removes the file.
        self.record(Change::Swap {
            path: path.to_path_buf(),
        })?;
        run_tool("mkswap", &[path.as_os_str()])?;
        run_tool("swapon", &[path.as_os_str()])
    }

    /// Moves the running process `pid` into the cgroup whose `cgroup.procs`
    /// is `procs`, recording the cgroup it leaves (of the same flavour as
    /// `fs`) so that restoring puts it back there.
    pub fn join(&mut self, fs: &CgroupFs, procs: &Path, pid: u32) -> Result<()> {
        let text = read_trim(Path::new(&format!("/proc/{pid}/cgroup")))?;
        let root = Path::new("/sys/fs/cgroup");
        let from = match (fs, CgroupFs::from_proc(&text, root)?) {
            (CgroupFs::V1(_), CgroupFs::V1(d)) | (CgroupFs::V2(_), CgroupFs::V2(d)) => d,
            _ => {
                return Err(Error::Host(format!(
                    "QEMU {pid} is in another cgroup hierarchy"
                )))
            }
        };
        self.record(Change::Joined {
            pid,
            back_to: from.join("cgroup.procs"),
        })?;
        write_file(procs, &pid.to_string())
    }

    /// Creates the cgroup directory `path` under a parent whose
    /// `cgroup.procs` is `parent_procs`.
    pub fn cgroup(&mut self, path: &Path, parent_procs: &Path) -> Result<()> {
        std::fs::create_dir(path)
            .map_err(Error::io(format!("creating cgroup {}", path.display())))?;
        self.record(Change::Cgroup {
            path: path.to_path_buf(),
            parent_procs: parent_procs.to_path_buf(),
        })
    }

    /// What was changed, oldest first.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// Puts everything back, newest first; returns what could not be
    /// restored (also logged). The record is emptied either way.
    pub fn restore(&mut self) -> Vec<String> {
        let mut failed = Vec::new();
        while let Some(c) = self.changes.pop() {
            if let Err(e) = undo(&c) {
                tracing::error!("could not restore {c:?}: {e}");
                failed.push(e.to_string());
            }
        }
        if let Err(e) = self.save() {
            failed.push(e.to_string());
        }
        failed
    }

    /// Restores from a journal left by a killed run.
    pub fn restore_journal(journal: &Path) -> Result<usize> {
        let text = std::fs::read_to_string(journal)
            .map_err(Error::io(format!("reading {}", journal.display())))?;
        let changes: Vec<Change> = serde_json::from_str(&text)
            .map_err(|e| Error::Invalid(format!("{}: {e}", journal.display())))?;
        let n = changes.len();
        let mut s = HostSettings {
            changes,
            journal: Some(journal.to_path_buf()),
        };
        let failed = s.restore();
        if failed.is_empty() {
            Ok(n)
        } else {
            Err(Error::Host(failed.join("; ")))
        }
    }
}

impl Drop for HostSettings {
    fn drop(&mut self) {
        self.restore();
    }
}

fn run_tool(tool: &str, args: &[&std::ffi::OsStr]) -> Result<()> {
    let out = std::process::Command::new(tool)
        .args(args)
        .output()
        .map_err(Error::io(format!("running {tool}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Host(format!(
            "{tool} {:?}: {}",
            args,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn undo(c: &Change) -> Result<()> {
    match c {
        Change::File { path, old } => write_file(path, old),
        Change::KsmRun { path, old } => {
            if old != "1" {
                // Unmerge every merged page before KSM goes back to its old
                // state (blocks until done).
                write_file(path, "2")?;
            }
            write_file(path, old)
        }
        Change::Swap { path } => {
            let active = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
            let name = path.display().to_string();
            if active
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name.as_str()))
            {
                run_tool("swapoff", &[path.as_os_str()])?;
            }
            std::fs::remove_file(path).map_err(Error::io(format!("removing {}", path.display())))
        }
        Change::Joined { pid, back_to } => match write_file(back_to, &pid.to_string()) {
            // Gone in the meantime: nothing to move.
            Err(_) if !Path::new(&format!("/proc/{pid}")).exists() => Ok(()),
            r => r,
        },
        Change::Cgroup { path, parent_procs } => {
            let procs = path.join("cgroup.procs");
            if let Ok(text) = std::fs::read_to_string(&procs) {
                for pid in text.split_whitespace() {
                    // Processes still inside (an attached QEMU) go back.
                    let _ = write_file(parent_procs, pid);
                }
            }
            // rmdir fails while the last process is still exiting.
            let mut last = None;
            for _ in 0..50 {
                match std::fs::remove_dir(path) {
                    Ok(()) => return Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => last = Some(e),
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(Error::io(format!("removing cgroup {}", path.display()))(
                last.unwrap_or_else(|| std::io::Error::other("busy")),
            ))
        }
    }
}

/// The memory cgroup flavour of the host.
#[derive(Clone, Debug, PartialEq)]
pub enum CgroupFs {
    /// cgroup v1: `/sys/fs/cgroup/memory/<our cgroup>`.
    V1(PathBuf),
    /// cgroup v2: `/sys/fs/cgroup/<our cgroup>`.
    V2(PathBuf),
}

impl CgroupFs {
    /// Finds the memory cgroup this process is in, from /proc/self/cgroup:
    /// children are created under it, never at the root.
    pub fn detect() -> Result<Self> {
        let text = read_trim(Path::new("/proc/self/cgroup"))?;
        Self::from_proc(&text, Path::new("/sys/fs/cgroup"))
    }

    /// [`CgroupFs::detect`] from the file's text and the cgroup mount.
    pub fn from_proc(text: &str, root: &Path) -> Result<Self> {
        for line in text.lines() {
            let mut f = line.splitn(3, ':');
            let (_, ctrls, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
            let rel = path.trim_start_matches('/');
            if ctrls.split(',').any(|c| c == "memory") {
                return Ok(CgroupFs::V1(root.join("memory").join(rel)));
            }
        }
        for line in text.lines() {
            if let Some(path) = line.strip_prefix("0::") {
                let dir = root.join(path.trim_start_matches('/'));
                let ctl =
                    std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
                if ctl.split_whitespace().any(|c| c == "memory") {
                    return Ok(CgroupFs::V2(dir));
                }
            }
        }
        Err(Error::Host(
            "no memory cgroup controller on this host".into(),
        ))
    }

    /// Our own cgroup directory.
    pub fn own(&self) -> &Path {
        match self {
            CgroupFs::V1(p) | CgroupFs::V2(p) => p,
        }
    }

    /// The limit file name.
    pub fn limit_file(&self) -> &'static str {
        match self {
            CgroupFs::V1(_) => "memory.limit_in_bytes",
            CgroupFs::V2(_) => "memory.max",
        }
    }

    /// The "no limit" value.
    pub fn unlimited(&self) -> &'static str {
        match self {
            CgroupFs::V1(_) => "-1",
            CgroupFs::V2(_) => "max",
        }
    }
}

/// One VM's memory cgroup.
#[derive(Clone, Debug)]
pub struct VmCgroup {
    /// Its directory.
    pub dir: PathBuf,
    fs: CgroupFs,
}

impl VmCgroup {
    /// Creates `<own>/balloon-host-<pid>/<name>` (recorded for removal).
    pub fn create(settings: &mut HostSettings, fs: &CgroupFs, name: &str) -> Result<Self> {
        let own = fs.own().to_path_buf();
        let base = own.join(format!("balloon-host-{}", std::process::id()));
        if !base.exists() {
            settings.cgroup(&base, &own.join("cgroup.procs"))?;
        }
        let dir = base.join(name);
        settings.cgroup(&dir, &own.join("cgroup.procs"))?;
        Ok(Self {
            dir,
            fs: fs.clone(),
        })
    }

    /// `cgroup.procs`: QEMU writes 0 into it before exec to start inside.
    pub fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// Moves a running process in (attach). Under cgroup v1 its pages
    /// are charged here only if `memory.move_charge_at_immigrate` works
    /// (recent kernels refuse it): the limit then pushes out only what the
    /// process touches from now on, which is said once.
    pub fn add(&self, settings: &mut HostSettings, pid: u32) -> Result<()> {
        if let CgroupFs::V1(_) = self.fs {
            if std::fs::write(self.dir.join("memory.move_charge_at_immigrate"), "3").is_err() {
                eprintln!(
                    "balloon-host: this kernel does not move memory charges between cgroups; \
                     the compression tier acts only on memory QEMU {pid} touches from now on"
                );
            }
        }
        settings.join(&self.fs, &self.procs(), pid)
    }

    /// Sets or lifts the limit.
    pub fn set_limit(&self, mib: Option<u64>) -> Result<()> {
        let value = match mib {
            Some(m) => (m << 20).to_string(),
            None => self.fs.unlimited().to_string(),
        };
        write_file(&self.dir.join(self.fs.limit_file()), &value)
    }
}

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

fn page_mib() -> f64 {
    4096.0 / (1 << 20) as f64
}

fn read_num(path: &Path) -> Result<u64> {
    let t = read_trim(path)?;
    t.parse()
        .map_err(|e| Error::Host(format!("{}: {t:?}: {e}", path.display())))
}

/// `what` is usable if its control `file` exists and we may write it.
fn controllable(file: &Path, what: &str) -> Result<()> {
    if !file.exists() {
        return Err(Error::Host(format!(
            "no {what} on this host ({} does not exist)",
            file.display()
        )));
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .map(drop)
        .map_err(|e| Error::Host(format!("cannot control {what} ({}): {e}", file.display())))
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
    fn cgroup_v1_and_v2_paths() {
        let v1 = "5:cpu:/x\n4:memory:/process_api/abc\n0::/y\n";
        assert_eq!(
            CgroupFs::from_proc(v1, Path::new("/sys/fs/cgroup")).unwrap(),
            CgroupFs::V1(PathBuf::from("/sys/fs/cgroup/memory/process_api/abc"))
        );
        assert!(CgroupFs::from_proc("1:cpu:/x\n", Path::new("/nonexistent")).is_err());
    }

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

    #[test]
    fn an_attached_process_goes_back_to_its_own_cgroup() {
        let dir = std::env::temp_dir().join(format!("balloon-host-joined-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let back = dir.join("cgroup.procs");
        std::fs::write(&back, "").unwrap();
        let mut s = HostSettings::new(None).unwrap();
        let me = std::process::id();
        s.record(Change::Joined {
            pid: me,
            back_to: back.clone(),
        })
        .unwrap();
        // A process gone by then is not a failure.
        s.record(Change::Joined {
            pid: u32::MAX,
            back_to: dir.join("missing/cgroup.procs"),
        })
        .unwrap();
        assert_eq!(s.restore(), Vec::<String>::new());
        assert_eq!(std::fs::read_to_string(&back).unwrap(), me.to_string());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn settings_restore_files_and_journal() {
        let dir = std::env::temp_dir().join(format!("bh-settings-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("knob");
        std::fs::write(&f, "7\n").unwrap();
        let journal = dir.join("journal.json");
        {
            let mut s = HostSettings::new(Some(&journal)).unwrap();
            s.set(&f, "9").unwrap();
            s.set(&f, "11").unwrap();
            assert_eq!(std::fs::read_to_string(&f).unwrap(), "11");
            assert!(journal.exists());
            // A second run refuses while the journal is there.
            assert!(HostSettings::new(Some(&journal)).is_err());
        }
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "7");
        assert!(!journal.exists());
        // A journal left by a killed run restores the old value.
        std::fs::write(&f, "99").unwrap();
        let changes = vec![Change::File {
            path: f.clone(),
            old: "7".into(),
        }];
        std::fs::write(&journal, serde_json::to_string(&changes).unwrap()).unwrap();
        assert_eq!(HostSettings::restore_journal(&journal).unwrap(), 1);
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "7");
        assert!(!journal.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
