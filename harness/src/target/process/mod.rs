//! Process targets (SPEC §9): a program that runs as its own process with
//! its data directory on a FUSE file system served from a [`Storage`]
//! (the recording storage during the workload, a crash image during
//! verification).
//!
//! - [`fuse`]: the file system over a `Storage`;
//! - [`namespace`]: the private mount namespace every mount lives in;
//! - [`program`]: starting, waiting for and killing a program (its own
//!   process group, its output kept in files);
//! - [`session`]: one start of a program on a mount, in the private
//!   namespace of the (forked, single-threaded) process that starts it;
//! - [`line`]: `line:COMMAND`, a user's program speaking the line protocol;
//! - [`redis`] (with its RESP client [`resp`]): `redis:always|everysec|no`;
//! - [`postgres`]: `postgres:MODE`, PostgreSQL 15 driven over SQL;
//! - [`real_time`]: the virtual clock kept equal to real time for programs
//!   that count real seconds.
//!
//! [`Storage`]: engine::storage::Storage

pub mod fuse;
pub mod line;
pub mod namespace;
pub mod postgres;
pub mod program;
pub mod real_time;
pub mod redis;
pub mod resp;
pub mod session;
pub mod txns;
