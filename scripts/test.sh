#!/usr/bin/env bash
# `make test`: the three parts of the tests, each run whatever the others did, then one line per part; exit 1 if any
# failed. OMP_WAIT_POLICY=PASSIVE: an OpenMP thread that waits sleeps instead of spinning, so a training that does not
# pin its threads (the paper rehearsal) does not fight a second process for the cores (no number changes).
set -uo pipefail
PY=${1:-.venv/bin/python}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
declare -A status
"$PY" -m pytest tests --ignore=tests/browser --durations=15; status[unit]=$?
# nbval re-runs the executed smoke notebooks whose outputs it checks (cells marked NBVAL_CHECK_OUTPUT): that each
# notebook runs headless the smoke suite has just shown, so the others would only repeat it
checked=$(grep -l NBVAL_CHECK_OUTPUT runs/smoke/notebooks/*.ipynb 2>/dev/null)
if [ -n "$checked" ]; then
  # shellcheck disable=SC2086
  "$PY" -m pytest -p no:cacheprovider --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg $checked
  status[nbval]=$?
else
  echo "nbval: no executed smoke notebooks in runs/smoke/notebooks (the smoke suite test did not write them)"
  status[nbval]=1
fi
"$PY" -m pytest -p no:cacheprovider tests/browser --durations=5; status[browser]=$?
failed=0
echo
for part in unit nbval browser; do
  if [ "${status[$part]}" = 0 ]; then word=passed; else word="FAILED (exit ${status[$part]})"; failed=1; fi
  printf 'make test: %-8s %s\n' "$part" "$word"
done
exit $failed
