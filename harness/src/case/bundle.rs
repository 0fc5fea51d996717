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
//! - `recovered.txt`, `expected.txt`, `diff.txt` — states, one key a line;
//! - for a process target (not deterministic: its workload cannot be run
//!   again byte for byte), what replays the case without re-running it:
//!   `trace.bin` — the failing cycle's whole trace, LZ4-compressed (with
//!   each event's time when the trace is timed, as a threaded trial's is);
//!   `base/` — the durable disk the cycle started from; `base-state.txt` —
//!   the state that disk holds (`hex-key hex-value` lines).

use crate::fault::shm::{decode_timed_entries, encode_entry_at};
use crate::fault::trace::Event;
use crate::report::{ReportError, write_atomically};
use crate::target::process::line::{hex, unhex};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Bundles written per run at most: enough to debug, bounded on disk
/// (plus, beyond it, the smallest case of each group of a trial that
/// replays only from its bundle: see `supervisor::verify::BundleBudget`).
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
    /// A process target's recorded cycle (`None` for deterministic targets).
    pub recorded: Option<RecordedCycle>,
}

/// What a process target's bundle keeps to replay without the workload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordedCycle {
    /// The failing cycle's whole trace.
    pub events: Vec<Event>,
    /// When each event was appended (a timed trace), or empty: what the
    /// oracle judges a window promise by, kept so a replay judges alike.
    pub times: Vec<u64>,
    /// The durable disk the cycle started from.
    pub base_image: BTreeMap<String, Vec<u8>>,
    /// The state that disk holds.
    pub base_state: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// The first bytes of `trace.bin`.
const TRACE_MAGIC: &[u8; 8] = b"PCTRACE1";
/// The largest decompressed trace a bundle may hold.
pub const TRACE_BYTES_MAX: usize = 1 << 30;

/// `trace.bin`'s bytes for `events`, timed by `times` (one per event, or
/// none).
pub fn encode_trace(events: &[Event], times: &[u64]) -> Vec<u8> {
    assert!(
        times.is_empty() || times.len() == events.len(),
        "a trace is timed all through or not at all"
    );
    let mut raw = Vec::new();
    let mut entry = Vec::new();
    for (index, event) in events.iter().enumerate() {
        encode_entry_at(event, times.get(index).copied(), &mut entry);
        raw.extend_from_slice(&entry);
    }
    let mut out = TRACE_MAGIC.to_vec();
    out.extend_from_slice(&lz4_flex::compress_prepend_size(&raw));
    out
}

/// The events of a `trace.bin` and their times (empty if untimed).
pub fn decode_trace(bytes: &[u8]) -> Result<(Vec<Event>, Vec<u64>), String> {
    let body = bytes
        .strip_prefix(TRACE_MAGIC.as_slice())
        .ok_or("trace.bin does not start with its magic")?;
    let declared = body
        .get(..4)
        .map(|len| u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize)
        .ok_or("trace.bin is truncated")?;
    if declared > TRACE_BYTES_MAX {
        return Err(format!("trace.bin declares {declared} bytes"));
    }
    let raw = lz4_flex::decompress_size_prepended(body).map_err(|e| format!("trace.bin: {e}"))?;
    decode_timed_entries(&raw).map_err(|e| format!("trace.bin: {e}"))
}

fn state_lines(state: &BTreeMap<Vec<u8>, Vec<u8>>) -> String {
    state
        .iter()
        .map(|(key, value)| format!("{} {}\n", hex(key), hex(value)))
        .collect()
}

fn parse_state_lines(text: &str) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            unhex(key)
                .zip(unhex(value))
                .ok_or_else(|| format!("base-state.txt: bad line {line:?}"))
        })
        .collect()
}

/// Writes `files` (paths may name subdirectories) under `dir`.
fn write_tree(dir: &Path, files: &BTreeMap<String, Vec<u8>>) -> Result<(), ReportError> {
    for (file, bytes) in files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| ReportError::new(parent, e))?;
        }
        write_atomically(&path, bytes)?;
    }
    Ok(())
}

