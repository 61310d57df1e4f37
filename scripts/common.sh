#!/usr/bin/env bash
# Shared by the cluster scripts: where Sluice lives, its config, logs, pid files and binaries.
# Override with SLUICE_HOME, SLUICE_CONF_DIR, SLUICE_LOG_DIR, SLUICE_PID_DIR, SLUICE_BIN_DIR.
# As Flink: logs in log/ of the installation (ignored by git in a checkout), pid files in /tmp,
# each named by user, daemon and cluster (the config directory).

SLUICE_HOME=${SLUICE_HOME:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
SLUICE_CONF_DIR=${SLUICE_CONF_DIR:-$SLUICE_HOME/conf}
SLUICE_LOG_DIR=${SLUICE_LOG_DIR:-$SLUICE_HOME/log}
SLUICE_PID_DIR=${SLUICE_PID_DIR:-/tmp}
# Which cluster a pid or log file belongs to: a short checksum of the config directory's real
# path, so two clusters on one host (two config directories) never share pid files or logs.
SLUICE_CLUSTER_ID=${SLUICE_CLUSTER_ID:-$(cd "$SLUICE_CONF_DIR" 2>/dev/null && pwd -P | cksum | cut -d' ' -f1)}
SLUICE_TARGET_DIR=${SLUICE_TARGET_DIR:-$HOME/.cache/sluice-target}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$SLUICE_TARGET_DIR}

# The binaries: SLUICE_BIN_DIR, else an installed bin/ next to the scripts, else the cargo
# target directory (release preferred when it is the newer build).
sluice_bin_dir() {
    if [ -n "${SLUICE_BIN_DIR:-}" ]; then echo "$SLUICE_BIN_DIR"; return; fi
    if [ -x "$SLUICE_HOME/bin/jobmanager" ]; then echo "$SLUICE_HOME/bin"; return; fi
    local rel="$CARGO_TARGET_DIR/release" dbg="$CARGO_TARGET_DIR/debug"
    if [ -x "$rel/jobmanager" ] && { [ ! -x "$dbg/jobmanager" ] || [ "$rel/jobmanager" -nt "$dbg/jobmanager" ]; }; then
        echo "$rel"
    else
        echo "$dbg"
    fi
}

die() { echo "Error: $*" >&2; exit 1; }

# sluice_deps NAME...: the one place that installs what a script needs (scripts/deps.sh).
. "$SLUICE_HOME/scripts/deps.sh"
