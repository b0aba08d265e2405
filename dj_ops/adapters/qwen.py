"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL: patch factors, chat format, how many tokens a video becomes.

The chat format equals what the families' chat templates render (tested against the tiny
checkpoints' templates), so a backend can write the prompt without loading a processor
(vLLM's ``examples/offline_inference/vision_language.py``, ``run_qwen2_5_vl``, ``run_qwen3_vl``).
"""

from __future__ import annotations

from typing import Any

from dj_ops.adapters.base import ModelAdapter
from dj_ops.adapters.needs import ANY, VideoNeeds
from dj_ops.video.budget import vision_tokens

# Patch side (14) times the 2 x 2 merge, and 16 x 2 for Qwen3-VL: frame sides are multiples.
QWEN25_VL_PATCH_FACTOR = 28
QWEN3_VL_PATCH_FACTOR = 32
VIDEO_PLACEHOLDER = "<|vision_start|><|video_pad|><|vision_end|>"
# Qwen3-VL's prompt puts "<12.3 seconds>" and its own <|vision_start|>/<|vision_end|> around
# each temporal group's vision tokens; counted at the longest time the budget allows for
# (a day and more), so that the count bounds every group of any video.
QWEN3_LONGEST_SECONDS = 99999.9


def qwen_prompt(prompt: str, system_prompt: str | None, video: bool = True) -> str:
    """Qwen's chat format with one video (unless not ``video``) before the prompt, ready for
    the answer."""
    system = f"<|im_start|>system\n{system_prompt}<|im_end|>\n" if system_prompt else ""
    placeholder = VIDEO_PLACEHOLDER if video else ""
    return (f"{system}<|im_start|>user\n{placeholder}{prompt}<|im_end|>\n"
            "<|im_start|>assistant\n")


def qwen_video_tokens(frames_shape: tuple[int, ...], factor: int, temporal: int = 2) -> int:
    """Vision tokens of a ``(T, H, W, C)`` video (Qwen3-VL adds timestamp text on top): the
    budget's formula, :func:`dj_ops.video.budget.vision_tokens`."""
    return vision_tokens(*frames_shape[:3], factor, temporal)


# What the Qwen-VL processors need (checked against them in tests/test_families.py): patches
# of any video share a call, frames go as decoded, times from the metadata (not Qwen2-VL's).
QWEN_NEEDS = VideoNeeds(ANY, processor_resizes=False, frame_times=True,
                        video_token="<|video_pad|>")


class QwenVLAdapter(ModelAdapter):
    """What the Qwen-VL families share; subclasses set the factor and the system prompt."""

    counts_visual_tokens = True
    needs = QWEN_NEEDS

    def video_tokens_lower_bound(self, frames_shape: tuple[int, ...]) -> int:
        return qwen_video_tokens(frames_shape, self.size_factor, self.temporal_factor)

    def prompt(self, request) -> str:
        """The family's chat format for ``request`` (its template's rendering)."""
        return qwen_prompt(request.prompt, request.system_prompt or self.default_system_prompt,
                           video=request.frames is not None)


class Qwen2VLAdapter(QwenVLAdapter):
    """Qwen2-VL: patch factor 28, default system prompt; its positions carry no time."""

    name = "qwen2_vl"
    size_factor = QWEN25_VL_PATCH_FACTOR
    default_system_prompt = "You are a helpful assistant."
    needs = VideoNeeds(ANY, processor_resizes=False, frame_times=False,
                       video_token="<|video_pad|>")


class Qwen25VLAdapter(QwenVLAdapter):
    """Qwen2.5-VL: patch factor 28, default system prompt, time from the ``fps`` argument."""

    name = "qwen2_5_vl"
    size_factor = QWEN25_VL_PATCH_FACTOR
    default_system_prompt = "You are a helpful assistant."
    fast_decoding_checked = ("qwen2_5_vl",)  # tests/test_prefill.py, test_fast_decoding.py


class Qwen3VLAdapter(QwenVLAdapter):
    """Qwen3-VL (dense and MoE): patch factor 32, timestamps from the video metadata."""

    name = "qwen3_vl"
    size_factor = QWEN3_VL_PATCH_FACTOR
    fast_decoding_checked = ("qwen3_vl",)  # not the MoE variant: no checkpoint checked
    frame_text = (f"<{QWEN3_LONGEST_SECONDS:.1f} seconds><|vision_start|><|vision_end|>")

    def processor_kwargs(self) -> dict[str, Any]:
        # Its processor also caps tokens per frame by default: our max_pixels already decides.
        return {**super().processor_kwargs(), "cap_pixels_per_frame": False}
