//! balloon-host: the host-side memory manager of balloon_rs.
//!
//! It plays the hypervisor's memory manager for a small overcommitted host:
//! it runs (or attaches to) QEMU guests, watches host and guest memory, and
//! reclaims in tiers, least disruptive first — page sharing (KSM),
//! ballooning (QMP `balloon`), compression (memory cgroup limit + zswap) and
//! swapping (swap file) — and gives memory back when pressure passes.
//!
//! The decisions are one pure function, [`policy::decide`], shared by the
//! real loop and the simulator. Guests are booted and driven through
//! `qemu_ctl`, the crate the test harness uses too.

pub mod alerts;
pub mod balance;
pub mod chart;
pub mod cli;
pub mod cluster;
pub mod daemon;
pub mod error;
pub mod host;
#[cfg(feature = "libvirt")]
pub mod libvirt;
#[cfg(not(feature = "libvirt"))]
#[path = "libvirt_absent.rs"]
pub mod libvirt;
pub mod metrics;
pub mod policy;
pub mod report;
pub mod run;
pub mod scenario;
pub mod simulate;
pub mod size;
pub mod summary;
pub mod table;
pub mod text_table;
pub mod timeline;

pub use error::{Error, Result};
