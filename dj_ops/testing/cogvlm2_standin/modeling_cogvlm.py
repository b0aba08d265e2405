"""Stand-in remote code for CogVLM2-Llama3-Caption (tests only), written for transformers 4.42.

Not CogVLM2's network: a tiny Llama that reads a tiny vision tower's output. What it keeps of
the real remote code (``modeling_cogvlm.py``, ``visual.py`` of ``THUDM/cogvlm2-llama3-caption``)
is its interface, restated here on purpose rather than imported from dj_ops, so that the tests
compare dj_ops' account of the interface (``dj_ops/adapters/cogvlm2_interface.py``) with an
independent implementation of it:

- the same top-level imports (einops, numpy, pytorchvideo's ``ShortSideScale``, torchvision's
  video transforms, transformers), but not triton: the stand-in runs on CPU;
- ``build_conversation_input_ids(tokenizer, query=..., history=[], images=[CTHW video],
  template_version=...)``: the frames scaled by 1/255, CLIP-normalised, short side scaled to
  ``image_size`` and centre-cropped (these library transforms, in this order: ``ShortSideScale``
  asserts float32, so the video must arrive as uint8); ``[bos]``, then per frame one placeholder
  per vision embedding (``(image_size / patch_size / 2) ** 2 + 2``: 66 at 224 px, patch 14)
  followed, for ``chat`` only, by the tokens of the frame's index; then ``Question: {query}
  Answer:`` (``chat``) or the query (``base``); the placeholders are the pad id the code sets
  (``tokenizer.pad_token_id = 128002``), embedded, so the vocabulary must reach it;
- position ids: a vision run's first and last tokens (begin/end of image) take a position each,
  the tokens between share one;
- the generation hook's signature (``standardize_cache_format``, passed on to
  ``_extract_past_from_model_output``), which ties the code to transformers 4.42.x.

Every call is recorded under ``config.record_dir`` (``calls.jsonl``, one JSON line per call, and
the frames received as ``frames_<k>.npy``), so that tests can check what the model was given.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from einops import rearrange
from pytorchvideo.transforms import ShortSideScale
from torch import nn
from torchvision import transforms
from torchvision.transforms._transforms_video import CenterCropVideo, NormalizeVideo
from transformers import LlamaForCausalLM

from .configuration_cogvlm import CogVLMConfig

LANGUAGE_TOKEN_TYPE, VISION_TOKEN_TYPE = 0, 1
PAD_TOKEN_ID = 128002
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
TEMPLATES = {"chat": "Question: {query} Answer:", "base": "{query}"}


def build_position_ids(token_type_ids: torch.Tensor,
                       attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Each token's position: the next one for text and for the first and last token of a
    vision run; one shared position for the tokens between; none for padding."""
    types = token_type_ids.clone()
    if attention_mask is not None:
        types[attention_mask == 0] = -1
    vision = types == VISION_TOKEN_TYPE
    inner = (vision & nn.functional.pad(vision[:, :-1], (1, 0), value=False)
             & nn.functional.pad(vision[:, 1:], (0, 1), value=False))
    shares = inner & nn.functional.pad(inner[:, :-1], (1, 0), value=False)
    steps = ((types >= 0) & ~shares).long()
    steps[:, 0] = 0
    return steps.cumsum(-1)


class VisionTower(nn.Module):
    """``(T, 3, S, S)`` frames to ``(T, (S / patch / 2) ** 2 + 2, hidden)`` embeddings: patches,
    a 2x2 merge, begin- and end-of-image embeddings around them (the real tower's output
    layout, without its transformer)."""

    def __init__(self, config: CogVLMConfig):
        super().__init__()
        vision = config.vision_config
        width, patch = vision["hidden_size"], vision["patch_size"]
        self.patches = nn.Conv2d(3, width, kernel_size=patch, stride=patch)
        self.merge = nn.Conv2d(width, width, kernel_size=2, stride=2)
        self.proj = nn.Linear(width, config.hidden_size)
        self.boi = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.eoi = nn.Parameter(torch.zeros(1, 1, config.hidden_size))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        grid = self.merge(self.patches(frames.to(self.proj.weight.dtype)))
        x = self.proj(rearrange(grid, "t d h w -> t (h w) d"))
        return torch.cat([self.boi.expand(len(x), -1, -1), x,
                          self.eoi.expand(len(x), -1, -1)], dim=1)


