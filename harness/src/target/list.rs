//! `powercut targets`: every target, its modes, the promise of each mode
//! per fault profile, and whether the target's parts are installed here.

use super::{TARGET_KINDS, TargetKind, TargetMode};
use crate::fault::FaultProfile;
use std::fmt::Write as _;

/// A promise cell: the promise, marked `*` where the fault profile is
/// outside the system's stated assumptions.
fn cell(mode: &TargetMode, fault: FaultProfile) -> String {
    let promise = mode.promise(fault).to_string();
    if mode.outside_assumptions(fault) {
        format!("{promise}*")
    } else {
        promise
    }
}

/// The whole listing, as printed.
pub fn table() -> String {
    let mut rows: Vec<Vec<String>> = vec![
        ["target", "mode"]
            .into_iter()
            .map(str::to_string)
            .chain(FaultProfile::ALL.iter().map(|f| f.name().to_string()))
            .collect(),
    ];
    for kind in TARGET_KINDS {
        for mode in kind.modes() {
            let mut row = vec![kind.name().to_string(), mode_text(*kind, &mode)];
            row.extend(FaultProfile::ALL.iter().map(|&fault| cell(&mode, fault)));
            rows.push(row);
        }
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(text, "{}", line.join("  ").trim_end());
    }
    text.push_str(
        "\npromises: durable (no acknowledged commit lost), window:MS (only the last MS ms), \
         prefix (a consistent prefix), none (losses and corruption counted, not failures);\n\
         * = the fault profile breaks an assumption the system states: reported as outside its assumptions\n\n",
    );
    for kind in TARGET_KINDS {
        let parts = match kind.parts_installed() {
            Ok(()) => "parts installed".to_string(),
            Err(missing) => format!("MISSING: {missing}"),
        };
        let replay = if kind.deterministic() {
            "replays from its case id"
        } else {
            "replays from its bundle's trace"
        };
        let _ = writeln!(
            text,
            "{}: {}; {replay}; {parts}; promises from {}",
            kind.name(),
            kind.description(),
            kind.promises_source()
        );
    }
    text
}

/// The mode as `--target` takes it.
fn mode_text(kind: &dyn TargetKind, mode: &TargetMode) -> String {
    let text = mode.to_string();
    match text.split_once(':') {
        Some((name, rest)) if name == kind.name() => rest.to_string(),
        _ => text,
    }
}

/// Prints the listing; always succeeds.
pub fn main() -> i32 {
    print!("{}", table());
    crate::exit::OK
}
