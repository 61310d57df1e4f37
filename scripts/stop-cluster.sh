#!/usr/bin/env bash
# Stops what start-cluster.sh started: every taskmanager (locally and on the workers' hosts),
# then the jobmanager. Each gets SIGTERM (clean deregistration) before any SIGKILL.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
scripts="$SLUICE_HOME/scripts"

workers="$SLUICE_CONF_DIR/workers"
remote=$( [ -f "$workers" ] && grep -v '^[[:space:]]*\(#\|$\)' "$workers" | awk '{print $1}' | sort -u | grep -v -x -e localhost -e 127.0.0.1 -e "$(hostname)" || true )
for host in $remote; do
    ssh -n "$host" -- "cd '$SLUICE_HOME' && scripts/taskmanager.sh stop-all" || true
done
"$scripts/taskmanager.sh" stop-all
"$scripts/jobmanager.sh" stop-all
