#!/usr/bin/env bash
# Portcullis benchmark harness (`just bench`). See bench/README.md.
#
# Installs nginx, haproxy, caddy, wrk and h2load from Debian if missing, builds the release
# binaries, starts one fast backend (nginx serving static files) and runs each proxy in
# front of it in turn, then the control-plane and lookup benchmarks. Writes
# bench/results/YYYY-MM-DD-HHMM.md; raw outputs and logs stay in bench/work/.
#
#   BENCH_QUICK=1          smoke test: 1 round x 3 s, fewer control-plane writes
#   BENCH_DURATION=10      seconds per load run
#   BENCH_ROUNDS=3         rounds; each round runs every proxy once, in turn (A B C D A B C D ...)
#   BENCH_CONNECTIONS=64   wrk connections (2 threads); h2load uses 16 connections x 8 streams
#   BENCH_PEERS="portcullis nginx haproxy caddy"
#   BENCH_CASES="h1_small h1_64k h1_close https https_hs h2c jwt h1_pp h1_log idle instr instr_log cp micro"
#                          (instr_pp, instr_https, instr_jwt and cp_ha are not run by default)
#   BENCH_REDIS_FSYNC=everysec  appendfsync of the cp_ha case's Redis (AOF on)
#   BENCH_IDLE_CONNS=10000 connections for the idle-memory case
#   BENCH_INSTR_REQUESTS=5000  requests per measurement in the instructions-per-request case
#   BENCH_ACCESS_LOG=off  --access-log of the data planes in the load and instr cases
#                         (off keeps results comparable with earlier runs; control-plane
#                         ships to the bench control plane, stdout writes to the peer's log)
#   BENCH_CP_WRITES=200    sequential writes per latency measurement
#   BENCH_BULK_PROXIES=10000  proxies (with 2 routes each) for the large-snapshot case
#   BENCH_BIN=DIR          prebuilt binaries (a copy of another commit's target/release): no build
#   BENCH_CPUS=0,1         CPUs every process (load generator, proxies, backend) is confined to
#   BENCH_PORT_BASE=18000  first of the loopback ports used
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# ----- settings -----

if [ "${BENCH_QUICK:-0}" = 1 ]; then
  DURATION=${BENCH_DURATION:-3}; ROUNDS=${BENCH_ROUNDS:-1}; WARMUP=1
  CP_WRITES=${BENCH_CP_WRITES:-50}; BULK_PROXIES=${BENCH_BULK_PROXIES:-1000}; MICRO_TIME=1
  INSTR_REQUESTS=${BENCH_INSTR_REQUESTS:-1000}
  MODE="quick (BENCH_QUICK=1): smoke test, numbers are indicative only"
else
  DURATION=${BENCH_DURATION:-10}; ROUNDS=${BENCH_ROUNDS:-3}; WARMUP=2
  CP_WRITES=${BENCH_CP_WRITES:-200}; BULK_PROXIES=${BENCH_BULK_PROXIES:-10000}; MICRO_TIME=3
  INSTR_REQUESTS=${BENCH_INSTR_REQUESTS:-5000}
  MODE="default"
