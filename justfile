# Portcullis recipes: thin wrappers over the `portcullis` CLI (gRPC) and the deploy scripts.
# The CLI reads PORTCULLIS_URL and PORTCULLIS_TOKEN; by default they point at the quick-start
# control plane and its saved admin token.

set positional-arguments

state := env_var_or_default("PORTCULLIS_STATE", ".portcullis")
bin := env_var_or_default("PORTCULLIS_BIN", "target/release")
export PORTCULLIS_URL := env_var_or_default("PORTCULLIS_URL", "http://127.0.0.1:9090")
export PORTCULLIS_TOKEN := env_var_or_default("PORTCULLIS_TOKEN", `cat ${PORTCULLIS_STATE:-.portcullis}/admin-token 2>/dev/null || true`)

cli := bin / "portcullis"
# The control plane's HTTP listener (REST, /health, OAuth endpoints).
api := env_var_or_default("PORTCULLIS_API_URL", "http://127.0.0.1:" + env_var_or_default("CP_HTTP", "9000"))

# List recipes.
default:
    @just --list

# Build and start a control plane (embedded store) and one data plane.
up:
    deploy/up.sh

# Stop what `up` started.
down:
    deploy/down.sh

# Run every test (installs what it needs).
test *args:
    tests/run.sh "$@"

# Print a new admin token (store access while stopped; otherwise via the running server).
token-admin name="admin":
    #!/usr/bin/env bash
    set -euo pipefail
    if out=$("{{bin}}/portcullis-control-plane" token create-admin --data-dir "{{state}}/control-plane" --name "{{name}}" 2>/dev/null); then
      echo "$out"
    else
      "{{cli}}" token create "{{name}}" --scope admin
    fi

# Create a token: just token-create NAME [admin|user]
token-create name scope="user":
    {{cli}} token create "{{name}}" --scope "{{scope}}"

# List tokens.
token-list:
    {{cli}} token list

# Create a data-plane enrolment token.
dataplane-token-create name:
    {{cli}} dataplane-token create "{{name}}"

# Control plane status.
status:
    {{cli}} status

# Write every resource as one document: just export [FILE] [yaml|json] (stdout without FILE)
export file="" format="yaml":
    {{cli}} export --format "{{format}}" {{ if file == "" { "" } else { "--out '" + file + "'" } }}

# Make the installation match a document (shows the diff; all or nothing): just apply FILE [--prune] [--dry-run]
apply file *flags:
    {{cli}} apply -f "$@"

# Create a proxy: just proxy-create HOST TARGET_URL [CLI flags, e.g. --https --preserve-host]
# or the seed's shape: just proxy-create HOST TARGET_URL [STAGING] [PRESERVE_HOST] [HTTP] [HTTPS] [TOKEN]
proxy-create hostname target_url *args:
    CLI="{{cli}}" deploy/seed-shapes.sh proxy-create "$@"

# List proxies.
proxy-list:
    {{cli}} proxy list

# Show a proxy.
proxy-show hostname:
    {{cli}} proxy show "{{hostname}}"

# Update a proxy: just proxy-update HOST [--target URL] [--enabled false] ...
proxy-update hostname *flags:
    {{cli}} proxy update "$@"

# Delete a proxy.
proxy-delete hostname:
    {{cli}} proxy delete "{{hostname}}"

# Create a route: just route-create PATH url|service|proxy VALUE [--priority N --match regex --proxy HOST --scope S --public ...]
# or the seed's shape: just route-create PATH TYPE TARGET [TOKEN] [PRIORITY] [METHODS] [IS_REGEX] [DESCRIPTION]
route-create path target_type target_value *args:
    CLI="{{cli}}" deploy/seed-shapes.sh route-create "$@"

# List routes.
route-list:
    {{cli}} route list

# Show a route.
route-show id:
    {{cli}} route show "{{id}}"

# Delete a route.
route-delete id:
    {{cli}} route delete "{{id}}"

# Register a named external service: just service-register NAME URL [DESCRIPTION], or the seed's NAME URL [TOKEN] [DESCRIPTION]
service-register name url *args:
    CLI="{{cli}}" deploy/seed-shapes.sh service-register "$@"

# List external services.
service-list:
    {{cli}} service external list

# Delete an external service.
service-delete name:
    {{cli}} service external delete "{{name}}"

# PORT: container port, published on an allocated 127.0.0.1 host port; AUTO_PROXY=true adds NAME.localhost; DOCKERFILE: a Dockerfile path, built through the engine with its directory as context (IMAGE then "").

