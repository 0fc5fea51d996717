//! Scenarios and the seeded workload driver.
//!
//! - [`scenario`]: scenario files (TOML), built-ins, trial combos, engine config;
//! - [`driver`]: runs one crash cycle of a workload against a [`crate::target::Target`],
//!   recording its events;
//! - [`tag`]: the tag every written value carries (workload txn id, write index);
//! - [`kv`], [`bank`]: the generators of transactions;
//! - [`threaded`]: kv-threads, many client threads on one engine in real time.

pub mod bank;
pub mod driver;
pub mod kv;
pub mod scenario;
pub mod threaded;

pub use driver::{CycleOutcome, CycleSpec, open_target, run_cycle};
pub use scenario::{
    Budget, Combo, CrashParams, EngineOverrides, Scenario, ScenarioError, Span, WorkloadKind,
    WorkloadParams, parse_duration,
};
