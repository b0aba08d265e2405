"""The sequential baseline: Data-Juicer's ``video_captioning_from_vlm_mapper`` (1.6.1) loop,
made to run, on the op's checkpoint loaded by transformers alone.

Data-Juicer's op handles one sample at a time and, for each video, builds the model inputs with
one processor call (the processor decodes the file; in transformers 5.23 only torchcodec can) and
then calls ``generate`` once per candidate, each call re-encoding the video and re-reading the
prompt. The baseline keeps that structure with the stock parts Data-Juicer uses: its own
``AutoProcessor`` and model from ``from_pretrained`` (same checkpoint, dtype and device as the
op's), not the op's faster processor path and patch embedding. It decodes inside the loop with
the op's PyAV decoder, every frame as FFmpeg in the processor would (no skipping of unreferenced
frames), so that both see bit-identical frames; it generates with the op's settings and prompt
template.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from data_juicer.utils.model_utils import get_model
from transformers import AutoProcessor

from bench.workload import PROMPT
from dj_ops.captioning.requests import CaptionRequest
from dj_ops.video import decode_video


@dataclass(frozen=True)
class BaselineCaption:
    """What one video cost the baseline: frames seen and tokens generated per candidate."""

    frames: int
    tokens: tuple[int, ...]
    texts: tuple[str, ...]


class SequentialBaseline:
    """One video at a time: decode, one processor call, ``generate`` once per candidate."""

    def __init__(self, op, workload):
        """Stock processor and model for the op's checkpoint; the workload's settings and
        prompt (the op's public parameters); the op's loaded backend for the chat template
        and ``generate`` settings it resolved."""
        self.backend = get_model(op.model_key, None, op.use_cuda())
        checkpoint = self.backend.config.model
        self.processor = AutoProcessor.from_pretrained(checkpoint)
        op_model = self.backend.model
        self.model = type(op_model).from_pretrained(checkpoint, dtype=op_model.dtype)
        self.model.to(op_model.device).eval()
        self.frame_settings = workload.frame_settings(self.backend.size_factor)
        self.caption_num = workload.caption_num
        self.prompt = PROMPT
        # Data-Juicer's op asks for one sequence per call and loops over candidates.
        self.generate_kwargs = {**self.backend.generate_kwargs, "num_return_sequences": 1}

    def encode(self, request: CaptionRequest):
        """The stock processor's inputs for one request, with the op's prompt template."""
        return self.backend.inputs.encode(self.processor, self.model, [request],
                                              self.backend.videos_kwargs)

    def caption(self, path: str) -> BaselineCaption:
        video = decode_video(path, self.frame_settings, skip_unreferenced=False)
        request = CaptionRequest(video.frames, video.transformers_metadata(), self.prompt)
        inputs = self.encode(request)
        prompt_length = inputs["input_ids"].shape[1]
        tokens, texts = [], []
        with torch.no_grad():  # as Data-Juicer's op
            for _ in range(self.caption_num):
                output = self.model.generate(**inputs, **self.generate_kwargs)
                new = output[:, prompt_length:]
                texts += self.processor.batch_decode(new, skip_special_tokens=True)
                tokens.append(int(new.shape[1]))
        return BaselineCaption(len(video.frames), tuple(tokens), tuple(texts))

    def process(self, paths: list[str]) -> list[BaselineCaption]:
        return [self.caption(path) for path in paths]
