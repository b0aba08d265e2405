"""Candidates from one shared prefill equal plain ``generate``'s, on both tiny Qwen-VL families
and real videos of different lengths (long ones give Qwen2.5-VL large temporal positions)."""

from __future__ import annotations

import pytest
import torch

from dj_ops.backends.base import BackendConfig, CaptionRequest
from dj_ops.backends.shared_prefill import generate_with_shared_prefill, supports_shared_prefill
from dj_ops.backends.transformers_backend import TransformersBackend
from dj_ops.captioning.generation import parse_sampling_params
from dj_ops.video import FrameSettings, decode_video
from tests.conftest import FAST_FRAMES

NEW_TOKENS = 6
K = 3


def backend_for(model: str, sampling: dict, caption_num: int) -> TransformersBackend:
    settings = parse_sampling_params(sampling, caption_num)
    config = BackendConfig(model=model, settings=settings, num_candidates=caption_num,
                           batch_size=8, seed=0)
    return TransformersBackend(config)


def encoded_batch(backend: TransformersBackend, videos: list[str]) -> dict:
    settings = FrameSettings(size_factor=backend.size_factor, **FAST_FRAMES)
    decoded = [decode_video(v, settings) for v in videos]
    requests = [CaptionRequest(d.frames, d.transformers_metadata(), "Describe.") for d in decoded]
    return backend.encode(requests)


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_greedy_candidates_equal_plain_generate(tiny_models, videos, family):
    greedy = {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS, "do_sample": False}
    backend = backend_for(tiny_models[family], greedy, 1)
    assert supports_shared_prefill(backend.model)
    inputs = encoded_batch(backend, videos)
    with torch.inference_mode():
        plain = backend.model.generate(**inputs, **backend.generate_kwargs)
        shared = generate_with_shared_prefill(backend.model, inputs, K, backend.generate_kwargs)
    assert shared.shape == (len(videos) * K, plain.shape[1])
    assert torch.equal(shared, plain.repeat_interleave(K, dim=0))


def test_sampled_candidates_differ_and_have_every_token(qwen3, videos):
    sampling = {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS}
    backend = backend_for(qwen3, sampling, K)
    assert backend.share_prefill and backend.generate_kwargs["num_return_sequences"] == K
    decoded = [decode_video(v, FrameSettings(size_factor=backend.size_factor, **FAST_FRAMES))
               for v in videos]
    results = backend.generate(
        [CaptionRequest(d.frames, d.transformers_metadata(), "Describe.") for d in decoded])
    assert [len(r.candidates) for r in results] == [K] * len(videos)
    assert all(c.num_tokens == NEW_TOKENS for r in results for c in r.candidates)
    assert any(len({c.text for c in r.candidates}) > 1 for r in results)
