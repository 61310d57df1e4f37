#!/bin/sh
# Initialises the data directory on first start (user postgres, trusted on the compose
# network: a development cluster, not production) and runs the server in the foreground with
# prepared transactions on (the exactly-once PostgreSQL sink needs them).
set -e
bin=/usr/lib/postgresql/15/bin
data=${PGDATA:-/var/lib/postgresql/data}
mkdir -p "$data" && chown postgres:postgres "$data"
if [ ! -f "$data/PG_VERSION" ]; then
    runuser -u postgres -- "$bin/initdb" -D "$data" -U postgres -A trust -E UTF8 >/dev/null
    echo "host all all 0.0.0.0/0 trust" >> "$data/pg_hba.conf"
fi
exec runuser -u postgres -- "$bin/postgres" -D "$data" -c listen_addresses='*' \
    -c max_prepared_transactions=64 -c unix_socket_directories=/tmp "$@"
