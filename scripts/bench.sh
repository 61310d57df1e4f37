#!/usr/bin/env bash
# Benchmarks Sluice against Apache Flink 2.3 on this machine (BENCHMARKS.md has the method and
# the results). Installs what is missing: Flink from PyPI into a venv under the cache dir, Java
# 17 and iperf3 from Debian; builds Sluice in release mode; then runs scripts/bench.py, which
# alternates the two systems over several repetitions and prints median/min/max and ratios.
#
#   scripts/bench.sh [--reps N] [--rows N] [--only P1,P2,P3,P4,P5,P7,K1,G1,S1] [--no-flink]
#                      [--kafka-records N] [--kafka-broker tansu|noida] [--pg-rows N]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$SLUICE_HOME"
sluice_deps build java iperf3 || die "missing dependencies (see above)"
sluice_deps flink || echo "(Flink could not be installed; Sluice's figures only)"
sluice_deps kafka tansu || echo "(no Kafka-protocol broker: K1 cannot run)"
export SLUICE_KAFKA_BIN="$(kafka_bin)" SLUICE_TANSU_BIN="$(tansu_bin)"
sluice_deps postgres || echo "(no PostgreSQL: G1 cannot run)"
echo "==> cargo build --release --bins"
cargo build --release --bins --quiet
echo "==> $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB"
exec python3 scripts/bench.py --sluice-bin "$CARGO_TARGET_DIR/release" "$@"
