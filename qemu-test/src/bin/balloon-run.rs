//! `make run`: boot an interactive guest with both balloon modules.
//!
//! The console is this terminal (Ctrl-A X quits QEMU); QMP and the agent
//! listen on sockets in the directory printed at start. For scripts, use
//! `balloon-inflate`.

use clap::Parser;
use qemu_test::guest::{guest_dir, write_initramfs, GuestConfig};
use qemu_test::{Artifacts, Result};
use std::os::unix::process::CommandExt;

#[derive(Parser)]
#[command(
    about = "Boot an interactive guest with balloon_rs.ko and virtio_balloon.ko in /lib/modules"
)]
struct Args {
    /// Guest memory in MiB (default BALLOON_RS_GUEST_MIB or 512).
    #[arg(long)]
    mem: Option<u64>,
    /// Extra virtio-balloon-pci property, e.g. deflate-on-oom=on (repeatable).
    #[arg(long = "balloon", value_name = "PROP=VALUE")]
    balloon_props: Vec<String>,
    /// Extra kernel command line.
    #[arg(long, value_name = "ARGS")]
    append: Option<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut config = GuestConfig::new("run")?;
    if let Some(mem) = args.mem {
        config.mem_mib = mem;
    }
    config.balloon_props = args.balloon_props;
    if let Some(append) = args.append {
        config.kernel_args = append;
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