fi
CONNECTIONS=${BENCH_CONNECTIONS:-64}
H2_CLIENTS=16; H2_STREAMS=8
PEERS=${BENCH_PEERS:-portcullis nginx haproxy caddy}
CASES=${BENCH_CASES:-h1_small h1_64k h1_close https https_hs h2c jwt h1_pp h1_log idle instr instr_log cp micro}
ACCESS_LOG=${BENCH_ACCESS_LOG:-off}
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
BENCH_CPUS=${BENCH_CPUS:-0,1}
BENCH_HOST=bench.local
AUTH_HOST=auth.bench.local   # the same proxy as BENCH_HOST, protected (jwt case)
base=${BENCH_PORT_BASE:-18000}
BACKEND_PORT=$((base + 1))
CP_HTTP_PORT=$((base + 10)); CP_GRPC_PORT=$((base + 11))
PORTCULLIS_PORT=$((base + 12)); PORTCULLIS_ADMIN_PORT=$((base + 13))
# The fixture data plane (HTTPS and JWT cases); base+19 is a control plane that is never started.
PFIX_PORT=$((base + 14)); PFIX_TLS_PORT=$((base + 15)); PFIX_ADMIN_PORT=$((base + 16)); PFIX_CP_PORT=$((base + 19))
INSTR_PORT=$((base + 17)); INSTR_ADMIN_PORT=$((base + 18))   # the fixture data plane under callgrind
INSTR_TLS_PORT=$((base + 52))   # its HTTPS listener (instr_https)
# h1_pp: HAProxy (TCP mode) with and without send-proxy-v2, each in front of its own fixture data plane.
PP_HAPROXY_PORT=$((base + 20)); PLAIN_HAPROXY_PORT=$((base + 21))
PPDP_PORT=$((base + 22)); PPDP_ADMIN_PORT=$((base + 23)); PLAINDP_PORT=$((base + 24)); PLAINDP_ADMIN_PORT=$((base + 25))
# h1_log: two data planes fed by the bench control plane, --access-log control-plane and off.
LOGON_PORT=$((base + 26)); LOGON_ADMIN_PORT=$((base + 27)); LOGOFF_PORT=$((base + 28)); LOGOFF_ADMIN_PORT=$((base + 29))
# h1_log, more rows: a data plane with --access-log stdout (into its log file), and one nginx
# with three servers: access_log off, to a file unbuffered (nginx's default), buffered.
LOGSTDOUT_PORT=$((base + 33)); LOGSTDOUT_ADMIN_PORT=$((base + 34))
NGLOG_OFF_PORT=$((base + 35)); NGLOG_ON_PORT=$((base + 36)); NGLOG_BUF_PORT=$((base + 37))
NGINX_PORT=$((base + 30)); NGINX_H2_PORT=$((base + 31)); NGINX_TLS_PORT=$((base + 32))
HAPROXY_PORT=$((base + 40)); HAPROXY_H2_PORT=$((base + 41)); HAPROXY_TLS_PORT=$((base + 42))
CADDY_PORT=$((base + 50)); CADDY_TLS_PORT=$((base + 51))
CPB_HTTP_PORT=$((base + 60)); CPB_GRPC_PORT=$((base + 61))   # control-plane case, dp i: base+70+2i
# cp_ha: Redis, control planes A and B, data plane i on base+84+2i (HTTP) and base+85+2i (admin).
HA_REDIS_PORT=$((base + 80)); HA_A_HTTP=$((base + 81)); HA_A_GRPC=$((base + 82)); HA_B_HTTP=$((base + 83)); HA_B_GRPC=$((base + 84))
REDIS_FSYNC=${BENCH_REDIS_FSYNC:-everysec}
ALL_PORTS="$BACKEND_PORT $CP_HTTP_PORT $CP_GRPC_PORT $PORTCULLIS_PORT $PORTCULLIS_ADMIN_PORT $NGINX_PORT
  $PFIX_PORT $PFIX_TLS_PORT $PFIX_ADMIN_PORT $PFIX_CP_PORT $INSTR_PORT $INSTR_ADMIN_PORT $INSTR_TLS_PORT $NGINX_TLS_PORT $HAPROXY_TLS_PORT $CADDY_TLS_PORT
  $PP_HAPROXY_PORT $PLAIN_HAPROXY_PORT $PPDP_PORT $PPDP_ADMIN_PORT $PLAINDP_PORT $PLAINDP_ADMIN_PORT
  $LOGON_PORT $LOGON_ADMIN_PORT $LOGOFF_PORT $LOGOFF_ADMIN_PORT $LOGSTDOUT_PORT $LOGSTDOUT_ADMIN_PORT
  $NGLOG_OFF_PORT $NGLOG_ON_PORT $NGLOG_BUF_PORT
  $NGINX_H2_PORT $HAPROXY_PORT $HAPROXY_H2_PORT $CADDY_PORT $CPB_HTTP_PORT $CPB_GRPC_PORT
  $((base + 72)) $((base + 73)) $((base + 74)) $((base + 75)) $((base + 76)) $((base + 77))"
has_case() { [[ " $CASES " == *" $1 "* ]]; }
if has_case cp_ha; then
  ALL_PORTS+=" $HA_REDIS_PORT $HA_A_HTTP $HA_A_GRPC $HA_B_HTTP $HA_B_GRPC $(seq -s ' ' $((base + 86)) $((base + 91)))"
fi

