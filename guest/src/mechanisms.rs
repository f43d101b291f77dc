//! `balloon-guest mechanisms`: balloon-host's compression lever, run for
//! real inside a guest whose kernel has cgroup v2, zswap and swap.
//!
//! The steps are the host stub's own (the `host-mechanisms` crate), in the
//! order a run takes them: prepare our cgroup (a leaf for ourselves,
//! `+memory` for the children), a swap file, zswap on, a VM cgroup with a
//! workload started inside it (as balloon-host starts a QEMU); then
//! `memory.reclaim`, a limit (`memory.high`), the workload verifying every
//! page while limited, the limit lifted; then every setting restored. What
//! the kernel reported at each step is printed as one JSON object on
//! standard output, for the host-side test to assert on. Exits non-zero if
//! a step failed or a setting could not be restored; the JSON says which.

use host_mechanisms::{self as mech, CgroupEvents, CgroupFs, CgroupMem, HostSettings, VmCgroup};
use serde::Serialize;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

/// The subcommand's options, for the usage text.
pub const USAGE: &str = "--workload-mib N --reclaim-mib R --limit-mib L --swap-file PATH \
                         --swap-mib S [--journal PATH]";

/// Options of `balloon-guest mechanisms`.
#[derive(Debug)]
pub struct Options {
    workload_mib: u64,
    reclaim_mib: u64,
    limit_mib: u64,
    swap_file: PathBuf,
    swap_mib: u64,
    journal: PathBuf,
}

impl Options {
    /// Parses the options; every size is required and positive.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let (mut workload, mut reclaim, mut limit, mut swap) = (0, 0, 0, 0);
        let mut swap_file = None;
        let mut journal = PathBuf::from("/tmp/balloon-host-journal.json");
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let value = it.next().ok_or(format!("{arg} needs a value"))?;
            let mib = || -> Result<u64, String> {
                match value.parse() {
                    Ok(0) | Err(_) => Err(format!("{arg}: '{value}' is not a positive MiB count")),
                    Ok(n) => Ok(n),
                }
            };
            match arg.as_str() {
                "--workload-mib" => workload = mib()?,
                "--reclaim-mib" => reclaim = mib()?,
                "--limit-mib" => limit = mib()?,
                "--swap-mib" => swap = mib()?,
                "--swap-file" => swap_file = Some(PathBuf::from(value)),
                "--journal" => journal = PathBuf::from(value),
                other => return Err(format!("unknown option '{other}'")),
            }
        }
        if workload == 0 || reclaim == 0 || limit == 0 || swap == 0 {
            return Err(format!("all of {USAGE} are needed"));
        }
        if limit >= workload {
            return Err("--limit-mib must be below --workload-mib".into());
        }
        Ok(Options {
            workload_mib: workload,
            reclaim_mib: reclaim,
            limit_mib: limit,
            swap_file: swap_file.ok_or("--swap-file is needed")?,
            swap_mib: swap,
            journal,
        })
    }
}

/// The machine-wide state the run changes, before and after.
#[derive(Debug, Serialize, PartialEq)]
struct Snapshot {
    /// `/proc/self/cgroup`.
    self_cgroup: String,
    /// Our cgroup's child cgroups.
    own_children: Vec<String>,
    /// Our cgroup's `cgroup.subtree_control`.
    own_subtree_control: String,
    /// zswap's `enabled`.
    zswap_enabled: String,
    /// Active swap areas (`/proc/swaps`).
    swaps: Vec<String>,
    swap_file_exists: bool,
    journal_exists: bool,
}

