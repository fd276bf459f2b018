#!/usr/bin/env bash
# schemathesis (PyPI) against the OpenAPI document the HTTP API serves:
# runs examples/http.rs on a local port with an admin token and checks
# every generated request (`--checks all`): no 5xx, responses match the
# schema, bad input refused, good input accepted.
#
# What JSON Schema cannot say about a request (a cursor the API gave out,
# a regular expression that compiles, fields that go together) is a
# documented 400; .ci/schemathesis.toml says for which operations that
# counts as an answer to a valid request, and why. .ci/schemathesis_hooks.py
# keeps the long-poll of /remote/fetch within the request timeout.
# Called by .ci/run after `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${TMPDIR:-/tmp}/kessel-schemathesis"
version=4.32.5
if [ "$("$venv/bin/schemathesis" --version 2>/dev/null | awk '{print $NF}')" != "$version" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==$version"
fi

port="${KESSEL_ST_PORT:-18080}"
# A fixed seed makes CI's run the same every time (a failure found by a
# new seed would otherwise fail an unrelated change); set KESSEL_ST_SEED
# to explore others locally.
# With every feature, as `cargo test --all-features` built it (so .ci/run
# builds nothing more), which includes `cron`: the schedules are tested too.
cargo build -q --example http --all-features
KESSEL_ADMIN_TOKEN=schemathesis KESSEL_HTTP_ADDR="127.0.0.1:$port" "${CARGO_TARGET_DIR:-target}/debug/examples/http" &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  curl -fs -o /dev/null -H 'authorization: Bearer schemathesis' "http://127.0.0.1:$port/stats" && break
  sleep 0.1
done
kill -0 "$server"

# /events is a stream that never ends; its filters are tested in tests/web.rs.
SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH=.ci \
"$venv/bin/schemathesis" --config-file .ci/schemathesis.toml run "http://127.0.0.1:$port/openapi.json" \
  -H "Authorization: Bearer schemathesis" \
  --checks all --exclude-path /events \
  --max-examples "${KESSEL_ST_EXAMPLES:-30}" --request-timeout 5 \
  --seed "${KESSEL_ST_SEED:-20261205}"
