#!/usr/bin/env bash
# Test the declared lower bounds (scripts/lower_bounds.py), cheaply: pip resolves the project
# with each bounded dependency at its minimum as on a fresh machine (a dry run), then .venv-min,
# a new venv, gets that resolution: the packages it shares with .venv linked from there, the few
# that differ installed; a representative subset of the tests runs in it. Some hundred MB
# instead of a 6.5 GB venv.
#   bash scripts/check_lower_bounds.sh            # after scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BASE="${BASE:-.venv}"
VENV="${VENV:-.venv-min}"
# the parts that lean most on each bounded package: transformers' internals (the fast path), the
# decoder (PyAV), Data-Juicer and datasets (dj-process end to end), jsonschema, the report's
# jinja2, altair and vl-convert
TESTS="${TESTS:-tests/test_fast_decoding.py tests/test_prefill.py tests/test_video_decode.py \
tests/test_dj_process.py tests/test_structured.py tests/test_report.py}"
mapfile -t pins < <("$BASE/bin/python" scripts/lower_bounds.py pins)
echo "lower bounds: ${pins[*]}"
report=$(mktemp)
trap 'rm -f "$report"' EXIT
"$BASE/bin/python" -m pip install --quiet --dry-run --ignore-installed --report "$report" \
  -c constraints.txt -e ".[test,structured]" "${pins[@]}"
rm -rf "$VENV"
"$("$BASE/bin/python" -c 'import sys; print(sys._base_executable)')" -m venv --without-pip "$VENV"
site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
mapfile -t differ < <("$BASE/bin/python" scripts/lower_bounds.py link "$report" "$site")
echo "installed in $VENV (the rest linked from $BASE): ${differ[*]}"
# --target: pip writes there and never touches the base venv
"$BASE/bin/python" -m pip install --quiet --no-deps --target "$site" "${differ[@]}"
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$VENV/bin/python" scripts/lower_bounds.py scripts
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$VENV/bin/python" scripts/versions.py
# shellcheck disable=SC2086
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$VENV/bin/python" -m pytest -q -p no:cacheprovider $TESTS