impl Snapshot {
    fn take(own: &Path, opts: &Options) -> Self {
        let read = |p: &Path| mech::read_trim(p).unwrap_or_else(|e| format!("<{e}>"));
        let mut own_children: Vec<String> = std::fs::read_dir(own)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        own_children.sort();
        Snapshot {
            self_cgroup: read(Path::new("/proc/self/cgroup")),
            own_children,
            own_subtree_control: read(&own.join("cgroup.subtree_control")),
            zswap_enabled: read(&Path::new(mech::ZSWAP).join("enabled")),
            swaps: read(Path::new("/proc/swaps"))
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                .collect(),
            swap_file_exists: opts.swap_file.exists(),
            journal_exists: opts.journal.exists(),
        }
    }
}

/// What the kernel said at one step, MiB.
#[derive(Debug, Serialize)]
struct Step {
    /// The VM cgroup's `memory.stat`, `memory.current`, swap.
    cgroup: CgroupMem,
    /// Its `memory.events`.
    events: CgroupEvents,
    /// The workload's VmRSS and VmSwap (0 once it has exited).
    workload_rss: f64,
    workload_swap: f64,
    /// `Zswap` and `Zswapped` of /proc/meminfo.
    meminfo_zswap: f64,
    meminfo_zswapped: f64,
}

/// Everything the run saw.
#[derive(Debug, Default, Serialize)]
struct Steps {
    vm_cgroup: Option<PathBuf>,
    filled: Option<Step>,
    reclaim_complete: Option<bool>,
    reclaimed: Option<Step>,
    limited: Option<Step>,
    /// After the workload read every page back while limited, and exited.
    verified: Option<Step>,
    workload_output: String,
    workload_exit: Option<i32>,
    /// The limit lifted again (`memory.high` back to `max`).
    lifted_high: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    own_cgroup: PathBuf,
    flavour: &'static str,
    before: Snapshot,
    #[serde(flatten)]
    steps: &'a Steps,
    /// The first step that failed.
    error: Option<String>,
    /// What `HostSettings::restore` could not put back.
    restore_failures: Vec<String>,
    after: Snapshot,
}

