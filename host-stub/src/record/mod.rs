//! What a run records and what is derived from the record.

pub mod report;
pub mod summary;
pub mod timeline;