class CogVLMVideoForCausalLM(LlamaForCausalLM):
    config_class = CogVLMConfig

    def __init__(self, config: CogVLMConfig):
        super().__init__(config)
        self.vision = VisionTower(config)
        self.post_init()

    @property
    def tokens_per_frame(self) -> int:
        vision = self.config.vision_config
        return (vision["image_size"] // vision["patch_size"] // 2) ** 2 + 2

    def _record(self, entry: dict, frames: torch.Tensor | None = None) -> None:
        folder = self.config.record_dir
        if not folder:
            return
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "calls.jsonl")
        count = sum(1 for _ in open(path)) if os.path.exists(path) else 0
        if frames is not None:
            entry["frames_file"] = f"frames_{count}.npy"
            saved = frames.cpu().float() if frames.is_floating_point() else frames.cpu()
            np.save(os.path.join(folder, entry["frames_file"]), saved.numpy())
        with open(path, "a") as file:
            file.write(json.dumps(entry) + "\n")

    def build_conversation_input_ids(self, tokenizer, *, query: str, history=None, images=None,
                                     template_version: str | None = None, answer=None):
        template_version = template_version or self.config.template_version
        if template_version not in TEMPLATES:
            raise ValueError(f"template_version must be one of {list(TEMPLATES)}")
        if history or answer is not None or not images or len(images) != 1:
            raise ValueError("the stand-in takes one video, no history and no answer")
        video = images[0]
        text = TEMPLATES[template_version].format(query=query)
        self._record({"call": "build_conversation_input_ids", "query": query, "text": text,
                      "template_version": template_version, "history": history,
                      "video_shape": list(video.shape), "video_dtype": str(video.dtype)},
                     frames=video)
        size = self.config.vision_config["image_size"]
        frames = transforms.Compose([
            transforms.Lambda(lambda x: x / 255.0), NormalizeVideo(CLIP_MEAN, CLIP_STD),
            ShortSideScale(size), CenterCropVideo(size)])(video).transpose(0, 1)
        tokenizer.pad_token_id = PAD_TOKEN_ID
        ids, types = [tokenizer.bos_token_id], [LANGUAGE_TOKEN_TYPE]
        for index in range(len(frames)):
            ids += [tokenizer.pad_token_id] * self.tokens_per_frame
            types += [VISION_TOKEN_TYPE] * self.tokens_per_frame
            if template_version == "chat":
                time_ids = tokenizer.encode(str(index), add_special_tokens=False)
                ids, types = ids + time_ids, types + [LANGUAGE_TOKEN_TYPE] * len(time_ids)
        text_ids = tokenizer.encode(text, add_special_tokens=False)
        ids, types = ids + text_ids, types + [LANGUAGE_TOKEN_TYPE] * len(text_ids)
        return {"input_ids": torch.tensor(ids), "token_type_ids": torch.tensor(types),
                "attention_mask": torch.ones(len(ids), dtype=torch.long), "images": [frames],
                "labels": None}

    def _embed(self, input_ids, images, token_type_ids, position_ids) -> torch.Tensor:
        """The prompt's embeddings, the video's in place of its placeholders (prefill)."""
        embeds = self.model.embed_tokens(input_ids)
        vision = token_type_ids == VISION_TOKEN_TYPE
        features = rearrange(self.vision(images[0][0]), "t n d -> (t n) d")
        if features.shape[0] != int(vision.sum()):
            raise ValueError(f"{int(vision.sum())} vision tokens for {features.shape[0]} "
                             f"vision embeddings")
        self._record({"call": "prefill", "position_ids": position_ids.tolist(),
                      "pad_tokens_embedded": int((input_ids == PAD_TOKEN_ID).sum())})
        return embeds.index_put([vision], features.to(embeds.dtype))

    def forward(self, input_ids=None, images=None, token_type_ids=None, attention_mask=None,
                position_ids=None, past_key_values=None, inputs_embeds=None, use_cache=None,
                output_attentions=None, output_hidden_states=None, return_dict=None,
                labels=None, cache_position=None):
        if position_ids is None:
            position_ids = build_position_ids(token_type_ids, attention_mask)
        if inputs_embeds is None and not past_key_values and images:
            inputs_embeds = self._embed(input_ids, images, token_type_ids, position_ids)
        elif inputs_embeds is None:
            inputs_embeds = self.model.embed_tokens(input_ids)
        return super().forward(input_ids=None, attention_mask=attention_mask,
                               position_ids=position_ids, past_key_values=past_key_values,
                               inputs_embeds=inputs_embeds, labels=labels, use_cache=use_cache,
                               output_attentions=output_attentions,
                               output_hidden_states=output_hidden_states,
                               return_dict=return_dict, cache_position=cache_position)

    def prepare_inputs_for_generation(self, input_ids, token_type_ids, images=None,
                                      past_key_values=None, attention_mask=None,
                                      inputs_embeds=None, **kwargs):
        position_ids = kwargs.get("position_ids")
        if position_ids is None:
            position_ids = build_position_ids(token_type_ids, attention_mask)
        if past_key_values:
            input_ids, token_type_ids = input_ids[:, -1:], token_type_ids[:, -1:]
            position_ids = position_ids[:, -1:]
        return {"input_ids": input_ids, "token_type_ids": token_type_ids, "images": images,
                "position_ids": position_ids, "past_key_values": past_key_values,
                "use_cache": kwargs.get("use_cache"), "attention_mask": attention_mask}

    def _update_model_kwargs_for_generation(self, outputs, model_kwargs, is_encoder_decoder=False,
                                            standardize_cache_format=False):
        cache_name, cache = self._extract_past_from_model_output(
            outputs, standardize_cache_format=standardize_cache_format)
        model_kwargs[cache_name] = cache
        types = model_kwargs["token_type_ids"]
        model_kwargs["token_type_ids"] = torch.cat(
            [types, torch.full_like(types[:, :1], LANGUAGE_TOKEN_TYPE)], dim=-1)
        mask = model_kwargs["attention_mask"]
        model_kwargs["attention_mask"] = torch.cat([mask, mask.new_ones((len(mask), 1))], dim=-1)
        return model_kwargs

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
