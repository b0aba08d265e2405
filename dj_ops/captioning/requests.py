"""What flows between the op and a backend: caption requests in, candidates or errors out.

Neutral ground: the op builds :class:`CaptionRequest` values, backends and model-family adapters
read them, and every backend answers one :class:`CaptionResult` per request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CaptionRequest:
    """One video to caption: its sampled frames with their metadata, and the prompt.

    :param frames: ``(T, H, W, 3)`` uint8 frames, already sampled and resized.
    :param metadata: the frames' metadata for the processor (``fps``, ``frames_indices``, ...).
    :param prompt: the user prompt.
    :param system_prompt: an optional system prompt.
    :param video_path: the video the frames come from (for backends that can send the file).
    """

    frames: np.ndarray
    metadata: dict[str, Any]
    prompt: str
    system_prompt: str | None = None
    video_path: str | None = None

    @property
    def cost(self) -> int:
        """Pixels to encode: how the collator orders requests."""
        return int(np.prod(self.frames.shape[:3]))


@dataclass(frozen=True)
class Candidate:
    """One generated caption with what the provenance record needs."""

    text: str
    num_tokens: int
    hit_token_limit: bool
    repetition_trimmed: bool = False
    # Which path decoded it: transformers' ``shared_prefix`` (the checked fast path),
    # ``generate``, or ``generate_json_schema`` (caption_format json: plain generate under the
    # schema's grammar); ``engine`` for a backend's own engine or server (vLLM, OpenAI).
    decoding: str = "engine"


@dataclass
class CaptionResult:
    """The candidates of one request, or why there are none."""

    candidates: list[Candidate] = field(default_factory=list)
    error_kind: str = ""
    error_message: str = ""

    @property
    def ok(self) -> bool:
        return not self.error_kind

    @classmethod
    def failure(cls, kind: str, message: str) -> CaptionResult:
        return cls(error_kind=kind, error_message=message)

    @classmethod
    def repeated(cls, candidates: list[Candidate], num_candidates: int) -> CaptionResult:
        """``num_candidates`` candidates from ``candidates``: greedy decoding yields one
        sequence, which stands for every candidate (repeated); ``len(candidates)`` divides
        ``num_candidates``.

        >>> [c.text for c in CaptionResult.repeated([Candidate("a", 1, False)], 3).candidates]
        ['a', 'a', 'a']
        """
        if not candidates or num_candidates % len(candidates):
            raise ValueError(f"{len(candidates)} candidates cannot stand for {num_candidates}")
        return cls(list(candidates) * (num_candidates // len(candidates)))
