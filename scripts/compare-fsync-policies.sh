#!/usr/bin/env bash
# The fsync-policy report: every default policy at 1 and 8 committing
# threads, power loss and process crash, SQLite beside it. Writes
# reports/fsync-policies.csv and reports/fsync-policies.svg; exits 1 if a
# policy check fails. Arguments are passed on (e.g. --duration 5m).
# The throughput side runs in the current directory: it must be a real disk.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin powercut
exec ./target/release/powercut compare --duration 60s --out reports "$@"
