# The backend and the four proxies under test: configuration and start-up. Sourced by
# bench/run.sh, which sets WORK, BIN, BENCH_CPUS, BENCH_HOST and the *_PORT variables.
#
# Every proxy gets the same job: accept HTTP/1.1 (and h2c on H2_PORT) for Host
# $BENCH_HOST, forward to the backend over pooled keep-alive HTTP/1.1 connections, set
# X-Forwarded-For/-Proto/-Host and X-Real-IP (what Portcullis always does), log no access
# lines, and use 2 worker threads/processes.

# ----- backend: a separate nginx serving two static files -----

start_backend() {
  local dir=$WORK/backend
  mkdir -p "$dir/www" "$dir/logs" "$dir/tmp"
  head -c 100 /dev/zero | tr '\0' 'x' >"$dir/www/small"
  head -c 65536 /dev/zero | tr '\0' 'y' >"$dir/www/64k"
  cat >"$dir/nginx.conf" <<EOF
# Backend: must be faster than every proxy, so it only serves two files from the page cache.
worker_processes 2;
worker_rlimit_nofile 20000;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  open_file_cache max=16 inactive=1h;
  open_file_cache_valid 1h;
  keepalive_timeout 300s;
  keepalive_requests 100000000;
  client_body_temp_path $dir/tmp/body;
  server {
    listen 127.0.0.1:$BACKEND_PORT backlog=4096;
    root $dir/www;
  }
}
EOF
  start_bg backend nginx -p "$dir" -c "$dir/nginx.conf"
  wait_http "http://127.0.0.1:$BACKEND_PORT/small" backend
}

# ----- Portcullis: control plane + one data plane, proxy created with the CLI -----

start_portcullis() {
  local dir=$WORK/portcullis
  if [ ! -s "$dir/admin-token" ]; then
    rm -rf "$dir"; mkdir -p "$dir"
    "$BIN/portcullis-control-plane" token create-admin --data-dir "$dir/cp" >"$dir/admin-token"
  fi
  NO_COLOR=1 start_bg cp "$BIN/portcullis-control-plane" serve --data-dir "$dir/cp" \
    --http-listen "127.0.0.1:$CP_HTTP_PORT" --grpc-listen "127.0.0.1:$CP_GRPC_PORT"
  wait_http "http://127.0.0.1:$CP_HTTP_PORT/health" "control plane"
  local cli=("$BIN/portcullis" --url "http://127.0.0.1:$CP_GRPC_PORT" --token "$(cat "$dir/admin-token")")
  if [ ! -s "$dir/dataplane-token" ]; then
    "${cli[@]}" dataplane-token create bench-dp >"$dir/dataplane-token"
    "${cli[@]}" proxy create "$BENCH_HOST" "http://127.0.0.1:$BACKEND_PORT" >/dev/null
  fi
  start_portcullis_dp
}

# The data plane alone (restarted between cases). `--workers 2` serving threads, like
# nginx's worker_processes; TOKIO_WORKER_THREADS sizes the background runtime (control-plane
# stream, admin listener).
start_portcullis_dp() {
  local dir=$WORK/portcullis
  PORTCULLIS_ENROLMENT_TOKEN=$(cat "$dir/dataplane-token") TOKIO_WORKER_THREADS=2 NO_COLOR=1 \
    start_bg portcullis "$BIN/portcullis-data-plane" --control-plane "http://127.0.0.1:$CP_GRPC_PORT" \
    --node-id bench-dp --workers 2 --http-listen "127.0.0.1:$PORTCULLIS_PORT" \
    --admin-listen "127.0.0.1:$PORTCULLIS_ADMIN_PORT" --cache-dir "$dir/dp-cache" \
    --access-log "$ACCESS_LOG"
  wait_http "http://127.0.0.1:$PORTCULLIS_PORT/small" portcullis "$BENCH_HOST"
}

# ----- the fixture data plane: HTTPS and JWT cases -----

