"""Model FLOPs of captioning one video with a Qwen2.5-VL-shaped model, from its config.

Counted as the work the model must do, once: the vision tower over the video's patches, one
prefill of the prompt, and every generated token of every candidate (a multiply-add is 2 FLOPs;
norms, activations and rotary embeddings are left out). The baseline's repeated prefills are not
counted as useful work, so both modes are divided into the same FLOPs and their fractions of
the peak rate compare as their speeds do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Peak dense bf16 tensor-core rates (TFLOP/s), by a substring of torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def peak_bf16_tflops(device_name: str) -> float | None:
    """The peak dense bf16 rate of the named GPU, None when unknown.

    >>> peak_bf16_tflops("NVIDIA H100 80GB HBM3")
    989.0
    """
    return next((rate for key, rate in PEAK_BF16_TFLOPS.items() if key in device_name), None)


def text_params_per_token(text: dict[str, Any], vocab_size: int) -> int:
    """Weights a token's activations meet in the language model (attention projections, gated
    MLP, output head), biases left out."""
    hidden, inter = text["hidden_size"], text["intermediate_size"]
    head_dim = text.get("head_dim") or hidden // text["num_attention_heads"]
    q = hidden * text["num_attention_heads"] * head_dim
    kv = 2 * hidden * text["num_key_value_heads"] * head_dim
    o = text["num_attention_heads"] * head_dim * hidden
    per_layer = q + kv + o + 3 * hidden * inter
    return text["num_hidden_layers"] * per_layer + hidden * vocab_size


def vision_params_per_patch(vision: dict[str, Any]) -> int:
    """Weights a patch meets in the vision tower: patch embedding, blocks (qkv, projection, gated
    MLP) and its share of the merger (spatial_merge_size**2 patches per merged token)."""
    dim, inter = vision["hidden_size"], vision["intermediate_size"]
    embed = 3 * vision["temporal_patch_size"] * vision["patch_size"] ** 2 * dim
    block = 3 * dim * dim + dim * dim + 3 * dim * inter
    merged = dim * vision["spatial_merge_size"] ** 2
    merger = (merged * merged + merged * vision["out_hidden_size"]) // vision[
        "spatial_merge_size"] ** 2
    return embed + vision["depth"] * block + merger


@dataclass(frozen=True)
class VideoPrompt:
    """The sizes one video's prompt has: its patch grid and its token count."""

    grid_t: int
    grid_h: int
    grid_w: int
    prompt_tokens: int

    @property
    def patches(self) -> int:
        return self.grid_t * self.grid_h * self.grid_w


def _attention_flops(layers: int, width: int, queries: int, keys_seen: float) -> float:
    """QK^T and AV: 2 matmuls of ``queries x keys_seen x width`` per layer, 2 FLOPs each."""
    return 4.0 * layers * width * queries * keys_seen


def vision_flops(vision: dict[str, Any], video: VideoPrompt) -> float:
    """The vision tower over one video (attention within each temporal slice of the grid; the
    windowed layers attend to less, so this is an upper bound for them)."""
    slice_patches = video.grid_h * video.grid_w
    attention = _attention_flops(vision["depth"], vision["hidden_size"], video.patches,
                                 slice_patches)
    return 2.0 * vision_params_per_patch(vision) * video.patches + attention


def caption_flops(config: dict[str, Any], video: VideoPrompt, candidates: int,
                  new_tokens: int) -> float:
    """Vision once, prefill once, then ``candidates * new_tokens`` generated tokens."""
    text, vision = config["text_config"], config["vision_config"]
    params = text_params_per_token(text, config["vocab_size"])
    width = text["num_attention_heads"] * (
        text.get("head_dim") or text["hidden_size"] // text["num_attention_heads"])
    layers, prompt = text["num_hidden_layers"], video.prompt_tokens
    prefill = 2.0 * params * prompt + _attention_flops(layers, width, prompt, (prompt + 1) / 2)
    mean_context = prompt + (new_tokens + 1) / 2
    decode = candidates * new_tokens * (
        2.0 * params + _attention_flops(layers, width, 1, mean_context))
    return vision_flops(vision, video) + prefill + decode
