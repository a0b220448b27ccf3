#!/usr/bin/env bash
# The seed's positional recipe arguments, translated into `portcullis` CLI flags.
#
#   deploy/seed-shapes.sh RECIPE ARGS...      (called by the justfile; CLI = the portcullis binary)
#
# Each recipe keeps the CLI's own shape too: when the first argument after the required ones
# starts with `-`, everything is passed to the CLI unchanged. Otherwise the arguments are read
# the seed's way. The seed passed its API token positionally (`[token]`); a Portcullis API
# token starts with `pcs_`, so an argument with that prefix is taken as the token (exported as
# PORTCULLIS_TOKEN, never put on the CLI's command line) wherever the seed allowed one. An
# argument that fits no slot is refused with the recipe's shape: nothing is guessed.
set -euo pipefail

cli=${CLI:?CLI must name the portcullis binary}
recipe=${1:?recipe}
shift

die() {
  echo "error: just $recipe: $1" >&2
  echo "usage: just $recipe $2" >&2
  exit 2
}

is_bool() { [ "$1" = true ] || [ "$1" = false ]; }

use_token() { # TOKEN: "" keeps the default token
  case $1 in
    "") ;;
    pcs_*) export PORTCULLIS_TOKEN=$1 ;;
    *) return 1 ;;
  esac
}

case $recipe in
  proxy-create)
    shape='HOST URL [STAGING] [PRESERVE_HOST] [HTTP] [HTTPS] [TOKEN]   (or HOST URL --cli-flags...)'
    [ $# -ge 2 ] || die "HOST and URL are required" "$shape"
    host=$1 url=$2
    shift 2
    if [ $# -eq 0 ] || [[ $1 == -* ]]; then exec "$cli" proxy create "$host" "$url" "$@"; fi
    # The seed's defaults: production certificate, client Host not preserved, HTTP and HTTPS.
    bools=()
    for a in "$@"; do
      if is_bool "$a"; then bools+=("$a")
      elif ! use_token "$a"; then die "'$a' is neither true/false nor a pcs_ token" "$shape"
      fi
    done
    [ ${#bools[@]} -le 4 ] || die "more than four true/false arguments" "$shape"
    staging=${bools[0]:-false} preserve=${bools[1]:-false} http=${bools[2]:-true} https=${bools[3]:-true}
    [ "$http" = true ] || [ "$https" = true ] || die "HTTP and HTTPS cannot both be false" "$shape"
    flags=()
    [ "$preserve" = true ] && flags+=(--preserve-host)
    [ "$http" = true ] || flags+=(--no-http)
    if [ "$https" = true ] && [ "$staging" = true ]; then
      # A certificate is ordered for a proxy that exists, and HTTPS on creation would order a
      # production one: create without HTTPS, order the staging certificate named after the
      # host, then serve it on HTTPS (as the seed's STAGING did).
      [ "$http" = true ] || die "STAGING needs HTTP while the certificate is ordered" "$shape"
      "$cli" proxy create "$host" "$url" "${flags[@]}" >/dev/null
      "$cli" cert create "$host" "$host" --staging >/dev/null
      exec "$cli" proxy update "$host" --https true --cert "$host"
    fi
    [ "$https" = true ] && flags+=(--https)
    exec "$cli" proxy create "$host" "$url" "${flags[@]}"
    ;;

  cert-create | cert-create-multi)
    shape='NAME DOMAIN[,DOMAIN...] [EMAIL] [STAGING] [TOKEN]   (or NAME DOMAIN --cli-flags...)'
    [ $# -ge 2 ] || die "NAME and DOMAIN are required" "$shape"
    name=$1 domains=$2
    shift 2
    sub=create
    [ "$recipe" = cert-create-multi ] && sub=create-multi
    if [ $# -eq 0 ] || [[ $1 == -* ]]; then exec "$cli" cert "$sub" "$name" "$domains" "$@"; fi
    flags=()
    for a in "$@"; do
      case $a in
        true) flags+=(--staging) ;;
        false | "") ;;
        pcs_*) use_token "$a" ;;
        *@*) flags+=(--email "$a") ;;
        *) die "'$a' is neither an email address, true/false nor a pcs_ token" "$shape" ;;
      esac
    done
    exec "$cli" cert "$sub" "$name" "$domains" "${flags[@]}"
    ;;

  service-register)
    shape='NAME URL [TOKEN] [DESCRIPTION]   (or NAME URL DESCRIPTION)'
    [ $# -ge 2 ] && [ $# -le 4 ] || die "takes two to four arguments" "$shape"
    name=$1 url=$2 description=""
    if [ $# -eq 4 ]; then
      use_token "$3" || die "'$3' is not a pcs_ token" "$shape"
      description=$4
    elif [ $# -eq 3 ]; then
      # One extra argument: the seed's token if it is one, else (this project's shape) a
      # description.
      use_token "$3" || description=$3
    fi
    exec "$cli" service external register "$name" "$url" --description "$description"
    ;;

  route-create)
    shape='PATH TYPE TARGET [TOKEN] [PRIORITY] [METHODS] [IS_REGEX] [DESCRIPTION]   (or PATH TYPE TARGET --cli-flags...)'
    [ $# -ge 3 ] || die "PATH, TYPE and TARGET are required" "$shape"
    path=$1 kind=$2 target=$3
    shift 3
    if [ $# -eq 0 ] || [[ $1 == -* ]]; then exec "$cli" route create "$path" "$kind" "$target" "$@"; fi
    [ $# -le 5 ] || die "too many arguments" "$shape"
    use_token "${1:-}" || die "TOKEN '$1' is not a pcs_ token (\"\" keeps the default)" "$shape"
    priority=${2:-} methods=${3:-} regex=${4:-false} description=${5:-}
    is_bool "$regex" || die "IS_REGEX must be true or false, not '$regex'" "$shape"
    flags=()
    [ -n "$priority" ] && flags+=(--priority "$priority")
    [ -n "$methods" ] && flags+=(--method "$methods")
    [ "$regex" = true ] && flags+=(--match regex)
    [ -n "$description" ] && flags+=(--description "$description")
    exec "$cli" route create "$path" "$kind" "$target" "${flags[@]}"
    ;;

  *)
    echo "error: deploy/seed-shapes.sh knows no recipe '$recipe'" >&2
    exit 2
    ;;
esac
