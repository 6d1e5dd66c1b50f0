#!/usr/bin/env bash
# Time a slice of each test pass one after the other (as scripts/test ran them), then side by side (as it runs
# them now: the PostgreSQL pass under nice -n 10 in its own process group), back to back under the same load.
# Prints the load average and one JSON object last. Usage: benchmarks/test_passes.sh [sqlite paths -- postgres paths]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${VIRTUAL_ENV:-$PWD/.venv}/bin/python"
sqlite=(tests/browser/test_ux_browser.py tests/browser/test_review_browser.py tests/evaluation/test_student.py
        tests/rules/test_teacher_local_server.py tests/evaluation/test_reports.py)
postgres=(tests/pldreview/accounts tests/rules/test_review_views.py)
if [ $# -gt 0 ]; then
  sqlite=(); postgres=(); side=sqlite
  for arg in "$@"; do
    if [ "$arg" = -- ]; then side=postgres; elif [ $side = sqlite ]; then sqlite+=("$arg"); else postgres+=("$arg"); fi
  done
fi
now() { date +%s.%N; }
load() { cut -d' ' -f1 /proc/loadavg; }
quiet=(-q -p no:cacheprovider)

load_before=$(load)
t0=$(now)
"$PY" -m pytest "${quiet[@]}" "${sqlite[@]}" >/dev/null
t1=$(now)
scripts/test-postgres "${quiet[@]}" "${postgres[@]}" >/dev/null
t2=$(now)
setsid nice -n 10 scripts/test-postgres "${quiet[@]}" "${postgres[@]}" >/dev/null &
pg=$!
"$PY" -m pytest "${quiet[@]}" "${sqlite[@]}" >/dev/null
t3=$(now)
wait "$pg"
t4=$(now)
echo "load average $load_before -> $(load)"
printf '{"sequential_sqlite_s": %.1f, "sequential_postgres_s": %.1f, "sequential_total_s": %.1f, ' \
  "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)" "$(echo "$t2 - $t0" | bc)"
printf '"side_by_side_sqlite_s": %.1f, "side_by_side_total_s": %.1f}\n' "$(echo "$t3 - $t2" | bc)" "$(echo "$t4 - $t2" | bc)"
