"""Decoding attention that reads each prompt's key-value cache once for all its candidates.

After the separate prefills (``prefill.py``) the ``k`` candidates of a prompt share its whole
cache and differ only in the tokens they generate. Any transformers cache would hold ``k`` copies
of the prompt's keys and values, and every decoding step would read every copy: with a 3,000-token
video prompt that reading is most of a decoding step, on CPU and (memory-bound) on a GPU alike.

This is cascade (shared-prefix) attention, as FlashInfer and vLLM do it: at each step the queries
of a prompt's ``k`` candidates attend to the one prompt cache in one matrix product, each
candidate attends to its own new tokens, and the two partial softmaxes are merged by their
maxima and sums. The prompts are right-padded to the longest in one tensor, the padding masked.

Why by hand: transformers has no shared-prefix cache. It does let a model call a registered
attention function (``AttentionInterface``) and builds no mask for one it has no mask function
for. The cache's ``update`` returns only the candidates' own tokens; the attention function finds
the prompts' part in the cache made active for this thread around ``generate`` (its signature has
no room for it). A model whose attention bypasses the interface would see only the new tokens:
the cache notices (an update not followed by the attention call) and raises
:class:`AttentionBypassed` (``fast_decoding.py`` then falls back to plain ``generate``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from transformers import AttentionInterface, DynamicCache
from transformers.cache_utils import Cache, CacheLayerMixin
from transformers.integrations.sdpa_attention import sdpa_attention_forward

ATTENTION = "dj_ops_shared_prefix"
_ACTIVE: ContextVar[SharedPrefixCache | None] = ContextVar(ATTENTION, default=None)


class AttentionBypassed(RuntimeError):
    """The model's attention did not call the registered attention function: this model
    cannot decode with shared-prefix attention."""


class _SharedPrefixLayer(CacheLayerMixin):
    """One layer: the prompts' keys and values once each, right-padded, and each candidate's
    own tokens in a preallocated buffer.

    :param keys: ``(prompts, kv heads, longest prompt, head size)``; likewise ``values``.
    :param lengths: each prompt's cached length.
    :param candidates: rows per prompt.
    :param capacity: own tokens each row may add.
    """

    is_sliding = False

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, lengths: list[int],
                 candidates: int, capacity: int):
        super().__init__()
        self.prefix_keys, self.prefix_values = keys, values
        positions = torch.arange(keys.shape[2], device=keys.device)
        padding = positions[None, :] >= torch.tensor(lengths, device=keys.device)[:, None]
        # (prompts, 1, 1, longest): added to the scores, -inf on the padding
        self.prefix_bias = torch.zeros(padding.shape, device=keys.device).masked_fill(
            padding, float("-inf"))[:, None, None, :]
        rows = keys.shape[0] * candidates
        self.keys = keys.new_empty((rows, keys.shape[1], capacity, keys.shape[3]))
        self.values = values.new_empty((rows, values.shape[1], capacity, values.shape[3]))
        self.length = 0
        self.pending = False  # an update whose attention has not run yet
        self.is_initialized = True

    def lazy_initialization(self, key_states, value_states) -> None:
        """Allocated at construction."""

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        """Append the new tokens; returns the candidates' own tokens so far."""
        if self.pending:
            raise AttentionBypassed(
                "the model's attention did not call the registered attention function "
                f"{ATTENTION!r}; shared-prefix decoding cannot be used with this model")
        end = self.length + key_states.shape[2]
        if end > self.keys.shape[2]:
            raise RuntimeError(f"shared-prefix cache full ({self.keys.shape[2]} new tokens)")
        self.keys[:, :, self.length:end] = key_states
        self.values[:, :, self.length:end] = value_states
        self.length, self.pending = end, True
        return self.keys[:, :, :end], self.values[:, :, :end]

    def get_seq_length(self) -> int:
        return self.length

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.length + query_length, 0

    def get_max_length(self) -> int:
        return self.keys.shape[2]

    def attend(self, query: torch.Tensor, own_keys: torch.Tensor, own_values: torch.Tensor,
               scaling: float) -> torch.Tensor:
        """Attention of one new token per row over its prompt and its own tokens;
        ``query`` is ``(rows, heads, 1, head size)``, the result ``(rows, 1, heads, head size)``."""
        self.pending = False
        rows, heads, steps, size = query.shape
        if steps != 1:
            raise RuntimeError(f"shared-prefix attention takes one new token per row, got {steps}")
        prompts, kv_heads = self.prefix_keys.shape[:2]
        candidates, group = rows // prompts, heads // kv_heads
        # Every candidate of a prompt, every query head of a key-value head: one row each.
        shared = query.view(prompts, candidates, kv_heads, group, size).transpose(1, 2)
        shared = shared.reshape(prompts, kv_heads, candidates * group, size)
        prefix = _partial_softmax(shared, self.prefix_keys, self.prefix_values, scaling,
                                  self.prefix_bias)
        # Back to one row per candidate: (rows, kv heads, group, ...)
        prefix = [part.view(prompts, kv_heads, candidates, group, -1).transpose(1, 2)
                  .reshape(rows, kv_heads, group, -1) for part in prefix]
        own = _partial_softmax(query.view(rows, kv_heads, group, size), own_keys, own_values,
                               scaling, None)
        output = _merge(prefix, own)  # (rows, kv heads, group, head size)
        return output.reshape(rows, heads, size)[:, None].to(query.dtype)


