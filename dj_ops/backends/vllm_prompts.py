"""How the vLLM backend turns a request into a prompt and a video item, one builder per family.

Following vLLM's ``examples/offline_inference/vision_language.py``: a builder writes the prompt
with the family's video placeholder, the ``multi_modal_data["video"]`` item, per-request and
engine-wide ``mm_processor_kwargs``, and the profiling limits. :data:`VLLM_PROMPTS` maps each
family's adapter name to its builder; a family without a row is one vLLM does not serve
(CogVLM2). A new family that vLLM serves is one row here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from dj_ops.adapters.base import ModelAdapter
from dj_ops.adapters.chat_template import CHAT_TEMPLATE_FAMILIES
from dj_ops.captioning.requests import CaptionRequest
from dj_ops.video.settings import FrameSettings

# Renders chat messages into a prompt string (a processor's ``apply_chat_template``).
PromptRenderer = Callable[[list[dict]], str]


def profiling_frame_side(settings: FrameSettings, factor: int) -> int:
    """Side of a square frame holding at least as many patches as the largest frame that
    ``settings`` can produce (``max_pixels`` rounded up to the patch factor)."""
    return math.ceil(math.sqrt(settings.max_pixels) / factor) * factor


def profiling_frame_count(settings: FrameSettings) -> int:
    """Most frames one video can have under ``settings``."""
    return settings.num_frames if settings.num_frames is not None else settings.max_frames


def sampled_fps(metadata: dict[str, Any]) -> float:
    """Frames per second of the sampled frames (as transformers' ``VideoMetadata.sampled_fps``)."""
    return len(metadata["frames_indices"]) / metadata["total_num_frames"] * metadata["fps"]


class ChatTemplatePrompts:
    """Any video chat model: its processor's chat template renders the prompt; frames go as
    they are."""

    def __init__(self, adapter: ModelAdapter):
        self.adapter = adapter

    def prompt(self, request: CaptionRequest, render: PromptRenderer | None) -> str:
        """The prompt string with the family's video placeholder."""
        if render is None:
            raise ValueError(f"{self.adapter.name} prompts are rendered with the chat template")
        return render(self.adapter.messages(request))

    def video(self, request: CaptionRequest) -> Any:
        """The ``multi_modal_data["video"]`` item: the frames (``T, H, W, C`` uint8)."""
        return request.frames

    def request_processor_kwargs(self, request: CaptionRequest) -> dict[str, Any]:
        """Per-request ``mm_processor_kwargs`` (none by default)."""
        return {}

    def mm_processor_kwargs(self, settings: FrameSettings) -> dict[str, Any]:
        """Engine-wide ``mm_processor_kwargs``: frames are already sampled and sized."""
        return self.adapter.processor_kwargs()

    def limit_mm_per_prompt(self, settings: FrameSettings) -> dict[str, Any]:
        """One video per prompt, no image; profiling sized to the largest video ``settings``
        can produce, so vLLM reserves memory for what will come, not the model's maximum."""
        factor = self.adapter.size_factor or settings.size_factor
        side = profiling_frame_side(settings, factor)
        video = {"count": 1, "num_frames": profiling_frame_count(settings),
                 "width": side, "height": side}
        return {"image": 0, "video": video}


class QwenPrompts(ChatTemplatePrompts):
    """Qwen-VL: the family's chat format (no processor needed); videos as ``(frames, metadata)``
    with ``do_sample_frames`` off, so the engine keeps our frames and Qwen3-VL gets true
    timestamps."""

    def prompt(self, request: CaptionRequest, render: PromptRenderer | None = None) -> str:
        return self.adapter.prompt(request)

    def video(self, request: CaptionRequest) -> tuple:
        return request.frames, {**request.metadata, "do_sample_frames": False}


class Qwen25Prompts(QwenPrompts):
    """Qwen2.5-VL takes time from the ``fps`` processor argument: the frames' sampling rate."""

    def request_processor_kwargs(self, request: CaptionRequest) -> dict[str, Any]:
        return {"fps": sampled_fps(request.metadata)}


VLLM_PROMPTS: dict[str, type[ChatTemplatePrompts]] = {
    "generic": ChatTemplatePrompts,
    **{family.name: ChatTemplatePrompts for family in CHAT_TEMPLATE_FAMILIES},
    "qwen2_vl": QwenPrompts,
    "qwen2_5_vl": Qwen25Prompts,
    "qwen3_vl": QwenPrompts,
    "text": ChatTemplatePrompts,  # a text-only model: its chat template, text requests only
}


def vllm_prompts_for(adapter: ModelAdapter) -> ChatTemplatePrompts:
    """The builder of ``adapter``'s family.

    :raises ValueError: for a family vLLM does not serve (no row), naming the fix.
    """
    if adapter.name not in VLLM_PROMPTS:
        raise ValueError(f"vLLM does not serve {adapter.name} models; use backend: transformers")
    return VLLM_PROMPTS[adapter.name](adapter)
