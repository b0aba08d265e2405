"""CogVLM2-Llama3-Caption loaded and run the way its model card does: remote code
(``trust_remote_code``), bf16 on compute capability >= 8 and fp16 below, optional 4/8-bit
quantization, ``build_conversation_input_ids`` with ``template_version``, one video per
``generate`` call. A checkpoint whose code needs CUDA is refused on a CPU before it loads."""

from __future__ import annotations

import importlib.util
from typing import Any

from dj_ops_cogvlm2_server.cogvlm2_interface import generate_inputs
from dj_ops_cogvlm2_server.compat import provide_functional_tensor
from dj_ops_cogvlm2_server.protocol import CaptionCall, Choice, cut_at_stop
from dj_ops_cogvlm2_server.remote_code import refuse_device

QUANT_BITS = (0, 4, 8)


def card_dtype_name(capability: tuple[int, int] | None) -> str:
    """The card's dtype for a GPU of compute ``capability``: bfloat16 from 8 (Ampere) on,
    float16 below. On CPU (``None``) float32: the card's float16 fallback is slow or
    unsupported there."""
    if capability is None:
        return "float32"
    return "bfloat16" if capability[0] >= 8 else "float16"


def card_dtype(device: str, requested: str = "auto"):
    """The torch dtype to load with: ``requested``, or the card's rule for ``device``."""
    import torch

    if requested == "auto":
        capability = (torch.cuda.get_device_capability(torch.device(device))
                      if device.startswith("cuda") else None)
        requested = card_dtype_name(capability)
    return getattr(torch, requested)


def load_kwargs(device: str, dtype, quant: int) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments; with ``quant`` 4 or 8, bitsandbytes as the card's
    demo (``--quant``) loads it (CUDA only).

    :raises ValueError: for a quantization the machine cannot run, naming the fix.
    """
    if quant not in QUANT_BITS:
        raise ValueError(f"quant must be one of {list(QUANT_BITS)}, got {quant}")
    kwargs: dict[str, Any] = {"torch_dtype": dtype, "trust_remote_code": True}
    if not quant:
        return kwargs
    if not device.startswith("cuda"):
        raise ValueError("--quant needs a CUDA device (bitsandbytes); drop --quant on CPU")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ValueError("--quant needs bitsandbytes: EXTRAS=quant bash "
                         "servers/cogvlm2/setup_env.sh")
    from transformers import BitsAndBytesConfig

    bits = ({"load_in_4bit": True, "bnb_4bit_compute_dtype": dtype} if quant == 4
            else {"load_in_8bit": True})
    return {**kwargs, "quantization_config": BitsAndBytesConfig(**bits),
            "low_cpu_mem_usage": True}


class Captioner:
    """The model and tokenizer, loaded once; :meth:`caption` runs one request.

    :param model: local checkpoint folder or hub id.
    :param device: ``cuda``, ``cuda:N`` or ``cpu``; None picks CUDA when available.
    :param dtype: ``auto`` (the card's rule) or a torch dtype name.
    :param quant: 0, 4 or 8 bits.
    :raises ValueError: for a device or quantization the checkpoint cannot run on.
    """

    def __init__(self, model: str, device: str | None = None, dtype: str = "auto",
                 quant: int = 0):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        refuse_device(model, self.device)
        self.dtype = card_dtype(self.device, dtype)
        kwargs = load_kwargs(self.device, self.dtype, quant)
        provide_functional_tensor()  # before the remote code imports pytorchvideo
        self.tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=True)
        self.model = AutoModelForCausalLM.from_pretrained(model, **kwargs).eval()
        if not quant:  # bitsandbytes places a quantized model itself
            self.model = self.model.to(self.device)
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])

    def inputs(self, call: CaptionCall, video) -> dict[str, Any]:
        """The card's ``generate`` inputs for one video (a ``(C, T, H, W)`` uint8 tensor)."""
        return generate_inputs(self.model, self.tokenizer, call.query, video,
                               call.template_version, self.dtype)

    def caption(self, call: CaptionCall, video) -> tuple[list[Choice], int]:
        """``call.n`` candidates for ``video`` and the prompt's token count. Greedy decoding
        runs once (every candidate is the same); sampling runs once per candidate, reseeded
        with ``seed + i`` (the remote code takes one video per ``generate`` call)."""
        import torch

        batch = self.inputs(call, video)
        prompt_tokens = batch["input_ids"].shape[1]
        runs = call.n if call.generate_kwargs.get("do_sample") else 1
        choices = []
        for i in range(runs):
            if call.seed is not None:
                torch.manual_seed(call.seed + i)
            with torch.no_grad():
                output = self.model.generate(**batch, **call.generate_kwargs)
            choices.append(self._choice(output[0, prompt_tokens:].tolist(), call))
        return choices * (call.n // runs), prompt_tokens

    def _choice(self, new_ids: list[int], call: CaptionCall) -> Choice:
        """Decode one output; it hit the limit when it used every new token without ending."""
        pad = call.generate_kwargs["pad_token_id"]
        while new_ids and new_ids[-1] == pad:
            new_ids = new_ids[:-1]
        ended = bool(new_ids) and new_ids[-1] in self.eos_ids
        text = self.tokenizer.decode(new_ids, skip_special_tokens=True).strip()
        text, stopped = cut_at_stop(text, call.stop)
        hit = not (ended or stopped) and len(new_ids) >= call.generate_kwargs["max_new_tokens"]
        return Choice(text.strip(), len(new_ids), hit)
