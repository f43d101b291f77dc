//! Booting and driving QEMU guests that have a `virtio-balloon-pci` device.
//!
//! It builds a busybox initramfs holding both balloon drivers and the
//! `balloon-guest` agent/workload binary ([`initramfs`]), boots QEMU
//! ([`guest`]) and drives it: shell commands through the serial agent
//! ([`agent`]), QMP through the `qapi` crate ([`qmp`]), the QEMU process's
//! memory and the guest's `/proc` files ([`procfs`]), kernel reports in the
//! console log ([`logscan`]). Every guest is killed when its [`Guest`] is
//! dropped, and [`Guest::shutdown`] fails on any kernel warning in the
//! console log.
//!
//! Two crates use it: the test harness (`qemu-test`) and the host memory
//! manager (`host-stub`), which boots or attaches to guests through it.

pub mod agent;
pub mod artifacts;
pub mod error;
pub mod guest;
pub mod initramfs;
pub mod logscan;
pub mod procfs;
pub mod qmp;

pub use artifacts::{Artifacts, Driver};
pub use error::{Error, Result};
pub use guest::{Accel, Guest, GuestConfig};

/// Bytes in a MiB.
pub const MIB: u64 = 1 << 20;