# Docker service: just service-create NAME IMAGE [DOCKERFILE] [PORT] [TOKEN] [MEMORY] [CPU] [AUTO_PROXY]
service-create name image dockerfile="" port="" token="" memory="" cpu="" auto_proxy="false":
    #!/usr/bin/env bash
    set -euo pipefail
    if [ -n "{{token}}" ]; then export PORTCULLIS_TOKEN="{{token}}"; fi
    args=(service create "{{name}}")
    if [ -n "{{image}}" ]; then args+=("{{image}}"); fi
    if [ -n "{{dockerfile}}" ]; then args+=(--dockerfile "{{dockerfile}}"); fi
    if [ -n "{{port}}" ]; then args+=(--port "{{port}}"); fi
    if [ -n "{{memory}}" ]; then args+=(--memory "{{memory}}"); fi
    if [ -n "{{cpu}}" ]; then args+=(--cpus "{{cpu}}"); fi
    "{{cli}}" "${args[@]}"
    if [ "{{auto_proxy}}" = "true" ]; then "{{cli}}" service proxy-create "{{name}}"; fi

# Docker service on an allocated host port: just service-create-exposed NAME IMAGE PORT [BIND] [TOKEN]
service-create-exposed name image port bind="127.0.0.1" token="":
    #!/usr/bin/env bash
    set -euo pipefail
    if [ -n "{{token}}" ]; then export PORTCULLIS_TOKEN="{{token}}"; fi
    "{{cli}}" service create "{{name}}" "{{image}}" --port "{{port}}" --bind "{{bind}}"

# Show a Docker service with its live state.
service-show name:
    {{cli}} service show "{{name}}"

# Start a Docker service: just service-start NAME [TOKEN]
service-start name token="":
    PORTCULLIS_TOKEN="${2:-$PORTCULLIS_TOKEN}" {{cli}} service start "{{name}}"

# Stop a Docker service: just service-stop NAME [TOKEN]
service-stop name token="":
    PORTCULLIS_TOKEN="${2:-$PORTCULLIS_TOKEN}" {{cli}} service stop "{{name}}"

# Restart a Docker service: just service-restart NAME [TOKEN]
service-restart name token="":
    PORTCULLIS_TOKEN="${2:-$PORTCULLIS_TOKEN}" {{cli}} service restart "{{name}}"

# Delete a Docker service (container removed, ports released).
service-remove name:
    {{cli}} service delete "{{name}}"

# A Docker service's output: just service-logs NAME [LINES] [TIMESTAMPS=true|false]
service-logs name lines="100" timestamps="false":
    #!/usr/bin/env bash
    set -euo pipefail
    args=(service logs "{{name}}" --tail "{{lines}}")
    if [ "{{timestamps}}" = "true" ]; then args+=(--timestamps); fi
    "{{cli}}" "${args[@]}"

# A Docker service's CPU, memory, network and block I/O (one sample).
service-stats name:
    {{cli}} service stats "{{name}}"

# Proxy to a Docker service's published port: just service-proxy-create NAME [HOST] [HTTPS=true|false] [TOKEN]
service-proxy-create name host="" https="false" token="":
    #!/usr/bin/env bash
    set -euo pipefail
    if [ -n "{{token}}" ]; then export PORTCULLIS_TOKEN="{{token}}"; fi
    args=(service proxy-create "{{name}}")
    if [ -n "{{host}}" ]; then args+=("{{host}}"); fi
    if [ "{{https}}" = "true" ]; then args+=(--https); fi
    "{{cli}}" "${args[@]}"

# Host-port allocations, or one service's ports: just service-port-list [SERVICE]
service-port-list service="":
    {{cli}} service port list {{ if service == "" { "" } else { quote(service) } }}

# Publish one more container port (host port allocated; the container is recreated): just service-port-add SERVICE PORT [BIND] [SOURCE_TOKEN] [TOKEN]
service-port-add service port bind="127.0.0.1" source_token="" token="":
    #!/usr/bin/env bash
    set -euo pipefail
    if [ -n "{{token}}" ]; then export PORTCULLIS_TOKEN="{{token}}"; fi
    args=(service port add "{{service}}" "{{port}}" --bind "{{bind}}")
    if [ -n "{{source_token}}" ]; then args+=(--source-token "{{source_token}}"); fi
    "{{cli}}" "${args[@]}"

