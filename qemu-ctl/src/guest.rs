//! Booting and driving one QEMU guest.

use crate::agent::{Agent, Output};
use crate::logscan;
use crate::procfs::{MemInfo, VmStat};
use crate::qmp::Qmp;
use crate::{initramfs, Artifacts, Driver, Error, Result};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The QOM id of the balloon device in every guest.
pub const BALLOON_ID: &str = "balloon0";

/// How long a guest may take to boot to its agent (TCG on a busy 2-core host).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// How long QEMU may take to open its QMP and agent sockets: moments
/// normally. (It was 20 s; a reliability run lost one guest at start, both
/// logs empty, while the 2-core host was compiling: the cause was not
/// established, and a longer limit costs nothing when all is well.)
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Default time a guest command may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// QEMU's accelerator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Software emulation (multi-threaded TCG): the default, because KVM
    /// guests hang on the machines this project is developed on.
    Tcg,
    /// KVM, only when asked for with `BALLOON_RS_ACCEL=kvm`.
    Kvm,
    /// Single-threaded TCG whose guest clock counts instructions
    /// (`-icount shift=N`: 2^N ns each), so that guest time does not
    /// depend on the host's speed: for a test of a guest-side timeout.
    TcgIcount(u8),
}

impl Accel {
    /// `BALLOON_RS_ACCEL` (`tcg` or `kvm`), default TCG.
    pub fn from_env() -> Result<Self> {
        match std::env::var("BALLOON_RS_ACCEL").as_deref() {
            Err(_) | Ok("") | Ok("tcg") => Ok(Accel::Tcg),
            Ok("kvm") => Ok(Accel::Kvm),
            Ok(other) => Err(Error::Check(format!(
                "BALLOON_RS_ACCEL={other}: expected tcg or kvm"
            ))),
        }
    }

    fn qemu_arg(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg,thread=multi",
            Accel::Kvm => "kvm",
            Accel::TcgIcount(_) => "tcg,thread=single",
        }
    }
}

/// What to boot.
#[derive(Clone, Debug)]
pub struct GuestConfig {
    /// A short name for logs and directories.
    pub name: String,
    /// Guest RAM in MiB.
    pub mem_mib: u64,
    /// vCPUs.
    pub cpus: u32,
    /// Extra `virtio-balloon-pci` properties, e.g. `deflate-on-oom=on`.
    pub balloon_props: Vec<String>,
    /// Extra QEMU arguments (e.g. an iothread object).
    pub extra_qemu_args: Vec<String>,
    /// Extra kernel command line.
    pub kernel_args: String,
    /// Run-wide extra kernel arguments, from `BALLOON_RS_APPEND`: the debug
    /// targets lengthen the RCU stall timeout (a KASAN kernel under TCG is
    /// slow, not stalled) and route PCI interrupts without ACPI
    /// (`acpi=noirq`: the debug kernel interprets the i440fx `_PRT` loop
    /// too slowly for ACPICA's 30 s timeout). A test may change them.
    pub run_args: String,
    /// QEMU machine type (`-machine`), or QEMU's default (i440fx `pc`);
    /// `BALLOON_RS_MACHINE` sets it for a whole run.
    pub machine: Option<String>,
    /// What to boot; `None`: [`Artifacts::locate`] (the environment's or
    /// the repository's build).
    pub artifacts: Option<Artifacts>,
    /// Accelerator.
    pub accel: Accel,
    /// A driver probe failure in the console is expected (fault injection):
    /// only the interrupt-routing and ACPI markers fail the guest at once.
    pub expect_probe_failure: bool,
    /// A cgroup's `cgroup.procs`: QEMU moves itself in before it execs, so
    /// every page it touches is charged there (the host stub's memory
    /// limits).
    pub cgroup_procs: Option<PathBuf>,
}

