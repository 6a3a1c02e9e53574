#!/usr/bin/env bash
# Fuzzes the HTTP API from its own OpenAPI document with schemathesis, every
# check on (no 5xx, answers conform to the document, bad input refused), in
# every phase, the stateful one following the document's links. Two runs:
# as an admin (every operation; purchases as a customer, since admins cannot
# buy) and as a customer (what customers call, on products and sales an admin
# makes). Tokens per operation: scripts/schemathesis.toml. Runs against the
# debug binary on a random free port and a temporary data directory.
#
#   scripts/fuzz-api.sh                   # fixed seed, 40 cases per operation (as CI runs it)
#   SEED=random scripts/fuzz-api.sh       # new examples each run
#   FUZZ_CASES=15000 scripts/fuzz-api.sh  # long run: about that many cases per token, random seed
#   MAX_EXAMPLES=200 scripts/fuzz-api.sh  # cases per operation
#   FUZZ_AS=customer scripts/fuzz-api.sh  # one of the two runs (admin or customer)
set -euo pipefail
cd "$(dirname "$0")/.."

target=${CARGO_TARGET_DIR:-target}
venv=$target/fuzz-venv
if [ ! -x "$venv/bin/st" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements-fuzz.txt
fi

# A long run spreads FUZZ_CASES over each run's operations (31 as an admin,
# 18 as a customer); operations with few possible inputs take fewer.
[ -n "${FUZZ_CASES:-}" ] && : "${SEED:=random}"
examples() {
  if [ -n "${FUZZ_CASES:-}" ]; then echo $(( (FUZZ_CASES + $1 - 1) / $1 )); else echo "${MAX_EXAMPLES:-40}"; fi
}

cargo build --quiet -p stampede
bin=$target/debug/stampede
data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The fuzzer's many logins and registrations from one address would soon meet
# the built-in account limits (429) and hide the handlers from it.
export STAMPEDE_LOGIN_FAILURES_PER_MIN=0 STAMPEDE_REGISTRATIONS_PER_HOUR=0
STAMPEDE_JWT_SECRET="fuzz-$(date +%s%N)-secret-long-enough-for-hs256"
export STAMPEDE_JWT_SECRET
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$data" --log warn --log-format json >"$data/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$data"' EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -sf "$base/readyz" >/dev/null && break; sleep 0.1; done

admin=$("$bin" token --sub fuzz-admin --role admin)
customer=$("$bin" token --sub fuzz-customer)
seed_args=(--seed "${SEED:-20261123}")
[ "${SEED:-}" = random ] && seed_args=()
# shellcheck disable=SC2054 # --phases takes one comma-separated argument
# The CPU profile records for up to a minute per call by design; its bounds
# and roles have their own test (crates/stampede/tests/api/ops.rs).
st=("$venv/bin/st" --config-file scripts/schemathesis.toml run "$base/api/v1/openapi.json" --url "$base"
    --exclude-path /api/v1/admin/profile
    --phases examples,coverage,fuzzing,stateful
    "${seed_args[@]}" --no-color)

# As an admin: every operation.
if [ "${FUZZ_AS:-admin}" = admin ]; then
  FUZZ_TOKEN=$admin FUZZ_BUYER_TOKEN=$customer FUZZ_SELLER_TOKEN=$admin "${st[@]}" \
    --max-examples "$(examples 31)"
fi
# As a customer: its orders and purchases, and the sales and products around them.
if [ "${FUZZ_AS:-customer}" = customer ]; then
  FUZZ_TOKEN=$customer FUZZ_BUYER_TOKEN=$customer FUZZ_SELLER_TOKEN=$admin "${st[@]}" \
    --max-examples "$(examples 18)" --include-path-regex '^/api/v1/(orders|sales|products)'
fi

# The server survived all of it.
curl -sf "$base/livez" >/dev/null
echo "fuzzing found nothing"
