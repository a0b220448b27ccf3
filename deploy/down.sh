#!/usr/bin/env bash
# Stops what deploy/up.sh started. State (store, tokens, cache) is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
state=${PORTCULLIS_STATE:-.portcullis}
for name in data-plane control-plane; do
  pidfile="$state/$name.pid"
  if [ -s "$pidfile" ]; then
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      echo "stopped $name ($pid)"
    fi
    rm -f "$pidfile"
  fi
done