# Stop publishing a port and release its host port: just service-port-remove SERVICE PORT_NAME [TOKEN]
service-port-remove service port_name token="":
    #!/usr/bin/env bash
    set -euo pipefail
    if [ -n "{{token}}" ]; then export PORTCULLIS_TOKEN="{{token}}"; fi
    "{{cli}}" service port remove "{{service}}" "{{port_name}}"

# Free host-port ranges within --port-range: just service-ports-available [BIND]
service-ports-available bind="127.0.0.1":
    {{cli}} service port available --bind "{{bind}}"

# Remove managed containers no service record claims, and stale allocations (admin): just service-cleanup-orphaned [DRY_RUN=true|false]
service-cleanup-orphaned dry_run="false":
    {{cli}} service cleanup {{ if dry_run == "true" { "--dry-run" } else { "" } }}

# Whether a host port is free: just service-port-check PORT [BIND]
service-port-check port bind="127.0.0.1":
    {{cli}} service port check "{{port}}" "{{bind}}"

# --- Operations (the seed's names) ---

# Control plane health (store, Docker) from its /health endpoint, and its version and config version.
health:
    curl -fsS "{{api}}/health" && echo
    {{cli}} status

# Resource statistics: store and config version, data planes and what they applied, the last hour's traffic.
stats:
    {{cli}} status
    {{cli}} dataplanes list
    {{cli}} logs stats --since 1h

# The quick start's process logs: just logs [control-plane|data-plane (also the seed's api|proxy)] [LINES]
logs process="all" lines="100":
    #!/usr/bin/env bash
    set -euo pipefail
    case "{{process}}" in
      all) files=("{{state}}/logs/control-plane.log" "{{state}}/logs/data-plane.log") ;;
      control-plane|cp|api) files=("{{state}}/logs/control-plane.log") ;;
      data-plane|dp|proxy) files=("{{state}}/logs/data-plane.log") ;;
      *) echo "error: just logs: unknown process '{{process}}' (control-plane or data-plane)" >&2; exit 2 ;;
    esac
    tail -n "{{lines}}" "${files[@]}"

# Restart what `up` started (state is kept).
restart:
    deploy/down.sh
    deploy/up.sh

# A redis-cli on the shared store (PORTCULLIS_REDIS_URL); the embedded store has none.
redis-cli *args:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ -z "${PORTCULLIS_REDIS_URL:-}" ]; then
      echo "error: PORTCULLIS_REDIS_URL is not set: this installation uses the embedded store (one redb file under the data dir), not Redis" >&2
      exit 2
    fi
    exec redis-cli -u "$PORTCULLIS_REDIS_URL" "$@"

# The OAuth authorization server answers: its metadata and signing keys.
oauth-health:
    #!/usr/bin/env bash
    set -euo pipefail
    for path in /.well-known/oauth-authorization-server /jwks; do
      code=$(curl -sS -o /dev/null -w '%{http_code}' "{{api}}$path")
      echo "$path $code"
      [ "$code" = 200 ] || { echo "error: the authorization server's $path answered $code" >&2; exit 1; }
    done
    {{cli}} oauth metrics

# First-time setup: check the tools, build the binaries (PORTCULLIS_PROFILE, default release) and save an admin token.
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    for tool in cargo curl; do command -v "$tool" >/dev/null || { echo "error: $tool is required" >&2; exit 1; }; done
    if [ "${PORTCULLIS_PROFILE:-release}" = release ]; then cargo build --release --bins; else cargo build --bins; fi
    mkdir -p "{{state}}" && chmod 700 "{{state}}"
    if [ ! -s "{{state}}/admin-token" ]; then
      (umask 077; "{{bin}}/portcullis-control-plane" token create-admin --data-dir "{{state}}/control-plane" > "{{state}}/admin-token")
    fi
    echo "ready: the admin token is in {{state}}/admin-token; start with: just up"

# Data planes and the versions they applied.
dataplanes-list:
    {{cli}} dataplanes list

# Prometheus metrics of the local data plane (admin listener on port DP_ADMIN, default 8081).
metrics-dp:
    curl -fsS "http://127.0.0.1:${DP_ADMIN:-8081}/metrics"

# Prometheus metrics of the local control plane (HTTP listener on port CP_HTTP, default 9000; admin token).
metrics-cp:
    curl -fsS -H "Authorization: Bearer $PORTCULLIS_TOKEN" "http://127.0.0.1:${CP_HTTP:-9000}/metrics"