impl GuestConfig {
    /// A 2-vCPU guest with a plain balloon device and 512 MiB of RAM, or
    /// `BALLOON_RS_GUEST_MIB` (the debug kernel's KASAN shadow and lockdep
    /// need more: `make test-debug` uses 1024).
    pub fn new(name: &str) -> Result<Self> {
        let mem_mib = match std::env::var("BALLOON_RS_GUEST_MIB") {
            Ok(v) => v
                .parse()
                .map_err(|e| Error::Check(format!("BALLOON_RS_GUEST_MIB={v}: {e}")))?,
            Err(_) => 512,
        };
        Ok(Self {
            name: name.to_string(),
            mem_mib,
            cpus: 2,
            balloon_props: Vec::new(),
            extra_qemu_args: Vec::new(),
            kernel_args: String::new(),
            run_args: std::env::var("BALLOON_RS_APPEND").unwrap_or_default(),
            machine: std::env::var("BALLOON_RS_MACHINE")
                .ok()
                .filter(|m| !m.is_empty()),
            artifacts: None,
            accel: Accel::from_env()?,
            expect_probe_failure: false,
            cgroup_procs: None,
        })
    }

    /// The QEMU command line (without the program) for files in `dir`.
    pub fn qemu_args(&self, artifacts: &Artifacts, dir: &Path, interactive: bool) -> Vec<String> {
        let p = |f: &str| dir.join(f).display().to_string();
        let mut balloon = format!("virtio-balloon-pci,id={BALLOON_ID}");
        for prop in &self.balloon_props {
            balloon.push(',');
            balloon.push_str(prop);
        }
        let mut append = String::from("console=ttyS0 panic=-1");
        if interactive {
            append.push_str(" balloon_rs.interactive");
        }
        if !self.kernel_args.is_empty() {
            append.push(' ');
            append.push_str(&self.kernel_args);
        }
        if !self.run_args.trim().is_empty() {
            append.push(' ');
            append.push_str(self.run_args.trim());
        }
        let console = if interactive {
            "mon:stdio".to_string()
        } else {
            format!("file:{}", p("console.log"))
        };
        let mut args: Vec<String> = [
            "-name",
            &self.name,
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
            "-accel",
            self.accel.qemu_arg(),
            "-smp",
            &self.cpus.to_string(),
            "-m",
            &format!("{}M", self.mem_mib),
            "-kernel",
            &artifacts.kernel.display().to_string(),
            "-initrd",
            &p("initramfs.cpio"),
            "-append",
            &append,
            "-serial",
            &console,
            "-chardev",
            &format!(
                "socket,id=agent,path={},server=on,wait=off",
                p("agent.sock")
            ),
            "-serial",
            "chardev:agent",
            "-qmp",
            &format!("unix:{},server=on,wait=off", p("qmp.sock")),
            "-device",
            &balloon,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(machine) = &self.machine {
            args.push("-machine".into());
            args.push(machine.clone());
        }
        if let Accel::TcgIcount(shift) = self.accel {
            args.push("-icount".into());
            args.push(format!("shift={shift}"));
        }
        args.extend(self.extra_qemu_args.iter().cloned());
        args
    }
}

/// Creates a fresh directory for one guest's sockets, initramfs and logs.
pub fn guest_dir(name: &str) -> Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // Socket paths must stay under 108 bytes: use the system temp dir.
    let dir = std::env::temp_dir().join(format!("balloon_rs-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    Ok(dir)
}

/// Writes the test initramfs into `dir`.
pub fn write_initramfs(artifacts: &Artifacts, dir: &Path) -> Result<()> {
    let path = dir.join("initramfs.cpio");
    std::fs::write(&path, initramfs::build(artifacts)?)
        .map_err(Error::io(format!("writing {}", path.display())))
}

/// balloon_rs's debugfs status: its numeric `name: value` fields.
#[derive(Debug, Clone)]
pub struct BalloonRsStatus {
    /// The file as read.
    pub text: String,
    /// Every line whose value is a number.
    pub fields: std::collections::BTreeMap<String, u64>,
}

impl BalloonRsStatus {
    /// Parses the file's text.
    pub fn parse(text: String) -> Self {
        let fields = text
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(": ")?;
                Some((k.to_string(), v.trim().parse().ok()?))
            })
            .collect();
        Self { text, fields }
    }

    /// A numeric field; a missing one is an error, never 0.
    pub fn get(&self, name: &str) -> Result<u64> {
        self.fields.get(name).copied().ok_or_else(|| Error::Parse {
            what: "balloon_rs debugfs status".into(),
            detail: format!("no field {name} in:\n{}", self.text),
        })
    }
}

