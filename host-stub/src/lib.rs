//! balloon-host: the host-side memory manager of balloon_rs.
//!
//! It plays the hypervisor's memory manager for a small overcommitted host:
//! it runs (or attaches to) QEMU guests, watches host and guest memory, and
//! reclaims in tiers, least disruptive first — page sharing (KSM),
//! ballooning (QMP `balloon`), compression (memory cgroup limit + zswap) and
//! swapping (swap file) — and gives memory back when pressure passes.
//!
//! The crate's folders are its architecture:
//!
//! - [`engine`]: the pure decisions — [`engine::policy::decide`] (host
//!   state, balloon targets, cgroup limits, KSM), the balancer
//!   ([`engine::balance::plan`]) and the alerts. Both the real loop and the
//!   simulator call them; nothing in it touches the host.
//! - [`sim`]: the simulator — synthetic workloads, VM and host models, the
//!   policies compared on one host ([`sim::simulate`]) and on a cluster
//!   ([`sim::cluster`]).
//! - [`mechanisms`]: the host's own reclamation mechanisms (KSM, zswap, swap
//!   file, memory cgroups) and the journal that puts every setting back.
//! - [`backend`]: the guests, behind one trait ([`backend::Backend`]): a QEMU
//!   this process launched, a QEMU found by its QMP socket, a libvirt domain.
//! - [`control`]: the control loop ([`control::ControlLoop`]: observe,
//!   decide, act, record, each tick) and the daemon's config.
//! - [`record`]: what a run records (the timeline) and what is derived from
//!   it (the summary, the right-sizing report).
//! - [`render`]: tables, the live view, charts, Prometheus exposition —
//!   presentation only.
//!
//! Guests are booted and driven through `qemu_ctl`, the crate the test
//! harness uses too.

pub mod backend;
pub mod cli;
pub mod control;
pub mod engine;
pub mod error;
pub mod record;
pub mod render;
pub mod scenario;
pub mod sim;
pub mod size;

pub use error::{Error, Result};
/// The host's mechanisms: the crate `host_mechanisms`.
pub use host_mechanisms as mechanisms;
