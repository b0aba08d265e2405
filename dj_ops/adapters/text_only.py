"""Text-only causal language models (Qwen3, Llama, ...): for text-only requests (a caption's
rewrite, a long video's merge), never for video.

A model is text only when transformers lists its ``model_type`` among causal LMs
(``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES``) and neither among image-text-to-text nor among
multimodal LMs (``phi4_multimodal`` is a causal LM that also takes images and audio):
transformers' own tables decide, so every text family it knows is recognised without a row of
ours. It loads
through ``AutoTokenizer`` and ``AutoModelForCausalLM``; its chat messages carry plain string
content (text models' chat templates, Qwen3's among them, read ``message.content`` as a
string).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dj_ops.adapters.base import ModelAdapter

if TYPE_CHECKING:
    from dj_ops.captioning.requests import CaptionRequest

TEXT_ONLY = "text"  # the adapter's name; ``model_params: {model_type: text}`` forces it


def is_text_only(identity: list[str]) -> bool:
    """Whether the ``model_type`` heading ``identity`` (``read_model_identity``'s list) is a
    causal LM that transformers lists as nothing that takes images or video."""
    if not identity:
        return False
    from transformers.models.auto import modeling_auto as auto

    model_type = identity[0]
    other = (auto.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
             getattr(auto, "MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES", {}))
    return (model_type in auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
            and not any(model_type in table for table in other))


class TextOnlyAdapter(ModelAdapter):
    """A text-only chat model: its tokenizer's chat template, string message content."""

    name = TEXT_ONLY
    model_class = "AutoModelForCausalLM"

    def messages(self, request: CaptionRequest) -> list[dict]:
        """An optional system turn and the prompt, as strings.

        :raises ValueError: for a request with a video (a text model cannot see it).
        """
        if request.frames is not None:
            raise ValueError("a text-only model cannot caption videos: use a video model for "
                             "vlm_video_captioning_mapper (text models serve "
                             "caption_enhancement_mapper and the windows' merge)")
        messages = []
        if request.system_prompt:
            messages.append({"role": "system", "content": request.system_prompt})
        messages.append({"role": "user", "content": request.prompt})
        return messages
