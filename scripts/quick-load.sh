#!/usr/bin/env bash
# A quick load on the release binary with wrk (Debian package `wrk`), until
# `stampede bench` exists: the plain-HTTP ceiling (GET /livez), losing
# purchases (a sold-out sale) and winning, durable purchases (a sale with
# stock to spare, unique Idempotency-Keys), interleaved for ROUNDS rounds.
#
#   scripts/quick-load.sh                 # 3 rounds of 10 s at 256 connections
#   ROUNDS=1 DURATION=5s CONNS=64 scripts/quick-load.sh
#   STAMPEDE_BIN=/tmp/stampede-a scripts/quick-load.sh   # a given build
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }

if [ -n "${STAMPEDE_BIN:-}" ]; then
  bin=$STAMPEDE_BIN
else
  cargo build --quiet --release -p stampede
  bin=${CARGO_TARGET_DIR:-$PWD/target}/release/stampede
fi
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
STAMPEDE_JWT_SECRET="load-$(date +%s%N)-secret-long-enough-for-hs256"
export STAMPEDE_JWT_SECRET
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$work/data" --log warn --log-format json >"$work/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -sf "$base/readyz" >/dev/null && break; sleep 0.1; done

admin=$("$bin" token --sub admin --role admin)
json_id() { python3 -c 'import sys, json; print(json.load(sys.stdin)["id"])'; }
post() { curl -sf "$base$1" -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' -d "$2"; }
product=$(post /api/v1/products '{"sku":"LOAD","name":"Load","price_cents":100,"currency":"EUR"}' | json_id)
plenty=$(post /api/v1/sales "{\"product_id\":\"$product\",\"quantity\":1000000000,\"per_user_limit\":1000000000}" | json_id)
gone=$(post /api/v1/sales "{\"product_id\":\"$product\",\"quantity\":1,\"per_user_limit\":1}" | json_id)
curl -sf -o /dev/null "$base/api/v1/sales/$gone/purchase" -H "Authorization: Bearer $("$bin" token --sub first)" \
  -H 'Idempotency-Key: first' -H 'Content-Type: application/json' -d '{"quantity":1}'

{ echo "tokens = {"; for i in $(seq 0 255); do echo "\"$("$bin" token --sub "buyer-$i" --ttl 36000)\","; done; echo "}"; } >"$work/tokens.lua"
cat >"$work/purchase.lua" <<LUA
dofile("$work/tokens.lua")
local threads, n = 0, 0
function setup(thread) thread:set("tid", threads); threads = threads + 1 end
request = function()
  n = n + 1
  local headers = { ["Authorization"] = "Bearer " .. tokens[(n % #tokens) + 1],
                    ["Content-Type"] = "application/json",
                    ["Idempotency-Key"] = os.getenv("RUN") .. "-" .. tid .. "-" .. n }
  return wrk.format("POST", wrk.path, headers, '{"quantity":1}')
end
LUA

duration=${DURATION:-10s}; conns=${CONNS:-256}
run() { wrk -t2 -c"$conns" -d"$duration" --latency "$@" | awk '
  /Requests\/sec/ {rps=$2} / 50%/ {p50=$2} / 99%/ {p99=$2} /Non-2xx/ {non=$5}
  END {printf "%10s req/s  p50 %8s  p99 %8s  non-2xx %s\n", rps, p50, p99, non+0}'; }
for round in $(seq "${ROUNDS:-3}"); do
  echo "round $round"
  printf '  livez   '; run "$base/livez"
  printf '  losing  '; RUN="lose$round" run -s "$work/purchase.lua" "$base/api/v1/sales/$gone/purchase"
  printf '  winning '; RUN="win$round" run -s "$work/purchase.lua" "$base/api/v1/sales/$plenty/purchase"
done
echo "after the runs:"
curl -sf "$base/api/v1/sales/$plenty/stats" -H "Authorization: Bearer $admin"; echo
curl -sf "$base/metrics" | grep -E '^stampede_commit_batch_size_(sum|count)|^stampede_purchases_total'
echo "peak RSS: $(grep VmHWM /proc/$pid/status | awk '{print $2, $3}')"
