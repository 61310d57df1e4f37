#!/usr/bin/env bash
# taskmanager.sh (start|stop|stop-all|status) [-D key=value ...]: adds or removes a taskmanager
# of the local cluster (each start adds one more; stop removes the newest).
exec "$(dirname "${BASH_SOURCE[0]}")/sluice-daemon.sh" "${1:-}" taskmanager "${@:2}"
