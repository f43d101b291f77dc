//! Per-VM memory cgroups, v1 or v2: created under the stub's own cgroup,
//! the QEMU moved in, pushed down and let go, all through the settings
//! journal; and what the kernel says each holds (`memory.stat`,
//! `memory.events`).
//!
//! The lever differs by flavour. Under v1 it is the hard limit
//! (`memory.limit_in_bytes`). Under v2 it is `memory.reclaim` (proactive
//! reclaim of a given amount, where the kernel has it: 5.19 on) followed by
//! `memory.high`: above `high` the kernel reclaims and throttles the cgroup
//! instead of OOM-killing it, which `memory.max` would do to a QEMU whose
//! memory cannot all be compressed or swapped. `memory.max` and
//! `memory.swap.max` are left at `max`, as created.

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

    /// The file the limit is written to: the hard limit under v1,
    /// `memory.high` (reclaim and throttle, never OOM) under v2.
    pub fn limit_file(&self) -> &'static str {
        match self {
            CgroupFs::V1(_) => "memory.limit_in_bytes",
            CgroupFs::V2(_) => "memory.high",
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

    /// Whether it is a cgroup v2 cgroup (`memory.reclaim`, `memory.events`
    /// and zswap's per-cgroup counters are v2's).
    pub fn is_v2(&self) -> bool {
        matches!(self.fs, CgroupFs::V2(_))
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

    /// Sets or lifts the limit. Under v2 the cgroup is first pushed down
    /// to it with `memory.reclaim` (where the kernel has it), then held
    /// there by `memory.high`.
    pub fn set_limit(&self, mib: Option<u64>) -> Result<()> {
        let value = match mib {
            Some(m) => {
                if self.is_v2() {
                    let over = self.usage_mib()?.saturating_sub(m);
                    if over > 0 && self.dir.join("memory.reclaim").exists() {
                        self.reclaim(over)?;
                    }
                }
                (m << 20).to_string()
            }
            None => self.fs.unlimited().to_string(),
        };
        write_file(&self.dir.join(self.fs.limit_file()), &value)
    }

    /// Asks the kernel to reclaim `mib` MiB from the cgroup now
    /// (`memory.reclaim`, cgroup v2): anonymous memory goes to zswap or
    /// swap, clean page cache is dropped. No limit stays behind. Returns
    /// whether all of it was reclaimed (the kernel answers EAGAIN when it
    /// got less).
    pub fn reclaim(&self, mib: u64) -> Result<bool> {
        let file = self.dir.join("memory.reclaim");
        if !self.is_v2() || !file.exists() {
            return Err(Error::Host(format!(
                "no memory.reclaim in {} (cgroup v2 on Linux 5.19 or later has it)",
                self.dir.display()
            )));
        }
        match std::fs::write(&file, (mib << 20).to_string()) {
            Ok(()) => Ok(true),
            // EAGAIN.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(Error::io(format!(
                "writing {} MiB to {}",
                mib,
                file.display()
            ))(e)),
        }
    }

    /// The memory charged to the cgroup now, MiB.
    pub fn usage_mib(&self) -> Result<u64> {
        let file = match self.fs {
            CgroupFs::V1(_) => "memory.usage_in_bytes",
            CgroupFs::V2(_) => "memory.current",
        };
        Ok(read_bytes(&self.dir.join(file))? >> 20)
    }

    /// What the cgroup holds, from `memory.stat` (and `memory.swap.current`
    /// under v2).
    pub fn stat(&self) -> Result<CgroupMem> {
        let text = read_trim(&self.dir.join("memory.stat"))?;
        let mut m = CgroupMem::parse(&self.fs, &text);
        m.current = self.usage_mib()? as f64;
        if self.is_v2() {
            if let Ok(b) = read_bytes(&self.dir.join("memory.swap.current")) {
                m.swap = b as f64 / MIB;
            }
        }
        Ok(m)
    }

    /// How often the kernel acted on the cgroup (`memory.events`, v2 only).
    pub fn events(&self) -> Result<CgroupEvents> {
        if !self.is_v2() {
            return Err(Error::Host("memory.events is cgroup v2's".into()));
        }
        Ok(CgroupEvents::parse(&read_trim(
            &self.dir.join("memory.events"),
        )?))
    }
}

const MIB: f64 = (1u64 << 20) as f64;

/// A byte count in a cgroup file (`max` is `u64::MAX`).
fn read_bytes(path: &Path) -> Result<u64> {
    let t = read_trim(path)?;
    if t == "max" {
        return Ok(u64::MAX);
    }
    t.parse()
        .map_err(|e| Error::Host(format!("{}: {t:?}: {e}", path.display())))
}

/// The number after `key` in a cgroup's "key value" lines.
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
}