def _partial_softmax(query, keys, values, scaling, bias):
    """Unnormalised attention of ``query`` over ``keys``: (weighted values, max score, sum of
    weights), in float32."""
    scores = torch.matmul(query, keys.transpose(-1, -2)).float() * scaling
    if bias is not None:
        scores = scores + bias
    top = scores.amax(dim=-1, keepdim=True)
    weights = torch.exp(scores - top)
    total = weights.sum(dim=-1, keepdim=True)
    return torch.matmul(weights.to(values.dtype), values).float(), top, total


def _merge(first, second) -> torch.Tensor:
    """Softmax attention over both key sets, from the two partial results."""
    (out_a, top_a, sum_a), (out_b, top_b, sum_b) = first, second
    top = torch.maximum(top_a, top_b)
    scale_a, scale_b = torch.exp(top_a - top), torch.exp(top_b - top)
    return (out_a * scale_a + out_b * scale_b) / (sum_a * scale_a + sum_b * scale_b)


class SharedPrefixCache(Cache):
    """The prompts' caches, each kept once, for decoding ``candidates`` rows per prompt.

    ``generate`` sees only the rows' own tokens as cached: it is fed each prompt's last token
    first, with explicit position ids.

    :param prompt_caches: one cache per prompt (batch of one), all with the same layers.
    :param capacity: tokens each row may add.
    """

    def __init__(self, prompt_caches: list[DynamicCache], candidates: int, capacity: int):
        lengths = [cache.layers[0].keys.shape[2] for cache in prompt_caches]
        layers = []
        for index in range(len(prompt_caches[0].layers)):
            parts = [cache.layers[index] for cache in prompt_caches]
            layers.append(_SharedPrefixLayer(_right_padded([p.keys for p in parts]),
                                             _right_padded([p.values for p in parts]),
                                             lengths, candidates, capacity))
        super().__init__(layers=layers)


def _right_padded(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``(1, heads, length, size)`` tensors, zero-padded along length to the longest, stacked."""
    longest = max(t.shape[2] for t in tensors)
    out = tensors[0].new_zeros((len(tensors), tensors[0].shape[1], longest, tensors[0].shape[3]))
    for row, tensor in enumerate(tensors):
        out[row, :, :tensor.shape[2]] = tensor[0]
    return out


def shared_prefix_attention(module, query, key, value, attention_mask, scaling=None,
                            dropout=0.0, **kwargs):
    """The registered attention function: shared-prefix attention while a
    :class:`SharedPrefixCache` is active in this thread, else transformers' SDPA attention."""
    cache = _ACTIVE.get()
    if cache is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    return cache.layers[module.layer_idx].attend(query, key, value, scale), None


AttentionInterface.register(ATTENTION, shared_prefix_attention)


@contextmanager
def decoding_with(model, cache: SharedPrefixCache) -> Iterator[None]:
    """Within the block, ``model``'s text attention is shared-prefix attention over ``cache``."""
    config = model.config.get_text_config()
    before = config._attn_implementation
    token = _ACTIVE.set(cache)
    config._attn_implementation = ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = before
        _ACTIVE.reset(token)
