//! A running QEMU found by its QMP socket.

use super::{pid_alive, qmp_balloon, Backend, BalloonNow};
use crate::{Error, Result};
use qemu_ctl::guest::BALLOON_ID;
use qemu_ctl::qmp::Qmp;
use qemu_ctl::MIB;
use std::path::Path;
use std::time::Duration;

/// A QEMU this process did not launch, driven through its QMP socket (its
/// balloon device `id=balloon0`).
pub struct QmpSocket {
    qmp: Box<Qmp>,
    pid: u32,
}

impl QmpSocket {
    /// Connects to the QMP socket `sock` and finds its QEMU's pid.
    pub fn connect(sock: &Path) -> Result<Self> {
        Ok(Self {
            pid: qemu_pid_for_socket(sock)?,
            qmp: Box::new(Qmp::connect(sock, Duration::from_secs(5), BALLOON_ID)?),
        })
    }
}

impl Backend for QmpSocket {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn alive(&mut self) -> Result<()> {
        pid_alive(self.pid)
    }

    fn set_size_mib(&mut self, mib: u64) -> Result<()> {
        Ok(self.qmp.set_guest_size(mib * MIB)?)
    }

    fn set_stats_interval(&mut self, secs: u32) -> Result<()> {
        Ok(self.qmp.set_stats_interval(secs)?)
    }

    fn balloon(&mut self) -> Result<BalloonNow> {
        qmp_balloon(&mut self.qmp)
    }
}

/// The pid of the QEMU whose command line names `socket`.
pub fn qemu_pid_for_socket(socket: &Path) -> Result<u32> {
    let want = socket.display().to_string();
    let dir = std::fs::read_dir("/proc").map_err(Error::io("reading /proc"))?;
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd);
            if cmd.contains("qemu-system") && cmd.split('\0').any(|a| a.contains(&want)) {
                return Ok(pid);
            }
        }
    }
    Err(Error::Invalid(format!(
        "no QEMU process has {want} on its command line"
    )))
}
