"""Stand-in remote code for CogVLM2-Llama3-Caption (tests only), written for transformers 4.42.

It implements the video interface the model card uses, not CogVLM2's network:
``build_conversation_input_ids(tokenizer, query=..., images=[CTHW uint8 video], history=[],
template_version=...)`` returning ``input_ids``, ``token_type_ids`` (1 marks a vision token),
``attention_mask`` and ``images``, and ``generate(input_ids=..., token_type_ids=...,
attention_mask=..., images=[[video]], ...)``. A tiny Llama reads each frame as
``(image_size / patch_size) ** 2`` vision tokens in place of the placeholders.

Every call is recorded under ``config.record_dir`` (``calls.jsonl``, one JSON line per call, and
the frames received as ``frames_<k>.npy``), so that tests can check what the model was given.
The templates are the stand-in's own, one per ``template_version``.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

LANGUAGE_TOKEN_TYPE, VISION_TOKEN_TYPE = 0, 1
TEMPLATES = {"chat": "Question: {query} Answer:", "base": "{query}"}


class CogVLM2StandInConfig(LlamaConfig):
    model_type = "cogvlm2_standin"

    def __init__(self, image_size: int = 28, patch_size: int = 14,
                 record_dir: str | None = None, **kwargs):
        self.image_size, self.patch_size, self.record_dir = image_size, patch_size, record_dir
        super().__init__(**kwargs)


class CogVLMVideoForCausalLM(LlamaForCausalLM):
    config_class = CogVLM2StandInConfig

    def __init__(self, config: CogVLM2StandInConfig):
        super().__init__(config)
        patch_values = 3 * config.patch_size**2
        self.vision_proj = nn.Linear(patch_values, config.hidden_size)
        self.post_init()

    @property
    def tokens_per_frame(self) -> int:
        return (self.config.image_size // self.config.patch_size) ** 2

    def _record(self, entry: dict, frames: torch.Tensor | None = None) -> None:
        folder = self.config.record_dir
        if not folder:
            return
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "calls.jsonl")
        count = sum(1 for _ in open(path)) if os.path.exists(path) else 0
        if frames is not None:
            entry["frames_file"] = f"frames_{count}.npy"
            np.save(os.path.join(folder, entry["frames_file"]), frames.cpu().numpy())
        with open(path, "a") as file:
            file.write(json.dumps(entry) + "\n")

    def build_conversation_input_ids(self, tokenizer, *, query: str, history=None, images=None,
                                     template_version: str | None = None, answer=None):
        if template_version not in TEMPLATES:
            raise ValueError(f"template_version must be one of {list(TEMPLATES)}")
        if history:
            raise ValueError("the stand-in takes no history")
        if not images or len(images) != 1:
            raise ValueError("images must hold one video")
        video = images[0]
        if video.dim() != 4 or video.shape[0] != 3 or video.dtype != torch.uint8:
            raise ValueError(f"the video must be a (C=3, T, H, W) uint8 tensor, got "
                             f"{tuple(video.shape)} {video.dtype}")
        text = TEMPLATES[template_version].format(query=query)
        text_ids = tokenizer.encode(text, add_special_tokens=False)
        vision = video.shape[1] * self.tokens_per_frame
        input_ids = [tokenizer.bos_token_id] + [tokenizer.pad_token_id] * vision + text_ids
        types = [LANGUAGE_TOKEN_TYPE] + [VISION_TOKEN_TYPE] * vision + [LANGUAGE_TOKEN_TYPE] * len(
            text_ids)
        self._record({"call": "build_conversation_input_ids", "query": query, "text": text,
                      "template_version": template_version, "history": history,
                      "video_shape": list(video.shape), "video_dtype": str(video.dtype)},
                     frames=video)
        size = self.config.image_size
        frames = F.interpolate(video.permute(1, 0, 2, 3).float(), size=(size, size),
                               mode="bilinear", align_corners=False)
        return {"input_ids": torch.tensor(input_ids), "token_type_ids": torch.tensor(types),
                "attention_mask": torch.ones(len(input_ids), dtype=torch.long),
                "images": [(frames / 127.5 - 1.0).permute(1, 0, 2, 3)]}

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """``(C, T, S, S)`` frames as ``T * tokens_per_frame`` embeddings."""
        p = self.config.patch_size
        patches = video.unfold(2, p, p).unfold(3, p, p)  # C, T, S/p, S/p, p, p
        patches = patches.permute(1, 2, 3, 0, 4, 5).reshape(-1, 3 * p * p)
        return self.vision_proj(patches.to(self.vision_proj.weight.dtype))

    def forward(self, input_ids=None, token_type_ids=None, images=None, attention_mask=None,
                position_ids=None, past_key_values=None, inputs_embeds=None, labels=None,
                use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, cache_position=None):
        if inputs_embeds is None:
            inputs_embeds = self.model.embed_tokens(input_ids)
            if images is not None and token_type_ids is not None:
                vision = token_type_ids == VISION_TOKEN_TYPE
                embeds = torch.cat([self.encode_video(sample[0]) for sample in images])
                if embeds.shape[0] != int(vision.sum()):
                    raise ValueError(f"{int(vision.sum())} vision tokens for "
                                     f"{embeds.shape[0]} frame patches")
                inputs_embeds = inputs_embeds.masked_scatter(vision.unsqueeze(-1),
                                                             embeds.to(inputs_embeds.dtype))
        return super().forward(input_ids=None, attention_mask=attention_mask,
                               position_ids=position_ids, past_key_values=past_key_values,
                               inputs_embeds=inputs_embeds, labels=labels, use_cache=use_cache,
                               output_attentions=output_attentions,
                               output_hidden_states=output_hidden_states,
                               return_dict=return_dict, cache_position=cache_position)

    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, attention_mask=None,
                                      inputs_embeds=None, cache_position=None, images=None,
                                      token_type_ids=None, **kwargs):
        inputs = super().prepare_inputs_for_generation(
            input_ids, past_key_values=past_key_values, attention_mask=attention_mask,
            inputs_embeds=inputs_embeds, cache_position=cache_position, **kwargs)
        if cache_position is None or int(cache_position[0]) == 0:  # the prefill step
            inputs.update(images=images, token_type_ids=token_type_ids)
        return inputs

    def generate(self, *args, **kwargs):
        settings = {k: v for k, v in kwargs.items()
                    if isinstance(v, (bool, int, float, str, type(None)))}
        images = kwargs.get("images")
        self._record({"call": "generate", "settings": settings,
                      "input_ids": kwargs["input_ids"].tolist(),
                      "token_type_ids": kwargs["token_type_ids"].tolist(),
                      "images_shape": [list(v.shape) for sample in images for v in sample],
                      "images_dtype": str(images[0][0].dtype)})
        return super().generate(*args, **kwargs)
