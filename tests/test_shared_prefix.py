"""Shared-prefix attention against plain attention over each row's whole sequence: prompts of
different lengths, grouped query heads, several candidates per prompt, float32 and bfloat16;
and the guards around it (bypassed attention, fallback, the config restored)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from transformers import DynamicCache, Qwen3VLConfig

from dj_ops.backends import shared_prefix
from dj_ops.backends.shared_prefix import SharedPrefixCache, decoding_with

KV_HEADS, GROUP, SIZE, CANDIDATES = 2, 3, 16, 4
LENGTHS = [7, 12, 3]


def prompt_cache(length: int, dtype) -> DynamicCache:
    cache = DynamicCache()
    keys, values = (torch.randn(1, KV_HEADS, length, SIZE, dtype=dtype) for _ in range(2))
    cache.update(keys, values, 0)
    return cache


def reference(query, prompts, own_keys, own_values, scaling):
    """Softmax attention of each row over its prompt's keys then its own, in float64."""
    rows = []
    for row in range(query.shape[0]):
        prompt = prompts[row // CANDIDATES].layers[0]
        keys = torch.cat([prompt.keys[0], own_keys[row]], dim=1).double()  # (kv, length, size)
        values = torch.cat([prompt.values[0], own_values[row]], dim=1).double()
        q = query[row, :, 0].double().view(KV_HEADS, GROUP, SIZE)
        weights = torch.softmax(q @ keys.transpose(-1, -2) * scaling, dim=-1)
        rows.append((weights @ values).reshape(KV_HEADS * GROUP, SIZE))
    return torch.stack(rows)[:, None]  # (rows, 1, heads, size)


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_attention_equals_attention_over_the_whole_sequence(dtype, tolerance):
    torch.manual_seed(0)
    prompts = [prompt_cache(length, dtype) for length in LENGTHS]
    cache = SharedPrefixCache(prompts, CANDIDATES, capacity=6)
    layer = cache.layers[0]
    rows, scaling = len(LENGTHS) * CANDIDATES, 1 / math.sqrt(SIZE)
    for step in range(3):  # each row adds its own tokens, one per step
        new_keys, new_values = (torch.randn(rows, KV_HEADS, 1, SIZE, dtype=dtype)
                                for _ in range(2))
        own_keys, own_values = layer.update(new_keys, new_values)
        assert own_keys.shape[2] == step + 1 == cache.get_seq_length()
        query = torch.randn(rows, KV_HEADS * GROUP, 1, SIZE, dtype=dtype)
        got = layer.attend(query, own_keys, own_values, scaling)
        assert got.dtype == dtype and got.shape == (rows, 1, KV_HEADS * GROUP, SIZE)
        expected = reference(query, prompts, own_keys, own_values, scaling)
        assert (got.double() - expected).abs().max().item() < tolerance


def test_an_update_not_followed_by_the_attention_call_raises():
    cache = SharedPrefixCache([prompt_cache(5, torch.float32)], 2, capacity=4)
    layer = cache.layers[0]
    token = torch.randn(2, KV_HEADS, 1, SIZE)
    layer.update(token, token)
    with pytest.raises(RuntimeError, match="did not call the registered attention function"):
        layer.update(token, token)


def test_the_cache_refuses_more_tokens_than_its_capacity():
    layer = SharedPrefixCache([prompt_cache(5, torch.float32)], 1, capacity=1).layers[0]
    token = torch.randn(1, KV_HEADS, 1, SIZE)
    own = layer.update(token, token)
    layer.attend(torch.randn(1, KV_HEADS * GROUP, 1, SIZE), *own, 0.25)
    with pytest.raises(RuntimeError, match="cache full"):
        layer.update(token, token)


def test_without_an_active_cache_the_function_is_sdpa():
    torch.manual_seed(0)
    module = SimpleNamespace(num_key_value_groups=GROUP, is_causal=True, layer_idx=0,
                             training=False)
    query = torch.randn(2, KV_HEADS * GROUP, 5, SIZE)
    keys, values = (torch.randn(2, KV_HEADS, 5, SIZE) for _ in range(2))
    got, _ = shared_prefix.shared_prefix_attention(module, query, keys, values, None,
                                                   scaling=0.25)
    expected, _ = shared_prefix.sdpa_attention_forward(module, query, keys, values, None,
                                                       scaling=0.25)
    assert torch.equal(got, expected)


def test_decoding_with_switches_the_text_attention_and_restores_it():
    config = Qwen3VLConfig()
    model = SimpleNamespace(config=config)
    text = config.get_text_config()
    before = text._attn_implementation
    cache = SharedPrefixCache([prompt_cache(3, torch.float32)], 1, capacity=2)
    with pytest.raises(KeyError), decoding_with(model, cache):
        assert text._attn_implementation == shared_prefix.ATTENTION
        assert shared_prefix._ACTIVE.get() is cache
        raise KeyError("generation failed")
    assert text._attn_implementation == before and shared_prefix._ACTIVE.get() is None
