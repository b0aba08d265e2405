"""What differs between model families, behind one small interface.

An adapter knows, for one family of video models: the patch factor frames are sized to, the chat
messages for Hugging Face processors, the prompt and video item for vLLM, the processor options,
and the op parameters its model card recommends. :class:`ModelAdapter` itself is the generic
adapter (any Hugging Face video chat model: its own chat template with a ``{"type": "video"}``
part); family adapters override only what their family does differently. Adapters are chosen by
``model_type`` from the table in :mod:`dj_ops.adapters.registry`, never by if/elif.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dj_ops.captioning.requests import CaptionRequest
    from dj_ops.video.settings import FrameSettings

# Renders chat messages into a prompt string (a processor's ``apply_chat_template``).
PromptRenderer = Callable[[list[dict]], str]

# Frames arrive sampled and sized by us: processors must neither resample them (Qwen3-VL would
# index past the frames it was given) nor resize them (their minimum size upscales small frames).
PRESAMPLED_VIDEO_KWARGS = {"do_sample_frames": False, "do_resize": False}


def chat_messages(request: CaptionRequest) -> list[dict]:
    """Chat messages for one request: optional system turn, then the video and the prompt."""
    messages = []
    if request.system_prompt:
        system = [{"type": "text", "text": request.system_prompt}]
        messages.append({"role": "system", "content": system})
    user = [{"type": "video"}, {"type": "text", "text": request.prompt}]
    messages.append({"role": "user", "content": user})
    return messages


def profiling_frame_side(settings: FrameSettings, factor: int) -> int:
    """Side of a square frame holding at least as many patches as the largest frame that
    ``settings`` can produce (``max_pixels`` rounded up to the patch factor)."""
    return math.ceil(math.sqrt(settings.max_pixels) / factor) * factor


def profiling_frame_count(settings: FrameSettings) -> int:
    """Most frames one video can have under ``settings``."""
    return settings.num_frames if settings.num_frames is not None else settings.max_frames


class ModelAdapter:
    """The generic adapter: a Hugging Face video chat model driven by its own chat template.

    :cvar name: the adapter's name (provenance, errors).
    :cvar size_factor: frame sides are made multiples of this; None reads it from the model's
        video processor (``patch_size * merge_size``) or keeps the op's default.
    :cvar model_class: the ``transformers`` auto class that loads the model.
    :cvar requires_remote_code: the checkpoint ships its own modelling code
        (``model_params: {trust_remote_code: true}`` is then required).
    :cvar max_batch_size: most videos per ``generate`` call the family is known to handle
        (None: no limit beyond ``generation_batch_size``).
    :cvar vllm_supported: whether vLLM serves this family.
    :cvar recommended_params: op parameters the model card recommends (see ``configs/``).
    :cvar hf_generate_overrides: ``generate`` keyword arguments the family always needs.
    :cvar adapter_param_keys: ``model_params`` keys the adapter reads (kept from the loaders).
    :cvar fast_decoding_checked: ``model_type`` values on which the transformers backend's
        speed-ups were checked against plain ``generate`` (see ``backends/fast_decoding.py``).
    :param params: this family's adapter parameters taken from ``model_params``.
    """

    name = "generic"
    size_factor: int | None = None
    model_class = "AutoModelForImageTextToText"
    requires_remote_code = False
    max_batch_size: int | None = None
    vllm_supported = True
    recommended_params: dict[str, Any] = {}
    hf_generate_overrides: dict[str, Any] = {}
    adapter_param_keys: tuple[str, ...] = ()
    fast_decoding_checked: tuple[str, ...] = ()

    def __init__(self, params: dict[str, Any] | None = None):
        self.params = dict(params or {})

    def check(self, model_params: dict[str, Any]) -> None:
        """Raise ``ValueError`` with the fix when ``model_params`` cannot work for the family."""
        unknown = sorted(set(self.params) - set(self.adapter_param_keys))
        if unknown:
            raise ValueError(f"model_params {unknown} do not apply to {self.name} models")
        if self.requires_remote_code and not model_params.get("trust_remote_code"):
            raise ValueError(
                f"{self.name} models ship their own modelling code: set "
                "model_params: {trust_remote_code: true} if you trust the checkpoint"
            )

    # ---- Hugging Face transformers ----

    def hf_messages(self, request: CaptionRequest) -> list[dict]:
        """Chat messages for the processor's chat template."""
        return chat_messages(request)

    def hf_processor_kwargs(self) -> dict[str, Any]:
        """``videos_kwargs`` for the processor (user ``processor_kwargs`` override them)."""
        return dict(PRESAMPLED_VIDEO_KWARGS)

    def load_hf_processor(self, model: str, **kwargs):
        """The object that turns requests into model inputs (a processor by default)."""
        import transformers

        processor = transformers.AutoProcessor.from_pretrained(model, **kwargs)
        processor.tokenizer.padding_side = "left"
        return processor

    def hf_tokenizer(self, processor):
        """The tokenizer inside what :meth:`load_hf_processor` returned."""
        return processor.tokenizer

    def hf_size_factor(self, processor) -> int | None:
        """Frame side multiple: the family's, else the video processor's patch (times its merge
        size), else None (the op's default)."""
        video_processor = getattr(processor, "video_processor", None)
        patch = getattr(video_processor, "patch_size", None)
        if self.size_factor or not isinstance(patch, int):  # e.g. LLaVA's: resizes by itself
            return self.size_factor
        return patch * int(getattr(video_processor, "merge_size", None) or 1)

    def encode_hf(self, processor, model, requests: list[CaptionRequest],
                  processor_kwargs: dict[str, Any]):
        """Model inputs for one micro-batch (left padded), on the model's device."""
        texts = [
            processor.apply_chat_template(
                self.hf_messages(r), tokenize=False, add_generation_prompt=True
            )
            for r in requests
        ]
        return processor(
            text=texts,
            videos=[r.frames for r in requests],
            video_metadata=[r.metadata for r in requests],
            videos_kwargs=processor_kwargs,
            padding=True,
            return_tensors="pt",
        ).to(model.device)

    # ---- vLLM ----

    def vllm_prompt(self, request: CaptionRequest, render: PromptRenderer | None) -> str:
        """The prompt string with the family's video placeholder."""
        if render is None:
            raise ValueError(f"the {self.name} adapter renders prompts with the chat template")
        return render(self.hf_messages(request))

    def vllm_video(self, request: CaptionRequest) -> Any:
        """The ``multi_modal_data["video"]`` item: the frames (``T, H, W, C`` uint8)."""
        return request.frames

    def vllm_request_processor_kwargs(self, request: CaptionRequest) -> dict[str, Any]:
        """Per-request ``mm_processor_kwargs`` (none by default)."""
        return {}

    def vllm_mm_processor_kwargs(self, settings: FrameSettings) -> dict[str, Any]:
        """Engine-wide ``mm_processor_kwargs``: frames are already sampled and sized."""
        return self.hf_processor_kwargs()

    def vllm_limit_mm_per_prompt(self, settings: FrameSettings) -> dict[str, Any]:
        """One video per prompt, no image; profiling sized to the largest video ``settings``
        can produce, so vLLM reserves memory for what will come, not the model's maximum."""
        factor = self.size_factor or settings.size_factor
        side = profiling_frame_side(settings, factor)
        video = {"count": 1, "num_frames": profiling_frame_count(settings),
                 "width": side, "height": side}
        return {"image": 0, "video": video}

    def video_tokens_lower_bound(self, frames_shape: tuple[int, ...]) -> int:
        """Fewest prompt tokens a video of ``frames_shape`` expands to (0: unknown)."""
        return 0
