#!/usr/bin/env bash
# Fuzz the public, tenant and (unauthenticated) admin JSON APIs with Schemathesis against a
# `silo dev` of this checkout: every generated request must get an answer below 500.
# Installs Schemathesis into a venv under $TMPDIR on first use. Usage: ops/bench/schemathesis.sh
# [--max-examples N]. Exits non-zero on any 5xx.
set -euo pipefail
cd "$(dirname "$0")/../.."
examples=100
if [ "${1:-}" = "--max-examples" ]; then examples="$2"; fi
work="$(mktemp -d "${TMPDIR:-/tmp}/silo-schemathesis-XXXX")"
venv="${TMPDIR:-/tmp}/silo-schemathesis-venv"
port=18123
[ -x "$venv/bin/st" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q schemathesis; }
cargo build -q --release --bin silo
# A webhook secret, so the Stripe webhook answers bad signatures (400), not "not configured" (503).
SILO_STRIPE_WEBHOOK_SECRET=whsec_schemathesis SILO_LOG=warn \
  target/release/silo --data-dir "$work/.silo" dev --http "127.0.0.1:$port" >"$work/silo.log" 2>&1 &
silo=$!
trap 'kill $silo 2>/dev/null; wait $silo 2>/dev/null; rm -rf "$work"' EXIT
until curl -sf -H 'Host: localhost' "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.5; done
curl -sf -H 'Host: localhost' "http://127.0.0.1:$port/api/openapi.json" >"$work/openapi.json"
curl -sf -H 'Host: localhost' -H 'content-type: application/json' "http://127.0.0.1:$port/api/v1/signups" \
  -d '{"company_name":"Fuzz","subdomain":"fuzz","admin_email":"owner@fuzz.test","admin_password":"violet tram oyster gravel"}' >/dev/null
until curl -sf -H 'Host: fuzz.localhost' "http://127.0.0.1:$port/api/v1/health" >/dev/null; do sleep 0.5; done
token=$(curl -sf -H 'Host: fuzz.localhost' -H 'content-type: application/json' "http://127.0.0.1:$port/api/v1/auth/login" \
  -d '{"email":"owner@fuzz.test","password":"violet tram oyster gravel"}' | python3 -c 'import sys, json; print(json.load(sys.stdin)["token"])')
run() {
  "$venv/bin/st" run "$work/openapi.json" --url "http://127.0.0.1:$port" --checks not_a_server_error \
    --max-examples "$examples" --workers 2 --phases examples,coverage,fuzzing "$@"
}
echo "==> apex and admin (anonymous)"
run -H 'Host: localhost'
echo "==> tenant (signed in as the owner)"
run -H 'Host: fuzz.localhost' -H "Authorization: Bearer $token"