WORK=$ROOT/bench/work/run
RAW=$WORK/raw
# BENCH_BIN: a directory with prebuilt portcullis-data-plane, portcullis-control-plane,
# portcullis and examples/bench_fixture (e.g. a copy of another commit's build); no build.
BIN=${BENCH_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
CP_BENCH=${CARGO_TARGET_DIR:-$ROOT/target}/cp-bench/release/cp-bench
STAMP=$(date +%Y-%m-%d-%H%M)
RESULT=$ROOT/bench/results/$STAMP.md

source "$ROOT/bench/lib/common.sh"
source "$ROOT/bench/lib/peers.sh"

# ----- setup -----

ensure_tools() {
  local missing=() updated=0 tool pkg
  for tool in nginx:nginx haproxy:haproxy caddy:caddy wrk:wrk h2load:nghttp2-client taskset:util-linux curl:curl \
    valgrind:valgrind $(has_case cp_ha && echo redis-server:redis-server redis-cli:redis-tools); do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q "${missing[@]}" >/dev/null; then
    apt-get update -q >/dev/null && updated=1
    apt-get install -y -q "${missing[@]}" >/dev/null
  fi
  # Debian's packages start system-wide services; the benchmark runs its own instances.
  for pkg in nginx haproxy caddy; do
    systemctl stop "$pkg" >/dev/null 2>&1 || true
  done
  : "$updated"
}

build() {
  if [ -n "${BENCH_BIN:-}" ]; then
    log "using the binaries in $BENCH_BIN"
    return 0
  fi
  log "building release binaries"
  cargo build --release --bins -q
  # Snapshot, certificate and token for the fixture data plane (HTTPS and JWT cases).
  cargo build --release -q -p portcullis-data-plane --example bench_fixture
  if has_case cp || has_case cp_ha; then
    log "building bench/cp-bench"
    cargo build --release -q --manifest-path bench/cp-bench/Cargo.toml \
      --target-dir "${CARGO_TARGET_DIR:-$ROOT/target}/cp-bench"
  fi
}

prepare() {
  rm -rf "$WORK"
  mkdir -p "$WORK/logs" "$WORK/pids" "$RAW/rss" "$RAW/idle" "$RAW/instr" "$RAW/cp" "$ROOT/bench/results"
  local p
  for p in $ALL_PORTS; do port_free "$p" || die "port $p is in use (set BENCH_PORT_BASE)"; done
  # The idle case needs >10k descriptors in the client and in each proxy.
  ulimit -n "$(ulimit -Hn)"
  [ "$(ulimit -n)" -gt $((IDLE_CONNS + 500)) ] ||
    log "warning: ulimit -n is $(ulimit -n); the idle case may not reach $IDLE_CONNS connections"
  # haproxy refuses to start unless the limit covers 2 descriptors per connection.
  HAPROXY_MAXCONN=$(( ($(ulimit -n) - 300) / 2 ))
  [ "$HAPROXY_MAXCONN" -le $((IDLE_CONNS + 100)) ] || HAPROXY_MAXCONN=$((IDLE_CONNS + 100))
}

# idle_count PEER — connections for the idle case: IDLE_CONNS, or what haproxy's maxconn allows.
idle_count() {
  if [ "$1" = haproxy ] && [ $((HAPROXY_MAXCONN - 50)) -lt "$IDLE_CONNS" ]; then
    echo $((HAPROXY_MAXCONN - 50))
  else
    echo "$IDLE_CONNS"
  fi
}

write_meta() {
  local versions=() peer
  for peer in $PEERS; do versions+=("$(version_of "$peer")"); done
  versions+=("$(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)" "$(h2load --version | head -1)" "$(rustc --version | cut -d' ' -f1-2)")
  {
    printf 'date\t%s\n' "$(date '+%Y-%m-%d %H:%M %Z')"
    printf 'nproc\t%s\n' "$(nproc)"
    printf 'cpu\t%s\n' "$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
    printf 'memory\t%s\n' "$(free -h | awk '/^Mem:/ { print $2 }')"
    printf 'kernel\t%s\n' "$(uname -r)"
    printf 'versions\t%s\n' "$(IFS=';'; echo "${versions[*]}" | sed 's/;/, /g')"
    printf 'load\t%s\n' "wrk -t2 -c$CONNECTIONS --latency, ${DURATION}s per run, $ROUNDS round(s), ${WARMUP}s warm-up per proxy; h2load -t2 -c$H2_CLIENTS -m$H2_STREAMS"
    printf 'cpus\t%s\n' "every process (wrk/h2load, proxy, backend nginx) confined to CPUs $BENCH_CPUS with taskset; no further pinning: they share those cores"
    printf 'mode\t%s\n' "$MODE"
    printf 'source\t%s\n' "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
    printf 'loadavg\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf 'idle_conns\t%s\n' "$IDLE_CONNS"
  } >"$RAW/meta.tsv"
  echo "$PEERS" >"$RAW/peers.txt"
}

# ----- proxy cases -----

# load NAME PEER PORT OUT — one wrk/h2load run for case NAME.
load() {
  local name=$1 peer=$2 port=$3 out=$4
  local url="http://127.0.0.1:$port" tls="https://127.0.0.1:$port"
  local wrk=(taskset -c "$BENCH_CPUS" wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency)
  local host=(-H "Host: $BENCH_HOST")
  case $name in
    h1_small | h1_pp | h1_log) "${wrk[@]}" "${host[@]}" "$url/small" >"$out.wrk" 2>&1 ;;
    h1_64k) "${wrk[@]}" "${host[@]}" "$url/64k" >"$out.wrk" 2>&1 ;;
    h1_close) "${wrk[@]}" "${host[@]}" -H "Connection: close" "$url/small" >"$out.wrk" 2>&1 ;;
    # wrk never resumes TLS sessions: with Connection: close every request is a full handshake.
    https) "${wrk[@]}" "${host[@]}" "$tls/small" >"$out.wrk" 2>&1 ;;
    https_hs) "${wrk[@]}" "${host[@]}" -H "Connection: close" "$tls/small" >"$out.wrk" 2>&1 ;;
    jwt)
      local bearer=(-H "Authorization: Bearer $(cat "$WORK/pfix/token")")
      case $peer in
        portcullis) "${wrk[@]}" -H "Host: $AUTH_HOST" "${bearer[@]}" "$url/small" >"$out.wrk" 2>&1 ;;
        unprotected) "${wrk[@]}" "${host[@]}" "$url/small" >"$out.wrk" 2>&1 ;;
        # The same request bytes as the protected row (the token is forwarded upstream).
        unprotected_token) "${wrk[@]}" "${host[@]}" "${bearer[@]}" "$url/small" >"$out.wrk" 2>&1 ;;
      esac
      ;;
    h2c)
      taskset -c "$BENCH_CPUS" h2load -t2 -c"$H2_CLIENTS" -m"$H2_STREAMS" -D "$DURATION" \
        -H ":authority: $BENCH_HOST" --log-file="$out.h2log" "$url/small" >"$out.h2out" 2>&1 || true
      ;;
  esac
}