# make_fixture — data-plane/examples/bench_fixture.rs writes a snapshot into the fixture
# data plane's cache directory (bench.local unprotected on HTTP and HTTPS, auth.bench.local
# the same proxy protected in forward mode), the self-signed certificate every proxy's HTTPS
# listener uses, and a valid ES256 access token for http://auth.bench.local.
make_fixture() {
  "$BIN/examples/bench_fixture" "$WORK/pfix" "http://127.0.0.1:$BACKEND_PORT" "$BENCH_HOST" "$AUTH_HOST"
}

# A real data plane serving the fixture snapshot from its cache (sealed under the token
# `unused`, so PORTCULLIS_ENROLMENT_TOKEN must stay that). Its control plane
# (PFIX_CP_PORT) never runs: the data plane keeps serving the cached snapshot and retries
# the connection with backoff (at most every 10 s), as it would during a control-plane outage.
start_pfix() {
  local dir=$WORK/pfix
  PORTCULLIS_ENROLMENT_TOKEN=unused TOKIO_WORKER_THREADS=2 NO_COLOR=1 \
    start_bg pfix "$BIN/portcullis-data-plane" --control-plane "http://127.0.0.1:$PFIX_CP_PORT" \
    --node-id bench-fixture --workers 2 --http-listen "127.0.0.1:$PFIX_PORT" \
    --https-listen "127.0.0.1:$PFIX_TLS_PORT" --admin-listen "127.0.0.1:$PFIX_ADMIN_PORT" \
    --cache-dir "$dir/dp-cache" --access-log "$ACCESS_LOG"
  wait_http "http://127.0.0.1:$PFIX_PORT/small" "fixture data plane" "$BENCH_HOST"
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $AUTH_HOST" \
    -H "Authorization: Bearer $(cat "$dir/token")" "http://127.0.0.1:$PFIX_PORT/small")
  [ "$code" = 200 ] || die "fixture data plane refused the bench token ($code); see $WORK/logs/pfix.log"
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $AUTH_HOST" "http://127.0.0.1:$PFIX_PORT/small")
  [ "$code" = 401 ] || die "fixture data plane let a request without a token through ($code)"
  code=$(curl -sk -o /dev/null -w '%{http_code}' --tlsv1.3 -H "Host: $BENCH_HOST" "https://127.0.0.1:$PFIX_TLS_PORT/small")
  [ "$code" = 200 ] || die "fixture data plane HTTPS answered $code; see $WORK/logs/pfix.log"
}

# ----- nginx as a reverse proxy -----

start_nginx() {
  local dir=$WORK/nginx
  mkdir -p "$dir/logs" "$dir/tmp"
  cat >"$dir/nginx.conf" <<EOF
# nginx reverse proxy as its docs recommend for keep-alive upstreams
# (ngx_http_upstream_module "keepalive": proxy_http_version 1.1 + empty Connection header).
worker_processes 2;
worker_rlimit_nofile 20000;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  # Default 1000: nginx then closes the client connection (GOAWAY on HTTP/2), and h2load does
  # not reconnect. Portcullis, HAProxy and Caddy have no such limit.
  keepalive_requests 100000000;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  upstream backend {
    server 127.0.0.1:$BACKEND_PORT;
    keepalive 64;          # idle upstream connections kept per worker (>= client concurrency)
  }
  server {
    listen 127.0.0.1:$NGINX_PORT backlog=4096;
    listen 127.0.0.1:$NGINX_H2_PORT http2 backlog=4096;   # nginx 1.22: h2c needs its own listen
    listen 127.0.0.1:$NGINX_TLS_PORT ssl backlog=4096;
    ssl_certificate $WORK/pfix/cert.pem;
    ssl_certificate_key $WORK/pfix/key.pem;
    ssl_protocols TLSv1.3;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Real-IP \$remote_addr;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$host;
    }
  }
}
EOF
  start_bg nginx nginx -p "$dir" -c "$dir/nginx.conf"
  wait_http "http://127.0.0.1:$NGINX_PORT/small" nginx "$BENCH_HOST"
}

# ----- HAProxy -----

