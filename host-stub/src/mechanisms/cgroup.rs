//! Per-VM memory cgroups, v1 or v2: created under the stub's own cgroup,
//! the QEMU moved in, a memory limit set and lifted, all through the
//! settings journal.

#[cfg(test)]
use super::settings::Change;
use super::settings::HostSettings;
use super::{read_trim, write_file};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

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

    /// Makes the cgroups of this run possible: under cgroup v2 the memory
    /// controller must be enabled in our cgroup's `cgroup.subtree_control`
    /// for its children to have `memory.max`, and v2 allows that only in a
    /// cgroup that holds no process ("no internal processes") — so this
    /// process first moves into a leaf of its own (`balloon-host-PID.self`),
    /// then `+memory` is written for our cgroup's children and for the
    /// run's own (`balloon-host-PID`), which it creates. Every step is in
    /// the journal and undone in reverse. A cgroup that holds other
    /// processes (a login shell's scope) or was not delegated the memory
    /// controller is an error saying so. Nothing to do under v1.
    pub fn prepare(&self, settings: &mut HostSettings) -> Result<()> {
        let CgroupFs::V2(own) = self else {
            return Ok(());
        };
        let has = |file: &str| {
            read_trim(&own.join(file)).map(|t| t.split_whitespace().any(|c| c == "memory"))
        };
        if !has("cgroup.controllers")? {
            return Err(Error::Host(format!(
                "cgroup v2: the memory controller is not available in {} (it is not \
                 delegated there; a systemd service gets it with Delegate=yes, as in \
                 contrib/balloon-host.service)",
                own.display()
            )));
        }
        let pid = std::process::id();
        let own_procs = own.join("cgroup.procs");
        if !has("cgroup.subtree_control")? {
            let leaf = own.join(format!("balloon-host-{pid}.self"));
            settings.cgroup(&leaf, &own_procs)?;
            settings.moved(pid, &leaf.join("cgroup.procs"), &own_procs)?;
            settings.enable_controller(own, "memory").map_err(|e| {
                Error::Host(format!(
                    "cgroup v2: cannot enable the memory controller for the children of {}: \
                     {e}; it must hold no process but balloon-host's (run it in a cgroup of \
                     its own, e.g. as contrib/balloon-host.service)",
                    own.display()
                ))
            })?;
        }
        let base = run_base(own);
        settings.cgroup(&base, &own_procs)?;
        settings.enable_controller(&base, "memory")
    }

    /// The "no limit" value.
    pub fn unlimited(&self) -> &'static str {
        match self {
            CgroupFs::V1(_) => "-1",
            CgroupFs::V2(_) => "max",
        }
    }
}

/// The cgroup of this run's VM cgroups, under ours.
fn run_base(own: &Path) -> PathBuf {
    own.join(format!("balloon-host-{}", std::process::id()))
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
        let base = run_base(&own);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A cgroup v2 directory as the kernel presents it (files only).
    fn fake_cgroup(dir: &Path, controllers: &str, subtree: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("cgroup.controllers"), controllers).unwrap();
        std::fs::write(dir.join("cgroup.subtree_control"), subtree).unwrap();
        std::fs::write(dir.join("cgroup.procs"), "").unwrap();
    }

    #[test]
    fn v2_moves_itself_to_a_leaf_and_enables_memory_in_that_order() {
        let own = std::env::temp_dir().join(format!("bh-cg2-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&own);
        fake_cgroup(&own, "cpu io memory pids", "");
        let pid = std::process::id();
        let base = run_base(&own);
        let leaf = own.join(format!("balloon-host-{pid}.self"));
        let mut s = HostSettings::new(None).unwrap();
        CgroupFs::V2(own.clone()).prepare(&mut s).unwrap();
        let procs = |d: &Path| d.join("cgroup.procs");
        let ctl = |d: &Path| d.join("cgroup.subtree_control");
        // Undone newest first: memory off for the run's cgroup, the run's
        // cgroup gone, memory off for ours, this process back, the leaf gone.
        assert_eq!(
            s.changes(),
            [
                Change::Cgroup {
                    path: leaf.clone(),
                    parent_procs: procs(&own)
                },
                Change::Joined {
                    pid,
                    back_to: procs(&own)
                },
                Change::Controller {
                    subtree_control: ctl(&own),
                    controller: "memory".into()
                },
                Change::Cgroup {
                    path: base.clone(),
                    parent_procs: procs(&own)
                },
                Change::Controller {
                    subtree_control: ctl(&base),
                    controller: "memory".into()
                },
            ]
        );
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(procs(&leaf)), pid.to_string());
        assert_eq!(read(ctl(&own)), "+memory");
        assert_eq!(read(ctl(&base)), "+memory");
        // The fake tree has files the kernel's cgroups do not: not restored
        // here (the undo of each change is tested in settings.rs).
        s.forget();
        let _ = std::fs::remove_dir_all(&own);
    }

    #[test]
    fn v2_with_memory_already_enabled_creates_only_the_runs_cgroup() {
        let own = std::env::temp_dir().join(format!("bh-cg2-on-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&own);
        fake_cgroup(&own, "memory", "memory");
        let mut s = HostSettings::new(None).unwrap();
        CgroupFs::V2(own.clone()).prepare(&mut s).unwrap();
        assert!(
            matches!(
                s.changes(),
                [Change::Cgroup { .. }, Change::Controller { .. }]
            ),
            "{:?}",
            s.changes()
        );
        s.forget();
        let _ = std::fs::remove_dir_all(&own);
    }

    #[test]
    fn v2_without_the_memory_controller_says_so() {
        let own = std::env::temp_dir().join(format!("bh-cg2-none-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&own);
        fake_cgroup(&own, "cpu io pids", "");
        let mut s = HostSettings::new(None).unwrap();
        let e = CgroupFs::V2(own.clone())
            .prepare(&mut s)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not available") && e.contains("Delegate=yes"),
            "{e}"
        );
        assert!(s.changes().is_empty());
        let _ = std::fs::remove_dir_all(&own);
    }

    #[test]
    fn cgroup_v1_and_v2_paths() {
        let v1 = "5:cpu:/x\n4:memory:/process_api/abc\n0::/y\n";
        assert_eq!(
            CgroupFs::from_proc(v1, Path::new("/sys/fs/cgroup")).unwrap(),
            CgroupFs::V1(PathBuf::from("/sys/fs/cgroup/memory/process_api/abc"))
        );
        assert!(CgroupFs::from_proc("1:cpu:/x\n", Path::new("/nonexistent")).is_err());
    }
}
