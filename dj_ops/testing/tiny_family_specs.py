"""The rows of :data:`TINY_FAMILIES`: how each family's tiny checkpoint is configured.

Each family is its model class, the placeholder its chat template writes for a video, the tokens
its processor reads from the tokenizer, and two builders (the config, the processor with the
family's own image and video processor classes at their defaults but sizes). Small towers: 28
pixel squares where the tower has a fixed input size, two layers; two text layers of 64.
Built by :mod:`dj_ops.testing.tiny_families`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dj_ops.testing.tiny_models import EOS_TOKEN, INITIALIZER_RANGE, PAD_TOKEN

SIDE = 28  # fixed-size towers take 28 x 28 frames: two 14-pixel patches a side
PATCH = 14
HIDDEN = 64  # text hidden size (4 heads of 16)
VISION_HIDDEN = 32
_TEXT = {"hidden_size": HIDDEN, "intermediate_size": 2 * HIDDEN, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 4096,
         "initializer_range": INITIALIZER_RANGE}
_VISION = {"hidden_size": VISION_HIDDEN, "intermediate_size": 2 * VISION_HIDDEN,
           "num_hidden_layers": 2, "num_attention_heads": 2, "initializer_range": INITIALIZER_RANGE}
_SQUARE = {"height": SIDE, "width": SIDE}


def chat_template(video: str) -> str:
    """Qwen-style turns; a ``{"type": "video"}`` part becomes ``video`` (the family's placeholder),
    an image part ``<image>``."""
    return (
        "{%- for message in messages -%}{{- '<|im_start|>' + message.role + '\\n' -}}"
        "{%- if message.content is string -%}{{- message.content -}}{%- else -%}"
        "{%- for content in message.content -%}"
        f"{{%- if content.type == 'video' -%}}{video}"
        "{%- elif content.type == 'image' -%}<image>"
        "{%- elif 'text' in content -%}{{- content.text -}}{%- endif -%}"
        "{%- endfor -%}{%- endif -%}{{- '<|im_end|>\\n' -}}{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
    )


@dataclass(frozen=True)
class TinyFamily:
    """One family: how its tiny checkpoint is built.

    :param model_class: the ``transformers`` class of the model.
    :param video: the placeholder its chat template writes for a video.
    :param tokens: tokens added to the tokenizer (the processor's and the model's).
    :param named: tokenizer attributes the processor reads (``video_token`` -> ``<video>``).
    :param config: ``(ids, vocab_size) -> config`` (``ids`` maps a token to its id).
    :param processor: ``(tokenizer, template) -> processor``.
    """

    model_class: str
    video: str
    tokens: tuple[str, ...]
    config: Callable[[Callable[[str], int], int], Any]
    processor: Callable[[Any, str], Any]
    named: dict[str, str] = field(default_factory=dict)


def _text(ids, vocab: int, **extra) -> dict:
    return {**_TEXT, "vocab_size": vocab, "bos_token_id": ids(PAD_TOKEN),
            "eos_token_id": ids(EOS_TOKEN), "pad_token_id": ids(PAD_TOKEN), **extra}


# ---- LLaVA-OneVision: SigLIP tower, Qwen2 text; frames resized to the tower's square ----

def _llava_onevision_config(ids, vocab):
    import transformers

    vision = {**_VISION, "model_type": "siglip_vision_model", "image_size": SIDE,
              "patch_size": PATCH}
    return transformers.LlavaOnevisionConfig(
        vision_config=vision, text_config=_text(ids, vocab, model_type="qwen2"),
        image_token_id=ids("<image>"), video_token_id=ids("<video>"), vision_feature_layer=-1,
        vision_feature_select_strategy="full", image_grid_pinpoints=[[SIDE, SIDE]],
        tie_word_embeddings=False)


def _llava_onevision_processor(tokenizer, template):
    import transformers

    return transformers.LlavaOnevisionProcessor(
        image_processor=transformers.LlavaOnevisionImageProcessor(
            size=_SQUARE, image_grid_pinpoints=[[SIDE, SIDE]]),
        video_processor=transformers.LlavaOnevisionVideoProcessor(size=_SQUARE),
        tokenizer=tokenizer, chat_template=template, num_image_tokens=(SIDE // PATCH) ** 2,
        vision_feature_select_strategy="full", image_token="<image>", video_token="<video>")


# ---- LLaVA-NeXT-Video: CLIP tower (its CLS dropped), Llama text, frames pooled 2 x 2 ----

def _llava_next_video_config(ids, vocab):
    import transformers

    vision = {**_VISION, "model_type": "clip_vision_model", "image_size": SIDE,
              "patch_size": PATCH, "projection_dim": VISION_HIDDEN}
    return transformers.LlavaNextVideoConfig(
        vision_config=vision, text_config=_text(ids, vocab, model_type="llama"),
        image_token_index=ids("<image>"), video_token_index=ids("<video>"),
        vision_feature_layer=-1, vision_feature_select_strategy="default",
        image_grid_pinpoints=[[SIDE, SIDE]], image_seq_length=(SIDE // PATCH) ** 2,
        video_seq_length=1, tie_word_embeddings=False)


def _llava_next_video_processor(tokenizer, template):
    import transformers

    crop = {"shortest_edge": SIDE}
    return transformers.LlavaNextVideoProcessor(
        video_processor=transformers.LlavaNextVideoVideoProcessor(size=crop, crop_size=_SQUARE),
        image_processor=transformers.LlavaNextImageProcessor(
            size=crop, crop_size=_SQUARE, image_grid_pinpoints=[[SIDE, SIDE]]),
        tokenizer=tokenizer, chat_template=template, patch_size=PATCH,
        vision_feature_select_strategy="default", video_token="<video>", image_token="<image>",
        num_additional_image_tokens=1)


# ---- Video-LLaVA: CLIP towers, Llama text ----

def _video_llava_config(ids, vocab):
    import transformers

    vision = {**_VISION, "model_type": "clip_vision_model", "image_size": SIDE,
              "patch_size": PATCH, "projection_dim": VISION_HIDDEN}
    return transformers.VideoLlavaConfig(
        vision_config=vision, text_config=_text(ids, vocab, model_type="llama"),
        image_token_index=ids("<image>"), video_token_index=ids("<video>"),
        vision_feature_layer=-1, vision_feature_select_strategy="full",
        image_seq_length=(SIDE // PATCH) ** 2 + 1, video_seq_length=8 * ((SIDE // PATCH) ** 2 + 1),
        tie_word_embeddings=False)


def _video_llava_processor(tokenizer, template):
    import transformers

    crop = {"shortest_edge": SIDE}
    return transformers.VideoLlavaProcessor(
        image_processor=transformers.VideoLlavaImageProcessor(size=crop, crop_size=_SQUARE),
        video_processor=transformers.VideoLlavaVideoProcessor(size=crop, crop_size=_SQUARE),
        tokenizer=tokenizer, chat_template=template, patch_size=PATCH,
        vision_feature_select_strategy="full", num_additional_image_tokens=1)


# ---- InternVL: InternViT tower, Qwen2 text, each frame one tile ----

_INTERNVL_NAMED = {"start_image_token": "<img>", "end_image_token": "</img>",
                   "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}


def _internvl_config(ids, vocab):
    import transformers

    vision = {**_VISION, "image_size": [SIDE, SIDE], "patch_size": [PATCH, PATCH]}
    return transformers.InternVLConfig(
        vision_config=vision, text_config=_text(ids, vocab, model_type="qwen2"),
        image_token_id=ids("<IMG_CONTEXT>"), image_seq_length=1, downsample_ratio=0.5,
        tie_word_embeddings=False)


def _internvl_processor(tokenizer, template):
    import transformers

    return transformers.InternVLProcessor(
        image_processor=transformers.GotOcr2ImageProcessor(size=_SQUARE, max_patches=1),
        tokenizer=tokenizer,
        video_processor=transformers.InternVLVideoProcessor(size=_SQUARE),
        image_seq_length=1, chat_template=template)


# ---- SmolVLM: SigLIP-like tower of a fixed square, Llama text, frame timestamps ----

def _smolvlm_config(ids, vocab):
    import transformers

    vision = {**_VISION, "image_size": SIDE, "patch_size": PATCH}
    return transformers.SmolVLMConfig(
        vision_config=vision, text_config=_text(ids, vocab, model_type="llama"),
        image_token_id=ids("<image>"), scale_factor=2, pad_token_id=ids(PAD_TOKEN),
        tie_word_embeddings=False)


def _smolvlm_processor(tokenizer, template):
    import transformers

    longest = {"longest_edge": SIDE}
    return transformers.SmolVLMProcessor(
        image_processor=transformers.SmolVLMImageProcessor(
            size={"longest_edge": 2 * SIDE}, max_image_size=longest, do_image_splitting=False),
        tokenizer=tokenizer,
        video_processor=transformers.SmolVLMVideoProcessor(
            size={"longest_edge": 2 * SIDE}, max_image_size=longest),
        image_seq_len=1, chat_template=template)


# ---- GLM-4.1V: Qwen-like patches (14, merge 2, 2 frames), timestamps in the prompt ----

def _glm4v_config(ids, vocab, config_class: str = "Glm4vConfig"):
    import transformers

    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1],
            "partial_rotary_factor": 0.5}  # sections add up to half the rotary dims (8 of 16)
    vision = {"depth": 2, "hidden_size": VISION_HIDDEN, "intermediate_size": 2 * VISION_HIDDEN,
              "num_heads": 2, "image_size": SIDE, "patch_size": PATCH, "spatial_merge_size": 2,
              "temporal_patch_size": 2, "out_hidden_size": HIDDEN,
              "initializer_range": INITIALIZER_RANGE}
    return getattr(transformers, config_class)(
        text_config=_text(ids, vocab, rope_parameters=rope), vision_config=vision,
        image_token_id=ids("<|image|>"), video_token_id=ids("<|video|>"),
        image_start_token_id=ids("<|begin_of_image|>"), image_end_token_id=ids("<|end_of_image|>"),
        video_start_token_id=ids("<|begin_of_video|>"), video_end_token_id=ids("<|end_of_video|>"),
        tie_word_embeddings=False)


def _glm4v_processor(tokenizer, template, prefix: str = "Glm4v"):
    import transformers

    pixels = {"shortest_edge": 28 * 28, "longest_edge": 28 * 28 * 2 * 256}
    return getattr(transformers, f"{prefix}Processor")(
        image_processor=getattr(transformers, f"{prefix}ImageProcessor")(size=pixels),
        tokenizer=tokenizer,
        video_processor=getattr(transformers, f"{prefix}VideoProcessor")(size=pixels),
        chat_template=template)


# ---- GLM-4.6V: GLM-4.1V's towers, its own processor (timestamps as "1.5 seconds") ----

def _glm46v_config(ids, vocab):
    return _glm4v_config(ids, vocab, "Glm46VConfig")


def _glm46v_processor(tokenizer, template):
    return _glm4v_processor(tokenizer, template, "Glm46V")


# ---- VideoLLaMA3: its own patch tower (14, merge 2, one frame per patch), Qwen2 text ----

def _video_llama_3_config(ids, vocab):
    import transformers

    vision = {**_VISION, "patch_size": PATCH, "initializer_range": INITIALIZER_RANGE}
    return transformers.VideoLlama3Config(
        vision_config=vision, text_config=_text(ids, vocab, model_type="qwen2"),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        tie_word_embeddings=False)


def _video_llama_3_processor(tokenizer, template):
    import transformers

    pixels = {"shortest_edge": 28 * 28, "longest_edge": 28 * 28 * 256}
    return transformers.VideoLlama3Processor(
        image_processor=transformers.VideoLlama3ImageProcessor(size=pixels),
        tokenizer=tokenizer,
        video_processor=transformers.VideoLlama3VideoProcessor(size=pixels),
        chat_template=template)


_GLM4V_TOKENS = ("<|image|>", "<|video|>", "<|begin_of_image|>", "<|end_of_image|>",
                 "<|begin_of_video|>", "<|end_of_video|>")

TINY_FAMILIES: dict[str, TinyFamily] = {
    "llava_onevision": TinyFamily("LlavaOnevisionForConditionalGeneration", "<video>",
                                  ("<image>", "<video>"), _llava_onevision_config,
                                  _llava_onevision_processor),
    "llava_next_video": TinyFamily("LlavaNextVideoForConditionalGeneration", "<video>",
                                   ("<image>", "<video>"), _llava_next_video_config,
                                   _llava_next_video_processor),
    "video_llava": TinyFamily("VideoLlavaForConditionalGeneration", "<video>",
                              ("<image>", "<video>"), _video_llava_config,
                              _video_llava_processor),
    "internvl": TinyFamily("InternVLForConditionalGeneration", "<video>",
                           tuple(_INTERNVL_NAMED.values()), _internvl_config,
                           _internvl_processor, named=_INTERNVL_NAMED),
    "smolvlm": TinyFamily("SmolVLMForConditionalGeneration", "<video>",
                          ("<image>", "<video>", "<fake_token_around_image>", "<global-img>",
                           "<end_of_utterance>"), _smolvlm_config, _smolvlm_processor),
    "glm4v": TinyFamily("Glm4vForConditionalGeneration",
                        "<|begin_of_video|><|video|><|end_of_video|>", _GLM4V_TOKENS,
                        _glm4v_config, _glm4v_processor),
    "glm46v": TinyFamily("Glm46VForConditionalGeneration",
                         "<|begin_of_video|><|video|><|end_of_video|>", _GLM4V_TOKENS,
                         _glm46v_config, _glm46v_processor),
    "video_llama_3": TinyFamily("VideoLlama3ForConditionalGeneration", "<|video_pad|>", (),
                                _video_llama_3_config, _video_llama_3_processor),
}  # fmt: skip


