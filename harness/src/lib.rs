//! powercut: a crash-consistency torture harness (library behind the
//! `powercut` command).
//!
//! - [`target`]: the seam through which an engine under test is driven;
//! - [`fault`]: recording storage, the trace, crash images per fault profile;
//! - [`workload`]: scenarios and the seeded workload driver;
//! - [`oracle`]: what a recovered state must be, and the violations;
//! - [`supervisor`]: forks, kills, recovers and verifies; case ids;
//! - [`mutants`]: `powercut mutants`, the planted-bug detection table;
//! - [`report`]: summary.json, trials.csv, junit.xml, bundles;
//! - [`bench`]: `powercut bench engine|harness`;
//! - [`compare`]: `powercut compare`, the fsync-policy report.

pub mod bench;
pub mod case;
pub mod compare;
pub mod exit;
pub mod fault;
pub mod mutants;
pub mod oracle;
pub mod report;
pub mod supervisor;
pub mod target;
pub mod triage;
pub mod workload;
