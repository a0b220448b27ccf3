# Shared helpers for bench/run.sh: logging, background processes with pid files, waiting
# for ports, and memory readings from /proc. Sourced, not executed.

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# start_bg NAME CMD... — runs CMD in the background, confined to $BENCH_CPUS, with
# stdout/stderr in $WORK/logs/NAME.log and its pid in $WORK/pids/NAME.pid.
start_bg() {
  local name=$1; shift
  taskset -c "$BENCH_CPUS" "$@" >"$WORK/logs/$name.log" 2>&1 &
  echo $! >"$WORK/pids/$name.pid"
}

pid_of() { cat "$WORK/pids/$1.pid" 2>/dev/null || true; }

# stop NAME — TERM, then KILL after 5 s, for the process started under NAME.
stop() {
  local name=$1 pid
  pid=$(pid_of "$name")
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -f "$WORK/pids/$name.pid"
}

# stop_all — every process with a pid file, newest first (EXIT trap).
stop_all() {
  local f
  for f in $(ls -t "$WORK"/pids/*.pid 2>/dev/null); do
    stop "$(basename "$f" .pid)"
  done
}

# wait_http URL [WHAT] [HOST] — until URL answers (any HTTP status except 000/404 with HOST).
# Tries every 0.1 s, WAIT_TRIES times (default 200).
wait_http() {
  local url=$1 what=${2:-$1} host=${3:-} code
  for _ in $(seq 1 "${WAIT_TRIES:-200}"); do
    if [ -n "$host" ]; then
      code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $host" "$url" || true)
      [ "$code" = 200 ] && return 0
    else
      curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
    fi
    sleep 0.1
  done
  die "$what did not come up ($url); see $WORK/logs"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# tree_pids PID — PID and its direct children (nginx master + workers).
tree_pids() {
  local pid=$1
  echo "$pid"
  pgrep -P "$pid" 2>/dev/null || true
}

# mem_kib NAME FIELD — sum of FIELD (VmRSS, VmHWM) over the process tree of NAME, in KiB.
mem_kib() {
  local name=$1 field=$2 pid total=0 v
  for pid in $(tree_pids "$(pid_of "$name")"); do
    v=$(awk -v f="$field:" '$1 == f { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

# reset_peak NAME — resets VmHWM to the current RSS for the process tree (Linux >= 4.0).
reset_peak() {
  local pid
  for pid in $(tree_pids "$(pid_of "$1")"); do
    echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true
  done
}

# median of numbers on stdin.
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR) print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }

# cpu_ticks NAME — "user system" CPU clock ticks used so far by the process tree of NAME.
cpu_ticks() {
  local pid u=0 s=0 a b
  for pid in $(tree_pids "$(pid_of "$1")"); do
    read -r a b < <(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12, $13 }') || true
    u=$((u + ${a:-0})); s=$((s + ${b:-0}))
  done
  echo "$u $s"
}
