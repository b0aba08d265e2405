"""Out of memory in a generation micro-batch: halved and retried down to one request, then a
per-sample ``out_of_memory`` error. The backend is the real transformers one on a tiny model;
only the failure is injected, as the allocator raises it on a GPU."""

from __future__ import annotations

import pytest
import torch
from data_juicer.utils.constant import Fields

from dj_ops.adapters.needs import ANY
from dj_ops.backends import base
from dj_ops.backends.base import BackendConfig, CaptionRequest
from dj_ops.backends.isolation import SPLIT_AFTER_ERROR
from dj_ops.backends.memory import is_out_of_memory
from dj_ops.backends.transformers_backend import TransformersBackend
from dj_ops.captioning.generation import parse_sampling_params
from dj_ops.captioning.records import META_KEY
from dj_ops.video import FrameSettings, decode_video
from tests.conftest import FAST_FRAMES, FAST_SAMPLING, make_op, run_op


class OutOfMemoryAbove(TransformersBackend):
    """Runs out of GPU memory on micro-batches of more than ``limit`` requests."""

    limit = 2

    def __init__(self, config, device="cpu"):
        super().__init__(config, device)
        self.sizes: list[int] = []

    def run_micro_batch(self, requests):
        self.sizes.append(len(requests))
        if len(requests) > self.limit:
            raise torch.cuda.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate 2.00 GiB ({len(requests)} requests)")
        return super().run_micro_batch(requests)


class AlwaysOutOfMemory(OutOfMemoryAbove):
    limit = 0


class CpuAllocatorFails(TransformersBackend):
    """Asks the CPU allocator for an impossible amount on batches of more than one request."""

    def run_micro_batch(self, requests):
        torch.empty(2**62 if len(requests) > 1 else 1, dtype=torch.uint8)
        return super().run_micro_batch(requests)


@pytest.fixture(scope="module")
def requests(videos):
    settings = FrameSettings(**FAST_FRAMES, size_factor=32)
    decoded = [decode_video(path, settings) for path in videos]
    return [
        CaptionRequest(v.frames, v.transformers_metadata(), f"Describe clip {i}.")
        for i, v in enumerate(decoded + decoded[:3])
    ]  # 8 requests


def backend(cls, model, batch_size=8):
    config = BackendConfig(model=model, settings=parse_sampling_params(FAST_SAMPLING, 1),
                           batch_size=batch_size, seed=0)
    return cls(config)


def test_real_allocation_failures_are_recognised():
    with pytest.raises(RuntimeError) as cpu:
        torch.empty(2**62, dtype=torch.uint8)
    assert is_out_of_memory(cpu.value)
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory."))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape '[2, 3]' is invalid for input of size 5"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_halving_until_batches_fit_gives_the_same_captions(qwen3, requests):
    reference = backend(TransformersBackend, qwen3).generate(requests)
    halving = backend(OutOfMemoryAbove, qwen3)
    results = halving.generate(requests)
    assert halving.sizes == [8, 4, 2, 2, 4, 2, 2]
    assert all(r.ok for r in results)
    texts = [[(c.text, c.num_tokens, c.decoding) for c in r.candidates] for r in results]
    assert texts == [[(c.text, c.num_tokens, c.decoding) for c in r.candidates]
                     for r in reference]
    # the records say these were generated again after their micro-batch failed
    assert {c.batching for r in results for c in r.candidates} == {SPLIT_AFTER_ERROR}
    assert {c.batching for r in reference for c in r.candidates} == {ANY}


def test_a_request_that_never_fits_gets_an_out_of_memory_error(qwen3, requests):
    failing = backend(AlwaysOutOfMemory, qwen3, batch_size=4)
    results = failing.generate(requests)
    # two micro-batches of 4, each 4 -> 2+2 -> 1+1+1+1: 7 tries each, no endless retry
    assert failing.sizes == [4, 2, 1, 1, 2, 1, 1] * 2
    assert [r.error_kind for r in results] == ["out_of_memory"] * 8
    assert all("CUDA out of memory" in r.error_message for r in results)


def test_cpu_allocator_failure_is_split_too(qwen3, requests):
    results = backend(CpuAllocatorFails, qwen3, batch_size=2).generate(requests[:2])
    assert all(r.ok for r in results)


def test_out_of_memory_through_the_op_is_a_per_sample_error(qwen3, videos, monkeypatch):
    monkeypatch.setitem(base.BACKENDS, "always_oom", (f"{__name__}:AlwaysOutOfMemory", ""))
    samples = [{"text": "", "videos": [v]} for v in videos[:3]]
    rows = run_op(make_op(qwen3, backend="always_oom", keep_original_sample=False), samples)
    assert len(rows) == 3
    records = [r[Fields.meta][META_KEY] for r in rows]
    assert [r["status"] for r in records] == ["error"] * 3
    assert [r["videos"][0]["error_kind"] for r in records] == ["out_of_memory"] * 3
