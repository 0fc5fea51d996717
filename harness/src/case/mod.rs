//! One case: what names it, how it is stored and how it is told.
//!
//! - [`id`]: case ids (`pc1:…`), everything needed to rebuild one crash state;
//! - [`bundle`]: the failure bundle directory, written by the supervisor and
//!   read back by replay and shrink;
//! - [`explain`]: the story of a case in words, from its trace, its fault
//!   choices and the oracle's verdict.
//!
//! Pure data and formatting: nothing here runs a workload or a recovery (that
//! is [`crate::supervisor`]), so the supervisor and [`crate::triage`] both
//! build on it.

pub mod bundle;
pub mod explain;
pub mod id;
