#!/usr/bin/env bash
# Benchmarks Sluice against Apache Flink 2.3 on this machine (BENCHMARKS.md has the method and
# the results). Installs what is missing: Flink from PyPI into a venv under the cache dir, Java
# 17 and iperf3 from Debian; builds Sluice in release mode; then runs scripts/bench.py, which
# alternates the two systems over several repetitions and prints median/min/max and ratios.
#
#   scripts/bench.sh [--reps N] [--rows N] [--only P1,P2,P3,P4,P5,P7] [--no-flink]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$SLUICE_HOME"
SLUICE_TOOLS_DIR=${SLUICE_TOOLS_DIR:-$HOME/.cache/sluice-tools}
export SLUICE_TOOLS_DIR
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
missing=()
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v iperf3 >/dev/null || missing+=(iperf3)
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> Installing ${missing[*]}"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ! -x "$SLUICE_TOOLS_DIR/flink-venv/bin/python" ] || ! "$SLUICE_TOOLS_DIR/flink-venv/bin/python" -c "import pyflink" 2>/dev/null; then
    echo "==> Installing Apache Flink 2.3 (PyPI apache-flink) into $SLUICE_TOOLS_DIR/flink-venv"
    python3 -m venv "$SLUICE_TOOLS_DIR/flink-venv"
    "$SLUICE_TOOLS_DIR/flink-venv/bin/pip" install -q apache-flink==2.3.0 || echo "(Flink could not be installed; Sluice's figures only)"
fi
echo "==> cargo build --release --bins"
cargo build --release --bins --quiet
echo "==> $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB"
exec python3 scripts/bench.py --sluice-bin "$CARGO_TARGET_DIR/release" "$@"