port_for() {
  case $1 in
    h2c) h2_port "$2" ;;
    https | https_hs) tls_port "$2" ;;
    jwt) echo "$PFIX_PORT" ;;
    h1_pp) if [ "$2" = proxy_v2 ]; then echo "$PP_HAPROXY_PORT"; else echo "$PLAIN_HAPROXY_PORT"; fi ;;
    h1_log)
      case $2 in
        log_on) echo "$LOGON_PORT" ;; log_off) echo "$LOGOFF_PORT" ;; log_stdout) echo "$LOGSTDOUT_PORT" ;;
        nginx_log_off) echo "$NGLOG_OFF_PORT" ;; nginx_log) echo "$NGLOG_ON_PORT" ;; nginx_log_buf) echo "$NGLOG_BUF_PORT" ;;
      esac
      ;;
    *) h1_port "$2" ;;
  esac
}

# case_peers CASE — who runs in CASE. jwt: the fixture data plane's protected proxy
# (reported as "portcullis") and the same proxy unprotected, without and with the token.
# h1_pp: HAProxy sending PROXY v2 to a data plane that requires it, and HAProxy plain to an
# otherwise identical data plane. h1_log: a data plane shipping its access log to the
# control plane, an otherwise identical one with the log off and one writing it to stdout
# (a file); with nginx among the peers, nginx with its access log off, to a file
# unbuffered and buffered (the reference for what an access log costs, issue #18).
case_peers() {
  case $1 in
    jwt) if [[ " $PEERS " == *" portcullis "* ]]; then echo "portcullis unprotected unprotected_token"; fi ;;
    h1_pp) if [[ " $PEERS " == *" portcullis "* ]]; then echo "proxy_v2 plain"; fi ;;
    h1_log)
      if [[ " $PEERS " == *" portcullis "* ]]; then
        echo "log_on log_off log_stdout $([[ " $PEERS " != *" nginx "* ]] || echo nginx_log_off nginx_log nginx_log_buf)"
      fi
      ;;
    *) echo "$PEERS" ;;
  esac
}

# proc_of CASE PEER — the process (pid-file name) serving PEER in CASE.
proc_of() {
  case $1:$2 in
    https*:portcullis | jwt:*) echo pfix ;;
    h1_pp:proxy_v2) echo ppdp ;;
    h1_pp:plain) echo plaindp ;;
    h1_log:log_on) echo logon ;;
    h1_log:log_off) echo logoff ;;
    h1_log:log_stdout) echo logstdout ;;
    h1_log:nginx_*) echo nginxlog ;;
    *) echo "$2" ;;
  esac
}

run_load_case() {
  local name=$1 peer round dir=$RAW/$1 peers
  peers=$(case_peers "$name")
  [ -n "$peers" ] || return 0
  mkdir -p "$dir"
  log "case $name: warm-up"
  for peer in $peers; do
    reset_peak "$(proc_of "$name" "$peer")"
    DURATION=$WARMUP load "$name" "$peer" "$(port_for "$name" "$peer")" "$WORK/warmup"
  done
  for peer in $peers; do reset_peak "$(proc_of "$name" "$peer")"; done
  for round in $(seq 1 "$ROUNDS"); do
    local order=$peers
    # h1_log: the two rows swap places every other round (neither always runs first).
    if [ "$name" = h1_log ] && [ $((round % 2)) = 0 ]; then order=$(echo "$peers" | awk '{ for (i = NF; i > 0; i--) printf "%s ", $i }'); fi
    for peer in $order; do
      log "case $name: round $round/$ROUNDS, $peer"
      local before after cp_before cp_after
      before=$(cpu_ticks "$(proc_of "$name" "$peer")")
      cp_before=$(cpu_ticks cp)
      load "$name" "$peer" "$(port_for "$name" "$peer")" "$dir/$peer.$round"
      after=$(cpu_ticks "$(proc_of "$name" "$peer")")
      cp_after=$(cpu_ticks cp)
      # user and system ticks the proxy used during the run, and ticks per second
      echo "$before $after $(getconf CLK_TCK)" |
        awk '{ print $3 - $1, $4 - $2, $5 }' >"$dir/$peer.$round.cpu"
      # h1_log: the control plane storing the shipped records shares the CPUs too.
      if [ "$name" = h1_log ]; then
        echo "$cp_before $cp_after $(getconf CLK_TCK)" |
          awk '{ print $3 - $1, $4 - $2, $5 }' >"$dir/$peer.$round.cpcpu"
      fi
    done
  done
  case $name in
    h1_small | h1_64k | h1_close)
      log "case $name: backend direct (reference)"
      load "$name" direct "$BACKEND_PORT" "$dir/direct.1"
      ;;
  esac
  for peer in $peers; do
    printf '%s\t%s\n' "$peer" "$(mem_kib "$(proc_of "$name" "$peer")" VmHWM)"
  done >"$RAW/rss/$name.tsv"
}