# Benchmark vs nginx, HAProxy, Caddy + control plane -> bench/results/ (BENCH_QUICK=1: smoke test).
bench:
    bench/run.sh

# Order a certificate: just cert-create NAME DOMAIN [--email E --challenge tls-alpn-01 --staging --self-signed]
# or the seed's shape: just cert-create NAME DOMAIN [EMAIL] [STAGING] [TOKEN]
cert-create name domain *args:
    CLI="{{cli}}" deploy/seed-shapes.sh cert-create "$@"

# Order one certificate for several domains: just cert-create-multi NAME "a.example.com,b.example.com" [flags, or EMAIL] [TOKEN]
cert-create-multi name domains *args:
    CLI="{{cli}}" deploy/seed-shapes.sh cert-create-multi "$@"

# List certificates.
cert-list:
    {{cli}} cert list

# Show a certificate (never its key).
cert-show name:
    {{cli}} cert show "{{name}}"

# Certificate status and last error.
cert-status name:
    {{cli}} cert status "{{name}}"

# Order a fresh certificate now.
cert-renew name:
    {{cli}} cert renew "{{name}}"

# Store a certificate you bring: just cert-upload NAME CHAIN.pem KEY.pem
cert-upload name cert key:
    {{cli}} cert upload "{{name}}" --cert "{{cert}}" --key "{{key}}"

# Print a certificate's chain and private key (admin token; the key is printed!).
cert-export name:
    {{cli}} cert export "{{name}}" --include-private-key

# Order a staging certificate again from the production ACME directory.
cert-convert-to-production name:
    {{cli}} cert convert-to-production "{{name}}"

# Delete a certificate.
cert-delete name:
    {{cli}} cert delete "{{name}}"

# Serve certificate CERT for proxy HOST.
proxy-cert-attach hostname cert:
    {{cli}} proxy cert-attach "{{hostname}}" "{{cert}}"

# --- OAuth authorization server ---

# Publish the OAuth endpoints at HOST (an HTTPS proxy to the control plane): just oauth-routes-setup auth.example.com
oauth-routes-setup hostname *flags:
    {{cli}} oauth setup "$@"

# Add an identity provider: just oauth-idp-add github --kind github --client-id ID --client-secret S [--base-url URL --api-url URL]
oauth-idp-add name *flags:
    {{cli}} oauth idp add "$@"

# List identity providers (secrets are never shown).
oauth-idps-list:
    {{cli}} oauth idp list

# Allow logins: just oauth-rule-add --user alice --group acme/ops --email-domain example.com --scope mcp
oauth-rule-add *flags:
    {{cli}} oauth rule add "$@"

# List login rules.
oauth-rules-list:
    {{cli}} oauth rule list

# Register an OAuth client: just oauth-client-register --redirect-uri https://app/cb [--name N --public]
oauth-client-register *flags:
    {{cli}} oauth client register "$@"

# List OAuth clients.
oauth-clients-list:
    {{cli}} oauth client list

# List live login sessions.
oauth-sessions-list:
    {{cli}} oauth session list

# Revoke a session and every token it issued.
oauth-session-revoke id:
    {{cli}} oauth session revoke "{{id}}"

# Sign a user out everywhere (every session and token issued so far): just oauth-user-revoke SUB
oauth-user-revoke sub:
    {{cli}} oauth session revoke-user "{{sub}}"

# Rotate the token signing key.
oauth-rotate-keys:
    {{cli}} oauth rotate-keys

# Token counters.
oauth-metrics:
    {{cli}} oauth metrics

# Use a proxy's own GitHub OAuth app for its logins: just proxy-github-set HOST CLIENT_ID CLIENT_SECRET
proxy-github-set hostname client_id client_secret:
    {{cli}} oauth proxy set "{{hostname}}" --github-client-id "{{client_id}}" --github-client-secret "{{client_secret}}"

# Override authorization server metadata served for HOST: just proxy-oauth-server-set HOST '{"scopes_supported":["mcp"]}'
proxy-oauth-server-set hostname json:
    {{cli}} oauth proxy set "{{hostname}}" --metadata-json '{{json}}'

# Show a proxy's OAuth settings.
proxy-oauth-server-show hostname:
    {{cli}} oauth proxy show "{{hostname}}"

# Remove a proxy's metadata overrides.
proxy-oauth-server-clear hostname:
    {{cli}} oauth proxy set "{{hostname}}" --clear-metadata

