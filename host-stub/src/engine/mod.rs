//! The pure decisions, shared by the real loop and the simulator: nothing
//! here reads or writes the host.

pub mod alerts;
pub mod balance;
pub mod policy;
