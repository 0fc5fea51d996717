//! `powercut --version` names the package version and the commit the binary
//! was built from (`harness/build.rs`), so a report or a bug filed against a
//! binary can be traced to its source.

mod common;
use common::{describe, powercut};

#[test]
fn version_names_the_package_version_and_the_commit_of_the_checkout() {
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git runs (the tests run in a git checkout)");
    assert!(head.status.success(), "not a git checkout");
    let commit = String::from_utf8(head.stdout).unwrap().trim().to_string();
    let result = powercut(&["--version"]);
    assert_eq!(result.status.code(), Some(0), "{}", describe(&result));
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert_eq!(
        stdout.trim_end(),
        format!("powercut {} ({commit})", env!("CARGO_PKG_VERSION")),
        "{}",
        describe(&result)
    );
}
