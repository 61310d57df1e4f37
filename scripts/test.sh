#!/usr/bin/env bash
# Runs every check and test on a fresh machine: installs what is missing, then formatting,
# clippy, the build and all cargo tests (unit tests beside the code, end-to-end tests in tests/
# that start real jobmanager/taskmanager processes on 127.0.0.1).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$SLUICE_HOME"

command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain"
# protoc comes vendored (protoc-bin-vendored). The build needs a C compiler and libclang
# (RocksDB's bindgen) and make (librdkafka's build); the storage tests start SeaweedFS (PyPI, in
# a venv under the cache dir).
sluice_deps build curl seaweedfs || die "missing build dependencies (see above)"
# What the Kafka tests use: a Kafka-protocol broker (PyPI noida-db); the PostgreSQL tests: Debian's
# postgresql. What the deployment and compatibility tests use: systemd-analyze, Prometheus, Chromium (the
# dashboard loaded headless), a Docker engine with compose, and the Flink CLI (PyPI
# apache-flink, with Java; javac compiles the probe that reads REST with Flink's client). Those tests print SKIPPED when a tool is missing, and fail instead
# under SLUICE_REQUIRE_TOOLS=1 (as CI runs them), so CI cannot pass by skipping.
test_tools=(kafka postgres systemd-analyze prometheus chromium docker flink jdk)
if ! sluice_deps "${test_tools[@]}"; then
    [ "${SLUICE_REQUIRE_TOOLS:-0}" = 1 ] && die "SLUICE_REQUIRE_TOOLS=1 and a test tool is missing (see above)"
    echo "(a test tool is missing; the tests that need it will print SKIPPED)"
fi
export SLUICE_FLINK_VENV

step() { echo; echo "==> $*"; }
start=$(date +%s)

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo build --bins (the end-to-end tests start these)"
cargo build --workspace --bins --quiet

step "cargo test"
cargo test --workspace --quiet 2>&1 | tee /tmp/sluice-test-$$.log
if grep -q "^test result: FAILED" /tmp/sluice-test-$$.log; then rm -f /tmp/sluice-test-$$.log; exit 1; fi
passed=$(grep -o '[0-9]* passed' /tmp/sluice-test-$$.log | awk '{s+=$1} END {print s+0}')
failed=$(grep -o '[0-9]* failed' /tmp/sluice-test-$$.log | awk '{s+=$1} END {print s+0}')
rm -f /tmp/sluice-test-$$.log
echo
echo "all tests: $passed passed, $failed failed ($(( $(date +%s) - start )) s)"
