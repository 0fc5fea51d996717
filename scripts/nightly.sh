#!/usr/bin/env bash
# Nightly torture run: a time-boxed `powercut run` of scenarios/nightly.toml
# on the correct engine, every report in one folder, exit code as
# `powercut run` (0 clean, 1 violations, 2 bad input, 3 harness failed or
# interrupted).
#
# Usage: scripts/nightly.sh [DURATION]
#
# Environment (all optional):
#   POWERCUT_NIGHTLY_DURATION  time budget when no argument is given [30m]
#   POWERCUT_NIGHTLY_OUT       report folder [target/nightly-reports]
#   POWERCUT_SEED              run seed [today's date, YYYYMMDD]; every shard
#                              of one run must get the same seed
#   POWERCUT_SHARD             K/N: run shard K of N, K from 1 to N (CI
#                              matrix entry, k8s completion index + 1)
#   POWERCUT_JOBS              worker processes [all cores]
#   POWERCUT_SCENARIO          scenario file [scenarios/nightly.toml]
#   POWERCUT_BIN               a prebuilt powercut binary [built here]
#
# The folder gets summary.json, trials.csv, failures.csv, junit.xml and
# failures/<case>/ bundles; shard folders join with `powercut merge`.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-${POWERCUT_NIGHTLY_DURATION:-30m}}
out=${POWERCUT_NIGHTLY_OUT:-target/nightly-reports}
seed=${POWERCUT_SEED:-$(date -u +%Y%m%d)}
scenario=${POWERCUT_SCENARIO:-scenarios/nightly.toml}

if [[ -n ${POWERCUT_BIN:-} ]]; then
  bin=$POWERCUT_BIN
else
  cargo build --release --quiet --bin powercut
  bin=${CARGO_TARGET_DIR:-target}/release/powercut
fi

args=(run --scenario "$scenario" --duration "$duration" --seed "$seed" --out "$out")
if [[ -n ${POWERCUT_SHARD:-} ]]; then
  args+=(--shard "$POWERCUT_SHARD")
fi
if [[ -n ${POWERCUT_JOBS:-} ]]; then
  args+=(--jobs "$POWERCUT_JOBS")
fi

# A previous night's report is replaced; any other non-empty folder is refused
# rather than deleted.
if [[ -f $out/summary.json || -d $out/failures ]]; then
  rm -rf "$out/failures" "$out"/{summary.json,trials.csv,failures.csv,junit.xml}
elif [[ -d $out && -n $(ls -A "$out") ]]; then
  echo "nightly: $out exists and is not a powercut report folder; refusing to write into it" >&2
  exit 2
fi
echo "nightly: $bin ${args[*]}" >&2
# exec: SIGINT/SIGTERM (Ctrl-C, a CI cancel, a pod deletion) reach powercut
# itself, which stops its workers and still writes a partial report.
exec "$bin" "${args[@]}"
