#!/usr/bin/env bash
# The chaos suite for N rounds (default 100): one HA cluster on a local SeaweedFS runs a bounded
# exactly-once job per round while a random fault hits it (kill -9 of a taskmanager or of the
# jobmanager, SIGSTOP of SeaweedFS or of a taskmanager, kill -9 of every taskmanager in the
# finishing phase). Prints each round and the tally: rounds, recoveries, recovery time
# percentiles, missing, duplicated, wrong. SLUICE_CHAOS_SEED=... repeats a run.
#   scripts/chaos.sh [ROUNDS]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$SLUICE_HOME"
rounds=${1:-100}
case "$rounds" in ''|*[!0-9]*) die "ROUNDS must be a whole number, got '$rounds'";; esac
sluice_deps build curl seaweedfs || die "missing dependencies (see above)"
cargo build --workspace --bins --quiet
SLUICE_CHAOS_ROUNDS=$rounds cargo test --quiet -p sluice-tests --test chaos -- --nocapture 2>&1 \
    | grep -E "^(chaos|round)|panicked|test result"