run_idle_case() {
  local peer pids
  for peer in $PEERS; do
    restart_peer "$peer"
    sleep 1
    pids=$(tree_pids "$(pid_of "$peer")" | paste -sd,)
    log "case idle: $(idle_count "$peer") idle keep-alive connections to $peer"
    taskset -c "$BENCH_CPUS" python3 "$ROOT/bench/idle_conns.py" --port "$(h1_port "$peer")" \
      --host "$BENCH_HOST" --path /small --count "$(idle_count "$peer")" --pids "$pids" >"$RAW/idle/$peer.json" ||
      log "warning: idle case failed for $peer"
  done
}

# ----- instructions per request -----

# Wall-clock rates on a shared VM move by ±20 % between runs; instruction counts do not.
# The fixture data plane runs under callgrind with one worker; for each measurement
# instr_load.py sends INSTR_REQUESTS requests between zeroing the counters and dumping
# them, so start-up and warm-up are left out. Writes LABEL<TAB>REQUESTS<TAB>INSTRUCTIONS
# lines to $RAW/instr/counts.tsv.
#
# run_instr_case [SINK SUFFIX LABELS FLAGS] — the data plane with `--access-log SINK` (default
# $ACCESS_LOG) and FLAGS, measuring LABELS (default keep_alive protected new_connection),
# each written as LABEL$SUFFIX. The instr_log case runs keep_alive with logging off and on
# (stdout, into the log file: the record, its hand-off and its JSON line are all counted).
# The instr_pp case runs a data plane that takes PROXY v2 headers from 127.0.0.2: a new
# connection per request from 127.0.0.1 (no header read) and from 127.0.0.2 with a header.
# The instr_https case runs one with an HTTPS listener: keep_alive, then https_keep_alive
# (the same request over TLS 1.3, ALPN http/1.1, on one connection).
# The instr_jwt case runs keep_alive, keep_alive_token (the unprotected proxy sent the jwt
# case's Authorization header, forwarded upstream: the same request bytes) and protected.
run_instr_case() {
  local sink=${1:-$ACCESS_LOG} suffix=${2:-} labels=${3:-keep_alive protected new_connection}
  local -a flags
  read -r -a flags <<<"${4:-}"
  local dir=$WORK/instr pid label cp_port=$PFIX_CP_PORT enrolment=unused
  rm -rf "$dir"
  mkdir -p "$dir"
  if [ "${INSTR_FED:-0}" = 1 ]; then
    # Fed by the bench control plane (it has bench.local): its snapshot, its log ingest.
    cp_port=$CP_GRPC_PORT
    enrolment=$(cat "$WORK/portcullis/dataplane-token")
  else
    cp -r "$WORK/pfix/dp-cache" "$dir/dp-cache"
  fi
  PORTCULLIS_ENROLMENT_TOKEN=$enrolment TOKIO_WORKER_THREADS=2 NO_COLOR=1 \
    start_bg instr valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
    "$BIN/portcullis-data-plane" --control-plane "http://127.0.0.1:$cp_port" \
    --node-id bench-instr --workers 1 --http-listen "127.0.0.1:$INSTR_PORT" \
    --admin-listen "127.0.0.1:$INSTR_ADMIN_PORT" --cache-dir "$dir/dp-cache" \
    --access-log "$sink" "${flags[@]}"
  pid=$(pid_of instr)
  WAIT_TRIES=600 wait_http "http://127.0.0.1:$INSTR_PORT/small" "data plane under callgrind" "$BENCH_HOST"
  if [ "${INSTR_FED:-0}" = 1 ]; then
    # A fed data plane seals its first snapshot into its cache on a blocking thread; the
    # nonce is aws-lc's first random draw, whose one-time jitter-entropy set-up costs
    # ~190M instructions under callgrind. Wait for the file, so that it is not counted
    # against the requests (it was, in some runs: bench/README.md finding 9).
    local tries=0
    until [ -e "$dir/dp-cache/snapshot.sealed" ] || [ $((tries += 1)) -gt 600 ]; do sleep 0.1; done
  fi
  local token load=(python3 "$ROOT/bench/instr_load.py" --port "$INSTR_PORT")
  token=$(cat "$WORK/pfix/token")
  "${load[@]}" --host "$BENCH_HOST" --count 300
  [[ " $labels " != *" protected "* ]] || "${load[@]}" --host "$AUTH_HOST" --token "$token" --count 300
  local tls_load=(python3 "$ROOT/bench/instr_load.py" --port "$INSTR_TLS_PORT" --tls)
  [[ " $labels " != *" https_keep_alive "* ]] || "${tls_load[@]}" --host "$BENCH_HOST" --count 300
  for label in $labels; do
    log "case instr: $INSTR_REQUESTS requests, $label"
    callgrind_control -z "$pid" >/dev/null
    case $label in
      keep_alive) "${load[@]}" --host "$BENCH_HOST" --count "$INSTR_REQUESTS" ;;
      keep_alive_token) "${load[@]}" --host "$BENCH_HOST" --token "$token" --count "$INSTR_REQUESTS" ;;
      protected) "${load[@]}" --host "$AUTH_HOST" --token "$token" --count "$INSTR_REQUESTS" ;;
      new_connection) "${load[@]}" --host "$BENCH_HOST" --close --count "$INSTR_REQUESTS" ;;
      proxy_v2) "${load[@]}" --host "$BENCH_HOST" --close --proxy-v2 --count "$INSTR_REQUESTS" ;;
      https_keep_alive) "${tls_load[@]}" --host "$BENCH_HOST" --count "$INSTR_REQUESTS" ;;
    esac
    # Records still in a worker's buffer or the ship queue are flushed within 250 ms
    # (slower under callgrind): wait, so that their sink's work is counted too.
    [ "$sink" = off ] || sleep 3
    rm -f "$dir"/callgrind.out.*
    callgrind_control -d "$label" "$pid" >/dev/null
    printf '%s\t%s\t%s\n' "$label$suffix" "$INSTR_REQUESTS" \
      "$(awk '/^totals:/ { print $2 }' "$dir"/callgrind.out.*)" >>"$RAW/instr/counts.tsv"
    # Kept for `callgrind_annotate` (where the instructions went).
    mv "$dir"/callgrind.out.* "$RAW/instr/callgrind.$label$suffix"
  done
  stop instr
}

