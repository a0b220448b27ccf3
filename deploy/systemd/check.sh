#!/usr/bin/env bash
# Checks the units offline: `systemd-analyze verify` must print nothing (it exits 0 on
# unknown keys and bad values, only warning), and `systemd-analyze security` must rate
# each sandbox at most 2.0 ("OK"). ExecStart is pointed at the built binaries, since
# verify insists the executable exists.
#   deploy/systemd/check.sh [BIN_DIR]   (default: target/debug)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$(cd "${1:-$here/../../target/debug}" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for unit in "$here"/*.service; do
  sed "s#^ExecStart=/usr/local/bin/#ExecStart=$bin/#" "$unit" > "$work/$(basename "$unit")"
done
out="$(systemd-analyze verify "$work"/*.service 2>&1)" || { echo "$out"; exit 1; }
if [ -n "$out" ]; then
  echo "systemd-analyze verify complained:"; echo "$out"; exit 1
fi
for unit in "$work"/*.service; do
  systemd-analyze security --offline=yes --threshold=20 "$unit" >"$work/security.txt" 2>&1 \
    || { cat "$work/security.txt"; echo "$(basename "$unit"): sandbox exposure above 2.0"; exit 1; }
  grep -o 'Overall exposure level.*' "$work/security.txt"
done
# The data plane binds 80/443 as a dynamic user: only with this one capability.
grep -qx 'AmbientCapabilities=CAP_NET_BIND_SERVICE' "$here/portcullis-data-plane.service"
grep -qx 'CapabilityBoundingSet=' "$here/portcullis-control-plane.service"
echo "systemd units OK"
