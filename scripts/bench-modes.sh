#!/usr/bin/env bash
# One `stampede bench flash-sale` crowd run (10,000 buyers, 1,000 units, 256
# connections, 10 s) against a fresh release server, embedded or cluster, as
# recorded in docs/benchmarks.md. Cluster mode uses the local PostgreSQL,
# Redis and NATS with a fresh database, namespace and streams, removed after.
#
#   cargo build --release -p stampede
#   scripts/bench-modes.sh embedded|cluster [extra `stampede serve` flags...]
#
# Prints the report's summary lines; the server's /metrics at the end of the
# run are left in $TMPDIR/bench-metrics-<mode>.txt. Needs psql, redis-cli
# and python3 for cluster mode. Run it alone on the machine.
set -euo pipefail
MODE=${1:?embedded or cluster}; shift
cd "$(dirname "$0")/.."
BIN=target/release/stampede
TMP=${TMPDIR:-/tmp}
DATA=$(mktemp -d)
PORT=18080
# shellcheck source=scripts/lib/cluster-env.sh
. scripts/lib/cluster-env.sh
CLUSTER_ENV=()
if [ "$MODE" = cluster ]; then cluster_up; fi
env "${CLUSTER_ENV[@]}" "$BIN" serve --listen 127.0.0.1:$PORT --data-dir "$DATA" --log warn "$@" \
  > "$TMP/bench-server-$MODE.log" 2>&1 &
PID=$!
for _ in $(seq 1 50); do curl -sf 127.0.0.1:$PORT/readyz >/dev/null && break; sleep 0.2; done
"$BIN" bench flash-sale --target http://127.0.0.1:$PORT --data-dir "$DATA" \
  --connections 256 --duration 10s --server-pid $PID > "$TMP/bench-$MODE.txt" 2>&1 || true
curl -s 127.0.0.1:$PORT/metrics > "$TMP/bench-metrics-$MODE.txt" || true
kill $PID; wait $PID 2>/dev/null || true
if [ "$MODE" = cluster ]; then cluster_down; fi
rm -rf "$DATA"
grep -E "^(livez|purchase|won |sold-out|losing|durable|audit|overloaded|rate-limited|unavailable|error)" "$TMP/bench-$MODE.txt"