start_haproxy() {
  local dir=$WORK/haproxy
  mkdir -p "$dir"
  cat >"$dir/haproxy.cfg" <<EOF
# HAProxy in HTTP mode with connection reuse. http-reuse always: the backend is a known-good
# keep-alive server, and it is the mode equivalent to nginx keepalive and Portcullis's pool
# (any idle connection serves any request, also the first one of a client connection).
global
  nbthread 2
  # haproxy reserves 2 descriptors per connection (client + server side), so maxconn is
  # capped by the hard descriptor limit (run.sh computes it; 9850 with the usual 20000).
  maxconn $HAPROXY_MAXCONN
  pidfile $dir/haproxy.pid

defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-request 30s
  timeout http-keep-alive 60s

frontend fe
  bind 127.0.0.1:$HAPROXY_PORT
  bind 127.0.0.1:$HAPROXY_H2_PORT proto h2
  bind 127.0.0.1:$HAPROXY_TLS_PORT ssl crt $WORK/pfix/combined.pem ssl-min-ver TLSv1.3 alpn http/1.1
  option forwardfor
  http-request set-header X-Real-IP %[src]
  http-request set-header X-Forwarded-Proto http if !{ ssl_fc }
  http-request set-header X-Forwarded-Proto https if { ssl_fc }
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  default_backend be

backend be
  server s1 127.0.0.1:$BACKEND_PORT
EOF
  start_bg haproxy haproxy -db -f "$dir/haproxy.cfg"
  wait_http "http://127.0.0.1:$HAPROXY_PORT/small" haproxy "$BENCH_HOST"
}

# ----- Caddy -----

start_caddy() {
  local dir=$WORK/caddy
  mkdir -p "$dir/home"
  cat >"$dir/Caddyfile" <<EOF
# Caddy reverse_proxy from a Caddyfile; h2c (prior knowledge) enabled on the server.
{
  admin off
  auto_https off
  servers {
    protocols h1 h2c
  }
}

(proxy) {
  reverse_proxy 127.0.0.1:$BACKEND_PORT {
    header_up X-Real-IP {remote_host}
    transport http {
      keepalive_idle_conns_per_host 64
    }
  }
}

http://:$CADDY_PORT {
  bind 127.0.0.1
  import proxy
}

https://:$CADDY_TLS_PORT {
  bind 127.0.0.1
  tls $WORK/pfix/cert.pem $WORK/pfix/key.pem {
    protocols tls1.3
  }
  import proxy
}
EOF
  HOME=$dir/home XDG_CONFIG_HOME=$dir/home XDG_DATA_HOME=$dir/home GOMAXPROCS=2 \
    start_bg caddy caddy run --config "$dir/Caddyfile" --adapter caddyfile
  wait_http "http://127.0.0.1:$CADDY_PORT/small" caddy "$BENCH_HOST"
}

start_peer() { "start_$1"; }

# restart_peer NAME — a fresh process (memory baselines); Portcullis restarts its data plane.
restart_peer() {
  stop "$1"
  case $1 in
    portcullis) start_portcullis_dp ;;
    *) "start_$1" ;;
  esac
}

# Ports each peer listens on: HTTP/1.1 and h2c.
h1_port() {
  case $1 in
    portcullis) echo "$PORTCULLIS_PORT" ;; nginx) echo "$NGINX_PORT" ;;
    haproxy) echo "$HAPROXY_PORT" ;; caddy) echo "$CADDY_PORT" ;; direct) echo "$BACKEND_PORT" ;;
  esac
}
tls_port() {
  case $1 in
    portcullis) echo "$PFIX_TLS_PORT" ;; nginx) echo "$NGINX_TLS_PORT" ;;
    haproxy) echo "$HAPROXY_TLS_PORT" ;; caddy) echo "$CADDY_TLS_PORT" ;;
  esac
}
h2_port() {
  case $1 in
    portcullis) echo "$PORTCULLIS_PORT" ;; nginx) echo "$NGINX_H2_PORT" ;;
    haproxy) echo "$HAPROXY_H2_PORT" ;; caddy) echo "$CADDY_PORT" ;;
  esac
}

version_of() {
  case $1 in
    portcullis) "$BIN/portcullis-data-plane" --version 2>/dev/null | head -1 ;;
    nginx) nginx -v 2>&1 | head -1 ;;
    haproxy) haproxy -v | awk 'NR == 1 { print $1, $2, $3 }' ;;
    caddy) echo "caddy $(caddy version | head -1)" ;;
  esac
}

