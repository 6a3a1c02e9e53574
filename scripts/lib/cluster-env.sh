# shellcheck shell=bash
# A throwaway cluster backing for one server run, on the local PostgreSQL,
# Redis and NATS: a fresh database, key namespace and JetStream streams.
# Sourced by the bench scripts:
#
#   cluster_up        # sets CLUSTER_ENV=(STAMPEDE_DATABASE_URL=… …)
#   env "${CLUSTER_ENV[@]}" stampede serve …
#   cluster_down      # drops the database, the keys and the streams
#
# Needs psql, redis-cli and python3.

cluster_up() {
  CLUSTER_DB=stampede_bench_$RANDOM$RANDOM
  CLUSTER_NS=bench$RANDOM$RANDOM
  psql -h 127.0.0.1 -U postgres -d test -qc "CREATE DATABASE $CLUSTER_DB" > /dev/null
  # shellcheck disable=SC2034 # read by the scripts that source this file
  CLUSTER_ENV=(STAMPEDE_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$CLUSTER_DB"
    STAMPEDE_REDIS_URL=redis://127.0.0.1:6379
    STAMPEDE_NATS_URL=nats://127.0.0.1:4222
    STAMPEDE_NAMESPACE="$CLUSTER_NS")
}

cluster_down() {
  psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE $CLUSTER_DB WITH (FORCE)" > /dev/null
  local pattern
  for pattern in "$CLUSTER_NS*" "{$CLUSTER_NS*"; do
    redis-cli --scan --pattern "$pattern" | xargs -r redis-cli del > /dev/null
  done
  # The namespace's streams, through the JetStream API.
  python3 - "$CLUSTER_NS" << 'PY'
import socket, sys
ns = sys.argv[1]
s = socket.create_connection(("127.0.0.1", 4222)); f = s.makefile("rb"); f.readline()
s.sendall(b'CONNECT {"verbose":false}\r\nSUB _R.x 1\r\n')
for stream in (ns + "-events", ns + "-jobs"):
    s.sendall(f"PUB $JS.API.STREAM.DELETE.{stream} _R.x 0\r\n\r\n".encode())
    while not f.readline().startswith(b"MSG"):
        pass
    f.readline()
PY
}
