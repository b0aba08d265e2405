"""vLLM request building, exactly (vLLM itself cannot be installed here; see test_vllm_gpu.py)."""

from __future__ import annotations

import importlib.util
import re
from types import SimpleNamespace

import numpy as np
import pytest

from dj_ops.adapters import GENERIC_ADAPTER, Qwen3VLAdapter, Qwen25VLAdapter
from dj_ops.backends.base import BackendConfig, Candidate, CaptionRequest
from dj_ops.backends.vllm_requests import (
    build_request,
    check_context,
    check_vllm_config,
    classify_engine_error,
    engine_kwargs,
    parse_request_output,
    sampling_kwargs,
)
from dj_ops.captioning.generation import parse_sampling_params
from dj_ops.video import FrameSettings
from tests.conftest import make_op

FRAMES = np.zeros((4, 64, 96, 3), dtype=np.uint8)
METADATA = {"total_num_frames": 120, "fps": 30.0, "duration": 4.0,
            "frames_indices": [0, 15, 30, 45], "width": 96, "height": 64, "video_backend": "pyav"}
REQUEST = CaptionRequest(FRAMES, METADATA, "Describe.", None)
SETTINGS = FrameSettings(min_pixels=784, max_pixels=448 * 448, max_frames=16)
VLLM_MISSING = importlib.util.find_spec("vllm") is None


def config(model_params=None, caption_num=1, sampling=None, seed=None) -> BackendConfig:
    return BackendConfig(
        model="Qwen/Qwen3-VL-8B-Instruct", settings=parse_sampling_params(sampling, caption_num),
        num_candidates=caption_num, seed=seed, model_params=model_params or {},
        frame_settings=SETTINGS)


def test_engine_kwargs_defaults():
    assert engine_kwargs(config(seed=3), Qwen3VLAdapter()) == {
        "model": "Qwen/Qwen3-VL-8B-Instruct",
        "tensor_parallel_size": 1,
        "limit_mm_per_prompt": {"image": 0, "video": {"count": 1, "num_frames": 16,
                                                      "width": 448, "height": 448}},
        "mm_processor_kwargs": {"do_sample_frames": False, "do_resize": False,
                                "cap_pixels_per_frame": False},
        "seed": 3,
    }


def test_engine_kwargs_from_model_params():
    params = {"tensor_parallel_size": 2, "max_model_len": 8192, "gpu_memory_utilization": 0.8,
              "dtype": "bfloat16", "quantization": "4bit", "model_type": "qwen3_vl",
              "processor_kwargs": {"do_resize": True}, "limit_mm_per_prompt": {"video": 2}}
    assert engine_kwargs(config(params), Qwen3VLAdapter()) == {
        "model": "Qwen/Qwen3-VL-8B-Instruct",
        "tensor_parallel_size": 2,
        "limit_mm_per_prompt": {"video": 2},
        "mm_processor_kwargs": {"do_sample_frames": False, "do_resize": True,
                                "cap_pixels_per_frame": False},
        "quantization": "bitsandbytes",
        "max_model_len": 8192,
        "gpu_memory_utilization": 0.8,
        "dtype": "bfloat16",
    }


def test_greedy_asks_for_one_sequence_for_all_candidates():
    assert sampling_kwargs(config(caption_num=3, sampling={"temperature": 0,
                                                           "max_tokens": 64})) == {
        "n": 1, "max_tokens": 64, "min_tokens": 0, "temperature": 0.0}


def test_sampling_asks_for_n_candidates():
    sampling = {"temperature": 0.8, "top_p": 0.9, "top_k": -1, "max_new_tokens": 32,
                "min_new_tokens": 4, "repetition_penalty": 1.05, "stop": "\n\n"}
    assert sampling_kwargs(config(caption_num=3, sampling=sampling, seed=7)) == {
        "n": 3, "max_tokens": 32, "min_tokens": 4, "temperature": 0.8, "top_p": 0.9,
        "top_k": -1, "repetition_penalty": 1.05, "stop": ["\n\n"], "seed": 7}


