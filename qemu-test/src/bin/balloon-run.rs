//! `make run`: boot an interactive guest with both balloon modules.
//!
//! The console is this terminal (Ctrl-A X quits QEMU); QMP and the agent
//! listen on sockets in the directory printed at start.

use qemu_test::guest::{guest_dir, write_initramfs, GuestConfig};
use qemu_test::{Artifacts, Result};
use std::os::unix::process::CommandExt;

fn main() -> Result<()> {
    let mut config = GuestConfig::new("run")?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.next()) {
            ("--mem", Some(v)) => {
                config.mem_mib = v
                    .parse()
                    .map_err(|e| qemu_test::Error::Check(format!("--mem: {e}")))?
            }
            ("--balloon", Some(v)) => config.balloon_props.push(v.clone()),
            ("--append", Some(v)) => config.kernel_args = v.clone(),
            _ => {
                eprintln!("usage: balloon-run [--mem MIB] [--balloon PROP=VALUE]... [--append KERNEL_ARGS]");
                std::process::exit(2);
            }
        }
    }
    let artifacts = Artifacts::locate()?;
    let dir = guest_dir("run")?;
    write_initramfs(&artifacts, &dir)?;
    eprintln!(
        "Booting a {} MiB guest ({:?}). In the guest: insmod /lib/modules/balloon_rs.ko (or virtio_balloon.ko).\n\
         QMP: {}/qmp.sock (e.g. {{\"execute\":\"balloon\",\"arguments\":{{\"value\":268435456}}}}).\n\
         Quit: Ctrl-A X.",
        config.mem_mib,
        config.accel,
        dir.display()
    );
    let err = std::process::Command::new(&artifacts.qemu)
        .args(config.qemu_args(&artifacts, &dir, true))
        .exec();
    Err(qemu_test::Error::Spawn {
        program: artifacts.qemu.display().to_string(),
        source: err,
    })
}
