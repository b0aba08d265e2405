"""The op on the vLLM backend end to end: needs vLLM and a CUDA GPU (skipped otherwise).

Runs the tiny random-weight Qwen3-VL (the real architecture) in a vLLM engine and checks the same
rows, counts and special-token layout as on the transformers backend, and that a video that
cannot fit the context even at ``min_frames`` and ``min_pixels`` fails alone with a
``context_length`` record.
"""

from __future__ import annotations

import pytest

vllm = pytest.importorskip("vllm")
torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("the vLLM backend needs a CUDA GPU", allow_module_level=True)

from data_juicer.utils.constant import Fields  # noqa: E402

from dj_ops.captioning.records import META_KEY  # noqa: E402
from tests.conftest import make_op, run_op  # noqa: E402
from tests.test_op import assert_generated, single_video_samples  # noqa: E402

pytestmark = pytest.mark.gpu
ENGINE = {"gpu_memory_utilization": 0.3, "max_model_len": 4096, "enforce_eager": True}


def test_vllm_rows_match_the_transformers_backend(qwen3, videos):
    samples = single_video_samples(videos)
    params = dict(caption_num=2, keep_candidate_mode="all", keep_original_sample=True)
    reference = run_op(make_op(qwen3, **params), samples)
    rows = run_op(make_op(qwen3, backend="vllm", model_params=ENGINE, **params), samples)
    assert len(rows) == len(reference) == len(samples) * 3
    for original, group in zip(samples, [rows[i:i + 3] for i in range(0, len(rows), 3)]):
        assert group[0]["text"] == original["text"]
        for generated in group[1:]:
            assert_generated(original, generated)
            assert generated[Fields.meta][META_KEY]["backend"] == "vllm"


def test_prompt_longer_than_the_context_fails_alone(qwen3, videos):
    # min_frames and min_pixels at their maximums: the frame budget cannot make it fit
    samples = single_video_samples(videos[:2])
    big = make_op(qwen3, backend="vllm", keep_original_sample=False, max_frames=32,
                  min_frames=32, max_pixels=448 * 448, min_pixels=448 * 448,
                  model_params={**ENGINE, "max_model_len": 256})
    rows = run_op(big, samples)
    assert len(rows) == 2
    for row in rows:
        record = row[Fields.meta][META_KEY]
        assert record["status"] == "error"
        assert record["videos"][0]["error_kind"] == "context_length"
