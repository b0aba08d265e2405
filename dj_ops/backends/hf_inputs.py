"""How the transformers backend turns requests into model inputs, one builder per family.

A builder loads what encodes requests (a processor, or CogVLM2's tokenizer), says the frames'
patch factor when the family leaves it to the processor, and encodes one micro-batch (left
padded) on the model's device. :data:`HF_INPUTS` maps each family's adapter name to its builder;
a new family that transformers serves is one row here.
"""

from __future__ import annotations

from typing import Any

from dj_ops.adapters.base import ModelAdapter
from dj_ops.adapters.chat_template import CHAT_TEMPLATE_FAMILIES
from dj_ops.adapters.cogvlm2_interface import generate_inputs, to_cthw
from dj_ops.adapters.qwen_patchify import install_patchify_first
from dj_ops.captioning.requests import CaptionRequest


class ChatTemplateInputs:
    """A Hugging Face processor: the family's chat template, then frames with their metadata."""

    def __init__(self, adapter: ModelAdapter):
        self.adapter = adapter

    def load_processor(self, model: str, **kwargs):
        """The object that turns requests into model inputs (the model's processor)."""
        import transformers

        processor = transformers.AutoProcessor.from_pretrained(model, **kwargs)
        processor.tokenizer.padding_side = "left"
        return processor

    def tokenizer(self, processor):
        """The tokenizer inside what :meth:`load_processor` returned."""
        return processor.tokenizer

    def size_factor(self, processor) -> int | None:
        """Frame side multiple: the family's, else the video processor's patch (times its merge
        size), else None (the op's default)."""
        video_processor = getattr(processor, "video_processor", None)
        patch = getattr(video_processor, "patch_size", None)
        if self.adapter.size_factor or not isinstance(patch, int):  # e.g. LLaVA's: resizes
            return self.adapter.size_factor
        return patch * int(getattr(video_processor, "merge_size", None) or 1)

    def encode(self, processor, model, requests: list[CaptionRequest],
               processor_kwargs: dict[str, Any]):
        """Model inputs for one micro-batch (left padded), on the model's device."""
        texts = [processor.apply_chat_template(self.adapter.messages(r), tokenize=False,
                                               add_generation_prompt=True) for r in requests]
        if all(r.frames is None for r in requests):  # text only (a long video's merge)
            return processor(text=texts, padding=True, return_tensors="pt").to(model.device)
        return processor(
            text=texts,
            videos=[r.frames for r in requests],
            video_metadata=[r.metadata for r in requests],
            videos_kwargs=processor_kwargs,
            padding=True,
            return_tensors="pt",
        ).to(model.device)


class QwenInputs(ChatTemplateInputs):
    """Qwen-VL's processor, its video patches cut from the uint8 frames first (same pixels,
    fewer copies: ``adapters/qwen_patchify.py``)."""

    def load_processor(self, model: str, **kwargs):
        processor = super().load_processor(model, **kwargs)
        install_patchify_first(processor.video_processor)
        return processor


class CogVLM2Inputs(ChatTemplateInputs):
    """CogVLM2's remote ``build_conversation_input_ids`` (its checkpoint has no processor),
    through the builder its caption server shares (``adapters/cogvlm2_interface.py``)."""

    def load_processor(self, model: str, **kwargs):
        import transformers

        tokenizer = transformers.AutoTokenizer.from_pretrained(model, **kwargs)
        tokenizer.padding_side = "left"
        return tokenizer

    def tokenizer(self, processor):
        return processor

    def encode(self, processor, model, requests, processor_kwargs) -> dict:
        if len(requests) != 1:
            raise ValueError(f"{self.adapter.name} takes one video per generate call, "
                             f"got {len(requests)}")
        request = requests[0]
        return generate_inputs(model, processor, self.adapter.query(request),
                               to_cthw(request.frames), self.adapter.template_version,
                               model.dtype)


class TextOnlyInputs(ChatTemplateInputs):
    """A text-only causal LM (``adapters/text_only.py``): its tokenizer and chat template."""

    def load_processor(self, model: str, **kwargs):
        import transformers

        tokenizer = transformers.AutoTokenizer.from_pretrained(model, **kwargs)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:  # Llama's has none; padding is masked anyway
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer

    def tokenizer(self, processor):
        return processor

    def size_factor(self, processor) -> int | None:
        return None

    def encode(self, processor, model, requests, processor_kwargs):
        texts = [processor.apply_chat_template(self.adapter.messages(r), tokenize=False,
                                               add_generation_prompt=True) for r in requests]
        # the template writes the model's special tokens itself (a BOS twice otherwise)
        return processor(texts, padding=True, return_tensors="pt",
                         add_special_tokens=False).to(model.device)


HF_INPUTS: dict[str, type[ChatTemplateInputs]] = {
    "generic": ChatTemplateInputs,
    **{family.name: ChatTemplateInputs for family in CHAT_TEMPLATE_FAMILIES},
    "qwen2_vl": QwenInputs,
    "qwen2_5_vl": QwenInputs,
    "qwen3_vl": QwenInputs,
    "cogvlm2": CogVLM2Inputs,
    "text": TextOnlyInputs,
}


def hf_inputs_for(adapter: ModelAdapter) -> ChatTemplateInputs:
    """The builder of ``adapter``'s family."""
    if adapter.name not in HF_INPUTS:
        raise ValueError(f"the transformers backend has no input builder for {adapter.name} "
                         f"models; families it serves: {sorted(HF_INPUTS)}")
    return HF_INPUTS[adapter.name](adapter)
