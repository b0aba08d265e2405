"""Weight quantization from ``model_params: {quantization: 4bit | 8bit}``, per backend.

On the transformers backend both modes load the model through bitsandbytes
(``BitsAndBytesConfig``), which needs a CUDA GPU; on vLLM ``4bit`` is its in-flight bitsandbytes
quantization and any other value is passed as vLLM's own ``quantization`` method (``fp8``,
``awq``, ...). A request that cannot work (no GPU, package missing, unknown mode) fails when the
op is built, with the fix in the message.
"""

from __future__ import annotations

import importlib.util
from typing import Any

QUANTIZATION_KEY = "quantization"
# mode -> BitsAndBytesConfig arguments (4-bit: NF4 with the model's compute dtype).
BNB_MODES: dict[str, dict[str, Any]] = {
    "4bit": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"},
    "8bit": {"load_in_8bit": True},
}
# mode -> vLLM ``quantization`` argument.
VLLM_MODES = {"4bit": "bitsandbytes"}
QUANTIZATION_EXTRA = "quantization"


def check_hf_quantization(mode: str | None, cuda_available: bool) -> None:
    """Raise when ``mode`` cannot load on the transformers backend here.

    :raises ValueError: unknown mode, or no CUDA GPU.
    :raises ModuleNotFoundError: bitsandbytes is not installed (naming the pip extra).
    """
    if mode is None:
        return
    if mode not in BNB_MODES:
        raise ValueError(f"quantization={mode!r} is not supported by the transformers backend; "
                         f"choose one of {sorted(BNB_MODES)}")
    if not cuda_available:
        raise ValueError(f"quantization={mode!r} uses bitsandbytes, which needs a CUDA GPU, and "
                         "none is available: remove model_params.quantization to run unquantized")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModuleNotFoundError(f"quantization={mode!r} needs the package 'bitsandbytes': "
                                  f'pip install "dj-ops[{QUANTIZATION_EXTRA}]"')


def hf_quantization_kwargs(mode: str | None, compute_dtype, device: str) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments that load the model quantized on ``device``."""
    if mode is None:
        return {}
    import transformers

    options = dict(BNB_MODES[mode])
    if options.get("load_in_4bit"):
        options["bnb_4bit_compute_dtype"] = compute_dtype
    return {"quantization_config": transformers.BitsAndBytesConfig(**options),
            "device_map": {"": device}}


def vllm_quantization_kwargs(mode: str | None) -> dict[str, Any]:
    """``vllm.LLM`` keyword arguments for ``mode`` (``4bit`` is bitsandbytes in flight).

    :raises ValueError: for ``8bit``, which vLLM's bitsandbytes path does not offer.
    """
    if mode is None:
        return {}
    if mode in BNB_MODES and mode not in VLLM_MODES:
        raise ValueError(f"quantization={mode!r} is not offered by vLLM; use '4bit' "
                         "(bitsandbytes) or one of vLLM's methods such as 'fp8'")
    return {"quantization": VLLM_MODES.get(mode, mode)}
