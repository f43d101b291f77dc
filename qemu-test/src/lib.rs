//! The balloon_rs QEMU harness.
//!
//! It builds a busybox initramfs holding both balloon drivers and the
//! `balloon-guest` agent/workload binary, boots QEMU guests with a
//! `virtio-balloon-pci` device, and drives them: shell commands through the
//! serial agent, QMP through the `qapi` crate, the QEMU process's memory from
//! `/proc`. Every guest is killed when its [`Guest`] is dropped, and
//! [`Guest::shutdown`] fails on any kernel warning in the console log.
//!
//! The same QEMU/QMP layer serves the host stub.

pub mod agent;
pub mod artifacts;
pub mod compare;
pub mod error;
pub mod guest;
pub mod initramfs;
pub mod logscan;
pub mod procfs;
pub mod qmp;
pub mod readme;
pub mod steps;

pub use artifacts::{Artifacts, Driver};
pub use error::{Error, Result};
pub use guest::{Accel, Guest, GuestConfig};

/// Generates one `#[test]` per driver, in modules `balloon_rs` and
/// `c_driver`, from functions `fn(Driver) -> Result<()>` of the same names.
#[macro_export]
macro_rules! both_drivers {
    ($($name:ident),* $(,)?) => {
        mod balloon_rs {
            $(#[test] fn $name() -> $crate::Result<()> { super::$name($crate::Driver::BalloonRs) })*
        }
        mod c_driver {
            $(#[test] fn $name() -> $crate::Result<()> { super::$name($crate::Driver::C) })*
        }
    };
}

/// Bytes in a MiB.
pub const MIB: u64 = 1 << 20;
