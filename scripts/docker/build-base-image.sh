#!/usr/bin/env bash
# Builds a Debian base image locally, for Docker engines without registry access (they start
# with no images, so `FROM debian:bookworm-slim` cannot be pulled): debootstrap a minimal
# bookworm root filesystem from Debian's package mirror and `docker import` it. The runtime
# image (build-image.sh) is built FROM it via the BASE_IMAGE build argument.
#
#   scripts/docker/build-base-image.sh [IMAGE]     (default sluice-base:bookworm; kept if present)
set -euo pipefail
image=${1:-sluice-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if docker image inspect "$image" >/dev/null 2>&1; then
    echo "Base image $image exists."
    exit 0
fi
if ! command -v debootstrap >/dev/null; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq debootstrap >/dev/null
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
echo "==> debootstrap bookworm (minbase) from $mirror"
debootstrap --variant=minbase --include=ca-certificates,curl bookworm "$root" "$mirror" >/dev/null
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
echo "==> docker import → $image"
tar -C "$root" -c . | docker import - "$image" >/dev/null
echo "Built $image."
