#!/usr/bin/env bash
# Create (or reuse) .venv and install dj_ops with its test tools. Idempotent: a second run
# only re-checks the installed packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[test]"
