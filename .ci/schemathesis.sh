#!/usr/bin/env bash
# schemathesis (PyPI) against the OpenAPI document the HTTP API serves:
# runs examples/http.rs on a local port with an admin token and checks
# every generated request (`--checks all`): no 5xx, responses match the
# schema, bad input refused, good input accepted.
#
# Not called from .ci/run yet: it still reports schema-valid requests the
# API refuses for reasons JSON Schema cannot say (a cursor the API never
# gave out, a regular expression that does not compile, 454.0 for an
# integer, which serde refuses) and a few the schema could say but does not
# yet (clean accepts only final statuses; max_attempts is a u32). See
# "What is left out" in docs/http.md.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${TMPDIR:-/tmp}/kessel-schemathesis"
[ -x "$venv/bin/schemathesis" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q schemathesis; }

port="${KESSEL_ST_PORT:-18080}"
cargo build -q --example http --features web,cron
KESSEL_ADMIN_TOKEN=schemathesis KESSEL_HTTP_ADDR="127.0.0.1:$port" target/debug/examples/http &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  curl -fs -o /dev/null -H 'authorization: Bearer schemathesis' "http://127.0.0.1:$port/stats" && break
  sleep 0.1
done

# /events is a stream that never ends; its filters are tested in tests/web.rs.
"$venv/bin/schemathesis" run "http://127.0.0.1:$port/openapi.json" \
  -H "Authorization: Bearer schemathesis" \
  --checks all --exclude-path /events \
  --max-examples "${KESSEL_ST_EXAMPLES:-30}" --request-timeout 5
