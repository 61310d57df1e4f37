#!/usr/bin/env bash
# Quickstart: builds Sluice, starts a local cluster from conf/ (one jobmanager, the
# taskmanagers of conf/workers, Flink's defaults), runs the analytics example job
# (conf/jobs/analytics.yaml: 1M generated events → keyed 5-minute windows → JSON files), shows
# its output, and stops the cluster again.
#   scripts/quickstart.sh [--keep-running]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
keep=false
[ "${1:-}" = "--keep-running" ] && keep=true

command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain (https://rustup.rs)"
# A C compiler and libclang (RocksDB's bindgen) for the build, curl for the REST calls below.
sluice_deps build curl || die "missing dependencies (see above)"

echo "==> Building (target dir $CARGO_TARGET_DIR)"
(cd "$SLUICE_HOME" && cargo build --bins --quiet)

# The REST endpoint as the configuration says (rest.port of conf/config.yaml, SLUICE_PROPERTIES).
jm_option() { "$(sluice_bin_dir)/jobmanager" --config-dir "$SLUICE_CONF_DIR" --print-option "$1" 2>/dev/null; }
rest="http://localhost:$(jm_option rest.port)"
workers=$(grep -cv '^[[:space:]]*\(#\|$\)' "$SLUICE_CONF_DIR/workers")

cleanup() { "$SLUICE_HOME/scripts/stop-cluster.sh" >/dev/null 2>&1 || true; }
$keep || trap cleanup EXIT

echo "==> Starting a local cluster (1 jobmanager, $workers taskmanagers)"
"$SLUICE_HOME/scripts/start-cluster.sh"

echo "==> Waiting for $workers taskmanagers to register at $rest"
for _ in $(seq 1 100); do
    n=$(curl -fs "$rest/overview" 2>/dev/null | sed -n 's/.*"taskmanagers":\([0-9]*\).*/\1/p')
    [ "${n:-0}" = "$workers" ] && break
    sleep 0.2
done
[ "${n:-0}" = "$workers" ] || die "only ${n:-0} of $workers taskmanagers registered; see $SLUICE_LOG_DIR"

echo "==> GET $rest/overview"
curl -fs "$rest/overview"; echo
echo "==> Taskmanagers (id, slots, managed/network memory in bytes)"
curl -fs "$rest/taskmanagers" | tr '{' '\n' | sed -n 's/.*"id":"\([^"]*\)".*/  \1/p'
echo "==> Memory of each taskmanager (Flink's model, from conf/config.yaml)"
"$(sluice_bin_dir)/taskmanager" --config-dir "$SLUICE_CONF_DIR" --print-memory 2>/dev/null | sed 's/^/  /'
echo "==> sluice run conf/jobs/analytics.yaml"
rm -rf /tmp/sluice-out/analytics
"$(sluice_bin_dir)/sluice" --config-dir "$SLUICE_CONF_DIR" run "$SLUICE_HOME/conf/jobs/analytics.yaml" | sed 's/^/  /'
echo "==> Its output: $(cat /tmp/sluice-out/analytics/part-* | wc -l) windows in /tmp/sluice-out/analytics, for example:"
first=$(ls /tmp/sluice-out/analytics/part-* | head -n 1)
head -n 3 "$first" | sed 's/^/  /'
# The jobmanager announced its metrics address in a Prometheus target file (file SD).
target=$(sed -n 's/.*"targets": *\["\([^"]*\)".*/\1/p' "$SLUICE_LOG_DIR"/prometheus-targets/jobmanager-*.json 2>/dev/null | head -n 1)
echo "==> Prometheus metrics of the jobmanager (http://$target/metrics, from $SLUICE_LOG_DIR/prometheus-targets)"
curl -fs "http://$target/metrics" 2>/dev/null | grep '^flink_jobmanager_\(numRegistered\|taskSlots\)' | sed 's/^/  /' || true
if $keep; then
    echo "==> Cluster left running: REST at $rest, logs in $SLUICE_LOG_DIR; stop it with scripts/stop-cluster.sh"
else
    echo "==> Stopping the cluster (SIGTERM: taskmanagers deregister cleanly)"
fi
