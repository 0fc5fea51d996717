//! The process-target paths of the supervisor: what replays a failure of a
//! target that is not deterministic.

use crate::case::id::CaseId;
use std::path::Path;

/// What `powercut replay` must be given to reproduce `case_id`: the case
/// id itself for a deterministic target; for a process target or a
/// threaded workload (kv-threads), its bundle directory under
/// `failures_dir` (the bundle holds the trace), or, when the run kept no
/// bundle of it, the case id and why: no `--out`, or `no_bundle` (the
/// reason the run recorded: the bundle cap, a recovery that left nothing
/// to bundle, a failed write).
pub fn replay_argument(
    case_id: &str,
    failures_dir: Option<&str>,
    no_bundle: Option<&str>,
) -> String {
    let Ok(case) = case_id.parse::<CaseId>() else {
        return case_id.to_string();
    };
    let threaded = case.workload == crate::workload::WorkloadKind::KvThreads.name();
    if case.target.kind().deterministic() && !threaded {
        return case_id.to_string();
    }
    let why = match failures_dir.map(|dir| Path::new(dir).join(case.bundle_name())) {
        Some(bundle) if bundle.is_dir() => return shell_quote(&bundle.to_string_lossy()),
        None => "none was kept: run with --out".to_string(),
        Some(_) => match no_bundle {
            Some(why) => format!("none was kept: {why}"),
            None => format!("it is missing from {}", failures_dir.unwrap_or_default()),
        },
    };
    format!(
        "{} (this case replays from its bundle; {why})",
        shell_quote(case_id)
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    const THREADED: &str = "pc1:kv-threads:kv-threads:group:power-loss:s1:t33:55.50a03282be55ba5e";

    #[test]
    fn a_threaded_case_replays_from_its_bundle_or_says_truly_why_there_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let failures = dir.path().to_str().unwrap();
        let without_out = replay_argument(THREADED, None, None);
        assert!(
            without_out.ends_with("none was kept: run with --out)"),
            "{without_out}"
        );
        let capped = replay_argument(
            THREADED,
            Some(failures),
            Some("the run's cap of 32 bundles was reached"),
        );
        assert!(
            capped.ends_with("none was kept: the run's cap of 32 bundles was reached)")
                && !capped.contains("--out"),
            "{capped}"
        );
        let missing = replay_argument(THREADED, Some(failures), None);
        assert!(missing.contains("it is missing from"), "{missing}");
        let case: CaseId = THREADED.parse().unwrap();
        let bundle = dir.path().join(case.bundle_name());
        std::fs::create_dir(&bundle).unwrap();
        let kept = replay_argument(THREADED, Some(failures), Some("ignored"));
        assert_eq!(kept, shell_quote(bundle.to_str().unwrap()));
        // A deterministic trial's case id replays by itself.
        let smoke = THREADED.replace("kv-threads:kv-threads", "smoke:kv-churn");
        assert_eq!(replay_argument(&smoke, Some(failures), None), smoke);
    }
}
