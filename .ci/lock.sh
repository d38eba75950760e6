#!/usr/bin/env bash
# `make lock`: resolve pyproject.toml's dependencies afresh in a scratch venv and write every installed package,
# transitive ones included, at its exact version into requirements.lock. Run on purpose (then run `make test`), never
# by the set-up: `make venv`, .ci/run and environment.yml install exactly what the lock says.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
"$PYTHON" -m venv "$scratch/venv"
"$scratch/venv/bin/python" -m pip install --quiet --upgrade pip
# the project's own dependencies only (no editable install of the project itself)
"$scratch/venv/bin/python" - <<'PY' > "$scratch/deps.txt"
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))
PY
"$scratch/venv/bin/python" -m pip install --quiet -r "$scratch/deps.txt"
{
  echo "# Every package of the lab's environment at its exact version (written by \`make lock\`; do not edit)."
  echo "# Resolved for $("$scratch/venv/bin/python" -c 'import platform; print("CPython", platform.python_version(), platform.system(), platform.machine())') on $(date -u +%Y-%m-%d) from pyproject.toml's dependencies."
  "$scratch/venv/bin/python" -m pip freeze --all --exclude-editable | grep -viE '^pip=='
} > requirements.lock.tmp
mv requirements.lock.tmp requirements.lock
echo "wrote requirements.lock ($(grep -vc '^#' requirements.lock) packages)"
