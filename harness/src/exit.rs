//! The exit codes of `powercut` (SPEC §5.1): a small, stable contract.

/// No violation found.
pub const OK: i32 = 0;
/// Violations found (a failing case, a reproduced replay, a missed bug).
pub const VIOLATIONS: i32 = 1;
/// Bad usage or input: unknown flag, malformed scenario or case id, corrupt
/// bundle.
pub const USAGE: i32 = 2;
/// The harness itself failed (cannot write reports, cannot fork).
pub const HARNESS_FAILED: i32 = 3;
