#!/usr/bin/env bash
# A throwaway PostgreSQL server for Veil's tests, on loopback only.
#
#   eval "$(scripts/pg.sh start)"   # prints `export VEIL_TEST_PG_URL=...`
#   scripts/pg.sh stop
#
# Installs Debian's postgresql package if no server binaries are present
# (as root, as on CI), creates a cluster in a temporary folder owned by the
# `postgres` user (trust authentication, 127.0.0.1 only, port
# $VEIL_PG_PORT, default 55432) and starts it. `stop` stops it and removes
# the folder. Nothing else on the machine is touched.
set -euo pipefail
PORT="${VEIL_PG_PORT:-55432}"
DIR="${VEIL_PG_DIR:-${TMPDIR:-/tmp}/veil-pg-$PORT}"

bindir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

case "${1:-}" in
start)
    BIN=$(bindir || true)
    if [ -z "$BIN" ]; then
        if [ "$(id -u)" = 0 ]; then
            apt-get update -q >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2
        else
            sudo apt-get update -q >&2
            sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2
        fi
        BIN=$(bindir)
    fi
    if [ -f "$DIR/postmaster.pid" ] && as_owner "$BIN/pg_ctl" -D "$DIR" status >/dev/null 2>&1; then
        echo "export VEIL_TEST_PG_URL=postgres://postgres@127.0.0.1:$PORT/postgres"
        exit 0
    fi
    rm -rf "$DIR"
    mkdir -p "$DIR"
    chmod 700 "$DIR"
    if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$DIR"; fi
    as_owner "$BIN/initdb" -D "$DIR" -U postgres -A trust --no-sync >/dev/null
    as_owner "$BIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w \
        -o "-p $PORT -c listen_addresses=127.0.0.1 -k $DIR -c fsync=off" start >/dev/null
    echo "export VEIL_TEST_PG_URL=postgres://postgres@127.0.0.1:$PORT/postgres"
    ;;
stop)
    BIN=$(bindir || true)
    if [ -n "$BIN" ] && [ -d "$DIR" ]; then
        as_owner "$BIN/pg_ctl" -D "$DIR" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$DIR"
    ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
