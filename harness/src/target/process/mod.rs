//! Process targets (SPEC §9): a program that runs as its own process with
//! its data directory on a FUSE file system served from a [`Storage`]
//! (the recording storage during the workload, a crash image during
//! verification).
//!
//! - [`fuse`]: the file system over a `Storage`;
//! - [`namespace`]: the private mount namespace every mount lives in;
//! - [`program`]: starting, waiting for and killing a program (its own
//!   process group, its output kept in files).
//!
//! [`Storage`]: engine::storage::Storage

pub mod fuse;
pub mod namespace;
pub mod program;
