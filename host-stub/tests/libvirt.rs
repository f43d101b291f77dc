//! The libvirt backend against a real libvirtd (Debian's packages), started
//! by the test itself when none runs, with a QEMU TCG domain running
//! balloon_rs: `balloon-host status --libvirt` agrees with `virsh
//! dommemstat`, `balloon-host set --libvirt` moves its balloon, and
//! `balloon-host attach --libvirt` balloons the domain through libvirt under
//! host pressure, libvirt's balloon-change events reaching its timeline. `make setup` installs libvirt and
//! `make test` runs as root, so a missing libvirt or a non-root run is a
//! failure that says what is missing, never a silent pass.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::host_settings;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const BIN: &str = env!("CARGO_BIN_EXE_balloon-host");
const URI: &str = "qemu:///system";
const SOCKET: &str = "/run/libvirt/libvirt-sock";

/// virtlogd and libvirtd, started here unless already running; stopped on
/// drop if started here.
struct Daemons {
    started: Vec<(&'static str, PathBuf)>,
}

impl Daemons {
    fn start() -> Result<Self, String> {
        let mut d = Daemons {
            started: Vec::new(),
        };
        for dir in ["/var/log/libvirt", "/run/libvirt", "/var/lib/libvirt/qemu"] {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {dir}: {e}"))?;
        }
        for (name, pidfile) in [
            ("virtlogd", "/run/virtlogd.pid"),
            ("libvirtd", "/run/libvirtd.pid"),
        ] {
            let running = Command::new("pgrep")
                .args(["-x", name])
                .output()
                .is_ok_and(|o| o.status.success());
            if running {
                continue;
            }
            let st = Command::new(name)
                .arg("--daemon")
                .status()
                .map_err(|e| format!("starting {name}: {e}"))?;
            if !st.success() {
                return Err(format!("{name} --daemon failed: {st}"));
            }
            d.started.push((name, PathBuf::from(pidfile)));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !Path::new(SOCKET).exists() {
            if Instant::now() > deadline {
                return Err(format!("libvirtd started but {SOCKET} never appeared"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(d)
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        for (name, pidfile) in self.started.iter().rev() {
            let pid = std::fs::read_to_string(pidfile)
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok());
            match pid {
                // SAFETY: kill(2) with a pid read from the daemon's pid file.
                Some(pid) => unsafe {
                    libc::kill(pid, libc::SIGTERM);
                },
                None => eprintln!("cannot stop {name}: no pid in {}", pidfile.display()),
            }
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.started.iter().any(|(name, _)| {
            Command::new("pgrep")
                .args(["-x", name])
                .output()
                .is_ok_and(|o| o.status.success())
        }) && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A transient domain; destroyed on drop.
struct Domain {
    name: String,
    dir: PathBuf,
}

impl Domain {
    fn boot(name: &str, mem_mib: u64) -> Result<Self, Box<dyn std::error::Error>> {
        let artifacts = qemu_ctl::Artifacts::locate()?;
        let dir = std::env::temp_dir().join(format!("{name}-dir"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        // QEMU runs as libvirt-qemu: it must read the kernel and initramfs
        // and write the console log here.
        std::fs::copy(&artifacts.kernel, dir.join("bzImage"))?;
        qemu_ctl::guest::write_initramfs(&artifacts, &dir)?;
        for (p, mode) in [
            (dir.clone(), 0o777),
            (dir.join("bzImage"), 0o644),
            (dir.join("initramfs.cpio"), 0o644),
        ] {
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        }
        let d = dir.display();
        let xml = format!(
            r#"<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{mem_mib}</memory>
  <currentMemory unit='MiB'>{mem_mib}</currentMemory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{d}/bzImage</kernel>
    <initrd>{d}/initramfs.cpio</initrd>
    <cmdline>console=ttyS0 panic=-1</cmdline>
  </os>
  <on_reboot>destroy</on_reboot>
  <devices>
    <emulator>{qemu}</emulator>
    <serial type='file'><source path='{d}/console.log'/><target port='0'/></serial>
    <serial type='unix'><source mode='bind' path='{d}/agent.sock'/><target port='1'/></serial>
    <memballoon model='virtio'><stats period='1'/></memballoon>
  </devices>
</domain>"#,
            qemu = artifacts.qemu.display()
        );
        let xml_path = dir.join("domain.xml");
        std::fs::write(&xml_path, xml)?;
        let out = Command::new("virsh")
            .args(["-c", URI, "create"])
            .arg(&xml_path)
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "virsh create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(Domain {
            name: name.to_string(),
            dir,
        })
    }

    fn agent(&self) -> Result<qemu_ctl::agent::Agent, Box<dyn std::error::Error>> {
        let mut a =
            qemu_ctl::agent::Agent::connect(&self.dir.join("agent.sock"), Duration::from_secs(30))?;
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Some(o) = a.run("true", Duration::from_secs(2))? {
                if o.code == 0 {
                    return Ok(a);
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the guest agent never answered; console:\n{}",
                    self.console()
                )
                .into());
            }
        }
    }

    fn console(&self) -> String {
        std::fs::read_to_string(self.dir.join("console.log")).unwrap_or_default()
    }

    /// `virsh dommemstat`: name to value (KiB for memory).
    fn dommemstat(
        &self,
    ) -> Result<std::collections::BTreeMap<String, u64>, Box<dyn std::error::Error>> {
        let out = Command::new("virsh")
            .args(["-c", URI, "dommemstat", &self.name])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_string(), v.trim().parse().ok()?))
            })
            .collect())
    }
}

impl Drop for Domain {
    fn drop(&mut self) {
        let _ = Command::new("virsh")
            .args(["-c", URI, "destroy", &self.name])
            .output();
    }
}

/// What keeps libvirtd from running here, if anything.
fn missing_prerequisite() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some(
            "not root: libvirtd's qemu:///system needs root (run make test as root)".into(),
        );
    }
    for bin in ["libvirtd", "virtlogd", "virsh"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).exists()));
        if !found {
            return Some(format!(
                "{bin} is not installed (make setup installs libvirt)"
            ));
        }
    }
    None
}

