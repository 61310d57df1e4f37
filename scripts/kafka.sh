#!/usr/bin/env bash
# A local Kafka-protocol broker for trying Sluice's Kafka connector: noida-db (PyPI; installed
# into ~/.cache/sluice-tools/kafka-venv by the same helper the tests use), on 127.0.0.1.
#
#   scripts/kafka.sh start [PORT]   # default 9092; data in $SLUICE_LOG_DIR/kafka-data
#   scripts/kafka.sh stop
#   scripts/kafka.sh status
#
# It speaks the Kafka protocol (topics, groups, transactions, read_committed) but is not Apache
# Kafka: fine for development and tests, not for production data.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

pid_file="$SLUICE_PID_DIR/sluice-${USER:-$(id -un)}-kafka-$SLUICE_CLUSTER_ID.pid"
data_dir="$SLUICE_LOG_DIR/kafka-data"
log_file="$SLUICE_LOG_DIR/sluice-${USER:-$(id -un)}-kafka-$SLUICE_CLUSTER_ID.log"

running() { [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; }

case "${1:-}" in
    start)
        port=${2:-9092}
        sluice_deps kafka || die "the Kafka broker could not be installed (see above)"
        running && die "a broker already runs (pid $(cat "$pid_file")); scripts/kafka.sh stop first"
        mkdir -p "$data_dir" "$SLUICE_LOG_DIR"
        nohup "$(kafka_bin)" start --data-dir "$data_dir" --host 127.0.0.1 --only kafka \
            --kafka-port "$port" >"$log_file" 2>&1 &
        echo $! >"$pid_file"
        for _ in $(seq 1 100); do
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
            sleep 0.1
        done
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || die "the broker did not listen on 127.0.0.1:$port (log: $log_file)"
        echo "Kafka broker on 127.0.0.1:$port (properties.bootstrap.servers: 127.0.0.1:$port), log $log_file"
        ;;
    stop)
        if running; then
            kill "$(cat "$pid_file")" && rm -f "$pid_file" && echo "Kafka broker stopped"
        else
            rm -f "$pid_file"
            echo "no Kafka broker running"
        fi
        ;;
    status)
        if running; then echo "Kafka broker running (pid $(cat "$pid_file"))"; else echo "no Kafka broker running"; exit 1; fi
        ;;
    *)
        echo "usage: scripts/kafka.sh start [PORT] | stop | status" >&2
        exit 2
        ;;
esac
