"""Qwen2.5-VL and Qwen3-VL: Qwen's chat format, video placeholder and frame rules.

The vLLM prompt follows vLLM's ``examples/offline_inference/vision_language.py``
(``run_qwen2_5_vl``, ``run_qwen3_vl``) and equals what the families' chat templates render
(tested against the tiny checkpoints' templates). Videos go to vLLM as ``(frames, metadata)``
with ``do_sample_frames`` off, so the engine keeps our frames and Qwen3-VL gets true timestamps;
Qwen2.5-VL, which takes time from the ``fps`` processor argument instead, gets the frames'
sampling rate per request. Recommended frame settings are qwen-vl-utils' defaults
(``vision_process.py``).
"""

from __future__ import annotations

import math
from typing import Any

from dj_ops.adapters.base import ModelAdapter
from dj_ops.adapters.qwen_patchify import install_patchify_first

# Patch side (14) times the 2 x 2 merge, and 16 x 2 for Qwen3-VL: frame sides are multiples.
QWEN25_VL_PATCH_FACTOR = 28
QWEN3_VL_PATCH_FACTOR = 32
VIDEO_PLACEHOLDER = "<|vision_start|><|video_pad|><|vision_end|>"
TEMPORAL_PATCH_SIZE = 2
MODEL_SEQ_LEN = 128000  # qwen-vl-utils' context budget for VIDEO_TOTAL_PIXELS


def qwen_prompt(prompt: str, system_prompt: str | None) -> str:
    """Qwen's chat format with one video before the prompt, ready for the answer."""
    system = f"<|im_start|>system\n{system_prompt}<|im_end|>\n" if system_prompt else ""
    return (f"{system}<|im_start|>user\n{VIDEO_PLACEHOLDER}{prompt}<|im_end|>\n"
            "<|im_start|>assistant\n")


def sampled_fps(metadata: dict[str, Any]) -> float:
    """Frames per second of the sampled frames (as transformers' ``VideoMetadata.sampled_fps``)."""
    return len(metadata["frames_indices"]) / metadata["total_num_frames"] * metadata["fps"]


def qwen_video_tokens(frames_shape: tuple[int, ...], factor: int) -> int:
    """Vision tokens of a ``(T, H, W, C)`` video: one per ``factor``-square patch per pair of
    frames (Qwen3-VL adds timestamp text on top)."""
    frames, height, width = frames_shape[:3]
    return math.ceil(frames / TEMPORAL_PATCH_SIZE) * (height // factor) * (width // factor)


def qwen_recommended_params(factor: int) -> dict[str, Any]:
    """qwen-vl-utils' video defaults for a family of patch factor ``factor``."""
    return {
        "frame_strategy": "fps", "fps": 2.0, "min_frames": 4, "max_frames": 768,
        "min_pixels": 128 * factor * factor, "max_pixels": 768 * factor * factor,
        "total_pixels": int(MODEL_SEQ_LEN * factor * factor * 0.9),
    }


class QwenVLAdapter(ModelAdapter):
    """What Qwen2.5-VL and Qwen3-VL share; subclasses set the factor and the system prompt."""

    default_system_prompt: str | None = None

    def vllm_prompt(self, request, render=None) -> str:
        return qwen_prompt(request.prompt, request.system_prompt or self.default_system_prompt)

    def vllm_video(self, request) -> tuple:
        return request.frames, {**request.metadata, "do_sample_frames": False}

    def video_tokens_lower_bound(self, frames_shape: tuple[int, ...]) -> int:
        return qwen_video_tokens(frames_shape, self.size_factor)

    def load_hf_processor(self, model: str, **kwargs):
        processor = super().load_hf_processor(model, **kwargs)
        install_patchify_first(processor.video_processor)  # same pixels, fewer copies
        return processor


class Qwen25VLAdapter(QwenVLAdapter):
    """Qwen2.5-VL: patch factor 28, default system prompt, time from the ``fps`` argument."""

    name = "qwen2_5_vl"
    size_factor = QWEN25_VL_PATCH_FACTOR
    fast_decoding_checked = ("qwen2_5_vl",)  # tests/test_prefill.py, test_fast_decoding.py
    default_system_prompt = "You are a helpful assistant."
    recommended_params = qwen_recommended_params(QWEN25_VL_PATCH_FACTOR)

    def vllm_request_processor_kwargs(self, request) -> dict[str, Any]:
        return {"fps": sampled_fps(request.metadata)}


class Qwen3VLAdapter(QwenVLAdapter):
    """Qwen3-VL (dense and MoE): patch factor 32, timestamps from the video metadata."""

    name = "qwen3_vl"
    size_factor = QWEN3_VL_PATCH_FACTOR
    fast_decoding_checked = ("qwen3_vl",)  # not the MoE variant: no checkpoint checked
    recommended_params = qwen_recommended_params(QWEN3_VL_PATCH_FACTOR)

    def hf_processor_kwargs(self) -> dict[str, Any]:
        # Its processor also caps tokens per frame by default: our max_pixels already decides.
        return {**super().hf_processor_kwargs(), "cap_pixels_per_frame": False}