# ----- control plane -----

cpb_dp() { # cpb_dp I — starts data plane I for the control-plane case
  local i=$1 dir=$WORK/cpb
  local token
  token=$("$BIN/portcullis" --url "http://127.0.0.1:$CPB_GRPC_PORT" --token "$(cat "$dir/admin-token")" \
    dataplane-token create "cpb-dp$i")
  PORTCULLIS_ENROLMENT_TOKEN=$token TOKIO_WORKER_THREADS=2 NO_COLOR=1 \
    start_bg "cpb-dp$i" "$BIN/portcullis-data-plane" --control-plane "http://127.0.0.1:$CPB_GRPC_PORT" \
    --node-id "cpb-dp$i" --workers 2 --http-listen "127.0.0.1:$((base + 70 + 2 * i))" \
    --admin-listen "127.0.0.1:$((base + 71 + 2 * i))" --cache-dir "$dir/dp$i"
  wait_http "http://127.0.0.1:$((base + 71 + 2 * i))/readyz" "data plane $i"
}

run_cp_case() {
  local dir=$WORK/cpb i
  mkdir -p "$dir"
  "$BIN/portcullis-control-plane" token create-admin --data-dir "$dir/cp" >"$dir/admin-token"
  NO_COLOR=1 start_bg cpb "$BIN/portcullis-control-plane" serve --data-dir "$dir/cp" \
    --http-listen "127.0.0.1:$CPB_HTTP_PORT" --grpc-listen "127.0.0.1:$CPB_GRPC_PORT"
  wait_http "http://127.0.0.1:$CPB_HTTP_PORT/health" "control plane (cp case)"
  local common=(--api "http://127.0.0.1:$CPB_HTTP_PORT" --token "$(cat "$dir/admin-token")"
    --target "http://127.0.0.1:$BACKEND_PORT")
  local dp1=(--dp "http://127.0.0.1:$((base + 72))")
  local dps=("${dp1[@]}" --dp "http://127.0.0.1:$((base + 74))" --dp "http://127.0.0.1:$((base + 76))")
  cpb_dp 1
  for via in listener api; do
    log "case cp: $CP_WRITES writes, 1 data plane, via $via"
    "$CP_BENCH" latency "${common[@]}" "${dp1[@]}" --writes "$CP_WRITES" --via "$via" \
      --label "one-$via" >"$RAW/cp/latency-1-$via.json"
  done
  cpb_dp 2; cpb_dp 3
  for via in listener api; do
    log "case cp: $CP_WRITES writes, 3 data planes, via $via"
    "$CP_BENCH" latency "${common[@]}" "${dps[@]}" --writes "$CP_WRITES" --via "$via" \
      --label "three-$via" >"$RAW/cp/latency-3-$via.json"
  done
  log "case cp: $BULK_PROXIES proxies + $((2 * BULK_PROXIES)) routes, 3 data planes"
  "$CP_BENCH" bulk "${common[@]}" "${dps[@]}" --proxies "$BULK_PROXIES" --routes-per-proxy 2 \
    --concurrency 32 --steady 10 --cp-log "$WORK/logs/cpb.log" \
    --dp-log "$WORK/logs/cpb-dp1.log" --dp-log "$WORK/logs/cpb-dp2.log" --dp-log "$WORK/logs/cpb-dp3.log" \
    >"$RAW/cp/bulk.json"
  {
    printf 'snapshot size on the wire (data plane cache file)\t%s KiB\n' \
      "$(( $(find "$dir/dp1" -type f -printf '%s\n' | sort -n | tail -1) / 1024 ))"
    printf 'control plane RSS after (peak)\t%s (%s)\n' "$(fmt_mib "$(mem_kib cpb VmRSS)")" "$(fmt_mib "$(mem_kib cpb VmHWM)")"
    for i in 1 2 3; do
      printf 'data plane %s RSS after (peak)\t%s (%s)\n' "$i" "$(fmt_mib "$(mem_kib "cpb-dp$i" VmRSS)")" "$(fmt_mib "$(mem_kib "cpb-dp$i" VmHWM)")"
    done
  } >"$RAW/cp/bulk-extra.tsv"
  for i in 3 2 1; do stop "cpb-dp$i"; done
  stop cpb
}

