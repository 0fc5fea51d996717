//! The README's first screen serves a newcomer: it opens with the two
//! commands (run, test), and within 60 lines has a caught bug with its
//! replay line and the command table; every `docs/` file it links exists.

use std::path::Path;

/// Lines of a first screen.
const FIRST_SCREEN_LINES_MAX: usize = 60;

fn readme() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join("README.md")).expect("README.md")
}

#[test]
fn the_first_screen_opens_with_the_two_commands_and_holds_the_command_table() {
    let text = readme();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "# powercut");
    let first_block: Vec<&str> = lines
        .iter()
        .skip_while(|l| !l.starts_with("```"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .map(|l| l.split('#').next().unwrap().trim_end())
        .collect();
    assert_eq!(
        first_block,
        [
            "cargo run --release --bin powercut -- run",
            "cargo test --workspace --release"
        ]
    );
    let screen = &lines[..FIRST_SCREEN_LINES_MAX.min(lines.len())];
    let table_end = screen
        .iter()
        .rposition(|l| l.starts_with("| `powercut "))
        .expect("the command table on the first screen");
    assert!(
        lines
            .get(table_end + 1)
            .is_some_and(|l| !l.starts_with('|')),
        "the command table ends within {FIRST_SCREEN_LINES_MAX} lines"
    );
    assert!(screen.iter().any(|l| l.contains("powercut replay pc1:")));
    assert!(
        screen
            .iter()
            .any(|l| l.contains("cargo install --path harness"))
    );
}

#[test]
fn every_linked_doc_exists() {
    let text = readme();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut linked = 0;
    for part in text.split("](").skip(1) {
        let target = part.split(')').next().unwrap();
        if target.starts_with("docs/") {
            assert!(root.join(target).is_file(), "README links {target}");
            linked += 1;
        }
    }
    assert!(
        linked >= 5,
        "the long explanations are linked from the README"
    );
}
