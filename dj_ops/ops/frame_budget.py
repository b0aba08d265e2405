"""The frame budget of one op process: how many tokens a video may take, from the backend's
context limit (what the prompt's text and the answer leave of it) and ``max_visual_tokens``.

The budget goes into the frame settings each video is decoded with: the decoding worker then
samples fewer frames, then smaller ones, until the video fits (:mod:`dj_ops.video.budget`), so
frames that would not be used are never decoded, and no request is sent that cannot fit.
A family whose tokens are not counted from frame sizes (CogVLM2, generic models) gets no
budget: ``max_visual_tokens`` is then ignored with a warning and the engine's own check stays.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from loguru import logger

from dj_ops.backends.base import CaptionBackend
from dj_ops.video.settings import FrameSettings


class FrameBudget:
    """Frame settings with the budget for a batch's prompts (cached per prompt).

    :param frames: the op's frame settings, sized to the backend's patch factor.
    :param backend: the loaded backend (its declared ``context_limit``, token counts and
        ``counts_visual_tokens``).
    :param system_prompt: the op's system prompt.
    """

    def __init__(self, frames: FrameSettings, backend: CaptionBackend,
                 system_prompt: str | None):
        self.frames, self.backend, self.system_prompt = frames, backend, system_prompt
        self.counted = backend.counts_visual_tokens
        self.by_prompt: dict[str, FrameSettings] = {}
        if not self.counted and frames.max_visual_tokens is not None:
            logger.warning(f"max_visual_tokens is ignored: the tokens of a "
                           f"{backend.adapter.name} model's video are not counted from its "
                           "frames")

    @property
    def active(self) -> bool:
        """Whether videos are fitted to a budget at all."""
        return self.counted and (self.frames.max_visual_tokens is not None
                                 or self.backend.context_limit is not None)

    def for_prompts(self, prompts: Iterable[str]) -> FrameSettings:
        """The settings for a batch: the budget of its longest prompt (every video of the batch
        is decoded once, whichever of its samples' prompts it is captioned with)."""
        if not self.active:
            return replace(self.frames, max_visual_tokens=None)
        budgets = [self._for_prompt(prompt) for prompt in set(prompts)]
        return min(budgets, key=lambda s: s.max_visual_tokens, default=self.frames)

    def _for_prompt(self, prompt: str) -> FrameSettings:
        if prompt not in self.by_prompt:
            self.by_prompt[prompt] = self._fitted(prompt)
        return self.by_prompt[prompt]

    def _fitted(self, prompt: str) -> FrameSettings:
        limits = [self.frames.max_visual_tokens]
        backend, context, text_per_group = self.backend, self.backend.context_limit, 0
        if context is not None:
            answer = backend.config.settings.max_new_tokens
            limits.append(context - backend.prompt_tokens(prompt, self.system_prompt) - answer)
            text_per_group = backend.frame_text_tokens()
        budget = min(limit for limit in limits if limit is not None)
        # at least 1: a budget the text alone exhausts fails every video with context_length
        return replace(self.frames, max_visual_tokens=max(1, budget),
                       frame_text_tokens=text_per_group)