# cp_ha (issue #23): two control planes on one Redis; the writes go through A, every data
# plane streams from B (A only as its fallback), so each write reaches them through Redis
# pub/sub and each ACK comes back to A's API through Redis.
ha_dp() { # ha_dp I — data plane I of the cp_ha case, streaming from B
  local i=$1 dir=$WORK/ha token
  token=$("$BIN/portcullis" --url "http://127.0.0.1:$HA_B_GRPC" --token "$(cat "$dir/admin-token")" \
    dataplane-token create "ha-dp$i")
  PORTCULLIS_ENROLMENT_TOKEN=$token TOKIO_WORKER_THREADS=2 NO_COLOR=1 \
    start_bg "ha-dp$i" "$BIN/portcullis-data-plane" --control-plane "http://127.0.0.1:$HA_B_GRPC" \
    --control-plane "http://127.0.0.1:$HA_A_GRPC" --node-id "ha-dp$i" --workers 2 \
    --http-listen "127.0.0.1:$((base + 84 + 2 * i))" --admin-listen "127.0.0.1:$((base + 85 + 2 * i))" \
    --cache-dir "$dir/dp$i"
  wait_http "http://127.0.0.1:$((base + 85 + 2 * i))/readyz" "data plane $i (cp_ha)"
}

run_cp_ha_case() {
  local dir=$WORK/ha key round via
  mkdir -p "$dir/redis"
  start_bg ha-redis redis-server --port "$HA_REDIS_PORT" --bind 127.0.0.1 --save '' \
    --appendonly yes --appendfsync "$REDIS_FSYNC" --dir "$dir/redis"
  for _ in $(seq 1 100); do
    [ "$(redis-cli -p "$HA_REDIS_PORT" PING 2>/dev/null)" = PONG ] && break
    sleep 0.1
  done
  local redis=redis://127.0.0.1:$HA_REDIS_PORT/0
  key=$(head -c 32 /dev/urandom | base64)
  "$BIN/portcullis-control-plane" token create-admin --data-dir "$dir/a" --redis-url "$redis" >"$dir/admin-token"
  # The poll is only the safety net behind pub/sub: at 60 s it never fires during a write.
  local cpa=(serve --redis-url "$redis" --master-key "$key" --poll-interval-ms 60000)
  NO_COLOR=1 start_bg ha-a "$BIN/portcullis-control-plane" "${cpa[@]}" --data-dir "$dir/a" \
    --http-listen "127.0.0.1:$HA_A_HTTP" --grpc-listen "127.0.0.1:$HA_A_GRPC"
  NO_COLOR=1 start_bg ha-b "$BIN/portcullis-control-plane" "${cpa[@]}" --data-dir "$dir/b" \
    --http-listen "127.0.0.1:$HA_B_HTTP" --grpc-listen "127.0.0.1:$HA_B_GRPC"
  wait_http "http://127.0.0.1:$HA_A_HTTP/health" "control plane A (cp_ha)"
  wait_http "http://127.0.0.1:$HA_B_HTTP/health" "control plane B (cp_ha)"
  for i in 1 2 3; do ha_dp "$i"; done
  local args=(--api "http://127.0.0.1:$HA_A_HTTP" --token "$(cat "$dir/admin-token")"
    --target "http://127.0.0.1:$BACKEND_PORT" --writes "$CP_WRITES"
    --cp-log "$WORK/logs/ha-a.log" --cp-log "$WORK/logs/ha-b.log")
  for i in 1 2 3; do
    args+=(--dp "http://127.0.0.1:$((base + 84 + 2 * i))" --dp-log "$WORK/logs/ha-dp$i.log")
  done
  for round in $(seq 1 "${BENCH_HA_ROUNDS:-1}"); do
    for via in listener api; do
      log "case cp_ha: $CP_WRITES writes through A, 3 data planes on B, via $via (round $round)"
      "$CP_BENCH" latency "${args[@]}" --via "$via" --label "ha$round-$via" \
        >"$RAW/cp/ha-latency-3-$via-$round.json"
    done
  done
  for i in 3 2 1; do stop "ha-dp$i"; done
  stop ha-a; stop ha-b; stop ha-redis
}

