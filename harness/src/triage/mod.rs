//! Working on one failing case: `powercut replay` (with `--explain`) and
//! `powercut shrink`. Both re-run a case's cycles through the supervisor's
//! trial machinery and read and write bundles ([`crate::case`]).

pub mod process_shrink;
pub mod replay;
pub mod shrink;
