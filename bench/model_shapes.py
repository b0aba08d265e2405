"""Random-weight checkpoints with the shape of real models, built locally (no download).

The tokenizer, processor and chat template come from ``dj_ops.testing.tiny_models`` (its
Qwen2.5-VL build); the model is built from the hand-written config below, with the token ids of
that tokenizer and the real vocabulary size. Ids past the tokenizer's would decode to nothing:
their output-head rows are zeroed and the others scaled up, so sampled captions are text.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

# Qwen/Qwen2.5-VL-7B-Instruct's public config.json, shape-relevant values.
QWEN2_5_VL_7B: dict[str, Any] = {
    "vocab_size": 152064,
    "text_config": {
        "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
        "num_attention_heads": 28, "num_key_value_heads": 4, "hidden_act": "silu",
        "max_position_embeddings": 128000, "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6,
                            "mrope_section": [16, 24, 24]},
    },
    "vision_config": {
        "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
        "hidden_act": "silu", "in_chans": 3, "out_hidden_size": 3584, "patch_size": 14,
        "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2,
    },
}  # fmt: skip

# The same layout, small enough to run the GPU script's code path on a CPU.
SMOKE: dict[str, Any] = {
    "vocab_size": 1024,
    "text_config": {**QWEN2_5_VL_7B["text_config"], "hidden_size": 128, "intermediate_size": 256,
                    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                    "rope_parameters": {"rope_type": "default", "rope_theta": 1e6,
                                        "mrope_section": [4, 6, 6]}},
    "vision_config": {**QWEN2_5_VL_7B["vision_config"], "depth": 2, "hidden_size": 64,
                      "intermediate_size": 128, "num_heads": 2, "out_hidden_size": 128,
                      "fullatt_block_indexes": [1]},
}  # fmt: skip

SHAPES = {"qwen2_5_vl_7b": QWEN2_5_VL_7B, "smoke": SMOKE}
# Makes the tokenizer's own ids win over the zeroed rest of the vocabulary, sampling included.
OWN_TOKEN_WEIGHT_SCALE = 20.0


def _model_config(shape: dict[str, Any], tokenizer):
    import transformers

    ids = tokenizer.convert_tokens_to_ids
    pad, eos = ids("<|endoftext|>"), ids("<|im_end|>")
    text = {**shape["text_config"], "vocab_size": shape["vocab_size"], "bos_token_id": pad,
            "eos_token_id": eos, "pad_token_id": pad}
    return transformers.Qwen2_5_VLConfig(
        text_config=text, vision_config=shape["vision_config"],
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )  # fmt: skip


def build_shaped_checkpoint(name: str, out_dir: Path, device: str, dtype: str) -> str:
    """Write a random-weight checkpoint of shape ``name`` (a key of ``SHAPES``) to ``out_dir``
    (reused when its config is already there) and return its path."""
    import torch
    import transformers

    from dj_ops.testing.tiny_models import build_tiny_model

    out_dir = Path(out_dir)
    if (out_dir / "model.safetensors.index.json").is_file() or (
            out_dir / "model.safetensors").is_file():
        return str(out_dir)
    tiny = build_tiny_model("qwen2_5_vl", out_dir.with_name(out_dir.name + "-tokenizer"))
    processor = transformers.AutoProcessor.from_pretrained(tiny)
    config = _model_config(SHAPES[name], processor.tokenizer)
    with torch.device(device):
        model = transformers.Qwen2_5_VLForConditionalGeneration._from_config(
            config, dtype=getattr(torch, dtype))
    with torch.no_grad():
        head = model.lm_head.weight
        head[len(processor.tokenizer):] = 0.0
        head[: len(processor.tokenizer)] *= OWN_TOKEN_WEIGHT_SCALE
    model.generation_config = transformers.GenerationConfig(
        eos_token_id=config.text_config.eos_token_id, pad_token_id=config.text_config.pad_token_id,
        do_sample=False)
    shutil.rmtree(out_dir, ignore_errors=True)
    processor.save_pretrained(out_dir)
    model.save_pretrained(out_dir)
    return str(out_dir)
