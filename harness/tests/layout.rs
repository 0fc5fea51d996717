//! The folders of `harness/src` form layers (docs/design.md, "The harness:
//! folders and what each may use"): a folder uses only the folders listed
//! before it. This test reads every `crate::NAME` path outside comments and
//! fails on a use that points up the list, which is what a circle between
//! two folders needs. It does not see paths spelt through `super::super::`
//! or re-exports; the sources use neither across folders.

use std::fs;
use std::path::Path;

/// Bottom first. `main.rs` and `lib.rs` sit above all of them.
const LAYERS: &[&str] = &[
    "exit",
    "fault",
    "target",
    "oracle",
    "workload",
    "report",
    "case",
    "supervisor",
    "triage",
    "bench",
    "compare",
    "mutants",
];

fn rank(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|layer| *layer == module)
        .unwrap_or_else(|| {
            panic!("module `{module}` is not in LAYERS: place it in docs/design.md and here")
        })
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::NAME` in the code of `text` (comments left out).
fn crate_uses(text: &str) -> Vec<String> {
    let mut uses = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                uses.push(name);
            }
            rest = after;
        }
    }
    uses
}

#[test]
fn no_folder_uses_a_folder_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let first = relative.components().next().expect("non-empty");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "main" || module == "lib" {
            continue;
        }
        let own = rank(&module);
        for used in crate_uses(&fs::read_to_string(file).expect("read")) {
            if used != module && rank(&used) > own {
                wrong.push(format!("{} uses crate::{used}", relative.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "uses against the layering:\n{}",
        wrong.join("\n")
    );
}

/// A canary for the checker itself: a use pointing up is seen, one in a
/// comment is not.
#[test]
fn the_checker_sees_a_use_and_ignores_comments() {
    let uses = crate_uses(
        "use crate::supervisor::run;\n// crate::mutants in words\nlet x = crate::case::id::CaseId::new(); // crate::bench",
    );
    assert_eq!(uses, vec!["supervisor".to_string(), "case".to_string()]);
    assert!(rank("supervisor") > rank("case"));
}
