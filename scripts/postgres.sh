#!/usr/bin/env bash
# A local PostgreSQL server for trying Sluice's PostgreSQL sink: Debian's `postgresql`
# (installed by the same helper the tests use), initialised on first start and listening on
# 127.0.0.1 only, with prepared transactions enabled (the exactly-once sink needs them).
#
#   scripts/postgres.sh start [PORT]   # default 5432; data in $SLUICE_LOG_DIR/postgres-data
#   scripts/postgres.sh stop
#   scripts/postgres.sh status
#   scripts/postgres.sh psql [ARGS…]   # psql connected to it
#
# The server trusts local connections (user postgres, any password): for development and
# tests, not for production data. As root it runs as the `postgres` user (PostgreSQL refuses
# to run as root).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

data_dir="$SLUICE_LOG_DIR/postgres-data"
log_file="$SLUICE_LOG_DIR/sluice-${USER:-$(id -un)}-postgres-$SLUICE_CLUSTER_ID.log"
port_file="$data_dir/sluice-port"

as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-}" in
    start)
        port=${2:-5432}
        sluice_deps postgres || die "PostgreSQL could not be installed (see above)"
        bin=$(postgres_bin_dir)
        mkdir -p "$SLUICE_LOG_DIR"
        if [ ! -f "$data_dir/PG_VERSION" ]; then
            mkdir -p "$data_dir"
            [ "$(id -u)" = 0 ] && chown postgres: "$data_dir" "$SLUICE_LOG_DIR"
            as_owner "$bin/initdb" -D "$data_dir" -U postgres -A trust -E UTF8 >/dev/null ||
                die "initdb of $data_dir failed"
        fi
        if as_owner "$bin/pg_ctl" -D "$data_dir" status >/dev/null 2>&1; then
            die "PostgreSQL already runs on $data_dir; scripts/postgres.sh stop first"
        fi
        touch "$log_file"
        [ "$(id -u)" = 0 ] && chown postgres: "$log_file"
        as_owner "$bin/pg_ctl" -D "$data_dir" -l "$log_file" -w -t 30 \
            -o "-p $port -k $data_dir -c listen_addresses=127.0.0.1 -c max_prepared_transactions=64 -c max_connections=200" \
            start >/dev/null || die "PostgreSQL did not start (log: $log_file)"
        echo "$port" | as_owner tee "$port_file" >/dev/null
        echo "PostgreSQL on 127.0.0.1:$port (url: jdbc:postgresql://127.0.0.1:$port/postgres, username: postgres), log $log_file"
        ;;
    stop)
        bin=$(postgres_bin_dir)
        if [ -f "$data_dir/PG_VERSION" ] && as_owner "$bin/pg_ctl" -D "$data_dir" status >/dev/null 2>&1; then
            as_owner "$bin/pg_ctl" -D "$data_dir" -m fast -w stop >/dev/null && echo "PostgreSQL stopped"
        else
            echo "no PostgreSQL running"
        fi
        ;;
    status)
        bin=$(postgres_bin_dir)
        if [ -f "$data_dir/PG_VERSION" ] && as_owner "$bin/pg_ctl" -D "$data_dir" status >/dev/null 2>&1; then
            echo "PostgreSQL running on 127.0.0.1:$(cat "$port_file" 2>/dev/null || echo '?')"
        else
            echo "no PostgreSQL running"
            exit 1
        fi
        ;;
    psql)
        shift
        exec psql -h 127.0.0.1 -p "$(cat "$port_file")" -U postgres "$@"
        ;;
    *)
        echo "usage: scripts/postgres.sh start [PORT] | stop | status | psql [ARGS…]" >&2
        exit 2
        ;;
esac