# Protect a proxy with edge OAuth: just proxy-auth-enable HOST --auth-host AUTH_HOST --mode forward|redirect|passthrough [--scope S --public-path P --allow-user U --allow-org O --allow-team O/T --allow-email-domain D --allow-group G --forward-token --identity-header user=X-Remote-User ...]
proxy-auth-enable hostname *flags:
    {{cli}} proxy auth enable "$@"

# Remove a proxy's edge OAuth protection.
proxy-auth-disable hostname:
    {{cli}} proxy auth disable "{{hostname}}"

# Show how a proxy is protected.
proxy-auth-show hostname:
    {{cli}} proxy auth show "{{hostname}}"

# Protected-resource metadata of a protected proxy: just proxy-resource-set HOST --endpoint /mcp --scopes a,b [--documentation URL --field KEY=JSON --allow-origin ORIGIN ...]
proxy-resource-set hostname *flags:
    {{cli}} proxy resource set "$@"

# Show a protected proxy's resource settings (endpoint, scopes, fields, origins).
proxy-resource-show hostname:
    {{cli}} proxy resource show "{{hostname}}"

# Request logs of one client IP over the last HOURS hours: just app-logs-by-ip 203.0.113.7 6
app-logs-by-ip ip hours="24":
    {{cli}} logs search --ip "{{ip}}" --since "{{hours}}h"

# Request logs of one host over the last HOURS hours: just app-logs-by-host app.example.com 2
app-logs-by-host host hours="24":
    {{cli}} logs search --host "{{host}}" --since "{{hours}}h"

# 4xx and 5xx responses over the last HOURS hours, at most LIMIT: just app-logs-errors 1 50
app-logs-errors hours="24" limit="100":
    {{cli}} logs errors --since "{{hours}}h" --limit "{{limit}}"

# Print requests as they arrive (filters as in `portcullis logs follow --help`): just app-logs-follow --host app.example.com
app-logs-follow *flags:
    {{cli}} logs follow "$@"

# Every record of one request id (the X-Request-Id a response carried): just app-logs-correlation ID
app-logs-correlation id:
    {{cli}} logs search --request-id "{{id}}" --since 7d

# Request-log summary over the last HOURS hours: status classes, top hosts/paths/IPs/users, p50/p95/p99, unique visitors.
app-logs-stats hours="24":
    {{cli}} logs stats --since "{{hours}}h"

# Reset a protected proxy's resource settings to none.
proxy-resource-clear hostname:
    {{cli}} proxy resource clear "{{hostname}}"

# An example protected MCP endpoint on this machine (idempotent): proxy HOST to the MCP server at URL
# (default: server-everything's Streamable HTTP port), forward-mode edge auth, endpoint /mcp,
# the OAuth endpoints at AUTH_HOST and a login rule granting scope mcp to USER (`*` = everyone
# the identity provider vouches for) for this proxy only. Starts nothing.
mcp-echo-setup host="mcp.localhost" url="http://127.0.0.1:3001" auth_host="auth.localhost" user="*":
    #!/usr/bin/env bash
    set -euo pipefail
    cli="{{cli}}"
    "$cli" proxy show "{{host}}" >/dev/null 2>&1 || "$cli" proxy create "{{host}}" "{{url}}" >/dev/null
    "$cli" proxy update "{{host}}" --target "{{url}}" >/dev/null
    "$cli" proxy show "{{auth_host}}" >/dev/null 2>&1 || "$cli" oauth setup "{{auth_host}}" >/dev/null
    "$cli" proxy auth enable "{{host}}" --auth-host "{{auth_host}}" --mode forward --scope mcp >/dev/null
    "$cli" proxy resource set "{{host}}" --endpoint /mcp --scopes mcp >/dev/null
    if ! "$cli" -o json oauth rule list | grep -q '"{{host}}"'; then
      "$cli" oauth rule add --proxy "{{host}}" --user "{{user}}" --scope mcp >/dev/null
    fi
    port="${DP_HTTP:-8080}"
    echo "MCP endpoint:      http://{{host}}:${port}/mcp (bearer tokens required, scope mcp)"
    echo "Resource metadata: http://{{host}}:${port}/.well-known/oauth-protected-resource/mcp"
    echo "Point an MCP client (e.g. npx @modelcontextprotocol/inspector) at the MCP endpoint;"
    echo "it discovers the authorization server from the 401 and logs in through it."
    echo "Start the server first if it is not running, e.g.: npx @modelcontextprotocol/server-everything streamableHttp"