def test_qwen3_request_exactly():
    built = build_request(Qwen3VLAdapter(), REQUEST)
    assert built["prompt"] == ("<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>"
                               "Describe.<|im_end|>\n<|im_start|>assistant\n")
    [(frames, metadata)] = built["multi_modal_data"]["video"]
    assert frames is FRAMES and metadata == {**METADATA, "do_sample_frames": False}
    assert set(built) == {"prompt", "multi_modal_data"}


def test_qwen2_5_request_carries_the_sampling_rate():
    built = build_request(Qwen25VLAdapter(), REQUEST)
    assert built["mm_processor_kwargs"] == {"fps": 1.0}
    assert built["prompt"].startswith("<|im_start|>system\nYou are a helpful assistant.")


def test_generic_request_renders_the_chat_template(qwen3):
    import transformers

    processor = transformers.AutoProcessor.from_pretrained(qwen3)
    built = build_request(GENERIC_ADAPTER(), REQUEST, lambda m: processor.apply_chat_template(
        m, tokenize=False, add_generation_prompt=True))
    assert built == {"prompt": build_request(Qwen3VLAdapter(), REQUEST)["prompt"],
                     "multi_modal_data": {"video": [FRAMES]}}


def test_context_check():
    adapter = Qwen3VLAdapter()  # 4 frames of 64x96 at factor 32: 2 * 2 * 3 = 12 video tokens
    assert check_context(adapter, REQUEST, text_tokens=20, max_model_len=32) is None
    failure = check_context(adapter, REQUEST, text_tokens=20, max_model_len=31)
    assert failure.error_kind == "context_length"
    assert failure.error_message.startswith(
        "the prompt needs at least 31 tokens (12 for the video of 4 frames of 96x64) but "
        "max_model_len is 31")


@pytest.mark.parametrize("message, kind", [
    ("The decoder prompt (length 9000) is longer than the maximum model length of 8192. Make "
     "sure that `max_model_len` is no smaller than the number of text tokens plus multimodal "
     "tokens.", "context_length"),
    ("At most 1 video(s) may be provided in one prompt.", "invalid_request"),
])
def test_engine_errors_are_classified(message, kind):
    assert classify_engine_error(message) == kind


def completion(text, n_tokens, reason):
    return SimpleNamespace(text=text, token_ids=list(range(n_tokens)), finish_reason=reason)


def test_outputs_become_candidates():
    output = SimpleNamespace(outputs=[completion(" A cat. ", 3, "stop"),
                                      completion("A dog", 8, "length")])
    assert parse_request_output(output, 2).candidates == [
        Candidate("A cat.", 3, False), Candidate("A dog", 8, True)]
    greedy = SimpleNamespace(outputs=[completion("Same", 2, "stop")])
    assert parse_request_output(greedy, 3).candidates == [Candidate("Same", 2, False)] * 3
    short = parse_request_output(output, 3)
    assert short.error_kind == "invalid_request" and "2 of 3" in short.error_message


@pytest.mark.skipif(not VLLM_MISSING, reason="vLLM is installed")
@pytest.mark.parametrize("params", [{"backend": "vllm"}, {"enable_vllm": True}])
def test_missing_vllm_fails_at_construction_with_the_extra(qwen3, params):
    with pytest.raises(ModuleNotFoundError, match=re.escape('pip install "dj-ops[vllm]"')):
        make_op(qwen3, **params)


def test_config_check_refuses_what_vllm_cannot_run():
    assert check_vllm_config(config({"model_type": "qwen3_vl"})).name == "qwen3_vl"
    with pytest.raises(ValueError, match="vLLM does not serve cogvlm2 models"):
        check_vllm_config(config({"model_type": "cogvlm2", "trust_remote_code": True}))
    with pytest.raises(ValueError, match="'8bit' is not offered by vLLM"):
        check_vllm_config(config({"model_type": "qwen3_vl", "quantization": "8bit"}))
