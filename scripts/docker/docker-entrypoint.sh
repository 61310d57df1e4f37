#!/bin/sh
# Runs a Sluice daemon in a container: `jobmanager` or `taskmanager` (further arguments are
# daemon flags, e.g. -D key=value), anything else is executed as is. Configuration: the image's
# conf/config.yaml, overridden by SLUICE_PROPERTIES (YAML lines). A taskmanager announces the
# address it reaches the jobmanager from (detected again whenever it registers, so a container
# reconnected to its network with a new address is reachable again).
set -e
conf=/opt/sluice/conf
case "${1:-jobmanager}" in
    jobmanager)
        shift || true
        exec /opt/sluice/bin/jobmanager --config-dir "$conf" "$@" ;;
    taskmanager)
        shift
        exec /opt/sluice/bin/taskmanager --config-dir "$conf" "$@" ;;
    *)
        exec "$@" ;;
esac
