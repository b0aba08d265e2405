"""Hugging Face transformers backend: batched, left-padded ``generate`` on CPU or GPU.

All requests of an op batch are cut into micro-batches (most expensive first); in each, every
video is preprocessed and prefilled alone, once (``prefill``), then one ``generate`` call decodes
the ``num_candidates`` candidates of every video at once.
"""

from __future__ import annotations

import torch
import transformers

from dj_ops.backends.base import (
    BackendConfig,
    Candidate,
    CaptionBackend,
    CaptionRequest,
    CaptionResult,
)
from dj_ops.backends.prefill import generate_from_separate_prefills, supports_separate_prefill
from dj_ops.captioning.batching import run_in_micro_batches
from dj_ops.captioning.generation import to_hf_generate_kwargs

# model_params key holding video-processor options; the other keys go to ``from_pretrained``.
PROCESSOR_KWARGS_KEY = "processor_kwargs"


def pick_dtype(device: str) -> torch.dtype:
    """bf16 on GPUs of compute capability >= 8, fp16 on older GPUs, fp32 on CPU."""
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return torch.float32
    major, _ = torch.cuda.get_device_capability(torch.device(device))
    return torch.bfloat16 if major >= 8 else torch.float16


def build_messages(request: CaptionRequest) -> list[dict]:
    """Chat messages for one request: optional system turn, then the video and the prompt."""
    messages = []
    if request.system_prompt:
        system = [{"type": "text", "text": request.system_prompt}]
        messages.append({"role": "system", "content": system})
    messages.append(
        {
            "role": "user",
            "content": [{"type": "video"}, {"type": "text", "text": request.prompt}],
        }
    )
    return messages


class TransformersBackend(CaptionBackend):
    """Captions with ``AutoModelForImageTextToText`` and the model's own processor."""

    name = "transformers"

    def __init__(self, config: BackendConfig, device: str = "cpu"):
        super().__init__(config, device)
        params = dict(config.model_params)
        # Frames arrive sampled and sized by us: the processor must neither resample them (Qwen3-VL
        # would index past the frames it was given) nor resize them (its default minimum size
        # upscales small frames). User options may override.
        self.videos_kwargs = {"do_sample_frames": False, "do_resize": False,
                              "cap_pixels_per_frame": False,
                              **(params.pop(PROCESSOR_KWARGS_KEY, None) or {})}
        params.setdefault("dtype", pick_dtype(device))
        self.processor = transformers.AutoProcessor.from_pretrained(config.model)
        self.processor.tokenizer.padding_side = "left"
        self.model = transformers.AutoModelForImageTextToText.from_pretrained(
            config.model, **params
        ).to(device)
        self.model.eval()
        self.generate_kwargs = to_hf_generate_kwargs(config.settings, config.num_candidates)
        if "stop_strings" in self.generate_kwargs:
            self.generate_kwargs["tokenizer"] = self.processor.tokenizer
        self.eos_ids = self._eos_ids()
        # Each prompt is prefilled alone and once, then all are decoded together (see prefill).
        self.separate_prefill = supports_separate_prefill(self.model)
        video_processor = self.processor.video_processor
        self.size_factor = int(video_processor.patch_size * video_processor.merge_size)

    @classmethod
    def check_config(cls, config: BackendConfig) -> None:
        try:
            transformers.AutoConfig.from_pretrained(config.model)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"hf_model={config.model!r} cannot be loaded: {error}. Give a local checkpoint "
                "folder or a Hugging Face model id (downloaded or reachable)."
            ) from error

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        if self.processor.tokenizer.eos_token_id is not None:
            eos.append(self.processor.tokenizer.eos_token_id)
        return set(eos)

    def to(self, device: str) -> TransformersBackend:
        """Move the model (Data-Juicer's ``free_models`` calls this)."""
        self.model.to(device)
        return self

    def generate(self, requests: list[CaptionRequest]) -> list[CaptionResult]:
        return run_in_micro_batches(
            requests,
            [r.cost for r in requests],
            self.config.batch_size,
            self._generate_micro_batch,
        )

    def encode(self, requests: list[CaptionRequest]) -> dict:
        """Tokenise prompts and preprocess frames for one micro-batch (left padded)."""
        texts = [
            self.processor.apply_chat_template(
                build_messages(r), tokenize=False, add_generation_prompt=True
            )
            for r in requests
        ]
        return self.processor(
            text=texts,
            videos=[r.frames for r in requests],
            video_metadata=[r.metadata for r in requests],
            videos_kwargs=self.videos_kwargs,
            padding=True,
            return_tensors="pt",
        ).to(self.device)

    @torch.inference_mode()
    def _generate_micro_batch(self, requests: list[CaptionRequest]) -> list[CaptionResult]:
        if self.config.seed is not None:
            torch.manual_seed(self.config.seed)
        k = self.generate_kwargs["num_return_sequences"]
        if self.separate_prefill:
            prompts = [self.encode([request]) for request in requests]
            output, prompt_length = generate_from_separate_prefills(
                self.model, prompts, k, self.generate_kwargs, self.processor.tokenizer.pad_token_id
            )
        else:
            inputs = self.encode(requests)
            output = self.model.generate(**inputs, **self.generate_kwargs)
            prompt_length = inputs["input_ids"].shape[1]
        new_tokens = output[:, prompt_length:]
        repeat = self.config.num_candidates // k  # greedy: one sequence stands for all candidates
        return [
            CaptionResult([self._candidate(row) for row in new_tokens[i * k : (i + 1) * k]]
                          * repeat)
            for i in range(len(requests))
        ]

    def _candidate(self, token_ids: torch.Tensor) -> Candidate:
        ids = token_ids.tolist()
        pad = self.processor.tokenizer.pad_token_id
        while ids and ids[-1] == pad and pad not in self.eos_ids:
            ids.pop()
        ended = any(t in self.eos_ids for t in ids)
        if ended:
            ids = ids[: next(i for i, t in enumerate(ids) if t in self.eos_ids)]
        text = self.processor.tokenizer.decode(ids, skip_special_tokens=True).strip()
        max_tokens = self.generate_kwargs["max_new_tokens"]
        hit_limit = not ended and len(ids) >= max_tokens
        return Candidate(text, num_tokens=len(ids), hit_token_limit=hit_limit)
