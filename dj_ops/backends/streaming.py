"""Backends whose engine batches by itself (vLLM, an OpenAI-compatible server) are fed one
request at a time and keep many in flight.

A :class:`StreamSession` takes requests as they become ready (``submit``) and hands back the
results of whichever have finished (``poll``); the caller bounds how many are in flight. This is
what lets the op submit each video as soon as it is decoded instead of waiting for a whole
micro-batch and then for its slowest video (see :mod:`dj_ops.ops.streaming`). ``generate`` (one
list in, one result per request out) is the same session fed everything at once, so both paths
share one implementation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable

from dj_ops.backends.base import CaptionRequest, CaptionResult

# The engine died (and, rebuilt, died again) while the request was in flight.
ENGINE_DEAD = "engine_dead"
# Requests in flight at once by default: enough for a GPU engine's continuous batching (vLLM's
# own max_num_seqs defaults to 256 on GPUs); the engine queues what it cannot run yet.
DEFAULT_MAX_IN_FLIGHT = 256


class StreamSession(ABC):
    """Requests in, results out as they finish; used by one thread."""

    @abstractmethod
    def submit(self, key: Hashable, request: CaptionRequest) -> None:
        """Start ``request``; its result comes back from :meth:`poll` under ``key``."""

    @abstractmethod
    def poll(self, wait_s: float) -> list[tuple[Hashable, CaptionResult]]:
        """Results finished since the last call, waiting up to ``wait_s`` for at least one when
        none is ready (an in-process engine instead runs one step of its own)."""

    @property
    @abstractmethod
    def in_flight(self) -> int:
        """Requests submitted whose result has not been returned yet."""

    def close(self) -> None:
        """Abandon what is in flight and release the session's resources."""

    def __enter__(self) -> StreamSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class StreamingBackend:
    """Mixin for a :class:`~dj_ops.backends.base.CaptionBackend` fed continuously (its
    capabilities declare ``streams``): ``generate`` is its session fed everything at once."""

    def open_stream(self) -> StreamSession:
        raise NotImplementedError

    def generate(self, requests: list[CaptionRequest]) -> list[CaptionResult]:
        """Every request submitted at once (the engine batches them); results in order."""
        results: dict[Hashable, CaptionResult] = {}
        with self.open_stream() as session:
            for index, request in enumerate(requests):
                session.submit(index, request)
            while session.in_flight:
                results.update(session.poll(wait_s=1.0))
        return [results[index] for index in range(len(requests))]
