"""The quality gate on the ``vllm`` backend's continuous path (vLLM's CPU engine, ``.venv-vllm``):
a retry reaches the engine with the retry sampling, and the op records its attempts."""

from __future__ import annotations

import random

import pytest

vllm = pytest.importorskip("vllm")

from data_juicer.utils.constant import Fields  # noqa: E402

from dj_ops.backends.base import BackendConfig, CaptionRequest  # noqa: E402
from dj_ops.backends.vllm_backend import VLLMBackend  # noqa: E402
from dj_ops.captioning.generation import parse_sampling_params  # noqa: E402
from dj_ops.captioning.quality import RETRY_SAMPLING  # noqa: E402
from dj_ops.captioning.records import META_KEY, RunInfo  # noqa: E402
from dj_ops.ops.config import OutputPolicy, TextLayout  # noqa: E402
from dj_ops.ops.quality_gate import GateConfig, QualityGate  # noqa: E402
from dj_ops.ops.sample_builder import SampleBuilder  # noqa: E402
from dj_ops.ops.streaming import caption_with_engine  # noqa: E402
from dj_ops.testing.tiny_models import VLLM_HEAD_DIM, build_tiny_model  # noqa: E402
from dj_ops.video.decoders import open_decode_source  # noqa: E402
from tests.vllm_support import ENGINE, frame_settings  # noqa: E402

pytestmark = pytest.mark.vllm
CUT = {"max_new_tokens": 4, "min_new_tokens": 4}


def test_vllm_retries_run_with_the_retry_sampling(tmp_path, videos):
    model = build_tiny_model("qwen3_vl", tmp_path / "qwen3", head_dim=VLLM_HEAD_DIM)
    settings = parse_sampling_params(CUT, 1)
    config = BackendConfig(model, settings, seed=0, model_params=dict(ENGINE),
                           frame_settings=frame_settings("qwen3_vl"))
    backend = VLLMBackend(config)
    gate = QualityGate(GateConfig(max_retries=2), settings)
    # what the engine is given for a retry: the retry sampling, the op's token limits
    retry = gate.retry_request(CaptionRequest(None, {}, "p"), 1)
    params = backend.request_sampling_params(retry)
    assert (params.temperature, params.top_p, params.top_k, params.repetition_penalty) == (
        RETRY_SAMPLING.temperature, RETRY_SAMPLING.top_p, RETRY_SAMPLING.top_k,
        RETRY_SAMPLING.repetition_penalty)
    assert params.max_tokens == CUT["max_new_tokens"]
    assert backend.request_sampling_params(CaptionRequest(None, {}, "p")) is \
        backend.sampling_params
    samples = {"text": ["", "", ""], "videos": [[v] for v in videos[:3]],
               Fields.meta: [{}, {}, {}]}
    builder = SampleBuilder(samples, TextLayout(meta_key=Fields.meta))
    source = open_decode_source("pyav", 0, None)
    try:
        caption_with_engine(builder, backend, source, config.frame_settings, max_in_flight=4,
                            max_decoded=4, gate=gate)
    finally:
        source.close()
        backend.shut_down()
    output, _ = builder.build(RunInfo(model, "vllm", {}, "random_any"),
                              OutputPolicy(keep_original=False), random.Random(0))
    videos_out = [m[META_KEY]["videos"][0] for m in output[Fields.meta]]
    assert len(videos_out) == 3
    for video in videos_out:
        flags = list(video["attempt_flags"])
        assert len(flags) == video["attempts"] and all(flags[:-1])
        assert video["attempts"] == 3 or not flags[-1]
    assert any(v["attempts"] > 1 for v in videos_out)