/// Reads every file under `dir` (paths relative to it, `/`-separated).
fn read_tree(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) -> Result<(), String> {
        let entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else {
                let name = path
                    .strip_prefix(root)
                    .expect("under root")
                    .to_string_lossy()
                    .into_owned();
                let bytes = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                out.insert(name, bytes);
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    if dir.is_dir() {
        walk(dir, dir, &mut out)?;
    }
    Ok(out)
}

/// The recorded cycle of a bundle, if it holds one (`trace.bin`).
pub fn read_recorded(dir: &Path) -> Result<Option<RecordedCycle>, String> {
    let corrupt = |what: String| format!("corrupt bundle {}: {what}", dir.display());
    let trace = match fs::read(dir.join("trace.bin")) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(corrupt(format!("cannot read trace.bin: {e}"))),
    };
    let (events, times) = decode_trace(&trace).map_err(corrupt)?;
    let base_image = read_tree(&dir.join("base")).map_err(corrupt)?;
    let state_text = fs::read_to_string(dir.join("base-state.txt"))
        .map_err(|e| corrupt(format!("cannot read base-state.txt: {e}")))?;
    let base_state = parse_state_lines(&state_text).map_err(corrupt)?;
    Ok(Some(RecordedCycle {
        events,
        times,
        base_image,
        base_state,
    }))
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
    write_tree(&image_dir, &bundle.image)?;
    if let Some(recorded) = &bundle.recorded {
        write_atomically(
            &dir.join("trace.bin"),
            &encode_trace(&recorded.events, &recorded.times),
        )?;
        let base_dir = dir.join("base");
        fs::create_dir_all(&base_dir).map_err(|e| ReportError::new(&base_dir, e))?;
        write_tree(&base_dir, &recorded.base_image)?;
        write_atomically(
            &dir.join("base-state.txt"),
            state_lines(&recorded.base_state).as_bytes(),
        )?;
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

    /// A process target's bundle keeps its trace, base disk (with nested
    /// paths) and base state, and reads them back exactly; a threaded
    /// trial's timed trace keeps each event's time too.
    #[test]
    fn a_recorded_cycle_round_trips_timed_or_not() {
        let events = vec![
            Event::CreateDir {
                path: "appendonlydir".into(),
            },
            Event::Write {
                file: 0,
                offset: 7,
                data: vec![9; 5000],
            },
            Event::SyncDir {
                dir: "appendonlydir".into(),
                failed: false,
            },
            Event::Acked { txn: 3, now_us: 4 },
        ];
        for times in [Vec::new(), vec![1, 2, 40_000, 40_001]] {
            let dir = tempfile::tempdir().unwrap();
            let recorded = RecordedCycle {
                events: events.clone(),
                times,
                base_image: BTreeMap::from([("appendonlydir/base".into(), b"B".to_vec())]),
                base_state: BTreeMap::from([(b"k\n".to_vec(), Vec::new())]),
            };
            let bundle = Bundle {
                case_id: "c".into(),
                image: BTreeMap::from([("appendonlydir/x".into(), b"X".to_vec())]),
                recorded: Some(recorded.clone()),
                ..Bundle::default()
            };
            let written = write(dir.path(), "case", &bundle).unwrap();
            assert_eq!(
                fs::read(written.join("image/appendonlydir/x")).unwrap(),
                b"X"
            );
            assert_eq!(read_recorded(&written).unwrap(), Some(recorded));
            let compressed = fs::metadata(written.join("trace.bin")).unwrap().len();
            assert!(
                compressed < 1000,
                "the trace is compressed: {compressed} bytes"
            );
            fs::write(written.join("trace.bin"), b"PCTRACE1\xff\xff\xff\x7f").unwrap();
            let error = read_recorded(&written).unwrap_err();
            assert!(
                error.starts_with("corrupt bundle") && !error.contains('\n'),
                "{error}"
            );
        }
    }

    #[test]
    fn a_missing_bundle_is_one_line() {
        let error = read(Path::new("/nonexistent/bundle")).unwrap_err();
        assert!(error.starts_with("corrupt bundle") && !error.contains('\n'));
    }
}
