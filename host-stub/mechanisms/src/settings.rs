//! The settings journal: every host setting a run changes is recorded in
//! [`HostSettings`] before it is changed and put back when it is dropped,
//! and written to a journal file that `balloon-host restore` replays after
//! a SIGKILL.

use super::cgroup::CgroupFs;
use super::{read_trim, write_file};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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
    /// A cgroup v2 controller we enabled for a cgroup's children
    /// (`+memory` in its `cgroup.subtree_control`): disabled again.
    Controller {
        /// The `cgroup.subtree_control` file.
        subtree_control: PathBuf,
        /// The controller, e.g. `memory`.
        controller: String,
    },
    /// A cgroup directory we created (removed after its processes left).
    Cgroup {
        /// The directory.
        path: PathBuf,
        /// Where to move processes still in it.
        parent_procs: PathBuf,
    },
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

    /// Moves process `pid` into the cgroup whose `cgroup.procs` is `to`,
    /// recording that it goes back to `back_to`.
    pub fn moved(&mut self, pid: u32, to: &Path, back_to: &Path) -> Result<()> {
        self.record(Change::Joined {
            pid,
            back_to: back_to.to_path_buf(),
        })?;
        write_file(to, &pid.to_string())
    }

    /// Enables cgroup v2 controller `controller` for the children of the
    /// cgroup `dir`, unless it is already.
    pub fn enable_controller(&mut self, dir: &Path, controller: &str) -> Result<()> {
        let file = dir.join("cgroup.subtree_control");
        // A cgroup always has the file; if it cannot be read, the write
        // below says why.
        if std::fs::read_to_string(&file)
            .unwrap_or_default()
            .split_whitespace()
            .any(|c| c == controller)
        {
            return Ok(());
        }
        self.record(Change::Controller {
            subtree_control: file.clone(),
            controller: controller.to_string(),
        })?;
        write_file(&file, &format!("+{controller}"))
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

    /// Forgets every change without undoing it (tests on fake trees).
    #[cfg(test)]
    pub(crate) fn forget(&mut self) {
        self.changes.clear();
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
        Change::Controller {
            subtree_control,
            controller,
        } => write_file(subtree_control, &format!("-{controller}")),
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn an_enabled_controller_is_disabled_again_and_one_already_on_is_left() {
        let dir = std::env::temp_dir().join(format!("bh-ctl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (a, b) = (dir.join("a"), dir.join("b"));
        for (d, sub) in [(&a, ""), (&b, "cpu memory")] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("cgroup.subtree_control"), sub).unwrap();
        }
        let mut s = HostSettings::new(None).unwrap();
        s.enable_controller(&a, "memory").unwrap();
        s.enable_controller(&b, "memory").unwrap();
        assert_eq!(s.changes().len(), 1, "{:?}", s.changes());
        let read = |d: &Path| std::fs::read_to_string(d.join("cgroup.subtree_control")).unwrap();
        assert_eq!(read(&a), "+memory");
        assert_eq!(s.restore(), Vec::<String>::new());
        assert_eq!(read(&a), "-memory");
        assert_eq!(read(&b), "cpu memory");
        std::fs::remove_dir_all(&dir).unwrap();
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
