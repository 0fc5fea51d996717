//! Failure bundles: `failures/<case>/`, self-contained enough to replay on
//! another machine with the same binary, without the scenario file.
//!
//! Layout:
//! - `case-id` — the case id, one line;
//! - `scenario.toml` — the scenario the case came from, verbatim;
//! - `verdict.json` — the violations found;
//! - `explanation.txt` — the story in words;
//! - `trace.txt` — the events of the failing cycle up to the crash point;
//! - `image/` — the crash image, as ordinary files;
//! - `recovered.txt`, `expected.txt`, `diff.txt` — states, one key a line.

use crate::report::{ReportError, write_atomically};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Bundles written per run at most: enough to debug, bounded on disk.
pub const BUNDLES_MAX: usize = 32;

/// What a bundle holds.
#[derive(Clone, Debug, Default)]
pub struct Bundle {
    pub case_id: String,
    pub scenario_toml: String,
    pub verdict_json: String,
    pub explanation: String,
    pub trace: String,
    pub image: BTreeMap<String, Vec<u8>>,
    pub recovered: Option<BTreeMap<Vec<u8>, Vec<u8>>>,
    pub expected: Option<BTreeMap<Vec<u8>, Vec<u8>>>,
}

/// Writes `bundle` under `failures_dir/<name>/`; returns the directory.
pub fn write(failures_dir: &Path, name: &str, bundle: &Bundle) -> Result<PathBuf, ReportError> {
    let dir = failures_dir.join(name);
    let image_dir = dir.join("image");
    fs::create_dir_all(&image_dir).map_err(|e| ReportError::new(&image_dir, e))?;
    write_atomically(
        &dir.join("case-id"),
        format!("{}\n", bundle.case_id).as_bytes(),
    )?;
    write_atomically(&dir.join("scenario.toml"), bundle.scenario_toml.as_bytes())?;
    write_atomically(&dir.join("verdict.json"), bundle.verdict_json.as_bytes())?;
    write_atomically(&dir.join("explanation.txt"), bundle.explanation.as_bytes())?;
    write_atomically(&dir.join("trace.txt"), bundle.trace.as_bytes())?;
    for (file, bytes) in &bundle.image {
        write_atomically(&image_dir.join(file), bytes)?;
    }
    if let Some(recovered) = &bundle.recovered {
        write_atomically(&dir.join("recovered.txt"), state_text(recovered).as_bytes())?;
    }
    if let Some(expected) = &bundle.expected {
        write_atomically(&dir.join("expected.txt"), state_text(expected).as_bytes())?;
    }
    if let (Some(recovered), Some(expected)) = (&bundle.recovered, &bundle.expected) {
        write_atomically(
            &dir.join("diff.txt"),
            diff_text(expected, recovered).as_bytes(),
        )?;
    }
    Ok(dir)
}

/// Reads the case id and scenario of a bundle directory.
pub fn read(dir: &Path) -> Result<(String, String), String> {
    let read = |name: &str| {
        fs::read_to_string(dir.join(name))
            .map_err(|e| format!("corrupt bundle {}: cannot read {name}: {e}", dir.display()))
    };
    let case_id = read("case-id")?.trim().to_string();
    let scenario = read("scenario.toml")?;
    Ok((case_id, scenario))
}

/// Renders a byte string readably: UTF-8 text as is, otherwise hex.
pub fn show_bytes(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if text.chars().all(|c| !c.is_control()) => format!("{text:?}"),
        _ => {
            let hex: String = bytes.iter().take(48).map(|b| format!("{b:02x}")).collect();
            let more = if bytes.len() > 48 { "…" } else { "" };
            format!("0x{hex}{more} ({} bytes)", bytes.len())
        }
    }
}

fn state_text(state: &BTreeMap<Vec<u8>, Vec<u8>>) -> String {
    state
        .iter()
        .map(|(key, value)| format!("{} = {}\n", show_bytes(key), show_bytes(value)))
        .collect()
}

/// The keys whose values differ: `-` expected, `+` recovered.
pub fn diff_text(
    expected: &BTreeMap<Vec<u8>, Vec<u8>>,
    recovered: &BTreeMap<Vec<u8>, Vec<u8>>,
) -> String {
    let mut keys: Vec<&Vec<u8>> = expected.keys().chain(recovered.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut text = String::new();
    for key in keys {
        let (want, got) = (expected.get(key), recovered.get(key));
        if want == got {
            continue;
        }
        let show = |v: Option<&Vec<u8>>| v.map_or("(absent)".to_string(), |v| show_bytes(v));
        text.push_str(&format!(
            "key {}\n  - expected {}\n  + recovered {}\n",
            show_bytes(key),
            show(want),
            show(got)
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_round_trips_its_case_id_and_scenario() {
        let dir = tempfile::tempdir().unwrap();
        let mut bundle = Bundle {
            case_id: "pc1:smoke:bank:group:power-loss:s1:t2:3.4".into(),
            scenario_toml: "name = \"smoke\"\n".into(),
            ..Bundle::default()
        };
        bundle.image.insert("control".into(), vec![1, 2, 3]);
        let expected = BTreeMap::from([(b"k".to_vec(), b"new".to_vec())]);
        let recovered = BTreeMap::from([(b"k".to_vec(), b"old".to_vec())]);
        bundle.expected = Some(expected);
        bundle.recovered = Some(recovered);
        let written = write(dir.path(), "case", &bundle).unwrap();
        assert_eq!(
            fs::read(written.join("image/control")).unwrap(),
            vec![1, 2, 3]
        );
        let (case_id, scenario) = read(&written).unwrap();
        assert_eq!(case_id, bundle.case_id);
        assert_eq!(scenario, bundle.scenario_toml);
        let diff = fs::read_to_string(written.join("diff.txt")).unwrap();
        assert!(
            diff.contains("- expected \"new\"") && diff.contains("+ recovered \"old\""),
            "{diff}"
        );
    }

    #[test]
    fn a_missing_bundle_is_one_line() {
        let error = read(Path::new("/nonexistent/bundle")).unwrap_err();
        assert!(error.starts_with("corrupt bundle") && !error.contains('\n'));
    }
}
