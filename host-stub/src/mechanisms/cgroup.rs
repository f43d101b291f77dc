//! Per-VM memory cgroups, v1 or v2: created under the stub's own cgroup,
//! the QEMU moved in, a memory limit set and lifted, all through the
//! settings journal.

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
}
