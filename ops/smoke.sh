#!/usr/bin/env bash
# Smoke test of the deployment: bring up ops/compose.yaml with a schedule that fires every minute,
# load the worked example's reference data, drop its claim file into the drop folder, and wait for
# the beat's sweep and nightly run to adjudicate it (4 paid, 2 suspended). Tears everything down
# (volumes included) at the end unless KEEP=1.
#
#     ops/smoke.sh                 # from the repository root; needs Docker with the compose plugin
#     KEEP=1 ops/smoke.sh          # leave it running to look around (docker compose -f ops/compose.yaml ...)
#
# Exit 0 when the run is recorded as done with the expected counts, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

export ADJUDICATION_RUN_SCHEDULE="* * * * *"   # every minute instead of 02:00
compose=(docker compose -f ops/compose.yaml -p adjudication-smoke)
cleanup() { [ "${KEEP:-0}" = 1 ] || "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT

"${compose[@]}" up -d --build --wait postgres redis
"${compose[@]}" up --exit-code-from migrate migrate
"${compose[@]}" up -d worker-1 worker-2 beat

adjudicate() { "${compose[@]}" exec -T beat adjudicate "$@"; }
adjudicate reference load /app/fixtures/worked_example
# Into the drop folder the way an upload should arrive: written under a temporary name, then renamed.
"${compose[@]}" exec -T beat sh -c \
  'cp /app/fixtures/worked_example/claims.csv /var/lib/adjudication/drop/claims.csv.part &&
   mv /var/lib/adjudication/drop/claims.csv.part /var/lib/adjudication/drop/claims.csv'

echo "waiting for the schedule to sweep the drop folder and run (up to 5 minutes)..."
for _ in $(seq 1 60); do
  if adjudicate runs --format json | python3 -c '
import json, sys
runs = [r for r in json.load(sys.stdin) if r["status"] == "done" and r["claims"] > 0]
sys.exit(0 if runs and (runs[0]["paid"], runs[0]["suspended"]) == (4, 2) else 1)'; then
    adjudicate runs
    adjudicate outcomes --format csv
    echo "smoke test passed"
    exit 0
  fi
  sleep 5
done
adjudicate runs || true
"${compose[@]}" logs --tail 50 beat worker-1 worker-2 || true
echo "smoke test FAILED: no done run with 4 paid and 2 suspended" >&2
exit 1
