#!/usr/bin/env bash
# Create (or reuse) the CogVLM2 caption server's own virtual environment: torch, transformers
# 4.42, decord and this server, and nothing of dj_ops's dependencies.
#
#   bash servers/cogvlm2/setup_env.sh            # venv at servers/cogvlm2/.venv
#   VENV=/opt/cogvlm2 TORCH_SPEC="torch==2.1.0 torchvision==0.16.0" EXTRAS=model,quant \
#       bash servers/cogvlm2/setup_env.sh        # a GPU machine serving the real checkpoint
#
# TORCH_SPEC: the torch to install (default torch==2.13.0: here a local CPU wheel; transformers
# 4.42 and its remote-code loading run on it). The model card's era is torch 2.1 (CUDA 12.1
# wheels, several GB from PyPI). EXTRAS: `model` (pytorchvideo, which the real checkpoint's code
# imports), `quant` (bitsandbytes for --quant 4/8). The pinned packages are installed again only
# when TORCH_SPEC, EXTRAS or the pins change (a stamp file in the venv); the server itself is
# reinstalled every time (seconds).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
VENV="${VENV:-$HERE/.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
EXTRAS="${EXTRAS:-}"

stamp_of() {
    { echo "$TORCH_SPEC|$EXTRAS"; cat "$HERE/requirements.txt" "$HERE/pyproject.toml"; } \
        | sha256sum | cut -d' ' -f1
}
STAMP="$(stamp_of)"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
if [ "$(cat "$VENV/.dj_ops_stamp" 2>/dev/null)" != "$STAMP" ]; then
    # shellcheck disable=SC2086  # TORCH_SPEC may name several packages
    "${PIP[@]}" install $TORCH_SPEC
    "${PIP[@]}" install -r "$HERE/requirements.txt"
    if [ -n "$EXTRAS" ]; then "${PIP[@]}" install "$HERE[$EXTRAS]"; fi
    echo "$STAMP" > "$VENV/.dj_ops_stamp"
fi
# The server, not editable: the wheel holds a copy of dj_ops/video/sampling.py.
"${PIP[@]}" install --no-deps --force-reinstall "$HERE"
rm -rf "$HERE/build"
"$VENV/bin/python" -c "import torch, transformers, decord, dj_ops_cogvlm2_server.server as s; \
print(f'cogvlm2 server env: torch {torch.__version__}, transformers {transformers.__version__}, \
decord {decord.__version__} at $VENV')"
