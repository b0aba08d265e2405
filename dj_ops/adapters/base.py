"""Facts about a family of video models: what every backend needs to know, and nothing more.

An adapter says, for one family: the patch factor frame sides are multiples of, how many frames
make one temporal patch, its default system prompt, the ``transformers`` class that loads it,
whether its checkpoint ships remote code, its pad token, what one ``generate`` call needs from its
videos (:class:`~dj_ops.adapters.needs.VideoNeeds`: batching, resizing, frame times; learned
from the processor for the chat-template families), the processor options its frames need,
how few tokens a video can become, the ``model_params`` keys it reads, and the model types the
transformers backend's speed-ups were checked on. :class:`ModelAdapter` itself is the generic
family: a Hugging Face video chat model nobody has tested here, driven by its own chat template
on the safe path (one video per call, frames resized by its processor). How a backend turns
requests into its inputs is that backend's: one builder per family in its own table
(``backends/hf_inputs.py``, ``backends/vllm_prompts.py``). Adapters are chosen by ``model_type``
from the table in :mod:`dj_ops.adapters.registry`, never by if/elif.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dj_ops.adapters.needs import GENERIC_NEEDS, VideoNeeds
from dj_ops.video.settings import TEMPORAL_FACTOR

if TYPE_CHECKING:
    from dj_ops.captioning.requests import CaptionRequest

# Frames arrive sampled and sized by us: processors must neither resample them (Qwen3-VL would
# index past the frames it was given) nor resize them (their minimum size upscales small frames),
# unless the family's vision tower takes a fixed size (VideoNeeds.processor_resizes).
PRESAMPLED_VIDEO_KWARGS = {"do_sample_frames": False, "do_resize": False}


def chat_messages(request: CaptionRequest) -> list[dict]:
    """Chat messages for one request: optional system turn, then the video and the prompt."""
    messages = []
    if request.system_prompt:
        system = [{"type": "text", "text": request.system_prompt}]
        messages.append({"role": "system", "content": system})
    video = [] if request.frames is None else [{"type": "video"}]  # None: text only
    user = [*video, {"type": "text", "text": request.prompt}]
    messages.append({"role": "user", "content": user})
    return messages


class ModelAdapter:
    """The generic family: a Hugging Face video chat model driven by its own chat template.

    :cvar name: the family's name (provenance, errors; the backends' builder tables' key).
    :cvar size_factor: frame sides are made multiples of this; None: the model's video
        processor says (``patch_size * merge_size``), else the op's default.
    :cvar temporal_factor: frames per temporal patch.
    :cvar default_system_prompt: the system turn the family's chat template adds when none is
        given (None: none).
    :cvar model_class: the ``transformers`` auto class that loads the model.
    :cvar requires_remote_code: the checkpoint ships its own modelling code
        (``model_params: {trust_remote_code: true}`` is then required).
    :cvar max_batch_size: most videos per ``generate`` call the family is known to handle
        (None: no limit beyond ``generation_batch_size``).
    :cvar pad_token_id: the pad token ``generate`` needs when the tokenizer has none.
    :cvar adapter_param_keys: ``model_params`` keys the adapter reads (kept from the loaders).
    :cvar fast_decoding_checked: ``model_type`` values on which the transformers backend's
        speed-ups were checked against plain ``generate`` (see ``backends/fast_decoding.py``).
    :cvar counts_visual_tokens: a video's tokens follow from its frame count and size as
        :func:`dj_ops.video.budget.qwen_visual_tokens` counts them; only then is a frame
        budget fitted (other families: no budget, the engine's own check stays).
    :cvar frame_text: the text an engine's prompt gains per temporal group of frames besides
        the vision tokens, at its longest (Qwen3-VL's timestamps): its tokens count against a
        context's budget.
    :cvar needs: what one ``generate`` call needs from its videos; the generic family's is the
        safe path (one video per call, the processor resizes).
    :cvar samples_in_generate: ``generate`` returns several sampled sequences per prompt
        (``num_return_sequences``); False: each prompt is repeated instead (GLM-4.1V).
    :param params: this family's adapter parameters taken from ``model_params``.
    """

    name = "generic"
    size_factor: int | None = None
    temporal_factor: int = TEMPORAL_FACTOR
    default_system_prompt: str | None = None
    model_class = "AutoModelForImageTextToText"
    requires_remote_code = False
    max_batch_size: int | None = None
    pad_token_id: int | None = None
    adapter_param_keys: tuple[str, ...] = ()
    fast_decoding_checked: tuple[str, ...] = ()
    counts_visual_tokens = False
    frame_text = ""
    needs: VideoNeeds = GENERIC_NEEDS
    samples_in_generate = True

    def __init__(self, params: dict[str, Any] | None = None):
        self.params = dict(params or {})

    def learn(self, processor) -> VideoNeeds:
        """Set :attr:`needs` from the family's loaded processor where the family learns them
        (chat-template families); the generic family keeps the safe path."""
        return self.needs

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

    def messages(self, request: CaptionRequest) -> list[dict]:
        """Chat messages for the family's chat template."""
        return chat_messages(request)

    def processor_kwargs(self) -> dict[str, Any]:
        """Video processor options the family's frames need (user ``processor_kwargs`` win)."""
        return {**PRESAMPLED_VIDEO_KWARGS, "do_resize": self.needs.processor_resizes}

    def video_tokens_lower_bound(self, frames_shape: tuple[int, ...]) -> int:
        """Fewest prompt tokens a video of ``frames_shape`` expands to (0: unknown)."""
        return 0