/// What a memory cgroup holds, MiB.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct CgroupMem {
    /// Charged now (`memory.current` / `memory.usage_in_bytes`).
    pub current: f64,
    /// Anonymous memory (`anon` / `rss`).
    pub anon: f64,
    /// Page cache (`file` / `cache`).
    pub file: f64,
    /// zswap's compressed copies of the cgroup's pages (`zswap`, v2).
    pub zswap: f64,
    /// The pages those copies hold (`zswapped`, v2).
    pub zswapped: f64,
    /// Swapped out, zswap included (`memory.swap.current` / `swap`).
    pub swap: f64,
}

impl CgroupMem {
    /// Parses `memory.stat` of a cgroup of flavour `fs` (byte counts);
    /// `current` is not in it and stays 0.
    pub fn parse(fs: &CgroupFs, text: &str) -> Self {
        let get = |key: &str| keyed(text, key).map_or(0.0, |b| b as f64 / MIB);
        match fs {
            CgroupFs::V1(_) => CgroupMem {
                anon: get("rss"),
                file: get("cache"),
                swap: get("swap"),
                ..Default::default()
            },
            CgroupFs::V2(_) => CgroupMem {
                anon: get("anon"),
                file: get("file"),
                zswap: get("zswap"),
                zswapped: get("zswapped"),
                ..Default::default()
            },
        }
    }
}

/// `memory.events` of a v2 cgroup: how often each thing happened.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct CgroupEvents {
    /// Reclaimed while under `memory.low`.
    pub low: u64,
    /// Throttled and reclaimed for going over `memory.high`.
    pub high: u64,
    /// Reached `memory.max`.
    pub max: u64,
    /// Reached `memory.max` and reclaim failed.
    pub oom: u64,
    /// Processes the OOM killer killed in it.
    pub oom_kill: u64,
}

impl CgroupEvents {
    /// Parses `memory.events`.
    pub fn parse(text: &str) -> Self {
        let get = |key: &str| keyed(text, key).unwrap_or(0);
        CgroupEvents {
            low: get("low"),
            high: get("high"),
            max: get("max"),
            oom: get("oom"),
            oom_kill: get("oom_kill"),
        }
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
    fn memory_stat_of_both_flavours() {
        let v2 = "anon 104857600\nfile 2097152\nkernel 1\nzswap 10485760\nzswapped 31457280\nzswpout 7680\n";
        let m = CgroupMem::parse(&CgroupFs::V2(PathBuf::new()), v2);
        assert_eq!(
            (m.anon, m.file, m.zswap, m.zswapped, m.swap),
            (100.0, 2.0, 10.0, 30.0, 0.0)
        );
        let v1 = "cache 1048576\nrss 5242880\nswap 3145728\ntotal_rss 9\n";
        let m = CgroupMem::parse(&CgroupFs::V1(PathBuf::new()), v1);
        assert_eq!((m.anon, m.file, m.swap, m.zswapped), (5.0, 1.0, 3.0, 0.0));
    }

    #[test]
    fn memory_events_and_byte_files() {
        let e = CgroupEvents::parse("low 0\nhigh 17\nmax 2\noom 1\noom_kill 1\noom_group_kill 0\n");
        assert_eq!((e.low, e.high, e.max, e.oom, e.oom_kill), (0, 17, 2, 1, 1));
        assert_eq!(CgroupEvents::parse(""), CgroupEvents::default());
        let dir = std::env::temp_dir().join(format!("bh-bytes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a"), "max\n").unwrap();
        std::fs::write(dir.join("b"), "1048576\n").unwrap();
        std::fs::write(dir.join("c"), "lots\n").unwrap();
        assert_eq!(read_bytes(&dir.join("a")).unwrap(), u64::MAX);
        assert_eq!(read_bytes(&dir.join("b")).unwrap(), 1 << 20);
        assert!(read_bytes(&dir.join("c")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn v2_limit_reclaims_then_sets_high_and_v1_reclaim_says_why_not() {
        let dir = std::env::temp_dir().join(format!("bh-cg2-limit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("memory.current"), (300u64 << 20).to_string()).unwrap();
        std::fs::write(dir.join("memory.reclaim"), "").unwrap();
        std::fs::write(dir.join("memory.high"), "max").unwrap();
        let cg = VmCgroup {
            dir: dir.clone(),
            fs: CgroupFs::V2(PathBuf::new()),
        };
        cg.set_limit(Some(200)).unwrap();
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(read("memory.reclaim"), (100u64 << 20).to_string());
        assert_eq!(read("memory.high"), (200u64 << 20).to_string());
        cg.set_limit(None).unwrap();
        assert_eq!(read("memory.high"), "max");
        let v1 = VmCgroup {
            dir: dir.clone(),
            fs: CgroupFs::V1(PathBuf::new()),
        };
        assert!(v1
            .reclaim(10)
            .unwrap_err()
            .to_string()
            .contains("cgroup v2"));
        let _ = std::fs::remove_dir_all(&dir);
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
