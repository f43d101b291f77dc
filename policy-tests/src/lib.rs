//! The kernel module's `policy.rs` uses `core` only, so the very same file is
//! compiled here and its `#[cfg(test)]` unit tests run with `cargo test`.
//!
//! Its items are `pub(crate)` (the module is private in the kernel crate), and
//! not every item is used by a test.
#![allow(dead_code)]

#[path = "../../policy.rs"]
mod policy;