# ----- h1_pp: PROXY protocol v2 from HAProxy vs HAProxy plain (issue #19) -----

# start_pp_pair — two fixture data planes that differ only in `--proxy-protocol v2
# --proxy-protocol-from 127.0.0.1/32` (ppdp requires the header from HAProxy; plaindp takes
# none), and one HAProxy in TCP mode, the usual layer-4 balancer in front of a proxy, with a
# frontend for each: `send-proxy-v2` towards ppdp, nothing towards plaindp. One HAProxy
# process, so both paths share its threads and settings; only one is loaded at a time.
start_pp_pair() {
  local name port admin dir=$WORK/pp
  local -a flags
  mkdir -p "$dir"
  for name in ppdp plaindp; do
    rm -rf "${dir:?}/$name"
    cp -r "$WORK/pfix/dp-cache" "$dir/$name"
    if [ "$name" = ppdp ]; then
      port=$PPDP_PORT admin=$PPDP_ADMIN_PORT flags=(--proxy-protocol v2 --proxy-protocol-from 127.0.0.1/32)
    else
      port=$PLAINDP_PORT admin=$PLAINDP_ADMIN_PORT flags=()
    fi
    PORTCULLIS_ENROLMENT_TOKEN=unused TOKIO_WORKER_THREADS=2 NO_COLOR=1 \
      start_bg "$name" "$BIN/portcullis-data-plane" --control-plane "http://127.0.0.1:$PFIX_CP_PORT" \
      --node-id "bench-$name" --workers 2 --http-listen "127.0.0.1:$port" \
      --admin-listen "127.0.0.1:$admin" --cache-dir "$dir/$name" --access-log "$ACCESS_LOG" "${flags[@]}"
  done
  cat >"$dir/haproxy.cfg" <<CFG
# Layer-4 balancer in front of two otherwise identical data planes: the only difference
# between the two paths is the PROXY v2 header HAProxy writes at the start of each
# connection to ppdp (28 bytes for TCP over IPv4).
global
  nbthread 2
  maxconn $HAPROXY_MAXCONN
  pidfile $dir/haproxy.pid

defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s

frontend fe_proxy_v2
  bind 127.0.0.1:$PP_HAPROXY_PORT
  default_backend be_proxy_v2

backend be_proxy_v2
  server dp 127.0.0.1:$PPDP_PORT send-proxy-v2

frontend fe_plain
  bind 127.0.0.1:$PLAIN_HAPROXY_PORT
  default_backend be_plain

backend be_plain
  server dp 127.0.0.1:$PLAINDP_PORT
CFG
  start_bg happ haproxy -db -f "$dir/haproxy.cfg"
  wait_http "http://127.0.0.1:$PP_HAPROXY_PORT/small" "HAProxy send-proxy-v2 → data plane" "$BENCH_HOST"
  wait_http "http://127.0.0.1:$PLAIN_HAPROXY_PORT/small" "HAProxy plain → data plane" "$BENCH_HOST"
  # The header is really read: ppdp closes a connection from HAProxy's address without one.
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $BENCH_HOST" "http://127.0.0.1:$PPDP_PORT/small" || true)
  [ "$code" = 000 ] || die "data plane with --proxy-protocol v2 answered $code to a connection without a PROXY header"
}

# ----- h1_log: the access log shipped to the control plane vs off (issue #18) -----

