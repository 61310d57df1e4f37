#!/usr/bin/env bash
# jobmanager.sh (start|stop|stop-all|status) [-D key=value ...]: the local jobmanager daemon.
exec "$(dirname "${BASH_SOURCE[0]}")/sluice-daemon.sh" "${1:-}" jobmanager "${@:2}"
