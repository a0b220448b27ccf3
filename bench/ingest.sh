#!/usr/bin/env bash
# Control-plane access-log ingest rate (issue #18): a release control plane on the embedded
# store, then on a private redis-server, each fed by data-plane/examples/ingest_bench.rs
# (records encoded and shipped by the data plane's own code over the real gRPC path).
# Prints the sustained stored records/s of each. Not part of `just bench`'s default cases.
#
#   bench/ingest.sh [SECONDS] [RATE]        # RATE 0 (default): as fast as the control plane stores
#   INGEST_STORES="embedded" bench/ingest.sh
#   BENCH_BIN=/path/to/target/release bench/ingest.sh   # another build's binaries
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECONDS_RUN=${1:-15}
RATE=${2:-0}
STORES=${INGEST_STORES:-embedded redis}
BASE=${BENCH_PORT_BASE:-18000}
HTTP_PORT=$((BASE + 80)); GRPC_PORT=$((BASE + 81)); REDIS_PORT=$((BASE + 82))
BIN=${BENCH_BIN:-$ROOT/target/release}
WORK=$ROOT/bench/work/ingest
CPUS=${BENCH_CPUS:-0,1}

if [ -z "${BENCH_BIN:-}" ]; then
  (cd "$ROOT" && cargo build --release -q -p portcullis-control-plane -p portcullis --bins \
    && cargo build --release -q -p portcullis-data-plane --example ingest_bench)
fi
EXAMPLE=${INGEST_EXAMPLE:-$ROOT/target/release/examples/ingest_bench}

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_http() {
  for _ in $(seq 1 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "no answer from $1" >&2; return 1
}

redis_pid=
run_store() { # run_store embedded|redis
  local store=$1 dir=$WORK/$1
  rm -rf "$dir"; mkdir -p "$dir"
  local -a extra=()
  if [ "$store" = redis ]; then
    taskset -c "$CPUS" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
      --appendonly yes --appendfsync everysec --dir "$dir" >"$dir/redis.log" 2>&1 &
    pids+=($!)
    redis_pid=$!
    for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
    extra=(--redis-url "redis://127.0.0.1:$REDIS_PORT/0")
  fi
  "$BIN/portcullis-control-plane" token create-admin --data-dir "$dir/cp" "${extra[@]}" >"$dir/admin-token"
  NO_COLOR=1 taskset -c "$CPUS" "$BIN/portcullis-control-plane" serve --data-dir "$dir/cp" "${extra[@]}" \
    --http-listen "127.0.0.1:$HTTP_PORT" --grpc-listen "127.0.0.1:$GRPC_PORT" >"$dir/cp.log" 2>&1 &
  local cp=$!
  pids+=("$cp")
  wait_http "http://127.0.0.1:$HTTP_PORT/health"
  local token
  token=$("$BIN/portcullis" --url "http://127.0.0.1:$GRPC_PORT" --token "$(cat "$dir/admin-token")" \
    dataplane-token create ingest-bench)
  local before rbefore=0
  before=$(awk '{print $14 + $15}' "/proc/$cp/stat")
  [ "$store" != redis ] || rbefore=$(awk '{print $14 + $15}' "/proc/$redis_pid/stat")
  taskset -c "$CPUS" "$EXAMPLE" "http://127.0.0.1:$GRPC_PORT" "$token" "$SECONDS_RUN" "$RATE" | tee "$dir/bench.txt"
  local after ticks
  after=$(awk '{print $14 + $15}' "/proc/$cp/stat")
  ticks=$(getconf CLK_TCK)
  if [ "$store" = redis ]; then
    redis-cli -p "$REDIS_PORT" info commandstats | grep -E "calls=" | sort -t= -k3 -n -r | head -12 >"$dir/commandstats.txt" || true
    local redis_ms total_r
    redis_ms=$(( ($(awk '{print $14 + $15}' "/proc/$redis_pid/stat") - rbefore) * 1000 / ticks ))
    total_r=$(sed -n 's/.*total_shipped=\([0-9]*\).*/\1/p' "$dir/bench.txt")
    echo "redis-server CPU $redis_ms ms ($(python3 -c "print(round($redis_ms * 1000 / max($total_r, 1), 1))") µs per record)"
  fi
  local stored
  stored=$(curl -fsS -H "Authorization: Bearer $(cat "$dir/admin-token")" \
    "http://127.0.0.1:$HTTP_PORT/api/v1/logs/stats?hours=1" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("total", "?"))')
  local total cp_ms
  total=$(sed -n 's/.*total_shipped=\([0-9]*\).*/\1/p' "$dir/bench.txt")
  cp_ms=$(( (after - before) * 1000 / ticks ))
  echo "$store: control-plane CPU $cp_ms ms for $total records ($(python3 -c "print(round($cp_ms * 1000 / max($total, 1), 1))") µs each); stored (stats total, capped at 200k) $stored"
  kill "$cp"; wait "$cp" 2>/dev/null || true
  if [ "$store" = redis ]; then redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; fi
}

for s in $STORES; do run_store "$s"; done
