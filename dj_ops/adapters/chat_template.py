"""transformers' video chat families driven by their own chat template and processor, tested here.

Each is one row: its ``model_type`` (the adapter's ``name``) and what cannot be read from its
processor (GLM-4.1V's ``generate`` cannot return several sampled sequences per prompt). What one
``generate`` call needs from its videos is learned from the processor once it is loaded
(:func:`~dj_ops.adapters.needs.learn_video_needs`); until then (a backend that loads none) the
needs are the batched safe choice: one frame count per call, frames resized by the processor.
Each family is captioned end to end by ``tests/test_families.py`` with a tiny random-weight
checkpoint of its real classes (``dj_ops/testing/tiny_families.py``). A model whose family is
in no row gets :class:`~dj_ops.adapters.base.ModelAdapter`: one video per call.
"""

from __future__ import annotations

from dj_ops.adapters.base import ModelAdapter
from dj_ops.adapters.needs import SAME_FRAME_COUNT, VideoNeeds, learn_video_needs


class ChatTemplateFamily(ModelAdapter):
    """A tested family: its chat template places the video (a ``{"type": "video"}`` part before
    the prompt), its processor expands and sizes it; needs learned from the processor."""

    needs = VideoNeeds(SAME_FRAME_COUNT, processor_resizes=True)

    def learn(self, processor) -> VideoNeeds:
        self.needs = learn_video_needs(processor)
        return self.needs


class LlavaOnevisionAdapter(ChatTemplateFamily):
    name = "llava_onevision"


class LlavaNextVideoAdapter(ChatTemplateFamily):
    name = "llava_next_video"


class VideoLlavaAdapter(ChatTemplateFamily):
    name = "video_llava"


class InternVLAdapter(ChatTemplateFamily):
    name = "internvl"


class SmolVLMAdapter(ChatTemplateFamily):
    name = "smolvlm"


class Glm4vAdapter(ChatTemplateFamily):
    """GLM-4.1V. transformers 5.25 fails inside ``generate`` when asked for several sampled
    sequences per prompt (``torch.cat(): expected a non-empty list of Tensors``, expanding the
    video grid): each prompt is repeated instead."""

    name = "glm4v"
    samples_in_generate = False


class Glm46vAdapter(Glm4vAdapter):
    """GLM-4.6V: GLM-4.1V's towers and its ``generate`` failure on sampled sequences."""

    name = "glm46v"


class VideoLlama3Adapter(ChatTemplateFamily):
    """VideoLLaMA3. Its processor drops the tokens of patches that repeat the previous frame's;
    once it has, transformers 5.25 fails inside ``generate`` on several sampled sequences per
    prompt (as GLM-4.1V): each prompt is repeated instead."""

    name = "video_llama_3"
    samples_in_generate = False


CHAT_TEMPLATE_FAMILIES: tuple[type[ChatTemplateFamily], ...] = (
    LlavaOnevisionAdapter, LlavaNextVideoAdapter, VideoLlavaAdapter, InternVLAdapter,
    SmolVLMAdapter, Glm4vAdapter, Glm46vAdapter, VideoLlama3Adapter)
