//! The kernel module's `policy.rs` uses `core` only, so the very same file is
//! compiled here and its `#[cfg(test)]` unit tests run with `cargo test`.

#[path = "../../policy.rs"]
pub mod policy;
