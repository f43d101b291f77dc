//! Where the harness finds the kernel, the modules and the guest binary.
//!
//! Defaults are the paths `make kernel`, `make` and `make guest` produce in
//! the repository; each can be overridden by an environment variable.

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// The balloon driver a guest test loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// This project's Rust module, `balloon_rs.ko`.
    BalloonRs,
    /// The in-tree C driver, `virtio_balloon.ko`, built from the same kernel.
    C,
}

impl Driver {
    /// Both drivers, for tests that compare them.
    pub const ALL: [Driver; 2] = [Driver::BalloonRs, Driver::C];

    /// The module's name as `lsmod`, `rmmod` and sysfs show it.
    pub fn module_name(self) -> &'static str {
        match self {
            Driver::BalloonRs => "balloon_rs",
            Driver::C => "virtio_balloon",
        }
    }

    /// The module's file name under `/lib/modules/` in the guest.
    pub fn file_name(self) -> &'static str {
        match self {
            Driver::BalloonRs => "balloon_rs.ko",
            Driver::C => "virtio_balloon.ko",
        }
    }
}

impl std::fmt::Display for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.module_name())
    }
}

/// Paths of everything a guest needs.
#[derive(Clone, Debug)]
pub struct Artifacts {
    /// `bzImage`.
    pub kernel: PathBuf,
    /// `balloon_rs.ko`.
    pub balloon_rs: PathBuf,
    /// The C `virtio_balloon.ko`.
    pub c_driver: PathBuf,
    /// The static `balloon-guest` binary.
    pub guest_bin: PathBuf,
    /// A static busybox.
    pub busybox: PathBuf,
    /// The QEMU binary.
    pub qemu: PathBuf,
}

/// The repository root (this crate's parent directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn env_or(var: &str, default: PathBuf) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or(default)
}

impl Artifacts {
    /// Locates every artifact, failing with the command that builds a
    /// missing one.
    ///
    /// Variables: `BALLOON_RS_KDIR` (kernel build directory, default
    /// `build/kernel`), `BALLOON_RS_MODULE`, `BALLOON_RS_GUEST_BIN`,
    /// `BALLOON_RS_BUSYBOX`, `BALLOON_RS_QEMU`.
    pub fn locate() -> Result<Self> {
        Self::locate_with(None, None)
    }

    /// Like [`Artifacts::locate`], with the kernel build directory (its
    /// `bzImage` and C `virtio_balloon.ko`) and the balloon_rs module given
    /// explicitly where `Some`.
    pub fn locate_with(kdir: Option<&Path>, module: Option<&Path>) -> Result<Self> {
        let root = repo_root();
        let kdir = kdir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| env_or("BALLOON_RS_KDIR", root.join("build/kernel")));
        let a = Artifacts {
            kernel: kdir.join("arch/x86/boot/bzImage"),
            c_driver: kdir.join("drivers/virtio/virtio_balloon.ko"),
            balloon_rs: module
                .map(Path::to_path_buf)
                .unwrap_or_else(|| env_or("BALLOON_RS_MODULE", root.join("balloon_rs.ko"))),
            guest_bin: env_or(
                "BALLOON_RS_GUEST_BIN",
                root.join("target/x86_64-unknown-linux-gnu/release/balloon-guest"),
            ),
            busybox: env_or("BALLOON_RS_BUSYBOX", PathBuf::from("/bin/busybox")),
            qemu: env_or(
                "BALLOON_RS_QEMU",
                PathBuf::from("/usr/bin/qemu-system-x86_64"),
            ),
        };
        let checks: [(&'static str, &Path, &'static str); 6] = [
            ("kernel image", &a.kernel, "run 'make kernel'"),
            ("C driver module", &a.c_driver, "run 'make kernel'"),
            ("balloon_rs module", &a.balloon_rs, "run 'make'"),
            ("guest agent binary", &a.guest_bin, "run 'make guest'"),
            (
                "static busybox",
                &a.busybox,
                "run 'make setup' (Debian package busybox-static)",
            ),
            (
                "QEMU",
                &a.qemu,
                "run 'make setup' (Debian package qemu-system-x86)",
            ),
        ];
        for (what, path, hint) in checks {
            if !path.exists() {
                return Err(Error::Missing {
                    what,
                    path: path.to_path_buf(),
                    hint,
                });
            }
        }
        Ok(a)
    }

    /// The module file of `driver`.
    pub fn module(&self, driver: Driver) -> &Path {
        match driver {
            Driver::BalloonRs => &self.balloon_rs,
            Driver::C => &self.c_driver,
        }
    }
}
