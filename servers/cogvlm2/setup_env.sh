#!/usr/bin/env bash
# Create (or reuse) the CogVLM2 caption server's own virtual environment: a torch/torchvision
# pair, transformers 4.42, decord, everything the real checkpoint's remote code imports
# (einops, pytorchvideo, torchvision; triton with CUDA builds of torch) and this server, and
# nothing of dj_ops's dependencies.
#
#   bash servers/cogvlm2/setup_env.sh            # venv at servers/cogvlm2/.venv
#   VENV=/opt/cogvlm2 TORCH_SPEC="torch==2.1.0 torchvision==0.16.0" EXTRAS=quant \
#       bash servers/cogvlm2/setup_env.sh        # the model card's pins, on a GPU machine
#
# TORCH_SPEC: the torch and torchvision to install, a matched pair (default torch==2.14.1
# torchvision==0.29.1: the registry's wheels are CUDA builds, which import and run on CPU-only
# machines too, and bring triton; an unmatched pair fails to import torchvision). The model
# card's era is torch 2.1 / torchvision 0.16 (CUDA 12.1 wheels, Python <= 3.11). EXTRAS:
# `quant` (bitsandbytes for --quant 4/8); `model` is accepted and adds nothing (the model's
# imports are dependencies now). The pinned packages are installed again only when TORCH_SPEC,
# EXTRAS or the pins change (a stamp file in the venv); the server itself is reinstalled every
# time (seconds). Last, every module the real remote code imports is imported, or the script
# fails naming the missing ones.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
VENV="${VENV:-$HERE/.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
EXTRAS="${EXTRAS:-}"
case "$TORCH_SPEC" in
    *torchvision*) ;;
    *) echo "TORCH_SPEC must name torch and torchvision as a matched pair (got '$TORCH_SPEC')," \
            "e.g. TORCH_SPEC=\"torch==2.1.0 torchvision==0.16.0\"" >&2; exit 2 ;;
esac

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
    # shellcheck disable=SC2086  # TORCH_SPEC names several packages
    "${PIP[@]}" install $TORCH_SPEC -c "$HERE/requirements.txt"  # numpy 1.x from the start
    # The pair just installed stays: nothing installed after it may replace it.
    PAIR="$VENV/.dj_ops_torch_pair.txt"
    "$VENV/bin/python" -c "import torch, torchvision; \
print(f'torch=={torch.__version__}\ntorchvision=={torchvision.__version__}')" > "$PAIR"
    "${PIP[@]}" install -c "$PAIR" -r "$HERE/requirements.txt"
    if [ -n "$EXTRAS" ]; then "${PIP[@]}" install -c "$PAIR" "$HERE[$EXTRAS]"; fi
    echo "$STAMP" > "$VENV/.dj_ops_stamp"
fi
# The server, not editable: the wheel holds copies of dj_ops/video/sampling.py and
# dj_ops/adapters/cogvlm2_interface.py.
"${PIP[@]}" install --no-deps --force-reinstall "$HERE"
rm -rf "$HERE/build"
"$VENV/bin/python" -W ignore -m dj_ops_cogvlm2_server.remote_code
"$VENV/bin/python" -c "import torch, torchvision, transformers, decord; \
print(f'cogvlm2 server env: torch {torch.__version__} (CUDA build: {torch.version.cuda}), \
torchvision {torchvision.__version__}, transformers {transformers.__version__}, \
decord {decord.__version__} at $VENV')"
