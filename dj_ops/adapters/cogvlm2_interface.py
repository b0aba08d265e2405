"""CogVLM2-Llama3-Caption's input interface, written once for dj_ops' transformers backend and
for the caption server: ``servers/cogvlm2`` links this file into its package (as it does
``dj_ops/video/sampling.py``; its wheel holds a copy), so it imports nothing of dj_ops, and
torch only inside functions.

Facts of the real remote code (``modeling_cogvlm.py`` of ``THUDM/cogvlm2-llama3-caption``,
``CogVLMVideoForCausalLM.build_conversation_input_ids`` and ``_history_to_prompt``):

- the video is one ``(C, T, H, W)`` tensor whose division by 255 must give float32 (uint8);
- the prompt is ``[bos]``, then per frame 66 vision placeholders (``64 + 2``: 8x8 patches and
  the begin/end-of-image tokens, written as a constant there: a 224 px, patch 14 tower), each
  followed, for ``template_version='chat'`` only, by the tokens of the frame's index
  (``tokenizer.encode(str(i))``), then the text: ``Question: {query} Answer:`` (``chat``) or the
  query alone (``base``);
- the placeholders are ``tokenizer.pad_token_id``, which the code sets to 128002 and embeds, and
  ``generate`` takes the same id as ``pad_token_id`` (the model card's);
- positions (``build_position_ids``): every text token takes the next one; in a run of vision
  tokens the first and the last do too and all between share one. With ``chat`` each frame is
  its own run (3 positions); with ``base`` the frames follow each other and form one run.
"""

from __future__ import annotations

from typing import Any

PAD_TOKEN_ID = 128002
TEMPLATE_VERSIONS = ("chat", "base")  # also the names of the model card's frame strategies
VISION_TOKENS_PER_FRAME = 64 + 2
POSITIONS_PER_VISION_RUN = 3  # begin of image, the tokens between, end of image
PROMPT_TEMPLATES = {"chat": "Question: {query} Answer:", "base": "{query}"}
INPUT_KEYS = ("input_ids", "token_type_ids", "attention_mask")


def query_text(prompt: str, system_prompt: str | None = None) -> str:
    """The remote code's query: its template has no system turn, so a system prompt is the
    query's first line."""
    return f"{system_prompt}\n{prompt}" if system_prompt else prompt


def to_cthw(frames):
    """``(T, H, W, C)`` uint8 frames (numpy) as the ``(C, T, H, W)`` uint8 tensor the model
    takes."""
    import numpy as np
    import torch

    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)


def generate_inputs(model, tokenizer, query: str, video, template_version: str,
                    dtype) -> dict[str, Any]:
    """``generate`` inputs for one video, as the model card builds them: the model's own
    ``build_conversation_input_ids`` on the ``(C, T, H, W)`` uint8 ``video``, a batch of one
    on the model's device, the frames cast to ``dtype``.

    :raises ValueError: for a template version the model does not know, or a video that is
        not uint8 (the remote code would fail deep inside, or compute on wrong values).
    """
    if template_version not in TEMPLATE_VERSIONS:
        raise ValueError(f"template_version must be one of {list(TEMPLATE_VERSIONS)}, "
                         f"got {template_version!r}")
    if str(video.dtype) != "torch.uint8" or video.dim() != 4:
        raise ValueError(f"the video must be a (C, T, H, W) uint8 tensor, got "
                         f"{tuple(video.shape)} {video.dtype}")
    built = model.build_conversation_input_ids(tokenizer=tokenizer, query=query,
                                               images=[video], history=[],
                                               template_version=template_version)
    device = model.device
    batch = {key: built[key].unsqueeze(0).to(device) for key in INPUT_KEYS}
    batch["images"] = [[built["images"][0].to(device, dtype)]]
    return batch


def prompt_token_count(tokenizer, num_frames: int, query: str, template_version: str) -> int:
    """The prompt's length as ``build_conversation_input_ids`` makes it (see the module)."""
    text = PROMPT_TEMPLATES[template_version].format(query=query)
    count = 1 + num_frames * VISION_TOKENS_PER_FRAME
    if template_version == "chat":
        count += sum(len(tokenizer.encode(str(i), add_special_tokens=False))
                     for i in range(num_frames))
    return count + len(tokenizer.encode(text, add_special_tokens=False))


def prompt_position_count(tokenizer, num_frames: int, query: str, template_version: str) -> int:
    """How many positions the prompt spans as ``build_position_ids`` numbers it (see the
    module): about 110 for 24 frames with ``chat``."""
    runs = num_frames if template_version == "chat" else min(num_frames, 1)
    return (prompt_token_count(tokenizer, num_frames, query, template_version)
            - num_frames * VISION_TOKENS_PER_FRAME + runs * POSITIONS_PER_VISION_RUN)
