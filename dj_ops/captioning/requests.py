"""What flows between the op and a backend: caption requests in, candidates or errors out.

Neutral ground: the op builds :class:`CaptionRequest` values, backends and model-family adapters
read them, and every backend answers one :class:`CaptionResult` per request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dj_ops.captioning.generation import GenerationSettings


@dataclass(frozen=True)
class CaptionRequest:
    """One video to caption: its sampled frames with their metadata, and the prompt; or, with
    no frames, a text-only request (the merge of a long video's window captions).

    :param frames: ``(T, H, W, 3)`` uint8 frames, already sampled and resized; None: no video.
    :param metadata: the frames' metadata for the processor (``fps``, ``frames_indices``, ...).
    :param prompt: the user prompt.
    :param system_prompt: an optional system prompt.
    :param video_path: the video the frames come from (for backends that can send the file).
    :param settings: this request's own generation settings (a quality-gate retry's); None:
        the backend's configured ones.
    :param attempt: 0 for a first generation, ``n`` for the ``n``-th retry: a seeded backend
        seeds it with ``seed + attempt``, so that each retry samples afresh, reproducibly.
    """

    frames: np.ndarray | None
    metadata: dict[str, Any]
    prompt: str
    system_prompt: str | None = None
    video_path: str | None = None
    model: str | None = None  # another model of the same server (openai backend); None: its own
    settings: GenerationSettings | None = None
    attempt: int = 0

    @property
    def cost(self) -> int:
        """Pixels to encode: how the collator orders requests."""
        return 0 if self.frames is None else int(np.prod(self.frames.shape[:3]))


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
    # How the transformers backend batched its video (dj_ops.adapters.needs: ``any``,
    # ``same_frame_count``, ``one_per_call``; ``split_after_error``: generated again, in a
    # smaller batch or alone, after its micro-batch failed); "" for engines and servers.
    batching: str = ""
    # The quality gate's flags of each attempt made for this candidate, in order (the last one
    # is this text's); empty when no gate checked it.
    attempts: tuple[tuple[str, ...], ...] = ()


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
