//! The process-target paths of the supervisor: what replays a failure of a
//! target that is not deterministic.

use crate::case::id::CaseId;
use std::path::Path;

/// What `powercut replay` must be given to reproduce `case_id`: the case
/// id itself for a deterministic target; for a process target or a
/// threaded workload (kv-threads), its
/// bundle directory under `failures_dir` (the bundle holds the trace), or
/// a note when the run kept no bundle of it.
pub fn replay_argument(case_id: &str, failures_dir: Option<&str>) -> String {
    let Ok(case) = case_id.parse::<CaseId>() else {
        return case_id.to_string();
    };
    let threaded = case.workload == crate::workload::WorkloadKind::KvThreads.name();
    if case.target.kind().deterministic() && !threaded {
        return case_id.to_string();
    }
    match failures_dir.map(|dir| Path::new(dir).join(case.bundle_name())) {
        Some(bundle) if bundle.is_dir() => shell_quote(&bundle.to_string_lossy()),
        _ => format!(
            "{} (this case replays from its bundle; none was kept: run with --out)",
            shell_quote(case_id)
        ),
    }
}

/// `text` quoted for a POSIX shell when it needs it.
pub fn shell_quote(text: &str) -> String {
    let plain = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+".contains(&b));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}
