#!/usr/bin/env bash
# Starts and stops Sluice daemons in the background, as Flink's flink-daemon.sh does:
#   sluice-daemon.sh (start|stop|stop-all|status) (jobmanager|taskmanager) [daemon flags...]
# One pid file per daemon kind and cluster ($SLUICE_PID_DIR/sluice-$USER-<kind>-<cluster>.pid,
# one pid per line, so several taskmanagers can run on one host; <cluster> tells the config
# directories apart); logs in $SLUICE_LOG_DIR. Each daemon announces its metrics address to
# Prometheus through a target file in $SLUICE_LOG_DIR/prometheus-targets (file-based service
# discovery; scripts/prometheus/prometheus.yml reads it) unless the config names another
# metrics.reporter.prom.file-sd-dir.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ $# -ge 2 ] || die "usage: $(basename "$0") (start|stop|stop-all|status) (jobmanager|taskmanager) [flags...]"
action=$1; kind=$2; shift 2
case "$kind" in jobmanager|taskmanager) ;; *) die "unknown daemon '$kind' (jobmanager or taskmanager)";; esac

pid_file="$SLUICE_PID_DIR/sluice-${USER:-$(id -un)}-$kind-$SLUICE_CLUSTER_ID.pid"
mkdir -p "$SLUICE_LOG_DIR" "$SLUICE_PID_DIR"

# Running, and not a zombie waiting for its (re)parent to reap it.
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    local state
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [ "$state" != Z ]
}

# Drops pids of processes that are gone.
prune() {
    [ -f "$pid_file" ] || return 0
    local live=""
    while read -r pid; do
        [ -n "$pid" ] && alive "$pid" && live="$live$pid"$'\n'
    done < "$pid_file"
    if [ -n "$live" ]; then printf '%s' "$live" > "$pid_file"; else rm -f "$pid_file"; fi
}

stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do alive "$pid" || return 0; sleep 0.1; done
    echo "$kind (pid $pid) did not stop within 10 s; killing it." >&2
    kill -KILL "$pid" 2>/dev/null || true
}

case "$action" in
    start)
        prune
        bin="$(sluice_bin_dir)/$kind"
        [ -x "$bin" ] || die "$bin not found; build with 'cargo build --bins' or set SLUICE_BIN_DIR"
        n=$( [ -f "$pid_file" ] && wc -l < "$pid_file" || echo 0 )
        log="$SLUICE_LOG_DIR/sluice-${USER:-$(id -un)}-$kind-$SLUICE_CLUSTER_ID-$n-$(hostname).log"
        sd=()
        if ! "$(sluice_bin_dir)/jobmanager" --config-dir "$SLUICE_CONF_DIR" --print-option metrics.reporter.prom.file-sd-dir >/dev/null 2>&1; then
            sd=(-D "metrics.reporter.prom.file-sd-dir=$SLUICE_LOG_DIR/prometheus-targets")
        fi
        nohup "$bin" --config-dir "$SLUICE_CONF_DIR" "${sd[@]}" "$@" >> "$log" 2>&1 < /dev/null &
        pid=$!
        sleep 0.2
        alive "$pid" || die "$kind exited at once; see $log:"$'\n'"$(tail -n 5 "$log")"
        echo "$pid" >> "$pid_file"
        echo "Started $kind (pid $pid) on $(hostname); log: $log"
        ;;
    stop)
        prune
        [ -f "$pid_file" ] || { echo "No $kind to stop on $(hostname)."; exit 0; }
        pid=$(tail -n 1 "$pid_file")
        stop_pid "$pid"
        prune
        echo "Stopped $kind (pid $pid) on $(hostname)."
        ;;
    stop-all)
        prune
        [ -f "$pid_file" ] || { echo "No $kind to stop on $(hostname)."; exit 0; }
        while read -r pid; do [ -n "$pid" ] && stop_pid "$pid" && echo "Stopped $kind (pid $pid)."; done < "$pid_file"
        rm -f "$pid_file"
        ;;
    status)
        prune
        if [ -f "$pid_file" ]; then echo "$kind running: $(tr '\n' ' ' < "$pid_file")"; else echo "$kind: none running"; fi
        ;;
    *) die "unknown action '$action' (start, stop, stop-all, status)";;
esac