#[test]
fn libvirt_domain_status_matches_virsh_and_attach_balloons_it() -> TestResult {
    if let Some(why) = missing_prerequisite() {
        return Err(format!("cannot run the libvirt test: {why}").into());
    }
    let before = host_settings();
    let daemons = Daemons::start()?;
    let name = format!("balloon-host-lv-{}", std::process::id());
    let dom = Domain::boot(&name, 384)?;
    let mut agent = dom.agent()?;
    let o = agent
        .run("insmod /lib/modules/balloon_rs.ko", Duration::from_secs(60))?
        .ok_or("insmod: no answer")?;
    assert_eq!(o.code, 0, "insmod balloon_rs: {}", o.text);
    // Touch and free memory: QEMU's RSS grows, the guest has it free.
    let o = agent
        .run(
            "balloon-guest workload --mib 128 --content text --hold 1",
            Duration::from_secs(120),
        )?
        .ok_or("workload: no answer")?;
    assert_eq!(o.code, 0, "workload: {}", o.text);
    std::thread::sleep(Duration::from_secs(3));

    // status --libvirt and virsh dommemstat agree.
    let out = Command::new(BIN)
        .args(["status", "--libvirt", URI, &name])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let virsh = dom.dommemstat()?;
    eprintln!(
        "balloon-host status --libvirt {URI} {name}:\n{text}virsh dommemstat {name}: {virsh:?}"
    );
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with(&name))
        .ok_or_else(|| format!("no row for {name}:\n{text}"))?
        .split_whitespace()
        .collect();
    let mib = |k: &str| virsh.get(k).map(|v| *v as f64 / 1024.0);
    let (config, actual, usable): (f64, f64, f64) =
        (row[1].parse()?, row[2].parse()?, row[6].parse()?);
    assert_eq!(config, 384.0, "{text}");
    assert_eq!(Some(actual), mib("actual"), "{text}\nvirsh: {virsh:?}");
    let v_usable = mib("usable").ok_or("virsh shows no usable")?;
    assert!(
        (usable - v_usable).abs() <= 8.0,
        "usable: stub {usable} MiB, virsh {v_usable:.0} MiB"
    );

    // set --libvirt moves the balloon through libvirt (virsh agrees), and
    // back.
    for mib in [320u64, 384] {
        let out = Command::new(BIN)
            .args([
                "set",
                "--libvirt",
                URI,
                &name,
                &format!("{mib}M"),
                "--wait",
                "90",
            ])
            .output()?;
        assert!(
            out.status.success(),
            "set --libvirt {mib}M: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let actual = dom.dommemstat()?.get("actual").copied().unwrap_or(0) / 1024;
        assert_eq!(actual, mib, "virsh actual after set --libvirt {mib}M");
    }
    // attach --libvirt under pressure balloons the domain through libvirt.
    let rss = row[4].parse::<f64>()?;
    let capacity = (rss as u64).saturating_sub(64).max(64);
    let out_dir = std::env::temp_dir().join(format!("{name}-out"));
    let out = Command::new(BIN)
        .args([
            "attach",
            "--libvirt",
            URI,
            "--no-live",
            "--tiers",
            "ballooning",
        ])
        .args([
            "--capacity",
            &capacity.to_string(),
            "--duration",
            "24",
            "--tick",
            "2",
        ])
        .arg("--out")
        .arg(&out_dir)
        .arg(&name)
        .output()?;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "attach failed:\n{log}");
    let samples = host_stub::record::timeline::read(&out_dir.join("timeline.jsonl"))?;
    let last = samples.last().ok_or("empty timeline")?;
    let v = &last.vms[0];
    eprintln!(
        "attach --libvirt: last tick {} MiB ballooned, target {} MiB",
        v.balloon, v.target
    );
    assert!(
        v.balloon >= 32,
        "attach ballooned only {} MiB:\n{log}",
        v.balloon
    );
    assert!(
        samples
            .iter()
            .any(|s| s.vms[0].guest.contains_key("usable")),
        "no guest statistics through libvirt:\n{log}"
    );
    // libvirt's own balloon-change event callback reached the loop.
    assert!(
        samples
            .iter()
            .flat_map(|s| &s.events)
            .any(|e| e.contains("BALLOON_CHANGE")),
        "no BALLOON_CHANGE event through libvirt's callback:\n{log}"
    );
    // libvirt's view converges to the stub's last target.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = dom.dommemstat()?.get("actual").copied().unwrap_or(0) / 1024;
        if a == v.target {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "virsh actual {a} MiB, the stub's target {} MiB",
            v.target
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let console = dom.console();
    let problems = qemu_ctl::logscan::kernel_problems(&console);
    assert!(problems.is_empty(), "guest kernel problems: {problems:?}");
    drop(agent);
    drop(dom);
    drop(daemons);
    assert_eq!(before, host_settings(), "host settings changed");
    let left = Command::new("pgrep").args(["-f", &name]).output()?;
    assert!(!left.status.success(), "a QEMU of {name} is left");
    let _ = std::fs::remove_dir_all(&out_dir);
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!("{name}-dir")));
    Ok(())
}
