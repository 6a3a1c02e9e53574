#!/usr/bin/env bash
# One `stampede bench flash-sale` run (256 connections; by default the crowd
# scenario: 10,000 buyers, 1,000 units, 10 s) against fresh release servers:
#
#   embedded  one node on SQLite
#   cluster   one `--role all` node on the local PostgreSQL, Redis and NATS
#   split     two `--role api` nodes and one `--role worker` node on them, the
#             generator spreading its connections over both api nodes
#
# Cluster modes get a fresh database, namespace and streams, removed after
# (scripts/lib/cluster-env.sh).
#
#   cargo build --release -p stampede
#   scripts/bench-modes.sh embedded|cluster|split [bench flags...]
#   SERVE_FLAGS="--commit-workers 4" scripts/bench-modes.sh cluster --users 400000
#
# Prints the report's summary lines; the first node's /metrics at the end of
# the run are left in $TMPDIR/bench-metrics-<mode>.txt. Needs psql, redis-cli
# and python3 for the cluster modes. Run it alone on the machine.
set -euo pipefail
MODE=${1:?embedded, cluster or split}; shift
cd "$(dirname "$0")/.."
BIN=${STAMPEDE_BIN:-target/release/stampede}
TMP=${TMPDIR:-/tmp}
DATA=$(mktemp -d)
# shellcheck source=scripts/lib/cluster-env.sh
. scripts/lib/cluster-env.sh
CLUSTER_ENV=()
case $MODE in
  embedded) ROLES=(all) ;;
  cluster) ROLES=(all); cluster_up ;;
  split) ROLES=(api api worker); cluster_up ;;
  *) echo "unknown mode $MODE: embedded, cluster or split" >&2; exit 2 ;;
esac
read -r -a SERVE <<< "${SERVE_FLAGS:-}"
PIDS=(); TARGETS=()
for i in "${!ROLES[@]}"; do
  port=$((18080 + i))
  # Nodes of one deployment share the data directory's JWT secret.
  env "${CLUSTER_ENV[@]}" STAMPEDE_ROLE="${ROLES[$i]}" "$BIN" serve --listen "127.0.0.1:$port" \
    --data-dir "$DATA" --log warn "${SERVE[@]}" > "$TMP/bench-server-$MODE-$i.log" 2>&1 &
  PIDS+=($!)
  if [ "${ROLES[$i]}" != worker ]; then TARGETS+=("http://127.0.0.1:$port"); fi
  for _ in $(seq 1 50); do curl -sf "127.0.0.1:$port/readyz" > /dev/null && break; sleep 0.2; done
done
ALSO=()
for target in "${TARGETS[@]:1}"; do ALSO+=(--also-target "$target"); done
"$BIN" bench flash-sale --target "${TARGETS[0]}" "${ALSO[@]}" --data-dir "$DATA" \
  --connections 256 --server-pid "${PIDS[0]}" "$@" > "$TMP/bench-$MODE.txt" 2>&1 || true
curl -s "${TARGETS[0]}/metrics" > "$TMP/bench-metrics-$MODE.txt" || true
kill "${PIDS[@]}"
for pid in "${PIDS[@]}"; do wait "$pid" 2> /dev/null || true; done
if [ "$MODE" != embedded ]; then cluster_down; fi
rm -rf "$DATA"
grep -E "^(livez|purchase|won |sold-out|losing|durable|audit|overloaded|rate-limited|unavailable|error)" "$TMP/bench-$MODE.txt"
