//! Names the commit `powercut` is built from, for `powercut --version`.
//!
//! Sets `POWERCUT_COMMIT` to `git rev-parse --short HEAD` of the checkout
//! the harness is built in. Outside a git checkout (a crate from a
//! registry, a source tarball) or without `git`, it is `unknown commit`, and
//! the build goes on. Cargo reruns this script when HEAD moves: a commit, a
//! checkout or a rebase changes `HEAD`, the branch's ref or `packed-refs`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What `--version` says when the commit cannot be known.
const COMMIT_UNKNOWN: &str = "unknown commit";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let commit = git(&manifest_dir, &["rev-parse", "--short", "HEAD"]);
    if commit.is_some() {
        watch_head(&manifest_dir);
    }
    let commit = commit.unwrap_or_else(|| COMMIT_UNKNOWN.to_string());
    println!("cargo:rustc-env=POWERCUT_COMMIT={commit}");
}

/// `git ARGS` run in `dir`: its trimmed output, or `None` if git is missing,
/// fails (not a checkout) or prints nothing.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (output.status.success() && !text.is_empty()).then(|| text.to_string())
}

/// Asks cargo to rerun the script when HEAD moves: the files that hold it
/// (`git rev-parse --git-path` resolves them in linked worktrees too). A
/// branch whose ref is only in `packed-refs` (a fresh clone) gets its loose
/// ref file on the next commit, so then the folder that will hold it is
/// watched. A missing file is never named: cargo would rerun every build.
fn watch_head(dir: &Path) {
    let git_path = |name: &str| git(dir, &["rev-parse", "--git-path", name]).map(|p| dir.join(p));
    let mut watched: Vec<PathBuf> = ["HEAD", "packed-refs"]
        .iter()
        .filter_map(|name| git_path(name))
        .collect();
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"])
        && let Some(path) = git_path(&branch)
    {
        let folder = path.parent().map(Path::to_path_buf);
        watched.push(if path.exists() {
            path
        } else {
            folder.unwrap_or(path)
        });
    }
    for path in watched.iter().filter(|path| path.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