fmt_mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

run_micro() {
  log "case micro: cargo bench -p portcullis-data-plane --bench routing"
  cargo bench -q -p portcullis-data-plane --bench routing -- \
    --warm-up-time 1 --measurement-time "$MICRO_TIME" >"$RAW/micro.txt" 2>&1 ||
    log "warning: micro-benchmark failed; see $RAW/micro.txt"
}

# ----- main -----

main() {
  ensure_tools
  build
  prepare
  trap stop_all EXIT
  trap 'exit 130' INT TERM
  write_meta
  log "mode: $MODE; peers: $PEERS; cases: $CASES"

  start_backend
  make_fixture   # certificate for every HTTPS listener, snapshot and token for the fixture data plane
  local peer
  for peer in $PEERS; do start_peer "$peer"; done
  if [[ " $PEERS " == *" portcullis "* ]] && { has_case https || has_case https_hs || has_case jwt; }; then
    start_pfix
  fi
  sleep 1
  for peer in $PEERS; do printf '%s\t%s\n' "$peer" "$(mem_kib "$peer" VmRSS)"; done >"$RAW/idle_rss.tsv"

  for name in h1_small h1_64k h1_close https https_hs h2c jwt; do
    if has_case "$name"; then run_load_case "$name"; fi
  done
  if has_case h1_pp && [[ " $PEERS " == *" portcullis "* ]]; then
    start_pp_pair
    run_load_case h1_pp
    stop happ; stop ppdp; stop plaindp
  fi
  if has_case h1_log && [[ " $PEERS " == *" portcullis "* ]]; then
    start_log_pair
    run_load_case h1_log
    curl -s "http://127.0.0.1:$LOGON_ADMIN_PORT/metrics" | grep '^portcullis_dp_access_log_dropped_total' \
      >"$RAW/h1_log/dropped.txt" || true
    stop logon; stop logoff; stop logstdout; stop nginxlog
  fi
  if has_case idle; then run_idle_case; fi
  : >"$RAW/instr/counts.tsv"
  if has_case instr; then run_instr_case; fi
  if has_case instr_log; then
    run_instr_case off _log_off keep_alive
    run_instr_case stdout _log_on keep_alive
    # The default sink ships to a control plane: a data plane fed by the bench's, off vs on.
    [ -n "$(pid_of cp)" ] || start_portcullis
    INSTR_FED=1 run_instr_case off _cp_off keep_alive
    INSTR_FED=1 run_instr_case control-plane _log_cp keep_alive
  fi
  if has_case instr_pp; then
    run_instr_case "$ACCESS_LOG" _pp "new_connection proxy_v2" \
      "--proxy-protocol v2 --proxy-protocol-from 127.0.0.2/32"
  fi
  if has_case instr_https; then
    run_instr_case "$ACCESS_LOG" _tls "keep_alive https_keep_alive" "--https-listen 127.0.0.1:$INSTR_TLS_PORT"
  fi
  if has_case instr_jwt; then
    run_instr_case "$ACCESS_LOG" _jwt "keep_alive keep_alive_token protected"
  fi
  for peer in $PEERS; do stop "$peer"; done
  stop pfix
  stop cp

  if has_case cp; then run_cp_case; fi
  if has_case cp_ha; then run_cp_ha_case; fi
  stop backend
  if has_case micro; then run_micro; fi

  python3 "$ROOT/bench/report.py" "$RAW" "$RESULT" >/dev/null
  log "results: ${RESULT#"$ROOT"/}"
  cat "$RESULT"
}

main "$@"
