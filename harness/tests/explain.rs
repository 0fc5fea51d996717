//! `replay --explain` tells what recovery found in words (never a
//! `RecoveryReport { .. }` dump): where redo started and from which
//! checkpoint, where the log ended and why, and the losers by the
//! workload's transaction ids. The planted `no-undo` bug leaves a loser's
//! value in place (a phantom), so the loser named must be the phantom's
//! writer.

mod common;
use common::{describe, powercut};
use proptest::prelude::*;

#[test]
fn explain_names_the_loser_that_left_a_phantom_in_words() {
    let run = powercut(&[
        "run",
        "--bug",
        "no-undo",
        "--policy",
        "always",
        "--fault",
        "process-crash",
        "--trials",
        "6",
        "--jobs",
        "1",
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", describe(&run));
    let stdout = String::from_utf8_lossy(&run.stdout);
    let case = stdout
        .lines()
        .filter(|line| line.contains("× phantom "))
        .find_map(|line| {
            line.split_once("powercut replay ")
                .map(|(_, case)| case.trim())
        })
        .unwrap_or_else(|| panic!("no phantom group:\n{stdout}"));
    let replay = powercut(&["replay", case, "--explain"]);
    let text = String::from_utf8_lossy(&replay.stdout);
    assert_eq!(replay.status.code(), Some(1), "{}", describe(&replay));
    assert!(!text.contains("RecoveryReport {"), "{text}");
    let found = text
        .split_once("What recovery found:\n")
        .unwrap_or_else(|| panic!("{text}"))
        .1;
    assert!(found.contains("  redo started at LSN 0x"), "{found}");
    assert!(found.contains("from the checkpoint at LSN 0x"), "{found}");
    assert!(found.contains("  the log ends at LSN 0x"), "{found}");
    assert!(
        found.contains("loser transaction(s), with no commit or abort record"),
        "{found}"
    );
    assert!(
        found.contains("compensation record(s) (CLRs) undid"),
        "{found}"
    );
    // The phantom's writer, as the oracle names it, is a loser by that name.
    let writer = text
        .split_once("holds a value of txn ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("a phantom's writer: {text}"));
    assert!(
        found.contains(&format!("workload txn {writer} (engine txn ")),
        "{found}"
    );
}

proptest! {
    /// The engine target reads the workload's txn id from a value the way
    /// the oracle's tag writes it.
    #[test]
    fn the_engine_target_reads_the_oracles_value_tags(txn: u64, index: u32, payload in proptest::collection::vec(any::<u8>(), 0..32)) {
        let value = harness::oracle::tag::tagged_value(txn, index, &payload);
        prop_assert_eq!(harness::target::EngineTarget::workload_txn_of(&value), Some(txn));
        prop_assert_eq!(harness::target::EngineTarget::workload_txn_of(&value[..7]), None);
    }
}
