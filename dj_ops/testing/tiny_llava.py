"""A tiny random-weight LLaVA-OneVision checkpoint (SigLIP vision, Qwen2 text), built offline.

A model family outside every allowlist of the project: it reaches the generic adapter (its own
chat template with a ``{"type": "video"}`` part, ``AutoProcessor``,
``AutoModelForImageTextToText``) and must be captioned by plain ``generate``, since the
transformers backend's speed-ups were not checked on it. Its frames are resized by its own
processor to the vision tower's square size (``model_params.processor_kwargs``, see
:data:`PROCESSOR_KWARGS`). The tokenizer is the Qwen tiny models' (same corpus) plus LLaVA's
``<image>`` and ``<video>`` tokens.
"""

from __future__ import annotations

from pathlib import Path

from dj_ops.testing.tiny_models import (
    EOS_TOKEN,
    INITIALIZER_RANGE,
    PAD_TOKEN,
    _build_tokenizer,
    _muted_token_ids,
    _progress_bars_off,
)

FAMILY = "llava_onevision"
IMAGE_SIZE = 28  # the SigLIP tower's square input: two 14-pixel patches a side
PATCH_SIZE = 14
IMAGE_TOKEN, VIDEO_TOKEN = "<image>", "<video>"
# What the op passes to this processor: let it resize the op's frames to the tower's size.
PROCESSOR_KWARGS = {"do_resize": True}
CHAT_TEMPLATE = (
    "{%- for message in messages -%}{{- '<|im_start|>' + message.role + '\\n' -}}"
    "{%- if message.content is string -%}{{- message.content -}}{%- else -%}"
    "{%- for content in message.content -%}"
    "{%- if content.type == 'video' -%}<video>{%- elif content.type == 'image' -%}<image>"
    "{%- elif 'text' in content -%}{{- content.text -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}{{- '<|im_end|>\\n' -}}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def _build_processor(tokenizer):
    import transformers

    size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    image_processor = transformers.LlavaOnevisionImageProcessor(
        size=size, image_grid_pinpoints=[[IMAGE_SIZE, IMAGE_SIZE]])
    video_processor = transformers.LlavaOnevisionVideoProcessor(size=size)
    return transformers.LlavaOnevisionProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
        chat_template=CHAT_TEMPLATE, num_image_tokens=(IMAGE_SIZE // PATCH_SIZE) ** 2,
        vision_feature_select_strategy="full", image_token=IMAGE_TOKEN, video_token=VIDEO_TOKEN)


def _build_model(tokenizer, seed: int):
    import torch
    import transformers

    ids = tokenizer.convert_tokens_to_ids
    pad_id, eos_id = ids(PAD_TOKEN), ids(EOS_TOKEN)
    vision = {"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64,
              "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": IMAGE_SIZE,
              "patch_size": PATCH_SIZE}
    text = {"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "vocab_size": len(tokenizer), "max_position_embeddings": 4096,
            "initializer_range": INITIALIZER_RANGE, "bos_token_id": pad_id,
            "eos_token_id": eos_id, "pad_token_id": pad_id}
    config = transformers.LlavaOnevisionConfig(
        vision_config=vision, text_config=text, image_token_id=ids(IMAGE_TOKEN),
        video_token_id=ids(VIDEO_TOKEN), vision_feature_layer=-1,
        vision_feature_select_strategy="full", image_grid_pinpoints=[[IMAGE_SIZE, IMAGE_SIZE]],
        tie_word_embeddings=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.LlavaOnevisionForConditionalGeneration(config).eval()
    muted = _muted_token_ids(tokenizer) + [ids(IMAGE_TOKEN), ids(VIDEO_TOKEN)]
    with torch.no_grad():
        model.lm_head.weight[muted] = 0.0
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=pad_id, eos_token_id=[eos_id, pad_id], pad_token_id=pad_id, do_sample=False)
    return model


def build_tiny_llava(out_dir: str | Path, seed: int = 0) -> str:
    """Write the checkpoint into ``out_dir`` (a new or empty folder) and return its path."""
    out_dir = Path(out_dir)
    tokenizer = _build_tokenizer(CHAT_TEMPLATE)
    tokenizer.add_tokens([IMAGE_TOKEN, VIDEO_TOKEN], special_tokens=True)
    with _progress_bars_off():
        _build_processor(tokenizer).save_pretrained(out_dir)
        _build_model(tokenizer, seed).save_pretrained(out_dir)
    return str(out_dir)
