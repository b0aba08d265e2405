"""Prefilling each prompt alone then decoding together gives what plain batched ``generate``
gives, on both tiny Qwen-VL families and real videos of different lengths (padded batches; long
videos give Qwen2.5-VL large temporal positions)."""

from __future__ import annotations

import warnings

import pytest
import torch

from dj_ops.backends.base import BackendConfig, CaptionRequest
from dj_ops.backends.prefill import (
    generate_from_separate_prefills,
    supports_separate_prefill,
)
from dj_ops.backends.transformers_backend import TransformersBackend
from dj_ops.captioning.generation import parse_sampling_params
from dj_ops.testing.clips import make_clip
from dj_ops.video import FrameSettings, decode_video
from tests.conftest import FAST_FRAMES

NEW_TOKENS = 6
K = 3


def backend_for(model: str, sampling: dict, caption_num: int) -> TransformersBackend:
    settings = parse_sampling_params(sampling, caption_num)
    config = BackendConfig(model=model, settings=settings, num_candidates=caption_num,
                           batch_size=8, seed=0)
    return TransformersBackend(config)


def requests_for(backend: TransformersBackend, videos: list[str]) -> list[CaptionRequest]:
    settings = FrameSettings(size_factor=backend.size_factor, **FAST_FRAMES)
    decoded = [decode_video(v, settings) for v in videos]
    return [CaptionRequest(d.frames, d.transformers_metadata(), "Describe.") for d in decoded]


@pytest.fixture(scope="module")
def videos_of_two_lengths(videos, tmp_path_factory) -> list[str]:
    """The sample clips and a 1-second one, which gets fewer frames than they do: the batch is
    padded whichever the sample clips are (the generated stand-ins all give one prompt length)."""
    short = make_clip(tmp_path_factory.mktemp("short") / "short.mp4", seconds=1.0, fps=10,
                      width=96, height=64)
    return [*videos, str(short)]


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_greedy_output_equals_plain_batched_generate(tiny_models, videos_of_two_lengths,
                                                     family):
    videos = videos_of_two_lengths
    greedy = {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS, "do_sample": False}
    backend = backend_for(tiny_models[family], greedy, 1)
    assert supports_separate_prefill(backend.model)
    requests = requests_for(backend, videos)
    batch = backend.encode(requests)
    assert (batch["attention_mask"] == 0).any()  # the videos' prompts differ in length
    with torch.inference_mode():
        plain = backend.model.generate(**batch, **backend.generate_kwargs)
        with warnings.catch_warnings():  # the cache goes in under the name the model takes
            warnings.simplefilter("error", FutureWarning)
            ours = generate_from_separate_prefills(
                backend.model, [backend.encode([r]) for r in requests], K,
                backend.generate_kwargs)
    new = plain[:, batch["input_ids"].shape[1]:]
    assert new.shape[1] == NEW_TOKENS
    assert torch.equal(ours, new.repeat_interleave(K, dim=0))


def test_sampled_candidates_differ_and_have_every_token(qwen3, videos):
    backend = backend_for(qwen3, {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS}, K)
    assert backend.separate_prefill and backend.generate_kwargs["num_return_sequences"] == K
    results = backend.generate(requests_for(backend, videos))
    assert [len(r.candidates) for r in results] == [K] * len(videos)
    assert all(c.num_tokens == NEW_TOKENS for r in results for c in r.candidates)
    assert any(len({c.text for c in r.candidates}) > 1 for r in results)