/// The workload, killed if a step fails before it is done.
struct Workload {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Workload {
    /// Starts `balloon-guest workload` inside the cgroup whose
    /// `cgroup.procs` is `procs`: a shell moves itself in, then execs the
    /// workload, so every page it touches is charged there.
    fn start(procs: &Path, mib: u64) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
        let mut child = Command::new("/bin/sh")
            .args([
                "-c",
                r#"echo $$ > "$1" && exec "$2" workload --mib "$3" --content text --hold stdin --verify"#,
                "sh",
            ])
            .arg(procs)
            .arg(exe)
            .arg(mib.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting the workload: {e}"))?;
        let out = child.stdout.take().ok_or("the workload's stdout")?;
        let mut w = Workload {
            child,
            out: BufReader::new(out),
        };
        // The fill is done when it says how fast it was.
        let mut line = String::new();
        loop {
            line.clear();
            if w.out.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                return Err("the workload exited before its fill was done".into());
            }
            if line.starts_with("workload: touched") {
                return Ok(w);
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Ends its hold: it verifies every page and exits; returns its
    /// remaining output and exit code.
    fn finish(mut self) -> Result<(String, Option<i32>), String> {
        drop(self.child.stdin.take());
        let mut rest = String::new();
        self.out
            .read_to_string(&mut rest)
            .map_err(|e| e.to_string())?;
        let status = self.child.wait().map_err(|e| e.to_string())?;
        Ok((rest, status.code()))
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn measure(cg: &VmCgroup, pid: Option<u32>) -> mech::Result<Step> {
    let (workload_rss, workload_swap) = match pid {
        Some(p) => mech::process_mem(p)?,
        None => (0.0, 0.0),
    };
    let (meminfo_zswap, meminfo_zswapped) = mech::zswap_meminfo()?;
    Ok(Step {
        cgroup: cg.stat()?,
        events: cg.events()?,
        workload_rss,
        workload_swap,
        meminfo_zswap,
        meminfo_zswapped,
    })
}

/// The run's steps; what was seen so far stays in `seen` on an error.
fn steps(
    opts: &Options,
    fs: &CgroupFs,
    settings: &mut HostSettings,
    seen: &mut Steps,
) -> Result<(), String> {
    let e = |what: &str| {
        let what = what.to_string();
        move |err: mech::Error| format!("{what}: {err}")
    };
    fs.prepare(settings).map_err(e("preparing our cgroup"))?;
    settings
        .swap_file(&opts.swap_file, opts.swap_mib)
        .map_err(e("swap file"))?;
    let zswap = Path::new(mech::ZSWAP);
    mech::zswap_available(zswap).map_err(e("zswap"))?;
    settings
        .set(&zswap.join("enabled"), "Y")
        .map_err(e("turning zswap on"))?;
    let cg = VmCgroup::create(settings, fs, "vm").map_err(e("creating the VM cgroup"))?;
    seen.vm_cgroup = Some(cg.dir.clone());

    let w = Workload::start(&cg.procs(), opts.workload_mib)?;
    seen.filled = Some(measure(&cg, Some(w.pid())).map_err(e("after the fill"))?);
    seen.reclaim_complete = Some(cg.reclaim(opts.reclaim_mib).map_err(e("memory.reclaim"))?);
    seen.reclaimed = Some(measure(&cg, Some(w.pid())).map_err(e("after memory.reclaim"))?);
    cg.set_limit(Some(opts.limit_mib))
        .map_err(e("setting the limit"))?;
    seen.limited = Some(measure(&cg, Some(w.pid())).map_err(e("under the limit"))?);
    let (output, code) = w.finish()?;
    seen.workload_output = output;
    seen.workload_exit = code;
    seen.verified = Some(measure(&cg, None).map_err(e("after the verify"))?);
    cg.set_limit(None).map_err(e("lifting the limit"))?;
    seen.lifted_high =
        Some(mech::read_trim(&cg.dir.join("memory.high")).map_err(e("memory.high"))?);
    Ok(())
}

/// Runs the check and prints its report.
pub fn run(opts: &Options) -> Result<(), String> {
    let fs = CgroupFs::detect().map_err(|e| e.to_string())?;
    let CgroupFs::V2(own) = &fs else {
        return Err("this check is for cgroup v2; the guest mounted v1".into());
    };
    let before = Snapshot::take(own, opts);
    let mut seen = Steps::default();
    let mut settings = HostSettings::new(Some(&opts.journal)).map_err(|e| e.to_string())?;
    let error = steps(opts, &fs, &mut settings, &mut seen).err();
    let restore_failures = settings.restore();
    drop(settings);
    let report = Report {
        own_cgroup: own.clone(),
        flavour: "v2",
        before,
        steps: &seen,
        error,
        restore_failures,
        after: Snapshot::take(own, opts),
    };
    let text = serde_json::to_string(&report).map_err(|e| e.to_string())?;
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "{text}");
    let _ = stdout.flush();
    match (report.error, report.restore_failures.is_empty()) {
        (Some(e), _) => Err(e),
        (None, false) => Err(format!(
            "not restored: {}",
            report.restore_failures.join("; ")
        )),
        (None, true) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn options_need_every_size_and_a_limit_below_the_workload() {
        let o = Options::parse(&args(
            "--workload-mib 112 --reclaim-mib 32 --limit-mib 64 --swap-file /mnt/s --swap-mib 96",
        ))
        .unwrap();
        assert_eq!((o.workload_mib, o.limit_mib, o.swap_mib), (112, 64, 96));
        assert!(Options::parse(&args("--workload-mib 112")).is_err());
        let e = Options::parse(&args(
            "--workload-mib 64 --reclaim-mib 1 --limit-mib 64 --swap-file /s --swap-mib 9",
        ))
        .unwrap_err();
        assert!(e.contains("below"), "{e}");
        let e = Options::parse(&args("--limit-mib 0")).unwrap_err();
        assert!(e.contains("positive"), "{e}");
    }
}
