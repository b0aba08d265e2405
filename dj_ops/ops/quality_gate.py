"""The quality gate in the op: every candidate checked, failing ones generated again.

After a backend answers a request, each candidate gets the flags of
:func:`dj_ops.captioning.quality.quality_flags` (an empty tuple passes). While a request has a
failing candidate and retries are left (``max_retries``), the request is generated again with
the retry sampling (:func:`~dj_ops.captioning.quality.retry_settings`, seeded ``seed +
attempt``) and only its failing candidates are replaced, each by the new candidate at its
index. Every candidate carries the flags of each attempt made for it
(``Candidate.attempts``, the last one its own). What still fails after the retries is kept
with its flags (``on_low_quality: keep``) or makes the video a ``low_quality`` error
(``error``).

The same :meth:`QualityGate.after` serves both call paths: the micro-batch path
(:meth:`QualityGate.generate`, one backend call per attempt for the failing requests of a
group) and the continuous path (``ops/streaming.py`` hands a retry back to its queue).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from dj_ops.backends.base import CaptionBackend, CaptionRequest, CaptionResult
from dj_ops.captioning.generation import GenerationSettings
from dj_ops.captioning.quality import (
    DEFAULT_THRESHOLDS,
    QualityThresholds,
    quality_flags,
    retry_settings,
)
from dj_ops.captioning.requests import Candidate

LOW_QUALITY = "low_quality"  # the error kind of a video whose candidates failed every attempt
ON_LOW_QUALITY = ("keep", "error")
# Retries are asked for, not on by default: a retry costs a generation per failing candidate
# and samples (a greedy run's failing captions become sampled ones); the flags are recorded
# always, so a run shows its failure rate before one chooses to pay for retries.
DEFAULT_MAX_RETRIES = 0
THRESHOLD_KEYS = tuple(f.name for f in fields(QualityThresholds))


def parse_thresholds(values: dict[str, Any] | None) -> QualityThresholds:
    """The op's ``quality_thresholds`` dict as :class:`QualityThresholds` (unset keys keep
    their defaults).

    :raises ValueError: on unknown keys (naming the valid ones) or out-of-range values.
    """
    values = dict(values or {})
    unknown = sorted(set(values) - set(THRESHOLD_KEYS))
    if unknown:
        raise ValueError(f"unknown quality_thresholds key(s) {unknown}; valid keys are "
                         f"{list(THRESHOLD_KEYS)}")
    if "refusal_phrases" in values:
        phrases = values["refusal_phrases"]
        values["refusal_phrases"] = (phrases,) if isinstance(phrases, str) else tuple(phrases)
    return QualityThresholds(**values)


@dataclass(frozen=True, kw_only=True)
class GateConfig:
    """The gate's parameters: retries per request, what a candidate failing every attempt
    becomes, the thresholds, and the JSON schema in json mode (None: text mode)."""

    max_retries: int = DEFAULT_MAX_RETRIES
    on_low_quality: str = "keep"
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS
    schema: dict[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.on_low_quality not in ON_LOW_QUALITY:
            raise ValueError(f"on_low_quality={self.on_low_quality!r} is not supported; "
                             f"choose one of {list(ON_LOW_QUALITY)}")

    @property
    def changes_output(self) -> bool:
        """Whether the gate may change what is stored (retries, or low-quality errors)."""
        return self.max_retries > 0 or self.on_low_quality == "error"

    def store_key(self) -> dict[str, Any]:
        """What of the gate a stored result depends on (for the result store's keys)."""
        return {"max_retries": self.max_retries, "on_low_quality": self.on_low_quality,
                "thresholds": {k: getattr(self.thresholds, k) for k in THRESHOLD_KEYS}}


def failing(result: CaptionResult) -> bool:
    """Whether a checked result has a candidate whose last attempt was flagged."""
    return result.ok and any(c.attempts and c.attempts[-1] for c in result.candidates)


def low_quality_message(result: CaptionResult) -> str:
    """Which candidates still fail, with their flags and attempts."""
    failed = [f"candidate {i}: {', '.join(c.attempts[-1])} ({len(c.attempts)} attempts)"
              for i, c in enumerate(result.candidates) if c.attempts and c.attempts[-1]]
    return "the caption failed the quality gate: " + "; ".join(failed)


class QualityGate:
    """Checks candidates and plans retries for one op configuration.

    :param config: the gate's parameters.
    :param settings: the op's generation settings (a retry keeps their token limits and stop
        strings, with the retry sampling).
    """

    def __init__(self, config: GateConfig, settings: GenerationSettings):
        self.config = config
        self.retry_sampling = retry_settings(settings)

    @property
    def retries(self) -> bool:
        return self.config.max_retries > 0

    def flags(self, candidate: Candidate) -> tuple[str, ...]:
        return tuple(quality_flags(candidate.text, candidate.hit_token_limit,
                                   self.config.thresholds, self.config.schema,
                                   candidate.repetition_trimmed))

    def checked(self, result: CaptionResult, previous: CaptionResult | None = None
                ) -> CaptionResult:
        """``result``'s candidates with this attempt's flags; for a retry (``previous``: the
        result so far), ``previous`` with its failing candidates replaced by the new ones at
        their indices. A retry that failed (the server, the engine) leaves ``previous``."""
        if previous is None:
            if not result.ok:
                return result
            return CaptionResult([replace(c, attempts=(self.flags(c),))
                                  for c in result.candidates])
        if not result.ok:
            return previous
        merged = [replace(new, attempts=old.attempts + (self.flags(new),))
                  if old.attempts and old.attempts[-1] else old
                  for old, new in zip(previous.candidates, result.candidates, strict=True)]
        return CaptionResult(merged)

    def retry_request(self, request: CaptionRequest, attempt: int) -> CaptionRequest:
        """``request`` generated again: the retry sampling, seeded for ``attempt``."""
        return replace(request, settings=self.retry_sampling, attempt=attempt)

    def final(self, result: CaptionResult) -> CaptionResult:
        """A result once no retry is left: failing candidates kept, or a ``low_quality``
        error (``on_low_quality: error``)."""
        if self.config.on_low_quality == "error" and failing(result):
            return CaptionResult.failure(LOW_QUALITY, low_quality_message(result))
        return result

    def after(self, request: CaptionRequest | None, result: CaptionResult,
              previous: CaptionResult | None = None
              ) -> tuple[CaptionResult, CaptionRequest | None]:
        """One answer to ``request`` checked: (the result so far, the next retry's request),
        or (the final result, None) when it passes or no retry is left (``request`` None:
        retries are off)."""
        result = self.checked(result, previous)
        if (request is not None and failing(result)
                and request.attempt < self.config.max_retries):
            return result, self.retry_request(request, request.attempt + 1)
        return self.final(result), None

    def generate(self, backend: CaptionBackend, requests: list[CaptionRequest],
                 text_only: bool = False) -> list[CaptionResult]:
        """``backend.generate`` (``generate_text`` for ``text_only`` requests) with the gate:
        one call for every request, then one per attempt for the requests still failing."""
        generate = backend.generate_text if text_only else backend.generate
        requests = list(requests)  # each entry becomes its latest attempt's request
        results: list[CaptionResult] = list(generate(requests))
        todo = list(range(len(requests)))
        previous: list[CaptionResult | None] = [None] * len(requests)
        while todo:
            again = []
            for index in todo:
                results[index], retry = self.after(requests[index], results[index],
                                                   previous[index])
                if retry is not None:
                    requests[index], previous[index] = retry, results[index]
                    again.append(index)
            if again:
                for index, result in zip(again, generate([requests[i] for i in again]),
                                         strict=True):
                    results[index] = result
            todo = again
        return results


def generate_checked(backend: CaptionBackend, requests: list[CaptionRequest],
                     gate: QualityGate | None, text_only: bool = False) -> list[CaptionResult]:
    """``backend.generate(requests)`` (``generate_text`` for ``text_only`` requests), through
    ``gate`` when there is one (no call for none)."""
    if not requests:
        return []
    if gate is not None:
        return gate.generate(backend, requests, text_only)
    return list((backend.generate_text if text_only else backend.generate)(requests))
