#!/usr/bin/env bash
# Starts a standalone cluster as Flink's start-cluster.sh does: the jobmanager here, then one
# taskmanager per line of $SLUICE_CONF_DIR/workers (localhost locally, other hosts over ssh).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
scripts="$SLUICE_HOME/scripts"

"$scripts/jobmanager.sh" start
workers="$SLUICE_CONF_DIR/workers"
[ -f "$workers" ] || die "$workers not found (one taskmanager host per line)"
grep -v '^[[:space:]]*\(#\|$\)' "$workers" | while read -r host _; do
    case "$host" in
        localhost|127.0.0.1|"$(hostname)") "$scripts/taskmanager.sh" start ;;
        *) ssh -n "$host" -- "cd '$SLUICE_HOME' && SLUICE_CONF_DIR='$SLUICE_CONF_DIR' scripts/taskmanager.sh start" ;;
    esac
done
