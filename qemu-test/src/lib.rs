//! The balloon_rs test harness: the guest tests (`tests/`), the steps they
//! and the tools share ([`steps`]), `make compare`'s scenarios and table
//! ([`compare`]), README's generated test tables ([`readme`]) and the
//! command-line tools in `src/bin/`.
//!
//! Booting and driving guests is [`qemu_ctl`]'s (re-exported here, so a test
//! writes `qemu_test::Guest`); the host stub uses the same crate.

pub mod compare;
pub mod readme;
pub mod steps;

pub use qemu_ctl::{agent, artifacts, error, guest, initramfs, logscan, procfs, qmp};
pub use qemu_ctl::{ensure, Accel, Artifacts, Driver, Error, Guest, GuestConfig, Result, MIB};

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