# start_log_pair — data planes fed by the bench control plane (so `bench.local` is the
# same proxy), each with its own enrolment token, that differ only in `--access-log`:
# logon ships every record to the control plane (the default sink of a connected data
# plane), logoff records nothing, logstdout writes JSON lines to its stdout (its log file,
# as nginx writes its access log to a file). `--workers 2`, like every proxy here; other
# flags (PORTCULLIS_H1_FAST_PATH, …) come from the environment for all. With nginx among
# the peers, also start_nginx_log.
start_log_pair() {
  local dir=$WORK/portcullis name port admin sink
  [ -n "$(pid_of cp)" ] || start_portcullis
  local cli=("$BIN/portcullis" --url "http://127.0.0.1:$CP_GRPC_PORT" --token "$(cat "$dir/admin-token")")
  for name in logon logoff logstdout; do
    case $name in
      logon) port=$LOGON_PORT admin=$LOGON_ADMIN_PORT sink=control-plane ;;
      logoff) port=$LOGOFF_PORT admin=$LOGOFF_ADMIN_PORT sink=off ;;
      logstdout) port=$LOGSTDOUT_PORT admin=$LOGSTDOUT_ADMIN_PORT sink=stdout ;;
    esac
    [ -s "$dir/$name-token" ] || "${cli[@]}" dataplane-token create "bench-$name" >"$dir/$name-token"
    rm -rf "${dir:?}/$name-cache"
    PORTCULLIS_ENROLMENT_TOKEN=$(cat "$dir/$name-token") TOKIO_WORKER_THREADS=2 NO_COLOR=1 \
      start_bg "$name" "$BIN/portcullis-data-plane" --control-plane "http://127.0.0.1:$CP_GRPC_PORT" \
      --node-id "bench-$name" --workers 2 --http-listen "127.0.0.1:$port" \
      --admin-listen "127.0.0.1:$admin" --cache-dir "$dir/$name-cache" --access-log "$sink"
  done
  wait_http "http://127.0.0.1:$LOGON_PORT/small" "data plane --access-log control-plane" "$BENCH_HOST"
  wait_http "http://127.0.0.1:$LOGOFF_PORT/small" "data plane --access-log off" "$BENCH_HOST"
  wait_http "http://127.0.0.1:$LOGSTDOUT_PORT/small" "data plane --access-log stdout" "$BENCH_HOST"
  if [[ " $PEERS " == *" nginx "* ]]; then start_nginx_log; fi
}

# start_nginx_log — the bench's nginx proxy (start_nginx's settings) with three servers that
# differ only in their access log: off; to a file with nginx's default, unbuffered (one
# write per request); to a file with `buffer=64k flush=1s` (one write per 64 KiB, as the
# data plane writes one chunk per 64 records). The line is JSON with about the fields a
# Portcullis record has (`escape=json`), so both write lines of similar size.
start_nginx_log() {
  local dir=$WORK/nginxlog server port log
  mkdir -p "$dir/logs" "$dir/tmp"
  {
    cat <<EOF
worker_processes 2;
worker_rlimit_nofile 20000;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 16384; }
http {
  keepalive_requests 100000000;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  log_format record escape=json '{"time":"\$time_iso8601","node_id":"nginx","listener":"\$scheme",'
    '"client_ip":"\$remote_addr","client_port":\$remote_port,"method":"\$request_method","host":"\$host",'
    '"path":"\$uri","http_version":"\$server_protocol","status":\$status,"request_body_bytes":\$request_length,'
    '"response_body_bytes":\$body_bytes_sent,"duration_s":\$request_time,"upstream_ttfb_s":"\$upstream_header_time",'
    '"upstream":"\$upstream_addr","proxy":"\$server_name","auth":"none","request_id":"\$request_id",'
    '"user_agent":"\$http_user_agent"}';
  upstream backend {
    server 127.0.0.1:$BACKEND_PORT;
    keepalive 64;
  }
EOF
    for server in "$NGLOG_OFF_PORT:off" "$NGLOG_ON_PORT:$dir/logs/access.log record" \
      "$NGLOG_BUF_PORT:$dir/logs/access-buffered.log record buffer=64k flush=1s"; do
      port=${server%%:*} log=${server#*:}
      cat <<EOF
  server {
    listen 127.0.0.1:$port backlog=4096;
    server_name $BENCH_HOST;
    access_log $log;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Real-IP \$remote_addr;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$host;
    }
  }
EOF
    done
    echo "}"
  } >"$dir/nginx.conf"
  start_bg nginxlog nginx -p "$dir" -c "$dir/nginx.conf"
  for port in $NGLOG_OFF_PORT $NGLOG_ON_PORT $NGLOG_BUF_PORT; do
    wait_http "http://127.0.0.1:$port/small" "nginx (access-log variants)" "$BENCH_HOST"
  done
}
