//! The simulator: the engine's policies driven on modelled hosts by
//! synthetic workload traces — the fleet and its traces ([`workload`]), one
//! VM on the host model ([`vm`]), one host and the policies compared there
//! ([`simulate`]), a cluster with the balancer ([`cluster`]). Its tables
//! and charts are in [`crate::render`].

pub mod cluster;
pub mod simulate;
pub mod vm;
pub mod workload;