/// A running guest. Dropping it kills QEMU; [`Guest::shutdown`] ends it
/// cleanly and checks the console log.
pub struct Guest {
    /// The config it was booted with.
    pub config: GuestConfig,
    child: Child,
    dir: PathBuf,
    qmp: Qmp,
    agent: Agent,
    done: bool,
}

impl Guest {
    /// Boots a guest and waits until its agent answers.
    pub fn boot(config: GuestConfig) -> Result<Self> {
        let mut guest = Self::start(config, &[])?;
        guest.wait_for_agent()?;
        Ok(guest)
    }

    /// Starts QEMU for `config` with `extra` arguments, in a fresh directory,
    /// and connects to its QMP socket and agent socket.
    fn start(config: GuestConfig, extra: &[String]) -> Result<Self> {
        let artifacts = match &config.artifacts {
            Some(a) => a.clone(),
            None => Artifacts::locate()?,
        };
        let dir = guest_dir(&config.name)?;
        write_initramfs(&artifacts, &dir)?;
        let log =
            std::fs::File::create(dir.join("qemu.log")).map_err(Error::io("creating qemu.log"))?;
        let mut cmd = Command::new(&artifacts.qemu);
        cmd.args(config.qemu_args(&artifacts, &dir, false))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(Error::io("cloning qemu.log"))?)
            .stderr(log);
        let cgroup = config
            .cgroup_procs
            .as_ref()
            .map(|p| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()))
            .transpose()
            .map_err(|e| Error::Check(format!("cgroup path: {e}")))?;
        // PDEATHSIG makes QEMU die with its parent, so no guest outlives a
        // killed test run or host stub.
        // SAFETY: the closure only makes async-signal-safe system calls
        // (prctl, open, write, close) on memory prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(procs) = &cgroup {
                    let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                    libc::close(fd);
                    if n != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            program: artifacts.qemu.display().to_string(),
            source,
        })?;
        tracing::info!(name = %config.name, pid = child.id(), dir = %dir.display(), "QEMU started");
        // From here on, `Guest`'s Drop kills QEMU on any error.
        let mut partial = PartialGuest {
            child: Some(child),
            dir: dir.clone(),
        };
        let qmp = Qmp::connect(&dir.join("qmp.sock"), CONNECT_TIMEOUT, BALLOON_ID)
            .map_err(|e| partial.explain(e, "connecting to QMP"))?;
        let agent = Agent::connect(&dir.join("agent.sock"), CONNECT_TIMEOUT)
            .map_err(|e| partial.explain(e, "connecting to the agent"))?;
        let child = partial
            .child
            .take()
            .ok_or_else(|| Error::Check("lost the QEMU child".into()))?;
        Ok(Guest {
            config,
            child,
            dir,
            qmp,
            agent,
            done: false,
        })
    }

    /// Live-migrates the guest to a new QEMU on this machine with QEMU's own
    /// migration over TCP loopback; afterwards `self` is the guest running
    /// there. The destination is started like this one, in `cgroup_procs`
    /// if given (another host's memory budget). The source QEMU ends once
    /// the destination runs, and its console log is checked.
    ///
    /// If the migration fails, the destination is killed and `self` stays
    /// the source, running again.
    pub fn migrate_local(
        &mut self,
        cgroup_procs: Option<PathBuf>,
        timeout: Duration,
    ) -> Result<()> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(Error::io("picking a migration port"))?
            .port();
        let uri = format!("tcp:127.0.0.1:{port}");
        let mut config = self.config.clone();
        config.cgroup_procs = cgroup_procs;
        let mut dest = Self::start(config, &["-incoming".into(), uri.clone()])?;
        dest.done = true; // until it is the guest
        tracing::info!(name = %self.config.name, %uri, "migrating");
        // As fast as the link goes: the default limit (128 MiB/s) only
        // slows a loopback copy down.
        let moved = self.qmp.migrate(&uri, 4 << 30, timeout).and_then(|()| {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !dest.qmp.running()? {
                dest.check_alive("starting after the migration")?;
                if Instant::now() > deadline {
                    return Err(dest.timeout(
                        "the destination to run after the migration",
                        Duration::from_secs(30),
                    ));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(())
        });
        if let Err(e) = moved {
            // Keep the source: stop a migration still running and resume.
            let _ = self.qmp.execute(&qapi::qmp::migrate_cancel {});
            if !self.qmp.running().unwrap_or(true) {
                let _ = self.qmp.cont();
            }
            return Err(e);
        }
        dest.done = false;
        let mut source = std::mem::replace(self, dest);
        // The source is paused for good: end it and check what it logged.
        let _ = source.qmp.quit();
        kill_and_reap(&mut source.child);
        source.done = true;
        source.check_log()?;
        let _ = std::fs::remove_dir_all(&source.dir);
        self.wait_for_agent()
    }

    fn wait_for_agent(&mut self) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < BOOT_TIMEOUT {
            self.check_alive("booting")?;
            if let Some(out) = self.agent.run("true", Duration::from_secs(2))? {
                if out.code == 0 {
                    tracing::info!(name = %self.config.name, secs = start.elapsed().as_secs_f64(), "guest up");
                    // The PCI devices were probed before init ran.
                    return self.check_devices("booting");
                }
            }
        }
        Err(self.timeout("the guest agent to answer after boot", BOOT_TIMEOUT))
    }

    /// The guest's directory (console log, QEMU log, sockets).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The console log so far.
    pub fn console(&self) -> String {
        std::fs::read(self.dir.join("console.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    fn tail(&self) -> String {
        logscan::tail(&self.console(), 40)
    }

    fn timeout(&self, what: &str, after: Duration) -> Error {
        Error::Timeout {
            what: what.to_string(),
            secs: after.as_secs_f64(),
            tail: self.tail(),
        }
    }

    /// Fails with the console line if the guest shows a device it cannot
    /// use (see [`logscan::DEVICE_MARKERS`]).
    pub fn check_devices(&self, doing: &str) -> Result<()> {
        let log = self.console();
        let found = logscan::device_problem(&log).filter(|(_, l)| {
            !(self.config.expect_probe_failure && l.contains("failed with error"))
        });
        match found {
            None => Ok(()),
            Some((line, text)) => Err(Error::DeviceBroken {
                doing: doing.to_string(),
                line,
                text: text.to_string(),
                tail: logscan::tail(&log, 40),
            }),
        }
    }

    /// Fails with the console tail if QEMU has exited, and with the console
    /// line if the guest cannot use its devices.
    pub fn check_alive(&mut self, doing: &str) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => self.check_devices(doing),
            Ok(Some(status)) => {
                self.done = true;
                Err(Error::QemuExited {
                    status: status.to_string(),
                    doing: doing.to_string(),
                    tail: self.tail(),
                })
            }
            Err(e) => Err(Error::io("waiting for QEMU")(e)),
        }
    }

    /// Runs a shell command in the guest with a timeout.
    pub fn run_timeout(&mut self, command: &str, timeout: Duration) -> Result<Output> {
        self.check_alive(&format!("running `{command}`"))?;
        match self.agent.run(command, timeout) {
            Ok(Some(out)) => Ok(out),
            Ok(None) => {
                self.check_alive(&format!("running `{command}`"))?;
                Err(self.timeout(&format!("`{command}`"), timeout))
            }
            Err(e) => {
                // A broken channel usually means QEMU is going away: give it
                // a moment to exit so the error names the real cause.
                for _ in 0..50 {
                    self.check_alive(&format!("running `{command}`"))?;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e)
            }
        }
    }

    /// Runs a shell command in the guest.
    pub fn run(&mut self, command: &str) -> Result<Output> {
        self.run_timeout(command, COMMAND_TIMEOUT)
    }

    /// Runs a shell command that must succeed; returns its output.
    pub fn sh(&mut self, command: &str) -> Result<String> {
        let out = self.run(command)?;
        if out.code != 0 {
            return Err(Error::Command {
                command: command.to_string(),
                code: out.code,
                output: out.text,
            });
        }
        Ok(out.text)
    }

    /// The guest's `/proc/meminfo`.
    pub fn meminfo(&mut self) -> Result<MemInfo> {
        MemInfo::parse(&self.sh("cat /proc/meminfo")?)
    }

    /// The guest's `/proc/vmstat`.
    pub fn vmstat(&mut self) -> Result<VmStat> {
        VmStat::parse(&self.sh("cat /proc/vmstat")?)
    }

    /// Loads a balloon driver module.
    pub fn load(&mut self, driver: Driver) -> Result<()> {
        self.sh(&format!("insmod /lib/modules/{}", driver.file_name()))?;
        self.check_devices(&format!("loading {}", driver.module_name()))
    }

    /// Unloads a balloon driver module.
    pub fn unload(&mut self, driver: Driver) -> Result<()> {
        self.sh(&format!("rmmod {}", driver.module_name()))?;
        Ok(())
    }

    /// balloon_rs's debugfs status file (`/sys/kernel/debug/balloon_rs/virtio*/status`).
    pub fn balloon_rs_status(&mut self) -> Result<BalloonRsStatus> {
        Ok(BalloonRsStatus::parse(
            self.sh("cat /sys/kernel/debug/balloon_rs/virtio*/status")?,
        ))
    }

    /// Feature bit `bit` as the guest negotiated it (sysfs `features` of
    /// the balloon device, `virtio0`).
    pub fn feature(&mut self, bit: usize) -> Result<bool> {
        let f = self.sh("cat /sys/bus/virtio/devices/virtio0/features")?;
        let f = f.trim();
        match f.as_bytes().get(bit) {
            Some(b) => Ok(*b == b'1'),
            None => Err(Error::Parse {
                what: "virtio features".into(),
                detail: format!("no bit {bit} in {f:?}"),
            }),
        }
    }

    /// The driver bound to the balloon device, if any (from sysfs).
    pub fn bound_driver(&mut self) -> Result<Option<String>> {
        let out = self.run("basename $(readlink /sys/bus/virtio/devices/virtio0/driver)")?;
        Ok((out.code == 0)
            .then(|| out.text.trim().to_string())
            .filter(|s| !s.is_empty()))
    }

    /// The QMP connection.
    pub fn qmp(&mut self) -> &mut Qmp {
        &mut self.qmp
    }

    /// QEMU's resident memory in KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        crate::procfs::rss_kib(self.child.id())
    }

    /// QEMU's anonymous memory in host transparent huge pages, in KiB.
    pub fn anon_huge_kib(&self) -> Result<u64> {
        crate::procfs::anon_huge_kib(self.child.id())
    }

    /// Fails if the console log shows a kernel warning, bug, oops or panic.
    pub fn check_log(&self) -> Result<()> {
        let log = self.console();
        let problems = logscan::kernel_problems(&log);
        if problems.is_empty() {
            return Ok(());
        }
        Err(Error::KernelLog {
            log: self.dir.join("console.log").display().to_string(),
            lines: problems
                .iter()
                .map(|(n, l)| format!("{n}: {l}"))
                .collect::<Vec<_>>()
                .join("\n"),
            tail: logscan::tail(&log, 60),
        })
    }

    /// Stops the guest (QMP `quit`, then SIGKILL if it lingers), then checks
    /// the console log. The guest's directory is removed when all is well
    /// and kept (and named in the error) otherwise.
    pub fn shutdown(mut self) -> Result<()> {
        let _ = self.qmp.quit();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        kill_and_reap(&mut self.child);
        self.done = true;
        self.check_log()?;
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

fn kill_and_reap(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    let _ = child.wait();
}

impl Drop for Guest {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
        if !self.done {
            eprintln!(
                "guest {} was not shut down cleanly; its files are in {}\n--- console tail ---\n{}",
                self.config.name,
                self.dir.display(),
                self.tail()
            );
        }
    }
}

/// QEMU between spawn and a working QMP/agent connection.
struct PartialGuest {
    child: Option<Child>,
    dir: PathBuf,
}

impl PartialGuest {
    fn explain(&mut self, e: Error, doing: &str) -> Error {
        let tail = logscan::tail(
            &String::from_utf8_lossy(&std::fs::read(self.dir.join("qemu.log")).unwrap_or_default()),
            20,
        );
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                return Error::QemuExited {
                    status: status.to_string(),
                    doing: doing.to_string(),
                    tail,
                };
            }
        }
        Error::Check(format!("{doing}: {e}\n--- qemu.log ---\n{tail}"))
    }
}

impl Drop for PartialGuest {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }
}
