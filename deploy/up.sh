#!/usr/bin/env bash
# Quick start: build, then run a control plane (embedded store) and one data plane in the
# background on unprivileged loopback ports. Prints the admin token and the URLs.
#
#   PORTCULLIS_STATE     state, logs and pids          (default: .portcullis)
#   PORTCULLIS_PROFILE   cargo profile: release|debug  (default: release)
#   CP_HTTP CP_GRPC DP_HTTP DP_HTTPS DP_ADMIN          (default: 9000 9090 8080 8443 8081)
set -euo pipefail
cd "$(dirname "$0")/.."

state=${PORTCULLIS_STATE:-.portcullis}
profile=${PORTCULLIS_PROFILE:-release}
cp_http=${CP_HTTP:-9000}; cp_grpc=${CP_GRPC:-9090}; dp_http=${DP_HTTP:-8080}; dp_https=${DP_HTTPS:-8443}; dp_admin=${DP_ADMIN:-8081}

if [ "$profile" = release ]; then cargo build --release --bins; else cargo build --bins; fi
bin="${CARGO_TARGET_DIR:-target}/$profile"

mkdir -p "$state/logs" && chmod 700 "$state"
"$(dirname "$0")/down.sh" >/dev/null 2>&1 || true

umask 077
if [ ! -s "$state/admin-token" ]; then
  "$bin/portcullis-control-plane" token create-admin --data-dir "$state/control-plane" > "$state/admin-token"
fi
admin=$(cat "$state/admin-token")

nohup "$bin/portcullis-control-plane" serve --data-dir "$state/control-plane" \
  --http-listen "127.0.0.1:$cp_http" --grpc-listen "127.0.0.1:$cp_grpc" \
  > "$state/logs/control-plane.log" 2>&1 &
echo $! > "$state/control-plane.pid"

wait_for() { # url what
  for _ in $(seq 1 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "error: $2 did not come up; see $state/logs" >&2; exit 1
}
wait_for "http://127.0.0.1:$cp_http/health" "control plane"

export PORTCULLIS_URL="http://127.0.0.1:$cp_grpc" PORTCULLIS_TOKEN="$admin"
if [ ! -s "$state/dataplane-token" ]; then
  "$bin/portcullis" dataplane-token create dp-1 > "$state/dataplane-token"
fi

nohup "$bin/portcullis-data-plane" --control-plane "http://127.0.0.1:$cp_grpc" \
  --enrolment-token-file "$state/dataplane-token" --node-id dp-1 \
  --http-listen "127.0.0.1:$dp_http" --https-listen "127.0.0.1:$dp_https" --admin-listen "127.0.0.1:$dp_admin" --cache-dir "$state/data-plane" \
  > "$state/logs/data-plane.log" 2>&1 &
echo $! > "$state/data-plane.pid"
wait_for "http://127.0.0.1:$dp_admin/readyz" "data plane"

cat <<TXT
Portcullis is running.
  admin token      $admin
  REST API         http://127.0.0.1:$cp_http/api/v1/   (Swagger UI: http://127.0.0.1:$cp_http/docs)
  gRPC (CLI)       http://127.0.0.1:$cp_grpc
  proxy (HTTP)     http://127.0.0.1:$dp_http
  proxy (HTTPS)    https://127.0.0.1:$dp_https  (proxies created with --https; *.localhost names get a self-signed certificate)
  data plane admin http://127.0.0.1:$dp_admin/readyz
  logs             $state/logs/

Try:
  export PORTCULLIS_URL=http://127.0.0.1:$cp_grpc PORTCULLIS_TOKEN=$admin
  $bin/portcullis proxy create app.localhost http://127.0.0.1:3000
  curl -H 'Host: app.localhost' http://127.0.0.1:$dp_http/
  $bin/portcullis proxy create secure.localhost http://127.0.0.1:3000 --https
  curl -k --resolve secure.localhost:$dp_https:127.0.0.1 https://secure.localhost:$dp_https/
Stop with: deploy/down.sh (or just down)
TXT
