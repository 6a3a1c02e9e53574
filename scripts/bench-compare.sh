#!/usr/bin/env bash
# Compares two server builds on one `stampede bench flash-sale` scenario, in
# interleaved rounds (A, B, A, B, …), each against a fresh embedded server and
# data directory, with the same load generator. Prints each run's figures as
# ratios to its own livez ceiling, then the medians: the before/after table
# of one lever in docs/benchmarks.md.
#
#   cargo build --release -p stampede && cp target/release/stampede /tmp/stampede-a
#   # … change one thing …
#   cargo build --release -p stampede && cp target/release/stampede /tmp/stampede-b
#   scripts/bench-compare.sh /tmp/stampede-a /tmp/stampede-b 3 \
#       --users 200000 --stock 1000 --per-user-limit 1 --duration 10s
#
# A binary written `cluster:PATH` runs as one `--role all` node on the local
# PostgreSQL, Redis and NATS (a fresh database, namespace and streams per
# run, dropped after; scripts/lib/cluster-env.sh), so one build's cluster
# mode can be compared with its embedded mode in the same rounds.
#
# Run it alone on the machine: the generator and the server share its cores.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/cluster-env.sh
. scripts/lib/cluster-env.sh
A=${1:?binary A}; B=${2:?binary B}; ROUNDS=${3:?rounds}; shift 3
# The generator: A unless BENCH_GEN names another build.
GEN=${BENCH_GEN:-${A#cluster:}}
PORT=${BENCH_PORT:-18090}
OUT=$(mktemp -d)

run() {
  local label=$1 bin=$2 round=$3 data pid
  shift 3
  data=$(mktemp -d)
  CLUSTER_ENV=()
  case $bin in cluster:*) bin=${bin#cluster:}; cluster_up ;; esac
  env "${CLUSTER_ENV[@]}" "$bin" serve --listen "127.0.0.1:$PORT" --data-dir "$data" --log warn \
    > "$OUT/server-$label-$round.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    curl -sf "127.0.0.1:$PORT/readyz" > /dev/null && break
    sleep 0.1
  done
  "$GEN" bench flash-sale --target "http://127.0.0.1:$PORT" --data-dir "$data" \
    --connections 256 --server-pid "$pid" --json "$@" > "$OUT/$label-$round.json" \
    2> "$OUT/$label-$round.err" || true
  kill "$pid"
  wait "$pid" 2> /dev/null || true
  if [ ${#CLUSTER_ENV[@]} -gt 0 ]; then cluster_down; fi
  rm -rf "$data"
}

for round in $(seq 1 "$ROUNDS"); do
  run A "$A" "$round" "$@"
  run B "$B" "$round" "$@"
done

python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
rows = {}
for label in "AB":
    rows[label] = []
    for r in range(1, rounds + 1):
        try:
            d = json.load(open(f"{out}/{label}-{r}.json"))
        except (OSError, ValueError):
            print(f"{label} round {r}: no result (see {out}/{label}-{r}.err)")
            continue
        livez = d.get("livez_rps") or 0
        won = d.get("won_per_sec") or 0
        p99 = (d.get("latency_ms", {}).get("won") or {}).get("p99")
        rss = (d.get("server") or {}).get("peak_rss_kb")
        cpu = lambda phase: (d.get(phase) or {}).get("server_cpu_us")
        rows[label].append({
            "livez": livez, "losing": d.get("losing_rps") or 0,
            "losing_ratio": d.get("losing_ratio") or 0,
            "won": won, "won_ratio": won / livez if livez else 0,
            "won_p99": p99, "rss_kb": rss, "audit": d.get("audit_ok"),
            "livez_us": cpu("livez"), "purchase_us": cpu("purchase"),
            "sold_p99": (d.get("sell_out") or {}).get("waited_p99_ms"),
            "sold_max": (d.get("sell_out") or {}).get("waited_max_ms"),
        })
        room = d.get("waiting_room")
        if room:
            pick = lambda s, k: (room.get(s) or {}).get(k)
            rows[label][-1].update({
                "room_sold_s": room.get("sold_out_after_s"),
                "room_admit_p99": pick("admission_wait_ms", "p99"),
                "room_told_p99": pick("told_sold_out_ms", "p99"),
                "room_polls": room.get("polls_mean"),
                "room_rho": pick("fairness", "spearman"),
                "room_line_told": pick("retry_after", "line_over_told_p50"),
                "room_peak_ratio": pick("load", "queue_peak_ratio"),
            })
        x = rows[label][-1]
        print(f"{label} round {r}: livez {x['livez']:.0f}/s, refused {x['losing']:.0f}/s "
              f"({x['losing_ratio']:.3f}), won {x['won']:.0f}/s ({x['won_ratio']:.3f}), "
              f"won p99 {x['won_p99']} ms, peak RSS {x['rss_kb']} kB, audit {x['audit']}, "
              f"server CPU/req livez {x['livez_us']} µs, purchase {x['purchase_us']} µs, "
              f"in flight at the sell-out answered within p99 {x['sold_p99']} / max {x['sold_max']} ms")
        if room:
            print(f"  waiting room: sold out {x['room_sold_s']} s after the start, admitted p99 "
                  f"{x['room_admit_p99']} ms, told sold-out in line p99 {x['room_told_p99']} ms, "
                  f"polls/customer {x['room_polls']}, Spearman {x['room_rho']}, "
                  f"lived÷told {x['room_line_told']}, queue peak÷livez {x['room_peak_ratio']}")
def med(label, key):
    vals = [x[key] for x in rows[label] if x.get(key) is not None]
    return statistics.median(vals) if vals else float("nan")
print("median      livez/s   refused÷livez   won/s   won÷livez   won p99 ms   peak RSS kB"
      "   server µs/req livez   purchase   after sell-out p99/max ms")
for label in "AB":
    print(f"{label}        {med(label,'livez'):9.0f}   {med(label,'losing_ratio'):13.3f}   "
          f"{med(label,'won'):5.0f}   {med(label,'won_ratio'):9.3f}   {med(label,'won_p99'):10}   "
          f"{med(label,'rss_kb'):11}   {med(label,'livez_us'):19}   {med(label,'purchase_us'):8}   "
          f"{med(label,'sold_p99')}/{med(label,'sold_max')}")
if any("room_polls" in x for label in "AB" for x in rows[label]):
    print("median      sold out s   admitted p99 ms   told sold-out p99 ms   polls/customer"
          "   Spearman   lived÷told   queue peak÷livez")
    for label in "AB":
        print(f"{label}        {med(label,'room_sold_s'):10}   {med(label,'room_admit_p99'):15}   "
              f"{med(label,'room_told_p99'):20}   {med(label,'room_polls'):14}   "
              f"{med(label,'room_rho'):8}   {med(label,'room_line_told'):10}   "
              f"{med(label,'room_peak_ratio'):16}")
PY
echo "raw results: $OUT"
