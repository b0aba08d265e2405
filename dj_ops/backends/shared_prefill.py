"""Several candidates from one prefill: read each prompt once, then sample ``k`` continuations
from ``k`` copies of its key-value cache.

``generate(num_return_sequences=k)`` repeats every input ``k`` times *before* the prefill, so the
prompt (thousands of video tokens) goes through the language model ``k`` times. Here the prompt
minus its last token goes through once, the cache is repeated ``k`` times, and ``generate``
continues from it with the positions it would have computed itself. Greedy outputs equal plain
``generate``'s token for token; sampled candidates are drawn from the same distributions.
"""

from __future__ import annotations

import inspect

import torch
from transformers import DynamicCache


def supports_shared_prefill(model) -> bool:
    """Whether ``model`` can continue ``generate`` from a cache we fill (decoder-only models of
    transformers' ``GenerationMixin``)."""
    return not model.config.is_encoder_decoder and hasattr(
        model, "_prepare_position_ids_for_generation"
    )


def _positions(model, inputs: dict) -> torch.Tensor | None:
    """The position ids ``generate`` would compute for the whole prompt (3D rope for Qwen-VL),
    or None when the model takes none."""
    if "position_ids" not in inspect.signature(model.forward).parameters:
        return None
    model_kwargs = {name: value for name, value in inputs.items() if name != "input_ids"}
    return model._prepare_position_ids_for_generation(inputs["input_ids"], model_kwargs)


def generate_with_shared_prefill(model, inputs: dict, k: int, generate_kwargs: dict):
    """``model.generate(**inputs, **generate_kwargs, num_return_sequences=k)`` with the prompt
    read once. Returns the same ``(batch * k, length)`` ids, candidates of a row adjacent.

    :param inputs: the processor's output for a left-padded batch (input ids, attention mask,
        pixel values, ...).
    """
    ids = inputs["input_ids"]
    per_token = [name for name, value in inputs.items()  # ids, mask, token types
                 if torch.is_tensor(value) and not value.is_floating_point()
                 and value.shape[:2] == ids.shape]
    positions = _positions(model, inputs)
    prefix = {name: value[:, :-1] if name in per_token else value
              for name, value in inputs.items()}
    if positions is not None:
        prefix["position_ids"] = positions[..., :-1]
    cache = DynamicCache(config=model.config)
    model(**prefix, past_key_values=cache, use_cache=True, logits_to_keep=1)
    cache.batch_repeat_interleave(k)
    continued = {name: inputs[name].repeat_interleave(k, dim=0) for name in per_token}
    if positions is not None:  # (batch, length) or (rope sections, batch, length)
        continued["position_ids"] = positions.repeat_interleave(k, dim=positions.ndim - 2)
    kwargs = {**generate_kwargs, "num_return_sequences": 1}
    return model.generate(**continued, past_key_values=cache, **kwargs)
