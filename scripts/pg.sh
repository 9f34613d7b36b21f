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
#
# With VEIL_PG_SSL=1 the server takes TLS connections only: a throwaway CA
# and a server certificate for `localhost` are made with openssl in
# $DIR-ssl/ (ca.crt, plus wrong-ca.crt, an unrelated CA), the `postgres`
# user keeps trust authentication, and a `veil` user needs the password in
# $DIR-ssl/veil.password (0600, scram-sha-256). It prints
# VEIL_TEST_PG_TLS_URL (no sslmode: the tests add theirs) and
# VEIL_TEST_PG_TLS_DIR instead of VEIL_TEST_PG_URL.
set -euo pipefail
PORT="${VEIL_PG_PORT:-55432}"
DIR="${VEIL_PG_DIR:-${TMPDIR:-/tmp}/veil-pg-$PORT}"
SSL="${VEIL_PG_SSL:-}"
SSLDIR="$DIR-ssl"

say_url() {
    if [ -n "$SSL" ]; then
        echo "export VEIL_TEST_PG_TLS_URL=postgres://postgres@localhost:$PORT/postgres VEIL_TEST_PG_TLS_DIR=$SSLDIR"
    else
        echo "export VEIL_TEST_PG_URL=postgres://postgres@127.0.0.1:$PORT/postgres"
    fi
}

# A CA, a server certificate for localhost signed by it, and an unrelated CA.
make_certs() {
    rm -rf "$SSLDIR"
    mkdir -p "$SSLDIR"
    (
        cd "$SSLDIR"
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=veil test CA" \
            -keyout ca.key -out ca.crt 2>/dev/null
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=veil test CA" \
            -keyout wrong-ca.key -out wrong-ca.crt 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
            -keyout server.key -out server.csr 2>/dev/null
        printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >ext.cnf
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
            -days 2 -extfile ext.cnf -out server.crt 2>/dev/null
        head -c 18 /dev/urandom | base64 | tr -d '/+=' >veil.password
        chmod 600 veil.password ./*.key
    )
}

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
        say_url
        exit 0
    fi
    rm -rf "$DIR"
    mkdir -p "$DIR"
    chmod 700 "$DIR"
    if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$DIR"; fi
    as_owner "$BIN/initdb" -D "$DIR" -U postgres -A trust --no-sync >/dev/null
    OPTS="-p $PORT -c listen_addresses=127.0.0.1 -k $DIR -c fsync=off"
    if [ -n "$SSL" ]; then
        make_certs
        cp "$SSLDIR/server.crt" "$SSLDIR/server.key" "$DIR/"
        printf '%s\n' "local all all trust" \
            "hostssl all postgres 127.0.0.1/32 trust" \
            "hostssl all veil 127.0.0.1/32 scram-sha-256" \
            "hostnossl all all 127.0.0.1/32 reject" >"$DIR/pg_hba.conf"
        if [ "$(id -u)" = 0 ]; then
            chown postgres:postgres "$DIR/server.crt" "$DIR/server.key" "$DIR/pg_hba.conf"
        fi
        chmod 600 "$DIR/server.key"
        OPTS="$OPTS -c ssl=on"
    fi
    as_owner "$BIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w -o "$OPTS" start >/dev/null
    if [ -n "$SSL" ]; then
        as_owner "$BIN/psql" -q -h "$DIR" -p "$PORT" -U postgres -d postgres -c \
            "CREATE ROLE veil LOGIN CREATEDB PASSWORD '$(cat "$SSLDIR/veil.password")'" >/dev/null
    fi
    say_url
    ;;
stop)
    BIN=$(bindir || true)
    if [ -n "$BIN" ] && [ -d "$DIR" ]; then
        as_owner "$BIN/pg_ctl" -D "$DIR" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$DIR" "$SSLDIR"
    ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
